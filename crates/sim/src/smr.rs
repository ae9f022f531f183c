//! `byzscale sim smr`: one SMR group, closed-loop KV clients, Byzantine replicas,
//! and every checker, over many seeds.
//!
//! A run builds N replicas of [`byzscale_smr::Replica`] running the KV service and
//! C clients of [`byzscale_smr::Client`], with real crypto (ed25519, HMAC-SHA256
//! on every message) unless a cost model is asked for. K replicas misbehave:
//!
//! | adversary | what the K replicas do |
//! |---|---|
//! | `silent` | nothing at all (as if crashed, but counted as Byzantine) |
//! | `equivocate` | collude: whenever one of them leads, it proposes two different batches for each slot, and all of them vote (WRITE/ACCEPT) for the first batch towards even-positioned replicas and for the second towards odd-positioned ones, so with K > F correct replicas can be driven to different decisions |
//! | `replay` | re-send old messages to random peers and duplicate their own |
//! | `slow` | run 10× slower and hold back every message by a seeded fraction of the request timeout |
//! | `twins` | two honest instances share each identity and keys (Twins) |
//! | `mixed` | each picks one of the above (or forging, or switching between behaviours over time) from the seed |
//!
//! The network misbehaves until it stabilizes (1% loss, 1% duplication, 5%
//! reordering); liveness is required only after that. Checkers, over correct
//! replicas and clients only:
//! - agreement and gap-free order of decided slots ([`crate::check::LogChecker`]);
//! - validity: every decided request was submitted by the client it names;
//! - no replica reports its own state diverging from a stable checkpoint;
//! - linearizability of the KV client history (which also catches a request
//!   executed twice: INCRs would count it twice);
//! - liveness: every client request completes before the deadline.

use crate::adversary::{Behavior, Byzantine, MixedPlan};
use crate::check::linearizability::{self, Op};
use crate::check::LogChecker;
use crate::cpu::CpuModel;
use crate::engine::{Actor, ActorCx, ActorEffect, BoxActor, Control, NodeIdx, ProtocolActor, Sim};
use crate::net_model::{NetError, NetModel};
use byzscale_apps::kv::{KvOp, KvReply, KvStore};
use byzscale_core::crypto::{Crypto, CryptoMode, Digest, Identity};
use byzscale_core::protocol::{Time, MILLIS, SECS};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_smr as smr;
use byzscale_smr::{Batch, Client, GroupInfo, Message, Params, Replica};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("network: {0}")]
    Net(#[from] NetError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("trace file {path}: {err}")]
    Trace { path: PathBuf, err: std::io::Error },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Adversary {
    None,
    Silent,
    Equivocate,
    Replay,
    Slow,
    Twins,
    Mixed,
}

impl Adversary {
    pub fn name(self) -> &'static str {
        match self {
            Adversary::None => "none",
            Adversary::Silent => "silent",
            Adversary::Equivocate => "equivocate",
            Adversary::Replay => "replay",
            Adversary::Slow => "slow",
            Adversary::Twins => "twins",
            Adversary::Mixed => "mixed",
        }
    }
    pub const ALL: [Adversary; 6] = [
        Adversary::Silent,
        Adversary::Equivocate,
        Adversary::Replay,
        Adversary::Slow,
        Adversary::Twins,
        Adversary::Mixed,
    ];
}

#[derive(Clone, Debug, PartialEq)]
pub enum NetworkChoice {
    Preset(String),
    File(PathBuf),
}

impl NetworkChoice {
    /// `lan`, `ec2-byzcast`, or a path to a TOML latency matrix.
    pub fn parse(s: &str) -> Result<Self, SimError> {
        match s {
            "lan" | "ec2-byzcast" => Ok(NetworkChoice::Preset(s.to_string())),
            p if p.ends_with(".toml") || std::path::Path::new(p).exists() => {
                // validate now so bad files fail before any run
                NetModel::from_file(p)?;
                Ok(NetworkChoice::File(PathBuf::from(p)))
            }
            other => Err(SimError::Config(format!(
                "unknown network '{other}': use lan, ec2-byzcast, or a .toml latency matrix file"
            ))),
        }
    }
    pub fn model(&self) -> Result<NetModel, SimError> {
        Ok(match self {
            NetworkChoice::Preset(p) => NetModel::preset(p)?,
            NetworkChoice::File(f) => NetModel::from_file(f)?,
        })
    }
    pub fn name(&self) -> String {
        match self {
            NetworkChoice::Preset(p) => p.clone(),
            NetworkChoice::File(f) => f.display().to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SmrSimConfig {
    pub replicas: usize,
    pub f: usize,
    pub delta: usize,
    pub cft: bool,
    pub adversary: Adversary,
    pub byzantine_count: usize,
    pub seeds: u64,
    pub seed_start: u64,
    pub requests: u64,
    pub clients: usize,
    pub read_ratio: f64,
    pub network: NetworkChoice,
    pub crash_leader_at_ms: Option<f64>,
    pub modeled_crypto: bool,
    pub trace: Option<PathBuf>,
    pub command_line: String,
}

impl SmrSimConfig {
    /// A small default: 4 replicas, no adversary, LAN.
    pub fn new(replicas: usize, f: usize) -> Self {
        SmrSimConfig {
            replicas,
            f,
            delta: 0,
            cft: false,
            adversary: Adversary::None,
            byzantine_count: 0,
            seeds: 1,
            seed_start: 0,
            requests: 100,
            clients: 4,
            read_ratio: 0.2,
            network: NetworkChoice::Preset("lan".into()),
            crash_leader_at_ms: None,
            modeled_crypto: false,
            trace: None,
            command_line: String::new(),
        }
    }

    /// The command that replays `seed` alone.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut c = format!(
            "byzscale sim smr --replicas {} --faulty {} --delta {} --byzantine {} --byzantine-count {} \
             --requests {} --clients {} --read-ratio {} --network {} --seeds 1 --seed-start {seed}",
            self.replicas,
            self.f,
            self.delta,
            self.adversary.name(),
            self.byzantine_count,
            self.requests,
            self.clients,
            self.read_ratio,
            self.network.name()
        );
        if self.cft {
            c.push_str(" --cft");
        }
        if let Some(t) = self.crash_leader_at_ms {
            c.push_str(&format!(" --crash-leader-at {t}"));
        }
        if self.modeled_crypto {
            c.push_str(" --modeled-crypto");
        }
        c
    }

    fn quorum_system(&self) -> Result<QuorumSystem, SimError> {
        let mode = if self.cft {
            FaultModel::Cft
        } else {
            FaultModel::Bft
        };
        let qs = if self.delta > 0 {
            QuorumSystem::wheat_default(self.f, self.delta, mode)
        } else {
            QuorumSystem::classic(self.replicas, self.f, mode)
        };
        let qs = qs.map_err(|e| SimError::Config(e.to_string()))?;
        if qs.n() != self.replicas {
            return Err(SimError::Config(format!(
                "{} replicas do not match f={} delta={} ({} expected)",
                self.replicas,
                self.f,
                self.delta,
                qs.n()
            )));
        }
        Ok(qs)
    }
}

/// One run's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub seed: u64,
    pub violations: Vec<String>,
    pub violation_count: usize,
    pub liveness: Option<String>,
    pub completed: u64,
    pub committed: u64,
    pub view_changes: u64,
    pub messages: u64,
    pub deliveries: u64,
    pub faults_recorded: u64,
    pub linearizability_inconclusive: bool,
    pub virtual_ms: f64,
    /// Simulated CPU time of all nodes (calibrated cost model), seconds.
    pub cpu_seconds: f64,
    /// Wall time of the simulation loop and of the checkers.
    pub sim_seconds: f64,
    pub check_seconds: f64,
    #[serde(skip)]
    pub latencies: Vec<Time>,
    #[serde(skip)]
    pub trace: Vec<String>,
}

pub use crate::runner::FailingSeed;

/// The JSON of `byzscale sim smr --json`.
#[derive(Clone, Debug, Serialize)]
pub struct SmrSimReport {
    pub protocol: &'static str,
    pub replicas: usize,
    pub f: usize,
    pub delta: usize,
    pub mode: &'static str,
    pub byzantine: &'static str,
    pub byzantine_count: usize,
    pub network: String,
    pub crypto: &'static str,
    pub runs: u64,
    pub safety_violations: u64,
    pub liveness_failures: u64,
    pub committed_requests: u64,
    pub completed_requests: u64,
    pub view_changes: u64,
    pub messages: u64,
    pub faults_recorded: u64,
    pub linearizability_inconclusive: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub simulated_cpu_seconds: f64,
    pub wall_seconds: f64,
    /// Summed over runs (runs use all cores in parallel).
    pub simulation_seconds: f64,
    pub checking_seconds: f64,
    /// Message deliveries per second of simulation-loop time on one core.
    pub deliveries_per_second: f64,
    pub failing_seeds: Vec<FailingSeed>,
}

impl SmrSimReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "smr: N={} f={} Δ={} {} | adversary {} ×{} | network {} | crypto {}\n",
            self.replicas,
            self.f,
            self.delta,
            self.mode,
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
            "  committed {:>8}   view changes {:>6}   messages {:>10}   faults recorded {:>6}\n",
            self.committed_requests, self.view_changes, self.messages, self.faults_recorded
        ));
        s.push_str(&format!(
            "  latency p50 {:.3} ms   p99 {:.3} ms (virtual)   {:.0} deliveries/s per core   {:.2} s wall\n",
            self.latency_p50_ms, self.latency_p99_ms, self.deliveries_per_second, self.wall_seconds
        ));
        if self.mode == "cft" && !matches!(self.byzantine, "none" | "silent" | "slow" | "replay") {
            s.push_str("  note: CFT mode tolerates crashes only; Byzantine adversaries are expected to break it\n");
        }
        for f in self.failing_seeds.iter().take(10) {
            s.push_str(&format!(
                "  FAIL seed {}: {}\n    replay: {}\n",
                f.seed, f.reason, f.command
            ));
        }
        s
    }
}

/// A digest that prints as short hex in violation reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex(pub Digest);

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(&self.0[..8]))
    }
}

/// Inputs and outputs of the nodes of an SMR simulation.
#[derive(Debug)]
pub enum SimIn {
    Client(smr::client::Input),
    Replica(smr::replica::Input),
}

#[derive(Debug)]
pub enum SimOut {
    Client(smr::client::Output),
    Replica(smr::replica::Output),
}

type Rep = Replica<KvStore>;

/// Colluding equivocation (see the module docs): shared by all Byzantine
/// replicas of a run.
#[derive(Default)]
struct Collusion {
    /// (view, slot) → the two digests being pushed.
    split: BTreeMap<(u64, u64), (Digest, Digest)>,
}

/// A different but valid batch: the same requests reversed, or one fewer.
fn variant(batch: &Batch) -> Option<Batch> {
    match batch.requests.len() {
        0 => None,
        1 => Some(Batch::default()),
        _ => {
            let mut b = batch.clone();
            std::sync::Arc::make_mut(&mut b.requests).reverse();
            Some(b)
        }
    }
}

struct Equivocator {
    inner: BoxActor<Message, SimIn, SimOut>,
    collusion: Rc<RefCell<Collusion>>,
    members: Vec<NodeId>,
}

impl Equivocator {
    fn parity(&self, a: &Addr) -> usize {
        a.node()
            .and_then(|n| self.members.iter().position(|m| *m == n))
            .unwrap_or(0)
            % 2
    }

    fn rewrite(&mut self, mark: usize, cx: &mut ActorCx<'_, Message, SimOut>) {
        let produced: Vec<_> = cx.effects_mut().drain(mark..).collect();
        for e in produced {
            let ActorEffect::Multicast { to, msg } = e else {
                cx.effects_mut().push(e);
                continue;
            };
            let halves: Option<[Message; 2]> = match &msg {
                Message::Propose { view, slot, batch } => variant(batch).map(|b| {
                    let da = byzscale_core::crypto::digest(&batch.bytes());
                    let db = byzscale_core::crypto::digest(&b.bytes());
                    self.collusion
                        .borrow_mut()
                        .split
                        .insert((*view, *slot), (da, db));
                    [
                        msg.clone(),
                        Message::Propose {
                            view: *view,
                            slot: *slot,
                            batch: b,
                        },
                    ]
                }),
                Message::Write { view, slot, .. } => {
                    let pair = self.collusion.borrow().split.get(&(*view, *slot)).copied();
                    pair.map(|(da, db)| {
                        [
                            Message::Write {
                                view: *view,
                                slot: *slot,
                                digest: da,
                            },
                            Message::Write {
                                view: *view,
                                slot: *slot,
                                digest: db,
                            },
                        ]
                    })
                }
                Message::Accept { view, slot, .. } => {
                    let pair = self.collusion.borrow().split.get(&(*view, *slot)).copied();
                    pair.map(|(da, db)| {
                        [
                            Message::Accept {
                                view: *view,
                                slot: *slot,
                                digest: da,
                            },
                            Message::Accept {
                                view: *view,
                                slot: *slot,
                                digest: db,
                            },
                        ]
                    })
                }
                _ => None,
            };
            match halves {
                Some([a, b]) => {
                    let (even, odd): (Vec<Addr>, Vec<Addr>) =
                        to.into_iter().partition(|t| self.parity(t) == 0);
                    if !even.is_empty() {
                        cx.multicast(even, a);
                    }
                    if !odd.is_empty() {
                        cx.multicast(odd, b);
                    }
                }
                None => cx.multicast(to, msg),
            }
        }
    }
}

impl Actor<Message, SimIn, SimOut> for Equivocator {
    fn start(&mut self, cx: &mut ActorCx<'_, Message, SimOut>) {
        let mark = cx.effects_mut().len();
        self.inner.start(cx);
        self.rewrite(mark, cx);
    }
    fn input(&mut self, input: SimIn, cx: &mut ActorCx<'_, Message, SimOut>) {
        let mark = cx.effects_mut().len();
        self.inner.input(input, cx);
        self.rewrite(mark, cx);
    }
    fn message(&mut self, from: Addr, msg: Message, cx: &mut ActorCx<'_, Message, SimOut>) {
        let mark = cx.effects_mut().len();
        self.inner.message(from, msg, cx);
        self.rewrite(mark, cx);
    }
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, Message, SimOut>) {
        let mark = cx.effects_mut().len();
        self.inner.timer(key, cx);
        self.rewrite(mark, cx);
    }
}

use crate::runner::identity;

/// The KV workload: a few hot keys so operations conflict, INCR counters so a
/// double execution is visible, multi-key MSET/MGET.
fn next_op(rng: &mut ChaCha8Rng, client: usize, n: u64, read_ratio: f64) -> (KvOp, bool) {
    let key = |rng: &mut ChaCha8Rng| format!("k{}", rng.gen_range(0..6)).into_bytes();
    let val = format!("c{client}-{n}").into_bytes();
    let op = match rng.gen_range(0..100) {
        0..=29 => KvOp::Set(key(rng), val),
        30..=54 => KvOp::Get(key(rng)),
        55..=69 => KvOp::Incr(format!("n{}", rng.gen_range(0..3)).into_bytes()),
        70..=79 => {
            let a = key(rng);
            let mut b = key(rng);
            if b == a {
                b = b"k9".to_vec();
            }
            KvOp::MSet(vec![(a, val.clone()), (b, val)])
        }
        80..=87 => KvOp::MGet(vec![key(rng), key(rng)]),
        88..=93 => KvOp::Del(vec![key(rng)]),
        _ => KvOp::Exists(vec![key(rng)]),
    };
    let ro = op.is_read_only() && rng.gen_bool(read_ratio);
    (op, ro)
}

struct Observer<'a> {
    cfg: &'a SmrSimConfig,
    seed: u64,
    byz_positions: BTreeSet<usize>,
    replica_nodes: BTreeMap<NodeIdx, usize>,
    client_nodes: BTreeMap<NodeIdx, usize>,
    client_idx: Vec<NodeIdx>,
    quota: Vec<u64>,
    issued: Vec<u64>,
    rng: ChaCha8Rng,
    /// (client, submission id) → (op, invoked)
    inflight: BTreeMap<(usize, u64), (KvOp, Time)>,
    submitted_ops: BTreeMap<ClientId, BTreeSet<Vec<u8>>>,
    history: Vec<Op>,
    log: LogChecker<usize, Hex>,
    violations: Vec<String>,
    view: BTreeMap<usize, u64>,
    completed: u64,
    committed: u64,
    latencies: Vec<Time>,
    trace: Option<Vec<String>>,
}

impl Observer<'_> {
    fn submit(&mut self, c: usize, ctl: &mut Control<SimIn>) {
        if let Some(input) = self.next_submission(c, ctl.now()) {
            ctl.input(self.client_idx[c], input);
        }
    }

    fn next_submission(&mut self, c: usize, now: Time) -> Option<SimIn> {
        if self.issued[c] >= self.quota[c] {
            return None;
        }
        self.issued[c] += 1;
        let id = self.issued[c];
        let (op, ro) = next_op(&mut self.rng, c, id, self.cfg.read_ratio);
        let bytes = op.encode();
        self.submitted_ops
            .entry(ClientId(c as u64 + 1))
            .or_default()
            .insert(bytes.clone());
        self.inflight.insert((c, id), (op, now));
        Some(SimIn::Client(smr::client::Input::Submit {
            op: bytes,
            read_only: ro,
        }))
    }

    fn violation(&mut self, s: String) {
        if self.violations.len() < 10 {
            self.violations.push(s);
        }
    }

    /// A safety violation was seen: the run is over.
    fn failed(&self) -> bool {
        self.log.violation_count() > 0 || !self.violations.is_empty()
    }

    fn done(&self) -> bool {
        self.inflight.is_empty() && self.issued.iter().zip(&self.quota).all(|(i, q)| i >= q)
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
            SimOut::Client(smr::client::Output::Done {
                id,
                result,
                ordered,
                invoked,
            }) => {
                let Some(&c) = self.client_nodes.get(&node) else {
                    return;
                };
                let Some((op, _)) = self.inflight.remove(&(c, id)) else {
                    self.violation(format!(
                        "integrity: client {c} completed request {id} twice"
                    ));
                    return;
                };
                let reply = KvReply::decode(&result)
                    .unwrap_or_else(|e| KvReply::Error(format!("undecodable: {e}")));
                if let Some(t) = &mut self.trace {
                    t.push(
                        serde_json::json!({
                            "type": "complete", "run": self.seed, "client": c + 1, "seq": id,
                            "op": op.to_string(), "result": reply.to_string(), "ordered": ordered,
                            "invoked_ns": invoked, "completed_ns": at,
                        })
                        .to_string(),
                    );
                }
                self.history
                    .push(Op::new(c as u64 + 1, invoked, at, op, reply));
                self.latencies.push(at.saturating_sub(invoked));
                self.completed += 1;
                if ordered {
                    self.committed += 1;
                }
                self.submit(c, ctl);
                if self.done() {
                    ctl.stop();
                }
            }
            SimOut::Replica(out) => {
                let Some(&pos) = self.replica_nodes.get(&node) else {
                    return;
                };
                let byz = self.byz_positions.contains(&pos);
                match out {
                    smr::replica::Output::Decided {
                        slot,
                        digest,
                        batch,
                        ..
                    } => {
                        if let Some(t) = &mut self.trace {
                            let reqs: Vec<_> = batch
                                .requests
                                .iter()
                                .map(|r| serde_json::json!({"client": r.client.0, "seq": r.seq}))
                                .collect();
                            t.push(
                                serde_json::json!({
                                    "type": "decide", "run": self.seed, "node": pos, "byzantine": byz,
                                    "slot": slot, "digest": hex::encode(digest), "requests": reqs,
                                })
                                .to_string(),
                            );
                        }
                        if byz {
                            return;
                        }
                        self.log.decide(pos, slot, Hex(digest));
                        if self.log.violation_count() > 0 {
                            ctl.stop(); // the seed has failed; the rest is noise
                        }
                        for r in batch.requests.iter() {
                            let ok = self
                                .submitted_ops
                                .get(&r.client)
                                .map(|s| s.contains(&r.op))
                                .unwrap_or(false);
                            if !ok {
                                let msg = format!(
                                    "validity: replica {pos} decided {}#{} at slot {slot}, never submitted",
                                    r.client, r.seq
                                );
                                self.violation(msg);
                            }
                        }
                    }
                    smr::replica::Output::StateTransferred { slot } if !byz => {
                        self.log.skip_to(pos, slot)
                    }
                    smr::replica::Output::ViewChanged { view, .. } if !byz => {
                        let v = self.view.entry(pos).or_insert(0);
                        *v = (*v).max(view);
                    }
                    _ => {}
                }
            }
        }
    }

    fn on_fault(
        &mut self,
        _at: Time,
        node: NodeIdx,
        fault: &byzscale_core::Fault,
        _ctl: &mut Control<SimIn>,
    ) {
        if fault.is(smr::Fault::DivergentState) {
            if let Some(&pos) = self.replica_nodes.get(&node) {
                if !self.byz_positions.contains(&pos) {
                    self.violation(format!("state: replica {pos}: {}", fault.detail));
                }
            }
        }
    }
}

/// Run one seed.
pub fn run_one(cfg: &SmrSimConfig, seed: u64) -> Result<RunResult, SimError> {
    let qs = cfg.quorum_system()?;
    let n = cfg.replicas;
    let members: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
    let g = GroupInfo::new(GroupId(0), members.clone(), qs);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);

    let base = cfg.network.model()?;
    let mut params = Params::for_network(base.max_one_way());
    params.checkpoint_interval = 32;
    params.window = 128;
    let stabilize = SECS + 20 * base.max_one_way();
    let net = base
        .with_loss(0.01)
        .with_duplicate(0.01)
        .with_reorder(0.05, 0)
        .with_stabilize_at(stabilize);
    let regions = net.regions.len().max(1);
    let mut sim: Sim<Message, SimIn, SimOut> = Sim::new(seed, net, CpuModel::calibrated());
    let mode = if cfg.modeled_crypto {
        CryptoMode::Modeled
    } else {
        CryptoMode::Real
    };

    // who misbehaves: the initial leader first, the rest drawn from the seed
    let mut byz: BTreeSet<usize> = BTreeSet::new();
    if cfg.byzantine_count > 0 {
        byz.insert(0);
        let mut rest: Vec<usize> = (1..n).collect();
        while byz.len() < cfg.byzantine_count.min(n) {
            let i = rng.gen_range(0..rest.len());
            byz.insert(rest.swap_remove(i));
        }
    }

    let replica_ids: Vec<Identity> = (0..n).map(|i| identity(1, i)).collect();
    let client_ids: Vec<Identity> = (0..cfg.clients).map(|i| identity(2, i)).collect();
    let replica_addrs: Vec<Addr> = members.iter().map(|m| Addr::Node(*m)).collect();
    let client_addrs: Vec<Addr> = (0..cfg.clients)
        .map(|i| Addr::Client(ClientId(i as u64 + 1)))
        .collect();
    let replica_crypto = |i: usize| {
        let mut c = Crypto::new(replica_addrs[i], replica_ids[i].clone(), mode);
        for (j, a) in replica_addrs.iter().enumerate() {
            if j != i {
                c.add_peer(*a, replica_ids[j].public()).expect("valid key");
            }
        }
        for (j, a) in client_addrs.iter().enumerate() {
            c.add_peer(*a, client_ids[j].public()).expect("valid key");
        }
        c
    };
    let make_replica = |i: usize| -> ProtocolActor<Rep, SimIn, SimOut> {
        let r = Replica::new(members[i], g.clone(), params.clone(), KvStore::new());
        ProtocolActor::with_maps(
            r,
            |i| match i {
                SimIn::Replica(x) => Some(x),
                SimIn::Client(_) => None,
            },
            SimOut::Replica,
        )
    };

    let collusion = Rc::new(RefCell::new(Collusion::default()));
    let mut replica_nodes = BTreeMap::new();
    for (i, &addr) in replica_addrs.iter().enumerate() {
        let region = i % regions;
        if !byz.contains(&i) {
            let idx = sim.add_node(addr, replica_crypto(i), make_replica(i), region);
            replica_nodes.insert(idx, i);
            continue;
        }
        let mut choice = cfg.adversary;
        if choice == Adversary::Mixed {
            choice = [
                Adversary::Silent,
                Adversary::Equivocate,
                Adversary::Replay,
                Adversary::Slow,
                Adversary::Twins,
                Adversary::Mixed,
            ][rng.gen_range(0..6)];
        }
        let equivocator = |inner: ProtocolActor<Rep, SimIn, SimOut>| Equivocator {
            inner: Box::new(inner),
            collusion: collusion.clone(),
            members: members.clone(),
        };
        let slow_delay = (params.request_timeout as f64 * rng.gen_range(0.1..2.0)) as Time;
        let idx = match choice {
            Adversary::Twins => {
                let (a, b) = sim.add_twins(
                    addr,
                    replica_crypto(i),
                    make_replica(i),
                    replica_crypto(i),
                    make_replica(i),
                    region,
                );
                replica_nodes.insert(b, i);
                a
            }
            Adversary::Silent => sim.add_node(
                addr,
                replica_crypto(i),
                Byzantine::silent(make_replica(i)),
                region,
            ),
            Adversary::Replay => sim.add_node(
                addr,
                replica_crypto(i),
                Byzantine::replay(make_replica(i), 0.3, 0.2),
                region,
            ),
            Adversary::Slow => sim.add_node(
                addr,
                replica_crypto(i),
                Byzantine::slow(make_replica(i), 10.0, slow_delay),
                region,
            ),
            Adversary::Equivocate => sim.add_node(
                addr,
                replica_crypto(i),
                equivocator(make_replica(i)),
                region,
            ),
            // "mixed" drew itself: a behaviour that changes over time, forging included
            Adversary::Mixed | Adversary::None => {
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
                    ],
                    switch_every: Some((params.request_timeout / 2, params.request_timeout * 4)),
                };
                sim.add_node(
                    addr,
                    replica_crypto(i),
                    Byzantine::mixed(equivocator(make_replica(i)), plan),
                    region,
                )
            }
        };
        sim.set_byzantine(idx, true);
        replica_nodes.insert(idx, i);
    }

    let mut client_nodes = BTreeMap::new();
    let mut client_idx = Vec::new();
    for (c, addr) in client_addrs.iter().enumerate() {
        let mut crypto = Crypto::new(*addr, client_ids[c].clone(), mode);
        for (j, a) in replica_addrs.iter().enumerate() {
            crypto
                .add_peer(*a, replica_ids[j].public())
                .expect("valid key");
        }
        let client = Client::new(ClientId(c as u64 + 1), g.clone(), params.clone());
        let actor: ProtocolActor<Client, SimIn, SimOut> = ProtocolActor::with_maps(
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

    if let Some(ms) = cfg.crash_leader_at_ms {
        let leader = replica_nodes
            .iter()
            .find(|(_, p)| **p == 0)
            .map(|(i, _)| *i)
            .expect("leader exists");
        sim.crash((ms * MILLIS as f64) as Time, leader);
    }

    let c = cfg.clients as u64;
    let quota: Vec<u64> = (0..c)
        .map(|i| cfg.requests / c + u64::from(i < cfg.requests % c))
        .collect();
    let mut obs = Observer {
        cfg,
        seed,
        byz_positions: byz.clone(),
        replica_nodes,
        client_nodes,
        client_idx: client_idx.clone(),
        quota,
        issued: vec![0; cfg.clients],
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0a11_0a11),
        inflight: BTreeMap::new(),
        submitted_ops: BTreeMap::new(),
        history: Vec::new(),
        log: LogChecker::new(),
        violations: Vec::new(),
        view: BTreeMap::new(),
        completed: 0,
        committed: 0,
        latencies: Vec::new(),
        trace: cfg.trace.as_ref().map(|_| Vec::new()),
    };
    // clients start staggered by 100 µs
    for (cl, &node) in client_idx.iter().enumerate() {
        let at = cl as Time * 100 * 1_000;
        if let Some(input) = obs.next_submission(cl, at) {
            sim.schedule_input(at, node, input);
        }
    }
    let deadline = stabilize + 120 * SECS + 200 * base_rtt(&sim);
    // Run in steps so a run that thrashes (possible only with more Byzantine
    // replicas than tolerated) ends on an event budget instead of hogging a core.
    let budget = 2_000_000 + 50_000 * cfg.requests;
    // simulated CPU seconds over all nodes (deterministic, unlike wall time)
    let cpu_budget = 5 * SECS + 25 * MILLIS * cfg.requests;
    let mut budget_hit = false;
    let mut t = 0;
    let sim_started = std::time::Instant::now();
    while t < deadline && !obs.done() && !obs.failed() {
        t = (t + 250 * MILLIS).min(deadline);
        sim.run_until(t, &mut obs);
        let st = sim.stats();
        let busy: u64 = st.per_node.iter().map(|n| n.busy_ns).sum();
        if st.events > budget || busy > cpu_budget {
            budget_hit = true;
            break;
        }
    }

    let sim_seconds = sim_started.elapsed().as_secs_f64();
    let check_started = std::time::Instant::now();
    let mut violations = std::mem::take(&mut obs.violations);
    let log_violations = obs.log.violation_count();
    violations.extend(obs.log.violations().iter().cloned());
    let mut history = std::mem::take(&mut obs.history);
    for ((c, _), (op, invoked)) in &obs.inflight {
        history.push(Op::pending(*c as u64 + 1, *invoked, op.clone()));
    }
    let mut inconclusive = false;
    match linearizability::check(&history) {
        Ok(()) => {}
        Err(v) if v.is_inconclusive() => inconclusive = true,
        Err(v) => violations.push(format!("linearizability: {v}")),
    }
    let liveness = if obs.done() || obs.failed() {
        None
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
            .filter(|(_, p)| !byz.contains(p))
            .filter_map(|(idx, p)| {
                sim.protocol::<Rep>(*idx).map(|r| {
                    let st = r.stats();
                    format!(
                        "n{p}: view {} {:?} executed {} pending {}",
                        st.view,
                        r.status(),
                        st.executed,
                        st.pending
                    )
                })
            })
            .collect();
        let why = if budget_hit {
            format!(
                "event/CPU budget exhausted at {:.1} s (virtual)",
                sim.now() as f64 / 1e9
            )
        } else {
            format!("not completed by {:.1} s (virtual)", deadline as f64 / 1e9)
        };
        Some(format!(
            "{pending} client requests {why}; {}",
            states.join("; ")
        ))
    };
    let check_seconds = check_started.elapsed().as_secs_f64();
    let stats = sim.stats();
    let view_changes = obs.view.values().copied().max().unwrap_or(0);
    let violation_count = violations.len().max(log_violations);
    Ok(RunResult {
        seed,
        violation_count: if violations.is_empty() {
            0
        } else {
            violation_count
        },
        violations,
        liveness,
        completed: obs.completed,
        committed: obs.committed,
        view_changes,
        messages: stats.delivered,
        deliveries: stats.delivered,
        faults_recorded: stats.faults,
        linearizability_inconclusive: inconclusive,
        virtual_ms: sim.now() as f64 / 1e6,
        sim_seconds,
        check_seconds,
        cpu_seconds: stats.per_node.iter().map(|n| n.busy_ns).sum::<u64>() as f64 / 1e9,
        latencies: std::mem::take(&mut obs.latencies),
        trace: obs.trace.take().unwrap_or_default(),
    })
}

fn base_rtt(sim: &Sim<Message, SimIn, SimOut>) -> Time {
    2 * sim.net().max_one_way()
}

/// Run `cfg.seeds` seeds (in parallel on the available cores) and summarize.
pub fn run_many(
    cfg: &SmrSimConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<SmrSimReport, SimError> {
    cfg.quorum_system()?;
    cfg.network.model()?;
    let started = std::time::Instant::now();
    let results = crate::runner::run_seeds(
        cfg.seeds,
        cfg.seed_start,
        |seed| run_one(cfg, seed),
        &mut progress,
    )?;
    let wall = started.elapsed().as_secs_f64();

    if let Some(path) = &cfg.trace {
        crate::runner::write_lines(path, results.iter().flat_map(|r| r.trace.iter())).map_err(
            |err| SimError::Trace {
                path: path.clone(),
                err,
            },
        )?;
    }

    let mut lat: Vec<Time> = results
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    lat.sort_unstable();
    let failing = FailingSeed::collect(
        &results,
        |r| (r.seed, r.violations.first().cloned(), r.liveness.as_ref()),
        |seed| cfg.replay_command(seed),
    );
    let deliveries: u64 = results.iter().map(|r| r.deliveries).sum();
    Ok(SmrSimReport {
        protocol: "smr",
        replicas: cfg.replicas,
        f: cfg.f,
        delta: cfg.delta,
        mode: if cfg.cft { "cft" } else { "bft" },
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
        committed_requests: results.iter().map(|r| r.committed).sum(),
        completed_requests: results.iter().map(|r| r.completed).sum(),
        view_changes: results.iter().map(|r| r.view_changes).sum(),
        messages: results.iter().map(|r| r.messages).sum(),
        faults_recorded: results.iter().map(|r| r.faults_recorded).sum(),
        linearizability_inconclusive: results
            .iter()
            .filter(|r| r.linearizability_inconclusive)
            .count() as u64,
        latency_p50_ms: crate::runner::percentile_ms(&lat, 0.5),
        latency_p99_ms: crate::runner::percentile_ms(&lat, 0.99),
        simulated_cpu_seconds: results.iter().map(|r| r.cpu_seconds).sum(),
        wall_seconds: wall,
        simulation_seconds: results.iter().map(|r| r.sim_seconds).sum(),
        checking_seconds: results.iter().map(|r| r.check_seconds).sum(),
        deliveries_per_second: deliveries as f64
            / results.iter().map(|r| r.sim_seconds).sum::<f64>().max(1e-9),
        failing_seeds: failing,
    })
}
