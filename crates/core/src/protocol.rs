//! The sans-IO protocol interface.
//!
//! A protocol is a deterministic state machine: the driver (the simulator in `sim`,
//! the tokio runtime in `net`) feeds it inputs, messages and timer expirations, and
//! the protocol answers with [`Effect`]s collected in its context [`Cx`]. Time and
//! randomness come only from the context, so a simulated run replays exactly from
//! its seed. Modelled on quinn-proto, raft-rs (`step`/`tick`/`ready`) and hbbft
//! (`Step { output, fault_log, messages }`).
//!
//! Rules for implementors:
//! - never read wall-clock time, thread-local randomness or iterate a `HashMap`
//!   where the order can reach a message;
//! - never panic on input from the network: drop it and call [`Cx::fault`];
//! - everything the protocol wants from the world is an [`Effect`].

use crate::crypto::Crypto;
use crate::ids::Addr;
use rand::RngCore;
use serde::{de::DeserializeOwned, Serialize};
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

    /// Called once before anything else.
    fn on_start(&mut self, _cx: &mut Cx<'_, Self>) {}
    fn on_input(&mut self, input: Self::Input, cx: &mut Cx<'_, Self>);
    /// `from` is authenticated by the driver's channel (MAC or TLS-like session).
    fn on_message(&mut self, from: Addr, msg: Self::Message, cx: &mut Cx<'_, Self>);
    fn on_timer(&mut self, timer: Self::Timer, cx: &mut Cx<'_, Self>);
}

/// Something a protocol asks of its driver.
#[derive(Debug)]
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
}

/// Evidence of misbehaviour: who, what kind, and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub node: Addr,
    pub kind: &'static str,
    pub detail: String,
}

/// The context of one protocol step: the clock, the seeded RNG, the node's crypto,
/// and the effect buffer. The driver creates one per event and drains the effects.
pub struct Cx<'a, P: Protocol + ?Sized> {
    now: Time,
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
            rng,
            crypto,
            effects,
        }
    }
    pub fn now(&self) -> Time {
        self.now
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
    pub fn fault(&mut self, node: impl Into<Addr>, kind: &'static str, detail: impl Into<String>) {
        self.effects.push(Effect::Fault(Fault {
            node: node.into(),
            kind,
            detail: detail.into(),
        }));
    }
    /// Run a nested protocol step: `f` gets a context of the inner protocol `Q`
    /// sharing this clock, RNG and crypto; its effects are returned for the outer
    /// protocol to map (composition by nesting, e.g. a ByzCast replica owning an
    /// SMR replica).
    pub fn nested<Q: Protocol + ?Sized, R>(
        &mut self,
        f: impl FnOnce(&mut Cx<'_, Q>) -> R,
    ) -> (R, Vec<Effect<Q>>) {
        let mut inner = Vec::new();
        let r = {
            let mut cx = Cx::new(self.now, &mut *self.rng, self.crypto, &mut inner);
            f(&mut cx)
        };
        (r, inner)
    }
}
