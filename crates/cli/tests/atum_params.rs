//! `byzscale atum params` gives the thesis' guideline point for 800 nodes in
//! about 120 vgroups with hc = 5 (rwl 10, within one hop), the robustness
//! figures of the binomial model, and refuses bad input clearly.

use std::process::Command;

fn params(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_byzscale"))
        .args(["atum", "params"])
        .args(args)
        .output()
        .expect("byzscale runs")
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
