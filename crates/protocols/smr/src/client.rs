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
//! Several requests may be outstanding (`Params::client_window`); ordered ones are
//! numbered contiguously from 1 within a session so the replicas can execute
//! them in FIFO order. Sessions are named by slots (see `replica/execute.rs`):
//! an ordered reply carries the slot that executed the request, and counts
//! only with replies matching in result and slot, so the client's
//! `last_slot` (the highest slot of a completed ordered request) is vouched
//! for by a correct replica. A fresh client runs in session 0; one with
//! nothing ordered outstanding and `last_slot` above its session starts
//! session `last_slot`. A weak quorum of replicas answering
//! [`RefuseReason::Stale`] with the same floor for an outstanding request
//! (the client's entry expired and its session is below the replicas'
//! floor) moves every outstanding ordered request to session
//! max(floor, `last_slot`), renumbered from 1, and sends them again.
//! Replicas whose client table is full answer a client they hold no entry
//! for with [`RefuseReason::Busy`]; a weak quorum of them makes the client
//! log it and count it ([`Client::busy`]) while it keeps retrying. Unordered
//! reads carry no session and never change `last_slot`.
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

use crate::fault::Fault;
use crate::message::*;
use crate::params::{GroupInfo, Params};
use byzscale_core::codec;
use byzscale_core::crypto::Digest;
use byzscale_core::quorum::Collector;
use byzscale_core::{Addr, ClientId, Cx, NoRecord, Protocol, Time};
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
    },
    /// The `id`-th submission was refused before anything was sent (see
    /// [`Client::check`]); it holds up no later submission.
    Refused { id: u64, error: Refused },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Retransmit the ordered request with this sequence number.
    Retry(u64),
    /// Give up on the unordered read with this number.
    ReadTimeout(u64),
}

struct Outstanding {
    id: u64,
    req: Request,
    invoked: Time,
    /// The replies by digest of (slot, result): a replica's first reply
    /// counts.
    replies: Collector<Digest, (Vec<u8>, Slot)>,
    /// The view each replica reported in its reply.
    views: BTreeMap<usize, View>,
    retries: u32,
    /// Replicas that answered [`RefuseReason::Busy`].
    busy: BTreeSet<usize>,
    /// [`RefuseReason::Stale`] answers by floor.
    stale: Collector<Slot, ()>,
}

pub struct Client {
    id: ClientId,
    g: GroupInfo,
    p: Params,
    /// The session of its ordered requests (see the module docs).
    session: u64,
    /// The last sequence number given to an ordered request in `session`
    /// (0: none yet).
    last_seq: u64,
    /// The highest slot that executed one of its completed ordered requests.
    last_slot: Slot,
    next_ro: u64,
    next_id: u64,
    ordered: BTreeMap<u64, Outstanding>,
    reads: BTreeMap<u64, Outstanding>,
    /// Submissions waiting for a free slot in the window.
    backlog: VecDeque<(u64, Vec<u8>, bool, Time)>,
    completed: u64,
    refused: u64,
    busy: u64,
    /// The view the client believes current: its leader gets new requests.
    view: View,
}

impl Client {
    pub fn new(id: ClientId, g: GroupInfo, p: Params) -> Self {
        Client {
            id,
            g,
            p,
            session: 0,
            last_seq: 0,
            last_slot: 0,
            next_ro: 1,
            next_id: 1,
            ordered: BTreeMap::new(),
            reads: BTreeMap::new(),
            backlog: VecDeque::new(),
            completed: 0,
            refused: 0,
            busy: 0,
            view: 0,
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
        let mut by_view: Vec<(View, usize)> = views.iter().map(|(i, v)| (*v, *i)).collect();
        by_view.sort_unstable_by(|a, b| b.cmp(a));
        let mut voters = Vec::new();
        for (v, i) in by_view {
            voters.push(i);
            if self.g.qs.is_weak(voters.iter().copied()) {
                if v > self.view {
                    tracing::debug!(client = %self.id, view = v, "client follows a new view");
                    self.view = v;
                }
                return;
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

    /// The session its ordered requests run in now.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The number of the next ordered request: with nothing ordered
    /// outstanding, in a new session named by the last slot learnt.
    fn take_seq(&mut self) -> u64 {
        if self.ordered.is_empty() && self.last_slot > self.session {
            self.session = self.last_slot;
            self.last_seq = 0;
        }
        self.last_seq += 1;
        self.last_seq
    }

    fn make_request(&self, seq: u64, read_only: bool, op: Vec<u8>, cx: &Cx<'_, Self>) -> Request {
        // reads carry no session
        let session = if read_only { 0 } else { self.session };
        Request::authenticated(cx.crypto(), &self.g, self.id, (session, seq), read_only, op)
    }

    fn start(
        &mut self,
        id: u64,
        op: Vec<u8>,
        read_only: bool,
        invoked: Time,
        cx: &mut Cx<'_, Self>,
    ) {
        if read_only {
            let seq = self.next_ro;
            self.next_ro += 1;
            let req = self.make_request(seq, true, op, cx);
            cx.multicast(self.g.addrs(), Message::Request(req.clone()));
            cx.set_timer(Timer::ReadTimeout(seq), self.p.client_retry);
            self.reads.insert(seq, Outstanding::new(id, req, invoked));
        } else {
            self.start_ordered(id, op, invoked, cx);
        }
    }

    /// Number submission `id` as the next ordered request, send it and
    /// wait for it.
    fn start_ordered(&mut self, id: u64, op: Vec<u8>, invoked: Time, cx: &mut Cx<'_, Self>) {
        let seq = self.take_seq();
        let req = self.make_request(seq, false, op, cx);
        self.send_ordered(&req, cx);
        cx.set_timer(Timer::Retry(seq), self.p.client_retry);
        self.ordered.insert(seq, Outstanding::new(id, req, invoked));
    }

    fn pump(&mut self, cx: &mut Cx<'_, Self>) {
        while (self.ordered.len() + self.reads.len()) < self.p.client_window as usize {
            let Some((id, op, ro, invoked)) = self.backlog.pop_front() else {
                return;
            };
            self.start(id, op, ro, invoked, cx);
        }
    }

    fn finish(&mut self, o: Outstanding, result: Vec<u8>, ordered: bool, cx: &mut Cx<'_, Self>) {
        self.completed += 1;
        cx.output(Output::Done {
            id: o.id,
            result,
            ordered,
            invoked: o.invoked,
        });
        self.pump(cx);
    }

    /// Re-submit a read as an ordered request (same submission id).
    fn fall_back(&mut self, seq: u64, cx: &mut Cx<'_, Self>) {
        if let Some(o) = self.reads.remove(&seq) {
            cx.cancel_timer(Timer::ReadTimeout(seq));
            self.start_ordered(o.id, o.req.op, o.invoked, cx);
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
                o.stale.add(qs, idx, floor, || ());
                if o.stale.votes(qs, &floor) >= qs.weak() {
                    self.new_session(floor, cx);
                }
            }
            // a correct client never names a session ahead of its request
            RefuseReason::SessionAhead => {}
        }
    }

    /// A weak quorum said our session is below the floor `floor`: move every
    /// outstanding ordered request to session max(floor, last slot),
    /// renumbered from 1 in order, and send them again (none of them ran:
    /// the replicas had no entry of ours).
    fn new_session(&mut self, floor: Slot, cx: &mut Cx<'_, Self>) {
        let session = floor.max(self.last_slot);
        if session <= self.session {
            return;
        }
        tracing::debug!(client = %self.id, from = self.session, to = session, "session expired at the replicas: moving to a new one");
        self.session = session;
        self.last_seq = 0;
        let old = std::mem::take(&mut self.ordered);
        for (seq, o) in old {
            cx.cancel_timer(Timer::Retry(seq));
            self.start_ordered(o.id, o.req.op, o.invoked, cx);
        }
    }
}

impl Outstanding {
    fn new(id: u64, req: Request, invoked: Time) -> Self {
        Outstanding {
            id,
            req,
            invoked,
            replies: Collector::new(),
            views: BTreeMap::new(),
            retries: 0,
            busy: BTreeSet::new(),
            stale: Collector::new(),
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
        if let Message::Refused { .. } = msg {
            self.on_refused(from, msg, cx);
            return;
        }
        let Message::Reply(r) = msg else {
            cx.fault(
                from,
                Fault::Unexpected,
                format!("{} sent to a client", msg.kind()),
            );
            return;
        };
        let Some(idx) = from.node().and_then(|n| self.g.index_of(n)) else {
            cx.fault(
                from,
                Fault::NotAMember,
                "reply from a non-member".to_string(),
            );
            return;
        };
        if r.replica != self.g.members[idx] || r.client != self.id {
            cx.fault(
                from,
                Fault::ReplySpoof,
                "reply names another replica or client".to_string(),
            );
            return;
        }
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
                self.finish(o, result, false, cx);
                return;
            }
            // can a quorum still agree on one value? If not, order the read.
            if !o.replies.can_reach(qs, qs.quorum()) {
                self.fall_back(r.seq, cx);
            }
        } else {
            if r.session != self.session {
                return;
            }
            // the slot counts with the result: f+1 matching vouch for both
            let d = cx.crypto().hash(&codec::to_bytes(&(r.slot, &r.result)));
            let Some(o) = self.ordered.get_mut(&r.seq) else {
                return;
            };
            o.views.insert(idx, r.view);
            o.replies.add(qs, idx, d, || (r.result, r.slot));
            if o.replies.votes(qs, &d) >= qs.weak() {
                let (result, slot) = o.replies.value(&d).cloned().unwrap_or_default();
                let o = self.ordered.remove(&r.seq).expect("present");
                cx.cancel_timer(Timer::Retry(r.seq));
                self.last_slot = self.last_slot.max(slot);
                self.learn_view(&o.views);
                self.finish(o, result, true, cx);
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Retry(seq) => {
                if let Some(o) = self.ordered.get_mut(&seq) {
                    o.retries += 1;
                    tracing::debug!(client = %self.id, seq, retries = o.retries, replies = o.replies.keys(), "retransmitting");
                    let backoff = self.p.client_retry.saturating_mul(1 << o.retries.min(3));
                    // a replica may require a signature of us (a request in
                    // our name failed authentication in a batch)
                    o.req.sign(cx.crypto(), self.g.id);
                    cx.multicast(self.g.addrs(), Message::Request(o.req.clone()));
                    cx.set_timer(Timer::Retry(seq), backoff);
                }
            }
            Timer::ReadTimeout(seq) => self.fall_back(seq, cx),
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
    }

    impl Bench {
        fn new() -> Self {
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
            }
        }

        fn step(
            &mut self,
            f: impl FnOnce(&mut Client, &mut Cx<'_, Client>),
        ) -> Vec<Effect<Client>> {
            let mut effects = Vec::new();
            let mut cx = Cx::new(0, &mut self.rng, &self.crypto, &mut effects);
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

    /// A reply counts only with others matching in result and slot; the
    /// slot of a completed request names the next session the client
    /// starts once nothing is outstanding, numbered from 1.
    #[test]
    fn a_client_starts_a_session_named_by_a_vouched_slot() {
        let mut b = Bench::new();
        assert_eq!(sent_ids(&b.submit(false)), vec![(0, 1)]);
        assert_eq!(sent_ids(&b.submit(false)), vec![(0, 2)]);
        // a Byzantine replica's slot does not count with a correct one's
        b.reply_at(0, (0, 1), 99, "a");
        assert!(done(&b.reply_at(1, (0, 1), 5, "a")).is_empty());
        assert_eq!(done(&b.reply_at(2, (0, 1), 5, "a")).len(), 1);
        // still one outstanding: the next stays in the session
        assert_eq!(sent_ids(&b.submit(false)), vec![(0, 3)]);
        for (seq, slot) in [(2, 6), (3, 7)] {
            b.reply_at(1, (0, seq), slot, "x");
            // a reply of another session does not count
            b.reply_at(3, (4, seq), slot, "x");
            assert_eq!(done(&b.reply_at(2, (0, seq), slot, "x")).len(), 1);
        }
        assert_eq!(b.client.session(), 0);
        // nothing outstanding: a new session, named by the last slot (7)
        assert_eq!(sent_ids(&b.submit(false)), vec![(7, 1)]);
        assert_eq!(
            sent_ids(&b.submit(true)),
            vec![(0, 1)],
            "a read has no session"
        );
        assert_eq!(b.client.session(), 7);
    }

    /// f+1 replicas saying the session is below the same floor move every
    /// outstanding ordered request to session max(floor, last slot),
    /// renumbered from 1, and send them again; f of them, or mismatched
    /// floors, or a request no longer outstanding, change nothing.
    #[test]
    fn stale_from_a_weak_quorum_moves_outstanding_requests_to_a_new_session() {
        let mut b = Bench::new();
        b.submit(false);
        b.submit(false);
        assert!(sent_ids(&b.stale(0, (0, 1), 40)).is_empty(), "one replica");
        assert!(
            sent_ids(&b.stale(1, (0, 1), 41)).is_empty(),
            "another floor"
        );
        assert!(
            sent_ids(&b.stale(2, (0, 9), 40)).is_empty(),
            "not outstanding"
        );
        let moved = b.stale(2, (0, 1), 40);
        assert_eq!(sent_ids(&moved), vec![(40, 1), (40, 2)]);
        assert_eq!(b.client.session(), 40);
        // late refusals of the old session are ignored
        assert!(sent_ids(&b.stale(3, (0, 2), 40)).is_empty());
        // the moved requests complete in the new session
        b.reply_at(0, (40, 1), 50, "a");
        assert_eq!(done(&b.reply_at(1, (40, 1), 50, "a")).len(), 1);
        assert_eq!(b.client.outstanding(), 1);
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
