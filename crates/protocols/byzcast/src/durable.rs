//! What a ByzCast replica asks its driver to keep ([`Record`], emitted as
//! `Effect::Persist`) and how the records fold into what a restart needs
//! ([`Durable`], for [`crate::Replica::recover`]).
//!
//! Two parts: the records of the group's SMR replica (its votes, views,
//! decisions and checkpoints; the group machine's state, stream indices
//! included, is SMR state and comes back with them), and the replica's own
//! forward streams to its children (see [`crate::stream`]): which sequence
//! numbers it gave which copies, and up to where each child has them.
//! Third, the results it sent up ([`Record::Done`], the last
//! [`crate::replica::DONE_CACHE`]): a parent that restarted asks for them
//! again, and a child whose whole group restarted from a checkpoint would
//! otherwise not have them (its handling of those messages is not replayed).
//! Fourth, the messages it handled whose children's results it still awaits
//! ([`Record::Awaiting`], removed by their [`Record::Done`]): a group whose
//! every replica restarted from a checkpoint taken after it handled a
//! message would otherwise never ask its children for the results again,
//! and the client would query it forever (`sim byzcast --byzantine-clients
//! 4`, seed 59: an entry group lost its aggregation in a crash of every
//! group).

use crate::message::{MsgId, Results};
use crate::replica::{done_over, results_bytes};
use crate::stream::StreamDurable;
use byzscale_core::GroupId;
use byzscale_smr as smr;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// A ByzCast replica's durable records, in emission order; sends that follow
/// a record in its step wait until it is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The group's SMR replica's record.
    Smr(smr::Record),
    /// Forward `op` (an [`crate::Envelope::Forward`] for stream index `k`) is
    /// the child's request `seq` of this replica (before it is first sent).
    Forward {
        child: GroupId,
        seq: u64,
        k: u64,
        op: Vec<u8>,
    },
    /// Every request up to `seq` is done at `child` (before the requests it
    /// admits into the window are sent).
    Acked { child: GroupId, seq: u64 },
    /// This group handled `id` and awaits the results of the children in
    /// `awaiting`; `own` is its own result if it is a destination, `entry`
    /// whether it answers the client.
    Awaiting {
        id: MsgId,
        entry: bool,
        own: Option<Vec<u8>>,
        awaiting: Vec<GroupId>,
    },
    /// The merged results of `id` were sent up (to the client if `entry`,
    /// else to the parent group), before they leave.
    Done {
        id: MsgId,
        results: Results,
        entry: bool,
    },
}

impl From<smr::Record> for Record {
    fn from(r: smr::Record) -> Self {
        Record::Smr(r)
    }
}

impl From<byzscale_core::NoRecord> for Record {
    fn from(n: byzscale_core::NoRecord) -> Self {
        match n {}
    }
}

/// What [`Durable::apply`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Smr(smr::replica::Change),
    /// The stream to this child changed.
    Stream(GroupId),
    /// A result was kept, and the oldest ones dropped (in order) to keep
    /// within [`crate::replica::DONE_CACHE`] results and [`crate::replica::DONE_BYTES`].
    Done {
        dropped: Vec<MsgId>,
    },
    /// The set of messages awaiting results changed.
    Awaiting,
}

/// A handled message awaiting its children's results ([`Record::Awaiting`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    pub entry: bool,
    pub own: Option<Vec<u8>>,
    pub awaiting: Vec<GroupId>,
}

/// Every record a ByzCast replica emitted, folded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    pub smr: smr::Durable,
    pub streams: BTreeMap<GroupId, StreamDurable>,
    /// The last results sent up, oldest first: at most [`crate::replica::DONE_CACHE`] and
    /// [`crate::replica::DONE_BYTES`] of them.
    pub done: VecDeque<(MsgId, Results, bool)>,
    /// Bytes of `done` (as the replica counts them).
    pub done_bytes: usize,
    /// Handled messages whose results are not all in yet (as many as the
    /// replica's aggregations: each goes with its `Done`).
    pub awaiting: BTreeMap<MsgId, Awaiting>,
}

impl Durable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold one record in (records are applied in emission order).
    pub fn apply(&mut self, r: Record) -> Change {
        match r {
            Record::Smr(r) => Change::Smr(self.smr.apply(r)),
            Record::Awaiting {
                id,
                entry,
                own,
                awaiting,
            } => {
                let a = Awaiting {
                    entry,
                    own,
                    awaiting,
                };
                self.awaiting.insert(id, a);
                Change::Awaiting
            }
            Record::Done { id, results, entry } => {
                self.awaiting.remove(&id);
                self.done_bytes += results_bytes(&results);
                self.done.push_back((id, results, entry));
                let mut dropped = Vec::new();
                while done_over(self.done.len(), self.done_bytes) {
                    let Some((id, r, _)) = self.done.pop_front() else {
                        break;
                    };
                    self.done_bytes -= results_bytes(&r);
                    dropped.push(id);
                }
                Change::Done { dropped }
            }
            Record::Forward { child, .. } | Record::Acked { child, .. } => {
                let changed = self.streams.entry(child).or_default().apply(&r);
                if changed {
                    Change::Stream(child)
                } else {
                    Change::Smr(smr::replica::Change::None)
                }
            }
        }
    }

    /// Set the results sent up (read back from a disk), counting their bytes.
    pub fn set_done(&mut self, done: VecDeque<(MsgId, Results, bool)>) {
        self.done_bytes = done.iter().map(|(_, r, _)| results_bytes(r)).sum();
        self.done = done;
    }

    /// Fold records in order.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Self {
        let mut d = Durable::new();
        for r in records {
            d.apply(r);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::DONE_CACHE;
    use byzscale_core::ClientId;

    /// The results sent up are kept, the last `DONE_CACHE` only, oldest
    /// dropped first (the node journal deletes the row it names).
    #[test]
    fn done_results_are_bounded_and_drop_the_oldest() {
        let id = |n| MsgId {
            client: ClientId(1),
            n,
        };
        let mut d = Durable::new();
        for n in 1..=DONE_CACHE as u64 {
            let results = Results::from([(GroupId(1), n.to_le_bytes().to_vec())]);
            let r = Record::Done {
                id: id(n),
                results,
                entry: false,
            };
            assert_eq!(d.apply(r), Change::Done { dropped: vec![] });
        }
        let r = Record::Done {
            id: id(0),
            results: Results::new(),
            entry: true,
        };
        assert_eq!(
            d.apply(r),
            Change::Done {
                dropped: vec![id(1)]
            }
        );
        assert_eq!(d.done.len(), DONE_CACHE);
        assert_eq!(d.done.front().map(|(i, ..)| *i), Some(id(2)));
        assert_eq!(d.done.back().map(|(i, _, e)| (*i, *e)), Some((id(0), true)));
    }
}

#[cfg(test)]
mod awaiting {
    use super::*;
    use byzscale_core::ClientId;

    /// A handled message is kept as awaiting until its results are done.
    #[test]
    fn awaiting_lasts_until_done() {
        let id = MsgId {
            client: ClientId(7),
            n: 3,
        };
        let mut d = Durable::new();
        let r = Record::Awaiting {
            id,
            entry: true,
            own: None,
            awaiting: vec![GroupId(1), GroupId(2)],
        };
        assert_eq!(d.apply(r), Change::Awaiting);
        assert_eq!(d.awaiting[&id].awaiting, vec![GroupId(1), GroupId(2)]);
        d.apply(Record::Done {
            id,
            results: Results::new(),
            entry: true,
        });
        assert!(d.awaiting.is_empty());
    }
}

#[cfg(test)]
mod bytes {
    use super::*;
    use crate::replica::DONE_BYTES;
    use byzscale_core::ClientId;

    /// Issue 10 item 9: the results kept were bounded by count only, so
    /// [`crate::replica::DONE_CACHE`] results of 1 MiB (64 GiB) were all kept, in memory
    /// and in the records. Now the oldest go once they pass
    /// [`DONE_BYTES`], the newest is always kept, and each dropped id is
    /// named (the node journal deletes its row).
    #[test]
    fn done_results_are_bounded_in_bytes() {
        let mut d = Durable::new();
        let mut dropped = Vec::new();
        let big = Results::from([(GroupId(1), vec![7; 1 << 20])]);
        for n in 0..100 {
            let id = MsgId {
                client: ClientId(1),
                n,
            };
            let r = Record::Done {
                id,
                results: big.clone(),
                entry: false,
            };
            let Change::Done { dropped: gone } = d.apply(r) else {
                panic!("not a Done change");
            };
            dropped.extend(gone);
            assert!(d.done_bytes <= DONE_BYTES, "after {n}: {}", d.done_bytes);
        }
        let held: usize = d.done.iter().map(|(_, r, _)| results_bytes(r)).sum();
        assert_eq!(held, d.done_bytes);
        assert!(
            d.done.len() >= 30,
            "recent results are kept: {}",
            d.done.len()
        );
        assert_eq!(dropped.len() + d.done.len(), 100);
        let first = dropped.iter().map(|i| i.n).collect::<Vec<_>>();
        assert_eq!(
            first,
            (0..dropped.len() as u64).collect::<Vec<_>>(),
            "oldest first"
        );
        // one result above the bound is still kept
        let huge = Results::from([(GroupId(1), vec![7; DONE_BYTES + 1])]);
        let id = MsgId {
            client: ClientId(1),
            n: 1000,
        };
        d.apply(Record::Done {
            id,
            results: huge,
            entry: true,
        });
        assert_eq!(d.done.len(), 1);
    }
}
