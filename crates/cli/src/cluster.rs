//! `byzscale cluster`: a local deployment on loopback, as separate OS processes,
//! with a closed-loop KV workload, a progress bar, and a report.

use crate::deploy::{self, Ports};
use crate::smr_client::SmrClient;
use anyhow::{bail, Context, Result};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_core::GroupId;
use byzscale_smr::Params;
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

struct Nodes {
    children: Vec<Option<Child>>,
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

fn free_base_port(n: usize) -> Result<u16> {
    let mut rng = rand::thread_rng();
    'outer: for _ in 0..200 {
        let base: u16 = rng.gen_range(20_000..60_000);
        for off in [0usize, 100, 200] {
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

async fn wait_listening(addr: &str, deadline: Instant) -> Result<()> {
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
    let mut s = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body)).await.ok()?.ok()?;
    body.lines()
        .find(|l| l.starts_with("byzscale_view "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

pub async fn run(a: ClusterArgs) -> Result<()> {
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
            bail!("--crash-leader-at must fall inside --duration ({} s)", a.duration);
        }
    }
    let f = (a.replicas - 1) / 3;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("byzscale-cluster-{}", std::process::id())),
    };
    let base = free_base_port(a.replicas)?;
    let ports = Ports { hosts: vec!["127.0.0.1".into()], base };
    let dep = deploy::generate(&dir, a.replicas, f, &ports)?;
    let exe = std::env::current_exe().context("locating the byzscale binary")?;
    let mut nodes = Nodes { children: Vec::new(), keep: a.keep };
    for i in 0..a.replicas {
        let log = std::fs::File::create(dir.join(format!("node-{i}.log")))?;
        let child = Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(dir.join(format!("node-{i}.toml")))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting replica {i}"))?;
        nodes.children.push(Some(child));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..a.replicas {
        wait_listening(&ports.replica(i), deadline).await?;
    }

    let show = !a.json && std::io::stderr().is_terminal();
    let committed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let after_crash = Arc::new(AtomicU64::new(0));
    let crashed_flag = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let mut crashed = None;
    let started = Instant::now();
    if a.duration > 0.0 {
        let nclients = a.clients.div_ceil(16).clamp(1, 8);
        let per = a.clients.div_ceil(nclients) as u64;
        let mut params = Params::default();
        params.client_retry = 500 * 1_000_000;
        let mut clients = Vec::new();
        for _ in 0..nclients {
            clients.push(Arc::new(SmrClient::connect(&dep, GroupId(0), params.clone(), per).await?));
        }
        let stop_at = started + Duration::from_secs_f64(a.duration);
        let mut tasks = Vec::new();
        for c in 0..a.clients {
            let client = clients[c % nclients].clone();
            let (committed, errors, after_crash, crashed_flag, hist) =
                (committed.clone(), errors.clone(), after_crash.clone(), crashed_flag.clone(), hist.clone());
            let (payload, read_ratio) = (a.payload, a.read_ratio);
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
                let value = vec![b'x'; payload];
                while Instant::now() < stop_at {
                    let key = format!("key:{}", rng.gen_range(0..10_000)).into_bytes();
                    let (op, ro) = if rng.gen_bool(read_ratio) {
                        (KvOp::Get(key), true)
                    } else {
                        (KvOp::Set(key, value.clone()), false)
                    };
                    let t0 = Instant::now();
                    let left = stop_at.saturating_duration_since(t0) + Duration::from_secs(10);
                    match tokio::time::timeout(left, client.call(op.encode(), ro)).await {
                        Ok(Ok(bytes)) => match KvReply::decode(&bytes) {
                            Ok(KvReply::Error(_)) | Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {
                                let _ = local.record(t0.elapsed().as_micros().max(1) as u64);
                                committed.fetch_add(1, Ordering::Relaxed);
                                if crashed_flag.load(Ordering::Relaxed) {
                                    after_crash.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        },
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                hist.lock().expect("histogram lock").add(&local).expect("same bounds");
            }));
        }
        let bar = if show {
            let b = indicatif::ProgressBar::new((a.duration * 10.0) as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed_precise} {msg}")
                    .expect("valid template"),
            );
            Some(b)
        } else {
            None
        };
        let crash_at = a.crash_leader_at.map(|t| started + Duration::from_secs_f64(t));
        while Instant::now() < stop_at {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(t) = crash_at {
                if crashed.is_none() && Instant::now() >= t {
                    if let Some(mut c) = nodes.children[0].take() {
                        let _ = c.kill(); // SIGKILL
                        let _ = c.wait();
                    }
                    crashed_flag.store(true, Ordering::Relaxed);
                    crashed = Some("n0".to_string());
                    if let Some(b) = &bar {
                        b.println("  SIGKILLed the leader (n0)");
                    }
                }
            }
            if let Some(b) = &bar {
                let el = started.elapsed().as_secs_f64();
                let done = committed.load(Ordering::Relaxed);
                b.set_position((el * 10.0) as u64);
                b.set_message(format!("{done} ops, {:.0} ops/s", done as f64 / el.max(1e-3)));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        for c in &clients {
            c.stop().await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64().min(a.duration.max(1e-9));
    let mut view_changes = 0;
    for i in 0..a.replicas {
        if nodes.children[i].is_some() {
            if let Some(v) = scrape_view(&ports.metrics(i)).await {
                view_changes = view_changes.max(v);
            }
        }
    }
    let h = hist.lock().expect("histogram lock");
    let done = committed.load(Ordering::Relaxed);
    let report = Report {
        replicas: a.replicas,
        clients: a.clients,
        duration_s: a.duration,
        payload: a.payload,
        read_ratio: a.read_ratio,
        throughput_ops: if a.duration > 0.0 { done as f64 / elapsed } else { 0.0 },
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        committed: done,
        errors: errors.load(Ordering::Relaxed),
        view_changes,
        ops_after_crash: after_crash.load(Ordering::Relaxed),
        crashed,
        dir: dir.display().to_string(),
    };
    if a.keep {
        let pids: Vec<u32> = nodes.children.iter().flatten().map(|c| c.id()).collect();
        let endpoints = serde_json::json!({
            "redis": ports.redis(1.min(a.replicas - 1)),
            "replicas": (0..a.replicas).map(|i| ports.replica(i)).collect::<Vec<_>>(),
            "redis_all": (0..a.replicas).map(|i| ports.redis(i)).collect::<Vec<_>>(),
            "metrics": (0..a.replicas).map(|i| format!("http://{}/metrics", ports.metrics(i))).collect::<Vec<_>>(),
            "deployment": dir.join("deployment.toml").display().to_string(),
            "pids": pids,
            "stop": format!("kill {}", pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")),
        });
        if a.json {
            let mut v = serde_json::to_value(&report)?;
            if let (Some(o), Some(e)) = (v.as_object_mut(), endpoints.as_object()) {
                o.extend(e.clone());
            }
            println!("{}", serde_json::to_string(&v)?);
        } else {
            print_table(&report);
            println!("cluster left running:\n{}", serde_json::to_string_pretty(&endpoints)?);
        }
    } else if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "byzscale cluster: {} replicas, {} clients, {:.1} s, {} B values, read ratio {}",
        r.replicas, r.clients, r.duration_s, r.payload, r.read_ratio
    );
    println!("  throughput   {:>10.0} ops/s", r.throughput_ops);
    println!("  latency      p50 {:.2} ms   p99 {:.2} ms", r.p50_ms, r.p99_ms);
    println!("  committed    {:>10}   errors {}   view changes {}", r.committed, r.errors, r.view_changes);
    if let Some(c) = &r.crashed {
        println!("  crashed      {c}; {} ops completed after the crash", r.ops_after_crash);
    }
    println!("  files        {}", r.dir);
}
