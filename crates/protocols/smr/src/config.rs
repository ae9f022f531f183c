//! Replica-set reconfiguration: configurations, the administrator's signed
//! statement of the next one ([`ConfigCert`]), and the chain of them that
//! proves the current configuration to a client (docs/RECONFIGURATION.md).
//!
//! # Paper map
//!
//! Seed 004 (BFT-SMaRt) reconfigures through ordered requests signed by a
//! trusted administrator (its `VMServices` / `Reconfiguration` classes: a
//! `ReconfigureRequest` joins or removes one replica or sets f, and replicas
//! install the new *view* once it is ordered). Lamport, Malkhi and Zhou,
//! "Reconfiguring a state machine" (SIGACT News 2010), give the activation
//! rule used here: a configuration ordered at slot s governs slots from
//! s + α on, α being how far the pipeline may run ahead. Names:
//!
//! | here | BFT-SMaRt | Lamport et al. |
//! |---|---|---|
//! | [`Config`] (epoch, members, quorum system, f) | `View` (id, processes, f) | configuration |
//! | [`ConfigCert`] | `ReconfigureRequest` signed with the TTP key | reconfiguration command |
//! | [`activation`] | the view installed after the consensus that ordered it | slot s + α |
//! | [`ConfigChain`] | `currentView` file, replaced by a proof in replies | — |
//!
//! # Deviations, and why
//!
//! - A certificate states the *whole* next configuration (members, their
//!   keys, f, the WHEAT V_max positions), not one change: a replica never
//!   has to replay a diff to know who votes, and n and f change
//!   independently in one step.
//! - The new configuration governs slots from `s + window` (the watermark
//!   window, which every correct backup enforces), not BFT-SMaRt's next
//!   instance: with a pipeline no correct replica can have voted on a slot
//!   at or above the boundary before it executed slot s.
//! - Views are numbered per epoch inside one counter: epoch e starts at view
//!   `e << 32` ([`Config::first_view`]), so every replica agrees on the first
//!   view of an epoch, and its leader is a member of the previous epoch
//!   (a replica just added is never the first leader: [`Config::next`]).
//! - A client trusts the newest certificate it can verify against the
//!   administrator's key: the administrator signs at most one certificate
//!   per epoch (its tool keeps the counter), so a signed epoch-e certificate
//!   is the one the group ordered, if any. The chain is checked step by step
//!   where it is contiguous; a gap (the replica cut the proof at its byte
//!   bound) is bridged by the signature alone.

use crate::message::{Slot, View};
use crate::params::GroupInfo;
use byzscale_core::codec;
use byzscale_core::crypto::{Crypto, PublicIdentity, Signature};
use byzscale_core::quorum::{FaultModel, QuorumError, QuorumSystem};
use byzscale_core::{GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Epoch e's views are `e << EPOCH_VIEW_SHIFT ..`: 2^32 view changes per
/// epoch before the next epoch's numbers (never reached in practice; a view
/// change past it is refused as a view of a later epoch).
pub const EPOCH_VIEW_SHIFT: u32 = 32;
/// Most members a configuration may list.
pub const MAX_MEMBERS: usize = 1024;
/// Most bytes of certificates a replica keeps in its chain (replicated
/// state) and sends as a proof: the oldest go first.
pub const MAX_CHAIN_BYTES: usize = 256 << 10;
/// The operation of an ordered request that carries a [`ConfigCert`]
/// starts with this tag; the service never sees such an operation.
pub const RECONFIG_TAG: &[u8] = b"byzscale/reconfig\0";

/// One member of a configuration: its node id and the public identity the
/// drivers connect to (the core needs only the id; the keys travel with it
/// so that a joining replica and a client learn whom to authenticate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSpec {
    pub node: NodeId,
    pub key: PublicIdentity,
}

/// What the administrator signs: the whole configuration of `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigBody {
    pub group: GroupId,
    pub epoch: u64,
    /// In position order.
    pub members: Vec<MemberSpec>,
    pub f: usize,
    /// WHEAT: the positions holding V_max (empty: classic, all weights 1;
    /// otherwise n = 3f+1+Δ with exactly 2f holders, as
    /// [`QuorumSystem::wheat`] requires).
    pub vmax: Vec<usize>,
}

/// An administrator-signed [`ConfigBody`]: the body of a reconfiguration
/// request and one link of the proof a client verifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigCert {
    pub body: ConfigBody,
    pub sig: Signature,
}

/// Why a certificate or a chain is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("reconfiguration is disabled: the genesis configuration names no administrator key")]
    NoAdmin,
    #[error("the administrator's signature does not verify")]
    BadSignature,
    #[error("undecodable reconfiguration request: {0}")]
    Malformed(String),
    #[error("epoch {got}: the next epoch is {want}")]
    WrongEpoch { got: u64, want: u64 },
    #[error("group {got}: this is group {want}")]
    WrongGroup { got: GroupId, want: GroupId },
    #[error("{0} members: a configuration holds 1 to {MAX_MEMBERS}")]
    MemberCount(usize),
    #[error("{0} is listed twice")]
    Duplicate(NodeId),
    #[error("{0}")]
    Quorum(#[from] QuorumError),
    #[error("no member of epoch {0} stays: one must, to lead the first view and serve the state")]
    NoContinuity(u64),
    #[error("epoch {pending} is ordered and activates at slot {at}; retry after it")]
    Busy { pending: u64, at: Slot },
    #[error("{0} is not a member of the configuration it was started into")]
    NotAdded(NodeId),
    #[error("a proof must list certificates in increasing epochs above {0}")]
    Order(u64),
}

impl ConfigBody {
    /// The bytes the administrator signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        codec::to_bytes(&("byzscale/config", self))
    }
}

impl ConfigCert {
    /// `body` signed with the administrator's keys.
    pub fn sign(body: ConfigBody, admin: &Crypto) -> Self {
        let sig = admin.sign(&body.signed_bytes());
        ConfigCert { body, sig }
    }

    /// The operation of a reconfiguration request carrying this certificate.
    pub fn to_op(&self) -> Vec<u8> {
        let mut op = RECONFIG_TAG.to_vec();
        codec::write_into(&mut op, self);
        op
    }

    /// `None` if `op` is an ordinary operation; else the certificate it
    /// carries, or why it does not decode.
    pub fn from_op(op: &[u8]) -> Option<Result<ConfigCert, ConfigError>> {
        let rest = op.strip_prefix(RECONFIG_TAG)?;
        Some(codec::from_bytes(rest, rest.len()).map_err(|e| ConfigError::Malformed(e.to_string())))
    }

    /// Check the administrator's signature (`admin`: its ed25519 key, from
    /// the genesis configuration).
    pub fn verify(&self, admin: Option<&[u8; 32]>, crypto: &Crypto) -> Result<(), ConfigError> {
        let admin = admin.ok_or(ConfigError::NoAdmin)?;
        let bytes = self.body.signed_bytes();
        match crypto.verify_keyed(&[(admin, &bytes, &self.sig)])[..] {
            [true] => Ok(()),
            _ => Err(ConfigError::BadSignature),
        }
    }

    /// The encoded size (what the chain's byte bound counts).
    pub fn size(&self) -> usize {
        codec::to_bytes(self).len()
    }
}

/// One configuration: its epoch, the group as the ordering core sees it,
/// the members' keys where known (genesis keys are the drivers'), and the
/// members added in this epoch (never the first view's leader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub epoch: u64,
    pub group: GroupInfo,
    pub keys: BTreeMap<NodeId, PublicIdentity>,
    pub added: BTreeSet<NodeId>,
}

impl Config {
    /// Epoch 0: the group every replica and client is started with.
    pub fn genesis(group: GroupInfo) -> Self {
        Config {
            epoch: 0,
            group,
            keys: BTreeMap::new(),
            added: BTreeSet::new(),
        }
    }

    /// The first view of this epoch.
    pub fn first_view(&self) -> View {
        first_view(self.epoch)
    }

    /// The epoch a view belongs to.
    pub fn epoch_of(view: View) -> u64 {
        view >> EPOCH_VIEW_SHIFT
    }

    /// Whether the ordered `body` is a valid next configuration, and if so
    /// that configuration (deterministic: every replica decides alike).
    /// The signature is checked where the request arrives
    /// ([`ConfigCert::verify`]). Rules: the next epoch of the same group,
    /// 1..=[`MAX_MEMBERS`] distinct members, a quorum system that exists
    /// for them and f (n ≥ 3f+1 classic, or WHEAT's rule; 2f+1 under CFT,
    /// the fault model cannot change), and at least one member staying.
    /// View `first_view` of the new epoch is led by the first staying
    /// member; views rotate round-robin from there.
    pub fn next(&self, body: &ConfigBody) -> Result<Config, ConfigError> {
        let want = self.epoch + 1;
        if body.epoch != want {
            return Err(ConfigError::WrongEpoch {
                got: body.epoch,
                want,
            });
        }
        self.successor(body)
    }

    /// [`Config::next`] without the epoch rule (a proof with a gap).
    fn successor(&self, body: &ConfigBody) -> Result<Config, ConfigError> {
        let want = self.group.id;
        if body.group != want {
            let got = body.group;
            return Err(ConfigError::WrongGroup { got, want });
        }
        let n = body.members.len();
        if n == 0 || n > MAX_MEMBERS {
            return Err(ConfigError::MemberCount(n));
        }
        let mut seen = BTreeSet::new();
        if let Some(m) = body.members.iter().find(|m| !seen.insert(m.node)) {
            return Err(ConfigError::Duplicate(m.node));
        }
        let mode = self.group.qs.mode;
        let qs = if body.vmax.is_empty() {
            QuorumSystem::classic(n, body.f, mode)?
        } else {
            let need = match mode {
                FaultModel::Bft => 3 * body.f + 1,
                FaultModel::Cft => 2 * body.f + 1,
            };
            let delta = n.checked_sub(need).ok_or(QuorumError::TooFewReplicas {
                mode,
                f: body.f,
                n,
                need,
            })?;
            QuorumSystem::wheat(body.f, delta, mode, &body.vmax)?
        };
        let members: Vec<NodeId> = body.members.iter().map(|m| m.node).collect();
        let old = &self.group.members;
        let lead = members
            .iter()
            .position(|m| old.contains(m))
            .ok_or(ConfigError::NoContinuity(self.epoch))?;
        // leader(v) = members[(first + v) mod n]: first view → `lead`
        let shift = (first_view(body.epoch) % n as u64) as usize;
        let first = (lead + n - shift) % n;
        let group = GroupInfo::new(self.group.id, members, qs)
            .with_first_leader(first)
            .with_admin(self.group.admin());
        let added = group
            .members
            .iter()
            .filter(|m| !old.contains(m))
            .copied()
            .collect();
        let keys = body.members.iter().map(|m| (m.node, m.key)).collect();
        Ok(Config {
            epoch: body.epoch,
            group,
            keys,
            added,
        })
    }

    /// A client (or a replica) at this configuration follows a proof:
    /// certificates in increasing epochs above its own, each signed by the
    /// administrator, each a valid successor of the one before (module
    /// docs: a gap is bridged by the signature). The newest configuration.
    pub fn follow(&self, proof: &[ConfigCert], crypto: &Crypto) -> Result<Config, ConfigError> {
        let admin = self.group.admin();
        let mut at = self.clone();
        for cert in proof {
            if cert.body.epoch <= at.epoch {
                return Err(ConfigError::Order(at.epoch));
            }
            cert.verify(admin.as_ref(), crypto)?;
            at = at.successor(&cert.body)?;
        }
        Ok(at)
    }
}

/// The first view of `epoch`.
pub fn first_view(epoch: u64) -> View {
    epoch.saturating_mul(1 << EPOCH_VIEW_SHIFT)
}

/// The first slot a configuration ordered at `slot` governs, with the
/// watermark window `window` and checkpoints every `interval` slots: the
/// slot after the first checkpoint at or after `slot + window - 1`. Slots
/// below it finish under the old configuration. A correct backup votes on a
/// slot only within `window` of its stable checkpoint, itself at most what
/// it executed, so no correct replica votes at or above the boundary before
/// it has executed `slot`; and the old configuration's last slot is a
/// checkpoint, whose certificate (the old members' signatures) gives a
/// joining replica the state the new configuration starts from.
pub fn activation(slot: Slot, window: u64, interval: u64) -> Slot {
    let interval = interval.max(1);
    let last = slot.saturating_add(window.max(1) - 1);
    last.div_ceil(interval)
        .saturating_mul(interval)
        .saturating_add(1)
}

/// The certificates ordered so far, oldest first, within
/// [`MAX_CHAIN_BYTES`] (replicated state: in every snapshot, so a replica
/// that transfers state learns the chain).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChain {
    certs: Vec<ConfigCert>,
}

impl ConfigChain {
    /// Append the newest certificate, dropping the oldest beyond the bound.
    pub fn push(&mut self, cert: ConfigCert) {
        self.certs.push(cert);
        while self.certs.len() > 1 && self.bytes() > MAX_CHAIN_BYTES {
            self.certs.remove(0);
        }
    }
    pub fn bytes(&self) -> usize {
        self.certs.iter().map(ConfigCert::size).sum()
    }
    pub fn certs(&self) -> &[ConfigCert] {
        &self.certs
    }
    pub fn epoch(&self) -> u64 {
        self.certs.last().map_or(0, |c| c.body.epoch)
    }
    /// The proof for a client at `epoch`: the certificates above it.
    pub fn since(&self, epoch: u64) -> Vec<ConfigCert> {
        self.certs
            .iter()
            .filter(|c| c.body.epoch > epoch)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::crypto::{CryptoMode, Identity};
    use byzscale_core::Addr;

    pub(crate) fn admin() -> Crypto {
        Crypto::new(
            Addr::Client(byzscale_core::ClientId(999)),
            admin_id(),
            CryptoMode::Real,
        )
    }
    fn admin_id() -> Identity {
        Identity::from_seed([7; 32])
    }
    fn key(n: u32) -> PublicIdentity {
        let mut seed = [0; 32];
        seed[0] = n as u8 + 1;
        Identity::from_seed(seed).public()
    }
    fn genesis(n: u32) -> Config {
        let qs =
            QuorumSystem::classic(n as usize, ((n - 1) / 3) as usize, FaultModel::Bft).unwrap();
        let admin = admin_id().public().sign;
        Config::genesis(
            GroupInfo::new(GroupId(0), (0..n).map(NodeId).collect(), qs).with_admin(Some(admin)),
        )
    }
    fn body(epoch: u64, members: impl IntoIterator<Item = u32>, f: usize) -> ConfigBody {
        ConfigBody {
            group: GroupId(0),
            epoch,
            members: members
                .into_iter()
                .map(|n| MemberSpec {
                    node: NodeId(n),
                    key: key(n),
                })
                .collect(),
            f,
            vmax: vec![],
        }
    }

    #[test]
    fn grow_and_shrink_with_n_and_f_independent() {
        let g = genesis(4);
        let seven = g.next(&body(1, 0..7, 2)).unwrap();
        assert_eq!(
            (seven.group.n(), seven.group.qs.f, seven.group.qs.quorum()),
            (7, 2, 5)
        );
        assert_eq!(seven.added, (4..7).map(NodeId).collect());
        // n grows, f stays
        let ten = seven.next(&body(2, 0..10, 2)).unwrap();
        assert_eq!((ten.group.n(), ten.group.qs.f), (10, 2));
        // f grows, n stays
        let ten3 = ten.next(&body(3, 0..10, 3)).unwrap();
        assert_eq!(ten3.group.qs.quorum(), 7);
        let four = ten3.next(&body(4, [0, 8, 9, 3], 1)).unwrap();
        assert_eq!(
            four.group.members,
            vec![NodeId(0), NodeId(8), NodeId(9), NodeId(3)]
        );
        assert!(four.added.is_empty());
    }

    #[test]
    fn invalid_next_configurations_are_refused_with_the_reason() {
        let g = genesis(4);
        let e = |r: Result<Config, ConfigError>| r.unwrap_err();
        assert_eq!(
            e(g.next(&body(2, 0..4, 1))),
            ConfigError::WrongEpoch { got: 2, want: 1 }
        );
        assert_eq!(
            e(g.next(&body(0, 0..4, 1))),
            ConfigError::WrongEpoch { got: 0, want: 1 }
        );
        assert!(matches!(
            e(g.next(&body(1, 0..6, 2))),
            ConfigError::Quorum(QuorumError::TooFewReplicas { need: 7, n: 6, .. })
        ));
        assert_eq!(
            e(g.next(&body(1, [0, 1, 2, 2], 1))),
            ConfigError::Duplicate(NodeId(2))
        );
        assert_eq!(e(g.next(&body(1, [], 0))), ConfigError::MemberCount(0));
        assert_eq!(e(g.next(&body(1, 10..14, 1))), ConfigError::NoContinuity(0));
        let mut other = body(1, 0..4, 1);
        other.group = GroupId(5);
        assert!(matches!(e(g.next(&other)), ConfigError::WrongGroup { .. }));
        // WHEAT: n = 3f+1+Δ with 2f V_max holders
        let mut w = body(1, 0..5, 1);
        w.vmax = vec![0, 1];
        let wheat = g.next(&w).unwrap();
        assert_eq!(wheat.group.qs.weights(), &[2, 2, 1, 1, 1]);
        w.vmax = vec![0];
        assert!(matches!(
            e(g.next(&w)),
            ConfigError::Quorum(QuorumError::VmaxHolders { .. })
        ));
    }

    #[test]
    fn a_member_just_added_never_leads_the_first_view_of_its_epoch() {
        let mut at = genesis(4);
        // the staying members listed after the new ones, in every epoch
        let plans: [&[u32]; 5] = [
            &[9, 8, 7, 0, 1, 2, 3],
            &[11, 10, 9, 8, 7, 0, 1],
            &[12, 0, 1, 2, 3],
            &[13, 14, 12, 0, 1, 2, 3],
            &[0, 1, 2, 3],
        ];
        for (i, members) in plans.iter().enumerate() {
            let n = members.len();
            let next = at
                .next(&body(i as u64 + 1, members.iter().copied(), (n - 1) / 3))
                .unwrap();
            let leader = next.group.leader(next.first_view());
            assert!(
                !next.added.contains(&leader),
                "epoch {}: {leader} leads",
                next.epoch
            );
            assert!(at.group.members.contains(&leader));
            // and the view after rotates on to the next position
            let pos = next.group.index_of(leader).unwrap();
            assert_eq!(
                next.group.leader(next.first_view() + 1),
                next.group.members[(pos + 1) % n]
            );
            at = next;
        }
    }

    #[test]
    fn forged_certificates_fail_the_admin_signature() {
        let g = genesis(4);
        let crypto = admin();
        let good = ConfigCert::sign(body(1, 0..5, 1), &crypto);
        assert_eq!(good.verify(g.group.admin().as_ref(), &crypto), Ok(()));
        // a body changed after signing
        let mut changed = good.clone();
        changed.body.f = 0;
        assert_eq!(
            changed.verify(g.group.admin().as_ref(), &crypto),
            Err(ConfigError::BadSignature)
        );
        // signed by someone else
        let mallory = Crypto::new(
            Addr::Node(NodeId(3)),
            Identity::from_seed([3; 32]),
            CryptoMode::Real,
        );
        let forged = ConfigCert::sign(body(1, 0..5, 1), &mallory);
        assert_eq!(
            forged.verify(g.group.admin().as_ref(), &crypto),
            Err(ConfigError::BadSignature)
        );
        // no admin key: reconfiguration is off
        assert_eq!(good.verify(None, &crypto), Err(ConfigError::NoAdmin));
        // the operation round-trips; garbage after the tag is malformed
        assert_eq!(ConfigCert::from_op(&good.to_op()), Some(Ok(good.clone())));
        assert_eq!(ConfigCert::from_op(b"SET k v"), None);
        let mut bad = RECONFIG_TAG.to_vec();
        bad.extend_from_slice(&[0xff; 9]);
        assert!(matches!(
            ConfigCert::from_op(&bad),
            Some(Err(ConfigError::Malformed(_)))
        ));
    }

    #[test]
    fn a_client_at_epoch_zero_follows_the_chain_to_the_newest_config() {
        let crypto = admin();
        let g = genesis(4);
        let mut chain = ConfigChain::default();
        let mut at = g.clone();
        for (e, (members, f)) in [(0..7, 2), (0..10, 3), (0..7, 2), (0..4, 1)]
            .into_iter()
            .enumerate()
        {
            let cert = ConfigCert::sign(body(e as u64 + 1, members, f), &crypto);
            at = at.next(&cert.body).unwrap();
            chain.push(cert);
        }
        assert_eq!(chain.epoch(), 4);
        let newest = g.follow(&chain.since(0), &crypto).unwrap();
        assert_eq!(newest, at);
        // a client at epoch 2 gets only the newer two
        assert_eq!(chain.since(2).len(), 2);
        let mid = g.follow(&chain.since(0)[..2], &crypto).unwrap();
        assert_eq!(mid.follow(&chain.since(2), &crypto).unwrap(), at);
        // out of order, replayed, or tampered proofs fail
        let mut rev = chain.since(0);
        rev.reverse();
        assert_eq!(g.follow(&rev, &crypto), Err(ConfigError::Order(4)));
        assert_eq!(
            at.follow(&chain.since(0), &crypto),
            Err(ConfigError::Order(4))
        );
        let mut tampered = chain.since(0);
        tampered[1].body.f = 1;
        assert_eq!(g.follow(&tampered, &crypto), Err(ConfigError::BadSignature));
        // an admin-signed but invalid step (6 replicas for f = 2) fails too
        let bad = ConfigCert::sign(body(5, 0..6, 2), &crypto);
        assert!(matches!(
            at.follow(&[bad], &crypto),
            Err(ConfigError::Quorum(_))
        ));
    }

    #[test]
    fn the_chain_keeps_only_what_fits_its_byte_bound() {
        let crypto = admin();
        let mut chain = ConfigChain::default();
        let one = ConfigCert::sign(body(1, 0..1000, 333), &crypto).size();
        let fit = MAX_CHAIN_BYTES / one;
        for e in 1..=(fit as u64 + 5) {
            chain.push(ConfigCert::sign(body(e, 0..1000, 333), &crypto));
            assert!(chain.bytes() <= MAX_CHAIN_BYTES);
        }
        assert_eq!(chain.certs().len(), fit);
        assert_eq!(chain.epoch(), fit as u64 + 5);
        assert_eq!(chain.certs()[0].body.epoch, 6);
    }

    #[test]
    fn activation_leaves_the_window_to_the_old_config() {
        // slot 10, window 8: slots up to 17 are old; 20 is the checkpoint
        assert_eq!(activation(10, 8, 4), 21);
        assert_eq!(activation(10, 8, 1), 18);
        assert_eq!(activation(9, 8, 4), 17);
        assert_eq!(activation(u64::MAX - 1, 8, 4), u64::MAX);
        assert_eq!(Config::epoch_of(first_view(3) + 7), 3);
        assert_eq!(first_view(0), 0);
    }
}
