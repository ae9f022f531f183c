//! A tiny Prometheus exporter: a registry of named atomic counters, gauges and
//! histogram summaries, rendered in the Prometheus text exposition format
//! (version 0.0.4) and served over HTTP/1.1.
//!
//! Handles ([`Counter`], [`Gauge`], [`Histogram`]) are cheap `Arc`s around atomics:
//! register once, keep the handle, update it from any task without locks. The
//! registry's lock is taken only to register and to render.
//!
//! Histograms keep log-linear buckets (8 sub-buckets per power of two, relative
//! error at most 12.5%) in atomics and are exported as a Prometheus `summary`
//! with `quantile="0.5"` and `quantile="0.99"`, plus `_sum` and `_count`.
//!
//! The HTTP side ([`serve`]) is a hand-written responder on a `TcpListener`: it
//! answers `GET /metrics` (and `GET /`) and nothing else. That is all Prometheus
//! needs, and it avoids pulling a web framework and its dependency tree into
//! every node for one GET.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A monotonically increasing counter.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (view number, queue depth).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    pub fn sub(&self, d: i64) {
        self.0.fetch_sub(d, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Values below `SUB` get exact buckets; above, 8 buckets per power of two.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

struct HistInner {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
}

/// A lock-free histogram of `u64` samples (pick the unit in the name, e.g.
/// `_micros`), exported as a summary with p50 and p99.
#[derive(Clone)]
pub struct Histogram(Arc<HistInner>);

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram(Arc::new(HistInner {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }))
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = msb - SUB_BITS;
    let sub = ((v >> shift) as usize) & (SUB - 1);
    SUB + (shift as usize) * SUB + sub
}

/// The midpoint of a bucket's value range (exact for the small buckets).
fn bucket_value(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = ((i - SUB) / SUB) as u32;
    let sub = ((i - SUB) % SUB) as u64;
    let lo = (SUB as u64 + sub) << shift;
    let width = 1u64 << shift;
    lo.saturating_add(width / 2)
}

impl Histogram {
    pub fn record(&self, v: u64) {
        self.0.buckets[bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
        self.0.sum.fetch_add(v, Ordering::Relaxed);
    }
    /// Record a duration in microseconds.
    pub fn record_micros(&self, d: Duration) {
        self.record(d.as_micros().min(u64::MAX as u128) as u64);
    }
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
    pub fn sum(&self) -> u64 {
        self.0.sum.load(Ordering::Relaxed)
    }
    /// Estimated `q`-quantile (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_value(i);
            }
        }
        bucket_value(BUCKETS - 1)
    }
}

#[derive(Clone)]
enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Metric {
    fn type_name(&self) -> &'static str {
        match self {
            Metric::Counter(_) => "counter",
            Metric::Gauge(_) => "gauge",
            Metric::Histogram(_) => "summary",
        }
    }
}

struct Family {
    help: String,
    /// Keyed by the rendered label set (`""` or `{a="b"}`).
    series: BTreeMap<String, Metric>,
}

/// A set of named metrics. Share it as `Arc<Registry>`.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// Make `s` a valid Prometheus metric or label name.
fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    out
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{}=\"{}\"", sanitize(k), v);
    }
    s.push('}');
    s
}

/// Insert `extra` (e.g. `quantile="0.5"`) into a rendered label set.
fn with_label(labels: &str, extra: &str) -> String {
    if labels.is_empty() {
        format!("{{{extra}}}")
    } else {
        format!("{},{}}}", &labels[..labels.len() - 1], extra)
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn get_or_insert(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        make: fn() -> Metric,
    ) -> Metric {
        let name = sanitize(name);
        let key = render_labels(labels);
        let mut fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let fam = fams.entry(name).or_insert_with(|| Family {
            help: help.to_string(),
            series: BTreeMap::new(),
        });
        let m = fam.series.entry(key).or_insert_with(make);
        m.clone()
    }

    /// The counter `name` (created on first use). Registering a name that already
    /// holds another metric type returns a detached handle and keeps the old one.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.counter_with(name, help, &[])
    }
    pub fn counter_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.get_or_insert(name, help, labels, || Metric::Counter(Counter::default())) {
            Metric::Counter(c) => c,
            _ => Counter::default(),
        }
    }
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.gauge_with(name, help, &[])
    }
    pub fn gauge_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.get_or_insert(name, help, labels, || Metric::Gauge(Gauge::default())) {
            Metric::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }
    pub fn histogram(&self, name: &str, help: &str) -> Histogram {
        self.histogram_with(name, help, &[])
    }
    pub fn histogram_with(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Histogram {
        match self.get_or_insert(name, help, labels, || {
            Metric::Histogram(Histogram::default())
        }) {
            Metric::Histogram(h) => h,
            _ => Histogram::default(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, fam) in fams.iter() {
            let Some(first) = fam.series.values().next() else {
                continue;
            };
            let help = fam.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", first.type_name());
            for (labels, m) in &fam.series {
                match m {
                    Metric::Counter(c) => {
                        let _ = writeln!(out, "{name}{labels} {}", c.get());
                    }
                    Metric::Gauge(g) => {
                        let _ = writeln!(out, "{name}{labels} {}", g.get());
                    }
                    Metric::Histogram(h) => {
                        for q in ["0.5", "0.99"] {
                            let v = h.quantile(q.parse().unwrap_or(0.5));
                            let _ = writeln!(
                                out,
                                "{name}{} {v}",
                                with_label(labels, &format!("quantile=\"{q}\""))
                            );
                        }
                        let _ = writeln!(out, "{name}_sum{labels} {}", h.sum());
                        let _ = writeln!(out, "{name}_count{labels} {}", h.count());
                    }
                }
            }
        }
        out
    }
}

const MAX_REQUEST: usize = 8 << 10;

async fn respond(registry: &Registry, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    // Read the request head (we ignore any body: GET has none).
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            break;
        }
        if buf.len() > MAX_REQUEST {
            stream
                .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") | ("GET", "/") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Serve `registry` on `listener` until `shutdown` turns true (or its sender is
/// dropped). Each request is answered on its own task with a 5 s deadline.
pub async fn serve(
    registry: Arc<Registry>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() { return; }
                continue;
            }
        };
        match accepted {
            Ok((stream, _)) => {
                let reg = registry.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), respond(&reg, stream)).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotone_and_close() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            100,
            1000,
            123_456,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS, "{v} -> {b}");
            last = b;
            let est = bucket_value(b);
            let err = (est as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err <= 0.125, "{v} ~ {est}");
        }
    }

    #[test]
    fn quantiles_and_render() {
        let r = Registry::new();
        let h = r.histogram("lat_micros", "latency");
        for v in 1..=1000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 500.0).abs() / 500.0 < 0.13, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.13, "{p99}");
        r.counter("decided_instances", "decided").add(3);
        r.gauge("view", "current view").set(7);
        r.counter_with("dropped", "per peer", &[("peer", "n1")])
            .inc();
        // same name twice: same handle
        r.counter("decided_instances", "decided").inc();
        let text = r.render();
        assert!(
            text.contains("# TYPE decided_instances counter\ndecided_instances 4\n"),
            "{text}"
        );
        assert!(text.contains("view 7\n"));
        assert!(text.contains("dropped{peer=\"n1\"} 1\n"));
        assert!(text.contains("# TYPE lat_micros summary"));
        assert!(text.contains("lat_micros{quantile=\"0.99\"}"));
        assert!(text.contains("lat_micros_count 1000\n"));
        assert_eq!(
            with_label("{a=\"b\"}", "quantile=\"0.5\""),
            "{a=\"b\",quantile=\"0.5\"}"
        );
        assert_eq!(sanitize("9bad-name"), "_9bad_name");
    }

    #[tokio::test]
    async fn serves_http() {
        let reg = Arc::new(Registry::new());
        reg.counter("faults_total", "faults").add(2);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve(reg.clone(), listener, rx));
        let fetch = |req: &'static [u8]| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = tokio::time::timeout(Duration::from_secs(10), async {
            let a = fetch(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let b = fetch(b"GET /nope HTTP/1.1\r\n\r\n").await;
            (a, b)
        })
        .await
        .expect("metrics server answers");
        assert!(ok.0.starts_with("HTTP/1.1 200 OK"), "{}", ok.0);
        assert!(ok.0.contains("faults_total 2"));
        assert!(ok.1.starts_with("HTTP/1.1 404"));
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }
}
