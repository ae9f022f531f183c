//! Byzantine reliable broadcast for byzscale: Bracha's deterministic protocol
//! and the probabilistic Murmur → Sieve → Contagion stack, multi-shot with
//! source order, as sans-IO [`Protocol`](byzscale_core::Protocol)s.
//!
//! # Paper mapping (seed 002: M. Pavlovič, "Scaling Byzantine Fault Tolerance", EPFL 2019)
//!
//! | here | thesis | notes |
//! |---|---|---|
//! | [`SecureBroadcast`] | §3.2 "secure broadcast" (Malkhi–Reiter secure reliable multicast, multi-shot) | integrity, agreement, validity, source order |
//! | [`Bracha`] | the deterministic secure broadcast AT2 is built on (§3.2; Bracha 1987) | SEND / ECHO / READY, N > 3f, O(N) messages per process per broadcast |
//! | [`Murmur`], [`layers::MurmurInstance`] | §4.3, Algorithm 6 "Erdős–Rényi Gossip" | probabilistic broadcast; parameter G |
//! | [`Sieve`], [`layers::SieveInstance`] | §4.4, Algorithms 7–8 "Echo Broadcast" | probabilistic consistent broadcast; E, Ê |
//! | [`Contagion`], [`layers::ContagionInstance`] | §4.5, Algorithm 9 "Ready Broadcast" | probabilistic secure broadcast; R, R̂, D, D̂ |
//! | [`sampling::Oracle`] | §4.2 assumption 7, Ω, and Algorithm 7 `SAMPLE` | uniform, from the protocol's seeded RNG |
//! | [`params`] | §4.3.3, §4.4.3, §4.5.3 (intuitions only; numbers are ours) | binomial-tail bounds and parameter selection |
//!
//! The names Murmur / Sieve / Contagion are those of the DISC'19 paper
//! "Scalable Byzantine Reliable Broadcast" and EPFL's crates; the thesis calls
//! the layers Erdős–Rényi Gossip, Echo Broadcast and Ready Broadcast.
//!
//! # Deviations from the thesis, and why
//!
//! - **Multi-shot.** The thesis' probabilistic broadcast is single-shot; one
//!   instance runs per `(source, seq)`, opened lazily, with a window and
//!   garbage collection ([`multishot`]). Bracha's instances are dropped as
//!   soon as they complete ([`bracha`]).
//! - **Samples exclude the sampler** ([`sampling`]); the analysis uses the
//!   Byzantine fraction among the N−1 others.
//! - **Algorithm 9, line 60** (`(message, signature) = echo`) is a slip copied
//!   from Algorithm 8: Contagion delivers the message that crossed D̂.
//! - **Algorithm 8's Sieve** and Bracha count only the first ECHO per sample
//!   member / member; later conflicting ones are dropped and reported as faults.
//! - **Signatures** are checked once per distinct payload per instance (a
//!   digest cache, [`auth`], shared by both families) instead of at every
//!   layer and every copy; the outcome is the same.
//! - **Bracha's ECHO and READY carry only the payload's digest**; the
//!   payload travels in the SEND, and a member that readies or decides
//!   without it pulls it from the echoers ([`bracha::pull`]); delivery needs
//!   a quorum of READYs (= 2f+1 when N = 3f+1); see [`bracha`]. The
//!   probabilistic stack still carries the payload in every message
//!   ([`probabilistic`], "Payloads in every message").
//! - **Links** are assumed reliable, as in the thesis, unless the optional
//!   retransmission is on (used by real deployments): Bracha's re-sends and
//!   catch-up ([`bracha`]); the probabilistic stack's re-subscriptions to
//!   silent sample members, pushes of the gossiped payload, late answers
//!   from delivered payloads and opening of missed instances
//!   ([`probabilistic`], "Retransmission"). The probabilistic stack also
//!   makes its echoes and deliveries durable with Bracha's records, and
//!   bounds the payloads it holds in bytes.
//!
//! # Byzantine input
//!
//! Nothing a peer sends can panic a process or grow its state without bound:
//! unknown sources, sequence numbers outside the window, bad signatures, more
//! than a few distinct payloads per instance, unsolicited or conflicting
//! echoes/readies are dropped and reported with `cx.fault`.
//!
//! # Parameters
//!
//! See [`params`] for the analysis (which failure events are bounded, how, and
//! which term is only a mean-field approximation) and [`params::select`] for
//! picking (G, E, Ê, R, R̂, D, D̂) from (N, β, ε).
//!
//! # Testing
//!
//! The crate's tests run groups of processes on the simulator engine
//! (`byzscale_sim`, a dev-dependency) with real crypto and seeded random
//! delays; `byzscale sim at2` / `at2-scale` and `byzscale broadcast
//! montecarlo` use the same engine at scale.

mod auth;
pub mod bracha;
mod common;
pub mod probabilistic;
#[cfg(test)]
mod testing;

pub use bracha::Bracha;
pub use common::{
    signing_bytes, BroadcastStats, Delivery, NoTimer, Payload, SecureBroadcast, Signed, SIGN_DOMAIN,
};
pub use probabilistic::params::ContagionParams;
pub use probabilistic::{Contagion, Murmur, ProbabilisticBroadcast, Sieve};
