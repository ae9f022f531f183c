//! AWARE's self-monitoring and synchronization (paper §IV-A/B; digest §3.4
//! "Monitoring", "Synchronization", "Sanitization"; `aware-model.md` §2.3 for
//! the authors' running system), sans-IO and deterministic.
//!
//! | paper | here |
//! |---|---|
//! | WRITE-RESPONSE echoing a random challenge (no early answers) | [`Probe::challenge`] issues one, [`Probe::response`] accepts only the echo of a challenge sent to that peer |
//! | per-replica latency vector L_i over a monitoring window | [`Probe::vector`]: the median (index len/2 of the sorted window) of one-way samples (round trip / 2, in ns); an empty window reports [`INF`]; the own entry 0 |
//! | overhead bound ω ∈ [0, 1] | [`Overhead`]: probe one instance in every ⌈1/ω⌉ |
//! | `invokeOrdered(MEASURE, L^P_i, L^W_i)` | [`Measure`], applied in the total order by [`Synced::apply`], so every correct replica holds the same matrices after a given instance |
//! | off-diagonal entries start at +∞; a row goes back to +∞ after c rounds without a report | [`Synced::matrices`] at an instance |
//! | sanitization M̂[i,j] = max(M[i,j], M[j,i]) | [`sanitize`] |
//! | optional DUMMY-PROPOSE (one rotating non-leader) | [`Overhead::dummy_proposer`]; without it M_P is M_W, as in the authors' code |
//!
//! Not here yet: the SMR messages that carry challenges and MEASUREs, and
//! the controller that runs the search every c instances and applies its
//! result (issue 14 items 2–4 on the replica).
//!
//! Deviation: the authors' code keeps every challenge it sent; a probe here
//! keeps at most `window` outstanding challenges per peer (the oldest is
//! forgotten), so a peer that never answers cannot grow the table.

use std::collections::{BTreeMap, VecDeque};

use crate::{AwareError, Matrix};

/// An unknown or stale latency, in ns (the authors' 10^15).
pub const INF: u64 = 1_000_000_000_000_000;

/// Nanoseconds per unit of [`Matrix`] (0.01 ms).
const NS_PER_UNIT: u64 = 10_000;

/// Why a response or a MEASURE was refused (a fault of its sender).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitorError {
    #[error("replica {peer} echoed a challenge it was not sent")]
    UnknownChallenge { peer: usize },
    #[error("replica {from} reported {len} latencies for a group of {n}")]
    BadLength { from: usize, len: usize, n: usize },
    #[error("no replica {0} in this group")]
    NoSuchReplica(usize),
}

/// How often replicas probe: ω ∈ [0, 1] of the instances.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overhead {
    pub omega: f64,
}

impl Overhead {
    pub fn new(omega: f64) -> Result<Overhead, AwareError> {
        if !(0.0..=1.0).contains(&omega) {
            return Err(AwareError::Omega(omega.to_string()));
        }
        Ok(Overhead { omega })
    }

    /// Whether instance `i` carries challenges: one in every ⌈1/ω⌉.
    pub fn probes(&self, i: u64) -> bool {
        self.omega > 0.0 && i.is_multiple_of((1.0 / self.omega).ceil() as u64)
    }

    /// The one non-leader that sends a DUMMY-PROPOSE at probed instance `i`
    /// (rotating over the others), if the instance is probed.
    pub fn dummy_proposer(&self, i: u64, n: usize, leader: usize) -> Option<usize> {
        if !self.probes(i) || n < 2 {
            return None;
        }
        let k = (i % (n as u64 - 1)) as usize;
        Some(if k >= leader { k + 1 } else { k })
    }
}

/// One replica's measurements of its peers.
#[derive(Clone, Debug)]
pub struct Probe {
    me: usize,
    window: usize,
    /// Per peer: outstanding challenges and when they left (ns).
    sent: Vec<VecDeque<(u64, u64)>>,
    /// Per peer: the last `window` one-way samples (ns).
    samples: Vec<VecDeque<u64>>,
}

impl Probe {
    pub fn new(me: usize, n: usize, window: usize) -> Probe {
        let window = window.max(1);
        Probe {
            me,
            window,
            sent: vec![VecDeque::new(); n],
            samples: vec![VecDeque::new(); n],
        }
    }

    /// Records `challenge` (drawn from the context's randomness) sent to
    /// `peer` at `now` (ns); the peer's response must echo it.
    pub fn challenge(&mut self, peer: usize, challenge: u64, now: u64) -> Result<(), MonitorError> {
        let q = self
            .sent
            .get_mut(peer)
            .ok_or(MonitorError::NoSuchReplica(peer))?;
        if q.len() == self.window {
            q.pop_front();
        }
        q.push_back((challenge, now));
        Ok(())
    }

    /// A response from `peer` echoing `challenge`, received at `now`: one
    /// sample of (now − sent) / 2. An echo of a challenge never sent to that
    /// peer (guessed, replayed, or meant for another) is refused.
    pub fn response(&mut self, peer: usize, challenge: u64, now: u64) -> Result<(), MonitorError> {
        let q = self
            .sent
            .get_mut(peer)
            .ok_or(MonitorError::NoSuchReplica(peer))?;
        let at = q
            .iter()
            .position(|(c, _)| *c == challenge)
            .ok_or(MonitorError::UnknownChallenge { peer })?;
        let (_, sent) = q.remove(at).expect("found");
        let s = &mut self.samples[peer];
        if s.len() == self.window {
            s.pop_front();
        }
        s.push_back(now.saturating_sub(sent) / 2);
        Ok(())
    }

    /// L_i: per peer the median of the window (the element at len/2 of the
    /// sorted samples), [`INF`] without samples, 0 for itself.
    pub fn vector(&self) -> Vec<u64> {
        (0..self.samples.len())
            .map(|j| {
                if j == self.me {
                    return 0;
                }
                let mut s: Vec<u64> = self.samples[j].iter().copied().collect();
                s.sort_unstable();
                s.get(s.len() / 2).copied().unwrap_or(INF)
            })
            .collect()
    }
}

/// A MEASURE request: replica `from`'s latency vectors, ordered by the SMR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measure {
    pub from: usize,
    /// L^W: WRITE latencies (ns).
    pub write: Vec<u64>,
    /// L^P: DUMMY-PROPOSE latencies, if enabled.
    pub propose: Option<Vec<u64>>,
}

/// The replicated matrices: state of the service every correct replica
/// applies MEASUREs to in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    n: usize,
    /// Rounds after which an unreported row goes back to +∞.
    c: u64,
    /// Per replica: its last report and the instance it was ordered at.
    rows: BTreeMap<usize, (u64, Measure)>,
}

impl Synced {
    pub fn new(n: usize, c: u64) -> Synced {
        Synced {
            n,
            c,
            rows: BTreeMap::new(),
        }
    }

    /// Applies a MEASURE ordered at `instance`. Entries are capped at
    /// [`INF`] and the sender's own entry is 0, whatever it claimed.
    pub fn apply(&mut self, instance: u64, mut m: Measure) -> Result<(), MonitorError> {
        let n = self.n;
        if m.from >= n {
            return Err(MonitorError::NoSuchReplica(m.from));
        }
        let from = m.from;
        for v in std::iter::once(&mut m.write).chain(m.propose.as_mut()) {
            if v.len() != n {
                let len = v.len();
                return Err(MonitorError::BadLength { from, len, n });
            }
            v.iter_mut().for_each(|x| *x = (*x).min(INF));
            v[from] = 0;
        }
        self.rows.insert(from, (instance, m));
        Ok(())
    }

    /// (M̂_P, M̂_W) at `instance`, sanitized, in [`Matrix`] units: rows
    /// reported within the last `c` instances, +∞ off the diagonal for the
    /// others; M_P is M_W where a replica sent no propose latencies.
    pub fn matrices(&self, instance: u64) -> Result<(Matrix, Matrix), AwareError> {
        let fresh = |i: usize| {
            self.rows
                .get(&i)
                .filter(|(at, _)| instance.saturating_sub(*at) <= self.c)
                .map(|(_, m)| m)
        };
        let row = |i: usize, propose: bool| -> Vec<u64> {
            match fresh(i) {
                Some(m) if propose => m.propose.clone().unwrap_or_else(|| m.write.clone()),
                Some(m) => m.write.clone(),
                None => (0..self.n).map(|j| if j == i { 0 } else { INF }).collect(),
            }
        };
        let build = |propose: bool| {
            let raw: Vec<Vec<u64>> = (0..self.n).map(|i| row(i, propose)).collect();
            Matrix::new(
                sanitize(&raw)
                    .into_iter()
                    .map(|r| r.into_iter().map(|ns| (ns / NS_PER_UNIT) as i64).collect())
                    .collect(),
            )
        };
        Ok((build(true)?, build(false)?))
    }
}

/// M̂[i][j] = max(M[i][j], M[j][i]): no replica looks faster than its peers
/// measured it, and none blames another without being blamed equally.
pub fn sanitize(m: &[Vec<u64>]) -> Vec<Vec<u64>> {
    (0..m.len())
        .map(|i| (0..m.len()).map(|j| m[i][j].max(m[j][i])).collect())
        .collect()
}

#[cfg(test)]
mod tests;
