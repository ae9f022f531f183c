//! TEMPORARY: compiles and tests the simulator's linearizability checker before it is
//! wired into byzscale-sim. Delete once `check/mod.rs` declares it.
#[allow(dead_code)]
#[path = "../../sim/src/check/linearizability.rs"]
mod linearizability;
