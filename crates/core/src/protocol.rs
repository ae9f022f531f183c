//! The sans-IO protocol interface.
//!
//! A protocol is a deterministic state machine: the driver (the simulator in `sim`,
//! the tokio runtime in `net`) feeds it inputs, messages and timer expirations, and
//! the protocol answers with [`Effect`]s collected in its context [`Cx`]. Time and
//! randomness come only from the context, so a simulated run replays exactly from
//! its seed. Modelled on quinn-proto, raft-rs (`step`/`tick`/`ready`), hbbft
//! (`Step { output, fault_log, messages }`) and Malachite (durability as an
//! effect, `WalAppend`).
//!
//! Rules for implementors:
//! - never read wall-clock time, thread-local randomness or iterate a `HashMap`
//!   where the order can reach a message;
//! - never panic on input from the network: drop it and call [`Cx::fault`] with
//!   a kind from the protocol's own [`FaultKind`] enum (see [`fault_kinds!`]);
//! - everything the protocol wants from the world is an [`Effect`], durability
//!   included ([`Effect::Persist`]).
//!
//! # Nesting
//!
//! A protocol that owns another (a ByzCast replica owns an SMR replica and SMR
//! clients of its children; AT2 owns a broadcast) runs the inner step with
//! [`Cx::nested`] (or [`Cx::nested_with`] under another identity) and gets a
//! [`Step`] back; [`Step::lift`] moves the inner messages, timers, faults and
//! records into the outer context with two mapping functions and returns the
//! inner outputs for the outer protocol to act on (hbbft's `Step::extend_with`).
//! [`crate::keyed::Keyed`] holds many instances of one inner protocol by key.

use crate::crypto::Crypto;
use crate::ids::Addr;
use rand::RngCore;
use serde::{de::DeserializeOwned, Serialize};
use std::any::Any;
use std::fmt::Debug;

/// Nanoseconds: virtual in the simulator, since process start in the runtime.
pub type Time = u64;

pub const MICROS: Time = 1_000;
pub const MILLIS: Time = 1_000_000;
pub const SECS: Time = 1_000_000_000;

/// A deterministic protocol state machine.
pub trait Protocol {
    /// Wire messages between endpoints of this protocol.
    type Message: Clone + Debug + Serialize + DeserializeOwned + Send + 'static;
    /// Requests from the layer above (a client operation, `multicast(m, dst)`).
    type Input: Debug;
    /// Deliveries to the layer above (a decided batch, `a-deliver(m)`, a reply).
    type Output: Debug;
    /// Timer names. Setting a timer that is already armed re-arms it.
    type Timer: Clone + Debug + Ord;
    /// What the protocol asks its driver to make durable ([`Effect::Persist`]);
    /// [`NoRecord`] for protocols without durable state.
    type Record: Debug;

    /// Called once before anything else.
    fn on_start(&mut self, _cx: &mut Cx<'_, Self>) {}
    fn on_input(&mut self, input: Self::Input, cx: &mut Cx<'_, Self>);
    /// `from` is authenticated by the driver's channel (MAC or TLS-like session).
    fn on_message(&mut self, from: Addr, msg: Self::Message, cx: &mut Cx<'_, Self>);
    fn on_timer(&mut self, timer: Self::Timer, cx: &mut Cx<'_, Self>);

    /// How much the receiver needs `msg` compared with this protocol's other
    /// messages, for a driver whose per-peer send queue is full: it drops
    /// [`Priority::Bulk`] frames before [`Priority::Control`] ones (see
    /// `byzscale_net::transport`). Only a hint for the queues; delivery
    /// semantics do not change (a lossy link may drop anything). Default:
    /// everything is control.
    fn priority(_msg: &Self::Message) -> Priority {
        Priority::Control
    }
}

/// The class of a message in a driver's bounded send queues
/// ([`Protocol::priority`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Small messages that drive progress (votes, view changes, requests,
    /// replies): kept while bulk is dropped.
    #[default]
    Control,
    /// Large catch-up transfers a receiver asks for again (state, logs):
    /// dropped first.
    Bulk,
}

impl Priority {
    /// Both classes, most important first.
    pub const ALL: [Priority; 2] = [Priority::Control, Priority::Bulk];

    /// Short name for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Control => "control",
            Priority::Bulk => "bulk",
        }
    }
}

/// The [`Protocol::Record`] of a protocol that persists nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRecord {}

/// Something a protocol asks of its driver.
pub enum Effect<P: Protocol + ?Sized> {
    /// Send `msg` to one endpoint.
    Send {
        to: Addr,
        msg: P::Message,
    },
    /// Send the same `msg` to several endpoints (encoded once by the driver).
    Multicast {
        to: Vec<Addr>,
        msg: P::Message,
    },
    /// Arm (or re-arm) `timer` to fire `after` nanoseconds from now.
    SetTimer {
        timer: P::Timer,
        after: Time,
    },
    CancelTimer {
        timer: P::Timer,
    },
    /// Deliver to the layer above.
    Output(P::Output),
    /// Byzantine or malformed behaviour observed, kept as data.
    Fault(Fault),
    /// Make `record` durable. Records of one protocol instance are applied to
    /// its store in the order they are emitted; a driver may group several
    /// into one fsync'd transaction (group commit). A driver with a store
    /// (the tokio runtime) holds every `Send`/`Multicast` that follows a
    /// record in the same step until that record, and so every earlier one,
    /// is durable; a message that depends on records of earlier steps needs a
    /// record in its own step before it, or a [`Effect::Barrier`].
    Persist(P::Record),
    /// Hold every `Send`/`Multicast` that follows, in this step, until every
    /// record emitted so far (in this step or earlier ones) is durable,
    /// without writing a record: a message that depends on records of
    /// earlier steps (an SMR reply on the replica's own ACCEPT) waits for
    /// the group commit already under way instead of a new one. A driver
    /// without a store ignores it.
    Barrier,
}

impl<P: Protocol + ?Sized> Effect<P> {
    /// The names of the faults among `fx`, in order (what tests check).
    pub fn fault_names(fx: &[Effect<P>]) -> Vec<&'static str> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Fault(f) => Some(f.name()),
                _ => None,
            })
            .collect()
    }
}

impl<P: Protocol + ?Sized> Debug for Effect<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::Send { to, msg } => write!(f, "Send({to:?}, {msg:?})"),
            Effect::Multicast { to, msg } => write!(f, "Multicast({to:?}, {msg:?})"),
            Effect::SetTimer { timer, after } => write!(f, "SetTimer({timer:?}, {after})"),
            Effect::CancelTimer { timer } => write!(f, "CancelTimer({timer:?})"),
            Effect::Output(o) => write!(f, "Output({o:?})"),
            Effect::Fault(x) => write!(f, "Fault({x:?})"),
            Effect::Persist(r) => write!(f, "Persist({r:?})"),
            Effect::Barrier => f.write_str("Barrier"),
        }
    }
}

/// A kind of misbehaviour a protocol reports. Each protocol has one enum of
/// them (declared with [`fault_kinds!`]), with a doc line per kind; checkers
/// match on the enum ([`Fault::is`]), logs and metrics use [`FaultKind::name`].
pub trait FaultKind: Debug + Sync + Any {
    /// A stable kebab-case label (log field, metric label).
    fn name(&self) -> &'static str;
    /// The same kind as a `'static` reference (the enums are field-less).
    fn as_static(&self) -> &'static dyn FaultKind;
}

/// Declares a protocol's fault kinds: a field-less enum with one doc line and
/// one label per kind, implementing [`FaultKind`].
///
/// ```
/// byzscale_core::fault_kinds! {
///     /// Faults of an example protocol.
///     pub enum Fault {
///         /// A message from outside the group.
///         NotAMember => "not-a-member",
///     }
/// }
/// assert_eq!(byzscale_core::FaultKind::name(&Fault::NotAMember), "not-a-member");
/// ```
#[macro_export]
macro_rules! fault_kinds {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => $label:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)*
        }
        #[allow(dead_code)]
        impl $name {
            /// Every kind, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// The kind's stable label.
            pub fn name(&self) -> &'static str {
                $crate::protocol::FaultKind::name(self)
            }
        }
        impl $crate::protocol::FaultKind for $name {
            fn name(&self) -> &'static str {
                match self {
                    $($name::$variant => $label,)*
                }
            }
            fn as_static(&self) -> &'static dyn $crate::protocol::FaultKind {
                match self {
                    $($name::$variant => &$name::$variant,)*
                }
            }
        }
    };
}

/// Evidence of misbehaviour: who, what kind, and a human-readable detail.
#[derive(Clone, Debug)]
pub struct Fault {
    pub node: Addr,
    pub kind: &'static dyn FaultKind,
    pub detail: String,
}

impl Fault {
    /// Whether this fault is of kind `k` (of `k`'s protocol).
    pub fn is<K: FaultKind + PartialEq>(&self, k: K) -> bool {
        (self.kind as &dyn Any).downcast_ref::<K>() == Some(&k)
    }
    /// The kind's label.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

impl PartialEq for Fault {
    fn eq(&self, o: &Fault) -> bool {
        self.node == o.node
            && self.detail == o.detail
            && (self.kind as &dyn Any).type_id() == (o.kind as &dyn Any).type_id()
            && self.kind.name() == o.kind.name()
    }
}
impl Eq for Fault {}

/// The context of one protocol step: the clock, the seeded RNG, the node's crypto,
/// and the effect buffer. The driver creates one per event and drains the effects.
pub struct Cx<'a, P: Protocol + ?Sized> {
    now: Time,
    /// Wall-clock time in milliseconds since the Unix epoch, if the driver
    /// set one ([`Cx::with_wall_ms`]); see [`Cx::wall_ms`].
    wall_ms: Option<u64>,
    rng: &'a mut dyn RngCore,
    crypto: &'a Crypto,
    effects: &'a mut Vec<Effect<P>>,
}

impl<'a, P: Protocol + ?Sized> Cx<'a, P> {
    pub fn new(
        now: Time,
        rng: &'a mut dyn RngCore,
        crypto: &'a Crypto,
        effects: &'a mut Vec<Effect<P>>,
    ) -> Self {
        Cx {
            now,
            wall_ms: None,
            rng,
            crypto,
            effects,
        }
    }
    /// The same context with the wall clock at `ms` milliseconds since the
    /// Unix epoch (the runtime reads the system clock once per step).
    pub fn with_wall_ms(mut self, ms: u64) -> Self {
        self.wall_ms = Some(ms);
        self
    }
    pub fn now(&self) -> Time {
        self.now
    }
    /// Wall-clock time in milliseconds since the Unix epoch, for what must
    /// mean a date outside the system (the SMR's batch timestamps, which
    /// Redis's `EXPIREAT` and `TIME` read). It is an input like any other:
    /// replicas' clocks differ, and a protocol that needs agreement on it
    /// agrees on a proposed value. The runtime gives the system clock; a
    /// driver that sets none (the simulator, tests) gets [`Cx::now`] in
    /// milliseconds, virtual and deterministic.
    pub fn wall_ms(&self) -> u64 {
        self.wall_ms.unwrap_or(self.now / MILLIS)
    }
    pub fn rng(&mut self) -> &mut dyn RngCore {
        self.rng
    }
    pub fn crypto(&self) -> &'a Crypto {
        self.crypto
    }
    pub fn send(&mut self, to: impl Into<Addr>, msg: P::Message) {
        self.effects.push(Effect::Send { to: to.into(), msg });
    }
    pub fn multicast(&mut self, to: Vec<Addr>, msg: P::Message) {
        if !to.is_empty() {
            self.effects.push(Effect::Multicast { to, msg });
        }
    }
    pub fn set_timer(&mut self, timer: P::Timer, after: Time) {
        self.effects.push(Effect::SetTimer { timer, after });
    }
    pub fn cancel_timer(&mut self, timer: P::Timer) {
        self.effects.push(Effect::CancelTimer { timer });
    }
    pub fn output(&mut self, o: P::Output) {
        self.effects.push(Effect::Output(o));
    }
    /// Report misbehaviour of `node` (see [`FaultKind`]).
    pub fn fault(
        &mut self,
        node: impl Into<Addr>,
        kind: impl FaultKind,
        detail: impl Into<String>,
    ) {
        self.effects.push(Effect::Fault(Fault {
            node: node.into(),
            kind: kind.as_static(),
            detail: detail.into(),
        }));
    }
    /// Pass on a fault reported by a nested protocol or a helper.
    pub fn report(&mut self, fault: Fault) {
        self.effects.push(Effect::Fault(fault));
    }
    /// Ask the driver to make `record` durable ([`Effect::Persist`]).
    pub fn persist(&mut self, record: P::Record) {
        self.effects.push(Effect::Persist(record));
    }
    /// Hold the sends that follow until every record so far is durable
    /// ([`Effect::Barrier`]).
    pub fn barrier(&mut self) {
        self.effects.push(Effect::Barrier);
    }
    /// Run a step of a nested protocol `Q`: `f` gets a context of `Q` sharing
    /// this clock, RNG and crypto. The effects come back as a [`Step`] for the
    /// outer protocol to [`Step::lift`].
    pub fn nested<Q: Protocol + ?Sized, R>(
        &mut self,
        f: impl FnOnce(&mut Cx<'_, Q>) -> R,
    ) -> (R, Step<Q>) {
        let crypto = self.crypto;
        self.nested_with(crypto, f)
    }
    /// [`Cx::nested`] under another identity's `crypto` (a replica acting as a
    /// client of another group signs and MACs as that client).
    pub fn nested_with<Q: Protocol + ?Sized, R>(
        &mut self,
        crypto: &Crypto,
        f: impl FnOnce(&mut Cx<'_, Q>) -> R,
    ) -> (R, Step<Q>) {
        let mut effects = Vec::new();
        let r = {
            let mut cx = Cx::new(self.now, &mut *self.rng, crypto, &mut effects);
            cx.wall_ms = self.wall_ms;
            f(&mut cx)
        };
        (r, Step { effects })
    }
}

/// The effects of one nested step, to be lifted into the outer protocol.
#[must_use = "a nested step's messages and timers are lost unless lifted"]
pub struct Step<Q: Protocol + ?Sized> {
    pub effects: Vec<Effect<Q>>,
}

impl<Q: Protocol + ?Sized> Step<Q> {
    /// Move the inner effects into `cx`: messages through `msg` (which may also
    /// rewrite destinations), timers through `timer`, faults as they are,
    /// records through `From`; the inner outputs are returned, in order, for
    /// the outer protocol to act on.
    pub fn lift<P: Protocol + ?Sized>(
        self,
        cx: &mut Cx<'_, P>,
        mut msg: impl FnMut(Q::Message) -> P::Message,
        mut timer: impl FnMut(Q::Timer) -> P::Timer,
    ) -> Vec<Q::Output>
    where
        P::Record: From<Q::Record>,
    {
        let mut outputs = Vec::new();
        for e in self.effects {
            match e {
                Effect::Send { to, msg: m } => cx.send(to, msg(m)),
                Effect::Multicast { to, msg: m } => cx.multicast(to, msg(m)),
                Effect::SetTimer { timer: t, after } => cx.set_timer(timer(t), after),
                Effect::CancelTimer { timer: t } => cx.cancel_timer(timer(t)),
                Effect::Output(o) => outputs.push(o),
                Effect::Fault(f) => cx.report(f),
                Effect::Persist(r) => cx.persist(r.into()),
                Effect::Barrier => cx.barrier(),
            }
        }
        outputs
    }

    /// For a wrapper whose inner protocol has the same messages and outputs
    /// (an adversary around an honest core): re-emit everything, timers
    /// mapped by `timer`.
    pub fn forward<P>(self, cx: &mut Cx<'_, P>, timer: impl FnMut(Q::Timer) -> P::Timer)
    where
        P: Protocol<Message = Q::Message, Output = Q::Output> + ?Sized,
        P::Record: From<Q::Record>,
    {
        for o in self.lift(cx, |m| m, timer) {
            cx.output(o);
        }
    }

    /// Like [`Step::lift`], with destinations rewritten by `addr` (an inner
    /// endpoint known to the outer world under another address).
    pub fn lift_to<P: Protocol + ?Sized>(
        mut self,
        cx: &mut Cx<'_, P>,
        addr: impl Fn(Addr) -> Addr,
        msg: impl FnMut(Q::Message) -> P::Message,
        timer: impl FnMut(Q::Timer) -> P::Timer,
    ) -> Vec<Q::Output>
    where
        P::Record: From<Q::Record>,
    {
        for e in self.effects.iter_mut() {
            match e {
                Effect::Send { to, .. } => *to = addr(*to),
                Effect::Multicast { to, .. } => to.iter_mut().for_each(|a| *a = addr(*a)),
                _ => {}
            }
        }
        self.lift(cx, msg, timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{CryptoMode, Identity};
    use crate::ids::NodeId;
    use rand::SeedableRng;

    crate::fault_kinds! {
        /// Test kinds.
        enum Inner {
            /// one
            Bad => "bad",
            /// two
            Worse => "worse",
        }
    }
    crate::fault_kinds! {
        /// Other test kinds with a clashing label.
        enum Other {
            /// same label, other protocol
            Bad => "bad",
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum InnerRecord {
        Wrote(u8),
    }
    #[derive(Debug, PartialEq)]
    enum OuterRecord {
        Inner(InnerRecord),
    }
    impl From<InnerRecord> for OuterRecord {
        fn from(r: InnerRecord) -> Self {
            OuterRecord::Inner(r)
        }
    }

    struct Child;
    impl Protocol for Child {
        type Message = u8;
        type Input = u8;
        type Output = u8;
        type Timer = u8;
        type Record = InnerRecord;
        fn on_input(&mut self, i: u8, cx: &mut Cx<'_, Self>) {
            cx.send(Addr::Node(NodeId(1)), i);
            cx.multicast(vec![Addr::Node(NodeId(1)), Addr::Node(NodeId(2))], i + 1);
            cx.set_timer(i, 5);
            cx.cancel_timer(i + 1);
            cx.fault(Addr::Node(NodeId(3)), Inner::Worse, "x");
            cx.persist(InnerRecord::Wrote(i));
            cx.barrier();
            cx.output(i * 2);
        }
        fn on_message(&mut self, _: Addr, _: u8, _: &mut Cx<'_, Self>) {}
        fn on_timer(&mut self, _: u8, _: &mut Cx<'_, Self>) {}
    }

    struct Parent;
    impl Protocol for Parent {
        type Message = (u8, u8);
        type Input = ();
        type Output = ();
        type Timer = (u8, u8);
        type Record = OuterRecord;
        fn on_input(&mut self, _: (), _: &mut Cx<'_, Self>) {}
        fn on_message(&mut self, _: Addr, _: (u8, u8), _: &mut Cx<'_, Self>) {}
        fn on_timer(&mut self, _: (u8, u8), _: &mut Cx<'_, Self>) {}
    }

    #[test]
    fn lift_maps_every_effect_and_returns_outputs() {
        let crypto = Crypto::new(
            Addr::Node(NodeId(0)),
            Identity::from_seed([1; 32]),
            CryptoMode::Real,
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut effects: Vec<Effect<Parent>> = Vec::new();
        let mut cx = Cx::new(7, &mut rng, &crypto, &mut effects);
        let ((), step) = cx.nested::<Child, _>(|c| Child.on_input(3, c));
        let outs = step.lift_to(
            &mut cx,
            |a| match a {
                Addr::Node(NodeId(2)) => Addr::Node(NodeId(9)),
                a => a,
            },
            |m| (9, m),
            |t| (8, t),
        );
        assert_eq!(outs, vec![6]);
        let n = |i| Addr::Node(NodeId(i));
        assert!(matches!(&effects[0], Effect::Send { to, msg: (9, 3) } if *to == n(1)));
        assert!(
            matches!(&effects[1], Effect::Multicast { to, msg: (9, 4) } if *to == vec![n(1), n(9)])
        );
        assert!(matches!(
            &effects[2],
            Effect::SetTimer {
                timer: (8, 3),
                after: 5
            }
        ));
        assert!(matches!(&effects[3], Effect::CancelTimer { timer: (8, 4) }));
        match &effects[4] {
            Effect::Fault(f) => {
                assert!(f.is(Inner::Worse));
                assert!(!f.is(Inner::Bad));
                assert_eq!(f.name(), "worse");
                assert_eq!(f.node, n(3));
            }
            e => panic!("expected a fault, got {e:?}"),
        }
        assert!(matches!(
            &effects[5],
            Effect::Persist(OuterRecord::Inner(InnerRecord::Wrote(3)))
        ));
        assert!(matches!(&effects[6], Effect::Barrier));
        assert_eq!(effects.len(), 7, "the output is returned, not re-emitted");
    }

    #[test]
    fn fault_kinds_are_typed_per_protocol() {
        let f = Fault {
            node: Addr::Node(NodeId(0)),
            kind: Inner::Bad.as_static(),
            detail: String::new(),
        };
        let g = Fault {
            kind: Other::Bad.as_static(),
            ..f.clone()
        };
        assert!(f.is(Inner::Bad) && !f.is(Other::Bad));
        assert!(g.is(Other::Bad) && !g.is(Inner::Bad));
        assert_eq!(f.name(), g.name());
        assert_ne!(f, g, "same label, different protocols");
        assert_eq!(f, f.clone());
        assert_eq!(Inner::ALL, &[Inner::Bad, Inner::Worse]);
    }
}
