//! AWARE's latency predictor and its search for the best weights and leader.
//!
//! Paper map: Berger, Reiser, Sousa, Bessani, "AWARE: Adaptive Wide-Area
//! Replication for Fast and Resilient Byzantine Consensus" (seed 004; digest
//! `byzcast-steward-wheat-aware-lazarus.md` §3.4). The model follows, to the
//! bit, the public implementation the paper's table came from (bergerch/aware,
//! `Simulator.java`), as restated in `../shared/reference/aware-model.md`:
//!
//! - [`Matrix`]: one-way delays, row = sender, in 0.01 ms (§2);
//! - [`predict`]: PredictLatency, R rounds of PROPOSE → WRITE → ACCEPT over
//!   weighted quorums (WHEAT: V_max for the `u` members of R_max, V_min = 1
//!   for the others, Q = 2f·V_max + 1 in doubles) with the carry-over of
//!   replicas that decide after the leader, averaged with a truncating
//!   division (§3);
//! - the weighted-quorum time of a set of votes polls them from a binary heap
//!   exactly as Java's `PriorityQueue` does, because the double sum of the
//!   weights can stop just short of Q and so the poll order of tied votes
//!   matters (§4; [`heap`]);
//! - [`exhaustive`]: every ⟨R_max, leader ∈ R_max⟩ in lexicographic order, the
//!   first minimum wins (§5.1); [`anneal`]: the simulated annealing with
//!   `java.util.Random` (§5.2), what the running controller uses above 10
//!   replicas; [`best`] picks between them as the controller does.
//!
//! [`monitor`] fills the matrices at run time, sans-IO: challenge-bearing
//! WRITE-RESPONSE probes, latency vectors, the totally ordered MEASUREs with
//! +∞ staleness, and max-sanitization. The SMR messages that carry them and
//! the controller that applies a search result are not here yet (issue 14
//! items 2–4). [`attacks`] studies what lying replicas can cost after
//! sanitization (item 5), on the model.

pub mod attacks;
mod heap;
mod jrandom;
pub mod monitor;
mod search;

pub use search::{anneal, best, exhaustive, Found, Search};

use std::fmt;

/// Why a matrix or a parameter set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwareError {
    #[error("matrix line {line}: {why}")]
    Matrix { line: usize, why: String },
    #[error("the matrix is {rows}×{cols}: it must be square and at least 4×4")]
    Shape { rows: usize, cols: usize },
    #[error("Δ = {delta} leaves f = 0 for n = {n} (f = (n − 1 − Δ) / 3 must be at least 1)")]
    NoFaults { n: usize, delta: usize },
    #[error("the weights never reach the quorum (n = {n}, f = {f}, Δ = {delta})")]
    NoQuorum { n: usize, f: usize, delta: usize },
    /// (as text: the error stays `Eq`)
    #[error("the monitoring overhead ω = {0} is not in [0, 1]")]
    Omega(String),
}

/// One-way delays in 0.01 ms: `at(s, r)` is the delay of a message from `s`
/// to `r`. Kept as read (asymmetric, diagonal included, not halved).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    n: usize,
    cells: Vec<i64>,
}

impl Matrix {
    /// From rows of integer delays (0.01 ms).
    pub fn new(rows: Vec<Vec<i64>>) -> Result<Self, AwareError> {
        let n = rows.len();
        if n < 4 || rows.iter().any(|r| r.len() != n) {
            let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
            return Err(AwareError::Shape { rows: n, cols });
        }
        Ok(Matrix {
            n,
            cells: rows.into_iter().flatten().collect(),
        })
    }

    /// From comma-separated milliseconds, one sender per line, no header
    /// (the AWARE data format): each entry × 100, rounded half up.
    pub fn parse_ms(text: &str) -> Result<Self, AwareError> {
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let row = line
                .split(',')
                .map(|c| {
                    let v: f64 = c.trim().parse().map_err(|_| AwareError::Matrix {
                        line: i + 1,
                        why: format!("{:?} is not a number", c.trim()),
                    })?;
                    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
                        let why = format!("{v} ms is not a delay");
                        return Err(AwareError::Matrix { line: i + 1, why });
                    }
                    // Java's Math.round: floor(x + 1/2)
                    Ok((v * 100.0 + 0.5).floor() as i64)
                })
                .collect::<Result<Vec<i64>, AwareError>>()?;
            rows.push(row);
        }
        Matrix::new(rows)
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// The delay from `s` to `r`.
    pub fn at(&self, s: usize, r: usize) -> i64 {
        self.cells[s * self.n + r]
    }
}

/// The fault model the weights and quorum come from (WHEAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Bft,
    Cft,
}

/// n, f and Δ of one search, and what follows from them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub n: usize,
    pub f: usize,
    pub delta: usize,
    pub mode: Mode,
    /// Rounds averaged per prediction (10 in every search of the paper).
    pub rounds: usize,
}

impl Params {
    /// BFT with f = (n − 1 − Δ) / 3, as the authors' table sweeps Δ.
    pub fn bft(n: usize, delta: usize) -> Result<Self, AwareError> {
        let f = n.saturating_sub(1 + delta) / 3;
        if f == 0 {
            return Err(AwareError::NoFaults { n, delta });
        }
        Ok(Params {
            n,
            f,
            delta,
            mode: Mode::Bft,
            rounds: 10,
        })
    }

    /// Members of R_max: 2f (BFT) or f (CFT).
    pub fn u(&self) -> usize {
        match self.mode {
            Mode::Bft => 2 * self.f,
            Mode::Cft => self.f,
        }
    }

    /// V_max = 1 + Δ/f, in doubles (division first).
    pub fn vmax(&self) -> f64 {
        1.0 + (self.delta as f64) / (self.f as f64)
    }

    /// Q = 2f·V_max + 1 (BFT) or f·V_max + 1 (CFT), in doubles.
    pub fn quorum(&self) -> f64 {
        let k = match self.mode {
            Mode::Bft => 2 * self.f,
            Mode::Cft => self.f,
        };
        (k as f64) * self.vmax() + 1.0
    }
}

/// A configuration: the leader and the sorted members of R_max (the leader
/// among them).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Config {
    pub leader: usize,
    pub rmax: Vec<usize>,
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: Vec<String> = self.rmax.iter().map(|m| m.to_string()).collect();
        write!(f, "leader {} R_max {{{}}}", self.leader, members.join(" "))
    }
}

/// PredictLatency (§3): the mean consensus latency, in the matrix's unit,
/// of `rounds` consecutive instances led by `c.leader` with weights V_max on
/// `c.rmax`.
pub fn predict(m: &Matrix, p: &Params, c: &Config) -> Result<i64, AwareError> {
    let n = m.n();
    let (vmax, q) = (p.vmax(), p.quorum());
    let mut weight = vec![1.0; n];
    for &i in &c.rmax {
        weight[i] = vmax;
    }
    let no_quorum = || AwareError::NoQuorum {
        n,
        f: p.f,
        delta: p.delta,
    };
    let mut offset = vec![0i64; n];
    let mut heap = heap::Heap::with_capacity(n);
    let mut total: i64 = 0;
    let l = c.leader;
    for _ in 0..p.rounds {
        // PROPOSE: a replica takes it once done with the previous instance
        let tp: Vec<i64> = (0..n).map(|i| offset[i].max(m.at(l, i))).collect();
        // WRITE: j's vote reaches i at tp[j] + M[j][i]
        let tw = heap
            .quorum_times(n, &weight, q, |j, i| tp[j] + m.at(j, i))
            .ok_or_else(no_quorum)?;
        // ACCEPT (CFT: from the receiver's own PROPOSE time)
        let td = heap
            .quorum_times(n, &weight, q, |j, i| match p.mode {
                Mode::Bft => tw[j] + m.at(j, i),
                Mode::Cft => tp[i] + m.at(j, i),
            })
            .ok_or_else(no_quorum)?;
        let decided = td[l];
        total += decided;
        // replicas deciding after the leader start the next instance late
        for (o, t) in offset.iter_mut().zip(&td) {
            *o = (t - decided).max(0);
        }
    }
    Ok(total / p.rounds as i64)
}

#[cfg(test)]
mod tests;
