//! The effectiveness study (seed 004, Lazarus, "LAZARUS Effectiveness": a
//! knowledge base of OS vulnerabilities, a run is compromised if a published
//! vulnerability affects more than f hosts of the configuration, each
//! strategy executed a thousand times).
//!
//! One run, from its seed: a start day drawn uniformly so that at least
//! `history_days` of data precede it and `horizon_days` follow it. Every
//! strategy picks its set at the start from what is published by then; the
//! vulnerabilities published in (start, start + horizon] then arrive one at a
//! time in (day, id) order. At each one the oracle first checks the new
//! vulnerability against the current set (it is public before anyone can
//! react): without a patch and affecting more than f replicas means
//! compromised. Then the strategy reacts, and a set it moves to is checked
//! against every unpatched vulnerability published since the start. The
//! data before the start is the knowledge base the strategies choose from,
//! not part of the oracle (as in the seed: the knowledge base ends before
//! the execution). The run's result is the day of its first compromise, if
//! any.
//!
//! Strategies: **Lazarus** re-plans ([`crate::plan::choose`]) after every
//! publication; **random** draws n distinct OS versions uniformly at the
//! start and again after every publication (the same rate); **fixed
//! diverse** keeps Lazarus's choice at the start for the whole run;
//! **homogeneous** runs one OS version, drawn uniformly per run, on all n
//! replicas. Each strategy has its own random stream per run, so adding a
//! strategy does not change the others.

use rand::seq::IteratorRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::day::Day;
use crate::plan::{choose, replacements};
use crate::pool::OsId;
use crate::risk::Knowledge;
use crate::LazarusError;

/// How replica sets are managed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Lazarus,
    Random,
    FixedDiverse,
    Homogeneous,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Lazarus,
        Strategy::Random,
        Strategy::FixedDiverse,
        Strategy::Homogeneous,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Lazarus => "lazarus",
            Strategy::Random => "random",
            Strategy::FixedDiverse => "fixed-diverse",
            Strategy::Homogeneous => "homogeneous",
        }
    }
}

/// The study's parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StudyConfig {
    pub runs: u32,
    /// Replicas.
    pub n: usize,
    /// Tolerated faults: a run is compromised past f hit replicas.
    pub f: usize,
    pub seed: u64,
    /// Data needed before a start day (the knowledge base of the start).
    pub history_days: i32,
    /// How long a run lasts.
    pub horizon_days: i32,
}

impl Default for StudyConfig {
    fn default() -> Self {
        StudyConfig {
            runs: 1000,
            n: 4,
            f: 1,
            seed: 1,
            history_days: 365,
            horizon_days: 365,
        }
    }
}

impl StudyConfig {
    /// Checks the parameters against a pool of `pool` OS versions.
    pub fn validate(&self, pool: usize) -> Result<(), LazarusError> {
        let bad = |s: String| Err(LazarusError::Study(s));
        if self.runs == 0 {
            return bad("--runs must be at least 1".into());
        }
        if self.n == 0 || self.n > pool {
            return bad(format!(
                "--n {} must be between 1 and the pool size {pool}",
                self.n
            ));
        }
        if self.f >= self.n {
            return bad(format!("--f {} must be below --n {}", self.f, self.n));
        }
        if self.history_days < 0 || self.horizon_days < 1 {
            return bad("the history must be ≥ 0 days and the horizon ≥ 1 day".into());
        }
        Ok(())
    }
}

/// One strategy's outcome over all runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StrategyResult {
    pub strategy: Strategy,
    pub compromised_runs: u32,
    pub compromised_percent: f64,
    /// Mean replacements per run.
    pub replacements_per_run: f64,
    /// Mean day of the first compromise, over compromised runs.
    pub mean_first_compromise_day: Option<f64>,
    /// (day, runs compromised by then), every 7 days and at the horizon.
    pub curve: Vec<(i32, u32)>,
}

/// The whole study.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StudyReport {
    pub config: StudyConfig,
    pub pool: Vec<String>,
    /// Vulnerabilities that affect the pool, and their span.
    pub vulnerabilities: usize,
    pub data_first: Day,
    pub data_last: Day,
    /// The range start days are drawn from.
    pub start_from: Day,
    pub start_to: Day,
    pub results: Vec<StrategyResult>,
}

/// What one run of one strategy gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// Days from the start to the first compromise.
    pub compromised_on: Option<i32>,
    pub replacements: u32,
}

/// A run's random stream for one use (`tag`).
fn stream(seed: u64, run: u32, tag: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(u64::from(run) * 8 + tag);
    r
}

/// Whether an unpatched vulnerability among `entries` hits more than f
/// replicas of `set`.
fn exposed(entries: &[crate::risk::Entry], set: &[OsId], f: usize) -> bool {
    entries.iter().any(|e| !e.patch && e.hits(set) > f)
}

/// One run of one strategy from day `start`.
pub fn run_one(
    kb: &Knowledge,
    cfg: &StudyConfig,
    strategy: Strategy,
    start: Day,
    rng: &mut ChaCha8Rng,
) -> Result<RunOutcome, LazarusError> {
    let p = kb.pool.len();
    let known0 = kb.known_at(start);
    let mut set: Vec<OsId> = match strategy {
        Strategy::Lazarus | Strategy::FixedDiverse => {
            choose(&[], cfg.n, &kb.pair_risk_of(known0, start))?.set
        }
        Strategy::Random => random_set(rng, p, cfg.n),
        Strategy::Homogeneous => vec![rng.gen_range(0..p); cfg.n],
    };
    let mut out = RunOutcome {
        compromised_on: None,
        replacements: 0,
    };
    let mark = |out: &mut RunOutcome, day: Day| {
        out.compromised_on.get_or_insert(day.0 - start.0);
    };
    let end = kb.known_at(Day(start.0 + cfg.horizon_days));
    for i in known0..end {
        let e = &kb.entries[i];
        if !e.patch && e.hits(&set) > cfg.f {
            mark(&mut out, e.published);
        }
        let next = match strategy {
            Strategy::Lazarus => choose(&set, cfg.n, &kb.pair_risk_of(i + 1, e.published))?.set,
            Strategy::Random => random_set(rng, p, cfg.n),
            Strategy::FixedDiverse | Strategy::Homogeneous => continue,
        };
        let moved = replacements(&set, &next).len() as u32;
        if moved > 0 {
            out.replacements += moved;
            set = next;
            if exposed(&kb.entries[known0..=i], &set, cfg.f) {
                mark(&mut out, e.published);
            }
        }
    }
    Ok(out)
}

fn random_set(rng: &mut ChaCha8Rng, p: usize, n: usize) -> Vec<OsId> {
    let mut s = (0..p).choose_multiple(rng, n);
    s.sort_unstable();
    s
}

/// Runs the study: `cfg.runs` seeded runs of every strategy on `kb`.
pub fn study(kb: &Knowledge, cfg: &StudyConfig) -> Result<StudyReport, LazarusError> {
    cfg.validate(kb.pool.len())?;
    let (Some(first), Some(last)) = (kb.entries.first(), kb.entries.last()) else {
        return Err(LazarusError::Study(
            "no vulnerability of the data affects the pool".into(),
        ));
    };
    let (lo, hi) = (
        first.published.0 + cfg.history_days,
        last.published.0 - cfg.horizon_days,
    );
    if lo > hi {
        return Err(LazarusError::Study(format!(
            "the data spans {} to {}: too short for {} days of history and a {}-day horizon",
            first.published, last.published, cfg.history_days, cfg.horizon_days
        )));
    }
    let mut outcomes = vec![Vec::with_capacity(cfg.runs as usize); Strategy::ALL.len()];
    for run in 0..cfg.runs {
        let start = Day(stream(cfg.seed, run, 0).gen_range(lo..=hi));
        for (s, strategy) in Strategy::ALL.iter().enumerate() {
            let mut rng = stream(cfg.seed, run, 1 + s as u64);
            outcomes[s].push(run_one(kb, cfg, *strategy, start, &mut rng)?);
        }
    }
    let results = Strategy::ALL
        .iter()
        .zip(&outcomes)
        .map(|(s, o)| summarize(*s, o, cfg))
        .collect();
    Ok(StudyReport {
        config: cfg.clone(),
        pool: kb.pool.os.iter().map(|o| o.id.clone()).collect(),
        vulnerabilities: kb.entries.len(),
        data_first: first.published,
        data_last: last.published,
        start_from: Day(lo),
        start_to: Day(hi),
        results,
    })
}

fn summarize(strategy: Strategy, o: &[RunOutcome], cfg: &StudyConfig) -> StrategyResult {
    let days: Vec<i32> = o.iter().filter_map(|r| r.compromised_on).collect();
    let runs = o.len().max(1) as f64;
    let mut marks: Vec<i32> = (0..cfg.horizon_days).step_by(7).collect();
    marks.push(cfg.horizon_days);
    StrategyResult {
        strategy,
        compromised_runs: days.len() as u32,
        compromised_percent: 100.0 * days.len() as f64 / runs,
        replacements_per_run: o.iter().map(|r| f64::from(r.replacements)).sum::<f64>() / runs,
        mean_first_compromise_day: (!days.is_empty())
            .then(|| days.iter().map(|&d| f64::from(d)).sum::<f64>() / days.len() as f64),
        curve: marks
            .into_iter()
            .map(|m| (m, days.iter().filter(|&&d| d <= m).count() as u32))
            .collect(),
    }
}
