//! The batch time each operation of the history ran at, for the
//! linearizability checker's expiry (`byzscale_sim::check::linearizability`,
//! **Expiry**), learned from the correct replicas only.
//!
//! - A completed ordered operation ran in the slot its client's matching
//!   replies named (`smr::client::Output::Done::slot`), at that slot's agreed
//!   time: the batch's timestamp, or the previous batch's time if that is
//!   later (a replica executes a batch at `max(previous, its timestamp)`, see
//!   `byzscale_smr`, "Batch time"). The timestamps are those of the batches
//!   correct replicas decided (the log checker makes them agree), so the time
//!   of slot `s` is the largest timestamp of a slot up to `s`; a slot no
//!   correct replica was seen deciding (every one of them skipped it by state
//!   transfer) would be missed, which no simulated run has come near.
//! - A read answered on the unordered path has no time: the checker places it
//!   in its window.
//! - A pending operation (its session expired, or in flight at the end): its
//!   request is recognized as its client's request with the same bytes that
//!   correct replicas first decided between its invocation and its end (one
//!   client has one operation in flight, and an old request decided again is
//!   recognized by its session and number). Not decided there: no correct
//!   replica ran it, and it is left out of the history. Decided at one agreed
//!   time: it took effect then or never (a replica may have refused it there).
//!   Decided at several (refused, then proposed again): left without a time.

use crate::workload::Ran;
use byzscale_core::protocol::Time;
use byzscale_core::ClientId;
use byzscale_sim::check::linearizability::Op;
use byzscale_smr::Batch;
use std::collections::{BTreeMap, BTreeSet};

/// What correct replicas decided, as far as batch times go.
#[derive(Default)]
pub struct BatchTimes {
    /// Per slot a correct replica decided: its batch's timestamp (ms).
    stamps: BTreeMap<u64, u64>,
    /// The honest clients' requests (client, session, seq) seen decided.
    seen: BTreeSet<(ClientId, u64, u64)>,
    /// Per honest client: (when first decided, slot, operation bytes) of each
    /// of its requests, in the order they were first seen.
    requests: BTreeMap<ClientId, Vec<(Time, u64, Vec<u8>)>>,
}

/// What [`BatchTimes::stamp`] did to a history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamped {
    /// Operations given a batch time.
    pub timed: u64,
    /// Pending operations left out: no correct replica decided them.
    pub dropped: u64,
}

impl BatchTimes {
    /// A correct replica decided `batch` at `slot` (at virtual time `at`).
    pub fn decided(&mut self, at: Time, slot: u64, batch: &Batch) {
        self.stamps.entry(slot).or_insert(batch.time_ms);
        for r in batch.requests.iter() {
            if r.client.0 >= crate::clients::BYZ_BASE
                || !self.seen.insert((r.client, r.session, r.seq))
            {
                continue;
            }
            let mine = self.requests.entry(r.client).or_default();
            mine.push((at, slot, r.op.clone()));
        }
    }

    /// The agreed time of each decided slot (see the module docs).
    fn agreed(&self) -> BTreeMap<u64, u64> {
        let mut time = 0;
        self.stamps
            .iter()
            .map(|(&slot, &stamp)| {
                time = stamp.max(time);
                (slot, time)
            })
            .collect()
    }

    /// Give the operations of `history` their batch times and leave out the
    /// pending ones no correct replica decided (module docs); `ran[i]` is
    /// where `history[i]` ran.
    pub fn stamp(&self, history: Vec<Op>, ran: &[Ran]) -> (Vec<Op>, Stamped) {
        let agreed = self.agreed();
        let mut stamped = Stamped::default();
        let mut out = Vec::with_capacity(history.len());
        for (op, ran) in history.into_iter().zip(ran) {
            let times: BTreeSet<u64> = match *ran {
                Ran::Slot(slot) => agreed.get(&slot).copied().into_iter().collect(),
                Ran::Unordered => BTreeSet::new(),
                Ran::Pending { until } => {
                    let times = self.pending_times(&op, until, &agreed);
                    if times.is_empty() {
                        stamped.dropped += 1;
                        continue;
                    }
                    times
                }
            };
            match (times.len(), times.first()) {
                (1, Some(&t)) => {
                    stamped.timed += 1;
                    out.push(op.at(t));
                }
                _ => out.push(op),
            }
        }
        (out, stamped)
    }

    /// The agreed times of the slots where correct replicas first decided a
    /// request of `op`'s client with its bytes, from its invocation to `until`.
    fn pending_times(&self, op: &Op, until: Time, agreed: &BTreeMap<u64, u64>) -> BTreeSet<u64> {
        let bytes = op.op.encode();
        let Some(mine) = self.requests.get(&ClientId(op.client)) else {
            return BTreeSet::new();
        };
        mine.iter()
            .filter(|(at, _, b)| (op.invoked..=until).contains(at) && *b == bytes)
            .filter_map(|(_, slot, _)| agreed.get(slot).copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_apps::kv::{KvOp, KvReply};
    use byzscale_smr::Request;

    fn request(client: u64, seq: u64, op: &KvOp) -> Request {
        Request {
            client: ClientId(client),
            session: 1,
            seq,
            read_only: false,
            op: op.encode(),
            auth: Vec::new(),
            sig: None,
        }
    }

    /// Slots run at the running maximum of the timestamps; a pending
    /// operation takes the time of the slot its request was first decided
    /// in during its life, or is left out if none was; an unordered read
    /// has no time.
    #[test]
    fn operations_get_the_agreed_time_of_their_slot() {
        let set = KvOp::Set(b"k".to_vec(), b"v".to_vec());
        let get = KvOp::Get(b"k".to_vec());
        let incr = KvOp::Incr(b"n".to_vec());
        let mut times = BatchTimes::default();
        times.decided(10, 1, &Batch::at(7, vec![request(1, 1, &set)]));
        // a null batch (time 0) runs at the previous time; client 2's INCR
        times.decided(20, 2, &Batch::at(0, vec![request(2, 1, &incr)]));
        // the same request decided again (a duplicate) is not a new sighting
        times.decided(30, 3, &Batch::at(9, vec![request(2, 1, &incr)]));
        times.decided(40, 4, &Batch::at(12, vec![request(3, 1, &set)]));
        let history = vec![
            Op::new(1, 0, 15, set.clone(), KvReply::Ok),
            Op::new(1, 16, 17, get.clone(), KvReply::Bulk(b"v".to_vec())),
            Op::pending(2, 5, incr.clone()),
            Op::pending(3, 35, get),
            Op::pending(3, 45, set),
        ];
        let ran = [
            Ran::Slot(1),
            Ran::Unordered,
            Ran::Pending { until: 50 },
            Ran::Pending { until: 40 },
            Ran::Pending { until: Time::MAX },
        ];
        let (out, stamped) = times.stamp(history, &ran);
        let got: Vec<(u64, Option<u64>)> = out.iter().map(|o| (o.client, o.time)).collect();
        // client 3's GET was never decided; its SET was decided before it
        // was invoked (an earlier request with the same bytes)
        assert_eq!(got, vec![(1, Some(7)), (1, None), (2, Some(7))]);
        assert_eq!(
            stamped,
            Stamped {
                timed: 2,
                dropped: 2
            }
        );
    }
}
