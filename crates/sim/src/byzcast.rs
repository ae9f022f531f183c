//! `byzscale sim byzcast`: ByzCast (or the naive baseline) over G target
//! groups and an overlay tree, closed-loop KV clients multicasting local and
//! global messages, Byzantine replicas, and every checker, over many seeds.
//!
//! A run builds 3F+1 replicas of [`byzscale_byzcast::byzcast::Replica`] per
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
//! | `silent`, `replay`, `slow`, `twins` | the generic wrappers of [`crate::adversary`], as in `sim smr` |
//! | `equivocate` | a leader proposes a different batch (same requests reversed, or one fewer) to half of the group |
//! | `mixed` | each picks one of the above, forging and corrupting included, and one of the ByzCast attacks below, from the seed, and switches over time |
//! | `early` | ByzCast parent replica forwarding early: it forwards every client multicast the moment it arrives, before its group orders it, numbering messages in the order they first reached any colluder (digest §1.4's attack) |
//! | `forge` | forwards a forged message (never multicast) in place of every real one, and corrupts the results it reports |
//! | `withhold` | never forwards to its children |
//! | `reorder` | swaps the messages of consecutive forwards to each child |
//!
//! The K Byzantine replicas of a group collude (shared state), so K > F shows
//! what the checkers catch when a group's fault threshold is exceeded.
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
//!   same message at each position ([`LogChecker`]), and at the end each has
//!   reached the group's last position;
//! - validity: at the end every multicast is in the log of every destination;
//! - integrity: a correct replica a-delivers a message at most once, only if
//!   it was multicast (same id, destinations and payload), and only at a
//!   destination group;
//! - acyclic order: the relation "some correct replica delivers m before m′"
//!   over all groups has no cycle ([`OrderChecker`]);
//! - atomicity across shards: the merged KV replies are exactly those of one
//!   serial execution of all multicasts in an order extending every group's
//!   delivery order (multi-shard MSET/MGET are atomic). Atomic multicast does
//!   not order messages of different groups in real time, so a history with
//!   multi-group messages need not be linearizable; histories with
//!   single-group messages only are checked for linearizability;
//! - liveness: every multicast completes before the deadline.

use crate::adversary::{Behavior, Byzantine, MixedPlan, Mutator};
use crate::check::linearizability::{self, Op};
use crate::check::order::{cycle_text, OrderChecker};
use crate::check::LogChecker;
use crate::cpu::CpuModel;
use crate::engine::{Control, NodeIdx, ProtocolActor, Sim};
use crate::net_model::NetworkChoice;
use crate::scenario::SimError;
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_byzcast::kv as shard;
use byzscale_byzcast::{
    self as byzcast, Forward, ForwardPolicy, McastMsg, Message, Mode, MsgId, Results, Topology,
    Tree, TreeSpec,
};
use byzscale_core::crypto::{digest, Crypto, CryptoMode, Digest, Identity};
use byzscale_core::protocol::{Time, MILLIS, SECS};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_smr as smr;
use byzscale_smr::{GroupInfo, Params};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

// ---------------------------------------------------------------- configuration

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Uniform,
    Skewed,
    Local,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Uniform => "uniform",
            WorkloadKind::Skewed => "skewed",
            WorkloadKind::Local => "local",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Adversary {
    None,
    Silent,
    Replay,
    Slow,
    Equivocate,
    Twins,
    Mixed,
    Early,
    Forge,
    Withhold,
    Reorder,
}

impl Adversary {
    pub fn name(self) -> &'static str {
        match self {
            Adversary::None => "none",
            Adversary::Silent => "silent",
            Adversary::Replay => "replay",
            Adversary::Slow => "slow",
            Adversary::Equivocate => "equivocate",
            Adversary::Twins => "twins",
            Adversary::Mixed => "mixed",
            Adversary::Early => "early",
            Adversary::Forge => "forge",
            Adversary::Withhold => "withhold",
            Adversary::Reorder => "reorder",
        }
    }
    pub const ALL: [Adversary; 10] = [
        Adversary::Silent,
        Adversary::Replay,
        Adversary::Slow,
        Adversary::Equivocate,
        Adversary::Twins,
        Adversary::Mixed,
        Adversary::Early,
        Adversary::Forge,
        Adversary::Withhold,
        Adversary::Reorder,
    ];
    /// The ByzCast-specific attacks of a Byzantine parent replica.
    pub const PARENT: [Adversary; 4] = [
        Adversary::Early,
        Adversary::Forge,
        Adversary::Withhold,
        Adversary::Reorder,
    ];
}

#[derive(Clone, Debug)]
pub struct ByzcastSimConfig {
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
    pub trace: Option<PathBuf>,
    pub command_line: String,
}

impl ByzcastSimConfig {
    /// A small default: 2 target groups under one auxiliary, 30% global, LAN.
    pub fn new(groups: usize) -> Self {
        ByzcastSimConfig {
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
            network: NetworkChoice::Preset("lan".into()),
            modeled_crypto: false,
            duration_ms: None,
            warmup_ms: 0.0,
            batch_delay_us: 0,
            trace: None,
            command_line: String::new(),
        }
    }

    /// The command that replays `seed` alone.
    pub fn replay_command(&self, seed: u64) -> String {
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
        c
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
        let groups = tree
            .groups()
            .map(|g| {
                let members = (0..n).map(|i| NodeId(g.0 * n as u32 + i as u32)).collect();
                GroupInfo::new(g, members, qs.clone())
            })
            .collect();
        Topology::new(tree, groups, self.protocol)
            .map(Arc::new)
            .map_err(|e| SimError::Config(e.to_string()))
    }
}

// ---------------------------------------------------------------- adversaries

/// State shared by the colluding Byzantine replicas of one group.
#[derive(Default)]
struct Collusion {
    /// Early forwarding: per child, the indices handed out in first-seen order.
    next: BTreeMap<GroupId, u64>,
    assigned: BTreeMap<(GroupId, MsgId), u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    Early,
    Forge,
    Withhold,
    Reorder,
}

/// The replicas' [`ForwardPolicy`]: honest, or one of the parent attacks.
pub struct SimPolicy {
    attack: Option<Attack>,
    collusion: Rc<RefCell<Collusion>>,
    topo: Arc<Topology>,
    held: BTreeMap<GroupId, Forward>,
}

impl SimPolicy {
    fn honest(topo: Arc<Topology>) -> Self {
        SimPolicy {
            attack: None,
            collusion: Rc::default(),
            topo,
            held: BTreeMap::new(),
        }
    }
    fn early_index(&self, child: GroupId, id: MsgId) -> (u64, bool) {
        let mut c = self.collusion.borrow_mut();
        if let Some(k) = c.assigned.get(&(child, id)) {
            return (*k, false);
        }
        let next = c.next.entry(child).or_insert(0);
        *next += 1;
        let k = *next;
        c.assigned.insert((child, id), k);
        (k, true)
    }
    fn forged(&self, child: GroupId, k: u64) -> McastMsg {
        let target = self
            .topo
            .tree()
            .reach(child)
            .iter()
            .next()
            .copied()
            .unwrap_or(GroupId(0));
        McastMsg {
            id: MsgId {
                client: ClientId(0xBAD_0000),
                n: k * 1000 + child.0 as u64,
            },
            dst: vec![target],
            payload: KvOp::Set(b"forged".to_vec(), format!("k{k}").into_bytes()).encode(),
        }
    }
}

impl ForwardPolicy for SimPolicy {
    fn forwards(&mut self, planned: Vec<Forward>, _rng: &mut dyn RngCore) -> Vec<Forward> {
        match self.attack {
            None => planned,
            Some(Attack::Withhold) => Vec::new(),
            Some(Attack::Forge) => planned
                .into_iter()
                .map(|f| Forward {
                    msg: self.forged(f.child, f.k),
                    ..f
                })
                .collect(),
            Some(Attack::Early) => planned
                .into_iter()
                .filter_map(|f| {
                    let (k, fresh) = self.early_index(f.child, f.msg.id);
                    fresh.then_some(Forward { k, ..f })
                })
                .collect(),
            Some(Attack::Reorder) => {
                let mut out = Vec::new();
                for f in planned {
                    match self.held.remove(&f.child) {
                        Some(h) => {
                            // swap the messages of two consecutive indices
                            out.push(Forward {
                                child: h.child,
                                k: h.k,
                                msg: f.msg,
                            });
                            out.push(Forward {
                                child: f.child,
                                k: f.k,
                                msg: h.msg,
                            });
                        }
                        None => {
                            self.held.insert(f.child, f);
                        }
                    }
                }
                out
            }
        }
    }
    fn on_client_multicast(
        &mut self,
        m: &McastMsg,
        children: &[GroupId],
        _rng: &mut dyn RngCore,
    ) -> Vec<Forward> {
        if self.attack != Some(Attack::Early) {
            return Vec::new();
        }
        children
            .iter()
            .filter_map(|c| {
                let (k, fresh) = self.early_index(*c, m.id);
                fresh.then(|| Forward {
                    child: *c,
                    k,
                    msg: m.clone(),
                })
            })
            .collect()
    }
    fn results(&mut self, _id: MsgId, results: Results, _rng: &mut dyn RngCore) -> Results {
        if self.attack != Some(Attack::Forge) {
            return results;
        }
        results
            .into_keys()
            .map(|g| (g, KvReply::Error("forged".into()).encode()))
            .collect()
    }
}

/// Protocol surgery for the generic wrappers: a conflicting proposal, and
/// corrupted votes, results and requests.
struct MessageSurgery;

impl Mutator<Message> for MessageSurgery {
    fn equivocate(&self, m: &Message, _variant: u64, _crypto: &Crypto) -> Option<Message> {
        use byzscale_smr::Message as M;
        match m {
            Message::Smr(M::Propose { view, slot, batch }) => {
                let mut b = batch.clone();
                let requests = std::sync::Arc::make_mut(&mut b.requests);
                if requests.len() > 1 {
                    requests.reverse();
                } else {
                    requests.clear();
                }
                Some(Message::Smr(M::Propose {
                    view: *view,
                    slot: *slot,
                    batch: b,
                }))
            }
            _ => None,
        }
    }
    fn corrupt(&self, m: &Message, rng: &mut dyn RngCore, _crypto: &Crypto) -> Option<Message> {
        use byzscale_smr::Message as M;
        match m {
            Message::Smr(M::Write { view, slot, digest }) => {
                let mut d = *digest;
                d[0] ^= 1;
                Some(Message::Smr(M::Write {
                    view: *view,
                    slot: *slot,
                    digest: d,
                }))
            }
            Message::Smr(M::Accept { view, slot, .. }) => {
                let mut d = [0u8; 32];
                rng.fill_bytes(&mut d);
                Some(Message::Smr(M::Accept {
                    view: *view,
                    slot: *slot,
                    digest: d,
                }))
            }
            Message::Smr(M::Request(r)) => {
                let mut r = r.clone();
                if let Some(b) = r.op.last_mut() {
                    *b ^= 0xff;
                }
                Some(Message::Smr(M::Request(r)))
            }
            Message::Result { id, results } => Some(Message::Result {
                id: *id,
                results: results.keys().map(|g| (*g, b"corrupt".to_vec())).collect(),
            }),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- runs

/// Inputs and outputs of the nodes of a ByzCast simulation.
#[derive(Debug)]
pub enum SimIn {
    Client(byzcast::client::Input),
    Replica(byzcast::replica::Input),
}

#[derive(Debug)]
pub enum SimOut {
    Client(byzcast::client::Output),
    Replica(byzcast::replica::Output),
}

type Rep = byzcast::Replica<SimPolicy>;

/// One run's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub seed: u64,
    pub violations: Vec<String>,
    pub violation_count: usize,
    pub liveness: Option<String>,
    pub completed_local: u64,
    pub completed_global: u64,
    pub deliveries: u64,
    pub view_changes: u64,
    pub messages: u64,
    pub faults_recorded: u64,
    pub linearizability_inconclusive: bool,
    pub virtual_ms: f64,
    /// Completions per virtual second in the measured window.
    pub throughput_local: f64,
    pub throughput_global: f64,
    #[serde(skip)]
    pub latencies_local: Vec<Time>,
    #[serde(skip)]
    pub latencies_global: Vec<Time>,
    #[serde(skip)]
    pub trace: Vec<String>,
}

pub use crate::runner::FailingSeed;

/// The JSON of `byzscale sim byzcast --json`.
#[derive(Clone, Debug, Serialize)]
pub struct ByzcastSimReport {
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
    pub byzantine: &'static str,
    pub byzantine_count: usize,
    pub network: String,
    pub crypto: &'static str,
    pub runs: u64,
    pub safety_violations: u64,
    pub liveness_failures: u64,
    pub completed_requests: u64,
    pub completed_local: u64,
    pub completed_global: u64,
    /// a-deliveries by correct replicas.
    pub deliveries: u64,
    pub view_changes: u64,
    pub messages: u64,
    pub faults_recorded: u64,
    pub linearizability_inconclusive: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_local_p50_ms: f64,
    pub latency_global_p50_ms: f64,
    pub latency_local_p95_ms: f64,
    pub latency_global_p95_ms: f64,
    /// Mean over runs of completed single-group multicasts per virtual second.
    pub throughput_local: f64,
    pub throughput_global: f64,
    pub wall_seconds: f64,
    /// Simulated message deliveries per wall-clock second (simulator speed).
    pub deliveries_per_second: f64,
    pub failing_seeds: Vec<FailingSeed>,
}

impl ByzcastSimReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{}: {} target groups, tree {} (+{} auxiliary), {} replicas/group (f={}) | workload {} {:.0}% global | adversary {} ×{} per group | network {} | crypto {}\n",
            self.protocol,
            self.groups,
            self.tree,
            self.auxiliary_groups,
            self.replicas_per_group,
            self.f,
            self.workload,
            self.global_ratio * 100.0,
            self.byzantine,
            self.byzantine_count,
            self.network,
            self.crypto
        ));
        s.push_str(&format!(
            "  runs {:>6}   safety violations {:>4}   liveness failures {:>4}\n",
            self.runs, self.safety_violations, self.liveness_failures
        ));
        s.push_str(&format!(
            "  completed local {:>8} global {:>8}   a-deliveries {:>9}   view changes {:>5}   messages {:>10}   faults recorded {:>6}\n",
            self.completed_local, self.completed_global, self.deliveries, self.view_changes, self.messages, self.faults_recorded
        ));
        s.push_str(&format!(
            "  latency p50 local {:.3} ms  global {:.3} ms   p95 local {:.3} ms  global {:.3} ms (virtual)\n",
            self.latency_local_p50_ms, self.latency_global_p50_ms, self.latency_local_p95_ms, self.latency_global_p95_ms
        ));
        s.push_str(&format!(
            "  throughput local {:.0} msg/s  global {:.0} msg/s (virtual)   {:.2} s wall\n",
            self.throughput_local, self.throughput_global, self.wall_seconds
        ));
        for f in self.failing_seeds.iter().take(10) {
            s.push_str(&format!(
                "  FAIL seed {}: {}\n    replay: {}\n",
                f.seed, f.reason, f.command
            ));
        }
        s
    }
}

use crate::runner::identity;

/// Keys owned by each target group: `HOT` plain keys and 2 counters each.
struct KeyPool {
    keys: Vec<Vec<Vec<u8>>>,
    counters: Vec<Vec<Vec<u8>>>,
}

const HOT: usize = 4;

impl KeyPool {
    fn new(targets: usize) -> Self {
        let fill = |prefix: &str, want: usize| {
            let mut out = vec![Vec::new(); targets];
            let mut i = 0;
            while out.iter().any(|v: &Vec<Vec<u8>>| v.len() < want) {
                let k = format!("{prefix}{i}").into_bytes();
                let g = shard::shard_of(&k, targets).0 as usize;
                if out[g].len() < want {
                    out[g].push(k);
                }
                i += 1;
            }
            out
        };
        KeyPool {
            keys: fill("k", HOT),
            counters: fill("n", 2),
        }
    }
    fn key(&self, g: GroupId, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let v = &self.keys[g.0 as usize];
        v[rng.gen_range(0..v.len())].clone()
    }
}

fn next_op(pool: &KeyPool, rng: &mut ChaCha8Rng, dst: &[GroupId], val: Vec<u8>) -> KvOp {
    if dst.len() == 1 {
        let g = dst[0];
        match rng.gen_range(0..100) {
            0..=29 => KvOp::Set(pool.key(g, rng), val),
            30..=54 => KvOp::Get(pool.key(g, rng)),
            55..=69 => {
                let c = &pool.counters[g.0 as usize];
                KvOp::Incr(c[rng.gen_range(0..c.len())].clone())
            }
            70..=82 => KvOp::MSet(vec![
                (pool.key(g, rng), val.clone()),
                (pool.key(g, rng), val),
            ]),
            83..=94 => KvOp::MGet(vec![pool.key(g, rng), pool.key(g, rng)]),
            _ => KvOp::Del(vec![pool.key(g, rng)]),
        }
    } else {
        // one key in every destination, so the destination set is exactly `dst`
        let keys: Vec<Vec<u8>> = dst.iter().map(|g| pool.key(*g, rng)).collect();
        match rng.gen_range(0..100) {
            0..=49 => KvOp::MSet(keys.into_iter().map(|k| (k, val.clone())).collect()),
            50..=89 => KvOp::MGet(keys),
            _ => KvOp::Exists(keys),
        }
    }
}

struct Inflight {
    op: KvOp,
    dst: Vec<GroupId>,
    invoked: Time,
}

struct Observer<'a> {
    cfg: &'a ByzcastSimConfig,
    seed: u64,
    topo: Arc<Topology>,
    pool: KeyPool,
    /// replica node → (its group, its id, Byzantine)
    replica_nodes: BTreeMap<NodeIdx, (GroupId, NodeId, bool)>,
    client_nodes: BTreeMap<NodeIdx, usize>,
    client_idx: Vec<NodeIdx>,
    quota: Vec<u64>,
    issued: Vec<u64>,
    rng: ChaCha8Rng,
    inflight: BTreeMap<(usize, u64), Inflight>,
    /// Every multicast: destinations and payload digest.
    submitted: BTreeMap<MsgId, (Vec<GroupId>, Digest)>,
    logs: BTreeMap<GroupId, LogChecker<NodeId, MsgId>>,
    /// Highest position each correct replica reached (delivered or skipped to).
    reached: BTreeMap<NodeId, u64>,
    delivered_by: BTreeMap<NodeId, BTreeSet<MsgId>>,
    order: OrderChecker<MsgId, NodeId>,
    history: Option<Vec<Op>>,
    /// Completed multicasts: the operation and the merged reply.
    replies: Option<BTreeMap<MsgId, (KvOp, KvReply)>>,
    any_global: bool,
    violations: Vec<String>,
    violation_count: usize,
    views: BTreeMap<NodeId, u64>,
    deliveries: u64,
    completed_local: u64,
    completed_global: u64,
    window_local: u64,
    window_global: u64,
    warmup: Time,
    latencies_local: Vec<Time>,
    latencies_global: Vec<Time>,
    stop_when_done: bool,
    trace: Option<Vec<String>>,
}

impl Observer<'_> {
    fn violation(&mut self, s: String) {
        self.violation_count += 1;
        if self.violations.len() < 10 {
            self.violations.push(s);
        }
    }

    fn gname(&self, g: GroupId) -> String {
        self.topo.tree().name(g).to_string()
    }

    fn destinations(&mut self, c: usize) -> Vec<GroupId> {
        let g = self.cfg.groups;
        let home = GroupId((c % g) as u32);
        let global = g > 1
            && self.cfg.workload != WorkloadKind::Local
            && self.rng.gen_bool(self.cfg.global_ratio);
        if !global {
            return vec![home];
        }
        match self.cfg.workload {
            WorkloadKind::Uniform | WorkloadKind::Local => {
                let a = self.rng.gen_range(0..g);
                let mut b = self.rng.gen_range(0..g - 1);
                if b >= a {
                    b += 1;
                }
                let mut d = vec![GroupId(a as u32), GroupId(b as u32)];
                d.sort();
                d
            }
            WorkloadKind::Skewed => {
                let pairs = g.div_ceil(2);
                let p = self.rng.gen_range(0..pairs);
                let a = 2 * p;
                let b = if a + 1 < g { a + 1 } else { 0 };
                let mut d = vec![GroupId(a as u32), GroupId(b as u32)];
                d.sort();
                d.dedup();
                d
            }
        }
    }

    fn next_submission(&mut self, c: usize, now: Time) -> Option<SimIn> {
        if self.issued[c] >= self.quota[c] {
            return None;
        }
        self.issued[c] += 1;
        let n = self.issued[c];
        let dst = self.destinations(c);
        let op = next_op(
            &self.pool,
            &mut self.rng,
            &dst,
            format!("c{c}-{n}").into_bytes(),
        );
        debug_assert_eq!(shard::groups_of(&op, self.cfg.groups), dst);
        let payload = op.encode();
        self.any_global |= dst.len() > 1;
        let id = MsgId {
            client: ClientId(c as u64 + 1),
            n,
        };
        self.submitted.insert(id, (dst.clone(), digest(&payload)));
        self.inflight.insert(
            (c, n),
            Inflight {
                op,
                dst: dst.clone(),
                invoked: now,
            },
        );
        Some(SimIn::Client(byzcast::client::Input::Multicast {
            dst,
            payload,
        }))
    }

    fn done(&self) -> bool {
        self.inflight.is_empty() && self.issued.iter().zip(&self.quota).all(|(i, q)| i >= q)
    }

    fn on_deliver(
        &mut self,
        at: Time,
        node: NodeId,
        byz: bool,
        group: GroupId,
        index: u64,
        msg: McastMsg,
    ) {
        if let Some(t) = &mut self.trace {
            let dst: Vec<String> = msg
                .dst
                .iter()
                .map(|g| self.topo.tree().name(*g).to_string())
                .collect();
            t.push(
                serde_json::json!({
                    "type": "deliver", "run": self.seed, "group": self.topo.tree().name(group), "node": node.0,
                    "byzantine": byz, "index": index, "msg": msg.id.to_string(), "dst": dst, "at_ns": at,
                })
                .to_string(),
            );
        }
        if byz {
            return;
        }
        self.deliveries += 1;
        self.logs
            .entry(group)
            .or_default()
            .decide(node, index, msg.id);
        let r = self.reached.entry(node).or_insert(0);
        *r = (*r).max(index);
        if !msg.dst.contains(&group) {
            self.violation(format!(
                "integrity: {node} of {} delivered {} addressed to {:?}",
                self.gname(group),
                msg.id,
                msg.dst
            ));
        }
        match self.submitted.get(&msg.id) {
            None => self.violation(format!(
                "integrity: {node} of {} delivered {}, which no client multicast",
                self.gname(group),
                msg.id
            )),
            Some((dst, d)) if *dst != msg.dst || *d != digest(&msg.payload) => self.violation(format!(
                "integrity: {node} of {} delivered {} with destinations or payload other than multicast",
                self.gname(group),
                msg.id
            )),
            Some(_) => {}
        }
        if !self.delivered_by.entry(node).or_default().insert(msg.id) {
            self.violation(format!(
                "integrity: {node} of {} delivered {} twice",
                self.gname(group),
                msg.id
            ));
        }
        self.order.deliver(node, group, msg.id);
    }

    fn on_done(
        &mut self,
        at: Time,
        c: usize,
        n: u64,
        results: Result<Results, String>,
        ctl: &mut Control<SimIn>,
    ) {
        let Some(inf) = self.inflight.remove(&(c, n)) else {
            self.violation(format!(
                "integrity: client {} completed multicast {n} twice",
                c + 1
            ));
            return;
        };
        let reply = match results {
            Ok(r) => shard::merge(&inf.op, &r, self.cfg.groups),
            Err(e) => {
                self.violation(format!(
                    "validity: client {}'s multicast {n} failed: {e}",
                    c + 1
                ));
                KvReply::Error(e)
            }
        };
        if let Some(t) = &mut self.trace {
            let dst: Vec<String> = inf
                .dst
                .iter()
                .map(|g| self.topo.tree().name(*g).to_string())
                .collect();
            t.push(
                serde_json::json!({
                    "type": "complete", "run": self.seed, "client": c + 1, "msg": format!("{}:{n}", c + 1),
                    "dst": dst, "op": inf.op.to_string(), "result": reply.to_string(),
                    "invoked_ns": inf.invoked, "completed_ns": at,
                })
                .to_string(),
            );
        }
        let global = inf.dst.len() > 1;
        if global {
            self.completed_global += 1;
        } else {
            self.completed_local += 1;
        }
        if inf.invoked >= self.warmup {
            let lat = at.saturating_sub(inf.invoked);
            if global {
                self.window_global += 1;
                self.latencies_global.push(lat);
            } else {
                self.window_local += 1;
                self.latencies_local.push(lat);
            }
        }
        if let Some(r) = &mut self.replies {
            let id = MsgId {
                client: ClientId(c as u64 + 1),
                n,
            };
            r.insert(id, (inf.op.clone(), reply.clone()));
        }
        if let Some(h) = &mut self.history {
            h.push(Op::new(c as u64 + 1, inf.invoked, at, inf.op, reply));
        }
        if let Some(input) = self.next_submission(c, at) {
            ctl.input(self.client_idx[c], input);
        }
        if self.stop_when_done && self.done() {
            ctl.stop();
        }
    }
}

impl crate::engine::Observer<SimIn, SimOut> for Observer<'_> {
    fn on_output(
        &mut self,
        at: Time,
        node: NodeIdx,
        _addr: Addr,
        out: SimOut,
        ctl: &mut Control<SimIn>,
    ) {
        match out {
            SimOut::Client(byzcast::client::Output::Done { n, results, .. }) => {
                let Some(&c) = self.client_nodes.get(&node) else {
                    return;
                };
                self.on_done(at, c, n, results, ctl);
            }
            SimOut::Replica(out) => {
                let Some(&(group, id, byz)) = self.replica_nodes.get(&node) else {
                    return;
                };
                match out {
                    byzcast::replica::Output::Deliver {
                        group: g,
                        index,
                        msg,
                    } => {
                        if g != group && !byz {
                            self.violation(format!(
                                "integrity: {id} of {} delivered as {}",
                                self.gname(group),
                                self.gname(g)
                            ));
                        }
                        self.on_deliver(at, id, byz, group, index, msg);
                    }
                    byzcast::replica::Output::Skipped { to_index, .. } if !byz => {
                        self.logs.entry(group).or_default().skip_to(id, to_index);
                        self.order.skip(&id);
                        let r = self.reached.entry(id).or_insert(0);
                        *r = (*r).max(to_index);
                    }
                    byzcast::replica::Output::Smr(smr::replica::Output::ViewChanged {
                        view,
                        ..
                    }) if !byz => {
                        let v = self.views.entry(id).or_insert(0);
                        *v = (*v).max(view);
                    }
                    _ => {}
                }
            }
        }
    }
}

use crate::runner::percentile_ms as percentile;

/// Execute every completed multicast on one unsharded KV model in `order`
/// (an order extending every group's deliveries) and report each reply that
/// differs from what the client got.
pub fn serial_replay(order: &[MsgId], replies: &BTreeMap<MsgId, (KvOp, KvReply)>) -> Vec<String> {
    let mut model = byzscale_apps::kv::Model::new();
    let mut out = Vec::new();
    for id in order {
        let Some((op, got)) = replies.get(id) else {
            continue;
        };
        let want = model.apply(op);
        if want != *got {
            out.push(format!(
                "atomicity: {id} {op} returned {got}, but executing every multicast in the delivery order gives {want}"
            ));
        }
    }
    out
}

/// Run one seed.
pub fn run_one(cfg: &ByzcastSimConfig, seed: u64) -> Result<RunResult, SimError> {
    let topo = cfg.topology()?;
    let tree = topo.tree().clone();
    let n = 3 * cfg.f + 1;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb7ca_5700);
    let base = cfg.network.model()?;
    let mut params = Params::for_network(base.max_one_way());
    params.checkpoint_interval = 64;
    params.window = 256;
    params.batch_delay = cfg.batch_delay_us * 1_000;
    let throughput_mode = cfg.duration_ms.is_some();
    let stabilize = SECS + 20 * base.max_one_way();
    let net = if throughput_mode {
        base.clone()
    } else {
        base.clone()
            .with_loss(0.01)
            .with_duplicate(0.01)
            .with_reorder(0.05, 0)
            .with_stabilize_at(stabilize)
    };
    let regions = net.regions.len().max(1);
    let mut sim: Sim<Message, SimIn, SimOut> = Sim::new(seed, net, CpuModel::calibrated());
    let mode = if cfg.modeled_crypto {
        CryptoMode::Modeled
    } else {
        CryptoMode::Real
    };

    // identities: replicas by node id, clients after
    let nodes: Vec<NodeId> = topo
        .groups()
        .iter()
        .flat_map(|g| g.members.iter().copied())
        .collect();
    let replica_ids: BTreeMap<NodeId, Identity> = nodes
        .iter()
        .map(|m| (*m, identity(1, m.0 as usize)))
        .collect();
    let clients = cfg.groups * cfg.clients_per_group;
    let client_ids: Vec<Identity> = (0..clients).map(|i| identity(2, i)).collect();
    let client_addrs: Vec<Addr> = (0..clients)
        .map(|i| Addr::Client(ClientId(i as u64 + 1)))
        .collect();

    let node_crypto = |m: NodeId| {
        let mut c = Crypto::new(Addr::Node(m), replica_ids[&m].clone(), mode);
        for (o, id) in &replica_ids {
            if *o != m {
                c.add_peer(Addr::Node(*o), id.public()).expect("valid key");
            }
        }
        for (j, a) in client_addrs.iter().enumerate() {
            c.add_peer(*a, client_ids[j].public()).expect("valid key");
        }
        // the parent's replicas act as clients of this group
        let g = topo.group_of(m).expect("member");
        if let Some(p) = tree.parent(g) {
            for pm in &topo.group(p).expect("parent").members {
                c.add_peer(
                    Addr::Client(ClientId::for_replica(*pm)),
                    replica_ids[pm].public(),
                )
                .expect("valid key");
            }
        }
        c
    };
    let client_crypto = |m: NodeId| {
        let mut c = Crypto::new(
            Addr::Client(ClientId::for_replica(m)),
            replica_ids[&m].clone(),
            mode,
        );
        let g = topo.group_of(m).expect("member");
        for ch in tree.children(g) {
            for cm in &topo.group(*ch).expect("child").members {
                c.add_peer(Addr::Node(*cm), replica_ids[cm].public())
                    .expect("valid key");
            }
        }
        c
    };

    // who misbehaves, per group: the initial leader first, the rest from the seed
    let mut byz: BTreeSet<NodeId> = BTreeSet::new();
    if cfg.adversary != Adversary::None {
        for g in topo.groups() {
            let k = cfg.byzantine_count.min(n);
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
    }
    let collusions: BTreeMap<GroupId, Rc<RefCell<Collusion>>> =
        tree.groups().map(|g| (g, Rc::default())).collect();

    let make_replica = |m: NodeId, attack: Option<Attack>| -> ProtocolActor<Rep, SimIn, SimOut> {
        let g = topo.group_of(m).expect("member");
        let policy = SimPolicy {
            attack,
            collusion: collusions[&g].clone(),
            ..SimPolicy::honest(topo.clone())
        };
        let r = byzcast::Replica::with_policy(
            m,
            topo.clone(),
            params.clone(),
            client_crypto(m),
            policy,
        )
        .expect("valid replica configuration");
        ProtocolActor::with_maps(
            r,
            |i| match i {
                SimIn::Replica(x) => Some(x),
                SimIn::Client(_) => None,
            },
            SimOut::Replica,
        )
    };

    let mutator: Rc<dyn Mutator<Message>> = Rc::new(MessageSurgery);
    let mut replica_nodes = BTreeMap::new();
    for g in topo.groups() {
        for (pos, m) in g.members.iter().enumerate() {
            let m = *m;
            let region = pos % regions;
            let addr = Addr::Node(m);
            if !byz.contains(&m) {
                let idx = sim.add_node(addr, node_crypto(m), make_replica(m, None), region);
                replica_nodes.insert(idx, (g.id, m, false));
                continue;
            }
            let slow_delay = (params.request_timeout as f64 * rng.gen_range(0.1..2.0)) as Time;
            let parent_attack = |a: Adversary| match a {
                Adversary::Early => Some(Attack::Early),
                Adversary::Forge => Some(Attack::Forge),
                Adversary::Withhold => Some(Attack::Withhold),
                Adversary::Reorder => Some(Attack::Reorder),
                _ => None,
            };
            let idx = match cfg.adversary {
                Adversary::Twins => {
                    let (a, b) = sim.add_twins(
                        addr,
                        node_crypto(m),
                        make_replica(m, None),
                        node_crypto(m),
                        make_replica(m, None),
                        region,
                    );
                    replica_nodes.insert(b, (g.id, m, true));
                    a
                }
                Adversary::Silent => sim.add_node(
                    addr,
                    node_crypto(m),
                    Byzantine::silent(make_replica(m, None)),
                    region,
                ),
                Adversary::Replay => sim.add_node(
                    addr,
                    node_crypto(m),
                    Byzantine::replay(make_replica(m, None), 0.3, 0.2),
                    region,
                ),
                Adversary::Slow => sim.add_node(
                    addr,
                    node_crypto(m),
                    Byzantine::slow(make_replica(m, None), 10.0, slow_delay),
                    region,
                ),
                Adversary::Equivocate => sim.add_node(
                    addr,
                    node_crypto(m),
                    Byzantine::equivocate(make_replica(m, None), mutator.clone()),
                    region,
                ),
                a @ (Adversary::Early
                | Adversary::Forge
                | Adversary::Withhold
                | Adversary::Reorder) => sim.add_node(
                    addr,
                    node_crypto(m),
                    make_replica(m, parent_attack(a)),
                    region,
                ),
                Adversary::Mixed | Adversary::None => {
                    let attack =
                        parent_attack(Adversary::PARENT[rng.gen_range(0..Adversary::PARENT.len())]);
                    let plan = MixedPlan {
                        choices: vec![
                            Behavior::Honest,
                            Behavior::Silent,
                            Behavior::Replay {
                                prob: 0.3,
                                dup_prob: 0.2,
                            },
                            Behavior::Slow {
                                factor: 10.0,
                                extra_delay: slow_delay,
                            },
                            Behavior::Forge {
                                prob: 0.2,
                                identities: Vec::new(),
                            },
                            Behavior::Equivocate,
                            Behavior::Corrupt { prob: 0.3 },
                        ],
                        switch_every: Some((
                            params.request_timeout / 2,
                            params.request_timeout * 4,
                        )),
                    };
                    let actor = Byzantine::mixed(make_replica(m, attack), plan)
                        .with_mutator(mutator.clone());
                    sim.add_node(addr, node_crypto(m), actor, region)
                }
            };
            sim.set_byzantine(idx, true);
            replica_nodes.insert(idx, (g.id, m, true));
        }
    }

    let mut client_nodes = BTreeMap::new();
    let mut client_idx = Vec::new();
    for (c, addr) in client_addrs.iter().enumerate() {
        let mut crypto = Crypto::new(*addr, client_ids[c].clone(), mode);
        for (m, id) in &replica_ids {
            crypto
                .add_peer(Addr::Node(*m), id.public())
                .expect("valid key");
        }
        let client = byzcast::Client::new(ClientId(c as u64 + 1), topo.clone(), params.clone());
        let actor: ProtocolActor<byzcast::Client, SimIn, SimOut> = ProtocolActor::with_maps(
            client,
            |i| match i {
                SimIn::Client(x) => Some(x),
                SimIn::Replica(_) => None,
            },
            SimOut::Client,
        );
        let idx = sim.add_node(*addr, crypto, actor, c % regions);
        client_nodes.insert(idx, c);
        client_idx.push(idx);
    }

    let quota: Vec<u64> = if throughput_mode {
        vec![u64::MAX; clients]
    } else {
        let c = clients as u64;
        (0..c)
            .map(|i| cfg.requests / c + u64::from(i < cfg.requests % c))
            .collect()
    };
    let keep_history = !throughput_mode && cfg.requests <= 5_000;
    let mut obs = Observer {
        cfg,
        seed,
        topo: topo.clone(),
        pool: KeyPool::new(cfg.groups),
        replica_nodes,
        client_nodes,
        client_idx: client_idx.clone(),
        quota,
        issued: vec![0; clients],
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0a11_0a11),
        inflight: BTreeMap::new(),
        submitted: BTreeMap::new(),
        logs: BTreeMap::new(),
        reached: BTreeMap::new(),
        delivered_by: BTreeMap::new(),
        order: OrderChecker::new(),
        history: keep_history.then(Vec::new),
        replies: (!throughput_mode).then(BTreeMap::new),
        any_global: false,
        violations: Vec::new(),
        violation_count: 0,
        views: BTreeMap::new(),
        deliveries: 0,
        completed_local: 0,
        completed_global: 0,
        window_local: 0,
        window_global: 0,
        warmup: if throughput_mode {
            (cfg.warmup_ms * MILLIS as f64) as Time
        } else {
            0
        },
        latencies_local: Vec::new(),
        latencies_global: Vec::new(),
        stop_when_done: !throughput_mode,
        trace: cfg.trace.as_ref().map(|_| Vec::new()),
    };
    // clients start staggered by 50 µs
    for (cl, idx) in client_idx.iter().enumerate() {
        let at = cl as Time * 50 * 1_000;
        if let Some(input) = obs.next_submission(cl, at) {
            sim.schedule_input(at, *idx, input);
        }
    }

    let mut liveness = None;
    let end;
    if let Some(d) = cfg.duration_ms {
        end = (d * MILLIS as f64) as Time;
        sim.run_until(end, &mut obs);
    } else {
        let deadline = stabilize + 120 * SECS + 400 * base.max_one_way();
        sim.run_until(deadline, &mut obs);
        end = sim.now();
        if obs.done() {
            // let lagging correct replicas catch up before the final checks
            let grace = 4 * params.request_timeout + 2 * SECS;
            sim.run_for(grace, &mut obs);
        } else {
            let pending = obs.inflight.len() as u64
                + obs
                    .quota
                    .iter()
                    .zip(&obs.issued)
                    .map(|(q, i)| q - i)
                    .sum::<u64>();
            let states: Vec<String> = obs
                .replica_nodes
                .iter()
                .filter(|(_, (_, _, b))| !b)
                .filter_map(|(idx, (g, m, _))| {
                    sim.protocol::<Rep>(*idx).map(|r| {
                        let st = r.smr().stats();
                        let ms = r.machine().stats();
                        format!(
                            "{m}@{}: view {} executed {} delivered {} stream-next {} waiting-results {}",
                            tree.name(*g),
                            st.view,
                            st.executed,
                            ms.delivered,
                            ms.stream_next,
                            r.pending_results()
                        )
                    })
                })
                .take(12)
                .collect();
            liveness = Some(format!(
                "{pending} multicasts not completed by {:.1} s (virtual); {}",
                deadline as f64 / 1e9,
                states.join("; ")
            ));
        }
    }

    // final checks
    let mut extra = Vec::new();
    let correct: Vec<(GroupId, NodeId)> = obs
        .replica_nodes
        .values()
        .filter(|(_, _, b)| !b)
        .map(|(g, m, _)| (*g, *m))
        .collect();
    if liveness.is_none() && !throughput_mode {
        for g in tree.targets() {
            let top = obs.logs.get(&g).map(|l| l.highest()).unwrap_or(0);
            for (_, m) in correct.iter().filter(|(gg, _)| *gg == g) {
                let r = obs.reached.get(m).copied().unwrap_or(0);
                if r < top {
                    extra.push(format!(
                        "agreement: {m} of {} reached position {r} of {top}",
                        tree.name(g)
                    ));
                }
            }
        }
        let in_log: BTreeMap<GroupId, BTreeSet<MsgId>> = obs
            .logs
            .iter()
            .map(|(g, l)| {
                (
                    *g,
                    (1..=l.highest())
                        .filter_map(|p| l.decided(p).copied())
                        .collect(),
                )
            })
            .collect();
        for (id, (dst, _)) in &obs.submitted {
            for g in dst {
                if !in_log.get(g).is_some_and(|s| s.contains(id)) {
                    extra.push(format!(
                        "validity: multicast {id} never delivered at {}",
                        tree.name(*g)
                    ));
                }
            }
        }
    }
    if let Some(c) = obs.order.find_cycle() {
        extra.push(format!(
            "order: the delivery order has a cycle: {}",
            cycle_text(&c, |g| tree.name(g).to_string())
        ));
    }
    // atomicity across shards: the merged replies are those of one serial
    // execution in an order extending every group's delivery order
    if liveness.is_none() {
        if let (Some(order), Some(replies)) = (obs.order.topological(), obs.replies.as_ref()) {
            extra.extend(serial_replay(&order, replies).into_iter().take(3));
        }
    }
    for e in extra {
        obs.violation(e);
    }
    // Atomic multicast orders messages consistently but, across groups, not in
    // real time: a multi-group read can be delivered at one group long before
    // another while single-group writes complete in between. Linearizability
    // is therefore checked only for histories without multi-group messages.
    let mut inconclusive = false;
    if obs.any_global {
        obs.history = None;
    }
    if let Some(mut history) = obs.history.take() {
        for ((c, _), inf) in &obs.inflight {
            history.push(Op::pending(*c as u64 + 1, inf.invoked, inf.op.clone()));
        }
        match linearizability::check(&history) {
            Ok(()) => {}
            Err(v) if v.is_inconclusive() => inconclusive = true,
            Err(v) => obs.violation(format!("linearizability: {v}")),
        }
    }
    let mut violations = std::mem::take(&mut obs.violations);
    let mut count = obs.violation_count;
    for l in obs.logs.values() {
        count += l.violation_count();
        for v in l.violations() {
            if violations.len() < 10 {
                violations.push(v.clone());
            }
        }
    }
    let window_s = if throughput_mode {
        (end.saturating_sub(obs.warmup)) as f64 / 1e9
    } else {
        end as f64 / 1e9
    };
    let stats = sim.stats();
    Ok(RunResult {
        seed,
        violation_count: count,
        violations,
        liveness,
        completed_local: obs.completed_local,
        completed_global: obs.completed_global,
        deliveries: obs.deliveries,
        view_changes: obs.views.values().copied().max().unwrap_or(0),
        messages: stats.delivered,
        faults_recorded: stats.faults,
        linearizability_inconclusive: inconclusive,
        virtual_ms: sim.now() as f64 / 1e6,
        throughput_local: obs.window_local as f64 / window_s.max(1e-9),
        throughput_global: obs.window_global as f64 / window_s.max(1e-9),
        latencies_local: std::mem::take(&mut obs.latencies_local),
        latencies_global: std::mem::take(&mut obs.latencies_global),
        trace: obs.trace.take().unwrap_or_default(),
    })
}

/// Run `cfg.seeds` seeds (in parallel on the available cores) and summarize.
pub fn run_many(
    cfg: &ByzcastSimConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<ByzcastSimReport, SimError> {
    let topo = cfg.topology()?;
    cfg.network.model()?;
    let started = std::time::Instant::now();
    let results: Vec<RunResult> = crate::runner::run_seeds(
        cfg.seeds,
        cfg.seed_start,
        |seed| run_one(cfg, seed),
        &mut progress,
    )?;
    let wall = started.elapsed().as_secs_f64();

    if let Some(path) = &cfg.trace {
        use std::io::Write;
        let f = std::fs::File::create(path).map_err(|err| SimError::Trace {
            path: path.clone(),
            err,
        })?;
        let mut w = std::io::BufWriter::new(f);
        for r in &results {
            for line in &r.trace {
                writeln!(w, "{line}").map_err(|err| SimError::Trace {
                    path: path.clone(),
                    err,
                })?;
            }
        }
        w.flush().map_err(|err| SimError::Trace {
            path: path.clone(),
            err,
        })?;
    }
    Ok(summarize(cfg, &topo, &results, wall))
}

/// The report of a set of runs.
pub fn summarize(
    cfg: &ByzcastSimConfig,
    topo: &Topology,
    results: &[RunResult],
    wall: f64,
) -> ByzcastSimReport {
    let sorted = |f: &dyn Fn(&RunResult) -> &Vec<Time>| {
        let mut v: Vec<Time> = results.iter().flat_map(|r| f(r).iter().copied()).collect();
        v.sort_unstable();
        v
    };
    let local = sorted(&|r| &r.latencies_local);
    let global = sorted(&|r| &r.latencies_global);
    let mut all: Vec<Time> = local.iter().chain(&global).copied().collect();
    all.sort_unstable();
    let failing = FailingSeed::collect(
        results,
        |r| {
            let v = (r.violation_count > 0 || !r.violations.is_empty()).then(|| {
                r.violations
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "violations".into())
            });
            (r.seed, v, r.liveness.as_ref())
        },
        |seed| cfg.replay_command(seed),
    );
    let runs = results.len().max(1) as f64;
    ByzcastSimReport {
        protocol: cfg.protocol.name(),
        groups: cfg.groups,
        tree: topo.tree().describe(),
        auxiliary_groups: topo.tree().auxiliary().count(),
        replicas: topo.tree().len() * (3 * cfg.f + 1),
        replicas_per_group: 3 * cfg.f + 1,
        f: cfg.f,
        workload: cfg.workload.name(),
        global_ratio: cfg.global_ratio,
        byzantine: cfg.adversary.name(),
        byzantine_count: cfg.byzantine_count,
        network: cfg.network.name(),
        crypto: if cfg.modeled_crypto {
            "modeled (cost model, not real signatures)"
        } else {
            "real"
        },
        runs: results.len() as u64,
        safety_violations: results.iter().map(|r| r.violation_count as u64).sum(),
        liveness_failures: results.iter().filter(|r| r.liveness.is_some()).count() as u64,
        completed_requests: results
            .iter()
            .map(|r| r.completed_local + r.completed_global)
            .sum(),
        completed_local: results.iter().map(|r| r.completed_local).sum(),
        completed_global: results.iter().map(|r| r.completed_global).sum(),
        deliveries: results.iter().map(|r| r.deliveries).sum(),
        view_changes: results.iter().map(|r| r.view_changes).sum(),
        messages: results.iter().map(|r| r.messages).sum(),
        faults_recorded: results.iter().map(|r| r.faults_recorded).sum(),
        linearizability_inconclusive: results
            .iter()
            .filter(|r| r.linearizability_inconclusive)
            .count() as u64,
        latency_p50_ms: percentile(&all, 0.5),
        latency_p99_ms: percentile(&all, 0.99),
        latency_local_p50_ms: percentile(&local, 0.5),
        latency_global_p50_ms: percentile(&global, 0.5),
        latency_local_p95_ms: percentile(&local, 0.95),
        latency_global_p95_ms: percentile(&global, 0.95),
        throughput_local: results.iter().map(|r| r.throughput_local).sum::<f64>() / runs,
        throughput_global: results.iter().map(|r| r.throughput_global).sum::<f64>() / runs,
        wall_seconds: wall,
        deliveries_per_second: results.iter().map(|r| r.messages).sum::<u64>() as f64
            / wall.max(1e-9),
        failing_seeds: failing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree of targets only: g1(g2 g3(g4)) (targets as inner nodes, unequal depths).
    fn targets_only() -> TreeChoice {
        let spec = TreeSpec::from_toml(include_str!(
            "../../protocols/byzcast/workloads/targets-only.toml"
        ))
        .unwrap();
        // the path is relative to the repository root, where replay commands run
        TreeChoice::File {
            path: PathBuf::from("crates/protocols/byzcast/workloads/targets-only.toml"),
            spec,
        }
    }

    #[test]
    fn serial_replay_flags_non_atomic_replies() {
        let id = |n| MsgId {
            client: ClientId(1),
            n,
        };
        let (k1, k2) = (b"a".to_vec(), b"b".to_vec());
        let mut replies = BTreeMap::new();
        replies.insert(
            id(1),
            (
                KvOp::MSet(vec![
                    (k1.clone(), b"1".to_vec()),
                    (k2.clone(), b"1".to_vec()),
                ]),
                KvReply::Ok,
            ),
        );
        // a torn read: one shard saw the MSET, the other did not
        replies.insert(
            id(2),
            (
                KvOp::MGet(vec![k1, k2]),
                KvReply::Array(vec![Some(b"1".to_vec()), None]),
            ),
        );
        let v = serial_replay(&[id(1), id(2)], &replies);
        assert_eq!(v.len(), 1);
        assert!(v[0].starts_with("atomicity: 1:2 MGET"), "{v:?}");
        // the same read before the write is consistent
        replies.insert(
            id(2),
            (replies[&id(2)].0.clone(), KvReply::Array(vec![None, None])),
        );
        assert!(serial_replay(&[id(2), id(1)], &replies).is_empty());
    }

    fn small(adv: Adversary, k: usize) -> ByzcastSimConfig {
        ByzcastSimConfig {
            adversary: adv,
            byzantine_count: k,
            requests: 16,
            global_ratio: 0.5,
            ..ByzcastSimConfig::new(2)
        }
    }

    #[test]
    fn clean_run_delivers_everything() {
        let cfg = small(Adversary::None, 0);
        let r = run_one(&cfg, 1).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert!(r.liveness.is_none(), "{:?}", r.liveness);
        assert_eq!(r.completed_local + r.completed_global, 16);
        assert!(r.completed_global > 0 && r.completed_local > 0);
        // determinism: the same seed gives the same run
        let again = run_one(&cfg, 1).unwrap();
        assert_eq!(
            (r.messages, r.deliveries, r.virtual_ms),
            (again.messages, again.deliveries, again.virtual_ms)
        );
    }

    #[test]
    fn baseline_and_three_level_run_clean() {
        let mut cfg = small(Adversary::None, 0);
        cfg.protocol = Mode::Baseline;
        let r = run_one(&cfg, 2).unwrap();
        assert!(
            r.violations.is_empty() && r.liveness.is_none(),
            "{:?} {:?}",
            r.violations,
            r.liveness
        );
        let mut cfg = small(Adversary::Mixed, 1);
        cfg.groups = 4;
        cfg.tree = TreeChoice::ThreeLevel;
        cfg.requests = 24;
        let r = run_one(&cfg, 3).unwrap();
        assert!(
            r.violations.is_empty() && r.liveness.is_none(),
            "{:?} {:?}",
            r.violations,
            r.liveness
        );
        assert!(r.completed_global > 0);
        cfg.tree = targets_only();
        cfg.adversary = Adversary::Reorder;
        for seed in [4, 11] {
            let r = run_one(&cfg, seed).unwrap();
            assert!(
                r.violations.is_empty() && r.liveness.is_none(),
                "{:?} {:?}",
                r.violations,
                r.liveness
            );
        }
    }

    /// At least 200 seeds with F Byzantine replicas in every group (the
    /// parent included), cycling through every strategy: no violation, and
    /// every multicast completes.
    #[test]
    fn byzantine_parents_sweep_has_no_violations() {
        let mut bad = Vec::new();
        for seed in 0..200u64 {
            let adv = Adversary::ALL[(seed as usize) % Adversary::ALL.len()];
            let mut cfg = small(adv, 1);
            if seed % 4 == 3 {
                // every fourth run: targets as inner nodes, four groups
                cfg.groups = 4;
                cfg.tree = targets_only();
                cfg.requests = 20;
            }
            let r = run_one(&cfg, 1000 + seed).unwrap();
            if !r.violations.is_empty() || r.violation_count > 0 || r.liveness.is_some() {
                bad.push(format!(
                    "{}: {:?} {:?}",
                    cfg.replay_command(1000 + seed),
                    r.violations,
                    r.liveness
                ));
            }
        }
        assert!(
            bad.is_empty(),
            "{} failing seeds:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }

    /// F+1 colluding forgers in the parent exceed what a group tolerates: the
    /// children deliver messages nobody multicast, and the checker says so.
    #[test]
    fn too_many_byzantine_parents_are_caught() {
        let cfg = small(Adversary::Forge, 2);
        let r = run_one(&cfg, 7).unwrap();
        assert!(r.violation_count > 0, "expected violations, got none");
        assert!(
            r.violations.iter().any(|v| v.contains("integrity")),
            "{:?}",
            r.violations
        );
    }
}
