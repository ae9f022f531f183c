//! Execution: decided slots leave the ordering core in slot order and their
//! requests run against the service under the client table, PBFT's
//! last-reply table (Castro & Liskov OSDI'99 §4.1: exactly-once, the last
//! reply cached for retransmissions; BFT-SMaRt keeps the same per client)
//! with per-client FIFO order. Each slot's `Record::Decided` precedes its
//! replies, which the driver therefore sends only once the slot is durable
//! here (see `durable.rs`); checkpoints follow.
//!
//! # The client table (replicated, in every snapshot)
//!
//! Per client only what exactly-once needs: its session, the last executed
//! sequence number in it, the slot it ran in, and the last `client_window`
//! replies with their slots ([`ClientState`]). A request runs only in its
//! turn ([`Replica::turn`]); any other is skipped, deterministically, and
//! stays in the replica's pending table (`pending.rs`, local and bounded in
//! bytes) until its predecessor has run and a leader proposes it again.
//! Deviation from the table this replaced: out-of-order requests were
//! buffered inside the client table, so a client's (or a Byzantine
//! leader's) early requests were pinned in the replicated state and in
//! every snapshot; PBFT and BFT-SMaRt keep only the last reply per client,
//! as now. A correct leader proposes a request only in turn (`request.rs`),
//! so only a view change that drops a slot makes a later one be skipped,
//! once.
//!
//! # Sessions, named by slots, and the session floor
//!
//! As Raft's client sessions (Ongaro's thesis §6.3), a client's requests
//! carry a session ([`Request::session`]) and a sequence number from 1,
//! contiguous within it. A session is named by a slot decided before the
//! request, which the client learns before the first ordered request of a
//! session by asking every replica ([`Message::SessionQuery`]; each answers
//! its last executed slot, [`Message::SessionInfo`], and keeps nothing):
//! from a quorum of answers it takes the highest slot a weak quorum reported
//! at least, which a correct replica executed (so it is decided, and below
//! the slot of any request sent after it) and which is no lower than some
//! correct replica's position (so it is recent; see `client.rs`). The
//! replicated state holds a *session floor*: at a checkpoint at slot S, the
//! entries whose last activity L satisfies L <= S - E expire (E =
//! `client_expiry_slots`, in client-id order, the same at every replica)
//! and the floor becomes max(floor, S - E + 1). Everything an expired
//! client ever executed has session < its slot <= L < floor, so none of it
//! can run again.
//!
//! An ordered request of client c, session s, number q, executed at slot t
//! (deterministic at every replica):
//! 1. s >= t: refused ([`RefuseReason::SessionAhead`]; a correct client
//!    never sends one), nothing changes.
//! 2. c has no entry: s < floor is refused ([`RefuseReason::Stale`], with
//!    the floor); else q = 1 creates the entry and runs; else it waits
//!    pending (out of turn).
//! 3. c has entry e: s < e.session is stale (skipped; a retransmission gets
//!    `Stale`); s = e.session: q <= last is a duplicate (the cached reply),
//!    q = last + 1 runs, later ones wait; s > e.session: q = 1 starts the
//!    new session (the entry's counters reset) and runs, later ones wait.
//!
//! The floor applies only to a client without an entry: a live entry of an
//! old session keeps running. Exactly-once: a request runs only in its own
//! session, and no request of a session runs once one of its requests was
//! refused `Stale` (its client had no entry and the floor was above the
//! session; the floor only rises, and an entry of a later session refuses
//! the older one). A client told `Stale` by f+1 replicas (the same floor)
//! therefore never sends those requests again: they complete with an
//! explicit "session expired: outcome unknown" (Raft's SESSION_EXPIRED),
//! since one may have run before the entry expired with every reply lost,
//! and the client learns a new session for later requests. (The design
//! this replaced renumbered them into a new session and sent them again,
//! which ran such a request twice: sim smr --byzantine mixed --crash-restart
//! seed 645.) A client asks for a new session also after idling for
//! `session_idle`, so an honest client whose entry expired while it was
//! idle rarely meets `Stale`.
//! [`Params::pinned_clients`] (a ByzCast child's parent replicas, a
//! bounded set from the topology) never expire and are exempt from the
//! floor: their forward streams number contiguously in session 0.
//!
//! # The bound
//!
//! The table's bytes ([`entry_bytes`]) are bounded by `client_table_bytes`:
//! at the bound a client with no entry is not executed and every replica
//! answers [`RefuseReason::Busy`] (deterministically, at execution); its
//! request stays pending and can run once entries expire. Clients with an
//! entry are never refused. Known limitation: a leader does not queue a
//! refused request again by itself (its client's retransmission finds it
//! pending); it is proposed again after the next view change rebuilds the
//! queue.
//!
//! # Batch time
//!
//! Services such as the Redis store need a clock every replica agrees on
//! (key expiry, `TIME`). As in BFT-SMaRt, whose leader puts its clock in
//! each batch and whose replicas hand the batch's timestamp to the service
//! instead of reading their own clocks, the leader stamps each batch it
//! proposes with its wall clock ([`Batch::time_ms`], ms since the Unix
//! epoch: `Cx::wall_ms`, the system clock in the runtime, virtual time in
//! the simulator), never below the last executed batch's time nor any
//! timestamp it adopted before (a new leader's clock may be behind the
//! old one's). The stamp is part of the batch: the digest voted on, the
//! records (`durable.rs`), the log sent to lagging replicas and the claims
//! of a view change, which therefore re-proposes a slot with its time.
//!
//! A backup accepts a PROPOSE only if its time is at least the last
//! executed batch's and within [`Params::max_clock_skew`] of its own clock
//! ([`check_time`]); otherwise the proposal is invalid like a batch with a
//! bad request: no WRITE, a `propose-invalid` fault, and the request timers
//! lead to a view change. BFT-SMaRt checks only that timestamps do not
//! decrease; the bound on the distance to the backup's clock is this
//! crate's addition (issue 12): without it a Byzantine leader could move the
//! agreed time arbitrarily far ahead, and every key with a TTL would expire
//! at once. A value the synchronization phase selects is not checked again
//! (it was accepted in an earlier view and may be older than the bound).
//! The cost of the bound: a PROPOSE that reaches a backup more than the
//! bound after the leader made it (a long partition, the leader's
//! retransmission of a stuck slot) is refused like a bad one, with a
//! `propose-invalid` fault against a correct leader; the backup learns the
//! decision by log transfer, and if the slot needs its WRITE, the view
//! change that follows re-proposes it unchecked.
//!
//! A batch executes at `max(previous batch's time, its timestamp)`, so the
//! agreed time never decreases whatever a leader proposed before the check
//! existed at a slot, and a null batch (time 0) runs at the previous time.
//! The service learns it before the batch's requests
//! (`Service::begin_batch`); the last executed batch's time is replicated
//! state, in every snapshot, so a replica restored from a checkpoint or
//! restarted from its disk keeps both the rule and the service's clock.
//!
//! [`Params::pinned_clients`]: crate::Params::pinned_clients
//! [`Params::max_clock_skew`]: crate::Params::max_clock_skew

use super::reconfig::EpochState;
use super::{Ctx, Output, Record, Replica};
use crate::config::RECONFIG_TAG;
use crate::fault::Fault;
use crate::message::*;
use byzscale_core::codec;
use byzscale_core::protocol::MILLIS;
use byzscale_core::service::{BatchCtx, Service};
use byzscale_core::{Addr, ClientId, Time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Per-client execution state: part of the replicated state (and the snapshot).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct ClientState {
    /// The session its requests run in (see the module docs).
    pub(super) session: u64,
    /// The last sequence number executed in `session` (0: none).
    pub(super) last: u64,
    /// The slot its last request ran in (for expiry).
    last_slot: Slot,
    /// The last replies of `session`: (seq, slot, result).
    pub(super) replies: VecDeque<(u64, Slot, Vec<u8>)>,
}

/// Bytes charged for a client's entry in the table.
pub(super) fn entry_bytes(cs: &ClientState) -> usize {
    72 + cs
        .replies
        .iter()
        .map(|(_, _, r)| r.len() + 32)
        .sum::<usize>()
}

/// Where a request stands against the client table (module docs).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// Executed already in the entry's session.
    Done,
    /// Runs next: the next in its session, or a session's first.
    Next,
    /// Waits for earlier requests of its session; `ahead` of the next.
    Ahead(u64),
    /// Its session is over (an older session of the entry's client, or no
    /// entry and below the session floor).
    Stale,
}

/// What executing one request did.
pub(super) enum Outcome {
    Ran(Vec<u8>),
    /// Not its turn, or executed already: nothing.
    Skipped,
    /// Refused, with a reply saying why.
    Refused(RefuseReason),
}

impl<S: Service> Replica<S> {
    /// Where request `(c, s, q)` stands here (module docs, rules 2 and 3).
    pub(super) fn turn(&self, (c, s, q): ReqId) -> Turn {
        let ahead = match self.clients.get(&c) {
            None if s < self.session_floor && !self.p.pinned_clients.contains(&c) => {
                return Turn::Stale
            }
            Some(e) if s < e.session => return Turn::Stale,
            // numbers count from 1: a 0 never runs
            Some(e) if s == e.session && q <= e.last => return Turn::Done,
            _ if q == 0 => return Turn::Done,
            Some(e) if s == e.session => q - e.last - 1,
            // no entry, or a later session: its first runs
            _ => q - 1,
        };
        if ahead == 0 {
            Turn::Next
        } else {
            Turn::Ahead(ahead)
        }
    }

    /// Execute every decided slot that is next in order.
    pub(super) fn execute_ready(&mut self, cx: &mut Ctx<S>) {
        let mut progressed = false;
        while let Some((slot, v, d, batch)) = self.order.take_ready() {
            // durable before the slot's replies leave (see durable.rs)
            cx.persist(Record::Decided {
                slot,
                view: v,
                digest: d,
                batch: batch.clone(),
            });
            self.begin_batch(slot, &batch);
            for req in batch.requests.iter() {
                self.execute_request(slot, req, cx);
            }
            self.stats.executed_requests += batch.requests.len() as u64;
            progressed = true;
            cx.output(Output::Decided {
                slot,
                view: v,
                digest: d,
                batch,
            });
            if slot.is_multiple_of(self.p.checkpoint_interval) {
                self.expire_clients(slot);
                self.take_checkpoint(slot, cx);
            }
            self.install_due(Some(cx));
        }
        if progressed {
            self.release_reads(cx);
            self.vc_attempts = 0;
            self.try_propose(cx);
            self.arm_request_timer(cx);
        }
    }

    fn execute_request(&mut self, slot: Slot, req: &Request, cx: &mut Ctx<S>) {
        match self.execute_request_quiet(slot, req) {
            Outcome::Ran(result) => {
                self.note_reconfig_result(req, &result, cx);
                let reply = self.reply(req, slot, result);
                cx.send(Addr::Client(req.client), reply);
                self.queue_successor(req.id());
            }
            Outcome::Refused(reason) => {
                cx.send(Addr::Client(req.client), self.refusal(req, reason));
            }
            Outcome::Skipped => {}
        }
    }

    /// The reply to `req`, executed at `slot` (0 for a read).
    pub(super) fn reply(&self, req: &Request, slot: Slot, result: Vec<u8>) -> Message {
        Message::Reply(self.reply_body(req, slot, result))
    }

    /// The body of [`Replica::reply`] (also of a tentative reply).
    pub(super) fn reply_body(&self, req: &Request, slot: Slot, result: Vec<u8>) -> Reply {
        Reply {
            replica: self.me,
            view: self.view(),
            client: req.client,
            session: req.session,
            seq: req.seq,
            read_only: req.read_only,
            slot,
            result,
        }
    }

    /// A client asks where to start a session (`client.rs`): answer the
    /// last executed slot. Nothing is kept, so a flood of queries costs
    /// bandwidth only.
    pub(super) fn on_session_query(
        &mut self,
        from: Addr,
        client: ClientId,
        nonce: u64,
        cx: &mut Ctx<S>,
    ) {
        if from != Addr::Client(client) {
            let detail = format!("session query claims {client}");
            self.fault(cx, from, Fault::RequestSpoof, detail);
            return;
        }
        let info = Message::SessionInfo {
            replica: self.me,
            client,
            nonce,
            executed: self.executed(),
        };
        cx.send(from, info);
    }

    /// The refusal of `req` for `reason`.
    pub(super) fn refusal(&self, req: &Request, reason: RefuseReason) -> Message {
        Message::Refused {
            replica: self.me,
            client: req.client,
            session: req.session,
            seq: req.seq,
            reason,
        }
    }

    /// The refusal a stale request gets: the session floor if the client
    /// has no entry (it moves to a newer session), else nothing (an old
    /// session's request, of a client that moved on).
    pub(super) fn stale_refusal(&self, req: &Request) -> Option<Message> {
        let floor = self.session_floor;
        let known = self.clients.contains_key(&req.client);
        (!known).then(|| self.refusal(req, RefuseReason::Stale { floor }))
    }

    /// How far beyond its last executed request a client's sequence numbers may
    /// run here. A client keeps at most `client_window` requests outstanding, but
    /// it counts completions by the fastest f+1 replicas; a replica that lags a
    /// few slots must still accept them, hence the margin.
    pub(super) fn horizon(&self) -> u64 {
        4 * self.p.client_window
    }

    /// Execute `req`, decided at `slot`, if it is its client's turn (see the
    /// module docs). Deterministic: the same at every replica.
    pub(super) fn execute_request_quiet(&mut self, slot: Slot, req: &Request) -> Outcome {
        let id = req.id();
        // whatever happens, a leader may propose it again only in its turn
        self.proposed.remove(&id);
        let outcome = self.run_request(slot, req);
        match &outcome {
            // it can never run: no replica holds it for proposal again
            Outcome::Refused(RefuseReason::SessionAhead | RefuseReason::Stale { .. }) => {
                self.pending.remove(&id);
            }
            Outcome::Refused(RefuseReason::Busy) => self.stats.clients_refused += 1,
            // it, and anything older of this client (an older session's), is done
            Outcome::Ran(_) => self.pending.drop_upto(id),
            Outcome::Skipped => {}
        }
        outcome
    }

    /// The replicated part of executing `req` at `slot`: the client table
    /// and the service, nothing local (the pending table, the proposed set,
    /// the counters), so that a tentative run (`tentative.rs`) can undo it
    /// by restoring a snapshot.
    pub(super) fn run_request(&mut self, slot: Slot, req: &Request) -> Outcome {
        let id = req.id();
        let refused = if req.session >= slot {
            Some(RefuseReason::SessionAhead)
        } else {
            match self.turn(id) {
                Turn::Next => None,
                Turn::Stale if !self.clients.contains_key(&req.client) => {
                    let floor = self.session_floor;
                    Some(RefuseReason::Stale { floor })
                }
                _ => return Outcome::Skipped,
            }
        };
        if let Some(reason) = refused {
            return Outcome::Refused(reason);
        }
        let new = !self.clients.contains_key(&req.client);
        if new && self.client_bytes + 72 > self.p.client_table_bytes {
            return Outcome::Refused(RefuseReason::Busy);
        }
        let result = match self.run_reconfig(slot, &req.op) {
            Some(result) => result,
            None => self.service.execute(&req.op),
        };
        let window = self.p.client_window.max(1) as usize;
        let cs = self.clients.entry(req.client).or_default();
        let before = if new { 0 } else { entry_bytes(cs) };
        if cs.session != req.session {
            // a new session: its counters start again
            cs.session = req.session;
            cs.replies.clear();
        }
        cs.last = req.seq;
        cs.last_slot = slot;
        cs.replies.push_back((req.seq, slot, result.clone()));
        while cs.replies.len() > window {
            cs.replies.pop_front();
        }
        let after = entry_bytes(cs);
        self.client_bytes = self.client_bytes + after - before;
        self.client_bytes_peak = self.client_bytes_peak.max(self.client_bytes);
        Outcome::Ran(result)
    }

    /// The decided `batch` at `slot` starts executing: its agreed time is
    /// its timestamp, or the previous batch's if that is later (a null
    /// batch; see the module docs), and the service learns it, then sees
    /// the batch's operations (`Service::prepare_batch`).
    pub(super) fn begin_batch(&mut self, slot: Slot, batch: &Batch) {
        self.batch_time = self.batch_time.max(batch.time_ms);
        self.time_high = self.time_high.max(self.batch_time);
        let time_ms = self.batch_time;
        self.service.begin_batch(BatchCtx { slot, time_ms });
        if !batch.requests.is_empty() {
            let ops: Vec<&[u8]> = batch
                .requests
                .iter()
                .map(|r| r.op.as_slice())
                .filter(|op| !op.starts_with(RECONFIG_TAG))
                .collect();
            self.service.prepare_batch(&ops);
        }
    }

    /// Execute a decided batch without sending anything (replay at restart).
    pub(super) fn execute_batch_quiet(&mut self, slot: Slot, batch: &Batch) {
        self.begin_batch(slot, batch);
        for req in batch.requests.iter() {
            self.execute_request_quiet(slot, req);
        }
    }

    /// At checkpoint `slot`, before its snapshot: drop the entries of
    /// clients idle for `client_expiry_slots` or more, and raise the
    /// session floor past them (module docs).
    pub(super) fn expire_clients(&mut self, slot: Slot) {
        let horizon = self.p.client_expiry_slots;
        let before = self.clients.len();
        let mut freed = 0;
        let pinned = &self.p.pinned_clients;
        // the entries last active at or below `slot - horizon` go
        let cut = slot.saturating_sub(horizon);
        if slot >= horizon {
            self.session_floor = self.session_floor.max(cut.saturating_add(1));
        }
        self.clients.retain(|c, cs| {
            let keep = cs.last_slot > cut || slot < horizon || pinned.contains(c);
            if !keep {
                freed += entry_bytes(cs);
            }
            keep
        });
        self.client_bytes -= freed;
        self.stats.clients_expired += (before - self.clients.len()) as u64;
    }

    /// The replicated state: the service's snapshot, the client table, the
    /// session floor and the last batch's time.
    pub(super) fn snapshot_bytes(&self) -> Vec<u8> {
        let svc = self.service.snapshot();
        let fields = (svc, &self.clients, self.session_floor, self.batch_time);
        codec::to_bytes(&(fields, &self.epochs.state))
    }

    pub(super) fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), String> {
        type State = (Vec<u8>, BTreeMap<ClientId, ClientState>, Slot, u64);
        let ((svc, clients, floor, time), epochs): (State, EpochState) =
            codec::from_bytes(bytes, usize::MAX).map_err(|e| e.to_string())?;
        self.epochs.state = epochs;
        self.order.set_fence(self.epochs.state.pending_at);
        self.service.restore(&svc)?;
        self.session_floor = floor;
        self.batch_time = time;
        self.time_high = self.time_high.max(time);
        self.client_bytes = clients.values().map(entry_bytes).sum();
        self.client_bytes_peak = self.client_bytes_peak.max(self.client_bytes);
        self.clients = clients;
        Ok(())
    }
}

/// The backup's rule for a proposed batch's timestamp (module docs, "Batch
/// time"): at least `executed`, the agreed time of the last batch executed
/// here, and within `skew` of `own`, this replica's wall clock (both in ms
/// since the Unix epoch).
pub(super) fn check_time(
    time_ms: u64,
    (executed, own): (u64, u64),
    skew: Time,
) -> Result<(), String> {
    let skew_ms = skew / MILLIS;
    if time_ms < executed {
        return Err(format!(
            "batch time {time_ms} ms below the last executed batch's ({executed} ms)"
        ));
    }
    if time_ms.abs_diff(own) > skew_ms {
        return Err(format!(
            "batch time {time_ms} ms more than max_clock_skew ({skew_ms} ms) from this replica's clock ({own} ms)"
        ));
    }
    Ok(())
}
