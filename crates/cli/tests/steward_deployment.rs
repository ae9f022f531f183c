//! Steward as real processes on loopback (issue 13 item 7): 3 sites of 4
//! servers (`byzscale cluster --protocol steward --sites 3 --keep`) with a
//! 10 ms one-way WAN between sites through the delay shim, driven through
//! the servers' Redis gateways (each a Steward client of its own site:
//! writes are globally ordered updates, reads local queries). Writers at
//! site 0 run while site 0's representative (node 0) is SIGKILLed and
//! restarted from its node file; every acknowledged write is then read
//! back *locally at site 2*, the restarted server executes the global order
//! again up to where the others are, and `byzscale client` writes and reads
//! too. Waits are bounded polls, never timing assertions.

use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::{metric, strings, Node, Writers};

fn conn(addr: &str) -> Option<redis::Connection> {
    let c = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let con = c.get_connection().ok()?;
    con.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    Some(con)
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(40), Duration::from_millis(100), f)
}

/// The last globally ordered seq node `i` executed (0 if unreachable).
fn executed(metrics: &[String], i: usize) -> u64 {
    metric(&metrics[i], "byzscale_st_executed_seq").unwrap_or(0.0) as u64
}

#[test]
fn steward_sites_order_writes_globally_serve_them_locally_and_survive_a_restart() {
    let dir = common::fresh_dir("byzscale-steward");
    let topo = dir.with_extension("topology.toml");
    std::fs::write(
        &topo,
        "regions = [\"a\", \"b\", \"c\"]\none_way_ms = [[0, 10, 10], [10, 0, 10], [10, 10, 0]]\n",
    )
    .unwrap();
    let topo_arg = topo.to_str().unwrap();
    let args = [
        "--protocol",
        "steward",
        "--sites",
        "3",
        "--faulty-per-site",
        "1",
        "--topology",
        topo_arg,
    ];
    let (v, kept) = common::kept_cluster(&args, &dir);
    let gateways = strings(&v, "redis_all");
    let metrics = strings(&v, "metrics");
    assert_eq!((gateways.len(), metrics.len()), (12, 12), "{v}");
    assert_eq!(v["servers"], 12, "{v}");

    // writers through site 0's gateways of nodes 1 and 2 (node 0 is killed)
    let gws = gateways.clone();
    let writers = Writers::<Vec<(String, String)>>::spawn(2, move |w, acked, stop| {
        let Some(mut c) = conn(&gws[1 + w]) else {
            return;
        };
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let (k, val) = (format!("w{w}:{i}"), format!("v{w}.{i}"));
            if redis::cmd("SET")
                .arg(&k)
                .arg(&val)
                .query::<()>(&mut c)
                .is_err()
            {
                return;
            }
            acked.lock().unwrap().push((k, val));
        }
    });
    wait_until("writes before the crash", || writers.acked().len() >= 20);

    // SIGKILL site 0's representative (the SMR leader of view 0) under load,
    // writes go on, then restart it from its node file (its redb store)
    let node0 = v["pids"][0].as_u64().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", &node0.to_string()])
        .status();
    let before = writers.acked().len();
    wait_until("writes without node 0", || {
        writers.acked().len() >= before + 10
    });
    let restarted = Node::start(&dir, 0);
    let during = writers.acked().len();
    wait_until("writes after the restart", || {
        writers.acked().len() >= during + 10
    });
    let acked = writers.stop();
    assert!(!acked.is_empty());

    // every acknowledged write is read back locally at site 2 (node 10's
    // gateway: a client of site 2 only); local reads may lag the global
    // order, so poll until the site has executed far enough
    let mut c = conn(&gateways[10]).unwrap();
    for (key, value) in &acked {
        wait_until(&format!("{key} readable at site 2"), || {
            let got: Option<String> = redis::cmd("GET").arg(key).query(&mut c).unwrap();
            got.as_deref() == Some(value.as_str())
        });
    }

    // the restarted server executes the global order again (from its
    // site SMR's records and the others' retransmissions) up to where
    // another server of its site is
    let top = executed(&metrics, 1);
    assert!(
        top as usize >= acked.len(),
        "seq {top} below {} writes",
        acked.len()
    );
    wait_until("node 0 to catch up", || executed(&metrics, 0) >= top);

    // `byzscale client`: an update through site 1 (a node file of site 1),
    // read back with a local read at site 1 (read-your-writes), and from
    // site 0 with an ordered read
    let node5 = dir.join("node-5.toml");
    assert_eq!(common::client(&node5, &["set", "cli", "one"]), "OK");
    // a new client process has no floor of its own: poll until the site's
    // f+1 matching answers include the write
    wait_until("the write read locally at site 1", || {
        common::client(&node5, &["get", "cli"]) == r#""one""#
    });
    let dep = dir.join("deployment.toml");
    let ordered = std::process::Command::new(common::BIN)
        .args(["client", "--ordered", "--config"])
        .arg(&dep)
        .args(["get", "cli"])
        .output()
        .unwrap();
    assert!(ordered.status.success(), "{ordered:?}");
    assert_eq!(String::from_utf8_lossy(&ordered.stdout).trim(), r#""one""#);

    drop(restarted);
    drop(kept);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&topo);
}
