//! The replicated state of Algorithm 5 and its validity rule, without I/O:
//! certified transfers in, applied (or rejected) transfers out.
//!
//! Issuers are accounts (ed25519 keys held by clients), not processes: `seq`,
//! `hist` and the `deps` an owner may cite are kept per account. Transfers
//! arrive already *certified* (at most one per account and sequence number,
//! see the crate docs), possibly out of sequence order (different nodes
//! broadcast them), and wait here until their turn.

use crate::transfer::{Account, Transfer, TransferId, MAX_DEPS};
use byzscale_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Initial balances (q₀). Every other account starts at 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    balances: BTreeMap<Account, u64>,
}

/// The domain of the demo accounts' secret keys ([`demo_key`]).
pub const DEMO_KEY_DOMAIN: &str = "byzscale at2 demo account v1";

/// Demo account `i`'s secret key: `BLAKE3-derive("byzscale at2 demo account
/// v1", i as u32 little-endian)`. Anyone can compute it: demo accounts are
/// for local clusters, tests and the simulator, never for real funds.
pub fn demo_key(i: u32) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&blake3::derive_key(DEMO_KEY_DOMAIN, &i.to_le_bytes()))
}

impl Genesis {
    pub fn new() -> Self {
        Self::default()
    }
    /// Demo accounts `0..n` ([`demo_key`]), each with `balance`.
    pub fn demo(n: u32, balance: u64) -> Self {
        let mut g = Genesis::new();
        for i in 0..n {
            g.add(Account::of(&demo_key(i)), balance);
        }
        g
    }
    /// `account` starts with `balance` (a second call for the same account
    /// replaces the first).
    pub fn add(&mut self, account: Account, balance: u64) {
        self.balances.insert(account, balance);
    }
    pub fn initial(&self, a: Account) -> u64 {
        self.balances.get(&a).copied().unwrap_or(0)
    }
    /// The accounts with an initial balance.
    pub fn accounts(&self) -> impl Iterator<Item = Account> + '_ {
        self.balances.keys().copied()
    }
    pub fn len(&self) -> usize {
        self.balances.len()
    }
    pub fn is_empty(&self) -> bool {
        self.balances.is_empty()
    }
    /// Total of the initial balances.
    pub fn supply(&self) -> u128 {
        self.balances.values().map(|b| *b as u128).sum()
    }
}

/// A certified transfer: what the ledger applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certified {
    pub transfer: Transfer,
    pub deps: Vec<TransferId>,
}

/// Why a transfer is not valid (thesis `Valid`, conditions 3 and 4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Invalid {
    /// Condition 3: funds not justified by the account's history plus its
    /// declared dependencies (an overdraft).
    Unjustified { balance: i128, amount: u64 },
    /// Condition 4 can never hold: the dependency was decided and is not an
    /// uncited incoming transfer of the account (it was cited already, pays
    /// another account, or was itself rejected).
    FakeDependency(TransferId),
}

/// What happened while applying certified transfers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Valid and applied (thesis: Apply).
    Applied(Certified),
    /// Certified but invalid: its sequence number is used up with no effect
    /// (only possible with more than f Byzantine voters, or a racing client
    /// whose nodes could not check it; see the crate docs).
    Rejected(Certified, Invalid),
    /// Two different certified transfers with the same id: more than f
    /// voters were Byzantine. The first stays.
    Conflict { kept: Transfer, other: Transfer },
}

/// Bytes of certified, not yet applied transfers per broadcast source beyond
/// which [`crate::At2`] holds the source's deliveries back in the broadcast
/// (they wait there, within its window, and nothing is lost), releasing them
/// once half of it is applied.
pub const MAX_PENDING_BYTES_PER_SOURCE: usize = 1 << 20;

/// Transfers one proposal or batch may carry.
pub const MAX_BATCH: usize = 1024;

/// What validity says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Valid,
    /// A dependency not decided here yet.
    Wait(TransferId),
    Invalid(Invalid),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    source: NodeId,
    bytes: usize,
    c: Certified,
}

/// Per-process AT2 state: `seq`, `hist` (compacted), the citable incoming
/// transfers and `toValidate` of Algorithm 5, per account. Serialized
/// without its genesis (a checkpoint; [`Ledger::with_genesis`] puts it back).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(skip)]
    genesis: Arc<Genesis>,
    /// Sequence numbers used up per account (applied or rejected).
    seq: BTreeMap<Account, u64>,
    /// `hist[a]` compacted to what condition 3 needs: the effect on `a` of
    /// its own transfers and of the dependencies it cited.
    own: BTreeMap<Account, i128>,
    /// Applied transfers to each account that it has not cited yet, with
    /// their amounts: the only incoming funds it may still declare.
    uncited: BTreeMap<Account, BTreeMap<TransferId, u64>>,
    /// toValidate: certified transfers waiting for their turn, per account.
    pending: BTreeMap<Account, BTreeMap<u64, Pending>>,
    /// The encoded bytes of `pending` per broadcast source.
    pending_bytes: BTreeMap<NodeId, usize>,
    /// Accounts whose next transfer waits for a dependency.
    waiting: BTreeMap<TransferId, BTreeSet<Account>>,
    /// Balances over the union of all histories (what `read` returns).
    balances: BTreeMap<Account, i128>,
    applied: u64,
    rejected: u64,
}

impl Ledger {
    pub fn new(genesis: Arc<Genesis>) -> Self {
        let balances = genesis
            .accounts()
            .map(|a| (a, genesis.initial(a) as i128))
            .collect();
        Ledger {
            genesis,
            seq: BTreeMap::new(),
            own: BTreeMap::new(),
            uncited: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_bytes: BTreeMap::new(),
            waiting: BTreeMap::new(),
            balances,
            applied: 0,
            rejected: 0,
        }
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// A deserialized ledger over `genesis`.
    pub fn with_genesis(mut self, genesis: Arc<Genesis>) -> Self {
        self.genesis = genesis;
        self
    }

    /// `read(a)`: balance over `⋃_q hist[q]`, from local state only.
    pub fn balance(&self, a: Account) -> i128 {
        self.balances.get(&a).copied().unwrap_or(0)
    }

    /// All balances (genesis accounts and every account credited since).
    pub fn balances(&self) -> &BTreeMap<Account, i128> {
        &self.balances
    }

    /// Sequence numbers of `a` used up here (its next transfer is this + 1).
    pub fn seq(&self, a: Account) -> u64 {
        self.seq.get(&a).copied().unwrap_or(0)
    }

    /// What `a` may spend now: its history plus every incoming transfer it
    /// could cite (condition 3 over `hist[a] ∪ uncited`).
    pub fn spendable(&self, a: Account) -> i128 {
        let incoming: i128 = self
            .uncited
            .get(&a)
            .map(|u| u.values().map(|x| *x as i128).sum())
            .unwrap_or(0);
        self.genesis.initial(a) as i128 + self.own.get(&a).copied().unwrap_or(0) + incoming
    }

    /// The dependencies `a`'s next transfer should cite (its uncited incoming
    /// transfers, oldest ids first, at most [`MAX_DEPS`]) with their amounts.
    pub fn deps_of(&self, a: Account) -> Vec<(TransferId, u64)> {
        self.uncited
            .get(&a)
            .map(|u| u.iter().take(MAX_DEPS).map(|(id, x)| (*id, *x)).collect())
            .unwrap_or_default()
    }

    /// The broadcast sources with certified transfers waiting.
    pub fn sources_pending(&self) -> Vec<NodeId> {
        self.pending_bytes
            .iter()
            .filter(|(_, b)| **b > 0)
            .map(|(q, _)| *q)
            .collect()
    }

    /// The encoded bytes of certified transfers from `source` waiting.
    pub fn pending_bytes(&self, source: NodeId) -> usize {
        self.pending_bytes.get(&source).copied().unwrap_or(0)
    }

    pub fn pending_count(&self) -> usize {
        self.pending.values().map(BTreeMap::len).sum()
    }

    pub fn applied_count(&self) -> u64 {
        self.applied
    }

    pub fn rejected_count(&self) -> u64 {
        self.rejected
    }

    /// Applied transfers held for their recipients to cite.
    pub fn uncited_count(&self) -> usize {
        self.uncited.values().map(BTreeMap::len).sum()
    }

    /// Whether `d` was applied here as an incoming transfer of `a` that `a`
    /// has not cited yet (condition 4 for a dependency of `a`).
    pub fn citable(&self, a: Account, d: TransferId) -> Option<u64> {
        self.uncited.get(&a)?.get(&d).copied()
    }

    /// Condition 4 for each dependency of a transfer of `a`: all decided
    /// here and citable, or the first still undecided, or the first that can
    /// never be. Returns the funds they bring.
    pub fn check_deps(&self, a: Account, deps: &[TransferId]) -> Result<i128, Check> {
        let mut total = 0i128;
        for d in deps {
            match self.citable(a, *d) {
                Some(x) => total += x as i128,
                None if d.seq > self.seq(d.from) => return Err(Check::Wait(*d)),
                None => return Err(Check::Invalid(Invalid::FakeDependency(*d))),
            }
        }
        Ok(total)
    }

    /// `Valid(a, t, h)` for `a`'s next transfer (its sequence number must be
    /// `seq(a) + 1`; condition 2 is the caller's): dependencies (4), then
    /// funds over `hist[a] ∪ h` only (3). Conditions 1 (the owner signed
    /// it) and uniqueness are the certificate's.
    pub fn check(&self, t: &Transfer, deps: &[TransferId]) -> Check {
        let a = t.from;
        let incoming = match self.check_deps(a, deps) {
            Ok(x) => x,
            Err(c) => return c,
        };
        let balance =
            self.genesis.initial(a) as i128 + self.own.get(&a).copied().unwrap_or(0) + incoming;
        if balance < t.amount as i128 {
            return Check::Invalid(Invalid::Unjustified {
                balance,
                amount: t.amount,
            });
        }
        Check::Valid
    }

    /// A certified transfer, delivered in a batch from `source`: applied
    /// when its turn comes (possibly at once, possibly with others it
    /// unblocks). A transfer whose sequence number is already used up here
    /// is the same transfer again (certificates are unique) and is ignored.
    pub fn certified(&mut self, source: NodeId, c: Certified) -> Vec<Event> {
        let mut out = Vec::new();
        let a = c.transfer.from;
        let s = c.transfer.seq;
        if s <= self.seq(a) {
            return out;
        }
        let slot = self.pending.entry(a).or_default();
        if let Some(p) = slot.get(&s) {
            if p.c.transfer != c.transfer || p.c.deps != c.deps {
                out.push(Event::Conflict {
                    kept: p.c.transfer,
                    other: c.transfer,
                });
            }
            return out;
        }
        let bytes = byzscale_core::codec::encoded_len(&c);
        *self.pending_bytes.entry(source).or_default() += bytes;
        slot.insert(s, Pending { source, bytes, c });
        self.validate_from(a, &mut out);
        out
    }

    /// Apply whatever became valid, starting with `a`'s next transfer.
    fn validate_from(&mut self, a: Account, out: &mut Vec<Event>) {
        let mut work = VecDeque::from([a]);
        while let Some(a) = work.pop_front() {
            let next = self.seq(a) + 1;
            let Some(p) = self.pending.get(&a).and_then(|p| p.get(&next)) else {
                continue;
            };
            let verdict = self.check(&p.c.transfer, &p.c.deps);
            if let Check::Wait(dep) = verdict {
                self.waiting.entry(dep).or_default().insert(a);
                continue;
            }
            let p = self
                .pending
                .get_mut(&a)
                .and_then(|q| q.remove(&next))
                .expect("head present");
            if self.pending.get(&a).is_some_and(BTreeMap::is_empty) {
                self.pending.remove(&a);
            }
            if let Some(b) = self.pending_bytes.get_mut(&p.source) {
                *b = b.saturating_sub(p.bytes);
                if *b == 0 {
                    self.pending_bytes.remove(&p.source);
                }
            }
            let t = p.c.transfer;
            self.seq.insert(a, t.seq);
            match verdict {
                Check::Invalid(why) => {
                    self.rejected += 1;
                    out.push(Event::Rejected(p.c, why));
                }
                _ => {
                    self.apply(&p.c);
                    out.push(Event::Applied(p.c));
                }
            }
            if let Some(ws) = self.waiting.remove(&t.id()) {
                work.extend(ws);
            }
            work.push_back(a);
        }
    }

    fn apply(&mut self, c: &Certified) {
        let t = c.transfer;
        let a = t.from;
        let mut incoming = 0i128;
        if let Some(u) = self.uncited.get_mut(&a) {
            for d in &c.deps {
                incoming += u.remove(d).map(|x| x as i128).unwrap_or(0);
            }
            if u.is_empty() {
                self.uncited.remove(&a);
            }
        }
        let mut own = incoming;
        if t.to != a {
            own -= t.amount as i128;
            self.uncited
                .entry(t.to)
                .or_default()
                .insert(t.id(), t.amount);
            *self.balances.entry(a).or_insert(0) -= t.amount as i128;
            *self.balances.entry(t.to).or_insert(0) += t.amount as i128;
        }
        *self.own.entry(a).or_insert(0) += own;
        self.applied += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(i: u8) -> Account {
        Account([i; 32])
    }
    fn gen() -> Arc<Genesis> {
        let mut g = Genesis::new();
        for i in 0..4 {
            g.add(acc(i), 100);
        }
        Arc::new(g)
    }
    fn t(from: u8, seq: u64, to: u8, amount: u64) -> Transfer {
        Transfer {
            from: acc(from),
            seq,
            to: acc(to),
            amount,
        }
    }
    fn c(t: Transfer, deps: Vec<TransferId>) -> Certified {
        Certified { transfer: t, deps }
    }
    const SRC: NodeId = NodeId(0);
    fn applied(ev: &[Event]) -> Vec<TransferId> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Applied(c) => Some(c.transfer.id()),
                _ => None,
            })
            .collect()
    }
    fn rejected(ev: &[Event]) -> Vec<Invalid> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Rejected(_, why) => Some(why.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn transfers_wait_for_their_turn_and_their_dependencies() {
        let mut l = Ledger::new(gen());
        // 1's second transfer first: waits for its first
        let t12 = t(1, 2, 2, 10);
        assert!(l.certified(SRC, c(t12, vec![])).is_empty());
        assert_eq!(l.pending_count(), 1);
        // 1's first cites 0's transfer, not yet certified here: waits too
        let t01 = t(0, 1, 1, 50);
        let t11 = t(1, 1, 2, 140);
        assert!(l.certified(SRC, c(t11, vec![t01.id()])).is_empty());
        // 0's transfer unblocks both, in order
        let ev = l.certified(NodeId(1), c(t01, vec![]));
        assert_eq!(applied(&ev), vec![t01.id(), t11.id(), t12.id()]);
        assert_eq!(
            (l.balance(acc(0)), l.balance(acc(1)), l.balance(acc(2))),
            (50, 0, 250)
        );
        assert_eq!((l.pending_count(), l.pending_bytes(SRC)), (0, 0));
        // the same certified transfer again is ignored
        assert!(l.certified(SRC, c(t01, vec![])).is_empty());
        assert_eq!(l.applied_count(), 3);
    }

    #[test]
    fn only_declared_dependencies_justify_funds() {
        // 1 received 50 but does not cite it: spending 150 is an overdraft
        // although the union of the histories has the funds
        let mut l = Ledger::new(gen());
        let t01 = t(0, 1, 1, 50);
        l.certified(SRC, c(t01, vec![]));
        assert_eq!((l.balance(acc(1)), l.spendable(acc(1))), (150, 150));
        assert_eq!(l.deps_of(acc(1)), vec![(t01.id(), 50)]);
        let ev = l.certified(SRC, c(t(1, 1, 2, 150), vec![]));
        assert_eq!(
            rejected(&ev),
            vec![Invalid::Unjustified {
                balance: 100,
                amount: 150
            }]
        );
        // the rejected transfer used up sequence number 1 with no effect;
        // the next one, citing the 50, goes through
        assert_eq!(l.seq(acc(1)), 1);
        let ev = l.certified(SRC, c(t(1, 2, 2, 150), vec![t01.id()]));
        assert_eq!(applied(&ev).len(), 1);
        assert_eq!((l.balance(acc(1)), l.balance(acc(2))), (0, 250));
        let supply: i128 = l.balances().values().sum();
        assert_eq!(supply, 400);
    }

    #[test]
    fn a_dependency_is_cited_once_and_only_by_its_recipient() {
        let mut l = Ledger::new(gen());
        let t01 = t(0, 1, 1, 30);
        l.certified(SRC, c(t01, vec![]));
        // 2 cites a transfer that pays 1: fake
        let ev = l.certified(SRC, c(t(2, 1, 3, 1), vec![t01.id()]));
        assert_eq!(rejected(&ev), vec![Invalid::FakeDependency(t01.id())]);
        // 1 cites it: fine; citing it again: fake
        let ev = l.certified(SRC, c(t(1, 1, 2, 130), vec![t01.id()]));
        assert_eq!(applied(&ev).len(), 1);
        assert_eq!(l.uncited_count(), 1, "only 1's transfer to 2 is left");
        let ev = l.certified(SRC, c(t(1, 2, 2, 1), vec![t01.id()]));
        assert_eq!(rejected(&ev), vec![Invalid::FakeDependency(t01.id())]);
        // a rejected transfer cannot be cited either
        let bad = t(3, 1, 0, 1000);
        let ev = l.certified(SRC, c(bad, vec![]));
        assert_eq!(rejected(&ev).len(), 1);
        let ev = l.certified(SRC, c(t(0, 2, 1, 100), vec![bad.id()]));
        assert_eq!(rejected(&ev), vec![Invalid::FakeDependency(bad.id())]);
        assert_eq!(l.balance(acc(0)), 70);
    }

    #[test]
    fn self_transfers_keep_the_balance_and_consolidate_dependencies() {
        let mut l = Ledger::new(gen());
        let t01 = t(0, 1, 1, 30);
        l.certified(SRC, c(t01, vec![]));
        let ev = l.certified(SRC, c(t(1, 1, 1, 1), vec![t01.id()]));
        assert_eq!(applied(&ev).len(), 1);
        assert_eq!((l.balance(acc(1)), l.spendable(acc(1))), (130, 130));
        assert!(l.deps_of(acc(1)).is_empty());
        // funds now in hist[1]: spendable without citing anything
        let ev = l.certified(SRC, c(t(1, 2, 2, 130), vec![]));
        assert_eq!(applied(&ev).len(), 1);
    }

    #[test]
    fn conflicting_certificates_keep_the_first() {
        let mut l = Ledger::new(gen());
        // a pending slot (waits for seq 1) receives another transfer
        let a = t(1, 2, 2, 1);
        let b = t(1, 2, 3, 1);
        l.certified(SRC, c(a, vec![]));
        let ev = l.certified(SRC, c(b, vec![]));
        assert_eq!(ev, vec![Event::Conflict { kept: a, other: b }]);
    }
}
