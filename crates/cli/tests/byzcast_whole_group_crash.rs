//! Issue 10, "Done when", for ByzCast, end to end with real processes on
//! loopback: the tree h1(g1 g2) of 12 nodes (`byzscale cluster --protocol
//! byzcast --keep`) under single-shard SETs and cross-shard MSETs through
//! its Redis gateways, SIGKILL of all twelve at once, a restart of each from
//! its node file. Every acknowledged write must be readable, the tree must
//! serve again (the parent's forward streams resume with their sequence
//! numbers), and a leader crash after that must end in a view change. Waits
//! are bounded polls for progress, never timing assertions.

use byzscale_byzcast::kv::shard_of;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::{metric, strings, Node, Writers};

fn conn(addr: &str) -> Option<redis::Connection> {
    let c = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let con = c.get_connection().ok()?;
    con.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    Some(con)
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(90), Duration::from_millis(200), f)
}

/// The first key `prefix<i>` that lives in target group `g` of 2.
fn key_on(prefix: &str, g: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shard_of(k.as_bytes(), 2).0 == g)
        .unwrap()
}

/// A SET on each shard and an MSET across both, through `gw`.
fn serves(gw: &str, tag: &str) -> bool {
    let Some(mut c) = conn(gw) else {
        return false;
    };
    let (a, b) = (key_on(&format!("{tag}a"), 0), key_on(&format!("{tag}b"), 1));
    let set = |c: &mut redis::Connection, k: &str| {
        redis::cmd("SET").arg(k).arg(tag).query::<()>(c).is_ok()
    };
    set(&mut c, &a)
        && set(&mut c, &b)
        && redis::cmd("MSET")
            .arg(&a)
            .arg("m")
            .arg(&b)
            .arg("m")
            .query::<()>(&mut c)
            .is_ok()
}

#[test]
fn a_byzcast_tree_survives_a_whole_group_sigkill_and_a_leader_crash_after_it() {
    let dir = common::fresh_dir("byzscale-bc-wgc");
    let (v, kept) = common::kept_cluster(&["--protocol", "byzcast", "--groups", "2"], &dir);
    let gateways = strings(&v, "redis_all");
    let metrics: Vec<String> = strings(&v, "metrics");
    assert_eq!((gateways.len(), metrics.len()), (12, 12), "{v}");

    // writers through every other gateway: a SET on one shard, then an MSET
    // of a key on each shard; each write counts once acknowledged
    let gws = gateways.clone();
    let writers = Writers::<Vec<(String, String)>>::spawn(6, move |w, acked, stop| {
        let Some(mut c) = conn(&gws[w * 2]) else {
            return;
        };
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let val = format!("v{w}.{i}");
            let (k, a, b) = (
                format!("s{w}:{i}"),
                key_on(&format!("m{w}:{i}:"), 0),
                key_on(&format!("m{w}:{i}:"), 1),
            );
            let set = redis::cmd("SET").arg(&k).arg(&val).query::<()>(&mut c);
            if set.is_err() {
                return; // the gateway died with its node
            }
            acked.lock().unwrap().push((k, val.clone()));
            let mset = redis::cmd("MSET")
                .arg(&a)
                .arg(&val)
                .arg(&b)
                .arg(&val)
                .query::<()>(&mut c);
            if mset.is_err() {
                return;
            }
            let mut acked = acked.lock().unwrap();
            acked.push((a, val.clone()));
            acked.push((b, val));
        }
    });
    wait_until("writes under load", || writers.acked().len() >= 600);

    // power loss: SIGKILL all twelve at once, then restart each from its
    // node file (its redb store)
    kept.sigkill();
    let acked = writers.stop();
    drop(kept);
    let mut nodes: Vec<Node> = (0..12).map(|i| Node::start(&dir, i)).collect();
    wait_until("the tree to serve again", || serves(&gateways[1], "after"));

    // every acknowledged write is there
    let mut c = conn(&gateways[7]).unwrap();
    for (key, value) in &acked {
        let got: Option<String> = redis::cmd("GET").arg(key).query(&mut c).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value.as_str()),
            "acknowledged {key} lost"
        );
    }

    // a leader crash in the group of nodes 0..3 still ends in a view change
    let view = metric(&metrics[1], "byzscale_view").unwrap() as usize;
    let leader = view % 4;
    nodes[leader].kill();
    let gw = &gateways[4 + leader];
    wait_until("the tree to serve without that leader", || {
        serves(gw, "crash")
    });
    let others: Vec<usize> = (0..4).filter(|i| *i != leader).collect();
    wait_until("the others to install a new view", || {
        others
            .iter()
            .all(|i| metric(&metrics[*i], "byzscale_view").is_some_and(|v| v as usize > view))
    });
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
