//! What one ed25519 operation costs on this machine, as the AT2 and SMR
//! paths use them: an owner's signature (`sign_with`), a verification alone
//! and one signature's share of a batch verification (`verify_keyed` over
//! 256 transfers by 256 accounts, keys cached as on a node under load).
//! These set the floor of an AT2 transfer's CPU cost (docs/AT2.md, "Speed"):
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

criterion_group!(benches, signatures);
criterion_main!(benches);
