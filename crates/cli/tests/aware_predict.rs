//! `byzscale aware predict` on the authors' 21-region matrix prints their
//! published latencies (aware-model.md §7) and refuses bad input clearly.

use std::process::Command;

const MATRIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocols/aware/data/cloudping-21.csv"
);

fn predict(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_byzscale"))
        .args(["aware", "predict"])
        .args(args)
        .output()
        .expect("byzscale runs")
}

#[test]
fn predict_prints_the_published_table() {
    let out = predict(&["--matrix", MATRIX, "--all-deltas", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(u64, u64, f64)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap();
            (n("delta"), n("f"), r["latency_ms"].as_f64().unwrap())
        })
        .collect();
    let want = [
        461.80, 476.41, 468.04, 340.39, 340.39, 340.39, 240.68, 240.68, 240.68, 207.82, 207.82,
        223.38, 71.14, 71.14, 71.14, 36.98, 36.98, 36.98,
    ];
    assert_eq!(got.len(), want.len());
    for (d, (delta, f, ms)) in got.into_iter().enumerate() {
        assert_eq!((delta, f), (d as u64, (20 - d as u64) / 3));
        assert_eq!(ms, want[d], "Δ = {d}");
    }
}

#[test]
fn predict_refuses_bad_input_with_a_clear_error() {
    let out = predict(&["--matrix", MATRIX, "--delta", "18"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leaves f = 0"), "{err}");
    let out = predict(&["--matrix", "/nonexistent/matrix.csv", "--delta", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/matrix.csv"));
    let out = predict(&["--matrix", MATRIX]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--delta D or --all-deltas"));
}

fn attacks(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_byzscale"))
        .args(["aware", "attacks", "--matrix", MATRIX, "--json"])
        .args(args)
        .output()
        .expect("byzscale runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(v: &'a serde_json::Value, lie: &str) -> Option<&'a serde_json::Value> {
    v["lies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["lie"] == lie)
}

/// Issue 14 item 5 on the model: after max-sanitization a lone liar's claim
/// of speed changes nothing (its correct peers' reports of every one of its
/// links win), a withholding replica is never chosen, and colluders (f = 2)
/// pull leadership their way: the collusion caveat, measured.
#[test]
fn attacks_show_what_sanitization_undoes_and_what_it_cannot() {
    // the five AWARE regions, n = 5, f = 1, Δ = 1: every single liar
    let v = attacks(&["--regions", "20,12,7,16,17", "--delta", "1"]);
    assert_eq!((v["n"].as_u64(), v["f"].as_u64()), (Some(5), Some(1)));
    assert_eq!(v["byzantine_sets"], 5);
    let fast = row(&v, "claim-fast").unwrap();
    assert_eq!(fast["cases"], 5);
    assert_eq!(fast["moved"], 0, "{fast}");
    assert_eq!(fast["voting_extra_max_ms"], 0.0);
    let withhold = row(&v, "withhold").unwrap();
    assert_eq!(withhold["byzantine_leader"], 0, "{withhold}");
    assert_eq!(withhold["byzantine_vmax"], 0, "{withhold}");
    assert!(row(&v, "collude").is_none(), "collusion needs f >= 2");
    // seven regions, f = 2: every pair of colluders
    let v = attacks(&["--regions", "0,1,2,3,4,5,6"]);
    assert_eq!(v["byzantine_sets"], 21);
    let collude = row(&v, "collude").unwrap();
    let (lied, honest) = (
        collude["byzantine_leader"].as_u64().unwrap(),
        collude["byzantine_leader_honest"].as_u64().unwrap(),
    );
    assert!(
        lied > honest,
        "colluders led {lied} times, {honest} without lying"
    );
    assert!(collude["voting_extra_max_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(collude["byzantine_vmax"], serde_json::Value::Null, "Δ = 0");
}

#[test]
fn attacks_refuse_bad_input() {
    let out = Command::new(env!("CARGO_BIN_EXE_byzscale"))
        .args([
            "aware",
            "attacks",
            "--matrix",
            MATRIX,
            "--regions",
            "0,1,2,30",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--regions: 30 is not a row"), "{err}");
}
