//! Byzantine clients of `sim byzcast` (`--byzantine-clients N`, issue 10):
//! the SMR scenario's [`Hostile`] clients (`byzscale_scenario_smr::clients`),
//! one per group, speaking [`byzcast::Message`]. Client `i` plays
//! [`ClientAttack::ALL`]`[i % 4]` against *every* group of the tree, the
//! root and inner groups included (they order global multicasts and are
//! their children's parents):
//!
//! | behaviour | at each group |
//! |---|---|
//! | `partial-mac` | multicasts whose MAC entry is valid at the group's first replica only |
//! | `huge` | a multicast of the largest envelope the group takes ([`byzcast::max_multicast_op`]: global at an inner group, so its forwards are as large as a child takes) and one a byte larger (refused by the request filter), each the first of a new session |
//! | `churn` | one multicast from each of [`CHURN_IDS`] client ids; their destinations are malformed in turn ([`Dst`]: empty, an unknown group, repeated, unsorted, another entry group, 8,192 groups) or valid |
//! | `flood` | multicasts ahead of their turn (pending at the replicas), sessions far ahead of any slot, session queries |
//!
//! Each operation is an [`Envelope::Multicast`] naming the client itself,
//! so it passes the replicas' request filter and reaches the group's SMR
//! tables ([`Ops`] for [`Envelopes`]); a message a group orders with a
//! valid destination is forwarded and a-delivered like any other.
//!
//! What the checkers make of them: a Byzantine client's messages must be
//! delivered consistently like anyone's (agreement and order per group,
//! acyclic order, a-delivered only at a destination and at most once by a
//! correct replica), but they are exempt from validity (they need not be
//! delivered, and their ids are the client's own) and from liveness. Their
//! payloads are not KV operations (each group answers them
//! "malformed" and changes no key), so the atomicity replay and the
//! linearizability check of the honest clients' history are unaffected.
//! The checkers key messages by id: a Byzantine client that reused an id
//! at two entry groups would make two messages of one id, which they would
//! take for one delivered twice; these give every message its own id.

use byzscale_byzcast::{
    self as byzcast, max_multicast_op, Envelope, McastMsg, Message, MsgId, Topology,
};
use byzscale_core::{Addr, ClientId, Cx, GroupId, NoRecord, NodeId, Protocol};
use byzscale_scenario_smr::clients::{Hostile, Ops};
use byzscale_smr::Params;
use std::sync::Arc;

pub use byzscale_scenario_smr::clients::{byzantine_clients, ClientAttack, BYZ_BASE, CHURN_IDS};

/// The destinations a churn id's multicast names, in turn ([`Dst::ALL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dst {
    /// Those the group is the entry group of.
    Valid,
    Empty,
    /// A group that does not exist.
    Unknown,
    /// A target twice.
    Repeated,
    /// Two targets in descending order.
    Unsorted,
    /// A target whose entry group is another group.
    OtherEntry,
    /// 8,192 groups (most unknown).
    Huge,
}

impl Dst {
    pub const ALL: [Dst; 7] = [
        Dst::Valid,
        Dst::Empty,
        Dst::Unknown,
        Dst::Repeated,
        Dst::Unsorted,
        Dst::OtherEntry,
        Dst::Huge,
    ];
}

/// A Byzantine client's operations at group `group`: multicasts that
/// `group` is the entry group of (or, for a churn id, malformed ones in
/// turn), numbered so that no two of the client's messages share an id.
pub struct Envelopes {
    topo: Arc<Topology>,
    group: GroupId,
    /// The group's position among all groups, and how many there are:
    /// message `n` at this group has the id `(n - 1) * groups + slot + 1`.
    slot: u64,
    groups: u64,
    /// `Some(k)`: churn id `k`, whose `n`-th message names `Dst::ALL[(k + n - 1) % 7]`.
    malformed: Option<usize>,
}

impl Envelopes {
    pub fn new(topo: Arc<Topology>, group: GroupId, malformed: Option<usize>) -> Self {
        let groups = topo.groups().len() as u64;
        let slot = topo
            .groups()
            .iter()
            .position(|g| g.id == group)
            .unwrap_or(0) as u64;
        Envelopes {
            topo,
            group,
            slot,
            groups,
            malformed,
        }
    }

    /// Destinations whose entry group is this group: itself if a target,
    /// else the targets it reaches.
    fn valid(&self) -> Vec<GroupId> {
        let tree = self.topo.tree();
        if tree.is_target(self.group) {
            return vec![self.group];
        }
        tree.reach(self.group)
            .iter()
            .copied()
            .filter(|g| tree.is_target(*g))
            .collect()
    }

    fn dst(&self, kind: Dst) -> Vec<GroupId> {
        let tree = self.topo.tree();
        let targets: Vec<GroupId> = tree.targets().collect();
        let (first, last) = (targets[0], targets[targets.len() - 1]);
        match kind {
            Dst::Valid => self.valid(),
            Dst::Empty => Vec::new(),
            Dst::Unknown => vec![GroupId(u32::MAX)],
            Dst::Repeated => vec![first, first],
            Dst::Unsorted if first != last => vec![last, first],
            Dst::Unsorted => vec![first, first],
            Dst::OtherEntry => {
                let other = targets.iter().find(|g| **g != self.group);
                vec![*other.unwrap_or(&first)]
            }
            Dst::Huge => (0..8192).map(GroupId).collect(),
        }
    }
}

impl Ops for Envelopes {
    fn op(&mut self, client: ClientId, n: u64, body: Vec<u8>) -> Vec<u8> {
        let dst = match self.malformed {
            Some(k) => self.dst(Dst::ALL[(k + n as usize - 1) % Dst::ALL.len()]),
            None => self.valid(),
        };
        let id = MsgId {
            client,
            n: (n - 1) * self.groups + self.slot + 1,
        };
        let fill = body.first().copied().unwrap_or(b'?');
        Envelope::Multicast(McastMsg::sized(id, dst, fill, body.len())).encode()
    }
    fn max_op(&self, p: &Params) -> usize {
        max_multicast_op(p.max_op_bytes)
    }
}

/// One Byzantine client endpoint of a ByzCast deployment: an SMR
/// [`Hostile`] per group, all under its one client id (as a correct
/// ByzCast client keeps one SMR client per entry group), their steps
/// nested and lifted into [`byzcast::Message`]s.
pub struct ByzHostile {
    topo: Arc<Topology>,
    at: Vec<Hostile<Envelopes>>,
}

impl ByzHostile {
    /// Client `id` playing `kind` (its `k`-th id, for churn) at every group.
    pub fn new(
        id: ClientId,
        topo: Arc<Topology>,
        p: &Params,
        kind: ClientAttack,
        k: usize,
    ) -> Self {
        let malformed = (kind == ClientAttack::Churn).then_some(k);
        let at = topo
            .groups()
            .iter()
            .map(|g| {
                let ops = Envelopes::new(topo.clone(), g.id, malformed);
                Hostile::with_ops(id, g.clone(), p.clone(), kind, k, ops)
            })
            .collect();
        ByzHostile { topo, at }
    }

    /// Requests and session queries it sent, to every group.
    pub fn sent(&self) -> u64 {
        self.at.iter().map(|h| h.sent()).sum()
    }

    /// A step of its client at group position `i`.
    fn step(
        &mut self,
        i: usize,
        cx: &mut Cx<'_, Self>,
        f: impl FnOnce(&mut Hostile<Envelopes>, &mut Cx<'_, Hostile<Envelopes>>),
    ) {
        let Some(h) = self.at.get_mut(i) else {
            return;
        };
        let ((), step) = cx.nested(|icx| f(h, icx));
        let _ = step.lift(cx, Message::Smr, |()| i);
    }

    fn position(&self, node: NodeId) -> Option<usize> {
        let g = self.topo.group_of(node)?;
        self.topo.groups().iter().position(|info| info.id == g)
    }
}

impl Protocol for ByzHostile {
    type Message = Message;
    type Input = byzcast::client::Input;
    type Output = byzcast::client::Output;
    /// The position of the group whose client's timer it is.
    type Timer = usize;
    type Record = NoRecord;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        for i in 0..self.at.len() {
            self.step(i, cx, |h, icx| h.on_start(icx));
        }
    }
    fn on_input(&mut self, _: byzcast::client::Input, _: &mut Cx<'_, Self>) {}
    fn on_message(&mut self, from: Addr, m: Message, cx: &mut Cx<'_, Self>) {
        let (Message::Smr(m), Some(i)) = (m, from.node().and_then(|n| self.position(n))) else {
            return;
        };
        self.step(i, cx, |h, icx| h.on_message(from, m, icx));
    }
    fn on_timer(&mut self, i: usize, cx: &mut Cx<'_, Self>) {
        self.step(i, cx, |h, icx| h.on_timer((), icx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_apps::kv::KvOp;
    use byzscale_byzcast::{Mode, Tree};
    use byzscale_core::quorum::{FaultModel, QuorumSystem};

    fn topo() -> Arc<Topology> {
        let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
        Arc::new(Topology::numbered(Tree::two_level(2), &qs, Mode::Byzcast).unwrap())
    }

    fn decode(op: &[u8]) -> McastMsg {
        match Envelope::decode(op).unwrap() {
            Envelope::Multicast(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// At every group the multicasts name the group as their entry group,
    /// ids never repeat across groups, the `huge` sizes are exact, and the
    /// payloads are no KV operation (the checkers rely on it).
    #[test]
    fn envelopes_enter_at_their_group_with_ids_of_their_own() {
        let topo = topo();
        let p = Params::default();
        let mut ids = std::collections::BTreeSet::new();
        for g in topo.groups() {
            let mut ops = Envelopes::new(topo.clone(), g.id, None);
            for n in 1..=3 {
                let m = decode(&ops.op(ClientId(BYZ_BASE), n, vec![b'f'; 2048]));
                assert_eq!(topo.entry(&m.dst), Some(g.id));
                assert!(ids.insert(m.id), "{:?} repeated", m.id);
                assert!(KvOp::decode(&m.payload).is_err());
            }
            for fill in [b'p', b'x', b'c', b'f'] {
                let m = decode(&ops.op(ClientId(BYZ_BASE), 9, vec![fill; 16]));
                assert!(KvOp::decode(&m.payload).is_err(), "{}", fill as char);
            }
            let max = ops.max_op(&p);
            assert_eq!(ops.op(ClientId(BYZ_BASE), 4, vec![b'x'; max]).len(), max);
            assert_eq!(
                ops.op(ClientId(BYZ_BASE), 5, vec![b'x'; max + 1]).len(),
                max + 1
            );
        }
    }

    /// A churn id's destinations go through every malformed kind, and only
    /// the valid one has this group as its entry.
    #[test]
    fn churn_ids_name_every_malformed_destination() {
        let topo = topo();
        let root = topo.tree().root();
        let entries: Vec<bool> = (0..Dst::ALL.len())
            .map(|k| {
                let mut ops = Envelopes::new(topo.clone(), root, Some(k));
                let m = decode(&ops.op(ClientId(BYZ_BASE), 1, b"churn".to_vec()));
                topo.normalize_dst(&m.dst).ok() == Some(m.dst.clone())
                    && topo.entry(&m.dst) == Some(root)
            })
            .collect();
        assert_eq!(entries, [true, false, false, false, false, false, false]);
    }
}
