//! The hash commands: `HSET`, `HMSET`, `HSETNX`, `HGET`, `HMGET`, `HGETALL`, `HDEL`,
//! `HEXISTS`, `HINCRBY`, `HINCRBYFLOAT`, `HKEYS`, `HVALS`, `HLEN`, `HSTRLEN`,
//! `HSCAN`, with Redis 7.0's replies and errors.
//!
//! Fields are kept in field order, so `HGETALL`, `HKEYS`, `HVALS` and `HSCAN` list
//! them in that order (Redis: insertion order for small hashes, hash-table order for
//! large ones; no client may rely on either). `HSCAN` returns every matching field
//! in one call with cursor 0, as Redis does for small hashes: the byte bound of a
//! hash keeps that reply under the frame limit.

use super::commands::{
    cursor_arg, err, float_sum, int_arg, long_double_arg, opt, scan_options, wrong_arity,
};
use super::float::LongDouble;
use super::value::{within, Hash};
use super::{parse_integer, reply_within, KvReply, Model, ERR_OVERFLOW};

type Reply = Result<KvReply, KvReply>;

/// A read-only hash command, `None` if `name` is not one.
pub(super) fn read(db: &Model, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    const NAMES: &[&str] = &[
        "hget", "hmget", "hgetall", "hkeys", "hvals", "hlen", "hexists", "hstrlen", "hscan",
    ];
    NAMES.contains(&name).then(|| query(db, name, args))
}

fn fields(h: Option<&Hash>) -> Vec<(&Vec<u8>, &Vec<u8>)> {
    h.into_iter().flat_map(Hash::iter).collect()
}

fn query(db: &Model, name: &str, args: &[Vec<u8>]) -> Reply {
    let h = db.read_as::<Hash>(&args[1]);
    Ok(match name {
        "hget" => opt(h?.and_then(|h| h.get(&args[2])).cloned()),
        "hmget" => {
            let h = h?;
            let values: Vec<Option<&Vec<u8>>> =
                args[2..].iter().map(|f| h.and_then(|h| h.get(f))).collect();
            reply_within(values.iter().map(|v| v.map_or(0, Vec::len)))?;
            KvReply::Array(values.into_iter().map(|v| v.cloned()).collect())
        }
        "hgetall" => KvReply::Map(
            fields(h?)
                .into_iter()
                .map(|(f, v)| (KvReply::Bulk(f.clone()), KvReply::Bulk(v.clone())))
                .collect(),
        ),
        "hkeys" | "hvals" => {
            let keys = name == "hkeys";
            KvReply::List(
                fields(h?)
                    .into_iter()
                    .map(|(f, v)| KvReply::Bulk(if keys { f } else { v }.clone()))
                    .collect(),
            )
        }
        "hlen" => KvReply::Int(h?.map_or(0, Hash::len) as i64),
        "hexists" => KvReply::Int(i64::from(h?.is_some_and(|h| h.get(&args[2]).is_some()))),
        "hstrlen" => KvReply::Int(h?.and_then(|h| h.get(&args[2])).map_or(0, Vec::len) as i64),
        _ => return hscan(db, args),
    })
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count]`: the cursor is checked first,
/// then the key (a missing key is an empty scan whatever the options), then the
/// options, as in Redis.
fn hscan(db: &Model, args: &[Vec<u8>]) -> Reply {
    cursor_arg(&args[2])?;
    let empty = || KvReply::List(vec![KvReply::Bulk(b"0".to_vec()), KvReply::List(vec![])]);
    let Some(h) = db.read_as::<Hash>(&args[1])? else {
        return Ok(empty());
    };
    let o = scan_options(args, 3, false)?;
    let mut items = Vec::new();
    for (f, v) in h.iter() {
        if o.pattern.is_none_or(|p| crate::glob::matches(p, f, false)) {
            items.push(KvReply::Bulk(f.clone()));
            items.push(KvReply::Bulk(v.clone()));
        }
    }
    Ok(KvReply::List(vec![
        KvReply::Bulk(b"0".to_vec()),
        KvReply::List(items),
    ]))
}

/// A hash command that writes, `None` if `name` is not one.
pub(super) fn write(db: &mut Model, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    Some(match name {
        "hset" | "hmset" => hset(db, name, args),
        "hsetnx" => hsetnx(db, args),
        "hdel" => hdel(db, args),
        "hincrby" => hincrby(db, args),
        "hincrbyfloat" => hincrbyfloat(db, args),
        _ => return None,
    })
}

fn hset(db: &mut Model, name: &str, args: &[Vec<u8>]) -> Reply {
    if args.len() % 2 == 1 {
        return Err(KvReply::Error(wrong_arity(name)));
    }
    let pairs = || {
        args[2..]
            .chunks(2)
            .map(|p| (p[0].as_slice(), p[1].as_slice()))
    };
    let h = db.create_as::<Hash>(&args[1])?;
    within(h.bytes_after(pairs()))?;
    let added = pairs()
        .filter(|(f, v)| h.insert(f.to_vec(), v.to_vec()))
        .count();
    Ok(if name == "hmset" {
        KvReply::Ok
    } else {
        KvReply::Int(added as i64)
    })
}

fn hsetnx(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let h = db.create_as::<Hash>(&args[1])?;
    if h.get(&args[2]).is_some() {
        return Ok(KvReply::Int(0));
    }
    within(h.bytes_after([(args[2].as_slice(), args[3].as_slice())]))?;
    h.insert(args[2].clone(), args[3].clone());
    Ok(KvReply::Int(1))
}

fn hdel(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let Some(h) = db.write_as::<Hash>(&args[1])? else {
        return Ok(KvReply::Int(0));
    };
    Ok(KvReply::Int(
        args[2..].iter().filter(|f| h.remove(f)).count() as i64,
    ))
}

/// `HINCRBY key field by`: the increment is read first, then the key's type.
fn hincrby(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let by = int_arg(&args[3])?;
    let h = db.create_as::<Hash>(&args[1])?;
    let current = match h.get(&args[2]) {
        None => 0,
        Some(v) => parse_integer(v).ok_or_else(|| err("ERR hash value is not an integer"))?,
    };
    let next = current
        .checked_add(by)
        .ok_or_else(|| err(ERR_OVERFLOW))?
        .to_string()
        .into_bytes();
    within(h.bytes_after([(args[2].as_slice(), next.as_slice())]))?;
    h.insert(args[2].clone(), next.clone());
    Ok(KvReply::Int(parse_integer(&next).unwrap_or_default()))
}

/// `HINCRBYFLOAT key field by`, in `long double` as `INCRBYFLOAT`; an infinite
/// increment is refused before the key is looked at.
fn hincrbyfloat(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let by = long_double_arg(&args[3])?;
    if by.is_infinite() {
        return Err(err("ERR value is NaN or Infinity"));
    }
    let h = db.create_as::<Hash>(&args[1])?;
    let current = match h.get(&args[2]) {
        None => LongDouble::ZERO,
        Some(v) => long_double_arg(v).map_err(|_| err("ERR hash value is not a float"))?,
    };
    let next = float_sum(current, by)?;
    within(h.bytes_after([(args[2].as_slice(), next.as_slice())]))?;
    h.insert(args[2].clone(), next.clone());
    Ok(KvReply::Bulk(next))
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
    fn bulk(s: &str) -> KvReply {
        KvReply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn hash_commands_follow_redis() {
        let mut db = Model::new();
        assert_eq!(
            call(&mut db, &["hset", "h", "a", "1", "b", "2"]),
            KvReply::Int(2)
        );
        assert_eq!(
            call(&mut db, &["hset", "h", "a", "3", "c", "4"]),
            KvReply::Int(1)
        );
        assert_eq!(
            call(&mut db, &["hset", "h", "a"]),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(call(&mut db, &["hget", "h", "a"]), bulk("3"));
        assert_eq!(call(&mut db, &["hget", "h", "x"]), KvReply::Nil);
        assert_eq!(call(&mut db, &["hget", "nokey", "x"]), KvReply::Nil);
        assert_eq!(
            call(&mut db, &["hmget", "h", "a", "x"]),
            KvReply::Array(vec![Some(b"3".to_vec()), None])
        );
        assert_eq!(
            call(&mut db, &["hgetall", "h"]),
            KvReply::Map(vec![
                (bulk("a"), bulk("3")),
                (bulk("b"), bulk("2")),
                (bulk("c"), bulk("4"))
            ])
        );
        assert_eq!(call(&mut db, &["hlen", "h"]), KvReply::Int(3));
        assert_eq!(call(&mut db, &["hsetnx", "h", "a", "9"]), KvReply::Int(0));
        assert_eq!(call(&mut db, &["hsetnx", "h", "d", "9"]), KvReply::Int(1));
        assert_eq!(
            call(&mut db, &["hincrby", "h", "a", "10"]),
            KvReply::Int(13)
        );
        assert_eq!(
            call(&mut db, &["hincrby", "h", "a", "x"]),
            err("ERR value is not an integer or out of range")
        );
        call(&mut db, &["hset", "h", "s", "abc"]);
        assert_eq!(
            call(&mut db, &["hincrby", "h", "s", "1"]),
            err("ERR hash value is not an integer")
        );
        assert_eq!(
            call(&mut db, &["hincrbyfloat", "h", "s", "1"]),
            err("ERR hash value is not a float")
        );
        assert_eq!(
            call(&mut db, &["hincrbyfloat", "h", "f", "0.1"]),
            bulk("0.1")
        );
        assert_eq!(
            call(&mut db, &["hincrbyfloat", "h", "f", "0.2"]),
            bulk("0.3")
        );
        assert_eq!(
            call(&mut db, &["hincrbyfloat", "h", "f", "inf"]),
            err("ERR value is NaN or Infinity")
        );
        call(&mut db, &["hset", "h", "big", "9223372036854775807"]);
        assert_eq!(
            call(&mut db, &["hincrby", "h", "big", "1"]),
            err(ERR_OVERFLOW)
        );
        assert_eq!(call(&mut db, &["hexists", "h", "a"]), KvReply::Int(1));
        assert_eq!(call(&mut db, &["hstrlen", "h", "s"]), KvReply::Int(3));
        assert_eq!(
            call(&mut db, &["hdel", "h", "a", "a", "x", "b"]),
            KvReply::Int(2)
        );
        // the last field gone, the key is gone
        call(&mut db, &["hdel", "h", "c", "d", "s", "f", "big"]);
        assert_eq!(call(&mut db, &["exists", "h"]), KvReply::Int(0));
        assert_eq!(call(&mut db, &["hgetall", "h"]), KvReply::Map(vec![]));
    }

    #[test]
    fn wrongtype_and_scan() {
        let mut db = Model::new();
        call(&mut db, &["set", "s", "v"]);
        let wrong = err(ERR_WRONGTYPE);
        for cmd in [
            &["hset", "s", "f", "v"][..],
            &["hget", "s", "f"],
            &["hgetall", "s"],
            &["hdel", "s", "f"],
            &["hlen", "s"],
            &["hincrby", "s", "f", "1"],
            &["hscan", "s", "0"],
        ] {
            assert_eq!(call(&mut db, cmd), wrong, "{cmd:?}");
        }
        // the increment is checked before the type
        assert_eq!(
            call(&mut db, &["hincrby", "s", "f", "x"]),
            err("ERR value is not an integer or out of range")
        );
        call(&mut db, &["hset", "h", "f1", "a", "f2", "b", "g", "c"]);
        assert_eq!(call(&mut db, &["get", "h"]), wrong);
        assert_eq!(
            call(&mut db, &["type", "h"]),
            KvReply::Status("hash".into())
        );
        assert_eq!(
            call(&mut db, &["hscan", "h", "0", "match", "f*"]),
            KvReply::List(vec![
                bulk("0"),
                KvReply::List(vec![bulk("f1"), bulk("a"), bulk("f2"), bulk("b")])
            ])
        );
        assert_eq!(
            call(&mut db, &["hscan", "h", "x"]),
            err("ERR invalid cursor")
        );
        assert_eq!(
            call(&mut db, &["hscan", "h", "0", "type", "hash"]),
            err("ERR syntax error")
        );
        // options of a missing key are not looked at
        assert_eq!(
            call(&mut db, &["hscan", "nokey", "0", "bogus"]),
            KvReply::List(vec![bulk("0"), KvReply::List(vec![])])
        );
    }

    #[test]
    fn a_hash_is_bounded_and_refusal_changes_nothing() {
        let mut db = Model::new();
        let big = "x".repeat(MAX_COLLECTION_BYTES / 2);
        assert_eq!(call(&mut db, &["hset", "h", "a", &big]), KvReply::Int(1));
        let before = db.clone();
        let r = call(&mut db, &["hset", "h", "b", "1", "c", &big]);
        assert!(
            matches!(&r, KvReply::Error(e) if e.starts_with("OOM")),
            "{r}"
        );
        assert_eq!(db, before);
        // replacing a value with one of the same size is fine
        assert_eq!(call(&mut db, &["hset", "h", "a", &big]), KvReply::Int(0));
        // a refused write to a new key leaves no empty hash behind
        let r = call(&mut db, &["hset", "n", "a", &big, "b", &big, "c", "1"]);
        assert!(r.is_error());
        assert_eq!(call(&mut db, &["exists", "n"]), KvReply::Int(0));
    }
}
