//! The Steward scenario of `byzscale sim steward` (issue 13 item 6).
//!
//! S sites of 3f+1 servers (site s in region s of the topology), C clients
//! (client k at site k mod S) each submitting `updates` increments of one
//! counter one at a time and reading it locally every `read_every`
//! updates, on one of Steward's WAN topologies (§2.8 of the digest
//! `byzcast-steward-wheat-aware-lazarus.md`) where each site's link to each
//! other site is one shared serialization queue (`sim::net_model` region
//! links), with the CPU model charging Steward's threshold cryptography at
//! the paper's costs (labelled; the run itself signs with BLS). The same
//! servers, clients and WAN run the flat SMR core instead with
//! `--protocol flat`. Adversaries: [`attacks`]; checkers: [`audit`]; the
//! deployment (keys, servers, clients): [`deploy`], which the protocol
//! crate's tests use too.

pub mod attacks;
pub mod audit;
pub mod deploy;
pub mod flat;

pub use attacks::{Adversary, ThresholdCosts};

use audit::Audit;
use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::protocol::{Time, MICROS, MILLIS, SECS};
use byzscale_core::Addr;
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::NodeIdx;
use byzscale_sim::net_model::{NetModel, Partition};
use byzscale_sim::runner::percentile_ms;
use byzscale_sim::scenario::{
    Ending, Limits, Outcome, Report as ReportTrait, Scenario, Setup, SimError, SimOf, Summary,
    Sweep,
};
use byzscale_smr::Params;
use byzscale_steward::{SiteId, Update};
use deploy::{Deployment, Spec};
use serde::Serialize;
use std::path::PathBuf;

/// One way inside a site (its LAN is not limited).
pub const LAN: Time = 100 * MICROS;
/// Seeded jitter on every copy.
pub const JITTER: Time = 200 * MICROS;

/// A WAN topology (digest §2.8).
#[derive(Clone, Debug, PartialEq)]
pub enum Topology {
    /// Every pair of sites 50 ms apart, each link `--bandwidth` (default 10).
    Symmetric50ms,
    /// The five PlanetLab sites (reconstructed matrix, see
    /// [`NetModel::planetlab_steward`]); needs `--sites 5`.
    PlanetLab,
    /// 38 ms at 1.86 Mbit/s between every pair of sites.
    Cairn,
    /// A TOML latency matrix (`sim::net_model`); `--bandwidth` sets every
    /// site link.
    File(PathBuf),
}

impl Topology {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "symmetric-50ms" => Ok(Topology::Symmetric50ms),
            "planetlab" => Ok(Topology::PlanetLab),
            "cairn" => Ok(Topology::Cairn),
            p if std::path::Path::new(p).exists() => Ok(Topology::File(p.into())),
            other => Err(format!(
                "unknown topology '{other}': use symmetric-50ms, planetlab, cairn or a TOML file"
            )),
        }
    }
    pub fn name(&self) -> String {
        match self {
            Topology::Symmetric50ms => "symmetric-50ms".into(),
            Topology::PlanetLab => "planetlab".into(),
            Topology::Cairn => "cairn".into(),
            Topology::File(p) => p.display().to_string(),
        }
    }
}

/// Steward or its baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Steward,
    Flat,
}

impl Protocol {
    pub const NAMES: [&'static str; 2] = ["steward", "flat"];
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "steward" => Some(Protocol::Steward),
            "flat" => Some(Protocol::Flat),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Steward => "steward",
            Protocol::Flat => "flat",
        }
    }
}

/// What computation costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuChoice {
    /// Steward's testbed: RSA-1024 sign 1.3 ms / verify 0.07 ms for
    /// signatures, threshold share 3.9 ms, combine 5.6 ms, verify 0.07 ms
    /// ([`ThresholdCosts::paper`]); the rest `CpuModel::calibrated`.
    Paper,
    /// Computation takes no time (network only).
    Free,
}

impl CpuChoice {
    pub const NAMES: [&'static str; 2] = ["paper", "free"];
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "paper" => Some(CpuChoice::Paper),
            "free" => Some(CpuChoice::Free),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            CpuChoice::Paper => "paper costs (RSA-1024 + Shoup threshold, Steward's testbed; signatures computed with ed25519/BLS)",
            CpuChoice::Free => "free",
        }
    }
    fn model(self) -> (CpuModel, Option<ThresholdCosts>) {
        match self {
            CpuChoice::Paper => {
                let mut m = CpuModel::calibrated();
                m.sign_ns = 1_300_000.0;
                m.verify_ns = 70_000.0;
                (m, Some(ThresholdCosts::paper()))
            }
            CpuChoice::Free => (CpuModel::free(), None),
        }
    }
}

/// The flags of `byzscale sim steward`.
#[derive(Clone, Debug)]
pub struct Config {
    pub sites: usize,
    pub f: usize,
    pub topology: Topology,
    pub bandwidth_mbps: Option<f64>,
    pub clients: usize,
    /// Updates per client.
    pub updates: u64,
    /// A local read after every this many updates (0: none; Steward only).
    pub read_every: u64,
    pub protocol: Protocol,
    pub adversary: Adversary,
    /// Byzantine servers per site [default f]; more than f shows the
    /// checkers catching what Steward does not tolerate.
    pub byzantine_per_site: usize,
    pub cpu: CpuChoice,
    /// With `--cpu paper`: every message a server sends costs an RSA
    /// signature and every one it receives a verification, in both
    /// protocols ([`byzscale_sim::cpu::SignEveryMessage`]), as on the
    /// paper's testbed.
    pub sign_every_message: bool,
    /// Updates padded to at least this many bytes (0: a short INCR).
    pub update_bytes: usize,
    pub seeds: u64,
    pub seed_start: u64,
}

impl Config {
    /// The defaults of the command: 5 sites of 4, symmetric 50 ms at
    /// 10 Mbit/s, 5 clients of 4 updates, a read every 2, no adversary.
    pub fn new(sites: usize, f: usize) -> Self {
        Config {
            sites,
            f,
            topology: Topology::Symmetric50ms,
            bandwidth_mbps: None,
            clients: sites,
            updates: 4,
            read_every: 2,
            protocol: Protocol::Steward,
            adversary: Adversary::None,
            byzantine_per_site: f,
            cpu: CpuChoice::Paper,
            sign_every_message: false,
            update_bytes: 0,
            seeds: 1,
            seed_start: 0,
        }
    }

    /// The per-message signature charge of the run, if any.
    fn per_message(&self) -> Option<byzscale_sim::cpu::SignEveryMessage> {
        (self.sign_every_message && self.cpu == CpuChoice::Paper)
            .then(byzscale_sim::cpu::SignEveryMessage::steward_paper)
    }

    fn err(s: String) -> SimError {
        SimError::Config(s)
    }

    /// The network of the run (validated).
    pub fn net(&self) -> Result<NetModel, SimError> {
        let (s, bw) = (self.sites, self.bandwidth_mbps);
        if let Some(b) = bw {
            if !(b.is_finite() && b > 0.0) {
                return Err(Self::err(format!("--bandwidth must be positive, got {b}")));
            }
        }
        let fixed = |what: &str| {
            Self::err(format!(
                "--bandwidth does not apply to {what}, whose links are the paper's"
            ))
        };
        let net = match &self.topology {
            Topology::Symmetric50ms => {
                NetModel::symmetric_wan(s, 50 * MILLIS, bw.unwrap_or(10.0), LAN)?
            }
            Topology::PlanetLab if bw.is_some() => return Err(fixed("planetlab")),
            Topology::PlanetLab if s != 5 => {
                return Err(Self::err(format!("planetlab has 5 sites, not --sites {s}")))
            }
            Topology::PlanetLab => NetModel::planetlab_steward(LAN),
            Topology::Cairn if bw.is_some() => return Err(fixed("cairn")),
            Topology::Cairn => NetModel::cairn_steward(s, LAN)?,
            Topology::File(p) => {
                let m = NetModel::from_file(p)?;
                if m.regions.len() < s {
                    let r = m.regions.len();
                    return Err(Self::err(format!(
                        "{} has {r} regions for {s} sites",
                        p.display()
                    )));
                }
                match bw {
                    Some(b) => {
                        let n = m.regions.len();
                        let links: Vec<Vec<f64>> = (0..n)
                            .map(|i| (0..n).map(|j| if i == j { 0.0 } else { b }).collect())
                            .collect();
                        m.with_region_links(&links)?
                    }
                    None => m,
                }
            }
        };
        Ok(net.with_jitter(JITTER))
    }

    fn params(&self, net: &NetModel) -> Params {
        match self.protocol {
            // the site SMR runs on its LAN: the authors' local timeouts
            Protocol::Steward => deploy::test_params(),
            // the flat group spans the WAN
            Protocol::Flat => {
                let mut p = Params::for_network(net.max_one_way());
                p.checkpoint_interval = 32;
                p.window = 128;
                p
            }
        }
    }

    fn check(&self) -> Result<(), SimError> {
        if self.sites < 3 && self.adversary.is_network() {
            return Err(Self::err(format!(
                "--byzantine {} cuts a site off: it needs --sites 3 or more",
                self.adversary.name()
            )));
        }
        if self.sites == 0 || self.sites > 16 {
            return Err(Self::err(format!(
                "--sites must be 1 to 16, got {}",
                self.sites
            )));
        }
        if self.f > 5 {
            return Err(Self::err(format!(
                "--faulty-per-site must be at most 5, got {}",
                self.f
            )));
        }
        if self.clients == 0 {
            return Err(Self::err("--clients must be at least 1".into()));
        }
        if self.protocol == Protocol::Flat
            && !self.adversary.is_network()
            && self.adversary != Adversary::None
        {
            return Err(Self::err(format!(
                "--byzantine {} attacks Steward's sites; the flat baseline takes none, partition-leader or cut-site",
                self.adversary.name()
            )));
        }
        if self.byzantine_per_site > 3 * self.f + 1 {
            return Err(Self::err(format!(
                "--byzantine-per-site {} is more than a site's {} servers",
                self.byzantine_per_site,
                3 * self.f + 1
            )));
        }
        Ok(())
    }

    /// The partition of a network adversary: site `s` and its clients
    /// against the rest.
    fn partition(&self, servers: &[Vec<Addr>], clients: &[(Addr, SiteId)]) -> Option<Partition> {
        let cut = match self.adversary {
            Adversary::PartitionLeader => 0,
            Adversary::CutSite => self.sites - 1,
            _ => return None,
        };
        let side = |inside: bool| -> Vec<Addr> {
            let s = servers
                .iter()
                .enumerate()
                .filter(|(s, _)| (*s == cut) == inside);
            let c = clients
                .iter()
                .filter(|(_, h)| (h.0 as usize == cut) == inside);
            s.flat_map(|(_, m)| m.iter().copied())
                .chain(c.map(|(a, _)| *a))
                .collect()
        };
        let (start, end) = (attacks::CUT_AT, attacks::CUT_AT + attacks::CUT);
        Some(Partition::new(start, end, vec![side(true), side(false)]))
    }

    fn limits(&self) -> Limits {
        let total = self.clients as u64 * self.updates;
        Limits {
            grace: 2 * SECS,
            max_events: Some(5_000_000 + 200_000 * total),
            ..Limits::until(120 * SECS + attacks::CUT + total * SECS)
        }
    }

    fn build_steward(&self, seed: u64, net: NetModel) -> Result<Setup<Self>, SimError> {
        let (cpu, costs) = self.cpu.model();
        let spec = Spec {
            sites: self.sites,
            f: self.f,
            clients: self.clients,
            net,
            cpu,
            params: self.params(&NetModel::lan()),
            client_retry: SECS,
            trace: true,
        };
        let (adv, k) = (self.adversary, self.byzantine_per_site);
        let n = 3 * self.f + 1;
        let mut made = 0usize;
        let mut byzantine = Vec::new();
        let forged = attacks::Forged::default();
        let per_message = self.per_message();
        let wrap = |_, key: &_, server| {
            let i = made % n;
            let (actor, bad) = attacks::server_actor(adv, k, i, key, server, costs, &forged);
            if bad {
                byzantine.push(made);
            }
            made += 1;
            match per_message {
                Some(p) => p.around(actor),
                None => actor,
            }
        };
        let dep = Deployment::build(seed, &spec, |_| {}, wrap).map_err(Self::err)?;
        if adv == Adversary::ForgeProposals {
            let update = |c: u64| {
                let a = Addr::Client(byzscale_core::ClientId(c));
                let crypto = Crypto::new(a, deploy::identity(a), CryptoMode::Real);
                Update::signed(&crypto, byzscale_core::ClientId(c), 1, deploy::op())
            };
            let plan = attacks::forge_plan(&dep.cfg, &dep.keys[0], k > self.f, update);
            *forged.borrow_mut() = plan;
        }
        let Deployment {
            mut sim,
            servers,
            clients,
            cfg,
            ..
        } = dep;
        for &b in &byzantine {
            let (s, i) = (b / n, b % n);
            sim.set_byzantine(servers[s][i], true);
        }
        let correct: Vec<NodeIdx> = servers
            .iter()
            .flatten()
            .copied()
            .filter(|x| !sim.is_byzantine(*x))
            .collect();
        let addrs: Vec<Vec<Addr>> = cfg
            .sites
            .iter()
            .map(|s| s.members.iter().map(|m| Addr::Node(*m)).collect())
            .collect();
        let homes: Vec<(Addr, SiteId)> = clients
            .iter()
            .map(|(c, _)| (Addr::Client(*c), cfg.clients[c]))
            .collect();
        if let Some(p) = self.partition(&addrs, &homes) {
            sim.add_partition(p);
        }
        let list = clients.iter().map(|(c, idx)| (*idx, *c, cfg.clients[c]));
        let world = Audit::new(false, self.updates, self.read_every, list, correct)
            .with_update_bytes(self.update_bytes);
        Ok(self.start(sim, world))
    }

    fn build_flat(&self, seed: u64, net: NetModel) -> Result<Setup<Self>, SimError> {
        let (cpu, _) = self.cpu.model();
        let params = self.params(&net);
        let mut sim = SimOf::<Self>::new(seed, net, cpu);
        sim.set_trace(true);
        let n = 3 * self.f + 1;
        let (replicas, clients) = flat::build(
            &mut sim,
            self.sites,
            n,
            self.clients,
            &params,
            self.per_message(),
        )
        .map_err(Self::err)?;
        let addrs: Vec<Vec<Addr>> = replicas
            .chunks(n)
            .map(|c| c.iter().map(|x| sim.addr(*x)).collect())
            .collect();
        let home = |k: usize| SiteId((k % self.sites) as u32);
        let homes: Vec<(Addr, SiteId)> = clients
            .iter()
            .enumerate()
            .map(|(k, (c, _))| (Addr::Client(*c), home(k)))
            .collect();
        if let Some(p) = self.partition(&addrs, &homes) {
            sim.add_partition(p);
        }
        let list = clients
            .iter()
            .enumerate()
            .map(|(k, (c, idx))| (*idx, *c, home(k)));
        let world =
            Audit::new(true, self.updates, 0, list, replicas).with_update_bytes(self.update_bytes);
        Ok(self.start(sim, world))
    }

    fn start(&self, mut sim: SimOf<Self>, mut world: Audit) -> Setup<Self> {
        for (node, input) in world.start(MILLIS) {
            sim.schedule_input(MILLIS, node, input);
        }
        Setup {
            sim,
            world,
            limits: self.limits(),
        }
    }

    /// The site of a server address (both protocols number servers alike).
    fn site_of(&self, a: Addr) -> Option<usize> {
        a.node().map(|n| n.0 as usize / (3 * self.f + 1))
    }
}

/// One run's figures (simulated time).
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub completed: u64,
    pub reads: u64,
    pub latencies: Vec<Time>,
    pub read_latencies: Vec<Time>,
    /// Updates per simulated second, from the first submission to the
    /// last completion.
    pub throughput: f64,
    pub wan_copies: u64,
    pub local_view_changes: u64,
    pub global_view_changes: u64,
}

/// What `sim steward` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub protocol: &'static str,
    pub sites: usize,
    pub servers: usize,
    pub f_per_site: usize,
    pub f_flat: Option<usize>,
    pub topology: String,
    pub bandwidth_mbps: Option<f64>,
    pub clients: usize,
    pub updates_per_client: u64,
    pub byzantine: &'static str,
    pub byzantine_per_site: usize,
    pub cpu: &'static str,
    /// Every server message charged an RSA signature and verification.
    pub sign_every_message: bool,
    /// Updates padded to at least this many bytes (0: a short INCR).
    pub update_bytes: usize,
    #[serde(flatten)]
    pub summary: Summary,
    pub completed_updates: u64,
    pub local_reads: u64,
    /// Mean over runs, simulated.
    pub updates_per_second: f64,
    pub latency_mean_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub read_latency_p50_ms: f64,
    /// Message copies between servers of different sites, per update.
    pub wan_messages_per_update: f64,
    pub local_view_changes: u64,
    pub global_view_changes: u64,
    pub faults_recorded: u64,
}

impl ReportTrait for Report {
    fn table(&self) -> String {
        let mut s = format!(
            "{}: {} sites, {} servers (f={} per site{}) | {} {} | {} clients × {} updates | adversary {} ×{} per site | cpu {}\n",
            self.protocol,
            self.sites,
            self.servers,
            self.f_per_site,
            self.f_flat.map(|f| format!(", flat f={f}")).unwrap_or_default(),
            self.topology,
            self.bandwidth_mbps.map(|b| format!("{b} Mbit/s")).unwrap_or_default(),
            self.clients,
            self.updates_per_client,
            self.byzantine,
            self.byzantine_per_site,
            self.cpu
        );
        s.push_str(&self.summary.verdict_line());
        s.push_str(&format!(
            "  updates {:>7}   local reads {:>6}   {:.1} updates/s   latency mean {:.1} ms  p50 {:.1} ms  p95 {:.1} ms   read p50 {:.2} ms (simulated)\n",
            self.completed_updates, self.local_reads, self.updates_per_second, self.latency_mean_ms, self.latency_p50_ms, self.latency_p95_ms, self.read_latency_p50_ms
        ));
        s.push_str(&format!(
            "  WAN messages per update {:.1}   local view changes {}   global view changes {}   faults recorded {}   {:.1} s wall\n",
            self.wan_messages_per_update, self.local_view_changes, self.global_view_changes, self.faults_recorded, self.summary.wall_seconds
        ));
        s.push_str(&self.summary.failing_lines());
        s
    }
}

impl Scenario for Config {
    type Message = byzscale_steward::Message;
    type World = Audit;
    type Run = Run;
    type Report = Report;

    fn validate(&self) -> Result<(), SimError> {
        self.check()?;
        self.net()?;
        Ok(())
    }

    fn seeds(&self) -> std::ops::Range<u64> {
        self.seed_start..self.seed_start + self.seeds
    }

    fn build(&self, seed: u64) -> Result<Setup<Self>, SimError> {
        self.check()?;
        let net = self.net()?;
        match self.protocol {
            Protocol::Steward => self.build_steward(seed, net),
            Protocol::Flat => self.build_flat(seed, net),
        }
    }

    fn audit(
        &self,
        sim: &mut SimOf<Self>,
        mut world: Audit,
        ending: Ending,
        outcome: &mut Outcome,
    ) -> Run {
        world.check_end();
        let unfinished = world.unfinished();
        if !unfinished.is_empty() {
            let pending: Vec<String> = unfinished
                .iter()
                .take(5)
                .map(|(c, d)| format!("{c} did {d}/{}", self.updates))
                .collect();
            let what = format!(
                "{} clients unfinished ({})",
                unfinished.len(),
                pending.join(", ")
            );
            outcome.liveness = Some(ending.stuck(sim.now(), &what, &[]));
        }
        outcome
            .violations
            .add(world.violations.texts(), world.violations.count());
        let completed = world.latencies.len() as u64;
        let span = world
            .last_done
            .saturating_sub(world.first_submit.unwrap_or(0));
        let wan = deploy::wan_copies(sim, 0, |a| self.site_of(a));
        Run {
            completed,
            reads: world.read_latencies.len() as u64,
            throughput: if span > 0 {
                completed as f64 / (span as f64 / 1e9)
            } else {
                0.0
            },
            wan_copies: wan,
            local_view_changes: world.seen.local_views.len() as u64,
            global_view_changes: world.seen.global_views.len() as u64,
            latencies: world.latencies,
            read_latencies: world.read_latencies,
        }
    }

    fn replay_command(&self, seed: u64) -> String {
        let mut c = format!(
            "byzscale sim steward --sites {} --faulty-per-site {} --topology {} --clients {} --updates {} --read-every {} --protocol {} --byzantine {} --byzantine-per-site {} --cpu {} --seeds 1 --seed-start {seed}",
            self.sites,
            self.f,
            self.topology.name(),
            self.clients,
            self.updates,
            self.read_every,
            self.protocol.name(),
            self.adversary.name(),
            self.byzantine_per_site,
            match self.cpu { CpuChoice::Paper => "paper", CpuChoice::Free => "free" }
        );
        if let Some(b) = self.bandwidth_mbps {
            c.push_str(&format!(" --bandwidth {b}"));
        }
        if self.sign_every_message {
            c.push_str(" --sign-every-message");
        }
        if self.update_bytes > 0 {
            c.push_str(&format!(" --update-bytes {}", self.update_bytes));
        }
        c
    }

    fn summarize(&self, sweep: &Sweep<Run>) -> Report {
        let lat = sweep.sorted(|r| &r.run.latencies);
        let reads = sweep.sorted(|r| &r.run.read_latencies);
        let completed = sweep.sum(|r| r.run.completed);
        let n = 3 * self.f + 1;
        let mean = if lat.is_empty() {
            0.0
        } else {
            lat.iter().sum::<Time>() as f64 / lat.len() as f64 / 1e6
        };
        Report {
            protocol: self.protocol.name(),
            sites: self.sites,
            servers: self.sites * n,
            f_per_site: self.f,
            f_flat: (self.protocol == Protocol::Flat).then_some((self.sites * n - 1) / 3),
            topology: self.topology.name(),
            bandwidth_mbps: self
                .bandwidth_mbps
                .or((self.topology == Topology::Symmetric50ms).then_some(10.0)),
            clients: self.clients,
            updates_per_client: self.updates,
            byzantine: self.adversary.name(),
            byzantine_per_site: if self.adversary.is_network() || self.adversary == Adversary::None
            {
                0
            } else {
                self.byzantine_per_site
            },
            cpu: self.cpu.label(),
            sign_every_message: self.per_message().is_some(),
            update_bytes: self.update_bytes,
            summary: sweep.summary(),
            completed_updates: completed,
            local_reads: sweep.sum(|r| r.run.reads),
            updates_per_second: sweep.mean(|r| r.run.throughput),
            latency_mean_ms: mean,
            latency_p50_ms: percentile_ms(&lat, 0.5),
            latency_p95_ms: percentile_ms(&lat, 0.95),
            read_latency_p50_ms: percentile_ms(&reads, 0.5),
            wan_messages_per_update: sweep.sum(|r| r.run.wan_copies) as f64
                / completed.max(1) as f64,
            local_view_changes: sweep.sum(|r| r.run.local_view_changes),
            global_view_changes: sweep.sum(|r| r.run.global_view_changes),
            faults_recorded: sweep.sum(|r| r.outcome.faults_recorded),
        }
    }
}
