//! Durability of an AT2 process: what it asks its driver to keep
//! ([`Record`], emitted as `Effect::Persist`), the fold of those records
//! ([`Durable`]) and the restart ([`At2::recover`] over Bracha,
//! [`At2::recover_with`] over any broadcast writing Bracha's records, such
//! as Contagion).
//!
//! Three kinds of records:
//! - the broadcast's ([`Record::Bcast`]; for Bracha, see
//!   `byzscale_broadcast::bracha::durable`): every own broadcast, echo and
//!   ready is durable before it leaves, so a restarted process never signs a
//!   second batch under a sequence number nor votes twice in the broadcast;
//!   every delivery is durable before what it lets out (the answer to the
//!   client);
//! - [`Record::Voted`]: the transfers a vote endorses, durable before the
//!   vote leaves (a proposer's own, before its proposal), so a restarted
//!   member never endorses a second transfer with the same account and
//!   sequence number (the certificate's uniqueness rests on it);
//! - a [`Checkpoint`] every `checkpoint_every` deliveries: the ledger, the
//!   endorsements not yet applied, the per-account history and the delivery
//!   frontier, so a restart replays only the deliveries after it (and the
//!   driver can drop older ones, keeping [`LOG_KEEP`] for lagging peers, and
//!   the endorsements the checkpoint no longer holds).
//!
//! A restart folds the ledger forward through the deliveries after the
//! checkpoint, in their original order (certification and validation are
//! then exactly what they were), and keeps the endorsements whose slot is
//! still not applied. The proposal that was gathering votes is lost with its
//! requests (their clients time out; resubmitting the same signed transfer
//! is safe, see the crate docs); the own batches already broadcast go on in
//! the broadcast.

use crate::ledger::{Certified, Event, Ledger};
use crate::transfer::{Account, Transfer};
use crate::vote::Batch;
use crate::{At2, Config};
use byzscale_broadcast::bracha::{self, Bracha};
use byzscale_broadcast::{SecureBroadcast, Signed};
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Deliveries kept before the latest checkpoint, for lagging peers.
pub const LOG_KEEP: u64 = 4096;

/// What an AT2 process over the broadcast with records `R` asks to keep.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Record<R> {
    Bcast(R),
    Checkpoint(Box<Checkpoint>),
    /// Endorsed: (account, sequence number, digest of the transfer).
    Voted(Vec<(Account, u64, Digest)>),
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
    /// The endorsements whose slot was not applied yet.
    pub endorsed: BTreeMap<(Account, u64), Digest>,
    pub history: History,
    /// Per source, the next broadcast sequence number to deliver.
    pub frontier: BTreeMap<NodeId, u64>,
}

/// A delivery as kept: source, sequence number, signed payload.
pub type Delivered = (NodeId, u64, Signed<Batch>);

/// Every record of an AT2 process over Bracha or Contagion, folded.
#[derive(Clone, Debug)]
pub struct Durable {
    pub bcast: bracha::Durable<Batch>,
    pub checkpoint: Option<Checkpoint>,
    /// Deliveries by index (from 1): all after the checkpoint, and up to
    /// [`LOG_KEEP`] before it.
    pub log: BTreeMap<u64, Delivered>,
    /// Deliveries so far.
    pub deliveries: u64,
    /// The checkpoint's endorsements and every one voted since.
    pub voted: BTreeMap<(Account, u64), Digest>,
}

/// What [`Durable::apply`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Bcast(bracha::durable::Change),
    /// A delivery was logged under this index.
    Logged(u64),
    /// A checkpoint: log entries below `keep_from` went, and the
    /// endorsements it no longer holds.
    Checkpoint {
        keep_from: u64,
        forgotten: Vec<(Account, u64)>,
    },
    /// These endorsements were added.
    Voted(Vec<(Account, u64)>),
}

impl Durable {
    pub fn new(me: NodeId) -> Self {
        Durable {
            bcast: bracha::Durable::new(me),
            checkpoint: None,
            log: BTreeMap::new(),
            deliveries: 0,
            voted: BTreeMap::new(),
        }
    }

    /// Fold one record in (in emission order).
    pub fn apply(&mut self, r: Record<bracha::Record<Batch>>) -> Change {
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
                let forgotten = self
                    .voted
                    .keys()
                    .filter(|k| !c.endorsed.contains_key(k))
                    .copied()
                    .collect();
                self.voted = c.endorsed.clone();
                self.checkpoint = Some(*c);
                Change::Checkpoint {
                    keep_from,
                    forgotten,
                }
            }
            Record::Voted(entries) => {
                let keys = entries.iter().map(|(a, s, _)| (*a, *s)).collect();
                self.voted
                    .extend(entries.into_iter().map(|(a, s, d)| ((a, s), d)));
                Change::Voted(keys)
            }
        }
    }
}

impl At2<Bracha<Batch>> {
    /// Restart a process over Bracha (configured by `bcfg`) from `d` (see the
    /// module docs), keeping the last `history_limit` applied transfers per
    /// account (as [`At2::with_history`]; the replay records them); `crypto`
    /// checks the broadcast's recorded payloads and their votes. Batching
    /// and checkpoints are configured afterwards as for a new process.
    pub fn recover(
        bcfg: Arc<bracha::Config>,
        cfg: Arc<Config>,
        d: Durable,
        history_limit: usize,
        crypto: &Crypto,
    ) -> Result<Self, String> {
        Self::recover_with(cfg, d, history_limit, crypto, |bd, kept| {
            Bracha::recover(bd.me, bcfg, bd, kept, crypto)
        })
    }
}

impl<B: SecureBroadcast<Batch>> At2<B> {
    /// Restart a process over any broadcast that writes Bracha's records
    /// (Bracha, Contagion) from `d`, as [`At2::recover`]: the ledger folded
    /// forward, the endorsements still open; `bcast` restarts the broadcast
    /// from its fold and the deliveries kept (for Contagion,
    /// `Contagion::recover`, whose late answers use them).
    pub fn recover_with(
        cfg: Arc<Config>,
        d: Durable,
        history_limit: usize,
        crypto: &Crypto,
        bcast: impl FnOnce(
            bracha::Durable<Batch>,
            Vec<((NodeId, u64), Signed<Batch>)>,
        ) -> Result<B, String>,
    ) -> Result<Self, String> {
        let (mut ledger, mut history, start, mut frontier) = match d.checkpoint {
            Some(c) => (
                c.ledger.with_genesis(cfg.genesis.clone()),
                c.history,
                c.deliveries,
                c.frontier,
            ),
            None => (
                Ledger::new(cfg.genesis.clone()),
                History::default(),
                0,
                BTreeMap::new(),
            ),
        };
        history.limit = history_limit;
        let q = cfg.quorum();
        for (source, seq, signed) in d.log.range(start + 1..).map(|(_, e)| e) {
            frontier.insert(*source, seq + 1);
            let b = &signed.payload;
            let Ok((certified, _)) = b.certify(crypto, *source, &cfg.members, q) else {
                continue;
            };
            for i in certified {
                let st = &b.transfers[i];
                let c = Certified {
                    transfer: st.transfer,
                    deps: st.deps.clone(),
                };
                for ev in ledger.certified(*source, c) {
                    if let Event::Applied(c) = ev {
                        history.record(c.transfer);
                    }
                }
            }
        }
        let mut endorsed = d.voted;
        endorsed.retain(|(a, s), _| *s > ledger.seq(*a));
        let kept = d
            .log
            .into_values()
            .map(|(s, q, signed)| ((s, q), signed))
            .collect();
        let bcast = bcast(d.bcast, kept)?;
        let mut a = At2::new(bcast, cfg);
        a.ledger = ledger;
        a.endorsed = endorsed;
        a.history = history;
        a.frontier = frontier;
        a.deliveries = d.deliveries;
        a.since_checkpoint = d.deliveries - start;
        Ok(a)
    }
}
