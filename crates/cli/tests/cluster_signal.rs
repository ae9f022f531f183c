//! Issue 10 item 11: `byzscale cluster` stopped with SIGTERM or SIGINT stops
//! its node processes too (before, they kept running: the launcher killed
//! them only when the command returned normally). Waits are bounded polls.

use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::BIN;

/// The processes whose parent is `parent` (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...; comm may hold spaces
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn a_signalled_cluster_stops_its_node_processes() {
    for signal in ["TERM", "INT"] {
        let mut cluster = Command::new(BIN)
            .args(["cluster", "--duration", "600", "--clients", "2", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = cluster.id();
        let mut nodes = Vec::new();
        common::wait_until(
            "four node processes",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                nodes = children(pid);
                nodes.len() >= 4
            },
        );
        // signal the cluster process alone (its nodes are not in the signal)
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = cluster.wait().unwrap();
        assert!(!status.success(), "SIG{signal}: stopped, not finished");
        let left: Vec<u32> = nodes.iter().copied().filter(|p| alive(*p)).collect();
        for p in &left {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
        }
        assert!(left.is_empty(), "SIG{signal} left nodes {left:?} running");
    }
}
