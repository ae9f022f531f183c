//! The one run loop every protocol scenario shares (TigerBeetle's VOPR shape:
//! everything a run does is derived from its seed, and a failing seed prints
//! the one command that replays it).
//!
//! A protocol's scenario (in `crates/scenarios/<protocol>`) implements
//! [`Scenario`]: it validates its configuration, [`Scenario::build`]s the
//! simulation of one seed (nodes, adversaries, fault schedule, first inputs)
//! together with its [`World`] (the workload and the checkers, which observe
//! every output), [`Scenario::audit`]s the world when the run ends, and
//! [`Scenario::summarize`]s a sweep of seeds into its report. Everything else is
//! here, once:
//!
//! - [`run_one`]: the run loop. It advances virtual time in slices until the
//!   workload is done, a checker has failed the run, the deadline passes or the
//!   event/CPU budget is spent (a run with more Byzantine nodes than tolerated
//!   may thrash; the budget ends it instead of hogging a core), lets the run
//!   settle for a grace period, then hands the world to the audit.
//! - [`run_many`]: many seeds on all cores, results in seed order, the trace
//!   file, failing seeds with their replay commands, the report.
//! - [`Outcome`], [`Violations`], [`Summary`], [`Sweep`]: what every run and
//!   every report has in common, whatever the protocol.

use crate::engine::{Control, NodeIdx, Observer, Sim};
use crate::net_model::NetError;
use crate::runner::{self, FailingSeed};
use crate::storage::StorageFault;
use byzscale_core::protocol::{Fault, Time, MILLIS};
use byzscale_core::Addr;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("network: {0}")]
    Net(#[from] NetError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("trace file {path}: {err}")]
    Trace { path: PathBuf, err: std::io::Error },
}

/// Most violation texts kept per run (the count is exact).
pub const KEPT_VIOLATIONS: usize = 10;

/// Safety violations seen in a run: the first few texts and the exact count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    kept: Vec<String>,
    count: usize,
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, v: String) {
        self.count += 1;
        if self.kept.len() < KEPT_VIOLATIONS {
            self.kept.push(v);
        }
    }
    /// Add `count` violations of which `texts` are the first few.
    pub fn add(&mut self, texts: &[String], count: usize) {
        for t in texts
            .iter()
            .take(KEPT_VIOLATIONS.saturating_sub(self.kept.len()))
        {
            self.kept.push(t.clone());
        }
        self.count += count.max(texts.len());
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    pub fn count(&self) -> usize {
        self.count
    }
    pub fn texts(&self) -> &[String] {
        &self.kept
    }
    pub fn first(&self) -> Option<&String> {
        self.kept.first()
    }
}

/// The per-run state of a scenario: its workload and checkers, observing every
/// output and fault of the simulation.
pub trait World {
    /// The inputs the simulated nodes take (the workload gives them).
    type Input: 'static;
    /// The outputs they give (the checkers see them).
    type Output: 'static;
    /// `node` (at `addr`) gave `out` at `at`; `ctl` gives inputs or stops the run.
    fn on_output(
        &mut self,
        at: Time,
        node: NodeIdx,
        addr: Addr,
        out: Self::Output,
        ctl: &mut Control<Self::Input>,
    );
    /// `node` recorded `fault`.
    fn on_fault(
        &mut self,
        _at: Time,
        _node: NodeIdx,
        _fault: &Fault,
        _ctl: &mut Control<Self::Input>,
    ) {
    }
    /// `node` restarted (from its disk, with a crash-restart schedule),
    /// before its new incarnation starts.
    fn on_restart(&mut self, _at: Time, _node: NodeIdx, _ctl: &mut Control<Self::Input>) {}
    /// All the work was issued and completed (the run may end).
    fn done(&self) -> bool;
    /// A checker already saw a safety violation (the rest is noise).
    fn failed(&self) -> bool;
}

/// The engine's view of a world, and the violations every scenario shares:
/// a node that could not recover from its disk.
struct Watching<'a, W> {
    world: &'a mut W,
    violations: &'a mut Violations,
}

impl<W: World> Observer<W::Input, W::Output> for Watching<'_, W> {
    fn on_output(
        &mut self,
        at: Time,
        node: NodeIdx,
        addr: Addr,
        out: W::Output,
        ctl: &mut Control<W::Input>,
    ) {
        self.world.on_output(at, node, addr, out, ctl)
    }
    fn on_fault(&mut self, at: Time, node: NodeIdx, fault: &Fault, ctl: &mut Control<W::Input>) {
        if fault.is(StorageFault::Unrecoverable) {
            self.violations.push(format!(
                "recovery: {:?} could not restart from its disk: {}",
                fault.node, fault.detail
            ));
        }
        self.world.on_fault(at, node, fault, ctl)
    }
    fn on_restart(&mut self, at: Time, node: NodeIdx, ctl: &mut Control<W::Input>) {
        self.world.on_restart(at, node, ctl)
    }
}

/// The simulation of scenario `S`.
pub type SimOf<S> = Sim<
    <S as Scenario>::Message,
    <<S as Scenario>::World as World>::Input,
    <<S as Scenario>::World as World>::Output,
>;

/// When a run ends and how much it may spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Virtual time by which the work must be done.
    pub deadline: Time,
    /// Run to the deadline even when the workload is done (fixed-duration
    /// throughput runs, whose workload never ends).
    pub fixed_duration: bool,
    /// Virtual time run after the work is done, before the audit (lagging
    /// correct nodes catch up).
    pub grace: Time,
    /// How often done, failed and the budget are checked.
    pub slice: Time,
    /// Most events handled.
    pub max_events: Option<u64>,
    /// Most simulated CPU time, summed over all nodes.
    pub max_cpu: Option<Time>,
}

impl Limits {
    /// Until `deadline`, no grace, no budget, checked every 250 ms.
    pub fn until(deadline: Time) -> Self {
        Limits {
            deadline,
            fixed_duration: false,
            grace: 0,
            slice: 250 * MILLIS,
            max_events: None,
            max_cpu: None,
        }
    }
}

/// How the run loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The workload completed.
    Done,
    /// A checker failed the run.
    Failed,
    /// The deadline passed (the end of a fixed-duration run).
    Deadline,
    /// The event or CPU budget was spent.
    Budget,
}

impl Ending {
    /// Why unfinished work was not done by `now`, for liveness reports.
    pub fn why(self, now: Time) -> String {
        let s = now as f64 / 1e9;
        match self {
            Ending::Budget => format!("event/CPU budget exhausted at {s:.1} s (virtual)"),
            _ => format!("not completed by {s:.1} s (virtual)"),
        }
    }

    /// The liveness report of a run whose `pending` work (what and how
    /// many) was not done by `now`: why, then `states` (of some nodes).
    pub fn stuck(self, now: Time, pending: &str, states: &[String]) -> String {
        format!("{pending} {}; {}", self.why(now), states.join("; "))
    }
}

/// One seed's simulation, ready to run.
pub struct Setup<S: Scenario + ?Sized> {
    pub sim: SimOf<S>,
    pub world: S::World,
    pub limits: Limits,
}

/// What every run reports. The scenario's audit fills in the violations and
/// the liveness verdict; the run loop fills in the rest.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome {
    pub seed: u64,
    #[serde(rename = "violations", serialize_with = "texts")]
    pub violations: Violations,
    pub liveness: Option<String>,
    /// Messages delivered.
    pub messages: u64,
    pub faults_recorded: u64,
    /// Nodes restarted (from their disks, or with fresh actors).
    pub restarts: u64,
    pub virtual_ms: f64,
    /// Simulated CPU time of all nodes (calibrated cost model), seconds.
    pub cpu_seconds: f64,
    /// Wall time of the simulation loop and of the audit.
    pub sim_seconds: f64,
    pub check_seconds: f64,
    /// Virtual time when the run loop ended, before any grace period.
    #[serde(skip)]
    pub ended_at: Time,
    /// JSON lines for `--trace`.
    #[serde(skip)]
    pub trace: Vec<String>,
}

fn texts<S: serde::Serializer>(v: &Violations, s: S) -> Result<S::Ok, S::Error> {
    v.texts().serialize(s)
}

impl Outcome {
    /// The first safety violation, else the liveness failure (for replay lines).
    pub fn verdict(&self) -> Option<String> {
        if !self.violations.is_empty() {
            return Some(
                self.violations
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "violations".into()),
            );
        }
        self.liveness.as_ref().map(|l| format!("liveness: {l}"))
    }
}

/// A run that ended: the common outcome and the scenario's own figures.
#[derive(Clone, Debug)]
pub struct Finished<R> {
    pub outcome: Outcome,
    pub run: R,
}

/// A protocol scenario (see the module docs).
pub trait Scenario: Sync {
    /// What the simulated nodes send each other.
    type Message: Clone + Serialize + 'static;
    /// The workload and checkers of one run.
    type World: World;
    /// The scenario's own figures of one run.
    type Run: Send;
    /// What a sweep reports (JSON and a table).
    type Report: Report;

    /// Reject a configuration that cannot run, before any run.
    fn validate(&self) -> Result<(), SimError>;
    /// The simulation of `seed`.
    fn build(&self, seed: u64) -> Result<Setup<Self>, SimError>;
    /// The end-of-run checks: add violations and the liveness verdict to
    /// `outcome`, and return the run's own figures.
    fn audit(
        &self,
        sim: &mut SimOf<Self>,
        world: Self::World,
        ending: Ending,
        outcome: &mut Outcome,
    ) -> Self::Run;
    /// The seeds to run.
    fn seeds(&self) -> std::ops::Range<u64>;
    /// The command that replays `seed` alone.
    fn replay_command(&self, seed: u64) -> String;
    /// The report of a sweep.
    fn summarize(&self, sweep: &Sweep<Self::Run>) -> Self::Report;
    /// Where `--trace` lines go, if anywhere.
    fn trace_path(&self) -> Option<&Path> {
        None
    }
}

/// A report a command prints: JSON with `--json`, else a table.
pub trait Report: Serialize {
    fn table(&self) -> String;
}

/// Run one seed of `s` (see the module docs).
pub fn run_one<S: Scenario>(s: &S, seed: u64) -> Result<Finished<S::Run>, SimError> {
    let Setup {
        mut sim,
        mut world,
        limits,
    } = s.build(seed)?;
    let started = std::time::Instant::now();
    let mut t = sim.now();
    let mut shared = Violations::new();
    let ending = loop {
        if !limits.fixed_duration {
            if world.failed() || !shared.is_empty() {
                break Ending::Failed;
            }
            if world.done() {
                break Ending::Done;
            }
        }
        if t >= limits.deadline {
            break Ending::Deadline;
        }
        t = t.saturating_add(limits.slice.max(1)).min(limits.deadline);
        let mut watch = Watching {
            world: &mut world,
            violations: &mut shared,
        };
        sim.run_until(t, &mut watch);
        let st = sim.stats();
        let busy: Time = st.per_node.iter().map(|n| n.busy_ns).sum();
        if limits.max_events.is_some_and(|m| st.events > m)
            || limits.max_cpu.is_some_and(|m| busy > m)
        {
            break Ending::Budget;
        }
    };
    let ended_at = sim.now();
    if ending == Ending::Done && limits.grace > 0 {
        let mut watch = Watching {
            world: &mut world,
            violations: &mut shared,
        };
        sim.run_for(limits.grace, &mut watch);
    }
    let sim_seconds = started.elapsed().as_secs_f64();
    let checked = std::time::Instant::now();
    let mut outcome = Outcome {
        seed,
        ended_at,
        ..Outcome::default()
    };
    let run = s.audit(&mut sim, world, ending, &mut outcome);
    outcome.violations.add(shared.texts(), shared.count());
    let stats = sim.stats();
    outcome.messages = stats.delivered;
    outcome.faults_recorded = stats.faults;
    outcome.restarts = stats.restarts;
    outcome.virtual_ms = sim.now() as f64 / 1e6;
    outcome.cpu_seconds = stats.per_node.iter().map(|n| n.busy_ns).sum::<u64>() as f64 / 1e9;
    outcome.sim_seconds = sim_seconds;
    outcome.check_seconds = checked.elapsed().as_secs_f64();
    Ok(Finished { outcome, run })
}

/// Every run of a sweep, in seed order.
#[derive(Clone, Debug)]
pub struct Sweep<R> {
    pub runs: Vec<Finished<R>>,
    pub wall_seconds: f64,
    pub failing_seeds: Vec<FailingSeed>,
}

impl<R> Sweep<R> {
    pub fn len(&self) -> usize {
        self.runs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
    /// Sum of `f` over runs.
    pub fn sum(&self, f: impl Fn(&Finished<R>) -> u64) -> u64 {
        self.runs.iter().map(f).sum()
    }
    /// Largest `f` over runs (0 for an empty sweep).
    pub fn max(&self, f: impl Fn(&Finished<R>) -> u64) -> u64 {
        self.runs.iter().map(f).max().unwrap_or(0)
    }
    /// Sum of `f` over runs, for real-valued figures.
    pub fn total(&self, f: impl Fn(&Finished<R>) -> f64) -> f64 {
        self.runs.iter().map(f).sum()
    }
    /// Mean of `f` over runs (0 for an empty sweep).
    pub fn mean(&self, f: impl Fn(&Finished<R>) -> f64) -> f64 {
        self.total(f) / self.runs.len().max(1) as f64
    }
    /// Runs where `f` holds.
    pub fn count(&self, f: impl Fn(&Finished<R>) -> bool) -> u64 {
        self.runs.iter().filter(|r| f(r)).count() as u64
    }
    /// All samples `f` gives, over all runs, sorted.
    pub fn sorted(&self, f: impl Fn(&Finished<R>) -> &[Time]) -> Vec<Time> {
        let mut v: Vec<Time> = self
            .runs
            .iter()
            .flat_map(|r| f(r).iter().copied())
            .collect();
        v.sort_unstable();
        v
    }
    /// What every report says of its sweep.
    pub fn summary(&self) -> Summary {
        Summary {
            runs: self.runs.len() as u64,
            safety_violations: self.sum(|r| r.outcome.violations.count() as u64),
            liveness_failures: self.count(|r| r.outcome.liveness.is_some()),
            faults_recorded: self.sum(|r| r.outcome.faults_recorded),
            restarts: self.sum(|r| r.outcome.restarts),
            wall_seconds: self.wall_seconds,
            failing_seeds: self.failing_seeds.clone(),
        }
    }
}

/// The part of a report every scenario shares (flattened into its JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub runs: u64,
    pub safety_violations: u64,
    pub liveness_failures: u64,
    pub faults_recorded: u64,
    /// Node restarts over all runs (crash-restart schedules).
    pub restarts: u64,
    pub wall_seconds: f64,
    pub failing_seeds: Vec<FailingSeed>,
}

impl Summary {
    /// The verdict line of a report table.
    pub fn verdict_line(&self) -> String {
        let restarts = if self.restarts > 0 {
            format!("   restarts {:>6}", self.restarts)
        } else {
            String::new()
        };
        format!(
            "  runs {:>6}   safety violations {:>4}   liveness failures {:>4}{restarts}\n",
            self.runs, self.safety_violations, self.liveness_failures
        )
    }
    /// The failing seeds with their replay commands (the first ten).
    pub fn failing_lines(&self) -> String {
        self.failing_seeds
            .iter()
            .take(10)
            .map(|f| {
                format!(
                    "  FAIL seed {}: {}\n    replay: {}\n",
                    f.seed, f.reason, f.command
                )
            })
            .collect()
    }
}

/// The faults and conditions of a sweep as every replicated protocol's report
/// names them (flattened into its JSON, where the field names are the API).
#[derive(Clone, Debug, Serialize)]
pub struct Conditions {
    pub byzantine: &'static str,
    pub byzantine_count: usize,
    pub network: String,
    pub crypto: &'static str,
    pub crash_restart: bool,
    pub byzantine_clients: usize,
}

impl Conditions {
    /// `adversary`: the strategy's name and how many replicas run it;
    /// `modeled`: whether crypto is the cost model.
    pub fn new(
        adversary: (&'static str, usize),
        network: String,
        modeled: bool,
        crash_restart: bool,
        byzantine_clients: usize,
    ) -> Self {
        Conditions {
            byzantine: adversary.0,
            byzantine_count: adversary.1,
            network,
            crypto: crypto_label(modeled),
            crash_restart,
            byzantine_clients,
        }
    }

    /// The tail of a report's heading: `adversary A ×k{per}{restarts} |
    /// network N | crypto C`.
    pub fn heading(&self, per: &str) -> String {
        format!(
            "adversary {} ×{}{per}{} | network {} | crypto {}",
            self.byzantine,
            self.byzantine_count,
            restart_label(self.crash_restart),
            self.network,
            self.crypto
        )
    }
}

/// How a report names its crypto.
pub fn crypto_label(modeled: bool) -> &'static str {
    if modeled {
        "modeled (cost model, not real signatures)"
    } else {
        "real"
    }
}

/// How a report's adversary line names a crash-restart schedule.
pub fn restart_label(on: bool) -> &'static str {
    if on {
        " + crash-restart"
    } else {
        ""
    }
}

/// Run the scenario's seeds on all cores and summarize; `progress(done,
/// total)` sees runs finish.
pub fn run_many<S: Scenario>(s: &S, progress: impl FnMut(u64, u64)) -> Result<S::Report, SimError> {
    let sweep = sweep(s, progress)?;
    Ok(s.summarize(&sweep))
}

/// The runs of [`run_many`], before summarizing (and the trace file written).
pub fn sweep<S: Scenario>(
    s: &S,
    progress: impl FnMut(u64, u64),
) -> Result<Sweep<S::Run>, SimError> {
    s.validate()?;
    let seeds = s.seeds();
    let started = std::time::Instant::now();
    let runs = runner::run_seeds(
        seeds.end.saturating_sub(seeds.start),
        seeds.start,
        |seed| run_one(s, seed),
        progress,
    )?;
    let wall_seconds = started.elapsed().as_secs_f64();
    if let Some(path) = s.trace_path() {
        runner::write_lines(path, runs.iter().flat_map(|r| r.outcome.trace.iter())).map_err(
            |err| SimError::Trace {
                path: path.to_path_buf(),
                err,
            },
        )?;
    }
    let failing_seeds = runs
        .iter()
        .filter_map(|r| {
            let reason = r.outcome.verdict()?;
            let seed = r.outcome.seed;
            Some(FailingSeed {
                seed,
                reason,
                command: s.replay_command(seed),
            })
        })
        .collect();
    Ok(Sweep {
        runs,
        wall_seconds,
        failing_seeds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_prefers_violations_over_liveness() {
        let mut o = Outcome::default();
        assert_eq!(o.verdict(), None);
        o.liveness = Some("stuck".into());
        assert_eq!(o.verdict().as_deref(), Some("liveness: stuck"));
        o.violations.push("agreement".into());
        assert_eq!(o.verdict().as_deref(), Some("agreement"));
    }
}
