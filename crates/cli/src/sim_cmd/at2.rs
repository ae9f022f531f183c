//! The AT2 simulator commands:
//!
//! - `byzscale sim at2 ...`: AT2 over Bracha or Contagion with Byzantine owners
//!   and checkers ([`At2Args`], [`run_at2`]);
//! - `byzscale sim at2-scale ...`: messages per process against N, JSON and an
//!   SVG figure ([`At2ScaleArgs`], [`run_at2_scale`]).

use crate::broadcast_cmd::{parse_params, ContagionArgs};
use crate::plot;
use anyhow::{bail, Context, Result};
use byzscale_scenario_at2::scale::{self, ScaleConfig, ScalePoint, ScaleReport};
use byzscale_scenario_at2::{Attack, BroadcastKind, Config, OverBracha, OverContagion};
use byzscale_sim::net_model::NetworkChoice;
use clap::Args;
use std::path::{Path, PathBuf};

/// `byzscale sim at2`.
#[derive(Args, Debug)]
pub struct At2Args {
    /// Number of processes N (each correct one serves one client, which owns one account).
    #[arg(long, default_value_t = 10)]
    pub processes: usize,
    /// How many processes are Byzantine (K). K > F is allowed on purpose: the
    /// checkers then catch the violations.
    #[arg(long, default_value_t = 0)]
    pub byzantine: usize,
    /// The secure broadcast under AT2.
    #[arg(long, default_value = "bracha", value_parser = super::named(BroadcastKind::NAMES, BroadcastKind::from_name))]
    pub broadcast: BroadcastKind,
    /// Transfers issued by the correct clients, all together, per run.
    #[arg(long, default_value_t = 20)]
    pub transfers: u64,
    /// Initial balance of every account.
    #[arg(long, default_value_t = 1000)]
    pub initial_balance: u64,
    #[command(flatten)]
    pub contagion: ContagionArgs,
    /// Attacks each Byzantine node makes, in order [default: double-spend,
    /// double-spend, fake-dependency, overdraft, forgery].
    #[arg(long, value_delimiter = ',', value_parser = super::named(Attack::NAMES, Attack::from_name))]
    pub attacks: Option<Vec<Attack>>,
    /// Byzantine clients that each hand two correct nodes two transfers with
    /// sequence number 1 at the same moment.
    #[arg(long, default_value_t = 2)]
    pub double_spenders: usize,
    #[command(flatten)]
    pub run: super::RunArgs,
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

/// The simulator configuration of `sim at2`.
pub fn at2_config(a: &At2Args) -> Result<Config> {
    let c = &a.contagion;
    if !(c.assumed_fraction >= 0.0 && c.assumed_fraction < 1.0 / 3.0) {
        bail!(
            "--assumed-fraction must be in [0, 1/3), got {}",
            c.assumed_fraction
        );
    }
    if !(c.epsilon > 0.0 && c.epsilon < 1.0) {
        bail!("--epsilon must be in (0, 1), got {}", c.epsilon);
    }
    let mut cfg = Config::new(a.processes, a.byzantine, a.broadcast);
    cfg.transfers = a.transfers;
    cfg.initial_balance = a.initial_balance;
    cfg.seeds = a.run.seeds;
    cfg.seed_start = a.run.seed_start;
    cfg.network = a.run.network()?;
    cfg.modeled_crypto = a.run.modeled_crypto;
    cfg.assumed_fraction = c.assumed_fraction;
    cfg.epsilon = c.epsilon;
    cfg.params = c
        .contagion_params
        .as_deref()
        .map(parse_params)
        .transpose()?;
    cfg.double_spenders = a.double_spenders;
    if let Some(attacks) = &a.attacks {
        cfg.attacks = attacks.clone();
    }
    cfg.command_line = std::env::args().collect::<Vec<_>>().join(" ");
    cfg.validate()?;
    Ok(cfg)
}

/// `byzscale sim at2`.
pub fn run_at2(a: At2Args) -> Result<()> {
    let cfg = at2_config(&a)?;
    match cfg.broadcast {
        BroadcastKind::Bracha => super::run_scenario(&OverBracha::new(cfg), a.run.json),
        BroadcastKind::Contagion => super::run_scenario(&OverContagion::new(cfg), a.run.json),
    }
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
    let report = scale::scale(&runs, &cfg, |p| {
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
