//! End-to-end tests of the gateway on 127.0.0.1: the real `redis` crate as a client,
//! plus raw sockets for inline commands, exact byte-level pipelining checks and
//! protocol errors. Every test is bounded by a timeout; none asserts on timing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byzscale_apps::kv::{KvOp, KvReply, KvStore, Model};
use byzscale_gateway::{resp, serve, BoxFuture, GatewayOptions, GatewayStats, KvBackend};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Barrier};
use tokio::task::JoinHandle;

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An in-memory backend with instrumentation, modelling a replicated store behind
/// FIFO streams (the node's: one BFT client per group): the calls of one stream take
/// effect in the order they were started, the streams independently of each other,
/// and replies complete in any order. It records every call and every effect, tracks
/// how many calls run at once, can delay writes before and after they take effect
/// (so that an out-of-order gateway would be caught), makes keys named `fail` fail
/// and `panic` panic, and makes keys starting with `barrier` wait until `barrier`
/// calls wait together.
#[derive(Default)]
struct TestBackend {
    store: Mutex<KvStore>,
    calls: Mutex<Vec<(KvOp, bool)>>,
    /// The operations in the order they took effect.
    effects: Mutex<Vec<KvOp>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Writes sleep up to this many microseconds (random) before taking effect
    /// and again before replying.
    max_write_delay_us: u64,
    barrier: Option<Arc<Barrier>>,
    /// Models a replicated backend behind one FIFO client (the node's): an
    /// operation encoding to more than this many bytes is never executed,
    /// and every call after it waits behind it forever.
    fifo_limit: Option<usize>,
    stuck: std::sync::atomic::AtomicBool,
    /// How many FIFO streams (0 counts as 1): a key's stream is the sum of its
    /// bytes modulo this (as the sharded store's groups); an op with keys in
    /// several streams has none and takes effect as soon as it is ready.
    streams: u64,
    /// Per stream: tickets handed out, and how many took effect.
    turns: Mutex<BTreeMap<u64, (u64, watch::Sender<u64>)>>,
}

impl TestBackend {
    fn stream_of(&self, op: &KvOp) -> Option<u64> {
        let n = self.streams.max(1);
        if n == 1 {
            return Some(0);
        }
        if op.touches_all_keys() {
            return None;
        }
        let mut streams: Vec<u64> = op
            .keys()
            .iter()
            .map(|k| k.iter().map(|&b| u64::from(b)).sum::<u64>() % n)
            .collect();
        streams.dedup();
        match streams.as_slice() {
            [s] => Some(*s),
            _ => None,
        }
    }

    fn delay(&self, op: &KvOp) -> Duration {
        if op.is_read_only() || self.max_write_delay_us == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(rand::thread_rng().gen_range(1..=self.max_write_delay_us))
    }

    fn apply(&self, op: &KvOp) -> KvReply {
        self.effects.lock().unwrap().push(op.clone());
        self.store.lock().unwrap().apply(op)
    }
}

/// Decrements `running` however the call ends.
struct Running(Arc<TestBackend>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The next call of a stream may take effect once this is dropped.
struct Turn(Arc<TestBackend>, u64);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.turns.lock().unwrap()[&self.1]
            .1
            .send_modify(|n| *n += 1);
    }
}

struct Handle(Arc<TestBackend>);

impl KvBackend for Handle {
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'static, Result<KvReply, String>> {
        let b = self.0.clone();
        b.calls.lock().unwrap().push((op.clone(), read_only));
        let (before, after) = (b.delay(&op), b.delay(&op));
        if let Some(limit) = b.fifo_limit {
            if op.encode().len() > limit {
                b.stuck.store(true, Ordering::SeqCst);
            }
            if b.stuck.load(Ordering::SeqCst) {
                return Box::pin(std::future::pending());
            }
        }
        // an ordered call takes its place in its stream now (unordered reads and
        // ops without a stream take effect whenever they are ready)
        let turn = match b.stream_of(&op).filter(|_| !read_only) {
            Some(s) => {
                let mut turns = b.turns.lock().unwrap();
                let (next, applied) = turns.entry(s).or_insert_with(|| (0, watch::channel(0).0));
                *next += 1;
                Some((*next - 1, applied.subscribe(), s))
            }
            None => None,
        };
        Box::pin(async move {
            let now = b.running.fetch_add(1, Ordering::SeqCst) + 1;
            b.max_running.fetch_max(now, Ordering::SeqCst);
            let _running = Running(b.clone());
            let keys: Vec<Vec<u8>> = op.keys().iter().map(|k| k.to_vec()).collect();
            if keys.iter().any(|k| k.starts_with(b"barrier")) {
                if let Some(barrier) = &b.barrier {
                    barrier.wait().await;
                }
            }
            if !before.is_zero() {
                tokio::time::sleep(before).await;
            }
            let mut turn_taken = None;
            if let Some((ticket, mut applied, s)) = turn {
                let _ = applied.wait_for(|n| *n == ticket).await;
                turn_taken = Some(Turn(b.clone(), s));
            }
            if keys.iter().any(|k| k == b"panic") {
                panic!("backend bug");
            }
            let reply = if keys.iter().any(|k| k == b"fail") {
                Err("backend down".to_string())
            } else {
                Ok(b.apply(&op))
            };
            drop(turn_taken);
            if !after.is_zero() {
                tokio::time::sleep(after).await;
            }
            reply
        })
    }

    fn stream(&self, op: &KvOp) -> Option<u64> {
        self.0.stream_of(op)
    }
}

struct Server {
    addr: SocketAddr,
    backend: Arc<TestBackend>,
    stats: Arc<GatewayStats>,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(opts: GatewayOptions, backend: TestBackend) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backend = Arc::new(backend);
    let stats = opts.stats();
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        Arc::new(Handle(backend.clone())),
        opts,
        stop_rx,
    ));
    Server {
        addr,
        backend,
        stats,
        stop,
        task,
    }
}

impl Server {
    async fn client(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(format!("redis://{}/", self.addr)).unwrap();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(20)))
            .set_response_timeout(Some(Duration::from_secs(20)));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap()
    }

    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Send `input`, half-close, and read everything until the server closes.
async fn exchange(addr: SocketAddr, input: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.split();
    let reading = async {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        out
    };
    let writing = async {
        // the server may close before taking everything (protocol errors)
        let _ = wr.write_all(input).await;
        let _ = wr.shutdown().await;
    };
    let (out, ()) = tokio::join!(reading, writing);
    out
}

/// A multibulk request.
fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

async fn query<T: redis::FromRedisValue>(
    con: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<T> {
    cmd(args).query_async(con).await
}

async fn err_text(con: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> String {
    match query::<redis::Value>(con, args).await {
        Ok(v) => panic!("{args:?} succeeded: {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn bounded<F: std::future::Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(TEST_TIMEOUT, f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_through_the_redis_crate() {
    bounded(async {
        let server = start(GatewayOptions::default(), TestBackend::default()).await;
        let mut con = server.client().await;
        let c = &mut con;

        assert_eq!(query::<String>(c, &["PING"]).await.unwrap(), "PONG");
        assert_eq!(query::<String>(c, &["PING", "hi"]).await.unwrap(), "hi");
        assert_eq!(query::<String>(c, &["ECHO", "a b"]).await.unwrap(), "a b");

        // GET / SET, binary-safe
        assert_eq!(query::<String>(c, &["SET", "k", "v"]).await.unwrap(), "OK");
        assert_eq!(
            query::<Option<String>>(c, &["get", "k"]).await.unwrap(),
            Some("v".into())
        );
        assert_eq!(
            query::<Option<String>>(c, &["GET", "missing"])
                .await
                .unwrap(),
            None
        );
        let odd: &[u8] = b"\x00\r\n$3\r\n*\xff";
        let set: String = redis::cmd("SET")
            .arg(odd)
            .arg(odd)
            .query_async(c)
            .await
            .unwrap();
        assert_eq!(set, "OK");
        let got: Vec<u8> = redis::cmd("GET").arg(odd).query_async(c).await.unwrap();
        assert_eq!(got, odd);
        let big = vec![b'x'; 1 << 20];
        let _: () = redis::cmd("SET")
            .arg("big")
            .arg(&big)
            .query_async(c)
            .await
            .unwrap();
        let got: Vec<u8> = redis::cmd("GET").arg("big").query_async(c).await.unwrap();
        assert_eq!(got, big);

        // EXISTS / DEL
        assert_eq!(
            query::<i64>(c, &["EXISTS", "k", "missing", "k"])
                .await
                .unwrap(),
            2
        );
        assert_eq!(query::<i64>(c, &["DEL", "k", "missing"]).await.unwrap(), 1);
        assert_eq!(query::<i64>(c, &["EXISTS", "k"]).await.unwrap(), 0);

        // INCR and its errors
        assert_eq!(query::<i64>(c, &["INCR", "n"]).await.unwrap(), 1);
        assert_eq!(query::<i64>(c, &["INCR", "n"]).await.unwrap(), 2);
        query::<()>(c, &["SET", "s", "abc"]).await.unwrap();
        let e = err_text(c, &["INCR", "s"]).await;
        assert!(e.contains("value is not an integer or out of range"), "{e}");
        query::<()>(c, &["SET", "max", "9223372036854775807"])
            .await
            .unwrap();
        let e = err_text(c, &["INCR", "max"]).await;
        assert!(e.contains("increment or decrement would overflow"), "{e}");
        assert_eq!(
            query::<String>(c, &["GET", "max"]).await.unwrap(),
            "9223372036854775807"
        );

        // MSET / MGET
        assert_eq!(
            query::<String>(c, &["MSET", "a", "1", "b", "2", "a", "3"])
                .await
                .unwrap(),
            "OK"
        );
        assert_eq!(
            query::<Vec<Option<String>>>(c, &["MGET", "a", "nope", "b"])
                .await
                .unwrap(),
            vec![Some("3".into()), None, Some("2".into())]
        );

        // argument errors and unknown commands
        let e = err_text(c, &["GET"]).await;
        assert!(
            e.contains("wrong number of arguments for 'get' command"),
            "{e}"
        );
        let e = err_text(c, &["MSET", "a"]).await;
        assert!(
            e.contains("wrong number of arguments for 'mset' command"),
            "{e}"
        );
        let e = err_text(c, &["SET", "k", "v", "BOGUS"]).await;
        assert!(e.contains("syntax error"), "{e}");
        let e = err_text(c, &["NOSUCH", "x"]).await;
        assert!(
            e.contains("unknown command 'NOSUCH', with args beginning with: 'x'"),
            "{e}"
        );

        // backend failures become error replies; the connection goes on
        let e = err_text(c, &["GET", "fail"]).await;
        assert!(e.contains("backend down"), "{e}");
        let e = err_text(c, &["SET", "panic", "1"]).await;
        assert!(e.contains("internal error"), "{e}");
        assert_eq!(query::<String>(c, &["PING"]).await.unwrap(), "PONG");

        // handshake and admin commands
        assert_eq!(query::<String>(c, &["SELECT", "0"]).await.unwrap(), "OK");
        let e = err_text(c, &["SELECT", "1"]).await;
        assert!(e.contains("DB index is out of range"), "{e}");
        assert_eq!(
            query::<Option<String>>(c, &["CLIENT", "GETNAME"])
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            query::<String>(c, &["CLIENT", "SETNAME", "me"])
                .await
                .unwrap(),
            "OK"
        );
        assert_eq!(
            query::<String>(c, &["CLIENT", "GETNAME"]).await.unwrap(),
            "me"
        );
        assert!(query::<i64>(c, &["CLIENT", "ID"]).await.unwrap() > 0);
        assert_eq!(
            query::<Vec<String>>(c, &["CONFIG", "GET", "save"])
                .await
                .unwrap(),
            ["save", ""]
        );
        assert_eq!(
            query::<Vec<String>>(c, &["CONFIG", "GET", "appendonly"])
                .await
                .unwrap(),
            ["appendonly", "no"]
        );
        assert_eq!(
            query::<Vec<String>>(c, &["CONFIG", "GET", "*"])
                .await
                .unwrap()
                .len(),
            8
        );
        assert!(query::<Vec<String>>(c, &["CONFIG", "GET", "nosuch"])
            .await
            .unwrap()
            .is_empty());
        assert!(query::<Vec<String>>(c, &["COMMAND"])
            .await
            .unwrap()
            .is_empty());
        assert!(query::<i64>(c, &["COMMAND", "COUNT"]).await.unwrap() > 7);
        err_text(c, &["COMMAND", "DOCS"]).await;
        let hello: Vec<redis::Value> = query(c, &["HELLO", "2"]).await.unwrap();
        assert_eq!(hello.len(), 14);
        let e = err_text(c, &["HELLO", "4"]).await;
        assert!(e.contains("unsupported protocol version"), "{e}");
        let info: String = query(c, &["INFO"]).await.unwrap();
        assert!(info.contains("redis_version:"), "{info}");
        assert!(info.contains("total_commands_processed:"), "{info}");
        let info: String = query(c, &["INFO", "stats"]).await.unwrap();
        assert!(!info.contains("redis_version:"), "{info}");

        // reads were ordered (unordered_reads is off)
        assert!(server
            .backend
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|(_, ro)| !ro));
        let stats = server.stats.snapshot();
        assert!(stats.commands >= 45, "{stats:?}");
        assert!(stats.errors >= 11, "{stats:?}");
        assert_eq!(stats.protocol_errors, 0);
        assert_eq!(stats.active_connections, 1);
        drop(con);
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_reads_are_flagged_read_only() {
    bounded(async {
        let opts = GatewayOptions {
            unordered_reads: true,
            ..Default::default()
        };
        let server = start(opts, TestBackend::default()).await;
        let mut con = server.client().await;
        let c = &mut con;
        query::<()>(c, &["SET", "a", "1"]).await.unwrap();
        query::<()>(c, &["MSET", "b", "2"]).await.unwrap();
        query::<i64>(c, &["INCR", "n"]).await.unwrap();
        query::<Option<String>>(c, &["GET", "a"]).await.unwrap();
        query::<i64>(c, &["EXISTS", "a"]).await.unwrap();
        query::<Vec<Option<String>>>(c, &["MGET", "a", "b"])
            .await
            .unwrap();
        query::<i64>(c, &["DEL", "a"]).await.unwrap();
        let calls: Vec<(&str, bool)> = server
            .backend
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(op, ro)| (op.name(), *ro))
            .collect();
        assert_eq!(
            calls,
            [
                ("SET", false),
                ("MSET", false),
                ("INCR", false),
                ("GET", true),
                ("EXISTS", true),
                ("MGET", true),
                ("DEL", false),
            ]
        );
        drop(con);
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

/// A random command on a few keys, as arguments.
fn random_command(rng: &mut impl Rng) -> Vec<Vec<u8>> {
    let key = |rng: &mut dyn rand::RngCore| format!("k{}", rng.gen_range(0..6)).into_bytes();
    let val = |rng: &mut dyn rand::RngCore| match rng.gen_range(0..3) {
        0 => b"x".to_vec(),
        _ => rng.gen_range(-3..50).to_string().into_bytes(),
    };
    let mut args: Vec<Vec<u8>> = Vec::new();
    match rng.gen_range(0..9) {
        0 | 1 => args.extend([b"SET".to_vec(), key(rng), val(rng)]),
        2 | 3 => args.extend([b"GET".to_vec(), key(rng)]),
        4 => args.extend([b"INCR".to_vec(), key(rng)]),
        5 => args.extend([b"DEL".to_vec(), key(rng), key(rng)]),
        6 => args.extend([b"EXISTS".to_vec(), key(rng), key(rng)]),
        7 => args.extend([b"MGET".to_vec(), key(rng), key(rng), key(rng)]),
        _ => args.extend([b"MSET".to_vec(), key(rng), val(rng), key(rng), val(rng)]),
    }
    args
}

/// Pipelined commands get exactly the replies of sequential execution, in order,
/// although the backend runs them concurrently and finishes writes in random order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_replies_match_sequential_execution() {
    bounded(async {
        for (unordered_reads, depth) in [(false, 16), (true, 16), (true, 1)] {
            let opts = GatewayOptions {
                unordered_reads,
                pipeline_depth: depth,
                ..Default::default()
            };
            let backend = TestBackend {
                max_write_delay_us: 2000,
                ..Default::default()
            };
            let server = start(opts, backend).await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(depth as u64);
            let mut model = Model::new();
            let mut input = Vec::new();
            let mut expected = Vec::new();
            for i in 0..600 {
                if i % 50 == 0 {
                    input.extend_from_slice(b"PING\r\n");
                    expected.extend_from_slice(b"+PONG\r\n");
                }
                let args = random_command(&mut rng);
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                input.extend(request(&refs));
                let op = KvOp::from_args(&args).unwrap();
                expected.extend(resp::reply(&model.apply(&op), resp::Proto::Resp2));
            }
            let got = exchange(server.addr, &input).await;
            assert_eq!(
                text(&got),
                text(&expected),
                "unordered_reads {unordered_reads}"
            );
            let max = server.backend.max_running.load(Ordering::SeqCst);
            assert!(max <= depth, "{max} calls ran at once, depth {depth}");
            assert_eq!(server.backend.store.lock().unwrap().model(), &model);
            server.shutdown().await;
        }
    })
    .await
    .expect("test timed out");
}

/// Pipelined commands on different keys reach the backend together: four calls that
/// each wait for all four to arrive complete only if the gateway runs them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commands_run_concurrently() {
    bounded(async {
        let opts = GatewayOptions {
            pipeline_depth: 4,
            ..Default::default()
        };
        let backend = TestBackend {
            barrier: Some(Arc::new(Barrier::new(4))),
            ..Default::default()
        };
        let server = start(opts, backend).await;
        let mut con = server.client().await;
        let mut pipe = redis::pipe();
        for i in 0..4 {
            pipe.cmd("SET").arg(format!("barrier{i}")).arg(i);
        }
        for i in 0..4 {
            pipe.cmd("GET").arg(format!("barrier{i}"));
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut con).await.unwrap();
        assert_eq!(replies.len(), 8);
        assert_eq!(
            redis::from_redis_value::<Vec<String>>(redis::Value::Array(replies[4..].to_vec()))
                .unwrap(),
            ["0", "1", "2", "3"]
        );
        assert_eq!(server.backend.max_running.load(Ordering::SeqCst), 4);
        drop(con);
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_pipeline_and_many_clients() {
    bounded(async {
        let backend = TestBackend {
            max_write_delay_us: 500,
            ..Default::default()
        };
        let server = start(GatewayOptions::default(), backend).await;
        let mut tasks = Vec::new();
        for client in 0..8 {
            let mut con = server.client().await;
            tasks.push(tokio::spawn(async move {
                let mut pipe = redis::pipe();
                for i in 0..200 {
                    pipe.cmd("INCR").arg("shared");
                    pipe.cmd("SET").arg(format!("c{client}")).arg(i);
                    pipe.cmd("GET").arg(format!("c{client}"));
                }
                let replies: Vec<redis::Value> = pipe.query_async(&mut con).await.unwrap();
                for i in 0..200 {
                    let got: String = redis::from_redis_value(replies[3 * i + 2].clone()).unwrap();
                    assert_eq!(got, i.to_string());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut con = server.client().await;
        assert_eq!(
            query::<i64>(&mut con, &["GET", "shared"]).await.unwrap(),
            1600
        );
        drop(con);
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_and_quit() {
    bounded(async {
        let server = start(GatewayOptions::default(), TestBackend::default()).await;
        let got = exchange(
            server.addr,
            b"PING\r\nSET k \"hello world\"\r\n\r\nGET k\r\n  exists k k\nmget k 'x y'\r\n",
        )
        .await;
        assert_eq!(
            text(&got),
            "+PONG\r\n+OK\r\n$11\r\nhello world\r\n:2\r\n*2\r\n$11\r\nhello world\r\n$-1\r\n"
        );
        // QUIT answers +OK and closes: what follows is not run
        let got = exchange(server.addr, b"SET a 1\r\nQUIT\r\nSET a 2\r\n").await;
        assert_eq!(text(&got), "+OK\r\n+OK\r\n");
        let got = exchange(server.addr, b"GET a\r\n").await;
        assert_eq!(text(&got), "$1\r\n1\r\n");
        // an HTTP request is dropped without a reply once its Host: line arrives
        let got = exchange(
            server.addr,
            b"POST / HTTP/1.1\r\nHost: x\r\n\r\nSET a 3\r\n",
        )
        .await;
        assert_eq!(text(&got), "");
        let got = exchange(server.addr, b"PING\r\nGET / HTTP/1.1\r\nHost: x\r\n").await;
        assert!(text(&got).starts_with("+PONG\r\n-ERR wrong number of arguments"));
        assert!(!text(&got).contains("Host"));
        let got = exchange(server.addr, b"GET a\r\n").await;
        assert_eq!(text(&got), "$1\r\n1\r\n");
        assert_eq!(server.stats.protocol_errors(), 2);
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_close_only_that_connection() {
    bounded(async {
        let opts = GatewayOptions {
            max_bulk_len: 1024,
            max_array_len: 16,
            max_request_len: 4096,
            max_inline_len: 256,
            ..Default::default()
        };
        let server = start(opts, TestBackend::default()).await;
        let mut good = server.client().await;
        query::<()>(&mut good, &["SET", "x", "1"]).await.unwrap();

        let mut too_large = b"*5\r\n".to_vec();
        for _ in 0..5 {
            too_large.extend(request(&[&[b'v'; 1000]])[4..].iter());
        }
        let mut streaming = b"*2\r\n$3\r\nSET\r\n$999999999\r\n".to_vec();
        streaming.extend(vec![b'z'; 1 << 20]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let binary: Vec<u8> = (0..1000).map(|_| rng.gen_range(0x80..=0xff)).collect();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"*1\r\n$5000\r\n".to_vec(), "invalid bulk length"),
            (streaming, "invalid bulk length"),
            (b"*100\r\n".to_vec(), "invalid multibulk length"),
            (b"*abc\r\n".to_vec(), "invalid multibulk length"),
            (b"*2\r\n:1\r\n".to_vec(), "expected '$', got ':'"),
            (
                b"*1\r\n$2\r\nabc\r\n".to_vec(),
                "expected CRLF after bulk string",
            ),
            (too_large, "request too large"),
            (binary, "too big inline request"),
            (b"GET \"x\r\n".to_vec(), "unbalanced quotes in request"),
        ];
        let n = cases.len() as u64;
        for (bad, msg) in cases {
            // the replies to earlier requests come first, then the error, then EOF
            let mut input = b"PING\r\n".to_vec();
            input.extend_from_slice(&request(&[b"GET", b"x"]));
            input.extend(bad);
            let got = exchange(server.addr, &input).await;
            assert_eq!(
                text(&got),
                format!("+PONG\r\n$1\r\n1\r\n-ERR Protocol error: {msg}\r\n")
            );
            // the other connection is unaffected
            assert!(query::<i64>(&mut good, &["INCR", "y"]).await.unwrap() > 0);
        }
        let stats = server.stats.snapshot();
        assert_eq!(stats.protocol_errors, n);
        drop(good);
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused() {
    bounded(async {
        let opts = GatewayOptions {
            max_connections: 2,
            ..Default::default()
        };
        let server = start(opts, TestBackend::default()).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            s.write_all(b"PING\r\n").await.unwrap();
            let mut reply = [0u8; 7];
            s.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"+PONG\r\n");
            held.push(s);
        }
        let got = exchange(server.addr, b"PING\r\n").await;
        assert_eq!(text(&got), "-ERR max number of clients reached\r\n");
        assert_eq!(server.stats.rejected_connections(), 1);
        // closing one makes room (once the gateway notices)
        drop(held.pop());
        let mut attempts = 0;
        loop {
            let got = exchange(server.addr, b"PING\r\n").await;
            if got == b"+PONG\r\n" {
                break;
            }
            attempts += 1;
            assert!(attempts < 200, "never accepted again: {}", text(&got));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(held);
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_owed_replies_and_returns() {
    bounded(async {
        let backend = TestBackend {
            barrier: Some(Arc::new(Barrier::new(2))),
            ..Default::default()
        };
        let server = start(GatewayOptions::default(), backend).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"PING\r\n").await.unwrap();
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).await.unwrap();
        // a call that cannot finish until we let it
        s.write_all(&request(&[b"SET", b"barrier", b"1"]))
            .await
            .unwrap();
        while server.backend.running.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let barrier = server.backend.barrier.clone().unwrap();
        server.stop.send(true).unwrap();
        barrier.wait().await;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(text(&rest), "+OK\r\n");
        server.task.await.unwrap().unwrap();
        // nothing listens any more
        assert!(TcpStream::connect(server.addr).await.is_err());
    })
    .await
    .expect("test timed out");
}

/// Issue 10 item 7: the node's gateway accepted commands up to its 12 MiB
/// request limit, the replicas drop operations over `max_op_bytes` (1 MiB),
/// and since every connection of a gateway shares one FIFO client, one
/// oversized SET hung every later ordered command of that gateway (the
/// backend here models exactly that). With `max_op_bytes` the gateway
/// answers such a command with a clear `-ERR` at once, never passes it to
/// the backend, and goes on serving the same connection and others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_max_op_bytes_gets_an_error_at_once_and_serving_goes_on() {
    bounded(async {
        let limit = 1 << 20;
        let opts = GatewayOptions {
            max_op_bytes: limit,
            ..Default::default()
        };
        let backend = TestBackend {
            fifo_limit: Some(limit),
            ..Default::default()
        };
        let server = start(opts, backend).await;
        let mut con = server.client().await;
        let mut other = server.client().await;
        query::<()>(&mut con, &["SET", "a", "1"]).await.unwrap();
        let big = "v".repeat(2 << 20);
        let e = err_text(&mut con, &["SET", "big", &big]).await;
        assert!(
            e.contains("command too large") && e.contains(&limit.to_string()),
            "{e}"
        );
        let many: Vec<String> = (0..3).map(|i| format!("k{i}")).collect();
        let mut mset = vec!["MSET"];
        for k in &many {
            mset.push(k);
            mset.push(&big[..600_000]);
        }
        let e = err_text(&mut other, &mset).await;
        assert!(e.contains("command too large"), "{e}");
        // both connections go on, and ordered commands are not stuck
        query::<()>(&mut con, &["SET", "a", "2"]).await.unwrap();
        assert_eq!(query::<i64>(&mut other, &["INCR", "n"]).await.unwrap(), 1);
        assert_eq!(
            query::<String>(&mut other, &["GET", "a"]).await.unwrap(),
            "2"
        );
        let calls = server.backend.calls.lock().unwrap().clone();
        assert!(
            calls.iter().all(|(op, _)| op.encode().len() <= limit),
            "an oversized command reached the backend"
        );
        assert_eq!(server.stats.snapshot().protocol_errors, 0);
        drop((con, other));
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

/// Issue 12 item 5: one connection pipelines, for many i, `SET data:i old`,
/// `SET data:i v<i>` and `SET flag:i 1`, while another connection polls the
/// flags; whenever it sees a flag it must see the data written before it. The
/// backend delays writes at random before and after they take effect, in one
/// FIFO stream (the single-group store) or two (the sharded store, where
/// `data:i` and `flag:i` often fall in different streams). The writes must take
/// effect in exactly the order sent. Before, `SET data:i v<i>` (the key of a
/// running command) waited for `SET data:i old` to complete while `SET flag:i 1`
/// went ahead, and with two streams nothing kept them in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_writes_take_effect_in_the_order_sent() {
    bounded(async {
        for (streams, unordered_reads) in [(1, false), (1, true), (2, true)] {
            let opts = GatewayOptions {
                unordered_reads,
                ..Default::default()
            };
            let backend = TestBackend {
                max_write_delay_us: 300,
                streams,
                ..Default::default()
            };
            let server = start(opts, backend).await;
            let n = 150;
            let mut input = Vec::new();
            let mut sent = Vec::new();
            for i in 0..n {
                for (k, v) in [("data", "old".to_string()), ("data", format!("v{i}"))] {
                    let k = format!("{k}:{i}");
                    input.extend(request(&[b"SET", k.as_bytes(), v.as_bytes()]));
                    sent.push(KvOp::Set(k.into_bytes(), v.into_bytes()));
                }
                let k = format!("flag:{i}");
                input.extend(request(&[b"SET", k.as_bytes(), b"1"]));
                sent.push(KvOp::Set(k.into_bytes(), b"1".to_vec()));
                // a read of the connection's own write, between writes
                input.extend(request(&[b"GET", format!("data:{i}").as_bytes()]));
            }
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut poller = server.client().await;
            let poll_done = done.clone();
            let polling = tokio::spawn(async move {
                while !poll_done.load(Ordering::SeqCst) {
                    for i in (0..n).rev() {
                        let flag: Option<String> =
                            query(&mut poller, &["GET", &format!("flag:{i}")])
                                .await
                                .unwrap();
                        if flag.is_some() {
                            let data: Option<String> =
                                query(&mut poller, &["GET", &format!("data:{i}")])
                                    .await
                                    .unwrap();
                            assert_eq!(data, Some(format!("v{i}")), "flag:{i} without its data");
                            break;
                        }
                    }
                }
            });
            let got = exchange(server.addr, &input).await;
            done.store(true, Ordering::SeqCst);
            polling.await.unwrap();
            let mut want = String::new();
            for i in 0..n {
                want.push_str(&format!(
                    "+OK\r\n+OK\r\n+OK\r\n${}\r\nv{i}\r\n",
                    1 + i.to_string().len()
                ));
            }
            assert_eq!(text(&got), want, "streams {streams}");
            let writes: Vec<KvOp> = server
                .backend
                .effects
                .lock()
                .unwrap()
                .iter()
                .filter(|op| !op.is_read_only())
                .cloned()
                .collect();
            assert!(
                writes == sent,
                "streams {streams}: writes took effect out of order"
            );
            server.shutdown().await;
        }
    })
    .await
    .expect("test timed out");
}

/// Send `input` (lines, `\n` for `\r\n`) on `s` and check the reply bytes.
async fn say(s: &mut TcpStream, input: &str, want: &str) {
    s.write_all(input.replace('\n', "\r\n").as_bytes())
        .await
        .unwrap();
    let want = want.replace('\n', "\r\n");
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(text(&got), want, "after {input:?}");
}

/// Issue 12 item 4 over TCP: a write by another connection to a watched key
/// makes `EXEC` reply nil and run nothing; the queued commands run as one
/// operation; the redis crate's atomic pipelines (`MULTI`/`EXEC`) work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_exec_across_connections() {
    let server = start(
        GatewayOptions {
            unordered_reads: true,
            ..Default::default()
        },
        TestBackend {
            max_write_delay_us: 300,
            streams: 3,
            ..Default::default()
        },
    )
    .await;
    bounded(async {
        let mut a = TcpStream::connect(server.addr).await.unwrap();
        let mut b = TcpStream::connect(server.addr).await.unwrap();
        say(&mut a, "SET k 1\nWATCH k\nGET k\n", "+OK\n+OK\n$1\n1\n").await;
        say(&mut b, "SET k 5\n", "+OK\n").await;
        say(
            &mut a,
            "MULTI\nSET k 2\nSET j 2\n",
            "+OK\n+QUEUED\n+QUEUED\n",
        )
        .await;
        say(&mut a, "EXEC\nMGET k j\n", "*-1\n*2\n$1\n5\n$-1\n").await;
        // unchanged: it runs, as one operation
        say(
            &mut a,
            "WATCH k\nMULTI\nINCR k\nSET j 7\nEXEC\n",
            "+OK\n+OK\n+QUEUED\n+QUEUED\n*2\n:6\n+OK\n",
        )
        .await;
        let execs: Vec<KvOp> = server
            .backend
            .effects
            .lock()
            .unwrap()
            .iter()
            .filter(|op| matches!(op, KvOp::Exec { .. }))
            .cloned()
            .collect();
        assert_eq!(execs.len(), 2);
        assert_eq!(execs[1].to_string(), "EXEC WATCH k=2 [INCR k; SET j 7]");

        let mut con = server.client().await;
        let (x, y): (i64, String) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg("n")
            .cmd("GET")
            .arg("n")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!((x, y.as_str()), (1, "1"));
    })
    .await
    .unwrap();
    server.shutdown().await;
}
