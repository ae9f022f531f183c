//! `byzscale cluster`: a local deployment on loopback, as separate OS processes,
//! with a closed-loop KV workload, a progress bar, and a report.

use crate::deploy::{self, Ports};
use crate::smr_client::SmrClient;
use anyhow::{bail, Context, Result};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_core::GroupId;
use clap::Args;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// What to run: one SMR group serving a KV store, a ByzCast-sharded KV
    /// store, or AT2 asset transfer.
    #[arg(long, value_enum, default_value_t = ClusterProtocol::Smr)]
    pub protocol: ClusterProtocol,
    /// Target groups (shards) of `--protocol byzcast`.
    #[arg(long, default_value_t = 2)]
    pub groups: usize,
    /// Fraction of `--protocol byzcast` requests that are two-group MSETs
    /// (global messages, ordered at the lowest common ancestor).
    #[arg(long, default_value_t = 0.1)]
    pub global_ratio: f64,
    /// Processes of `--protocol at2`.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Most requests per batch (1: batching off).
    #[arg(long, default_value_t = byzscale_smr::Params::default().batch_max_requests)]
    pub batch_max: usize,
    /// Replicas in the group (N = 3F+1+Δ; F = (N-1)/3).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Closed-loop clients (each waits for its reply before the next request).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds of load (0: start the cluster, no workload).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Value size of SET requests, in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Fraction of GETs (served on the unordered read-only path).
    #[arg(long, default_value_t = 0.0)]
    pub read_ratio: f64,
    /// SIGKILL the initial leader's process this many seconds into the load.
    #[arg(long)]
    pub crash_leader_at: Option<f64>,
    /// Leave the cluster running and print its endpoints.
    #[arg(long)]
    pub keep: bool,
    /// Keep generated files here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterProtocol {
    Smr,
    Byzcast,
    At2,
}

#[derive(Serialize)]
struct Report {
    replicas: usize,
    clients: usize,
    duration_s: f64,
    payload: usize,
    read_ratio: f64,
    throughput_ops: f64,
    p50_ms: f64,
    p99_ms: f64,
    committed: u64,
    errors: u64,
    view_changes: i64,
    ops_after_crash: u64,
    crashed: Option<String>,
    dir: String,
}

pub struct Nodes {
    pub children: Vec<Option<Child>>,
    keep: bool,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A base port whose four blocks of `n` ports (replicas, metrics, Redis, HTTP)
/// are free now. Bases are drawn below Linux's ephemeral range (32768 and up by
/// default), where outgoing connections take their local ports: a port free
/// when checked there could be taken by a client's connection before the node
/// binds it.
fn free_base_port(n: usize) -> Result<u16> {
    if n > 100 {
        bail!("at most 100 processes per local cluster ({n} asked)");
    }
    let mut rng = rand::thread_rng();
    'outer: for _ in 0..200 {
        let base: u16 = rng.gen_range(10_000..32_000);
        for off in [0usize, 100, 200, 300] {
            for i in 0..n {
                if std::net::TcpListener::bind(("127.0.0.1", base + (off + i) as u16)).is_err() {
                    continue 'outer;
                }
            }
        }
        return Ok(base);
    }
    bail!("could not find free ports on 127.0.0.1")
}

pub async fn wait_listening(addr: &str, deadline: Instant) -> Result<()> {
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not come up in time");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scrape_view(addr: &str) -> Option<i64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body))
        .await
        .ok()?
        .ok()?;
    body.lines()
        .find(|l| l.starts_with("byzscale_view "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

pub async fn run(a: ClusterArgs) -> Result<()> {
    match a.protocol {
        ClusterProtocol::Smr => run_smr(a).await,
        ClusterProtocol::Byzcast => crate::byzcast_deploy::cluster(a).await,
        ClusterProtocol::At2 => crate::at2_deploy::cluster(a).await,
    }
}

async fn run_smr(a: ClusterArgs) -> Result<()> {
    if a.replicas < 1 {
        bail!("--replicas must be at least 1");
    }
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(a.duration >= 0.0 && a.duration.is_finite()) {
        bail!("--duration must be a non-negative number of seconds");
    }
    if !(0.0..=1.0).contains(&a.read_ratio) {
        bail!("--read-ratio must be between 0 and 1");
    }
    if let Some(t) = a.crash_leader_at {
        if !(t >= 0.0 && t < a.duration) {
            bail!(
                "--crash-leader-at must fall inside --duration ({} s)",
                a.duration
            );
        }
    }
    let Local {
        mut nodes,
        dep,
        ports,
        dir,
    } = start_local(a.replicas, a.dir.clone(), a.keep, smr_params(a.batch_max)?).await?;
    let show = !a.json && std::io::stderr().is_terminal();
    let mut crashed = None;
    let started = Instant::now();
    let mut result = LoadResult::empty();
    if a.duration > 0.0 {
        let spec = LoadSpec {
            clients: a.clients,
            duration: a.duration,
            payload: a.payload,
            read_ratio: a.read_ratio,
            open_rate: None,
        };
        let load = Load::start(&dep, &spec).await?;
        let crash_at = a
            .crash_leader_at
            .map(|t| load.started + Duration::from_secs_f64(t));
        let bar = progress(
            show,
            a.duration,
            load.started,
            load.stop_at,
            &load.committed,
            |bar| {
                if let Some(t) = crash_at {
                    if crashed.is_none() && Instant::now() >= t {
                        if let Some(mut c) = nodes.children[0].take() {
                            let _ = c.kill(); // SIGKILL
                            let _ = c.wait();
                        }
                        load.mark_crash();
                        crashed = Some("n0".to_string());
                        if let Some(b) = bar {
                            b.println("  SIGKILLed the leader (n0)");
                        }
                    }
                }
            },
        )
        .await;
        result = load.finish().await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }
    let elapsed = started.elapsed().as_secs_f64().min(a.duration.max(1e-9));
    let _ = started;
    let mut view_changes = 0;
    for i in 0..a.replicas {
        if nodes.children[i].is_some() {
            if let Some(v) = scrape_view(&ports.metrics(i)).await {
                view_changes = view_changes.max(v);
            }
        }
    }
    let h = &result.hist;
    let done = result.committed;
    let report = Report {
        replicas: a.replicas,
        clients: a.clients,
        duration_s: a.duration,
        payload: a.payload,
        read_ratio: a.read_ratio,
        throughput_ops: if a.duration > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        },
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        committed: done,
        errors: result.errors,
        view_changes,
        ops_after_crash: result.after_crash,
        crashed,
        dir: dir.display().to_string(),
    };
    let endpoints = a.keep.then(|| {
        let pids: Vec<u32> = nodes.children.iter().flatten().map(|c| c.id()).collect();
        serde_json::json!({
            "redis": ports.redis(1.min(a.replicas - 1)),
            "replicas": (0..a.replicas).map(|i| ports.replica(i)).collect::<Vec<_>>(),
            "redis_all": (0..a.replicas).map(|i| ports.redis(i)).collect::<Vec<_>>(),
            "metrics": (0..a.replicas).map(|i| format!("http://{}/metrics", ports.metrics(i))).collect::<Vec<_>>(),
            "deployment": dir.join("deployment.toml").display().to_string(),
            "pids": pids,
            "stop": format!("kill {}", pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")),
        })
    });
    print_report(&report, endpoints, a.json, print_table)?;
    Ok(())
}

/// Wait until `stop_at`, waking every 100 ms to call `each_tick` and, if
/// `show`, to move a progress bar of `duration` seconds (in tenths) and show the
/// operations counted in `committed` since `started` and their rate. Returns the
/// bar, for the caller to clear once it has collected its results.
pub(crate) async fn progress(
    show: bool,
    duration: f64,
    started: Instant,
    stop_at: Instant,
    committed: &AtomicU64,
    mut each_tick: impl FnMut(Option<&indicatif::ProgressBar>),
) -> Option<indicatif::ProgressBar> {
    let bar = show.then(|| {
        let b = indicatif::ProgressBar::new((duration * 10.0) as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        b
    });
    while Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
        each_tick(bar.as_ref());
        if let Some(b) = &bar {
            let el = started.elapsed().as_secs_f64();
            let done = committed.load(Ordering::Relaxed);
            b.set_position((el * 10.0) as u64);
            b.set_message(format!(
                "{done} ops, {:.0} ops/s",
                done as f64 / el.max(1e-3)
            ));
        }
    }
    bar
}

/// Print a cluster run's `report`: as one line of JSON if `json` (with the
/// `endpoints` of a cluster left running merged in), else with `table`
/// followed by those endpoints.
pub(crate) fn print_report<R: Serialize>(
    report: &R,
    endpoints: Option<serde_json::Value>,
    json: bool,
    table: impl FnOnce(&R),
) -> Result<()> {
    match (endpoints, json) {
        (Some(endpoints), true) => {
            let mut v = serde_json::to_value(report)?;
            if let (Some(o), Some(e)) = (v.as_object_mut(), endpoints.as_object()) {
                o.extend(e.clone());
            }
            println!("{}", serde_json::to_string(&v)?);
        }
        (Some(endpoints), false) => {
            table(report);
            println!(
                "cluster left running:\n{}",
                serde_json::to_string_pretty(&endpoints)?
            );
        }
        (None, true) => println!("{}", serde_json::to_string(report)?),
        (None, false) => table(report),
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "byzscale cluster: {} replicas, {} clients, {:.1} s, {} B values, read ratio {}",
        r.replicas, r.clients, r.duration_s, r.payload, r.read_ratio
    );
    println!("  throughput   {:>10.0} ops/s", r.throughput_ops);
    println!(
        "  latency      p50 {:.2} ms   p99 {:.2} ms",
        r.p50_ms, r.p99_ms
    );
    println!(
        "  committed    {:>10}   errors {}   view changes {}",
        r.committed, r.errors, r.view_changes
    );
    if let Some(c) = &r.crashed {
        println!(
            "  crashed      {c}; {} ops completed after the crash",
            r.ops_after_crash
        );
    }
    println!("  files        {}", r.dir);
}

/// A local deployment of replica processes.
pub struct Local {
    pub nodes: Nodes,
    pub dep: byzscale_core::config::Deployment,
    pub ports: Ports,
    pub dir: PathBuf,
}

/// Generate a deployment in `dir` (or a temporary directory), start one
/// `byzscale node` process per replica, and wait until they listen.
/// `smr` goes into every node file.
pub async fn start_local(
    replicas: usize,
    dir: Option<PathBuf>,
    keep: bool,
    smr: byzscale_smr::Params,
) -> Result<Local> {
    if replicas == 0 {
        bail!("a cluster needs at least one replica");
    }
    let f = (replicas - 1) / 3;
    start_local_with(
        &[(replicas, f)],
        deploy::NodeProtocol::Smr,
        dir,
        keep,
        move |nf| nf.smr = smr.clone(),
    )
    .await
}

/// [`start_local`] for several groups of `(n, f)` running `protocol` (node ids
/// and ports are numbered across groups, see [`deploy::generate_groups`]).
pub async fn start_local_groups(
    groups: &[(usize, usize)],
    protocol: deploy::NodeProtocol,
    dir: Option<PathBuf>,
    keep: bool,
) -> Result<Local> {
    start_local_with(groups, protocol, dir, keep, |_| {}).await
}

/// [`start_local_groups`], with `patch` applied to every generated node file
/// before the processes start.
pub async fn start_local_with(
    groups: &[(usize, usize)],
    protocol: deploy::NodeProtocol,
    dir: Option<PathBuf>,
    keep: bool,
    patch: impl Fn(&mut deploy::NodeFile),
) -> Result<Local> {
    let total: usize = groups.iter().map(|g| g.0).sum();
    if total == 0 {
        bail!("a cluster needs at least one replica");
    }
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("byzscale-cluster-{}", std::process::id())),
    };
    let base = free_base_port(total)?;
    let ports = Ports {
        hosts: vec!["127.0.0.1".into()],
        base,
    };
    let dep = deploy::generate_groups_with(&dir, groups, &ports, protocol, patch)?;
    let exe = std::env::current_exe().context("locating the byzscale binary")?;
    // kept alive only once every node listens: a failed start cleans up
    let mut nodes = Nodes {
        children: Vec::new(),
        keep: false,
    };
    for i in 0..total {
        let log = std::fs::File::create(dir.join(format!("node-{i}.log")))?;
        let child = Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(dir.join(format!("node-{i}.toml")))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting replica {i}"))?;
        nodes.children.push(Some(child));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..total {
        wait_listening(&ports.replica(i), deadline)
            .await
            .with_context(|| {
                format!(
                    "node {i} did not start; see {}",
                    dir.join(format!("node-{i}.log")).display()
                )
            })?;
    }
    nodes.keep = keep;

    Ok(Local {
        nodes,
        dep,
        ports,
        dir,
    })
}

/// The local deployment's SMR parameters with at most `batch_max` requests per
/// batch.
pub fn smr_params(batch_max: usize) -> Result<byzscale_smr::Params> {
    if batch_max == 0 {
        bail!("--batch-max must be at least 1");
    }
    Ok(byzscale_smr::Params {
        batch_max_requests: batch_max,
        ..deploy::local_params()
    })
}

/// What load to offer.
pub struct LoadSpec {
    pub clients: usize,
    pub duration: f64,
    pub payload: usize,
    pub read_ratio: f64,
    /// Open loop at this many requests per second (None: closed loop).
    pub open_rate: Option<f64>,
}

/// A running load generator: BFT clients on their own connections, closed-loop
/// tasks (or an open-loop scheduler), HDR histograms of latency in µs, and
/// completions per second.
pub struct Load {
    pub started: Instant,
    pub stop_at: Instant,
    committed: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    after_crash: Arc<AtomicU64>,
    crashed: Arc<AtomicBool>,
    hist: Arc<Mutex<Histogram<u64>>>,
    series: Arc<Mutex<Vec<u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    clients: Vec<Arc<SmrClient>>,
}

pub struct LoadResult {
    pub hist: Histogram<u64>,
    pub committed: u64,
    pub errors: u64,
    pub after_crash: u64,
    /// Completions in each second of the run.
    pub per_second: Vec<u64>,
}

impl LoadResult {
    pub fn empty() -> Self {
        LoadResult {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
            committed: 0,
            errors: 0,
            after_crash: 0,
            per_second: Vec::new(),
        }
    }
}

struct Shared {
    committed: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    after_crash: Arc<AtomicU64>,
    crashed: Arc<AtomicBool>,
    series: Arc<Mutex<Vec<u64>>>,
    started: Instant,
}

impl Shared {
    /// Run one operation; returns its latency in µs if it succeeded, measured
    /// from `scheduled` (open loop: the intended send time, so queueing is not
    /// hidden).
    async fn one(
        &self,
        client: &SmrClient,
        rng: &mut rand::rngs::StdRng,
        spec: (usize, f64),
        scheduled: Instant,
        deadline: Instant,
    ) -> Option<u64> {
        let key = format!("key:{}", rng.gen_range(0..10_000)).into_bytes();
        let (op, ro) = if rng.gen_bool(spec.1) {
            (KvOp::Get(key), true)
        } else {
            (KvOp::Set(key, vec![b'x'; spec.0]), false)
        };
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(10);
        match tokio::time::timeout(left, client.call(op.encode(), ro)).await {
            Ok(Ok(bytes)) if matches!(KvReply::decode(&bytes), Ok(r) if !r.is_error()) => {
                let latency = scheduled.elapsed().as_micros().max(1) as u64;
                self.committed.fetch_add(1, Ordering::Relaxed);
                if self.crashed.load(Ordering::Relaxed) {
                    self.after_crash.fetch_add(1, Ordering::Relaxed);
                }
                let sec = self.started.elapsed().as_secs() as usize;
                let mut s = self.series.lock().expect("series lock");
                if s.len() <= sec {
                    s.resize(sec + 1, 0);
                }
                s[sec] += 1;
                Some(latency)
            }
            _ => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Load {
    pub async fn start(dep: &byzscale_core::config::Deployment, spec: &LoadSpec) -> Result<Load> {
        let nclients = spec.clients.div_ceil(16).clamp(1, 8);
        let per = spec.clients.div_ceil(nclients) as u64;
        let params = crate::deploy::local_params();
        let mut clients = Vec::new();
        for _ in 0..nclients {
            clients.push(Arc::new(
                SmrClient::connect(
                    dep,
                    GroupId(0),
                    params.clone(),
                    per.min(params.client_window),
                )
                .await?,
            ));
        }
        let started = Instant::now();
        let stop_at = started + Duration::from_secs_f64(spec.duration);
        let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
            1, 60_000_000, 3,
        )?));
        let committed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let after_crash = Arc::new(AtomicU64::new(0));
        let crashed = Arc::new(AtomicBool::new(false));
        let series = Arc::new(Mutex::new(Vec::new()));
        let mk = || Shared {
            committed: committed.clone(),
            errors: errors.clone(),
            after_crash: after_crash.clone(),
            crashed: crashed.clone(),
            series: series.clone(),
            started,
        };
        let mut tasks = Vec::new();
        let shape = (spec.payload, spec.read_ratio);
        match spec.open_rate {
            None => {
                for c in 0..spec.clients {
                    let client = clients[c % nclients].clone();
                    let (shared, hist) = (mk(), hist.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
                        let mut local =
                            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                        while Instant::now() < stop_at {
                            if let Some(us) = shared
                                .one(&client, &mut rng, shape, Instant::now(), stop_at)
                                .await
                            {
                                let _ = local.record(us);
                            }
                        }
                        hist.lock()
                            .expect("histogram lock")
                            .add(&local)
                            .expect("same bounds");
                    }));
                }
            }
            Some(rate) => {
                // one scheduler; each request its own task, capped in flight
                let limit = Arc::new(tokio::sync::Semaphore::new(spec.clients.max(1) * 64));
                let shared = Arc::new(mk());
                let hist = hist.clone();
                let clients2 = clients.clone();
                tasks.push(tokio::spawn(async move {
                    let gap = Duration::from_secs_f64(1.0 / rate.max(1e-3));
                    let mut next = Instant::now();
                    let mut n = 0u64;
                    let mut inflight = Vec::new();
                    while next < stop_at {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
                        let Ok(permit) = limit.clone().acquire_owned().await else {
                            break;
                        };
                        let (shared, hist, client) = (
                            shared.clone(),
                            hist.clone(),
                            clients2[n as usize % clients2.len()].clone(),
                        );
                        let scheduled = next;
                        inflight.push(tokio::spawn(async move {
                            let mut rng = rand::rngs::StdRng::seed_from_u64(n);
                            // one record under the lock: a histogram per request
                            // (tens of KB, merged bucket by bucket) made the
                            // generator itself the bottleneck
                            if let Some(us) = shared
                                .one(&client, &mut rng, shape, scheduled, stop_at)
                                .await
                            {
                                let _ = hist.lock().expect("histogram lock").record(us);
                            }
                            drop(permit);
                        }));
                        n += 1;
                        next += gap;
                    }
                    for t in inflight {
                        let _ = t.await;
                    }
                }));
            }
        }
        Ok(Load {
            started,
            stop_at,
            committed,
            errors,
            after_crash,
            crashed,
            hist,
            series,
            tasks,
            clients,
        })
    }

    /// Count completions from now on as "after the crash".
    pub fn mark_crash(&self) {
        self.crashed.store(true, Ordering::Relaxed);
    }

    pub async fn finish(self) -> LoadResult {
        for t in self.tasks {
            let _ = t.await;
        }
        for c in &self.clients {
            c.stop().await;
        }
        let hist = self.hist.lock().expect("histogram lock").clone();
        let per_second = self.series.lock().expect("series lock").clone();
        LoadResult {
            hist,
            committed: self.committed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            after_crash: self.after_crash.load(Ordering::Relaxed),
            per_second,
        }
    }
}
