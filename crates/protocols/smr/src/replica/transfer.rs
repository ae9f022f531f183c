//! Catching up: state transfer (a certified snapshot at a stable checkpoint,
//! PBFT's and BFT-SMaRt's state transfer), log transfer
//! (decided batches above it; a weak quorum of matching entries decides a
//! slot, see `order::Ordering::learn`), and the fetch timer that drives both
//! and re-sends this replica's own stuck votes. Deviation from PBFT: lost
//! normal-case messages are recovered by this retransmission, not only by a
//! view change.

use super::order::Learned;
use super::{Ctx, Output, Record, Replica, Status, Timer};
use crate::fault::Fault;
use crate::message::*;
use byzscale_core::service::Service;
use byzscale_core::Addr;

/// Most bytes of operations (plus 64 per request) one LOG carries.
const LOG_BYTES: usize = 4 << 20;

impl<S: Service> Replica<S> {
    /// The member at `from` works on `slot`: fetch if the group is ahead of us.
    pub(super) fn note_slot(&mut self, from: usize, slot: Slot, cx: &mut Ctx<S>) {
        if self.order.note_slot(from, slot) {
            self.arm_fetch(cx);
        }
    }

    pub(super) fn arm_fetch(&mut self, cx: &mut Ctx<S>) {
        if !self.fetch_timer {
            self.fetch_timer = true;
            self.executed_at_fetch = self.executed();
            cx.set_timer(Timer::Fetch, self.p.fetch_interval);
        }
    }

    pub(super) fn on_fetch_state(&mut self, from: usize, slot: Slot, cx: &mut Ctx<S>) {
        if let (Some(cert), Some(snap)) = (&self.stable, &self.stable_snapshot) {
            if cert.slot >= slot {
                let msg = Message::State {
                    cert: cert.clone(),
                    snapshot: snap.clone(),
                };
                cx.send(Addr::Node(self.g.members[from]), msg);
            }
        }
    }

    pub(super) fn on_state(
        &mut self,
        from: usize,
        cert: CheckpointCert,
        snapshot: Vec<u8>,
        cx: &mut Ctx<S>,
    ) {
        if cert.slot <= self.executed() {
            return;
        }
        let who = Addr::Node(self.g.members[from]);
        if !self.verify_cert(&cert, cx) || cx.crypto().hash(&snapshot) != cert.state {
            let detail = format!("snapshot for slot {}", cert.slot);
            self.fault(cx, who, Fault::StateInvalid, detail);
            return;
        }
        if let Err(e) = self.restore_snapshot(&snapshot) {
            self.fault(cx, who, Fault::StateUndecodable, e);
            return;
        }
        tracing::info!(replica = %self.me, slot = cert.slot, "state transfer complete");
        self.stats.state_transfers += 1;
        let (slot, state) = (cert.slot, cert.state);
        let moved = self.order.skip_to(slot);
        let record = Record::Checkpoint {
            cert: cert.clone(),
            snapshot: snapshot.clone(),
        };
        self.fetching = None;
        self.stable_snapshot = Some(snapshot.clone());
        if moved {
            self.stable = Some(cert);
            self.ckpts = self.ckpts.split_off(&(slot + 1));
        }
        // requests executed by the snapshot are no longer pending
        let clients = &self.clients;
        self.pending
            .retain(|(c, s), _| *s > clients.get(c).map(|cs| cs.last).unwrap_or(0));
        cx.output(Output::StateTransferred { slot });
        cx.persist(record);
        cx.output(Output::Stable { slot, state });
        self.release_reads(cx);
        self.execute_ready(cx);
    }

    /// A restarted replica cannot tell from its disk what was decided while
    /// it was down, and an idle group sends it nothing that would show it
    /// lags (PBFT's recovering replica likewise asks the others first): it
    /// asks for the log after what it replayed. The others answer with
    /// their decisions, and learn from the request that it executed up to
    /// `from - 1` (see [`Self::on_fetch_log`]), so replicas of a whole
    /// group restarting one after the other find the furthest one.
    pub(super) fn ask_what_was_missed(&mut self, cx: &mut Ctx<S>) {
        if !self.recovered || self.fetching.is_some() {
            return;
        }
        let from = self.executed() + 1;
        let to = from.saturating_add(self.p.window);
        cx.multicast(self.others(), Message::FetchLog { from, to });
    }

    pub(super) fn on_fetch_log(&mut self, from: usize, from_slot: Slot, to: Slot, cx: &mut Ctx<S>) {
        // the requester executed up to `from_slot - 1`: if that is ahead of
        // us, fetch (a Byzantine requester makes us ask at most a window)
        let ahead = from_slot
            .saturating_sub(1)
            .min(self.executed().saturating_add(self.p.window));
        self.note_slot(from, ahead, cx);
        // the requester is behind our last checkpoint: the log it asks for is gone,
        // send the certified snapshot instead
        if from_slot <= self.order.low() {
            self.on_fetch_state(from, from_slot, cx);
        }
        let to = to.min(from_slot.saturating_add(self.p.window));
        let mut entries = Vec::new();
        let mut bytes = 0;
        for (s, v, b) in self.order.decided_in(from_slot, to) {
            bytes += b.requests.iter().map(|r| r.op.len() + 64).sum::<usize>();
            entries.push((s, v, b.clone()));
            if bytes > LOG_BYTES {
                break;
            }
        }
        if !entries.is_empty() {
            // each entry counts as our ACCEPT: durable decisions only
            cx.persist(Record::Barrier);
            cx.send(Addr::Node(self.g.members[from]), Message::Log { entries });
        }
    }

    pub(super) fn on_log(
        &mut self,
        from: usize,
        entries: Vec<(Slot, View, Batch)>,
        cx: &mut Ctx<S>,
    ) {
        let mut touched = Vec::new();
        for (slot, view, batch) in entries {
            match self.order.learn(from, slot, view, batch, cx.crypto()) {
                Learned::Decided => self.stats.decided_slots += 1,
                Learned::Counted => touched.push(slot),
                Learned::Stale => {}
            }
        }
        for slot in touched {
            let events = self.order.advance(slot);
            self.apply(events, cx);
        }
        self.execute_ready(cx);
    }

    pub(super) fn on_fetch_timer(&mut self, cx: &mut Ctx<S>) {
        self.fetch_timer = false;
        let stuck = self.executed() == self.executed_at_fetch;
        if let Some(cert) = &self.fetching {
            let slot = cert.slot;
            cx.multicast(self.others(), Message::FetchState { slot });
            self.arm_fetch(cx);
            return;
        }
        // a higher view known from a weak quorum: ask for its SYNC
        let ahead = self.ahead();
        if self.weak(&ahead) {
            let view = ahead
                .iter()
                .map(|i| self.view_hints[i])
                .min()
                .unwrap_or(self.view() + 1);
            let to: Vec<Addr> = ahead
                .iter()
                .map(|i| Addr::Node(self.g.members[*i]))
                .collect();
            cx.multicast(to, Message::FetchSync { view });
            self.arm_fetch(cx);
        }
        let (executed, highest) = (self.executed(), self.order.highest_seen());
        if highest > executed {
            if stuck && self.status() == Status::Normal {
                let msg = Message::FetchLog {
                    from: executed + 1,
                    to: highest,
                };
                cx.multicast(self.others(), msg);
                // our own PROPOSE (leader), WRITE and ACCEPT for the slots we
                // are stuck on, once the records behind them are durable
                let resend = self.order.resend(4 * self.p.max_in_flight);
                if !resend.is_empty() {
                    cx.persist(Record::Barrier);
                }
                for m in resend {
                    cx.multicast(self.others(), m.into());
                }
            }
            self.arm_fetch(cx);
        }
    }
}
