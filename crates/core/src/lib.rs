//! byzscale core: everything the protocol crates share.
//!
//! - [`ids`]: node, group and client identities and the [`ids::Addr`] of an endpoint.
//! - [`protocol`]: the sans-IO [`protocol::Protocol`] trait, its context [`protocol::Cx`]
//!   and the [`protocol::Effect`]s a protocol asks of its driver.
//! - [`quorum`]: weighted (WHEAT) and classic quorum systems counted in votes, and a
//!   vote counter used by every protocol.
//! - [`crypto`]: ed25519 signatures (with batch verification), HMAC-SHA256 pairwise
//!   authenticators, BLAKE3 digests, and the cost meter the simulator charges.
//! - [`codec`]: the versioned, size-limited wire codec.
//! - [`config`]: the TOML deployment configuration.
//! - [`service`]: the replicated [`service::Service`] trait (execute, snapshot, restore).

pub mod codec;
pub mod config;
pub mod crypto;
pub mod ids;
pub mod protocol;
pub mod quorum;
pub mod service;

pub use ids::{Addr, ClientId, GroupId, NodeId};
pub use protocol::{Cx, Effect, Fault, Protocol, Time};
