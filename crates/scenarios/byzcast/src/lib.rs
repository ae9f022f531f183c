//! `byzscale sim byzcast`: ByzCast (or the naive baseline) over G target
//! groups and an overlay tree, closed-loop KV clients multicasting local and
//! global messages, Byzantine replicas, and every checker, over many seeds.
//!
//! A run builds 3F+1 replicas of [`byzscale_byzcast::Replica`] per
//! group (targets g1..gG plus the tree's auxiliary groups; replica i of every
//! group sits in region i mod R, so on `ec2-byzcast` each group spans the four
//! regions) and C clients per target group ([`byzcast::Client`], client c in
//! region c mod R, "home" group c mod G). Each client multicasts KV operations
//! one at a time: with probability `global_ratio` a multi-group MSET/MGET
//! (destinations per the workload: `uniform` = any pair, `skewed` = {g1,g2},
//! {g3,g4}, … as in seed 000 Table II), otherwise a single-group operation to
//! its home group; `local` sends single-group operations only.
//!
//! K replicas of every group misbehave (the leader of view 0 among them):
//!
//! | adversary | what the K replicas do |
//! |---|---|
//! | `silent`, `replay`, `slow`, `twins` | the generic wrappers of [`byzscale_sim::adversary`], as in `sim smr` |
//! | `mutate` | the SMR scenario's field mutator on the group's SMR messages, plus corrupted message ids and results ([`attacks`]) |
//! | `equivocate` | a leader proposes a different batch (same requests reversed, or one fewer) to half of the group |
//! | `mixed` | each picks one of the above, forging and corrupting included, and one of the ByzCast attacks below, from the seed, and switches over time |
//! | `early` | ByzCast parent replica forwarding early: it forwards every client multicast the moment it arrives, before its group orders it, numbering messages in the order they first reached any colluder (digest §1.4's attack) |
//! | `forge` | forwards a forged message (never multicast) in place of every real one, and corrupts the results it reports |
//! | `withhold` | never forwards to its children |
//! | `reorder` | swaps the messages of consecutive forwards to each child |
//!
//! The K Byzantine replicas of a group collude (shared state), so K > F shows
//! what the checkers catch when a group's fault threshold is exceeded: with
//! K = 2 of 4, `equivocate`, `twins`, `mutate`, `mixed`, `forge` and
//! `reorder` are caught on some seed; `silent`, `slow`, `replay` and
//! `withhold` are liveness attacks whose cost the tests measure (`withhold`
//! stalls at K = 3, since two correct parents still give a child its f+1
//! forwards); `early` beyond F makes children deliver before the parent
//! orders, but in one order for all children (the colluders' own), which no
//! checker can tell from a correct one: it is the attack on the index rule
//! at K <= F, and what F+1 colluding parents can break is shown by
//! `reorder` and `forge` (see `tests.rs`).
//!
//! **Byzantine clients** (`--byzantine-clients N`, [`clients`]): besides
//! the honest clients, N clients with keys of their own attack every group
//! of the tree, the root and inner groups included, with the SMR
//! scenario's behaviours (client i: partial authenticators, huge
//! multicasts, id churn, floods ahead of turn; i mod 4), reused through
//! `byzscale_scenario_smr::clients::Hostile` nested in a ByzCast endpoint,
//! their operations wrapped as multicasts that pass the replicas' request
//! filter. The churned ids' multicasts name malformed destinations in turn
//! (empty, unknown group, repeated, unsorted, another entry group, 8,192
//! groups), and the huge ones are the largest multicast a group takes and
//! one byte more. The checkers exempt their messages from validity and
//! liveness but hold them to agreement, order and integrity like anyone's
//! (see [`clients`]). Every run reports, per group, the peak bytes of the
//! SMR client table and pending table at its correct replicas, with the
//! scenario's bounds (those of the SMR scenario, with operations up to
//! [`MAX_OP_BYTES`]), and a
//! table over its bound is a violation; the sweep reports the requests the
//! Byzantine clients sent.
//!
//! Without `--duration-ms` a run sends `--requests` multicasts; the network
//! misbehaves until it stabilizes (1% loss, 1% duplication, 5% reordering),
//! every multicast must complete before the deadline, and the run continues a
//! little so lagging correct replicas catch up before the final checks. With
//! `--duration-ms` clients send without a quota over a clean network for that
//! long and only the window after the warm-up counts (throughput runs).
//!
//! Checkers, over correct replicas and clients:
//! - agreement and order per group: correct replicas of a group a-deliver the
//!   same message at each position ([`byzscale_sim::check::LogChecker`]), and at the end each has
//!   reached the group's last position;
//! - validity: at the end every multicast is in the log of every destination;
//! - integrity: a correct replica a-delivers a message at most once, only if
//!   it was multicast (same id, destinations and payload), and only at a
//!   destination group;
//! - acyclic order: the relation "some correct replica delivers m before m′"
//!   over all groups has no cycle ([`byzscale_sim::check::order::OrderChecker`]);
//! - atomicity across shards: the merged KV replies are exactly those of one
//!   serial execution of all multicasts in an order extending every group's
//!   delivery order (multi-shard MSET/MGET are atomic). Atomic multicast does
//!   not order messages of different groups in real time, so a history with
//!   multi-group messages need not be linearizable; histories with
//!   single-group messages only are checked for linearizability, each
//!   shard's on its own;
//! - expiry (`--expiry`): every shard has its own clock, its group's batch
//!   times, which correct replicas must agree on for every message; the
//!   linearizability check and the serial replay run each shard's part of
//!   an operation at the time its group ran it;
//! - liveness: every multicast completes before the deadline.

//!
//! The workload is in [`workload`], the Byzantine replicas in [`attacks`],
//! the checkers in [`audit`]; the run loop, the sweep over seeds and the
//! common report fields are the simulator's ([`byzscale_sim::scenario`]).

pub mod attacks;
pub mod audit;
pub mod clients;
pub mod workload;

pub use attacks::Adversary;
pub use byzscale_sim::net_model::NetworkChoice;
pub use byzscale_sim::scenario::{run_many, run_one, SimError};
pub use workload::WorkloadKind;

use attacks::Team;
use audit::{Audit, ReplicaNodes};
use byzscale_byzcast::{self as byzcast, Message, Mode, Topology, Tree, TreeSpec};
use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::protocol::{Time, MILLIS, SECS};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_scenario_smr::clients::{client_crypto, ClientKeys};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::crashes::{CrashOptions, CrashPlan};
use byzscale_sim::engine::{NodeIdx, ProtocolActor, Role, Sim};
use byzscale_sim::runner::{identity, percentile_ms as percentile};
use byzscale_sim::scenario::{
    self, Conditions, Ending, Limits, Outcome, Scenario, Setup, Summary, Sweep,
};
use byzscale_sim::storage::{Disk, SharedDisk, StorageModel};
use byzscale_smr::Params;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

/// `Params::client_expiry_slots` in the scenario: half a checkpoint
/// interval (64), so expiry and the session floor act within a run (at the
/// library's default, 2^20 slots, they never would).
pub const CLIENT_EXPIRY_SLOTS: u64 = 32;

/// `Params::max_op_bytes` in the scenario (the library's default is 1 MiB):
/// the Byzantine clients' huge multicasts sit at this bound, and with 1 MiB
/// ones forwarded down the tree, real MACs and digests over every copy
/// made a run cost a minute and a half of CPU.
pub const MAX_OP_BYTES: usize = 64 << 10;

/// The SMR parameters of the scenario's replicas and clients that do not
/// depend on the network: the client and pending tables' limits of the SMR
/// scenario (small enough for Byzantine clients to reach), the expiry
/// horizon, [`MAX_OP_BYTES`].
fn limits(params: &mut Params, expiry: u64) {
    byzscale_scenario_smr::client_limits(params, expiry);
    params.max_op_bytes = MAX_OP_BYTES;
}

/// A Byzantine replica of the scenario: a ByzCast replica whose forwarding
/// may be an attack.
pub type Rep = byzcast::Replica<attacks::Policy>;
/// A correct replica.
pub type Correct = byzcast::Replica;

/// Inputs and outputs of the nodes of a simulation: clients and replicas.
pub type Input = Role<byzcast::client::Input, byzcast::replica::Input>;
pub type Output = Role<byzcast::client::Output, byzcast::replica::Output>;

/// A tree of groups: a built-in shape or a file.
#[derive(Clone, Debug, PartialEq)]
pub enum TreeChoice {
    TwoLevel,
    ThreeLevel,
    File { path: PathBuf, spec: TreeSpec },
}

impl TreeChoice {
    /// `two-level`, `three-level`, or a tree file (TOML, or the JSON of
    /// `byzscale tree optimize --json`).
    pub fn parse(s: &str) -> Result<Self, SimError> {
        match s {
            "two-level" | "2" => Ok(TreeChoice::TwoLevel),
            "three-level" | "3" => Ok(TreeChoice::ThreeLevel),
            path => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SimError::Config(format!(
                        "tree '{path}': not two-level, three-level or a readable file: {e}"
                    ))
                })?;
                let spec = if path.ends_with(".json") {
                    serde_json::from_str::<TreeSpec>(&text)
                        .map_err(|e| SimError::Config(format!("tree file {path}: {e}")))?
                } else {
                    TreeSpec::from_toml(&text)
                        .map_err(|e| SimError::Config(format!("tree file {path}: {e}")))?
                };
                Tree::from_spec(&spec)
                    .map_err(|e| SimError::Config(format!("tree file {path}: {e}")))?;
                Ok(TreeChoice::File {
                    path: PathBuf::from(path),
                    spec,
                })
            }
        }
    }
    pub fn name(&self) -> String {
        match self {
            TreeChoice::TwoLevel => "two-level".into(),
            TreeChoice::ThreeLevel => "three-level".into(),
            TreeChoice::File { path, .. } => path.display().to_string(),
        }
    }
    /// The tree for `groups` target groups (a file must have exactly that many).
    pub fn build(&self, groups: usize) -> Result<Tree, SimError> {
        match self {
            TreeChoice::TwoLevel => Ok(Tree::two_level(groups)),
            TreeChoice::ThreeLevel => Tree::three_level(groups).ok_or_else(|| {
                SimError::Config("the three-level tree needs at least 2 target groups".into())
            }),
            TreeChoice::File { path, spec } => {
                let t = Tree::from_spec(spec)
                    .map_err(|e| SimError::Config(format!("{}: {e}", path.display())))?;
                if t.target_count() != groups {
                    return Err(SimError::Config(format!(
                        "{} has {} target groups but --groups is {groups}",
                        path.display(),
                        t.target_count()
                    )));
                }
                Ok(t)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Target groups.
    pub groups: usize,
    pub tree: TreeChoice,
    pub global_ratio: f64,
    pub workload: WorkloadKind,
    pub protocol: Mode,
    pub adversary: Adversary,
    /// Byzantine replicas per group.
    pub byzantine_count: usize,
    /// Faults tolerated per group (3F+1 replicas each).
    pub f: usize,
    pub seeds: u64,
    pub seed_start: u64,
    /// Multicasts per run (all clients together), without `duration_ms`.
    pub requests: u64,
    pub clients_per_group: usize,
    pub network: NetworkChoice,
    pub modeled_crypto: bool,
    /// Throughput mode: run this long (virtual ms) without a quota.
    pub duration_ms: Option<f64>,
    /// In throughput mode, completions before this are not counted.
    pub warmup_ms: f64,
    /// Batch delay of the SMR leaders (µs).
    pub batch_delay_us: u64,
    /// Crash and restart correct replicas from their disks (always on with
    /// the `mixed` adversary; see the crate docs).
    pub crash_restart: bool,
    pub trace: Option<PathBuf>,
    /// `Params::client_expiry_slots` of the run ([`CLIENT_EXPIRY_SLOTS`]
    /// by default).
    pub client_expiry_slots: u64,
    /// Byzantine clients besides the honest ones ([`clients`]).
    pub byzantine_clients: usize,
    /// Mix `WATCH` and `MULTI`/`EXEC` transactions into the workload (see
    /// [`workload`]), cross-shard ones included.
    pub transactions: bool,
    /// Mix operations on keys with millisecond TTLs into the single-group
    /// workload ([`workload`]); the checker replays expiry at each group's
    /// batch times (each shard has its own clock).
    pub expiry: bool,
}

impl Config {
    /// A small default: 2 target groups under one auxiliary, 30% global, LAN.
    pub fn new(groups: usize) -> Self {
        Config {
            groups,
            tree: TreeChoice::TwoLevel,
            global_ratio: 0.3,
            workload: WorkloadKind::Uniform,
            protocol: Mode::Byzcast,
            adversary: Adversary::None,
            byzantine_count: 0,
            f: 1,
            seeds: 1,
            seed_start: 0,
            requests: 40,
            clients_per_group: 2,
            network: NetworkChoice::default(),
            modeled_crypto: false,
            duration_ms: None,
            warmup_ms: 0.0,
            batch_delay_us: 0,
            crash_restart: false,
            trace: None,
            client_expiry_slots: CLIENT_EXPIRY_SLOTS,
            byzantine_clients: 0,
            transactions: false,
            expiry: false,
        }
    }

    /// Whether correct replicas keep their records on disks and crash and
    /// restart on a schedule drawn from the seed (never in throughput runs).
    pub fn restarts(&self) -> bool {
        (self.crash_restart || self.adversary == Adversary::Mixed) && self.duration_ms.is_none()
    }

    /// What the report says about the faults and conditions.
    pub fn conditions(&self) -> Conditions {
        let adversary = (self.adversary.name(), self.byzantine_count);
        let (network, clients) = (self.network.name(), self.byzantine_clients);
        Conditions::new(
            adversary,
            network,
            self.modeled_crypto,
            self.restarts(),
            clients,
        )
    }

    /// In fixed-duration runs, completions before this are not counted.
    pub fn warmup(&self) -> Time {
        (self.warmup_ms * MILLIS as f64) as Time
    }

    /// Check the configuration and build the topology.
    pub fn topology(&self) -> Result<Arc<Topology>, SimError> {
        if self.groups == 0 {
            return Err(SimError::Config("--groups must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.global_ratio) {
            return Err(SimError::Config(format!(
                "--global-ratio must be in [0, 1], got {}",
                self.global_ratio
            )));
        }
        if self.workload == WorkloadKind::Local && self.global_ratio > 0.0 {
            return Err(SimError::Config(
                "--workload local sends single-group messages only: drop --global-ratio (or set it to 0)".into(),
            ));
        }
        if self.clients_per_group == 0 {
            return Err(SimError::Config(
                "--clients-per-group must be at least 1".into(),
            ));
        }
        let n = 3 * self.f + 1;
        if self.byzantine_count > n {
            return Err(SimError::Config(format!(
                "--byzantine-count {} exceeds the {n} replicas of a group",
                self.byzantine_count
            )));
        }
        let tree = match self.protocol {
            Mode::Baseline => {
                if self.tree != TreeChoice::TwoLevel {
                    return Err(SimError::Config(
                        "the baseline has no tree: one sequencer group relays to every target (drop --tree)".into(),
                    ));
                }
                Tree::sequencer_star(self.groups)
            }
            Mode::Byzcast => self.tree.build(self.groups)?,
        };
        let qs = QuorumSystem::classic(n, self.f, FaultModel::Bft)
            .map_err(|e| SimError::Config(e.to_string()))?;
        Topology::numbered(tree, &qs, self.protocol)
            .map(Arc::new)
            .map_err(|e| SimError::Config(e.to_string()))
    }
}

/// One run's own figures (the common ones are in [`Outcome`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    pub completed_local: u64,
    pub completed_global: u64,
    /// Multicasts failed "session expired: outcome unknown" (not completed).
    pub expired: u64,
    /// a-deliveries by correct replicas.
    pub deliveries: u64,
    pub view_changes: u64,
    pub linearizability_inconclusive: bool,
    /// Operations checked at the batch time their group ran them at
    /// (`--expiry`).
    pub timed_ops: u64,
    /// Completions per virtual second in the measured window.
    pub throughput_local: f64,
    pub throughput_global: f64,
    #[serde(skip)]
    pub latencies_local: Vec<Time>,
    #[serde(skip)]
    pub latencies_global: Vec<Time>,
    /// Per group, the most bytes its client table (replicated) and its
    /// pending table (local) held at a correct replica.
    pub tables: BTreeMap<GroupId, TablePeaks>,
    /// Requests and session queries the Byzantine clients sent.
    pub byzantine_sends: u64,
}

/// The most bytes a group's SMR tables held at one of its correct replicas
/// (the last incarnation of each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TablePeaks {
    pub client_table_bytes: u64,
    pub pending_bytes: u64,
}

impl TablePeaks {
    /// The larger of each.
    pub fn max(self, o: TablePeaks) -> TablePeaks {
        TablePeaks {
            client_table_bytes: self.client_table_bytes.max(o.client_table_bytes),
            pending_bytes: self.pending_bytes.max(o.pending_bytes),
        }
    }
}

/// The JSON of `byzscale sim byzcast --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub protocol: &'static str,
    pub groups: usize,
    pub tree: String,
    pub auxiliary_groups: usize,
    /// All replicas, auxiliary groups included.
    pub replicas: usize,
    pub replicas_per_group: usize,
    pub f: usize,
    pub workload: &'static str,
    pub global_ratio: f64,
    #[serde(flatten)]
    pub conditions: Conditions,
    #[serde(flatten)]
    pub summary: Summary,
    pub completed_requests: u64,
    pub completed_local: u64,
    pub completed_global: u64,
    /// Multicasts failed "session expired: outcome unknown", over all runs:
    /// checked as possibly delivered, and not completed.
    pub expired: u64,
    /// a-deliveries by correct replicas.
    pub deliveries: u64,
    pub view_changes: u64,
    pub messages: u64,
    pub linearizability_inconclusive: u64,
    /// Operations checked at their group's batch time (`--expiry`).
    pub timed_ops: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_local_p50_ms: f64,
    pub latency_global_p50_ms: f64,
    pub latency_local_p95_ms: f64,
    pub latency_global_p95_ms: f64,
    /// Mean over runs of completed single-group multicasts per virtual second.
    pub throughput_local: f64,
    pub throughput_global: f64,
    /// Simulated message deliveries per wall-clock second (simulator speed).
    pub deliveries_per_second: f64,
    /// Per group (by name), the peaks of its tables over all runs, and
    /// their bounds (`Params::client_table_bytes`, `Params::pending_bytes`;
    /// a run over a bound fails).
    pub tables: BTreeMap<String, TablePeaks>,
    pub client_table_bound: usize,
    pub pending_bound: usize,
    /// Requests and session queries the Byzantine clients sent, over all runs.
    pub byzantine_sends: u64,
}

impl scenario::Report for Report {
    fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{}: {} target groups, tree {} (+{} auxiliary), {} replicas/group (f={}) | workload {} {:.0}% global | {}\n",
            self.protocol,
            self.groups,
            self.tree,
            self.auxiliary_groups,
            self.replicas_per_group,
            self.f,
            self.workload,
            self.global_ratio * 100.0,
            self.conditions.heading(" per group")
        ));
        s.push_str(&self.summary.verdict_line());
        s.push_str(&format!(
            "  completed local {:>8} global {:>8}   a-deliveries {:>9}   view changes {:>5}   messages {:>10}   faults recorded {:>6}   expired {}\n",
            self.completed_local, self.completed_global, self.deliveries, self.view_changes, self.messages, self.summary.faults_recorded, self.expired
        ));
        s.push_str(&format!(
            "  latency p50 local {:.3} ms  global {:.3} ms   p95 local {:.3} ms  global {:.3} ms (virtual)\n",
            self.latency_local_p50_ms, self.latency_global_p50_ms, self.latency_local_p95_ms, self.latency_global_p95_ms
        ));
        s.push_str(&format!(
            "  throughput local {:.0} msg/s  global {:.0} msg/s (virtual)   {:.2} s wall\n",
            self.throughput_local, self.throughput_global, self.summary.wall_seconds
        ));
        if self.conditions.byzantine_clients > 0 {
            s.push_str(&format!(
                "  byzantine clients {} (sent {})   peak bytes per group, client table (bound {}) / pending (bound {}):",
                self.conditions.byzantine_clients, self.byzantine_sends, self.client_table_bound, self.pending_bound
            ));
            for (g, t) in &self.tables {
                s.push_str(&format!(
                    " {g} {}/{}",
                    t.client_table_bytes, t.pending_bytes
                ));
            }
            s.push('\n');
        }
        s.push_str(&self.summary.failing_lines());
        s
    }
}

/// The keys of a run's endpoints: replicas by node id, clients after.
struct Endpoints {
    mode: CryptoMode,
    topo: Arc<Topology>,
    replicas: BTreeMap<NodeId, Identity>,
    clients: ClientKeys,
}

impl Endpoints {
    fn new(cfg: &Config, topo: &Arc<Topology>) -> Self {
        let replicas = topo
            .groups()
            .iter()
            .flat_map(|g| g.members.iter().copied())
            .map(|m| (m, identity(1, m.0 as usize)))
            .collect();
        let clients = ClientKeys::new(cfg.groups * cfg.clients_per_group, cfg.byzantine_clients);
        Endpoints {
            mode: if cfg.modeled_crypto {
                CryptoMode::Modeled
            } else {
                CryptoMode::Real
            },
            topo: topo.clone(),
            replicas,
            clients,
        }
    }

    /// Replica `m` knows every replica and client, and its parent group's
    /// replicas as the clients they are of its group.
    fn replica(&self, m: NodeId) -> Crypto {
        let mut c = Crypto::new(Addr::Node(m), self.replicas[&m].clone(), self.mode);
        for (o, id) in &self.replicas {
            if *o != m {
                c.add_peer(Addr::Node(*o), id.public()).expect("valid key");
            }
        }
        for (a, id) in self.clients.all() {
            c.add_peer(a, id.public()).expect("valid key");
        }
        let g = self.topo.group_of(m).expect("member");
        if let Some(p) = self.topo.tree().parent(g) {
            for pm in &self.topo.group(p).expect("parent").members {
                let as_client = Addr::Client(ClientId::for_replica(*pm));
                c.add_peer(as_client, self.replicas[pm].public())
                    .expect("valid key");
            }
        }
        c
    }

    /// Replica `m` as a client of its children's groups.
    fn replica_as_client(&self, m: NodeId) -> Crypto {
        let me = Addr::Client(ClientId::for_replica(m));
        let mut c = Crypto::new(me, self.replicas[&m].clone(), self.mode);
        let g = self.topo.group_of(m).expect("member");
        for ch in self.topo.tree().children(g) {
            for cm in &self.topo.group(*ch).expect("child").members {
                c.add_peer(Addr::Node(*cm), self.replicas[cm].public())
                    .expect("valid key");
            }
        }
        c
    }

    /// Client `me` (keys `id`) knows every replica.
    fn client(&self, me: Addr, id: &Identity) -> Crypto {
        let replicas = self.replicas.iter().map(|(m, id)| (Addr::Node(*m), id));
        client_crypto(self.mode, me, id, replicas)
    }
}

/// Who misbehaves, per group: the initial leader first, the rest from the seed.
fn byzantine(cfg: &Config, topo: &Topology, rng: &mut ChaCha8Rng) -> BTreeSet<NodeId> {
    let mut byz = BTreeSet::new();
    if cfg.adversary == Adversary::None {
        return byz;
    }
    let k = cfg.byzantine_count.min(3 * cfg.f + 1);
    for g in topo.groups() {
        if k == 0 {
            continue;
        }
        byz.insert(g.members[0]);
        let mut rest: Vec<NodeId> = g.members[1..].to_vec();
        while byz.iter().filter(|b| g.members.contains(b)).count() < k {
            let i = rng.gen_range(0..rest.len());
            byz.insert(rest.swap_remove(i));
        }
    }
    byz
}

type ByzcastSim = Sim<Message, Input, Output>;

/// A replica's disk: the fold of its records ([`byzcast::Durable`]).
pub type ByzcastDisk = SharedDisk<byzcast::Record, byzcast::Durable>;

fn fold(d: &mut byzcast::Durable, r: byzcast::Record) {
    d.apply(r);
}

impl Config {
    /// Add correct replica `m`; with restarts, on a disk it restarts from
    /// ([`byzcast::Replica::recover`]).
    fn add_correct(
        &self,
        sim: &mut ByzcastSim,
        keys: &Rc<Endpoints>,
        topo: &Arc<Topology>,
        params: &Params,
        m: NodeId,
        region: usize,
    ) -> NodeIdx {
        let (addr, crypto) = (Addr::Node(m), keys.replica(m));
        let first =
            byzcast::Replica::new(m, topo.clone(), params.clone(), keys.replica_as_client(m))
                .expect("valid replica configuration");
        if !self.restarts() {
            let actor: ProtocolActor<Correct, Input, Output> = ProtocolActor::replica(first);
            return sim.add_node(addr, crypto, actor, region);
        }
        let disk: ByzcastDisk = Disk::shared(StorageModel::ssd(), byzcast::Durable::new(), fold);
        let (topo, params, keys) = (topo.clone(), params.clone(), keys.clone());
        let recover = move |kept: &byzcast::Durable| {
            let (t, p, c) = (topo.clone(), params.clone(), keys.replica_as_client(m));
            byzcast::Replica::recover(m, t, p, c, kept.clone(), &keys.replica(m))
                .map_err(|e| e.to_string())
        };
        let replica = ProtocolActor::replica;
        sim.add_durable_node(addr, crypto, region, disk, first, replica, recover)
    }
}

impl Scenario for Config {
    type Message = Message;
    type World = Audit;
    type Run = Run;
    type Report = Report;

    fn validate(&self) -> Result<(), SimError> {
        self.topology()?;
        self.network.model()?;
        Ok(())
    }

    fn seeds(&self) -> std::ops::Range<u64> {
        self.seed_start..self.seed_start + self.seeds
    }

    fn build(&self, seed: u64) -> Result<Setup<Self>, SimError> {
        let topo = self.topology()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb7ca_5700);
        let base = self.network.model()?;
        let mut params = Params::for_network(base.max_one_way());
        params.checkpoint_interval = 64;
        params.window = 256;
        params.batch_delay = self.batch_delay_us * 1_000;
        // idle client entries expire within a run and the session floor
        // rises at every checkpoint: clients move to newer sessions, and a
        // child group's entries for its parents' forward streams (pinned,
        // see `byzcast::replica`) must never expire nor be refused; the
        // pending tables are small enough for Byzantine clients to fill
        limits(&mut params, self.client_expiry_slots);
        let fixed = self.duration_ms.map(|d| (d * MILLIS as f64) as Time);
        let (net, stabilize) = match fixed {
            Some(_) => (base.clone(), 0),
            None => base.clone().turbulent(),
        };
        let regions = net.regions.len().max(1);
        let mut sim: ByzcastSim = Sim::new(seed, net, CpuModel::calibrated());
        let keys = Rc::new(Endpoints::new(self, &topo));
        let byz = byzantine(self, &topo, &mut rng);
        let team = Team::new(self.adversary, topo.clone(), params.request_timeout);
        let make = |m: NodeId, policy| -> ProtocolActor<Rep, Input, Output> {
            let crypto = keys.replica_as_client(m);
            let r = byzcast::Replica::with_policy(m, topo.clone(), params.clone(), crypto, policy)
                .expect("valid replica configuration");
            ProtocolActor::replica(r)
        };

        let mut replicas: ReplicaNodes = BTreeMap::new();
        let mut correct = Vec::new();
        for g in topo.groups() {
            let mut group = Vec::new();
            for (pos, &m) in g.members.iter().enumerate() {
                let region = pos % regions;
                let crypto = || keys.replica(m);
                if byz.contains(&m) {
                    let placed = team.add(&mut sim, &mut rng, m, region, crypto, |p| make(m, p));
                    for idx in placed {
                        replicas.insert(idx, (g.id, m, true));
                    }
                } else {
                    let idx = self.add_correct(&mut sim, &keys, &topo, &params, m, region);
                    replicas.insert(idx, (g.id, m, false));
                    group.push(idx);
                }
            }
            correct.push(group);
        }
        let crashes = if self.restarts() {
            let opts = CrashOptions::standard(params.request_timeout);
            CrashPlan::draw(seed, &correct, self.f, self.requests, &opts)
        } else {
            CrashPlan::none()
        };

        let mut client_nodes = Vec::new();
        for (c, (addr, id)) in keys.clients.honest.iter().enumerate() {
            let client = byzcast::Client::new(ClientId(c as u64 + 1), topo.clone(), params.clone());
            let actor: ProtocolActor<byzcast::Client, Input, Output> =
                ProtocolActor::client(client);
            client_nodes.push(sim.add_node(*addr, keys.client(*addr, id), actor, c % regions));
        }

        let mut hostile = Vec::new();
        for (addr, id, kind, k) in &keys.clients.hostile {
            let id_of = addr.client().expect("a client address");
            let h = clients::ByzHostile::new(id_of, topo.clone(), &params, *kind, *k);
            let actor: ProtocolActor<clients::ByzHostile, Input, Output> = ProtocolActor::client(h);
            let crypto = keys.client(*addr, id);
            hostile.push(sim.add_node(*addr, crypto, actor, k % regions));
        }

        let workload = workload::Workload::new(self, client_nodes.len(), seed, fixed);
        let trace = self.trace.is_some();
        let mut world = Audit::new(
            seed,
            topo,
            replicas,
            client_nodes.clone(),
            workload,
            fixed.is_none(),
            trace,
        )
        .with_crashes(crashes)
        .with_expiry(self.expiry)
        .with_bounds(params.clone(), hostile, keys.clients.hostile_ids());
        // clients start staggered by 50 µs
        for (cl, idx) in client_nodes.iter().enumerate() {
            let at = cl as Time * 50 * 1_000;
            if let Some(input) = world.workload.next(cl, at) {
                sim.schedule_input(at, *idx, Input::Client(input));
            }
        }
        let limits = match fixed {
            Some(end) => Limits {
                fixed_duration: true,
                ..Limits::until(end)
            },
            None => Limits {
                // let lagging correct replicas catch up before the final checks
                grace: 4 * params.request_timeout + 2 * SECS,
                ..Limits::until(stabilize + 120 * SECS + 400 * base.max_one_way())
            },
        };
        Ok(Setup { sim, world, limits })
    }

    fn audit(&self, sim: &mut ByzcastSim, world: Audit, ending: Ending, out: &mut Outcome) -> Run {
        let window = self
            .duration_ms
            .map(|d| ((d * MILLIS as f64) as Time).saturating_sub(self.warmup()));
        world.finish(sim, ending, window, out)
    }

    fn replay_command(&self, seed: u64) -> String {
        let mut c = format!(
            "byzscale sim byzcast --groups {} --tree {} --global-ratio {} --workload {} --protocol {} \
             --byzantine {} --byzantine-count {} --faulty {} --requests {} --clients-per-group {} \
             --network {} --seeds 1 --seed-start {seed}",
            self.groups,
            self.tree.name(),
            self.global_ratio,
            self.workload.name(),
            self.protocol.name(),
            self.adversary.name(),
            self.byzantine_count,
            self.f,
            self.requests,
            self.clients_per_group,
            self.network.name()
        );
        if let Some(d) = self.duration_ms {
            c.push_str(&format!(
                " --duration-ms {d} --warmup-ms {}",
                self.warmup_ms
            ));
        }
        if self.batch_delay_us > 0 {
            c.push_str(&format!(" --batch-delay-us {}", self.batch_delay_us));
        }
        if self.modeled_crypto {
            c.push_str(" --modeled-crypto");
        }
        if self.transactions {
            c.push_str(" --transactions");
        }
        if self.expiry {
            c.push_str(" --expiry");
        }
        if self.restarts() {
            c.push_str(" --crash-restart");
        }
        if self.client_expiry_slots != CLIENT_EXPIRY_SLOTS {
            c.push_str(&format!(
                " --client-expiry-slots {}",
                self.client_expiry_slots
            ));
        }
        if self.byzantine_clients > 0 {
            c.push_str(&format!(" --byzantine-clients {}", self.byzantine_clients));
        }
        c
    }

    fn summarize(&self, sweep: &Sweep<Run>) -> Report {
        let local = sweep.sorted(|r| &r.run.latencies_local);
        let global = sweep.sorted(|r| &r.run.latencies_global);
        let mut all: Vec<Time> = local.iter().chain(&global).copied().collect();
        all.sort_unstable();
        let shape = self.topology().map(|t| t.tree().clone());
        let (tree, auxiliary, groups) = match &shape {
            Ok(t) => (t.describe(), t.auxiliary().count(), t.len()),
            Err(_) => (self.tree.name(), 0, self.groups),
        };
        let n = 3 * self.f + 1;
        let messages = sweep.sum(|r| r.outcome.messages);
        let mut params = Params::default();
        limits(&mut params, self.client_expiry_slots);
        let mut tables: BTreeMap<String, TablePeaks> = BTreeMap::new();
        for r in &sweep.runs {
            for (g, t) in &r.run.tables {
                let name = match &shape {
                    Ok(t) => t.name(*g).to_string(),
                    Err(_) => g.to_string(),
                };
                let e = tables.entry(name).or_default();
                *e = e.max(*t);
            }
        }
        Report {
            protocol: self.protocol.name(),
            groups: self.groups,
            tree,
            auxiliary_groups: auxiliary,
            replicas: groups * n,
            replicas_per_group: n,
            f: self.f,
            workload: self.workload.name(),
            global_ratio: self.global_ratio,
            conditions: self.conditions(),
            summary: sweep.summary(),
            completed_requests: sweep.sum(|r| r.run.completed_local + r.run.completed_global),
            completed_local: sweep.sum(|r| r.run.completed_local),
            completed_global: sweep.sum(|r| r.run.completed_global),
            expired: sweep.sum(|r| r.run.expired),
            deliveries: sweep.sum(|r| r.run.deliveries),
            view_changes: sweep.sum(|r| r.run.view_changes),
            messages,
            linearizability_inconclusive: sweep.count(|r| r.run.linearizability_inconclusive),
            timed_ops: sweep.sum(|r| r.run.timed_ops),
            latency_p50_ms: percentile(&all, 0.5),
            latency_p99_ms: percentile(&all, 0.99),
            latency_local_p50_ms: percentile(&local, 0.5),
            latency_global_p50_ms: percentile(&global, 0.5),
            latency_local_p95_ms: percentile(&local, 0.95),
            latency_global_p95_ms: percentile(&global, 0.95),
            throughput_local: sweep.mean(|r| r.run.throughput_local),
            throughput_global: sweep.mean(|r| r.run.throughput_global),
            deliveries_per_second: messages as f64 / sweep.wall_seconds.max(1e-9),
            tables,
            client_table_bound: params.client_table_bytes,
            pending_bound: params.pending_bytes,
            byzantine_sends: sweep.sum(|r| r.run.byzantine_sends),
        }
    }

    fn trace_path(&self) -> Option<&Path> {
        self.trace.as_deref()
    }
}

#[cfg(test)]
mod tests;
