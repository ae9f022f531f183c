//! The worked examples and checks of aware-model.md §4.3, §9.

use super::*;
use crate::heap::Heap;

fn params5() -> Params {
    // 5 replicas, f = 1, Δ = 1: V_max = 2, Q = 5
    Params {
        n: 5,
        f: 1,
        delta: 1,
        mode: Mode::Bft,
        rounds: 10,
    }
}

fn cfg(leader: usize, rmax: &[usize]) -> Config {
    Config {
        leader,
        rmax: rmax.to_vec(),
    }
}

fn all_predictions(m: &Matrix, p: &Params) -> Vec<(Vec<usize>, usize, i64)> {
    let mut out = Vec::new();
    for a in 0..p.n {
        for b in a + 1..p.n {
            for l in [a, b] {
                out.push((vec![a, b], l, predict(m, p, &cfg(l, &[a, b])).unwrap()));
            }
        }
    }
    out
}

#[test]
fn heap_polls_ties_as_javas_priority_queue() {
    let cases: [(&[i64], &[usize]); 4] = [
        (&[5, 5, 5, 5, 5], &[0, 4, 3, 2, 1]),
        (&[3, 1, 3, 1, 3, 2], &[1, 3, 5, 0, 4, 2]),
        (&[7, 7, 2, 7, 2, 7, 7], &[2, 4, 5, 1, 3, 0, 6]),
        (&[4, 4, 4, 1, 4, 4, 1, 4], &[3, 6, 2, 5, 4, 1, 7, 0]),
    ];
    for (keys, order) in cases {
        assert_eq!(Heap::poll_order(keys), order, "{keys:?}");
    }
}

#[test]
fn double_weights_stop_short_of_the_quorum_as_the_authors_code_does() {
    let p = Params::bft(21, 1).unwrap();
    assert_eq!((p.f, p.vmax(), p.quorum()), (6, 1.1666666666666667, 15.0));
    // twelve V_max and one V_min: 14.999999999999998 < 15
    let mut weights = vec![p.vmax(); 12];
    weights.push(1.0);
    weights.extend([1.0; 8]);
    let arrival: Vec<i64> = (0..21).collect();
    let t = Heap::with_capacity(21).quorum_time(&arrival, &weights, p.quorum());
    assert_eq!(t, Some(13), "the 14th vote, not the 13th");
    let p = Params::bft(21, 11).unwrap();
    assert_eq!(
        (p.f, p.vmax(), p.quorum()),
        (3, 4.666666666666666, 28.999999999999996)
    );
    // too little weight in all: no quorum, an error rather than a hang
    assert_eq!(
        Heap::with_capacity(3).quorum_time(&[1, 2, 3], &[1.0; 3], 5.0),
        None
    );
}

#[test]
fn example_a_symmetric() {
    let m = Matrix::new(vec![
        vec![0, 20, 100, 200, 200],
        vec![20, 0, 100, 200, 200],
        vec![100, 100, 0, 100, 100],
        vec![200, 200, 100, 0, 20],
        vec![200, 200, 100, 20, 0],
    ])
    .unwrap();
    let p = params5();
    let far = [(0, 3), (0, 4), (1, 3), (1, 4)];
    for (rmax, l, v) in all_predictions(&m, &p) {
        let want = if far.contains(&(rmax[0], rmax[1])) {
            400
        } else {
            220
        };
        assert_eq!(v, want, "{rmax:?} led by {l}");
    }
    let f = exhaustive(&m, &p).unwrap();
    assert_eq!(
        (f.latency, f.config, f.evaluated),
        (220, cfg(0, &[0, 1]), 20)
    );
}

#[test]
fn example_b_asymmetric_with_offsets() {
    let m = Matrix::new(vec![
        vec![4, 10, 10, 80, 50],
        vec![30, 3, 70, 10, 50],
        vec![90, 60, 3, 90, 60],
        vec![60, 60, 40, 2, 30],
        vec![30, 90, 80, 20, 1],
    ])
    .unwrap();
    let p = params5();
    let want = [
        ([0, 1], [119, 133]),
        ([0, 2], [144, 133]),
        ([0, 3], [144, 144]),
        ([0, 4], [144, 140]),
        ([1, 2], [133, 170]),
        ([1, 3], [130, 130]),
        ([1, 4], [133, 143]),
        ([2, 3], [133, 160]),
        ([2, 4], [190, 143]),
        ([3, 4], [129, 130]),
    ];
    for (rmax, lat) in want {
        for (k, l) in rmax.iter().enumerate() {
            assert_eq!(
                predict(&m, &p, &cfg(*l, &rmax)).unwrap(),
                lat[k],
                "{rmax:?} led by {l}"
            );
        }
    }
    // one round: the carry-over of late deciders does not show yet
    let one = Params { rounds: 1, ..p };
    assert_eq!(predict(&m, &one, &cfg(0, &[0, 1])).unwrap(), 100);
    assert_eq!(predict(&m, &one, &cfg(3, &[3, 4])).unwrap(), 120);
    let f = exhaustive(&m, &p).unwrap();
    assert_eq!((f.latency, f.config), (119, cfg(0, &[0, 1])));
}

#[test]
fn example_c_four_replicas_without_spares() {
    let m = Matrix::new(vec![
        vec![0, 30, 80, 120],
        vec![35, 0, 60, 100],
        vec![85, 55, 0, 50],
        vec![125, 95, 45, 0],
    ])
    .unwrap();
    let p = Params::bft(4, 0).unwrap();
    assert_eq!((p.f, p.quorum()), (1, 3.0));
    for (rmax, l, v) in all_predictions(&m, &p) {
        assert_eq!(v, if l == 3 { 205 } else { 175 }, "{rmax:?} led by {l}");
    }
    let f = best(&m, &p, Search::Auto).unwrap();
    assert_eq!(
        (f.latency, f.config, f.method),
        (175, cfg(0, &[0, 1]), "exhaustive")
    );
}

#[test]
fn matrices_are_read_as_the_authors_read_them_and_bad_ones_refused() {
    let m = Matrix::parse_ms("7.13,258.71,1,2\n1,2,3,4\n\n1,2,3,4\n0,0,0,0.004\n").unwrap();
    assert_eq!((m.at(0, 0), m.at(0, 1), m.at(3, 3)), (713, 25871, 0));
    assert!(matches!(
        Matrix::parse_ms("1,2,3\n1,2,3\n1,2,3\n"),
        Err(AwareError::Shape { .. })
    ));
    let e = Matrix::parse_ms("1,2,3,4\n1,x,3,4\n1,2,3,4\n1,2,3,4\n").unwrap_err();
    assert_eq!(e.to_string(), "matrix line 2: \"x\" is not a number");
    assert!(Matrix::parse_ms("1,2,3,4\n1,-2,3,4\n1,2,3,4\n1,2,3,4\n").is_err());
    assert!(matches!(
        Params::bft(4, 1),
        Err(AwareError::NoFaults { n: 4, delta: 1 })
    ));
}
