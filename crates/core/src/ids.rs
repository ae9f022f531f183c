//! Identities. Replicas are numbered densely within a deployment ([`NodeId`]); a
//! group ([`GroupId`]) is a set of replicas running one protocol instance; clients
//! ([`ClientId`]) are open-ended. An [`Addr`] is anything a message can be sent to.

use crate::crypto::PublicIdentity;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A replica (server) of the deployment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct NodeId(pub u32);

/// A group (shard) of replicas.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct GroupId(pub u32);

/// A client. An ordinary (networked) client's id is derived from its key with
/// [`ClientId::of_key`], so a replica can check the id a client claims against
/// the key it proves to hold. Replicas that act as clients of another group
/// (ByzCast) use ids derived with [`ClientId::for_replica`], at or above
/// [`ClientId::REPLICA_BASE`], so they never collide with ordinary clients.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct ClientId(pub u64);

impl ClientId {
    /// Client ids at or above this value belong to replicas acting as clients
    /// (their keys are the nodes' keys of the deployment). Below it, `2^63 - 1`
    /// ids are left for ordinary clients, so the id of [`ClientId::of_key`]
    /// keeps 63 bits of the hash.
    pub const REPLICA_BASE: u64 = 1 << 63;

    /// The id of replica `node` acting as a client.
    pub fn for_replica(node: NodeId) -> Self {
        ClientId(Self::REPLICA_BASE + node.0 as u64)
    }

    /// The self-certifying id of the client whose public identity is `key`:
    /// the first 8 bytes, as a little-endian `u64`, of
    /// `BLAKE3-derive("byzscale client id v1", sign || dh)`, reduced into
    /// `1..REPLICA_BASE` as `1 + h % (REPLICA_BASE - 1)`. The reduction can
    /// yield neither 0 nor a replica's id (`h % (REPLICA_BASE - 1)` is at most
    /// `REPLICA_BASE - 2`); its bias is below `2^-62` per id. Finding another
    /// key with a given id is a second preimage of a 63-bit hash (about `2^63`
    /// key generations), which is what lets a replica forget a client's key
    /// and check the id again on its next handshake (see the transport).
    pub fn of_key(key: &PublicIdentity) -> Self {
        let mut material = [0u8; 64];
        material[..32].copy_from_slice(&key.sign);
        material[32..].copy_from_slice(&key.dh);
        let h = blake3::derive_key("byzscale client id v1", &material);
        let first = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
        Self::reduce(first)
    }

    /// A 64-bit hash into the ids of ordinary clients (see [`ClientId::of_key`]).
    fn reduce(h: u64) -> Self {
        ClientId(1 + h % (Self::REPLICA_BASE - 1))
    }

    /// Whether this id belongs to a replica acting as a client.
    pub fn is_replica(self) -> bool {
        self.0 >= Self::REPLICA_BASE
    }
}

/// Where a message goes or comes from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Addr {
    Node(NodeId),
    Client(ClientId),
}

impl Addr {
    pub fn node(self) -> Option<NodeId> {
        match self {
            Addr::Node(n) => Some(n),
            Addr::Client(_) => None,
        }
    }
    pub fn client(self) -> Option<ClientId> {
        match self {
            Addr::Client(c) => Some(c),
            Addr::Node(_) => None,
        }
    }
}

impl From<NodeId> for Addr {
    fn from(n: NodeId) -> Self {
        Addr::Node(n)
    }
}
impl From<ClientId> for Addr {
    fn from(c: ClientId) -> Self {
        Addr::Client(c)
    }
}

/// `Debug` and `Display` of an id newtype: its prefix and number (`n3`, `g1`, `c7`).
macro_rules! id_display {
    ($($t:ty => $prefix:literal),* $(,)?) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    )*};
}

id_display!(NodeId => "n", GroupId => "g", ClientId => "c");

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Node(n) => write!(f, "{n:?}"),
            Addr::Client(c) => write!(f, "{c:?}"),
        }
    }
}
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Identity;

    #[test]
    fn ids_of_keys_are_stable_distinct_and_below_the_replica_base() {
        let a = Identity::from_seed([1; 32]).public();
        let b = Identity::from_seed([2; 32]).public();
        assert_eq!(ClientId::of_key(&a), ClientId::of_key(&a));
        assert_ne!(ClientId::of_key(&a), ClientId::of_key(&b));
        // either half of the identity changes the id
        let mut c = a;
        c.dh[0] ^= 1;
        assert_ne!(ClientId::of_key(&a), ClientId::of_key(&c));
        for seed in 0..=255u8 {
            let id = ClientId::of_key(&Identity::from_seed([seed; 32]).public());
            assert!(id.0 >= 1 && !id.is_replica(), "{id}");
        }
        assert!(ClientId::for_replica(NodeId(0)).is_replica());
        assert!(ClientId::for_replica(NodeId(u32::MAX)).is_replica());
    }

    #[test]
    fn the_reduction_never_yields_zero_or_a_replica_id() {
        // the extremes of the hash's first eight bytes
        for h in [
            0,
            1,
            ClientId::REPLICA_BASE - 2,
            ClientId::REPLICA_BASE - 1,
            u64::MAX,
        ] {
            let id = ClientId::reduce(h);
            assert!(id.0 >= 1 && !id.is_replica(), "{h} -> {id}");
        }
    }
}
