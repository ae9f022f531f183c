//! The list commands: `LPUSH`, `RPUSH`, `LPUSHX`, `RPUSHX`, `LPOP`, `RPOP` (with
//! a count), `LRANGE`, `LLEN`, `LINDEX`, `LSET`, `LREM`, `LTRIM`, `LINSERT`,
//! `LPOS`, with Redis 7.0's replies, errors and order of checks.
//!
//! A list is a `VecDeque`: pushes and pops at both ends and `LINDEX` are O(1),
//! `LINSERT`, `LREM`, `LSET` in the middle and `LPOS` O(n).

use super::commands::{err, index_range, int_arg, opt, positive_arg, ERR_SYNTAX};
use super::value::{cost, within, List};
use super::{KvReply, Model};

type Reply = Result<KvReply, KvReply>;

fn bulks<'a>(items: impl Iterator<Item = &'a Vec<u8>>) -> KvReply {
    KvReply::List(items.map(|v| KvReply::Bulk(v.clone())).collect())
}

/// Redis's `getLongFromObjectOrReply` as an index.
fn index(l: &List, i: i64) -> Option<usize> {
    let len = l.len() as i128;
    let i = i128::from(i);
    let i = if i < 0 { i + len } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

/// A read-only list command, `None` if `name` is not one.
pub(super) fn read(db: &Model, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    if !matches!(name, "lrange" | "llen" | "lindex" | "lpos") {
        return None;
    }
    Some((|| {
        Ok(match name {
            "lrange" => {
                let (start, stop) = (int_arg(&args[2])?, int_arg(&args[3])?);
                let Some(l) = db.read_as::<List>(&args[1])? else {
                    return Ok(KvReply::List(vec![]));
                };
                match index_range(start, stop, l.len()) {
                    None => KvReply::List(vec![]),
                    Some((a, b)) => bulks(l.items().range(a..=b)),
                }
            }
            "llen" => KvReply::Int(db.read_as::<List>(&args[1])?.map_or(0, List::len) as i64),
            "lindex" => {
                // the key first: a missing one is nil whatever the index
                let Some(l) = db.read_as::<List>(&args[1])? else {
                    return Ok(KvReply::Nil);
                };
                let i = int_arg(&args[2])?;
                opt(index(l, i).map(|i| l.items()[i].clone()))
            }
            _ => return lpos(db, args),
        })
    })())
}

/// `LPOS key element [RANK rank] [COUNT n] [MAXLEN len]`: options first, then the
/// key; positions always count from the head.
fn lpos(db: &Model, args: &[Vec<u8>]) -> Reply {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0i64);
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        match args[j].to_ascii_lowercase().as_slice() {
            b"rank" if more => {
                rank = int_arg(&args[j + 1])?;
                if rank == i64::MIN {
                    return Err(err(
                        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                    ));
                }
                if rank == 0 {
                    return Err(err(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                    ));
                }
            }
            b"count" if more => {
                count = Some(positive_arg(&args[j + 1], "COUNT can't be negative")?)
            }
            b"maxlen" if more => maxlen = positive_arg(&args[j + 1], "MAXLEN can't be negative")?,
            _ => return Err(err(ERR_SYNTAX)),
        }
        j += 2;
    }
    let Some(l) = db.read_as::<List>(&args[1])? else {
        return Ok(if count.is_some() {
            KvReply::List(vec![])
        } else {
            KvReply::Nil
        });
    };
    let items = l.items();
    let len = items.len();
    let order: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(0..len)
    } else {
        Box::new((0..len).rev())
    };
    let limit = if maxlen == 0 { len } else { maxlen as usize };
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n as usize,
        None => 1,
    };
    let mut skip = rank.unsigned_abs() - 1;
    let mut found = Vec::new();
    for i in order.take(limit) {
        if items[i] == args[2] {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(i as i64);
            if found.len() >= want {
                break;
            }
        }
    }
    Ok(match count {
        Some(_) => KvReply::List(found.into_iter().map(KvReply::Int).collect()),
        None => found.first().map_or(KvReply::Nil, |&i| KvReply::Int(i)),
    })
}

/// A list command that writes, `None` if `name` is not one.
pub(super) fn write(db: &mut Model, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    Some(match name {
        "lpush" | "rpush" | "lpushx" | "rpushx" => push(db, name, args),
        "lpop" | "rpop" => pop(db, name == "lpop", args),
        "lset" => lset(db, args),
        "lrem" => lrem(db, args),
        "ltrim" => ltrim(db, args),
        "linsert" => linsert(db, args),
        _ => return None,
    })
}

fn push(db: &mut Model, name: &str, args: &[Vec<u8>]) -> Reply {
    let head = name.starts_with('l');
    let l = if name.ends_with('x') {
        match db.write_as::<List>(&args[1])? {
            Some(l) => l,
            None => return Ok(KvReply::Int(0)),
        }
    } else {
        db.create_as::<List>(&args[1])?
    };
    let add = args[2..]
        .iter()
        .fold(0usize, |b, v| b.saturating_add(cost(v.len())));
    within(l.bytes().saturating_add(add))?;
    for v in &args[2..] {
        l.push(head, v.clone());
    }
    Ok(KvReply::Int(l.len() as i64))
}

/// `LPOP key [count]`: without a count, one element or nil; with one, an array
/// (the nil array for a missing key; empty for a count of 0).
fn pop(db: &mut Model, head: bool, args: &[Vec<u8>]) -> Reply {
    if args.len() > 3 {
        let name = if head { "lpop" } else { "rpop" };
        return Err(KvReply::Error(super::commands::wrong_arity(name)));
    }
    let count = match args.get(2) {
        Some(c) => Some(positive_arg(c, "value is out of range, must be positive")?),
        None => None,
    };
    let Some(l) = db.write_as::<List>(&args[1])? else {
        return Ok(if count.is_some() {
            KvReply::NilArray
        } else {
            KvReply::Nil
        });
    };
    Ok(match count {
        None => opt(l.pop(head)),
        Some(n) => {
            let n = (n as u64).min(l.len() as u64) as usize;
            KvReply::List(
                (0..n)
                    .filter_map(|_| l.pop(head).map(KvReply::Bulk))
                    .collect(),
            )
        }
    })
}

/// `LSET key index element`: a missing key first, then the index.
fn lset(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let Some(l) = db.write_as::<List>(&args[1])? else {
        return Err(err("ERR no such key"));
    };
    let i = int_arg(&args[2])?;
    let i = index(l, i).ok_or_else(|| err("ERR index out of range"))?;
    within(l.bytes() - l.items()[i].len() + args[3].len())?;
    l.set(i, args[3].clone());
    Ok(KvReply::Ok)
}

/// `LREM key count element`: from the head (`count > 0`), the tail (`< 0`), or all.
fn lrem(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let count = int_arg(&args[2])?;
    let Some(l) = db.write_as::<List>(&args[1])? else {
        return Ok(KvReply::Int(0));
    };
    let matches: Vec<usize> = (0..l.len()).filter(|&i| l.items()[i] == args[3]).collect();
    let n = if count == 0 {
        matches.len()
    } else {
        (count.unsigned_abs() as usize).min(matches.len())
    };
    let doomed: std::collections::BTreeSet<usize> = if count >= 0 {
        matches[..n].iter().copied().collect()
    } else {
        matches[matches.len() - n..].iter().copied().collect()
    };
    l.retain_indexed(|i, _| !doomed.contains(&i));
    Ok(KvReply::Int(n as i64))
}

/// `LTRIM key start stop`: the indexes first, then the key.
fn ltrim(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let (start, stop) = (int_arg(&args[2])?, int_arg(&args[3])?);
    let Some(l) = db.write_as::<List>(&args[1])? else {
        return Ok(KvReply::Ok);
    };
    let keep = index_range(start, stop, l.len());
    l.retain_indexed(|i, _| keep.is_some_and(|(a, b)| (a..=b).contains(&i)));
    Ok(KvReply::Ok)
}

/// `LINSERT key BEFORE|AFTER pivot element`: -1 without the pivot, 0 without the key.
fn linsert(db: &mut Model, args: &[Vec<u8>]) -> Reply {
    let after = match args[2].to_ascii_lowercase().as_slice() {
        b"after" => true,
        b"before" => false,
        _ => return Err(err(ERR_SYNTAX)),
    };
    let Some(l) = db.write_as::<List>(&args[1])? else {
        return Ok(KvReply::Int(0));
    };
    let Some(at) = l.items().iter().position(|v| *v == args[3]) else {
        return Ok(KvReply::Int(-1));
    };
    within(l.bytes().saturating_add(cost(args[4].len())))?;
    l.insert(at + usize::from(after), args[4].clone());
    Ok(KvReply::Int(l.len() as i64))
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
    fn list(items: &[&str]) -> KvReply {
        KvReply::List(
            items
                .iter()
                .map(|s| KvReply::Bulk(s.as_bytes().to_vec()))
                .collect(),
        )
    }
    fn ints(items: &[i64]) -> KvReply {
        KvReply::List(items.iter().map(|&i| KvReply::Int(i)).collect())
    }

    #[test]
    fn push_pop_range() {
        let mut db = Model::new();
        assert_eq!(
            call(&mut db, &["rpush", "l", "a", "b", "c"]),
            KvReply::Int(3)
        );
        assert_eq!(call(&mut db, &["lpush", "l", "x", "y"]), KvReply::Int(5));
        assert_eq!(
            call(&mut db, &["lrange", "l", "0", "-1"]),
            list(&["y", "x", "a", "b", "c"])
        );
        assert_eq!(
            call(&mut db, &["lrange", "l", "-2", "100"]),
            list(&["b", "c"])
        );
        assert_eq!(call(&mut db, &["lrange", "l", "3", "1"]), list(&[]));
        assert_eq!(
            call(&mut db, &["lindex", "l", "-1"]),
            KvReply::Bulk(b"c".to_vec())
        );
        assert_eq!(call(&mut db, &["lindex", "l", "5"]), KvReply::Nil);
        assert_eq!(call(&mut db, &["lpushx", "nokey", "a"]), KvReply::Int(0));
        assert_eq!(call(&mut db, &["rpop", "l", "2"]), list(&["c", "b"]));
        assert_eq!(call(&mut db, &["lpop", "l"]), KvReply::Bulk(b"y".to_vec()));
        assert_eq!(call(&mut db, &["lpop", "l", "0"]), list(&[]));
        assert_eq!(
            call(&mut db, &["lpop", "l", "-1"]),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(call(&mut db, &["lpop", "nokey", "1"]), KvReply::NilArray);
        assert_eq!(call(&mut db, &["lpop", "nokey"]), KvReply::Nil);
        assert_eq!(call(&mut db, &["lpop", "l", "10"]), list(&["x", "a"]));
        assert_eq!(call(&mut db, &["exists", "l"]), KvReply::Int(0));
    }

    #[test]
    fn edits_in_the_middle() {
        let mut db = Model::new();
        call(&mut db, &["rpush", "l", "a", "b", "a", "c", "a"]);
        assert_eq!(call(&mut db, &["lrem", "l", "-2", "a"]), KvReply::Int(2));
        assert_eq!(
            call(&mut db, &["lrange", "l", "0", "-1"]),
            list(&["a", "b", "c"])
        );
        assert_eq!(
            call(&mut db, &["linsert", "l", "before", "b", "z"]),
            KvReply::Int(4)
        );
        assert_eq!(
            call(&mut db, &["linsert", "l", "AFTER", "c", "w"]),
            KvReply::Int(5)
        );
        assert_eq!(
            call(&mut db, &["linsert", "l", "after", "nope", "w"]),
            KvReply::Int(-1)
        );
        assert_eq!(
            call(&mut db, &["linsert", "l", "middle", "c", "w"]),
            err(ERR_SYNTAX)
        );
        assert_eq!(
            call(&mut db, &["linsert", "nokey", "before", "c", "w"]),
            KvReply::Int(0)
        );
        assert_eq!(
            call(&mut db, &["lrange", "l", "0", "-1"]),
            list(&["a", "z", "b", "c", "w"])
        );
        assert_eq!(call(&mut db, &["lset", "l", "-1", "v"]), KvReply::Ok);
        assert_eq!(
            call(&mut db, &["lset", "l", "5", "v"]),
            err("ERR index out of range")
        );
        assert_eq!(
            call(&mut db, &["lset", "nokey", "x", "v"]),
            err("ERR no such key")
        );
        assert_eq!(call(&mut db, &["ltrim", "l", "1", "-2"]), KvReply::Ok);
        assert_eq!(
            call(&mut db, &["lrange", "l", "0", "-1"]),
            list(&["z", "b", "c"])
        );
        call(&mut db, &["rpush", "l", "b", "b"]);
        assert_eq!(call(&mut db, &["lpos", "l", "b"]), KvReply::Int(1));
        assert_eq!(
            call(&mut db, &["lpos", "l", "b", "rank", "-1"]),
            KvReply::Int(4)
        );
        assert_eq!(
            call(&mut db, &["lpos", "l", "b", "count", "0"]),
            ints(&[1, 3, 4])
        );
        assert_eq!(
            call(&mut db, &["lpos", "l", "b", "rank", "2", "count", "1"]),
            ints(&[3])
        );
        assert_eq!(
            call(&mut db, &["lpos", "l", "b", "maxlen", "2", "count", "0"]),
            ints(&[1])
        );
        assert_eq!(call(&mut db, &["lpos", "l", "q"]), KvReply::Nil);
        assert_eq!(
            call(&mut db, &["lpos", "nokey", "q", "count", "1"]),
            ints(&[])
        );
        assert!(
            matches!(call(&mut db, &["lpos", "l", "b", "rank", "0"]), KvReply::Error(e) if e.starts_with("ERR RANK can't be zero"))
        );
        assert_eq!(
            call(&mut db, &["lpos", "l", "b", "count", "-1"]),
            err("ERR COUNT can't be negative")
        );
        assert_eq!(call(&mut db, &["lpos", "l", "b", "rank"]), err(ERR_SYNTAX));
        assert_eq!(call(&mut db, &["ltrim", "l", "5", "1"]), KvReply::Ok);
        assert_eq!(call(&mut db, &["exists", "l"]), KvReply::Int(0));
    }

    #[test]
    fn wrongtype_and_bounds() {
        let mut db = Model::new();
        call(&mut db, &["set", "s", "v"]);
        for cmd in [
            &["lpush", "s", "a"][..],
            &["rpop", "s"],
            &["lrange", "s", "0", "1"],
            &["llen", "s"],
            &["lset", "s", "0", "a"],
            &["lpos", "s", "a"],
        ] {
            assert_eq!(call(&mut db, cmd), err(ERR_WRONGTYPE), "{cmd:?}");
        }
        // LRANGE checks its indexes first, LINDEX the key first
        assert_eq!(
            call(&mut db, &["lrange", "s", "x", "1"]),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(call(&mut db, &["lindex", "s", "x"]), err(ERR_WRONGTYPE));
        call(&mut db, &["rpush", "l", "a"]);
        assert_eq!(call(&mut db, &["incr", "l"]), err(ERR_WRONGTYPE));
        assert_eq!(
            call(&mut db, &["type", "l"]),
            KvReply::Status("list".into())
        );
        let big = "x".repeat(MAX_COLLECTION_BYTES / 2);
        assert_eq!(call(&mut db, &["rpush", "l", &big]), KvReply::Int(2));
        let before = db.clone();
        assert!(call(&mut db, &["rpush", "l", "1", &big]).is_error());
        assert!(call(&mut db, &["linsert", "l", "before", "a", &big]).is_error());
        assert!(call(&mut db, &["lset", "l", "0", &big]).is_error());
        assert_eq!(db, before);
    }
}
