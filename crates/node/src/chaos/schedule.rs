//! The fault plan of a chaos run, drawn from its seed: what happens when,
//! for how long, to how many replicas of which group. Which replicas are hit
//! is settled when the fault is applied (a fault may aim at the leader of
//! the moment), from the same seeded generator.

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
    /// SIGKILL of every replica of a group at once (a power loss), all
    /// restarted after the hold.
    WholeGroup,
    /// SIGKILL of every replica of every group at once (the whole cluster
    /// loses power); planned only when there are several groups (with one,
    /// a whole-group crash is the same).
    WholeCluster,
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
    /// The group it hits (0 with one group; unused by whole-cluster crashes).
    pub group: usize,
}

/// The shape of the cluster a plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Groups, each of `n` replicas tolerating `f`.
    pub groups: usize,
    pub n: usize,
    pub f: usize,
    /// Partitions can be made.
    pub partitions: bool,
    /// Some partitions split a group in halves (no quorum on either side);
    /// else every partition cuts off at most f replicas.
    pub splits: bool,
    /// The groups have leaders a fault can aim at.
    pub leaders: bool,
}

/// The plan for `duration` seconds of the cluster `l`: faults one after the
/// other, each followed by a pause of 1 to 2 s in which the cluster recovers.
/// One fault of every kind is always planned (in an order drawn from `rng`),
/// even if that runs past `duration`; further ones are drawn while time
/// remains. Partitions only if `l.partitions`, whole-cluster crashes only
/// with several groups.
pub fn plan(rng: &mut StdRng, duration: f64, l: &Layout) -> Vec<Planned> {
    let (n, f) = (l.n, l.f);
    let mut must = vec![FaultKind::Restart, FaultKind::WholeGroup];
    if l.partitions {
        must.push(FaultKind::Partition);
    }
    if l.groups > 1 {
        must.push(FaultKind::WholeCluster);
    }
    must.shuffle(rng);
    let mut out = Vec::new();
    let mut t = rng.gen_range(0.5..1.5);
    while out.len() < must.len() || t < duration {
        let kind = must
            .get(out.len())
            .copied()
            .unwrap_or_else(|| match rng.gen_range(0..100) {
                0..=4 if l.groups > 1 => FaultKind::WholeCluster,
                0..=14 => FaultKind::WholeGroup,
                15..=44 if l.partitions => FaultKind::Partition,
                _ => FaultKind::Restart,
            });
        let (hold, size) = match kind {
            FaultKind::Restart => (rng.gen_range(0.3..1.5), rng.gen_range(1..=f.max(1))),
            FaultKind::WholeGroup => (rng.gen_range(0.2..1.0), n),
            FaultKind::WholeCluster => (rng.gen_range(0.2..1.0), n * l.groups),
            // a minority cut off, or now and then a split with no quorum
            // on either side (the group stalls until it heals)
            FaultKind::Partition if l.splits && rng.gen_bool(0.25) => {
                (rng.gen_range(1.0..2.5), n / 2)
            }
            FaultKind::Partition => (rng.gen_range(1.0..2.5), rng.gen_range(1..=f.max(1))),
        };
        let whole = matches!(kind, FaultKind::WholeGroup | FaultKind::WholeCluster);
        let leader = l.leaders && !whole && rng.gen_bool(0.5);
        let group = if l.groups > 1 && kind != FaultKind::WholeCluster {
            rng.gen_range(0..l.groups)
        } else {
            0
        };
        out.push(Planned {
            start: t,
            kind,
            hold,
            size,
            leader,
            group,
        });
        t += hold + rng.gen_range(1.0..2.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const SMR: Layout = Layout {
        groups: 1,
        n: 4,
        f: 1,
        partitions: true,
        splits: true,
        leaders: true,
    };

    #[test]
    fn every_kind_is_planned_within_bounds_and_the_seed_replays() {
        for seed in 0..50 {
            let p = plan(&mut StdRng::seed_from_u64(seed), 15.0, &SMR);
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
                assert_eq!(f.group, 0);
                match f.kind {
                    FaultKind::Restart => assert_eq!(f.size, 1),
                    FaultKind::WholeGroup => assert_eq!(f.size, 4),
                    FaultKind::Partition => assert!(f.size == 1 || f.size == 2),
                    FaultKind::WholeCluster => panic!("one group: {f:?}"),
                }
            }
            assert_eq!(p, plan(&mut StdRng::seed_from_u64(seed), 15.0, &SMR));
        }
        let off = Layout {
            partitions: false,
            ..SMR
        };
        let p = plan(&mut StdRng::seed_from_u64(1), 1.0, &off);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|f| f.kind != FaultKind::Partition));
    }

    #[test]
    fn several_groups_get_whole_cluster_crashes_and_no_splits() {
        let l = Layout {
            groups: 3,
            splits: false,
            ..SMR
        };
        let mut groups = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let p = plan(&mut StdRng::seed_from_u64(seed), 15.0, &l);
            assert!(p.iter().any(|f| f.kind == FaultKind::WholeCluster), "{p:?}");
            for f in &p {
                groups.insert(f.group);
                assert!(f.group < 3, "{f:?}");
                match f.kind {
                    FaultKind::WholeCluster => assert_eq!((f.size, f.leader), (12, false)),
                    FaultKind::WholeGroup => assert_eq!((f.size, f.leader), (4, false)),
                    _ => assert_eq!(f.size, 1, "{f:?}"),
                }
            }
        }
        assert_eq!(groups.len(), 3);
        let no_leaders = Layout {
            leaders: false,
            ..l
        };
        let p = plan(&mut StdRng::seed_from_u64(7), 15.0, &no_leaders);
        assert!(p.iter().all(|f| !f.leader), "{p:?}");
    }
}
