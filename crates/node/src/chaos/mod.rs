//! `byzscale chaos`: a real cluster under load while a fault plan drawn
//! from a seed SIGKILLs and restarts up to f replicas of a group at a time,
//! whole groups at once (and, with several groups, the whole cluster), and
//! partitions replicas (one network namespace per node, see
//! [`crate::netns`]). At the end the load stops, partitions heal, the run
//! waits for the cluster to serve, and checks what fits the protocol
//! ([`ChaosProtocol`]):
//!
//! - **smr**: four `byzscale node` processes of the KV store (f = 1) under
//!   SETs through their Redis gateways. A fresh client reads back every
//!   acknowledged write (ordered MGETs), and the decided logs of the
//!   replicas' durable stores, read each time a replica was down and once
//!   more after the end, must agree slot by slot (and checkpoint by
//!   checkpoint).
//! - **byzcast**: the tree `byzscale cluster --protocol byzcast` deploys
//!   (two target groups under an auxiliary root, 4 replicas each) under
//!   SETs and cross-shard MSETs through the ByzCast Redis gateways. The same
//!   read-back (MGETs ordered at the lowest common ancestor), and each
//!   group's decided logs must agree.
//! - **at2**: four AT2 nodes under transfers through their HTTP API. After
//!   the faults every node must report the same ledger, and the ledger must
//!   hold every acknowledged transfer, each transfer at most once, no
//!   negative balance and the whole supply (see [`at2`]).
//!
//! The plan, its application and the report are one skeleton for all three
//! ([`Run`]); what differs is the [`Target`]: the layout, the load, the
//! serve probe and the checks. The [`ChaosReport`] lists the faults as
//! applied (time, action, replicas, process ids) and what the checks found;
//! [`ChaosReport::violations`] is empty on a pass.

mod at2;
mod check;
mod kv;
mod schedule;
mod writers;

pub use at2::{AccountFound, AccountView, At2Found};
pub use check::{agreement, read_store, Agreement, LogSample, Lost};
pub use kv::{GroupLogs, KvFound, Logs};
pub use schedule::{plan, FaultKind, Layout, Planned};

use crate::launcher::{scrape_metric, Local, LocalSpec};
use crate::netns::Netns;
use crate::node_file::{At2Settings, NodeFile, NodeProtocol, TREE_FILE};
use crate::protocols::byzcast::load_topology;
use anyhow::{anyhow, bail, Context, Result};
use kv::Kv;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use writers::Writers;

/// Replicas of each group of a chaos cluster, and the faults they tolerate.
const N: usize = 4;
const F: usize = 1;

/// What a chaos run runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChaosProtocol {
    /// One SMR group serving the KV store.
    Smr,
    /// A ByzCast tree of SMR groups serving the sharded KV store.
    Byzcast,
    /// AT2 asset transfer.
    At2,
}

impl ChaosProtocol {
    pub fn name(self) -> &'static str {
        match self {
            ChaosProtocol::Smr => "smr",
            ChaosProtocol::Byzcast => "byzcast",
            ChaosProtocol::At2 => "at2",
        }
    }

    /// Groups of the cluster: ByzCast's default tree is two targets under
    /// one auxiliary root (`byzscale cluster --protocol byzcast`).
    fn groups(self) -> usize {
        match self {
            ChaosProtocol::Byzcast => 3,
            ChaosProtocol::Smr | ChaosProtocol::At2 => 1,
        }
    }

    fn node_protocol(self) -> NodeProtocol {
        match self {
            ChaosProtocol::Smr => NodeProtocol::Smr,
            ChaosProtocol::Byzcast => NodeProtocol::Byzcast,
            ChaosProtocol::At2 => NodeProtocol::At2,
        }
    }

    fn layout(self, partitions: bool) -> Layout {
        Layout {
            groups: self.groups(),
            n: N,
            f: F,
            partitions,
            // the SMR run also splits its group in halves; the others cut
            // off at most f replicas of a group
            splits: self == ChaosProtocol::Smr,
            leaders: self != ChaosProtocol::At2,
        }
    }
}

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
    pub protocol: ChaosProtocol,
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
    /// Test switch: delete the store of every replica of a group when the
    /// group (or the cluster) crashes as a whole, beyond what any BFT
    /// protocol tolerates; the checks must report the loss.
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
    /// With several groups: the group hit (deployment order; absent when
    /// the whole cluster is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
}

/// What a chaos run did and found.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosReport {
    pub protocol: &'static str,
    pub seed: u64,
    pub duration_s: f64,
    /// Node processes (all groups).
    pub replicas: usize,
    /// Faults tolerated per group.
    pub f: usize,
    pub writers: usize,
    /// `netns`, `off`, or `unavailable: <why>`.
    pub partitions: String,
    pub schedule: Vec<Event>,
    /// Acknowledged writes (keys; AT2: transfers).
    pub acked_writes: usize,
    /// Writes without an acknowledgement (not checked; AT2: transfers
    /// sent without an answer, which may or may not be applied).
    pub unacked_writes: u64,
    #[serde(flatten)]
    pub found: Found,
    pub violations: Vec<String>,
    pub pass: bool,
    /// The run's directory, if kept.
    pub dir: Option<String>,
}

/// What the protocol's checks found.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Found {
    Kv(KvFound),
    At2(At2Found),
}

/// What differs between the protocols.
enum Target {
    Kv(Kv),
    At2,
}

/// The running load.
enum Load {
    Kv(Writers),
    At2(at2::Transfers),
}

/// Run `spec`: start the cluster, apply the plan under load, check.
pub async fn run(spec: &ChaosSpec) -> Result<ChaosReport> {
    if !(spec.duration > 0.0 && spec.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if spec.writers == 0 {
        bail!("--writers must be at least 1");
    }
    let nodes = N * spec.protocol.groups();
    let (net, partitions) = network(spec.partitions, nodes)?;
    // a temporary directory is removed when dropped: also when a signal
    // drops this run midway
    let (dir, tmp) = crate::launcher::dir_or_temp(spec.dir.clone(), "byzscale-chaos-")?;
    let local = Local::start(
        LocalSpec {
            groups: &vec![(N, F); spec.protocol.groups()],
            protocol: spec.protocol.node_protocol(),
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
        let _ = tmp.map(tempfile::TempDir::keep);
        report.map(|r| ChaosReport {
            dir: Some(dir.display().to_string()),
            ..r
        })
    } else {
        if tmp.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        report
    }
}

/// The namespaces for partitions of `nodes`, and how the report names the
/// mechanism.
fn network(mode: Partitions, nodes: usize) -> Result<(Option<Netns>, String)> {
    Ok(match mode {
        Partitions::Off => (None, "off".into()),
        Partitions::Netns => (
            Some(Netns::create(nodes).context("--partitions netns")?),
            "netns".into(),
        ),
        Partitions::Auto => match Netns::create(nodes) {
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
    target: Target,
    protocol: ChaosProtocol,
    /// Node indices of each group, in deployment order.
    groups: Vec<Range<usize>>,
    rng: StdRng,
    started: Instant,
    /// Each node's store (read after each crash; AT2: not read).
    stores: Vec<PathBuf>,
    events: Vec<Event>,
    samples: Vec<LogSample>,
    errors: Vec<String>,
    wipe: bool,
}

impl Run {
    fn new(local: Local, net: Option<Netns>, spec: &ChaosSpec) -> Result<Run> {
        let stores = (0..local.len())
            .map(|i| {
                Ok(NodeFile::load(&local.dir.join(format!("node-{i}.toml")))?
                    .file
                    .data_dir)
            })
            .collect::<Result<_>>()?;
        let target = match spec.protocol {
            ChaosProtocol::Smr => Target::Kv(Kv::Smr),
            ChaosProtocol::Byzcast => Target::Kv(Kv::Byzcast(load_topology(
                &local.dep,
                &local.dir.join(TREE_FILE),
            )?)),
            ChaosProtocol::At2 => Target::At2,
        };
        Ok(Run {
            groups: (0..spec.protocol.groups())
                .map(|g| g * N..(g + 1) * N)
                .collect(),
            local,
            net,
            target,
            protocol: spec.protocol,
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
        self.serve_first().await?;
        let layout = self.protocol.layout(self.net.is_some());
        let plan = schedule::plan(&mut self.rng, spec.duration, &layout);
        let load = self.load(spec);
        self.started = Instant::now();
        for p in &plan {
            self.apply(p).await?;
        }
        let end = self.started + Duration::from_secs_f64(spec.duration);
        tokio::time::sleep_until(end.into()).await;
        let (found, acked, unacked, mut violations) = match load {
            Load::Kv(w) => self.check_kv(w).await?,
            Load::At2(t) => self.check_at2(t).await?,
        };
        let mut all = std::mem::take(&mut self.errors);
        all.append(&mut violations);
        Ok(ChaosReport {
            protocol: self.protocol.name(),
            seed: spec.seed,
            duration_s: spec.duration,
            replicas: self.local.len(),
            f: F,
            writers: spec.writers,
            partitions,
            schedule: std::mem::take(&mut self.events),
            acked_writes: acked,
            unacked_writes: unacked,
            found,
            pass: all.is_empty(),
            violations: all,
            dir: None,
        })
    }

    /// Wait until the new cluster serves.
    async fn serve_first(&mut self) -> Result<()> {
        match &self.target {
            Target::Kv(kv) => kv
                .serve_within(&self.local.dep, Duration::from_secs(30))
                .await
                .context("the new cluster did not serve"),
            Target::At2 => self.local.wait_for(crate::generate::Ports::http).await,
        }
    }

    /// Start the load.
    fn load(&self, spec: &ChaosSpec) -> Load {
        let n = self.local.len();
        match &self.target {
            Target::Kv(kv) => {
                let gateways = (0..n).map(|i| self.local.ports.redis(i)).collect();
                Load::Kv(Writers::start(spec.writers, gateways, kv.keys(spec.seed)))
            }
            Target::At2 => Load::At2(at2::Transfers::start(spec.writers, self.http())),
        }
    }

    fn http(&self) -> Vec<String> {
        (0..self.local.len())
            .map(|i| self.local.ports.http(i))
            .collect()
    }

    /// Heal the partitions: the faults are over.
    fn heal(&mut self) -> Result<Instant> {
        if let Some(n) = &mut self.net {
            n.heal()?;
        }
        Ok(Instant::now())
    }

    /// Stop the writers; wait for the store to serve; read back; kill every
    /// node and compare the logs.
    async fn check_kv(&mut self, w: Writers) -> Result<(Found, usize, u64, Vec<String>)> {
        let Target::Kv(kv) = &self.target else {
            unreachable!("a KV load runs on a KV target")
        };
        let kv = kv.clone();
        let written = w.finish().await;
        let dep = self.local.dep.clone();
        let t = self.heal()?;
        let served = kv.serve_within(&dep, Duration::from_secs(60)).await;
        let served_again_s = served.is_ok().then(|| t.elapsed().as_secs_f64());
        let lost = match &served {
            Ok(()) => kv.read_back(&dep, &written.acked).await,
            Err(e) => Err(anyhow!("{e:#}")),
        };
        let mut views = Vec::new();
        for g in 0..self.groups.len() {
            views.push(self.view(g).await);
        }
        let all: Vec<usize> = (0..self.local.len()).collect();
        self.local.kill_all(&all);
        self.sample(&all);
        let mut v = Vec::new();
        if let Err(e) = &served {
            let what = if self.groups.len() > 1 {
                "tree"
            } else {
                "group"
            };
            v.push(format!(
                "the {what} did not serve within 60 s after the faults: {e:#}"
            ));
        }
        if written.acked.is_empty() {
            v.push("no write was acknowledged: nothing was checked".into());
        }
        let (lost_writes, lost_examples) = match lost {
            Ok(l) => (Some(l.lost_writes), l.examples),
            Err(e) => {
                v.push(format!("reading the acknowledged writes back: {e:#}"));
                (None, Vec::new())
            }
        };
        let found = KvFound {
            lost_writes,
            lost_examples,
            served_again_s,
            logs: kv.logs(&self.samples, &self.groups, &views, written.multi_key),
        };
        v.extend(found.violations());
        Ok((Found::Kv(found), written.acked.len(), written.unacked, v))
    }

    /// Stop the writers; wait until every owner serves and the ledgers
    /// converge; check them.
    async fn check_at2(&mut self, t: at2::Transfers) -> Result<(Found, usize, u64, Vec<String>)> {
        let mut issued = t.finish().await;
        let http = self.http();
        let t = self.heal()?;
        let served = at2::serve_within(&http, &mut issued, Duration::from_secs(60)).await;
        let served_again_s = served.is_ok().then(|| t.elapsed().as_secs_f64());
        let accounts = issued.accounts;
        let (ledgers, converged) = at2::converge(&http, accounts, Duration::from_secs(60)).await;
        let initial = At2Settings::default().initial_balance;
        let (found, mut v) = at2::check(&ledgers, converged, &issued, initial, served_again_s);
        if let Err(e) = served {
            v.insert(
                0,
                format!("the nodes did not serve within 60 s after the faults: {e:#}"),
            );
        }
        let (acked, unacked) = (issued.acked_count(), issued.unacked_count());
        Ok((Found::At2(found), acked, unacked, v))
    }

    /// Wait for `p`'s start, then apply it and undo it after its hold.
    async fn apply(&mut self, p: &Planned) -> Result<()> {
        tokio::time::sleep_until((self.started + Duration::from_secs_f64(p.start)).into()).await;
        let hold = Duration::from_secs_f64(p.hold);
        let group = (self.groups.len() > 1).then_some(p.group);
        match p.kind {
            FaultKind::Restart => {
                let targets = self.targets(p).await;
                self.crash(&targets, group);
                tokio::time::sleep(hold).await;
                self.restart(&targets, group)?;
            }
            FaultKind::WholeGroup | FaultKind::WholeCluster => {
                let (nodes, group): (Vec<usize>, _) = match p.kind {
                    FaultKind::WholeGroup => (self.groups[p.group].clone().collect(), group),
                    _ => ((0..self.local.len()).collect(), None),
                };
                self.crash(&nodes, group);
                if self.wipe {
                    for &i in &nodes {
                        let _ = std::fs::remove_dir_all(&self.stores[i]);
                    }
                    self.event("unsafe-wipe-stores", &nodes, Vec::new(), group);
                }
                tokio::time::sleep(hold).await;
                self.restart(&nodes, group)?;
            }
            FaultKind::Partition => {
                let side = self.targets(p).await;
                let net = self
                    .net
                    .as_mut()
                    .context("a partition without namespaces")?;
                net.partition(&side)?;
                self.event("partition", &side, Vec::new(), group);
                tokio::time::sleep(hold).await;
                if let Some(net) = &mut self.net {
                    net.heal()?;
                }
                self.event("heal", &side, Vec::new(), group);
            }
        }
        Ok(())
    }

    /// `p.size` replicas of group `p.group`, the leader of the moment among
    /// them if `p.leader`, the others drawn from the run's generator.
    async fn targets(&mut self, p: &Planned) -> Vec<usize> {
        let g = self.groups[p.group].clone();
        let mut t = Vec::new();
        if p.leader {
            if let Some(v) = self.view(p.group).await {
                t.push(g.start + v as usize % g.len());
            }
        }
        let mut rest: Vec<usize> = g.filter(|i| !t.contains(i)).collect();
        rest.shuffle(&mut self.rng);
        t.extend(rest.into_iter().take(p.size.saturating_sub(t.len())));
        t.sort_unstable();
        t
    }

    /// SIGKILL `nodes` at once, then read their stores.
    fn crash(&mut self, nodes: &[usize], group: Option<usize>) {
        let pids = nodes.iter().filter_map(|i| self.local.pid(*i)).collect();
        self.local.kill_all(nodes);
        self.event("kill", nodes, pids, group);
        self.sample(nodes);
    }

    fn restart(&mut self, nodes: &[usize], group: Option<usize>) -> Result<()> {
        for &i in nodes {
            self.local.restart(i)?;
        }
        let pids = nodes.iter().filter_map(|i| self.local.pid(*i)).collect();
        self.event("restart", nodes, pids, group);
        Ok(())
    }

    /// Read the stores of `nodes` (they are down); AT2 nodes keep no
    /// decided log to compare.
    fn sample(&mut self, nodes: &[usize]) {
        if matches!(self.target, Target::At2) {
            return;
        }
        for &i in nodes {
            match check::read_store(i, &self.stores[i]) {
                Ok(s) => self.samples.push(s),
                Err(e) => self
                    .errors
                    .push(format!("reading the store of replica {i}: {e:#}")),
            }
        }
    }

    fn event(
        &mut self,
        action: &'static str,
        targets: &[usize],
        pids: Vec<u32>,
        group: Option<usize>,
    ) {
        let t = (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        self.events.push(Event {
            t,
            action,
            targets: targets.to_vec(),
            pids,
            group,
        });
    }

    /// The highest view a running replica of group `g` reports.
    async fn view(&self, g: usize) -> Option<u64> {
        let mut view = None;
        for i in self.groups[g].clone().filter(|i| self.local.is_running(*i)) {
            if let Some(v) = scrape_metric(&self.local.ports.metrics(i), "byzscale_view").await {
                view = view.max(Some(v as u64));
            }
        }
        view
    }
}
