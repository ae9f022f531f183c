//! Steward: hierarchical BFT replication for wide-area sites (sans-IO).
//!
//! Amir et al., "Scaling Byzantine Fault-Tolerant Replication to Wide Area
//! Networks" (DSN'06); design in `docs/STEWARD.md`. This first piece holds
//! the data: sites and their keys ([`Config`]), client updates ([`Update`]),
//! what a site says ([`SiteMsg`], [`Signed`]), the operations a site's SMR
//! orders ([`SiteOp`]), the wire [`Message`] and the fault kinds.

pub mod config;
mod fault;
mod message;

pub use config::{Config, ConfigError, Site};
pub use fault::Fault;
pub use message::*;
