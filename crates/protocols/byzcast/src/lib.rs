//! ByzCast: Byzantine fault-tolerant atomic multicast over an overlay tree of
//! groups, the naive non-genuine baseline, and the tree optimizer. Sans-IO:
//! every protocol here is a [`byzscale_core::Protocol`]; the simulator and the
//! tokio runtime drive them.
//!
//! # Paper mapping
//!
//! Coelho, Tarcisio Ceolin Junior, Bessani, Dotti, Pedone, "Byzantine
//! Fault-Tolerant Atomic Multicast", DSN 2018 (seed 000; digest §1).
//!
//! | paper | here |
//! |---|---|
//! | Γ, Λ, overlay tree, lca(d), reach(x) (§III-A, "Why a tree?") | [`tree::Tree`] ([`Tree::lca`], [`Tree::reach`], [`Tree::children`]); validation rejects cycles, two parents and forests with the reason |
//! | FIFO BFT atomic broadcast per group (`x-broadcast` / `x-deliver`) | the SMR core ([`byzscale_smr::Replica`]): total order plus per-client FIFO execution |
//! | Algorithm 1, `multicast(m, dst)`: `x-broadcast(m)` at x = lca(dst) | [`Client`] submits [`Envelope::Multicast`] to the entry group |
//! | Algorithm 1, on `x-deliver(m)`: f+1 copies from parent replicas, dedup, `y-broadcast(m)` to each child y with reach(y) ∩ dst ≠ ∅, `a-deliver(m)` if x ∈ dst | [`machine::GroupMachine`] (the group's SMR service) with the per-stream index rule below, and [`Replica`], whose forward streams ([`stream::StreamOut`], requests to the children's SMR with durable sequence numbers) carry [`Envelope::Forward`] |
//! | replies: f+1 matching per child, merged, up the tree; the client takes f+1 (prototype code) | [`Message::Result`], [`Message::Reply`] |
//! | Baseline: one group orders everything, relays with per-destination sequence numbers | [`Mode::Baseline`]: every message enters at the root sequencer; the stream indices are the per-destination sequence numbers |
//! | tree optimization: min Σ H(T, d) s.t. L(T, x) ≤ K(x) (§III-C, Tables II/III) | [`optimizer`] |
//! | single-group ("local") messages are genuine | a multicast to {g} is ordered by g only and answered by its SMR reply |
//!
//! # The per-(parent → child)-stream index rule (digest §1.4)
//!
//! "Act on the (f+1)-th copy" alone lets f Byzantine parent replicas send a
//! message m′ that the parent orders *after* m early, so that the first correct
//! copy of m′ completes f+1 while m has fewer, and the child handles m′ first:
//! `<` gets a cycle. Here every correct parent replica tags the copy it
//! forwards with the message's index k in the x → y stream (the k-th message x
//! forwarded to y, identical at all correct replicas of x since they handle
//! messages in the same order), and the child handles index k strictly after
//! k−1, once replicas of x holding a weak quorum of votes (f+1 of 3f+1) have
//! had identical (k, digest) copies *ordered by y's SMR* (never counting raw
//! receipts, so every correct replica of y decides at the same log position).
//! A sender's indices must increase (its SMR requests are FIFO). Cost: a
//! global message takes up to 3f+1 ordering slots in each child.
//!
//! # Where ByzCast sits on the SMR core, and why
//!
//! The group state (streams, per-client entry numbers, the KV store) is the
//! SMR [`byzscale_core::service::Service`] ([`machine::GroupMachine`]), not a
//! layer over `smr::replica::Output::Decided`: the SMR replica then applies its
//! per-client FIFO rule exactly once, checkpoints and state transfer carry the
//! ByzCast state with everything else, and no second copy of the execution
//! rules exists. The service cannot see which client sent an operation, so
//! the sender an envelope names is checked before ordering (the request
//! filter, see [`replica`]). Side effects of execution (forwards, deliveries,
//! results to collect) go to an outbox the replica drains after every SMR
//! step. No change to `byzscale-smr` was needed.
//!
//! # Deviations, and why
//!
//! - Every parent replica forwards the full message (the paper's
//!   "y-broadcast(m)" by all 3f+1); the alternative, one forward with an
//!   f+1-signature certificate, trades ordering slots for signatures.
//! - Deduplication: at the entry group, one client's message numbers must
//!   increase; below it, a stream index is handled once and a correct parent
//!   forwards a message once per child, so no per-message set is kept.
//!   Two different messages with the same id from a *Byzantine client* are two
//!   messages as far as this layer is concerned.
//! - The baseline reuses the same relay (destinations order the sequencer's
//!   copies again, as "local messages need two orderings" in the seed) rather
//!   than a separate code path; it is selected by [`Mode`], with the tree
//!   forced to two levels.
//! - A replica that catches up by state transfer does not a-deliver the
//!   skipped messages one by one ([`replica::Output::Skipped`] says how far it
//!   jumped), exactly as SMR replicas skip executing them.

pub mod client;
pub mod durable;
mod fault;
pub mod kv;
pub mod machine;
pub mod message;
pub mod optimizer;
pub mod replica;
pub mod stream;
pub mod topology;
pub mod tree;

pub use client::Client;
pub use durable::{Durable, Record};
pub use fault::Fault;
pub use machine::{Event, Forward, GroupMachine};
pub use message::{
    max_multicast_op, Envelope, ExecReply, McastMsg, Message, MsgId, Results, FORWARD_OVERHEAD,
};
pub use replica::{ForwardPolicy, Honest, Replica};
pub use topology::{Mode, Topology, TopologyError};
pub use tree::{Tree, TreeError, TreeSpec};
