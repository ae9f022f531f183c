//! Issue 10 item 11: `byzscale cluster` stopped with SIGTERM or SIGINT stops
//! its node processes too (before, they kept running: the launcher killed
//! them only when the command returned normally). Issue 11 item 5: `cluster`
//! and `bench` remove their temporary directory when they exit, also on a
//! signal (before, every run left 40–57 MB behind). Waits are bounded polls.

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

/// A fresh, empty directory to serve as the command's TMPDIR.
fn fresh_tmpdir(name: &str) -> std::path::PathBuf {
    let d = common::fresh_dir(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What the command left in its TMPDIR.
fn left_in(tmp: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_signalled_cluster_stops_its_node_processes_and_removes_its_files() {
    for signal in ["TERM", "INT"] {
        let tmp = fresh_tmpdir(&format!("byzscale-test-signal-{signal}"));
        let mut cluster = Command::new(BIN)
            .args(["cluster", "--duration", "600", "--clients", "2", "--json"])
            .env("TMPDIR", &tmp)
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
        let files = left_in(&tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(files.is_empty(), "SIG{signal} left {files:?} behind");
    }
}

/// A run that ends normally removes its temporary directory; one given
/// `--dir` keeps its files there.
#[test]
fn cluster_and_bench_leave_no_temporary_directory() {
    let tmp = fresh_tmpdir("byzscale-test-tmpdirs");
    let out = tmp.join("results");
    for args in [
        vec!["cluster", "--duration", "1", "--clients", "2", "--json"],
        vec![
            "bench",
            "--duration",
            "1",
            "--clients",
            "2",
            "--json",
            "--out",
        ],
    ] {
        let mut c = Command::new(BIN);
        c.args(&args).env("TMPDIR", &tmp);
        if args[0] == "bench" {
            c.arg(&out);
        }
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let files: Vec<String> = left_in(&tmp)
            .into_iter()
            .filter(|f| f != "results")
            .collect();
        assert!(files.is_empty(), "{args:?} left {files:?} behind");
    }
    let kept = tmp.join("kept");
    let o = Command::new(BIN)
        .args(["cluster", "--duration", "0", "--json", "--dir"])
        .arg(&kept)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(kept.join("deployment.toml").exists());
    let _ = std::fs::remove_dir_all(&tmp);
}
