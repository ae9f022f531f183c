//! The service at the target groups: a deterministic KV store sharded by key.
//!
//! Key `k` lives in target group `shard_of(k)` (BLAKE3 of the key modulo the
//! number of targets). A multi-key operation is multicast to the groups owning
//! its keys; each destination runs [`restrict`]ed to its own keys when it
//! a-delivers the message, and the client [`merge`]s the per-group replies. As
//! ByzCast orders all messages with a common destination consistently (and the
//! order is acyclic), MSET/MGET across shards are atomic.
//!
//! The other commands ([`KvOp::Call`]) run on the shard of their keys. One whose keys
//! live on several shards (`RENAME`, `MSETNX`, ...) is refused by [`refusal`] with
//! Redis Cluster's `CROSSSLOT` error before it is sent, rather than travelling as one
//! multicast: unlike MSET, its outcome on one shard depends on the keys of another
//! (whether the source exists, whether any key exists), which a per-shard [`restrict`]
//! cannot decide. The whole-store commands `KEYS`, `DBSIZE`, `FLUSHDB` and `FLUSHALL`
//! go to every target as one multicast and are [`merge`]d (keys concatenated in key
//! order, sizes summed); `SCAN` is refused (its cursor would have to span shards).

use crate::message::Results;
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_core::crypto::digest;
use byzscale_core::GroupId;
use std::collections::{BTreeMap, BTreeSet};

/// The target group (`GroupId(0..targets)`) owning `key`.
pub fn shard_of(key: &[u8], targets: usize) -> GroupId {
    let d = digest(key);
    let mut w = [0u8; 8];
    w.copy_from_slice(&d[..8]);
    GroupId((u64::from_le_bytes(w) % targets.max(1) as u64) as u32)
}

/// Redis Cluster's error for a command whose keys live on several shards.
pub const ERR_CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// The reply to give at once, without sending, to an operation the sharded store does
/// not run: a [`KvOp::Call`] whose keys span shards, or `SCAN`.
pub fn refusal(op: &KvOp, targets: usize) -> Option<KvReply> {
    let KvOp::Call(args) = op else {
        return None;
    };
    if args
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"scan"))
    {
        return Some(KvReply::Error(
            "ERR SCAN is not supported on the ByzCast-sharded store yet (use KEYS)".into(),
        ));
    }
    (!op.touches_all_keys() && groups_of(op, targets).len() > 1)
        .then(|| KvReply::Error(ERR_CROSSSLOT.into()))
}

/// The groups an operation must reach (PING and other keyless commands go to the
/// first target, whole-store commands to every target).
pub fn groups_of(op: &KvOp, targets: usize) -> Vec<GroupId> {
    if op.touches_all_keys() {
        return (0..targets.max(1) as u32).map(GroupId).collect();
    }
    let mut g: BTreeSet<GroupId> = op.keys().iter().map(|k| shard_of(k, targets)).collect();
    if g.is_empty() {
        g.insert(GroupId(0));
    }
    g.into_iter().collect()
}

/// The part of `op` that group `g` executes, `None` if none of its keys live there.
pub fn restrict(op: &KvOp, g: GroupId, targets: usize) -> Option<KvOp> {
    let mine = |k: &Vec<u8>| shard_of(k, targets) == g;
    let keys = |ks: &Vec<Vec<u8>>| -> Option<Vec<Vec<u8>>> {
        let v: Vec<Vec<u8>> = ks.iter().filter(|k| mine(k)).cloned().collect();
        (!v.is_empty()).then_some(v)
    };
    match op {
        KvOp::Get(k) | KvOp::Set(k, _) | KvOp::Incr(k) => mine(k).then(|| op.clone()),
        KvOp::Del(ks) => keys(ks).map(KvOp::Del),
        KvOp::Exists(ks) => keys(ks).map(KvOp::Exists),
        KvOp::MGet(ks) => keys(ks).map(KvOp::MGet),
        KvOp::MSet(kvs) => {
            let v: Vec<_> = kvs.iter().filter(|(k, _)| mine(k)).cloned().collect();
            (!v.is_empty()).then_some(KvOp::MSet(v))
        }
        KvOp::Ping => Some(KvOp::Ping),
        KvOp::Call(_) if op.touches_all_keys() => Some(op.clone()),
        KvOp::Call(_) => {
            let keys = op.keys();
            let here = if keys.is_empty() {
                g == GroupId(0)
            } else {
                keys.iter().all(|k| shard_of(k, targets) == g)
            };
            here.then(|| op.clone())
        }
    }
}

/// Combine the per-group replies of `op` into the reply one unsharded store gives.
pub fn merge(op: &KvOp, results: &Results, targets: usize) -> KvReply {
    let mut replies: BTreeMap<GroupId, KvReply> = BTreeMap::new();
    for g in groups_of(op, targets) {
        if restrict(op, g, targets).is_none() && !matches!(op, KvOp::Ping | KvOp::Call(_)) {
            continue;
        }
        let r = match results.get(&g).map(|b| KvReply::decode(b)) {
            Some(Ok(r)) => r,
            Some(Err(_)) => return KvReply::Error(format!("ERR undecodable reply from group {g}")),
            None => return KvReply::Error(format!("ERR no reply from group {g}")),
        };
        if r.is_error() {
            return r;
        }
        replies.insert(g, r);
    }
    match op {
        KvOp::Call(_) if op.touches_all_keys() => merge_whole_store(replies),
        KvOp::Get(_) | KvOp::Set(..) | KvOp::Incr(_) | KvOp::Ping | KvOp::Call(_) => replies
            .into_values()
            .next()
            .unwrap_or(KvReply::Error("ERR no reply".into())),
        KvOp::Del(_) | KvOp::Exists(_) => {
            let mut sum = 0i64;
            for r in replies.values() {
                match r {
                    KvReply::Int(i) => sum += i,
                    other => return KvReply::Error(format!("ERR unexpected reply {other}")),
                }
            }
            KvReply::Int(sum)
        }
        KvOp::MSet(_) => {
            if replies.values().all(|r| *r == KvReply::Ok) {
                KvReply::Ok
            } else {
                KvReply::Error("ERR unexpected MSET reply".into())
            }
        }
        KvOp::MGet(ks) => {
            let mut cursors: BTreeMap<GroupId, std::vec::IntoIter<Option<Vec<u8>>>> =
                BTreeMap::new();
            for (g, r) in replies {
                match r {
                    KvReply::Array(a) => {
                        cursors.insert(g, a.into_iter());
                    }
                    other => return KvReply::Error(format!("ERR unexpected reply {other}")),
                }
            }
            let mut out = Vec::with_capacity(ks.len());
            for k in ks {
                let g = shard_of(k, targets);
                match cursors.get_mut(&g).and_then(|c| c.next()) {
                    Some(v) => out.push(v),
                    None => return KvReply::Error("ERR short MGET reply".into()),
                }
            }
            KvReply::Array(out)
        }
    }
}

/// Combine the per-shard replies of `KEYS`, `DBSIZE`, `FLUSHDB`, `FLUSHALL`.
fn merge_whole_store(replies: BTreeMap<GroupId, KvReply>) -> KvReply {
    let mut keys: Option<Vec<Option<Vec<u8>>>> = None;
    let mut sum: Option<i64> = None;
    for r in replies.into_values() {
        match r {
            KvReply::Ok => {}
            KvReply::Int(i) => *sum.get_or_insert(0) += i,
            KvReply::Array(a) => keys.get_or_insert_with(Vec::new).extend(a),
            other => return KvReply::Error(format!("ERR unexpected reply {other}")),
        }
    }
    match (keys, sum) {
        (Some(mut k), None) => {
            k.sort();
            KvReply::Array(k)
        }
        (None, Some(n)) => KvReply::Int(n),
        (None, None) => KvReply::Ok,
        (Some(_), Some(_)) => KvReply::Error("ERR mixed replies from the shards".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_apps::kv::KvStore;

    #[test]
    fn sharded_execution_matches_one_store() {
        let t = 3;
        let keys: Vec<Vec<u8>> = (0..12).map(|i| format!("k{i}").into_bytes()).collect();
        let ops = vec![
            KvOp::MSet(keys.iter().map(|k| (k.clone(), k.clone())).collect()),
            KvOp::Incr(keys[0].clone()),
            KvOp::Set(keys[1].clone(), b"x".to_vec()),
            KvOp::MGet(keys.clone()),
            KvOp::Del(vec![keys[2].clone(), keys[5].clone(), keys[2].clone()]),
            KvOp::Exists(keys.clone()),
            KvOp::Get(keys[3].clone()),
            KvOp::Ping,
        ];
        let call = |words: &[&str]| KvOp::from_args(words).unwrap();
        let same_shard: Vec<&Vec<u8>> = keys
            .iter()
            .filter(|k| shard_of(k, t) == shard_of(&keys[0], t))
            .collect();
        assert!(same_shard.len() >= 2);
        let (a, b) = (
            String::from_utf8_lossy(same_shard[0]).into_owned(),
            String::from_utf8_lossy(same_shard[1]).into_owned(),
        );
        let ops = [
            ops,
            vec![
                call(&["APPEND", &a, "!"]),
                call(&["SET", &b, "v", "GET"]),
                call(&["RENAME", &a, &b]),
                call(&["MSETNX", &a, "1", &b, "2"]),
                call(&["KEYS", "k1*"]),
                call(&["DBSIZE"]),
                call(&["TYPE", &b]),
                call(&["FLUSHDB"]),
                call(&["DBSIZE"]),
            ],
        ]
        .concat();
        let mut one = KvStore::new();
        let mut shards: Vec<KvStore> = (0..t).map(|_| KvStore::new()).collect();
        for op in &ops {
            let want = one.apply(op);
            let mut res = Results::new();
            for g in groups_of(op, t) {
                if let Some(sub) = restrict(op, g, t) {
                    res.insert(g, shards[g.0 as usize].apply(&sub).encode());
                }
            }
            assert_eq!(merge(op, &res, t), want, "{op}");
        }
        // keys spread over more than one shard
        assert!(groups_of(&ops[0], t).len() > 1);
        assert_eq!(groups_of(&call(&["FLUSHALL"]), t).len(), t);
    }

    #[test]
    fn commands_over_several_shards_are_refused_with_crossslot() {
        let t = 2;
        let (mut a, mut b) = (None, None);
        for i in 0.. {
            let k = format!("k{i}");
            match shard_of(k.as_bytes(), t).0 {
                0 if a.is_none() => a = Some(k),
                1 if b.is_none() => b = Some(k),
                _ => {}
            }
            if a.is_some() && b.is_some() {
                break;
            }
        }
        let (a, b) = (a.unwrap(), b.unwrap());
        let call = |words: &[&str]| KvOp::from_args(words).unwrap();
        let crossslot = Some(KvReply::Error(ERR_CROSSSLOT.into()));
        assert_eq!(refusal(&call(&["RENAME", &a, &b]), t), crossslot);
        assert_eq!(refusal(&call(&["MSETNX", &a, "1", &b, "2"]), t), crossslot);
        // one multicast for the typed multi-key commands, as before
        assert_eq!(refusal(&call(&["MSET", &a, "1", &b, "2"]), t), None);
        assert_eq!(refusal(&call(&["RENAME", &a, &a]), t), None);
        assert_eq!(refusal(&call(&["KEYS", "*"]), t), None);
        assert!(refusal(&call(&["SCAN", "0"]), t).is_some_and(|r| r.is_error()));
    }
}
