//! WHEAT's tentative execution ([`crate::Params::tentative`], off by
//! default): a replica runs the next slot as soon as it *prepared* it (its
//! proposal plus a quorum of WRITEs, the moment it sends its ACCEPT) instead
//! of once it is decided, and answers [`Message::TentativeReply`]; the
//! client accepts a result from a quorum of matching tentative replies. It
//! saves the ACCEPT phase, one of the five communication steps of a request.
//!
//! # Paper map
//!
//! WHEAT (Sousa & Bessani, SRDS'15; seed 004, digest §3.2–3.3) takes
//! tentative execution from PBFT (Castro & Liskov, OSDI'99 §5.1 "tentative
//! execution", TOCS'02 §5.1.2): a replica executes a request once it is
//! prepared and every request with a lower sequence number committed, and
//! the client waits for 2f+1 matching tentative replies. The seed gives no
//! exact client rule for weighted quorums; the one here:
//!
//! - **replica**: the slot right after the last executed one
//!   (`executed + 1`: every lower slot decided and executed here), prepared
//!   in the current view, not decided yet, at most once per (view, slot);
//! - **client**: tentative replies for request (session, seq) counted by
//!   (view, slot, result), each replica's first one; a key whose senders
//!   hold a **quorum Q_v of votes** (2f·V_max + 1, the WRITE/ACCEPT quorum)
//!   completes the request. Final replies keep the old rule (a weak quorum,
//!   f+1 in votes), counted apart: the two kinds are never mixed.
//!
//! # Why an accepted tentative result never changes
//!
//! A correct replica sends a tentative reply for (view v, slot s) only after
//! its ACCEPT record for (v, s, d) (it is emitted after the ordering core's
//! events, so the driver holds the reply until that record is durable), so
//! even after a restart it claims (v, d) prepared at s in its STOP-DATA.
//! Two correct replicas cannot prepare different digests for (v, s) (the
//! WRITE quorums would intersect in a correct replica that wrote both).
//! Let A be the senders of Q_v votes of matching tentative replies: every
//! correct member of A prepared d at s in v. Any quorum B of STOP-DATA in a
//! later view change holds 2·Q_v − N_v = f + Δ + 1 > f·V_max votes of A,
//! so a correct member of A, and PBFT's decision procedure ([`super::order::select`])
//! then picks d at s — the argument that makes a decision (a quorum of
//! ACCEPTs, each from a replica that prepared) stable, with A in place of
//! the ACCEPT quorum. So d is decided at s in every view. The result: the
//! correct members of A ran d at s on the decided prefix 1..s−1 (they run a
//! slot tentatively only on top of executed, i.e. decided, slots), which
//! is exactly what every correct replica runs at s when s is decided, and
//! the service is deterministic; the Byzantine members of A (at most f·V_max
//! votes < Q_v) cannot make a result match on their own.
//!
//! Keying on the view matters: tentative replies from different views (a
//! value prepared at one replica in view v, another at another replica in
//! v + 1) are no quorum of preparers of one value, and the slot can end up
//! with a null batch. Counting final replies into Q_v would be safe too (a
//! correct final reply is a decided result) but buys nothing measurable.
//!
//! # Deviation: no rollback
//!
//! PBFT runs tentatively on the live state and rolls back to the last
//! checkpoint when a view change decides otherwise. Here the tentative run
//! happens between a snapshot and its restore ([`Replica::snapshot_bytes`]
//! and [`Replica::restore_snapshot`]: the service, the client table, the
//! session floor, the batch time): the live state only ever holds decided
//! slots, so there is nothing to roll back, reads answered from local state
//! never see a tentative write, and recovery, checkpoints and state transfer
//! are untouched. The run changes nothing local either (the pending table
//! and the proposed set move only at the real execution). The cost is one
//! snapshot and one restore per tentatively run slot, O(state): cheap for
//! the simulator's small stores, a poor fit for a large one (a service with
//! an undo log would lift it, later). When the slot is decided the replica
//! executes it again as always and sends its final replies, so a client
//! that saw too few tentative replies (a Byzantine or slow replica, a view
//! change) completes by the old rule.

use super::execute::Outcome;
use super::{Ctx, Replica};
use crate::message::{Message, Slot, View};
use byzscale_core::service::Service;
use byzscale_core::Addr;

impl<S: Service> Replica<S> {
    /// With tentative execution on: run the next slot if it is prepared in
    /// the current view and not decided, once per (view, slot), and send
    /// each request that ran its tentative reply (module docs).
    pub(super) fn execute_tentative(&mut self, cx: &mut Ctx<S>) {
        if !self.p.tentative {
            return;
        }
        let Some((view, slot, batch)) = self.order.prepared_next() else {
            return;
        };
        if self.tentative_last >= Some((view, slot)) {
            return;
        }
        self.tentative_last = Some((view, slot));
        let batch = batch.clone();
        let saved = self.snapshot_bytes();
        let (time_high, peak) = (self.time_high, self.client_bytes_peak);
        self.begin_batch(slot, &batch);
        let mut replies = Vec::new();
        for req in batch.requests.iter() {
            if let Outcome::Ran(result) = self.run_request(slot, req) {
                replies.push((req.client, self.reply_body(req, slot, result)));
            }
        }
        self.restore_snapshot(&saved)
            .expect("a replica restores the snapshot it just took");
        (self.time_high, self.client_bytes_peak) = (time_high, peak);
        self.stats.tentative_slots += 1;
        for (client, reply) in replies {
            cx.send(Addr::Client(client), Message::TentativeReply(reply));
        }
    }
}

/// The (view, slot) a replica last ran tentatively: each once.
pub(super) type TentativeMark = Option<(View, Slot)>;
