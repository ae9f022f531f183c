//! The DQBFT commands:
//!
//! - `byzscale dqbft formulas [--payload B] [--state B] [--bandwidth-gbps G]
//!   [--replicas N,N,...]`: the paper's Figure 2 (messages per batch and
//!   maximum throughput of PBFT, Hybster, DQPBFT and Destiny) evaluated as in
//!   its Figure 3 (`byzscale_dqbft::formulas`), the reference the simulator's
//!   throughput is to match.

use anyhow::{bail, Result};
use byzscale_dqbft::formulas::{Proto, Setting};
use clap::{Args, Subcommand};
use serde::Serialize;

/// `byzscale dqbft ...`.
#[derive(Subcommand, Debug)]
pub enum DqbftCommand {
    /// Figure 2's messages and maximum throughput per protocol, for each N.
    Formulas(FormulasArgs),
}

#[derive(Args, Debug)]
pub struct FormulasArgs {
    /// Payload message (batch) bytes (Fig. 3: 5120 and 102400).
    #[arg(long, default_value_t = 5120.0)]
    pub payload: f64,
    /// State message bytes.
    #[arg(long, default_value_t = 250.0)]
    pub state: f64,
    /// Each replica's bandwidth in Gbit/s.
    #[arg(long, default_value_t = 1.0)]
    pub bandwidth_gbps: f64,
    /// System sizes.
    #[arg(long, value_delimiter = ',', default_value = "19,49,97,193,301")]
    pub replicas: Vec<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Column {
    protocol: Proto,
    messages: u64,
    batches_per_s: f64,
    phases: &'static str,
}

#[derive(Serialize)]
struct Row {
    n: u64,
    single_primary: f64,
    concurrent_max_bft: f64,
    concurrent_max_hybrid: f64,
    protocols: Vec<Column>,
}

/// `byzscale dqbft ...`.
pub fn run_dqbft(cmd: DqbftCommand) -> Result<()> {
    match cmd {
        DqbftCommand::Formulas(a) => formulas(a),
    }
}

fn formulas(a: FormulasArgs) -> Result<()> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !(positive(a.payload) && a.state.is_finite() && a.state >= 0.0) {
        bail!("--payload must be positive and --state non-negative (bytes)");
    }
    if !positive(a.bandwidth_gbps) {
        bail!("--bandwidth-gbps must be positive");
    }
    if let Some(n) = a.replicas.iter().find(|n| **n < 3) {
        bail!("--replicas {n}: every size must be at least 3");
    }
    let rows: Vec<Row> = a
        .replicas
        .iter()
        .map(|&n| {
            let s = Setting {
                n,
                bandwidth: a.bandwidth_gbps * 1.25e8,
                pm: a.payload,
                sm: a.state,
            };
            Row {
                n,
                single_primary: s.single_primary(),
                concurrent_max_bft: s.concurrent_max(false),
                concurrent_max_hybrid: s.concurrent_max(true),
                protocols: Proto::ALL
                    .iter()
                    .map(|&p| Column {
                        protocol: p,
                        messages: p.messages(n),
                        batches_per_s: p.throughput(&s),
                        phases: p.phases(),
                    })
                    .collect(),
            }
        })
        .collect();
    if a.json {
        let out = serde_json::json!({
            "payload": a.payload, "state": a.state, "bandwidth_gbps": a.bandwidth_gbps,
            "rows": rows,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "Figure 2 at pm = {} B, sm = {} B, B = {} Gbit/s: batches/s (messages per batch)",
        a.payload, a.state, a.bandwidth_gbps
    );
    println!(
        "{:>5} {:>8} {:>16} {:>16} {:>20} {:>16} {:>10} {:>10}",
        "N", "T_p", "PBFT", "Hybster", "DQPBFT", "Destiny", "Tcmax BFT", "Tcmax hyb"
    );
    for r in rows {
        let cell = |c: &Column| format!("{:.0} ({})", c.batches_per_s, c.messages);
        let p = &r.protocols;
        println!(
            "{:>5} {:>8.0} {:>16} {:>16} {:>20} {:>16} {:>10.0} {:>10.0}",
            r.n,
            r.single_primary,
            cell(&p[0]),
            cell(&p[1]),
            cell(&p[2]),
            cell(&p[3]),
            r.concurrent_max_bft,
            r.concurrent_max_hybrid
        );
    }
    Ok(())
}
