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

use crate::message::{MsgId, Results};
use crate::replica::DONE_CACHE;
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
    /// A result was kept, and the oldest one dropped if there were
    /// [`DONE_CACHE`].
    Done {
        dropped: Option<MsgId>,
    },
}

/// Every record a ByzCast replica emitted, folded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    pub smr: smr::Durable,
    pub streams: BTreeMap<GroupId, StreamDurable>,
    /// The last [`DONE_CACHE`] results sent up, oldest first.
    pub done: VecDeque<(MsgId, Results, bool)>,
}

impl Durable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold one record in (records are applied in emission order).
    pub fn apply(&mut self, r: Record) -> Change {
        match r {
            Record::Smr(r) => Change::Smr(self.smr.apply(r)),
            Record::Done { id, results, entry } => {
                self.done.push_back((id, results, entry));
                let dropped = (self.done.len() > DONE_CACHE)
                    .then(|| self.done.pop_front().map(|(id, ..)| id))
                    .flatten();
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
            assert_eq!(d.apply(r), Change::Done { dropped: None });
        }
        let r = Record::Done {
            id: id(0),
            results: Results::new(),
            entry: true,
        };
        assert_eq!(
            d.apply(r),
            Change::Done {
                dropped: Some(id(1))
            }
        );
        assert_eq!(d.done.len(), DONE_CACHE);
        assert_eq!(d.done.front().map(|(i, ..)| *i), Some(id(2)));
        assert_eq!(d.done.back().map(|(i, _, e)| (*i, *e)), Some((id(0), true)));
    }
}
