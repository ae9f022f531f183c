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
//! Deviations, all documented at the command:
//! - values are strings only until the first other family (hashes, lists, ...)
//!   exists, so `WRONGTYPE` cannot occur yet and `TYPE` answers `string` or `none`;
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

use std::collections::BTreeMap;

use byzscale_core::crypto::digest;

use super::{parse_integer, KvReply, Model, ERR_NOT_INTEGER, ERR_OVERFLOW, MAX_OP_LEN};

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

fn err(text: &str) -> KvReply {
    KvReply::Error(text.to_string())
}

fn int_arg(a: &[u8]) -> Result<i64, KvReply> {
    parse_integer(a).ok_or_else(|| err(ERR_NOT_INTEGER))
}

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

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
    Some(match s.name {
        "strlen" => KvReply::Int(map.get(&args[1]).map_or(0, Vec::len) as i64),
        "getrange" | "substr" => getrange(map, args).unwrap_or_else(|e| e),
        "ttl" | "pttl" => ttl(db, &args[1], s.name == "pttl"),
        "type" => KvReply::Status(
            if map.contains_key(&args[1]) {
                "string"
            } else {
                "none"
            }
            .into(),
        ),
        "keys" => KvReply::Array(
            map.keys()
                .filter(|k| crate::glob::matches(&args[1], k, false))
                .map(|k| Some(k.clone()))
                .collect(),
        ),
        "scan" => scan(map, args).unwrap_or_else(|e| e),
        "dbsize" => KvReply::Int(map.len() as i64),
        "ping" => match args.len() {
            1 => KvReply::Pong,
            2 => KvReply::Bulk(args[1].clone()),
            _ => KvReply::Error(wrong_arity("ping")),
        },
        _ => return None,
    })
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
    write(db, args).unwrap_or_else(|e| e)
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
        "getset" => opt(db.put(key(), args[2].clone())),
        "getdel" => opt(db.delete(&args[1])),
        "append" => {
            // in place: a TTL stays, as in Redis
            let v = db.map.entry(key()).or_default();
            if v.len().saturating_add(args[2].len()) > MAX_STRING_LEN {
                return Err(err(ERR_TOO_LONG));
            }
            v.extend_from_slice(&args[2]);
            KvReply::Int(v.len() as i64)
        }
        "setrange" => return setrange(&mut db.map, args),
        "incr" => return incr_by(&mut db.map, &args[1], 1),
        "decr" => return incr_by(&mut db.map, &args[1], -1),
        "incrby" => return incr_by(&mut db.map, &args[1], int_arg(&args[2])?),
        "decrby" => {
            let by = int_arg(&args[2])?;
            if by == i64::MIN {
                return Err(err("ERR decrement would overflow"));
            }
            return incr_by(&mut db.map, &args[1], -by);
        }
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
            let v = db.delete(&args[1]).unwrap_or_default();
            db.put(args[2].clone(), v);
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
        _ => return Err(KvReply::Error(unknown_command(args))),
    })
}

/// Redis's error for a string over the size limit.
const ERR_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

fn opt(v: Option<Vec<u8>>) -> KvReply {
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
    let old = db.map.get(&args[1]).cloned();
    let write = !(o.nx && old.is_some() || o.xx && old.is_none());
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
    let Some(v) = db.map.get(&args[1]).cloned() else {
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

/// `TTL key` / `PTTL key`: -2 without the key, -1 without a TTL, else the time
/// left (seconds rounded as Redis does).
fn ttl(db: &Model, key: &[u8], ms: bool) -> KvReply {
    if !db.map.contains_key(key) {
        return KvReply::Int(-2);
    }
    let Some(when) = db.deadline(key) else {
        return KvReply::Int(-1);
    };
    let left = when.saturating_sub(db.now) as i64;
    KvReply::Int(if ms { left } else { (left + 500) / 1000 })
}

fn getrange(map: &Map, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    let v = map.get(&args[1]).map_or(&[][..], Vec::as_slice);
    if start < 0 && end < 0 && start > end {
        return Ok(KvReply::Bulk(Vec::new()));
    }
    let len = v.len() as i128;
    let (mut start, mut end) = (i128::from(start), i128::from(end));
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Ok(KvReply::Bulk(Vec::new()));
    }
    Ok(KvReply::Bulk(v[start as usize..=end as usize].to_vec()))
}

fn setrange(map: &mut Map, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let offset = int_arg(&args[2])?;
    if offset < 0 {
        return Err(err("ERR offset is out of range"));
    }
    let value = &args[3];
    let current = map.get(&args[1]).map_or(0, Vec::len);
    if value.is_empty() {
        return Ok(KvReply::Int(current as i64));
    }
    let end = (offset as u64).saturating_add(value.len() as u64);
    if end > MAX_STRING_LEN as u64 {
        return Err(err(ERR_TOO_LONG));
    }
    let (offset, end) = (offset as usize, end as usize);
    let v = map.entry(args[1].clone()).or_default();
    if v.len() < end {
        v.resize(end, 0);
    }
    v[offset..end].copy_from_slice(value);
    Ok(KvReply::Int(v.len() as i64))
}

fn incr_by(map: &mut Map, key: &[u8], by: i64) -> Result<KvReply, KvReply> {
    let current = match map.get(key) {
        None => 0,
        Some(v) => parse_integer(v).ok_or_else(|| err(ERR_NOT_INTEGER))?,
    };
    let next = current.checked_add(by).ok_or_else(|| err(ERR_OVERFLOW))?;
    map.insert(key.to_vec(), next.to_string().into_bytes());
    Ok(KvReply::Int(next))
}

/// The position of `key` in SCAN order.
fn scan_hash(key: &[u8]) -> u64 {
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
fn scan(map: &Map, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let cursor = parse_cursor(&args[1]).ok_or_else(|| err("ERR invalid cursor"))?;
    let (mut count, mut pattern, mut kind) = (10usize, None, None);
    let mut i = 2;
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
                count = usize::try_from(n).unwrap_or(usize::MAX);
            }
            b"match" => pattern = Some(args[i + 1].as_slice()),
            b"type" => kind = Some(args[i + 1].as_slice()),
            _ => return Err(err(ERR_SYNTAX)),
        }
        i += 2;
    }
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
        .filter(|_| kind.is_none_or(|t| t.eq_ignore_ascii_case(b"string")))
        .map(|(_, k)| KvReply::Bulk((*k).clone()))
        .collect();
    Ok(KvReply::List(vec![
        KvReply::Bulk(next.to_string().into_bytes()),
        KvReply::List(keys),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a command line as the store does (typed commands included).
    fn call(db: &mut Model, words: &[&str]) -> KvReply {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        db.apply(&super::super::KvOp::Call(args))
    }

    #[test]
    fn scan_visits_every_key_once_across_calls_with_changes() {
        let mut map = Model::new();
        for i in 0..100 {
            map.insert(format!("k{i}").into_bytes(), b"v".to_vec());
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = "0".to_string();
        let mut calls = 0;
        loop {
            let KvReply::List(r) = call(&mut map, &["scan", &cursor, "count", "7"]) else {
                panic!()
            };
            let (KvReply::Bulk(c), KvReply::List(keys)) = (&r[0], &r[1]) else {
                panic!()
            };
            for k in keys {
                let KvReply::Bulk(k) = k else { panic!() };
                assert!(seen.insert(k.clone()), "returned twice");
            }
            calls += 1;
            // keys added and removed mid-scan do not disturb the others
            map.insert(format!("new{calls}").into_bytes(), b"v".to_vec());
            cursor = String::from_utf8(c.clone()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        for i in 0..100 {
            assert!(seen.contains(format!("k{i}").as_bytes()), "k{i} missed");
        }
        assert!(calls >= 100 / 7, "{calls}");
    }

    #[test]
    fn scan_cursor_parses_like_strtoul() {
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"007"), Some(7));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"x"), None);
        assert_eq!(parse_cursor(b" 1"), None);
        assert_eq!(parse_cursor(b"18446744073709551616"), None);
    }

    #[test]
    fn string_limits_hold() {
        let mut map = Model::new();
        let big = (MAX_STRING_LEN).to_string();
        assert_eq!(
            call(&mut map, &["setrange", "k", &big, "x"]),
            err(ERR_TOO_LONG)
        );
        assert!(map.is_empty());
        assert_eq!(
            call(&mut map, &["setrange", "k", "9223372036854775807", "x"]),
            err(ERR_TOO_LONG)
        );
        assert_eq!(
            call(&mut map, &["setrange", "k", "3", "x"]),
            KvReply::Int(4)
        );
        assert_eq!(map.get(b"k"), Some(&b"\0\0\0x"[..]));
    }

    fn int(i: i64) -> KvReply {
        KvReply::Int(i)
    }

    const T: u64 = 1_700_000_000_000;

    /// A store at time `T` holding `k` = `v`.
    fn at_t() -> Model {
        let mut db = Model::new();
        db.advance(T);
        call(&mut db, &["set", "k", "v"]);
        db
    }

    #[test]
    fn set_expiry_options_set_a_deadline_and_errors_match_redis() {
        let mut db = Model::new();
        db.advance(T);
        assert_eq!(call(&mut db, &["set", "k", "v", "EX", "10"]), KvReply::Ok);
        assert_eq!(db.deadline(b"k"), Some(T + 10_000));
        assert_eq!(
            call(&mut db, &["set", "k", "v", "px", "10", "px", "20"]),
            KvReply::Ok
        );
        assert_eq!(db.deadline(b"k"), Some(T + 20));
        assert_eq!(
            call(&mut db, &["set", "k", "v", "pxat", &(T + 5).to_string()]),
            KvReply::Ok
        );
        assert_eq!(db.deadline(b"k"), Some(T + 5));
        // a plain SET clears the TTL, KEEPTTL keeps it
        call(&mut db, &["set", "k", "v", "ex", "10"]);
        assert_eq!(call(&mut db, &["set", "k", "w", "keepttl"]), KvReply::Ok);
        assert_eq!(db.deadline(b"k"), Some(T + 10_000));
        assert_eq!(call(&mut db, &["set", "k", "w"]), KvReply::Ok);
        assert_eq!(db.deadline(b"k"), None);
        let invalid = err("ERR invalid expire time in 'set' command");
        for bad in [
            &["set", "k", "v", "px", "0"][..],
            &["set", "k", "v", "ex", "-1"],
            &["set", "k", "v", "ex", "9223372036854775807"],
            &["set", "k", "v", "px", "9223372036854775807"],
        ] {
            assert_eq!(call(&mut db, bad), invalid, "{bad:?}");
        }
        assert_eq!(
            call(&mut db, &["set", "k", "v", "ex", "x"]),
            err(ERR_NOT_INTEGER)
        );
        for bad in [
            &["set", "k", "v", "ex"][..],
            &["set", "k", "v", "ex", "1", "keepttl"],
            &["set", "k", "v", "ex", "1", "px", "1"],
            &["set", "k", "v", "persist"],
        ] {
            assert_eq!(call(&mut db, bad), err(ERR_SYNTAX), "{bad:?}");
        }
        assert_eq!(
            call(&mut db, &["setex", "k", "0", "v"]),
            err("ERR invalid expire time in 'setex' command")
        );
        assert_eq!(call(&mut db, &["psetex", "k", "1500", "v"]), KvReply::Ok);
        assert_eq!(call(&mut db, &["pttl", "k"]), int(1500));
        assert_eq!(call(&mut db, &["ttl", "k"]), int(2));
        // a deadline already past: the key is gone at once
        assert_eq!(call(&mut db, &["set", "k", "v", "exat", "1"]), KvReply::Ok);
        assert_eq!(call(&mut db, &["exists", "k"]), int(0));
        assert!(db.is_empty());
    }

    #[test]
    fn expire_family_follows_redis_options_and_deletes_in_the_past() {
        let mut db = at_t();
        let nx_err = err("ERR NX and XX, GT or LT options at the same time are not compatible");
        assert_eq!(call(&mut db, &["expire", "k", "10", "nx", "xx"]), nx_err);
        assert_eq!(call(&mut db, &["expire", "k", "10", "nx", "gt"]), nx_err);
        assert_eq!(
            call(&mut db, &["expire", "k", "10", "gt", "lt"]),
            err("ERR GT and LT options at the same time are not compatible")
        );
        assert_eq!(
            call(&mut db, &["expire", "k", "x", "foo"]),
            err("ERR Unsupported option foo")
        );
        assert_eq!(call(&mut db, &["expire", "k", "x"]), err(ERR_NOT_INTEGER));
        assert_eq!(
            call(&mut db, &["pexpire", "k", "9223372036854775807"]),
            err("ERR invalid expire time in 'pexpire' command")
        );
        assert_eq!(call(&mut db, &["expire", "nokey", "10"]), int(0));
        // no TTL: GT fails (infinite), XX fails, LT and NX set
        assert_eq!(call(&mut db, &["expire", "k", "100", "gt"]), int(0));
        assert_eq!(call(&mut db, &["expire", "k", "100", "xx"]), int(0));
        assert_eq!(call(&mut db, &["ttl", "k"]), int(-1));
        assert_eq!(call(&mut db, &["expire", "k", "100", "lt"]), int(1));
        assert_eq!(call(&mut db, &["ttl", "k"]), int(100));
        assert_eq!(call(&mut db, &["expire", "k", "50", "nx"]), int(0));
        assert_eq!(call(&mut db, &["expire", "k", "200", "lt"]), int(0));
        assert_eq!(call(&mut db, &["expire", "k", "200", "gt"]), int(1));
        assert_eq!(
            call(&mut db, &["pexpireat", "k", &(T + 7).to_string(), "xx"]),
            int(1)
        );
        assert_eq!(call(&mut db, &["pttl", "k"]), int(7));
        assert_eq!(call(&mut db, &["persist", "k"]), int(1));
        assert_eq!(call(&mut db, &["persist", "k"]), int(0));
        assert_eq!(call(&mut db, &["ttl", "nokey"]), int(-2));
        // EXPIREAT at now deletes, as Redis's checkAlreadyExpired
        assert_eq!(call(&mut db, &["pexpireat", "k", &T.to_string()]), int(1));
        assert_eq!(call(&mut db, &["get", "k"]), KvReply::Nil);
        let mut db = at_t();
        assert_eq!(call(&mut db, &["expire", "k", "-1"]), int(1));
        assert!(db.is_empty());
    }

    #[test]
    fn getex_sets_or_clears_the_ttl_and_checks_like_redis() {
        let mut db = at_t();
        assert_eq!(call(&mut db, &["getex", "nokey", "ex", "0"]), KvReply::Nil);
        assert_eq!(call(&mut db, &["getex", "nokey", "foo"]), err(ERR_SYNTAX));
        assert_eq!(
            call(&mut db, &["getex", "k", "ex", "0"]),
            err("ERR invalid expire time in 'getex' command")
        );
        for bad in [
            &["getex", "k", "ex", "1", "px", "1"][..],
            &["getex", "k", "persist", "ex", "1"],
            &["getex", "k", "keepttl"],
            &["getex", "k", "nx"],
        ] {
            assert_eq!(call(&mut db, bad), err(ERR_SYNTAX), "{bad:?}");
        }
        let v = KvReply::Bulk(b"v".to_vec());
        assert_eq!(call(&mut db, &["getex", "k", "ex", "5", "ex", "7"]), v);
        assert_eq!(call(&mut db, &["ttl", "k"]), int(7));
        assert_eq!(call(&mut db, &["getex", "k"]), v);
        assert_eq!(call(&mut db, &["ttl", "k"]), int(7));
        assert_eq!(call(&mut db, &["getex", "k", "persist"]), v);
        assert_eq!(call(&mut db, &["ttl", "k"]), int(-1));
        assert_eq!(call(&mut db, &["getex", "k", "exat", "1"]), v);
        assert_eq!(call(&mut db, &["exists", "k"]), int(0));
    }

    /// Which writes keep a TTL, as Redis: in-place changes keep it, a new value
    /// (SET, GETSET, MSET) drops it, RENAME moves it.
    #[test]
    fn ttls_survive_in_place_writes_and_move_with_rename() {
        let mut db = at_t();
        call(&mut db, &["set", "n", "1", "ex", "10"]);
        call(&mut db, &["incr", "n"]);
        call(&mut db, &["append", "n", "0"]);
        call(&mut db, &["setrange", "n", "0", "3"]);
        assert_eq!(call(&mut db, &["ttl", "n"]), int(10));
        assert_eq!(call(&mut db, &["rename", "n", "m"]), KvReply::Ok);
        assert_eq!(call(&mut db, &["ttl", "m"]), int(10));
        assert_eq!(call(&mut db, &["ttl", "n"]), int(-2));
        // a target's own TTL goes; a renamed key without one has none
        call(&mut db, &["expire", "k", "99"]);
        call(&mut db, &["set", "plain", "x"]);
        call(&mut db, &["rename", "plain", "k"]);
        assert_eq!(call(&mut db, &["ttl", "k"]), int(-1));
        call(&mut db, &["getset", "m", "x"]);
        assert_eq!(call(&mut db, &["ttl", "m"]), int(-1));
        call(&mut db, &["expire", "m", "5"]);
        call(&mut db, &["mset", "m", "y"]);
        assert_eq!(call(&mut db, &["ttl", "m"]), int(-1));
        call(&mut db, &["expire", "m", "5"]);
        call(&mut db, &["del", "m"]);
        call(&mut db, &["set", "m", "z"]);
        assert_eq!(call(&mut db, &["ttl", "m"]), int(-1));
        call(&mut db, &["expire", "m", "5"]);
        call(&mut db, &["flushdb"]);
        assert!(db.ttl.is_empty() && db.deadlines.is_empty());
    }

    /// Expired keys vanish from every read once the batch time passes their
    /// deadline, and TIME is the batch time.
    #[test]
    fn keys_expire_when_the_batch_time_passes_their_deadline() {
        let mut db = at_t();
        call(&mut db, &["set", "a", "1", "px", "100"]);
        call(&mut db, &["set", "b", "2", "px", "200"]);
        let time = |db: &mut Model| call(db, &["time"]);
        let pair = |s: u64, us: u64| {
            KvReply::List(vec![
                KvReply::Bulk(s.to_string().into_bytes()),
                KvReply::Bulk(us.to_string().into_bytes()),
            ])
        };
        assert_eq!(time(&mut db), pair(T / 1000, 0));
        db.advance(T + 100);
        assert_eq!(call(&mut db, &["dbsize"]), int(3), "alive at its deadline");
        assert_eq!(call(&mut db, &["pttl", "a"]), int(0));
        db.advance(T + 101);
        assert_eq!(time(&mut db), pair(T / 1000, 101_000));
        assert_eq!(call(&mut db, &["get", "a"]), KvReply::Nil);
        assert_eq!(call(&mut db, &["dbsize"]), int(2));
        assert_eq!(
            call(&mut db, &["type", "a"]),
            KvReply::Status("none".into())
        );
        // the clock never goes back
        db.advance(T);
        assert_eq!(db.now(), T + 101);
        db.advance(T + 1_000);
        assert_eq!(
            call(&mut db, &["keys", "*"]),
            KvReply::Array(vec![Some(b"k".to_vec())])
        );
        let KvReply::List(scan) = call(&mut db, &["scan", "0"]) else {
            panic!()
        };
        assert_eq!(scan[1], KvReply::List(vec![KvReply::Bulk(b"k".to_vec())]));
        assert!(db.ttl.is_empty() && db.deadlines.is_empty());
    }

    #[test]
    fn the_table_is_consistent() {
        for s in TABLE {
            assert_eq!(
                lookup(s.name.to_uppercase().as_bytes()).unwrap().name,
                s.name
            );
            assert!(!(s.all_keys && s.first != 0), "{}", s.name);
        }
        let args: Vec<Vec<u8>> = ["mset", "a", "1", "b", "2"]
            .iter()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        assert_eq!(lookup(b"mset").unwrap().keys(&args), vec![b"a", b"b"]);
        let args: Vec<Vec<u8>> = ["rename", "a", "b"]
            .iter()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        assert_eq!(lookup(b"rename").unwrap().keys(&args), vec![b"a", b"b"]);
    }
}
