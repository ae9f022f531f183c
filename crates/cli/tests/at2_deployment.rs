//! AT2 end to end: four `byzscale node` processes on loopback (started by
//! `byzscale cluster --protocol at2 --keep`), clients holding their own
//! account keys, transfers over the TCP client (`byzscale client`) and the
//! HTTP API (signed here, in the test), forged, replayed and conflicting
//! transfers, errors, and the ledgers of every node. Every test runs over
//! Bracha and over Contagion (`--broadcast contagion`, parameters selected
//! for N = 4). Waits are bounded polls, never timing assertions.

use byzscale_at2::{demo_key, Account, SignedTransfer, Transfer, TransferId};
use byzscale_node::protocols::at2::transfer_body;
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
    dir: std::path::PathBuf,
}

fn start(broadcast: &str) -> Cluster {
    let dir = format!("byzscale-at2-e2e-{broadcast}-{}", std::process::id());
    start_in(&std::env::temp_dir().join(dir), broadcast)
}

fn start_in(dir: &std::path::Path, broadcast: &str) -> Cluster {
    let mut args: Vec<std::ffi::OsString> = [
        "cluster",
        "--protocol",
        "at2",
        "--broadcast",
        broadcast,
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
    assert_eq!(v["broadcast"], broadcast, "{v}");
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
        dir: dir.to_path_buf(),
    }
}

/// Demo account `i` (its key is in the cluster directory for i < 4).
fn demo(i: u32) -> Account {
    Account::of(&demo_key(i))
}

/// Demo account `from`'s transfer `seq` of `amount` to `to`, signed, as the
/// JSON body of `POST /transfer`.
fn signed(from: u32, seq: u64, to: Account, amount: u64, deps: Vec<TransferId>) -> String {
    let t = Transfer {
        from: demo(from),
        seq,
        to,
        amount,
    };
    transfer_body(&SignedTransfer::sign(&demo_key(from), t, deps)).to_string()
}

/// Poll every node's balances of `accounts` over HTTP until they are `want`
/// (each read must succeed); panic after `within`.
fn wait_balances(c: &Cluster, accounts: &[Account], want: &[i64], within: Duration) {
    let deadline = Instant::now() + within;
    for addr in &c.http {
        loop {
            let got: Vec<i64> = accounts
                .iter()
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

fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn failed(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    err
}

#[test]
fn clients_own_their_accounts_over_tcp_and_http_and_every_node_agrees() {
    clients_own_their_accounts(BRACHA);
}

#[test]
fn clients_own_their_accounts_over_tcp_and_http_and_every_node_agrees_over_contagion() {
    clients_own_their_accounts(CONTAGION);
}

const BRACHA: &str = "bracha";
const CONTAGION: &str = "contagion";

fn clients_own_their_accounts(broadcast: &str) {
    let c = start(broadcast);
    let key = |i: u32| c.dir.join(format!("accounts/demo-{i}.key"));
    let key0 = key(0);
    let key0 = key0.to_str().unwrap();
    // a new account, with no deployment needed
    let alice_key = c.dir.join("alice.key");
    let out = Command::new(BIN)
        .args(["client", "account", "new", "--out"])
        .arg(&alice_key)
        .output()
        .unwrap();
    let printed = ok(&out);
    let alice = Account::from_hex(printed.lines().next().unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["client", "account", "new", "--out"])
        .arg(&alice_key)
        .output()
        .unwrap();
    assert!(failed(&out).contains("refusing to overwrite"));
    let alice_key = alice_key.to_str().unwrap();

    // TCP client: demo account 0 pays alice, who spends part of it (her
    // transfer cites the one she received)
    let out = ok(&client(
        &c,
        &["transfer", "--from", key0, "--to", &alice.hex(), "100"],
    ));
    assert!(
        out.starts_with(&format!("transferred 100 from {} to {alice}", demo(0))),
        "{out}"
    );
    let out = ok(&client(
        &c,
        &[
            "transfer",
            "--from",
            alice_key,
            "--to",
            &demo(3).hex(),
            "60",
        ],
    ));
    assert!(out.contains("transferred 60"), "{out}");
    let out = ok(&client(&c, &["account", alice_key]));
    assert!(out.contains("balance 40, next sequence number 2"), "{out}");

    // HTTP at any node: demo account 1 pays demo account 2 through node 2
    let body = signed(1, 1, demo(2), 7, vec![]);
    let (status, v) = transfer(&c.http[2], &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["from"], demo(1).hex(), "{v}");
    assert_eq!(v["seq"], 1, "{v}");
    // replayed: refused, at this node and at another
    for addr in [&c.http[2], &c.http[0]] {
        let (status, v) = transfer(addr, &body);
        assert_eq!(status, 409, "{v}");
        assert!(v["error"].as_str().unwrap().contains("used up"), "{v}");
    }
    // forged: demo account 1's funds, signed with demo account 2's key
    let t = Transfer {
        from: demo(1),
        seq: 2,
        to: demo(2),
        amount: 1,
    };
    let forged = transfer_body(&SignedTransfer::sign(&demo_key(2), t, vec![])).to_string();
    let (status, v) = transfer(&c.http[1], &forged);
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("signature"), "{v}");
    // what an owner needs to sign its next transfer
    let (status, v) = http(&c.http[3], "GET", &format!("/account/{}", demo(2)), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["next_seq"], 1, "{v}");

    // insufficient funds, over HTTP and over TCP
    let (status, v) = transfer(&c.http[3], &signed(3, 1, demo(0), 5_000_000_000, vec![]));
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("insufficient funds"),
        "{v}"
    );
    let key3 = key(3);
    let out = client(
        &c,
        &[
            "transfer",
            "--from",
            key3.to_str().unwrap(),
            "--to",
            &demo(0).hex(),
            "5000000000",
        ],
    );
    assert!(failed(&out).contains("insufficient funds"));
    // bad input
    let (status, v) = transfer(&c.http[0], r#"{"from": 0}"#);
    assert_eq!(status, 400, "{v}");
    let (status, v) = transfer(&c.http[0], &signed(3, 1, demo(0), 0, vec![]));
    assert_eq!(status, 400, "{v}");
    let (status, v) = http(&c.http[0], "GET", "/balance/x9", None);
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not an account"),
        "{v}"
    );
    let out = client(
        &c,
        &[
            "transfer",
            "--from",
            "no-such.key",
            "--to",
            &demo(0).hex(),
            "2",
        ],
    );
    assert!(failed(&out).contains("no-such.key"));
    let out = client(&c, &["transfer", "zero", "1", "2"]);
    assert!(failed(&out).contains("usage: transfer --from KEYFILE --to ACCOUNT AMOUNT"));

    // the double-spending owner: demo account 3 signs two transfers with
    // sequence number 1 and hands them to nodes 0 and 1 at once; at most one
    // is applied, and every node applies the same one
    let a = signed(3, 1, demo(0), 1000, vec![]);
    let b = signed(3, 1, demo(1), 1000, vec![]);
    let (h0, h1) = (c.http[0].clone(), c.http[1].clone());
    let ta = std::thread::spawn(move || transfer(&h0, &a));
    let tb = std::thread::spawn(move || transfer(&h1, &b));
    let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
    let oks = [&ra, &rb].iter().filter(|r| r.0 == 200).count();
    assert!(oks <= 1, "{ra:?} {rb:?}");
    for r in [&ra, &rb] {
        assert!(r.0 == 200 || r.0 == 409, "{r:?}");
    }
    let (to0, to1) = match (ra.0, rb.0) {
        (200, _) => (1000, 0),
        (_, 200) => (0, 1000),
        _ => (0, 0),
    };
    // (a refused transfer may still have been certified by the other
    // node's votes only if it was the one applied: read the truth from the
    // nodes, and require them to agree)
    let deadline = Instant::now() + Duration::from_secs(20);
    let spent = loop {
        let seqs: Vec<u64> = c
            .http
            .iter()
            .map(|h| {
                http(h, "GET", &format!("/account/{}", demo(3)), None).1["next_seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if seqs.windows(2).all(|w| w[0] == w[1]) || Instant::now() > deadline {
            break seqs[0] == 2;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(spent, oks == 1, "applied iff acknowledged");

    // every node converges to the same balances, and the supply is conserved
    let accounts = [demo(0), demo(1), demo(2), demo(3), alice];
    let want = [
        INITIAL - 100 + to0,
        INITIAL - 7 + to1,
        INITIAL + 7,
        INITIAL + 60 - to0 - to1,
        40,
    ];
    wait_balances(&c, &accounts, &want, Duration::from_secs(20));
    assert_eq!(want.iter().sum::<i64>(), 4 * INITIAL + 100 - 100);
    // history and balance through the TCP client, by key file or public key
    let (status, v) = http(&c.http[3], "GET", &format!("/history/{alice}"), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    let out = ok(&client(&c, &["balance", alice_key]));
    assert_eq!(out.trim(), format!("{alice}: 40"));
    let out = ok(&client(&c, &["history", &alice.hex()]));
    assert!(out.starts_with(&format!("{alice}: 2 transfers")), "{out}");
}

#[test]
fn cluster_at2_runs_a_workload_and_checks_the_ledgers() {
    workload(BRACHA);
}

#[test]
fn cluster_at2_runs_a_workload_and_checks_the_ledgers_over_contagion() {
    workload(CONTAGION);
}

fn workload(broadcast: &str) {
    let v: Value = common::run_json([
        "cluster",
        "--protocol",
        "at2",
        "--broadcast",
        broadcast,
        "--nodes",
        "4",
        "--clients",
        "16",
        "--duration",
        "2",
        "--json",
    ]);
    assert_eq!(v["broadcast"], broadcast, "{v}");
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
/// (drop-oldest), so concurrent transfers lose broadcast messages; the
/// broadcast's retransmission must still deliver everything everywhere.
#[test]
fn transfers_complete_and_ledgers_agree_when_links_drop_frames() {
    lossy_links(BRACHA);
}

#[test]
fn transfers_complete_and_ledgers_agree_when_links_drop_frames_over_contagion() {
    lossy_links(CONTAGION);
}

fn lossy_links(broadcast: &str) {
    let dir = std::env::temp_dir().join(format!(
        "byzscale-at2-lossy-{broadcast}-{}",
        std::process::id()
    ));
    let mut c = start_in(&dir, broadcast);
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
    // 16 concurrent clients (demo accounts 4..20), 4 per node, 10 transfers
    // of 1 each to one of demo accounts 0..3
    let threads: Vec<_> = (0..16u32)
        .map(|k| {
            let addr = c.http[(k % 4) as usize].clone();
            std::thread::spawn(move || {
                let to = k % 4;
                for seq in 1..=10 {
                    let body = signed(4 + k, seq, demo(to), 1, vec![]);
                    let (s, v) = transfer(&addr, &body);
                    assert_eq!(s, 200, "{v}");
                }
                to
            })
        })
        .collect();
    let mut want = [INITIAL; 4];
    for t in threads {
        let to = t.join().unwrap();
        want[to as usize] += 10;
    }
    let accounts: Vec<Account> = (0..4).map(demo).collect();
    wait_balances(&c, &accounts, &want, Duration::from_secs(30));
    let dropped: f64 = c
        .metrics
        .iter()
        .map(|m| metric(m, "byzscale_net_frames_dropped_total"))
        .sum();
    eprintln!("frames dropped: {dropped}");
}
