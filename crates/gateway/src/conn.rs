//! One client connection: a reader that parses and starts commands in request order,
//! and a writer that sends the replies in the same order (see the crate docs).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use byzscale_apps::kv::{commands, parse_integer, KvOp, KvReply};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::resp::{self, Parser, Proto};
use crate::{stopping, GatewayOptions, GatewayStats, KvBackend, MemoryBackend};

mod multi;
use multi::{splice_exec, Multi};

/// The smallest free space the read buffer gets before each read.
const READ_CHUNK: usize = 16 << 10;
/// The most the read buffer grows by ahead of a large bulk string's bytes arriving.
const MAX_RESERVE: usize = 1 << 20;
/// After a connection is closed by the gateway (QUIT, protocol error, too many
/// clients), how long and how much it reads and discards, so that unread request
/// bytes do not turn the close into a reset that could destroy the last reply.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 4 << 20;

/// The version that `INFO` and `HELLO` report (clients check it for features).
const REDIS_VERSION: &str = "7.0.0";
/// The commands the gateway answers itself (`COMMAND LIST` and `COMMAND COUNT` add the
/// store's, [`commands::TABLE`]).
const LOCAL_COMMANDS: &[&str] = &[
    "echo", "quit", "select", "hello", "auth", "client", "config", "command", "info",
];
/// What `CONFIG GET` knows.
const CONFIG: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "no"),
    ("databases", "1"),
    ("maxmemory", "0"),
];

/// What all connections of one gateway share.
pub(crate) struct Shared {
    pub backend: Arc<dyn KvBackend>,
    pub opts: GatewayOptions,
    pub stats: Arc<GatewayStats>,
    local_addr: Option<SocketAddr>,
    started: Instant,
}

impl Shared {
    pub fn new(
        backend: Arc<dyn KvBackend>,
        opts: GatewayOptions,
        local_addr: Option<SocketAddr>,
    ) -> Self {
        Shared {
            backend,
            stats: opts.stats.clone(),
            opts,
            local_addr,
            started: Instant::now(),
        }
    }
}

/// A reply owed to the client, in request order.
enum Slot {
    /// Ready bytes.
    Reply(Vec<u8>),
    /// Ready bytes, after which the connection is closed.
    Close(Vec<u8>),
    /// A running backend call.
    Pending(Pending),
}

/// A spawned backend call, aborted if its reply is no longer wanted, and the protocol
/// its reply is written in (the connection's when the command was read).
struct Pending(JoinHandle<Result<KvReply, String>>, Proto);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Pending {
    /// The RESP reply, counting errors.
    async fn reply(&mut self, stats: &GatewayStats) -> Vec<u8> {
        let result = (&mut self.0).await.map_err(|e| e.to_string());
        backend_reply(result, self.1, stats)
    }
}

/// What a backend call's result goes through before its reply is written.
type Finish = Box<dyn FnOnce(Result<KvReply, String>) -> Result<KvReply, String> + Send>;

/// A backend call started by [`Conn::start`].
enum Started {
    /// Completed in its first poll (`Err`: it panicked).
    Done(Result<Result<KvReply, String>, String>),
    /// Running on a task of its own.
    Running(JoinHandle<Result<KvReply, String>>),
}

/// The RESP reply to a backend call's result (`Err`: the call panicked or was
/// cancelled), counting errors.
fn backend_reply(
    result: Result<Result<KvReply, String>, String>,
    proto: Proto,
    stats: &GatewayStats,
) -> Vec<u8> {
    let (bytes, failed) = match result {
        Ok(Ok(reply)) => (resp::reply(&reply, proto), reply.is_error()),
        Ok(Err(text)) => (resp::error(&format!("ERR {text}")), true),
        Err(e) => {
            tracing::warn!(error = %e, "gateway: backend call failed");
            (resp::error("ERR internal error"), true)
        }
    };
    if failed {
        GatewayStats::inc(&stats.errors);
    }
    bytes
}

/// What the reader does with a command.
enum Action {
    Reply(Vec<u8>),
    Submit(KvOp),
    /// `WATCH keys...`: ask the versions, keep them, reply `+OK`.
    Watch(Vec<Vec<u8>>),
    /// `EXEC`: submit the operation; the gateway's own replies go at these
    /// positions of its reply (`None`: the store's next reply).
    Exec(KvOp, Vec<Option<KvReply>>),
    Quit,
    /// Close without a reply: an HTTP request (cross-protocol scripting, as Redis).
    Abort,
}

/// Why the reader stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The client closed its side, or reading failed.
    Eof,
    /// The gateway is closing the connection (QUIT or a protocol error).
    Closed,
    /// The gateway is shutting down.
    Stopped,
    /// The writer failed (the client is gone).
    WriterGone,
}

/// How a running call is ordered (see the crate docs): the calls of a connection
/// running at one time are all in one lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// Ordered, in the backend's FIFO stream with this id.
    Stream(u64),
    /// An unordered read.
    Read,
    /// Ordered, with no stream: runs alone.
    Alone,
}

impl Lane {
    /// Whether a call in `self` may start while calls in `running` run.
    fn joins(self, running: Lane) -> bool {
        self == running && self != Lane::Alone
    }
}

/// A backend call of this connection that may still be running.
struct InFlight {
    lane: Lane,
    /// Closed when the call completes (or is dropped).
    done: watch::Receiver<()>,
}

impl InFlight {
    fn is_done(&self) -> bool {
        self.done.has_changed().is_err()
    }
}

/// The error for a command whose arguments alone exceed the backend's limit.
fn too_large(size: usize, limit: usize) -> String {
    format!(
        "ERR command too large: its arguments take {size} bytes, the replicated service \
         accepts at most {limit} bytes per command (max_op_bytes)"
    )
}

/// Decrements the open-connection gauge when the connection ends, however it ends.
struct ActiveGuard(Arc<GatewayStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serve one accepted connection until it is closed.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let stats = shared.stats.clone();
    GatewayStats::inc(&stats.connections);
    stats.active_connections.fetch_add(1, Ordering::Relaxed);
    let _active = ActiveGuard(stats.clone());

    let (mut rd, wr) = stream.into_split();
    let mut conn = Conn::new(shared, id, peer);
    let (tx, rx) = mpsc::channel(conn.depth());
    let (end, _) = tokio::join!(
        conn.read_loop(&mut rd, tx, &mut stop),
        write_replies(wr, rx, &stats)
    );
    if end == End::Closed {
        linger(&mut rd).await;
    }
}

/// Refuse a connection over the `max_connections` limit, like Redis.
pub(crate) async fn reject(stream: TcpStream) {
    let (mut rd, mut wr) = stream.into_split();
    let reply = resp::error("ERR max number of clients reached");
    let sent = tokio::time::timeout(LINGER_TIME, async {
        wr.write_all(&reply).await?;
        wr.shutdown().await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        linger(&mut rd).await;
    }
}

/// Read and discard what the client still sends, briefly (see [`LINGER_TIME`]).
async fn linger(rd: &mut OwnedReadHalf) {
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut sink = vec![0u8; 16 << 10];
        let mut total = 0;
        while total < LINGER_BYTES {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Send the replies in order, flushing whenever the next one is not ready yet.
async fn write_replies<W: AsyncWrite + Unpin>(
    wr: W,
    mut rx: mpsc::Receiver<Slot>,
    stats: &GatewayStats,
) {
    let mut out = BufWriter::with_capacity(32 << 10, wr);
    let result: std::io::Result<()> = async {
        loop {
            let slot = match rx.try_recv() {
                Ok(slot) => slot,
                Err(mpsc::error::TryRecvError::Empty) => {
                    out.flush().await?;
                    match rx.recv().await {
                        Some(slot) => slot,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            match slot {
                Slot::Reply(bytes) => out.write_all(&bytes).await?,
                Slot::Close(bytes) => {
                    out.write_all(&bytes).await?;
                    break;
                }
                Slot::Pending(mut pending) => {
                    if !pending.0.is_finished() {
                        out.flush().await?;
                    }
                    let bytes = pending.reply(stats).await;
                    out.write_all(&bytes).await?;
                }
            }
        }
        out.shutdown().await
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "gateway: write failed");
    }
    // Dropping `rx` aborts the backend calls whose replies can no longer be sent and
    // tells the reader to stop.
}

/// The reader side of a connection.
struct Conn {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    /// Set by `CLIENT SETNAME` / `HELLO ... SETNAME`.
    name: Option<Vec<u8>>,
    /// Set by `HELLO <protover>`.
    proto: Proto,
    /// One permit per backend call in flight.
    pipeline: Arc<Semaphore>,
    /// Backend calls that may still be running, all in one lane.
    inflight: VecDeque<InFlight>,
    /// The transaction being queued, after `MULTI`.
    multi: Option<Multi>,
    /// The watched keys and their versions, for the next `EXEC`.
    watched: Vec<(Vec<u8>, u64)>,
}

impl Conn {
    fn new(shared: Arc<Shared>, id: u64, peer: SocketAddr) -> Self {
        let depth = shared.opts.pipeline_depth.clamp(1, 1 << 20);
        Conn {
            pipeline: Arc::new(Semaphore::new(depth)),
            shared,
            id,
            peer,
            name: None,
            proto: Proto::Resp2,
            inflight: VecDeque::new(),
            multi: None,
            watched: Vec::new(),
        }
    }

    /// Most backend calls in flight.
    fn depth(&self) -> usize {
        self.shared.opts.pipeline_depth.clamp(1, 1 << 20)
    }

    async fn read_loop(
        &mut self,
        rd: &mut OwnedReadHalf,
        tx: mpsc::Sender<Slot>,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut parser = Parser::new(self.shared.opts.limits());
        loop {
            loop {
                match parser.next(&mut buf) {
                    Ok(Some(args)) => {
                        let (slot, close) = self.handle(&args).await;
                        if tx.send(slot).await.is_err() {
                            return End::WriterGone;
                        }
                        if close {
                            return End::Closed;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(self.protocol_error(&e)).await;
                        return End::Closed;
                    }
                }
            }
            if stopping(stop) {
                return End::Stopped;
            }
            buf.reserve(parser.wanted(&buf).clamp(READ_CHUNK, MAX_RESERVE));
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => return End::Eof,
                    Ok(_) => {}
                },
                _ = stop.changed() => {}
                _ = tx.closed() => return End::WriterGone,
            }
        }
    }

    /// Run one parsed command: its reply slot, and whether the connection closes
    /// after it.
    async fn handle(&mut self, args: &[Bytes]) -> (Slot, bool) {
        GatewayStats::inc(&self.shared.stats.commands);
        match self.command(args) {
            Action::Reply(bytes) => (Slot::Reply(bytes), false),
            Action::Quit => (Slot::Close(resp::simple("OK")), true),
            Action::Abort => {
                GatewayStats::inc(&self.shared.stats.protocol_errors);
                tracing::warn!(
                    peer = %self.peer,
                    "gateway: HTTP request on the Redis port; closing the connection"
                );
                (Slot::Close(Vec::new()), true)
            }
            Action::Submit(op) => (self.submit(op, None).await, false),
            Action::Watch(keys) => (Slot::Reply(self.watch(keys).await), false),
            Action::Exec(op, local) => (self.submit(op, Some(local)).await, false),
        }
    }

    /// The last reply of a connection closed for a protocol error, counted.
    fn protocol_error(&self, e: &resp::ProtocolError) -> Slot {
        GatewayStats::inc(&self.shared.stats.protocol_errors);
        tracing::debug!(peer = %self.peer, error = %e, "gateway: closing connection");
        Slot::Close(resp::error(&format!("ERR {e}")))
    }

    /// The lane of `op` given the calls running now, and whether it reads
    /// unordered.
    fn lane(&mut self, op: &KvOp) -> (Lane, bool) {
        self.inflight.retain(|f| !f.is_done());
        let reads = self.shared.opts.unordered_reads
            && op.is_read_only()
            && self.inflight.iter().all(|f| f.lane == Lane::Read);
        if reads {
            return (Lane::Read, true);
        }
        let lane = self
            .shared
            .backend
            .stream(op)
            .map_or(Lane::Alone, Lane::Stream);
        (lane, false)
    }

    /// Start a backend call, in request order (see the crate docs), and give its
    /// reply slot; for an `EXEC`, `local` are the gateway's own replies to splice
    /// into the store's ([`splice_exec`]).
    async fn submit(&mut self, op: KvOp, local: Option<Vec<Option<KvReply>>>) -> Slot {
        let proto = self.proto;
        let finish = move |r: Result<KvReply, String>| match &local {
            Some(local) => r.map(|reply| splice_exec(reply, local)),
            None => r,
        };
        match self.start(op, Box::new(finish)).await {
            Started::Done(result) => Slot::Reply(backend_reply(result, proto, &self.shared.stats)),
            Started::Running(handle) => Slot::Pending(Pending(handle, proto)),
        }
    }

    /// Run a backend call in request order and wait for its result.
    async fn call(&mut self, op: KvOp) -> Result<KvReply, String> {
        match self.start(op, Box::new(|r| r)).await {
            Started::Done(result) => result?,
            Started::Running(handle) => handle.await.map_err(|e| e.to_string())?,
        }
    }

    /// Start a backend call, in request order (see the crate docs): first wait for
    /// the running calls of another lane to complete. `finish` maps its result.
    ///
    /// The call is created and polled once right here, so that a backend submitting
    /// in its future's first poll submits in request order, and a call that
    /// completes at once (an in-memory backend) needs no task. Otherwise the call
    /// runs on a task of its own.
    async fn start(&mut self, op: KvOp, finish: Finish) -> Started {
        let permit: Option<OwnedSemaphorePermit> = self.pipeline.clone().acquire_owned().await.ok();
        let (lane, read_only) = self.lane(&op);
        if self.inflight.iter().any(|f| !lane.joins(f.lane)) {
            for mut f in self.inflight.drain(..) {
                // never sent to: resolves (with an error) when the call completes
                let _ = f.done.changed().await;
            }
        }
        let backend = self.shared.backend.clone();
        let first_poll = catch_unwind(AssertUnwindSafe(|| {
            let mut call = backend.exec(op, read_only);
            let mut cx = Context::from_waker(Waker::noop());
            match call.as_mut().poll(&mut cx) {
                Poll::Ready(result) => Err(result),
                Poll::Pending => Ok(call),
            }
        }));
        let call = match first_poll {
            Ok(Ok(call)) => call,
            Ok(Err(result)) => return Started::Done(Ok(finish(result))),
            Err(_) => return Started::Done(Err("panicked".into())),
        };
        let (done_tx, done) = watch::channel(());
        self.inflight.push_back(InFlight { lane, done });
        let handle = tokio::spawn(async move {
            let result = finish(call.await);
            drop((permit, done_tx));
            result
        });
        Started::Running(handle)
    }

    /// An error reply, counted.
    fn error(&self, text: &str) -> Vec<u8> {
        GatewayStats::inc(&self.shared.stats.errors);
        resp::error(text)
    }

    fn arity(&self, command: &str) -> Vec<u8> {
        self.error(&format!(
            "ERR wrong number of arguments for '{command}' command"
        ))
    }

    fn unknown_subcommand(&self, command: &str, sub: &[u8]) -> Vec<u8> {
        self.error(&format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            truncate(sub, 128),
            command.to_ascii_uppercase()
        ))
    }

    fn command(&mut self, args: &[Bytes]) -> Action {
        let name = args[0].to_ascii_lowercase();
        if let Some(action) = self.transaction(&name, args) {
            return action;
        }
        let argc = args.len();
        let reply = match name.as_slice() {
            b"ping" => match argc {
                1 => resp::simple("PONG"),
                2 => resp::bulk(&args[1]),
                _ => self.arity("ping"),
            },
            b"echo" if argc == 2 => resp::bulk(&args[1]),
            b"echo" => self.arity("echo"),
            b"quit" => return Action::Quit,
            b"post" | b"host:" => return Action::Abort,
            b"select" if argc == 2 => match parse_integer(&args[1]) {
                Some(0) => resp::simple("OK"),
                Some(_) => self.error("ERR DB index is out of range"),
                None => self.error("ERR value is not an integer or out of range"),
            },
            b"select" => self.arity("select"),
            b"auth" => match argc {
                2 => self.error(
                    "ERR AUTH <password> called without any password configured for the \
                     default user. Are you sure your configuration is correct?",
                ),
                3 => resp::simple("OK"),
                _ => self.arity("auth"),
            },
            b"hello" => self.hello(args),
            b"client" => self.client(args),
            b"config" => self.config(args),
            b"command" => self.command_info(args),
            b"info" => self.info(args),
            _ => return self.store_command(args),
        };
        Action::Reply(reply)
    }

    /// A command of the store ([`KvOp::from_args`]: Redis's unknown-command and arity
    /// errors at once), to submit unless it is too large for the replicas.
    fn store_command(&mut self, args: &[Bytes]) -> Action {
        let op = match KvOp::from_args(args) {
            Ok(op) => op,
            Err(text) => return Action::Reply(self.error(&text)),
        };
        let size: usize = args[1..].iter().map(|a| a.len()).sum();
        let limit = self.shared.opts.max_op_bytes;
        if size > limit {
            // the replicas would refuse it: say so at once, and
            // keep this connection (and its pipeline) going
            return Action::Reply(self.error(&too_large(size, limit)));
        }
        Action::Submit(op)
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
    fn hello(&mut self, args: &[Bytes]) -> Vec<u8> {
        let mut proto = self.proto;
        if let Some(ver) = args.get(1) {
            match parse_integer(ver) {
                Some(2) => proto = Proto::Resp2,
                Some(3) => proto = Proto::Resp3,
                Some(_) => return self.error("NOPROTO unsupported protocol version"),
                None => {
                    return self.error("ERR Protocol version is not an integer or out of range")
                }
            }
        }
        let mut i = 2;
        let mut name = None;
        while i < args.len() {
            let opt = args[i].to_ascii_lowercase();
            let left = args.len() - i - 1;
            if opt == b"auth" && left >= 2 {
                i += 3;
            } else if opt == b"setname" && left >= 1 {
                if let Err(e) = check_client_name(&args[i + 1]) {
                    return self.error(e);
                }
                name = Some(args[i + 1].to_vec());
                i += 2;
            } else {
                return self.error(&format!(
                    "ERR Syntax error in HELLO option '{}'",
                    truncate(&args[i], 128)
                ));
            }
        }
        if name.is_some() {
            self.name = name;
        }
        self.proto = proto;
        let mut out = Vec::new();
        resp::map_header(&mut out, 7, proto);
        for (k, v) in [("server", "redis"), ("version", REDIS_VERSION)] {
            resp::push_bulk(&mut out, Some(k.as_bytes()));
            resp::push_bulk(&mut out, Some(v.as_bytes()));
        }
        resp::push_bulk(&mut out, Some(b"proto"));
        out.extend_from_slice(&resp::int(proto.version()));
        resp::push_bulk(&mut out, Some(b"id"));
        out.extend_from_slice(&resp::int(self.id as i64));
        for (k, v) in [("mode", "standalone"), ("role", "master")] {
            resp::push_bulk(&mut out, Some(k.as_bytes()));
            resp::push_bulk(&mut out, Some(v.as_bytes()));
        }
        resp::push_bulk(&mut out, Some(b"modules"));
        resp::array_header(&mut out, 0);
        out
    }

    /// `CLIENT SETNAME|GETNAME|SETINFO|ID|INFO|LIST`
    fn client(&mut self, args: &[Bytes]) -> Vec<u8> {
        let Some(sub) = args.get(1) else {
            return self.arity("client");
        };
        let argc = args.len();
        match sub.to_ascii_lowercase().as_slice() {
            b"setname" if argc == 3 => match check_client_name(&args[2]) {
                Ok(()) => {
                    self.name = (!args[2].is_empty()).then(|| args[2].to_vec());
                    resp::simple("OK")
                }
                Err(e) => self.error(e),
            },
            b"setname" => self.arity("client|setname"),
            b"getname" => match &self.name {
                Some(name) => resp::bulk(name),
                None => resp::nil(self.proto),
            },
            b"setinfo" if argc == 4 => resp::simple("OK"),
            b"setinfo" => self.arity("client|setinfo"),
            b"id" => resp::int(self.id as i64),
            b"info" => resp::bulk(self.client_line().as_bytes()),
            b"list" => resp::bulk(format!("{}\n", self.client_line()).as_bytes()),
            _ => self.unknown_subcommand("client", sub),
        }
    }

    fn client_line(&self) -> String {
        format!(
            "id={} addr={} laddr={} name={} db=0 resp={}",
            self.id,
            self.peer,
            self.shared
                .local_addr
                .map_or_else(String::new, |a| a.to_string()),
            self.name
                .as_deref()
                .map_or_else(String::new, |n| String::from_utf8_lossy(n).into_owned()),
            self.proto.version(),
        )
    }

    /// `CONFIG GET pattern...` / `CONFIG RESETSTAT`
    fn config(&mut self, args: &[Bytes]) -> Vec<u8> {
        let Some(sub) = args.get(1) else {
            return self.arity("config");
        };
        match sub.to_ascii_lowercase().as_slice() {
            b"get" if args.len() >= 3 => {
                let found: Vec<&(&str, &str)> = CONFIG
                    .iter()
                    .filter(|(k, _)| {
                        let name = k.as_bytes();
                        args[2..]
                            .iter()
                            .any(|p| byzscale_apps::glob::matches(p, name, true))
                    })
                    .collect();
                // a map in RESP3 (clients turn it into a dictionary), pairs in RESP2
                let mut out = Vec::new();
                resp::map_header(&mut out, found.len(), self.proto);
                for (k, v) in found {
                    resp::push_bulk(&mut out, Some(k.as_bytes()));
                    resp::push_bulk(&mut out, Some(v.as_bytes()));
                }
                out
            }
            b"get" => self.arity("config|get"),
            b"set" => self.error("ERR CONFIG SET is not supported by the byzscale gateway"),
            b"resetstat" => resp::simple("OK"),
            _ => self.unknown_subcommand("config", sub),
        }
    }

    /// `COMMAND [INFO|COUNT|LIST]`; `COMMAND DOCS` is an error.
    fn command_info(&mut self, args: &[Bytes]) -> Vec<u8> {
        let Some(sub) = args.get(1) else {
            return resp::bulk_array([]);
        };
        match sub.to_ascii_lowercase().as_slice() {
            // redis-cli asks `COMMAND DOCS` for its help and hints; an error (rather
            // than an empty answer) makes it fall back to its built-in help
            b"docs" => self.error("ERR COMMAND DOCS is not supported by the byzscale gateway"),
            b"info" => resp::bulk_array([]),
            b"count" => resp::int(command_names().count() as i64),
            b"list" => resp::bulk_array(command_names().map(str::as_bytes)),
            _ => self.unknown_subcommand("command", sub),
        }
    }

    /// `INFO [section ...]`: server, clients, memory (zero: the gateway holds no data)
    /// and stats.
    fn info(&mut self, args: &[Bytes]) -> Vec<u8> {
        let stats = self.shared.stats.snapshot();
        let sections = [
            (
                "server",
                format!(
                    "redis_version:{REDIS_VERSION}\r\n\
                     byzscale_gateway_version:{}\r\n\
                     redis_mode:standalone\r\n\
                     arch_bits:{}\r\n\
                     process_id:{}\r\n\
                     tcp_port:{}\r\n\
                     uptime_in_seconds:{}\r\n",
                    env!("CARGO_PKG_VERSION"),
                    usize::BITS,
                    std::process::id(),
                    self.shared.local_addr.map_or(0, |a| a.port()),
                    self.shared.started.elapsed().as_secs(),
                ),
            ),
            (
                "clients",
                format!(
                    "connected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n",
                    stats.active_connections, self.shared.opts.max_connections
                ),
            ),
            // the gateway holds no data (`redis-cli --stat` wants the field)
            (
                "memory",
                "used_memory:0\r\nused_memory_human:0B\r\n".to_string(),
            ),
            (
                "stats",
                format!(
                    "total_connections_received:{}\r\n\
                     total_commands_processed:{}\r\n\
                     rejected_connections:{}\r\n\
                     total_error_replies:{}\r\n\
                     protocol_errors:{}\r\n",
                    stats.connections,
                    stats.commands,
                    stats.rejected_connections,
                    stats.errors,
                    stats.protocol_errors
                ),
            ),
            // client test suites read it to choose between standalone and
            // cluster mode (the sharded store routes keys itself)
            ("cluster", "cluster_enabled:0\r\n".to_string()),
        ];
        let wanted: Vec<Vec<u8>> = args[1..].iter().map(|a| a.to_ascii_lowercase()).collect();
        let all = wanted.is_empty()
            || wanted
                .iter()
                .any(|w| matches!(w.as_slice(), b"all" | b"default" | b"everything"));
        let mut text = String::new();
        for (name, body) in sections {
            if all || wanted.iter().any(|w| w == name.as_bytes()) {
                if !text.is_empty() {
                    text.push_str("\r\n");
                }
                let mut title = name.to_string();
                title[..1].make_ascii_uppercase();
                text.push_str(&format!("# {title}\r\n{body}"));
            }
        }
        resp::bulk(text.as_bytes())
    }
}

/// One connection's request handling without a socket: the parser and the
/// command handling of a real connection, with KV commands executed at once on
/// a [`MemoryBackend`]. Whatever way the client's bytes are split, it answers
/// what a connection would send back, in order. For tests and the fuzz targets
/// (`fuzz/`).
pub struct Offline {
    conn: Conn,
    parser: Parser,
    buf: BytesMut,
    closed: bool,
}

impl Offline {
    /// A connection of a gateway with `opts` over an empty store.
    pub fn new(opts: GatewayOptions) -> Self {
        let parser = Parser::new(opts.limits());
        let backend: Arc<dyn KvBackend> = Arc::new(MemoryBackend::new());
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        Offline {
            conn: Conn::new(Arc::new(Shared::new(backend, opts, None)), 1, peer),
            parser,
            buf: BytesMut::new(),
            closed: false,
        }
    }

    /// Take `bytes` from the client; returns the reply bytes they complete
    /// (none once the connection is closed).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.closed {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        while !self.closed {
            let slot = match self.parser.next(&mut self.buf) {
                Ok(None) => break,
                Ok(Some(args)) => {
                    let mut step = std::pin::pin!(self.conn.handle(&args));
                    match step.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                        Poll::Ready((slot, _)) => slot,
                        // the memory backend answers in its first poll
                        Poll::Pending => Slot::Close(resp::error("ERR internal error")),
                    }
                }
                Err(e) => self.conn.protocol_error(&e),
            };
            match slot {
                Slot::Reply(bytes) => out.extend_from_slice(&bytes),
                Slot::Close(bytes) => {
                    out.extend_from_slice(&bytes);
                    self.closed = true;
                }
                Slot::Pending(_) => {
                    out.extend_from_slice(&resp::error("ERR internal error"));
                    self.closed = true;
                }
            }
        }
        out
    }

    /// Whether the connection was closed (QUIT, a protocol error, HTTP).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Request bytes received but not yet parsed into a command.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Every command name `COMMAND LIST` reports.
fn command_names() -> impl Iterator<Item = &'static str> {
    commands::TABLE
        .iter()
        .map(|c| c.name)
        .chain(LOCAL_COMMANDS.iter().copied())
}

/// At most `max` bytes of `b`, lossily as text.
fn truncate(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
}

fn check_client_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn offline_connection_answers_pipelines_at_every_split() {
        let input: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\nINCR k\r\nGET k\r\n\
                             CLIENT SETNAME me\r\nCLIENT GETNAME\r\nECHO\r\n*1\r\n$1\r\nx";
        let want: &[u8] = b"+OK\r\n:6\r\n$1\r\n6\r\n+OK\r\n$2\r\nme\r\n\
                            -ERR wrong number of arguments for 'echo' command\r\n";
        for chunk in 1..=input.len() {
            let mut c = Offline::new(GatewayOptions::default());
            let out: Vec<u8> = input.chunks(chunk).flat_map(|p| c.feed(p)).collect();
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(want));
            assert!(!c.closed());
            assert_eq!(c.buffered(), 5, "`$1\\r\\nx` waits for the rest");
        }
        let mut c = Offline::new(GatewayOptions::default());
        assert_eq!(
            c.feed(b"PING\r\n*1\r\n:1\r\nPING\r\n"),
            b"+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n"
        );
        assert!(c.closed());
        assert!(c.feed(b"PING\r\n").is_empty());
    }

    #[test]
    fn hello_switches_the_connection_between_resp2_and_resp3() {
        let mut c = Offline::new(GatewayOptions::default());
        let hello3 = c.feed(b"HELLO 3 SETNAME me\r\n");
        assert!(hello3.starts_with(b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"));
        assert!(text(&hello3).contains("$5\r\nproto\r\n:3\r\n"));
        assert!(text(&hello3).ends_with("$7\r\nmodules\r\n*0\r\n"));
        assert_eq!(
            text(&c.feed(b"GET x\r\nMGET x y\r\nCLIENT GETNAME\r\nTYPE x\r\n")),
            "_\r\n*2\r\n_\r\n_\r\n$2\r\nme\r\n+none\r\n"
        );
        assert_eq!(
            text(&c.feed(b"HELLO 4\r\nHELLO x\r\nGET x\r\n")),
            "-NOPROTO unsupported protocol version\r\n\
             -ERR Protocol version is not an integer or out of range\r\n_\r\n"
        );
        let hello2 = c.feed(b"HELLO 2\r\n");
        assert!(hello2.starts_with(b"*14\r\n"));
        assert!(text(&hello2).contains("$5\r\nproto\r\n:2\r\n"));
        assert_eq!(
            text(&c.feed(b"GET x\r\nCLIENT SETNAME \"\"\r\nCLIENT GETNAME\r\n")),
            "$-1\r\n+OK\r\n$-1\r\n"
        );
    }

    #[test]
    fn config_get_is_a_map_in_resp3_and_info_names_standalone_mode() {
        let mut c = Offline::new(GatewayOptions::default());
        let pairs = "$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n";
        assert_eq!(
            text(&c.feed(b"CONFIG GET save appendonly\r\n")),
            format!("*4\r\n{pairs}")
        );
        c.feed(b"HELLO 3\r\n");
        assert_eq!(
            text(&c.feed(b"CONFIG GET save appendonly\r\nCONFIG GET nothing*\r\n")),
            format!("%2\r\n{pairs}%0\r\n")
        );
        let info = text(&c.feed(b"INFO cluster\r\n"));
        assert!(
            info.contains("# Cluster\r\ncluster_enabled:0\r\n"),
            "{info}"
        );
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// A backend whose calls complete only when the test releases them, in any
    /// order; keys starting with `s0`/`s1` are in stream 0/1, others in none.
    #[derive(Default)]
    struct Scripted {
        /// Every call as `NAME key... read_only`, in the order `exec` saw them.
        log: Mutex<Vec<String>>,
        gates: Mutex<Vec<Option<tokio::sync::oneshot::Sender<()>>>>,
    }

    impl Scripted {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
        /// Complete call `i` (its reply is `+OK`).
        fn release(&self, i: usize) {
            let gate = self.gates.lock().unwrap()[i]
                .take()
                .expect("released twice");
            gate.send(()).unwrap();
        }
    }

    impl KvBackend for Scripted {
        fn exec(
            &self,
            op: KvOp,
            read_only: bool,
        ) -> crate::BoxFuture<'static, Result<KvReply, String>> {
            let keys: Vec<String> = op.keys().iter().map(|k| text(k)).collect();
            let line = format!("{} {} {read_only}", op.name(), keys.join(" "));
            self.log.lock().unwrap().push(line);
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.gates.lock().unwrap().push(Some(tx));
            Box::pin(async move {
                rx.await.map_err(|e| e.to_string())?;
                Ok(KvReply::Ok)
            })
        }

        fn stream(&self, op: &KvOp) -> Option<u64> {
            let mut streams: Vec<u64> = op
                .keys()
                .iter()
                .map(|k| match k.get(..2) {
                    Some(b"s0") => Some(0),
                    Some(b"s1") => Some(1),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            streams.dedup();
            (streams.len() == 1).then(|| streams[0])
        }
    }

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| Bytes::from(a.to_string()))
            .collect()
    }

    /// Whether `f` is still waiting after the runtime ran everything it could.
    async fn waits<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        let mut f = f;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let waker = Waker::noop();
        f.as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending()
    }

    /// Handle `line`, checking that it is not passed to the backend before the
    /// calls `release` (released one by one, in this order) all completed.
    async fn waiting(conn: &mut Conn, b: &Scripted, line: &str, release: &[usize]) -> Slot {
        let args = args(line);
        let calls = b.log().len();
        let mut next = std::pin::pin!(conn.handle(&args));
        for &i in release {
            assert!(
                waits(next.as_mut()).await,
                "{line} did not wait for call {i}"
            );
            assert_eq!(
                b.log().len(),
                calls,
                "{line} started before call {i} completed"
            );
            b.release(i);
        }
        next.await.0
    }

    /// A connection with unordered reads over `b`.
    fn scripted_conn(b: &Arc<Scripted>) -> Conn {
        let opts = GatewayOptions {
            unordered_reads: true,
            ..Default::default()
        };
        let backend: Arc<dyn KvBackend> = b.clone();
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        Conn::new(Arc::new(Shared::new(backend, opts, None)), 1, peer)
    }

    /// The reply of a call started by `handle`.
    async fn reply(slot: Slot) -> String {
        match slot {
            Slot::Pending(mut p) => text(&p.reply(&GatewayStats::default()).await),
            Slot::Reply(b) | Slot::Close(b) => text(&b),
        }
    }

    /// Issue 12 item 5, deterministically (the backend completes calls only when
    /// told, in reverse order): a connection's calls in one stream are started at
    /// once and in request order; a call in another stream, or in none, only once
    /// the running ones completed; unordered reads only while nothing ordered runs,
    /// and a write after them waits for them. Before, a command touching the key of
    /// a running one (`SET s0:data 2`) waited while the next (`SET s0:flag 1`) was
    /// submitted, so the flag could take effect before the data.
    #[tokio::test]
    async fn calls_take_effect_in_request_order() {
        let b = Arc::new(Scripted::default());
        let mut conn = scripted_conn(&b);
        let mut slots = Vec::new();
        for line in ["SET s0:data 1", "SET s0:data 2", "SET s0:flag 1"] {
            slots.push(conn.handle(&args(line)).await.0);
        }
        let want = [
            "SET s0:data false",
            "SET s0:data false",
            "SET s0:flag false",
        ];
        assert_eq!(b.log(), want, "one stream: all started, in order");

        // another stream waits for the running calls, completed in reverse order
        slots.push(waiting(&mut conn, &b, "SET s1:x 1", &[2, 1, 0]).await);
        assert_eq!(b.log()[3], "SET s1:x false");

        // a read after a running write is ordered: in its stream at once, ...
        slots.push(conn.handle(&args("GET s1:x")).await.0);
        assert_eq!(b.log()[4], "GET s1:x false");
        // ... in another stream after it
        slots.push(waiting(&mut conn, &b, "GET s0:data", &[4, 3]).await);
        assert_eq!(b.log()[5], "GET s0:data false");
        b.release(5);
        for slot in slots.drain(..) {
            assert_eq!(reply(slot).await, "+OK\r\n");
        }

        // with nothing ordered running, reads go unordered, together
        for line in ["GET s0:data", "GET s1:x"] {
            slots.push(conn.handle(&args(line)).await.0);
        }
        assert_eq!(b.log()[6..], ["GET s0:data true", "GET s1:x true"]);
        // and a write waits for them (a read falling back to the ordered path
        // would be numbered after it)
        slots.push(waiting(&mut conn, &b, "SET s0:data 3", &[7, 6]).await);
        assert_eq!(b.log()[8], "SET s0:data false");

        // a command spanning streams runs alone
        slots.push(waiting(&mut conn, &b, "MSET s0:a 1 s1:b 2", &[8]).await);
        assert_eq!(b.log()[9], "MSET s0:a s1:b false");
        slots.push(waiting(&mut conn, &b, "SET s0:z 1", &[9]).await);
        b.release(10);
        assert_eq!(b.log().len(), 11);
        for slot in slots {
            assert_eq!(reply(slot).await, "+OK\r\n");
        }
    }

    /// Issue 12 item 4: an `EXEC` is one ordered call in the stream of its keys,
    /// started after the connection's earlier calls of that stream without
    /// waiting for them, and after the running calls of another stream complete;
    /// the queued commands reach the backend only inside it.
    #[tokio::test]
    async fn exec_takes_the_ordered_lane_of_its_keys() {
        let b = Arc::new(Scripted::default());
        let mut conn = scripted_conn(&b);
        let mut slots = vec![conn.handle(&args("SET s0:a 1")).await.0];
        for (line, want) in [
            ("MULTI", "+OK\r\n"),
            ("SET s0:b 2", "+QUEUED\r\n"),
            ("GET s0:a", "+QUEUED\r\n"),
        ] {
            assert_eq!(reply(conn.handle(&args(line)).await.0).await, want);
        }
        slots.push(conn.handle(&args("EXEC")).await.0);
        assert_eq!(b.log(), ["SET s0:a false", "EXEC s0:b s0:a false"]);
        for line in ["MULTI", "SET s1:x 1"] {
            conn.handle(&args(line)).await;
        }
        slots.push(waiting(&mut conn, &b, "EXEC", &[1, 0]).await);
        assert_eq!(b.log()[2], "EXEC s1:x false");
        b.release(2);
        for slot in slots {
            assert_eq!(reply(slot).await, "+OK\r\n");
        }
    }

    #[test]
    fn unknown_command_text_is_bounded() {
        let args: Vec<Bytes> = std::iter::once(Bytes::from_static(b"FOO"))
            .chain((0..1000).map(|_| Bytes::from(vec![b'x'; 100])))
            .collect();
        let text = commands::unknown_command(&args);
        assert!(text.starts_with("ERR unknown command 'FOO', with args beginning with: 'xxx"));
        assert!(text.len() < 400, "{}", text.len());
        assert_eq!(
            commands::unknown_command(&[Bytes::from_static(b"x")]),
            "ERR unknown command 'x', with args beginning with: "
        );
    }
}
