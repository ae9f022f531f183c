//! Fuzz harnesses: one function per decoder that a peer or a client reaches,
//! calling the same decode functions, with the same size limits, as the node.
//!
//! Each [`Target`] is run two ways:
//! - by libFuzzer, from `fuzz/fuzz_targets/<name>.rs` (a separate crate,
//!   outside the workspace: `bench/fuzz.sh` builds and runs it), for
//!   millions of inputs;
//! - by `cargo test` (`tests/regressions.rs`), over the checked-in regression
//!   corpus `fuzz/regressions/<name>/` (minimized interesting inputs and
//!   every crash reproducer) and the [`Target::seeds`], so CI replays them
//!   without libFuzzer.
//!
//! A harness returns normally for any input the node rejects; it panics (a
//! crash to libFuzzer, a failure to the test) only if the code under test
//! panics or a property it asserts fails: a decoded message re-encodes to at
//! most the bytes it came from and decodes back to itself (so no input makes
//! the node hold more than it was sent, beyond fixed per-value overhead), a
//! handshake succeeds only for the peer it admitted, a RESP connection holds
//! at most its request limits and parses the same at every split.
//!
//! Adding a target: write `pub fn <name>(data: &[u8])` in the module of its
//! layer, list it in [`TARGETS`] with a few valid seeds, and add
//! `fuzz/fuzz_targets/<name>.rs` plus its `[[bin]]` in `fuzz/Cargo.toml` (the
//! test `every_target_has_a_fuzz_binary` checks that the lists agree).

pub mod clients;
pub mod protocols;
pub mod seeds;
pub mod transport;

use byzscale_core::codec;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// One fuzz target.
pub struct Target {
    /// The libFuzzer binary's name, and the folder of its regression corpus.
    pub name: &'static str,
    /// The decoder it reaches, as the node calls it.
    pub decoder: &'static str,
    /// The harness.
    pub run: fn(&[u8]),
    /// Valid inputs (real messages), the starting corpus.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order `bench/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "transport_handshake",
        decoder: "net::wire::Handshake (hello and auth frames, both roles, client admission, signature check)",
        run: transport::handshake,
        seeds: seeds::handshake,
    },
    Target {
        name: "transport_frames",
        decoder: "frame headers (codec::parse_header, max_frame) + net::wire::payloads (plain and sealed) + decode_message, per protocol kind",
        run: transport::frames,
        seeds: seeds::frames,
    },
    Target {
        name: "smr_message",
        decoder: "net::wire::decode_message::<byzscale_smr::Message> (replicas and clients)",
        run: protocols::smr_message,
        seeds: seeds::smr_message,
    },
    Target {
        name: "byzcast_message",
        decoder: "net::wire::decode_message::<byzscale_byzcast::Message>",
        run: protocols::byzcast_message,
        seeds: seeds::byzcast_message,
    },
    Target {
        name: "at2_bracha_message",
        decoder: "net::wire::decode_message::<at2::node::Message<bracha::Message<TransferMsg>>> (AT2 nodes and clients)",
        run: protocols::at2_bracha_message,
        seeds: seeds::at2_bracha_message,
    },
    Target {
        name: "at2_contagion_message",
        decoder: "net::wire::decode_message::<at2::node::Message<probabilistic::Message<TransferMsg>>>",
        run: protocols::at2_contagion_message,
        seeds: seeds::at2_contagion_message,
    },
    Target {
        name: "service_op",
        decoder: "KvStore / Bank Service::execute and query of a client's op bytes; KvReply / BankReply::decode of a replica's result",
        run: protocols::service_op,
        seeds: seeds::service_op,
    },
    Target {
        name: "byzcast_envelope",
        decoder: "GroupMachine::execute (Envelope::decode of an ordered op, then its handling) and ExecReply::decode",
        run: protocols::byzcast_envelope,
        seeds: seeds::byzcast_envelope,
    },
    Target {
        name: "resp",
        decoder: "gateway: resp::Parser (pipelined, split at any byte) and a connection's command handling (gateway::Offline)",
        run: clients::resp,
        seeds: seeds::resp,
    },
    Target {
        name: "at2_http",
        decoder: "node AT2 HTTP API: parse_transfer_body (POST /transfer JSON) and parse_account (path)",
        run: clients::at2_http,
        seeds: seeds::at2_http,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The property every decoded message must have: its canonical encoding is
/// at most the `len` bytes it was decoded from, and decodes back to it.
pub fn round_trip<M: Serialize + DeserializeOwned + PartialEq + Debug>(m: &M, len: usize) {
    let again = codec::to_bytes(m);
    assert!(
        again.len() <= len,
        "a decoded value re-encodes to {} bytes, more than the {len} it came from: {m:?}",
        again.len()
    );
    let back: M = codec::from_bytes(&again, again.len().max(1))
        .unwrap_or_else(|e| panic!("a re-encoded value does not decode ({e}): {m:?}"));
    assert!(
        back == *m,
        "re-encoding changes the value: {m:?} became {back:?}"
    );
}
