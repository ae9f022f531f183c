//! The transport: what an unauthenticated peer sends during the handshake,
//! and what an authenticated (possibly Byzantine) peer or client sends after
//! it. Frame tags are not modelled: a peer holding the session key makes
//! valid tags for any bytes, and the reader checks the tag before any of the
//! parsing below.

use crate::round_trip;
use byzscale_core::codec::{self, DEFAULT_MAX_FRAME, HEADER_LEN};
use byzscale_core::crypto::{Identity, PublicIdentity};
use byzscale_core::{Addr, NodeId, WireKind};
use byzscale_net::transport::{HANDSHAKE_MAX, KIND_SEALED};
use byzscale_net::wire::{self, Fault, Handshake};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::sync::OnceLock;

/// The protocol kind the handshake target speaks.
pub const KIND: u8 = WireKind::Smr.byte();
/// This side's handshake nonce (fixed, so that seeds can carry valid signatures).
pub const NONCE: [u8; 32] = [7; 32];

/// The deterministic key of `addr` (nodes and clients alike).
pub fn ident(addr: Addr) -> Identity {
    let seed = match addr {
        Addr::Node(n) => n.0 as u8,
        Addr::Client(c) => 100u8.wrapping_add(c.0 as u8),
    };
    Identity::from_seed([seed; 32])
}

/// The keys this side knows: nodes 0 to 3.
pub fn known(addr: Addr) -> Option<PublicIdentity> {
    static KEYS: OnceLock<Vec<PublicIdentity>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..4)
            .map(|i| ident(Addr::Node(NodeId(i))).public())
            .collect()
    });
    match addr {
        Addr::Node(n) => keys.get(n.0 as usize).copied(),
        Addr::Client(_) => None,
    }
}

/// This side's handshake in role `flags` (see [`role`]), built once.
fn start(flags: u8) -> Handshake {
    static START: OnceLock<[Handshake; 2]> = OnceLock::new();
    let hs = START.get_or_init(|| {
        [0, 1].map(|f| {
            let (me, dialed, _) = role(f);
            Handshake::new(me, ident(me), KIND, dialed, NONCE)
        })
    });
    hs[(flags & 1) as usize].clone()
}

/// This side of the handshake from the flags byte: bit 0 set, node 2 dialing
/// node 1; clear, node 0 accepting; bit 1: accept unknown clients.
pub fn role(flags: u8) -> (Addr, Option<Addr>, bool) {
    let accept_clients = flags & 2 != 0;
    if flags & 1 != 0 {
        (
            Addr::Node(NodeId(2)),
            Some(Addr::Node(NodeId(1))),
            accept_clients,
        )
    } else {
        (Addr::Node(NodeId(0)), None, accept_clients)
    }
}

/// Cut the next frame (header and payload, plus `trailer` bytes) off `stream`
/// as the connection's reader does: `None` when the reader would wait for
/// more bytes, a fault when the header is malformed or over `limit`.
pub fn next_frame<'a>(
    stream: &mut &'a [u8],
    limit: usize,
    trailer: usize,
) -> Option<Result<&'a [u8], Fault>> {
    if stream.len() < HEADER_LEN {
        return None;
    }
    let len = match codec::parse_header(stream, limit) {
        Ok((_, len)) => len,
        Err(e) => {
            return Some(Err(Fault {
                kind: "malformed_frame",
                detail: e.to_string(),
            }))
        }
    };
    let total = HEADER_LEN + len + trailer;
    if stream.len() < total {
        return None;
    }
    let (frame, rest) = stream.split_at(total);
    *stream = rest;
    Some(Ok(&frame[..HEADER_LEN + len]))
}

/// `flags` (see [`role`]), then the bytes the peer sends: its hello frame and
/// its auth frame.
pub fn handshake(data: &[u8]) {
    let Some((&flags, mut stream)) = data.split_first() else {
        return;
    };
    let (_, dialed, accept_clients) = role(flags);
    let hs = start(flags);
    let Some(Ok(hello)) = next_frame(&mut stream, HANDSHAKE_MAX, 0) else {
        return;
    };
    let Ok((wait, auth)) = hs.on_hello(hello, known, accept_clients) else {
        return;
    };
    assert!(
        codec::parse_header(&auth, HANDSHAKE_MAX).is_ok(),
        "our auth frame is within the handshake limit"
    );
    let claimed = wait.peer();
    let Some(Ok(their_auth)) = next_frame(&mut stream, HANDSHAKE_MAX, 0) else {
        return;
    };
    let Ok(keys) = wait.on_auth(their_auth) else {
        return;
    };
    assert_eq!(
        keys.peer, claimed,
        "the session is with the peer the hello named"
    );
    assert_eq!(keys.dialer, dialed.is_some());
    if let Some(d) = dialed {
        assert_eq!(keys.peer, d, "a dialer talks only to whom it dialed");
    }
    match keys.new_client {
        Some(_) => assert!(
            accept_clients && dialed.is_none() && matches!(keys.peer, Addr::Client(_)),
            "only an acceptor that accepts clients learns a client key"
        ),
        None => assert!(known(keys.peer).is_some(), "an unknown peer was admitted"),
    }
}

/// What an authenticated peer sends after the handshake: a stream of frames
/// (tags left out, see the module docs). The first byte picks the protocol:
/// SMR, ByzCast, AT2 over Bracha, AT2 over Contagion.
pub fn frames(data: &[u8]) {
    let Some((&which, stream)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => stream_of::<byzscale_smr::Message>(stream, WireKind::Smr.byte()),
        1 => stream_of::<byzscale_byzcast::Message>(stream, WireKind::Byzcast.byte()),
        2 => stream_of::<crate::protocols::At2Bracha>(stream, WireKind::At2.byte()),
        _ => stream_of::<crate::protocols::At2Contagion>(stream, WireKind::At2.byte()),
    }
}

/// The connection reader's loop over `stream` on a connection of `kind`, up
/// to its first fault or to where it would wait for more bytes.
fn stream_of<M: Serialize + DeserializeOwned + PartialEq + Debug>(mut stream: &[u8], kind: u8) {
    let max = DEFAULT_MAX_FRAME;
    while let Some(frame) = next_frame(&mut stream, max, 0) {
        let Ok(frame) = frame else {
            return;
        };
        let got = frame[3];
        if got != kind && got != KIND_SEALED {
            return;
        }
        for payload in wire::payloads(frame, kind, max) {
            let Ok(payload) = payload else {
                return;
            };
            assert!(payload.len() <= max);
            let Ok(m) = wire::decode_message::<M>(payload, max) else {
                return;
            };
            round_trip(&m, payload.len());
        }
    }
}
