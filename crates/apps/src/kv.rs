//! A deterministic key-value store with Redis semantics for a command subset.
//!
//! | command | reply |
//! |---|---|
//! | `GET key` | the value, or `(nil)`; `WRONGTYPE` if the key holds another type |
//! | `SET key value` | `OK` (whatever type the key held) |
//! | `DEL key [key ...]` | `(integer)` keys removed (a key named twice counts once) |
//! | `EXISTS key [key ...]` | `(integer)` keys present (a key named twice counts twice) |
//! | `INCR key` | `(integer)` the new value; a missing key counts as 0; a value that is not a canonical decimal `i64` is an error, and so is overflow |
//! | `MGET key [key ...]` | an array of values or `(nil)` (also for a key of another type) |
//! | `MSET key value [key value ...]` | `OK`, all keys set atomically (the last value of a repeated key wins) |
//! | `PING` | `PONG` |
//! | `WATCH key [key ...]` ([`KvOp::Watch`]) | the keys' versions, which the gateway keeps for the connection's `EXEC` (see [`multi`]) |
//! | `MULTI ... EXEC` ([`KvOp::Exec`]: the watched keys with their versions and the queued command lines) | the nil array if a watched key was written, deleted or expired since its `WATCH` (nothing runs); else the array of the commands' replies, run in order as one operation, errors as elements (no rollback) |
//!
//! Every other command of the store travels as [`KvOp::Call`], its command line, and
//! runs from the command table of [`commands`] (arity, key positions, read-only;
//! Redis 7.0's validation, order of checks and error texts), one file per family:
//!
//! | family | commands | file |
//! |---|---|---|
//! | strings, keys | `SET` with options (`NX`, `XX`, `GET`, `EX`, `PX`, `EXAT`, `PXAT`, `KEEPTTL`), `SETNX`, `SETEX`, `PSETEX`, `GETSET`, `GETDEL`, `GETEX`, `APPEND`, `STRLEN`, `GETRANGE`, `SETRANGE`, `INCRBY`, `DECR`, `DECRBY`, `INCRBYFLOAT`, `MSETNX`, `UNLINK`, `TYPE`, `RENAME`, `RENAMENX`, `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` (with `NX`/`XX`/`GT`/`LT`), `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`, `PERSIST`, `TIME`, `KEYS`, `SCAN` (with `TYPE`), `DBSIZE`, `FLUSHDB`, `FLUSHALL` | [`commands`] |
//! | hashes | `HSET`, `HMSET`, `HSETNX`, `HGET`, `HMGET`, `HGETALL`, `HDEL`, `HEXISTS`, `HINCRBY`, `HINCRBYFLOAT`, `HKEYS`, `HVALS`, `HLEN`, `HSTRLEN`, `HSCAN` | `kv/hash.rs` |
//! | lists | `LPUSH`, `RPUSH`, `LPUSHX`, `RPUSHX`, `LPOP`, `RPOP` (with count), `LRANGE`, `LLEN`, `LINDEX`, `LSET`, `LREM`, `LTRIM`, `LINSERT`, `LPOS` | `kv/list.rs` |
//! | sets | `SADD`, `SREM`, `SMEMBERS`, `SISMEMBER`, `SMISMEMBER`, `SCARD`, `SINTER`, `SUNION`, `SDIFF`, `SINTERSTORE`, `SUNIONSTORE`, `SDIFFSTORE` | `kv/set.rs` |
//! | sorted sets | `ZADD` (`NX`/`XX`/`GT`/`LT`/`CH`/`INCR`), `ZINCRBY`, `ZREM`, `ZSCORE`, `ZCARD`, `ZRANK`, `ZREVRANK`, `ZCOUNT`, `ZRANGE` (`BYSCORE`/`BYLEX`/`REV`/`LIMIT`/`WITHSCORES`), `ZREVRANGE`, `ZRANGEBYSCORE`, `ZREVRANGEBYSCORE` | `kv/zset.rs` |
//!
//! The typed variants are the hot and checker-modelled commands; [`KvOp::from_args`]
//! produces a typed variant whenever one fits, and a `Call` that names one is run as
//! that variant, so each command has one implementation. Values are typed
//! ([`Value`]: string, hash, list, set, sorted set, all in `BTree` collections or a
//! `VecDeque`), a command on a key of another type gets Redis's `WRONGTYPE` error,
//! and a collection left empty is deleted. Collections are bounded in bytes
//! ([`MAX_COLLECTION_BYTES`]), replies that gather values from several keys by
//! [`MAX_REPLY_BYTES`] (see [`value`]). Floating point (scores, `INCRBYFLOAT`) is
//! computed exactly as Redis does on x86-64, in integer arithmetic (see [`float`]).
//!
//! Operations travel as the codec encoding of [`KvOp`] and replies as the encoding of
//! [`KvReply`]. All semantics live in the pure sequential [`Model`]; the replicated
//! [`KvStore`] only decodes, calls the model and encodes, so the linearizability
//! checker of the simulator replays histories against exactly the code that replicas
//! run. State is a `BTreeMap`, so snapshots list keys in order and are canonical.
//! Time (key expiry, `TIME`) is the replicated batch time (see [`Model`]).
//!
//! [`KvOp::from_args`] parses a Redis command line (as a RESP gateway receives it).
//! The gateway (`byzscale-gateway`, `resp::reply`) writes a reply in RESP2 or RESP3
//! (maps for `HGETALL`, sets for `SMEMBERS`, doubles for `ZSCORE`).

pub mod commands;
pub mod float;
mod hash;
mod list;
pub mod multi;
mod set;
pub mod value;
mod zset;

pub use value::{Value, ERR_WRONGTYPE, MAX_COLLECTION_BYTES};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use byzscale_core::codec::{self, CodecError};
use byzscale_core::service::{BatchCtx, Service};
use serde::{Deserialize, Serialize};

/// The largest encoded operation [`KvOp::decode`] accepts (the default frame limit).
pub const MAX_OP_LEN: usize = codec::DEFAULT_MAX_FRAME;
/// Redis's reply to INCR on a value that is not an integer in `i64` range.
pub const ERR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";
/// Redis's reply to INCR of `i64::MAX`.
pub const ERR_OVERFLOW: &str = "ERR increment or decrement would overflow";
/// The reply to operation bytes that do not decode as a [`KvOp`]. It is a constant (not
/// the decoder's message) so that every replica gives the same reply.
pub const ERR_MALFORMED: &str = "ERR malformed operation";
/// The most bytes of values one reply that gathers them from several keys, or
/// repeats them, may carry (`MGET`, `HMGET`, `SUNION`, `SINTER`, `SDIFF`, `KEYS`),
/// counting [`value::ELEMENT_OVERHEAD`] per element: under the 16 MiB reply frame
/// with room to spare. A whole-collection reply stays under it by
/// [`MAX_COLLECTION_BYTES`].
pub const MAX_REPLY_BYTES: usize = 12 << 20;

/// The error of a reply over [`MAX_REPLY_BYTES`].
pub fn err_reply_too_large() -> KvReply {
    KvReply::Error(format!(
        "ERR reply exceeds the maximum allowed size ({MAX_REPLY_BYTES} bytes)"
    ))
}

/// `Ok` if replying with elements of these lengths stays within [`MAX_REPLY_BYTES`].
pub fn reply_within(lens: impl IntoIterator<Item = usize>) -> Result<(), KvReply> {
    let total = lens
        .into_iter()
        .fold(0usize, |t, l| t.saturating_add(value::cost(l)));
    if total > MAX_REPLY_BYTES {
        Err(err_reply_too_large())
    } else {
        Ok(())
    }
}

/// Snapshot magic of the KV store.
const MAGIC: [u8; 4] = *b"BZKV";
/// Snapshot format version: 3 since the `WATCH` versions are in it (2: typed values,
/// no versions, still read; 1: strings only).
const SNAPSHOT_VERSION: u8 = 3;
/// The previous snapshot format, still restored (with no versions kept).
const SNAPSHOT_VERSION_2: u8 = 2;

/// A KV operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KvOp {
    /// `GET key`
    Get(Vec<u8>),
    /// `SET key value`
    Set(Vec<u8>, Vec<u8>),
    /// `DEL key [key ...]`
    Del(Vec<Vec<u8>>),
    /// `EXISTS key [key ...]`
    Exists(Vec<Vec<u8>>),
    /// `INCR key`
    Incr(Vec<u8>),
    /// `MGET key [key ...]`
    MGet(Vec<Vec<u8>>),
    /// `MSET key value [key value ...]`
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// `PING`
    Ping,
    /// Any other command of [`commands::TABLE`]: its command line, the name first (in
    /// lower case when made by [`KvOp::from_args`]).
    Call(Vec<Vec<u8>>),
    /// `WATCH key [key ...]` as the gateway sends it: the reply is the list of the
    /// keys' current versions (see [`multi`]); it changes nothing.
    Watch(Vec<Vec<u8>>),
    /// `MULTI ... EXEC`: the queued command lines (as [`KvOp::from_args`] takes them),
    /// run as one operation unless a watched key's version is no longer the one given
    /// (see [`multi`]).
    Exec {
        /// The watched keys and the versions `WATCH` answered for them.
        watch: Vec<(Vec<u8>, u64)>,
        /// The queued command lines, in order.
        cmds: Vec<Vec<Vec<u8>>>,
    },
}

/// A KV reply, shaped like the RESP reply Redis would send.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KvReply {
    /// `+OK`
    Ok,
    /// A nil bulk string (a missing key).
    Nil,
    /// A bulk string.
    Bulk(Vec<u8>),
    /// An integer.
    Int(i64),
    /// An array of bulk strings or nils (MGET).
    Array(Vec<Option<Vec<u8>>>),
    /// An error, with Redis's text (e.g. [`ERR_NOT_INTEGER`]).
    Error(String),
    /// `+PONG`
    Pong,
    /// A status reply, `+<text>` (`TYPE`).
    Status(String),
    /// An array of any replies (`SCAN`: the cursor and an array of keys).
    List(Vec<KvReply>),
    /// A double, already written as Redis writes it (`%.17g`: `1.1000000000000001`,
    /// `inf`): a bulk string in RESP2, a `,` double in RESP3 (`ZSCORE`).
    Double(String),
    /// A map (`HGETALL`): a flat array of keys and values in RESP2, a `%` map in RESP3.
    Map(Vec<(KvReply, KvReply)>),
    /// A set (`SMEMBERS`, `SINTER`, ...): an array in RESP2, a `~` set in RESP3.
    Set(Vec<KvReply>),
    /// Pairs (`ZRANGE ... WITHSCORES`): a flat array in RESP2, an array of
    /// two-element arrays in RESP3.
    Pairs(Vec<(KvReply, KvReply)>),
    /// The nil array (`LPOP key count` of a missing key): `*-1` in RESP2, `_` in RESP3.
    NilArray,
}

impl KvOp {
    /// The codec encoding: the bytes a client submits.
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }

    /// Decode operation bytes (at most [`MAX_OP_LEN`]); never panics.
    pub fn decode(bytes: &[u8]) -> Result<KvOp, CodecError> {
        codec::from_bytes(bytes, MAX_OP_LEN)
    }

    /// Whether the operation never changes state (GET, EXISTS, MGET, PING), so that
    /// [`Service::query`] may answer it without ordering.
    pub fn is_read_only(&self) -> bool {
        match self {
            KvOp::Get(_) | KvOp::Exists(_) | KvOp::MGet(_) | KvOp::Ping => true,
            KvOp::Call(args) => Self::spec(args).is_some_and(|s| s.read_only),
            KvOp::Watch(_) => true,
            KvOp::Set(..) | KvOp::Del(_) | KvOp::Incr(_) | KvOp::MSet(_) | KvOp::Exec { .. } => {
                false
            }
        }
    }

    /// The table entry of a command line whose name is known and whose arity fits.
    fn spec(args: &[Vec<u8>]) -> Option<&'static commands::Spec> {
        commands::check(args).ok()
    }

    /// Whether the operation reads or writes every key (`KEYS`, `SCAN`, `DBSIZE`,
    /// `FLUSHDB`, `FLUSHALL`), so that it conflicts with any other operation.
    pub fn touches_all_keys(&self) -> bool {
        match self {
            KvOp::Call(args) => Self::spec(args).is_some_and(|s| s.all_keys),
            KvOp::Exec { cmds, .. } => cmds
                .iter()
                .any(|line| Self::spec(line).is_some_and(|s| s.all_keys)),
            _ => false,
        }
    }

    /// The keys the operation reads or writes, in argument order (repeats included).
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            KvOp::Get(k) | KvOp::Set(k, _) | KvOp::Incr(k) => vec![k.as_slice()],
            KvOp::Del(ks) | KvOp::Exists(ks) | KvOp::MGet(ks) | KvOp::Watch(ks) => {
                ks.iter().map(Vec::as_slice).collect()
            }
            KvOp::MSet(kvs) => kvs.iter().map(|(k, _)| k.as_slice()).collect(),
            KvOp::Ping => Vec::new(),
            KvOp::Call(args) => Self::spec(args).map_or_else(Vec::new, |s| s.keys(args)),
            KvOp::Exec { watch, cmds } => watch
                .iter()
                .map(|(k, _)| k.as_slice())
                .chain(
                    cmds.iter()
                        .flat_map(|line| Self::spec(line).map_or_else(Vec::new, |s| s.keys(line))),
                )
                .collect(),
        }
    }

    /// The Redis command name: upper case for the typed variants, the table name (lower
    /// case) for a [`KvOp::Call`], `?` for an unknown one.
    pub fn name(&self) -> &'static str {
        match self {
            KvOp::Get(_) => "GET",
            KvOp::Set(..) => "SET",
            KvOp::Del(_) => "DEL",
            KvOp::Exists(_) => "EXISTS",
            KvOp::Incr(_) => "INCR",
            KvOp::MGet(_) => "MGET",
            KvOp::MSet(_) => "MSET",
            KvOp::Ping => "PING",
            KvOp::Call(args) => Self::spec(args).map_or("?", |s| s.name),
            KvOp::Watch(_) => "WATCH",
            KvOp::Exec { .. } => "EXEC",
        }
    }

    /// The command line of the operation (the inverse of [`KvOp::from_args`], the
    /// name in lower case); `WATCH` and `EXEC` give `watch`/`exec` lines, which no
    /// store runs.
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        let name = self.name().to_ascii_lowercase().into_bytes();
        let mut line = vec![name];
        match self {
            KvOp::Call(args) => return args.clone(),
            KvOp::Get(k) | KvOp::Incr(k) => line.push(k.clone()),
            KvOp::Set(k, v) => line.extend([k.clone(), v.clone()]),
            KvOp::Del(ks) | KvOp::Exists(ks) | KvOp::MGet(ks) | KvOp::Watch(ks) => {
                line.extend(ks.iter().cloned())
            }
            KvOp::MSet(kvs) => {
                for (k, v) in kvs {
                    line.extend([k.clone(), v.clone()]);
                }
            }
            KvOp::Ping | KvOp::Exec { .. } => {}
        }
        line
    }

    /// Parse a Redis command line such as `["SET", "k", "v"]` (the command name is
    /// case-insensitive): a typed variant where one fits, otherwise a [`KvOp::Call`]
    /// with the name in lower case. The error is the Redis error text to send back for
    /// an unknown command or a wrong number of arguments (`ERR wrong number of
    /// arguments for 'get' command`); other argument errors are the replicas' to give.
    pub fn from_args<A: AsRef<[u8]>>(args: &[A]) -> Result<KvOp, String> {
        let mut args: Vec<Vec<u8>> = args.iter().map(|a| a.as_ref().to_vec()).collect();
        let spec = commands::check(&args).map_err(|e| match e {
            KvReply::Error(text) => text,
            other => other.to_string(),
        })?;
        let mut rest = args.split_off(1);
        let pairs = |rest: Vec<Vec<u8>>| {
            let mut it = rest.into_iter();
            std::iter::from_fn(move || Some((it.next()?, it.next()?))).collect()
        };
        Ok(match spec.name {
            "get" => KvOp::Get(rest.swap_remove(0)),
            "set" if rest.len() == 2 => {
                let v = rest.pop().unwrap_or_default();
                KvOp::Set(rest.swap_remove(0), v)
            }
            "del" | "unlink" => KvOp::Del(rest),
            "exists" => KvOp::Exists(rest),
            "incr" => KvOp::Incr(rest.swap_remove(0)),
            "mget" => KvOp::MGet(rest),
            "mset" if rest.len() % 2 == 1 => return Err(commands::wrong_arity("mset")),
            "mset" => KvOp::MSet(pairs(rest)),
            "ping" if rest.is_empty() => KvOp::Ping,
            name => {
                let mut line = vec![name.as_bytes().to_vec()];
                line.append(&mut rest);
                KvOp::Call(line)
            }
        })
    }
}

impl KvReply {
    /// The codec encoding: the bytes a replica replies with.
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }

    /// Decode reply bytes (at most [`MAX_OP_LEN`]); never panics.
    pub fn decode(bytes: &[u8]) -> Result<KvReply, CodecError> {
        codec::from_bytes(bytes, MAX_OP_LEN)
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, KvReply::Error(_))
    }
}

/// Displays bytes compactly for traces: bare if they are non-empty printable ASCII
/// without spaces or quotes, otherwise quoted with escapes like redis-cli (`"a b"`,
/// `"\x00"`, `""`).
#[derive(Clone, Copy, Debug)]
pub struct Printable<'a>(pub &'a [u8]);

/// Displays bytes always quoted, like redis-cli shows a bulk string.
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a [u8]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &c in self.0 {
            match c {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b'\t' => f.write_str("\\t")?,
                0x20..=0x7e => write!(f, "{}", c as char)?,
                _ => write!(f, "\\x{c:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = !self.0.is_empty()
            && self
                .0
                .iter()
                .all(|&c| (0x21..=0x7e).contains(&c) && c != b'"' && c != b'\\');
        if bare {
            // all bytes are printable ASCII
            f.write_str(std::str::from_utf8(self.0).map_err(|_| fmt::Error)?)
        } else {
            Quoted(self.0).fmt(f)
        }
    }
}

impl fmt::Display for KvOp {
    /// `GET k`, `SET k v`, `DEL a b`, `MSET a 1 b 2`, `PING`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name().to_ascii_uppercase())?;
        match self {
            KvOp::Get(k) | KvOp::Incr(k) => write!(f, " {}", Printable(k)),
            KvOp::Set(k, v) => write!(f, " {} {}", Printable(k), Printable(v)),
            KvOp::Del(ks) | KvOp::Exists(ks) | KvOp::MGet(ks) | KvOp::Watch(ks) => {
                ks.iter().try_for_each(|k| write!(f, " {}", Printable(k)))
            }
            KvOp::Exec { watch, cmds } => multi::fmt_exec(f, watch, cmds),
            KvOp::MSet(kvs) => kvs
                .iter()
                .try_for_each(|(k, v)| write!(f, " {} {}", Printable(k), Printable(v))),
            KvOp::Ping => Ok(()),
            KvOp::Call(args) => args
                .iter()
                .skip(1)
                .try_for_each(|a| write!(f, " {}", Printable(a))),
        }
    }
}

impl fmt::Display for KvReply {
    /// `OK`, `(nil)`, `"v"`, `(integer) 3`, `["a", (nil)]`, `(error) ERR ...`, `PONG`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvReply::Ok => f.write_str("OK"),
            KvReply::Nil => f.write_str("(nil)"),
            KvReply::Bulk(b) => Quoted(b).fmt(f),
            KvReply::Int(i) => write!(f, "(integer) {i}"),
            KvReply::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match item {
                        Some(b) => Quoted(b).fmt(f)?,
                        None => f.write_str("(nil)")?,
                    }
                }
                f.write_str("]")
            }
            KvReply::Error(e) => write!(f, "(error) {e}"),
            KvReply::Pong => f.write_str("PONG"),
            KvReply::Status(s) => f.write_str(s),
            KvReply::List(items) | KvReply::Set(items) => {
                f.write_str(if matches!(self, KvReply::Set(_)) {
                    "{"
                } else {
                    "["
                })?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    item.fmt(f)?;
                }
                f.write_str(if matches!(self, KvReply::Set(_)) {
                    "}"
                } else {
                    "]"
                })
            }
            KvReply::Double(d) => write!(f, "(double) {d}"),
            KvReply::Map(pairs) | KvReply::Pairs(pairs) => {
                let map = matches!(self, KvReply::Map(_));
                f.write_str(if map { "{" } else { "[" })?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if map {
                        write!(f, "{k}: {v}")?;
                    } else {
                        write!(f, "({k}, {v})")?;
                    }
                }
                f.write_str(if map { "}" } else { "]" })
            }
            KvReply::NilArray => f.write_str("(nil array)"),
        }
    }
}

/// Parse a value the way Redis's `string2ll` does: an optional `-`, then decimal digits
/// without leading zeros (`"0"` alone is fine), no spaces or `+`, within `i64`.
pub fn parse_integer(v: &[u8]) -> Option<i64> {
    if v == b"0" {
        return Some(0);
    }
    let (negative, digits) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    match digits.first() {
        Some(b'1'..=b'9') if digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit) => {}
        _ => return None,
    }
    let magnitude = digits
        .iter()
        .fold(0i128, |acc, d| acc * 10 + i128::from(d - b'0'));
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// The pure sequential KV model: all command semantics, on a `BTreeMap`.
///
/// [`KvStore`] wraps exactly this, and the simulator's linearizability checker uses it
/// as the sequential specification (its `Hash`/`Eq` let the checker memoize states).
///
/// # Time and expiry
///
/// The model has a clock, `now` (ms since the Unix epoch), which only the
/// replicated batch time moves ([`Model::advance`], called by
/// [`Service::begin_batch`] before each batch): every operation of a batch
/// runs at the same time, the same at every replica. A key with a TTL has a
/// deadline; it expires once `now` passes it (Redis: `now > when`). Expired
/// keys are deleted when the clock moves, all at once and in deadline order
/// (an index by deadline keeps that O(expired keys)), so between two batches
/// the state holds no expired key: reads, `KEYS`, `SCAN`, `DBSIZE`, unordered
/// queries and snapshots need no filtering, and an expiry or `EXPIREAT` in the
/// past (`SET ... PXAT 1`) deletes the key at once. Redis deletes expired keys
/// lazily on access plus a sampling sweep; the replies are the same, the
/// memory held is not (here none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Model {
    map: BTreeMap<Vec<u8>, Value>,
    /// The deadline (ms since the epoch) of each key with a TTL: a key of `map`.
    ttl: BTreeMap<Vec<u8>, u64>,
    /// The same entries as `ttl`, in deadline order.
    deadlines: BTreeSet<(u64, Vec<u8>)>,
    /// The time of the current (or last) batch.
    now: u64,
    /// The `WATCH` versions of the keys written since they were last forgotten
    /// (see [`multi`]).
    versions: multi::Versions,
}

/// A command line as its typed variant if it has one (`Ok(None)`: it stays a
/// [`KvOp::Call`]); an unknown name or a wrong arity is the error reply.
fn typed(args: &[Vec<u8>]) -> Result<Option<KvOp>, KvReply> {
    match KvOp::from_args(args) {
        Ok(KvOp::Call(_)) => Ok(None),
        Ok(op) => Ok(Some(op)),
        Err(text) => Err(KvReply::Error(text)),
    }
}

fn wrong_arity(command: &str) -> KvReply {
    KvReply::Error(format!(
        "ERR wrong number of arguments for '{command}' command"
    ))
}

impl Model {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding the strings of `map`, no key with a TTL, at time 0.
    pub fn from_map(map: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        Self {
            map: map.into_iter().map(|(k, v)| (k, Value::Str(v))).collect(),
            ..Self::default()
        }
    }

    /// The clock: the time of the current batch, ms since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Move the clock to `now_ms` (never back) and delete the keys whose
    /// deadline it passed (see the type's docs).
    pub fn advance(&mut self, now_ms: u64) {
        self.now = self.now.max(now_ms);
        while let Some((when, _)) = self.deadlines.first() {
            if *when >= self.now {
                break;
            }
            if let Some((_, key)) = self.deadlines.pop_first() {
                self.ttl.remove(&key);
                self.map.remove(&key);
                self.versions.touch(&key);
            }
        }
    }

    /// The deadline of `key`, if it has a TTL.
    pub fn deadline(&self, key: &[u8]) -> Option<u64> {
        self.ttl.get(key).copied()
    }

    /// The keys with a TTL, in deadline order (earliest first).
    pub fn deadlines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.deadlines.iter().map(|(when, k)| (*when, k.as_slice()))
    }

    /// Set the clock to `now_ms` without expiring anything, even back (a raw
    /// state edit, for checkers that undo operations).
    pub fn set_clock(&mut self, now_ms: u64) {
        self.now = now_ms;
    }

    /// Set `key`'s value and deadline directly (`None` value: remove the key
    /// and its deadline; an empty collection is not stored); a raw state
    /// edit, for checkers that undo operations.
    pub fn set_entry(&mut self, key: &[u8], value: Option<Value>, deadline: Option<u64>) {
        match value {
            Some(v) if !v.is_empty_collection() => {
                self.put_value(key.to_vec(), v);
                if let Some(when) = deadline {
                    self.set_deadline(key, when);
                }
            }
            _ => {
                self.delete(key);
            }
        }
    }

    /// Give `key` (present) the deadline `when`.
    fn set_deadline(&mut self, key: &[u8], when: u64) {
        self.clear_deadline(key);
        self.ttl.insert(key.to_vec(), when);
        self.deadlines.insert((when, key.to_vec()));
    }

    /// Remove `key`'s TTL; whether it had one.
    fn clear_deadline(&mut self, key: &[u8]) -> bool {
        match self.ttl.remove(key) {
            Some(when) => self.deadlines.remove(&(when, key.to_vec())),
            None => false,
        }
    }

    /// Set `key` to the string `value` as Redis's `SET` does (whatever the key held):
    /// a TTL it had is gone.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Value> {
        self.put_value(key, Value::Str(value))
    }

    /// Set `key` to `value`, dropping its TTL.
    fn put_value(&mut self, key: Vec<u8>, value: Value) -> Option<Value> {
        self.clear_deadline(&key);
        self.map.insert(key, value)
    }

    /// Delete `key` and its TTL; its value.
    fn delete(&mut self, key: &[u8]) -> Option<Value> {
        self.clear_deadline(key);
        self.map.remove(key)
    }

    /// Delete every key.
    fn clear(&mut self) {
        self.map.clear();
        self.ttl.clear();
        self.deadlines.clear();
    }

    /// The contents, in key order.
    pub fn map(&self) -> &BTreeMap<Vec<u8>, Value> {
        &self.map
    }

    /// Take the contents.
    pub fn into_map(self) -> BTreeMap<Vec<u8>, Value> {
        self.map
    }

    /// The string value of `key` (`None` if missing or not a string).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).and_then(Value::as_str)
    }

    /// The value of `key`, of any type.
    pub fn value(&self, key: &[u8]) -> Option<&Value> {
        self.map.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Set `key` to the string `value` directly, without a TTL, returning the old
    /// value (raw state edit, for tests and checkers that undo operations).
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Value> {
        self.put(key, value)
    }

    /// Set `key` to `value` (any type; an empty collection is not stored) directly,
    /// without a TTL, returning the old value (raw state edit).
    pub fn insert_value(&mut self, key: Vec<u8>, value: Value) -> Option<Value> {
        if value.is_empty_collection() {
            return self.delete(&key);
        }
        self.put_value(key, value)
    }

    /// Remove `key` directly, returning its value (raw state edit).
    pub fn remove(&mut self, key: &[u8]) -> Option<Value> {
        self.delete(key)
    }

    /// A copy holding only the given keys, with their TTLs, at the same time (the
    /// checker's per-component state).
    pub fn restricted_to<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Model {
        let mut part = Model {
            now: self.now,
            versions: self.versions.without_entries(),
            ..Model::default()
        };
        for k in keys {
            part.versions.set_entry(k, self.versions.entry(k));
            if let Some(v) = self.map.get(k) {
                part.map.insert(k.to_vec(), v.clone());
                if let Some(when) = self.deadline(k) {
                    part.set_deadline(k, when);
                }
            }
        }
        part
    }

    /// Answer a read-only operation; `None` if `op` is not read-only.
    pub fn read(&self, op: &KvOp) -> Option<KvReply> {
        Some(match op {
            KvOp::Get(k) => match self.read_as::<Vec<u8>>(k) {
                Ok(v) => v.map_or(KvReply::Nil, |v| KvReply::Bulk(v.clone())),
                Err(e) => e,
            },
            KvOp::Exists(ks) if ks.is_empty() => wrong_arity("exists"),
            KvOp::Exists(ks) => {
                KvReply::Int(ks.iter().filter(|k| self.map.contains_key(*k)).count() as i64)
            }
            KvOp::MGet(ks) if ks.is_empty() => wrong_arity("mget"),
            KvOp::MGet(ks) => {
                // a key of another type reads as nil, as in Redis
                let values: Vec<Option<&[u8]>> = ks.iter().map(|k| self.get(k)).collect();
                if let Err(e) = reply_within(values.iter().map(|v| v.map_or(0, <[u8]>::len))) {
                    return Some(e);
                }
                KvReply::Array(values.into_iter().map(|v| v.map(<[u8]>::to_vec)).collect())
            }
            KvOp::Ping => KvReply::Pong,
            KvOp::Watch(ks) if ks.is_empty() => wrong_arity("watch"),
            KvOp::Watch(ks) => self.watch(ks),
            KvOp::Exec { .. } => return None,
            KvOp::Call(args) => {
                return match typed(args) {
                    Ok(Some(op)) => self.read(&op),
                    Ok(None) => commands::read(self, args),
                    Err(e) => KvOp::is_read_only(op).then_some(e),
                }
            }
            KvOp::Set(..) | KvOp::Del(_) | KvOp::Incr(_) | KvOp::MSet(_) => return None,
        })
    }

    /// Execute any operation, changing the state as Redis would, and return its reply.
    /// A write counts as a change of each key it names for `WATCH` (see [`multi`]).
    pub fn apply(&mut self, op: &KvOp) -> KvReply {
        if let Some(reply) = self.read(op) {
            return reply;
        }
        if let KvOp::Exec { watch, cmds } = op {
            return self.exec(watch, cmds);
        }
        let present = self.present_if_all_keys(op);
        let reply = self.write(op);
        if !reply.is_error() {
            self.touch_written(op, present);
        }
        reply
    }

    /// Execute a write operation (not an `EXEC`).
    fn write(&mut self, op: &KvOp) -> KvReply {
        match op {
            KvOp::Set(k, v) => {
                self.put(k.clone(), v.clone());
                KvReply::Ok
            }
            KvOp::Del(ks) if ks.is_empty() => wrong_arity("del"),
            KvOp::Del(ks) => {
                KvReply::Int(ks.iter().filter(|k| self.delete(k).is_some()).count() as i64)
            }
            KvOp::Incr(k) => commands::incr_by(self, k, 1).unwrap_or_else(|e| e),
            KvOp::MSet(kvs) if kvs.is_empty() => wrong_arity("mset"),
            KvOp::MSet(kvs) => {
                for (k, v) in kvs {
                    self.put(k.clone(), v.clone());
                }
                KvReply::Ok
            }
            KvOp::Call(args) => match typed(args) {
                Ok(Some(op)) => self.write(&op),
                Ok(None) => commands::exec(self, args),
                Err(e) => e,
            },
            KvOp::Get(_) | KvOp::Exists(_) | KvOp::MGet(_) | KvOp::Ping | KvOp::Watch(_) => {
                unreachable!("answered by read()")
            }
            KvOp::Exec { .. } => unreachable!("run above"),
        }
    }
}

/// The replicated KV service: decodes [`KvOp`]s, runs them on a [`Model`], encodes
/// [`KvReply`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    model: Model,
}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current state.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Execute a typed operation (what [`Service::execute`] does after decoding).
    pub fn apply(&mut self, op: &KvOp) -> KvReply {
        self.model.apply(op)
    }
}

impl Service for KvStore {
    /// The batch's agreed time is the store's clock: keys it passed expire.
    fn begin_batch(&mut self, batch: BatchCtx) {
        self.model.advance(batch.time_ms);
    }

    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        match KvOp::decode(op) {
            Ok(op) => self.model.apply(&op),
            Err(_) => KvReply::Error(ERR_MALFORMED.to_string()),
        }
        .encode()
    }

    /// Answers well-formed read-only operations; `None` for writes and for malformed
    /// bytes (ordering them yields the deterministic [`ERR_MALFORMED`] reply). Reads
    /// the state as of the last executed batch, at that batch's time (`TTL`, `TIME`):
    /// the same at every replica that executed the same batches.
    fn query(&self, op: &[u8]) -> Option<Vec<u8>> {
        let op = KvOp::decode(op).ok()?;
        self.model.read(&op).map(|r| r.encode())
    }

    /// `"BZKV" | version | now | [(key, value)] | [(key, deadline)] | versions`, the
    /// lists in key order, a value as its type and its elements in order (see
    /// [`value`]), the `WATCH` versions as their floor and `[(key, version)]` in key
    /// order (see [`multi`]). No expired key is in it (see [`Model`]).
    fn snapshot(&self) -> Vec<u8> {
        let m = &self.model;
        crate::snapshot::encode(
            MAGIC,
            SNAPSHOT_VERSION,
            &(m.now, &m.map, &m.ttl, &m.versions),
        )
    }

    /// Accepts only canonical snapshots (keys strictly ascending, a deadline only for
    /// a key present and not before the clock); on error the state is unchanged.
    /// A version 2 snapshot (before `WATCH`) restores with no versions kept.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        type Body2 = (u64, Vec<(Vec<u8>, Value)>, Vec<(Vec<u8>, u64)>);
        type Body = (
            u64,
            Vec<(Vec<u8>, Value)>,
            Vec<(Vec<u8>, u64)>,
            multi::Versions,
        );
        let (now, entries, ttls, versions): Body = if snapshot.get(4) == Some(&SNAPSHOT_VERSION_2) {
            let (now, entries, ttls): Body2 =
                crate::snapshot::decode(MAGIC, SNAPSHOT_VERSION_2, snapshot)?;
            (now, entries, ttls, multi::Versions::default())
        } else {
            crate::snapshot::decode(MAGIC, SNAPSHOT_VERSION, snapshot)?
        };
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) || ttls.windows(2).any(|w| w[0].0 >= w[1].0)
        {
            return Err("malformed KV snapshot: keys not strictly ascending".to_string());
        }
        let mut model = Model {
            map: entries.into_iter().collect(),
            now,
            versions,
            ..Model::default()
        };
        for (key, when) in ttls {
            if !model.map.contains_key(&key) || when < now {
                return Err(
                    "malformed KV snapshot: a deadline for a missing or expired key".into(),
                );
            }
            model.set_deadline(&key, when);
        }
        self.model = model;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
