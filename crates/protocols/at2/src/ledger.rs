//! The replicated state of Algorithm 5 and its validity rule, without I/O:
//! deliveries in, applied transfers and faults out.

use crate::fault::Fault;
use byzscale_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

/// An account. Each account has exactly one owner process (k-shared accounts,
/// thesis §3.4, need consensus among the owners and are not implemented).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Account(pub u32);

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}
impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// `(issuer, seq)`: the issuer's `seq`-th outgoing transfer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferId {
    pub issuer: NodeId,
    pub seq: u64,
}

impl fmt::Debug for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.issuer, self.seq)
    }
}

/// `(a, b, x, s)` of Algorithm 5, with its issuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Transfer {
    pub issuer: NodeId,
    pub seq: u64,
    pub from: Account,
    pub to: Account,
    pub amount: u64,
}

impl Transfer {
    pub fn id(&self) -> TransferId {
        TransferId {
            issuer: self.issuer,
            seq: self.seq,
        }
    }
    /// What this transfer does to `a`'s balance (0 for a self-transfer).
    fn effect(&self, a: Account) -> i128 {
        let mut e = 0i128;
        if self.to == a {
            e += self.amount as i128;
        }
        if self.from == a {
            e -= self.amount as i128;
        }
        e
    }
}

/// The broadcast payload: `[(a, b, x, s), deps]`, optionally followed by
/// more transfers of the same issuer (a batch, see the crate docs). It is
/// signed by the issuer as the broadcast source (the broadcast's signature
/// covers the issuer, the sequence number and this whole message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferMsg {
    pub transfer: Transfer,
    /// Incoming transfers the issuer applied since its previous transfer: the
    /// only funds, besides its own history, that may justify this one.
    pub deps: Vec<Transfer>,
    /// Batching: the issuer's next transfers, sequence numbers
    /// `transfer.seq + 1, + 2, …`, validated in order after `transfer` as if
    /// each had been broadcast alone with no new dependencies. Empty for an
    /// unbatched transfer (and in [`Event::Applied`]).
    pub more: Vec<Transfer>,
}

impl TransferMsg {
    /// One transfer with its dependencies.
    pub fn new(transfer: Transfer, deps: Vec<Transfer>) -> Self {
        TransferMsg {
            transfer,
            deps,
            more: Vec::new(),
        }
    }
    /// The transfers it carries, in order.
    pub fn transfers(&self) -> impl Iterator<Item = &Transfer> {
        std::iter::once(&self.transfer).chain(self.more.iter())
    }
    /// Number of transfers carried.
    pub fn len(&self) -> usize {
        1 + self.more.len()
    }
    /// Never empty: a message carries at least one transfer.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Initial owners and balances (q₀ and μ).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    owners: BTreeMap<Account, NodeId>,
    balances: BTreeMap<Account, u64>,
}

impl Genesis {
    pub fn new() -> Self {
        Genesis {
            owners: BTreeMap::new(),
            balances: BTreeMap::new(),
        }
    }
    /// Process `p` owns account `Account(p.0)` with `balance` (the thesis'
    /// "process q owns account q").
    pub fn one_account_each(members: &[NodeId], balance: u64) -> Self {
        let mut g = Genesis::new();
        for m in members {
            g.add(Account(m.0), *m, balance);
        }
        g
    }
    pub fn add(&mut self, account: Account, owner: NodeId, balance: u64) {
        self.owners.insert(account, owner);
        self.balances.insert(account, balance);
    }
    pub fn owner(&self, a: Account) -> Option<NodeId> {
        self.owners.get(&a).copied()
    }
    pub fn initial(&self, a: Account) -> u64 {
        self.balances.get(&a).copied().unwrap_or(0)
    }
    pub fn accounts(&self) -> impl Iterator<Item = Account> + '_ {
        self.owners.keys().copied()
    }
    /// Accounts owned by `p`.
    pub fn owned_by(&self, p: NodeId) -> Vec<Account> {
        self.owners
            .iter()
            .filter(|(_, o)| **o == p)
            .map(|(a, _)| *a)
            .collect()
    }
    /// Total of the initial balances.
    pub fn supply(&self) -> u128 {
        self.balances.values().map(|b| *b as u128).sum()
    }
}

impl Default for Genesis {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a delivered transfer can never be applied (its issuer is Byzantine).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Condition 1: the issuer does not own the debited account.
    NotOwner,
    /// Condition 3: funds not justified by the issuer's history plus its
    /// declared dependencies (an overdraft or a double spend).
    Unjustified { balance: i128, amount: u64 },
    /// Condition 4 can never hold: a dependency contradicts a validated
    /// transfer with the same id, or is listed twice with different contents.
    FakeDependency(TransferId),
}

/// What happened while processing deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Valid and applied (thesis: Apply).
    Applied(TransferMsg),
    /// Dropped, with the issuer blamed.
    Fault {
        issuer: NodeId,
        kind: Fault,
        detail: String,
    },
}

/// Bytes of delivered, not yet applied transfers per issuer beyond which
/// [`crate::At2`] holds the issuer's deliveries back in the broadcast (they
/// wait there, within its window, and nothing is lost), releasing them once
/// half of it is applied. A correct issuer's transfers wait only on a slow
/// dependency; a Byzantine one's may wait for ever, and then it only delays
/// itself.
pub const MAX_PENDING_BYTES_PER_ISSUER: usize = 1 << 20;

/// Transfers one message may carry (a longer batch is dropped as malformed).
pub const MAX_BATCH: usize = 1024;

/// `hist[q]`, compacted: the effect of q's own transfers and of the
/// dependencies it cited, per account; and q's own validated transfers that
/// their recipient may still cite (see the crate docs on garbage collection).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Hist {
    uncited: BTreeMap<TransferId, Transfer>,
    /// Σ of the effects of every transfer in `hist[q]`, per account touched.
    effect: BTreeMap<Account, i128>,
}

impl Hist {
    fn add_effect(&mut self, t: &Transfer) {
        if t.from != t.to {
            *self.effect.entry(t.from).or_insert(0) -= t.amount as i128;
            *self.effect.entry(t.to).or_insert(0) += t.amount as i128;
        }
    }
    fn effect(&self, a: Account) -> i128 {
        self.effect.get(&a).copied().unwrap_or(0)
    }
}

enum Check {
    Valid,
    Wait(TransferId),
    Invalid(Invalid),
}

/// Per-process AT2 state: `seq`, `rec`, `hist`, `deps` and `toValidate` of
/// Algorithm 5 (see the crate docs). Serialized without its genesis (a
/// checkpoint; [`Ledger::with_genesis`] puts it back).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ledger {
    me: NodeId,
    #[serde(skip)]
    genesis: Arc<Genesis>,
    /// Transfers of each issuer validated and applied.
    seq: BTreeMap<NodeId, u64>,
    /// Transfers of each issuer delivered.
    rec: BTreeMap<NodeId, u64>,
    hist: BTreeMap<NodeId, Hist>,
    /// Incoming transfers applied since my last outgoing one.
    deps: Vec<Transfer>,
    /// toValidate, per issuer by sequence number.
    pending: BTreeMap<NodeId, BTreeMap<u64, TransferMsg>>,
    /// The encoded bytes of each issuer's `pending`.
    pending_bytes: BTreeMap<NodeId, usize>,
    /// Issuers whose next transfer waits for a dependency.
    waiting: BTreeMap<TransferId, BTreeSet<NodeId>>,
    /// Issuers caught with a transfer that can never be valid: nothing of
    /// theirs is applied any more.
    blocked: BTreeSet<NodeId>,
    /// Balances over the union of all histories (what `read` returns).
    balances: BTreeMap<Account, i128>,
    applied: u64,
}

impl Ledger {
    pub fn new(me: NodeId, genesis: Arc<Genesis>) -> Self {
        let balances = genesis
            .accounts()
            .map(|a| (a, genesis.initial(a) as i128))
            .collect();
        Ledger {
            me,
            genesis,
            seq: BTreeMap::new(),
            rec: BTreeMap::new(),
            hist: BTreeMap::new(),
            deps: Vec::new(),
            pending: BTreeMap::new(),
            pending_bytes: BTreeMap::new(),
            waiting: BTreeMap::new(),
            blocked: BTreeSet::new(),
            balances,
            applied: 0,
        }
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// A deserialized ledger of process `me` over `genesis`.
    pub fn with_genesis(mut self, me: NodeId, genesis: Arc<Genesis>) -> Self {
        self.me = me;
        self.genesis = genesis;
        self
    }

    /// `issuer`'s delivered transfers waiting for validation, in order.
    pub fn pending_of(&self, issuer: NodeId) -> impl Iterator<Item = Transfer> + '_ {
        self.pending
            .get(&issuer)
            .into_iter()
            .flat_map(|p| p.values().map(|m| m.transfer))
    }

    /// Drop from `deps` the transfers in `cited` (an own transfer already
    /// declared them).
    pub fn forget_deps(&mut self, cited: &BTreeSet<TransferId>) {
        self.deps.retain(|d| !cited.contains(&d.id()));
    }

    /// `read(a)`: balance over `⋃_q hist[q]`, from local state only.
    pub fn balance(&self, a: Account) -> i128 {
        self.balances.get(&a).copied().unwrap_or(0)
    }

    /// All balances (accounts of the genesis and any account credited since).
    pub fn balances(&self) -> &BTreeMap<Account, i128> {
        &self.balances
    }

    /// Transfers of `issuer` validated and applied here.
    pub fn seq(&self, issuer: NodeId) -> u64 {
        self.seq.get(&issuer).copied().unwrap_or(0)
    }

    /// Transfers of `issuer` delivered here.
    pub fn rec(&self, issuer: NodeId) -> u64 {
        self.rec.get(&issuer).copied().unwrap_or(0)
    }

    /// Delivered transfers not (yet) applied.
    /// The issuers with delivered transfers waiting.
    pub fn issuers_pending(&self) -> Vec<NodeId> {
        self.pending_bytes
            .iter()
            .filter(|(_, b)| **b > 0)
            .map(|(q, _)| *q)
            .collect()
    }

    /// The encoded bytes of `issuer`'s delivered transfers waiting.
    pub fn pending_bytes(&self, issuer: NodeId) -> usize {
        self.pending_bytes.get(&issuer).copied().unwrap_or(0)
    }

    pub fn pending_count(&self) -> usize {
        self.pending.values().map(BTreeMap::len).sum()
    }

    pub fn applied_count(&self) -> u64 {
        self.applied
    }

    /// The validated transfer with this id, if its recipient may still cite
    /// it as a dependency (validated transfers are forgotten once cited).
    pub fn validated(&self, id: TransferId) -> Option<&Transfer> {
        self.hist.get(&id.issuer)?.uncited.get(&id)
    }

    /// Validated transfers held in memory (not yet cited by their recipient).
    pub fn uncited_count(&self) -> usize {
        self.hist.values().map(|h| h.uncited.len()).sum()
    }

    /// The dependencies the next own transfer would declare.
    pub fn deps(&self) -> &[Transfer] {
        &self.deps
    }

    /// balance(a, hist[q] ∪ extra).
    fn balance_with(&self, q: NodeId, a: Account, extra: &[Transfer]) -> i128 {
        let h = self.hist.get(&q);
        let mut b = self.genesis.initial(a) as i128 + h.map(|h| h.effect(a)).unwrap_or(0);
        let mut seen = BTreeSet::new();
        for d in extra {
            // `check` admits only dependencies not yet in hist[q]
            if seen.insert(d.id()) {
                b += d.effect(a);
            }
        }
        b
    }

    /// Own transfer precondition (thesis `transfer`, step 1): the owner's
    /// balance over `hist[p] ∪ deps`.
    pub fn spendable(&self, a: Account) -> i128 {
        self.balance_with(self.me, a, &self.deps)
    }

    /// Take the dependencies for a new own transfer (`deps ← ∅`).
    pub fn take_deps(&mut self) -> Vec<Transfer> {
        std::mem::take(&mut self.deps)
    }

    /// Valid(q, t, h): the four conditions.
    fn check(&self, q: NodeId, m: &TransferMsg) -> Check {
        let t = &m.transfer;
        // 1. the issuer owns the debited account
        if self.genesis.owner(t.from) != Some(q) {
            return Check::Invalid(Invalid::NotOwner);
        }
        // 2. next sequence number: guaranteed by the caller (head of pending)
        // 4. every dependency already validated (checked before 3, whose
        //    outcome is final: hist[q] cannot change while q's next waits)
        let mut ids = BTreeMap::new();
        for d in &m.deps {
            if let Some(prev) = ids.insert(d.id(), d) {
                if prev != d {
                    return Check::Invalid(Invalid::FakeDependency(d.id()));
                }
            }
            // correct processes cite only incoming transfers of others
            if d.issuer == q {
                return Check::Invalid(Invalid::FakeDependency(d.id()));
            }
            match self.validated(d.id()) {
                Some(v) if v == d => {}
                Some(_) => return Check::Invalid(Invalid::FakeDependency(d.id())),
                None if d.seq <= self.seq(d.issuer) || self.blocked.contains(&d.issuer) => {
                    return Check::Invalid(Invalid::FakeDependency(d.id()))
                }
                None => return Check::Wait(d.id()),
            }
        }
        // 3. funds justified by hist[q] ∪ h only
        let balance = self.balance_with(q, t.from, &m.deps);
        if balance < t.amount as i128 {
            return Check::Invalid(Invalid::Unjustified {
                balance,
                amount: t.amount,
            });
        }
        Check::Valid
    }

    /// Deliver (q, m) from the broadcast; returns what got applied (possibly
    /// several transfers, unblocked by this one) and any faults. A batch is
    /// delivered as its transfers one after the other, the first with the
    /// dependencies.
    pub fn deliver(&mut self, source: NodeId, mut m: TransferMsg) -> Vec<Event> {
        if m.more.is_empty() {
            let mut out = Vec::new();
            self.deliver_one(source, m, &mut out);
            return out;
        }
        if m.len() > MAX_BATCH {
            return vec![Event::Fault {
                issuer: source,
                kind: Fault::BatchTooLong,
                detail: format!("{} transfers in one message of {source}", m.len()),
            }];
        }
        let mut expect = m.transfer.seq;
        for t in &m.more {
            expect = expect.saturating_add(1);
            if t.issuer != m.transfer.issuer || t.seq != expect {
                return vec![Event::Fault {
                    issuer: source,
                    kind: Fault::MalformedBatch,
                    detail: format!("{source} batched {:?} after {:?}", t.id(), m.transfer.id()),
                }];
            }
        }
        let more = std::mem::take(&mut m.more);
        let mut out = Vec::new();
        if self.deliver_one(source, m, &mut out) {
            for t in more {
                if !self.deliver_one(source, TransferMsg::new(t, Vec::new()), &mut out) {
                    break;
                }
            }
        }
        out
    }

    /// Returns whether `m` was queued for validation.
    fn deliver_one(&mut self, source: NodeId, m: TransferMsg, out: &mut Vec<Event>) -> bool {
        let t = m.transfer;
        if t.issuer != source {
            out.push(Event::Fault {
                issuer: source,
                kind: Fault::WrongIssuer,
                detail: format!(
                    "{source} broadcast a transfer naming {} as issuer",
                    t.issuer
                ),
            });
            return false;
        }
        if self.blocked.contains(&source) {
            return false;
        }
        // source order makes this a well-formedness check
        let rec = self.rec(source);
        if t.seq != rec + 1 {
            out.push(Event::Fault {
                issuer: source,
                kind: Fault::OutOfOrder,
                detail: format!("transfer {:?} delivered after {rec} of its issuer", t.id()),
            });
            return false;
        }
        self.rec.insert(source, rec + 1);
        *self.pending_bytes.entry(source).or_default() += byzscale_core::codec::encoded_len(&m);
        self.pending.entry(source).or_default().insert(t.seq, m);
        self.validate_from(source, out);
        true
    }

    /// Apply whatever became valid, starting with `q`'s next transfer.
    fn validate_from(&mut self, q: NodeId, out: &mut Vec<Event>) {
        let mut work = VecDeque::from([q]);
        while let Some(q) = work.pop_front() {
            let next = self.seq(q) + 1;
            let Some(m) = self.pending.get(&q).and_then(|p| p.get(&next)) else {
                continue;
            };
            match self.check(q, m) {
                Check::Wait(dep) => {
                    self.waiting.entry(dep).or_default().insert(q);
                }
                Check::Invalid(why) => {
                    let id = m.transfer.id();
                    self.blocked.insert(q);
                    let dropped = self.pending.remove(&q).map(|p| p.len()).unwrap_or(0);
                    self.pending_bytes.remove(&q);
                    let kind = match why {
                        Invalid::NotOwner => Fault::NotOwner,
                        Invalid::Unjustified { .. } => Fault::UnjustifiedFunds,
                        Invalid::FakeDependency(_) => Fault::FakeDependency,
                    };
                    out.push(Event::Fault {
                        issuer: q,
                        kind,
                        detail: format!("{id:?} invalid ({why:?}); {dropped} transfers of {q} dropped, issuer blocked"),
                    });
                }
                Check::Valid => {
                    let m = self
                        .pending
                        .get_mut(&q)
                        .and_then(|p| p.remove(&next))
                        .expect("head present");
                    if let Some(b) = self.pending_bytes.get_mut(&q) {
                        *b -= byzscale_core::codec::encoded_len(&m);
                    }
                    let t = m.transfer;
                    let h = self.hist.entry(q).or_default();
                    let mut cited = BTreeSet::new();
                    for d in &m.deps {
                        if cited.insert(d.id()) {
                            h.add_effect(d);
                        }
                    }
                    h.add_effect(&t);
                    // only the owner of the credited account (another
                    // process) may cite t, once
                    if self
                        .genesis
                        .owner(t.to)
                        .is_some_and(|o| o != q && !self.blocked.contains(&o))
                    {
                        h.uncited.insert(t.id(), t);
                    }
                    for d in &m.deps {
                        if self.genesis.owner(d.to) == Some(q) {
                            if let Some(h) = self.hist.get_mut(&d.issuer) {
                                h.uncited.remove(&d.id());
                            }
                        }
                    }
                    self.seq.insert(q, t.seq);
                    if t.from != t.to {
                        *self.balances.entry(t.from).or_insert(0) -= t.amount as i128;
                        *self.balances.entry(t.to).or_insert(0) += t.amount as i128;
                    }
                    if q != self.me && self.genesis.owner(t.to) == Some(self.me) {
                        self.deps.push(t);
                    }
                    self.applied += 1;
                    if let Some(ws) = self.waiting.remove(&t.id()) {
                        work.extend(ws);
                    }
                    work.push_back(q);
                    out.push(Event::Applied(m));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u32) -> NodeId {
        NodeId(i)
    }
    fn a(i: u32) -> Account {
        Account(i)
    }
    fn ledger(me: u32) -> Ledger {
        Ledger::new(
            n(me),
            Arc::new(Genesis::one_account_each(&[n(0), n(1), n(2), n(3)], 100)),
        )
    }
    fn t(issuer: u32, seq: u64, to: u32, amount: u64) -> Transfer {
        Transfer {
            issuer: n(issuer),
            seq,
            from: a(issuer),
            to: a(to),
            amount,
        }
    }
    fn msg(t: Transfer, deps: Vec<Transfer>) -> TransferMsg {
        TransferMsg::new(t, deps)
    }
    fn applied(ev: &[Event]) -> Vec<TransferId> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Applied(m) => Some(m.transfer.id()),
                _ => None,
            })
            .collect()
    }
    fn faults(ev: &[Event]) -> Vec<&'static str> {
        ev.iter()
            .filter_map(|e| match e {
                Event::Fault { kind, .. } => Some(kind.name()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_four_conditions() {
        let mut l = ledger(3);
        // 1. issuer must own the debited account
        let ev = l.deliver(
            n(1),
            msg(
                Transfer {
                    from: a(2),
                    ..t(1, 1, 3, 5)
                },
                vec![],
            ),
        );
        assert_eq!(faults(&ev), vec!["at2-not-owner"]);
        // 2. next sequence number only (source order): seq 2 before seq 1
        let mut l = ledger(3);
        assert_eq!(
            faults(&l.deliver(n(1), msg(t(1, 2, 3, 5), vec![]))),
            vec!["at2-out-of-order"]
        );
        // 3. funds justified: 100 available, 101 asked
        let mut l = ledger(3);
        assert_eq!(
            faults(&l.deliver(n(1), msg(t(1, 1, 3, 101), vec![]))),
            vec!["at2-unjustified-funds"]
        );
        // a blocked issuer gets nothing applied afterwards
        assert!(l.deliver(n(1), msg(t(1, 2, 3, 1), vec![])).is_empty());
        assert_eq!(l.balance(a(1)), 100);
        // 4. a dependency not yet validated: wait, then apply when it is
        let mut l = ledger(3);
        let t0 = t(0, 1, 1, 50);
        let t1 = t(1, 1, 2, 150); // needs t0's 50
        assert!(
            l.deliver(n(1), msg(t1, vec![t0])).is_empty(),
            "waits for t0"
        );
        assert_eq!(l.pending_count(), 1);
        let ev = l.deliver(n(0), msg(t0, vec![]));
        assert_eq!(applied(&ev), vec![t0.id(), t1.id()]);
        assert_eq!(
            (l.balance(a(0)), l.balance(a(1)), l.balance(a(2))),
            (50, 0, 250)
        );
        assert_eq!(l.pending_count(), 0);
    }

    #[test]
    fn only_declared_dependencies_justify_funds() {
        // node 1 received 50 from node 0 but does not cite it: spending 150
        // is an overdraft even though the union of histories has the funds
        let mut l = ledger(3);
        let t0 = t(0, 1, 1, 50);
        l.deliver(n(0), msg(t0, vec![]));
        assert_eq!(l.balance(a(1)), 150);
        let ev = l.deliver(n(1), msg(t(1, 1, 2, 150), vec![]));
        assert_eq!(faults(&ev), vec!["at2-unjustified-funds"]);
    }

    #[test]
    fn fake_and_conflicting_dependencies() {
        // a dependency that contradicts a validated transfer is rejected at once
        let mut l = ledger(3);
        l.deliver(n(0), msg(t(0, 1, 1, 10), vec![]));
        let fake = t(0, 1, 1, 90);
        assert_eq!(
            faults(&l.deliver(n(1), msg(t(1, 1, 2, 150), vec![fake]))),
            vec!["at2-fake-dependency"]
        );
        // a dependency that may still come waits (forever, if it never does)
        let mut l = ledger(3);
        let future = t(0, 7, 1, 90);
        assert!(l
            .deliver(n(1), msg(t(1, 1, 2, 150), vec![future]))
            .is_empty());
        assert_eq!(l.pending_count(), 1);
        // the same id listed twice with different contents
        let mut l = ledger(3);
        l.deliver(n(0), msg(t(0, 1, 1, 10), vec![]));
        let ev = l.deliver(
            n(1),
            msg(t(1, 1, 2, 5), vec![t(0, 1, 1, 10), t(0, 1, 1, 11)]),
        );
        assert_eq!(faults(&ev), vec!["at2-fake-dependency"]);
    }

    #[test]
    fn deps_are_collected_for_the_next_own_transfer_and_sets_do_not_double_count() {
        let mut l = ledger(1);
        let t0 = t(0, 1, 1, 30);
        l.deliver(n(0), msg(t0, vec![]));
        assert_eq!(l.deps(), &[t0]);
        assert_eq!(l.spendable(a(1)), 130);
        let deps = l.take_deps();
        // own transfer citing t0 twice: counted once
        let mine = msg(t(1, 1, 2, 130), vec![deps[0], deps[0]]);
        assert_eq!(
            applied(&l.deliver(n(1), mine)),
            vec![TransferId {
                issuer: n(1),
                seq: 1
            }]
        );
        assert_eq!(l.balance(a(1)), 0);
        let supply: i128 = l.balances().values().sum();
        assert_eq!(supply, 400);
        // t0 was cited by its recipient: forgotten, and citing it again is a
        // fake dependency (hist[1] already has it)
        assert_eq!(l.validated(t0.id()), None);
        assert_eq!(l.uncited_count(), 1, "only node 1's transfer to a2");
        let again = msg(t(1, 2, 2, 30), vec![t0]);
        assert_eq!(faults(&l.deliver(n(1), again)), vec!["at2-fake-dependency"]);
        // citing one's own transfer is a fake dependency too
        let mut l = ledger(3);
        let own = t(1, 1, 2, 10);
        l.deliver(n(1), msg(own, vec![]));
        assert_eq!(
            faults(&l.deliver(n(1), msg(t(1, 2, 2, 95), vec![own]))),
            vec!["at2-fake-dependency"]
        );
        // wrong issuer field
        assert_eq!(
            faults(&l.deliver(n(2), msg(t(3, 1, 2, 1), vec![]))),
            vec!["at2-wrong-issuer"]
        );
    }

    #[test]
    fn batches_are_validated_transfer_by_transfer() {
        let mut l = ledger(1);
        let t = |seq: u64, amount: u64| Transfer {
            issuer: n(0),
            seq,
            from: a(0),
            to: a(1),
            amount,
        };
        let batch = TransferMsg {
            transfer: t(1, 40),
            deps: vec![],
            more: vec![t(2, 50), t(3, 20), t(4, 1)],
        };
        let ev = l.deliver(n(0), batch);
        let applied: Vec<u64> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Applied(m) => Some(m.transfer.seq),
                _ => None,
            })
            .collect();
        assert_eq!(applied, vec![1, 2], "the prefix that is justified");
        assert!(matches!(
            ev.last(),
            Some(Event::Fault {
                kind: Fault::UnjustifiedFunds,
                ..
            })
        ));
        assert_eq!(l.balance(a(0)), 10);
        // malformed batches are dropped whole
        let mut l = ledger(1);
        let gap = TransferMsg {
            transfer: t(1, 1),
            deps: vec![],
            more: vec![t(3, 1)],
        };
        let ev = l.deliver(n(0), gap);
        assert!(matches!(
            ev[..],
            [Event::Fault {
                kind: Fault::MalformedBatch,
                ..
            }]
        ));
        assert_eq!(l.applied_count(), 0);
    }
}
