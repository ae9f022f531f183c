//! End-to-end tests of ByzCast as real processes on loopback: a 2-target +
//! 1-auxiliary tree (12 `byzscale node` processes) driven through the Redis
//! gateway with the `redis` crate. Waits are bounded polls, never timing
//! assertions.

use byzscale_byzcast::kv::shard_of;
use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

mod common;
use common::{metric_sum, run_err, strings, Kill};

fn conn(addr: &str) -> redis::Connection {
    let c = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let con = c.get_connection().unwrap();
    con.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    con
}

/// The first key `prefix<i>` that lives in target group `g` of 2.
fn key_on(prefix: &str, g: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shard_of(k.as_bytes(), 2).0 == g)
        .unwrap()
}

#[test]
fn sharded_kv_over_a_byzcast_tree_is_atomic_across_shards() {
    let v = common::run_json([
        "cluster",
        "--protocol",
        "byzcast",
        "--groups",
        "2",
        "--duration",
        "0",
        "--keep",
        "--json",
    ]);
    let _kill = Kill::cluster(&v);
    assert_eq!(v["tree"], "h1(g1 g2)", "{v}");
    let gateways = strings(&v, "redis_all");
    assert_eq!(gateways.len(), 12, "{v}");
    assert!(v["redis"].as_str().unwrap().starts_with("127.0.0.1:"));

    // single-group commands on both shards, through gateways in every group
    let (a0, a1) = (key_on("a", 0), key_on("a", 1));
    let mut c = conn(&gateways[0]);
    let _: () = redis::cmd("SET")
        .arg(&a0)
        .arg("zero")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET").arg(&a1).arg("one").query(&mut c).unwrap();
    for gw in [&gateways[5], &gateways[10]] {
        let mut c = conn(gw);
        let g0: String = redis::cmd("GET").arg(&a0).query(&mut c).unwrap();
        let g1: String = redis::cmd("GET").arg(&a1).query(&mut c).unwrap();
        assert_eq!((g0.as_str(), g1.as_str()), ("zero", "one"));
    }
    let n: i64 = redis::cmd("INCR")
        .arg(key_on("n", 1))
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let e: Result<i64, _> = redis::cmd("INCR").arg(&a0).query(&mut c);
    assert!(e.is_err(), "INCR of a non-integer must fail");
    let ex: i64 = redis::cmd("EXISTS")
        .arg(&a0)
        .arg(&a1)
        .arg("missing")
        .query(&mut c)
        .unwrap();
    assert_eq!(ex, 2);
    // SCAN walks both shards, COUNT 1 at a time, and finds what KEYS finds
    let mut scanned: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1)
            .query(&mut c)
            .unwrap();
        scanned.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    scanned.sort();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    keys.sort();
    assert_eq!(scanned, keys);
    assert_eq!(keys.len(), 3, "{keys:?}");
    // a value over the replicas' 1 MiB operation limit is refused at once,
    // naming the limit, and the connection keeps serving
    let big = "x".repeat(2 << 20);
    let e: Result<(), _> = redis::cmd("SET").arg(&a0).arg(&big).query(&mut c);
    let e = e.expect_err("an oversized SET must fail").to_string();
    assert!(e.contains("too large") && e.contains("1048576"), "{e}");
    let g0: String = redis::cmd("GET").arg(&a0).query(&mut c).unwrap();
    assert_eq!(g0, "zero");
    // the CLI routes the same way, from the deployment file or a node file
    let cli = common::client;
    let dep = v["deployment"].as_str().unwrap();
    assert_eq!(cli(dep, &["mget", &a0, &a1]), r#"["zero", "one"]"#);
    let node_file = dep.replace("deployment.toml", "node-6.toml");
    assert_eq!(cli(&node_file, &["get", &a1]), r#""one""#);

    // cross-shard MSETs from several connections at once, with cross-shard
    // MGETs running alongside: every MGET sees both keys from the same MSET
    let (k1, k2) = (key_on("k", 0), key_on("k", 1));
    let _: () = redis::cmd("MSET")
        .arg(&k1)
        .arg("init")
        .arg(&k2)
        .arg("init")
        .query(&mut c)
        .unwrap();
    let writers: Vec<_> = (0..6)
        .map(|t| {
            let (gw, k1, k2) = (gateways[(t * 2) % 12].clone(), k1.clone(), k2.clone());
            std::thread::spawn(move || {
                let mut c = conn(&gw);
                for i in 0..25 {
                    let val = format!("w{t}-{i}");
                    let _: () = redis::cmd("MSET")
                        .arg(&k1)
                        .arg(&val)
                        .arg(&k2)
                        .arg(&val)
                        .query(&mut c)
                        .unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let (gw, k1, k2) = (gateways[t * 4 + 1].clone(), k1.clone(), k2.clone());
            std::thread::spawn(move || {
                let mut c = conn(&gw);
                for _ in 0..25 {
                    let vs: Vec<String> =
                        redis::cmd("MGET").arg(&k1).arg(&k2).query(&mut c).unwrap();
                    assert_eq!(vs[0], vs[1], "an MGET saw two different MSETs");
                }
            })
        })
        .collect();
    for w in writers.into_iter().chain(readers) {
        w.join().unwrap();
    }
    // afterwards every gateway reads the same pair, from one MSET
    let mut seen = Vec::new();
    for gw in &gateways {
        let mut c = conn(gw);
        let vs: Vec<String> = redis::cmd("MGET").arg(&k1).arg(&k2).query(&mut c).unwrap();
        assert_eq!(
            vs[0], vs[1],
            "{gw}: the shards applied the MSETs in different orders"
        );
        assert!(vs[0].starts_with('w'), "{gw}: {vs:?}");
        seen.push(vs[0].clone());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");

    // the global messages went through the tree: the targets a-delivered them
    let metrics = strings(&v, "metrics");
    let global = metric_sum(&metrics[0], "byzscale_bc_delivered_total{kind=\"global\"}");
    assert!(global >= 150.0, "g1 a-delivered {global} global messages");
    let local = metric_sum(&metrics[4], "byzscale_bc_delivered_total{kind=\"local\"}");
    assert!(local >= 1.0, "g2 a-delivered {local} local messages");

    // garbage on a replica port closes that connection only
    let replicas = v["replicas"].as_array().unwrap();
    let mut s = TcpStream::connect(replicas[8].as_str().unwrap()).unwrap();
    let _ = s.write_all(&[b'B', b'Z', 2, 1, 0xff, 0xff, 0xff, 0x7f]);
    let _ = s.write_all(&[0u8; 64]);
    drop(s);
    let mut c = conn(&gateways[11]);
    let _: () = redis::cmd("MSET")
        .arg(&k1)
        .arg("last")
        .arg(&k2)
        .arg("last")
        .query(&mut c)
        .unwrap();
    let vs: Vec<String> = redis::cmd("MGET").arg(&k1).arg(&k2).query(&mut c).unwrap();
    assert_eq!(vs, ["last", "last"]);
    let slots = metric_sum(&metrics[8], "byzscale_decided_slots_total");
    assert!(slots >= 1.0, "n8 stopped serving after garbage");
    transactions(&gateways, &a0, &a1);
}

/// Issue 12 item 4 on the real sharded store: a cross-shard `MULTI`/`EXEC` as
/// one multicast (replies in place), `WATCH` on one shard aborted by another
/// connection's write, and `WATCH` with keys on two shards refused.
fn transactions(gateways: &[String], a0: &str, a1: &str) {
    let mut c = conn(&gateways[1]);
    let (x, y, got): (String, i64, Vec<String>) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(a0)
        .arg("tx")
        .ignore()
        .cmd("GETSET")
        .arg(a1)
        .arg("tx")
        .cmd("INCR")
        .arg("counter")
        .cmd("MGET")
        .arg(a0)
        .arg(a1)
        .query(&mut c)
        .unwrap();
    assert_eq!(
        (x.as_str(), y, got),
        ("one", 1, vec!["tx".to_string(), "tx".to_string()])
    );
    let b0 = key_on("b", 0);
    let cmd = |c: &mut redis::Connection, args: &[&str]| -> redis::Value {
        let mut q = redis::cmd(args[0]);
        for a in &args[1..] {
            q.arg(*a);
        }
        q.query(c)
            .unwrap_or_else(|e| redis::Value::SimpleString(format!("error: {e}")))
    };
    let ok = redis::Value::Okay;
    assert_eq!(cmd(&mut c, &["WATCH", a0, &b0]), ok);
    let mut other = conn(&gateways[7]);
    assert_eq!(cmd(&mut other, &["SET", a0, "other"]), ok);
    assert_eq!(cmd(&mut c, &["MULTI"]), ok);
    assert_eq!(
        cmd(&mut c, &["SET", &b0, "mine"]),
        redis::Value::SimpleString("QUEUED".into())
    );
    assert_eq!(
        cmd(&mut c, &["EXEC"]),
        redis::Value::Nil,
        "a watched key changed"
    );
    assert_eq!(cmd(&mut c, &["EXISTS", &b0]), redis::Value::Int(0));
    // unchanged: it runs
    assert_eq!(cmd(&mut c, &["WATCH", a0]), ok);
    assert_eq!(cmd(&mut c, &["MULTI"]), ok);
    cmd(&mut c, &["SET", &b0, "mine"]);
    assert_eq!(
        cmd(&mut c, &["EXEC"]),
        redis::Value::Array(vec![ok.clone()])
    );
    // WATCH with keys on two shards: refused, nothing runs
    assert_eq!(cmd(&mut c, &["WATCH", a0]), ok);
    assert_eq!(cmd(&mut c, &["MULTI"]), ok);
    cmd(&mut c, &["SET", a1, "refused"]);
    let refused = cmd(&mut c, &["EXEC"]);
    assert!(
        matches!(&refused, redis::Value::SimpleString(e) if e.contains("span shards")),
        "{refused:?}"
    );
    assert_eq!(
        cmd(&mut c, &["GET", a1]),
        redis::Value::BulkString(b"tx".to_vec())
    );
}

#[test]
fn bad_byzcast_cli_input_gets_a_clear_error() {
    for (args, says) in [
        (vec!["--groups", "0"], "--groups"),
        (vec!["--global-ratio", "2"], "--global-ratio"),
        (
            vec!["--groups", "1", "--global-ratio", "0.5"],
            "two target groups",
        ),
        (vec!["--read-ratio", "0.5"], "--read-ratio"),
        (vec!["--groups", "30"], "at most 100 processes"),
    ] {
        let err = run_err(["cluster", "--protocol", "byzcast"].iter().chain(&args));
        assert!(
            err.contains("error") && err.contains(says),
            "{args:?}: {err}"
        );
    }
    let err = run_err(["bench-byzcast", "--clients", "0"]);
    assert!(err.contains("--clients"));
}

#[test]
fn byzcast_node_files_with_a_bad_tree_are_refused_clearly() {
    let dir = common::fresh_dir("byzscale-bc-files");
    // generate the files (the nodes are stopped when the command ends)
    let args = [
        "cluster",
        "--protocol",
        "byzcast",
        "--duration",
        "0",
        "--dir",
    ];
    common::run_ok(args.iter().map(OsStr::new).chain([dir.as_os_str()]));
    let node = |what: &str| {
        let node_file = dir.join("node-0.toml");
        eprintln!("{what}");
        run_err([
            OsStr::new("node"),
            OsStr::new("--config"),
            node_file.as_os_str(),
        ])
    };
    let tree = dir.join("tree.toml");
    // a cycle is not a tree
    std::fs::write(
        &tree,
        "targets = [\"g1\", \"g2\"]\nauxiliary = [\"h1\"]\n[tree]\nh1 = [\"g1\"]\ng1 = [\"g2\"]\ng2 = [\"h1\"]\n",
    )
    .unwrap();
    let err = node("cycle");
    assert!(err.contains("tree file"), "{err}");
    // a tree with fewer groups than the deployment
    std::fs::write(&tree, "targets = [\"g1\"]\n").unwrap();
    let err = node("short tree");
    assert!(err.contains("the deployment has 3"), "{err}");
    // no [byzcast] section
    let nf = std::fs::read_to_string(dir.join("node-0.toml")).unwrap();
    let cut = nf.find("[byzcast]").unwrap();
    std::fs::write(dir.join("node-0.toml"), &nf[..cut]).unwrap();
    let err = node("no section");
    assert!(err.contains("[byzcast]"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A parent replica's client identity (`ClientId::for_replica(j)`) is pinned to
/// j's deployment key at the child replicas: an outside client claiming it with
/// another key is refused at the handshake (`impostor`), and so it is at a
/// replica that does not pin it (the root: a replica's client id is never
/// admitted with a key learnt from the handshake, `unknown_peer`).
#[test]
fn an_outside_client_cannot_take_a_parent_replicas_client_identity() {
    use byzscale_apps::kv::KvOp;
    use byzscale_byzcast::{client, Client, Mode, Topology, Tree};
    use byzscale_core::config::Deployment;
    use byzscale_core::crypto::Identity;
    use byzscale_core::{ClientId, GroupId, NodeId};
    use byzscale_smr::{GroupInfo, Params};
    use std::sync::Arc;

    let v = common::run_json([
        "cluster",
        "--protocol",
        "byzcast",
        "--duration",
        "0",
        "--keep",
        "--json",
    ]);
    let _kill = Kill::cluster(&v);
    let metrics = strings(&v, "metrics");
    let text = std::fs::read_to_string(v["deployment"].as_str().unwrap()).unwrap();
    let dep = Deployment::from_toml(&text).unwrap();
    let groups: Vec<GroupInfo> = dep
        .groups
        .iter()
        .map(|g| GroupInfo::new(g.id, g.members(), g.quorum_system().unwrap()))
        .collect();
    let topo = Arc::new(Topology::new(Tree::two_level(2), groups, Mode::Byzcast).unwrap());
    let stolen = key_on("stolen", 0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // n8 is a replica of the root h1, the parent of g1 and g2
        let me = ClientId::for_replica(NodeId(8));
        let cfg = byzscale_net::NodeConfig::client(&dep, me, Identity::generate(), 2).unwrap();
        let client = Client::new(me, topo, Params::default());
        let (r, _outputs) = byzscale_net::Runtime::start(client, cfg).await.unwrap();
        let h = r.handle();
        let set = KvOp::Set(stolen.clone().into_bytes(), b"x".to_vec()).encode();
        // to g1 alone (refused at the handshake) and through h1 (dropped there)
        h.submit(client::Input::Multicast {
            dst: vec![GroupId(0)],
            payload: set.clone(),
        })
        .await
        .unwrap();
        h.submit(client::Input::Multicast {
            dst: vec![GroupId(0), GroupId(1)],
            payload: set,
        })
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let seen = |i: usize, m: &str| metric_sum(&metrics[i], m) >= 1.0;
        while !(seen(0, "byzscale_net_faults_by_kind_total{kind=\"impostor\"}")
            && seen(
                8,
                "byzscale_net_faults_by_kind_total{kind=\"unknown_peer\"}",
            ))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no impostor fault at n0 or no unknown_peer fault at n8"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = r.stop().await;
    });
    // nothing was written, and the tree still serves
    let mut c = conn(v["redis"].as_str().unwrap());
    let got: Option<String> = redis::cmd("GET").arg(&stolen).query(&mut c).unwrap();
    assert_eq!(got, None);
    let _: () = redis::cmd("MSET")
        .arg(key_on("after", 0))
        .arg("1")
        .arg(key_on("after", 1))
        .arg("1")
        .query(&mut c)
        .unwrap();
}
