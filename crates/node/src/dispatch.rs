//! The one dispatcher: which protocol module runs a node file
//! ([`run_node`]), a local cluster ([`start_cluster`]) and a client command
//! ([`run_client_command`]). A new protocol adds one line to each.

use crate::cluster::{ClusterOutcome, ClusterSpec};
use crate::node_file::{deployment_of, LoadedNode, NodeProtocol, SmrService};
use crate::protocols::{at2, bank, byzcast, smr, steward};
use anyhow::Result;
use std::path::Path;

/// Run the node of a loaded node file until SIGINT or SIGTERM
/// (`byzscale node --config FILE`).
pub async fn run_node(loaded: LoadedNode) -> Result<()> {
    match loaded.file.protocol {
        NodeProtocol::Smr if loaded.file.service == SmrService::Bank => {
            bank::run_node(loaded).await
        }
        NodeProtocol::Smr if loaded.file.service == SmrService::SignedBank => {
            bank::run_signed_node(loaded).await
        }
        NodeProtocol::Smr => smr::run_node(loaded).await,
        NodeProtocol::Byzcast => byzcast::run_node(loaded).await,
        NodeProtocol::At2 => at2::run_node(loaded).await,
        NodeProtocol::Steward => steward::run_node(loaded).await,
    }
}

/// Start a local cluster and run its workload (`byzscale cluster`).
pub async fn start_cluster(spec: &ClusterSpec) -> Result<ClusterOutcome> {
    match spec.protocol {
        NodeProtocol::Smr => smr::cluster(spec).await,
        NodeProtocol::Byzcast => byzcast::cluster(spec).await,
        NodeProtocol::At2 => at2::cluster(spec).await,
        NodeProtocol::Steward => steward::cluster(spec).await,
    }
}

/// Send one command to the deployment `config` names (a deployment file or a
/// node file) and return what to print (`byzscale client`): AT2 commands go
/// to the AT2 nodes, KV commands to a ByzCast tree if a tree file is beside
/// the deployment, to the Steward sites if a `steward.toml` is (reads local
/// unless `ordered`), else to SMR group 0 (reads unordered unless `ordered`).
pub async fn run_client_command(config: &Path, ordered: bool, words: &[String]) -> Result<String> {
    if at2::is_at2_command(words) {
        return at2::client_command(&deployment_of(config)?, config, words).await;
    }
    if let Some((dep, topo)) = byzcast::client_topology(config)? {
        return byzcast::client_command(&dep, topo, words).await;
    }
    if let Some(setup) = steward::client_setup(config)? {
        return steward::client_command(&setup, ordered, words).await;
    }
    smr::client_command(&deployment_of(config)?, ordered, words).await
}
