//! What the tests share: groups of processes on the simulator engine with
//! real crypto, free CPU and seeded delays of 1–100 µs that reorder messages
//! freely. Member `i` is `NodeId(i)` and engine node `NodeIdx(i)`.

use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::protocol::{Effect, Protocol, MICROS};
use byzscale_core::NodeId;
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::Sim;
use byzscale_sim::group;
use byzscale_sim::net_model::NetModel;

pub fn ids(n: u32) -> Vec<NodeId> {
    (0..n).map(NodeId).collect()
}

/// Member `me`'s real keys, knowing members `0..n`.
pub fn crypto(me: NodeId, n: u32) -> Crypto {
    group::crypto(me, &group::directory(ids(n)), CryptoMode::Real)
}

/// One region, one-way delays uniform in 1–100 µs.
pub fn net() -> NetModel {
    NetModel::uniform(MICROS, 100 * MICROS)
}

/// `members` (of a group keyed for `0..n`) running `make`, over `net`.
pub fn group<P>(
    seed: u64,
    n: u32,
    members: &[NodeId],
    net: NetModel,
    make: impl FnMut(NodeId) -> P,
) -> Sim<P::Message, P::Input, P::Output>
where
    P: Protocol + 'static,
    P::Input: 'static,
    P::Output: 'static,
{
    let dir = group::directory(ids(n));
    group::sim(
        seed,
        net,
        CpuModel::free(),
        &dir,
        CryptoMode::Real,
        members,
        make,
    )
}

/// The names of the faults among `fx`, in order.
pub fn fault_names<P: Protocol>(fx: &[Effect<P>]) -> Vec<&'static str> {
    Effect::fault_names(fx)
}
