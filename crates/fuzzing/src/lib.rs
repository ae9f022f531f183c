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
//! The `*_message` targets stop at the decoder; the protocol-instance targets
//! ([`handlers`]) hand what decodes to a correct replica or node, so a panic
//! in a message handler is found too.
//!
//! Adding a target: write `pub fn <name>(data: &[u8])` in the module of its
//! layer, list it in [`TARGETS`] with a few valid seeds, and add
//! `fuzz/fuzz_targets/<name>.rs` plus its `[[bin]]` in `fuzz/Cargo.toml` (the
//! test `every_target_has_a_fuzz_binary` checks that the lists agree).

pub mod bounded_alloc;
pub mod clients;
pub mod handlers;
pub mod protocols;
pub mod seeds;
pub mod transport;

/// Every fuzz target's allocator (see [`bounded_alloc`]): the fuzz crate
/// enables this feature, so the bound needs no line in the 14 targets.
#[cfg(feature = "bounded-alloc")]
#[global_allocator]
static ALLOC: bounded_alloc::Bounded = bounded_alloc::Bounded::from_env();

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
        decoder: "net::wire::decode_message::<at2::node::Message<at2::Message<bracha::Message<Batch>>>> (AT2 nodes and clients)",
        run: protocols::at2_bracha_message,
        seeds: seeds::at2_bracha_message,
    },
    Target {
        name: "at2_contagion_message",
        decoder: "net::wire::decode_message::<at2::node::Message<at2::Message<probabilistic::Message<Batch>>>>",
        run: protocols::at2_contagion_message,
        seeds: seeds::at2_contagion_message,
    },
    Target {
        name: "smr_replica",
        decoder: "SMR messages (replicas and a client) delivered to a correct Replica<KvStore>, leader or backup, with timers",
        run: handlers::smr,
        seeds: seeds::smr_replica,
    },
    Target {
        name: "byzcast_replica",
        decoder: "ByzCast messages delivered to a correct ByzCast replica of a target group or the root, with timers",
        run: handlers::byzcast,
        seeds: seeds::byzcast_replica,
    },
    Target {
        name: "at2_bracha_node",
        decoder: "AT2-over-Bracha messages (peers and a client) delivered to a correct AT2 node, with timers",
        run: handlers::at2_bracha,
        seeds: seeds::at2_bracha_node,
    },
    Target {
        name: "at2_contagion_node",
        decoder: "AT2-over-Contagion messages delivered to a correct AT2 node, with timers",
        run: handlers::at2_contagion,
        seeds: seeds::at2_contagion_node,
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

/// `count` inputs derived from `seeds` by a seeded mutator (what
/// `cargo test` runs in place of libFuzzer): each is a seed with one to
/// four edits — a bit flip, a byte set to an edge value, a little-endian
/// integer nudged, a range cut, duplicated or spliced from another seed.
pub fn mutants(seeds: &[Vec<u8>], count: usize, seed: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(move |_| {
        let mut m = seeds[rng.gen_range(0..seeds.len())].clone();
        for _ in 0..rng.gen_range(1..=4) {
            mutate(&mut m, seeds, &mut rng);
        }
        m
    })
}

fn mutate(m: &mut Vec<u8>, seeds: &[Vec<u8>], rng: &mut impl rand::Rng) {
    const EDGES: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];
    if m.is_empty() {
        m.push(rng.gen());
        return;
    }
    let at = rng.gen_range(0..m.len());
    match rng.gen_range(0..6) {
        0 => m[at] ^= 1 << rng.gen_range(0..8),
        1 => m[at] = EDGES[rng.gen_range(0..EDGES.len())],
        2 => {
            // a u64 field nudged (lengths, slots, views, indices)
            let end = (at + 8).min(m.len());
            let mut b = [0u8; 8];
            b[..end - at].copy_from_slice(&m[at..end]);
            let v = u64::from_le_bytes(b);
            let v = match rng.gen_range(0..4) {
                0 => v.wrapping_add(1),
                1 => v.wrapping_sub(1),
                2 => u64::MAX - v,
                _ => v.wrapping_mul(1 << rng.gen_range(1..16)),
            };
            m[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
        }
        3 => {
            let end = rng.gen_range(at..=m.len());
            m.drain(at..end);
        }
        4 => {
            let end = rng.gen_range(at..=m.len().min(at + 64));
            let piece = m[at..end].to_vec();
            let to = rng.gen_range(0..=m.len());
            m.splice(to..to, piece);
        }
        _ => {
            let other = &seeds[rng.gen_range(0..seeds.len())];
            let from = rng.gen_range(0..=other.len());
            let end = rng.gen_range(from..=other.len());
            m.splice(at..at, other[from..end].iter().copied());
        }
    }
}
