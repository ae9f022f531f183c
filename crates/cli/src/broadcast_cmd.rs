//! The broadcast commands:
//!
//! - `byzscale broadcast params ...`: Contagion parameters from (N, β, ε);
//! - `byzscale broadcast montecarlo ...`: observed failure rates at a degraded
//!   operating point against the analysis ([`BroadcastCommand`], [`run_broadcast`]).

use anyhow::{bail, Result};
use byzscale_broadcast::probabilistic::params::{self, ContagionParams};
use byzscale_node::{At2Broadcast, At2Settings};
use byzscale_scenario_broadcast::montecarlo::{self, McConfig};
use clap::{Args, Subcommand};

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

/// Contagion's parameters on the command line, shared by `sim at2` and
/// `cluster --protocol at2 --broadcast contagion`.
#[derive(Args, Debug, Clone)]
pub struct ContagionArgs {
    /// Contagion: the Byzantine fraction β its parameters are chosen for (F = ⌊βN⌋).
    #[arg(long, default_value_t = 0.1)]
    pub assumed_fraction: f64,
    /// Contagion: the per-broadcast failure probability ε they are chosen for.
    #[arg(long, default_value_t = 1e-6)]
    pub epsilon: f64,
    /// Contagion: explicit parameters G,E,Ê,R,R̂,D,D̂ (e.g. 6,20,13,15,5,20,12).
    #[arg(long)]
    pub contagion_params: Option<String>,
}

/// The secure broadcast of real AT2 nodes, shared by `cluster --protocol at2`
/// and `bench-at2`.
#[derive(Args, Debug, Clone)]
pub struct At2BroadcastArgs {
    /// The secure broadcast under AT2: bracha or contagion.
    #[arg(long, default_value = "bracha", value_parser = crate::sim_cmd::named(At2Broadcast::NAMES, At2Broadcast::from_name))]
    pub broadcast: At2Broadcast,
    #[command(flatten)]
    pub contagion: ContagionArgs,
}

impl At2BroadcastArgs {
    /// The `[at2]` section of the node files: the defaults with the
    /// broadcast flags (Contagion's only when it is chosen).
    pub fn settings(&self) -> At2Settings {
        let (on, c) = (self.broadcast == At2Broadcast::Contagion, &self.contagion);
        At2Settings {
            broadcast: self.broadcast,
            contagion_params: c.contagion_params.clone().filter(|_| on),
            assumed_fraction: on.then_some(c.assumed_fraction),
            epsilon: on.then_some(c.epsilon),
            ..At2Settings::default()
        }
    }
}

pub fn parse_params(s: &str) -> Result<ContagionParams> {
    ContagionParams::parse(s).map_err(|e| anyhow::anyhow!("bad parameters {s:?}: {e}"))
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
    let r = montecarlo::monte_carlo(&cfg)?;
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
