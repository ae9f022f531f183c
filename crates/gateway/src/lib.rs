//! A Redis-protocol (RESP2 and RESP3) server in front of byzscale's replicated KV store.
//!
//! [`serve`] accepts TCP connections and speaks enough of the Redis protocol for
//! `redis-cli`, `redis-benchmark` and client libraries to use the replicated
//! [`KvStore`] as if it were a Redis server. Commands are
//! parsed into [`KvOp`]s and handed to a [`KvBackend`], which the node implements over
//! the BFT client (and [`MemoryBackend`] implements over a local store, for tests and
//! demos).
//!
//! # Commands
//!
//! | command | handled |
//! |---|---|
//! | the store's commands (`byzscale_apps::kv::commands::TABLE`: the string, key, hash, list, set and sorted-set families) | by the backend; the read-only ones (`GET`, `STRLEN`, `MGET`, `TYPE`, `TTL`, `KEYS`, `SCAN`, `HGETALL`, `LRANGE`, `SMEMBERS`, `ZRANGE`, ...: the table's `read_only`) with `read_only = true` when [`GatewayOptions::unordered_reads`] is set |
//! | `PING [msg]`, `ECHO msg` | locally |
//! | `QUIT` | `+OK`, then the connection is closed |
//! | `SELECT 0` | `+OK` (there is one database; any other index is an error) |
//! | `HELLO [2\|3 [AUTH u p] [SETNAME n]]` | switches the connection to RESP2 or RESP3 and describes the server (a map in RESP3); other versions get `-NOPROTO` |
//! | `AUTH user pass` | `+OK` (no authentication is configured) |
//! | `CLIENT SETNAME/GETNAME/SETINFO/ID/INFO/LIST` | locally (the name is per connection) |
//! | `CONFIG GET pattern...` | `save` → `""`, `appendonly` → `no`, `databases` → `1`, `maxmemory` → `0` (`*` lists them all); other names give nothing |
//! | `CONFIG RESETSTAT` | `+OK` (nothing is reset) |
//! | `COMMAND`, `COMMAND INFO ...` | an empty array; `COMMAND COUNT` / `COMMAND LIST` describe the commands above |
//! | `COMMAND DOCS` | an error, so that `redis-cli` falls back to its built-in help and hints (with an empty array it would show none) |
//! | `INFO [section]` | a short `# Server` / `# Clients` / `# Memory` / `# Stats` text from [`GatewayStats`] |
//! | `MULTI`, `EXEC`, `DISCARD`, `WATCH key...`, `UNWATCH` | per connection (see "Transactions") |
//! | `POST`, `Host:` | nothing: the connection is closed (an HTTP request, maybe cross-protocol scripting; as Redis) |
//! | anything else | `-ERR unknown command 'X', with args beginning with: ...` |
//!
//! Unknown commands and wrong arities are answered at once with Redis's texts (from
//! [`KvOp::from_args`]); the replicas give the other argument errors. The protocol of a
//! connection decides how nils, maps, sets and doubles are written ([`resp::Proto`]); a pipelined
//! command's reply uses the protocol in force when it was read. A backend `Err(text)`
//! becomes `-ERR text`; a [`KvReply::Error`] is sent as is; a backend future that
//! panics becomes `-ERR internal error` and the connection goes on.
//!
//! # Pipelining and ordering
//!
//! Each connection has a reader and a writer (one task). The reader parses requests
//! and starts them in request order: local commands are answered at once; for a KV
//! command it calls [`KvBackend::exec`] and polls the returned future once; a future
//! that is not ready then is spawned, so up to [`GatewayOptions::pipeline_depth`]
//! backend calls of one connection run concurrently (further requests wait, which
//! stops reading from the socket: back-pressure). The writer sends the replies **in
//! request order**, flushing whenever it would wait.
//!
//! A connection's commands take effect in the order it sent them, pipelined or not,
//! as in Redis (another client that sees `SET flag 1` also sees the `SET data ...`
//! sent before it on the same connection). The backend says how it orders calls
//! ([`KvBackend::stream`]): calls it puts in one FIFO stream (the node's single-group
//! store: every ordered call goes through one BFT client, whose requests the replicas
//! execute in sequence order) take effect in the order they were started, so the
//! gateway starts them one after another without waiting for replies. The reader
//! waits for a connection's running calls to complete before it starts a call that
//! is not in their stream (another shard of the sharded store, or a backend without
//! streams); reads of that connection that follow wait with it. With
//! [`GatewayOptions::unordered_reads`], a read-only command takes the unordered path
//! (`read_only = true`) only while every running call of its connection is such a
//! read: after a write still running it joins the write's stream instead (ordered),
//! and a write waits for the unordered reads before it to complete (a read may fall
//! back to the ordered path, where it would otherwise be numbered after the write).
//! Throughput comes from many connections and from the backend's batching, and a
//! pipelining connection gets it too as long as its commands stay in one stream.

//! # Transactions
//!
//! `MULTI` starts queueing: each command is checked at once (unknown command,
//! arity) and answered `+QUEUED`, or with its error, which makes the `EXEC`
//! answer `-EXECABORT Transaction discarded because of previous errors.`.
//! `EXEC` sends the queued commands as one operation ([`KvOp::Exec`]) in the
//! connection's order like any write, with the watched keys; the store runs them
//! in order, or none of them and answers the nil array (`*-1`, RESP3 `_`) if a
//! watched key was written, deleted or expired since its `WATCH` (see
//! `byzscale_apps::kv::multi`). `WATCH key...` asks the store for the keys'
//! versions (a read, [`KvOp::Watch`], in the connection's order) and keeps them;
//! `EXEC`, `DISCARD` and `UNWATCH` forget them. The errors are Redis 7.0's: `EXEC
//! without MULTI`, `DISCARD without MULTI`, `MULTI calls can not be nested`,
//! `WATCH inside MULTI is not allowed`. Inside a transaction `PING`, `ECHO` and
//! `UNWATCH` are queued (their replies take their places in the `EXEC` reply);
//! the other gateway commands (`CLIENT`, `HELLO`, `SELECT`, `INFO`, ...) are
//! refused (Redis queues them too), and `QUIT` closes the connection. The queued
//! commands and watched keys of one transaction are bounded by `max_op_bytes`
//! (and `max_request_len`), counting 10 bytes per word on top of its own: a
//! command past it gets `-ERR transaction too large: ...` and makes the `EXEC`
//! fail, a `WATCH` past it `-ERR too many watched keys: ...`. A backend may
//! refuse an `EXEC` as a whole with an error reply (the sharded store: a
//! transaction with `WATCH` whose keys span shards).
//!
//! # Limits and errors
//!
//! Requests are bounded by [`GatewayOptions::max_bulk_len`], `max_array_len`,
//! `max_request_len` and `max_inline_len`; a KV command whose arguments exceed
//! `max_op_bytes` (the replicas' operation limit) gets `-ERR command too large:
//! ...` at once, without a backend call, and the connection goes on;
//! connections by `max_connections` (a client
//! over the limit gets `-ERR max number of clients reached` and is closed). A request
//! that breaks the protocol or a limit gets `-ERR Protocol error: <what>` after the
//! replies to the requests before it, and its connection is closed; other connections
//! are unaffected. Nothing a client sends makes the gateway panic.
//!
//! # Shutdown
//!
//! When `stop` turns true (or its sender is dropped), [`serve`] stops accepting,
//! connections stop reading and send the replies still owed, and `serve` returns once
//! they are done or after [`GatewayOptions::shutdown_grace`], aborting the rest.

mod conn;

pub use conn::Offline;
pub mod resp;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byzscale_apps::kv::{KvOp, KvReply, KvStore};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// A boxed, sendable future (what [`KvBackend::exec`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Executes KV operations for the gateway, typically by submitting them to the
/// replicated service through a BFT client.
pub trait KvBackend: Send + Sync + 'static {
    /// Execute `op`. `read_only` is true for read-only operations
    /// ([`KvOp::is_read_only`]: `GET`, `MGET`, `STRLEN`, ...) when
    /// [`GatewayOptions::unordered_reads`] is set and the connection has no ordered
    /// call running (see the crate docs): the backend may then answer without
    /// ordering (e.g. a quorum query). An `Err(text)` is sent to the client as
    /// `-ERR text`.
    ///
    /// Called on the connection's task, in request order; the future is polled once
    /// there and, if not ready, spawned. It should not block the thread.
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'static, Result<KvReply, String>>;

    /// The FIFO stream an ordered `op` goes into, if any: calls whose ops name the
    /// same stream take effect in the order the gateway started them (called
    /// [`exec`](Self::exec) and polled its future once), even while several of them
    /// run, so the backend must hand the op to its stream in `exec` or in that
    /// first poll (queueing on a fair lock counts). `None` (the default): no such
    /// promise; the gateway then starts the call only after every earlier call of
    /// the connection completed, and later calls wait for it.
    fn stream(&self, op: &KvOp) -> Option<u64> {
        let _ = op;
        None
    }
}

impl<B: KvBackend + ?Sized> KvBackend for Arc<B> {
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'static, Result<KvReply, String>> {
        (**self).exec(op, read_only)
    }
    fn stream(&self, op: &KvOp) -> Option<u64> {
        (**self).stream(op)
    }
}

/// A [`KvBackend`] over a local, unreplicated [`KvStore`] (tests, demos).
#[derive(Debug, Default)]
pub struct MemoryBackend {
    store: Mutex<KvStore>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the current state.
    pub fn store(&self) -> KvStore {
        self.store.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl KvBackend for MemoryBackend {
    fn exec(&self, op: KvOp, _read_only: bool) -> BoxFuture<'static, Result<KvReply, String>> {
        let reply = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply(&op);
        Box::pin(std::future::ready(Ok(reply)))
    }

    /// One stream: `exec` applies the op before it returns.
    fn stream(&self, _op: &KvOp) -> Option<u64> {
        Some(0)
    }
}

/// Gateway configuration. `GatewayOptions::default()` is a sensible start.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Pass `read_only = true` to the backend for read-only commands
    /// ([`KvOp::is_read_only`]) while the connection has no ordered call running
    /// (see the crate docs). Default false.
    pub unordered_reads: bool,
    /// Most concurrently open client connections. Default 1024.
    pub max_connections: usize,
    /// Most backend calls in flight per connection (pipelining); 1 executes each
    /// connection's commands strictly one after another. Default 64 (at most 2^20).
    pub pipeline_depth: usize,
    /// Largest bulk string (one argument), in bytes. Default 8 MiB (Redis: 512 MiB).
    pub max_bulk_len: usize,
    /// Most arguments in one request. Default 1 Mi.
    pub max_array_len: usize,
    /// Largest request as received, in bytes. Default 12 MiB, which keeps encoded
    /// operations under the replication layer's 16 MiB frame limit.
    pub max_request_len: usize,
    /// Longest inline command line, in bytes. Default 64 KiB (as Redis).
    pub max_inline_len: usize,
    /// Most bytes of arguments (keys and values) one KV command may carry: the
    /// largest operation the backend's replicas accept. A larger command gets
    /// `-ERR command too large: ...` at once, without a backend call, and the
    /// connection goes on. Default: no limit beyond the request limits.
    pub max_op_bytes: usize,
    /// How long [`serve`] waits for connections to finish after `stop`. Default 5 s.
    pub shutdown_grace: Duration,
    /// The counters this gateway updates; clone the `Arc` before calling [`serve`] to
    /// read them (or use a shared one for several gateways).
    pub stats: Arc<GatewayStats>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            unordered_reads: false,
            max_connections: 1024,
            pipeline_depth: 64,
            max_bulk_len: 8 << 20,
            max_array_len: 1 << 20,
            max_request_len: 12 << 20,
            max_inline_len: 64 << 10,
            max_op_bytes: usize::MAX,
            shutdown_grace: Duration::from_secs(5),
            stats: Arc::new(GatewayStats::default()),
        }
    }
}

impl GatewayOptions {
    /// The counters of a gateway started with these options.
    pub fn stats(&self) -> Arc<GatewayStats> {
        self.stats.clone()
    }

    pub(crate) fn limits(&self) -> resp::Limits {
        resp::Limits {
            max_bulk_len: self.max_bulk_len,
            max_array_len: self.max_array_len,
            max_request_len: self.max_request_len,
            max_inline_len: self.max_inline_len,
        }
    }
}

/// Gateway counters (relaxed atomics), for export as metrics.
#[derive(Debug, Default)]
pub struct GatewayStats {
    connections: AtomicU64,
    active_connections: AtomicU64,
    rejected_connections: AtomicU64,
    commands: AtomicU64,
    errors: AtomicU64,
    protocol_errors: AtomicU64,
}

/// A copy of [`GatewayStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayStatsSnapshot {
    /// Connections accepted (and served) since start.
    pub connections: u64,
    /// Connections open now.
    pub active_connections: u64,
    /// Connections refused because `max_connections` were open.
    pub rejected_connections: u64,
    /// Commands received (including those answered with an error).
    pub commands: u64,
    /// Error replies sent to commands (argument errors, unknown commands, backend
    /// errors and `KvReply::Error`s), protocol errors excluded.
    pub errors: u64,
    /// Connections closed for a protocol error or an exceeded request limit.
    pub protocol_errors: u64,
}

impl GatewayStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections accepted (and served) since start.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn active_connections(&self) -> u64 {
        self.active_connections.load(Ordering::Relaxed)
    }

    /// Connections refused because `max_connections` were open.
    pub fn rejected_connections(&self) -> u64 {
        self.rejected_connections.load(Ordering::Relaxed)
    }

    /// Commands received.
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    /// Error replies sent to commands.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Connections closed for a protocol error.
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors.load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn snapshot(&self) -> GatewayStatsSnapshot {
        GatewayStatsSnapshot {
            connections: self.connections(),
            active_connections: self.active_connections(),
            rejected_connections: self.rejected_connections(),
            commands: self.commands(),
            errors: self.errors(),
            protocol_errors: self.protocol_errors(),
        }
    }

    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Most refused connections being sent the reason at once.
const MAX_REJECTING: usize = 64;

/// Whether `stop` says to stop: true, or its sender is gone.
fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Serve Redis clients on `listener` with `backend` until `stop` turns true or its
/// sender is dropped (see the crate docs). One task per connection; accept errors
/// (e.g. too many open files) are logged and retried, so this returns `Ok(())` on
/// stop.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn KvBackend>,
    opts: GatewayOptions,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let shared = Arc::new(conn::Shared::new(backend, opts, listener.local_addr().ok()));
    let slots = Arc::new(Semaphore::new(
        shared.opts.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let rejecting = Arc::new(Semaphore::new(MAX_REJECTING));
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    while !stopping(&stop) {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    match slots.clone().try_acquire_owned() {
                        Ok(permit) => {
                            next_id += 1;
                            let (shared, stop) = (shared.clone(), stop.clone());
                            conns.spawn(async move {
                                conn::run(stream, peer, next_id, shared, stop).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            GatewayStats::inc(&shared.stats.rejected_connections);
                            // tell the client why, unless a flood of them is being told
                            // already (then the connection is just closed)
                            if let Ok(permit) = rejecting.clone().try_acquire_owned() {
                                conns.spawn(async move {
                                    conn::reject(stream).await;
                                    drop(permit);
                                });
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => {}
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(shared.opts.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            open = conns.len(),
            "gateway: connections still busy after the grace period; aborting them"
        );
        conns.shutdown().await;
    }
    Ok(())
}
