//! The searches over ⟨leader, R_max⟩ (aware-model.md §5).

use crate::jrandom::JavaRandom;
use crate::{predict, AwareError, Config, Matrix, Params};

/// Which search [`best`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// Exhaustive up to [`EXHAUSTIVE_UP_TO`] replicas, annealing above (the
    /// running controller's rule).
    Auto,
    Exhaustive,
    /// Simulated annealing seeded with this value.
    Anneal(i64),
}

/// The controller searches exhaustively up to this many replicas.
pub const EXHAUSTIVE_UP_TO: usize = 10;

/// A search's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub config: Config,
    /// Its prediction, in the matrix's unit.
    pub latency: i64,
    /// Configurations predicted.
    pub evaluated: u64,
    /// "exhaustive" or "annealing".
    pub method: &'static str,
}

/// Run the chosen search.
pub fn best(m: &Matrix, p: &Params, how: Search) -> Result<Found, AwareError> {
    match how {
        Search::Exhaustive => exhaustive(m, p),
        Search::Anneal(seed) => anneal(m, p, seed),
        Search::Auto if p.n <= EXHAUSTIVE_UP_TO => exhaustive(m, p),
        Search::Auto => anneal(m, p, 0),
    }
}

/// Every u-subset of 0..n in lexicographic order, every leader in it in
/// ascending order; the first strict minimum wins (§5.1).
pub fn exhaustive(m: &Matrix, p: &Params) -> Result<Found, AwareError> {
    let (n, u) = (p.n, p.u());
    let mut subset: Vec<usize> = (0..u).collect();
    let mut best: Option<(i64, Config)> = None;
    let mut evaluated = 0;
    loop {
        for &leader in &subset {
            let c = Config {
                leader,
                rmax: subset.clone(),
            };
            let latency = predict(m, p, &c)?;
            evaluated += 1;
            if best.as_ref().is_none_or(|(b, _)| latency < *b) {
                best = Some((latency, c));
            }
        }
        if !next_subset(&mut subset, n) {
            break;
        }
    }
    let (latency, config) = best.expect("at least one subset");
    Ok(Found {
        config,
        latency,
        evaluated,
        method: "exhaustive",
    })
}

/// The next sorted u-subset of 0..n in lexicographic order, in place.
fn next_subset(s: &mut [usize], n: usize) -> bool {
    let u = s.len();
    let Some(i) = (0..u).rev().find(|&i| s[i] < n - u + i) else {
        return false;
    };
    s[i] += 1;
    for k in i + 1..u {
        s[k] = s[k - 1] + 1;
    }
    true
}

/// Simulated annealing with `java.util.Random(seed)` (§5.2): start at
/// R_max = {0..u−1} led by 0, swap a random R_max member with a random
/// other replica (the leader's role moves with it), accept worse moves with
/// probability exp(−Δ/temp), cool from 25000 by 0.55% a step down to 0.5.
pub fn anneal(m: &Matrix, p: &Params, seed: i64) -> Result<Found, AwareError> {
    let (n, u) = (p.n, p.u());
    let mut rng = JavaRandom::new(seed);
    let mut x = Config {
        leader: 0,
        rmax: (0..u).collect(),
    };
    let mut px = predict(m, p, &x)?;
    let (mut best, mut pbest) = (x.clone(), px);
    let mut evaluated = 1;
    let mut temp = 25000.0_f64;
    while temp > 0.5 {
        let a = rng.next_int(u as i32) as usize;
        let b = rng.next_int((n - u) as i32) as usize;
        let out = x.rmax[a];
        let inn = (0..n)
            .filter(|i| !x.rmax.contains(i))
            .nth(b)
            .expect("b < n − u");
        let mut rmax: Vec<usize> = x
            .rmax
            .iter()
            .map(|&r| if r == out { inn } else { r })
            .collect();
        rmax.sort_unstable();
        let leader = if out == x.leader { inn } else { x.leader };
        let y = Config { leader, rmax };
        let py = predict(m, p, &y)?;
        evaluated += 1;
        if py < px {
            (x, px) = (y.clone(), py);
        } else {
            let rand = rng.next_double();
            if (-(((py - px) as f64) / temp)).exp() > rand {
                (x, px) = (y.clone(), py);
            }
        }
        if py < pbest {
            (best, pbest) = (y, py);
        }
        temp *= 1.0 - 0.0055;
    }
    Ok(Found {
        config: best,
        latency: pbest,
        evaluated,
        method: "annealing",
    })
}

#[cfg(test)]
mod tests {
    use super::next_subset;

    #[test]
    fn subsets_come_in_lexicographic_order() {
        let mut s = vec![0, 1];
        let mut all = vec![s.clone()];
        while next_subset(&mut s, 4) {
            all.push(s.clone());
        }
        let want = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]];
        assert_eq!(all, want.map(|w| w.to_vec()).to_vec());
    }
}
