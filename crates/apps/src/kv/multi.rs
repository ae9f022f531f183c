//! Transactions: `MULTI`/`EXEC`/`DISCARD` and `WATCH`/`UNWATCH` (issue 12 item 4).
//!
//! The per-connection part (queueing after `MULTI`, `+QUEUED`, `EXECABORT`,
//! `DISCARD`, the watched keys) is the gateway's; the store sees two operations:
//!
//! - [`KvOp::Watch`]`(keys)`: read-only; the reply is the list of the keys' current
//!   *versions* (`(integer)`s, one per key, in order). The gateway keeps them per
//!   connection, for the connection's next `EXEC`.
//! - [`KvOp::Exec`]` { watch, cmds }`: one ordered operation. If the version of a
//!   watched key is no longer the one `WATCH` answered, nothing runs and the reply
//!   is the nil array ([`KvReply::NilArray`]: `*-1` in RESP2, `_` in RESP3), as
//!   Redis's `EXEC` after a watched key changed. Otherwise every queued command
//!   line runs in order, as if sent alone, and the reply is the list of their
//!   replies; an error of one command (`WRONGTYPE`, a syntax error, an unknown
//!   command sent by a client other than the gateway) is its element, and the
//!   others still run (no rollback, as in Redis). Command lines rather than nested
//!   operations keep the operation type non-recursive (a decoder cannot be driven
//!   into deep recursion). If the replies together would pass
//!   [`MAX_REPLY_BYTES`](super::MAX_REPLY_BYTES), each element past the bound is
//!   replaced by the reply-too-large error (its command did run).
//!
//! # Versions
//!
//! Every key has a version, a `u64` that only grows: the entry of [`Versions`] if
//! it has one, else the table's *floor*. Every write operation that does not
//! reply with an error ([`Model::apply`] of an operation that is not read-only:
//! the one place all writes of every family funnel through) adds one to the
//! version of each key it names (once per key), whatever it did to the key; a
//! whole-store write (`FLUSHDB`, `FLUSHALL`) to that of every key present, as
//! Redis touches the watched keys that existed; and key expiry
//! ([`Model::advance`]) to that of each key it deletes. A command refused with an
//! error changes nothing (every family validates before it writes, the
//! "refusal changes nothing" tests and the proptest below check it), so it is
//! not counted, as in Redis. So a key's version
//! after a write is always larger than any version `WATCH` answered for it before:
//! a watched key that was written, deleted, recreated or expired since its `WATCH`
//! makes `EXEC` fail. Deleted keys keep their entry, so a key deleted and recreated
//! never gets a version back.
//!
//! The table is bounded by [`MAX_VERSION_BYTES`] (each entry its key's bytes plus
//! [`ELEMENT_OVERHEAD`](super::value::ELEMENT_OVERHEAD)): a write that takes it past
//! the bound forgets every entry and raises the floor to the largest version
//! forgotten, so every version stays at least what it was (no missed change); a
//! transaction watching across that moment fails once, which Redis would not do.
//! Versions depend only on how many writes named each key (and on the floor), not
//! on their order or on other keys, so a sharded store (each shard has the
//! versions of its keys) answers the same versions as one store, and so does the
//! simulator's linearizability checker replaying a part of the keys.
//!
//! On the ByzCast-sharded store an `EXEC` travels as one multicast to the shards
//! of all its commands (atomic across shards, like a cross-shard `MSET`); one
//! with watched keys must keep all its keys on one shard, since the shards
//! cannot abort together without a commit round (`byzscale_byzcast::kv`).
//!
//! Deviations from Redis (all on the side of failing an `EXEC` Redis would run):
//! a write command that succeeds counts as a change of the keys it names even if
//! it changed nothing (`SETNX` of a present key, `DEL` of a missing one); the
//! bound above. `WATCH` is read-only, so with the gateway's unordered reads it
//! may read the versions of a slightly older state: an older version can only make
//! `EXEC` fail more often.

use std::collections::BTreeMap;
use std::fmt::{self, Display};

use byzscale_core::codec;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::value::cost;
use super::{err_reply_too_large, KvOp, KvReply, Model, Printable, MAX_REPLY_BYTES};

/// The most bytes the table of versions holds (see the module docs).
pub const MAX_VERSION_BYTES: usize = 16 << 20;

/// The `WATCH` versions of the keys (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Versions {
    /// The version of every key without an entry.
    floor: u64,
    /// Keys written since the table was last forgotten; every version is above the
    /// floor.
    entries: BTreeMap<Vec<u8>, u64>,
    /// The bytes counted for `entries`.
    bytes: usize,
}

impl Versions {
    /// The version of `key`.
    pub fn get(&self, key: &[u8]) -> u64 {
        self.entries.get(key).copied().unwrap_or(self.floor)
    }

    /// The entry of `key`, if it has one.
    pub fn entry(&self, key: &[u8]) -> Option<u64> {
        self.entries.get(key).copied()
    }

    /// Set or remove the entry of `key` directly (a raw edit, for checkers that
    /// undo operations).
    pub fn set_entry(&mut self, key: &[u8], version: Option<u64>) {
        let old = match version {
            Some(v) => self.entries.insert(key.to_vec(), v),
            None => self.entries.remove(key),
        };
        if old.is_some() {
            self.bytes -= cost(key.len());
        }
        if version.is_some() {
            self.bytes += cost(key.len());
        }
    }

    /// The entries, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.entries.iter().map(|(k, v)| (k.as_slice(), *v))
    }

    /// The same floor without entries.
    pub fn without_entries(&self) -> Versions {
        Versions {
            floor: self.floor,
            ..Versions::default()
        }
    }

    /// Count a write of `key`: its version grows by one.
    pub(super) fn touch(&mut self, key: &[u8]) {
        let next = self.get(key).saturating_add(1);
        self.set_entry(key, Some(next));
        if self.bytes > MAX_VERSION_BYTES {
            self.floor = next.max(self.entries.values().copied().max().unwrap_or(0));
            self.entries.clear();
            self.bytes = 0;
        }
    }
}

/// `floor | [(key, version)]` in key order.
impl Serialize for Versions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.floor, &self.entries).serialize(s)
    }
}

/// Accepts only what [`Serialize`] writes for a reachable table: every version
/// above the floor, within [`MAX_VERSION_BYTES`] (key order is checked by the
/// snapshot's canonical-form check).
impl<'de> Deserialize<'de> for Versions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (floor, entries): (u64, BTreeMap<Vec<u8>, u64>) = Deserialize::deserialize(d)?;
        if entries.values().any(|v| *v <= floor) {
            return Err(D::Error::custom("a WATCH version not above the floor"));
        }
        let bytes = entries
            .keys()
            .fold(0usize, |b, k| b.saturating_add(cost(k.len())));
        if bytes > MAX_VERSION_BYTES {
            return Err(D::Error::custom("too many WATCH versions"));
        }
        Ok(Versions {
            floor,
            entries,
            bytes,
        })
    }
}

/// The watched keys and their versions, for an `EXEC`, from a `WATCH` operation
/// and its reply (`None`: not a `WATCH`, or a reply of another shape).
pub fn watched(op: &KvOp, reply: &KvReply) -> Option<Vec<(Vec<u8>, u64)>> {
    let (KvOp::Watch(keys), KvReply::List(versions)) = (op, reply) else {
        return None;
    };
    if keys.len() != versions.len() {
        return None;
    }
    keys.iter()
        .zip(versions)
        .map(|(k, v)| match v {
            KvReply::Int(v) => Some((k.clone(), u64::try_from(*v).ok()?)),
            _ => None,
        })
        .collect()
}

/// A version as a reply integer.
fn int(v: u64) -> KvReply {
    KvReply::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Model {
    /// The `WATCH` version of `key` (see the module docs).
    pub fn version(&self, key: &[u8]) -> u64 {
        self.versions.get(key)
    }

    /// The `WATCH` versions.
    pub fn versions(&self) -> &Versions {
        &self.versions
    }

    /// The `WATCH` versions, mutably (raw state edits, for checkers).
    pub fn versions_mut(&mut self) -> &mut Versions {
        &mut self.versions
    }

    /// `WATCH key...`: the keys' versions.
    pub(super) fn watch(&self, keys: &[Vec<u8>]) -> KvReply {
        KvReply::List(keys.iter().map(|k| int(self.version(k))).collect())
    }

    /// The keys present, if `op` is a whole-store write (`FLUSHDB`): what
    /// [`Model::touch_written`] counts as changed by it.
    pub(super) fn present_if_all_keys(&self, op: &KvOp) -> Vec<Vec<u8>> {
        if op.touches_all_keys() {
            self.map.keys().cloned().collect()
        } else {
            Vec::new()
        }
    }

    /// Count the write `op`, which succeeded, as a change of the keys it names
    /// (`present`, the keys present before it, for a whole-store write).
    pub(super) fn touch_written(&mut self, op: &KvOp, present: Vec<Vec<u8>>) {
        if op.touches_all_keys() {
            for k in present {
                self.versions.touch(&k);
            }
            return;
        }
        let mut keys = op.keys();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            self.versions.touch(k);
        }
    }

    /// `EXEC`: nil if a watched key changed, else the replies of the command lines
    /// run in order (see the module docs).
    pub(super) fn exec(&mut self, watch: &[(Vec<u8>, u64)], cmds: &[Vec<Vec<u8>>]) -> KvReply {
        if watch.iter().any(|(k, v)| self.version(k) != *v) {
            return KvReply::NilArray;
        }
        let mut total = 0usize;
        let mut replies = Vec::with_capacity(cmds.len());
        for line in cmds {
            let mut reply = self.apply(&KvOp::Call(line.clone()));
            let mut len = codec::encoded_len(&reply);
            if total.saturating_add(len) > MAX_REPLY_BYTES {
                reply = err_reply_too_large();
                len = codec::encoded_len(&reply);
            }
            total = total.saturating_add(len);
            replies.push(reply);
        }
        KvReply::List(replies)
    }
}

/// The arguments of an `EXEC` operation as [`KvOp`]'s `Display` shows them:
/// ` WATCH k=3 j=0 [SET k v; GET k]`.
pub(super) fn fmt_exec(
    f: &mut fmt::Formatter<'_>,
    watch: &[(Vec<u8>, u64)],
    cmds: &[Vec<Vec<u8>>],
) -> fmt::Result {
    if !watch.is_empty() {
        f.write_str(" WATCH")?;
        for (k, v) in watch {
            write!(f, " {}={v}", Printable(k))?;
        }
    }
    f.write_str(" [")?;
    for (i, line) in cmds.iter().enumerate() {
        if i > 0 {
            f.write_str(";")?;
        }
        for (j, word) in line.iter().enumerate() {
            if i > 0 || j > 0 {
                f.write_str(" ")?;
            }
            if j == 0 {
                Printable(&word.to_ascii_uppercase()).fmt(f)?;
            } else {
                Printable(word).fmt(f)?;
            }
        }
    }
    f.write_str("]")
}

#[cfg(test)]
mod tests;
