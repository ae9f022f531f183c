//! Steward as real processes: `byzscale node` for a Steward server's node
//! file, the [`StewardClient`] library (also behind each server's Redis
//! gateway, and `byzscale client` against a Steward deployment), and
//! `byzscale cluster --protocol steward` (S sites of 3f+1 server processes on
//! loopback, the WAN emulated by the delay shim, closed-loop clients placed
//! at the sites).
//!
//! # Paper mapping (Amir et al., DSN'06; digest §2, `docs/STEWARD.md`)
//!
//! | paper | here |
//! |---|---|
//! | S sites of 3f+1 servers (evaluation: 5 sites of 4, f = 1) | deployment groups `0..S` are the sites, each 3f+1 replicas; `byzscale cluster --protocol steward --sites 5 --faulty-per-site 1` starts 20 processes |
//! | a (2f+1, 3f+1) threshold key per site, dealt by a trusted dealer | `steward/site-<s>/` written by the generator with `byzscale keygen --threshold`'s dealer ([`crate::generate::write_threshold_keys`]); the public keys in `steward.toml`, each server's share named by its node file |
//! | clients known to every server (they verify forwarded updates) | `[[client]]` entries of `steward.toml` (name, home site, public keys), given to every server as transport peers without a socket, so the protocol's `Crypto` knows them and no one else may take their ids |
//! | wide-area links between sites (symmetric 50 ms in the evaluation) | the delay shim (`byzscale_net::DelayMatrix`): one region per site, nodes and clients placed at their site ([`delay_matrix`]); default `topology.toml` 50 ms one way between sites, none inside |
//! | the replicated service | the KV store of `byzscale_apps` inside `Server<KvStore>`: writes are global updates, reads local queries (§4.3) |
//!
//! # Durability
//!
//! A server's records are its nested site SMR replica's
//! (`Record::Smr`), made durable exactly as an SMR node's
//! ([`SmrJournal`] through the group-commit persister; the runtime sends
//! nothing that follows a record before it is durable). A restarted server
//! recovers its SMR replica with `Server::recover`; the site machine, which
//! decides every word the site says (what it proposed and accepted per
//! (gv, seq), its global votes, ARU and constraint answers), is SMR state,
//! so it comes back with it and the server signs shares only for what the
//! recovered machine outputs again: **a restarted server never signs a
//! share for something other than what its site's ordered history says**,
//! and since that history is the SMR's (durable votes, the SMR's own
//! never-vote-against rule), no separate record of signed shares is needed.
//! What it does not keep: the executed global prefix and the application
//! state. A restarted server executes the global order again from seq 1
//! with the signed words other servers retransmit (they keep a window of
//! `Config::window` = 1024 seqs behind their execution), so a server down
//! for longer than that cannot catch up (missing: an application snapshot
//! with its executed seq, or state transfer of the application).
//!
//! # Deviations and limitations
//!
//! - **Clients are provisioned**: a Steward server only runs updates of
//!   clients its configuration lists (it verifies forwarded updates with
//!   their keys), so client keys are generated with the deployment
//!   (`steward/clients/<name>.key`): `load-<k>` for the cluster's load
//!   (home site k mod S), `cli-<s>` for `byzscale client`, `gateway-<node>`
//!   for each server's Redis gateway. A client process that reuses a key
//!   numbers its updates from its start time in microseconds
//!   (`Client::starting_after`), so one key serves successive processes;
//!   two processes with one key at the same time do not work.
//! - **Clients are sequential** (the paper's): one update or read at a time
//!   per client identity; the gateway of a server is one client, so its
//!   connections share one sequence of operations.
//! - **Reads are local** (not linearizable across sites, as in the paper):
//!   the gateway serves GET and friends from its own site; a read follows
//!   the client's own writes (the client's floor).

use crate::calls::{Calls, UNWINDOWED_LIMIT};
use crate::cluster::{ClusterOutcome, ClusterSpec};
use crate::daemon::{serve_outputs, Gateway, KvClient};
use crate::generate::{read_key_share, write_key, write_threshold_keys};
use crate::launcher::{Local, LocalSpec};
use crate::load::{check_load, ms, Load, LoadResult, LoadSpec, LoadSummary};
use crate::node_file::{load_deployment, LoadedNode, NodeFile, NodeProtocol, StewardSection};
use crate::persist::{self, Journal, Persister};
use crate::protocols::smr::{
    client_command_output, durable_from_disk, ReplicaMetrics, SmrJournal, CLIENT_COMMAND_WAIT,
};
use anyhow::{anyhow, bail, Context, Result};
use byzscale_apps::kv::{KvOp, KvReply, KvStore};
use byzscale_core::config::Deployment;
use byzscale_core::crypto::{Crypto, CryptoMode, Identity, PublicIdentity};
use byzscale_core::threshold::GroupKey;
use byzscale_core::{Addr, ClientId, NodeId, WireKind};
use byzscale_gateway::BoxFuture;
use byzscale_net::{DelayMatrix, NodeConfig, PeerConfig, Registry, Runtime};
use byzscale_steward::{self as steward, server, Config, Server, Site, SiteId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// The sites file the generator writes next to `deployment.toml`.
pub const SITES_FILE: &str = "steward.toml";
/// The default topology file the generator writes next to it.
pub const TOPOLOGY_FILE: &str = "topology.toml";
/// One way between two sites in the default topology (the paper's
/// symmetric setup).
pub const DEFAULT_WAN_MS: u64 = 50;
/// Load clients provisioned per site (`byzscale cluster --clients` can use
/// at most this many times the sites).
pub const LOAD_CLIENTS_PER_SITE: usize = 64;
/// How long a Steward client waits before sending an update or read again.
const CLIENT_RETRY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- files

/// `steward.toml`: what every server and client of a Steward deployment
/// shares. Site `s` is the deployment's group `s`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitesFile {
    /// Byzantine servers tolerated per site (every site has 3f+1).
    pub f: usize,
    /// Every site's threshold public key (hex), in site order.
    pub site_keys: Vec<String>,
    /// The provisioned clients.
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientEntry>,
}

/// One provisioned client: its key file is `steward/clients/<name>.key`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub name: String,
    /// Its home site (the site it submits to and reads from).
    pub site: u32,
    pub sign_key: String,
    pub dh_key: String,
}

impl ClientEntry {
    fn public(&self) -> Result<PublicIdentity> {
        let key = |what: &str, h: &str| -> Result<[u8; 32]> {
            let v = hex::decode(h.trim())
                .with_context(|| format!("client {}: {what} key is not hex", self.name))?;
            v.try_into()
                .map_err(|_| anyhow!("client {}: {what} key is not 32 bytes", self.name))
        };
        Ok(PublicIdentity {
            sign: key("sign", &self.sign_key)?,
            dh: key("dh", &self.dh_key)?,
        })
    }
}

/// A client's key file in deployment folder `dir`.
pub fn client_key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("steward")
        .join("clients")
        .join(format!("{name}.key"))
}

/// The symmetric topology of `sites` sites: `one_way_ms` between two sites,
/// none inside one.
pub fn symmetric_topology(sites: usize, one_way_ms: u64) -> String {
    let regions: Vec<String> = (0..sites).map(|s| format!("\"site{s}\"")).collect();
    let rows: Vec<String> = (0..sites)
        .map(|i| {
            let row: Vec<String> = (0..sites)
                .map(|j| if i == j { 0 } else { one_way_ms }.to_string())
                .collect();
            format!("[{}]", row.join(", "))
        })
        .collect();
    format!(
        "# WAN delay between Steward sites (region i is site i); applied by the\n\
         # sender's delay shim. Node placement is filled in from the sites.\n\
         regions = [{}]\none_way_ms = [{}]\n",
        regions.join(", "),
        rows.join(", ")
    )
}

/// Write what a Steward deployment of `dep` (one site per group, each
/// 3f+1 with one f) needs besides the deployment: each site's threshold
/// key (`steward/site-<s>/`), the client keys, `steward.toml` and the
/// default `topology.toml`; returns each node's `[steward]` section, in
/// node order.
pub(crate) fn write_files(out: &Path, dep: &Deployment) -> Result<Vec<StewardSection>> {
    let f = dep.groups[0].f;
    for g in &dep.groups {
        if g.f != f || g.replicas.len() != 3 * f + 1 {
            bail!(
                "Steward sites need 3f+1 servers each with one f: group {} has {} servers, f = {}",
                g.id.0,
                g.replicas.len(),
                g.f
            );
        }
    }
    let sites = dep.groups.len();
    let mut site_keys = Vec::new();
    let mut sections = Vec::new();
    for (s, g) in dep.groups.iter().enumerate() {
        let dir = out.join("steward").join(format!("site-{s}"));
        site_keys.push(write_threshold_keys(&dir, 2 * f + 1, 3 * f + 1)?);
        for i in 0..g.replicas.len() {
            sections.push(StewardSection {
                sites: SITES_FILE.into(),
                share: format!("steward/site-{s}/share-{i}.key").into(),
                topology: Some(TOPOLOGY_FILE.into()),
            });
        }
    }
    let mut names: Vec<(String, u32)> = Vec::new();
    for k in 0..sites * LOAD_CLIENTS_PER_SITE {
        names.push((format!("load-{k}"), (k % sites) as u32));
    }
    for s in 0..sites {
        names.push((format!("cli-{s}"), s as u32));
    }
    for g in &dep.groups {
        for r in &g.replicas {
            names.push((format!("gateway-{}", r.id.0), g.id.0));
        }
    }
    std::fs::create_dir_all(out.join("steward").join("clients"))?;
    let mut clients = Vec::new();
    for (name, site) in names {
        let id = Identity::generate();
        write_key(&client_key_path(out, &name), &id)?;
        let p = id.public();
        clients.push(ClientEntry {
            name,
            site,
            sign_key: hex::encode(p.sign),
            dh_key: hex::encode(p.dh),
        });
    }
    let file = SitesFile {
        f,
        site_keys,
        clients,
    };
    let text = format!(
        "# Steward sites: site s is the deployment's group s (3f+1 servers, in\n\
         # member order = threshold share index); the provisioned clients.\n{}",
        toml::to_string_pretty(&file)?
    );
    std::fs::write(out.join(SITES_FILE), text)?;
    std::fs::write(
        out.join(TOPOLOGY_FILE),
        symmetric_topology(sites, DEFAULT_WAN_MS),
    )?;
    Ok(sections)
}

/// A Steward deployment as its processes load it: the deployment, the
/// protocol configuration, the provisioned clients and the folder of the
/// sites file (where the client keys are).
pub struct Setup {
    pub dep: Deployment,
    pub cfg: Arc<Config>,
    /// Every provisioned client: name → (id, public key, home site).
    pub clients: BTreeMap<String, (ClientId, PublicIdentity, SiteId)>,
    pub dir: PathBuf,
}

impl Setup {
    /// Load `sites` (a `steward.toml`) for deployment `dep`, with the site
    /// SMR parameters `params`.
    pub fn load(dep: Deployment, sites: &Path, params: byzscale_smr::Params) -> Result<Setup> {
        let text = std::fs::read_to_string(sites)
            .with_context(|| format!("reading {}", sites.display()))?;
        let file: SitesFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", sites.display()))?;
        if file.site_keys.len() != dep.groups.len() {
            bail!(
                "{} has {} site keys but the deployment has {} groups (one per site)",
                sites.display(),
                file.site_keys.len(),
                dep.groups.len()
            );
        }
        let mut site_list = Vec::new();
        for (g, k) in dep.groups.iter().zip(&file.site_keys) {
            let bytes = hex::decode(k.trim())
                .with_context(|| format!("{}: site {} key is not hex", sites.display(), g.id.0))?;
            let key = GroupKey::from_bytes(&bytes)
                .with_context(|| format!("{}: site {} key", sites.display(), g.id.0))?;
            site_list.push(Site {
                members: g.replicas.iter().map(|r| r.id).collect(),
                key,
            });
        }
        let mut clients = BTreeMap::new();
        let mut homes = BTreeMap::new();
        for c in &file.clients {
            let public = c.public()?;
            let id = ClientId::of_key(&public);
            let site = SiteId(c.site);
            if homes.insert(id, site).is_some() || clients.contains_key(&c.name) {
                bail!("{}: client {} is listed twice", sites.display(), c.name);
            }
            clients.insert(c.name.clone(), (id, public, site));
        }
        let cfg = Config::new(site_list, file.f, homes, params)
            .map_err(|e| anyhow!("{}: {e}", sites.display()))?;
        let dir = sites.parent().unwrap_or(Path::new(".")).to_path_buf();
        Ok(Setup {
            dep,
            cfg: Arc::new(cfg),
            clients,
            dir,
        })
    }

    /// Client `name`'s identity (from its key file) and home site.
    pub fn client(&self, name: &str) -> Result<(Identity, SiteId)> {
        let (_, _, site) = self.clients.get(name).ok_or_else(|| {
            anyhow!(
                "no client {name} in {}",
                self.dir.join(SITES_FILE).display()
            )
        })?;
        let path = client_key_path(&self.dir, name);
        let id = byzscale_net::read_identity(&path)
            .with_context(|| format!("reading client key {}", path.display()))?;
        Ok((id, *site))
    }
}

/// The delay matrix of `topology` (a delay-shim TOML with one region per
/// site, in site order) with every server and client of `setup` placed at
/// its site (the file's own `assign` and `clients` are replaced).
pub fn delay_matrix(topology: &Path, setup: &Setup) -> Result<DelayMatrix> {
    let text = std::fs::read_to_string(topology)
        .with_context(|| format!("reading topology {}", topology.display()))?;
    let mut t: toml::Table = toml::from_str(&text)
        .with_context(|| format!("parsing topology {}", topology.display()))?;
    let regions: Vec<String> = t
        .get("regions")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let sites = setup.cfg.sites.len();
    if regions.len() != sites {
        bail!(
            "topology {} has {} regions; the deployment has {sites} sites (region i is site i)",
            topology.display(),
            regions.len()
        );
    }
    let mut assign = toml::Table::new();
    for (s, site) in setup.cfg.sites.iter().enumerate() {
        for m in &site.members {
            assign.insert(m.0.to_string(), regions[s].clone().into());
        }
    }
    for (id, _, site) in setup.clients.values() {
        assign.insert(
            format!("c{}", id.0),
            regions[site.0 as usize].clone().into(),
        );
    }
    t.remove("clients");
    t.insert("assign".into(), assign.into());
    DelayMatrix::from_toml(&toml::to_string(&t)?)
        .map_err(|e| anyhow!("topology {}: {e}", topology.display()))
}

// ---------------------------------------------------------------- node

/// A Steward server's records as rows of its store: its site SMR
/// replica's, through [`SmrJournal`] (module docs, Durability).
struct StewardJournal(SmrJournal);

impl Journal for StewardJournal {
    type Record = server::Record;

    fn record(&mut self, r: server::Record) {
        match r {
            server::Record::Smr(r) => self.0.record(r),
        }
    }

    fn flush(&mut self) -> byzscale_net::Batch {
        self.0.flush()
    }
}

/// The node's runtime configuration: a replica of the deployment that also
/// knows its site members' client identities (their site operations carry
/// MAC authenticators for them) and every provisioned client (forwarded
/// updates are verified with their keys); the delay shim if a topology is
/// given.
fn server_config(n: &LoadedNode, setup: &Setup, delay: Option<DelayMatrix>) -> Result<NodeConfig> {
    let me = n.me();
    let mut cfg =
        NodeConfig::replica(&setup.dep, me, n.identity.clone(), WireKind::Steward.byte())?;
    for (m, identity) in site_keys(setup, me)? {
        cfg.transport.peers.push(PeerConfig {
            addr: Addr::Client(ClientId::for_replica(m)),
            identity,
            socket: None,
        });
    }
    for (id, public, _) in setup.clients.values() {
        cfg.transport.peers.push(PeerConfig {
            addr: Addr::Client(*id),
            identity: *public,
            socket: None,
        });
    }
    Ok(match delay {
        Some(d) => cfg.with_delay(d),
        None => cfg,
    })
}

/// The members of server `me`'s site with their node keys.
fn site_keys(setup: &Setup, me: NodeId) -> Result<Vec<(NodeId, PublicIdentity)>> {
    let (site, _) = setup
        .cfg
        .site_of(me)
        .ok_or_else(|| anyhow!("node {me} is in no site"))?;
    let members = &setup.cfg.sites[site.0 as usize].members;
    members
        .iter()
        .map(|m| {
            let (_, rc) = setup.dep.replica(*m).expect("a site member is a replica");
            Ok((*m, rc.public_identity()?))
        })
        .collect()
}

/// This server's identity as the client `ClientId::for_replica(me)` of its
/// site's SMR, with its site's members as peers.
fn submitter_crypto(n: &LoadedNode, setup: &Setup) -> Result<Crypto> {
    let me = n.me();
    let as_client = Addr::Client(ClientId::for_replica(me));
    let mut c = Crypto::new(as_client, n.identity.clone(), CryptoMode::Real);
    for (m, identity) in site_keys(setup, me)? {
        c.add_peer(Addr::Node(m), identity)
            .map_err(|e| anyhow!("key of server {m}: {e}"))?;
    }
    Ok(c)
}

/// Microseconds since the Unix epoch: a number above every earlier run's
/// (a client's first timestamp).
fn now_micros() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as u64
}

/// The `[steward]` section of a node file, and the deployment it sets up.
fn node_setup(n: &LoadedNode) -> Result<(&StewardSection, Setup)> {
    let section = n.file.steward.as_ref().ok_or_else(|| {
        anyhow!("a steward node file needs a [steward] section (sites, share, topology)")
    })?;
    let setup = Setup::load(n.deployment.clone(), &section.sites, n.file.smr.clone())?;
    Ok((section, setup))
}

/// `byzscale node` for a Steward server's node file.
pub(crate) async fn run_node(n: LoadedNode) -> Result<()> {
    let me = n.me();
    let (section, setup) = node_setup(&n)?;
    let key = read_key_share(&section.share)?;
    let delay = match &section.topology {
        Some(t) => Some(delay_matrix(t, &setup)?),
        None => None,
    };
    let (storage, rec, db) = persist::open(&n.file.data_dir)?;
    let (durable, fresh) = durable_from_disk(rec, &db)?;
    info!(node = %me, view = durable.view, stable = durable.low(), slots = durable.slots.len(),
          "recovering the Steward server's site SMR from disk");
    let crypto = Crypto::new(Addr::Node(me), n.identity.clone(), CryptoMode::Real);
    let server = Server::recover(
        me,
        setup.cfg.clone(),
        key,
        submitter_crypto(&n, &setup)?,
        KvStore::new(),
        durable.clone(),
        &crypto,
    )
    .map_err(|e| anyhow!("{}: {e}", db.display()))?;
    let (site, (view, executed)) = (
        server.site(),
        (server.smr().view(), server.smr().executed()),
    );
    let cfg = server_config(&n, &setup, delay)?;
    let registry = Arc::new(Registry::new());
    let pace = Duration::from_millis(n.file.persist_interval_ms);
    let journal = StewardJournal(SmrJournal::new(durable, fresh));
    let (records, persister) = Persister::start(journal, storage, pace, &registry)?;
    let (rt, mut outputs) = Runtime::start_with_records(server, cfg, None, registry, Some(records))
        .await
        .context("starting the Steward server runtime")?;
    let (_, rc) = n.deployment.replica(me).expect("checked by NodeFile::load");
    info!(node = %me, %site, addr = %rc.addr, metrics = ?rc.metrics_addr, "Steward server running");
    let reg = rt.registry().clone();
    let smr = ReplicaMetrics::register(me, &reg, "Site operations in decided slots");
    smr.recovered(view, executed);
    let global_seq = reg.gauge(
        "byzscale_st_executed_seq",
        "Last globally ordered seq executed here",
    );
    let updates = reg.counter("byzscale_st_executed_total", "Updates executed here");
    let global_view = reg.gauge("byzscale_st_global_view", "Global view of this site");
    let gateway = match &rc.redis_addr {
        Some(addr) => {
            let (id, home) = setup.client(&format!("gateway-{}", me.0))?;
            let opts = byzscale_gateway::GatewayOptions {
                unordered_reads: true,
                max_op_bytes: setup.cfg.max_update_op(),
                ..Default::default()
            };
            let connect = StewardClient::connect(&setup, id, home);
            Some(Gateway::start(me, addr, opts, &reg, connect).await?)
        }
        None => None,
    };
    serve_outputs(me, &mut outputs, |o| match o {
        server::Output::Executed { seq, .. } => {
            updates.inc();
            global_seq.set(seq.0 as i64);
        }
        server::Output::Smr(o) => smr.observe(&o),
        server::Output::GlobalView { gv } => {
            global_view.set(gv.0 as i64);
            info!(node = %me, gv = gv.0, "global view installed");
        }
    })
    .await;
    if let Some(g) = gateway {
        g.stop().await;
    }
    let _ = rt.stop().await;
    persister.finish().await
}

// ---------------------------------------------------------------- client

/// A Steward client over TCP: a `steward::Client` (sequential: one update
/// or read at a time, in call order) of a provisioned identity, connected to
/// its home site's servers only. Shared by many callers, each awaiting its
/// own answer.
pub struct StewardClient {
    calls: Calls<steward::Client, Vec<u8>>,
    site: SiteId,
}

impl StewardClient {
    /// Connect client `identity` (provisioned in `setup`, home site `site`)
    /// to its site's servers; its updates are numbered from now
    /// (microseconds), above what an earlier process with this key sent.
    pub async fn connect(setup: &Setup, identity: Identity, site: SiteId) -> Result<Self> {
        let id = ClientId::of_key(&identity.public());
        if setup.cfg.clients.get(&id) != Some(&site) {
            bail!("client {id} is not provisioned at {site}");
        }
        let members = setup.cfg.sites[site.0 as usize].members.clone();
        let mut cfg = NodeConfig::client(&setup.dep, id, identity, WireKind::Steward.byte())?;
        cfg.transport
            .peers
            .retain(|p| p.addr.node().is_some_and(|n| members.contains(&n)));
        let retry = CLIENT_RETRY.as_nanos() as u64;
        let client = steward::Client::new(id, site, members.clone(), setup.cfg.f, retry)
            .starting_after(now_micros());
        // the client answers its inputs one at a time, in input order: the
        // k-th output answers call k
        let answered = AtomicU64::new(0);
        let calls = Calls::start_with(
            cfg,
            Some(members.len()),
            UNWINDOWED_LIMIT,
            client,
            move |o| {
                let n = answered.fetch_add(1, Ordering::Relaxed) + 1;
                match o {
                    steward::client::Output::Done { result, .. }
                    | steward::client::Output::LocalRead { result, .. } => Some((n, result)),
                }
            },
        )
        .await?;
        Ok(StewardClient { calls, site })
    }

    /// The client's home site.
    pub fn site(&self) -> SiteId {
        self.site
    }

    /// Run `op` as an update (globally ordered) or, with `read_only`, as a
    /// local read at the client's site (not linearizable across sites); its
    /// result.
    pub async fn call(&self, op: Vec<u8>, read_only: bool) -> Result<Vec<u8>> {
        let input = |_| match read_only {
            true => steward::client::Input::Read(op),
            false => steward::client::Input::Submit(op),
        };
        Ok(self.calls.call(input, None).await?)
    }

    /// Run a KV command: writes globally, reads (with `read_only`) locally.
    pub async fn kv(&self, op: &KvOp, read_only: bool) -> Result<KvReply> {
        let bytes = self.call(op.encode(), read_only).await?;
        KvReply::decode(&bytes).map_err(|e| anyhow!("undecodable reply: {e}"))
    }

    /// Stop the client (calls still waiting fail).
    pub async fn stop(&self) {
        self.calls.stop().await;
    }
}

impl KvClient for StewardClient {
    fn exec(&self, op: KvOp, read_only: bool) -> BoxFuture<'_, Result<KvReply, String>> {
        Box::pin(async move { self.kv(&op, read_only).await.map_err(|e| e.to_string()) })
    }
    /// One stream: the client runs its calls one at a time in call order.
    fn stream(&self, _op: &KvOp) -> Option<u64> {
        Some(0)
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(StewardClient::stop(self))
    }
}

/// What `byzscale client` uses against a Steward deployment `config` names
/// (a Steward node file, or a `deployment.toml` with a `steward.toml` beside
/// it): the setup and the site to use (the node file's site, else site 0).
pub(crate) struct ClientSetup {
    setup: Setup,
    site: SiteId,
}

/// [`ClientSetup`] if `config` names a Steward deployment.
pub(crate) fn client_setup(config: &Path) -> Result<Option<ClientSetup>> {
    if let Ok(dep) = load_deployment(config) {
        let sites = config.parent().unwrap_or(Path::new(".")).join(SITES_FILE);
        if !sites.exists() {
            return Ok(None);
        }
        let setup = Setup::load(dep, &sites, crate::generate::local_params())?;
        return Ok(Some(ClientSetup {
            setup,
            site: SiteId(0),
        }));
    }
    let Ok(n) = NodeFile::load(config) else {
        return Ok(None);
    };
    if n.file.protocol != NodeProtocol::Steward {
        return Ok(None);
    }
    let (_, setup) = node_setup(&n)?;
    let (site, _) = setup.cfg.site_of(n.me()).expect("checked by Setup");
    Ok(Some(ClientSetup { setup, site }))
}

/// `byzscale client` against a Steward deployment: as the site's `cli-<s>`
/// client; reads are local unless `ordered` (then an update).
pub(crate) async fn client_command(
    c: &ClientSetup,
    ordered: bool,
    words: &[String],
) -> Result<String> {
    let op = KvOp::from_args(words).map_err(|e| anyhow!(e))?;
    let (id, site) = c.setup.client(&format!("cli-{}", c.site.0))?;
    let client = StewardClient::connect(&c.setup, id, site).await?;
    let ro = op.is_read_only() && !ordered;
    let r = tokio::time::timeout(CLIENT_COMMAND_WAIT, client.kv(&op, ro)).await;
    client.stop().await;
    client_command_output(r, "the site")
}

// ---------------------------------------------------------------- cluster

/// What `byzscale cluster --protocol steward` reports.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct StewardReport {
    pub protocol: String,
    pub sites: usize,
    pub faulty_per_site: usize,
    pub servers: usize,
    pub topology: String,
    pub clients: usize,
    pub duration_s: f64,
    pub payload: usize,
    pub read_ratio: f64,
    pub throughput_ops: f64,
    /// Globally ordered updates per second.
    pub throughput_updates: f64,
    /// Local reads per second.
    pub throughput_reads: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub latency_update_p50_ms: f64,
    pub latency_update_p99_ms: f64,
    pub latency_read_p50_ms: f64,
    pub latency_read_p99_ms: f64,
    pub committed: u64,
    pub committed_updates: u64,
    pub committed_reads: u64,
    pub errors: u64,
    pub expired: u64,
    pub dir: String,
    #[serde(flatten)]
    pub load: LoadSummary,
}

fn check(a: &ClusterSpec) -> Result<()> {
    if a.sites == 0 {
        bail!("--sites must be at least 1");
    }
    let n = 3 * a.faulty_per_site + 1;
    if a.sites * n > 100 {
        bail!(
            "{} sites of {n} servers make {} processes; a local cluster has at most 100",
            a.sites,
            a.sites * n
        );
    }
    check_load(a.clients, a.duration)?;
    if a.clients > a.sites * LOAD_CLIENTS_PER_SITE {
        bail!(
            "--clients {}: at most {LOAD_CLIENTS_PER_SITE} per site ({} for {} sites) are provisioned",
            a.clients,
            a.sites * LOAD_CLIENTS_PER_SITE,
            a.sites
        );
    }
    if !(0.0..=1.0).contains(&a.read_ratio) {
        bail!("--read-ratio must be between 0 and 1");
    }
    if a.crash_leader_at.is_some() {
        bail!("--crash-leader-at is not supported with --protocol steward");
    }
    if let Some(t) = &a.topology {
        if !t.is_file() {
            bail!("--topology {}: no such file", t.display());
        }
    }
    Ok(())
}

/// `byzscale cluster --protocol steward`: S sites of 3f+1 server processes,
/// the WAN through the delay shim, closed-loop clients spread over the
/// sites (writes are global updates, `--read-ratio` of GETs local reads).
pub(crate) async fn cluster(a: &ClusterSpec) -> Result<ClusterOutcome> {
    check(a)?;
    let f = a.faulty_per_site;
    let topology = match &a.topology {
        Some(t) => Some(std::fs::canonicalize(t)?),
        None => None,
    };
    let spec = LocalSpec {
        groups: &vec![(3 * f + 1, f); a.sites],
        protocol: NodeProtocol::Steward,
        dir: a.dir.clone(),
        keep: a.keep,
        netns: None,
    };
    let local = Local::start(spec, |nf| {
        if let (Some(s), Some(t)) = (nf.steward.as_mut(), &topology) {
            s.topology = Some(t.clone());
        }
    })
    .await?;
    local.wait_for(crate::generate::Ports::redis).await?;
    let setup = Setup::load(
        local.dep.clone(),
        &local.dir.join(SITES_FILE),
        crate::generate::local_params(),
    )?;
    let topo = match &topology {
        Some(t) => t.display().to_string(),
        None => format!("symmetric {DEFAULT_WAN_MS} ms"),
    };
    let r = if a.duration > 0.0 {
        run_load(&setup, topology.as_deref(), a).await?
    } else {
        LoadResult::empty()
    };
    let report = report(a, topo, &r, &local);
    let endpoints = a.keep.then(|| {
        let (p, total) = (&local.ports, local.len());
        let n = 3 * f + 1;
        local.endpoints(serde_json::json!({
            "redis": p.redis(0),
            "replicas": (0..total).map(|i| p.replica(i)).collect::<Vec<_>>(),
            "redis_all": (0..total).map(|i| p.redis(i)).collect::<Vec<_>>(),
            "site_members": (0..a.sites).map(|s| (s * n..(s + 1) * n).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "sites_file": local.dir.join(SITES_FILE).display().to_string(),
        }))
    });
    ClusterOutcome::new(&report, table(&report), endpoints, local)
}

fn report(a: &ClusterSpec, topology: String, r: &LoadResult, local: &Local) -> StewardReport {
    let (uh, rh) = (r.class(UPDATE), r.class(READ));
    let (cu, cr) = (r.committed_in(UPDATE), r.committed_in(READ));
    StewardReport {
        protocol: "steward".into(),
        sites: a.sites,
        faulty_per_site: a.faulty_per_site,
        servers: local.len(),
        topology,
        clients: a.clients,
        duration_s: a.duration,
        payload: a.payload,
        read_ratio: a.read_ratio,
        throughput_ops: r.throughput(cu + cr),
        throughput_updates: r.throughput(cu),
        throughput_reads: r.throughput(cr),
        p50_ms: ms(&r.hist, 0.5),
        p99_ms: ms(&r.hist, 0.99),
        latency_update_p50_ms: ms(&uh, 0.5),
        latency_update_p99_ms: ms(&uh, 0.99),
        latency_read_p50_ms: ms(&rh, 0.5),
        latency_read_p99_ms: ms(&rh, 0.99),
        committed: cu + cr,
        committed_updates: cu,
        committed_reads: cr,
        errors: r.errors,
        expired: r.expired,
        dir: local.dir_label(),
        load: r.summary(),
    }
}

fn table(r: &StewardReport) -> String {
    let mut t = format!(
        "byzscale cluster --protocol steward: {} sites x {} servers (f = {} per site), {}, {} clients, {:.1} s, {} B values, read ratio {}\n",
        r.sites,
        3 * r.faulty_per_site + 1,
        r.faulty_per_site,
        r.topology,
        r.clients,
        r.duration_s,
        r.payload,
        r.read_ratio
    );
    t += &format!(
        "  throughput   {:>10.1} ops/s  (updates {:.1}/s, local reads {:.1}/s) over {:.1} s\n",
        r.throughput_ops, r.throughput_updates, r.throughput_reads, r.load.window_s
    );
    for (what, p50, p99) in [
        ("latency", r.p50_ms, r.p99_ms),
        ("updates", r.latency_update_p50_ms, r.latency_update_p99_ms),
        ("reads", r.latency_read_p50_ms, r.latency_read_p99_ms),
    ] {
        t += &format!("  {what:<12} p50 {p50:.2} ms   p99 {p99:.2} ms\n");
    }
    t += &format!(
        "  committed    {:>10}   (updates {}, reads {})   errors {}   expired {}   in flight at the end {}\n",
        r.committed, r.committed_updates, r.committed_reads, r.errors, r.expired, r.load.in_flight_at_end
    );
    t + &format!("  files        {}\n", r.dir)
}

// ---------------------------------------------------------------- load

/// The latency classes of the workload.
const UPDATE: usize = 0;
const READ: usize = 1;

/// One sequential Steward client per closed-loop worker (`load-<w>`, home
/// site w mod S), each first writing once (not measured) so that every
/// client reaches its site and the sites order updates.
async fn run_load(setup: &Setup, topology: Option<&Path>, a: &ClusterSpec) -> Result<LoadResult> {
    let _ = topology; // the clients talk to their own site only: no WAN delay
    let mut clients = Vec::new();
    for w in 0..a.clients {
        let (id, site) = setup.client(&format!("load-{w}"))?;
        clients.push(Arc::new(StewardClient::connect(setup, id, site).await?));
    }
    let mut warm = tokio::task::JoinSet::new();
    for (w, c) in clients.iter().enumerate() {
        let c = c.clone();
        let op = KvOp::Set(format!("warm:{w}").into_bytes(), b"up".to_vec());
        warm.spawn(
            async move { tokio::time::timeout(Duration::from_secs(60), c.kv(&op, false)).await },
        );
    }
    while let Some(r) = warm.join_next().await {
        match r? {
            Ok(Ok(KvReply::Ok)) => {}
            Ok(Ok(r)) => bail!("warm-up SET answered {r}"),
            Ok(Err(e)) => bail!("warm-up SET failed: {e}"),
            Err(_) => bail!("the sites did not order a warm-up SET within 60 s"),
        }
    }
    let (ratio, value) = (a.read_ratio, vec![b'x'; a.payload]);
    let spec = LoadSpec::closed_loop(a.clients, a.duration);
    let cs = clients.clone();
    let r = Load::run(&spec, a.progress, move |w, rng| {
        let c = cs[w % cs.len()].clone();
        let key = format!("key:{}", rng.gen_range(0..10_000)).into_bytes();
        let read = rng.gen_bool(ratio);
        let (op, class) = match read {
            true => (KvOp::Get(key), READ),
            false => (KvOp::Set(key, value.clone()), UPDATE),
        };
        (class, async move {
            match c.kv(&op, read).await? {
                KvReply::Error(e) => bail!("{e}"),
                _ => Ok(()),
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
    use crate::generate::{generate, read_group_key, Ports};

    /// The generator writes a deployment every server loads: sites from
    /// the groups with their dealt keys, each server's share at its index,
    /// the provisioned clients at their home sites, and the default
    /// topology placing each server and client at its site.
    #[test]
    fn generated_steward_deployment_loads_with_keys_clients_and_topology() {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports {
            hosts: vec!["127.0.0.1".into()],
            base: 41_700,
        };
        generate(
            dir.path(),
            &[(4, 1); 3],
            &ports,
            NodeProtocol::Steward,
            |_| {},
        )
        .unwrap();
        let n = NodeFile::load(&dir.path().join("node-6.toml")).unwrap();
        let (section, setup) = node_setup(&n).unwrap();
        assert_eq!(setup.cfg.sites.len(), 3);
        assert_eq!(setup.cfg.site_of(NodeId(6)), Some((SiteId(1), 2)));
        let share = read_key_share(&section.share).unwrap();
        assert_eq!(share.index(), 2);
        let site1 = read_group_key(&dir.path().join("steward/site-1/group.key")).unwrap();
        let msg = b"m";
        let sig = share.sign(msg);
        assert_eq!(setup.cfg.sites[1].key.to_bytes(), site1.to_bytes());
        assert!(site1.verify_share(msg, &sig));
        assert!(!setup.cfg.sites[0].key.verify_share(msg, &sig));
        let (id, home) = setup.client("load-4").unwrap();
        assert_eq!(home, SiteId(1));
        assert_eq!(
            setup.cfg.clients[&ClientId::of_key(&id.public())],
            SiteId(1)
        );
        assert_eq!(setup.client("gateway-11").unwrap().1, SiteId(2));
        assert_eq!(setup.cfg.clients.len(), 3 * LOAD_CLIENTS_PER_SITE + 3 + 12);
        let m = delay_matrix(section.topology.as_ref().unwrap(), &setup).unwrap();
        let (n0, n5) = (Addr::Node(NodeId(0)), Addr::Node(NodeId(5)));
        assert_eq!(m.link(n0, n5).unwrap().0, Duration::from_millis(50));
        assert_eq!(m.link(n0, Addr::Node(NodeId(3))), None, "inside a site");
        let c = Addr::Client(ClientId::of_key(&id.public()));
        assert_eq!(
            m.link(Addr::Node(NodeId(4)), c),
            None,
            "a client at its site"
        );
        assert_eq!(m.link(n0, c).unwrap().0, Duration::from_millis(50));
        // a topology with another number of regions is refused, naming it
        let bad = dir.path().join("two.toml");
        std::fs::write(&bad, symmetric_topology(2, 10)).unwrap();
        let e = delay_matrix(&bad, &setup).unwrap_err().to_string();
        assert!(e.contains("2 regions") && e.contains("3 sites"), "{e}");
    }
}
