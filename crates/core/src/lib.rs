//! byzscale core: everything the protocol crates share.
//!
//! - [`ids`]: node, group and client identities and the [`ids::Addr`] of an endpoint.
//! - [`protocol`]: the sans-IO [`protocol::Protocol`] trait, its context [`protocol::Cx`],
//!   the [`protocol::Effect`]s a protocol asks of its driver (durability included),
//!   typed fault kinds ([`fault_kinds!`]) and the nesting helper [`protocol::Step`].
//! - [`keyed`]: a keyed container of sub-instances of one protocol.
//! - [`quorum`]: weighted (WHEAT) and classic quorum systems counted in votes, and a
//!   vote counter and the matching-value [`quorum::Collector`] used by every protocol.
//! - [`crypto`]: ed25519 signatures (with batch verification), HMAC-SHA256 pairwise
//!   authenticators, BLAKE3 digests, and the cost meter the simulator charges.
//! - [`codec`]: the versioned, size-limited wire codec and the frame kinds ([`WireKind`]).
//! - [`config`]: the TOML deployment configuration.
//! - [`service`]: the replicated [`service::Service`] trait (execute, snapshot, restore).
//! - [`threshold`]: BLS12-381 threshold signatures (a group's one key, k of n members sign).

pub mod codec;
pub mod config;
pub mod crypto;
pub mod ids;
pub mod keyed;
pub mod leases;
pub mod protocol;
pub mod quorum;
pub mod service;
pub mod threshold;

pub use codec::WireKind;
pub use ids::{Addr, ClientId, GroupId, NodeId};
pub use keyed::Keyed;
pub use protocol::{Cx, Effect, Fault, FaultKind, NoRecord, Priority, Protocol, Step, Time};
