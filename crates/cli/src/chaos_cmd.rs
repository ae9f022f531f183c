//! `byzscale chaos`: a real cluster under load with random SIGKILLs,
//! restarts and partitions, checked at the end (the run itself is
//! `byzscale_node::chaos`).

use crate::deploy_cmd::ClusterProtocol;
use anyhow::{bail, Result};
use byzscale_node::chaos::{self, ChaosProtocol, ChaosSpec, Partitions};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ChaosArgs {
    /// What to run: one SMR group of the KV store, the ByzCast tree of
    /// `cluster --protocol byzcast` (two shards under a root), or four AT2
    /// nodes.
    #[arg(long, value_enum, default_value_t = ClusterProtocol::Smr)]
    pub protocol: ClusterProtocol,
    /// Seconds of faults under load.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seeds the fault plan (what, when, for how long, which replicas).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Closed-loop writers through the Redis gateways (AT2: through the
    /// HTTP API of the owner of the account each pays from).
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// How partitions are made: network namespaces when this machine allows
    /// (auto), always (netns: fail if not), or none (off).
    #[arg(long, value_enum, default_value_t = PartitionArg::Auto)]
    pub partitions: PartitionArg,
    /// Keep the run's directory (node files, logs, stores).
    #[arg(long)]
    pub keep: bool,
    /// Put the run's files here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the report as one line of JSON.
    #[arg(long)]
    pub json: bool,
    /// Test switch: delete every replica's store of a group that crashes as
    /// a whole (more than any BFT protocol tolerates): the run must fail.
    #[arg(long, hide = true)]
    pub unsafe_wipe_stores: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionArg {
    Auto,
    Netns,
    Off,
}

/// `byzscale chaos`: print the report; fail if it found a violation.
pub async fn chaos(a: ChaosArgs) -> Result<()> {
    let spec = ChaosSpec {
        protocol: match a.protocol {
            ClusterProtocol::Smr => ChaosProtocol::Smr,
            ClusterProtocol::Byzcast => ChaosProtocol::Byzcast,
            ClusterProtocol::At2 => ChaosProtocol::At2,
            ClusterProtocol::Steward => {
                anyhow::bail!("byzscale chaos does not run Steward (yet): use byzscale cluster --protocol steward")
            }
        },
        seed: a.seed,
        duration: a.duration,
        writers: a.writers,
        partitions: match a.partitions {
            PartitionArg::Auto => Partitions::Auto,
            PartitionArg::Netns => Partitions::Netns,
            PartitionArg::Off => Partitions::Off,
        },
        keep: a.keep,
        dir: a.dir,
        unsafe_wipe_stores: a.unsafe_wipe_stores,
    };
    // SIGINT/SIGTERM: `main` drops this run (see `until_signal`)
    let r = chaos::run(&spec).await?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    if !r.pass {
        bail!("chaos found violations: {}", r.violations.join("; "));
    }
    Ok(())
}
