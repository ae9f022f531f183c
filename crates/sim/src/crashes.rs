//! Crash-restart schedules: which replicas lose power, when, and for how long,
//! all drawn from the run's seed.
//!
//! A [`CrashPlan`] is a list of *episodes*, run one after the other (the next
//! starts only once every replica of the previous one is back):
//!
//! - a **partial** episode crashes 1 to f correct replicas of one group at
//!   the same instant, so at most f replicas of a group are ever down at once
//!   (besides the Byzantine ones, which the plan never touches);
//! - a **whole-group** episode crashes every correct replica of one group at
//!   once (a power loss), or, with [`CrashOptions::everything`], of every
//!   group.
//!
//! Each crashed replica restarts from its disk ([`crate::storage`],
//! [`Sim::recover`](crate::engine::Sim::recover)) after its own downtime.
//! Episodes are triggered by the workload's progress, not by a clock, so they
//! land while the work is running however fast it runs: episode i starts at
//! the first completion at or after its draw `after` (a count of completed
//! requests), plus a jitter that lands the crash between the steps of a
//! request (records written but not synced, sends held, messages in flight).
//! The world calls [`CrashPlan::progress`] from its output handler.

use crate::engine::{Control, NodeIdx};
use byzscale_core::protocol::{Time, MICROS, MILLIS};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::VecDeque;

/// The knobs of [`CrashPlan::draw`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrashOptions {
    /// Episodes per run, drawn uniformly from this range.
    pub episodes: (usize, usize),
    /// How long a crashed replica stays down.
    pub downtime: (Time, Time),
    /// The share of episodes that crash a whole group.
    pub whole_group: f64,
    /// The share of whole-group episodes that crash every group at once.
    pub everything: f64,
    /// A crash lands up to this long after the completion that triggers it.
    pub jitter: Time,
}

impl CrashOptions {
    /// One to four episodes, a third of them whole-group (a fifth of those
    /// of every group); downtimes from 1 ms to `2 × timeout` (a restarted
    /// replica catches up from the log, or by state transfer when the others
    /// moved past a checkpoint meanwhile, or finds a view change under way).
    pub fn standard(timeout: Time) -> Self {
        CrashOptions {
            episodes: (1, 4),
            downtime: (MILLIS, 2 * timeout),
            whole_group: 0.33,
            everything: 0.2,
            jitter: 2 * MILLIS,
        }
    }
}

/// What one episode does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpisodeKind {
    /// 1 to f replicas of a group.
    Partial,
    /// Every correct replica of a group.
    WholeGroup,
    /// Every correct replica of every group.
    Everything,
}

/// One episode: crash `nodes` at once, restart each after its downtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    /// Start at the first completion once this many completed.
    pub after: u64,
    pub kind: EpisodeKind,
    /// (replica, its downtime)
    pub nodes: Vec<(NodeIdx, Time)>,
}

/// What a plan did in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CrashStats {
    pub episodes: u64,
    pub whole_group: u64,
    /// Replica crashes (each followed by a restart).
    pub crashes: u64,
}

/// A run's crash-restart schedule (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct CrashPlan {
    pending: VecDeque<Episode>,
    /// No episode starts before every replica of the last one is back.
    busy_until: Time,
    jitter: Time,
    rng: Option<ChaCha8Rng>,
    stats: CrashStats,
}

impl CrashPlan {
    /// No crashes.
    pub fn none() -> Self {
        Self::default()
    }

    /// Draw a plan for `groups` (the correct replicas of each group, which
    /// tolerates `f` faults) over a run of `work` completions.
    pub fn draw(
        seed: u64,
        groups: &[Vec<NodeIdx>],
        f: usize,
        work: u64,
        opts: &CrashOptions,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc4a5_4e57_a47e);
        let groups: Vec<&Vec<NodeIdx>> = groups.iter().filter(|g| !g.is_empty()).collect();
        if groups.is_empty() || work == 0 {
            return Self::none();
        }
        let (lo, hi) = opts.episodes;
        let count = rng.gen_range(lo..=hi.max(lo));
        let mut afters: Vec<u64> = (0..count).map(|_| rng.gen_range(0..work)).collect();
        afters.sort_unstable();
        let down = |rng: &mut ChaCha8Rng| rng.gen_range(opts.downtime.0..=opts.downtime.1);
        let mut pending = VecDeque::new();
        for after in afters {
            let g = groups[rng.gen_range(0..groups.len())];
            let kind = if rng.gen_bool(opts.whole_group) {
                if groups.len() > 1 && rng.gen_bool(opts.everything) {
                    EpisodeKind::Everything
                } else {
                    EpisodeKind::WholeGroup
                }
            } else {
                EpisodeKind::Partial
            };
            let victims: Vec<NodeIdx> = match kind {
                EpisodeKind::Partial => {
                    let k = rng.gen_range(1..=f.max(1)).min(g.len());
                    g.choose_multiple(&mut rng, k).copied().collect()
                }
                EpisodeKind::WholeGroup => g.to_vec(),
                EpisodeKind::Everything => groups.iter().flat_map(|g| g.iter().copied()).collect(),
            };
            let nodes = victims.into_iter().map(|n| (n, down(&mut rng))).collect();
            pending.push_back(Episode { after, kind, nodes });
        }
        CrashPlan {
            pending,
            busy_until: 0,
            jitter: opts.jitter,
            rng: Some(rng),
            stats: CrashStats::default(),
        }
    }

    /// The episodes not started yet.
    pub fn pending(&self) -> impl Iterator<Item = &Episode> {
        self.pending.iter()
    }

    pub fn stats(&self) -> CrashStats {
        self.stats
    }

    /// `done` completions so far, the latest observed now (`ctl.now()`):
    /// start the next episode if it is due and the last one is over.
    pub fn progress<I>(&mut self, done: u64, ctl: &mut Control<I>) {
        let now = ctl.now();
        let due = self.pending.front().is_some_and(|e| done >= e.after);
        if !due || now < self.busy_until {
            return;
        }
        let (Some(e), Some(rng)) = (self.pending.pop_front(), self.rng.as_mut()) else {
            return;
        };
        let at = now + rng.gen_range(0..=self.jitter.max(MICROS));
        for (node, down) in &e.nodes {
            ctl.crash_at(at, *node);
            ctl.recover_at(at + down, *node);
            self.busy_until = self.busy_until.max(at + down);
        }
        self.stats.episodes += 1;
        self.stats.crashes += e.nodes.len() as u64;
        if e.kind != EpisodeKind::Partial {
            self.stats.whole_group += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<Vec<NodeIdx>> {
        vec![(0..4).map(NodeIdx).collect(), (4..8).map(NodeIdx).collect()]
    }

    #[test]
    fn episodes_respect_the_fault_bound_and_are_drawn_from_the_seed() {
        let opts = CrashOptions::standard(50 * MILLIS);
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let p = CrashPlan::draw(seed, &groups(), 1, 100, &opts);
            assert_eq!(
                p.pending().cloned().collect::<Vec<_>>(),
                CrashPlan::draw(seed, &groups(), 1, 100, &opts)
                    .pending()
                    .cloned()
                    .collect::<Vec<_>>()
            );
            let n = p.pending().count();
            assert!((1..=4).contains(&n), "{n} episodes");
            for e in p.pending() {
                kinds.insert(format!("{:?}", e.kind));
                assert!(e.after < 100);
                let want = match e.kind {
                    EpisodeKind::Partial => 1,
                    EpisodeKind::WholeGroup => 4,
                    EpisodeKind::Everything => 8,
                };
                assert_eq!(e.nodes.len(), want, "{e:?}");
                assert!(e
                    .nodes
                    .iter()
                    .all(|(_, d)| (MILLIS..=100 * MILLIS).contains(d)));
            }
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
    }

    #[test]
    fn an_episode_waits_for_its_count_and_for_the_last_one_to_end() {
        let opts = CrashOptions {
            episodes: (2, 2),
            whole_group: 0.0,
            ..CrashOptions::standard(50 * MILLIS)
        };
        let mut p = CrashPlan::draw(3, &groups()[..1], 1, 10, &opts);
        let first = p.pending().next().unwrap().clone();
        let second_after = p.pending().nth(1).unwrap().after;
        let mut ctl: Control<()> = Control::at(0);
        if first.after > 0 {
            p.progress(first.after - 1, &mut ctl);
            assert_eq!(p.stats().episodes, 0, "not due yet");
        }
        p.progress(first.after, &mut ctl);
        assert_eq!(p.stats().episodes, 1);
        let (crashes, recoveries) = (ctl.crashes(), ctl.recoveries());
        assert_eq!(crashes.len(), 1);
        assert_eq!(recoveries.len(), 1);
        let back = recoveries[0].0;
        assert!(back >= crashes[0].0 + MILLIS);
        // due, but the first replica is still down
        let mut ctl: Control<()> = Control::at(back - 1);
        p.progress(second_after.max(first.after), &mut ctl);
        assert_eq!(p.stats().episodes, 1);
        let mut ctl: Control<()> = Control::at(back);
        p.progress(second_after.max(first.after), &mut ctl);
        assert_eq!(p.stats().episodes, 2);
        assert_eq!(p.stats().crashes, 2);
    }
}
