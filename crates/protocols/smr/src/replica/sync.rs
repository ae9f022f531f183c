//! The synchronization phase (view change): Mod-SMaRt's synchronization phase
//! (STOP, STOP-DATA, SYNC), PBFT OSDI'99 §4.4 / TOCS'02 §4.5 (VIEW-CHANGE,
//! NEW-VIEW).
//!
//! A replica that suspects the leader multicasts STOP(v+1); a weak quorum of
//! STOPs makes every correct replica join, a quorum starts the phase: each
//! replica stops ordering and sends the new leader a signed STOP-DATA with its
//! stable checkpoint and its claims (PBFT's P and Q sets, from
//! [`super::order::Ordering::claims`]). Once a quorum of STOP-DATA determines
//! every open slot under PBFT's decision procedure ([`super::order::select`]),
//! the leader forwards them as SYNC and every replica recomputes the same
//! selection and installs the view (deviation from PBFT: no prepared
//! certificates, no signature on SYNC; see the crate docs). Failed attempts
//! back off exponentially; a replica that learns of a newer view from a weak
//! quorum asks for its SYNC (FETCH-SYNC).

use super::order::{self, Status};
use super::{Ctx, Output, Record, Replica, Timer};
use crate::fault::Fault;
use crate::message::*;
use byzscale_core::service::Service;
use byzscale_core::{codec, Addr, NodeId};
use std::collections::{BTreeMap, BTreeSet};

/// STOPs for views further ahead than this are ignored (a STOP is a view
/// number: bounds the memory a Byzantine replica can make us spend).
const MAX_VIEW_AHEAD: View = 1_000;

/// A leader keeps STOP-DATA only for views at most this far beyond the one
/// it is in or moving to ([`Ordering::target`](super::order::Ordering::target)),
/// and at most one per member: the one for the highest view (a correct member
/// never asks for a lower view than one it signed STOP-DATA for, so an older
/// one is evicted on arrival of a newer one, and one for a lower view than
/// the member's kept one is dropped). A STOP-DATA carries a member's claims
/// (up to a window of prepared batches), so this bounds the table to one
/// message per member, whatever views a Byzantine member names; before, one
/// member could make a leader hold STOP-DATA for up to [`MAX_VIEW_AHEAD`]
/// views. Nothing is lost for a correct member: the leader's STOP, sent once
/// it joins the view change, makes every member in that phase send its
/// STOP-DATA again (see `on_stop`).
pub(super) const STOP_DATA_VIEWS_AHEAD: View = 8;

/// The outcome of the synchronization phase's decision procedure.
struct Selection {
    cert: Option<CheckpointCert>,
    min_s: Slot,
    max_s: Slot,
    picks: BTreeMap<Slot, Batch>,
}

impl<S: Service> Replica<S> {
    /// Members known to be in a view above ours.
    pub(super) fn ahead(&self) -> BTreeSet<usize> {
        let view = self.view();
        self.view_hints
            .iter()
            .filter(|(_, v)| **v > view)
            .map(|(i, _)| *i)
            .collect()
    }

    pub(super) fn note_view_hint(&mut self, from: usize, view: View, cx: &mut Ctx<S>) {
        if view <= self.view() {
            return;
        }
        let h = self.view_hints.entry(from).or_insert(0);
        *h = (*h).max(view);
        if self.weak(&self.ahead()) {
            self.arm_fetch(cx);
        }
    }

    /// Operator (or test) suspicion: ask for the view after the one we are in
    /// or moving to.
    pub(super) fn on_suspect(&mut self, cx: &mut Ctx<S>) {
        let target = self.order.target() + 1;
        self.send_stop(target, cx);
    }

    pub(super) fn send_stop(&mut self, view: View, cx: &mut Ctx<S>) {
        if view <= self.stop_sent || view <= self.view() {
            return;
        }
        self.stop_sent = view;
        tracing::info!(replica = %self.me, from_view = self.view(), to_view = view, "suspecting leader, sending STOP");
        cx.output(Output::Suspected { view });
        cx.multicast(self.others(), Message::Stop { view });
        let idx = self.idx;
        self.stops.entry(view).or_default().insert(idx);
        self.check_stops(view, cx);
    }

    pub(super) fn on_stop(&mut self, from: usize, view: View, cx: &mut Ctx<S>) {
        if view <= self.view() || view > self.view() + MAX_VIEW_AHEAD {
            return;
        }
        let fresh = self.stops.entry(view).or_default().insert(from);
        // a replica still asking for the view we are already moving to missed
        // our STOP: repeat it to that replica
        let to = Addr::Node(self.g.members[from]);
        if fresh && self.status() == Status::Changing(view) {
            cx.send(to, Message::Stop { view });
        }
        // the leader of that view asks again (it restarted, and lost the
        // STOP-DATA it had): send ours again
        if self.status() == Status::Changing(view) && self.g.leader(view) == self.g.members[from] {
            if let Some(sd) = self.my_stop_data.as_ref().filter(|sd| sd.body.view == view) {
                let msg = Message::StopData(sd.clone());
                cx.barrier(); // its claims and Changing record
                cx.send(to, msg);
            }
        }
        self.check_stops(view, cx);
    }

    fn check_stops(&mut self, view: View, cx: &mut Ctx<S>) {
        let Some(who) = self.stops.get(&view).cloned() else {
            return;
        };
        if self.weak(&who) && self.stop_sent < view {
            self.send_stop(view, cx); // join: at least one correct replica suspects
            return;
        }
        if self.quorum(&who) && view > self.order.target() {
            self.enter_change(view, cx);
        }
    }

    fn arm_view_change_timer(&mut self, cx: &mut Ctx<S>) {
        let timeout = self
            .p
            .view_change_timeout
            .saturating_mul(1 << self.vc_attempts.min(10));
        self.vc_attempts += 1;
        cx.set_timer(Timer::ViewChange, timeout);
    }

    fn enter_change(&mut self, view: View, cx: &mut Ctx<S>) {
        tracing::info!(replica = %self.me, view, leader = %self.g.leader(view), "entering synchronization phase");
        self.order.begin_change(view);
        self.stats.view_changes += 1;
        self.stops = self.stops.split_off(&view);
        if self.request_timer {
            self.request_timer = false;
            cx.cancel_timer(Timer::Request);
        }
        // durable before STOP-DATA leaves: a restart never orders in the old view
        cx.persist(Record::Changing { view });
        self.send_stop_data(view, cx);
    }

    /// Sign this replica's checkpoint and claims for `view` and hand them to
    /// its leader (also after a restart in the synchronization phase).
    pub(super) fn send_stop_data(&mut self, view: View, cx: &mut Ctx<S>) {
        let claims = self
            .order
            .claims()
            .map(|c| SlotClaim {
                slot: c.slot,
                prepared: c.prepared.cloned(),
                pre_prepared: c.pre_prepared.to_vec(),
            })
            .collect();
        let body = StopBody {
            view,
            replica: self.me,
            checkpoint: self.stable.clone(),
            claims,
        };
        let sig = cx.crypto().sign(&stop_bytes(self.g.id, &body));
        let sd = StopData { body, sig };
        self.my_stop_data = Some(sd.clone());
        let leader = self.g.leader(view);
        if leader == self.me {
            self.keep_stop_data(sd);
            self.try_sync(view, cx);
        } else {
            cx.send(Addr::Node(leader), Message::StopData(sd));
        }
        self.arm_view_change_timer(cx);
    }

    pub(super) fn on_view_change_timer(&mut self, cx: &mut Ctx<S>) {
        let Status::Changing(v) = self.status() else {
            return;
        };
        tracing::info!(replica = %self.me, view = v, "synchronization timed out");
        // replicas still in the old view may have missed our STOP for v (we
        // repeat it to one only when its own STOP is news to us): without
        // it they may never gather a quorum for v, while too few of them
        // join the next view to make a weak quorum for it
        cx.multicast(self.others(), Message::Stop { view: v });
        if self.stop_sent > v {
            // our STOP for the next view may have been lost: repeat it
            let view = self.stop_sent;
            cx.multicast(self.others(), Message::Stop { view });
        } else {
            self.send_stop(v + 1, cx);
        }
        self.arm_view_change_timer(cx);
    }

    /// Check a STOP-DATA for `view` in full: signature, checkpoint certificate, and
    /// the well-formedness of every claim.
    fn verify_stop_data(&self, sd: &StopData, view: View, cx: &Ctx<S>) -> Result<(), String> {
        let b = &sd.body;
        if b.view != view {
            return Err("wrong view".into());
        }
        if self.g.index_of(b.replica).is_none() {
            return Err("not a member".into());
        }
        if cx
            .crypto()
            .verify(Addr::Node(b.replica), &stop_bytes(self.g.id, b), &sd.sig)
            .is_err()
            && self.g.bft()
        {
            return Err("bad signature".into());
        }
        let low = match &b.checkpoint {
            Some(c) => {
                if self.g.bft() && !self.verify_cert(c, cx) {
                    return Err("bad checkpoint certificate".into());
                }
                c.slot
            }
            None => 0,
        };
        let mut slots = BTreeSet::new();
        for c in &b.claims {
            if c.slot <= low || c.slot > low + self.p.window || !slots.insert(c.slot) {
                return Err(format!("bad claim for slot {}", c.slot));
            }
            if c.pre_prepared.len() > PRE_PREPARED_KEPT
                || c.pre_prepared.iter().any(|(_, v)| *v >= view)
            {
                return Err(format!("bad pre-prepared claims for slot {}", c.slot));
            }
            if let Some((v, d, batch)) = &c.prepared {
                if *v >= view || cx.crypto().hash(&batch.bytes()) != *d {
                    return Err(format!("bad prepared claim for slot {}", c.slot));
                }
            }
        }
        Ok(())
    }

    pub(super) fn on_stop_data(&mut self, from: usize, sd: StopData, cx: &mut Ctx<S>) {
        let view = sd.body.view;
        let who = Addr::Node(self.g.members[from]);
        if self.g.leader(view) != self.me
            || view <= self.view()
            || sd.body.replica != self.g.members[from]
        {
            return;
        }
        let horizon = self.order.target() + STOP_DATA_VIEWS_AHEAD;
        if view > horizon {
            let detail = format!("STOP-DATA for view {view}, beyond view {horizon}");
            self.fault(cx, who, Fault::StopDataAhead, detail);
            return;
        }
        if let Some(kept) = self.stop_data_view(sd.body.replica).filter(|v| *v > view) {
            let detail = format!("STOP-DATA for view {view} after one for view {kept}");
            self.fault(cx, who, Fault::StopDataAhead, detail);
            return;
        }
        if let Err(e) = self.verify_stop_data(&sd, view, cx) {
            self.fault(cx, who, Fault::StopDataInvalid, e);
            return;
        }
        self.keep_stop_data(sd);
        self.try_sync(view, cx);
    }

    /// The view of the STOP-DATA kept from `member`, if any.
    pub(super) fn stop_data_view(&self, member: NodeId) -> Option<View> {
        self.stopdata
            .iter()
            .rev()
            .find(|(_, sds)| sds.contains_key(&member))
            .map(|(v, _)| *v)
    }

    /// Keep `sd` as its member's one STOP-DATA ([`STOP_DATA_VIEWS_AHEAD`]):
    /// the member's older one goes.
    fn keep_stop_data(&mut self, sd: StopData) {
        let (view, member) = (sd.body.view, sd.body.replica);
        if let Some(old) = self.stop_data_view(member).filter(|v| *v < view) {
            let sds = self.stopdata.get_mut(&old).expect("found above");
            sds.remove(&member);
            if sds.is_empty() {
                self.stopdata.remove(&old);
            }
        }
        self.stopdata.entry(view).or_default().insert(member, sd);
    }

    /// STOP-DATA held for views not yet installed, and their encoded bytes.
    pub fn stop_data_held(&self) -> (usize, usize) {
        let all = self.stopdata.values().flat_map(|sds| sds.values());
        all.fold((0, 0), |(n, b), sd| (n + 1, b + codec::encoded_len(sd)))
    }

    fn try_sync(&mut self, view: View, cx: &mut Ctx<S>) {
        if self.status() != Status::Changing(view) {
            return;
        }
        let Some(sds) = self.stopdata.get(&view) else {
            return;
        };
        let who: BTreeSet<usize> = sds.keys().filter_map(|n| self.g.index_of(*n)).collect();
        if !self.quorum(&who) {
            return;
        }
        let stops: Vec<StopData> = sds.values().cloned().collect();
        if self.selection(&stops).is_none() {
            // some slot is not yet decidable from these claims: wait for more
            return;
        }
        tracing::info!(replica = %self.me, view, stops = stops.len(), "leader sending SYNC");
        cx.barrier(); // its own STOP-DATA's records
        cx.multicast(
            self.others(),
            Message::Sync {
                view,
                stops: stops.clone(),
            },
        );
        self.install(view, stops, cx);
    }

    pub(super) fn on_sync(
        &mut self,
        from: usize,
        view: View,
        stops: Vec<StopData>,
        cx: &mut Ctx<S>,
    ) {
        let who = Addr::Node(self.g.members[from]);
        if view <= self.view() || self.g.leader(view) != self.g.members[from] {
            return;
        }
        // the cheap checks first: at most one STOP-DATA per member, from a
        // quorum of members (a SYNC of many copies costs no verifications)
        let senders: BTreeSet<usize> = stops
            .iter()
            .filter_map(|sd| self.g.index_of(sd.body.replica))
            .collect();
        if senders.len() != stops.len() || !self.quorum(&senders) {
            let detail = format!(
                "{} STOP-DATA, not from a quorum of distinct members",
                stops.len()
            );
            self.fault(cx, who, Fault::SyncInvalid, detail);
            return;
        }
        for sd in &stops {
            if let Err(e) = self.verify_stop_data(sd, view, cx) {
                self.fault(cx, who, Fault::SyncInvalid, e);
                return;
            }
        }
        if self.selection(&stops).is_none() {
            let detail = "STOP-DATA do not determine every slot".into();
            self.fault(cx, who, Fault::SyncInvalid, detail);
            return;
        }
        self.install(view, stops, cx);
    }

    pub(super) fn on_fetch_sync(&mut self, from: usize, view: View, cx: &mut Ctx<S>) {
        if let Some((v, stops)) = &self.last_sync {
            if *v >= view && self.status() == Status::Normal {
                let msg = Message::Sync {
                    view: *v,
                    stops: stops.clone(),
                };
                cx.barrier();
                cx.send(Addr::Node(self.g.members[from]), msg);
            }
        }
    }

    /// Over a set of verified STOP-DATA: adopt the highest checkpoint, then
    /// choose a value for every slot above it with [`order::select`].
    fn selection(&self, stops: &[StopData]) -> Option<Selection> {
        let cert = stops
            .iter()
            .filter_map(|s| s.body.checkpoint.clone())
            .max_by_key(|c| c.slot);
        let min_s = cert.as_ref().map(|c| c.slot).unwrap_or(0);
        let voters: Vec<(Option<usize>, &[SlotClaim])> = stops
            .iter()
            .map(|s| (self.g.index_of(s.body.replica), s.body.claims.as_slice()))
            .collect();
        let picks = order::select(&self.g.qs, min_s, &voters)?;
        Some(Selection {
            cert,
            min_s,
            max_s: picks.high,
            picks: picks.values,
        })
    }

    /// Enter `view` given a verified quorum of STOP-DATA whose selection is
    /// determined (see [`order::select`]).
    fn install(&mut self, view: View, stops: Vec<StopData>, cx: &mut Ctx<S>) {
        let Some(Selection {
            cert: best_cert,
            min_s,
            max_s,
            mut picks,
        }) = self.selection(&stops)
        else {
            return;
        };

        self.order.enter(view);
        cx.persist(Record::Installed {
            view,
            stops: stops.clone(),
        });
        self.stop_sent = self.stop_sent.max(view);
        self.stops = self.stops.split_off(&(view + 1));
        self.stopdata = self.stopdata.split_off(&(view + 1));
        self.view_hints.retain(|_, v| *v > view);
        self.last_sync = Some((view, stops));
        cx.cancel_timer(Timer::ViewChange);
        let leader = self.g.leader(view);
        tracing::info!(replica = %self.me, view, %leader, min_s, max_s, "view installed");
        cx.output(Output::ViewChanged { view, leader });

        if let Some(cert) = best_cert {
            self.stabilize(cert, cx);
        }
        self.order.restart(max_s);
        self.proposed.clear();
        for s in (min_s + 1)..=max_s {
            if s <= self.order.low() {
                continue;
            }
            let batch = picks.remove(&s).unwrap_or_default();
            let events = self.order.accept(view, s, batch, cx.crypto());
            self.apply(events, cx);
        }
        // pending requests get a fresh timeout under the new leader
        let now = cx.now();
        for p in self.pending.values_mut() {
            p.arrival = now;
            p.forwarded = false;
        }
        self.queue = self.pending.keys().copied().collect();
        self.request_timer = false;
        cx.cancel_timer(Timer::Request);
        self.try_propose(cx);
        self.arm_request_timer(cx);
        // messages of this view that overtook its SYNC
        for (from, msg) in self.order.take_future() {
            self.on_order(from, msg, cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use byzscale_core::{Effect, NodeId, Protocol};

    /// STOPs multicast by a replica whose synchronization phase timed out.
    fn stops(fx: &[Effect<R>]) -> Vec<View> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Multicast {
                    msg: Message::Stop { view },
                    ..
                } => Some(*view),
                _ => None,
            })
            .collect()
    }

    /// A replica in the synchronization phase for view 1 whose STOP the
    /// others missed repeats it when the phase times out, besides asking for
    /// view 2. Before, it asked for view 2 only: the two others, still in
    /// view 0 with each other's STOP for view 1, never gathered a quorum for
    /// it, and one STOP for view 2 is not a weak quorum (`sim smr
    /// --byzantine mixed --crash-restart`, seed 1312 of 10,000: nothing
    /// executed in 120 s).
    #[test]
    fn a_timed_out_synchronization_repeats_its_stop() {
        let mut r = R::new(NodeId(2), group(), params(), Count::default());
        let node = |i| Addr::Node(NodeId(i));
        for from in [1, 3] {
            step(&mut r, 2, |r, cx| {
                r.on_message(node(from), Message::Stop { view: 1 }, cx)
            });
        }
        assert_eq!(r.status(), Status::Changing(1));
        let first = step(&mut r, 2, |r, cx| r.on_timer(Timer::ViewChange, cx));
        assert_eq!(stops(&first), [1, 2]);
        let again = step(&mut r, 2, |r, cx| r.on_timer(Timer::ViewChange, cx));
        assert_eq!(stops(&again), [1, 2]);
    }
}
