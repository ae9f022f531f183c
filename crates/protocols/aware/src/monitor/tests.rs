use super::*;
use proptest::prelude::*;

const MS: u64 = 1_000_000;

#[test]
fn a_probe_takes_the_median_of_its_window() {
    let mut p = Probe::new(0, 4, 3);
    // round trips of 20, 40, 100, 30 ms to peer 1: the window keeps the last 3
    for (k, rtt) in [20, 40, 100, 30].into_iter().enumerate() {
        let (c, t) = (1000 + k as u64, k as u64 * 1000 * MS);
        p.challenge(1, c, t).unwrap();
        p.response(1, c, t + rtt * MS).unwrap();
    }
    let v = p.vector();
    // one-way samples 20, 50, 15 → sorted 15, 20, 50 → index 1
    assert_eq!(v, vec![0, 20 * MS, INF, INF]);
}

#[test]
fn only_the_echo_of_a_challenge_sent_to_that_peer_counts() {
    let mut p = Probe::new(0, 4, 8);
    p.challenge(1, 77, 0).unwrap();
    // an early answer must guess the challenge
    assert_eq!(
        p.response(1, 78, 5),
        Err(MonitorError::UnknownChallenge { peer: 1 })
    );
    // a challenge sent to peer 1 does not vouch for peer 2
    assert_eq!(
        p.response(2, 77, 5),
        Err(MonitorError::UnknownChallenge { peer: 2 })
    );
    p.response(1, 77, 10 * MS).unwrap();
    // and it counts once
    assert!(p.response(1, 77, 11 * MS).is_err());
    assert_eq!(p.vector()[1], 5 * MS);
    assert_eq!(p.challenge(9, 1, 0), Err(MonitorError::NoSuchReplica(9)));
}

#[test]
fn outstanding_challenges_are_bounded_by_the_window() {
    let mut p = Probe::new(0, 4, 4);
    for c in 0..1000 {
        p.challenge(3, c, c).unwrap();
    }
    assert_eq!(p.sent[3].len(), 4);
    // the oldest were forgotten; the newest still count
    assert!(p.response(3, 0, 2000).is_err());
    assert!(p.response(3, 999, 2000).is_ok());
}

#[test]
fn the_overhead_bound_sets_the_probe_rate_and_rotates_dummy_proposers() {
    let every = |omega: f64| {
        (0..1000)
            .filter(|i| Overhead::new(omega).unwrap().probes(*i))
            .count()
    };
    assert_eq!(
        (every(0.0), every(1.0), every(0.1), every(0.3)),
        (0, 1000, 100, 250)
    );
    assert!(Overhead::new(1.5).is_err());
    let o = Overhead::new(1.0).unwrap();
    let senders: Vec<usize> = (0..8).filter_map(|i| o.dummy_proposer(i, 5, 2)).collect();
    assert_eq!(senders, vec![0, 1, 3, 4, 0, 1, 3, 4]);
}

fn measure(from: usize, write: Vec<u64>) -> Measure {
    Measure {
        from,
        write,
        propose: None,
    }
}

/// 4 replicas, 10 ms between 0 and 1, 50 ms elsewhere (in ns).
fn honest(i: usize) -> Vec<u64> {
    (0..4)
        .map(|j| match (i, j) {
            _ if i == j => 0,
            (0, 1) | (1, 0) => 10 * MS,
            _ => 50 * MS,
        })
        .collect()
}

#[test]
fn rows_start_and_fall_back_to_infinity() {
    let mut s = Synced::new(4, 100);
    let (_, w) = s.matrices(0).unwrap();
    assert_eq!((w.at(0, 1), w.at(2, 2)), ((INF / NS_PER_UNIT) as i64, 0));
    for i in 0..4 {
        s.apply(10, measure(i, honest(i))).unwrap();
    }
    let (p, w) = s.matrices(110).unwrap();
    assert_eq!((w.at(0, 1), w.at(2, 3), w.at(3, 0)), (1000, 5000, 5000));
    assert_eq!(p, w, "without dummy proposes M_P is M_W");
    // replica 3 stops reporting: past c instances its links are +∞
    for i in 0..3 {
        s.apply(150, measure(i, honest(i))).unwrap();
    }
    let (_, w) = s.matrices(111).unwrap();
    assert_eq!(w.at(3, 0), (INF / NS_PER_UNIT) as i64);
    assert_eq!(w.at(3, 0), (INF / NS_PER_UNIT) as i64);
    assert_eq!(w.at(0, 3), w.at(3, 0), "sanitized");
    assert_eq!(w.at(0, 1), 1000);
}

#[test]
fn malformed_measures_are_refused_and_claims_are_clamped() {
    let mut s = Synced::new(4, 10);
    assert!(matches!(
        s.apply(1, measure(0, vec![0; 3])),
        Err(MonitorError::BadLength {
            from: 0,
            len: 3,
            n: 4
        })
    ));
    assert_eq!(
        s.apply(1, measure(7, vec![0; 4])),
        Err(MonitorError::NoSuchReplica(7))
    );
    s.apply(1, measure(2, vec![u64::MAX, 3, 999, u64::MAX]))
        .unwrap();
    assert_eq!(s.rows[&2].1.write, vec![INF, 3, 0, INF]);
}

/// Lying replicas after sanitization: one claiming to be fast to everyone
/// is as slow as its peers measured it; one blaming a correct replica makes
/// the link slow in both directions, and only that link.
#[test]
fn sanitization_limits_lies() {
    let mut s = Synced::new(4, 100);
    for i in 0..4 {
        s.apply(1, measure(i, honest(i))).unwrap();
    }
    // 3 claims 1 ms to everyone
    s.apply(2, measure(3, vec![MS, MS, MS, 0])).unwrap();
    let (_, w) = s.matrices(2).unwrap();
    assert!((0..3).all(|j| w.at(3, j) == 5000 && w.at(j, 3) == 5000));
    // 2 blames 0 with 900 ms
    let mut blame = honest(2);
    blame[0] = 900 * MS;
    s.apply(3, measure(2, blame)).unwrap();
    let (_, w) = s.matrices(3).unwrap();
    assert_eq!((w.at(2, 0), w.at(0, 2)), (90_000, 90_000));
    assert_eq!((w.at(0, 1), w.at(1, 2)), (1000, 5000));
}

proptest! {
    /// Sanitized matrices are symmetric, never below either direction, and
    /// the same MEASUREs in the same order give every replica the same
    /// matrices.
    #[test]
    fn sanitized_is_symmetric_and_an_upper_bound(
        cells in prop::collection::vec(0u64..2 * INF, 25),
    ) {
        let m: Vec<Vec<u64>> = cells.chunks(5).map(<[u64]>::to_vec).collect();
        let s = sanitize(&m);
        for i in 0..5 {
            for j in 0..5 {
                prop_assert_eq!(s[i][j], s[j][i]);
                prop_assert!(s[i][j] >= m[i][j] && s[i][j] >= m[j][i]);
            }
        }
        let (mut a, mut b) = (Synced::new(5, 3), Synced::new(5, 3));
        for (k, row) in m.iter().enumerate() {
            let mm = measure(k, row.clone());
            a.apply(k as u64, mm.clone()).unwrap();
            b.apply(k as u64, mm).unwrap();
        }
        prop_assert_eq!(a.matrices(6).unwrap(), b.matrices(6).unwrap());
    }
}
