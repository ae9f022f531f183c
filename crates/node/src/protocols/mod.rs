//! One module per protocol, holding only what is specific to it: its node
//! process, its client library, its workload and its cluster report.

pub mod at2;
pub mod bank;
pub mod byzcast;
pub mod smr;
pub mod steward;
