//! Tests of transactions: `WATCH` versions and `EXEC`.

use super::super::tests::op as any_op;
use super::*;
use crate::kv::KvStore;
use byzscale_core::service::Service;
use proptest::prelude::*;

fn line(words: &str) -> Vec<Vec<u8>> {
    words.split(' ').map(|w| w.as_bytes().to_vec()).collect()
}

fn call(words: &str) -> KvOp {
    KvOp::Call(line(words))
}

fn exec(watch: &[(&str, u64)], cmds: &[&str]) -> KvOp {
    KvOp::Exec {
        watch: watch
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), *v))
            .collect(),
        cmds: cmds.iter().map(|c| line(c)).collect(),
    }
}

/// `WATCH key` on `m`: the version it answers.
fn watch(m: &Model, key: &str) -> u64 {
    match m.read(&KvOp::Watch(vec![key.as_bytes().to_vec()])) {
        Some(KvReply::List(v)) => match v.as_slice() {
            [KvReply::Int(n)] => *n as u64,
            other => panic!("WATCH answered {other:?}"),
        },
        other => panic!("WATCH answered {other:?}"),
    }
}

/// The reply of an `EXEC` that reads `key`, watched just before: it runs.
fn fresh_get(m: &mut Model, key: &str) -> KvReply {
    let v = watch(m, key);
    m.apply(&exec(&[(key, v)], &[&format!("get {key}")]))
}

/// A store with a string `s`, a hash `h`, a list `l`, a set `st`, a sorted set
/// `z`, and `t` with a TTL, at time 1000.
fn store() -> Model {
    let mut m = Model::new();
    m.advance(1000);
    for c in [
        "set s 1",
        "hset h f v",
        "rpush l a b",
        "sadd st a",
        "zadd z 1 a",
        "set t v px 500",
    ] {
        assert!(!m.apply(&call(c)).is_error(), "{c}");
    }
    m
}

#[test]
fn exec_runs_the_commands_in_order_and_replies_with_their_replies() {
    let mut m = store();
    let r = m.apply(&exec(
        &[],
        &["incr s", "get s", "lpush s x", "set n 5", "nosuch a"],
    ));
    assert_eq!(
        r,
        KvReply::List(vec![
            KvReply::Int(2),
            KvReply::Bulk(b"2".to_vec()),
            KvReply::Error(crate::kv::ERR_WRONGTYPE.into()),
            KvReply::Ok,
            KvReply::Error("ERR unknown command 'nosuch', with args beginning with: 'a' ".into()),
        ]),
        "an error inside EXEC is an element; the other commands still run"
    );
    assert_eq!(m.get(b"n"), Some(&b"5"[..]));
    assert_eq!(m.apply(&exec(&[], &[])), KvReply::List(vec![]));
    assert!(
        !exec(&[], &["get s"]).is_read_only(),
        "EXEC is always ordered"
    );
}

#[test]
fn every_kind_of_write_to_a_watched_key_makes_exec_fail() {
    let writes = [
        ("s", "set s 2"),
        ("s", "incr s"),
        ("s", "append s x"),
        ("s", "del s"),
        ("s", "expire s 100"),
        ("s", "rename s s2"),
        ("s2", "rename s s2"),
        ("s", "mset a 1 s 3"),
        ("h", "hset h f w"),
        ("h", "hdel h f"),
        ("l", "lpop l"),
        ("l", "ltrim l 5 6"),
        ("st", "srem st a"),
        ("st", "sunionstore st st"),
        ("z", "zincrby z 1 a"),
        ("z", "zrem z a"),
        ("t", "persist t"),
        ("h", "flushdb"),
        ("s", "flushall"),
        // a no-op write counts too (Redis would run the EXEC)
        ("s", "setnx s 9"),
        ("gone", "del gone"),
    ];
    for (key, write) in writes {
        let mut m = store();
        let v = watch(&m, key);
        assert_eq!(watch(&m, key), v, "WATCH changes nothing");
        m.apply(&call(write));
        let before = m.clone();
        let r = m.apply(&exec(&[(key, v)], &["set done 1"]));
        assert_eq!(
            r,
            KvReply::NilArray,
            "{write} must abort an EXEC watching {key}"
        );
        assert_eq!(m, before, "an aborted EXEC applies nothing");
    }
}

#[test]
fn reads_and_other_keys_leave_a_watch_alone() {
    let mut m = store();
    let (vs, vn) = (watch(&m, "s"), watch(&m, "nokey"));
    for read in [
        "get s",
        "exists s nokey",
        "ttl s",
        "type s",
        "keys *",
        "mget s nokey",
    ] {
        m.apply(&call(read));
    }
    for write in ["set other 1", "del other", "hset h g 1", "flushdb"] {
        let mut m = m.clone();
        m.apply(&call(write));
        if write == "flushdb" {
            // FLUSHDB touches the keys present, not the missing one
            assert_eq!(m.version(b"nokey"), vn);
            continue;
        }
        let r = m.apply(&exec(&[("s", vs), ("nokey", vn)], &["incr s"]));
        assert_eq!(r, KvReply::List(vec![KvReply::Int(2)]), "after {write}");
    }
    // the EXEC's own writes count for the next WATCH
    m.apply(&exec(&[("s", vs)], &["incr s"]));
    assert_eq!(m.apply(&exec(&[("s", vs)], &["incr s"])), KvReply::NilArray);
    assert_eq!(
        fresh_get(&mut m, "s"),
        KvReply::List(vec![KvReply::Bulk(b"2".to_vec())])
    );
}

#[test]
fn expiry_and_deletion_then_recreation_make_exec_fail() {
    let mut m = store();
    let v = watch(&m, "t");
    m.advance(1400);
    assert!(m.value(b"t").is_some());
    assert_eq!(watch(&m, "t"), v, "the clock alone changes nothing");
    m.advance(1600);
    assert!(m.value(b"t").is_none(), "expired");
    assert_eq!(m.apply(&exec(&[("t", v)], &["get t"])), KvReply::NilArray);

    // deleted and set again to the same value: still a change
    let v = watch(&m, "s");
    m.apply(&call("del s"));
    m.apply(&call("set s 1"));
    assert_eq!(m.apply(&exec(&[("s", v)], &["get s"])), KvReply::NilArray);
    // a version from the future (a Byzantine client) never matches
    let v = watch(&m, "s");
    assert_eq!(
        m.apply(&exec(&[("s", v + 1)], &["get s"])),
        KvReply::NilArray
    );
}

#[test]
fn a_full_table_is_forgotten_without_lowering_any_version() {
    let mut m = Model::new();
    for _ in 0..5 {
        m.apply(&call("incr hot"));
    }
    m.apply(&call("set w 1"));
    let w = watch(&m, "w");
    let big = "k".repeat(1 << 20);
    let mut last = 0;
    for i in 0..20 {
        m.apply(&KvOp::Set(format!("{big}{i}").into_bytes(), b"v".to_vec()));
        assert!(m.versions().bytes <= MAX_VERSION_BYTES);
        assert!(m.version(b"w") >= w && m.version(b"hot") >= 5);
        let v = m.version(format!("{big}0").as_bytes());
        assert!(v >= last, "a version went down");
        last = v;
    }
    assert_eq!(
        m.versions().floor,
        5,
        "forgotten: the floor is the largest version"
    );
    // conservative: the untouched watched key now fails the EXEC once
    assert_eq!(m.apply(&exec(&[("w", w)], &["get w"])), KvReply::NilArray);
    assert_eq!(
        fresh_get(&mut m, "w"),
        KvReply::List(vec![KvReply::Bulk(b"1".to_vec())])
    );
}

#[test]
fn versions_survive_snapshots_and_version_2_snapshots_still_restore() {
    let mut s = KvStore::new();
    for c in ["set a 1", "del a", "set b 2", "incr b"] {
        s.apply(&call(c));
    }
    let snap = s.snapshot();
    let mut t = KvStore::new();
    t.restore(&snap).unwrap();
    assert_eq!(t, s);
    assert_eq!(t.model().version(b"a"), 2);
    assert_eq!(t.model().version(b"b"), 2);
    // what version 2 wrote: no versions
    let m = s.model();
    let v2 = crate::snapshot::encode(*b"BZKV", 2, &(m.now(), m.map(), &m.ttl));
    let mut u = KvStore::new();
    u.restore(&v2).unwrap();
    assert_eq!(u.model().map(), m.map());
    assert_eq!(u.model().version(b"b"), 0);
    // versions at or under the floor are not canonical
    let bad = crate::snapshot::encode(
        *b"BZKV",
        3,
        &(m.now(), m.map(), &m.ttl, (5u64, [(b"a".to_vec(), 5u64)])),
    );
    assert!(u.restore(&bad).is_err());
}

#[test]
fn display_shows_watches_and_commands() {
    let op = exec(&[("k", 3)], &["set k v", "get k"]);
    assert_eq!(op.to_string(), "EXEC WATCH k=3 [SET k v; GET k]");
    assert_eq!(KvOp::Watch(vec![b"a".to_vec()]).to_string(), "WATCH a");
    assert_eq!(
        op.keys(),
        vec![&b"k"[..], &b"k"[..], &b"k"[..]],
        "watched keys, then the commands' keys"
    );
    assert!(exec(&[], &["flushdb"]).touches_all_keys());
}

proptest! {
    /// `to_args` gives back the command line an operation parses from (the
    /// sharded store sends restricted operations inside an `EXEC` as lines).
    #[test]
    fn to_args_inverts_from_args(op in any_op()) {
        let line = op.to_args();
        if let Ok(parsed) = KvOp::from_args(&line) {
            prop_assert_eq!(KvOp::from_args(&parsed.to_args()), Ok(parsed.clone()));
            if !matches!(op, KvOp::Call(_)) {
                prop_assert_eq!(parsed, op);
            }
        }
    }

    /// No missed change: after any operation, every key's version is at least what
    /// it was, and larger for every key a write named (all for a whole-store
    /// write of a present key).
    #[test]
    fn versions_grow_with_every_write(ops in prop::collection::vec(any_op(), 0..40)) {
        let mut m = Model::new();
        let mut seen: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for op in &ops {
            let before = m.clone();
            let read_only = op.is_read_only();
            let reply = m.apply(op);
            let mut keys: Vec<Vec<u8>> = op.keys().iter().map(|k| k.to_vec()).collect();
            keys.extend(before.map().keys().cloned());
            keys.extend(seen.keys().cloned());
            for k in keys {
                let (old, new) = (before.version(&k), m.version(&k));
                prop_assert!(new >= old);
                let named = op.keys().contains(&k.as_slice())
                    || (op.touches_all_keys() && before.value(&k).is_some());
                let exec = matches!(op, KvOp::Exec { .. });
                if !read_only && !exec && named && !reply.is_error() {
                    prop_assert!(new > old, "{} did not change {:?}", op, k);
                }
                if before.value(&k) != m.value(&k) || before.deadline(&k) != m.deadline(&k) {
                    prop_assert!(new > old, "{} changed {:?} unseen", op, k);
                }
                seen.insert(k, new);
            }
        }
    }
}
