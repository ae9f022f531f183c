//! Reconfiguration at the replica (`config.rs` holds the rules; the design is
//! docs/RECONFIGURATION.md).
//!
//! - Where a request arrives (client or inside a proposed batch), a
//!   reconfiguration's administrator signature is checked: a forged one is
//!   dropped and recorded ([`Fault::ConfigInvalid`]); a leader proposing one
//!   is refused like any unauthenticated request.
//! - At execution (deterministic, the same at every replica): the
//!   certificate must be the next epoch's, one at a time, and a valid
//!   successor ([`Config::next`]); else the reply is the error, nothing
//!   changes, and the client is recorded ([`Fault::ConfigRefused`]). A valid
//!   one joins the chain (replicated state) with its activation slot
//!   `s + window`, and the ordering core fences the slots from there.
//! - Once every slot below the activation slot is executed, the replica
//!   installs the configuration: the ordering core restarts in the epoch's
//!   first view with its new position; a replica no longer a member retires
//!   (votes no more, answers only fetches; [`Replica::retired`] tells its
//!   driver, which may stop it). `Stats::epoch` is the installed epoch.
//! - The chain and the activation slot are in every snapshot: a state
//!   transfer or a restart (snapshot plus replayed decisions) brings the
//!   configuration back, and a restarted replica installs the newest one due
//!   before it votes again.

use super::{Ctx, Replica};
use crate::config::{activation, Config, ConfigCert, ConfigChain, ConfigError};
use crate::fault::Fault;
use crate::message::{Message, Request, Slot};
use crate::params::{GroupInfo, Params};
use byzscale_core::codec;
use byzscale_core::crypto::Crypto;
use byzscale_core::service::Service;
use byzscale_core::{Addr, NodeId};
use serde::{Deserialize, Serialize};

/// A reconfiguration request's result: the epoch and the slot it activates
/// at, or why it was refused.
pub type ReconfigResult = Result<(u64, Slot), String>;

/// The replicated part: the certificates ordered, and the slot from which
/// the newest governs if it is not installed yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochState {
    pub chain: ConfigChain,
    pub pending_at: Option<Slot>,
}

/// The configurations a replica knows.
pub(super) struct Epochs {
    /// Replicated (in the snapshot).
    pub(super) state: EpochState,
    /// The configuration the ordering core runs (local).
    pub(super) installed: Config,
    /// No longer a member of the installed configuration.
    pub(super) retired: bool,
    /// The configuration before the installed one and the first slot the
    /// installed one governs: checkpoints below it are the old members'.
    pub(super) prev: Option<(Slot, Config)>,
    /// Later configurations a lagging replica learnt from a member's proof,
    /// not installed yet (its state is older): their certificates verify.
    pub(super) ahead: Option<Config>,
    /// Started into a later epoch ([`Replica::joining`]) and not caught up
    /// yet: it takes no log (only a certified state) and votes on nothing.
    pub(super) joining: bool,
}

impl Epochs {
    pub(super) fn new(g: GroupInfo) -> Self {
        Epochs {
            state: EpochState::default(),
            installed: Config::genesis(g),
            retired: false,
            prev: None,
            ahead: None,
            joining: false,
        }
    }

    /// The newest configuration ordered (installed or pending).
    fn newest(&self) -> Result<Config, ConfigError> {
        replay(&self.installed, &self.state.chain, u64::MAX)
    }
}

/// `base` followed through the (ordered, hence trusted) certificates of
/// `chain` above its epoch, up to `upto`.
fn replay(base: &Config, chain: &ConfigChain, upto: u64) -> Result<Config, ConfigError> {
    let mut at = base.clone();
    for cert in chain.since(base.epoch) {
        if cert.body.epoch > upto {
            break;
        }
        at = at.next(&cert.body)?;
    }
    Ok(at)
}

/// Check the administrator's signature on a reconfiguration request; `Ok`
/// for an ordinary one.
pub(super) fn check_request(req: &Request, g: &GroupInfo, crypto: &Crypto) -> Result<(), String> {
    match ConfigCert::from_op(&req.op) {
        None => Ok(()),
        Some(cert) => cert
            .and_then(|c| c.verify(g.admin().as_ref(), crypto))
            .map_err(|e| format!("reconfiguration {}#{}: {e}", req.client, req.seq)),
    }
}

impl<S: Service> Replica<S> {
    /// A replica `me` added by a reconfiguration: started from the genesis
    /// group and the administrator's certificates up to the epoch that
    /// adds it (each checked, [`Config::follow`]), with a fresh service.
    /// It fetches a certified state (the old members' checkpoint at the
    /// boundary, or a later one) before it executes or votes anything.
    pub fn joining(
        me: NodeId,
        genesis: GroupInfo,
        proof: &[ConfigCert],
        p: Params,
        service: S,
        crypto: &Crypto,
    ) -> Result<Self, ConfigError> {
        let start = Config::genesis(genesis.clone());
        let Some((last, before)) = proof.split_last() else {
            return Err(ConfigError::NotAdded(me));
        };
        let prev = start.follow(before, crypto)?;
        let config = prev.follow(std::slice::from_ref(last), crypto)?;
        if config.group.index_of(me).is_none() {
            return Err(ConfigError::NotAdded(me));
        }
        let mut r = Replica::new(me, config.group.clone(), p, service);
        let view = config.first_view();
        let idx = r.idx;
        r.order.reconfigure(config.group.clone(), idx, view);
        r.stop_sent = view;
        r.stats.epoch = config.epoch;
        for cert in proof {
            r.epochs.state.chain.push(cert.clone());
        }
        r.epochs.installed = config;
        r.epochs.prev = Some((0, prev));
        r.epochs.joining = true;
        // at start, ask for the log (answered with the state) a few times
        r.recovered = true;
        Ok(r)
    }

    /// Whether this replica was added and has not caught up yet.
    pub fn joining_now(&self) -> bool {
        self.epochs.joining
    }

    /// The configuration the replica runs.
    pub fn config(&self) -> &Config {
        &self.epochs.installed
    }

    /// The certificates newer than `epoch` (a client's proof).
    pub fn config_proof(&self, epoch: u64) -> Vec<ConfigCert> {
        self.epochs.state.chain.since(epoch)
    }

    /// Whether this replica left the group (it votes no more).
    pub fn retired(&self) -> bool {
        self.epochs.retired
    }

    /// Whether a replica message may be handled in the installed epoch: a
    /// synchronization message for a view of a later epoch is dropped (its
    /// positions are another configuration's; this replica catches up by
    /// log and state transfer, then installs that epoch itself).
    pub(super) fn admits(&self, msg: &Message) -> bool {
        let view = match msg {
            Message::Stop { view } | Message::Sync { view, .. } | Message::FetchSync { view } => {
                *view
            }
            Message::StopData(sd) => sd.body.view,
            _ => return true,
        };
        Config::epoch_of(view) <= self.epochs.installed.epoch
    }

    /// A client at `epoch` asks for the proof of the configuration.
    /// A client, or a lagging replica, at `epoch` asks for the proof of
    /// the configuration.
    pub(super) fn on_fetch_config(&mut self, from: Addr, epoch: u64, cx: &mut Ctx<S>) {
        if epoch >= self.config().epoch {
            return;
        }
        let certs = self.config_proof(epoch);
        cx.send(from, Message::ConfigProof { certs });
    }

    /// Whether a joining replica handles `msg` from the member at `idx`:
    /// no log (it would execute old slots under the new configuration) and
    /// no votes, only the slot numbers, to learn how far behind it is.
    pub(super) fn joining_takes(&mut self, idx: usize, msg: &Message, cx: &mut Ctx<S>) -> bool {
        match msg {
            Message::Log { .. }
            | Message::Stop { .. }
            | Message::StopData(_)
            | Message::Sync { .. }
            | Message::FetchSync { .. } => false,
            Message::Propose { slot, .. }
            | Message::Write { slot, .. }
            | Message::Accept { slot, .. } => {
                self.note_slot(idx, *slot, cx);
                false
            }
            _ => true,
        }
    }

    /// A member's proof of later configurations: a lagging replica follows
    /// it (every signature against the administrator's key) and then takes
    /// the newest configuration's checkpoint certificates
    /// ([`Replica::verify_cert`]) for a state transfer, which brings the
    /// chain and installs it.
    pub(super) fn on_config_proof(&mut self, from: usize, certs: Vec<ConfigCert>, cx: &mut Ctx<S>) {
        let known = self.epochs.ahead.as_ref().unwrap_or(&self.epochs.installed);
        let mine = known.epoch;
        let certs: Vec<ConfigCert> = certs.into_iter().filter(|c| c.body.epoch > mine).collect();
        if certs.is_empty() {
            return;
        }
        match known.follow(&certs, cx.crypto()) {
            Ok(next) => self.epochs.ahead = Some(next),
            Err(e) => {
                let who = Addr::Node(self.g.members[from]);
                self.fault(cx, who, Fault::ConfigInvalid, e.to_string());
            }
        }
    }

    /// A state certificate that no configuration known here verifies:
    /// most likely a later epoch's; ask its sender for the proof. A fault
    /// only once the proof is known and it still fails.
    pub(super) fn unknown_signers(&mut self, from: usize, cx: &mut Ctx<S>) -> bool {
        if self.g.admin().is_none() || self.epochs.ahead.is_some() {
            return false;
        }
        let epoch = self.config().epoch;
        cx.send(
            Addr::Node(self.g.members[from]),
            Message::FetchConfig { epoch },
        );
        true
    }

    /// A fetch tick of a joining replica: ask for the log again (answered
    /// with the certified state), whatever the view; true if handled.
    pub(super) fn joining_tick(&mut self, cx: &mut Ctx<S>) -> bool {
        if !self.epochs.joining || self.fetching.is_some() {
            return false;
        }
        self.fetch_timer = false;
        let from = self.executed() + 1;
        cx.multicast(self.others(), Message::FetchLog { from, to: from });
        self.arm_fetch(cx);
        true
    }

    /// The group whose members sign the checkpoint at `slot`: the previous
    /// configuration's below the installed one's first slot (a joining
    /// replica does not know that slot and takes either).
    pub(super) fn signers(&self, slot: Slot) -> &GroupInfo {
        match &self.epochs.prev {
            Some((at, old)) if slot < *at => &old.group,
            _ => &self.g,
        }
    }

    /// Execute an ordered reconfiguration `op` at `slot` (module docs);
    /// `None` if `op` is not one.
    pub(super) fn run_reconfig(&mut self, slot: Slot, op: &[u8]) -> Option<Vec<u8>> {
        let cert = ConfigCert::from_op(op)?;
        let result: ReconfigResult = cert
            .and_then(|cert| self.order_config(slot, cert))
            .map_err(|e| e.to_string());
        Some(codec::to_bytes(&result))
    }

    fn order_config(&mut self, slot: Slot, cert: ConfigCert) -> Result<(u64, Slot), ConfigError> {
        if let Some(at) = self.epochs.state.pending_at {
            let pending = self.epochs.state.chain.epoch();
            return Err(ConfigError::Busy { pending, at });
        }
        let next = self.epochs.newest()?.next(&cert.body)?;
        let at = activation(slot, self.p.window, self.p.checkpoint_interval);
        self.epochs.state.chain.push(cert);
        self.epochs.state.pending_at = Some(at);
        self.order.set_fence(Some(at));
        Ok((next.epoch, at))
    }

    /// After `req` ran with `result`: a refused reconfiguration is
    /// recorded against its client.
    pub(super) fn note_reconfig_result(&mut self, req: &Request, result: &[u8], cx: &mut Ctx<S>) {
        if ConfigCert::from_op(&req.op).is_none() {
            return;
        }
        if let Ok(Err(e)) = codec::from_bytes::<ReconfigResult>(result, result.len()) {
            let detail = format!("{}#{}: {e}", req.client, req.seq);
            self.fault(cx, Addr::Client(req.client), Fault::ConfigRefused, detail);
        }
    }

    /// Install the configurations due now that every slot up to the
    /// executed one ran (module docs). Returns whether one was installed.
    pub(super) fn install_due(&mut self, cx: Option<&mut Ctx<S>>) -> bool {
        let executed = self.executed();
        if self.epochs.joining {
            let (st, mine) = (&self.epochs.state, self.epochs.installed.epoch);
            let chain = st.chain.epoch();
            if chain < mine || (chain == mine && st.pending_at > Some(executed + 1)) {
                return false; // an older state: wait for a newer one
            }
            tracing::info!(replica = %self.me, executed, "joined");
            self.epochs.joining = false;
            // the old members sign below the boundary: the state tells it
            // when it is the boundary's; else below the state is all past
            let at = st.pending_at.unwrap_or(executed + 1);
            if let Some((boundary, _)) = self.epochs.prev.as_mut() {
                *boundary = at;
            }
        }
        let mut upto = self.epochs.state.chain.epoch();
        match self.epochs.state.pending_at {
            Some(at) if executed + 1 >= at => {
                self.epochs.state.pending_at = None;
                self.order.set_fence(None);
            }
            Some(at) => {
                self.order.set_fence(Some(at));
                upto = upto.saturating_sub(1);
            }
            None => {}
        }
        if upto <= self.epochs.installed.epoch {
            return false;
        }
        let next = match replay(&self.epochs.installed, &self.epochs.state.chain, upto) {
            Ok(next) => next,
            Err(e) => {
                // ordered certificates were valid when ordered: a snapshot
                // certified by a quorum cannot hold a bad one
                tracing::error!(replica = %self.me, %e, "ordered configuration does not apply");
                return false;
            }
        };
        self.install_config(next, cx);
        true
    }

    fn install_config(&mut self, next: Config, cx: Option<&mut Ctx<S>>) {
        let (epoch, view) = (next.epoch, next.first_view());
        tracing::info!(replica = %self.me, epoch, n = next.group.n(), f = next.group.qs.f, "configuration installed");
        let at = self.executed() + 1;
        if self
            .epochs
            .ahead
            .as_ref()
            .is_some_and(|a| a.epoch <= next.epoch)
        {
            self.epochs.ahead = None;
        }
        let old = std::mem::replace(&mut self.epochs.installed, next.clone());
        self.epochs.prev = Some((at, old));
        self.g = next.group.clone();
        match self.g.index_of(self.me) {
            Some(idx) => {
                self.idx = idx;
                self.order.reconfigure(self.g.clone(), idx, view);
            }
            None => self.epochs.retired = true,
        }
        // requests authenticated for the old members cannot be proposed:
        // their clients learn the configuration and send them again
        let n = self.g.n();
        self.pending.retain(|_, p| p.req.auth.len() == n);
        self.queue.retain(|id| self.pending.get(id).is_some());
        // everything counted by position or for an old view goes
        self.stops.clear();
        self.stopdata.clear();
        self.last_sync = None;
        self.view_hints.clear();
        self.my_stop_data = None;
        self.stop_sent = view;
        self.vc_attempts = 0;
        for c in self.ckpts.range_mut(at..).map(|(_, c)| c) {
            c.clear_votes();
        }
        self.stats.epoch = epoch;
        if let Some(cx) = cx {
            if !self.epochs.retired {
                self.arm_request_timer(cx);
                self.try_propose(cx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{Durable, Record};
    use super::*;
    use crate::config::{ConfigBody, MemberSpec};
    use crate::message::Batch;
    use byzscale_core::crypto::{CryptoMode, Identity};
    use byzscale_core::ClientId;

    fn admin() -> Crypto {
        let id = Identity::from_seed([42; 32]);
        Crypto::new(Addr::Client(ClientId(42)), id, CryptoMode::Real)
    }

    fn with_admin() -> GroupInfo {
        group().with_admin(Some(admin().public().sign))
    }

    /// Epoch 1 without replica 3: n = 3, f = 0.
    fn shrink() -> ConfigCert {
        let members = (0..3)
            .map(|i| MemberSpec {
                node: NodeId(i),
                key: identity(Addr::Node(NodeId(i))).public(),
            })
            .collect();
        let body = ConfigBody {
            group: group().id,
            epoch: 1,
            members,
            f: 0,
            vmax: vec![],
        };
        ConfigCert::sign(body, &admin())
    }

    /// Replica `me` decides the certificate at slot 1 and empty batches
    /// up to `upto`; its records.
    fn run(r: &mut R, me: u32, upto: Slot) -> Vec<Record> {
        let mut records = Vec::new();
        let cert = Batch::new(vec![request(1, &shrink().to_op())]);
        records.extend(super::super::testkit::records(&decide(r, me, 1, 0, cert)));
        for slot in 2..=upto {
            let fx = decide(r, me, slot, 0, Batch::default());
            records.extend(super::super::testkit::records(&fx));
        }
        records
    }

    #[test]
    fn the_new_configuration_governs_from_the_checkpoint_after_the_window() {
        // window 8, checkpoints every 4: ordered at slot 1, it governs
        // from slot 9 (slot 8 is the old members' last checkpoint)
        let mut r = R::new(NodeId(1), with_admin(), params(), Count::default());
        run(&mut r, 1, 7);
        assert_eq!(
            r.config().epoch,
            0,
            "slots up to 8 are the old configuration's"
        );
        assert_eq!(r.epochs.state.pending_at, Some(9));
        assert!(!r.order.in_window(9), "fenced until installed");
        let fx = decide(&mut r, 1, 8, 0, Batch::default());
        assert_eq!(r.config().epoch, 1);
        assert_eq!(r.group().n(), 3);
        assert_eq!(r.view(), crate::config::first_view(1));
        assert!(r.order.in_window(9));
        // the checkpoint at 8 is counted among the old members
        assert_eq!(r.signers(8).n(), 4);
        assert_eq!(r.signers(12).n(), 3);
        assert!(fx
            .iter()
            .all(|e| !matches!(e, byzscale_core::Effect::Fault(_))));
    }

    /// Replica `me` running slots 1..=8 (the certificate at 1), and the
    /// same replica restarted from its records.
    fn run_and_restart(me: u32) -> (R, R) {
        let mut r = R::new(NodeId(me), with_admin(), params(), Count::default());
        let records = run(&mut r, me, 8);
        let c = crypto(Addr::Node(NodeId(me)));
        let (p, durable) = (params(), Durable::from_records(records));
        let back = R::recover(NodeId(me), with_admin(), p, Count::default(), durable, &c);
        (r, back.unwrap())
    }

    #[test]
    fn a_restarted_replica_comes_back_in_its_epoch_or_stays_out() {
        let (kept, back) = run_and_restart(1);
        assert_eq!(kept.config().epoch, 1);
        assert_eq!(back.config(), kept.config());
        assert_eq!(back.view(), crate::config::first_view(1));
        assert_eq!(back.executed(), 8);
        // replica 3 left at slot 9: after a restart it still does not vote
        let (left, back) = run_and_restart(3);
        assert!(left.retired());
        assert!(back.retired());
        assert_eq!(back.config().epoch, 1);
    }

    #[test]
    fn a_forged_reconfiguration_is_dropped_where_it_arrives() {
        use byzscale_core::Protocol;
        let mut r = R::new(NodeId(1), with_admin(), params(), Count::default());
        let mut forged = shrink();
        forged.body.f = 1;
        let req = request(1, &forged.to_op());
        let fx = step(&mut r, 1, |r, cx| {
            r.on_message(Addr::Client(CLIENT), Message::Request(req), cx)
        });
        let faults: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                byzscale_core::Effect::Fault(f) => Some(f.name()),
                _ => None,
            })
            .collect();
        assert_eq!(faults, vec![crate::fault::Fault::ConfigInvalid.name()]);
        assert_eq!(r.stats().pending, 0);
        // inside a proposed batch, the leader is refused
        let batch = Batch::new(vec![request(1, &forged.to_op())]);
        let fx = step(&mut r, 1, |r, cx| {
            r.on_message(Addr::Node(NodeId(0)), propose(batch), cx)
        });
        assert!(
            writes(&fx).is_empty(),
            "no WRITE for a forged reconfiguration"
        );
    }
}
