//! AT2 as real processes over TCP: `byzscale node` for an AT2 node file (with
//! its HTTP API), the [`At2Client`] library and the AT2 commands of
//! `byzscale client`, and `byzscale cluster --protocol at2` (a transfer
//! workload and a check of every node's ledger).
//!
//! # Paper mapping (Guerraoui et al., AT2, PODC 2019)
//!
//! | paper | here |
//! |---|---|
//! | asset transfer on a secure (Byzantine reliable) broadcast, no consensus | [`at2::Node`]`<`[`Bracha`]`>` (batching on, Bracha's retransmission on, see `byzscale_at2` and `byzscale_broadcast::bracha`) under the net runtime, wire kind `WireKind::At2` |
//! | each process owns accounts and issues their transfers with sequence numbers | the genesis follows from the deployment: with N nodes (in deployment order) and A accounts per node, node i owns accounts i, i+N, …, i+(A−1)N, each with the same initial balance ([`genesis`]) |
//! | clients of an owner | [`At2Client`] over the authenticated transport, and HTTP on each node's `http_addr` |
//!
//! Custody: a node holds the key that signs its accounts' transfers (its node
//! key), so a transfer from account a must be sent to a's owner node; other
//! nodes refuse it and name the owner. Nodes do not authenticate end users
//! (see `byzscale_at2::node`).
//!
//! Clients:
//! - TCP (`byzscale client`, the load generators): an authenticated transport
//!   client sending [`at2::node::Message::Request`] to the owner node;
//! - HTTP on each node's `http_addr`: `POST /transfer {"from","to","amount"}`
//!   (answers once the transfer is applied at that node), `GET
//!   /balance/{account}`, `GET /history/{account}`; errors are JSON
//!   `{"error": "..."}` with 400 (bad input, unknown account), 403 (not the
//!   owner; the answer names the owner node and its HTTP address), 409
//!   (insufficient funds), 503 (busy or stopping).
//!
//! Durability: the node's AT2 process emits records (its broadcasts, echoes,
//! readies and deliveries, durable before what they let out, and a
//! checkpoint of the ledger every [`CHECKPOINT_EVERY`] deliveries; see
//! `byzscale_at2::durable`); [`At2Journal`] writes them to the node's redb
//! store through the group-commit persister, and a restart recovers the
//! process from it (same sequence numbers, same votes, the ledger), then
//! catches up on what it missed from its peers (Bracha's fetch and vouches).
//!
//! Limitations: a node more than its peers keep (`retain`, 64 MiB of
//! payloads) behind cannot catch up (no ledger state transfer); Contagion is
//! not selectable for real nodes (it has no retransmission yet).

use crate::calls::{CallError, Calls, Pending};
use crate::cluster::{ClusterOutcome, ClusterSpec};
use crate::daemon::serve_outputs;
use crate::launcher::{Local, LocalSpec};
use crate::load::{check_load, ms, Load, LoadResult, LoadSpec, LoadSummary};
use crate::node_file::{At2Settings, LoadedNode, NodeProtocol};
use crate::persist::{self, Journal, Persister};
use anyhow::{anyhow, bail, Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use byzscale_at2::{
    self as at2, Account, At2, ClientOp, ClientReply, Genesis, ServiceError, Transfer, TransferMsg,
};
use byzscale_broadcast::{bracha, Bracha, NoTimer};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::protocol::{Cx, Protocol, MILLIS};
use byzscale_core::{codec, Addr, NodeId, WireKind};
use byzscale_net::{NodeConfig, Recovered, Registry, Runtime, RuntimeHandle};
use rand::Rng;
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The nodes of an AT2 deployment, in deployment order.
pub fn members(dep: &Deployment) -> Vec<NodeId> {
    dep.groups
        .iter()
        .flat_map(|g| g.replicas.iter().map(|r| r.id))
        .collect()
}

/// The genesis of a deployment (see the module docs).
pub fn genesis(members: &[NodeId], s: &At2Settings) -> Genesis {
    let n = members.len() as u32;
    let mut g = Genesis::new();
    for j in 0..s.accounts_per_node {
        for (i, m) in members.iter().enumerate() {
            g.add(Account(j * n + i as u32), *m, s.initial_balance);
        }
    }
    g
}

fn check_settings(s: &At2Settings, n: usize) -> Result<()> {
    if s.accounts_per_node == 0 {
        bail!("[at2] accounts_per_node must be at least 1");
    }
    if s.max_batch == 0 || s.max_batch > byzscale_at2::ledger::MAX_BATCH {
        bail!(
            "[at2] max_batch must be between 1 and {}",
            byzscale_at2::ledger::MAX_BATCH
        );
    }
    if (s.accounts_per_node as u64).saturating_mul(n as u64) > u32::MAX as u64 {
        bail!("[at2] too many accounts");
    }
    Ok(())
}

/// Parse an account: `3` or `a3`.
pub fn parse_account(s: &str) -> Result<Account> {
    let digits = s.strip_prefix('a').unwrap_or(s);
    digits
        .parse::<u32>()
        .map(Account)
        .map_err(|_| anyhow!("`{s}` is not an account (expected a number such as 3 or a3)"))
}

/// The owner node of `a` (account a is owned by node a mod N).
fn owner_of(members: &[NodeId], a: Account) -> NodeId {
    members[a.0 as usize % members.len()]
}

// ---------------------------------------------------------------- disk

/// A checkpoint of the ledger every this many deliveries.
pub const CHECKPOINT_EVERY: u64 = 1024;

const FORMAT_KEY: &str = "at2/format";
const FORMAT: &[u8] = b"1";
const NEXT_SEQ_KEY: &str = "at2/next_seq";
const OPEN_PREFIX: &str = "at2/open/";

fn open_key(source: NodeId, seq: u64) -> String {
    format!("{OPEN_PREFIX}{:010}/{seq:020}", source.0)
}

type At2Record = at2::Record<bracha::Record<TransferMsg>>;

/// An AT2 process's records as rows of its store: the next own broadcast
/// number and each open instance's votes as meta rows, each delivery as a
/// log row under its index, each checkpoint as the snapshot (the log rows
/// more than `LOG_KEEP` below it go in the same transaction).
pub(crate) struct At2Journal {
    d: at2::Durable,
    fresh: bool,
    next_seq: bool,
    open: BTreeSet<(NodeId, u64)>,
    logged: Vec<u64>,
    checkpoint: Option<u64>,
}

impl At2Journal {
    fn new(mut d: at2::Durable, fresh: bool) -> Self {
        d.log.clear(); // on disk already
        At2Journal {
            d,
            fresh,
            next_seq: false,
            open: BTreeSet::new(),
            logged: Vec::new(),
            checkpoint: None,
        }
    }
}

impl Journal for At2Journal {
    type Record = At2Record;

    fn record(&mut self, r: At2Record) {
        use bracha::durable::Change as B;
        let before = self.d.bcast.next_seq;
        match self.d.apply(r) {
            at2::durable::Change::Bcast(B::Open(source, seq)) => {
                self.open.insert((source, seq));
            }
            at2::durable::Change::Bcast(_) => {}
            at2::durable::Change::Logged(i) => self.logged.push(i),
            at2::durable::Change::Checkpoint { keep_from } => {
                self.checkpoint = Some(keep_from);
            }
        }
        self.next_seq |= self.d.bcast.next_seq != before;
    }

    fn flush(&mut self) -> byzscale_net::Batch {
        let mut b = byzscale_net::Batch::new();
        if std::mem::take(&mut self.fresh) {
            b = b.put_meta(FORMAT_KEY, FORMAT);
        }
        if std::mem::take(&mut self.next_seq) {
            b = b.put_meta(NEXT_SEQ_KEY, codec::to_bytes(&self.d.bcast.next_seq));
        }
        for (source, seq) in std::mem::take(&mut self.open) {
            b = match self.d.bcast.open.get(&(source, seq)) {
                Some(o) => b.put_meta(open_key(source, seq), codec::to_bytes(o)),
                None => b.delete_meta(open_key(source, seq)),
            };
        }
        for i in std::mem::take(&mut self.logged) {
            if let Some((source, seq, signed)) = self.d.log.remove(&i) {
                // the instance is closed: its votes row goes
                b = b
                    .delete_meta(open_key(source, seq))
                    .append(i, codec::to_bytes(&(source, seq, signed)));
            }
        }
        if let Some(keep_from) = self.checkpoint.take() {
            if let Some(c) = &self.d.checkpoint {
                b = b
                    .snapshot(c.deliveries, codec::to_bytes(c))
                    .truncate_below(keep_from);
            }
        }
        b
    }
}

/// Rebuild node `me`'s AT2 fold from its store (`db` names it in errors);
/// also whether the store is new.
pub(crate) fn at2_durable_from_disk(
    me: NodeId,
    rec: Recovered,
    db: &Path,
) -> Result<(at2::Durable, bool)> {
    let mut d = at2::Durable::new(me);
    let Some(format) = rec.meta.get(FORMAT_KEY) else {
        return Ok((d, true));
    };
    persist::check_format(db, "AT2", format, FORMAT)?;
    let decode = |what: &str| format!("decoding {what} in {}", db.display());
    if let Some(v) = rec.meta.get(NEXT_SEQ_KEY) {
        d.bcast.next_seq = codec::from_bytes(v, usize::MAX).with_context(|| decode("next_seq"))?;
    }
    for (k, v) in rec.meta.range(OPEN_PREFIX.to_string()..) {
        let Some(rest) = k.strip_prefix(OPEN_PREFIX) else {
            break;
        };
        let key = rest
            .split_once('/')
            .and_then(|(s, q)| Some((NodeId(s.parse().ok()?), q.parse().ok()?)))
            .ok_or_else(|| anyhow!("bad key {k} in {}", db.display()))?;
        let o: bracha::Opened<TransferMsg> =
            codec::from_bytes(v, usize::MAX).with_context(|| decode(k))?;
        d.bcast.open.insert(key, o);
    }
    if let Some((at, bytes)) = rec.snapshot {
        let c: at2::Checkpoint =
            codec::from_bytes(&bytes, usize::MAX).with_context(|| decode("the checkpoint"))?;
        if c.deliveries != at {
            bail!(
                "{}: the checkpoint of delivery {} is stored as {at}",
                db.display(),
                c.deliveries
            );
        }
        d.bcast.next = c.frontier.clone();
        d.deliveries = c.deliveries;
        d.checkpoint = Some(c);
    }
    let after = d.deliveries;
    for (i, bytes) in rec.log {
        let e: at2::durable::Delivered = codec::from_bytes(&bytes, usize::MAX)
            .with_context(|| decode(&format!("delivery {i}")))?;
        if i > after {
            d.bcast.next.insert(e.0, e.1 + 1);
            d.bcast.open.remove(&(e.0, e.1));
            d.deliveries = d.deliveries.max(i);
        }
        d.log.insert(i, e);
    }
    Ok((d, false))
}

// ---------------------------------------------------------------- node

/// Node `loaded`'s AT2 process: new, or recovered from `durable` (what its
/// store held).
fn recover(
    loaded: &LoadedNode,
    members: &[NodeId],
    settings: &At2Settings,
    genesis: Arc<Genesis>,
    durable: at2::Durable,
    fresh: bool,
) -> Result<At2<Bracha<TransferMsg>>> {
    let me = loaded.me();
    let mut bcfg = bracha::Config::new(members.to_vec()).context("the AT2 group")?;
    bcfg.retransmit = (settings.retransmit_ms > 0).then(|| settings.retransmit_ms * MILLIS);
    bcfg.persist = true;
    let bcfg = Arc::new(bcfg);
    if fresh {
        return Ok(At2::new(Bracha::new(me, bcfg), genesis));
    }
    info!(node = %me, deliveries = durable.deliveries, next_seq = durable.bcast.next_seq,
          open = durable.bcast.open.len(), "recovering the AT2 process from disk");
    let mut crypto = Crypto::new(Addr::Node(me), loaded.identity.clone(), CryptoMode::Real);
    for m in members.iter().filter(|m| **m != me) {
        let (_, rc) = loaded
            .deployment
            .replica(*m)
            .expect("a member of the deployment");
        crypto
            .add_peer(Addr::Node(*m), rc.public_identity()?)
            .map_err(|e| anyhow!("key of node {m}: {e}"))?;
    }
    let limit = at2::node::HISTORY_LIMIT;
    At2::recover(bcfg, genesis, durable, limit, &crypto).map_err(|e| anyhow!(e))
}

/// `byzscale node` for an AT2 node file.
pub(crate) async fn run_node(loaded: LoadedNode) -> Result<()> {
    let me = loaded.me();
    let dep = &loaded.deployment;
    let settings = loaded.file.at2.clone().unwrap_or_default();
    let members = members(dep);
    check_settings(&settings, members.len())?;
    let (_, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let genesis = Arc::new(genesis(&members, &settings));
    let (storage, rec, db) = persist::open(&loaded.file.data_dir)?;
    let (durable, fresh) = at2_durable_from_disk(me, rec, &db)?;
    let at2 = recover(
        &loaded,
        &members,
        &settings,
        genesis.clone(),
        durable.clone(),
        fresh,
    )
    .map_err(|e| anyhow!("recovering from {}: {e}", db.display()))?;
    let at2 = at2
        .with_batching(settings.max_batch, settings.queue_limit)
        .with_checkpoints(CHECKPOINT_EVERY);
    let proto = at2::Node::new(at2, genesis.clone());
    let mut cfg = NodeConfig::replica(dep, me, loaded.identity.clone(), WireKind::At2.byte())?;
    cfg.transport.options.queue_capacity = settings.peer_queue_frames.max(1);
    let registry = Arc::new(Registry::new());
    let pace = Duration::from_millis(loaded.file.persist_interval_ms);
    let journal = At2Journal::new(durable, fresh);
    let (records, persister) = Persister::start(journal, storage, pace, &registry)?;
    let (rt, mut outputs) = Runtime::start_with_records(proto, cfg, None, registry, Some(records))
        .await
        .context("starting the AT2 runtime")?;
    info!(node = %me, addr = %rc.addr, http = ?rc.http_addr, metrics = ?rc.metrics_addr,
        accounts = ?genesis.owned_by(me), "AT2 node running");

    let reg = rt.registry().clone();
    let submitted = reg.counter(
        "byzscale_at2_transfers_submitted_total",
        "Own transfers broadcast",
    );
    let applied = reg.counter(
        "byzscale_at2_transfers_applied_total",
        "Transfers (anyone's) validated and applied here",
    );
    let pending = reg.gauge(
        "byzscale_at2_pending",
        "Delivered transfers waiting for their dependencies",
    );
    let in_flight = reg.gauge(
        "byzscale_at2_in_flight",
        "Own transfers queued or broadcast, not yet applied",
    );
    let waiters = Pending::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http = match &rc.http_addr {
        Some(addr) => {
            let requests = reg.counter("byzscale_at2_http_requests_total", "HTTP API requests");
            let state = Http {
                handle: rt.handle(),
                waiters: waiters.clone(),
                next: Arc::new(AtomicU64::new(1)),
                owners_http: Arc::new(owners_http(dep)),
                requests,
            };
            Some(state.serve(me, addr, stop_rx).await?)
        }
        None => None,
    };
    serve_outputs(me, &mut outputs, |o| match o {
        at2::node::Output::Reply { tag, reply } => waiters.answer(tag, reply),
        at2::node::Output::Progress {
            submitted: s,
            applied: a,
            pending: p,
            in_flight: f,
        } => {
            submitted.add(s);
            applied.add(a);
            pending.set(p as i64);
            in_flight.set(f as i64);
        }
    })
    .await;
    let _ = stop_tx.send(true);
    if let Some(h) = http {
        let _ = h.await;
    }
    // stopping the runtime closes the record channel; the persister then
    // writes what it still holds and ends
    let _ = rt.stop().await;
    persister.finish().await
}

/// Every node's HTTP address.
fn owners_http(dep: &Deployment) -> BTreeMap<NodeId, String> {
    dep.groups
        .iter()
        .flat_map(|g| g.replicas.iter())
        .filter_map(|r| r.http_addr.clone().map(|h| (r.id, h)))
        .collect()
}

// ---------------------------------------------------------------- HTTP API

#[derive(Clone)]
struct Http {
    handle: RuntimeHandle<at2::node::Input>,
    waiters: Pending<ClientReply>,
    next: Arc<AtomicU64>,
    owners_http: Arc<BTreeMap<NodeId, String>>,
    requests: byzscale_net::metrics::Counter,
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

impl Http {
    /// Serve the API on `addr` until `stop`.
    async fn serve(
        self,
        me: NodeId,
        addr: &str,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the HTTP API on {addr}"))?;
        let app = Router::new()
            .route("/transfer", post(http_transfer))
            .route("/balance/{account}", get(http_balance))
            .route("/history/{account}", get(http_history))
            .with_state(self);
        info!(node = %me, %addr, "HTTP API listening");
        Ok(tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = r {
                warn!(error = %e, "HTTP API failed");
            }
        }))
    }

    async fn call(&self, op: ClientOp) -> Result<ClientReply, Response> {
        self.requests.inc();
        let tag = self.next.fetch_add(1, Ordering::Relaxed);
        let rx = self.waiters.wait(tag);
        if self
            .handle
            .submit(at2::node::Input { tag, op })
            .await
            .is_err()
        {
            self.waiters.forget(tag);
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node is stopping",
            ));
        }
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                self.waiters.forget(tag);
                Err(error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "no answer from the AT2 process within 30 s",
                ))
            }
        }
    }

    fn service_error(&self, e: ServiceError) -> Response {
        let status = match &e {
            ServiceError::NotOwner { account, owner } => {
                let http = owner.and_then(|o| self.owners_http.get(&o));
                let body = json!({
                    "error": e.to_string(),
                    "account": account.0,
                    "owner": owner.map(|o| o.0),
                    "owner_http": http,
                });
                return (StatusCode::FORBIDDEN, Json(body)).into_response();
            }
            ServiceError::UnknownAccount(_) | ServiceError::ZeroAmount => StatusCode::BAD_REQUEST,
            ServiceError::InsufficientFunds { .. } => StatusCode::CONFLICT,
            ServiceError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        };
        error(status, e)
    }

    /// The response for `reply` (`ok` renders the expected answers).
    fn respond(
        &self,
        r: Result<ClientReply, Response>,
        ok: impl FnOnce(ClientReply) -> Option<serde_json::Value>,
    ) -> Response {
        match r {
            Err(r) => r,
            Ok(ClientReply::Error(e)) => self.service_error(e),
            Ok(reply) => {
                let text = format!("unexpected reply {reply:?}");
                match ok(reply) {
                    Some(v) => Json(v).into_response(),
                    None => error(StatusCode::INTERNAL_SERVER_ERROR, text),
                }
            }
        }
    }
}

/// A balance as a JSON number (a string if it does not fit in 64 bits).
fn amount_json(b: i128) -> serde_json::Value {
    if let Ok(v) = i64::try_from(b) {
        v.into()
    } else if let Ok(v) = u64::try_from(b) {
        v.into()
    } else {
        b.to_string().into()
    }
}

fn transfer_json(t: &Transfer) -> serde_json::Value {
    json!({
        "id": format!("{:?}", t.id()),
        "issuer": t.issuer.0,
        "seq": t.seq,
        "from": t.from.0,
        "to": t.to.0,
        "amount": t.amount,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    from: u32,
    to: u32,
    amount: u64,
}

/// The (from, to, amount) of a `POST /transfer` body, or the error text for
/// a 400 (axum bounds the body at 2 MB before this).
pub fn parse_transfer_body(body: &[u8]) -> Result<(Account, Account, u64), String> {
    let req: TransferRequest = serde_json::from_slice(body).map_err(|e| {
        format!("expected a JSON body {{\"from\": account, \"to\": account, \"amount\": n}}: {e}")
    })?;
    Ok((Account(req.from), Account(req.to), req.amount))
}

async fn http_transfer(State(h): State<Http>, body: axum::body::Bytes) -> Response {
    let (from, to, amount) = match parse_transfer_body(&body) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let r = h.call(ClientOp::Transfer { from, to, amount }).await;
    h.respond(r, |reply| match reply {
        ClientReply::Transferred(id) => Some(json!({
            "id": format!("{id:?}"),
            "issuer": id.issuer.0,
            "seq": id.seq,
            "from": from.0,
            "to": to.0,
            "amount": amount,
        })),
        _ => None,
    })
}

async fn http_read(h: Http, account: String, history: bool) -> Response {
    let account = match parse_account(&account) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let op = if history {
        ClientOp::History(account)
    } else {
        ClientOp::Balance(account)
    };
    let r = h.call(op).await;
    h.respond(r, |reply| match reply {
        ClientReply::Balance { account, balance } => {
            Some(json!({ "account": account.0, "balance": amount_json(balance) }))
        }
        ClientReply::History {
            account,
            total,
            transfers,
        } => Some(json!({
            "account": account.0,
            "total": total,
            "transfers": transfers.iter().map(transfer_json).collect::<Vec<_>>(),
        })),
        _ => None,
    })
}

async fn http_balance(State(h): State<Http>, UrlPath(account): UrlPath<String>) -> Response {
    http_read(h, account, false).await
}

async fn http_history(State(h): State<Http>, UrlPath(account): UrlPath<String>) -> Response {
    http_read(h, account, true).await
}

// ---------------------------------------------------------------- TCP client

/// The client side of [`at2::node::Message`]: requests out to a node, replies back.
pub struct ClientProto;

type Wire = at2::node::Message<bracha::Message<TransferMsg>>;

impl Protocol for ClientProto {
    type Message = Wire;
    type Input = (NodeId, u64, ClientOp);
    type Output = (u64, ClientReply);
    type Timer = NoTimer;
    type Record = byzscale_core::NoRecord;

    fn on_input(&mut self, (node, id, op): Self::Input, cx: &mut Cx<'_, Self>) {
        cx.send(node, at2::node::Message::Request { id, op });
    }

    fn on_message(&mut self, from: Addr, msg: Wire, cx: &mut Cx<'_, Self>) {
        match msg {
            at2::node::Message::Reply { id, reply } => cx.output((id, reply)),
            _ => cx.fault(from, at2::Fault::ClientUnexpected, "not a reply"),
        }
    }

    fn on_timer(&mut self, timer: NoTimer, _cx: &mut Cx<'_, Self>) {
        match timer {}
    }
}

/// An AT2 client over the authenticated TCP transport; many callers share
/// one connection set. A transfer must go to its account's owner node.
pub struct At2Client {
    calls: Calls<ClientProto, ClientReply>,
}

impl At2Client {
    /// Connect a fresh client identity to every node of `dep`.
    pub async fn connect(dep: &Deployment) -> Result<Self> {
        let calls = Calls::start(
            dep,
            WireKind::At2,
            false,
            crate::calls::UNWINDOWED_LIMIT,
            |_| ClientProto,
            Some,
        )
        .await?;
        Ok(At2Client { calls })
    }

    /// Send `op` to `node` and wait for its reply (no retries: a lost request
    /// or reply shows as a timeout).
    pub async fn call(&self, node: NodeId, op: ClientOp, timeout: Duration) -> Result<ClientReply> {
        match self.calls.call(|n| (node, n, op), Some(timeout)).await {
            Ok(r) => Ok(r),
            Err(CallError::Timeout(t)) => {
                bail!("no reply from node {} within {} s", node.0, t.as_secs_f64())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stop the client (calls still waiting fail).
    pub async fn stop(&self) {
        self.calls.stop().await;
    }
}

/// Whether `command` is an AT2 client command (`transfer`, `balance`, `history`).
pub fn is_at2_command(command: &[String]) -> bool {
    matches!(
        command.first().map(|c| c.to_ascii_lowercase()).as_deref(),
        Some("transfer" | "balance" | "history")
    )
}

/// The owner node of the command `words` and its operation.
fn parse_command(members: &[NodeId], words: &[String]) -> Result<(NodeId, ClientOp)> {
    let word = words[0].to_ascii_lowercase();
    let args = &words[1..];
    Ok(match (word.as_str(), args) {
        ("transfer", [from, to, amount]) => {
            let from = parse_account(from)?;
            let to = parse_account(to)?;
            let amount: u64 = amount
                .parse()
                .map_err(|_| anyhow!("`{amount}` is not an amount (a non-negative integer)"))?;
            (
                owner_of(members, from),
                ClientOp::Transfer { from, to, amount },
            )
        }
        ("balance", [a]) => {
            let a = parse_account(a)?;
            (owner_of(members, a), ClientOp::Balance(a))
        }
        ("history", [a]) => {
            let a = parse_account(a)?;
            (owner_of(members, a), ClientOp::History(a))
        }
        ("transfer", _) => bail!("usage: transfer FROM TO AMOUNT"),
        (w, _) => bail!("usage: {w} ACCOUNT"),
    })
}

/// `byzscale client` with an AT2 command (`transfer`, `balance`, `history`)
/// against `dep` (read from `config`).
pub(crate) async fn client_command(
    dep: &Deployment,
    config: &std::path::Path,
    words: &[String],
) -> Result<String> {
    let members = members(dep);
    if members.is_empty() {
        bail!("{} lists no nodes", config.display());
    }
    let (node, op) = parse_command(&members, words)?;
    let c = At2Client::connect(dep).await?;
    let r = c.call(node, op.clone(), Duration::from_secs(15)).await;
    c.stop().await;
    Ok(match r? {
        ClientReply::Transferred(id) => match op {
            ClientOp::Transfer { from, to, amount } => {
                format!("transferred {amount} from {from} to {to}: {id:?}\n")
            }
            _ => String::new(),
        },
        ClientReply::Balance { account, balance } => format!("{account}: {balance}\n"),
        ClientReply::History {
            account,
            total,
            transfers,
        } => {
            let noun = if total == 1 { "transfer" } else { "transfers" };
            let mut out = format!(
                "{account}: {total} {noun} (the last {} shown)\n",
                transfers.len()
            );
            for t in transfers {
                out += &format!("  {:?}  {} -> {}  {}\n", t.id(), t.from, t.to, t.amount);
            }
            out
        }
        ClientReply::Error(e) => bail!("{e}"),
    })
}

// ---------------------------------------------------------------- cluster

/// What `byzscale cluster --protocol at2` (and the SMR bank it is compared
/// with) reports.
#[derive(Serialize, Clone)]
pub struct At2Report {
    pub protocol: &'static str,
    pub nodes: usize,
    pub clients: usize,
    pub duration_s: f64,
    pub throughput_ops: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub committed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub supply_conserved: bool,
    pub balances_agree: bool,
    pub supply: u128,
    /// The generated files (empty in `bench-at2`'s results).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dir: String,
    #[serde(flatten)]
    pub load: LoadSummary,
}

impl At2Report {
    /// The report of `protocol` on `run`, with what `load` measured.
    pub(crate) fn new(protocol: &'static str, run: &TransferRun, load: &LoadResult) -> Self {
        At2Report {
            protocol,
            nodes: run.nodes,
            clients: run.clients,
            duration_s: run.duration,
            throughput_ops: load.throughput(load.committed),
            p50_ms: ms(&load.hist, 0.5),
            p99_ms: ms(&load.hist, 0.99),
            committed: load.committed,
            errors: load.errors,
            first_error: load.first_error.clone(),
            supply_conserved: false,
            balances_agree: false,
            supply: 0,
            dir: String::new(),
            load: load.summary(),
        }
    }
}

/// A local transfer run: `nodes` processes and `clients` closed-loop
/// workers, each spending 1 unit from the account of node `worker mod N` to
/// a random other account for `duration` seconds.
#[derive(Clone, Debug)]
pub struct TransferRun {
    pub nodes: usize,
    pub clients: usize,
    pub duration: f64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    pub dir: Option<PathBuf>,
    pub keep: bool,
}

impl TransferRun {
    /// Check the run's numbers.
    pub fn check(&self) -> Result<()> {
        if self.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        check_load(self.clients, self.duration)
    }

    pub(crate) fn load(&self) -> LoadSpec {
        LoadSpec::closed_loop(self.clients, self.duration)
    }

    /// The receiver of worker `w`'s next transfer from account `from`, drawn
    /// from `rng`: any other account of the `n`.
    pub(crate) fn receiver(from: u64, n: u64, rng: &mut rand::rngs::StdRng) -> u64 {
        let r: u64 = rng.gen();
        if n > 1 {
            (from + 1 + r % (n - 1)) % n
        } else {
            from
        }
    }
}

/// TCP connections for `workers` closed-loop workers: a node queues at most
/// `client_queue_capacity` (256) frames per client and drops the oldest, so
/// a connection carries at most 128 outstanding requests.
fn connections(workers: usize) -> usize {
    workers.div_ceil(128).clamp(1, 64)
}

/// Closed-loop transfers of 1 unit: worker w spends from the account of node
/// w mod N, to a random other account.
async fn at2_load(dep: &Deployment, run: &TransferRun) -> Result<LoadResult> {
    let members = Arc::new(members(dep));
    let n = members.len() as u64;
    let mut clients = Vec::new();
    for _ in 0..connections(run.clients) {
        clients.push(Arc::new(At2Client::connect(dep).await?));
    }
    let cs = clients.clone();
    let out = Load::run(&run.load(), run.progress, move |w, rng| {
        let c = cs[w % cs.len()].clone();
        let from = w as u64 % n;
        let to = TransferRun::receiver(from, n, rng);
        let node = members[from as usize];
        (0, async move {
            let op = ClientOp::Transfer {
                from: Account(from as u32),
                to: Account(to as u32),
                amount: 1,
            };
            match c.call(node, op, Duration::from_secs(10)).await? {
                ClientReply::Transferred(_) => Ok(()),
                ClientReply::Error(e) => Err(anyhow!("{e}")),
                other => Err(anyhow!("unexpected reply {other:?}")),
            }
        })
    })
    .await;
    for c in &clients {
        c.stop().await;
    }
    Ok(out)
}

/// Every node's balances of every genesis account, polled until they agree
/// (or `wait` passes). Returns the balances per node and whether they agree.
async fn collect_balances(
    dep: &Deployment,
    settings: &At2Settings,
    wait: Duration,
) -> Result<(BTreeMap<NodeId, Vec<i128>>, bool)> {
    let members = members(dep);
    let accounts: Vec<Account> = genesis(&members, settings).accounts().collect();
    let c = At2Client::connect(dep).await?;
    let deadline = Instant::now() + wait;
    let result = loop {
        let mut all = BTreeMap::new();
        for m in &members {
            let mut v = Vec::new();
            for a in &accounts {
                match c
                    .call(*m, ClientOp::Balance(*a), Duration::from_secs(5))
                    .await?
                {
                    ClientReply::Balance { balance, .. } => v.push(balance),
                    other => bail!("node {} answered {other:?} to a balance read", m.0),
                }
            }
            all.insert(*m, v);
        }
        let agree = all.values().all(|v| Some(v) == all.values().next());
        if agree || Instant::now() > deadline {
            break (all, agree);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.stop().await;
    Ok(result)
}

/// Start the AT2 nodes of `run`, run the transfer load, check the ledgers.
pub async fn run(run: &TransferRun) -> Result<(At2Report, Local)> {
    run.check()?;
    let groups = [(run.nodes, (run.nodes - 1) / 3)];
    let spec = LocalSpec {
        groups: &groups,
        protocol: NodeProtocol::At2,
        dir: run.dir.clone(),
        keep: run.keep,
        netns: None,
    };
    let local = Local::start(spec, |_| {}).await?;
    let settings = At2Settings::default();
    let outcome = if run.duration > 0.0 {
        at2_load(&local.dep, run).await?
    } else {
        LoadResult::empty()
    };
    let (balances, agree) =
        collect_balances(&local.dep, &settings, Duration::from_secs(10)).await?;
    let supply = genesis(&members(&local.dep), &settings).supply();
    let conserved = balances
        .values()
        .all(|v| v.iter().sum::<i128>() == supply as i128);
    let report = At2Report {
        supply_conserved: conserved,
        balances_agree: agree,
        supply,
        dir: local.dir_label(),
        ..At2Report::new("at2", run, &outcome)
    };
    Ok((report, local))
}

/// `byzscale cluster --protocol at2`.
pub(crate) async fn cluster(a: &ClusterSpec) -> Result<ClusterOutcome> {
    let spec = TransferRun {
        nodes: a.nodes,
        clients: a.clients,
        duration: a.duration,
        progress: a.progress,
        dir: a.dir.clone(),
        keep: a.keep,
    };
    let (report, local) = run(&spec).await?;
    let endpoints = a.keep.then(|| {
        let p = &local.ports;
        local.endpoints(json!({
            "http": (0..a.nodes).map(|i| format!("http://{}", p.http(i))).collect::<Vec<_>>(),
            "nodes": (0..a.nodes).map(|i| p.replica(i)).collect::<Vec<_>>(),
        }))
    });
    let failure = (!report.supply_conserved || !report.balances_agree).then(|| {
        format!(
            "ledger check failed: supply conserved {}, balances agree {}",
            report.supply_conserved, report.balances_agree
        )
    });
    Ok(ClusterOutcome::new(&report, table(&report), endpoints, local)?.failing(failure))
}

fn table(r: &At2Report) -> String {
    let mut t = format!(
        "byzscale cluster --protocol at2: {} nodes, {} clients, {:.1} s\n",
        r.nodes, r.clients, r.duration_s
    );
    t += &format!(
        "  throughput   {:>10.0} transfers/s over {:.1} s\n",
        r.throughput_ops, r.load.window_s
    );
    t += &format!(
        "  latency      p50 {:.2} ms   p99 {:.2} ms\n",
        r.p50_ms, r.p99_ms
    );
    t += &format!(
        "  committed    {:>10}   errors {}   in flight at the end {}\n",
        r.committed, r.errors, r.load.in_flight_at_end
    );
    if let Some(e) = &r.first_error {
        t += &format!("  first error  {e}\n");
    }
    t += &format!(
        "  ledgers      supply {} conserved: {}   balances agree at every node: {}\n",
        r.supply, r.supply_conserved, r.balances_agree
    );
    t + &format!("  files        {}\n", r.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_bodies() {
        assert_eq!(
            parse_transfer_body(br#"{"from": 1, "to": 2, "amount": 30}"#),
            Ok((Account(1), Account(2), 30))
        );
        for bad in [
            &br#"{"from": 1, "to": 2}"#[..],
            br#"{"from": 1, "to": 2, "amount": -3}"#,
            br#"{"from": 1, "to": 2, "amount": 3, "memo": "x"}"#,
            br#"{"from": 4294967296, "to": 2, "amount": 3}"#,
            b"\xff",
            b"",
        ] {
            let e = parse_transfer_body(bad).unwrap_err();
            assert!(e.starts_with("expected a JSON body"), "{e}");
        }
        assert_eq!(parse_account("a7").unwrap(), Account(7));
        assert!(parse_account("a-1").is_err() && parse_account("").is_err());
    }
}
