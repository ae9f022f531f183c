//! Identities. Replicas are numbered densely within a deployment ([`NodeId`]); a
//! group ([`GroupId`]) is a set of replicas running one protocol instance; clients
//! ([`ClientId`]) are open-ended. An [`Addr`] is anything a message can be sent to.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A replica (server) of the deployment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct NodeId(pub u32);

/// A group (shard) of replicas.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct GroupId(pub u32);

/// A client. Replicas that act as clients of another group (ByzCast) use ids derived
/// with [`ClientId::for_replica`], so they never collide with ordinary clients.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct ClientId(pub u64);

impl ClientId {
    /// Client ids at or above this value belong to replicas acting as clients.
    pub const REPLICA_BASE: u64 = 1 << 48;
    pub fn for_replica(node: NodeId) -> Self {
        ClientId(Self::REPLICA_BASE + node.0 as u64)
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
