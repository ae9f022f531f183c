//! The CPU model: service time of one event at one node.
//!
//! Each node is a single server. An event (start, input, message, timer) that
//! arrives at `t` begins at `max(t, busy_until)` and keeps the node busy for
//!
//! ```text
//! cost = factor x ( event
//!                 + recv_per_byte x received bytes
//!                 + sign x signs + verify x verifies + mac x (macs + modeled MACs)
//!                 + hash_per_byte x hashed bytes + mac_per_byte x channel-MAC bytes
//!                 + send x copies sent + send_per_byte x encoded bytes
//!                 + charged )
//! ```
//!
//! where the crypto counts come from the node's [`Crypto::take_meter`]
//! (everything the protocol did plus the channel MACs the simulator computes on
//! its behalf: one per destination when sending, one check when receiving;
//! with modeled channels the simulator counts those MACs in
//! [`Work::modeled_macs`] instead of computing them).
//! `charged` is what the actor charged itself ([`ActorCx::charge`]) for work
//! the meter cannot see; a free model ignores it.
//! Messages the event produces leave the node when it finishes. `factor` is 1
//! for honest nodes and larger for a slow node.
//!
//! [`CpuModel::calibrated`] holds per-operation costs of a current x86 core with
//! the crates this project uses (ed25519-dalek, HMAC-SHA256 from `sha2`,
//! BLAKE3); [`CpuModel::free`] makes computation instantaneous, leaving only
//! network delays.
//!
//! [`Crypto::take_meter`]: byzscale_core::crypto::Crypto::take_meter
//! [`ActorCx::charge`]: crate::engine::ActorCx::charge

use byzscale_core::crypto::Meter;
use byzscale_core::Time;
use serde::{Deserialize, Serialize};

/// Per-operation costs in nanoseconds (fractions allowed).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuModel {
    /// Fixed cost of handling any event.
    pub event_ns: f64,
    /// Decoding a received message, per byte.
    pub recv_per_byte_ns: f64,
    /// Handing one copy of a message to the network.
    pub send_ns: f64,
    /// Encoding a message (once per send or multicast), per byte.
    pub send_per_byte_ns: f64,
    pub sign_ns: f64,
    pub verify_ns: f64,
    /// One HMAC computation or check (fixed part).
    pub mac_ns: f64,
    /// Per byte covered by a channel MAC computed or checked by the simulator.
    pub mac_per_byte_ns: f64,
    /// Per byte hashed with `Crypto::hash`.
    pub hash_per_byte_ns: f64,
}

/// The work done while handling one event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub recv_bytes: u64,
    pub sends: u64,
    pub encoded_bytes: u64,
    pub channel_mac_bytes: u64,
    /// Channel MACs charged but not computed (the engine's modeled channels).
    pub modeled_macs: u64,
    pub meter: Meter,
    /// CPU time the actor charged itself, in nanoseconds.
    pub charged_ns: u64,
}

impl Default for CpuModel {
    fn default() -> Self {
        Self::calibrated()
    }
}

impl CpuModel {
    /// Costs of a current x86 server core (ed25519 sign 20 µs, verify 45 µs,
    /// HMAC 1 µs + 2 ns/B, hashing 1 ns/B, 2 µs per event, 1 µs per send).
    pub fn calibrated() -> Self {
        CpuModel {
            event_ns: 2_000.0,
            recv_per_byte_ns: 0.5,
            send_ns: 1_000.0,
            send_per_byte_ns: 0.5,
            sign_ns: 20_000.0,
            verify_ns: 45_000.0,
            mac_ns: 1_000.0,
            mac_per_byte_ns: 2.0,
            hash_per_byte_ns: 1.0,
        }
    }

    /// Computation takes no time.
    pub fn free() -> Self {
        CpuModel {
            event_ns: 0.0,
            recv_per_byte_ns: 0.0,
            send_ns: 0.0,
            send_per_byte_ns: 0.0,
            sign_ns: 0.0,
            verify_ns: 0.0,
            mac_ns: 0.0,
            mac_per_byte_ns: 0.0,
            hash_per_byte_ns: 0.0,
        }
    }

    pub fn is_free(&self) -> bool {
        *self == Self::free()
    }

    /// Service time of `w` on a node slowed down by `factor` (1.0 = normal).
    pub fn cost(&self, w: &Work, factor: f64) -> Time {
        if self.is_free() {
            return 0;
        }
        let m = &w.meter;
        let ns = self.event_ns
            + self.recv_per_byte_ns * w.recv_bytes as f64
            + self.send_ns * w.sends as f64
            + self.send_per_byte_ns * w.encoded_bytes as f64
            + self.sign_ns * m.signs as f64
            + self.verify_ns * m.verifies as f64
            + self.mac_ns * (m.macs + w.modeled_macs) as f64
            + self.mac_per_byte_ns * w.channel_mac_bytes as f64
            + self.hash_per_byte_ns * m.hashed_bytes as f64
            + w.charged_ns as f64;
        let ns = ns * factor;
        if ns.is_finite() && ns > 0.0 {
            ns.round() as Time
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_add_up() {
        let c = CpuModel::calibrated();
        let w = Work {
            recv_bytes: 1000,
            sends: 3,
            encoded_bytes: 100,
            channel_mac_bytes: 300,
            modeled_macs: 2,
            meter: Meter {
                signs: 1,
                verifies: 2,
                macs: 4,
                hashed_bytes: 1000,
            },
            charged_ns: 0,
        };
        let expect =
            2_000.0 + 500.0 + 3_000.0 + 50.0 + 20_000.0 + 90_000.0 + 6_000.0 + 600.0 + 1_000.0;
        assert_eq!(c.cost(&w, 1.0), expect as Time);
        assert_eq!(c.cost(&w, 2.0), 2 * expect as Time);
        assert_eq!(CpuModel::free().cost(&w, 10.0), 0);
        let charged = Work {
            charged_ns: 3_900_000,
            ..w
        };
        assert_eq!(c.cost(&charged, 1.0), expect as Time + 3_900_000);
        assert_eq!(c.cost(&charged, 2.0), 2 * (expect as Time + 3_900_000));
        assert_eq!(CpuModel::free().cost(&charged, 1.0), 0, "free ignores it");
        assert!(CpuModel::free().is_free());
    }
}

/// A cost model for testbeds that signed every protocol message (Steward's
/// paper signed each message with RSA-1024, its flat baseline too), for
/// protocols that authenticate with MACs here: wrapped around a node
/// ([`crate::adversary::intercept::Intercept`]), it charges `verify_ns` for
/// every message received and `sign_ns` for every message sent (one
/// signature per multicast, whatever its number of copies), on top of what
/// the node really computes. Behaviour is unchanged: only time is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SignEveryMessage {
    pub sign_ns: u64,
    pub verify_ns: u64,
}

impl SignEveryMessage {
    /// RSA-1024 on Steward's testbed: sign 1.3 ms, verify 0.07 ms.
    pub fn steward_paper() -> Self {
        SignEveryMessage {
            sign_ns: 1_300_000,
            verify_ns: 70_000,
        }
    }

    /// `inner` with every message it sends and receives charged.
    pub fn around<M: 'static, I: 'static, O: 'static>(
        self,
        inner: crate::engine::BoxActor<M, I, O>,
    ) -> crate::engine::BoxActor<M, I, O> {
        Box::new(crate::adversary::intercept::Intercept::new(inner, self))
    }
}

impl<M, I, O> crate::adversary::intercept::Hooks<M, I, O> for SignEveryMessage {
    fn message(
        &mut self,
        _: &dyn crate::engine::Actor<M, I, O>,
        _: byzscale_core::Addr,
        msg: M,
        cx: &mut crate::engine::ActorCx<'_, M, O>,
    ) -> Option<M> {
        cx.charge(self.verify_ns);
        Some(msg)
    }
    fn after(
        &mut self,
        _: crate::adversary::intercept::Event,
        _: &dyn crate::engine::Actor<M, I, O>,
        cx: &mut crate::engine::ActorCx<'_, M, O>,
    ) {
        use crate::engine::ActorEffect;
        let signed = cx
            .effects_mut()
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ActorEffect::Send { .. }
                        | ActorEffect::Multicast { .. }
                        | ActorEffect::Spoofed { .. }
                )
            })
            .count() as u64;
        cx.charge(signed * self.sign_ns);
    }
}
