//! DQPBFT on the simulator engine (real crypto, one region, 1–5 ms one-way
//! delays that reorder messages) and the O-PrePrepare checks of one replica.

use super::client::{Client, ClientInput, Done};
use super::*;
use crate::formulas::Proto;
use byzscale_core::crypto::Directory;
use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::protocol::{Effect, MILLIS, SECS};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{NodeIdx, Sim};
use byzscale_sim::engine::{ProtocolActor, Role};
use byzscale_sim::group;
use byzscale_sim::net_model::NetModel;
use byzscale_sim::runner::identity;
use rand::SeedableRng;
use std::sync::Arc;

/// A hash chain over the executed operations; the result is the count.
#[derive(Default)]
struct Chain {
    state: [u8; 32],
    count: u64,
}

impl Service for Chain {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        let mut h = blake3::Hasher::new();
        h.update(&self.state);
        h.update(op);
        self.state = *h.finalize().as_bytes();
        self.count += 1;
        self.count.to_le_bytes().to_vec()
    }
    fn query(&self, _op: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn snapshot(&self) -> Vec<u8> {
        let mut s = self.state.to_vec();
        s.extend(self.count.to_le_bytes());
        s
    }
    fn restore(&mut self, _: &[u8]) -> Result<(), String> {
        Err("not needed".into())
    }
}

type R = Replica<Chain>;

/// A replica that counts the copies of each message kind it sends; with
/// `reorder`, a Byzantine O-primary that swaps the references of O-slots
/// 2j−1 and 2j in its O-PrePrepares (holding back the odd one).
struct Counting {
    inner: R,
    sent: BTreeMap<String, u64>,
    reorder: bool,
    stash: Option<(Vec<Addr>, Slot, Ref)>,
}

impl Counting {
    fn new(inner: R) -> Self {
        Counting {
            inner,
            sent: BTreeMap::new(),
            reorder: false,
            stash: None,
        }
    }

    fn swap_pre_prepares(&mut self, effects: Vec<Effect<R>>) -> Vec<Effect<R>> {
        let mut out = Vec::new();
        for e in effects {
            let Effect::Multicast {
                to,
                msg: Message::O(Phase::PrePrepare { view, slot, value }),
            } = e
            else {
                out.push(e);
                continue;
            };
            let pre_prepare = |slot, value| Message::O(Phase::PrePrepare { view, slot, value });
            match self.stash.take() {
                None if slot % 2 == 1 => self.stash = Some((to, slot, value)),
                Some((to1, slot1, value1)) if slot1 + 1 == slot => {
                    let msg = pre_prepare(slot1, value);
                    out.push(Effect::Multicast { to: to1, msg });
                    let msg = pre_prepare(slot, value1);
                    out.push(Effect::Multicast { to, msg });
                }
                stash => {
                    self.stash = stash;
                    let msg = pre_prepare(slot, value);
                    out.push(Effect::Multicast { to, msg });
                }
            }
        }
        out
    }

    fn run(&mut self, cx: &mut Cx<'_, Self>, f: impl FnOnce(&mut R, &mut Cx<'_, R>)) {
        let inner = &mut self.inner;
        let ((), mut step) = cx.nested(|icx| f(inner, icx));
        if self.reorder {
            step.effects = self.swap_pre_prepares(std::mem::take(&mut step.effects));
        }
        for e in &step.effects {
            match e {
                Effect::Multicast { to, msg } => {
                    *self.sent.entry(msg.kind()).or_default() += to.len() as u64
                }
                Effect::Send { msg, .. } => *self.sent.entry(msg.kind()).or_default() += 1,
                _ => {}
            }
        }
        step.forward(cx, |t| match t {});
    }
}

impl Protocol for Counting {
    type Message = Message;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = Record;
    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        self.run(cx, |r, icx| r.on_input(input, icx));
    }
    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        self.run(cx, |r, icx| r.on_message(from, msg, icx));
    }
    fn on_timer(&mut self, timer: Timer, _: &mut Cx<'_, Self>) {
        match timer {}
    }
}

fn ids(n: u32) -> Vec<NodeId> {
    (0..n).map(NodeId).collect()
}

fn command(client: u64, timestamp: u64) -> Command {
    let op = format!("set k{client} {timestamp}").into_bytes();
    Command {
        client: ClientId(client),
        timestamp,
        op,
    }
}

/// What one execution log entry says: O-slot, reference, commands that ran.
type Entry = (Slot, Ref, Vec<(ClientId, u64)>);

struct World {
    sim: Sim<Message, Input, Output>,
    logs: Vec<Vec<Entry>>,
    stables: Vec<Vec<Slot>>,
    submitted: BTreeSet<(ClientId, u64)>,
}

/// N replicas; replica i coordinates `load[i]` clients with `per_client`
/// commands each (client 1000·i + c), submitted 1 ms apart; plus one
/// duplicating client per replica whose only command goes to that replica
/// and to the next one. The replicas in `crashed` are down from the start.
fn build(n: u32, seed: u64, load: &[u64], per_client: u64, p: Params, crashed: &[u32]) -> World {
    let members = ids(n);
    let dir = group::directory(members.clone());
    let net = NetModel::uniform(MILLIS, 5 * MILLIS);
    let make = |me| {
        let r = R::new(members.clone(), me, p.clone(), Chain::default());
        Counting::new(r.expect("valid replica"))
    };
    let mut sim = group::sim(
        seed,
        net,
        CpuModel::free(),
        &dir,
        CryptoMode::Real,
        &members,
        make,
    );
    for c in crashed {
        sim.crash(0, NodeIdx(*c));
    }
    let mut submitted = BTreeSet::new();
    for i in 0..n as u64 {
        for c in 0..load[i as usize] {
            for t in 1..=per_client {
                let cmd = command(1000 * i + c, t);
                submitted.insert((cmd.client, t));
                sim.schedule_input(t * MILLIS + c, NodeIdx(i as u32), Input::Submit(cmd));
            }
        }
        let dup = command(900_000 + i, 1);
        submitted.insert((dup.client, 1));
        let next = NodeIdx(((i + 1) % n as u64) as u32);
        sim.schedule_input(3 * MILLIS, NodeIdx(i as u32), Input::Submit(dup.clone()));
        sim.schedule_input(3 * MILLIS, next, Input::Submit(dup));
    }
    World {
        sim,
        logs: vec![Vec::new(); n as usize],
        stables: vec![Vec::new(); n as usize],
        submitted,
    }
}

impl World {
    /// Run until nothing is left to do (the replicas set no timers).
    fn finish(&mut self) {
        let (logs, stables) = (&mut self.logs, &mut self.stables);
        let mut observe = |_, node: NodeIdx, _, out, _: &mut _| match out {
            Output::Executed { oslot, r, ran } => logs[node.0 as usize].push((oslot, r, ran)),
            Output::Stable(s) => stables[node.0 as usize].push(s),
        };
        self.sim.run_until(600 * SECS, &mut observe);
    }
}

/// [`build`] without crashes, run to the end.
fn run(n: u32, seed: u64, load: &[u64], per_client: u64, p: Params) -> World {
    let mut w = build(n, seed, load, per_client, p, &[]);
    w.finish();
    w
}

fn replica(w: &World, i: u32) -> &Counting {
    w.sim
        .protocol::<Counting>(NodeIdx(i))
        .expect("a DQPBFT replica")
}

/// Identical executed prefixes (here: identical logs, the run is quiet at
/// the end), no command run twice, every submitted command run, each
/// instance's references in FIFO order without gaps, and nothing left
/// waiting.
fn check_executions(w: &World, n: u32) {
    assert_eq!(w.sim.stats().faults, 0, "{:?}", w.sim.stats().fault_log);
    let first = &w.logs[0];
    for (i, log) in w.logs.iter().enumerate() {
        assert_eq!(log, first, "replica {i} executed another sequence");
    }
    let mut ran = BTreeSet::new();
    for (k, (oslot, _, cmds)) in first.iter().enumerate() {
        assert_eq!(
            *oslot,
            k as Slot + 1,
            "O-slots execute in order without gaps"
        );
        for c in cmds {
            assert!(ran.insert(*c), "{c:?} ran twice");
        }
    }
    assert_eq!(ran, w.submitted, "every submitted command ran");
    let mut next = vec![1; n as usize];
    for (_, r, _) in first {
        assert_eq!(r.seq, next[r.instance as usize], "FIFO per D-instance");
        next[r.instance as usize] += 1;
    }
    for i in 0..n {
        let r = &replica(w, i).inner;
        assert_eq!(
            (r.held(), r.queued()),
            (0, 0),
            "replica {i} left work waiting"
        );
        assert_eq!(r.service().count as usize, w.submitted.len());
        assert_eq!(r.cursor().waiting_bytes(), 0);
    }
}

#[test]
fn every_replica_executes_the_same_commands_once_at_4_and_7() {
    for (n, seed) in [(4, 1), (4, 2), (7, 3), (7, 4)] {
        let load = vec![3; n as usize];
        let w = run(n, seed, &load, 40, Params::default());
        check_executions(&w, n);
        // 40 batches or more per instance with 32-slot checkpoints: the
        // watermarks moved on every replica, at the same O-slots
        let stables = &w.stables[0];
        assert!(stables.len() >= 2, "checkpoints became stable: {stables:?}");
        for s in &w.stables {
            assert_eq!(
                &s[..stables.len().min(s.len())],
                &stables[..stables.len().min(s.len())]
            );
        }
        for i in 0..n {
            let r = &replica(&w, i).inner;
            assert!(r.stable() >= 32 && r.o().low() == r.stable());
            assert!((0..n).all(|d| r.d(d).is_some_and(|d| d.low() > 0)));
        }
    }
}

/// f replicas crashed from the start (not the O-primary): their
/// D-instances stay empty and the other replicas' quorums of 2f+1 carry on;
/// every command submitted to a live coordinator runs once, everywhere
/// alike.
#[test]
fn f_crashed_replicas_do_not_stop_the_others() {
    for (n, crashed, seed) in [(4u32, vec![3u32], 21), (7, vec![2, 5], 22)] {
        let load: Vec<u64> = (0..n)
            .map(|i| if crashed.contains(&i) { 0 } else { 2 })
            .collect();
        let mut w = build(n, seed, &load, 20, Params::default(), &crashed);
        let live: Vec<usize> = (0..n)
            .filter(|i| !crashed.contains(i))
            .map(|i| i as usize)
            .collect();
        w.finish();
        let first = &w.logs[live[0]];
        assert!(live.iter().all(|i| w.logs[*i] == *first));
        let ran: Vec<_> = first.iter().flat_map(|(_, _, c)| c.clone()).collect();
        let unique: BTreeSet<_> = ran.iter().copied().collect();
        assert_eq!(unique.len(), ran.len(), "a command ran twice");
        assert_eq!(
            unique, w.submitted,
            "every command given to a live replica ran"
        );
        assert!(first.iter().all(|(_, r, _)| !crashed.contains(&r.instance)));
        assert!(crashed.iter().all(|c| w.logs[*c as usize].is_empty()));
    }
}

/// A Byzantine O-primary that swaps pairs of references: where the two
/// name different instances the swap is just another order, and the three
/// correct replicas (a quorum at N = 4) decide it; where they name one
/// instance's S_ni and S_n(i+1), correct replicas refuse the reordering
/// before their O-Prepare (`dq-ref-reordered`), so no correct replica ever
/// meets a decided out-of-order reference at execution
/// (`dq-ref-out-of-order`, which only more than f faulty replicas can
/// cause). Execution may stall at the refused O-slot (no view change yet):
/// the correct replicas' logs must then be prefixes of one another.
#[test]
fn a_reordering_o_primary_gets_nothing_executed_out_of_order() {
    let mut reordered = 0;
    for seed in 40..46 {
        let mut w = build(4, seed, &[2, 1, 1, 1], 8, Params::default(), &[]);
        w.sim.set_byzantine(NodeIdx(0), true);
        w.sim.protocol_mut::<Counting>(NodeIdx(0)).unwrap().reorder = true;
        w.finish();
        let longest = (1..4).map(|i| &w.logs[i]).max_by_key(|l| l.len()).unwrap();
        for i in 1..4 {
            let log = &w.logs[i];
            assert_eq!(log[..], longest[..log.len()], "replica {i} diverged");
        }
        let mut next = [1; 4];
        for (_, r, _) in longest {
            assert_eq!(r.seq, next[r.instance as usize], "FIFO per D-instance");
            next[r.instance as usize] += 1;
        }
        let kinds: Vec<_> = w
            .sim
            .stats()
            .fault_log
            .iter()
            .map(|f| f.kind.clone())
            .collect();
        assert!(!kinds.iter().any(|k| k == "dq-ref-out-of-order"));
        reordered += kinds.iter().filter(|k| *k == "dq-ref-reordered").count();
    }
    assert!(reordered > 0, "the attack never reordered one instance");
}

/// A D-instance without clients gets no O-slots and holds nobody up; a
/// busy one gets more (the O-primary orders whatever was proposed, §3.1):
/// no filling needed.
#[test]
fn idle_and_busy_instances_get_slots_by_their_load() {
    let w = run(4, 5, &[1, 0, 6, 2], 30, Params::default());
    check_executions(&w, 4);
    let slots = |n: u32| w.logs[0].iter().filter(|(_, r, _)| r.instance == n).count();
    // instance 1 orders only its duplicating client's command
    assert!(slots(1) <= 2, "idle instance had {} slots", slots(1));
    assert!(slots(2) > slots(0));
}

/// Seeds 100..130 at N = 4 and 7 with loads and command counts drawn from
/// the seed: every invariant of `check_executions` holds in each.
#[test]
fn a_sweep_of_seeds_keeps_every_invariant() {
    use rand::Rng;
    for seed in 100..130u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = if seed % 2 == 0 { 4 } else { 7 };
        let load: Vec<u64> = (0..n).map(|_| rng.gen_range(0..4)).collect();
        let per_client = rng.gen_range(1..30);
        let w = run(n, seed, &load, per_client, Params::default());
        check_executions(&w, n);
    }
}

#[test]
fn a_run_replays_from_its_seed() {
    let a = run(4, 9, &[2, 2, 2, 2], 10, Params::default());
    let b = run(4, 9, &[2, 2, 2, 2], 10, Params::default());
    assert_eq!(a.sim.stats().trace_hash, b.sim.stats().trace_hash);
    assert_eq!(a.logs, b.logs);
}

/// Fig. 2 counts 2N + 4N² messages per batch for DQPBFT: per instance N + 2N²
/// (PBFT's PrePrepare to N, Prepare and Commit from N to N), once for the D-
/// and once for the O-instance, replies excluded. The paper counts a
/// multicast as N messages; a replica does not send to itself, so the
/// network carries (N−1) + 2N(N−1) copies per instance: this test counts the
/// copies each replica sent per kind and checks both. Checkpoints are turned
/// off (a checkpoint costs N(N−1) copies per interval, not per batch).
#[test]
fn messages_per_batch_are_2n_plus_4n_squared() {
    for (n, seed) in [(4u64, 11), (7, 12)] {
        let p = Params {
            checkpoint_interval: 1 << 19,
            o_window: 1 << 21,
            d_window: 1 << 20,
            ..Params::default()
        };
        let w = run(n as u32, seed, &vec![2; n as usize], 25, p);
        check_executions(&w, n as u32);
        let batches = w.logs[0].len() as u64;
        assert!(batches >= n, "{batches} batches");
        let mut sent: BTreeMap<String, u64> = BTreeMap::new();
        for i in 0..n as u32 {
            for (k, c) in &replica(&w, i).sent {
                *sent.entry(k.clone()).or_default() += c;
            }
        }
        let copies = |k: &str| sent.get(k).copied().unwrap_or(0);
        for prefix in ["D", "O"] {
            assert_eq!(copies(&format!("{prefix}-PrePrepare")), batches * (n - 1));
            assert_eq!(copies(&format!("{prefix}-Prepare")), batches * n * (n - 1));
            assert_eq!(copies(&format!("{prefix}-Commit")), batches * n * (n - 1));
        }
        let protocol: u64 = ["D", "O"]
            .iter()
            .flat_map(|p| ["PrePrepare", "Prepare", "Commit"].map(|k| copies(&format!("{p}-{k}"))))
            .sum();
        assert_eq!(protocol * n / (n - 1), batches * Proto::Dqpbft.messages(n));
        // nothing else travelled between replicas: the rest are replies, one
        // per replica and command, plus at most one per replica for the
        // second copy of each duplicating client's command
        let replies = copies("Reply");
        assert_eq!(sent.len(), 7, "{sent:?}");
        let commands = w.submitted.len() as u64;
        assert!((n * commands..=n * (commands + n)).contains(&replies));
        // and the engine's own count agrees (the replies are for clients this
        // world does not simulate: they never enter the network)
        assert_eq!(w.sim.stats().sent, protocol);
    }
}

// ----- one replica, stepped by hand -----

fn crypto(me: u32) -> Crypto {
    group::crypto(NodeId(me), &group::directory(ids(4)), CryptoMode::Real)
}

fn step(r: &mut R, c: &Crypto, f: impl FnOnce(&mut R, &mut Cx<'_, R>)) -> Vec<Effect<R>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut fx = Vec::new();
    f(r, &mut Cx::new(0, &mut rng, c, &mut fx));
    fx
}

fn deliver(r: &mut R, c: &Crypto, from: u32, msg: Message) -> Vec<Effect<R>> {
    step(r, c, |r, cx| {
        r.on_message(Addr::Node(NodeId(from)), msg, cx)
    })
}

fn d_pre_prepare(instance: u32, slot: Slot) -> Message {
    let value = DBatch::new(vec![command(instance as u64, slot)]);
    let phase = Phase::PrePrepare {
        view: 0,
        slot,
        value,
    };
    Message::D { instance, phase }
}

fn o_pre_prepare(slot: Slot, instance: u32, seq: Slot) -> Message {
    let value = Ref { instance, seq };
    Message::O(Phase::PrePrepare {
        view: 0,
        slot,
        value,
    })
}

/// The O-Prepares among `fx`, by O-slot.
fn o_prepares(fx: &[Effect<R>]) -> Vec<Slot> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Multicast {
                msg: Message::O(Phase::Prepare { slot, .. }),
                ..
            } => Some(*slot),
            _ => None,
        })
        .collect()
}

fn faults<P: Protocol>(fx: &[Effect<P>]) -> Vec<&'static str> {
    Effect::fault_names(fx)
}

#[test]
fn o_prepare_waits_for_the_d_pre_prepare_and_the_previous_reference() {
    let c = crypto(1);
    let mut r = R::new(ids(4), NodeId(1), Params::default(), Chain::default()).unwrap();
    // O-slot 1 names (3, 1) before replica 1 holds D-instance 3's proposal
    let fx = deliver(&mut r, &c, 0, o_pre_prepare(1, 3, 1));
    assert!(o_prepares(&fx).is_empty() && faults(&fx).is_empty());
    assert_eq!(r.held(), 1);
    // O-slot 2 names (3, 2): its D-PrePrepare arrives first, but (3, 1) is
    // not prepared yet either
    deliver(&mut r, &c, 3, d_pre_prepare(3, 2));
    let fx = deliver(&mut r, &c, 0, o_pre_prepare(2, 3, 2));
    assert!(o_prepares(&fx).is_empty());
    assert_eq!(r.held(), 2);
    // the D-PrePrepare of (3, 1) releases both, in order
    let fx = deliver(&mut r, &c, 3, d_pre_prepare(3, 1));
    assert_eq!(o_prepares(&fx), vec![1, 2]);
    assert_eq!((r.held(), faults(&fx).len()), (0, 0));
}

#[test]
fn gapped_reordered_duplicate_and_invalid_references_are_refused() {
    let c = crypto(1);
    let mut r = R::new(ids(4), NodeId(1), Params::default(), Chain::default()).unwrap();
    deliver(&mut r, &c, 2, d_pre_prepare(2, 1));
    deliver(&mut r, &c, 2, d_pre_prepare(2, 2));
    // a primary that puts (2, 2) before (2, 1): the first waits for (2, 1),
    // which then shows the order broken
    let fx = deliver(&mut r, &c, 0, o_pre_prepare(1, 2, 2));
    assert!(o_prepares(&fx).is_empty());
    let fx = deliver(&mut r, &c, 0, o_pre_prepare(2, 2, 1));
    assert_eq!(o_prepares(&fx), vec![2]);
    assert_eq!(faults(&fx), vec!["dq-ref-reordered"]);
    assert_eq!(r.held(), 0);
    // (2, 1) again at another O-slot
    let fx = deliver(&mut r, &c, 0, o_pre_prepare(3, 2, 1));
    assert_eq!(
        (o_prepares(&fx).len(), faults(&fx)),
        (0, vec!["dq-ref-duplicate"])
    );
    // the largest sequence number waits (bounded), it does not overflow
    let fx = deliver(&mut r, &c, 0, o_pre_prepare(4, 2, Slot::MAX));
    assert!(o_prepares(&fx).is_empty() && faults(&fx).is_empty());
    assert_eq!(r.held(), 1);
    // no such instance, and sequence number 0
    let fx = deliver(&mut r, &c, 0, o_pre_prepare(4, 9, 1));
    assert_eq!(faults(&fx), vec!["dq-ref-invalid"]);
    let fx = deliver(&mut r, &c, 0, o_pre_prepare(4, 2, 0));
    assert_eq!(faults(&fx), vec!["dq-ref-invalid"]);
    // an O-PrePrepare from a replica that is not the O-primary is the core's
    let fx = deliver(&mut r, &c, 2, o_pre_prepare(5, 2, 2));
    assert_eq!(faults(&fx), vec!["propose-not-leader"]);
}

#[test]
fn strangers_and_spoofed_requests_are_refused() {
    let c = crypto(1);
    let mut r = R::new(ids(4), NodeId(1), Params::default(), Chain::default()).unwrap();
    let fx = step(&mut r, &c, |r, cx| {
        r.on_message(Addr::Client(ClientId(5)), d_pre_prepare(1, 1), cx)
    });
    assert_eq!(faults(&fx), vec!["dq-not-a-member"]);
    let fx = step(&mut r, &c, |r, cx| {
        r.on_message(
            Addr::Client(ClientId(5)),
            Message::Request(command(6, 1)),
            cx,
        )
    });
    assert_eq!(faults(&fx), vec!["dq-request-spoof"]);
    let fx = deliver(&mut r, &c, 2, d_pre_prepare(7, 1));
    assert_eq!(faults(&fx), vec!["dq-bad-instance"]);
    let big = DBatch::new((0..65).map(|t| command(1, t)).collect());
    let phase = Phase::PrePrepare {
        view: 0,
        slot: 1,
        value: big,
    };
    let fx = deliver(&mut r, &c, 2, Message::D { instance: 2, phase });
    assert_eq!(faults(&fx), vec!["propose-invalid"]);
    assert_eq!(r.queued(), 0);
}

#[test]
fn params_are_checked() {
    assert!(Params::default().validate(4).is_ok());
    let bad = Params {
        o_primary: 4,
        ..Params::default()
    };
    assert!(R::new(ids(4), NodeId(0), bad, Chain::default()).is_err());
    let bad = Params {
        o_window: 40,
        ..Params::default()
    };
    assert!(bad.validate(4).unwrap_err().contains("o_window"));
    let bad = Params {
        d_window: 32,
        ..Params::default()
    };
    assert!(bad.validate(4).unwrap_err().contains("d_window"));
    assert!(R::new(ids(4), NodeId(9), Params::default(), Chain::default()).is_err());
}

// ----- the cursor -----

fn batch(client: u64, ts: u64) -> DBatch {
    DBatch::new(vec![command(client, ts)])
}

#[test]
fn the_cursor_executes_in_o_order_once_both_decisions_are_known() {
    let mut c = exec::Cursor::new(2);
    let r = |instance, seq| Ref { instance, seq };
    c.o_decided(2, r(0, 1));
    c.o_decided(1, r(1, 1));
    c.d_decided(0, 1, batch(1, 1));
    assert_eq!(c.next_ready(), None, "O-slot 1 waits for D-instance 1");
    c.d_decided(1, 1, batch(2, 1));
    let got: Vec<_> = std::iter::from_fn(|| c.next_ready()).collect();
    let want = vec![
        Ready::Execute {
            oslot: 1,
            r: r(1, 1),
            batch: batch(2, 1),
        },
        Ready::Execute {
            oslot: 2,
            r: r(0, 1),
            batch: batch(1, 1),
        },
    ];
    assert_eq!(got, want);
    assert_eq!((c.executed(), c.d_executed()), (2, &[1, 1][..]));
}

#[test]
fn the_cursor_skips_null_slots_consumes_no_ops_and_reports_gaps() {
    let mut c = exec::Cursor::new(2);
    let r = |instance, seq| Ref { instance, seq };
    c.o_decided(1, Ref::default());
    c.o_decided(2, r(0, 1));
    c.o_decided(3, r(0, 3));
    c.o_decided(4, r(0, 2));
    c.d_decided(0, 1, DBatch::noop());
    c.d_decided(0, 2, batch(1, 1));
    assert_eq!(c.next_ready(), Some(Ready::Null { oslot: 1 }));
    let noop = c.next_ready();
    assert!(matches!(noop, Some(Ready::Execute { batch, .. }) if batch.is_noop()));
    assert_eq!(
        c.next_ready(),
        Some(Ready::OutOfOrder {
            oslot: 3,
            r: r(0, 3),
            expected: 2
        })
    );
    assert!(matches!(
        c.next_ready(),
        Some(Ready::Execute { oslot: 4, .. })
    ));
    assert!(c.d_known(0, 2) && !c.d_known(0, 3) && !c.d_known(5, 1));
}

#[test]
fn the_client_table_runs_each_timestamp_once_and_is_bounded() {
    let mut t = exec::ClientTable::new(1, 4);
    let a1 = command(1, 1);
    assert_eq!(t.admit(&a1), Admit::Run);
    t.record(&a1, b"resultresult".to_vec());
    assert_eq!(t.admit(&a1), Admit::Duplicate(Some(b"resu".to_vec())));
    assert_eq!(t.admit(&command(1, 2)), Admit::Run);
    assert_eq!(t.admit(&command(2, 1)), Admit::Full);
    t.record(&command(1, 3), vec![]);
    assert_eq!(t.admit(&command(1, 2)), Admit::Duplicate(None));
    assert!(t.done(ClientId(1), 2) && !t.done(ClientId(1), 4));
}

// ----- clients -----

type In = Role<ClientInput, Input>;
type Out = Role<Done, Output>;

/// N replicas (those in `crashed` down from the start) and `k` clients per
/// replica (client 1000·i + c + 1 has replica i as its coordinator), each
/// making `calls` calls one after another. Returns each client's completed
/// timestamps and each replica's execution log.
fn with_clients(
    n: u32,
    k: u64,
    calls: u64,
    crashed: &[u32],
    seed: u64,
) -> (Vec<Vec<u64>>, Vec<Vec<Entry>>) {
    let members = ids(n);
    let clients: Vec<(ClientId, NodeId)> = (0..n)
        .flat_map(|i| (0..k).map(move |c| (ClientId(1000 * i as u64 + c + 1), NodeId(i))))
        .collect();
    let client_identity = |c: ClientId| identity(b'c', c.0 as usize);
    let entries = members
        .iter()
        .map(|m| (Addr::Node(*m), group::member_identity(*m).public()))
        .chain(
            clients
                .iter()
                .map(|(c, _)| (Addr::Client(*c), client_identity(*c).public())),
        );
    let dir = Arc::new(Directory::new(entries));
    let mut sim: Sim<Message, In, Out> = Sim::new(
        seed,
        NetModel::uniform(MILLIS, 5 * MILLIS),
        CpuModel::free(),
    );
    for m in &members {
        let crypto = Crypto::with_directory(
            Addr::Node(*m),
            group::member_identity(*m),
            CryptoMode::Real,
            dir.clone(),
        );
        let r = R::new(members.clone(), *m, Params::default(), Chain::default()).unwrap();
        sim.add_node(Addr::Node(*m), crypto, ProtocolActor::replica(r), 0);
    }
    for (c, coordinator) in &clients {
        let crypto = Crypto::with_directory(
            Addr::Client(*c),
            client_identity(*c),
            CryptoMode::Real,
            dir.clone(),
        );
        let client = Client::new(*c, members.clone(), *coordinator, 200 * MILLIS).unwrap();
        let node = sim.add_node(Addr::Client(*c), crypto, ProtocolActor::client(client), 0);
        for t in 0..calls {
            let op = format!("set k{} {t}", c.0).into_bytes();
            sim.schedule_input(0, node, Role::Client(ClientInput::Call(op)));
        }
    }
    for c in crashed {
        sim.crash(0, NodeIdx(*c));
    }
    let mut done = vec![Vec::new(); clients.len()];
    let mut logs = vec![Vec::new(); n as usize];
    sim.run_until(
        600 * SECS,
        &mut |_, node: NodeIdx, _, out: Out, _: &mut _| match out {
            Role::Client(d) => done[node.0 as usize - n as usize].push(d.timestamp),
            Role::Replica(Output::Executed { oslot, r, ran }) => {
                logs[node.0 as usize].push((oslot, r, ran))
            }
            Role::Replica(Output::Stable(_)) => {}
        },
    );
    assert_eq!(sim.stats().faults, 0, "{:?}", sim.stats().fault_log);
    (done, logs)
}

/// Every client completes each of its calls once f+1 replicas agree on the
/// result; every live replica executed the same commands, each once. With
/// a coordinator crashed, its clients time out, send to every replica, and
/// complete through the others' D-instances.
#[test]
fn clients_complete_on_f_plus_1_matching_replies_even_without_their_coordinator() {
    for (n, crashed, seed) in [(4u32, vec![], 31), (4, vec![2u32], 32), (7, vec![1, 6], 33)] {
        let (done, logs) = with_clients(n, 2, 12, &crashed, seed);
        for (c, ts) in done.iter().enumerate() {
            assert_eq!(*ts, (1..=12).collect::<Vec<u64>>(), "client {c}");
        }
        let live: Vec<usize> = (0..n as usize)
            .filter(|i| !crashed.contains(&(*i as u32)))
            .collect();
        let first = &logs[live[0]];
        assert!(live.iter().all(|i| logs[*i] == *first));
        let ran: Vec<_> = first.iter().flat_map(|(_, _, c)| c.clone()).collect();
        let unique: BTreeSet<_> = ran.iter().copied().collect();
        assert_eq!(
            (unique.len(), ran.len()),
            (done.len() * 12, done.len() * 12)
        );
    }
}

#[test]
fn a_client_needs_f_plus_1_matching_results_and_reports_conflicts() {
    let me = ClientId(7);
    let crypto = Crypto::new(Addr::Client(me), identity(b'c', 7), CryptoMode::Real);
    let mut c = Client::new(me, ids(4), NodeId(1), 100 * MILLIS).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut go = |c: &mut Client, f: &mut dyn FnMut(&mut Client, &mut Cx<'_, Client>)| {
        let mut fx = Vec::new();
        f(c, &mut Cx::new(0, &mut rng, &crypto, &mut fx));
        fx
    };
    let reply = |result: &[u8]| Message::Reply {
        client: me,
        timestamp: 1,
        result: result.to_vec(),
    };
    let from = |i| Addr::Node(NodeId(i));
    let done = |fx: &[Effect<Client>]| fx.iter().any(|e| matches!(e, Effect::Output(_)));
    go(&mut c, &mut |c, cx| {
        c.on_input(ClientInput::Call(b"op".to_vec()), cx)
    });
    assert_eq!(c.waiting(), 1);
    let fx = go(&mut c, &mut |c, cx| c.on_message(from(0), reply(b"a"), cx));
    assert!(!done(&fx));
    // replica 0 changes its mind: reported, not counted twice
    let fx = go(&mut c, &mut |c, cx| c.on_message(from(0), reply(b"b"), cx));
    assert_eq!(faults(&fx), vec!["dq-reply-conflict"]);
    let fx = go(&mut c, &mut |c, cx| c.on_message(from(1), reply(b"b"), cx));
    assert!(!done(&fx), "one vote for b is not f+1");
    let fx = go(&mut c, &mut |c, cx| {
        c.on_message(Addr::Client(ClientId(8)), reply(b"a"), cx)
    });
    assert!(!done(&fx) && matches!(&fx[..], [Effect::Fault(_)]));
    let fx = go(&mut c, &mut |c, cx| c.on_message(from(2), reply(b"a"), cx));
    let want = Done {
        timestamp: 1,
        result: b"a".to_vec(),
    };
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Output(d) if *d == want)));
    assert_eq!(c.waiting(), 0);
    assert!(Client::new(me, ids(4), NodeId(4), 100 * MILLIS).is_err());
}
