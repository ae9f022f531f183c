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
//! order, sizes summed); so does `SCAN`, whose cursor is a position in key-hash
//! order that every shard shares ([`merge`] continues at the lowest position a
//! shard has not reached).
//!
//! Transactions ([`KvOp::Exec`], issue 12 item 4): an `EXEC` goes to the groups of
//! all its commands (a keyless one's is the first target) as one multicast, like a
//! cross-shard MSET, so it is atomic across shards: each destination runs, in
//! order, its part of each command ([`restrict`]: the command itself, or its keys
//! there for the typed multi-key commands), and [`merge`] merges each command's
//! parts back into its place. An `EXEC` holding a command the sharded store
//! refuses alone (`CROSSSLOT`) is refused whole with `EXECABORT
//! Transaction discarded because of: ...` before it is sent. `WATCH` answers
//! each key's version from its shard (a version counts the writes of its own
//! key, so the shards answer what one store would). **Limitation:** an `EXEC`
//! with watched keys must have all its keys, watched or not, on one shard: the
//! shards of a multicast decide independently, so one could abort while another
//! runs, and an atomic abort would need a commit round the store does not have.
//! Such an `EXEC` is refused before it is sent ([`ERR_WATCH_CROSS_SHARD`]), and a
//! client that sends one anyway gets it refused by every destination (nothing
//! runs).

use crate::message::Results;
use byzscale_apps::kv::commands::scan_hash;
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

/// The refusal of an `EXEC` with `WATCH` whose keys (watched or not) span shards.
pub const ERR_WATCH_CROSS_SHARD: &str = "ERR WATCH with a transaction whose keys span shards is \
     not supported on the ByzCast-sharded store (the watched keys and the commands' keys must \
     live on one shard)";

/// A command line of an `EXEC` as an operation: what it runs as alone (a line that
/// does not parse stays a keyless [`KvOp::Call`], whose error the store gives).
pub fn line_op(line: &[Vec<u8>]) -> KvOp {
    KvOp::from_args(line).unwrap_or_else(|_| KvOp::Call(line.to_vec()))
}

/// The reply to give at once, without sending, to an operation the sharded store does
/// not run: a [`KvOp::Call`] whose keys span shards; an `EXEC` holding
/// one (`EXECABORT`, nothing runs), or with `WATCH` and keys on several shards.
pub fn refusal(op: &KvOp, targets: usize) -> Option<KvReply> {
    if let KvOp::Exec { watch, cmds } = op {
        if let Some(KvReply::Error(e)) = cmds.iter().find_map(|l| refusal(&line_op(l), targets)) {
            return Some(KvReply::Error(format!(
                "EXECABORT Transaction discarded because of: {e}"
            )));
        }
        return (!watch.is_empty() && groups_of(op, targets).len() > 1)
            .then(|| KvReply::Error(ERR_WATCH_CROSS_SHARD.into()));
    }
    if !matches!(op, KvOp::Call(_)) {
        return None;
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
    if let KvOp::Exec { watch, cmds } = op {
        // each command's groups (a keyless one's is the first target), and the
        // watched keys'
        let mut g: BTreeSet<GroupId> = watch.iter().map(|(k, _)| shard_of(k, targets)).collect();
        g.extend(cmds.iter().flat_map(|l| groups_of(&line_op(l), targets)));
        if g.is_empty() {
            g.insert(GroupId(0));
        }
        return g.into_iter().collect();
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
        KvOp::Watch(ks) => keys(ks).map(KvOp::Watch),
        KvOp::Exec { .. } => restrict_exec(op, g, targets),
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

/// The part of `op` group `g` runs when `op` is sent (alone or in an `EXEC`):
/// only the groups it is sent to run one.
fn part(op: &KvOp, g: GroupId, targets: usize) -> Option<KvOp> {
    groups_of(op, targets)
        .contains(&g)
        .then(|| restrict(op, g, targets))
        .flatten()
}

/// The part of an `EXEC` that group `g` runs: the watched keys that live there and
/// each command's part there, in order; `None` if it has none, or if the `EXEC`
/// watches keys and spans groups (each group would decide alone whether to abort:
/// every group refuses it, so nothing runs; [`refusal`] answers it before sending).
fn restrict_exec(op: &KvOp, g: GroupId, targets: usize) -> Option<KvOp> {
    let KvOp::Exec { watch, cmds } = op else {
        return None;
    };
    let groups = groups_of(op, targets);
    if !groups.contains(&g) || (!watch.is_empty() && groups.len() > 1) {
        return None;
    }
    Some(KvOp::Exec {
        watch: watch.clone(),
        cmds: cmds
            .iter()
            .filter_map(|l| part(&line_op(l), g, targets))
            .map(|sub| sub.to_args())
            .collect(),
    })
}

/// The reply to an `EXEC` from its groups' replies: each command's reply merged
/// from the replies of the groups that ran a part of it, in order.
fn merge_exec(
    cmds: &[Vec<Vec<u8>>],
    replies: BTreeMap<GroupId, KvReply>,
    targets: usize,
) -> KvReply {
    let mut parts: BTreeMap<GroupId, std::vec::IntoIter<KvReply>> = BTreeMap::new();
    for (g, r) in replies {
        match r {
            KvReply::List(items) => {
                parts.insert(g, items.into_iter());
            }
            // only a one-group EXEC watches keys
            KvReply::NilArray => return KvReply::NilArray,
            other => return KvReply::Error(format!("ERR unexpected reply {other}")),
        }
    }
    let mut out = Vec::with_capacity(cmds.len());
    for line in cmds {
        let sub = line_op(line);
        let mut results = Results::new();
        for g in groups_of(&sub, targets) {
            if part(&sub, g, targets).is_none() {
                continue;
            }
            match parts.get_mut(&g).and_then(Iterator::next) {
                Some(r) => results.insert(g, r.encode()),
                None => return KvReply::Error("ERR short EXEC reply".into()),
            };
        }
        out.push(merge(&sub, &results, targets));
    }
    KvReply::List(out)
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
        KvOp::Exec { cmds, .. } => merge_exec(cmds, replies, targets),
        KvOp::Call(args) if is_scan(args) => merge_scan(replies),
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
            let arrays = replies.into_iter().map(|(g, r)| match r {
                KvReply::Array(a) => Ok((g, a)),
                other => Err(other),
            });
            per_key(ks, arrays, targets).map_or_else(|e| e, KvReply::Array)
        }
        KvOp::Watch(ks) => {
            let lists = replies.into_iter().map(|(g, r)| match r {
                KvReply::List(a) => Ok((g, a)),
                other => Err(other),
            });
            per_key(ks, lists, targets).map_or_else(|e| e, KvReply::List)
        }
    }
}

/// The per-key replies of a multi-key read (`MGET`, `WATCH`) in key order, from
/// each group's replies for its keys in order (`Err`: a reply of another shape).
fn per_key<T>(
    keys: &[Vec<u8>],
    parts: impl Iterator<Item = Result<(GroupId, Vec<T>), KvReply>>,
    targets: usize,
) -> Result<Vec<T>, KvReply> {
    let mut cursors: BTreeMap<GroupId, std::vec::IntoIter<T>> = BTreeMap::new();
    for part in parts {
        let (g, items) =
            part.map_err(|other| KvReply::Error(format!("ERR unexpected reply {other}")))?;
        cursors.insert(g, items.into_iter());
    }
    keys.iter()
        .map(|k| {
            cursors
                .get_mut(&shard_of(k, targets))
                .and_then(Iterator::next)
                .ok_or_else(|| KvReply::Error("ERR short reply".into()))
        })
        .collect()
}

/// Combine the per-shard replies of `KEYS`, `DBSIZE`, `FLUSHDB`, `FLUSHALL`.
fn is_scan(args: &[Vec<u8>]) -> bool {
    args.first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"scan"))
}

/// `SCAN` across shards. The store's cursor is a position in key-hash order
/// (`kv::commands::scan_hash`), the same on every shard, so each shard
/// answers the keys of its own from the cursor and its next position. The
/// merged step returns every key below the lowest next position of a shard
/// that has more (all of them if none has) and continues there: no key is
/// skipped, none returned twice in a full iteration, and a step may return
/// more keys than COUNT (a hint, as in Redis).
fn merge_scan(replies: BTreeMap<GroupId, KvReply>) -> KvReply {
    let mut next: Option<u64> = None;
    let mut keys: Vec<(u64, Vec<u8>)> = Vec::new();
    for r in replies.into_values() {
        let KvReply::List(parts) = r else {
            return KvReply::Error(format!("ERR unexpected SCAN reply {r}"));
        };
        let [KvReply::Bulk(cursor), KvReply::List(found)] = parts.as_slice() else {
            return KvReply::Error("ERR unexpected SCAN reply".into());
        };
        let Some(c) = std::str::from_utf8(cursor)
            .ok()
            .and_then(|c| c.parse::<u64>().ok())
        else {
            return KvReply::Error("ERR unexpected SCAN cursor".into());
        };
        if c != 0 {
            next = Some(next.map_or(c, |n| n.min(c)));
        }
        for k in found {
            let KvReply::Bulk(k) = k else {
                return KvReply::Error("ERR unexpected SCAN reply".into());
            };
            keys.push((scan_hash(k), k.clone()));
        }
    }
    keys.retain(|(h, _)| next.is_none_or(|n| *h < n));
    keys.sort();
    KvReply::List(vec![
        KvReply::Bulk(next.unwrap_or(0).to_string().into_bytes()),
        KvReply::List(keys.into_iter().map(|(_, k)| KvReply::Bulk(k)).collect()),
    ])
}

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

    /// Run `op` on one store and on `shards` (split and merged as the client and
    /// the groups do); both replies, unless the sharded store refuses it.
    fn both(one: &mut KvStore, shards: &mut [KvStore], op: &KvOp) -> (KvReply, KvReply) {
        let t = shards.len();
        if let Some(refused) = refusal(op, t) {
            return (refused.clone(), refused);
        }
        let want = one.apply(op);
        let mut res = Results::new();
        for g in groups_of(op, t) {
            if let Some(sub) = restrict(op, g, t) {
                res.insert(g, shards[g.0 as usize].apply(&sub).encode());
            }
        }
        (merge(op, &res, t), want)
    }

    /// Keys `k0, k1, ...` on shard `g` of `t`.
    fn keys_on(g: u32, t: usize, n: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| shard_of(k.as_bytes(), t).0 == g)
            .take(n)
            .collect()
    }

    #[test]
    fn transactions_run_across_shards_as_in_one_store() {
        let t = 3;
        let (a, b, c) = (keys_on(0, t, 2), keys_on(1, t, 2), keys_on(2, t, 1));
        let line =
            |w: &str| -> Vec<Vec<u8>> { w.split(' ').map(|x| x.as_bytes().to_vec()).collect() };
        let exec = |watch: Vec<(&String, u64)>, cmds: Vec<String>| KvOp::Exec {
            watch: watch
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
            cmds: cmds.iter().map(|c| line(c)).collect(),
        };
        let mut one = KvStore::new();
        let mut shards: Vec<KvStore> = (0..t).map(|_| KvStore::new()).collect();
        let spanning = exec(
            vec![],
            vec![
                format!("mset {} 1 {} 2 {} 3", a[0], b[0], c[0]),
                format!("incr {}", b[0]),
                "ping".into(),
                format!("lpush {} x", a[0]),
                format!("del {} {} {}", a[0], c[0], b[1]),
                format!("mget {} {} {}", c[0], b[0], a[1]),
                "keys *".into(),
                format!("set {} v", a[1]),
                "nosuch x".into(),
                "ping hi".into(),
            ],
        );
        let (got, want) = both(&mut one, &mut shards, &spanning);
        assert_eq!(got, want);
        assert!(
            groups_of(&spanning, t).len() == 3,
            "one multicast to every shard"
        );
        assert!(matches!(&want, KvReply::List(r) if r.len() == 10));

        // WATCH across shards answers each key's version, as one store does
        let watch = KvOp::Watch(
            [&a[0], &b[0], &c[0], &a[1]]
                .map(|k| k.as_bytes().to_vec())
                .to_vec(),
        );
        let (got, want) = both(&mut one, &mut shards, &watch);
        assert_eq!(got, want);
        let KvReply::List(v) = want else { panic!() };
        let v: Vec<u64> = v
            .iter()
            .map(|r| match r {
                KvReply::Int(n) => *n as u64,
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            v,
            [2, 2, 2, 1],
            "per key: how many successful writes named it"
        );

        // one shard with WATCH: runs, then fails after a write
        let on_a = exec(
            vec![(&a[0], v[0]), (&a[1], v[3])],
            vec![format!("incr {}", a[0]), format!("get {}", a[1])],
        );
        let (got, want) = both(&mut one, &mut shards, &on_a);
        assert_eq!(
            (got, want.clone()),
            (
                want.clone(),
                KvReply::List(vec![KvReply::Int(1), KvReply::Bulk(b"v".to_vec())])
            )
        );
        let (got, want) = both(&mut one, &mut shards, &on_a);
        assert_eq!((&got, &want), (&KvReply::NilArray, &KvReply::NilArray));

        // WATCH with keys on two shards is refused, and the replicas refuse it too
        let cross = exec(vec![(&a[0], 0)], vec![format!("set {} 1", b[0])]);
        assert_eq!(
            refusal(&cross, t),
            Some(KvReply::Error(ERR_WATCH_CROSS_SHARD.into()))
        );
        assert!((0..t as u32).all(|g| restrict(&cross, GroupId(g), t).is_none()));
        // a command refused alone makes the whole EXEC refused
        let rename = exec(
            vec![],
            vec![
                format!("set {} 1", a[0]),
                format!("rename {} {}", a[0], b[0]),
            ],
        );
        assert_eq!(
            refusal(&rename, t),
            Some(KvReply::Error(format!(
                "EXECABORT Transaction discarded because of: {ERR_CROSSSLOT}"
            )))
        );
        assert_eq!(
            shards.iter().map(|s| s.model().len()).sum::<usize>(),
            one.model().len()
        );
        for s in &shards {
            for (k, v) in s.model().map() {
                assert_eq!(one.model().value(k), Some(v));
            }
        }
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
        assert_eq!(refusal(&call(&["SCAN", "0"]), t), None);
    }

    #[test]
    fn scan_across_shards_returns_every_key_once() {
        let t = 3;
        let mut shards: Vec<KvStore> = (0..t).map(|_| KvStore::new()).collect();
        let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        for k in &keys {
            let op = KvOp::Set(k.clone().into_bytes(), b"v".to_vec());
            shards[shard_of(k.as_bytes(), t).0 as usize].apply(&op);
        }
        let hash = KvOp::from_args(&["HSET", "h1", "f", "v"]).unwrap();
        shards[shard_of(b"h1", t).0 as usize].apply(&hash);
        let scan_all = |shards: &mut Vec<KvStore>, extra: &[&str]| -> Vec<String> {
            let (mut cursor, mut seen, mut steps) = ("0".to_string(), Vec::new(), 0);
            loop {
                let mut words = vec!["SCAN", cursor.as_str()];
                words.extend(extra);
                let op = KvOp::from_args(&words).unwrap();
                let mut res = Results::new();
                for g in groups_of(&op, t) {
                    let sub = restrict(&op, g, t).unwrap();
                    res.insert(g, shards[g.0 as usize].apply(&sub).encode());
                }
                let KvReply::List(parts) = merge(&op, &res, t) else {
                    panic!("a SCAN reply")
                };
                let [KvReply::Bulk(next), KvReply::List(found)] = parts.as_slice() else {
                    panic!("cursor and keys")
                };
                for k in found {
                    let KvReply::Bulk(k) = k else { panic!("keys") };
                    seen.push(String::from_utf8(k.clone()).unwrap());
                }
                cursor = String::from_utf8(next.clone()).unwrap();
                steps += 1;
                if cursor == "0" {
                    break;
                }
            }
            assert!(steps > 1, "COUNT makes several steps");
            seen
        };
        let mut all = scan_all(&mut shards, &["COUNT", "7"]);
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "no key twice");
        let mut want: Vec<String> = keys.clone();
        want.push("h1".into());
        want.sort();
        assert_eq!(all, want);
        let mut matched = scan_all(&mut shards, &["COUNT", "5", "MATCH", "k1*"]);
        matched.sort();
        let mut want: Vec<String> = keys
            .iter()
            .filter(|k| k.starts_with("k1"))
            .cloned()
            .collect();
        want.sort();
        assert_eq!(matched, want);
        assert_eq!(
            scan_all(&mut shards, &["COUNT", "3", "TYPE", "hash"]),
            vec!["h1"]
        );
    }
}
