//! The Steward scenario's sweeps: every adversary at f per site leaves
//! zero safety violations and zero liveness failures over many seeds, and
//! each shows teeth (faults recorded, view changes, or a measured cost);
//! f+1 Byzantine servers in one site make the S1 checker report; the
//! flat baseline runs on the same WAN with more WAN messages per update.

use byzscale_scenario_steward::{Adversary, Config, CpuChoice, Protocol, Report, Topology};
use byzscale_sim::scenario::run_many;

/// Seeds per adversary in the sweep (`STEWARD_SEEDS` overrides).
fn seeds() -> u64 {
    std::env::var("STEWARD_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// 3 sites of 4 (f = 1), 3 clients of 2 updates, symmetric 50 ms at
/// 10 Mbit/s, the paper's CPU costs.
fn small(adversary: Adversary, seeds: u64) -> Config {
    let mut c = Config::new(3, 1);
    c.clients = 3;
    c.updates = 2;
    c.read_every = 1;
    c.adversary = adversary;
    c.seeds = seeds;
    c
}

fn run(c: &Config) -> Report {
    run_many(c, |_, _| {}).expect("the scenario runs")
}

fn clean(r: &Report) {
    let s = &r.summary;
    assert_eq!(
        s.safety_violations, 0,
        "{}: {:?}",
        r.byzantine, s.failing_seeds
    );
    assert_eq!(
        s.liveness_failures, 0,
        "{}: {:?}",
        r.byzantine, s.failing_seeds
    );
    let total = s.runs * r.clients as u64 * r.updates_per_client;
    assert_eq!(r.completed_updates, total, "{}", r.byzantine);
}

#[test]
fn every_adversary_at_f_per_site_leaves_no_violation_and_shows_its_teeth() {
    let n = seeds();
    let none = run(&small(Adversary::None, n));
    clean(&none);
    assert_eq!(none.faults_recorded, 0, "honest runs record no fault");
    assert_eq!(none.global_view_changes, 0);
    assert!(none.local_reads > 0);
    for adv in Adversary::ALL {
        if matches!(adv, Adversary::None | Adversary::ForgeProposals) {
            continue;
        }
        let r = run(&small(adv, n));
        clean(&r);
        match adv {
            // the representative's misbehaviour costs a local view change
            Adversary::WithholdRep | Adversary::EquivocateRep | Adversary::GarbageRep => {
                assert!(
                    r.local_view_changes > 0,
                    "{}: no local view change",
                    r.byzantine
                )
            }
            // a withholding representative in every site: each site
            // replaces its own (the leading site's, then the accepting
            // sites'), all before the global timer fires
            Adversary::WithholdRepAll => {
                let per_run = r.local_view_changes / r.summary.runs;
                assert!(
                    per_run >= 3,
                    "{}: {per_run} local view changes",
                    r.byzantine
                );
                assert_eq!(r.global_view_changes, 0, "{}", r.byzantine)
            }
            // invalid shares and claims are recorded as faults
            Adversary::BadShares | Adversary::BadClaims => {
                assert!(r.faults_recorded > 0, "{}: nothing recorded", r.byzantine)
            }
            // a cut-off leading site costs a global view change
            Adversary::PartitionLeader => {
                assert!(r.global_view_changes > 0, "{}", r.byzantine)
            }
            // a cut-off site (not leading) costs latency: its clients wait
            // for the heal
            Adversary::CutSite => assert!(
                r.latency_p95_ms > none.latency_p95_ms,
                "cut-site p95 {} vs {}",
                r.latency_p95_ms,
                none.latency_p95_ms
            ),
            _ => unreachable!(),
        }
    }
}

#[test]
fn f_plus_one_byzantine_servers_holding_the_site_key_break_s1_and_the_checker_reports_it() {
    let mut c = small(Adversary::ForgeProposals, 1);
    c.byzantine_per_site = 2;
    c.updates = 1;
    let r = run(&c);
    assert!(r.summary.safety_violations > 0, "{:?}", r.summary);
    let why = &r.summary.failing_seeds[0].reason;
    assert!(why.starts_with("S1: seq 1:"), "{why}");
    // with f of them the forged Proposals do not verify: nothing breaks
    let mut c = small(Adversary::ForgeProposals, 2);
    c.updates = 1;
    let r = run(&c);
    clean(&r);
    assert!(r.faults_recorded > 0, "the garbage is recorded");
}

#[test]
fn flat_bft_runs_on_the_same_wan_with_more_wan_messages_per_update() {
    let mut c = Config::new(5, 1);
    c.clients = 5;
    c.updates = 2;
    c.cpu = CpuChoice::Free;
    c.topology = Topology::Symmetric50ms;
    let steward = run(&c);
    clean(&steward);
    c.protocol = Protocol::Flat;
    let flat = run(&c);
    clean(&flat);
    assert_eq!(flat.f_flat, Some(6));
    // O(S²) against O(N²): 5 sites against 20 servers
    assert!(
        flat.wan_messages_per_update > 3.0 * steward.wan_messages_per_update,
        "flat {} vs steward {}",
        flat.wan_messages_per_update,
        steward.wan_messages_per_update
    );
}

/// A representative withholding in every site (the bug this scenario
/// found: the accepting sites executed with their own unsigned Accept and
/// stopped awaiting it, so nobody suspected their representatives and the
/// leading site never executed; and the global timer was shorter than the
/// leading site's and then the accepting sites' representative changes).
/// Every seed completes without a global view change: each site replaced
/// its own representative (local view changes at every site).
#[test]
fn withholding_representatives_in_every_site_do_not_stop_progress() {
    let r = run(&small(Adversary::WithholdRepAll, 4));
    clean(&r);
    assert_eq!(r.global_view_changes, 0);
    let per_run = r.local_view_changes / r.summary.runs;
    assert!(per_run >= 3, "{} local view changes", r.local_view_changes);
}
