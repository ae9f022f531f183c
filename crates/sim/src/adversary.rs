//! Generic Byzantine behaviour: wrappers around any [`Actor`].
//!
//! A [`Byzantine`] actor runs an honest actor inside and rewrites what it does
//! according to a [`Behavior`]:
//!
//! | behaviour | what the node does |
//! |---|---|
//! | [`Behavior::Honest`] | nothing special (a placeholder for [`Byzantine::mixed`]) |
//! | [`Behavior::Silent`] | ignores inputs and messages and sends nothing; its timers keep running but their effects other than timers are dropped, so it can turn honest again later |
//! | [`Behavior::Mute`] | runs the honest code but drops every outgoing message |
//! | [`Behavior::Slow`] | multiplies its CPU cost by `factor` and holds every outgoing message back for `extra_delay` |
//! | [`Behavior::Replay`] | remembers messages it received and sent; after each event, with probability `prob`, re-sends a random old one to a random peer; duplicates each outgoing message with probability `dup_prob` |
//! | [`Behavior::Forge`] | with probability `prob` per outgoing copy, also sends a copy claiming to come from another identity ([`ActorCx::send_spoofed`]); correct receivers reject it at the channel |
//! | [`Behavior::Equivocate`] | splits the destinations of every multicast in two halves: the first gets the original, the second `Mutator::equivocate(m, 1)` |
//! | [`Behavior::Corrupt`] | replaces each outgoing message, with probability `prob`, by `Mutator::corrupt(m)` |
//!
//! [`Byzantine::mixed`] picks one behaviour per node from the node's seeded RNG
//! at start and, if asked, switches to another at random times (timer keys at or
//! above [`ADVERSARY_TIMER_BASE`] are the wrapper's own).
//!
//! Protocol-specific attacks plug in through [`Mutator`]: it knows how to build a
//! conflicting variant of a message (a different proposal for the same slot,
//! signed with the node's own key) or a corrupted one. Without a mutator,
//! `Equivocate` and `Corrupt` behave honestly.
//!
//! [`Intercept`] is the one wrapper for a targeted attack: [`Hooks`] see
//! each incoming message and input first (and may keep it from the honest
//! actor inside, acting themselves) and act after every event; [`Deaf`]
//! drops the messages a predicate picks.
//!
//! [`fields`] holds the seeded damage a mutator does to one field (numbers,
//! ranges, digests, lists, bytes), so every protocol corrupts fields alike.
//!
//! Twins (two honest actors sharing one identity) are set up at the engine
//! level: [`crate::engine::Sim::add_twins`]. [`Wrapper::add`] places a
//! Byzantine replica behind one of the wrappers every scenario offers as
//! they are (`silent`, `replay`, `slow`, `twins`).
//!
//! All randomness comes from the node's RNG in [`ActorCx::rng`], so adversaries
//! replay exactly from the seed.

use crate::engine::{
    Actor, ActorCx, ActorEffect, BoxActor, Knobs, NodeIdx, Sim, ADVERSARY_TIMER_BASE,
};
use byzscale_core::crypto::Crypto;
use byzscale_core::{Addr, Time};
use rand::{Rng, RngCore};
use serde::Serialize;
use std::any::Any;
use std::collections::VecDeque;
use std::rc::Rc;

pub mod fields;
pub mod intercept;

pub use intercept::{Deaf, Hooks, Intercept};

/// Protocol-specific message surgery for [`Behavior::Equivocate`] and
/// [`Behavior::Corrupt`]. Returning `None` sends the original.
pub trait Mutator<M> {
    /// A message conflicting with `m` (e.g. another value for the same
    /// view/slot), distinct for each `variant`, re-signed with `crypto` so it
    /// passes signature checks as coming from this node.
    fn equivocate(&self, m: &M, variant: u64, crypto: &Crypto) -> Option<M>;
    /// A malformed or invalid version of `m` (bad signature, wrong digest,
    /// out-of-range fields).
    fn corrupt(&self, m: &M, rng: &mut dyn RngCore, crypto: &Crypto) -> Option<M>;
}

/// One Byzantine strategy (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub enum Behavior {
    Honest,
    Silent,
    Mute,
    Slow {
        factor: f64,
        extra_delay: Time,
    },
    Replay {
        prob: f64,
        dup_prob: f64,
    },
    /// `identities` empty means: any peer seen so far.
    Forge {
        prob: f64,
        identities: Vec<Addr>,
    },
    Equivocate,
    Corrupt {
        prob: f64,
    },
}

impl Behavior {
    pub fn name(&self) -> &'static str {
        match self {
            Behavior::Honest => "honest",
            Behavior::Silent => "silent",
            Behavior::Mute => "mute",
            Behavior::Slow { .. } => "slow",
            Behavior::Replay { .. } => "replay",
            Behavior::Forge { .. } => "forge",
            Behavior::Equivocate => "equivocate",
            Behavior::Corrupt { .. } => "corrupt",
        }
    }
}

/// How [`Byzantine::mixed`] changes behaviour over time.
#[derive(Clone, Debug, PartialEq)]
pub struct MixedPlan {
    pub choices: Vec<Behavior>,
    /// Switch after a delay drawn from `[min, max]`; `None` keeps the first pick.
    pub switch_every: Option<(Time, Time)>,
}

impl MixedPlan {
    /// The mixed plan every scenario uses: honest, silent, replaying (30%,
    /// duplicating 20%), 10× slow with `slow_delay` extra, forging (20%), and
    /// the scenario's `extra` behaviours, switching every half to four
    /// `request_timeout`s.
    pub fn standard(slow_delay: Time, request_timeout: Time, extra: Vec<Behavior>) -> Self {
        let mut choices = vec![
            Behavior::Honest,
            Behavior::Silent,
            Behavior::Replay {
                prob: 0.3,
                dup_prob: 0.2,
            },
            Behavior::Slow {
                factor: 10.0,
                extra_delay: slow_delay,
            },
            Behavior::Forge {
                prob: 0.2,
                identities: Vec::new(),
            },
        ];
        choices.extend(extra);
        MixedPlan {
            choices,
            switch_every: Some((request_timeout / 2, request_timeout * 4)),
        }
    }
}

/// How long a slow Byzantine node holds back each message: a fraction of
/// `request_timeout` from 0.1 to 2, drawn from `rng`.
pub fn slow_delay(rng: &mut impl Rng, request_timeout: Time) -> Time {
    (request_timeout as f64 * rng.gen_range(0.1..2.0)) as Time
}

/// The generic wrappers a scenario's `--byzantine` offers as they are, by
/// the same names in every scenario: the honest code silent, replaying
/// (30%, duplicating 20%), 10× slow, or run twice on one identity (Twins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrapper {
    Silent,
    Replay,
    Slow,
    Twins,
}

impl Wrapper {
    /// The wrapper called `name` (`silent`, `replay`, `slow`, `twins`).
    pub fn named(name: &str) -> Option<Wrapper> {
        match name {
            "silent" => Some(Wrapper::Silent),
            "replay" => Some(Wrapper::Replay),
            "slow" => Some(Wrapper::Slow),
            "twins" => Some(Wrapper::Twins),
            _ => None,
        }
    }

    /// Add a Byzantine node at `addr` in `region` that runs the honest
    /// actor `make()` builds inside this wrapper (a slow one holds messages
    /// back `slow_delay`); the node indices that speak for it (two for
    /// Twins), all flagged Byzantine.
    pub fn add<M, I, O, A>(
        self,
        sim: &mut Sim<M, I, O>,
        addr: Addr,
        region: usize,
        crypto: impl Fn() -> Crypto,
        make: impl Fn() -> A,
        slow_delay: Time,
    ) -> Vec<NodeIdx>
    where
        M: Clone + Serialize + 'static,
        I: 'static,
        O: 'static,
        A: Actor<M, I, O> + 'static,
    {
        let actor = match self {
            Wrapper::Twins => {
                let (a, b) = sim.add_twins(addr, crypto(), make(), crypto(), make(), region);
                return vec![b, a];
            }
            Wrapper::Silent => Byzantine::silent(make()),
            Wrapper::Replay => Byzantine::replay(make(), 0.3, 0.2),
            Wrapper::Slow => Byzantine::slow(make(), 10.0, slow_delay),
        };
        let idx = sim.add_node(addr, crypto(), actor, region);
        sim.set_byzantine(idx, true);
        vec![idx]
    }
}

/// How many old messages [`Behavior::Replay`] remembers.
pub const REPLAY_HISTORY: usize = 256;

const SWITCH_TIMER: u64 = ADVERSARY_TIMER_BASE + 1;

/// A Byzantine wrapper around an honest actor.
pub struct Byzantine<M, I, O> {
    inner: BoxActor<M, I, O>,
    behavior: Behavior,
    mutator: Option<Rc<dyn Mutator<M>>>,
    plan: Option<MixedPlan>,
    history: VecDeque<M>,
    /// Sorted, deduplicated endpoints seen (senders and destinations).
    peers: Vec<Addr>,
    scratch: Vec<ActorEffect<M, O>>,
    switches: u64,
}

impl<M: Clone + 'static, I: 'static, O: 'static> Byzantine<M, I, O> {
    pub fn new(inner: impl Actor<M, I, O> + 'static, behavior: Behavior) -> Self {
        Byzantine {
            inner: Box::new(inner),
            behavior,
            mutator: None,
            plan: None,
            history: VecDeque::new(),
            peers: Vec::new(),
            scratch: Vec::new(),
            switches: 0,
        }
    }
    /// Attach protocol-specific message surgery.
    pub fn with_mutator(mut self, m: Rc<dyn Mutator<M>>) -> Self {
        self.mutator = Some(m);
        self
    }
    pub fn silent(inner: impl Actor<M, I, O> + 'static) -> Self {
        Self::new(inner, Behavior::Silent)
    }
    pub fn mute(inner: impl Actor<M, I, O> + 'static) -> Self {
        Self::new(inner, Behavior::Mute)
    }
    pub fn slow(inner: impl Actor<M, I, O> + 'static, factor: f64, extra_delay: Time) -> Self {
        Self::new(
            inner,
            Behavior::Slow {
                factor,
                extra_delay,
            },
        )
    }
    pub fn replay(inner: impl Actor<M, I, O> + 'static, prob: f64, dup_prob: f64) -> Self {
        Self::new(inner, Behavior::Replay { prob, dup_prob })
    }
    pub fn forge(inner: impl Actor<M, I, O> + 'static, prob: f64, identities: Vec<Addr>) -> Self {
        Self::new(inner, Behavior::Forge { prob, identities })
    }
    pub fn equivocate(inner: impl Actor<M, I, O> + 'static, mutator: Rc<dyn Mutator<M>>) -> Self {
        Self::new(inner, Behavior::Equivocate).with_mutator(mutator)
    }
    pub fn corrupt(
        inner: impl Actor<M, I, O> + 'static,
        mutator: Rc<dyn Mutator<M>>,
        prob: f64,
    ) -> Self {
        Self::new(inner, Behavior::Corrupt { prob }).with_mutator(mutator)
    }
    /// Pick one of `plan.choices` at start from the node's seed, and switch at
    /// random times if `plan.switch_every` is set. Empty choices mean honest.
    pub fn mixed(inner: impl Actor<M, I, O> + 'static, plan: MixedPlan) -> Self {
        let mut b = Self::new(inner, Behavior::Honest);
        b.plan = Some(plan);
        b
    }

    pub fn behavior(&self) -> &Behavior {
        &self.behavior
    }
    /// How many times a mixed adversary changed behaviour.
    pub fn switches(&self) -> u64 {
        self.switches
    }
    pub fn inner(&self) -> &dyn Actor<M, I, O> {
        &*self.inner
    }
    pub fn inner_mut(&mut self) -> &mut dyn Actor<M, I, O> {
        &mut *self.inner
    }

    fn apply_knobs(&self, cx: &mut ActorCx<'_, M, O>) {
        let k = cx.knobs_mut();
        *k = Knobs::default();
        if let Behavior::Slow {
            factor,
            extra_delay,
        } = self.behavior
        {
            k.cpu_factor = factor;
            k.send_delay = extra_delay;
        }
    }

    fn pick(&mut self, cx: &mut ActorCx<'_, M, O>) {
        let Some(plan) = &self.plan else {
            return;
        };
        if !plan.choices.is_empty() {
            let i = cx.rng().gen_range(0..plan.choices.len());
            self.behavior = plan.choices[i].clone();
        }
        if let Some((lo, hi)) = plan.switch_every {
            let after = cx.rng().gen_range(lo..=hi.max(lo));
            cx.set_timer(SWITCH_TIMER, after.max(1));
        }
        self.apply_knobs(cx);
    }

    fn see_peer(&mut self, a: Addr) {
        if let Err(pos) = self.peers.binary_search(&a) {
            self.peers.push(a);
            self.peers[pos..].rotate_right(1);
        }
    }

    fn remember(&mut self, m: &M) {
        if matches!(self.behavior, Behavior::Replay { .. }) {
            if self.history.len() == REPLAY_HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(m.clone());
        }
    }

    /// Rewrite the effects the inner actor pushed since `mark`.
    fn rewrite(&mut self, mark: usize, cx: &mut ActorCx<'_, M, O>) {
        let mut produced = std::mem::take(&mut self.scratch);
        produced.extend(cx.effects_mut().drain(mark..));
        for e in produced.drain(..) {
            match e {
                ActorEffect::Send { to, msg } => {
                    self.see_peer(to);
                    self.outgoing(vec![to], msg, false, cx);
                }
                ActorEffect::Multicast { to, msg } => {
                    for a in &to {
                        self.see_peer(*a);
                    }
                    self.outgoing(to, msg, true, cx);
                }
                ActorEffect::Spoofed { .. } => {
                    if !matches!(self.behavior, Behavior::Silent | Behavior::Mute) {
                        cx.effects_mut().push(e);
                    }
                }
                ActorEffect::SetTimer { .. } | ActorEffect::CancelTimer { .. } => {
                    cx.effects_mut().push(e)
                }
                ActorEffect::Output(_) | ActorEffect::Fault(_) => {
                    if !matches!(self.behavior, Behavior::Silent) {
                        cx.effects_mut().push(e);
                    }
                }
            }
        }
        self.scratch = produced;
        if let Behavior::Replay { prob, .. } = self.behavior {
            if !self.history.is_empty() && !self.peers.is_empty() && cx.rng().gen_bool(prob) {
                let m = self.history[cx.rng().gen_range(0..self.history.len())].clone();
                let to = self.peers[cx.rng().gen_range(0..self.peers.len())];
                cx.send(to, m);
            }
        }
    }

    fn emit(cx: &mut ActorCx<'_, M, O>, to: Vec<Addr>, msg: M, multicast: bool) {
        if multicast {
            cx.multicast(to, msg);
        } else if let Some(t) = to.first() {
            cx.send(*t, msg);
        }
    }

    fn outgoing(&mut self, to: Vec<Addr>, msg: M, multicast: bool, cx: &mut ActorCx<'_, M, O>) {
        match &self.behavior {
            Behavior::Silent | Behavior::Mute => {}
            Behavior::Honest | Behavior::Slow { .. } => Self::emit(cx, to, msg, multicast),
            Behavior::Replay { dup_prob, .. } => {
                let dup_prob = *dup_prob;
                self.remember(&msg);
                if cx.rng().gen_bool(dup_prob) {
                    Self::emit(cx, to.clone(), msg.clone(), multicast);
                }
                Self::emit(cx, to, msg, multicast);
            }
            Behavior::Forge { prob, identities } => {
                let prob = *prob;
                let me = cx.me();
                for &dst in &to {
                    if !cx.rng().gen_bool(prob) {
                        continue;
                    }
                    let pool = if identities.is_empty() {
                        &self.peers
                    } else {
                        identities
                    };
                    let candidates = pool.iter().filter(|a| **a != me && **a != dst).count();
                    if candidates == 0 {
                        continue;
                    }
                    let k = cx.rng().gen_range(0..candidates);
                    let claimed = *pool
                        .iter()
                        .filter(|a| **a != me && **a != dst)
                        .nth(k)
                        .expect("k < candidates");
                    cx.send_spoofed(claimed, dst, msg.clone());
                }
                Self::emit(cx, to, msg, multicast);
            }
            Behavior::Equivocate => {
                let twin = match (&self.mutator, multicast && to.len() >= 2) {
                    (Some(m), true) => m.equivocate(&msg, 1, cx.crypto()),
                    _ => None,
                };
                match twin {
                    Some(other) => {
                        let mut first = to;
                        let second = first.split_off(first.len() / 2);
                        cx.multicast(first, msg);
                        cx.multicast(second, other);
                    }
                    None => Self::emit(cx, to, msg, multicast),
                }
            }
            Behavior::Corrupt { prob } => {
                let prob = *prob;
                let bad = match &self.mutator {
                    Some(m) if cx.rng().gen_bool(prob) => {
                        let crypto = cx.crypto();
                        m.corrupt(&msg, cx.rng(), crypto)
                    }
                    _ => None,
                };
                Self::emit(cx, to, bad.unwrap_or(msg), multicast);
            }
        }
    }
}

impl<M: Clone + 'static, I: 'static, O: 'static> Actor<M, I, O> for Byzantine<M, I, O> {
    fn start(&mut self, cx: &mut ActorCx<'_, M, O>) {
        self.pick(cx);
        self.apply_knobs(cx);
        let mark = cx.effects_len();
        self.inner.start(cx);
        self.rewrite(mark, cx);
    }
    fn input(&mut self, input: I, cx: &mut ActorCx<'_, M, O>) {
        if self.behavior == Behavior::Silent {
            return;
        }
        let mark = cx.effects_len();
        self.inner.input(input, cx);
        self.rewrite(mark, cx);
    }
    fn message(&mut self, from: Addr, msg: M, cx: &mut ActorCx<'_, M, O>) {
        if self.behavior == Behavior::Silent {
            return;
        }
        self.see_peer(from);
        self.remember(&msg);
        let mark = cx.effects_len();
        self.inner.message(from, msg, cx);
        self.rewrite(mark, cx);
    }
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, M, O>) {
        if key == SWITCH_TIMER {
            let before = self.behavior.clone();
            self.pick(cx);
            if self.behavior != before {
                self.switches += 1;
            }
            return;
        }
        if key >= ADVERSARY_TIMER_BASE {
            return;
        }
        let mark = cx.effects_len();
        self.inner.timer(key, cx);
        self.rewrite(mark, cx);
    }
    fn as_any(&self) -> Option<&dyn Any> {
        self.inner.as_any()
    }
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        self.inner.as_any_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{NodeIdx, ADVERSARY_TIMER_BASE};
    use byzscale_core::crypto::{CryptoMode, Identity};
    use byzscale_core::NodeId;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Multicasts every received number to all peers, plus one on start.
    struct Echo {
        peers: Vec<Addr>,
    }
    impl Actor<u64, (), u64> for Echo {
        fn start(&mut self, cx: &mut ActorCx<'_, u64, u64>) {
            cx.multicast(self.peers.clone(), 0);
            cx.set_timer(7, 10);
        }
        fn input(&mut self, _: (), _: &mut ActorCx<'_, u64, u64>) {}
        fn message(&mut self, _: Addr, m: u64, cx: &mut ActorCx<'_, u64, u64>) {
            cx.multicast(self.peers.clone(), m);
            cx.output(m);
        }
        fn timer(&mut self, _: u64, cx: &mut ActorCx<'_, u64, u64>) {
            cx.send(self.peers[0], 99);
        }
    }

    struct Flip;
    impl Mutator<u64> for Flip {
        fn equivocate(&self, m: &u64, variant: u64, _: &Crypto) -> Option<u64> {
            Some(m + 1000 * variant)
        }
        fn corrupt(&self, m: &u64, _: &mut dyn RngCore, _: &Crypto) -> Option<u64> {
            Some(!m)
        }
    }

    fn peers() -> Vec<Addr> {
        (1..=4).map(|i| Addr::Node(NodeId(i))).collect()
    }

    fn step(
        a: &mut dyn Actor<u64, (), u64>,
        f: impl FnOnce(&mut dyn Actor<u64, (), u64>, &mut ActorCx<'_, u64, u64>),
    ) -> (Vec<ActorEffect<u64, u64>>, Knobs) {
        let crypto = Crypto::new(
            Addr::Node(NodeId(0)),
            Identity::from_seed([0; 32]),
            CryptoMode::Modeled,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut knobs = Knobs::default();
        let mut fx = Vec::new();
        let mut cx = ActorCx::new(
            0,
            Addr::Node(NodeId(0)),
            NodeIdx(0),
            &mut rng,
            &crypto,
            &mut knobs,
            &mut fx,
        );
        f(a, &mut cx);
        (fx, knobs)
    }

    fn sends(fx: &[ActorEffect<u64, u64>]) -> usize {
        fx.iter()
            .filter(|e| {
                matches!(
                    e,
                    ActorEffect::Send { .. }
                        | ActorEffect::Multicast { .. }
                        | ActorEffect::Spoofed { .. }
                )
            })
            .count()
    }

    /// Swallows 5 (and answers it to peer 1 itself), turns 6 into 60 and
    /// counts the events after which it was called.
    #[derive(Default)]
    struct Hook {
        after: Vec<intercept::Event>,
    }
    impl Hooks<u64, (), u64> for Hook {
        fn message(
            &mut self,
            _: &dyn Actor<u64, (), u64>,
            _: Addr,
            m: u64,
            cx: &mut ActorCx<'_, u64, u64>,
        ) -> Option<u64> {
            match m {
                5 => {
                    cx.send(Addr::Node(NodeId(1)), 555);
                    None
                }
                6 => Some(60),
                m => Some(m),
            }
        }
        fn after(
            &mut self,
            e: intercept::Event,
            _: &dyn Actor<u64, (), u64>,
            _: &mut ActorCx<'_, u64, u64>,
        ) {
            self.after.push(e);
        }
    }

    fn outputs(fx: &[ActorEffect<u64, u64>]) -> Vec<u64> {
        let out = fx.iter().filter_map(|e| match e {
            ActorEffect::Output(o) => Some(*o),
            _ => None,
        });
        out.collect()
    }

    #[test]
    fn intercept_hooks_see_messages_first_and_every_event_after() {
        let echo: BoxActor<u64, (), u64> = Box::new(Echo { peers: peers() });
        let mut a = Intercept::new(echo, Hook::default());
        let (fx, _) = step(&mut a, |a, cx| a.message(Addr::Node(NodeId(2)), 5, cx));
        assert_eq!((sends(&fx), outputs(&fx)), (1, vec![]), "kept from Echo");
        let (fx, _) = step(&mut a, |a, cx| a.message(Addr::Node(NodeId(2)), 6, cx));
        assert_eq!(outputs(&fx), vec![60], "Echo got the replacement");
        let (fx, _) = step(&mut a, |a, cx| a.message(Addr::Node(NodeId(2)), 7, cx));
        assert_eq!(outputs(&fx), vec![7]);
        step(&mut a, |a, cx| a.timer(7, cx));
        step(&mut a, |a, cx| a.input((), cx));
        use intercept::Event::{Input, Message, Timer};
        assert_eq!(
            a.hooks().after,
            vec![Message, Message, Message, Timer, Input]
        );
        // Deaf: the picked messages never reach the actor inside
        let echo: BoxActor<u64, (), u64> = Box::new(Echo { peers: peers() });
        let mut d = Deaf::around(echo, |m: &u64| m.is_multiple_of(2));
        let (fx, _) = step(&mut d, |a, cx| a.message(Addr::Node(NodeId(2)), 4, cx));
        assert!(fx.is_empty());
        let (fx, _) = step(&mut d, |a, cx| a.message(Addr::Node(NodeId(2)), 3, cx));
        assert_eq!(outputs(&fx), vec![3]);
    }

    /// `cpu::SignEveryMessage`: a received message costs a verification,
    /// each message sent (a multicast to four: one) a signature, a timer
    /// that sends one message a signature only; nothing else changes.
    #[test]
    fn sign_every_message_charges_each_message_once() {
        let per = crate::cpu::SignEveryMessage {
            sign_ns: 1000,
            verify_ns: 10,
        };
        let echo: BoxActor<u64, (), u64> = Box::new(Echo { peers: peers() });
        let mut a = per.around(echo);
        let (fx, k) = step(&mut *a, |a, cx| a.message(Addr::Node(NodeId(2)), 5, cx));
        assert_eq!((sends(&fx), outputs(&fx)), (1, vec![5]));
        assert_eq!(k.charged, 10 + 1000);
        let (fx, k) = step(&mut *a, |a, cx| a.timer(7, cx));
        assert_eq!((sends(&fx), k.charged), (1, 1000));
        let (fx, k) = step(&mut *a, |a, cx| a.input((), cx));
        assert_eq!((sends(&fx), k.charged), (0, 0));
    }

    #[test]
    fn silent_and_mute() {
        let mut s = Byzantine::silent(Echo { peers: peers() });
        let (fx, _) = step(&mut s, |a, cx| a.start(cx));
        // only the timer survives
        assert_eq!(fx.len(), 1);
        assert!(matches!(fx[0], ActorEffect::SetTimer { key: 7, .. }));
        let (fx, _) = step(&mut s, |a, cx| a.message(Addr::Node(NodeId(1)), 5, cx));
        assert!(fx.is_empty());
        let (fx, _) = step(&mut s, |a, cx| a.timer(7, cx));
        assert!(fx.is_empty());

        let mut m = Byzantine::mute(Echo { peers: peers() });
        let (fx, _) = step(&mut m, |a, cx| a.message(Addr::Node(NodeId(1)), 5, cx));
        assert_eq!(sends(&fx), 0);
        assert!(matches!(fx[..], [ActorEffect::Output(5)]));
    }

    #[test]
    fn slow_sets_knobs() {
        let mut s = Byzantine::slow(Echo { peers: peers() }, 3.0, 1000);
        let (_, k) = step(&mut s, |a, cx| a.start(cx));
        assert_eq!(k.cpu_factor, 3.0);
        assert_eq!(k.send_delay, 1000);
    }

    #[test]
    fn equivocate_splits_multicasts() {
        let mut e = Byzantine::equivocate(Echo { peers: peers() }, Rc::new(Flip));
        let (fx, _) = step(&mut e, |a, cx| a.message(Addr::Node(NodeId(1)), 5, cx));
        let got: Vec<(Vec<Addr>, u64)> = fx
            .iter()
            .filter_map(|e| match e {
                ActorEffect::Multicast { to, msg } => Some((to.clone(), *msg)),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (peers()[..2].to_vec(), 5));
        assert_eq!(got[1], (peers()[2..].to_vec(), 1005));
    }

    #[test]
    fn corrupt_forge_and_replay() {
        let mut c = Byzantine::corrupt(Echo { peers: peers() }, Rc::new(Flip), 1.0);
        let (fx, _) = step(&mut c, |a, cx| a.message(Addr::Node(NodeId(1)), 5, cx));
        assert!(fx
            .iter()
            .any(|e| matches!(e, ActorEffect::Multicast { msg, .. } if *msg == !5u64)));

        let mut f = Byzantine::forge(Echo { peers: peers() }, 1.0, vec![]);
        let (fx, _) = step(&mut f, |a, cx| a.message(Addr::Node(NodeId(1)), 5, cx));
        let spoofed: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                ActorEffect::Spoofed {
                    claimed_from, to, ..
                } => Some((*claimed_from, *to)),
                _ => None,
            })
            .collect();
        assert_eq!(spoofed.len(), 4);
        assert!(spoofed
            .iter()
            .all(|(c, t)| c != t && *c != Addr::Node(NodeId(0))));

        let mut r = Byzantine::replay(Echo { peers: peers() }, 1.0, 1.0);
        let (fx, _) = step(&mut r, |a, cx| a.message(Addr::Node(NodeId(1)), 5, cx));
        // duplicated multicast + the original + one replayed send
        assert_eq!(sends(&fx), 3);
    }

    #[test]
    fn mixed_picks_and_switches() {
        let plan = MixedPlan {
            choices: vec![Behavior::Mute, Behavior::Honest],
            switch_every: Some((5, 10)),
        };
        let mut m = Byzantine::mixed(Echo { peers: peers() }, plan);
        let (fx, _) = step(&mut m, |a, cx| a.start(cx));
        assert!(fx.iter().any(
            |e| matches!(e, ActorEffect::SetTimer { key, .. } if *key == ADVERSARY_TIMER_BASE + 1)
        ));
        let first = m.behavior().clone();
        assert!(first == Behavior::Mute || first == Behavior::Honest);
        // the switch timer re-arms and never reaches the inner actor
        let (fx, _) = step(&mut m, |a, cx| a.timer(ADVERSARY_TIMER_BASE + 1, cx));
        assert_eq!(fx.len(), 1);
        assert_eq!(sends(&fx), 0);
    }
}
