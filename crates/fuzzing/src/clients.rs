//! What clients outside the replication protocol send: Redis clients to the
//! gateway (RESP) and HTTP clients to an AT2 node.

use bytes::{Bytes, BytesMut};
use byzscale_at2::Account;
use byzscale_gateway::resp::{Limits, Parser, ProtocolError};
use byzscale_gateway::{GatewayOptions, Offline};
use byzscale_node::protocols::at2::{parse_transfer_body, transfer_body};

/// The gateway's options from a byte: the defaults, or small limits the
/// fuzzer can reach.
pub fn options(b: u8) -> GatewayOptions {
    let mut o = GatewayOptions::default();
    if b & 1 == 1 {
        o.max_bulk_len = 1 + (b as usize >> 1 & 7) * 9;
        o.max_array_len = 1 + (b as usize >> 4 & 3) * 3;
        o.max_request_len = 16 + (b as usize >> 6) * 40;
        o.max_inline_len = 8 + (b as usize >> 1 & 7) * 8;
    }
    o
}

fn limits(o: &GatewayOptions) -> Limits {
    Limits {
        max_bulk_len: o.max_bulk_len,
        max_array_len: o.max_array_len,
        max_request_len: o.max_request_len,
        max_inline_len: o.max_inline_len,
    }
}

/// Every command of `input` fed in pieces of `chunk` bytes, and the protocol
/// error that stopped parsing, if any.
fn parse(limits: Limits, input: &[u8], chunk: usize) -> (Vec<Vec<Bytes>>, Option<ProtocolError>) {
    let mut p = Parser::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match p.next(&mut buf) {
                Ok(Some(args)) => out.push(args),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// Bytes a connection may hold for a request not yet complete.
fn buffer_bound(l: &Limits) -> usize {
    l.max_request_len.max(l.max_inline_len + 1).max(32)
}

/// A Redis client's byte stream: byte 0 picks the limits ([`options`]), byte
/// 1 the size of the pieces it arrives in, the rest is what the client sends.
pub fn resp(data: &[u8]) {
    let Some((&[lim, split], input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let opts = options(lim);
    let l = limits(&opts);
    let chunk = 1 + split as usize % 61;
    // the parser: the same commands at any split, each within the limits
    let (cmds, err) = parse(l, input, input.len());
    let (split_cmds, split_err) = parse(l, input, chunk);
    assert_eq!(cmds, split_cmds, "commands depend on how the bytes arrive");
    assert_eq!(
        err, split_err,
        "the protocol error depends on how the bytes arrive"
    );
    let per_arg = l.max_bulk_len.max(l.max_inline_len);
    let per_cmd = l.max_request_len.max(l.max_inline_len);
    for c in &cmds {
        assert!(!c.is_empty(), "an empty command");
        assert!(
            c.iter().all(|a| a.len() <= per_arg),
            "an argument over the limits"
        );
        assert!(
            c.iter().map(Bytes::len).sum::<usize>() <= per_cmd,
            "a command over the limits"
        );
    }
    // a connection: what it holds stays bounded, and it ends as the parser did
    let mut conn = Offline::new(opts);
    let mut replies = Vec::new();
    for piece in input.chunks(chunk) {
        replies.extend(conn.feed(piece));
        if !conn.closed() {
            assert!(
                conn.buffered() <= buffer_bound(&l),
                "a connection buffers over its limits"
            );
        }
    }
    if err.is_some() {
        assert!(conn.closed(), "a protocol error leaves the connection open");
    }
}

/// An HTTP client of an AT2 node: byte 0 even, a `POST /transfer` body; odd,
/// the account of `GET /balance/{account}` (axum hands it over as UTF-8).
pub fn at2_http(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        match parse_transfer_body(rest) {
            Ok(st) => {
                let again = transfer_body(&st).to_string();
                assert_eq!(parse_transfer_body(again.as_bytes()), Ok(st));
            }
            Err(e) => assert!(
                e.starts_with("expected a JSON body")
                    || e.contains("not an account")
                    || e.contains("signature"),
                "{e}"
            ),
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(a) = Account::from_hex(text) {
            assert_eq!(Account::from_hex(&a.hex()).ok(), Some(a));
        }
    }
}
