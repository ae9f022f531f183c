//! Durability of an AT2 process: what it asks its driver to keep
//! ([`Record`], emitted as `Effect::Persist`), the fold of those records
//! ([`Durable`]) and the restart ([`At2::recover`], over Bracha).
//!
//! Two kinds of records:
//! - the broadcast's ([`Record::Bcast`]; for Bracha, see
//!   `byzscale_broadcast::bracha::durable`): every own broadcast, echo and
//!   ready is durable before it leaves, so a restarted process never signs a
//!   second transfer message under a sequence number nor votes twice; every
//!   delivery is durable before what it lets out (the answer to the owner's
//!   client);
//! - a [`Checkpoint`] every `checkpoint_every` deliveries: the ledger, the
//!   per-account history and the delivery frontier, so a restart replays only
//!   the deliveries after it (and the driver can drop older ones, keeping
//!   [`LOG_KEEP`] for lagging peers).
//!
//! A restart folds the ledger forward through the deliveries after the
//! checkpoint, in their original order (validation is then exactly what it
//! was), restores the own broadcasts that were not delivered yet as
//! outstanding (new requests queue behind them, as before the crash), and
//! takes out of `deps` the incoming transfers that own broadcasts after the
//! checkpoint already cited (citing them again would be a fake dependency).

use crate::ledger::{Account, Ledger, Transfer, TransferId, TransferMsg};
use crate::{At2, Genesis};
use byzscale_broadcast::bracha::{self, Bracha};
use byzscale_broadcast::Signed;
use byzscale_core::crypto::Crypto;
use byzscale_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Deliveries kept before the latest checkpoint, for lagging peers.
pub const LOG_KEEP: u64 = 4096;

/// What an AT2 process over the broadcast with records `R` asks to keep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Record<R> {
    Bcast(R),
    Checkpoint(Box<Checkpoint>),
}

impl<R> From<R> for Record<R> {
    fn from(r: R) -> Self {
        Record::Bcast(r)
    }
}

/// The applied transfers touching each account: the last `limit` of them and
/// how many in all (for `History` reads).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub limit: usize,
    pub accounts: BTreeMap<Account, (u64, VecDeque<Transfer>)>,
}

impl History {
    pub fn record(&mut self, t: Transfer) {
        if self.limit == 0 {
            return;
        }
        let limit = self.limit;
        let mut touch = |a: Account| {
            let (total, ts) = self.accounts.entry(a).or_default();
            *total += 1;
            while ts.len() >= limit {
                ts.pop_front();
            }
            ts.push_back(t);
        };
        touch(t.from);
        if t.to != t.from {
            touch(t.to);
        }
    }
}

/// An AT2 process's state after `deliveries` deliveries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub deliveries: u64,
    pub ledger: Ledger,
    pub history: History,
    /// Per source, the next broadcast sequence number to deliver.
    pub frontier: BTreeMap<NodeId, u64>,
    /// The sequence number of the next own broadcast.
    pub own_next: u64,
}

/// A delivery as kept: source, sequence number, signed payload.
pub type Delivered = (NodeId, u64, Signed<TransferMsg>);

/// Every record of an AT2 process over Bracha, folded.
#[derive(Clone, Debug)]
pub struct Durable {
    pub bcast: bracha::Durable<TransferMsg>,
    pub checkpoint: Option<Checkpoint>,
    /// Deliveries by index (from 1): all after the checkpoint, and up to
    /// [`LOG_KEEP`] before it.
    pub log: BTreeMap<u64, Delivered>,
    /// Deliveries so far.
    pub deliveries: u64,
}

/// What [`Durable::apply`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Bcast(bracha::durable::Change),
    /// A delivery was logged under this index.
    Logged(u64),
    /// A checkpoint: log entries below `keep_from` went.
    Checkpoint {
        keep_from: u64,
    },
}

impl Durable {
    pub fn new(me: NodeId) -> Self {
        Durable {
            bcast: bracha::Durable::new(me),
            checkpoint: None,
            log: BTreeMap::new(),
            deliveries: 0,
        }
    }

    /// Fold one record in (in emission order).
    pub fn apply(&mut self, r: Record<bracha::Record<TransferMsg>>) -> Change {
        match r {
            Record::Bcast(r) => {
                let c = self.bcast.apply(&r);
                if let (
                    bracha::durable::Change::Delivered(..),
                    bracha::Record::Delivered {
                        source,
                        seq,
                        signed,
                    },
                ) = (c, r)
                {
                    self.deliveries += 1;
                    self.log.insert(self.deliveries, (source, seq, signed));
                    return Change::Logged(self.deliveries);
                }
                Change::Bcast(c)
            }
            Record::Checkpoint(c) => {
                let keep_from = (c.deliveries + 1).saturating_sub(LOG_KEEP);
                self.log = self.log.split_off(&keep_from);
                self.checkpoint = Some(*c);
                Change::Checkpoint { keep_from }
            }
        }
    }
}

impl At2<Bracha<TransferMsg>> {
    /// Restart a process over Bracha (configured by `cfg`) from `d` (see the
    /// module docs), keeping the last `history_limit` applied transfers per
    /// account (as [`At2::with_history`]; the replay records them); `crypto`
    /// checks the broadcast's recorded payloads. Batching and checkpoints
    /// are configured afterwards as for a new process.
    pub fn recover(
        cfg: Arc<bracha::Config>,
        genesis: Arc<Genesis>,
        d: Durable,
        history_limit: usize,
        crypto: &Crypto,
    ) -> Result<Self, String> {
        let me = d.bcast.me;
        let (mut ledger, history, start, mut frontier, own_next) = match d.checkpoint {
            Some(c) => {
                let ledger = c.ledger.with_genesis(me, genesis.clone());
                (ledger, c.history, c.deliveries, c.frontier, c.own_next)
            }
            None => (
                Ledger::new(me, genesis.clone()),
                History::default(),
                0,
                BTreeMap::new(),
                1,
            ),
        };
        let mut history = history;
        history.limit = history_limit;
        // deps that own broadcasts after the checkpoint already cited
        let mut cited: BTreeSet<TransferId> = BTreeSet::new();
        for (source, seq, signed) in d.log.range(start + 1..).map(|(_, e)| e) {
            if *source == me && *seq >= own_next {
                cited.extend(signed.payload.deps.iter().map(Transfer::id));
            }
            frontier.insert(*source, seq + 1);
            for ev in ledger.deliver(*source, signed.payload.clone()) {
                if let crate::Event::Applied(m) = ev {
                    history.record(m.transfer);
                }
            }
        }
        // own transfers broadcast and not applied: outstanding again
        let mut outstanding: Vec<Transfer> = ledger.pending_of(me).collect();
        let mut last_tseq = ledger.rec(me);
        for ((source, seq), o) in &d.bcast.open {
            let Some(s) = o.echo.as_ref().filter(|_| *source == me) else {
                continue;
            };
            if *seq >= own_next {
                cited.extend(s.payload.deps.iter().map(Transfer::id));
            }
            for t in s.payload.transfers() {
                last_tseq = last_tseq.max(t.seq);
                outstanding.push(*t);
            }
        }
        ledger.forget_deps(&cited);
        let kept = d.log.into_values().map(|(s, q, signed)| ((s, q), signed));
        let bcast = Bracha::recover(me, cfg, d.bcast, kept, crypto)?;
        let mut a = At2::new(bcast, genesis);
        a.ledger = ledger;
        a.history = history;
        a.frontier = frontier;
        a.deliveries = d.deliveries;
        a.since_checkpoint = d.deliveries - start;
        a.next_tseq = last_tseq + 1;
        a.outstanding = outstanding.into_iter().map(|t| (RESTORED, t)).collect();
        Ok(a)
    }
}

/// The tag of own transfers restored as outstanding (their requests were
/// answered by no one: the process stopped).
pub const RESTORED: u64 = u64::MAX;
