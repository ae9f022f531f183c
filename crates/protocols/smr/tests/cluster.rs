//! A group of four replicas and one client on the simulator engine
//! (`byzscale_sim::engine`): the replica and client cores together, with real
//! crypto, over a one-region network without jitter or faults and with free
//! CPU, so a run is a short, deterministic sequence of events. The full
//! scenarios with adversaries and checkers are `byzscale sim smr`; these check
//! the normal case, reads, view changes, batching and state transfer on their
//! own. Any fault a replica or the client reports fails the test, except in
//! the runs with a Byzantine client ([`Poisoner`]), which count them.

use byzscale_core::codec;
use byzscale_core::crypto::Mac;
use byzscale_core::protocol::{Time, MICROS, MILLIS, SECS};
use byzscale_core::{Addr, ClientId, Cx, NoRecord, NodeId, Protocol};
use byzscale_sim::engine::{Actor, ActorCx, ActorEffect, NodeIdx, ProtocolActor, Sim, TraceKind};
use byzscale_sim::net_model::Partition;
use byzscale_smr::{client, replica, Client, GroupInfo, Message, Params, Replica, Request};
use std::any::Any;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

mod common;
use common::{group, lan, params, Keys, Log, Out, Seen};

#[derive(Debug)]
enum In {
    Client(client::Input),
    Replica(replica::Input),
}

impl In {
    fn replica(self) -> Option<replica::Input> {
        match self {
            In::Replica(x) => Some(x),
            In::Client(_) => None,
        }
    }
    fn client(self) -> Option<client::Input> {
        match self {
            In::Client(x) => Some(x),
            In::Replica(_) => None,
        }
    }
}

struct World {
    sim: Sim<Message, In, Out>,
    seen: Seen,
    replicas: Vec<NodeIdx>,
    client: NodeIdx,
    /// Messages the replicas sent over the frame limit (see [`FrameLimit`]).
    oversized: Rc<Cell<u64>>,
}

/// The real transport drops a message whose encoding exceeds its frame limit
/// (`codec::DEFAULT_MAX_FRAME` by default) before it leaves; the simulator
/// delivers any size. Each replica runs inside this wrapper, which does what
/// the transport does and counts it.
struct FrameLimit<A> {
    inner: A,
    dropped: Rc<Cell<u64>>,
}

impl<A> FrameLimit<A> {
    fn filter(&self, mark: usize, cx: &mut ActorCx<'_, Message, Out>) {
        let fits = |m: &Message| codec::encoded_len(m) <= codec::DEFAULT_MAX_FRAME;
        let tail: Vec<_> = cx.effects_mut().drain(mark..).collect();
        for e in tail {
            let keep = match &e {
                ActorEffect::Send { msg, .. }
                | ActorEffect::Multicast { msg, .. }
                | ActorEffect::Spoofed { msg, .. } => fits(msg),
                _ => true,
            };
            if keep {
                cx.effects_mut().push(e);
            } else {
                self.dropped.set(self.dropped.get() + 1);
            }
        }
    }
}

impl<A: Actor<Message, In, Out>> Actor<Message, In, Out> for FrameLimit<A> {
    fn start(&mut self, cx: &mut ActorCx<'_, Message, Out>) {
        let mark = cx.effects_len();
        self.inner.start(cx);
        self.filter(mark, cx);
    }
    fn input(&mut self, input: In, cx: &mut ActorCx<'_, Message, Out>) {
        let mark = cx.effects_len();
        self.inner.input(input, cx);
        self.filter(mark, cx);
    }
    fn message(&mut self, from: Addr, msg: Message, cx: &mut ActorCx<'_, Message, Out>) {
        let mark = cx.effects_len();
        self.inner.message(from, msg, cx);
        self.filter(mark, cx);
    }
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, Message, Out>) {
        let mark = cx.effects_len();
        self.inner.timer(key, cx);
        self.filter(mark, cx);
    }
    fn as_any(&self) -> Option<&dyn Any> {
        self.inner.as_any()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        self.inner.as_any_mut()
    }
}

/// A Byzantine client (issue 10 item 6, partial-MAC poisoning): every `tick`
/// it sends each replica its own version of requests 1..=`seqs` whose MAC
/// authenticator is valid at that replica only (the other entries are
/// zeros), so whichever replica leads holds a request that it authenticated
/// and every other replica refuses. It never signs.
struct Poisoner {
    g: GroupInfo,
    seqs: u64,
    tick: Time,
    round: u64,
}

impl Protocol for Poisoner {
    type Message = Message;
    type Input = client::Input;
    type Output = client::Output;
    type Timer = ();
    type Record = NoRecord;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        cx.set_timer((), self.tick);
    }
    fn on_input(&mut self, _: client::Input, _: &mut Cx<'_, Self>) {}
    fn on_message(&mut self, _: Addr, _: Message, _: &mut Cx<'_, Self>) {}
    fn on_timer(&mut self, _: (), cx: &mut Cx<'_, Self>) {
        self.round += 1;
        for seq in 1..=self.seqs {
            for (j, to) in self.g.addrs().into_iter().enumerate() {
                let op = format!("poison {j} {seq} {}", self.round).into_bytes();
                let bytes = Request::auth_bytes(self.g.id, POISONER, (0, seq), false, &op);
                let mut auth = vec![Mac::default(); self.g.n()];
                auth[j] = cx.crypto().mac(to, &bytes).expect("a known replica");
                let (read_only, sig) = (false, None);
                let req = Request {
                    client: POISONER,
                    session: 0,
                    seq,
                    read_only,
                    op,
                    auth,
                    sig,
                };
                cx.send(to, Message::Request(req));
            }
        }
        cx.set_timer((), self.tick);
    }
}

const POISONER: ClientId = ClientId(666);

impl World {
    fn new(n: usize, f: usize, p: Params) -> Self {
        Self::build(n, f, p, false)
    }

    /// With `poisoner`, a [`Poisoner`] client joins and faults are counted.
    fn build(n: usize, f: usize, p: Params, poisoner: bool) -> Self {
        let g = group(n, f);
        let me = ClientId(1);
        let mut addrs = g.addrs();
        if poisoner {
            addrs.push(Addr::Client(POISONER));
        }
        addrs.push(Addr::Client(me));
        let keys = Keys::new(addrs);
        let mut sim = lan();
        let mut nodes = Vec::new();
        let oversized = Rc::new(Cell::new(0));
        for (i, a) in keys.addrs.iter().enumerate() {
            let crypto = keys.crypto(i);
            let idx = match a {
                Addr::Node(id) => {
                    let r = Replica::new(*id, g.clone(), p.clone(), Log::default());
                    let inner = ProtocolActor::with_maps(r, In::replica, Out::Replica);
                    let dropped = oversized.clone();
                    sim.add_node(*a, crypto, FrameLimit { inner, dropped }, 0)
                }
                Addr::Client(POISONER) => {
                    let (g, seqs, tick, round) = (g.clone(), 4, 20 * MILLIS, 0);
                    let c = Poisoner {
                        g,
                        seqs,
                        tick,
                        round,
                    };
                    let actor = ProtocolActor::with_maps(c, In::client, Out::Client);
                    sim.add_node(*a, crypto, actor, 0)
                }
                Addr::Client(id) => {
                    let c = Client::new(*id, g.clone(), p.clone());
                    let actor = ProtocolActor::with_maps(c, In::client, Out::Client);
                    sim.add_node(*a, crypto, actor, 0)
                }
            };
            nodes.push(idx);
        }
        sim.set_trace(true);
        let client = nodes.pop().expect("the client is last");
        World {
            sim,
            seen: Seen::new(poisoner),
            replicas: nodes,
            client,
            oversized,
        }
    }

    fn submit(&mut self, op: &[u8], read_only: bool) {
        let op = op.to_vec();
        let input = In::Client(client::Input::Submit { op, read_only });
        self.sim.schedule_input(self.sim.now(), self.client, input);
    }

    /// Write `op(i)` for each `i` of `ops` in turn, each run until the
    /// client has `i + 1` completions.
    fn write_each(&mut self, ops: std::ops::Range<u8>, op: impl Fn(u8) -> Vec<u8>) {
        for i in ops {
            self.submit(&op(i), false);
            self.run(i as usize + 1);
        }
    }

    fn suspect(&mut self, n: usize) {
        let input = In::Replica(replica::Input::Suspect);
        self.sim
            .schedule_input(self.sim.now(), self.replicas[n], input);
    }

    fn run(&mut self, until_done: usize) {
        self.seen.run(&mut self.sim, until_done);
    }

    fn settle(&mut self, d: Time) {
        self.seen.settle(&mut self.sim, d);
    }

    fn replica(&self, n: usize) -> &Replica<Log> {
        self.sim
            .protocol::<Replica<Log>>(self.replicas[n])
            .expect("a replica")
    }

    /// Where the client's messages (its session queries and its requests)
    /// were delivered, in delivery order.
    fn client_sends(&self) -> Vec<Addr> {
        self.sim
            .trace()
            .iter()
            .filter(|t| {
                matches!(
                    t.kind,
                    TraceKind::Deliver {
                        from: Addr::Client(_),
                        ..
                    }
                )
            })
            .map(|t| self.sim.addr(t.node))
            .collect()
    }

    /// Replica 3 hears nothing and says nothing until the partitions are
    /// cleared.
    fn isolate_replica_3(&mut self) {
        let lag = Addr::Node(NodeId(3));
        let rest = [0, 1, 2]
            .into_iter()
            .map(|i| Addr::Node(NodeId(i)))
            .chain([Addr::Client(ClientId(1))])
            .collect();
        self.sim
            .add_partition(Partition::new(0, Time::MAX, vec![vec![lag], rest]));
    }

    /// Replica 3 executed at least `min` slots and is within a checkpoint
    /// window of replica 0, and its state is a prefix of replica 0's (same
    /// ops, same order).
    fn assert_replica_3_caught_up(&self, min: u64) {
        let (r, r0) = (self.replica(3), self.replica(0));
        assert!(
            r.executed() >= min && r.executed() + 8 >= r0.executed(),
            "lagging {} vs {}",
            r.executed(),
            r0.executed()
        );
        let (lag_log, lead_log) = (&r.service().0, &r0.service().0);
        assert!(lag_log.len() <= lead_log.len());
        assert_eq!(lag_log[..], lead_log[..lag_log.len()]);
    }

    /// The requests in each slot replica 0 decided, by slot.
    fn batch_sizes(&self) -> Vec<usize> {
        let by_slot: BTreeMap<u64, usize> = self.seen.decided[&Addr::Node(NodeId(0))]
            .iter()
            .map(|(s, _, n)| (*s, *n))
            .collect();
        by_slot.into_values().collect()
    }

    fn decided_count(&self) -> usize {
        self.seen.decided.values().map(|v| v.len()).sum()
    }

    fn result(&self, i: usize) -> u64 {
        u64::from_le_bytes(self.seen.done[i].1[..8].try_into().unwrap())
    }
}

#[test]
fn normal_case_orders_and_replies() {
    let mut w = World::new(4, 1, params());
    for i in 0..20u8 {
        w.submit(&[i], false);
    }
    w.run(20);
    // exactly-once, FIFO: the i-th op sees a log of length i
    for (i, (id, _)) in w.seen.done.iter().enumerate() {
        assert_eq!(*id, w.result(i));
    }
    w.seen.assert_agreement();
    assert!(w.seen.decided.len() >= 3);
}

#[test]
fn read_only_is_answered_without_ordering() {
    let mut w = World::new(4, 1, params());
    w.submit(b"a", false);
    w.run(1);
    let decided_before = w.decided_count();
    w.submit(b"q", true);
    w.run(2);
    assert_eq!(
        decided_before,
        w.decided_count(),
        "a read-only op must not be ordered"
    );
    assert_eq!(w.result(1), 1);
}

#[test]
fn crashed_leader_is_replaced_and_no_request_is_lost() {
    let mut w = World::new(4, 1, params());
    for i in 0..5u8 {
        w.submit(&[i], false);
    }
    w.run(5);
    let now = w.sim.now();
    w.sim.crash(now, w.replicas[0]);
    for i in 5..15u8 {
        w.submit(&[i], false);
    }
    w.run(15);
    let ids: Vec<u64> = w.seen.done.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=15).collect::<Vec<_>>());
    let views = &w.seen.views;
    assert!(views.values().all(|v| *v >= 1), "views: {views:?}");
    w.seen.assert_agreement();
    // results stay exactly-once across the view change
    for (i, (id, _)) in w.seen.done.iter().enumerate() {
        assert_eq!(*id, w.result(i));
    }
}

#[test]
fn ordered_requests_go_to_the_leader_and_follow_a_view_change() {
    let mut w = World::new(4, 1, params());
    w.submit(b"a", false);
    w.run(1);
    // the client first learns a session from every replica (SessionQuery),
    // then sends its first transmission to the leader of view 0 only
    let all: Vec<Addr> = (0..4).map(|i| Addr::Node(NodeId(i))).collect();
    let sent = w.client_sends();
    assert_eq!(sent[..4], all[..], "{sent:?}");
    assert_eq!(sent[4..], [Addr::Node(NodeId(0))], "{sent:?}");
    for n in 0..4 {
        w.suspect(n);
    }
    w.submit(b"b", false);
    w.run(2);
    let views = &w.seen.views;
    assert!(views.values().all(|v| *v == 1), "views: {views:?}");
    // the replies to "b" came from view 1: "c" goes straight to its leader
    let before = w.client_sends().len();
    w.submit(b"c", false);
    w.run(3);
    assert_eq!(w.client_sends()[before..], [Addr::Node(NodeId(1))]);
    w.seen.assert_agreement();
}

#[test]
fn pipeline_min_batch_waits_for_a_decision_before_a_small_batch() {
    let run = |min: usize| {
        let mut w = World::new(
            4,
            1,
            Params {
                pipeline_min_batch: min,
                ..params()
            },
        );
        // slot 1 takes the first request; five more arrive while it is in flight
        for i in 0..6u8 {
            w.submit(&[i], false);
        }
        w.run(6);
        w.seen.assert_agreement();
        w.batch_sizes()
    };
    // no minimum: a slot per request while one of the 4 in flight is free,
    // the rest together after the first decision
    assert_eq!(run(0), vec![1, 1, 1, 1, 2]);
    // a minimum of 4: four go together while slot 1 is in flight, the last
    // waits for a decision
    assert_eq!(run(4), vec![1, 4, 1]);
    // a minimum of 8: the five wait for slot 1's decision and go as one batch
    assert_eq!(run(8), vec![1, 5]);
}

#[test]
fn forced_suspicion_changes_view_and_keeps_going() {
    let mut w = World::new(4, 1, params());
    w.submit(b"x", false);
    w.run(1);
    for n in 0..4 {
        w.suspect(n);
    }
    w.submit(b"y", false);
    w.run(2);
    let views = &w.seen.views;
    assert!(views.values().all(|v| *v == 1), "views: {views:?}");
    w.seen.assert_agreement();
}

#[test]
fn lagging_replica_catches_up_by_state_transfer() {
    let mut w = World::new(4, 1, params());
    // replica 3 hears nothing and says nothing until the partition is lifted
    w.isolate_replica_3();
    w.write_each(0..40, |i| vec![i]);
    w.sim.net_mut().partitions.clear();
    // the lagging replica sees new traffic, learns of stable checkpoints, fetches
    w.write_each(40..60, |i| vec![i]);
    w.settle(2 * SECS);
    w.assert_replica_3_caught_up(0);
    w.seen.assert_agreement();
}

/// Issue 10 item 8: a snapshot over the frame limit travelled as one STATE
/// message, which the transport dropped; the replica never caught up. Here
/// replica 3 misses 24 MB of values (24 writes of 1 MB, checkpoints every 8
/// slots, so the log it missed is gone), with the default frame limit and
/// chunk size: it fetches the manifest and the snapshot chunk by chunk, and
/// no message exceeds the limit.
#[test]
fn a_replica_that_missed_24_mb_catches_up_in_chunks_under_the_frame_limit() {
    let p = Params {
        checkpoint_interval: 8,
        window: 16,
        ..params()
    };
    assert_eq!(p.state_chunk_bytes, 1 << 20);
    let mut w = World::new(4, 1, p);
    w.isolate_replica_3();
    const VALUE: usize = 1_000_000;
    w.write_each(0..24, |i| vec![i; VALUE]);
    assert!(w.replica(0).executed() >= 24);
    w.sim.net_mut().partitions.clear();
    // new traffic shows replica 3 it lags; its FETCH-LOG below the others'
    // checkpoint gets the certified manifest
    w.write_each(24..32, |i| vec![i]);
    w.settle(2 * SECS);
    w.assert_replica_3_caught_up(24);
    let r = w.replica(3);
    let bytes: usize = r.service().0.iter().map(Vec::len).sum();
    assert!(bytes >= 24 * VALUE, "{bytes} bytes");
    let stats = r.stats();
    assert!(stats.state_transfers >= 1, "{stats:?}");
    // over 16 MiB came in 1 MiB chunks, none over the frame limit
    assert!(stats.state_chunks >= 23, "{stats:?}");
    assert_eq!(w.oversized.get(), 0, "messages over the frame limit");
    w.seen.assert_agreement();
}

/// Issue 10 item 6: a Byzantine client whose authenticator is valid at one
/// replica only (a different request for each replica, see [`Poisoner`]) made
/// every leader's batch refused in turn: thousands of view changes, and an
/// honest client finished 3 of 10 requests. Now a replica that finds such an
/// unsigned request in a batch takes that client's requests only signed
/// (which the poisoner never does), so at most one view change per replica
/// that has not yet seen the poison in someone else's batch.
#[test]
fn a_client_with_a_partial_authenticator_cannot_stall_correct_leaders() {
    let mut w = World::build(4, 1, params(), true);
    for i in 0..10u8 {
        w.submit(&[i], false);
    }
    w.run(10);
    let ids: Vec<u64> = w.seen.done.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    // and it stays so while the poisoner goes on
    w.settle(2 * SECS);
    for i in 10..20u8 {
        w.submit(&[i], false);
    }
    w.run(20);
    w.seen.assert_agreement();
    let faults = w.seen.fault_counts();
    // the poison did reach batches (the attack ran)
    assert!(
        faults.get("propose-invalid").copied().unwrap_or(0) >= 1,
        "{faults:?}"
    );
    let view_changes: Vec<u64> = (0..4).map(|n| w.replica(n).stats().view_changes).collect();
    assert!(
        view_changes.iter().all(|v| *v <= 2),
        "view changes per replica: {view_changes:?}"
    );
}

/// The test parameters with tentative execution on or off.
fn tentative(on: bool) -> Params {
    Params {
        tentative: on,
        ..params()
    }
}

/// Tentative execution (WHEAT, `replica/tentative.rs`) changes when a
/// client learns a result, never what it learns: the same ops in the same
/// slots, the same results and the same replica states as without it, and
/// the client is done one ACCEPT step earlier in virtual time.
#[test]
fn tentative_execution_gives_the_same_results_sooner() {
    let run = |on: bool| {
        let mut w = World::new(4, 1, tentative(on));
        let start = w.sim.now();
        w.write_each(0..12, |i| vec![i]);
        let took = w.sim.now() - start;
        w.settle(20 * MILLIS);
        w.seen.assert_agreement();
        let tentative_slots: u64 = (0..4).map(|i| w.replica(i).stats().tentative_slots).sum();
        let logs: Vec<Vec<Vec<u8>>> = (0..4).map(|i| w.replica(i).service().0.clone()).collect();
        let slots = w.batch_sizes();
        (w.seen.done.clone(), logs, slots, took, tentative_slots)
    };
    let (done_off, logs_off, slots_off, took_off, t_off) = run(false);
    let (done_on, logs_on, slots_on, took_on, t_on) = run(true);
    assert_eq!(t_off, 0, "off: nothing runs tentatively");
    assert!(
        t_on >= 12,
        "every slot ran tentatively at some replica: {t_on}"
    );
    assert_eq!(done_on, done_off);
    assert_eq!(logs_on, logs_off);
    assert_eq!(slots_on, slots_off);
    assert!(
        took_on < took_off,
        "{took_on} ns with, {took_off} ns without"
    );
}

/// A leader crash with tentative execution on: the view change re-decides
/// the open slots, and every result the client took (some from tentative
/// replies of view 0) is the one the decided log gives (exactly once, in
/// order).
#[test]
fn tentative_results_survive_a_leader_crash() {
    let mut w = World::new(4, 1, tentative(true));
    for i in 0..5u8 {
        w.submit(&[i], false);
    }
    w.run(5);
    let now = w.sim.now();
    w.sim.crash(now + 30 * MICROS, w.replicas[0]);
    for i in 5..15u8 {
        w.submit(&[i], false);
    }
    w.run(15);
    let ids: Vec<u64> = w.seen.done.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=15).collect::<Vec<_>>());
    assert!(w.seen.views.values().all(|v| *v >= 1));
    w.seen.assert_agreement();
    for (i, (id, _)) in w.seen.done.iter().enumerate() {
        assert_eq!(*id, w.result(i), "the i-th op sees a log of length i");
    }
    for i in 1..4 {
        assert_eq!(w.replica(i).service().0.len(), 15);
    }
}
