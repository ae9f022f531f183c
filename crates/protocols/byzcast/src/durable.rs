//! What a ByzCast replica asks its driver to keep ([`Record`], emitted as
//! `Effect::Persist`) and how the records fold into what a restart needs
//! ([`Durable`], for [`crate::Replica::recover`]).
//!
//! Two parts: the records of the group's SMR replica (its votes, views,
//! decisions and checkpoints; the group machine's state, stream indices
//! included, is SMR state and comes back with them), and the replica's own
//! forward streams to its children (see [`crate::stream`]): which sequence
//! numbers it gave which copies, and up to where each child has them.

use crate::stream::StreamDurable;
use byzscale_core::GroupId;
use byzscale_smr as smr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

/// Every record a ByzCast replica emitted, folded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    pub smr: smr::Durable,
    pub streams: BTreeMap<GroupId, StreamDurable>,
}

impl Durable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold one record in (records are applied in emission order).
    pub fn apply(&mut self, r: Record) -> Change {
        match r {
            Record::Smr(r) => Change::Smr(self.smr.apply(r)),
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
