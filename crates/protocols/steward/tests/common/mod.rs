//! The Steward deployment of these tests lives in the scenario crate
//! (`byzscale_scenario_steward::deploy`), which builds its runs with it.

#![allow(unused_imports)]

pub use byzscale_scenario_steward::deploy::{
    correct_servers, counter, identity, op, read_op, s1_violations, Deployment as World, Execution,
    In, Kv, Out, ReadDone, Seen, LAN, WAN,
};
pub use byzscale_sim::adversary::Deaf;
