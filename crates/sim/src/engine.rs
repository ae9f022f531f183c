//! The deterministic discrete-event engine.
//!
//! # Model
//!
//! A [`Sim`] holds *nodes*. A node is an endpoint address ([`Addr`]), its
//! [`Crypto`], an [`Actor`] (any [`Protocol`] through [`ProtocolActor`], possibly
//! wrapped by an adversary from [`crate::adversary`]), a region of the
//! [`NetModel`], a per-node seeded RNG and a Byzantine flag. Several nodes may
//! share one address (Twins, [`Sim::add_twins`]): each receives every message sent
//! to the address, with its own network delay.
//!
//! Time is virtual, in nanoseconds. Events are served in `(time, sequence
//! number)` order, so ties break in scheduling order and a run is a pure
//! function of its seed: one thread, one ChaCha8 RNG for the network (stream 0)
//! and one per node (stream `index + 1`) lent to the actor through [`ActorCx`],
//! and no hash-map iteration anywhere. The queue is a B-tree of time buckets,
//! each a FIFO of the events scheduled for that instant (the same order as a
//! heap on `(time, sequence number)`): with millions of messages in flight it
//! orders events several times faster than a binary heap, whose every
//! operation then misses the cache. [`Stats::peak_pending`] records the most
//! events ever scheduled at once.
//!
//! Each node serves one event at a time ([`crate::cpu`]): an event arriving at
//! `t` starts at `max(t, busy_until)`, the actor sees `now` = the start time, and
//! its messages leave when the event's service time has elapsed. Outputs reach
//! the [`Observer`] stamped with that end time.
//!
//! # Channels
//!
//! Every message between different addresses is authenticated like the real
//! transport does: the sender's effect is encoded once with
//! [`codec::to_bytes`] (which also gives its size on the wire), tagged per
//! destination with the *sender's* pairwise HMAC key, and checked on delivery
//! with the *receiver's* key. A failing tag (a forged sender from
//! [`ActorCx::send_spoofed`], or a peer without keys) drops the message and is
//! counted in [`Stats::dropped_mac`] with the first few cases in
//! [`Stats::mac_failures`]. The receiver gets a clone of the typed value (no
//! decoding). Messages to the node's own address skip the MAC and the network.
//!
//! **Modeled channels** ([`Sim::set_channels`] with [`Channels::Modeled`]) are
//! for scale runs with modeled crypto, and every report that uses them says so.
//! The channel MACs are charged in the CPU model exactly as above (one MAC and
//! its bytes per copy sent and per message received, [`Work::modeled_macs`])
//! but not computed, so no pairwise key is ever derived or kept, and the
//! encoded bytes are dropped once measured. What a failing tag would catch is
//! still caught: a copy whose claimed sender is not its real sender (a spoofed
//! message), or whose receiver does not know the claimed sender, is dropped and
//! counted as a MAC failure; a sender without the receiver's key drops it as
//! [`Stats::dropped_no_key`].
//!
//! # Timers
//!
//! Actors name timers with `u64` keys. Setting an armed key re-arms it,
//! cancelling removes it; a stale queue entry is ignored. Re-arming to a later
//! deadline does not push a new queue entry (the old one is pushed forward when
//! it pops), so a timer re-armed on every message costs no queue growth.
//! [`ProtocolActor`] maps `Protocol::Timer` names to keys below
//! [`ADVERSARY_TIMER_BASE`]; keys at or above it belong to adversary wrappers.
//!
//! # Faults
//!
//! [`Sim::crash`] stops a node: its queued work and timers are dropped and
//! messages reaching it are lost. [`Sim::restart`] installs a fresh actor with
//! the same keys and calls its `start`. Messages already in flight are still
//! delivered after a restart, as over a real network.
//!
//! A node with a disk ([`crate::storage`]: its `ProtocolActor` keeps its
//! `Effect::Persist` records and holds the sends that follow them until they
//! are synced) has a [`Recovery`] ([`Sim::set_recovery`]): every crash of the
//! node tells its disk (unsynced records are lost or torn), and
//! [`Sim::recover`] (or [`Control::recover_at`]) restarts it with the actor
//! its recovery builds from what the disk kept.

use crate::cpu::{CpuModel, Work};
use crate::net_model::{serialization_time, NetModel, Partition};
use crate::storage::{Journal, Recovery, Storage, SYNC_TIMER};
use byzscale_core::codec;
use byzscale_core::crypto::{Crypto, Mac};
use byzscale_core::protocol::{Cx, Effect, Fault, Protocol, Time};
use byzscale_core::Addr;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

#[cfg(test)]
mod tests;

/// Index of a node in a [`Sim`] (dense, in order of [`Sim::add_node`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NodeIdx(pub u32);

impl NodeIdx {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Timer keys at or above this value are reserved for adversary wrappers.
pub const ADVERSARY_TIMER_BASE: u64 = 1 << 63;

/// Bytes a message occupies on the wire beyond its encoding: the frame header
/// and the HMAC tag.
pub const WIRE_OVERHEAD: usize = codec::HEADER_LEN + 32;

/// How the simulator authenticates messages between nodes (see the module
/// docs, "Channels").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Channels {
    /// Pairwise HMAC tags, computed and checked (the default).
    #[default]
    Authenticated,
    /// Tags charged in the CPU model but not computed; spoofed senders are
    /// still rejected. For scale runs with modeled crypto only, labelled.
    Modeled,
}

/// What an actor asks of the simulator.
#[derive(Debug)]
pub enum ActorEffect<M, O> {
    Send {
        to: Addr,
        msg: M,
    },
    Multicast {
        to: Vec<Addr>,
        msg: M,
    },
    /// A message claiming to come from `claimed_from`, authenticated with the
    /// real sender's keys (so correct receivers reject it).
    Spoofed {
        claimed_from: Addr,
        to: Addr,
        msg: M,
    },
    SetTimer {
        key: u64,
        after: Time,
    },
    CancelTimer {
        key: u64,
    },
    Output(O),
    Fault(Fault),
}

/// Per-incarnation knobs an actor (an adversary wrapper) may turn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knobs {
    /// Multiplies the node's CPU cost (on top of [`Sim::set_cpu_factor`]).
    pub cpu_factor: f64,
    /// Extra delay before every outgoing message leaves the node.
    pub send_delay: Time,
    /// CPU time charged by the actor for the current event on top of the
    /// cost model ([`ActorCx::charge`]); taken when the event finishes.
    pub charged: Time,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            cpu_factor: 1.0,
            send_delay: 0,
            charged: 0,
        }
    }
}

/// The context of one actor step.
pub struct ActorCx<'a, M, O> {
    now: Time,
    me: Addr,
    node: NodeIdx,
    rng: &'a mut ChaCha8Rng,
    crypto: &'a Crypto,
    knobs: &'a mut Knobs,
    effects: &'a mut Vec<ActorEffect<M, O>>,
}

impl<'a, M, O> ActorCx<'a, M, O> {
    /// The simulator builds these; public so actors can be unit-tested alone.
    pub fn new(
        now: Time,
        me: Addr,
        node: NodeIdx,
        rng: &'a mut ChaCha8Rng,
        crypto: &'a Crypto,
        knobs: &'a mut Knobs,
        effects: &'a mut Vec<ActorEffect<M, O>>,
    ) -> Self {
        ActorCx {
            now,
            me,
            node,
            rng,
            crypto,
            knobs,
            effects,
        }
    }
    pub fn now(&self) -> Time {
        self.now
    }
    pub fn me(&self) -> Addr {
        self.me
    }
    pub fn node(&self) -> NodeIdx {
        self.node
    }
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.rng
    }
    pub fn crypto(&self) -> &'a Crypto {
        self.crypto
    }
    pub fn send(&mut self, to: Addr, msg: M) {
        self.effects.push(ActorEffect::Send { to, msg });
    }
    pub fn multicast(&mut self, to: Vec<Addr>, msg: M) {
        if !to.is_empty() {
            self.effects.push(ActorEffect::Multicast { to, msg });
        }
    }
    /// Send `msg` to `to` claiming it comes from `claimed_from`. The tag is
    /// computed with this node's own key for `to`, so a correct receiver, which
    /// checks it with its key for `claimed_from`, rejects it.
    pub fn send_spoofed(&mut self, claimed_from: Addr, to: Addr, msg: M) {
        self.effects.push(ActorEffect::Spoofed {
            claimed_from,
            to,
            msg,
        });
    }
    pub fn set_timer(&mut self, key: u64, after: Time) {
        self.effects.push(ActorEffect::SetTimer { key, after });
    }
    pub fn cancel_timer(&mut self, key: u64) {
        self.effects.push(ActorEffect::CancelTimer { key });
    }
    pub fn output(&mut self, o: O) {
        self.effects.push(ActorEffect::Output(o));
    }
    pub fn fault(&mut self, f: Fault) {
        self.effects.push(ActorEffect::Fault(f));
    }
    pub fn knobs(&self) -> Knobs {
        *self.knobs
    }
    /// Charge `ns` of CPU time to this event, on top of what the cost model
    /// counts (work the model cannot see, e.g. a protocol's threshold
    /// signatures, whose cost a scenario knows); scaled like the rest by the
    /// node's CPU factor, and charged only if the model is not free.
    pub fn charge(&mut self, ns: Time) {
        self.knobs.charged = self.knobs.charged.saturating_add(ns);
    }
    pub fn knobs_mut(&mut self) -> &mut Knobs {
        self.knobs
    }
    /// The effects pushed so far in this step (wrappers rewrite the tail that
    /// their inner actor produced).
    pub fn effects_mut(&mut self) -> &mut Vec<ActorEffect<M, O>> {
        self.effects
    }
    pub fn effects_len(&self) -> usize {
        self.effects.len()
    }
}

/// An object-safe state machine driven by the simulator. Different protocol
/// types sharing a message type `M` (replicas and clients) live in one [`Sim`].
pub trait Actor<M, I, O> {
    fn start(&mut self, cx: &mut ActorCx<'_, M, O>);
    fn input(&mut self, input: I, cx: &mut ActorCx<'_, M, O>);
    /// `from` has been authenticated by the channel.
    fn message(&mut self, from: Addr, msg: M, cx: &mut ActorCx<'_, M, O>);
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, M, O>);
    /// The state for inspection by checkers: a [`ProtocolActor`] returns itself,
    /// wrappers forward to the wrapped actor.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        None
    }
}

/// A boxed actor.
pub type BoxActor<M, I, O> = Box<dyn Actor<M, I, O>>;

impl<M, I, O> Actor<M, I, O> for Box<dyn Actor<M, I, O>> {
    fn start(&mut self, cx: &mut ActorCx<'_, M, O>) {
        (**self).start(cx)
    }
    fn input(&mut self, input: I, cx: &mut ActorCx<'_, M, O>) {
        (**self).input(input, cx)
    }
    fn message(&mut self, from: Addr, msg: M, cx: &mut ActorCx<'_, M, O>) {
        (**self).message(from, msg, cx)
    }
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, M, O>) {
        (**self).timer(key, cx)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        (**self).as_any()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        (**self).as_any_mut()
    }
}

/// The inputs (or outputs) of a simulation whose nodes are clients and
/// replicas: each node takes the inputs of its role and ignores the others
/// ([`ProtocolActor::client`], [`ProtocolActor::replica`]).
#[derive(Debug)]
pub enum Role<C, R> {
    Client(C),
    Replica(R),
}

/// A client's actor among replicas taking `RI` and giving `RO`.
pub type ClientActor<P, RI, RO> =
    ProtocolActor<P, Role<<P as Protocol>::Input, RI>, Role<<P as Protocol>::Output, RO>>;
/// A replica's actor among clients taking `CI` and giving `CO`.
pub type ReplicaActor<P, CI, CO> =
    ProtocolActor<P, Role<CI, <P as Protocol>::Input>, Role<CO, <P as Protocol>::Output>>;

type MapIn<I, PI> = Box<dyn FnMut(I) -> Option<PI>>;
type MapOut<PO, O> = Box<dyn FnMut(PO) -> O>;

/// Adapts any [`Protocol`] to an [`Actor`]: simulator inputs `I` map to
/// `Option<P::Input>` (`None` ignores the input), protocol outputs map to `O`,
/// and timer names map to `u64` keys (re-arm and cancel semantics kept).
pub struct ProtocolActor<P: Protocol, I = <P as Protocol>::Input, O = <P as Protocol>::Output> {
    inner: P,
    map_in: MapIn<I, P::Input>,
    map_out: MapOut<P::Output, O>,
    by_name: BTreeMap<P::Timer, u64>,
    by_key: BTreeMap<u64, P::Timer>,
    next_key: u64,
    buf: Vec<Effect<P>>,
    /// The disk and the sends waiting for it; without one, records are
    /// dropped and nothing waits.
    journal: Option<Journal<P::Record, P::Message, O>>,
}

impl<P: Protocol> ProtocolActor<P, P::Input, P::Output>
where
    P::Input: 'static,
    P::Output: 'static,
{
    /// Inputs and outputs pass through unchanged.
    pub fn new(inner: P) -> Self {
        Self::with_maps(inner, Some, |o| o)
    }
}

impl<P: Protocol> ProtocolActor<P>
where
    P::Input: 'static,
    P::Output: 'static,
{
    /// `inner` as a client among replicas taking `RI` and giving `RO`.
    pub fn client<RI: 'static, RO: 'static>(inner: P) -> ClientActor<P, RI, RO> {
        let map_in = |i| match i {
            Role::Client(x) => Some(x),
            Role::Replica(_) => None,
        };
        ProtocolActor::with_maps(inner, map_in, Role::Client)
    }

    /// `inner` as a replica among clients taking `CI` and giving `CO`.
    pub fn replica<CI: 'static, CO: 'static>(inner: P) -> ReplicaActor<P, CI, CO> {
        let map_in = |i| match i {
            Role::Replica(x) => Some(x),
            Role::Client(_) => None,
        };
        ProtocolActor::with_maps(inner, map_in, Role::Replica)
    }
}

impl<P: Protocol, I, O> ProtocolActor<P, I, O> {
    pub fn with_maps(
        inner: P,
        map_in: impl FnMut(I) -> Option<P::Input> + 'static,
        map_out: impl FnMut(P::Output) -> O + 'static,
    ) -> Self {
        ProtocolActor {
            inner,
            map_in: Box::new(map_in),
            map_out: Box::new(map_out),
            by_name: BTreeMap::new(),
            by_key: BTreeMap::new(),
            next_key: 0,
            buf: Vec::new(),
            journal: None,
        }
    }
    /// Keep the protocol's records on `disk` and hold each send that follows
    /// a record in its step until the record is synced ([`crate::storage`]).
    pub fn with_disk(mut self, disk: Rc<RefCell<dyn Storage<P::Record>>>) -> Self {
        self.journal = Some(Journal::new(disk));
        self
    }
    /// Sends and outputs waiting for their records to be synced.
    pub fn held(&self) -> usize {
        self.journal.as_ref().map_or(0, Journal::held)
    }
    pub fn inner(&self) -> &P {
        &self.inner
    }
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }
    pub fn into_inner(self) -> P {
        self.inner
    }
    /// Timer names currently armed.
    pub fn armed_timers(&self) -> impl Iterator<Item = &P::Timer> {
        self.by_name.keys()
    }

    fn step(
        &mut self,
        cx: &mut ActorCx<'_, P::Message, O>,
        f: impl FnOnce(&mut P, &mut Cx<'_, P>),
    ) {
        let mut buf = std::mem::take(&mut self.buf);
        {
            let mut pcx = Cx::new(cx.now, &mut *cx.rng, cx.crypto, &mut buf);
            f(&mut self.inner, &mut pcx);
        }
        if let Some(j) = &mut self.journal {
            j.begin_step();
        }
        for e in buf.drain(..) {
            match e {
                Effect::Send { to, msg } => match &mut self.journal {
                    Some(j) => j.send(cx, to, msg),
                    None => cx.send(to, msg),
                },
                Effect::Multicast { to, msg } => match &mut self.journal {
                    Some(j) => j.multicast(cx, to, msg),
                    None => cx.multicast(to, msg),
                },
                Effect::SetTimer { timer, after } => {
                    let key = match self.by_name.get(&timer) {
                        Some(k) => *k,
                        None => {
                            let k = self.next_key;
                            self.next_key += 1;
                            self.by_key.insert(k, timer.clone());
                            self.by_name.insert(timer, k);
                            k
                        }
                    };
                    cx.set_timer(key, after);
                }
                Effect::CancelTimer { timer } => {
                    if let Some(k) = self.by_name.remove(&timer) {
                        self.by_key.remove(&k);
                        cx.cancel_timer(k);
                    }
                }
                Effect::Output(o) => {
                    let o = (self.map_out)(o);
                    match &mut self.journal {
                        Some(j) => j.output(cx, o),
                        None => cx.output(o),
                    }
                }
                Effect::Fault(f) => cx.fault(f),
                Effect::Persist(r) => {
                    if let Some(j) = &mut self.journal {
                        j.persist(r);
                    }
                }
                Effect::Barrier => {
                    if let Some(j) = &mut self.journal {
                        j.barrier();
                    }
                }
            }
        }
        if let Some(j) = &mut self.journal {
            j.end_step(cx);
        }
        self.buf = buf;
    }
}

impl<P, I, O> Actor<P::Message, I, O> for ProtocolActor<P, I, O>
where
    P: Protocol + 'static,
    I: 'static,
    O: 'static,
{
    fn start(&mut self, cx: &mut ActorCx<'_, P::Message, O>) {
        self.step(cx, |p, c| p.on_start(c));
    }
    fn input(&mut self, input: I, cx: &mut ActorCx<'_, P::Message, O>) {
        if let Some(i) = (self.map_in)(input) {
            self.step(cx, |p, c| p.on_input(i, c));
        }
    }
    fn message(&mut self, from: Addr, msg: P::Message, cx: &mut ActorCx<'_, P::Message, O>) {
        self.step(cx, |p, c| p.on_message(from, msg, c));
    }
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, P::Message, O>) {
        if key == SYNC_TIMER {
            if let Some(j) = &mut self.journal {
                j.on_sync(cx);
            }
        } else if let Some(name) = self.by_key.remove(&key) {
            self.by_name.remove(&name);
            self.step(cx, |p, c| p.on_timer(name, c));
        }
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }
}

/// What the observer may do in reaction to an output.
pub struct Control<I> {
    now: Time,
    inputs: Vec<(Time, NodeIdx, I)>,
    crashes: Vec<(Time, NodeIdx)>,
    recoveries: Vec<(Time, NodeIdx)>,
    stop: bool,
}

impl<I> Control<I> {
    fn new() -> Self {
        Control {
            now: 0,
            inputs: Vec::new(),
            crashes: Vec::new(),
            recoveries: Vec::new(),
            stop: false,
        }
    }
    /// A control at `now` outside any run, to test an observer alone.
    pub fn at(now: Time) -> Self {
        Control { now, ..Self::new() }
    }
    /// The crashes asked for so far: (time, node) each.
    pub fn crashes(&self) -> &[(Time, NodeIdx)] {
        &self.crashes
    }
    /// The restarts from disk asked for so far: (time, node) each.
    pub fn recoveries(&self) -> &[(Time, NodeIdx)] {
        &self.recoveries
    }
    /// The time of the output being observed.
    pub fn now(&self) -> Time {
        self.now
    }
    /// Give `node` an input now.
    pub fn input(&mut self, node: NodeIdx, input: I) {
        self.inputs.push((self.now, node, input));
    }
    /// Give `node` an input at `at` (not before now).
    pub fn input_at(&mut self, at: Time, node: NodeIdx, input: I) {
        self.inputs.push((at.max(self.now), node, input));
    }
    pub fn crash_at(&mut self, at: Time, node: NodeIdx) {
        self.crashes.push((at.max(self.now), node));
    }
    /// Restart `node` from its disk at `at` ([`Sim::recover`]).
    pub fn recover_at(&mut self, at: Time, node: NodeIdx) {
        self.recoveries.push((at.max(self.now), node));
    }
    /// Stop [`Sim::run_until`] after the current event.
    pub fn stop(&mut self) {
        self.stop = true;
    }
    pub fn stop_requested(&self) -> bool {
        self.stop
    }
}

/// Receives the outputs (and faults, and restarts) of a run.
pub trait Observer<I, O> {
    fn on_output(&mut self, at: Time, node: NodeIdx, addr: Addr, out: O, ctl: &mut Control<I>);
    fn on_fault(&mut self, _at: Time, _node: NodeIdx, _fault: &Fault, _ctl: &mut Control<I>) {}
    /// `node` restarted ([`Sim::restart`], [`Sim::recover`]), before its new
    /// actor's `start`.
    fn on_restart(&mut self, _at: Time, _node: NodeIdx, _ctl: &mut Control<I>) {}
}

/// Ignores everything.
impl<I, O> Observer<I, O> for () {
    fn on_output(&mut self, _: Time, _: NodeIdx, _: Addr, _: O, _: &mut Control<I>) {}
}

/// A closure observes outputs.
impl<I, O, F> Observer<I, O> for F
where
    F: FnMut(Time, NodeIdx, Addr, O, &mut Control<I>),
{
    fn on_output(&mut self, at: Time, node: NodeIdx, addr: Addr, out: O, ctl: &mut Control<I>) {
        self(at, node, addr, out, ctl)
    }
}

/// Why [`Sim::run_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// The deadline was reached (the clock now reads the deadline).
    Reached,
    /// The observer asked to stop.
    Stopped,
}

/// A rejected channel tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MacFailure {
    pub at: Time,
    pub node: NodeIdx,
    pub to: Addr,
    pub claimed_from: Addr,
}

/// A fault reported by a protocol ([`Effect::Fault`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultRecord {
    pub at: Time,
    /// The node that reported it.
    pub node: NodeIdx,
    pub reporter: Addr,
    /// The accused endpoint.
    pub culprit: Addr,
    pub kind: String,
    pub detail: String,
}

/// Counters of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    pub events: u64,
    pub sent: u64,
    pub bytes_sent: u64,
    pub received: u64,
    pub bytes_received: u64,
    pub mac_failures: u64,
    pub faults_reported: u64,
    /// Virtual time spent serving events.
    pub busy_ns: u64,
}

/// How many [`MacFailure`]s are kept in detail.
pub const MAC_FAILURE_SAMPLES: usize = 16;
/// How many [`FaultRecord`]s are kept in detail.
pub const FAULT_LOG_LIMIT: usize = 10_000;

/// Counters of a run. Equal seeds give equal stats, including `trace_hash`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Virtual time of the last event (or deadline reached).
    pub now: Time,
    /// Events served by nodes (starts, inputs, deliveries, timers).
    pub events: u64,
    pub inputs: u64,
    pub timers_fired: u64,
    /// Copies handed to the network (one per destination node).
    pub sent: u64,
    pub bytes_sent: u64,
    pub delivered: u64,
    pub bytes_delivered: u64,
    /// Extra copies made by the duplication fault.
    pub duplicated: u64,
    pub dropped_loss: u64,
    pub dropped_partition: u64,
    /// Reached (or queued at) a crashed node.
    pub dropped_down: u64,
    /// Sent to an address no node has.
    pub dropped_unknown_addr: u64,
    /// The sender has no key for the destination.
    pub dropped_no_key: u64,
    /// The channel tag did not verify.
    pub dropped_mac: u64,
    pub inputs_dropped: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub mac_failures: Vec<MacFailure>,
    pub faults: u64,
    pub fault_log: Vec<FaultRecord>,
    pub per_node: Vec<NodeStats>,
    /// Most events scheduled at once (messages in flight, timers, wake-ups).
    pub peak_pending: u64,
    /// A running hash of every served event (time, node, kind, sender, size).
    pub trace_hash: u64,
}

impl Stats {
    pub fn dropped(&self) -> u64 {
        self.dropped_loss
            + self.dropped_partition
            + self.dropped_down
            + self.dropped_unknown_addr
            + self.dropped_no_key
            + self.dropped_mac
    }
}

/// One served event, recorded when tracing is on ([`Sim::set_trace`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceEntry {
    pub at: Time,
    pub node: NodeIdx,
    pub kind: TraceKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum TraceKind {
    Start,
    Input,
    Deliver { from: Addr, bytes: u32 },
    MacFailure { from: Addr },
    Timer { key: u64 },
    Crash,
    Restart,
}

struct Wire<M> {
    msg: M,
    /// The encoding (empty with [`Channels::Modeled`], where nothing checks it).
    bytes: Vec<u8>,
    /// Encoded length.
    len: u32,
}

/// A copy's channel tag.
#[derive(Clone, Copy)]
enum Tag {
    /// To the node's own address: no MAC, no network.
    Loopback,
    Mac(Mac),
    /// [`Channels::Modeled`]: whether a real tag would verify as far as the
    /// sender can tell (the claimed sender is the real one).
    Modeled {
        genuine: bool,
    },
}

enum Job<M, I> {
    Start {
        inc: u64,
    },
    Input(I),
    Deliver {
        from: Addr,
        wire: Rc<Wire<M>>,
        tag: Tag,
    },
    Timer {
        key: u64,
        gen: u64,
    },
}

enum Event<M, I, O> {
    Job {
        node: NodeIdx,
        job: Job<M, I>,
    },
    Wake {
        node: NodeIdx,
        inc: u64,
    },
    Crash {
        node: NodeIdx,
    },
    Restart {
        node: NodeIdx,
        actor: BoxActor<M, I, O>,
    },
    /// Restart from the node's disk.
    Recover {
        node: NodeIdx,
    },
}

struct TimerSlot {
    deadline: Time,
    gen: u64,
}

#[derive(Default, Clone, Copy)]
struct Link {
    free_at: Time,
    last_arrival: Time,
}

struct Node<M, I, O> {
    addr: Addr,
    region: usize,
    byzantine: bool,
    crypto: Crypto,
    actor: BoxActor<M, I, O>,
    rng: ChaCha8Rng,
    knobs: Knobs,
    cpu_factor: f64,
    up: bool,
    inc: u64,
    busy_until: Time,
    queue: VecDeque<Job<M, I>>,
    wake_scheduled: bool,
    timers: BTreeMap<u64, TimerSlot>,
    timer_gen: u64,
    links: BTreeMap<u32, Link>,
    recovery: Option<Box<dyn Recovery<M, I, O>>>,
}

struct Outgoing<M> {
    from: Addr,
    to: Addr,
    wire: Rc<Wire<M>>,
    tag: Tag,
}

fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0100_0000_01b3).rotate_left(23) ^ (x >> 17)
}

fn addr_word(a: Addr) -> u64 {
    match a {
        Addr::Node(n) => n.0 as u64,
        Addr::Client(c) => c.0 ^ (1 << 62),
    }
}

/// The simulator. `M` is the wire message type, `I` the input type and `O` the
/// output type shared by all actors.
pub struct Sim<M, I, O> {
    seed: u64,
    now: Time,
    /// Pending events: slab slots by time, FIFO among equal times.
    queue: BTreeMap<Time, VecDeque<u32>>,
    /// Emptied buckets, reused so that a new instant costs no allocation.
    spare: Vec<VecDeque<u32>>,
    pending: usize,
    slab: Vec<Option<Event<M, I, O>>>,
    free: Vec<u32>,
    nodes: Vec<Node<M, I, O>>,
    by_addr: BTreeMap<Addr, Vec<NodeIdx>>,
    net: NetModel,
    cpu: CpuModel,
    channels: Channels,
    net_rng: ChaCha8Rng,
    /// When each shared region link (from, to) is free again.
    region_free: BTreeMap<(usize, usize), Time>,
    stats: Stats,
    trace: Option<Vec<TraceEntry>>,
    // scratch buffers reused across events
    effects: Vec<ActorEffect<M, O>>,
    outbox: Vec<Outgoing<M>>,
    outputs: Vec<O>,
    faults: Vec<Fault>,
    dests: Vec<NodeIdx>,
    tags: Vec<(Addr, Tag)>,
    control: Control<I>,
}

impl<M, I, O> Sim<M, I, O>
where
    M: Clone + Serialize + 'static,
    I: 'static,
    O: 'static,
{
    /// An empty simulation. `net` should be valid ([`NetModel::validate`]).
    pub fn new(seed: u64, net: NetModel, cpu: CpuModel) -> Self {
        let mut net_rng = ChaCha8Rng::seed_from_u64(seed);
        net_rng.set_stream(0);
        Sim {
            seed,
            now: 0,
            queue: BTreeMap::new(),
            spare: Vec::new(),
            pending: 0,
            slab: Vec::new(),
            free: Vec::new(),
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            net,
            cpu,
            channels: Channels::default(),
            net_rng,
            region_free: BTreeMap::new(),
            stats: Stats::default(),
            trace: None,
            effects: Vec::new(),
            outbox: Vec::new(),
            outputs: Vec::new(),
            faults: Vec::new(),
            dests: Vec::new(),
            tags: Vec::new(),
            control: Control::new(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn now(&self) -> Time {
        self.now
    }
    pub fn net(&self) -> &NetModel {
        &self.net
    }
    /// Edit the network (e.g. add partitions) between runs.
    pub fn net_mut(&mut self) -> &mut NetModel {
        &mut self.net
    }
    pub fn add_partition(&mut self, p: Partition) {
        self.net.partitions.push(p);
    }
    pub fn cpu(&self) -> &CpuModel {
        &self.cpu
    }
    /// Choose how messages are authenticated (before the run; see the module
    /// docs). [`Channels::Modeled`] is for scale runs with modeled crypto.
    pub fn set_channels(&mut self, channels: Channels) {
        self.channels = channels;
    }
    pub fn channels(&self) -> Channels {
        self.channels
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Record every served event (for tests and debugging; costs memory).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = if on { Some(Vec::new()) } else { None };
    }
    pub fn trace(&self) -> &[TraceEntry] {
        self.trace.as_deref().unwrap_or(&[])
    }
    /// Events still scheduled.
    pub fn pending_events(&self) -> usize {
        self.pending
    }

    /// Add a node in region `region` (an index into `net().regions`); its actor's
    /// `start` runs at the current time. Panics if the region does not exist.
    pub fn add_node(
        &mut self,
        addr: Addr,
        crypto: Crypto,
        actor: impl Actor<M, I, O> + 'static,
        region: usize,
    ) -> NodeIdx {
        assert!(
            region < self.net.regions.len(),
            "region {region} does not exist (the network has {} regions)",
            self.net.regions.len()
        );
        let idx = NodeIdx(self.nodes.len() as u32);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(idx.0 as u64 + 1);
        crypto.take_meter();
        self.nodes.push(Node {
            addr,
            region,
            byzantine: false,
            crypto,
            actor: Box::new(actor),
            rng,
            knobs: Knobs::default(),
            cpu_factor: 1.0,
            up: true,
            inc: 0,
            busy_until: self.now,
            queue: VecDeque::new(),
            wake_scheduled: false,
            timers: BTreeMap::new(),
            timer_gen: 0,
            links: BTreeMap::new(),
            recovery: None,
        });
        self.by_addr.entry(addr).or_default().push(idx);
        self.stats.per_node.push(NodeStats::default());
        self.push(
            self.now,
            Event::Job {
                node: idx,
                job: Job::Start { inc: 0 },
            },
        );
        idx
    }

    /// Twins: two actors with the same address and keys (each needs its own
    /// `Crypto` object built from the same identity). Both receive every message
    /// sent to `addr`; both are flagged Byzantine.
    pub fn add_twins(
        &mut self,
        addr: Addr,
        crypto_a: Crypto,
        actor_a: impl Actor<M, I, O> + 'static,
        crypto_b: Crypto,
        actor_b: impl Actor<M, I, O> + 'static,
        region: usize,
    ) -> (NodeIdx, NodeIdx) {
        let a = self.add_node(addr, crypto_a, actor_a, region);
        let b = self.add_node(addr, crypto_b, actor_b, region);
        self.set_byzantine(a, true);
        self.set_byzantine(b, true);
        (a, b)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
    pub fn nodes(&self) -> impl Iterator<Item = NodeIdx> {
        (0..self.nodes.len() as u32).map(NodeIdx)
    }
    pub fn addr(&self, node: NodeIdx) -> Addr {
        self.nodes[node.index()].addr
    }
    pub fn region(&self, node: NodeIdx) -> usize {
        self.nodes[node.index()].region
    }
    /// The nodes at an address (more than one for Twins).
    pub fn nodes_at(&self, addr: Addr) -> &[NodeIdx] {
        self.by_addr.get(&addr).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn is_up(&self, node: NodeIdx) -> bool {
        self.nodes[node.index()].up
    }
    pub fn set_byzantine(&mut self, node: NodeIdx, byz: bool) {
        self.nodes[node.index()].byzantine = byz;
    }
    pub fn is_byzantine(&self, node: NodeIdx) -> bool {
        self.nodes[node.index()].byzantine
    }
    /// Slow down (factor > 1) or speed up a node's CPU; survives restarts.
    pub fn set_cpu_factor(&mut self, node: NodeIdx, factor: f64) {
        self.nodes[node.index()].cpu_factor = factor;
    }
    pub fn crypto(&self, node: NodeIdx) -> &Crypto {
        &self.nodes[node.index()].crypto
    }
    pub fn actor(&self, node: NodeIdx) -> &dyn Actor<M, I, O> {
        &*self.nodes[node.index()].actor
    }
    pub fn actor_mut(&mut self, node: NodeIdx) -> &mut dyn Actor<M, I, O> {
        &mut *self.nodes[node.index()].actor
    }
    /// The protocol state of a node whose (innermost) actor is a
    /// `ProtocolActor<P, I, O>`.
    pub fn protocol<P: Protocol<Message = M> + 'static>(&self, node: NodeIdx) -> Option<&P> {
        self.actor(node)
            .as_any()?
            .downcast_ref::<ProtocolActor<P, I, O>>()
            .map(ProtocolActor::inner)
    }
    pub fn protocol_mut<P: Protocol<Message = M> + 'static>(
        &mut self,
        node: NodeIdx,
    ) -> Option<&mut P> {
        self.actor_mut(node)
            .as_any_mut()?
            .downcast_mut::<ProtocolActor<P, I, O>>()
            .map(ProtocolActor::inner_mut)
    }

    /// Give `node` an input at `at` (not before now).
    pub fn schedule_input(&mut self, at: Time, node: NodeIdx, input: I) {
        self.push(
            at.max(self.now),
            Event::Job {
                node,
                job: Job::Input(input),
            },
        );
    }
    /// Crash `node` at `at`.
    pub fn crash(&mut self, at: Time, node: NodeIdx) {
        self.push(at.max(self.now), Event::Crash { node });
    }
    /// Restart `node` at `at` with a fresh actor (same address and keys). A node
    /// that is still up is crashed first.
    pub fn restart(&mut self, at: Time, node: NodeIdx, actor: impl Actor<M, I, O> + 'static) {
        self.push(
            at.max(self.now),
            Event::Restart {
                node,
                actor: Box::new(actor),
            },
        );
    }

    /// Give `node` a disk's recovery (see the module docs, "Faults"): every
    /// crash of the node reaches its disk, and [`Sim::recover`] restarts it
    /// from what the disk kept.
    pub fn set_recovery(&mut self, node: NodeIdx, recovery: impl Recovery<M, I, O> + 'static) {
        self.nodes[node.index()].recovery = Some(Box::new(recovery));
    }

    /// Whether `node` can be restarted from a disk.
    pub fn has_recovery(&self, node: NodeIdx) -> bool {
        self.nodes[node.index()].recovery.is_some()
    }

    /// Restart `node` at `at` with the actor its recovery builds from its
    /// disk ([`Sim::set_recovery`]); a node that is still up is crashed
    /// first. A node without a recovery is left alone.
    pub fn recover(&mut self, at: Time, node: NodeIdx) {
        self.push(at.max(self.now), Event::Recover { node });
    }

    /// Run all events up to and including `until`, or until the observer stops
    /// the run.
    pub fn run_until(&mut self, until: Time, obs: &mut impl Observer<I, O>) -> RunStatus {
        while let Some(mut first) = self.queue.first_entry() {
            let at = *first.key();
            if at > until {
                break;
            }
            let slot = first.get_mut().pop_front().expect("no empty time buckets");
            if first.get().is_empty() {
                self.spare.push(first.remove());
            }
            self.pending -= 1;
            let ev = self.slab[slot as usize]
                .take()
                .expect("scheduled event present");
            self.free.push(slot);
            self.now = at;
            self.stats.now = at;
            self.handle(ev, obs);
            if self.control.stop {
                self.control.stop = false;
                return RunStatus::Stopped;
            }
        }
        self.now = self.now.max(until);
        self.stats.now = self.now;
        RunStatus::Reached
    }

    /// Run for `d` nanoseconds of virtual time.
    pub fn run_for(&mut self, d: Time, obs: &mut impl Observer<I, O>) -> RunStatus {
        let until = self.now.saturating_add(d);
        self.run_until(until, obs)
    }

    // ----- internals -----

    fn push(&mut self, at: Time, ev: Event<M, I, O>) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(ev);
                s
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        let spare = &mut self.spare;
        self.queue
            .entry(at)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push_back(slot);
        self.pending += 1;
        if self.pending as u64 > self.stats.peak_pending {
            self.stats.peak_pending = self.pending as u64;
        }
    }

    fn record(&mut self, node: NodeIdx, kind: TraceKind) {
        let (code, a, b) = match &kind {
            TraceKind::Start => (1, 0, 0),
            TraceKind::Input => (2, 0, 0),
            TraceKind::Deliver { from, bytes } => (3, addr_word(*from), *bytes as u64),
            TraceKind::MacFailure { from } => (4, addr_word(*from), 0),
            TraceKind::Timer { key } => (5, *key, 0),
            TraceKind::Crash => (6, 0, 0),
            TraceKind::Restart => (7, 0, 0),
        };
        let mut h = self.stats.trace_hash;
        for w in [self.now, node.0 as u64, code, a, b] {
            h = mix(h, w);
        }
        self.stats.trace_hash = h;
        if let Some(t) = &mut self.trace {
            t.push(TraceEntry {
                at: self.now,
                node,
                kind,
            });
        }
    }

    fn handle(&mut self, ev: Event<M, I, O>, obs: &mut impl Observer<I, O>) {
        match ev {
            Event::Job { node, job } => self.arrive(node, job, obs),
            Event::Wake { node, inc } => {
                let n = &mut self.nodes[node.index()];
                if n.inc != inc || !n.up {
                    return;
                }
                n.wake_scheduled = false;
                self.drain_queue(node, obs);
            }
            Event::Crash { node } => self.do_crash(node),
            Event::Recover { node } => {
                if self.nodes[node.index()].recovery.is_none() {
                    return;
                }
                if self.nodes[node.index()].up {
                    self.do_crash(node);
                }
                let r = self.nodes[node.index()].recovery.as_mut();
                let actor = r.expect("checked above").restart();
                self.handle(Event::Restart { node, actor }, obs);
            }
            Event::Restart { node, actor } => {
                if self.nodes[node.index()].up {
                    self.do_crash(node);
                }
                let now = self.now;
                let n = &mut self.nodes[node.index()];
                n.actor = actor;
                n.up = true;
                n.knobs = Knobs::default();
                n.busy_until = now;
                n.crypto.take_meter();
                let inc = n.inc;
                self.stats.restarts += 1;
                self.record(node, TraceKind::Restart);
                self.control.now = now;
                obs.on_restart(now, node, &mut self.control);
                self.take_control();
                self.arrive(node, Job::Start { inc }, obs);
            }
        }
    }

    fn do_crash(&mut self, node: NodeIdx) {
        let n = &mut self.nodes[node.index()];
        if !n.up {
            return;
        }
        n.up = false;
        n.inc += 1;
        n.wake_scheduled = false;
        n.timers.clear();
        if let Some(r) = &mut n.recovery {
            r.crash(&mut n.rng);
        }
        let mut lost = 0;
        for j in n.queue.drain(..) {
            match j {
                Job::Deliver { .. } => lost += 1,
                Job::Input(_) => self.stats.inputs_dropped += 1,
                _ => {}
            }
        }
        self.stats.dropped_down += lost;
        self.stats.crashes += 1;
        self.record(node, TraceKind::Crash);
    }

    /// A job reaches a node: serve it now or queue it behind the CPU.
    fn arrive(&mut self, node: NodeIdx, job: Job<M, I>, obs: &mut impl Observer<I, O>) {
        let now = self.now;
        let n = &mut self.nodes[node.index()];
        if !n.up {
            match job {
                Job::Deliver { .. } => self.stats.dropped_down += 1,
                Job::Input(_) => self.stats.inputs_dropped += 1,
                _ => {}
            }
            return;
        }
        if let Job::Timer { key, gen } = job {
            // Filter stale timers and push re-armed ones forward without queueing.
            match n.timers.get(&key) {
                Some(s) if s.gen == gen => {
                    if s.deadline > now {
                        let at = s.deadline;
                        self.push(at, Event::Job { node, job });
                        return;
                    }
                }
                _ => return,
            }
        }
        if n.busy_until <= now && n.queue.is_empty() {
            self.serve(node, job, obs);
        } else {
            n.queue.push_back(job);
            if !n.wake_scheduled {
                n.wake_scheduled = true;
                let (at, inc) = (n.busy_until.max(now), n.inc);
                self.push(at, Event::Wake { node, inc });
            }
        }
    }

    fn drain_queue(&mut self, node: NodeIdx, obs: &mut impl Observer<I, O>) {
        loop {
            let n = &mut self.nodes[node.index()];
            if !n.up {
                return;
            }
            if n.busy_until > self.now {
                if !n.queue.is_empty() && !n.wake_scheduled {
                    n.wake_scheduled = true;
                    let (at, inc) = (n.busy_until, n.inc);
                    self.push(at, Event::Wake { node, inc });
                }
                return;
            }
            let Some(job) = n.queue.pop_front() else {
                return;
            };
            self.serve(node, job, obs);
        }
    }

    /// Serve one job at `self.now` (the node is idle).
    fn serve(&mut self, node: NodeIdx, job: Job<M, I>, obs: &mut impl Observer<I, O>) {
        if !self.admit(node, &job) {
            return;
        }
        let mut work = Work::default();
        let mut effects = std::mem::take(&mut self.effects);
        let trace_kind = self.step(node, job, &mut work, &mut effects);
        self.stats.events += 1;
        self.record(node, trace_kind);
        self.apply(node, &mut effects, &mut work);
        self.effects = effects;
        let end = self.finish(node, &work);
        self.report(node, end, obs);
    }

    /// Whether a job still applies when its node is free to serve it: a start
    /// of an older incarnation or a stale timer does not; a timer re-armed to a
    /// later deadline while queued behind the CPU is pushed forward.
    fn admit(&mut self, node: NodeIdx, job: &Job<M, I>) -> bool {
        let now = self.now;
        let n = &mut self.nodes[node.index()];
        match *job {
            Job::Start { inc } => inc == n.inc,
            Job::Timer { key, gen } => match n.timers.get(&key) {
                Some(s) if s.gen == gen => {
                    if s.deadline > now {
                        let at = s.deadline;
                        self.push(
                            at,
                            Event::Job {
                                node,
                                job: Job::Timer { key, gen },
                            },
                        );
                        return false;
                    }
                    n.timers.remove(&key);
                    true
                }
                _ => false,
            },
            _ => true,
        }
    }

    /// Hand the job to the node's actor (checking a message's channel tag
    /// first); the actor's effects land in `effects`.
    fn step(
        &mut self,
        node: NodeIdx,
        job: Job<M, I>,
        work: &mut Work,
        effects: &mut Vec<ActorEffect<M, O>>,
    ) -> TraceKind {
        let now = self.now;
        let i = node.index();
        let Node {
            addr,
            crypto,
            actor,
            rng,
            knobs,
            ..
        } = &mut self.nodes[i];
        let mut cx = ActorCx::new(now, *addr, node, rng, crypto, knobs, effects);
        match job {
            Job::Start { .. } => {
                actor.start(&mut cx);
                TraceKind::Start
            }
            Job::Input(x) => {
                self.stats.inputs += 1;
                actor.input(x, &mut cx);
                TraceKind::Input
            }
            Job::Timer { key, .. } => {
                self.stats.timers_fired += 1;
                actor.timer(key, &mut cx);
                TraceKind::Timer { key }
            }
            Job::Deliver { from, wire, tag } => {
                let len = wire.len as usize;
                work.recv_bytes = len as u64;
                let ok = match &tag {
                    Tag::Loopback => true,
                    Tag::Mac(t) => {
                        work.channel_mac_bytes += len as u64;
                        cx.crypto.verify_mac(from, &wire.bytes, t)
                    }
                    Tag::Modeled { genuine } => {
                        work.channel_mac_bytes += len as u64;
                        work.modeled_macs += 1;
                        *genuine && cx.crypto.knows(from)
                    }
                };
                let ns = &mut self.stats.per_node[i];
                if !ok {
                    ns.mac_failures += 1;
                    self.stats.dropped_mac += 1;
                    if self.stats.mac_failures.len() < MAC_FAILURE_SAMPLES {
                        self.stats.mac_failures.push(MacFailure {
                            at: now,
                            node,
                            to: *addr,
                            claimed_from: from,
                        });
                    }
                    return TraceKind::MacFailure { from };
                }
                let size = (len + WIRE_OVERHEAD) as u64;
                ns.received += 1;
                ns.bytes_received += size;
                self.stats.delivered += 1;
                self.stats.bytes_delivered += size;
                let msg = match Rc::try_unwrap(wire) {
                    Ok(w) => w.msg,
                    Err(rc) => rc.msg.clone(),
                };
                actor.message(from, msg, &mut cx);
                TraceKind::Deliver {
                    from,
                    bytes: len as u32,
                }
            }
        }
    }

    /// Effects: encode and authenticate messages, arm timers, collect outputs.
    fn apply(&mut self, node: NodeIdx, effects: &mut Vec<ActorEffect<M, O>>, work: &mut Work) {
        let now = self.now;
        let i = node.index();
        for e in effects.drain(..) {
            match e {
                ActorEffect::Send { to, msg } => {
                    self.encode(i, None, std::slice::from_ref(&to), msg, work)
                }
                ActorEffect::Multicast { to, msg } => self.encode(i, None, &to, msg, work),
                ActorEffect::Spoofed {
                    claimed_from,
                    to,
                    msg,
                } => self.encode(i, Some(claimed_from), std::slice::from_ref(&to), msg, work),
                ActorEffect::SetTimer { key, after } => {
                    let deadline = now.saturating_add(after);
                    let n = &mut self.nodes[i];
                    match n.timers.get_mut(&key) {
                        // An entry already queued fires no later: it will
                        // be pushed forward when it pops.
                        Some(s) if s.deadline <= deadline => s.deadline = deadline,
                        _ => {
                            n.timer_gen += 1;
                            let gen = n.timer_gen;
                            n.timers.insert(key, TimerSlot { deadline, gen });
                            self.push(
                                deadline,
                                Event::Job {
                                    node,
                                    job: Job::Timer { key, gen },
                                },
                            );
                        }
                    }
                }
                ActorEffect::CancelTimer { key } => {
                    self.nodes[i].timers.remove(&key);
                }
                ActorEffect::Output(o) => self.outputs.push(o),
                ActorEffect::Fault(f) => self.faults.push(f),
            }
        }
    }

    /// Charge the event's CPU time and send its messages when it is done;
    /// returns the end of service.
    fn finish(&mut self, node: NodeIdx, work: &Work) -> Time {
        let i = node.index();
        let n = &mut self.nodes[i];
        let mut work = *work;
        work.meter = n.crypto.take_meter();
        work.charged_ns = std::mem::take(&mut n.knobs.charged);
        let cost = self.cpu.cost(&work, n.cpu_factor * n.knobs.cpu_factor);
        let end = self.now.saturating_add(cost);
        n.busy_until = end;
        let depart = end.saturating_add(n.knobs.send_delay);
        let ns = &mut self.stats.per_node[i];
        ns.events += 1;
        ns.busy_ns += cost;
        let mut outbox = std::mem::take(&mut self.outbox);
        for o in outbox.drain(..) {
            self.route(i, o, depart);
        }
        self.outbox = outbox;
        end
    }

    /// Show the event's faults and outputs to the observer (stamped with the
    /// end of service) and carry out what it asks.
    fn report(&mut self, node: NodeIdx, end: Time, obs: &mut impl Observer<I, O>) {
        if self.faults.is_empty() && self.outputs.is_empty() {
            return;
        }
        let i = node.index();
        let addr = self.nodes[i].addr;
        self.control.now = end;
        let mut faults = std::mem::take(&mut self.faults);
        for f in faults.drain(..) {
            self.stats.faults += 1;
            self.stats.per_node[i].faults_reported += 1;
            obs.on_fault(end, node, &f, &mut self.control);
            if self.stats.fault_log.len() < FAULT_LOG_LIMIT {
                self.stats.fault_log.push(FaultRecord {
                    at: end,
                    node,
                    reporter: addr,
                    culprit: f.node,
                    kind: f.name().to_string(),
                    detail: f.detail,
                });
            }
        }
        self.faults = faults;
        let mut outputs = std::mem::take(&mut self.outputs);
        for o in outputs.drain(..) {
            obs.on_output(end, node, addr, o, &mut self.control);
        }
        self.outputs = outputs;
        self.take_control();
    }

    /// Carry out what the observer asked for through [`Control`].
    fn take_control(&mut self) {
        let mut inputs = std::mem::take(&mut self.control.inputs);
        for (at, n, x) in inputs.drain(..) {
            self.schedule_input(at, n, x);
        }
        self.control.inputs = inputs;
        let mut crashes = std::mem::take(&mut self.control.crashes);
        for (at, n) in crashes.drain(..) {
            self.crash(at, n);
        }
        self.control.crashes = crashes;
        let mut recoveries = std::mem::take(&mut self.control.recoveries);
        for (at, n) in recoveries.drain(..) {
            self.recover(at, n);
        }
        self.control.recoveries = recoveries;
    }

    /// Encode `msg` once and tag it for each destination with the sender's keys.
    fn encode(&mut self, i: usize, claimed: Option<Addr>, dests: &[Addr], msg: M, work: &mut Work) {
        let mut bytes = codec::to_bytes(&msg);
        let len = bytes.len() as u64;
        work.encoded_bytes += len;
        let modeled = self.channels == Channels::Modeled;
        let n = &self.nodes[i];
        let from = claimed.unwrap_or(n.addr);
        let mut tags = std::mem::take(&mut self.tags);
        for &to in dests {
            if to == n.addr && from == n.addr {
                tags.push((to, Tag::Loopback));
                continue;
            }
            work.channel_mac_bytes += len;
            if modeled {
                work.modeled_macs += 1;
                if claimed.is_none() && !n.crypto.knows(to) {
                    self.stats.dropped_no_key += 1;
                    continue;
                }
                let genuine = from == n.addr;
                tags.push((to, Tag::Modeled { genuine }));
                continue;
            }
            match n.crypto.mac(to, &bytes) {
                Ok(t) => tags.push((to, Tag::Mac(t))),
                Err(_) if claimed.is_some() => tags.push((to, Tag::Mac(Mac::default()))),
                Err(_) => self.stats.dropped_no_key += 1,
            }
        }
        if modeled {
            bytes = Vec::new();
        }
        let wire = Rc::new(Wire {
            msg,
            bytes,
            len: len as u32,
        });
        for (to, tag) in tags.drain(..) {
            work.sends += 1;
            self.outbox.push(Outgoing {
                from,
                to,
                wire: wire.clone(),
                tag,
            });
        }
        self.tags = tags;
    }

    /// Hand one tagged message to the network, for every node at its address.
    fn route(&mut self, src: usize, o: Outgoing<M>, depart: Time) {
        let Some(d) = self.by_addr.get(&o.to) else {
            self.stats.dropped_unknown_addr += 1;
            return;
        };
        let mut dests = std::mem::take(&mut self.dests);
        dests.clear();
        dests.extend_from_slice(d);
        for &dst in &dests {
            self.transmit(src, dst, &o, depart);
        }
        self.dests = dests;
    }

    fn transmit(&mut self, src: usize, dst: NodeIdx, o: &Outgoing<M>, depart: Time) {
        let len = o.wire.len as usize;
        let size = len + WIRE_OVERHEAD;
        self.stats.sent += 1;
        self.stats.bytes_sent += size as u64;
        let ns = &mut self.stats.per_node[src];
        ns.sent += 1;
        ns.bytes_sent += size as u64;
        let deliver = |wire: &Rc<Wire<M>>| Event::Job {
            node: dst,
            job: Job::Deliver {
                from: o.from,
                wire: wire.clone(),
                tag: o.tag,
            },
        };
        if let Tag::Loopback = o.tag {
            // loopback to the node's own address
            self.push(depart, deliver(&o.wire));
            return;
        }
        let net = &self.net;
        let rng = &mut self.net_rng;
        let stable = net.stable_at(depart);
        let (src_addr, src_region) = (self.nodes[src].addr, self.nodes[src].region);
        let (dst_addr, dst_region) = {
            let d = &self.nodes[dst.index()];
            (d.addr, d.region)
        };
        if !stable {
            if !net.partitions.is_empty() && net.partitioned(depart, src_addr, dst_addr) {
                self.stats.dropped_partition += 1;
                return;
            }
            if net.loss > 0.0 && rng.gen::<f64>() < net.loss {
                self.stats.dropped_loss += 1;
                return;
            }
        }
        let base = net.one_way[src_region][dst_region];
        let jitter = |rng: &mut ChaCha8Rng| {
            if net.jitter > 0 {
                rng.gen_range(0..=net.jitter)
            } else {
                0
            }
        };
        let use_link = net.bandwidth_bps.is_some() || net.fifo;
        let mut link = if use_link {
            self.nodes[src]
                .links
                .get(&dst.0)
                .copied()
                .unwrap_or_default()
        } else {
            Link::default()
        };
        let mut ready = depart;
        if let Some(bps) = net.region_link(src_region, dst_region) {
            let free = self
                .region_free
                .entry((src_region, dst_region))
                .or_default();
            ready = ready.max(*free) + serialization_time(size, bps);
            *free = ready;
        }
        if net.bandwidth_bps.is_some() {
            let start = depart.max(link.free_at);
            ready = start + net.transmission_time(size);
            link.free_at = ready;
        }
        let mut arrive = ready + base + jitter(rng);
        if !stable && net.reorder > 0.0 && rng.gen::<f64>() < net.reorder {
            arrive += rng.gen_range(0..=net.reorder_delay);
        }
        if net.fifo {
            arrive = arrive.max(link.last_arrival);
            link.last_arrival = arrive;
        }
        let dup = !stable && net.duplicate > 0.0 && rng.gen::<f64>() < net.duplicate;
        let mut arrive2 = 0;
        if dup {
            arrive2 = ready + base + jitter(rng);
            if net.fifo {
                arrive2 = arrive2.max(link.last_arrival);
                link.last_arrival = arrive2;
            }
        }
        if use_link {
            self.nodes[src].links.insert(dst.0, link);
        }
        self.push(arrive, deliver(&o.wire));
        if dup {
            self.stats.duplicated += 1;
            self.push(arrive2, deliver(&o.wire));
        }
    }
}
