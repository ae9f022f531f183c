//! End-to-end tests of the runtime and transport on loopback: real keys, real
//! TCP, a small echo protocol defined here. Every test is bounded by a timeout;
//! nothing asserts on timing.

use byzscale_core::config::{Deployment, GroupConfig, ReplicaConfig};
use byzscale_core::crypto::{Identity, Mac};
use byzscale_core::quorum::FaultModel;
use byzscale_core::{codec, Addr, ClientId, Cx, GroupId, NodeId, Protocol};
use byzscale_net::*;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const KIND: u8 = 9;
const MS: u64 = 1_000_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Msg {
    Ping { n: u64, mac: Option<Mac> },
    Pong { n: u64 },
}

#[derive(Debug)]
struct Ping {
    to: Vec<Addr>,
    n: u64,
}

#[derive(Debug, PartialEq)]
enum Out {
    Pong {
        from: Addr,
        n: u64,
    },
    Pinged {
        from: Addr,
        n: u64,
        mac_ok: Option<bool>,
    },
    Timer(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum T {
    Cancelled,
    Rearmed,
}

/// Answers every ping with a pong; clients attach a MAC for each replica.
struct Echo {
    with_mac: bool,
}

impl Protocol for Echo {
    type Message = Msg;
    type Input = Ping;
    type Output = Out;
    type Timer = T;
    type Record = byzscale_core::NoRecord;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        cx.set_timer(T::Rearmed, 3_600_000 * MS);
        cx.set_timer(T::Rearmed, MS); // re-arm replaces the hour-long timer
        cx.set_timer(T::Cancelled, MS);
        cx.cancel_timer(T::Cancelled);
    }
    fn on_input(&mut self, input: Ping, cx: &mut Cx<'_, Self>) {
        if self.with_mac {
            for to in input.to {
                let mac = cx.crypto().mac(to, &input.n.to_le_bytes()).ok();
                cx.send(to, Msg::Ping { n: input.n, mac });
            }
        } else {
            cx.multicast(
                input.to,
                Msg::Ping {
                    n: input.n,
                    mac: None,
                },
            );
        }
    }
    fn on_message(&mut self, from: Addr, msg: Msg, cx: &mut Cx<'_, Self>) {
        match msg {
            Msg::Ping { n, mac } => {
                let mac_ok = mac.map(|m| cx.crypto().verify_mac(from, &n.to_le_bytes(), &m));
                cx.output(Out::Pinged { from, n, mac_ok });
                cx.send(from, Msg::Pong { n });
            }
            Msg::Pong { n } => cx.output(Out::Pong { from, n }),
        }
    }
    fn on_timer(&mut self, timer: T, cx: &mut Cx<'_, Self>) {
        match timer {
            T::Cancelled => cx.output(Out::Timer("cancelled")),
            T::Rearmed => {
                cx.output(Out::Timer("rearmed"));
                // loopback: a message to ourselves comes back through on_message
                let me = cx.crypto().me();
                cx.send(me, Msg::Pong { n: u64::MAX });
            }
        }
    }
}

fn ident(i: u64) -> Identity {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    seed[8] = 0x42;
    Identity::from_seed(seed)
}

/// Bind `N` listeners on loopback and describe them as one CFT group.
async fn cluster<const N: usize>() -> (Deployment, [TcpListener; N]) {
    let mut listeners = Vec::new();
    let mut replicas = Vec::new();
    for i in 0..N {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = ident(i as u64).public();
        replicas.push(ReplicaConfig {
            id: NodeId(i as u32),
            addr: l.local_addr().unwrap().to_string(),
            sign_key: hex_encode(&p.sign),
            dh_key: hex_encode(&p.dh),
            metrics_addr: None,
            redis_addr: None,
            http_addr: None,
        });
        listeners.push(l);
    }
    let f = (N - 1) / 2;
    let d = Deployment {
        groups: vec![GroupConfig {
            id: GroupId(0),
            fault_model: FaultModel::Cft,
            f,
            delta: N - (2 * f + 1),
            vmax: None,
            replicas,
        }],
    };
    (d, listeners.try_into().unwrap())
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fast(mut cfg: NodeConfig) -> NodeConfig {
    cfg.transport.options.backoff_min = Duration::from_millis(20);
    cfg.transport.options.backoff_max = Duration::from_millis(300);
    cfg.transport.options.handshake_timeout = Duration::from_secs(2);
    cfg
}

async fn replica(
    d: &Deployment,
    i: u32,
    listener: TcpListener,
) -> (Runtime<Echo>, mpsc::Receiver<Out>) {
    let cfg = fast(NodeConfig::replica(d, NodeId(i), ident(i as u64), KIND).unwrap());
    Runtime::start_with(
        Echo { with_mac: false },
        cfg,
        Some(listener),
        Arc::new(Registry::new()),
    )
    .await
    .unwrap()
}

/// Receive outputs until one matches.
async fn expect(rx: &mut mpsc::Receiver<Out>, want: impl Fn(&Out) -> bool) -> Out {
    loop {
        let o = rx.recv().await.expect("runtime still running");
        if want(&o) {
            return o;
        }
    }
}

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step finished in time")
}

fn node(i: u32) -> Addr {
    Addr::Node(NodeId(i))
}

/// Ping `to` from `h` every 200 ms until a pong with `n` arrives.
async fn ping_until_pong(h: &RuntimeHandle<Ping>, rx: &mut mpsc::Receiver<Out>, to: Addr, n: u64) {
    loop {
        h.submit(Ping { to: vec![to], n }).await.unwrap();
        let got = tokio::time::timeout(
            Duration::from_millis(200),
            expect(rx, |o| *o == Out::Pong { from: to, n }),
        )
        .await;
        if got.is_ok() {
            return;
        }
    }
}

#[tokio::test]
async fn three_replicas_and_a_client_exchange_messages() {
    let (d, listeners) = cluster::<3>().await;
    let delay = DelayMatrix::from_toml(
        "regions = [\"a\", \"b\"]\none_way_ms = [[0, 3], [3, 0]]\njitter_ms = 1\nclients = \"a\"\nassign = { 0 = \"a\", 1 = \"a\", 2 = \"b\" }",
    )
    .unwrap();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let cfg = fast(NodeConfig::replica(&d, NodeId(i as u32), ident(i as u64), KIND).unwrap())
            .with_delay(delay.clone());
        let (rt, rx) = Runtime::start_with(
            Echo { with_mac: false },
            cfg,
            Some(l),
            Arc::new(Registry::new()),
        )
        .await
        .unwrap();
        nodes.push((rt, rx));
    }
    bounded(async {
        // timers: the re-armed one fires (and loops a message back), the cancelled one never does
        for (_, rx) in nodes.iter_mut() {
            assert_eq!(
                expect(rx, |o| matches!(o, Out::Timer(_))).await,
                Out::Timer("rearmed")
            );
        }
        // every replica multicasts a ping to the others and hears both pongs
        for (i, (rt, _)) in nodes.iter().enumerate() {
            let others: Vec<Addr> = (0..3).filter(|j| *j != i as u32).map(node).collect();
            rt.handle()
                .submit(Ping {
                    to: others,
                    n: i as u64,
                })
                .await
                .unwrap();
        }
        for (i, (rt, rx)) in nodes.iter_mut().enumerate() {
            let me = rt.me();
            let mut pongs = Vec::new();
            while pongs.len() < 2 {
                if let Out::Pong { from, n } = expect(rx, |o| matches!(o, Out::Pong { .. })).await {
                    if from == me {
                        assert_eq!(n, u64::MAX, "loopback pong");
                        continue;
                    }
                    assert_eq!(n, i as u64);
                    pongs.push(from);
                }
            }
            pongs.sort();
            let want: Vec<Addr> = (0..3).filter(|j| *j != i as u32).map(node).collect();
            assert_eq!(pongs, want);
        }

        // a client unknown to the replicas: it dials all three, presents its key,
        // and the replicas' protocols can verify its MACs
        let c = ClientId::of_key(&ident(1000).public());
        let ccfg = fast(NodeConfig::client(&d, c, ident(1000), KIND).unwrap());
        let (client, mut crx) = Runtime::start(Echo { with_mac: true }, ccfg).await.unwrap();
        client
            .handle()
            .submit(Ping {
                to: (0..3).map(node).collect(),
                n: 5,
            })
            .await
            .unwrap();
        for (_, rx) in nodes.iter_mut() {
            let got = expect(rx, |o| matches!(o, Out::Pinged { .. })).await;
            assert_eq!(
                got,
                Out::Pinged {
                    from: Addr::Client(c),
                    n: 5,
                    mac_ok: Some(true)
                }
            );
        }
        let mut from = Vec::new();
        while from.len() < 3 {
            if let Out::Pong { from: f, n: 5 } =
                expect(&mut crx, |o| matches!(o, Out::Pong { n: 5, .. })).await
            {
                from.push(f);
            }
        }
        from.sort();
        assert_eq!(from, (0..3).map(node).collect::<Vec<_>>());
        client.stop().await.unwrap();
    })
    .await;
    for (rt, _) in nodes {
        let reg = rt.registry().clone();
        rt.stop().await.unwrap();
        assert_eq!(reg.counter("byzscale_net_faults_total", "").get(), 0);
        assert!(reg.counter("byzscale_net_frames_sent_total", "").get() > 0);
    }
}

/// A client `i` (id derived from its key) pings replica 0 once with a MAC,
/// which the replica must verify, and gets its pong; returns the client.
async fn client_pings(
    d: &Deployment,
    i: u64,
    n: u64,
    rx0: &mut mpsc::Receiver<Out>,
) -> Runtime<Echo> {
    let id = ident(i);
    let me = ClientId::of_key(&id.public());
    let cfg = fast(NodeConfig::client(d, me, id, KIND).unwrap());
    let (client, mut crx) = Runtime::start(Echo { with_mac: true }, cfg).await.unwrap();
    client
        .handle()
        .submit(Ping {
            to: vec![node(0)],
            n,
        })
        .await
        .unwrap();
    let from = Addr::Client(me);
    let seen = expect(
        rx0,
        |o| matches!(o, Out::Pinged { from: f, .. } if *f == from),
    )
    .await;
    let mac_ok = Some(true);
    assert_eq!(seen, Out::Pinged { from, n, mac_ok });
    expect(&mut crx, |o| *o == Out::Pong { from: node(0), n }).await;
    client
}

#[tokio::test]
async fn churned_clients_leave_the_replica_at_its_key_bound_and_an_evicted_one_comes_back() {
    let (d, [l]) = cluster().await;
    let mut cfg = fast(NodeConfig::replica(&d, NodeId(0), ident(0), KIND).unwrap());
    cfg.transport.options.client_keys = 4;
    let reg = Arc::new(Registry::new());
    let (n0, mut rx0) = Runtime::start_with(Echo { with_mac: false }, cfg, Some(l), reg.clone())
        .await
        .unwrap();
    let gauge = |name| reg.gauge(name, "").get();
    let keys = || {
        (
            gauge("byzscale_net_client_keys"),
            gauge("byzscale_crypto_client_keys_connected"),
            gauge("byzscale_crypto_client_keys_cached"),
        )
    };
    bounded(async {
        // client 5000 pings, leaves; 20 others come, ping and go after it
        let a = client_pings(&d, 5000, 1, &mut rx0).await;
        a.stop().await.unwrap();
        for i in 0..20 {
            let c = client_pings(&d, 6000 + i, 1, &mut rx0).await;
            c.stop().await.unwrap();
        }
        // every key beyond the 4 most recent is gone, here and in the crypto
        while keys() != (4, 0, 4) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // the first client, long evicted, comes back and is served
        let a = client_pings(&d, 5000, 2, &mut rx0).await;
        assert_eq!(
            (
                gauge("byzscale_net_client_keys"),
                gauge("byzscale_crypto_client_keys_connected")
            ),
            (5, 1)
        );
        a.stop().await.unwrap();
        while keys() != (4, 0, 4) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // a client whose id is not its key's is refused at the handshake
        let impostor = reg.counter_with(
            "byzscale_net_faults_by_kind_total",
            "",
            &[("kind", "impostor")],
        );
        let wrong = fast(NodeConfig::client(&d, ClientId(77), ident(5001), KIND).unwrap());
        let (w, _) = Runtime::start(Echo { with_mac: true }, wrong)
            .await
            .unwrap();
        while impostor.get() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w.stop().await.unwrap();
    })
    .await;
    assert_eq!(keys(), (4, 0, 4));
    n0.stop().await.unwrap();
}

#[tokio::test]
async fn impostors_fail_the_handshake() {
    let (d, [l0, l1, l2]) = cluster().await;
    // n2 is down for now (its dialers get "connection refused", not a fault)
    let addr2 = l2.local_addr().unwrap();
    drop(l2);
    let (n0, mut rx0) = replica(&d, 0, l0).await;
    let impostors0 = n0.registry().counter_with(
        "byzscale_net_faults_by_kind_total",
        "",
        &[("kind", "impostor")],
    );
    let addr1 = l1.local_addr().unwrap();

    // Impostor A listens where n1 should be, with its own key: n0 dials it and
    // rejects its handshake signature.
    let mut fake1 = fast(NodeConfig::replica(&d, NodeId(1), ident(1), KIND).unwrap());
    fake1.transport.identity = ident(666);
    let (imp_a, _) = Runtime::start_with(
        Echo { with_mac: false },
        fake1,
        Some(l1),
        Arc::new(Registry::new()),
    )
    .await
    .unwrap();
    // Impostor B dials n0 claiming to be n2.
    let mut fake2 = fast(NodeConfig::client(&d, ClientId(1), ident(667), KIND).unwrap());
    fake2.transport.me = node(2);
    fake2.transport.peers.retain(|p| p.addr == node(0));
    let (imp_b, _) = Runtime::start(Echo { with_mac: false }, fake2.clone())
        .await
        .unwrap();
    imp_b
        .handle()
        .submit(Ping {
            to: vec![node(0)],
            n: 1,
        })
        .await
        .unwrap();

    bounded(async {
        while impostors0.get() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    imp_a.stop().await.unwrap();
    imp_b.stop().await.unwrap();

    // The real n2 (with its listener) and the real n1 (on the impostor's port)
    // come up; n0 serves them normally.
    let (n2, mut rx2) = replica(&d, 2, TcpListener::bind(addr2).await.unwrap()).await;
    let l1 = TcpListener::bind(addr1).await.unwrap();
    let (n1, _rx1) = replica(&d, 1, l1).await;
    bounded(async {
        ping_until_pong(&n2.handle(), &mut rx2, node(0), 2).await;
        ping_until_pong(&n0.handle(), &mut rx0, node(1), 3).await;
    })
    .await;
    // nothing the impostors sent was delivered as coming from n1 or n2 before
    // the real ones connected
    while let Ok(o) = rx0.try_recv() {
        if let Out::Pinged { n, .. } = o {
            assert_ne!(n, 1, "impostor's ping was delivered");
        }
    }
    for rt in [n0, n1, n2] {
        rt.stop().await.unwrap();
    }
}

async fn assert_closed(mut s: TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {} // the node's hello
        }
    }
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_only_that_connection() {
    let (d, [l0, l1]) = cluster().await;
    let addr0 = l0.local_addr().unwrap();
    let (n0, mut rx0) = replica(&d, 0, l0).await;
    let (n1, mut rx1) = replica(&d, 1, l1).await;
    let faults0 = n0.registry().counter("byzscale_net_faults_total", "");
    bounded(async {
        ping_until_pong(&n0.handle(), &mut rx0, node(1), 1).await;

        // plain garbage
        let mut g = TcpStream::connect(addr0).await.unwrap();
        g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_closed(g).await;
        // a well-formed header announcing an enormous frame
        let mut o = TcpStream::connect(addr0).await.unwrap();
        let mut h = codec::encode_frame(transport::KIND_HELLO, &0u8);
        h[4..8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        o.write_all(&h[..codec::HEADER_LEN]).await.unwrap();
        assert_closed(o).await;
        // a connection that never says anything hits the handshake deadline
        let silent = TcpStream::connect(addr0).await.unwrap();
        assert_closed(silent).await;
        while faults0.get() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // the legitimate peer is still served, in both directions
        ping_until_pong(&n1.handle(), &mut rx1, node(0), 2).await;
        ping_until_pong(&n0.handle(), &mut rx0, node(1), 3).await;
    })
    .await;
    n0.stop().await.unwrap();
    n1.stop().await.unwrap();
}

#[tokio::test]
async fn restarted_peers_are_reconnected() {
    let (d, [l0, l1]) = cluster().await;
    let (addr0, addr1) = (l0.local_addr().unwrap(), l1.local_addr().unwrap());
    let (n0, mut rx0) = replica(&d, 0, l0).await;
    let (n1, rx1) = replica(&d, 1, l1).await;
    bounded(ping_until_pong(&n0.handle(), &mut rx0, node(1), 1)).await;

    // the accepting side (n1) restarts: n0 redials it
    n1.stop().await.unwrap();
    drop(rx1);
    let (n1, mut rx1) = replica(&d, 1, TcpListener::bind(addr1).await.unwrap()).await;
    bounded(ping_until_pong(&n0.handle(), &mut rx0, node(1), 2)).await;

    // the dialing side (n0) restarts: its new connection supersedes the old one
    n0.stop().await.unwrap();
    drop(rx0);
    let (n0, mut rx0) = replica(&d, 0, TcpListener::bind(addr0).await.unwrap()).await;
    bounded(async {
        ping_until_pong(&n1.handle(), &mut rx1, node(0), 3).await;
        ping_until_pong(&n0.handle(), &mut rx0, node(1), 4).await;
    })
    .await;
    n0.stop().await.unwrap();
    n1.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_endpoint_and_handle_semantics() {
    let (d, [l0]) = cluster().await;
    let mut cfg = fast(NodeConfig::replica(&d, NodeId(0), ident(0), KIND).unwrap());
    cfg.metrics_listen = Some("127.0.0.1:0".into());
    let (rt, mut rx) = Runtime::start_with(
        Echo { with_mac: false },
        cfg,
        Some(l0),
        Arc::new(Registry::new()),
    )
    .await
    .unwrap();
    let maddr = rt.metrics_addr().unwrap();
    bounded(async {
        expect(&mut rx, |o| *o == Out::Timer("rearmed")).await;
        let mut s = TcpStream::connect(maddr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(body.contains("byzscale_runtime_events_total"), "{body}");
        assert!(body.contains("byzscale_runtime_step_micros{quantile=\"0.99\"}"));
    })
    .await;
    // a wrong key file for the replica is a clear configuration error
    let e = NodeConfig::replica(&d, NodeId(0), ident(5), KIND)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not match"), "{e}");
    let e = NodeConfig::replica(&d, NodeId(9), ident(0), KIND)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not in the deployment"), "{e}");

    let h = rt.handle();
    rt.stop().await.unwrap();
    assert!(h.is_stopped());
    assert!(h.submit(Ping { to: vec![], n: 0 }).await.is_err());
}

/// Persists a record before a send when asked to (a vote), puts a barrier
/// before it (a vote of an earlier step sent again), or just sends.
struct Voter;

#[derive(Debug)]
struct Vote {
    to: Addr,
    n: u64,
    durable_first: bool,
    barrier: bool,
}

impl Protocol for Voter {
    type Message = Msg;
    type Input = Vote;
    type Output = Out;
    type Timer = T;
    type Record = u64;

    fn on_input(&mut self, v: Vote, cx: &mut Cx<'_, Self>) {
        if v.durable_first {
            cx.persist(v.n);
        }
        if v.barrier {
            cx.barrier();
        }
        cx.send(v.to, Msg::Pong { n: v.n });
    }
    fn on_message(&mut self, from: Addr, msg: Msg, cx: &mut Cx<'_, Self>) {
        if let Msg::Pong { n } = msg {
            cx.output(Out::Pong { from, n });
        }
    }
    fn on_timer(&mut self, _: T, _: &mut Cx<'_, Self>) {}
}

/// A send that follows a record in its step leaves only once the sink
/// reports the record durable; sends of steps without records leave at once
/// (overtaking it), unless a barrier holds them behind every record so far
/// (without a record of their own); a lost persister stops the node.
#[tokio::test]
async fn sends_wait_for_the_records_before_them_in_their_step() {
    let (d, [l0, l1]) = cluster().await;
    let cfg = |i: u32| fast(NodeConfig::replica(&d, NodeId(i), ident(i as u64), KIND).unwrap());
    let (records, mut written) = mpsc::channel(16);
    let (durable_tx, durable) = tokio::sync::watch::channel(0u64);
    let sink = RecordSink { records, durable };
    let reg = Arc::new(Registry::new());
    let (a, _) = Runtime::start_with_records(Voter, cfg(0), Some(l0), reg, Some(sink))
        .await
        .unwrap();
    let (b, mut rx) = Runtime::start_with(Voter, cfg(1), Some(l1), Arc::new(Registry::new()))
        .await
        .unwrap();
    let vote = |n, durable_first| Vote {
        to: node(1),
        n,
        durable_first,
        barrier: false,
    };
    let behind_barrier = |n| Vote {
        barrier: true,
        ..vote(n, false)
    };
    bounded(async {
        // the peers are connected once an unrecorded send gets through
        let mut n = 100;
        loop {
            a.handle().submit(vote(n, false)).await.unwrap();
            let got = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
            if got.is_ok() {
                break;
            }
            n += 1;
        }
        a.handle().submit(vote(1, true)).await.unwrap();
        assert_eq!(written.recv().await, Some(1), "the record reaches the sink");
        // a later step without a record: leaves at once, so it arrives first
        // (the link is FIFO) while the vote waits for its record
        a.handle().submit(vote(2, false)).await.unwrap();
        let first = expect(&mut rx, |o| matches!(o, Out::Pong { n: 1 | 2, .. })).await;
        assert_eq!(
            first,
            Out::Pong {
                from: node(0),
                n: 2
            }
        );
        // a later step with a barrier waits for record 1 too, writing none
        a.handle().submit(behind_barrier(4)).await.unwrap();
        durable_tx.send(1).unwrap();
        for n in [1, 4] {
            let next = expect(&mut rx, |o| matches!(o, Out::Pong { n: 1 | 4, .. })).await;
            assert_eq!(next, Out::Pong { from: node(0), n });
        }
        // with every record durable, a barrier holds nothing
        a.handle().submit(behind_barrier(5)).await.unwrap();
        expect(&mut rx, |o| matches!(o, Out::Pong { n: 5, .. })).await;
        // a vote waiting for a persister that is gone never leaves: the node stops
        a.handle().submit(vote(3, true)).await.unwrap();
        assert_eq!(written.recv().await, Some(3));
        drop(durable_tx);
        let h = a.handle();
        while !h.is_stopped() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    b.stop().await.unwrap();
}
