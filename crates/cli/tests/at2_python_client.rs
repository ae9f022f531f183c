//! The Python example client (`examples/at2_client.py`, issue 17) against a
//! real local AT2 cluster: it creates a key, is paid by a demo account
//! through the Rust CLI, signs and submits its own transfer (citing what it
//! received) over HTTP, and reads balances. The signature it makes with the
//! `cryptography` package must verify at the nodes, which shows the
//! canonical encoding of docs/AT2.md is reproducible outside Rust.
//!
//! Needs `python3` with `cryptography` (`pip install cryptography`); without
//! them the test says so and passes without checking anything.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{http, strings};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/at2_client.py")
}

fn python(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(example())
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_python_client_signs_transfers_the_nodes_accept() {
    python_client("bracha");
}

#[test]
fn the_python_client_signs_transfers_the_nodes_accept_over_contagion() {
    python_client("contagion");
}

/// The test against a cluster over `broadcast`.
fn python_client(broadcast: &str) {
    let have = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!(
            "SKIPPED: python3 with the `cryptography` package is needed \
             (pip install cryptography); run this test again after installing it"
        );
        return;
    }
    let dir = common::fresh_dir(&format!("byzscale-at2-python-{broadcast}"));
    let args = [
        "--protocol",
        "at2",
        "--broadcast",
        broadcast,
        "--nodes",
        "4",
    ];
    let (v, _kill) = common::kept_cluster(&args, &dir);
    let nodes: Vec<String> = strings(&v, "http");
    let deployment = v["deployment"].as_str().unwrap().to_string();

    // a key made in Python, paid by demo account 0 through the Rust CLI
    let key = dir.join("py.key");
    let key = key.to_str().unwrap();
    let me = ok(python(&["new", key]));
    assert_eq!(me.len(), 64, "{me}");
    let demo0 = dir.join("accounts/demo-0.key");
    let out = common::client(
        &deployment,
        &[
            "transfer",
            "--from",
            demo0.to_str().unwrap(),
            "--to",
            &me,
            "123",
        ],
    );
    assert!(out.contains("transferred 123"), "{out}");
    let out = ok(python(&["balance", "--node", &nodes[0], key]));
    assert_eq!(out, format!("{me}: 123"));

    // the Python account spends what it received (its transfer cites it),
    // through another node
    let demo1 = dir.join("accounts/demo-1.key");
    let out = ok(python(&[
        "transfer",
        "--node",
        &nodes[0],
        "--from",
        key,
        "--to",
        demo1.to_str().unwrap(),
        "23",
    ]));
    assert!(
        out.starts_with(&format!("transferred 23 from {me}")),
        "{out}"
    );
    // every node converges to 100
    common::wait_until(
        "every node to apply the Python client's transfer",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(50),
        || {
            nodes.iter().all(|n| {
                let (s, v) = http(
                    n.trim_start_matches("http://"),
                    "GET",
                    &format!("/balance/{me}"),
                    None,
                );
                s == 200 && v["balance"] == 100
            })
        },
    );
    // an overdraft is refused with the node's error and a non-zero exit
    let out = python(&[
        "transfer", "--node", &nodes[2], "--from", key, "--to", &me, "1000",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("409") && err.contains("insufficient funds"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
