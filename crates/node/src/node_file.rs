//! Node files: the per-node TOML that `byzscale node` reads, with its
//! per-protocol sections, and loading it (paths resolved against the file's
//! directory, the deployment and the key read and checked).
//!
//! ```toml
//! # node-0.toml (paths are relative to this file)
//! deployment = "deployment.toml"
//! node = 0
//! key = "node-0.key"
//! data_dir = "data/node-0"
//! service = "kv"  # SMR nodes: "kv" (default), "bank" or "signed-bank"
//! [smr]            # optional overrides of byzscale_smr::Params
//! batch_max_requests = 400
//! [at2]            # AT2 nodes (protocol = "at2"); every node of a deployment
//! genesis = "at2-genesis.toml"   # must use the same genesis (default: demo accounts)
//! ```
//!
//! A Steward node file has `protocol = "steward"` and a `[steward]` section
//! naming the sites file, this server's threshold key share and the WAN
//! topology (see [`StewardSection`]).
//!
//! A ByzCast node file also has `protocol = "byzcast"` and a `[byzcast]`
//! section naming the overlay tree file (`tree = "tree.toml"`, written by the
//! generator next to `deployment.toml`, see [`ByzcastSection::write_two_level`]).

use anyhow::{bail, Context, Result};
use byzscale_byzcast::Tree;
use byzscale_core::config::Deployment;
use byzscale_core::crypto::Identity;
use byzscale_core::NodeId;
use byzscale_smr::Params;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// Group commit: at most one durable (fsync'd) write per this many ms (0:
    /// back to back, each holding what arrived during the previous one).
    /// Every phase that waits for a record waits for a commit, so a pause
    /// here adds to the latency of every request.
    #[serde(default = "default_persist_interval_ms")]
    pub persist_interval_ms: u64,
    #[serde(default)]
    pub smr: Params,
    /// ByzCast nodes: the overlay tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byzcast: Option<ByzcastSection>,
    /// The replicated service of an SMR node.
    #[serde(default, skip_serializing_if = "SmrService::is_kv")]
    pub service: SmrService,
    /// Settings of an AT2 node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at2: Option<At2Settings>,
    /// Steward servers: the sites, the key share, the topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steward: Option<StewardSection>,
}

/// The `[steward]` section of a Steward server's node file (paths relative
/// to the node file). Site `s` is the deployment's group `s`; a server's
/// index in its site is its position in the group.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StewardSection {
    /// The sites file (`steward.toml`): f, every site's threshold public
    /// key, every client's public key and home site.
    pub sites: PathBuf,
    /// This server's share of its site's threshold key
    /// (`byzscale keygen --threshold 2f+1 --members 3f+1`).
    pub share: PathBuf,
    /// The WAN delay matrix (`byzscale_net::DelayMatrix` TOML with one
    /// region per site, in site order; its `assign` table is filled in from
    /// the sites). None: no delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<PathBuf>,
}

pub(crate) fn default_persist_interval_ms() -> u64 {
    0
}

/// The protocol a node file starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeProtocol {
    #[default]
    Smr,
    Byzcast,
    At2,
    Steward,
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
    /// The signed bank of `byzscale_apps::signed_bank` (owner-signed
    /// transfers, persisted like the KV store, no gateway; for comparing
    /// with AT2 like for like). Its genesis is the `[at2]` section's (the
    /// genesis file, or the demo accounts; defaults without one).
    #[serde(rename = "signed-bank")]
    SignedBank,
}

impl SmrService {
    fn is_kv(&self) -> bool {
        *self == SmrService::Kv
    }
}

/// The tree file the generator writes next to `deployment.toml`.
pub const TREE_FILE: &str = "tree.toml";

/// The `[byzcast]` section of a node file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByzcastSection {
    /// The overlay tree (TOML, see `byzscale_byzcast::TreeSpec::from_toml`),
    /// relative to the node file. Its targets, then its auxiliary groups, are
    /// the deployment's groups 0, 1, ... in order.
    pub tree: PathBuf,
}

impl ByzcastSection {
    /// Write the two-level tree of the paper's evaluation for a deployment of
    /// `groups` groups into `out`: targets g1..g(groups-1) under the auxiliary
    /// root h1 (the last group); a single group is a single target without a
    /// root.
    pub fn write_two_level(out: &Path, groups: usize) -> Result<ByzcastSection> {
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
}

/// The broadcast under an AT2 node (`[at2] broadcast`). Only the secure
/// broadcasts run AT2; `murmur` and `sieve` are named so that choosing them
/// gets an error saying why (see `check_settings` in
/// [`crate::protocols::at2`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum At2Broadcast {
    /// Bracha's deterministic secure broadcast (N > 3f).
    #[default]
    Bracha,
    /// Murmur → Sieve → Contagion, the probabilistic secure broadcast.
    Contagion,
    /// Murmur alone (probabilistic broadcast: no consistency, no totality).
    Murmur,
    /// Sieve (probabilistic consistent broadcast: no totality).
    Sieve,
}

impl At2Broadcast {
    /// Every name `broadcast` / `--broadcast` takes.
    pub const NAMES: [&'static str; 4] = ["bracha", "contagion", "murmur", "sieve"];

    pub fn name(self) -> &'static str {
        match self {
            At2Broadcast::Bracha => "bracha",
            At2Broadcast::Contagion => "contagion",
            At2Broadcast::Murmur => "murmur",
            At2Broadcast::Sieve => "sieve",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            At2Broadcast::Bracha,
            At2Broadcast::Contagion,
            At2Broadcast::Murmur,
            At2Broadcast::Sieve,
        ]
        .into_iter()
        .find(|b| b.name() == name)
    }

    fn is_bracha(&self) -> bool {
        *self == At2Broadcast::Bracha
    }
}

/// `[at2]` of an AT2 node file. Every node of a deployment must have the
/// same genesis: the same `genesis` file, or (without one) the same demo
/// settings; and the same broadcast with the same parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct At2Settings {
    /// The genesis file (relative to the node file): `[[account]]` tables
    /// with `key` (an ed25519 public key, 64 hex digits) and `balance`.
    /// Without one, the demo genesis below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis: Option<PathBuf>,
    /// Demo genesis: demo accounts 0..demo_accounts, whose secret keys
    /// anyone can derive (`byzscale_at2::demo_key`): for local clusters and
    /// tests, never for real funds.
    pub demo_accounts: u32,
    /// Demo genesis: the initial balance of every demo account.
    pub initial_balance: u64,
    /// Transfers per proposal and broadcast (1: no batching).
    pub max_batch: usize,
    /// Transfer requests queued at a node while its proposal is out; more
    /// are refused as busy.
    pub queue_limit: usize,
    /// The secure broadcast: `bracha` (default) or `contagion`.
    #[serde(skip_serializing_if = "At2Broadcast::is_bracha")]
    pub broadcast: At2Broadcast,
    /// Contagion: explicit parameters `G,E,Ê,R,R̂,D,D̂` (as `byzscale
    /// broadcast params` prints them); without them they are selected for the
    /// deployment's N, `assumed_fraction` and `epsilon`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contagion_params: Option<String>,
    /// Contagion: the Byzantine fraction β its parameters are selected for
    /// (default 0.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assumed_fraction: Option<f64>,
    /// Contagion: the per-broadcast failure probability ε they are selected
    /// for (default 1e-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// The broadcast's retransmission period in milliseconds (0: none; links
    /// are then assumed reliable, which TCP with drop-oldest queues is not).
    pub retransmit_ms: u64,
    /// Outgoing frames queued per peer before the oldest is dropped (the
    /// transport's default is 8192; small values exercise retransmission).
    pub peer_queue_frames: usize,
    /// A proposer re-sends its proposal to the members that did not vote,
    /// and with N−f votes stops waiting for the rest, after this long.
    pub vote_timeout_ms: u64,
    /// A voter refuses what it still cannot check after this long.
    pub defer_timeout_ms: u64,
}

impl Default for At2Settings {
    fn default() -> Self {
        At2Settings {
            genesis: None,
            demo_accounts: 1024,
            initial_balance: 1_000_000_000,
            max_batch: 256,
            queue_limit: 4096,
            broadcast: At2Broadcast::Bracha,
            contagion_params: None,
            assumed_fraction: None,
            epsilon: None,
            retransmit_ms: 200,
            peer_queue_frames: 8192,
            vote_timeout_ms: 100,
            defer_timeout_ms: 500,
        }
    }
}

/// A node file with its paths resolved against the file's directory.
pub struct LoadedNode {
    pub file: NodeFile,
    pub deployment: Deployment,
    pub identity: Identity,
}

impl LoadedNode {
    /// This node's id.
    pub fn me(&self) -> NodeId {
        NodeId(self.file.node)
    }
}

impl NodeFile {
    pub fn load(path: &Path) -> Result<LoadedNode> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading node config {}", path.display()))?;
        let mut file: NodeFile = toml::from_str(&text)
            .with_context(|| format!("parsing node config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let tree = file.byzcast.as_mut().map(|b| &mut b.tree);
        let genesis = file.at2.as_mut().and_then(|a| a.genesis.as_mut());
        let steward = file.steward.as_mut().into_iter().flat_map(|s| {
            [&mut s.sites, &mut s.share]
                .into_iter()
                .chain(s.topology.as_mut())
        });
        for p in [&mut file.deployment, &mut file.key, &mut file.data_dir]
            .into_iter()
            .chain(tree)
            .chain(genesis)
            .chain(steward)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        file.smr
            .validate()
            .with_context(|| format!("[smr] in node config {}", path.display()))?;
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

/// The deployment `config` names: a deployment file, or a node file (whose
/// deployment it is).
pub fn deployment_of(config: &Path) -> Result<Deployment> {
    match load_deployment(config) {
        Ok(d) => Ok(d),
        Err(_) => Ok(NodeFile::load(config)?.deployment),
    }
}
