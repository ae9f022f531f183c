//! Issue 10 item 9: the memory benchmark's attack really happens. A short
//! `byzscale bench-memory` run against a real 4-replica group: the Byzantine
//! peer (replica 3's key) and the Byzantine client got through the handshake
//! and what they sent was received and recorded as faults by every correct
//! replica (visible in its metrics), while the honest clients still
//! completed requests. No timing or RSS threshold here: memory is the
//! benchmark's figure (the limit is set out of reach).

use std::process::Command;

mod common;
use common::BIN;

#[test]
fn a_byzantine_peer_and_client_are_recorded_while_honest_clients_complete() {
    let dir = std::env::temp_dir().join(format!("byzscale-memory-{}", std::process::id()));
    let out = Command::new(BIN)
        .args(["bench-memory", "--duration", "5", "--clients", "4"])
        .args(["--limit-mib", "1000000", "--name", "ci", "--json", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let r = common::json(&out);
    assert_eq!(r["attack"], true);
    // the attackers authenticated and sent
    let peer = &r["byzantine_peer"];
    assert!(peer["connections"].as_u64().unwrap() >= 3, "{peer}");
    for kind in ["propose", "stop-data", "fetch-log", "write", "accept"] {
        assert!(
            peer["by_kind"][kind].as_u64().unwrap_or(0) > 0,
            "{kind}: {peer}"
        );
    }
    let client = &r["byzantine_client"];
    assert!(client["connections"].as_u64().unwrap() >= 3, "{client}");
    assert!(client["by_kind"]["huge-op"].as_u64().unwrap_or(0) > 0);
    // every correct replica received them and recorded faults of both
    let replicas = r["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 3);
    for rep in replicas {
        let faults = &rep["protocol_faults"];
        let n = |k: &str| faults[k].as_f64().unwrap_or(0.0);
        assert!(n("equivocation") > 0.0, "peer's votes not recorded: {rep}");
        assert!(
            n("request-auth") + n("request-too-large") > 0.0,
            "client's requests not recorded: {rep}"
        );
        assert!(!rep["rss_mib"].as_array().unwrap().is_empty());
    }
    // and the honest clients completed requests meanwhile
    assert!(r["committed"].as_u64().unwrap() > 0, "{r}");
    assert!(dir.join("ci.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
