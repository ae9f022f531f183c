//! ByzCast as real processes over TCP: `byzscale node` for a ByzCast node
//! file, the sharded KV store behind the Redis gateway, the
//! [`ByzcastClient`] library (also `byzscale client` for a ByzCast
//! deployment), and `byzscale cluster --protocol byzcast` (a local deployment
//! and a closed-loop workload with local and global messages).
//!
//! # Paper mapping (Coelho et al., DSN 2018; digest §1)
//!
//! | paper | here |
//! |---|---|
//! | target groups Γ and auxiliary groups Λ, each 3f+1 replicas (4 in the evaluation) | deployment groups `0..G` are the targets g1..gG, group `G` the auxiliary root h1 ([`ByzcastSection::write_two_level`](crate::ByzcastSection::write_two_level)) |
//! | the overlay tree (two-level: 2–8 targets under one auxiliary group, §1.8) | `tree.toml` next to `deployment.toml` (a [`TreeSpec`]), named by the node file's `[byzcast] tree`; any valid tree file works, targets listed in deployment-group order |
//! | FIFO BFT atomic broadcast per group; parent replicas are clients of the child group | [`byzcast::Replica`]: an SMR replica of its group plus SMR clients of its children as `ClientId::for_replica(me)`, over the node-to-node TCP links (wire kind `WireKind::Byzcast`) |
//! | `multicast(m, dst)` at lca(dst); local messages are genuine | [`ByzcastClient`] (a [`byzcast::Client`] on the tokio runtime): single-key commands go to the key's group only, multi-key commands spanning shards travel as one message through the lca |
//! | the replicated service (a KV store sharded over the targets, §IV) | [`byzscale_byzcast::kv`]: BLAKE3 of the key modulo the number of targets; each destination executes its part, the client merges the parts |
//! | evaluation: LAN, 4 replicas per group, 10% global messages, local messages not delayed (Fig. 7) | `cluster` (and the CLI's `bench-byzcast`) on loopback, everything on one 2-core machine |
//!
//! # Keys: how the parent's client identity is authenticated
//!
//! A parent replica j submits its forwards to the child group as the SMR
//! client `ClientId::for_replica(j)`, with MAC authenticators keyed for that
//! address, but over its authenticated node-to-node links. The child therefore
//! needs j's key under the client address too: the node adds every parent
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
//! - **Durability**: the SMR replica a node owns persists its records as an
//!   SMR node does (its votes, view and checkpoints with certificates, the
//!   durable-before-send rule; see [`crate::protocols::smr`]), and a restart
//!   recovers it from the node's redb store. The ByzCast state above it (the
//!   group machine) is part of the SMR state, so it comes back with it. The
//!   replica's forward streams to its children (see
//!   `byzscale_byzcast::stream`) keep their sequence numbers and the forwards
//!   a child may not have yet in rows of the same store
//!   (`ByzcastJournal`), so a restarted parent resumes its streams where it
//!   left them and the children accept them.
//! - Reads (GET, MGET, EXISTS) are ordered like writes: the ByzCast client has
//!   no unordered read path, so the gateway is started without
//!   `unordered_reads`.
//! - The Redis gateway of every node is a ByzCast client of the whole tree; a
//!   command is answered by the groups that own its keys, whichever node the
//!   gateway runs on.
//! - Per-connection order holds across shards: the client is FIFO only per
//!   destination group (its SMR client of that group numbers the requests),
//!   so a connection's commands for one group are pipelined, while a command
//!   for another group, or spanning groups, starts only once the
//!   connection's running commands completed (`KvBackend::stream`). A
//!   connection that alternates between shards therefore waits a round trip
//!   at each switch.

use crate::calls::Calls;
use crate::cluster::{ClusterOutcome, ClusterSpec};
use crate::daemon::{serve_outputs, Gateway, KvClient};
use crate::generate::{local_params, Ports};
use crate::launcher::{Local, LocalSpec};
use crate::load::{check_load, ms, Load, LoadResult, LoadSpec, LoadSummary};
use crate::node_file::{load_deployment, LoadedNode, NodeFile, NodeProtocol, TREE_FILE};
use crate::persist::{self, Journal, Persister};
use crate::protocols::smr::{
    client_command_output, durable_from_disk, group_info, ReplicaMetrics, SmrJournal,
    CLIENT_COMMAND_WAIT,
};
use anyhow::{anyhow, bail, Context, Result};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_byzcast::stream::StreamDurable;
use byzscale_byzcast::{self as byzcast, kv, Mode, Results, Topology, Tree, TreeSpec};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::{codec, Addr, ClientId, GroupId, NodeId, WireKind};
use byzscale_gateway::BoxFuture;
use byzscale_net::{NodeConfig, PeerConfig, Registry, Runtime};
use byzscale_smr::Params;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

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
        .map(|i| group_info(dep, GroupId(i as u32)))
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

// ---------------------------------------------------------------- disk

/// Meta keys of the forward streams: per child, its floor row
/// (`(acked, last_seq, last_k)`) and one row per forward above the floor.
const STREAM_PREFIX: &str = "bc/stream/";

fn floor_key(child: GroupId) -> String {
    format!("{STREAM_PREFIX}{:010}/floor", child.0)
}

fn forward_key(child: GroupId, seq: u64) -> String {
    format!("{STREAM_PREFIX}{:010}/fwd/{seq:020}", child.0)
}

/// Meta rows of the results sent up ([`byzcast::Record::Done`]), one per
/// result in the order sent, the oldest deleted past `DONE_CACHE`.
const DONE_PREFIX: &str = "bc/done/";

fn done_key(n: u64) -> String {
    format!("{DONE_PREFIX}{n:020}")
}

/// Meta rows of the handled messages awaiting their children's results
/// ([`byzcast::Record::Awaiting`]), one per message, deleted at its
/// [`byzcast::Record::Done`].
const AWAIT_PREFIX: &str = "bc/await/";

fn await_key(id: &byzcast::MsgId) -> String {
    format!("{AWAIT_PREFIX}{:020}/{:020}", id.client.0, id.n)
}

/// A ByzCast replica's records as rows of its store: the SMR replica's
/// through [`SmrJournal`], and the forward streams' as meta rows (a floor
/// row per child, rewritten as it moves, and a row per forward, deleted once
/// the child has it).
struct ByzcastJournal {
    smr: SmrJournal,
    streams: BTreeMap<GroupId, StreamDurable>,
    floors: BTreeSet<GroupId>,
    added: BTreeSet<(GroupId, u64)>,
    removed: BTreeSet<(GroupId, u64)>,
    /// The row number of the oldest kept result, and the results (rows)
    /// added since the last flush.
    done_first: u64,
    done: byzcast::Durable,
    done_added: Vec<(u64, Vec<u8>)>,
    done_removed: Vec<u64>,
    /// Awaiting rows to write, and to delete, at the next flush.
    await_added: BTreeMap<byzcast::MsgId, Vec<u8>>,
    await_removed: BTreeSet<byzcast::MsgId>,
}

impl ByzcastJournal {
    fn new(d: byzcast::Durable, done_first: u64, fresh: bool) -> Self {
        let done = byzcast::Durable {
            done: d.done,
            done_bytes: d.done_bytes,
            ..Default::default()
        };
        ByzcastJournal {
            smr: SmrJournal::new(d.smr, fresh),
            streams: d.streams,
            floors: BTreeSet::new(),
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
            done_first,
            done,
            done_added: Vec::new(),
            done_removed: Vec::new(),
            await_added: BTreeMap::new(),
            await_removed: BTreeSet::new(),
        }
    }
}

impl Journal for ByzcastJournal {
    type Record = byzcast::Record;

    fn record(&mut self, r: byzcast::Record) {
        match r {
            byzcast::Record::Smr(r) => self.smr.record(r),
            byzcast::Record::Forward { child, seq, .. } => {
                if self.streams.entry(child).or_default().apply(&r) {
                    self.floors.insert(child);
                    self.added.insert((child, seq));
                }
            }
            byzcast::Record::Acked { child, seq } => {
                let s = self.streams.entry(child).or_default();
                let gone: Vec<u64> = s.pending.range(..=seq).map(|(q, _)| *q).collect();
                if s.apply(&r) {
                    self.floors.insert(child);
                    for q in gone {
                        if !self.added.remove(&(child, q)) {
                            self.removed.insert((child, q));
                        }
                    }
                }
            }
            byzcast::Record::Awaiting {
                id,
                entry,
                own,
                awaiting,
            } => {
                let a = byzcast::durable::Awaiting {
                    entry,
                    own,
                    awaiting,
                };
                self.await_removed.remove(&id);
                self.await_added.insert(id, codec::to_bytes(&a));
            }
            byzcast::Record::Done { .. } => {
                if let byzcast::Record::Done { id, .. } = &r {
                    if self.await_added.remove(id).is_none() {
                        self.await_removed.insert(*id);
                    }
                }
                let n = self.done_first + self.done.done.len() as u64;
                let row = match &r {
                    byzcast::Record::Done { id, results, entry } => {
                        codec::to_bytes(&(id, results, entry))
                    }
                    _ => unreachable!("matched above"),
                };
                self.done_added.push((n, row));
                let change = self.done.apply(r);
                if let byzcast::durable::Change::Done { dropped } = change {
                    for _ in dropped {
                        self.done_removed.push(self.done_first);
                        self.done_first += 1;
                    }
                }
            }
        }
    }

    fn flush(&mut self) -> byzscale_net::Batch {
        let mut b = self.smr.flush();
        for (n, row) in std::mem::take(&mut self.done_added) {
            b = b.put_meta(done_key(n), row);
        }
        for n in std::mem::take(&mut self.done_removed) {
            b = b.delete_meta(done_key(n));
        }
        for (id, row) in std::mem::take(&mut self.await_added) {
            b = b.put_meta(await_key(&id), row);
        }
        for id in std::mem::take(&mut self.await_removed) {
            b = b.delete_meta(await_key(&id));
        }
        for (child, seq) in std::mem::take(&mut self.removed) {
            b = b.delete_meta(forward_key(child, seq));
        }
        for (child, seq) in std::mem::take(&mut self.added) {
            if let Some(f) = self.streams.get(&child).and_then(|s| s.pending.get(&seq)) {
                b = b.put_meta(forward_key(child, seq), codec::to_bytes(f));
            }
        }
        for child in std::mem::take(&mut self.floors) {
            if let Some(s) = self.streams.get(&child) {
                let floor = (s.acked, s.last_seq, s.last_k);
                b = b.put_meta(floor_key(child), codec::to_bytes(&floor));
            }
        }
        b
    }
}

/// Rebuild a ByzCast replica's fold from its store (`db` names it in
/// errors); also the row number of its oldest kept result and whether the
/// store is new.
fn byzcast_durable_from_disk(
    rec: byzscale_net::Recovered,
    db: &Path,
) -> Result<(byzcast::Durable, u64, bool)> {
    let mut streams: BTreeMap<GroupId, StreamDurable> = BTreeMap::new();
    let bad = |k: &str| anyhow!("bad key {k} in {}", db.display());
    for (k, v) in rec.meta.range(STREAM_PREFIX.to_string()..) {
        let Some(rest) = k.strip_prefix(STREAM_PREFIX) else {
            break;
        };
        let (child, what) = rest.split_once('/').ok_or_else(|| bad(k))?;
        let child = GroupId(child.parse().map_err(|_| bad(k))?);
        let s = streams.entry(child).or_default();
        let decode_err = || format!("decoding {k} in {}", db.display());
        if what == "floor" {
            (s.acked, s.last_seq, s.last_k) =
                codec::from_bytes(v, usize::MAX).with_context(decode_err)?;
        } else {
            let seq: u64 = what
                .strip_prefix("fwd/")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad(k))?;
            let f: (u64, Vec<u8>) = codec::from_bytes(v, usize::MAX).with_context(decode_err)?;
            s.pending.insert(seq, f);
        }
    }
    for s in streams.values_mut() {
        // rows of an older floor than the one recorded (never written
        // together) do not count
        s.pending = s.pending.split_off(&(s.acked + 1));
    }
    let mut done = std::collections::VecDeque::new();
    let mut done_first = None;
    for (k, v) in rec.meta.range(DONE_PREFIX.to_string()..) {
        let Some(n) = k.strip_prefix(DONE_PREFIX) else {
            break;
        };
        let n: u64 = n.parse().map_err(|_| bad(k))?;
        done_first.get_or_insert(n);
        let decode_err = || format!("decoding {k} in {}", db.display());
        let (id, results, entry) = codec::from_bytes(v, usize::MAX).with_context(decode_err)?;
        done.push_back((id, results, entry));
    }
    let mut awaiting = BTreeMap::new();
    for (k, v) in rec.meta.range(AWAIT_PREFIX.to_string()..) {
        let Some(rest) = k.strip_prefix(AWAIT_PREFIX) else {
            break;
        };
        let (client, n) = rest.split_once('/').ok_or_else(|| bad(k))?;
        let id = byzcast::MsgId {
            client: byzscale_core::ClientId(client.parse().map_err(|_| bad(k))?),
            n: n.parse().map_err(|_| bad(k))?,
        };
        let decode_err = || format!("decoding {k} in {}", db.display());
        awaiting.insert(
            id,
            codec::from_bytes(v, usize::MAX).with_context(decode_err)?,
        );
    }
    let (smr, fresh) = durable_from_disk(rec, db)?;
    let mut d = byzcast::Durable {
        smr,
        streams,
        awaiting,
        ..Default::default()
    };
    d.set_done(done);
    Ok((d, done_first.unwrap_or(0), fresh))
}

// ---------------------------------------------------------------- node

/// The a-delivery metrics of a ByzCast replica.
struct DeliveryMetrics {
    local: byzscale_net::Counter,
    global: byzscale_net::Counter,
    index: byzscale_net::Gauge,
}

impl DeliveryMetrics {
    fn register(reg: &byzscale_net::Registry, group: GroupId) -> Self {
        let delivered = |kind| {
            reg.counter_with(
                "byzscale_bc_delivered_total",
                "Messages a-delivered by this replica",
                &[("kind", kind)],
            )
        };
        reg.gauge(
            "byzscale_bc_group",
            "Group id of this replica (targets first)",
        )
        .set(group.0 as i64);
        DeliveryMetrics {
            local: delivered("local"),
            global: delivered("global"),
            index: reg.gauge(
                "byzscale_bc_delivered_index",
                "Index of the last a-delivery (or state-transfer skip) at this group",
            ),
        }
    }
}

/// The replica of node `me`, recovered from `durable` (the records of its SMR
/// replica), and its runtime configuration (the parent's replicas submit to
/// this group as `for_replica` clients).
fn replica(
    n: &LoadedNode,
    topo: &Arc<Topology>,
    durable: byzcast::Durable,
) -> Result<(byzcast::Replica, NodeConfig)> {
    let (me, dep) = (n.me(), &n.deployment);
    let group = topo
        .group_of(me)
        .expect("every deployment node is in a group");
    let client = child_client_crypto(dep, topo, me, &n.identity)?;
    let crypto = Crypto::new(Addr::Node(me), n.identity.clone(), CryptoMode::Real);
    let params = n.file.smr.clone();
    let replica = byzcast::Replica::recover(me, topo.clone(), params, client, durable, &crypto)
        .map_err(|e| anyhow!("{e}"))?;
    let mut cfg = NodeConfig::replica(dep, me, n.identity.clone(), WireKind::Byzcast.byte())?;
    if let Some(p) = topo.tree().parent(group) {
        for pm in &topo.group(p).expect("parent group exists").members {
            cfg.transport.peers.push(PeerConfig {
                addr: Addr::Client(ClientId::for_replica(*pm)),
                identity: node_key(dep, *pm)?,
                socket: None,
            });
        }
    }
    Ok((replica, cfg))
}

/// `byzscale node` for a ByzCast node file.
pub(crate) async fn run_node(n: LoadedNode) -> Result<()> {
    let me = n.me();
    let section = n.file.byzcast.as_ref().ok_or_else(|| {
        anyhow!("a byzcast node file needs a [byzcast] section naming the tree file (tree = \"tree.toml\")")
    })?;
    let dep = &n.deployment;
    let topo = load_topology(dep, &section.tree)?;
    let (storage, rec, db) = persist::open(&n.file.data_dir)?;
    let (durable, done_first, fresh) = byzcast_durable_from_disk(rec, &db)?;
    info!(node = %me, view = durable.smr.view, stable = durable.smr.low(),
          slots = durable.smr.slots.len(), streams = ?durable.streams.iter()
            .map(|(c, s)| (c.0, s.acked, s.pending.len())).collect::<Vec<_>>(),
          "recovering the ByzCast replica from disk");
    let (replica, cfg) = replica(&n, &topo, durable.clone())?;
    let (view, executed) = (replica.smr().view(), replica.smr().executed());
    let group = topo.group_of(me).expect("checked by replica()");
    let (_, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let registry = Arc::new(Registry::new());
    let pace = Duration::from_millis(n.file.persist_interval_ms);
    let journal = ByzcastJournal::new(durable, done_first, fresh);
    let (records, persister) = Persister::start(journal, storage, pace, &registry)?;
    let (rt, mut outputs) =
        Runtime::start_with_records(replica, cfg, None, registry, Some(records))
            .await
            .context("starting the ByzCast replica runtime")?;
    let gname = topo.tree().name(group).to_string();
    info!(node = %me, group = %gname, tree = %topo.tree().describe(), addr = %rc.addr,
          metrics = ?rc.metrics_addr, "ByzCast replica running");
    let reg = rt.registry().clone();
    let delivered = DeliveryMetrics::register(&reg, group);
    let smr = ReplicaMetrics::register(
        me,
        &reg,
        "Requests (multicasts and forwarded copies) in decided slots",
    );
    smr.recovered(view, executed);
    // the Redis gateway: a ByzCast client of the whole tree
    let gateway = match &rc.redis_addr {
        Some(addr) => {
            let opts = byzscale_gateway::GatewayOptions {
                max_op_bytes: n.file.smr.max_op_bytes,
                ..Default::default()
            };
            let connect = ByzcastClient::connect(dep, topo.clone(), n.file.smr.clone());
            Some(Gateway::start(me, addr, opts, &reg, connect).await?)
        }
        None => None,
    };
    serve_outputs(me, &mut outputs, |o| match o {
        byzcast::replica::Output::Deliver { index, msg, .. } => {
            if msg.is_global() {
                delivered.global.inc();
            } else {
                delivered.local.inc();
            }
            delivered.index.set(index as i64);
        }
        byzcast::replica::Output::Skipped { to_index, .. } => {
            delivered.index.set(to_index as i64);
            info!(node = %me, to_index, "a-deliveries skipped by state transfer");
        }
        byzcast::replica::Output::Smr(o) => smr.observe(&o),
    })
    .await;
    if let Some(g) = gateway {
        g.stop().await;
    }
    let _ = rt.stop().await;
    persister.finish().await
}

// ---------------------------------------------------------------- client

/// A client of a ByzCast tree over TCP: a [`byzcast::Client`] on the tokio
/// runtime, shared by many callers, each awaiting its own multicast's
/// results.
pub struct ByzcastClient {
    topo: Arc<Topology>,
    calls: Calls<byzcast::Client, Result<Results, anyhow::Error>>,
}

impl ByzcastClient {
    /// Connect a fresh client identity (random id, new key) to every group.
    pub async fn connect(dep: &Deployment, topo: Arc<Topology>, params: Params) -> Result<Self> {
        let t = topo.clone();
        let calls = Calls::start(
            dep,
            WireKind::Byzcast,
            true,
            crate::calls::UNWINDOWED_LIMIT,
            |id| byzcast::Client::new(id, t, params),
            |o| match o {
                byzcast::client::Output::Done { n, results, .. } => {
                    Some((n, results.map_err(|e| anyhow!(e))))
                }
                // typed: the caller can tell an unknown outcome from a failure
                byzcast::client::Output::Failed { n, error, .. } => {
                    Some((n, Err(byzscale_smr::client::Error::from(error).into())))
                }
            },
        )
        .await?;
        Ok(ByzcastClient { topo, calls })
    }

    /// `multicast(payload, dst)` and wait for the destinations' results.
    /// A multicast whose entry group expired the client's session fails
    /// with [`byzscale_smr::client::Failed::SessionExpired`] inside
    /// [`byzscale_smr::client::Error`] (it may or may not be delivered).
    pub async fn multicast(&self, dst: Vec<GroupId>, payload: Vec<u8>) -> Result<Results> {
        let input = |_| byzcast::client::Input::Multicast { dst, payload };
        self.calls.call(input, None).await?
    }

    /// Run a KV command on the sharded store: to the groups owning its keys,
    /// as one message (through their lca if there are several). A command the
    /// sharded store does not run ([`kv::refusal`]: `CROSSSLOT`) is answered
    /// at once.
    pub async fn kv(&self, op: &KvOp) -> Result<KvReply> {
        let targets = self.topo.tree().target_count();
        if let Some(refused) = kv::refusal(op, targets) {
            return Ok(refused);
        }
        let dst = kv::groups_of(op, targets);
        let results = self.multicast(dst, op.encode()).await?;
        Ok(kv::merge(op, &results, targets))
    }

    /// Stop the client (calls still waiting fail).
    pub async fn stop(&self) {
        self.calls.stop().await;
    }
}

impl KvClient for ByzcastClient {
    fn exec(&self, op: KvOp, _read_only: bool) -> BoxFuture<'_, Result<KvReply, String>> {
        Box::pin(async move { self.kv(&op).await.map_err(|e| e.to_string()) })
    }
    /// A command for one group goes into that group's stream (the client's SMR
    /// client of the group numbers it, the group executes in that order); one
    /// spanning groups has none: its destinations deliver it independently, so
    /// a later command could take effect at one of them first.
    fn stream(&self, op: &KvOp) -> Option<u64> {
        match kv::groups_of(op, self.topo.tree().target_count()).as_slice() {
            [g] => Some(u64::from(g.0)),
            _ => None,
        }
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(ByzcastClient::stop(self))
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
pub(crate) async fn client_command(
    dep: &Deployment,
    topo: Arc<Topology>,
    words: &[String],
) -> Result<String> {
    let op = KvOp::from_args(words).map_err(|e| anyhow!(e))?;
    let c = ByzcastClient::connect(dep, topo, Params::default()).await?;
    let r = tokio::time::timeout(CLIENT_COMMAND_WAIT, c.kv(&op)).await;
    c.stop().await;
    client_command_output(r, "the groups")
}

// ---------------------------------------------------------------- cluster

/// What `byzscale cluster --protocol byzcast` reports.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ByzcastReport {
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
    /// Operations whose outcome is unknown (session expired).
    pub expired: u64,
    pub dir: String,
    #[serde(flatten)]
    pub load: LoadSummary,
}

fn check(a: &ClusterSpec) -> Result<()> {
    if a.groups == 0 {
        bail!("--groups must be at least 1");
    }
    if a.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    check_load(a.clients, a.duration)?;
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
pub(crate) async fn cluster(a: &ClusterSpec) -> Result<ClusterOutcome> {
    check(a)?;
    let f = (a.replicas - 1) / 3;
    let ngroups = if a.groups > 1 { a.groups + 1 } else { 1 };
    let spec = LocalSpec {
        groups: &vec![(a.replicas, f); ngroups],
        protocol: NodeProtocol::Byzcast,
        dir: a.dir.clone(),
        keep: a.keep,
        netns: None,
    };
    let local = Local::start(spec, |_| {}).await?;
    local.wait_for(Ports::redis).await?;
    let topo = load_topology(&local.dep, &local.dir.join(TREE_FILE))?;
    let r = if a.duration > 0.0 {
        run_load(&local.dep, topo.clone(), a).await?
    } else {
        LoadResult::empty()
    };
    let report = report(a, &topo, &r, &local);
    let endpoints = a.keep.then(|| {
        let (p, total) = (&local.ports, local.len());
        local.endpoints(serde_json::json!({
            "redis": p.redis(1.min(total - 1)),
            "replicas": (0..total).map(|i| p.replica(i)).collect::<Vec<_>>(),
            "redis_all": (0..total).map(|i| p.redis(i)).collect::<Vec<_>>(),
            "group_members": topo.groups().iter().map(|g| (topo.tree().name(g.id).to_string(), g.members.iter().map(|m| m.0).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
            "tree_file": local.dir.join(TREE_FILE).display().to_string(),
        }))
    });
    ClusterOutcome::new(&report, table(&report), endpoints, local)
}

fn report(a: &ClusterSpec, topo: &Topology, r: &LoadResult, local: &Local) -> ByzcastReport {
    let (lh, gh) = (r.class(LOCAL), r.class(GLOBAL));
    let (cl, cg) = (r.committed_in(LOCAL), r.committed_in(GLOBAL));
    ByzcastReport {
        protocol: "byzcast".into(),
        groups: topo.tree().target_count(),
        auxiliary: topo.tree().len() - topo.tree().target_count(),
        tree: topo.tree().describe(),
        replicas: a.replicas,
        clients: a.clients,
        duration_s: a.duration,
        payload: a.payload,
        global_ratio: a.global_ratio,
        throughput_ops: r.throughput(cl + cg),
        throughput_local: r.throughput(cl),
        throughput_global: r.throughput(cg),
        p50_ms: ms(&r.hist, 0.5),
        p99_ms: ms(&r.hist, 0.99),
        latency_local_p50_ms: ms(&lh, 0.5),
        latency_local_p99_ms: ms(&lh, 0.99),
        latency_global_p50_ms: ms(&gh, 0.5),
        latency_global_p99_ms: ms(&gh, 0.99),
        committed: cl + cg,
        committed_local: cl,
        committed_global: cg,
        errors: r.errors,
        expired: r.expired,
        dir: local.dir_label(),
        load: r.summary(),
    }
}

fn table(r: &ByzcastReport) -> String {
    let mut t = format!(
        "byzscale cluster --protocol byzcast: {} target groups + {} auxiliary ({}), {} replicas each, {} clients, {:.1} s, {} B values, {:.0}% global\n",
        r.groups,
        r.auxiliary,
        r.tree,
        r.replicas,
        r.clients,
        r.duration_s,
        r.payload,
        r.global_ratio * 100.0
    );
    t += &format!(
        "  throughput   {:>10.0} ops/s  (local {:.0}, global {:.0}) over {:.1} s\n",
        r.throughput_ops, r.throughput_local, r.throughput_global, r.load.window_s
    );
    for (what, p50, p99) in [
        ("latency", r.p50_ms, r.p99_ms),
        ("local", r.latency_local_p50_ms, r.latency_local_p99_ms),
        ("global", r.latency_global_p50_ms, r.latency_global_p99_ms),
    ] {
        t += &format!("  {what:<12} p50 {p50:.2} ms   p99 {p99:.2} ms\n");
    }
    t += &format!(
        "  committed    {:>10}   (local {}, global {})   errors {}   expired {}   in flight at the end {}\n",
        r.committed, r.committed_local, r.committed_global, r.errors, r.expired, r.load.in_flight_at_end
    );
    t + &format!("  files        {}\n", r.dir)
}

// ---------------------------------------------------------------- load

/// The latency classes of the workload.
const LOCAL: usize = 0;
const GLOBAL: usize = 1;

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
async fn run_load(dep: &Deployment, topo: Arc<Topology>, a: &ClusterSpec) -> Result<LoadResult> {
    let targets = topo.tree().target_count();
    let endpoints = a.clients.div_ceil(16).clamp(1, 8);
    let params = local_params();
    let mut clients = Vec::new();
    for _ in 0..endpoints {
        let c = ByzcastClient::connect(dep, topo.clone(), params.clone()).await?;
        clients.push(Arc::new(c));
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
    let (global, value) = (a.global_ratio, vec![b'x'; a.payload]);
    let spec = LoadSpec::closed_loop(a.clients, a.duration);
    let cs = clients.clone();
    let r = Load::run(&spec, a.progress, move |w, rng| {
        let c = cs[w % cs.len()].clone();
        let (op, is_global) = next_op(rng, &pools, global, &value);
        let class = if is_global { GLOBAL } else { LOCAL };
        (class, async move {
            match c.kv(&op).await? {
                KvReply::Ok => Ok(()),
                r => bail!("{r}"),
            }
        })
    })
    .await;
    for c in &clients {
        c.stop().await;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::generate;
    use rand::SeedableRng;

    /// The messages awaiting results are rows of the store, written and
    /// deleted across group commits (one done in the same commit that
    /// awaited it), and read back after a reopen as the fold has them.
    #[test]
    fn awaiting_rows_rebuild_the_fold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.redb");
        let id = |n| byzcast::MsgId {
            client: byzscale_core::ClientId(9),
            n,
        };
        let awaiting = |n: u64| byzcast::Record::Awaiting {
            id: id(n),
            entry: n.is_multiple_of(2),
            own: Some(vec![n as u8]),
            awaiting: vec![GroupId(1), GroupId(2)],
        };
        let done = |n| byzcast::Record::Done {
            id: id(n),
            results: byzcast::Results::new(),
            entry: false,
        };
        let commits = vec![
            vec![awaiting(1), awaiting(2), awaiting(3)],
            vec![done(2), awaiting(4), done(4)],
            vec![awaiting(5)],
        ];
        let want = byzcast::Durable::from_records(commits.concat());
        assert_eq!(
            want.awaiting.keys().map(|i| i.n).collect::<Vec<_>>(),
            [1, 3, 5]
        );
        {
            let (storage, rec) = byzscale_net::Storage::open(&path).unwrap();
            let (d, first, fresh) = byzcast_durable_from_disk(rec, &path).unwrap();
            let mut j = ByzcastJournal::new(d, first, fresh);
            for c in commits {
                for r in c {
                    j.record(r);
                }
                storage.commit(j.flush()).unwrap();
            }
        }
        let (_, rec) = byzscale_net::Storage::open(&path).unwrap();
        let (got, _, _) = byzcast_durable_from_disk(rec, &path).unwrap();
        assert_eq!(got.awaiting, want.awaiting);
    }

    #[test]
    fn generated_deployment_has_a_two_level_tree_the_nodes_load() {
        let dir = std::env::temp_dir().join(format!("byzscale-bc-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ports = Ports {
            hosts: vec!["127.0.0.1".into()],
            base: 41_000,
        };
        let dep = generate(&dir, &[(4, 1); 3], &ports, NodeProtocol::Byzcast, |_| {}).unwrap();
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
