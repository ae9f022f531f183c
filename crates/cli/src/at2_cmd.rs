//! AT2 and broadcast commands:
//!
//! - `byzscale sim at2 ...`: AT2 over Bracha or Contagion with Byzantine owners
//!   and checkers ([`At2Args`], [`run_at2`]);
//! - `byzscale sim at2-scale ...`: messages per process against N, JSON and an
//!   SVG figure ([`At2ScaleArgs`], [`run_at2_scale`]);
//! - `byzscale broadcast params ...`: Contagion parameters from (N, β, ε);
//! - `byzscale broadcast montecarlo ...`: observed failure rates at a degraded
//!   operating point against the analysis ([`BroadcastCommand`], [`run_broadcast`]).

use crate::plot;
use anyhow::{bail, Context, Result};
use byzscale_broadcast::probabilistic::params::{self, ContagionParams};
use byzscale_sim::at2::{
    self as sim_at2, At2SimConfig, Attack, BroadcastKind, McConfig, ScaleConfig, ScalePoint,
    ScaleReport,
};
use byzscale_sim::smr::NetworkChoice;
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BroadcastArg {
    Bracha,
    Contagion,
}

impl From<BroadcastArg> for BroadcastKind {
    fn from(b: BroadcastArg) -> Self {
        match b {
            BroadcastArg::Bracha => BroadcastKind::Bracha,
            BroadcastArg::Contagion => BroadcastKind::Contagion,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AttackArg {
    DoubleSpend,
    FakeDependency,
    Overdraft,
}

/// `byzscale sim at2`.
#[derive(Args, Debug)]
pub struct At2Args {
    /// Number of processes N (each owns one account).
    #[arg(long, default_value_t = 10)]
    pub processes: usize,
    /// How many processes are Byzantine (K). K > F is allowed on purpose: the
    /// checkers then catch the violations.
    #[arg(long, default_value_t = 0)]
    pub byzantine: usize,
    /// The secure broadcast under AT2.
    #[arg(long, value_enum, default_value_t = BroadcastArg::Bracha)]
    pub broadcast: BroadcastArg,
    /// Transfers issued by the correct owners, all together, per run.
    #[arg(long, default_value_t = 20)]
    pub transfers: u64,
    /// Initial balance of every account.
    #[arg(long, default_value_t = 1000)]
    pub initial_balance: u64,
    /// Number of runs (seeds).
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub seed_start: u64,
    /// Network model: lan, ec2-byzcast, or a TOML file with a latency matrix.
    #[arg(long, default_value = "lan")]
    pub network: String,
    /// Contagion: the Byzantine fraction β its parameters are chosen for (F = ⌊βN⌋).
    #[arg(long, default_value_t = 0.1)]
    pub assumed_fraction: f64,
    /// Contagion: the per-broadcast failure probability ε they are chosen for.
    #[arg(long, default_value_t = 1e-6)]
    pub epsilon: f64,
    /// Contagion: explicit parameters G,E,Ê,R,R̂,D,D̂ (e.g. 6,20,13,15,5,20,12).
    #[arg(long)]
    pub contagion_params: Option<String>,
    /// Attacks each Byzantine owner makes, in order [default: double-spend,
    /// double-spend, fake-dependency, overdraft].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub attacks: Option<Vec<AttackArg>>,
    /// Cost model instead of real crypto (labelled in the output).
    #[arg(long)]
    pub modeled_crypto: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `byzscale sim at2-scale`.
#[derive(Args, Debug)]
pub struct At2ScaleArgs {
    /// Process counts for Bracha, comma-separated ("none" to skip).
    #[arg(long, default_value = "100,250,500,1000,2000")]
    pub bracha: String,
    /// Process counts for Contagion, comma-separated ("none" to skip).
    #[arg(long, default_value = "100,250,500,1000,2000,5000,10000")]
    pub contagion: String,
    /// Transfers (broadcasts) per run, by distinct owners, one after the other.
    #[arg(long, default_value_t = 2)]
    pub transfers: u64,
    /// Contagion parameters are selected per N for this Byzantine fraction...
    #[arg(long, default_value_t = 0.1)]
    pub assumed_fraction: f64,
    /// ...and this per-broadcast failure probability.
    #[arg(long, default_value_t = 1e-9)]
    pub epsilon: f64,
    #[arg(long, default_value = "lan")]
    pub network: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write `at2-scale.json` and `at2-scale.svg`.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Print the JSON report on stdout too.
    #[arg(long)]
    pub json: bool,
    /// Only redraw `<out>/at2-scale.svg` from an existing `at2-scale.json`.
    #[arg(long)]
    pub replot: bool,
}

/// `byzscale broadcast ...`.
#[derive(Subcommand, Debug)]
pub enum BroadcastCommand {
    /// Pick Contagion's G, E, Ê, R, R̂, D, D̂ for N processes, a Byzantine
    /// fraction and a per-broadcast failure probability (binomial-tail bounds).
    Params(ParamsArgs),
    /// Count failures of the probabilistic broadcast at a degraded operating
    /// point and compare with the analysis.
    Montecarlo(McArgs),
}

#[derive(Args, Debug)]
pub struct ParamsArgs {
    #[arg(long)]
    pub nodes: usize,
    #[arg(long, default_value_t = 0.1)]
    pub byzantine_fraction: f64,
    #[arg(long, default_value_t = 1e-9)]
    pub epsilon: f64,
    /// Analyze these parameters (G,E,Ê,R,R̂,D,D̂) instead of selecting.
    #[arg(long)]
    pub analyze: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct McArgs {
    #[arg(long, default_value_t = 100)]
    pub processes: usize,
    #[arg(long, default_value_t = 20)]
    pub byzantine: usize,
    /// G,E,Ê,R,R̂,D,D̂ [default: 6,40,30,30,18,20,11].
    #[arg(long)]
    pub params: Option<String>,
    /// Trials of each kind.
    #[arg(long, default_value_t = 200)]
    pub trials: u64,
    #[arg(long, default_value_t = 0)]
    pub seed_start: u64,
    #[arg(long)]
    pub json: bool,
}

fn parse_params(s: &str) -> Result<ContagionParams> {
    ContagionParams::parse(s).map_err(|e| anyhow::anyhow!("bad parameters {s:?}: {e}"))
}

/// The simulator configuration of `sim at2`.
pub fn at2_config(a: &At2Args) -> Result<At2SimConfig> {
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if !(a.assumed_fraction >= 0.0 && a.assumed_fraction < 1.0 / 3.0) {
        bail!(
            "--assumed-fraction must be in [0, 1/3), got {}",
            a.assumed_fraction
        );
    }
    if !(a.epsilon > 0.0 && a.epsilon < 1.0) {
        bail!("--epsilon must be in (0, 1), got {}", a.epsilon);
    }
    let mut cfg = At2SimConfig::new(a.processes, a.byzantine, a.broadcast.into());
    cfg.transfers = a.transfers;
    cfg.initial_balance = a.initial_balance;
    cfg.seeds = a.seeds;
    cfg.seed_start = a.seed_start;
    cfg.network = NetworkChoice::parse(&a.network)?;
    cfg.modeled_crypto = a.modeled_crypto;
    cfg.assumed_fraction = a.assumed_fraction;
    cfg.epsilon = a.epsilon;
    cfg.params = a
        .contagion_params
        .as_deref()
        .map(parse_params)
        .transpose()?;
    if let Some(attacks) = &a.attacks {
        cfg.attacks = attacks
            .iter()
            .map(|x| match x {
                AttackArg::DoubleSpend => Attack::DoubleSpend,
                AttackArg::FakeDependency => Attack::FakeDependency,
                AttackArg::Overdraft => Attack::Overdraft,
            })
            .collect();
    }
    cfg.command_line = std::env::args().collect::<Vec<_>>().join(" ");
    cfg.validate()?;
    Ok(cfg)
}

/// `byzscale sim at2`.
pub fn run_at2(a: At2Args) -> Result<()> {
    let cfg = at2_config(&a)?;
    let report = sim_at2::run_many(&cfg, |done, total| {
        if !a.json && total > 1 && done % 50 == 0 && done > 0 {
            eprintln!("  {done}/{total} seeds");
        }
    })
    .context("simulation failed")?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// `"100,250"` → [100, 250]; `""` or `"none"` → [].
fn sizes(s: &str) -> Result<Vec<usize>> {
    let s = s.trim();
    if s.is_empty() || s == "none" {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|x| {
            let n: usize = x
                .trim()
                .parse()
                .with_context(|| format!("bad process count {x:?}"))?;
            if n < 4 {
                bail!("process counts must be at least 4, got {n}");
            }
            Ok(n)
        })
        .collect()
}

/// `byzscale sim at2-scale`: runs, then writes `<out>/at2-scale.json` and
/// `<out>/at2-scale.svg`.
pub fn run_at2_scale(a: At2ScaleArgs) -> Result<()> {
    if a.replot {
        let jpath = a.out.join("at2-scale.json");
        let text = std::fs::read_to_string(&jpath)
            .with_context(|| format!("reading {}", jpath.display()))?;
        let report: ScaleReport =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", jpath.display()))?;
        let spath = a.out.join("at2-scale.svg");
        plot_scale(&report, &spath)?;
        eprintln!("wrote {}", spath.display());
        return Ok(());
    }
    if !(a.assumed_fraction >= 0.0 && a.assumed_fraction < 1.0 / 3.0) {
        bail!(
            "--assumed-fraction must be in [0, 1/3), got {}",
            a.assumed_fraction
        );
    }
    let bracha = sizes(&a.bracha).context("--bracha")?;
    let contagion = sizes(&a.contagion).context("--contagion")?;
    if bracha.is_empty() && contagion.is_empty() {
        bail!("nothing to run: give --bracha and/or --contagion sizes");
    }
    let cfg = ScaleConfig {
        transfers: a.transfers,
        network: NetworkChoice::parse(&a.network)?,
        assumed_fraction: a.assumed_fraction,
        epsilon: a.epsilon,
        seed: a.seed,
    };
    let mut runs: Vec<(BroadcastKind, usize)> =
        bracha.iter().map(|n| (BroadcastKind::Bracha, *n)).collect();
    runs.extend(contagion.iter().map(|n| (BroadcastKind::Contagion, *n)));
    let report = sim_at2::scale(&runs, &cfg, |p| {
        eprintln!(
            "  {:<9} N={:<6} {:>9.1} msgs/process/transfer {:>10.0} B   complete {}   {:.1} ms virtual   {:.1} s wall",
            p.broadcast,
            p.processes,
            p.messages_per_process_per_transfer,
            p.bytes_per_process_per_transfer,
            p.complete,
            p.virtual_ms,
            p.wall_seconds
        );
    })?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let json = serde_json::to_string_pretty(&report)?;
    let jpath = a.out.join("at2-scale.json");
    std::fs::write(&jpath, &json).with_context(|| format!("writing {}", jpath.display()))?;
    let spath = a.out.join("at2-scale.svg");
    plot_scale(&report, &spath)?;
    eprintln!("wrote {} and {}", jpath.display(), spath.display());
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Messages per process per transfer against N, log–log, one line per broadcast.
pub fn plot_scale(report: &ScaleReport, path: &Path) -> Result<()> {
    let series = |kind: &str| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = report
            .points
            .iter()
            .filter(|p: &&ScalePoint| p.broadcast == kind)
            .map(|p| {
                (
                    p.processes as f64,
                    p.messages_per_process_per_transfer.max(1.0),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let lines: Vec<plot::Series> = [
        ("Bracha (O(N))", series("bracha")),
        ("Contagion (O(log N))", series("contagion")),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(name, v)| (name.to_string(), v))
    .collect();
    let all: Vec<&(f64, f64)> = lines.iter().flat_map(|l| l.1.iter()).collect();
    if all.is_empty() {
        bail!("no points to plot");
    }
    let (xmin, xmax) = all
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ymin, ymax) = all
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let title = format!(
        "AT2 messages sent per process per transfer (β = {}, ε = {:e}, {} network)",
        report.assumed_fraction, report.epsilon, report.network
    );
    let axes = plot::Axes {
        title: &title,
        x_desc: "processes N",
        y_desc: "messages per process per transfer",
        x_range: xmin * 0.8..xmax * 1.25,
        y_range: ymin * 0.5..ymax * 2.0,
        markers: true,
    };
    plot::log_log_chart(path, axes, &lines)
}

/// `byzscale broadcast ...`.
pub fn run_broadcast(cmd: BroadcastCommand) -> Result<()> {
    match cmd {
        BroadcastCommand::Params(a) => run_params(a),
        BroadcastCommand::Montecarlo(a) => run_montecarlo(a),
    }
}

fn run_params(a: ParamsArgs) -> Result<()> {
    let sel = match &a.analyze {
        Some(s) => {
            let p = parse_params(s)?;
            if a.nodes < 2 {
                bail!("--nodes must be at least 2");
            }
            let b = (a.byzantine_fraction * a.nodes as f64).floor() as usize;
            params::Selection {
                nodes: a.nodes,
                byzantine_fraction: a.byzantine_fraction,
                target_epsilon: a.epsilon,
                analysis: params::analyze(a.nodes, b, &p),
                params: p,
            }
        }
        None => params::select(a.nodes, a.byzantine_fraction, a.epsilon)?,
    };
    if a.json {
        println!("{}", serde_json::to_string(&sel)?);
        return Ok(());
    }
    let p = &sel.params;
    let an = &sel.analysis;
    println!(
        "contagion parameters for N={} (β={}, {} Byzantine), target ε={:e}",
        sel.nodes, sel.byzantine_fraction, an.byzantine, sel.target_epsilon
    );
    println!(
        "  G={}  E={} Ê={}  R={} R̂={}  D={} D̂={}   (--contagion-params {p})",
        p.g, p.e, p.e_hat, p.r, p.r_hat, p.d, p.d_hat
    );
    println!("  per-broadcast failure bounds:");
    for (name, v) in [
        ("gossip disconnected", an.gossip_disconnected),
        ("sieve validity", an.sieve_validity),
        ("sieve consistency", an.sieve_consistency),
        ("contagion consistency", an.contagion_consistency),
        ("contagion validity", an.contagion_validity),
        ("contagion totality (mean-field)", an.contagion_totality),
    ] {
        println!("    {name:<32} {v:.3e}");
    }
    println!("    {:<32} {:.3e}", "total ε", an.epsilon);
    Ok(())
}

fn run_montecarlo(a: McArgs) -> Result<()> {
    let mut cfg = McConfig::degraded();
    cfg.processes = a.processes;
    cfg.byzantine = a.byzantine;
    cfg.trials = a.trials;
    cfg.seed_start = a.seed_start;
    if let Some(p) = &a.params {
        cfg.params = parse_params(p)?;
    }
    let r = sim_at2::monte_carlo(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "monte carlo: N={} with {} Byzantine, parameters {} ({} trials each, {})",
        r.processes, r.byzantine, r.params, r.validity.trials, r.scheduling
    );
    for (name, m) in [
        ("validity", &r.validity),
        ("consistency", &r.consistency),
        ("totality", &r.totality),
    ] {
        println!(
            "  {name:<12} observed {:.4} ± {:.4} ({} failures)   analytic {:.4}  [{}]",
            m.observed, m.margin, m.failures, m.analytic, m.what
        );
    }
    println!("  {:.1} s wall", r.wall_seconds);
    Ok(())
}
