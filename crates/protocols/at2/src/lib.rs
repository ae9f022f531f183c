//! AT2: consensusless asset transfer over Byzantine reliable broadcast
//! (thesis chapter 3, Algorithm 5; "The Consensus Number of a
//! Cryptocurrency", PODC'19), with accounts owned by clients.
//!
//! Only the owner of an account debits it, and the owner is sequential, so the
//! owner alone orders its outgoing transfers; everyone else only checks that
//! each debit is justified. No consensus is needed. [`At2`] is generic over
//! the broadcast ([`byzscale_broadcast::SecureBroadcast`]): deterministic
//! Bracha or probabilistic Contagion.
//!
//! # Accounts owned by clients
//!
//! An account is an ed25519 public key ([`Account`]); its owner is a client
//! holding the secret key, as in the thesis' model (μ(a) = the key holder)
//! and the public AT2 node implementation. The owner signs each transfer
//! ([`SignedTransfer`], canonical encoding in [`transfer`]) with its own
//! sequence number and the dependencies it cites, and may submit it to *any*
//! node, which broadcasts it on the owner's behalf, batched with others.
//!
//! In the thesis the owner is itself a broadcasting process, and the
//! broadcast's per-source consistency and source order make its sequence
//! numbers unique. Here different nodes broadcast the same owner's transfers,
//! and two broadcasts from different sources are delivered in different
//! orders at different processes; an owner that signs two different
//! transfers with one sequence number and gives them to two nodes (the
//! thesis' double-spending owner) would split the correct processes. So each
//! transfer is first made unique, per account and sequence number, the way
//! Bracha's ECHO phase makes a broadcast instance unique (and as the
//! account-order broadcast of thesis §3.4 and Sieve's per-payload echo do):
//!
//! 1. The node that received it (the *proposer*) sends its next batch of
//!    transfers ([`Message::Propose`]) to q−1 other members, as many as a
//!    quorum needs besides its own vote (rotating, the members that stayed
//!    silent last time asked last), and to the rest as soon as one of them
//!    does not endorse every transfer, or when the vote timer goes off.
//!    (A deviation for cost: every endorsement is a batch verification of
//!    the owners' signatures, and one quorum of them is what certifies.)
//! 2. Each member checks each transfer and signs a [`Message::Vote`] for
//!    those it endorses: the owner's signature verifies (ed25519 batch
//!    verification of the whole proposal), it is well formed, its sequence
//!    number is not used up, it has endorsed **no other transfer with that
//!    account and sequence number** (it remembers the digest it endorsed,
//!    durably, until the slot is applied), and it is valid as far as the
//!    member can tell (Algorithm 5's `Valid`: for the account's next
//!    transfer, its dependencies and funds exactly; for a later one, that
//!    the member endorsed the previous one and holds every dependency). What
//!    it cannot tell yet (a dependency or the previous transfer not applied
//!    here yet) it waits for, up to [`Config::defer_timeout`], then refuses.
//! 3. With votes from N−f members (or all), the proposer broadcasts the
//!    proposal and its votes ([`Batch`]) through the secure broadcast. A
//!    transfer with at least a quorum q = ⌊(N+f)/2⌋+1 of valid `yes` votes
//!    (2f+1 for N = 3f+1) is *certified*. Two quorums share more than f
//!    members, so at least one correct member endorsed both: two different
//!    transfers with the same account and sequence number are never both
//!    certified. Every correct process delivers the same batch and computes
//!    the same certified set ([`Batch::certify`]).
//!
//! The ledger then runs Algorithm 5 per account on certified transfers:
//!
//! | thesis | here |
//! |---|---|
//! | `seq[q]`, `hist[q]`, `deps`, `toValidate` | [`Ledger`] per account: `seq`, `own` (hist compacted), `uncited` (the incoming transfers the owner may still cite), `pending` |
//! | `transfer(a, b, x)` by the owner | the client signs `(a, b, x, s, h)` and submits it ([`Input::Submit`]) to any node |
//! | `read(a)`: `balance(a, ⋃ hist[q])` | [`Input::Read`], [`At2::balance`] (local state only) |
//! | Deliver `(q, m)`: accept iff `s = rec[q]+1` | certified transfers wait in `pending` until `s = seq[a]+1` (different nodes deliver them in different orders) |
//! | `Valid(q, t, h)`: (1) q owns a; (2) `s = seq[q]+1`; (3) `balance(a, hist[q] ∪ h) ≥ x`; (4) every entry of h is in hist | (1) the owner's signature, checked by every voter (a certified transfer has f+1 correct voters that checked it); (2) `pending` order; (3) and (4) [`Ledger::check`] |
//! | Apply: `hist[q] ∪= h ∪ {t}`; `seq[q] = s` | [`Output::Applied`]; the node that took the request answers its client ([`Output::TransferResult`]) |
//!
//! # Deviations, and why
//!
//! - **The certificate** above (a vote round before the broadcast) exists
//!   because owners are clients that submit to any node (see above). It
//!   costs one round trip and N small messages per batch; the proposer
//!   contacts all N members, so with Contagion underneath the proposer's
//!   own cost per batch is O(N), not O(log N) (a sampled vote as in Sieve
//!   would keep it logarithmic; not done).
//! - **A dependency is named by its id** `(sender, seq)`: once certified an
//!   id names one transfer, so the owner needs no more. A dependency is
//!   *citable* by its recipient only, once ([`Ledger::check_deps`]): citing
//!   it again, citing someone else's or a rejected transfer is a fake
//!   dependency (the thesis' set union would silently not count it twice).
//!   A node tells a client what to cite ([`Ledger::deps_of`]).
//! - **An invalid certified transfer uses up its sequence number** with no
//!   effect ([`ledger::Event::Rejected`]) instead of blocking the account:
//!   correct voters endorse only what they found valid, so this needs a
//!   client racing its own transfers through lagging nodes or more than f
//!   Byzantine voters, and validity depends only on certified data, so
//!   every correct process decides it identically. An owner that
//!   equivocates may leave a slot that is never certified: its account then
//!   blocks (thesis §3.4: "the account may block, but it can never
//!   double-spend").
//! - **Batching.** A node proposes up to `max_batch` queued transfers at once
//!   (one proposal in flight; requests meanwhile queue up to `queue_limit`,
//!   then [`TransferError::Busy`]); one broadcast and one vote round per
//!   member serve them all. The owners' signatures of the requests that
//!   arrived while a proposal was out are checked together, as one ed25519
//!   batch verification, when the next proposal is formed.
//! - **toValidate entries are removed when applied**, and validation is
//!   re-run only for accounts whose next transfer could have become valid.
//! - **Memory.** `hist` is compacted to one number per account; an applied
//!   transfer is kept (in `uncited`) only until its recipient cites it.
//!   Certified transfers waiting for their turn are bounded per broadcast
//!   source ([`ledger::MAX_PENDING_BYTES_PER_SOURCE`]: beyond it the
//!   source's deliveries are held back in the broadcast, [`SecureBroadcast::hold`],
//!   and nothing is lost); a voter keeps at most one undecided proposal per
//!   proposer; requests waiting for their transfer are bounded
//!   ([`MAX_WAITING`]). What is not bounded by a constant is paid in funds:
//!   a balance, an uncited transfer or an endorsement that is never applied
//!   (an owner that equivocated) each needs a transfer of at least one unit,
//!   or an account holding funds, so their number is at most the supply.

pub mod durable;
mod fault;
pub mod ledger;
pub mod node;
pub mod transfer;
pub mod vote;

pub use durable::{Checkpoint, Durable, History, Record};
pub use fault::Fault;
pub use ledger::{demo_key, Certified, Event, Genesis, Invalid, Ledger};
pub use node::{ClientOp, ClientReply, Node, ServiceError};
pub use transfer::{Account, Malformed, SignedTransfer, Transfer, TransferId};
pub use vote::{Batch, Vote};

use byzscale_broadcast::SecureBroadcast;
use byzscale_core::crypto::{Digest, Signature};
use byzscale_core::protocol::{Cx, Protocol, Time, MILLIS};
use byzscale_core::{Addr, ClientId, NodeId};
use ledger::Check;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use vote::{proposal_digest, ranges_of, ranges_ok, vote_bytes, Ranges};

/// A voter endorses an account's transfers at most this far beyond the
/// account's next sequence number.
pub const MAX_AHEAD: u64 = 256;

/// Requests whose certified transfer is not applied yet, per node; more are
/// refused as busy (a client whose transfers are certified but can never be
/// applied, its account blocked, could otherwise grow this table).
pub const MAX_WAITING: usize = 1 << 16;

/// Proposals after which a member that stayed silent is asked first again
/// (a member asked only as a fallback would otherwise never get the chance
/// to show it is back).
pub const FORGIVE_SILENCE: u64 = 64;

/// The group and the genesis an AT2 process runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub genesis: Arc<Genesis>,
    /// Every member (voters and broadcasters), in a fixed order.
    pub members: Vec<NodeId>,
    /// Byzantine members tolerated (the broadcast's f).
    pub f: usize,
    /// A proposer re-sends its proposal to the members that did not vote,
    /// and with N−f votes stops waiting for the rest, after this long.
    pub vote_timeout: Time,
    /// A voter refuses what it still cannot check after this long.
    pub defer_timeout: Time,
}

impl Config {
    /// `members` tolerating `f` Byzantine ones, over `genesis`, with the
    /// default timeouts (100 ms, 500 ms).
    pub fn new(genesis: Genesis, members: Vec<NodeId>, f: usize) -> Self {
        Config {
            genesis: Arc::new(genesis),
            members,
            f,
            vote_timeout: 100 * MILLIS,
            defer_timeout: 500 * MILLIS,
        }
    }
    /// Bracha's f for `members`: ⌊(N−1)/3⌋.
    pub fn bracha(genesis: Genesis, members: Vec<NodeId>) -> Self {
        let f = members.len().saturating_sub(1) / 3;
        Self::new(genesis, members, f)
    }
    /// Votes that certify a transfer: ⌊(N+f)/2⌋+1 (2f+1 for N = 3f+1), so
    /// two quorums share more than f members.
    pub fn quorum(&self) -> usize {
        (self.members.len() + self.f) / 2 + 1
    }
}

/// Messages between AT2 processes: the broadcast's, and the vote round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<M> {
    Bcast(M),
    /// The sender's proposal `pid`: transfers it will broadcast with votes.
    Propose {
        pid: u64,
        transfers: Vec<SignedTransfer>,
    },
    /// The sender endorses the transfers at `yes` of proposal `pid` (with
    /// digest `digest`) of the receiver.
    Vote {
        pid: u64,
        digest: Digest,
        yes: Ranges,
        sig: Signature,
    },
}

/// Timers of an AT2 process.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer<T> {
    Bcast(T),
    /// The own proposal's votes are late.
    Proposal,
    /// The proposal of this member waited long enough for this voter.
    Defer(NodeId),
}

/// Requests to an AT2 process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// Broadcast a transfer its owner signed; `tag` is the caller's, handed
    /// back in [`Output::TransferResult`].
    Submit { transfer: SignedTransfer, tag: u64 },
    /// `read(account)`.
    Read(Account),
}

/// Why a transfer failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TransferError {
    #[error("the signature does not verify under the sender's key")]
    BadSignature,
    #[error("malformed transfer: {0}")]
    Malformed(Malformed),
    #[error("sequence number {seq} of the account is used up (the next is {})", .used + 1)]
    Stale { seq: u64, used: u64 },
    #[error("the account already signed a different transfer with sequence number {0}")]
    Conflict(u64),
    #[error("sequence number {seq} is too far ahead (the next is {next})")]
    TooFarAhead { seq: u64, next: u64 },
    #[error("not yet checkable at this node: {0}; retry")]
    NotYet(String),
    #[error("insufficient funds: {balance} available, {amount} asked")]
    InsufficientFunds { balance: i128, amount: u64 },
    #[error("dependency {0} is not an uncited incoming transfer of the account")]
    FakeDependency(TransferId),
    #[error("refused by the nodes: {yes} of the {quorum} votes needed")]
    Refused { yes: usize, quorum: usize },
    #[error("the node has too many transfers waiting; retry later")]
    Busy,
}

impl From<Invalid> for TransferError {
    fn from(i: Invalid) -> Self {
        match i {
            Invalid::Unjustified { balance, amount } => {
                TransferError::InsufficientFunds { balance, amount }
            }
            Invalid::FakeDependency(d) => TransferError::FakeDependency(d),
        }
    }
}

/// What an AT2 process reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A submitted transfer was accepted here for the next proposal.
    Submitted(TransferId),
    /// The outcome of a submitted transfer: `Ok` once applied here (the
    /// thesis' `return true`), or why not (at once, when it was not
    /// certified, or when it was certified but invalid).
    TransferResult {
        tag: u64,
        id: TransferId,
        result: Result<(), TransferError>,
    },
    /// A transfer (anyone's) was certified, validated and applied here.
    Applied(Certified),
    /// A certified transfer was invalid: its sequence number is used up.
    Rejected(Certified, Invalid),
    /// The answer to [`Input::Read`].
    Balance { account: Account, balance: i128 },
}

/// Counters of an AT2 process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Transfers accepted from clients.
    pub submitted: u64,
    /// Transfers refused at submission.
    pub rejected_locally: u64,
    /// Own proposals' transfers that were not certified.
    pub refused: u64,
    pub applied: u64,
    /// Certified transfers found invalid.
    pub rejected: u64,
    pub votes: u64,
    pub faults: u64,
    /// Times a source's deliveries were held back (pending bound).
    pub held: u64,
}

/// The client address faults of an account's owner are recorded under.
pub fn owner_addr(a: Account) -> Addr {
    let h = u64::from_le_bytes(a.0[..8].try_into().expect("8 bytes"));
    Addr::Client(ClientId(1 + h % (ClientId::REPLICA_BASE - 1)))
}

/// A voter's verdict on one transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    Yes(Digest),
    No(TransferError),
    Wait(String),
}

/// An own proposal gathering votes.
#[derive(Clone, Debug)]
struct Proposal {
    pid: u64,
    digest: Digest,
    transfers: Vec<SignedTransfer>,
    tags: Vec<u64>,
    votes: BTreeMap<NodeId, Vote>,
    /// The members it was sent to so far (see [`At2::propose`]).
    asked: BTreeSet<NodeId>,
}

/// Another member's proposal this voter cannot fully check yet.
#[derive(Clone, Debug)]
struct Deferred {
    pid: u64,
    digest: Digest,
    transfers: Vec<SignedTransfer>,
    sig_ok: Vec<bool>,
}

/// One AT2 process over the secure broadcast `B`.
#[derive(Clone, Debug)]
pub struct At2<B> {
    me: NodeId,
    cfg: Arc<Config>,
    bcast: B,
    ledger: Ledger,
    /// Voter: the digest endorsed per (account, seq) not applied yet.
    endorsed: BTreeMap<(Account, u64), Digest>,
    /// Voter: per proposer, the proposal waiting to be checkable.
    deferred: BTreeMap<NodeId, Deferred>,
    /// Voter: per proposer, the last vote (re-sent if asked again).
    last_vote: BTreeMap<NodeId, (u64, Digest, Ranges, Signature)>,
    /// Proposer: accepted transfers for the next proposal, with their tags.
    queue: VecDeque<(u64, SignedTransfer)>,
    /// Submitted since the last proposal went out, signatures not checked
    /// yet: [`At2::admit`] verifies them as one batch.
    unchecked: Vec<(u64, SignedTransfer)>,
    /// Proposer: members that were asked and did not vote before the vote
    /// timer went off (with the proposal's pid), until they vote again or
    /// [`FORGIVE_SILENCE`] proposals later: asked first only when the
    /// responsive ones are too few.
    silent: BTreeMap<NodeId, u64>,
    queue_limit: usize,
    max_batch: usize,
    proposal: Option<Proposal>,
    next_pid: u64,
    /// Requests whose certified transfer is not applied here yet.
    waiters: BTreeMap<TransferId, Vec<u64>>,
    waiting: usize,
    stats: Stats,
    /// Applied transfers per account (off unless [`At2::with_history`]).
    history: History,
    /// Deliveries so far, and per source the next sequence number.
    deliveries: u64,
    frontier: BTreeMap<NodeId, u64>,
    /// A [`Checkpoint`] record every this many deliveries (0: none).
    checkpoint_every: u64,
    since_checkpoint: u64,
    /// Sources whose deliveries the broadcast holds back.
    held: BTreeSet<NodeId>,
}

impl<B: SecureBroadcast<Batch>> At2<B> {
    /// `bcast` must belong to the same process, a member of `cfg`.
    pub fn new(bcast: B, cfg: Arc<Config>) -> Self {
        let me = bcast.me();
        At2 {
            me,
            ledger: Ledger::new(cfg.genesis.clone()),
            cfg,
            bcast,
            endorsed: BTreeMap::new(),
            deferred: BTreeMap::new(),
            last_vote: BTreeMap::new(),
            queue: VecDeque::new(),
            unchecked: Vec::new(),
            silent: BTreeMap::new(),
            queue_limit: 1024,
            max_batch: 64,
            proposal: None,
            next_pid: 1,
            waiters: BTreeMap::new(),
            waiting: 0,
            stats: Stats::default(),
            history: History::default(),
            deliveries: 0,
            frontier: BTreeMap::new(),
            checkpoint_every: 0,
            since_checkpoint: 0,
            held: BTreeSet::new(),
        }
    }

    /// Keep the last `limit` applied transfers touching each account
    /// ([`At2::history`]).
    pub fn with_history(mut self, limit: usize) -> Self {
        self.history.limit = limit;
        self
    }

    /// Emit a [`Checkpoint`] record every `every` deliveries (for a durable
    /// driver; see [`durable`]).
    pub fn with_checkpoints(mut self, every: u64) -> Self {
        self.checkpoint_every = every;
        self
    }

    /// Propose up to `max_batch` transfers at once and queue up to
    /// `queue_limit` while a proposal is out (defaults 64 and 1024).
    pub fn with_batching(mut self, max_batch: usize, queue_limit: usize) -> Self {
        self.max_batch = max_batch.clamp(1, ledger::MAX_BATCH);
        self.queue_limit = queue_limit;
        self
    }

    /// The applied transfers touching `a`: how many in all, and the latest.
    pub fn history(&self, a: Account) -> (u64, Vec<Transfer>) {
        self.history
            .accounts
            .get(&a)
            .map(|(n, ts)| (*n, ts.iter().copied().collect()))
            .unwrap_or_default()
    }

    pub fn me(&self) -> NodeId {
        self.me
    }
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }
    pub fn broadcast(&self) -> &B {
        &self.bcast
    }
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// `read(a)` from local state.
    pub fn balance(&self, a: Account) -> i128 {
        self.ledger.balance(a)
    }
    /// The digests this voter endorsed and are not applied yet.
    pub fn endorsed(&self) -> &BTreeMap<(Account, u64), Digest> {
        &self.endorsed
    }
    /// Transfers accepted and not yet broadcast, or broadcast and not yet
    /// applied here.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
            + self.unchecked.len()
            + self.proposal.as_ref().map_or(0, |p| p.tags.len())
            + self.waiting
    }

    /// Run a broadcast step and bring its effects out; deliveries go to the
    /// ledger.
    fn with_bcast(&mut self, cx: &mut Cx<'_, Self>, f: impl FnOnce(&mut B, &mut Cx<'_, B>)) {
        let ((), step) = cx.nested::<B, _>(|c| f(&mut self.bcast, c));
        let deliveries = step.lift(cx, Message::Bcast, Timer::Bcast);
        let delivered = !deliveries.is_empty();
        let mut changed = false;
        for d in deliveries {
            self.deliveries += 1;
            self.since_checkpoint += 1;
            self.frontier.insert(d.source, d.seq + 1);
            changed |= self.deliver(d.source, d.payload, cx);
        }
        if delivered && self.checkpoint_every > 0 && self.since_checkpoint >= self.checkpoint_every
        {
            self.checkpoint(cx);
        }
        if delivered {
            self.hold_or_release(cx);
        }
        if changed {
            let waiting: Vec<NodeId> = self.deferred.keys().copied().collect();
            for x in waiting {
                self.try_vote(x, false, cx);
            }
        }
    }

    /// A delivered batch: certify, apply. Returns whether the ledger moved.
    fn deliver(&mut self, source: NodeId, b: Batch, cx: &mut Cx<'_, Self>) -> bool {
        let q = self.cfg.quorum();
        let (certified, bad) = match b.certify(cx.crypto(), source, &self.cfg.members, q) {
            Ok(c) => c,
            Err(e) => {
                self.stats.faults += 1;
                cx.fault(source, Fault::MalformedBatch, e);
                return false;
            }
        };
        for v in bad {
            self.stats.faults += 1;
            cx.fault(
                source,
                Fault::BadVote,
                format!("batch {} carries a vote of {v} that does not verify", b.pid),
            );
        }
        let mut changed = false;
        let mut transfers: Vec<Option<SignedTransfer>> =
            b.transfers.into_iter().map(Some).collect();
        for i in certified {
            let Some(st) = transfers[i].take() else {
                continue;
            };
            let c = Certified {
                transfer: st.transfer,
                deps: st.deps,
            };
            for ev in self.ledger.certified(source, c) {
                changed = true;
                self.on_event(source, ev, cx);
            }
        }
        changed
    }

    fn on_event(&mut self, source: NodeId, ev: Event, cx: &mut Cx<'_, Self>) {
        match ev {
            Event::Applied(c) => {
                self.stats.applied += 1;
                let t = c.transfer;
                self.history.record(t);
                self.forget_endorsed(t.from, t.seq);
                self.answer(t.id(), Ok(()), cx);
                cx.output(Output::Applied(c));
            }
            Event::Rejected(c, why) => {
                self.stats.rejected += 1;
                let t = c.transfer;
                self.forget_endorsed(t.from, t.seq);
                self.stats.faults += 1;
                cx.fault(
                    owner_addr(t.from),
                    Fault::InvalidTransfer,
                    format!(
                        "certified {} is invalid ({why:?}); its sequence number is used up",
                        t.id()
                    ),
                );
                self.answer(t.id(), Err(why.clone().into()), cx);
                cx.output(Output::Rejected(c, why));
            }
            Event::Conflict { kept, other } => {
                self.stats.faults += 1;
                cx.fault(
                    source,
                    Fault::ConflictingCertificates,
                    format!("{:?} certified as {kept:?} and as {other:?}", kept.id()),
                );
            }
        }
    }

    /// Slots up to `seq` of `a` are used up: their endorsements can go
    /// (later transfers with those numbers are refused as stale).
    fn forget_endorsed(&mut self, a: Account, seq: u64) {
        let gone: Vec<(Account, u64)> = self
            .endorsed
            .range((a, 0)..=(a, seq))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.endorsed.remove(&k);
        }
    }

    fn answer(&mut self, id: TransferId, result: Result<(), TransferError>, cx: &mut Cx<'_, Self>) {
        if let Some(tags) = self.waiters.remove(&id) {
            self.waiting -= tags.len();
            for tag in tags {
                cx.output(Output::TransferResult {
                    tag,
                    id,
                    result: result.clone(),
                });
            }
        }
    }

    /// Hold back the sources over the pending bound; release the held ones
    /// that came down to half of it (their deliveries may release more).
    fn hold_or_release(&mut self, cx: &mut Cx<'_, Self>) {
        let bound = ledger::MAX_PENDING_BYTES_PER_SOURCE;
        for q in self.ledger.sources_pending() {
            if self.ledger.pending_bytes(q) > bound && self.held.insert(q) {
                self.stats.held += 1;
                self.bcast.hold(q);
            }
        }
        let drained: Vec<NodeId> = self
            .held
            .iter()
            .filter(|q| self.ledger.pending_bytes(**q) <= bound / 2)
            .copied()
            .collect();
        for q in drained {
            self.held.remove(&q);
            self.with_bcast(cx, |b, c| b.release(q, c));
        }
    }

    fn checkpoint(&mut self, cx: &mut Cx<'_, Self>) {
        self.since_checkpoint = 0;
        cx.persist(Record::Checkpoint(Box::new(Checkpoint {
            deliveries: self.deliveries,
            ledger: self.ledger.clone(),
            endorsed: self.endorsed.clone(),
            history: self.history.clone(),
            frontier: self.frontier.clone(),
        })));
    }

    /// Look up an endorsement, the ones of the proposal at hand first.
    fn endorsement(
        &self,
        key: (Account, u64),
        overlay: &BTreeMap<(Account, u64), Digest>,
    ) -> Option<Digest> {
        overlay
            .get(&key)
            .or_else(|| self.endorsed.get(&key))
            .copied()
    }

    /// This member's verdict on `st` (see the crate docs, step 2).
    fn decide(
        &self,
        st: &SignedTransfer,
        sig_ok: bool,
        overlay: &BTreeMap<(Account, u64), Digest>,
    ) -> Decision {
        if let Err(m) = st.well_formed() {
            return Decision::No(TransferError::Malformed(m));
        }
        if !sig_ok {
            return Decision::No(TransferError::BadSignature);
        }
        let t = &st.transfer;
        let (a, s) = (t.from, t.seq);
        let used = self.ledger.seq(a);
        if s <= used {
            return Decision::No(TransferError::Stale { seq: s, used });
        }
        let digest = st.digest();
        if let Some(d) = self.endorsement((a, s), overlay) {
            return if d == digest {
                Decision::Yes(digest)
            } else {
                Decision::No(TransferError::Conflict(s))
            };
        }
        if s > used + MAX_AHEAD {
            return Decision::No(TransferError::TooFarAhead {
                seq: s,
                next: used + 1,
            });
        }
        if s == used + 1 {
            return match self.ledger.check(t, &st.deps) {
                Check::Valid => Decision::Yes(digest),
                Check::Wait(d) => Decision::Wait(format!("dependency {d} is not applied here yet")),
                Check::Invalid(i) => Decision::No(i.into()),
            };
        }
        if self.endorsement((a, s - 1), overlay).is_none() {
            return Decision::Wait(format!(
                "sequence number {} of the account is not applied or endorsed here yet",
                s - 1
            ));
        }
        match self.ledger.check_deps(a, &st.deps) {
            Ok(_) => Decision::Yes(digest),
            Err(Check::Wait(d)) => {
                Decision::Wait(format!("dependency {d} is not applied here yet"))
            }
            Err(Check::Invalid(i)) => Decision::No(i.into()),
            Err(Check::Valid) => Decision::Yes(digest),
        }
    }

    // ------------------------------------------------------------ proposer

    fn submit(&mut self, tag: u64, st: SignedTransfer, cx: &mut Cx<'_, Self>) {
        if self.queue.len() + self.unchecked.len() >= self.queue_limit.max(1)
            || self.waiting >= MAX_WAITING
        {
            self.stats.rejected_locally += 1;
            cx.output(Output::TransferResult {
                tag,
                id: st.id(),
                result: Err(TransferError::Busy),
            });
            return;
        }
        self.unchecked.push((tag, st));
        self.propose(cx);
    }

    /// Check the transfers submitted since the last proposal went out (their
    /// owners' signatures as one batch verification, then this member's
    /// verdict, in submission order) and queue those it endorses.
    fn admit(&mut self, cx: &mut Cx<'_, Self>) {
        if self.unchecked.is_empty() {
            return;
        }
        let submitted = std::mem::take(&mut self.unchecked);
        let bytes: Vec<Vec<u8>> = submitted.iter().map(|(_, st)| st.signing_bytes()).collect();
        let items: Vec<(&[u8; 32], &[u8], &Signature)> = submitted
            .iter()
            .zip(&bytes)
            .map(|((_, st), b)| (&st.transfer.from.0, b.as_slice(), &st.sig))
            .collect();
        let sig_ok = cx.crypto().verify_keyed(&items);
        for ((tag, st), ok) in submitted.into_iter().zip(sig_ok) {
            let id = st.id();
            let err = match self.decide(&st, ok, &BTreeMap::new()) {
                Decision::Yes(d) => {
                    self.endorsed.insert((id.from, id.seq), d);
                    self.stats.submitted += 1;
                    self.queue.push_back((tag, st));
                    cx.output(Output::Submitted(id));
                    continue;
                }
                Decision::No(e) => e,
                Decision::Wait(why) => TransferError::NotYet(why),
            };
            self.stats.rejected_locally += 1;
            cx.output(Output::TransferResult {
                tag,
                id,
                result: Err(err),
            });
        }
    }

    /// Send the queued transfers as the next proposal (none may be out),
    /// after admitting those submitted meanwhile.
    fn propose(&mut self, cx: &mut Cx<'_, Self>) {
        if self.proposal.is_some() {
            return;
        }
        self.admit(cx);
        if self.queue.is_empty() {
            return;
        }
        let n = self.queue.len().min(self.max_batch);
        let (tags, transfers): (Vec<u64>, Vec<SignedTransfer>) = self.queue.drain(..n).unzip();
        let pid = self.next_pid;
        self.next_pid += 1;
        let digest = proposal_digest(cx.crypto(), self.me, pid, &transfers);
        // the own vote: every queued transfer was endorsed when accepted
        let mut entries = Vec::new();
        for st in &transfers {
            let k = (st.transfer.from, st.transfer.seq);
            if let Some(d) = self.endorsed.get(&k) {
                entries.push((k.0, k.1, *d));
            }
        }
        if !entries.is_empty() {
            cx.persist(Record::Voted(entries));
        }
        let yes = vec![(0, n as u32)];
        let sig = cx.crypto().sign(&vote_bytes(self.me, pid, &digest, &yes));
        let votes = BTreeMap::from([(
            self.me,
            Vote {
                voter: self.me,
                yes,
                sig,
            },
        )]);
        let asked = self.first_voters(pid);
        if !asked.is_empty() {
            cx.multicast(
                asked.iter().map(|m| Addr::Node(*m)).collect(),
                Message::Propose {
                    pid,
                    transfers: transfers.clone(),
                },
            );
        }
        cx.set_timer(Timer::Proposal, self.cfg.vote_timeout);
        self.proposal = Some(Proposal {
            pid,
            digest,
            transfers,
            tags,
            votes,
            asked,
        });
        self.maybe_finalize(false, cx);
    }

    /// The members a proposal goes to first: as many as a quorum needs
    /// besides the proposer, rotating with `pid` (from a place that differs
    /// per proposer) so that the checking is spread over all of them. The others are asked when a vote comes back
    /// short ([`At2::on_vote`]) or the vote timer goes off.
    fn first_voters(&self, pid: u64) -> BTreeSet<NodeId> {
        let others: Vec<NodeId> = self
            .cfg
            .members
            .iter()
            .copied()
            .filter(|m| *m != self.me)
            .collect();
        let k = self.cfg.quorum().saturating_sub(1).min(others.len());
        let start = ((pid + u64::from(self.me.0)) % others.len().max(1) as u64) as usize;
        let mut order: Vec<NodeId> = (0..others.len())
            .map(|i| others[(start + i) % others.len()])
            .collect();
        // stable: the responsive ones first, each group in rotation order
        order.sort_by_key(|m| {
            self.silent
                .get(m)
                .is_some_and(|at| pid < at.saturating_add(FORGIVE_SILENCE))
        });
        order.into_iter().take(k).collect()
    }

    fn on_vote(
        &mut self,
        from: Addr,
        (pid, digest, yes, sig): (u64, Digest, Ranges, Signature),
        cx: &mut Cx<'_, Self>,
    ) {
        let Some(y) = from
            .node()
            .filter(|y| *y != self.me && self.cfg.members.contains(y))
        else {
            self.stats.faults += 1;
            cx.fault(from, Fault::BadVote, "a vote from a non-member");
            return;
        };
        let me = self.me;
        let Some(p) = self.proposal.as_mut() else {
            return; // late: the proposal was broadcast without it
        };
        if p.pid != pid || p.digest != digest || p.votes.contains_key(&y) {
            return;
        }
        if !ranges_ok(&yes, p.transfers.len())
            || cx
                .crypto()
                .verify(from, &vote_bytes(me, pid, &digest, &yes), &sig)
                .is_err()
        {
            self.stats.faults += 1;
            cx.fault(from, Fault::BadVote, format!("vote on proposal {pid}"));
            return;
        }
        self.silent.remove(&y);
        let short = yes.iter().map(|(s, e)| (e - s) as usize).sum::<usize>() < p.transfers.len();
        p.votes.insert(y, Vote { voter: y, yes, sig });
        if short {
            // a transfer this voter did not endorse: ask the rest at once
            let rest: Vec<NodeId> = self
                .cfg
                .members
                .iter()
                .copied()
                .filter(|m| *m != me && !p.asked.contains(m))
                .collect();
            if !rest.is_empty() {
                p.asked.extend(rest.iter().copied());
                let msg = Message::Propose {
                    pid,
                    transfers: p.transfers.clone(),
                };
                cx.multicast(rest.into_iter().map(Addr::Node).collect(), msg);
            }
        }
        self.maybe_finalize(false, cx);
    }

    /// Votes per transfer of the proposal.
    fn counts(p: &Proposal) -> Vec<usize> {
        let mut count = vec![0usize; p.transfers.len()];
        for v in p.votes.values() {
            for (s, e) in &v.yes {
                for c in &mut count[*s as usize..*e as usize] {
                    *c += 1;
                }
            }
        }
        count
    }

    /// Broadcast the proposal when enough votes are in: a quorum for every
    /// transfer; or all of them; or N−f and every transfer's fate known (or
    /// the timer went off). The batch carries only the votes the certified
    /// transfers need.
    fn maybe_finalize(&mut self, late: bool, cx: &mut Cx<'_, Self>) {
        let Some(p) = &self.proposal else {
            return;
        };
        let n = self.cfg.members.len();
        let q = self.cfg.quorum();
        let have = p.votes.len();
        let counts = Self::counts(p);
        // every transfer certified: no need to wait for more
        if !counts.iter().all(|c| *c >= q) {
            if have < n.saturating_sub(self.cfg.f).max(1) {
                return;
            }
            let missing = n - have;
            let settled = counts.iter().all(|c| *c >= q || c + missing < q);
            if have < n && !late && !settled {
                return;
            }
        }
        let p = self.proposal.take().expect("checked");
        cx.cancel_timer(Timer::Proposal);
        let count = Self::counts(&p);
        let mut any = false;
        for (i, tag) in p.tags.iter().enumerate() {
            let id = p.transfers[i].id();
            if count[i] >= q {
                any = true;
                if self.ledger.seq(id.from) >= id.seq {
                    // the same transfer was certified and applied already
                    cx.output(Output::TransferResult {
                        tag: *tag,
                        id,
                        result: Ok(()),
                    });
                } else {
                    self.waiters.entry(id).or_default().push(*tag);
                    self.waiting += 1;
                }
            } else {
                self.stats.refused += 1;
                cx.output(Output::TransferResult {
                    tag: *tag,
                    id,
                    result: Err(TransferError::Refused {
                        yes: count[i],
                        quorum: q,
                    }),
                });
            }
        }
        if any {
            // only the votes the certified transfers need (a quorum each)
            let mut have = vec![0usize; count.len()];
            let mut votes = Vec::new();
            for v in p.votes.into_values() {
                let needed = v
                    .yes
                    .iter()
                    .any(|(s, e)| (*s as usize..*e as usize).any(|i| count[i] >= q && have[i] < q));
                if needed {
                    for (s, e) in &v.yes {
                        for h in &mut have[*s as usize..*e as usize] {
                            *h += 1;
                        }
                    }
                    votes.push(v);
                }
            }
            let batch = Batch {
                pid: p.pid,
                transfers: p.transfers,
                votes,
            };
            self.with_bcast(cx, |b, c| b.on_input(batch, c));
        }
        self.propose(cx);
    }

    fn on_proposal_timer(&mut self, cx: &mut Cx<'_, Self>) {
        let Some(p) = self.proposal.as_mut() else {
            return;
        };
        let n = self.cfg.members.len();
        if p.votes.len() < n.saturating_sub(self.cfg.f) {
            // votes or proposals lost on the way, or a first voter silent:
            // ask every member that did not vote
            let silent: Vec<NodeId> = self
                .cfg
                .members
                .iter()
                .copied()
                .filter(|m| !p.votes.contains_key(m))
                .collect();
            let pid = p.pid;
            self.silent.extend(
                silent
                    .iter()
                    .filter(|m| p.asked.contains(m))
                    .map(|m| (*m, pid)),
            );
            p.asked.extend(silent.iter().copied());
            let silent: Vec<Addr> = silent.into_iter().map(Addr::Node).collect();
            let msg = Message::Propose {
                pid: p.pid,
                transfers: p.transfers.clone(),
            };
            cx.multicast(silent, msg);
            cx.set_timer(Timer::Proposal, self.cfg.vote_timeout);
            return;
        }
        self.maybe_finalize(true, cx);
    }

    // ------------------------------------------------------------ voter

    fn on_propose(
        &mut self,
        from: Addr,
        pid: u64,
        transfers: Vec<SignedTransfer>,
        cx: &mut Cx<'_, Self>,
    ) {
        let Some(x) = from
            .node()
            .filter(|x| *x != self.me && self.cfg.members.contains(x))
        else {
            self.stats.faults += 1;
            cx.fault(
                from,
                Fault::MalformedProposal,
                "a proposal from a non-member",
            );
            return;
        };
        if transfers.is_empty() || transfers.len() > ledger::MAX_BATCH {
            self.stats.faults += 1;
            cx.fault(
                from,
                Fault::MalformedProposal,
                format!("{} transfers proposed", transfers.len()),
            );
            return;
        }
        let digest = proposal_digest(cx.crypto(), x, pid, &transfers);
        if let Some((p, d, yes, sig)) = self.last_vote.get(&x) {
            if *p == pid && *d == digest {
                let msg = Message::Vote {
                    pid,
                    digest,
                    yes: yes.clone(),
                    sig: *sig,
                };
                cx.send(from, msg);
                return;
            }
        }
        if self
            .deferred
            .get(&x)
            .is_some_and(|d| d.pid == pid && d.digest == digest)
        {
            return;
        }
        let bytes: Vec<Vec<u8>> = transfers
            .iter()
            .map(SignedTransfer::signing_bytes)
            .collect();
        let items: Vec<(&[u8; 32], &[u8], &Signature)> = transfers
            .iter()
            .zip(&bytes)
            .map(|(t, b)| (&t.transfer.from.0, b.as_slice(), &t.sig))
            .collect();
        let sig_ok = cx.crypto().verify_keyed(&items);
        // a newer proposal of x replaces the one waiting (x moved on)
        self.deferred.insert(
            x,
            Deferred {
                pid,
                digest,
                transfers,
                sig_ok,
            },
        );
        cx.set_timer(Timer::Defer(x), self.cfg.defer_timeout);
        self.try_vote(x, false, cx);
    }

    /// Vote on `x`'s waiting proposal if every transfer is decided (or
    /// `force`: what is not is refused).
    fn try_vote(&mut self, x: NodeId, force: bool, cx: &mut Cx<'_, Self>) {
        let Some(d) = self.deferred.get(&x) else {
            return;
        };
        let mut overlay = BTreeMap::new();
        let mut verdicts = Vec::with_capacity(d.transfers.len());
        for (st, ok) in d.transfers.iter().zip(&d.sig_ok) {
            let v = match self.decide(st, *ok, &overlay) {
                Decision::Wait(why) if force => Decision::No(TransferError::NotYet(why)),
                Decision::Wait(_) => return,
                v => v,
            };
            if let Decision::Yes(digest) = v {
                overlay.insert((st.transfer.from, st.transfer.seq), digest);
            }
            verdicts.push(v);
        }
        let d = self.deferred.remove(&x).expect("present");
        cx.cancel_timer(Timer::Defer(x));
        for (st, v) in d.transfers.iter().zip(&verdicts) {
            let fault = match v {
                Decision::No(TransferError::BadSignature) => Some((
                    Addr::Node(x),
                    Fault::BadSignature,
                    format!(
                        "proposal {} carries {} with a bad signature",
                        d.pid,
                        st.id()
                    ),
                )),
                Decision::No(TransferError::Malformed(m)) => Some((
                    Addr::Node(x),
                    Fault::MalformedTransfer,
                    format!("proposal {} carries {}: {m}", d.pid, st.id()),
                )),
                Decision::No(TransferError::Conflict(s)) => Some((
                    owner_addr(st.transfer.from),
                    Fault::DoubleSpend,
                    format!(
                        "{} signed two transfers with sequence number {s}",
                        st.transfer.from
                    ),
                )),
                _ => None,
            };
            if let Some((who, kind, detail)) = fault {
                self.stats.faults += 1;
                cx.fault(who, kind, detail);
            }
        }
        let entries: Vec<(Account, u64, Digest)> =
            overlay.iter().map(|((a, s), dg)| (*a, *s, *dg)).collect();
        let yes: Vec<bool> = verdicts
            .iter()
            .map(|v| matches!(v, Decision::Yes(_)))
            .collect();
        self.endorsed.extend(overlay);
        if !entries.is_empty() {
            cx.persist(Record::Voted(entries));
        }
        let yes = ranges_of(&yes);
        let sig = cx.crypto().sign(&vote_bytes(x, d.pid, &d.digest, &yes));
        self.stats.votes += 1;
        cx.send(
            x,
            Message::Vote {
                pid: d.pid,
                digest: d.digest,
                yes: yes.clone(),
                sig,
            },
        );
        self.last_vote.insert(x, (d.pid, d.digest, yes, sig));
    }
}

impl<B: SecureBroadcast<Batch>> Protocol for At2<B> {
    type Message = Message<B::Message>;
    type Input = Input;
    type Output = Output;
    type Timer = Timer<B::Timer>;
    type Record = Record<B::Record>;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        self.with_bcast(cx, |b, c| b.on_start(c));
    }

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        match input {
            Input::Submit { transfer, tag } => self.submit(tag, transfer, cx),
            Input::Read(account) => {
                let balance = self.ledger.balance(account);
                cx.output(Output::Balance { account, balance });
            }
        }
    }

    fn on_message(&mut self, from: Addr, msg: Self::Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Bcast(m) => self.with_bcast(cx, |b, c| b.on_message(from, m, c)),
            Message::Propose { pid, transfers } => self.on_propose(from, pid, transfers, cx),
            Message::Vote {
                pid,
                digest,
                yes,
                sig,
            } => self.on_vote(from, (pid, digest, yes, sig), cx),
        }
    }

    fn on_timer(&mut self, timer: Self::Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Bcast(t) => self.with_bcast(cx, |b, c| b.on_timer(t, c)),
            Timer::Proposal => self.on_proposal_timer(cx),
            Timer::Defer(x) => self.try_vote(x, true, cx),
        }
    }
}

#[cfg(test)]
mod tests;
