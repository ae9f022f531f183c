//! The Byzantine owners of `sim at2`: K processes that collude (one
//! [`Team`] per run, shared with their broadcast endpoints) and each play a
//! plan of attacks, one every 40 one-way latencies:
//!
//! | attack | what they do |
//! |---|---|
//! | double spend | a Byzantine owner spends its whole balance twice with the same sequence number: transfer A to an account of one half of the correct processes, transfer B to the other; the broadcast *source* equivocates (Bracha: SEND A to one half, SEND B to the other; Contagion: GOSSIP A / B straight to each half) |
//! | equivocation in the broadcast | for their team's split instances every Byzantine process ECHOes A to the first half and B to the second and READYs both as fast as possible (Bracha: READY A / READY B per half; Contagion: ready for both towards every subscriber); for correct sources' instances they withhold ECHO/READY (Contagion) or send READY for a bogus digest (Bracha) |
//! | fake dependency | a transfer citing an incoming transfer that was never issued, to justify more than the balance |
//! | overdraft | (after the others) a transfer above the justified balance |
//!
//! The broadcast-level behaviour (the split source, the equivocating ECHO and
//! READY) is [`byzscale_scenario_broadcast::attacks`]'s; here are the owners
//! ([`ByzNode`]) that choose what to split, and the [`Node`] every process of
//! the simulation is. What they did goes to the [`AttackLog`], for the report
//! and the checkers.

use byzscale_at2::{Account, At2, Event, Ledger, Transfer, TransferId, TransferMsg};
use byzscale_broadcast::SecureBroadcast;
use byzscale_core::protocol::{Cx, Protocol, Time};
use byzscale_core::{Addr, NodeId};
use byzscale_scenario_broadcast::{Colluding, Equivocation, Team};
use rand::Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

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

impl Attack {
    /// Every name `--attacks` takes.
    pub const NAMES: [&'static str; 3] = ["double-spend", "fake-dependency", "overdraft"];
    pub fn name(self) -> &'static str {
        match self {
            Attack::DoubleSpend => "double-spend",
            Attack::FakeDependency => "fake-dependency",
            Attack::Overdraft => "overdraft",
        }
    }
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Attack::DoubleSpend,
            Attack::FakeDependency,
            Attack::Overdraft,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// The default plan of every Byzantine owner.
pub const DEFAULT_ATTACKS: [Attack; 4] = [
    Attack::DoubleSpend,
    Attack::DoubleSpend,
    Attack::FakeDependency,
    Attack::Overdraft,
];

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
    /// Owner `me` on `team`, over the colluding broadcast `bcast`, with its
    /// own view of the ledger; plays `plan`, one attack every `interval`
    /// (the first after a quarter to a whole interval), logging to `log`.
    pub fn new(
        bcast: Colluding<B, TransferMsg>,
        ledger: Ledger,
        team: Rc<Team<TransferMsg>>,
        plan: Vec<Attack>,
        interval: Time,
        log: Rc<RefCell<AttackLog>>,
    ) -> Self {
        ByzNode {
            me: bcast.me(),
            bcast,
            ledger,
            team,
            plan,
            interval,
            log,
        }
    }

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
    type Record = byzscale_at2::Record<B::Record>;

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
    type Record = byzscale_at2::Record<B::Record>;

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
