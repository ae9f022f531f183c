//! The SMR client (BFT-SMaRt's `ServiceProxy`): sends each request with a MAC
//! authenticator for every replica, accepts a result once replicas holding more
//! votes than any f replicas (the weak quorum, "f+1") returned the same bytes, and
//! retransmits with backoff until then. Read-only requests go unordered and need a
//! full quorum of matching replies; on conflicting replies or a timeout they fall
//! back to the ordered path. Replies are counted by result digest in a
//! [`Collector`]: a replica's first reply to a request is its vote (a correct
//! replica answers an ordered request with one result; a read answered twice,
//! after a duplicated request, counts with its first answer).
//!
//! With [`Params::tentative`] on, an ordered request also completes on
//! tentative replies ([`Message::TentativeReply`]) matching in view, slot and
//! result from replicas holding a full quorum of votes (WHEAT; the rule and
//! why it is safe are in `replica/tentative.rs`). They are counted apart from
//! the final replies, whose rule is unchanged.
//!
//! # Sessions
//!
//! Several requests may be outstanding (`Params::client_window`); ordered ones are
//! numbered contiguously from 1 within a session so the replicas can execute
//! them in FIFO order. Sessions are named by slots (see `replica/execute.rs`),
//! and the client learns one before the first ordered request of a session:
//! it asks every replica ([`Message::SessionQuery`], with a fresh nonce; again
//! every `client_retry`) and each answers its last executed slot
//! ([`Message::SessionInfo`], stateless at the replica). From the answers of a
//! quorum it takes the highest slot that a weak quorum reported at least
//! (with 3f+1 equal weights: the (f+1)-th highest of 2f+1): a correct replica
//! has executed it, so it is decided and below the slot of any request sent
//! now (never [`RefuseReason::SessionAhead`]), and a correct replica has
//! executed no more than it, so it is recent (above the session floor for
//! `client_expiry_slots` slots). Ordered submissions wait in the backlog
//! until the session is known; reads carry no session and do not wait. A
//! new session's requests number from 1 only if it is above the current one
//! (else the client keeps its session and its numbering).
//!
//! The client asks at its first ordered request, after a session expired
//! (below), and when it has had nothing ordered outstanding for longer than
//! [`Params::session_idle`]: an idle client's entry may have expired, and a
//! request of the old session would be refused. Otherwise it keeps its
//! session however long it lives: a client with an entry runs in any session
//! it has, and one without runs only above the floor, which an old session
//! and a session named by its last completed slot (the rule this replaced:
//! a drained client started session `last_slot`) are both below once the
//! entry expired (the floor passes the entry's last slot, which is at least
//! the client's), so that rule bought nothing.
//!
//! # An expired session: outcome unknown
//!
//! A weak quorum of replicas answering [`RefuseReason::Stale`] for an
//! outstanding ordered request means that, at some executed slot, the client
//! had no entry and the request's session was below the floor; from then on nothing of that session can run (the floor only rises,
//! and an entry of a later session refuses the older one). But a request may
//! have run before its entry expired, its replies all lost: sending it again
//! in a new session could run it twice. So the client never resends: every
//! outstanding ordered request (all of them in that session) completes as
//! [`Output::Failed`] with [`Failed::SessionExpired`], "outcome unknown", as
//! Raft's SESSION_EXPIRED (Ongaro's thesis §6.3), and the client learns a
//! new session, at least the floor, for later requests. The floor it takes is
//! the highest that replicas holding a weak quorum answered at least (one of
//! them correct, so some correct replica's floor is that high), counting
//! each replica's latest answer: correct replicas checkpoint at different
//! moments, so their floors differ and rise while the client retransmits,
//! and waiting for f+1 equal first answers could wait forever. It fails them all at
//! once rather than each on its own f+1 `Stale`: they are all equally
//! unknown, and once the new session's first request created an entry a
//! replica answers an older session's retransmission with nothing.
//!
//! Replicas whose client table is full answer a client they hold no entry
//! for with [`RefuseReason::Busy`]; a weak quorum of them makes the client
//! log it and count it ([`Client::busy`]) while it keeps retrying.
//!
//! Deviation from BFT-SMaRt, as in PBFT (TOCS'02 §4.2): an ordered request goes
//! first to the leader of the view the client believes current, and to every
//! replica only on retransmission. The backups then learn it from the PROPOSE
//! (whose requests carry their MAC entries), and a leader that ignores it is
//! caught as before: after `client_retry` every replica holds the request and
//! its request timer runs. This saves each backup a message, a MAC check and a
//! pending entry per request. The believed view is the highest view that a weak
//! quorum of the replies completing a request reported (so f Byzantine
//! replicas cannot point the client at a replica of their choice).

use crate::config::{Config, ConfigCert};
use crate::fault::Fault;
use crate::message::*;
use crate::params::{GroupInfo, Params};
use byzscale_core::codec;
use byzscale_core::crypto::Digest;
use byzscale_core::quorum::{Collector, QuorumSystem};
use byzscale_core::{Addr, ClientId, Cx, NoRecord, NodeId, Protocol, Time};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Why a client refuses an operation before sending it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The replicas drop operations over [`Params::max_op_bytes`]: it would
    /// never complete.
    #[error(
        "the operation takes {size} bytes; the replicas accept at most {limit} bytes \
         per operation (max_op_bytes)"
    )]
    TooLarge { size: usize, limit: usize },
}

/// Why a sent ordered request completed without a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failed {
    /// Its session expired at the replicas (module docs): it may or may not
    /// have run, and it is not sent again.
    #[error("session expired: outcome unknown (the command may or may not have been applied)")]
    SessionExpired,
}

/// Why an operation did not complete with a result: the error of
/// [`Output::Refused`] or [`Output::Failed`], for callers that take both.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    Failed(#[from] Failed),
}

#[derive(Debug)]
pub enum Input {
    /// Submit an operation. `read_only` asks for the unordered path.
    Submit { op: Vec<u8>, read_only: bool },
}

#[derive(Debug, Clone)]
pub enum Output {
    /// The operation submitted as the `id`-th (from 1, in submission order)
    /// completed with `result`. `ordered` tells which path produced it.
    Done {
        id: u64,
        result: Vec<u8>,
        ordered: bool,
        invoked: Time,
        /// Ordered: the slot whose batch executed it, as the matching replies
        /// name it (so a correct replica vouches for it); 0 for a read
        /// answered on the unordered path.
        slot: Slot,
    },
    /// The `id`-th submission was refused before anything was sent (see
    /// [`Client::check`]); it holds up no later submission.
    Refused { id: u64, error: Refused },
    /// The `id`-th submission was sent, ordered, and will never complete:
    /// whether it took effect is unknown ([`Failed::SessionExpired`]).
    Failed {
        id: u64,
        error: Failed,
        invoked: Time,
    },
}

impl Output {
    /// The submission it completes and how: its result, or why none.
    pub fn result(self) -> (u64, Result<Vec<u8>, Error>) {
        match self {
            Output::Done { id, result, .. } => (id, Ok(result)),
            Output::Refused { id, error } => (id, Err(error.into())),
            Output::Failed { id, error, .. } => (id, Err(error.into())),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Retransmit the ordered request with this sequence number.
    Retry(u64),
    /// Give up on the unordered read with this number.
    ReadTimeout(u64),
    /// Ask again for a session (the query with this nonce).
    Session(u64),
}

struct Outstanding {
    id: u64,
    req: Request,
    invoked: Time,
    /// The replies by digest of (slot, result): a replica's first reply
    /// counts.
    replies: Collector<Digest, (Vec<u8>, Slot)>,
    /// The tentative replies by digest of (view, slot, result): a replica's
    /// first counts (see `replica/tentative.rs`).
    tentative: Collector<Digest, (Vec<u8>, Slot)>,
    /// The view each replica reported in its reply.
    views: BTreeMap<usize, View>,
    retries: u32,
    /// Replicas that answered [`RefuseReason::Busy`].
    busy: BTreeSet<usize>,
    /// The highest floor each replica answered [`RefuseReason::Stale`]
    /// with, by position (a correct replica's floor rises while the client
    /// retransmits, so its latest answer counts, not its first).
    stale: BTreeMap<usize, Slot>,
}

/// What the client knows of its session (module docs).
#[derive(Debug)]
enum Session {
    /// It must learn one before its next ordered request.
    Unknown,
    /// It asked ([`Message::SessionQuery`] with `nonce`): the slots answered,
    /// by replica position.
    Asking {
        nonce: u64,
        answers: BTreeMap<usize, Slot>,
    },
    /// Ordered requests go out in `Client::session`.
    Known,
}

pub struct Client {
    id: ClientId,
    g: GroupInfo,
    p: Params,
    /// The session of its ordered requests (see the module docs).
    session: u64,
    state: Session,
    /// The highest session floor a weak quorum reported: the next session
    /// is at least this.
    floor: Slot,
    /// The nonce of the next session query.
    next_nonce: u64,
    /// Since when nothing ordered has been outstanding (None: something is,
    /// or nothing was ever sent).
    idle_since: Option<Time>,
    /// The last sequence number given to an ordered request in `session`
    /// (0: none yet).
    last_seq: u64,
    next_ro: u64,
    next_id: u64,
    ordered: BTreeMap<u64, Outstanding>,
    reads: BTreeMap<u64, Outstanding>,
    /// Submissions waiting for a free slot in the window (ordered ones also
    /// for a session).
    backlog: VecDeque<(u64, Vec<u8>, bool, Time)>,
    completed: u64,
    refused: u64,
    busy: u64,
    expired: u64,
    /// The view the client believes current: its leader gets new requests.
    view: View,
    /// The configuration it sends to (`config.rs`): `g` is its group.
    config: Config,
    /// Replicas asked for a proof since the last retransmission (one ask
    /// each: a replica claiming a new epoch cannot make the client flood).
    asked: BTreeSet<NodeId>,
}

/// The highest value that replicas holding a weak quorum of votes reported
/// at least (at least one of them correct): with equal weights, the
/// (f+1)-th highest. None while the reports do not hold a weak quorum.
fn weak_highest(qs: &QuorumSystem, reports: &BTreeMap<usize, u64>) -> Option<u64> {
    let mut by_value: Vec<(u64, usize)> = reports.iter().map(|(i, v)| (*v, *i)).collect();
    by_value.sort_unstable_by(|a, b| b.cmp(a));
    let mut voters = Vec::new();
    for (v, i) in by_value {
        voters.push(i);
        if qs.is_weak(voters.iter().copied()) {
            return Some(v);
        }
    }
    None
}

impl Client {
    pub fn new(id: ClientId, g: GroupInfo, p: Params) -> Self {
        Client {
            id,
            config: Config::genesis(g.clone()),
            g,
            p,
            session: 0,
            state: Session::Unknown,
            floor: 0,
            next_nonce: 1,
            idle_since: None,
            last_seq: 0,
            next_ro: 1,
            next_id: 1,
            ordered: BTreeMap::new(),
            reads: BTreeMap::new(),
            backlog: VecDeque::new(),
            completed: 0,
            refused: 0,
            busy: 0,
            expired: 0,
            view: 0,
            asked: BTreeSet::new(),
        }
    }

    /// The configuration the client sends to.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A replica says it runs `epoch`: ask it for the proof if that is
    /// newer than ours (once per replica between retransmissions).
    fn on_new_epoch(&mut self, from: Addr, epoch: u64, cx: &mut Cx<'_, Self>) {
        let Some(node) = from.node() else {
            return;
        };
        if epoch > self.config.epoch && self.asked.insert(node) {
            let mine = self.config.epoch;
            cx.send(from, Message::FetchConfig { epoch: mine });
        }
    }

    /// A proof from a replica: follow it (every certificate checked
    /// against the administrator's key); on a newer configuration, send
    /// the outstanding requests again, authenticated for its members.
    fn on_config_proof(&mut self, from: Addr, certs: Vec<ConfigCert>, cx: &mut Cx<'_, Self>) {
        // a proof from a slower replica may start below what we know
        let mine = self.config.epoch;
        let certs: Vec<ConfigCert> = certs.into_iter().filter(|c| c.body.epoch > mine).collect();
        let next = match self.config.follow(&certs, cx.crypto()) {
            Ok(next) => next,
            Err(e) => return cx.fault(from, Fault::ConfigInvalid, e.to_string()),
        };
        if next.epoch <= self.config.epoch {
            return;
        }
        tracing::info!(client = %self.id, epoch = next.epoch, n = next.group.n(), "client follows a new configuration");
        self.g = next.group.clone();
        self.view = next.first_view().max(self.view);
        self.config = next;
        self.asked.clear();
        let (g, id) = (&self.g, self.id);
        for o in self.ordered.values_mut().chain(self.reads.values_mut()) {
            let r = &o.req;
            let (number, op) = ((r.session, r.seq), r.op.clone());
            let mut req = Request::authenticated(cx.crypto(), g, id, number, r.read_only, op);
            req.sign(cx.crypto(), g.id);
            cx.multicast(g.addrs(), Message::Request(req.clone()));
            // positions changed: what was counted is void
            let retries = o.retries;
            *o = Outstanding::new(o.id, req, o.invoked);
            o.retries = retries;
        }
    }

    /// First transmission of an ordered request: to the believed leader.
    fn send_ordered(&self, req: &Request, cx: &mut Cx<'_, Self>) {
        let leader = self.g.leader(self.view);
        cx.send(Addr::Node(leader), Message::Request(req.clone()));
    }

    /// Learn the view from the replies that completed a request: the highest
    /// view reported by a weak quorum (at least one correct replica is there).
    fn learn_view(&mut self, views: &BTreeMap<usize, View>) {
        if let Some(v) = weak_highest(&self.g.qs, views) {
            if v > self.view {
                tracing::debug!(client = %self.id, view = v, "client follows a new view");
                self.view = v;
            }
        }
    }
    pub fn id(&self) -> ClientId {
        self.id
    }
    pub fn outstanding(&self) -> usize {
        self.ordered.len() + self.reads.len() + self.backlog.len()
    }
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Whether the replicas can take `op`. A submission that fails it is
    /// never sent: it completes at once as [`Output::Refused`].
    pub fn check(&self, op: &[u8]) -> Result<(), Refused> {
        let limit = self.p.max_op_bytes;
        if op.len() > limit {
            return Err(Refused::TooLarge {
                size: op.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Submissions refused by [`Client::check`] (never sent, never completed).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Requests that a weak quorum of replicas answered [`Message::Busy`]
    /// (their client table full, this client without an entry).
    pub fn busy(&self) -> u64 {
        self.busy
    }

    /// Ordered requests failed with [`Failed::SessionExpired`].
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// The session its ordered requests run in now (or ran in last, while
    /// it learns a new one).
    pub fn session(&self) -> u64 {
        self.session
    }

    fn make_request(&self, seq: u64, read_only: bool, op: Vec<u8>, cx: &Cx<'_, Self>) -> Request {
        // reads carry no session
        let session = if read_only { 0 } else { self.session };
        Request::authenticated(cx.crypto(), &self.g, self.id, (session, seq), read_only, op)
    }

    fn start_read(&mut self, id: u64, op: Vec<u8>, invoked: Time, cx: &mut Cx<'_, Self>) {
        let seq = self.next_ro;
        self.next_ro += 1;
        let req = self.make_request(seq, true, op, cx);
        cx.multicast(self.g.addrs(), Message::Request(req.clone()));
        cx.set_timer(Timer::ReadTimeout(seq), self.p.client_retry);
        self.reads.insert(seq, Outstanding::new(id, req, invoked));
    }

    /// Number submission `id` as the next ordered request of the (known)
    /// session, send it and wait for it.
    fn start_ordered(&mut self, id: u64, op: Vec<u8>, invoked: Time, cx: &mut Cx<'_, Self>) {
        self.last_seq += 1;
        let seq = self.last_seq;
        let req = self.make_request(seq, false, op, cx);
        self.send_ordered(&req, cx);
        cx.set_timer(Timer::Retry(seq), self.p.client_retry);
        self.ordered.insert(seq, Outstanding::new(id, req, invoked));
        self.idle_since = None;
    }

    /// Whether an ordered request may go out now in `session`: known, and
    /// not idle for longer than `session_idle` (then it must ask again).
    fn session_ready(&mut self, now: Time) -> bool {
        let idle = self.ordered.is_empty()
            && self
                .idle_since
                .is_some_and(|t| now.saturating_sub(t) > self.p.session_idle);
        if idle && matches!(self.state, Session::Known) {
            tracing::debug!(client = %self.id, session = self.session, "idle: asking for a session again");
            self.state = Session::Unknown;
        }
        matches!(self.state, Session::Known)
    }

    /// Start what the window has room for, in order; ordered submissions
    /// wait while the session is not known (and make the client ask), reads
    /// pass them.
    fn pump(&mut self, cx: &mut Cx<'_, Self>) {
        while (self.ordered.len() + self.reads.len()) < self.p.client_window as usize {
            let ready = self.session_ready(cx.now());
            let next = if ready {
                (!self.backlog.is_empty()).then_some(0)
            } else {
                self.backlog.iter().position(|(_, _, ro, _)| *ro)
            };
            let Some((id, op, ro, invoked)) = next.and_then(|i| self.backlog.remove(i)) else {
                break;
            };
            if ro {
                self.start_read(id, op, invoked, cx);
            } else {
                self.start_ordered(id, op, invoked, cx);
            }
        }
        // the session check first: the scan is O(backlog) when it holds
        // only reads
        if !self.session_ready(cx.now()) && self.backlog.iter().any(|(_, _, ro, _)| !ro) {
            self.ask(cx);
        }
    }

    /// Ask the replicas for a session, unless asking already.
    fn ask(&mut self, cx: &mut Cx<'_, Self>) {
        if matches!(self.state, Session::Asking { .. }) {
            return;
        }
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        self.state = Session::Asking {
            nonce,
            answers: BTreeMap::new(),
        };
        let query = Message::SessionQuery {
            client: self.id,
            nonce,
        };
        cx.multicast(self.g.addrs(), query);
        cx.set_timer(Timer::Session(nonce), self.p.client_retry);
    }

    /// Replica `idx` answered session query `nonce` with its last executed
    /// slot: with a quorum of answers, the session is known (module docs).
    fn on_session_info(&mut self, idx: usize, nonce: u64, executed: Slot, cx: &mut Cx<'_, Self>) {
        let Session::Asking {
            nonce: asked,
            answers,
        } = &mut self.state
        else {
            return;
        };
        if *asked != nonce {
            return;
        }
        answers.insert(idx, executed);
        if !self.g.qs.is_quorum(answers.keys().copied()) {
            return;
        }
        let Some(slot) = weak_highest(&self.g.qs, answers) else {
            return;
        };
        cx.cancel_timer(Timer::Session(nonce));
        let session = slot.max(self.floor);
        if session > self.session {
            tracing::debug!(client = %self.id, from = self.session, to = session, "new session");
            self.session = session;
            self.last_seq = 0;
        }
        self.state = Session::Known;
        self.idle_since = None;
        self.pump(cx);
    }

    /// `o` completed with `result`: `slot` is where it ran if it was ordered.
    fn finish(
        &mut self,
        o: Outstanding,
        result: Vec<u8>,
        slot: Option<Slot>,
        cx: &mut Cx<'_, Self>,
    ) {
        self.completed += 1;
        cx.output(Output::Done {
            id: o.id,
            result,
            ordered: slot.is_some(),
            invoked: o.invoked,
            slot: slot.unwrap_or(0),
        });
        self.note_idle(cx.now());
        self.pump(cx);
    }

    /// Nothing ordered outstanding any more: idle from `now`.
    fn note_idle(&mut self, now: Time) {
        if self.ordered.is_empty() && self.idle_since.is_none() {
            self.idle_since = Some(now);
        }
    }

    /// Re-submit a read as an ordered request (same submission id), ahead
    /// of the backlog.
    fn fall_back(&mut self, seq: u64, cx: &mut Cx<'_, Self>) {
        if let Some(o) = self.reads.remove(&seq) {
            cx.cancel_timer(Timer::ReadTimeout(seq));
            self.backlog.push_front((o.id, o.req.op, false, o.invoked));
            self.pump(cx);
        }
    }
}

impl Client {
    /// A replica did not run our request (`session`, `seq`) for `reason`.
    fn on_refused(&mut self, from: Addr, m: Message, cx: &mut Cx<'_, Self>) {
        let Message::Refused {
            replica,
            session,
            seq,
            reason,
            ..
        } = m
        else {
            return;
        };
        let Some(idx) = from.node().and_then(|n| self.g.index_of(n)) else {
            return;
        };
        if self.g.members[idx] != replica || session != self.session {
            return;
        }
        let Some(o) = self.ordered.get_mut(&seq) else {
            return;
        };
        let qs = &self.g.qs;
        match reason {
            RefuseReason::Busy => {
                if !o.busy.insert(idx) {
                    return;
                }
                let weak = |b: &BTreeSet<usize>, skip| {
                    qs.is_weak(b.iter().copied().filter(|i| *i != skip))
                };
                if weak(&o.busy, usize::MAX) && !weak(&o.busy, idx) {
                    self.busy += 1;
                    tracing::warn!(client = %self.id, seq, "the replicas' client table is full: request waits until idle clients expire");
                }
            }
            RefuseReason::Stale { floor } => {
                let e = o.stale.entry(idx).or_insert(floor);
                *e = (*e).max(floor);
                if let Some(floor) = weak_highest(qs, &o.stale) {
                    self.session_expired(floor, cx);
                }
            }
            // a correct client never names a session ahead of its request
            RefuseReason::SessionAhead => {}
        }
    }

    /// A weak quorum said our session is below the floor `floor`: every
    /// outstanding ordered request (all in that session) fails with its
    /// outcome unknown, never sent again; later ones wait for a new session
    /// of at least `floor` (module docs).
    fn session_expired(&mut self, floor: Slot, cx: &mut Cx<'_, Self>) {
        tracing::warn!(client = %self.id, session = self.session, floor, failed = self.ordered.len(), "session expired at the replicas: outstanding requests fail, outcome unknown");
        self.floor = self.floor.max(floor);
        self.state = Session::Unknown;
        for (seq, o) in std::mem::take(&mut self.ordered) {
            cx.cancel_timer(Timer::Retry(seq));
            self.expired += 1;
            cx.output(Output::Failed {
                id: o.id,
                error: Failed::SessionExpired,
                invoked: o.invoked,
            });
        }
        self.note_idle(cx.now());
        self.pump(cx);
    }
}

impl Outstanding {
    fn new(id: u64, req: Request, invoked: Time) -> Self {
        Outstanding {
            id,
            req,
            invoked,
            replies: Collector::new(),
            tentative: Collector::new(),
            views: BTreeMap::new(),
            retries: 0,
            busy: BTreeSet::new(),
            stale: BTreeMap::new(),
        }
    }
}

impl Protocol for Client {
    type Message = Message;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = NoRecord;

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        let Input::Submit { op, read_only } = input;
        let id = self.next_id;
        self.next_id += 1;
        if let Err(e) = self.check(&op) {
            // replicas drop it: sending would retry forever and, since
            // requests run in FIFO order, hold up every later one
            tracing::debug!(client = %self.id, id, error = %e, "operation refused");
            self.refused += 1;
            cx.output(Output::Refused { id, error: e });
            return;
        }
        self.backlog.push_back((id, op, read_only, cx.now()));
        self.pump(cx);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Refused { .. } => self.on_refused(from, msg, cx),
            Message::Reply(r) => self.on_reply(from, r, cx),
            Message::TentativeReply(r) => self.on_tentative(from, r, cx),
            Message::SessionInfo {
                replica,
                client,
                nonce,
                executed,
            } => {
                if let Some(idx) = self.check_sender(from, replica, client, cx) {
                    self.on_session_info(idx, nonce, executed, cx);
                }
            }
            Message::NewEpoch { epoch, .. } => self.on_new_epoch(from, epoch, cx),
            Message::ConfigProof { certs } => self.on_config_proof(from, certs, cx),
            msg => cx.fault(
                from,
                Fault::Unexpected,
                format!("{} sent to a client", msg.kind()),
            ),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Retry(seq) => {
                if let Some(o) = self.ordered.get_mut(&seq) {
                    o.retries += 1;
                    tracing::debug!(client = %self.id, seq, retries = o.retries, replies = o.replies.keys(), "retransmitting");
                    let backoff = self.p.client_backoff(o.retries);
                    // a replica may require a signature of us (a request in
                    // our name failed authentication in a batch)
                    o.req.sign(cx.crypto(), self.g.id);
                    cx.multicast(self.g.addrs(), Message::Request(o.req.clone()));
                    cx.set_timer(Timer::Retry(seq), backoff);
                    self.asked.clear();
                }
            }
            Timer::ReadTimeout(seq) => self.fall_back(seq, cx),
            Timer::Session(nonce) => {
                if matches!(self.state, Session::Asking { nonce: n, .. } if n == nonce) {
                    let query = Message::SessionQuery {
                        client: self.id,
                        nonce,
                    };
                    cx.multicast(self.g.addrs(), query);
                    cx.set_timer(Timer::Session(nonce), self.p.client_retry);
                }
            }
        }
    }
}

impl Client {
    /// The position of the member that sent a reply naming `replica` and
    /// `client`; a fault if it is not a member or names another.
    fn check_sender(
        &self,
        from: Addr,
        replica: byzscale_core::NodeId,
        client: ClientId,
        cx: &mut Cx<'_, Self>,
    ) -> Option<usize> {
        let Some(idx) = from.node().and_then(|n| self.g.index_of(n)) else {
            let detail = "reply from a non-member".to_string();
            cx.fault(from, Fault::NotAMember, detail);
            return None;
        };
        if replica != self.g.members[idx] || client != self.id {
            let detail = "reply names another replica or client".to_string();
            cx.fault(from, Fault::ReplySpoof, detail);
            return None;
        }
        Some(idx)
    }

    fn on_reply(&mut self, from: Addr, r: Reply, cx: &mut Cx<'_, Self>) {
        let Some(idx) = self.check_sender(from, r.replica, r.client, cx) else {
            return;
        };
        let qs = &self.g.qs;
        if r.read_only {
            let d = cx.crypto().hash(&r.result);
            let Some(o) = self.reads.get_mut(&r.seq) else {
                return;
            };
            o.replies.add(qs, idx, d, || (r.result, 0));
            if o.replies.votes(qs, &d) >= qs.quorum() {
                tracing::debug!(client = %self.id, seq = r.seq, voters = ?o.replies.voters(&d), "read-only quorum");
                let result = o.replies.value(&d).cloned().unwrap_or_default().0;
                let o = self.reads.remove(&r.seq).expect("present");
                cx.cancel_timer(Timer::ReadTimeout(r.seq));
                self.finish(o, result, None, cx);
                return;
            }
            // can a quorum still agree on one value? If not, order the read.
            if !o.replies.can_reach(qs, qs.quorum()) {
                self.fall_back(r.seq, cx);
            }
        } else {
            self.count_ordered(idx, r, false, cx);
        }
    }

    /// Count `r`, a reply to an ordered request from the member at `idx`,
    /// final or `tentative`, and complete the request once its rule holds:
    /// a weak quorum of final replies matching in slot and result (f+1
    /// matching vouch for both), or a quorum of tentative ones matching in
    /// view, slot and result (`replica/tentative.rs`).
    fn count_ordered(&mut self, idx: usize, r: Reply, tentative: bool, cx: &mut Cx<'_, Self>) {
        if r.session != self.session {
            return;
        }
        let qs = &self.g.qs;
        let (d, need) = if tentative {
            let key = codec::to_bytes(&(r.view, r.slot, &r.result));
            (cx.crypto().hash(&key), qs.quorum())
        } else {
            let key = codec::to_bytes(&(r.slot, &r.result));
            (cx.crypto().hash(&key), qs.weak())
        };
        let Some(o) = self.ordered.get_mut(&r.seq) else {
            return;
        };
        o.views.insert(idx, r.view);
        let votes = if tentative {
            &mut o.tentative
        } else {
            &mut o.replies
        };
        votes.add(qs, idx, d, || (r.result, r.slot));
        if votes.votes(qs, &d) < need {
            return;
        }
        let (result, slot) = votes.value(&d).cloned().unwrap_or_default();
        let o = self.ordered.remove(&r.seq).expect("present");
        cx.cancel_timer(Timer::Retry(r.seq));
        self.learn_view(&o.views);
        self.finish(o, result, Some(slot), cx);
    }

    /// A tentative reply (`replica/tentative.rs`): counted by (view, slot,
    /// result), apart from the final replies; a quorum of votes completes
    /// the request. Ignored unless [`Params::tentative`] is on.
    fn on_tentative(&mut self, from: Addr, r: Reply, cx: &mut Cx<'_, Self>) {
        if !self.p.tentative {
            return;
        }
        let Some(idx) = self.check_sender(from, r.replica, r.client, cx) else {
            return;
        };
        if !r.read_only {
            self.count_ordered(idx, r, true, cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
    use byzscale_core::quorum::{FaultModel, QuorumSystem};
    use byzscale_core::{Effect, GroupId, NodeId};
    use rand::SeedableRng;

    struct Bench {
        client: Client,
        crypto: Crypto,
        rng: rand_chacha::ChaCha8Rng,
        now: Time,
    }

    impl Bench {
        /// A client that learnt session 0 (a fresh group).
        fn new() -> Self {
            let mut b = Bench::fresh();
            b.step(|c, cx| c.ask(cx));
            for i in 0..3 {
                b.info(i, 1, 0);
            }
            assert!(matches!(b.client.state, Session::Known));
            b
        }

        /// A client that knows no session yet.
        fn fresh() -> Self {
            let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
            let g = GroupInfo::new(GroupId(0), (0..4).map(NodeId).collect(), qs);
            let me = ClientId(1);
            Bench {
                client: Client::new(me, g, Params::default()),
                crypto: Crypto::new(
                    Addr::Client(me),
                    Identity::from_seed([7; 32]),
                    CryptoMode::Real,
                ),
                rng: rand_chacha::ChaCha8Rng::seed_from_u64(1),
                now: 0,
            }
        }

        /// Replica `i` answers session query `nonce`: it executed `executed`.
        fn info(&mut self, i: u32, nonce: u64, executed: Slot) -> Vec<Effect<Client>> {
            let msg = Message::SessionInfo {
                replica: NodeId(i),
                client: ClientId(1),
                nonce,
                executed,
            };
            self.step(|c, cx| c.on_message(Addr::Node(NodeId(i)), msg, cx))
        }

        fn step(
            &mut self,
            f: impl FnOnce(&mut Client, &mut Cx<'_, Client>),
        ) -> Vec<Effect<Client>> {
            let mut effects = Vec::new();
            let mut cx = Cx::new(self.now, &mut self.rng, &self.crypto, &mut effects);
            f(&mut self.client, &mut cx);
            effects
        }

        fn submit(&mut self, read_only: bool) -> Vec<Effect<Client>> {
            let op = b"op".to_vec();
            self.step(|c, cx| c.on_input(Input::Submit { op, read_only }, cx))
        }

        /// Replica `i` answers request `seq` (session 0) with `result`
        /// (ordered ones executed at slot `seq`).
        fn reply(
            &mut self,
            i: u32,
            seq: u64,
            read_only: bool,
            result: &str,
        ) -> Vec<Effect<Client>> {
            let slot = if read_only { 0 } else { seq };
            self.reply_with(i, (0, seq), read_only, slot, result)
        }

        /// Replica `i` answers ordered request (`session`, `seq`) with
        /// `result`, executed at `slot`.
        fn reply_at(
            &mut self,
            i: u32,
            id: (u64, u64),
            slot: Slot,
            result: &str,
        ) -> Vec<Effect<Client>> {
            self.reply_with(i, id, false, slot, result)
        }

        fn reply_with(
            &mut self,
            i: u32,
            (session, seq): (u64, u64),
            read_only: bool,
            slot: Slot,
            result: &str,
        ) -> Vec<Effect<Client>> {
            let msg = Message::Reply(Reply {
                replica: NodeId(i),
                view: 0,
                client: ClientId(1),
                session,
                seq,
                read_only,
                slot,
                result: result.as_bytes().to_vec(),
            });
            self.step(|c, cx| c.on_message(Addr::Node(NodeId(i)), msg, cx))
        }

        /// Replica `i` refuses (`session`, `seq`) as stale below `floor`.
        fn stale(
            &mut self,
            i: u32,
            (session, seq): (u64, u64),
            floor: Slot,
        ) -> Vec<Effect<Client>> {
            let msg = Message::Refused {
                replica: NodeId(i),
                client: ClientId(1),
                session,
                seq,
                reason: RefuseReason::Stale { floor },
            };
            self.step(|c, cx| c.on_message(Addr::Node(NodeId(i)), msg, cx))
        }
    }

    /// The (session, seq) of every request sent.
    fn sent_ids(effects: &[Effect<Client>]) -> Vec<(u64, u64)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send {
                    msg: Message::Request(r),
                    ..
                }
                | Effect::Multicast {
                    msg: Message::Request(r),
                    ..
                } => Some((r.session, r.seq)),
                _ => None,
            })
            .collect()
    }

    /// The session queries sent (their nonces).
    fn queries(effects: &[Effect<Client>]) -> Vec<u64> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Multicast {
                    msg: Message::SessionQuery { nonce, .. },
                    ..
                } => Some(*nonce),
                _ => None,
            })
            .collect()
    }

    /// The submissions failed with their outcome unknown.
    fn expired(effects: &[Effect<Client>]) -> Vec<u64> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Output(Output::Failed {
                    id,
                    error: Failed::SessionExpired,
                    ..
                }) => Some(*id),
                _ => None,
            })
            .collect()
    }

    /// Before its first ordered request a client asks for a session and
    /// takes, from a quorum of answers, the highest slot a weak quorum
    /// reached: one Byzantine replica answering a huge slot (which would
    /// make every request `SessionAhead`) or zero (below the floor) does not
    /// choose it. Ordered submissions wait; reads do not; an answer to
    /// another query does not count.
    #[test]
    fn a_client_learns_a_session_a_correct_replica_executed() {
        let mut b = Bench::fresh();
        let fx = b.submit(false);
        assert_eq!(queries(&fx), vec![1]);
        assert!(sent_ids(&fx).is_empty(), "ordered waits for a session");
        assert_eq!(sent_ids(&b.submit(true)), vec![(0, 1)], "a read goes");
        assert!(queries(&b.submit(false)).is_empty(), "asking already");
        // the retry timer asks again, same nonce
        assert_eq!(
            queries(&b.step(|c, cx| c.on_timer(Timer::Session(1), cx))),
            vec![1]
        );
        assert!(sent_ids(&b.info(0, 1, u64::MAX)).is_empty());
        assert!(sent_ids(&b.info(1, 9, 40)).is_empty(), "another nonce");
        assert!(sent_ids(&b.info(1, 1, 40)).is_empty(), "no quorum yet");
        let fx = b.info(2, 1, 38);
        assert_eq!(sent_ids(&fx), vec![(40, 1), (40, 2)]);
        assert_eq!(b.client.session(), 40);
        // late answers change nothing
        assert!(sent_ids(&b.info(3, 1, 0)).is_empty());
        assert_eq!(b.client.session(), 40);
        assert!(queries(&b.submit(false)).is_empty());
        // with the Byzantine answer zero instead, the same slots: 38
        let mut b = Bench::fresh();
        b.submit(false);
        b.info(0, 1, 0);
        b.info(1, 1, 40);
        assert_eq!(sent_ids(&b.info(2, 1, 38)), vec![(38, 1)]);
    }

    /// The rule that keeps exactly-once (issue 10 item 9): f+1 replicas
    /// saying the session is below their floor fail every outstanding
    /// ordered request with "session expired: outcome unknown", never send
    /// any of them again (one may have run before its entry expired, its
    /// replies lost: the renumber-and-resend this replaced ran it twice),
    /// and make the client learn a session of at least the lower of the
    /// floors for later requests. f of them, another session or a request
    /// not outstanding change nothing.
    #[test]
    fn a_stale_session_fails_its_requests_and_never_sends_them_again() {
        let mut b = Bench::new();
        b.submit(false);
        b.submit(false);
        assert!(expired(&b.stale(0, (0, 1), 41)).is_empty(), "one replica");
        assert!(
            expired(&b.stale(1, (0, 9), 40)).is_empty(),
            "not outstanding"
        );
        assert!(
            expired(&b.stale(1, (3, 1), 40)).is_empty(),
            "another session"
        );
        let fx = b.stale(1, (0, 1), 40);
        assert_eq!(expired(&fx), vec![1, 2], "both fail, outcome unknown");
        assert!(sent_ids(&fx).is_empty(), "nothing sent again");
        assert_eq!((b.client.expired(), b.client.outstanding()), (2, 0));
        // nothing is retransmitted, and late replies of the old session
        // are ignored
        assert!(sent_ids(&b.step(|c, cx| c.on_timer(Timer::Retry(1), cx))).is_empty());
        assert!(done(&b.reply_at(0, (0, 2), 9, "a")).is_empty());
        assert!(done(&b.reply_at(1, (0, 2), 9, "a")).is_empty());
        // the next request waits for a new session: at least the floor
        // both refusals vouch for (40, not 41), though the replicas
        // answered lower slots
        let fx = b.submit(false);
        assert!(sent_ids(&fx).is_empty());
        assert_eq!(queries(&fx), vec![2]);
        b.info(0, 2, 30);
        b.info(1, 2, 35);
        assert_eq!(sent_ids(&b.info(2, 2, 33)), vec![(40, 1)]);
        b.reply_at(0, (40, 1), 50, "a");
        assert_eq!(done(&b.reply_at(1, (40, 1), 50, "a")).len(), 1);
        assert_eq!(b.client.completed(), 1);
    }

    /// Correct replicas checkpoint at different moments: each refuses a
    /// retransmission with the floor it has then, higher than its first
    /// answer. Their latest answers count (seed 2267 of the SMR sweep: the
    /// first answers of three correct replicas all differed, no two ever
    /// matched, and the client retransmitted forever); a replica's lower,
    /// later answer does not lower its vote.
    #[test]
    fn refusals_with_rising_floors_expire_the_session() {
        let mut b = Bench::new();
        b.submit(false);
        assert!(expired(&b.stale(0, (0, 1), 32)).is_empty());
        assert!(expired(&b.stale(0, (0, 1), 64)).is_empty(), "one replica");
        assert!(expired(&b.stale(0, (0, 1), 20)).is_empty(), "still one");
        assert_eq!(expired(&b.stale(1, (0, 1), 96)), vec![1]);
        b.submit(false);
        b.info(0, 2, 10);
        b.info(1, 2, 10);
        // the floor is the one both vouch for: replica 0's latest, 64
        assert_eq!(sent_ids(&b.info(2, 2, 10)), vec![(64, 1)]);
    }

    /// A reply counts only with others matching in result and slot. A
    /// client keeps its session while busy and after short pauses; idle for
    /// longer than `session_idle` it asks again, and an answer no higher
    /// than its session keeps the session and its numbering.
    #[test]
    fn an_idle_client_asks_for_a_session_again() {
        let mut b = Bench::new();
        assert_eq!(sent_ids(&b.submit(false)), vec![(0, 1)]);
        // a Byzantine replica's slot does not count with a correct one's
        b.reply_at(0, (0, 1), 99, "a");
        assert!(done(&b.reply_at(1, (0, 1), 5, "a")).is_empty());
        assert_eq!(done(&b.reply_at(2, (0, 1), 5, "a")).len(), 1);
        b.now += b.client.p.session_idle;
        assert_eq!(sent_ids(&b.submit(false)), vec![(0, 2)], "not idle long");
        b.reply_at(1, (0, 2), 6, "x");
        b.reply_at(2, (0, 2), 6, "x");
        b.now += b.client.p.session_idle + 1;
        let fx = b.submit(false);
        assert_eq!((sent_ids(&fx), queries(&fx)), (vec![], vec![2]));
        // nothing executed meanwhile: the same session, numbering on
        b.info(0, 2, 0);
        b.info(1, 2, 0);
        assert_eq!(sent_ids(&b.info(2, 2, 0)), vec![(0, 3)]);
        b.reply_at(1, (0, 3), 7, "x");
        b.reply_at(2, (0, 3), 7, "x");
        b.now += 2 * b.client.p.session_idle;
        assert_eq!(queries(&b.submit(false)), vec![3]);
        b.info(3, 3, 7);
        b.info(1, 3, 7);
        assert_eq!(sent_ids(&b.info(2, 3, 6)), vec![(7, 1)]);
    }

    fn done(effects: &[Effect<Client>]) -> Vec<(Vec<u8>, bool)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Output(Output::Done {
                    result, ordered, ..
                }) => Some((result.clone(), *ordered)),
                _ => None,
            })
            .collect()
    }

    /// Ordered requests sent (to whom, the request's read-only flag).
    fn requests(effects: &[Effect<Client>]) -> Vec<(Addr, bool)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send {
                    to,
                    msg: Message::Request(r),
                } => Some((*to, r.read_only)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_ordered_result_needs_a_weak_quorum_of_distinct_replicas() {
        let mut b = Bench::new();
        let sent = b.submit(false);
        assert_eq!(requests(&sent), vec![(Addr::Node(NodeId(0)), false)]);
        assert!(done(&b.reply(0, 1, false, "a")).is_empty());
        assert!(
            done(&b.reply(0, 1, false, "a")).is_empty(),
            "same replica twice"
        );
        // replica 0 changing its answer does not count for the new one
        assert!(done(&b.reply(0, 1, false, "b")).is_empty());
        assert!(done(&b.reply(1, 1, false, "b")).is_empty());
        assert_eq!(
            done(&b.reply(2, 1, false, "a")),
            vec![(b"a".to_vec(), true)]
        );
        assert_eq!(b.client.completed(), 1);
        assert!(
            done(&b.reply(3, 1, false, "a")).is_empty(),
            "completed once"
        );
    }

    /// Replica `i`'s tentative reply to request (0, `seq`): executed at
    /// `slot` in `view`.
    fn tentative(
        b: &mut Bench,
        i: u32,
        seq: u64,
        (view, slot): (View, Slot),
        result: &str,
    ) -> Vec<Effect<Client>> {
        let msg = Message::TentativeReply(Reply {
            replica: NodeId(i),
            view,
            client: ClientId(1),
            session: 0,
            seq,
            read_only: false,
            slot,
            result: result.as_bytes().to_vec(),
        });
        b.step(|c, cx| c.on_message(Addr::Node(NodeId(i)), msg, cx))
    }

    /// Tentative replies count only with tentative execution on, and then
    /// only a quorum (3 of 4) matching in view, slot and result completes a
    /// request: f+1 tentative replies do not, nor replies of two views (a
    /// value prepared at one replica in each is no quorum of preparers),
    /// nor do they count with final replies. A later view's quorum does.
    #[test]
    fn a_tentative_result_needs_a_quorum_in_one_view() {
        let mut off = Bench::new();
        off.submit(false);
        for i in 0..4 {
            assert!(done(&tentative(&mut off, i, 1, (0, 1), "a")).is_empty());
        }
        assert_eq!(off.client.completed(), 0, "ignored when off");

        let mut b = Bench::new();
        b.client.p.tentative = true;
        b.submit(false);
        assert!(done(&tentative(&mut b, 0, 1, (0, 1), "a")).is_empty());
        assert!(
            done(&tentative(&mut b, 1, 1, (0, 1), "a")).is_empty(),
            "f+1 is not enough"
        );
        assert!(
            done(&b.reply(2, 1, false, "a")).is_empty(),
            "final replies count apart"
        );
        assert!(
            done(&tentative(&mut b, 2, 1, (1, 1), "a")).is_empty(),
            "another view"
        );
        assert!(
            done(&tentative(&mut b, 3, 1, (0, 2), "a")).is_empty(),
            "another slot"
        );
        assert_eq!(b.client.completed(), 0);
        // the final rule still completes it: f+1 final replies
        assert_eq!(
            done(&b.reply(3, 1, false, "a")),
            vec![(b"a".to_vec(), true)]
        );

        let mut b = Bench::new();
        b.client.p.tentative = true;
        b.submit(false);
        for i in 1..3 {
            assert!(done(&tentative(&mut b, i, 1, (1, 1), "a")).is_empty());
        }
        assert_eq!(
            done(&tentative(&mut b, 3, 1, (1, 1), "a")),
            vec![(b"a".to_vec(), true)]
        );
        assert_eq!(b.client.view, 1, "the completing replies name view 1");
    }

    /// With WHEAT weights (f = 1, Δ = 1: 2 2 1 1 1, quorum 5 votes) the two
    /// V_max replicas and one more complete a request (3 replicas), as do
    /// any 4; one V_max and two V_min (4 votes) do not.
    #[test]
    fn a_weighted_tentative_quorum_counts_votes() {
        let wheat = || {
            let mut b = Bench::new();
            let qs = QuorumSystem::wheat_default(1, 1, FaultModel::Bft).unwrap();
            b.client.g = GroupInfo::new(GroupId(0), (0..5).map(NodeId).collect(), qs);
            b.client.p.tentative = true;
            b.submit(false);
            b
        };
        let mut b = wheat();
        for i in [0, 2] {
            assert!(done(&tentative(&mut b, i, 1, (0, 1), "r")).is_empty());
        }
        assert!(
            done(&tentative(&mut b, 3, 1, (0, 1), "r")).is_empty(),
            "4 votes"
        );
        assert_eq!(
            done(&tentative(&mut b, 4, 1, (0, 1), "r")).len(),
            1,
            "4 replicas"
        );
        let mut b = wheat();
        for i in [0, 1] {
            assert!(done(&tentative(&mut b, i, 1, (0, 1), "r")).is_empty());
        }
        assert_eq!(
            done(&tentative(&mut b, 4, 1, (0, 1), "r")).len(),
            1,
            "V_max pair + 1"
        );
    }

    /// The slot an ordered result reports is the one its weak quorum named
    /// (a replica naming another slot for the same result does not count
    /// with it); an unordered read reports slot 0.
    #[test]
    fn done_names_the_slot_the_matching_replies_name() {
        let slots = |fx: &[Effect<Client>]| -> Vec<(Slot, bool)> {
            fx.iter()
                .filter_map(|e| match e {
                    Effect::Output(Output::Done { slot, ordered, .. }) => Some((*slot, *ordered)),
                    _ => None,
                })
                .collect()
        };
        let mut b = Bench::new();
        b.submit(false);
        assert!(slots(&b.reply_at(0, (0, 1), 9, "a")).is_empty());
        assert!(slots(&b.reply_at(1, (0, 1), 7, "a")).is_empty());
        assert_eq!(slots(&b.reply_at(2, (0, 1), 7, "a")), vec![(7, true)]);
        b.submit(true);
        let mut fx = Vec::new();
        for i in 0..3 {
            fx.extend(b.reply(i, 1, true, "r"));
        }
        assert_eq!(slots(&fx), vec![(0, false)]);
    }

    /// Issue 10 item 7 at the client: an operation over `max_op_bytes` used
    /// to be sent and retransmitted forever (the replicas drop it), holding
    /// up every later request of the client. Now it is refused before
    /// anything is sent, and the next operation goes out at once.
    #[test]
    fn an_oversized_operation_is_refused_and_sends_nothing() {
        let mut b = Bench::new();
        let limit = b.client.p.max_op_bytes;
        let op = vec![0u8; limit + 1];
        assert_eq!(
            b.client.check(&op),
            Err(Refused::TooLarge {
                size: limit + 1,
                limit
            })
        );
        let fx = b.step(|c, cx| {
            c.on_input(
                Input::Submit {
                    op,
                    read_only: false,
                },
                cx,
            )
        });
        // the caller learns at once, typed; nothing goes out
        match &fx[..] {
            [Effect::Output(Output::Refused { id: 1, error })] => {
                assert_eq!(
                    *error,
                    Refused::TooLarge {
                        size: limit + 1,
                        limit
                    }
                )
            }
            _ => panic!("{fx:?}"),
        }
        assert_eq!((b.client.refused(), b.client.outstanding()), (1, 0));
        assert_eq!(
            requests(&b.submit(false)),
            vec![(Addr::Node(NodeId(0)), false)]
        );
    }

    /// Issue 10 item 6: a replica that found a request in this client's name
    /// failing authentication in a batch takes its requests only signed, so
    /// the first transmission goes with MACs alone and every retransmission
    /// carries the client's signature over the request.
    #[test]
    fn a_retransmission_carries_the_clients_signature() {
        let mut b = Bench::new();
        let sent = |fx: &[Effect<Client>]| -> Vec<Request> {
            fx.iter()
                .filter_map(|e| match e {
                    Effect::Send {
                        msg: Message::Request(r),
                        ..
                    }
                    | Effect::Multicast {
                        msg: Message::Request(r),
                        ..
                    } => Some(r.clone()),
                    _ => None,
                })
                .collect()
        };
        let first = sent(&b.submit(false));
        assert_eq!(first.len(), 1);
        assert!(first[0].sig.is_none());
        let again = sent(&b.step(|c, cx| c.on_timer(Timer::Retry(1), cx)));
        assert_eq!(again.len(), 1);
        let r = &again[0];
        let sig = r.sig.expect("a signature");
        let bytes = r.signed_bytes(GroupId(0));
        let mut verifier = Crypto::new(
            Addr::Node(NodeId(0)),
            Identity::from_seed([9; 32]),
            CryptoMode::Real,
        );
        verifier
            .add_peer(Addr::Client(ClientId(1)), b.crypto.public())
            .unwrap();
        assert!(verifier
            .verify(Addr::Client(ClientId(1)), &bytes, &sig)
            .is_ok());
    }

    #[test]
    fn a_read_needs_a_quorum_and_falls_back_when_none_can_form() {
        let mut b = Bench::new();
        b.submit(true);
        b.reply(0, 1, true, "a");
        assert!(done(&b.reply(1, 1, true, "a")).is_empty());
        assert_eq!(
            done(&b.reply(2, 1, true, "a")),
            vec![(b"a".to_vec(), false)]
        );

        b.submit(true);
        b.reply(0, 2, true, "a");
        // "a", "b" and two replicas to go: a quorum of 3 can still form
        assert!(requests(&b.reply(1, 2, true, "b")).is_empty());
        // "a", "b", "c": no value can reach 3 any more, so the read is ordered
        let fallback = b.reply(2, 2, true, "c");
        assert_eq!(requests(&fallback), vec![(Addr::Node(NodeId(0)), false)]);
        assert!(done(&fallback).is_empty());
        assert_eq!(b.client.outstanding(), 1);
    }
}
