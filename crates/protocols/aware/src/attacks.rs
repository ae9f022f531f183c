//! What lying about latencies can cost AWARE after sanitization (issue 14
//! item 5; paper §IV-C "Byzantine measurements", digest §3.4
//! "Sanitization"): a model study, run on a latency matrix, of the
//! configurations the search picks from the matrices Byzantine replicas
//! poison, and of the consensus latency those configurations then give.
//!
//! Every replica reports a latency vector (its row); correct ones report the
//! truth, the Byzantine ones one of the [`Lie`]s. The matrix is sanitized
//! ([`crate::monitor::sanitize`]: M̂[i,j] = max(M[i,j], M[j,i])) and searched
//! ([`crate::best`]), exactly as the replicas do it. The study compares the
//! configuration chosen under lies with the one chosen from true reports,
//! both evaluated by PredictLatency on the *true* matrix in two ways:
//!
//! - the Byzantine replicas vote in consensus as correct ones would (what
//!   the lie alone moved);
//! - the Byzantine replicas stay silent in consensus, which BFT always
//!   tolerates and which is the most they can do undetected: a Byzantine
//!   V_max voter then withholds a heavy vote (a Byzantine leader would be
//!   replaced by a view change; such cases are counted, not timed).
//!
//! The difference between the two configurations under the same behaviour
//! is the cost of the lie. Lies that the protocol refuses outright need no
//! study: a response to a challenge not yet received is refused
//! ([`crate::monitor::Probe::response`]), so answering early only shows the
//! liar as it is, and a MEASURE out of shape is a fault
//! ([`crate::monitor::Synced::apply`]).
//!
//! A correct replica reports what its probes measure, half the round trip
//! ([`crate::monitor::Probe::vector`]): (T[i,j] + T[j,i]) / 2 of the true
//! one-way delays T, so correct reports of a link agree and a liar's claim
//! on a link it shares with a correct replica is undone by sanitization.
//! Deviation from a run: no jitter (the median of a window), and every
//! correct row is fresh; the study isolates what the lie does.

use crate::{best, predict, AwareError, Config, Matrix, Params, Search};

/// +∞ in [`Matrix`] units (the monitor's [`crate::monitor::INF`] ns).
pub const INF: i64 = (crate::monitor::INF / 10_000) as i64;

/// What Byzantine replicas report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// Every Byzantine replica claims 0 delay to every replica.
    ClaimFast,
    /// Every Byzantine replica reports +∞ to `victim` and never answers
    /// its challenges (so `victim` reports the link as +∞ too).
    Blame { victim: usize },
    /// The Byzantine replicas claim 0 delay on the links among themselves
    /// (needs two of them: f ≥ 2), and report the rest truthfully.
    Collude,
    /// The Byzantine replicas send no MEASURE: their rows go stale (+∞).
    Withhold,
}

impl Lie {
    pub fn name(&self) -> String {
        match self {
            Lie::ClaimFast => "claim-fast".into(),
            Lie::Blame { victim } => format!("blame {victim}"),
            Lie::Collude => "collude".into(),
            Lie::Withhold => "withhold".into(),
        }
    }
}

/// The latency vectors all replicas report (rows, [`Matrix`] units) when
/// `byzantine` tell `lie` and the others the truth.
pub fn reports(truth: &Matrix, byzantine: &[usize], lie: Lie) -> Vec<Vec<u64>> {
    let n = truth.n();
    let byz = |i: usize| byzantine.contains(&i);
    let measured = |i: usize, j: usize| ((truth.at(i, j) + truth.at(j, i)).max(0) / 2) as u64;
    let mut rows: Vec<Vec<u64>> = (0..n)
        .map(|i| (0..n).map(|j| measured(i, j)).collect())
        .collect();
    let inf = INF as u64;
    for (i, row) in rows.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            if i == j {
                continue;
            }
            match lie {
                Lie::ClaimFast if byz(i) => *cell = 0,
                Lie::Blame { victim } if (byz(i) && j == victim) || (i == victim && byz(j)) => {
                    *cell = inf
                }
                Lie::Collude if byz(i) && byz(j) => *cell = 0,
                Lie::Withhold if byz(i) => *cell = inf,
                _ => {}
            }
        }
    }
    rows
}

/// What every replica reports when all tell the truth.
pub fn truthful(truth: &Matrix) -> Vec<Vec<u64>> {
    reports(truth, &[], Lie::ClaimFast)
}

/// The matrix the replicas search: the reports sanitized.
pub fn sanitized(reports: &[Vec<u64>]) -> Result<Matrix, AwareError> {
    let rows = crate::monitor::sanitize(reports)
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.min(INF as u64) as i64).collect())
        .collect();
    Matrix::new(rows)
}

/// `truth` with the messages of `silent` never arriving.
pub fn silenced(truth: &Matrix, silent: &[usize]) -> Result<Matrix, AwareError> {
    let n = truth.n();
    let rows = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i != j && silent.contains(&i) {
                        INF
                    } else {
                        truth.at(i, j)
                    }
                })
                .collect()
        })
        .collect();
    Matrix::new(rows)
}

/// One case of the study: the configurations chosen from true and from
/// poisoned reports, and their latencies on the true matrix (units of
/// 0.01 ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub byzantine: Vec<usize>,
    pub lie: Lie,
    pub honest: Config,
    pub lied: Config,
    /// What the replicas predict for `lied` on the poisoned matrix.
    pub believed: i64,
    /// `honest` and `lied` with the Byzantine replicas voting.
    pub honest_voting: i64,
    pub lied_voting: i64,
    /// `honest` and `lied` with the Byzantine replicas silent; `None` when a
    /// Byzantine replica leads (a view change replaces it).
    pub honest_silent: Option<i64>,
    pub lied_silent: Option<i64>,
}

impl Case {
    /// Byzantine members of the V_max set chosen under lies, and without.
    pub fn byzantine_vmax(&self) -> (usize, usize) {
        let count = |c: &Config| c.rmax.iter().filter(|r| self.byzantine.contains(r)).count();
        (count(&self.lied), count(&self.honest))
    }
}

/// The study on one true matrix: the configuration chosen from true
/// reports, searched once, then one [`Case`] per lie.
pub struct Study<'a> {
    truth: &'a Matrix,
    p: Params,
    how: Search,
    honest: crate::Found,
}

impl<'a> Study<'a> {
    pub fn new(truth: &'a Matrix, p: Params, how: Search) -> Result<Self, AwareError> {
        let honest = best(&sanitized(&truthful(truth))?, &p, how)?;
        Ok(Study {
            truth,
            p,
            how,
            honest,
        })
    }

    /// The configuration correct reports lead to.
    pub fn honest(&self) -> &Config {
        &self.honest.config
    }

    /// `byzantine` tell `lie`.
    pub fn case(&self, byzantine: &[usize], lie: Lie) -> Result<Case, AwareError> {
        let (truth, p) = (self.truth, &self.p);
        let poisoned = sanitized(&reports(truth, byzantine, lie))?;
        let lied = best(&poisoned, p, self.how)?;
        let quiet = silenced(truth, byzantine)?;
        let silent = |c: &Config| -> Result<Option<i64>, AwareError> {
            if byzantine.contains(&c.leader) {
                return Ok(None);
            }
            Ok(Some(predict(&quiet, p, c)?))
        };
        let honest = &self.honest.config;
        Ok(Case {
            byzantine: byzantine.to_vec(),
            lie,
            believed: lied.latency,
            honest_voting: predict(truth, p, honest)?,
            lied_voting: predict(truth, p, &lied.config)?,
            honest_silent: silent(honest)?,
            lied_silent: silent(&lied.config)?,
            honest: honest.clone(),
            lied: lied.config,
        })
    }
}

/// Runs one case: `byzantine` tell `lie` on `truth` with parameters `p`.
pub fn case(
    truth: &Matrix,
    p: &Params,
    how: Search,
    byzantine: &[usize],
    lie: Lie,
) -> Result<Case, AwareError> {
    Study::new(truth, *p, how)?.case(byzantine, lie)
}

/// Every set of `k` replicas of `0..n` in lexicographic order.
pub fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut pick: Vec<usize> = (0..k).collect();
    if k > n {
        return out;
    }
    loop {
        out.push(pick.clone());
        let Some(i) = (0..k).rev().find(|&i| pick[i] < n - k + i) else {
            return out;
        };
        pick[i] += 1;
        for j in i + 1..k {
            pick[j] = pick[j - 1] + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five regions in 0.01 ms, symmetric: 0–1 close, 2 far from all.
    fn five() -> Matrix {
        let ms = [
            [0, 10, 90, 40, 50],
            [10, 0, 95, 45, 55],
            [90, 95, 0, 80, 85],
            [40, 45, 80, 0, 30],
            [50, 55, 85, 30, 0],
        ];
        Matrix::new(
            ms.iter()
                .map(|r| r.iter().map(|v| v * 100).collect())
                .collect(),
        )
        .unwrap()
    }

    fn p5() -> Params {
        Params::bft(5, 1).unwrap()
    }

    #[test]
    fn sanitization_undoes_a_claim_of_speed_on_symmetric_links() {
        let m = five();
        for b in 0..5 {
            let c = case(&m, &p5(), Search::Exhaustive, &[b], Lie::ClaimFast).unwrap();
            // every lied-about link is restored by the correct peer's report
            assert_eq!(c.lied, c.honest, "byzantine {b}");
            assert_eq!(c.believed, c.honest_voting);
        }
    }

    #[test]
    fn a_withholding_replica_is_never_chosen_and_costs_what_avoiding_it_costs() {
        let m = five();
        for b in 0..5 {
            let c = case(&m, &p5(), Search::Exhaustive, &[b], Lie::Withhold).unwrap();
            assert_ne!(c.lied.leader, b);
            assert!(!c.lied.rmax.contains(&b), "{b} in {}", c.lied);
            // the honest choice is the optimum on the truth
            assert!(c.honest_voting <= c.lied_voting);
        }
    }

    #[test]
    fn blame_poisons_only_the_links_of_the_liar() {
        let m = five();
        let r = reports(&m, &[3], Lie::Blame { victim: 0 });
        let s = sanitized(&r).unwrap();
        for i in 0..5 {
            for j in 0..5 {
                let blamed = (i, j) == (3, 0) || (i, j) == (0, 3);
                assert_eq!(s.at(i, j) == INF, blamed && i != j, "{i}->{j}");
            }
        }
    }

    #[test]
    fn colluders_look_close_to_each_other_and_nothing_else_changes() {
        let m = five();
        let s = sanitized(&reports(&m, &[2, 4], Lie::Collude)).unwrap();
        assert_eq!((s.at(2, 4), s.at(4, 2)), (0, 0));
        assert_eq!(s.at(2, 3), m.at(2, 3));
        assert_eq!(s.at(0, 1), m.at(0, 1));
    }

    #[test]
    fn a_silent_byzantine_leader_is_not_timed() {
        let m = five();
        let c = case(&m, &p5(), Search::Exhaustive, &[0], Lie::ClaimFast).unwrap();
        assert_eq!(c.honest.leader, c.lied.leader);
        if c.lied.leader == 0 {
            assert_eq!(c.lied_silent, None);
        }
        let other = (0..5).find(|&b| b != c.lied.leader).unwrap();
        let c = case(&m, &p5(), Search::Exhaustive, &[other], Lie::ClaimFast).unwrap();
        let t = c.lied_silent.expect("a correct leader is timed");
        // silence of one voter costs something or nothing, never less
        assert!(t >= c.lied_voting && t < INF, "{t}");
    }

    #[test]
    fn subsets_are_all_k_sets_in_order() {
        assert_eq!(subsets(4, 2).len(), 6);
        assert_eq!(subsets(4, 2)[0], vec![0, 1]);
        assert_eq!(subsets(4, 2)[5], vec![2, 3]);
        assert_eq!(subsets(7, 2).len(), 21);
        assert!(subsets(2, 3).is_empty());
    }
}
