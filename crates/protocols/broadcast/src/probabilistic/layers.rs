//! The three single-shot layers of the probabilistic stack (thesis chapter 4),
//! one instance each per `(source, seq)`. They hold digests and node sets only;
//! the verified payloads live in the instance's `known` map kept by
//! [`crate::multishot`], which also checks every signature before a layer sees
//! a message.
//!
//! | layer | thesis | DISC'19 / EPFL crates | property it adds |
//! |---|---|---|---|
//! | [`MurmurInstance`] | Algorithm 6, Erdős–Rényi Gossip (§4.3) | Murmur | dissemination (ε-totality for a correct sender) |
//! | [`SieveInstance`] | Algorithm 8, Echo Broadcast (§4.4) | Sieve | consistency |
//! | [`ContagionInstance`] | Algorithm 9, Ready Broadcast (§4.5) | Contagion | totality |

use super::fault::Fault;
use crate::probabilistic::params::ContagionParams;
use crate::probabilistic::sampling::{Multiset, Oracle};
use byzscale_core::NodeId;
use rand::RngCore;

/// A verified payload of the instance, by its index in the instance's list of
/// candidates (at most [`MAX_CANDIDATES`]; a correct source signs one). Layers
/// work on indices so that their per-member state is a byte.
pub type Cand = u8;

/// Distinct verified payloads held per instance.
pub const MAX_CANDIDATES: usize = 8;

/// A set of candidates.
type Mask = u8;

fn bit(c: Cand) -> Mask {
    1 << (c as u32 % MAX_CANDIDATES as u32)
}

/// A message body as a layer sees it, after the multi-shot wrapper verified
/// the source signature of any payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum In {
    GossipSubscribe,
    Gossip(Cand),
    EchoSubscribe,
    Echo(Cand),
    ReadySubscribe,
    Ready(Cand),
}

/// A vote for a candidate, as the multi-shot wrapper scores candidates it
/// does not hold (see [`Layer::weight`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Vote {
    Echo,
    Ready,
}

/// What a layer wants sent: the same bodies; the wrapper attaches the
/// payload for `Gossip`, `Echo` and `Ready` and the instance id.
pub type OutBody = In;

/// A sorted set of processes (subscribers, gossip neighbours).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSet(Vec<NodeId>);

impl NodeSet {
    pub fn insert(&mut self, n: NodeId) -> bool {
        match self.0.binary_search(&n) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, n);
                true
            }
        }
    }
    pub fn contains(&self, n: &NodeId) -> bool {
        self.0.binary_search(n).is_ok()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn to_vec(&self) -> Vec<NodeId> {
        self.0.clone()
    }
    pub fn iter(&self) -> impl Iterator<Item = &NodeId> {
        self.0.iter()
    }
    /// `from` subscribes (a `*Subscribe` message): answer with what this
    /// process already sent its subscribers, and add it.
    fn subscribe(
        &mut self,
        from: NodeId,
        sent: impl IntoIterator<Item = OutBody>,
        cx: &mut LayerCx<'_>,
    ) -> Option<Cand> {
        for body in sent {
            cx.send(from, body);
        }
        self.insert(from);
        None
    }
}

/// The context of one layer step.
pub struct LayerCx<'a> {
    pub rng: &'a mut dyn RngCore,
    pub oracle: &'a Oracle,
    pub params: &'a ContagionParams,
    pub out: &'a mut Vec<(Vec<NodeId>, OutBody)>,
    pub faults: &'a mut Vec<(NodeId, Fault, String)>,
}

/// What a layer step needs besides its instance and randomness: the
/// sampling oracle, the parameters, and where its sends and faults go (the
/// multi-shot wrapper drains them after each step).
#[derive(Clone, Debug)]
pub struct LayerEnv {
    pub oracle: Oracle,
    pub params: ContagionParams,
    pub out: Vec<(Vec<NodeId>, OutBody)>,
    pub faults: Vec<(NodeId, Fault, String)>,
}

impl LayerEnv {
    pub fn new(oracle: Oracle, params: ContagionParams) -> Self {
        LayerEnv {
            oracle,
            params,
            out: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// The context of one layer step drawing from `rng`.
    pub fn cx<'a>(&'a mut self, rng: &'a mut dyn RngCore) -> LayerCx<'a> {
        LayerCx {
            rng,
            oracle: &self.oracle,
            params: &self.params,
            out: &mut self.out,
            faults: &mut self.faults,
        }
    }
}

impl LayerCx<'_> {
    fn send(&mut self, to: NodeId, body: OutBody) {
        self.out.push((vec![to], body));
    }
    fn multicast(&mut self, to: Vec<NodeId>, body: OutBody) {
        if !to.is_empty() {
            self.out.push((to, body));
        }
    }
    fn fault(&mut self, who: NodeId, kind: Fault, detail: String) {
        self.faults.push((who, kind, detail));
    }
}

/// One layer of the stack, driven by [`crate::multishot::ProbabilisticBroadcast`].
pub trait Layer: Clone + std::fmt::Debug + Default {
    /// For logs and stats.
    const NAME: &'static str;
    /// Draw the samples and subscribe (thesis: `upon Init`).
    fn init(&mut self, cx: &mut LayerCx<'_>);
    /// The source broadcasts its payload `c`. Returns a delivery.
    fn broadcast(&mut self, c: Cand, cx: &mut LayerCx<'_>) -> Option<Cand>;
    /// A message from `from`. Returns a delivery (at most once per instance).
    fn handle(&mut self, from: NodeId, msg: In, cx: &mut LayerCx<'_>) -> Option<Cand>;
    /// What this instance delivered, if anything.
    fn delivered(&self) -> Option<Cand>;
    /// The support a `vote` from `from` adds to its candidate here (its
    /// multiplicity in the sample that counts it; 0 if it does not count).
    fn weight(&self, from: NodeId, vote: Vote) -> u32;
    /// Whether this process itself stands by candidate `c` (delivered,
    /// echoed or ready for it): such a candidate is never replaced.
    fn pins(&self, c: Cand) -> bool;
    /// Forget everything counted for candidate `c`, whose place the wrapper
    /// gives to another payload (never a pinned one).
    fn forget(&mut self, c: Cand);
    /// Retransmission (not in the thesis, whose links are reliable): subscribe
    /// again to the sample members whose answer this instance still lacks,
    /// and push them the payload this process gossiped, if any. A member
    /// answers every subscription with what it already sent its subscribers,
    /// so a lost subscription and a lost answer are both repaired, and a
    /// member that never heard of the instance opens it and starts pulling.
    /// The push repairs a gossip graph that left a member out (the source
    /// sampled nobody and nobody sampled it, or the copies were lost).
    fn resend(&self, cx: &mut LayerCx<'_>);
    /// Whether retransmission is done here: the instance delivered and every
    /// sample member answered (so every one of them has the payload).
    fn settled(&self) -> bool;
    /// The payload this process echoed or gossiped, which it must never
    /// contradict (Murmur: what it delivered; Sieve and Contagion: what
    /// Sieve echoed).
    fn echoed(&self) -> Option<Cand>;
}

// ---------------------------------------------------------------------------
// Murmur: Erdős–Rényi gossip (Algorithm 6)

/// Algorithm 6. Parameter G (expected gossip sample size).
#[derive(Clone, Debug, Default)]
pub struct MurmurInstance {
    /// 𝒢: own Poisson(G) sample plus everyone who subscribed (reciprocation).
    gossip: NodeSet,
    delivered: Option<Cand>,
}

impl MurmurInstance {
    /// Current gossip neighbours.
    pub fn neighbours(&self) -> &NodeSet {
        &self.gossip
    }

    /// Retransmission: push what this process delivered (if anything) to
    /// `to`, sample members of a layer above that have not answered. They
    /// may lack the payload (nobody's gossip reached them, or its copies
    /// were lost); gossip is accepted from anyone, and this is the payload
    /// this process gossips anyway.
    fn push(&self, to: Vec<NodeId>, cx: &mut LayerCx<'_>) {
        if let Some(c) = self.delivered {
            cx.multicast(to, OutBody::Gossip(c));
        }
    }

    fn dispatch(&mut self, c: Cand, cx: &mut LayerCx<'_>) -> Option<Cand> {
        if self.delivered.is_some() {
            return None;
        }
        self.delivered = Some(c);
        cx.multicast(self.gossip.to_vec(), OutBody::Gossip(c));
        Some(c)
    }
}

impl Layer for MurmurInstance {
    const NAME: &'static str = "murmur";

    fn init(&mut self, cx: &mut LayerCx<'_>) {
        let sample = cx.oracle.poisson_distinct(cx.rng, cx.params.g);
        for n in &sample {
            self.gossip.insert(*n);
        }
        cx.multicast(sample, OutBody::GossipSubscribe);
    }

    fn broadcast(&mut self, c: Cand, cx: &mut LayerCx<'_>) -> Option<Cand> {
        self.dispatch(c, cx)
    }

    fn handle(&mut self, from: NodeId, msg: In, cx: &mut LayerCx<'_>) -> Option<Cand> {
        match msg {
            In::GossipSubscribe => {
                let sent = self.delivered.map(OutBody::Gossip);
                self.gossip.subscribe(from, sent, cx)
            }
            // gossip is accepted from anyone: the signature was checked
            In::Gossip(c) => self.dispatch(c, cx),
            other => {
                cx.fault(from, Fault::MurmurUnexpected, format!("{other:?}"));
                None
            }
        }
    }

    fn delivered(&self) -> Option<Cand> {
        self.delivered
    }

    fn weight(&self, _: NodeId, _: Vote) -> u32 {
        0
    }

    fn pins(&self, c: Cand) -> bool {
        self.delivered == Some(c)
    }

    fn forget(&mut self, _: Cand) {}

    fn resend(&self, cx: &mut LayerCx<'_>) {
        // every neighbour: the ones sampled here and the ones that
        // subscribed (a neighbour that subscribed pushed its gossip once)
        if self.delivered.is_none() {
            cx.multicast(self.gossip.to_vec(), OutBody::GossipSubscribe);
        }
    }

    fn settled(&self) -> bool {
        self.delivered.is_some()
    }

    fn echoed(&self) -> Option<Cand> {
        self.delivered
    }
}

// ---------------------------------------------------------------------------
// Sieve: echo broadcast (Algorithm 8)

/// No echo from this member yet.
const NONE: u8 = u8::MAX;

/// Algorithm 8 over [`MurmurInstance`]. Parameters E (echo sample size) and Ê
/// (delivery threshold).
#[derive(Clone, Debug, Default)]
pub struct SieveInstance {
    murmur: MurmurInstance,
    /// ℰ, a multiset; with `replies`: the first echo of each member.
    sample: Multiset,
    replies: Vec<u8>,
    /// ℰ̃: who subscribed to our echo.
    subs: NodeSet,
    /// The one message this process echoes (what Murmur delivered).
    echo: Option<Cand>,
    /// Echo support per candidate, counted with multiplicity.
    support: [u32; MAX_CANDIDATES],
    delivered: Option<Cand>,
}

impl SieveInstance {
    fn pb_deliver(&mut self, c: Cand, cx: &mut LayerCx<'_>) -> Option<Cand> {
        if self.echo.is_some() {
            return None;
        }
        self.echo = Some(c);
        cx.multicast(self.subs.to_vec(), OutBody::Echo(c));
        self.check(cx)
    }

    fn check(&mut self, cx: &mut LayerCx<'_>) -> Option<Cand> {
        let e = self.echo?;
        if self.delivered.is_none() && self.support[e as usize % MAX_CANDIDATES] >= cx.params.e_hat
        {
            self.delivered = Some(e);
            return Some(e);
        }
        None
    }

    /// The echo sample.
    pub fn sample(&self) -> &Multiset {
        &self.sample
    }
}

impl Layer for SieveInstance {
    const NAME: &'static str = "sieve";

    fn init(&mut self, cx: &mut LayerCx<'_>) {
        self.murmur.init(cx);
        self.sample = cx.oracle.with_replacement(cx.rng, cx.params.e as usize);
        self.replies = vec![NONE; self.sample.distinct()];
        cx.multicast(self.sample.members().collect(), OutBody::EchoSubscribe);
    }

    fn broadcast(&mut self, c: Cand, cx: &mut LayerCx<'_>) -> Option<Cand> {
        let c = self.murmur.broadcast(c, cx)?;
        self.pb_deliver(c, cx)
    }

    fn handle(&mut self, from: NodeId, msg: In, cx: &mut LayerCx<'_>) -> Option<Cand> {
        match msg {
            In::EchoSubscribe => self.subs.subscribe(from, self.echo.map(OutBody::Echo), cx),
            In::Echo(c) => {
                let Some((i, m)) = self.sample.find(&from) else {
                    cx.fault(
                        from,
                        Fault::SieveUnsolicitedEcho,
                        format!("echo of candidate {c} from outside the sample"),
                    );
                    return None;
                };
                match self.replies[i] {
                    NONE => {
                        self.replies[i] = c;
                        self.support[c as usize % MAX_CANDIDATES] += m;
                        self.check(cx)
                    }
                    prev if prev != c => {
                        cx.fault(
                            from,
                            Fault::SieveConflictingEcho,
                            format!("candidate {prev} then {c}"),
                        );
                        None
                    }
                    _ => None,
                }
            }
            other => {
                let c = self.murmur.handle(from, other, cx)?;
                self.pb_deliver(c, cx)
            }
        }
    }

    fn delivered(&self) -> Option<Cand> {
        self.delivered
    }

    fn weight(&self, from: NodeId, vote: Vote) -> u32 {
        match vote {
            Vote::Echo => self.sample.find(&from).map_or(0, |(_, m)| m),
            Vote::Ready => 0,
        }
    }

    fn pins(&self, c: Cand) -> bool {
        self.murmur.pins(c) || self.echo == Some(c) || self.delivered == Some(c)
    }

    fn forget(&mut self, c: Cand) {
        self.murmur.forget(c);
        self.support[c as usize % MAX_CANDIDATES] = 0;
        for r in self.replies.iter_mut().filter(|r| **r == c) {
            *r = NONE;
        }
    }

    fn resend(&self, cx: &mut LayerCx<'_>) {
        self.murmur.resend(cx);
        let silent: Vec<NodeId> = self
            .sample
            .members()
            .zip(&self.replies)
            .filter(|(_, r)| **r == NONE)
            .map(|(m, _)| m)
            .collect();
        self.murmur.push(silent.clone(), cx);
        cx.multicast(silent, OutBody::EchoSubscribe);
    }

    fn settled(&self) -> bool {
        self.delivered.is_some() && self.murmur.settled() && self.replies.iter().all(|r| *r != NONE)
    }

    fn echoed(&self) -> Option<Cand> {
        self.echo
    }
}

// ---------------------------------------------------------------------------
// Contagion: ready broadcast (Algorithm 9)

/// Algorithm 9 over [`SieveInstance`]. Parameters R, R̂ (ready sample size,
/// contagion threshold) and D, D̂ (delivery sample size, delivery threshold).
#[derive(Clone, Debug, Default)]
pub struct ContagionInstance {
    sieve: SieveInstance,
    /// ℛ and 𝒟, multisets.
    ready_sample: Multiset,
    delivery_sample: Multiset,
    /// Distinct members of ℛ ∪ 𝒟, sorted, and what each is ready for
    /// (replies.ready and replies.delivery, as one set per member).
    members: Vec<NodeId>,
    replies: Vec<u8>,
    /// ℛ̃: who subscribed to our readiness.
    subs: NodeSet,
    /// Candidates this process is ready for (there can be several).
    ready: u8,
    ready_support: [u32; MAX_CANDIDATES],
    delivery_support: [u32; MAX_CANDIDATES],
    delivered: Option<Cand>,
}

impl ContagionInstance {
    fn become_ready(&mut self, c: Cand, cx: &mut LayerCx<'_>) {
        if self.ready & bit(c) == 0 {
            self.ready |= bit(c);
            cx.multicast(self.subs.to_vec(), OutBody::Ready(c));
        }
    }

    /// Whether this process is ready for candidate `c`.
    pub fn is_ready(&self, c: Cand) -> bool {
        self.ready & bit(c) != 0
    }
    pub fn ready_sample(&self) -> &Multiset {
        &self.ready_sample
    }
    pub fn delivery_sample(&self) -> &Multiset {
        &self.delivery_sample
    }
    pub fn subscribers(&self) -> usize {
        self.subs.len()
    }
}

impl Layer for ContagionInstance {
    const NAME: &'static str = "contagion";

    fn init(&mut self, cx: &mut LayerCx<'_>) {
        self.sieve.init(cx);
        self.ready_sample = cx.oracle.with_replacement(cx.rng, cx.params.r as usize);
        self.delivery_sample = cx.oracle.with_replacement(cx.rng, cx.params.d as usize);
        let mut both: Vec<NodeId> = self
            .ready_sample
            .members()
            .chain(self.delivery_sample.members())
            .collect();
        both.sort_unstable();
        both.dedup();
        self.replies = vec![0; both.len()];
        self.members = both.clone();
        cx.multicast(both, OutBody::ReadySubscribe);
    }

    fn broadcast(&mut self, c: Cand, cx: &mut LayerCx<'_>) -> Option<Cand> {
        if let Some(c) = self.sieve.broadcast(c, cx) {
            self.become_ready(c, cx);
        }
        None
    }

    fn handle(&mut self, from: NodeId, msg: In, cx: &mut LayerCx<'_>) -> Option<Cand> {
        match msg {
            In::ReadySubscribe => {
                let sent: Vec<OutBody> = (0..MAX_CANDIDATES as Cand)
                    .filter(|c| self.is_ready(*c))
                    .map(OutBody::Ready)
                    .collect();
                self.subs.subscribe(from, sent, cx)
            }
            In::Ready(c) => {
                let Ok(i) = self.members.binary_search(&from) else {
                    cx.fault(
                        from,
                        Fault::ContagionUnsolicitedReady,
                        format!("ready for candidate {c} from outside the samples"),
                    );
                    return None;
                };
                if self.replies[i] & bit(c) != 0 {
                    return None;
                }
                // a member may be ready for several payloads; each counts
                self.replies[i] |= bit(c);
                let k = c as usize % MAX_CANDIDATES;
                self.ready_support[k] += self.ready_sample.count(&from);
                self.delivery_support[k] += self.delivery_sample.count(&from);
                // contagion: ready without having pcb-delivered
                if self.ready_support[k] >= cx.params.r_hat {
                    self.become_ready(c, cx);
                }
                // delivery of the message that crossed D̂ (Algorithm 9 line 60
                // says `echo`, a copy-paste slip from Algorithm 8)
                if self.delivered.is_none() && self.delivery_support[k] >= cx.params.d_hat {
                    self.delivered = Some(c);
                    return Some(c);
                }
                None
            }
            other => {
                if let Some(c) = self.sieve.handle(from, other, cx) {
                    self.become_ready(c, cx);
                }
                None
            }
        }
    }

    fn delivered(&self) -> Option<Cand> {
        self.delivered
    }

    fn weight(&self, from: NodeId, vote: Vote) -> u32 {
        match vote {
            Vote::Echo => self.sieve.weight(from, vote),
            Vote::Ready => self.ready_sample.count(&from) + self.delivery_sample.count(&from),
        }
    }

    fn pins(&self, c: Cand) -> bool {
        self.sieve.pins(c) || self.is_ready(c) || self.delivered == Some(c)
    }

    fn forget(&mut self, c: Cand) {
        self.sieve.forget(c);
        let k = c as usize % MAX_CANDIDATES;
        self.ready_support[k] = 0;
        self.delivery_support[k] = 0;
        for r in &mut self.replies {
            *r &= !bit(c);
        }
    }

    fn resend(&self, cx: &mut LayerCx<'_>) {
        self.sieve.resend(cx);
        let silent: Vec<NodeId> = self
            .members
            .iter()
            .zip(&self.replies)
            .filter(|(_, r)| **r == 0)
            .map(|(m, _)| *m)
            .collect();
        self.sieve.murmur.push(silent.clone(), cx);
        cx.multicast(silent, OutBody::ReadySubscribe);
    }

    fn settled(&self) -> bool {
        self.delivered.is_some() && self.sieve.settled() && self.replies.iter().all(|r| *r != 0)
    }

    fn echoed(&self) -> Option<Cand> {
        self.sieve.echoed()
    }
}
