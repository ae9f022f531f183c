//! AT2 end to end: four `byzscale node` processes on loopback (started by
//! `byzscale cluster --protocol at2 --keep`), transfers over the TCP client
//! and the HTTP API, errors, and the ledgers of every node. Waits are bounded
//! polls, never timing assertions.

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{http, strings, Kill, BIN};
const INITIAL: i64 = 1_000_000_000;

/// The kept cluster (its processes are killed when this is dropped).
struct Cluster {
    kill: Kill,
    http: Vec<String>,
    metrics: Vec<String>,
    deployment: String,
}

fn start() -> Cluster {
    start_in(&std::env::temp_dir().join(format!("byzscale-at2-e2e-{}", std::process::id())))
}

fn start_in(dir: &std::path::Path) -> Cluster {
    let mut args: Vec<std::ffi::OsString> = [
        "cluster",
        "--protocol",
        "at2",
        "--nodes",
        "4",
        "--duration",
        "0",
        "--keep",
        "--json",
        "--dir",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(dir.into());
    let v: Value = common::run_json(args);
    assert_eq!(v["supply_conserved"], true, "{v}");
    assert_eq!(v["balances_agree"], true, "{v}");
    let strs = |k: &str| -> Vec<String> {
        strings(&v, k)
            .iter()
            .map(|s| {
                s.trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .to_string()
            })
            .collect()
    };
    Cluster {
        kill: Kill::cluster(&v),
        http: strs("http"),
        metrics: strs("metrics"),
        deployment: v["deployment"].as_str().unwrap().to_string(),
    }
}

/// Poll every node's balances of accounts 0..4 over HTTP until they are
/// `want` (each read must succeed); panic after `within`.
fn wait_balances(c: &Cluster, want: &[i64], within: Duration) {
    let deadline = Instant::now() + within;
    for addr in &c.http {
        loop {
            let got: Vec<i64> = (0..4)
                .map(|a| {
                    let (s, v) = http(addr, "GET", &format!("/balance/{a}"), None);
                    assert_eq!(s, 200, "{v}");
                    v["balance"].as_i64().unwrap()
                })
                .collect();
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} has {got:?}, expected {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `POST /transfer` with `body`.
fn transfer(addr: &str, body: &str) -> (u16, Value) {
    http(addr, "POST", "/transfer", Some(body))
}

fn client(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["client", "--config", &c.deployment])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn transfers_over_tcp_and_http_and_every_node_agrees() {
    let c = start();
    // TCP client: from a0 (owned by node 0) and a1
    for (from, to, amount) in [("0", "1", "100"), ("a1", "a2", "5")] {
        let out = client(&c, &["transfer", from, to, amount]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("transferred"), "{stdout}");
    }
    // HTTP at the owner
    let (status, v) = transfer(&c.http[2], r#"{"from": 2, "to": 3, "amount": 7}"#);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["issuer"], 2, "{v}");
    assert_eq!(v["seq"], 1, "{v}");

    // not the owner: refused, naming the owner and its address
    let (status, v) = transfer(&c.http[0], r#"{"from": 1, "to": 3, "amount": 1}"#);
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["owner"], 1, "{v}");
    assert_eq!(v["owner_http"].as_str(), Some(c.http[1].as_str()), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("owned by node 1"),
        "{v}"
    );
    // insufficient funds, over HTTP and over TCP
    let (status, v) = transfer(&c.http[3], r#"{"from": 3, "to": 0, "amount": 5000000000}"#);
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("insufficient funds"),
        "{v}"
    );
    let out = client(&c, &["transfer", "3", "0", "5000000000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("insufficient funds"), "{err}");
    // bad input
    let (status, v) = transfer(&c.http[0], r#"{"from": 0}"#);
    assert_eq!(status, 400, "{v}");
    let (status, v) = http(&c.http[0], "GET", "/balance/x9", None);
    assert_eq!(status, 400, "{v}");
    let (status, v) = http(&c.http[0], "GET", "/balance/77", None);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unknown account"));
    let out = client(&c, &["transfer", "zero", "1", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not an account") && !err.contains("panicked"),
        "{err}"
    );

    // every node converges to the same balances, and the supply is conserved
    let want = [
        INITIAL - 100,
        INITIAL + 100 - 5,
        INITIAL + 5 - 7,
        INITIAL + 7,
    ];
    wait_balances(&c, &want, Duration::from_secs(20));
    assert_eq!(want.iter().sum::<i64>(), 4 * INITIAL);
    // history and balance through the TCP client
    let (status, v) = http(&c.http[3], "GET", "/history/a1", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    let out = client(&c, &["balance", "a2"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("a2: {}", INITIAL - 2)
    );
    let out = client(&c, &["history", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("a2: 2 transfers"), "{stdout}");
}

#[test]
fn cluster_at2_runs_a_workload_and_checks_the_ledgers() {
    let v: Value = common::run_json([
        "cluster",
        "--protocol",
        "at2",
        "--nodes",
        "4",
        "--clients",
        "16",
        "--duration",
        "2",
        "--json",
    ]);
    assert!(v["committed"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["supply_conserved"], true, "{v}");
    assert_eq!(v["balances_agree"], true, "{v}");
    for k in ["throughput_ops", "p50_ms", "p99_ms"] {
        assert!(v[k].is_number(), "missing {k}: {v}");
    }
}

/// Node processes started by a test.
struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn metric(addr: &str, name: &str) -> f64 {
    common::metric(addr, name).unwrap_or_else(|| panic!("{name} not served at {addr}"))
}

/// Links that lose frames: every node keeps at most 2 frames queued per peer
/// (drop-oldest), so concurrent transfers lose broadcast messages; Bracha's
/// retransmission must still deliver everything everywhere.
#[test]
fn transfers_complete_and_ledgers_agree_when_links_drop_frames() {
    let dir = std::env::temp_dir().join(format!("byzscale-at2-lossy-{}", std::process::id()));
    let mut c = start_in(&dir);
    // restart the nodes with tiny peer queues
    for p in std::mem::take(&mut c.kill.0) {
        let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{p}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut procs = Procs(Vec::new());
    for i in 0..4 {
        let path = dir.join(format!("node-{i}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("peer_queue_frames = 8192"), "{text}");
        std::fs::write(
            &path,
            text.replace("peer_queue_frames = 8192", "peer_queue_frames = 2"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("node-{i}.lossy.log"))).unwrap();
        procs.0.push(
            Command::new(BIN)
                .args(["node", "--config"])
                .arg(&path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for a in &c.http {
        while std::net::TcpStream::connect(a).is_err() {
            assert!(Instant::now() < deadline, "{a} did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // 16 concurrent clients, 4 per owner, 10 transfers of 1 each
    let threads: Vec<_> = (0..16u32)
        .map(|k| {
            let addr = c.http[(k % 4) as usize].clone();
            std::thread::spawn(move || {
                let from = k % 4;
                let to = (from + 1 + k / 4 % 3) % 4;
                for _ in 0..10 {
                    let body = format!(r#"{{"from": {from}, "to": {to}, "amount": 1}}"#);
                    let (s, v) = transfer(&addr, &body);
                    assert_eq!(s, 200, "{v}");
                }
                (from, to)
            })
        })
        .collect();
    let mut want = [INITIAL; 4];
    for t in threads {
        let (from, to) = t.join().unwrap();
        want[from as usize] -= 10;
        want[to as usize] += 10;
    }
    wait_balances(&c, &want, Duration::from_secs(30));
    let dropped: f64 = c
        .metrics
        .iter()
        .map(|m| metric(m, "byzscale_net_frames_dropped_total"))
        .sum();
    eprintln!("frames dropped: {dropped}");
}
