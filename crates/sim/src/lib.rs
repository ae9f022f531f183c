//! byzscale sim: the deterministic simulator.
//!
//! - [`engine`]: the discrete-event engine ([`engine::Sim`]), the object-safe
//!   [`engine::Actor`] abstraction and the [`engine::ProtocolActor`] adapter for
//!   any sans-IO `Protocol`.
//! - [`net_model`]: latency matrices, jitter, bandwidth, loss, duplication,
//!   reordering, partitions.
//! - [`cpu`]: per-node service time of events, from counted crypto operations.
//! - [`group`]: deterministic identities and one shared key directory for a
//!   group of nodes (thousands of nodes without N² key entries).
//! - [`adversary`]: generic Byzantine wrappers (silent, slow, replay, forge,
//!   equivocate, mixed).
//! - [`check`]: checkers (log agreement and order, KV linearizability).
//! - [`smr`]: the `byzscale sim smr` scenario: one SMR group, KV clients,
//!   adversaries, checkers, many seeds.

pub mod adversary;
pub mod at2;
pub mod byzcast;
pub mod check;
pub mod cpu;
pub mod engine;
pub mod group;
pub mod net_model;
pub mod runner;
pub mod smr;
