//! The workload of `sim at2`: one client per correct node, holding the key
//! of its own account (demo account `i` for node `i`), submits its transfers
//! through that node. The clients share `--transfers` transfers, closed loop
//! (a client signs its next transfer one think time after the previous one
//! was applied or refused), each to a random other account for a random
//! small amount (1 to 20), citing every incoming transfer its node told it
//! about (thesis `deps`). A transfer its node could not check yet, or that
//! was not certified, is resubmitted as it is (the same signed bytes).

use byzscale_at2::transfer::MAX_DEPS;
use byzscale_at2::{demo_key, Account, Input, SignedTransfer, Transfer, TransferError, TransferId};
use byzscale_core::crypto::CryptoMode;
use byzscale_core::protocol::Time;
use byzscale_core::NodeId;
use byzscale_sim::closed_loop::ClosedLoop;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Resubmissions of one transfer before the client gives up (a violation).
pub const MAX_RETRIES: u32 = 20;

/// One client's transfer out.
struct Out {
    tag: u64,
    transfer: SignedTransfer,
    retries: u32,
}

/// What the clients were asked to do and what they saw.
pub struct Workload {
    /// The correct nodes, in order (one client each, closed-loop positions).
    owners: Vec<NodeId>,
    position: BTreeMap<NodeId, usize>,
    accounts: Vec<Account>,
    /// A transfer's number (its input's tag) per client.
    clients: ClosedLoop<()>,
    rng: ChaCha8Rng,
    mode: CryptoMode,
    /// Each client's next sequence number.
    seq: BTreeMap<NodeId, u64>,
    /// Incoming transfers each client's node applied, not cited yet.
    incoming: BTreeMap<NodeId, Vec<TransferId>>,
    out: BTreeMap<NodeId, Out>,
    /// Pause between a result and the client's next transfer.
    pub think: Time,
    /// When each transfer was accepted by its node.
    pub submitted: BTreeMap<TransferId, Time>,
    pub completed: u64,
    /// Refused at once for lack of funds.
    pub failed: u64,
    pub retries: u64,
    /// From acceptance to application at the client's node.
    pub latencies: Vec<Time>,
}

/// The account of node `n`'s client.
pub fn client_account(n: NodeId) -> Account {
    Account::of(&demo_key(n.0))
}

impl Workload {
    /// `transfers` shared by the clients of `owners`, to any of `accounts`,
    /// signed in `mode`.
    pub fn new(
        owners: Vec<NodeId>,
        accounts: Vec<Account>,
        transfers: u64,
        think: Time,
        seed: u64,
        mode: CryptoMode,
    ) -> Self {
        Workload {
            position: owners.iter().enumerate().map(|(c, o)| (*o, c)).collect(),
            clients: ClosedLoop::shared(owners.len(), transfers),
            seq: owners.iter().map(|o| (*o, 1)).collect(),
            owners,
            accounts,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7a_0a11),
            mode,
            incoming: BTreeMap::new(),
            out: BTreeMap::new(),
            think,
            submitted: BTreeMap::new(),
            completed: 0,
            failed: 0,
            retries: 0,
            latencies: Vec::new(),
        }
    }

    /// The correct nodes (one client each).
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// Whether `owner` is a client's node.
    pub fn is_owner(&self, owner: NodeId) -> bool {
        self.position.contains_key(&owner)
    }

    /// `owner`'s client's next transfer, if its quota allows.
    pub fn next(&mut self, owner: NodeId) -> Option<Input> {
        let c = *self.position.get(&owner)?;
        let n = self.clients.issue(c)?;
        self.clients.start(c, n, ());
        let mine = client_account(owner);
        let others: Vec<Account> = self
            .accounts
            .iter()
            .copied()
            .filter(|a| *a != mine)
            .collect();
        let to = others[self.rng.gen_range(0..others.len())];
        let incoming = self.incoming.entry(owner).or_default();
        let k = incoming.len().min(MAX_DEPS);
        let deps: Vec<TransferId> = incoming.drain(..k).collect();
        let t = Transfer {
            from: mine,
            seq: self.seq[&owner],
            to,
            amount: self.rng.gen_range(1..=20),
        };
        let transfer = SignedTransfer::sign_in(&demo_key(owner.0), self.mode, t, deps);
        self.out.insert(
            owner,
            Out {
                tag: n,
                transfer: transfer.clone(),
                retries: 0,
            },
        );
        Some(Input::Submit { transfer, tag: n })
    }

    /// `owner`'s node applied `id`, a transfer to its client.
    pub fn incoming(&mut self, owner: NodeId, id: TransferId) {
        self.incoming.entry(owner).or_default().push(id);
    }

    /// `owner`'s client's transfer was accepted by its node at `at`.
    pub fn submitted(&mut self, id: TransferId, at: Time) {
        self.submitted.entry(id).or_insert(at);
    }

    /// `owner`'s transfer `tag` ended at `at` (applied at its node, or
    /// refused): a violation if it was not out or failed unexpectedly, and
    /// the resubmission if it should be tried again.
    pub fn result(
        &mut self,
        owner: NodeId,
        tag: u64,
        result: Result<(), TransferError>,
        at: Time,
    ) -> (Option<String>, Option<Input>) {
        let c = self.position.get(&owner).copied();
        let Some(out) = self.out.get_mut(&owner).filter(|o| o.tag == tag) else {
            return (
                Some(format!(
                    "workload: {owner}: a result for transfer {tag}, which was not out"
                )),
                None,
            );
        };
        match result {
            Err(TransferError::NotYet(_) | TransferError::Refused { .. } | TransferError::Busy)
                if out.retries < MAX_RETRIES =>
            {
                out.retries += 1;
                self.retries += 1;
                let again = Input::Submit {
                    transfer: out.transfer.clone(),
                    tag,
                };
                return (None, Some(again));
            }
            _ => {}
        }
        let out = self.out.remove(&owner).expect("checked");
        if c.and_then(|c| self.clients.complete(c, tag)).is_none() {
            return (
                Some(format!("workload: {owner}: transfer {tag} completed twice")),
                None,
            );
        }
        let id = out.transfer.id();
        match result {
            Ok(()) => {
                self.completed += 1;
                *self.seq.entry(owner).or_insert(1) += 1;
                if let Some(s) = self.submitted.get(&id) {
                    self.latencies.push(at.saturating_sub(*s));
                }
                (None, None)
            }
            Err(TransferError::InsufficientFunds { .. }) => {
                // refused at once: the sequence number and the dependencies
                // are still free
                self.failed += 1;
                let deps = out.transfer.deps;
                self.incoming.entry(owner).or_default().splice(0..0, deps);
                (None, None)
            }
            Err(e) => (Some(format!("workload: {owner}: {id} failed: {e}")), None),
        }
    }

    /// Every client issued its share and got every result.
    pub fn done(&self) -> bool {
        self.clients.done()
    }

    /// Clients that did not complete their share: (node, completed, share).
    pub fn unfinished(&self) -> impl Iterator<Item = (NodeId, u64, u64)> + '_ {
        self.clients
            .unfinished()
            .map(|(c, done, quota)| (self.owners[c], done, quota))
    }
}
