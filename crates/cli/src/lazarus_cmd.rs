//! The Lazarus commands (`byzscale_lazarus`):
//!
//! - `byzscale lazarus study --runs 1000 --n 4 --f 1 --data DIR [--json]`:
//!   the seeded effectiveness study of four strategies (Lazarus, random,
//!   fixed diverse, homogeneous); prints a table (or JSON) and writes
//!   `bench/results/lazarus-study.json` and `.svg`.
//! - `byzscale lazarus plan --data DIR --current UB14,UB16,DE8,W10 --on DAY`:
//!   the controller's choice on a day, and the replacements to reach it.
//! - `byzscale lazarus synth --out FILE`: writes the synthetic sample data
//!   set (deterministic from its seed).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use byzscale_lazarus::{
    nvd, plan, synth, Day, Knowledge, Pool, Severity, StudyConfig, StudyReport,
};
use clap::{Args, Subcommand};

use crate::plot;

/// `byzscale lazarus ...`.
#[derive(Subcommand, Debug)]
pub enum LazarusCommand {
    /// Count the seeded runs in which an unpatched published vulnerability
    /// hits more than f replicas, for each replica-set strategy.
    Study(StudyArgs),
    /// The lowest-risk set reachable with the fewest replacements on a day.
    Plan(PlanArgs),
    /// Write the synthetic NVD CVE JSON 2.0 sample for the seed's 17 OS versions.
    Synth(SynthArgs),
}

#[derive(Args, Debug)]
pub struct StudyArgs {
    #[arg(long, default_value_t = 1000)]
    pub runs: u32,
    #[arg(long, default_value_t = 4)]
    pub n: usize,
    #[arg(long, default_value_t = 1)]
    pub f: usize,
    /// A folder of NVD CVE JSON 2.0 files (or one file).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Days of data before a run's start.
    #[arg(long, default_value_t = 365)]
    pub history_days: i32,
    /// Days a run lasts.
    #[arg(long, default_value_t = 365)]
    pub horizon_days: i32,
    /// A vulnerability older than this many days is "old" (severity ×3/4).
    #[arg(long, default_value_t = 365)]
    pub old_after_days: i32,
    /// Where the JSON and (with .svg) the plot go.
    #[arg(long, default_value = "bench/results/lazarus-study.json")]
    pub out: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// The current set, comma-separated OS ids of the seed's pool (UB16,DE8,W10,OB61).
    #[arg(long)]
    pub current: String,
    /// The day to plan on (YYYY-MM-DD): data published after it is unseen.
    #[arg(long)]
    pub on: String,
    #[arg(long, default_value_t = 365)]
    pub old_after_days: i32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(
        long,
        default_value = "crates/protocols/lazarus/data/nvd-synthetic.json"
    )]
    pub out: PathBuf,
    #[arg(long, default_value_t = synth::SAMPLE_SEED)]
    pub seed: u64,
    #[arg(long, default_value_t = synth::SAMPLE_RECORDS)]
    pub records: usize,
}

/// `byzscale lazarus ...`.
pub fn run_lazarus(cmd: LazarusCommand) -> Result<()> {
    match cmd {
        LazarusCommand::Study(a) => study(a),
        LazarusCommand::Plan(a) => plan_cmd(a),
        LazarusCommand::Synth(a) => {
            let doc = synth::generate(a.seed, a.records);
            std::fs::write(&a.out, serde_json::to_string_pretty(&doc)? + "\n")
                .with_context(|| format!("writing {}", a.out.display()))?;
            println!(
                "wrote {} ({} synthetic records, seed {})",
                a.out.display(),
                a.records,
                a.seed
            );
            Ok(())
        }
    }
}

fn knowledge(data: &Path, old_after_days: i32) -> Result<(Knowledge, nvd::Loaded)> {
    if old_after_days < 0 {
        anyhow::bail!("--old-after-days must be ≥ 0");
    }
    let loaded = nvd::load(data)?;
    let kb = Knowledge::build(&Pool::seed17(), &loaded.vulns, Severity { old_after_days });
    Ok((kb, loaded))
}

fn plan_cmd(a: PlanArgs) -> Result<()> {
    let on =
        Day::parse(&a.on).with_context(|| format!("--on {:?} is not a YYYY-MM-DD date", a.on))?;
    let (kb, _) = knowledge(&a.data, a.old_after_days)?;
    let current = kb.pool.parse_set(&a.current)?;
    let before = kb.pair_risk(on).set_risk(&current);
    let steps = plan(&current, &kb.pool, &kb, on)?;
    let mut next = current.clone();
    for s in &steps {
        let i = next
            .iter()
            .position(|&o| o == s.out)
            .context("a replacement of an absent OS")?;
        next[i] = s.r#in;
    }
    let after = kb.pair_risk(on).set_risk(&next);
    let name = |o: usize| kb.pool.os[o].id.clone();
    if a.json {
        let steps: Vec<_> = steps
            .iter()
            .map(|s| serde_json::json!({"out": name(s.out), "in": name(s.r#in)}))
            .collect();
        let out = serde_json::json!({
            "on": on, "known": kb.known_at(on), "current": kb.pool.names(&current), "risk_before": before as f64 / 320.0,
            "next": kb.pool.names(&next), "risk_after": after as f64 / 320.0, "replace": steps,
        });
        println!("{out}");
        return Ok(());
    }
    println!("{} vulnerabilities known on {on}", kb.known_at(on));
    println!(
        "current {} risk {:.2}",
        kb.pool.names(&current).join(","),
        before as f64 / 320.0
    );
    println!(
        "next    {} risk {:.2}",
        kb.pool.names(&next).join(","),
        after as f64 / 320.0
    );
    for s in &steps {
        println!("replace {} by {}", name(s.out), name(s.r#in));
    }
    if steps.is_empty() {
        println!("no replacement");
    }
    Ok(())
}

fn study(a: StudyArgs) -> Result<()> {
    let (kb, loaded) = knowledge(&a.data, a.old_after_days)?;
    let cfg = StudyConfig {
        runs: a.runs,
        n: a.n,
        f: a.f,
        seed: a.seed,
        history_days: a.history_days,
        horizon_days: a.horizon_days,
    };
    let report = byzscale_lazarus::study(&kb, &cfg)?;
    let json = serde_json::json!({
        "data": a.data.display().to_string(),
        "records": loaded.vulns.len(),
        "skipped_no_cvss3": loaded.skipped_no_cvss3,
        "old_after_days": a.old_after_days,
        "report": report,
    });
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&a.out, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    let svg = a.out.with_extension("svg");
    plot_study(&svg, &report)?;
    if a.json {
        println!("{json}");
        return Ok(());
    }
    print_table(&report);
    println!("wrote {} and {}", a.out.display(), svg.display());
    Ok(())
}

fn print_table(r: &StudyReport) {
    let c = &r.config;
    println!(
        "Lazarus study: {} runs, n = {}, f = {}, seed {}, {} vulnerabilities affecting the pool ({} to {}), starts {} to {}, {}-day runs",
        c.runs, c.n, c.f, c.seed, r.vulnerabilities, r.data_first, r.data_last, r.start_from, r.start_to, c.horizon_days
    );
    println!(
        "{:<14} {:>11} {:>8} {:>14} {:>18}",
        "strategy", "compromised", "%", "replacements", "first compromise"
    );
    for s in &r.results {
        let first = s
            .mean_first_compromise_day
            .map_or("-".to_string(), |d| format!("day {d:.1}"));
        println!(
            "{:<14} {:>11} {:>7.1}% {:>14.2} {:>18}",
            s.strategy.name(),
            s.compromised_runs,
            s.compromised_percent,
            s.replacements_per_run,
            first
        );
    }
}

fn plot_study(path: &Path, r: &StudyReport) -> Result<()> {
    let runs = f64::from(r.config.runs);
    let series: Vec<plot::Series> = r
        .results
        .iter()
        .map(|s| {
            let pts = s
                .curve
                .iter()
                .map(|&(d, n)| (f64::from(d), 100.0 * f64::from(n) / runs))
                .collect();
            (s.strategy.name().to_string(), pts)
        })
        .collect();
    let axes = plot::Axes {
        title: "Lazarus study: runs compromised (a published unpatched vulnerability hits > f replicas)",
        x_desc: "days since the run's start",
        y_desc: "% of runs compromised",
        x_range: 0.0..f64::from(r.config.horizon_days),
        y_range: 0.0..105.0,
        markers: false,
    };
    plot::line_chart(path, axes, &series)
}
