//! The controller's choice (seed 004, Lazarus, "Diversity-aware
//! Reconfigurations", step 4: "the one with less risk that requires less
//! changes").
//!
//! Among every set of n distinct pool OS versions, the chosen one minimises,
//! in this order: the configuration risk; the number of replacements from
//! the current set (n minus the OS versions kept); and, for a deterministic
//! tie-break, the sorted list of pool positions (lexicographically
//! smallest). The search is exhaustive (C(17, 4) = 2,380 sets for the
//! seed's pool), refused above [`MAX_CANDIDATES`].

use serde::Serialize;

use crate::day::Day;
use crate::pool::{OsId, Pool};
use crate::risk::{Knowledge, PairRisk};
use crate::LazarusError;

/// The largest number of candidate sets the exhaustive search visits.
pub const MAX_CANDIDATES: u64 = 5_000_000;

/// Replace the replica running `out` by one running `in`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Replace {
    pub out: OsId,
    pub r#in: OsId,
}

/// The chosen set and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// The new set, sorted.
    pub set: Vec<OsId>,
    /// Its risk (severity units).
    pub risk: u64,
    /// Outgoing OS versions (ascending) paired with incoming (ascending).
    pub replace: Vec<Replace>,
}

/// C(p, n), saturating.
pub fn binomial(p: usize, n: usize) -> u64 {
    if n > p {
        return 0;
    }
    (0..n.min(p - n) as u64).fold(1u64, |c, i| c.saturating_mul(p as u64 - i) / (i + 1))
}

/// How many OS versions of `current` a distinct set `cand` keeps.
fn kept(current: &[OsId], cand: &[OsId]) -> usize {
    cand.iter().filter(|o| current.contains(o)).count()
}

/// The replacements from `current` (a multiset) to `set` (distinct).
pub fn replacements(current: &[OsId], set: &[OsId]) -> Vec<Replace> {
    let mut outs = current.to_vec();
    let mut ins = Vec::new();
    for &o in set {
        match outs.iter().position(|&x| x == o) {
            Some(i) => {
                outs.remove(i);
            }
            None => ins.push(o),
        }
    }
    outs.sort_unstable();
    ins.sort_unstable();
    outs.into_iter()
        .zip(ins)
        .map(|(out, r#in)| Replace { out, r#in })
        .collect()
}

/// The best set of `n` distinct OS versions for the pair risks `risk`,
/// starting from `current` (any multiset of pool positions; empty at start).
pub fn choose(current: &[OsId], n: usize, risk: &PairRisk) -> Result<Choice, LazarusError> {
    let p = risk.len();
    if n == 0 || n > p {
        return Err(LazarusError::Plan(format!(
            "a set of {n} distinct OS versions from a pool of {p}"
        )));
    }
    if let Some(o) = current.iter().find(|&&o| o >= p) {
        return Err(LazarusError::Plan(format!(
            "current OS {o} is not in the pool of {p}"
        )));
    }
    if binomial(p, n) > MAX_CANDIDATES {
        return Err(LazarusError::Plan(format!(
            "C({p}, {n}) = {} sets is over the exhaustive search's {MAX_CANDIDATES}",
            binomial(p, n)
        )));
    }
    let mut cand: Vec<OsId> = (0..n).collect();
    let mut best: Option<(u64, usize, Vec<OsId>)> = None;
    loop {
        let key = (risk.set_risk(&cand), n - kept(current, &cand));
        if best.as_ref().is_none_or(|(r, c, _)| key < (*r, *c)) {
            best = Some((key.0, key.1, cand.clone()));
        }
        // the next combination in lexicographic order
        let Some(i) = (0..n).rev().find(|&i| cand[i] < p - n + i) else {
            break;
        };
        cand[i] += 1;
        for j in i + 1..n {
            cand[j] = cand[j - 1] + 1;
        }
    }
    let (r, _, set) = best.expect("at least one candidate set");
    Ok(Choice {
        replace: replacements(current, &set),
        set,
        risk: r,
    })
}

/// The controller's plan on day `now`: the replacements that take the
/// replica set `current` (pool positions, one per replica) to the
/// lowest-risk set of the same size reachable with the fewest changes, from
/// the vulnerabilities of `data` published by `now`. Empty when the current
/// set is already the choice. `data` must have been built for `pool`.
pub fn plan(
    current: &[OsId],
    pool: &Pool,
    data: &Knowledge,
    now: Day,
) -> Result<Vec<Replace>, LazarusError> {
    if data.pool != *pool {
        return Err(LazarusError::Plan(
            "the vulnerability data was mapped to another pool".into(),
        ));
    }
    Ok(choose(current, current.len(), &data.pair_risk(now))?.replace)
}
