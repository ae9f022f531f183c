use super::*;
use byzscale_core::crypto::digest;
use byzscale_core::threshold::deal;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const O: Instance = Instance(0);

/// 2f+1 enclaves sharing one instance with threshold f+1.
fn enclaves(f: usize, enforcement: Enforcement) -> (GroupKey, Vec<SoftEnclave>) {
    let n = 2 * f + 1;
    let rng = &mut ChaCha8Rng::seed_from_u64(f as u64);
    let (key, shares) = deal(f + 1, n, rng).unwrap();
    let mac_key = *blake3::hash(b"test mac key").as_bytes();
    let es = shares
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            SoftEnclave::provision(
                i as u32,
                [(O, s)].into_iter().collect(),
                mac_key,
                enforcement,
            )
        })
        .collect();
    (key, es)
}

#[test]
fn f_plus_one_shares_certify_and_f_do_not() {
    let f = 2;
    let (key, mut es) = enclaves(f, Enforcement::On);
    let d = digest(b"batch 1");
    let shares: Vec<CounterShare> = es
        .iter_mut()
        .map(|e| e.independent_share(O, Counter::Agreement, 1, &d).unwrap())
        .collect();
    let (sig, invalid) = aggregate(&key, &d, O, Counter::Agreement, 1, &shares[..f + 1]).unwrap();
    assert!(invalid.is_empty());
    assert!(verify(&key, &sig, &d));
    assert!(!verify(&key, &sig, &digest(b"batch 2")));
    let moved = CounterSig {
        tv: 2,
        ..sig.clone()
    };
    assert!(!verify(&key, &moved, &d), "the value is signed");
    assert!(aggregate(&key, &d, O, Counter::Agreement, 1, &shares[..f]).is_err());
    // shares of another value do not count towards this one
    let other = es[0]
        .independent_share(O, Counter::Agreement, 2, &d)
        .unwrap();
    let mixed = [shares[1].clone(), other];
    assert!(aggregate(&key, &d, O, Counter::Agreement, 1, &mixed).is_err());
}

#[test]
fn a_counter_never_binds_two_digests_to_one_value() {
    let (_, mut es) = enclaves(1, Enforcement::On);
    let e = &mut es[0];
    let (a, b) = (digest(b"a"), digest(b"b"));
    e.independent_share(O, Counter::Agreement, 5, &a).unwrap();
    for (tv, d) in [(5, &b), (5, &a), (4, &b)] {
        let err = e
            .independent_share(O, Counter::Agreement, tv, d)
            .unwrap_err();
        assert!(
            matches!(err, TrustedError::NotMonotonic { at: 5, .. }),
            "{err}"
        );
    }
    // counters are independent of each other
    e.independent_share(O, Counter::Checkpoint, 1, &b).unwrap();
    assert_eq!(e.counter(O, Counter::Agreement), 5);
    assert!(matches!(
        e.independent_share(Instance(9), Counter::Agreement, 1, &a),
        Err(TrustedError::NoInstance(Instance(9)))
    ));
}

/// Byzantine hosts drive their enclaves to sign two digests for every value:
/// with the counters on, at most one digest per value is ever certified (any
/// two f+1 quorums of 2f+1 share an enclave); with them off, both are, which
/// is the equivocation a checker must then catch.
#[test]
fn equivocation_needs_the_counter_off() {
    for (enforcement, certified_both) in [(Enforcement::On, false), (Enforcement::Off, true)] {
        let f = 2;
        let (key, mut es) = enclaves(f, enforcement);
        let (a, b) = (digest(b"a"), digest(b"b"));
        for tv in 1..=3 {
            let mut got = Vec::new();
            for d in [&a, &b] {
                let shares: Vec<CounterShare> = es
                    .iter_mut()
                    .filter_map(|e| e.independent_share(O, Counter::Agreement, tv, d).ok())
                    .collect();
                got.push(aggregate(&key, d, O, Counter::Agreement, tv, &shares).is_ok());
            }
            assert!(got[0], "{enforcement:?} tv {tv}");
            assert_eq!(got[1], certified_both, "{enforcement:?} tv {tv}");
        }
    }
}

#[test]
fn continuing_certificates_verify_in_every_enclave_and_only_as_issued() {
    let (_, mut es) = enclaves(1, Enforcement::On);
    let d = digest(b"view-change log");
    es[0]
        .independent_share(O, Counter::ViewChange, 3, &d)
        .unwrap();
    let stay = es[0]
        .continuing_certificate(O, Counter::ViewChange, 3, &d)
        .unwrap();
    assert_eq!((stay.from, stay.to), (3, 3));
    let cert = es[0]
        .continuing_certificate(O, Counter::ViewChange, 7, &d)
        .unwrap();
    assert_eq!((cert.replica, cert.from, cert.to), (0, 3, 7));
    for e in es.iter_mut() {
        assert!(e.verify_certificate(&cert, &d));
        assert!(!e.verify_certificate(&cert, &digest(b"a shorter log")));
        let earlier = ContinuingCert {
            from: 1,
            ..cert.clone()
        };
        assert!(
            !e.verify_certificate(&earlier, &d),
            "a gap would hide entries"
        );
        let other = ContinuingCert {
            replica: 1,
            ..cert.clone()
        };
        assert!(!e.verify_certificate(&other, &d));
    }
    assert!(es[0]
        .continuing_certificate(O, Counter::ViewChange, 6, &d)
        .is_err());
}

#[test]
fn sealed_counters_survive_a_restart_and_cannot_be_forged() {
    let (_, mut es) = enclaves(1, Enforcement::On);
    let d = digest(b"x");
    es[0]
        .independent_share(O, Counter::Agreement, 9, &d)
        .unwrap();
    let sealed = es[0].seal();
    // a restarted replica: a fresh enclave given the sealed counters
    let (_, mut fresh) = enclaves(1, Enforcement::On);
    let mut forged = sealed.clone();
    forged.counters[0].1 = 2;
    assert_eq!(fresh[0].unseal(&forged), Err(TrustedError::BadSeal));
    // another replica's seal does not restore this one
    assert_eq!(fresh[1].unseal(&sealed), Err(TrustedError::BadSeal));
    fresh[0].unseal(&sealed).unwrap();
    assert!(fresh[0]
        .independent_share(O, Counter::Agreement, 9, &digest(b"y"))
        .is_err());
    assert!(fresh[0]
        .independent_share(O, Counter::Agreement, 10, &d)
        .is_ok());
}

#[test]
fn every_call_is_counted_and_debug_shows_no_secret() {
    let (_, mut es) = enclaves(1, Enforcement::On);
    let d = digest(b"x");
    let c = es[0]
        .continuing_certificate(O, Counter::Checkpoint, 1, &d)
        .unwrap();
    es[0].verify_certificate(&c, &d);
    let _ = es[0].independent_share(O, Counter::Checkpoint, 1, &d);
    assert_eq!(es[0].ecalls(), 3);
    let shown = format!("{:?}", es[0]);
    assert!(
        shown.contains("ecalls: 3") && !shown.contains("mac_key"),
        "{shown}"
    );
}
