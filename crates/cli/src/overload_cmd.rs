//! `byzscale bench-overload`: the curve of achieved against offered rate
//! (issue 11 item 2). One local cluster; first its closed-loop peak for each
//! value size, then open-loop runs offered fractions of that peak up to
//! several times it, each reporting what it issued, achieved, p50/p99 and
//! whether it saturated. The figure: achieved against offered per value
//! size, with the line "achieved = offered" and the closed-loop peak. The
//! verdict lines say whether the rate at the highest offer kept at least 90%
//! of the peak (no collapse) and whether the open loop reached the closed
//! loop's peak. Every point runs on the same cluster in the same process, so
//! the ratios compare like with like on a noisy machine.

use crate::bench_cmd::publish;
use crate::plot::{side_by_side, Axes, Series};
use anyhow::{bail, Result};
use byzscale_node::load::ms;
use byzscale_node::protocols::smr;
use byzscale_node::{LoadResult, LoadSpec};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct OverloadArgs {
    /// Value sizes in bytes, one curve each.
    #[arg(long, value_delimiter = ',', default_value = "64,512")]
    pub payloads: Vec<usize>,
    /// Offered rates as multiples of each size's closed-loop peak.
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75,1,1.5,2,3")]
    pub multiples: Vec<f64>,
    /// Closed-loop clients for the peak (open loop: in-flight cap 2× this, the excess shed).
    #[arg(long, default_value_t = 256)]
    pub clients: usize,
    /// Seconds of load per point.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of the same load before each point, not measured (each point
    /// connects fresh clients).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Writes <out>/<name>.json and <out>/<name>.svg.
    #[arg(long, default_value = "overload")]
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Point {
    payload: usize,
    /// "closed" (the peak) or "open".
    mode: &'static str,
    offered_rate: Option<f64>,
    issued_rate: f64,
    /// Requests due but not sent (the generator at its in-flight cap or the
    /// client full): backpressure, counted.
    shed: u64,
    achieved_rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    saturated: Option<bool>,
    in_flight_at_end: u64,
    errors: u64,
    per_second: Vec<u64>,
}

#[derive(Serialize)]
struct Curve {
    payload: usize,
    closed_loop_peak: f64,
    open_loop_peak: f64,
    /// Achieved at the highest offer / the closed-loop peak (target ≥ 0.9).
    at_highest_offer_vs_peak: f64,
    /// Open-loop peak / closed-loop peak (target ≥ 1).
    open_vs_closed_peak: f64,
    points: Vec<Point>,
}

#[derive(Serialize)]
struct Report {
    name: String,
    command: String,
    replicas: usize,
    clients: usize,
    duration_s: f64,
    warmup_s: f64,
    curves: Vec<Curve>,
}

fn point(payload: usize, r: &LoadResult) -> Point {
    let s = r.summary();
    Point {
        payload,
        mode: if s.offered_rate.is_some() {
            "open"
        } else {
            "closed"
        },
        offered_rate: s.offered_rate,
        issued_rate: s.issued_rate,
        shed: s.shed,
        achieved_rate: s.achieved_rate,
        p50_ms: ms(&r.hist, 0.5),
        p99_ms: ms(&r.hist, 0.99),
        saturated: s.saturated,
        in_flight_at_end: s.in_flight_at_end,
        errors: r.errors,
        per_second: s.per_second,
    }
}

fn check(a: &OverloadArgs) -> Result<()> {
    if a.payloads.is_empty() || a.multiples.is_empty() {
        bail!("--payloads and --multiples need at least one value each");
    }
    if a.multiples.iter().any(|m| !(m.is_finite() && *m > 0.0)) {
        bail!("--multiples must be positive numbers");
    }
    if a.clients == 0 || !(a.duration.is_finite() && a.duration > 0.0) {
        bail!("--clients must be ≥ 1 and --duration > 0");
    }
    if !(a.warmup.is_finite() && a.warmup >= 0.0) {
        bail!("--warmup must be a non-negative number of seconds");
    }
    if a.name.is_empty() || a.name.contains('/') {
        bail!("--name must be a plain file name");
    }
    Ok(())
}

/// `byzscale bench-overload`.
pub async fn bench_overload(a: OverloadArgs) -> Result<()> {
    check(&a)?;
    let params = smr::params_with_batch(byzscale_smr::Params::default().batch_max_requests)?;
    let local = smr::start_local(a.replicas, params, None, false).await?;
    let mut curves = Vec::new();
    for &payload in &a.payloads {
        let workload = smr::KvWorkload {
            payload,
            read_ratio: 0.0,
        };
        let run = |open_rate| LoadSpec {
            clients: a.clients,
            duration: a.duration,
            open_rate,
            warmup: a.warmup,
        };
        let peak = smr::run_kv_load(&local.dep, &run(None), &workload, false, |_, _| {}).await?;
        let closed = point(payload, &peak);
        eprintln!(
            "{payload} B: closed-loop peak {:.0} ops/s (p50 {:.1} ms)",
            closed.achieved_rate, closed.p50_ms
        );
        let mut points = vec![closed];
        for m in &a.multiples {
            let rate = (points[0].achieved_rate * m).max(1.0);
            let r =
                smr::run_kv_load(&local.dep, &run(Some(rate)), &workload, false, |_, _| {}).await?;
            let p = point(payload, &r);
            eprintln!(
                "{payload} B: offered {rate:.0}/s ({m}× peak): achieved {:.0} ops/s, p50 {:.1} ms, p99 {:.1} ms{}",
                p.achieved_rate,
                p.p50_ms,
                p.p99_ms,
                if p.saturated == Some(true) { ", saturated" } else { "" }
            );
            points.push(p);
        }
        curves.push(curve(payload, points));
    }
    drop(local);
    let report = Report {
        name: a.name.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        replicas: a.replicas,
        clients: a.clients,
        duration_s: a.duration,
        warmup_s: a.warmup,
        curves,
    };
    publish(&a.out, &a.name, &report, a.json, plot, table)
}

/// The curve of one value size from its points (the closed-loop peak first).
fn curve(payload: usize, points: Vec<Point>) -> Curve {
    let peak = points[0].achieved_rate;
    let open = &points[1..];
    let open_peak = open.iter().map(|p| p.achieved_rate).fold(0.0, f64::max);
    let highest = open
        .iter()
        .max_by(|x, y| x.offered_rate.partial_cmp(&y.offered_rate).expect("finite"))
        .map_or(0.0, |p| p.achieved_rate);
    Curve {
        payload,
        closed_loop_peak: peak,
        open_loop_peak: open_peak,
        at_highest_offer_vs_peak: highest / peak.max(1e-9),
        open_vs_closed_peak: open_peak / peak.max(1e-9),
        points,
    }
}

fn table(r: &Report) -> String {
    let mut t = String::from("| value | offered /s | issued /s | shed | achieved /s | p50 ms | p99 ms | saturated |\n|---|---|---|---|---|---|---|---|\n");
    for c in &r.curves {
        for p in &c.points {
            let offered = p
                .offered_rate
                .map_or("closed loop".to_string(), |o| format!("{o:.0}"));
            t += &format!(
                "| {} B | {offered} | {:.0} | {} | {:.0} | {:.1} | {:.1} | {} |\n",
                c.payload,
                p.issued_rate,
                p.shed,
                p.achieved_rate,
                p.p50_ms,
                p.p99_ms,
                p.saturated.map_or("-".into(), |s| s.to_string())
            );
        }
    }
    for c in &r.curves {
        t += &format!(
            "{} B: at the highest offer {:.0}% of the closed-loop peak (target ≥ 90%), open-loop peak {:.0}% of it (target ≥ 100%)\n",
            c.payload,
            100.0 * c.at_highest_offer_vs_peak,
            100.0 * c.open_vs_closed_peak
        );
    }
    t
}

fn plot(r: &Report, path: &Path) -> Result<()> {
    let mut series: Vec<Series> = Vec::new();
    let mut top: f64 = 1.0;
    for c in &r.curves {
        let pts: Vec<(f64, f64)> = c.points[1..]
            .iter()
            .filter_map(|p| Some((p.offered_rate?, p.achieved_rate)))
            .collect();
        top = pts.iter().map(|p| p.0.max(p.1)).fold(top, f64::max);
        series.push((format!("{} B achieved", c.payload), pts));
        let xmax = c.points[1..]
            .iter()
            .filter_map(|p| p.offered_rate)
            .fold(0.0, f64::max);
        series.push((
            format!("{} B closed-loop peak", c.payload),
            vec![(0.0, c.closed_loop_peak), (xmax, c.closed_loop_peak)],
        ));
    }
    series.push(("achieved = offered".into(), vec![(0.0, 0.0), (top, top)]));
    let axes = Axes {
        title: "achieved against offered rate (open loop)",
        x_desc: "offered (requests/s)",
        y_desc: "achieved (ops/s)",
        x_range: 0.0..top * 1.05,
        y_range: 0.0..top * 1.05,
        markers: true,
    };
    side_by_side(path, (900, 560), &[(axes, &series[..])])
}
