//! Client requests at a replica (PBFT OSDI'99 §4.1, the client's side of the
//! protocol): authentication (PBFT-style MAC authenticators), the pending
//! table and the leader's queue, batching into proposals (BFT-SMaRt's batches,
//! with the pipeline limits of [`Params`]), the checks a proposed batch must
//! pass, unordered read-only requests (PBFT's read-only optimization, made
//! linearizable by waiting for every ACCEPTed slot), and the
//! request timer: BFT-SMaRt's two-step timeout (first forward the request to
//! the leader, then suspect it, which starts Mod-SMaRt's synchronization phase).
//!
//! # Partial authenticators (issue 10 item 6)
//!
//! A MAC entry convinces its own replica only, so a Byzantine client can send
//! a request that the leader authenticates and the backups do not: a correct
//! leader's batch is then refused (`propose-invalid`) and a view change
//! follows. PBFT (TOCS'02 §4.4 discussion, Castro's thesis §3.2.2) answers
//! this with transferable authentication for such requests; BFT-SMaRt offers
//! signed requests. Here a request may carry the client's signature
//! ([`Request::sig`]), which every replica judges alike; a correct client adds
//! one to each retransmission. A backup that finds an unsigned request whose
//! MAC entry fails inside a batch puts its client in [`MustSign`] (bounded,
//! oldest evicted): it drops that client's unsigned requests, held or new, so
//! once a replica has seen the poison it never proposes it as a leader nor
//! suspects a leader over it. The attack costs at most one refused batch (and
//! view change) per replica that has not yet seen it, per client id (and per
//! eviction). An honest client named in a Byzantine leader's forged request
//! loses only its MAC-only fast path at that replica.

use super::execute::Turn;
use super::pending::PendingTable;
use super::reconfig;
use super::{Ctx, Replica, Status, Timer};
use crate::fault::Fault;
use crate::message::*;
use crate::params::{GroupInfo, Params};
use byzscale_core::crypto::Crypto;
use byzscale_core::service::Service;
use byzscale_core::{Addr, ClientId, Time};
use std::collections::{BTreeSet, VecDeque};

/// A request waiting to be executed.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) req: Request,
    pub(super) arrival: Time,
    /// Already forwarded to the leader of the current view after a timeout.
    pub(super) forwarded: bool,
}

/// Most clients a replica requires signatures of; the oldest mark goes first
/// (an evicted Byzantine client can poison one more batch, then is marked again).
const MUST_SIGN_MAX: usize = 4096;

/// The clients whose ordered requests this replica takes only signed: those
/// with an unsigned request that failed this replica's authentication inside
/// a proposed batch. Bounded by [`MUST_SIGN_MAX`], oldest evicted first. Local
/// to the replica (never in the replicated state): it decides only what this
/// replica keeps pending and proposes, never what a batch executes.
#[derive(Default)]
pub(super) struct MustSign {
    set: BTreeSet<ClientId>,
    order: VecDeque<ClientId>,
}

impl MustSign {
    pub(super) fn contains(&self, c: &ClientId) -> bool {
        self.set.contains(c)
    }
    /// Mark `c`; false if it was marked already.
    fn insert(&mut self, c: ClientId) -> bool {
        if !self.set.insert(c) {
            return false;
        }
        self.order.push_back(c);
        if self.order.len() > MUST_SIGN_MAX {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}

/// Why a proposed batch is refused.
pub(super) struct Refusal {
    pub(super) detail: String,
    /// The client of an unsigned request whose MAC entry for this replica
    /// failed (the client's partial authenticator, or a leader's forgery).
    pub(super) unauthenticated: Option<ClientId>,
}

impl From<String> for Refusal {
    fn from(detail: String) -> Self {
        Refusal {
            detail,
            unauthenticated: None,
        }
    }
}

/// Whether `r` is authentic to this replica (at position `idx`): its signature
/// if it carries one (which every replica judges alike), else its MAC entry.
fn authentic(r: &Request, g: &GroupInfo, idx: usize, crypto: &Crypto) -> bool {
    let bytes = r.signed_bytes(g.id);
    let from = Addr::Client(r.client);
    match &r.sig {
        Some(sig) => crypto.verify(from, &bytes, sig).is_ok(),
        None => crypto.verify_mac(from, &bytes, &r.auth[idx]),
    }
}

/// Check a proposed batch: its size, each request's form, no request twice,
/// and the authentication ([`authentic`]) of every request not already
/// pending here (those were authenticated on arrival).
pub(super) fn validate_batch(
    batch: &Batch,
    p: &Params,
    g: &GroupInfo,
    idx: usize,
    pending: &PendingTable,
    crypto: &Crypto,
) -> Result<(), Refusal> {
    if batch.requests.len() > p.batch_max_requests.max(1) * 2 {
        return Err(Refusal::from("batch too large".to_string()));
    }
    let mut ids = BTreeSet::new();
    for r in batch.requests.iter() {
        if r.read_only || r.auth.len() != g.n() || r.op.len() > p.max_op_bytes {
            return Err(format!("malformed request {}#{}", r.client, r.seq).into());
        }
        if !ids.insert(r.id()) {
            return Err(format!("duplicate request {}#{}", r.client, r.seq).into());
        }
        reconfig::check_request(r, g, crypto)?;
        let known = pending.get(&r.id()).is_some_and(|p| p.req.op == r.op);
        if !known && !authentic(r, g, idx, crypto) {
            let signed = if r.sig.is_some() {
                "signed"
            } else {
                "unsigned"
            };
            return Err(Refusal {
                detail: format!(
                    "{signed} request {}#{} fails authentication",
                    r.client, r.seq
                ),
                unauthenticated: r.sig.is_none().then_some(r.client),
            });
        }
    }
    Ok(())
}

impl<S: Service> Replica<S> {
    /// An unsigned request of `client` failed authentication here inside a
    /// batch: from now on take its ordered requests only signed, and drop the
    /// unsigned ones pending (so neither our proposals nor our request timer
    /// act on a request other replicas may not authenticate).
    pub(super) fn require_signature(&mut self, client: ClientId) {
        if !self.must_sign.insert(client) {
            return;
        }
        tracing::info!(replica = %self.me, %client, marked = self.must_sign.len(), "client must sign its requests");
        self.pending
            .retain(|(c, _, _), p| *c != client || p.req.sig.is_some());
    }

    /// Requests a backup forwarded after a timeout: authenticated by the client's
    /// MAC for us, like a direct request.
    pub(super) fn on_forward(&mut self, from: usize, reqs: Vec<Request>, cx: &mut Ctx<S>) {
        if reqs.len() > self.p.batch_max_requests {
            let who = Addr::Node(self.g.members[from]);
            let detail = format!("{} requests", reqs.len());
            self.fault(cx, who, Fault::ForwardMalformed, detail);
            return;
        }
        for req in reqs {
            if !req.read_only {
                let client = Addr::Client(req.client);
                self.on_request(client, req, cx);
            }
        }
    }

    pub(super) fn on_request(&mut self, from: Addr, req: Request, cx: &mut Ctx<S>) {
        if from != Addr::Client(req.client) {
            let detail = format!("request claims {}", req.client);
            self.fault(cx, from, Fault::RequestSpoof, detail);
            return;
        }
        if req.op.len() > self.p.max_op_bytes {
            let detail = format!(
                "{}#{}: an operation of {} bytes, the limit is {} (max_op_bytes)",
                req.client,
                req.seq,
                req.op.len(),
                self.p.max_op_bytes
            );
            self.fault(cx, from, Fault::RequestTooLarge, detail);
            return;
        }
        if req.auth.len() != self.g.n() && self.config().epoch > 0 {
            // most likely a client of an older configuration: tell it
            let epoch = self.config().epoch;
            let replica = self.me;
            cx.send(from, Message::NewEpoch { replica, epoch });
            return;
        }
        if req.auth.len() != self.g.n() {
            let detail = format!("{} MAC entries for {} replicas", req.auth.len(), self.g.n());
            self.fault(cx, from, Fault::RequestMalformed, detail);
            return;
        }
        if !req.read_only && req.sig.is_none() && self.must_sign.contains(&req.client) {
            // a correct client signs its retransmission
            tracing::debug!(replica = %self.me, client = %req.client, seq = req.seq, "unsigned request of a client that must sign");
            return;
        }
        if !authentic(&req, &self.g, self.idx, cx.crypto()) {
            let detail = format!("bad authenticator on {}#{}", req.client, req.seq);
            self.fault(cx, from, Fault::RequestAuth, detail);
            return;
        }
        if let Err(detail) = reconfig::check_request(&req, &self.g, cx.crypto()) {
            self.fault(cx, from, Fault::ConfigInvalid, detail);
            return;
        }
        if req.read_only {
            self.on_read(req, cx);
            return;
        }
        let id = req.id();
        match self.turn(id) {
            Turn::Done => {
                // retransmission of an executed request: answer from the
                // reply cache, once the ACCEPT it follows is durable here
                // (execute_ready)
                let cached = self
                    .clients
                    .get(&req.client)
                    .and_then(|c| c.replies.iter().find(|(q, _, _)| *q == req.seq));
                if let Some((_, slot, result)) = cached {
                    let reply = self.reply(&req, *slot, result.clone());
                    cx.barrier();
                    cx.send(from, reply);
                } else {
                    let entry = self.clients.get(&req.client);
                    tracing::debug!(replica = %self.me, client = %req.client, session = req.session, seq = req.seq,
                        entry_session = entry.map(|c| c.session), entry_last = entry.map(|c| c.last),
                        "retransmission of an executed request whose reply is no longer cached");
                }
                return;
            }
            Turn::Stale => {
                // its session is over: tell a client without an entry the
                // floor (it moves to a newer session), drop the rest
                if let Some(refusal) = self.stale_refusal(&req) {
                    cx.send(from, refusal);
                } else {
                    tracing::debug!(replica = %self.me, client = %req.client, session = req.session, seq = req.seq, "request of an older session than the client's entry: dropped");
                }
                return;
            }
            Turn::Ahead(ahead) if ahead >= self.horizon() => {
                tracing::debug!(replica = %self.me, client = %req.client, seq = req.seq, ahead, "request beyond the client window");
                return;
            }
            Turn::Next | Turn::Ahead(_) => {}
        }
        let id = req.id();
        if self.pending.contains_key(&id) {
            return;
        }
        let arrival = cx.now();
        let forwarded = false;
        let pending = Pending {
            req,
            arrival,
            forwarded,
        };
        let (per_client, total) = (self.p.client_pending_bytes, self.p.pending_bytes);
        if !self.pending.insert(pending, per_client, total) {
            tracing::debug!(replica = %self.me, client = %id.0, seq = id.2, "pending table full for this request");
            return;
        }
        self.queue.push_back(id);
        if self.is_leader() {
            self.try_propose(cx);
        } else {
            self.arm_request_timer(cx);
        }
    }

    /// Linearizable unordered reads: answer only after executing every slot
    /// we have ACCEPTed. A write that completed was decided by a quorum of
    /// ACCEPTs; the read's quorum of matching replies intersects it in a
    /// correct replica, which therefore answers with that write applied, so
    /// no quorum can agree on a state older than a completed write.
    fn on_read(&mut self, req: Request, cx: &mut Ctx<S>) {
        let mark = self.order.accepted_high();
        if self.order.delivered() >= mark {
            self.answer_read(&req, cx);
        } else {
            if self.deferred_reads.len() >= 4 * self.p.batch_max_requests {
                self.deferred_reads.pop_front();
            }
            self.deferred_reads.push_back((mark, req));
        }
    }

    fn answer_read(&self, req: &Request, cx: &mut Ctx<S>) {
        if let Some(result) = self.service.query(&req.op) {
            cx.send(Addr::Client(req.client), self.reply(req, 0, result));
        }
    }

    /// Answer the deferred reads whose mark has been executed.
    pub(super) fn release_reads(&mut self, cx: &mut Ctx<S>) {
        while let Some((mark, _)) = self.deferred_reads.front() {
            if *mark > self.order.delivered() {
                break;
            }
            let (_, req) = self.deferred_reads.pop_front().expect("non-empty");
            self.answer_read(&req, cx);
        }
    }

    /// As the leader, propose batches of queued requests while the pipeline
    /// (`max_in_flight`, `pipeline_min_batch`, `batch_delay`) and the window allow.
    pub(super) fn try_propose(&mut self, cx: &mut Ctx<S>) {
        if !self.is_leader() || self.order.status() != Status::Normal || self.fetching.is_some() {
            return;
        }
        loop {
            let in_flight = self.order.in_flight();
            if in_flight >= self.p.max_in_flight || !self.order.can_propose() {
                return;
            }
            // drop stale ids at the front
            while let Some(id) = self.queue.front() {
                if self.pending.contains_key(id) && !self.proposed.contains(id) {
                    break;
                }
                self.queue.pop_front();
            }
            if self.queue.is_empty() {
                return;
            }
            if in_flight > 0 && self.queue.len() < self.p.pipeline_min_batch {
                // a decision will call us again
                return;
            }
            if self.p.batch_delay > 0
                && in_flight > 0
                && self.queue.len() < self.p.batch_max_requests
            {
                if !self.batch_timer {
                    self.batch_timer = true;
                    cx.set_timer(Timer::Batch, self.p.batch_delay);
                }
                return;
            }
            let requests = self.next_batch();
            if requests.is_empty() {
                return;
            }
            // never below a time the group agreed on or this leader saw
            // (its clock may be behind the previous leader's)
            let time = cx.wall_ms().max(self.batch_time).max(self.time_high);
            self.time_high = time;
            let events = self.order.propose(Batch::at(time, requests), cx.crypto());
            self.apply(events, cx);
        }
    }

    /// Take the next batch off the queue, marking its requests proposed.
    fn next_batch(&mut self) -> Vec<Request> {
        let mut requests = Vec::new();
        let mut bytes = 0;
        while let Some(id) = self.queue.front().copied() {
            if requests.len() >= self.p.batch_max_requests {
                break;
            }
            let Some(p) = self.pending.get(&id) else {
                self.queue.pop_front();
                continue;
            };
            if self.proposed.contains(&id) || !self.in_turn(&id) {
                // a request not in its turn waits pending; it is queued
                // again once its predecessor is proposed or executed
                self.queue.pop_front();
                continue;
            }
            if !requests.is_empty() && bytes + p.req.op.len() > self.p.batch_max_bytes {
                break;
            }
            bytes += p.req.op.len();
            requests.push(p.req.clone());
            self.proposed.insert(id);
            self.queue.pop_front();
            self.queue_successor(id);
        }
        requests
    }

    /// Whether a leader may propose `id` now: it runs next after what this
    /// replica executed of its client, or its predecessor is proposed (in
    /// an earlier slot, or earlier in this batch). Requests execute only in
    /// their client's order (`execute.rs`); one proposed out of turn would
    /// be skipped at execution.
    fn in_turn(&self, &(c, s, q): &ReqId) -> bool {
        self.turn((c, s, q)) == Turn::Next || (q > 1 && self.proposed.contains(&(c, s, q - 1)))
    }

    /// Queue `id`'s successor if it waits pending, unproposed.
    pub(super) fn queue_successor(&mut self, (c, s, q): ReqId) {
        let next = (c, s, q.saturating_add(1));
        if self.pending.contains_key(&next) && !self.proposed.contains(&next) {
            self.queue.push_back(next);
        }
    }

    /// The batch delay ran out: propose what is queued, however little.
    pub(super) fn on_batch_timer(&mut self, cx: &mut Ctx<S>) {
        self.batch_timer = false;
        let delay = self.p.batch_delay;
        self.p.batch_delay = 0;
        self.try_propose(cx);
        self.p.batch_delay = delay;
    }

    pub(super) fn arm_request_timer(&mut self, cx: &mut Ctx<S>) {
        if self.request_timer || self.order.status() != Status::Normal || self.is_leader() {
            return;
        }
        if let Some(oldest) = self.oldest_due_request() {
            self.request_timer = true;
            let due = oldest + self.p.request_timeout;
            cx.set_timer(Timer::Request, due.saturating_sub(cx.now()).max(1));
        }
    }

    pub(super) fn on_request_timer(&mut self, cx: &mut Ctx<S>) {
        self.request_timer = false;
        if self.order.status() != Status::Normal || self.is_leader() {
            return;
        }
        match self.oldest_due_request() {
            Some(t) if cx.now() >= t + self.p.request_timeout => self.request_timed_out(cx),
            _ => self.arm_request_timer(cx),
        }
    }

    /// Whether `id` is the next request its client needs executed (later ones
    /// legitimately wait for it, so they are not evidence against the leader).
    fn is_due(&self, id: &ReqId) -> bool {
        self.turn(*id) == Turn::Next
    }

    /// Arrival time of the oldest pending request that is due.
    fn oldest_due_request(&self) -> Option<Time> {
        self.pending
            .iter()
            .filter(|(id, _)| self.is_due(id))
            .map(|(_, p)| p.arrival)
            .min()
    }

    /// First timeout of a request: forward it to the leader (it may never have
    /// received it) and wait again; second timeout: suspect the leader.
    fn request_timed_out(&mut self, cx: &mut Ctx<S>) {
        let now = cx.now();
        let timeout = self.p.request_timeout;
        let overdue: Vec<ReqId> = self
            .pending
            .iter()
            .filter(|(id, p)| self.is_due(id) && now >= p.arrival + timeout)
            .map(|(id, _)| *id)
            .collect();
        if overdue.iter().any(|id| self.pending[id].forwarded) {
            if self.stop_sent > self.view() {
                // our STOP may have been lost: say it again until the view moves
                let view = self.stop_sent;
                cx.multicast(self.others(), Message::Stop { view });
            } else {
                let v = self.view() + 1;
                self.send_stop(v, cx);
            }
            for id in &overdue {
                if let Some(p) = self.pending.get_mut(id) {
                    p.arrival = now;
                }
            }
            self.arm_request_timer(cx);
            return;
        }
        let mut reqs = Vec::new();
        for id in overdue {
            let p = self.pending.get_mut(&id).expect("listed above");
            p.forwarded = true;
            p.arrival = now;
            reqs.push(p.req.clone());
        }
        let leader = Addr::Node(self.order.leader());
        for chunk in reqs.chunks(self.p.batch_max_requests.max(1)) {
            cx.send(leader, Message::Forward(chunk.to_vec()));
        }
        self.arm_request_timer(cx);
    }
}
