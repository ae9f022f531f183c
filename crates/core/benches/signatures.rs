//! What one ed25519 operation costs on this machine, as the AT2 and SMR
//! paths use them: an owner's signature (`sign_with`), a verification alone
//! and one signature's share of a batch verification (`verify_keyed` over
//! 256 transfers by 256 accounts, keys cached as on a node under load).
//! These set the floor of an AT2 transfer's CPU cost (docs/AT2.md, "Speed").
//! The BLS12-381 threshold operations (a member's share, checking one share,
//! combining f+1 = 3 of 5 and 2f+1 = 3 of 4, verifying a combined
//! signature) and a BLAKE3 MAC are what the simulator's CPU models charge
//! for Steward's THRESHOLD-SIGN and Destiny's ThreshSign:
//! `cargo bench -p byzscale-core --bench signatures`.

use byzscale_core::crypto::{sign_with, Crypto, CryptoMode, Identity, Signature};
use byzscale_core::{Addr, NodeId};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::SigningKey;

fn keys(n: u8) -> Vec<SigningKey> {
    (0..n).map(|i| SigningKey::from_bytes(&[i; 32])).collect()
}

fn signatures(c: &mut Criterion) {
    let crypto = Crypto::new(
        Addr::Node(NodeId(0)),
        Identity::from_seed([7; 32]),
        CryptoMode::Real,
    );
    let owners = keys(255);
    let msgs: Vec<Vec<u8>> = (0..owners.len())
        .map(|i| format!("byzscale-at2-transfer-v1 {i} to someone 1 unit").into_bytes())
        .collect();
    let sigs: Vec<Signature> = owners
        .iter()
        .zip(&msgs)
        .map(|(k, m)| sign_with(k, CryptoMode::Real, m))
        .collect();
    let publics: Vec<[u8; 32]> = owners
        .iter()
        .map(|k| k.verifying_key().to_bytes())
        .collect();
    let items: Vec<(&[u8; 32], &[u8], &Signature)> = publics
        .iter()
        .zip(&msgs)
        .zip(&sigs)
        .map(|((p, m), s)| (p, m.as_slice(), s))
        .collect();
    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| {
        b.iter(|| sign_with(&owners[0], CryptoMode::Real, &msgs[0]))
    });
    g.bench_function("verify one", |b| {
        b.iter(|| assert!(crypto.verify_keyed(&items[..1])[0]))
    });
    g.throughput(Throughput::Elements(items.len() as u64));
    g.bench_function("verify a batch of 255, per batch", |b| {
        b.iter_batched(
            || (),
            |_| assert!(crypto.verify_keyed(&items).iter().all(|ok| *ok)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn threshold(c: &mut Criterion) {
    use byzscale_core::threshold::{deal, Share};
    use rand::SeedableRng;
    let rng = &mut rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (key, members) = deal(3, 4, rng).expect("3 of 4");
    let msg = b"byzscale site proposal: seq 17, digest 0123456789abcdef";
    let shares: Vec<Share> = members.iter().map(|m| m.sign(msg)).collect();
    let sig = key.combine(msg, &shares[..3]).expect("combines").signature;
    let mut g = c.benchmark_group("bls threshold");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign a share", |b| b.iter(|| members[0].sign(msg)));
    g.bench_function("verify a share", |b| {
        b.iter(|| assert!(key.verify_share(msg, &shares[0])))
    });
    g.bench_function("combine 3 shares", |b| {
        b.iter(|| key.combine(msg, &shares[..3]).expect("combines"))
    });
    g.bench_function("verify a signature", |b| {
        b.iter(|| assert!(key.verify(msg, &sig)))
    });
    g.finish();
    let mut g = c.benchmark_group("mac");
    g.throughput(Throughput::Elements(1));
    let mac_key = [9u8; 32];
    g.bench_function("blake3 keyed, 64 B", |b| {
        b.iter(|| blake3::keyed_hash(&mac_key, &msg[..]))
    });
    g.finish();
}

criterion_group!(benches, signatures, threshold);
criterion_main!(benches);
