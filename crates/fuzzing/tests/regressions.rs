//! The fuzz corpus as plain tests: every checked-in input of
//! `fuzz/regressions/<target>/` (minimized interesting inputs and every crash
//! reproducer) and every seed runs through its target's harness, the same
//! function the libFuzzer binary calls. A panic or a failed property fails
//! the test and names the file.

use byzscale_fuzzing::{seeds, target, TARGETS};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = repo().join("fuzz/regressions").join(name);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(d) => d.map(|e| e.expect("readable entry").path()).collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("readable corpus file");
            (p, bytes)
        })
        .collect()
}

#[test]
fn regression_corpus_replays_clean() {
    let mut total = 0;
    for t in TARGETS {
        let files = corpus(t.name);
        assert!(
            !files.is_empty(),
            "fuzz/regressions/{} is empty: check in its minimized corpus",
            t.name
        );
        for (path, bytes) in files {
            let r = std::panic::catch_unwind(|| (t.run)(&bytes));
            assert!(r.is_ok(), "{} fails on {}", t.name, path.display());
            total += 1;
        }
    }
    eprintln!("replayed {total} corpus inputs");
}

#[test]
fn seeds_run_clean() {
    for t in TARGETS {
        let seeds = (t.seeds)();
        assert!(!seeds.is_empty(), "{} has no seeds", t.name);
        for s in seeds {
            (t.run)(&s);
        }
    }
}

#[test]
fn message_seeds_are_accepted_by_the_node_decoder() {
    use byzscale_core::codec::DEFAULT_MAX_FRAME;
    use byzscale_fuzzing::protocols::{At2Bracha, At2Contagion};
    use byzscale_net::wire::decode_message;
    for s in seeds::smr_message() {
        decode_message::<byzscale_smr::Message>(&s, DEFAULT_MAX_FRAME).unwrap();
    }
    for s in seeds::byzcast_message() {
        decode_message::<byzscale_byzcast::Message>(&s, DEFAULT_MAX_FRAME).unwrap();
    }
    for s in seeds::at2_bracha_message() {
        decode_message::<At2Bracha>(&s, DEFAULT_MAX_FRAME).unwrap();
    }
    for s in seeds::at2_contagion_message() {
        decode_message::<At2Contagion>(&s, DEFAULT_MAX_FRAME).unwrap();
    }
}

#[test]
fn handshake_seeds_complete_a_handshake() {
    use byzscale_fuzzing::transport::{ident, known, next_frame, role, KIND, NONCE};
    use byzscale_net::transport::HANDSHAKE_MAX;
    use byzscale_net::wire::Handshake;
    for s in seeds::handshake() {
        let (me, dialed, clients) = role(s[0]);
        let mut stream = &s[1..];
        let hello = next_frame(&mut stream, HANDSHAKE_MAX, 0).unwrap().unwrap();
        let auth = next_frame(&mut stream, HANDSHAKE_MAX, 0).unwrap().unwrap();
        let (wait, _) = Handshake::new(me, ident(me), KIND, dialed, NONCE)
            .on_hello(hello, known, clients)
            .unwrap();
        wait.on_auth(auth).unwrap();
        // and one flipped bit in the signature breaks it
        let mut bad = auth.to_vec();
        *bad.last_mut().unwrap() ^= 1;
        let (wait, _) = Handshake::new(me, ident(me), KIND, dialed, NONCE)
            .on_hello(hello, known, clients)
            .unwrap();
        assert_eq!(wait.on_auth(&bad).err().unwrap().kind, "impostor");
    }
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    let mut bins: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "byzscale-fuzz")
        .map(str::to_string)
        .collect();
    bins.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(bins, names, "fuzz/Cargo.toml [[bin]]s and TARGETS differ");
    for t in TARGETS {
        let src = repo().join(format!("fuzz/fuzz_targets/{}.rs", t.name));
        let text = std::fs::read_to_string(&src).unwrap();
        assert!(
            text.contains(&format!("target(\"{}\")", t.name)),
            "{} does not run its harness",
            src.display()
        );
        assert!(target(t.name).is_some());
    }
}

/// The protocol-instance seeds are runs that get somewhere: the fuzzer
/// starts past signatures and MACs, at decisions and deliveries.
#[test]
fn instance_seeds_reach_decisions() {
    use byzscale_fuzzing::handlers;
    let smr = seeds::smr_replica();
    for (i, s) in smr.iter().enumerate() {
        let mut d = handlers::smr_replica(u32::from(s[0] & 1));
        d.run(&handlers::smr_senders(), &s[1..]);
        let r = d.protocol();
        if i < 2 {
            assert_eq!(r.executed(), 3, "seed {i}: three requests executed");
        } else {
            assert!(
                r.view() >= 1,
                "seed {i}: the view changed without the leader"
            );
        }
    }
    for s in seeds::byzcast_replica() {
        let me = [0, 1, 4, 8][s[0] as usize % 4];
        let mut d = handlers::byzcast_replica(me);
        d.run(&handlers::byzcast_senders(), &s[1..]);
        assert!(
            d.protocol().smr().executed() >= 1,
            "replica {me} ordered nothing"
        );
    }
    for s in seeds::at2_bracha_node() {
        let mut d = handlers::at2_bracha_node(u32::from(s[0] % 4));
        d.run(&handlers::at2_senders(), &s[1..]);
        assert_eq!(d.protocol().at2().ledger().applied_count(), 3);
    }
    for s in seeds::at2_contagion_node() {
        let mut d = handlers::at2_contagion_node(u32::from(s[0] % 4));
        d.run(&handlers::at2_senders(), &s[1..]);
        assert_eq!(d.protocol().at2().ledger().applied_count(), 3);
    }
}

/// What CI runs of the fuzzers: inputs derived from every seed by a seeded
/// mutator (bit flips, byte sets, small integer edits, cuts, splices and
/// duplications), `MUTANTS` per target, through the same harnesses.
#[test]
fn seed_mutants_run_clean() {
    const MUTANTS: usize = 3000;
    let mut total = 0;
    for t in TARGETS {
        let seeds = (t.seeds)();
        for (i, input) in byzscale_fuzzing::mutants(&seeds, MUTANTS, 7).enumerate() {
            let r = std::panic::catch_unwind(|| (t.run)(&input));
            assert!(
                r.is_ok(),
                "{} fails on mutant {i} of its seeds (seed 7): {:?}",
                t.name,
                input
            );
            total += 1;
        }
    }
    eprintln!("ran {total} mutants");
}
