//! The Byzantine nodes of `sim at2`: K processes that collude (one [`Team`]
//! per run, shared with their broadcast endpoints), each holding the key of
//! one account (its Byzantine client's, demo account `i` for node `i`), and
//! each playing a plan of attacks, one every 40 one-way latencies:
//!
//! | attack | what they do |
//! |---|---|
//! | double spend | the node's client signs two transfers of its whole balance with one sequence number, to a correct account of each side; the node proposes the first to one half of the correct nodes and the second to the other (the team votes for both), then broadcasts both batches as one equivocating broadcast instance (Bracha: SEND A to one half, SEND B to the other; Contagion: GOSSIP A / B straight to each half) with whatever votes it gathered |
//! | fake dependency | a transfer citing an incoming transfer that was never issued, to justify more than the balance |
//! | overdraft | a transfer above the balance |
//! | forgery | a transfer *from a correct client's account* to the team, signed with the team's key |
//!
//! As voters, Byzantine nodes endorse everything they are asked to
//! (conflicting transfers included); in the broadcast they equivocate as
//! [`byzscale_scenario_broadcast::attacks`] describes. The double-spending
//! *client* that gives two correct nodes two transfers with one sequence
//! number is the workload's ([`crate::workload`]): it needs no Byzantine
//! node. What they did goes to the [`AttackLog`], for the report and the
//! checkers.

use byzscale_at2::vote::{proposal_digest, vote_bytes};
use byzscale_at2::{
    demo_key, Account, At2, Batch, Config, Event, Input, Ledger, Message, Output, SignedTransfer,
    Transfer, TransferId, Vote,
};
use byzscale_broadcast::SecureBroadcast;
use byzscale_core::crypto::CryptoMode;
use byzscale_core::protocol::{Cx, Protocol, Time};
use byzscale_core::{Addr, NodeId};
use byzscale_scenario_broadcast::{Colluding, Equivocation, Team};
use rand::Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

/// The timers of a Byzantine AT2 simulation node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeTimer<T> {
    Bcast(T),
    Attack,
    /// Broadcast what the team gathered for its proposals.
    Finalize,
    /// An honest process's vote-round timers ([`byzscale_at2::Timer`]).
    Proposal,
    Defer(NodeId),
}

/// One Byzantine attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    DoubleSpend,
    FakeDependency,
    Overdraft,
    Forgery,
}

impl Attack {
    /// Every name `--attacks` takes.
    pub const NAMES: [&'static str; 4] =
        ["double-spend", "fake-dependency", "overdraft", "forgery"];
    pub fn name(self) -> &'static str {
        match self {
            Attack::DoubleSpend => "double-spend",
            Attack::FakeDependency => "fake-dependency",
            Attack::Overdraft => "overdraft",
            Attack::Forgery => "forgery",
        }
    }
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Attack::DoubleSpend,
            Attack::FakeDependency,
            Attack::Overdraft,
            Attack::Forgery,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// The default plan of every Byzantine node.
pub const DEFAULT_ATTACKS: [Attack; 5] = [
    Attack::DoubleSpend,
    Attack::DoubleSpend,
    Attack::FakeDependency,
    Attack::Overdraft,
    Attack::Forgery,
];

/// What the Byzantine nodes and clients did, for the report and the
/// checkers.
#[derive(Debug, Default)]
pub struct AttackLog {
    pub double_spends: u64,
    pub fake_dependencies: BTreeSet<TransferId>,
    pub overdrafts: BTreeSet<TransferId>,
    /// Transfers from correct clients' accounts that they never signed.
    pub forgeries: BTreeSet<TransferId>,
}

/// A proposal of the team, gathering votes.
struct Gathering {
    pid: u64,
    transfers: Vec<SignedTransfer>,
    votes: BTreeMap<NodeId, Vote>,
    /// The other half of a double spend (broadcast as one split instance).
    twin: Option<u64>,
}

/// A Byzantine AT2 node: a colluding broadcast, a ledger to know its
/// client's balance, its client's key, and a schedule of attacks.
pub struct ByzNode<B: Equivocation<Batch>> {
    me: NodeId,
    cfg: Arc<Config>,
    mode: CryptoMode,
    bcast: Colluding<B, Batch>,
    ledger: Ledger,
    key: ed25519_dalek::SigningKey,
    /// The next sequence number its client signs.
    seq: u64,
    next_pid: u64,
    gathering: BTreeMap<u64, Gathering>,
    team: Rc<Team<Batch>>,
    plan: Vec<Attack>,
    interval: Time,
    log: Rc<RefCell<AttackLog>>,
}

impl<B: Equivocation<Batch>> ByzNode<B> {
    /// Node `me` on `team`, over the colluding broadcast `bcast`, holding
    /// its client's key (demo account `me`), signing in `mode`; plays
    /// `plan`, one attack every `interval` (the first after a quarter to a
    /// whole interval), logging to `log`.
    pub fn new(
        bcast: Colluding<B, Batch>,
        cfg: Arc<Config>,
        mode: CryptoMode,
        team: Rc<Team<Batch>>,
        plan: Vec<Attack>,
        interval: Time,
        log: Rc<RefCell<AttackLog>>,
    ) -> Self {
        let me = bcast.me();
        ByzNode {
            me,
            ledger: Ledger::new(cfg.genesis.clone()),
            cfg,
            mode,
            bcast,
            key: demo_key(me.0),
            seq: 1,
            next_pid: 1,
            gathering: BTreeMap::new(),
            team,
            plan,
            interval,
            log,
        }
    }

    fn mine(&self) -> Account {
        Account::of(&self.key)
    }

    fn with_bcast(
        &mut self,
        cx: &mut Cx<'_, Self>,
        f: impl FnOnce(&mut Colluding<B, Batch>, &mut Cx<'_, Colluding<B, Batch>>),
    ) {
        let ((), step) = cx.nested::<Colluding<B, Batch>, _>(|c| f(&mut self.bcast, c));
        let q = self.cfg.quorum();
        for d in step.lift(cx, Message::Bcast, NodeTimer::Bcast) {
            // track the ledger like an honest process; report nothing
            let Ok((certified, _)) = d
                .payload
                .certify(cx.crypto(), d.source, &self.cfg.members, q)
            else {
                continue;
            };
            for i in certified {
                let st = &d.payload.transfers[i];
                let c = byzscale_at2::Certified {
                    transfer: st.transfer,
                    deps: st.deps.clone(),
                };
                let _: Vec<Event> = self.ledger.certified(d.source, c);
            }
        }
    }

    fn sign(&mut self, to: Account, amount: u64, deps: Vec<TransferId>) -> SignedTransfer {
        let t = Transfer {
            from: self.mine(),
            seq: self.seq,
            to,
            amount,
        };
        SignedTransfer::sign_in(&self.key, self.mode, t, deps)
    }

    /// Send proposal `transfers` to `to` (and gather its votes), with the
    /// own vote for everything.
    fn propose(
        &mut self,
        transfers: Vec<SignedTransfer>,
        to: Vec<Addr>,
        cx: &mut Cx<'_, Self>,
    ) -> u64 {
        let pid = self.next_pid;
        self.next_pid += 1;
        let digest = proposal_digest(cx.crypto(), self.me, pid, &transfers);
        let yes = vec![(0, transfers.len() as u32)];
        let sig = cx.crypto().sign(&vote_bytes(self.me, pid, &digest, &yes));
        let own = Vote {
            voter: self.me,
            yes,
            sig,
        };
        cx.multicast(
            to,
            Message::Propose {
                pid,
                transfers: transfers.clone(),
            },
        );
        self.gathering.insert(
            pid,
            Gathering {
                pid,
                transfers,
                votes: BTreeMap::from([(self.me, own)]),
                twin: None,
            },
        );
        cx.set_timer(NodeTimer::Finalize, self.interval / 4);
        pid
    }

    fn everyone_else(&self) -> Vec<Addr> {
        self.cfg
            .members
            .iter()
            .filter(|m| **m != self.me)
            .map(|m| Addr::Node(*m))
            .collect()
    }

    fn attack(&mut self, what: Attack, cx: &mut Cx<'_, Self>) {
        let mine = self.mine();
        let balance = self.ledger.spendable(mine).max(0) as u64;
        self.seq = self.seq.max(self.ledger.seq(mine) + 1);
        let pick = |side_b: bool, cx: &mut Cx<'_, Self>| -> Option<NodeId> {
            let c = self.team.correct_on(side_b);
            (!c.is_empty()).then(|| c[cx.rng().gen_range(0..c.len())])
        };
        let acct = |n: NodeId| Account::of(&demo_key(n.0));
        match what {
            Attack::DoubleSpend => {
                let (Some(a), Some(b)) = (pick(false, cx), pick(true, cx)) else {
                    return;
                };
                let deps: Vec<TransferId> = self
                    .ledger
                    .deps_of(mine)
                    .into_iter()
                    .map(|(d, _)| d)
                    .collect();
                let amount = balance.max(1);
                let t1 = self.sign(acct(a), amount, deps.clone());
                let t2 = self.sign(acct(b), amount, deps);
                self.seq += 1;
                self.log.borrow_mut().double_spends += 1;
                let team: Vec<Addr> = self
                    .cfg
                    .members
                    .iter()
                    .filter(|m| {
                        **m != self.me
                            && !self.team.correct_on(false).contains(m)
                            && !self.team.correct_on(true).contains(m)
                    })
                    .map(|m| Addr::Node(*m))
                    .collect();
                let side = |b: bool| -> Vec<Addr> {
                    self.team
                        .correct_on(b)
                        .into_iter()
                        .map(Addr::Node)
                        .chain(team.iter().copied())
                        .collect()
                };
                let (to_a, to_b) = (side(false), side(true));
                let p1 = self.propose(vec![t1], to_a, cx);
                let p2 = self.propose(vec![t2], to_b, cx);
                if let Some(g) = self.gathering.get_mut(&p1) {
                    g.twin = Some(p2);
                }
            }
            Attack::FakeDependency => {
                let Some(victim) = pick(false, cx) else {
                    return;
                };
                let fake = TransferId {
                    from: acct(victim),
                    seq: 1_000_000 + self.seq,
                };
                let Some(to) = pick(true, cx) else {
                    return;
                };
                let t = self.sign(acct(to), balance + 500, vec![fake]);
                self.seq += 1;
                self.log.borrow_mut().fake_dependencies.insert(t.id());
                let to = self.everyone_else();
                self.propose(vec![t], to, cx);
            }
            Attack::Overdraft => {
                let Some(to) = pick(false, cx) else {
                    return;
                };
                let t = self.sign(acct(to), balance + 1, vec![]);
                self.seq += 1;
                self.log.borrow_mut().overdrafts.insert(t.id());
                let to = self.everyone_else();
                self.propose(vec![t], to, cx);
            }
            Attack::Forgery => {
                let Some(victim) = pick(true, cx) else {
                    return;
                };
                let from = acct(victim);
                let t = Transfer {
                    from,
                    seq: self.ledger.seq(from) + 1,
                    to: mine,
                    amount: 1,
                };
                let st = SignedTransfer::sign_in(&self.key, self.mode, t, vec![]);
                self.log.borrow_mut().forgeries.insert(st.id());
                let to = self.everyone_else();
                self.propose(vec![st], to, cx);
            }
        }
    }

    /// Broadcast every gathering proposal with the votes it has (split
    /// instances for double spends).
    fn finalize(&mut self, cx: &mut Cx<'_, Self>) {
        let mut all = std::mem::take(&mut self.gathering);
        let pids: Vec<u64> = all.keys().copied().collect();
        for pid in pids {
            let Some(g) = all.remove(&pid) else {
                continue;
            };
            let batch = |g: Gathering| Batch {
                pid: g.pid,
                transfers: g.transfers,
                votes: g.votes.into_values().collect(),
            };
            match g.twin.and_then(|t| all.remove(&t)) {
                Some(twin) => {
                    let (b1, b2) = (batch(g), batch(twin));
                    self.with_bcast(cx, |bc, c| bc.split(b1, b2, c));
                }
                None => {
                    let b = batch(g);
                    self.with_bcast(cx, |bc, c| bc.on_input(b, c));
                }
            }
        }
    }
}

impl<B: Equivocation<Batch>> Protocol for ByzNode<B> {
    type Message = Message<B::Message>;
    type Input = Input;
    type Output = Output;
    type Timer = NodeTimer<B::Timer>;
    type Record = byzscale_at2::Record<B::Record>;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        self.with_bcast(cx, |b, c| b.on_start(c));
        if !self.plan.is_empty() {
            let first = cx.rng().gen_range(self.interval / 4..=self.interval);
            cx.set_timer(NodeTimer::Attack, first);
        }
    }
    fn on_input(&mut self, _: Input, _: &mut Cx<'_, Self>) {}
    fn on_message(&mut self, from: Addr, msg: Self::Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Bcast(m) => self.with_bcast(cx, |b, c| b.on_message(from, m, c)),
            Message::Propose { pid, transfers } => {
                // endorse everything, conflicts included
                let Some(x) = from.node() else {
                    return;
                };
                let digest = proposal_digest(cx.crypto(), x, pid, &transfers);
                let yes = if transfers.is_empty() {
                    vec![]
                } else {
                    vec![(0, transfers.len() as u32)]
                };
                let sig = cx.crypto().sign(&vote_bytes(x, pid, &digest, &yes));
                cx.send(
                    from,
                    Message::Vote {
                        pid,
                        digest,
                        yes,
                        sig,
                    },
                );
            }
            Message::Vote { pid, yes, sig, .. } => {
                if let (Some(g), Some(y)) = (self.gathering.get_mut(&pid), from.node()) {
                    g.votes.entry(y).or_insert(Vote { voter: y, yes, sig });
                }
            }
        }
    }
    fn on_timer(&mut self, timer: NodeTimer<B::Timer>, cx: &mut Cx<'_, Self>) {
        match timer {
            NodeTimer::Bcast(t) => self.with_bcast(cx, |b, c| b.on_timer(t, c)),
            NodeTimer::Finalize => self.finalize(cx),
            NodeTimer::Proposal | NodeTimer::Defer(_) => {}
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

/// A process of an AT2 simulation: honest, or a Byzantine node.
pub enum Node<B: Equivocation<Batch>> {
    Honest(At2<B>),
    Byzantine(ByzNode<B>),
}

impl<B: Equivocation<Batch>> Node<B> {
    /// The honest process's state.
    pub fn honest(&self) -> Option<&At2<B>> {
        match self {
            Node::Honest(a) => Some(a),
            Node::Byzantine(_) => None,
        }
    }
}

impl<B: Equivocation<Batch>> Protocol for Node<B> {
    type Message = Message<B::Message>;
    type Input = Input;
    type Output = Output;
    type Timer = NodeTimer<B::Timer>;
    type Record = byzscale_at2::Record<B::Record>;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        match self {
            Node::Honest(a) => {
                let ((), fx) = cx.nested::<At2<B>, _>(|c| a.on_start(c));
                fx.forward(cx, honest_timer);
            }
            Node::Byzantine(b) => {
                let ((), fx) = cx.nested::<ByzNode<B>, _>(|c| b.on_start(c));
                fx.forward(cx, |t| t);
            }
        }
    }
    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        match self {
            Node::Honest(a) => {
                let ((), fx) = cx.nested::<At2<B>, _>(|c| a.on_input(input, c));
                fx.forward(cx, honest_timer);
            }
            Node::Byzantine(b) => {
                let ((), fx) = cx.nested::<ByzNode<B>, _>(|c| b.on_input(input, c));
                fx.forward(cx, |t| t);
            }
        }
    }
    fn on_message(&mut self, from: Addr, msg: Self::Message, cx: &mut Cx<'_, Self>) {
        match self {
            Node::Honest(a) => {
                let ((), fx) = cx.nested::<At2<B>, _>(|c| a.on_message(from, msg, c));
                fx.forward(cx, honest_timer);
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
                let Some(t) = honest_timer_back(timer) else {
                    return;
                };
                let ((), fx) = cx.nested::<At2<B>, _>(|c| a.on_timer(t, c));
                fx.forward(cx, honest_timer);
            }
            Node::Byzantine(b) => {
                let ((), fx) = cx.nested::<ByzNode<B>, _>(|c| b.on_timer(timer, c));
                fx.forward(cx, |t| t);
            }
        }
    }
}

/// An honest process's timers inside [`NodeTimer`].
fn honest_timer<T>(t: byzscale_at2::Timer<T>) -> NodeTimer<T> {
    match t {
        byzscale_at2::Timer::Bcast(t) => NodeTimer::Bcast(t),
        byzscale_at2::Timer::Proposal => NodeTimer::Proposal,
        byzscale_at2::Timer::Defer(x) => NodeTimer::Defer(x),
    }
}

fn honest_timer_back<T>(t: NodeTimer<T>) -> Option<byzscale_at2::Timer<T>> {
    match t {
        NodeTimer::Bcast(t) => Some(byzscale_at2::Timer::Bcast(t)),
        NodeTimer::Proposal => Some(byzscale_at2::Timer::Proposal),
        NodeTimer::Defer(x) => Some(byzscale_at2::Timer::Defer(x)),
        NodeTimer::Attack | NodeTimer::Finalize => None,
    }
}
