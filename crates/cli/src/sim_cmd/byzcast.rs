//! The ByzCast simulator commands: `byzscale sim byzcast` and
//! `byzscale sim byzcast-scale` (the figures).
//!
//! Entry points: [`run_sim_byzcast`], [`run_sim_byzcast_scale`].

use crate::bench_cmd::write_json;
use crate::plot::{bar_chart, line_chart, Axes, Bar};
use anyhow::{bail, Context, Result};
use byzscale_byzcast::Mode;
use byzscale_scenario_byzcast::{Adversary, Config, Run, TreeChoice, WorkloadKind};
use byzscale_sim::net_model::NetworkChoice;
use byzscale_sim::runner::percentile_ms as pct;
use byzscale_sim::scenario::{self, Finished};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- sim byzcast

/// The command as typed, starting at `byzscale` (no path of the binary).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("byzscale {}", args.join(" "))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtocolArg {
    Byzcast,
    Baseline,
}

#[derive(Args, Debug)]
pub struct ByzcastArgs {
    /// Target groups G.
    #[arg(long, default_value_t = 2)]
    pub groups: usize,
    /// Overlay tree: two-level, three-level, or a tree file (TOML, or the JSON of `tree optimize`).
    #[arg(long, default_value = "two-level")]
    pub tree: String,
    /// Fraction of multi-group (global) multicasts.
    #[arg(long, default_value_t = 0.1)]
    pub global_ratio: f64,
    /// Mix WATCH and MULTI/EXEC transactions (cross-shard ones too) into the workload.
    #[arg(long)]
    pub transactions: bool,
    /// Mix keys with millisecond TTLs into the single-group operations; the
    /// linearizability checker replays expiry at each shard's batch times
    /// (checked when every multicast is single-group: use --global-ratio 0).
    #[arg(long)]
    pub expiry: bool,
    /// Destinations of global multicasts (local = single-group only).
    #[arg(long, default_value = "uniform", value_parser = super::named(WorkloadKind::NAMES, WorkloadKind::from_name))]
    pub workload: WorkloadKind,
    #[arg(long, value_enum, default_value_t = ProtocolArg::Byzcast)]
    pub protocol: ProtocolArg,
    /// Behaviour of the Byzantine replicas: none, silent, replay, slow,
    /// equivocate, twins, mutate (corrupts one field of half of its
    /// messages), mixed, or a parent's attack (early: forwards client
    /// multicasts before its group orders them; forge: forwards forged
    /// messages and reports forged results; withhold: never forwards;
    /// reorder: swaps consecutive forwards).
    #[arg(long, default_value = "none", value_parser = super::named(Adversary::names(), Adversary::from_name))]
    pub byzantine: Adversary,
    /// Byzantine replicas per group [default: F]. K > F is allowed on purpose:
    /// it shows the checkers catching violations.
    #[arg(long)]
    pub byzantine_count: Option<usize>,
    /// Slots after which an idle client's entry expires at the replicas
    /// and the session floor rises past it (small, so that a run exercises
    /// expiry; the library's default is 2^20).
    #[arg(long, default_value_t = byzscale_scenario_byzcast::CLIENT_EXPIRY_SLOTS)]
    pub client_expiry_slots: u64,
    /// Byzantine clients besides the honest ones, each attacking every
    /// group (the root and inner groups included): the i-th sends partial
    /// authenticators, huge multicasts, one multicast per fresh client id
    /// with malformed destinations (churn), or floods of requests ahead of
    /// their turn (i mod 4).
    #[arg(long, default_value_t = 0)]
    pub byzantine_clients: usize,
    /// Faults tolerated per group F (3F+1 replicas each).
    #[arg(long, default_value_t = 1)]
    pub faulty: usize,
    /// Multicasts per run (all clients together); ignored with --duration-ms.
    #[arg(long, default_value_t = 200)]
    pub requests: u64,
    /// Closed-loop clients per target group.
    #[arg(long, default_value_t = 2)]
    pub clients_per_group: usize,
    /// Throughput mode: clients send without a quota for this long (virtual ms)
    /// over a clean network.
    #[arg(long)]
    pub duration_ms: Option<f64>,
    /// In throughput mode, ignore completions of multicasts sent before this (virtual ms).
    #[arg(long, default_value_t = 0.0)]
    pub warmup_ms: f64,
    /// SMR leader batch delay (µs).
    #[arg(long, default_value_t = 0)]
    pub batch_delay_us: u64,
    /// Write deliver/complete events as JSON lines to this file.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    #[command(flatten)]
    pub restart: super::RestartArgs,
    #[command(flatten)]
    pub run: super::RunArgs,
}

pub fn byzcast_config(a: &ByzcastArgs) -> Result<Config> {
    if a.faulty == 0 {
        bail!("--faulty must be at least 1 (groups of 3F+1 replicas)");
    }
    if let Some(d) = a.duration_ms {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration-ms must be a positive number");
        }
        if !(a.warmup_ms >= 0.0 && a.warmup_ms < d) {
            bail!("--warmup-ms must be in [0, --duration-ms)");
        }
    }
    let (adversary, workload) = (a.byzantine, a.workload);
    let global_ratio = if workload == WorkloadKind::Local && a.global_ratio == 0.1 {
        0.0 // the default ratio does not apply to a local-only workload
    } else {
        a.global_ratio
    };
    let k = a.byzantine_count.unwrap_or(a.faulty);
    let cfg = Config {
        groups: a.groups,
        tree: TreeChoice::parse(&a.tree)?,
        global_ratio,
        workload,
        protocol: match a.protocol {
            ProtocolArg::Byzcast => Mode::Byzcast,
            ProtocolArg::Baseline => Mode::Baseline,
        },
        adversary,
        byzantine_count: if adversary == Adversary::None { 0 } else { k },
        f: a.faulty,
        seeds: a.run.seeds,
        seed_start: a.run.seed_start,
        requests: a.requests,
        clients_per_group: a.clients_per_group,
        network: a.run.network()?,
        modeled_crypto: a.run.modeled_crypto,
        duration_ms: a.duration_ms,
        warmup_ms: a.warmup_ms,
        batch_delay_us: a.batch_delay_us,
        crash_restart: a.restart.crash_restart,
        trace: a.trace.clone(),
        client_expiry_slots: a.client_expiry_slots,
        byzantine_clients: a.byzantine_clients,
        transactions: a.transactions,
        expiry: a.expiry,
    };
    cfg.topology()?;
    Ok(cfg)
}

pub fn run_sim_byzcast(a: ByzcastArgs) -> Result<()> {
    super::run_scenario(&byzcast_config(&a)?, a.run.json)
}

// ---------------------------------------------------------------- figures

#[derive(Args, Debug)]
pub struct ByzcastScaleArgs {
    /// Where to write byzcast-*.json and byzcast-*.svg.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Largest number of target groups in the throughput figure.
    #[arg(long, default_value_t = 8)]
    pub max_groups: usize,
    /// Closed-loop clients per target group in the throughput figure.
    #[arg(long, default_value_t = 100)]
    pub clients_per_group: usize,
    /// Closed-loop clients per target group in the latency-CDF figure.
    #[arg(long, default_value_t = 8)]
    pub cdf_clients_per_group: usize,
    /// SMR leader batch delay in the LAN figures (µs).
    #[arg(long, default_value_t = 20)]
    pub batch_delay_us: u64,
    /// Measured virtual time per LAN run (ms), after the warm-up.
    #[arg(long, default_value_t = 200.0)]
    pub duration_ms: f64,
    /// Virtual warm-up per LAN run (ms).
    #[arg(long, default_value_t = 100.0)]
    pub warmup_ms: f64,
    /// Virtual time per WAN run (s).
    #[arg(long, default_value_t = 60.0)]
    pub wan_seconds: f64,
    /// Seed of every run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn lan_config(groups: usize, a: &ByzcastScaleArgs, ratio: f64, protocol: Mode) -> Config {
    Config {
        groups,
        global_ratio: ratio,
        workload: if ratio > 0.0 {
            WorkloadKind::Uniform
        } else {
            WorkloadKind::Local
        },
        protocol,
        clients_per_group: a.clients_per_group,
        modeled_crypto: true,
        duration_ms: Some(a.warmup_ms + a.duration_ms),
        warmup_ms: a.warmup_ms,
        batch_delay_us: a.batch_delay_us,
        seeds: 1,
        seed_start: a.seed,
        ..Config::new(groups)
    }
}

fn run(cfg: &Config, seed: u64) -> Result<Run> {
    let Finished { outcome, run } = scenario::run_one(cfg, seed).context("simulation failed")?;
    if !outcome.violations.is_empty() {
        bail!(
            "figure run had violations: {:?} (replay: {})",
            outcome.violations.texts(),
            scenario::Scenario::replay_command(cfg, seed)
        );
    }
    Ok(run)
}

#[derive(Serialize)]
struct ScalePoint {
    groups: usize,
    byzcast_local_msgs_per_s: f64,
    baseline_local_msgs_per_s: f64,
    byzcast_local_p50_ms: f64,
    baseline_local_p50_ms: f64,
}

#[derive(Serialize)]
struct ScaleFigure {
    figure: &'static str,
    description: &'static str,
    command: String,
    network: &'static str,
    cpu_model: &'static str,
    crypto: &'static str,
    clients_per_group: usize,
    batch_delay_us: u64,
    measured_ms: f64,
    warmup_ms: f64,
    points: Vec<ScalePoint>,
    speedup_max_groups: f64,
}

#[derive(Serialize)]
struct Cdf {
    label: String,
    samples: usize,
    p50_ms: f64,
    p90_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    /// (latency ms, fraction ≤) at 1% steps.
    points: Vec<(f64, f64)>,
}

#[derive(Serialize)]
struct CdfFigure {
    figure: &'static str,
    description: &'static str,
    command: String,
    groups: usize,
    clients_per_group: usize,
    batch_delay_us: u64,
    measured_ms: f64,
    series: Vec<Cdf>,
}

#[derive(Serialize)]
struct WanBar {
    protocol: &'static str,
    kind: &'static str,
    samples: usize,
    p50_ms: f64,
    p95_ms: f64,
}

#[derive(Serialize)]
struct WanFigure {
    figure: &'static str,
    description: &'static str,
    command: String,
    network: &'static str,
    groups: usize,
    clients: &'static str,
    global_ratio: f64,
    virtual_seconds: f64,
    bars: Vec<WanBar>,
}

fn cdf(label: &str, mut lat: Vec<u64>) -> Cdf {
    lat.sort_unstable();
    let points = (0..=100)
        .map(|i| (pct(&lat, i as f64 / 100.0), i as f64 / 100.0))
        .collect();
    Cdf {
        label: label.to_string(),
        samples: lat.len(),
        p50_ms: pct(&lat, 0.5),
        p90_ms: pct(&lat, 0.9),
        p95_ms: pct(&lat, 0.95),
        p99_ms: pct(&lat, 0.99),
        points,
    }
}

/// The WAN figure: median bars with a p95 whisker, ByzCast in the first colour.
fn wan_chart(path: &Path, bars: &[WanBar]) -> Result<()> {
    let bars: Vec<Bar> = bars
        .iter()
        .map(|b| Bar {
            label: format!("{} {}", b.protocol, b.kind),
            value: b.p50_ms,
            whisker: b.p95_ms,
            color: usize::from(b.protocol != "byzcast"),
        })
        .collect();
    bar_chart(
        path,
        "ByzCast vs baseline on ec2-byzcast: median, whisker = p95",
        "latency (ms, virtual)",
        &bars,
    )
}

pub fn run_sim_byzcast_scale(a: ByzcastScaleArgs) -> Result<()> {
    if a.max_groups == 0 || a.clients_per_group == 0 || a.cdf_clients_per_group == 0 {
        bail!("--max-groups and the client counts must be at least 1");
    }
    if !(a.duration_ms > 0.0 && a.warmup_ms >= 0.0 && a.wan_seconds > 0.0) {
        bail!("durations must be positive");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let command = command_line();
    let started = std::time::Instant::now();
    let scale = throughput_figure(&a, &command, started)?;
    let cdf_fig = cdf_figure(&a, &command, started)?;
    let wan = wan_figure(&a, command, started)?;
    print_figures(&a, &scale, &cdf_fig, &wan, started)
}

/// Local throughput against the number of groups (seed 000 Fig. 4a).
fn throughput_figure(
    a: &ByzcastScaleArgs,
    command: &str,
    started: std::time::Instant,
) -> Result<ScaleFigure> {
    // 1. local throughput against the number of groups (Fig. 4a)
    let mut points = Vec::new();
    for g in 1..=a.max_groups {
        let bc = run(&lan_config(g, a, 0.0, Mode::Byzcast), a.seed)?;
        let bl = run(&lan_config(g, a, 0.0, Mode::Baseline), a.seed)?;
        let p = |r: &Run| {
            let mut v = r.latencies_local.clone();
            v.sort_unstable();
            pct(&v, 0.5)
        };
        eprintln!(
            "  {g} group(s): byzcast {:.0} msg/s, baseline {:.0} msg/s ({:.0} s wall)",
            bc.throughput_local,
            bl.throughput_local,
            started.elapsed().as_secs_f64()
        );
        points.push(ScalePoint {
            groups: g,
            byzcast_local_msgs_per_s: bc.throughput_local,
            baseline_local_msgs_per_s: bl.throughput_local,
            byzcast_local_p50_ms: p(&bc),
            baseline_local_p50_ms: p(&bl),
        });
    }
    let one = points[0].byzcast_local_msgs_per_s.max(1e-9);
    let scale = ScaleFigure {
        figure: "byzcast-scale",
        description: "single-group (local) multicasts per second (virtual) against the number of target groups, \
                      two-level tree, LAN, calibrated CPU model; ByzCast orders each at its group only, the baseline \
                      at the sequencer and then at the group",
        command: command.to_string(),
        network: "lan",
        cpu_model: "calibrated",
        crypto: "modeled (cost model, not real signatures)",
        clients_per_group: a.clients_per_group,
        batch_delay_us: a.batch_delay_us,
        measured_ms: a.duration_ms,
        warmup_ms: a.warmup_ms,
        speedup_max_groups: points.last().map(|p| p.byzcast_local_msgs_per_s).unwrap_or(0.0) / one,
        points,
    };
    let top = scale
        .points
        .iter()
        .map(|p| p.byzcast_local_msgs_per_s.max(p.baseline_local_msgs_per_s))
        .fold(0.0, f64::max)
        * 1.1
        / 1000.0;
    let series = [
        (
            "ByzCast".to_string(),
            scale
                .points
                .iter()
                .map(|p| (p.groups as f64, p.byzcast_local_msgs_per_s / 1000.0))
                .collect(),
        ),
        (
            "Baseline".to_string(),
            scale
                .points
                .iter()
                .map(|p| (p.groups as f64, p.baseline_local_msgs_per_s / 1000.0))
                .collect(),
        ),
    ];
    let axes = Axes {
        title: "Local multicasts: throughput vs target groups (LAN, simulated)",
        x_desc: "target groups",
        y_desc: "throughput (k msg/s, virtual)",
        x_range: 0.5..a.max_groups as f64 + 0.5,
        y_range: 0.0..top.max(1.0),
        markers: true,
    };
    line_chart(&a.out.join("byzcast-scale.svg"), axes, &series)?;
    write_json(&a.out, "byzcast-scale", &scale)?;

    Ok(scale)
}

/// Latency CDF with 10% global messages (seed 000 Fig. 7).
fn cdf_figure(
    a: &ByzcastScaleArgs,
    command: &str,
    started: std::time::Instant,
) -> Result<CdfFigure> {
    // 2. latency CDF with 10% global messages (Fig. 7)
    let groups = 4.min(a.max_groups.max(2));
    let cdf_clients = a.cdf_clients_per_group.max(1);
    let cdf_cfg = |ratio: f64| Config {
        clients_per_group: cdf_clients,
        ..lan_config(groups, a, ratio, Mode::Byzcast)
    };
    let r0 = run(&cdf_cfg(0.0), a.seed)?;
    let r10 = run(&cdf_cfg(0.1), a.seed)?;
    eprintln!(
        "  latency CDF runs done ({:.0} s wall)",
        started.elapsed().as_secs_f64()
    );
    let series = vec![
        cdf("local, 0% global", r0.latencies_local.clone()),
        cdf("local, 10% global", r10.latencies_local.clone()),
        cdf("global, 10% global", r10.latencies_global.clone()),
    ];
    let xmax = series.iter().map(|s| s.p99_ms).fold(0.0, f64::max) * 1.1 + 0.1;
    let lines: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| {
            (
                s.label.clone(),
                s.points
                    .iter()
                    .copied()
                    .filter(|(x, _)| *x <= xmax)
                    .collect(),
            )
        })
        .collect();
    let title =
        format!("ByzCast latency CDF, {groups} groups, 10% global (LAN, simulated; cut at p99)");
    let axes = Axes {
        title: &title,
        x_desc: "latency (ms, virtual)",
        y_desc: "fraction of multicasts",
        x_range: 0.0..xmax,
        y_range: 0.0..1.02,
        markers: false,
    };
    line_chart(&a.out.join("byzcast-latency-cdf.svg"), axes, &lines)?;
    let cdf_fig = CdfFigure {
        figure: "byzcast-latency-cdf",
        description: "latency CDF of local multicasts without and with 10% global multicasts, and of the global ones \
                      (two-level tree, LAN, calibrated CPU model). Local messages never wait for global ones (they are \
                      ordered by their group alone); the small shift of the local curve is the extra work of ordering \
                      the 3f+1 forwarded copies of each global message at its destinations (digest section 1.4)",
        command: command.to_string(),
        groups,
        clients_per_group: cdf_clients,
        batch_delay_us: a.batch_delay_us,
        measured_ms: a.duration_ms,
        series,
    };
    write_json(&a.out, "byzcast-latency-cdf", &cdf_fig)?;

    Ok(cdf_fig)
}

/// ByzCast against the baseline on the WAN, one client per region (seed 000 Fig. 8).
fn wan_figure(
    a: &ByzcastScaleArgs,
    command: String,
    started: std::time::Instant,
) -> Result<WanFigure> {
    // 3. WAN: ByzCast vs baseline, one client per region (Fig. 8)
    let mut bars = Vec::new();
    let wan_ratio = 0.5;
    for protocol in [Mode::Byzcast, Mode::Baseline] {
        let cfg = Config {
            groups: 4,
            global_ratio: wan_ratio,
            workload: WorkloadKind::Uniform,
            protocol,
            clients_per_group: 1,
            network: NetworkChoice::Preset("ec2-byzcast".into()),
            modeled_crypto: true,
            duration_ms: Some(a.wan_seconds * 1000.0),
            warmup_ms: 1000.0,
            ..Config::new(4)
        };
        let r = run(&cfg, a.seed)?;
        for (kind, lat) in [
            ("local", &r.latencies_local),
            ("global", &r.latencies_global),
        ] {
            let mut v = lat.clone();
            v.sort_unstable();
            bars.push(WanBar {
                protocol: protocol.name(),
                kind,
                samples: v.len(),
                p50_ms: pct(&v, 0.5),
                p95_ms: pct(&v, 0.95),
            });
        }
    }
    bars.sort_by_key(|b| (b.kind != "local", b.protocol != "byzcast"));
    eprintln!(
        "  WAN runs done ({:.0} s wall)",
        started.elapsed().as_secs_f64()
    );
    wan_chart(&a.out.join("byzcast-wan.svg"), &bars)?;
    let wan = WanFigure {
        figure: "byzcast-wan",
        description: "median and 95th-percentile latency of local and global multicasts on the ec2-byzcast latency \
                      matrix (seed 000 Table I): each group has one replica per region (CA, VA, EU, JP; leaders in CA), \
                      one client per region, two-level tree",
        command,
        network: "ec2-byzcast",
        groups: 4,
        clients: "one per region (4), closed loop",
        global_ratio: wan_ratio,
        virtual_seconds: a.wan_seconds,
        bars,
    };
    write_json(&a.out, "byzcast-wan", &wan)?;

    Ok(wan)
}

/// The figures' summary: JSON with `--json`, else a table.
fn print_figures(
    a: &ByzcastScaleArgs,
    scale: &ScaleFigure,
    cdf_fig: &CdfFigure,
    wan: &WanFigure,
    started: std::time::Instant,
) -> Result<()> {
    #[derive(Serialize)]
    struct Summary<'a> {
        scale: &'a ScaleFigure,
        latency_cdf: Vec<(&'a str, f64, f64)>,
        wan: &'a [WanBar],
        wall_seconds: f64,
        out: String,
    }
    let summary = Summary {
        scale,
        latency_cdf: cdf_fig
            .series
            .iter()
            .map(|s| (s.label.as_str(), s.p50_ms, s.p99_ms))
            .collect(),
        wan: &wan.bars,
        wall_seconds: started.elapsed().as_secs_f64(),
        out: a.out.display().to_string(),
    };
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("local throughput (msg/s, virtual):");
        for p in &scale.points {
            println!(
                "  {:>2} groups  byzcast {:>9.0}  baseline {:>9.0}",
                p.groups, p.byzcast_local_msgs_per_s, p.baseline_local_msgs_per_s
            );
        }
        println!(
            "  {} groups / 1 group = {:.2}×",
            a.max_groups, scale.speedup_max_groups
        );
        println!("latency CDF (p50 / p99 ms):");
        for s in &cdf_fig.series {
            println!("  {:<20} {:>8.3} / {:>8.3}", s.label, s.p50_ms, s.p99_ms);
        }
        println!("WAN (p50 / p95 ms):");
        for b in &wan.bars {
            println!(
                "  {:<9} {:<7} {:>8.1} / {:>8.1}  ({} samples)",
                b.protocol, b.kind, b.p50_ms, b.p95_ms, b.samples
            );
        }
        println!(
            "wrote {}/byzcast-{{scale,latency-cdf,wan}}.{{json,svg}}",
            a.out.display()
        );
    }
    Ok(())
}
