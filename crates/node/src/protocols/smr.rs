//! SMR as real processes: a replica of the KV store per node, its Redis
//! gateway, the [`SmrClient`] library, the KV workload and
//! `byzscale cluster` (one group).
//!
//! # Paper mapping
//!
//! The replica is [`byzscale_smr::Replica`] (BFT-SMaRt / Mod-SMaRt with PBFT
//! checkpoints; its paper map is in `byzscale_smr`). What this module adds is
//! BFT-SMaRt's durability layer, driven by the core's `Effect::Persist`:
//!
//! | BFT-SMaRt | here |
//! |---|---|
//! | the decided log and checkpoints on disk, recovery on restart | the replica emits `Record`s (its proposals and ACCEPTs, decisions, views, stable checkpoints with their certificates; see `byzscale_smr::replica::durable`); [`SmrJournal`] folds them into redb rows, the persister group-commits them (one fsync'd transaction for everything that arrived during the previous one, at most one per `persist_interval_ms`), and the runtime sends nothing that follows a record until it is durable; a restart rebuilds the fold ([`durable_from_disk`]) and `Replica::recover`s from it, then catches up by log and state transfer |
//! | clients of the service | [`SmrClient`] (an `smr::Client` on the tokio runtime), also behind the Redis gateway |
//!
//! Deviations: a stable checkpoint truncates the rows of the slots below it,
//! so disk use is bounded by the window; durability costs latency, not
//! throughput: each phase (PROPOSE, WRITE, ACCEPT, the reply) waits for a
//! group commit of its node, while the protocol keeps running.

use crate::calls::Calls;
use crate::cluster::{ClusterOutcome, ClusterSpec};
use crate::daemon::{serve_outputs, Gateway, KvClient};
use crate::generate::local_params;
use crate::launcher::{scrape_metric, Local, LocalSpec};
use crate::load::{check_load, ms, Load, LoadResult, LoadSpec, LoadSummary};
use crate::node_file::{LoadedNode, NodeProtocol};
use crate::persist::{self, Journal, Persister};
use anyhow::{anyhow, bail, Context, Result};
use byzscale_apps::kv::{KvOp, KvReply, KvStore};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::{Crypto, CryptoMode, Digest};
use byzscale_core::service::Service;
use byzscale_core::{codec, Addr, GroupId, NodeId, WireKind};
use byzscale_gateway::BoxFuture;
use byzscale_net::{Counter, Gauge, NodeConfig, Recovered, Registry, Runtime};
use byzscale_smr::replica::{Change, Durable, DurableSlot, Record, SlotVotes};
use byzscale_smr::{self as smr, Batch, CheckpointCert, GroupInfo, Params, Replica, Slot};
use rand::Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::info;

/// The SMR view of group `group` of `dep`.
pub fn group_info(dep: &Deployment, group: GroupId) -> Result<GroupInfo> {
    let g = dep.group(group)?;
    Ok(GroupInfo::new(g.id, g.members(), g.quorum_system()?))
}

// ---------------------------------------------------------------- disk

/// The layout of an SMR replica's records in its redb store (meta keys, the
/// log table keyed by slot, the snapshot table).
const FORMAT_KEY: &str = "smr/format";
const FORMAT: &[u8] = b"2";
const VIEW_KEY: &str = "smr/view";
/// The STOP-DATA of the SYNC that installed the view (served to a replica
/// that missed it, also after a restart).
const SYNC_KEY: &str = "smr/sync";
const STABLE_KEY: &str = "smr/stable";
const CHECKPOINT_KEY: &str = "smr/checkpoint";
const VOTES_PREFIX: &str = "smr/votes/";

fn votes_key(slot: Slot) -> String {
    format!("{VOTES_PREFIX}{slot:020}")
}

/// The SMR replica's records as rows of its store, folded through
/// [`Durable`] (see `byzscale_smr::replica::durable`): per slot above the
/// stable checkpoint its votes (a meta row, rewritten as they change) and the
/// values they name (the log row of the slot, written when a value is new);
/// the view; the stable checkpoint's certificate; the latest snapshot with its
/// certificate. Rows of slots up to the stable checkpoint are deleted in the
/// transaction that moves it, so disk use stays bounded by the window.
pub(crate) struct SmrJournal {
    /// The fold, without the snapshot bytes once written.
    d: Durable,
    fresh: bool,
    view: bool,
    floor: bool,
    snapshot: bool,
    votes: BTreeSet<Slot>,
    values: BTreeSet<Slot>,
    dropped: Vec<Slot>,
}

impl SmrJournal {
    /// A journal continuing `d` (what the store held at start).
    pub(crate) fn new(mut d: Durable, fresh: bool) -> Self {
        if let Some((_, snap)) = &mut d.checkpoint {
            *snap = Vec::new(); // on disk already
        }
        SmrJournal {
            d,
            fresh,
            view: false,
            floor: false,
            snapshot: false,
            votes: BTreeSet::new(),
            values: BTreeSet::new(),
            dropped: Vec::new(),
        }
    }
}

impl Journal for SmrJournal {
    type Record = Record;

    fn record(&mut self, r: Record) {
        match self.d.apply(r) {
            Change::None => {}
            Change::Slot { slot, values } => {
                self.votes.insert(slot);
                if values {
                    self.values.insert(slot);
                }
            }
            Change::View => self.view = true,
            Change::Floor { dropped, snapshot } => {
                for s in &dropped {
                    self.votes.remove(s);
                    self.values.remove(s);
                }
                self.dropped.extend(dropped);
                self.floor = true;
                self.snapshot |= snapshot;
            }
        }
    }

    fn flush(&mut self) -> byzscale_net::Batch {
        let mut b = byzscale_net::Batch::new();
        if std::mem::take(&mut self.fresh) {
            b = b.put_meta(FORMAT_KEY, FORMAT);
        }
        if std::mem::take(&mut self.view) {
            b = b
                .put_meta(VIEW_KEY, codec::to_bytes(&(self.d.view, self.d.changing)))
                .put_meta(SYNC_KEY, codec::to_bytes(&self.d.sync));
        }
        if std::mem::take(&mut self.floor) {
            if let Some(cert) = &self.d.stable {
                // the snapshot and the certificate cover every slot up to
                // it: the rows below go, so disk use stays bounded
                b = b
                    .put_meta(STABLE_KEY, codec::to_bytes(cert))
                    .truncate_below(cert.slot + 1);
            }
            for s in self.dropped.drain(..) {
                b = b.delete_meta(votes_key(s));
            }
        }
        if std::mem::take(&mut self.snapshot) {
            if let Some((cert, snap)) = &mut self.d.checkpoint {
                b = b
                    .snapshot(cert.slot, std::mem::take(snap))
                    .put_meta(CHECKPOINT_KEY, codec::to_bytes(&*cert));
            }
        }
        for s in std::mem::take(&mut self.values) {
            if let Some(e) = self.d.slots.get(&s) {
                let values: Vec<(&Digest, &Batch)> = e.values.iter().collect();
                b = b.append(s, codec::to_bytes(&values));
            }
        }
        for s in std::mem::take(&mut self.votes) {
            if let Some(e) = self.d.slots.get(&s) {
                b = b.put_meta(votes_key(s), codec::to_bytes(&e.votes));
            }
        }
        b
    }
}

/// Rebuild the fold of an SMR replica's records from its store (`db` names
/// it in errors); also whether the store is new.
pub(crate) fn durable_from_disk(rec: Recovered, db: &Path) -> Result<(Durable, bool)> {
    let decode_err = |what: &str| format!("decoding {what} in {}", db.display());
    let Some(format) = rec.meta.get(FORMAT_KEY) else {
        if rec.snapshot.is_some() || !rec.log.is_empty() {
            bail!(
                "{} was written by an older byzscale (a decided log without votes, which a \
                 restart cannot recover safely); move it away to start this replica empty \
                 (it catches up from the others by state transfer)",
                db.display()
            );
        }
        return Ok((Durable::new(), true));
    };
    persist::check_format(db, "SMR", format, FORMAT)?;
    let mut d = Durable::new();
    if let Some(v) = rec.meta.get(VIEW_KEY) {
        (d.view, d.changing) =
            codec::from_bytes(v, usize::MAX).with_context(|| decode_err("the view"))?;
    }
    if let Some(s) = rec.meta.get(SYNC_KEY) {
        d.sync = codec::from_bytes(s, usize::MAX).with_context(|| decode_err("the SYNC"))?;
    }
    if let Some(c) = rec.meta.get(STABLE_KEY) {
        let cert: CheckpointCert = codec::from_bytes(c, usize::MAX)
            .with_context(|| decode_err("the stable checkpoint"))?;
        d.stable = Some(cert);
    }
    if let (Some(c), Some((slot, snap))) = (rec.meta.get(CHECKPOINT_KEY), rec.snapshot) {
        let cert: CheckpointCert =
            codec::from_bytes(c, usize::MAX).with_context(|| decode_err("the checkpoint"))?;
        if cert.slot != slot {
            bail!(
                "{}: the snapshot at slot {slot} has the certificate of slot {}",
                db.display(),
                cert.slot
            );
        }
        d.checkpoint = Some((cert, snap));
    }
    let mut values: BTreeMap<Slot, Vec<u8>> = rec.log.into_iter().collect();
    for (k, v) in rec.meta.range(VOTES_PREFIX.to_string()..) {
        let Some(n) = k.strip_prefix(VOTES_PREFIX) else {
            break;
        };
        let slot: Slot = n
            .parse()
            .with_context(|| format!("bad key {k} in {}", db.display()))?;
        if slot <= d.low() {
            continue;
        }
        let votes: SlotVotes = codec::from_bytes(v, usize::MAX)
            .with_context(|| decode_err(&format!("the votes of slot {slot}")))?;
        let vals: Vec<(Digest, Batch)> = match values.remove(&slot) {
            Some(bytes) => codec::from_bytes(&bytes, usize::MAX)
                .with_context(|| decode_err(&format!("the values of slot {slot}")))?,
            None => Vec::new(),
        };
        d.slots.insert(
            slot,
            DurableSlot {
                votes,
                values: vals.into_iter().collect(),
            },
        );
    }
    Ok((d, false))
}

// ---------------------------------------------------------------- node

/// The metrics of an SMR replica (also one nested in another protocol).
pub(crate) struct ReplicaMetrics {
    me: NodeId,
    decided: Counter,
    executed: Counter,
    view: Gauge,
    view_changes: Counter,
    suspicions: Counter,
    transfers: Counter,
    checkpoints: Counter,
    last_slot: Gauge,
}

impl ReplicaMetrics {
    /// Register replica `me`'s metrics in `reg`; `executed` says what the
    /// executed-requests counter counts.
    pub(crate) fn register(me: NodeId, reg: &Registry, executed: &str) -> Self {
        ReplicaMetrics {
            me,
            decided: reg.counter("byzscale_decided_slots_total", "Slots decided and executed"),
            executed: reg.counter("byzscale_executed_requests_total", executed),
            view: reg.gauge("byzscale_view", "Current view (regency)"),
            view_changes: reg.counter(
                "byzscale_view_changes_total",
                "Views installed after a synchronization phase",
            ),
            suspicions: reg.counter(
                "byzscale_suspicions_total",
                "Times this replica suspected the leader",
            ),
            transfers: reg.counter(
                "byzscale_state_transfers_total",
                "Snapshots installed from other replicas",
            ),
            checkpoints: reg.counter("byzscale_stable_checkpoints_total", "Stable checkpoints"),
            last_slot: reg.gauge(
                "byzscale_last_executed_slot",
                "Highest slot executed (or installed by state transfer)",
            ),
        }
    }

    /// Start from where a recovered replica stands.
    pub(crate) fn recovered(&self, view: u64, executed: u64) {
        self.view.set(view as i64);
        self.last_slot.set(executed as i64);
    }

    /// Count one replica output (and log view changes and state transfers).
    pub(crate) fn observe(&self, o: &smr::replica::Output) {
        let me = self.me;
        match o {
            smr::replica::Output::Decided { slot, batch, .. } => {
                self.decided.inc();
                self.last_slot.set(*slot as i64);
                self.executed.add(batch.requests.len() as u64);
            }
            smr::replica::Output::ViewChanged { view: v, leader } => {
                self.view.set(*v as i64);
                self.view_changes.inc();
                info!(node = %me, view = v, %leader, "view changed");
            }
            smr::replica::Output::Suspected { .. } => self.suspicions.inc(),
            smr::replica::Output::StateTransferred { slot } => {
                self.transfers.inc();
                self.last_slot.set(*slot as i64);
                info!(node = %me, slot, "state transferred");
            }
            smr::replica::Output::Stable { .. } => self.checkpoints.inc(),
        }
    }
}

/// The replica of `loaded`, recovered from what its store held, and the
/// journal that continues it.
fn recover<S: Service>(
    loaded: &LoadedNode,
    rec: byzscale_net::Recovered,
    db: &Path,
    service: S,
) -> Result<(Replica<S>, SmrJournal)> {
    let me = loaded.me();
    let (gc, _) = loaded
        .deployment
        .replica(me)
        .expect("checked by NodeFile::load");
    let g = GroupInfo::new(gc.id, gc.members(), gc.quorum_system()?);
    let (durable, fresh) = durable_from_disk(rec, db)?;
    info!(node = %me, view = durable.view, changing = ?durable.changing, stable = durable.low(),
          snapshot = ?durable.checkpoint.as_ref().map(|(c, _)| c.slot),
          slots = durable.slots.len(), "recovering from disk");
    let crypto = Crypto::new(Addr::Node(me), loaded.identity.clone(), CryptoMode::Real);
    let replica = Replica::recover(
        me,
        g,
        loaded.file.smr.clone(),
        service,
        durable.clone(),
        &crypto,
    )
    .map_err(|e| anyhow!("recovering from {}: {e}", db.display()))?;
    Ok((replica, SmrJournal::new(durable, fresh)))
}

/// `byzscale node` for an SMR node file of the KV store: recovers from its
/// redb store, persists what the replica asks for, serves Prometheus metrics
/// and, if configured, the Redis gateway.
pub(crate) async fn run_node(loaded: LoadedNode) -> Result<()> {
    run_durable(loaded, KvStore::new(), true).await
}

/// An SMR replica of `service` (the initial state, before recovery) as a
/// durable process: recovers from its redb store, persists what the replica
/// asks for, serves Prometheus metrics and, with `gateway` and if
/// configured, the Redis gateway (KV only).
pub(crate) async fn run_durable<S: Service + 'static>(
    loaded: LoadedNode,
    service: S,
    gateway: bool,
) -> Result<()> {
    let me = loaded.me();
    let dep = &loaded.deployment;
    let (gc, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let (storage, rec, db) = persist::open(&loaded.file.data_dir)?;
    let (replica, journal) = recover(&loaded, rec, &db, service)?;
    let (view, executed) = (replica.view(), replica.executed());
    let cfg = NodeConfig::replica(dep, me, loaded.identity.clone(), WireKind::Smr.byte())?;
    let registry = Arc::new(Registry::new());
    let pace = Duration::from_millis(loaded.file.persist_interval_ms);
    let (records, persister) = Persister::start(journal, storage, pace, &registry)?;
    let (rt, mut outputs) =
        Runtime::start_with_records(replica, cfg, None, registry, Some(records))
            .await
            .context("starting the replica runtime")?;
    info!(node = %me, addr = %rc.addr, metrics = ?rc.metrics_addr, "replica running");
    let reg = rt.registry().clone();
    let metrics = ReplicaMetrics::register(me, &reg, "Client requests in decided slots");
    metrics.recovered(view, executed);
    // the Redis gateway: a BFT client of this group, co-located with the replica
    let gateway = match rc.redis_addr.as_ref().filter(|_| gateway) {
        Some(addr) => {
            let p = loaded.file.smr.clone();
            let opts = byzscale_gateway::GatewayOptions {
                unordered_reads: true,
                max_op_bytes: p.max_op_bytes,
                ..Default::default()
            };
            let connect = SmrClient::connect(dep, gc.id, p.clone(), p.client_window);
            Some(Gateway::start(me, addr, opts, &reg, connect).await?)
        }
        None => None,
    };
    serve_outputs(me, &mut outputs, |o| metrics.observe(&o)).await;
    if let Some(g) = gateway {
        g.stop().await;
    }
    // stopping the runtime closes the record channel; the persister then
    // writes what it still holds and ends
    let _ = rt.stop().await;
    persister.finish().await
}

// ---------------------------------------------------------------- client

/// A client of one SMR group over TCP: an [`smr::Client`] on the tokio
/// runtime, shared by many callers (up to its window of outstanding
/// requests), each awaiting its own reply. Retransmission is the protocol's
/// job. It holds at most [`SmrClient::LIMIT_PER_WINDOW`] windows of calls
/// (one at the replicas, the rest in the client's backlog, so the window
/// refills at once): [`SmrClient::call`] waits for room beyond that,
/// [`SmrClient::try_call`] fails at once (see `calls.rs`).
pub struct SmrClient {
    calls: Calls<smr::Client, Result<Vec<u8>, smr::client::Error>>,
}

impl SmrClient {
    /// Calls a client holds, in windows of outstanding requests.
    pub const LIMIT_PER_WINDOW: u64 = 2;

    /// Connect a fresh client identity (random id, new key) to `group` of
    /// `dep`, with at most `window` requests outstanding.
    pub async fn connect(
        dep: &Deployment,
        group: GroupId,
        mut params: Params,
        window: u64,
    ) -> Result<Self> {
        params.client_window = window.max(1);
        let g = group_info(dep, group)?;
        let calls = Calls::start(
            dep,
            WireKind::Smr,
            true,
            (params.client_window * Self::LIMIT_PER_WINDOW) as usize,
            |id| smr::Client::new(id, g, params),
            |o| Some(o.result()),
        )
        .await?;
        Ok(SmrClient { calls })
    }

    /// Submit `op` (the service's encoding) and wait for its result;
    /// `read_only` takes the unordered read-only path. An operation the
    /// replicas would drop (over `max_op_bytes`) fails at once with
    /// [`smr::client::Refused`] and holds up nothing; an ordered one whose
    /// session expired at the replicas fails with
    /// [`smr::client::Failed::SessionExpired`]: it may or may not have been
    /// applied, and it is not sent again (both inside
    /// [`smr::client::Error`], for `downcast_ref`).
    pub async fn call(&self, op: Vec<u8>, read_only: bool) -> Result<Vec<u8>> {
        let input = |_| smr::client::Input::Submit { op, read_only };
        Ok(self.calls.call(input, None).await??)
    }

    /// [`SmrClient::call`] if the client has room now, else a
    /// [`crate::calls::CallError::Full`] at once (nothing sent).
    pub async fn try_call(&self, op: Vec<u8>, read_only: bool) -> Result<Vec<u8>> {
        let input = |_| smr::client::Input::Submit { op, read_only };
        Ok(self.calls.try_call(input, None).await??)
    }

    /// Run a KV command (the service must be the KV store).
    pub async fn kv(&self, op: &KvOp, read_only: bool) -> Result<KvReply> {
        self.kv_or_shed(op, read_only, true).await
    }

    /// Whether a call would be taken now (the client holds fewer than its
    /// limit of calls).
    pub fn has_room(&self) -> bool {
        self.calls.has_room()
    }

    /// [`SmrClient::kv`]; with `wait` false, fail at once if the client is
    /// full ([`SmrClient::try_call`]).
    async fn kv_or_shed(&self, op: &KvOp, read_only: bool, wait: bool) -> Result<KvReply> {
        let bytes = if wait {
            self.call(op.encode(), read_only).await?
        } else {
            self.try_call(op.encode(), read_only).await?
        };
        KvReply::decode(&bytes).map_err(|e| anyhow!("undecodable reply: {e}"))
    }

    /// Stop the client (calls still waiting fail).
    pub async fn stop(&self) {
        self.calls.stop().await;
    }
}

impl KvClient for SmrClient {
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'_, Result<KvReply, String>> {
        Box::pin(async move { self.kv(&op, read_only).await.map_err(|e| e.to_string()) })
    }
    /// One stream: ordered calls are numbered in submission order (behind the
    /// fair lock in `Calls::call`) and the replicas execute a client's
    /// requests in that order.
    fn stream(&self, _op: &KvOp) -> Option<u64> {
        Some(0)
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(SmrClient::stop(self))
    }
}

/// `byzscale client` against an SMR deployment of the KV store: `words` is
/// the command; reads take the unordered path unless `ordered`.
pub(crate) async fn client_command(
    dep: &Deployment,
    ordered: bool,
    words: &[String],
) -> Result<String> {
    let op = KvOp::from_args(words).map_err(|e| anyhow!(e))?;
    let ro = op.is_read_only() && !ordered;
    let c = SmrClient::connect(dep, GroupId(0), Params::default(), 1).await?;
    let r = tokio::time::timeout(CLIENT_COMMAND_WAIT, c.kv(&op, ro)).await;
    c.stop().await;
    client_command_output(r, "the replicas")
}

/// How long `byzscale client` waits for its reply.
pub(crate) const CLIENT_COMMAND_WAIT: Duration = Duration::from_secs(15);

/// What `byzscale client` prints for the reply it waited for (from `who`,
/// up to [`CLIENT_COMMAND_WAIT`]): the reply; no reply in time, a client
/// error or an error reply fail the command.
pub(crate) fn client_command_output(
    r: Result<Result<KvReply>, tokio::time::error::Elapsed>,
    who: &str,
) -> Result<String> {
    let wait = CLIENT_COMMAND_WAIT.as_secs();
    let r = r.with_context(|| format!("no reply from {who} within {wait} s"));
    match r?? {
        KvReply::Error(e) => bail!("{e}"),
        reply => Ok(format!("{reply}\n")),
    }
}

// ---------------------------------------------------------------- load

/// The KV workload: SETs of `payload`-byte values and a fraction of GETs, on
/// keys `key:0..10000`.
#[derive(Clone, Debug)]
pub struct KvWorkload {
    pub payload: usize,
    /// Fraction of GETs (on the unordered read-only path).
    pub read_ratio: f64,
}

/// Run `spec`'s load of `workload` against group 0 of `dep`, on
/// `clients.div_ceil(16)` (at most 8) client endpoints; with a progress bar
/// if `show`, calling `each_tick` every 100 ms.
pub async fn run_kv_load(
    dep: &Deployment,
    spec: &LoadSpec,
    workload: &KvWorkload,
    show: bool,
    mut each_tick: impl FnMut(&Load, Option<&indicatif::ProgressBar>),
) -> Result<LoadResult> {
    let endpoints = spec.clients.div_ceil(16).clamp(1, 8);
    let per = spec.clients.div_ceil(endpoints) as u64;
    let params = local_params();
    let mut clients = Vec::new();
    for _ in 0..endpoints {
        let window = per.min(params.client_window);
        let c = SmrClient::connect(dep, GroupId(0), params.clone(), window).await?;
        clients.push(Arc::new(c));
    }
    let (cs, w) = (clients.clone(), workload.clone());
    // an open loop sheds what a full client cannot take (calls.rs); a closed
    // loop's workers wait, as they number at most the clients' windows
    let wait = spec.open_rate.is_none();
    let load = Load::start(spec, move |n, rng| {
        // the first endpoint from n's with room: a slow endpoint's full
        // client does not shed what another can take
        let i = (0..cs.len())
            .map(|k| (n + k) % cs.len())
            .find(|&i| cs[i].has_room())
            .unwrap_or(n % cs.len());
        let c = cs[i].clone();
        let key = format!("key:{}", rng.gen_range(0..10_000)).into_bytes();
        let (op, ro) = if rng.gen_bool(w.read_ratio) {
            (KvOp::Get(key), true)
        } else {
            (KvOp::Set(key, vec![b'x'; w.payload]), false)
        };
        (0, async move {
            match c.kv_or_shed(&op, ro, wait).await? {
                KvReply::Error(e) => bail!("{e}"),
                _ => Ok(()),
            }
        })
    });
    let bar = load.progress(show, |bar| each_tick(&load, bar)).await;
    let r = load.finish().await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for c in &clients {
        c.stop().await;
    }
    Ok(r)
}

// ---------------------------------------------------------------- cluster

/// The local deployment's SMR parameters with at most `batch_max` requests per
/// batch.
pub fn params_with_batch(batch_max: usize) -> Result<Params> {
    if batch_max == 0 {
        bail!("--batch-max must be at least 1");
    }
    Ok(Params {
        batch_max_requests: batch_max,
        ..local_params()
    })
}

/// Start one group of `replicas` KV replicas on loopback with `params`.
pub async fn start_local(
    replicas: usize,
    params: Params,
    dir: Option<std::path::PathBuf>,
    keep: bool,
) -> Result<Local> {
    if replicas == 0 {
        bail!("a cluster needs at least one replica");
    }
    let groups = [(replicas, (replicas - 1) / 3)];
    let spec = LocalSpec {
        groups: &groups,
        protocol: NodeProtocol::Smr,
        dir,
        keep,
        netns: None,
    };
    Local::start(spec, move |nf| nf.smr = params.clone()).await
}

/// What `byzscale cluster` reports for one SMR group.
#[derive(Serialize)]
struct Report {
    replicas: usize,
    clients: usize,
    duration_s: f64,
    payload: usize,
    read_ratio: f64,
    throughput_ops: f64,
    p50_ms: f64,
    p99_ms: f64,
    committed: u64,
    errors: u64,
    /// Operations whose outcome is unknown (session expired).
    expired: u64,
    view_changes: i64,
    ops_after_crash: u64,
    crashed: Option<String>,
    dir: String,
    #[serde(flatten)]
    load: LoadSummary,
}

fn check(a: &ClusterSpec) -> Result<()> {
    if a.replicas < 1 {
        bail!("--replicas must be at least 1");
    }
    check_load(a.clients, a.duration)?;
    if !(0.0..=1.0).contains(&a.read_ratio) {
        bail!("--read-ratio must be between 0 and 1");
    }
    if let Some(t) = a.crash_leader_at {
        if !(t >= 0.0 && t < a.duration) {
            bail!(
                "--crash-leader-at must fall inside --duration ({} s)",
                a.duration
            );
        }
    }
    Ok(())
}

/// `byzscale cluster` (`--protocol smr`): one group of KV replicas, a
/// closed-loop workload, optionally SIGKILLing the initial leader.
pub(crate) async fn cluster(a: &ClusterSpec) -> Result<ClusterOutcome> {
    check(a)?;
    let params = params_with_batch(a.batch_max)?;
    let mut local = start_local(a.replicas, params, a.dir.clone(), a.keep).await?;
    let mut crashed = None;
    let mut result = LoadResult::empty();
    if a.duration > 0.0 {
        let spec = LoadSpec::closed_loop(a.clients, a.duration);
        let workload = KvWorkload {
            payload: a.payload,
            read_ratio: a.read_ratio,
        };
        let crash = a.crash_leader_at.map(Duration::from_secs_f64);
        let dep = local.dep.clone();
        result = run_kv_load(&dep, &spec, &workload, a.progress, |load, bar| {
            let due = crash.is_some_and(|t| Instant::now() >= load.started + t);
            if due && crashed.is_none() {
                local.kill(0); // SIGKILL
                load.mark_crash();
                crashed = Some("n0".to_string());
                if let Some(b) = bar {
                    b.println("  SIGKILLed the leader (n0)");
                }
            }
        })
        .await?;
    }
    let mut view_changes = 0;
    for i in (0..a.replicas).filter(|i| local.is_running(*i)) {
        if let Some(v) = scrape_metric(&local.ports.metrics(i), "byzscale_view").await {
            view_changes = view_changes.max(v as i64);
        }
    }
    let h = &result.hist;
    let report = Report {
        replicas: a.replicas,
        clients: a.clients,
        duration_s: a.duration,
        payload: a.payload,
        read_ratio: a.read_ratio,
        throughput_ops: result.throughput(result.committed),
        p50_ms: ms(h, 0.5),
        p99_ms: ms(h, 0.99),
        committed: result.committed,
        errors: result.errors,
        expired: result.expired,
        view_changes,
        ops_after_crash: result.after_crash,
        crashed,
        dir: local.dir_label(),
        load: result.summary(),
    };
    let endpoints = a.keep.then(|| {
        let p = &local.ports;
        let n = a.replicas;
        local.endpoints(serde_json::json!({
            "redis": p.redis(1.min(n - 1)),
            "replicas": (0..n).map(|i| p.replica(i)).collect::<Vec<_>>(),
            "redis_all": (0..n).map(|i| p.redis(i)).collect::<Vec<_>>(),
        }))
    });
    ClusterOutcome::new(&report, table(&report), endpoints, local)
}

fn table(r: &Report) -> String {
    let mut t = format!(
        "byzscale cluster: {} replicas, {} clients, {:.1} s, {} B values, read ratio {}\n",
        r.replicas, r.clients, r.duration_s, r.payload, r.read_ratio
    );
    t += &format!(
        "  throughput   {:>10.0} ops/s over {:.1} s\n",
        r.throughput_ops, r.load.window_s
    );
    t += &format!(
        "  latency      p50 {:.2} ms   p99 {:.2} ms\n",
        r.p50_ms, r.p99_ms
    );
    t += &format!(
        "  committed    {:>10}   errors {}   expired {}   view changes {}   in flight at the end {}\n",
        r.committed, r.errors, r.expired, r.view_changes, r.load.in_flight_at_end
    );
    if let Some(c) = &r.crashed {
        t += &format!(
            "  crashed      {c}; {} ops completed after the crash\n",
            r.ops_after_crash
        );
    }
    t + &format!("  files        {}\n", r.dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::Journal;
    use byzscale_core::crypto::Identity;
    use byzscale_net::Storage;

    fn cert(slot: Slot) -> CheckpointCert {
        let c = Crypto::new(
            Addr::Node(NodeId(0)),
            Identity::from_seed([1; 32]),
            CryptoMode::Real,
        );
        let state = byzscale_core::crypto::digest(&slot.to_le_bytes());
        CheckpointCert {
            slot,
            state,
            sigs: vec![(NodeId(0), c.sign(b"x"))],
        }
    }

    fn batch(op: u8) -> (Digest, Batch) {
        let b = Batch::new(vec![smr::Request {
            client: byzscale_core::ClientId(7),
            session: 0,
            seq: op as u64,
            read_only: false,
            op: vec![op],
            auth: Vec::new(),
            sig: None,
        }]);
        (byzscale_core::crypto::digest(&b.bytes()), b)
    }

    /// Everything a replica does to one slot: adopt, accept, decide.
    fn slot_records(slot: Slot, view: u64, op: u8) -> Vec<Record> {
        let (digest, batch) = batch(op);
        vec![
            Record::Proposal {
                view,
                slot,
                digest,
                batch: batch.clone(),
            },
            Record::Accept { view, slot, digest },
            Record::Decided {
                slot,
                view,
                digest,
                batch,
            },
        ]
    }

    /// The journal's rows, written in several group commits and read back
    /// after a reopen, rebuild exactly the fold of the records; rows at or
    /// below the stable checkpoint are gone.
    #[test]
    fn journal_rows_rebuild_the_fold_and_are_truncated_at_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.redb");
        let mut records = Vec::new();
        for s in 1..=6 {
            records.extend(slot_records(s, 0, s as u8));
        }
        records.push(Record::Checkpoint {
            cert: cert(4),
            snapshot: b"state at 4".to_vec(),
        });
        records.push(Record::Changing { view: 1 });
        records.push(Record::Installed {
            view: 1,
            stops: vec![],
        });
        records.extend(slot_records(7, 1, 70));
        // a second value adopted for slot 8 in a later view keeps both claims
        records.extend(slot_records(8, 1, 80)[..2].to_vec());
        records.push(Record::Changing { view: 2 });
        let (d8, b8) = batch(81);
        records.push(Record::Proposal {
            view: 2,
            slot: 8,
            digest: d8,
            batch: b8,
        });
        records.push(Record::Stable { cert: cert(5) });
        let want = Durable::from_records(records.clone());
        {
            let (storage, rec) = Storage::open(&path).unwrap();
            let (d, fresh) = durable_from_disk(rec, &path).unwrap();
            assert!(fresh);
            let mut j = SmrJournal::new(d, fresh);
            for chunk in records.chunks(5) {
                for r in chunk {
                    j.record(r.clone());
                }
                storage.commit(j.flush()).unwrap();
            }
        }
        let (_, rec) = Storage::open(&path).unwrap();
        assert!(rec.log.iter().all(|(s, _)| *s > 5), "{:?}", rec.log);
        let votes: Vec<&String> = rec
            .meta
            .keys()
            .filter(|k| k.starts_with(VOTES_PREFIX))
            .collect();
        assert_eq!(votes.len(), 3, "{votes:?}");
        let (got, fresh) = durable_from_disk(rec, &path).unwrap();
        assert!(!fresh);
        assert_eq!(got, want);
        assert_eq!((got.view, got.changing, got.low()), (1, Some(2), 5));
        let s8 = &got.slots[&8];
        assert_eq!(s8.votes.prepared.map(|p| p.0), Some(1));
        assert_eq!(s8.votes.proposal, Some((2, d8)));
        assert_eq!(s8.values.len(), 2);
    }

    #[test]
    fn an_old_decided_log_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replica.redb");
        let (storage, _) = Storage::open(&path).unwrap();
        storage.append(1, b"an old batch").unwrap();
        let rec = storage.recover().unwrap();
        let e = durable_from_disk(rec, &path).unwrap_err().to_string();
        assert!(
            e.contains("older byzscale") && e.contains("replica.redb"),
            "{e}"
        );
    }
}
