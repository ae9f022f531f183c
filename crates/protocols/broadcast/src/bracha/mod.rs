//! Bracha's deterministic Byzantine reliable broadcast, multi-shot with source
//! order (thesis §3.2 / digest §1.5: the secure broadcast AT2 assumes; Bracha,
//! "Asynchronous Byzantine agreement protocols", 1987).
//!
//! One instance per `(source, seq)`. With N > 3f members and quorums counted
//! in votes ([`byzscale_core::quorum`]):
//!
//! | step | message | rule |
//! |---|---|---|
//! | source broadcasts | [`Message::Send`] `(seq, m, σ-sig)` to all | |
//! | on SEND from the source | [`Message::Echo`] `(source, seq, d)` to all, d = H(m) | echo at most one payload per instance, only one held and checked |
//! | on ECHOs for d from a quorum (⌈(N+f+1)/2⌉) | [`Message::Ready`] `(source, seq, d)` to all | |
//! | on READYs for d from f+1 (weak quorum) | READY(d) to all (amplification) | ready at most once |
//! | on READYs for d from a quorum | deliver m with digest d | in source order; m pulled if not held |
//! | (not in Bracha) ready or decided on d without m | [`Message::Pull`] `(source, seq, d)` to echoers of d; answer [`Message::Push`] `(source, seq, m, σ-sig)` | see [`pull`] |
//!
//! # Deviations, and why
//!
//! - **ECHO and READY carry a digest; payloads travel once per peer.**
//!   Bracha's ECHO carries the message, so a batch of B bytes cost about
//!   N²·B bytes per broadcast. Here the payload travels in the SEND only,
//!   and ECHO/READY name it by its digest d (BLAKE3 over
//!   [`crate::signing_bytes`]); a member that readies or decides on a d it
//!   does not hold (a Byzantine source left it out of the SEND, or the SEND
//!   was lost) fetches it from the members that echoed d ([`pull`]). This is
//!   the usual optimisation of echo-based broadcast with hashes (echoing
//!   H(m) instead of m; the erasure-coded variant is Cachin–Tessaro's
//!   AVID, 2005); safety is unchanged because votes were already counted by
//!   digest and a member still echoes only a payload it holds and checked,
//!   and liveness holds because a READY quorum for d implies at least f+1
//!   correct members that echoed d and hold it. Payloads are signed by the
//!   source (ed25519 over [`crate::signing_bytes`]), checked once per
//!   distinct payload per instance, so a pushed payload must both hash to d
//!   and carry the source's signature (the delivery carries it).
//! - **Candidate payloads.** A Byzantine source may sign any number of
//!   payloads for one instance; a member keeps at most [`MAX_PAYLOADS`] of
//!   them (its bytes are bounded by that many frames). Votes are counted by
//!   digest whether or not the payload is kept, each member's first vote per
//!   round only (a second value is dropped as a fault). Payloads come only
//!   from the first SEND the member checks (the one it echoes; later SENDs
//!   are ignored), from a pull for the digest it readied or decided, and
//!   from catch-up vouches; the echoed, wanted and decided ones are pinned,
//!   others score their ECHO votes. So junk cannot keep out the payload that
//!   is delivered. (The thesis keeps every payload; an earlier version here
//!   refused payloads beyond the bound, which let a Byzantine source deny
//!   delivery to a member by filling its table with junk first.)
//! - Delivery needs a quorum of READYs (⌈(N+f+1)/2⌉ votes) rather than the
//!   classic 2f+1. The two coincide for N = 3f+1; for larger N the quorum is
//!   still reachable by the correct processes alone and lets WHEAT weights be
//!   used unchanged.
//! - An instance's state is dropped as soon as it completes (its READY has
//!   been sent, so others no longer need anything from it); a per-source
//!   watermark makes late messages for it free to ignore. Instances may only be
//!   opened up to `window` sequence numbers ahead of the next delivery.
//! - Links are assumed reliable in the thesis. Real links are not (the TCP
//!   transport drops the oldest queued frames on overflow and loses frames
//!   queued on a broken connection), and a lost ECHO or READY can stall an
//!   instance forever. With [`Config::retransmit`] set (off by default,
//!   and in the simulator), every member runs a periodic tick through a `Cx`
//!   timer ([`Timer::Tick`]) that
//!   1. re-sends its own SEND / ECHO / READY of instances still open after a
//!      whole period (at most [`MAX_RESEND`] instances per tick);
//!   2. multicasts [`Message::Status`]: its delivery frontier (next sequence
//!      number per source);
//!   3. catches up where it is stuck behind its peers (see [`catchup`]): for a
//!      source whose frontier did not move since the last tick while some
//!      peer's STATUS is ahead, it asks those peers ([`Message::Fetch`]) for
//!      the instances they delivered after its frontier; each answers with up
//!      to [`MAX_ANSWER`] [`Message::Vouch`]es ("I delivered this signed
//!      payload"), and f+1 matching vouches (a weak quorum: one correct member
//!      delivered it, so every correct member delivers it) complete an
//!      instance. It asks again as soon as those are delivered.
//!
//!   To answer, a member keeps the payloads of delivered instances until
//!   every other member's STATUS shows them delivered (at most
//!   [`Config::retain`] per source and [`Config::retain_bytes`] in all;
//!   without retransmission, within those bounds only, for pulls).
//!   Re-sent messages are exactly the ones sent the first time (a member
//!   never echoes or readies a second value), so the protocol's safety
//!   argument is unchanged; liveness now needs only fair-lossy links.
//!   Everything is driven by the tick count, not by wall-clock reads.
//!
//! # Durability
//!
//! With [`Config::persist`], a member asks its driver to keep what it must
//! never contradict ([`Record`], see [`durable`]): its own broadcasts and
//! the payloads it echoed before the SEND or ECHO leaves, the digests it
//! readied before the READY leaves, and each delivery before anything it lets
//! out. [`Bracha::recover`] restarts from the fold ([`Durable`]): the same
//! next sequence number, the same echoes and readies for open instances
//! (re-sent on the retransmission tick), the delivery frontier, and the
//! recent deliveries to vouch for.

use crate::auth::{Payloads, Refused};
use crate::common::{
    let_out, multishot_protocol_items, secure_broadcast_via_multishot, Delivery, Multishot,
    Payload, Signed,
};
pub mod catchup;
pub mod durable;
mod fault;
pub mod pull;
mod tally;

pub use self::durable::{Durable, Opened, Record};
pub use self::fault::Fault;

use self::tally::{Tally, TallyError, TallyLayout};
use byzscale_core::crypto::{short, Digest};
use byzscale_core::protocol::{Cx, Protocol, Time};
use byzscale_core::quorum::{FaultModel, QuorumError, QuorumSystem, Vote};
use byzscale_core::{Addr, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Wire messages of [`Bracha`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<P> {
    /// From the source itself.
    Send { seq: u64, signed: Signed<P> },
    /// "I hold and checked the payload with this digest" (the payload
    /// itself travels once, in the SEND, or by [`Message::Pull`]).
    Echo {
        source: NodeId,
        seq: u64,
        digest: Digest,
    },
    Ready {
        source: NodeId,
        seq: u64,
        digest: Digest,
    },
    /// The sender's delivery frontier: for each member (in configuration
    /// order), the next sequence number it will deliver from that source.
    /// Only sent with [`Config::retransmit`].
    Status { next: Vec<u64> },
    /// Catch-up: the sender asks for the instances of `source` from `from`
    /// that the receiver delivered (see [`catchup`]).
    Fetch { source: NodeId, from: u64 },
    /// Catch-up: the sender delivered `signed` as instance `(source, seq)`.
    Vouch {
        source: NodeId,
        seq: u64,
        signed: Signed<P>,
    },
    /// Fetch-on-miss: the sender needs the payload with `digest` of
    /// instance `(source, seq)` (see [`pull`]).
    Pull {
        source: NodeId,
        seq: u64,
        digest: Digest,
    },
    /// Fetch-on-miss: the answer to a [`Message::Pull`].
    Push {
        source: NodeId,
        seq: u64,
        signed: Signed<P>,
    },
}

/// Timers of [`Bracha`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// The retransmission tick ([`Config::retransmit`]).
    Tick,
    /// Fetch-on-miss: ask (again) for the payload instance `(source, seq)`
    /// decided on ([`Config::pull_retry`]).
    Pull { source: NodeId, seq: u64 },
}

/// Open instances re-sent per tick (the oldest ones).
pub const MAX_RESEND: usize = 16;
/// Delivered instances vouched for per [`Message::Fetch`].
pub const MAX_ANSWER: u64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Quorum(#[from] QuorumError),
    #[error(transparent)]
    Tally(#[from] TallyError),
    #[error("{members} members but the quorum system has {n} positions")]
    Size { members: usize, n: usize },
    #[error("duplicate member {0}")]
    Duplicate(NodeId),
}

/// Group configuration, shared (behind an `Arc`) by every member.
#[derive(Clone, Debug)]

pub struct Config {
    members: Vec<NodeId>,
    position: BTreeMap<NodeId, usize>,
    quorum: QuorumSystem,
    layout: TallyLayout,
    /// How far ahead of the next delivery (per source) instances may be opened
    /// (default 1024). It bounds what Byzantine members can make a process
    /// hold; a correct process that falls more than `window` broadcasts of one
    /// source behind drops that source's newer messages (reported as faults),
    /// as links do not retransmit.
    pub window: u64,
    /// Retransmission period (None, the default: links are reliable, nothing
    /// is re-sent; see the module docs).
    pub retransmit: Option<Time>,
    /// Delivered instances per source whose payloads are kept for lagging
    /// peers when retransmitting (default 4096).
    pub retain: u64,
    /// Bytes of kept payloads, over all sources (default 64 MiB): the oldest
    /// go first.
    pub retain_bytes: usize,
    /// Emit [`Record`]s for a durable driver (default off; see the module
    /// docs).
    pub persist: bool,
    /// Fetch-on-miss period (default 20 ms): a member that needs a payload
    /// it does not hold asks a quarter period after it first needs it (its
    /// SEND may just be late), then again every period; a member answers
    /// one peer's pulls for one instance at most once per half period (see
    /// [`pull`]).
    pub pull_retry: Time,
}

impl Config {
    /// Equal weights, f = ⌊(N−1)/3⌋ faults.
    pub fn new(members: Vec<NodeId>) -> Result<Self, ConfigError> {
        let f = members.len().saturating_sub(1) / 3;
        Self::with_f(members, f)
    }

    /// Equal weights and a given f (N ≥ 3f+1).
    pub fn with_f(members: Vec<NodeId>, f: usize) -> Result<Self, ConfigError> {
        let qs = QuorumSystem::classic(members.len(), f, FaultModel::Bft)?;
        Self::with_quorum(members, qs)
    }

    /// Any BFT quorum system (WHEAT weights up to 128 members).
    pub fn with_quorum(members: Vec<NodeId>, quorum: QuorumSystem) -> Result<Self, ConfigError> {
        if members.len() != quorum.n() {
            return Err(ConfigError::Size {
                members: members.len(),
                n: quorum.n(),
            });
        }
        let mut position = BTreeMap::new();
        for (i, m) in members.iter().enumerate() {
            if position.insert(*m, i).is_some() {
                return Err(ConfigError::Duplicate(*m));
            }
        }
        let layout = TallyLayout::new(&quorum)?;
        Ok(Config {
            members,
            position,
            quorum,
            layout,
            window: 1024,
            retransmit: None,
            retain: 4096,
            retain_bytes: 64 << 20,
            persist: false,
            pull_retry: 20 * byzscale_core::protocol::MILLIS,
        })
    }

    pub fn members(&self) -> &[NodeId] {
        &self.members
    }
    pub fn f(&self) -> usize {
        self.quorum.f
    }
    pub fn quorum(&self) -> &QuorumSystem {
        &self.quorum
    }
    /// Votes that turn ECHOs into a READY and READYs into a delivery.
    pub fn echo_threshold(&self) -> u64 {
        self.quorum.quorum()
    }
    /// READY votes that make a process ready without a quorum of ECHOs.
    pub fn ready_threshold(&self) -> u64 {
        self.quorum.weak()
    }
    pub fn deliver_threshold(&self) -> u64 {
        self.quorum.quorum()
    }
    fn pos(&self, n: NodeId) -> Option<usize> {
        self.position.get(&n).copied()
    }
}

/// Upper bound on distinct payloads kept per instance (only a Byzantine
/// source signs several; see the module docs, "Candidate payloads").
const MAX_PAYLOADS: usize = 4;

#[derive(Clone, Debug)]
struct Instance<P> {
    payloads: Payloads<P>,
    echoed: bool,
    readied: bool,
    echoes: Tally<Digest>,
    readies: Tally<Digest>,
    /// Catch-up vouches (members that delivered it, by digest).
    vouches: Tally<Digest>,
    /// READY quorum reached for this digest but its payload is not known yet.
    decided: Option<Digest>,
    /// What this member echoed and readied (for retransmission).
    my_echo: Option<Digest>,
    my_ready: Option<Digest>,
    /// The tick at which the instance was opened.
    opened: u64,
    /// The payload this member pulls (see [`pull`]).
    wanted: Option<pull::Wanted>,
}

/// One member's multi-shot Bracha broadcast. See the module docs.
#[derive(Clone, Debug)]
pub struct Bracha<P> {
    /// Own broadcasts, source order, statistics.
    ms: Multishot<P>,
    my_pos: usize,
    cfg: Arc<Config>,
    others: Vec<Addr>,
    instances: BTreeMap<(NodeId, u64), Instance<P>>,
    /// Retransmission ticks so far.
    tick: u64,
    /// Catch-up state: the payloads kept for lagging peers, the peers'
    /// frontiers, what was asked and answered.
    catchup: catchup::CatchUp<P>,
    /// Fetch-on-miss: when each peer's pull for an instance was last served.
    served: pull::Served,
}

impl<P: Payload> Bracha<P> {
    /// Panics if `me` is not a member (a configuration error, not input).
    pub fn new(me: NodeId, cfg: Arc<Config>) -> Self {
        let my_pos = cfg.pos(me).expect("Bracha::new: `me` must be a member");
        let others = cfg
            .members
            .iter()
            .filter(|m| **m != me)
            .map(|m| Addr::Node(*m))
            .collect();
        Bracha {
            ms: Multishot::new(me, cfg.window),
            my_pos,
            others,
            instances: BTreeMap::new(),
            tick: 0,
            catchup: catchup::CatchUp::new(),
            served: pull::Served::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Instances currently held (open, not yet complete).
    pub fn open_instances(&self) -> usize {
        self.instances.len()
    }

    fn fault(&mut self, cx: &mut Cx<'_, Self>, who: NodeId, kind: Fault, detail: String) {
        self.ms.stats.faults += 1;
        cx.fault(who, kind, detail);
    }

    /// Admission of a message about `(source, seq)` from `from`; `None` drops it.
    fn open(
        &mut self,
        cx: &mut Cx<'_, Self>,
        from: NodeId,
        source: NodeId,
        seq: u64,
    ) -> Option<()> {
        match self.ms.admit(source, seq, self.cfg.pos(source).is_some()) {
            Ok(true) => {}
            Ok(false) => return None,
            Err((why, detail)) => {
                self.fault(cx, from, why.into(), detail);
                return None;
            }
        }
        if !self.instances.contains_key(&(source, seq)) {
            let inst = self.new_instance();
            self.instances.insert((source, seq), inst);
            self.ms.stats.open_instances = self.instances.len() as u64;
        }
        Some(())
    }

    fn new_instance(&self) -> Instance<P> {
        Instance {
            payloads: Payloads::new(MAX_PAYLOADS),
            echoed: false,
            readied: false,
            echoes: Tally::new(&self.cfg.layout),
            readies: Tally::new(&self.cfg.layout),
            vouches: Tally::new(&self.cfg.layout),
            decided: None,
            my_echo: None,
            my_ready: None,
            opened: self.tick,
            wanted: None,
        }
    }

    /// Check a carried payload of an open instance (one signature check per
    /// distinct payload); its digest, or `None` if it was dropped.
    fn check(
        &mut self,
        cx: &mut Cx<'_, Self>,
        from: NodeId,
        source: NodeId,
        seq: u64,
        signed: &Signed<P>,
    ) -> Option<Digest> {
        let inst = self.instances.get(&(source, seq))?;
        match inst.payloads.check(cx.crypto(), source, seq, signed) {
            Ok(d) => Some(d),
            Err(Refused::BadSignature(d)) => {
                let detail = format!("{source}/{seq} payload {}", short(&d));
                self.fault(cx, from, Fault::BadSignature, detail);
                None
            }
        }
    }

    /// Keep the checked payload `d` of an open instance if it scores (see the
    /// module docs, "Candidate payloads"), and finish the instance if it was
    /// decided for `d`.
    fn keep(&mut self, cx: &mut Cx<'_, Self>, source: NodeId, seq: u64, d: Digest, s: Signed<P>) {
        let Some(inst) = self.instances.get_mut(&(source, seq)) else {
            return;
        };
        let pinned = [
            inst.my_echo,
            inst.decided,
            inst.wanted.as_ref().map(|w| w.digest),
        ];
        let echoes = &inst.echoes;
        let kept = inst
            .payloads
            .admit(d, s, |k| {
                if pinned.contains(&Some(*k)) {
                    u64::MAX
                } else {
                    echoes.votes(k)
                }
            })
            .is_some();
        if kept && inst.decided == Some(d) {
            self.finish(cx, source, seq, d);
        }
    }

    fn echo(
        &mut self,
        cx: &mut Cx<'_, Self>,
        source: NodeId,
        seq: u64,
        d: Digest,
        signed: Signed<P>,
    ) {
        let Some(inst) = self.instances.get_mut(&(source, seq)) else {
            return;
        };
        if inst.echoed {
            return;
        }
        inst.echoed = true;
        inst.my_echo = Some(d);
        // an own broadcast's echo was recorded with it (see `start`)
        if self.cfg.persist && source != self.ms.me {
            cx.persist(Record::Echoed {
                source,
                seq,
                signed: signed.clone(),
            });
        }
        self.keep(cx, source, seq, d, signed);
        cx.multicast(
            self.others.clone(),
            Message::Echo {
                source,
                seq,
                digest: d,
            },
        );
        self.count(
            cx,
            Ballot {
                phase: Phase::Echo,
                from: self.ms.me,
                pos: self.my_pos,
                source,
                seq,
                d,
            },
        );
    }

    /// Record `pos`'s ECHO, READY or vouch for `d`; returns the digest's
    /// votes, or None for a duplicate or an unknown instance. A second value
    /// from the same process is dropped and logged as a fault (a correct
    /// process votes once per round; counting more would only let a Byzantine
    /// one grow the tally and score its junk payloads).
    fn add_vote(&mut self, cx: &mut Cx<'_, Self>, b: Ballot) -> Option<u64> {
        let Ballot {
            phase,
            from,
            pos,
            source,
            seq,
            d,
        } = b;
        let inst = self.instances.get_mut(&(source, seq))?;
        let tally = match phase {
            Phase::Echo => &mut inst.echoes,
            Phase::Ready => &mut inst.readies,
            Phase::Vouch => &mut inst.vouches,
        };
        match tally.earlier(pos, &d) {
            Some(true) => return None,
            Some(false) => {
                let kind = match phase {
                    Phase::Echo => Fault::ConflictingEcho,
                    Phase::Ready => Fault::ConflictingReady,
                    Phase::Vouch => Fault::ConflictingVouch,
                };
                self.fault(cx, from, kind, format!("{source}/{seq}"));
                return None;
            }
            None => {}
        }
        match tally.add(&self.cfg.layout, pos, d) {
            Vote::Duplicate => None,
            Vote::Counted(v) | Vote::Conflict(v) => Some(v),
        }
    }

    fn ready(&mut self, cx: &mut Cx<'_, Self>, source: NodeId, seq: u64, d: Digest) {
        let Some(inst) = self.instances.get_mut(&(source, seq)) else {
            return;
        };
        if inst.readied {
            return;
        }
        inst.readied = true;
        inst.my_ready = Some(d);
        if self.cfg.persist {
            cx.persist(Record::Readied {
                source,
                seq,
                digest: d,
            });
        }
        cx.multicast(
            self.others.clone(),
            Message::Ready {
                source,
                seq,
                digest: d,
            },
        );
        // ready without the payload: it will be needed to deliver
        self.want(cx, source, seq, d);
        self.count(
            cx,
            Ballot {
                phase: Phase::Ready,
                from: self.ms.me,
                pos: self.my_pos,
                source,
                seq,
                d,
            },
        );
    }

    /// Count `from`'s ECHO or READY (`phase`) for `d`, and act on the
    /// thresholds it reaches: ready after an ECHO quorum or f+1 READYs, decide
    /// (deliver once the payload is held) after a READY quorum.
    fn count(&mut self, cx: &mut Cx<'_, Self>, b: Ballot) {
        let Some(votes) = self.add_vote(cx, b) else {
            return;
        };
        let Ballot {
            phase,
            source,
            seq,
            d,
            ..
        } = b;
        if matches!(phase, Phase::Echo) {
            if votes >= self.cfg.echo_threshold() {
                self.ready(cx, source, seq, d);
            }
            return;
        }
        if votes >= self.cfg.ready_threshold() {
            self.ready(cx, source, seq, d);
        }
        if votes >= self.cfg.deliver_threshold() {
            let Some(inst) = self.instances.get_mut(&(source, seq)) else {
                return;
            };
            if inst.payloads.contains(&d) {
                self.finish(cx, source, seq, d);
            } else {
                // at least f+1 correct processes echoed d and hold it: pull
                // it from them (or it comes with a late SEND)
                inst.decided = Some(d);
                self.want(cx, source, seq, d);
            }
        }
    }

    /// The instance completed with payload `d`: drop its state, deliver in order.
    fn finish(&mut self, cx: &mut Cx<'_, Self>, source: NodeId, seq: u64, d: Digest) {
        let Some(mut inst) = self.instances.remove(&(source, seq)) else {
            return;
        };
        self.ms.stats.open_instances = self.instances.len() as u64;
        self.ms.stats.collected += 1;
        if inst.wanted.is_some() {
            cx.cancel_timer(Timer::Pull { source, seq });
        }
        let Some(signed) = inst.payloads.take(&d) else {
            return;
        };
        let ready = self.ms.order.complete(source, seq, signed);
        self.deliver(cx, source, ready);
    }

    /// Deliver `ready` (in order, of `source`): recorded first, kept for
    /// lagging peers; then ask for more, and start own broadcasts waiting for
    /// the window.
    fn deliver(&mut self, cx: &mut Cx<'_, Self>, source: NodeId, ready: Vec<Delivery<P>>) {
        let bounds = (self.cfg.retain, self.cfg.retain_bytes);
        for delivery in ready {
            // kept for peers that pull it or catch up
            let kept = Some(self.catchup.kept_mut());
            let_out(cx, delivery, kept, bounds, self.cfg.persist);
        }
        self.fetch_more(cx, source);
        if source == self.ms.me {
            while let Some((seq, p)) = self.ms.unblocked() {
                self.start(seq, p, cx);
            }
        }
    }

    fn start(&mut self, seq: u64, payload: P, cx: &mut Cx<'_, Self>) {
        let signed = Signed::sign(cx.crypto(), self.ms.me, seq, payload);
        if self.cfg.persist {
            // the broadcast and its own echo, before the SEND
            cx.persist(Record::Echoed {
                source: self.ms.me,
                seq,
                signed: signed.clone(),
            });
        }
        cx.multicast(
            self.others.clone(),
            Message::Send {
                seq,
                signed: signed.clone(),
            },
        );
        let me = self.ms.me;
        self.on_send(cx, me, seq, signed);
    }
}

impl<P: Payload> Protocol for Bracha<P> {
    multishot_protocol_items!();

    fn on_message(&mut self, from: Addr, msg: Message<P>, cx: &mut Cx<'_, Self>) {
        let Some(from) = from.node().filter(|n| self.cfg.pos(*n).is_some()) else {
            self.ms.stats.faults += 1;
            cx.fault(from, Fault::NotAMember, "message from outside the group");
            return;
        };
        match msg {
            Message::Send { seq, signed } => self.on_send(cx, from, seq, signed),
            Message::Echo {
                source,
                seq,
                digest,
            } => self.on_vote(cx, Phase::Echo, from, source, seq, digest),
            Message::Ready {
                source,
                seq,
                digest,
            } => self.on_vote(cx, Phase::Ready, from, source, seq, digest),
            Message::Status { next } => self.on_status(cx, from, next),
            Message::Fetch { source, from: f } => self.on_fetch(cx, from, source, f),
            Message::Vouch {
                source,
                seq,
                signed,
            } => self.on_vouch(cx, from, source, seq, signed),
            Message::Pull {
                source,
                seq,
                digest,
            } => self.on_pull(cx, from, source, seq, digest),
            Message::Push {
                source,
                seq,
                signed,
            } => self.on_push(cx, from, (source, seq), signed),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Tick => self.on_tick(cx),
            Timer::Pull { source, seq } => self.on_pull_timer(cx, source, seq),
        }
    }
}

/// Retransmission (see the module docs).
impl<P: Payload> Bracha<P> {
    fn frontier(&self) -> Vec<u64> {
        self.cfg
            .members
            .iter()
            .map(|m| self.ms.order.next(*m))
            .collect()
    }

    fn on_tick(&mut self, cx: &mut Cx<'_, Self>) {
        let Some(period) = self.cfg.retransmit else {
            return;
        };
        self.tick += 1;
        // 1. own messages of instances open for a whole period
        let mut resent = 0;
        let mut out = Vec::new();
        for (&(source, seq), inst) in &self.instances {
            if inst.opened + 2 > self.tick {
                continue;
            }
            if resent >= MAX_RESEND {
                break;
            }
            resent += 1;
            if let Some(digest) = inst.my_echo {
                let own = inst.payloads.by_digest(&digest);
                if let Some(signed) = own.filter(|_| source == self.ms.me) {
                    out.push(Message::Send {
                        seq,
                        signed: signed.clone(),
                    });
                }
                out.push(Message::Echo {
                    source,
                    seq,
                    digest,
                });
            }
            if let Some(digest) = inst.my_ready {
                out.push(Message::Ready {
                    source,
                    seq,
                    digest,
                });
            }
        }
        // the transport drops the *oldest* queued frames on overflow: queue
        // the most needed (oldest) instances last
        for m in out.into_iter().rev() {
            cx.multicast(self.others.clone(), m);
        }
        // 2. the frontier
        cx.multicast(
            self.others.clone(),
            Message::Status {
                next: self.frontier(),
            },
        );
        // 3. catch up where stuck; forget what every peer has delivered
        self.fetch_stuck(cx);
        let others: Vec<NodeId> = self.others.iter().filter_map(|a| a.node()).collect();
        self.catchup
            .forget_delivered(&self.cfg, &others, &self.ms.order);
        cx.set_timer(Timer::Tick, period);
    }

    fn on_status(&mut self, cx: &mut Cx<'_, Self>, from: NodeId, next: Vec<u64>) {
        if self.cfg.retransmit.is_none() {
            return;
        }
        if next.len() != self.cfg.members.len() {
            self.fault(
                cx,
                from,
                Fault::BadStatus,
                format!(
                    "{} entries for {} members",
                    next.len(),
                    self.cfg.members.len()
                ),
            );
            return;
        }
        self.catchup.status(from, next);
    }
}

impl<P: Payload> Bracha<P> {
    /// `from`'s ECHO or READY (`phase`) for digest `d` of `(source, seq)`.
    fn on_vote(
        &mut self,
        cx: &mut Cx<'_, Self>,
        phase: Phase,
        from: NodeId,
        source: NodeId,
        seq: u64,
        d: Digest,
    ) {
        if self.open(cx, from, source, seq).is_none() {
            return;
        }
        let pos = self.cfg.pos(from).unwrap_or(usize::MAX);
        let b = Ballot {
            phase,
            from,
            pos,
            source,
            seq,
            d,
        };
        self.count(cx, b);
    }

    fn on_send(&mut self, cx: &mut Cx<'_, Self>, from: NodeId, seq: u64, signed: Signed<P>) {
        // the source is whoever sent the SEND (the channel authenticates it)
        let source = from;
        if self.open(cx, from, source, seq).is_none() {
            return;
        }
        // once echoed, further SENDs are ignored (a correct source sends one
        // payload; its copies come with the ECHOs)
        if self.instances.get(&(source, seq)).is_some_and(|i| i.echoed) {
            return;
        }
        let Some(d) = self.check(cx, from, source, seq, &signed) else {
            return;
        };
        self.echo(cx, source, seq, d, signed);
    }
}

secure_broadcast_via_multishot!(Bracha, "bracha");

/// Which of Bracha's two vote rounds (or catch-up's vouches) a message
/// belongs to.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Echo,
    Ready,
    Vouch,
}

/// One vote: member `from` (at position `pos`) votes in `phase` for digest
/// `d` of instance `(source, seq)`.
#[derive(Clone, Copy, Debug)]
struct Ballot {
    phase: Phase,
    from: NodeId,
    pos: usize,
    source: NodeId,
    seq: u64,
    d: Digest,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::SecureBroadcast;
    use crate::testing::{crypto, group, ids, net};
    use byzscale_core::crypto::Crypto;
    use byzscale_core::protocol::Effect;
    use byzscale_sim::engine::{Control, NodeIdx, Sim};
    use byzscale_sim::net_model::Partition;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    type S = Sim<Message<u32>, u32, Delivery<u32>>;

    /// Deliveries per member: (source, seq, payload).
    type Seen = BTreeMap<NodeId, Vec<(NodeId, u64, u32)>>;

    /// Runs `sim` until `until` and collects what each member delivered.
    fn deliveries(sim: &mut S, until: Time) -> Seen {
        let mut seen: Seen = BTreeMap::new();
        let mut obs = |_: Time, at: NodeIdx, _: Addr, d: Delivery<u32>, _: &mut Control<u32>| {
            seen.entry(NodeId(at.0))
                .or_default()
                .push((d.source, d.seq, d.payload));
        };
        sim.run_until(until, &mut obs);
        seen
    }

    #[test]
    fn thresholds_follow_the_quorum_system() {
        let c4 = Config::new(ids(4)).unwrap();
        assert_eq!(
            (
                c4.f(),
                c4.echo_threshold(),
                c4.ready_threshold(),
                c4.deliver_threshold()
            ),
            (1, 3, 2, 3)
        );
        let c10 = Config::new(ids(10)).unwrap();
        assert_eq!(
            (
                c10.f(),
                c10.echo_threshold(),
                c10.ready_threshold(),
                c10.deliver_threshold()
            ),
            (3, 7, 4, 7)
        );
        // N > 3f+1: ⌈(N+f+1)/2⌉ echoes, f+1 readies to amplify
        let c = Config::with_f(ids(10), 2).unwrap();
        assert_eq!((c.echo_threshold(), c.ready_threshold()), (7, 3));
        let big = Config::new(ids(1000)).unwrap();
        assert_eq!(
            (big.f(), big.echo_threshold(), big.ready_threshold()),
            (333, 667, 334)
        );
        assert!(Config::with_f(ids(6), 2).is_err(), "N = 3f is not enough");
        assert!(Config::new(vec![NodeId(1), NodeId(1)]).is_err());
    }

    fn run(n: u32, per_node: u32, seed: u64) -> S {
        let cfg = Arc::new(Config::new(ids(n)).unwrap());
        let mut sim = group(seed, n, &ids(n), net(), |i| Bracha::new(i, cfg.clone()));
        for i in ids(n) {
            for k in 0..per_node {
                sim.schedule_input(0, NodeIdx(i.0), i.0 * 100 + k);
            }
        }
        sim
    }

    #[test]
    fn everyone_delivers_everything_in_source_order() {
        let (n, k) = (7, 3);
        let mut sim = run(n, k, 1);
        let seen = deliveries(&mut sim, Time::MAX);
        assert_eq!(sim.stats().faults, 0, "{:?}", sim.stats().fault_log);
        assert_eq!(seen.len(), n as usize);
        for ds in seen.values() {
            assert_eq!(ds.len(), (n * k) as usize);
            for s in ids(n) {
                let mine: Vec<_> = ds.iter().filter(|d| d.0 == s).map(|d| (d.1, d.2)).collect();
                assert_eq!(
                    mine,
                    (0..k)
                        .map(|j| (j as u64 + 1, s.0 * 100 + j))
                        .collect::<Vec<_>>()
                );
            }
        }
        for i in ids(n) {
            let b = sim.protocol::<Bracha<u32>>(NodeIdx(i.0)).unwrap();
            assert_eq!(b.open_instances(), 0, "completed instances are dropped");
            assert_eq!(b.stats().delivered, (n * k) as u64);
            // per broadcast: SEND from the source, ECHO and READY from everyone
            let c = &sim.stats().per_node[i.0 as usize];
            assert_eq!(
                c.sent,
                (k as u64) * (n as u64 - 1) + 2 * (n * k) as u64 * (n as u64 - 1)
            );
        }
    }

    /// N = 4, each member broadcasts `k` values over links that lose
    /// messages (all of them to and from node 3 until `cut` ns, and a share
    /// `loss` of all); returns what each member delivered by `until` and how
    /// many messages were lost.
    fn lossy(
        seed: u64,
        retransmit: Option<Time>,
        loss: f64,
        cut: Time,
        until: Time,
    ) -> (Seen, u64) {
        use byzscale_core::protocol::MILLIS;
        let cfg = {
            let mut c = Config::new(ids(4)).unwrap();
            c.retransmit = retransmit;
            Arc::new(c)
        };
        let others = ids(3).into_iter().map(Addr::Node).collect();
        let cut_off = Partition::new(0, cut, vec![vec![Addr::Node(NodeId(3))], others]);
        let net = net().with_loss(loss).with_partition(cut_off);
        let mut sim = group(seed, 4, &ids(4), net, |i| Bracha::new(i, cfg.clone()));
        for i in ids(4) {
            for k in 0..5 {
                sim.schedule_input(k * MILLIS, NodeIdx(i.0), i.0 * 100 + k as u32);
            }
        }
        let seen = deliveries(&mut sim, until);
        let st = sim.stats();
        assert_eq!(st.faults, 0, "{:?}", st.fault_log.first());
        (seen, st.dropped())
    }

    fn complete(seen: &Seen) -> bool {
        ids(4).iter().all(|i| {
            seen.get(i).is_some_and(|ds| {
                ds.len() == 20
                    && ids(4).iter().all(|s| {
                        let mine: Vec<_> = ds
                            .iter()
                            .filter(|d| d.0 == *s)
                            .map(|d| (d.1, d.2))
                            .collect();
                        mine == (0..5u32)
                            .map(|j| (j as u64 + 1, s.0 * 100 + j))
                            .collect::<Vec<_>>()
                    })
            })
        })
    }

    #[test]
    fn retransmission_delivers_over_lossy_links() {
        use byzscale_core::protocol::{MILLIS, SECS};
        let mut stalled_without = 0;
        for seed in 0..5 {
            // 30% of all messages lost, and everything to and from node 3 for
            // the first 100 ms: node 3 catches up from the others' answers to
            // its STATUS after they have all delivered
            let (seen, dropped) = lossy(seed, Some(5 * MILLIS), 0.3, 100 * MILLIS, 2 * SECS);
            assert!(dropped > 100, "seed {seed}: the links lost messages");
            assert!(complete(&seen), "seed {seed}: {seen:?}");
            let (seen, _) = lossy(seed, None, 0.3, 100 * MILLIS, 2 * SECS);
            if !complete(&seen) {
                stalled_without += 1;
            }
        }
        assert!(
            stalled_without > 0,
            "without retransmission lost messages stall instances"
        );
    }

    /// A member with retransmission and durable records.
    fn retransmitting() -> One {
        use byzscale_core::protocol::MILLIS;
        let cfg = {
            let mut c = Config::new(ids(4)).unwrap();
            c.retransmit = Some(10 * MILLIS);
            c.persist = true;
            Arc::new(c)
        };
        One {
            b: Bracha::new(NodeId(0), cfg),
            crypto: crypto(NodeId(0), 4),
            rng: ChaCha8Rng::seed_from_u64(0),
            fx: Vec::new(),
        }
    }

    #[test]
    fn fetches_are_answered_with_vouches_once_per_tick() {
        let mut p = retransmitting();
        p.msg(2, Message::Status { next: vec![1, 1] });
        assert_eq!(p.faults(), vec!["bracha-bad-status"]);
        // node 0 delivers 1/1 (echo from the SEND, readies from 2 and 3)
        let (s, _) = p.deliver_from_1(1, 42);
        assert_eq!(p.delivered(), vec![42]);
        // node 2 asks for source 1 from 1: one vouch; asking again in the
        // same tick gets nothing
        p.fx.clear();
        let fetch = Message::Fetch {
            source: NodeId(1),
            from: 1,
        };
        p.msg(2, fetch.clone());
        let vouch = Message::Vouch {
            source: NodeId(1),
            seq: 1,
            signed: s,
        };
        let sent: Vec<_> =
            p.fx.iter()
                .filter_map(|e| match e {
                    Effect::Send { to, msg } => Some((*to, msg.clone())),
                    _ => None,
                })
                .collect();
        assert_eq!(sent, vec![(Addr::Node(NodeId(2)), vouch)]);
        p.msg(2, fetch);
        assert_eq!(p.sent(), 1, "answered at most once per tick");
        p.msg(
            2,
            Message::Fetch {
                source: NodeId(9),
                from: 1,
            },
        );
        assert_eq!(p.faults(), vec!["bracha-unknown-source"]);
    }

    /// The transport drops the oldest queued frames of a slow link: the
    /// vouch a lagging member needs first (its frontier) must be queued last.
    /// Sent first, it was the one lost on every ask, and a member behind a
    /// loaded link never caught up (at2_deployment, frames dropped).
    #[test]
    fn vouches_queue_the_requesters_frontier_last() {
        let mut p = retransmitting();
        for seq in 1..=3u64 {
            p.deliver_from_1(seq, 40 + seq as u32);
        }
        assert_eq!(p.delivered(), vec![41, 42, 43]);
        p.fx.clear();
        p.msg(
            2,
            Message::Fetch {
                source: NodeId(1),
                from: 1,
            },
        );
        let order: Vec<u64> =
            p.fx.iter()
                .filter_map(|e| match e {
                    Effect::Send {
                        msg: Message::Vouch { seq, .. },
                        ..
                    } => Some(*seq),
                    _ => None,
                })
                .collect();
        assert_eq!(order, vec![3, 2, 1]);
    }

    #[test]
    fn f_plus_one_vouches_deliver_and_a_stuck_member_fetches() {
        let mut p = retransmitting();
        let s = signed_by(1, 1, 42);
        let vouch = |signed: &Signed<u32>| Message::Vouch {
            source: NodeId(1),
            seq: 1,
            signed: signed.clone(),
        };
        p.msg(2, vouch(&s));
        assert!(p.delivered().is_empty(), "one vouch may be a Byzantine one");
        // a second payload the (Byzantine) source signed, vouched by 2 again
        p.msg(2, vouch(&signed_by(1, 1, 7)));
        assert_eq!(p.faults(), vec!["bracha-conflicting-vouch"]);
        p.msg(3, vouch(&s));
        assert_eq!(p.delivered(), vec![42], "f+1 vouches");
        let recorded =
            p.fx.iter()
                .filter(|e| matches!(e, Effect::Persist(Record::Delivered { seq: 1, .. })))
                .count();
        assert_eq!(recorded, 1, "the delivery is recorded");
        // node 2 says it is at 5 for source 1: after a tick without progress
        // node 0 asks it (and only it) for the rest
        p.msg(
            2,
            Message::Status {
                next: vec![1, 5, 1, 1],
            },
        );
        p.fx.clear();
        p.tick();
        assert!(!p.fx.iter().any(|e| matches!(
            e,
            Effect::Multicast {
                msg: Message::Fetch { .. },
                ..
            }
        )));
        p.tick();
        let fetches: Vec<_> =
            p.fx.iter()
                .filter_map(|e| match e {
                    Effect::Multicast {
                        to,
                        msg: Message::Fetch { source, from },
                    } => Some((to.clone(), *source, *from)),
                    _ => None,
                })
                .collect();
        assert_eq!(fetches, vec![(vec![Addr::Node(NodeId(2))], NodeId(1), 2)]);
    }

    #[test]
    fn the_window_backlogs_own_broadcasts() {
        let cfg = {
            let mut c = Config::new(ids(4)).unwrap();
            c.window = 2;
            Arc::new(c)
        };
        let mut sim = group(5, 4, &ids(4), net(), |i| Bracha::new(i, cfg.clone()));
        for k in 0..6 {
            sim.schedule_input(0, NodeIdx(0), k);
        }
        let got = deliveries(&mut sim, Time::MAX);
        for i in ids(4) {
            let payloads: Vec<u32> = got[&i].iter().map(|d| d.2).collect();
            assert_eq!(payloads, (0..6).collect::<Vec<_>>(), "{i}");
        }
        // receivers that lag more than the window behind drop (and report)
        // messages of later instances; quorums still form here
    }

    struct One {
        b: Bracha<u32>,
        crypto: Crypto,
        rng: ChaCha8Rng,
        fx: Vec<Effect<Bracha<u32>>>,
    }

    impl One {
        fn new(n: u32) -> Self {
            let cfg = Arc::new(Config::new(ids(n)).unwrap());
            One {
                b: Bracha::new(NodeId(0), cfg),
                crypto: crypto(NodeId(0), n),
                rng: ChaCha8Rng::seed_from_u64(0),
                fx: Vec::new(),
            }
        }
        fn msg(&mut self, from: u32, m: Message<u32>) {
            self.msg_at(0, from, m);
        }
        fn msg_at(&mut self, now: Time, from: u32, m: Message<u32>) {
            let mut cx = Cx::new(now, &mut self.rng, &self.crypto, &mut self.fx);
            self.b.on_message(Addr::Node(NodeId(from)), m, &mut cx);
        }
        fn tick(&mut self) {
            self.fire(Timer::Tick);
        }
        fn fire(&mut self, t: Timer) {
            let mut cx = Cx::new(0, &mut self.rng, &self.crypto, &mut self.fx);
            self.b.on_timer(t, &mut cx);
        }
        /// The peers asked by the PULLs among the effects, in order.
        fn pulled_from(&self) -> Vec<NodeId> {
            self.fx
                .iter()
                .filter_map(|e| match e {
                    Effect::Multicast {
                        to,
                        msg: Message::Pull { .. },
                    } => Some(to.iter().filter_map(|a| a.node()).collect::<Vec<_>>()),
                    _ => None,
                })
                .flatten()
                .collect()
        }
        fn faults(&self) -> Vec<&'static str> {
            crate::testing::fault_names(&self.fx)
        }
        /// READYs for `d` of `(1, seq)` from each of `from`.
        fn readies(&mut self, seq: u64, d: Digest, from: &[u32]) {
            for f in from {
                let digest = d;
                let source = NodeId(1);
                self.msg(
                    *f,
                    Message::Ready {
                        source,
                        seq,
                        digest,
                    },
                );
            }
        }
        /// Deliver `v` as `(1, seq)`: its SEND, then READYs from 2 and 3.
        fn deliver_from_1(&mut self, seq: u64, v: u32) -> (Signed<u32>, Digest) {
            let s = signed_by(1, seq, v);
            let d = s.digest(&self.crypto, NodeId(1), seq);
            let signed = s.clone();
            self.msg(1, Message::Send { seq, signed });
            self.readies(seq, d, &[2, 3]);
            (s, d)
        }
        fn sent(&self) -> usize {
            self.fx
                .iter()
                .filter(|e| matches!(e, Effect::Multicast { .. } | Effect::Send { .. }))
                .count()
        }
        fn delivered(&self) -> Vec<u32> {
            self.fx
                .iter()
                .filter_map(|e| {
                    if let Effect::Output(d) = e {
                        Some(d.payload)
                    } else {
                        None
                    }
                })
                .collect()
        }
    }

    fn signed_by(src: u32, seq: u64, v: u32) -> Signed<u32> {
        Signed::sign(&crypto(NodeId(src), 4), NodeId(src), seq, v)
    }

    #[test]
    fn byzantine_inputs_are_dropped_and_reported() {
        let mut p = One::new(4);
        // a SEND whose signature is not the sender's
        let forged = Signed {
            payload: 9,
            sig: signed_by(2, 1, 9).sig,
        };
        p.msg(
            1,
            Message::Send {
                seq: 1,
                signed: forged,
            },
        );
        assert_eq!(p.faults(), vec!["bracha-bad-signature"]);
        assert_eq!(p.sent(), 0, "no echo for a forged payload");
        // outside the group, outside the window, seq 0, unknown source
        p.fx.clear();
        p.msg(
            7,
            Message::Ready {
                source: NodeId(1),
                seq: 1,
                digest: [0; 32],
            },
        );
        p.msg(
            1,
            Message::Send {
                seq: 100_000,
                signed: signed_by(1, 100_000, 1),
            },
        );
        p.msg(
            1,
            Message::Send {
                seq: 0,
                signed: signed_by(1, 0, 1),
            },
        );
        p.msg(
            1,
            Message::Ready {
                source: NodeId(9),
                seq: 1,
                digest: [0; 32],
            },
        );
        assert_eq!(
            p.faults(),
            vec![
                "bracha-not-a-member",
                "bracha-window",
                "bracha-window",
                "bracha-unknown-source"
            ]
        );
        assert_eq!(p.sent(), 0);
        // an echo that conflicts with the same member's earlier echo
        p.fx.clear();
        p.msg(
            2,
            Message::Echo {
                source: NodeId(1),
                seq: 1,
                digest: [5; 32],
            },
        );
        p.msg(
            2,
            Message::Echo {
                source: NodeId(1),
                seq: 1,
                digest: [6; 32],
            },
        );
        assert_eq!(p.faults(), vec!["bracha-conflicting-echo"]);
        // f = 1 READYs for a digest nobody echoed neither make us ready nor deliver
        p.fx.clear();
        p.msg(
            3,
            Message::Ready {
                source: NodeId(1),
                seq: 2,
                digest: [7; 32],
            },
        );
        assert_eq!(p.sent(), 0);
        assert!(p.delivered().is_empty());
    }

    /// Issue 10 item 10: a Byzantine source (node 1) fills the victim's
    /// payload table with junk it signed (SENDs and ECHOs) before the payload
    /// the correct members echo and ready arrives; the victim must still
    /// deliver that payload, whether its ECHOs come before the READY quorum
    /// or after. Before, the table refused payloads beyond four and the
    /// victim never delivered.
    #[test]
    fn junk_a_byzantine_source_signed_does_not_deny_the_delivered_payload() {
        let mut p = One::new(4);
        let c1 = crypto(NodeId(1), 4);
        for seq in [1u64, 2] {
            // the junk: a SEND the victim echoes, more SENDs, ECHOs from 1
            for v in 0..6 {
                p.msg(
                    1,
                    Message::Send {
                        seq,
                        signed: signed_by(1, seq, 1000 + v),
                    },
                );
            }
            for v in 6..9 {
                let junk = signed_by(1, seq, 1000 + v).digest(&c1, NodeId(1), seq);
                p.msg(
                    1,
                    Message::Echo {
                        source: NodeId(1),
                        seq,
                        digest: junk,
                    },
                );
            }
            let m = signed_by(1, seq, 42 + seq as u32);
            let d = m.digest(&c1, NodeId(1), seq);
            let echo = |from: u32, p: &mut One| {
                p.msg(
                    from,
                    Message::Echo {
                        source: NodeId(1),
                        seq,
                        digest: d,
                    },
                )
            };
            // the payload: pulled from whoever is asked first
            let pulled = |p: &mut One| {
                p.fire(Timer::Pull {
                    source: NodeId(1),
                    seq,
                });
                let asked = *p.pulled_from().last().unwrap();
                let signed = m.clone();
                let push = Message::Push {
                    source: NodeId(1),
                    seq,
                    signed,
                };
                p.msg(asked.0, push);
            };
            let readies = |p: &mut One| {
                for from in [1, 2, 3] {
                    p.msg(
                        from,
                        Message::Ready {
                            source: NodeId(1),
                            seq,
                            digest: d,
                        },
                    );
                }
            };
            if seq == 1 {
                // m's ECHOs first, then the READY quorum
                echo(2, &mut p);
                echo(3, &mut p);
                readies(&mut p);
                pulled(&mut p);
            } else {
                // the READY quorum first, then one copy of m
                readies(&mut p);
                assert_eq!(p.delivered(), vec![43], "not before its payload");
                echo(2, &mut p);
                pulled(&mut p);
            }
        }
        assert_eq!(p.delivered(), vec![43, 44]);
        assert!(p.faults().contains(&"bracha-conflicting-echo"));
    }

    #[test]
    fn ready_amplification_and_late_payload() {
        // node 0 gets f+1 = 2 READYs: it becomes ready; with a quorum (3,
        // counting its own) it decides, but delivers only once an ECHO brings
        // the payload
        let mut p = One::new(4);
        let s = signed_by(1, 1, 42);
        let d = s.digest(&p.crypto, NodeId(1), 1);
        p.msg(
            2,
            Message::Ready {
                source: NodeId(1),
                seq: 1,
                digest: d,
            },
        );
        assert_eq!(p.sent(), 0);
        p.msg(
            3,
            Message::Ready {
                source: NodeId(1),
                seq: 1,
                digest: d,
            },
        );
        assert_eq!(p.sent(), 1, "READY amplification");
        assert!(p.delivered().is_empty(), "payload not known yet");
        // it pulls the payload from a member that readied it, which pushes it
        p.fire(Timer::Pull {
            source: NodeId(1),
            seq: 1,
        });
        assert_eq!(p.pulled_from(), vec![NodeId(2)]);
        p.msg(
            2,
            Message::Push {
                source: NodeId(1),
                seq: 1,
                signed: s,
            },
        );
        assert_eq!(p.delivered(), vec![42]);
        // late messages for a completed instance are ignored quietly
        p.fx.clear();
        p.msg(
            1,
            Message::Ready {
                source: NodeId(1),
                seq: 1,
                digest: d,
            },
        );
        assert!(p.fx.is_empty());
    }

    /// The SEND of a Byzantine source reaches only f+1 = 2 correct members
    /// of N = 4 (modelled by cutting the link 0–3 for the whole run, so 3's
    /// own SENDs miss 0 as well): the members left out decide on the READYs
    /// and pull the payloads; everyone delivers the same in source order.
    #[test]
    fn a_member_left_out_of_the_send_pulls_the_payload() {
        for seed in 0..5 {
            let cfg = Arc::new(Config::new(ids(4)).unwrap());
            let cut = Partition::new(
                0,
                Time::MAX,
                vec![vec![Addr::Node(NodeId(0))], vec![Addr::Node(NodeId(3))]],
            );
            let net = net().with_partition(cut);
            let mut sim = group(seed, 4, &ids(4), net, |i| Bracha::new(i, cfg.clone()));
            for i in ids(4) {
                for k in 0..3 {
                    sim.schedule_input(0, NodeIdx(i.0), i.0 * 100 + k);
                }
            }
            let seen = deliveries(&mut sim, Time::MAX);
            assert_eq!(sim.stats().faults, 0, "{:?}", sim.stats().fault_log);
            for i in ids(4) {
                let ds = &seen[&i];
                for s in ids(4) {
                    let mine: Vec<_> = ds.iter().filter(|d| d.0 == s).map(|d| (d.1, d.2)).collect();
                    let want: Vec<_> = (0..3).map(|j| (j as u64 + 1, s.0 * 100 + j)).collect();
                    assert_eq!(mine, want, "seed {seed}: {i} from {s}");
                }
                let st = sim.protocol::<Bracha<u32>>(NodeIdx(i.0)).unwrap().stats();
                // 0 and 3 pull each other's three payloads, 1 and 2 nothing
                let expect = if i.0 == 0 || i.0 == 3 { 3 } else { 0 };
                assert_eq!(st.pulled, expect, "seed {seed}: {i} pulled");
                assert!(st.pulls >= st.pulled, "seed {seed}: {i} {st:?}");
            }
        }
    }

    /// A member decided on a digest it does not hold; the first peer it
    /// asks pushes another payload the source signed: it is reported by
    /// name and the member asks the next peers at once, one of which
    /// delivers.
    #[test]
    fn a_wrong_push_is_reported_and_another_peer_supplies_the_payload() {
        let mut p = One::new(4);
        let s = signed_by(1, 1, 42);
        let d = s.digest(&p.crypto, NodeId(1), 1);
        p.readies(1, d, &[2, 3]);
        p.fire(Timer::Pull {
            source: NodeId(1),
            seq: 1,
        });
        assert_eq!(p.pulled_from(), vec![NodeId(2)]);
        p.fx.clear();
        let push = |signed: Signed<u32>| Message::Push {
            source: NodeId(1),
            seq: 1,
            signed,
        };
        p.msg(2, push(signed_by(1, 1, 7)));
        let culprits: Vec<_> =
            p.fx.iter()
                .filter_map(|e| match e {
                    Effect::Fault(f) => Some((f.name(), f.node)),
                    _ => None,
                })
                .collect();
        assert_eq!(
            culprits,
            vec![("bracha-wrong-payload", Addr::Node(NodeId(2)))]
        );
        assert!(p.delivered().is_empty());
        // the next round at once: two peers (f+1), rotating past node 2
        assert_eq!(p.pulled_from(), vec![NodeId(3), NodeId(1)]);
        // the right payload under a forged signature is refused too
        let forged = Signed {
            payload: 42,
            sig: signed_by(1, 1, 7).sig,
        };
        p.msg(1, push(forged));
        assert!(p.faults().contains(&"bracha-bad-signature"));
        p.msg(3, push(s.clone()));
        assert_eq!(p.delivered(), vec![42]);
        assert_eq!(p.b.stats().pulled, 1);
        // a late copy is ignored quietly
        let before = p.faults().len();
        p.msg(1, push(s));
        assert_eq!(p.faults().len(), before);
        assert_eq!(p.delivered(), vec![42]);
    }

    /// A member serves one peer's pull of one instance at most once per
    /// half period, reports the flood, and bounds what it remembers.
    #[test]
    fn pulls_are_served_once_per_half_period_and_bounded() {
        use byzscale_core::protocol::MILLIS;
        let mut p = One::new(4);
        let (_, d) = p.deliver_from_1(1, 42);
        assert_eq!(p.delivered(), vec![42]);
        let pull = Message::Pull {
            source: NodeId(1),
            seq: 1,
            digest: d,
        };
        let pushes = |p: &One| {
            p.fx.iter()
                .filter(|e| {
                    matches!(
                        e,
                        Effect::Send {
                            msg: Message::Push { .. },
                            ..
                        }
                    )
                })
                .count()
        };
        p.fx.clear();
        p.msg_at(0, 2, pull.clone());
        assert_eq!(pushes(&p), 1, "a delivered payload is served");
        p.msg_at(MILLIS, 2, pull.clone());
        p.msg_at(2 * MILLIS, 2, pull.clone());
        assert_eq!(pushes(&p), 1);
        assert_eq!(p.faults(), vec!["bracha-pull-flood"; 2]);
        p.msg_at(MILLIS, 3, pull.clone());
        assert_eq!(pushes(&p), 2, "another peer is served");
        let half = p.b.config().pull_retry / 2;
        p.msg_at(half, 2, pull.clone());
        assert_eq!(pushes(&p), 3, "after half a period, again");
        // a pull for a digest it does not hold gets nothing
        let other = Message::Pull {
            source: NodeId(1),
            seq: 1,
            digest: [9; 32],
        };
        p.msg_at(half, 1, other);
        assert_eq!(pushes(&p), 3);
        // pulls of ever new instances fill the table only up to its bound
        for seq in 0..(pull::MAX_SERVED as u64 + 100) {
            let m = Message::Pull {
                source: NodeId(1),
                seq,
                digest: d,
            };
            p.msg_at(half + 1, 2, m);
        }
        assert!(p.b.served_pulls() <= pull::MAX_SERVED);
        assert_eq!(pushes(&p), 3);
    }

    #[test]
    fn an_equivocating_source_cannot_split_correct_processes() {
        // N = 4, f = 1: the Byzantine source 3 sends value 1 to {0, 1} and 2 to
        // {2}; whatever the schedule, correct processes never deliver two values
        for seed in 0..50u64 {
            let cfg = Arc::new(Config::new(ids(4)).unwrap());
            let mut sim = group(seed, 4, &ids(3), net(), |i| Bracha::new(i, cfg.clone()));
            let a = signed_by(3, 1, 1);
            let b = signed_by(3, 1, 2);
            // deliver the equivocating SENDs directly through each node's handler
            for (to, s) in [(0u32, a.clone()), (1, a.clone()), (2, b.clone())] {
                let node = sim.protocol_mut::<Bracha<u32>>(NodeIdx(to)).unwrap();
                let c = crypto(NodeId(to), 4);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut fx = Vec::new();
                let mut cx = Cx::new(0, &mut rng, &c, &mut fx);
                node.on_message(
                    Addr::Node(NodeId(3)),
                    Message::Send { seq: 1, signed: s },
                    &mut cx,
                );
                for e in fx {
                    if let Effect::Multicast { to: dst, msg } = e {
                        for a in dst {
                            if let Some(n) = a.node().filter(|n| n.0 < 3) {
                                let mut fx2 = Vec::new();
                                let c2 = crypto(n, 4);
                                let mut cx2 = Cx::new(0, &mut rng, &c2, &mut fx2);
                                let peer = sim.protocol_mut::<Bracha<u32>>(NodeIdx(n.0));
                                peer.unwrap().on_message(
                                    Addr::Node(NodeId(to)),
                                    msg.clone(),
                                    &mut cx2,
                                );
                            }
                        }
                    }
                }
            }
            let got: BTreeMap<NodeId, Vec<u32>> = deliveries(&mut sim, Time::MAX)
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().map(|d| d.2).collect()))
                .collect();
            let values: std::collections::BTreeSet<_> = got.values().flatten().collect();
            assert!(values.len() <= 1, "seed {seed}: {got:?}");
        }
    }
}
