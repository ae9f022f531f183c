//! The set commands: `SADD`, `SREM`, `SMEMBERS`, `SISMEMBER`, `SMISMEMBER`,
//! `SCARD`, `SINTER`, `SUNION`, `SDIFF`, `SINTERSTORE`, `SUNIONSTORE`,
//! `SDIFFSTORE`, with Redis 7.0's replies and errors.
//!
//! Members are kept in order, so `SMEMBERS` and the set algebra list them sorted
//! (Redis: an intset's order or hash-table order; unspecified). The set algebra
//! type-checks every key before computing (a missing key is an empty set); a
//! `...STORE` replaces the destination whatever it held (its TTL goes) or deletes it
//! if the result is empty, and refuses a result over the collection bound; a
//! reply is refused over [`super::MAX_REPLY_BYTES`] (`SUNION` of large sets).

use std::collections::BTreeSet;

use super::value::{cost, within, Set, Value};
use super::{reply_within, KvReply, Model};

type Reply = Result<KvReply, KvReply>;

fn members<'a>(items: impl Iterator<Item = &'a Vec<u8>>) -> KvReply {
    KvReply::Set(items.map(|m| KvReply::Bulk(m.clone())).collect())
}

/// A read-only set command, `None` if `name` is not one.
pub(super) fn read(db: &Model, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    const NAMES: &[&str] = &[
        "smembers",
        "sismember",
        "smismember",
        "scard",
        "sinter",
        "sunion",
        "sdiff",
    ];
    NAMES.contains(&name).then(|| query(db, name, args))
}

fn query(db: &Model, name: &str, args: &[Vec<u8>]) -> Reply {
    let s = db.read_as::<Set>(&args[1]);
    Ok(match name {
        "smembers" => members(s?.into_iter().flat_map(|s| s.members().iter())),
        "sismember" => KvReply::Int(i64::from(s?.is_some_and(|s| s.contains(&args[2])))),
        "smismember" => {
            let s = s?;
            reply_within(args[2..].iter().map(|_| 0))?;
            KvReply::List(
                args[2..]
                    .iter()
                    .map(|m| KvReply::Int(i64::from(s.is_some_and(|s| s.contains(m)))))
                    .collect(),
            )
        }
        "scard" => KvReply::Int(s?.map_or(0, Set::len) as i64),
        _ => {
            let result = algebra(db, name, &args[1..])?;
            reply_within(result.iter().map(|m| m.len()))?;
            members(result.into_iter())
        }
    })
}

/// The members of `SINTER`, `SUNION` or `SDIFF` of `keys`.
fn algebra<'a>(
    db: &'a Model,
    op: &str,
    keys: &[Vec<u8>],
) -> Result<BTreeSet<&'a Vec<u8>>, KvReply> {
    let sets = keys
        .iter()
        .map(|k| db.read_as::<Set>(k))
        .collect::<Result<Vec<Option<&Set>>, KvReply>>()?;
    let all = |s: Option<&'a Set>| s.into_iter().flat_map(|s| s.members().iter());
    Ok(match op {
        "sinter" | "sinterstore" => {
            if sets.iter().any(Option::is_none) {
                return Ok(BTreeSet::new());
            }
            let Some(smallest) = sets.iter().flatten().min_by_key(|s| s.len()) else {
                return Ok(BTreeSet::new());
            };
            smallest
                .members()
                .iter()
                .filter(|m| sets.iter().flatten().all(|s| s.contains(m)))
                .collect()
        }
        "sunion" | "sunionstore" => sets.iter().flat_map(|s| all(*s)).collect(),
        _ => all(sets[0])
            .filter(|m| sets[1..].iter().flatten().all(|s| !s.contains(m)))
            .collect(),
    })
}

/// A set command that writes, `None` if `name` is not one.
pub(super) fn write(db: &mut Model, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    Some(match name {
        "sadd" => sadd(db, args),
        "srem" => match db.write_as::<Set>(&args[1]) {
            Err(e) => Err(e),
            Ok(None) => Ok(KvReply::Int(0)),
            Ok(Some(s)) => Ok(KvReply::Int(
                args[2..].iter().filter(|m| s.remove(m)).count() as i64,
            )),
        },
        "sinterstore" | "sunionstore" | "sdiffstore" => store(db, name, args),
        _ => return None,
    })
}

fn sadd(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let s = db.create_as::<Set>(&args[1])?;
    let new: BTreeSet<&Vec<u8>> = args[2..].iter().filter(|m| !s.contains(m)).collect();
    let add = new
        .iter()
        .fold(0usize, |b, m| b.saturating_add(cost(m.len())));
    within(s.bytes().saturating_add(add))?;
    for m in &new {
        s.insert((*m).clone());
    }
    Ok(KvReply::Int(new.len() as i64))
}

/// `SINTERSTORE dst key [key ...]` and the others: the result's size.
fn store(db: &mut Model, name: &str, args: &[Vec<u8>]) -> Reply {
    let result: BTreeSet<Vec<u8>> = algebra(db, name, &args[2..])?
        .into_iter()
        .cloned()
        .collect();
    let set = Set::from_members(result)?;
    let n = set.len();
    if n == 0 {
        db.delete(&args[1]);
    } else {
        db.put_value(args[1].clone(), Value::Set(set));
    }
    Ok(KvReply::Int(n as i64))
}

#[cfg(test)]
mod tests {
    use super::super::value::{ERR_WRONGTYPE, MAX_COLLECTION_BYTES};
    use super::super::KvOp;
    use super::*;

    fn call(db: &mut Model, words: &[&str]) -> KvReply {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        db.apply(&KvOp::Call(args))
    }
    fn set(items: &[&str]) -> KvReply {
        KvReply::Set(
            items
                .iter()
                .map(|s| KvReply::Bulk(s.as_bytes().to_vec()))
                .collect(),
        )
    }
    fn err(s: &str) -> KvReply {
        KvReply::Error(s.into())
    }

    #[test]
    fn members_and_algebra() {
        let mut db = Model::new();
        assert_eq!(
            call(&mut db, &["sadd", "a", "1", "2", "3", "2"]),
            KvReply::Int(3)
        );
        assert_eq!(call(&mut db, &["sadd", "a", "3", "4"]), KvReply::Int(1));
        call(&mut db, &["sadd", "b", "3", "4", "5"]);
        assert_eq!(
            call(&mut db, &["smembers", "a"]),
            set(&["1", "2", "3", "4"])
        );
        assert_eq!(call(&mut db, &["smembers", "nokey"]), set(&[]));
        assert_eq!(call(&mut db, &["sismember", "a", "1"]), KvReply::Int(1));
        assert_eq!(
            call(&mut db, &["smismember", "a", "1", "9"]),
            KvReply::List(vec![KvReply::Int(1), KvReply::Int(0)])
        );
        assert_eq!(call(&mut db, &["scard", "a"]), KvReply::Int(4));
        assert_eq!(call(&mut db, &["sinter", "a", "b"]), set(&["3", "4"]));
        assert_eq!(call(&mut db, &["sinter", "a", "nokey"]), set(&[]));
        assert_eq!(
            call(&mut db, &["sunion", "a", "b", "nokey"]),
            set(&["1", "2", "3", "4", "5"])
        );
        assert_eq!(call(&mut db, &["sdiff", "a", "b"]), set(&["1", "2"]));
        assert_eq!(call(&mut db, &["sdiff", "nokey", "b"]), set(&[]));
        call(&mut db, &["set", "d", "x"]);
        call(&mut db, &["expire", "d", "100"]);
        assert_eq!(
            call(&mut db, &["sinterstore", "d", "a", "b"]),
            KvReply::Int(2)
        );
        assert_eq!(call(&mut db, &["ttl", "d"]), KvReply::Int(-1));
        assert_eq!(call(&mut db, &["type", "d"]), KvReply::Status("set".into()));
        assert_eq!(
            call(&mut db, &["sdiffstore", "d", "a", "a"]),
            KvReply::Int(0)
        );
        assert_eq!(call(&mut db, &["exists", "d"]), KvReply::Int(0));
        assert_eq!(
            call(&mut db, &["sunionstore", "a", "a", "b"]),
            KvReply::Int(5)
        );
        assert_eq!(
            call(&mut db, &["srem", "b", "3", "4", "9"]),
            KvReply::Int(2)
        );
        assert_eq!(call(&mut db, &["srem", "b", "5"]), KvReply::Int(1));
        assert_eq!(call(&mut db, &["exists", "b"]), KvReply::Int(0));
    }

    #[test]
    fn wrongtype_and_bounds() {
        let mut db = Model::new();
        call(&mut db, &["set", "s", "v"]);
        call(&mut db, &["sadd", "a", "1"]);
        for cmd in [
            &["sadd", "s", "a"][..],
            &["smembers", "s"],
            &["sismember", "s", "a"],
            &["sinter", "nokey", "s"],
            &["sunion", "a", "s"],
            &["sdiff", "a", "s"],
            &["sunionstore", "d", "a", "s"],
        ] {
            assert_eq!(call(&mut db, cmd), err(ERR_WRONGTYPE), "{cmd:?}");
        }
        assert_eq!(call(&mut db, &["get", "a"]), err(ERR_WRONGTYPE));
        // the destination of a STORE is overwritten whatever its type
        assert_eq!(call(&mut db, &["sunionstore", "s", "a"]), KvReply::Int(1));
        let big = "x".repeat(MAX_COLLECTION_BYTES / 2);
        assert_eq!(call(&mut db, &["sadd", "b1", &big]), KvReply::Int(1));
        let big2 = format!("{big}2");
        assert_eq!(call(&mut db, &["sadd", "b2", &big2]), KvReply::Int(1));
        let before = db.clone();
        assert!(call(&mut db, &["sadd", "b1", &big2]).is_error());
        assert!(call(&mut db, &["sunionstore", "a", "b1", "b2"]).is_error());
        assert_eq!(db, before);
        // a reply may be larger than a set, not larger than the reply bound
        assert!(!call(&mut db, &["sunion", "b1", "b2"]).is_error());
        call(&mut db, &["sadd", "b3", &format!("{big}3")]);
        assert!(call(&mut db, &["sunion", "b1", "b2", "b3"]).is_error());
    }
}
