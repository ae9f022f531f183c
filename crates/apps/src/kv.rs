//! A deterministic key-value store with Redis semantics for a command subset.
//!
//! | command | reply |
//! |---|---|
//! | `GET key` | the value, or `(nil)` |
//! | `SET key value` | `OK` |
//! | `DEL key [key ...]` | `(integer)` keys removed (a key named twice counts once) |
//! | `EXISTS key [key ...]` | `(integer)` keys present (a key named twice counts twice) |
//! | `INCR key` | `(integer)` the new value; a missing key counts as 0; a value that is not a canonical decimal `i64` is an error, and so is overflow |
//! | `MGET key [key ...]` | an array of values or `(nil)` |
//! | `MSET key value [key value ...]` | `OK`, all keys set atomically (the last value of a repeated key wins) |
//! | `PING` | `PONG` |
//!
//! Every other command of the store (the string and key families: `SET` with options
//! (`NX`, `XX`, `GET`, `EX`, `PX`, `EXAT`, `PXAT`, `KEEPTTL`), `SETNX`, `SETEX`,
//! `PSETEX`, `GETSET`, `GETDEL`, `GETEX`, `APPEND`, `STRLEN`, `GETRANGE`, `SETRANGE`,
//! `INCRBY`, `DECR`, `DECRBY`, `MSETNX`, `UNLINK`, `TYPE`, `RENAME`, `RENAMENX`,
//! `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` (with `NX`/`XX`/`GT`/`LT`), `TTL`,
//! `PTTL`, `PERSIST`, `TIME`, `KEYS`, `SCAN`, `DBSIZE`, `FLUSHDB`, `FLUSHALL`) travels
//! as [`KvOp::Call`], its command line, and
//! runs in [`commands`] (command table, Redis's validation and error texts). The typed
//! variants are the hot and checker-modelled commands; [`KvOp::from_args`] produces a
//! typed variant whenever one fits, and a `Call` that names one is run as that variant,
//! so each command has one implementation.
//!
//! Operations travel as the codec encoding of [`KvOp`] and replies as the encoding of
//! [`KvReply`]. All semantics live in the pure sequential [`Model`]; the replicated
//! [`KvStore`] only decodes, calls the model and encodes, so the linearizability
//! checker of the simulator replays histories against exactly the code that replicas
//! run. State is a `BTreeMap`, so snapshots list keys in order and are canonical.
//! Time (key expiry, `TIME`) is the replicated batch time (see [`Model`]).
//!
//! [`KvOp::from_args`] parses a Redis command line (as a RESP gateway receives it) and
//! The gateway (`byzscale-gateway`, `resp::reply`) writes a reply in RESP2.

pub mod commands;

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

/// Snapshot magic of the KV store.
const MAGIC: [u8; 4] = *b"BZKV";

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
            KvOp::Set(..) | KvOp::Del(_) | KvOp::Incr(_) | KvOp::MSet(_) => false,
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
            _ => false,
        }
    }

    /// The keys the operation reads or writes, in argument order (repeats included).
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            KvOp::Get(k) | KvOp::Set(k, _) | KvOp::Incr(k) => vec![k.as_slice()],
            KvOp::Del(ks) | KvOp::Exists(ks) | KvOp::MGet(ks) => {
                ks.iter().map(Vec::as_slice).collect()
            }
            KvOp::MSet(kvs) => kvs.iter().map(|(k, _)| k.as_slice()).collect(),
            KvOp::Ping => Vec::new(),
            KvOp::Call(args) => Self::spec(args).map_or_else(Vec::new, |s| s.keys(args)),
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
        }
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
            KvOp::Del(ks) | KvOp::Exists(ks) | KvOp::MGet(ks) => {
                ks.iter().try_for_each(|k| write!(f, " {}", Printable(k)))
            }
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
            KvReply::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    item.fmt(f)?;
                }
                f.write_str("]")
            }
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
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The deadline (ms since the epoch) of each key with a TTL: a key of `map`.
    ttl: BTreeMap<Vec<u8>, u64>,
    /// The same entries as `ttl`, in deadline order.
    deadlines: BTreeSet<(u64, Vec<u8>)>,
    /// The time of the current (or last) batch.
    now: u64,
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

    /// A store holding `map`, no key with a TTL, at time 0.
    pub fn from_map(map: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        Self {
            map,
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
            }
        }
    }

    /// The deadline of `key`, if it has a TTL.
    pub fn deadline(&self, key: &[u8]) -> Option<u64> {
        self.ttl.get(key).copied()
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

    /// Set `key` to `value` as Redis's `SET` does: a TTL it had is gone.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        self.clear_deadline(&key);
        self.map.insert(key, value)
    }

    /// Delete `key` and its TTL; its value.
    fn delete(&mut self, key: &[u8]) -> Option<Vec<u8>> {
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
    pub fn map(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.map
    }

    /// Take the contents.
    pub fn into_map(self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.map
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Set `key` to `value` directly, without a TTL, returning the old value (raw
    /// state edit, for tests and checkers that undo operations).
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> Option<Vec<u8>> {
        self.put(key, value)
    }

    /// Remove `key` directly, returning its value (raw state edit).
    pub fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.delete(key)
    }

    /// A copy holding only the given keys, with their TTLs, at the same time (the
    /// checker's per-component state).
    pub fn restricted_to<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Model {
        let mut part = Model {
            now: self.now,
            ..Model::default()
        };
        for k in keys {
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
            KvOp::Get(k) => self
                .map
                .get(k)
                .map_or(KvReply::Nil, |v| KvReply::Bulk(v.clone())),
            KvOp::Exists(ks) if ks.is_empty() => wrong_arity("exists"),
            KvOp::Exists(ks) => {
                KvReply::Int(ks.iter().filter(|k| self.map.contains_key(*k)).count() as i64)
            }
            KvOp::MGet(ks) if ks.is_empty() => wrong_arity("mget"),
            KvOp::MGet(ks) => KvReply::Array(ks.iter().map(|k| self.map.get(k).cloned()).collect()),
            KvOp::Ping => KvReply::Pong,
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
    pub fn apply(&mut self, op: &KvOp) -> KvReply {
        if let Some(reply) = self.read(op) {
            return reply;
        }
        match op {
            KvOp::Set(k, v) => {
                self.put(k.clone(), v.clone());
                KvReply::Ok
            }
            KvOp::Del(ks) if ks.is_empty() => wrong_arity("del"),
            KvOp::Del(ks) => {
                KvReply::Int(ks.iter().filter(|k| self.delete(k).is_some()).count() as i64)
            }
            KvOp::Incr(k) => {
                let current = match self.map.get(k) {
                    None => 0,
                    Some(v) => match parse_integer(v) {
                        Some(i) => i,
                        None => return KvReply::Error(ERR_NOT_INTEGER.to_string()),
                    },
                };
                match current.checked_add(1) {
                    Some(next) => {
                        // in place: a TTL stays, as in Redis
                        self.map.insert(k.clone(), next.to_string().into_bytes());
                        KvReply::Int(next)
                    }
                    None => KvReply::Error(ERR_OVERFLOW.to_string()),
                }
            }
            KvOp::MSet(kvs) if kvs.is_empty() => wrong_arity("mset"),
            KvOp::MSet(kvs) => {
                for (k, v) in kvs {
                    self.put(k.clone(), v.clone());
                }
                KvReply::Ok
            }
            KvOp::Call(args) => match typed(args) {
                Ok(Some(op)) => self.apply(&op),
                Ok(None) => commands::exec(self, args),
                Err(e) => e,
            },
            KvOp::Get(_) | KvOp::Exists(_) | KvOp::MGet(_) | KvOp::Ping => {
                unreachable!("answered by read()")
            }
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

    /// `"BZKV" | version | now | [(key, value)] | [(key, deadline)]`, both lists in
    /// key order. No expired key is in it (see [`Model`]).
    fn snapshot(&self) -> Vec<u8> {
        let m = &self.model;
        crate::snapshot::encode(MAGIC, &(m.now, &m.map, &m.ttl))
    }

    /// Accepts only canonical snapshots (keys strictly ascending, a deadline only for
    /// a key present and not before the clock); on error the state is unchanged.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        type Body = (u64, Vec<(Vec<u8>, Vec<u8>)>, Vec<(Vec<u8>, u64)>);
        let (now, entries, ttls): Body = crate::snapshot::decode(MAGIC, snapshot)?;
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) || ttls.windows(2).any(|w| w[0].0 >= w[1].0)
        {
            return Err("malformed KV snapshot: keys not strictly ascending".to_string());
        }
        let mut model = Model {
            map: entries.into_iter().collect(),
            now,
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }
    fn ks(keys: &[&str]) -> Vec<Vec<u8>> {
        keys.iter().map(|k| b(k)).collect()
    }
    fn bulk(s: &str) -> KvReply {
        KvReply::Bulk(b(s))
    }
    fn err(s: &str) -> KvReply {
        KvReply::Error(s.to_string())
    }
    /// Run through the byte interface, as a replica does.
    fn run(s: &mut KvStore, op: KvOp) -> KvReply {
        KvReply::decode(&s.execute(&op.encode())).expect("replies decode")
    }

    #[test]
    fn get_set() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, KvOp::Get(b("k"))), KvReply::Nil);
        assert_eq!(run(&mut s, KvOp::Set(b("k"), b("v"))), KvReply::Ok);
        assert_eq!(run(&mut s, KvOp::Get(b("k"))), bulk("v"));
        assert_eq!(run(&mut s, KvOp::Set(b("k"), b("w"))), KvReply::Ok);
        assert_eq!(run(&mut s, KvOp::Get(b("k"))), bulk("w"));
        assert_eq!(run(&mut s, KvOp::Set(b(""), b(""))), KvReply::Ok);
        assert_eq!(run(&mut s, KvOp::Get(b(""))), bulk(""));
        assert_eq!(s.model().len(), 2);
    }

    #[test]
    fn del_counts_removed_keys() {
        let mut s = KvStore::new();
        run(
            &mut s,
            KvOp::MSet(vec![(b("a"), b("1")), (b("b"), b("2")), (b("c"), b("3"))]),
        );
        assert_eq!(run(&mut s, KvOp::Del(ks(&["a", "x"]))), KvReply::Int(1));
        assert_eq!(run(&mut s, KvOp::Del(ks(&["a"]))), KvReply::Int(0));
        // like Redis, a key named twice is removed (and counted) once
        assert_eq!(
            run(&mut s, KvOp::Del(ks(&["b", "b", "c"]))),
            KvReply::Int(2)
        );
        assert!(s.model().is_empty());
        assert_eq!(
            run(&mut s, KvOp::Del(vec![])),
            err("ERR wrong number of arguments for 'del' command")
        );
    }

    #[test]
    fn exists_counts_present_keys() {
        let mut s = KvStore::new();
        run(&mut s, KvOp::Set(b("a"), b("1")));
        assert_eq!(run(&mut s, KvOp::Exists(ks(&["a"]))), KvReply::Int(1));
        assert_eq!(run(&mut s, KvOp::Exists(ks(&["x"]))), KvReply::Int(0));
        // like Redis, a key named twice counts twice
        assert_eq!(
            run(&mut s, KvOp::Exists(ks(&["a", "a", "x"]))),
            KvReply::Int(2)
        );
        assert_eq!(
            run(&mut s, KvOp::Exists(vec![])),
            err("ERR wrong number of arguments for 'exists' command")
        );
    }

    #[test]
    fn incr_semantics() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, KvOp::Incr(b("n"))), KvReply::Int(1));
        assert_eq!(run(&mut s, KvOp::Incr(b("n"))), KvReply::Int(2));
        assert_eq!(run(&mut s, KvOp::Get(b("n"))), bulk("2"));
        run(&mut s, KvOp::Set(b("n"), b("-1")));
        assert_eq!(run(&mut s, KvOp::Incr(b("n"))), KvReply::Int(0));
        assert_eq!(run(&mut s, KvOp::Get(b("n"))), bulk("0"));
        run(&mut s, KvOp::Set(b("n"), b("-9223372036854775808")));
        assert_eq!(run(&mut s, KvOp::Incr(b("n"))), KvReply::Int(i64::MIN + 1));
        run(&mut s, KvOp::Set(b("n"), b("9223372036854775806")));
        assert_eq!(run(&mut s, KvOp::Incr(b("n"))), KvReply::Int(i64::MAX));
        assert_eq!(run(&mut s, KvOp::Incr(b("n"))), err(ERR_OVERFLOW));
        // a failed INCR leaves the value alone
        assert_eq!(run(&mut s, KvOp::Get(b("n"))), bulk("9223372036854775807"));
        for bad in [
            "abc",
            "",
            " 1",
            "1 ",
            "+1",
            "01",
            "-0",
            "1.5",
            "9223372036854775808",
            "-",
            "0x10",
            "١",
        ] {
            run(&mut s, KvOp::Set(b("n"), b(bad)));
            assert_eq!(
                run(&mut s, KvOp::Incr(b("n"))),
                err(ERR_NOT_INTEGER),
                "{bad:?}"
            );
            assert_eq!(run(&mut s, KvOp::Get(b("n"))), bulk(bad));
        }
    }

    #[test]
    fn parse_integer_matches_redis_string2ll() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"42"), Some(42));
        assert_eq!(parse_integer(b"-42"), Some(-42));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"00",
            b"-0",
            b"+5",
            b"99999999999999999999",
            b"-9223372036854775809",
            b"1e3",
        ] {
            assert_eq!(
                parse_integer(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn mget_mset() {
        let mut s = KvStore::new();
        assert_eq!(
            run(
                &mut s,
                KvOp::MSet(vec![(b("a"), b("1")), (b("b"), b("2")), (b("a"), b("3"))])
            ),
            KvReply::Ok
        );
        assert_eq!(
            run(&mut s, KvOp::MGet(ks(&["a", "x", "b", "a"]))),
            KvReply::Array(vec![Some(b("3")), None, Some(b("2")), Some(b("3"))])
        );
        assert_eq!(
            run(&mut s, KvOp::MGet(vec![])),
            err("ERR wrong number of arguments for 'mget' command")
        );
        assert_eq!(
            run(&mut s, KvOp::MSet(vec![])),
            err("ERR wrong number of arguments for 'mset' command")
        );
        assert_eq!(s.model().len(), 2);
    }

    #[test]
    fn ping() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, KvOp::Ping), KvReply::Pong);
        assert_eq!(
            KvReply::decode(&s.query(&KvOp::Ping.encode()).unwrap()).unwrap(),
            KvReply::Pong
        );
    }

    #[test]
    fn malformed_ops_get_an_error_reply() {
        let mut s = KvStore::new();
        for bytes in [
            &[][..],
            &[0xff],
            &[0x01],
            &[0x00, 0x05, b'a'],
            &[0x07, 0x00],
        ] {
            assert_eq!(
                KvReply::decode(&s.execute(bytes)).unwrap(),
                err(ERR_MALFORMED)
            );
            assert_eq!(s.query(bytes), None);
        }
        // trailing bytes are rejected too
        let mut bytes = KvOp::Ping.encode();
        bytes.push(0);
        assert_eq!(
            KvReply::decode(&s.execute(&bytes)).unwrap(),
            err(ERR_MALFORMED)
        );
        assert!(s.model().is_empty());
    }

    #[test]
    fn query_answers_read_only_ops_only() {
        let mut s = KvStore::new();
        run(&mut s, KvOp::Set(b("a"), b("1")));
        let q = |s: &KvStore, op: KvOp| s.query(&op.encode()).map(|r| KvReply::decode(&r).unwrap());
        assert_eq!(q(&s, KvOp::Get(b("a"))), Some(bulk("1")));
        assert_eq!(q(&s, KvOp::Exists(ks(&["a", "b"]))), Some(KvReply::Int(1)));
        assert_eq!(
            q(&s, KvOp::MGet(ks(&["a", "b"]))),
            Some(KvReply::Array(vec![Some(b("1")), None]))
        );
        for w in [
            KvOp::Set(b("a"), b("2")),
            KvOp::Del(ks(&["a"])),
            KvOp::Incr(b("a")),
            KvOp::MSet(vec![(b("a"), b("2"))]),
        ] {
            assert!(!w.is_read_only());
            assert_eq!(q(&s, w), None);
        }
        assert_eq!(s.model().get(b"a"), Some(&b"1"[..]));
    }

    #[test]
    fn keys_and_read_only_classification() {
        assert_eq!(KvOp::Get(b("a")).keys(), vec![b"a"]);
        assert_eq!(KvOp::Set(b("a"), b("v")).keys(), vec![b"a"]);
        assert_eq!(
            KvOp::MSet(vec![(b("a"), b("1")), (b("b"), b("2"))]).keys(),
            vec![&b"a"[..], b"b"]
        );
        assert_eq!(KvOp::Del(ks(&["x", "y", "x"])).keys().len(), 3);
        assert!(KvOp::Ping.keys().is_empty());
        let ro: Vec<bool> = [
            KvOp::Get(vec![]),
            KvOp::Set(vec![], vec![]),
            KvOp::Del(vec![]),
            KvOp::Exists(vec![]),
            KvOp::Incr(vec![]),
            KvOp::MGet(vec![]),
            KvOp::MSet(vec![]),
            KvOp::Ping,
        ]
        .iter()
        .map(KvOp::is_read_only)
        .collect();
        assert_eq!(ro, [true, false, false, true, false, true, false, true]);
    }

    #[test]
    fn display_is_compact() {
        assert_eq!(KvOp::Set(b("k"), b("v")).to_string(), "SET k v");
        assert_eq!(KvOp::Get(b("a b")).to_string(), "GET \"a b\"");
        assert_eq!(KvOp::Del(ks(&["a", "b"])).to_string(), "DEL a b");
        assert_eq!(
            KvOp::MSet(vec![(b("a"), b("1")), (b("b"), vec![0, 255])]).to_string(),
            "MSET a 1 b \"\\x00\\xff\""
        );
        assert_eq!(
            KvOp::Set(b(""), b("\"q\"")).to_string(),
            "SET \"\" \"\\\"q\\\"\""
        );
        assert_eq!(KvOp::Ping.to_string(), "PING");
        assert_eq!(KvReply::Bulk(b("v")).to_string(), "\"v\"");
        assert_eq!(KvReply::Nil.to_string(), "(nil)");
        assert_eq!(KvReply::Int(3).to_string(), "(integer) 3");
        assert_eq!(KvReply::Ok.to_string(), "OK");
        assert_eq!(KvReply::Pong.to_string(), "PONG");
        assert_eq!(
            KvReply::Array(vec![Some(b("a")), None]).to_string(),
            "[\"a\", (nil)]"
        );
        assert_eq!(
            err(ERR_OVERFLOW).to_string(),
            "(error) ERR increment or decrement would overflow"
        );
    }

    #[test]
    fn from_args_parses_redis_commands() {
        assert_eq!(
            KvOp::from_args(&["set", "k", "v"]),
            Ok(KvOp::Set(b("k"), b("v")))
        );
        assert_eq!(KvOp::from_args(&["GET", "k"]), Ok(KvOp::Get(b("k"))));
        assert_eq!(
            KvOp::from_args(&["Del", "a", "b"]),
            Ok(KvOp::Del(ks(&["a", "b"])))
        );
        assert_eq!(
            KvOp::from_args(&["exists", "a"]),
            Ok(KvOp::Exists(ks(&["a"])))
        );
        assert_eq!(KvOp::from_args(&["incr", "n"]), Ok(KvOp::Incr(b("n"))));
        assert_eq!(
            KvOp::from_args(&["mget", "a", "b"]),
            Ok(KvOp::MGet(ks(&["a", "b"])))
        );
        assert_eq!(
            KvOp::from_args(&["mset", "a", "1", "b", "2"]),
            Ok(KvOp::MSet(vec![(b("a"), b("1")), (b("b"), b("2"))]))
        );
        assert_eq!(KvOp::from_args(&["PING"]), Ok(KvOp::Ping));
        assert_eq!(
            KvOp::from_args(&["get"]),
            Err("ERR wrong number of arguments for 'get' command".into())
        );
        assert_eq!(
            KvOp::from_args(&["mset", "a"]),
            Err("ERR wrong number of arguments for 'mset' command".into())
        );
        assert_eq!(
            KvOp::from_args(&["SET", "k", "v", "NX"]),
            Ok(KvOp::Call(ks(&["set", "k", "v", "NX"])))
        );
        assert_eq!(KvOp::from_args(&["unlink", "a"]), Ok(KvOp::Del(ks(&["a"]))));
        assert_eq!(
            KvOp::from_args(&["FlushAll"]),
            Ok(KvOp::Call(ks(&["flushall"])))
        );
        assert_eq!(
            KvOp::from_args(&["nosuch", "a", "b"]),
            Err("ERR unknown command 'nosuch', with args beginning with: 'a' 'b' ".into())
        );
        assert!(KvOp::from_args::<&str>(&[]).is_err());
    }

    #[test]
    fn calls_are_classified_by_the_command_table() {
        let call = |w: &[&str]| KvOp::Call(ks(w));
        assert!(call(&["strlen", "k"]).is_read_only());
        assert!(call(&["SCAN", "0"]).is_read_only());
        assert!(!call(&["setrange", "k", "0", "x"]).is_read_only());
        // a wrong arity or an unknown name is not a read: ordering gives the error
        assert!(!call(&["strlen"]).is_read_only());
        assert!(!call(&["nosuch"]).is_read_only());
        assert_eq!(call(&["rename", "a", "b"]).keys(), vec![b"a", b"b"]);
        assert_eq!(
            call(&["msetnx", "a", "1", "b", "2"]).keys(),
            vec![b"a", b"b"]
        );
        assert!(call(&["keys", "*"]).keys().is_empty());
        assert!(call(&["flushdb"]).touches_all_keys());
        assert!(!call(&["getdel", "k"]).touches_all_keys());
        assert_eq!(
            call(&["GETRANGE", "k", "0", "1"]).to_string(),
            "GETRANGE k 0 1"
        );
    }

    #[test]
    fn a_call_naming_a_typed_command_runs_as_it() {
        // a Byzantine client may send any command line as a Call: one that names a
        // typed command runs that command's code, one that is malformed gets Redis's error
        let mut s = KvStore::new();
        let call = |w: &[&str]| KvOp::Call(ks(w));
        assert_eq!(run(&mut s, call(&["SET", "k", "v"])), KvReply::Ok);
        assert_eq!(run(&mut s, call(&["get", "k"])), bulk("v"));
        assert_eq!(s.model().read(&call(&["GET", "k"])), Some(bulk("v")));
        assert_eq!(
            run(&mut s, call(&["get"])),
            err("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(run(&mut s, KvOp::Call(vec![])), err("ERR empty command"));
        assert_eq!(
            run(&mut s, call(&["mset", "a"])),
            err("ERR wrong number of arguments for 'mset' command")
        );
        assert_eq!(run(&mut s, call(&["append", "k", "w"])), KvReply::Int(2));
        assert_eq!(
            run(&mut s, call(&["type", "k"])),
            KvReply::Status("string".into())
        );
        assert_eq!(s.model().len(), 1);
    }

    #[test]
    fn snapshot_restore_round_trip() {
        let mut s = KvStore::new();
        run(
            &mut s,
            KvOp::MSet(vec![
                (b("b"), b("2")),
                (b("a"), b("1")),
                (vec![0, 1], vec![]),
            ]),
        );
        let snap = s.snapshot();
        let mut t = KvStore::new();
        t.restore(&snap).unwrap();
        assert_eq!(t, s);
        assert_eq!(t.snapshot(), snap);
        // restoring replaces the state rather than merging
        run(&mut t, KvOp::Set(b("z"), b("9")));
        t.restore(&KvStore::new().snapshot()).unwrap();
        assert!(t.model().is_empty());
    }

    #[test]
    fn restore_rejects_garbage_and_keeps_state() {
        let mut s = KvStore::new();
        run(&mut s, KvOp::Set(b("a"), b("1")));
        let before = s.clone();
        let good = s.snapshot();
        let mut bad_version = good.clone();
        bad_version[4] = 99;
        let mut truncated = good.clone();
        truncated.pop();
        let mut trailing = good.clone();
        trailing.push(0);
        let snap = |entries: Vec<(Vec<u8>, Vec<u8>)>, ttls: Vec<(Vec<u8>, u64)>| {
            crate::snapshot::encode(MAGIC, &(10u64, entries, ttls))
        };
        let unsorted = snap(vec![(b("b"), b("1")), (b("a"), b("1"))], vec![]);
        let duplicate = snap(vec![(b("a"), b("1")), (b("a"), b("2"))], vec![]);
        let ttl_missing = snap(vec![(b("a"), b("1"))], vec![(b("b"), 20)]);
        let ttl_expired = snap(vec![(b("a"), b("1"))], vec![(b("a"), 9)]);
        let ttl_twice = snap(vec![(b("a"), b("1"))], vec![(b("a"), 20), (b("a"), 30)]);
        assert!(s
            .clone()
            .restore(&snap(vec![(b("a"), b("1"))], vec![(b("a"), 10)]))
            .is_ok());
        for bad in [
            &[][..],
            b"BZKV",
            b"garbage!",
            &bad_version,
            &truncated,
            &trailing,
            &unsorted,
            &duplicate,
            &ttl_missing,
            &ttl_expired,
            &ttl_twice,
        ] {
            assert!(s.restore(bad).is_err(), "{bad:?}");
            assert_eq!(s, before);
        }
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::sample::select(vec![b("a"), b("b"), b("c"), b("n"), vec![], vec![0xff]])
    }
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::sample::select(vec![
                b("0"),
                b("-1"),
                b("41"),
                b("9223372036854775807"),
                b("x"),
                vec![]
            ]),
            prop::collection::vec(any::<u8>(), 0..4),
        ]
    }
    pub(crate) fn op() -> impl Strategy<Value = KvOp> {
        let keys = || prop::collection::vec(key(), 0..4);
        prop_oneof![
            key().prop_map(KvOp::Get),
            (key(), value()).prop_map(|(k, v)| KvOp::Set(k, v)),
            keys().prop_map(KvOp::Del),
            keys().prop_map(KvOp::Exists),
            key().prop_map(KvOp::Incr),
            keys().prop_map(KvOp::MGet),
            prop::collection::vec((key(), value()), 0..4).prop_map(KvOp::MSet),
            Just(KvOp::Ping),
            call(),
        ]
    }
    /// Any command line of the table (and a few unknown names), arguments drawn from
    /// the keys, the values and the options: wrong arities and bad options included.
    fn call() -> impl Strategy<Value = KvOp> {
        let mut names: Vec<Vec<u8>> = commands::TABLE.iter().map(|s| b(s.name)).collect();
        names.push(b("nosuch"));
        let word = prop_oneof![
            key(),
            value(),
            prop::sample::select(
                [
                    "nx", "xx", "get", "ex", "px", "exat", "pxat", "keepttl", "persist", "gt",
                    "lt", "match", "count", "type", "*", "2", "-3", "100", "1500",
                ]
                .map(b)
                .to_vec()
            ),
        ];
        (
            prop::sample::select(names),
            prop::collection::vec(word, 0..6),
        )
            .prop_map(|(name, mut rest)| {
                let mut line = vec![name];
                line.append(&mut rest);
                KvOp::Call(line)
            })
    }

    /// Operations, each in a batch that starts some milliseconds after the
    /// previous one (0: the same time), from [`T0`].
    fn timed(max: usize) -> impl Strategy<Value = Vec<(u64, KvOp)>> {
        prop::collection::vec((prop_oneof![Just(0u64), 0u64..2000], op()), 0..max)
    }

    const T0: u64 = 1_700_000_000_000;

    /// Run `ops` on `s`, each in its batch from `at`: the time then.
    fn run_timed(s: &mut KvStore, ops: &[(u64, KvOp)], mut at: u64) -> u64 {
        for (dt, op) in ops {
            at += dt;
            s.begin_batch(BatchCtx {
                slot: 0,
                time_ms: at,
            });
            s.execute(&op.encode());
            s.model.check();
        }
        at
    }

    impl Model {
        /// The TTL index matches the deadlines and names only present keys, none
        /// expired.
        fn check(&self) {
            let index: BTreeSet<(u64, Vec<u8>)> =
                self.ttl.iter().map(|(k, w)| (*w, k.clone())).collect();
            assert_eq!(index, self.deadlines);
            assert!(self.ttl.keys().all(|k| self.map.contains_key(k)));
            assert!(
                self.ttl.values().all(|w| *w >= self.now),
                "an expired key stays"
            );
        }
    }

    proptest! {
        #[test]
        fn replicas_agree(ops in timed(60)) {
            let (mut a, mut b) = (KvStore::new(), KvStore::new());
            let mut at = T0;
            for (dt, op) in &ops {
                at += dt;
                a.begin_batch(BatchCtx { slot: 0, time_ms: at });
                b.begin_batch(BatchCtx { slot: 0, time_ms: at });
                let bytes = op.encode();
                prop_assert_eq!(KvOp::decode(&bytes), Ok(op.clone()));
                let ra = a.execute(&bytes);
                prop_assert_eq!(&ra, &b.execute(&bytes));
                let reply = KvReply::decode(&ra).unwrap();
                prop_assert_eq!(KvReply::decode(&reply.encode()), Ok(reply));
                prop_assert_eq!(a.snapshot(), b.snapshot());
            }
        }

        /// An unordered query answers what executing the read would, at the last
        /// batch's time (TTL, TIME included), and changes nothing.
        #[test]
        fn query_matches_execute_and_changes_nothing(ops in timed(40), probe in op()) {
            let mut s = KvStore::new();
            run_timed(&mut s, &ops, T0);
            let snap = s.snapshot();
            let q = s.query(&probe.encode());
            prop_assert_eq!(q.is_some(), probe.is_read_only());
            prop_assert_eq!(s.snapshot(), snap.clone());
            if let Some(q) = q {
                prop_assert_eq!(q, s.execute(&probe.encode()));
                prop_assert_eq!(s.snapshot(), snap);
            }
        }

        /// A restored snapshot carries the TTLs and the clock: the copy answers
        /// and expires exactly as the original from then on.
        #[test]
        fn restore_then_continue_matches(ops in timed(60), cut in any::<prop::sample::Index>()) {
            let cut = cut.index(ops.len() + 1);
            let mut original = KvStore::new();
            let at = run_timed(&mut original, &ops[..cut], T0);
            let mut copy = KvStore::new();
            copy.execute(&KvOp::Set(b("stale"), b("state")).encode());
            copy.restore(&original.snapshot()).unwrap();
            prop_assert_eq!(&copy, &original);
            let mut at = at;
            for (dt, op) in &ops[cut..] {
                at += dt;
                for s in [&mut original, &mut copy] {
                    s.begin_batch(BatchCtx { slot: 0, time_ms: at });
                }
                prop_assert_eq!(original.execute(&op.encode()), copy.execute(&op.encode()));
            }
            prop_assert_eq!(original.snapshot(), copy.snapshot());
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut s = KvStore::new();
            s.execute(&KvOp::Set(b("a"), b("1")).encode());
            let _ = s.query(&bytes);
            let reply = KvReply::decode(&s.execute(&bytes));
            prop_assert!(reply.is_ok());
            let before = s.clone();
            let restored = s.restore(&bytes);
            if !bytes.starts_with(&MAGIC) {
                prop_assert!(restored.is_err());
            }
            if restored.is_err() {
                prop_assert_eq!(s, before);
            }
            let _ = KvOp::decode(&bytes);
            let _ = KvReply::decode(&bytes);
        }

        #[test]
        fn garbage_snapshots_with_the_right_header_never_panic(body in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = MAGIC.to_vec();
            bytes.push(crate::snapshot::VERSION);
            bytes.extend(body);
            let mut s = KvStore::new();
            if s.restore(&bytes).is_ok() {
                // whatever was accepted is canonical
                prop_assert_eq!(s.snapshot(), bytes);
            }
        }

        #[test]
        fn display_never_panics(op in op()) {
            let mut s = KvStore::new();
            let reply = s.apply(&op);
            prop_assert!(!op.to_string().is_empty());
            prop_assert!(!reply.to_string().is_empty());
        }
    }
}
