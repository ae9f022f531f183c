//! Simulator scenario pieces for Byzantine reliable broadcast (seed 002:
//! Bracha's deterministic secure broadcast, §3.2, and the probabilistic
//! Murmur / Sieve / Contagion stack, §4.3–4.5), on the engine of
//! [`byzscale_sim`].
//!
//! - [`attacks`]: Byzantine processes that collude ([`attacks::Team`]) and
//!   equivocate inside the broadcast ([`attacks::Equivocation`], for
//!   [`byzscale_broadcast::Bracha`] and [`byzscale_broadcast::Contagion`]),
//!   wrapped around the honest code ([`attacks::Colluding`]). AT2's scenario
//!   (`crates/scenarios/at2`) builds its Byzantine owners on them.
//! - [`montecarlo`]: the Monte Carlo check of the probabilistic broadcast
//!   (`byzscale broadcast montecarlo`): observed failure rates at a degraded
//!   operating point next to the analytic ones of
//!   [`byzscale_broadcast::probabilistic::params`].
//!
//! | attack | what the colluding Byzantine processes do |
//! |---|---|
//! | equivocating source | a Byzantine source broadcasts two payloads under one sequence number (Bracha: SEND A to one half of the correct processes, SEND B to the other; Contagion: GOSSIP A / B straight to each half) |
//! | equivocation in the broadcast | for their team's split instances every Byzantine process ECHOes A to the first half and B to the second and READYs both as fast as possible (Bracha: READY A / READY B per half; Contagion: ready for both towards every subscriber) |
//! | withholding | for correct sources' instances they withhold ECHO/READY (Contagion) or send READY for a bogus digest (Bracha) |

pub mod attacks;
pub mod montecarlo;

pub use attacks::{Colluding, Equivocation, Team};
pub use montecarlo::{monte_carlo, McConfig, McRate, McReport};

/// The crypto label of runs with modeled signatures and the engine's modeled
/// channels (see [`byzscale_sim::engine::Channels::Modeled`]).
pub const MODELED: &str =
    "modeled (cost model: no real signatures; channel MACs charged, not computed)";
