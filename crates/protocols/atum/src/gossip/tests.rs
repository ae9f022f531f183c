use super::*;
use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::protocol::{Effect, MICROS, SECS};
use byzscale_sim::adversary::{Byzantine, Mutator};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{NodeIdx, ProtocolActor, Sim};
use byzscale_sim::group;
use byzscale_sim::net_model::NetModel;
use rand::{Rng, RngCore};
use std::cell::Cell;
use std::rc::Rc;

/// `v` vgroups of `gmin..=gmax` random members (nodes `0..N` shuffled)
/// over `hc` random cycles.
fn overlay(seed: u64, v: usize, hc: usize, gmin: usize, gmax: usize) -> Arc<Overlay> {
    let rng = &mut ChaCha8Rng::seed_from_u64(seed);
    let sizes: Vec<usize> = (0..v).map(|_| rng.gen_range(gmin..=gmax)).collect();
    let mut nodes: Vec<NodeId> = (0..sizes.iter().sum::<usize>() as u32)
        .map(NodeId)
        .collect();
    nodes.shuffle(rng);
    let mut members = BTreeMap::new();
    let mut rest = nodes.as_slice();
    for (i, g) in sizes.iter().enumerate() {
        let (mine, more) = rest.split_at(*g);
        members.insert(VgroupId(i as u64), mine.to_vec());
        rest = more;
    }
    let graph = HGraph::random(v, hc, rng).unwrap();
    Arc::new(Overlay::new(graph, members).unwrap())
}

fn payload(id: BroadcastId) -> Vec<u8> {
    format!("tweet {} of vgroup {}", id.seq, id.origin.0).into_bytes()
}

/// What Byzantine members do with their copies.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Attack {
    /// Send nothing at all.
    Drop,
    /// Replace each copy by a forgery: another body for the same id, or a
    /// broadcast of an id the origin never ordered.
    Forge,
    /// Half the destination vgroup gets the copy, the other half another
    /// body for the same id.
    Equivocate,
}

/// Builds forged copies and counts them.
struct Forger {
    forged: Rc<Cell<u64>>,
}

impl Forger {
    fn forge(&self, m: &Msg, variant: u64, fresh_id: bool) -> Option<Msg> {
        let Msg::Group(gm) = m else { return None };
        let mut gm = gm.clone();
        if fresh_id {
            gm.seq += 500;
        }
        let body = format!("forged {variant} {:?} {}", gm.stream, gm.seq).into_bytes();
        gm.carry = match gm.carry {
            group_msg::Carry::Full(_) => group_msg::Carry::Full(body),
            group_msg::Carry::Digest(_) => {
                group_msg::Carry::Digest(digest(&byzscale_core::codec::to_bytes(&body)))
            }
        };
        self.forged.set(self.forged.get() + 1);
        Some(Msg::Group(gm))
    }
}

impl Mutator<Msg> for Forger {
    fn equivocate(&self, m: &Msg, variant: u64, _: &Crypto) -> Option<Msg> {
        self.forge(m, variant, false)
    }
    fn corrupt(&self, m: &Msg, rng: &mut dyn RngCore, _: &Crypto) -> Option<Msg> {
        self.forge(m, 0, rng.next_u32() & 1 == 0)
    }
}

/// What a run observed.
#[derive(Default)]
struct Outcome {
    /// Deliveries at correct nodes, per (node, id).
    delivered: BTreeMap<(NodeId, BroadcastId), Vec<Vec<u8>>>,
    /// Deliveries at correct nodes of a payload the origin did not order.
    forged_delivered: u64,
    /// Forged messages (one per multicast) Byzantine members sent.
    forged_sent: u64,
    /// Copies on the network (one per destination node).
    sent: u64,
    /// The time of the last delivery.
    last: Time,
    byzantine: BTreeSet<NodeId>,
    faults: BTreeMap<String, u64>,
    /// The most bytes a correct node's inbox holds for unaccepted copies at
    /// the end.
    max_held: usize,
    trace_hash: u64,
}

/// `byz` members of every vgroup (at random positions) attack with
/// `attack`; every member of each origin gets its vgroup's ordered
/// broadcasts at time 0.
fn run(
    seed: u64,
    overlay: &Arc<Overlay>,
    cfg: Config,
    attack: Attack,
    byz: impl Fn(usize) -> usize,
    broadcasts: &[BroadcastId],
    net: NetModel,
) -> Outcome {
    let rng = &mut ChaCha8Rng::seed_from_u64(seed ^ 0xb12);
    let mut byzantine = BTreeSet::new();
    for v in overlay.graph().ids() {
        let m = overlay.members(v);
        byzantine.extend(m.choose_multiple(rng, byz(m.len())).copied());
    }
    let forged = Rc::new(Cell::new(0));
    let dir = group::directory(overlay.nodes());
    let mut sim = Sim::new(seed, net, CpuModel::free());
    let mut idx = BTreeMap::new();
    for n in overlay.nodes() {
        let crypto = group::crypto(n, &dir, CryptoMode::Real);
        let actor = ProtocolActor::new(Node::new(n, overlay.clone(), cfg).unwrap());
        let k = if byzantine.contains(&n) {
            let mutator = Rc::new(Forger {
                forged: forged.clone(),
            });
            let wrapped = match attack {
                Attack::Drop => Byzantine::mute(actor),
                Attack::Forge => Byzantine::corrupt(actor, mutator, 1.0),
                Attack::Equivocate => Byzantine::equivocate(actor, mutator),
            };
            let k = sim.add_node(Addr::Node(n), crypto, wrapped, 0);
            sim.set_byzantine(k, true);
            k
        } else {
            sim.add_node(Addr::Node(n), crypto, actor, 0)
        };
        idx.insert(k, n);
    }
    for id in broadcasts {
        for m in overlay.members(id.origin) {
            let k = *idx.iter().find(|(_, n)| *n == m).unwrap().0;
            let input = Input::Ordered {
                seq: id.seq,
                payload: payload(*id),
            };
            sim.schedule_input(0, k, input);
        }
    }
    let mut out = Outcome {
        byzantine: byzantine.clone(),
        ..Outcome::default()
    };
    let mut obs = |at: Time, k: NodeIdx, _: Addr, o: Output, _: &mut _| {
        let n = idx[&k];
        if let (Output::Deliver { id, payload: p }, false) = (o, byzantine.contains(&n)) {
            if p != payload(id) || !broadcasts.contains(&id) {
                out.forged_delivered += 1;
            }
            out.delivered.entry((n, id)).or_default().push(p);
            out.last = out.last.max(at);
        }
    };
    sim.run_until(60 * SECS, &mut obs);
    out.sent = sim.stats().sent;
    out.trace_hash = sim.stats().trace_hash;
    out.forged_sent = forged.get();
    for (k, n) in &idx {
        if !out.byzantine.contains(n) {
            let node = sim.protocol::<Node>(*k).expect("a correct node");
            out.max_held = out.max_held.max(node.inbox().held_bytes());
        }
    }
    for f in &sim.stats().fault_log {
        *out.faults.entry(f.kind.clone()).or_default() += 1;
    }
    out
}

fn net() -> NetModel {
    NetModel::uniform(MICROS, 100 * MICROS)
}

/// Every correct node delivered every broadcast exactly once, with its
/// payload, and nothing else.
fn assert_all_delivered_once(overlay: &Overlay, out: &Outcome, broadcasts: &[BroadcastId]) {
    assert_eq!(out.forged_delivered, 0);
    let correct = overlay.nodes().filter(|n| !out.byzantine.contains(n));
    for n in correct {
        for id in broadcasts {
            let got = out.delivered.get(&(n, *id)).map(Vec::as_slice);
            assert_eq!(
                got,
                Some(&[payload(*id)][..]),
                "node {n:?} broadcast {id:?}"
            );
        }
    }
    let correct = overlay.nodes().count() - out.byzantine.len();
    assert_eq!(out.delivered.len(), correct * broadcasts.len());
}

fn ids(origins: &[u64], per_origin: u64) -> Vec<BroadcastId> {
    origins
        .iter()
        .flat_map(|o| {
            (0..per_origin).map(|seq| BroadcastId {
                origin: VgroupId(*o),
                seq,
            })
        })
        .collect()
}

fn cfg(forward: Forward) -> Config {
    Config {
        forward,
        ..Config::default()
    }
}

const FORWARDS: [Forward; 4] = [
    Forward::Cycles(1),
    Forward::Cycles(2),
    Forward::Cycles(usize::MAX),
    Forward::Random { extra: 2 },
];

#[test]
fn every_correct_node_delivers_every_broadcast_once_and_the_count_is_the_formula() {
    let broadcasts = ids(&[0, 7, 19], 3);
    for (seed, forward) in FORWARDS.into_iter().enumerate() {
        let seed = seed as u64;
        let ov = overlay(seed, 30, 4, 4, 8);
        let out = run(
            seed,
            &ov,
            cfg(forward),
            Attack::Drop,
            |_| 0,
            &broadcasts,
            net(),
        );
        assert_all_delivered_once(&ov, &out, &broadcasts);
        let formula: u64 = broadcasts
            .iter()
            .map(|id| messages_per_broadcast(&ov, forward, *id, |v| ov.members(v).len()).unwrap())
            .sum();
        assert_eq!(out.sent, formula, "{forward:?}");
        assert!(out.faults.is_empty(), "{:?}", out.faults);
    }
}

#[test]
fn f_byzantine_members_per_vgroup_that_drop_forge_or_equivocate_change_nothing() {
    let broadcasts = ids(&[3, 11], 3);
    for attack in [Attack::Drop, Attack::Forge, Attack::Equivocate] {
        for (s, forward) in [Forward::Cycles(1), Forward::Random { extra: 1 }]
            .into_iter()
            .enumerate()
        {
            let seed = 10 + s as u64;
            let ov = overlay(seed, 24, 3, 4, 10);
            let f = |g: usize| (g - 1) / 3;
            let out = run(seed, &ov, cfg(forward), attack, f, &broadcasts, net());
            assert_all_delivered_once(&ov, &out, &broadcasts);
            // droppers send nothing, the others one copy per honest copy
            let senders = |v: VgroupId| {
                let m = ov.members(v);
                m.len() - (attack == Attack::Drop) as usize * f(m.len())
            };
            let formula: u64 = broadcasts
                .iter()
                .map(|id| messages_per_broadcast(&ov, forward, *id, senders).unwrap())
                .sum();
            assert_eq!(out.sent, formula, "{attack:?} {forward:?}");
            // what correct members sent was accepted and refunded; only
            // forgeries stay held, within the forgers' budgets
            let forgers_per_node = 2 * 3 * f(10);
            assert!(out.max_held <= forgers_per_node * Config::default().budget);
            if attack != Attack::Drop {
                assert!(out.forged_sent > 100, "{attack:?}: {}", out.forged_sent);
            }
            // forgeries of an id that was broadcast go with its acceptance;
            // those of fresh ids wait, charged to their senders
            assert_eq!(out.max_held > 0, attack == Attack::Forge, "{attack:?}");
            eprintln!(
                "{attack:?} {forward:?}: {} forged multicasts sent, {} forgeries delivered, \
                 at most {} bytes held at a correct node; faults {:?}",
                out.forged_sent, out.forged_delivered, out.max_held, out.faults
            );
        }
    }
}

#[test]
fn a_run_replays_from_its_seed() {
    let broadcasts = ids(&[1, 4], 2);
    let ov = overlay(8, 16, 3, 4, 7);
    let go = |seed| {
        let out = run(
            seed,
            &ov,
            cfg(Forward::Random { extra: 1 }),
            Attack::Equivocate,
            |g| (g - 1) / 3,
            &broadcasts,
            net(),
        );
        (out.trace_hash, out.sent, out.last)
    };
    assert_eq!(go(8), go(8));
    assert_ne!(go(8).0, go(9).0);
}

#[test]
fn more_than_a_minority_of_forgers_would_be_delivered() {
    // the checker can fail: with a majority of forgers in every vgroup,
    // forgeries are delivered (the bound f is what the guarantee rests on)
    let broadcasts = ids(&[2], 1);
    let ov = overlay(5, 12, 3, 5, 5);
    let out = run(
        5,
        &ov,
        cfg(Forward::Cycles(1)),
        Attack::Forge,
        |g| g / 2 + 1,
        &broadcasts,
        net(),
    );
    assert!(out.forged_delivered > 0);
}

#[test]
fn hops_of_one_cycle_are_half_the_ring_and_flooding_is_shorter() {
    let id = BroadcastId {
        origin: VgroupId(0),
        seq: 0,
    };
    for v in [8, 31, 64] {
        let ov = overlay(v as u64, v, 5, 1, 1);
        let one = Forward::Cycles(1).hops(ov.graph(), id.origin, id).unwrap();
        assert_eq!(one, v / 2, "both ways on a ring of {v}");
        let all = Forward::Cycles(5).hops(ov.graph(), id.origin, id).unwrap();
        assert!(all < one, "{v}: {all} ≥ {one}");
    }
}

#[test]
fn with_equal_delays_the_last_delivery_is_hops_times_the_delay() {
    // every group message takes exactly one delay: gossip runs in rounds
    let delay = 10 * MICROS;
    for forward in FORWARDS {
        let ov = overlay(3, 40, 4, 4, 6);
        let id = BroadcastId {
            origin: VgroupId(5),
            seq: 0,
        };
        let out = run(3, &ov, cfg(forward), Attack::Drop, |_| 0, &[id], {
            NetModel::uniform(delay, delay)
        });
        let hops = forward.hops(ov.graph(), id.origin, id).unwrap();
        assert_eq!(out.last, hops as Time * delay, "{forward:?}");
    }
}

#[test]
fn targets_are_the_cycles_named_and_random_extras_are_agreed() {
    let ov = overlay(9, 20, 4, 1, 1);
    let g = ov.graph();
    let me = VgroupId(3);
    let id = BroadcastId {
        origin: VgroupId(1),
        seq: 4,
    };
    let n = g.neighbours(me).unwrap();
    let set = |s: &[VgroupId]| {
        s.iter()
            .copied()
            .filter(|v| *v != me)
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(Forward::Cycles(1).targets(g, me, id).unwrap(), set(&n[..2]));
    assert_eq!(Forward::Cycles(2).targets(g, me, id).unwrap(), set(&n[..4]));
    assert_eq!(Forward::Cycles(99).targets(g, me, id).unwrap(), set(&n));
    let r = Forward::Random { extra: 2 }.targets(g, me, id).unwrap();
    assert!(set(&n[..2]).is_subset(&r) && r.len() <= 4 && r.is_subset(&set(&n)));
    // every member computes the same; another id may pick other links
    assert_eq!(r, Forward::Random { extra: 2 }.targets(g, me, id).unwrap());
    let picks: BTreeSet<_> = (0..20)
        .map(|seq| {
            let id = BroadcastId { seq, ..id };
            Forward::Random { extra: 2 }.targets(g, me, id).unwrap()
        })
        .collect();
    assert!(picks.len() > 1);
    assert!(Forward::Cycles(0).validate().is_err());
}

/// Runs one step of `node` by hand.
fn step(node: &mut Node, f: impl FnOnce(&mut Node, &mut Cx<'_, Node>)) -> Vec<Effect<Node>> {
    let crypto = group::crypto(node.me, &group::directory([node.me]), CryptoMode::Real);
    let (mut rng, mut fx) = (ChaCha8Rng::seed_from_u64(1), Vec::new());
    let mut cx = Cx::new(0, &mut rng, &crypto, &mut fx);
    f(node, &mut cx);
    fx
}

fn fault_names(fx: &[Effect<Node>]) -> Vec<&'static str> {
    Effect::fault_names(fx)
}

#[test]
fn copies_from_outside_the_neighbourhood_are_faults() {
    let ov = overlay(4, 12, 2, 4, 4);
    let me = ov.members(VgroupId(0))[0];
    let mut node = Node::new(me, ov.clone(), Config::default()).unwrap();
    let g = ov.graph();
    let nb = g.neighbours(VgroupId(0)).unwrap();
    let far = g
        .ids()
        .find(|v| *v != VgroupId(0) && !nb.contains(v))
        .unwrap();
    let copy = |from: VgroupId, stream: VgroupId| {
        Msg::Group(GroupMsg {
            from,
            stream,
            seq: 0,
            carry: group_msg::Carry::Full(b"x".to_vec()),
        })
    };
    let cases = [
        (ov.members(far)[0], copy(far, far), "atum-not-a-neighbour"),
        (
            ov.members(nb[0])[0],
            copy(nb[0], VgroupId(99)),
            "atum-unknown-stream",
        ),
        (ov.members(far)[0], copy(nb[0], nb[0]), "atum-not-a-member"),
        (
            ov.members(VgroupId(0))[1],
            copy(VgroupId(0), VgroupId(0)),
            "atum-not-a-neighbour",
        ),
    ];
    for (sender, msg, want) in cases {
        let fx = step(&mut node, |n, cx| n.on_message(Addr::Node(sender), msg, cx));
        assert_eq!(fault_names(&fx), vec![want]);
    }
    // an ordered broadcast is delivered once, however often it is ordered
    let input = || Input::Ordered {
        seq: 0,
        payload: b"p".to_vec(),
    };
    let fx = step(&mut node, |n, cx| n.on_input(input(), cx));
    let delivered = |fx: &[Effect<Node>]| {
        fx.iter()
            .filter(|e| matches!(e, Effect::Output(Output::Deliver { .. })))
            .count()
    };
    assert_eq!(delivered(&fx), 1);
    assert_eq!(
        delivered(&step(&mut node, |n, cx| n.on_input(input(), cx))),
        0
    );
    // an order beyond the window (the SMR ran ahead) is refused, not lost silently
    let ahead = Input::Ordered {
        seq: 5000,
        payload: b"p".to_vec(),
    };
    let fx = step(&mut node, |n, cx| n.on_input(ahead, cx));
    assert_eq!(fault_names(&fx), vec!["atum-out-of-window"]);
}

#[test]
fn a_silent_peer_is_suspected_by_every_correct_peer_and_no_correct_one_is() {
    let ov = overlay(6, 4, 2, 7, 7);
    let hb = HeartbeatConfig {
        period: SECS,
        misses: 3,
    };
    let cfg = Config {
        heartbeat: Some(hb),
        ..Config::default()
    };
    let silent = ov.members(VgroupId(2))[1];
    let dir = group::directory(ov.nodes());
    let mut sim = Sim::new(6, net(), CpuModel::free());
    let mut idx = BTreeMap::new();
    for n in ov.nodes() {
        let crypto = group::crypto(n, &dir, CryptoMode::Real);
        let actor = ProtocolActor::new(Node::new(n, ov.clone(), cfg).unwrap());
        let k = if n == silent {
            sim.add_node(Addr::Node(n), crypto, Byzantine::silent(actor), 0)
        } else {
            sim.add_node(Addr::Node(n), crypto, actor, 0)
        };
        idx.insert(k, n);
    }
    let mut suspicions = Vec::new();
    let mut obs = |at: Time, k: NodeIdx, _: Addr, o: Output, _: &mut _| {
        if let Output::Suspect { node } = o {
            suspicions.push((idx[&k], node, at));
        }
    };
    sim.run_until(20 * SECS, &mut obs);
    let by: Vec<NodeId> = suspicions.iter().map(|(by, _, _)| *by).collect();
    let peers: Vec<NodeId> = ov
        .members(VgroupId(2))
        .iter()
        .copied()
        .filter(|p| *p != silent)
        .collect();
    assert_eq!(by, peers, "each correct peer once");
    for (_, node, at) in &suspicions {
        assert_eq!(*node, silent);
        assert!(
            *at > 3 * SECS && *at <= 5 * SECS,
            "after 3 missed periods: {at}"
        );
    }
    // ordered by the vgroup's SMR (to be wired), the suspicions evict the
    // silent member at the (f+1)-th; a Byzantine member (f = 2 with the
    // silent one) that proposes to evict every correct peer evicts none
    let mut tally = Evictions::new(ov.members(VgroupId(2)));
    let liar = peers[0];
    for p in &peers[1..] {
        assert_eq!(tally.apply(liar, *p, true), None);
    }
    let evicted: Vec<Option<NodeId>> = suspicions
        .iter()
        .map(|(by, node, _)| tally.apply(*by, *node, true))
        .collect();
    assert_eq!(evicted[..3], [None, None, Some(silent)]);
}

#[test]
fn a_withdrawn_suspicion_no_longer_counts() {
    let members: Vec<NodeId> = (0..4).map(NodeId).collect();
    let mut t = Evictions::new(&members); // f = 1: two suspicions evict
    assert_eq!(t.apply(NodeId(0), NodeId(3), true), None);
    assert_eq!(t.apply(NodeId(0), NodeId(3), false), None);
    assert_eq!(t.apply(NodeId(1), NodeId(3), true), None);
    assert_eq!(t.apply(NodeId(1), NodeId(3), true), None, "one vote each");
    assert_eq!(t.apply(NodeId(9), NodeId(3), true), None, "not a member");
    assert_eq!(t.apply(NodeId(2), NodeId(2), true), None, "not itself");
    assert_eq!(t.apply(NodeId(2), NodeId(3), true), Some(NodeId(3)));
}

#[test]
fn heartbeats_withdraw_a_suspicion_and_refuse_strangers() {
    let cfg = HeartbeatConfig {
        period: 10,
        misses: 2,
    };
    let mut hb = Heartbeats::new(cfg, [NodeId(1), NodeId(2)].into_iter(), 0);
    assert!(hb.newly_silent(20).is_empty());
    assert_eq!(hb.heard(NodeId(1), 15), Ok(false));
    assert_eq!(hb.newly_silent(21), vec![NodeId(2)]);
    assert!(hb.newly_silent(30).is_empty(), "suspected once");
    assert_eq!(hb.heard(NodeId(2), 31), Ok(true));
    assert_eq!(hb.heard(NodeId(9), 31), Err(GroupFault::NotAMember));
}

#[test]
fn overlays_refuse_empty_and_shared_membership() {
    let rng = &mut ChaCha8Rng::seed_from_u64(1);
    let graph = HGraph::random(2, 1, rng).unwrap();
    let m = |a: &[u32], b: &[u32]| {
        BTreeMap::from([
            (VgroupId(0), a.iter().map(|x| NodeId(*x)).collect()),
            (VgroupId(1), b.iter().map(|x| NodeId(*x)).collect()),
        ])
    };
    assert_eq!(
        Overlay::new(graph.clone(), m(&[1], &[])).unwrap_err(),
        AtumError::EmptyVgroup(1)
    );
    assert_eq!(
        Overlay::new(graph.clone(), m(&[1, 2], &[2])).unwrap_err(),
        AtumError::NodeInTwoVgroups(2)
    );
    let ov = Arc::new(Overlay::new(graph, m(&[1], &[2])).unwrap());
    assert!(Node::new(NodeId(3), ov, Config::default()).is_err());
}

/// The figure of docs/ATUM.md ("Gossip cost"): copies per node and hops per
/// broadcast against N, vgroups of `g_max/2..=g_max` with `g_max = ⌈log₂ N⌉`,
/// hc = 5, for each forward function; measured on the simulator and equal
/// to the formula. Print it with
/// `cargo test --release -p byzscale-atum --lib gossip::tests::figure -- --nocapture`.
#[test]
fn figure_copies_per_node_follow_the_vgroup_size() {
    let hc = 5;
    eprintln!("| N | vgroups | mean g | forward | hops | copies per node per broadcast |");
    eprintln!("|---|---|---|---|---|---|");
    for n in [200usize, 400, 800] {
        let gmax = (n as f64).log2().ceil() as usize;
        let v = n * 2 / (gmax / 2 + gmax);
        let ov = overlay(n as u64, v, hc, gmax / 2, gmax);
        let nodes = ov.nodes().count();
        let id = BroadcastId {
            origin: VgroupId(0),
            seq: 0,
        };
        for forward in [
            Forward::Cycles(1),
            Forward::Random { extra: 2 },
            Forward::Cycles(hc),
        ] {
            let out = run(1, &ov, cfg(forward), Attack::Drop, |_| 0, &[id], net());
            assert_all_delivered_once(&ov, &out, &[id]);
            let formula =
                messages_per_broadcast(&ov, forward, id, |v| ov.members(v).len()).unwrap();
            assert_eq!(out.sent, formula);
            let hops = forward.hops(ov.graph(), id.origin, id).unwrap();
            eprintln!(
                "| {nodes} | {v} | {:.1} | {forward:?} | {hops} | {:.1} |",
                nodes as f64 / v as f64,
                out.sent as f64 / nodes as f64
            );
        }
    }
}
