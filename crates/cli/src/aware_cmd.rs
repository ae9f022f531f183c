//! The AWARE commands:
//!
//! - `byzscale aware predict --matrix FILE [--delta D | --all-deltas]`: for
//!   each Δ, f = (n − 1 − Δ)/3, the best leader and V_max set of AWARE's
//!   search and the consensus latency its model predicts (`byzscale_aware`),
//!   comparable with the authors' published outputs on `cloudping-21.csv`.
//! - `byzscale aware attacks --matrix FILE [--regions I,J,..] [--delta D]`:
//!   what replicas lying about latencies can cost after sanitization
//!   (`byzscale_aware::attacks`), for every set of f Byzantine replicas.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use byzscale_aware::attacks::{subsets, Case, Lie, Study};
use byzscale_aware::{best, Matrix, Params, Search};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

/// `byzscale aware ...`.
#[derive(Subcommand, Debug)]
pub enum AwareCommand {
    /// Predict the best ⟨leader, V_max set⟩ and its consensus latency for a
    /// latency matrix (comma-separated milliseconds, row = sender, no header).
    Predict(PredictArgs),
    /// What replicas reporting false latencies can cost after
    /// sanitization: the configuration chosen under each lie against the
    /// one chosen from true reports, both timed on the true matrix.
    Attacks(AttacksArgs),
}

#[derive(Args, Debug)]
pub struct AttacksArgs {
    /// Latency matrix (comma-separated milliseconds, row = sender, no header).
    #[arg(long)]
    pub matrix: PathBuf,
    /// Take these rows and columns of the matrix only (0-based, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<usize>,
    /// Spare replicas Δ (f = (n − 1 − Δ) / 3).
    #[arg(long, default_value_t = 0)]
    pub delta: usize,
    /// At most this many Byzantine sets (of f replicas each), spread evenly
    /// over all of them in lexicographic order.
    #[arg(long, default_value_t = 200)]
    pub max_sets: usize,
    #[command(flatten)]
    pub search: SearchOpts,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SearchArg {
    /// Exhaustive up to 10 replicas, simulated annealing above (the controller's rule).
    Auto,
    /// Every ⟨V_max set, leader⟩ (slow above about 15 replicas).
    Exhaustive,
    /// Simulated annealing with java.util.Random(--seed).
    Annealing,
}

/// How the best configuration is searched.
#[derive(Args, Debug, Clone, Copy)]
pub struct SearchOpts {
    #[arg(long, value_enum, default_value_t = SearchArg::Auto)]
    pub search: SearchArg,
    /// The annealing's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
}

impl SearchOpts {
    fn how(self) -> Search {
        match self.search {
            SearchArg::Auto => Search::Auto,
            SearchArg::Exhaustive => Search::Exhaustive,
            SearchArg::Annealing => Search::Anneal(self.seed),
        }
    }
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[arg(long)]
    pub matrix: PathBuf,
    /// Spare replicas Δ (f = (n − 1 − Δ) / 3).
    #[arg(long, conflicts_with = "all_deltas")]
    pub delta: Option<usize>,
    /// Every Δ from 0 while f ≥ 1 (the authors' table).
    #[arg(long)]
    pub all_deltas: bool,
    #[command(flatten)]
    pub search: SearchOpts,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    delta: usize,
    f: usize,
    leader: usize,
    vmax_set: Vec<usize>,
    vmax: f64,
    /// The model's unit is 0.01 ms.
    latency_ms: f64,
    method: &'static str,
    evaluated: u64,
}

/// `byzscale aware ...`.
pub fn run_aware(cmd: AwareCommand) -> Result<()> {
    match cmd {
        AwareCommand::Predict(a) => predict(a),
        AwareCommand::Attacks(a) => attacks(a),
    }
}

/// The matrix of `path` (its `regions` rows and columns only, if any).
fn read_matrix(path: &std::path::Path, regions: &[usize]) -> Result<Matrix> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let m = Matrix::parse_ms(&text).with_context(|| format!("{}", path.display()))?;
    if regions.is_empty() {
        return Ok(m);
    }
    if let Some(r) = regions.iter().find(|&&r| r >= m.n()) {
        bail!(
            "--regions: {r} is not a row of {} (0..{})",
            path.display(),
            m.n()
        );
    }
    let rows = regions
        .iter()
        .map(|&i| regions.iter().map(|&j| m.at(i, j)).collect())
        .collect();
    Matrix::new(rows).context("--regions")
}

fn predict(a: PredictArgs) -> Result<()> {
    let m = read_matrix(&a.matrix, &[])?;
    let n = m.n();
    let deltas: Vec<usize> = match (a.delta, a.all_deltas) {
        (Some(d), _) => vec![d],
        (None, true) => (0..n).take_while(|d| Params::bft(n, *d).is_ok()).collect(),
        (None, false) => bail!("give --delta D or --all-deltas"),
    };
    let how = a.search.how();
    let mut rows = Vec::new();
    for delta in deltas {
        let p = Params::bft(n, delta)?;
        let found = best(&m, &p, how)?;
        rows.push(Row {
            delta,
            f: p.f,
            leader: found.config.leader,
            vmax_set: found.config.rmax.clone(),
            vmax: p.vmax(),
            latency_ms: found.latency as f64 / 100.0,
            method: found.method,
            evaluated: found.evaluated,
        });
    }
    if a.json {
        let out = serde_json::json!({
            "matrix": a.matrix.display().to_string(), "n": n, "rows": rows,
        });
        println!("{out}");
        return Ok(());
    }
    println!("AWARE prediction for {} (n = {n}, BFT)", a.matrix.display());
    println!(
        "{:>3} {:>2} {:>6}  {:<40} {:>10}  search",
        "Δ", "f", "leader", "V_max set", "latency"
    );
    for r in rows {
        let set: Vec<String> = r.vmax_set.iter().map(|i| i.to_string()).collect();
        println!(
            "{:>3} {:>2} {:>6}  {:<40} {:>7.2} ms  {} ({} evaluated)",
            r.delta,
            r.f,
            r.leader,
            set.join(" "),
            r.latency_ms,
            r.method,
            r.evaluated
        );
    }
    Ok(())
}

/// One lie over every Byzantine set studied.
#[derive(Serialize)]
struct LieRow {
    lie: String,
    cases: usize,
    /// Cases whose chosen configuration differs from the honest one.
    moved: usize,
    /// Cases with a Byzantine leader chosen under the lie, and without.
    byzantine_leader: usize,
    byzantine_leader_honest: usize,
    /// Byzantine V_max members chosen under the lie, and without, summed
    /// (`None` with Δ = 0: every weight is 1 and the set means nothing).
    byzantine_vmax: Option<usize>,
    byzantine_vmax_honest: Option<usize>,
    /// Extra latency of the lie's configuration over the honest one, ms,
    /// with the Byzantine replicas voting: mean and worst.
    voting_extra_mean_ms: f64,
    voting_extra_max_ms: f64,
    /// The same with the Byzantine replicas silent in consensus (cases
    /// with a correct leader in both configurations).
    silent_extra_mean_ms: f64,
    silent_extra_max_ms: f64,
    silent_cases: usize,
    /// The largest extra latency in percent of the honest configuration's.
    worst_percent: f64,
}

/// `weighted`: Δ > 0, so that the V_max set matters (else only the leader
/// makes a configuration).
fn lie_row(lie: String, cases: &[Case], weighted: bool) -> LieRow {
    let ms = |u: i64| u as f64 / 100.0;
    let voting: Vec<i64> = cases
        .iter()
        .map(|c| c.lied_voting - c.honest_voting)
        .collect();
    let silent: Vec<(i64, i64)> = cases
        .iter()
        .filter_map(|c| Some((c.lied_silent? - c.honest_silent?, c.honest_silent?)))
        .collect();
    let mean = |v: &[i64]| ms(v.iter().sum::<i64>()) / v.len().max(1) as f64;
    let silent_extra: Vec<i64> = silent.iter().map(|s| s.0).collect();
    let percent = cases
        .iter()
        .map(|c| 100.0 * (c.lied_voting - c.honest_voting) as f64 / c.honest_voting.max(1) as f64)
        .chain(
            silent
                .iter()
                .map(|(x, h)| 100.0 * *x as f64 / (*h).max(1) as f64),
        )
        .fold(0.0, f64::max);
    let byz = |c: &Case, l: usize| c.byzantine.contains(&l);
    LieRow {
        lie,
        cases: cases.len(),
        moved: cases
            .iter()
            .filter(|c| c.lied.leader != c.honest.leader || (weighted && c.lied != c.honest))
            .count(),
        byzantine_leader: cases.iter().filter(|c| byz(c, c.lied.leader)).count(),
        byzantine_leader_honest: cases.iter().filter(|c| byz(c, c.honest.leader)).count(),
        byzantine_vmax: weighted.then(|| cases.iter().map(|c| c.byzantine_vmax().0).sum()),
        byzantine_vmax_honest: weighted.then(|| cases.iter().map(|c| c.byzantine_vmax().1).sum()),
        voting_extra_mean_ms: mean(&voting),
        voting_extra_max_ms: ms(voting.iter().copied().max().unwrap_or(0)),
        silent_extra_mean_ms: mean(&silent_extra),
        silent_extra_max_ms: ms(silent_extra.iter().copied().max().unwrap_or(0)),
        silent_cases: silent.len(),
        worst_percent: percent,
    }
}

fn attacks(a: AttacksArgs) -> Result<()> {
    let m = read_matrix(&a.matrix, &a.regions)?;
    let n = m.n();
    let p = Params::bft(n, a.delta)?;
    if a.max_sets == 0 {
        bail!("--max-sets must be at least 1");
    }
    let study = Study::new(&m, p, a.search.how())?;
    let all = subsets(n, p.f);
    let stride = all.len().div_ceil(a.max_sets);
    let sets: Vec<&Vec<usize>> = all.iter().step_by(stride).collect();
    let mut lies: Vec<(String, Vec<Case>)> = Vec::new();
    let mut run = |name: &str, each: &dyn Fn(&[usize]) -> Vec<Lie>| -> Result<()> {
        let mut cases = Vec::new();
        for b in &sets {
            for lie in each(b) {
                cases.push(study.case(b, lie)?);
            }
        }
        lies.push((name.to_string(), cases));
        Ok(())
    };
    run("claim-fast", &|_| vec![Lie::ClaimFast])?;
    // blame each correct member of the honest V_max set (its leader included)
    let honest = study.honest().clone();
    run("blame", &|b| {
        let victims = honest.rmax.iter().filter(|v| !b.contains(v));
        victims.map(|&victim| Lie::Blame { victim }).collect()
    })?;
    if p.f >= 2 {
        run("collude", &|_| vec![Lie::Collude])?;
    }
    run("withhold", &|_| vec![Lie::Withhold])?;
    let weighted = a.delta > 0;
    let rows: Vec<LieRow> = lies
        .iter()
        .map(|(l, c)| lie_row(l.clone(), c, weighted))
        .collect();
    if a.json {
        let out = serde_json::json!({
            "matrix": a.matrix.display().to_string(), "regions": a.regions, "n": n,
            "f": p.f, "delta": a.delta, "honest": honest.to_string(),
            "byzantine_sets": sets.len(), "byzantine_sets_total": all.len(), "lies": rows,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "AWARE under lying replicas: {} (n = {n}, f = {}, Δ = {}), honest choice {honest}, {} of {} Byzantine sets",
        a.matrix.display(),
        p.f,
        a.delta,
        sets.len(),
        all.len()
    );
    println!(
        "{:<11} {:>5} {:>5} {:>9} {:>10} {:>19} {:>19} {:>7}",
        "lie",
        "cases",
        "moved",
        "byz lead",
        "byz V_max",
        "extra voting ms",
        "extra silent ms",
        "worst"
    );
    let or_dash = |v: Option<usize>| v.map_or("-".to_string(), |v| v.to_string());
    for r in &rows {
        println!(
            "{:<11} {:>5} {:>5} {:>4}/{:<4} {:>5}/{:<4} {:>8.2} / {:<8.2} {:>8.2} / {:<8.2} {:>6.1}%",
            r.lie,
            r.cases,
            r.moved,
            r.byzantine_leader,
            r.byzantine_leader_honest,
            or_dash(r.byzantine_vmax),
            or_dash(r.byzantine_vmax_honest),
            r.voting_extra_mean_ms,
            r.voting_extra_max_ms,
            r.silent_extra_mean_ms,
            r.silent_extra_max_ms,
            r.worst_percent
        );
    }
    println!("(byz lead, byz V_max: under the lie / honest; extra: mean / worst over the cases)");
    Ok(())
}
