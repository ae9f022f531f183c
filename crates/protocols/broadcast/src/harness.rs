//! An in-memory, deterministic driver for any [`Protocol`]: the test harness of
//! this crate and of `byzscale-at2`, and the driver of the simulator's scale
//! runs (raft-rs style: the core is tested through a harness with a simulated
//! network).
//!
//! It is a reduced version of the simulator engine (`byzscale_sim::engine`):
//! one thread, virtual time, events ordered by `(time, sequence number)` (a
//! B-tree of time buckets, which keeps millions of in-flight messages cheaper
//! to order than a binary heap), one ChaCha8 RNG per node (stream `index + 1`)
//! lent to the protocol through [`Cx`] and one for the network (stream 0), so
//! a run is a pure function of its seed. What it leaves out, on purpose:
//!
//! - **No channel MACs.** The engine tags every message with a pairwise HMAC,
//!   which needs a key per pair of processes (an X25519 exchange each, ~90 µs
//!   and ~600 B): 10⁶ pairs at N = 1000, 10⁸ at N = 10,000. Here the sender
//!   address is trusted, so each node's [`Crypto`] only needs the public keys
//!   of the processes whose signatures it checks. A service-time hook can still
//!   charge the MAC cost.
//! - **No fault injection** beyond what the protocols themselves do: Byzantine
//!   behaviour is a protocol implementation, a silent process is simply not
//!   added (messages to it are dropped and counted).
//!
//! Latency is a hook (`from`, `to`, bytes, network RNG) → delay; the default
//! draws uniformly from 1–100 µs, which reorders messages freely. A node serves
//! one event at a time; with a service-time hook, an event keeps it busy and
//! its messages leave when it is done (as in the engine's CPU model).

use byzscale_core::codec;
use byzscale_core::crypto::{Crypto, CryptoMode, Identity, Meter};
use byzscale_core::protocol::{Cx, Effect, Fault, Protocol, Time, MICROS};
use byzscale_core::{Addr, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

/// Bytes added to every message on the wire: the engine's frame header (8) and
/// HMAC tag (32), so byte counts are comparable with the simulator's.
pub const WIRE_OVERHEAD: usize = 8 + 32;

/// The deterministic identity of process `i` in harness runs and simulations.
pub fn identity(i: u32) -> Identity {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(b"bcst");
    seed[4..8].copy_from_slice(&i.to_le_bytes());
    Identity::from_seed(seed)
}

/// A [`Crypto`] for process `me` that knows the public keys of `peers` (the
/// processes whose signatures it will check; here no channel keys are needed).
pub fn crypto(me: NodeId, peers: impl IntoIterator<Item = NodeId>, mode: CryptoMode) -> Crypto {
    let mut c = Crypto::new(me.into(), identity(me.0), mode);
    for p in peers {
        if p != me {
            c.add_peer(p.into(), identity(p.0).public())
                .expect("valid key");
        }
    }
    c
}

/// Work done while serving one event (for a service-time hook).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub recv_bytes: u64,
    /// Copies sent.
    pub sends: u64,
    /// Bytes encoded (once per send or multicast).
    pub encoded_bytes: u64,
    /// Bytes of all copies sent (what channel MACs would cover).
    pub sent_bytes: u64,
    pub meter: Meter,
}

/// Per-node counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    pub events: u64,
    pub sent: u64,
    pub bytes_sent: u64,
    pub received: u64,
    pub bytes_received: u64,
    pub faults: u64,
    pub busy_ns: u64,
}

/// What an output observer may do.
pub struct Ctl<I> {
    now: Time,
    inputs: Vec<(Time, NodeId, I)>,
    stop: bool,
}

impl<I> Ctl<I> {
    pub fn now(&self) -> Time {
        self.now
    }
    /// Give `node` an input at `at` (not before now).
    pub fn input_at(&mut self, at: Time, node: NodeId, input: I) {
        self.inputs.push((at.max(self.now), node, input));
    }
    pub fn input(&mut self, node: NodeId, input: I) {
        self.inputs.push((self.now, node, input));
    }
    /// Stop [`Harness::run_until`] after this event.
    pub fn stop(&mut self) {
        self.stop = true;
    }
}

type Latency = Box<dyn FnMut(NodeId, NodeId, usize, &mut ChaCha8Rng) -> Time>;
type Service = Box<dyn FnMut(&Work) -> Time>;
type Loss = Box<dyn FnMut(NodeId, NodeId, Time, &mut ChaCha8Rng) -> bool>;

enum Ev<P: Protocol> {
    /// The node's CPU is free again: serve its queue.
    Wake,
    Start,
    Msg {
        from: NodeId,
        msg: Rc<P::Message>,
        bytes: u32,
    },
    Input(P::Input),
    Timer {
        timer: P::Timer,
        gen: u64,
    },
}

struct Node<P: Protocol> {
    id: NodeId,
    proto: P,
    crypto: Crypto,
    rng: ChaCha8Rng,
    busy_until: Time,
    /// Events that arrived while the node was busy, in arrival order.
    queue: VecDeque<Ev<P>>,
    wake_scheduled: bool,
    timers: BTreeMap<P::Timer, u64>,
    timer_gen: u64,
}

/// The driver. See the module docs.
pub struct Harness<P: Protocol> {
    seed: u64,
    now: Time,
    seq: u64,
    /// Pending events by time; FIFO among equal times (the order of a heap
    /// on `(time, sequence number)`), with better locality than a binary heap
    /// when millions of messages are in flight.
    queue: BTreeMap<Time, VecDeque<u32>>,
    pending: usize,
    slab: Vec<Option<(u32, Ev<P>)>>,
    free: Vec<u32>,
    nodes: Vec<Node<P>>,
    index: Vec<u32>,
    counters: Vec<NodeCounters>,
    latency: Latency,
    service: Option<Service>,
    loss: Option<Loss>,
    net_rng: ChaCha8Rng,
    effects: Vec<Effect<P>>,
    outgoing: Vec<(Vec<Addr>, Rc<P::Message>, u32)>,
    outputs: Vec<P::Output>,
    /// Scratch buffer for measuring encoded sizes.
    buf: Vec<u8>,
    faults: Vec<(Time, NodeId, Fault)>,
    fault_count: u64,
    dropped: u64,
    events: u64,
    peak_pending: usize,
}

/// Faults kept in detail.
pub const FAULT_LOG: usize = 10_000;

impl<P: Protocol> Harness<P> {
    pub fn new(seed: u64) -> Self {
        let mut net_rng = ChaCha8Rng::seed_from_u64(seed);
        net_rng.set_stream(0);
        Harness {
            seed,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            pending: 0,
            slab: Vec::new(),
            free: Vec::new(),
            nodes: Vec::new(),
            index: Vec::new(),
            counters: Vec::new(),
            latency: Box::new(|_, _, _, rng: &mut ChaCha8Rng| rng.gen_range(MICROS..=100 * MICROS)),
            service: None,
            loss: None,
            net_rng,
            effects: Vec::new(),
            outgoing: Vec::new(),
            outputs: Vec::new(),
            buf: Vec::new(),
            faults: Vec::new(),
            fault_count: 0,
            dropped: 0,
            events: 0,
            peak_pending: 0,
        }
    }

    /// One-way delay of a message: `(from, to, bytes on the wire, net RNG)`.
    pub fn set_latency(
        &mut self,
        f: impl FnMut(NodeId, NodeId, usize, &mut ChaCha8Rng) -> Time + 'static,
    ) {
        self.latency = Box::new(f);
    }

    /// Lose messages: `(from, to, send time, net RNG) -> drop?` (counted in
    /// [`Harness::dropped`]). Messages a node sends itself are never lost.
    pub fn set_loss(
        &mut self,
        f: impl FnMut(NodeId, NodeId, Time, &mut ChaCha8Rng) -> bool + 'static,
    ) {
        self.loss = Some(Box::new(f));
    }

    /// Service time of one event from the work it did (default: free).
    pub fn set_service(&mut self, f: impl FnMut(&Work) -> Time + 'static) {
        self.service = Some(Box::new(f));
    }

    /// Add a node; its `on_start` runs at the current time. Its RNG is stream
    /// `index + 1` of the seed.
    pub fn add_node(&mut self, id: NodeId, crypto: Crypto, proto: P) {
        let i = self.nodes.len() as u32;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(i as u64 + 1);
        crypto.take_meter();
        self.nodes.push(Node {
            id,
            proto,
            crypto,
            rng,
            busy_until: self.now,
            queue: VecDeque::new(),
            wake_scheduled: false,
            timers: BTreeMap::new(),
            timer_gen: 0,
        });
        self.counters.push(NodeCounters::default());
        let k = id.0 as usize;
        if self.index.len() <= k {
            self.index.resize(k + 1, u32::MAX);
        }
        self.index[k] = i;
        self.push(self.now, i, Ev::Start);
    }

    pub fn now(&self) -> Time {
        self.now
    }
    pub fn events(&self) -> u64 {
        self.events
    }
    /// Messages sent to a process that is not in the harness.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().map(|n| n.id)
    }
    fn idx(&self, id: NodeId) -> Option<u32> {
        self.index
            .get(id.0 as usize)
            .copied()
            .filter(|i| *i != u32::MAX)
    }
    pub fn node(&self, id: NodeId) -> Option<&P> {
        self.idx(id).map(|i| &self.nodes[i as usize].proto)
    }
    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut P> {
        self.idx(id).map(|i| &mut self.nodes[i as usize].proto)
    }
    pub fn counters(&self, id: NodeId) -> Option<NodeCounters> {
        self.idx(id).map(|i| self.counters[i as usize])
    }
    /// Faults reported by protocols (the first [`FAULT_LOG`]).
    pub fn faults(&self) -> &[(Time, NodeId, Fault)] {
        &self.faults
    }
    pub fn fault_count(&self) -> u64 {
        self.fault_count
    }
    pub fn pending_events(&self) -> usize {
        self.pending
    }
    /// Most events ever scheduled at once (messages in flight, timers, wake-ups).
    pub fn peak_pending(&self) -> usize {
        self.peak_pending
    }

    /// Give `node` an input at `at`.
    pub fn input(&mut self, at: Time, node: NodeId, input: P::Input) {
        match self.idx(node) {
            Some(i) => self.push(at.max(self.now), i, Ev::Input(input)),
            None => self.dropped += 1,
        }
    }

    fn push(&mut self, at: Time, node: u32, ev: Ev<P>) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some((node, ev));
                s
            }
            None => {
                self.slab.push(Some((node, ev)));
                (self.slab.len() - 1) as u32
            }
        };
        self.seq += 1;
        self.queue.entry(at).or_default().push_back(slot);
        self.pending += 1;
        self.peak_pending = self.peak_pending.max(self.pending);
    }

    /// Run events up to `until`, handing outputs to `obs`. Returns `true` if
    /// the observer stopped the run, `false` when the deadline passed or no
    /// events are left.
    pub fn run_until(
        &mut self,
        until: Time,
        mut obs: impl FnMut(Time, NodeId, P::Output, &mut Ctl<P::Input>),
    ) -> bool {
        let mut ctl = Ctl {
            now: self.now,
            inputs: Vec::new(),
            stop: false,
        };
        while let Some(mut first) = self.queue.first_entry() {
            let at = *first.key();
            if at > until {
                break;
            }
            let slot = first.get_mut().pop_front().expect("no empty time buckets");
            if first.get().is_empty() {
                first.remove();
            }
            self.pending -= 1;
            let (node, ev) = self.slab[slot as usize]
                .take()
                .expect("scheduled event present");
            self.free.push(slot);
            self.now = at;
            let n = &mut self.nodes[node as usize];
            let ev = match ev {
                Ev::Wake => {
                    n.wake_scheduled = false;
                    match n.queue.pop_front() {
                        Some(e) => e,
                        None => continue,
                    }
                }
                e if n.busy_until > at || !n.queue.is_empty() => {
                    // the node is still serving an earlier event: queue behind it
                    n.queue.push_back(e);
                    if !n.wake_scheduled {
                        n.wake_scheduled = true;
                        let b = n.busy_until.max(at);
                        self.push(b, node, Ev::Wake);
                    }
                    continue;
                }
                e => e,
            };
            self.serve(node, ev);
            let n = &mut self.nodes[node as usize];
            if !n.queue.is_empty() && !n.wake_scheduled {
                n.wake_scheduled = true;
                let b = n.busy_until.max(at);
                self.push(b, node, Ev::Wake);
            }
            if self.outputs.is_empty() {
                continue;
            }
            let end = self.nodes[node as usize].busy_until.max(self.now);
            let id = self.nodes[node as usize].id;
            ctl.now = end;
            for o in std::mem::take(&mut self.outputs) {
                obs(end, id, o, &mut ctl);
            }
            for (at, n, input) in ctl.inputs.drain(..) {
                self.input(at, n, input);
            }
            if ctl.stop {
                return true;
            }
        }
        // quiescent runs keep the time of their last event
        if self.pending > 0 {
            self.now = self.now.max(until);
        }
        false
    }

    fn serve(&mut self, i: u32, ev: Ev<P>) {
        let now = self.now;
        let mut work = Work::default();
        let mut effects = std::mem::take(&mut self.effects);
        {
            let n = &mut self.nodes[i as usize];
            if let Ev::Timer { timer, gen } = &ev {
                match n.timers.get(timer) {
                    Some(g) if g == gen => {
                        n.timers.remove(timer);
                    }
                    _ => {
                        self.effects = effects;
                        return;
                    }
                }
            }
            let mut cx = Cx::new(now, &mut n.rng, &n.crypto, &mut effects);
            match ev {
                Ev::Wake => {}
                Ev::Start => n.proto.on_start(&mut cx),
                Ev::Input(x) => n.proto.on_input(x, &mut cx),
                Ev::Timer { timer, .. } => n.proto.on_timer(timer, &mut cx),
                Ev::Msg { from, msg, bytes } => {
                    work.recv_bytes = bytes as u64;
                    let c = &mut self.counters[i as usize];
                    c.received += 1;
                    c.bytes_received += (bytes as usize + WIRE_OVERHEAD) as u64;
                    let msg = Rc::try_unwrap(msg).unwrap_or_else(|rc| (*rc).clone());
                    n.proto.on_message(Addr::Node(from), msg, &mut cx);
                }
            }
        }
        self.events += 1;
        let me = self.nodes[i as usize].id;
        for e in effects.drain(..) {
            match e {
                Effect::Send { to, msg } => {
                    self.buf.clear();
                    codec::write_into(&mut self.buf, &msg);
                    let bytes = self.buf.len();
                    work.encoded_bytes += bytes as u64;
                    self.outgoing.push((vec![to], Rc::new(msg), bytes as u32));
                }
                Effect::Multicast { to, msg } => {
                    self.buf.clear();
                    codec::write_into(&mut self.buf, &msg);
                    let bytes = self.buf.len();
                    work.encoded_bytes += bytes as u64;
                    self.outgoing.push((to, Rc::new(msg), bytes as u32));
                }
                Effect::SetTimer { timer, after } => {
                    let n = &mut self.nodes[i as usize];
                    n.timer_gen += 1;
                    let gen = n.timer_gen;
                    n.timers.insert(timer.clone(), gen);
                    self.push(now.saturating_add(after), i, Ev::Timer { timer, gen });
                }
                Effect::CancelTimer { timer } => {
                    self.nodes[i as usize].timers.remove(&timer);
                }
                Effect::Output(o) => self.outputs.push(o),
                Effect::Persist(_) => {}
                Effect::Fault(f) => {
                    self.fault_count += 1;
                    self.counters[i as usize].faults += 1;
                    if self.faults.len() < FAULT_LOG {
                        self.faults.push((now, me, f));
                    }
                }
            }
        }
        self.effects = effects;
        for (to, _, bytes) in &self.outgoing {
            work.sends += to.len() as u64;
            work.sent_bytes += to.len() as u64 * *bytes as u64;
        }
        work.meter = self.nodes[i as usize].crypto.take_meter();
        let cost = match &mut self.service {
            Some(f) => f(&work),
            None => 0,
        };
        let end = now.saturating_add(cost);
        self.nodes[i as usize].busy_until = end;
        let c = &mut self.counters[i as usize];
        c.events += 1;
        c.busy_ns += cost;
        let mut outgoing = std::mem::take(&mut self.outgoing);
        for (to, msg, bytes) in outgoing.drain(..) {
            for a in to {
                let Some(dst) = a.node() else {
                    self.dropped += 1;
                    continue;
                };
                let c = &mut self.counters[i as usize];
                c.sent += 1;
                c.bytes_sent += (bytes as usize + WIRE_OVERHEAD) as u64;
                let Some(j) = self.idx(dst) else {
                    self.dropped += 1;
                    continue;
                };
                if dst != me {
                    if let Some(loss) = &mut self.loss {
                        if loss(me, dst, end, &mut self.net_rng) {
                            self.dropped += 1;
                            continue;
                        }
                    }
                }
                let delay = if dst == me {
                    0
                } else {
                    (self.latency)(me, dst, bytes as usize + WIRE_OVERHEAD, &mut self.net_rng)
                };
                self.push(
                    end.saturating_add(delay),
                    j,
                    Ev::Msg {
                        from: me,
                        msg: msg.clone(),
                        bytes,
                    },
                );
            }
        }
        self.outgoing = outgoing;
    }
}
