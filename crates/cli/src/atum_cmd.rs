//! The Atum commands:
//!
//! - `byzscale atum params --nodes N --hc HC`: the thesis' Fig. 5.4
//!   guideline (the smallest random-walk length whose endpoints Pearson's χ²
//!   test at 0.99 cannot tell from uniform, `byzscale_atum::params`) and the
//!   probability that every vgroup is robust for a faulty fraction.

use anyhow::{bail, Result};
use byzscale_atum::params::{all_robust, smallest_rwl, vgroup_failure, Synchrony, UniformityTest};
use clap::{Args, Subcommand};
use serde::Serialize;

/// `byzscale atum ...`.
#[derive(Subcommand, Debug)]
pub enum AtumCommand {
    /// The walk length for a system size and H-graph density, and how likely
    /// every vgroup is robust.
    Params(ParamsArgs),
}

#[derive(Args, Debug)]
pub struct ParamsArgs {
    /// Nodes in the system.
    #[arg(long)]
    pub nodes: u64,
    /// Hamiltonian cycles of the H-graph.
    #[arg(long)]
    pub hc: usize,
    /// Members per vgroup (the thesis' experiment: 800 nodes in about 120
    /// vgroups, so about 7).
    #[arg(long, default_value_t = 7)]
    pub group_size: u64,
    /// Vgroups, instead of nodes / group size.
    #[arg(long)]
    pub vgroups: Option<usize>,
    /// Faulty fraction of the nodes, for the robustness figures.
    #[arg(long, default_value_t = 0.05)]
    pub faulty: f64,
    /// Independent H-graphs whose χ² statistics are pooled.
    #[arg(long, default_value_t = UniformityTest::default().trials)]
    pub trials: usize,
    /// Walks sampled per vgroup and per graph.
    #[arg(long, default_value_t = UniformityTest::default().walks_per_vgroup)]
    pub walks_per_vgroup: usize,
    /// The longest walk tried.
    #[arg(long, default_value_t = 40)]
    pub max_rwl: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Robustness {
    synchrony: Synchrony,
    f: u64,
    vgroup_failure: f64,
    all_robust: f64,
}

/// `byzscale atum ...`.
pub fn run_atum(cmd: AtumCommand) -> Result<()> {
    match cmd {
        AtumCommand::Params(a) => params(a),
    }
}

fn params(a: ParamsArgs) -> Result<()> {
    if a.group_size == 0 || a.nodes < a.group_size {
        bail!(
            "--nodes {} must be at least --group-size {} (and the group size at least 1)",
            a.nodes,
            a.group_size
        );
    }
    let v = a.vgroups.unwrap_or(a.nodes.div_ceil(a.group_size) as usize);
    let test = UniformityTest {
        trials: a.trials,
        walks_per_vgroup: a.walks_per_vgroup,
        ..UniformityTest::default()
    };
    let (rwl, tried) = smallest_rwl(v, a.hc, a.max_rwl, &test, a.seed)?;
    let robust = [Synchrony::Sync, Synchrony::Async]
        .into_iter()
        .map(|s| {
            Ok(Robustness {
                synchrony: s,
                f: s.f(a.group_size),
                vgroup_failure: vgroup_failure(a.group_size, a.faulty, s)?,
                all_robust: all_robust(v as u64, a.group_size, a.faulty, s)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if a.json {
        let out = serde_json::json!({
            "nodes": a.nodes, "vgroups": v, "group_size": a.group_size, "hc": a.hc,
            "rwl": rwl, "confidence": test.confidence, "trials": test.trials,
            "walks_per_vgroup": test.walks_per_vgroup, "seed": a.seed, "tests": tried,
            "faulty": a.faulty, "robustness": robust,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "Atum parameters: {} nodes in {v} vgroups of {}, hc = {}",
        a.nodes, a.group_size, a.hc
    );
    println!(
        "χ² of walk endpoints against uniform ({} graphs × {} walks per vgroup, 0.99):",
        test.trials, test.walks_per_vgroup
    );
    println!(
        "{:>5} {:>14} {:>12} {:>10}",
        "rwl", "statistic", "critical", "p"
    );
    for t in &tried {
        println!(
            "{:>5} {:>14.1} {:>12.1} {:>10.3e}",
            t.rwl, t.statistic, t.critical, t.p_value
        );
    }
    match rwl {
        Some(r) => println!("rwl = {r}"),
        None => println!("no rwl up to {} passes: raise --max-rwl or --hc", a.max_rwl),
    }
    println!("robustness with {} faulty:", a.faulty);
    for r in robust {
        println!(
            "  {:?} (f = {}): a vgroup fails with {:.4e}, all {v} robust with {:.6}",
            r.synchrony, r.f, r.vgroup_failure, r.all_robust
        );
    }
    Ok(())
}
