//! The ordering core: agreement on one value per slot, in one view at a time,
//! inside a watermark window. It knows nothing of requests, clients, the
//! service or execution.
//!
//! # Paper map
//!
//! Mod-SMaRt's normal phase (Sousa & Bessani: PROPOSE, WRITE, ACCEPT), which is
//! PBFT's three phases (Castro & Liskov, OSDI'99 §4.2: PRE-PREPARE, PREPARE,
//! COMMIT), counted in votes of a [`QuorumSystem`] (WHEAT):
//!
//! | here | Mod-SMaRt | PBFT |
//! |---|---|---|
//! | [`Message::Propose`] | PROPOSE | PRE-PREPARE |
//! | [`Message::Write`], prepared = proposal + quorum of WRITEs | WRITE | PREPARE, *prepared* |
//! | [`Message::Accept`], decided = quorum of ACCEPTs | ACCEPT | COMMIT, *committed-local* |
//! | `low`, `window` | — | low / high watermarks h, H (OSDI'99 §4.3) |
//! | [`Ordering::claims`] | STOP-DATA contents | VIEW-CHANGE's P and Q sets (TOCS §4.5) |
//! | [`select`] | SYNC decision | decision procedure (TOCS §4.5.2) |
//! | [`Ordering::learn`] | state transfer of decisions | (fetch of committed requests) |
//!
//! Deviations: no signatures on WRITE/ACCEPT (authenticated channels; claims
//! are signed once in STOP-DATA by the replica layer); CFT groups (2f+1) skip
//! WRITE and accept a proposal directly; a decided value can also be learnt
//! from a weak quorum of matching log entries ([`Ordering::learn`]).
//!
//! Durable votes (PBFT keeps them in memory; see `replica/durable.rs`): every
//! adoption of a value and every ACCEPT comes with an [`Event::Persist`] of a
//! [`Promise`] *before* the WRITE or ACCEPT it justifies, and the driver sends
//! nothing that follows a record in the same step until the record is
//! durable; a restarted replica gets its promises back
//! ([`Ordering::restore_slot`]) and never votes against them. The leader's
//! PROPOSE goes *before* its record: it is not a vote (prepared needs a
//! quorum of WRITEs, and the leader's own WRITE waits for the record), so a
//! leader that crashes before the record and proposes another value for the
//! slot after a restart looks like an equivocating leader, which the WRITE
//! quorums already tolerate: two values prepared in one view would need a
//! replica in both WRITE quorums that wrote both, and a correct backup never
//! does (its records), nor does the leader (its WRITE for the first value
//! never left). This saves a group commit on the critical path.
//!
//! # Design: what the core owns and how it talks
//!
//! An [`Ordering`] owns the per-slot agreement state (proposal, WRITE/ACCEPT
//! votes, prepared and pre-prepared claims, own vote marks, the decided value
//! and log-transfer votes), the view and [`Status`], the low watermark and
//! window, the next slot to propose, the highest slot seen, the highest slot
//! it ACCEPTed, how far decisions were taken out in order ([`Ordering::take_ready`]),
//! and a bounded buffer of messages for views not yet installed. It is given
//! the group ([`GroupInfo`]: members, quorum system, leader of a view), its own
//! position and the window. It never sends: each call returns [`Event`]s
//! (multicast this, a value was adopted, a slot was decided, fetching is
//! needed, a fault) which the caller applies in order. Validation of a
//! proposed value that needs outside state (the SMR checks request MACs
//! against its pending table) is passed in as a closure.
//!
//! **Generic over the ordered value.** The core is `Ordering<V: Value>`: the SMR
//! orders [`Batch`]es, and a DQBFT instance can order references (a
//! `(replica, sequence)` pair with a no-op default) with the same code, one
//! `Ordering` per instance, each with its own view, watermarks and future
//! buffer. [`select`] is a pure function over claims ([`Claim`]) and a quorum
//! system, usable by any instance. What stays in the replica is the part tied
//! to the SMR's wire format and state: the synchronization phase's messages
//! (STOP, STOP-DATA, SYNC with checkpoint certificates), checkpoints and state
//! transfer. Seams left for DQBFT: the leader of a view is `GroupInfo::leader`
//! (round-robin from position 0; an instance whose coordinator starts
//! elsewhere needs a rotation offset there), and the faults reported are the
//! SMR's [`Fault`] kinds.

use crate::fault::Fault;
use crate::message::{Batch, Slot, SlotClaim, View, PRE_PREPARED_KEPT};
use crate::params::GroupInfo;
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::quorum::{Collector, QuorumSystem, Vote};
use byzscale_core::NodeId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[cfg(test)]
mod tests;

/// A value the core can order: cloned into votes and claims, a default for a
/// slot no one prepared (PBFT's null request), and a digest that WRITE and
/// ACCEPT carry instead of the value.
pub trait Value: Clone + Default {
    fn digest(&self, crypto: &Crypto) -> Digest;
    /// About how many bytes the value holds (what buffering it costs).
    fn size(&self) -> usize;
}

impl Value for Batch {
    fn digest(&self, crypto: &Crypto) -> Digest {
        crypto.hash(&self.bytes())
    }
    fn size(&self) -> usize {
        let per_request = |r: &crate::message::Request| r.op.len() + 32 * r.auth.len() + 128;
        self.requests.iter().map(per_request).sum()
    }
}

/// Most bytes of proposed values buffered for views not installed yet
/// ([`Value::size`]); the oldest buffered message goes first.
pub const FUTURE_BYTES: usize = 32 << 20;

/// Whether two normal-case messages are the same sender's vote slot: the same
/// kind for the same (view, slot). A correct member sends one of each.
fn same_place<V>(a: &Message<V>, b: &Message<V>) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
        && a.view() == b.view()
        && a.slot() == b.slot()
}

fn message_size<V: Value>(m: &Message<V>) -> usize {
    match m {
        Message::Propose { value, .. } => value.size() + 64,
        _ => 64,
    }
}

/// Most digests one member's votes of one kind count for in one (view,
/// slot). A correct member votes one; two keep what an equivocating member
/// (or a pair of Twins) can do with more than f faulty visible to the
/// checkers, and bound the vote map.
pub const VOTE_DIGESTS: usize = 2;

/// Count `from`'s vote of kind `kind` for `digest` in `(view, slot)` into
/// `votes`, unless the member already voted for [`VOTE_DIGESTS`] other
/// digests there (then false); a vote for a second digest is reported.
fn count_vote<V>(
    votes: &mut BTreeMap<(View, Digest), BTreeSet<usize>>,
    kind: &str,
    (view, slot, digest, from, member): (View, Slot, Digest, usize, NodeId),
    out: &mut Vec<Event<V>>,
) -> bool {
    let others = votes
        .range((view, [0; 32])..=(view, [0xff; 32]))
        .filter(|((_, d), who)| *d != digest && who.contains(&from))
        .count();
    if others > 0 {
        let detail = format!(
            "{kind}s for {} digests, view {view} slot {slot}",
            others + 1
        );
        out.push(Event::fault(member, Fault::Equivocation, detail));
        if others >= VOTE_DIGESTS {
            return false;
        }
    }
    votes.entry((view, digest)).or_default().insert(from);
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Normal,
    /// Synchronization phase towards this view.
    Changing(View),
}

/// The normal-case messages of one ordering instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<V> {
    Propose {
        view: View,
        slot: Slot,
        value: V,
    },
    Write {
        view: View,
        slot: Slot,
        digest: Digest,
    },
    Accept {
        view: View,
        slot: Slot,
        digest: Digest,
    },
}

impl<V> Message<V> {
    pub fn view(&self) -> View {
        match self {
            Message::Propose { view, .. }
            | Message::Write { view, .. }
            | Message::Accept { view, .. } => *view,
        }
    }
    pub fn slot(&self) -> Slot {
        match self {
            Message::Propose { slot, .. }
            | Message::Write { slot, .. }
            | Message::Accept { slot, .. } => *slot,
        }
    }
}

/// A vote this replica must keep across crashes: the caller makes it durable
/// before the message that carries it leaves (its driver holds every later
/// send until the record is durable), so a restarted replica never votes
/// against it ([`Ordering::restore_slot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Promise<V> {
    /// It adopted `value` (digest `digest`) for `slot` in `view`: PBFT's
    /// pre-prepare; in a BFT group it then sends its WRITE, as the leader it
    /// proposes the value, in a CFT group it accepts it at once.
    Proposal {
        view: View,
        slot: Slot,
        digest: Digest,
        value: V,
    },
    /// It sent ACCEPT for `digest` in `view`: it prepared that value.
    Accept {
        view: View,
        slot: Slot,
        digest: Digest,
    },
}

/// What a restarted replica durably promised about one slot
/// ([`Ordering::restore_slot`]), as folded from its [`Promise`]s and its
/// decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored<V> {
    /// The latest value it adopted, with its view (its WRITE in that view).
    pub proposal: Option<(View, Digest, V)>,
    /// The digests it pre-prepared with the latest view of each, newest first.
    pub pre_prepared: Vec<(Digest, View)>,
    /// The highest view it ACCEPTed (prepared) a value in, and the value.
    pub prepared: Option<(View, Digest, V)>,
    /// The decision, if the slot was executed.
    pub decided: Option<(View, Digest, V)>,
}

impl<V> Default for Restored<V> {
    fn default() -> Self {
        Restored {
            proposal: None,
            pre_prepared: Vec::new(),
            prepared: None,
            decided: None,
        }
    }
}

/// What a call asks of its caller, to be applied in order.
#[derive(Debug, PartialEq)]
pub enum Event<V> {
    /// Make this durable before any later event's message leaves.
    Persist(Promise<V>),
    /// Send to every other member.
    Multicast(Message<V>),
    /// This replica took a value for the slot in the current view (it
    /// pre-prepared it); [`Ordering::proposal`] gives it.
    Adopted(Slot),
    /// The slot was decided; decisions leave in slot order through
    /// [`Ordering::take_ready`].
    Decided(Slot),
    /// Something only fetching can bring: a slot seen above the decisions taken
    /// out, or a decided digest whose value is missing.
    Lagging,
    Fault {
        culprit: NodeId,
        kind: Fault,
        detail: String,
    },
}

impl<V> Event<V> {
    fn fault(culprit: NodeId, kind: Fault, detail: String) -> Self {
        Event::Fault {
            culprit,
            kind,
            detail,
        }
    }
}

/// How a value reaches [`Ordering::accept_into`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Adopt {
    /// This replica leads and proposes it (announces it after persisting it).
    Propose,
    /// The leader's PROPOSE (a second one for the slot is an equivocation).
    FromLeader,
    /// Selected by the synchronization phase.
    Selected,
}

/// What [`Ordering::learn`] made of a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Outside the window, already taken out, or already decided.
    Stale,
    /// A weak quorum of senders logged the same value: decided.
    Decided,
    /// Counted as the sender's ACCEPT; [`Ordering::advance`] may now decide.
    Counted,
}

/// Agreement state of one slot.
#[derive(Debug)]
struct SlotState<V> {
    /// The value accepted from the leader of `view` (or from a SYNC).
    proposal: Option<(View, Digest, V)>,
    /// WRITE votes per (view, digest).
    writes: BTreeMap<(View, Digest), BTreeSet<usize>>,
    accepts: BTreeMap<(View, Digest), BTreeSet<usize>>,
    /// Highest view in which we prepared a value (PBFT's P component).
    prepared: Option<(View, Digest, V)>,
    /// Values we accepted a PROPOSE for, newest view first (PBFT's Q component).
    pre_prepared: Vec<(Digest, View)>,
    wrote: Option<View>,
    accepted: Option<View>,
    decided: Option<(View, Digest, V)>,
    /// Log-transfer votes: digest → senders, and the value.
    log_votes: Collector<Digest, V>,
}

impl<V> Default for SlotState<V> {
    fn default() -> Self {
        SlotState {
            proposal: None,
            writes: BTreeMap::new(),
            accepts: BTreeMap::new(),
            prepared: None,
            pre_prepared: Vec::new(),
            wrote: None,
            accepted: None,
            decided: None,
            log_votes: Collector::new(),
        }
    }
}

/// One ordering instance (see the module docs).
#[derive(Debug)]
pub struct Ordering<V> {
    g: GroupInfo,
    idx: usize,
    window: u64,
    view: View,
    status: Status,
    low: Slot,
    /// Decisions taken out in order up to here (for the SMR: executed).
    delivered: Slot,
    next_slot: Slot,
    /// The highest slot members holding a weak quorum of votes work on
    /// (or this replica itself): what it believes the group has reached.
    highest_seen: Slot,
    /// The highest slot each member's messages named (this replica's own
    /// entry: the highest it worked on).
    seen: Vec<Slot>,
    /// Highest slot this replica sent an ACCEPT for.
    accepted_high: Slot,
    slots: BTreeMap<Slot, SlotState<V>>,
    /// Normal-case messages for a view not installed yet (they can overtake the
    /// SYNC that installs it); replayed on installation. Bounded.
    future: VecDeque<(usize, Message<V>)>,
    /// [`message_size`] of everything in `future` (at most [`FUTURE_BYTES`]).
    future_bytes: usize,
    /// Slots from here on belong to the next configuration (ordered, not yet
    /// installed): outside the window until [`Ordering::reconfigure`].
    fence: Slot,
}

impl<V: Value> Ordering<V> {
    /// The instance of the member at position `idx`, in view 0, ordering slots
    /// `1..=window`.
    pub fn new(g: GroupInfo, idx: usize, window: u64) -> Self {
        assert!(idx < g.n(), "position {idx} is not in the group");
        let n = g.n();
        Ordering {
            g,
            idx,
            window,
            view: 0,
            status: Status::Normal,
            low: 0,
            delivered: 0,
            next_slot: 1,
            highest_seen: 0,
            seen: vec![0; n],
            accepted_high: 0,
            slots: BTreeMap::new(),
            future: VecDeque::new(),
            future_bytes: 0,
            fence: Slot::MAX,
        }
    }

    /// Slots at and above `at` wait for the next configuration (`None`:
    /// no configuration is pending).
    pub fn set_fence(&mut self, at: Option<Slot>) {
        self.fence = at.unwrap_or(Slot::MAX);
    }

    /// Install the configuration that governs the slots after those taken
    /// out (`config.rs`): this replica is now at position `idx` of `g`, in
    /// `view` (the new epoch's first) with no synchronization phase. Decided
    /// slots stay (they serve the log transfer); everything counted by
    /// position (the slots above, the buffered messages, the slots members
    /// named) is dropped: positions changed, and retransmission brings back
    /// what matters.
    pub fn reconfigure(&mut self, g: GroupInfo, idx: usize, view: View) {
        assert!(idx < g.n(), "position {idx} is not in the group");
        let delivered = self.delivered;
        self.slots.retain(|s, _| *s <= delivered);
        self.future.clear();
        self.future_bytes = 0;
        self.seen = vec![0; g.n()];
        self.seen[idx] = delivered;
        self.highest_seen = delivered;
        self.accepted_high = self.accepted_high.min(delivered);
        self.next_slot = delivered + 1;
        self.g = g;
        self.idx = idx;
        self.view = view;
        self.status = Status::Normal;
        self.fence = Slot::MAX;
    }

    /// Restart after recovery: decisions up to `delivered` were taken out and
    /// the window starts above `low`.
    pub fn resume(&mut self, low: Slot, delivered: Slot) {
        self.low = low;
        self.delivered = delivered;
        self.next_slot = delivered + 1;
        self.highest_seen = delivered;
        self.seen[self.idx] = delivered;
    }

    /// Restart in the installed `view`, or in the synchronization phase
    /// towards `changing` (a later view), after recovery.
    pub fn restore_view(&mut self, view: View, changing: Option<View>) {
        self.view = view;
        self.status = match changing {
            Some(t) if t > view => Status::Changing(t),
            _ => Status::Normal,
        };
    }

    /// Restore what this replica durably promised for `slot` before a crash
    /// (call after [`Ordering::resume`] and [`Ordering::restore_view`]): its
    /// claims (PBFT's P and Q) and its own vote marks come back, so it never
    /// writes or accepts against them and its STOP-DATA claims them again.
    pub fn restore_slot(&mut self, slot: Slot, r: Restored<V>) {
        if slot <= self.low {
            return;
        }
        let (bft, me, view) = (self.g.bft(), self.idx, self.view);
        let ss = self.slots.entry(slot).or_default();
        ss.pre_prepared = r.pre_prepared;
        ss.pre_prepared.truncate(PRE_PREPARED_KEPT);
        if let Some((v, d, value)) = r.proposal {
            // adopting a value is the WRITE (BFT) that follows it
            if bft {
                ss.wrote = Some(v);
                ss.writes.entry((v, d)).or_default().insert(me);
            }
            if v == view && slot >= self.next_slot {
                self.next_slot = slot + 1;
            }
            ss.proposal = Some((v, d, value));
        }
        if let Some((v, d, value)) = r.prepared {
            ss.accepted = Some(v);
            ss.accepts.entry((v, d)).or_default().insert(me);
            self.accepted_high = self.accepted_high.max(slot);
            ss.prepared = Some((v, d, value));
        }
        if let Some((v, d, value)) = r.decided {
            if slot <= self.delivered {
                if ss.prepared.is_none() {
                    // learnt by log transfer: a quorum prepared it in `v`
                    ss.prepared = Some((v, d, value.clone()));
                    if !ss.pre_prepared.iter().any(|(pd, _)| *pd == d) {
                        ss.pre_prepared.insert(0, (d, v));
                        ss.pre_prepared.truncate(PRE_PREPARED_KEPT);
                    }
                }
                ss.decided = Some((v, d, value));
            }
        }
        self.note_slot(self.idx, slot);
    }

    /// The view and digest of this replica's own ACCEPT for `slot`, if any.
    pub fn own_accept(&self, slot: Slot) -> Option<(View, Digest)> {
        let ss = self.slots.get(&slot)?;
        let v = ss.accepted?;
        ss.accepts
            .iter()
            .find(|((av, _), who)| *av == v && who.contains(&self.idx))
            .map(|((_, d), _)| (v, *d))
    }

    pub fn group(&self) -> &GroupInfo {
        &self.g
    }
    pub fn view(&self) -> View {
        self.view
    }
    pub fn status(&self) -> Status {
        self.status
    }
    /// The view being moved to, or the current one.
    pub fn target(&self) -> View {
        match self.status {
            Status::Normal => self.view,
            Status::Changing(t) => t,
        }
    }
    pub fn low(&self) -> Slot {
        self.low
    }
    pub fn delivered(&self) -> Slot {
        self.delivered
    }
    pub fn highest_seen(&self) -> Slot {
        self.highest_seen
    }
    pub fn accepted_high(&self) -> Slot {
        self.accepted_high
    }
    pub fn leader(&self) -> NodeId {
        self.g.leader(self.view)
    }
    pub fn is_leader(&self) -> bool {
        self.leader() == self.g.members[self.idx]
    }
    pub fn in_window(&self, slot: Slot) -> bool {
        slot > self.low && slot <= self.low + self.window && slot < self.fence
    }
    /// Slots proposed (or installed) but not yet taken out.
    pub fn in_flight(&self) -> u64 {
        self.next_slot.saturating_sub(self.delivered + 1)
    }
    /// Whether this replica may propose now (the caller adds its own limits).
    pub fn can_propose(&self) -> bool {
        self.is_leader() && self.status == Status::Normal && self.in_window(self.next_slot)
    }
    /// The value adopted for `slot`, if any.
    pub fn proposal(&self, slot: Slot) -> Option<&V> {
        self.slots.get(&slot)?.proposal.as_ref().map(|p| &p.2)
    }
    /// The decided slots in `from..=to`, with the view each was decided in.
    pub fn decided_in(&self, from: Slot, to: Slot) -> impl Iterator<Item = (Slot, View, &V)> {
        let range = if from <= to {
            self.slots.range(from..=to)
        } else {
            self.slots.range(0..0)
        };
        range.filter_map(|(s, ss)| ss.decided.as_ref().map(|(v, _, b)| (*s, *v, b)))
    }

    /// Note that the member at `from` works on `slot`; true if this replica
    /// lags (a slot is known above the decisions taken out). A slot is
    /// believed once members holding a weak quorum of votes named it (at
    /// least one correct member works there), or this replica itself did:
    /// one Byzantine member's slot numbers move nothing.
    pub fn note_slot(&mut self, from: usize, slot: Slot) -> bool {
        if let Some(s) = self.seen.get_mut(from) {
            if slot > *s {
                *s = slot;
                self.highest_seen = self.highest_seen.max(self.believed());
            }
        }
        self.highest_seen > self.delivered
    }

    /// The highest slot named by a weak quorum, or by this replica.
    fn believed(&self) -> Slot {
        let mut by_slot: Vec<(Slot, usize)> =
            self.seen.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        by_slot.sort_unstable_by(|a, b| b.cmp(a));
        let mut who = Vec::new();
        for (s, i) in by_slot {
            who.push(i);
            if self.g.qs.is_weak(who.iter().copied()) {
                return s.max(self.seen[self.idx]);
            }
        }
        self.seen[self.idx]
    }

    /// Handle a PROPOSE, WRITE or ACCEPT from the member at position `from`.
    /// `validate` checks a proposed value beyond its digest.
    pub fn on_message(
        &mut self,
        from: usize,
        msg: Message<V>,
        crypto: &Crypto,
        validate: impl FnOnce(&V) -> Result<(), String>,
    ) -> Vec<Event<V>> {
        let mut out = Vec::new();
        if self.note_slot(from, msg.slot()) {
            out.push(Event::Lagging);
        }
        let view = msg.view();
        let installed = view == self.view && self.status == Status::Normal;
        let buffer = match msg {
            Message::Propose { .. } => view > self.view || (view == self.view && !installed),
            _ => view > self.view,
        };
        if buffer {
            self.buffer_future(from, msg, &mut out);
            return out;
        }
        if !installed || from >= self.g.n() {
            return out;
        }
        match msg {
            Message::Propose { slot, value, .. } => {
                self.on_propose(from, slot, value, crypto, validate, &mut out)
            }
            Message::Write { slot, digest, .. } => {
                if self.in_window(slot) && self.g.bft() {
                    let ss = self.slots.entry(slot).or_default();
                    let member = self.g.members[from];
                    let vote = (view, slot, digest, from, member);
                    if count_vote(&mut ss.writes, "WRITE", vote, &mut out) {
                        self.advance_into(slot, &mut out);
                    }
                }
            }
            Message::Accept { slot, digest, .. } => {
                if self.in_window(slot) {
                    let ss = self.slots.entry(slot).or_default();
                    let member = self.g.members[from];
                    let vote = (view, slot, digest, from, member);
                    if count_vote(&mut ss.accepts, "ACCEPT", vote, &mut out) {
                        self.advance_into(slot, &mut out);
                    }
                }
            }
        }
        out
    }

    fn on_propose(
        &mut self,
        from: usize,
        slot: Slot,
        value: V,
        crypto: &Crypto,
        validate: impl FnOnce(&V) -> Result<(), String>,
        out: &mut Vec<Event<V>>,
    ) {
        let (view, culprit) = (self.view, self.g.members[from]);
        if culprit != self.leader() {
            let detail = format!("view {view} slot {slot}");
            out.push(Event::fault(culprit, Fault::ProposeNotLeader, detail));
            return;
        }
        if !self.in_window(slot) || slot <= self.delivered {
            return;
        }
        if let Err(e) = validate(&value) {
            let detail = format!("slot {slot}: {e}");
            out.push(Event::fault(culprit, Fault::ProposeInvalid, detail));
            return;
        }
        self.accept_into(view, slot, value, crypto, Adopt::FromLeader, out);
    }

    /// Keep a normal-case message of a view not installed yet: a PROPOSE only
    /// from that view's leader, one message per sender, kind, view and slot,
    /// at most `4 * window` messages and [`FUTURE_BYTES`] (oldest out first).
    fn buffer_future(&mut self, from: usize, msg: Message<V>, out: &mut Vec<Event<V>>) {
        let view = msg.view();
        if view <= self.view || view > self.target().max(self.view + 1) + 1 || from >= self.g.n() {
            return;
        }
        let sender = self.g.members[from];
        if matches!(msg, Message::Propose { .. }) && sender != self.g.leader(view) {
            let detail = format!("view {view} slot {} (buffered view)", msg.slot());
            out.push(Event::fault(sender, Fault::ProposeNotLeader, detail));
            return;
        }
        if self
            .future
            .iter()
            .any(|(f, m)| *f == from && same_place(m, &msg))
        {
            return;
        }
        self.future_bytes += message_size(&msg);
        self.future.push_back((from, msg));
        while self.future.len() as u64 > 4 * self.window || self.future_bytes > FUTURE_BYTES {
            let Some((_, old)) = self.future.pop_front() else {
                break;
            };
            self.future_bytes -= message_size(&old);
        }
    }

    /// Buffered messages for views not installed yet, and their bytes.
    pub fn future_len(&self) -> (usize, usize) {
        (self.future.len(), self.future_bytes)
    }

    /// The buffered messages of the current view, in arrival order, for the
    /// caller to handle again; those of later views stay buffered.
    pub fn take_future(&mut self) -> Vec<(usize, Message<V>)> {
        let view = self.view;
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.future)
            .into_iter()
            .filter(|(_, m)| m.view() >= view)
            .partition(|(_, m)| m.view() == view);
        self.future = later.into();
        self.future_bytes = self.future.iter().map(|(_, m)| message_size(m)).sum();
        now
    }

    /// As the leader ([`Ordering::can_propose`]), propose `value` for the next
    /// slot: PROPOSE, then the [`Promise`] that its own WRITE (or, CFT, ACCEPT)
    /// waits for.
    pub fn propose(&mut self, value: V, crypto: &Crypto) -> Vec<Event<V>> {
        let (view, slot) = (self.view, self.next_slot);
        self.next_slot += 1;
        let mut out = Vec::new();
        self.accept_into(view, slot, value, crypto, Adopt::Propose, &mut out);
        out
    }

    /// Adopt `value` as the value of `slot` in `view` and vote for it (a
    /// proposal, or a value the synchronization phase selected).
    pub fn accept(&mut self, view: View, slot: Slot, value: V, crypto: &Crypto) -> Vec<Event<V>> {
        let mut out = Vec::new();
        self.accept_into(view, slot, value, crypto, Adopt::Selected, &mut out);
        out
    }

    fn accept_into(
        &mut self,
        view: View,
        slot: Slot,
        value: V,
        crypto: &Crypto,
        how: Adopt,
        out: &mut Vec<Event<V>>,
    ) {
        let d = value.digest(crypto);
        let leader = self.g.leader(view);
        let lagged = self.highest_seen > self.delivered;
        if self.note_slot(self.idx, slot) && !lagged && how != Adopt::Propose {
            // working on a slot above the decisions: retransmit if stuck
            out.push(Event::Lagging);
        }
        let ss = self.slots.entry(slot).or_default();
        if let Some((v, pd, _)) = &ss.proposal {
            if *v == view {
                if *pd != d && how == Adopt::FromLeader {
                    let detail = format!("two proposals for view {view} slot {slot}");
                    out.push(Event::fault(leader, Fault::Equivocation, detail));
                }
                return;
            }
        }
        ss.pre_prepared.retain(|(pd, _)| *pd != d);
        ss.pre_prepared.insert(0, (d, view));
        ss.pre_prepared.truncate(PRE_PREPARED_KEPT);
        ss.proposal = Some((view, d, value.clone()));
        if how == Adopt::Propose {
            // PROPOSE is not a vote: it may leave before the record (see the
            // module docs); the leader's WRITE below waits for it
            out.push(Event::Multicast(Message::Propose {
                view,
                slot,
                value: value.clone(),
            }));
        }
        out.push(Event::Persist(Promise::Proposal {
            view,
            slot,
            digest: d,
            value: value.clone(),
        }));
        out.push(Event::Adopted(slot));
        if self.g.bft() {
            if ss.wrote != Some(view) {
                ss.wrote = Some(view);
                out.push(Event::Multicast(Message::Write {
                    view,
                    slot,
                    digest: d,
                }));
                ss.writes.entry((view, d)).or_default().insert(self.idx);
            }
        } else {
            // CFT: no WRITE phase; the proposal itself is the prepared value.
            ss.prepared = Some((view, d, value));
            self.vote_accept(view, slot, d, out);
        }
        self.advance_into(slot, out);
    }

    fn vote_accept(&mut self, view: View, slot: Slot, d: Digest, out: &mut Vec<Event<V>>) {
        let ss = self.slots.entry(slot).or_default();
        if ss.accepted == Some(view) {
            return;
        }
        ss.accepted = Some(view);
        ss.accepts.entry((view, d)).or_default().insert(self.idx);
        self.accepted_high = self.accepted_high.max(slot);
        out.push(Event::Persist(Promise::Accept {
            view,
            slot,
            digest: d,
        }));
        out.push(Event::Multicast(Message::Accept {
            view,
            slot,
            digest: d,
        }));
    }

    /// Advance `slot` as far as its votes allow: prepare, accept, decide.
    pub fn advance(&mut self, slot: Slot) -> Vec<Event<V>> {
        let mut out = Vec::new();
        self.advance_into(slot, &mut out);
        out
    }

    fn advance_into(&mut self, slot: Slot, out: &mut Vec<Event<V>>) {
        let view = self.view;
        let Some(ss) = self.slots.get_mut(&slot) else {
            return;
        };
        // prepare (BFT): our proposal plus a quorum of matching WRITEs
        let prepared = match &ss.proposal {
            Some((v, d, value)) if *v == view && self.g.bft() && ss.accepted != Some(view) => ss
                .writes
                .get(&(view, *d))
                .is_some_and(|w| self.g.qs.is_quorum(w.iter().copied()))
                .then(|| (*d, value.clone())),
            _ => None,
        };
        if let Some((d, value)) = prepared {
            ss.prepared = Some((view, d, value));
            self.vote_accept(view, slot, d, out);
        }
        // decide: a quorum of ACCEPTs for some digest
        let Some(ss) = self.slots.get_mut(&slot) else {
            return;
        };
        if ss.decided.is_some() {
            return;
        }
        let qs = &self.g.qs;
        let Some((v, d)) = ss
            .accepts
            .iter()
            .rev()
            .find(|(_, who)| qs.is_quorum(who.iter().copied()))
            .map(|(k, _)| *k)
        else {
            return;
        };
        let value = match &ss.proposal {
            Some((_, pd, b)) if *pd == d => Some(b.clone()),
            _ => ss.log_votes.value(&d).cloned(),
        };
        match value {
            Some(b) => {
                ss.decided = Some((v, d, b));
                out.push(Event::Decided(slot));
            }
            None => out.push(Event::Lagging),
        }
    }

    /// A log entry from the member at `from`: it says `slot` was decided with
    /// `value` in `view`. A correct member logs only decided slots, so the entry
    /// also counts as its ACCEPT; a weak quorum of matching entries decides.
    pub fn learn(
        &mut self,
        from: usize,
        slot: Slot,
        view: View,
        value: V,
        crypto: &Crypto,
    ) -> Learned {
        if slot <= self.delivered || !self.in_window(slot) || from >= self.g.n() {
            return Learned::Stale;
        }
        let d = value.digest(crypto);
        let ss = self.slots.entry(slot).or_default();
        if ss.decided.is_some() {
            return Learned::Stale;
        }
        let vote = ss.log_votes.add(&self.g.qs, from, d, || value);
        ss.accepts.entry((view, d)).or_default().insert(from);
        match vote {
            // more than f members say it is decided: one of them is correct
            Vote::Counted(votes) if votes >= self.g.qs.weak() => {
                let value = ss.log_votes.value(&d).cloned().unwrap_or_default();
                ss.decided = Some((view, d, value));
                Learned::Decided
            }
            _ => Learned::Counted,
        }
    }

    /// The slot after the decisions taken out, if this replica prepared a
    /// value for it in the current view (normal status) and it is not
    /// decided yet: what tentative execution may run (`replica/tentative.rs`).
    pub fn prepared_next(&self) -> Option<(View, Slot, &V)> {
        if self.status != Status::Normal {
            return None;
        }
        let slot = self.delivered + 1;
        let ss = self.slots.get(&slot)?;
        match (&ss.prepared, &ss.decided) {
            (Some((v, _, value)), None) if *v == self.view => Some((*v, slot, value)),
            _ => None,
        }
    }

    /// The next decision in slot order, taken out (for the SMR: to execute).
    pub fn take_ready(&mut self) -> Option<(Slot, View, Digest, V)> {
        let slot = self.delivered + 1;
        let (v, d, value) = self.slots.get(&slot)?.decided.clone()?;
        self.delivered = slot;
        self.next_slot = self.next_slot.max(slot + 1);
        Some((slot, v, d, value))
    }

    /// Move the low watermark to a stable checkpoint at `low`: the slots up to
    /// it are forgotten.
    pub fn stabilize(&mut self, low: Slot) {
        self.low = self.low.max(low);
        self.slots = self.slots.split_off(&(self.low + 1));
        self.next_slot = self.next_slot.max(self.low + 1);
    }

    /// The caller installed a state that covers every slot up to `slot` (state
    /// transfer): decisions resume after it. True if the low watermark moved.
    pub fn skip_to(&mut self, slot: Slot) -> bool {
        self.delivered = slot;
        self.next_slot = self.next_slot.max(slot + 1);
        if slot <= self.low {
            return false;
        }
        self.low = slot;
        self.slots = self.slots.split_off(&(slot + 1));
        true
    }

    /// This replica's own messages for the slots it is stuck on (at most
    /// `limit` above the decisions taken out), to send again: messages lost in
    /// the network are otherwise only recovered by a view change.
    pub fn resend(&self, limit: u64) -> Vec<Message<V>> {
        let view = self.view;
        let hi = self.highest_seen.min(self.delivered + limit);
        let mut msgs = Vec::new();
        if hi <= self.delivered {
            return msgs;
        }
        let leading = self.is_leader();
        for (slot, ss) in self.slots.range(self.delivered + 1..=hi) {
            let slot = *slot;
            let Some((v, d, value)) = &ss.proposal else {
                continue;
            };
            if *v != view {
                continue;
            }
            if leading && ss.decided.is_none() {
                let value = value.clone();
                msgs.push(Message::Propose { view, slot, value });
            }
            if ss.wrote == Some(view) {
                msgs.push(Message::Write {
                    view,
                    slot,
                    digest: *d,
                });
            }
            if ss.accepted == Some(view) {
                msgs.push(Message::Accept {
                    view,
                    slot,
                    digest: *d,
                });
            }
        }
        msgs
    }

    /// What this replica claims about each slot it worked on (PBFT's P and Q):
    /// (slot, prepared value, pre-prepared digests with their views).
    pub fn claims(&self) -> impl Iterator<Item = ClaimOf<'_, V>> {
        self.slots
            .iter()
            .filter(|(_, ss)| ss.prepared.is_some() || !ss.pre_prepared.is_empty())
            .map(|(slot, ss)| ClaimOf {
                slot: *slot,
                prepared: ss.prepared.as_ref(),
                pre_prepared: &ss.pre_prepared,
            })
    }

    /// Leave the current view: stop ordering until `view` is installed.
    pub fn begin_change(&mut self, view: View) {
        self.status = Status::Changing(view);
    }

    /// Enter `view` (the synchronization phase determined it).
    pub fn enter(&mut self, view: View) {
        self.view = view;
        self.status = Status::Normal;
    }

    /// Start ordering in the entered view: votes of older views are forgotten
    /// (claims and decisions stay) and new proposals go above `high`, the
    /// highest slot the selection covered. The selected values are then
    /// [`Ordering::accept`]ed one by one.
    pub fn restart(&mut self, high: Slot) {
        let view = self.view;
        for ss in self.slots.values_mut() {
            ss.writes.retain(|(v, _), _| *v >= view);
            ss.accepts.retain(|(v, _), _| *v >= view);
            if matches!(ss.proposal, Some((v, _, _)) if v < view) {
                ss.proposal = None;
            }
        }
        self.next_slot = high.max(self.delivered).max(self.low) + 1;
    }
}

/// One slot's claim as [`Ordering::claims`] lists it.
pub struct ClaimOf<'a, V> {
    pub slot: Slot,
    pub prepared: Option<&'a (View, Digest, V)>,
    pub pre_prepared: &'a [(Digest, View)],
}

/// A replica's claim about one slot, as [`select`] reads it.
pub trait Claim<V> {
    fn slot(&self) -> Slot;
    /// The highest view it prepared a value in, the value's digest and the value.
    fn prepared(&self) -> Option<(View, Digest, &V)>;
    /// The digests it pre-prepared, with the latest view of each.
    fn pre_prepared(&self) -> &[(Digest, View)];
}

impl Claim<Batch> for SlotClaim {
    fn slot(&self) -> Slot {
        self.slot
    }
    fn prepared(&self) -> Option<(View, Digest, &Batch)> {
        self.prepared.as_ref().map(|(v, d, b)| (*v, *d, b))
    }
    fn pre_prepared(&self) -> &[(Digest, View)] {
        &self.pre_prepared
    }
}

/// The values [`select`] chose for the slots above the checkpoint.
#[derive(Debug, PartialEq)]
pub struct Picks<V> {
    /// The highest slot some replica claims prepared (at least the checkpoint).
    pub high: Slot,
    pub values: BTreeMap<Slot, V>,
}

/// PBFT's decision procedure (Castro & Liskov, TOCS 2002 §4.5.2) over the
/// claims of a quorum of replicas leaving a view (each with its group position,
/// `None` for a non-member, who holds no votes), for every slot above `low`
/// choose
/// - the value (d, v) from some replica's prepared claim such that
///   A1: replicas holding a quorum of votes claim nothing prepared in a view
///   above v, nor another value in v, and
///   A2: replicas holding a weak quorum (more than any f) of votes
///   pre-prepared d in view v or later;
/// - else the default value if a quorum of votes claims nothing prepared (B);
/// - else nothing: the slot is undetermined (`None`), wait for more claims.
///
/// A value decided in an earlier view was prepared by a quorum, which
/// intersects any quorum of claims in a correct replica, so A1 can only hold
/// for it (or for a value chosen by an earlier synchronization from the same
/// argument), and A2 stops Byzantine replicas from inventing one.
pub fn select<V: Clone + Default, C: Claim<V>>(
    qs: &QuorumSystem,
    low: Slot,
    voters: &[(Option<usize>, &[C])],
) -> Option<Picks<V>> {
    let claim = |i: usize, slot: Slot| voters[i].1.iter().find(|c| c.slot() == slot);
    let prepared = |i: usize, slot: Slot| claim(i, slot).and_then(|c| c.prepared());
    let votes = |keep: &dyn Fn(usize) -> bool| {
        qs.votes(
            (0..voters.len())
                .filter(|i| keep(*i))
                .filter_map(|i| voters[i].0),
        )
    };
    let high = voters
        .iter()
        .flat_map(|(_, cs)| cs.iter())
        .filter(|c| c.prepared().is_some())
        .map(|c| c.slot())
        .max()
        .unwrap_or(low)
        .max(low);
    let mut values = BTreeMap::new();
    for slot in (low + 1)..=high {
        // candidates, newest view first
        let mut cands: Vec<(View, Digest, &V)> = (0..voters.len())
            .filter_map(|i| prepared(i, slot))
            .collect();
        cands.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        cands.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let chosen = cands.into_iter().find(|(v, d, _)| {
            let a1 = votes(&|i| match prepared(i, slot) {
                None => true,
                Some((pv, pd, _)) => pv < *v || (pv == *v && pd == *d),
            });
            let a2 = votes(&|i| {
                claim(i, slot)
                    .is_some_and(|c| c.pre_prepared().iter().any(|(qd, qv)| qd == d && qv >= v))
            });
            a1 >= qs.quorum() && a2 >= qs.weak()
        });
        let value = match chosen {
            Some((_, _, value)) => value.clone(),
            None => {
                if votes(&|i| prepared(i, slot).is_none()) < qs.quorum() {
                    return None;
                }
                V::default()
            }
        };
        values.insert(slot, value);
    }
    Some(Picks { high, values })
}
