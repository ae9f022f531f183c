//! Running many seeds of a scenario: in parallel on the available cores, results
//! in seed order, plus the small summaries every scenario report shares.

use byzscale_core::crypto::Identity;
use byzscale_core::Time;
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Run `run(seed)` for `seed_start .. seed_start + seeds` on all cores; stops at
/// the first error. `progress(done, total)` is called as runs finish.
pub fn run_seeds<R: Send, E: Send>(
    seeds: u64,
    seed_start: u64,
    run: impl Fn(u64) -> Result<R, E> + Sync,
    mut progress: impl FnMut(u64, u64),
) -> Result<Vec<R>, E> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(seeds as usize)
        .max(1);
    let next = AtomicU64::new(0);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut results: Vec<(u64, R)> = Vec::with_capacity(seeds as usize);
    std::thread::scope(|s| -> Result<(), E> {
        for _ in 0..workers {
            let (tx, next, run) = (tx.clone(), &next, &run);
            s.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= seeds || tx.send((k, run(seed_start + k))).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for (k, r) in rx {
            results.push((k, r?));
            progress(results.len() as u64, seeds);
        }
        Ok(())
    })?;
    results.sort_by_key(|(k, _)| *k);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// A seed whose run violated a property, with the command that replays it.
#[derive(Clone, Debug, Serialize)]
pub struct FailingSeed {
    pub seed: u64,
    pub reason: String,
    pub command: String,
}

/// A deterministic identity for endpoint `i` of kind `kind` (replica, client…),
/// the same in every run, so keys never depend on the seed.
pub fn identity(kind: u8, i: usize) -> Identity {
    let mut seed = [0u8; 32];
    seed[0] = kind;
    seed[1..9].copy_from_slice(&(i as u64).to_le_bytes());
    Identity::from_seed(seed)
}

/// The `p`-quantile of sorted nanosecond samples, in milliseconds.
pub fn percentile_ms(sorted: &[Time], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

/// Write JSON lines to `path`.
pub fn write_lines<'a>(
    path: &Path,
    lines: impl IntoIterator<Item = &'a String>,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for l in lines {
        writeln!(w, "{l}")?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_seed_order_and_errors_stop() {
        let r: Result<Vec<u64>, String> = run_seeds(50, 100, |s| Ok(s * 2), |_, _| {});
        assert_eq!(r.unwrap(), (100..150).map(|s| s * 2).collect::<Vec<_>>());
        let e: Result<Vec<u64>, String> = run_seeds(
            10,
            0,
            |s| if s == 7 { Err("seven".into()) } else { Ok(s) },
            |_, _| {},
        );
        assert_eq!(e.unwrap_err(), "seven");
    }

    #[test]
    fn percentiles() {
        let v: Vec<Time> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 51.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }
}
