//! The AWARE commands:
//!
//! - `byzscale aware predict --matrix FILE [--delta D | --all-deltas]`: for
//!   each Δ, f = (n − 1 − Δ)/3, the best leader and V_max set of AWARE's
//!   search and the consensus latency its model predicts (`byzscale_aware`),
//!   comparable with the authors' published outputs on `cloudping-21.csv`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use byzscale_aware::{best, Matrix, Params, Search};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

/// `byzscale aware ...`.
#[derive(Subcommand, Debug)]
pub enum AwareCommand {
    /// Predict the best ⟨leader, V_max set⟩ and its consensus latency for a
    /// latency matrix (comma-separated milliseconds, row = sender, no header).
    Predict(PredictArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SearchArg {
    /// Exhaustive up to 10 replicas, simulated annealing above (the controller's rule).
    Auto,
    /// Every ⟨V_max set, leader⟩ (slow above about 15 replicas).
    Exhaustive,
    /// Simulated annealing with java.util.Random(--seed).
    Annealing,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[arg(long)]
    pub matrix: PathBuf,
    /// Spare replicas Δ (f = (n − 1 − Δ) / 3).
    #[arg(long, conflicts_with = "all_deltas")]
    pub delta: Option<usize>,
    /// Every Δ from 0 while f ≥ 1 (the authors' table).
    #[arg(long)]
    pub all_deltas: bool,
    #[arg(long, value_enum, default_value_t = SearchArg::Auto)]
    pub search: SearchArg,
    /// The annealing's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    delta: usize,
    f: usize,
    leader: usize,
    vmax_set: Vec<usize>,
    vmax: f64,
    /// The model's unit is 0.01 ms.
    latency_ms: f64,
    method: &'static str,
    evaluated: u64,
}

/// `byzscale aware ...`.
pub fn run_aware(cmd: AwareCommand) -> Result<()> {
    match cmd {
        AwareCommand::Predict(a) => predict(a),
    }
}

fn predict(a: PredictArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.matrix)
        .with_context(|| format!("reading {}", a.matrix.display()))?;
    let m = Matrix::parse_ms(&text).with_context(|| format!("{}", a.matrix.display()))?;
    let n = m.n();
    let deltas: Vec<usize> = match (a.delta, a.all_deltas) {
        (Some(d), _) => vec![d],
        (None, true) => (0..n).take_while(|d| Params::bft(n, *d).is_ok()).collect(),
        (None, false) => bail!("give --delta D or --all-deltas"),
    };
    let how = match a.search {
        SearchArg::Auto => Search::Auto,
        SearchArg::Exhaustive => Search::Exhaustive,
        SearchArg::Annealing => Search::Anneal(a.seed),
    };
    let mut rows = Vec::new();
    for delta in deltas {
        let p = Params::bft(n, delta)?;
        let found = best(&m, &p, how)?;
        rows.push(Row {
            delta,
            f: p.f,
            leader: found.config.leader,
            vmax_set: found.config.rmax.clone(),
            vmax: p.vmax(),
            latency_ms: found.latency as f64 / 100.0,
            method: found.method,
            evaluated: found.evaluated,
        });
    }
    if a.json {
        let out = serde_json::json!({
            "matrix": a.matrix.display().to_string(), "n": n, "rows": rows,
        });
        println!("{out}");
        return Ok(());
    }
    println!("AWARE prediction for {} (n = {n}, BFT)", a.matrix.display());
    println!(
        "{:>3} {:>2} {:>6}  {:<40} {:>10}  search",
        "Δ", "f", "leader", "V_max set", "latency"
    );
    for r in rows {
        let set: Vec<String> = r.vmax_set.iter().map(|i| i.to_string()).collect();
        println!(
            "{:>3} {:>2} {:>6}  {:<40} {:>7.2} ms  {} ({} evaluated)",
            r.delta,
            r.f,
            r.leader,
            set.join(" "),
            r.latency_ms,
            r.method,
            r.evaluated
        );
    }
    Ok(())
}
