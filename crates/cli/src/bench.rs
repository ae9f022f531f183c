//! `byzscale bench`: closed- or open-loop KV load against a running deployment
//! (`--deployment FILE`) or a local cluster it starts; writes
//! `bench/results/<name>.json` and `<name>.svg` (latency CDF and throughput over
//! time).

use crate::cluster::{smr_params, start_local, Load, LoadSpec};
use crate::plot::{side_by_side, Axes};
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Result name: writes <out>/<name>.json and <out>/<name>.svg.
    #[arg(long, default_value = "kv")]
    pub name: String,
    /// Directory for results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Load a running deployment (deployment.toml); default: start a local cluster.
    #[arg(long)]
    pub deployment: Option<PathBuf>,
    /// Replicas of the local cluster.
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Closed-loop clients (open loop: the in-flight cap is 64× this).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    #[arg(long, default_value_t = 0.0)]
    pub read_ratio: f64,
    /// Most requests per batch in the local cluster (1: batching off).
    #[arg(long, default_value_t = byzscale_smr::Params::default().batch_max_requests)]
    pub batch_max: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct BenchReport {
    name: String,
    mode: &'static str,
    offered_rate: Option<f64>,
    replicas: Option<usize>,
    batch_max: Option<usize>,
    clients: usize,
    duration_s: f64,
    payload: usize,
    read_ratio: f64,
    throughput_ops: f64,
    committed: u64,
    errors: u64,
    latency_ms: Percentiles,
    per_second: Vec<u64>,
    cdf_ms: Vec<(f64, f64)>,
    command: String,
}

#[derive(Serialize)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

pub async fn run(a: BenchArgs) -> Result<()> {
    if a.clients == 0
        || a.duration.is_nan()
        || a.duration <= 0.0
        || !(0.0..=1.0).contains(&a.read_ratio)
    {
        bail!("--clients must be ≥ 1, --duration > 0 and --read-ratio in [0, 1]");
    }
    if matches!(a.rate, Some(r) if r.is_nan() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    if a.name.is_empty() || a.name.contains('/') {
        bail!("--name must be a plain file name");
    }
    let (local, dep) = match &a.deployment {
        Some(p) => (None, crate::deploy::load_deployment(p)?),
        None => {
            let l = start_local(a.replicas, None, false, smr_params(a.batch_max)?).await?;
            let d = l.dep.clone();
            (Some(l), d)
        }
    };
    let spec = LoadSpec {
        clients: a.clients,
        duration: a.duration,
        payload: a.payload,
        read_ratio: a.read_ratio,
        open_rate: a.rate,
    };
    let load = Load::start(&dep, &spec).await?;
    let r = load.finish().await;
    drop(local);
    let h = &r.hist;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let cdf: Vec<(f64, f64)> = (0..=200)
        .map(|i| i as f64 / 200.0)
        .map(|q| (ms(q.min(0.9999)), q))
        .collect();
    let report = BenchReport {
        name: a.name.clone(),
        mode: if a.rate.is_some() { "open" } else { "closed" },
        offered_rate: a.rate,
        replicas: a.deployment.is_none().then_some(a.replicas),
        batch_max: a.deployment.is_none().then_some(a.batch_max),
        clients: a.clients,
        duration_s: a.duration,
        payload: a.payload,
        read_ratio: a.read_ratio,
        throughput_ops: r.committed as f64 / a.duration,
        committed: r.committed,
        errors: r.errors,
        latency_ms: Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        },
        per_second: r.per_second.clone(),
        cdf_ms: cdf,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let json_path = a.out.join(format!("{}.json", a.name));
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)?;
    let svg_path = a.out.join(format!("{}.svg", a.name));
    plot(&report, &svg_path).with_context(|| format!("plotting {}", svg_path.display()))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} loop, {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, {} errors\n  wrote {} and {}",
            a.name,
            report.mode,
            report.throughput_ops,
            report.latency_ms.p50,
            report.latency_ms.p99,
            report.errors,
            json_path.display(),
            svg_path.display()
        );
    }
    Ok(())
}

fn plot(r: &BenchReport, path: &std::path::Path) -> Result<()> {
    let xmax = r.cdf_ms.iter().map(|p| p.0).fold(0.1, f64::max);
    let ymax = r.per_second.iter().copied().max().unwrap_or(1).max(1) as f64;
    let cdf = [("latency CDF".to_string(), r.cdf_ms.clone())];
    let rate = [(
        "ops/s".to_string(),
        r.per_second
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 + 0.5, *v as f64))
            .collect(),
    )];
    let title = format!("{}: latency CDF", r.name);
    let left = Axes {
        title: &title,
        x_desc: "latency (ms)",
        y_desc: "fraction",
        x_range: 0.0..xmax * 1.05,
        y_range: 0.0..1.0,
        markers: false,
    };
    let right = Axes {
        title: "throughput over time",
        x_desc: "second",
        y_desc: "ops/s",
        x_range: 0.0..(r.per_second.len().max(1) as f64),
        y_range: 0.0..ymax * 1.1,
        markers: false,
    };
    side_by_side(path, (1000, 400), &[(left, &cdf[..]), (right, &rate[..])])
}
