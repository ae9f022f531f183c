//! `byzscale sim steward`: the flags of the Steward scenario
//! ([`byzscale_scenario_steward`]).

use anyhow::{bail, Result};
use byzscale_scenario_steward::{Adversary, Config, CpuChoice, Protocol, Topology};
use clap::Args;

#[derive(Args, Debug)]
pub struct StewardArgs {
    /// Number of sites S.
    #[arg(long, default_value_t = 5)]
    pub sites: usize,
    /// Faults tolerated per site f (each site has 3f+1 servers).
    #[arg(long, default_value_t = 1)]
    pub faulty_per_site: usize,
    /// WAN: symmetric-50ms, planetlab (5 sites), cairn, or a TOML latency matrix.
    #[arg(long, default_value = "symmetric-50ms")]
    pub topology: String,
    /// Bandwidth of every site-to-site link in Mbit/s (symmetric-50ms: default 10; a file: unlimited).
    #[arg(long)]
    pub bandwidth: Option<f64>,
    /// Closed-loop clients (client k at site k mod S).
    #[arg(long, default_value_t = 5)]
    pub clients: usize,
    /// Updates per client per run.
    #[arg(long, default_value_t = 4)]
    pub updates: u64,
    /// A local read after every this many updates (0: none; Steward only).
    #[arg(long, default_value_t = 2)]
    pub read_every: u64,
    /// Steward, or flat BFT (the SMR core) with the same servers on the same WAN.
    #[arg(long, default_value = "steward", value_parser = super::named(Protocol::NAMES, Protocol::from_name))]
    pub protocol: Protocol,
    /// Steward adversary (see the scenario's attacks module).
    #[arg(long, default_value = "none", value_parser = super::named(Adversary::NAMES, Adversary::from_name))]
    pub byzantine: Adversary,
    /// Byzantine servers per site [default: f]. More than f shows the checkers at work.
    #[arg(long)]
    pub byzantine_per_site: Option<usize>,
    /// CPU costs: paper (Steward's RSA and threshold costs, labelled) or free.
    #[arg(long, default_value = "paper", value_parser = super::named(CpuChoice::NAMES, CpuChoice::from_name))]
    pub cpu: CpuChoice,
    /// Charge an RSA-1024 signature (1.3 ms) for every message a server
    /// sends and a verification (0.07 ms) for every one it receives, in
    /// both protocols, as the paper's testbed signed every message (with
    /// --cpu paper; the servers still authenticate with MACs).
    #[arg(long)]
    pub sign_every_message: bool,
    /// Pad every update to at least this many bytes (the paper: 200).
    #[arg(long, default_value_t = 0)]
    pub update_bytes: usize,
    /// Number of runs (seeds).
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub seed_start: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: StewardArgs) -> Result<()> {
    super::run_scenario(&steward_config(&a)?, a.json)
}

pub fn steward_config(a: &StewardArgs) -> Result<Config> {
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let topology = Topology::parse(&a.topology).map_err(anyhow::Error::msg)?;
    let mut c = Config::new(a.sites, a.faulty_per_site);
    c.topology = topology;
    c.bandwidth_mbps = a.bandwidth;
    c.clients = a.clients;
    c.updates = a.updates;
    c.read_every = a.read_every;
    c.protocol = a.protocol;
    c.adversary = a.byzantine;
    c.byzantine_per_site = a.byzantine_per_site.unwrap_or(a.faulty_per_site);
    c.cpu = a.cpu;
    c.sign_every_message = a.sign_every_message;
    c.update_bytes = a.update_bytes;
    c.seeds = a.seeds;
    c.seed_start = a.seed_start;
    use byzscale_sim::scenario::Scenario;
    c.validate()?;
    Ok(c)
}
