//! Deployment files: the per-node TOML that `byzscale node` reads, and the
//! generation of a whole deployment (keys, `deployment.toml`, one node file per
//! replica) for `byzscale config local` and `byzscale cluster`.
//!
//! ```toml
//! # node-0.toml (paths are relative to this file)
//! deployment = "deployment.toml"
//! node = 0
//! key = "node-0.key"
//! data_dir = "data/node-0"
//! service = "kv"  # SMR nodes: "kv" (default) or "bank"
//! [smr]            # optional overrides of byzscale_smr::Params
//! batch_max_requests = 400
//! [at2]            # AT2 nodes (protocol = "at2"); every node of a deployment
//! initial_balance = 1000000000   # must use the same genesis settings
//! ```
//!
//! A ByzCast node file also has `protocol = "byzcast"` and a `[byzcast]`
//! section naming the overlay tree file (`tree = "tree.toml"`, written by the
//! generator next to `deployment.toml`; see [`crate::byzcast_deploy`]).

use anyhow::{bail, Context, Result};
use byzscale_core::config::{Deployment, GroupConfig, ReplicaConfig};
use byzscale_core::crypto::Identity;
use byzscale_core::quorum::FaultModel;
use byzscale_core::{GroupId, NodeId};
use byzscale_smr::Params;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The wire kind byte of SMR frames.
pub const SMR_KIND: u8 = 1;
/// The wire kind byte of AT2 frames (broadcast messages and AT2 client
/// requests).
pub const AT2_KIND: u8 = 3;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// What this node runs (default: an SMR replica of the KV store).
    #[serde(default)]
    pub protocol: NodeProtocol,
    pub deployment: PathBuf,
    pub node: u32,
    pub key: PathBuf,
    pub data_dir: PathBuf,
    /// Group commit: at most one durable (fsync'd) write per this many ms.
    #[serde(default = "default_persist_interval_ms")]
    pub persist_interval_ms: u64,
    #[serde(default)]
    pub smr: Params,
    /// ByzCast nodes: the overlay tree (see [`crate::byzcast_deploy`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byzcast: Option<crate::byzcast_deploy::ByzcastSection>,
    /// The replicated service of an SMR node.
    #[serde(default, skip_serializing_if = "SmrService::is_kv")]
    pub service: SmrService,
    /// Settings of an AT2 node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at2: Option<At2Settings>,
}

fn default_persist_interval_ms() -> u64 {
    10
}

/// What an SMR node replicates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmrService {
    /// The KV store (Redis semantics), with the Redis gateway.
    #[default]
    Kv,
    /// The bank of `byzscale_apps::bank` (no gateway, no persistence; for
    /// comparing with AT2).
    Bank,
}

impl SmrService {
    fn is_kv(&self) -> bool {
        *self == SmrService::Kv
    }
}

/// `[at2]` of an AT2 node file. The genesis (accounts, owners, balances)
/// follows from the deployment and these settings, so every node of a
/// deployment must use the same `initial_balance` and `accounts_per_node`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct At2Settings {
    /// Initial balance of every account.
    pub initial_balance: u64,
    /// Accounts each node owns: node i (in deployment order, of N) owns
    /// accounts i, i+N, i+2N, …
    pub accounts_per_node: u32,
    /// Transfers per broadcast (1: no batching).
    pub max_batch: usize,
    /// Transfer requests queued at an owner while its broadcast is
    /// outstanding; more are refused as busy.
    pub queue_limit: usize,
    /// Bracha retransmission period in milliseconds (0: none; links are then
    /// assumed reliable, which TCP with drop-oldest queues is not).
    pub retransmit_ms: u64,
    /// Outgoing frames queued per peer before the oldest is dropped (the
    /// transport's default is 8192; small values exercise retransmission).
    pub peer_queue_frames: usize,
}

impl Default for At2Settings {
    fn default() -> Self {
        At2Settings {
            initial_balance: 1_000_000_000,
            accounts_per_node: 1,
            max_batch: 256,
            queue_limit: 4096,
            retransmit_ms: 200,
            peer_queue_frames: 8192,
        }
    }
}

/// The protocol a node file starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeProtocol {
    #[default]
    Smr,
    Byzcast,
    At2,
}

/// A node file with its paths resolved against the file's directory.
pub struct LoadedNode {
    pub file: NodeFile,
    pub deployment: Deployment,
    pub identity: Identity,
}

impl NodeFile {
    pub fn load(path: &Path) -> Result<LoadedNode> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading node config {}", path.display()))?;
        let mut file: NodeFile = toml::from_str(&text)
            .with_context(|| format!("parsing node config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let tree = file.byzcast.as_mut().map(|b| &mut b.tree);
        for p in [&mut file.deployment, &mut file.key, &mut file.data_dir]
            .into_iter()
            .chain(tree)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let deployment = load_deployment(&file.deployment)?;
        if deployment.replica(NodeId(file.node)).is_none() {
            bail!(
                "node {} is not a replica of {}",
                file.node,
                file.deployment.display()
            );
        }
        let identity = byzscale_net::read_identity(&file.key)
            .with_context(|| format!("reading key file {}", file.key.display()))?;
        Ok(LoadedNode {
            file,
            deployment,
            identity,
        })
    }
}

pub fn load_deployment(path: &Path) -> Result<Deployment> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading deployment {}", path.display()))?;
    Deployment::from_toml(&text).with_context(|| format!("invalid deployment {}", path.display()))
}

/// Where the replicas of a generated deployment listen.
#[derive(Clone, Debug)]
pub struct Ports {
    pub hosts: Vec<String>,
    pub base: u16,
}

impl Ports {
    pub fn replica(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.base as usize + i)
    }
    pub fn metrics(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.base as usize + 100 + i)
    }
    pub fn redis(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.base as usize + 200 + i)
    }
    pub fn http(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.base as usize + 300 + i)
    }
    fn host(&self, i: usize) -> &str {
        &self.hosts[i % self.hosts.len()]
    }
}

/// Write keys, `deployment.toml` and `node-<i>.toml` for one group of `n`
/// replicas tolerating `f` faults (n = 3f+1+Δ) into `out`.
pub fn generate(out: &Path, n: usize, f: usize, ports: &Ports) -> Result<Deployment> {
    generate_groups(out, &[(n, f)], ports, NodeProtocol::Smr)
}

/// Write keys, `deployment.toml` and one `node-<i>.toml` per replica for
/// groups `0..` of `(n, f)` each, running `protocol`, into `out`. Node ids and
/// ports are numbered across groups: group 0 holds nodes `0..n0`, group 1 the
/// next `n1`, and so on.
pub fn generate_groups(
    out: &Path,
    groups: &[(usize, usize)],
    ports: &Ports,
    protocol: NodeProtocol,
) -> Result<Deployment> {
    generate_groups_with(out, groups, ports, protocol, |_| {})
}

/// [`generate_groups`], with `patch` applied to every node file before it is
/// written.
pub fn generate_groups_with(
    out: &Path,
    groups: &[(usize, usize)],
    ports: &Ports,
    protocol: NodeProtocol,
    patch: impl Fn(&mut NodeFile),
) -> Result<Deployment> {
    if groups.is_empty() {
        bail!("a deployment needs at least one group");
    }
    for &(n, f) in groups {
        if n == 0 {
            bail!("--replicas must be at least 1");
        }
        if n < 3 * f + 1 {
            bail!(
                "{n} replicas cannot tolerate {f} Byzantine faults (need at least {})",
                3 * f + 1
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut configs = Vec::new();
    let mut i = 0usize;
    for (g, &(n, f)) in groups.iter().enumerate() {
        let mut replicas = Vec::new();
        for _ in 0..n {
            let id = Identity::generate();
            let key = out.join(format!("node-{i}.key"));
            std::fs::write(&key, hex::encode(id.to_bytes()))
                .with_context(|| format!("writing {}", key.display()))?;
            restrict(&key);
            let p = id.public();
            replicas.push(ReplicaConfig {
                id: NodeId(i as u32),
                addr: ports.replica(i),
                sign_key: hex::encode(p.sign),
                dh_key: hex::encode(p.dh),
                metrics_addr: Some(ports.metrics(i)),
                redis_addr: (protocol != NodeProtocol::At2).then(|| ports.redis(i)),
                http_addr: (protocol == NodeProtocol::At2).then(|| ports.http(i)),
            });
            i += 1;
        }
        configs.push(GroupConfig {
            id: GroupId(g as u32),
            fault_model: FaultModel::Bft,
            f,
            delta: n - (3 * f + 1),
            vmax: None,
            replicas,
        });
    }
    let deployment = Deployment { groups: configs };
    // Δ spare replicas get WHEAT weights; validate before writing anything else
    deployment
        .validate()
        .context("generated deployment is invalid")?;
    std::fs::write(out.join("deployment.toml"), deployment.to_toml())?;
    let byzcast = match protocol {
        NodeProtocol::Byzcast => Some(crate::byzcast_deploy::write_tree(out, groups.len())?),
        _ => None,
    };
    for j in 0..i {
        let mut nf = NodeFile {
            protocol,
            deployment: "deployment.toml".into(),
            node: j as u32,
            key: format!("node-{j}.key").into(),
            data_dir: format!("data/node-{j}").into(),
            persist_interval_ms: default_persist_interval_ms(),
            smr: local_params(),
            byzcast: byzcast.clone(),
            service: SmrService::Kv,
            at2: (protocol == NodeProtocol::At2).then(At2Settings::default),
        };
        patch(&mut nf);
        std::fs::write(
            out.join(format!("node-{j}.toml")),
            toml::to_string_pretty(&nf)?,
        )?;
    }
    Ok(deployment)
}

/// Timeouts for a LAN or loopback deployment (the defaults suit a WAN).
pub fn local_params() -> Params {
    Params {
        request_timeout: 500 * 1_000_000,
        view_change_timeout: 1_000 * 1_000_000,
        client_retry: 500 * 1_000_000,
        // the Redis gateway pipelines many requests through one client
        client_window: 256,
        // a snapshot of the whole store every 512 slots (not 128): at tens of
        // thousands of requests per second, serializing, hashing and writing
        // snapshots 4x as often cost ~5% of a replica's CPU; the window stays
        // twice the interval so the leader never waits for a checkpoint
        checkpoint_interval: 512,
        window: 1024,
        // fewer, larger batches under light load: at 16 and 50 closed-loop
        // clients +30% throughput and -25% CPU per request, no change at 256
        pipeline_min_batch: 64,
        ..Params::default()
    }
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
#[cfg(not(unix))]
fn restrict(_: &Path) {}
