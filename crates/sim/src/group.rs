//! A group of nodes that share one table of public keys.
//!
//! Every node of a simulated group needs the public keys of every other one
//! (channel MACs, signatures). Told one by one, N nodes would hold N² key
//! entries; here they share one [`Directory`] of deterministic identities
//! ([`crate::runner::identity`]) and derive each pairwise MAC key when it is
//! first used (see [`byzscale_core::crypto`]), so a thousand-node group costs
//! a thousand entries plus the pairs that actually talk.

use crate::cpu::CpuModel;
use crate::engine::{ProtocolActor, Sim};
use crate::net_model::NetModel;
use crate::runner::identity;
use byzscale_core::crypto::{Crypto, CryptoMode, Directory, Identity};
use byzscale_core::protocol::Protocol;
use byzscale_core::{Addr, NodeId};
use std::sync::Arc;

/// The identity kind of group members (see [`crate::runner::identity`]).
pub const MEMBER: u8 = b'g';

/// The deterministic identity of member `id`.
pub fn member_identity(id: NodeId) -> Identity {
    identity(MEMBER, id.0 as usize)
}

/// The public identities of `members`, to share.
pub fn directory(members: impl IntoIterator<Item = NodeId>) -> Arc<Directory> {
    Arc::new(Directory::new(
        members
            .into_iter()
            .map(|m| (Addr::Node(m), member_identity(m).public())),
    ))
}

/// Member `me`'s keys, knowing every peer in `directory`.
pub fn crypto(me: NodeId, directory: &Arc<Directory>, mode: CryptoMode) -> Crypto {
    Crypto::with_directory(me.into(), member_identity(me), mode, directory.clone())
}

/// A simulation of one protocol run by `members`, keyed from `directory`:
/// `members[k]` is node `NodeIdx(k)`, in region `k % regions`, and its
/// protocol is `make(members[k])`; inputs and outputs pass through unchanged.
pub fn sim<P>(
    seed: u64,
    net: NetModel,
    cpu: CpuModel,
    directory: &Arc<Directory>,
    mode: CryptoMode,
    members: &[NodeId],
    mut make: impl FnMut(NodeId) -> P,
) -> Sim<P::Message, P::Input, P::Output>
where
    P: Protocol + 'static,
    P::Input: 'static,
    P::Output: 'static,
{
    let regions = net.regions.len().max(1);
    let mut sim = Sim::new(seed, net, cpu);
    for (k, &m) in members.iter().enumerate() {
        let c = crypto(m, directory, mode);
        sim.add_node(m.into(), c, ProtocolActor::new(make(m)), k % regions);
    }
    sim
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_share_keys_without_being_told() {
        let ids: Vec<NodeId> = (0..5).map(NodeId).collect();
        let dir = directory(ids.iter().copied());
        let a = crypto(NodeId(1), &dir, CryptoMode::Real);
        let b = crypto(NodeId(4), &dir, CryptoMode::Real);
        let tag = a.mac(Addr::Node(NodeId(4)), b"hi").unwrap();
        assert!(b.verify_mac(Addr::Node(NodeId(1)), b"hi", &tag));
        let sig = a.sign(b"hi");
        assert!(b.verify(Addr::Node(NodeId(1)), b"hi", &sig).is_ok());
        assert!(!b.knows(Addr::Node(NodeId(5))));
    }
}
