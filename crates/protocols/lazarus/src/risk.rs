//! Severity of a vulnerability and the risk of a replica set (seed 004,
//! Lazarus, "Diversity-aware Reconfigurations", steps 2 and 3).
//!
//! Step 2, "CVSSv3 + modifiers": the slide lists eight multipliers, 1, 1.25,
//! 0.94, 0.625, 0.75, 0.5, 0.47 and 0.37. They are exactly the products of
//! three on/off factors, ×5/4, ×3/4 and ×1/2 (1.25·0.75 = 0.9375,
//! 1.25·0.5 = 0.625, 1.25·0.75·0.5 = 0.46875, 0.75·0.5 = 0.375; the slide
//! prints two digits). The seed gives the values, not which factor is which;
//! we read them as: a known exploit ×5/4 (raises the severity), an old
//! vulnerability ×3/4 and an available patch ×1/2 (lower it), old meaning
//! published more than [`Severity::old_after_days`] (365 by default) before
//! the evaluation day. The assignment and the one-year threshold are ours
//! (documented in docs/LAZARUS.md); the eight products are the seed's.
//!
//! Severities are exact integers in units of 1/320 CVSS point (score in
//! tenths × 32 × the multipliers, always a whole number), so sums never
//! round and ties between sets are exact.
//!
//! Step 3: the risk of a configuration is the sum, over every pair of its
//! replicas, of the severities of the vulnerabilities affecting both.

use serde::Serialize;

use crate::day::Day;
use crate::nvd::Vuln;
use crate::pool::{OsId, Pool};
use crate::LazarusError;

/// Severity units per CVSS point.
pub const UNITS_PER_POINT: u64 = 320;

/// The modifiers of step 2 as (numerator, denominator).
pub const EXPLOIT: (u64, u64) = (5, 4);
pub const OLD: (u64, u64) = (3, 4);
pub const PATCH: (u64, u64) = (1, 2);

/// The severity rule's parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Severity {
    /// A vulnerability published more than this many days before the
    /// evaluation day is old.
    pub old_after_days: i32,
}

impl Default for Severity {
    fn default() -> Self {
        Severity {
            old_after_days: 365,
        }
    }
}

/// The multiplier of step 2 as a fraction.
pub fn multiplier(exploit: bool, old: bool, patch: bool) -> (u64, u64) {
    let mut m = (1, 1);
    for (on, (a, b)) in [(exploit, EXPLOIT), (old, OLD), (patch, PATCH)] {
        if on {
            m = (m.0 * a, m.1 * b);
        }
    }
    m
}

/// The severity in units of 1/[`UNITS_PER_POINT`] of a CVSS v3 score given
/// in tenths.
pub fn severity_units(score_tenths: u32, exploit: bool, old: bool, patch: bool) -> u64 {
    let (a, b) = multiplier(exploit, old, patch);
    u64::from(score_tenths) * (UNITS_PER_POINT / 10) * a / b
}

/// A vulnerability reduced to what the controller needs: which pool OS
/// versions it affects (a mask) and its severity inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub published: Day,
    pub score_tenths: u32,
    pub exploit: bool,
    pub patch: bool,
    /// Bit `i` set: pool OS `i` is affected.
    pub affected: u64,
}

impl Entry {
    /// How many replicas of `set` (OS per replica) it affects.
    pub fn hits(&self, set: &[OsId]) -> usize {
        set.iter().filter(|&&o| self.affected >> o & 1 == 1).count()
    }
}

/// The vulnerabilities that affect at least one OS version of a pool.
#[derive(Clone, Debug)]
pub struct Knowledge {
    pub pool: Pool,
    /// Sorted by (published, id).
    pub entries: Vec<Entry>,
    pub severity: Severity,
}

impl Knowledge {
    /// Maps each vulnerability to the pool by CPE matching; those that
    /// affect no pool OS are dropped.
    pub fn build(pool: &Pool, vulns: &[Vuln], severity: Severity) -> Knowledge {
        let mut entries: Vec<Entry> = vulns
            .iter()
            .filter_map(|v| {
                let affected = pool
                    .os
                    .iter()
                    .enumerate()
                    .filter(|(_, os)| v.affected.iter().any(|m| m.matches(os)))
                    .fold(0u64, |m, (i, _)| {
                        m | 1u64.checked_shl(i as u32).unwrap_or(0)
                    });
                (affected != 0).then(|| Entry {
                    id: v.id.clone(),
                    published: v.published,
                    score_tenths: v.score_tenths,
                    exploit: v.exploit,
                    patch: v.patch,
                    affected,
                })
            })
            .collect();
        entries.sort_by(|a, b| (a.published, &a.id).cmp(&(b.published, &b.id)));
        Knowledge {
            pool: pool.clone(),
            entries,
            severity,
        }
    }

    /// The number of entries published on or before `now`.
    pub fn known_at(&self, now: Day) -> usize {
        self.entries.partition_point(|e| e.published <= now)
    }

    /// The severity of an entry on day `now`, in units.
    pub fn units(&self, e: &Entry, now: Day) -> u64 {
        let old = now.0 - e.published.0 > self.severity.old_after_days;
        severity_units(e.score_tenths, e.exploit, old, e.patch)
    }

    /// The pairwise risks of every two pool OS versions from what is
    /// published on or before `now`.
    pub fn pair_risk(&self, now: Day) -> PairRisk {
        self.pair_risk_of(self.known_at(now), now)
    }

    /// The pairwise risks from the first `known` entries, evaluated on day
    /// `now` (the study uses it to see a day's publications one at a time).
    pub fn pair_risk_of(&self, known: usize, now: Day) -> PairRisk {
        let p = self.pool.len();
        let mut r = PairRisk {
            p,
            m: vec![0; p * p],
        };
        let mut os = Vec::with_capacity(p);
        for e in &self.entries[..known.min(self.entries.len())] {
            let u = self.units(e, now);
            os.clear();
            os.extend((0..p).filter(|&i| e.affected >> i & 1 == 1));
            for &i in &os {
                for &j in &os {
                    r.m[i * p + j] += u;
                }
            }
        }
        r
    }
}

/// The configuration risk of two OS versions: the summed severity of the
/// vulnerabilities affecting both (the diagonal: those affecting one OS,
/// which two replicas running the same OS share).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairRisk {
    p: usize,
    m: Vec<u64>,
}

impl PairRisk {
    /// A matrix from explicit values (row-major, symmetric), for tests and
    /// other risk sources.
    pub fn from_matrix(p: usize, m: Vec<u64>) -> Result<PairRisk, LazarusError> {
        if m.len() != p * p || (0..p).any(|i| (0..p).any(|j| m[i * p + j] != m[j * p + i])) {
            return Err(LazarusError::Pool(format!(
                "a pair-risk matrix must be {p}×{p} and symmetric"
            )));
        }
        Ok(PairRisk { p, m })
    }

    pub fn len(&self) -> usize {
        self.p
    }

    pub fn is_empty(&self) -> bool {
        self.p == 0
    }

    pub fn get(&self, a: OsId, b: OsId) -> u64 {
        self.m[a * self.p + b]
    }

    /// The risk of a replica set (one OS per replica; a repeated OS counts
    /// its own vulnerabilities for each pair of its replicas).
    pub fn set_risk(&self, set: &[OsId]) -> u64 {
        let mut r = 0;
        for (i, &a) in set.iter().enumerate() {
            for &b in &set[i + 1..] {
                r += self.get(a, b);
            }
        }
        r
    }
}
