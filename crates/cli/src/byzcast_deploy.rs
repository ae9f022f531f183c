//! ByzCast as real processes over TCP: `byzscale node` for a ByzCast node
//! file, the sharded KV store behind the Redis gateway, `byzscale client` for
//! a ByzCast deployment, `byzscale cluster --protocol byzcast` (a local
//! deployment and a closed-loop workload with local and global messages) and
//! `byzscale bench-byzcast` (the figure: ByzCast against one SMR group).
//!
//! # Paper mapping (Coelho et al., DSN 2018; digest §1)
//!
//! | paper | here |
//! |---|---|
//! | target groups Γ and auxiliary groups Λ, each 3f+1 replicas (4 in the evaluation) | deployment groups `0..G` are the targets g1..gG, group `G` the auxiliary root h1 ([`write_tree`]) |
//! | the overlay tree (two-level: 2–8 targets under one auxiliary group, §1.8) | `tree.toml` next to `deployment.toml` (a [`TreeSpec`]), named by the node file's `[byzcast] tree`; any valid tree file works, targets listed in deployment-group order |
//! | FIFO BFT atomic broadcast per group; parent replicas are clients of the child group | [`byzcast::Replica`]: an SMR replica of its group plus SMR clients of its children as `ClientId::for_replica(me)`, over the node-to-node TCP links (wire kind [`BYZCAST_KIND`]) |
//! | `multicast(m, dst)` at lca(dst); local messages are genuine | [`ByzcastClient`] (a [`byzcast::Client`] on the tokio runtime): single-key commands go to the key's group only, multi-key commands spanning shards travel as one message through the lca |
//! | the replicated service (a KV store sharded over the targets, §IV) | [`byzscale_byzcast::kv`]: BLAKE3 of the key modulo the number of targets; each destination executes its part, the client merges the parts |
//! | evaluation: LAN, 4 replicas per group, 10% global messages, local messages not delayed (Fig. 7) | [`cluster`] and [`figure`] on loopback, everything on one 2-core machine |
//!
//! # Keys: how the parent's client identity is authenticated
//!
//! A parent replica j submits its forwards to the child group as the SMR
//! client `ClientId::for_replica(j)`, with MAC authenticators keyed for that
//! address, but over its authenticated node-to-node links. The child therefore
//! needs j's key under the client address too: [`node`] adds every parent
//! replica's deployment key as a *transport peer without a socket* under
//! `Addr::Client(ClientId::for_replica(j))`. The runtime hands transport peers
//! to the protocol's `Crypto`, and the transport rejects any client handshake
//! under that address with another key ("impostor"), so an outside client
//! cannot squat the identity. The replica's own client-identity `Crypto` is
//! built from the same deployment keys (the child groups' replicas). No change
//! to `byzscale-net` was needed.
//!
//! # Deviations and limitations
//!
//! - **No durability**: a ByzCast node keeps its state in memory. A restarted
//!   replica rejoins empty and catches up by the SMR state transfer (which
//!   carries the whole ByzCast state, see [`byzscale_byzcast::machine`]); a
//!   whole-group restart loses that group's data.
//! - Reads (GET, MGET, EXISTS) are ordered like writes: the ByzCast client has
//!   no unordered read path, so the gateway is started without
//!   `unordered_reads`.
//! - The Redis gateway of every node is a ByzCast client of the whole tree; a
//!   command is answered by the groups that own its keys, whichever node the
//!   gateway runs on.

use crate::cluster::{start_local_groups, wait_listening, ClusterArgs, Local};
use crate::deploy::{load_deployment, local_params, LoadedNode, NodeFile, NodeProtocol};
use anyhow::{anyhow, bail, Context, Result};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_byzcast::{self as byzcast, kv, Mode, Results, Topology, Tree, TreeSpec};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_gateway::{BoxFuture, KvBackend};
use byzscale_net::{NodeConfig, PeerConfig, Runtime, RuntimeHandle};
use byzscale_smr as smr;
use byzscale_smr::Params;
use clap::Args;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// The wire kind byte of ByzCast frames (SMR is 1).
pub const BYZCAST_KIND: u8 = 2;
/// The tree file the generator writes next to `deployment.toml`.
pub const TREE_FILE: &str = "tree.toml";

/// The `[byzcast]` section of a node file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByzcastSection {
    /// The overlay tree (TOML, see [`TreeSpec::from_toml`]), relative to the
    /// node file. Its targets, then its auxiliary groups, are the
    /// deployment's groups 0, 1, ... in order.
    pub tree: PathBuf,
}

/// Write the two-level tree of the paper's evaluation for a deployment of
/// `groups` groups: targets g1..g(groups-1) under the auxiliary root h1 (the
/// last group); a single group is a single target without a root.
pub fn write_tree(out: &Path, groups: usize) -> Result<ByzcastSection> {
    let targets = if groups > 1 { groups - 1 } else { 1 };
    let tree = Tree::two_level(targets);
    debug_assert_eq!(tree.len(), groups.max(1));
    let text = format!(
        "# ByzCast overlay tree: the targets, then the auxiliary groups, are the\n\
         # deployment's groups 0, 1, ... in this order ({}).\n{}",
        tree.describe(),
        toml::to_string_pretty(&tree.to_spec())?
    );
    let path = out.join(TREE_FILE);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(ByzcastSection {
        tree: TREE_FILE.into(),
    })
}

/// The topology of a deployment: its groups arranged by the tree file.
pub fn load_topology(dep: &Deployment, tree_path: &Path) -> Result<Arc<Topology>> {
    let text = std::fs::read_to_string(tree_path)
        .with_context(|| format!("reading tree file {}", tree_path.display()))?;
    let spec = TreeSpec::from_toml(&text)
        .map_err(|e| anyhow!("parsing tree file {}: {e}", tree_path.display()))?;
    let tree =
        Tree::from_spec(&spec).map_err(|e| anyhow!("tree file {}: {e}", tree_path.display()))?;
    if dep.groups.len() != tree.len() {
        bail!(
            "tree file {} has {} groups ({}) but the deployment has {}",
            tree_path.display(),
            tree.len(),
            tree.describe(),
            dep.groups.len()
        );
    }
    let groups = (0..tree.len())
        .map(|i| crate::smr_client::group_info(dep, GroupId(i as u32)))
        .collect::<Result<Vec<_>>>()?;
    let topo = Topology::new(tree, groups, Mode::Byzcast)
        .map_err(|e| anyhow!("deployment and tree file {}: {e}", tree_path.display()))?;
    Ok(Arc::new(topo))
}

fn node_key(dep: &Deployment, n: NodeId) -> Result<byzscale_core::crypto::PublicIdentity> {
    let (_, rc) = dep
        .replica(n)
        .ok_or_else(|| anyhow!("replica {n} is not in the deployment"))?;
    Ok(rc.public_identity()?)
}

/// This replica's identity as the client of its child groups.
fn child_client_crypto(
    dep: &Deployment,
    topo: &Topology,
    me: NodeId,
    identity: &Identity,
) -> Result<Crypto> {
    let g = topo
        .group_of(me)
        .ok_or_else(|| anyhow!("node {me} is in no group of the tree"))?;
    let mut c = Crypto::new(
        Addr::Client(ClientId::for_replica(me)),
        identity.clone(),
        CryptoMode::Real,
    );
    for ch in topo.tree().children(g) {
        for m in &topo.group(*ch).expect("child group exists").members {
            c.add_peer(Addr::Node(*m), node_key(dep, *m)?)
                .map_err(|e| anyhow!("key of replica {m}: {e}"))?;
        }
    }
    Ok(c)
}

/// `byzscale node` for a ByzCast node file.
pub async fn node(n: LoadedNode) -> Result<()> {
    let me = NodeId(n.file.node);
    let section = n.file.byzcast.as_ref().ok_or_else(|| {
        anyhow!("a byzcast node file needs a [byzcast] section naming the tree file (tree = \"tree.toml\")")
    })?;
    let dep = n.deployment.clone();
    let topo = load_topology(&dep, &section.tree)?;
    let group = topo
        .group_of(me)
        .expect("every deployment node is in a group");
    let (_, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let params = n.file.smr.clone();
    let crypto = child_client_crypto(&dep, &topo, me, &n.identity)?;
    let replica = byzcast::Replica::new(me, topo.clone(), params.clone(), crypto)
        .map_err(|e| anyhow!("{e}"))?;
    let mut cfg = NodeConfig::replica(&dep, me, n.identity.clone(), BYZCAST_KIND)?;
    // the parent's replicas submit to this group as for_replica clients
    if let Some(p) = topo.tree().parent(group) {
        for pm in &topo.group(p).expect("parent group exists").members {
            cfg.transport.peers.push(PeerConfig {
                addr: Addr::Client(ClientId::for_replica(*pm)),
                identity: node_key(&dep, *pm)?,
                socket: None,
            });
        }
    }
    let (rt, mut outputs) = Runtime::start(replica, cfg)
        .await
        .context("starting the ByzCast replica runtime")?;
    let gname = topo.tree().name(group).to_string();
    info!(node = %me, group = %gname, tree = %topo.tree().describe(), addr = %rc.addr,
          metrics = ?rc.metrics_addr, "ByzCast replica running");

    let reg = rt.registry().clone();
    let delivered_local = reg.counter_with(
        "byzscale_bc_delivered_total",
        "Messages a-delivered by this replica",
        &[("kind", "local")],
    );
    let delivered_global = reg.counter_with(
        "byzscale_bc_delivered_total",
        "Messages a-delivered by this replica",
        &[("kind", "global")],
    );
    let delivered_index = reg.gauge(
        "byzscale_bc_delivered_index",
        "Index of the last a-delivery (or state-transfer skip) at this group",
    );
    reg.gauge(
        "byzscale_bc_group",
        "Group id of this replica (targets first)",
    )
    .set(group.0 as i64);
    let decided = reg.counter("byzscale_decided_slots_total", "Slots decided and executed");
    let executed = reg.counter(
        "byzscale_executed_requests_total",
        "Requests (multicasts and forwarded copies) in decided slots",
    );
    let view = reg.gauge("byzscale_view", "Current view (regency)");
    let view_changes = reg.counter(
        "byzscale_view_changes_total",
        "Views installed after a synchronization phase",
    );
    let transfers = reg.counter(
        "byzscale_state_transfers_total",
        "Snapshots installed from other replicas",
    );
    let last_slot = reg.gauge(
        "byzscale_last_executed_slot",
        "Highest slot executed (or installed by state transfer)",
    );

    // the Redis gateway: a ByzCast client of the whole tree
    let (gw_stop_tx, gw_stop) = tokio::sync::watch::channel(false);
    let mut gateway = None;
    if let Some(addr) = &rc.redis_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the Redis gateway on {addr}"))?;
        let client = Arc::new(ByzcastClient::connect(&dep, topo.clone(), params.clone()).await?);
        let opts = byzscale_gateway::GatewayOptions::default();
        let backend: Arc<dyn KvBackend> = Arc::new(ByzcastBackend(client.clone()));
        let task = crate::node::start_gateway(me, addr, listener, backend, opts, &reg, gw_stop);
        gateway = Some((client, task));
    }

    let mut stop = Box::pin(crate::node::shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            o = outputs.recv() => {
                let Some(o) = o else { break };
                match o {
                    byzcast::replica::Output::Deliver { index, msg, .. } => {
                        if msg.is_global() {
                            delivered_global.inc();
                        } else {
                            delivered_local.inc();
                        }
                        delivered_index.set(index as i64);
                    }
                    byzcast::replica::Output::Skipped { to_index, .. } => {
                        delivered_index.set(to_index as i64);
                        info!(node = %me, to_index, "a-deliveries skipped by state transfer");
                    }
                    byzcast::replica::Output::Smr(o) => match o {
                        smr::replica::Output::Decided { slot, batch, .. } => {
                            decided.inc();
                            last_slot.set(slot as i64);
                            executed.add(batch.requests.len() as u64);
                        }
                        smr::replica::Output::ViewChanged { view: v, leader } => {
                            view.set(v as i64);
                            view_changes.inc();
                            info!(node = %me, view = v, %leader, "view changed");
                        }
                        smr::replica::Output::StateTransferred { slot } => {
                            transfers.inc();
                            last_slot.set(slot as i64);
                            info!(node = %me, slot, "state transferred");
                        }
                        smr::replica::Output::Suspected { .. } | smr::replica::Output::Stable { .. } => {}
                    },
                }
            }
        }
    }
    info!(node = %me, "shutting down");
    let _ = gw_stop_tx.send(true);
    if let Some((client, task)) = gateway {
        let _ = task.await;
        client.stop().await;
    }
    let _ = rt.stop().await;
    Ok(())
}

// ------------------------------------------------------------------ client

/// Callers waiting for their multicast's results, by multicast number.
type Waiters = Arc<Mutex<BTreeMap<u64, oneshot::Sender<Result<Results, String>>>>>;

/// An async handle on a running [`byzcast::Client`] over TCP: many callers share
/// one client, each awaiting its own multicast's results.
pub struct ByzcastClient {
    topo: Arc<Topology>,
    handle: RuntimeHandle<byzcast::client::Input>,
    /// Multicast numbers are assigned by the protocol in input order; this lock
    /// keeps our count and the input channel in step.
    next: tokio::sync::Mutex<u64>,
    waiters: Waiters,
    runtime: Mutex<Option<Runtime<byzcast::Client>>>,
}

impl ByzcastClient {
    /// Connect a fresh client identity (random id, new key) to every group.
    pub async fn connect(dep: &Deployment, topo: Arc<Topology>, params: Params) -> Result<Self> {
        let id = ClientId(rand::thread_rng().gen_range(1..ClientId::REPLICA_BASE));
        let client = byzcast::Client::new(id, topo.clone(), params);
        let cfg = NodeConfig::client(dep, id, Identity::generate(), BYZCAST_KIND)?;
        let (rt, mut outputs) = Runtime::start(client, cfg)
            .await
            .context("starting the ByzCast client runtime")?;
        // bounded: a replica may be down
        let replicas = dep.groups.iter().map(|g| g.replicas.len()).sum();
        rt.wait_connected(replicas, Duration::from_secs(5)).await;
        let waiters: Waiters = Arc::default();
        let w = waiters.clone();
        tokio::spawn(async move {
            while let Some(byzcast::client::Output::Done { n, results, .. }) = outputs.recv().await
            {
                if let Some(tx) = w.lock().expect("waiters lock").remove(&n) {
                    let _ = tx.send(results);
                }
            }
        });
        Ok(ByzcastClient {
            topo,
            handle: rt.handle(),
            next: tokio::sync::Mutex::new(1),
            waiters,
            runtime: Mutex::new(Some(rt)),
        })
    }

    /// `multicast(payload, dst)` and wait for the destinations' results.
    pub async fn multicast(&self, dst: Vec<GroupId>, payload: Vec<u8>) -> Result<Results> {
        let rx = {
            let mut next = self.next.lock().await;
            let n = *next;
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().expect("waiters lock").insert(n, tx);
            if self
                .handle
                .submit(byzcast::client::Input::Multicast { dst, payload })
                .await
                .is_err()
            {
                self.waiters.lock().expect("waiters lock").remove(&n);
                bail!("client stopped");
            }
            *next += 1;
            rx
        };
        rx.await
            .map_err(|_| anyhow!("client stopped before the reply"))?
            .map_err(|e| anyhow!("{e}"))
    }

    /// Run a KV command on the sharded store: to the groups owning its keys,
    /// as one message (through their lca if there are several).
    pub async fn kv(&self, op: &KvOp) -> Result<KvReply> {
        let targets = self.topo.tree().target_count();
        let dst = kv::groups_of(op, targets);
        let results = self.multicast(dst, op.encode()).await?;
        Ok(kv::merge(op, &results, targets))
    }

    pub async fn stop(&self) {
        let rt = self.runtime.lock().expect("runtime lock").take();
        if let Some(rt) = rt {
            let _ = rt.stop().await;
        }
    }
}

/// The gateway's view of the sharded store: every command is a multicast.
struct ByzcastBackend(Arc<ByzcastClient>);

impl KvBackend for ByzcastBackend {
    fn exec(&self, op: KvOp, _read_only: bool) -> BoxFuture<'static, Result<KvReply, String>> {
        let c = self.0.clone();
        Box::pin(async move { c.kv(&op).await.map_err(|e| e.to_string()) })
    }
}

/// If `config` names a ByzCast deployment (a ByzCast node file, or a
/// `deployment.toml` with a `tree.toml` beside it), its deployment and topology.
pub fn client_topology(config: &Path) -> Result<Option<(Deployment, Arc<Topology>)>> {
    if let Ok(dep) = load_deployment(config) {
        let tree = config.parent().unwrap_or(Path::new(".")).join(TREE_FILE);
        if !tree.exists() {
            return Ok(None);
        }
        let topo = load_topology(&dep, &tree)?;
        return Ok(Some((dep, topo)));
    }
    let Ok(n) = NodeFile::load(config) else {
        return Ok(None);
    };
    if n.file.protocol != NodeProtocol::Byzcast {
        return Ok(None);
    }
    let section = n
        .file
        .byzcast
        .as_ref()
        .ok_or_else(|| anyhow!("{} has no [byzcast] section", config.display()))?;
    let topo = load_topology(&n.deployment, &section.tree)?;
    Ok(Some((n.deployment, topo)))
}

/// `byzscale client` against a ByzCast deployment (every command is ordered).
pub async fn client(dep: &Deployment, topo: Arc<Topology>, command: &[String]) -> Result<()> {
    let op = KvOp::from_args(command).map_err(|e| anyhow!(e))?;
    let c = ByzcastClient::connect(dep, topo, Params::default()).await?;
    let r = tokio::time::timeout(Duration::from_secs(15), c.kv(&op))
        .await
        .context("no reply from the groups within 15 s")??;
    c.stop().await;
    match r {
        KvReply::Error(e) => bail!("{e}"),
        reply => println!("{reply}"),
    }
    Ok(())
}

// ------------------------------------------------------------------ cluster

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ClusterReport {
    pub protocol: String,
    pub groups: usize,
    pub auxiliary: usize,
    pub tree: String,
    pub replicas: usize,
    pub clients: usize,
    pub duration_s: f64,
    pub payload: usize,
    pub global_ratio: f64,
    pub throughput_ops: f64,
    pub throughput_local: f64,
    pub throughput_global: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub latency_local_p50_ms: f64,
    pub latency_local_p99_ms: f64,
    pub latency_global_p50_ms: f64,
    pub latency_global_p99_ms: f64,
    pub committed: u64,
    pub committed_local: u64,
    pub committed_global: u64,
    pub errors: u64,
    pub dir: String,
}

fn check_args(a: &ClusterArgs) -> Result<()> {
    if a.groups == 0 {
        bail!("--groups must be at least 1");
    }
    if a.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(a.duration >= 0.0 && a.duration.is_finite()) {
        bail!("--duration must be a non-negative number of seconds");
    }
    if !(0.0..=1.0).contains(&a.global_ratio) {
        bail!("--global-ratio must be between 0 and 1");
    }
    if a.groups == 1 && a.global_ratio > 0.0 {
        bail!(
            "global messages need two target groups: use --groups 2 or more, or --global-ratio 0"
        );
    }
    let groups = if a.groups > 1 { a.groups + 1 } else { 1 };
    if groups * a.replicas > 100 {
        bail!(
            "{groups} groups of {} replicas make {} processes; a local cluster numbers its ports in blocks of 100 (at most 100 processes)",
            a.replicas,
            groups * a.replicas
        );
    }
    if a.read_ratio != 0.0 {
        bail!(
            "--read-ratio is not supported with --protocol byzcast (reads are ordered like writes)"
        );
    }
    if a.crash_leader_at.is_some() {
        bail!("--crash-leader-at is not supported with --protocol byzcast");
    }
    Ok(())
}

/// `byzscale cluster --protocol byzcast`.
pub async fn cluster(a: ClusterArgs) -> Result<()> {
    check_args(&a)?;
    let f = (a.replicas - 1) / 3;
    let ngroups = if a.groups > 1 { a.groups + 1 } else { 1 };
    let Local {
        nodes,
        dep,
        ports,
        dir,
    } = start_local_groups(
        &vec![(a.replicas, f); ngroups],
        NodeProtocol::Byzcast,
        a.dir.clone(),
        a.keep,
    )
    .await?;
    let total = a.replicas * ngroups;
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..total {
        wait_listening(&ports.redis(i), deadline).await?;
    }
    let topo = load_topology(&dep, &dir.join(TREE_FILE))?;
    let show = !a.json && std::io::stderr().is_terminal();
    let spec = LoadSpec {
        clients: a.clients,
        duration: a.duration,
        payload: a.payload,
        global_ratio: a.global_ratio,
    };
    let r = if a.duration > 0.0 {
        run_load(&dep, topo.clone(), &spec, show).await?
    } else {
        LoadResult::default()
    };
    let q = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(p) as f64 / 1000.0
        }
    };
    let secs = r.elapsed.max(1e-9);
    let rate = |n: u64| {
        if a.duration > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    };
    let report = ClusterReport {
        protocol: "byzcast".into(),
        groups: topo.tree().target_count(),
        auxiliary: topo.tree().len() - topo.tree().target_count(),
        tree: topo.tree().describe(),
        replicas: a.replicas,
        clients: a.clients,
        duration_s: a.duration,
        payload: a.payload,
        global_ratio: a.global_ratio,
        throughput_ops: rate(r.committed_local + r.committed_global),
        throughput_local: rate(r.committed_local),
        throughput_global: rate(r.committed_global),
        p50_ms: q(&r.all, 0.5),
        p99_ms: q(&r.all, 0.99),
        latency_local_p50_ms: q(&r.local, 0.5),
        latency_local_p99_ms: q(&r.local, 0.99),
        latency_global_p50_ms: q(&r.global, 0.5),
        latency_global_p99_ms: q(&r.global, 0.99),
        committed: r.committed_local + r.committed_global,
        committed_local: r.committed_local,
        committed_global: r.committed_global,
        errors: r.errors,
        dir: dir.display().to_string(),
    };
    let endpoints = a.keep.then(|| {
        let pids: Vec<u32> = nodes.children.iter().flatten().map(|c| c.id()).collect();
        serde_json::json!({
            "redis": ports.redis(1.min(total - 1)),
            "replicas": (0..total).map(|i| ports.replica(i)).collect::<Vec<_>>(),
            "redis_all": (0..total).map(|i| ports.redis(i)).collect::<Vec<_>>(),
            "metrics": (0..total).map(|i| format!("http://{}/metrics", ports.metrics(i))).collect::<Vec<_>>(),
            "group_members": topo.groups().iter().map(|g| (topo.tree().name(g.id).to_string(), g.members.iter().map(|m| m.0).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
            "deployment": dir.join("deployment.toml").display().to_string(),
            "tree_file": dir.join(TREE_FILE).display().to_string(),
            "pids": pids,
            "stop": format!("kill {}", pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")),
        })
    });
    crate::cluster::print_report(&report, endpoints, a.json, print_table)?;
    drop(nodes);
    Ok(())
}

fn print_table(r: &ClusterReport) {
    println!(
        "byzscale cluster --protocol byzcast: {} target groups + {} auxiliary ({}), {} replicas each, {} clients, {:.1} s, {} B values, {:.0}% global",
        r.groups,
        r.auxiliary,
        r.tree,
        r.replicas,
        r.clients,
        r.duration_s,
        r.payload,
        r.global_ratio * 100.0
    );
    println!(
        "  throughput   {:>10.0} ops/s  (local {:.0}, global {:.0})",
        r.throughput_ops, r.throughput_local, r.throughput_global
    );
    println!(
        "  latency      p50 {:.2} ms   p99 {:.2} ms",
        r.p50_ms, r.p99_ms
    );
    println!(
        "  local        p50 {:.2} ms   p99 {:.2} ms",
        r.latency_local_p50_ms, r.latency_local_p99_ms
    );
    println!(
        "  global       p50 {:.2} ms   p99 {:.2} ms",
        r.latency_global_p50_ms, r.latency_global_p99_ms
    );
    println!(
        "  committed    {:>10}   (local {}, global {})   errors {}",
        r.committed, r.committed_local, r.committed_global, r.errors
    );
    println!("  files        {}", r.dir);
}

// ------------------------------------------------------------------ load

struct LoadSpec {
    clients: usize,
    duration: f64,
    payload: usize,
    global_ratio: f64,
}

struct LoadResult {
    local: Histogram<u64>,
    global: Histogram<u64>,
    all: Histogram<u64>,
    committed_local: u64,
    committed_global: u64,
    errors: u64,
    elapsed: f64,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

impl Default for LoadResult {
    fn default() -> Self {
        LoadResult {
            local: hist(),
            global: hist(),
            all: hist(),
            committed_local: 0,
            committed_global: 0,
            errors: 0,
            elapsed: 0.0,
        }
    }
}

/// Keys `key:0..10000` by the target group that owns them.
fn key_pools(targets: usize) -> Vec<Vec<Vec<u8>>> {
    let mut pools = vec![Vec::new(); targets];
    for i in 0..10_000 {
        let k = format!("key:{i}").into_bytes();
        pools[kv::shard_of(&k, targets).0 as usize].push(k);
    }
    pools
}

/// The next operation of a closed-loop client: with probability `global`
/// an MSET of one key in each of two distinct targets, else a SET of one key.
fn next_op(
    rng: &mut rand::rngs::StdRng,
    pools: &[Vec<Vec<u8>>],
    global: f64,
    value: &[u8],
) -> (KvOp, bool) {
    let pick = |rng: &mut rand::rngs::StdRng, g: usize| {
        let p = &pools[g];
        p[rng.gen_range(0..p.len())].clone()
    };
    let t = pools.len();
    if t > 1 && rng.gen_bool(global) {
        let a = rng.gen_range(0..t);
        let b = (a + rng.gen_range(1..t)) % t;
        let (ka, kb) = (pick(rng, a), pick(rng, b));
        (
            KvOp::MSet(vec![(ka, value.to_vec()), (kb, value.to_vec())]),
            true,
        )
    } else {
        let g = rng.gen_range(0..t);
        (KvOp::Set(pick(rng, g), value.to_vec()), false)
    }
}

/// Closed-loop clients on `clients.div_ceil(16)` (at most 8) ByzCast client
/// endpoints; a global MSET spanning every target first checks that the
/// whole tree answers (not measured).
async fn run_load(
    dep: &Deployment,
    topo: Arc<Topology>,
    spec: &LoadSpec,
    show: bool,
) -> Result<LoadResult> {
    let targets = topo.tree().target_count();
    let endpoints = spec.clients.div_ceil(16).clamp(1, 8);
    let params = local_params();
    let mut clients = Vec::new();
    for _ in 0..endpoints {
        clients.push(Arc::new(
            ByzcastClient::connect(dep, topo.clone(), params.clone()).await?,
        ));
    }
    // warm-up: every endpoint reaches every group
    let all: Vec<(Vec<u8>, Vec<u8>)> = key_pools(targets)
        .iter()
        .map(|p| (p[0].clone(), b"warm".to_vec()))
        .collect();
    for c in &clients {
        let op = KvOp::MSet(all.clone());
        match tokio::time::timeout(Duration::from_secs(30), c.kv(&op)).await {
            Ok(Ok(KvReply::Ok)) => {}
            Ok(Ok(r)) => bail!("warm-up MSET answered {r}"),
            Ok(Err(e)) => bail!("warm-up MSET failed: {e}"),
            Err(_) => bail!("the groups did not answer a warm-up MSET within 30 s"),
        }
    }
    let pools = Arc::new(key_pools(targets));
    let committed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop_at = started + Duration::from_secs_f64(spec.duration);
    let mut tasks = Vec::new();
    for c in 0..spec.clients {
        let client = clients[c % endpoints].clone();
        let (pools, committed) = (pools.clone(), committed.clone());
        let (global, value) = (spec.global_ratio, vec![b'x'; spec.payload]);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let (mut local_h, mut global_h) = (hist(), hist());
            let mut errors = 0u64;
            while Instant::now() < stop_at {
                let (op, is_global) = next_op(&mut rng, &pools, global, &value);
                let t0 = Instant::now();
                let left = stop_at.saturating_duration_since(t0) + Duration::from_secs(10);
                match tokio::time::timeout(left, client.kv(&op)).await {
                    Ok(Ok(KvReply::Ok)) => {
                        let us = t0.elapsed().as_micros().max(1) as u64;
                        let h = if is_global {
                            &mut global_h
                        } else {
                            &mut local_h
                        };
                        let _ = h.record(us);
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => errors += 1,
                }
            }
            (local_h, global_h, errors)
        }));
    }
    let bar =
        crate::cluster::progress(show, spec.duration, started, stop_at, &committed, |_| {}).await;
    let elapsed = started.elapsed().as_secs_f64().min(spec.duration);
    let mut r = LoadResult {
        elapsed,
        ..LoadResult::default()
    };
    for t in tasks {
        match t.await {
            Ok((l, g, e)) => {
                r.committed_local += l.len();
                r.committed_global += g.len();
                r.local.add(&l).expect("same bounds");
                r.global.add(&g).expect("same bounds");
                r.errors += e;
            }
            Err(e) => {
                warn!(error = %e, "a load task failed");
                r.errors += 1;
            }
        }
    }
    r.all.add(&r.local).expect("same bounds");
    r.all.add(&r.global).expect("same bounds");
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for c in &clients {
        c.stop().await;
    }
    Ok(r)
}

// ------------------------------------------------------------------ figure

#[derive(Args, Debug)]
pub struct FigureArgs {
    /// Closed-loop client counts (one ByzCast and one SMR run each).
    #[arg(long, value_delimiter = ',', default_value = "32,96,192")]
    pub clients: Vec<usize>,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Target groups (plus one auxiliary root).
    #[arg(long, default_value_t = 2)]
    pub groups: usize,
    /// Fraction of two-group MSETs.
    #[arg(long, default_value_t = 0.1)]
    pub global_ratio: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Directory for results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Writes <out>/<name>.json, <name>.svg (throughput) and <name>-latency.svg.
    #[arg(long, default_value = "byzcast-real")]
    pub name: String,
}

#[derive(Serialize)]
struct FigurePoint {
    clients: usize,
    byzcast: ClusterReport,
    smr: serde_json::Value,
    /// ByzCast total throughput / SMR throughput.
    ratio_total: f64,
    /// ByzCast local-message throughput / SMR throughput.
    ratio_local: f64,
    byzcast_command: String,
    smr_command: String,
}

#[derive(Serialize)]
struct Figure {
    name: String,
    command: String,
    what: String,
    reference: String,
    points: Vec<FigurePoint>,
    best_total_ops: f64,
    best_vs_reference: f64,
}

/// The Java ByzCast prototype's peak in this configuration (ops/s).
const JAVA_REFERENCE_OPS: f64 = 1_400.0;

fn run_cli(args: &[String]) -> Result<serde_json::Value> {
    let exe = std::env::current_exe().context("locating the byzscale binary")?;
    let out = std::process::Command::new(exe)
        .args(args)
        .output()
        .with_context(|| format!("running byzscale {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "byzscale {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("byzscale {} printed nothing", args.join(" ")))?;
    serde_json::from_str(line)
        .with_context(|| format!("parsing the report of byzscale {}", args.join(" ")))
}

/// `byzscale bench-byzcast`: ByzCast (G targets + 1 auxiliary, closed loop,
/// a fraction of global messages) and one SMR group under the same clients,
/// each as real processes on loopback, one after the other.
pub async fn figure(a: FigureArgs) -> Result<()> {
    if a.clients.is_empty() || a.clients.contains(&0) {
        bail!("--clients must list positive client counts, e.g. 32,96,192");
    }
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    if a.groups < 2 {
        bail!("--groups must be at least 2 (global messages need two targets)");
    }
    if !(0.0..=1.0).contains(&a.global_ratio) {
        bail!("--global-ratio must be between 0 and 1");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut points = Vec::new();
    for &c in &a.clients {
        let common = [
            "--clients".to_string(),
            c.to_string(),
            "--duration".into(),
            a.duration.to_string(),
            "--payload".into(),
            a.payload.to_string(),
            "--json".into(),
        ];
        let mut bc_args: Vec<String> = vec![
            "cluster".into(),
            "--protocol".into(),
            "byzcast".into(),
            "--groups".into(),
            a.groups.to_string(),
            "--global-ratio".into(),
            a.global_ratio.to_string(),
        ];
        bc_args.extend(common.iter().cloned());
        let mut smr_args: Vec<String> = vec!["cluster".into()];
        smr_args.extend(common.iter().cloned());
        let bc: ClusterReport = serde_json::from_value(run_cli(&bc_args)?)?;
        let smr = run_cli(&smr_args)?;
        let smr_ops = smr["throughput_ops"].as_f64().unwrap_or(0.0);
        eprintln!(
            "  {c} clients: byzcast {:.0} ops/s (local {:.0}, global {:.0}; p50 local {:.2} ms, global {:.2} ms), smr {:.0} ops/s",
            bc.throughput_ops,
            bc.throughput_local,
            bc.throughput_global,
            bc.latency_local_p50_ms,
            bc.latency_global_p50_ms,
            smr_ops
        );
        points.push(FigurePoint {
            clients: c,
            ratio_total: bc.throughput_ops / smr_ops.max(1e-9),
            ratio_local: bc.throughput_local / smr_ops.max(1e-9),
            byzcast: bc,
            smr,
            byzcast_command: format!("byzscale {}", bc_args.join(" ")),
            smr_command: format!("byzscale {}", smr_args.join(" ")),
        });
    }
    let best = points
        .iter()
        .map(|p| p.byzcast.throughput_ops)
        .fold(0.0, f64::max);
    let fig = Figure {
        name: a.name.clone(),
        command: std::iter::once("byzscale".to_string())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        what: format!(
            "ByzCast, {} target groups + 1 auxiliary root, 4 replicas each, {:.0}% two-group MSETs, {} B values, closed loop; one SMR group of 4 under the same clients; every process on one machine (loopback)",
            a.groups,
            a.global_ratio * 100.0,
            a.payload
        ),
        reference: format!(
            "the Java ByzCast prototype peaks near {JAVA_REFERENCE_OPS:.0} ops/s in this configuration"
        ),
        best_total_ops: best,
        best_vs_reference: best / JAVA_REFERENCE_OPS,
        points,
    };
    let json_path = a.out.join(format!("{}.json", a.name));
    std::fs::write(&json_path, serde_json::to_string_pretty(&fig)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let xs = |f: &dyn Fn(&FigurePoint) -> f64| -> Vec<(f64, f64)> {
        fig.points
            .iter()
            .map(|p| (p.clients as f64, f(p)))
            .collect()
    };
    let x_max = a.clients.iter().copied().max().unwrap_or(1) as f64 * 1.05;
    let thr = vec![
        (
            "ByzCast total".to_string(),
            xs(&|p| p.byzcast.throughput_ops),
        ),
        (
            "ByzCast local".to_string(),
            xs(&|p| p.byzcast.throughput_local),
        ),
        (
            "ByzCast global".to_string(),
            xs(&|p| p.byzcast.throughput_global),
        ),
        (
            "one SMR group".to_string(),
            xs(&|p| p.smr["throughput_ops"].as_f64().unwrap_or(0.0)),
        ),
    ];
    let top = thr
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        * 1.15
        + 1.0;
    let svg = a.out.join(format!("{}.svg", a.name));
    crate::plot::line_chart(
        &svg,
        crate::plot::Axes {
            title: &format!(
                "ByzCast on loopback ({} targets + 1 aux, {:.0}% global) vs one SMR group",
                a.groups,
                a.global_ratio * 100.0
            ),
            x_desc: "closed-loop clients",
            y_desc: "throughput (ops/s)",
            x_range: 0.0..x_max,
            y_range: 0.0..top,
            markers: true,
        },
        &thr,
    )?;
    let lat = vec![
        (
            "ByzCast local p50".to_string(),
            xs(&|p| p.byzcast.latency_local_p50_ms),
        ),
        (
            "ByzCast global p50".to_string(),
            xs(&|p| p.byzcast.latency_global_p50_ms),
        ),
        (
            "one SMR group p50".to_string(),
            xs(&|p| p.smr["p50_ms"].as_f64().unwrap_or(0.0)),
        ),
    ];
    let top = lat
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        * 1.15
        + 0.1;
    let svg_lat = a.out.join(format!("{}-latency.svg", a.name));
    crate::plot::line_chart(
        &svg_lat,
        crate::plot::Axes {
            title: "ByzCast on loopback: median latency",
            x_desc: "closed-loop clients",
            y_desc: "p50 latency (ms)",
            x_range: 0.0..x_max,
            y_range: 0.0..top,
            markers: true,
        },
        &lat,
    )?;
    println!(
        "wrote {}, {} and {}; best ByzCast throughput {:.0} ops/s ({:.1}× the Java prototype's {:.0})",
        json_path.display(),
        svg.display(),
        svg_lat.display(),
        best,
        best / JAVA_REFERENCE_OPS,
        JAVA_REFERENCE_OPS
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::{generate_groups, Ports};

    #[test]
    fn generated_deployment_has_a_two_level_tree_the_nodes_load() {
        let dir = std::env::temp_dir().join(format!("byzscale-bc-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ports = Ports {
            hosts: vec!["127.0.0.1".into()],
            base: 41_000,
        };
        let dep = generate_groups(&dir, &[(4, 1); 3], &ports, NodeProtocol::Byzcast).unwrap();
        let n = NodeFile::load(&dir.join("node-9.toml")).unwrap();
        let section = n.file.byzcast.as_ref().expect("a [byzcast] section");
        assert!(section.tree.is_absolute() || section.tree.starts_with(&dir));
        let topo = load_topology(&n.deployment, &section.tree).unwrap();
        assert_eq!(topo.tree().describe(), "h1(g1 g2)");
        // node 9 is in the third deployment group, the auxiliary root
        assert_eq!(topo.group_of(NodeId(9)), Some(topo.tree().root()));
        // the deployment file alone finds the tree beside it
        let (_, t2) = client_topology(&dir.join("deployment.toml"))
            .unwrap()
            .expect("a byzcast deployment");
        assert_eq!(t2.tree().describe(), "h1(g1 g2)");
        // the parent's client identity is known to a child, and only there
        let c = child_client_crypto(&dep, &topo, NodeId(9), &n.identity).unwrap();
        assert!(c.knows(Addr::Node(NodeId(0))) && c.knows(Addr::Node(NodeId(7))));
        assert!(!c.knows(Addr::Node(NodeId(10))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn workload_global_messages_span_two_shards_local_ones_one() {
        let pools = key_pools(3);
        assert!(pools.iter().all(|p| p.len() > 1000));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut local, mut global) = (0, 0);
        for _ in 0..2000 {
            let (op, is_global) = next_op(&mut rng, &pools, 0.2, b"v");
            let groups = kv::groups_of(&op, 3);
            if is_global {
                global += 1;
                assert!(matches!(op, KvOp::MSet(_)));
                assert_eq!(groups.len(), 2, "{op}");
            } else {
                local += 1;
                assert_eq!(groups.len(), 1, "{op}");
            }
        }
        assert!(
            global > 300 && local > 1400,
            "{global} global, {local} local"
        );
        // one target: never global
        let one = key_pools(1);
        assert!((0..100).all(|_| !next_op(&mut rng, &one, 1.0, b"v").1));
    }
}
