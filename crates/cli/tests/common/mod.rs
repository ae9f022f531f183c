//! Helpers shared by the end-to-end tests: the binary, its JSON output, process
//! clean-up and metric scraping. Waits are bounded polls, never timing
//! assertions.
#![allow(dead_code)] // each test file uses a part

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_byzscale");

/// A `byzscale node` process started from `node-<i>.toml` in a folder, its
/// output appended to `node-<i>.log` there; SIGKILLed when dropped.
pub struct Node {
    child: std::process::Child,
}

impl Node {
    pub fn start(dir: &std::path::Path, i: usize) -> Node {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("node-{i}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(dir.join(format!("node-{i}.toml")))
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Node { child }
    }

    /// Send SIGKILL (`Child::kill` on Unix) without waiting: to kill a whole
    /// group at once, signal every node first, then [`Node::kill`] each.
    pub fn signal_kill(&mut self) {
        let _ = self.child.kill();
    }

    /// SIGKILL, and reap the process.
    pub fn kill(&mut self) {
        self.signal_kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An empty `<tmp>/<name>-<pid>` for this test process's files (what an
/// earlier run left there is removed; the folder itself is not made).
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `byzscale config local --replicas 4` into a fresh `<tmp>/<name>-<pid>`
/// with its base port at `low + pid % span` (below the ephemeral range,
/// 32768.., where outgoing connections take ports): the folder and the port.
pub fn local_config(name: &str, low: u16, span: u32) -> (std::path::PathBuf, u16) {
    let dir = fresh_dir(name);
    let base = low + (std::process::id() % span) as u16;
    let base_port = base.to_string();
    let args = [
        "config",
        "local",
        "--replicas",
        "4",
        "--base-port",
        &base_port,
        "--out",
    ];
    run_ok(
        args.iter()
            .map(std::ffi::OsStr::new)
            .chain([dir.as_os_str()]),
    );
    (dir, base)
}

/// The last stdout line of a command, as JSON.
pub fn json(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Kills these process ids when the test ends, however it ends; for a
/// cluster started with `--keep`, also removes its folder once its
/// processes are gone, unless the test failed (then the logs stay for
/// whoever debugs it) or [`Kill::sigkill`] cut the power (the test restarts
/// the nodes from that folder and removes it itself).
pub struct Kill(
    pub Vec<u64>,
    pub std::cell::Cell<Option<std::path::PathBuf>>,
);

impl Kill {
    /// The processes of a cluster left running (`pids` of its JSON report)
    /// and its folder (the one holding its `deployment` file).
    pub fn cluster(v: &serde_json::Value) -> Kill {
        let pids = v["pids"]
            .as_array()
            .unwrap_or_else(|| panic!("no pids: {v}"))
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect();
        let dir = v["deployment"]
            .as_str()
            .and_then(|d| std::path::Path::new(d).parent())
            .map(|d| d.to_path_buf());
        Kill(pids, std::cell::Cell::new(dir))
    }

    /// Power loss: SIGKILL every process at once, without waiting; the
    /// folder stays for the restart.
    pub fn sigkill(&self) {
        self.1.take();
        for p in &self.0 {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
    }
}

impl Drop for Kill {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("kill").arg(p.to_string()).status();
        }
        let Some(dir) = self
            .1
            .get_mut()
            .take()
            .filter(|_| !std::thread::panicking())
        else {
            return;
        };
        // the nodes exit on SIGTERM within a few seconds; remove their
        // folder only then, so that no node writes into a removed tree
        let gone = || {
            self.0
                .iter()
                .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Writer threads under load, each adding what was acknowledged to one
/// shared `T` until it is stopped (or its node dies: then it returns).
pub struct Writers<T> {
    acked: Arc<Mutex<T>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl<T: Default + Clone + Send + 'static> Writers<T> {
    /// `n` writers; writer `w` runs `f(w, acked, stop)`.
    pub fn spawn<F>(n: usize, f: F) -> Self
    where
        F: Fn(usize, &Mutex<T>, &AtomicBool) + Send + Sync + 'static,
    {
        let (acked, stop, f) = (
            Arc::default(),
            Arc::new(AtomicBool::new(false)),
            Arc::new(f),
        );
        let threads = (0..n)
            .map(|w| {
                let (acked, stop, f) = (Arc::clone(&acked), Arc::clone(&stop), Arc::clone(&f));
                std::thread::spawn(move || f(w, &acked, &stop))
            })
            .collect();
        Writers {
            acked,
            stop,
            threads,
        }
    }

    /// What was acknowledged so far.
    pub fn acked(&self) -> MutexGuard<'_, T> {
        self.acked.lock().unwrap()
    }

    /// Stop the writers, wait for each, and return all they saw acknowledged.
    pub fn stop(self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// The Prometheus text of `addr` (`host:port`, or `http://host:port/metrics`).
pub fn scrape(addr: &str) -> Option<String> {
    let addr = addr
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of the unlabelled metric `name` at `addr`.
pub fn metric(addr: &str, name: &str) -> Option<f64> {
    scrape(addr)?
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// The sum of every series whose line starts with `prefix` (0 if unreachable).
pub fn metric_sum(addr: &str, prefix: &str) -> f64 {
    scrape(addr)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// Run the binary with `args` and require success (showing its stderr if
/// not).
pub fn run_ok<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run the binary with `args` and require a failure without a panic;
/// returns its stderr.
pub fn run_err<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().into()).collect();
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    err
}

/// Run the binary with `args`, require success (showing its stderr if not),
/// and return its JSON output.
pub fn run_json<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    json(&run_ok(args))
}

/// `byzscale client --config <config> <args>`: require success, return its
/// output without surrounding white space.
pub fn client(config: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["client", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The strings of the array `key` of a JSON report.
pub fn strings(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Poll `f` every `every` until it holds; panic with `what` after `within`.
pub fn wait_until(what: &str, within: Duration, every: Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, JSON body).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    try_http(addr, method, path, body).unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"))
}

/// [`http`], with failures (no connection, a cut answer) as errors.
pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, serde_json::Value), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(40)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let status: u16 = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response: {resp}"))?;
    let json = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    let v = serde_json::from_str(json).map_err(|e| format!("{e}: {resp}"))?;
    Ok((status, v))
}

/// `byzscale cluster <args> --duration 0 --keep --json --dir <dir>`: its
/// JSON report, and its processes (killed when the [`Kill`] is dropped).
pub fn kept_cluster(args: &[&str], dir: &std::path::Path) -> (serde_json::Value, Kill) {
    let fixed = ["--duration", "0", "--keep", "--json", "--dir"];
    let v = run_json(
        std::iter::once("cluster")
            .chain(args.iter().copied())
            .chain(fixed)
            .map(std::ffi::OsStr::new)
            .chain([dir.as_os_str()]),
    );
    let kill = Kill::cluster(&v);
    (v, kill)
}
