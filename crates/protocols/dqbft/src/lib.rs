//! DQBFT, DQPBFT and Destiny: dissemination decoupled from ordering.
//!
//! Paper map: Arun and Ravindran, "Scalable Byzantine Fault Tolerance via
//! Partial Decentralization" (VLDB'22; seed 001, digest
//! `shared/reference/dqbft-destiny.md`).
//!
//! | paper | here |
//! |---|---|
//! | §3.1–3.2 DQBFT with PBFT instances (DQPBFT): D-instances, O-instance, execution (digest §1) | [`dqpbft`]: [`dqpbft::Replica`], normal case |
//! | §4 ThreshSign, the trusted subsystem of Destiny (digest §2.2) | [`trusted`]: [`trusted::TrustedSubsystem`], the software emulation [`trusted::SoftEnclave`] |
//! | §2.3 Fig. 2, messages and maximum throughput per protocol; Fig. 3 (digest §3.1–3.2) | [`formulas`] (`byzscale dqbft formulas`) |
//!
//! Built so far (issue 15): the DQPBFT normal case (the N D-instances and
//! the O-instance over the SMR ordering core, the execution cursor,
//! checkpoints; plan step 2), the emulated trusted subsystem (item 3's
//! ThreshSign, without Linear Hybster on top) and the Figure 2 formulas the
//! simulator's throughput must later match (item 6a). View changes,
//! probation, Linear Hybster, the baselines, the scenario and the real
//! clusters are not built yet; `docs/DQBFT.md` has the design and the plan.

pub mod dqpbft;
pub mod formulas;
pub mod trusted;
