//! The signed durable bank end to end: `byzscale bench-at2 --bank signed`
//! on four local `byzscale node` processes (SMR replicas of
//! `byzscale_apps::signed_bank`, persisting to redb). Before its load the
//! run sends, through the group, an owner-signed transfer, the same signed
//! bytes again (a replay) and a transfer signed by another key, and fails
//! unless the replicas reply `Transferred`, `BadSeq` and `BadSignature`;
//! then every transfer of the load must run and the supply be conserved.
//! No timing assertions.

use serde_json::Value;

mod common;

#[test]
fn signed_bank_refuses_forged_and_replayed_transfers_and_conserves_supply() {
    let out = std::env::temp_dir().join(format!("byzscale-signed-bank-{}", std::process::id()));
    let v: Value = common::run_json([
        "bench-at2",
        "--nodes",
        "4",
        "--clients",
        "4",
        "--duration",
        "1",
        "--bank",
        "signed",
        "--json",
        "--name",
        "t",
        "--out",
        out.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&out);
    let runs = v["runs"].as_array().expect("runs");
    let bank: Vec<&Value> = runs
        .iter()
        .filter(|r| r["protocol"] == "smr-signed-bank")
        .collect();
    assert_eq!(bank.len(), 1, "{v}");
    let b = bank[0];
    assert_eq!(b["supply_conserved"], true, "{b}");
    assert_eq!(b["errors"], 0, "{b}");
    assert!(b["committed"].as_u64().unwrap() > 0, "{b}");
    // 1,024 demo accounts of 10^9, as AT2's genesis
    assert_eq!(b["supply"], 1_024_000_000_000u64, "{b}");
    assert!(v["best_signed_ratio"].is_number(), "{v}");
    assert!(
        v.get("ratios").is_none() && v.get("best_ratio").is_none(),
        "{v}"
    );
    assert!(
        v["command"].as_str().unwrap().ends_with("--bank signed"),
        "{v}"
    );
}
