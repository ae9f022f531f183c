//! The sorted-set commands: `ZADD` (`NX`/`XX`/`GT`/`LT`/`CH`/`INCR`), `ZINCRBY`,
//! `ZREM`, `ZSCORE`, `ZCARD`, `ZRANK`, `ZREVRANK`, `ZCOUNT`, `ZRANGE` (`BYSCORE`,
//! `BYLEX`, `REV`, `LIMIT`, `WITHSCORES`), `ZREVRANGE`, `ZRANGEBYSCORE`,
//! `ZREVRANGEBYSCORE`, with Redis 7.0's replies, errors and order of checks.
//!
//! Scores are doubles read as `strtod` does and written as `%.17g` (see
//! [`super::float`]); `-0` is stored as `0` (what Redis answers for sets in its
//! small encoding). Members are ordered by (score, member). `ZRANK` and a rank
//! range cost O(n) (no order-statistics index is kept). A `BYLEX` range walks the
//! members in score order as Redis does for small sets (its result is specified only
//! when all scores are equal).

use std::cmp::Ordering;

use super::commands::{err, float_arg, index_range, int_arg, ERR_SYNTAX};
use super::float::{format_g17, parse_range_f64};
use super::value::{cost, within, Score, ZSet};
use super::{KvReply, Model};

type Reply = Result<KvReply, KvReply>;

fn double(s: Score) -> KvReply {
    KvReply::Double(format_g17(s.get()))
}

/// A score interval (`zrangespec`).
struct ScoreRange {
    min: f64,
    minex: bool,
    max: f64,
    maxex: bool,
}

impl ScoreRange {
    /// Parse `min` and `max` as Redis's `zslParseRange` (`(` for an open end).
    fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, KvReply> {
        let item = |a: &[u8]| match a.first() {
            Some(b'(') => parse_range_f64(&a[1..]).map(|v| (v, true)),
            _ => parse_range_f64(a).map(|v| (v, false)),
        };
        match (item(min), item(max)) {
            (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange {
                min,
                minex,
                max,
                maxex,
            }),
            _ => Err(err("ERR min or max is not a float")),
        }
    }
    fn gte_min(&self, s: f64) -> bool {
        if self.minex {
            s > self.min
        } else {
            s >= self.min
        }
    }
    fn lte_max(&self, s: f64) -> bool {
        if self.maxex {
            s < self.max
        } else {
            s <= self.max
        }
    }
    fn contains(&self, s: f64) -> bool {
        self.gte_min(s) && self.lte_max(s)
    }
}

/// One end of a lexicographic range: `-`, `+`, or a member, open or closed.
enum LexEnd {
    Min,
    Max,
    Member(Vec<u8>, bool),
}

impl LexEnd {
    /// Redis's `zslParseLexRangeItem`.
    fn parse(a: &[u8]) -> Option<LexEnd> {
        let rest = &a[1.min(a.len())..];
        let alone = rest.first().is_none_or(|&c| c == 0);
        match a.first() {
            Some(b'+') if alone => Some(LexEnd::Max),
            Some(b'-') if alone => Some(LexEnd::Min),
            Some(b'(') => Some(LexEnd::Member(rest.to_vec(), true)),
            Some(b'[') => Some(LexEnd::Member(rest.to_vec(), false)),
            _ => None,
        }
    }
    /// `sdscmplex(v, self)`.
    fn cmp_value(&self, v: &[u8]) -> Ordering {
        match self {
            LexEnd::Min => Ordering::Greater,
            LexEnd::Max => Ordering::Less,
            LexEnd::Member(m, _) => v.cmp(m),
        }
    }
    fn exclusive(&self) -> bool {
        match self {
            LexEnd::Member(_, ex) => *ex,
            _ => true,
        }
    }
}

struct LexRange {
    min: LexEnd,
    max: LexEnd,
}

impl LexRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<LexRange, KvReply> {
        match (LexEnd::parse(min), LexEnd::parse(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(err("ERR min or max not valid string range item")),
        }
    }
    fn gte_min(&self, v: &[u8]) -> bool {
        match self.min.cmp_value(v) {
            Ordering::Greater => true,
            Ordering::Equal => !self.min.exclusive(),
            Ordering::Less => false,
        }
    }
    fn lte_max(&self, v: &[u8]) -> bool {
        match self.max.cmp_value(v) {
            Ordering::Less => true,
            Ordering::Equal => !self.max.exclusive(),
            Ordering::Greater => false,
        }
    }
    /// Whether the range is empty whatever the set (`zzlIsInLexRange`'s first test).
    fn empty(&self) -> bool {
        let (lo, hi) = (&self.min, &self.max);
        let cmp = match (lo, hi) {
            (LexEnd::Member(a, _), LexEnd::Member(b, _)) => a.cmp(b),
            (LexEnd::Min, LexEnd::Min) | (LexEnd::Max, LexEnd::Max) => Ordering::Equal,
            (LexEnd::Min, _) | (_, LexEnd::Max) => Ordering::Less,
            _ => Ordering::Greater,
        };
        cmp == Ordering::Greater || (cmp == Ordering::Equal && (lo.exclusive() || hi.exclusive()))
    }
}

/// A read-only sorted-set command, `None` if `name` is not one.
pub(super) fn read(db: &Model, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    const NAMES: &[&str] = &[
        "zscore",
        "zcard",
        "zrank",
        "zrevrank",
        "zcount",
        "zrange",
        "zrevrange",
        "zrangebyscore",
        "zrevrangebyscore",
    ];
    NAMES.contains(&name).then(|| query(db, name, args))
}

fn query(db: &Model, name: &str, args: &[Vec<u8>]) -> Reply {
    Ok(match name {
        "zscore" => db
            .read_as::<ZSet>(&args[1])?
            .and_then(|z| z.score(&args[2]))
            .map_or(KvReply::Nil, double),
        "zcard" => KvReply::Int(db.read_as::<ZSet>(&args[1])?.map_or(0, ZSet::len) as i64),
        "zrank" | "zrevrank" => {
            let Some(z) = db.read_as::<ZSet>(&args[1])? else {
                return Ok(KvReply::Nil);
            };
            let Some(s) = z.score(&args[2]) else {
                return Ok(KvReply::Nil);
            };
            let below = z.ordered().range(..(s, args[2].clone())).count();
            let rank = if name == "zrank" {
                below
            } else {
                z.len() - 1 - below
            };
            KvReply::Int(rank as i64)
        }
        "zcount" => {
            let range = ScoreRange::parse(&args[2], &args[3])?;
            let z = db.read_as::<ZSet>(&args[1])?;
            let n = z
                .into_iter()
                .flat_map(|z| z.ordered().iter())
                .filter(|(s, _)| range.contains(s.get()))
                .count();
            KvReply::Int(n as i64)
        }
        _ => return zrange(db, name, args),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Auto,
    Rank,
    Score,
    Lex,
}

/// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count]
/// [WITHSCORES]` and the older forms, as Redis's `zrangeGenericCommand`: options,
/// then their conflicts, then the range, then the key.
fn zrange(db: &Model, name: &str, args: &[Vec<u8>]) -> Reply {
    let (mut by, mut rev) = match name {
        "zrange" => (By::Auto, None),
        "zrevrange" => (By::Rank, Some(true)),
        "zrangebyscore" => (By::Score, Some(false)),
        _ => (By::Score, Some(true)),
    };
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = 4;
    while j < args.len() {
        let left = args.len() - j - 1;
        match args[j].to_ascii_lowercase().as_slice() {
            b"withscores" => withscores = true,
            b"limit" if left >= 2 => {
                offset = int_arg(&args[j + 1])?;
                limit = int_arg(&args[j + 2])?;
                j += 2;
            }
            b"rev" if rev.is_none() => rev = Some(true),
            b"bylex" if by == By::Auto => by = By::Lex,
            b"byscore" if by == By::Auto => by = By::Score,
            _ => return Err(err(ERR_SYNTAX)),
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if by == By::Auto {
        by = By::Rank;
    }
    if limit != -1 && by == By::Rank {
        return Err(err(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == By::Lex {
        return Err(err(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    // a reversed score or lex range is given as max, min
    let (lo, hi) = if rev && by != By::Rank {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    enum Parsed {
        Rank(i64, i64),
        Score(ScoreRange),
        Lex(LexRange),
    }
    let parsed = match by {
        By::Score => Parsed::Score(ScoreRange::parse(lo, hi)?),
        By::Lex => Parsed::Lex(LexRange::parse(lo, hi)?),
        _ => Parsed::Rank(int_arg(lo)?, int_arg(hi)?),
    };
    let Some(z) = db.read_as::<ZSet>(&args[1])? else {
        return Ok(KvReply::List(vec![]));
    };
    let mut order: Vec<&(Score, Vec<u8>)> = z.ordered().iter().collect();
    if rev {
        order.reverse();
    }
    let picked: Vec<&(Score, Vec<u8>)> = match parsed {
        Parsed::Rank(start, stop) => match index_range(start, stop, order.len()) {
            None => vec![],
            Some((a, b)) => order[a..=b].to_vec(),
        },
        Parsed::Score(r) => {
            let inside: Vec<_> = order
                .into_iter()
                .filter(|(s, _)| r.contains(s.get()))
                .collect();
            window(inside, offset, limit)
        }
        Parsed::Lex(r) => lex_walk(&order, &r, rev, offset, limit),
    };
    Ok(if withscores {
        KvReply::Pairs(
            picked
                .into_iter()
                .map(|(s, m)| (KvReply::Bulk(m.clone()), double(*s)))
                .collect(),
        )
    } else {
        KvReply::List(
            picked
                .into_iter()
                .map(|(_, m)| KvReply::Bulk(m.clone()))
                .collect(),
        )
    })
}

/// `LIMIT offset count` over the elements of a range (a negative offset: none; a
/// negative count: all).
fn window<T>(items: Vec<T>, offset: i64, limit: i64) -> Vec<T> {
    if offset < 0 {
        return Vec::new();
    }
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    items
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(take)
        .collect()
}

/// The members of a lex range, walking `order` (already reversed for `REV`) as
/// Redis's small-set encoding does: the first member past the near end starts the
/// range if it is within the far end, `offset` members are skipped unchecked, and
/// the range stops at the first member past the far end (or after `limit`).
fn lex_walk<'a>(
    order: &[&'a (Score, Vec<u8>)],
    r: &LexRange,
    rev: bool,
    offset: i64,
    limit: i64,
) -> Vec<&'a (Score, Vec<u8>)> {
    if r.empty() || order.is_empty() {
        return Vec::new();
    }
    // zzlIsInLexRange: the last member (in score order) must be >= min, the first <= max
    let (first, last) = if rev {
        (order[order.len() - 1], order[0])
    } else {
        (order[0], order[order.len() - 1])
    };
    if !r.gte_min(&last.1) || !r.lte_max(&first.1) {
        return Vec::new();
    }
    // the near end starts the walk, the far end stops it
    let near = |v: &[u8]| if rev { r.lte_max(v) } else { r.gte_min(v) };
    let far = |v: &[u8]| if rev { r.gte_min(v) } else { r.lte_max(v) };
    let Some(start) = order.iter().position(|e| near(&e.1)) else {
        return Vec::new();
    };
    if !far(&order[start].1) || offset < 0 {
        return Vec::new();
    }
    let take = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    order[start..]
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(take)
        .take_while(|e| far(&e.1))
        .copied()
        .collect()
}

/// A sorted-set command that writes, `None` if `name` is not one.
pub(super) fn write(db: &mut Model, name: &str, args: &[Vec<u8>]) -> Option<Reply> {
    Some(match name {
        "zadd" => zadd(db, args, false),
        "zincrby" => zadd(db, args, true),
        "zrem" => match db.write_as::<ZSet>(&args[1]) {
            Err(e) => Err(e),
            Ok(None) => Ok(KvReply::Int(0)),
            Ok(Some(z)) => Ok(KvReply::Int(
                args[2..].iter().filter(|m| z.remove(m)).count() as i64,
            )),
        },
        _ => return None,
    })
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]` and
/// `ZINCRBY key increment member`, as Redis's `zaddGenericCommand`.
fn zadd(db: &mut Model, args: &[Vec<u8>], zincrby: bool) -> Reply {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, zincrby);
    let mut at = 2;
    if !zincrby {
        while let Some(a) = args.get(at) {
            match a.to_ascii_lowercase().as_slice() {
                b"nx" => nx = true,
                b"xx" => xx = true,
                b"gt" => gt = true,
                b"lt" => lt = true,
                b"ch" => ch = true,
                b"incr" => incr = true,
                _ => break,
            }
            at += 1;
        }
    }
    let rest = &args[at..];
    if rest.is_empty() || rest.len() % 2 == 1 {
        return Err(err(ERR_SYNTAX));
    }
    if xx && nx {
        return Err(err(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(err(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && rest.len() > 2 {
        return Err(err(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let pairs: Vec<(f64, &Vec<u8>)> = rest
        .chunks(2)
        .map(|p| float_arg(&p[0]).map(|s| (s, &p[1])))
        .collect::<Result<_, _>>()?;
    let exists = db.read_as::<ZSet>(&args[1])?.is_some();
    if !exists && xx {
        return Ok(if incr { KvReply::Nil } else { KvReply::Int(0) });
    }
    let z = db.create_as::<ZSet>(&args[1])?;
    // the bound: every distinct new member (XX adds none)
    let new: std::collections::BTreeSet<&Vec<u8>> = pairs
        .iter()
        .map(|(_, m)| *m)
        .filter(|m| !xx && z.score(m).is_none())
        .collect();
    let add = new
        .iter()
        .fold(0usize, |b, m| b.saturating_add(cost(m.len())));
    within(z.bytes().saturating_add(add))?;
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last = None;
    for (score, m) in pairs {
        match z.score(m) {
            Some(cur) => {
                if nx {
                    continue;
                }
                let mut s = score;
                if incr {
                    s += cur.get();
                }
                let Some(s) = Score::new(s) else {
                    return Err(err("ERR resulting score is not a number (NaN)"));
                };
                if (lt && s >= cur) || (gt && s <= cur) {
                    continue;
                }
                last = Some(s);
                processed += 1;
                if s != cur {
                    z.insert(m.clone(), s);
                    updated += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                let Some(s) = Score::new(score) else {
                    return Err(err("ERR resulting score is not a number (NaN)"));
                };
                z.insert(m.clone(), s);
                last = Some(s);
                added += 1;
                processed += 1;
            }
        }
    }
    Ok(if incr {
        match last.filter(|_| processed > 0) {
            Some(s) => double(s),
            None => KvReply::Nil,
        }
    } else {
        KvReply::Int(if ch { added + updated } else { added })
    })
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
    fn bulks(items: &[&str]) -> KvReply {
        KvReply::List(
            items
                .iter()
                .map(|s| KvReply::Bulk(s.as_bytes().to_vec()))
                .collect(),
        )
    }
    fn d(s: &str) -> KvReply {
        KvReply::Double(s.into())
    }

    #[test]
    fn zadd_options_and_scores() {
        let mut db = Model::new();
        assert_eq!(
            call(&mut db, &["zadd", "z", "1", "a", "2", "b", "1.1", "c"]),
            KvReply::Int(3)
        );
        assert_eq!(
            call(&mut db, &["zscore", "z", "c"]),
            d("1.1000000000000001")
        );
        assert_eq!(
            call(&mut db, &["zadd", "z", "nx", "5", "a", "5", "d"]),
            KvReply::Int(1)
        );
        assert_eq!(call(&mut db, &["zscore", "z", "a"]), d("1"));
        assert_eq!(
            call(&mut db, &["zadd", "z", "xx", "ch", "7", "a", "7", "e"]),
            KvReply::Int(1)
        );
        assert_eq!(call(&mut db, &["zscore", "z", "e"]), KvReply::Nil);
        assert_eq!(
            call(&mut db, &["zadd", "z", "gt", "ch", "3", "a", "9", "b"]),
            KvReply::Int(1)
        );
        assert_eq!(
            call(&mut db, &["zadd", "z", "lt", "incr", "1", "a"]),
            KvReply::Nil
        );
        assert_eq!(call(&mut db, &["zadd", "z", "incr", "-1", "a"]), d("6"));
        assert_eq!(call(&mut db, &["zincrby", "z", "0.5", "new"]), d("0.5"));
        assert_eq!(call(&mut db, &["zadd", "z", "-0", "zero"]), KvReply::Int(1));
        assert_eq!(call(&mut db, &["zscore", "z", "zero"]), d("0"));
        assert_eq!(call(&mut db, &["zadd", "z", "inf", "i"]), KvReply::Int(1));
        assert_eq!(
            call(&mut db, &["zincrby", "z", "-inf", "i"]),
            err("ERR resulting score is not a number (NaN)")
        );
        assert_eq!(call(&mut db, &["zadd", "z", "nx", "1"]), err(ERR_SYNTAX));
        assert_eq!(
            call(&mut db, &["zadd", "z", "nan", "a"]),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            call(&mut db, &["zadd", "z", "xx", "nx", "1", "a"]),
            err("ERR XX and NX options at the same time are not compatible")
        );
        assert_eq!(
            call(&mut db, &["zadd", "z", "gt", "lt", "1", "a"]),
            err("ERR GT, LT, and/or NX options at the same time are not compatible")
        );
        assert_eq!(
            call(&mut db, &["zadd", "z", "incr", "1", "a", "2", "b"]),
            err("ERR INCR option supports a single increment-element pair")
        );
        assert_eq!(
            call(&mut db, &["zadd", "nokey", "xx", "1", "a"]),
            KvReply::Int(0)
        );
        assert_eq!(call(&mut db, &["exists", "nokey"]), KvReply::Int(0));
        assert_eq!(call(&mut db, &["zcard", "z"]), KvReply::Int(7));
        assert_eq!(call(&mut db, &["zrank", "z", "zero"]), KvReply::Int(0));
        assert_eq!(call(&mut db, &["zrevrank", "z", "i"]), KvReply::Int(0));
        assert_eq!(call(&mut db, &["zrank", "z", "nope"]), KvReply::Nil);
        assert_eq!(call(&mut db, &["zrem", "z", "i", "nope"]), KvReply::Int(1));
    }

    #[test]
    fn ranges() {
        let mut db = Model::new();
        call(
            &mut db,
            &["zadd", "z", "1", "a", "2", "b", "2", "c", "3", "d"],
        );
        assert_eq!(
            call(&mut db, &["zrange", "z", "0", "-1"]),
            bulks(&["a", "b", "c", "d"])
        );
        assert_eq!(
            call(&mut db, &["zrange", "z", "0", "1", "rev"]),
            bulks(&["d", "c"])
        );
        assert_eq!(
            call(&mut db, &["zrevrange", "z", "-2", "-1"]),
            bulks(&["b", "a"])
        );
        assert_eq!(
            call(&mut db, &["zrange", "z", "0", "0", "withscores"]),
            KvReply::Pairs(vec![(KvReply::Bulk(b"a".to_vec()), d("1"))])
        );
        assert_eq!(
            call(&mut db, &["zrange", "z", "(1", "2", "byscore"]),
            bulks(&["b", "c"])
        );
        assert_eq!(
            call(
                &mut db,
                &["zrange", "z", "+inf", "(1", "byscore", "rev", "limit", "1", "5"]
            ),
            bulks(&["c", "b"])
        );
        assert_eq!(
            call(
                &mut db,
                &["zrangebyscore", "z", "-inf", "+inf", "limit", "1", "2"]
            ),
            bulks(&["b", "c"])
        );
        assert_eq!(
            call(
                &mut db,
                &["zrangebyscore", "z", "-inf", "+inf", "limit", "-1", "2"]
            ),
            bulks(&[])
        );
        assert_eq!(
            call(&mut db, &["zrevrangebyscore", "z", "2", "1"]),
            bulks(&["c", "b", "a"])
        );
        assert_eq!(call(&mut db, &["zcount", "z", "(1", "3"]), KvReply::Int(3));
        assert_eq!(
            call(&mut db, &["zcount", "z", "x", "3"]),
            err("ERR min or max is not a float")
        );
        assert_eq!(call(&mut db, &["zrange", "z", "0", "1", "limit", "0", "1"]), err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"));
        assert_eq!(
            call(&mut db, &["zrange", "z", "0", "1", "limit", "0", "-1"]),
            bulks(&["a", "b"])
        );
        assert_eq!(
            call(&mut db, &["zrangebyscore", "z", "0", "1", "rev"]),
            err(ERR_SYNTAX)
        );
        assert_eq!(
            call(&mut db, &["zrange", "z", "-", "+", "bylex", "withscores"]),
            err("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
        );
        assert_eq!(
            call(&mut db, &["zrange", "z", "x", "+", "bylex"]),
            err("ERR min or max not valid string range item")
        );
        call(
            &mut db,
            &["zadd", "l", "0", "a", "0", "b", "0", "c", "0", "d"],
        );
        assert_eq!(
            call(&mut db, &["zrange", "l", "[b", "(d", "bylex"]),
            bulks(&["b", "c"])
        );
        assert_eq!(
            call(
                &mut db,
                &["zrange", "l", "+", "[b", "bylex", "rev", "limit", "1", "1"]
            ),
            bulks(&["c"])
        );
        assert_eq!(
            call(&mut db, &["zrange", "l", "-", "+", "bylex"]),
            bulks(&["a", "b", "c", "d"])
        );
        assert_eq!(
            call(&mut db, &["zrange", "nokey", "0", "-1", "withscores"]),
            bulks(&[])
        );
    }

    /// The largest sorted set, with the longest scores, replies within the frame
    /// limit (the reasoning of the `value` module's docs).
    #[test]
    fn a_full_set_with_scores_fits_a_reply_frame() {
        let mut db = Model::new();
        let mut i = 0u64;
        'fill: loop {
            let mut line = vec!["zadd".to_string(), "z".to_string()];
            for _ in 0..1000 {
                // 17 significant digits and a 3-digit exponent: 24 characters
                line.push(format!("{}", -1e-300 * (1.0 + i as f64 * 1e-15)));
                line.push(format!("{i}"));
                i += 1;
            }
            let args: Vec<Vec<u8>> = line.into_iter().map(String::into_bytes).collect();
            if db.apply(&KvOp::Call(args)).is_error() {
                break 'fill;
            }
        }
        let KvReply::Int(n) = call(&mut db, &["zcard", "z"]) else {
            panic!()
        };
        assert!(n > 200_000, "{n}");
        let reply = call(&mut db, &["zrange", "z", "0", "-1", "withscores"]);
        let len = reply.encode().len();
        assert!(len < 10 << 20, "{len}");
        assert!(KvReply::decode(&reply.encode()).is_ok());
        let KvReply::Pairs(pairs) = reply else {
            panic!()
        };
        let longest = pairs
            .iter()
            .map(|(_, s)| match s {
                KvReply::Double(t) => t.len(),
                _ => 0,
            })
            .max();
        assert_eq!(longest, Some(24));
    }

    #[test]
    fn wrongtype_and_bounds() {
        let mut db = Model::new();
        call(&mut db, &["set", "s", "v"]);
        for cmd in [
            &["zadd", "s", "1", "a"][..],
            &["zscore", "s", "a"],
            &["zrange", "s", "0", "1"],
            &["zincrby", "s", "1", "a"],
            &["zrank", "s", "a"],
            &["zcount", "s", "0", "1"],
        ] {
            assert_eq!(call(&mut db, cmd), err(ERR_WRONGTYPE), "{cmd:?}");
        }
        // scores and ranges are checked before the type
        assert_eq!(
            call(&mut db, &["zadd", "s", "x", "a"]),
            err("ERR value is not a valid float")
        );
        assert_eq!(
            call(&mut db, &["zrange", "s", "x", "1"]),
            err("ERR value is not an integer or out of range")
        );
        call(&mut db, &["zadd", "z", "1", "a"]);
        assert_eq!(
            call(&mut db, &["type", "z"]),
            KvReply::Status("zset".into())
        );
        assert_eq!(call(&mut db, &["lpush", "z", "a"]), err(ERR_WRONGTYPE));
        let big = "x".repeat(MAX_COLLECTION_BYTES / 2);
        assert_eq!(call(&mut db, &["zadd", "z", "1", &big]), KvReply::Int(1));
        let before = db.clone();
        assert!(call(&mut db, &["zadd", "z", "1", "b", "2", &format!("{big}2")]).is_error());
        assert_eq!(db, before);
        // updating the big member's score adds nothing
        assert_eq!(
            call(&mut db, &["zadd", "z", "ch", "5", &big]),
            KvReply::Int(1)
        );
    }
}
