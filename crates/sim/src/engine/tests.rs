//! Engine tests with a tiny ping-pong protocol. No wall-clock assertions.

use super::*;
use crate::adversary::Byzantine;
use crate::cpu::CpuModel;
use crate::net_model::{NetModel, Partition};
use byzscale_core::crypto::{CryptoMode, Directory, Identity};
use byzscale_core::protocol::{MICROS, MILLIS};
use byzscale_core::NodeId;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Msg {
    Ping(u64, Vec<u8>),
    Pong(u64),
    Bad,
}

#[derive(Debug)]
enum In {
    /// Multicast Ping(0) with `pad` bytes to all peers.
    Kick {
        pad: usize,
    },
    /// Multicast a Ping every `interval`, forever.
    Periodic {
        interval: Time,
    },
    Arm(u8, Time),
    Cancel(u8),
    SendBad(Addr),
}

#[derive(Debug, Clone, PartialEq)]
enum Out {
    Got { from: Addr, n: u64 },
    Ponged { from: Addr, n: u64 },
    Fired(u8),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum T {
    Tick,
    Named(u8),
}

struct PingPong {
    peers: Vec<Addr>,
    /// Answer a Pong(n) with Ping(n + 1) while n < rounds.
    rounds: u64,
    interval: Time,
    seq: u64,
    received: u64,
}

impl PingPong {
    fn new(peers: Vec<Addr>, rounds: u64) -> Self {
        PingPong {
            peers,
            rounds,
            interval: 0,
            seq: 0,
            received: 0,
        }
    }
}

byzscale_core::fault_kinds! {
    /// The test protocol's one fault.
    enum TestFault {
        /// A message the test sends to provoke a fault.
        Bad => "bad",
    }
}

impl Protocol for PingPong {
    type Message = Msg;
    type Input = In;
    type Output = Out;
    type Timer = T;
    type Record = byzscale_core::NoRecord;

    fn on_input(&mut self, input: In, cx: &mut Cx<'_, Self>) {
        match input {
            In::Kick { pad } => cx.multicast(self.peers.clone(), Msg::Ping(0, vec![7; pad])),
            In::Periodic { interval } => {
                self.interval = interval;
                cx.set_timer(T::Tick, interval);
            }
            In::Arm(n, after) => cx.set_timer(T::Named(n), after),
            In::Cancel(n) => cx.cancel_timer(T::Named(n)),
            In::SendBad(to) => cx.send(to, Msg::Bad),
        }
    }
    fn on_message(&mut self, from: Addr, msg: Msg, cx: &mut Cx<'_, Self>) {
        self.received += 1;
        match msg {
            Msg::Ping(n, _) => {
                cx.output(Out::Got { from, n });
                cx.send(from, Msg::Pong(n));
            }
            Msg::Pong(n) => {
                cx.output(Out::Ponged { from, n });
                if n + 1 < self.rounds {
                    cx.send(from, Msg::Ping(n + 1, Vec::new()));
                }
            }
            Msg::Bad => cx.fault(from, TestFault::Bad, "got a bad message"),
        }
    }
    fn on_timer(&mut self, t: T, cx: &mut Cx<'_, Self>) {
        match t {
            T::Tick => {
                self.seq += 1;
                cx.multicast(self.peers.clone(), Msg::Ping(self.seq, Vec::new()));
                cx.set_timer(T::Tick, self.interval);
            }
            T::Named(n) => cx.output(Out::Fired(n)),
        }
    }
}

type S = Sim<Msg, In, Out>;

fn addr(i: u32) -> Addr {
    Addr::Node(NodeId(i))
}

fn identity(i: u32) -> Identity {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    Identity::from_seed(seed)
}

fn crypto_for(i: u32, n: u32) -> Crypto {
    let mut c = Crypto::new(addr(i), identity(i), CryptoMode::Real);
    for j in 0..n {
        if j != i {
            c.add_peer(addr(j), identity(j).public()).unwrap();
        }
    }
    c
}

fn pp(i: u32, n: u32, rounds: u64) -> ProtocolActor<PingPong> {
    let peers = (0..n).filter(|j| *j != i).map(addr).collect();
    ProtocolActor::new(PingPong::new(peers, rounds))
}

/// `n` ping-pong nodes, all in region 0.
fn cluster(seed: u64, n: u32, rounds: u64, net: NetModel, cpu: CpuModel) -> S {
    let mut sim = S::new(seed, net, cpu);
    for i in 0..n {
        sim.add_node(addr(i), crypto_for(i, n), pp(i, n, rounds), 0);
    }
    sim
}

/// Collects every output.
#[derive(Default)]
struct Log(Vec<(Time, NodeIdx, Out)>);

impl Observer<In, Out> for Log {
    fn on_output(&mut self, at: Time, node: NodeIdx, _: Addr, out: Out, _: &mut Control<In>) {
        self.0.push((at, node, out));
    }
}

impl Log {
    /// When the first pong came back.
    fn first_pong(&self) -> Time {
        let pong = self
            .0
            .iter()
            .find(|(_, _, o)| matches!(o, Out::Ponged { .. }));
        pong.expect("a pong came back").0
    }
}

fn run_pingpong(seed: u64) -> (Stats, Vec<TraceEntry>) {
    let mut sim = cluster(seed, 4, 20, NetModel::lan(), CpuModel::calibrated());
    sim.set_trace(true);
    for i in 0..4 {
        sim.schedule_input(0, NodeIdx(i), In::Kick { pad: 10 });
    }
    sim.run_until(SECS_10, &mut ());
    (sim.stats().clone(), sim.trace().to_vec())
}

const SECS_10: Time = 10_000 * MILLIS;

#[test]
fn same_seed_same_run_different_seed_differs() {
    let (s1, t1) = run_pingpong(1);
    let (s2, t2) = run_pingpong(1);
    assert_eq!(s1, s2);
    assert_eq!(t1, t2);
    // 4 nodes x 3 peers x 20 rounds x (ping + pong)
    assert_eq!(s1.delivered, 4 * 3 * 20 * 2);
    assert_eq!(s1.dropped(), 0);
    let (s3, t3) = run_pingpong(2);
    assert_eq!(s3.delivered, s1.delivered);
    assert_ne!(s3.trace_hash, s1.trace_hash);
    assert_ne!(t3, t1);
}

#[test]
fn partition_drops_only_during_interval() {
    let net = NetModel::lan().with_partition(Partition::new(
        10 * MILLIS,
        20 * MILLIS,
        vec![vec![addr(0)], vec![addr(1)]],
    ));
    let mut sim = cluster(3, 2, 0, net, CpuModel::free());
    sim.schedule_input(0, NodeIdx(0), In::Periodic { interval: MILLIS });
    let mut log = Log::default();
    sim.run_until(30 * MILLIS, &mut log);
    let got: Vec<u64> = log
        .0
        .iter()
        .filter_map(|(_, node, o)| match o {
            Out::Got { n, .. } if *node == NodeIdx(1) => Some(*n),
            _ => None,
        })
        .collect();
    // Ping k is sent at k ms; those sent in [10, 20) ms are lost.
    let expect: Vec<u64> = (1..30).filter(|k| !(10..20).contains(k)).collect();
    assert_eq!(got, expect);
    assert_eq!(sim.stats().dropped_partition, 10);
    // pongs of the delivered pings all came back
    let pongs = log
        .0
        .iter()
        .filter(|(_, _, o)| matches!(o, Out::Ponged { .. }))
        .count();
    assert_eq!(pongs, expect.len());
}

#[test]
fn bandwidth_serializes_large_messages() {
    // 10 Mbit/s: 100 kB take 80 ms on the wire.
    let net = NetModel::lan().with_jitter(0).with_bandwidth_mbps(10.0);
    let mut sim = cluster(4, 2, 0, net, CpuModel::free());
    sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 100_000 });
    sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 100_000 });
    sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 0 });
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    let arrivals: Vec<Time> = log
        .0
        .iter()
        .filter(|(_, n, o)| *n == NodeIdx(1) && matches!(o, Out::Got { .. }))
        .map(|(t, _, _)| *t)
        .collect();
    assert_eq!(arrivals.len(), 3);
    let size = (codec::to_bytes(&Msg::Ping(0, vec![7; 100_000])).len() + WIRE_OVERHEAD) as Time;
    let tx = size * 8 * 1_000_000_000 / 10_000_000;
    assert_eq!(arrivals[0], tx + 50 * MICROS);
    assert_eq!(arrivals[1], 2 * tx + 50 * MICROS);
    // the small one waits behind both big ones on the link (FIFO queue)
    let small = (codec::to_bytes(&Msg::Ping(0, vec![])).len() + WIRE_OVERHEAD) as Time;
    assert_eq!(arrivals[2], 2 * tx + small * 800 + 50 * MICROS);
}

#[test]
fn a_region_link_is_one_queue_shared_by_the_regions_nodes() {
    // regions a (nodes 0, 1) and b (nodes 2, 3), 10 ms apart, a -> b a
    // shared 10 Mbit/s link; inside a region 50 µs, unlimited
    let one_way = vec![
        vec![50 * MICROS, 10 * MILLIS],
        vec![10 * MILLIS, 50 * MICROS],
    ];
    let net = NetModel::from_matrix(vec!["a".into(), "b".into()], one_way)
        .unwrap()
        .with_region_links(&[vec![0.0, 10.0], vec![10.0, 0.0]])
        .unwrap();
    let mut sim = S::new(1, net, CpuModel::free());
    for i in 0..4 {
        sim.add_node(addr(i), crypto_for(i, 4), pp(i, 4, 0), (i / 2) as usize);
    }
    // nodes 0 and 1 both multicast 100 kB at time 0
    sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 100_000 });
    sim.schedule_input(0, NodeIdx(1), In::Kick { pad: 100_000 });
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    let got = |to: u32| -> Vec<Time> {
        let at = log.0.iter().filter(|(_, n, o)| {
            *n == NodeIdx(to) && matches!(o, Out::Got { from, .. } if from.node().unwrap().0 < 2)
        });
        at.map(|(t, _, _)| *t).collect()
    };
    let size = (codec::to_bytes(&Msg::Ping(0, vec![7; 100_000])).len() + WIRE_OVERHEAD) as Time;
    let tx = size * 8 * 1_000_000_000 / 10_000_000;
    // four copies cross the one a -> b link, one after another
    let mut remote = [got(2), got(3)].concat();
    remote.sort_unstable();
    let want: Vec<Time> = (1..=4).map(|k| k * tx + 10 * MILLIS).collect();
    assert_eq!(remote, want);
    // the copies inside region a are not queued
    assert_eq!(got(1), vec![50 * MICROS]);
    assert_eq!(got(0), vec![50 * MICROS]);
}

#[test]
fn charged_cpu_time_delays_the_events_messages() {
    struct Charger;
    impl Actor<Msg, In, Out> for Charger {
        fn start(&mut self, cx: &mut ActorCx<'_, Msg, Out>) {
            cx.charge(3 * MILLIS);
            cx.send(addr(1), Msg::Pong(1));
        }
        fn input(&mut self, _: In, _: &mut ActorCx<'_, Msg, Out>) {}
        fn message(&mut self, _: Addr, _: Msg, _: &mut ActorCx<'_, Msg, Out>) {}
        fn timer(&mut self, _: u64, _: &mut ActorCx<'_, Msg, Out>) {}
    }
    let arrival = |cpu: CpuModel| {
        let mut sim = S::new(5, NetModel::lan().with_jitter(0), cpu);
        sim.add_node(addr(0), crypto_for(0, 2), Charger, 0);
        sim.add_node(addr(1), crypto_for(1, 2), pp(1, 2, 0), 0);
        let mut log = Log::default();
        sim.run_until(SECS_10, &mut log);
        let busy = sim.stats().per_node[0].busy_ns;
        let at = log
            .0
            .iter()
            .find(|(_, _, o)| matches!(o, Out::Ponged { .. }));
        (at.map(|(t, _, _)| *t), busy)
    };
    let (free_at, free_busy) = arrival(CpuModel::free());
    assert_eq!(
        (free_at, free_busy),
        (Some(50 * MICROS), 0),
        "a free model ignores charges"
    );
    let (at, busy) = arrival(CpuModel::calibrated());
    assert!(busy >= 3 * MILLIS, "{busy}");
    assert!(at.unwrap() >= 3 * MILLIS + 50 * MICROS, "{at:?}");
}

/// Sends one spoofed and one honest message on start.
struct Spoofer;
impl Actor<Msg, In, Out> for Spoofer {
    fn start(&mut self, cx: &mut ActorCx<'_, Msg, Out>) {
        cx.send_spoofed(addr(2), addr(1), Msg::Pong(66));
        cx.send(addr(1), Msg::Pong(1000));
    }
    fn input(&mut self, _: In, _: &mut ActorCx<'_, Msg, Out>) {}
    fn message(&mut self, _: Addr, _: Msg, _: &mut ActorCx<'_, Msg, Out>) {}
    fn timer(&mut self, _: u64, _: &mut ActorCx<'_, Msg, Out>) {}
}

#[test]
fn spoofed_messages_are_rejected_and_counted() {
    let mut sim = S::new(5, NetModel::lan(), CpuModel::calibrated());
    sim.add_node(addr(0), crypto_for(0, 3), Spoofer, 0);
    let b = sim.add_node(addr(1), crypto_for(1, 3), pp(1, 3, 0), 0);
    sim.add_node(addr(2), crypto_for(2, 3), pp(2, 3, 0), 0);
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    let st = sim.stats();
    assert_eq!(st.dropped_mac, 1);
    assert_eq!(st.per_node[1].mac_failures, 1);
    assert_eq!(
        st.mac_failures,
        vec![MacFailure {
            at: st.mac_failures[0].at,
            node: b,
            to: addr(1),
            claimed_from: addr(2)
        }]
    );
    // only the honest message got through
    let outs: Vec<&Out> = log.0.iter().map(|(_, _, o)| o).collect();
    assert_eq!(
        outs,
        vec![&Out::Ponged {
            from: addr(0),
            n: 1000
        }]
    );
    assert_eq!(sim.protocol::<PingPong>(b).unwrap().received, 1);
}

#[test]
fn modeled_channels_cost_the_same_and_still_reject_spoofing() {
    // the spoofer run again with each channel mode; modeled crypto keys
    let run = |channels: Channels| {
        let mut sim = S::new(5, NetModel::lan(), CpuModel::calibrated());
        sim.set_channels(channels);
        assert_eq!(sim.channels(), channels);
        let dir = Arc::new(Directory::new(
            (0..3).map(|i| (addr(i), identity(i).public())),
        ));
        let c =
            |i: u32| Crypto::with_directory(addr(i), identity(i), CryptoMode::Modeled, dir.clone());
        sim.add_node(addr(0), c(0), Spoofer, 0);
        let b = sim.add_node(addr(1), c(1), pp(1, 3, 0), 0);
        sim.add_node(addr(2), c(2), pp(2, 3, 0), 0);
        // a message to an address nobody knows the keys of
        sim.add_node(addr(9), crypto_for(9, 0), pp(9, 1, 0), 0);
        sim.schedule_input(0, NodeIdx(1), In::SendBad(addr(9)));
        let mut log = Log::default();
        sim.run_until(SECS_10, &mut log);
        let derived = sim.crypto(NodeIdx(0)).derived_mac_keys();
        let st = sim.stats().clone();
        assert_eq!(st.dropped_mac, 1);
        assert_eq!(st.dropped_no_key, 1);
        assert_eq!(st.mac_failures[0].claimed_from, addr(2));
        assert_eq!(sim.protocol::<PingPong>(b).unwrap().received, 1);
        (st, log.0, derived)
    };
    let (real, real_log, real_keys) = run(Channels::Authenticated);
    let (modeled, modeled_log, modeled_keys) = run(Channels::Modeled);
    // same deliveries at the same times: the MACs cost the same CPU time
    assert_eq!(real_log, modeled_log);
    assert_eq!(real.per_node, modeled.per_node);
    assert_eq!(real.trace_hash, modeled.trace_hash);
    assert!(real.per_node[0].busy_ns > 0);
    // but no key was derived (node 0 tags both its messages for node 1)
    assert_eq!((real_keys, modeled_keys), (1, 0));
}

#[test]
fn forging_adversary_is_filtered_by_channels() {
    let n = 4;
    let mut sim = S::new(6, NetModel::lan(), CpuModel::free());
    sim.add_node(
        addr(0),
        crypto_for(0, n),
        Byzantine::forge(pp(0, n, 5), 1.0, vec![]),
        0,
    );
    for i in 1..n {
        sim.add_node(addr(i), crypto_for(i, n), pp(i, n, 5), 0);
    }
    sim.set_byzantine(NodeIdx(0), true);
    sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 0 });
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    assert!(sim.stats().dropped_mac > 0);
    // every message an honest node accepted was really sent by its claimed sender
    // (the only peer that talks to honest nodes is node 0, honestly or not)
    assert!(log.0.iter().all(|(_, node, o)| match o {
        Out::Got { from, .. } | Out::Ponged { from, .. } => node.0 == 0 || *from == addr(0),
        _ => true,
    }));
    // the protocol still ran its 5 rounds with each peer
    assert_eq!(sim.protocol::<PingPong>(NodeIdx(0)).unwrap().received, 15);
}

#[test]
fn crash_stops_a_node_and_restart_is_fresh() {
    let mut sim = cluster(7, 2, 0, NetModel::lan(), CpuModel::free());
    let a = NodeIdx(0);
    let b = NodeIdx(1);
    sim.schedule_input(0, a, In::Periodic { interval: MILLIS });
    sim.schedule_input(0, b, In::Arm(9, 7 * MILLIS));
    sim.crash(5 * MILLIS + 500 * MICROS, b);
    let mut log = Log::default();
    sim.run_until(10 * MILLIS + 500 * MICROS, &mut log);
    assert!(!sim.is_up(b));
    let before = sim.protocol::<PingPong>(b).unwrap().received;
    assert_eq!(before, 5);
    assert_eq!(sim.stats().dropped_down, 5);
    sim.restart(10 * MILLIS + 600 * MICROS, b, pp(1, 2, 0));
    sim.run_until(15 * MILLIS + 500 * MICROS, &mut log);
    assert!(sim.is_up(b));
    // a fresh actor: it counts only pings 11..=15
    assert_eq!(sim.protocol::<PingPong>(b).unwrap().received, 5);
    // the old incarnation's timer (7 ms) never fired
    assert!(!log.0.iter().any(|(_, _, o)| *o == Out::Fired(9)));
    let got: Vec<u64> = log
        .0
        .iter()
        .filter_map(|(_, node, o)| match o {
            Out::Got { n, .. } if *node == b => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5, 11, 12, 13, 14, 15]);
    assert_eq!(sim.stats().crashes, 1);
    assert_eq!(sim.stats().restarts, 1);
}

#[test]
fn timers_rearm_and_cancel() {
    let mut sim = cluster(8, 1, 0, NetModel::lan(), CpuModel::free());
    let a = NodeIdx(0);
    sim.schedule_input(0, a, In::Arm(1, 10 * MILLIS));
    sim.schedule_input(2 * MILLIS, a, In::Arm(1, 20 * MILLIS)); // later: fires at 22
    sim.schedule_input(0, a, In::Arm(2, 5 * MILLIS));
    sim.schedule_input(MILLIS, a, In::Cancel(2)); // never fires
    sim.schedule_input(0, a, In::Arm(3, 10 * MILLIS));
    sim.schedule_input(2 * MILLIS, a, In::Arm(3, MILLIS)); // earlier: fires at 3
    sim.schedule_input(30 * MILLIS, a, In::Arm(2, MILLIS)); // re-armed after cancel: 31
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    assert_eq!(
        log.0,
        vec![
            (3 * MILLIS, a, Out::Fired(3)),
            (22 * MILLIS, a, Out::Fired(1)),
            (31 * MILLIS, a, Out::Fired(2)),
        ]
    );
    assert_eq!(sim.stats().timers_fired, 3);
    assert_eq!(
        sim.actor(a)
            .as_any()
            .unwrap()
            .downcast_ref::<ProtocolActor<PingPong>>()
            .unwrap()
            .armed_timers()
            .count(),
        0
    );
    assert_eq!(sim.pending_events(), 0);
}

#[test]
fn rearming_often_does_not_grow_the_queue() {
    let mut sim = cluster(9, 1, 0, NetModel::lan(), CpuModel::free());
    for k in 0..1000 {
        sim.schedule_input(k * MICROS, NodeIdx(0), In::Arm(1, 10 * MILLIS));
    }
    sim.run_until(2 * MILLIS, &mut ());
    // one timer entry left
    assert_eq!(sim.pending_events(), 1);
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    assert_eq!(
        log.0,
        vec![(10 * MILLIS + 999 * MICROS, NodeIdx(0), Out::Fired(1))]
    );
}

#[test]
fn twins_both_receive_and_are_believed() {
    let n = 3;
    let mut sim = S::new(10, NetModel::lan(), CpuModel::calibrated());
    let a = sim.add_node(addr(0), crypto_for(0, n), pp(0, n, 3), 0);
    let (t1, t2) = sim.add_twins(
        addr(1),
        crypto_for(1, n),
        pp(1, n, 3),
        crypto_for(1, n),
        pp(1, n, 3),
        0,
    );
    sim.add_node(addr(2), crypto_for(2, n), pp(2, n, 3), 0);
    assert_eq!(sim.nodes_at(addr(1)), &[t1, t2]);
    assert!(sim.is_byzantine(t1) && sim.is_byzantine(t2) && !sim.is_byzantine(a));
    sim.schedule_input(0, a, In::Kick { pad: 0 });
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    for t in [t1, t2] {
        assert!(log.0.iter().any(|(_, node, o)| *node == t
            && *o
                == Out::Got {
                    from: addr(0),
                    n: 0
                }));
    }
    // node 0 got a pong from each twin, and continues with both
    let pongs_from_1 = log
        .0
        .iter()
        .filter(|(_, node, o)| {
            *node == a && matches!(o, Out::Ponged { from, n: 0 } if *from == addr(1))
        })
        .count();
    assert_eq!(pongs_from_1, 2);
    assert_eq!(sim.stats().dropped_mac, 0);
}

#[test]
fn cpu_costs_delay_replies() {
    let rtt = |cpu: CpuModel| {
        let net = NetModel::lan().with_jitter(0);
        let mut sim = cluster(11, 2, 0, net, cpu);
        sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 0 });
        let mut log = Log::default();
        sim.run_until(SECS_10, &mut log);
        (log.first_pong(), sim.stats().per_node[1].busy_ns)
    };
    let (free, busy_free) = rtt(CpuModel::free());
    assert_eq!(free, 100 * MICROS);
    assert_eq!(busy_free, 0);
    let (cal, busy) = rtt(CpuModel::calibrated());
    assert!(cal > free + 3 * 2 * MICROS);
    assert!(busy > 0);
}

#[test]
fn slow_adversary_and_cpu_factor() {
    let net = NetModel::lan().with_jitter(0);
    let mut sim = S::new(12, net, CpuModel::calibrated());
    sim.add_node(addr(0), crypto_for(0, 2), pp(0, 2, 0), 0);
    let slow = sim.add_node(
        addr(1),
        crypto_for(1, 2),
        Byzantine::slow(pp(1, 2, 0), 10.0, 5 * MILLIS),
        0,
    );
    sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 0 });
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    let t = log.first_pong();
    assert!(t > 5 * MILLIS + 100 * MICROS);
    // a wrapped ProtocolActor is still inspectable
    assert_eq!(sim.protocol::<PingPong>(slow).unwrap().received, 1);
}

#[test]
fn loss_duplication_and_stabilization() {
    let net = NetModel::lan()
        .with_loss(1.0)
        .with_stabilize_at(10 * MILLIS);
    let mut sim = cluster(13, 2, 0, net, CpuModel::free());
    sim.schedule_input(0, NodeIdx(0), In::Periodic { interval: MILLIS });
    let mut log = Log::default();
    sim.run_until(20 * MILLIS + 500 * MICROS, &mut log);
    let got: Vec<u64> = log
        .0
        .iter()
        .filter_map(|(_, _, o)| match o {
            Out::Got { n, .. } => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(got, (10..=20).collect::<Vec<_>>());
    assert_eq!(sim.stats().dropped_loss, 9);

    let net = NetModel::lan()
        .with_duplicate(1.0)
        .with_reorder(0.5, MILLIS);
    let mut sim = cluster(14, 2, 0, net, CpuModel::free());
    sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 0 });
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    // ping x2, each answered by a pong that is itself duplicated
    assert_eq!(sim.stats().delivered, 2 + 4);
    assert_eq!(sim.stats().duplicated, 3);
}

#[test]
fn observer_can_inject_and_stop() {
    let mut sim = cluster(15, 2, 0, NetModel::lan(), CpuModel::free());
    sim.schedule_input(0, NodeIdx(0), In::Kick { pad: 0 });
    let mut pongs = 0;
    let mut obs = |_: Time, _: NodeIdx, _: Addr, o: Out, ctl: &mut Control<In>| {
        if let Out::Ponged { .. } = o {
            pongs += 1;
            if pongs < 3 {
                ctl.input_at(ctl.now() + MILLIS, NodeIdx(0), In::Kick { pad: 0 });
            } else {
                ctl.stop();
            }
        }
    };
    assert_eq!(sim.run_until(SECS_10, &mut obs), RunStatus::Stopped);
    assert_eq!(pongs, 3);
    let stopped_at = sim.now();
    assert!(stopped_at < 3 * MILLIS);
    assert_eq!(sim.run_until(SECS_10, &mut ()), RunStatus::Reached);
    assert_eq!(sim.now(), SECS_10);
}

#[test]
fn protocol_faults_are_recorded() {
    let mut sim = cluster(16, 2, 0, NetModel::lan(), CpuModel::free());
    sim.schedule_input(0, NodeIdx(0), In::SendBad(addr(1)));
    sim.schedule_input(0, NodeIdx(0), In::SendBad(addr(7))); // nobody there
    sim.run_until(SECS_10, &mut ());
    let st = sim.stats();
    assert_eq!(st.faults, 1);
    assert_eq!(st.fault_log[0].node, NodeIdx(1));
    assert_eq!(st.fault_log[0].culprit, addr(0));
    assert_eq!(st.fault_log[0].kind, "bad");
    assert_eq!(st.dropped_no_key, 1);
}

#[test]
fn equal_times_are_served_in_scheduling_order_and_the_peak_is_counted() {
    let mut sim = cluster(3, 4, 0, NetModel::lan(), CpuModel::free());
    sim.set_trace(true);
    let order = [2u32, 0, 3, 1];
    for (k, i) in order.iter().enumerate() {
        sim.schedule_input(5 * MILLIS, NodeIdx(*i), In::Arm(k as u8, 0));
    }
    // four starts and four inputs were scheduled before anything ran
    assert_eq!(sim.pending_events(), 8);
    let mut log = Log::default();
    sim.run_until(SECS_10, &mut log);
    let inputs: Vec<u32> = sim
        .trace()
        .iter()
        .filter(|e| e.kind == TraceKind::Input)
        .map(|e| e.node.0)
        .collect();
    assert_eq!(inputs, order);
    // the timers armed at 5 ms fire at 5 ms, in arming order
    let fired: Vec<(Time, u32)> = log.0.iter().map(|(t, n, _)| (*t, n.0)).collect();
    assert_eq!(
        fired,
        order.iter().map(|i| (5 * MILLIS, *i)).collect::<Vec<_>>()
    );
    assert_eq!(sim.stats().peak_pending, 8);
    assert_eq!(sim.pending_events(), 0);
}

/// A rough throughput figure, not a test of speed:
/// `cargo test -p byzscale-sim --release -- --ignored --nocapture deliveries_per_second`
#[test]
#[ignore]
fn deliveries_per_second() {
    let n = 16;
    let mut sim = cluster(17, n, u64::MAX, NetModel::lan(), CpuModel::calibrated());
    for i in 0..n {
        sim.schedule_input(0, NodeIdx(i), In::Kick { pad: 100 });
    }
    let wall = std::time::Instant::now();
    let mut t = 0;
    while sim.stats().delivered < 2_000_000 {
        t += 100 * MILLIS;
        sim.run_until(t, &mut ());
    }
    let secs = wall.elapsed().as_secs_f64();
    let st = sim.stats();
    println!(
        "{} deliveries ({} events) in {:.2} s wall = {:.0} deliveries/s; virtual time {} ms",
        st.delivered,
        st.events,
        secs,
        st.delivered as f64 / secs,
        st.now / MILLIS
    );
}
