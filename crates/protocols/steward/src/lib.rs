//! Steward: hierarchical BFT replication for wide-area sites (sans-IO).
//!
//! Amir et al., "Scaling Byzantine Fault-Tolerant Replication to Wide Area
//! Networks" (DSN'06); design in `docs/STEWARD.md`. The data: sites and
//! their keys ([`Config`]), client updates ([`Update`]), what a site says
//! ([`SiteMsg`], [`Signed`]), the operations a site's SMR orders
//! ([`SiteOp`]), the wire [`Message`] and the fault kinds; the
//! [`SiteMachine`] (what a site says, as a function of its ordered
//! history) and the [`order::GlobalOrder`] (Proposal + ⌊S/2⌋ Accepts).

pub mod config;
mod fault;
pub mod machine;
mod message;
pub mod order;

pub use config::{Config, ConfigError, Site};
pub use fault::Fault;
pub use machine::SiteMachine;
pub use message::*;
