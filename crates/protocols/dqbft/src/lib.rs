//! DQBFT, DQPBFT and Destiny: dissemination decoupled from ordering.
//!
//! Paper map: Arun and Ravindran, "Scalable Byzantine Fault Tolerance via
//! Partial Decentralization" (VLDB'22; seed 001, digest
//! `shared/reference/dqbft-destiny.md`).
//!
//! | paper | here |
//! |---|---|
//! | §4 ThreshSign, the trusted subsystem of Destiny (digest §2.2) | [`trusted`]: [`trusted::TrustedSubsystem`], the software emulation [`trusted::SoftEnclave`] |
//! | §2.3 Fig. 2, messages and maximum throughput per protocol; Fig. 3 (digest §3.1–3.2) | [`formulas`] (`byzscale dqbft formulas`) |
//!
//! Built so far (issue 15): the emulated trusted subsystem (item 3's
//! ThreshSign, without Linear Hybster on top) and the Figure 2 formulas the
//! simulator's throughput must later match (item 6a). The D- and O-instances
//! over the SMR ordering core, Linear Hybster, the baselines, the scenario
//! and the real clusters are not built yet; `docs/DQBFT.md` has the design
//! and the plan.

pub mod formulas;
pub mod trusted;
