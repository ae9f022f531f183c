//! TCP transport with authenticated channels.
//!
//! # Connections
//!
//! One TCP connection per pair of endpoints, used in both directions. Between two
//! endpoints that both listen, the one with the smaller [`Addr`] dials and the
//! other waits; an endpoint that does not listen (a client) dials everyone it has
//! an address for. The dialer reconnects after any failure with exponential
//! backoff (`backoff_min` doubling up to `backoff_max`) and ±50% jitter; a
//! successful handshake resets the backoff. A newer authenticated connection for
//! the same peer supersedes the older one (a restarted peer is picked up at once).
//! `TCP_NODELAY` is on; the writer drains every queued frame into one buffer and
//! writes it with a single `write_all` (batching under load, no Nagle delay when
//! idle).
//!
//! # Frames
//!
//! Every frame uses the core codec's 8-byte header (`"BZ"`, version, kind, `u32`
//! payload length) and a payload limit (`max_frame`). After the handshake a
//! frame's bytes count against one budget for all connections
//! (`inbound_bytes`, default 64 MiB) from its header until the protocol task
//! has handled its last message ([`FrameShare`]): a reader waits for its
//! share before it allocates the frame, so peers that announce large frames,
//! or flood them faster than the protocol handles them, hold at most that
//! much (the decoded messages about as much again). A payload must arrive
//! within `frame_timeout` of its header (fault `slow_frame`), so a peer that
//! trickles a frame cannot keep its share. A header that is malformed
//! or announces more than the limit closes the connection *before* the payload
//! is read, and is counted (`byzscale_net_faults_total`) and logged; nothing in
//! the transport panics on peer input, and each connection has its own task, so
//! one bad peer never stalls the node.
//!
//! # Handshake (kinds `0xF0` hello, `0xF1` auth)
//!
//! 1. Both sides send `Hello { addr, nonce (32 random bytes), identity, kind }`.
//! 2. Both sides send an ed25519 signature over
//!    `DOMAIN || role || dialer_hello_frame || acceptor_hello_frame` (role `D`/`A`
//!    so a signature cannot be reflected), made with their identity key.
//! 3. Each side verifies the other's signature with the public key *it* knows for
//!    the claimed address: replicas from the deployment (a presented key that
//!    differs is rejected); the dialer additionally requires the acceptor to be
//!    the address it dialed. On the accepting side of a client-facing node
//!    (`accept_clients`), an unknown `Addr::Client` below
//!    [`ClientId::REPLICA_BASE`] is accepted with the key it presents — the
//!    signature proves it holds that key — only if its id is the one the key
//!    certifies, [`ClientId::of_key`] (otherwise fault `impostor`, "client id
//!    does not match its key"). The runtime then receives
//!    [`Inbound::PeerRegistered`] *before* the connection's first message, so
//!    the protocol's `Crypto` can verify the client's MAC authenticators, and
//!    [`Inbound::PeerGone`] after its last. Client ids at or above
//!    `REPLICA_BASE` are replicas acting as clients: admitted only with the
//!    node key the deployment gives them, like nodes. Unknown nodes are
//!    always refused.
//!
//!    *Why an id cannot be stolen.* What stops a second party from running
//!    requests in an honest client's name (e.g. consuming its sequence
//!    numbers) is that the id is bound to the client's key. That binding is
//!    recomputed at every handshake rather than remembered: claiming an id
//!    means presenting a key whose [`ClientId::of_key`] is that id, a second
//!    preimage of a 63-bit truncated BLAKE3 hash, about `2^63` key
//!    generations. So a node may forget a client's key (below) without
//!    opening its id to anyone else.
//! 4. Session key: `HMAC(pairwise key, "byzscale-net session" || transcript)`,
//!    the pairwise key coming from `Crypto::add_peer` (X25519 + BLAKE3). Fresh
//!    nonces make every session's key fresh.
//!
//! The checks above are [`crate::wire::Handshake`], a state machine without
//! I/O (the connection task only moves its frames), so that the fuzz targets
//! run exactly them.
//!
//! After the handshake each frame is followed by a 32-byte tag
//! `HMAC-SHA256(session key, direction || counter || frame)` with an implicit
//! per-direction counter, so frames cannot be forged, reflected, replayed,
//! reordered or dropped without the receiver noticing (it then closes the
//! connection). When the writer has several frames ready it seals them into one
//! frame of kind `0xF2` (the inner frames, headers included, back to back) under
//! a single tag: the MAC's fixed cost is paid once per write instead of once per
//! message, which halved the HMAC time of a client under load. The receiver
//! checks every inner header (kind, limit, bounds) as for a plain frame. Handshakes have a deadline (`handshake_timeout`) and the number
//! of accepted connections is capped (`max_connections`).
//!
//! # Queues: bounded in frames and bytes, bulk dropped first
//!
//! Each peer has a bounded outgoing queue: `queue_capacity` frames and
//! `queue_bytes` bytes for nodes (default 64 MiB), `client_queue_capacity` and
//! `client_queue_bytes` for clients, so a dead, slow or malicious peer pins at
//! most that much memory. Every frame has a class, the
//! [`Priority`] its protocol gives it ([`byzscale_core::Protocol::priority`]):
//! control (votes, view changes, requests, replies) or bulk (state and log
//! transfers). The writer sends ready control frames before bulk ones; within
//! a class the order is kept. When a push puts the queue over a bound, the
//! *oldest bulk* frame goes first, and a control frame only when no bulk is
//! left; drops are counted (`byzscale_net_frames_dropped_total`, and per peer
//! and class `byzscale_net_peer_frames_dropped_total{peer,class}`, all clients
//! under `peer="clients"`). The protocol task therefore never blocks on the
//! network: one slow, dead or malicious peer cannot stall the node's progress
//! with the others. This is safe because every protocol driven here
//! retransmits what matters (view-change / status timers, state and log
//! fetches, client retries), exactly as with a lossy link. Backpressure exists
//! on the other two paths: inbound messages go to the protocol through a
//! bounded channel (readers wait, TCP flow control then slows the sender;
//! tokio's semaphore serves waiting readers in FIFO order so a flooding peer
//! gets no more than its turn), and inputs from the layer above use a bounded
//! channel. The options are checked at start (a byte bound below one largest
//! frame is refused with the option's name).
//!
//! # Client keys: kept while connected, then a bounded LRU
//!
//! The keys learnt from client handshakes are a cache: a client's key is kept
//! while it has a connection (at most `max_connections` such), and after its
//! last connection ends it joins an LRU of `client_keys` idle clients
//! (default 4,096), the least recently disconnected evicted beyond it; at
//! most [`CLIENT_KEY_BYTES`] each, so under 640 KiB by default (gauge
//! `byzscale_net_client_keys`). The runtime keeps the protocol `Crypto`'s
//! client peers the same way, with the same bound. An evicted client that
//! comes back re-registers at its handshake; a request of it that reaches a
//! backup inside a PROPOSE meanwhile fails authentication there, as any
//! unknown client's does. So client-id churn holds no memory beyond the
//! bound.
//!
//! Frames queued while a node is disconnected stay queued (up to the bounds)
//! and are sent once it reconnects. The queue of a client learnt at its
//! handshake goes when its last connection ends (the client retransmits), so
//! clients that left, or churned through ids, hold no queue memory. The optional [`DelayMatrix`] stamps each frame
//! with a release time and the writer holds it until then (see [`crate::delay`]).

use crate::delay::DelayMatrix;
use crate::metrics::{Counter, Gauge, Registry};
use crate::wire::{self, Handshake};
use crate::NetError;
use bytes::Bytes;
use byzscale_core::codec::{self, HEADER_LEN};
use byzscale_core::crypto::{Identity, PublicIdentity};
use byzscale_core::leases::Leases;
use byzscale_core::Addr;
#[cfg(doc)]
use byzscale_core::ClientId;
use byzscale_core::{Priority, WireKind};
use hmac::{Hmac, Mac as _};
use rand::{Rng, RngCore};
use serde::de::DeserializeOwned;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Frame kind of the handshake hello.
pub const KIND_HELLO: u8 = WireKind::Hello.byte();
/// Frame kind of the handshake signature.
pub const KIND_AUTH: u8 = WireKind::Auth.byte();
/// Frame kind of a sealed batch: several frames under one tag.
pub const KIND_SEALED: u8 = WireKind::Sealed.byte();
/// Bytes of the HMAC-SHA256 tag after every post-handshake frame.
pub const TAG_LEN: usize = 32;
/// Payload limit during the handshake (before the peer is authenticated).
pub const HANDSHAKE_MAX: usize = 1024;
/// Upper bound on the bytes of one cached client key (address, public keys,
/// LRU node and map slot; checked in a test): 4,096 idle clients (the
/// default `client_keys`) take under 640 KiB.
pub const CLIENT_KEY_BYTES: usize = 160;

/// A peer this endpoint knows in advance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub addr: Addr,
    pub identity: PublicIdentity,
    /// `host:port` to dial; `None` for endpoints that only dial in (clients).
    pub socket: Option<String>,
}

/// Tuning knobs. The defaults suit a LAN or loopback deployment.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Largest payload accepted or sent (bytes, header and tag excluded).
    pub max_frame: usize,
    /// Outgoing queue bound per replica peer (frames; see the module docs).
    pub queue_capacity: usize,
    /// Outgoing queue bound per replica peer (bytes of queued frames, headers
    /// included; bulk before control, oldest first). At least one largest
    /// frame (`max_frame` + header).
    pub queue_bytes: usize,
    /// Outgoing queue bound per client (frames).
    pub client_queue_capacity: usize,
    /// Outgoing queue bound per connected client (bytes, as `queue_bytes`).
    pub client_queue_bytes: usize,
    /// Inbound messages buffered for the protocol task (all peers together).
    pub inbound_capacity: usize,
    /// Bytes of inbound frames held at once, all connections together: from
    /// the header of a frame until the protocol task has handled its last
    /// message (decoded messages come on top, about as much again). At least
    /// one largest frame with its tag.
    pub inbound_bytes: usize,
    /// Time a frame's payload may take to arrive once its header has.
    pub frame_timeout: Duration,
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Accepted (inbound) connections open at once, authenticated or not.
    pub max_connections: usize,
    /// Bytes gathered into one write.
    pub max_batch_bytes: usize,
    /// Keys of clients without a connection kept (LRU, see the module docs);
    /// each costs at most [`CLIENT_KEY_BYTES`] here and
    /// [`byzscale_core::crypto::LEARNT_PEER_BYTES`] in the protocol's crypto.
    pub client_keys: usize,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            max_frame: codec::DEFAULT_MAX_FRAME,
            queue_capacity: 8192,
            queue_bytes: 64 << 20,
            client_queue_capacity: 256,
            client_queue_bytes: codec::DEFAULT_MAX_FRAME + HEADER_LEN,
            inbound_capacity: 4096,
            inbound_bytes: 64 << 20,
            frame_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            max_connections: 1024,
            max_batch_bytes: 256 << 10,
            client_keys: 4096,
        }
    }
}

impl TransportOptions {
    /// Check the options; a clear error names the first bad one.
    pub fn validate(&self) -> Result<(), NetError> {
        let frame = self.max_frame.saturating_add(HEADER_LEN);
        let inbound = frame.saturating_add(TAG_LEN);
        if self.inbound_bytes < inbound || self.inbound_bytes > u32::MAX as usize {
            return Err(NetError::Config(format!(
                "transport option inbound_bytes = {} must be between one largest frame \
                 with its tag ({inbound} bytes) and {} bytes",
                self.inbound_bytes,
                u32::MAX
            )));
        }
        for (name, v) in [
            ("queue_bytes", self.queue_bytes),
            ("client_queue_bytes", self.client_queue_bytes),
        ] {
            if v < frame {
                return Err(NetError::Config(format!(
                    "transport option {name} = {v} bytes is below one largest frame \
                     ({frame} bytes: max_frame {} + {HEADER_LEN}-byte header)",
                    self.max_frame
                )));
            }
        }
        for (name, v) in [
            ("queue_capacity", self.queue_capacity),
            ("client_queue_capacity", self.client_queue_capacity),
        ] {
            if v == 0 {
                return Err(NetError::Config(format!(
                    "transport option {name} must be at least 1 frame"
                )));
            }
        }
        Ok(())
    }
}

/// Everything the transport needs to know about this endpoint.
#[derive(Clone)]
pub struct TransportConfig {
    pub me: Addr,
    pub identity: Identity,
    /// Frame kind of the protocol's messages (both ends must agree).
    pub kind: u8,
    /// `host:port` to listen on (ignored when a bound listener is passed in).
    pub listen: Option<String>,
    pub peers: Vec<PeerConfig>,
    /// Accept connections from clients not listed in `peers`.
    pub accept_clients: bool,
    pub options: TransportOptions,
    pub delay: Option<Arc<DelayMatrix>>,
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("me", &self.me)
            .field("kind", &self.kind)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("accept_clients", &self.accept_clients)
            .field("options", &self.options)
            .field("delay", &self.delay.is_some())
            .finish_non_exhaustive()
    }
}

/// What the transport hands to the runtime.
#[derive(Debug)]
pub enum Inbound<M> {
    /// A message whose sender was authenticated by the channel. `held`
    /// counts its frame against `inbound_bytes` until dropped: drop it once
    /// the message is handled.
    Message {
        from: Addr,
        msg: M,
        held: FrameShare,
    },
    /// A connection of a client not in the configuration was authenticated
    /// with `identity` (its id is [`byzscale_core::ClientId::of_key`] of it);
    /// delivered before any message of that connection, once per connection.
    PeerRegistered {
        addr: Addr,
        identity: PublicIdentity,
    },
    /// A connection announced by [`Inbound::PeerRegistered`] ended; delivered
    /// after its last message. When every connection of the client has ended,
    /// its key may be forgotten (the client re-registers when it reconnects).
    PeerGone { addr: Addr },
}

/// The share of `inbound_bytes` an inbound frame holds; released when the
/// last message of the frame is dropped.
#[derive(Clone, Debug)]
pub struct FrameShare {
    _permit: Arc<OwnedSemaphorePermit>,
}

#[derive(Debug)]
enum ConnError {
    /// Clean EOF at a frame boundary.
    Closed,
    Io(std::io::Error),
    /// Misbehaviour: counted and logged.
    Fault {
        kind: &'static str,
        detail: String,
    },
    /// The runtime is gone.
    Shutdown,
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        ConnError::Io(e)
    }
}

fn fault(kind: &'static str, detail: impl Into<String>) -> ConnError {
    ConnError::Fault {
        kind,
        detail: detail.into(),
    }
}

impl From<wire::Fault> for ConnError {
    fn from(f: wire::Fault) -> Self {
        ConnError::Fault {
            kind: f.kind,
            detail: f.detail,
        }
    }
}

/// Every kind of connection fault the transport reports.
pub const FAULT_KINDS: &[&str] = &[
    "handshake",
    "impostor",
    "unknown_peer",
    "oversized_frame",
    "malformed_frame",
    "unexpected_kind",
    "bad_mac",
    "malformed_message",
    "slow_frame",
];

#[derive(Clone)]
struct NetMetrics {
    frames_out: Counter,
    bytes_out: Counter,
    frames_in: Counter,
    bytes_in: Counter,
    dropped: Counter,
    /// Drops from the queues of clients, all clients together (a label per
    /// client id would let id churn grow the registry), per class.
    client_dropped: [Counter; 2],
    unroutable: Counter,
    faults: Counter,
    faults_by_kind: Vec<(&'static str, Counter)>,
    handshakes: Counter,
    connections: Gauge,
    client_keys: Gauge,
    queued: Gauge,
    queued_bytes: Gauge,
}

/// `byzscale_net_peer_frames_dropped_total{peer, class}`: drops from one
/// peer's queue (or from every client's, `peer="clients"`), per class.
fn dropped_by_class(r: &Registry, peer: &str) -> [Counter; 2] {
    Priority::ALL.map(|p| {
        r.counter_with(
            "byzscale_net_peer_frames_dropped_total",
            "frames dropped from a full outgoing queue, per peer and class",
            &[("peer", peer), ("class", p.name())],
        )
    })
}

impl NetMetrics {
    fn new(r: &Registry) -> Self {
        NetMetrics {
            frames_out: r.counter("byzscale_net_frames_sent_total", "frames written to peers"),
            bytes_out: r.counter(
                "byzscale_net_bytes_sent_total",
                "bytes written to peers (with tags)",
            ),
            frames_in: r.counter(
                "byzscale_net_frames_received_total",
                "authenticated frames received",
            ),
            bytes_in: r.counter(
                "byzscale_net_bytes_received_total",
                "bytes of authenticated frames received",
            ),
            dropped: r.counter(
                "byzscale_net_frames_dropped_total",
                "frames dropped from a full outgoing queue (bulk first, oldest first)",
            ),
            client_dropped: dropped_by_class(r, "clients"),
            unroutable: r.counter(
                "byzscale_net_unroutable_total",
                "frames for unknown destinations or over the size limit",
            ),
            faults: r.counter(
                "byzscale_net_faults_total",
                "connections closed for malformed, oversized or unauthenticated input",
            ),
            faults_by_kind: FAULT_KINDS
                .iter()
                .map(|k| {
                    let c = r.counter_with(
                        "byzscale_net_faults_by_kind_total",
                        "connection faults by kind",
                        &[("kind", k)],
                    );
                    (*k, c)
                })
                .collect(),
            handshakes: r.counter("byzscale_net_handshakes_total", "completed handshakes"),
            connections: r.gauge("byzscale_net_connections", "authenticated connections open"),
            client_keys: r.gauge(
                "byzscale_net_client_keys",
                "client keys learnt from handshakes and held (connected, and cached up to client_keys)",
            ),
            queued: r.gauge(
                "byzscale_net_queued_frames",
                "frames waiting in outgoing queues",
            ),
            queued_bytes: r.gauge(
                "byzscale_net_queued_bytes",
                "bytes of frames waiting in outgoing queues",
            ),
        }
    }
}

/// Per-direction frame authenticator with an implicit counter.
struct FrameMac {
    key: Hmac<Sha256>,
    dir: u8,
    counter: u64,
}

impl FrameMac {
    fn new(key: &[u8; 32], dir: u8) -> Self {
        FrameMac {
            key: Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length"),
            dir,
            counter: 0,
        }
    }
    fn state(&mut self, frame: &[u8]) -> Hmac<Sha256> {
        let mut h = self.key.clone();
        h.update(&[self.dir]);
        h.update(&self.counter.to_le_bytes());
        h.update(frame);
        self.counter += 1;
        h
    }
    fn tag(&mut self, frame: &[u8]) -> [u8; TAG_LEN] {
        self.state(frame).finalize().into_bytes().into()
    }
    fn verify(&mut self, frame: &[u8], tag: &[u8]) -> bool {
        self.state(frame).verify_slice(tag).is_ok()
    }
}

/// The frames of one class, oldest first, with their release times.
#[derive(Default)]
struct ClassQueue {
    frames: VecDeque<(Instant, Bytes)>,
}

struct SlotQueue {
    /// One queue per [`Priority`], in [`Priority::ALL`] order.
    classes: [ClassQueue; 2],
    frames: usize,
    bytes: usize,
    last_release: Instant,
}

impl SlotQueue {
    fn is_empty(&self) -> bool {
        self.frames == 0
    }
    /// Drop the oldest frame of the lowest class that has one.
    fn drop_one(&mut self) -> Option<(Priority, usize)> {
        for p in Priority::ALL.into_iter().rev() {
            if let Some((_, f)) = self.classes[p as usize].frames.pop_front() {
                self.frames -= 1;
                self.bytes -= f.len();
                return Some((p, f.len()));
            }
        }
        None
    }
}

/// The bounds of one peer's queue and where its drops are counted.
struct SlotBounds {
    frames: usize,
    bytes: usize,
    /// Frames dropped, per class in [`Priority::ALL`] order.
    dropped: [Counter; 2],
}

/// The outgoing side of one peer: a bounded queue that outlives connections.
struct PeerSlot {
    bounds: SlotBounds,
    /// The queue of a client learnt at its handshake: removed when its last
    /// connection ends.
    ephemeral: bool,
    link: Option<(Duration, Duration)>,
    queue: Mutex<SlotQueue>,
    notify: Notify,
    generation: AtomicU64,
}

impl PeerSlot {
    fn new(bounds: SlotBounds, link: Option<(Duration, Duration)>, ephemeral: bool) -> Self {
        PeerSlot {
            bounds: SlotBounds {
                frames: bounds.frames.max(1),
                ..bounds
            },
            ephemeral,
            link,
            queue: Mutex::new(SlotQueue {
                classes: Default::default(),
                frames: 0,
                bytes: 0,
                last_release: Instant::now(),
            }),
            notify: Notify::new(),
            generation: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `frame` in class `prio`; while the queue is over a bound, drop
    /// the oldest frame of the lowest class (possibly `frame` itself).
    fn push(&self, frame: Bytes, prio: Priority, m: &NetMetrics) {
        let was_empty = {
            let mut q = self.lock();
            let was_empty = q.is_empty();
            let now = Instant::now();
            let release = match self.link {
                None => now,
                Some((base, jitter)) => {
                    let extra = if jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        jitter.mul_f64(rand::thread_rng().gen::<f64>())
                    };
                    (now + base + extra).max(q.last_release)
                }
            };
            q.last_release = release;
            let len = frame.len();
            q.classes[prio as usize].frames.push_back((release, frame));
            q.frames += 1;
            q.bytes += len;
            m.queued.add(1);
            m.queued_bytes.add(len as i64);
            while q.frames > self.bounds.frames || q.bytes > self.bounds.bytes {
                let Some((p, len)) = q.drop_one() else { break };
                self.bounds.dropped[p as usize].inc();
                m.dropped.inc();
                m.queued.sub(1);
                m.queued_bytes.sub(len as i64);
            }
            was_empty
        };
        // A non-empty queue means the writer is busy, absent, or sleeping until an
        // earlier release time; it re-checks the queue before waiting again.
        if was_empty {
            self.notify.notify_waiters();
        }
    }

    /// Frames due at `now` (up to about `max_bytes`), control before bulk,
    /// and the next release time.
    fn take_ready(&self, now: Instant, max_bytes: usize, out: &mut Vec<Bytes>) -> Option<Instant> {
        let mut q = self.lock();
        let mut bytes = 0;
        let mut next: Option<Instant> = None;
        for p in Priority::ALL {
            while let Some((release, _)) = q.classes[p as usize].frames.front() {
                if *release > now {
                    next = Some(next.map_or(*release, |n| n.min(*release)));
                    break;
                }
                if bytes >= max_bytes && !out.is_empty() {
                    return Some(now);
                }
                let (_, f) = q.classes[p as usize]
                    .frames
                    .pop_front()
                    .expect("front exists");
                q.frames -= 1;
                q.bytes -= f.len();
                bytes += f.len();
                out.push(f);
            }
        }
        next
    }

    /// Empty the queue (a client that left); returns (frames, bytes) dropped.
    fn clear(&self) -> (usize, usize) {
        let mut q = self.lock();
        let gone = (q.frames, q.bytes);
        q.classes = Default::default();
        q.frames = 0;
        q.bytes = 0;
        gone
    }

    /// A new connection takes over this peer's queue; returns its generation.
    fn attach(&self) -> u64 {
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.notify.notify_waiters();
        g
    }
}

struct Shared<M> {
    me: Addr,
    identity: Identity,
    kind: u8,
    accept_clients: bool,
    opts: TransportOptions,
    delay: Option<Arc<DelayMatrix>>,
    /// Configured peers' keys.
    known: Mutex<HashMap<Addr, PublicIdentity>>,
    /// Keys of clients learnt from their handshakes: kept while connected,
    /// then the `client_keys` most recently disconnected.
    clients: Mutex<Leases<Addr, PublicIdentity>>,
    slots: Mutex<HashMap<Addr, Arc<PeerSlot>>>,
    inbound: mpsc::Sender<Inbound<M>>,
    /// Permits: bytes of inbound frames held (`inbound_bytes`).
    inbound_budget: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
    m: NetMetrics,
}

impl<M> Shared<M> {
    fn new(
        cfg: &TransportConfig,
        inbound: mpsc::Sender<Inbound<M>>,
        shutdown: watch::Receiver<bool>,
        registry: &Registry,
    ) -> Self {
        let s = Shared {
            me: cfg.me,
            identity: cfg.identity.clone(),
            kind: cfg.kind,
            accept_clients: cfg.accept_clients,
            opts: cfg.options.clone(),
            delay: cfg.delay.clone(),
            known: Mutex::new(HashMap::new()),
            clients: Mutex::new(Leases::new(cfg.options.client_keys)),
            slots: Mutex::new(HashMap::new()),
            inbound,
            inbound_budget: Arc::new(Semaphore::new(cfg.options.inbound_bytes)),
            shutdown,
            m: NetMetrics::new(registry),
        };
        for p in &cfg.peers {
            if p.addr != cfg.me {
                s.known_lock().insert(p.addr, p.identity);
                let dropped = dropped_by_class(registry, &p.addr.to_string());
                let slot = Arc::new(s.new_slot(p.addr, dropped, false));
                s.slots_lock().insert(p.addr, slot);
            }
        }
        s
    }

    fn known_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Addr, PublicIdentity>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn slots_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Addr, Arc<PeerSlot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn clients_lock(&self) -> std::sync::MutexGuard<'_, Leases<Addr, PublicIdentity>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection of client `peer` with key `pk` (not configured, its id
    /// checked against the key by the handshake) is up: hold its key while
    /// connected and tell the runtime before any of its messages. False if
    /// the connection must end (another key holds the id: only a hash
    /// collision gets here; or the runtime is gone).
    async fn client_up(&self, sock: Option<SocketAddr>, peer: Addr, pk: PublicIdentity) -> bool {
        {
            let mut clients = self.clients_lock();
            if clients.get(&peer).is_some_and(|k| *k != pk) {
                drop(clients);
                let e = fault("impostor", "client id already bound to another key");
                self.report(sock, Some(peer), e);
                return false;
            }
            if clients.open(peer, pk).is_none() {
                debug!(me = %self.me, %peer, "new client");
            }
            self.m.client_keys.set(clients.len() as i64);
        }
        let up = Inbound::PeerRegistered {
            addr: peer,
            identity: pk,
        };
        if self.inbound.send(up).await.is_err() {
            self.client_down(peer).await;
            return false;
        }
        true
    }

    /// A connection announced by [`Shared::client_up`] ended (after its last
    /// message was handed on): after the client's last connection its key
    /// joins the LRU of idle clients, and the runtime is told.
    async fn client_down(&self, peer: Addr) {
        {
            let mut clients = self.clients_lock();
            clients.close(&peer);
            self.m.client_keys.set(clients.len() as i64);
        }
        let _ = self.inbound.send(Inbound::PeerGone { addr: peer }).await;
    }

    fn new_slot(&self, peer: Addr, dropped: [Counter; 2], ephemeral: bool) -> PeerSlot {
        let (frames, bytes) = match peer {
            Addr::Node(_) => (self.opts.queue_capacity, self.opts.queue_bytes),
            Addr::Client(_) => (
                self.opts.client_queue_capacity,
                self.opts.client_queue_bytes,
            ),
        };
        let link = self.delay.as_ref().and_then(|d| d.link(self.me, peer));
        let bounds = SlotBounds {
            frames,
            bytes,
            dropped,
        };
        PeerSlot::new(bounds, link, ephemeral)
    }

    /// The queue of `peer` (a new one for a client not configured), taken
    /// over by a new connection; returns it and the connection's generation.
    fn attach_slot(&self, peer: Addr) -> (Arc<PeerSlot>, u64) {
        let mut slots = self.slots_lock();
        let slot = slots
            .entry(peer)
            .or_insert_with(|| Arc::new(self.new_slot(peer, self.m.client_dropped.clone(), true)))
            .clone();
        let generation = slot.attach();
        (slot, generation)
    }

    /// The connection of generation `generation` to `peer` ended: the queue
    /// of a client that was not configured goes with it unless a newer
    /// connection took it over (the client retransmits what it misses after
    /// a reconnect), so clients that left hold no memory.
    fn detach_slot(&self, peer: Addr, slot: &PeerSlot, generation: u64) {
        if !slot.ephemeral {
            return;
        }
        let mut slots = self.slots_lock();
        if slot.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        slots.remove(&peer);
        drop(slots);
        let (frames, bytes) = slot.clear();
        self.m.queued.sub(frames as i64);
        self.m.queued_bytes.sub(bytes as i64);
    }

    fn report(&self, sock: Option<SocketAddr>, peer: Option<Addr>, e: ConnError) {
        match e {
            ConnError::Fault { kind, detail } => {
                self.m.faults.inc();
                if let Some((_, c)) = self.m.faults_by_kind.iter().find(|(k, _)| *k == kind) {
                    c.inc();
                }
                warn!(me = %self.me, ?sock, ?peer, kind, %detail, "closing connection");
            }
            ConnError::Io(err) => {
                debug!(me = %self.me, ?sock, ?peer, error = %err, "connection error")
            }
            ConnError::Closed => debug!(me = %self.me, ?sock, ?peer, "connection closed by peer"),
            ConnError::Shutdown => {}
        }
    }
}

/// Read and check one frame header: its kind, payload length and bytes.
async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<(u8, usize, [u8; HEADER_LEN]), ConnError> {
    let mut header = [0u8; HEADER_LEN];
    // A clean EOF before the first header byte is a normal close.
    let n = r.read(&mut header).await?;
    if n == 0 {
        return Err(ConnError::Closed);
    }
    if n < HEADER_LEN {
        r.read_exact(&mut header[n..]).await?;
    }
    let (kind, len) = codec::parse_header(&header, limit).map_err(wire::codec_fault)?;
    Ok((kind, len, header))
}

/// Read one handshake frame. Returns the kind and the whole frame (header
/// included).
async fn read_raw_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<(u8, Vec<u8>), ConnError> {
    let (kind, len, header) = read_header(r, limit).await?;
    let mut frame = vec![0u8; HEADER_LEN + len];
    frame[..HEADER_LEN].copy_from_slice(&header);
    r.read_exact(&mut frame[HEADER_LEN..]).await?;
    Ok((kind, frame))
}

enum Role {
    Dial(Addr),
    Accept,
}

struct Session {
    peer: Addr,
    send: FrameMac,
    recv: FrameMac,
    /// The key of a client this node did not know.
    new_client: Option<PublicIdentity>,
}

async fn handshake<M>(
    shared: &Shared<M>,
    r: &mut BufReader<OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
    role: Role,
) -> Result<Session, ConnError> {
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let dialed = match role {
        Role::Dial(a) => Some(a),
        Role::Accept => None,
    };
    let hs = Handshake::new(
        shared.me,
        shared.identity.clone(),
        shared.kind,
        dialed,
        nonce,
    );
    w.write_all(hs.hello_frame()).await?;
    // A peer that closes before saying anything (a port scan, a health check, a
    // node shutting down) is not counted as a fault.
    let (_, their_frame) = read_raw_frame(r, HANDSHAKE_MAX).await?;
    let (await_auth, auth) = {
        let known = shared.known_lock();
        hs.on_hello(
            &their_frame,
            |a| known.get(&a).copied(),
            shared.accept_clients,
        )?
    };
    w.write_all(&auth).await?;
    let (_, auth_frame) = read_raw_frame(r, HANDSHAKE_MAX).await?;
    let keys = await_auth.on_auth(&auth_frame)?;
    let (send_dir, recv_dir) = if keys.dialer { (0, 1) } else { (1, 0) };
    Ok(Session {
        peer: keys.peer,
        send: FrameMac::new(&keys.key, send_dir),
        recv: FrameMac::new(&keys.key, recv_dir),
        new_client: keys.new_client,
    })
}

/// Read one authenticated-phase frame (tag included): once its header is
/// parsed, wait for its share of `inbound_bytes`, then give its payload
/// `frame_timeout` to arrive.
async fn read_held_frame<M>(
    shared: &Shared<M>,
    r: &mut BufReader<OwnedReadHalf>,
    limit: usize,
) -> Result<(u8, Vec<u8>, FrameShare), ConnError> {
    let (kind, len, header) = read_header(r, limit).await?;
    let size = HEADER_LEN + len + TAG_LEN;
    let permit = shared
        .inbound_budget
        .clone()
        .acquire_many_owned(size as u32)
        .await
        .map_err(|_| ConnError::Shutdown)?;
    let mut frame = vec![0u8; size];
    frame[..HEADER_LEN].copy_from_slice(&header);
    match tokio::time::timeout(
        shared.opts.frame_timeout,
        r.read_exact(&mut frame[HEADER_LEN..]),
    )
    .await
    {
        Ok(r) => r?,
        Err(_) => {
            let detail = format!("a {size}-byte frame not complete within the frame timeout");
            return Err(fault("slow_frame", detail));
        }
    };
    let share = FrameShare {
        _permit: Arc::new(permit),
    };
    Ok((kind, frame, share))
}

async fn read_loop<M: DeserializeOwned>(
    shared: &Shared<M>,
    r: &mut BufReader<OwnedReadHalf>,
    mut mac: FrameMac,
    peer: Addr,
) -> Result<(), ConnError> {
    let max = shared.opts.max_frame;
    loop {
        let (kind, frame, held) = read_held_frame(shared, r, max).await?;
        if kind != shared.kind && kind != KIND_SEALED {
            return Err(fault(
                "unexpected_kind",
                format!("kind {kind:#x}, expected {:#x}", shared.kind),
            ));
        }
        let body = frame.len() - TAG_LEN;
        if !mac.verify(&frame[..body], &frame[body..]) {
            return Err(fault(
                "bad_mac",
                "frame authentication failed (forged, replayed or corrupted)",
            ));
        }
        shared.m.bytes_in.add(frame.len() as u64);
        for payload in wire::payloads(&frame[..body], shared.kind, max) {
            deliver(shared, peer, payload?, max, &held).await?;
        }
    }
}

/// Decode one authenticated message and hand it to the protocol task.
async fn deliver<M: DeserializeOwned>(
    shared: &Shared<M>,
    peer: Addr,
    payload: &[u8],
    max: usize,
    held: &FrameShare,
) -> Result<(), ConnError> {
    let msg: M = wire::decode_message(payload, max)?;
    shared.m.frames_in.inc();
    let held = held.clone();
    shared
        .inbound
        .send(Inbound::Message {
            from: peer,
            msg,
            held,
        })
        .await
        .map_err(|_| ConnError::Shutdown)
}

async fn write_loop<M>(
    shared: &Shared<M>,
    slot: &PeerSlot,
    generation: u64,
    w: &mut OwnedWriteHalf,
    mut mac: FrameMac,
) -> Result<(), ConnError> {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        let notified = slot.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if slot.generation.load(Ordering::SeqCst) != generation {
            debug!(me = %shared.me, "connection superseded by a newer one");
            return Ok(());
        }
        batch.clear();
        let next = slot.take_ready(Instant::now(), shared.opts.max_batch_bytes, &mut batch);
        if batch.is_empty() {
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
            continue;
        }
        let total: usize = batch.iter().map(|f| f.len()).sum();
        shared.m.queued.sub(batch.len() as i64);
        shared.m.queued_bytes.sub(total as i64);
        buf.clear();
        if batch.len() > 1 && total <= shared.opts.max_frame {
            let start = buf.len();
            buf.extend_from_slice(&codec::header(KIND_SEALED, total));
            for f in &batch {
                buf.extend_from_slice(f);
            }
            let tag = mac.tag(&buf[start..]);
            buf.extend_from_slice(&tag);
        } else {
            for f in &batch {
                buf.extend_from_slice(f);
                buf.extend_from_slice(&mac.tag(f));
            }
        }
        w.write_all(&buf).await?;
        shared.m.frames_out.add(batch.len() as u64);
        shared.m.bytes_out.add(buf.len() as u64);
        if buf.capacity() > (4 << 20) {
            buf = Vec::with_capacity(64 << 10);
        }
    }
}

/// Run one connection to its end. Returns whether the handshake succeeded.
async fn run_connection<M: DeserializeOwned + Send + 'static>(
    shared: Arc<Shared<M>>,
    stream: TcpStream,
    role: Role,
) -> bool {
    let sock = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::with_capacity(64 << 10, r);
    let expected = match role {
        Role::Dial(a) => Some(a),
        Role::Accept => None,
    };
    let session = match tokio::time::timeout(
        shared.opts.handshake_timeout,
        handshake(&shared, &mut r, &mut w, role),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.report(sock, expected, e);
            return false;
        }
        Err(_) if expected.is_none() => {
            // an accepted connection that does not complete the handshake in time
            shared.report(sock, None, fault("handshake", "timed out"));
            return false;
        }
        Err(_) => {
            debug!(me = %shared.me, ?sock, peer = ?expected, "handshake timed out");
            return false;
        }
    };
    let peer = session.peer;
    let new_client = session.new_client;
    if let Some(pk) = new_client {
        if !shared.client_up(sock, peer, pk).await {
            return false;
        }
    }
    shared.m.handshakes.inc();
    let (slot, generation) = shared.attach_slot(peer);
    shared.m.connections.add(1);
    debug!(me = %shared.me, %peer, ?sock, "authenticated connection up");
    let Session { send, recv, .. } = session;
    let res = tokio::select! {
        r = read_loop(&shared, &mut r, recv, peer) => r,
        w = write_loop(&shared, &slot, generation, &mut w, send) => w,
    };
    shared.m.connections.sub(1);
    shared.detach_slot(peer, &slot, generation);
    if new_client.is_some() {
        shared.client_down(peer).await;
    }
    if let Err(e) = res {
        shared.report(sock, Some(peer), e);
    }
    true
}

/// One authenticated connection driven by hand: the real handshake as `me`,
/// then frames sent under the session's MAC, and nothing read unless the
/// caller reads. For tools that play a peer, honest or not (the benchmark of
/// a hostile peer and client, tests); the transport itself never uses it.
pub struct RawConnection {
    /// Kept open and never read here: the peer's writes fill the socket's
    /// buffers, then its queue for us.
    _reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    session: Session,
}

impl RawConnection {
    /// Dial `peer` (its `socket` must be set) as `me`, whose key is
    /// `identity`, for frames of `kind`; fails if the handshake does not
    /// complete within `timeout`.
    pub async fn connect(
        me: Addr,
        identity: Identity,
        kind: u8,
        peer: PeerConfig,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        let socket = peer.socket.clone().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "the peer has no socket")
        })?;
        let to = peer.addr;
        let cfg = TransportConfig {
            me,
            identity,
            kind,
            listen: None,
            peers: vec![peer],
            accept_clients: false,
            options: TransportOptions::default(),
            delay: None,
        };
        let (tx, _rx) = mpsc::channel::<Inbound<()>>(1);
        let (_stop, stop_rx) = watch::channel(false);
        let shared = Shared::new(&cfg, tx, stop_rx, &Registry::new());
        let dial = async {
            let stream = TcpStream::connect(&socket).await?;
            let _ = stream.set_nodelay(true);
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let session = handshake(&shared, &mut r, &mut w, Role::Dial(to))
                .await
                .map_err(|e| std::io::Error::other(format!("handshake with {to}: {e:?}")))?;
            Ok(RawConnection {
                _reader: r,
                writer: w,
                session,
            })
        };
        tokio::time::timeout(timeout, dial)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
    }

    /// The authenticated peer.
    pub fn peer(&self) -> Addr {
        self.session.peer
    }

    /// Send one encoded frame (header included) under the session's tag.
    pub async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let tag = self.session.send.tag(frame);
        self.writer.write_all(frame).await?;
        self.writer.write_all(&tag).await
    }
}

fn jittered(d: Duration) -> Duration {
    let f: f64 = rand::thread_rng().gen_range(0.5..1.5);
    d.mul_f64(f)
}

async fn dial_loop<M: DeserializeOwned + Send + 'static>(
    shared: Arc<Shared<M>>,
    peer: Addr,
    socket: String,
) {
    let opts = shared.opts.clone();
    let mut backoff = opts.backoff_min;
    loop {
        let connected =
            match tokio::time::timeout(opts.connect_timeout, TcpStream::connect(&socket)).await {
                Ok(Ok(stream)) => run_connection(shared.clone(), stream, Role::Dial(peer)).await,
                Ok(Err(e)) => {
                    debug!(me = %shared.me, %peer, %socket, error = %e, "connect failed");
                    false
                }
                Err(_) => {
                    debug!(me = %shared.me, %peer, %socket, "connect timed out");
                    false
                }
            };
        if connected {
            backoff = opts.backoff_min;
        }
        tokio::time::sleep(jittered(backoff)).await;
        if !connected {
            backoff = (backoff * 2).min(opts.backoff_max);
        }
    }
}

async fn accept_loop<M: DeserializeOwned + Send + 'static>(
    shared: Arc<Shared<M>>,
    listener: TcpListener,
    guard: mpsc::Sender<()>,
) {
    let permits = Arc::new(Semaphore::new(shared.opts.max_connections.max(1)));
    loop {
        let (stream, sock) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // e.g. out of file descriptors: back off instead of spinning
                warn!(me = %shared.me, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(me = %shared.me, %sock, "too many connections, refusing");
            continue;
        };
        let s = shared.clone();
        spawn_task(&shared.shutdown, guard.clone(), async move {
            let _permit = permit;
            run_connection(s, stream, Role::Accept).await;
        });
    }
}

/// Spawn `fut`, cancelled at shutdown; `guard` is dropped when the task ends.
fn spawn_task(
    shutdown: &watch::Receiver<bool>,
    guard: mpsc::Sender<()>,
    fut: impl Future<Output = ()> + Send + 'static,
) {
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let _guard = guard;
        tokio::select! {
            _ = fut => {}
            _ = stop.wait_for(|v| *v) => {}
        }
    });
}

/// The transport of one endpoint. Owned by the runtime; `send` never blocks.
pub struct Transport<M> {
    shared: Arc<Shared<M>>,
    shutdown: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    local_addr: Option<SocketAddr>,
}

/// Listen on `addr` (`host:port`), if one is given.
pub(crate) async fn listen_on(addr: Option<&str>) -> Result<Option<TcpListener>, NetError> {
    let Some(addr) = addr else { return Ok(None) };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| NetError::Bind {
            addr: addr.to_string(),
            source,
        })
}

impl<M: DeserializeOwned + Send + 'static> Transport<M> {
    /// Start listening (on `listener`, or on `cfg.listen` if `listener` is `None`)
    /// and dialing. Returns the transport and the stream of inbound events.
    pub async fn start(
        cfg: TransportConfig,
        listener: Option<TcpListener>,
        registry: &Registry,
    ) -> Result<(Self, mpsc::Receiver<Inbound<M>>), NetError> {
        cfg.options.validate()?;
        let listener = match listener {
            Some(l) => Some(l),
            None => listen_on(cfg.listen.as_deref()).await?,
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let (in_tx, in_rx) = mpsc::channel(cfg.options.inbound_capacity.max(1));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (guard, done) = mpsc::channel(1);
        let shared = Arc::new(Shared::new(&cfg, in_tx, stop_rx, registry));
        let listens = listener.is_some();
        if let Some(l) = listener {
            info!(me = %cfg.me, addr = ?local_addr, "listening");
            let s = shared.clone();
            spawn_task(
                &shared.shutdown,
                guard.clone(),
                accept_loop(s, l, guard.clone()),
            );
        }
        for p in &cfg.peers {
            let Some(socket) = &p.socket else { continue };
            if p.addr == cfg.me || (listens && p.addr < cfg.me) {
                continue; // the peer dials us
            }
            let s = shared.clone();
            spawn_task(
                &shared.shutdown,
                guard.clone(),
                dial_loop(s, p.addr, socket.clone()),
            );
        }
        drop(guard);
        Ok((
            Transport {
                shared,
                shutdown: stop_tx,
                done,
                local_addr,
            },
            in_rx,
        ))
    }
}

impl<M> Transport<M> {
    pub fn me(&self) -> Addr {
        self.shared.me
    }
    /// The bound listening address, if this endpoint listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }
    /// Frame kind of the protocol messages.
    pub fn kind(&self) -> u8 {
        self.shared.kind
    }
    /// Largest payload this transport sends or accepts.
    pub fn max_frame(&self) -> usize {
        self.shared.opts.max_frame
    }
    /// Whether `peer` is known (configured, or a client connected or cached).
    pub fn knows(&self, peer: Addr) -> bool {
        self.shared.known_lock().contains_key(&peer) || self.shared.clients_lock().contains(&peer)
    }
    /// Keys of clients learnt from handshakes: (connected, cached without a
    /// connection).
    pub fn client_keys(&self) -> (usize, usize) {
        let c = self.shared.clients_lock();
        (c.open_len(), c.idle_len())
    }

    fn check(&self, frame: &Bytes) -> bool {
        if frame.len() < HEADER_LEN || frame.len() - HEADER_LEN > self.shared.opts.max_frame {
            self.shared.m.unroutable.inc();
            warn!(me = %self.shared.me, len = frame.len(), "dropping an outgoing frame over the size limit");
            return false;
        }
        true
    }

    /// Queue an encoded frame (from `codec::encode_frame` with this transport's
    /// kind) for `to` in class `prio`. Never blocks; returns false if `to` is
    /// unknown (or a client not connected) or the frame is too large.
    pub fn send(&self, to: Addr, frame: Bytes, prio: Priority) -> bool {
        if !self.check(&frame) {
            return false;
        }
        let slot = self.shared.slots_lock().get(&to).cloned();
        match slot {
            Some(s) => {
                s.push(frame, prio, &self.shared.m);
                true
            }
            None => {
                self.shared.m.unroutable.inc();
                debug!(me = %self.shared.me, %to, "no route to destination");
                false
            }
        }
    }

    /// Queue the same encoded frame for several peers (each gets its own tag).
    pub fn multicast(&self, to: &[Addr], frame: &Bytes, prio: Priority) {
        if !self.check(frame) {
            return;
        }
        let slots: Vec<Option<Arc<PeerSlot>>> = {
            let map = self.shared.slots_lock();
            to.iter().map(|a| map.get(a).cloned()).collect()
        };
        for s in slots {
            match s {
                Some(s) => s.push(frame.clone(), prio, &self.shared.m),
                None => self.shared.m.unroutable.inc(),
            }
        }
    }

    /// Stop every task of the transport and wait until they have ended (the
    /// listener is closed when this returns).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.done.recv().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::{ClientId, NodeId};

    fn node(i: u32) -> Addr {
        Addr::Node(NodeId(i))
    }
    fn ident(i: u32) -> Identity {
        Identity::from_seed([i as u8 + 1; 32])
    }

    fn cfg(me: u32, peers: &[(u32, Option<SocketAddr>)]) -> TransportConfig {
        TransportConfig {
            me: node(me),
            identity: ident(me),
            kind: 7,
            listen: None,
            peers: peers
                .iter()
                .map(|(i, s)| PeerConfig {
                    addr: node(*i),
                    identity: ident(*i).public(),
                    socket: s.map(|s| s.to_string()),
                })
                .collect(),
            accept_clients: false,
            options: TransportOptions {
                backoff_min: Duration::from_millis(10),
                backoff_max: Duration::from_millis(100),
                ..Default::default()
            },
            delay: None,
        }
    }

    /// Handshake by hand as node 1 against a node-0 transport, then misbehave
    /// after authentication.
    async fn authenticated_raw(
        target: SocketAddr,
    ) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf, Session) {
        let peer = cfg(1, &[(0, Some(target))]).peers.remove(0);
        let c = RawConnection::connect(node(1), ident(1), 7, peer, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(c.peer(), node(0));
        (c._reader, c.writer, c.session)
    }

    /// A transport started with `c` on a fresh local port: the transport, its
    /// inbound events, the port and its metrics.
    async fn listening<M: DeserializeOwned + Send + 'static>(
        c: TransportConfig,
    ) -> (
        Transport<M>,
        mpsc::Receiver<Inbound<M>>,
        SocketAddr,
        Registry,
    ) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let reg = Registry::new();
        let (t, rx) = Transport::start(c, Some(l), &reg).await.unwrap();
        (t, rx, addr, reg)
    }

    /// The next inbound event is message `want` from node 1.
    async fn expect_from_1(rx: &mut mpsc::Receiver<Inbound<u64>>, want: u64) {
        match rx.recv().await.unwrap() {
            Inbound::Message { from, msg, .. } => assert_eq!((from, msg), (node(1), want)),
            other => panic!("{other:?}"),
        }
    }

    async fn wait_closed(r: &mut BufReader<OwnedReadHalf>) {
        let mut b = [0u8; 64];
        loop {
            match r.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    #[tokio::test]
    async fn post_handshake_faults_close_the_connection() {
        let (t, mut rx, addr, reg) = listening::<u64>(cfg(0, &[(1, None)])).await;
        let faults = reg.counter("byzscale_net_faults_total", "");
        tokio::time::timeout(Duration::from_secs(20), async {
            // 1. a valid frame is delivered
            let (mut r, mut w, mut s) = authenticated_raw(addr).await;
            let f = codec::encode_frame(7, &42u64);
            let tag = s.send.tag(&f);
            w.write_all(&[f.as_slice(), &tag].concat()).await.unwrap();
            expect_from_1(&mut rx, 42).await;
            // 2. a replayed frame (same bytes, stale counter) is rejected
            w.write_all(&[f.as_slice(), &tag].concat()).await.unwrap();
            wait_closed(&mut r).await;
            assert_eq!(faults.get(), 1);

            // 3. an oversized header after authentication
            let (mut r, mut w, _s) = authenticated_raw(addr).await;
            let mut h = codec::encode_frame(7, &1u64);
            h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
            w.write_all(&h[..HEADER_LEN]).await.unwrap();
            wait_closed(&mut r).await;
            assert_eq!(faults.get(), 2);

            // 4. an authenticated frame whose payload is not a message
            let (mut r, mut w, mut s) = authenticated_raw(addr).await;
            let f = codec::encode_frame(7, &vec![0xFFu8; 20]);
            let tag = s.send.tag(&f);
            w.write_all(&[f.as_slice(), &tag].concat()).await.unwrap();
            wait_closed(&mut r).await;
            assert_eq!(faults.get(), 3);
        })
        .await
        .expect("test finished in time");
        t.shutdown().await;
    }

    fn sealed(frames: &[Vec<u8>], s: &mut Session) -> Vec<u8> {
        let inner: Vec<u8> = frames.concat();
        let mut out = codec::header(KIND_SEALED, inner.len()).to_vec();
        out.extend_from_slice(&inner);
        let tag = s.send.tag(&out);
        out.extend_from_slice(&tag);
        out
    }

    #[tokio::test]
    async fn sealed_batches_deliver_in_order_and_are_checked_inside() {
        let (t, mut rx, addr, reg) = listening::<u64>(cfg(0, &[(1, None)])).await;
        let faults = reg.counter("byzscale_net_faults_total", "");
        tokio::time::timeout(Duration::from_secs(20), async {
            // three messages under one tag arrive in order
            let (mut r, mut w, mut s) = authenticated_raw(addr).await;
            let frames: Vec<Vec<u8>> = (1..=3u64).map(|v| codec::encode_frame(7, &v)).collect();
            w.write_all(&sealed(&frames, &mut s)).await.unwrap();
            for want in 1..=3u64 {
                expect_from_1(&mut rx, want).await;
            }
            // an inner frame of another kind closes the connection
            let bad = vec![codec::encode_frame(7, &4u64), codec::encode_frame(9, &5u64)];
            w.write_all(&sealed(&bad, &mut s)).await.unwrap();
            wait_closed(&mut r).await;
            assert_eq!(faults.get(), 1);
            // so does an inner header announcing more than the sealed frame holds
            let (mut r, mut w, mut s) = authenticated_raw(addr).await;
            let mut cut = codec::encode_frame(7, &6u64);
            cut[4..8].copy_from_slice(&100u32.to_le_bytes());
            w.write_all(&sealed(&[cut], &mut s)).await.unwrap();
            wait_closed(&mut r).await;
            assert_eq!(faults.get(), 2);
        })
        .await
        .expect("test finished in time");
        // the message before the bad inner frame was delivered, none after it
        match rx.try_recv() {
            Ok(Inbound::Message { msg, .. }) => assert_eq!(msg, 4),
            other => panic!("{other:?}"),
        }
        assert!(rx.try_recv().is_err());
        t.shutdown().await;
    }

    #[test]
    fn drop_oldest_queue_and_release_order() {
        let reg = Registry::new();
        let m = NetMetrics::new(&reg);
        let bounds = |frames| SlotBounds {
            frames,
            bytes: 1 << 20,
            dropped: dropped_by_class(&reg, "test"),
        };
        let slot = PeerSlot::new(bounds(3), None, false);
        for i in 0..5u8 {
            slot.push(Bytes::from(vec![i]), Priority::Control, &m);
        }
        let mut out = Vec::new();
        assert_eq!(slot.take_ready(Instant::now(), 1 << 20, &mut out), None);
        assert_eq!(
            out,
            vec![
                Bytes::from(vec![2]),
                Bytes::from(vec![3]),
                Bytes::from(vec![4])
            ]
        );
        assert_eq!(m.dropped.get(), 2);
        assert_eq!(m.queued.get(), 3); // the writer subtracts what it takes

        let delayed = PeerSlot::new(
            bounds(10),
            Some((Duration::from_secs(60), Duration::from_millis(5))),
            false,
        );
        for i in 0..3u8 {
            delayed.push(Bytes::from(vec![i]), Priority::Control, &m);
        }
        let mut out = Vec::new();
        let next = delayed
            .take_ready(Instant::now(), 1 << 20, &mut out)
            .unwrap();
        assert!(out.is_empty() && next > Instant::now());
        let q = delayed.lock();
        let times: Vec<Instant> = q.classes[0].frames.iter().map(|(t, _)| *t).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    /// A small frame limit and byte bound, so a flood crosses the bound fast.
    fn bounded(mut c: TransportConfig) -> TransportConfig {
        c.options.max_frame = 64 << 10;
        c.options.queue_bytes = 1 << 20;
        c
    }

    /// An address nothing listens on.
    fn dead_socket() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    fn bytes_frame(len: usize, fill: u8) -> Bytes {
        Bytes::from(codec::encode_frame(7, &vec![fill; len]))
    }

    #[tokio::test]
    async fn a_dead_peer_flooded_with_sends_stays_within_the_byte_bound() {
        let reg = Registry::new();
        let c = bounded(cfg(0, &[(1, Some(dead_socket()))]));
        let bound = c.options.queue_bytes as i64;
        let (t, _rx) = Transport::<Vec<u8>>::start(c, None, &reg).await.unwrap();
        let queued = reg.gauge("byzscale_net_queued_bytes", "");
        let mut peak = 0;
        // 64 MiB of bulk and 4 MiB of control for a peer that never answers
        for i in 0..2048u32 {
            assert!(t.send(node(1), bytes_frame(32 << 10, 1), Priority::Bulk));
            if i % 2 == 0 {
                assert!(t.send(node(1), bytes_frame(4 << 10, 2), Priority::Control));
            }
            peak = peak.max(queued.get());
        }
        assert!(peak <= bound, "queued {peak} bytes, bound {bound}");
        assert!(queued.get() > bound / 2, "the queue keeps what fits");
        let dropped = |class| {
            reg.counter_with(
                "byzscale_net_peer_frames_dropped_total",
                "",
                &[("peer", &node(1).to_string()), ("class", class)],
            )
            .get()
        };
        // the flood went over the bound by far: bulk went first, every
        // control frame (4 MiB > bound, so some had to go) after all bulk
        assert!(dropped("bulk") >= 2048 - 32, "{}", dropped("bulk"));
        assert!(dropped("control") > 0);
        let total = reg.counter("byzscale_net_frames_dropped_total", "").get();
        assert_eq!(total, dropped("bulk") + dropped("control"));
        t.shutdown().await;
    }

    #[tokio::test]
    async fn control_frames_survive_a_flood_of_bulk_ones() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let reg = Registry::new();
        let c = bounded(cfg(0, &[(1, Some(addr))]));
        let (t, _rx) = Transport::<Vec<u8>>::start(c, None, &reg).await.unwrap();
        // peer 1 is not up yet: 16 control frames, then 16 MiB of bulk (16
        // times the bound), then 16 more control frames
        for i in 0..16u8 {
            assert!(t.send(node(1), bytes_frame(1, i), Priority::Control));
        }
        for _ in 0..512 {
            assert!(t.send(node(1), bytes_frame(32 << 10, 0xB0), Priority::Bulk));
        }
        for i in 16..32u8 {
            assert!(t.send(node(1), bytes_frame(1, i), Priority::Control));
        }
        // peer 1 comes up and gets every control frame, in order, first
        l.set_nonblocking(true).unwrap();
        let l = TcpListener::from_std(l).unwrap();
        let reg1 = Registry::new();
        let (t1, mut rx) =
            Transport::<Vec<u8>>::start(bounded(cfg(1, &[(0, None)])), Some(l), &reg1)
                .await
                .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            let mut got = Vec::new();
            while got.len() < 32 + 1 {
                match rx.recv().await {
                    Some(Inbound::Message { msg, .. }) => got.push(msg),
                    Some(other) => panic!("{other:?}"),
                    None => break,
                }
            }
            got
        })
        .await
        .expect("frames arrived in time");
        let control: Vec<u8> = got[..32].iter().map(|m| m[0]).collect();
        assert_eq!(control, (0..32u8).collect::<Vec<_>>());
        assert!(got[..32].iter().all(|m| m.len() == 1));
        assert_eq!(got[32].len(), 32 << 10, "bulk that fit follows");
        t.shutdown().await;
        t1.shutdown().await;
    }

    #[tokio::test]
    async fn a_clients_queue_goes_with_its_last_connection() {
        let mut c = cfg(0, &[]);
        c.accept_clients = true;
        let (t, mut rx, addr, reg) = listening::<Vec<u8>>(c).await;
        let queued = reg.gauge("byzscale_net_queued_bytes", "");
        let id = Identity::from_seed([77; 32]);
        let client = Addr::Client(ClientId::of_key(&id.public()));
        let server = PeerConfig {
            addr: node(0),
            identity: ident(0).public(),
            socket: Some(addr.to_string()),
        };
        let conn = RawConnection::connect(client, id, 7, server, Duration::from_secs(10))
            .await
            .unwrap();
        match rx.recv().await.unwrap() {
            Inbound::PeerRegistered { addr, .. } => assert_eq!(addr, client),
            other => panic!("{other:?}"),
        }
        // the client never reads: replies pile up in its queue
        tokio::time::timeout(Duration::from_secs(20), async {
            while !t.send(client, bytes_frame(1, 0), Priority::Control) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the client's queue exists once it is connected");
        // 32 MiB, more than the socket buffers and the queue's 16 MiB hold
        for _ in 0..512 {
            assert!(t.send(client, bytes_frame(64 << 10, 1), Priority::Control));
        }
        assert!(queued.get() > 0);
        drop(conn);
        // it left: its queue and what it held are gone, sends are unroutable
        tokio::time::timeout(Duration::from_secs(20), async {
            while t.send(client, bytes_frame(1, 2), Priority::Control) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the queue went with the connection");
        assert_eq!(queued.get(), 0);
        // the runtime hears that the connection of the client ended
        let gone = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        match gone.expect("told in time") {
            Some(Inbound::PeerGone { addr }) => assert_eq!(addr, client),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.client_keys(), (0, 1));
        t.shutdown().await;
    }

    #[test]
    fn a_cached_client_key_fits_its_byte_bound() {
        let ptr = std::mem::size_of::<usize>();
        // LRU node (entry, two links) and its hash-map slot (key ref, node
        // pointer, control byte)
        let entry = std::mem::size_of::<(Addr, PublicIdentity)>() + 4 * ptr + 1;
        assert!(entry <= CLIENT_KEY_BYTES, "{entry} bytes per client key");
    }

    #[tokio::test]
    async fn inbound_frames_wait_for_the_byte_budget_and_slow_ones_are_cut() {
        let mut c = bounded(cfg(0, &[(1, None)]));
        let frame = (64 << 10) + HEADER_LEN + TAG_LEN;
        c.options.inbound_bytes = 4 * frame + 100;
        c.options.frame_timeout = Duration::from_millis(300);
        let (t, mut rx, addr, reg) = listening::<Vec<u8>>(c).await;
        let received = reg.counter("byzscale_net_frames_received_total", "");
        tokio::time::timeout(Duration::from_secs(20), async {
            let (mut r, mut w, mut s) = authenticated_raw(addr).await;
            // 32 largest frames; the protocol holds on to what it got
            let payload = 64 << 10;
            let f = codec::encode_frame(7, &vec![5u8; payload - 16]);
            assert!(f.len() - HEADER_LEN <= payload);
            let writer = tokio::spawn(async move {
                for _ in 0..32 {
                    let tag = s.send.tag(&f);
                    if w.write_all(&[f.as_slice(), &tag].concat()).await.is_err() {
                        break;
                    }
                }
                (w, s)
            });
            let mut got = Vec::new();
            for _ in 0..4 {
                got.push(rx.recv().await.unwrap());
            }
            // the budget holds four frames: the fifth waits for a release
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(received.get(), 4);
            assert!(rx.try_recv().is_err());
            got.clear();
            let mut n = 4;
            while n < 32 {
                drop(rx.recv().await.unwrap());
                n += 1;
            }
            assert_eq!(received.get(), 32);
            let (mut w, _s) = writer.await.unwrap();
            // a header whose payload never comes closes the connection
            let h = codec::header(7, 1000);
            w.write_all(&h).await.unwrap();
            wait_closed(&mut r).await;
        })
        .await
        .expect("test finished in time");
        let slow = reg.counter_with(
            "byzscale_net_faults_by_kind_total",
            "",
            &[("kind", "slow_frame")],
        );
        assert_eq!(slow.get(), 1);
        t.shutdown().await;
    }

    #[tokio::test]
    async fn a_queue_bound_below_one_frame_is_refused_at_start() {
        type Tune = fn(&mut TransportOptions);
        let cases: [(Tune, &str); 2] = [
            (|o| o.queue_bytes = 1000, "queue_bytes = 1000"),
            (|o| o.client_queue_capacity = 0, "client_queue_capacity"),
        ];
        for (tune, want) in cases {
            let mut c = cfg(0, &[(1, None)]);
            tune(&mut c.options);
            let e = Transport::<u64>::start(c, None, &Registry::new())
                .await
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn frame_macs_bind_direction_and_counter() {
        let key = [9u8; 32];
        let mut a_send = FrameMac::new(&key, 0);
        let mut b_recv = FrameMac::new(&key, 0);
        let t0 = a_send.tag(b"one");
        let t1 = a_send.tag(b"two");
        assert!(b_recv.verify(b"one", &t0));
        assert!(b_recv.verify(b"two", &t1));
        // reflecting a frame back in the other direction fails
        let mut a_recv = FrameMac::new(&key, 1);
        assert!(!a_recv.verify(b"one", &t0));
        // replay with a stale counter fails
        assert!(!b_recv.verify(b"one", &t0));
    }
}
