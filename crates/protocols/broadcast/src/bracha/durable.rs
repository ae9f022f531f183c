//! What a Bracha member must never contradict after a restart, as records
//! for its driver ([`Record`], emitted as `Effect::Persist` with
//! [`Config::persist`]), their fold ([`Durable`]) and the restart itself
//! ([`Bracha::recover`]).
//!
//! Bracha's safety rests on each correct member echoing at most one payload
//! and readying at most one digest per instance, and on a source signing one
//! payload per sequence number. A member that forgot them at a restart
//! could do either twice. So:
//! - [`Record::Echoed`] precedes the member's ECHO (and, for its own
//!   broadcast, the SEND: the member echoes what it broadcasts), so the next
//!   sequence number and every echo survive;
//! - [`Record::Readied`] precedes the READY;
//! - [`Record::Delivered`] precedes whatever the delivery lets out (AT2's
//!   answer to the client), closes the instance and moves the frontier.
//!
//! A restarted member reopens the instances it echoed or readied and did not
//! deliver, with those votes (re-sent by the retransmission tick), and
//! delivers from its frontier on; what it missed it catches up from its
//! peers (see [`super::catchup`]).

use super::{Bracha, Config, Instance};
use crate::common::{Payload, Signed};
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A Bracha member's durable records, in emission order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record<P> {
    /// It echoed `signed` for instance `(source, seq)`; for its own
    /// instances, it broadcast it.
    Echoed {
        source: NodeId,
        seq: u64,
        signed: Signed<P>,
    },
    /// It readied `digest` for instance `(source, seq)`.
    Readied {
        source: NodeId,
        seq: u64,
        digest: Digest,
    },
    /// It delivered `signed` as instance `(source, seq)`.
    Delivered {
        source: NodeId,
        seq: u64,
        signed: Signed<P>,
    },
}

impl<P> From<byzscale_core::NoRecord> for Record<P> {
    fn from(n: byzscale_core::NoRecord) -> Self {
        match n {}
    }
}

/// What a member said about an instance it has not delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened<P> {
    pub echo: Option<Signed<P>>,
    pub ready: Option<Digest>,
}

impl<P> Default for Opened<P> {
    fn default() -> Self {
        Opened {
            echo: None,
            ready: None,
        }
    }
}

/// What [`Durable::apply`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// The votes of this open instance.
    Open(NodeId, u64),
    /// This instance was delivered (and closed).
    Delivered(NodeId, u64),
}

/// Every record of member `me`, folded: its next own sequence number, the
/// delivery frontier and the open instances it voted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Durable<P> {
    pub me: NodeId,
    /// The sequence number of its next own broadcast.
    pub next_seq: u64,
    /// Per source, the next sequence number to deliver (absent: 1).
    pub next: BTreeMap<NodeId, u64>,
    pub open: BTreeMap<(NodeId, u64), Opened<P>>,
}

impl<P: Payload> Durable<P> {
    pub fn new(me: NodeId) -> Self {
        Durable {
            me,
            next_seq: 1,
            next: BTreeMap::new(),
            open: BTreeMap::new(),
        }
    }

    fn next(&self, source: NodeId) -> u64 {
        self.next.get(&source).copied().unwrap_or(1)
    }

    /// Fold one record in (in emission order).
    pub fn apply(&mut self, r: &Record<P>) -> Change {
        let (source, seq) = match r {
            Record::Echoed { source, seq, .. }
            | Record::Readied { source, seq, .. }
            | Record::Delivered { source, seq, .. } => (*source, *seq),
        };
        if source == self.me {
            self.next_seq = self.next_seq.max(seq + 1);
        }
        if seq < self.next(source) {
            return Change::None;
        }
        match r {
            Record::Echoed { signed, .. } => {
                let o = self.open.entry((source, seq)).or_default();
                if o.echo.is_some() {
                    return Change::None;
                }
                o.echo = Some(signed.clone());
            }
            Record::Readied { digest, .. } => {
                let o = self.open.entry((source, seq)).or_default();
                if o.ready.is_some() {
                    return Change::None;
                }
                o.ready = Some(*digest);
            }
            Record::Delivered { .. } => {
                self.next.insert(source, seq + 1);
                self.open.remove(&(source, seq));
                return Change::Delivered(source, seq);
            }
        }
        Change::Open(source, seq)
    }
}

impl<P: Payload> Bracha<P> {
    /// Member `me` restarted from `durable` (see the module docs); `kept`
    /// are the recent deliveries it still vouches for (catch-up), `crypto`
    /// checks the payloads it echoed again.
    pub fn recover(
        me: NodeId,
        cfg: Arc<Config>,
        durable: Durable<P>,
        kept: impl IntoIterator<Item = ((NodeId, u64), Signed<P>)>,
        crypto: &Crypto,
    ) -> Result<Self, String> {
        let mut b = Bracha::new(me, cfg.clone());
        b.ms.next_seq = durable.next_seq.max(1);
        b.ms.order.resume(&durable.next);
        for ((source, seq), o) in durable.open {
            if cfg.pos(source).is_none() {
                return Err(format!("an instance of non-member {source}"));
            }
            let mut inst: Instance<P> = b.new_instance();
            if let Some(s) = o.echo {
                let d = inst
                    .payloads
                    .check(crypto, source, seq, &s)
                    .map_err(|e| format!("the payload echoed for {source}/{seq}: {e:?}"))?;
                inst.payloads.admit(d, s, |_| u64::MAX);
                inst.echoed = true;
                inst.my_echo = Some(d);
                inst.echoes.add(&cfg.layout, b.my_pos, d);
            }
            if let Some(d) = o.ready {
                inst.readied = true;
                inst.my_ready = Some(d);
                inst.readies.add(&cfg.layout, b.my_pos, d);
            }
            b.instances.insert((source, seq), inst);
        }
        b.ms.stats.open_instances = b.instances.len() as u64;
        for (key, s) in kept {
            b.catchup.keep(key, s, &cfg);
        }
        Ok(b)
    }
}
