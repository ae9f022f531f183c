//! Colluding Byzantine processes inside a secure broadcast (see the crate
//! docs for the table of attacks).
//!
//! The Byzantine processes of a run share a [`Team`]: who they are, how the
//! correct processes are split into two sides, and the two payloads of every
//! equivocating broadcast. Each one runs the honest code wrapped in
//! [`Colluding`], which rewrites what the honest code sends (and reacts to
//! what it hears) as its broadcast's [`Equivocation`] says:
//!
//! | broadcast | split instance (a Byzantine source's two payloads) | a correct source's instance |
//! |---|---|---|
//! | Bracha | the source SENDs A to side A, B to side B; every colluder ECHOes and READYs A towards side A (and the team), B towards side B, as soon as it hears the SEND | no ECHO; one READY for a digest nobody signed; no READY for the real one |
//! | Contagion | the source GOSSIPs A to side A, B to side B, straight to everyone; colluders echo each subscriber's side's payload and are ready for both | ECHO and READY withheld |

use byzscale_broadcast::probabilistic::{self, Body};
use byzscale_broadcast::{
    bracha, Bracha, BroadcastStats, Contagion, Delivery, Payload, SecureBroadcast, Signed,
};
use byzscale_core::crypto::Crypto;
use byzscale_core::protocol::{Cx, Effect, Protocol, Step};
use byzscale_core::{Addr, NodeId};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// What the Byzantine processes of a run share: who they are, how the correct
/// processes are split, and the two payloads of every equivocating broadcast.
#[derive(Debug)]
pub struct Team<P> {
    byzantine: BTreeSet<NodeId>,
    /// Correct processes that get the second payload of a split.
    side_b: BTreeSet<NodeId>,
    /// Everyone, in order (the multicast destinations).
    everyone: Vec<NodeId>,
    splits: RefCell<Splits<P>>,
}

/// `(source, seq)` → the two payloads of an equivocating broadcast.
type Splits<P> = BTreeMap<(NodeId, u64), (Signed<P>, Signed<P>)>;

impl<P: Payload> Team<P> {
    /// Correct processes alternate between the two sides.
    pub fn new(everyone: &[NodeId], byzantine: &BTreeSet<NodeId>) -> Self {
        let side_b = everyone
            .iter()
            .filter(|n| !byzantine.contains(n))
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, n)| *n)
            .collect();
        Team {
            byzantine: byzantine.clone(),
            side_b,
            everyone: everyone.to_vec(),
            splits: RefCell::new(BTreeMap::new()),
        }
    }
    /// The two payloads of `source`'s split broadcast `seq`, if it is one.
    pub fn split(&self, source: NodeId, seq: u64) -> Option<(Signed<P>, Signed<P>)> {
        self.splits.borrow().get(&(source, seq)).cloned()
    }
    /// Whether correct process `n` gets the second payload of a split.
    pub fn on_b(&self, n: NodeId) -> bool {
        self.side_b.contains(&n)
    }
    /// `(side A ∪ Byzantine, side B)` of a destination list, without `me`.
    pub fn sides(
        &self,
        me: NodeId,
        to: impl IntoIterator<Item = NodeId>,
    ) -> (Vec<Addr>, Vec<Addr>) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for n in to {
            if n == me {
                continue;
            }
            if self.on_b(n) {
                b.push(Addr::Node(n));
            } else {
                a.push(Addr::Node(n));
            }
        }
        (a, b)
    }
    /// The correct processes of one side (for choosing double-spend
    /// recipients).
    pub fn correct_on(&self, side_b: bool) -> Vec<NodeId> {
        self.everyone
            .iter()
            .filter(|n| !self.byzantine.contains(n) && self.on_b(**n) == side_b)
            .copied()
            .collect()
    }
}

/// How a broadcast's Byzantine processes equivocate (see the module docs).
pub trait Equivocation<P: Payload>: SecureBroadcast<P> + Sized + 'static {
    /// React to an incoming message before the honest code: returns what to
    /// send, and whether the honest code should see the message.
    fn collude_in(
        team: &Team<P>,
        me: NodeId,
        from: NodeId,
        msg: &Self::Message,
        crypto: &Crypto,
    ) -> (Vec<Effect<Self>>, bool);
    /// Rewrite one outgoing message of the honest code, for `to`.
    fn collude_out(
        team: &Team<P>,
        me: NodeId,
        to: Vec<Addr>,
        msg: Self::Message,
        crypto: &Crypto,
        first: bool,
    ) -> Vec<Effect<Self>>;
    /// The instance an outgoing message belongs to, if any.
    fn instance(msg: &Self::Message, me: NodeId) -> Option<(NodeId, u64)>;
}

fn nodes(to: &[Addr]) -> impl Iterator<Item = NodeId> + '_ {
    to.iter().filter_map(|a| a.node())
}

fn multicast<Q: Protocol>(to: Vec<Addr>, msg: Q::Message) -> Option<Effect<Q>> {
    (!to.is_empty()).then_some(Effect::Multicast { to, msg })
}

impl<P: Payload> Equivocation<P> for Bracha<P> {
    fn collude_in(
        team: &Team<P>,
        me: NodeId,
        from: NodeId,
        msg: &bracha::Message<P>,
        crypto: &Crypto,
    ) -> (Vec<Effect<Self>>, bool) {
        // a colluder hears the SEND of a split instance: ECHO and READY each
        // side's payload at once
        if let bracha::Message::Send { seq, .. } = msg {
            if let Some((s1, s2)) = team.split(from, *seq) {
                return (
                    bracha_split_votes(team, me, from, *seq, &s1, &s2, crypto),
                    false,
                );
            }
        }
        (Vec::new(), true)
    }

    fn collude_out(
        team: &Team<P>,
        me: NodeId,
        to: Vec<Addr>,
        msg: Self::Message,
        crypto: &Crypto,
        first: bool,
    ) -> Vec<Effect<Self>> {
        match msg {
            bracha::Message::Send { seq, signed } => match team.split(me, seq) {
                // the source's own split broadcast
                Some((s1, s2)) => {
                    let (a, b) = team.sides(me, nodes(&to));
                    let mut out: Vec<_> = [
                        multicast(
                            a,
                            bracha::Message::Send {
                                seq,
                                signed: s1.clone(),
                            },
                        ),
                        multicast(
                            b,
                            bracha::Message::Send {
                                seq,
                                signed: s2.clone(),
                            },
                        ),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    out.extend(bracha_split_votes(team, me, me, seq, &s1, &s2, crypto));
                    out
                }
                None => vec![Effect::Multicast {
                    to,
                    msg: bracha::Message::Send { seq, signed },
                }],
            },
            bracha::Message::Echo {
                source,
                seq,
                digest,
            } => {
                if team.split(source, seq).is_some() {
                    Vec::new() // already voted both ways
                } else if team.byzantine.contains(&source) {
                    vec![Effect::Multicast {
                        to,
                        msg: bracha::Message::Echo {
                            source,
                            seq,
                            digest,
                        },
                    }]
                } else if first {
                    // a correct source: vote READY for a digest nobody signed
                    let bogus = crypto.hash(format!("bogus {me} {source} {seq}").as_bytes());
                    vec![Effect::Multicast {
                        to,
                        msg: bracha::Message::Ready {
                            source,
                            seq,
                            digest: bogus,
                        },
                    }]
                } else {
                    Vec::new()
                }
            }
            bracha::Message::Ready {
                source,
                seq,
                digest,
            } => {
                if team.byzantine.contains(&source) && team.split(source, seq).is_none() {
                    vec![Effect::Multicast {
                        to,
                        msg: bracha::Message::Ready {
                            source,
                            seq,
                            digest,
                        },
                    }]
                } else {
                    Vec::new()
                }
            }
            // retransmission and catch-up (off in the simulator) and
            // fetch-on-miss pass through
            msg @ (bracha::Message::Status { .. }
            | bracha::Message::Fetch { .. }
            | bracha::Message::Vouch { .. }
            | bracha::Message::Pull { .. }
            | bracha::Message::Push { .. }) => vec![Effect::Multicast { to, msg }],
        }
    }

    fn instance(msg: &bracha::Message<P>, me: NodeId) -> Option<(NodeId, u64)> {
        Some(match msg {
            bracha::Message::Send { seq, .. } => (me, *seq),
            bracha::Message::Echo { source, seq, .. }
            | bracha::Message::Ready { source, seq, .. }
            | bracha::Message::Vouch { source, seq, .. }
            | bracha::Message::Pull { source, seq, .. }
            | bracha::Message::Push { source, seq, .. } => (*source, *seq),
            bracha::Message::Status { .. } | bracha::Message::Fetch { .. } => return None,
        })
    }
}

/// ECHO and READY for payload 1 to side A (and the team), payload 2 to side B.
fn bracha_split_votes<P: Payload>(
    team: &Team<P>,
    me: NodeId,
    source: NodeId,
    seq: u64,
    s1: &Signed<P>,
    s2: &Signed<P>,
    crypto: &Crypto,
) -> Vec<Effect<Bracha<P>>> {
    let (a, b) = team.sides(me, team.everyone.iter().copied());
    let (d1, d2) = (
        s1.digest(crypto, source, seq),
        s2.digest(crypto, source, seq),
    );
    [
        multicast(
            a.clone(),
            bracha::Message::Echo {
                source,
                seq,
                digest: d1,
            },
        ),
        multicast(
            b.clone(),
            bracha::Message::Echo {
                source,
                seq,
                digest: d2,
            },
        ),
        multicast(
            a,
            bracha::Message::Ready {
                source,
                seq,
                digest: d1,
            },
        ),
        multicast(
            b,
            bracha::Message::Ready {
                source,
                seq,
                digest: d2,
            },
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

impl<P: Payload> Equivocation<P> for Contagion<P> {
    fn collude_in(
        team: &Team<P>,
        _me: NodeId,
        from: NodeId,
        msg: &probabilistic::Message<P>,
        _crypto: &Crypto,
    ) -> (Vec<Effect<Self>>, bool) {
        let Some((s1, s2)) = team.split(msg.source, msg.seq) else {
            return (Vec::new(), true);
        };
        let reply = |body: Body<P>| Effect::Send {
            to: Addr::Node(from),
            msg: probabilistic::Message {
                source: msg.source,
                seq: msg.seq,
                body,
            },
        };
        let out = match msg.body {
            // echo each subscriber's side's payload, be ready for both
            Body::EchoSubscribe => vec![reply(Body::Echo(if team.on_b(from) { s2 } else { s1 }))],
            Body::ReadySubscribe => vec![reply(Body::Ready(s1)), reply(Body::Ready(s2))],
            _ => Vec::new(),
        };
        (out, true)
    }

    fn collude_out(
        team: &Team<P>,
        me: NodeId,
        to: Vec<Addr>,
        msg: Self::Message,
        _crypto: &Crypto,
        first: bool,
    ) -> Vec<Effect<Self>> {
        let probabilistic::Message { source, seq, body } = msg;
        let wrap = |body: Body<P>| probabilistic::Message { source, seq, body };
        match (team.split(source, seq), body) {
            (_, b @ (Body::GossipSubscribe | Body::EchoSubscribe | Body::ReadySubscribe)) => {
                vec![Effect::Multicast { to, msg: wrap(b) }]
            }
            (Some((s1, s2)), Body::Gossip(_)) => {
                // the source (on its first gossip) sends each side its payload
                // directly, to everyone; later gossip follows the sides too
                let dests: Vec<NodeId> = if first && source == me {
                    team.everyone.clone()
                } else {
                    nodes(&to).collect()
                };
                let (a, b) = team.sides(me, dests);
                [
                    multicast(a, wrap(Body::Gossip(s1))),
                    multicast(b, wrap(Body::Gossip(s2))),
                ]
                .into_iter()
                .flatten()
                .collect()
            }
            // echoes and readies of split instances are answered on subscription
            (Some(_), _) => Vec::new(),
            (None, b @ Body::Gossip(_)) => vec![Effect::Multicast { to, msg: wrap(b) }],
            // correct sources: withhold echo and ready
            (None, b) if team.byzantine.contains(&source) => {
                vec![Effect::Multicast { to, msg: wrap(b) }]
            }
            (None, _) => Vec::new(),
        }
    }

    fn instance(msg: &probabilistic::Message<P>, _me: NodeId) -> Option<(NodeId, u64)> {
        Some((msg.source, msg.seq))
    }
}

/// A broadcast endpoint that is honest (`team` = None) or a colluding
/// Byzantine process running the honest code with its effects rewritten.
#[derive(Debug)]
pub struct Colluding<B, P> {
    inner: B,
    team: Option<Rc<Team<P>>>,
    me: NodeId,
    /// Instances this process already rewrote something of.
    touched: BTreeSet<(NodeId, u64)>,
    /// Split to broadcast at start (Monte Carlo sources).
    split_at_start: Option<(P, P)>,
}

impl<B: Equivocation<P>, P: Payload> Colluding<B, P> {
    pub fn honest(inner: B) -> Self {
        let me = inner.me();
        Colluding {
            inner,
            team: None,
            me,
            touched: BTreeSet::new(),
            split_at_start: None,
        }
    }
    pub fn byzantine(inner: B, team: Rc<Team<P>>) -> Self {
        let mut c = Self::honest(inner);
        c.team = Some(team);
        c
    }
    /// Broadcast two payloads under one sequence number as soon as started.
    pub fn with_split_at_start(mut self, p1: P, p2: P) -> Self {
        self.split_at_start = Some((p1, p2));
        self
    }
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn run(&mut self, cx: &mut Cx<'_, Self>, f: impl FnOnce(&mut B, &mut Cx<'_, B>)) {
        let ((), step) = cx.nested::<B, _>(|c| f(&mut self.inner, c));
        let Some(team) = self.team.clone() else {
            step.forward(cx, |t| t);
            return;
        };
        let mut out = Vec::new();
        for e in step.effects {
            let (to, msg) = match e {
                Effect::Multicast { to, msg } => (to, msg),
                Effect::Send { to, msg } => (vec![to], msg),
                other => {
                    out.push(other);
                    continue;
                }
            };
            let key = B::instance(&msg, self.me);
            let first = key.is_some_and(|k| self.touched.insert(k));
            out.extend(B::collude_out(&team, self.me, to, msg, cx.crypto(), first));
        }
        Step { effects: out }.forward(cx, |t| t);
    }

    /// Equivocate: broadcast `p1` to one side and `p2` to the other under the
    /// next sequence number (needs a team).
    pub fn split(&mut self, p1: P, p2: P, cx: &mut Cx<'_, Self>) {
        if let Some(team) = &self.team {
            let seq = self.inner.next_seq();
            let s1 = Signed::sign(cx.crypto(), self.me, seq, p1.clone());
            let s2 = Signed::sign(cx.crypto(), self.me, seq, p2);
            team.splits.borrow_mut().insert((self.me, seq), (s1, s2));
        }
        self.run(cx, |b, c| b.on_input(p1, c));
    }
}

impl<B: Equivocation<P>, P: Payload> Protocol for Colluding<B, P> {
    type Message = B::Message;
    type Input = P;
    type Output = Delivery<P>;
    type Timer = B::Timer;
    type Record = B::Record;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        self.run(cx, |b, c| b.on_start(c));
        if let Some((p1, p2)) = self.split_at_start.take() {
            self.split(p1, p2, cx);
        }
    }
    fn on_input(&mut self, p: P, cx: &mut Cx<'_, Self>) {
        self.run(cx, |b, c| b.on_input(p, c));
    }
    fn on_message(&mut self, from: Addr, msg: B::Message, cx: &mut Cx<'_, Self>) {
        if let (Some(team), Some(f)) = (self.team.clone(), from.node()) {
            let (fx, pass) = B::collude_in(&team, self.me, f, &msg, cx.crypto());
            Step { effects: fx }.forward(cx, |t| t);
            if !pass {
                return;
            }
        }
        self.run(cx, |b, c| b.on_message(from, msg, c));
    }
    fn on_timer(&mut self, t: B::Timer, cx: &mut Cx<'_, Self>) {
        self.run(cx, |b, c| b.on_timer(t, c));
    }
}

impl<B: Equivocation<P>, P: Payload> SecureBroadcast<P> for Colluding<B, P> {
    fn me(&self) -> NodeId {
        self.me
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn next_seq(&self) -> u64 {
        self.inner.next_seq()
    }
    fn stats(&self) -> BroadcastStats {
        self.inner.stats()
    }
    fn hold(&mut self, source: NodeId) {
        self.inner.hold(source);
    }
    fn release(&mut self, source: NodeId, cx: &mut Cx<'_, Self>) {
        self.run(cx, |b, c| b.release(source, c));
    }
}
