//! Issue 10, "Done when", for AT2, end to end with real processes on
//! loopback: four AT2 nodes (`byzscale cluster --protocol at2 --keep`) under
//! transfer load over HTTP, SIGKILL of all four at once, a restart of each
//! from its node file. Every acknowledged transfer must still be applied at
//! every node, the nodes must agree, the clients must go on with their next
//! sequence numbers (a transfer out at the crash is resubmitted as it was,
//! the same signed bytes, and applied once), and the group must serve again
//! and keep serving with one node down. Waits are bounded polls for
//! progress, never timing assertions.
//!
//! Clients own their accounts (issue 17): writer w holds demo account w's
//! key and pays demo account 100 + w through node w mod N.
//!
//! Over Bracha with N = 4; over Contagion with N = 7 and parameters
//! selected for β = 0.15 and ε = 10⁻³ (one Byzantine member, so one node
//! may be down: with N = 4 no parameters tolerate a fault).

use byzscale_at2::{demo_key, Account, SignedTransfer, Transfer};
use byzscale_node::protocols::at2::transfer_body;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::{http, strings, try_http, Node, Writers};
const INITIAL: i64 = 1_000_000_000;

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(90), Duration::from_millis(100), f)
}

fn demo(i: u32) -> Account {
    Account::of(&demo_key(i))
}

/// Writer `w`'s transfer `seq`: 1 to demo account 100 + w.
fn body(w: u32, seq: u64) -> String {
    let t = Transfer {
        from: demo(w),
        seq,
        to: demo(100 + w),
        amount: 1,
    };
    transfer_body(&SignedTransfer::sign(&demo_key(w), t, vec![])).to_string()
}

/// Submit `body` (transfer `seq`) at `addr`: whether it is applied (now, or
/// before: "used up"); `None` if the node gave no usable answer.
fn submit(addr: &str, body: &str, seq: u64) -> Option<bool> {
    match try_http(addr, "POST", "/transfer", Some(body)) {
        Ok((200, v)) => Some(v["seq"].as_u64() == Some(seq)),
        Ok((409, v)) if v["error"].as_str().is_some_and(|e| e.contains("used up")) => Some(true),
        Ok((409, _)) => Some(false),
        _ => None,
    }
}

/// Account `a`'s (applied transfers touching it, balance) at `addr`.
fn account(addr: &str, a: Account) -> Option<(u64, i64)> {
    let (s, h) = try_http(addr, "GET", &format!("/history/{a}"), None).ok()?;
    let (t, b) = try_http(addr, "GET", &format!("/balance/{a}"), None).ok()?;
    (s == 200 && t == 200).then_some(())?;
    Some((h["total"].as_u64()?, b["balance"].as_i64()?))
}

/// One writer's account: acknowledged sequence numbers, and the transfer
/// out when its node died.
#[derive(Clone, Debug, Default)]
struct Out {
    acked: Vec<u64>,
    pending: Option<u64>,
}

#[test]
fn an_at2_group_survives_a_whole_group_sigkill_without_losing_a_transfer() {
    survives_a_whole_group_sigkill("byzscale-at2-wgc", 4, &[]);
}

#[test]
fn an_at2_group_survives_a_whole_group_sigkill_without_losing_a_transfer_over_contagion() {
    let contagion = [
        "--broadcast",
        "contagion",
        "--assumed-fraction",
        "0.15",
        "--epsilon",
        "1e-3",
    ];
    survives_a_whole_group_sigkill("byzscale-at2-wgc-contagion", 7, &contagion);
}

/// The test over `n` nodes started with `--protocol at2` and `flags`.
fn survives_a_whole_group_sigkill(name: &str, n: usize, flags: &[&str]) {
    let dir = common::fresh_dir(name);
    let nodes_flag = n.to_string();
    let mut args = vec!["--protocol", "at2", "--nodes", &nodes_flag];
    args.extend_from_slice(flags);
    let (v, kept) = common::kept_cluster(&args, &dir);
    let http_of: Vec<String> = strings(&v, "http")
        .iter()
        .map(|s| s.trim_start_matches("http://").to_string())
        .collect();

    // eight clients, each with its own account, pay through all four nodes
    let addrs = http_of.clone();
    let writers = Writers::<BTreeMap<u32, Out>>::spawn(8, move |w, acked, stop| {
        let w = w as u32;
        let addr = &addrs[w as usize % n];
        let mut seq = 1;
        while !stop.load(Ordering::Relaxed) {
            match submit(addr, &body(w, seq), seq) {
                Some(true) => {
                    acked.lock().unwrap().entry(w).or_default().acked.push(seq);
                    seq += 1;
                }
                // not checkable or certified yet (a lagging voter): again
                Some(false) => std::thread::sleep(Duration::from_millis(50)),
                None => {
                    // the node died with the transfer out
                    acked.lock().unwrap().entry(w).or_default().pending = Some(seq);
                    return;
                }
            }
        }
    });
    wait_until("transfers under load", || {
        let a = writers.acked();
        (0..8).all(|w| a.get(&w).is_some_and(|o| o.acked.len() >= 40))
    });

    // power loss: SIGKILL all four at once, then restart each from its
    // node file (its redb store)
    kept.sigkill();
    let mut outs = writers.stop();
    drop(kept);
    let mut nodes: Vec<Node> = (0..n).map(|i| Node::start(&dir, i)).collect();

    // the clients go on: the transfer out at the crash, resubmitted as it
    // was, is applied once; then the next sequence number
    for w in 0..8u32 {
        let addr = &http_of[w as usize % n];
        let o = outs.entry(w).or_default();
        let last = o.acked.iter().max().copied().unwrap_or(0);
        let first = o.pending.unwrap_or(last + 1);
        assert_eq!(first, last + 1, "writer {w}");
        for seq in first..first + 2 {
            let b = body(w, seq);
            wait_until("the group to serve again", || {
                submit(addr, &b, seq) == Some(true)
            });
            o.acked.push(seq);
        }
    }
    // every node applies every acknowledged transfer, once, and they agree
    for w in 0..8u32 {
        let want = outs[&w].acked.len() as u64;
        assert_eq!(
            outs[&w].acked.iter().max().copied(),
            Some(want),
            "writer {w}: 1..=n"
        );
        let mut seen: Vec<Option<(u64, i64)>>;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            seen = http_of.iter().map(|a| account(a, demo(w))).collect();
            if seen
                .iter()
                .all(|s| *s == Some((want, INITIAL - want as i64)))
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "account {w}: want {want} applied at every node, have {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // one node down (f = 1): the others still serve
    nodes[n - 1].kill();
    let b = body(0, outs[&0].acked.len() as u64 + 1);
    let seq = outs[&0].acked.len() as u64 + 1;
    wait_until("the group to serve with a node down", || {
        submit(&http_of[1], &b, seq) == Some(true)
    });
    let (status, v) = http(&http_of[0], "GET", &format!("/balance/{}", demo(0)), None);
    assert_eq!(status, 200, "{v}");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}
