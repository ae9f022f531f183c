//! AT2 as real processes over TCP: `byzscale node` for an AT2 node file,
//! `byzscale cluster --protocol at2`, the AT2 commands of `byzscale client`,
//! and `byzscale bench-at2` (AT2 against a bank ordered by the SMR core).
//!
//! A node runs [`at2::Node`]`<`[`Bracha`]`>` (batching on, Bracha's
//! retransmission on, see `byzscale_at2` and `byzscale_broadcast::bracha`)
//! under the net runtime, with wire kind [`AT2_KIND`]. Its genesis follows
//! from the deployment: with N nodes (in deployment order) and A accounts per
//! node, node i owns accounts i, i+N, …, i+(A−1)N, each with the same
//! initial balance.
//!
//! Custody: a node holds the key that signs its accounts' transfers (its node
//! key), so a transfer from account a must be sent to a's owner node; other
//! nodes refuse it and name the owner. Nodes do not authenticate end users
//! (see `byzscale_at2::service`).
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
//! Limitations: no persistence (a restarted node must not rejoin: it would
//! reuse sequence numbers); Contagion is not selectable for real nodes (it
//! has no retransmission yet).

use crate::cluster::{ClusterArgs, Local};
use crate::deploy::{self, At2Settings, LoadedNode, NodeProtocol, SmrService, AT2_KIND};
use crate::smr_client::SmrClient;
use anyhow::{anyhow, bail, Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use byzscale_apps::bank::{Bank, BankOp, BankReply};
use byzscale_at2::{
    self as at2, Account, At2, ClientOp, ClientReply, Genesis, ServiceError, Transfer, TransferMsg,
};
use byzscale_broadcast::{bracha, Bracha, NoTimer};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::Identity;
use byzscale_core::protocol::{Cx, Protocol, MILLIS};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_net::{NodeConfig, Runtime, RuntimeHandle};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
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

// ---------------------------------------------------------------- node

type Waiters = Arc<Mutex<BTreeMap<u64, oneshot::Sender<ClientReply>>>>;

pub async fn node(loaded: LoadedNode) -> Result<()> {
    let me = NodeId(loaded.file.node);
    let dep = loaded.deployment.clone();
    let settings = loaded.file.at2.clone().unwrap_or_default();
    let members = members(&dep);
    check_settings(&settings, members.len())?;
    let (_, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let mut bcfg = bracha::Config::new(members.clone()).context("the AT2 group")?;
    bcfg.retransmit = (settings.retransmit_ms > 0).then(|| settings.retransmit_ms * MILLIS);
    let genesis = Arc::new(genesis(&members, &settings));
    let at2 = At2::new(Bracha::new(me, Arc::new(bcfg)), genesis.clone())
        .with_batching(settings.max_batch, settings.queue_limit);
    let proto = at2::Node::new(at2, genesis.clone());
    let mut cfg = NodeConfig::replica(&dep, me, loaded.identity.clone(), AT2_KIND)?;
    cfg.transport.options.queue_capacity = settings.peer_queue_frames.max(1);
    let (rt, mut outputs) = Runtime::start(proto, cfg)
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
    let http_requests = reg.counter("byzscale_at2_http_requests_total", "HTTP API requests");

    let waiters: Waiters = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http = None;
    if let Some(addr) = &rc.http_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the HTTP API on {addr}"))?;
        let owners_http = dep
            .groups
            .iter()
            .flat_map(|g| g.replicas.iter())
            .filter_map(|r| r.http_addr.clone().map(|h| (r.id, h)))
            .collect();
        let state = Http {
            handle: rt.handle(),
            waiters: waiters.clone(),
            next: Arc::new(AtomicU64::new(1)),
            owners_http: Arc::new(owners_http),
            requests: http_requests,
        };
        let app = Router::new()
            .route("/transfer", post(http_transfer))
            .route("/balance/{account}", get(http_balance))
            .route("/history/{account}", get(http_history))
            .with_state(state);
        let mut stop = stop_rx.clone();
        info!(node = %me, %addr, "HTTP API listening");
        http = Some(tokio::spawn(async move {
            let r = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = r {
                warn!(error = %e, "HTTP API failed");
            }
        }));
    }

    let mut stop = Box::pin(crate::node::shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            o = outputs.recv() => {
                let Some(o) = o else { break };
                match o {
                    at2::node::Output::Reply { tag, reply } => {
                        if let Some(tx) = waiters.lock().expect("waiters lock").remove(&tag) {
                            let _ = tx.send(reply);
                        }
                    }
                    at2::node::Output::Progress { submitted: s, applied: a, pending: p, in_flight: f } => {
                        submitted.add(s);
                        applied.add(a);
                        pending.set(p as i64);
                        in_flight.set(f as i64);
                    }
                }
            }
        }
    }
    info!(node = %me, "shutting down");
    let _ = stop_tx.send(true);
    if let Some(h) = http {
        let _ = h.await;
    }
    let _ = rt.stop().await;
    Ok(())
}

#[derive(Clone)]
struct Http {
    handle: RuntimeHandle<at2::node::Input>,
    waiters: Waiters,
    next: Arc<AtomicU64>,
    owners_http: Arc<BTreeMap<NodeId, String>>,
    requests: byzscale_net::metrics::Counter,
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

impl Http {
    async fn call(&self, op: ClientOp) -> Result<ClientReply, Response> {
        self.requests.inc();
        let tag = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(tag, tx);
        if self
            .handle
            .submit(at2::node::Input { tag, op })
            .await
            .is_err()
        {
            self.waiters.lock().expect("waiters lock").remove(&tag);
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the node is stopping",
            ));
        }
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                self.waiters.lock().expect("waiters lock").remove(&tag);
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

async fn http_transfer(State(h): State<Http>, body: axum::body::Bytes) -> Response {
    let req: TransferRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                "expected a JSON body {{\"from\": account, \"to\": account, \"amount\": n}}: {e}"
            ),
            )
        }
    };
    let op = ClientOp::Transfer {
        from: Account(req.from),
        to: Account(req.to),
        amount: req.amount,
    };
    match h.call(op).await {
        Err(r) => r,
        Ok(ClientReply::Transferred(id)) => Json(json!({
            "id": format!("{id:?}"),
            "issuer": id.issuer.0,
            "seq": id.seq,
            "from": req.from,
            "to": req.to,
            "amount": req.amount,
        }))
        .into_response(),
        Ok(ClientReply::Error(e)) => h.service_error(e),
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected reply {other:?}"),
        ),
    }
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
    match h.call(op).await {
        Err(r) => r,
        Ok(ClientReply::Balance { account, balance }) => {
            Json(json!({ "account": account.0, "balance": amount_json(balance) })).into_response()
        }
        Ok(ClientReply::History {
            account,
            total,
            transfers,
        }) => Json(json!({
            "account": account.0,
            "total": total,
            "transfers": transfers.iter().map(transfer_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(ClientReply::Error(e)) => h.service_error(e),
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected reply {other:?}"),
        ),
    }
}

async fn http_balance(State(h): State<Http>, UrlPath(account): UrlPath<String>) -> Response {
    http_read(h, account, false).await
}

async fn http_history(State(h): State<Http>, UrlPath(account): UrlPath<String>) -> Response {
    http_read(h, account, true).await
}

// ---------------------------------------------------------------- TCP client

/// The client side of [`at2::node::Message`]: requests out to a node, replies back.
struct ClientProto;

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
/// one connection set.
pub struct At2Client {
    handle: RuntimeHandle<(NodeId, u64, ClientOp)>,
    next: AtomicU64,
    waiters: Waiters,
    runtime: Mutex<Option<Runtime<ClientProto>>>,
}

impl At2Client {
    /// Connect a fresh client identity to every node of `dep`.
    pub async fn connect(dep: &Deployment) -> Result<Self> {
        let id = ClientId(rand::thread_rng().gen_range(1..ClientId::REPLICA_BASE));
        let cfg = NodeConfig::client(dep, id, Identity::generate(), AT2_KIND)?;
        let (rt, mut outputs) = Runtime::start(ClientProto, cfg)
            .await
            .context("starting the AT2 client runtime")?;
        let waiters: Waiters = Arc::default();
        let w = waiters.clone();
        tokio::spawn(async move {
            while let Some((id, reply)) = outputs.recv().await {
                if let Some(tx) = w.lock().expect("waiters lock").remove(&id) {
                    let _ = tx.send(reply);
                }
            }
        });
        Ok(At2Client {
            handle: rt.handle(),
            next: AtomicU64::new(1),
            waiters,
            runtime: Mutex::new(Some(rt)),
        })
    }

    /// Send `op` to `node` and wait for its reply (no retries: a lost request
    /// or reply shows as a timeout).
    pub async fn call(&self, node: NodeId, op: ClientOp, timeout: Duration) -> Result<ClientReply> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters lock").insert(id, tx);
        if self.handle.submit((node, id, op)).await.is_err() {
            self.waiters.lock().expect("waiters lock").remove(&id);
            bail!("client stopped");
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            _ => {
                self.waiters.lock().expect("waiters lock").remove(&id);
                bail!(
                    "no reply from node {} within {} s",
                    node.0,
                    timeout.as_secs_f64()
                )
            }
        }
    }

    pub async fn stop(&self) {
        let rt = self.runtime.lock().expect("runtime lock").take();
        if let Some(rt) = rt {
            let _ = rt.stop().await;
        }
    }
}

/// The owner node of `a` (account a is owned by node a mod N).
fn owner_of(members: &[NodeId], a: Account) -> NodeId {
    members[a.0 as usize % members.len()]
}

// ---------------------------------------------------------------- CLI client

/// Whether `command` is an AT2 client command (`transfer`, `balance`, `history`).
pub fn is_at2_command(command: &[String]) -> bool {
    matches!(
        command.first().map(|c| c.to_ascii_lowercase()).as_deref(),
        Some("transfer" | "balance" | "history")
    )
}

pub async fn client(config: &Path, command: &[String]) -> Result<()> {
    let dep = match deploy::load_deployment(config) {
        Ok(d) => d,
        Err(_) => deploy::NodeFile::load(config)?.deployment,
    };
    let members = members(&dep);
    if members.is_empty() {
        bail!("{} lists no nodes", config.display());
    }
    let word = command[0].to_ascii_lowercase();
    let args = &command[1..];
    let (node, op) = match (word.as_str(), args) {
        ("transfer", [from, to, amount]) => {
            let from = parse_account(from)?;
            let to = parse_account(to)?;
            let amount: u64 = amount
                .parse()
                .map_err(|_| anyhow!("`{amount}` is not an amount (a non-negative integer)"))?;
            (
                owner_of(&members, from),
                ClientOp::Transfer { from, to, amount },
            )
        }
        ("balance", [a]) => {
            let a = parse_account(a)?;
            (owner_of(&members, a), ClientOp::Balance(a))
        }
        ("history", [a]) => {
            let a = parse_account(a)?;
            (owner_of(&members, a), ClientOp::History(a))
        }
        ("transfer", _) => bail!("usage: transfer FROM TO AMOUNT"),
        (w, _) => bail!("usage: {w} ACCOUNT"),
    };
    let c = At2Client::connect(&dep).await?;
    let r = c.call(node, op.clone(), Duration::from_secs(15)).await;
    c.stop().await;
    match r? {
        ClientReply::Transferred(id) => {
            if let ClientOp::Transfer { from, to, amount } = op {
                println!("transferred {amount} from {from} to {to}: {id:?}");
            }
        }
        ClientReply::Balance { account, balance } => println!("{account}: {balance}"),
        ClientReply::History {
            account,
            total,
            transfers,
        } => {
            let noun = if total == 1 { "transfer" } else { "transfers" };
            println!(
                "{account}: {total} {noun} (the last {} shown)",
                transfers.len()
            );
            for t in transfers {
                println!("  {:?}  {} -> {}  {}", t.id(), t.from, t.to, t.amount);
            }
        }
        ClientReply::Error(e) => bail!("{e}"),
    }
    Ok(())
}

// ---------------------------------------------------------------- load

/// What a closed-loop run measured.
pub struct Outcome {
    pub hist: Histogram<u64>,
    pub committed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: f64,
}

impl Outcome {
    fn throughput(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.committed as f64 / self.elapsed
        } else {
            0.0
        }
    }
    fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// `workers` closed-loop tasks calling `op(worker, rng)` for `duration`
/// seconds, with a progress bar if `show`.
async fn closed_loop<F, Fut>(workers: usize, duration: f64, show: bool, op: F) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let stop_at = started + Duration::from_secs_f64(duration);
    let committed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (op, committed, errors, first_error) = (
            op.clone(),
            committed.clone(),
            errors.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            while Instant::now() < stop_at {
                let t = Instant::now();
                match op(w, rng.gen()).await {
                    Ok(()) => {
                        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("error lock")
                            .get_or_insert_with(|| e.to_string());
                        // do not spin on a persistent error
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            hist
        }));
    }
    let bar = crate::cluster::progress(show, duration, started, stop_at, &committed, |_| {}).await;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for t in tasks {
        if let Ok(h) = t.await {
            let _ = hist.add(&h);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let first_error = first_error.lock().expect("error lock").clone();
    Outcome {
        hist,
        committed: committed.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error,
        elapsed: duration.min(started.elapsed().as_secs_f64()),
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
async fn at2_load(dep: &Deployment, workers: usize, duration: f64, show: bool) -> Result<Outcome> {
    let members = Arc::new(members(dep));
    let n = members.len();
    let mut clients = Vec::new();
    for _ in 0..connections(workers) {
        clients.push(Arc::new(At2Client::connect(dep).await?));
    }
    let cs = clients.clone();
    let out = closed_loop(workers, duration, show, move |w, r| {
        let c = cs[w % cs.len()].clone();
        let members = members.clone();
        async move {
            let from = (w % n) as u32;
            let to = if n > 1 {
                (from + 1 + (r % (n as u64 - 1)) as u32) % n as u32
            } else {
                from
            };
            let op = ClientOp::Transfer {
                from: Account(from),
                to: Account(to),
                amount: 1,
            };
            match c
                .call(members[from as usize], op, Duration::from_secs(10))
                .await?
            {
                ClientReply::Transferred(_) => Ok(()),
                ClientReply::Error(e) => Err(anyhow!("{e}")),
                other => Err(anyhow!("unexpected reply {other:?}")),
            }
        }
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
}

fn check_args(nodes: usize, clients: usize, duration: f64) -> Result<()> {
    if nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(duration >= 0.0 && duration.is_finite()) {
        bail!("--duration must be a non-negative number of seconds");
    }
    Ok(())
}

/// Start N AT2 nodes, run the transfer load, check the ledgers.
async fn run_at2(
    nodes: usize,
    clients: usize,
    duration: f64,
    show: bool,
    dir: Option<PathBuf>,
    keep: bool,
) -> Result<(At2Report, Local)> {
    let local = crate::cluster::start_local_groups(
        &[(nodes, (nodes - 1) / 3)],
        NodeProtocol::At2,
        dir,
        keep,
    )
    .await?;
    let settings = At2Settings::default();
    let outcome = if duration > 0.0 {
        at2_load(&local.dep, clients, duration, show).await?
    } else {
        Outcome {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            committed: 0,
            errors: 0,
            first_error: None,
            elapsed: 0.0,
        }
    };
    let (balances, agree) =
        collect_balances(&local.dep, &settings, Duration::from_secs(10)).await?;
    let supply = genesis(&members(&local.dep), &settings).supply();
    let conserved = balances
        .values()
        .all(|v| v.iter().sum::<i128>() == supply as i128);
    let report = At2Report {
        protocol: "at2",
        nodes,
        clients,
        duration_s: duration,
        throughput_ops: outcome.throughput(),
        p50_ms: outcome.ms(0.5),
        p99_ms: outcome.ms(0.99),
        committed: outcome.committed,
        errors: outcome.errors,
        first_error: outcome.first_error,
        supply_conserved: conserved,
        balances_agree: agree,
        supply,
        dir: local.dir.display().to_string(),
    };
    Ok((report, local))
}

pub async fn cluster(a: ClusterArgs) -> Result<()> {
    check_args(a.nodes, a.clients, a.duration)?;
    let show = !a.json && std::io::stderr().is_terminal();
    let (report, local) = run_at2(a.nodes, a.clients, a.duration, show, a.dir, a.keep).await?;
    let mut v = serde_json::to_value(&report)?;
    if a.keep {
        let pids: Vec<u32> = local
            .nodes
            .children
            .iter()
            .flatten()
            .map(|c| c.id())
            .collect();
        let endpoints = json!({
            "http": (0..a.nodes).map(|i| format!("http://{}", local.ports.http(i))).collect::<Vec<_>>(),
            "nodes": (0..a.nodes).map(|i| local.ports.replica(i)).collect::<Vec<_>>(),
            "metrics": (0..a.nodes).map(|i| format!("http://{}/metrics", local.ports.metrics(i))).collect::<Vec<_>>(),
            "deployment": local.dir.join("deployment.toml").display().to_string(),
            "pids": pids,
            "stop": format!("kill {}", pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")),
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), endpoints.as_object()) {
            o.extend(e.clone());
        }
        if !a.json {
            print_report(&report);
            println!(
                "cluster left running:\n{}",
                serde_json::to_string_pretty(&endpoints)?
            );
        }
    } else if !a.json {
        print_report(&report);
    }
    if a.json {
        println!("{}", serde_json::to_string(&v)?);
    }
    if !report.supply_conserved || !report.balances_agree {
        bail!(
            "ledger check failed: supply conserved {}, balances agree {}",
            report.supply_conserved,
            report.balances_agree
        );
    }
    Ok(())
}

fn print_report(r: &At2Report) {
    println!(
        "byzscale cluster --protocol at2: {} nodes, {} clients, {:.1} s",
        r.nodes, r.clients, r.duration_s
    );
    println!("  throughput   {:>10.0} transfers/s", r.throughput_ops);
    println!(
        "  latency      p50 {:.2} ms   p99 {:.2} ms",
        r.p50_ms, r.p99_ms
    );
    println!("  committed    {:>10}   errors {}", r.committed, r.errors);
    if let Some(e) = &r.first_error {
        println!("  first error  {e}");
    }
    println!(
        "  ledgers      supply {} conserved: {}   balances agree at every node: {}",
        r.supply, r.supply_conserved, r.balances_agree
    );
    println!("  files        {}", r.dir);
}

// ---------------------------------------------------------------- SMR bank

/// `service = "bank"` SMR node: the SMR replica of the KV node, with the
/// bank as its service, no Redis gateway and no persistence.
pub async fn bank_node(loaded: LoadedNode) -> Result<()> {
    let me = NodeId(loaded.file.node);
    let dep = loaded.deployment.clone();
    let (gc, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let g = byzscale_smr::GroupInfo::new(gc.id, gc.members(), gc.quorum_system()?);
    let replica = byzscale_smr::Replica::new(me, g, loaded.file.smr.clone(), Bank::new());
    let cfg = NodeConfig::replica(&dep, me, loaded.identity.clone(), deploy::SMR_KIND)?;
    let (rt, mut outputs) = Runtime::start(replica, cfg)
        .await
        .context("starting the replica runtime")?;
    info!(node = %me, addr = %rc.addr, "bank replica running (no persistence)");
    let decided = rt
        .registry()
        .counter("byzscale_decided_slots_total", "Slots decided and executed");
    let mut stop = Box::pin(crate::node::shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            o = outputs.recv() => match o {
                None => break,
                Some(byzscale_smr::replica::Output::Decided { .. }) => decided.inc(),
                Some(_) => {}
            }
        }
    }
    let _ = rt.stop().await;
    Ok(())
}

async fn bank_call(c: &SmrClient, op: BankOp) -> Result<BankReply> {
    let ro = op.is_read_only();
    let bytes = tokio::time::timeout(Duration::from_secs(10), c.call(op.encode(), ro))
        .await
        .context("no reply within 10 s")??;
    BankReply::decode(&bytes).map_err(|e| anyhow!("undecodable reply: {e}"))
}

/// The same workload on the SMR bank: N accounts, worker w spends 1 from
/// account w mod N to a random other one.
async fn run_smr_bank(
    nodes: usize,
    clients: usize,
    duration: f64,
    show: bool,
) -> Result<(At2Report, Local)> {
    let local = crate::cluster::start_local_with(
        &[(nodes, (nodes - 1) / 3)],
        NodeProtocol::Smr,
        None,
        false,
        |f| f.service = SmrService::Bank,
    )
    .await?;
    let settings = At2Settings::default();
    let params = deploy::local_params();
    let nconn = clients.div_ceil(16).clamp(1, 8);
    let per = clients.div_ceil(nconn) as u64;
    let mut cs = Vec::new();
    for _ in 0..nconn {
        cs.push(Arc::new(
            SmrClient::connect(
                &local.dep,
                GroupId(0),
                params.clone(),
                per.min(params.client_window),
            )
            .await?,
        ));
    }
    for a in 0..nodes as u64 {
        match bank_call(
            &cs[0],
            BankOp::Open {
                account: a,
                initial: settings.initial_balance,
            },
        )
        .await?
        {
            BankReply::Opened => {}
            other => bail!("opening bank account {a}: {other:?}"),
        }
    }
    let cs2 = cs.clone();
    let n = nodes as u64;
    let out = closed_loop(clients, duration, show, move |w, r| {
        let c = cs2[w % cs2.len()].clone();
        async move {
            let from = w as u64 % n;
            let to = if n > 1 {
                (from + 1 + r % (n - 1)) % n
            } else {
                from
            };
            match bank_call(
                &c,
                BankOp::Transfer {
                    from,
                    to,
                    amount: 1,
                },
            )
            .await?
            {
                BankReply::Transferred => Ok(()),
                other => Err(anyhow!("{other:?}")),
            }
        }
    })
    .await;
    let supply = settings.initial_balance as u128 * nodes as u128;
    let total = match bank_call(&cs[0], BankOp::Total).await? {
        BankReply::Total(t) => t as u128,
        other => bail!("reading the bank's total: {other:?}"),
    };
    for c in &cs {
        c.stop().await;
    }
    let report = At2Report {
        protocol: "smr-bank",
        nodes,
        clients,
        duration_s: duration,
        throughput_ops: out.throughput(),
        p50_ms: out.ms(0.5),
        p99_ms: out.ms(0.99),
        committed: out.committed,
        errors: out.errors,
        first_error: out.first_error,
        supply_conserved: total == supply,
        // one replicated state: the ordered Total answer is the group's
        balances_agree: true,
        supply,
        dir: local.dir.display().to_string(),
    };
    Ok((report, local))
}

// ---------------------------------------------------------------- figure

#[derive(clap::Args, Debug)]
pub struct BenchAt2Args {
    /// Nodes (AT2 processes, and SMR replicas for the bank).
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Closed-loop clients of each run.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub clients: Vec<usize>,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Result name: writes <out>/<name>.json and <out>/<name>.svg.
    #[arg(long, default_value = "at2-vs-smr-bank")]
    pub name: String,
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Figure {
    nodes: usize,
    duration_s: f64,
    runs: Vec<At2Report>,
    /// Per client count: AT2 throughput / SMR bank throughput.
    ratios: Vec<(usize, f64)>,
    /// Best AT2 throughput over best SMR bank throughput.
    best_ratio: f64,
    command: String,
}

/// `byzscale bench-at2`: for each client count, an AT2 cluster and an SMR
/// bank cluster of the same size run the same closed-loop transfer workload,
/// one after the other on this machine.
pub async fn bench(a: BenchAt2Args) -> Result<()> {
    for c in &a.clients {
        check_args(a.nodes, *c, a.duration)?;
    }
    if a.duration <= 0.0 {
        bail!("--duration must be positive");
    }
    let show = !a.json && std::io::stderr().is_terminal();
    let mut runs = Vec::new();
    let mut ratios = Vec::new();
    for &c in &a.clients {
        if show {
            eprintln!("AT2, {} nodes, {c} clients", a.nodes);
        }
        let (mut at2, local) = run_at2(a.nodes, c, a.duration, show, None, false).await?;
        drop(local);
        at2.dir.clear();
        if show {
            eprintln!("SMR bank, {} replicas, {c} clients", a.nodes);
        }
        let (mut smr, local) = run_smr_bank(a.nodes, c, a.duration, show).await?;
        drop(local);
        smr.dir.clear();
        ratios.push((c, at2.throughput_ops / smr.throughput_ops.max(1e-9)));
        if !a.json {
            println!(
                "{c:>5} clients: AT2 {:>8.0} transfers/s (p50 {:.1} ms, p99 {:.1} ms; ledgers ok: {})   SMR bank {:>8.0} transfers/s (p50 {:.1} ms, p99 {:.1} ms)   ratio {:.2}",
                at2.throughput_ops, at2.p50_ms, at2.p99_ms,
                at2.supply_conserved && at2.balances_agree,
                smr.throughput_ops, smr.p50_ms, smr.p99_ms,
                ratios.last().map(|r| r.1).unwrap_or(0.0),
            );
        }
        runs.push(at2);
        runs.push(smr);
    }
    let best = |p: &str| {
        runs.iter()
            .filter(|r| r.protocol == p)
            .map(|r| r.throughput_ops)
            .fold(0.0, f64::max)
    };
    let fig = Figure {
        nodes: a.nodes,
        duration_s: a.duration,
        best_ratio: best("at2") / best("smr-bank").max(1e-9),
        ratios,
        command: format!(
            "byzscale bench-at2 --nodes {} --clients {} --duration {}",
            a.nodes,
            a.clients
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
            a.duration
        ),
        runs,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let json_path = a.out.join(format!("{}.json", a.name));
    std::fs::write(&json_path, serde_json::to_string_pretty(&fig)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let svg = a.out.join(format!("{}.svg", a.name));
    plot(&fig, &svg)?;
    if a.json {
        println!("{}", serde_json::to_string(&fig)?);
    } else {
        println!(
            "best AT2 / best SMR bank: {:.2}×   wrote {} and {}",
            fig.best_ratio,
            json_path.display(),
            svg.display()
        );
    }
    Ok(())
}

fn plot(fig: &Figure, path: &Path) -> Result<()> {
    let series = |p: &str| -> Vec<(f64, f64)> {
        fig.runs
            .iter()
            .filter(|r| r.protocol == p)
            .map(|r| (r.clients as f64, r.throughput_ops))
            .collect()
    };
    let lines = [
        ("AT2 over Bracha".to_string(), series("at2")),
        ("bank on the SMR core".to_string(), series("smr-bank")),
    ];
    let (xmin, xmax) = lines[0]
        .1
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let ymax = lines
        .iter()
        .flat_map(|l| l.1.iter())
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let title = format!(
        "Transfers/s on {} nodes: AT2 (Bracha, batched) vs a bank on the SMR core (best ratio {:.2}×)",
        fig.nodes, fig.best_ratio
    );
    let axes = crate::plot::Axes {
        title: &title,
        x_desc: "closed-loop clients",
        y_desc: "transfers per second",
        x_range: (xmin * 0.7)..(xmax * 1.3 + 1.0),
        y_range: 0.0..ymax * 1.15,
        markers: true,
    };
    crate::plot::line_chart(path, axes, &lines)
}
