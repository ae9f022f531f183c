//! The wire codec: bincode (varint, little endian, no trailing bytes) inside a
//! versioned frame with a size limit.
//!
//! Frame layout (all integers little endian):
//!
//! ```text
//! +------+------+---------+------+-------------+-----------------+
//! | 'B'  | 'Z'  | version | kind | len (u32)   | payload (len B) |
//! +------+------+---------+------+-------------+-----------------+
//! ```
//!
//! `kind` names the protocol whose message the payload carries, so one connection
//! can multiplex protocols and a peer speaking the wrong one is rejected early.
//! Decoding never panics: every malformed input is a [`CodecError`].

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

pub const MAGIC: [u8; 2] = *b"BZ";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;
/// Default maximum payload: 16 MiB (a full batch plus its certificates).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The `kind` byte of a frame: which protocol's message the payload carries,
/// or one of the transport's own frames. Every kind byte of the project is
/// here; a new deployable protocol adds one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum WireKind {
    /// SMR replicas and clients (`byzscale-smr` messages).
    Smr = 1,
    /// ByzCast replicas and clients.
    Byzcast = 2,
    /// AT2 nodes (broadcast messages) and their clients.
    At2 = 3,
    /// Steward servers (site SMR, site messages) and their clients.
    Steward = 4,
    /// Transport handshake: the signed hello.
    Hello = 0xF0,
    /// Transport handshake: the authentication answer.
    Auth = 0xF1,
    /// Transport: several frames of one write sealed under one tag.
    Sealed = 0xF2,
}

impl WireKind {
    pub const ALL: [WireKind; 7] = [
        WireKind::Smr,
        WireKind::Byzcast,
        WireKind::At2,
        WireKind::Steward,
        WireKind::Hello,
        WireKind::Auth,
        WireKind::Sealed,
    ];
    pub const fn byte(self) -> u8 {
        self as u8
    }
    pub fn from_byte(b: u8) -> Option<WireKind> {
        WireKind::ALL.into_iter().find(|k| k.byte() == b)
    }
}

impl From<WireKind> for u8 {
    fn from(k: WireKind) -> u8 {
        k.byte()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame too short ({0} bytes)")]
    Short(usize),
    #[error("bad magic {0:02x?}")]
    Magic([u8; 2]),
    #[error("unsupported wire version {0} (this build speaks {VERSION})")]
    Version(u8),
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("frame length field says {declared} bytes but {actual} follow")]
    Length { declared: usize, actual: usize },
    #[error("expected message kind {expected}, got {got}")]
    Kind { expected: u8, got: u8 },
    #[error("malformed payload: {0}")]
    Payload(String),
}

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(limit as u64)
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

/// Encode a value (no frame), e.g. the bytes a signature or MAC covers.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    options(usize::MAX)
        .serialize(value)
        .expect("serializing in-memory values cannot fail")
}

/// The length of `value`'s encoding, without encoding it (for byte bounds).
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    options(usize::MAX)
        .serialized_size(value)
        .expect("sizing in-memory values cannot fail") as usize
}

/// Append the encoding of `value` to `out` (for canonical signed payloads).
pub fn write_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    options(usize::MAX)
        .serialize_into(out, value)
        .expect("serializing in-memory values cannot fail")
}

/// Decode a value (no frame) of at most `limit` bytes.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    options(limit)
        .deserialize(bytes)
        .map_err(|e| CodecError::Payload(e.to_string()))
}

/// Encode `value` in a frame of the given `kind`.
pub fn encode_frame<T: Serialize + ?Sized>(kind: u8, value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&[0; 4]);
    write_into(&mut out, value);
    let len = (out.len() - HEADER_LEN) as u32;
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out
}

/// The 8-byte header of a frame of `kind` with a `len`-byte payload.
pub fn header(kind: u8, len: usize) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_le_bytes();
    [MAGIC[0], MAGIC[1], VERSION, kind, l[0], l[1], l[2], l[3]]
}

/// Parse a frame header; returns (kind, payload length). Use it on a stream to
/// learn how many bytes to read next, rejecting oversized frames before reading.
pub fn parse_header(header: &[u8], limit: usize) -> Result<(u8, usize), CodecError> {
    if header.len() < HEADER_LEN {
        return Err(CodecError::Short(header.len()));
    }
    if header[..2] != MAGIC {
        return Err(CodecError::Magic([header[0], header[1]]));
    }
    if header[2] != VERSION {
        return Err(CodecError::Version(header[2]));
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > limit {
        return Err(CodecError::TooLarge { len, limit });
    }
    Ok((header[3], len))
}

/// Decode a whole frame of the expected `kind`.
pub fn decode_frame<T: DeserializeOwned>(
    frame: &[u8],
    kind: u8,
    limit: usize,
) -> Result<T, CodecError> {
    let (got, len) = parse_header(frame, limit)?;
    if got != kind {
        return Err(CodecError::Kind {
            expected: kind,
            got,
        });
    }
    let payload = &frame[HEADER_LEN..];
    if payload.len() != len {
        return Err(CodecError::Length {
            declared: len,
            actual: payload.len(),
        });
    }
    from_bytes(payload, limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Msg {
        A {
            view: u64,
            slot: u64,
            digest: [u8; 32],
        },
        B(Vec<Vec<u8>>),
        C(BTreeMap<u32, String>),
        D(Option<Box<Msg>>),
    }

    fn msg() -> impl Strategy<Value = Msg> {
        let leaf = prop_oneof![
            (any::<u64>(), any::<u64>(), any::<[u8; 32]>())
                .prop_map(|(view, slot, digest)| Msg::A { view, slot, digest }),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8).prop_map(Msg::B),
            prop::collection::btree_map(any::<u32>(), ".{0,12}", 0..6).prop_map(Msg::C),
        ];
        leaf.prop_recursive(3, 16, 2, |inner| {
            inner.prop_map(|m| Msg::D(Some(Box::new(m))))
        })
    }

    proptest! {
        #[test]
        fn frames_round_trip(m in msg(), kind in any::<u8>()) {
            let f = encode_frame(kind, &m);
            prop_assert_eq!(decode_frame::<Msg>(&f, kind, DEFAULT_MAX_FRAME), Ok(m));
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_frame::<Msg>(&bytes, 1, 1 << 16);
            let _ = from_bytes::<Msg>(&bytes, 1 << 16);
        }

        #[test]
        fn corrupted_frames_are_rejected_or_decode_to_a_value(m in msg(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut f = encode_frame(3, &m);
            let i = pos.index(f.len());
            f[i] ^= 1 << bit;
            // must not panic; header corruption must be an error
            let r = decode_frame::<Msg>(&f, 3, DEFAULT_MAX_FRAME);
            if i < HEADER_LEN {
                prop_assert!(r.is_err());
            }
        }

        #[test]
        fn truncated_frames_are_rejected(m in msg(), cut in any::<prop::sample::Index>()) {
            let f = encode_frame(3, &m);
            let n = cut.index(f.len());
            prop_assert!(decode_frame::<Msg>(&f[..n], 3, DEFAULT_MAX_FRAME).is_err());
        }
    }

    #[test]
    fn oversized_and_foreign_frames_are_rejected() {
        let f = encode_frame(1, &vec![0u8; 1000]);
        assert!(matches!(
            decode_frame::<Vec<u8>>(&f, 1, 100),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_frame::<Vec<u8>>(&f, 2, 10_000),
            Err(CodecError::Kind { .. })
        ));
        let mut v = f.clone();
        v[2] = 9;
        assert_eq!(
            decode_frame::<Vec<u8>>(&v, 1, 10_000),
            Err(CodecError::Version(9))
        );
        let mut huge = f.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse_header(&huge, DEFAULT_MAX_FRAME),
            Err(CodecError::TooLarge { .. })
        ));
        // a length prefix inside the payload that claims more than the limit
        let lying = to_bytes(&(u64::MAX >> 1));
        assert!(from_bytes::<Vec<u8>>(&lying, 1 << 10).is_err());
    }
}
