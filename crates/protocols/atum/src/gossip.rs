//! Atum's broadcast, phase 2: gossip between vgroups over the H-graph, and
//! heartbeat suspicion inside a vgroup.
//!
//! Paper map (thesis §5.3.2 "Gossip", §5.3.3 `broadcast`, `deliver`,
//! `forward`, §5.5.1 "Removing unresponsive nodes"; digest §3.4–3.5):
//!
//! | paper | here |
//! |---|---|
//! | phase 1: SMR-based Byzantine broadcast inside the caller's vgroup | [`Input::Ordered`]: what that SMR decided (see "Not yet wired") |
//! | phase 2: when a vgroup first receives m it calls `deliver(m)`, then `forward(m, neighbour)` for each neighbour | [`Node`]: [`Output::Deliver`] once per [`BroadcastId`], then one group message per vgroup [`Forward::targets`] names |
//! | "each vgroup gossips at least with neighbouring vgroups on a specific cycle" (deterministic delivery) | cycle 0, both directions, is in every [`Forward`] |
//! | `forward` variants: all cycles (latency, ASub), a single cycle (throughput), Double (AStream), random neighbours (the default) | [`Forward::Cycles`], [`Forward::Random`] |
//! | group messages between neighbouring vgroups (majority acceptance, digests, random send order) | [`crate::group_msg`], a broadcast's id being the stream of its origin vgroup |
//! | heartbeats to vgroup peers; a node silent for a predefined time is evicted by agreement, like a `leave` | [`Heartbeats`]: [`Output::Suspect`], an eviction *proposal*; [`Evictions`], the rule the SMR is to apply (f+1 suspicions) |
//!
//! Messages: [`Msg::Group`] (one member's copy of a group message),
//! [`Msg::Heartbeat`].
//!
//! **Not yet wired: the vgroup's SMR.** A vgroup is modelled as its member
//! list ([`Overlay`]) and each correct member acts on its own: phase 1 is
//! the [`Input::Ordered`] every member of the origin vgroup gets from its
//! SMR (tests hand it to each member, which is what the SMR's decision does),
//! and every member computes the same forward targets from the same
//! [`Overlay`]. When the SMR-backed vgroup (with reconfiguration) lands,
//! its decisions feed [`Input::Ordered`], its membership replaces the static
//! [`Overlay`], and [`Output::Suspect`] becomes an operation it orders.
//!
//! Deviations, each because the thesis is silent or the SMR is not wired:
//! - All members of a vgroup must forward to the same neighbours, or no
//!   majority forms at the destination. [`Forward::Random`] draws from a
//!   coin every member computes alike: a hash of (vgroup, broadcast id). The
//!   SMR's agreed randomness replaces it once wired; until then an origin
//!   that grinds its payload could bias the extra links (never cycle 0,
//!   which alone delivers to every vgroup).
//! - Targets depend on the vgroup and the id only, not on which neighbour
//!   the message came from (members may first hear it from different
//!   neighbours), so a vgroup may send a message back to a vgroup that has
//!   it; the receivers drop it as a late copy.
//! - Per origin vgroup, ids more than `window` ahead of the lowest one not
//!   yet delivered are refused (the byte bound of deduplication): the
//!   origin's SMR must not run more than `window` broadcasts ahead of the
//!   slowest vgroup. Flow control with the SMR is to do.
//! - The thesis does not say how many missed heartbeats make a node silent
//!   ([`HeartbeatConfig::misses`] does) nor how many members must agree to
//!   evict ([`Evictions`]: f+1, so Byzantine members alone cannot).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use byzscale_core::crypto::digest;
use byzscale_core::protocol::{Cx, NoRecord, Protocol, Time};
use byzscale_core::{Addr, NodeId};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::group_msg::{self, GroupFault, GroupMsg, Inbox, VgroupId};
use crate::{AtumError, HGraph};

/// A broadcast's name: the vgroup whose SMR ordered it, and its position
/// there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BroadcastId {
    pub origin: VgroupId,
    pub seq: u64,
}

/// The vgroups, their members and the H-graph over them, as every member
/// sees them (static until the SMR-backed vgroups land).
#[derive(Clone, Debug)]
pub struct Overlay {
    graph: HGraph,
    members: BTreeMap<VgroupId, Vec<NodeId>>,
    vgroup_of: BTreeMap<NodeId, VgroupId>,
}

impl Overlay {
    /// `members` names, for each vgroup of `graph`, its members (sorted
    /// here); every node in one vgroup only.
    pub fn new(
        graph: HGraph,
        members: BTreeMap<VgroupId, Vec<NodeId>>,
    ) -> Result<Overlay, AtumError> {
        let ids: Vec<VgroupId> = graph.ids().collect();
        if let Some(v) = members.keys().find(|v| !ids.contains(v)) {
            return Err(AtumError::NoSuchVgroup(v.0));
        }
        let mut vgroup_of = BTreeMap::new();
        let mut sorted = BTreeMap::new();
        for v in ids {
            let mut m = members.get(&v).cloned().unwrap_or_default();
            if m.is_empty() {
                return Err(AtumError::EmptyVgroup(v.0));
            }
            m.sort();
            for n in &m {
                if vgroup_of.insert(*n, v).is_some() {
                    return Err(AtumError::NodeInTwoVgroups(n.0));
                }
            }
            sorted.insert(v, m);
        }
        Ok(Overlay {
            graph,
            members: sorted,
            vgroup_of,
        })
    }

    pub fn graph(&self) -> &HGraph {
        &self.graph
    }

    /// The members of `v` (sorted; empty if no such vgroup).
    pub fn members(&self, v: VgroupId) -> &[NodeId] {
        self.members.get(&v).map_or(&[], |m| m.as_slice())
    }

    /// The vgroup of `node`.
    pub fn vgroup_of(&self, node: NodeId) -> Option<VgroupId> {
        self.vgroup_of.get(&node).copied()
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.vgroup_of.keys().copied()
    }
}

/// The `forward` callback: which neighbours a vgroup sends a broadcast to.
/// Every variant includes both neighbours on cycle 0 (the thesis' "specific
/// cycle", which alone reaches every vgroup).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Forward {
    /// Both neighbours on each of the first `n` cycles (at least 1, at most
    /// `hc`): 1 is the thesis' *Single* (throughput), 2 *Double*, `hc`
    /// flooding (latency, ASub's choice).
    Cycles(usize),
    /// Both neighbours on cycle 0 and `extra` of the other incident links,
    /// drawn by the vgroup's coin for this message (Atum's default, random
    /// neighbours).
    Random { extra: usize },
}

impl Forward {
    /// Refuses a forward that never forwards (the thesis' warning).
    pub fn validate(&self) -> Result<(), AtumError> {
        match self {
            Forward::Cycles(0) => Err(AtumError::OutOfRange {
                what: "the cycles to forward on",
                range: "at least 1",
                got: "0".into(),
            }),
            _ => Ok(()),
        }
    }

    /// The vgroups `me` forwards broadcast `id` to: distinct, without `me`.
    pub fn targets(
        &self,
        graph: &HGraph,
        me: VgroupId,
        id: BroadcastId,
    ) -> Result<BTreeSet<VgroupId>, AtumError> {
        // [succ 0, pred 0, succ 1, pred 1, ...]
        let links = graph.neighbours(me)?;
        let chosen: Vec<VgroupId> = match *self {
            Forward::Cycles(n) => links
                .iter()
                .take(n.max(1).saturating_mul(2))
                .copied()
                .collect(),
            Forward::Random { extra } => {
                let coin = digest(&byzscale_core::codec::to_bytes(&(me, id)));
                let mut rest = links[2..].to_vec();
                rest.shuffle(&mut ChaCha8Rng::from_seed(coin));
                rest.truncate(extra);
                links[..2].iter().chain(&rest).copied().collect()
            }
        };
        Ok(chosen.into_iter().filter(|v| *v != me).collect())
    }

    /// Gossip hops from `origin` until every vgroup has broadcast `id`
    /// (breadth first over the targets: the rounds of phase 2 when a group
    /// message takes one round).
    pub fn hops(
        &self,
        graph: &HGraph,
        origin: VgroupId,
        id: BroadcastId,
    ) -> Result<usize, AtumError> {
        let mut depth = BTreeMap::from([(origin, 0usize)]);
        let mut queue = VecDeque::from([origin]);
        while let Some(v) = queue.pop_front() {
            let d = depth[&v];
            for t in self.targets(graph, v, id)? {
                if let std::collections::btree_map::Entry::Vacant(e) = depth.entry(t) {
                    e.insert(d + 1);
                    queue.push_back(t);
                }
            }
        }
        Ok(depth.values().copied().max().unwrap_or(0))
    }
}

/// Inter-node messages of one broadcast when every member sends: each
/// vgroup A sends its group message to each target B, one copy per member
/// of A per member of B, so Σ_A |A| · Σ_{B ∈ targets(A)} |B| (`N·d·g` with
/// `d` targets per vgroup and vgroups of `g`; per node `d·g`, sent and
/// received, with `g = k·log N` the thesis' polylogarithmic cost).
/// `senders(A)` is how many members of A send (all of A without faults).
pub fn messages_per_broadcast(
    overlay: &Overlay,
    forward: Forward,
    id: BroadcastId,
    senders: impl Fn(VgroupId) -> usize,
) -> Result<u64, AtumError> {
    let mut total = 0u64;
    for a in overlay.graph().ids() {
        let per_sender: usize = forward
            .targets(overlay.graph(), a, id)?
            .iter()
            .map(|b| overlay.members(*b).len())
            .sum();
        total += (senders(a) * per_sender) as u64;
    }
    Ok(total)
}

/// Heartbeats to the vgroup's peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatConfig {
    /// Between two heartbeats (the thesis: coarse, e.g. one a minute).
    pub period: Time,
    /// A peer unheard for `misses` periods is suspected.
    pub misses: u32,
}

/// What a node is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub forward: Forward,
    /// Ids accepted per origin above the lowest not yet delivered.
    pub window: u64,
    /// Bytes of unaccepted copies held per sending member.
    pub budget: usize,
    /// The largest payload (encoded bytes).
    pub max_payload: usize,
    pub heartbeat: Option<HeartbeatConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            forward: Forward::Cycles(usize::MAX),
            window: 1024,
            budget: 1 << 20,
            max_payload: 64 << 10,
            heartbeat: None,
        }
    }
}

/// Wire messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// One member's copy of a broadcast relayed by its vgroup.
    Group(GroupMsg<Vec<u8>>),
    Heartbeat,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The SMR of this node's vgroup ordered broadcast `seq` (phase 1).
    Ordered { seq: u64, payload: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `deliver(m)`, once per broadcast.
    Deliver { id: BroadcastId, payload: Vec<u8> },
    /// Proposal to evict a vgroup peer unheard for `misses` periods (for the
    /// vgroup's SMR to agree on; not applied here).
    Suspect { node: NodeId },
    /// A suspected peer was heard again: the proposal is withdrawn.
    Heard { node: NodeId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Heartbeat,
}

/// Heartbeat bookkeeping for the vgroup's peers (bounded by the vgroup).
#[derive(Clone, Debug)]
pub struct Heartbeats {
    cfg: HeartbeatConfig,
    last: BTreeMap<NodeId, Time>,
    suspected: BTreeSet<NodeId>,
}

impl Heartbeats {
    fn new(cfg: HeartbeatConfig, peers: impl Iterator<Item = NodeId>, now: Time) -> Self {
        Heartbeats {
            cfg,
            last: peers.map(|p| (p, now)).collect(),
            suspected: BTreeSet::new(),
        }
    }

    /// A heartbeat from `peer`; whether it withdraws a suspicion.
    fn heard(&mut self, peer: NodeId, now: Time) -> Result<bool, GroupFault> {
        let t = self.last.get_mut(&peer).ok_or(GroupFault::NotAMember)?;
        *t = now;
        Ok(self.suspected.remove(&peer))
    }

    /// The peers silent for `misses` periods and not yet suspected.
    fn newly_silent(&mut self, now: Time) -> Vec<NodeId> {
        let limit = self.cfg.period.saturating_mul(self.cfg.misses as u64);
        let silent: Vec<NodeId> = self
            .last
            .iter()
            .filter(|(p, t)| now.saturating_sub(**t) > limit && !self.suspected.contains(p))
            .map(|(p, _)| *p)
            .collect();
        self.suspected.extend(&silent);
        silent
    }
}

/// The rule a vgroup's SMR is to apply to ordered suspicions (not applied
/// yet: the SMR is not wired): a member is evicted once at least f+1
/// members (a weak quorum of the vgroup, so at least one correct) suspect it
/// at once. The f Byzantine members that keep proposing to evict correct
/// members (the thesis' SYNC adversary) never evict one; a silent member,
/// suspected by every correct peer, is evicted.
#[derive(Clone, Debug)]
pub struct Evictions {
    members: Vec<NodeId>,
    qs: byzscale_core::quorum::QuorumSystem,
    /// Per suspected member, who suspects it now (bounded by the vgroup).
    by: BTreeMap<NodeId, BTreeSet<usize>>,
}

impl Evictions {
    /// For a vgroup of `members` (sorted), f = ⌊(g−1)/3⌋.
    pub fn new(members: &[NodeId]) -> Evictions {
        let g = members.len().max(1);
        let qs = byzscale_core::quorum::QuorumSystem::classic(
            g,
            (g - 1) / 3,
            byzscale_core::quorum::FaultModel::Bft,
        )
        .expect("f = ⌊(g−1)/3⌋ is valid");
        Evictions {
            members: members.to_vec(),
            qs,
            by: BTreeMap::new(),
        }
    }

    /// An ordered suspicion (`Output::Suspect`) or its withdrawal
    /// (`Output::Heard`) by member `by` about `node`. Returns `node` when it
    /// is now to be evicted; suspicions by or of non-members are ignored.
    pub fn apply(&mut self, by: NodeId, node: NodeId, suspects: bool) -> Option<NodeId> {
        let i = self.members.iter().position(|m| *m == by)?;
        if by == node || !self.members.contains(&node) {
            return None;
        }
        let set = self.by.entry(node).or_default();
        if suspects {
            set.insert(i);
        } else {
            set.remove(&i);
        }
        let evict = self.qs.is_weak(set.iter().copied());
        if set.is_empty() || evict {
            self.by.remove(&node);
        }
        evict.then_some(node)
    }
}

/// One member of a vgroup: delivers each broadcast once and relays it.
pub struct Node {
    me: NodeId,
    vgroup: VgroupId,
    overlay: Arc<Overlay>,
    cfg: Config,
    inbox: Inbox<Vec<u8>>,
    heartbeats: Option<Heartbeats>,
}

impl Node {
    /// `me` in the `overlay` (which must list it).
    pub fn new(me: NodeId, overlay: Arc<Overlay>, cfg: Config) -> Result<Node, AtumError> {
        cfg.forward.validate()?;
        let vgroup = overlay.vgroup_of(me).ok_or(AtumError::NotInOverlay(me.0))?;
        Ok(Node {
            me,
            vgroup,
            inbox: Inbox::bounded(cfg.window, cfg.budget, cfg.max_payload),
            overlay,
            cfg,
            heartbeats: None,
        })
    }

    pub fn vgroup(&self) -> VgroupId {
        self.vgroup
    }

    /// The group-message inbox (for its bounds).
    pub fn inbox(&self) -> &Inbox<Vec<u8>> {
        &self.inbox
    }

    fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        let me = self.me;
        self.overlay
            .members(self.vgroup)
            .iter()
            .copied()
            .filter(move |p| *p != me)
    }

    /// Deliver `id`, then send this member's copy to every target vgroup.
    fn deliver_and_forward(&mut self, id: BroadcastId, payload: Vec<u8>, cx: &mut Cx<'_, Self>) {
        let members = self.overlay.members(self.vgroup);
        let i = members.iter().position(|m| *m == self.me).unwrap_or(0);
        let carry = group_msg::carry(i, members.len(), id.seq, payload.clone());
        cx.output(Output::Deliver { id, payload });
        let targets = self
            .cfg
            .forward
            .targets(self.overlay.graph(), self.vgroup, id)
            .unwrap_or_default();
        for b in targets {
            let order = group_msg::send_order(self.overlay.members(b), cx.rng());
            let msg = GroupMsg {
                from: self.vgroup,
                stream: id.origin,
                seq: id.seq,
                carry: carry.clone(),
            };
            cx.multicast(order.into_iter().map(Addr::Node).collect(), Msg::Group(msg));
        }
    }

    fn on_group(&mut self, sender: NodeId, msg: GroupMsg<Vec<u8>>, cx: &mut Cx<'_, Self>) {
        let graph = self.overlay.graph();
        let neighbour = msg.from != self.vgroup
            && graph
                .neighbours(self.vgroup)
                .is_ok_and(|n| n.contains(&msg.from));
        if !neighbour {
            let detail = format!("group message from {:?}", msg.from);
            return cx.fault(sender, GroupFault::NotANeighbour, detail);
        }
        if self.overlay.members(msg.stream).is_empty() {
            let detail = format!("broadcast of unknown vgroup {:?}", msg.stream);
            return cx.fault(sender, GroupFault::UnknownStream, detail);
        }
        let id = BroadcastId {
            origin: msg.stream,
            seq: msg.seq,
        };
        let overlay = self.overlay.clone();
        match self.inbox.receive(sender, overlay.members(msg.from), msg) {
            Ok(Some(payload)) => self.deliver_and_forward(id, payload, cx),
            Ok(None) => {}
            Err(f) => cx.fault(sender, f, format!("{id:?}")),
        }
    }
}

impl Protocol for Node {
    type Message = Msg;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = NoRecord;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        if let Some(hb) = self.cfg.heartbeat {
            self.heartbeats = Some(Heartbeats::new(hb, self.peers(), cx.now()));
            self.on_timer(Timer::Heartbeat, cx);
        }
    }

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        let Input::Ordered { seq, payload } = input;
        let id = BroadcastId {
            origin: self.vgroup,
            seq,
        };
        if byzscale_core::codec::to_bytes(&payload).len() > self.cfg.max_payload {
            return cx.fault(self.me, GroupFault::Oversized, format!("{id:?}"));
        }
        if self.inbox.is_accepted(self.vgroup, seq) {
            return; // ordered again (a replayed decision): delivered once
        }
        if !self.inbox.accept_own(self.vgroup, seq) {
            // the SMR ran more than `window` ahead of this member's floor
            return cx.fault(self.me, GroupFault::OutOfWindow, format!("{id:?}"));
        }
        self.deliver_and_forward(id, payload, cx);
    }

    fn on_message(&mut self, from: Addr, msg: Msg, cx: &mut Cx<'_, Self>) {
        let Some(sender) = from.node() else {
            return cx.fault(from, GroupFault::NotAMember, "a client");
        };
        match msg {
            Msg::Group(gm) => self.on_group(sender, gm, cx),
            Msg::Heartbeat => {
                let now = cx.now();
                match self.heartbeats.as_mut().map(|h| h.heard(sender, now)) {
                    Some(Ok(true)) => cx.output(Output::Heard { node: sender }),
                    Some(Err(f)) => cx.fault(sender, f, "heartbeat from outside the vgroup"),
                    _ => {}
                }
            }
        }
    }

    fn on_timer(&mut self, _: Timer, cx: &mut Cx<'_, Self>) {
        let Some(hb) = self.heartbeats.as_mut() else {
            return;
        };
        for node in hb.newly_silent(cx.now()) {
            cx.output(Output::Suspect { node });
        }
        let period = hb.cfg.period;
        let peers: Vec<Addr> = self.peers().map(Addr::Node).collect();
        cx.multicast(peers, Msg::Heartbeat);
        cx.set_timer(Timer::Heartbeat, period);
    }
}

#[cfg(test)]
mod tests;
