//! The deployment commands: `byzscale cluster`, `node`, `client`,
//! `config local` and `keygen`. They turn their arguments into the specs of
//! `byzscale-node` and print what it returns.

use anyhow::{bail, Result};
use byzscale_core::crypto::Identity;
use byzscale_node::{ClusterSpec, LocalConfig, NodeFile, NodeProtocol};
use clap::{Args, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// What to run: one SMR group serving a KV store, a ByzCast-sharded KV
    /// store, AT2 asset transfer, or a KV store replicated by Steward over
    /// wide-area sites (emulated by the delay shim).
    #[arg(long, value_enum, default_value_t = ClusterProtocol::Smr)]
    pub protocol: ClusterProtocol,
    /// Target groups (shards) of `--protocol byzcast`.
    #[arg(long, default_value_t = 2)]
    pub groups: usize,
    /// Fraction of `--protocol byzcast` requests that are two-group MSETs
    /// (global messages, ordered at the lowest common ancestor).
    #[arg(long, default_value_t = 0.1)]
    pub global_ratio: f64,
    /// Sites of `--protocol steward` (each 3F+1 servers).
    #[arg(long, default_value_t = 5)]
    pub sites: usize,
    /// Byzantine servers tolerated per site (F) by `--protocol steward`.
    #[arg(long, default_value_t = 1)]
    pub faulty_per_site: usize,
    /// `--protocol steward`: the WAN delay matrix between the sites (TOML of
    /// the delay shim, one region per site in site order; node placement is
    /// filled in). Default: 50 ms one way between sites, none inside.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Processes of `--protocol at2`.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// `--protocol at2`: its broadcast.
    #[command(flatten)]
    pub at2: crate::broadcast_cmd::At2BroadcastArgs,
    /// Most requests per batch (1: batching off).
    #[arg(long, default_value_t = byzscale_smr::Params::default().batch_max_requests)]
    pub batch_max: usize,
    /// Replicas in the group (N = 3F+1+Δ; F = (N-1)/3).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Closed-loop clients (each waits for its reply before the next request).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds of load (0: start the cluster, no workload).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Value size of SET requests, in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Fraction of GETs (served on the unordered read-only path).
    #[arg(long, default_value_t = 0.0)]
    pub read_ratio: f64,
    /// SIGKILL the initial leader's process this many seconds into the load.
    #[arg(long)]
    pub crash_leader_at: Option<f64>,
    /// Leave the cluster running and print its endpoints.
    #[arg(long)]
    pub keep: bool,
    /// Keep generated files here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterProtocol {
    Smr,
    Byzcast,
    At2,
    Steward,
}

impl ClusterArgs {
    fn spec(&self) -> ClusterSpec {
        ClusterSpec {
            protocol: match self.protocol {
                ClusterProtocol::Smr => NodeProtocol::Smr,
                ClusterProtocol::Byzcast => NodeProtocol::Byzcast,
                ClusterProtocol::At2 => NodeProtocol::At2,
                ClusterProtocol::Steward => NodeProtocol::Steward,
            },
            sites: self.sites,
            faulty_per_site: self.faulty_per_site,
            topology: self.topology.clone(),
            groups: self.groups,
            global_ratio: self.global_ratio,
            nodes: self.nodes,
            batch_max: self.batch_max,
            replicas: self.replicas,
            clients: self.clients,
            duration: self.duration,
            payload: self.payload,
            read_ratio: self.read_ratio,
            crash_leader_at: self.crash_leader_at,
            keep: self.keep,
            dir: self.dir.clone(),
            progress: show_progress(self.json),
            at2: self.at2.settings(),
        }
    }
}

/// Whether to draw progress bars: on a terminal, unless the output is JSON.
pub fn show_progress(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// `byzscale cluster`. SIGTERM or SIGINT stops it and its node processes
/// (`main` drops the run, which drops its [`byzscale_node::Local`]: that
/// kills them and removes its temporary directory), unless they were started
/// with `--keep`.
pub async fn cluster(a: ClusterArgs) -> Result<()> {
    let spec = a.spec();
    let outcome = byzscale_node::start_cluster(&spec).await?;
    print!("{}", outcome.render(a.json));
    if let Some(f) = outcome.failure() {
        bail!("{f}");
    }
    Ok(())
}

/// `byzscale node --config FILE`.
pub async fn node(config: PathBuf) -> Result<()> {
    byzscale_node::run_node(NodeFile::load(&config)?).await
}

/// `byzscale client --config FILE COMMAND..` (`account new` needs no
/// deployment).
pub async fn client(config: Option<PathBuf>, ordered: bool, command: Vec<String>) -> Result<()> {
    if byzscale_node::protocols::at2::is_account_new(&command) {
        print!("{}", byzscale_node::protocols::at2::account_new(&command)?);
        return Ok(());
    }
    let Some(config) = config else {
        bail!("--config is required (the deployment TOML, or a node file next to it)");
    };
    print!(
        "{}",
        byzscale_node::run_client_command(&config, ordered, &command).await?
    );
    Ok(())
}

/// `byzscale keygen --out FILE`.
pub fn keygen(out: PathBuf) -> Result<()> {
    if out.exists() {
        bail!("{} exists; refusing to overwrite a key", out.display());
    }
    let id = Identity::generate();
    byzscale_node::generate::write_key(&out, &id)?;
    let p = id.public();
    println!(
        "sign_key = \"{}\"\ndh_key = \"{}\"",
        hex::encode(p.sign),
        hex::encode(p.dh)
    );
    Ok(())
}

/// `byzscale keygen --threshold K --members N --out DIR`.
pub fn threshold_keygen(out: PathBuf, k: usize, n: usize) -> Result<()> {
    let public = byzscale_node::generate::write_threshold_keys(&out, k, n)?;
    println!(
        "threshold_key = \"{public}\"   # {k} of {n}; shares in {}",
        out.display()
    );
    Ok(())
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Keys, deployment.toml and one node-<i>.toml per replica.
    Local {
        #[arg(long, default_value_t = 4)]
        replicas: usize,
        /// Faults tolerated [default: (N-1)/3; spare replicas get WHEAT weights].
        #[arg(long)]
        faulty: Option<usize>,
        #[arg(long)]
        out: PathBuf,
        /// First port: replica i listens on base+i, metrics on base+100+i, Redis on base+200+i.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// A file with one host per line (replica i goes to host i mod lines)
        /// for a multi-host deployment; default 127.0.0.1.
        #[arg(long)]
        hosts: Option<PathBuf>,
    },
}

/// `byzscale config ...`.
pub fn config(cmd: ConfigCommand) -> Result<()> {
    let ConfigCommand::Local {
        replicas,
        faulty,
        out,
        base_port,
        hosts,
    } = cmd;
    let cfg = LocalConfig {
        replicas,
        faulty,
        out,
        base_port,
        hosts,
    };
    let files = cfg.write()?;
    println!(
        "wrote {} (deployment.toml, node-<i>.toml, node-<i>.key); start each with:",
        cfg.out.display()
    );
    for f in files {
        println!("  byzscale node --config {}", f.display());
    }
    Ok(())
}
