//! The benchmark commands and their figures (JSON + SVG under
//! `bench/results`):
//!
//! - `byzscale bench`: closed- or open-loop KV load against a running
//!   deployment (`--deployment FILE`) or a local cluster it starts; the
//!   latency CDF and throughput over time;
//! - `byzscale bench-byzcast`: ByzCast against one SMR group at several
//!   client counts, each a `byzscale cluster` run;
//! - `byzscale bench-at2`: AT2 against a bank ordered by the SMR core, same
//!   nodes and workload, at several client counts.

use crate::deploy_cmd::show_progress;
use crate::plot::{line_chart, per_second_chart, side_by_side, Axes, Series};
use anyhow::{anyhow, bail, Context, Result};
use byzscale_node::load_deployment;
use byzscale_node::protocols::at2::{self, At2Report, TransferRun};
use byzscale_node::protocols::byzcast::ByzcastReport;
use byzscale_node::protocols::{bank, smr};
use byzscale_node::LoadSpec;
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Write `result` as `<out>/<name>.json` (creating `out`); returns the path.
pub(crate) fn write_json(out: &Path, name: &str, result: &impl Serialize) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(result)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Write `<out>/<name>.json` and plot `<out>/<name>.svg`, then print the
/// result: its JSON with `--json`, else `line` and where the files went.
pub(crate) fn publish<R: Serialize>(
    out: &Path,
    name: &str,
    result: &R,
    json: bool,
    plot: impl FnOnce(&R, &Path) -> Result<()>,
    line: impl FnOnce(&R) -> String,
) -> Result<()> {
    let json_path = write_json(out, name, result)?;
    let svg = out.join(format!("{name}.svg"));
    plot(result, &svg).with_context(|| format!("plotting {}", svg.display()))?;
    if json {
        println!("{}", serde_json::to_string(result)?);
    } else {
        println!(
            "{}   wrote {} and {}",
            line(result),
            json_path.display(),
            svg.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- bench

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
    /// Closed-loop clients (open loop: the in-flight cap is 2× this; requests due beyond it, or refused by a full client, are shed and counted)
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of the same load before --duration, not measured.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
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
    /// window, offered/issued/achieved rates, saturation, in flight at the
    /// end, the per-second series
    #[serde(flatten)]
    load: byzscale_node::LoadSummary,
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

/// `byzscale bench`.
pub async fn bench(a: BenchArgs) -> Result<()> {
    if a.clients == 0
        || a.duration.is_nan()
        || a.duration <= 0.0
        || !(0.0..=1.0).contains(&a.read_ratio)
        || !(a.warmup >= 0.0 && a.warmup.is_finite())
    {
        bail!("--clients must be ≥ 1, --duration > 0, --warmup ≥ 0 and --read-ratio in [0, 1]");
    }
    if matches!(a.rate, Some(r) if r.is_nan() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    if a.name.is_empty() || a.name.contains('/') {
        bail!("--name must be a plain file name");
    }
    let (local, dep) = match &a.deployment {
        Some(p) => (None, load_deployment(p)?),
        None => {
            let params = smr::params_with_batch(a.batch_max)?;
            let l = smr::start_local(a.replicas, params, None, false).await?;
            let d = l.dep.clone();
            (Some(l), d)
        }
    };
    let spec = LoadSpec {
        clients: a.clients,
        duration: a.duration,
        open_rate: a.rate,
        warmup: a.warmup,
    };
    let workload = smr::KvWorkload {
        payload: a.payload,
        read_ratio: a.read_ratio,
    };
    let r = smr::run_kv_load(&dep, &spec, &workload, false, |_, _| {}).await?;
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
        replicas: a.deployment.is_none().then_some(a.replicas),
        batch_max: a.deployment.is_none().then_some(a.batch_max),
        clients: a.clients,
        duration_s: a.duration,
        payload: a.payload,
        read_ratio: a.read_ratio,
        throughput_ops: r.throughput(r.committed),
        committed: r.committed,
        errors: r.errors,
        latency_ms: Percentiles {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
        },
        load: r.summary(),
        cdf_ms: cdf,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    publish(&a.out, &a.name, &report, a.json, plot_bench, |r| {
        let offered = match (r.load.offered_rate, r.load.saturated) {
            (Some(o), Some(true)) => format!(
                ", offered {o:.0}/s: SATURATED ({} shed, {} still in flight when the offering stopped)",
                r.load.shed, r.load.in_flight_at_end
            ),
            (Some(o), _) => format!(", offered {o:.0}/s"),
            _ => String::new(),
        };
        format!(
            "{}: {} loop, {:.0} ops/s over {:.1} s{offered}, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            a.name,
            r.mode,
            r.throughput_ops,
            r.load.window_s,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.errors,
        )
    })
}

fn plot_bench(r: &BenchReport, path: &Path) -> Result<()> {
    let xmax = r.cdf_ms.iter().map(|p| p.0).fold(0.1, f64::max);
    let cdf = [("latency CDF".to_string(), r.cdf_ms.clone())];
    let (rate, right) = per_second_chart("ops/s", &r.load.per_second);
    let title = format!("{}: latency CDF", r.name);
    let left = Axes {
        title: &title,
        x_desc: "latency (ms)",
        y_desc: "fraction",
        x_range: 0.0..xmax * 1.05,
        y_range: 0.0..1.0,
        markers: false,
    };
    side_by_side(path, (1000, 400), &[(left, &cdf[..]), (right, &rate[..])])
}

// ---------------------------------------------------------------- bench-byzcast

#[derive(Args, Debug)]
pub struct BenchByzcastArgs {
    /// Closed-loop client counts (one ByzCast and one SMR run each).
    #[arg(long, value_delimiter = ',', default_value = "32,96,192")]
    pub clients: Vec<usize>,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Target groups (plus one auxiliary root).
    #[arg(long, default_value_t = 2)]
    pub groups: usize,
    /// Fraction of two-group MSETs.
    #[arg(long, default_value_t = 0.1)]
    pub global_ratio: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Directory for results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Writes <out>/<name>.json, <name>.svg (throughput) and <name>-latency.svg.
    #[arg(long, default_value = "byzcast-real")]
    pub name: String,
}

#[derive(Serialize)]
struct ByzcastPoint {
    clients: usize,
    byzcast: ByzcastReport,
    smr: serde_json::Value,
    /// ByzCast total throughput / SMR throughput.
    ratio_total: f64,
    /// ByzCast local-message throughput / SMR throughput.
    ratio_local: f64,
    byzcast_command: String,
    smr_command: String,
}

#[derive(Serialize)]
struct ByzcastFigure {
    name: String,
    command: String,
    what: String,
    reference: String,
    points: Vec<ByzcastPoint>,
    best_total_ops: f64,
    best_vs_reference: f64,
}

/// The Java ByzCast prototype's peak in this configuration (ops/s).
const JAVA_REFERENCE_OPS: f64 = 1_400.0;

fn run_cli(args: &[String]) -> Result<serde_json::Value> {
    let exe = std::env::current_exe().context("locating the byzscale binary")?;
    let out = std::process::Command::new(exe)
        .args(args)
        .output()
        .with_context(|| format!("running byzscale {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "byzscale {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("byzscale {} printed nothing", args.join(" ")))?;
    serde_json::from_str(line)
        .with_context(|| format!("parsing the report of byzscale {}", args.join(" ")))
}

/// `byzscale bench-byzcast`: ByzCast (G targets + 1 auxiliary, closed loop,
/// a fraction of global messages) and one SMR group under the same clients,
/// each as real processes on loopback, one after the other.
pub async fn bench_byzcast(a: BenchByzcastArgs) -> Result<()> {
    if a.clients.is_empty() || a.clients.contains(&0) {
        bail!("--clients must list positive client counts, e.g. 32,96,192");
    }
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if a.groups < 2 {
        bail!("--groups must be at least 2 (global messages need two targets)");
    }
    if !(0.0..=1.0).contains(&a.global_ratio) {
        bail!("--global-ratio must be between 0 and 1");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut points = Vec::new();
    for &c in &a.clients {
        points.push(byzcast_point(&a, c)?);
    }
    let best = points
        .iter()
        .map(|p| p.byzcast.throughput_ops)
        .fold(0.0, f64::max);
    let fig = ByzcastFigure {
        name: a.name.clone(),
        command: std::iter::once("byzscale".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        what: format!(
            "ByzCast, {} target groups + 1 auxiliary root, 4 replicas each, {:.0}% two-group MSETs, {} B values, closed loop; one SMR group of 4 under the same clients; every process on one machine (loopback)",
            a.groups,
            a.global_ratio * 100.0,
            a.payload
        ),
        reference: format!(
            "the Java ByzCast prototype peaks near {JAVA_REFERENCE_OPS:.0} ops/s in this configuration"
        ),
        best_total_ops: best,
        best_vs_reference: best / JAVA_REFERENCE_OPS,
        points,
    };
    let json_path = write_json(&a.out, &a.name, &fig)?;
    let (svg, svg_lat) = plot_byzcast(&fig, &a)?;
    println!(
        "wrote {}, {} and {}; best ByzCast throughput {:.0} ops/s ({:.1}× the Java prototype's {:.0})",
        json_path.display(),
        svg.display(),
        svg_lat.display(),
        best,
        best / JAVA_REFERENCE_OPS,
        JAVA_REFERENCE_OPS
    );
    Ok(())
}

/// One ByzCast and one SMR cluster run with `c` clients.
fn byzcast_point(a: &BenchByzcastArgs, c: usize) -> Result<ByzcastPoint> {
    let common = [
        "--clients".to_string(),
        c.to_string(),
        "--duration".into(),
        a.duration.to_string(),
        "--payload".into(),
        a.payload.to_string(),
        "--json".into(),
    ];
    let mut bc_args: Vec<String> = vec![
        "cluster".into(),
        "--protocol".into(),
        "byzcast".into(),
        "--groups".into(),
        a.groups.to_string(),
        "--global-ratio".into(),
        a.global_ratio.to_string(),
    ];
    bc_args.extend(common.iter().cloned());
    let mut smr_args: Vec<String> = vec!["cluster".into()];
    smr_args.extend(common.iter().cloned());
    let bc: ByzcastReport = serde_json::from_value(run_cli(&bc_args)?)?;
    let smr = run_cli(&smr_args)?;
    let smr_ops = smr["throughput_ops"].as_f64().unwrap_or(0.0);
    eprintln!(
        "  {c} clients: byzcast {:.0} ops/s (local {:.0}, global {:.0}; p50 local {:.2} ms, global {:.2} ms), smr {:.0} ops/s",
        bc.throughput_ops,
        bc.throughput_local,
        bc.throughput_global,
        bc.latency_local_p50_ms,
        bc.latency_global_p50_ms,
        smr_ops
    );
    Ok(ByzcastPoint {
        clients: c,
        ratio_total: bc.throughput_ops / smr_ops.max(1e-9),
        ratio_local: bc.throughput_local / smr_ops.max(1e-9),
        byzcast: bc,
        smr,
        byzcast_command: format!("byzscale {}", bc_args.join(" ")),
        smr_command: format!("byzscale {}", smr_args.join(" ")),
    })
}

/// The throughput and the latency figure of `bench-byzcast`; returns their
/// paths.
fn plot_byzcast(fig: &ByzcastFigure, a: &BenchByzcastArgs) -> Result<(PathBuf, PathBuf)> {
    let xs = |f: &dyn Fn(&ByzcastPoint) -> f64| -> Vec<(f64, f64)> {
        fig.points
            .iter()
            .map(|p| (p.clients as f64, f(p)))
            .collect()
    };
    let smr = |p: &ByzcastPoint, k: &str| p.smr[k].as_f64().unwrap_or(0.0);
    let x_max = a.clients.iter().copied().max().unwrap_or(1) as f64 * 1.05;
    let chart = |path: &Path, title: &str, y_desc: &str, lines: &[Series], pad: f64| {
        let top = lines
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(0.0, f64::max)
            * 1.15
            + pad;
        let axes = Axes {
            title,
            x_desc: "closed-loop clients",
            y_desc,
            x_range: 0.0..x_max,
            y_range: 0.0..top,
            markers: true,
        };
        line_chart(path, axes, lines)
    };
    let thr = [
        (
            "ByzCast total".to_string(),
            xs(&|p| p.byzcast.throughput_ops),
        ),
        (
            "ByzCast local".to_string(),
            xs(&|p| p.byzcast.throughput_local),
        ),
        (
            "ByzCast global".to_string(),
            xs(&|p| p.byzcast.throughput_global),
        ),
        (
            "one SMR group".to_string(),
            xs(&|p| smr(p, "throughput_ops")),
        ),
    ];
    let svg = a.out.join(format!("{}.svg", a.name));
    let title = format!(
        "ByzCast on loopback ({} targets + 1 aux, {:.0}% global) vs one SMR group",
        a.groups,
        a.global_ratio * 100.0
    );
    chart(&svg, &title, "throughput (ops/s)", &thr, 1.0)?;
    let lat = [
        (
            "ByzCast local p50".to_string(),
            xs(&|p| p.byzcast.latency_local_p50_ms),
        ),
        (
            "ByzCast global p50".to_string(),
            xs(&|p| p.byzcast.latency_global_p50_ms),
        ),
        ("one SMR group p50".to_string(), xs(&|p| smr(p, "p50_ms"))),
    ];
    let svg_lat = a.out.join(format!("{}-latency.svg", a.name));
    let title = "ByzCast on loopback: median latency";
    chart(&svg_lat, title, "p50 latency (ms)", &lat, 0.1)?;
    Ok((svg, svg_lat))
}

// ---------------------------------------------------------------- bench-at2

/// A bank AT2 is compared with (`--bank`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BankKind {
    /// `byzscale_apps::bank`: one account per node, clients authenticated
    /// by MACs only, no persistence.
    Plain,
    /// `byzscale_apps::signed_bank`: AT2's accounts, transfers signed by
    /// their owners and batch-verified, replicas durable like the KV store.
    Signed,
}

impl BankKind {
    fn protocol(self) -> &'static str {
        match self {
            BankKind::Plain => "smr-bank",
            BankKind::Signed => "smr-signed-bank",
        }
    }
    fn name(self) -> &'static str {
        match self {
            BankKind::Plain => "plain",
            BankKind::Signed => "signed",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct BenchAt2Args {
    /// Nodes (AT2 processes, and SMR replicas for the bank).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Closed-loop clients of each run.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub clients: Vec<usize>,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// AT2's broadcast (the bank is the SMR core either way).
    #[command(flatten)]
    pub at2: crate::broadcast_cmd::At2BroadcastArgs,
    /// The banks to compare with, comma-separated: `plain` (MAC-authenticated
    /// clients, no persistence) and/or `signed` (owner-signed transfers on
    /// AT2's accounts, durable replicas: the like-for-like comparison).
    #[arg(long, value_delimiter = ',', default_value = "plain")]
    pub bank: Vec<BankKind>,
    /// Result name: writes <out>/<name>.json and <out>/<name>.svg.
    #[arg(long, default_value = "at2-vs-smr-bank")]
    pub name: String,
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct At2Figure {
    nodes: usize,
    /// AT2's secure broadcast.
    broadcast: &'static str,
    duration_s: f64,
    runs: Vec<At2Report>,
    /// Per client count: AT2 throughput / SMR bank throughput.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ratios: Vec<(usize, f64)>,
    /// Best AT2 throughput over best SMR bank throughput.
    #[serde(skip_serializing_if = "Option::is_none")]
    best_ratio: Option<f64>,
    /// Per client count: AT2 throughput / signed durable SMR bank throughput.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    signed_ratios: Vec<(usize, f64)>,
    /// Best AT2 throughput over best signed durable SMR bank throughput.
    #[serde(skip_serializing_if = "Option::is_none")]
    best_signed_ratio: Option<f64>,
    command: String,
}

/// One bank's run of `spec`, with its files cleared from the report.
async fn run_bank(kind: BankKind, spec: &TransferRun, show: bool) -> Result<At2Report> {
    if show {
        let what = match kind {
            BankKind::Plain => "SMR bank",
            BankKind::Signed => "signed durable SMR bank",
        };
        eprintln!("{what}, {} replicas, {} clients", spec.nodes, spec.clients);
    }
    let (mut r, local) = match kind {
        BankKind::Plain => bank::run(spec).await?,
        BankKind::Signed => bank::run_signed(spec).await?,
    };
    drop(local);
    r.dir.clear();
    Ok(r)
}

/// The line `bench-at2` prints for AT2 against one bank at one client count.
fn at2_line(kind: BankKind, at2: &At2Report, b: &At2Report, ratio: f64) -> String {
    let c = at2.clients;
    let lead = format!(
        "{c:>5} clients: AT2 {:>8.0} transfers/s (p50 {:.1} ms, p99 {:.1} ms; ledgers ok: {})",
        at2.throughput_ops,
        at2.p50_ms,
        at2.p99_ms,
        at2.supply_conserved && at2.balances_agree,
    );
    let what = match kind {
        BankKind::Plain => "SMR bank",
        BankKind::Signed => "signed durable SMR bank",
    };
    let ok = match kind {
        BankKind::Plain => String::new(),
        BankKind::Signed => format!("; supply ok: {}, errors {}", b.supply_conserved, b.errors),
    };
    format!(
        "{lead}   {what} {:>8.0} transfers/s (p50 {:.1} ms, p99 {:.1} ms{ok})   ratio {ratio:.2}",
        b.throughput_ops, b.p50_ms, b.p99_ms,
    )
}

/// `byzscale bench-at2`: for each client count, an AT2 cluster and an SMR
/// bank cluster of the same size (one per `--bank`) run the same
/// closed-loop transfer workload, one after the other on this machine.
pub async fn bench_at2(a: BenchAt2Args) -> Result<()> {
    let show = show_progress(a.json);
    let spec = |clients| TransferRun {
        nodes: a.nodes,
        clients,
        duration: a.duration,
        progress: show,
        dir: None,
        keep: false,
        settings: a.at2.settings(),
    };
    for c in &a.clients {
        spec(*c).check()?;
    }
    if a.duration <= 0.0 {
        bail!("--duration must be positive");
    }
    let mut banks = a.bank.clone();
    banks.dedup();
    if banks.is_empty() {
        bail!("--bank needs plain, signed or both");
    }
    let mut runs = Vec::new();
    let (mut ratios, mut signed_ratios) = (Vec::new(), Vec::new());
    for &c in &a.clients {
        if show {
            eprintln!("AT2, {} nodes, {c} clients", a.nodes);
        }
        let (mut at2, local) = at2::run(&spec(c)).await?;
        drop(local);
        at2.dir.clear();
        let mut bank_runs = Vec::new();
        for &kind in &banks {
            let b = run_bank(kind, &spec(c), show).await?;
            let ratio = at2.throughput_ops / b.throughput_ops.max(1e-9);
            match kind {
                BankKind::Plain => ratios.push((c, ratio)),
                BankKind::Signed => signed_ratios.push((c, ratio)),
            }
            if !a.json {
                println!("{}", at2_line(kind, &at2, &b, ratio));
            }
            bank_runs.push(b);
        }
        runs.push(at2);
        runs.append(&mut bank_runs);
    }
    let best = |p: &str| {
        runs.iter()
            .filter(|r| r.protocol == p)
            .map(|r| r.throughput_ops)
            .fold(0.0, f64::max)
    };
    let best_ratio = |k: BankKind| {
        banks
            .contains(&k)
            .then(|| best("at2") / best(k.protocol()).max(1e-9))
    };
    let fig = At2Figure {
        nodes: a.nodes,
        broadcast: a.at2.broadcast.name(),
        duration_s: a.duration,
        best_ratio: best_ratio(BankKind::Plain),
        best_signed_ratio: best_ratio(BankKind::Signed),
        ratios,
        signed_ratios,
        command: at2_command(&a, &banks),
        runs,
    };
    publish(&a.out, &a.name, &fig, a.json, plot_at2, |f| {
        let mut line = Vec::new();
        if let Some(r) = f.best_ratio {
            line.push(format!("best AT2 / best SMR bank: {r:.2}×"));
        }
        if let Some(r) = f.best_signed_ratio {
            line.push(format!("best AT2 / best signed durable SMR bank: {r:.2}×"));
        }
        line.join("; ")
    })
}

/// The command line that reproduces a `bench-at2` run (`--bank` only if
/// not the default).
fn at2_command(a: &BenchAt2Args, banks: &[BankKind]) -> String {
    let clients: Vec<String> = a.clients.iter().map(|c| c.to_string()).collect();
    let mut cmd = format!(
        "byzscale bench-at2 --nodes {} --clients {} --duration {} --broadcast {}",
        a.nodes,
        clients.join(","),
        a.duration,
        a.at2.broadcast.name()
    );
    if banks != [BankKind::Plain] {
        let names: Vec<&str> = banks.iter().map(|b| b.name()).collect();
        cmd += &format!(" --bank {}", names.join(","));
    }
    cmd
}

fn plot_at2(fig: &At2Figure, path: &Path) -> Result<()> {
    let series = |p: &str| -> Vec<(f64, f64)> {
        fig.runs
            .iter()
            .filter(|r| r.protocol == p)
            .map(|r| (r.clients as f64, r.throughput_ops))
            .collect()
    };
    let mut lines = vec![("AT2 over Bracha".to_string(), series("at2"))];
    for (name, p) in [
        ("bank on the SMR core", "smr-bank"),
        ("signed durable bank on the SMR core", "smr-signed-bank"),
    ] {
        let s = series(p);
        if !s.is_empty() {
            lines.push((name.to_string(), s));
        }
    }
    let (xmin, xmax) = lines[0]
        .1
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ymax = lines
        .iter()
        .flat_map(|l| l.1.iter())
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let ratios: Vec<String> = [("", fig.best_ratio), ("signed ", fig.best_signed_ratio)]
        .iter()
        .filter_map(|(w, r)| r.map(|r| format!("{w}{r:.2}×")))
        .collect();
    let title = format!(
        "Transfers/s on {} nodes: AT2 (Bracha, batched) vs a bank on the SMR core (best ratio {})",
        fig.nodes,
        ratios.join(", ")
    );
    let axes = Axes {
        title: &title,
        x_desc: "closed-loop clients",
        y_desc: "transfers per second",
        x_range: (xmin * 0.7)..(xmax * 1.3 + 1.0),
        y_range: 0.0..ymax * 1.15,
        markers: true,
    };
    line_chart(path, axes, &lines)
}
