//! Fetch-on-miss: ECHO and READY carry only a digest, so a member that
//! readies or decides on a digest whose payload it does not hold (its SEND
//! was left out by a Byzantine source, or lost) pulls the payload from its
//! peers.
//!
//! - **When.** On readying or deciding for `d` without holding `d`, a member
//!   arms [`Timer::Pull`] for a quarter of [`Config::pull_retry`] (the SEND
//!   may just be late: in a correct run no pull leaves), then sends
//!   [`Message::Pull`] `(source, seq, d)` and re-arms it for a whole period,
//!   until it holds the payload or the instance completes.
//! - **Whom.** The peers in this order: those whose ECHO for `d` it counted
//!   (a correct one holds `d`), then those that readied `d`, then the
//!   others; round `r` asks the next `min(2^r, f+1)` of them, rotating. A
//!   READY quorum for `d` means that some correct member saw an ECHO quorum
//!   for `d`, so at least f+1 correct members echoed `d` and hold it (open,
//!   waiting for its turn, or delivered and kept, see below): a full turn
//!   reaches one of them.
//! - **Answers.** A member answers a pull with [`Message::Push`] if it holds
//!   the payload with that digest: in an open instance, completed and
//!   waiting for its turn, or delivered and kept (the catch-up's table,
//!   [`Config::retain`] per source and [`Config::retain_bytes`] in all, now
//!   kept with or without retransmission). It serves one peer's pull for one
//!   instance at most once per half period; a second pull inside that time
//!   is dropped and reported ([`Fault::PullFlood`]). The table of when it
//!   served whom holds at most [`MAX_SERVED`] entries (old ones are
//!   forgotten first; when it is full of fresh ones, pulls go unanswered and
//!   their sender asks someone else).
//! - **Checks.** A push is taken only for an instance that wants a payload:
//!   it must hash to the digest asked for, otherwise it is dropped, the
//!   sender is reported ([`Fault::WrongPayload`]) and the next peers are
//!   asked at once; then its source signature is checked as for a SEND.
//!   Late or unsolicited pushes are ignored quietly (several peers are
//!   asked).
//!
//! A pulled payload is not echoed (a member echoes only what the source
//! sent it), so Bracha's votes are unchanged; it only lets the member
//! deliver.

use super::{Bracha, Fault, Instance, Message, Timer};
use crate::common::{Payload, Signed};
use byzscale_core::crypto::{short, Digest};
use byzscale_core::protocol::{Cx, Time};
use byzscale_core::{Addr, NodeId};
use std::collections::BTreeMap;

/// Entries of the table of served pulls (each about 50 bytes with the
/// map's overhead, so about 200 KiB).
pub const MAX_SERVED: usize = 4096;

/// The payload an open instance pulls.
#[derive(Clone, Debug)]
pub(super) struct Wanted {
    pub(super) digest: Digest,
    /// Rounds of pulls sent so far.
    round: u32,
    /// Where the next round starts in the order of peers.
    cursor: usize,
}

/// When this member last served each `(peer, source, seq)`.
#[derive(Clone, Debug, Default)]
pub(super) struct Served {
    last: BTreeMap<(NodeId, NodeId, u64), Time>,
}

/// What [`Served::admit`] decided about a pull.
#[derive(Debug, PartialEq, Eq)]
enum Serve {
    Yes,
    /// The same peer pulled the same instance within `window`.
    Flood,
    /// The table is full of fresh entries.
    Full,
}

impl Served {
    fn admit(&mut self, key: (NodeId, NodeId, u64), now: Time, window: Time) -> Serve {
        if let Some(t) = self.last.get(&key) {
            if now < t.saturating_add(window) {
                return Serve::Flood;
            }
        } else if self.last.len() >= MAX_SERVED {
            self.last.retain(|_, t| now < t.saturating_add(window));
            if self.last.len() >= MAX_SERVED {
                return Serve::Full;
            }
        }
        self.last.insert(key, now);
        Serve::Yes
    }
}

impl<P: Payload> Bracha<P> {
    /// Pulls served recently (the entries of the bounded table).
    pub fn served_pulls(&self) -> usize {
        self.served.last.len()
    }

    /// The open instance `(source, seq)` needs the payload with digest `d`:
    /// unless it holds it, pull it after a quarter period.
    pub(super) fn want(&mut self, cx: &mut Cx<'_, Self>, source: NodeId, seq: u64, d: Digest) {
        let Some(inst) = self.instances.get_mut(&(source, seq)) else {
            return;
        };
        if inst.payloads.contains(&d) || inst.wanted.as_ref().is_some_and(|w| w.digest == d) {
            return;
        }
        // the timer runs while a payload is wanted and missing
        let armed = inst
            .wanted
            .as_ref()
            .is_some_and(|w| !inst.payloads.contains(&w.digest));
        inst.wanted = Some(Wanted {
            digest: d,
            round: 0,
            cursor: 0,
        });
        if !armed {
            cx.set_timer(Timer::Pull { source, seq }, self.cfg.pull_retry / 4);
        }
    }

    pub(super) fn on_pull_timer(&mut self, cx: &mut Cx<'_, Self>, source: NodeId, seq: u64) {
        if self.pull_round(cx, source, seq) {
            cx.set_timer(Timer::Pull { source, seq }, self.cfg.pull_retry);
        }
    }

    /// Ask the next peers for the wanted payload of `(source, seq)`; false
    /// if none is wanted any more.
    fn pull_round(&mut self, cx: &mut Cx<'_, Self>, source: NodeId, seq: u64) -> bool {
        let Some(inst) = self.instances.get(&(source, seq)) else {
            return false;
        };
        let Some(w) = inst.wanted.clone() else {
            return false;
        };
        if inst.payloads.contains(&w.digest) {
            return false;
        }
        let order = self.pull_order(inst, &w.digest);
        if order.is_empty() {
            return false;
        }
        let fanout = (1usize << w.round.min(16))
            .min(self.cfg.f() + 1)
            .min(order.len());
        let to: Vec<Addr> = (0..fanout)
            .map(|k| Addr::Node(order[(w.cursor + k) % order.len()]))
            .collect();
        if let Some(w) = self
            .instances
            .get_mut(&(source, seq))
            .and_then(|i| i.wanted.as_mut())
        {
            w.round = w.round.saturating_add(1);
            w.cursor = (w.cursor + fanout) % order.len();
        }
        self.ms.stats.pulls += to.len() as u64;
        let digest = w.digest;
        cx.multicast(
            to,
            Message::Pull {
                source,
                seq,
                digest,
            },
        );
        true
    }

    /// The other members in the order they are asked for `d`: those that
    /// echoed it, those that readied it, the rest (each in member order).
    fn pull_order(&self, inst: &Instance<P>, d: &Digest) -> Vec<NodeId> {
        let mut tiers: [Vec<NodeId>; 3] = Default::default();
        for (pos, m) in self.cfg.members.iter().enumerate() {
            if pos == self.my_pos {
                continue;
            }
            let tier = if inst.echoes.earlier(pos, d) == Some(true) {
                0
            } else if inst.readies.earlier(pos, d) == Some(true) {
                1
            } else {
                2
            };
            tiers[tier].push(*m);
        }
        tiers.concat()
    }

    /// The payload with digest `d` of `(source, seq)`, if this member holds
    /// it (open, waiting for its turn, or delivered and kept).
    fn held(&self, cx: &Cx<'_, Self>, source: NodeId, seq: u64, d: &Digest) -> Option<Signed<P>> {
        if let Some(inst) = self.instances.get(&(source, seq)) {
            return inst.payloads.by_digest(d).cloned();
        }
        let done = self.ms.order.waiting_payload(source, seq);
        let s = done.or_else(|| self.catchup.get(&(source, seq)))?;
        (s.digest(cx.crypto(), source, seq) == *d).then(|| s.clone())
    }

    pub(super) fn on_pull(
        &mut self,
        cx: &mut Cx<'_, Self>,
        from: NodeId,
        source: NodeId,
        seq: u64,
        d: Digest,
    ) {
        if self.cfg.pos(source).is_none() {
            let detail = format!("pull for non-member {source}");
            self.fault(cx, from, Fault::UnknownSource, detail);
            return;
        }
        let window = self.cfg.pull_retry / 2;
        match self.served.admit((from, source, seq), cx.now(), window) {
            Serve::Yes => {}
            Serve::Full => return,
            Serve::Flood => {
                let detail = format!("{source}/{seq} pulled again within {window} ns");
                self.fault(cx, from, Fault::PullFlood, detail);
                return;
            }
        }
        if let Some(signed) = self.held(cx, source, seq, &d) {
            cx.send(
                from,
                Message::Push {
                    source,
                    seq,
                    signed,
                },
            );
        }
    }

    /// A PUSH from `from` for instance `key`.
    pub(super) fn on_push(
        &mut self,
        cx: &mut Cx<'_, Self>,
        from: NodeId,
        key: (NodeId, u64),
        signed: Signed<P>,
    ) {
        let (source, seq) = key;
        let wanted = self.instances.get(&(source, seq)).and_then(|i| {
            let w = i.wanted.as_ref()?;
            (!i.payloads.contains(&w.digest)).then_some(w.digest)
        });
        let Some(want) = wanted else {
            return; // late (asked several) or unsolicited
        };
        let d = signed.digest(cx.crypto(), source, seq);
        if d != want {
            let detail = format!(
                "{source}/{seq}: pushed {}, pulled {}",
                short(&d),
                short(&want)
            );
            self.fault(cx, from, Fault::WrongPayload, detail);
            self.pull_round(cx, source, seq);
            return;
        }
        if self.check(cx, from, source, seq, &signed).is_none() {
            self.pull_round(cx, source, seq);
            return;
        }
        self.ms.stats.pulled += 1;
        cx.cancel_timer(Timer::Pull { source, seq });
        // pinned as wanted; finishes the instance if it was decided
        self.keep(cx, source, seq, d, signed);
    }
}
