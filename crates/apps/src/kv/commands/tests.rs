//! Tests of the string and key commands of the table.

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
    // the deadline itself, Unix time
    let deadline = db.now() as i64 + 1500;
    assert_eq!(call(&mut db, &["pexpiretime", "k"]), int(deadline));
    assert_eq!(
        call(&mut db, &["expiretime", "k"]),
        int((deadline + 500) / 1000)
    );
    assert_eq!(call(&mut db, &["expiretime", "nokey"]), int(-2));
    assert_eq!(call(&mut db, &["set", "p", "v"]), KvReply::Ok);
    assert_eq!(call(&mut db, &["pexpiretime", "p"]), int(-1));
    assert_eq!(call(&mut db, &["del", "p"]), int(1));
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

#[test]
fn getrange_clamps_as_redis_does() {
    // the replies of redis-server 7.0.15 for "abc"
    let mut db = Model::new();
    assert_eq!(call(&mut db, &["set", "k", "abc"]), KvReply::Ok);
    for (start, end, want) in [
        ("0", "-10", "a"),
        ("-1", "-5", ""),
        ("5", "10", ""),
        ("-10", "1", "ab"),
        ("1", "-1", "bc"),
        ("-2", "-3", ""),
        ("2", "0", ""),
    ] {
        let got = call(&mut db, &["getrange", "k", start, end]);
        assert_eq!(got, KvReply::Bulk(want.into()), "{start} {end}");
    }
    let missing = call(&mut db, &["getrange", "nokey", "0", "-1"]);
    assert_eq!(missing, KvReply::Bulk(Vec::new()));
}
