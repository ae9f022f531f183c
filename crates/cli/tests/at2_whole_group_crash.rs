//! Issue 10, "Done when", for AT2, end to end with real processes on
//! loopback: four AT2 nodes (`byzscale cluster --protocol at2 --keep`) under
//! transfer load over HTTP, SIGKILL of all four at once, a restart of each
//! from its node file. Every acknowledged transfer must still be applied at
//! every node, the nodes must agree, the issuers must go on with fresh
//! sequence numbers (never reuse one they signed), and the group must serve
//! again and keep serving with one node down. Waits are bounded polls for
//! progress, never timing assertions.
//!
//! Before AT2 nodes kept anything on disk, a restarted node started over at
//! sequence number 1 and its transfers were never applied again by the
//! others (their counters were ahead): "the group to serve again" never held.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::{http, strings, try_http, Node, Writers};
const INITIAL: i64 = 1_000_000_000;

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(90), Duration::from_millis(100), f)
}

/// Transfer 1 from `from` to `to` at `addr`: the transfer's sequence number
/// if it was acknowledged.
fn pay(addr: &str, from: u32, to: u32) -> Option<u64> {
    let body = format!(r#"{{"from": {from}, "to": {to}, "amount": 1}}"#);
    match try_http(addr, "POST", "/transfer", Some(&body)) {
        Ok((200, v)) => v["seq"].as_u64(),
        _ => None,
    }
}

/// Account `a`'s (applied transfers touching it, balance) at `addr`.
fn account(addr: &str, a: u32) -> Option<(u64, i64)> {
    let (s, h) = try_http(addr, "GET", &format!("/history/{a}"), None).ok()?;
    let (t, b) = try_http(addr, "GET", &format!("/balance/{a}"), None).ok()?;
    (s == 200 && t == 200).then_some(())?;
    Some((h["total"].as_u64()?, b["balance"].as_i64()?))
}

#[test]
fn an_at2_group_survives_a_whole_group_sigkill_without_losing_a_transfer() {
    let dir = common::fresh_dir("byzscale-at2-wgc");
    let (v, kept) = common::kept_cluster(&["--protocol", "at2", "--nodes", "4"], &dir);
    let http_of: Vec<String> = strings(&v, "http")
        .iter()
        .map(|s| s.trim_start_matches("http://").to_string())
        .collect();

    // accounts 0 and 1 (owned by nodes 0 and 1) pay accounts 2 and 3, four
    // concurrent clients each: an account's history counts exactly the
    // transfers it issued, and its balance falls by one per transfer
    let addrs = http_of.clone();
    let writers = Writers::<BTreeMap<u32, Vec<u64>>>::spawn(8, move |w, acked, stop| {
        let from = (w % 2) as u32;
        while !stop.load(Ordering::Relaxed) {
            match pay(&addrs[from as usize], from, from + 2) {
                Some(seq) => acked.lock().unwrap().entry(from).or_default().push(seq),
                None => return, // the node died
            }
        }
    });
    wait_until("transfers under load", || {
        let a = writers.acked();
        (0..2).all(|f| a.get(&f).is_some_and(|s| s.len() >= 200))
    });

    // power loss: SIGKILL all four at once, then restart each from its
    // node file (its redb store)
    kept.sigkill();
    let acked = writers.stop();
    drop(kept);
    let mut nodes: Vec<Node> = (0..4).map(|i| Node::start(&dir, i)).collect();

    // the issuers go on, with sequence numbers after every acknowledged one
    for from in 0..2u32 {
        let addr = &http_of[from as usize];
        let mut seq = None;
        wait_until("the group to serve again", || {
            seq = pay(addr, from, from + 2);
            seq.is_some()
        });
        let last = acked[&from].iter().max().copied().unwrap();
        assert!(
            seq.unwrap() > last,
            "account {from}: seq {seq:?} after {last}"
        );
    }
    // every node applies every acknowledged transfer (and the two after the
    // restart), and they agree
    for from in 0..2u32 {
        let want = acked[&from].len() as u64 + 1;
        let mut seen: Vec<Option<(u64, i64)>>;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            seen = http_of.iter().map(|a| account(a, from)).collect();
            if seen.iter().all(|s| s.is_some_and(|(n, _)| n >= want))
                && seen.windows(2).all(|w| w[0] == w[1])
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "account {from}: want {want} applied at every node, have {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let (n, balance) = seen[0].unwrap();
        assert_eq!(balance, INITIAL - n as i64, "account {from}: {seen:?}");
    }

    // one node down (f = 1): the others still serve
    nodes[3].kill();
    let addr = &http_of[1];
    wait_until("the group to serve with a node down", || {
        pay(addr, 1, 2).is_some()
    });
    let (status, v) = http(&http_of[0], "GET", "/balance/0", None);
    assert_eq!(status, 200, "{v}");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
