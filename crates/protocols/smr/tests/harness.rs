//! A minimal in-process harness for the SMR core: instant FIFO delivery, timers
//! fire in deadline order when the network is idle. The real test bed is the
//! simulator (`byzscale-sim`); this checks the core on its own.

use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::protocol::{Effect, MILLIS};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::service::Service;
use byzscale_core::{Addr, ClientId, Cx, GroupId, NodeId, Protocol};
use byzscale_smr as smr;
use byzscale_smr::*;
use rand::SeedableRng;
use std::collections::{BTreeMap, VecDeque};

/// Appends each op to a log; replies with the log length.
#[derive(Default)]
struct Log(Vec<Vec<u8>>);
impl Service for Log {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        self.0.push(op.to_vec());
        (self.0.len() as u64).to_le_bytes().to_vec()
    }
    fn query(&self, _op: &[u8]) -> Option<Vec<u8>> {
        Some((self.0.len() as u64).to_le_bytes().to_vec())
    }
    fn snapshot(&self) -> Vec<u8> {
        byzscale_core::codec::to_bytes(&self.0)
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), String> {
        self.0 = byzscale_core::codec::from_bytes(s, usize::MAX).map_err(|e| e.to_string())?;
        Ok(())
    }
}

enum Node {
    R(Box<Replica<Log>>),
    C(Box<Client>),
}

struct World {
    nodes: BTreeMap<Addr, (Node, Crypto, rand_chacha::ChaCha8Rng)>,
    queue: VecDeque<(Addr, Addr, Message)>,
    replica_timers: BTreeMap<(Addr, smr::replica::Timer), u64>,
    client_timers: BTreeMap<(Addr, smr::client::Timer), u64>,
    now: u64,
    down: Vec<Addr>,
    decided: BTreeMap<Addr, Vec<(u64, byzscale_core::crypto::Digest)>>,
    done: Vec<(u64, Vec<u8>)>,
    views: BTreeMap<Addr, u64>,
    /// Every delivered message: (from, to, kind).
    delivered: Vec<(Addr, Addr, &'static str)>,
    /// Batch sizes of the PROPOSEs delivered, by slot.
    proposed: BTreeMap<u64, usize>,
}

fn group(n: usize, f: usize) -> GroupInfo {
    let qs = QuorumSystem::classic(n, f, FaultModel::Bft).unwrap();
    GroupInfo::new(GroupId(0), (0..n as u32).map(NodeId).collect(), qs)
}

impl World {
    fn new(n: usize, f: usize, p: Params) -> Self {
        let g = group(n, f);
        let client = Addr::Client(ClientId(1));
        let mut addrs: Vec<Addr> = g.addrs();
        addrs.push(client);
        let ids: Vec<Identity> = (0..addrs.len())
            .map(|i| Identity::from_seed([i as u8 + 1; 32]))
            .collect();
        let mut nodes = BTreeMap::new();
        for (i, a) in addrs.iter().enumerate() {
            let mut c = Crypto::new(*a, ids[i].clone(), CryptoMode::Real);
            for (j, b) in addrs.iter().enumerate() {
                if i != j {
                    c.add_peer(*b, ids[j].public()).unwrap();
                }
            }
            let node = match a {
                Addr::Node(id) => Node::R(Box::new(Replica::new(
                    *id,
                    g.clone(),
                    p.clone(),
                    Log::default(),
                ))),
                Addr::Client(id) => Node::C(Box::new(Client::new(*id, g.clone(), p.clone()))),
            };
            nodes.insert(
                *a,
                (node, c, rand_chacha::ChaCha8Rng::seed_from_u64(i as u64)),
            );
        }
        World {
            nodes,
            queue: VecDeque::new(),
            replica_timers: BTreeMap::new(),
            client_timers: BTreeMap::new(),
            now: 0,
            down: vec![],
            decided: BTreeMap::new(),
            done: vec![],
            views: BTreeMap::new(),
            delivered: Vec::new(),
            proposed: BTreeMap::new(),
        }
    }

    fn deliver(&mut self, from: Addr, to: Addr, m: Message) {
        self.now += 10_000; // 10 µs per delivery
        self.delivered.push((from, to, m.kind()));
        if let Message::Propose { slot, batch, .. } = &m {
            self.proposed.insert(*slot, batch.requests.len());
        }
        self.step(to, Ev::Msg(from, m));
    }

    fn step(&mut self, at: Addr, ev: Ev) {
        if self.down.contains(&at) {
            return;
        }
        let now = self.now;
        let (node, crypto, rng) = self.nodes.get_mut(&at).unwrap();
        match node {
            Node::R(r) => {
                let mut eff = Vec::new();
                {
                    let mut cx = Cx::new(now, rng, crypto, &mut eff);
                    match ev {
                        Ev::Msg(from, m) => r.on_message(from, m, &mut cx),
                        Ev::RTimer(t) => r.on_timer(t, &mut cx),
                        Ev::Suspect => r.on_input(smr::replica::Input::Suspect, &mut cx),
                        _ => {}
                    }
                }
                route(&mut self.queue, at, eff, |e| match e {
                    Effect::SetTimer { timer, after } => {
                        self.replica_timers.insert((at, timer), now + after);
                    }
                    Effect::CancelTimer { timer } => {
                        self.replica_timers.remove(&(at, timer));
                    }
                    Effect::Output(smr::replica::Output::Decided { slot, digest, .. }) => {
                        self.decided.entry(at).or_default().push((slot, digest))
                    }
                    Effect::Output(smr::replica::Output::ViewChanged { view, .. }) => {
                        self.views.insert(at, view);
                    }
                    Effect::Output(_) | Effect::Persist(_) => {}
                    Effect::Fault(f) => panic!("unexpected fault in a fault-free run: {f:?}"),
                    Effect::Send { .. } | Effect::Multicast { .. } => unreachable!("routed"),
                });
            }
            Node::C(c) => {
                let mut eff = Vec::new();
                {
                    let mut cx = Cx::new(now, rng, crypto, &mut eff);
                    match ev {
                        Ev::Msg(from, m) => c.on_message(from, m, &mut cx),
                        Ev::CTimer(t) => c.on_timer(t, &mut cx),
                        Ev::Submit(op, ro) => {
                            c.on_input(smr::client::Input::Submit { op, read_only: ro }, &mut cx)
                        }
                        _ => {}
                    }
                }
                route(&mut self.queue, at, eff, |e| match e {
                    Effect::SetTimer { timer, after } => {
                        self.client_timers.insert((at, timer), now + after);
                    }
                    Effect::CancelTimer { timer } => {
                        self.client_timers.remove(&(at, timer));
                    }
                    Effect::Output(smr::client::Output::Done { id, result, .. }) => {
                        self.done.push((id, result))
                    }
                    Effect::Fault(f) => panic!("unexpected fault: {f:?}"),
                    Effect::Persist(r) => match r {},
                    Effect::Send { .. } | Effect::Multicast { .. } => unreachable!("routed"),
                });
            }
        }
    }

    /// Deliver everything; when idle, fire the earliest timer. Stops when idle
    /// with no timers or after `max_steps`.
    fn run(&mut self, until_done: usize, max_steps: usize) {
        for _ in 0..max_steps {
            if self.done.len() >= until_done {
                return;
            }
            if let Some((from, to, m)) = self.queue.pop_front() {
                if self.down.contains(&from) {
                    continue;
                }
                self.deliver(from, to, m);
                continue;
            }
            let r = self
                .replica_timers
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, t)| (k.clone(), *t));
            let c = self
                .client_timers
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, t)| (k.clone(), *t));
            match (r, c) {
                (Some((k, t)), c) if c.as_ref().map(|(_, ct)| t <= *ct).unwrap_or(true) => {
                    self.replica_timers.remove(&k);
                    self.now = self.now.max(t);
                    self.step(k.0, Ev::RTimer(k.1));
                }
                (_, Some((k, t))) => {
                    self.client_timers.remove(&k);
                    self.now = self.now.max(t);
                    self.step(k.0, Ev::CTimer(k.1));
                }
                _ => return,
            }
        }
        panic!(
            "did not finish in {max_steps} steps; done = {}",
            self.done.len()
        );
    }

    /// Run at most `steps` events (messages or timers) without requiring progress.
    fn settle(&mut self, steps: usize) {
        for _ in 0..steps {
            if self.queue.is_empty()
                && self.replica_timers.is_empty()
                && self.client_timers.is_empty()
            {
                return;
            }
            if let Some((from, to, m)) = self.queue.pop_front() {
                if !self.down.contains(&from) {
                    self.deliver(from, to, m);
                }
                continue;
            }
            let r = self
                .replica_timers
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, t)| (k.clone(), *t));
            if let Some((k, t)) = r {
                self.replica_timers.remove(&k);
                self.now = self.now.max(t);
                self.step(k.0, Ev::RTimer(k.1));
            } else {
                self.client_timers.clear();
            }
        }
    }

    fn submit(&mut self, op: &[u8], ro: bool) {
        self.step(Addr::Client(ClientId(1)), Ev::Submit(op.to_vec(), ro));
    }

    fn assert_agreement(&self) {
        let mut by_slot: BTreeMap<u64, byzscale_core::crypto::Digest> = BTreeMap::new();
        for v in self.decided.values() {
            for (s, d) in v {
                if let Some(o) = by_slot.insert(*s, *d) {
                    assert_eq!(o, *d, "disagreement at slot {s}");
                }
            }
        }
    }
}

/// Queue a step's sends and multicasts; hand every other effect to `other`.
fn route<P: Protocol<Message = Message>>(
    queue: &mut VecDeque<(Addr, Addr, Message)>,
    at: Addr,
    effects: Vec<Effect<P>>,
    mut other: impl FnMut(Effect<P>),
) {
    for e in effects {
        match e {
            Effect::Send { to, msg } => queue.push_back((at, to, msg)),
            Effect::Multicast { to, msg } => {
                for t in to {
                    queue.push_back((at, t, msg.clone()))
                }
            }
            e => other(e),
        }
    }
}

enum Ev {
    Msg(Addr, Message),
    RTimer(smr::replica::Timer),
    CTimer(smr::client::Timer),
    Submit(Vec<u8>, bool),
    Suspect,
}

fn params() -> Params {
    Params {
        checkpoint_interval: 4,
        window: 8,
        request_timeout: 50 * MILLIS,
        view_change_timeout: 50 * MILLIS,
        client_retry: 100 * MILLIS,
        fetch_interval: 5 * MILLIS,
        ..Params::default()
    }
}

#[test]
fn normal_case_orders_and_replies() {
    let mut w = World::new(4, 1, params());
    for i in 0..20u8 {
        w.submit(&[i], false);
    }
    w.run(20, 1_000_000);
    let results: Vec<u64> = w
        .done
        .iter()
        .map(|(_, r)| u64::from_le_bytes(r[..8].try_into().unwrap()))
        .collect();
    // exactly-once, FIFO: the i-th op sees a log of length i
    let ids: Vec<u64> = w.done.iter().map(|(id, _)| *id).collect();
    for (id, len) in ids.iter().zip(&results) {
        assert_eq!(id, len);
    }
    w.assert_agreement();
    assert!(w.decided.len() >= 3);
}

#[test]
fn read_only_is_answered_without_ordering() {
    let mut w = World::new(4, 1, params());
    w.submit(b"a", false);
    w.run(1, 100_000);
    let decided_before: usize = w.decided.values().map(|v| v.len()).sum();
    w.submit(b"q", true);
    w.run(2, 100_000);
    let decided_after: usize = w.decided.values().map(|v| v.len()).sum();
    assert_eq!(
        decided_before, decided_after,
        "a read-only op must not be ordered"
    );
    assert_eq!(u64::from_le_bytes(w.done[1].1[..8].try_into().unwrap()), 1);
}

#[test]
fn crashed_leader_is_replaced_and_no_request_is_lost() {
    let mut w = World::new(4, 1, params());
    for i in 0..5u8 {
        w.submit(&[i], false);
    }
    w.run(5, 1_000_000);
    w.down.push(Addr::Node(NodeId(0)));
    for i in 5..15u8 {
        w.submit(&[i], false);
    }
    w.run(15, 1_000_000);
    let ids: Vec<u64> = w.done.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=15).collect::<Vec<_>>());
    assert!(w.views.values().all(|v| *v >= 1), "views: {:?}", w.views);
    w.assert_agreement();
    // results stay exactly-once across the view change
    for (id, r) in &w.done {
        assert_eq!(*id, u64::from_le_bytes(r[..8].try_into().unwrap()));
    }
}

/// Requests a client sends, as (first request of the client's, destination).
fn client_requests(w: &World) -> Vec<Addr> {
    w.delivered
        .iter()
        .filter(|(from, _, kind)| matches!(from, Addr::Client(_)) && *kind == "request")
        .map(|(_, to, _)| *to)
        .collect()
}

#[test]
fn ordered_requests_go_to_the_leader_and_follow_a_view_change() {
    let mut w = World::new(4, 1, params());
    w.submit(b"a", false);
    w.run(1, 100_000);
    // first transmission: to the leader of view 0 only
    assert_eq!(client_requests(&w), vec![Addr::Node(NodeId(0))]);
    for n in 0..4 {
        w.step(Addr::Node(NodeId(n)), Ev::Suspect);
    }
    w.submit(b"b", false);
    w.run(2, 1_000_000);
    assert!(w.views.values().all(|v| *v == 1), "views: {:?}", w.views);
    // the replies to "b" came from view 1: "c" goes straight to its leader
    let before = client_requests(&w).len();
    w.submit(b"c", false);
    w.run(3, 1_000_000);
    assert_eq!(client_requests(&w)[before..], [Addr::Node(NodeId(1))]);
    w.assert_agreement();
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
            let (from, to, m) = w.queue.pop_back().unwrap();
            w.deliver(from, to, m);
        }
        w.run(6, 1_000_000);
        w.assert_agreement();
        w.proposed.values().copied().collect::<Vec<_>>()
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
    w.run(1, 100_000);
    for n in 0..4 {
        w.step(Addr::Node(NodeId(n)), Ev::Suspect);
    }
    w.submit(b"y", false);
    w.run(2, 1_000_000);
    assert!(w.views.values().all(|v| *v == 1), "views: {:?}", w.views);
    w.assert_agreement();
}

#[test]
fn lagging_replica_catches_up_by_state_transfer() {
    let mut w = World::new(4, 1, params());
    let lag = Addr::Node(NodeId(3));
    w.down.push(lag);
    for i in 0..40u8 {
        w.submit(&[i], false);
        w.run(i as usize + 1, 1_000_000);
    }
    w.down.clear();
    // the lagging replica sees new traffic, learns of stable checkpoints, fetches
    for i in 40..60u8 {
        w.submit(&[i], false);
        w.run(i as usize + 1, 1_000_000);
    }
    w.settle(200_000);
    let (node, _, _) = &w.nodes[&lag];
    let Node::R(r) = node else { unreachable!() };
    let (node0, _, _) = &w.nodes[&Addr::Node(NodeId(0))];
    let Node::R(r0) = node0 else { unreachable!() };
    assert!(
        r.executed() >= r0.executed() - 8,
        "lagging {} vs {}",
        r.executed(),
        r0.executed()
    );
    // the caught-up state is a prefix of the leader's (same ops, same order)
    let (lag_log, lead_log) = (&r.service().0, &r0.service().0);
    assert!(lag_log.len() <= lead_log.len());
    assert_eq!(lag_log[..], lead_log[..lag_log.len()]);
    w.assert_agreement();
}
