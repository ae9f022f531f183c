//! The AT2 scenario's sweeps: K = F colluders never get a double spend
//! applied, K > F is caught and replays, Contagion in a small group is safe
//! and live, and the process limit says why.

use super::*;
use byzscale_sim::scenario::{Finished, Report as _};

/// Every seed of `cfg`, over its broadcast.
fn run_many(cfg: &Config) -> Report {
    match cfg.broadcast {
        BroadcastKind::Bracha => scenario::run_many(&OverBracha::new(cfg.clone()), |_, _| {}),
        BroadcastKind::Contagion => scenario::run_many(&OverContagion::new(cfg.clone()), |_, _| {}),
    }
    .unwrap()
}

/// Seed `seed` of `cfg` alone, over its broadcast.
fn run_one(cfg: &Config, seed: u64) -> Finished<Run> {
    match cfg.broadcast {
        BroadcastKind::Bracha => scenario::run_one(&OverBracha::new(cfg.clone()), seed),
        BroadcastKind::Contagion => scenario::run_one(&OverContagion::new(cfg.clone()), seed),
    }
    .unwrap()
}

#[test]
fn bracha_with_a_third_byzantine_never_applies_a_double_spend() {
    // N = 10, K = F = 3 colluding owners: double spends with an
    // equivocating source, echo/ready equivocation, fake dependencies,
    // overdrafts; real crypto
    let mut cfg = Config::new(10, 3, BroadcastKind::Bracha);
    cfg.transfers = 8;
    cfg.seeds = 200;
    let r = run_many(&cfg);
    assert_eq!(r.summary.runs, 200);
    assert!(
        r.counts.double_spend_attempts >= 200 * 3,
        "{}",
        r.counts.double_spend_attempts
    );
    assert_eq!(r.counts.double_spends_applied, 0);
    assert_eq!(r.counts.fake_dependencies_applied, 0);
    assert_eq!(
        r.summary.safety_violations,
        0,
        "{:?}",
        r.summary.failing_seeds.first()
    );
    assert_eq!(
        r.summary.liveness_failures,
        0,
        "{:?}",
        r.summary.failing_seeds.first()
    );
    assert_eq!(
        r.counts.transfers_completed + r.counts.transfers_failed,
        200 * 8
    );
}

#[test]
fn more_byzantine_than_f_is_caught_by_the_checkers() {
    // N = 7 tolerates F = 2; K = 3 colluders split the correct processes
    let mut cfg = Config::new(7, 3, BroadcastKind::Bracha);
    cfg.transfers = 6;
    cfg.seeds = 8;
    let r = run_many(&cfg);
    assert!(
        r.summary.safety_violations > 0 && r.counts.double_spends_applied > 0,
        "{}",
        r.table()
    );
    let f = &r.summary.failing_seeds[0];
    assert!(
        f.command.contains("--byzantine 3")
            && f.command.contains(&format!("--seed-start {}", f.seed))
    );
    // the replay command reproduces the failure
    let one = run_one(&cfg, f.seed);
    assert!(one.outcome.violations.count() > 0);
}

#[test]
fn a_scenario_runs_only_the_broadcast_its_config_names() {
    let cfg = Config::new(10, 0, BroadcastKind::Contagion);
    let e = OverBracha::new(cfg.clone()).validate().unwrap_err();
    assert!(e.to_string().contains("--broadcast contagion"), "{e}");
    assert!(OverContagion::new(cfg).validate().is_ok());
}

#[test]
fn thousands_of_processes_are_accepted_and_the_limit_says_why() {
    let mut cfg = Config::new(1000, 0, BroadcastKind::Contagion);
    cfg.modeled_crypto = true;
    assert!(cfg.validate().is_ok());
    let big = Config::new(MAX_PROCESSES + 1, 0, BroadcastKind::Bracha);
    let e = big.validate().unwrap_err().to_string();
    assert!(e.contains("N²") && e.contains("at2-scale"), "{e}");
}

#[test]
fn contagion_small_group_is_safe_and_live() {
    let mut cfg = Config::new(20, 2, BroadcastKind::Contagion);
    cfg.transfers = 10;
    cfg.seeds = 4;
    let r = run_many(&cfg);
    assert_eq!(r.summary.safety_violations, 0, "{}", r.table());
    assert_eq!(r.summary.liveness_failures, 0, "{}", r.table());
    assert_eq!(r.counts.double_spends_applied, 0);
}
