//! Durability: what a replica asks its driver to keep ([`Record`], emitted as
//! `Effect::Persist`), how the records fold into what a restart needs
//! ([`Durable`]), and the restart itself ([`Replica::recover`]).
//!
//! # Paper map and deviation
//!
//! PBFT assumes a replica never forgets what it sent: Castro & Liskov keep
//! the log in memory and treat a reboot with proactive recovery (TOCS'02
//! §4.6, Castro's thesis ch. 4), which needs a trusted coprocessor and a
//! watchdog. Here the rule is the durable one of production BFT systems
//! instead: **a record is durable before the message it justifies leaves**.
//! The driver holds every send and output that follows a record until the
//! record's group commit is fsync'd (the protocol keeps running meanwhile),
//! so a crash loses only records whose messages never left, and the
//! restarted replica is exactly one that never took those steps. It
//! - never proposes, writes or accepts against what it did before: the
//!   leader's PROPOSE and every WRITE follow a [`Record::Proposal`], every
//!   ACCEPT follows a [`Record::Accept`] (PBFT's pre-prepare/prepare/commit
//!   logged before they are sent);
//! - claims in STOP-DATA everything it pre-prepared and prepared (PBFT's P
//!   and Q), so a view change after a whole-group crash selects decided
//!   values again instead of filling them with empty batches;
//! - comes back in the view it had installed, or in the synchronization
//!   phase it had entered ([`Record::Changing`] precedes its STOP-DATA, so it
//!   never orders in a view it left; [`Record::Installed`] follows a SYNC);
//! - holds its stable checkpoint with the certificate ([`Record::Stable`],
//!   [`Record::Checkpoint`]), so its STOP-DATA are valid, the selection
//!   starts above the checkpoint and its claims stay inside the window;
//! - answers a client only for slots durable at this replica
//!   ([`Record::Decided`] precedes the slot's replies): f+1 matching replies
//!   mean the write is on disk at a correct replica, and the quorum of
//!   durable ACCEPTs that decided it makes every later view decide it again.
//!
//! Nothing is dropped that a view change needs: per slot above the stable
//! checkpoint the fold keeps the latest adopted value, the pre-prepared
//! digests (at most [`PRE_PREPARED_KEPT`], as in memory), the prepared value
//! of the highest view and the decision; below the checkpoint every record
//! goes (the certificate proves the state there).

use super::order::Restored;
use super::transfer::Transfer;
use super::{Replica, Status};
use crate::message::*;
use crate::params::{GroupInfo, Params};
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::service::Service;
use byzscale_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a replica asks its driver to make durable
/// ([`byzscale_core::Effect::Persist`]), in emission order. Sends that follow
/// a record wait until it is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// It adopted `batch` (digest `digest`) for `slot` in `view`: it
    /// pre-prepared it and, in a BFT group, sends its WRITE; as the leader it
    /// proposes it.
    Proposal {
        view: View,
        slot: Slot,
        digest: Digest,
        batch: Batch,
    },
    /// It sends ACCEPT for `digest` at `slot` in `view` (it prepared it).
    Accept {
        view: View,
        slot: Slot,
        digest: Digest,
    },
    /// Slot `slot`, decided in `view` with `batch`, is executed next (its
    /// replies leave after this record is durable).
    Decided {
        slot: Slot,
        view: View,
        digest: Digest,
        batch: Batch,
    },
    /// A stable checkpoint this replica holds no state for (yet): the low
    /// watermark moved to `cert.slot`, every record up to it may go.
    Stable { cert: CheckpointCert },
    /// The state at a stable checkpoint (its own, or one installed by state
    /// transfer) with its certificate; also moves the low watermark.
    Checkpoint {
        cert: CheckpointCert,
        snapshot: Vec<u8>,
    },
    /// It entered the synchronization phase towards `view` (before its
    /// STOP-DATA leaves): it never orders in an older view again.
    Changing { view: View },
    /// It installed `view` after a SYNC made of `stops` (kept so that a
    /// replica that missed the SYNC can fetch it from this one, even after
    /// a restart: see `on_fetch_sync`).
    Installed { view: View, stops: Vec<StopData> },
}

impl Record {
    /// The slot the record is about, if any.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Record::Proposal { slot, .. }
            | Record::Accept { slot, .. }
            | Record::Decided { slot, .. } => Some(*slot),
            Record::Stable { cert } | Record::Checkpoint { cert, .. } => Some(cert.slot),
            Record::Changing { .. } | Record::Installed { .. } => None,
        }
    }
}

/// A nested protocol that persists nothing lifts into a replica's records.
impl From<byzscale_core::NoRecord> for Record {
    fn from(n: byzscale_core::NoRecord) -> Self {
        match n {}
    }
}

/// What a replica durably said about one slot, by digest (the values are in
/// [`DurableSlot::values`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotVotes {
    /// The latest value it adopted, and the view (its WRITE in that view).
    pub proposal: Option<(View, Digest)>,
    /// Pre-prepared digests with the latest view of each, newest first.
    pub pre_prepared: Vec<(Digest, View)>,
    /// The highest view it ACCEPTed in, and the digest (prepared).
    pub prepared: Option<(View, Digest)>,
    /// The decision it executed.
    pub decided: Option<(View, Digest)>,
}

/// What survives of one slot: the votes, and each value they name once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableSlot {
    pub votes: SlotVotes,
    pub values: BTreeMap<Digest, Batch>,
}

impl DurableSlot {
    fn value(&self, d: &Digest) -> Option<Batch> {
        self.values.get(d).cloned()
    }

    /// Drop values no vote names any more; true if any went.
    fn prune(&mut self) -> bool {
        let v = &self.votes;
        let keep: Vec<Digest> = [v.proposal, v.prepared, v.decided]
            .into_iter()
            .flatten()
            .map(|(_, d)| d)
            .collect();
        let before = self.values.len();
        self.values.retain(|d, _| keep.contains(d));
        self.values.len() != before
    }

    fn restored(&self) -> Restored<Batch> {
        let v = &self.votes;
        let with = |(view, d): (View, Digest)| self.value(&d).map(|b| (view, d, b));
        Restored {
            proposal: v.proposal.and_then(with),
            pre_prepared: v.pre_prepared.clone(),
            prepared: v.prepared.and_then(with),
            decided: v.decided.and_then(with),
        }
    }
}

/// What [`Durable::apply`] changed, for a driver that stores the fold in
/// tables of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing (a stale or repeated record).
    None,
    /// The votes of `slot` changed; `values` if its values did too.
    Slot { slot: Slot, values: bool },
    /// The view or the synchronization target changed.
    View,
    /// The low watermark moved to the stable checkpoint and these slots went;
    /// `snapshot` if the checkpoint's state was replaced as well.
    Floor { dropped: Vec<Slot>, snapshot: bool },
}

/// Every record a replica emitted, folded into what a restart needs: the
/// view, the stable checkpoint, the latest state with its certificate and,
/// above the checkpoint, each slot's votes and decision. Drivers keep the
/// fold (applying records in emission order) or store its parts and rebuild
/// it on restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Durable {
    /// The last view installed.
    pub view: View,
    /// The view of the synchronization phase it had entered, if any (above `view`).
    pub changing: Option<View>,
    /// The STOP-DATA of the SYNC that installed `view` (none for view 0).
    pub sync: Vec<StopData>,
    /// The stable checkpoint: the low watermark, with its certificate.
    pub stable: Option<CheckpointCert>,
    /// The latest state it holds (at or below the stable checkpoint).
    pub checkpoint: Option<(CheckpointCert, Vec<u8>)>,
    pub slots: BTreeMap<Slot, DurableSlot>,
}

impl Durable {
    pub fn new() -> Self {
        Self::default()
    }

    /// The low watermark: slots up to it are covered by the stable checkpoint.
    pub fn low(&self) -> Slot {
        self.stable.as_ref().map(|c| c.slot).unwrap_or(0)
    }

    /// Fold one record in (records are applied in emission order).
    pub fn apply(&mut self, r: Record) -> Change {
        if matches!(
            r,
            Record::Proposal { .. } | Record::Accept { .. } | Record::Decided { .. }
        ) && r.slot().is_some_and(|s| s <= self.low())
        {
            return Change::None;
        }
        match r {
            Record::Proposal {
                view,
                slot,
                digest,
                batch,
            } => {
                let e = self.slots.entry(slot).or_default();
                let v = &mut e.votes;
                v.pre_prepared.retain(|(d, _)| *d != digest);
                v.pre_prepared.insert(0, (digest, view));
                v.pre_prepared.truncate(PRE_PREPARED_KEPT);
                v.proposal = Some((view, digest));
                let added = e.values.insert(digest, batch).is_none();
                let pruned = e.prune();
                Change::Slot {
                    slot,
                    values: added || pruned,
                }
            }
            Record::Accept { view, slot, digest } => {
                let e = self.slots.entry(slot).or_default();
                if !e.values.contains_key(&digest) {
                    // an ACCEPT always follows the adoption of its value
                    return Change::None;
                }
                e.votes.prepared = Some((view, digest));
                let pruned = e.prune();
                Change::Slot {
                    slot,
                    values: pruned,
                }
            }
            Record::Decided {
                slot,
                view,
                digest,
                batch,
            } => {
                let e = self.slots.entry(slot).or_default();
                e.votes.decided = Some((view, digest));
                let added = e.values.insert(digest, batch).is_none();
                Change::Slot {
                    slot,
                    values: added,
                }
            }
            Record::Stable { cert } => match self.raise_floor(cert) {
                Some(dropped) => Change::Floor {
                    dropped,
                    snapshot: false,
                },
                None => Change::None,
            },
            Record::Checkpoint { cert, snapshot } => {
                let newer = self
                    .checkpoint
                    .as_ref()
                    .is_none_or(|(c, _)| c.slot < cert.slot);
                if !newer {
                    return Change::None;
                }
                self.checkpoint = Some((cert.clone(), snapshot));
                let dropped = self.raise_floor(cert).unwrap_or_default();
                Change::Floor {
                    dropped,
                    snapshot: true,
                }
            }
            Record::Changing { view } => {
                if view > self.view && self.changing.is_none_or(|t| view > t) {
                    self.changing = Some(view);
                    Change::View
                } else {
                    Change::None
                }
            }
            Record::Installed { view, stops } => {
                if view > self.view {
                    self.view = view;
                    self.changing = None;
                    self.sync = stops;
                    Change::View
                } else {
                    Change::None
                }
            }
        }
    }

    /// Move the low watermark to `cert` if it is higher; the slots dropped.
    fn raise_floor(&mut self, cert: CheckpointCert) -> Option<Vec<Slot>> {
        if cert.slot <= self.low() {
            return None;
        }
        let above = self.slots.split_off(&(cert.slot + 1));
        let dropped = std::mem::replace(&mut self.slots, above)
            .into_keys()
            .collect();
        self.stable = Some(cert);
        Some(dropped)
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

impl<S: Service> Replica<S> {
    /// Restart from durable state ([`Durable`]): the latest state (snapshot)
    /// and the decided batches after it, executed again; the stable
    /// checkpoint with its certificate (fetched by state transfer if the
    /// state is older); every vote above it; and the view. The replica then
    /// catches up with the others by log and state transfer and, in a
    /// synchronization phase, asks again for the view it was moving to
    /// ([`Replica::on_start`](byzscale_core::Protocol::on_start)).
    pub fn recover(
        me: NodeId,
        g: GroupInfo,
        p: Params,
        service: S,
        durable: Durable,
        crypto: &Crypto,
    ) -> Result<Self, String> {
        Replica::new(me, g, p, service).restore_durable(durable, crypto)
    }

    /// [`Replica::recover`] for a replica started with
    /// [`Replica::joining`]: the same genesis group and proof.
    pub fn recover_joining(
        me: NodeId,
        (genesis, proof): (GroupInfo, &[crate::config::ConfigCert]),
        p: Params,
        service: S,
        durable: Durable,
        crypto: &Crypto,
    ) -> Result<Self, String> {
        let r =
            Replica::joining(me, genesis, proof, p, service, crypto).map_err(|e| e.to_string())?;
        r.restore_durable(durable, crypto)
    }

    /// The fold of what survived, applied to a replica just built.
    fn restore_durable(self, durable: Durable, crypto: &Crypto) -> Result<Self, String> {
        let mut r = self;
        r.recovered = true;
        let low = durable.low();
        let mut executed = 0;
        if let Some((cert, bytes)) = durable.checkpoint {
            r.restore_snapshot(&bytes)?;
            executed = cert.slot;
            if cert.slot == low {
                r.stable_snapshot = Some(bytes);
            }
        }
        // replay the decisions executed after the snapshot, in order; the
        // checkpoints they pass are announced again at start
        if executed >= low {
            for (slot, s) in &durable.slots {
                let Some(batch) = s.votes.decided.and_then(|(_, d)| s.value(&d)) else {
                    break;
                };
                if *slot != executed + 1 {
                    break;
                }
                r.execute_batch_quiet(*slot, &batch);
                executed = *slot;
                if slot.is_multiple_of(r.p.checkpoint_interval) {
                    r.expire_clients(*slot);
                    let snap = r.snapshot_bytes();
                    let d = state_digest(crypto, &snap, r.p.state_chunk_bytes);
                    r.ckpts.entry(*slot).or_default().mine = Some((d, snap));
                }
            }
        }
        if executed < low {
            r.fetching = durable.stable.clone().map(Transfer::new);
        }
        r.stable = durable.stable;
        r.order.resume(low, executed);
        // the newest configuration due; a replica that left stays out
        r.install_due(None);
        let view = durable.view.max(r.epochs.installed.first_view());
        r.order.restore_view(view, durable.changing);
        r.stop_sent = durable.changing.unwrap_or(0).max(view);
        if durable.view > 0 && !durable.sync.is_empty() {
            r.last_sync = Some((durable.view, durable.sync.clone()));
        }
        for (slot, s) in &durable.slots {
            r.order.restore_slot(*slot, s.restored());
        }
        Ok(r)
    }

    /// Whether this replica came back in a synchronization phase.
    pub(super) fn recovering_change(&self) -> Option<View> {
        match self.status() {
            Status::Changing(v) => Some(v),
            Status::Normal => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::fault::Fault;
    use byzscale_core::{Addr, Effect, NodeId, Protocol};

    /// A backup restarted after it wrote for batch A in (view 0, slot 1) does
    /// not write for a different batch B that an equivocating leader sends
    /// after the restart (issue item 1; the cluster-level test is in
    /// `tests/durability.rs`).
    #[test]
    fn a_restarted_backup_never_writes_for_a_second_value() {
        let a = Batch::new(vec![request(1, b"a")]);
        let b = Batch::new(vec![request(1, b"b")]);
        let leader = Addr::Node(NodeId(0));
        let mut r = R::new(NodeId(1), group(), Params::default(), Count::default());
        let fx = step(&mut r, 1, |r, cx| {
            r.on_message(leader, propose(a.clone()), cx)
        });
        assert_eq!(writes(&fx).len(), 1);
        let persist_at = fx.iter().position(|e| matches!(e, Effect::Persist(_)));
        let write_at = fx.iter().position(|e| {
            matches!(
                e,
                Effect::Multicast {
                    msg: Message::Write { .. },
                    ..
                }
            )
        });
        assert!(
            persist_at < write_at,
            "the proposal is durable before the WRITE"
        );

        let mut r = recover(1, Durable::from_records(records(&fx)));
        let fx = step(&mut r, 1, |r, cx| r.on_start(cx));
        assert!(
            writes(&fx).is_empty(),
            "retransmission waits for the fetch timer"
        );
        let fx = step(&mut r, 1, |r, cx| r.on_message(leader, propose(b), cx));
        assert!(writes(&fx).is_empty(), "wrote for a second value: {fx:?}");
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Fault(f) if f.is(Fault::Equivocation))));
    }

    /// A retransmission answered from the reply cache waits for every
    /// record before it (the slot's `Decided` may still be in a group
    /// commit) behind a barrier, and writes no record of its own: with
    /// everything durable it costs no fsync.
    #[test]
    fn a_cached_reply_waits_behind_a_barrier_and_writes_nothing() {
        let req = request(1, b"a");
        let mut r = R::new(NodeId(1), group(), Params::default(), Count::default());
        let fx = decide(&mut r, 1, 1, 0, Batch::new(vec![req.clone()]));
        let decided = fx
            .iter()
            .position(|e| matches!(e, Effect::Persist(Record::Decided { .. })));
        let first_reply = fx.iter().position(|e| {
            matches!(
                e,
                Effect::Send {
                    msg: Message::Reply(_),
                    ..
                }
            )
        });
        assert!(decided.is_some() && decided < first_reply, "{fx:?}");
        let fx = step(&mut r, 1, |r, cx| {
            r.on_message(Addr::Client(CLIENT), Message::Request(req), cx)
        });
        assert!(
            matches!(
                fx.as_slice(),
                [
                    Effect::Barrier,
                    Effect::Send {
                        msg: Message::Reply(_),
                        ..
                    }
                ]
            ),
            "{fx:?}"
        );
    }

    /// A recovered replica holds its checkpoint certificate and its claims,
    /// so its STOP-DATA is valid and claims what it prepared above the
    /// checkpoint (issue items 3 and 4 at the level of one replica).
    #[test]
    fn a_recovered_replica_claims_its_checkpoint_and_prepared_slots() {
        let p = Params::default();
        let slot = p.checkpoint_interval;
        let snapshot = empty_state();
        let cert = cert(slot, &snapshot);
        let batch = Batch::new(vec![request(1, b"x")]);
        let d = digest(&batch);
        let durable = Durable::from_records([
            Record::Checkpoint {
                cert: cert.clone(),
                snapshot,
            },
            Record::Proposal {
                view: 0,
                slot: slot + 1,
                digest: d,
                batch: batch.clone(),
            },
            Record::Accept {
                view: 0,
                slot: slot + 1,
                digest: d,
            },
        ]);
        let mut r = recover(2, durable);
        assert_eq!(r.executed(), slot);
        let stop = |from: u32| (Addr::Node(NodeId(from)), Message::Stop { view: 1 });
        let mut fx = Vec::new();
        for from in [0, 3, 1] {
            let (a, m) = stop(from);
            fx.extend(step(&mut r, 2, |r, cx| r.on_message(a, m, cx)));
        }
        let sd = fx
            .iter()
            .find_map(|e| match e {
                Effect::Send {
                    msg: Message::StopData(sd),
                    ..
                } => Some(sd.clone()),
                _ => None,
            })
            .expect("a STOP-DATA to the new leader");
        assert_eq!(sd.body.checkpoint, Some(cert));
        let claim = sd.body.claims.iter().find(|c| c.slot == slot + 1).unwrap();
        assert_eq!(claim.prepared, Some((0, d, batch)));
        assert_eq!(claim.pre_prepared, vec![(d, 0)]);
        assert!(records(&fx).contains(&Record::Changing { view: 1 }));
    }

    /// Recovered in the synchronization phase towards view 1, a replica
    /// keeps view 0 installed (it can still take view 1's SYNC), orders
    /// nothing in view 0, and asks again for view 1 at start.
    #[test]
    fn a_replica_recovered_mid_change_asks_again_and_orders_nothing_old() {
        let durable = Durable::from_records([Record::Changing { view: 1 }]);
        let mut r = recover(2, durable);
        assert_eq!((r.view(), r.status()), (0, Status::Changing(1)));
        let fx = step(&mut r, 2, |r, cx| r.on_start(cx));
        assert!(fx.iter().any(|e| matches!(
            e,
            Effect::Multicast {
                msg: Message::Stop { view: 1 },
                ..
            }
        )));
        assert!(fx.iter().any(|e| matches!(
            e,
            Effect::Send {
                to: Addr::Node(NodeId(1)),
                msg: Message::StopData(_),
            }
        )));
        let a = Batch::new(vec![request(1, b"a")]);
        let leader = Addr::Node(NodeId(0));
        let fx = step(&mut r, 2, |r, cx| r.on_message(leader, propose(a), cx));
        assert!(writes(&fx).is_empty(), "ordered in a view it left: {fx:?}");
    }

    #[test]
    fn records_fold_keep_claims_and_drop_below_the_stable_checkpoint() {
        let b = |op: &[u8]| Batch::new(vec![request(1, op)]);
        let mut d = Durable::new();
        // five views propose five values for slot 3: four pre-prepared stay
        for v in 0..5u8 {
            let batch = b(&[v]);
            d.apply(Record::Proposal {
                view: v as View,
                slot: 3,
                digest: digest(&batch),
                batch,
            });
        }
        let s3 = &d.slots[&3];
        assert_eq!(s3.votes.pre_prepared.len(), PRE_PREPARED_KEPT);
        assert_eq!(s3.votes.pre_prepared[0], (digest(&b(&[4])), 4));
        assert_eq!(
            s3.values.len(),
            1,
            "only the latest proposal's value is kept"
        );
        // an ACCEPT keeps its value even after a later proposal
        let x = b(b"x");
        let y = b(b"y");
        for (v, batch) in [(5, &x), (6, &y)] {
            d.apply(Record::Proposal {
                view: v,
                slot: 4,
                digest: digest(batch),
                batch: batch.clone(),
            });
            if v == 5 {
                d.apply(Record::Accept {
                    view: 5,
                    slot: 4,
                    digest: digest(&x),
                });
            }
        }
        let s4 = &d.slots[&4];
        assert_eq!(s4.votes.prepared, Some((5, digest(&x))));
        assert_eq!(s4.values.len(), 2);
        assert_eq!(s4.restored().prepared, Some((5, digest(&x), x.clone())));
        // views never go back; installing ends the change
        assert_eq!(d.apply(Record::Changing { view: 7 }), Change::View);
        assert_eq!(d.apply(Record::Changing { view: 6 }), Change::None);
        assert_eq!((d.view, d.changing), (0, Some(7)));
        d.apply(Record::Installed {
            view: 7,
            stops: vec![],
        });
        assert_eq!((d.view, d.changing), (7, None));
        assert_eq!(
            d.apply(Record::Installed {
                view: 2,
                stops: vec![]
            }),
            Change::None
        );
        // a stable checkpoint without state drops the slots up to it
        let snap = empty_state();
        let c3 = cert(3, &snap);
        assert_eq!(
            d.apply(Record::Stable { cert: c3.clone() }),
            Change::Floor {
                dropped: vec![3],
                snapshot: false
            }
        );
        assert_eq!(d.low(), 3);
        assert_eq!(d.checkpoint, None);
        assert_eq!(
            d.apply(Record::Accept {
                view: 7,
                slot: 2,
                digest: digest(&x)
            }),
            Change::None
        );
        // a state at the same slot (state transfer) is kept
        let change = d.apply(Record::Checkpoint {
            cert: c3.clone(),
            snapshot: snap.clone(),
        });
        assert_eq!(
            change,
            Change::Floor {
                dropped: vec![],
                snapshot: true
            }
        );
        assert_eq!(d.checkpoint, Some((c3, snap)));
        assert_eq!(d.slots.keys().copied().collect::<Vec<_>>(), vec![4]);
    }

    /// A replica that installed a view and restarted still serves that
    /// view's SYNC to a member that missed it. Before the SYNC was durable,
    /// `sim byzcast --byzantine mixed --crash-restart --seed-start 142`
    /// (one run) left a correct replica in the synchronization phase for
    /// good: the leader and the other correct backup had restarted since
    /// the view change, and nobody could answer its FETCH-SYNC.
    #[test]
    fn a_restarted_replica_serves_the_sync_of_its_view() {
        let mut rs: Vec<R> = (0..4)
            .map(|i| R::new(NodeId(i), group(), Params::default(), Count::default()))
            .collect();
        let mut leader_fx = Vec::new();
        let mut queue = std::collections::VecDeque::new();
        let mut sent =
            |from: u32, fx: Vec<Effect<R>>, queue: &mut std::collections::VecDeque<_>| {
                for e in fx {
                    match e {
                        Effect::Send { to, msg } => queue.push_back((from, to, msg)),
                        Effect::Multicast { to, msg } => {
                            queue.extend(to.into_iter().map(|a| (from, a, msg.clone())))
                        }
                        Effect::Persist(r) if from == 1 => leader_fx.push(r),
                        _ => {}
                    }
                }
            };
        // replicas 0 to 2 move to view 1 (led by replica 1); 3 hears nothing
        for i in 0..3u32 {
            let fx = step(&mut rs[i as usize], i, |r, cx| r.on_suspect(cx));
            sent(i, fx, &mut queue);
        }
        while let Some((from, to, msg)) = queue.pop_front() {
            let Addr::Node(NodeId(to)) = to else { continue };
            if to == 3 {
                continue;
            }
            let fx = step(&mut rs[to as usize], to, |r, cx| {
                r.on_message(Addr::Node(NodeId(from)), msg, cx)
            });
            sent(to, fx, &mut queue);
        }
        assert_eq!(rs[1].view(), 1, "replica 1 installed view 1");
        assert_eq!(rs[3].view(), 0);

        // the leader restarts from its records, then replica 3 asks it
        let mut leader = recover(1, Durable::from_records(leader_fx));
        let fx = step(&mut leader, 1, |r, cx| {
            r.on_message(Addr::Node(NodeId(3)), Message::FetchSync { view: 1 }, cx)
        });
        let sync = fx
            .into_iter()
            .find_map(|e| match e {
                Effect::Send {
                    msg: m @ Message::Sync { .. },
                    ..
                } => Some(m),
                _ => None,
            })
            .expect("the restarted leader serves the SYNC of view 1");
        step(&mut rs[3], 3, |r, cx| {
            r.on_message(Addr::Node(NodeId(1)), sync, cx)
        });
        assert_eq!(rs[3].view(), 1, "replica 3 installed view 1 from it");
    }
}
