//! `byzscale sim ...`: the simulator front-end. One file per protocol turns
//! its flags into its scenario's configuration ([`smr`], [`at2`],
//! [`byzcast`], [`steward`]); [`run_scenario`] runs any scenario's seeds and prints its
//! report.

pub mod at2;
pub mod byzcast;
pub mod smr;
pub mod steward;
pub mod wheat;

use anyhow::{bail, Context, Result};
use byzscale_sim::net_model::NetworkChoice;
use byzscale_sim::scenario::{self, Report, Scenario};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum SimCommand {
    /// BFT state machine replication (BFT-SMaRt / PBFT style, WHEAT weights).
    Smr(smr::SmrArgs),
    /// AT2 asset transfer over Bracha or Contagion, with Byzantine owners.
    At2(at2::At2Args),
    /// AT2 messages per process against N (JSON + SVG under bench/results).
    At2Scale(at2::At2ScaleArgs),
    /// ByzCast atomic multicast over a tree of groups, or the naive baseline.
    Byzcast(byzcast::ByzcastArgs),
    /// ByzCast figures (JSON + SVG): throughput vs groups, latency CDF, WAN comparison.
    ByzcastScale(byzcast::ByzcastScaleArgs),
    /// Steward: hierarchical BFT over WAN sites, or flat BFT on the same WAN.
    Steward(steward::StewardArgs),
    /// WHEAT benchmark (JSON + SVG): n = 4 against Δ = 1, tentative execution
    /// and the best-connected leader on and off, client latency p50/p90.
    Wheat(wheat::WheatArgs),
}

pub fn run(cmd: SimCommand) -> Result<()> {
    match cmd {
        SimCommand::Smr(a) => smr::run(a),
        SimCommand::At2(a) => at2::run_at2(a),
        SimCommand::At2Scale(a) => at2::run_at2_scale(a),
        SimCommand::Byzcast(a) => byzcast::run_sim_byzcast(a),
        SimCommand::ByzcastScale(a) => byzcast::run_sim_byzcast_scale(a),
        SimCommand::Steward(a) => steward::run(a),
        SimCommand::Wheat(a) => wheat::run(a),
    }
}

/// Run every seed of `s` on all cores, with a seed count on stderr for long
/// sweeps, and print its report: one JSON object with `json`, else a table.
pub fn run_scenario<S: Scenario>(s: &S, json: bool) -> Result<()> {
    let report = scenario::run_many(s, |done, total| {
        if !json && total > 1 && done % 50 == 0 && done > 0 {
            eprintln!("  {done}/{total} seeds");
        }
    })
    .context("simulation failed")?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// A flag's value named by one of `names` (listed in `--help`), parsed with
/// `from` (which knows every name in `names`).
pub fn named<T: Clone + Send + Sync + 'static>(
    names: impl IntoIterator<Item = &'static str>,
    from: fn(&str) -> Option<T>,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(names).map(move |s| from(&s).expect("a possible value"))
}

/// The flags every scenario command shares: which seeds, which network, which
/// crypto, which output.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Number of runs (seeds).
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub seed_start: u64,
    /// Network model: lan, ec2-byzcast, aware5, or a TOML file with a latency matrix.
    #[arg(long, default_value = "lan")]
    pub network: String,
    /// Cost model instead of real crypto (for scale runs; labelled in the output).
    #[arg(long)]
    pub modeled_crypto: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The crash-restart flag of the scenarios whose replicas keep their
/// records on disk (`sim smr`, `sim byzcast`).
#[derive(Args, Debug)]
pub struct RestartArgs {
    /// Crash and restart correct replicas from their modeled disks on a
    /// schedule drawn from the seed: up to F of a group at once, or a whole
    /// group (always on with `--byzantine mixed`).
    #[arg(long)]
    pub crash_restart: bool,
}

impl RunArgs {
    /// The network, checked now; an error if `--seeds` is 0.
    pub fn network(&self) -> Result<NetworkChoice> {
        if self.seeds == 0 {
            bail!("--seeds must be at least 1");
        }
        Ok(NetworkChoice::parse(&self.network)?)
    }
}
