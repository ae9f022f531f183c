//! The overlay-tree commands: `byzscale tree optimize|evaluate|check`
//! ([`run_tree`]).

use anyhow::{anyhow, Context, Result};
use byzscale_byzcast::optimizer::{self, Method, Workload};
use byzscale_byzcast::{Tree, TreeSpec};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum TreeCommand {
    /// Choose the overlay tree minimizing Σ H(T, d) subject to L(T, x) ≤ K(x)
    /// (seed 000 §III-C): exact for small instances, a heuristic beyond.
    Optimize(OptimizeArgs),
    /// Score a given tree against a workload (objective, loads, overloads).
    Evaluate(EvaluateArgs),
    /// Validate a tree file (a tree, not a cycle, a DAG or a forest).
    Check(CheckArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    Auto,
    Exact,
    Heuristic,
}

#[derive(Args, Debug)]
pub struct OptimizeArgs {
    /// Workload file (TOML): targets, auxiliary, capacity, [capacities], [[flow]] dst/rate.
    #[arg(long)]
    pub workload: PathBuf,
    /// Search method (auto = exact up to 8 groups).
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    pub method: MethodArg,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    #[arg(long)]
    pub workload: PathBuf,
    /// Tree file (TOML `targets`/`auxiliary`/`[tree]`, or the JSON of `tree optimize`).
    #[arg(long)]
    pub tree: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Tree file (TOML or JSON).
    pub tree: PathBuf,
}

fn read_workload(p: &Path) -> Result<Workload> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading workload {}", p.display()))?;
    Workload::from_toml(&text).with_context(|| format!("workload {}", p.display()))
}

fn read_tree(p: &Path) -> Result<TreeSpec> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading tree {}", p.display()))?;
    if p.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("tree {}", p.display()))
    } else {
        TreeSpec::from_toml(&text).map_err(|e| anyhow!("tree {}: {e}", p.display()))
    }
}

fn print_evaluation(e: &optimizer::Evaluation) {
    println!("tree {}   (root {})", e.describe, e.root);
    println!(
        "objective Σ H(T,d) = {}   {}",
        e.objective,
        if e.feasible { "feasible" } else { "INFEASIBLE" }
    );
    for f in &e.flows {
        println!(
            "  {:<16} {:>9.0} msg/s   lca {:<4} H = {}",
            f.dst.join(","),
            f.rate,
            f.lca,
            f.height
        );
    }
    println!("loads (msg/s):");
    for (g, l) in &e.loads {
        println!("  {g:<6} {l:>9.0}");
    }
    for o in &e.overloaded {
        println!(
            "  overloaded: {} carries {:.0} > capacity {:.0}",
            o.group, o.load, o.capacity
        );
    }
}

pub fn run_tree(cmd: TreeCommand) -> Result<()> {
    match cmd {
        TreeCommand::Optimize(a) => {
            let w = read_workload(&a.workload)?;
            let method = match a.method {
                MethodArg::Auto => Method::Auto,
                MethodArg::Exact => Method::Exact,
                MethodArg::Heuristic => Method::Heuristic,
            };
            let sol = optimizer::optimize(&w, method).context("optimizing")?;
            if a.json {
                println!("{}", serde_json::to_string(&sol)?);
            } else {
                println!(
                    "method {} ({} trees evaluated)",
                    sol.method, sol.trees_evaluated
                );
                print_evaluation(&sol.best);
                if !sol.unused_auxiliary.is_empty() {
                    println!(
                        "unused auxiliary groups: {}",
                        sol.unused_auxiliary.join(", ")
                    );
                }
                if let Some(t2) = &sol.two_level {
                    println!(
                        "for comparison, the two-level tree {}: objective {}, root load {:.0}{}",
                        t2.describe,
                        t2.objective,
                        t2.loads.get(&t2.root).copied().unwrap_or(0.0),
                        if t2.feasible { "" } else { " (infeasible)" }
                    );
                }
            }
            if !sol.best.feasible {
                eprintln!("warning: no tree respects every capacity; this one minimizes the total overload");
            }
            Ok(())
        }
        TreeCommand::Evaluate(a) => {
            let w = read_workload(&a.workload)?;
            let spec = read_tree(&a.tree)?;
            let e = optimizer::evaluate(&w, &spec)?;
            if a.json {
                println!("{}", serde_json::to_string(&e)?);
            } else {
                print_evaluation(&e);
            }
            Ok(())
        }
        TreeCommand::Check(a) => {
            let spec = read_tree(&a.tree)?;
            let t = Tree::from_spec(&spec).map_err(|e| anyhow!("{}: {e}", a.tree.display()))?;
            println!("ok: {}", t.describe());
            for g in t.groups() {
                let reach: Vec<&str> = t.reach(g).iter().map(|x| t.name(*x)).collect();
                println!(
                    "  {:<6} {:<9} height {}  reach {{{}}}",
                    t.name(g),
                    if t.is_target(g) {
                        "target"
                    } else {
                        "auxiliary"
                    },
                    t.height(g),
                    reach.join(", ")
                );
            }
            Ok(())
        }
    }
}
