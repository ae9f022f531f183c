//! Issue 12 item 5 through real clusters' Redis gateways: a connection's
//! commands take effect in the order it sent them, pipelined or not. One
//! connection pipelines, for many i, several `SET data:i ...` ending with
//! `SET data:i v<i>`, then `SET flag:i 1` and `GET data:i`; another connection
//! (on another node's gateway) polls with `MGET flag:i data:i` (one atomic
//! command) and must never see the flag without the data written before it.
//! Waits are bounded; nothing asserts on timing.

use std::time::Duration;

mod common;
use common::strings;

/// Rounds, and `SET data:i` commands per round (a chain on one key: before,
/// each waited for the previous one to complete while `SET flag:i 1` went
/// ahead, so the flag took effect rounds of replication before the data).
const ROUNDS: usize = 40;
const CHAIN: usize = 4;

fn conn(addr: &str) -> redis::Connection {
    let c = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let con = c.get_connection().unwrap();
    con.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    con
}

/// Pipeline the writes on `writer` while polling through `poller` for each
/// flag in turn until it has seen them all.
fn flags_follow_their_data(writer: &str, poller: &str) {
    let mut w = conn(writer);
    let mut p = conn(poller);
    let polling = std::thread::spawn(move || {
        let mut i = 0;
        while i < ROUNDS {
            let (flag, data): (Option<String>, Option<String>) = redis::cmd("MGET")
                .arg(format!("flag:{i}"))
                .arg(format!("data:{i}"))
                .query(&mut p)
                .unwrap();
            if flag.is_some() {
                assert_eq!(data, Some(format!("v{i}")), "flag:{i} without its data");
                i += 1;
            }
        }
    });
    let mut pipe = redis::pipe();
    for i in 0..ROUNDS {
        for j in 0..CHAIN {
            let v = if j + 1 == CHAIN {
                format!("v{i}")
            } else {
                format!("old{j}")
            };
            pipe.cmd("SET").arg(format!("data:{i}")).arg(v);
        }
        pipe.cmd("SET").arg(format!("flag:{i}")).arg(1);
        pipe.cmd("GET").arg(format!("data:{i}"));
    }
    let replies: Vec<redis::Value> = pipe.query(&mut w).unwrap();
    for i in 0..ROUNDS {
        let got: String =
            redis::from_redis_value(replies[(CHAIN + 2) * i + CHAIN + 1].clone()).unwrap();
        assert_eq!(got, format!("v{i}"), "the connection's own read");
    }
    polling.join().unwrap();
}

/// A kept cluster (`byzscale cluster <args>`) in a fresh folder: two gateways'
/// addresses, the writer's and the poller's (on another node, in another group
/// for the sharded store), with `poller` their indexes.
fn check_cluster(name: &str, args: &[&str], poller: usize) {
    let dir = common::fresh_dir(name);
    let (v, kill) = common::kept_cluster(args, &dir);
    let gw = strings(&v, "redis_all");
    flags_follow_their_data(&gw[0], &gw[poller]);
    drop(kill);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn single_group_gateway_applies_a_connections_commands_in_order() {
    check_cluster("byzscale-test-connorder-smr", &[], 1);
}

#[test]
fn sharded_gateway_applies_a_connections_commands_in_order_across_shards() {
    let args = ["--protocol", "byzcast", "--groups", "2"];
    check_cluster("byzscale-test-connorder-byzcast", &args, 5);
}
