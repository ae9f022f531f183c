//! `byzscale chaos`: a real SMR cluster (four `byzscale node` processes of
//! the KV store, f = 1) under write load through its Redis gateways, while a
//! fault plan drawn from a seed SIGKILLs and restarts up to f replicas at a
//! time, the whole group at once, and partitions replicas (one network
//! namespace per node, see [`crate::netns`]). At the end the load stops,
//! partitions heal, and the run waits for the group to serve; then
//!
//! - a fresh client reads back every acknowledged write (ordered MGETs), and
//! - the decided logs of the replicas' durable stores, read each time a
//!   replica was down and once more after the end, must agree slot by slot
//!   (and checkpoint by checkpoint).
//!
//! The [`ChaosReport`] lists the faults as applied (time, action, replicas,
//! process ids) and what the checks found; [`ChaosReport::violations`] is
//! empty on a pass.

mod check;
mod schedule;
mod writers;

pub use check::{agreement, read_store, Agreement, LogSample, Lost};
pub use schedule::{plan, FaultKind, Planned};

use crate::launcher::{scrape_metric, Local, LocalSpec};
use crate::netns::Netns;
use crate::node_file::{NodeFile, NodeProtocol};
use crate::protocols::smr::SmrClient;
use anyhow::{anyhow, bail, Context, Result};
use byzscale_apps::kv::KvOp;
use byzscale_core::config::Deployment;
use byzscale_core::GroupId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use writers::Writers;

/// Replicas of the chaos cluster, and the faults they tolerate.
const N: usize = 4;
const F: usize = 1;

/// How partitions are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitions {
    /// Network namespaces if they can be made here, else none (the report
    /// says why).
    Auto,
    /// Network namespaces, or fail.
    Netns,
    /// No partitions.
    Off,
}

/// What a chaos run does.
#[derive(Clone, Debug)]
pub struct ChaosSpec {
    /// Seeds the fault plan and the choice of replicas.
    pub seed: u64,
    /// Seconds of faults under load (one fault of each kind runs even if
    /// it takes longer).
    pub duration: f64,
    /// Closed-loop writers.
    pub writers: usize,
    pub partitions: Partitions,
    /// Keep the directory (node files, logs, stores) after the run.
    pub keep: bool,
    /// Where the files go (default: a fresh temporary directory).
    pub dir: Option<PathBuf>,
    /// Test switch: delete every replica's store during the whole-group
    /// crash, beyond what any BFT protocol tolerates; the checks must report
    /// the loss.
    pub unsafe_wipe_stores: bool,
}

/// One fault action as applied.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Seconds after the load started.
    pub t: f64,
    /// `kill`, `restart`, `partition`, `heal` or `unsafe-wipe-stores`.
    pub action: &'static str,
    /// The replicas (node indices).
    pub targets: Vec<usize>,
    /// The process ids killed (`kill`) or started (`restart`).
    pub pids: Vec<u32>,
}

/// What a chaos run did and found.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    pub protocol: &'static str,
    pub seed: u64,
    pub duration_s: f64,
    pub replicas: usize,
    pub f: usize,
    pub writers: usize,
    /// `netns`, `off`, or `unavailable: <why>`.
    pub partitions: String,
    pub schedule: Vec<Event>,
    pub acked_writes: usize,
    /// Writes without an acknowledgement (not checked).
    pub unacked_writes: u64,
    /// Acknowledged writes not read back (`None`: the reader did not run).
    pub lost_writes: Option<usize>,
    pub lost_examples: Vec<String>,
    /// Seconds from the end of the faults until a fresh client's write was
    /// acknowledged.
    pub served_again_s: Option<f64>,
    /// The highest view installed at the end (each view above 0 took a
    /// view change).
    pub final_view: Option<u64>,
    #[serde(flatten)]
    pub agreement: Agreement,
    pub violations: Vec<String>,
    pub pass: bool,
    /// The run's directory, if kept.
    pub dir: Option<String>,
}

/// Run `spec`: start the cluster, apply the plan under load, check.
pub async fn run(spec: &ChaosSpec) -> Result<ChaosReport> {
    if !(spec.duration > 0.0 && spec.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if spec.writers == 0 {
        bail!("--writers must be at least 1");
    }
    let (net, partitions) = network(spec.partitions)?;
    let dir = spec.dir.clone().unwrap_or_else(|| {
        let tag: u32 = rand::thread_rng().gen();
        std::env::temp_dir().join(format!("byzscale-chaos-{}-{tag:08x}", std::process::id()))
    });
    let local = Local::start(
        LocalSpec {
            groups: &[(N, F)],
            protocol: NodeProtocol::Smr,
            dir: Some(dir.clone()),
            keep: false,
            netns: net.as_ref(),
        },
        |_| {},
    )
    .await;
    let report = match local.and_then(|l| Run::new(l, net, spec)) {
        Ok(run) => run.drive(spec, partitions).await,
        Err(e) => Err(e),
    };
    if spec.keep {
        report.map(|r| ChaosReport {
            dir: Some(dir.display().to_string()),
            ..r
        })
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        report
    }
}

/// The namespaces for partitions, and how the report names the mechanism.
fn network(mode: Partitions) -> Result<(Option<Netns>, String)> {
    Ok(match mode {
        Partitions::Off => (None, "off".into()),
        Partitions::Netns => (
            Some(Netns::create(N).context("--partitions netns")?),
            "netns".into(),
        ),
        Partitions::Auto => match Netns::create(N) {
            Ok(ns) => (Some(ns), "netns".into()),
            Err(e) => (None, format!("unavailable: {e:#}")),
        },
    })
}

/// A chaos run in progress. Dropping it kills the nodes, then removes the
/// namespaces.
struct Run {
    local: Local,
    net: Option<Netns>,
    rng: StdRng,
    started: Instant,
    stores: Vec<PathBuf>,
    events: Vec<Event>,
    samples: Vec<LogSample>,
    errors: Vec<String>,
    wipe: bool,
}

impl Run {
    fn new(local: Local, net: Option<Netns>, spec: &ChaosSpec) -> Result<Run> {
        let stores = (0..N)
            .map(|i| {
                Ok(NodeFile::load(&local.dir.join(format!("node-{i}.toml")))?
                    .file
                    .data_dir)
            })
            .collect::<Result<_>>()?;
        Ok(Run {
            local,
            net,
            rng: StdRng::seed_from_u64(spec.seed),
            started: Instant::now(),
            stores,
            events: Vec::new(),
            samples: Vec::new(),
            errors: Vec::new(),
            wipe: spec.unsafe_wipe_stores,
        })
    }

    async fn drive(mut self, spec: &ChaosSpec, partitions: String) -> Result<ChaosReport> {
        let dep = self.local.dep.clone();
        serve_within(&dep, Duration::from_secs(30))
            .await
            .context("the new cluster did not serve")?;
        let plan = schedule::plan(&mut self.rng, spec.duration, N, F, self.net.is_some());
        let gateways = (0..N).map(|i| self.local.ports.redis(i)).collect();
        let writers = Writers::start(spec.writers, gateways, spec.seed);
        self.started = Instant::now();
        for p in &plan {
            self.apply(p).await?;
        }
        let end = self.started + Duration::from_secs_f64(spec.duration);
        tokio::time::sleep_until(end.into()).await;
        let written = writers.finish().await;
        if let Some(n) = &mut self.net {
            n.heal()?;
        }
        let t = Instant::now();
        let served = serve_within(&dep, Duration::from_secs(60)).await;
        let served_again_s = served.is_ok().then(|| t.elapsed().as_secs_f64());
        let lost = match &served {
            Ok(()) => check::read_back(&dep, &written.acked).await,
            Err(e) => Err(anyhow!("{e:#}")),
        };
        let final_view = self.view().await;
        let all: Vec<usize> = (0..N).collect();
        self.local.kill_all(&all);
        self.sample(&all);
        let agreement = check::agreement(&self.samples);
        let mut violations = std::mem::take(&mut self.errors);
        if let Err(e) = &served {
            violations.push(format!(
                "the group did not serve within 60 s after the faults: {e:#}"
            ));
        }
        if written.acked.is_empty() {
            violations.push("no write was acknowledged: nothing was checked".into());
        }
        let (lost_writes, lost_examples) = match lost {
            Ok(l) => (Some(l.lost_writes), l.examples),
            Err(e) => {
                violations.push(format!("reading the acknowledged writes back: {e:#}"));
                (None, Vec::new())
            }
        };
        violations.extend(describe(lost_writes, &agreement));
        Ok(ChaosReport {
            protocol: "smr",
            seed: spec.seed,
            duration_s: spec.duration,
            replicas: N,
            f: F,
            writers: spec.writers,
            partitions,
            schedule: std::mem::take(&mut self.events),
            acked_writes: written.acked.len(),
            unacked_writes: written.unacked,
            lost_writes,
            lost_examples,
            served_again_s,
            final_view,
            agreement,
            pass: violations.is_empty(),
            violations,
            dir: None,
        })
    }

    /// Wait for `p`'s start, then apply it and undo it after its hold.
    async fn apply(&mut self, p: &Planned) -> Result<()> {
        tokio::time::sleep_until((self.started + Duration::from_secs_f64(p.start)).into()).await;
        let hold = Duration::from_secs_f64(p.hold);
        match p.kind {
            FaultKind::Restart => {
                let targets = self.targets(p).await;
                self.crash(&targets);
                tokio::time::sleep(hold).await;
                self.restart(&targets)?;
            }
            FaultKind::WholeGroup => {
                let all: Vec<usize> = (0..N).collect();
                self.crash(&all);
                if self.wipe {
                    for s in &self.stores {
                        let _ = std::fs::remove_dir_all(s);
                    }
                    self.event("unsafe-wipe-stores", &all, Vec::new());
                }
                tokio::time::sleep(hold).await;
                self.restart(&all)?;
            }
            FaultKind::Partition => {
                let side = self.targets(p).await;
                let net = self
                    .net
                    .as_mut()
                    .context("a partition without namespaces")?;
                net.partition(&side)?;
                self.event("partition", &side, Vec::new());
                tokio::time::sleep(hold).await;
                if let Some(net) = &mut self.net {
                    net.heal()?;
                }
                self.event("heal", &side, Vec::new());
            }
        }
        Ok(())
    }

    /// `p.size` replicas, the leader of the moment among them if
    /// `p.leader`, the others drawn from the run's generator.
    async fn targets(&mut self, p: &Planned) -> Vec<usize> {
        let mut t = Vec::new();
        if p.leader {
            if let Some(v) = self.view().await {
                t.push(v as usize % N);
            }
        }
        let mut rest: Vec<usize> = (0..N).filter(|i| !t.contains(i)).collect();
        rest.shuffle(&mut self.rng);
        t.extend(rest.into_iter().take(p.size.saturating_sub(t.len())));
        t.sort_unstable();
        t
    }

    /// SIGKILL `nodes` at once, then read their stores.
    fn crash(&mut self, nodes: &[usize]) {
        let pids = nodes.iter().filter_map(|i| self.local.pid(*i)).collect();
        self.local.kill_all(nodes);
        self.event("kill", nodes, pids);
        self.sample(nodes);
    }

    fn restart(&mut self, nodes: &[usize]) -> Result<()> {
        for &i in nodes {
            self.local.restart(i)?;
        }
        let pids = nodes.iter().filter_map(|i| self.local.pid(*i)).collect();
        self.event("restart", nodes, pids);
        Ok(())
    }

    /// Read the stores of `nodes` (they are down).
    fn sample(&mut self, nodes: &[usize]) {
        for &i in nodes {
            match check::read_store(i, &self.stores[i]) {
                Ok(s) => self.samples.push(s),
                Err(e) => self
                    .errors
                    .push(format!("reading the store of replica {i}: {e:#}")),
            }
        }
    }

    fn event(&mut self, action: &'static str, targets: &[usize], pids: Vec<u32>) {
        let t = (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        self.events.push(Event {
            t,
            action,
            targets: targets.to_vec(),
            pids,
        });
    }

    /// The highest view a running replica reports.
    async fn view(&self) -> Option<u64> {
        let mut view = None;
        for i in (0..N).filter(|i| self.local.is_running(*i)) {
            if let Some(v) = scrape_metric(&self.local.ports.metrics(i), "byzscale_view").await {
                view = view.max(Some(v as u64));
            }
        }
        view
    }
}

/// The violations in what the checks found.
fn describe(lost: Option<usize>, a: &Agreement) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(n) = lost.filter(|n| *n > 0) {
        v.push(format!("{n} acknowledged writes were not read back"));
    }
    if let Some(s) = a.disagreeing_slot_examples.first() {
        v.push(format!(
            "{} slots decided with different batches (first: {s})",
            a.disagreeing_slots
        ));
    }
    if let Some(s) = a.disagreeing_checkpoint_examples.first() {
        v.push(format!(
            "{} checkpoints certified with different states (first: {s})",
            a.disagreeing_checkpoints
        ));
    }
    v
}

/// Wait until a fresh client's write is acknowledged, at most `within`.
async fn serve_within(dep: &Deployment, within: Duration) -> Result<()> {
    let c = SmrClient::connect(dep, GroupId(0), crate::generate::local_params(), 1).await?;
    let op = KvOp::Set(b"chaos:probe".to_vec(), b"1".to_vec());
    let r = tokio::time::timeout(within, c.kv(&op, false)).await;
    c.stop().await;
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("no answer within {} s", within.as_secs()),
    }
}
