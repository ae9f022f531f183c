//! `byzscale sim at2`: consensusless asset transfer (AT2, seed 002 chapter 3)
//! over Bracha or Contagion, with clients that own their accounts, Byzantine
//! nodes and double-spending clients, and every checker, over many seeds;
//! plus the scale runs (`byzscale sim at2-scale`, [`scale`]).
//!
//! N processes; K of them are Byzantine. Each correct process serves one
//! client, which holds the key of its own account (demo account i for node
//! i, with [`Config::initial_balance`]); the clients share `--transfers`
//! transfers (closed loop: the next one after the previous completed), to
//! random accounts, for random small amounts, citing what they received
//! ([`workload`]). Every run uses the simulator engine
//! ([`byzscale_sim::engine`]): real ed25519 and pairwise HMAC channels
//! unless `--modeled-crypto`, the calibrated CPU model, and the chosen
//! latency matrix with 1% duplicated and 5% reordered messages (links never
//! lose messages: both broadcasts assume reliable links, as the thesis
//! does).
//!
//! The K Byzantine nodes collude ([`byzscale_scenario_broadcast::Team`];
//! they are in [`attacks`]), each with a Byzantine client's key:
//!
//! | attack | what they do |
//! |---|---|
//! | double spend | the node's client signs two transfers of its whole balance with one sequence number; the node proposes one to each half of the correct nodes (the team votes for both) and broadcasts both as one equivocating broadcast instance (Bracha: SEND A to one half, SEND B to the other; Contagion: GOSSIP A / B straight to each half) |
//! | equivocation in the broadcast | for their team's split instances every Byzantine process ECHOes A to the first half and B to the second and READYs both as fast as possible; for correct sources' instances they withhold ECHO/READY (Contagion) or send READY for a bogus digest (Bracha) |
//! | equivocating votes | they endorse every transfer they are asked to vote on, conflicting ones included |
//! | fake dependency | a transfer citing an incoming transfer that was never issued, to justify more than the balance |
//! | overdraft | a transfer above the balance |
//! | forgery | a transfer from a correct client's account, signed with another key |
//!
//! Besides, `--double-spenders` Byzantine *clients* (demo accounts N, N+1,
//! …, with the same initial balance) each sign two transfers of their whole
//! balance with sequence number 1 and hand them to two different correct
//! nodes at the same moment (issue 17: the thesis' double-spending owner,
//! with no Byzantine node involved).
//!
//! Checkers ([`audit`], over correct processes only):
//! - **agreement**: no two correct processes apply different transfers with
//!   the same `(account, seq)` — each such id counts in `double_spends_applied`;
//! - **no overdraft**: replaying each process's applied transfers in order
//!   never takes an account below zero, and the process's final local
//!   balances are all non-negative and equal to the replay;
//! - **supply**: every correct process's balances add up to the initial supply;
//! - **fake dependencies and forgeries** are never applied;
//! - **validity**: no correct client's certified transfer is found invalid;
//! - **liveness**: every transfer a correct client's node accepted is applied
//!   at every correct process by the deadline, and every correct client
//!   completed its share of the workload.
//!
//! With K > F (Bracha: F = ⌊(N−1)/3⌋; Contagion: F = ⌊βN⌋ for the assumed
//! fraction β) the run is accepted and the checkers catch what breaks; a failing
//! seed is listed with the one command that replays it.
//!
//! A scenario's messages are its broadcast's (inside AT2's), so the scenario
//! is [`Over`] a broadcast type ([`OverBracha`], [`OverContagion`]), the one
//! [`Config::broadcast`] names. The run loop, the sweep over seeds and the
//! common report fields are the simulator's ([`byzscale_sim::scenario`]).

pub mod attacks;
pub mod audit;
pub mod scale;
pub mod workload;

pub use attacks::{Attack, DEFAULT_ATTACKS};
pub use byzscale_scenario_broadcast::MODELED;
pub use byzscale_sim::net_model::NetworkChoice;
pub use byzscale_sim::scenario::{run_many, run_one, SimError};

use attacks::{AttackLog, ByzNode, Node};
use audit::Audit;
use byzscale_at2::{Account, At2, Batch, Genesis, Input, Output, SignedTransfer, Transfer};
use byzscale_broadcast::probabilistic::params::{self, Analysis, ContagionParams};
use byzscale_broadcast::{bracha, probabilistic, Bracha, Contagion};
use byzscale_core::crypto::CryptoMode;
use byzscale_core::protocol::{Time, MICROS, SECS};
use byzscale_core::NodeId;
use byzscale_scenario_broadcast::{Colluding, Equivocation, Team};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{Channels, NodeIdx, ProtocolActor, Sim};
use byzscale_sim::group;
use byzscale_sim::runner::percentile_ms;
use byzscale_sim::scenario::{
    self, crypto_label, Ending, Limits, Outcome, Scenario, Setup, Summary, Sweep,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

/// Which secure broadcast AT2 runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastKind {
    Bracha,
    Contagion,
}

impl BroadcastKind {
    /// Every name `--broadcast` takes.
    pub const NAMES: [&'static str; 2] = ["bracha", "contagion"];
    pub fn name(self) -> &'static str {
        match self {
            BroadcastKind::Bracha => "bracha",
            BroadcastKind::Contagion => "contagion",
        }
    }
    pub fn from_name(name: &str) -> Option<Self> {
        [BroadcastKind::Bracha, BroadcastKind::Contagion]
            .into_iter()
            .find(|b| b.name() == name)
    }
}

/// The largest `sim at2` group. Every process keeps a balance per account (one
/// account per process) and the checker replays every correct process's ledger,
/// so balances alone grow as N² (about 2.5 GB at N = 5,000, before any message
/// is in flight; N = 1,000 with 50 transfers peaks at 1.8 GB in all).
pub const MAX_PROCESSES: usize = 5_000;

/// The scenario's knobs (the flags of `byzscale sim at2`).
#[derive(Clone, Debug)]
pub struct Config {
    pub processes: usize,
    /// K: how many processes are Byzantine (K > F is allowed on purpose).
    pub byzantine: usize,
    pub broadcast: BroadcastKind,
    /// Transfers issued by the correct owners, all together.
    pub transfers: u64,
    pub seeds: u64,
    pub seed_start: u64,
    pub network: NetworkChoice,
    pub modeled_crypto: bool,
    pub initial_balance: u64,
    /// Contagion: the Byzantine fraction β the parameters are chosen for.
    pub assumed_fraction: f64,
    /// Contagion: the per-broadcast failure probability ε they are chosen for.
    pub epsilon: f64,
    /// Contagion: explicit (G, E, Ê, R, R̂, D, D̂) instead of [`params::select`].
    pub params: Option<ContagionParams>,
    pub attacks: Vec<Attack>,
    /// Byzantine clients that each give two correct nodes two transfers with
    /// one sequence number at the same moment.
    pub double_spenders: usize,
    pub command_line: String,
}

impl Config {
    pub fn new(processes: usize, byzantine: usize, broadcast: BroadcastKind) -> Self {
        Config {
            processes,
            byzantine,
            broadcast,
            transfers: 20,
            seeds: 1,
            seed_start: 0,
            network: NetworkChoice::Preset("lan".into()),
            modeled_crypto: false,
            initial_balance: 1000,
            assumed_fraction: 0.1,
            epsilon: 1e-6,
            params: None,
            attacks: DEFAULT_ATTACKS.to_vec(),
            double_spenders: 2,
            command_line: String::new(),
        }
    }

    /// Faults the broadcast is configured to tolerate: ⌊(N−1)/3⌋ for Bracha,
    /// ⌊βN⌋ for Contagion.
    pub fn f(&self) -> usize {
        match self.broadcast {
            BroadcastKind::Bracha => self.processes.saturating_sub(1) / 3,
            BroadcastKind::Contagion => {
                (self.assumed_fraction * self.processes as f64).floor() as usize
            }
        }
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |s: String| Err(SimError::Config(s));
        if self.processes < 4 {
            return bad(format!(
                "--processes must be at least 4, got {}",
                self.processes
            ));
        }
        if self.byzantine >= self.processes {
            return bad(format!(
                "--byzantine {} must be smaller than --processes {}",
                self.byzantine, self.processes
            ));
        }
        if self.seeds == 0 {
            return bad("--seeds must be at least 1".into());
        }
        if self.processes > MAX_PROCESSES {
            return bad(format!(
                "--processes {} is more than {MAX_PROCESSES}: every process keeps a balance per account \
                 (one account per process), so memory grows as N²; use `byzscale sim at2-scale` for larger N",
                self.processes
            ));
        }
        if self.broadcast == BroadcastKind::Contagion {
            self.contagion()?;
        }
        self.network.model()?;
        Ok(())
    }

    /// The Contagion parameters of this run and their analysis.
    pub fn contagion(&self) -> Result<(ContagionParams, Analysis), SimError> {
        let f = self.f();
        match self.params {
            Some(p) => {
                p.validate().map_err(SimError::Config)?;
                Ok((p, params::analyze(self.processes, f, &p)))
            }
            None => params::select(self.processes, self.assumed_fraction, self.epsilon)
                .map(|s| (s.params, s.analysis))
                .map_err(|e| SimError::Config(e.to_string())),
        }
    }
}

/// A broadcast AT2 can be simulated over: built for a configuration, with
/// its Byzantine processes' equivocation.
pub trait SimBroadcast: Equivocation<Batch> {
    /// The [`Config::broadcast`] this is.
    const KIND: BroadcastKind;
    /// The endpoint of each member, for `cfg`.
    fn build(cfg: &Config, members: &[NodeId]) -> Result<Box<dyn Fn(NodeId) -> Self>, SimError>;
}

impl SimBroadcast for Bracha<Batch> {
    const KIND: BroadcastKind = BroadcastKind::Bracha;
    fn build(cfg: &Config, members: &[NodeId]) -> Result<Box<dyn Fn(NodeId) -> Self>, SimError> {
        let c = bracha::Config::with_f(members.to_vec(), cfg.f())
            .map_err(|e| SimError::Config(e.to_string()))?;
        let c = Arc::new(c);
        Ok(Box::new(move |i| Bracha::new(i, c.clone())))
    }
}

impl SimBroadcast for Contagion<Batch> {
    const KIND: BroadcastKind = BroadcastKind::Contagion;
    fn build(cfg: &Config, members: &[NodeId]) -> Result<Box<dyn Fn(NodeId) -> Self>, SimError> {
        let (p, _) = cfg.contagion()?;
        let c = probabilistic::Config::new(members.to_vec(), p)
            .map_err(|e| SimError::Config(e.to_string()))?;
        let c = Arc::new(c);
        Ok(Box::new(move |i| Contagion::new(i, c.clone())))
    }
}

/// What a run counts, and a sweep sums: attacks tried and what they got
/// through, transfers at each stage.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Counts {
    pub double_spend_attempts: u64,
    pub double_spends_applied: u64,
    pub fake_dependency_attempts: u64,
    pub fake_dependencies_applied: u64,
    pub forgery_attempts: u64,
    pub forgeries_applied: u64,
    pub transfers_submitted: u64,
    pub transfers_completed: u64,
    /// Refused at once for lack of funds (not a failure).
    pub transfers_failed: u64,
    /// Resubmissions (not checkable yet at a voter, or not certified).
    pub transfers_retried: u64,
    /// Distinct transfers applied by at least one correct process.
    pub transfers_applied: u64,
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            double_spend_attempts: self.double_spend_attempts + o.double_spend_attempts,
            double_spends_applied: self.double_spends_applied + o.double_spends_applied,
            fake_dependency_attempts: self.fake_dependency_attempts + o.fake_dependency_attempts,
            fake_dependencies_applied: self.fake_dependencies_applied + o.fake_dependencies_applied,
            forgery_attempts: self.forgery_attempts + o.forgery_attempts,
            forgeries_applied: self.forgeries_applied + o.forgeries_applied,
            transfers_submitted: self.transfers_submitted + o.transfers_submitted,
            transfers_completed: self.transfers_completed + o.transfers_completed,
            transfers_failed: self.transfers_failed + o.transfers_failed,
            transfers_retried: self.transfers_retried + o.transfers_retried,
            transfers_applied: self.transfers_applied + o.transfers_applied,
        }
    }
}

/// One run's own figures (the common ones are in [`Outcome`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub counts: Counts,
    pub messages_per_process: f64,
    pub bytes_per_process: f64,
    #[serde(skip)]
    pub latencies: Vec<Time>,
}

/// The JSON of `byzscale sim at2 --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub protocol: &'static str,
    pub broadcast: &'static str,
    pub processes: usize,
    /// Faults the broadcast is configured to tolerate.
    pub f: usize,
    pub byzantine: usize,
    pub network: String,
    pub crypto: &'static str,
    pub contagion_params: Option<ContagionParams>,
    /// The analytic per-broadcast failure bound of those parameters for K = F.
    pub contagion_epsilon: Option<f64>,
    #[serde(flatten)]
    pub summary: Summary,
    /// Summed over the runs.
    #[serde(flatten)]
    pub counts: Counts,
    /// Mean over runs of the messages (bytes) sent per correct process.
    pub messages_per_process: f64,
    pub bytes_per_process: f64,
    pub messages_per_process_per_transfer: f64,
    /// Submission to local application at the issuer (virtual time).
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

impl scenario::Report for Report {
    fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "at2 over {}: N={} F={} | {} Byzantine | network {} | crypto {}\n",
            self.broadcast, self.processes, self.f, self.byzantine, self.network, self.crypto
        ));
        if let (Some(p), Some(e)) = (&self.contagion_params, self.contagion_epsilon) {
            s.push_str(&format!(
                "  contagion G,E,Ê,R,R̂,D,D̂ = {p}   analytic ε per broadcast {e:.2e}\n"
            ));
        }
        s.push_str(&self.summary.verdict_line());
        s.push_str(&format!(
            "  double spends applied {} of {} attempts   fake dependencies applied {} of {}   forgeries applied {} of {}\n",
            self.counts.double_spends_applied,
            self.counts.double_spend_attempts,
            self.counts.fake_dependencies_applied,
            self.counts.fake_dependency_attempts,
            self.counts.forgeries_applied,
            self.counts.forgery_attempts
        ));
        s.push_str(&format!(
            "  transfers: submitted {} completed {} refused {} resubmitted {} applied {}   faults recorded {}\n",
            self.counts.transfers_submitted,
            self.counts.transfers_completed,
            self.counts.transfers_failed,
            self.counts.transfers_retried,
            self.counts.transfers_applied,
            self.summary.faults_recorded
        ));
        s.push_str(&format!(
            "  per process: {:.0} messages, {:.0} bytes ({:.1} messages per transfer)   latency p50 {:.3} ms p99 {:.3} ms (virtual)   {:.2} s wall\n",
            self.messages_per_process,
            self.bytes_per_process,
            self.messages_per_process_per_transfer,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.summary.wall_seconds
        ));
        s.push_str(&self.summary.failing_lines());
        s
    }
}

/// The scenario of a [`Config`] over the broadcast `B`: the simulation's
/// messages are `B`'s, so each broadcast is a scenario of its own.
#[derive(Clone, Debug)]
pub struct Over<B> {
    pub config: Config,
    broadcast: PhantomData<fn() -> B>,
}

/// AT2 over Bracha's broadcast.
pub type OverBracha = Over<Bracha<Batch>>;
/// AT2 over Contagion.
pub type OverContagion = Over<Contagion<Batch>>;

impl<B> Over<B> {
    /// `config` over `B`, which must be the broadcast `config.broadcast`
    /// names (else the scenario does not validate).
    pub fn new(config: Config) -> Self {
        Over {
            config,
            broadcast: PhantomData,
        }
    }
}

/// The nodes of one run, placed in `sim`.
struct Placed {
    node_of: BTreeMap<NodeIdx, NodeId>,
    log: Rc<RefCell<AttackLog>>,
}

impl<B: SimBroadcast> Over<B> {
    /// Every process, honest or a Byzantine node of `byz`, in `sim`.
    fn place(
        &self,
        sim: &mut Sim<byzscale_at2::Message<B::Message>, Input, Output>,
        members: &[NodeId],
        byz: &BTreeSet<NodeId>,
        at2: &Arc<byzscale_at2::Config>,
        mode: CryptoMode,
        hop: Time,
    ) -> Result<Placed, SimError> {
        let cfg = &self.config;
        let make = B::build(cfg, members)?;
        let team = Rc::new(Team::new(members, byz));
        let log = Rc::new(RefCell::new(AttackLog::default()));
        let regions = sim.net().regions.len().max(1);
        if mode == CryptoMode::Modeled {
            // labelled in the report: modeled signatures and channel MACs
            sim.set_channels(Channels::Modeled);
        }
        // one shared key directory; pairwise channel keys are derived on first use
        let directory = group::directory(members.iter().copied());
        let mut node_of = BTreeMap::new();
        for (i, &m) in members.iter().enumerate() {
            let crypto = group::crypto(m, &directory, mode);
            let node = if byz.contains(&m) {
                Node::Byzantine(ByzNode::new(
                    Colluding::byzantine(make(m), team.clone()),
                    at2.clone(),
                    mode,
                    team.clone(),
                    cfg.attacks.clone(),
                    40 * hop,
                    log.clone(),
                ))
            } else {
                Node::Honest(At2::new(make(m), at2.clone()))
            };
            let idx = sim.add_node(m.into(), crypto, ProtocolActor::new(node), i % regions);
            sim.set_byzantine(idx, byz.contains(&m));
            node_of.insert(idx, m);
        }
        Ok(Placed { node_of, log })
    }
}

/// Tags of the double-spending clients' transfers (their results are not
/// the workload's).
pub const DOUBLE_SPEND_TAG: u64 = 1 << 40;

impl<B: SimBroadcast> Scenario for Over<B> {
    type Message = byzscale_at2::Message<B::Message>;
    type World = Audit;
    type Run = Run;
    type Report = Report;

    fn validate(&self) -> Result<(), SimError> {
        if self.config.broadcast != B::KIND {
            return Err(SimError::Config(format!(
                "a scenario over {} cannot run --broadcast {}",
                B::KIND.name(),
                self.config.broadcast.name()
            )));
        }
        self.config.validate()
    }

    fn seeds(&self) -> std::ops::Range<u64> {
        self.config.seed_start..self.config.seed_start + self.config.seeds
    }

    fn build(&self, seed: u64) -> Result<Setup<Self>, SimError> {
        let cfg = &self.config;
        let members: Vec<NodeId> = (0..cfg.processes as u32).map(NodeId).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa7_2a72);
        // who is Byzantine: drawn from the seed
        let mut byz: BTreeSet<NodeId> = BTreeSet::new();
        let mut pool = members.clone();
        while byz.len() < cfg.byzantine {
            let i = rng.gen_range(0..pool.len());
            byz.insert(pool.swap_remove(i));
        }
        let correct: BTreeSet<NodeId> = members
            .iter()
            .copied()
            .filter(|m| !byz.contains(m))
            .collect();
        let n = cfg.processes as u32;
        let genesis = Genesis::demo(n + cfg.double_spenders as u32, cfg.initial_balance);
        let mut at2 = byzscale_at2::Config::new(genesis, members.clone(), cfg.f());
        let mode = if cfg.modeled_crypto {
            CryptoMode::Modeled
        } else {
            CryptoMode::Real
        };

        let base = cfg.network.model()?;
        let hop = base.max_one_way().max(50_000);
        at2.vote_timeout = 20 * hop;
        at2.defer_timeout = 40 * hop;
        let at2 = Arc::new(at2);
        let genesis = at2.genesis.clone();
        let net = base.with_duplicate(0.01).with_reorder(0.05, 2 * hop);
        let mut sim = Sim::new(seed, net, CpuModel::calibrated());
        let Placed { node_of, log } = self.place(&mut sim, &members, &byz, &at2, mode, hop)?;

        // the workload: the correct nodes' clients share `transfers`, closed loop
        let workload = workload::Workload::new(
            correct.iter().copied().collect(),
            members
                .iter()
                .map(|m| workload::client_account(*m))
                .collect(),
            cfg.transfers,
            hop,
            seed,
            mode,
        );
        let deadline = 60 * SECS + cfg.transfers * 200 * hop;
        let mut world = Audit::new(node_of, correct, workload, &genesis, log.clone(), deadline);
        let owners = world.workload.owners().to_vec();
        for (k, o) in owners.iter().enumerate() {
            if let Some(input) = world.workload.next(*o) {
                sim.schedule_input(k as Time * 10 * MICROS, world.idx(*o), input);
            }
        }
        // the double-spending clients: two transfers with sequence number 1,
        // to two different correct nodes at the same moment
        if owners.len() >= 2 {
            for d in 0..cfg.double_spenders as u32 {
                let key = byzscale_at2::demo_key(n + d);
                let i = rng.gen_range(0..owners.len());
                let j = (i + 1 + rng.gen_range(0..owners.len() - 1)) % owners.len();
                let pay = |to: NodeId| {
                    let t = Transfer {
                        from: Account::of(&key),
                        seq: 1,
                        to: workload::client_account(to),
                        amount: cfg.initial_balance,
                    };
                    SignedTransfer::sign_in(&key, mode, t, vec![])
                };
                let at = (d as Time + 1) * 20 * hop;
                let tag = DOUBLE_SPEND_TAG + d as u64;
                for (node, to) in [(owners[i], owners[j]), (owners[j], owners[i])] {
                    let input = Input::Submit {
                        transfer: pay(to),
                        tag,
                    };
                    sim.schedule_input(at, world.idx(node), input);
                }
                log.borrow_mut().double_spends += 1;
            }
        }
        let limits = Limits {
            // every run lasts until the deadline: the figures per process
            // count the whole window, whenever the workload completes
            fixed_duration: true,
            ..Limits::until(deadline)
        };
        Ok(Setup { sim, world, limits })
    }

    fn audit(
        &self,
        sim: &mut Sim<byzscale_at2::Message<B::Message>, Input, Output>,
        world: Audit,
        ending: Ending,
        out: &mut Outcome,
    ) -> Run {
        world.finish::<B>(sim, ending, out)
    }

    /// The command that replays `seed` alone.
    fn replay_command(&self, seed: u64) -> String {
        let cfg = &self.config;
        let mut c = format!(
            "byzscale sim at2 --processes {} --byzantine {} --broadcast {} --transfers {} --initial-balance {} --double-spenders {} --network {} --seeds 1 --seed-start {seed}",
            cfg.processes,
            cfg.byzantine,
            cfg.broadcast.name(),
            cfg.transfers,
            cfg.initial_balance,
            cfg.double_spenders,
            cfg.network.name()
        );
        if cfg.broadcast == BroadcastKind::Contagion {
            match cfg.params {
                Some(p) => c.push_str(&format!(" --contagion-params {p}")),
                None => c.push_str(&format!(
                    " --assumed-fraction {} --epsilon {:e}",
                    cfg.assumed_fraction, cfg.epsilon
                )),
            }
        }
        if cfg.modeled_crypto {
            c.push_str(" --modeled-crypto");
        }
        c
    }

    fn summarize(&self, sweep: &Sweep<Run>) -> Report {
        let cfg = &self.config;
        let contagion = match cfg.broadcast {
            BroadcastKind::Contagion => cfg.contagion().ok(),
            BroadcastKind::Bracha => None,
        };
        let lat = sweep.sorted(|r| &r.run.latencies);
        let messages = sweep.mean(|r| r.run.messages_per_process);
        let applied = sweep.mean(|r| r.run.counts.transfers_applied as f64);
        Report {
            protocol: "at2",
            broadcast: cfg.broadcast.name(),
            processes: cfg.processes,
            f: cfg.f(),
            byzantine: cfg.byzantine,
            network: cfg.network.name(),
            crypto: if cfg.modeled_crypto {
                MODELED
            } else {
                crypto_label(false)
            },
            contagion_params: contagion.as_ref().map(|c| c.0),
            contagion_epsilon: contagion.as_ref().map(|c| c.1.epsilon),
            summary: sweep.summary(),
            counts: sweep
                .runs
                .iter()
                .fold(Counts::default(), |a, r| a + r.run.counts),
            messages_per_process: messages,
            bytes_per_process: sweep.mean(|r| r.run.bytes_per_process),
            messages_per_process_per_transfer: if applied > 0.0 {
                messages / applied
            } else {
                0.0
            },
            latency_p50_ms: percentile_ms(&lat, 0.5),
            latency_p99_ms: percentile_ms(&lat, 0.99),
        }
    }
}

#[cfg(test)]
mod tests;
