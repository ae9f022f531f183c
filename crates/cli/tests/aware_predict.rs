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
