//! Tests of the KV store: the typed operations, snapshots, and proptests of
//! replica agreement, queries and restore over every family.

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
        let entries: Vec<(Vec<u8>, Value)> = entries
            .into_iter()
            .map(|(k, v)| (k, Value::Str(v)))
            .collect();
        crate::snapshot::encode(MAGIC, SNAPSHOT_VERSION_2, &(10u64, entries, ttls))
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

#[test]
fn typed_snapshots_round_trip_and_only_canonical_ones_restore() {
    let mut s = KvStore::new();
    s.begin_batch(BatchCtx {
        slot: 0,
        time_ms: 1_000,
    });
    for line in [
        &["hset", "h", "f", "v", "g", "w"][..],
        &["rpush", "l", "x", "y", "x"],
        &["sadd", "s", "b", "a"],
        &["zadd", "z", "1.5", "m", "-inf", "n", "-0", "o"],
        &["set", "str", "v"],
        &["pexpire", "z", "100"],
    ] {
        assert!(!run(&mut s, KvOp::Call(ks(line))).is_error(), "{line:?}");
    }
    let snap = s.snapshot();
    let mut t = KvStore::new();
    t.restore(&snap).unwrap();
    assert_eq!(t, s);
    assert_eq!(t.snapshot(), snap);
    let zrange = KvOp::Call(ks(&["zrange", "z", "0", "-1", "withscores"]));
    assert_eq!(run(&mut t, zrange.clone()), run(&mut s, zrange));
    // hostile bodies: each is what encoding never writes
    let body = |v: Value| {
        crate::snapshot::encode(
            MAGIC,
            SNAPSHOT_VERSION_2,
            &(0u64, vec![(b("k"), v)], Vec::<(Vec<u8>, u64)>::new()),
        )
    };
    #[derive(Serialize)]
    enum Raw {
        Str(Vec<u8>),
        Hash(Vec<(Vec<u8>, Vec<u8>)>),
        List(Vec<Vec<u8>>),
        Set(Vec<Vec<u8>>),
        ZSet(Vec<(Vec<u8>, u64)>),
    }
    let raw = |v: Raw| {
        crate::snapshot::encode(
            MAGIC,
            SNAPSHOT_VERSION_2,
            &(0u64, vec![(b("k"), v)], Vec::<(Vec<u8>, u64)>::new()),
        )
    };
    assert!(KvStore::new().restore(&body(Value::Str(b("v")))).is_ok());
    assert!(KvStore::new().restore(&raw(Raw::Str(b("v")))).is_ok());
    let big = vec![0u8; MAX_COLLECTION_BYTES];
    for bad in [
        raw(Raw::Hash(vec![])),
        raw(Raw::List(vec![])),
        raw(Raw::Set(vec![])),
        raw(Raw::ZSet(vec![])),
        raw(Raw::Set(vec![b("b"), b("a")])),
        raw(Raw::Set(vec![b("a"), b("a")])),
        raw(Raw::Hash(vec![(b("b"), b("1")), (b("a"), b("1"))])),
        raw(Raw::ZSet(vec![(b("a"), f64::NAN.to_bits())])),
        raw(Raw::ZSet(vec![(b("a"), (-0.0f64).to_bits())])),
        raw(Raw::List(vec![big])),
    ] {
        let mut t = s.clone();
        assert!(t.restore(&bad).is_err());
        assert_eq!(t, s);
    }
    // a version 1 snapshot (strings only) is refused, not misread
    let mut v1 = snap.clone();
    v1[4] = 1;
    assert!(KvStore::new().restore(&v1).is_err());
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
        family_call(),
        family_call(),
        keys().prop_map(KvOp::Watch),
        exec(),
    ]
}
/// An `EXEC` watching some keys at small versions, of well-formed and other lines.
fn exec() -> impl Strategy<Value = KvOp> {
    let line = || {
        prop_oneof![call(), family_call()].prop_map(|op| match op {
            KvOp::Call(line) => line,
            _ => Vec::new(),
        })
    };
    (
        prop::collection::vec((key(), 0u64..3), 0..3),
        prop::collection::vec(line(), 0..4),
    )
        .prop_map(|(watch, cmds)| KvOp::Exec { watch, cmds })
}
/// A well-formed command of the hash, list, set or sorted-set family (or one that
/// moves or expires a key), over the shared keys so that types collide.
fn family_call() -> impl Strategy<Value = KvOp> {
    let member = || prop::sample::select(vec!["a", "b", "c", "1", "2.5", ""]);
    let num = || prop::sample::select(vec!["0", "1", "-1.5", "inf", "1e3", "0.1", "-2"]);
    let k = || key().prop_map(|k| String::from_utf8_lossy(&k).into_owned());
    let line = |w: Vec<String>| KvOp::Call(w.into_iter().map(String::into_bytes).collect());
    prop_oneof![
        (k(), member(), member()).prop_map(move |(k, f, v)| line(vec![
            "hset".into(),
            k,
            f.into(),
            v.into()
        ])),
        (k(), member(), num()).prop_map(move |(k, f, n)| line(vec![
            "hincrbyfloat".into(),
            k,
            f.into(),
            n.into()
        ])),
        (k(), member()).prop_map(move |(k, f)| line(vec!["hdel".into(), k, f.into()])),
        (k(), member(), member()).prop_map(move |(k, a, b)| line(vec![
            "rpush".into(),
            k,
            a.into(),
            b.into()
        ])),
        (k(), member()).prop_map(move |(k, a)| line(vec!["lpush".into(), k, a.into()])),
        (k(), num()).prop_map(move |(k, n)| line(vec![
            "lpop".into(),
            k,
            n.trim_start_matches('-').into()
        ])),
        (k(), member(), member()).prop_map(move |(k, a, b)| line(vec![
            "sadd".into(),
            k,
            a.into(),
            b.into()
        ])),
        (k(), member()).prop_map(move |(k, a)| line(vec!["srem".into(), k, a.into()])),
        (k(), k(), k()).prop_map(move |(d, a, b)| line(vec!["sunionstore".into(), d, a, b])),
        (k(), num(), member()).prop_map(move |(k, n, m)| line(vec![
            "zadd".into(),
            k,
            n.into(),
            m.into()
        ])),
        (k(), num(), member()).prop_map(move |(k, n, m)| line(vec![
            "zincrby".into(),
            k,
            n.into(),
            m.into()
        ])),
        (k(), member()).prop_map(move |(k, m)| line(vec!["zrem".into(), k, m.into()])),
        k().prop_map(move |k| line(vec![
            "zrange".into(),
            k,
            "0".into(),
            "-1".into(),
            "withscores".into()
        ])),
        k().prop_map(move |k| line(vec!["hgetall".into(), k])),
        k().prop_map(move |k| line(vec!["smembers".into(), k])),
        k().prop_map(move |k| line(vec!["lrange".into(), k, "0".into(), "-1".into()])),
        k().prop_map(move |k| line(vec!["type".into(), k])),
        (k(), k()).prop_map(move |(a, b)| line(vec!["rename".into(), a, b])),
        k().prop_map(move |k| line(vec!["pexpire".into(), k, "1500".into()])),
        k().prop_map(move |k| line(vec!["incrbyfloat".into(), k, "0.1".into()])),
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
                "nx", "xx", "get", "ex", "px", "exat", "pxat", "keepttl", "persist", "gt", "lt",
                "match", "count", "type", "*", "2", "-3", "100", "1500",
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
        assert!(
            self.map.values().all(|v| !v.is_empty_collection()),
            "an empty collection stays"
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
        bytes.push(SNAPSHOT_VERSION);
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
