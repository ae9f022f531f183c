//! `byzscale sim smr`: the flags of the SMR scenario
//! ([`byzscale_scenario_smr`]).

use anyhow::{bail, Result};
use byzscale_scenario_smr::{Adversary, Config};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SmrArgs {
    /// Number of replicas N.
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Faults tolerated F [default: (N-1)/3, or (N-1-delta)/3 with --delta].
    #[arg(long)]
    pub faulty: Option<usize>,
    /// WHEAT extra replicas Δ (N = 3F+1+Δ; 2F replicas get V_max = 1+Δ/F).
    #[arg(long, default_value_t = 0)]
    pub delta: usize,
    /// Crash fault tolerance mode (N = 2F+1+Δ, no WRITE phase).
    #[arg(long)]
    pub cft: bool,
    /// Byzantine behaviour of the faulty replicas.
    #[arg(long, default_value = "none", value_parser = super::named(Adversary::NAMES, Adversary::from_name))]
    pub byzantine: Adversary,
    /// How many replicas misbehave [default: F]. K > F is allowed on purpose: it
    /// shows the checkers catching violations.
    #[arg(long)]
    pub byzantine_count: Option<usize>,
    /// Client requests per run (all clients together).
    #[arg(long, default_value_t = 200)]
    pub requests: u64,
    /// Closed-loop clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Byzantine clients besides the honest ones: the i-th sends partial
    /// authenticators, huge operations, one request per fresh client id
    /// (churn), or floods of requests ahead of their turn (i mod 4).
    #[arg(long, default_value_t = 0)]
    pub byzantine_clients: usize,
    /// Slots after which an idle client's entry expires at the replicas
    /// and the session floor rises past it (small, so that a run exercises
    /// expiry; the library's default is 2^20).
    #[arg(long, default_value_t = byzscale_scenario_smr::CLIENT_EXPIRY_SLOTS)]
    pub client_expiry_slots: u64,
    /// Fraction of operations sent on the unordered read-only path.
    #[arg(long, default_value_t = 0.2)]
    pub read_ratio: f64,
    /// Mix WATCH and MULTI/EXEC transactions into the workload.
    #[arg(long)]
    pub transactions: bool,
    /// Mix operations on expiring keys into the workload (SET PX/EX,
    /// PEXPIRE/EXPIRE with NX/XX/GT/LT, PERSIST, GETEX, PTTL/TTL, GET; TTLs of
    /// 1-5 ms) and check them at the batch times the replicas ran them at.
    #[arg(long)]
    pub expiry: bool,
    /// WHEAT tentative execution: replicas also reply once a slot is
    /// prepared, and clients take a quorum of matching tentative replies.
    #[arg(long)]
    pub tentative: bool,
    /// WHEAT's leader at the best-connected replica: view 0's leader (and
    /// with --delta the V_max holders) as AWARE's predictor places them on
    /// the network's latency matrix.
    #[arg(long)]
    pub best_leader: bool,
    /// No loss, duplication or reordering at the start (latency figures).
    #[arg(long)]
    pub calm: bool,
    /// Crash the initial leader at this virtual time (milliseconds).
    #[arg(long)]
    pub crash_leader_at: Option<f64>,
    /// Write decide/complete events as JSON lines to this file.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    #[command(flatten)]
    pub restart: super::RestartArgs,
    #[command(flatten)]
    pub run: super::RunArgs,
}

pub fn run(a: SmrArgs) -> Result<()> {
    super::run_scenario(&smr_config(&a)?, a.run.json)
}

pub fn smr_config(a: &SmrArgs) -> Result<Config> {
    if a.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    if a.replicas > 100 {
        bail!(
            "--replicas {} is more than the 100 a group supports",
            a.replicas
        );
    }
    let base = if a.cft { 2 } else { 3 };
    let f = match a.faulty {
        Some(f) => f,
        None => a.replicas.saturating_sub(1 + a.delta) / base,
    };
    if a.delta > 0 && f == 0 {
        bail!("--delta needs --faulty of at least 1 (V_max = 1 + Δ/F)");
    }
    let need = base * f + 1 + a.delta;
    if a.replicas != need {
        bail!(
            "--replicas {} does not fit --faulty {f} and --delta {}: {} mode needs N = {}F+1+Δ = {need}",
            a.replicas,
            a.delta,
            if a.cft { "CFT" } else { "BFT" },
            base
        );
    }
    let k = a.byzantine_count.unwrap_or(f);
    if k > a.replicas {
        bail!(
            "--byzantine-count {k} is larger than --replicas {}",
            a.replicas
        );
    }
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(0.0..=1.0).contains(&a.read_ratio) {
        bail!("--read-ratio must be between 0 and 1, got {}", a.read_ratio);
    }
    if let Some(t) = a.crash_leader_at {
        if !(t >= 0.0 && t.is_finite()) {
            bail!("--crash-leader-at must be a non-negative number of milliseconds");
        }
    }
    let adversary = a.byzantine;
    let network = a.run.network()?;
    Ok(Config {
        replicas: a.replicas,
        f,
        delta: a.delta,
        cft: a.cft,
        adversary,
        byzantine_count: if matches!(adversary, Adversary::None) {
            0
        } else {
            k
        },
        seeds: a.run.seeds,
        seed_start: a.run.seed_start,
        requests: a.requests,
        clients: a.clients,
        read_ratio: a.read_ratio,
        network,
        crash_leader_at_ms: a.crash_leader_at,
        crash_restart: a.restart.crash_restart,
        modeled_crypto: a.run.modeled_crypto,
        trace: a.trace.clone(),
        byzantine_clients: a.byzantine_clients,
        client_expiry_slots: a.client_expiry_slots,
        transactions: a.transactions,
        expiry: a.expiry,
        tentative: a.tentative,
        best_leader: a.best_leader,
        calm: a.calm,
    })
}
