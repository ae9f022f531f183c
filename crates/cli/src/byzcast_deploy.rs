//! ByzCast as real processes over TCP: `byzscale node` for a ByzCast node
//! file and `byzscale cluster --protocol byzcast` (a sharded KV store).

use crate::cluster::ClusterArgs;
use crate::deploy::LoadedNode;
use anyhow::{bail, Result};

pub async fn cluster(_a: ClusterArgs) -> Result<()> {
    bail!("`byzscale cluster --protocol byzcast` is not available in this build yet")
}

pub async fn node(_n: LoadedNode) -> Result<()> {
    bail!("ByzCast nodes are not available in this build yet")
}
