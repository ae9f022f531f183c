//! Byzantine clients in the SMR simulation (issue 10): partial
//! authenticators, huge operations, client-id churn and floods of requests
//! ahead of their turn, next to honest clients, which must all complete with
//! no violation, while every correct replica's client table and pending
//! table stay under their byte bounds.

use byzscale_scenario_smr::clients::CHURN_IDS;
use byzscale_scenario_smr::{run_many, Adversary, Config, Report};

fn cfg(byzantine_clients: usize, adversary: Adversary, seeds: u64) -> Config {
    let mut c = Config::new(4, 1);
    c.adversary = adversary;
    c.byzantine_count = usize::from(adversary != Adversary::None);
    c.byzantine_clients = byzantine_clients;
    c.requests = 60;
    c.clients = 3;
    c.seeds = seeds;
    c
}

fn assert_bounded(r: &Report, what: &str) {
    assert_eq!(
        r.summary.safety_violations + r.summary.liveness_failures,
        0,
        "{what}: {:#?}",
        r.summary.failing_seeds
    );
    assert!(
        r.completed_requests >= 60 * r.summary.runs,
        "{what}: only {} completed",
        r.completed_requests
    );
    assert!(
        r.client_table_peak_bytes <= r.client_table_bound as u64,
        "{what}: client table {} > {}",
        r.client_table_peak_bytes,
        r.client_table_bound
    );
    // the pending table may pass its bound by the one request that made it
    // evict (at most one operation of max_op_bytes and its authenticator)
    let slack = (1 << 20) + 1024;
    assert!(
        r.pending_peak_bytes <= (r.pending_bound + slack) as u64,
        "{what}: pending {} > {}",
        r.pending_peak_bytes,
        r.pending_bound
    );
}

/// Every behaviour at once (partial MAC, huge, churn, flood): honest clients
/// finish, the tables stay bounded, and the churned ids expire at
/// checkpoints (on today's main nothing ever expired).
#[test]
fn byzantine_clients_leave_honest_clients_finishing_with_bounded_tables() {
    let c = cfg(4, Adversary::None, 6);
    let r = run_many(&c, |_, _| {}).expect("runs");
    eprintln!("{}", byzscale_sim::scenario::Report::table(&r));
    assert_bounded(&r, "4 Byzantine clients");
    assert!(
        r.clients_expired >= CHURN_IDS as u64 / 2,
        "only {} client entries expired",
        r.clients_expired
    );
}

/// The behaviours added one at a time (the first n of partial MAC, huge,
/// churn, flood), next to a Byzantine replica that corrupts fields.
#[test]
fn each_byzantine_client_behaviour_with_a_mutating_replica() {
    for n in 1..=4 {
        let mut c = cfg(n, Adversary::Mutate, 3);
        c.seed_start = 100 * n as u64;
        let r = run_many(&c, |_, _| {}).expect("runs");
        eprintln!("{}", byzscale_sim::scenario::Report::table(&r));
        assert_bounded(&r, &format!("{n} Byzantine clients with a mutator"));
    }
}
