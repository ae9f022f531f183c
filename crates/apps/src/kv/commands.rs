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
//! - no key expiry: `SET ... EX/PX/EXAT/PXAT` answer [`ERR_NO_EXPIRY`]; `KEEPTTL` is
//!   accepted (no key has a TTL, so keeping it is a no-op);
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

use super::{parse_integer, KvReply, ERR_NOT_INTEGER, ERR_OVERFLOW, MAX_OP_LEN};

/// Redis's `syntax error`.
pub const ERR_SYNTAX: &str = "ERR syntax error";
/// The reply to `SET` with an expiry option until the store has a replicated clock.
pub const ERR_NO_EXPIRY: &str =
    "ERR key expiry (SET EX/PX/EXAT/PXAT) is not supported yet: the replicated store has no agreed clock";
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
pub fn read(map: &Map, args: &[Vec<u8>]) -> Option<KvReply> {
    let s = check(args).ok()?;
    if !s.read_only {
        return None;
    }
    Some(match s.name {
        "strlen" => KvReply::Int(map.get(&args[1]).map_or(0, Vec::len) as i64),
        "getrange" | "substr" => getrange(map, args).unwrap_or_else(|e| e),
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
pub fn exec(map: &mut Map, args: &[Vec<u8>]) -> KvReply {
    if let Err(e) = check(args) {
        return e;
    }
    if let Some(r) = read(map, args) {
        return r;
    }
    write(map, args).unwrap_or_else(|e| e)
}

fn write(map: &mut Map, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let key = || args[1].clone();
    Ok(match name.as_str() {
        "set" => return set(map, args),
        "setnx" => {
            if map.contains_key(&args[1]) {
                KvReply::Int(0)
            } else {
                map.insert(key(), args[2].clone());
                KvReply::Int(1)
            }
        }
        "getset" => opt(map.insert(key(), args[2].clone())),
        "getdel" => opt(map.remove(&args[1])),
        "append" => {
            let v = map.entry(key()).or_default();
            if v.len().saturating_add(args[2].len()) > MAX_STRING_LEN {
                return Err(err(ERR_TOO_LONG));
            }
            v.extend_from_slice(&args[2]);
            KvReply::Int(v.len() as i64)
        }
        "setrange" => return setrange(map, args),
        "incr" => return incr_by(map, &args[1], 1),
        "decr" => return incr_by(map, &args[1], -1),
        "incrby" => return incr_by(map, &args[1], int_arg(&args[2])?),
        "decrby" => {
            let by = int_arg(&args[2])?;
            if by == i64::MIN {
                return Err(err("ERR decrement would overflow"));
            }
            return incr_by(map, &args[1], -by);
        }
        "msetnx" => {
            if args.len().is_multiple_of(2) {
                return Err(KvReply::Error(wrong_arity(&name)));
            }
            if args[1..].iter().step_by(2).any(|k| map.contains_key(k)) {
                return Ok(KvReply::Int(0));
            }
            for p in args[1..].chunks(2) {
                map.insert(p[0].clone(), p[1].clone());
            }
            KvReply::Int(1)
        }
        "rename" | "renamenx" => {
            let nx = name == "renamenx";
            let Some(v) = map.get(&args[1]) else {
                return Err(err("ERR no such key"));
            };
            if args[1] == args[2] || (nx && map.contains_key(&args[2])) {
                return Ok(if nx { KvReply::Int(0) } else { KvReply::Ok });
            }
            let v = v.clone();
            map.remove(&args[1]);
            map.insert(args[2].clone(), v);
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
            map.clear();
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

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`, options parsed as
/// Redis's `parseExtendedStringArgumentsOrReply` does.
fn set(map: &mut Map, args: &[Vec<u8>]) -> Result<KvReply, KvReply> {
    let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
    let mut expire: Option<&[u8]> = None;
    let mut j = 3;
    while j < args.len() {
        let opt = args[j].to_ascii_lowercase();
        let has_next = j + 1 < args.len();
        match opt.as_slice() {
            b"nx" if !xx => nx = true,
            b"xx" if !nx => xx = true,
            b"get" => get = true,
            b"keepttl" if expire.is_none() => keepttl = true,
            b"ex" | b"px" | b"exat" | b"pxat" if !keepttl && expire.is_none() && has_next => {
                j += 1;
                expire = Some(&args[j]);
            }
            _ => return Err(err(ERR_SYNTAX)),
        }
        j += 1;
    }
    if let Some(e) = expire {
        return Err(match parse_integer(e) {
            None => err(ERR_NOT_INTEGER),
            Some(t) if t <= 0 => err("ERR invalid expire time in 'set' command"),
            Some(_) => err(ERR_NO_EXPIRY),
        });
    }
    let old = map.get(&args[1]).cloned();
    let write = !(nx && old.is_some() || xx && old.is_none());
    if write {
        map.insert(args[1].clone(), args[2].clone());
    }
    Ok(match (get, write) {
        (true, _) => opt(old),
        (false, true) => KvReply::Ok,
        (false, false) => KvReply::Nil,
    })
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

    fn call(map: &mut Map, words: &[&str]) -> KvReply {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        exec(map, &args)
    }

    #[test]
    fn scan_visits_every_key_once_across_calls_with_changes() {
        let mut map = Map::new();
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
        let mut map = Map::new();
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
        assert_eq!(map[&b"k"[..]], b"\0\0\0x");
    }

    #[test]
    fn set_expiry_options_name_the_missing_feature() {
        let mut map = Map::new();
        assert_eq!(
            call(&mut map, &["set", "k", "v", "EX", "10"]),
            err(ERR_NO_EXPIRY)
        );
        assert_eq!(
            call(&mut map, &["set", "k", "v", "px", "0"]),
            err("ERR invalid expire time in 'set' command")
        );
        assert_eq!(call(&mut map, &["set", "k", "v", "ex"]), err(ERR_SYNTAX));
        assert_eq!(
            call(&mut map, &["set", "k", "v", "ex", "1", "keepttl"]),
            err(ERR_SYNTAX)
        );
        assert!(map.is_empty());
        assert_eq!(call(&mut map, &["set", "k", "v", "keepttl"]), KvReply::Ok);
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
