//! Differential test of the Redis gateway (issue 12, "Done when"): thousands of
//! seeded random commands over a small key space shared by every family (strings and
//! keys, hashes, lists, sets, sorted sets, so that types collide and the `WRONGTYPE`
//! paths run; options, wrong arities, unknown commands), sent to a real
//! `redis-server` and to a byzscale cluster through its gateway, in RESP2 and in RESP3
//! (maps, sets, doubles); the replies must be identical. A mismatch names the seed, the command index, the command and both
//! replies. Runs when `redis-server` is on the PATH (`.ci/run` installs it) and says
//! that it skipped otherwise.
//!
//! Normalised before comparing, because Redis leaves them unspecified: the order of
//! `KEYS` (hash-table order) and of the keys of a `SCAN` (the generator only scans
//! from cursor 0 with a `COUNT` above the key space, so both stores answer in one call
//! with cursor 0), and the order of a hash's fields (`HGETALL`, `HKEYS`, `HVALS`,
//! `HSCAN`: insertion order in Redis's small encoding, field order here) and of a
//! set's members (`SMEMBERS`, `SINTER`, `SUNION`, `SDIFF`). Collections stay small
//! (Redis's small encodings, where `HSCAN` answers in one call).
//!
//! Expiry (`SET EX/PX/EXAT/PXAT/KEEPTTL`, `SETEX`, `PSETEX`, `GETEX`, the `EXPIRE`
//! family, `TTL`, `PTTL`, `PERSIST`, `TIME`): the two stores read different clocks
//! (the cluster's agreed batch time, redis-server's own), so a remaining TTL is
//! compared with a tolerance ([`agree`]: 1 s for `TTL`, 1000 ms for `PTTL`) and
//! `TIME` within 2 s; relative TTLs are long (100 s and more) so that no key expires
//! during the run, and `GT`/`LT` are generated only with absolute times (`EXPIREAT`,
//! `PEXPIREAT`), whose comparison with any deadline does not depend on when each
//! store ran the command. `SET` gets no absolute time in the past: Redis 7.0 keeps
//! such a key, logically expired, until its expiry cycle deletes it, and `DBSIZE`
//! counts it until then (here it is gone at once; `GETEX` and `EXPIREAT` in the past
//! delete at once in both). Not generated (documented deviations): `SETRANGE` offsets
//! near the 1 MiB string limit, `SCAN` from a non-zero cursor.
//!
//! Transactions (issue 12 item 4): every [`TX_EVERY`] commands, a transaction from
//! a second seeded generator ([`Tx`]): `WATCH` of one or two keys, maybe a read,
//! maybe a write by a second connection to a watched key or another one, `MULTI`,
//! random commands (sometimes a wrong one, which makes `EXEC` answer `EXECABORT`;
//! sometimes a nested `MULTI` or a `WATCH`, which do not), then `EXEC` (each
//! element normalised as its command) or `DISCARD`. The second connection only
//! writes with `SET`, which Redis always counts as a change of the key; a write
//! that changes nothing (`DEL` of a missing key) fails an `EXEC` here but not in
//! Redis (see `byzscale_apps::kv::multi`). Commands compared with a tolerance
//! (`TTL`, `PTTL`, `TIME`) are not queued.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::Kill;

/// Commands per protocol version (`REDIS_DIFF_COMMANDS` overrides it).
const COMMANDS: usize = 2500;
/// The seed (`REDIS_DIFF_SEED` overrides it, to explore).
const SEED: u64 = 12;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One RESP reply, kept close to the wire so that any difference shows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum V {
    /// `+ - : _ , # (` and their line.
    Line(u8, Vec<u8>),
    /// `$` or `=`: a (possibly nil) bulk string.
    Bulk(u8, Option<Vec<u8>>),
    /// `* % ~ >`: an aggregate (a map's pairs flattened), or a nil array.
    Agg(u8, Option<Vec<V>>),
}

impl fmt::Display for V {
    /// The reply as on the wire, CRLF shown as a space.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            V::Line(k, l) => write!(f, "{}{} ", *k as char, text(l)),
            V::Bulk(k, None) => write!(f, "{}-1 ", *k as char),
            V::Bulk(k, Some(b)) => write!(f, "{}{} {:?} ", *k as char, b.len(), text(b)),
            V::Agg(k, None) => write!(f, "{}-1 ", *k as char),
            V::Agg(k, Some(items)) => {
                write!(f, "{}{} ", *k as char, items.len())?;
                items.iter().try_for_each(|i| i.fmt(f))
            }
        }
    }
}

fn read_line(r: &mut impl BufRead) -> Vec<u8> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).expect("reply");
    assert!(line.ends_with(b"\r\n"), "truncated reply line {line:?}");
    line.truncate(line.len() - 2);
    line
}

fn read_reply(r: &mut impl BufRead) -> V {
    let line = read_line(r);
    let (kind, rest) = (line[0], line[1..].to_vec());
    let n = || -> i64 { String::from_utf8_lossy(&rest).parse().expect("length") };
    match kind {
        b'$' | b'=' => {
            if n() < 0 {
                return V::Bulk(kind, None);
            }
            let mut body = vec![0u8; n() as usize + 2];
            r.read_exact(&mut body).expect("bulk");
            body.truncate(n() as usize);
            V::Bulk(kind, Some(body))
        }
        b'*' | b'~' | b'>' | b'%' => {
            if n() < 0 {
                return V::Agg(kind, None);
            }
            let count = n() as usize * if kind == b'%' { 2 } else { 1 };
            V::Agg(kind, Some((0..count).map(|_| read_reply(r)).collect()))
        }
        _ => V::Line(kind, rest),
    }
}

/// The multibulk request of a command line (the `redis` crate's encoder).
fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut cmd = redis::cmd(&String::from_utf8_lossy(&args[0]));
    for a in &args[1..] {
        cmd.arg(a.as_slice());
    }
    cmd.get_packed_command()
}

struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let w = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Conn { w, r }
    }

    fn call(&mut self, args: &[Vec<u8>]) -> V {
        self.w.write_all(&encode(args)).unwrap();
        read_reply(&mut self.r)
    }
}

/// Sort what Redis leaves unordered (see the module docs).
fn normalize(cmd: &[Vec<u8>], mut v: V) -> V {
    let name = cmd[0].to_ascii_lowercase();
    match (name.as_slice(), &mut v) {
        (
            b"keys" | b"smembers" | b"sinter" | b"sunion" | b"sdiff" | b"hkeys" | b"hvals",
            V::Agg(_, Some(items)),
        ) => items.sort(),
        (b"hgetall", V::Agg(_, Some(items))) => sort_pairs(items),
        (b"scan", V::Agg(_, Some(items))) if items.len() == 2 => {
            if let V::Agg(_, Some(keys)) = &mut items[1] {
                keys.sort();
            }
        }
        (b"hscan", V::Agg(_, Some(items))) if items.len() == 2 => {
            if let V::Agg(_, Some(pairs)) = &mut items[1] {
                sort_pairs(pairs);
            }
        }
        _ => {}
    }
    v
}

/// Sort a flat list of pairs (a map's keys and values) by pair.
fn sort_pairs(items: &mut Vec<V>) {
    let mut pairs: Vec<(V, V)> = items
        .chunks(2)
        .map(|p| {
            (
                p[0].clone(),
                p.get(1).cloned().unwrap_or(V::Line(b'?', vec![])),
            )
        })
        .collect();
    pairs.sort();
    *items = pairs.into_iter().flat_map(|(a, b)| [a, b]).collect();
}

/// Whether the gateway's reply `got` to `cmd` is redis-server's `want`, up to the
/// clock differences of the module docs.
fn agree(cmd: &[Vec<u8>], got: &V, want: &V) -> bool {
    let int = |v: &V| match v {
        V::Line(b':', n) => std::str::from_utf8(n).ok()?.parse::<i64>().ok(),
        _ => None,
    };
    let secs = |v: &V| match v {
        V::Agg(_, Some(items)) if items.len() == 2 => match &items[0] {
            V::Bulk(_, Some(s)) => std::str::from_utf8(s).ok()?.parse::<i64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let near = |tol: i64| match (int(got), int(want)) {
        (Some(a), Some(b)) if a >= 0 && b >= 0 => (a - b).abs() <= tol,
        _ => got == want,
    };
    match cmd[0].to_ascii_lowercase().as_slice() {
        b"ttl" => near(1),
        b"pttl" => near(1000),
        // absolute deadlines: the store's clock is the leader's, not redis-server's
        b"expiretime" => near(2),
        b"pexpiretime" => near(2000),
        b"time" if cmd.len() == 1 => {
            matches!((secs(got), secs(want)), (Some(a), Some(b)) if (a - b).abs() <= 2)
        }
        _ => got == want,
    }
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.gen_range(0..from.len())]
}

/// One random command line (see the module docs for what is left out).
fn command(rng: &mut StdRng) -> Vec<Vec<u8>> {
    const KEYS: &[&str] = &["k0", "k1", "k2", "k3", "n", "h", "l", "s", "s2", "z"];
    const VALUES: &[&str] = &[
        "0",
        "1",
        "-1",
        "41",
        "9223372036854775807",
        "-9223372036854775808",
        "abc",
        "",
        "1.5",
        " 2",
        "007",
    ];
    let key = |rng: &mut StdRng| pick(rng, KEYS).to_string();
    let own = |rng: &mut StdRng, mine: &[&str]| {
        if rng.gen_bool(0.6) {
            pick(rng, mine).to_string()
        } else {
            pick(rng, KEYS).to_string()
        }
    };
    let val = |rng: &mut StdRng| pick(rng, VALUES).to_string();
    let int = |rng: &mut StdRng| {
        pick(
            rng,
            &[
                "0",
                "1",
                "-1",
                "3",
                "-3",
                "10",
                "100",
                "x",
                "9223372036854775807",
                "-9223372036854775808",
            ],
        )
        .to_string()
    };
    let keys = |rng: &mut StdRng| {
        (0..rng.gen_range(1..4))
            .map(|_| key(rng))
            .collect::<Vec<_>>()
    };
    let pairs = |rng: &mut StdRng| {
        (0..rng.gen_range(1..3))
            .flat_map(|_| [key(rng), val(rng)])
            .collect::<Vec<_>>()
    };
    // long relative TTLs (none expires during the run), and absolute times in the
    // past or far ahead (2100), in seconds and in milliseconds
    let relative = |rng: &mut StdRng, ms: bool| {
        let amounts: &[&str] = if ms {
            &["100000", "10000000", "0", "-5", "x"]
        } else {
            &["100", "10000", "0", "-5", "x"]
        };
        pick(rng, amounts).to_string()
    };
    let absolute = |rng: &mut StdRng, ms: bool, past: bool| {
        let t = if past {
            pick(rng, &["1", "4102444800", "4102444900", "0", "x"])
        } else {
            pick(rng, &["4102444800", "4102444900", "x"])
        };
        if ms && t.len() > 1 {
            format!("{t}000")
        } else {
            t.to_string()
        }
    };
    let expiry = |rng: &mut StdRng, past: bool| {
        let unit = pick(rng, &["EX", "px", "EXAT", "pxat"]);
        let ms = unit.eq_ignore_ascii_case("px") || unit.eq_ignore_ascii_case("pxat");
        let amount = if unit.len() == 2 {
            relative(rng, ms)
        } else {
            absolute(rng, ms, past)
        };
        [unit.to_string(), amount]
    };
    let mut words: Vec<String> = match rng.gen_range(0..90) {
        0 | 1 => vec!["get".into(), key(rng)],
        // INCRBYFLOAT: long double arithmetic and Redis's %.17Lf formatting
        2 if rng.gen_bool(0.4) => vec!["incrbyfloat".into(), key(rng), float(rng)],
        2 | 3 => {
            let mut w = vec!["set".into(), key(rng), val(rng)];
            for _ in 0..rng.gen_range(0..3) {
                w.push(pick(rng, &["NX", "xx", "GET", "keepttl", "nx", "bogus"]).into());
            }
            w
        }
        4 => vec!["setnx".into(), key(rng), val(rng)],
        5 => vec!["getset".into(), key(rng), val(rng)],
        6 => vec!["getdel".into(), key(rng)],
        7 => vec!["append".into(), key(rng), val(rng)],
        8 => vec!["strlen".into(), key(rng)],
        9 => vec!["getrange".into(), key(rng), int(rng), int(rng)],
        10 => {
            let off = pick(rng, &["0", "1", "5", "-1", "x", "20"]).into();
            vec!["setrange".into(), key(rng), off, val(rng)]
        }
        11 | 12 => vec!["incr".into(), key(rng)],
        13 => vec!["incrby".into(), key(rng), int(rng)],
        14 => vec!["decr".into(), key(rng)],
        15 => vec!["decrby".into(), key(rng), int(rng)],
        16 => [vec!["mget".to_string()], keys(rng)].concat(),
        17 => [vec!["mset".to_string()], pairs(rng)].concat(),
        18 => [vec!["msetnx".to_string()], pairs(rng)].concat(),
        19 => [vec![pick(rng, &["del", "unlink"]).to_string()], keys(rng)].concat(),
        20 => [vec!["exists".to_string()], keys(rng)].concat(),
        21 => vec!["type".into(), key(rng)],
        22 => vec![
            pick(rng, &["rename", "renamenx"]).into(),
            key(rng),
            key(rng),
        ],
        23 => vec![
            "keys".into(),
            pick(rng, &["*", "k*", "k[0-1]", "?", "*1", "n"]).into(),
        ],
        24 => {
            let mut w = vec!["scan".to_string(), "0".into()];
            if rng.gen_bool(0.5) {
                w.extend(["MATCH".into(), pick(rng, &["k*", "*2", "[kn]*"]).into()]);
            }
            w.extend(["COUNT".into(), "1000".into()]);
            if rng.gen_bool(0.3) {
                w.extend([
                    "TYPE".into(),
                    pick(rng, &["string", "hash", "STRING"]).into(),
                ]);
            }
            w
        }
        25 => {
            let bad = pick(rng, &["x", "1 ", "1.5", " 0"]).to_string();
            vec!["scan".into(), bad, "COUNT".into(), int(rng)]
        }
        26 => vec!["dbsize".into()],
        27 if rng.gen_bool(0.2) => vec![pick(rng, &["flushdb", "flushall"]).into()],
        27 => vec!["flushdb".into(), pick(rng, &["bogus", "x"]).into()],
        28 => vec!["ping".into()],
        29 => vec!["echo".into(), val(rng)],
        30 | 31 => {
            let mut w = vec!["set".into(), key(rng), val(rng)];
            w.extend(expiry(rng, false));
            if rng.gen_bool(0.3) {
                w.push(pick(rng, &["NX", "xx", "GET", "keepttl", "PERSIST"]).into());
            }
            w
        }
        32 => {
            let ms = rng.gen_bool(0.5);
            let name = if ms { "psetex" } else { "setex" };
            vec![name.into(), key(rng), relative(rng, ms), val(rng)]
        }
        33 => {
            let mut w = vec!["getex".to_string(), key(rng)];
            match rng.gen_range(0..5) {
                0 => {}
                1 => w.push("persist".into()),
                2 => w.extend(expiry(rng, true)),
                3 => {
                    w.extend(expiry(rng, true));
                    w.push(pick(rng, &["PERSIST", "keepttl"]).into());
                }
                _ => w.push(pick(rng, &["nx", "bogus", "ex"]).into()),
            }
            w
        }
        34 => {
            let ms = rng.gen_bool(0.5);
            let name = if ms { "pexpire" } else { "expire" };
            let mut w = vec![name.to_string(), key(rng), relative(rng, ms)];
            if rng.gen_bool(0.5) {
                w.push(pick(rng, &["NX", "xx", "bogus"]).into());
            }
            w
        }
        35 => {
            let ms = rng.gen_bool(0.5);
            let name = if ms { "pexpireat" } else { "expireat" };
            let mut w = vec![name.to_string(), key(rng), absolute(rng, ms, true)];
            for _ in 0..rng.gen_range(0..3) {
                w.push(pick(rng, &["NX", "xx", "GT", "lt", "bogus"]).into());
            }
            w
        }
        36 | 37 => vec![
            pick(
                rng,
                &["ttl", "pttl", "persist", "expiretime", "pexpiretime"],
            )
            .into(),
            key(rng),
        ],
        38 => vec!["time".into()],
        39 => vec![pick(rng, &["nosuchcmd", "FOO"]).into(), key(rng), val(rng)],
        // each family prefers its own keys, so that its collections grow, and
        // otherwise lands on any key (WRONGTYPE)
        40..=52 => {
            let k = own(rng, &["h"]);
            hash_command(rng, k)
        }
        53..=65 => {
            let k = own(rng, &["l"]);
            list_command(rng, k)
        }
        66..=75 => {
            let k = own(rng, &["s", "s2"]);
            let others = (0..rng.gen_range(1..4))
                .map(|_| own(rng, &["s", "s2"]))
                .collect();
            set_command(rng, k, others)
        }
        _ => {
            let k = own(rng, &["z"]);
            zset_command(rng, k)
        }
    };
    // wrong arities: drop or add a word now and then
    match rng.gen_range(0..25) {
        0 if words.len() > 1 => {
            words.pop();
        }
        1 => words.push(val(rng)),
        _ => {}
    }
    words.into_iter().map(String::into_bytes).collect()
}

/// Small members and field names, so that commands on one collection collide.
const MEMBERS: &[&str] = &["a", "b", "c", "1", "2", "10", "-1", "1.5", ""];

/// Increments and scores: integers, decimals that do not round-trip in binary,
/// exponents, infinities, and what is not a float at all.
fn float(rng: &mut StdRng) -> String {
    pick(
        rng,
        &[
            "0",
            "1",
            "-1",
            "0.1",
            "0.2",
            "1.5",
            "-2.5",
            "1e3",
            "3.0e-2",
            "10",
            "inf",
            "-inf",
            "+inf",
            "x",
            "nan",
            " 1",
            "",
            "0x10",
            "1.1",
            "100000000000000.125",
        ],
    )
    .to_string()
}

fn member(rng: &mut StdRng) -> String {
    pick(rng, MEMBERS).to_string()
}

/// A hash command on `key` (its type collides with the other families).
fn hash_command(rng: &mut StdRng, key: String) -> Vec<String> {
    let field = |rng: &mut StdRng| member(rng);
    let value = |rng: &mut StdRng| {
        pick(rng, &["1", "-3", "x", "1.5", "9223372036854775807", ""]).to_string()
    };
    let mut w = vec![];
    match rng.gen_range(0..14) {
        0 | 1 => {
            w.extend([pick(rng, &["hset", "hmset"]).to_string(), key]);
            for _ in 0..rng.gen_range(1..4) {
                w.extend([field(rng), value(rng)]);
            }
            if rng.gen_bool(0.1) {
                w.pop();
            }
        }
        2 => w.extend(["hsetnx".into(), key, field(rng), value(rng)]),
        3 => w.extend(["hget".into(), key, field(rng)]),
        4 => {
            w.extend(["hmget".into(), key]);
            w.extend((0..rng.gen_range(1..4)).map(|_| field(rng)));
        }
        5 => w.extend([
            pick(rng, &["hgetall", "hkeys", "hvals", "hlen"]).into(),
            key,
        ]),
        6 => {
            w.extend(["hdel".into(), key]);
            w.extend((0..rng.gen_range(1..3)).map(|_| field(rng)));
        }
        7 => w.extend(["hexists".into(), key, field(rng)]),
        8 | 9 => {
            let by = pick(rng, &["1", "-5", "x", "9223372036854775807", "1.5"]).to_string();
            w.extend(["hincrby".into(), key, field(rng), by]);
        }
        10 | 11 => w.extend(["hincrbyfloat".into(), key, field(rng), float(rng)]),
        12 => w.extend(["hstrlen".into(), key, field(rng)]),
        _ => {
            w.extend(["hscan".into(), key, pick(rng, &["0", "0", "x"]).into()]);
            match rng.gen_range(0..4) {
                0 => w.extend(["MATCH".into(), pick(rng, &["*", "1*", "[ab]"]).into()]),
                1 => w.extend(["count".into(), pick(rng, &["100", "0", "x"]).into()]),
                2 => w.push("bogus".into()),
                _ => {}
            }
        }
    }
    w
}

/// A list command on `key`.
fn list_command(rng: &mut StdRng, key: String) -> Vec<String> {
    let idx =
        |rng: &mut StdRng| pick(rng, &["0", "1", "-1", "2", "-3", "10", "-100", "x"]).to_string();
    let mut w = vec![];
    match rng.gen_range(0..14) {
        0..=2 => {
            w.extend([
                pick(rng, &["lpush", "rpush", "LPUSH", "rpushx", "lpushx"]).to_string(),
                key,
            ]);
            w.extend((0..rng.gen_range(1..4)).map(|_| member(rng)));
        }
        3 | 4 => {
            w.extend([pick(rng, &["lpop", "rpop"]).to_string(), key]);
            if rng.gen_bool(0.5) {
                w.push(pick(rng, &["0", "1", "2", "10", "-1", "x"]).into());
            }
        }
        5 | 6 => w.extend(["lrange".into(), key, idx(rng), idx(rng)]),
        7 => w.extend(["llen".into(), key]),
        8 => w.extend(["lindex".into(), key, idx(rng)]),
        9 => w.extend(["lset".into(), key, idx(rng), member(rng)]),
        10 => {
            let count = pick(rng, &["0", "1", "-1", "2", "x"]).to_string();
            w.extend(["lrem".into(), key, count, member(rng)]);
        }
        11 => w.extend(["ltrim".into(), key, idx(rng), idx(rng)]),
        12 => {
            let place = pick(rng, &["BEFORE", "after", "middle"]).to_string();
            w.extend(["linsert".into(), key, place, member(rng), member(rng)]);
        }
        _ => {
            w.extend(["lpos".into(), key, member(rng)]);
            for _ in 0..rng.gen_range(0..3) {
                let opt = pick(rng, &["RANK", "count", "MAXLEN", "bogus"]).to_string();
                w.extend([opt, pick(rng, &["1", "-1", "2", "0", "-2", "x"]).into()]);
            }
        }
    }
    w
}

/// A set command on `key` (and, for the algebra, `others`).
fn set_command(rng: &mut StdRng, key: String, others: Vec<String>) -> Vec<String> {
    let mut w = vec![];
    match rng.gen_range(0..10) {
        0..=2 => {
            w.extend([pick(rng, &["sadd", "srem", "sadd"]).to_string(), key]);
            w.extend((0..rng.gen_range(1..4)).map(|_| member(rng)));
        }
        3 => w.extend([pick(rng, &["smembers", "scard"]).into(), key]),
        4 => w.extend(["sismember".into(), key, member(rng)]),
        5 => {
            w.extend(["smismember".into(), key]);
            w.extend((0..rng.gen_range(1..3)).map(|_| member(rng)));
        }
        6 | 7 => {
            w.push(pick(rng, &["sinter", "sunion", "sdiff"]).into());
            w.extend(others);
        }
        _ => {
            w.extend([
                pick(rng, &["sinterstore", "sunionstore", "sdiffstore"]).to_string(),
                key,
            ]);
            w.extend(others);
        }
    }
    w
}

/// A sorted-set command on `key`.
fn zset_command(rng: &mut StdRng, key: String) -> Vec<String> {
    let bound = |rng: &mut StdRng| {
        pick(
            rng,
            &[
                "-inf", "+inf", "0", "1", "(1", "1.5", "(2.5", "10", "x", "(", "",
            ],
        )
        .to_string()
    };
    let lex = |rng: &mut StdRng| {
        pick(rng, &["-", "+", "[a", "(b", "[1", "(10", "c", "[", "("]).to_string()
    };
    let idx = |rng: &mut StdRng| pick(rng, &["0", "1", "-1", "2", "-2", "10", "x"]).to_string();
    let mut w = vec![];
    match rng.gen_range(0..14) {
        0..=3 => {
            w.extend(["zadd".into(), key]);
            for _ in 0..rng.gen_range(0..3) {
                w.push(pick(rng, &["NX", "xx", "GT", "lt", "CH", "incr"]).into());
            }
            for _ in 0..rng.gen_range(1..3) {
                w.extend([float(rng), member(rng)]);
            }
        }
        4 => w.extend(["zincrby".into(), key, float(rng), member(rng)]),
        5 => {
            w.extend(["zrem".into(), key]);
            w.extend((0..rng.gen_range(1..3)).map(|_| member(rng)));
        }
        6 => w.extend(["zscore".into(), key, member(rng)]),
        7 => w.extend([pick(rng, &["zcard", "zcard"]).into(), key]),
        8 => w.extend([pick(rng, &["zrank", "zrevrank"]).into(), key, member(rng)]),
        9 => w.extend(["zcount".into(), key, bound(rng), bound(rng)]),
        10 | 11 => {
            let by = rng.gen_range(0..3);
            w.extend(["zrange".into(), key]);
            match by {
                0 => w.extend([idx(rng), idx(rng)]),
                1 => w.extend([bound(rng), bound(rng), "BYSCORE".into()]),
                _ => w.extend([lex(rng), lex(rng), "bylex".into()]),
            }
            for _ in 0..rng.gen_range(0..3) {
                match rng.gen_range(0..4) {
                    0 => w.push("REV".into()),
                    1 => w.push("withscores".into()),
                    2 => w.extend(["LIMIT".into(), idx(rng), idx(rng)]),
                    _ => w.push(pick(rng, &["bogus", "byscore"]).into()),
                }
            }
        }
        12 => {
            w.extend([
                pick(rng, &["zrangebyscore", "zrevrangebyscore"]).to_string(),
                key,
                bound(rng),
                bound(rng),
            ]);
            if rng.gen_bool(0.5) {
                w.push("WITHSCORES".into());
            }
            if rng.gen_bool(0.3) {
                w.extend(["limit".into(), idx(rng), idx(rng)]);
            }
        }
        _ => {
            w.extend(["zrevrange".into(), key, idx(rng), idx(rng)]);
            if rng.gen_bool(0.5) {
                w.push("withscores".into());
            }
        }
    }
    w
}

/// The family of a generated command name, for the run's summary.
fn family(name: &[u8]) -> &'static str {
    let name = name.to_ascii_lowercase();
    let strings: &[&[u8]] = &[b"set", b"setnx", b"setex", b"setrange", b"strlen", b"scan"];
    match name.first() {
        Some(b'h') => "hash",
        Some(b'l') => "list",
        Some(b's') if !strings.contains(&name.as_slice()) => "set",
        Some(b'z') => "zset",
        _ => "string/key",
    }
}

fn show(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| format!("{:?}", String::from_utf8_lossy(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `redis-server` on a free port, stopped when dropped.
struct RedisServer(Child, String);

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr = format!("127.0.0.1:{port}");
        common::wait_until(
            "redis-server to accept connections",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || TcpStream::connect(&addr).is_ok(),
        );
        Some(RedisServer(child, addr))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A transaction every this many commands.
const TX_EVERY: usize = 20;

/// Both stores, each with a main and a second connection.
struct Pair {
    real: Conn,
    ours: Conn,
    real2: Conn,
    ours2: Conn,
}

/// The transaction generator and what it found.
struct Tx {
    rng: StdRng,
    /// EXECs that ran, were aborted by a watched key (nil), or by an error.
    ran: usize,
    nil: usize,
    execabort: usize,
}

impl Tx {
    /// Send `cmd` to both (`second`: on the second connections); a mismatch text.
    fn both(p: &mut Pair, cmd: &[Vec<u8>], second: bool) -> (V, Option<String>) {
        let (real, ours) = if second {
            (&mut p.real2, &mut p.ours2)
        } else {
            (&mut p.real, &mut p.ours)
        };
        let want = normalize(cmd, real.call(cmd));
        let got = normalize(cmd, ours.call(cmd));
        let diff = (!agree(cmd, &got, &want)).then(|| {
            format!(
                "{}\n  gateway:      {got}\n  redis-server: {want}",
                show(cmd)
            )
        });
        (want, diff)
    }

    fn words(w: &str) -> Vec<Vec<u8>> {
        w.split(' ').map(|x| x.as_bytes().to_vec()).collect()
    }

    /// One transaction (see the module docs); the first mismatch, if any.
    fn run(&mut self, p: &mut Pair) -> Option<String> {
        const KEYS: &[&str] = &["k0", "k1", "n", "h", "l", "s", "z"];
        let rng = &mut self.rng;
        let watched: Vec<&str> = (0..rng.gen_range(0..3)).map(|_| pick(rng, KEYS)).collect();
        let mut steps: Vec<(Vec<Vec<u8>>, bool)> = Vec::new();
        if !watched.is_empty() {
            steps.push((Self::words(&format!("WATCH {}", watched.join(" "))), false));
        }
        if rng.gen_bool(0.3) {
            steps.push((Self::words(&format!("GET {}", pick(rng, KEYS))), false));
        }
        match rng.gen_range(0..4) {
            0 if !watched.is_empty() => {
                steps.push((Self::words(&format!("SET {} w", watched[0])), true))
            }
            1 => steps.push((Self::words(&format!("SET {} w", pick(rng, KEYS))), true)),
            _ => {}
        }
        steps.push((Self::words("MULTI"), false));
        let mut queued = Vec::new();
        for _ in 0..rng.gen_range(0..5) {
            let cmd = match rng.gen_range(0..20) {
                0 => Self::words("SET k0"),
                1 => Self::words("NOSUCH x"),
                2 => Self::words(pick(rng, &["MULTI", "WATCH k0"])),
                _ => {
                    let c = command(rng);
                    let name = c[0].to_ascii_lowercase();
                    if matches!(
                        name.as_slice(),
                        b"time" | b"ttl" | b"pttl" | b"expiretime" | b"pexpiretime"
                    ) {
                        continue;
                    }
                    queued.push(c.clone());
                    c
                }
            };
            steps.push((cmd, false));
        }
        for (cmd, second) in steps {
            if let (_, Some(diff)) = Self::both(p, &cmd, second) {
                // leave both connections out of the transaction
                for c in [&mut p.real, &mut p.ours] {
                    c.call(&Self::words("DISCARD"));
                    c.call(&Self::words("UNWATCH"));
                }
                return Some(diff);
            }
        }
        let end = if self.rng.gen_bool(0.85) {
            "EXEC"
        } else {
            "DISCARD"
        };
        let cmd = Self::words(end);
        let want = p.real.call(&cmd);
        let got = p.ours.call(&cmd);
        let each = |v: V| match v {
            V::Agg(k, Some(items)) if items.len() == queued.len() => V::Agg(
                k,
                Some(
                    queued
                        .iter()
                        .zip(items)
                        .map(|(c, i)| normalize(c, i))
                        .collect(),
                ),
            ),
            other => other,
        };
        let (want, got) = (each(want), each(got));
        match &want {
            V::Agg(_, Some(_)) if end == "EXEC" => self.ran += 1,
            V::Agg(_, None) | V::Line(b'_', _) => self.nil += 1,
            V::Line(b'-', e) if e.starts_with(b"EXECABORT") => self.execabort += 1,
            _ => {}
        }
        (got != want)
            .then(|| format!("{end} of {queued:?}\n  gateway:      {got}\n  redis-server: {want}"))
    }
}

#[test]
fn gateway_replies_match_a_real_redis_server() {
    let Some(redis) = RedisServer::start() else {
        eprintln!("SKIPPED: redis-server is not on the PATH (apt-get install redis-server)");
        return;
    };
    let v = common::run_json(["cluster", "--duration", "0", "--keep", "--json"]);
    let _kill = Kill::cluster(&v);
    let gateway = v["redis"].as_str().unwrap().to_string();
    let seed = env_or("REDIS_DIFF_SEED", SEED);
    let commands = env_or("REDIS_DIFF_COMMANDS", COMMANDS);
    let mut rng = StdRng::seed_from_u64(seed);
    // what the run exercised: replies per command name's family, WRONGTYPE replies
    let mut wrongtype = 0usize;
    let mut families: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut index = 0;
    let started = std::time::Instant::now();
    let mut mismatches: Vec<String> = Vec::new();
    let mut tx = Tx {
        rng: StdRng::seed_from_u64(seed ^ 0x7478),
        ran: 0,
        nil: 0,
        execabort: 0,
    };
    for proto in ["2", "3"] {
        let mut p = Pair {
            real: Conn::open(&redis.1),
            ours: Conn::open(&gateway),
            real2: Conn::open(&redis.1),
            ours2: Conn::open(&gateway),
        };
        for c in [&mut p.real2, &mut p.ours2] {
            c.call(&[b"HELLO".to_vec(), proto.as_bytes().to_vec()]);
        }
        let Pair { real, ours, .. } = &mut p;
        for c in [&mut *real, &mut *ours] {
            let hello = c.call(&[b"HELLO".to_vec(), proto.as_bytes().to_vec()]);
            let kind = if proto == "3" { b'%' } else { b'*' };
            assert!(
                matches!(hello, V::Agg(k, Some(_)) if k == kind),
                "{hello:?}"
            );
            let flushed = c.call(&[b"FLUSHALL".to_vec()]);
            assert_eq!(flushed, V::Line(b'+', b"OK".to_vec()));
        }
        for i in 0..commands {
            if i % TX_EVERY == TX_EVERY - 1 {
                if let Some(diff) = tx.run(&mut p) {
                    let text = format!(
                        "seed {seed}, transaction after command {index} (RESP{proto}): {diff}"
                    );
                    if mismatches.len() < 20 {
                        eprintln!("{text}");
                    }
                    mismatches.push(text);
                }
            }
            let Pair { real, ours, .. } = &mut p;
            let cmd = command(&mut rng);
            let want = normalize(&cmd, real.call(&cmd));
            if matches!(&want, V::Line(b'-', e) if e.starts_with(b"WRONGTYPE")) {
                wrongtype += 1;
            }
            let family = family(&cmd[0]);
            *families.entry(family).or_default() += 1;
            let got = normalize(&cmd, ours.call(&cmd));
            if !agree(&cmd, &got, &want) {
                let text = format!(
                    "seed {seed}, command {index} (RESP{proto}): {}\n  gateway:      {got}\n  redis-server: {want}",
                    show(&cmd)
                );
                if mismatches.len() < 20 {
                    eprintln!("{text}");
                }
                mismatches.push(text);
            }
            index += 1;
        }
    }
    eprintln!(
        "redis differential: {index} commands compared (seed {seed}), {} mismatches, {:.1} s; {wrongtype} WRONGTYPE replies; by family {families:?}; transactions: {} ran, {} nil (watch), {} EXECABORT",
        mismatches.len(),
        started.elapsed().as_secs_f64(),
        tx.ran,
        tx.nil,
        tx.execabort
    );
    assert!(
        tx.ran > 0 && tx.nil > 0 && tx.execabort > 0,
        "transactions: {} ran, {} nil, {} EXECABORT",
        tx.ran,
        tx.nil,
        tx.execabort
    );
    // the first mismatch is the one to look at: later ones may follow from it (the
    // stores' states differ from then on)
    assert!(
        mismatches.is_empty(),
        "{} of {index} replies differ; the first:\n{}",
        mismatches.len(),
        mismatches[0]
    );
}
