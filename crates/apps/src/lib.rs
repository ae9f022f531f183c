//! byzscale replicated services: deterministic state machines that the SMR core
//! executes in decided order, each implementing [`byzscale_core::service::Service`].
//!
//! - [`kv`]: a key-value store with Redis semantics for the string, key, hash, list,
//!   set and sorted-set command families, plus the pure sequential [`kv::Model`]
//!   that the simulator's linearizability checker replays histories against.
//! - [`bank`]: accounts with balances, transfers and read-only balance / total queries.
//! - [`signed_bank`]: accounts that are ed25519 keys, transfers their owners sign
//!   (with per-account sequence numbers), verified a decided batch at a time: the
//!   bank with AT2's guarantees.
//! - [`noop`]: executes nothing and replies with a fixed-size reply (for benchmarks);
//!   its snapshot is the number of executed operations.
//!
//! Every service is a pure function of its state and the operation bytes: malformed
//! bytes produce an error reply, never a panic; snapshots are canonical (the same
//! state always gives the same bytes) and start with a 4-byte magic and a version so
//! that restoring a snapshot of another service, or garbage, is an error.

pub mod bank;
pub mod glob;
pub mod kv;
pub mod noop;
pub mod signed_bank;

use byzscale_core::service::Service;

/// The names accepted by [`by_name`].
pub const SERVICE_NAMES: &[&str] = &["kv", "bank", "noop"];

/// A fresh instance of the service called `name` (one of [`SERVICE_NAMES`]), e.g. for a
/// configuration file's `app = "kv"`. Returns `None` for an unknown name.
pub fn by_name(name: &str) -> Option<Box<dyn Service>> {
    match name {
        "kv" => Some(Box::new(kv::KvStore::new())),
        "bank" => Some(Box::new(bank::Bank::new())),
        "noop" => Some(Box::new(noop::Noop::new())),
        _ => None,
    }
}

/// Shared snapshot framing: `magic (4 bytes) | version (1 byte) | body`, all inside one
/// codec encoding of a tuple.
pub(crate) mod snapshot {
    use byzscale_core::codec;
    use serde::{de::DeserializeOwned, Serialize};

    /// The snapshot format version of a service that does not name its own.
    pub const VERSION: u8 = 1;

    /// Encode `body` behind `magic` and `version`.
    pub fn encode<T: Serialize + ?Sized>(magic: [u8; 4], version: u8, body: &T) -> Vec<u8> {
        codec::to_bytes(&(magic, version, body))
    }

    /// Decode a snapshot written by [`encode`]. Only the exact bytes `encode` writes for
    /// the decoded value are accepted (no alternative encodings, no trailing bytes), so a
    /// restored state snapshots to the same bytes.
    pub fn decode<T: Serialize + DeserializeOwned>(
        magic: [u8; 4],
        version: u8,
        bytes: &[u8],
    ) -> Result<T, String> {
        if bytes.len() < 5 || bytes[..4] != magic {
            return Err(format!(
                "not a {} snapshot (bad magic)",
                String::from_utf8_lossy(&magic)
            ));
        }
        if bytes[4] != version {
            return Err(format!(
                "unsupported snapshot version {} (this build reads {version})",
                bytes[4]
            ));
        }
        let (_, _, body): ([u8; 4], u8, T) = codec::from_bytes(bytes, bytes.len())
            .map_err(|e| format!("malformed snapshot: {e}"))?;
        if encode(magic, version, &body) != bytes {
            return Err("malformed snapshot: not in canonical form".to_string());
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_name_knows_every_service() {
        for name in SERVICE_NAMES {
            let mut s = by_name(name).expect("known service");
            let snap = s.snapshot();
            s.restore(&snap).expect("own snapshot restores");
        }
        assert!(by_name("redis").is_none());
    }

    #[test]
    fn snapshots_of_one_service_do_not_restore_into_another() {
        for a in SERVICE_NAMES {
            for b in SERVICE_NAMES {
                if a != b {
                    let snap = by_name(a).unwrap().snapshot();
                    assert!(by_name(b).unwrap().restore(&snap).is_err(), "{a} -> {b}");
                }
            }
        }
    }
}
