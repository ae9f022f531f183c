//! The workload of `sim at2`: the correct owners share `--transfers`
//! transfers, closed loop (an owner issues its next transfer one think time
//! after the previous one completed or was refused), each to a random other
//! account for a random small amount (1 to 20).

use byzscale_at2::{Account, Input, TransferError, TransferId};
use byzscale_core::protocol::Time;
use byzscale_core::NodeId;
use byzscale_sim::closed_loop::ClosedLoop;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// What the owners were asked to do and what they saw.
pub struct Workload {
    /// The correct owners, in order (closed-loop client positions).
    owners: Vec<NodeId>,
    position: BTreeMap<NodeId, usize>,
    accounts: Vec<Account>,
    /// A transfer's number (its input's tag) per owner.
    clients: ClosedLoop<()>,
    rng: ChaCha8Rng,
    /// Pause between a result and the owner's next transfer.
    pub think: Time,
    /// When each transfer was broadcast by its owner.
    pub submitted: BTreeMap<TransferId, Time>,
    pub completed: u64,
    /// Refused at once for lack of funds.
    pub failed: u64,
    /// From broadcast to local application at the owner.
    pub latencies: Vec<Time>,
}

impl Workload {
    /// `transfers` shared by `owners`, to any of `accounts`.
    pub fn new(
        owners: Vec<NodeId>,
        accounts: Vec<Account>,
        transfers: u64,
        think: Time,
        seed: u64,
    ) -> Self {
        Workload {
            position: owners.iter().enumerate().map(|(c, o)| (*o, c)).collect(),
            clients: ClosedLoop::shared(owners.len(), transfers),
            owners,
            accounts,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7a_0a11),
            think,
            submitted: BTreeMap::new(),
            completed: 0,
            failed: 0,
            latencies: Vec::new(),
        }
    }

    /// The correct owners.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// `owner`'s next transfer, if its quota allows.
    pub fn next(&mut self, owner: NodeId) -> Option<Input> {
        let c = *self.position.get(&owner)?;
        let n = self.clients.issue(c)?;
        self.clients.start(c, n, ());
        let mine = Account(owner.0);
        let others: Vec<Account> = self
            .accounts
            .iter()
            .copied()
            .filter(|a| *a != mine)
            .collect();
        let to = others[self.rng.gen_range(0..others.len())];
        Some(Input::Transfer {
            tag: n,
            from: mine,
            to,
            amount: self.rng.gen_range(1..=20),
        })
    }

    /// `owner` broadcast transfer `id` at `at`.
    pub fn submitted(&mut self, id: TransferId, at: Time) {
        self.submitted.insert(id, at);
    }

    /// `owner`'s transfer `tag` completed at `at` (applied locally, or
    /// refused); a violation if it was not in flight or failed unexpectedly.
    pub fn result(
        &mut self,
        owner: NodeId,
        tag: u64,
        result: Result<TransferId, TransferError>,
        at: Time,
    ) -> Option<String> {
        let c = self.position.get(&owner).copied();
        if c.and_then(|c| self.clients.complete(c, tag)).is_none() {
            return Some(format!(
                "workload: {owner}: a result for transfer {tag}, which was not in flight"
            ));
        }
        match result {
            Ok(id) => {
                self.completed += 1;
                if let Some(s) = self.submitted.get(&id) {
                    self.latencies.push(at.saturating_sub(*s));
                }
                None
            }
            Err(TransferError::InsufficientFunds { .. }) => {
                self.failed += 1;
                None
            }
            Err(e) => Some(format!("workload: {owner}: unexpected {e}")),
        }
    }

    /// Every owner issued its share and got every result.
    pub fn done(&self) -> bool {
        self.clients.done()
    }

    /// Owners that did not complete their share: (owner, completed, share).
    pub fn unfinished(&self) -> impl Iterator<Item = (NodeId, u64, u64)> + '_ {
        self.clients
            .unfinished()
            .map(|(c, done, quota)| (self.owners[c], done, quota))
    }
}
