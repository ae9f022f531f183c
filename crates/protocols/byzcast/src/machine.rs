//! The replicated ByzCast state of one group: the SMR [`Service`] every
//! replica of the group executes in decided order (Algorithm 1's
//! `x-deliver` handler).
//!
//! Executing an [`Envelope`]:
//! - `Multicast(m)` at the entry group (lca(m.dst), or the baseline's
//!   sequencer): handled at once, once per (client, number): numbers from one
//!   client must increase at a given entry group (the client's SMR requests
//!   are FIFO, so a correct client's do).
//! - `Forward { sender, k, m }` from replica `sender` of the parent group: a
//!   vote for (k, digest(m)) in the parent → this group stream. The group
//!   handles index `next` as soon as replicas of the parent holding a weak
//!   quorum of votes (f+1 of 3f+1) have had identical copies (next, digest)
//!   *ordered here*, then `next + 1`, and so on, strictly in order (digest §1.4:
//!   counting ordered copies only, so every correct replica decides at the same
//!   log position; handling indices in order, so f Byzantine parent replicas
//!   can neither inject a message nor reorder two). A sender's indices must
//!   increase; copies more than `max_ahead` indices ahead are dropped (memory
//!   bound against Byzantine senders).
//!
//! Handling `m` (once): for each child whose subtree reaches `m.dst`, assign
//! `m` the next index of that child's stream and emit a [`Event::Forward`];
//! if this group is a destination, run the KV operation restricted to the
//! keys it owns and a-deliver ([`Event::Deliver`]); then [`Event::Handled`]
//! tells the replica which child results to wait for.
//!
//! The events are side effects of execution, not replicated state: they sit in
//! an outbox the owning [`crate::ByzcastReplica`] drains after every SMR step
//! (through `Replica::service`, hence the `RefCell`). A replica that catches
//! up by state transfer skips the events of the slots it did not execute; the
//! other replicas cover them (forwards need f+1 of 3f+1, replies f+1).
//!
//! The snapshot holds the KV store, the per-client entry numbers, both stream
//! states and the delivery counter, so state transfer carries the whole
//! protocol state.

use crate::kv;
use crate::message::{Envelope, ExecReply, McastMsg, Results};
use crate::topology::Topology;
use byzscale_apps::kv::{KvOp, KvReply, KvStore, ERR_MALFORMED};
use byzscale_core::codec;
use byzscale_core::crypto::Digest;
use byzscale_core::quorum::Collector;
use byzscale_core::service::{BatchCtx, Service};
use byzscale_core::{ClientId, GroupId};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A forward a replica makes: `msg` as index `k` of the stream to `child`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    pub child: GroupId,
    pub k: u64,
    pub msg: McastMsg,
}

/// Side effects of executing envelopes, in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Forward(Forward),
    /// a-deliver(m) at this (target) group: the `index`-th delivery here,
    /// run at the group's batch time `time_ms` (its shard's clock, which
    /// expiry reads).
    Deliver {
        index: u64,
        msg: McastMsg,
        result: Vec<u8>,
        time_ms: u64,
    },
    /// `m` was handled here: wait for the results of `awaiting` (the children
    /// it was forwarded to), add `own` (this group's reply, if a destination)
    /// and answer the client (`entry`) or the parent group.
    Handled {
        msg: McastMsg,
        own: Option<Vec<u8>>,
        awaiting: Vec<GroupId>,
        entry: bool,
    },
    /// Replica `sender` of the parent sent a copy for index `k` that a correct
    /// parent would not have sent (another message than the one f+1 agreed
    /// on, or one not for this subtree): evidence, recorded as a fault.
    BadCopy {
        sender: byzscale_core::NodeId,
        k: u64,
        why: &'static str,
    },
    /// The state was replaced by a snapshot (state transfer) covering the
    /// first `delivered` a-deliveries; later events follow from it.
    Restored {
        delivered: u64,
    },
}

/// Votes for one stream index: the parent replicas' copies by digest.
type Votes = Collector<Digest, McastMsg>;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StreamIn {
    /// Next index to handle (from 1).
    next: u64,
    /// Highest index each parent replica (by position) sent.
    last_from: BTreeMap<usize, u64>,
    copies: BTreeMap<u64, Votes>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Highest message number handled as entry group, per client.
    last_entry: BTreeMap<ClientId, u64>,
    stream: StreamIn,
    /// Last index assigned per child stream.
    out: BTreeMap<GroupId, u64>,
    /// a-deliveries so far.
    delivered: u64,
    /// Messages handled so far (delivered or only relayed).
    handled: u64,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineStats {
    pub delivered: u64,
    pub handled: u64,
    pub stream_next: u64,
    pub pending_indices: usize,
}

/// The group service (see the module docs).
pub struct GroupMachine {
    me: GroupId,
    topo: Arc<Topology>,
    max_ahead: u64,
    kv: KvStore,
    st: State,
    outbox: RefCell<Vec<Event>>,
}

impl GroupMachine {
    /// Default bound on how far ahead of the next index a copy may be.
    pub const DEFAULT_MAX_AHEAD: u64 = 8192;

    pub fn new(me: GroupId, topo: Arc<Topology>) -> Self {
        GroupMachine {
            me,
            topo,
            max_ahead: Self::DEFAULT_MAX_AHEAD,
            kv: KvStore::new(),
            st: State {
                stream: StreamIn {
                    next: 1,
                    ..Default::default()
                },
                ..Default::default()
            },
            outbox: RefCell::new(Vec::new()),
        }
    }
    pub fn with_max_ahead(mut self, max_ahead: u64) -> Self {
        self.max_ahead = max_ahead.max(1);
        self
    }
    pub fn group(&self) -> GroupId {
        self.me
    }
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }
    /// a-deliveries so far (the index of the last one).
    pub fn delivered(&self) -> u64 {
        self.st.delivered
    }
    pub fn stats(&self) -> MachineStats {
        MachineStats {
            delivered: self.st.delivered,
            handled: self.st.handled,
            stream_next: self.st.stream.next,
            pending_indices: self.st.stream.copies.len(),
        }
    }
    /// Take the events produced since the last call.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.outbox.borrow_mut())
    }

    fn emit(&mut self, e: Event) {
        self.outbox.get_mut().push(e);
    }

    /// The destinations must be this group's business: sorted distinct targets.
    fn well_formed(&self, m: &McastMsg) -> bool {
        !m.dst.is_empty()
            && m.dst.windows(2).all(|w| w[0] < w[1])
            && m.dst.iter().all(|g| self.topo.tree().is_target(*g))
    }

    fn on_multicast(&mut self, m: McastMsg) -> ExecReply {
        if !self.well_formed(&m) {
            return ExecReply::Rejected("malformed destination".into());
        }
        if self.topo.entry(&m.dst) != Some(self.me) {
            return ExecReply::Rejected(format!(
                "{} is not the entry group of this destination",
                self.me
            ));
        }
        let last = self.st.last_entry.get(&m.id.client).copied().unwrap_or(0);
        if m.id.n <= last {
            return ExecReply::Duplicate;
        }
        self.st.last_entry.insert(m.id.client, m.id.n);
        let (own, awaiting) = self.handle(m.clone(), true);
        if awaiting.is_empty() {
            let mut r = Results::new();
            if let Some(own) = own {
                r.insert(self.me, own);
            }
            ExecReply::Done(r)
        } else {
            ExecReply::Accepted
        }
    }

    fn on_forward(&mut self, sender: byzscale_core::NodeId, k: u64, m: McastMsg) -> ExecReply {
        let topo = self.topo.clone();
        let Some(parent) = topo.tree().parent(self.me) else {
            return ExecReply::Rejected("the root has no parent".into());
        };
        let Some(pg) = topo.group(parent) else {
            return ExecReply::Rejected("unknown parent".into());
        };
        let Some(pos) = pg.index_of(sender) else {
            return ExecReply::Rejected("sender is not a replica of the parent".into());
        };
        // a copy a correct parent would never send counts for nothing, but
        // still uses up the sender's index k
        let valid = self.well_formed(&m)
            && m.dst
                .iter()
                .any(|d| self.topo.tree().reach(self.me).contains(d));
        let s = &mut self.st.stream;
        if k < s.next || k >= s.next.saturating_add(self.max_ahead) {
            return ExecReply::Ack;
        }
        if s.last_from.get(&pos).is_some_and(|last| k <= *last) {
            return ExecReply::Ack;
        }
        s.last_from.insert(pos, k);
        if !valid {
            self.emit(Event::BadCopy {
                sender,
                k,
                why: "copy not addressed to this subtree",
            });
            return ExecReply::Ack;
        }
        let d = m.digest();
        s.copies.entry(k).or_default().add(&pg.qs, pos, d, || m);
        // handle the stream strictly in order
        loop {
            let next = self.st.stream.next;
            let winner = (self.st.stream.copies.get(&next))
                .and_then(|votes| votes.weak(&pg.qs))
                .map(|(d, m)| (*d, m.clone()));
            let Some((d, m)) = winner else { break };
            let votes = self.st.stream.copies.remove(&next).unwrap_or_default();
            for p in votes.dissenters(&d) {
                let sender = pg.members[p];
                self.emit(Event::BadCopy {
                    sender,
                    k: next,
                    why: "copy differs from the one f+1 parent replicas sent",
                });
            }
            self.st.stream.next += 1;
            self.handle(m, false);
        }
        ExecReply::Ack
    }

    /// Forward down the tree and deliver here if a destination.
    fn handle(&mut self, m: McastMsg, entry: bool) -> (Option<Vec<u8>>, Vec<GroupId>) {
        self.st.handled += 1;
        let children = self.topo.tree().forward_children(self.me, &m.dst);
        for c in &children {
            let k = self.st.out.entry(*c).or_insert(0);
            *k += 1;
            let f = Forward {
                child: *c,
                k: *k,
                msg: m.clone(),
            };
            self.emit(Event::Forward(f));
        }
        let own = if m.dst.contains(&self.me) {
            let result = self.execute_payload(&m.payload);
            self.st.delivered += 1;
            let index = self.st.delivered;
            self.emit(Event::Deliver {
                index,
                msg: m.clone(),
                result: result.clone(),
                time_ms: self.kv.model().now(),
            });
            Some(result)
        } else {
            None
        };
        self.emit(Event::Handled {
            msg: m,
            own: own.clone(),
            awaiting: children.clone(),
            entry,
        });
        (own, children)
    }

    fn execute_payload(&mut self, payload: &[u8]) -> Vec<u8> {
        let targets = self.topo.tree().target_count();
        match KvOp::decode(payload) {
            Ok(op) => match kv::restrict(&op, self.me, targets) {
                Some(sub) => self.kv.apply(&sub).encode(),
                None => {
                    KvReply::Error(format!("ERR no key of this operation lives in {}", self.me))
                        .encode()
                }
            },
            Err(_) => KvReply::Error(ERR_MALFORMED.to_string()).encode(),
        }
    }
}

impl Service for GroupMachine {
    /// The group's batch time is its shard's clock (expiry): a cross-shard
    /// operation runs in each group at that group's batch time.
    fn begin_batch(&mut self, batch: BatchCtx) {
        self.kv.begin_batch(batch);
    }

    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        match Envelope::decode(op) {
            Ok(Envelope::Multicast(m)) => self.on_multicast(m),
            Ok(Envelope::Forward { sender, k, msg }) => self.on_forward(sender, k, msg),
            Err(_) => ExecReply::Rejected("undecodable envelope".into()),
        }
        .encode()
    }

    fn query(&self, _op: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn snapshot(&self) -> Vec<u8> {
        codec::to_bytes(&(self.kv.snapshot(), &self.st))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let (kv, st): (Vec<u8>, State) =
            codec::from_bytes(snapshot, usize::MAX).map_err(|e| e.to_string())?;
        let mut store = KvStore::new();
        store.restore(&kv)?;
        self.kv = store;
        self.st = st;
        let delivered = self.st.delivered;
        self.emit(Event::Restored { delivered });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MsgId;
    use crate::topology::Mode;
    use crate::tree::Tree;
    use byzscale_core::quorum::{FaultModel, QuorumSystem};
    use byzscale_core::NodeId;

    /// h1(g1 g2): g1 = 0, g2 = 1, h1 = 2; 4 replicas each.
    fn topo() -> Arc<Topology> {
        let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
        Arc::new(Topology::numbered(Tree::two_level(2), &qs, Mode::Byzcast).unwrap())
    }

    fn msg(n: u64, dst: &[u32]) -> McastMsg {
        McastMsg {
            id: MsgId {
                client: ClientId(1),
                n,
            },
            dst: dst.iter().map(|g| GroupId(*g)).collect(),
            payload: KvOp::Ping.encode(),
        }
    }
    fn fwd(m: &mut GroupMachine, sender: u32, k: u64, msg: &McastMsg) {
        let r = m.execute(
            &Envelope::Forward {
                sender: NodeId(sender),
                k,
                msg: msg.clone(),
            }
            .encode(),
        );
        assert_eq!(ExecReply::decode(&r).unwrap(), ExecReply::Ack);
    }
    fn delivered(m: &GroupMachine) -> Vec<u64> {
        m.take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Deliver { msg, .. } => Some(msg.id.n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn entry_handles_and_forwards() {
        let t = topo();
        let mut h1 = GroupMachine::new(GroupId(2), t.clone());
        let r = h1.execute(&Envelope::Multicast(msg(1, &[0, 1])).encode());
        assert_eq!(ExecReply::decode(&r).unwrap(), ExecReply::Accepted);
        let ev = h1.take_events();
        assert_eq!(ev.len(), 3);
        assert!(matches!(
            &ev[0],
            Event::Forward(Forward {
                child: GroupId(0),
                k: 1,
                ..
            })
        ));
        assert!(matches!(
            &ev[1],
            Event::Forward(Forward {
                child: GroupId(1),
                k: 1,
                ..
            })
        ));
        // a repeat and a non-entry multicast
        let r = h1.execute(&Envelope::Multicast(msg(1, &[0, 1])).encode());
        assert_eq!(ExecReply::decode(&r).unwrap(), ExecReply::Duplicate);
        let r = h1.execute(&Envelope::Multicast(msg(2, &[0])).encode());
        assert!(matches!(
            ExecReply::decode(&r).unwrap(),
            ExecReply::Rejected(_)
        ));
        // single-group message at its group: done at once
        let mut g1 = GroupMachine::new(GroupId(0), t);
        let r = g1.execute(&Envelope::Multicast(msg(3, &[0])).encode());
        match ExecReply::decode(&r).unwrap() {
            ExecReply::Done(res) => {
                assert_eq!(KvReply::decode(&res[&GroupId(0)]).unwrap(), KvReply::Pong)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(delivered(&g1), vec![3]);
        assert!(matches!(
            ExecReply::decode(&g1.execute(b"junk")).unwrap(),
            ExecReply::Rejected(_)
        ));
    }

    /// The §1.4 attack: a Byzantine parent replica (n8) sends m2, which the
    /// parent orders after m1, early and tagged with m1's index; the first
    /// correct copy must not complete f+1 for it.
    #[test]
    fn index_rule_resists_early_forwarding() {
        let mut g1 = GroupMachine::new(GroupId(0), topo());
        let (m1, m2) = (msg(1, &[0, 1]), msg(2, &[0, 1]));
        fwd(&mut g1, 8, 1, &m2); // Byzantine: wrong index
        fwd(&mut g1, 8, 2, &m1); // Byzantine: wrong index
        fwd(&mut g1, 9, 2, &m2); // correct replica 9, but index 2 waits for 1
        assert!(delivered(&g1).is_empty());
        fwd(&mut g1, 10, 1, &m1); // correct replica 10: index 1 has only one vote for m1
        assert!(delivered(&g1).is_empty());
        fwd(&mut g1, 9, 1, &m1); // stale for 9 (it already sent 2): ignored
        assert!(delivered(&g1).is_empty());
        fwd(&mut g1, 11, 1, &m1); // second correct vote for (1, m1)
        assert_eq!(delivered(&g1), vec![1]);
        fwd(&mut g1, 10, 2, &m2); // (2, m2) has 9 and 10
        assert_eq!(delivered(&g1), vec![2]);
        fwd(&mut g1, 11, 2, &m2); // late copies change nothing
        assert!(delivered(&g1).is_empty());
    }

    #[test]
    fn forged_and_foreign_copies_are_ignored() {
        let mut g1 = GroupMachine::new(GroupId(0), topo());
        let forged = msg(9, &[0]);
        fwd(&mut g1, 8, 1, &forged); // one Byzantine replica: f copies are not enough
                                     // a replica of another group, and a message not for g1's subtree
        let r = g1.execute(
            &Envelope::Forward {
                sender: NodeId(1),
                k: 1,
                msg: forged.clone(),
            }
            .encode(),
        );
        assert!(matches!(
            ExecReply::decode(&r).unwrap(),
            ExecReply::Rejected(_)
        ));
        fwd(&mut g1, 9, 1, &msg(10, &[1]));
        fwd(&mut g1, 10, 1, &msg(10, &[1]));
        let ev = g1.take_events();
        assert!(!ev.iter().any(|e| matches!(e, Event::Deliver { .. })));
        let accused: Vec<u32> = ev
            .iter()
            .filter_map(|e| match e {
                Event::BadCopy { sender, .. } => Some(sender.0),
                _ => None,
            })
            .collect();
        assert_eq!(accused, vec![9, 10]);
        // once f+1 agree on index 1, the forger is named
        let real = msg(11, &[0]);
        fwd(&mut g1, 11, 1, &real);
        let mut g2 = GroupMachine::new(GroupId(0), topo());
        fwd(&mut g2, 8, 1, &forged);
        fwd(&mut g2, 9, 1, &real);
        fwd(&mut g2, 10, 1, &real);
        let ev = g2.take_events();
        assert!(ev.iter().any(|e| matches!(
            e,
            Event::BadCopy {
                sender: NodeId(8),
                k: 1,
                ..
            }
        )));
        assert!(ev
            .iter()
            .any(|e| matches!(e, Event::Deliver { msg, .. } if msg.id.n == 11)));
        // far-future indices are dropped
        fwd(&mut g1, 11, GroupMachine::DEFAULT_MAX_AHEAD + 5, &forged);
        assert_eq!(g1.stats().pending_indices, 1);
    }

    #[test]
    fn snapshot_round_trip() {
        let t = topo();
        let mut a = GroupMachine::new(GroupId(0), t.clone());
        let set = McastMsg {
            payload: KvOp::Set(b"k".to_vec(), b"v".to_vec()).encode(),
            ..msg(1, &[0])
        };
        let set = McastMsg {
            payload: if kv::shard_of(b"k", 2) == GroupId(0) {
                set.payload
            } else {
                KvOp::Ping.encode()
            },
            ..set
        };
        a.execute(&Envelope::Multicast(set).encode());
        fwd(&mut a, 8, 1, &msg(2, &[0, 1]));
        let snap = a.snapshot();
        let mut b = GroupMachine::new(GroupId(0), t);
        b.restore(&snap).unwrap();
        assert_eq!(b.snapshot(), snap);
        assert_eq!(b.delivered(), 1);
        assert!(b.restore(b"garbage").is_err());
    }
}
