//! The Redis commands the KV store runs as [`KvOp::Call`](super::KvOp::Call): a command table (arity, key
//! positions, read-only) as in Redis's `commands.def`, and each command's argument
//! validation and execution on the store's map, with Redis 7.0's replies and error
//! texts (checked against a real `redis-server` by the gateway's differential test).
//!
//! Order of checks, as in Redis: the command name and arity (here, at the gateway in
//! [`KvOp::from_args`](super::KvOp::from_args) and again at every replica, since a Byzantine client may send
//! any bytes), then the options (`syntax error`), then numeric arguments, then the
//! key's value.
//!
//! The families other than strings and keys live beside this file (`hash.rs`,
//! `list.rs`, `set.rs`, `zset.rs`) and share its argument parsing ([`int_arg`],
//! [`float_arg`], the range normalisation [`index_range`], the scan options) and
//! the typed access of [`super::value`] (the `WRONGTYPE` check). After every write,
//! a collection the command left empty is deleted, as in Redis.
//!
//! Deviations, all documented at the command:
//! - collections are bounded: a hash, list, set or sorted set holds at most
//!   [`MAX_COLLECTION_BYTES`](super::MAX_COLLECTION_BYTES) (8 MiB, elements plus 32
//!   bytes each); a write past it is refused whole with
//!   `OOM command not allowed when the value would exceed ... bytes (the per-key
//!   limit)` (Redis refuses writes only at `maxmemory`). Replies that gather values
//!   from several keys or repeat them (`MGET`, `HMGET`, `KEYS`, `SUNION`, `SINTER`,
//!   `SDIFF`) are refused over [`MAX_REPLY_BYTES`](super::MAX_REPLY_BYTES) with
//!   `ERR reply exceeds the maximum allowed size`; every whole-collection reply
//!   (`HGETALL`, `LRANGE`, `SMEMBERS`, `ZRANGE`) fits under the reply frame by the
//!   collection bound;
//! - hash fields and set members are listed in byte order (Redis: insertion order in
//!   its small encodings, hash-table order otherwise; unspecified), and `HSCAN`
//!   answers in one call with cursor 0 (as Redis does for small hashes);
//! - a sorted-set score of `-0` is stored as `0` (Redis answers `0` for small sets,
//!   `-0` in its skiplist encoding); `ZRANK` and rank ranges cost O(n); a `BYLEX`
//!   range on members of different scores follows Redis's small-set walk;
//! - key expiry runs on the replicated batch time (see [`Model`]): every command of
//!   a batch sees the same time, and `TIME` answers it (microseconds are the
//!   milliseconds' multiples; `TIME` is ordered, so it is the time of its own batch);
//!   expired keys are deleted when the time moves, which Redis does lazily. A
//!   read-only command answered without ordering (`GET`, `TTL`, ... on the unordered
//!   read path) sees the store as of the last executed batch, at that batch's time:
//!   in a group that ordered nothing for a while, a key whose deadline passed since
//!   is still read until the next batch (ordering the read, or any write, moves
//!   the time);
//! - a string grows to at most [`MAX_STRING_LEN`] bytes (`SETRANGE`, `APPEND`; Redis's
//!   limit is 512 MiB), with Redis's error text;
//! - `SCAN`'s cursor is the next 64-bit key hash to visit (keys are visited in hash
//!   order), deterministic on every replica; like Redis's, it returns every key present
//!   for the whole iteration at least once. A call visits at most
//!   [`MAX_SCAN_STEP`] keys whatever `COUNT` says, and costs O(keys) at the replica
//!   (no hash index is kept yet). `KEYS` lists keys in key order (Redis: hash-table
//!   order, which no client may rely on).

use byzscale_core::crypto::digest;

use super::float::{parse_f64, parse_long_double, LongDouble};
use super::value::Value;
use super::{
    hash, list, parse_integer, reply_within, set, zset, KvReply, Model, ERR_NOT_INTEGER,
    ERR_OVERFLOW, MAX_OP_LEN,
};

/// Redis's `syntax error`.
pub const ERR_SYNTAX: &str = "ERR syntax error";
/// The longest string value `SETRANGE` and `APPEND` may make.
pub const MAX_STRING_LEN: usize = MAX_OP_LEN;
/// The most keys one `SCAN` call visits.
pub const MAX_SCAN_STEP: usize = 1000;

/// One command's table entry.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n > 0` exactly `n` words (name included), `-n` at least `n`.
    pub arity: i32,
    /// Position of the first key (0: no keys).
    pub first: usize,
    /// Position of the last key; negative counts from the end (-1: the last word).
    pub last: i32,
    /// Step between keys.
    pub step: usize,
    /// Never changes the state.
    pub read_only: bool,
    /// Reads or writes every key (`KEYS`, `SCAN`, `DBSIZE`, `FLUSHDB`, ...).
    pub all_keys: bool,
}

const fn spec(name: &'static str, arity: i32, first: usize, last: i32, step: usize) -> Spec {
    Spec {
        name,
        arity,
        first,
        last,
        step,
        read_only: false,
        all_keys: false,
    }
}

const fn ro(mut s: Spec) -> Spec {
    s.read_only = true;
    s
}

const fn all(mut s: Spec) -> Spec {
    s.all_keys = true;
    s
}

/// Every command the store runs, the typed ones ([`KvOp::Get`](super::KvOp::Get), ...) included.
pub const TABLE: &[Spec] = &[
    ro(spec("get", 2, 1, 1, 1)),
    spec("set", -3, 1, 1, 1),
    spec("setnx", 3, 1, 1, 1),
    spec("setex", 4, 1, 1, 1),
    spec("psetex", 4, 1, 1, 1),
    spec("getex", -2, 1, 1, 1),
    spec("expire", -3, 1, 1, 1),
    spec("pexpire", -3, 1, 1, 1),
    spec("expireat", -3, 1, 1, 1),
    spec("pexpireat", -3, 1, 1, 1),
    spec("persist", 2, 1, 1, 1),
    ro(spec("ttl", 2, 1, 1, 1)),
    ro(spec("pttl", 2, 1, 1, 1)),
    ro(spec("expiretime", 2, 1, 1, 1)),
    ro(spec("pexpiretime", 2, 1, 1, 1)),
    // ordered, not read-only: it answers the time of its own batch, which an
    // unordered query (the last batch's) is not
    spec("time", 1, 0, 0, 1),
    spec("getset", 3, 1, 1, 1),
    spec("getdel", 2, 1, 1, 1),
    spec("append", 3, 1, 1, 1),
    ro(spec("strlen", 2, 1, 1, 1)),
    ro(spec("getrange", 4, 1, 1, 1)),
    ro(spec("substr", 4, 1, 1, 1)),
    spec("setrange", 4, 1, 1, 1),
    spec("incr", 2, 1, 1, 1),
    spec("incrby", 3, 1, 1, 1),
    spec("decr", 2, 1, 1, 1),
    spec("decrby", 3, 1, 1, 1),
    ro(spec("mget", -2, 1, -1, 1)),
    spec("mset", -3, 1, -1, 2),
    spec("msetnx", -3, 1, -1, 2),
    spec("del", -2, 1, -1, 1),
    spec("unlink", -2, 1, -1, 1),
    ro(spec("exists", -2, 1, -1, 1)),
    ro(spec("type", 2, 1, 1, 1)),
    spec("rename", 3, 1, 2, 1),
    spec("renamenx", 3, 1, 2, 1),
    ro(all(spec("keys", 2, 0, 0, 1))),
    ro(all(spec("scan", -2, 0, 0, 1))),
    ro(all(spec("dbsize", 1, 0, 0, 1))),
    all(spec("flushdb", -1, 0, 0, 1)),
    all(spec("flushall", -1, 0, 0, 1)),
    ro(spec("ping", -1, 0, 0, 1)),
    spec("incrbyfloat", 3, 1, 1, 1),
    // hashes
    spec("hset", -4, 1, 1, 1),
    spec("hmset", -4, 1, 1, 1),
    spec("hsetnx", 4, 1, 1, 1),
    ro(spec("hget", 3, 1, 1, 1)),
    ro(spec("hmget", -3, 1, 1, 1)),
    ro(spec("hgetall", 2, 1, 1, 1)),
    spec("hdel", -3, 1, 1, 1),
    ro(spec("hexists", 3, 1, 1, 1)),
    spec("hincrby", 4, 1, 1, 1),
    spec("hincrbyfloat", 4, 1, 1, 1),
    ro(spec("hkeys", 2, 1, 1, 1)),
    ro(spec("hvals", 2, 1, 1, 1)),
    ro(spec("hlen", 2, 1, 1, 1)),
    ro(spec("hstrlen", 3, 1, 1, 1)),
    ro(spec("hscan", -3, 1, 1, 1)),
    // lists
    spec("lpush", -3, 1, 1, 1),
    spec("rpush", -3, 1, 1, 1),
    spec("lpushx", -3, 1, 1, 1),
    spec("rpushx", -3, 1, 1, 1),
    spec("lpop", -2, 1, 1, 1),
    spec("rpop", -2, 1, 1, 1),
    ro(spec("lrange", 4, 1, 1, 1)),
    ro(spec("llen", 2, 1, 1, 1)),
    ro(spec("lindex", 3, 1, 1, 1)),
    spec("lset", 4, 1, 1, 1),
    spec("lrem", 4, 1, 1, 1),
    spec("ltrim", 4, 1, 1, 1),
    spec("linsert", 5, 1, 1, 1),
    ro(spec("lpos", -3, 1, 1, 1)),
    // sets
    spec("sadd", -3, 1, 1, 1),
    spec("srem", -3, 1, 1, 1),
    ro(spec("smembers", 2, 1, 1, 1)),
    ro(spec("sismember", 3, 1, 1, 1)),
    ro(spec("smismember", -3, 1, 1, 1)),
    ro(spec("scard", 2, 1, 1, 1)),
    ro(spec("sinter", -2, 1, -1, 1)),
    ro(spec("sunion", -2, 1, -1, 1)),
    ro(spec("sdiff", -2, 1, -1, 1)),
    spec("sinterstore", -3, 1, -1, 1),
    spec("sunionstore", -3, 1, -1, 1),
    spec("sdiffstore", -3, 1, -1, 1),
    // sorted sets
    spec("zadd", -4, 1, 1, 1),
    spec("zincrby", 4, 1, 1, 1),
    spec("zrem", -3, 1, 1, 1),
    ro(spec("zscore", 3, 1, 1, 1)),
    ro(spec("zcard", 2, 1, 1, 1)),
    ro(spec("zrank", 3, 1, 1, 1)),
    ro(spec("zrevrank", 3, 1, 1, 1)),
    ro(spec("zcount", 4, 1, 1, 1)),
    ro(spec("zrange", -4, 1, 1, 1)),
    ro(spec("zrevrange", -4, 1, 1, 1)),
    ro(spec("zrangebyscore", -4, 1, 1, 1)),
    ro(spec("zrevrangebyscore", -4, 1, 1, 1)),
];

/// The table entry of a command name (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    TABLE
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

impl Spec {
    /// Whether `argc` words (name included) fit the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let need = self.arity.unsigned_abs() as usize;
        if self.arity > 0 {
            argc == need
        } else {
            argc >= need
        }
    }

    /// The keys among `args` (name included), in order.
    pub fn keys<'a>(&self, args: &'a [Vec<u8>]) -> Vec<&'a [u8]> {
        if self.first == 0 || args.len() <= self.first {
            return Vec::new();
        }
        let last = if self.last < 0 {
            args.len() as i64 + i64::from(self.last)
        } else {
            i64::from(self.last).min(args.len() as i64 - 1)
        };
        let mut out = Vec::new();
        let mut i = self.first as i64;
        while i <= last {
            out.push(args[i as usize].as_slice());
            i += self.step as i64;
        }
        out
    }
}

/// Redis's arity error.
pub fn wrong_arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// Redis's reply to an unknown command (name and arguments shown up to 128 bytes).
pub fn unknown_command<A: AsRef<[u8]>>(args: &[A]) -> String {
    let cut = |b: &[u8], max: usize| String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned();
    let mut shown = String::new();
    for a in args.iter().skip(1) {
        if shown.len() >= 128 {
            break;
        }
        shown.push_str(&format!("'{}' ", cut(a.as_ref(), 128 - shown.len())));
    }
    let name = args.first().map_or(&b""[..], |a| a.as_ref());
    format!(
        "ERR unknown command '{}', with args beginning with: {shown}",
        cut(name, 128)
    )
}

/// An error reply with `text`.
pub(super) fn err(text: &str) -> KvReply {
    KvReply::Error(text.to_string())
}

/// Redis's error for an argument that is not a double.
pub(super) const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";

/// An integer argument (`getLongLongFromObjectOrReply`).
pub(super) fn int_arg(a: &[u8]) -> Result<i64, KvReply> {
    parse_integer(a).ok_or_else(|| err(ERR_NOT_INTEGER))
}

/// A non-negative integer argument (`getPositiveLongFromObjectOrReply`): `msg` (an
/// error text without `ERR `) if negative or not an integer.
pub(super) fn positive_arg(a: &[u8], msg: &str) -> Result<i64, KvReply> {
    match parse_integer(a) {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(KvReply::Error(format!("ERR {msg}"))),
    }
}

/// A double argument (`getDoubleFromObjectOrReply`).
pub(super) fn float_arg(a: &[u8]) -> Result<f64, KvReply> {
    parse_f64(a).ok_or_else(|| err(ERR_NOT_FLOAT))
}

/// A `long double` argument (`getLongDoubleFromObjectOrReply`).
pub(super) fn long_double_arg(a: &[u8]) -> Result<LongDouble, KvReply> {
    parse_long_double(a).ok_or_else(|| err(ERR_NOT_FLOAT))
}

/// The indexes `start..=stop` of an `LRANGE`/`ZRANGE`-style range over `len`
/// elements (negative counts from the end; clamped), `None` if empty.
pub(super) fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i128;
    let (mut start, mut stop) = (i128::from(start), i128::from(stop));
    if start < 0 {
        start += len;
    }
    if stop < 0 {
        stop += len;
    }
    start = start.max(0);
    if start > stop || start >= len {
        return None;
    }
    stop = stop.min(len - 1);
    Some((start as usize, stop as usize))
}

/// The options of `SCAN` and `HSCAN` (`MATCH`, `COUNT`, and `TYPE` for `SCAN`).
pub(super) struct ScanOptions<'a> {
    pub count: usize,
    pub pattern: Option<&'a [u8]>,
    pub kind: Option<&'a [u8]>,
}

/// Parse scan options from word `from` as Redis's `scanGenericCommand`.
pub(super) fn scan_options(
    args: &[Vec<u8>],
    from: usize,
    allow_type: bool,
) -> Result<ScanOptions<'_>, KvReply> {
    let mut o = ScanOptions {
        count: 10,
        pattern: None,
        kind: None,
    };
    let mut i = from;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        if i + 1 >= args.len() {
            return Err(err(ERR_SYNTAX));
        }
        match opt.as_slice() {
            b"count" => {
                let n = int_arg(&args[i + 1])?;
                if n < 1 {
                    return Err(err(ERR_SYNTAX));
                }
                o.count = usize::try_from(n).unwrap_or(usize::MAX);
            }
            b"match" => o.pattern = Some(args[i + 1].as_slice()),
            b"type" if allow_type => o.kind = Some(args[i + 1].as_slice()),
            _ => return Err(err(ERR_SYNTAX)),
        }
        i += 2;
    }
    Ok(o)
}

/// A SCAN-family cursor, or Redis's error.
pub(super) fn cursor_arg(c: &[u8]) -> Result<u64, KvReply> {
    parse_cursor(c).ok_or_else(|| err("ERR invalid cursor"))
}

/// Validate a command line: its entry if the name is known and the arity fits.
pub fn check(args: &[Vec<u8>]) -> Result<&'static Spec, KvReply> {
    let Some(name) = args.first() else {
        return Err(err("ERR empty command"));
    };
    let Some(s) = lookup(name) else {
        return Err(KvReply::Error(unknown_command(args)));
    };
    if !s.arity_ok(args.len()) {
        return Err(KvReply::Error(wrong_arity(s.name)));
    }
    Ok(s)
}

/// Answer a read-only command line that [`KvOp::from_args`](super::KvOp::from_args) leaves as a [`KvOp::Call`](super::KvOp::Call);
/// `None` if it is not one.
pub fn read(db: &Model, args: &[Vec<u8>]) -> Option<KvReply> {
    let s = check(args).ok()?;
    if !s.read_only {
        return None;
    }
    let map = &db.map;
    let reply = match s.name {
        "strlen" => db
            .read_as::<Vec<u8>>(&args[1])
            .map(|v| KvReply::Int(v.map_or(0, Vec::len) as i64)),
        "getrange" | "substr" => getrange(db, args),
        "ttl" | "pttl" => Ok(ttl(db, &args[1], s.name == "pttl", false)),
        "expiretime" | "pexpiretime" => Ok(ttl(db, &args[1], s.name == "pexpiretime", true)),
        "type" => Ok(KvReply::Status(
            map.get(&args[1]).map_or("none", Value::type_name).into(),
        )),
        "keys" => {
            let keys: Vec<&Vec<u8>> = map
                .keys()
                .filter(|k| crate::glob::matches(&args[1], k, false))
                .collect();
            reply_within(keys.iter().map(|k| k.len()))
                .map(|()| KvReply::Array(keys.into_iter().map(|k| Some(k.clone())).collect()))
        }
        "scan" => scan(db, args),
        "dbsize" => Ok(KvReply::Int(map.len() as i64)),
        "ping" => Ok(match args.len() {
            1 => KvReply::Pong,
            2 => KvReply::Bulk(args[1].clone()),
            _ => KvReply::Error(wrong_arity("ping")),
        }),
        name => hash::read(db, name, args)
            .or_else(|| list::read(db, name, args))
            .or_else(|| set::read(db, name, args))
            .or_else(|| zset::read(db, name, args))?,
    };
    Some(reply.unwrap_or_else(|e| e))
}

/// Execute a command line that [`KvOp::from_args`](super::KvOp::from_args) leaves as a [`KvOp::Call`](super::KvOp::Call) (checked
/// again here: the bytes may come from anyone).
pub fn exec(db: &mut Model, args: &[Vec<u8>]) -> KvReply {
    if let Err(e) = check(args) {
        return e;
    }
    if let Some(r) = read(db, args) {
        return r;
    }
    let reply = write(db, args).unwrap_or_else(|e| e);
    // a collection a command emptied (or created and left empty) is deleted
    for k in lookup(&args[0]).map_or_else(Vec::new, |s| s.keys(args)) {
        db.drop_empty(k);
    }
    reply
}

fn write(db: &mut Model, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let key = || args[1].clone();
    Ok(match name.as_str() {
        "set" => return set(db, &name, args, 3),
        "setex" | "psetex" => {
            // SETEX key seconds value: SET key value EX seconds
            let unit: &[u8] = if name == "setex" { b"ex" } else { b"px" };
            let line = [
                args[0].clone(),
                key(),
                args[3].clone(),
                unit.to_vec(),
                args[2].clone(),
            ];
            return set(db, &name, &line, 3);
        }
        "getex" => return getex(db, args),
        "expire" | "pexpire" | "expireat" | "pexpireat" => return expire(db, &name, args),
        "persist" => KvReply::Int(i64::from(db.clear_deadline(&args[1]))),
        "time" => {
            let (secs, micros) = (db.now / 1000, db.now % 1000 * 1000);
            KvReply::List(vec![
                KvReply::Bulk(secs.to_string().into_bytes()),
                KvReply::Bulk(micros.to_string().into_bytes()),
            ])
        }
        "setnx" => {
            if db.map.contains_key(&args[1]) {
                KvReply::Int(0)
            } else {
                db.put(key(), args[2].clone());
                KvReply::Int(1)
            }
        }
        "getset" => {
            let old = db.read_as::<Vec<u8>>(&args[1])?.cloned();
            db.put(key(), args[2].clone());
            opt(old)
        }
        "getdel" => {
            let old = db.read_as::<Vec<u8>>(&args[1])?.cloned();
            db.delete(&args[1]);
            opt(old)
        }
        "append" => {
            // in place: a TTL stays, as in Redis
            let len = db.read_as::<Vec<u8>>(&args[1])?.map_or(0, Vec::len);
            if len.saturating_add(args[2].len()) > MAX_STRING_LEN {
                return Err(err(ERR_TOO_LONG));
            }
            let v = db.create_as::<Vec<u8>>(&args[1])?;
            v.extend_from_slice(&args[2]);
            KvReply::Int(v.len() as i64)
        }
        "setrange" => return setrange(db, args),
        "incr" => return incr_by(db, &args[1], 1),
        "decr" => return incr_by(db, &args[1], -1),
        "incrby" => return incr_by(db, &args[1], int_arg(&args[2])?),
        "decrby" => {
            let by = int_arg(&args[2])?;
            if by == i64::MIN {
                return Err(err("ERR decrement would overflow"));
            }
            return incr_by(db, &args[1], -by);
        }
        "incrbyfloat" => return incr_by_float(db, args),
        "msetnx" => {
            if args.len().is_multiple_of(2) {
                return Err(KvReply::Error(wrong_arity(&name)));
            }
            if args[1..].iter().step_by(2).any(|k| db.map.contains_key(k)) {
                return Ok(KvReply::Int(0));
            }
            for p in args[1..].chunks(2) {
                db.put(p[0].clone(), p[1].clone());
            }
            KvReply::Int(1)
        }
        "rename" | "renamenx" => {
            let nx = name == "renamenx";
            if !db.map.contains_key(&args[1]) {
                return Err(err("ERR no such key"));
            }
            if args[1] == args[2] || (nx && db.map.contains_key(&args[2])) {
                return Ok(if nx { KvReply::Int(0) } else { KvReply::Ok });
            }
            // the TTL moves with the value; the target's own goes
            let when = db.deadline(&args[1]);
            let v = db.delete(&args[1]).unwrap_or(Value::Str(Vec::new()));
            db.put_value(args[2].clone(), v);
            if let Some(when) = when {
                db.set_deadline(&args[2], when);
            }
            if nx {
                KvReply::Int(1)
            } else {
                KvReply::Ok
            }
        }
        "flushdb" | "flushall" => {
            if args.len() > 2
                || (args.len() == 2
                    && !args[1].eq_ignore_ascii_case(b"async")
                    && !args[1].eq_ignore_ascii_case(b"sync"))
            {
                return Err(err(ERR_SYNTAX));
            }
            db.clear();
            KvReply::Ok
        }
        name => {
            return hash::write(db, name, args)
                .or_else(|| list::write(db, name, args))
                .or_else(|| set::write(db, name, args))
                .or_else(|| zset::write(db, name, args))
                .unwrap_or_else(|| Err(KvReply::Error(unknown_command(args))))
        }
    })
}

/// Redis's error for a string over the size limit.
const ERR_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// A bulk string, or nil.
pub(super) fn opt(v: Option<Vec<u8>>) -> KvReply {
    v.map_or(KvReply::Nil, KvReply::Bulk)
}

/// The options of `SET` (from word 3) and `GETEX` (from word 2), parsed as Redis's
/// `parseExtendedStringArgumentsOrReply` does: each expiry option excludes the
/// others, `KEEPTTL` and `PERSIST` but may repeat (the last wins).
#[derive(Default)]
struct Options<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// The option's lower-case name (`ex`, `px`, `exat`, `pxat`) and its argument.
    expire: Option<(&'static str, &'a [u8])>,
}

fn options(args: &[Vec<u8>], from: usize, set: bool) -> Result<Options<'_>, KvReply> {
    let mut o = Options::default();
    let mut j = from;
    while j < args.len() {
        let word = args[j].to_ascii_lowercase();
        let next = args.get(j + 1);
        let other_expiry = |name: &str| o.expire.is_some_and(|(n, _)| n != name);
        match word.as_slice() {
            b"nx" if set && !o.xx => o.nx = true,
            b"xx" if set && !o.nx => o.xx = true,
            b"get" if set => o.get = true,
            b"keepttl" if set && !o.persist && o.expire.is_none() => o.keepttl = true,
            b"persist" if !set && !o.keepttl && o.expire.is_none() => o.persist = true,
            b"ex" | b"px" | b"exat" | b"pxat" => {
                let name = match word.as_slice() {
                    b"ex" => "ex",
                    b"px" => "px",
                    b"exat" => "exat",
                    _ => "pxat",
                };
                match next {
                    Some(n) if !o.keepttl && !o.persist && !other_expiry(name) => {
                        o.expire = Some((name, n));
                        j += 1;
                    }
                    _ => return Err(err(ERR_SYNTAX)),
                }
            }
            _ => return Err(err(ERR_SYNTAX)),
        }
        j += 1;
    }
    Ok(o)
}

/// Redis's error for an expiry out of range, naming the command.
fn invalid_expire(command: &str) -> KvReply {
    KvReply::Error(format!("ERR invalid expire time in '{command}' command"))
}

/// The deadline an expiry option sets at `now` (Redis's
/// `getExpireMillisecondsOrReply`): a positive count of seconds or ms, from now for
/// `EX`/`PX`, a Unix time for `EXAT`/`PXAT`.
fn deadline(command: &str, (unit, arg): (&str, &[u8]), now: u64) -> Result<u64, KvReply> {
    let t = int_arg(arg)?;
    let ms = match unit {
        "ex" | "exat" => t.checked_mul(1000),
        _ => Some(t),
    };
    let base = if unit == "ex" || unit == "px" { now } else { 0 };
    let when = ms
        .filter(|ms| *ms > 0)
        .and_then(|ms| ms.checked_add(i64::try_from(base).ok()?))
        .ok_or_else(|| invalid_expire(command))?;
    Ok(when as u64)
}

/// Give the present `key` the deadline `when`, or delete it if `when` is already
/// past (before now: the key would be invisible, see [`Model`]).
fn expire_key(db: &mut Model, key: &[u8], when: u64) {
    if when < db.now {
        db.delete(key);
    } else {
        db.set_deadline(key, when);
    }
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]` (and `SETEX`,
/// `PSETEX` rewritten to it, whose name errors carry): options from word `from`.
fn set(db: &mut Model, command: &str, args: &[Vec<u8>], from: usize) -> Result<KvReply, KvReply> {
    let o = options(args, from, true)?;
    let when = match o.expire {
        Some(e) => Some(deadline(command, e, db.now)?),
        None => None,
    };
    // any type is overwritten, but GET reads a string
    let exists = db.map.contains_key(&args[1]);
    let old = if o.get {
        db.read_as::<Vec<u8>>(&args[1])?.cloned()
    } else {
        None
    };
    let write = !(o.nx && exists || o.xx && !exists);
    if write {
        let ttl = db.deadline(&args[1]).filter(|_| o.keepttl);
        db.put(args[1].clone(), args[2].clone());
        if let Some(when) = when.or(ttl) {
            expire_key(db, &args[1], when);
        }
    }
    Ok(match (o.get, write) {
        (true, _) => opt(old),
        (false, true) => KvReply::Ok,
        (false, false) => KvReply::Nil,
    })
}

/// `GETEX key [EX s|PX ms|EXAT t|PXAT t|PERSIST]`: a missing key is nil before
/// the expiry is checked, as in Redis.
fn getex(db: &mut Model, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let o = options(args, 2, false)?;
    let Some(v) = db.read_as::<Vec<u8>>(&args[1])?.cloned() else {
        return Ok(KvReply::Nil);
    };
    if let Some(e) = o.expire {
        let when = deadline("getex", e, db.now)?;
        // Redis deletes at an EXAT/PXAT not after now, keeps EX/PX's (always later)
        if e.0.ends_with("at") && when <= db.now {
            db.delete(&args[1]);
        } else {
            db.set_deadline(&args[1], when);
        }
    } else if o.persist {
        db.clear_deadline(&args[1]);
    }
    Ok(KvReply::Bulk(v))
}

/// `EXPIRE key seconds [NX|XX|GT|LT]`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`, as Redis's
/// `expireGenericCommand`: options first, then the number; a key without a TTL
/// counts as an infinite one for `GT`/`LT`; a deadline not after now deletes.
fn expire(db: &mut Model, command: &str, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for word in &args[3..] {
        match word.to_ascii_lowercase().as_slice() {
            b"nx" => nx = true,
            b"xx" => xx = true,
            b"gt" => gt = true,
            b"lt" => lt = true,
            _ => {
                let shown = String::from_utf8_lossy(word);
                return Err(KvReply::Error(format!("ERR Unsupported option {shown}")));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Err(err(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(err(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let t = int_arg(&args[2])?;
    let seconds = !command.starts_with('p');
    let base = if command.ends_with("at") {
        0
    } else {
        db.now as i64
    };
    let when = if seconds {
        t.checked_mul(1000)
    } else {
        Some(t)
    }
    .and_then(|ms| ms.checked_add(base))
    .ok_or_else(|| invalid_expire(command))?;
    if !db.map.contains_key(&args[1]) {
        return Ok(KvReply::Int(0));
    }
    let current = db.deadline(&args[1]).map(|w| w as i64);
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|c| when <= c))
        || (lt && current.is_some_and(|c| when >= c));
    if refused {
        return Ok(KvReply::Int(0));
    }
    if when <= db.now as i64 {
        db.delete(&args[1]);
    } else {
        db.set_deadline(&args[1], when as u64);
    }
    Ok(KvReply::Int(1))
}

/// `TTL key` / `PTTL key` (time left), `EXPIRETIME key` / `PEXPIRETIME key`
/// (`absolute`: the deadline, Unix time): -2 without the key, -1 without a
/// deadline, else milliseconds or seconds rounded as Redis does.
fn ttl(db: &Model, key: &[u8], ms: bool, absolute: bool) -> KvReply {
    if !db.map.contains_key(key) {
        return KvReply::Int(-2);
    }
    let Some(when) = db.deadline(key) else {
        return KvReply::Int(-1);
    };
    let t = if absolute {
        when
    } else {
        when.saturating_sub(db.now)
    };
    let t = t.min(i64::MAX as u64 - 500) as i64;
    KvReply::Int(if ms { t } else { (t + 500) / 1000 })
}

fn getrange(db: &Model, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    let v = db
        .read_as::<Vec<u8>>(&args[1])?
        .map_or(&[][..], Vec::as_slice);
    if start < 0 && end < 0 && start > end {
        return Ok(KvReply::Bulk(Vec::new()));
    }
    // unlike LRANGE, Redis clamps an end before the first byte to the first
    // byte; the rest is the same range
    let end = if end < 0 {
        (i128::from(end) + v.len() as i128).max(0) as i64
    } else {
        end
    };
    let range = index_range(start, end, v.len());
    Ok(KvReply::Bulk(
        range.map_or_else(Vec::new, |(s, e)| v[s..=e].to_vec()),
    ))
}

fn setrange(db: &mut Model, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let offset = int_arg(&args[2])?;
    if offset < 0 {
        return Err(err("ERR offset is out of range"));
    }
    let value = &args[3];
    let current = db.read_as::<Vec<u8>>(&args[1])?.map_or(0, Vec::len);
    if value.is_empty() {
        return Ok(KvReply::Int(current as i64));
    }
    let end = (offset as u64).saturating_add(value.len() as u64);
    if end > MAX_STRING_LEN as u64 {
        return Err(err(ERR_TOO_LONG));
    }
    let (offset, end) = (offset as usize, end as usize);
    let v = db.create_as::<Vec<u8>>(&args[1])?;
    if v.len() < end {
        v.resize(end, 0);
    }
    v[offset..end].copy_from_slice(value);
    Ok(KvReply::Int(v.len() as i64))
}

/// `INCRBY key by` (and `INCR`, `DECR`, `DECRBY`): in place, a TTL stays.
pub(super) fn incr_by(db: &mut Model, key: &[u8], by: i64) -> Result<KvReply, KvReply> {
    let current = match db.read_as::<Vec<u8>>(key)? {
        None => 0,
        Some(v) => parse_integer(v).ok_or_else(|| err(ERR_NOT_INTEGER))?,
    };
    let next = current.checked_add(by).ok_or_else(|| err(ERR_OVERFLOW))?;
    *db.create_as::<Vec<u8>>(key)? = next.to_string().into_bytes();
    Ok(KvReply::Int(next))
}

/// The error of a float increment whose result is not finite.
pub(super) const ERR_NAN_OR_INF: &str = "ERR increment would produce NaN or Infinity";

/// `current + by` as INCRBYFLOAT and HINCRBYFLOAT store it (Redis's `%.17Lf`
/// with trailing zeros cut), or the NaN-or-Infinity error.
pub(super) fn float_sum(current: LongDouble, by: LongDouble) -> Result<Vec<u8>, KvReply> {
    let sum = current.plus(by).filter(|n| !n.is_infinite());
    Ok(sum
        .ok_or_else(|| err(ERR_NAN_OR_INF))?
        .to_human()
        .into_bytes())
}

/// `INCRBYFLOAT key by`: in `long double`, written as Redis's `%.17Lf` without
/// trailing zeros (see [`super::float`]); in place, a TTL stays.
fn incr_by_float(db: &mut Model, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let current = match db.read_as::<Vec<u8>>(&args[1])? {
        None => LongDouble::ZERO,
        Some(v) => long_double_arg(v)?,
    };
    let next = float_sum(current, long_double_arg(&args[2])?)?;
    *db.create_as::<Vec<u8>>(&args[1])? = next.clone();
    Ok(KvReply::Bulk(next))
}

/// The position of `key` in SCAN order.
/// A key's position in `SCAN` order (the cursor is such a position; the
/// sharded store merges its shards' steps by it).
pub fn scan_hash(key: &[u8]) -> u64 {
    let d = digest(key);
    let mut w = [0u8; 8];
    w.copy_from_slice(&d[..8]);
    u64::from_le_bytes(w)
}

/// A SCAN cursor as Redis's `strtoul` reads it (an empty string is 0; `-n` wraps).
fn parse_cursor(c: &[u8]) -> Option<u64> {
    let (neg, digits) = match c.split_first() {
        None => return Some(0),
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, c),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
fn scan(db: &Model, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let map = &db.map;
    let cursor = cursor_arg(&args[1])?;
    let ScanOptions {
        count,
        pattern,
        kind,
    } = scan_options(args, 2, true)?;
    let mut order: Vec<(u64, &Vec<u8>)> = map
        .keys()
        .map(|k| (scan_hash(k), k))
        .filter(|(h, _)| *h >= cursor)
        .collect();
    order.sort_unstable();
    let mut take = count.min(MAX_SCAN_STEP).min(order.len());
    // never split keys of one hash across calls
    while take > 0 && take < order.len() && order[take].0 == order[take - 1].0 {
        take += 1;
    }
    let next = order.get(take).map_or(0, |(h, _)| *h);
    let keys = order[..take]
        .iter()
        .filter(|(_, k)| pattern.is_none_or(|p| crate::glob::matches(p, k, false)))
        .filter(|(_, k)| {
            kind.is_none_or(|t| {
                map.get(*k)
                    .is_some_and(|v| t.eq_ignore_ascii_case(v.type_name().as_bytes()))
            })
        })
        .map(|(_, k)| KvReply::Bulk((*k).clone()))
        .collect();
    Ok(KvReply::List(vec![
        KvReply::Bulk(next.to_string().into_bytes()),
        KvReply::List(keys),
    ]))
}

#[cfg(test)]
mod tests;
