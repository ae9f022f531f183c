//! The model commands that compute rather than run:
//! - `byzscale atum params` gives the thesis' guideline point for 800 nodes
//!   in about 120 vgroups with hc = 5 (rwl 10, within one hop) and the
//!   robustness figures of the binomial model;
//! - `byzscale dqbft formulas` evaluates the paper's Figure 2 as its Figure 3;
//! - both refuse bad input clearly.

use std::process::Command;

fn byzscale(cmd: &[&str], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_byzscale"))
        .args(cmd)
        .args(args)
        .output()
        .expect("byzscale runs")
}

fn params(args: &[&str]) -> std::process::Output {
    byzscale(&["atum", "params"], args)
}

fn formulas(args: &[&str]) -> std::process::Output {
    byzscale(&["dqbft", "formulas"], args)
}

#[test]
fn params_gives_the_guideline_point_and_robustness() {
    let out = params(&["--nodes", "800", "--hc", "5", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["vgroups"], 115);
    let rwl = v["rwl"].as_u64().unwrap();
    assert!(rwl.abs_diff(10) <= 1, "rwl {rwl}");
    // the tests run up to the passing one, which is the only passing one
    let tests = v["tests"].as_array().unwrap();
    assert_eq!(tests.len() as u64, rwl);
    let pass = |t: &serde_json::Value| t["statistic"].as_f64() <= t["critical"].as_f64();
    assert!(pass(tests.last().unwrap()));
    assert!(tests[..tests.len() - 1].iter().all(|t| !pass(t)));
    // 7 members at 5%: f = 3 (sync) fails less often than f = 2 (async)
    let r = v["robustness"].as_array().unwrap();
    let fail = |i: usize| r[i]["vgroup_failure"].as_f64().unwrap();
    assert_eq!((r[0]["f"].as_u64(), r[1]["f"].as_u64()), (Some(3), Some(2)));
    assert!(fail(0) < fail(1) && fail(0) > 0.0);
    let all = r[0]["all_robust"].as_f64().unwrap();
    assert!((all - (1.0 - fail(0)).powi(115)).abs() < 1e-9);
}

#[test]
fn params_refuses_bad_input() {
    for (args, says) in [
        (vec!["--nodes", "3", "--hc", "2"], "--group-size"),
        (vec!["--nodes", "100", "--hc", "0"], "Hamiltonian cycle"),
        (
            vec!["--nodes", "100", "--hc", "2", "--faulty", "2"],
            "faulty fraction",
        ),
    ] {
        let out = params(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn formulas_give_figure_3() {
    let out = formulas(&["--payload", "102400", "--replicas", "19,301", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let col = |r: usize, p: &str| {
        rows[r]["protocols"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["protocol"] == p)
            .unwrap()
            .clone()
    };
    // the digest's Fig. 3 values at 100 KiB: Destiny 446 and 404, PBFT 67 and 4
    let rate = |r, p| col(r, p)["batches_per_s"].as_f64().unwrap().round();
    assert_eq!((rate(0, "destiny"), rate(1, "destiny")), (446.0, 404.0));
    assert_eq!((rate(0, "pbft"), rate(1, "pbft")), (67.0, 4.0));
    assert_eq!(col(1, "destiny")["messages"], 7 * 301);
    assert_eq!(col(1, "dqpbft")["messages"], 2 * 301 + 4 * 301 * 301);
}

#[test]
fn formulas_refuse_bad_input() {
    for (args, says) in [
        (vec!["--replicas", "2"], "at least 3"),
        (vec!["--payload", "0"], "--payload"),
        (vec!["--bandwidth-gbps=-1"], "--bandwidth-gbps"),
    ] {
        let out = formulas(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

/// `byzscale … | head` closes standard output before the command prints:
/// it exits like a Unix filter killed by SIGPIPE (status 141), without a
/// panic report on standard error.
#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_byzscale"))
        .args(["dqbft", "formulas", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("byzscale runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}
