//! The load generator every protocol's workload runs on: closed loop (each
//! worker waits for its answer before its next operation) or open loop (a
//! scheduler at a fixed rate, latency measured from the intended send time so
//! queueing is not hidden), HDR histograms of latency in µs per latency class,
//! completions per second, an optional progress bar.
//!
//! What a run reports is honest about overload: throughput counts over the
//! time the work took (the first send to the last completion, so a run that
//! needs 20 s to drain 10 s of offered load is not reported as keeping up),
//! an open loop reports what it offered, what it managed to send and what
//! was still in flight when the offering stopped, and flags itself
//! *saturated* when the achieved rate falls below 95% of the offered rate
//! ([`LoadSummary`]).
//!
//! An open loop never queues without bound: a request due when the loop
//! already holds its in-flight cap, or that the client refuses at once
//! because it is full ([`crate::calls::CallError::Full`]), is *shed*: not
//! sent, counted apart ([`LoadSummary::shed`]), never sent late. (Sending
//! held-back requests late kept 16,384 requests queued in the generator's
//! process at 3x the peak, and the cluster completed 61% of its peak.)
//!
//! A workload is a closure `op(worker, rng) -> (class, future)`: it draws what
//! it needs from the worker's seeded RNG and returns the latency class of the
//! operation (0 if the workload has one) and the call, which resolves to `Ok`
//! when the operation succeeded.

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What load to offer.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Closed-loop workers (open loop: the in-flight cap is
    /// [`OPEN_LOOP_CAP_PER_CLIENT`]× this).
    pub clients: usize,
    /// Seconds of load.
    pub duration: f64,
    /// Open loop at this many requests per second (None: closed loop).
    pub open_rate: Option<f64>,
    /// Seconds of the same load before `duration`, not measured: operations
    /// scheduled in it run but count nowhere (fresh connections and caches
    /// warm up).
    pub warmup: f64,
}

impl LoadSpec {
    /// `clients` closed-loop workers for `duration` seconds.
    pub fn closed_loop(clients: usize, duration: f64) -> Self {
        LoadSpec {
            clients,
            duration,
            open_rate: None,
            warmup: 0.0,
        }
    }
}

/// Refuse no workers (`--clients`) and a `--duration` that is not a
/// non-negative number of seconds.
pub fn check_load(clients: usize, duration: f64) -> Result<()> {
    if clients == 0 {
        return Err(anyhow!("--clients must be at least 1"));
    }
    if !(duration >= 0.0 && duration.is_finite()) {
        return Err(anyhow!(
            "--duration must be a non-negative number of seconds"
        ));
    }
    Ok(())
}

/// An open loop holds at most this many requests in flight per
/// [`LoadSpec::clients`]; a request due beyond it is shed. Two: what the SMR
/// clients of a KV load take (their windows add up to `clients`, and each
/// holds two windows, `SmrClient::LIMIT_PER_WINDOW`), so the generator sheds
/// here, before it builds the request, rather than after, at a full client
/// (shedding 20k requests per second there cost the generator 40% more CPU).
pub const OPEN_LOOP_CAP_PER_CLIENT: usize = 2;

/// A latency histogram in µs, 1 µs to 60 s.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// What a load run measured.
pub struct LoadResult {
    /// Latencies per class.
    pub classes: Vec<Histogram<u64>>,
    /// Latencies of every class together.
    pub hist: Histogram<u64>,
    pub committed: u64,
    /// Failed operations, but for `expired`.
    pub errors: u64,
    /// Operations whose outcome is unknown: their client's session expired
    /// at the replicas ([`byzscale_smr::client::Failed::SessionExpired`]),
    /// so they may or may not have been applied. Neither committed nor
    /// errors.
    pub expired: u64,
    /// Completions after [`Load::mark_crash`].
    pub after_crash: u64,
    pub first_error: Option<String>,
    /// Completions in each second of the run.
    pub per_second: Vec<u64>,
    /// Seconds from the first send to the last completion (the spec's
    /// duration if nothing completed).
    pub elapsed: f64,
    /// Operations started.
    pub issued: u64,
    /// Open loop: operations due but not sent, the loop at its in-flight
    /// cap or the client full.
    pub shed: u64,
    /// Operations started but neither completed nor failed when the load
    /// stopped offering (they may complete afterwards, within `elapsed`).
    pub in_flight_at_end: u64,
    /// The open loop's rate (None: closed loop).
    pub offered_rate: Option<f64>,
    /// Seconds the load offered operations (the spec's duration).
    pub offered_s: f64,
}

/// Below this fraction of the offered rate an open-loop run is saturated.
pub const SATURATED_BELOW: f64 = 0.95;

/// The part of every load report that says how the load went: serialized
/// (flattened) into the bench and cluster reports.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LoadSummary {
    /// Seconds from the first send to the last completion: what
    /// `throughput_ops` divides by.
    pub window_s: f64,
    /// Open loop: requests per second asked for (null in closed loop).
    pub offered_rate: Option<f64>,
    /// Requests sent, and per second of offering: below `offered_rate`
    /// when the in-flight cap held the sender back.
    pub issued: u64,
    pub issued_rate: f64,
    /// Open loop: requests due but not sent because the load generator was
    /// at its in-flight cap or the client was full (backpressure): offered
    /// = issued + shed.
    pub shed: u64,
    /// Completions per second over `window_s` (= `throughput_ops`).
    pub achieved_rate: f64,
    /// Open loop: the achieved rate fell below 95% of the offered rate
    /// (null in closed loop, which adapts its rate to the system's).
    pub saturated: Option<bool>,
    /// Requests still in flight when the offering stopped.
    pub in_flight_at_end: u64,
    /// Completions in each second since the first send.
    pub per_second: Vec<u64>,
}

impl LoadResult {
    /// The result of no load at all.
    pub fn empty() -> Self {
        LoadResult {
            classes: Vec::new(),
            hist: histogram(),
            committed: 0,
            errors: 0,
            expired: 0,
            after_crash: 0,
            first_error: None,
            per_second: Vec::new(),
            elapsed: 0.0,
            issued: 0,
            shed: 0,
            in_flight_at_end: 0,
            offered_rate: None,
            offered_s: 0.0,
        }
    }

    /// How the load went (see [`LoadSummary`]).
    pub fn summary(&self) -> LoadSummary {
        let achieved = self.throughput(self.committed);
        LoadSummary {
            window_s: self.elapsed,
            offered_rate: self.offered_rate,
            issued: self.issued,
            shed: self.shed,
            issued_rate: if self.offered_s > 0.0 {
                self.issued as f64 / self.offered_s
            } else {
                0.0
            },
            achieved_rate: achieved,
            saturated: self.offered_rate.map(|r| achieved < SATURATED_BELOW * r),
            in_flight_at_end: self.in_flight_at_end,
            per_second: self.per_second.clone(),
        }
    }

    /// The latencies of class `c` (empty if it saw none).
    pub fn class(&self, c: usize) -> Histogram<u64> {
        self.classes.get(c).cloned().unwrap_or_else(histogram)
    }

    /// Completions of class `c`.
    pub fn committed_in(&self, c: usize) -> u64 {
        self.classes.get(c).map(|h| h.len()).unwrap_or(0)
    }

    /// Completions per second from the first send to the last completion.
    pub fn throughput(&self, n: u64) -> f64 {
        if self.elapsed > 0.0 {
            n as f64 / self.elapsed
        } else {
            0.0
        }
    }
}

/// The quantile `q` of `h` in ms (0 if `h` is empty).
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Histograms per class, grown on demand.
#[derive(Default)]
struct Classes(Vec<Histogram<u64>>);

impl Classes {
    fn record(&mut self, class: usize, us: u64) {
        while self.0.len() <= class {
            self.0.push(histogram());
        }
        let _ = self.0[class].record(us);
    }
    fn add(&mut self, other: &Classes) {
        for (c, h) in other.0.iter().enumerate() {
            while self.0.len() <= c {
                self.0.push(histogram());
            }
            self.0[c].add(h).expect("same bounds");
        }
    }
}

/// Whether `e` says the operation's outcome is unknown (its client's
/// session expired at the replicas: it may or may not have been applied).
fn outcome_unknown(e: &anyhow::Error) -> bool {
    use byzscale_smr::client::{Error, Failed};
    e.downcast_ref::<Error>() == Some(&Error::Failed(Failed::SessionExpired))
}

/// Whether `e` says the client refused the operation at once, full: not
/// sent, so shed rather than failed.
fn shed(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<crate::calls::CallError>(),
        Some(crate::calls::CallError::Full)
    )
}

/// Counts shared by every worker.
struct Counters {
    /// Where the measured window starts (after the warm-up): operations
    /// scheduled before it are not counted.
    started: Instant,
    stop_at: Instant,
    issued: AtomicU64,
    shed: AtomicU64,
    committed: AtomicU64,
    errors: AtomicU64,
    /// µs from `started` to the last completion.
    last_done_us: AtomicU64,
    expired: AtomicU64,
    after_crash: AtomicU64,
    crashed: AtomicBool,
    first_error: Mutex<Option<String>>,
    series: Mutex<Vec<u64>>,
}

impl Counters {
    /// Run one operation; returns its latency in µs if it succeeded, measured
    /// from `scheduled`.
    async fn one<Fut>(&self, call: Fut, scheduled: Instant) -> Option<u64>
    where
        Fut: Future<Output = Result<()>>,
    {
        let left = self.stop_at.saturating_duration_since(Instant::now()) + Duration::from_secs(10);
        if scheduled < self.started {
            // the warm-up: run it, count nothing
            let _ = tokio::time::timeout(left, call).await;
            return None;
        }
        self.issued.fetch_add(1, Ordering::Relaxed);
        let r = match tokio::time::timeout(left, call).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("no answer within {} s", left.as_secs())),
        };
        match r {
            Ok(()) => {
                let latency = scheduled.elapsed().as_micros().max(1) as u64;
                let done = self.started.elapsed().as_micros() as u64;
                self.last_done_us.fetch_max(done, Ordering::Relaxed);
                self.committed.fetch_add(1, Ordering::Relaxed);
                if self.crashed.load(Ordering::Relaxed) {
                    self.after_crash.fetch_add(1, Ordering::Relaxed);
                }
                let sec = self.started.elapsed().as_secs() as usize;
                let mut s = self.series.lock().expect("series lock");
                if s.len() <= sec {
                    s.resize(sec + 1, 0);
                }
                s[sec] += 1;
                Some(latency)
            }
            Err(e) if shed(&e) => {
                self.issued.fetch_sub(1, Ordering::Relaxed);
                self.shed.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) if outcome_unknown(&e) => {
                self.expired.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .expect("error lock")
                    .get_or_insert_with(|| e.to_string());
                // do not spin on a persistent error
                tokio::time::sleep(Duration::from_millis(10)).await;
                None
            }
        }
    }
}

impl Counters {
    /// Operations started and not yet completed or failed.
    fn in_flight(&self) -> u64 {
        let done = self.committed.load(Ordering::Relaxed)
            + self.errors.load(Ordering::Relaxed)
            + self.expired.load(Ordering::Relaxed);
        self.issued.load(Ordering::Relaxed).saturating_sub(done)
    }
}

/// A running load generator.
pub struct Load {
    pub started: Instant,
    pub stop_at: Instant,
    duration: f64,
    open_rate: Option<f64>,
    counters: Arc<Counters>,
    hists: Arc<Mutex<Classes>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Start offering `spec`'s load of `op` (on the current tokio runtime).
    pub fn start<F, Fut>(spec: &LoadSpec, op: F) -> Load
    where
        F: Fn(usize, &mut StdRng) -> (usize, Fut) + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let started = Instant::now();
        let measured = started + Duration::from_secs_f64(spec.warmup.max(0.0));
        let stop_at = measured + Duration::from_secs_f64(spec.duration);
        let counters = Arc::new(Counters {
            started: measured,
            stop_at,
            issued: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_done_us: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            after_crash: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            first_error: Mutex::new(None),
            series: Mutex::new(Vec::new()),
        });
        let hists: Arc<Mutex<Classes>> = Arc::default();
        let op = Arc::new(op);
        let tasks = match spec.open_rate {
            None => (0..spec.clients)
                .map(|w| tokio::spawn(closed_loop(w, op.clone(), counters.clone(), hists.clone())))
                .collect(),
            Some(rate) => {
                let limit = spec.clients.max(1) * OPEN_LOOP_CAP_PER_CLIENT;
                let t = open_loop(rate, limit, op, counters.clone(), hists.clone());
                vec![tokio::spawn(t)]
            }
        };
        Load {
            started,
            stop_at,
            duration: spec.duration,
            open_rate: spec.open_rate,
            counters,
            hists,
            tasks,
        }
    }

    /// [`Load::start`], then wait for the end (with a progress bar if `show`)
    /// and collect the results.
    pub async fn run<F, Fut>(spec: &LoadSpec, show: bool, op: F) -> LoadResult
    where
        F: Fn(usize, &mut StdRng) -> (usize, Fut) + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let load = Load::start(spec, op);
        let bar = load.progress(show, |_| {}).await;
        let r = load.finish().await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        r
    }

    /// Count completions from now on as "after the crash".
    pub fn mark_crash(&self) {
        self.counters.crashed.store(true, Ordering::Relaxed);
    }

    /// Wait until the load stops, waking every 100 ms to call `each_tick` and,
    /// if `show`, to move a progress bar (in tenths of seconds) showing the
    /// operations completed and their rate. Returns the bar, for the caller
    /// to clear once it has collected its results.
    pub async fn progress(
        &self,
        show: bool,
        mut each_tick: impl FnMut(Option<&indicatif::ProgressBar>),
    ) -> Option<indicatif::ProgressBar> {
        let bar = show.then(|| {
            let total = self.stop_at.saturating_duration_since(self.started);
            let b = indicatif::ProgressBar::new((total.as_secs_f64() * 10.0) as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {elapsed_precise} {msg}",
                )
                .expect("valid template"),
            );
            b
        });
        while Instant::now() < self.stop_at {
            tokio::time::sleep(Duration::from_millis(100)).await;
            each_tick(bar.as_ref());
            if let Some(b) = &bar {
                let el = self.started.elapsed().as_secs_f64();
                let done = self.counters.committed.load(Ordering::Relaxed);
                b.set_position((el * 10.0) as u64);
                b.set_message(format!(
                    "{done} ops, {:.0} ops/s",
                    done as f64 / el.max(1e-3)
                ));
            }
        }
        bar
    }

    /// Wait for every worker to end and collect what they measured.
    pub async fn finish(self) -> LoadResult {
        tokio::time::sleep_until(tokio::time::Instant::from_std(self.stop_at)).await;
        let in_flight_at_end = self.counters.in_flight();
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "a load task failed");
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let classes = std::mem::take(&mut self.hists.lock().expect("histogram lock").0);
        let mut hist = histogram();
        for h in &classes {
            hist.add(h).expect("same bounds");
        }
        let c = &self.counters;
        LoadResult {
            classes,
            hist,
            committed: c.committed.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            after_crash: c.after_crash.load(Ordering::Relaxed),
            first_error: c.first_error.lock().expect("error lock").clone(),
            per_second: c.series.lock().expect("series lock").clone(),
            elapsed: match c.last_done_us.load(Ordering::Relaxed) {
                0 => self.duration,
                us => us as f64 / 1e6,
            },
            issued: c.issued.load(Ordering::Relaxed),
            shed: c.shed.load(Ordering::Relaxed),
            in_flight_at_end,
            offered_rate: self.open_rate,
            offered_s: self.duration,
        }
    }
}

/// Worker `w` of a closed loop, with its own RNG and histograms (merged once
/// at the end).
async fn closed_loop<F, Fut>(w: usize, op: Arc<F>, c: Arc<Counters>, hists: Arc<Mutex<Classes>>)
where
    F: Fn(usize, &mut StdRng) -> (usize, Fut),
    Fut: Future<Output = Result<()>>,
{
    let mut rng = StdRng::seed_from_u64(w as u64);
    let mut local = Classes::default();
    while Instant::now() < c.stop_at {
        let (class, call) = op(w, &mut rng);
        if let Some(us) = c.one(call, Instant::now()).await {
            local.record(class, us);
        }
    }
    hists.lock().expect("histogram lock").add(&local);
}

/// The scheduler of an open loop: request n at `n / rate` seconds, each its
/// own task with an RNG seeded by n, at most `limit` in flight (a request
/// due at the cap is shed: counted, not sent), none after the stop time.
async fn open_loop<F, Fut>(
    rate: f64,
    limit: usize,
    op: Arc<F>,
    c: Arc<Counters>,
    hists: Arc<Mutex<Classes>>,
) where
    F: Fn(usize, &mut StdRng) -> (usize, Fut) + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let limit_n = limit.max(1);
    let limit = Arc::new(tokio::sync::Semaphore::new(limit_n));
    let gap = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let mut next = Instant::now();
    let mut n = 0usize;
    let mut inflight = Vec::new();
    while next < c.stop_at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        if Instant::now() >= c.stop_at {
            // behind schedule at the stop time: what is still due is shed,
            // nothing goes after the stop
            let due = c.stop_at.saturating_duration_since(next.max(c.started));
            let left = (due.as_secs_f64() / gap.as_secs_f64()).ceil() as u64;
            c.shed.fetch_add(left, Ordering::Relaxed);
            break;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            // at the cap: shed it (waiting for room and sending it late
            // queued requests without bound in this process)
            if next >= c.started {
                c.shed.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
            next += gap;
            continue;
        };
        let (class, call) = op(n, &mut StdRng::seed_from_u64(n as u64));
        let (c, hists, scheduled) = (c.clone(), hists.clone(), next);
        inflight.push(tokio::spawn(async move {
            // one record under the lock: a histogram per request (tens of KB,
            // merged bucket by bucket) made the generator itself the bottleneck
            if let Some(us) = c.one(call, scheduled).await {
                hists.lock().expect("histogram lock").record(class, us);
            }
            drop(permit);
        }));
        n += 1;
        next += gap;
        // finished tasks' handles go, so this list stays within the cap
        if inflight.len() >= 2 * limit_n {
            inflight.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
        }
    }
    for t in inflight {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service that completes one operation at a time, each taking 20 ms:
    /// at most 50 operations per second however fast the machine is.
    fn slow_service() -> impl Fn(usize, &mut StdRng) -> (usize, BoxedCall) + Send + Sync {
        let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
        move |_, _| {
            let lock = one_at_a_time.clone();
            let call: BoxedCall = Box::pin(async move {
                let _turn = lock.lock().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            });
            (0, call)
        }
    }

    type BoxedCall = std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>>;

    /// Offered 1,000/s for 1 s against a service that can do at most 50/s:
    /// the report says saturated, counts throughput over the time the
    /// completions took (not the nominal second), and counts the requests
    /// still in flight when the offering stopped. The old report divided
    /// the completions by the nominal duration.
    #[tokio::test]
    async fn an_open_loop_beyond_capacity_is_reported_saturated() {
        let spec = LoadSpec {
            clients: 1, // in-flight cap 2
            duration: 1.0,
            open_rate: Some(1000.0),
            warmup: 0.0,
        };
        let r = Load::run(&spec, false, slow_service()).await;
        let s = r.summary();
        assert_eq!(s.saturated, Some(true), "{s:?}");
        assert!(s.achieved_rate < 0.95 * 1000.0, "{s:?}");
        // the in-flight cap held the sender back
        assert!(r.issued < 1000, "{s:?}");
        assert!(s.in_flight_at_end > 0, "{s:?}");
        // every issued request was drained after the offering stopped, and
        // the window covers that drain: the rate is what the service did
        assert_eq!(r.committed + r.errors, r.issued, "{s:?}");
        assert!(s.window_s > 1.0, "{s:?}");
        let rate = r.committed as f64 / s.window_s;
        assert!((s.achieved_rate - rate).abs() < 1e-9, "{s:?}");
        assert!(s.achieved_rate <= 50.0 * 1.05, "{s:?}");
        assert_eq!(r.per_second.iter().sum::<u64>(), r.committed);
    }

    /// Offered 1,000/s for 1 s against a service that takes 50/s: the open
    /// loop holds at most its cap in flight (2 per client), sheds the rest
    /// at once and says so, and sends nothing late. Before, it waited for
    /// room and sent the held-back requests late: 64 per client queued in
    /// the generator (16,384 at 256 clients, which cost the cluster 39% of
    /// its peak), and no count of what it did not send.
    #[tokio::test]
    async fn an_open_loop_beyond_capacity_sheds_instead_of_queueing() {
        let spec = LoadSpec {
            clients: 2,
            duration: 1.0,
            open_rate: Some(1000.0),
            warmup: 0.0,
        };
        let cap = (spec.clients * OPEN_LOOP_CAP_PER_CLIENT) as u64;
        let (now, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (n2, p2) = (now.clone(), peak.clone());
        let slow = slow_service();
        let r = Load::run(&spec, false, move |w, rng| {
            let (class, call) = slow(w, rng);
            let (now, peak) = (n2.clone(), p2.clone());
            let call: BoxedCall = Box::pin(async move {
                peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                let r = call.await;
                now.fetch_sub(1, Ordering::SeqCst);
                r
            });
            (class, call)
        })
        .await;
        let s = r.summary();
        assert!(
            peak.load(Ordering::SeqCst) <= cap,
            "{} > {cap}",
            peak.load(Ordering::SeqCst)
        );
        // a request goes only when one before it completed and freed room
        assert!(r.issued <= cap + r.committed, "{s:?}");
        assert!(s.shed > 0 && s.shed + r.issued <= 1001, "{s:?}");
        assert_eq!(r.committed + r.errors, r.issued, "{s:?}");
        assert_eq!(s.saturated, Some(true), "{s:?}");
    }

    /// A call the client refuses at once because it is full is shed, not
    /// an error: it was never sent.
    #[tokio::test]
    async fn a_call_refused_by_a_full_client_is_shed() {
        let spec = LoadSpec {
            clients: 1,
            duration: 0.2,
            open_rate: Some(100.0),
            warmup: 0.0,
        };
        let r = Load::run(&spec, false, |n, _| {
            let call: BoxedCall = Box::pin(async move {
                if n % 2 == 0 {
                    Ok(())
                } else {
                    Err(crate::calls::CallError::Full.into())
                }
            });
            (0, call)
        })
        .await;
        let s = r.summary();
        assert!(s.shed > 0, "{s:?}");
        assert_eq!(r.errors, 0, "{s:?}");
        assert_eq!(r.committed, r.issued, "{s:?}");
        // every committed even call but the last is followed by a refused
        // odd one (or, past the stop, by one shed as still due)
        assert!(s.shed + 1 >= r.committed, "{s:?}");
    }

    /// Operations scheduled in the warm-up run but count nowhere: the
    /// measured window starts after it.
    #[tokio::test]
    async fn the_warm_up_is_not_measured() {
        let spec = LoadSpec {
            clients: 1,
            duration: 0.2,
            open_rate: Some(100.0),
            warmup: 0.3,
        };
        let ran = Arc::new(AtomicU64::new(0));
        let counter = ran.clone();
        let r = Load::run(&spec, false, move |_, _| {
            let ran = counter.clone();
            let call: BoxedCall = Box::pin(async move {
                ran.fetch_add(1, Ordering::Relaxed);
                Ok(())
            });
            (0, call)
        })
        .await;
        let all = ran.load(Ordering::Relaxed);
        // at 100/s: about 30 scheduled in the warm-up, at most 20 measured
        // (fewer only if the machine stalls the scheduler past the end)
        assert!(r.issued > 0 && r.issued <= 20, "{}", r.issued);
        assert!(
            all > r.issued,
            "the warm-up ran: {all} ran, {} counted",
            r.issued
        );
        assert_eq!(r.committed, r.issued);
        assert_eq!(r.per_second.iter().sum::<u64>(), r.committed);
    }

    /// A closed loop has no offered rate and never calls itself saturated.
    #[tokio::test]
    async fn a_closed_loop_reports_no_saturation_verdict() {
        let spec = LoadSpec {
            clients: 2,
            duration: 0.3,
            open_rate: None,
            warmup: 0.0,
        };
        let r = Load::run(&spec, false, slow_service()).await;
        let s = r.summary();
        assert_eq!(s.saturated, None);
        assert_eq!(s.offered_rate, None);
        assert!(r.committed > 0 && r.committed <= r.issued, "{s:?}");
    }
}

#[cfg(test)]
mod expired_tests {
    use super::*;
    use byzscale_smr::client::{Error, Failed};

    /// A call failed "session expired" is counted apart from errors, and
    /// its text is the one a Redis client sees after `-ERR `.
    #[test]
    fn an_expired_session_is_told_apart_from_an_error() {
        let e: anyhow::Error = Error::from(Failed::SessionExpired).into();
        assert!(outcome_unknown(&e));
        assert_eq!(
            e.to_string(),
            "session expired: outcome unknown (the command may or may not have been applied)"
        );
        assert!(!outcome_unknown(&anyhow!("no answer within 10 s")));
    }
}
