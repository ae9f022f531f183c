//! The Byzantine replicas of `sim smr`: the generic wrappers of
//! [`byzscale_sim::adversary`] and the one SMR-specific attack, colluding
//! equivocation ([`Equivocator`]).

use crate::{Input, Output, Rep};
use byzscale_apps::kv::KvStore;
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::protocol::Time;
use byzscale_core::{Addr, GroupId, NodeId};
use byzscale_sim::adversary::{self, fields, Byzantine, MixedPlan, Mutator, Wrapper};
use byzscale_sim::engine::{Actor, ActorCx, ActorEffect, BoxActor, NodeIdx, ProtocolActor, Sim};
use byzscale_smr::{
    checkpoint_bytes, stop_bytes, Batch, GroupInfo, Message, Params, Replica, StopData,
};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// What the Byzantine replicas do (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Adversary {
    None,
    Silent,
    Equivocate,
    Replay,
    Slow,
    Twins,
    Mutate,
    Mixed,
}

impl Adversary {
    pub fn name(self) -> &'static str {
        match self {
            Adversary::None => "none",
            Adversary::Silent => "silent",
            Adversary::Equivocate => "equivocate",
            Adversary::Replay => "replay",
            Adversary::Slow => "slow",
            Adversary::Twins => "twins",
            Adversary::Mutate => "mutate",
            Adversary::Mixed => "mixed",
        }
    }
    /// Every name `--byzantine` takes.
    pub const NAMES: [&'static str; 8] = [
        "none",
        "silent",
        "equivocate",
        "replay",
        "slow",
        "twins",
        "mutate",
        "mixed",
    ];
    pub fn from_name(name: &str) -> Option<Self> {
        [Adversary::None]
            .into_iter()
            .chain(Adversary::ALL)
            .find(|a| a.name() == name)
    }
    /// Every adversary but `None`.
    pub const ALL: [Adversary; 7] = [
        Adversary::Silent,
        Adversary::Equivocate,
        Adversary::Replay,
        Adversary::Slow,
        Adversary::Twins,
        Adversary::Mutate,
        Adversary::Mixed,
    ];
}

/// A correct replica of the scenario, as an actor.
pub fn replica(me: NodeId, g: &GroupInfo, params: &Params) -> ProtocolActor<Rep, Input, Output> {
    let r = Replica::new(me, g.clone(), params.clone(), KvStore::new());
    ProtocolActor::replica(r)
}

/// The Byzantine replicas of a run: one adversary, shared collusion state.
pub struct Team {
    adversary: Adversary,
    collusion: Rc<RefCell<Collusion>>,
    members: Vec<NodeId>,
    request_timeout: Time,
}

impl Team {
    pub fn new(adversary: Adversary, members: Vec<NodeId>, params: &Params) -> Self {
        Team {
            adversary,
            collusion: Rc::default(),
            members,
            request_timeout: params.request_timeout,
        }
    }

    fn equivocator(
        &self,
        inner: ProtocolActor<Rep, Input, Output>,
    ) -> Equivocator<Message, Input, Output> {
        Equivocator::new(
            Box::new(inner),
            self.collusion.clone(),
            self.members.clone(),
            |m| Some(m),
            |m| m,
        )
    }

    /// Add a Byzantine replica at `addr`; the node indices that speak for it
    /// (two for Twins), each flagged Byzantine but the correct twin.
    pub fn add(
        &mut self,
        sim: &mut Sim<Message, Input, Output>,
        rng: &mut ChaCha8Rng,
        addr: Addr,
        region: usize,
        crypto: impl Fn() -> Crypto,
        make: impl Fn() -> ProtocolActor<Rep, Input, Output>,
    ) -> Vec<NodeIdx> {
        let mut choice = self.adversary;
        if choice == Adversary::Mixed {
            choice = Adversary::ALL[rng.gen_range(0..Adversary::ALL.len())];
        }
        let slow_delay = adversary::slow_delay(rng, self.request_timeout);
        let idx = match choice {
            Adversary::Equivocate => {
                let actor = self.equivocator(make());
                sim.add_node(addr, crypto(), actor, region)
            }
            Adversary::Mutate => {
                // the scenario's one group (lib.rs)
                let surgery = FieldSurgery { group: GroupId(0) };
                let actor = Byzantine::corrupt(make(), Rc::new(surgery), MUTATE_PROB);
                sim.add_node(addr, crypto(), actor, region)
            }
            // "mixed" drew itself: a behaviour that changes over time, forging included
            Adversary::Mixed | Adversary::None => {
                let plan = MixedPlan::standard(slow_delay, self.request_timeout, Vec::new());
                let actor = Byzantine::mixed(self.equivocator(make()), plan);
                sim.add_node(addr, crypto(), actor, region)
            }
            generic => {
                let wrapper = Wrapper::named(generic.name()).expect("a generic wrapper");
                return wrapper.add(sim, addr, region, crypto, make, slow_delay);
            }
        };
        sim.set_byzantine(idx, true);
        vec![idx]
    }
}

/// Colluding equivocation (see the crate docs): shared by all Byzantine
/// replicas of a group.
#[derive(Default)]
pub struct Collusion {
    /// (view, slot) → the two digests being pushed.
    split: BTreeMap<(u64, u64), (Digest, Digest)>,
}

/// A different but valid batch: the same requests reversed, or one fewer
/// (at the same time, which backups accept).
fn variant(batch: &Batch) -> Option<Batch> {
    match batch.requests.len() {
        0 => None,
        1 => Some(Batch::at(batch.time_ms, Vec::new())),
        _ => {
            let mut b = batch.clone();
            std::sync::Arc::make_mut(&mut b.requests).reverse();
            Some(b)
        }
    }
}

/// An honest replica whose proposals and votes are split in two: the first
/// value towards even-positioned members, the second towards odd ones. With
/// more than f colluders this is what makes two correct replicas decide
/// different batches. `M` carries SMR messages: `smr` finds the one inside
/// (SMR's own messages, or a protocol that nests SMR, like ByzCast) and
/// `wrap` puts one back.
pub struct Equivocator<M, I, O> {
    inner: BoxActor<M, I, O>,
    collusion: Rc<RefCell<Collusion>>,
    members: Vec<NodeId>,
    smr: fn(&M) -> Option<&Message>,
    wrap: fn(Message) -> M,
}

impl<M: Clone, I, O> Equivocator<M, I, O> {
    /// Wrap `inner`, a replica of the group of `members`, colluding with the
    /// other Byzantine replicas of the group through `collusion`.
    pub fn new(
        inner: BoxActor<M, I, O>,
        collusion: Rc<RefCell<Collusion>>,
        members: Vec<NodeId>,
        smr: fn(&M) -> Option<&Message>,
        wrap: fn(Message) -> M,
    ) -> Self {
        Equivocator {
            inner,
            collusion,
            members,
            smr,
            wrap,
        }
    }

    fn parity(&self, a: &Addr) -> usize {
        a.node()
            .and_then(|n| self.members.iter().position(|m| *m == n))
            .unwrap_or(0)
            % 2
    }

    /// The two halves of `msg`, if it is a proposal or a vote to split.
    fn halves(&self, msg: &M) -> Option<[M; 2]> {
        let [a, b] = self.smr_halves((self.smr)(msg)?)?;
        Some([(self.wrap)(a), (self.wrap)(b)])
    }

    fn smr_halves(&self, msg: &Message) -> Option<[Message; 2]> {
        let pair = |view: u64, slot: u64| self.collusion.borrow().split.get(&(view, slot)).copied();
        match msg {
            Message::Propose { view, slot, batch } => variant(batch).map(|b| {
                let da = byzscale_core::crypto::digest(&batch.bytes());
                let db = byzscale_core::crypto::digest(&b.bytes());
                self.collusion
                    .borrow_mut()
                    .split
                    .insert((*view, *slot), (da, db));
                let (view, slot) = (*view, *slot);
                [
                    msg.clone(),
                    Message::Propose {
                        view,
                        slot,
                        batch: b,
                    },
                ]
            }),
            Message::Write { view, slot, .. } => pair(*view, *slot).map(|(da, db)| {
                let (view, slot) = (*view, *slot);
                let w = |digest| Message::Write { view, slot, digest };
                [w(da), w(db)]
            }),
            Message::Accept { view, slot, .. } => pair(*view, *slot).map(|(da, db)| {
                let (view, slot) = (*view, *slot);
                let a = |digest| Message::Accept { view, slot, digest };
                [a(da), a(db)]
            }),
            _ => None,
        }
    }

    fn rewrite(&mut self, mark: usize, cx: &mut ActorCx<'_, M, O>) {
        let produced: Vec<_> = cx.effects_mut().drain(mark..).collect();
        for e in produced {
            let ActorEffect::Multicast { to, msg } = e else {
                cx.effects_mut().push(e);
                continue;
            };
            match self.halves(&msg) {
                Some([a, b]) => {
                    let (even, odd): (Vec<Addr>, Vec<Addr>) =
                        to.into_iter().partition(|t| self.parity(t) == 0);
                    if !even.is_empty() {
                        cx.multicast(even, a);
                    }
                    if !odd.is_empty() {
                        cx.multicast(odd, b);
                    }
                }
                None => cx.multicast(to, msg),
            }
        }
    }

    fn around(
        &mut self,
        cx: &mut ActorCx<'_, M, O>,
        f: impl FnOnce(&mut BoxActor<M, I, O>, &mut ActorCx<'_, M, O>),
    ) {
        let mark = cx.effects_mut().len();
        f(&mut self.inner, cx);
        self.rewrite(mark, cx);
    }
}

impl<M: Clone, I, O> Actor<M, I, O> for Equivocator<M, I, O> {
    fn start(&mut self, cx: &mut ActorCx<'_, M, O>) {
        self.around(cx, |a, cx| a.start(cx));
    }
    fn input(&mut self, input: I, cx: &mut ActorCx<'_, M, O>) {
        self.around(cx, |a, cx| a.input(input, cx));
    }
    fn message(&mut self, from: Addr, msg: M, cx: &mut ActorCx<'_, M, O>) {
        self.around(cx, |a, cx| a.message(from, msg, cx));
    }
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, M, O>) {
        self.around(cx, |a, cx| a.timer(key, cx));
    }
}

/// The field mutator of `--byzantine mutate`: a Byzantine replica that runs
/// the honest code but, for half of its outgoing messages, corrupts one
/// field ([`fields`]): views, slots, range bounds, digests, list lengths,
/// opaque bytes. Signed messages (checkpoints, STOP-DATA) are re-signed with
/// its own key after the edit, so they pass signature checks and reach the
/// handlers, as members of `group`.
pub struct FieldSurgery {
    pub group: GroupId,
}

/// The share of outgoing messages a mutating replica corrupts.
pub const MUTATE_PROB: f64 = 0.5;

impl FieldSurgery {
    fn stop_data(&self, sd: &mut StopData, rng: &mut dyn RngCore, crypto: &Crypto) {
        let b = &mut sd.body;
        match rng.gen_range(0..4) {
            0 => b.view = fields::number(b.view, rng),
            1 => fields::list(&mut b.claims, rng),
            2 => match b.claims.first_mut() {
                Some(c) => {
                    c.slot = fields::number(c.slot, rng);
                    fields::list(&mut c.pre_prepared, rng);
                }
                None => b.checkpoint = None,
            },
            _ => match &mut b.checkpoint {
                Some(c) => c.slot = fields::number(c.slot, rng),
                None => b.view = fields::number(b.view, rng),
            },
        }
        sd.sig = crypto.sign(&stop_bytes(self.group, &sd.body));
    }
}

impl Mutator<Message> for FieldSurgery {
    fn equivocate(&self, _m: &Message, _variant: u64, _crypto: &Crypto) -> Option<Message> {
        None
    }

    fn corrupt(&self, m: &Message, rng: &mut dyn RngCore, crypto: &Crypto) -> Option<Message> {
        let mut m = m.clone();
        let pick = rng.gen_range(0..3);
        match &mut m {
            Message::Request(r) if pick == 0 => r.session = fields::number(r.session, rng),
            Message::Request(r) => r.seq = fields::number(r.seq, rng),
            Message::Forward(rs) => fields::list(rs, rng),
            Message::Reply(r) | Message::TentativeReply(r) => match (pick, rng.gen_bool(0.5)) {
                (0, false) => r.seq = fields::number(r.seq, rng),
                (0, true) => r.session = fields::number(r.session, rng),
                (1, false) => r.view = fields::number(r.view, rng),
                (1, true) => r.slot = fields::number(r.slot, rng),
                _ => fields::bytes(&mut r.result, rng),
            },
            Message::Propose { view, slot, batch } => match pick {
                0 => *view = fields::number(*view, rng),
                1 => *slot = fields::number(*slot, rng),
                // a bad time costs a view change (backups refuse it)
                _ if rng.gen_bool(0.5) => batch.time_ms = fields::number(batch.time_ms, rng),
                _ => fields::list(std::sync::Arc::make_mut(&mut batch.requests), rng),
            },
            Message::Write { view, slot, digest } | Message::Accept { view, slot, digest } => {
                match pick {
                    0 => *view = fields::number(*view, rng),
                    1 => *slot = fields::number(*slot, rng),
                    _ => fields::digest(digest, rng),
                }
            }
            Message::Checkpoint { slot, state, sig } => {
                match pick {
                    0 => *slot = fields::number(*slot, rng),
                    _ => fields::digest(state, rng),
                }
                *sig = crypto.sign(&checkpoint_bytes(self.group, *slot, state));
            }
            Message::Stop { view } | Message::FetchSync { view } => {
                *view = fields::number(*view, rng)
            }
            Message::StopData(sd) => self.stop_data(sd, rng, crypto),
            Message::Sync { view, stops } => match pick {
                0 => *view = fields::number(*view, rng),
                1 => fields::list(stops, rng),
                _ => match stops.first_mut() {
                    Some(sd) => self.stop_data(sd, rng, crypto),
                    None => *view = fields::number(*view, rng),
                },
            },
            Message::FetchState { slot } => *slot = fields::number(*slot, rng),
            Message::SessionQuery { nonce, .. } => *nonce = fields::number(*nonce, rng),
            // a huge slot would make the client's requests SessionAhead, a
            // low one Stale, if the client took it alone
            Message::SessionInfo {
                nonce, executed, ..
            } => match pick {
                0 => *nonce = fields::number(*nonce, rng),
                _ => *executed = fields::number(*executed, rng),
            },
            Message::State { cert, manifest } => match pick {
                0 => cert.slot = fields::number(cert.slot, rng),
                1 => fields::list(&mut cert.sigs, rng),
                _ if rng.gen_bool(0.5) => manifest.len = fields::number(manifest.len, rng),
                _ => match manifest.chunks.first_mut() {
                    Some(d) => fields::digest(d, rng),
                    None => fields::list(&mut manifest.chunks, rng),
                },
            },
            Message::FetchChunk { slot, index } => match pick {
                0 => *slot = fields::number(*slot, rng),
                _ => *index = fields::number(*index as u64, rng) as u32,
            },
            Message::Chunk { slot, index, bytes } => match pick {
                0 => *slot = fields::number(*slot, rng),
                1 => *index = fields::number(*index as u64, rng) as u32,
                _ => fields::bytes(bytes, rng),
            },
            Message::FetchLog { from, to } => fields::range(from, to, rng),
            Message::Log { entries } => match (pick, entries.first_mut()) {
                (0, Some(e)) => e.0 = fields::number(e.0, rng),
                (1, Some(e)) => e.1 = fields::number(e.1, rng),
                _ => fields::list(entries, rng),
            },
            Message::Refused {
                session,
                seq,
                reason,
                ..
            } => match (pick, reason) {
                (0, _) => *seq = fields::number(*seq, rng),
                (1, byzscale_smr::RefuseReason::Stale { floor }) => {
                    *floor = fields::number(*floor, rng)
                }
                _ => *session = fields::number(*session, rng),
            },
            Message::NewEpoch { epoch, .. } | Message::FetchConfig { epoch } => {
                *epoch = fields::number(*epoch, rng)
            }
            // a changed certificate fails the administrator's signature
            Message::ConfigProof { certs } => match certs.first_mut() {
                Some(c) if pick == 0 => c.body.epoch = fields::number(c.body.epoch, rng),
                _ => fields::list(certs, rng),
            },
        }
        Some(m)
    }
}
