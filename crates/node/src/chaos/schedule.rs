//! The fault plan of a chaos run, drawn from its seed: what happens when,
//! for how long, to how many replicas. Which replicas are hit is settled
//! when the fault is applied (a fault may aim at the leader of the moment),
//! from the same seeded generator.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL of up to f replicas, restarted from their node files after
    /// the hold.
    Restart,
    /// SIGKILL of every replica at once (a power loss), all restarted after
    /// the hold.
    WholeGroup,
    /// A set of replicas cut off from the others and the clients, healed
    /// after the hold.
    Partition,
}

/// One planned fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// Seconds after the load started.
    pub start: f64,
    pub kind: FaultKind,
    /// Seconds until the replicas are restarted or the partition healed.
    pub hold: f64,
    /// How many replicas it hits.
    pub size: usize,
    /// Whether the leader of the moment is among them.
    pub leader: bool,
}

/// The plan for `duration` seconds of `n` replicas tolerating `f`: faults
/// one after the other, each followed by a pause of 1 to 2 s in which the
/// group recovers. One fault of every kind is always planned (in an order
/// drawn from `rng`), even if that runs past `duration`; further ones are
/// drawn while time remains. Partitions only if `partitions`.
pub fn plan(rng: &mut StdRng, duration: f64, n: usize, f: usize, partitions: bool) -> Vec<Planned> {
    let mut must = vec![FaultKind::Restart, FaultKind::WholeGroup];
    if partitions {
        must.push(FaultKind::Partition);
    }
    must.shuffle(rng);
    let mut out = Vec::new();
    let mut t = rng.gen_range(0.5..1.5);
    while out.len() < must.len() || t < duration {
        let kind = must
            .get(out.len())
            .copied()
            .unwrap_or_else(|| match rng.gen_range(0..100) {
                0..=14 => FaultKind::WholeGroup,
                15..=44 if partitions => FaultKind::Partition,
                _ => FaultKind::Restart,
            });
        let (hold, size) = match kind {
            FaultKind::Restart => (rng.gen_range(0.3..1.5), rng.gen_range(1..=f.max(1))),
            FaultKind::WholeGroup => (rng.gen_range(0.2..1.0), n),
            // a minority cut off, or now and then a split with no quorum
            // on either side (the group stalls until it heals)
            FaultKind::Partition if rng.gen_bool(0.25) => (rng.gen_range(1.0..2.5), n / 2),
            FaultKind::Partition => (rng.gen_range(1.0..2.5), rng.gen_range(1..=f.max(1))),
        };
        let leader = kind != FaultKind::WholeGroup && rng.gen_bool(0.5);
        out.push(Planned {
            start: t,
            kind,
            hold,
            size,
            leader,
        });
        t += hold + rng.gen_range(1.0..2.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_kind_is_planned_within_bounds_and_the_seed_replays() {
        for seed in 0..50 {
            let p = plan(&mut StdRng::seed_from_u64(seed), 15.0, 4, 1, true);
            for k in [
                FaultKind::Restart,
                FaultKind::WholeGroup,
                FaultKind::Partition,
            ] {
                assert!(p.iter().any(|f| f.kind == k), "seed {seed}: no {k:?}");
            }
            for w in p.windows(2) {
                assert!(w[1].start >= w[0].start + w[0].hold + 1.0, "{w:?}");
            }
            for f in &p {
                match f.kind {
                    FaultKind::Restart => assert_eq!(f.size, 1),
                    FaultKind::WholeGroup => assert_eq!(f.size, 4),
                    FaultKind::Partition => assert!(f.size == 1 || f.size == 2),
                }
            }
            assert_eq!(p, plan(&mut StdRng::seed_from_u64(seed), 15.0, 4, 1, true));
        }
        let p = plan(&mut StdRng::seed_from_u64(1), 1.0, 4, 1, false);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|f| f.kind != FaultKind::Partition));
    }
}
