//! `byzscale sim at2`: consensusless asset transfer (AT2, seed 002 chapter 3)
//! over Bracha or Contagion, with Byzantine owners and every checker; plus the
//! scale runs (`byzscale sim at2-scale`) and the Monte Carlo check of the
//! probabilistic broadcast (`byzscale broadcast montecarlo`).
//!
//! # `sim at2`
//!
//! N processes, each owning one account with [`At2SimConfig::initial_balance`];
//! K of them are Byzantine. Correct owners issue `--transfers` transfers in
//! total (closed loop: the next one after the previous completed), to random
//! accounts, for random small amounts. Every run uses the simulator engine
//! ([`crate::engine`]): real ed25519 and pairwise HMAC channels unless
//! `--modeled-crypto`, the calibrated CPU model, and the chosen latency matrix
//! with 1% duplicated and 5% reordered messages (links never lose messages:
//! both broadcasts assume reliable links, as the thesis does).
//!
//! The K Byzantine processes collude ([`Team`]):
//!
//! | attack | what they do |
//! |---|---|
//! | double spend | a Byzantine owner spends its whole balance twice with the same sequence number: transfer A to an account of one half of the correct processes, transfer B to the other; the broadcast *source* equivocates (Bracha: SEND A to one half, SEND B to the other; Contagion: GOSSIP A / B straight to each half) |
//! | equivocation in the broadcast | for their team's split instances every Byzantine process ECHOes A to the first half and B to the second and READYs both as fast as possible (Bracha: READY A / READY B per half; Contagion: ready for both towards every subscriber); for correct sources' instances they withhold ECHO/READY (Contagion) or send READY for a bogus digest (Bracha) |
//! | fake dependency | a transfer citing an incoming transfer that was never issued, to justify more than the balance |
//! | overdraft | (after the others) a transfer above the justified balance |
//!
//! Checkers (over correct processes only):
//! - **agreement**: no two correct processes apply different transfers with
//!   the same `(issuer, seq)` — each such id counts in `double_spends_applied`;
//! - **no overdraft**: replaying each process's applied transfers in order
//!   never takes an account below zero, and the process's final local
//!   balances are all non-negative and equal to the replay;
//! - **supply**: every correct process's balances add up to the initial supply;
//! - **fake dependencies** are never applied;
//! - **liveness**: every transfer a correct owner submitted is applied at every
//!   correct process by the deadline, and every correct owner completed its
//!   share of the workload.
//!
//! With K > F (Bracha: F = ⌊(N−1)/3⌋; Contagion: F = ⌊βN⌋ for the assumed
//! fraction β) the run is accepted and the checkers catch what breaks; a failing
//! seed is listed with the one command that replays it.
//!
//! # `sim at2-scale`
//!
//! The same engine, failure-free: the chosen latency matrix, the calibrated CPU
//! model, `CryptoMode::Modeled` signatures and the engine's modeled channels
//! (labelled: keyed BLAKE3 signatures; channel MACs charged in the CPU model
//! but not computed, spoofed senders still rejected; see [`crate::engine`]),
//! no adversary. All nodes share one key directory ([`crate::group`]), so
//! N = 1000 holds 1000 key entries, not 10⁶. Reported: messages and bytes
//! sent per process per transfer against N. `sim at2 --modeled-crypto` uses the
//! same modeled channels; with real crypto, pairwise channel keys are derived
//! when a pair first talks.
//!
//! # Monte Carlo
//!
//! [`monte_carlo`] runs many single broadcasts at a *degraded* operating
//! point (small samples, many Byzantine processes) where failures are frequent
//! enough to count, and puts the observed rates next to the analytic ones of
//! [`byzscale_broadcast::params`].

use crate::cpu::CpuModel;
use crate::engine::{Channels, Control, NodeIdx, NodeStats, ProtocolActor, Sim};
use crate::group;
use crate::net_model::NetModel;
use crate::net_model::NetworkChoice;
use crate::scenario::SimError;
use byzscale_at2::{Account, At2, Event, Genesis, Ledger, Transfer, TransferId, TransferMsg};
use byzscale_broadcast::probabilistic::params::{self, Analysis, ContagionParams};
use byzscale_broadcast::probabilistic::{self, Body};
use byzscale_broadcast::{
    bracha, Bracha, BroadcastStats, Contagion, Delivery, Payload, SecureBroadcast, Signed,
};
use byzscale_core::crypto::{Crypto, CryptoMode, Directory};
use byzscale_core::protocol::{Cx, Effect, NoRecord, Protocol, Step, Time, MICROS, SECS};
use byzscale_core::{Addr, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

// ---------------------------------------------------------------------------
// Collusion

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
    fn split(&self, source: NodeId, seq: u64) -> Option<(Signed<P>, Signed<P>)> {
        self.splits.borrow().get(&(source, seq)).cloned()
    }
    fn on_b(&self, n: NodeId) -> bool {
        self.side_b.contains(&n)
    }
    /// `(side A ∪ Byzantine, side B)` of a destination list, without `me`.
    fn sides(&self, me: NodeId, to: impl IntoIterator<Item = NodeId>) -> (Vec<Addr>, Vec<Addr>) {
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
    /// The correct processes (for choosing double-spend recipients).
    fn correct_on(&self, side_b: bool) -> Vec<NodeId> {
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
    /// Rewrite one outgoing effect of the honest code.
    fn collude_out(
        team: &Team<P>,
        me: NodeId,
        e: Effect<Self>,
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
        e: Effect<Self>,
        crypto: &Crypto,
        first: bool,
    ) -> Vec<Effect<Self>> {
        let (to, msg) = match e {
            Effect::Multicast { to, msg } => (to, msg),
            Effect::Send { to, msg } => (vec![to], msg),
            other => return vec![other],
        };
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
                signed,
            } => {
                if team.split(source, seq).is_some() {
                    Vec::new() // already voted both ways
                } else if team.byzantine.contains(&source) {
                    vec![Effect::Multicast {
                        to,
                        msg: bracha::Message::Echo {
                            source,
                            seq,
                            signed,
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
            msg @ bracha::Message::Status { .. } => vec![Effect::Multicast { to, msg }],
        }
    }

    fn instance(msg: &bracha::Message<P>, me: NodeId) -> Option<(NodeId, u64)> {
        Some(match msg {
            bracha::Message::Send { seq, .. } => (me, *seq),
            bracha::Message::Echo { source, seq, .. }
            | bracha::Message::Ready { source, seq, .. } => (*source, *seq),
            bracha::Message::Status { .. } => return None,
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
                signed: s1.clone(),
            },
        ),
        multicast(
            b.clone(),
            bracha::Message::Echo {
                source,
                seq,
                signed: s2.clone(),
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
        e: Effect<Self>,
        _crypto: &Crypto,
        first: bool,
    ) -> Vec<Effect<Self>> {
        let (to, msg) = match e {
            Effect::Multicast { to, msg } => (to, msg),
            Effect::Send { to, msg } => (vec![to], msg),
            other => return vec![other],
        };
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
            let key = match &e {
                Effect::Send { msg, .. } | Effect::Multicast { msg, .. } => {
                    B::instance(msg, self.me)
                }
                _ => None,
            };
            let first = key.is_some_and(|k| self.touched.insert(k));
            out.extend(B::collude_out(&team, self.me, e, cx.crypto(), first));
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
    type Record = NoRecord;

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
}

// ---------------------------------------------------------------------------
// AT2 nodes

/// The timers of an AT2 simulation node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeTimer<T> {
    Bcast(T),
    Attack,
}

/// One Byzantine attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    DoubleSpend,
    FakeDependency,
    Overdraft,
}

/// What the Byzantine owners did, for the report and the checkers.
#[derive(Debug, Default)]
pub struct AttackLog {
    pub double_spends: u64,
    pub fake_dependencies: BTreeSet<TransferId>,
    pub overdrafts: u64,
}

/// A Byzantine AT2 owner: a colluding broadcast, a ledger to know its
/// balance, and a schedule of attacks.
pub struct ByzNode<B: Equivocation<TransferMsg>> {
    me: NodeId,
    bcast: Colluding<B, TransferMsg>,
    ledger: Ledger,
    team: Rc<Team<TransferMsg>>,
    plan: Vec<Attack>,
    interval: Time,
    log: Rc<RefCell<AttackLog>>,
}

impl<B: Equivocation<TransferMsg>> ByzNode<B> {
    fn with_bcast(
        &mut self,
        cx: &mut Cx<'_, Self>,
        f: impl FnOnce(&mut Colluding<B, TransferMsg>, &mut Cx<'_, Colluding<B, TransferMsg>>),
    ) {
        let ((), step) = cx.nested::<Colluding<B, TransferMsg>, _>(|c| f(&mut self.bcast, c));
        for d in step.lift(cx, |m| m, NodeTimer::Bcast) {
            // track state like an honest process; report nothing
            let _: Vec<Event> = self.ledger.deliver(d.source, d.payload);
        }
    }

    fn attack(&mut self, what: Attack, cx: &mut Cx<'_, Self>) {
        let mine = Account(self.me.0);
        let seq = self.bcast.next_seq();
        let balance = self.ledger.spendable(mine).max(0) as u64;
        let deps = self.ledger.take_deps();
        let pick = |side_b: bool, cx: &mut Cx<'_, Self>| {
            let c = self.team.correct_on(side_b);
            if c.is_empty() {
                mine
            } else {
                Account(c[cx.rng().gen_range(0..c.len())].0)
            }
        };
        let t = |to: Account, amount: u64| Transfer {
            issuer: self.me,
            seq,
            from: mine,
            to,
            amount,
        };
        match what {
            Attack::DoubleSpend => {
                let (a, b) = (pick(false, cx), pick(true, cx));
                let amount = balance.max(1);
                let m1 = TransferMsg {
                    transfer: t(a, amount),
                    deps: deps.clone(),
                    more: Vec::new(),
                };
                let m2 = TransferMsg {
                    transfer: t(b, amount),
                    deps,
                    more: Vec::new(),
                };
                self.log.borrow_mut().double_spends += 1;
                self.with_bcast(cx, |bc, c| bc.split(m1, m2, c));
            }
            Attack::FakeDependency => {
                let victim = pick(false, cx);
                let fake = Transfer {
                    issuer: NodeId(victim.0),
                    seq: 1_000_000 + seq,
                    from: victim,
                    to: mine,
                    amount: 500,
                };
                let mut deps = deps;
                deps.push(fake);
                let m = TransferMsg {
                    transfer: t(pick(true, cx), balance + 500),
                    deps,
                    more: Vec::new(),
                };
                self.log
                    .borrow_mut()
                    .fake_dependencies
                    .insert(m.transfer.id());
                self.with_bcast(cx, |bc, c| bc.on_input(m, c));
            }
            Attack::Overdraft => {
                self.log.borrow_mut().overdrafts += 1;
                let m = TransferMsg {
                    transfer: t(pick(false, cx), balance + 1),
                    deps,
                    more: Vec::new(),
                };
                self.with_bcast(cx, |bc, c| bc.on_input(m, c));
            }
        }
    }
}

impl<B: Equivocation<TransferMsg>> Protocol for ByzNode<B> {
    type Message = B::Message;
    type Input = byzscale_at2::Input;
    type Output = byzscale_at2::Output;
    type Timer = NodeTimer<B::Timer>;
    type Record = NoRecord;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        self.with_bcast(cx, |b, c| b.on_start(c));
        if !self.plan.is_empty() {
            let first = cx.rng().gen_range(self.interval / 4..=self.interval);
            cx.set_timer(NodeTimer::Attack, first);
        }
    }
    fn on_input(&mut self, _: byzscale_at2::Input, _: &mut Cx<'_, Self>) {}
    fn on_message(&mut self, from: Addr, msg: B::Message, cx: &mut Cx<'_, Self>) {
        self.with_bcast(cx, |b, c| b.on_message(from, msg, c));
    }
    fn on_timer(&mut self, timer: NodeTimer<B::Timer>, cx: &mut Cx<'_, Self>) {
        match timer {
            NodeTimer::Bcast(t) => self.with_bcast(cx, |b, c| b.on_timer(t, c)),
            NodeTimer::Attack => {
                if !self.plan.is_empty() {
                    let what = self.plan.remove(0);
                    self.attack(what, cx);
                }
                if !self.plan.is_empty() {
                    cx.set_timer(NodeTimer::Attack, self.interval);
                }
            }
        }
    }
}

/// A process of an AT2 simulation: honest, or a Byzantine owner.
pub enum Node<B: Equivocation<TransferMsg>> {
    Honest(At2<B>),
    Byzantine(ByzNode<B>),
}

impl<B: Equivocation<TransferMsg>> Node<B> {
    /// The honest process's state.
    pub fn honest(&self) -> Option<&At2<B>> {
        match self {
            Node::Honest(a) => Some(a),
            Node::Byzantine(_) => None,
        }
    }
}

impl<B: Equivocation<TransferMsg>> Protocol for Node<B> {
    type Message = B::Message;
    type Input = byzscale_at2::Input;
    type Output = byzscale_at2::Output;
    type Timer = NodeTimer<B::Timer>;
    type Record = NoRecord;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        match self {
            Node::Honest(a) => {
                let ((), fx) = cx.nested::<At2<B>, _>(|c| a.on_start(c));
                fx.forward(cx, NodeTimer::Bcast);
            }
            Node::Byzantine(b) => {
                let ((), fx) = cx.nested::<ByzNode<B>, _>(|c| b.on_start(c));
                fx.forward(cx, |t| t);
            }
        }
    }
    fn on_input(&mut self, input: byzscale_at2::Input, cx: &mut Cx<'_, Self>) {
        match self {
            Node::Honest(a) => {
                let ((), fx) = cx.nested::<At2<B>, _>(|c| a.on_input(input, c));
                fx.forward(cx, NodeTimer::Bcast);
            }
            Node::Byzantine(b) => {
                let ((), fx) = cx.nested::<ByzNode<B>, _>(|c| b.on_input(input, c));
                fx.forward(cx, |t| t);
            }
        }
    }
    fn on_message(&mut self, from: Addr, msg: B::Message, cx: &mut Cx<'_, Self>) {
        match self {
            Node::Honest(a) => {
                let ((), fx) = cx.nested::<At2<B>, _>(|c| a.on_message(from, msg, c));
                fx.forward(cx, NodeTimer::Bcast);
            }
            Node::Byzantine(b) => {
                let ((), fx) = cx.nested::<ByzNode<B>, _>(|c| b.on_message(from, msg, c));
                fx.forward(cx, |t| t);
            }
        }
    }
    fn on_timer(&mut self, timer: NodeTimer<B::Timer>, cx: &mut Cx<'_, Self>) {
        match self {
            Node::Honest(a) => {
                if let NodeTimer::Bcast(t) = timer {
                    let ((), fx) = cx.nested::<At2<B>, _>(|c| a.on_timer(t, c));
                    fx.forward(cx, NodeTimer::Bcast);
                }
            }
            Node::Byzantine(b) => {
                let ((), fx) = cx.nested::<ByzNode<B>, _>(|c| b.on_timer(timer, c));
                fx.forward(cx, |t| t);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// `sim at2`: configuration and report

/// Which secure broadcast AT2 runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastKind {
    Bracha,
    Contagion,
}

impl BroadcastKind {
    pub fn name(self) -> &'static str {
        match self {
            BroadcastKind::Bracha => "bracha",
            BroadcastKind::Contagion => "contagion",
        }
    }
}

/// The default plan of every Byzantine owner.
pub const DEFAULT_ATTACKS: [Attack; 4] = [
    Attack::DoubleSpend,
    Attack::DoubleSpend,
    Attack::FakeDependency,
    Attack::Overdraft,
];

/// The crypto label of runs with modeled crypto.
pub const MODELED: &str =
    "modeled (cost model: no real signatures; channel MACs charged, not computed)";

/// The largest `sim at2` group. Every process keeps a balance per account (one
/// account per process) and the checker replays every correct process's ledger,
/// so balances alone grow as N² (about 2.5 GB at N = 5,000, before any message
/// is in flight; N = 1,000 with 50 transfers peaks at 1.8 GB in all).
pub const MAX_PROCESSES: usize = 5_000;

#[derive(Clone, Debug)]
pub struct At2SimConfig {
    pub processes: usize,
    /// K: how many processes are Byzantine (K > F is allowed on purpose).
    pub byzantine: usize,
    pub broadcast: BroadcastKind,
    /// Transfers issued by the correct owners, all together.
    pub transfers: u64,
    pub seeds: u64,
    pub seed_start: u64,
    pub network: NetworkChoice,
    pub modeled_crypto: bool,
    pub initial_balance: u64,
    /// Contagion: the Byzantine fraction β the parameters are chosen for.
    pub assumed_fraction: f64,
    /// Contagion: the per-broadcast failure probability ε they are chosen for.
    pub epsilon: f64,
    /// Contagion: explicit (G, E, Ê, R, R̂, D, D̂) instead of [`params::select`].
    pub params: Option<ContagionParams>,
    pub attacks: Vec<Attack>,
    pub command_line: String,
}

impl At2SimConfig {
    pub fn new(processes: usize, byzantine: usize, broadcast: BroadcastKind) -> Self {
        At2SimConfig {
            processes,
            byzantine,
            broadcast,
            transfers: 20,
            seeds: 1,
            seed_start: 0,
            network: NetworkChoice::Preset("lan".into()),
            modeled_crypto: false,
            initial_balance: 1000,
            assumed_fraction: 0.1,
            epsilon: 1e-6,
            params: None,
            attacks: DEFAULT_ATTACKS.to_vec(),
            command_line: String::new(),
        }
    }

    /// Faults the broadcast is configured to tolerate: ⌊(N−1)/3⌋ for Bracha,
    /// ⌊βN⌋ for Contagion.
    pub fn f(&self) -> usize {
        match self.broadcast {
            BroadcastKind::Bracha => self.processes.saturating_sub(1) / 3,
            BroadcastKind::Contagion => {
                (self.assumed_fraction * self.processes as f64).floor() as usize
            }
        }
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |s: String| Err(SimError::Config(s));
        if self.processes < 4 {
            return bad(format!(
                "--processes must be at least 4, got {}",
                self.processes
            ));
        }
        if self.byzantine >= self.processes {
            return bad(format!(
                "--byzantine {} must be smaller than --processes {}",
                self.byzantine, self.processes
            ));
        }
        if self.seeds == 0 {
            return bad("--seeds must be at least 1".into());
        }
        if self.processes > MAX_PROCESSES {
            return bad(format!(
                "--processes {} is more than {MAX_PROCESSES}: every process keeps a balance per account \
                 (one account per process), so memory grows as N²; use `byzscale sim at2-scale` for larger N",
                self.processes
            ));
        }
        if self.broadcast == BroadcastKind::Contagion {
            self.contagion()?;
        }
        self.network.model()?;
        Ok(())
    }

    /// The Contagion parameters of this run and their analysis.
    pub fn contagion(&self) -> Result<(ContagionParams, Analysis), SimError> {
        let f = self.f();
        match self.params {
            Some(p) => {
                p.validate().map_err(SimError::Config)?;
                Ok((p, params::analyze(self.processes, f, &p)))
            }
            None => params::select(self.processes, self.assumed_fraction, self.epsilon)
                .map(|s| (s.params, s.analysis))
                .map_err(|e| SimError::Config(e.to_string())),
        }
    }

    /// The command that replays `seed` alone.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut c = format!(
            "byzscale sim at2 --processes {} --byzantine {} --broadcast {} --transfers {} --initial-balance {} --network {} --seeds 1 --seed-start {seed}",
            self.processes,
            self.byzantine,
            self.broadcast.name(),
            self.transfers,
            self.initial_balance,
            self.network.name()
        );
        if self.broadcast == BroadcastKind::Contagion {
            match self.params {
                Some(p) => c.push_str(&format!(" --contagion-params {p}")),
                None => c.push_str(&format!(
                    " --assumed-fraction {} --epsilon {:e}",
                    self.assumed_fraction, self.epsilon
                )),
            }
        }
        if self.modeled_crypto {
            c.push_str(" --modeled-crypto");
        }
        c
    }
}

/// One run's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub seed: u64,
    pub violations: Vec<String>,
    pub violation_count: usize,
    pub liveness: Option<String>,
    pub double_spend_attempts: u64,
    pub double_spends_applied: u64,
    pub fake_dependency_attempts: u64,
    pub fake_dependencies_applied: u64,
    pub transfers_submitted: u64,
    pub transfers_completed: u64,
    pub transfers_failed: u64,
    /// Distinct transfers applied by at least one correct process.
    pub transfers_applied: u64,
    pub messages_per_process: f64,
    pub bytes_per_process: f64,
    pub faults_recorded: u64,
    pub virtual_ms: f64,
    #[serde(skip)]
    pub latencies: Vec<Time>,
}

pub use crate::runner::FailingSeed;

/// The JSON of `byzscale sim at2 --json`.
#[derive(Clone, Debug, Serialize)]
pub struct At2SimReport {
    pub protocol: &'static str,
    pub broadcast: &'static str,
    pub processes: usize,
    /// Faults the broadcast is configured to tolerate.
    pub f: usize,
    pub byzantine: usize,
    pub network: String,
    pub crypto: &'static str,
    pub contagion_params: Option<ContagionParams>,
    /// The analytic per-broadcast failure bound of those parameters for K = F.
    pub contagion_epsilon: Option<f64>,
    pub runs: u64,
    pub safety_violations: u64,
    pub liveness_failures: u64,
    pub double_spend_attempts: u64,
    pub double_spends_applied: u64,
    pub fake_dependency_attempts: u64,
    pub fake_dependencies_applied: u64,
    pub transfers_submitted: u64,
    pub transfers_completed: u64,
    /// Refused at once for lack of funds (not a failure).
    pub transfers_failed: u64,
    pub transfers_applied: u64,
    /// Mean over runs of the messages (bytes) sent per correct process.
    pub messages_per_process: f64,
    pub bytes_per_process: f64,
    pub messages_per_process_per_transfer: f64,
    pub faults_recorded: u64,
    /// Submission to local application at the issuer (virtual time).
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub wall_seconds: f64,
    pub failing_seeds: Vec<FailingSeed>,
}

impl At2SimReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "at2 over {}: N={} F={} | {} Byzantine | network {} | crypto {}\n",
            self.broadcast, self.processes, self.f, self.byzantine, self.network, self.crypto
        ));
        if let (Some(p), Some(e)) = (&self.contagion_params, self.contagion_epsilon) {
            s.push_str(&format!(
                "  contagion G,E,Ê,R,R̂,D,D̂ = {p}   analytic ε per broadcast {e:.2e}\n"
            ));
        }
        s.push_str(&format!(
            "  runs {:>6}   safety violations {:>4}   liveness failures {:>4}\n",
            self.runs, self.safety_violations, self.liveness_failures
        ));
        s.push_str(&format!(
            "  double spends applied {} of {} attempts   fake dependencies applied {} of {}\n",
            self.double_spends_applied,
            self.double_spend_attempts,
            self.fake_dependencies_applied,
            self.fake_dependency_attempts
        ));
        s.push_str(&format!(
            "  transfers: submitted {} completed {} refused {} applied {}   faults recorded {}\n",
            self.transfers_submitted,
            self.transfers_completed,
            self.transfers_failed,
            self.transfers_applied,
            self.faults_recorded
        ));
        s.push_str(&format!(
            "  per process: {:.0} messages, {:.0} bytes ({:.1} messages per transfer)   latency p50 {:.3} ms p99 {:.3} ms (virtual)   {:.2} s wall\n",
            self.messages_per_process,
            self.bytes_per_process,
            self.messages_per_process_per_transfer,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.wall_seconds
        ));
        for f in self.failing_seeds.iter().take(10) {
            s.push_str(&format!(
                "  FAIL seed {}: {}\n    replay: {}\n",
                f.seed, f.reason, f.command
            ));
        }
        s
    }
}

// ---------------------------------------------------------------------------
// `sim at2`: one run

/// Most violation strings kept per run (the count is exact).
const KEEP: usize = 10;

struct Checker {
    node_of: BTreeMap<NodeIdx, NodeId>,
    correct: BTreeSet<NodeId>,
    accounts: Vec<Account>,
    quota: BTreeMap<NodeId, u64>,
    issued: BTreeMap<NodeId, u64>,
    rng: ChaCha8Rng,
    think: Time,
    first_applied: BTreeMap<TransferId, (NodeId, Transfer)>,
    conflicting: BTreeSet<TransferId>,
    replay: BTreeMap<NodeId, BTreeMap<Account, i128>>,
    applied_at: BTreeMap<TransferId, usize>,
    submitted: BTreeMap<TransferId, Time>,
    /// Transfers of each correct owner that completed or were refused.
    done: BTreeMap<NodeId, u64>,
    completed: u64,
    failed: u64,
    latencies: Vec<Time>,
    violations: Vec<String>,
    violation_count: usize,
    log: Rc<RefCell<AttackLog>>,
    fake_applied: u64,
}

impl Checker {
    /// Supply, overdraft and replay checks on every correct process's final
    /// ledger; returns each one's non-zero balances.
    fn final_states<B: SimBroadcast>(
        &mut self,
        sim: &Sim<B::Message, byzscale_at2::Input, byzscale_at2::Output>,
        idx_of: &BTreeMap<NodeId, NodeIdx>,
        supply: i128,
    ) -> BTreeMap<NodeId, BTreeMap<Account, i128>> {
        let mut finals = BTreeMap::new();
        for p in self.correct.clone() {
            let Some(at2) = sim.protocol::<Node<B>>(idx_of[&p]).and_then(Node::honest) else {
                continue;
            };
            let l = at2.ledger();
            let total: i128 = l.balances().values().sum();
            if total != supply {
                self.violation(format!(
                    "supply: {p}'s balances add up to {total}, not {supply}"
                ));
            }
            if let Some((a, b)) = l.balances().iter().find(|(_, b)| **b < 0) {
                self.violation(format!("overdraft: {p} ends with {a} at {b}"));
            }
            let replay = self.replay.get(&p).cloned().unwrap_or_default();
            let mine: BTreeMap<Account, i128> = l
                .balances()
                .iter()
                .filter(|(_, b)| **b != 0)
                .map(|(a, b)| (*a, *b))
                .collect();
            let theirs: BTreeMap<Account, i128> =
                replay.into_iter().filter(|(_, b)| *b != 0).collect();
            if mine != theirs {
                self.violation(format!(
                    "state: {p}'s local balances differ from the transfers it reported applying"
                ));
            }
            finals.insert(p, mine);
        }
        finals
    }

    /// Liveness: every correct owner's transfers applied everywhere by
    /// `deadline` (then also convergence of the `finals`); the failure, if any.
    fn liveness(
        &mut self,
        finals: &BTreeMap<NodeId, BTreeMap<Account, i128>>,
        deadline: Time,
    ) -> Option<String> {
        let everyone = self.correct.len();
        let mut missing = 0;
        let mut example = None;
        for id in self.submitted.keys() {
            let k = self.applied_at.get(id).copied().unwrap_or(0);
            if k < everyone {
                missing += 1;
                example.get_or_insert(format!(
                    "{id:?} applied at {k} of {everyone} correct processes"
                ));
            }
        }
        let unfinished: Vec<String> = self
            .quota
            .iter()
            .filter(|(o, q)| self.done.get(o).copied().unwrap_or(0) < **q)
            .map(|(o, q)| {
                format!(
                    "{o} completed {} of {q}",
                    self.done.get(o).copied().unwrap_or(0)
                )
            })
            .take(3)
            .collect();
        if missing == 0 && unfinished.is_empty() {
            // with everything applied everywhere, correct processes must agree
            if self.conflicting.is_empty() {
                let mut vals = finals.values();
                if let Some(first) = vals.next() {
                    if vals.any(|v| v != first) {
                        self.violation("convergence: correct processes applied the same transfers but hold different balances".into());
                    }
                }
            }
            return None;
        }
        Some(format!(
            "{missing} submitted transfers not applied everywhere by {:.1} s (virtual){}{}",
            deadline as f64 / 1e9,
            example.map(|e| format!(", e.g. {e}")).unwrap_or_default(),
            if unfinished.is_empty() {
                String::new()
            } else {
                format!("; stuck owners: {}", unfinished.join(", "))
            }
        ))
    }

    fn violation(&mut self, s: String) {
        self.violation_count += 1;
        if self.violations.len() < KEEP {
            self.violations.push(s);
        }
    }

    fn next_transfer(&mut self, owner: NodeId) -> Option<byzscale_at2::Input> {
        let issued = self.issued.entry(owner).or_insert(0);
        if *issued >= self.quota.get(&owner).copied().unwrap_or(0) {
            return None;
        }
        *issued += 1;
        let mine = Account(owner.0);
        let others: Vec<Account> = self
            .accounts
            .iter()
            .copied()
            .filter(|a| *a != mine)
            .collect();
        let to = others[self.rng.gen_range(0..others.len())];
        Some(byzscale_at2::Input::Transfer {
            tag: 0,
            from: mine,
            to,
            amount: self.rng.gen_range(1..=20),
        })
    }

    fn applied(&mut self, at: NodeId, t: Transfer) {
        if self.log.borrow().fake_dependencies.contains(&t.id()) {
            self.fake_applied += 1;
            self.violation(format!(
                "fake dependency: {at} applied {:?}, which cites a transfer never issued",
                t.id()
            ));
        }
        match self.first_applied.get(&t.id()) {
            None => {
                self.first_applied.insert(t.id(), (at, t));
            }
            Some((p, t0)) if *t0 != t => {
                let msg = format!("agreement: {p} applied {t0:?} but {at} applied {t:?} (same issuer and sequence number)");
                self.conflicting.insert(t.id());
                self.violation(msg);
            }
            Some(_) => {}
        }
        *self.applied_at.entry(t.id()).or_insert(0) += 1;
        let bal = self.replay.entry(at).or_default();
        if t.from != t.to {
            let from = bal.entry(t.from).or_insert(0);
            *from -= t.amount as i128;
            let now = *from;
            *bal.entry(t.to).or_insert(0) += t.amount as i128;
            if now < 0 {
                self.violation(format!(
                    "overdraft: at {at}, applying {t:?} takes {} to {now}",
                    t.from
                ));
            }
        }
    }
}

impl crate::engine::Observer<byzscale_at2::Input, byzscale_at2::Output> for Checker {
    fn on_output(
        &mut self,
        at: Time,
        idx: NodeIdx,
        _addr: Addr,
        out: byzscale_at2::Output,
        ctl: &mut Control<byzscale_at2::Input>,
    ) {
        let Some(&node) = self.node_of.get(&idx) else {
            return;
        };
        if !self.correct.contains(&node) {
            return;
        }
        match out {
            byzscale_at2::Output::Applied(m) => self.applied(node, m.transfer),
            byzscale_at2::Output::Submitted(t) => {
                self.submitted.insert(t.id(), at);
            }
            byzscale_at2::Output::TransferResult { result, .. } => {
                *self.done.entry(node).or_insert(0) += 1;
                match result {
                    Ok(id) => {
                        self.completed += 1;
                        if let Some(s) = self.submitted.get(&id) {
                            self.latencies.push(at.saturating_sub(*s));
                        }
                    }
                    Err(byzscale_at2::TransferError::InsufficientFunds { .. }) => self.failed += 1,
                    Err(e) => self.violation(format!("workload: {node}: unexpected {e}")),
                }
                if let Some(input) = self.next_transfer(node) {
                    ctl.input_at(at + self.think, idx, input);
                }
            }
            byzscale_at2::Output::Balance { .. } => {}
        }
    }
}

/// A broadcast AT2 can be simulated over.
pub trait SimBroadcast: Equivocation<TransferMsg> {
    fn build(
        cfg: &At2SimConfig,
        members: &[NodeId],
    ) -> Result<Box<dyn Fn(NodeId) -> Self>, SimError>;
}

impl SimBroadcast for Bracha<TransferMsg> {
    fn build(
        cfg: &At2SimConfig,
        members: &[NodeId],
    ) -> Result<Box<dyn Fn(NodeId) -> Self>, SimError> {
        let c = bracha::Config::with_f(members.to_vec(), cfg.f())
            .map_err(|e| SimError::Config(e.to_string()))?;
        let c = Arc::new(c);
        Ok(Box::new(move |i| Bracha::new(i, c.clone())))
    }
}

impl SimBroadcast for Contagion<TransferMsg> {
    fn build(
        cfg: &At2SimConfig,
        members: &[NodeId],
    ) -> Result<Box<dyn Fn(NodeId) -> Self>, SimError> {
        let (p, _) = cfg.contagion()?;
        let c = probabilistic::Config::new(members.to_vec(), p)
            .map_err(|e| SimError::Config(e.to_string()))?;
        let c = Arc::new(c);
        Ok(Box::new(move |i| Contagion::new(i, c.clone())))
    }
}

/// Run one seed.
pub fn run_one(cfg: &At2SimConfig, seed: u64) -> Result<RunResult, SimError> {
    match cfg.broadcast {
        BroadcastKind::Bracha => run_one_with::<Bracha<TransferMsg>>(cfg, seed),
        BroadcastKind::Contagion => run_one_with::<Contagion<TransferMsg>>(cfg, seed),
    }
}

fn run_one_with<B: SimBroadcast>(cfg: &At2SimConfig, seed: u64) -> Result<RunResult, SimError> {
    cfg.validate()?;
    let n = cfg.processes;
    let members: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
    let make = B::build(cfg, &members)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xa7_2a72);
    // who is Byzantine: drawn from the seed
    let mut byz: BTreeSet<NodeId> = BTreeSet::new();
    let mut pool = members.clone();
    while byz.len() < cfg.byzantine {
        let i = rng.gen_range(0..pool.len());
        byz.insert(pool.swap_remove(i));
    }
    let correct: BTreeSet<NodeId> = members
        .iter()
        .copied()
        .filter(|m| !byz.contains(m))
        .collect();
    let genesis = Arc::new(Genesis::one_account_each(&members, cfg.initial_balance));
    let team = Rc::new(Team::new(&members, &byz));
    let log = Rc::new(RefCell::new(AttackLog::default()));

    let base = cfg.network.model()?;
    let hop = base.max_one_way().max(50_000);
    let net = base.with_duplicate(0.01).with_reorder(0.05, 2 * hop);
    let regions = net.regions.len().max(1);
    let mut sim: Sim<B::Message, byzscale_at2::Input, byzscale_at2::Output> =
        Sim::new(seed, net, CpuModel::calibrated());
    let mode = if cfg.modeled_crypto {
        // labelled in the report: modeled signatures and channel MACs
        sim.set_channels(Channels::Modeled);
        CryptoMode::Modeled
    } else {
        CryptoMode::Real
    };
    // one shared key directory; pairwise channel keys are derived on first use
    let directory = group::directory(members.iter().copied());
    let mut node_of = BTreeMap::new();
    let mut idx_of = BTreeMap::new();
    for (i, &m) in members.iter().enumerate() {
        let crypto = group::crypto(m, &directory, mode);
        let node = if byz.contains(&m) {
            Node::Byzantine(ByzNode {
                me: m,
                bcast: Colluding::byzantine(make(m), team.clone()),
                ledger: Ledger::new(m, genesis.clone()),
                team: team.clone(),
                plan: cfg.attacks.clone(),
                interval: 40 * hop,
                log: log.clone(),
            })
        } else {
            Node::Honest(At2::new(make(m), genesis.clone()))
        };
        let idx = sim.add_node(m.into(), crypto, ProtocolActor::new(node), i % regions);
        sim.set_byzantine(idx, byz.contains(&m));
        node_of.insert(idx, m);
        idx_of.insert(m, idx);
    }

    // the workload: correct owners share `transfers`, closed loop
    let owners: Vec<NodeId> = correct.iter().copied().collect();
    let c = owners.len() as u64;
    let quota: BTreeMap<NodeId, u64> = owners
        .iter()
        .enumerate()
        .map(|(i, o)| {
            (
                *o,
                cfg.transfers / c + u64::from((i as u64) < cfg.transfers % c),
            )
        })
        .collect();
    let mut checker = Checker {
        node_of,
        correct: correct.clone(),
        accounts: members.iter().map(|m| Account(m.0)).collect(),
        quota,
        issued: BTreeMap::new(),
        rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7a_0a11),
        think: hop,
        first_applied: BTreeMap::new(),
        conflicting: BTreeSet::new(),
        replay: correct
            .iter()
            .map(|p| {
                (
                    *p,
                    members
                        .iter()
                        .map(|m| (Account(m.0), cfg.initial_balance as i128))
                        .collect(),
                )
            })
            .collect(),
        applied_at: BTreeMap::new(),
        submitted: BTreeMap::new(),
        done: BTreeMap::new(),
        completed: 0,
        failed: 0,
        latencies: Vec::new(),
        violations: Vec::new(),
        violation_count: 0,
        log: log.clone(),
        fake_applied: 0,
    };
    for (k, o) in owners.iter().enumerate() {
        if let Some(input) = checker.next_transfer(*o) {
            sim.schedule_input(k as Time * 10 * MICROS, idx_of[o], input);
        }
    }
    let deadline = 60 * SECS + cfg.transfers * 200 * hop;
    sim.run_until(deadline, &mut checker);

    // end-of-run checks on the correct processes' local state
    let finals = checker.final_states::<B>(&sim, &idx_of, genesis.supply() as i128);
    let liveness = checker.liveness(&finals, deadline);
    let everyone = correct.len();

    let stats = sim.stats();
    let (mut msgs, mut bytes) = (0u64, 0u64);
    for p in &correct {
        let s = &stats.per_node[idx_of[p].index()];
        msgs += s.sent;
        bytes += s.bytes_sent;
    }
    let log = log.borrow();
    Ok(RunResult {
        seed,
        violation_count: checker.violation_count,
        violations: std::mem::take(&mut checker.violations),
        liveness,
        double_spend_attempts: log.double_spends,
        double_spends_applied: checker.conflicting.len() as u64,
        fake_dependency_attempts: log.fake_dependencies.len() as u64,
        fake_dependencies_applied: checker.fake_applied,
        transfers_submitted: checker.submitted.len() as u64,
        transfers_completed: checker.completed,
        transfers_failed: checker.failed,
        transfers_applied: checker.first_applied.len() as u64,
        messages_per_process: msgs as f64 / everyone.max(1) as f64,
        bytes_per_process: bytes as f64 / everyone.max(1) as f64,
        faults_recorded: stats.faults,
        virtual_ms: sim.now() as f64 / 1e6,
        latencies: std::mem::take(&mut checker.latencies),
    })
}

use crate::runner::percentile_ms as percentile;

/// Run `cfg.seeds` seeds (in parallel on the available cores) and summarize.
pub fn run_many(
    cfg: &At2SimConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<At2SimReport, SimError> {
    cfg.validate()?;
    let contagion = match cfg.broadcast {
        BroadcastKind::Contagion => Some(cfg.contagion()?),
        BroadcastKind::Bracha => None,
    };
    let started = std::time::Instant::now();
    let results: Vec<RunResult> = crate::runner::run_seeds(
        cfg.seeds,
        cfg.seed_start,
        |seed| run_one(cfg, seed),
        &mut progress,
    )?;
    let wall = started.elapsed().as_secs_f64();
    let mut lat: Vec<Time> = results
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    lat.sort_unstable();
    let failing = FailingSeed::collect(
        &results,
        |r| (r.seed, r.violations.first().cloned(), r.liveness.as_ref()),
        |seed| cfg.replay_command(seed),
    );
    let runs = results.len().max(1) as f64;
    let sum = |f: fn(&RunResult) -> u64| results.iter().map(f).sum::<u64>();
    let mean = |f: fn(&RunResult) -> f64| results.iter().map(f).sum::<f64>() / runs;
    let submitted = sum(|r| r.transfers_submitted);
    let messages = mean(|r| r.messages_per_process);
    Ok(At2SimReport {
        protocol: "at2",
        broadcast: cfg.broadcast.name(),
        processes: cfg.processes,
        f: cfg.f(),
        byzantine: cfg.byzantine,
        network: cfg.network.name(),
        crypto: if cfg.modeled_crypto { MODELED } else { "real" },
        contagion_params: contagion.as_ref().map(|c| c.0),
        contagion_epsilon: contagion.as_ref().map(|c| c.1.epsilon),
        runs: results.len() as u64,
        safety_violations: sum(|r| r.violation_count as u64),
        liveness_failures: results.iter().filter(|r| r.liveness.is_some()).count() as u64,
        double_spend_attempts: sum(|r| r.double_spend_attempts),
        double_spends_applied: sum(|r| r.double_spends_applied),
        fake_dependency_attempts: sum(|r| r.fake_dependency_attempts),
        fake_dependencies_applied: sum(|r| r.fake_dependencies_applied),
        transfers_submitted: submitted,
        transfers_completed: sum(|r| r.transfers_completed),
        transfers_failed: sum(|r| r.transfers_failed),
        transfers_applied: sum(|r| r.transfers_applied),
        messages_per_process: messages,
        bytes_per_process: mean(|r| r.bytes_per_process),
        messages_per_process_per_transfer: {
            let applied = sum(|r| r.transfers_applied) as f64 / runs;
            if applied > 0.0 {
                messages / applied
            } else {
                0.0
            }
        },
        faults_recorded: sum(|r| r.faults_recorded),
        latency_p50_ms: percentile(&lat, 0.5),
        latency_p99_ms: percentile(&lat, 0.99),
        wall_seconds: wall,
        failing_seeds: failing,
    })
}

// ---------------------------------------------------------------------------
// `sim at2-scale`: messages per process against N

/// One point of the scale figure.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ScalePoint {
    pub broadcast: String,
    pub processes: usize,
    pub transfers: u64,
    /// Mean over processes of messages sent, per transfer (= per broadcast).
    pub messages_per_process_per_transfer: f64,
    /// Same, for the busiest process.
    pub max_messages_per_process_per_transfer: f64,
    pub bytes_per_process_per_transfer: f64,
    pub contagion_params: Option<ContagionParams>,
    pub contagion_epsilon: Option<f64>,
    /// Every process applied every transfer.
    pub complete: bool,
    /// Virtual time until the last application (transfers are started 200
    /// one-way latencies apart).
    pub virtual_ms: f64,
    pub events: u64,
    /// Most events (mostly messages in flight) scheduled at once.
    pub peak_events_in_flight: usize,
    pub wall_seconds: f64,
}

/// Scale runs (see the module docs): failure-free, modeled signatures and
/// channels, calibrated CPU model.
#[derive(Clone, Debug)]
pub struct ScaleConfig {
    pub transfers: u64,
    pub network: NetworkChoice,
    /// Contagion parameters are [`params::select`]ed for each N with these.
    pub assumed_fraction: f64,
    pub epsilon: f64,
    pub seed: u64,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        ScaleConfig {
            transfers: 2,
            network: NetworkChoice::Preset("lan".into()),
            assumed_fraction: 0.1,
            epsilon: 1e-9,
            seed: 1,
        }
    }
}

/// Run AT2 over `kind` with `n` processes: `cfg.transfers` owners spread over
/// the group each issue one transfer, one after the other (200 one-way
/// latencies apart).
pub fn scale_point(
    kind: BroadcastKind,
    n: usize,
    cfg: &ScaleConfig,
) -> Result<ScalePoint, SimError> {
    if n < 4 {
        return Err(SimError::Config(format!(
            "scale runs need at least 4 processes, got {n}"
        )));
    }
    let t = cfg.transfers.clamp(1, n as u64);
    let members: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
    let sources: Vec<NodeId> = (0..t)
        .map(|k| NodeId((k as usize * n / t as usize) as u32))
        .collect();
    let mut sim_cfg = At2SimConfig::new(n, 0, kind);
    sim_cfg.assumed_fraction = cfg.assumed_fraction;
    sim_cfg.epsilon = cfg.epsilon;
    let contagion = match kind {
        BroadcastKind::Contagion => Some(sim_cfg.contagion()?),
        BroadcastKind::Bracha => None,
    };
    let started = std::time::Instant::now();
    let net = cfg.network.model()?;
    let genesis = Arc::new(Genesis::one_account_each(&members, 1000));
    let ScaleRun {
        complete,
        last,
        events,
        peak,
        counters,
    } = match kind {
        BroadcastKind::Bracha => {
            let make = Bracha::<TransferMsg>::build(&sim_cfg, &members)?;
            scale_run(&members, &sources, &net, cfg.seed, |i| {
                At2::new(make(i), genesis.clone())
            })
        }
        BroadcastKind::Contagion => {
            let make = Contagion::<TransferMsg>::build(&sim_cfg, &members)?;
            scale_run(&members, &sources, &net, cfg.seed, |i| {
                At2::new(make(i), genesis.clone())
            })
        }
    };
    let per = |x: u64| x as f64 / n as f64 / t as f64;
    let sent: u64 = counters.iter().map(|c| c.sent).sum();
    let bytes: u64 = counters.iter().map(|c| c.bytes_sent).sum();
    let max = counters.iter().map(|c| c.sent).max().unwrap_or(0);
    Ok(ScalePoint {
        broadcast: kind.name().to_string(),
        processes: n,
        transfers: t,
        messages_per_process_per_transfer: per(sent),
        max_messages_per_process_per_transfer: max as f64 / t as f64,
        bytes_per_process_per_transfer: per(bytes),
        contagion_params: contagion.as_ref().map(|c| c.0),
        contagion_epsilon: contagion.as_ref().map(|c| c.1.epsilon),
        complete,
        virtual_ms: last as f64 / 1e6,
        events,
        peak_events_in_flight: peak as usize,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// What one scale run measured.
struct ScaleRun {
    /// Every process applied every transfer.
    complete: bool,
    /// Time of the last application.
    last: Time,
    events: u64,
    peak: u64,
    counters: Vec<NodeStats>,
}

fn scale_run<B: SecureBroadcast<TransferMsg> + 'static>(
    members: &[NodeId],
    sources: &[NodeId],
    net: &NetModel,
    seed: u64,
    make: impl Fn(NodeId) -> At2<B>,
) -> ScaleRun {
    let directory = group::directory(members.iter().copied());
    let mut sim = group::sim(
        seed,
        net.clone(),
        CpuModel::calibrated(),
        &directory,
        CryptoMode::Modeled,
        members,
        make,
    );
    sim.set_channels(Channels::Modeled);
    let n = members.len() as u32;
    // one transfer every `gap`, so that one broadcast's burst of messages is
    // over before the next starts (the event queue stays small)
    let gap = 200 * net.max_one_way().max(MICROS);
    for (k, s) in sources.iter().enumerate() {
        let input = byzscale_at2::Input::Transfer {
            tag: 0,
            from: Account(s.0),
            to: Account((s.0 + 1) % n),
            amount: 1,
        };
        sim.schedule_input(k as Time * gap, NodeIdx(s.0), input);
    }
    let mut applied = vec![0u32; members.len()];
    let mut last = 0;
    let mut obs = |at: Time,
                   node: NodeIdx,
                   _: Addr,
                   out: byzscale_at2::Output,
                   _: &mut Control<byzscale_at2::Input>| {
        if let byzscale_at2::Output::Applied(_) = out {
            applied[node.index()] += 1;
            last = last.max(at);
        }
    };
    // failure-free and without periodic timers: runs until nothing is left
    sim.run_until(Time::MAX, &mut obs);
    let complete = applied.iter().all(|a| *a as usize == sources.len());
    let st = sim.stats();
    ScaleRun {
        complete,
        last,
        events: st.events,
        peak: st.peak_pending,
        counters: st.per_node.clone(),
    }
}

/// The figure's data: one point per (broadcast, N).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ScaleReport {
    pub crypto: String,
    pub network: String,
    pub cpu: String,
    pub assumed_fraction: f64,
    pub epsilon: f64,
    pub points: Vec<ScalePoint>,
}

/// Run every (broadcast, N) pair; `progress` sees each point as it finishes.
pub fn scale(
    runs: &[(BroadcastKind, usize)],
    cfg: &ScaleConfig,
    mut progress: impl FnMut(&ScalePoint),
) -> Result<ScaleReport, SimError> {
    let mut points = Vec::new();
    for &(kind, n) in runs {
        let p = scale_point(kind, n, cfg)?;
        progress(&p);
        points.push(p);
    }
    Ok(ScaleReport {
        crypto: MODELED.into(),
        network: cfg.network.name(),
        cpu: "calibrated (channel MACs charged, not computed: modeled channels)".into(),
        assumed_fraction: cfg.assumed_fraction,
        epsilon: cfg.epsilon,
        points,
    })
}

// ---------------------------------------------------------------------------
// Monte Carlo check of the probabilistic broadcast

/// A Monte Carlo experiment at one operating point.
#[derive(Clone, Debug)]
pub struct McConfig {
    pub processes: usize,
    pub byzantine: usize,
    pub params: ContagionParams,
    /// Trials of each kind (correct source; equivocating Byzantine source).
    pub trials: u64,
    pub seed_start: u64,
}

impl McConfig {
    /// A degraded point where all three failures are frequent: N = 100, 20
    /// Byzantine, small samples, a high contagion threshold (R̂/R = 0.6) and a
    /// low delivery threshold (D̂/D = 0.55).
    pub fn degraded() -> Self {
        McConfig {
            processes: 100,
            byzantine: 20,
            params: ContagionParams {
                g: 6.0,
                e: 40,
                e_hat: 30,
                r: 30,
                r_hat: 18,
                d: 20,
                d_hat: 11,
            },
            trials: 200,
            seed_start: 0,
        }
    }
}

/// Observed against analytic, for one kind of trial.
#[derive(Clone, Debug, Serialize)]
pub struct McRate {
    pub trials: u64,
    pub failures: u64,
    pub observed: f64,
    /// ±2 standard errors of `observed`.
    pub margin: f64,
    /// The analytic value it is compared with (see `what`).
    pub analytic: f64,
    pub what: &'static str,
}

impl McRate {
    fn new(trials: u64, failures: u64, analytic: f64, what: &'static str) -> Self {
        let p = failures as f64 / trials.max(1) as f64;
        McRate {
            trials,
            failures,
            observed: p,
            margin: 2.0 * (p * (1.0 - p) / trials.max(1) as f64).sqrt(),
            analytic: analytic.min(1.0),
            what,
        }
    }
}

/// The JSON of `byzscale broadcast montecarlo`.
#[derive(Clone, Debug, Serialize)]
pub struct McReport {
    pub processes: usize,
    pub byzantine: usize,
    pub params: ContagionParams,
    pub analysis: Analysis,
    /// Correct source, Byzantine processes withhold: some correct process
    /// never delivers.
    pub validity: McRate,
    /// Equivocating Byzantine source and colluders: two correct processes
    /// deliver different payloads.
    pub consistency: McRate,
    /// Same trials: some correct process delivers and another never does.
    pub totality: McRate,
    pub scheduling: &'static str,
    pub crypto: &'static str,
    pub wall_seconds: f64,
}

type McNode = Colluding<Contagion<u64>, u64>;

/// Outcome of one trial: which value each correct process delivered.
fn mc_trial(
    cfg: &McConfig,
    directory: &Arc<Directory>,
    seed: u64,
    byzantine_source: bool,
) -> BTreeMap<NodeId, u64> {
    let n = cfg.processes;
    let members: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
    // the last K processes are Byzantine; the source is process 0 (correct)
    // or process N−1 (Byzantine)
    let byz: BTreeSet<NodeId> = members[n - cfg.byzantine..].iter().copied().collect();
    let source = if byzantine_source {
        members[n - 1]
    } else {
        members[0]
    };
    let team = Rc::new(Team::new(&members, &byz));
    let pcfg = Arc::new(
        probabilistic::Config::new(members.clone(), cfg.params).expect("valid parameters"),
    );
    let mut sim = group::sim(
        seed,
        NetModel::uniform(MICROS, 100 * MICROS),
        CpuModel::free(),
        directory,
        CryptoMode::Modeled,
        &members,
        |m| -> McNode {
            let inner = Contagion::new(m, pcfg.clone());
            if !byz.contains(&m) {
                Colluding::honest(inner)
            } else if m == source {
                Colluding::byzantine(inner, team.clone()).with_split_at_start(1, 2)
            } else {
                Colluding::byzantine(inner, team.clone())
            }
        },
    );
    sim.set_channels(Channels::Modeled);
    if !byzantine_source {
        sim.schedule_input(0, NodeIdx(source.0), 1);
    }
    let mut got = BTreeMap::new();
    let mut obs = |_: Time, at: NodeIdx, _: Addr, d: Delivery<u64>, _: &mut Control<u64>| {
        let at = NodeId(at.0);
        if !byz.contains(&at) {
            got.insert(at, d.payload);
        }
    };
    // no periodic timers: runs until nothing is left
    sim.run_until(Time::MAX, &mut obs);
    got
}

/// Run the Monte Carlo check (see the module docs).
pub fn monte_carlo(cfg: &McConfig) -> Result<McReport, SimError> {
    cfg.params.validate().map_err(SimError::Config)?;
    if cfg.processes < 4 || cfg.byzantine + 2 > cfg.processes {
        return Err(SimError::Config(format!(
            "need at least 4 processes and 2 correct ones, got N = {} with {} Byzantine",
            cfg.processes, cfg.byzantine
        )));
    }
    if cfg.trials == 0 {
        return Err(SimError::Config("--trials must be at least 1".into()));
    }
    let started = std::time::Instant::now();
    let correct = cfg.processes - cfg.byzantine;
    let analysis = params::analyze(cfg.processes, cfg.byzantine, &cfg.params);
    let trials = cfg.trials;
    let seeds: Vec<u64> = (cfg.seed_start..cfg.seed_start + trials).collect();
    let directory = group::directory((0..cfg.processes as u32).map(NodeId));
    let directory = &directory;
    let run = |byzantine_source: bool| -> Vec<BTreeMap<NodeId, u64>> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .max(1);
        let chunks: Vec<&[u64]> = seeds.chunks(seeds.len().div_ceil(workers)).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        c.iter()
                            .map(|seed| mc_trial(cfg, directory, *seed, byzantine_source))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("trial thread"))
                .collect()
        })
    };
    let honest = run(false);
    let validity_failures = honest
        .iter()
        .filter(|g| g.len() < correct || g.values().any(|v| *v != 1))
        .count() as u64;
    // independent samples: each correct process fails to deliver iff its
    // delivery sample holds more than D − D̂ Byzantine members
    let beta = cfg.byzantine as f64 / (cfg.processes - 1) as f64;
    let p = &cfg.params;
    let p_one = params::binomial_upper_tail(p.d as u64, beta, (p.d - p.d_hat + 1) as u64);
    let predicted_validity = 1.0 - (1.0 - p_one).powi(correct as i32);
    let split = run(true);
    let consistency_failures = split
        .iter()
        .filter(|g| g.values().collect::<BTreeSet<_>>().len() > 1)
        .count() as u64;
    let totality_failures = split
        .iter()
        .filter(|g| !g.is_empty() && g.len() < correct)
        .count() as u64;
    Ok(McReport {
        processes: cfg.processes,
        byzantine: cfg.byzantine,
        params: cfg.params,
        validity: McRate::new(
            trials,
            validity_failures,
            predicted_validity,
            "1 − (1 − T(D, β′, D−D̂+1))^C: independent delivery samples",
        ),
        consistency: McRate::new(
            trials,
            consistency_failures,
            analysis.sieve_consistency + analysis.contagion_consistency,
            "sieve_consistency + contagion_consistency (union bounds)",
        ),
        totality: McRate::new(
            trials,
            totality_failures,
            analysis.contagion_totality,
            "contagion_totality (mean-field approximation)",
        ),
        analysis,
        scheduling: "random delays (1–100 µs), not adversarial",
        crypto: MODELED,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracha_with_a_third_byzantine_never_applies_a_double_spend() {
        // N = 10, K = F = 3 colluding owners: double spends with an
        // equivocating source, echo/ready equivocation, fake dependencies,
        // overdrafts; real crypto
        let mut cfg = At2SimConfig::new(10, 3, BroadcastKind::Bracha);
        cfg.transfers = 8;
        cfg.seeds = 200;
        let r = run_many(&cfg, |_, _| {}).unwrap();
        assert_eq!(r.runs, 200);
        assert!(
            r.double_spend_attempts >= 200 * 3,
            "{}",
            r.double_spend_attempts
        );
        assert_eq!(r.double_spends_applied, 0);
        assert_eq!(r.fake_dependencies_applied, 0);
        assert_eq!(r.safety_violations, 0, "{:?}", r.failing_seeds.first());
        assert_eq!(r.liveness_failures, 0, "{:?}", r.failing_seeds.first());
        assert_eq!(r.transfers_completed + r.transfers_failed, 200 * 8);
    }

    #[test]
    fn more_byzantine_than_f_is_caught_by_the_checkers() {
        // N = 7 tolerates F = 2; K = 3 colluders split the correct processes
        let mut cfg = At2SimConfig::new(7, 3, BroadcastKind::Bracha);
        cfg.transfers = 6;
        cfg.seeds = 8;
        let r = run_many(&cfg, |_, _| {}).unwrap();
        assert!(
            r.safety_violations > 0 && r.double_spends_applied > 0,
            "{}",
            r.table()
        );
        let f = &r.failing_seeds[0];
        assert!(
            f.command.contains("--byzantine 3")
                && f.command.contains(&format!("--seed-start {}", f.seed))
        );
        // the replay command reproduces the failure
        let one = run_one(&cfg, f.seed).unwrap();
        assert!(one.violation_count > 0);
    }

    #[test]
    fn contagion_per_process_cost_grows_like_log_n_and_bracha_like_n() {
        // modeled crypto, N = 250 and 1000 (no timing assertions)
        let cfg = ScaleConfig {
            transfers: 2,
            ..ScaleConfig::default()
        };
        let c250 = scale_point(BroadcastKind::Contagion, 250, &cfg).unwrap();
        let c1000 = scale_point(BroadcastKind::Contagion, 1000, &cfg).unwrap();
        assert!(c250.complete && c1000.complete);
        let contagion =
            c1000.messages_per_process_per_transfer / c250.messages_per_process_per_transfer;
        // ln(1000)/ln(250) ≈ 1.25; linear growth would be 4
        assert!(
            contagion > 1.0 && contagion < 1.6,
            "contagion grew {contagion}x: {c250:?} {c1000:?}"
        );
        let b100 = scale_point(BroadcastKind::Bracha, 100, &cfg).unwrap();
        let b250 = scale_point(BroadcastKind::Bracha, 250, &cfg).unwrap();
        let bracha =
            b250.messages_per_process_per_transfer / b100.messages_per_process_per_transfer;
        assert!(
            b100.complete && b250.complete && (bracha - 2.5).abs() < 0.1,
            "bracha grew {bracha}x"
        );
        // at N = 1000 Contagion already sends fewer messages than Bracha's 2N
        assert!(c1000.messages_per_process_per_transfer < 2.0 * 1000.0);
        assert!(c1000.contagion_epsilon.unwrap() <= 1e-9);
    }

    #[test]
    fn monte_carlo_sees_failures_at_the_degraded_point() {
        let mut cfg = McConfig::degraded();
        cfg.trials = 60;
        let r = monte_carlo(&cfg).unwrap();
        // validity: independent delivery samples predict the rate
        let v = &r.validity;
        assert!((v.observed - v.analytic).abs() <= v.margin + 0.08, "{v:?}");
        // failures of every kind are observable here
        assert!(r.validity.failures > 0 && r.totality.failures > 0, "{r:?}");
        // and never above the (here saturated) bounds
        assert!(r.consistency.observed <= r.consistency.analytic);
    }

    #[test]
    fn thousands_of_processes_are_accepted_and_the_limit_says_why() {
        let mut cfg = At2SimConfig::new(1000, 0, BroadcastKind::Contagion);
        cfg.modeled_crypto = true;
        assert!(cfg.validate().is_ok());
        let big = At2SimConfig::new(MAX_PROCESSES + 1, 0, BroadcastKind::Bracha);
        let e = big.validate().unwrap_err().to_string();
        assert!(e.contains("N²") && e.contains("at2-scale"), "{e}");
    }

    #[test]
    fn contagion_small_group_is_safe_and_live() {
        let mut cfg = At2SimConfig::new(20, 2, BroadcastKind::Contagion);
        cfg.transfers = 10;
        cfg.seeds = 4;
        let r = run_many(&cfg, |_, _| {}).unwrap();
        assert_eq!(r.safety_violations, 0, "{}", r.table());
        assert_eq!(r.liveness_failures, 0, "{}", r.table());
        assert_eq!(r.double_spends_applied, 0);
    }
}
