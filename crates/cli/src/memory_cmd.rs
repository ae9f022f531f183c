//! `byzscale bench-memory`: the resident memory of correct SMR replicas while
//! a Byzantine peer and a Byzantine client do their worst (issue 10, "Done
//! when": under 300 MiB for ten minutes).
//!
//! A local group of four KV replicas is started (the running binary,
//! loopback). Replica 3 is killed at once and its identity becomes the
//! Byzantine peer: it connects to each correct replica with its real key
//! through the real handshake and, without ever reading its socket (so the
//! replicas' queues to it fill up to their bounds), sends in a loop
//!
//! - proposals for future views and far slots, and one of nearly the largest
//!   frame size in every round,
//! - STOP for future views and signed STOP-DATA for future views with many
//!   claims holding batches,
//! - FETCH-LOG / FETCH-STATE / FETCH-SYNC for huge (and inverted) ranges,
//! - WRITE / ACCEPT for many digests, signed CHECKPOINTs of random states,
//! - now and then a header announcing more than the frame limit (the
//!   replica closes the connection; the peer reconnects).
//!
//! The Byzantine client churns through fresh ids and keys (a handshake each),
//! and under each id floods every correct replica with requests holding ops
//! over `max_op_bytes`, requests whose MAC authenticator is valid at one
//! replica only, requests far ahead of its sequence, and read-only floods; it
//! never reads a reply.
//!
//! Meanwhile honest closed-loop clients run the KV workload, and every
//! correct replica's VmRSS (`/proc/<pid>/status`) is sampled each second.
//! The result (peak RSS per replica, honest throughput per second, what the
//! attackers sent and what the replicas' metrics recorded of it, pass/fail
//! against the limit) goes to `<out>/<name>.json` and `.svg`.

use crate::bench_cmd::publish;
use crate::plot::{per_second_chart, side_by_side, Axes, Series};
use anyhow::{bail, Context, Result};
use byzscale_apps::kv::KvOp;
use byzscale_core::codec::{self, HEADER_LEN};
use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::{Addr, ClientId, NodeId, WireKind};
use byzscale_net::{PeerConfig, RawConnection};
use byzscale_node::launcher::scrape_metrics;
use byzscale_node::protocols::smr::{self, group_info, KvWorkload};
use byzscale_node::{LoadSpec, Local};
use byzscale_smr::{
    checkpoint_bytes, stop_bytes, Batch, GroupInfo, Message, Request, SlotClaim, StopBody, StopData,
};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Args, Debug)]
pub struct MemoryArgs {
    /// Seconds of attack and load.
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Honest closed-loop clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Value size of the honest SETs (bytes).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Pass when every correct replica's peak RSS stays below this (MiB).
    #[arg(long, default_value_t = 300)]
    pub limit_mib: u64,
    /// Fresh ids the Byzantine client takes per second.
    #[arg(long, default_value_t = 20.0)]
    pub churn: f64,
    /// No Byzantine peer or client (the baseline: replica 3 still down).
    #[arg(long)]
    pub no_attack: bool,
    /// Directory for results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Writes <out>/<name>.json and <out>/<name>.svg.
    #[arg(long, default_value = "memory")]
    pub name: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one attacker sent.
#[derive(Default)]
struct Counts {
    frames: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counts {
    fn sent(&self, kind: &'static str, bytes: usize) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        *self
            .by_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }
    fn report(&self) -> AttackReport {
        AttackReport {
            frames: self.frames.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            by_kind: self
                .by_kind
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }
}

#[derive(Serialize)]
pub struct AttackReport {
    pub frames: u64,
    pub bytes: u64,
    /// Authenticated connections (the client: one per id and replica).
    pub connections: u64,
    pub by_kind: BTreeMap<String, u64>,
}

/// One correct replica: its memory and what its metrics recorded.
#[derive(Serialize)]
pub struct ReplicaMemory {
    pub node: u32,
    pub peak_rss_mib: f64,
    pub final_rss_mib: f64,
    /// VmRSS each second.
    pub rss_mib: Vec<f64>,
    /// `byzscale_protocol_faults_total` by kind.
    pub protocol_faults: BTreeMap<String, f64>,
    /// Connections closed for malformed, oversized or unauthenticated input.
    pub net_faults: f64,
    pub frames_received: f64,
    /// Frames dropped from its queue to the Byzantine peer (which never reads).
    pub dropped_to_byzantine_peer: f64,
    /// Frames dropped from the queues of clients.
    pub dropped_to_clients: f64,
}

#[derive(Serialize)]
pub struct MemoryReport {
    pub name: String,
    pub duration_s: f64,
    pub limit_mib: u64,
    pub attack: bool,
    pub clients: usize,
    pub payload: usize,
    pub replicas: Vec<ReplicaMemory>,
    pub peak_rss_mib: f64,
    /// Honest completions in each second.
    pub throughput: Vec<u64>,
    pub committed: u64,
    pub errors: u64,
    pub byzantine_peer: AttackReport,
    pub byzantine_client: AttackReport,
    pub pass: bool,
}

const KIND: u8 = WireKind::Smr.byte();
/// The replica whose identity the Byzantine peer takes.
const BYZANTINE: usize = 3;

/// `byzscale bench-memory`.
pub async fn bench_memory(a: MemoryArgs) -> Result<()> {
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(a.churn > 0.0 && a.churn.is_finite()) {
        bail!("--churn must be a positive number of ids per second");
    }
    let report = run(&a).await?;
    let line = |r: &MemoryReport| {
        format!(
            "{}: peak RSS {:.0} MiB (limit {} MiB) over {:.0} s, {} honest ops, attack {}",
            if r.pass { "PASS" } else { "FAIL" },
            r.peak_rss_mib,
            r.limit_mib,
            r.duration_s,
            r.committed,
            if r.attack { "on" } else { "off" },
        )
    };
    publish(&a.out, &a.name, &report, a.json, plot_memory, line)?;
    if !report.pass {
        bail!("a correct replica's RSS reached the limit");
    }
    Ok(())
}

/// Start the cluster, run the attack, the load and the sampler, collect.
pub async fn run(a: &MemoryArgs) -> Result<MemoryReport> {
    let params = byzscale_node::generate::local_params();
    let mut local = smr::start_local(4, params.clone(), None, false).await?;
    local.kill(BYZANTINE);
    let key = local.dir.join(format!("node-{BYZANTINE}.key"));
    let identity = byzscale_net::read_identity(&key)?;
    let group = group_info(&local.dep, byzscale_core::GroupId(0))?;
    let correct: Vec<usize> = (0..4).filter(|i| *i != BYZANTINE).collect();
    let targets: Vec<PeerConfig> = correct
        .iter()
        .map(|i| peer_config(&local, *i))
        .collect::<Result<_>>()?;
    let pids: Vec<u32> = correct
        .iter()
        .map(|i| local.pid(*i).context("a replica exited at start"))
        .collect::<Result<_>>()?;

    let (stop_tx, stop) = watch::channel(false);
    let peer = Arc::new(Counts::default());
    let client = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    if !a.no_attack {
        let max_frame = codec::DEFAULT_MAX_FRAME;
        for t in &targets {
            let ctx = PeerAttack {
                me: NodeId(BYZANTINE as u32),
                identity: identity.clone(),
                target: t.clone(),
                group: group.clone(),
                max_frame,
                counts: peer.clone(),
            };
            tasks.push(tokio::spawn(byzantine_peer(ctx, stop.clone())));
        }
        let ctx = ClientAttack {
            targets: targets.clone(),
            group: group.clone(),
            max_op: params.max_op_bytes,
            churn: Duration::from_secs_f64(1.0 / a.churn),
            counts: client.clone(),
        };
        tasks.push(tokio::spawn(byzantine_client(ctx, stop.clone())));
    }
    let sampler = tokio::spawn(sample_rss(pids, stop.clone()));

    let spec = LoadSpec::closed_loop(a.clients, a.duration);
    let workload = KvWorkload {
        payload: a.payload,
        read_ratio: 0.0,
    };
    let show = crate::deploy_cmd::show_progress(a.json);
    let load = smr::run_kv_load(&local.dep, &spec, &workload, show, |_, _| {}).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let samples = sampler.await.context("the RSS sampler failed")?;
    let load = load?;

    let mut replicas = Vec::new();
    for (k, i) in correct.iter().enumerate() {
        let body = scrape_metrics(&local.ports.metrics(*i))
            .await
            .with_context(|| format!("replica {i} serves no metrics (did it exit?)"))?;
        let rss: Vec<f64> = samples.iter().map(|s| s[k]).collect();
        replicas.push(replica_memory(*i as u32, rss, &body));
    }
    let peak = replicas.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
    drop(local);
    Ok(MemoryReport {
        name: a.name.clone(),
        duration_s: load.elapsed,
        limit_mib: a.limit_mib,
        attack: !a.no_attack,
        clients: a.clients,
        payload: a.payload,
        pass: peak < a.limit_mib as f64,
        peak_rss_mib: peak,
        replicas,
        throughput: load.per_second.clone(),
        committed: load.committed,
        errors: load.errors,
        byzantine_peer: peer.report(),
        byzantine_client: client.report(),
    })
}

fn peer_config(local: &Local, i: usize) -> Result<PeerConfig> {
    let (_, rc) = local
        .dep
        .replica(NodeId(i as u32))
        .with_context(|| format!("replica {i} is not in the deployment"))?;
    Ok(PeerConfig {
        addr: Addr::Node(NodeId(i as u32)),
        identity: rc.public_identity()?,
        socket: Some(rc.addr.clone()),
    })
}

/// VmRSS of `pid` in MiB (0 if the process is gone).
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One sample of every pid's RSS per second until `stop`.
async fn sample_rss(pids: Vec<u32>, mut stop: watch::Receiver<bool>) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => out.push(pids.iter().map(|p| rss_mib(*p)).collect()),
            _ = stop.wait_for(|v| *v) => break,
        }
    }
    out.push(pids.iter().map(|p| rss_mib(*p)).collect());
    out
}

/// Sum of every series of metric `name` in a Prometheus text `body` whose
/// labels contain `label` (e.g. `peer="Node(3)"`; "" for all).
fn metric_sum(body: &str, name: &str, label: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            (rest.is_empty() || rest.starts_with('{') && rest.contains(label))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn replica_memory(node: u32, rss_mib: Vec<f64>, body: &str) -> ReplicaMemory {
    let mut protocol_faults = BTreeMap::new();
    for l in body.lines() {
        let Some(rest) = l.strip_prefix("byzscale_protocol_faults_total{kind=\"") else {
            continue;
        };
        if let Some((kind, tail)) = rest.split_once('"') {
            let v = tail.rsplit(' ').next().and_then(|v| v.parse().ok());
            protocol_faults.insert(kind.to_string(), v.unwrap_or(0.0));
        }
    }
    let byz = format!("peer=\"{}\"", Addr::Node(NodeId(BYZANTINE as u32)));
    let dropped = "byzscale_net_peer_frames_dropped_total";
    ReplicaMemory {
        node,
        peak_rss_mib: rss_mib.iter().copied().fold(0.0, f64::max),
        final_rss_mib: rss_mib.last().copied().unwrap_or(0.0),
        rss_mib,
        protocol_faults,
        net_faults: metric_sum(body, "byzscale_net_faults_total", ""),
        frames_received: metric_sum(body, "byzscale_net_frames_received_total", ""),
        dropped_to_byzantine_peer: metric_sum(body, dropped, &byz),
        dropped_to_clients: metric_sum(body, dropped, "peer=\"clients\""),
    }
}

// ---------------------------------------------------------------- attackers

/// Send `frames` on `c`, counting them; false when the connection failed or
/// `stop` turned (then the caller reconnects or ends).
async fn send_all(
    c: &mut RawConnection,
    frames: &[(&'static str, Vec<u8>)],
    counts: &Counts,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    for (kind, f) in frames {
        tokio::select! {
            r = c.send(f) => {
                if r.is_err() {
                    return false;
                }
                counts.sent(kind, f.len());
            }
            _ = stop.wait_for(|v| *v) => return false,
        }
    }
    !*stop.borrow()
}

struct PeerAttack {
    me: NodeId,
    identity: Identity,
    target: PeerConfig,
    group: GroupInfo,
    max_frame: usize,
    counts: Arc<Counts>,
}

/// The Byzantine replica against one correct replica: connect, flood,
/// reconnect when closed, until `stop`.
async fn byzantine_peer(a: PeerAttack, mut stop: watch::Receiver<bool>) {
    let crypto = Crypto::new(Addr::Node(a.me), a.identity.clone(), CryptoMode::Real);
    let mut rng = StdRng::from_entropy();
    let mut round = 0u64;
    while !*stop.borrow() {
        let conn = RawConnection::connect(
            Addr::Node(a.me),
            a.identity.clone(),
            KIND,
            a.target.clone(),
            Duration::from_secs(5),
        )
        .await;
        let Ok(mut c) = conn else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        a.counts.connections.fetch_add(1, Ordering::Relaxed);
        for _ in 0..OVERSIZED_EVERY {
            round += 1;
            let frames = peer_round(&a, &crypto, &mut rng, round);
            if !send_all(&mut c, &frames, &a.counts, &mut stop).await {
                break;
            }
        }
        // a header announcing more than the limit: the replica closes. Give
        // it time to read that far: closing first with its frames unread in
        // our socket would reset the connection before it saw the header.
        let h = codec::header(KIND, a.max_frame + 1).to_vec();
        if send_all(&mut c, &[("oversized", h)], &a.counts, &mut stop).await {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.wait_for(|v| *v) => {}
            }
        }
    }
}

/// Rounds on one connection before the oversized header that ends it.
const OVERSIZED_EVERY: u64 = 50;

fn junk_request(rng: &mut StdRng, op_len: usize) -> Request {
    Request {
        client: ClientId(rng.gen()),
        session: rng.gen(),
        seq: rng.gen(),
        read_only: false,
        op: vec![0xAB; op_len],
        auth: Vec::new(),
        sig: None,
    }
}

/// One round of the Byzantine replica's messages, encoded.
fn peer_round(
    a: &PeerAttack,
    crypto: &Crypto,
    rng: &mut StdRng,
    round: u64,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut msgs: Vec<Message> = Vec::new();
    let future = |rng: &mut StdRng| rng.gen_range(1..1_000_000u64);
    for _ in 0..32 {
        let batch = Batch::new(vec![junk_request(rng, 1024)]);
        let (view, slot) = (future(rng), rng.gen_range(1..1_000_000_000));
        msgs.push(Message::Propose { view, slot, batch });
    }
    // nearly the largest frame a replica accepts
    let big = Batch::new(vec![junk_request(rng, a.max_frame - (64 << 10))]);
    let (view, slot) = (future(rng), rng.gen_range(1..1_000_000_000));
    msgs.push(Message::Propose {
        view,
        slot,
        batch: big,
    });
    for _ in 0..16 {
        msgs.push(Message::Stop { view: future(rng) });
    }
    for _ in 0..2 {
        let claims = (0..64)
            .map(|s| SlotClaim {
                slot: s + 1,
                prepared: Some((round, rng.gen(), Batch::new(vec![junk_request(rng, 4096)]))),
                pre_prepared: vec![(rng.gen(), round)],
            })
            .collect();
        let body = StopBody {
            view: future(rng),
            replica: a.me,
            checkpoint: None,
            claims,
        };
        let sig = crypto.sign(&stop_bytes(a.group.id, &body));
        msgs.push(Message::StopData(StopData { body, sig }));
    }
    msgs.extend([
        Message::FetchLog {
            from: 0,
            to: u64::MAX,
        },
        Message::FetchLog { from: 10, to: 5 },
        Message::FetchState { slot: u64::MAX },
        Message::FetchState { slot: 0 },
        Message::FetchSync { view: u64::MAX },
    ]);
    // votes for two digests in the same (view, slot): evidence a replica records
    for _ in 0..4 {
        let (view, slot) = (0, rng.gen_range(1..64));
        for digest in [rng.gen(), rng.gen()] {
            msgs.push(Message::Write { view, slot, digest });
            msgs.push(Message::Accept { view, slot, digest });
        }
    }
    for _ in 0..128 {
        let (view, slot, digest) = (rng.gen_range(0..4), rng.gen_range(1..4096), rng.gen());
        msgs.push(Message::Write { view, slot, digest });
        let (view, slot, digest) = (rng.gen_range(0..4), rng.gen_range(1..4096), rng.gen());
        msgs.push(Message::Accept { view, slot, digest });
    }
    let (slot, state) = (rng.gen_range(1..1_000_000u64) * 512, rng.gen());
    let sig = crypto.sign(&checkpoint_bytes(a.group.id, slot, &state));
    msgs.push(Message::Checkpoint { slot, state, sig });
    msgs.into_iter()
        .map(|m| (m.kind(), codec::encode_frame(KIND, &m)))
        .filter(|(_, f)| f.len() - HEADER_LEN <= a.max_frame)
        .collect()
}

struct ClientAttack {
    targets: Vec<PeerConfig>,
    group: GroupInfo,
    max_op: usize,
    churn: Duration,
    counts: Arc<Counts>,
}

/// The Byzantine client: a fresh id and key every `churn`, floods of bad
/// requests to every correct replica under it, never a reply read.
async fn byzantine_client(a: ClientAttack, mut stop: watch::Receiver<bool>) {
    let mut rng = StdRng::from_entropy();
    while !*stop.borrow() {
        // a fresh key, and the id it certifies (replicas refuse any other)
        let identity = Identity::generate();
        let id = ClientId::of_key(&identity.public());
        let mut crypto = Crypto::new(Addr::Client(id), identity.clone(), CryptoMode::Real);
        for t in &a.targets {
            let _ = crypto.add_peer(t.addr, t.identity);
        }
        let mut conns = Vec::new();
        for t in &a.targets {
            let c = RawConnection::connect(
                Addr::Client(id),
                identity.clone(),
                KIND,
                t.clone(),
                Duration::from_secs(5),
            );
            if let Ok(c) = c.await {
                a.counts.connections.fetch_add(1, Ordering::Relaxed);
                conns.push(c);
            }
        }
        if conns.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let until = Instant::now() + a.churn;
        let mut seq = 0;
        while Instant::now() < until && !*stop.borrow() {
            seq += 1;
            let frames = client_round(&a, &crypto, id, seq, &mut rng);
            for c in conns.iter_mut() {
                if !send_all(c, &frames, &a.counts, &mut stop).await {
                    break;
                }
            }
        }
    }
}

/// One round of the Byzantine client's requests, encoded.
fn client_round(
    a: &ClientAttack,
    crypto: &Crypto,
    id: ClientId,
    seq: u64,
    rng: &mut StdRng,
) -> Vec<(&'static str, Vec<u8>)> {
    let set = |v: usize| KvOp::Set(b"byz:junk".to_vec(), vec![b'z'; v]);
    let auth =
        |seq, ro, op: Vec<u8>| Request::authenticated(crypto, &a.group, id, (0, seq), ro, op);
    let mut reqs = Vec::new();
    // an op over max_op_bytes, properly authenticated
    reqs.push(("huge-op", auth(seq * 4, false, vec![0xEE; a.max_op * 2])));
    // an authenticator valid at the first replica only
    let mut partial = auth(seq * 4 + 1, false, set(64).encode());
    for m in partial.auth.iter_mut().skip(1) {
        *m = Default::default();
    }
    reqs.push(("partial-auth", partial));
    // far ahead of its sequence, and read-only floods
    let ahead = rng.gen_range(1_000_000..u64::MAX / 2);
    reqs.push(("ahead", auth(ahead, false, set(1024).encode())));
    for k in 0..4 {
        let get = KvOp::Get(format!("key:{k}").into_bytes());
        reqs.push(("read-flood", auth(seq * 4 + 2, true, get.encode())));
    }
    reqs.into_iter()
        .map(|(k, r)| (k, codec::encode_frame(KIND, &Message::Request(r))))
        .collect()
}

// ---------------------------------------------------------------- figure

fn plot_memory(r: &MemoryReport, path: &Path) -> Result<()> {
    let secs = r
        .replicas
        .iter()
        .map(|x| x.rss_mib.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut rss: Vec<Series> = r
        .replicas
        .iter()
        .map(|x| {
            let pts = x
                .rss_mib
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect();
            (format!("replica {}", x.node), pts)
        })
        .collect();
    let limit = r.limit_mib as f64;
    rss.push((
        format!("limit {limit} MiB"),
        vec![(0.0, limit), (secs, limit)],
    ));
    let (ops, right) = per_second_chart("honest ops/s", &r.throughput);
    let title = format!("{}: replica RSS under a Byzantine peer and client", r.name);
    let left = Axes {
        title: &title,
        x_desc: "second",
        y_desc: "VmRSS (MiB)",
        x_range: 0.0..secs,
        y_range: 0.0..(limit.max(r.peak_rss_mib) * 1.1),
        markers: false,
    };
    side_by_side(path, (1100, 420), &[(left, &rss[..]), (right, &ops[..])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_pick_the_labelled_series() {
        let byz = Addr::Node(NodeId(BYZANTINE as u32));
        let body = format!(
            "# HELP x\n\
            byzscale_net_peer_frames_dropped_total{{class=\"bulk\",peer=\"{byz}\"}} 5\n\
            byzscale_net_peer_frames_dropped_total{{class=\"control\",peer=\"{byz}\"}} 2\n\
            byzscale_net_peer_frames_dropped_total{{class=\"bulk\",peer=\"clients\"}} 7\n\
            byzscale_net_faults_total 3\n\
            byzscale_protocol_faults_total{{kind=\"future-view\"}} 11\n"
        );
        let body = body.as_str();
        let d = "byzscale_net_peer_frames_dropped_total";
        assert_eq!(metric_sum(body, d, &format!("peer=\"{byz}\"")), 7.0);
        assert_eq!(metric_sum(body, d, ""), 14.0);
        assert_eq!(metric_sum(body, "byzscale_net_faults_total", ""), 3.0);
        let r = replica_memory(0, vec![10.0, 30.0, 20.0], body);
        assert_eq!((r.peak_rss_mib, r.final_rss_mib), (30.0, 20.0));
        assert_eq!(r.protocol_faults.get("future-view"), Some(&11.0));
        assert_eq!(r.dropped_to_byzantine_peer, 7.0);
        assert_eq!(r.dropped_to_clients, 7.0);
    }
}
