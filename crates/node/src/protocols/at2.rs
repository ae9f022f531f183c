//! AT2 as real processes over TCP: `byzscale node` for an AT2 node file (with
//! its HTTP API), the [`At2Client`] library and the AT2 commands of
//! `byzscale client`, and `byzscale cluster --protocol at2` (a transfer
//! workload and a check of every node's ledger).
//!
//! # Paper mapping (Guerraoui et al., AT2, PODC 2019)
//!
//! | paper | here |
//! |---|---|
//! | asset transfer on a secure (Byzantine reliable) broadcast, no consensus | [`at2::Node`]`<`[`Bracha`]`>` or `<`[`Contagion`]`>` (`[at2] broadcast`; batching on, the broadcast's retransmission on, see `byzscale_at2`, `byzscale_broadcast::bracha` and `byzscale_broadcast::probabilistic`) under the net runtime, wire kind `WireKind::At2` (`NodeBroadcast` is what a node needs of its broadcast) |
//! | the owner of an account, a sequential process issuing its transfers with sequence numbers | a client holding the account's ed25519 key; it signs each transfer and submits it to any node, which broadcasts it on its behalf after the vote round that makes the account's sequence numbers unique (see `byzscale_at2`) |
//! | the initial balances q₀ | the genesis: a genesis file (`[at2] genesis`, [`read_genesis`]) or the demo genesis (`demo_accounts` accounts whose keys anyone can derive, each with `initial_balance`; [`genesis`]) |
//!
//! Custody: nodes hold no account key. A transfer is signed by its owner
//! before it reaches a node ([`SignedTransfer`]); a node checks the
//! signature and refuses a bad one (HTTP 403), so reaching a node's port
//! gives no power over anyone's funds.
//!
//! Clients:
//! - TCP (`byzscale client`, the load generators): an authenticated transport
//!   client sending [`at2::node::Message::Request`] to any node;
//! - HTTP on each node's `http_addr`: `POST /transfer` with the signed
//!   transfer as JSON ([`parse_transfer_body`]; answers once the transfer is
//!   applied at that node), `GET /balance/{account}`, `GET
//!   /history/{account}`, `GET /account/{account}` (the next sequence number
//!   and the dependencies to cite); errors are JSON `{"error": "..."}` with
//!   400 (bad input, malformed transfer), 403 (the signature does not
//!   verify), 409 (insufficient funds, sequence number used up or ahead,
//!   conflicting transfer, fake dependency, not checkable yet, not
//!   certified), 503 (busy or stopping), 504 (no answer within 30 s).
//!
//! Durability: the node's AT2 process emits records (its broadcasts, echoes,
//! readies and deliveries, durable before what they let out; the
//! endorsements of its votes, durable before the vote leaves; and a
//! checkpoint of the ledger every [`CHECKPOINT_EVERY`] deliveries; see
//! `byzscale_at2::durable`); [`At2Journal`] writes them to the node's redb
//! store through the group-commit persister, and a restart recovers the
//! process from it (same votes, same endorsements, the ledger), then
//! catches up on what it missed from its peers (Bracha's fetch and vouches).
//!
//! Over Contagion the records are the same (Bracha's: echoes, deliveries;
//! Contagion makes no readiness durable), and a restarted node completes
//! what it missed from its peers' late answers (see
//! `byzscale_broadcast::probabilistic`, "Retransmission").
//!
//! Limitations: a node more than its peers keep (`retain`, 64 MiB of
//! payloads) behind cannot catch up (no ledger state transfer).

use crate::calls::{CallError, Calls, Pending};
use crate::cluster::{ClusterOutcome, ClusterSpec};
use crate::daemon::serve_outputs;
use crate::launcher::{Local, LocalSpec};
use crate::load::{check_load, ms, Load, LoadResult, LoadSpec, LoadSummary};
use crate::node_file::{At2Broadcast, At2Settings, LoadedNode, NodeProtocol};
use crate::persist::{self, Journal, Persister};
use anyhow::{anyhow, bail, Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use byzscale_at2::{
    self as at2, Account, At2, Batch, ClientOp, ClientReply, Genesis, ServiceError, SignedTransfer,
    Transfer, TransferError, TransferId,
};
use byzscale_broadcast::probabilistic::{self, params};
use byzscale_broadcast::{bracha, Bracha, Contagion, ContagionParams, NoTimer, SecureBroadcast};
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

/// The genesis of a deployment's node files: their genesis file, or the
/// demo genesis (see the module docs).
pub fn genesis(s: &At2Settings) -> Result<Genesis> {
    match &s.genesis {
        Some(path) => read_genesis(path),
        None => Ok(Genesis::demo(s.demo_accounts, s.initial_balance)),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    #[serde(default)]
    account: Vec<GenesisEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisEntry {
    key: String,
    balance: u64,
}

/// Read a genesis file: `[[account]]` tables with `key` (an ed25519 public
/// key, 64 hex digits) and `balance`; each account at most once.
pub fn read_genesis(path: &Path) -> Result<Genesis> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the AT2 genesis {}", path.display()))?;
    let file: GenesisFile = toml::from_str(&text)
        .with_context(|| format!("parsing the AT2 genesis {}", path.display()))?;
    let mut g = Genesis::new();
    for e in file.account {
        let a = Account::from_hex(&e.key).map_err(|m| anyhow!("{}: {m}", path.display()))?;
        if g.initial(a) > 0 || g.accounts().any(|x| x == a) {
            bail!("{}: account {a} is listed twice", path.display());
        }
        g.add(a, e.balance);
    }
    Ok(g)
}

/// Write `genesis` as a genesis file.
pub fn write_genesis(path: &Path, genesis: &Genesis) -> Result<()> {
    let mut text = String::from(
        "# AT2 genesis: every account's initial balance; every node of the\n\
         # deployment must use the same file.\n",
    );
    for a in genesis.accounts() {
        text += &format!(
            "\n[[account]]\nkey = \"{a}\"\nbalance = {}\n",
            genesis.initial(a)
        );
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The Contagion parameters of `s` for `n` members: the explicit ones, or
/// those `byzscale sim at2` and `byzscale broadcast params` select for N,
/// β and ε.
pub fn contagion_params(n: usize, s: &At2Settings) -> Result<ContagionParams> {
    if let Some(text) = &s.contagion_params {
        return ContagionParams::parse(text)
            .map_err(|e| anyhow!("[at2] contagion_params {text:?}: {e}"));
    }
    let beta = s.assumed_fraction.unwrap_or(0.1);
    let eps = s.epsilon.unwrap_or(1e-6);
    let sel = params::select(n, beta, eps).map_err(|e| {
        anyhow!(
            "[at2] Contagion parameters for {n} nodes, assumed fraction {beta}, epsilon {eps}: {e}"
        )
    })?;
    Ok(sel.params)
}

/// A secure broadcast an AT2 node runs over: its group configuration
/// from the node file, a new endpoint, and the restart from the store.
/// Both share Bracha's durable records, so the store and its journal are
/// the same.
pub(crate) trait NodeBroadcast:
    SecureBroadcast<Batch>
    + Protocol<Record = bracha::Record<Batch>, Timer: Send + 'static>
    + Send
    + Sized
    + 'static
{
    type Config;
    /// The group configuration: retransmission as `s` says, records on.
    fn config(members: &[NodeId], s: &At2Settings) -> Result<Self::Config>;
    fn fresh(me: NodeId, cfg: Self::Config) -> Self;
    /// The broadcast restarted from its fold and the deliveries kept.
    fn restart(cfg: Self::Config, d: BDurable, kept: Kept, crypto: &Crypto)
        -> Result<Self, String>;
}

/// The retransmission period of `s`.
fn retransmit(s: &At2Settings) -> Option<byzscale_core::protocol::Time> {
    (s.retransmit_ms > 0).then(|| s.retransmit_ms * MILLIS)
}

impl NodeBroadcast for Bracha<Batch> {
    type Config = Arc<bracha::Config>;
    fn config(members: &[NodeId], s: &At2Settings) -> Result<Self::Config> {
        let mut c = bracha::Config::new(members.to_vec()).context("the AT2 group")?;
        (c.retransmit, c.persist) = (retransmit(s), true);
        Ok(Arc::new(c))
    }
    fn fresh(me: NodeId, cfg: Self::Config) -> Self {
        Bracha::new(me, cfg)
    }
    fn restart(cfg: Self::Config, d: BDurable, kept: Kept, c: &Crypto) -> Result<Self, String> {
        Bracha::recover(d.me, cfg, d, kept, c)
    }
}

/// The broadcast's fold and the deliveries kept, as a restart takes them.
type BDurable = bracha::Durable<Batch>;
type Kept = Vec<((NodeId, u64), byzscale_broadcast::Signed<Batch>)>;

impl NodeBroadcast for Contagion<Batch> {
    type Config = Arc<probabilistic::Config>;
    fn config(members: &[NodeId], s: &At2Settings) -> Result<Self::Config> {
        let p = contagion_params(members.len(), s)?;
        let mut c = probabilistic::Config::new(members.to_vec(), p).context("the AT2 group")?;
        (c.retransmit, c.persist) = (retransmit(s), true);
        Ok(Arc::new(c))
    }
    fn fresh(me: NodeId, cfg: Self::Config) -> Self {
        Contagion::new(me, cfg)
    }
    fn restart(cfg: Self::Config, d: BDurable, kept: Kept, c: &Crypto) -> Result<Self, String> {
        Contagion::recover(d.me, cfg, d, kept, c)
    }
}

/// Check `s` for a deployment of `members`: the genesis, the batch size,
/// and the broadcast with its parameters (so a bad value fails at once).
pub fn check_settings(members: &[NodeId], s: &At2Settings) -> Result<()> {
    match s.broadcast {
        At2Broadcast::Bracha => <Bracha<Batch> as NodeBroadcast>::config(members, s).map(drop)?,
        At2Broadcast::Contagion => {
            <Contagion<Batch> as NodeBroadcast>::config(members, s).map(drop)?
        }
        b @ (At2Broadcast::Murmur | At2Broadcast::Sieve) => {
            let lacks = if b == At2Broadcast::Murmur {
                "consistency and totality"
            } else {
                "totality"
            };
            bail!(
                "[at2] broadcast = \"{}\": AT2 needs a secure broadcast (bracha or contagion); {} lacks {lacks}",
                b.name(),
                b.name()
            )
        }
    }
    if s.genesis.is_none() && s.demo_accounts == 0 {
        bail!("[at2] needs a genesis file or demo_accounts of at least 1");
    }
    if s.max_batch == 0 || s.max_batch > byzscale_at2::ledger::MAX_BATCH {
        bail!(
            "[at2] max_batch must be between 1 and {}",
            byzscale_at2::ledger::MAX_BATCH
        );
    }
    Ok(())
}

/// Parse an account: 64 hex digits (its public key), or the path of an
/// account key file (its public key is read from it).
pub fn parse_account(s: &str) -> Result<Account> {
    if let Ok(a) = Account::from_hex(s) {
        return Ok(a);
    }
    let p = Path::new(s);
    if p.is_file() {
        return Ok(Account::of(&read_account_key(p)?));
    }
    bail!("`{s}` is not an account (expected 64 hex digits, an ed25519 public key, or an account key file)")
}

/// Write an account key file (TOML: `secret` and `public`, 64 hex digits
/// each); refuses to overwrite one.
pub fn write_account_key(path: &Path, key: &ed25519_dalek::SigningKey) -> Result<()> {
    if path.exists() {
        bail!("{} exists; refusing to overwrite a key", path.display());
    }
    let text = format!(
        "# byzscale AT2 account key: whoever holds `secret` owns the account; keep it private\n\
         secret = \"{}\"\npublic = \"{}\"\n",
        hex::encode(key.to_bytes()),
        Account::of(key)
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Read an account key file (see [`write_account_key`]).
pub fn read_account_key(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    #[derive(serde::Deserialize)]
    struct KeyFile {
        secret: String,
        public: Option<String>,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the account key {}", path.display()))?;
    let f: KeyFile = toml::from_str(&text)
        .with_context(|| format!("parsing the account key {}", path.display()))?;
    let key =
        at2::transfer::key_from_hex(&f.secret).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if let Some(p) = f.public {
        if Account::from_hex(&p).ok() != Some(Account::of(&key)) {
            bail!(
                "{}: `public` is not the public key of `secret`",
                path.display()
            );
        }
    }
    Ok(key)
}

// ---------------------------------------------------------------- disk

/// A checkpoint of the ledger every this many deliveries.
pub const CHECKPOINT_EVERY: u64 = 1024;

const FORMAT_KEY: &str = "at2/format";
/// 2: client-owned accounts (issue 17); 3: endorsements as an append-only
/// run of rows (one per group commit) instead of a row per (account, seq),
/// whose random keys dirtied a B-tree page per endorsement. Stores of
/// older formats are refused.
const FORMAT: &[u8] = b"3";
const NEXT_SEQ_KEY: &str = "at2/next_seq";
const OPEN_PREFIX: &str = "at2/open/";
const VOTES_PREFIX: &str = "at2/votes/";

fn votes_key(row: u64) -> String {
    format!("{VOTES_PREFIX}{row:020}")
}

/// The endorsements of one group commit.
type VotesRow = Vec<(Account, u64, byzscale_core::crypto::Digest)>;

fn open_key(source: NodeId, seq: u64) -> String {
    format!("{OPEN_PREFIX}{:010}/{seq:020}", source.0)
}

type At2Record = at2::Record<bracha::Record<Batch>>;

/// An AT2 process's records as rows of its store: the next own broadcast
/// number and each open instance's votes as meta rows, the endorsements of
/// each group commit as one meta row under an increasing number (a
/// checkpoint holds every endorsement made before it, so the rows before it
/// go with it),
/// each delivery as a log row under its index, each checkpoint as the
/// snapshot (the log rows more than `LOG_KEEP` below it, and the
/// endorsements it no longer holds, go in the same transaction).
pub(crate) struct At2Journal {
    d: at2::Durable,
    fresh: bool,
    next_seq: bool,
    open: BTreeSet<(NodeId, u64)>,
    /// Endorsements since the last flush (or the last checkpoint).
    votes: VotesRow,
    /// Endorsement rows on disk, and those the next flush deletes.
    rows: Vec<u64>,
    drop_rows: Vec<u64>,
    next_row: u64,
    logged: Vec<u64>,
    checkpoint: Option<u64>,
}

impl At2Journal {
    fn new(mut d: at2::Durable, fresh: bool, rows: Vec<u64>) -> Self {
        d.log.clear(); // on disk already
        At2Journal {
            d,
            fresh,
            next_seq: false,
            open: BTreeSet::new(),
            votes: Vec::new(),
            next_row: rows.last().map_or(0, |r| r + 1),
            rows,
            drop_rows: Vec::new(),
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
            at2::durable::Change::Checkpoint { keep_from, .. } => {
                // it holds every endorsement made so far
                self.checkpoint = Some(keep_from);
                self.votes.clear();
                self.drop_rows.append(&mut self.rows);
            }
            at2::durable::Change::Voted(keys) => {
                for k in keys {
                    if let Some(d) = self.d.voted.get(&k) {
                        self.votes.push((k.0, k.1, *d));
                    }
                }
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
        for row in std::mem::take(&mut self.drop_rows) {
            b = b.delete_meta(votes_key(row));
        }
        if !self.votes.is_empty() {
            let row = self.next_row;
            self.next_row += 1;
            b = b.put_meta(
                votes_key(row),
                codec::to_bytes(&std::mem::take(&mut self.votes)),
            );
            self.rows.push(row);
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
/// also whether the store is new, and the endorsement rows it holds.
pub(crate) fn at2_durable_from_disk(
    me: NodeId,
    rec: Recovered,
    db: &Path,
) -> Result<(at2::Durable, bool, Vec<u64>)> {
    let mut d = at2::Durable::new(me);
    let Some(format) = rec.meta.get(FORMAT_KEY) else {
        return Ok((d, true, Vec::new()));
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
        let o: bracha::Opened<Batch> =
            codec::from_bytes(v, usize::MAX).with_context(|| decode(k))?;
        d.bcast.open.insert(key, o);
    }
    let mut voted = BTreeMap::new();
    let mut rows = Vec::new();
    for (k, v) in rec.meta.range(VOTES_PREFIX.to_string()..) {
        let Some(rest) = k.strip_prefix(VOTES_PREFIX) else {
            break;
        };
        let row: u64 = rest
            .parse()
            .map_err(|_| anyhow!("bad key {k} in {}", db.display()))?;
        let entries: VotesRow = codec::from_bytes(v, usize::MAX).with_context(|| decode(k))?;
        voted.extend(entries.into_iter().map(|(a, s, d)| ((a, s), d)));
        rows.push(row);
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
        d.voted = c.endorsed.clone();
        d.checkpoint = Some(c);
    }
    d.voted.extend(voted);
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
    Ok((d, false, rows))
}

// ---------------------------------------------------------------- node

/// Node `loaded`'s AT2 process: new, or recovered from `durable` (what its
/// store held).
fn recover<B: NodeBroadcast>(
    loaded: &LoadedNode,
    members: &[NodeId],
    settings: &At2Settings,
    cfg: Arc<at2::Config>,
    durable: at2::Durable,
    fresh: bool,
) -> Result<At2<B>> {
    let me = loaded.me();
    let bcfg = B::config(members, settings)?;
    if fresh {
        return Ok(At2::new(B::fresh(me, bcfg), cfg));
    }
    info!(node = %me, deliveries = durable.deliveries, next_seq = durable.bcast.next_seq,
          open = durable.bcast.open.len(), endorsed = durable.voted.len(),
          "recovering the AT2 process from disk");
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
    At2::recover_with(cfg, durable, limit, &crypto, |d, kept| {
        B::restart(bcfg, d, kept, &crypto)
    })
    .map_err(|e| anyhow!(e))
}

/// The AT2 configuration of a deployment's node files.
pub fn config(members: &[NodeId], settings: &At2Settings) -> Result<at2::Config> {
    let mut cfg = at2::Config::bracha(genesis(settings)?, members.to_vec());
    cfg.vote_timeout = settings.vote_timeout_ms.max(1) * MILLIS;
    cfg.defer_timeout = settings.defer_timeout_ms.max(1) * MILLIS;
    Ok(cfg)
}

/// `byzscale node` for an AT2 node file.
pub(crate) async fn run_node(loaded: LoadedNode) -> Result<()> {
    let settings = loaded.file.at2.clone().unwrap_or_default();
    check_settings(&members(&loaded.deployment), &settings)?;
    match settings.broadcast {
        At2Broadcast::Contagion => serve::<Contagion<Batch>>(loaded, settings).await,
        _ => serve::<Bracha<Batch>>(loaded, settings).await,
    }
}

/// Run node `loaded` over the broadcast `B` until it is stopped.
async fn serve<B: NodeBroadcast>(loaded: LoadedNode, settings: At2Settings) -> Result<()> {
    let me = loaded.me();
    let dep = &loaded.deployment;
    let members = members(dep);
    let (_, rc) = dep.replica(me).expect("checked by NodeFile::load");
    let at2cfg = Arc::new(config(&members, &settings)?);
    if settings.genesis.is_none() {
        warn!(node = %me, accounts = settings.demo_accounts,
            "demo genesis: anyone can derive the demo accounts' keys (set [at2] genesis for real funds)");
    }
    let (storage, rec, db) = persist::open(&loaded.file.data_dir)?;
    let (durable, fresh, rows) = at2_durable_from_disk(me, rec, &db)?;
    let at2 = recover::<B>(
        &loaded,
        &members,
        &settings,
        at2cfg.clone(),
        durable.clone(),
        fresh,
    )
    .map_err(|e| anyhow!("recovering from {}: {e}", db.display()))?;
    let at2 = at2
        .with_batching(settings.max_batch, settings.queue_limit)
        .with_checkpoints(CHECKPOINT_EVERY);
    let proto = at2::Node::new(at2);
    let mut cfg = NodeConfig::replica(dep, me, loaded.identity.clone(), WireKind::At2.byte())?;
    cfg.transport.options.queue_capacity = settings.peer_queue_frames.max(1);
    let registry = Arc::new(Registry::new());
    let pace = Duration::from_millis(loaded.file.persist_interval_ms);
    let journal = At2Journal::new(durable, fresh, rows);
    let (records, persister) = Persister::start(journal, storage, pace, &registry)?;
    let (rt, mut outputs) = Runtime::start_with_records(proto, cfg, None, registry, Some(records))
        .await
        .context("starting the AT2 runtime")?;
    info!(node = %me, addr = %rc.addr, http = ?rc.http_addr, metrics = ?rc.metrics_addr,
        genesis_accounts = at2cfg.genesis.len(), broadcast = settings.broadcast.name(),
        "AT2 node running");

    let reg = rt.registry().clone();
    let submitted = reg.counter(
        "byzscale_at2_transfers_submitted_total",
        "Transfers accepted from clients",
    );
    let applied = reg.counter(
        "byzscale_at2_transfers_applied_total",
        "Transfers (anyone's) validated and applied here",
    );
    let pending = reg.gauge(
        "byzscale_at2_pending",
        "Certified transfers waiting for their turn or their dependencies",
    );
    let in_flight = reg.gauge(
        "byzscale_at2_in_flight",
        "Transfers accepted here and not yet applied here",
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

// ---------------------------------------------------------------- HTTP API

#[derive(Clone)]
struct Http {
    handle: RuntimeHandle<at2::node::Input>,
    waiters: Pending<ClientReply>,
    next: Arc<AtomicU64>,
    requests: byzscale_net::metrics::Counter,
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// The HTTP status of a refused request.
pub fn status_of(e: &ServiceError) -> u16 {
    match e {
        TransferError::Malformed(_) => 400,
        TransferError::BadSignature => 403,
        TransferError::Busy => 503,
        TransferError::Stale { .. }
        | TransferError::Conflict(_)
        | TransferError::TooFarAhead { .. }
        | TransferError::NotYet(_)
        | TransferError::InsufficientFunds { .. }
        | TransferError::FakeDependency(_)
        | TransferError::Refused { .. } => 409,
    }
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
            .route("/account/{account}", get(http_account))
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

    /// The response for `reply` (`ok` renders the expected answers).
    fn respond(
        &self,
        r: Result<ClientReply, Response>,
        ok: impl FnOnce(ClientReply) -> Option<serde_json::Value>,
    ) -> Response {
        match r {
            Err(r) => r,
            Ok(ClientReply::Error(e)) => {
                let status = StatusCode::from_u16(status_of(&e)).expect("a valid status");
                error(status, e)
            }
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

fn id_json(id: &TransferId) -> String {
    format!("{}#{}", id.from, id.seq)
}

fn transfer_json(t: &Transfer) -> serde_json::Value {
    json!({
        "id": id_json(&t.id()),
        "from": t.from.hex(),
        "seq": t.seq,
        "to": t.to.hex(),
        "amount": t.amount,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DepJson {
    from: String,
    seq: u64,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferRequest {
    from: String,
    seq: u64,
    to: String,
    amount: u64,
    #[serde(default)]
    deps: Vec<DepJson>,
    signature: String,
}

/// The signed transfer of a `POST /transfer` body, or the error text for a
/// 400 (axum bounds the body at 2 MB before this). The body:
///
/// ```json
/// {"from": "<64 hex>", "seq": 1, "to": "<64 hex>", "amount": 5,
///  "deps": [{"from": "<64 hex>", "seq": 3}], "signature": "<128 hex>"}
/// ```
///
/// `signature` is the owner's ed25519 signature of the canonical encoding
/// of the other fields ([`byzscale_at2::transfer::signing_bytes`]); `deps`
/// may be left out when empty.
pub fn parse_transfer_body(body: &[u8]) -> Result<SignedTransfer, String> {
    const SHAPE: &str = "expected a JSON body {\"from\": account, \"seq\": n, \"to\": account, \"amount\": n, \"deps\": [{\"from\": account, \"seq\": n}], \"signature\": hex}";
    let req: TransferRequest = serde_json::from_slice(body).map_err(|e| format!("{SHAPE}: {e}"))?;
    let from = Account::from_hex(&req.from)?;
    let to = Account::from_hex(&req.to)?;
    let mut deps = Vec::with_capacity(req.deps.len());
    for d in req.deps {
        deps.push(TransferId {
            from: Account::from_hex(&d.from)?,
            seq: d.seq,
        });
    }
    let sig: [u8; 64] = hex::decode(req.signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "`signature` is not 128 hex digits (an ed25519 signature)".to_string())?;
    Ok(SignedTransfer {
        transfer: Transfer {
            from,
            seq: req.seq,
            to,
            amount: req.amount,
        },
        deps,
        sig: byzscale_core::crypto::Signature(ed25519_dalek::Signature::from_bytes(&sig)),
    })
}

/// The JSON body of `st` for `POST /transfer`.
pub fn transfer_body(st: &SignedTransfer) -> serde_json::Value {
    json!({
        "from": st.transfer.from.hex(),
        "seq": st.transfer.seq,
        "to": st.transfer.to.hex(),
        "amount": st.transfer.amount,
        "deps": st.deps.iter().map(|d| json!({"from": d.from.hex(), "seq": d.seq})).collect::<Vec<_>>(),
        "signature": hex::encode(st.sig.0.to_bytes()),
    })
}

async fn http_transfer(State(h): State<Http>, body: axum::body::Bytes) -> Response {
    let st = match parse_transfer_body(&body) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let t = st.transfer;
    let r = h.call(ClientOp::Transfer(st)).await;
    h.respond(r, |reply| match reply {
        ClientReply::Transferred(id) => Some(json!({
            "id": id_json(&id),
            "from": t.from.hex(),
            "seq": t.seq,
            "to": t.to.hex(),
            "amount": t.amount,
        })),
        _ => None,
    })
}

async fn http_read(h: Http, account: String, what: &str) -> Response {
    let account = match Account::from_hex(&account) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let op = match what {
        "history" => ClientOp::History(account),
        "account" => ClientOp::Account(account),
        _ => ClientOp::Balance(account),
    };
    let r = h.call(op).await;
    h.respond(r, |reply| match reply {
        ClientReply::Balance { account, balance } => {
            Some(json!({ "account": account.hex(), "balance": amount_json(balance) }))
        }
        ClientReply::History {
            account,
            total,
            transfers,
        } => Some(json!({
            "account": account.hex(),
            "total": total,
            "transfers": transfers.iter().map(transfer_json).collect::<Vec<_>>(),
        })),
        ClientReply::Account {
            account,
            balance,
            next_seq,
            spendable,
            deps,
        } => Some(json!({
            "account": account.hex(),
            "balance": amount_json(balance),
            "next_seq": next_seq,
            "spendable": amount_json(spendable),
            "deps": deps.iter().map(|(d, x)| json!({"from": d.from.hex(), "seq": d.seq, "amount": x})).collect::<Vec<_>>(),
        })),
        _ => None,
    })
}

async fn http_balance(State(h): State<Http>, UrlPath(account): UrlPath<String>) -> Response {
    http_read(h, account, "balance").await
}

async fn http_history(State(h): State<Http>, UrlPath(account): UrlPath<String>) -> Response {
    http_read(h, account, "history").await
}

async fn http_account(State(h): State<Http>, UrlPath(account): UrlPath<String>) -> Response {
    http_read(h, account, "account").await
}

// ---------------------------------------------------------------- TCP client

/// The client side of [`at2::node::Message`]: requests out to a node, replies back.
pub struct ClientProto;

type Wire = at2::node::Message<at2::Message<bracha::Message<Batch>>>;

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
/// one connection set. Any node takes any signed transfer.
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

    /// Sign and submit `key`'s next transfer of `amount` to `to` through
    /// `node`: asks the node for the account's next sequence number and
    /// the dependencies to cite, signs, submits, and resubmits the same
    /// signed transfer while the nodes cannot check it yet (a few times).
    /// The reply: `Transferred`, or the refusal.
    pub async fn transfer(
        &self,
        node: NodeId,
        key: &ed25519_dalek::SigningKey,
        to: Account,
        amount: u64,
        timeout: Duration,
    ) -> Result<ClientReply> {
        let from = Account::of(key);
        let (seq, deps) = match self.call(node, ClientOp::Account(from), timeout).await? {
            ClientReply::Account { next_seq, deps, .. } => {
                (next_seq, deps.into_iter().map(|(d, _)| d).collect())
            }
            ClientReply::Error(e) => return Ok(ClientReply::Error(e)),
            other => bail!("node {} answered {other:?} to an account read", node.0),
        };
        let t = Transfer {
            from,
            seq,
            to,
            amount,
        };
        let st = SignedTransfer::sign(key, t, deps);
        let mut tries = 0;
        loop {
            let r = self
                .call(node, ClientOp::Transfer(st.clone()), timeout)
                .await?;
            match r {
                ClientReply::Error(TransferError::NotYet(_) | TransferError::Refused { .. })
                    if tries < 5 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                }
                r => return Ok(r),
            }
        }
    }

    /// Stop the client (calls still waiting fail).
    pub async fn stop(&self) {
        self.calls.stop().await;
    }
}

/// Whether `command` is an AT2 client command (`transfer`, `balance`,
/// `history`, `account`).
pub fn is_at2_command(command: &[String]) -> bool {
    matches!(
        command.first().map(|c| c.to_ascii_lowercase()).as_deref(),
        Some("transfer" | "balance" | "history" | "account")
    )
}

/// `byzscale client account new [--out FILE]`: a fresh account key file
/// (`account-<first 8 hex digits>.key` by default) and what to print.
pub fn account_new(words: &[String]) -> Result<String> {
    let out = match &words[2..] {
        [] => None,
        [flag, path] if flag == "--out" => Some(PathBuf::from(path)),
        _ => bail!("usage: account new [--out FILE]"),
    };
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let a = Account::of(&key);
    let path = out.unwrap_or_else(|| PathBuf::from(format!("account-{}.key", &a.hex()[..8])));
    write_account_key(&path, &key)?;
    Ok(format!("{a}\nkey written to {}\n", path.display()))
}

/// Whether `words` is `account new ...` (needs no deployment).
pub fn is_account_new(words: &[String]) -> bool {
    words.len() >= 2
        && words[0].eq_ignore_ascii_case("account")
        && words[1].eq_ignore_ascii_case("new")
}

/// What a client command asks for.
enum Command {
    Transfer {
        key: ed25519_dalek::SigningKey,
        to: Account,
        amount: u64,
    },
    Read(ClientOp),
}

/// Parse the words of an AT2 client command.
fn parse_command(words: &[String]) -> Result<Command> {
    let word = words[0].to_ascii_lowercase();
    let args = &words[1..];
    Ok(match (word.as_str(), args) {
        ("transfer", _) => {
            const USAGE: &str = "usage: transfer --from KEYFILE --to ACCOUNT AMOUNT";
            let (mut from, mut to, mut amount) = (None, None, None);
            let mut it = args.iter();
            while let Some(w) = it.next() {
                match w.as_str() {
                    "--from" => from = Some(it.next().ok_or_else(|| anyhow!(USAGE))?),
                    "--to" => to = Some(it.next().ok_or_else(|| anyhow!(USAGE))?),
                    _ if amount.is_none() => amount = Some(w),
                    _ => bail!(USAGE),
                }
            }
            let (Some(from), Some(to), Some(amount)) = (from, to, amount) else {
                bail!(USAGE);
            };
            let key = read_account_key(Path::new(from))?;
            let to = parse_account(to)?;
            let amount: u64 = amount
                .parse()
                .map_err(|_| anyhow!("`{amount}` is not an amount (a non-negative integer)"))?;
            Command::Transfer { key, to, amount }
        }
        ("balance", [a]) => Command::Read(ClientOp::Balance(parse_account(a)?)),
        ("history", [a]) => Command::Read(ClientOp::History(parse_account(a)?)),
        ("account", [a]) => Command::Read(ClientOp::Account(parse_account(a)?)),
        ("account", _) => bail!("usage: account new [--out FILE] | account ACCOUNT"),
        (w, _) => bail!("usage: {w} ACCOUNT"),
    })
}

/// `byzscale client` with an AT2 command (`transfer`, `balance`, `history`,
/// `account`) against `dep` (read from `config`). Transfers and reads go to
/// the first node (any node would do).
pub(crate) async fn client_command(
    dep: &Deployment,
    config: &std::path::Path,
    words: &[String],
) -> Result<String> {
    if is_account_new(words) {
        return account_new(words);
    }
    let members = members(dep);
    let Some(&node) = members.first() else {
        bail!("{} lists no nodes", config.display());
    };
    let cmd = parse_command(words)?;
    let c = At2Client::connect(dep).await?;
    let timeout = Duration::from_secs(15);
    let r = match &cmd {
        Command::Transfer { key, to, amount } => c.transfer(node, key, *to, *amount, timeout).await,
        Command::Read(op) => c.call(node, op.clone(), timeout).await,
    };
    c.stop().await;
    Ok(match r? {
        ClientReply::Transferred(id) => match cmd {
            Command::Transfer { to, amount, .. } => {
                format!("transferred {amount} from {} to {to}: {}\n", id.from, id_json(&id))
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
                out += &format!("  {}#{}  {} -> {}  {}\n", t.from, t.seq, t.from, t.to, t.amount);
            }
            out
        }
        ClientReply::Account {
            account,
            balance,
            next_seq,
            spendable,
            deps,
        } => format!(
            "{account}: balance {balance}, next sequence number {next_seq}, spendable {spendable} citing {} incoming transfers\n",
            deps.len()
        ),
        ClientReply::Summary { .. } => String::new(),
        ClientReply::Error(e) => bail!("{e}"),
    })
}

// ---------------------------------------------------------------- cluster

/// What `byzscale cluster --protocol at2` (and the SMR bank it is compared
/// with) reports.
#[derive(Serialize, Clone)]
pub struct At2Report {
    pub protocol: &'static str,
    /// AT2's broadcast (`bracha`, `contagion`); none for the SMR bank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<&'static str>,
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
            broadcast: None,
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
    /// The nodes' `[at2]` section (the broadcast, its parameters).
    pub settings: At2Settings,
}

impl TransferRun {
    /// Check the run's numbers and settings.
    pub fn check(&self) -> Result<()> {
        if self.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        let members: Vec<NodeId> = (0..self.nodes as u32).map(NodeId).collect();
        check_settings(&members, &self.settings)?;
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

/// One demo account's client in the load: its key, its next sequence
/// number, the signed transfer not answered yet (resubmitted as it is, never
/// replaced: a different transfer with its number could block the account).
struct Payer {
    key: ed25519_dalek::SigningKey,
    seq: u64,
    count: u64,
    pending: Option<SignedTransfer>,
}

/// Closed-loop transfers of 1 unit: worker w pays from demo account w mod A
/// (A: as many accounts as workers, at most the demo accounts; workers
/// sharing an account take turns) through node a mod N, to a random other
/// of the A accounts. Every 32nd transfer of an account first asks its node
/// what to cite, so that the nodes forget what was received.
async fn at2_load(
    dep: &Deployment,
    run: &TransferRun,
    settings: &At2Settings,
) -> Result<LoadResult> {
    let members = Arc::new(members(dep));
    let accounts = (run.clients as u32).clamp(1, settings.demo_accounts.max(1));
    let payers: Arc<Vec<tokio::sync::Mutex<Payer>>> = Arc::new(
        (0..accounts)
            .map(|i| {
                tokio::sync::Mutex::new(Payer {
                    key: at2::demo_key(i),
                    seq: 1,
                    count: 0,
                    pending: None,
                })
            })
            .collect(),
    );
    let pubs: Arc<Vec<Account>> = Arc::new(
        (0..accounts)
            .map(|i| Account::of(&at2::demo_key(i)))
            .collect(),
    );
    let mut clients = Vec::new();
    for _ in 0..connections(run.clients) {
        clients.push(Arc::new(At2Client::connect(dep).await?));
    }
    let cs = clients.clone();
    let out = Load::run(&run.load(), run.progress, move |w, rng| {
        let c = cs[w % cs.len()].clone();
        let a = w as u32 % accounts;
        let to = pubs[TransferRun::receiver(a as u64, accounts as u64, rng) as usize];
        let node = members[a as usize % members.len()];
        let (payers, from) = (payers.clone(), pubs[a as usize]);
        (0, async move {
            let mut p = payers[a as usize].lock().await;
            let st = match p.pending.clone() {
                Some(st) => st,
                None => {
                    let mut deps = Vec::new();
                    if p.count % 32 == 31 {
                        if let ClientReply::Account {
                            next_seq, deps: d, ..
                        } = c
                            .call(node, ClientOp::Account(from), Duration::from_secs(10))
                            .await?
                        {
                            p.seq = p.seq.max(next_seq);
                            deps = d.into_iter().map(|(d, _)| d).collect();
                        }
                    }
                    let t = Transfer {
                        from,
                        seq: p.seq,
                        to,
                        amount: 1,
                    };
                    let st = SignedTransfer::sign(&p.key, t, deps);
                    p.pending = Some(st.clone());
                    st
                }
            };
            for _ in 0..5 {
                let r = c
                    .call(
                        node,
                        ClientOp::Transfer(st.clone()),
                        Duration::from_secs(10),
                    )
                    .await?;
                match r {
                    // applied (now, or before a lost answer)
                    ClientReply::Transferred(_)
                    | ClientReply::Error(TransferError::Stale { .. }) => {
                        p.pending = None;
                        p.seq = st.transfer.seq + 1;
                        p.count += 1;
                        return Ok(());
                    }
                    ClientReply::Error(
                        TransferError::NotYet(_)
                        | TransferError::Refused { .. }
                        | TransferError::Busy,
                    ) => tokio::time::sleep(Duration::from_millis(20)).await,
                    ClientReply::Error(e) => {
                        p.pending = None;
                        return Err(anyhow!("{e}"));
                    }
                    other => return Err(anyhow!("unexpected reply {other:?}")),
                }
            }
            Err(anyhow!("{} not accepted after 5 tries", st.id()))
        })
    })
    .await;
    for c in &clients {
        c.stop().await;
    }
    Ok(out)
}

/// Every node's ledger summary, polled until they agree (or `wait`
/// passes): each node's (supply, digest of the balances), and whether they
/// agree.
async fn collect_summaries(
    dep: &Deployment,
    wait: Duration,
) -> Result<(
    BTreeMap<NodeId, (i128, byzscale_core::crypto::Digest)>,
    bool,
)> {
    let members = members(dep);
    let c = At2Client::connect(dep).await?;
    let deadline = Instant::now() + wait;
    let result = loop {
        let mut all = BTreeMap::new();
        for m in &members {
            match c
                .call(*m, ClientOp::Summary, Duration::from_secs(5))
                .await?
            {
                ClientReply::Summary { supply, digest, .. } => {
                    all.insert(*m, (supply, digest));
                }
                other => bail!("node {} answered {other:?} to a summary read", m.0),
            }
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
    let settings = run.settings.clone();
    let local = Local::start(spec, |nf| nf.at2 = Some(settings.clone())).await?;
    let outcome = if run.duration > 0.0 {
        at2_load(&local.dep, run, &settings).await?
    } else {
        LoadResult::empty()
    };
    let (summaries, agree) = collect_summaries(&local.dep, Duration::from_secs(10)).await?;
    let supply = genesis(&settings)?.supply();
    let conserved = summaries.values().all(|(s, _)| *s == supply as i128);
    let report = At2Report {
        supply_conserved: conserved,
        balances_agree: agree,
        supply,
        dir: local.dir_label(),
        broadcast: Some(run.settings.broadcast.name()),
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
        settings: a.at2.clone(),
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
        "byzscale cluster --protocol at2 (over {}): {} nodes, {} clients, {:.1} s\n",
        r.broadcast.unwrap_or("bracha"),
        r.nodes,
        r.clients,
        r.duration_s
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
    fn transfer_bodies_round_trip_and_bad_ones_say_what_is_expected() {
        let key = at2::demo_key(0);
        let t = Transfer {
            from: Account::of(&key),
            seq: 3,
            to: Account::of(&at2::demo_key(1)),
            amount: 30,
        };
        let dep = TransferId {
            from: Account::of(&at2::demo_key(2)),
            seq: 1,
        };
        let st = SignedTransfer::sign(&key, t, vec![dep]);
        let body = transfer_body(&st).to_string();
        assert_eq!(parse_transfer_body(body.as_bytes()), Ok(st.clone()));
        // deps may be left out
        let mut v = transfer_body(&SignedTransfer::sign(&key, t, vec![]));
        v.as_object_mut().unwrap().remove("deps");
        assert!(parse_transfer_body(v.to_string().as_bytes()).is_ok());
        let good: serde_json::Value = serde_json::from_str(&body).unwrap();
        let with = |k: &str, x: serde_json::Value| {
            let mut v = good.clone();
            v[k] = x;
            v.to_string()
        };
        for bad in [
            r#"{"from": "00", "to": "11"}"#.to_string(),
            with("amount", json!(-3)),
            with("memo", json!("x")),
            with("from", json!(7)),
            "\u{ff}".to_string(),
            String::new(),
        ] {
            let e = parse_transfer_body(bad.as_bytes()).unwrap_err();
            assert!(e.starts_with("expected a JSON body"), "{e}");
        }
        let e = parse_transfer_body(with("to", json!("abc")).as_bytes()).unwrap_err();
        assert!(e.contains("not an account"), "{e}");
        let e = parse_transfer_body(with("signature", json!("00")).as_bytes()).unwrap_err();
        assert!(e.contains("signature"), "{e}");
        assert_eq!(parse_account(&t.from.hex()).unwrap(), t.from);
        assert!(parse_account("a-1").is_err() && parse_account("").is_err());
    }

    #[test]
    fn key_and_genesis_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("a.key");
        let key = at2::demo_key(5);
        write_account_key(&k, &key).unwrap();
        assert_eq!(read_account_key(&k).unwrap().to_bytes(), key.to_bytes());
        assert!(
            write_account_key(&k, &key).is_err(),
            "never overwrites a key"
        );
        assert_eq!(
            parse_account(k.to_str().unwrap()).unwrap(),
            Account::of(&key)
        );
        let g = Genesis::demo(3, 7);
        let gp = dir.path().join("genesis.toml");
        write_genesis(&gp, &g).unwrap();
        assert_eq!(read_genesis(&gp).unwrap(), g);
        std::fs::write(&gp, "[[account]]\nkey = \"zz\"\nbalance = 1\n").unwrap();
        assert!(read_genesis(&gp).is_err());
    }

    #[test]
    fn endorsements_survive_restarts_as_rows_and_go_with_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let me = NodeId(0);
        let a = |i: u32| Account::of(&at2::demo_key(i));
        let reopen = || {
            let (storage, rec, db) = persist::open(dir.path()).unwrap();
            let (d, fresh, rows) = at2_durable_from_disk(me, rec, &db).unwrap();
            (storage, d, fresh, rows)
        };
        let (storage, d, fresh, rows) = reopen();
        assert!(fresh && rows.is_empty());
        let mut j = At2Journal::new(d, fresh, rows);
        j.record(at2::Record::Voted(vec![
            (a(1), 1, [1; 32]),
            (a(2), 1, [2; 32]),
        ]));
        storage.commit(j.flush()).unwrap();
        j.record(at2::Record::Voted(vec![(a(1), 2, [3; 32])]));
        storage.commit(j.flush()).unwrap();
        drop((storage, j));
        let (storage, d, fresh, rows) = reopen();
        assert!(!fresh);
        assert_eq!(rows, vec![0, 1], "one row per group commit");
        let want = BTreeMap::from([
            ((a(1), 1), [1; 32]),
            ((a(2), 1), [2; 32]),
            ((a(1), 2), [3; 32]),
        ]);
        assert_eq!(d.voted, want);
        // a checkpoint holding only (a1, 2): the rows before it go with it;
        // an endorsement after it in the same group commit stays
        let mut j = At2Journal::new(d, fresh, rows);
        let genesis = Arc::new(Genesis::demo(3, 10));
        j.record(at2::Record::Checkpoint(Box::new(at2::Checkpoint {
            deliveries: 0,
            ledger: at2::ledger::Ledger::new(genesis),
            endorsed: BTreeMap::from([((a(1), 2), [3; 32])]),
            history: Default::default(),
            frontier: BTreeMap::new(),
        })));
        j.record(at2::Record::Voted(vec![(a(2), 2, [4; 32])]));
        storage.commit(j.flush()).unwrap();
        drop((storage, j));
        let (_storage, d, _, rows) = reopen();
        assert_eq!(rows, vec![2]);
        let want = BTreeMap::from([((a(1), 2), [3; 32]), ((a(2), 2), [4; 32])]);
        assert_eq!(d.voted, want);
    }

    #[test]
    fn refusals_map_to_the_documented_statuses() {
        use at2::Malformed;
        assert_eq!(
            status_of(&TransferError::Malformed(Malformed::ZeroAmount)),
            400
        );
        assert_eq!(status_of(&TransferError::BadSignature), 403);
        assert_eq!(
            status_of(&TransferError::InsufficientFunds {
                balance: 1,
                amount: 2
            }),
            409
        );
        assert_eq!(status_of(&TransferError::Stale { seq: 1, used: 1 }), 409);
        assert_eq!(status_of(&TransferError::Busy), 503);
    }
}
