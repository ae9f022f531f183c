//! AT2 as real processes over TCP: `byzscale node` for an AT2 node file,
//! `byzscale cluster --protocol at2`, and the AT2 commands of `byzscale client`.

use crate::cluster::ClusterArgs;
use crate::deploy::LoadedNode;
use anyhow::{bail, Result};
use std::path::Path;

pub async fn cluster(_a: ClusterArgs) -> Result<()> {
    bail!("`byzscale cluster --protocol at2` is not available in this build yet")
}

pub async fn node(_n: LoadedNode) -> Result<()> {
    bail!("AT2 nodes are not available in this build yet")
}

/// Whether `command` is an AT2 client command (`transfer`, `balance`, `history`).
pub fn is_at2_command(command: &[String]) -> bool {
    matches!(
        command.first().map(|c| c.to_ascii_lowercase()).as_deref(),
        Some("transfer" | "balance" | "history")
    )
}

pub async fn client(_config: &Path, _command: &[String]) -> Result<()> {
    bail!("AT2 client commands are not available in this build yet")
}
