//! Checkpoints (Castro & Liskov OSDI'99 §4.3, garbage collection): every
//! `checkpoint_interval` executed slots a replica signs the digest of its state
//! and multicasts CHECKPOINT; a quorum of matching signatures is a stable
//! checkpoint with its certificate ([`CheckpointCert`]). Stabilizing moves the
//! low watermark of the ordering core (the window above it is where slots may
//! be accepted), drops older slots and checkpoints, persists the snapshot, and
//! starts a state transfer if this replica's own state is missing or differs.
//! The state digest is that of the snapshot's chunk manifest
//! ([`state_digest`], see `transfer.rs`), so a transfer checks each chunk.

use super::{Ctx, Output, Record, Replica};
use crate::fault::Fault;
use crate::message::*;
use byzscale_core::crypto::{Digest, Signature};
use byzscale_core::service::Service;
use byzscale_core::Addr;
use std::collections::{BTreeMap, BTreeSet};

/// One checkpoint slot: this replica's own digest and snapshot, and the votes.
#[derive(Default, Debug)]
pub(super) struct CkptState {
    pub(super) mine: Option<(Digest, Vec<u8>)>,
    votes: BTreeMap<Digest, BTreeMap<usize, Signature>>,
}

impl CkptState {
    /// Forget the votes (counted by position, which a reconfiguration changes).
    pub(super) fn clear_votes(&mut self) {
        self.votes.clear();
    }
}

impl<S: Service> Replica<S> {
    pub(super) fn take_checkpoint(&mut self, slot: Slot, cx: &mut Ctx<S>) {
        let snap = self.snapshot_bytes();
        let d = state_digest(cx.crypto(), &snap, self.p.state_chunk_bytes);
        self.ckpts.entry(slot).or_default().mine = Some((d, snap));
        self.announce_checkpoint(slot, d, cx);
    }

    /// Sign this replica's state digest `d` at `slot` and multicast it.
    fn announce_checkpoint(&mut self, slot: Slot, d: Digest, cx: &mut Ctx<S>) {
        let sig = cx.crypto().sign(&checkpoint_bytes(self.g.id, slot, &d));
        let idx = self.idx;
        let ck = self.ckpts.entry(slot).or_default();
        ck.votes.entry(d).or_default().insert(idx, sig);
        cx.multicast(
            self.others(),
            Message::Checkpoint {
                slot,
                state: d,
                sig,
            },
        );
        self.check_checkpoint(slot, d, cx);
    }

    /// After a restart: announce the checkpoints passed while replaying the
    /// log (their CHECKPOINT messages may never have left).
    pub(super) fn announce_replayed_checkpoints(&mut self, cx: &mut Ctx<S>) {
        let low = self.order.low();
        let replayed: Vec<(Slot, Digest)> = self
            .ckpts
            .range(low + 1..)
            .filter_map(|(s, c)| c.mine.as_ref().map(|(d, _)| (*s, *d)))
            .collect();
        for (slot, d) in replayed {
            self.announce_checkpoint(slot, d, cx);
        }
    }

    pub(super) fn on_checkpoint(
        &mut self,
        from: usize,
        slot: Slot,
        state: Digest,
        sig: Signature,
        cx: &mut Ctx<S>,
    ) {
        let low = self.order.low();
        if slot <= low
            || !slot.is_multiple_of(self.p.checkpoint_interval)
            || slot > low + 4 * self.p.window
        {
            return;
        }
        let member = self.g.members[from];
        let who = Addr::Node(member);
        if cx
            .crypto()
            .verify(who, &checkpoint_bytes(self.g.id, slot, &state), &sig)
            .is_err()
        {
            self.fault(cx, who, Fault::CheckpointSignature, format!("slot {slot}"));
            return;
        }
        self.note_slot(from, slot, cx);
        // counted by position among that slot's signers (`reconfig.rs`)
        let Some(from) = self.signers(slot).index_of(member) else {
            return;
        };
        self.ckpts
            .entry(slot)
            .or_default()
            .votes
            .entry(state)
            .or_default()
            .insert(from, sig);
        self.check_checkpoint(slot, state, cx);
    }

    fn check_checkpoint(&mut self, slot: Slot, state: Digest, cx: &mut Ctx<S>) {
        let Some(votes) = self.ckpts.get(&slot).and_then(|c| c.votes.get(&state)) else {
            return;
        };
        let g = self.signers(slot);
        if !g.qs.is_quorum(votes.keys().copied()) {
            return;
        }
        let cert = CheckpointCert {
            slot,
            state,
            sigs: votes.iter().map(|(i, s)| (g.members[*i], *s)).collect(),
        };
        self.stabilize(cert, cx);
    }

    /// Adopt a (verified) stable checkpoint: move the low watermark, truncate, and
    /// fetch the state if we have not executed that far.
    pub(super) fn stabilize(&mut self, cert: CheckpointCert, cx: &mut Ctx<S>) {
        if cert.slot <= self.order.low() {
            return;
        }
        let mine = self.ckpts.get(&cert.slot).and_then(|c| c.mine.clone());
        let mut fetch = false;
        match mine {
            Some((d, snap)) if d == cert.state => {
                self.stable_snapshot = Some(snap.clone());
                cx.persist(Record::Checkpoint {
                    cert: cert.clone(),
                    snapshot: snap,
                });
                cx.output(Output::Stable {
                    slot: cert.slot,
                    state: d,
                });
            }
            Some(_) => {
                cx.persist(Record::Stable { cert: cert.clone() });
                let me = Addr::Node(self.me);
                self.fault(
                    cx,
                    me,
                    Fault::DivergentState,
                    format!("my state at {} differs from the quorum's", cert.slot),
                );
                self.stable_snapshot = None;
                fetch = true;
            }
            None => {
                // the low watermark moves without a state here: durable
                // before any vote in the new window leaves
                cx.persist(Record::Stable { cert: cert.clone() });
                self.stable_snapshot = None;
                fetch = self.executed() < cert.slot;
            }
        }
        if fetch {
            self.fetch_state(cert.clone(), cx);
        }
        self.order.stabilize(cert.slot);
        let low = self.order.low();
        self.ckpts = self.ckpts.split_off(&low);
        self.ckpts.retain(|s, c| *s > low || c.mine.is_some());
        self.stable = Some(cert);
        self.try_propose(cx);
    }

    /// A checkpoint certificate: a quorum of distinct members' valid
    /// signatures on a checkpoint slot.
    pub(super) fn verify_cert(&self, cert: &CheckpointCert, cx: &Ctx<S>) -> bool {
        if !cert.slot.is_multiple_of(self.p.checkpoint_interval) {
            return false;
        }
        let g = self.signers(cert.slot);
        let in_g = signed_by(g, cert, cx);
        // a joining replica cannot tell where the boundary is: the
        // previous configuration's certificate does too (`reconfig.rs`)
        let ahead = self.epochs.ahead.as_ref();
        let by_ahead = || ahead.is_some_and(|a| signed_by(&a.group, cert, cx));
        match &self.epochs.prev {
            Some((_, old)) if self.epochs.joining && !in_g => signed_by(&old.group, cert, cx),
            _ => in_g || by_ahead(),
        }
    }
}

/// Whether `cert` holds a quorum of `g`'s distinct members' valid signatures.
fn signed_by<P: byzscale_core::Protocol>(
    g: &crate::params::GroupInfo,
    cert: &CheckpointCert,
    cx: &byzscale_core::Cx<'_, P>,
) -> bool {
    let bytes = checkpoint_bytes(g.id, cert.slot, &cert.state);
    let mut who = BTreeSet::new();
    let mut items = Vec::new();
    for (n, s) in &cert.sigs {
        let Some(i) = g.index_of(*n) else {
            return false;
        };
        if !who.insert(i) {
            return false;
        }
        items.push((Addr::Node(*n), bytes.as_slice(), s));
    }
    g.qs.is_quorum(who.iter().copied()) && cx.crypto().verify_batch(&items).is_ok()
}
