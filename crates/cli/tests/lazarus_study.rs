//! `byzscale lazarus study` and `plan` on the synthetic sample: the JSON
//! report, its determinism, and clear refusals of bad input.

use std::process::Command;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../protocols/lazarus/data");
const TMP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/tmp");

fn byzscale(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_byzscale"))
        .arg("lazarus")
        .args(args)
        .output()
        .expect("byzscale runs")
}

#[test]
fn study_writes_a_deterministic_report() {
    std::fs::create_dir_all(TMP).unwrap();
    let out = format!("{TMP}/lazarus-study-{}.json", std::process::id());
    let args = [
        "study", "--runs", "60", "--n", "4", "--f", "1", "--data", DATA, "--json", "--out", &out,
    ];
    let a = byzscale(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v, written, "the printed JSON is the written one");
    assert!(std::path::Path::new(&out.replace(".json", ".svg")).exists());
    let runs = |name: &str| {
        v["report"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["strategy"] == name)
            .unwrap()["compromised_runs"]
            .as_u64()
            .unwrap()
    };
    assert!(runs("homogeneous") > runs("lazarus"));
    let b = byzscale(&args);
    assert_eq!(a.stdout, b.stdout, "same seed, same output");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(out.replace(".json", ".svg"));
}

#[test]
fn bad_input_is_refused_clearly() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "study", "--runs", "5", "--n", "4", "--f", "4", "--data", DATA,
            ],
            "--f 4 must be below --n 4",
        ),
        (
            &["study", "--runs", "5", "--data", "/nonexistent/lazarus"],
            "/nonexistent/lazarus",
        ),
        (
            &[
                "plan",
                "--data",
                DATA,
                "--current",
                "UB16,XX9",
                "--on",
                "2017-01-01",
            ],
            "unknown OS id \"XX9\"",
        ),
        (
            &[
                "plan",
                "--data",
                DATA,
                "--current",
                "UB16",
                "--on",
                "2017-13-01",
            ],
            "not a YYYY-MM-DD date",
        ),
    ];
    for (args, want) in cases {
        let o = byzscale(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn plan_moves_a_homogeneous_set() {
    let o = byzscale(&[
        "plan",
        "--data",
        DATA,
        "--current",
        "UB16,UB16,UB16,UB16",
        "--on",
        "2017-06-01",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["risk_after"].as_f64().unwrap() < v["risk_before"].as_f64().unwrap());
    assert!(v["replace"].as_array().unwrap().len() >= 3);
}
