//! The SMR replica: normal case, checkpoints, state/log transfer, synchronization
//! phase (view change). See the crate docs for the paper mapping.
//!
//! Invariants kept at run time:
//! - a replica writes for at most one digest per (view, slot);
//! - a slot is decided only with a quorum of ACCEPTs (or a weak quorum of matching
//!   log entries) and a batch whose digest matches;
//! - slots execute strictly in order, each once; requests per client in FIFO order.

use crate::fault::Fault;
use crate::message::*;
use crate::params::{GroupInfo, Params};
use byzscale_core::codec;
use byzscale_core::crypto::{Digest, Signature};
use byzscale_core::service::Service;
use byzscale_core::{Addr, ClientId, Cx, NodeId, Protocol, Time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Normal,
    /// Synchronization phase towards this view.
    Changing(View),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Request,
    ViewChange,
    Batch,
    Fetch,
}

#[derive(Debug)]
pub enum Input {
    /// Operator (or test) asks this replica to suspect the current leader.
    Suspect,
}

#[derive(Debug, Clone)]
pub enum Output {
    /// Slot decided (emitted once per slot, in slot order, at execution).
    Decided {
        slot: Slot,
        view: View,
        digest: Digest,
        batch: Batch,
    },
    /// Entered `view` with `leader` after a synchronization phase.
    ViewChanged { view: View, leader: NodeId },
    /// This replica asked to leave its view.
    Suspected { view: View },
    /// A checkpoint became stable.
    Stable { slot: Slot, state: Digest },
    /// The state was replaced by a snapshot from other replicas.
    StateTransferred { slot: Slot },
}

/// What a replica asks its driver to make durable ([`byzscale_core::Effect::Persist`]).
#[derive(Debug, Clone)]
pub enum Record {
    /// Slot `slot` was decided with `batch` and executed (append to the log).
    Decided { slot: Slot, batch: Batch },
    /// The state at stable checkpoint `slot` (this replica's own, or one
    /// installed by state transfer): the log up to `slot` may be dropped.
    Checkpoint { slot: Slot, snapshot: Vec<u8> },
}

/// A nested protocol that persists nothing lifts into a replica's records.
impl From<byzscale_core::NoRecord> for Record {
    fn from(n: byzscale_core::NoRecord) -> Self {
        match n {}
    }
}

/// Per-client execution state: part of the replicated state (and the snapshot).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct ClientState {
    last: u64,
    replies: VecDeque<(u64, Vec<u8>)>,
    buffered: BTreeMap<u64, Request>,
}

#[derive(Debug)]
struct Pending {
    req: Request,
    arrival: Time,
    /// Already forwarded to the leader of the current view after a timeout.
    forwarded: bool,
}

#[derive(Default, Debug)]
struct SlotState {
    /// The value accepted from the leader of `view` (or from a SYNC).
    proposal: Option<(View, Digest, Batch)>,
    /// WRITE votes per (view, digest).
    writes: BTreeMap<(View, Digest), BTreeSet<usize>>,
    accepts: BTreeMap<(View, Digest), BTreeSet<usize>>,
    /// Highest view in which we prepared a value (PBFT's P component).
    prepared: Option<(View, Digest, Batch)>,
    /// Values we accepted a PROPOSE for, newest view first (PBFT's Q component).
    pre_prepared: Vec<(Digest, View)>,
    wrote: Option<View>,
    accepted: Option<View>,
    /// Digest known decided (a quorum of ACCEPTs) and the batch once we have it.
    decided_digest: Option<Digest>,
    decided: Option<(View, Digest, Batch)>,
    /// Log-transfer votes: digest → senders, and the batch.
    log_votes: BTreeMap<Digest, (BTreeSet<usize>, Batch)>,
}

#[derive(Default, Debug)]
struct CkptState {
    mine: Option<(Digest, Vec<u8>)>,
    votes: BTreeMap<Digest, BTreeMap<usize, Signature>>,
}

/// The outcome of the synchronization phase's decision procedure.
struct Selection {
    cert: Option<CheckpointCert>,
    min_s: Slot,
    max_s: Slot,
    picks: BTreeMap<Slot, Batch>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub view: View,
    pub executed: Slot,
    pub low: Slot,
    pub pending: usize,
    pub decided_slots: u64,
    pub executed_requests: u64,
    pub view_changes: u64,
    pub state_transfers: u64,
    pub faults: u64,
}

pub struct Replica<S: Service> {
    me: NodeId,
    idx: usize,
    g: GroupInfo,
    p: Params,
    service: S,

    view: View,
    status: Status,
    low: Slot,
    executed: Slot,
    next_slot: Slot,
    highest_seen: Slot,
    slots: BTreeMap<Slot, SlotState>,

    pending: BTreeMap<(ClientId, u64), Pending>,
    queue: VecDeque<(ClientId, u64)>,
    proposed: BTreeSet<(ClientId, u64)>,
    clients: BTreeMap<ClientId, ClientState>,

    ckpts: BTreeMap<Slot, CkptState>,
    stable: Option<CheckpointCert>,
    stable_snapshot: Option<Vec<u8>>,
    fetching: Option<CheckpointCert>,

    stop_sent: View,
    stops: BTreeMap<View, BTreeSet<usize>>,
    stopdata: BTreeMap<View, BTreeMap<NodeId, StopData>>,
    last_sync: Option<(View, Vec<StopData>)>,
    view_hints: BTreeMap<usize, View>,
    vc_attempts: u32,

    /// Normal-case messages for a view not installed yet (they can overtake the
    /// SYNC that installs it); replayed on installation. Bounded.
    future: VecDeque<(usize, Message)>,
    /// Highest slot this replica sent an ACCEPT for.
    accepted_high: Slot,
    /// Read-only requests waiting until `executed` reaches the mark (the
    /// `accepted_high` when they arrived). See `on_request`.
    deferred_reads: VecDeque<(Slot, Request)>,
    request_timer: bool,
    batch_timer: bool,
    fetch_timer: bool,
    executed_at_fetch: Slot,
    stats: Stats,
}

type Ctx<'a, S> = Cx<'a, Replica<S>>;

impl<S: Service> Replica<S> {
    /// A replica at position `g.index_of(me)` with a fresh service.
    pub fn new(me: NodeId, g: GroupInfo, p: Params, service: S) -> Self {
        let idx = g
            .index_of(me)
            .expect("replica must be a member of its group");
        Replica {
            me,
            idx,
            g,
            p,
            service,
            view: 0,
            status: Status::Normal,
            low: 0,
            executed: 0,
            next_slot: 1,
            highest_seen: 0,
            slots: BTreeMap::new(),
            pending: BTreeMap::new(),
            queue: VecDeque::new(),
            proposed: BTreeSet::new(),
            clients: BTreeMap::new(),
            ckpts: BTreeMap::new(),
            stable: None,
            stable_snapshot: None,
            fetching: None,
            stop_sent: 0,
            stops: BTreeMap::new(),
            stopdata: BTreeMap::new(),
            last_sync: None,
            view_hints: BTreeMap::new(),
            vc_attempts: 0,
            future: VecDeque::new(),
            accepted_high: 0,
            deferred_reads: VecDeque::new(),
            request_timer: false,
            batch_timer: false,
            fetch_timer: false,
            executed_at_fetch: 0,
            stats: Stats::default(),
        }
    }

    /// Restart from durable state: a snapshot taken at a stable checkpoint (as
    /// emitted in [`Record::Checkpoint`]) and the decided batches after it. The
    /// replica then catches up with the others by log and state transfer.
    pub fn recover(
        me: NodeId,
        g: GroupInfo,
        p: Params,
        service: S,
        snapshot: Option<(Slot, Vec<u8>)>,
        log: Vec<(Slot, Batch)>,
    ) -> Result<Self, String> {
        let mut r = Replica::new(me, g, p, service);
        if let Some((slot, bytes)) = snapshot {
            r.restore_snapshot(&bytes)?;
            r.executed = slot;
            r.low = slot;
            r.next_slot = slot + 1;
            r.stable_snapshot = Some(bytes);
        }
        for (slot, batch) in log {
            if slot == r.executed + 1 {
                for req in batch.requests.iter() {
                    r.execute_request_quiet(req);
                }
                r.executed = slot;
                r.next_slot = slot + 1;
            }
        }
        r.highest_seen = r.executed;
        Ok(r)
    }

    pub fn view(&self) -> View {
        self.view
    }
    pub fn status(&self) -> Status {
        self.status
    }
    pub fn executed(&self) -> Slot {
        self.executed
    }
    pub fn is_leader(&self) -> bool {
        self.g.leader(self.view) == self.me
    }
    pub fn service(&self) -> &S {
        &self.service
    }
    pub fn group(&self) -> &GroupInfo {
        &self.g
    }
    pub fn stats(&self) -> Stats {
        Stats {
            view: self.view,
            executed: self.executed,
            low: self.low,
            pending: self.pending.len(),
            ..self.stats
        }
    }

    // ------------------------------------------------------------------ helpers

    fn others(&self) -> Vec<Addr> {
        self.g
            .members
            .iter()
            .filter(|m| **m != self.me)
            .map(|m| Addr::Node(*m))
            .collect()
    }

    fn fault(&mut self, cx: &mut Ctx<S>, who: Addr, kind: Fault, detail: String) {
        self.stats.faults += 1;
        tracing::warn!(replica = %self.me, peer = %who, kind = kind.name(), %detail, "fault");
        cx.fault(who, kind, detail);
    }

    fn in_window(&self, slot: Slot) -> bool {
        slot > self.low && slot <= self.low + self.p.window
    }

    fn quorum(&self, members: &BTreeSet<usize>) -> bool {
        self.g.qs.is_quorum(members.iter().copied())
    }

    fn weak(&self, members: &BTreeSet<usize>) -> bool {
        self.g.qs.is_weak(members.iter().copied())
    }

    fn snapshot_bytes(&self) -> Vec<u8> {
        codec::to_bytes(&(self.service.snapshot(), &self.clients))
    }

    fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (svc, clients): (Vec<u8>, BTreeMap<ClientId, ClientState>) =
            codec::from_bytes(bytes, usize::MAX).map_err(|e| e.to_string())?;
        self.service.restore(&svc)?;
        self.clients = clients;
        Ok(())
    }

    fn note_view_hint(&mut self, from: usize, view: View, cx: &mut Ctx<S>) {
        if view <= self.view {
            return;
        }
        let h = self.view_hints.entry(from).or_insert(0);
        *h = (*h).max(view);
        let ahead: BTreeSet<usize> = self
            .view_hints
            .iter()
            .filter(|(_, v)| **v > self.view)
            .map(|(i, _)| *i)
            .collect();
        if self.weak(&ahead) {
            self.arm_fetch(cx);
        }
    }

    /// Keep a normal-case message of a view we have not installed yet.
    fn buffer_future(&mut self, from: usize, view: View, msg: Message) {
        let target = match self.status {
            Status::Normal => self.view,
            Status::Changing(t) => t,
        };
        if view > self.view && view <= target.max(self.view + 1) + 1 {
            if self.future.len() as u64 >= 4 * self.p.window {
                self.future.pop_front();
            }
            self.future.push_back((from, msg));
        }
    }

    fn note_slot(&mut self, slot: Slot, cx: &mut Ctx<S>) {
        if slot > self.highest_seen {
            self.highest_seen = slot;
        }
        if self.highest_seen > self.executed {
            self.arm_fetch(cx);
        }
    }

    fn arm_fetch(&mut self, cx: &mut Ctx<S>) {
        if !self.fetch_timer {
            self.fetch_timer = true;
            self.executed_at_fetch = self.executed;
            cx.set_timer(Timer::Fetch, self.p.fetch_interval);
        }
    }

    fn arm_request_timer(&mut self, cx: &mut Ctx<S>) {
        if self.request_timer || self.status != Status::Normal || self.is_leader() {
            return;
        }
        if let Some(oldest) = self.oldest_due_request() {
            self.request_timer = true;
            let due = oldest + self.p.request_timeout;
            cx.set_timer(Timer::Request, due.saturating_sub(cx.now()).max(1));
        }
    }

    /// Arrival time of the oldest pending request that is the next one its client
    /// needs executed (later ones legitimately wait for it, so they are not
    /// evidence against the leader).
    /// First timeout of a request: forward it to the leader (it may never have
    /// received it) and wait again; second timeout: suspect the leader.
    fn request_timed_out(&mut self, cx: &mut Ctx<S>) {
        let now = cx.now();
        let timeout = self.p.request_timeout;
        let clients = &self.clients;
        let due =
            |(c, s): &(ClientId, u64)| *s == clients.get(c).map(|cs| cs.last).unwrap_or(0) + 1;
        let overdue: Vec<(ClientId, u64)> = self
            .pending
            .iter()
            .filter(|(id, p)| due(id) && now >= p.arrival + timeout)
            .map(|(id, _)| *id)
            .collect();
        if overdue.iter().any(|id| self.pending[id].forwarded) {
            if self.stop_sent > self.view {
                // our STOP may have been lost: say it again until the view moves
                let view = self.stop_sent;
                cx.multicast(self.others(), Message::Stop { view });
            } else {
                let v = self.view + 1;
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
        for chunk in reqs.chunks(self.p.batch_max_requests.max(1)) {
            cx.send(
                Addr::Node(self.g.leader(self.view)),
                Message::Forward(chunk.to_vec()),
            );
        }
        self.arm_request_timer(cx);
    }

    fn oldest_due_request(&self) -> Option<Time> {
        self.pending
            .iter()
            .filter(|((c, s), _)| *s == self.clients.get(c).map(|cs| cs.last).unwrap_or(0) + 1)
            .map(|(_, p)| p.arrival)
            .min()
    }

    // ------------------------------------------------------------ client requests

    /// Requests a backup forwarded after a timeout: authenticated by the client's
    /// MAC for us, like a direct request.
    fn on_forward(&mut self, from: usize, reqs: Vec<Request>, cx: &mut Ctx<S>) {
        if reqs.len() > self.p.batch_max_requests {
            let who = Addr::Node(self.g.members[from]);
            self.fault(
                cx,
                who,
                Fault::ForwardMalformed,
                format!("{} requests", reqs.len()),
            );
            return;
        }
        for req in reqs {
            if !req.read_only {
                let client = Addr::Client(req.client);
                self.on_request(client, req, cx);
            }
        }
    }

    fn on_request(&mut self, from: Addr, req: Request, cx: &mut Ctx<S>) {
        if from != Addr::Client(req.client) {
            self.fault(
                cx,
                from,
                Fault::RequestSpoof,
                format!("request claims {}", req.client),
            );
            return;
        }
        if req.op.len() > self.p.max_op_bytes || req.auth.len() != self.g.n() {
            self.fault(
                cx,
                from,
                Fault::RequestMalformed,
                "bad size or authenticator".into(),
            );
            return;
        }
        let bytes = Request::auth_bytes(self.g.id, req.client, req.seq, req.read_only, &req.op);
        if !cx.crypto().verify_mac(from, &bytes, &req.auth[self.idx]) {
            self.fault(
                cx,
                from,
                Fault::RequestAuth,
                format!("bad MAC on {}#{}", req.client, req.seq),
            );
            return;
        }
        if req.read_only {
            // Linearizable unordered reads: answer only after executing every slot
            // we have ACCEPTed. A write that completed was decided by a quorum of
            // ACCEPTs; the read's quorum of matching replies intersects it in a
            // correct replica, which therefore answers with that write applied, so
            // no quorum can agree on a state older than a completed write.
            if self.executed >= self.accepted_high {
                self.answer_read(&req, cx);
            } else {
                if self.deferred_reads.len() >= 4 * self.p.batch_max_requests {
                    self.deferred_reads.pop_front();
                }
                self.deferred_reads.push_back((self.accepted_high, req));
            }
            return;
        }
        let cs = self.clients.get(&req.client);
        let last = cs.map(|c| c.last).unwrap_or(0);
        if req.seq <= last {
            // retransmission of an executed request: answer from the reply cache
            if let Some((_, result)) =
                cs.and_then(|c| c.replies.iter().find(|(s, _)| *s == req.seq))
            {
                let reply = self.reply(req.client, req.seq, false, result.clone());
                cx.send(from, reply);
            }
            return;
        }
        if req.seq > last + self.horizon() {
            tracing::debug!(replica = %self.me, client = %req.client, seq = req.seq, last, "request beyond the client window");
            return;
        }
        let id = req.id();
        if self.pending.contains_key(&id) {
            return;
        }
        self.pending.insert(
            id,
            Pending {
                req,
                arrival: cx.now(),
                forwarded: false,
            },
        );
        self.queue.push_back(id);
        if self.is_leader() {
            self.try_propose(cx);
        } else {
            self.arm_request_timer(cx);
        }
    }

    // ---------------------------------------------------------------- proposing

    fn in_flight(&self) -> u64 {
        self.next_slot.saturating_sub(self.executed + 1)
    }

    fn try_propose(&mut self, cx: &mut Ctx<S>) {
        if !self.is_leader() || self.status != Status::Normal || self.fetching.is_some() {
            return;
        }
        loop {
            if self.in_flight() >= self.p.max_in_flight || !self.in_window(self.next_slot) {
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
            if self.in_flight() > 0 && self.queue.len() < self.p.pipeline_min_batch {
                // a decision will call us again
                return;
            }
            if self.p.batch_delay > 0
                && self.in_flight() > 0
                && self.queue.len() < self.p.batch_max_requests
            {
                if !self.batch_timer {
                    self.batch_timer = true;
                    cx.set_timer(Timer::Batch, self.p.batch_delay);
                }
                return;
            }
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
                if self.proposed.contains(&id) {
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
            }
            if requests.is_empty() {
                return;
            }
            let batch = Batch::new(requests);
            let slot = self.next_slot;
            self.next_slot += 1;
            let view = self.view;
            cx.multicast(
                self.others(),
                Message::Propose {
                    view,
                    slot,
                    batch: batch.clone(),
                },
            );
            self.accept_proposal(view, slot, batch, false, cx);
        }
    }

    fn on_propose(&mut self, from: usize, view: View, slot: Slot, batch: Batch, cx: &mut Ctx<S>) {
        self.note_view_hint(from, view, cx);
        self.note_slot(slot, cx);
        if view > self.view || (view == self.view && self.status != Status::Normal) {
            self.buffer_future(from, view, Message::Propose { view, slot, batch });
            return;
        }
        if view != self.view {
            return;
        }
        if self.g.members[from] != self.g.leader(view) {
            let who = Addr::Node(self.g.members[from]);
            self.fault(
                cx,
                who,
                Fault::ProposeNotLeader,
                format!("view {view} slot {slot}"),
            );
            return;
        }
        if !self.in_window(slot) || slot <= self.executed {
            return;
        }
        if let Err(e) = self.validate_batch(&batch, cx) {
            let who = Addr::Node(self.g.members[from]);
            self.fault(cx, who, Fault::ProposeInvalid, format!("slot {slot}: {e}"));
            return;
        }
        self.accept_proposal(view, slot, batch, true, cx);
    }

    fn validate_batch(&self, batch: &Batch, cx: &Ctx<S>) -> Result<(), String> {
        if batch.requests.len() > self.p.batch_max_requests.max(1) * 2 {
            return Err("batch too large".into());
        }
        let mut ids = BTreeSet::new();
        for r in batch.requests.iter() {
            if r.read_only || r.auth.len() != self.g.n() || r.op.len() > self.p.max_op_bytes {
                return Err(format!("malformed request {}#{}", r.client, r.seq));
            }
            if !ids.insert(r.id()) {
                return Err(format!("duplicate request {}#{}", r.client, r.seq));
            }
            // a request we already hold was authenticated on arrival
            let known = self
                .pending
                .get(&r.id())
                .map(|p| p.req.op == r.op)
                .unwrap_or(false);
            if !known {
                let bytes = Request::auth_bytes(self.g.id, r.client, r.seq, false, &r.op);
                if !cx
                    .crypto()
                    .verify_mac(Addr::Client(r.client), &bytes, &r.auth[self.idx])
                {
                    return Err(format!(
                        "request {}#{} fails authentication",
                        r.client, r.seq
                    ));
                }
            }
        }
        Ok(())
    }

    /// Accept `batch` as the value of `slot` in `view` and vote for it.
    fn accept_proposal(
        &mut self,
        view: View,
        slot: Slot,
        batch: Batch,
        check_equivocation: bool,
        cx: &mut Ctx<S>,
    ) {
        let d = cx.crypto().hash(&batch.bytes());
        let others = self.others();
        let idx = self.idx;
        let ss = self.slots.entry(slot).or_default();
        if let Some((v, pd, _)) = &ss.proposal {
            if *v == view {
                if *pd != d && check_equivocation {
                    let who = Addr::Node(self.g.leader(view));
                    self.fault(
                        cx,
                        who,
                        Fault::Equivocation,
                        format!("two proposals for view {view} slot {slot}"),
                    );
                }
                return;
            }
        }
        for r in batch.requests.iter() {
            self.proposed.insert(r.id());
        }
        ss.pre_prepared.retain(|(pd, _)| *pd != d);
        ss.pre_prepared.insert(0, (d, view));
        ss.pre_prepared.truncate(PRE_PREPARED_KEPT);
        ss.proposal = Some((view, d, batch.clone()));
        if self.g.bft() {
            if ss.wrote != Some(view) {
                ss.wrote = Some(view);
                cx.multicast(
                    others,
                    Message::Write {
                        view,
                        slot,
                        digest: d,
                    },
                );
                ss.writes.entry((view, d)).or_default().insert(idx);
            }
        } else {
            // CFT: no WRITE phase; the proposal itself is the prepared value.
            ss.prepared = Some((view, d, batch));
            self.send_accept(view, slot, d, cx);
        }
        self.check_slot(slot, cx);
    }

    fn send_accept(&mut self, view: View, slot: Slot, d: Digest, cx: &mut Ctx<S>) {
        let idx = self.idx;
        let ss = self.slots.entry(slot).or_default();
        if ss.accepted == Some(view) {
            return;
        }
        ss.accepted = Some(view);
        ss.accepts.entry((view, d)).or_default().insert(idx);
        self.accepted_high = self.accepted_high.max(slot);
        cx.multicast(
            self.others(),
            Message::Accept {
                view,
                slot,
                digest: d,
            },
        );
    }

    fn on_write(&mut self, from: usize, view: View, slot: Slot, d: Digest, cx: &mut Ctx<S>) {
        self.note_view_hint(from, view, cx);
        self.note_slot(slot, cx);
        if view > self.view {
            self.buffer_future(
                from,
                view,
                Message::Write {
                    view,
                    slot,
                    digest: d,
                },
            );
            return;
        }
        if view != self.view
            || self.status != Status::Normal
            || !self.in_window(slot)
            || !self.g.bft()
        {
            return;
        }
        let ss = self.slots.entry(slot).or_default();
        ss.writes.entry((view, d)).or_default().insert(from);
        self.check_slot(slot, cx);
    }

    fn on_accept(&mut self, from: usize, view: View, slot: Slot, d: Digest, cx: &mut Ctx<S>) {
        self.note_view_hint(from, view, cx);
        self.note_slot(slot, cx);
        if view > self.view {
            self.buffer_future(
                from,
                view,
                Message::Accept {
                    view,
                    slot,
                    digest: d,
                },
            );
            return;
        }
        if view != self.view || self.status != Status::Normal || !self.in_window(slot) {
            return;
        }
        self.slots
            .entry(slot)
            .or_default()
            .accepts
            .entry((view, d))
            .or_default()
            .insert(from);
        self.check_slot(slot, cx);
    }

    /// Advance `slot` as far as the votes allow: prepare, accept, decide.
    fn check_slot(&mut self, slot: Slot, cx: &mut Ctx<S>) {
        let view = self.view;
        // prepare (BFT): our proposal plus a quorum of matching WRITEs
        let prepared = {
            let Some(ss) = self.slots.get(&slot) else {
                return;
            };
            match &ss.proposal {
                Some((v, d, _)) if *v == view && self.g.bft() && ss.accepted != Some(view) => ss
                    .writes
                    .get(&(view, *d))
                    .map(|w| self.g.qs.is_quorum(w.iter().copied()))
                    .unwrap_or(false)
                    .then_some(*d),
                _ => None,
            }
        };
        if let Some(d) = prepared {
            let ss = self.slots.get_mut(&slot).expect("slot exists");
            let batch = ss
                .proposal
                .as_ref()
                .map(|p| p.2.clone())
                .unwrap_or_default();
            ss.prepared = Some((view, d, batch));
            self.send_accept(view, slot, d, cx);
        }
        // decide: a quorum of ACCEPTs for some digest
        let Some(ss) = self.slots.get_mut(&slot) else {
            return;
        };
        if ss.decided.is_some() {
            return;
        }
        let mut winner = None;
        for ((v, d), who) in &ss.accepts {
            if self.g.qs.is_quorum(who.iter().copied()) {
                winner = Some((*v, *d));
            }
        }
        let Some((v, d)) = winner else { return };
        ss.decided_digest = Some(d);
        let batch = match &ss.proposal {
            Some((_, pd, b)) if *pd == d => Some(b.clone()),
            _ => ss.log_votes.get(&d).map(|(_, b)| b.clone()),
        };
        match batch {
            Some(b) => {
                ss.decided = Some((v, d, b));
                self.stats.decided_slots += 1;
                self.execute_ready(cx);
            }
            None => self.arm_fetch(cx),
        }
    }

    // ---------------------------------------------------------------- execution

    fn execute_ready(&mut self, cx: &mut Ctx<S>) {
        let mut progressed = false;
        while let Some((v, d, batch)) = self
            .slots
            .get(&(self.executed + 1))
            .and_then(|s| s.decided.clone())
        {
            let slot = self.executed + 1;
            for req in batch.requests.iter() {
                self.execute_request(req, cx);
            }
            self.executed = slot;
            self.stats.executed_requests += batch.requests.len() as u64;
            progressed = true;
            cx.persist(Record::Decided {
                slot,
                batch: batch.clone(),
            });
            cx.output(Output::Decided {
                slot,
                view: v,
                digest: d,
                batch,
            });
            if slot.is_multiple_of(self.p.checkpoint_interval) {
                self.take_checkpoint(slot, cx);
            }
        }
        if progressed {
            self.release_reads(cx);
            self.vc_attempts = 0;
            if self.next_slot <= self.executed {
                self.next_slot = self.executed + 1;
            }
            self.try_propose(cx);
            self.arm_request_timer(cx);
        }
    }

    fn execute_request(&mut self, req: &Request, cx: &mut Ctx<S>) {
        for (client, seq, result) in self.execute_request_quiet(req) {
            let reply = self.reply(client, seq, false, result);
            cx.send(Addr::Client(client), reply);
        }
    }

    fn reply(&self, client: ClientId, seq: u64, read_only: bool, result: Vec<u8>) -> Message {
        Message::Reply(Reply {
            replica: self.me,
            view: self.view,
            client,
            seq,
            read_only,
            result,
        })
    }

    fn answer_read(&self, req: &Request, cx: &mut Ctx<S>) {
        if let Some(result) = self.service.query(&req.op) {
            cx.send(
                Addr::Client(req.client),
                self.reply(req.client, req.seq, true, result),
            );
        }
    }

    /// Answer the deferred reads whose mark has been executed.
    fn release_reads(&mut self, cx: &mut Ctx<S>) {
        while let Some((mark, _)) = self.deferred_reads.front() {
            if *mark > self.executed {
                break;
            }
            let (_, req) = self.deferred_reads.pop_front().expect("non-empty");
            self.answer_read(&req, cx);
        }
    }

    /// Execute `req` under the per-client FIFO rule; returns the replies produced
    /// (the request itself and any buffered successors it unblocked).
    /// How far beyond its last executed request a client's sequence numbers may
    /// run here. A client keeps at most `client_window` requests outstanding, but
    /// it counts completions by the fastest f+1 replicas; a replica that lags a
    /// few slots must still accept them, hence the margin.
    fn horizon(&self) -> u64 {
        4 * self.p.client_window
    }

    fn execute_request_quiet(&mut self, req: &Request) -> Vec<(ClientId, u64, Vec<u8>)> {
        let window = self.p.client_window;
        let horizon = self.horizon();
        let cs = self.clients.entry(req.client).or_default();
        let mut out = Vec::new();
        if req.seq <= cs.last {
            return out;
        }
        if req.seq > cs.last + 1 {
            if req.seq <= cs.last + horizon {
                cs.buffered.entry(req.seq).or_insert_with(|| req.clone());
            }
            return out;
        }
        // the request itself by reference, then any buffered successors it unblocks
        let mut buffered: Option<Request> = None;
        loop {
            let r = buffered.as_ref().unwrap_or(req);
            let (client, seq) = (r.client, r.seq);
            let result = self.service.execute(&r.op);
            let cs = self.clients.get_mut(&client).expect("client state exists");
            cs.last = seq;
            cs.replies.push_back((seq, result.clone()));
            while cs.replies.len() as u64 > window {
                cs.replies.pop_front();
            }
            let next = cs.buffered.remove(&(seq + 1));
            if !cs.buffered.is_empty() {
                cs.buffered.retain(|s, _| *s > seq);
            }
            self.pending.remove(&(client, seq));
            self.proposed.remove(&(client, seq));
            out.push((client, seq, result));
            match next {
                Some(n) => buffered = Some(n),
                None => break,
            }
        }
        out
    }

    // -------------------------------------------------------------- checkpoints

    fn take_checkpoint(&mut self, slot: Slot, cx: &mut Ctx<S>) {
        let snap = self.snapshot_bytes();
        let d = cx.crypto().hash(&snap);
        let sig = cx.crypto().sign(&checkpoint_bytes(self.g.id, slot, &d));
        let idx = self.idx;
        let ck = self.ckpts.entry(slot).or_default();
        ck.mine = Some((d, snap));
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

    fn on_checkpoint(
        &mut self,
        from: usize,
        slot: Slot,
        state: Digest,
        sig: Signature,
        cx: &mut Ctx<S>,
    ) {
        if slot <= self.low
            || !slot.is_multiple_of(self.p.checkpoint_interval)
            || slot > self.low + 4 * self.p.window
        {
            return;
        }
        let who = Addr::Node(self.g.members[from]);
        if cx
            .crypto()
            .verify(who, &checkpoint_bytes(self.g.id, slot, &state), &sig)
            .is_err()
        {
            self.fault(cx, who, Fault::CheckpointSignature, format!("slot {slot}"));
            return;
        }
        self.note_slot(slot, cx);
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
        if !self.g.qs.is_quorum(votes.keys().copied()) {
            return;
        }
        let cert = CheckpointCert {
            slot,
            state,
            sigs: votes
                .iter()
                .map(|(i, s)| (self.g.members[*i], *s))
                .collect(),
        };
        self.stabilize(cert, cx);
    }

    /// Adopt a (verified) stable checkpoint: move the low watermark, truncate, and
    /// fetch the state if we have not executed that far.
    fn stabilize(&mut self, cert: CheckpointCert, cx: &mut Ctx<S>) {
        if cert.slot <= self.low {
            return;
        }
        let mine = self.ckpts.get(&cert.slot).and_then(|c| c.mine.clone());
        self.low = cert.slot;
        match mine {
            Some((d, snap)) if d == cert.state => {
                self.stable_snapshot = Some(snap.clone());
                cx.persist(Record::Checkpoint {
                    slot: cert.slot,
                    snapshot: snap,
                });
                cx.output(Output::Stable {
                    slot: cert.slot,
                    state: d,
                });
            }
            Some(_) => {
                let me = Addr::Node(self.me);
                self.fault(
                    cx,
                    me,
                    Fault::DivergentState,
                    format!("my state at {} differs from the quorum's", cert.slot),
                );
                self.stable_snapshot = None;
                self.fetching = Some(cert.clone());
            }
            None => {
                self.stable_snapshot = None;
                if self.executed < cert.slot {
                    self.fetching = Some(cert.clone());
                }
            }
        }
        if self.fetching.is_some() {
            let slot = cert.slot;
            cx.multicast(self.others(), Message::FetchState { slot });
            self.arm_fetch(cx);
        }
        let low = self.low;
        self.slots = self.slots.split_off(&(low + 1));
        self.ckpts = self.ckpts.split_off(&low);
        self.ckpts.retain(|s, c| *s > low || c.mine.is_some());
        self.stable = Some(cert);
        if self.next_slot <= low {
            self.next_slot = low + 1;
        }
        self.try_propose(cx);
    }

    fn verify_cert(&self, cert: &CheckpointCert, cx: &Ctx<S>) -> bool {
        if !cert.slot.is_multiple_of(self.p.checkpoint_interval) {
            return false;
        }
        let bytes = checkpoint_bytes(self.g.id, cert.slot, &cert.state);
        let mut who = BTreeSet::new();
        let mut items = Vec::new();
        for (n, s) in &cert.sigs {
            let Some(i) = self.g.index_of(*n) else {
                return false;
            };
            if !who.insert(i) {
                return false;
            }
            items.push((Addr::Node(*n), bytes.as_slice(), s));
        }
        self.quorum(&who) && cx.crypto().verify_batch(&items).is_ok()
    }

    fn on_fetch_state(&mut self, from: usize, slot: Slot, cx: &mut Ctx<S>) {
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

    fn on_state(&mut self, from: usize, cert: CheckpointCert, snapshot: Vec<u8>, cx: &mut Ctx<S>) {
        if cert.slot <= self.executed {
            return;
        }
        let who = Addr::Node(self.g.members[from]);
        if !self.verify_cert(&cert, cx) || cx.crypto().hash(&snapshot) != cert.state {
            self.fault(
                cx,
                who,
                Fault::StateInvalid,
                format!("snapshot for slot {}", cert.slot),
            );
            return;
        }
        if let Err(e) = self.restore_snapshot(&snapshot) {
            self.fault(cx, who, Fault::StateUndecodable, e);
            return;
        }
        tracing::info!(replica = %self.me, slot = cert.slot, "state transfer complete");
        self.stats.state_transfers += 1;
        self.executed = cert.slot;
        self.fetching = None;
        self.stable_snapshot = Some(snapshot.clone());
        let slot = cert.slot;
        let state = cert.state;
        if cert.slot > self.low {
            self.low = cert.slot;
            self.stable = Some(cert);
            let low = self.low;
            self.slots = self.slots.split_off(&(low + 1));
            self.ckpts = self.ckpts.split_off(&(low + 1));
        }
        // requests executed by the snapshot are no longer pending
        let clients = &self.clients;
        self.pending
            .retain(|(c, s), _| *s > clients.get(c).map(|cs| cs.last).unwrap_or(0));
        cx.output(Output::StateTransferred { slot });
        cx.persist(Record::Checkpoint { slot, snapshot });
        cx.output(Output::Stable { slot, state });
        if self.next_slot <= self.executed {
            self.next_slot = self.executed + 1;
        }
        self.release_reads(cx);
        self.execute_ready(cx);
    }

    fn on_fetch_log(&mut self, from: usize, from_slot: Slot, to: Slot, cx: &mut Ctx<S>) {
        // the requester is behind our last checkpoint: the log it asks for is gone,
        // send the certified snapshot instead
        if from_slot <= self.low {
            self.on_fetch_state(from, from_slot, cx);
        }
        let to = to.min(from_slot.saturating_add(self.p.window));
        let mut entries = Vec::new();
        let mut bytes = 0;
        for (s, ss) in self.slots.range(from_slot..=to) {
            if let Some((v, _, b)) = &ss.decided {
                bytes += b.requests.iter().map(|r| r.op.len() + 64).sum::<usize>();
                entries.push((*s, *v, b.clone()));
                if bytes > (4 << 20) {
                    break;
                }
            }
        }
        if !entries.is_empty() {
            cx.send(Addr::Node(self.g.members[from]), Message::Log { entries });
        }
    }

    fn on_log(&mut self, from: usize, entries: Vec<(Slot, View, Batch)>, cx: &mut Ctx<S>) {
        let mut touched = Vec::new();
        for (slot, view, batch) in entries {
            if slot <= self.executed || !self.in_window(slot) {
                continue;
            }
            let d = cx.crypto().hash(&batch.bytes());
            let ss = self.slots.entry(slot).or_default();
            if ss.decided.is_some() {
                continue;
            }
            let e = ss
                .log_votes
                .entry(d)
                .or_insert_with(|| (BTreeSet::new(), batch));
            e.0.insert(from);
            // the sender decided (view, slot, d), so it accepted it
            ss.accepts.entry((view, d)).or_default().insert(from);
            let voters = e.0.clone();
            if self.g.qs.is_weak(voters.iter().copied()) {
                // more than f replicas say it is decided: one of them is correct
                let b = ss.log_votes[&d].1.clone();
                ss.decided_digest = Some(d);
                ss.decided = Some((view, d, b));
                self.stats.decided_slots += 1;
            } else {
                touched.push(slot);
            }
        }
        for slot in touched {
            self.check_slot(slot, cx);
        }
        self.execute_ready(cx);
    }

    /// Re-send our own PROPOSE (leader), WRITE and ACCEPT for the slots we are
    /// stuck on: messages lost in the network (or sent before a connection was
    /// up) are otherwise only recovered by a view change.
    fn resend_votes(&mut self, cx: &mut Ctx<S>) {
        let view = self.view;
        let hi = self
            .highest_seen
            .min(self.executed + 4 * self.p.max_in_flight);
        let mut msgs = Vec::new();
        for (slot, ss) in self.slots.range(self.executed + 1..=hi) {
            let Some((v, d, batch)) = &ss.proposal else {
                continue;
            };
            if *v != view {
                continue;
            }
            if self.g.leader(view) == self.me && ss.decided.is_none() {
                msgs.push(Message::Propose {
                    view,
                    slot: *slot,
                    batch: batch.clone(),
                });
            }
            if ss.wrote == Some(view) {
                msgs.push(Message::Write {
                    view,
                    slot: *slot,
                    digest: *d,
                });
            }
            if ss.accepted == Some(view) {
                msgs.push(Message::Accept {
                    view,
                    slot: *slot,
                    digest: *d,
                });
            }
        }
        for m in msgs {
            cx.multicast(self.others(), m);
        }
    }

    fn on_fetch_timer(&mut self, cx: &mut Ctx<S>) {
        self.fetch_timer = false;
        let stuck = self.executed == self.executed_at_fetch;
        if let Some(cert) = &self.fetching {
            let slot = cert.slot;
            cx.multicast(self.others(), Message::FetchState { slot });
            self.arm_fetch(cx);
            return;
        }
        // a higher view known from a weak quorum: ask for its SYNC
        let ahead: BTreeSet<usize> = self
            .view_hints
            .iter()
            .filter(|(_, v)| **v > self.view)
            .map(|(i, _)| *i)
            .collect();
        if self.weak(&ahead) {
            let view = ahead
                .iter()
                .map(|i| self.view_hints[i])
                .min()
                .unwrap_or(self.view + 1);
            let to: Vec<Addr> = ahead
                .iter()
                .map(|i| Addr::Node(self.g.members[*i]))
                .collect();
            cx.multicast(to, Message::FetchSync { view });
            self.arm_fetch(cx);
        }
        if self.highest_seen > self.executed {
            if stuck && self.status == Status::Normal {
                let msg = Message::FetchLog {
                    from: self.executed + 1,
                    to: self.highest_seen,
                };
                cx.multicast(self.others(), msg);
                self.resend_votes(cx);
            }
            self.arm_fetch(cx);
        }
    }

    // ------------------------------------------------------ synchronization phase

    fn send_stop(&mut self, view: View, cx: &mut Ctx<S>) {
        if view <= self.stop_sent || view <= self.view {
            return;
        }
        self.stop_sent = view;
        tracing::info!(replica = %self.me, from_view = self.view, to_view = view, "suspecting leader, sending STOP");
        cx.output(Output::Suspected { view });
        cx.multicast(self.others(), Message::Stop { view });
        let idx = self.idx;
        self.stops.entry(view).or_default().insert(idx);
        self.check_stops(view, cx);
    }

    fn on_stop(&mut self, from: usize, view: View, cx: &mut Ctx<S>) {
        if view <= self.view {
            return;
        }
        // bound memory: far-future views from a Byzantine replica are ignored
        if view > self.view + 1_000 {
            return;
        }
        let fresh = self.stops.entry(view).or_default().insert(from);
        // a replica still asking for the view we are already moving to missed
        // our STOP: repeat it to that replica
        if fresh && self.status == Status::Changing(view) {
            cx.send(Addr::Node(self.g.members[from]), Message::Stop { view });
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
        let target = match self.status {
            Status::Normal => self.view,
            Status::Changing(t) => t,
        };
        if self.quorum(&who) && view > target {
            self.enter_change(view, cx);
        }
    }

    fn enter_change(&mut self, view: View, cx: &mut Ctx<S>) {
        tracing::info!(replica = %self.me, view, leader = %self.g.leader(view), "entering synchronization phase");
        self.status = Status::Changing(view);
        self.stats.view_changes += 1;
        self.stops = self.stops.split_off(&view);
        if self.request_timer {
            self.request_timer = false;
            cx.cancel_timer(Timer::Request);
        }
        let body = StopBody {
            view,
            replica: self.me,
            checkpoint: self.stable.clone(),
            claims: self
                .slots
                .iter()
                .filter(|(_, ss)| ss.prepared.is_some() || !ss.pre_prepared.is_empty())
                .map(|(slot, ss)| SlotClaim {
                    slot: *slot,
                    prepared: ss.prepared.clone(),
                    pre_prepared: ss.pre_prepared.clone(),
                })
                .collect(),
        };
        let sig = cx.crypto().sign(&stop_bytes(self.g.id, &body));
        let sd = StopData { body, sig };
        let leader = self.g.leader(view);
        if leader == self.me {
            self.stopdata.entry(view).or_default().insert(self.me, sd);
            self.try_sync(view, cx);
        } else {
            cx.send(Addr::Node(leader), Message::StopData(sd));
        }
        let timeout = self
            .p
            .view_change_timeout
            .saturating_mul(1 << self.vc_attempts.min(10));
        self.vc_attempts += 1;
        cx.set_timer(Timer::ViewChange, timeout);
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

    fn on_stop_data(&mut self, from: usize, sd: StopData, cx: &mut Ctx<S>) {
        let view = sd.body.view;
        let who = Addr::Node(self.g.members[from]);
        if self.g.leader(view) != self.me
            || view <= self.view
            || sd.body.replica != self.g.members[from]
        {
            return;
        }
        if view > self.view + 1_000 {
            return;
        }
        if let Err(e) = self.verify_stop_data(&sd, view, cx) {
            self.fault(cx, who, Fault::StopDataInvalid, e);
            return;
        }
        self.stopdata
            .entry(view)
            .or_default()
            .insert(sd.body.replica, sd);
        self.try_sync(view, cx);
    }

    fn try_sync(&mut self, view: View, cx: &mut Ctx<S>) {
        if self.status != Status::Changing(view) {
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
        if self.select(&stops).is_none() {
            // some slot is not yet decidable from these claims: wait for more
            return;
        }
        tracing::info!(replica = %self.me, view, stops = stops.len(), "leader sending SYNC");
        cx.multicast(
            self.others(),
            Message::Sync {
                view,
                stops: stops.clone(),
            },
        );
        self.install(view, stops, cx);
    }

    fn on_sync(&mut self, from: usize, view: View, stops: Vec<StopData>, cx: &mut Ctx<S>) {
        let who = Addr::Node(self.g.members[from]);
        if view <= self.view || self.g.leader(view) != self.g.members[from] {
            return;
        }
        let mut senders = BTreeSet::new();
        for sd in &stops {
            if let Err(e) = self.verify_stop_data(sd, view, cx) {
                self.fault(cx, who, Fault::SyncInvalid, e);
                return;
            }
            senders.insert(self.g.index_of(sd.body.replica).unwrap_or(usize::MAX));
        }
        if senders.len() != stops.len() || !self.quorum(&senders) {
            self.fault(
                cx,
                who,
                Fault::SyncInvalid,
                "not a quorum of distinct STOP-DATA".into(),
            );
            return;
        }
        if self.select(&stops).is_none() {
            self.fault(
                cx,
                who,
                Fault::SyncInvalid,
                "STOP-DATA do not determine every slot".into(),
            );
            return;
        }
        self.install(view, stops, cx);
    }

    fn on_fetch_sync(&mut self, from: usize, view: View, cx: &mut Ctx<S>) {
        if let Some((v, stops)) = &self.last_sync {
            if *v >= view && self.status == Status::Normal {
                let msg = Message::Sync {
                    view: *v,
                    stops: stops.clone(),
                };
                cx.send(Addr::Node(self.g.members[from]), msg);
            }
        }
    }

    /// PBFT's decision procedure (Castro & Liskov, TOCS 2002 §4.5.2) over a set of
    /// verified STOP-DATA: adopt the highest checkpoint, then for every slot above
    /// it choose
    /// - the value (d, v) from some replica's prepared claim such that
    ///   A1: replicas holding a quorum of votes claim nothing prepared in a view
    ///   above v, nor another value in v, and
    ///   A2: replicas holding a weak quorum (more than any f) of votes
    ///   pre-prepared d in view v or later;
    /// - else an empty batch if a quorum of votes claims nothing prepared (B);
    /// - else nothing: the slot is undetermined and the leader waits for more.
    ///
    /// A value decided in an earlier view was prepared by a quorum, which
    /// intersects any quorum of STOP-DATA in a correct replica, so A1 can only
    /// hold for it (or for a value chosen by an earlier synchronization from the
    /// same argument), and A2 stops Byzantine replicas from inventing one.
    fn select(&self, stops: &[StopData]) -> Option<Selection> {
        let cert = stops
            .iter()
            .filter_map(|s| s.body.checkpoint.clone())
            .max_by_key(|c| c.slot);
        let min_s = cert.as_ref().map(|c| c.slot).unwrap_or(0);
        let pos: Vec<usize> = stops
            .iter()
            .map(|s| self.g.index_of(s.body.replica).unwrap_or(usize::MAX))
            .collect();
        let claim = |i: usize, slot: Slot| stops[i].body.claims.iter().find(|c| c.slot == slot);
        let max_s = stops
            .iter()
            .flat_map(|s| s.body.claims.iter())
            .filter(|c| c.prepared.is_some())
            .map(|c| c.slot)
            .max()
            .unwrap_or(min_s)
            .max(min_s);
        let votes = |members: &mut dyn Iterator<Item = usize>| {
            self.g.qs.votes(members.filter(|p| *p != usize::MAX))
        };
        let mut picks = BTreeMap::new();
        for slot in (min_s + 1)..=max_s {
            // candidates, newest view first
            let mut cands: Vec<(View, Digest, &Batch)> = (0..stops.len())
                .filter_map(|i| claim(i, slot).and_then(|c| c.prepared.as_ref()))
                .map(|(v, d, b)| (*v, *d, b))
                .collect();
            cands.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            cands.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
            let mut chosen = None;
            for (v, d, b) in cands {
                let a1 = votes(
                    &mut (0..stops.len())
                        .filter(
                            |i| match claim(*i, slot).and_then(|c| c.prepared.as_ref()) {
                                None => true,
                                Some((pv, pd, _)) => *pv < v || (*pv == v && *pd == d),
                            },
                        )
                        .map(|i| pos[i]),
                );
                let a2 = votes(
                    &mut (0..stops.len())
                        .filter(|i| {
                            claim(*i, slot)
                                .map(|c| c.pre_prepared.iter().any(|(qd, qv)| *qd == d && *qv >= v))
                                .unwrap_or(false)
                        })
                        .map(|i| pos[i]),
                );
                if a1 >= self.g.qs.quorum() && a2 >= self.g.qs.weak() {
                    chosen = Some(b.clone());
                    break;
                }
            }
            let batch = match chosen {
                Some(b) => b,
                None => {
                    let empty = votes(
                        &mut (0..stops.len())
                            .filter(|i| claim(*i, slot).and_then(|c| c.prepared.as_ref()).is_none())
                            .map(|i| pos[i]),
                    );
                    if empty < self.g.qs.quorum() {
                        return None;
                    }
                    Batch::default()
                }
            };
            picks.insert(slot, batch);
        }
        Some(Selection {
            cert,
            min_s,
            max_s,
            picks,
        })
    }

    /// Enter `view` given a verified quorum of STOP-DATA whose selection is
    /// determined (see [`Replica::select`]).
    fn install(&mut self, view: View, stops: Vec<StopData>, cx: &mut Ctx<S>) {
        let Some(Selection {
            cert: best_cert,
            min_s,
            max_s,
            mut picks,
        }) = self.select(&stops)
        else {
            return;
        };

        self.view = view;
        self.status = Status::Normal;
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
        // forget votes of old views; keep claims and decisions
        for ss in self.slots.values_mut() {
            ss.writes.retain(|(v, _), _| *v >= view);
            ss.accepts.retain(|(v, _), _| *v >= view);
            if matches!(ss.proposal, Some((v, _, _)) if v < view) {
                ss.proposal = None;
            }
        }
        self.proposed.clear();
        self.next_slot = max_s.max(self.executed).max(self.low) + 1;
        for s in (min_s + 1)..=max_s {
            if s <= self.low {
                continue;
            }
            let batch = picks.remove(&s).unwrap_or_default();
            self.accept_proposal(view, s, batch, false, cx);
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
        let buffered = std::mem::take(&mut self.future);
        for (from, msg) in buffered {
            match msg {
                Message::Propose {
                    view: v,
                    slot,
                    batch,
                } if v == view => self.on_propose(from, v, slot, batch, cx),
                Message::Write {
                    view: v,
                    slot,
                    digest,
                } if v == view => self.on_write(from, v, slot, digest, cx),
                Message::Accept {
                    view: v,
                    slot,
                    digest,
                } if v == view => self.on_accept(from, v, slot, digest, cx),
                m => {
                    if matches!(m, Message::Propose { view: v, .. } | Message::Write { view: v, .. } | Message::Accept { view: v, .. } if v > view)
                    {
                        self.future.push_back((from, m));
                    }
                }
            }
        }
    }
}

impl<S: Service> Protocol for Replica<S> {
    type Message = Message;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = Record;

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        match input {
            Input::Suspect => {
                let target = match self.status {
                    Status::Normal => self.view + 1,
                    Status::Changing(t) => t + 1,
                };
                self.send_stop(target, cx);
            }
        }
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        if let Message::Request(req) = msg {
            self.on_request(from, req, cx);
            return;
        }
        let Some(idx) = from.node().and_then(|n| self.g.index_of(n)) else {
            self.fault(
                cx,
                from,
                Fault::NotAMember,
                format!("{} from a non-member", msg.kind()),
            );
            return;
        };
        if idx == self.idx {
            return; // our own messages are handled locally; a copy is a twin or replay
        }
        match msg {
            Message::Request(_) => unreachable!("handled above"),
            Message::Forward(reqs) => self.on_forward(idx, reqs, cx),
            Message::Reply(_) => self.fault(
                cx,
                from,
                Fault::Unexpected,
                "reply sent to a replica".into(),
            ),
            Message::Propose { view, slot, batch } => self.on_propose(idx, view, slot, batch, cx),
            Message::Write { view, slot, digest } => self.on_write(idx, view, slot, digest, cx),
            Message::Accept { view, slot, digest } => self.on_accept(idx, view, slot, digest, cx),
            Message::Checkpoint { slot, state, sig } => {
                self.on_checkpoint(idx, slot, state, sig, cx)
            }
            Message::Stop { view } => self.on_stop(idx, view, cx),
            Message::StopData(sd) => self.on_stop_data(idx, sd, cx),
            Message::Sync { view, stops } => self.on_sync(idx, view, stops, cx),
            Message::FetchSync { view } => self.on_fetch_sync(idx, view, cx),
            Message::FetchState { slot } => self.on_fetch_state(idx, slot, cx),
            Message::State { cert, snapshot } => self.on_state(idx, cert, snapshot, cx),
            Message::FetchLog { from: f, to } => self.on_fetch_log(idx, f, to, cx),
            Message::Log { entries } => self.on_log(idx, entries, cx),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Request => {
                self.request_timer = false;
                if self.status != Status::Normal || self.is_leader() {
                    return;
                }
                match self.oldest_due_request() {
                    Some(t) if cx.now() >= t + self.p.request_timeout => self.request_timed_out(cx),
                    _ => self.arm_request_timer(cx),
                }
            }
            Timer::ViewChange => {
                if let Status::Changing(v) = self.status {
                    tracing::info!(replica = %self.me, view = v, "synchronization timed out");
                    if self.stop_sent > v {
                        // our STOP for the next view may have been lost: repeat it
                        let view = self.stop_sent;
                        cx.multicast(self.others(), Message::Stop { view });
                    } else {
                        self.send_stop(v + 1, cx);
                    }
                    let timeout = self
                        .p
                        .view_change_timeout
                        .saturating_mul(1 << self.vc_attempts.min(10));
                    self.vc_attempts += 1;
                    cx.set_timer(Timer::ViewChange, timeout);
                }
            }
            Timer::Batch => {
                self.batch_timer = false;
                let delay = self.p.batch_delay;
                self.p.batch_delay = 0;
                self.try_propose(cx);
                self.p.batch_delay = delay;
            }
            Timer::Fetch => self.on_fetch_timer(cx),
        }
    }
}
