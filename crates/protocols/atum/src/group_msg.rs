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
//! per source vgroup, ids within a window above the lowest not yet accepted;
//! faults name the member (not a member of the claimed vgroup, two different
//! digests for one id, a body that is not what its digest says, an id out of
//! the window).

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

/// One member's copy of group message `seq` of vgroup `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMsg<M> {
    pub from: VgroupId,
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
        /// An id below what was accepted or beyond the window.
        OutOfWindow => "atum-out-of-window",
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
pub fn send_order(members: &[NodeId], rng: &mut impl Rng) -> Vec<NodeId> {
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

/// Votes for one (source, id): each member's digest, and the body of the
/// first whole copy per digest, counted over the source's members (one vote
/// each; the quorum system is built once per id, not per copy).
struct Pending<M> {
    qs: QuorumSystem,
    votes: Collector<Digest, ()>,
    bodies: BTreeMap<Digest, M>,
}

/// The receiving side at one node of the destination vgroup.
pub struct Inbox<M> {
    window: u64,
    /// Per source: the lowest id not yet accepted, and the accepted ids above it.
    accepted: BTreeMap<VgroupId, (u64, BTreeSet<u64>)>,
    pending: BTreeMap<(VgroupId, u64), Pending<M>>,
}

impl<M: Clone + Serialize> Inbox<M> {
    /// Accepts ids within `window` of the lowest unaccepted id per source.
    pub fn new(window: u64) -> Self {
        Inbox {
            window: window.max(1),
            accepted: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Copies held, over all sources (bounded by sources × window).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// A copy from `sender`, which claims membership of `msg.from`, whose
    /// members (sorted) are `members`. Returns the message when this copy
    /// completes a majority holding its body (once per id), or the fault.
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
        let (floor, done) = self.accepted.entry(msg.from).or_default();
        if msg.seq < *floor || done.contains(&msg.seq) {
            return Ok(None); // late copy of an accepted message
        }
        if msg.seq >= *floor + self.window {
            return Err(GroupFault::OutOfWindow);
        }
        let (d, body) = match msg.carry {
            Carry::Full(m) => (digest(&byzscale_core::codec::to_bytes(&m)), Some(m)),
            Carry::Digest(d) => (d, None),
        };
        let g = members.len();
        let p = self
            .pending
            .entry((msg.from, msg.seq))
            .or_insert_with(|| Pending {
                qs: QuorumSystem::classic(g, (g - 1) / 3, FaultModel::Bft)
                    .expect("a vgroup of at least one member"),
                votes: Collector::new(),
                bodies: BTreeMap::new(),
            });
        if p.votes.has_voted(i) {
            let same = p.votes.voters(&d).contains(&i);
            return if same {
                Ok(None)
            } else {
                Err(GroupFault::Equivocation)
            };
        }
        p.votes.add(&p.qs, i, d, || ());
        if let Some(m) = body {
            p.bodies.entry(d).or_insert(m);
        }
        let Some((winner, _)) = p.votes.winner(&p.qs, majority(g) as u64) else {
            return Ok(None);
        };
        let Some(m) = p.bodies.get(winner).cloned() else {
            return Ok(None); // a majority vouched; the body is on its way
        };
        self.pending.remove(&(msg.from, msg.seq));
        done.insert(msg.seq);
        while done.remove(floor) {
            *floor += 1;
        }
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests;
