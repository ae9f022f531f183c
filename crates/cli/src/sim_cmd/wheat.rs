//! `byzscale sim wheat`: the WHEAT benchmark in the simulator (issue 14
//! item 1). On one network (`ec2-byzcast`: ByzCast's four EC2 regions;
//! `aware5`: AWARE's five, Oregon, Ireland, Sydney, São Paulo, Virginia),
//! the SMR scenario ([`byzscale_scenario_smr`]) runs eight variants: plain
//! BFT n = 3f+1 = 4 and WHEAT n = 5 (f = 1, Δ = 1, weights 2 2 1 1 1), each
//! with and without tentative execution and with and without the leader
//! (and V_max holders) at the best-connected replicas. Replica i and client
//! c sit in region i mod R and c mod R; one closed-loop client per region,
//! writes only (tentative execution concerns ordered requests), a calm
//! network (no loss; 0.5 ms jitter), no adversary. The figures are client
//! latencies in simulated milliseconds, deterministic per seed.
//!
//! Writes `wheat-<network>.json` and `wheat-<network>.svg` (p50 bars with
//! p90 whiskers, the CLI's plotting module) under `--out`.

use crate::plot;
use anyhow::{bail, Context, Result};
use byzscale_scenario_smr::{run_many, Adversary, Config, NetworkChoice, Placement, Report};

use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct WheatArgs {
    /// Network preset or TOML matrix: ec2-byzcast or aware5 for the
    /// figures in the README.
    #[arg(long, default_value = "ec2-byzcast")]
    pub network: String,
    /// Write requests per run (all clients together).
    #[arg(long, default_value_t = 300)]
    pub requests: u64,
    /// Runs (seeds) per variant.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Where the JSON and SVG go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Also print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// One variant's figures.
#[derive(Serialize)]
struct Variant {
    label: String,
    replicas: usize,
    delta: usize,
    tentative: bool,
    best_leader: bool,
    /// View 0's leader: its position and region.
    leader: usize,
    leader_region: String,
    /// The regions of the V_max holders (Δ > 0).
    vmax_regions: Vec<String>,
    /// AWARE's predicted consensus latency (with the best leader).
    predicted_consensus_ms: Option<f64>,
    latency_p50_ms: f64,
    latency_p90_ms: f64,
    latency_p99_ms: f64,
    /// Change against plain n = 4 (round-robin leader, no tentative
    /// execution), in percent; negative is faster.
    p50_vs_plain_pct: f64,
    p90_vs_plain_pct: f64,
    completed_requests: u64,
    safety_violations: u64,
    liveness_failures: u64,
    tentative_slots: u64,
}

#[derive(Serialize)]
struct WheatReport {
    network: String,
    regions: Vec<String>,
    clients: usize,
    requests_per_run: u64,
    seeds: u64,
    command: String,
    variants: Vec<Variant>,
}

pub fn run(a: WheatArgs) -> Result<()> {
    if a.seeds == 0 || a.requests == 0 {
        bail!("--seeds and --requests must be at least 1");
    }
    let network = NetworkChoice::parse(&a.network)?;
    let net = network.model()?;
    let regions = net.regions.clone();
    let command = format!(
        "byzscale sim wheat --network {} --requests {} --seeds {}",
        a.network, a.requests, a.seeds
    );
    let mut variants: Vec<Variant> = Vec::new();
    for (replicas, delta) in [(4, 0), (5, 1)] {
        for best_leader in [false, true] {
            for tentative in [false, true] {
                let cfg = config(
                    &a,
                    &network,
                    regions.len(),
                    (replicas, delta),
                    (tentative, best_leader),
                );
                let r = run_many(&cfg, |_, _| {}).context("simulation failed")?;
                let placed = cfg.placement(&net)?;
                let v = variant(&r, &placed, &regions, variants.first());
                eprintln!(
                    "  {:<22} leader {:<9} p50 {:>7.1} ms  p90 {:>7.1} ms  ({:+.1}% / {:+.1}%)  violations {}",
                    v.label,
                    v.leader_region,
                    v.latency_p50_ms,
                    v.latency_p90_ms,
                    v.p50_vs_plain_pct,
                    v.p90_vs_plain_pct,
                    v.safety_violations
                );
                variants.push(v);
            }
        }
    }
    let report = WheatReport {
        network: a.network.clone(),
        regions,
        clients: net.regions.len(),
        requests_per_run: a.requests,
        seeds: a.seeds,
        command,
        variants,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let stem = Path::new(&a.network)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "custom".into());
    let jpath = a.out.join(format!("wheat-{stem}.json"));
    std::fs::write(&jpath, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", jpath.display()))?;
    let spath = a.out.join(format!("wheat-{stem}.svg"));
    plot_report(&report, &spath)?;
    eprintln!("wrote {} and {}", jpath.display(), spath.display());
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// The scenario of one variant.
fn config(
    a: &WheatArgs,
    network: &NetworkChoice,
    regions: usize,
    (replicas, delta): (usize, usize),
    (tentative, best_leader): (bool, bool),
) -> Config {
    let mut c = Config::new(replicas, 1);
    c.delta = delta;
    c.adversary = Adversary::None;
    c.network = network.clone();
    c.clients = regions.max(1);
    c.read_ratio = 0.0;
    c.requests = a.requests;
    c.seeds = a.seeds;
    c.seed_start = 0;
    c.tentative = tentative;
    c.best_leader = best_leader;
    c.calm = true;
    c
}

/// A variant's row from its report; `plain` is the first row (n = 4,
/// round-robin leader, no tentative execution), `None` for that one.
fn variant(r: &Report, placed: &Placement, regions: &[String], plain: Option<&Variant>) -> Variant {
    let region = |i: usize| regions[i % regions.len().max(1)].clone();
    let pct = |x: f64, base: Option<f64>| match base {
        Some(b) if b > 0.0 => (x / b - 1.0) * 100.0,
        _ => 0.0,
    };
    let mut label = format!("n={} Δ={}", r.replicas, r.delta);
    if r.best_leader {
        label.push_str(" best");
    }
    if r.tentative {
        label.push_str(" tent.");
    }
    let vmax_regions = if r.delta > 0 {
        (0..r.replicas)
            .filter(|i| {
                placed.qs.weight(*i) > placed.qs.weights().iter().copied().min().unwrap_or(0)
            })
            .map(region)
            .collect()
    } else {
        Vec::new()
    };
    Variant {
        label,
        replicas: r.replicas,
        delta: r.delta,
        tentative: r.tentative,
        best_leader: r.best_leader,
        leader: placed.leader,
        leader_region: region(placed.leader),
        vmax_regions,
        predicted_consensus_ms: placed.predicted_ms,
        latency_p50_ms: r.latency_p50_ms,
        latency_p90_ms: r.latency_p90_ms,
        latency_p99_ms: r.latency_p99_ms,
        p50_vs_plain_pct: pct(r.latency_p50_ms, plain.map(|p| p.latency_p50_ms)),
        p90_vs_plain_pct: pct(r.latency_p90_ms, plain.map(|p| p.latency_p90_ms)),
        completed_requests: r.completed_requests,
        safety_violations: r.summary.safety_violations,
        liveness_failures: r.summary.liveness_failures,
        tentative_slots: r.tentative_slots,
    }
}

/// p50 bars with p90 whiskers, one per variant; n = 4 blue, n = 5 red.
fn plot_report(report: &WheatReport, path: &Path) -> Result<()> {
    let bars: Vec<plot::Bar> = report
        .variants
        .iter()
        .map(|v| plot::Bar {
            label: short_label(v),
            value: v.latency_p50_ms,
            whisker: v.latency_p90_ms,
            color: usize::from(v.delta > 0),
        })
        .collect();
    let title = format!(
        "WHEAT on {}: client latency p50 (bar) and p90 (whisker)",
        report.network
    );
    plot::bar_chart(path, &title, "simulated ms", &bars)
}

/// "4", "4 T", "4 L", "4 LT", "5", ...: replicas, L = best leader, T =
/// tentative.
fn short_label(v: &Variant) -> String {
    let mut s = v.replicas.to_string();
    if v.best_leader || v.tentative {
        s.push(' ');
    }
    if v.best_leader {
        s.push('L');
    }
    if v.tentative {
        s.push('T');
    }
    s
}
