//! The authors' published table (bergerch/aware, `output_ExhaustiveSearch.csv`,
//! reproduced by their simulated annealing with seed 0 as well) for the
//! 21-region cloudping matrix: n = 21, Δ = 0..17, f = (20 − Δ) / 3, latency
//! in 0.01 ms; and the best configurations of aware-model.md §7.1.

use byzscale_aware::{anneal, exhaustive, Config, Matrix, Params};

const TABLE: [(usize, usize, i64); 18] = [
    (0, 6, 46180),
    (1, 6, 47641),
    (2, 6, 46804),
    (3, 5, 34039),
    (4, 5, 34039),
    (5, 5, 34039),
    (6, 4, 24068),
    (7, 4, 24068),
    (8, 4, 24068),
    (9, 3, 20782),
    (10, 3, 20782),
    (11, 3, 22338),
    (12, 2, 7114),
    (13, 2, 7114),
    (14, 2, 7114),
    (15, 1, 3698),
    (16, 1, 3698),
    (17, 1, 3698),
];

fn matrix() -> Matrix {
    let text = include_str!("../data/cloudping-21.csv");
    Matrix::parse_ms(text).unwrap()
}

#[test]
fn annealing_with_seed_zero_reproduces_the_published_table() {
    let m = matrix();
    for (delta, f, latency) in TABLE {
        let p = Params::bft(21, delta).unwrap();
        assert_eq!(p.f, f);
        let found = anneal(&m, &p, 0).unwrap();
        assert_eq!(found.latency, latency, "Δ = {delta}");
        assert_eq!(found.evaluated, 1963, "1962 moves after the start");
    }
    // the configurations the Java annealing prints (§7.1), a few rows
    let rows: [(usize, usize, &[usize]); 4] = [
        (0, 17, &[3, 4, 5, 7, 8, 9, 10, 13, 14, 15, 17, 18]),
        (9, 13, &[8, 9, 12, 13, 14, 18]),
        (12, 9, &[9, 11, 13, 14]),
        (15, 13, &[13, 14]),
    ];
    for (delta, leader, rmax) in rows {
        let found = anneal(&m, &Params::bft(21, delta).unwrap(), 0).unwrap();
        let want = Config {
            leader,
            rmax: rmax.to_vec(),
        };
        assert_eq!(found.config, want, "Δ = {delta}");
    }
}

#[test]
fn exhaustive_search_finds_the_first_optimum_in_order_for_small_f() {
    let m = matrix();
    for (delta, leader, rmax) in [(15, 9, vec![9, 13]), (12, 9, vec![9, 11, 13, 14])] {
        let p = Params::bft(21, delta).unwrap();
        let found = exhaustive(&m, &p).unwrap();
        let latency = TABLE[delta].2;
        assert_eq!(
            (found.latency, found.config),
            (latency, Config { leader, rmax })
        );
    }
}
