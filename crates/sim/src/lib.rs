//! byzscale sim: the deterministic simulator.
//!
//! - [`engine`]: the discrete-event engine ([`engine::Sim`]), the object-safe
//!   [`engine::Actor`] abstraction and the [`engine::ProtocolActor`] adapter for
//!   any sans-IO `Protocol`.
//! - [`net_model`]: latency matrices, jitter, bandwidth, loss, duplication,
//!   reordering, partitions.
//! - [`cpu`]: per-node service time of events, from counted crypto operations.
//! - [`storage`]: per-node disks (group commit, what survives a crash, the
//!   durable-before-send rule) and restarts from what a disk kept.
//! - [`crashes`]: crash-restart schedules drawn from the seed (up to f
//!   replicas of a group at once, or a whole group).
//! - [`group`]: deterministic identities and one shared key directory for a
//!   group of nodes (thousands of nodes without N² key entries).
//! - [`adversary`]: generic Byzantine wrappers (silent, slow, replay, forge,
//!   equivocate, mixed).
//! - [`check`]: checkers (log agreement and order, acyclic multicast order,
//!   KV linearizability).
//! - [`scenario`]: the [`scenario::Scenario`] trait that protocol scenarios
//!   (`crates/scenarios/<protocol>`) implement, with the one run loop, the
//!   sweep over seeds, the common report fields and replay lines.
//! - [`closed_loop`]: quota and in-flight bookkeeping of closed-loop clients.
//! - [`runner`]: seeds on all cores, deterministic identities, percentiles.

pub mod adversary;
pub mod check;
pub mod closed_loop;
pub mod cpu;
pub mod crashes;
pub mod engine;
pub mod group;
pub mod net_model;
pub mod runner;
pub mod scenario;
pub mod storage;
