//! `byzscale sim smr`: one SMR group, closed-loop KV clients, Byzantine replicas,
//! and every checker, over many seeds.
//!
//! A run builds N replicas of [`byzscale_smr::Replica`] running the KV service and
//! C clients of [`byzscale_smr::Client`], with real crypto (ed25519, HMAC-SHA256
//! on every message) unless a cost model is asked for. K replicas misbehave
//! ([`attacks`]):
//!
//! | adversary | what the K replicas do |
//! |---|---|
//! | `silent` | nothing at all (as if crashed, but counted as Byzantine) |
//! | `equivocate` | collude: whenever one of them leads, it proposes two different batches for each slot, and all of them vote (WRITE/ACCEPT) for the first batch towards even-positioned replicas and for the second towards odd-positioned ones, so with K > F correct replicas can be driven to different decisions |
//! | `replay` | re-send old messages to random peers and duplicate their own |
//! | `slow` | run 10× slower and hold back every message by a seeded fraction of the request timeout |
//! | `twins` | two honest instances share each identity and keys (Twins) |
//! | `mutate` | run the honest code but corrupt one field (view, slot, range bound, digest, list length, bytes) of half of their outgoing messages, re-signing what is signed ([`attacks::FieldSurgery`]) |
//! | `mixed` | each picks one of the above (or forging, or switching between behaviours over time) from the seed, and correct replicas crash and restart (below) |
//!
//! **Crash-restart** (`--crash-restart`, always on with `mixed`): every
//! correct replica keeps its `Effect::Persist` records on a modeled disk
//! ([`byzscale_sim::storage`]: group commits of 0.2–2 ms, sends held until
//! their records are synced, a crash keeps the synced records and a random
//! prefix of the rest) and restarts with [`Replica::recover`] from what the
//! disk kept. One to four episodes per run ([`byzscale_sim::crashes`]),
//! triggered as client requests complete: 1 to F correct replicas crash at
//! once, or all of them (a power loss of the group), each down for 1 ms to
//! two request timeouts. With K Byzantine replicas besides, up to K + F
//! replicas are out at a time: no progress then, but no safety loss, and the
//! run must still complete once they are back. The checkers follow a
//! restarted replica from what it recovered: the slots it executes again
//! must agree with what was decided there.
//!
//! The network misbehaves until it stabilizes (1% loss, 1% duplication, 5%
//! reordering); liveness is required only after that. The [`workload`] is a
//! KV mix over a few hot keys (with `--transactions`, `WATCH`/`EXEC` too; with
//! `--expiry`, keys with TTLs of a few milliseconds, each operation checked
//! at the batch time it ran at: [`batch_times`]). Checkers ([`audit`]), over
//! correct replicas and clients only:
//! - agreement and gap-free order of decided slots ([`byzscale_sim::check::LogChecker`]);
//! - validity: every decided request was submitted by the client it names;
//! - no replica reports its own state diverging from a stable checkpoint;
//! - linearizability of the KV client history (which also catches a request
//!   executed twice: INCRs would count it twice);
//! - liveness: every client request completes before the deadline.
//!
//! **WHEAT** (seed 004): `--tentative` turns on tentative execution at the
//! replicas and clients (`Params::tentative`), and `--best-leader` places
//! view 0's leader and the V_max holders where AWARE's predictor puts them
//! for the network ([`Config::placement`]); `--calm` drops the turbulent
//! start for latency figures (`byzscale sim wheat`).
//!
//! The run loop, the sweep over seeds and the common report fields are the
//! simulator's ([`byzscale_sim::scenario`]).

pub mod attacks;
pub mod audit;
pub mod batch_times;
pub mod clients;
pub mod workload;

pub use attacks::Adversary;
pub use byzscale_sim::net_model::NetworkChoice;
pub use byzscale_sim::scenario::{run_many, run_one, SimError};

use audit::Audit;
use byzscale_apps::kv::KvStore;
use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::protocol::{Time, MILLIS, SECS};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::crashes::{CrashOptions, CrashPlan};
use byzscale_sim::engine::{NodeIdx, ProtocolActor, Role, Sim};
use byzscale_sim::net_model::NetModel;
use byzscale_sim::runner::{identity, percentile_ms};
use byzscale_sim::scenario::{
    self, Conditions, Ending, Limits, Outcome, Scenario, Setup, Summary, Sweep,
};
use byzscale_sim::storage::{Disk, SharedDisk, StorageModel};
use byzscale_smr as smr;
use byzscale_smr::{Client, GroupInfo, Message, Params, Replica};
use clients::ClientKeys;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A replica of the scenario.
pub type Rep = Replica<KvStore>;

/// Inputs and outputs of the nodes of a simulation: clients and replicas.
pub type Input = Role<smr::client::Input, smr::replica::Input>;
pub type Output = Role<smr::client::Output, smr::replica::Output>;

/// The scenario's knobs (the flags of `byzscale sim smr`).
#[derive(Clone, Debug)]
pub struct Config {
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
    /// Crash and restart correct replicas from their disks (always on with
    /// the `mixed` adversary; see the crate docs).
    pub crash_restart: bool,
    pub modeled_crypto: bool,
    pub trace: Option<PathBuf>,
    /// Byzantine clients besides the honest ones ([`clients`]).
    pub byzantine_clients: usize,
    /// `Params::client_expiry_slots` of the run: small by default
    /// ([`CLIENT_EXPIRY_SLOTS`]) so that client entries expire and the
    /// session floor rises within a run (at the library's default of 2^20
    /// slots nothing ever expires in a simulation).
    pub client_expiry_slots: u64,
    /// Mix `WATCH` and `MULTI`/`EXEC` transactions into the workload (see
    /// [`workload`]), so that the linearizability checker covers them.
    pub transactions: bool,
    /// Mix operations on expiring keys into the workload (see [`workload`])
    /// and give the checked operations their batch times ([`batch_times`]),
    /// so that the linearizability checker covers key expiry.
    pub expiry: bool,
    /// WHEAT's tentative execution at replicas and clients
    /// (`Params::tentative`; see `byzscale_smr`'s `replica/tentative.rs`).
    pub tentative: bool,
    /// WHEAT's leader at the best-connected replica: view 0's leader (and,
    /// with Δ > 0, the V_max holders) where AWARE's predictor puts them for
    /// the network's latency matrix ([`Config::placement`]). Off: position 0
    /// leads and positions 0..2f hold V_max.
    pub best_leader: bool,
    /// A calm network: no loss, duplication or reordering at any time
    /// (latency benchmarks); else the turbulent start of the safety sweeps.
    pub calm: bool,
}

/// Where view 0's leader and the V_max holders sit ([`Config::placement`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub qs: QuorumSystem,
    pub leader: usize,
    /// AWARE's predicted consensus latency of this configuration, in ms
    /// (`None` without `best_leader`).
    pub predicted_ms: Option<f64>,
}

/// The scenario's default `client_expiry_slots`: half a checkpoint interval
/// of the scenario (checkpoints every 32 slots), so an idle client's entry
/// expires at the next checkpoint and the session floor rises at every
/// checkpoint of a run.
pub const CLIENT_EXPIRY_SLOTS: u64 = 16;

impl Config {
    /// A small default: `replicas` replicas tolerating `f`, no adversary, LAN.
    pub fn new(replicas: usize, f: usize) -> Self {
        Config {
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
            network: NetworkChoice::default(),
            crash_leader_at_ms: None,
            crash_restart: false,
            modeled_crypto: false,
            trace: None,
            byzantine_clients: 0,
            client_expiry_slots: CLIENT_EXPIRY_SLOTS,
            transactions: false,
            expiry: false,
            tentative: false,
            best_leader: false,
            calm: false,
        }
    }

    /// The fault model of the run.
    fn mode(&self) -> FaultModel {
        if self.cft {
            FaultModel::Cft
        } else {
            FaultModel::Bft
        }
    }

    /// The leader of view 0 and the weights. Without `best_leader`: position
    /// 0 and WHEAT's default V_max holders (positions 0..u). With it, the
    /// rule of WHEAT ("a single leader at the best-connected site") made
    /// precise by AWARE's model: replica i sits in region i mod R (as
    /// [`Config`] places them), the predictor ([`byzscale_aware::predict`])
    /// reads the network's one-way delays between the replicas' regions
    /// (jitter left out), and its exhaustive search over ⟨leader, V_max
    /// set⟩ ([`byzscale_aware::exhaustive`]) picks the configuration with
    /// the lowest predicted consensus latency, the first in lexicographic
    /// order on ties (so a uniform network keeps position 0 and the default
    /// holders). With Δ = 0 every weight is 1 and only the leader matters.
    /// View changes rotate round-robin from that leader.
    pub fn placement(&self, net: &NetModel) -> Result<Placement, SimError> {
        let qs = self.quorum_system()?;
        if !self.best_leader {
            let predicted_ms = None;
            return Ok(Placement {
                qs,
                leader: 0,
                predicted_ms,
            });
        }
        let n = self.replicas;
        let regions = net.regions.len().max(1);
        // the model's unit is 0.01 ms; the network's is 1 ns
        let rows = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (net.one_way[i % regions][j % regions] / 10_000) as i64)
                    .collect()
            })
            .collect();
        let bad = |e: byzscale_aware::AwareError| SimError::Config(format!("--best-leader: {e}"));
        let m = byzscale_aware::Matrix::new(rows).map_err(bad)?;
        let mode = match self.mode() {
            FaultModel::Bft => byzscale_aware::Mode::Bft,
            FaultModel::Cft => byzscale_aware::Mode::Cft,
        };
        let p = byzscale_aware::Params {
            n,
            f: self.f,
            delta: self.delta,
            mode,
            rounds: 10,
        };
        let found = byzscale_aware::exhaustive(&m, &p).map_err(bad)?;
        let qs = if self.delta > 0 {
            QuorumSystem::wheat(self.f, self.delta, self.mode(), &found.config.rmax)
                .map_err(|e| SimError::Config(e.to_string()))?
        } else {
            qs
        };
        Ok(Placement {
            qs,
            leader: found.config.leader,
            predicted_ms: Some(found.latency as f64 / 100.0),
        })
    }

    fn quorum_system(&self) -> Result<QuorumSystem, SimError> {
        let mode = self.mode();
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

    /// Whether correct replicas keep their records on disks and crash and
    /// restart on a schedule drawn from the seed.
    pub fn restarts(&self) -> bool {
        self.crash_restart || self.adversary == Adversary::Mixed
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

    fn crypto_mode(&self) -> CryptoMode {
        if self.modeled_crypto {
            CryptoMode::Modeled
        } else {
            CryptoMode::Real
        }
    }

    /// Which replica positions misbehave: the initial leader (at position
    /// `leader`) first, the rest drawn from the seed.
    fn byzantine(&self, leader: usize, rng: &mut ChaCha8Rng) -> BTreeSet<usize> {
        let n = self.replicas;
        let mut byz = BTreeSet::new();
        if self.byzantine_count > 0 {
            byz.insert(leader);
            let mut rest: Vec<usize> = (0..n).filter(|i| *i != leader).collect();
            while byz.len() < self.byzantine_count.min(n) {
                let i = rng.gen_range(0..rest.len());
                byz.insert(rest.swap_remove(i));
            }
        }
        byz
    }
}

/// One run's own figures (the common ones are in [`Outcome`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    pub completed: u64,
    pub committed: u64,
    /// Requests failed "session expired: outcome unknown" (not completed).
    pub expired: u64,
    pub view_changes: u64,
    pub linearizability_inconclusive: bool,
    #[serde(skip)]
    pub latencies: Vec<Time>,
    /// The most bytes the client table (replicated state) held at any
    /// correct replica, and the most bytes of pending requests (local).
    pub client_table_peak: u64,
    pub pending_peak: u64,
    /// Client entries expired at checkpoints (most at one correct replica).
    pub clients_expired: u64,
    /// Operations of the checked history given a batch time (with expiry on).
    pub timed_ops: u64,
    /// Slots run tentatively (most at one correct replica).
    pub tentative_slots: u64,
}

/// The JSON of `byzscale sim smr --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub protocol: &'static str,
    pub replicas: usize,
    pub f: usize,
    pub delta: usize,
    pub mode: &'static str,
    #[serde(flatten)]
    pub conditions: Conditions,
    #[serde(flatten)]
    pub summary: Summary,
    pub committed_requests: u64,
    pub completed_requests: u64,
    /// Requests failed "session expired: outcome unknown", over all runs:
    /// checked as possibly applied, and not completed.
    pub expired: u64,
    pub view_changes: u64,
    pub messages: u64,
    pub linearizability_inconclusive: u64,
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p99_ms: f64,
    /// WHEAT options of the run ([`Config::tentative`], [`Config::best_leader`]),
    /// view 0's leader position and AWARE's predicted consensus latency for
    /// the placement (with `best_leader`).
    pub tentative: bool,
    pub best_leader: bool,
    pub first_leader: usize,
    pub predicted_consensus_ms: Option<f64>,
    /// Slots run tentatively, over runs (most at one correct replica per run).
    pub tentative_slots: u64,
    pub simulated_cpu_seconds: f64,
    /// Summed over runs (runs use all cores in parallel).
    pub simulation_seconds: f64,
    pub checking_seconds: f64,
    /// Message deliveries per second of simulation-loop time on one core.
    pub deliveries_per_second: f64,
    /// The most bytes the client table held at a correct replica in any
    /// run, and its bound (`Params::client_table_bytes`).
    pub client_table_peak_bytes: u64,
    pub client_table_bound: usize,
    /// The most bytes of pending requests at a correct replica in any run,
    /// and its bound (`Params::pending_bytes`).
    pub pending_peak_bytes: u64,
    pub pending_bound: usize,
    pub clients_expired: u64,
    /// Operations checked at their batch times, over all runs (with expiry
    /// on; see [`batch_times`]).
    pub timed_ops: u64,
}

impl scenario::Report for Report {
    fn table(&self) -> String {
        let mut s = format!(
            "smr: N={} f={} Δ={} {} | {}\n",
            self.replicas,
            self.f,
            self.delta,
            self.mode,
            self.conditions.heading("")
        );
        s.push_str(&self.summary.verdict_line());
        s.push_str(&format!(
            "  committed {:>8}   view changes {:>6}   messages {:>10}   faults recorded {:>6}   expired {}\n",
            self.committed_requests,
            self.view_changes,
            self.messages,
            self.summary.faults_recorded,
            self.expired
        ));
        if self.conditions.byzantine_clients > 0 {
            s.push_str(&format!(
                "  byzantine clients {}   client table peak {} B (bound {})   pending peak {} B (bound {})   expired {}\n",
                self.conditions.byzantine_clients,
                self.client_table_peak_bytes,
                self.client_table_bound,
                self.pending_peak_bytes,
                self.pending_bound,
                self.clients_expired
            ));
        }
        s.push_str(&format!(
            "  latency p50 {:.3} ms   p99 {:.3} ms (virtual)   {:.0} deliveries/s per core   {:.2} s wall\n",
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.deliveries_per_second,
            self.summary.wall_seconds
        ));
        if self.mode == "cft"
            && !matches!(
                self.conditions.byzantine,
                "none" | "silent" | "slow" | "replay"
            )
        {
            s.push_str("  note: CFT mode tolerates crashes only; Byzantine adversaries are expected to break it\n");
        }
        s.push_str(&self.summary.failing_lines());
        s
    }
}

/// The keys and addresses of a run's endpoints.
struct Endpoints {
    mode: CryptoMode,
    replicas: Vec<(Addr, Identity)>,
    clients: ClientKeys,
}

impl Endpoints {
    fn new(cfg: &Config, members: &[NodeId]) -> Self {
        Endpoints {
            mode: cfg.crypto_mode(),
            replicas: members
                .iter()
                .enumerate()
                .map(|(i, m)| (Addr::Node(*m), identity(1, i)))
                .collect(),
            clients: ClientKeys::new(cfg.clients, cfg.byzantine_clients),
        }
    }

    /// Replica `i` knows every replica and client.
    fn replica(&self, i: usize) -> Crypto {
        let (me, id) = &self.replicas[i];
        let mut c = Crypto::new(*me, id.clone(), self.mode);
        let replicas = self.replicas.iter().map(|(a, id)| (*a, id));
        for (a, pid) in replicas.chain(self.clients.all()) {
            if a != *me {
                c.add_peer(a, pid.public()).expect("valid key");
            }
        }
        c
    }

    /// Client `me` (keys `id`) knows the replicas.
    fn client(&self, me: Addr, id: &Identity) -> Crypto {
        let replicas = self.replicas.iter().map(|(a, id)| (*a, id));
        clients::client_crypto(self.mode, me, id, replicas)
    }
}

type SmrSim = Sim<Message, Input, Output>;

/// The crash-restart schedule of a run and the disks of its correct replicas.
#[derive(Default)]
pub struct Restarts {
    pub plan: CrashPlan,
    pub disks: BTreeMap<NodeIdx, SmrDisk>,
}

/// A replica's disk: the fold of its records ([`smr::Durable`]).
pub type SmrDisk = SharedDisk<smr::replica::Record, smr::Durable>;

fn fold(d: &mut smr::Durable, r: smr::replica::Record) {
    d.apply(r);
}

impl Scenario for Config {
    type Message = Message;
    type World = Audit;
    type Run = Run;
    type Report = Report;

    fn validate(&self) -> Result<(), SimError> {
        self.placement(&self.network.model()?)?;
        Ok(())
    }

    fn seeds(&self) -> std::ops::Range<u64> {
        self.seed_start..self.seed_start + self.seeds
    }

    fn build(&self, seed: u64) -> Result<Setup<Self>, SimError> {
        let n = self.replicas;
        let members: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
        let base = self.network.model()?;
        let placed = self.placement(&base)?;
        let g =
            GroupInfo::new(GroupId(0), members.clone(), placed.qs).with_first_leader(placed.leader);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);

        let mut params = Params::for_network(base.max_one_way());
        params.checkpoint_interval = 32;
        params.window = 128;
        params.tentative = self.tentative;
        client_limits(&mut params, self.client_expiry_slots);
        let (net, stabilize) = if self.calm {
            (base, 0)
        } else {
            base.turbulent()
        };
        let regions = net.regions.len().max(1);
        let mut sim: SmrSim = Sim::new(seed, net, CpuModel::calibrated());
        let byz = self.byzantine(placed.leader, &mut rng);
        let keys = Rc::new(Endpoints::new(self, &members));

        let mut team = attacks::Team::new(self.adversary, members.clone(), &params);
        let mut replica_nodes = BTreeMap::new();
        let mut correct = Vec::new();
        let mut disks = BTreeMap::new();
        for (i, &me) in members.iter().enumerate() {
            let make = || attacks::replica(me, &g, &params);
            let crypto = || keys.replica(i);
            let addr = keys.replicas[i].0;
            let placed = if byz.contains(&i) {
                team.add(&mut sim, &mut rng, addr, i % regions, crypto, make)
            } else if self.restarts() {
                let disk: SmrDisk = Disk::shared(StorageModel::ssd(), smr::Durable::new(), fold);
                let first = Replica::new(me, g.clone(), params.clone(), KvStore::new());
                let (g, p, keys) = (g.clone(), params.clone(), keys.clone());
                let recover = move |kept: &smr::Durable| {
                    let (g, p, crypto) = (g.clone(), p.clone(), keys.replica(i));
                    Replica::recover(me, g, p, KvStore::new(), kept.clone(), &crypto)
                };
                let d = disk.clone();
                let replica = ProtocolActor::replica;
                let idx =
                    sim.add_durable_node(addr, crypto(), i % regions, d, first, replica, recover);
                disks.insert(idx, disk);
                vec![idx]
            } else {
                vec![sim.add_node(addr, crypto(), make(), i % regions)]
            };
            if !byz.contains(&i) {
                correct.extend(placed.iter().copied());
            }
            for idx in placed {
                replica_nodes.insert(idx, i);
            }
        }

        let mut client_idx = Vec::new();
        for (c, (addr, id)) in keys.clients.honest.iter().enumerate() {
            let client = Client::new(ClientId(c as u64 + 1), g.clone(), params.clone());
            let actor: ProtocolActor<Client, Input, Output> = ProtocolActor::client(client);
            client_idx.push(sim.add_node(*addr, keys.client(*addr, id), actor, c % regions));
        }

        for (addr, id, kind, k) in &keys.clients.hostile {
            let id_of = addr.client().expect("a client address");
            let h = clients::Hostile::new(id_of, g.clone(), params.clone(), *kind, *k);
            let actor: ProtocolActor<clients::Hostile, Input, Output> = ProtocolActor::client(h);
            let crypto = keys.client(*addr, id);
            sim.add_node(*addr, crypto, actor, (*k) % regions);
        }

        if let Some(ms) = self.crash_leader_at_ms {
            let leader = replica_nodes
                .iter()
                .find(|(_, p)| **p == placed.leader)
                .map(|(i, _)| *i)
                .expect("leader exists");
            sim.crash((ms * MILLIS as f64) as Time, leader);
        }

        let plan = if self.restarts() {
            let opts = CrashOptions::standard(params.request_timeout);
            CrashPlan::draw(seed, &[correct], self.f, self.requests, &opts)
        } else {
            CrashPlan::none()
        };
        let restarts = Restarts { plan, disks };
        let mut world = Audit::new(
            self,
            seed,
            byz,
            replica_nodes,
            client_idx.clone(),
            restarts,
            params.clone(),
        );
        // clients start staggered by 100 µs
        for (cl, &node) in client_idx.iter().enumerate() {
            let at = cl as Time * 100 * 1_000;
            if let Some(input) = world.workload.next(cl, at) {
                sim.schedule_input(at, node, Input::Client(input));
            }
        }
        let deadline = stabilize + 120 * SECS + 400 * sim.net().max_one_way();
        let limits = Limits {
            // a run that thrashes (possible only with more Byzantine replicas
            // than tolerated) ends on an event or simulated-CPU budget
            max_events: Some(2_000_000 + 50_000 * self.requests),
            max_cpu: Some(5 * SECS + 25 * MILLIS * self.requests),
            ..Limits::until(deadline)
        };
        Ok(Setup { sim, world, limits })
    }

    fn audit(&self, sim: &mut SmrSim, world: Audit, ending: Ending, out: &mut Outcome) -> Run {
        world.finish(sim, ending, out)
    }

    fn replay_command(&self, seed: u64) -> String {
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
        if self.transactions {
            c.push_str(" --transactions");
        }
        if self.expiry {
            c.push_str(" --expiry");
        }
        for (on, flag) in [
            (self.tentative, " --tentative"),
            (self.best_leader, " --best-leader"),
            (self.calm, " --calm"),
        ] {
            if on {
                c.push_str(flag);
            }
        }
        if let Some(t) = self.crash_leader_at_ms {
            c.push_str(&format!(" --crash-leader-at {t}"));
        }
        if self.restarts() {
            c.push_str(" --crash-restart");
        }
        if self.modeled_crypto {
            c.push_str(" --modeled-crypto");
        }
        if self.byzantine_clients > 0 {
            c.push_str(&format!(" --byzantine-clients {}", self.byzantine_clients));
        }
        if self.client_expiry_slots != CLIENT_EXPIRY_SLOTS {
            c.push_str(&format!(
                " --client-expiry-slots {}",
                self.client_expiry_slots
            ));
        }
        c
    }

    fn summarize(&self, sweep: &Sweep<Run>) -> Report {
        let mut params = Params::default();
        client_limits(&mut params, self.client_expiry_slots);
        let lat = sweep.sorted(|r| &r.run.latencies);
        let sim_seconds = sweep.total(|r| r.outcome.sim_seconds);
        let deliveries = sweep.sum(|r| r.outcome.messages);
        let placed = self
            .network
            .model()
            .ok()
            .and_then(|net| self.placement(&net).ok());
        Report {
            protocol: "smr",
            replicas: self.replicas,
            f: self.f,
            delta: self.delta,
            mode: if self.cft { "cft" } else { "bft" },
            conditions: self.conditions(),
            summary: sweep.summary(),
            committed_requests: sweep.sum(|r| r.run.committed),
            completed_requests: sweep.sum(|r| r.run.completed),
            expired: sweep.sum(|r| r.run.expired),
            view_changes: sweep.sum(|r| r.run.view_changes),
            messages: deliveries,
            linearizability_inconclusive: sweep.count(|r| r.run.linearizability_inconclusive),
            latency_p50_ms: percentile_ms(&lat, 0.5),
            latency_p90_ms: percentile_ms(&lat, 0.9),
            tentative: self.tentative,
            best_leader: self.best_leader,
            first_leader: placed.as_ref().map_or(0, |p| p.leader),
            predicted_consensus_ms: placed.and_then(|p| p.predicted_ms),
            tentative_slots: sweep.sum(|r| r.run.tentative_slots),
            latency_p99_ms: percentile_ms(&lat, 0.99),
            simulated_cpu_seconds: sweep.total(|r| r.outcome.cpu_seconds),
            simulation_seconds: sim_seconds,
            checking_seconds: sweep.total(|r| r.outcome.check_seconds),
            deliveries_per_second: deliveries as f64 / sim_seconds.max(1e-9),
            client_table_peak_bytes: sweep.max(|r| r.run.client_table_peak),
            client_table_bound: params.client_table_bytes,
            pending_peak_bytes: sweep.max(|r| r.run.pending_peak),
            pending_bound: params.pending_bytes,
            clients_expired: sweep.max(|r| r.run.clients_expired),
            timed_ops: sweep.sum(|r| r.run.timed_ops),
        }
    }

    fn trace_path(&self) -> Option<&Path> {
        self.trace.as_deref()
    }
}

/// The client-table and pending-table limits of the scenario: small enough
/// that Byzantine clients ([`clients`]) reach them (the ByzCast scenario
/// uses them too).
pub fn client_limits(params: &mut Params, expiry: u64) {
    params.client_expiry_slots = expiry;
    params.client_pending_bytes = 256 << 10;
    params.pending_bytes = 4 << 20;
}

/// The node indices of a run's replicas, by position.
pub type ReplicaNodes = BTreeMap<NodeIdx, usize>;

/// The bytes by which a pending table may pass `Params::pending_bytes`:
/// the one request that made it evict (an operation of `max_op_bytes`
/// and its authenticator).
pub fn pending_slack(p: &Params) -> usize {
    p.max_op_bytes + 1024
}

/// Whether the tables of a correct replica (`who`) kept their byte bounds
/// over its life: its client table within `client_table_bytes`, its
/// pending table within `pending_bytes` and [`pending_slack`]. One
/// violation per table over its bound.
pub fn table_bounds(who: &str, s: &smr::replica::Stats, p: &Params) -> Vec<String> {
    let mut v = Vec::new();
    if s.client_bytes_peak > p.client_table_bytes {
        v.push(format!(
            "bound: {who}'s client table held {} bytes, its bound is {}",
            s.client_bytes_peak, p.client_table_bytes
        ));
    }
    if s.pending_bytes_peak > p.pending_bytes + pending_slack(p) {
        v.push(format!(
            "bound: {who}'s pending table held {} bytes, its bound is {} (+{})",
            s.pending_bytes_peak,
            p.pending_bytes,
            pending_slack(p)
        ));
    }
    v
}
