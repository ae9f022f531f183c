//! The tokio driver of a sans-IO [`Protocol`].
//!
//! One task owns the protocol instance, its [`Crypto`], its timers and its RNG, so
//! protocol code needs no locks. The task waits on four sources and feeds each
//! event to the protocol, then applies the effects the protocol asked for:
//!
//! | source | protocol call |
//! |---|---|
//! | inbound messages (decoded by the transport's reader tasks, sender authenticated) | `on_message` |
//! | inputs from a [`RuntimeHandle`] (bounded channel) | `on_input` |
//! | expired timers (`sleep_until` on a `BTreeMap` of deadlines) | `on_timer` |
//! | messages the protocol sent to itself | `on_message(me, ..)` |
//!
//! | effect | what the runtime does |
//! |---|---|
//! | `Send` / `Multicast` | encode once with the core codec, queue on each peer's link in the class [`Protocol::priority`] gives (never blocks; see [`crate::transport`] on the bounded queues); to itself: loop back |
//! | `SetTimer` / `CancelTimer` | arm (re-arm: replaces an armed timer of the same name) / disarm |
//! | `Output` | send on the caller's bounded output channel (waits: a slow consumer slows the node down rather than losing decisions) |
//! | `Fault` | `tracing::warn!` and `byzscale_protocol_faults_total{kind=..}` (the kind's label) |
//! | `Persist` | send on the caller's bounded record channel ([`Runtime::start_with_records`], a [`RecordSink`]), in emission order, waiting while it is full; without one the record is counted and dropped |
//!
//! **Durable before it leaves.** A `Send` or `Multicast` that follows a record
//! *in the same step* is held until the sink reports that record durable
//! (`RecordSink::durable`, a count of records committed, in order); since
//! records become durable in emission order, so are all records before it.
//! Sends of a step that emitted no record before them leave at once (a
//! protocol whose message depends on a record of an earlier step emits a
//! record in this step first, or an `Effect::Barrier`, after which the sends
//! of its step wait for every record written so far), so unrelated traffic
//! never waits for a group commit (raft-rs's `Ready` makes the same split
//! between messages that may go at once and those that wait for
//! persistence). Outputs keep their order and wait for every record emitted
//! before them. The protocol keeps running meanwhile: group commit batches
//! the fsyncs and delays the sends, never the protocol. A record whose sends
//! left is therefore on disk, and a crash loses only records whose messages
//! never left. If the persister stops (its channel or its count closes), the
//! runtime stops too: what it holds cannot become durable.
//!
//! Time given to the protocol is nanoseconds since the runtime started (tokio's
//! monotonic `Instant`). Randomness comes from a `ChaCha8Rng` seeded from OS
//! entropy. A client the transport learns from its handshake is added to the
//! protocol's `Crypto` ([`Crypto::connect_peer`]) before the first message of
//! each of its connections, and dropped from it ([`Crypto::disconnect_peer`])
//! after the last: a client without a connection stays in the `Crypto`'s LRU
//! of `client_keys` entries, as in the transport's, then is forgotten until
//! it reconnects (gauges `byzscale_crypto_client_keys_{connected,cached}`).

use crate::delay::DelayMatrix;
use crate::metrics::{self, Counter, Gauge, Histogram, Registry};
use crate::transport::{self, Inbound, PeerConfig, Transport, TransportConfig, TransportOptions};
use crate::NetError;
use bytes::Bytes;
use byzscale_core::codec;
use byzscale_core::config::Deployment;
use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::protocol::{Cx, Effect, Protocol, Time};
use byzscale_core::{Addr, ClientId, NodeId};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

/// Everything needed to run one endpoint.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub transport: TransportConfig,
    /// Crypto mode of the protocol's `Crypto` (the transport always uses real
    /// crypto for its handshake and frame MACs).
    pub crypto_mode: CryptoMode,
    /// Bound of the input channel.
    pub input_capacity: usize,
    /// Bound of the output channel.
    pub output_capacity: usize,
    /// Serve Prometheus metrics on this `host:port`.
    pub metrics_listen: Option<String>,
}

impl NodeConfig {
    pub fn new(transport: TransportConfig) -> Self {
        NodeConfig {
            transport,
            crypto_mode: CryptoMode::Real,
            input_capacity: 1024,
            output_capacity: 1024,
            metrics_listen: None,
        }
    }

    /// Replica `me` of `deployment`: listens on its configured address, knows every
    /// replica of every group, accepts clients, serves metrics if configured.
    /// Fails if `identity` is not the key the deployment lists for `me`.
    pub fn replica(
        deployment: &Deployment,
        me: NodeId,
        identity: Identity,
        kind: u8,
    ) -> Result<Self, NetError> {
        let (_, rc) = deployment
            .replica(me)
            .ok_or_else(|| NetError::Config(format!("replica {me} is not in the deployment")))?;
        if rc.public_identity()? != identity.public() {
            return Err(NetError::Config(format!(
                "the key file does not match the public key of replica {me} in the deployment"
            )));
        }
        let mut cfg = Self::new(TransportConfig {
            me: Addr::Node(me),
            identity,
            kind,
            listen: Some(rc.addr.clone()),
            peers: deployment_peers(deployment, Some(me))?,
            accept_clients: true,
            options: TransportOptions::default(),
            delay: None,
        });
        cfg.metrics_listen = rc.metrics_addr.clone();
        Ok(cfg)
    }

    /// Client `me`: dials every replica of the deployment, does not listen. The
    /// replicas learn the client's key from the handshake.
    pub fn client(
        deployment: &Deployment,
        me: ClientId,
        identity: Identity,
        kind: u8,
    ) -> Result<Self, NetError> {
        Ok(Self::new(TransportConfig {
            me: Addr::Client(me),
            identity,
            kind,
            listen: None,
            peers: deployment_peers(deployment, None)?,
            accept_clients: false,
            options: TransportOptions::default(),
            delay: None,
        }))
    }

    /// Apply the WAN delay shim to this endpoint's outgoing frames.
    pub fn with_delay(mut self, delay: DelayMatrix) -> Self {
        self.transport.delay = Some(Arc::new(delay));
        self
    }
}

fn deployment_peers(d: &Deployment, except: Option<NodeId>) -> Result<Vec<PeerConfig>, NetError> {
    let mut peers = Vec::new();
    for g in &d.groups {
        for r in &g.replicas {
            if Some(r.id) == except {
                continue;
            }
            peers.push(PeerConfig {
                addr: Addr::Node(r.id),
                identity: r.public_identity()?,
                socket: Some(r.addr.clone()),
            });
        }
    }
    Ok(peers)
}

/// The runtime has stopped; the input is handed back.
#[derive(Debug, thiserror::Error)]
#[error("the runtime has stopped")]
pub struct Stopped<I>(pub I);

/// Submit inputs to a running protocol and stop it. Cheap to clone. The runtime
/// stops at [`RuntimeHandle::stop`] or when every handle has been dropped.
pub struct RuntimeHandle<I> {
    inputs: mpsc::Sender<I>,
    stop: Arc<watch::Sender<bool>>,
}

impl<I> Clone for RuntimeHandle<I> {
    fn clone(&self) -> Self {
        RuntimeHandle {
            inputs: self.inputs.clone(),
            stop: self.stop.clone(),
        }
    }
}

impl<I> RuntimeHandle<I> {
    /// Queue an input, waiting while the input channel is full (backpressure).
    pub async fn submit(&self, input: I) -> Result<(), Stopped<I>> {
        self.inputs.send(input).await.map_err(|e| Stopped(e.0))
    }
    /// Queue an input if there is room.
    pub fn try_submit(&self, input: I) -> Result<(), mpsc::error::TrySendError<I>> {
        self.inputs.try_send(input)
    }
    /// Ask the runtime to stop (idempotent). Pending inputs are discarded.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow() || self.inputs.is_closed()
    }
}

/// The channels and services [`run_protocol`] drives a protocol with.
pub struct Wiring<P: Protocol> {
    /// The protocol's crypto (identity and known peers).
    pub crypto: Crypto,
    pub transport: Transport<P::Message>,
    pub inbound: mpsc::Receiver<Inbound<P::Message>>,
    pub inputs: mpsc::Receiver<P::Input>,
    pub outputs: mpsc::Sender<P::Output>,
    /// Where [`Effect::Persist`] records go (the node's persister), if anywhere.
    pub records: Option<RecordSink<P::Record>>,
    /// Stop when this turns true or its sender is dropped.
    pub stop: watch::Receiver<bool>,
    pub registry: Arc<Registry>,
}

/// Where a protocol's records go: the persister's channel, and the number
/// of records (counted in the order sent, from 1) it has made durable.
pub struct RecordSink<R> {
    pub records: mpsc::Sender<R>,
    pub durable: watch::Receiver<u64>,
}

/// An effect held until the records before it are durable.
enum Held<P: Protocol> {
    Send(Addr, P::Message),
    Multicast(Vec<Addr>, P::Message),
    Output(P::Output),
}

/// Armed timers: by name (re-arm replaces) and by deadline.
struct Timers<T: Ord + Clone> {
    by_deadline: BTreeMap<(Instant, u64), T>,
    by_name: BTreeMap<T, (Instant, u64)>,
    seq: u64,
}

impl<T: Ord + Clone> Timers<T> {
    fn new() -> Self {
        Timers {
            by_deadline: BTreeMap::new(),
            by_name: BTreeMap::new(),
            seq: 0,
        }
    }
    fn set(&mut self, t: T, at: Instant) {
        self.cancel(&t);
        self.seq += 1;
        self.by_deadline.insert((at, self.seq), t.clone());
        self.by_name.insert(t, (at, self.seq));
    }
    fn cancel(&mut self, t: &T) {
        if let Some(k) = self.by_name.remove(t) {
            self.by_deadline.remove(&k);
        }
    }
    fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.keys().next().map(|(at, _)| *at)
    }
    fn pop_expired(&mut self, now: Instant) -> Option<T> {
        let (&(at, seq), _) = self.by_deadline.iter().next()?;
        if at > now {
            return None;
        }
        let t = self.by_deadline.remove(&(at, seq))?;
        self.by_name.remove(&t);
        Some(t)
    }
    fn len(&self) -> usize {
        self.by_name.len()
    }
}

struct RtMetrics {
    events: Counter,
    step: Histogram,
    outputs: Counter,
    outputs_discarded: Counter,
    held: Gauge,
    records: Counter,
    records_discarded: Counter,
    inbound_depth: Gauge,
    timers: Gauge,
    client_keys: ClientKeyGauges,
}

/// The protocol crypto's peers learnt from connections.
struct ClientKeyGauges {
    connected: Gauge,
    cached: Gauge,
}

impl ClientKeyGauges {
    fn set(&self, (connected, cached): (usize, usize)) {
        self.connected.set(connected as i64);
        self.cached.set(cached as i64);
    }
}

impl RtMetrics {
    fn new(r: &Registry) -> Self {
        RtMetrics {
            events: r.counter(
                "byzscale_runtime_events_total",
                "events handled by the protocol task",
            ),
            step: r.histogram(
                "byzscale_runtime_step_micros",
                "protocol step time (handler only)",
            ),
            outputs: r.counter(
                "byzscale_runtime_outputs_total",
                "outputs delivered to the layer above",
            ),
            outputs_discarded: r.counter(
                "byzscale_runtime_outputs_discarded_total",
                "outputs dropped because nobody reads the output channel",
            ),
            held: r.gauge(
                "byzscale_runtime_held_effects",
                "sends and outputs waiting for their records to be durable",
            ),
            records: r.counter(
                "byzscale_runtime_records_total",
                "records handed to the persister",
            ),
            records_discarded: r.counter(
                "byzscale_runtime_records_discarded_total",
                "records dropped because no persister is attached",
            ),
            inbound_depth: r.gauge(
                "byzscale_runtime_inbound_queue_depth",
                "messages waiting for the protocol task",
            ),
            timers: r.gauge("byzscale_runtime_timers", "armed timers"),
            client_keys: ClientKeyGauges {
                connected: r.gauge(
                    "byzscale_crypto_client_keys_connected",
                    "client keys in the protocol's crypto, of clients with a connection",
                ),
                cached: r.gauge(
                    "byzscale_crypto_client_keys_cached",
                    "client keys in the protocol's crypto, of clients without a connection (at most client_keys)",
                ),
            },
        }
    }
}

struct Driver<P: Protocol> {
    protocol: P,
    crypto: Crypto,
    rng: ChaCha8Rng,
    start: Instant,
    me: Addr,
    kind: u8,
    timers: Timers<P::Timer>,
    effects: Vec<Effect<P>>,
    loopback: VecDeque<P::Message>,
    transport: Transport<P::Message>,
    outputs: mpsc::Sender<P::Output>,
    records: Option<RecordSink<P::Record>>,
    /// Records handed to the sink so far.
    written: u64,
    /// Effects waiting for the record count they follow to be durable.
    held: VecDeque<(u64, Held<P>)>,
    stop: watch::Receiver<bool>,
    stopping: bool,
    registry: Arc<Registry>,
    m: RtMetrics,
}

/// Most events handled in a row from one source before the others get a turn.
const BURST: usize = 64;
/// "Never" for timer arithmetic: a year.
const FAR_SECS: u64 = 86_400 * 365;

impl<P: Protocol> Driver<P>
where
    P::Output: Send,
    P::Timer: Send,
    P::Record: Send,
{
    fn step(&mut self, f: impl FnOnce(&mut P, &mut Cx<'_, P>)) -> Instant {
        let at = Instant::now();
        let now: Time = at
            .duration_since(self.start)
            .as_nanos()
            .min(u64::MAX as u128) as u64;
        {
            // the protocol's dates (SMR batch timestamps) are Unix epoch ms
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64);
            let mut cx =
                Cx::new(now, &mut self.rng, &self.crypto, &mut self.effects).with_wall_ms(wall);
            f(&mut self.protocol, &mut cx);
        }
        self.m.events.inc();
        self.m.step.record_micros(at.elapsed());
        at
    }

    fn encode(&self, msg: &P::Message) -> Bytes {
        Bytes::from(codec::encode_frame(self.kind, msg))
    }

    async fn apply(&mut self, at: Instant) {
        let mut effects = std::mem::take(&mut self.effects);
        // the records this step emitted so far: its sends wait for them
        // (after a barrier, every record written so far counts)
        let mut first = self.written;
        for e in effects.drain(..) {
            let step = (self.written > first).then_some(self.written);
            match e {
                Effect::Send { to, msg } => self.emit(step, Held::Send(to, msg)).await,
                Effect::Multicast { to, msg } => self.emit(step, Held::Multicast(to, msg)).await,
                Effect::Output(o) => self.emit(Some(self.written), Held::Output(o)).await,
                Effect::SetTimer { timer, after } => {
                    let deadline = at
                        .checked_add(Duration::from_nanos(after))
                        .unwrap_or_else(|| at + Duration::from_secs(FAR_SECS));
                    self.timers.set(timer, deadline);
                }
                Effect::CancelTimer { timer } => self.timers.cancel(&timer),
                Effect::Fault(f) => {
                    warn!(me = %self.me, node = %f.node, kind = f.name(), detail = %f.detail, "protocol fault");
                    self.registry
                        .counter_with(
                            "byzscale_protocol_faults_total",
                            "faults reported by the protocol",
                            &[("kind", f.name())],
                        )
                        .inc();
                }
                Effect::Persist(r) => self.persist(r).await,
                Effect::Barrier => first = 0,
            }
        }
        self.effects = effects;
        self.m.timers.set(self.timers.len() as i64);
        self.m.held.set(self.held.len() as i64);
    }

    /// Records made durable so far (all of them without a sink).
    fn durable(&self) -> u64 {
        match &self.records {
            Some(sink) => *sink.durable.borrow(),
            None => self.written,
        }
    }

    /// Perform `e` now, or hold it until record number `after` (if any) is
    /// durable. Held effects leave in emission order (their marks never
    /// decrease); outputs also wait for held outputs.
    async fn emit(&mut self, after: Option<u64>, e: Held<P>) {
        if !self.held.is_empty() {
            self.release().await;
        }
        let after = match after {
            Some(w) if w > self.durable() => w,
            _ => {
                self.perform(e).await;
                return;
            }
        };
        self.held.push_back((after, e));
    }

    /// Perform the held effects whose records are durable, in order.
    async fn release(&mut self) {
        let durable = self.durable();
        while self.held.front().is_some_and(|(w, _)| *w <= durable) {
            let (_, e) = self.held.pop_front().expect("non-empty");
            self.perform(e).await;
        }
        self.m.held.set(self.held.len() as i64);
    }

    async fn perform(&mut self, e: Held<P>) {
        match e {
            Held::Send(to, msg) => {
                if to == self.me {
                    self.loopback.push_back(msg);
                } else {
                    let frame = self.encode(&msg);
                    self.transport.send(to, frame, P::priority(&msg));
                }
            }
            Held::Multicast(to, msg) => {
                let others: Vec<Addr> = to.iter().copied().filter(|a| *a != self.me).collect();
                if !others.is_empty() {
                    let frame = self.encode(&msg);
                    self.transport.multicast(&others, &frame, P::priority(&msg));
                }
                if others.len() != to.len() {
                    self.loopback.push_back(msg);
                }
            }
            Held::Output(o) => self.output(o).await,
        }
    }

    async fn output(&mut self, o: P::Output) {
        if self.stopping || self.outputs.is_closed() {
            self.m.outputs_discarded.inc();
            return;
        }
        tokio::select! {
            r = self.outputs.send(o) => {
                if r.is_err() {
                    self.m.outputs_discarded.inc();
                } else {
                    self.m.outputs.inc();
                }
            }
            _ = self.stop.wait_for(|v| *v) => {
                // also returns on a dropped stop sender
                self.stopping = true;
                self.m.outputs_discarded.inc();
            }
        }
    }

    async fn persist(&mut self, r: P::Record) {
        let Some(sink) = self.records.as_ref().filter(|_| !self.stopping) else {
            self.m.records_discarded.inc();
            return;
        };
        let lost = tokio::select! {
            res = sink.records.send(r) => {
                if res.is_err() {
                    self.m.records_discarded.inc();
                    true
                } else {
                    self.written += 1;
                    self.m.records.inc();
                    false
                }
            }
            _ = self.stop.wait_for(|v| *v) => {
                self.stopping = true;
                self.m.records_discarded.inc();
                false
            }
        };
        if lost {
            self.persister_lost();
        }
    }

    /// The persister is gone: nothing held can become durable, and nothing
    /// that follows an unsaved record may leave, so the node stops (its
    /// restart recovers from what is on disk).
    fn persister_lost(&mut self) {
        tracing::error!(me = %self.me, held = self.held.len(), "persister stopped: stopping this node, dropping the sends that wait for it");
        self.held.clear();
        self.m.held.set(0);
        self.stopping = true;
    }

    async fn inbound(&mut self, ev: Inbound<P::Message>) {
        match ev {
            Inbound::Message { from, msg, held } => {
                let at = self.step(|p, cx| p.on_message(from, msg, cx));
                // the frame's share of the inbound budget is free again
                drop(held);
                self.apply(at).await;
            }
            Inbound::PeerRegistered { addr, identity } => {
                if let Err(e) = self.crypto.connect_peer(addr, identity) {
                    warn!(me = %self.me, %addr, error = %e, "cannot register peer key");
                }
                self.m.client_keys.set(self.crypto.learnt_peers());
            }
            Inbound::PeerGone { addr } => {
                self.crypto.disconnect_peer(addr);
                self.m.client_keys.set(self.crypto.learnt_peers());
            }
        }
    }

    async fn fire_timers(&mut self) {
        for _ in 0..BURST {
            let Some(t) = self.timers.pop_expired(Instant::now()) else {
                break;
            };
            let at = self.step(|p, cx| p.on_timer(t, cx));
            self.apply(at).await;
            if self.stopping {
                break;
            }
        }
    }

    async fn loopback(&mut self) {
        for _ in 0..BURST {
            let Some(msg) = self.loopback.pop_front() else {
                break;
            };
            let me = self.me;
            let at = self.step(|p, cx| p.on_message(me, msg, cx));
            self.apply(at).await;
            if self.stopping {
                break;
            }
        }
    }
}

async fn durable_changed<R>(
    sink: &mut Option<RecordSink<R>>,
) -> Result<(), watch::error::RecvError> {
    match sink {
        Some(s) => s.durable.changed().await,
        None => std::future::pending().await,
    }
}

/// Drive `protocol` until stopped; returns it (with its final state).
pub async fn run_protocol<P: Protocol>(protocol: P, wiring: Wiring<P>) -> P
where
    P::Output: Send,
    P::Timer: Send,
    P::Record: Send,
{
    let Wiring {
        crypto,
        transport,
        mut inbound,
        mut inputs,
        outputs,
        records,
        stop,
        registry,
    } = wiring;
    let m = RtMetrics::new(&registry);
    let mut d = Driver {
        protocol,
        me: crypto.me(),
        crypto,
        rng: ChaCha8Rng::from_entropy(),
        start: Instant::now(),
        kind: transport.kind(),
        timers: Timers::new(),
        effects: Vec::new(),
        loopback: VecDeque::new(),
        transport,
        outputs,
        records,
        written: 0,
        held: VecDeque::new(),
        stop,
        stopping: false,
        registry,
        m,
    };
    let at = d.step(|p, cx| p.on_start(cx));
    d.apply(at).await;
    let mut inputs_open = true;
    let mut inbound_open = true;
    let far = Duration::from_secs(FAR_SECS);
    while !d.stopping {
        if *d.stop.borrow() {
            break;
        }
        d.loopback().await;
        if d.stopping {
            break;
        }
        let next = d.timers.next_deadline();
        let busy = !d.loopback.is_empty();
        let waiting = !d.held.is_empty();
        tokio::select! {
            r = d.stop.changed() => {
                if r.is_err() || *d.stop.borrow() {
                    break;
                }
            }
            r = durable_changed(&mut d.records), if waiting => {
                if r.is_err() {
                    d.persister_lost();
                } else {
                    d.release().await;
                }
            }
            ev = inbound.recv(), if inbound_open => match ev {
                None => inbound_open = false,
                Some(ev) => {
                    d.inbound(ev).await;
                    for _ in 1..BURST {
                        if d.stopping { break; }
                        match inbound.try_recv() {
                            Ok(ev) => d.inbound(ev).await,
                            Err(_) => break,
                        }
                    }
                }
            },
            i = inputs.recv(), if inputs_open => match i {
                None => inputs_open = false,
                Some(i) => {
                    let at = d.step(|p, cx| p.on_input(i, cx));
                    d.apply(at).await;
                }
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(|| Instant::now() + far)), if next.is_some() => {
                d.fire_timers().await;
            }
            _ = std::future::ready(()), if busy => {}
        }
        d.m.inbound_depth
            .set((inbound.max_capacity() - inbound.capacity()) as i64);
    }
    info!(me = %d.me, "runtime stopping");
    d.transport.shutdown().await;
    d.protocol
}

/// A running endpoint: the protocol task, its transport and (optionally) its
/// metrics server. It runs until [`Runtime::stop`] / [`RuntimeHandle::stop`], or
/// until the `Runtime` and every handle cloned from it have been dropped.
pub struct Runtime<P: Protocol> {
    handle: RuntimeHandle<P::Input>,
    task: JoinHandle<P>,
    me: Addr,
    local_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    registry: Arc<Registry>,
}

/// What can move to another thread for good.
pub trait Portable: Send + 'static {}
impl<T: Send + 'static> Portable for T {}

/// A protocol the runtime can run on its own task: it and everything it
/// takes in, puts out, times and records are [`Portable`].
pub trait Runnable:
    Protocol<Input: Portable, Output: Portable, Timer: Portable, Record: Portable> + Portable
{
}
impl<P> Runnable for P where
    P: Protocol<Input: Portable, Output: Portable, Timer: Portable, Record: Portable> + Portable
{
}

impl<P: Runnable> Runtime<P> {
    /// Start `protocol` as configured. Returns the runtime and the receiver of the
    /// protocol's outputs.
    pub async fn start(
        protocol: P,
        cfg: NodeConfig,
    ) -> Result<(Self, mpsc::Receiver<P::Output>), NetError> {
        Self::start_with(protocol, cfg, None, Arc::new(Registry::new())).await
    }

    /// Like [`Runtime::start`], with an already bound listener (tests bind port 0
    /// first to learn their addresses) and a caller-provided metrics registry.
    pub async fn start_with(
        protocol: P,
        cfg: NodeConfig,
        listener: Option<TcpListener>,
        registry: Arc<Registry>,
    ) -> Result<(Self, mpsc::Receiver<P::Output>), NetError> {
        Self::start_with_records(protocol, cfg, listener, registry, None).await
    }

    /// Like [`Runtime::start_with`], handing every [`Effect::Persist`] record
    /// to `records` (the node's persister), in emission order, and holding the
    /// sends that follow a record until it is durable (see the module docs).
    pub async fn start_with_records(
        protocol: P,
        cfg: NodeConfig,
        listener: Option<TcpListener>,
        registry: Arc<Registry>,
        records: Option<RecordSink<P::Record>>,
    ) -> Result<(Self, mpsc::Receiver<P::Output>), NetError> {
        let me = cfg.transport.me;
        let mut crypto = Crypto::new(me, cfg.transport.identity.clone(), cfg.crypto_mode);
        crypto.set_peer_cache(cfg.transport.options.client_keys);
        for p in &cfg.transport.peers {
            if p.addr != me {
                crypto
                    .add_peer(p.addr, p.identity)
                    .map_err(|source| NetError::Key {
                        addr: p.addr,
                        source,
                    })?;
            }
        }
        let metrics_listener = transport::listen_on(cfg.metrics_listen.as_deref()).await?;
        let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
        let (transport, inbound) = Transport::start(cfg.transport, listener, &registry).await?;
        let local_addr = transport.local_addr();
        let (in_tx, in_rx) = mpsc::channel(cfg.input_capacity.max(1));
        let (out_tx, out_rx) = mpsc::channel(cfg.output_capacity.max(1));
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Some(l) = metrics_listener {
            tokio::spawn(metrics::serve(registry.clone(), l, stop_rx.clone()));
        }
        let wiring = Wiring {
            crypto,
            transport,
            inbound,
            inputs: in_rx,
            outputs: out_tx,
            records,
            stop: stop_rx,
            registry: registry.clone(),
        };
        let task = tokio::spawn(run_protocol(protocol, wiring));
        Ok((
            Runtime {
                handle: RuntimeHandle {
                    inputs: in_tx,
                    stop: Arc::new(stop_tx),
                },
                task,
                me,
                local_addr,
                metrics_addr,
                registry,
            },
            out_rx,
        ))
    }
}

impl<P: Protocol> Runtime<P> {
    pub fn handle(&self) -> RuntimeHandle<P::Input> {
        self.handle.clone()
    }
    pub fn me(&self) -> Addr {
        self.me
    }
    /// The bound protocol listening address, if any.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
    /// The bound metrics address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }
    /// Wait until at least `peers` authenticated connections are open, or
    /// `within` has passed (a peer may be down); returns whether they are.
    ///
    /// A client calls this before its first request: replicas learn a client's
    /// key from its handshake, and a backup that has not met the client yet
    /// refuses a proposal holding its request.
    pub async fn wait_connected(&self, peers: usize, within: Duration) -> bool {
        let open = self
            .registry
            .gauge("byzscale_net_connections", "authenticated connections open");
        let deadline = Instant::now() + within;
        while open.get() < peers as i64 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
    /// Stop and wait: the transport's listener and connections are closed and the
    /// protocol is returned.
    pub async fn stop(self) -> Result<P, NetError> {
        self.handle.stop();
        self.join().await
    }
    /// Wait until the runtime stops (by a handle's `stop`) and return the protocol.
    pub async fn join(self) -> Result<P, NetError> {
        let Runtime { handle, task, .. } = self;
        // Keep our handle alive while waiting so dropping it does not stop the node.
        let r = task.await.map_err(|e| NetError::Task(e.to_string()));
        drop(handle);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_rearm_cancel_and_order() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        let mut t = Timers::new();
        t.set("a", s(30));
        t.set("b", s(10));
        t.set("c", s(20));
        t.set("a", s(5)); // re-arm replaces
        t.cancel(&"c");
        assert_eq!(t.len(), 2);
        assert_eq!(t.next_deadline(), Some(s(5)));
        assert_eq!(t.pop_expired(s(4)), None);
        assert_eq!(t.pop_expired(s(100)), Some("a"));
        assert_eq!(t.pop_expired(s(100)), Some("b"));
        assert_eq!(t.pop_expired(s(100)), None);
        assert_eq!(t.next_deadline(), None);
    }
}
