//! Group messages between vgroups (thesis §5.3.1, "Group messages"; digest
//! §3.2): a message from vgroup A to vgroup B is sent by every member of A to
//! every member of B, and a node of B accepts it once it holds it from a
//! majority of A (so at least one correct member of A vouched for it, since
//! fewer than half of A are faulty).
//!
//! The digest optimization: only a majority of A (chosen by the message's
//! id, so every member of A agrees who) sends the whole message; the others
//! send its digest, which counts as the same vote. Among a majority at least
//! one member is correct, so the body always arrives. Each sender sends to
//! B's members in a random order ([`send_order`]) so that no member of B is
//! always served last.
//!
//! [`Inbox`] is the receiving side at one node of B, sans-IO and bounded:
//! per stream, ids within a window above the lowest not yet accepted, and a
//! byte budget per sending member for what is held before acceptance; faults
//! name the member (not a member of the claimed vgroup, two different
//! digests for one id, an id out of the window, over its budget, a body over
//! the size bound).

use std::collections::{BTreeMap, BTreeSet};

use byzscale_core::crypto::{digest, Digest};
use byzscale_core::quorum::{Collector, FaultModel, QuorumSystem};
use byzscale_core::NodeId;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A vgroup's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VgroupId(pub u64);

/// What one member of the source vgroup carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Carry<M> {
    Full(M),
    Digest(Digest),
}

/// One member's copy of group message `seq` of `stream`, sent by vgroup
/// `from` (`stream == from` for a vgroup's own messages; the origin of a
/// gossiped broadcast otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMsg<M> {
    pub from: VgroupId,
    pub stream: VgroupId,
    pub seq: u64,
    pub carry: Carry<M>,
}

byzscale_core::fault_kinds! {
    /// Faults of group-message reception.
    pub enum GroupFault {
        /// A copy from a node that is not a member of the vgroup it claims.
        NotAMember => "atum-not-a-member",
        /// A member sent two different messages (or digests) for one id.
        Equivocation => "atum-equivocation",
        /// An id beyond the window of its stream.
        OutOfWindow => "atum-out-of-window",
        /// A member would hold more than its byte budget of unaccepted copies.
        OverBudget => "atum-over-budget",
        /// A body larger than the bound on message bodies.
        Oversized => "atum-oversized",
        /// A group message from a vgroup that is not a neighbour.
        NotANeighbour => "atum-not-a-neighbour",
        /// A broadcast claiming an origin vgroup that does not exist.
        UnknownStream => "atum-unknown-stream",
    }
}

/// Whether `member` (index `i` of a vgroup of `g` sorted members) sends
/// message `seq` whole: the ⌊g/2⌋+1 members that follow position
/// `seq mod g` (a rotating majority), the rest send its digest.
pub fn sends_full(i: usize, g: usize, seq: u64) -> bool {
    let start = (seq % g as u64) as usize;
    (i + g - start) % g < majority(g)
}

/// ⌊g/2⌋+1.
pub fn majority(g: usize) -> usize {
    g / 2 + 1
}

/// The order in which a sender serves the members of the destination.
pub fn send_order(members: &[NodeId], rng: &mut (impl Rng + ?Sized)) -> Vec<NodeId> {
    let mut v = members.to_vec();
    v.shuffle(rng);
    v
}

/// The copy member `i` of a vgroup of `g` sends of message `m`.
pub fn carry<M: Serialize>(i: usize, g: usize, seq: u64, m: M) -> Carry<M> {
    if sends_full(i, g, seq) {
        Carry::Full(m)
    } else {
        Carry::Digest(digest(&byzscale_core::codec::to_bytes(&m)))
    }
}

/// Bytes charged for holding one pending id (its quorum system and votes),
/// besides the bodies.
pub const ENTRY_BYTES: usize = 256;

/// Votes for one (stream, id) from one source vgroup: each member's digest,
/// and the body of the first whole copy per digest, counted over the
/// source's members (one vote each; the quorum system is built once per id,
/// not per copy). `charged` is what each member is charged for it.
struct Pending<M> {
    qs: QuorumSystem,
    votes: Collector<Digest, ()>,
    bodies: BTreeMap<Digest, M>,
    charged: Vec<(NodeId, usize)>,
}

/// The receiving side at one node of the destination vgroup.
///
/// Ids are grouped in *streams*: a vgroup's own messages to a neighbour are
/// the stream of that vgroup (`stream == from`); a gossiped broadcast is the
/// stream of the vgroup where it started, whichever neighbour relays it, so
/// one id is accepted once over all relays. The caller bounds the streams
/// (only vgroups of the overlay).
///
/// Byte bounds: what is held for ids not yet accepted is charged to the
/// member that made the inbox hold it (the entry to the first voter, a body
/// to its sender) and refunded when the id is accepted; a member over
/// `budget` bytes gets [`GroupFault::OverBudget`] and nothing more is held
/// for it. Correct members' copies are accepted as soon as a majority
/// arrives, so only what faulty members send stays charged. Accepted ids
/// cost a floor per stream and the accepted ids within the window above it.
pub struct Inbox<M> {
    window: u64,
    budget: usize,
    max_body: usize,
    /// Per stream: the lowest id not yet accepted, and the accepted ids above it.
    accepted: BTreeMap<VgroupId, (u64, BTreeSet<u64>)>,
    pending: BTreeMap<(VgroupId, u64, VgroupId), Pending<M>>,
    charged: BTreeMap<NodeId, usize>,
}

impl<M: Clone + Serialize> Inbox<M> {
    /// Accepts ids within `window` of the lowest unaccepted id per stream,
    /// with the default member budget (1 MiB) and body bound (64 KiB).
    pub fn new(window: u64) -> Self {
        Self::bounded(window, 1 << 20, 64 << 10)
    }

    /// Accepts ids within `window` of the lowest unaccepted id per stream;
    /// holds at most `budget` bytes per member and bodies of at most
    /// `max_body` encoded bytes.
    pub fn bounded(window: u64, budget: usize, max_body: usize) -> Self {
        Inbox {
            window: window.max(1),
            budget,
            max_body,
            accepted: BTreeMap::new(),
            pending: BTreeMap::new(),
            charged: BTreeMap::new(),
        }
    }

    /// Ids held, over all streams and sources.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes charged to members, in all (at most members × budget).
    pub fn held_bytes(&self) -> usize {
        self.charged.values().sum()
    }

    /// Whether id `seq` of `stream` was accepted.
    pub fn is_accepted(&self, stream: VgroupId, seq: u64) -> bool {
        self.accepted
            .get(&stream)
            .is_some_and(|(floor, done)| seq < *floor || done.contains(&seq))
    }

    /// Records id `seq` of `stream` as accepted without copies (the node's
    /// own vgroup ordered it). False if it already was, or is out of the
    /// window.
    pub fn accept_own(&mut self, stream: VgroupId, seq: u64) -> bool {
        let floor = self.accepted.get(&stream).map_or(0, |(f, _)| *f);
        if self.is_accepted(stream, seq) || seq >= floor + self.window {
            return false;
        }
        self.accept(stream, seq);
        true
    }

    fn accept(&mut self, stream: VgroupId, seq: u64) {
        let held: Vec<_> = self
            .pending
            .range((stream, seq, VgroupId(0))..=(stream, seq, VgroupId(u64::MAX)))
            .map(|(k, _)| *k)
            .collect();
        for k in held {
            if let Some(p) = self.pending.remove(&k) {
                for (m, b) in p.charged {
                    if let Some(c) = self.charged.get_mut(&m) {
                        *c -= b.min(*c);
                        if *c == 0 {
                            self.charged.remove(&m);
                        }
                    }
                }
            }
        }
        let (floor, done) = self.accepted.entry(stream).or_default();
        done.insert(seq);
        while done.remove(floor) {
            *floor += 1;
        }
    }

    /// Charges `bytes` to `member`, unless that takes it over its budget.
    fn charge(&mut self, member: NodeId, bytes: usize) -> Result<(), GroupFault> {
        let c = self.charged.entry(member).or_default();
        if *c + bytes > self.budget {
            if *c == 0 {
                self.charged.remove(&member);
            }
            return Err(GroupFault::OverBudget);
        }
        *c += bytes;
        Ok(())
    }

    /// A copy from `sender`, which claims membership of `msg.from`, whose
    /// members (sorted) are `members`. Returns the message when this copy
    /// completes a majority holding its body (once per id and stream, over
    /// all sources), or the fault.
    pub fn receive(
        &mut self,
        sender: NodeId,
        members: &[NodeId],
        msg: GroupMsg<M>,
    ) -> Result<Option<M>, GroupFault> {
        let i = members
            .iter()
            .position(|m| *m == sender)
            .ok_or(GroupFault::NotAMember)?;
        let (stream, seq) = (msg.stream, msg.seq);
        if self.is_accepted(stream, seq) {
            return Ok(None); // late copy of an accepted message
        }
        let floor = self.accepted.get(&stream).map_or(0, |(f, _)| *f);
        if seq >= floor + self.window {
            return Err(GroupFault::OutOfWindow);
        }
        let (d, body) = match msg.carry {
            Carry::Full(m) => {
                let bytes = byzscale_core::codec::to_bytes(&m);
                if bytes.len() > self.max_body {
                    return Err(GroupFault::Oversized);
                }
                (digest(&bytes), Some((m, bytes.len())))
            }
            Carry::Digest(d) => (d, None),
        };
        let key = (stream, seq, msg.from);
        let g = members.len();
        if !self.pending.contains_key(&key) {
            self.charge(sender, ENTRY_BYTES)?;
            let qs = QuorumSystem::classic(g, (g - 1) / 3, FaultModel::Bft)
                .expect("a vgroup of at least one member");
            let p = Pending {
                qs,
                votes: Collector::new(),
                bodies: BTreeMap::new(),
                charged: vec![(sender, ENTRY_BYTES)],
            };
            self.pending.insert(key, p);
        }
        let p = &self.pending[&key];
        if p.votes.has_voted(i) {
            let same = p.votes.voters(&d).contains(&i);
            return if same {
                Ok(None)
            } else {
                Err(GroupFault::Equivocation)
            };
        }
        let keep = body.filter(|_| !p.bodies.contains_key(&d));
        if let Some((_, len)) = &keep {
            self.charge(sender, *len)?;
        }
        let p = self.pending.get_mut(&key).expect("held above");
        p.votes.add(&p.qs, i, d, || ());
        if let Some((m, len)) = keep {
            p.bodies.insert(d, m);
            p.charged.push((sender, len));
        }
        let Some((winner, _)) = p.votes.winner(&p.qs, majority(g) as u64) else {
            return Ok(None);
        };
        let Some(m) = p.bodies.get(winner).cloned() else {
            return Ok(None); // a majority vouched; the body is on its way
        };
        self.accept(stream, seq);
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests;
