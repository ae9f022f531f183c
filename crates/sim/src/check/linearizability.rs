//! Linearizability checker for KV client histories.
//!
//! A history is a list of [`Op`]s, each with the client that issued it, its invocation
//! and completion times (virtual nanoseconds), the [`KvOp`] and the [`KvReply`] the
//! client received. The history is linearizable if every operation can be given a
//! point between its invocation and completion such that executing the operations in
//! that order on the sequential [`Model`] (the same code the replicas run) yields the
//! observed replies. Operation `a` precedes `b` in real time iff
//! `a.completed < b.invoked`; equal times count as concurrent.
//!
//! **Pending operations** (no completion seen: `completed == PENDING`, reply ignored)
//! may or may not take effect: each may be linearized anywhere after its invocation,
//! including after everything else (which is the same as never taking effect).
//! Pending read-only operations cannot influence anything and are dropped.
//!
//! **Decomposition.** Linearizability is P-compositional (Herlihy & Wing): a history
//! is linearizable iff its restriction to each object is. Keys are the objects, but an
//! operation on several keys (MSET, MGET, multi-key DEL / EXISTS) ties them together,
//! so keys are grouped with a union-find over the key sets of operations, and each
//! group ("component") is checked on its own. Operations without keys (PING, or a
//! multi-key command with no arguments) do not depend on state and are checked alone.
//!
//! **Search.** Each component is checked with the Wing & Gong algorithm as improved by
//! Lowe and used by Porcupine: events in time order in a doubly linked list; repeatedly
//! linearize a minimal operation whose reply matches the model, lifting its call and
//! return out of the list; backtrack when no candidate works; visit every (set of
//! linearized operations, model state) configuration at most once. Configurations are
//! remembered as two 128-bit hashes (a Zobrist hash of the set and an XOR of per-entry
//! hashes of the state, both updated in O(1) per step, with an undo log instead of
//! state copies); a collision (probability about 2^-128 per pair) could only prune
//! wrongly, never accept wrongly. Three reductions keep realistic histories cheap:
//!
//! - candidates are tried in the order of the midpoints of their intervals (pending
//!   operations last), the likeliest order;
//! - a configuration that has a *forced* candidate — a read-only operation whose reply
//!   matches the state, or an operation that conflicts with no other operation that
//!   could be linearized before it completes — only tries that one, since any
//!   linearization can be rearranged to start with it;
//! - sleep sets (Godefroid's partial-order reduction): once linearizing `t` first is
//!   known to fail, sibling branches that linearize an operation independent of `t`
//!   do not try `t` again until something conflicting with it has been linearized.
//!
//! The cost can still grow exponentially with the number of mutually conflicting
//! operations that are concurrent within one component (e.g. dozens of clients all
//! writing a handful of keys), so the number of search steps per component is capped
//! ([`Options::max_steps`]); exceeding it gives [`Violation::Inconclusive`] instead of
//! running for a very long time. As a guide, from randomized tests on 5 000–8 000
//! operations with every client always busy: 8–16 clients on a single key, or 16–32
//! clients over 1 000 keys with 45% two-key operations, are decided in well under a
//! second; 64 clients over 1 000 keys are decided about half the time within the
//! default budget; 32 clients on 1–10 keys are usually inconclusive. If a run is
//! inconclusive, raise the budget, spread the workload over more keys, use fewer
//! multi-key operations, or check shorter histories.
//!
//! **Transactions.** `WATCH` ([`KvOp::Watch`]) is a read whose reply is the keys'
//! versions and `EXEC` ([`KvOp::Exec`]) a write of its watched keys and its
//! commands' keys: both replay on [`Model`] like any operation. A version counts
//! the writes of its own key, so replaying one component gives the versions the
//! whole store gave; the versions are part of the state (its hash and the undo
//! log). The checker assumes the store's table of versions was never forgotten
//! (`kv::multi`: 16 MiB of keys written), which no simulated run comes near.
//!
//! **Expiry.** Key expiry and `TTL`/`PTTL` depend on the model's clock, which on
//! the replicas is the batch time the leader stamped and the backups checked
//! (`byzscale_smr`, "Batch time"): every operation of a batch runs at that time.
//! An [`Op`] may carry it ([`Op::time`], ms), as the audit of a run learns it from
//! the correct replicas (the slot a client's reply names, the batch decided
//! there). Linearizing an operation with a time first moves the model's clock
//! there ([`Model::advance`], which expires keys); an order in which time would
//! go back is not tried: an operation is linearized only at or after the clock,
//! and not while a completed operation with an earlier time is still to be
//! placed. (Operations of one batch share a time and may be ordered either way;
//! only non-decreasing times are required.) Before the search, an operation
//! that completed before another was invoked must not have the later time
//! ([`Violation::TimeReversed`]); with that, ordering by real time and by batch
//! time together is still an interval order, so checking components separately
//! stays exact for operations with times. A pending operation with a time may
//! or may not have taken effect (a replica may have refused it at that batch):
//! at its time or never. A read without a time (the unordered read-only path)
//! is answered by replicas from the state after their last executed batch, at
//! that batch's time: it is linearized at the earliest clock, not before the
//! model's, at which its reply matches, within its *window*, between the
//! latest time of the operations that completed before it was invoked and the
//! earliest time of those invoked after it completed. Choosing the earliest
//! such clock loses no linearization, since a later clock only expires more.
//! Two such reads in different components are not checked against each other's
//! clock (a relaxation), and any other operation without a time (a pending
//! write the audit could not place) runs at the model's clock as it is, which
//! can only cause a false alarm, never hide a violation. The clock and every
//! key's deadline are part of the state (its hash and the undo log). In a
//! component where no operation has a time the clock never moves, as before.
//! With times, operations of different batches do not commute (for the
//! search's reductions above): only the order within a batch is searched.
//!
//! A [`Violation::NotLinearizable`] explains itself with the deepest point the search
//! reached: the longest linearizable prefix it found, the model state after it, and
//! the operations that could have come next, each with the reply the model gives there.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use byzscale_apps::kv::{KvOp, KvReply, Model, Printable, Value};
use serde::{Deserialize, Serialize};

/// The `completed` time of an operation whose completion was never observed.
pub const PENDING: u64 = u64::MAX;

/// The default search budget per component (see [`Options::max_steps`]).
pub const DEFAULT_MAX_STEPS: u64 = 2_000_000;

/// One operation of a client history.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Op {
    /// The client that issued it.
    pub client: u64,
    /// When the client invoked it (ns).
    pub invoked: u64,
    /// When the client received the reply (ns), or [`PENDING`].
    pub completed: u64,
    /// The operation.
    pub op: KvOp,
    /// The reply received; ignored if the operation is pending.
    pub reply: KvReply,
    /// The batch time (ms) at which the replicas executed it, if known (see
    /// the module docs, **Expiry**).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
}

impl Op {
    /// A completed operation.
    pub fn new(client: u64, invoked: u64, completed: u64, op: KvOp, reply: KvReply) -> Op {
        Op {
            client,
            invoked,
            completed,
            op,
            reply,
            time: None,
        }
    }

    /// An operation whose reply was never received (its `reply` is a placeholder).
    pub fn pending(client: u64, invoked: u64, op: KvOp) -> Op {
        Op {
            client,
            invoked,
            completed: PENDING,
            op,
            reply: KvReply::Nil,
            time: None,
        }
    }

    /// The same operation, executed at batch time `time_ms`.
    pub fn at(mut self, time_ms: u64) -> Op {
        self.time = Some(time_ms);
        self
    }

    /// Whether the operation never completed.
    pub fn is_pending(&self) -> bool {
        self.completed == PENDING
    }
}

impl fmt::Display for Op {
    /// `c1 [100, 250] SET k v -> OK`, or `c1 [100, pending] SET k v`; with a
    /// batch time, `c1 [100, 250] @7ms SET k v -> OK`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{} [{}, ", self.client, self.invoked)?;
        if self.is_pending() {
            f.write_str("pending]")?;
        } else {
            write!(f, "{}]", self.completed)?;
        }
        if let Some(t) = self.time {
            write!(f, " @{t}ms")?;
        }
        write!(f, " {}", self.op)?;
        if !self.is_pending() {
            write!(f, " -> {}", self.reply)?;
        }
        Ok(())
    }
}

/// Checker settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Search steps allowed per component before giving up with
    /// [`Violation::Inconclusive`]. A step takes well under a microsecond and may add
    /// one entry (about 40 bytes) to the set of visited configurations.
    pub max_steps: u64,
    /// The store's contents before the history (usually empty).
    pub initial: Model,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_steps: DEFAULT_MAX_STEPS,
            initial: Model::new(),
        }
    }
}

/// Why a history was not shown linearizable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Violation {
    /// An operation completes before it is invoked.
    Malformed {
        /// Its index in the history.
        index: usize,
        /// The operation.
        op: Box<Op>,
        /// What is wrong.
        reason: String,
    },
    /// No linearization exists.
    NotLinearizable(Box<Counterexample>),
    /// Batch times go backwards in real time: `earlier` completed before
    /// `later` was invoked, but executed at a later batch time.
    TimeReversed {
        /// Index in the history of the operation that completed first.
        earlier: usize,
        /// Index of the operation invoked after it.
        later: usize,
        /// The two operations.
        ops: Box<(Op, Op)>,
    },
    /// The search budget ran out before a linearization was found or ruled out.
    Inconclusive {
        /// The keys of the component being checked.
        keys: Vec<Vec<u8>>,
        /// Its number of operations.
        ops: usize,
        /// Steps taken (the budget).
        steps: u64,
    },
}

/// The evidence of a [`Violation::NotLinearizable`]: the deepest point of the search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counterexample {
    /// The keys of the component whose sub-history is not linearizable (empty for an
    /// operation without keys).
    pub keys: Vec<Vec<u8>>,
    /// Number of operations in that sub-history.
    pub ops: usize,
    /// The longest linearizable prefix the search found, in linearization order, as
    /// (index in the history, operation).
    pub linearized: Vec<(usize, Op)>,
    /// The component's state after that prefix: (key, value) in key order.
    pub state: Vec<(Vec<u8>, Value)>,
    /// The model's clock (ms) after that prefix: the batch time of the last
    /// operation, or the time a read without one was given (0 in a history
    /// without batch times).
    #[serde(default)]
    pub clock: u64,
    /// The operations that could come next (all minimal in real-time order), none of
    /// which leads to a linearization: either the model's reply differs from the
    /// client's, or (`expected == op.reply`) the search showed that every continuation
    /// fails later.
    pub stuck: Vec<Stuck>,
}

/// An operation that cannot come next at the deepest point of the search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stuck {
    /// Its index in the history.
    pub index: usize,
    /// The operation, with the reply the client saw.
    pub op: Op,
    /// The reply the model gives at that point.
    pub expected: KvReply,
}

impl Violation {
    /// Whether this is [`Violation::Inconclusive`] (not a proven violation).
    pub fn is_inconclusive(&self) -> bool {
        matches!(self, Violation::Inconclusive { .. })
    }

    /// The keys involved (empty for [`Violation::Malformed`],
    /// [`Violation::TimeReversed`] and key-less operations).
    pub fn keys(&self) -> &[Vec<u8>] {
        match self {
            Violation::Malformed { .. } | Violation::TimeReversed { .. } => &[],
            Violation::NotLinearizable(c) => &c.keys,
            Violation::Inconclusive { keys, .. } => keys,
        }
    }
}

/// How many operations of the prefix a [`Violation`]'s `Display` shows.
const SHOWN_PREFIX: usize = 8;

/// How many keys a [`Violation`]'s `Display` names.
const SHOWN_KEYS: usize = 8;

struct Keys<'a>(&'a [Vec<u8>]);

impl fmt::Display for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        for (i, k) in self.0.iter().take(SHOWN_KEYS).enumerate() {
            write!(f, "{}{}", if i > 0 { ", " } else { "" }, Printable(k))?;
        }
        if self.0.len() > SHOWN_KEYS {
            write!(f, " and {} more", self.0.len() - SHOWN_KEYS)?;
        }
        Ok(())
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Malformed { index, op, reason } => write!(f, "malformed history: #{index} {op}: {reason}"),
            Violation::TimeReversed { earlier, later, ops } => write!(
                f,
                "batch time goes backwards: #{earlier} {} completed before #{later} {} was invoked, but ran later",
                ops.0, ops.1
            ),
            Violation::Inconclusive { keys, ops, steps } => write!(
                f,
                "linearizability inconclusive on keys {} ({ops} ops): search budget of {steps} steps exhausted",
                Keys(keys)
            ),
            Violation::NotLinearizable(c) => {
                write!(f, "not linearizable on keys {} ({} ops): ", Keys(&c.keys), c.ops)?;
                write!(f, "after the longest linearizable prefix found ({} ops), ", c.linearized.len())?;
                if c.clock > 0 {
                    write!(f, "at {} ms, ", c.clock)?;
                }
                write!(f, "state {{")?;
                for (i, (k, v)) in c.state.iter().enumerate() {
                    write!(f, "{}{}: {}", if i > 0 { ", " } else { "" }, Printable(k), v)?;
                }
                writeln!(f, "}}, no operation can come next:")?;
                for s in &c.stuck {
                    if s.op.is_pending() || s.expected == s.op.reply {
                        writeln!(f, "  #{} {}   (fits here, but every continuation fails)", s.index, s.op)?;
                    } else {
                        writeln!(f, "  #{} {}   (model says {})", s.index, s.op, s.expected)?;
                    }
                }
                let skip = c.linearized.len().saturating_sub(SHOWN_PREFIX);
                if skip > 0 {
                    writeln!(f, "prefix (last {SHOWN_PREFIX} of {}):", c.linearized.len())?;
                } else if !c.linearized.is_empty() {
                    writeln!(f, "prefix:")?;
                }
                for (i, op) in &c.linearized[skip..] {
                    writeln!(f, "  #{i} {op}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Violation {}

/// Check `history` with the default [`Options`].
pub fn check(history: &[Op]) -> Result<(), Violation> {
    check_with(history, &Options::default())
}

/// Check `history` for a run's audit: a violation is added to `violations`;
/// returns whether the check was inconclusive (search budget exhausted).
pub fn audit(history: &[Op], violations: &mut crate::scenario::Violations) -> bool {
    match check(history) {
        Ok(()) => false,
        Err(v) if v.is_inconclusive() => true,
        Err(v) => {
            violations.push(format!("linearizability: {v}"));
            false
        }
    }
}

/// Check `history`. Components are checked in the order of their first operation; the
/// first proven violation is returned, else the first inconclusive component, else
/// `Ok(())`.
pub fn check_with(history: &[Op], options: &Options) -> Result<(), Violation> {
    for (index, op) in history.iter().enumerate() {
        if op.invoked > op.completed {
            return Err(Violation::Malformed {
                index,
                op: Box::new(op.clone()),
                reason: "completed before invoked".to_string(),
            });
        }
    }
    let windows = windows(history)?;
    let mut inconclusive = None;
    for component in components(history) {
        let result = if component.keys.is_empty() {
            check_keyless(history, &component.members)
        } else {
            check_component(history, &windows, &component, options)
        };
        match result {
            Ok(()) => {}
            Err(v) if v.is_inconclusive() => {
                inconclusive.get_or_insert(v);
            }
            Err(v) => return Err(v),
        }
    }
    inconclusive.map_or(Ok(()), Err)
}

/// The clock window of each operation of the history, `(lo, hi)` in ms: no
/// operation with a batch time completed before it was invoked with a time above
/// `lo`, none was invoked after it completed with a time below `hi` ((0, MAX) if
/// there is none). A read without a time of its own ran at a time in its window
/// (module docs, **Expiry**). Fails if an operation with a time has one below
/// `lo`: batch time went backwards in real time.
fn windows(history: &[Op]) -> Result<Vec<(u64, u64)>, Violation> {
    let mut windows = vec![(0, u64::MAX); history.len()];
    let timed = |i: &usize| history[*i].time.is_some();
    if !(0..history.len()).any(|i| timed(&i)) {
        return Ok(windows);
    }
    let time = |i: usize| history[i].time.unwrap_or_default();
    // completed timed operations by completion, with the latest time so far
    let mut done: Vec<usize> = (0..history.len())
        .filter(timed)
        .filter(|&i| !history[i].is_pending())
        .collect();
    done.sort_by_key(|&i| history[i].completed);
    let mut latest: Vec<usize> = Vec::with_capacity(done.len());
    for &i in &done {
        let best = latest.last().copied().filter(|&j| time(j) >= time(i));
        latest.push(best.unwrap_or(i));
    }
    // timed operations by invocation, with the earliest time from there on
    let mut started: Vec<usize> = (0..history.len()).filter(timed).collect();
    started.sort_by_key(|&i| history[i].invoked);
    let mut earliest = vec![0; started.len()];
    for (k, &i) in started.iter().enumerate().rev() {
        let best = earliest.get(k + 1).copied().filter(|&j| time(j) <= time(i));
        earliest[k] = best.unwrap_or(i);
    }
    for (index, op) in history.iter().enumerate() {
        let before = done.partition_point(|&i| history[i].completed < op.invoked);
        if let Some(&e) = before.checked_sub(1).map(|k| &latest[k]) {
            if op.time.is_some_and(|t| t < time(e)) {
                return Err(Violation::TimeReversed {
                    earlier: e,
                    later: index,
                    ops: Box::new((history[e].clone(), op.clone())),
                });
            }
            windows[index].0 = time(e);
        }
        let after = started.partition_point(|&i| history[i].invoked <= op.completed);
        if let Some(&l) = earliest.get(after) {
            windows[index].1 = time(l);
        }
    }
    Ok(windows)
}

/// A set of keys closed under "appear in one operation", with its operations.
struct Component {
    /// Sorted keys (empty: each member is a key-less operation checked alone).
    keys: Vec<Vec<u8>>,
    /// Indices into the history, ascending.
    members: Vec<usize>,
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Partition the relevant operations of `history` into components, ordered by their
/// first operation. Pending read-only operations are left out.
fn components(history: &[Op]) -> Vec<Component> {
    let relevant = |op: &Op| !(op.is_pending() && op.op.is_read_only());
    let mut ids: BTreeMap<&[u8], usize> = BTreeMap::new();
    let mut parent: Vec<usize> = Vec::new();
    for op in history.iter().filter(|op| relevant(op)) {
        let mut first = None;
        for key in op.op.keys() {
            let id = *ids.entry(key).or_insert_with(|| {
                parent.push(parent.len());
                parent.len() - 1
            });
            match first {
                None => first = Some(id),
                Some(f) => {
                    let (a, b) = (find(&mut parent, f), find(&mut parent, id));
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    // root id -> position in the output
    let mut slot: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out: Vec<Component> = Vec::new();
    for (index, op) in history.iter().enumerate().filter(|(_, op)| relevant(op)) {
        let keys = op.op.keys();
        let Some(key) = keys.first() else {
            out.push(Component {
                keys: Vec::new(),
                members: vec![index],
            });
            continue;
        };
        let root = find(&mut parent, ids[key]);
        let pos = *slot.entry(root).or_insert_with(|| {
            out.push(Component {
                keys: Vec::new(),
                members: Vec::new(),
            });
            out.len() - 1
        });
        out[pos].members.push(index);
    }
    for (key, id) in &ids {
        let root = find(&mut parent, *id);
        if let Some(&pos) = slot.get(&root) {
            out[pos].keys.push(key.to_vec());
        }
    }
    out
}

/// An operation without keys: its reply depends on nothing but its batch time.
fn check_keyless(history: &[Op], members: &[usize]) -> Result<(), Violation> {
    for &index in members {
        let op = &history[index];
        let expected = replay(&mut Model::new(), op);
        if !op.is_pending() && expected != op.reply {
            return Err(Violation::NotLinearizable(Box::new(Counterexample {
                keys: Vec::new(),
                ops: 1,
                linearized: Vec::new(),
                state: Vec::new(),
                clock: op.time.unwrap_or_default(),
                stuck: vec![Stuck {
                    index,
                    op: op.clone(),
                    expected,
                }],
            })));
        }
    }
    Ok(())
}

const HEAD: usize = 0;
const TAIL: usize = 1;

/// How a search of one component ended.
enum Outcome {
    Linearizable,
    /// No linearization; the deepest dead end if it was being recorded.
    Stuck(Option<Deepest>),
    OutOfBudget,
}

/// Check one component: a search without bookkeeping, and if it fails, the same
/// (deterministic) search again recording the deepest dead end for the report.
fn check_component(
    history: &[Op],
    windows: &[(u64, u64)],
    component: &Component,
    options: &Options,
) -> Result<(), Violation> {
    let initial = options
        .initial
        .restricted_to(component.keys.iter().map(Vec::as_slice));
    let mut search = Search::new(history, windows, component, initial);
    let inconclusive = || Violation::Inconclusive {
        keys: component.keys.clone(),
        ops: component.members.len(),
        steps: options.max_steps,
    };
    match search.run(options.max_steps, false) {
        Outcome::Linearizable => Ok(()),
        Outcome::OutOfBudget => Err(inconclusive()),
        Outcome::Stuck(_) => match search.run(options.max_steps, true) {
            Outcome::Stuck(Some(deepest)) => Err(search.counterexample(deepest)),
            // cannot happen: the second run repeats the first
            Outcome::Stuck(None) | Outcome::Linearizable | Outcome::OutOfBudget => {
                Err(inconclusive())
            }
        },
    }
}

/// `op`'s reply on `state`, at its batch time if it has one not before the clock.
fn replay(state: &mut Model, op: &Op) -> KvReply {
    if let Some(t) = op.time {
        state.advance(t);
    }
    state.apply(&op.op)
}

/// 128 bits of SipHash (std's `DefaultHasher` has fixed keys, so this is deterministic)
/// of `key` and `x`, the two halves salted with `salts`.
fn hash128<T: std::hash::Hash + ?Sized>(salts: (u8, u8), key: &[u8], x: &T) -> u128 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        x.hash(&mut h);
        h.finish()
    };
    (u128::from(half(salts.0)) << 64) | u128::from(half(salts.1))
}

/// The hash of one key's entry of the state: its value and deadline; the state's
/// hash is the XOR over its entries (and its version entries, [`version_hash`],
/// and its clock, [`clock_hash`]).
fn entry_hash(key: &[u8], value: &Value, deadline: Option<u64>) -> u128 {
    hash128((1, 2), key, &(value, deadline))
}

/// The hash of the state's clock (see [`entry_hash`]).
fn clock_hash(now: u64) -> u128 {
    hash128((5, 6), b"", &now)
}

/// splitmix64: fixed pseudo-random Zobrist keys for operations, so runs are
/// reproducible.
fn zobrist_keys(n: usize) -> Vec<u128> {
    let mut x = 0x6a09_e667_f3bc_c908u64;
    let mut next = move || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| (u128::from(next()) << 64) | u128::from(next()))
        .collect()
}

/// The hash of one key's `WATCH` version entry (see [`entry_hash`]): part of the
/// state, since `WATCH` answers it and `EXEC` compares with it.
fn version_hash(key: &[u8], version: u64) -> u128 {
    hash128((3, 4), key, &version)
}

/// The hash of a whole state: the XOR of its entries' and version entries' hashes
/// and of its clock's.
fn state_hash(state: &Model) -> u128 {
    let values = state
        .map()
        .iter()
        .fold(clock_hash(state.now()), |h, (k, v)| {
            h ^ entry_hash(k, v, state.deadline(k))
        });
    state
        .versions()
        .entries()
        .fold(values, |h, (k, v)| h ^ version_hash(k, v))
}

/// One key as it was before an operation: value, deadline, `WATCH` version entry.
type Saved = (Vec<u8>, Option<Value>, Option<u64>, Option<u64>);

/// How to take back one linearized operation.
struct Undo {
    /// The call node.
    node: usize,
    /// The previous entries of the keys it wrote or the clock expired (empty
    /// for a read at the current clock).
    old: Vec<Saved>,
    /// The clock before it.
    clock: u64,
    /// XOR of the change it made to the state hash.
    delta: u128,
}

/// At what clock an operation is linearized (see [`Search::clock_for`]).
enum At {
    /// At this clock (moved there first if it is later than the model's).
    Clock(u64),
    /// Without effect: a pending operation whose batch time is already past.
    Skip,
}

/// A configuration on the search stack.
struct Level {
    /// Call nodes of the operations that may be linearized next (calls before the first
    /// return in the list), in the order to try them.
    candidates: Vec<usize>,
    /// How many candidates have been tried.
    tried: usize,
    /// The linearization that led here (`None` for the root).
    via: Option<Undo>,
    /// Sleep set: local ids of candidates known not to lead to a linearization when
    /// linearized first from here.
    sleep: Vec<usize>,
}

/// The deepest dead end seen.
struct Deepest {
    linearized: Vec<usize>,
    state: Model,
    candidates: Vec<usize>,
}

/// Lowe's variant of the Wing & Gong search over one component.
struct Search<'a> {
    history: &'a [Op],
    /// Per history index: its clock window (see [`windows`]).
    windows: &'a [(u64, u64)],
    keys: &'a [Vec<u8>],
    /// Local op id -> index in the history.
    members: &'a [usize],
    initial: Model,
    /// Doubly linked event list: node 0 is the head, 1 the tail, `2 + e` event `e`.
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per node: the local op id and whether it is the call (else the return).
    event: Vec<(usize, bool)>,
    /// Per local op id: the node of its return.
    ret_node: Vec<usize>,
    /// Per local op id: a random 128-bit key; a set of ops is remembered by the XOR of
    /// its members' keys.
    zobrist: Vec<u128>,
    /// Per local op id: its keys as sorted, distinct indices into `keys`.
    op_keys: Vec<Vec<u32>>,
    /// Whether an operation has a batch time: then the model's clock moves (module
    /// docs, **Expiry**); otherwise it stays where the initial state has it.
    clocked: bool,
    /// The batch times of the completed operations not linearized yet, with their
    /// counts: none of them can be linearized after a later one.
    unplaced: BTreeMap<u64, usize>,
}

impl<'a> Search<'a> {
    fn new(
        history: &'a [Op],
        windows: &'a [(u64, u64)],
        component: &'a Component,
        initial: Model,
    ) -> Self {
        let members = &component.members;
        let n = members.len();
        // (time, returns after calls at equal times, local id)
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (local, &index) in members.iter().enumerate() {
            events.push((history[index].invoked, false, local));
            events.push((history[index].completed, true, local));
        }
        events.sort_unstable();
        let nodes = 2 * n + 2;
        let mut next = vec![TAIL; nodes];
        let mut prev = vec![HEAD; nodes];
        let mut event = vec![(usize::MAX, false); nodes];
        let mut ret_node = vec![0; n];
        let mut last = HEAD;
        for (e, &(_, is_return, local)) in events.iter().enumerate() {
            let node = e + 2;
            event[node] = (local, !is_return);
            if is_return {
                ret_node[local] = node;
            }
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        next[last] = TAIL;
        prev[TAIL] = last;
        let mut unplaced = BTreeMap::new();
        for &index in members {
            if let (Some(t), false) = (history[index].time, history[index].is_pending()) {
                *unplaced.entry(t).or_insert(0) += 1;
            }
        }
        Search {
            history,
            windows,
            keys: &component.keys,
            members,
            initial,
            next,
            prev,
            event,
            ret_node,
            zobrist: zobrist_keys(n),
            op_keys: Self::key_ids(history, component),
            clocked: members.iter().any(|&i| history[i].time.is_some()),
            unplaced,
        }
    }

    /// Per member: its keys as sorted, distinct indices into the component's keys.
    fn key_ids(history: &[Op], component: &Component) -> Vec<Vec<u32>> {
        let keys = &component.keys;
        component
            .members
            .iter()
            .map(|&index| {
                let mut ids: Vec<u32> = history[index]
                    .op
                    .keys()
                    .into_iter()
                    .map(|k| {
                        keys.binary_search_by(|probe| probe.as_slice().cmp(k))
                            .expect("component key") as u32
                    })
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            })
            .collect()
    }

    fn op(&self, local: usize) -> &'a Op {
        &self.history[self.members[local]]
    }

    fn window(&self, local: usize) -> (u64, u64) {
        self.windows[self.members[local]]
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        self.prev[n] = x;
    }

    /// The batch time of `local` if it counts in `unplaced`.
    fn unplaced_time(&self, local: usize) -> Option<u64> {
        let op = self.op(local);
        op.time.filter(|_| !op.is_pending())
    }

    fn lift(&mut self, call: usize) {
        let local = self.event[call].0;
        let ret = self.ret_node[local];
        self.unlink(call);
        self.unlink(ret);
        if let Some(t) = self.unplaced_time(local) {
            if let Some(count) = self.unplaced.get_mut(&t) {
                *count -= 1;
                if *count == 0 {
                    self.unplaced.remove(&t);
                }
            }
        }
    }

    fn unlift(&mut self, call: usize) {
        let local = self.event[call].0;
        let ret = self.ret_node[local];
        self.relink(ret);
        self.relink(call);
        if let Some(t) = self.unplaced_time(local) {
            *self.unplaced.entry(t).or_insert(0) += 1;
        }
    }

    /// The earliest batch time of a completed operation not linearized yet.
    fn next_time(&self) -> u64 {
        self.unplaced.keys().next().copied().unwrap_or(u64::MAX)
    }

    /// The candidates of the current configuration, in the order of the midpoints of
    /// their intervals (the best guess of when each took effect), pending operations
    /// (which may as well never take effect) last.
    fn candidates(&self) -> Vec<usize> {
        let mut candidates = Vec::new();
        let mut node = self.next[HEAD];
        while self.event[node].1 {
            candidates.push(node);
            node = self.next[node];
        }
        candidates.sort_by_key(|&node| {
            let op = self.op(self.event[node].0);
            (op.is_pending(), op.invoked / 2 + op.completed / 2, node)
        });
        candidates
    }

    /// A candidate that can be linearized first without loss of generality, if any:
    ///
    /// - a read-only operation whose reply matches `state` at its clock: it changes
    ///   nothing, and everything that must precede it already does;
    /// - an *isolated* operation: one that conflicts with no other unlinearized
    ///   operation invoked before it completes (see [`Search::conflict`]). Only such
    ///   operations can be linearized before it, and they neither change its keys nor
    ///   see its effect nor move the clock, so its reply is the one it gets now (if
    ///   that does not match, no linearization exists from here).
    fn forced(&self, state: &Model, candidates: &[usize]) -> Option<usize> {
        let read = candidates.iter().copied().find(|&node| {
            self.op(self.event[node].0).op.is_read_only() && self.read_matches(state, node)
        });
        read.or_else(|| candidates.iter().copied().find(|&node| self.isolated(node)))
    }

    fn isolated(&self, call: usize) -> bool {
        let local = self.event[call].0;
        let mut node = self.next[HEAD];
        while node != self.ret_node[local] {
            let (other, is_call) = self.event[node];
            if is_call && other != local && self.conflict(local, other) {
                return false;
            }
            node = self.next[node];
        }
        true
    }

    /// Whether the read-only operation at `node` may be linearized in `state` as it
    /// is: at the model's clock, which must be its batch time if it has one, or in
    /// its window if not.
    fn read_matches(&self, state: &Model, node: usize) -> bool {
        let local = self.event[node].0;
        let op = self.op(local);
        if op.is_pending() {
            return true;
        }
        if self.clocked {
            let (now, (lo, hi)) = (state.now(), self.window(local));
            let fits = match op.time {
                Some(t) => t == now,
                None => lo <= now && now <= hi.min(self.next_time()),
            };
            if !fits {
                return false;
            }
        }
        state.read(&op.op).as_ref() == Some(&op.reply)
    }

    /// The clock at which `local` can be linearized in `state`, if any (module docs,
    /// **Expiry**): its batch time if it has one, not before the clock nor after the
    /// earliest batch time of the completed operations still to place (a pending one
    /// already past its time is skipped: it took no effect); for a completed read
    /// without one, the earliest time in its window, not before the clock, at which
    /// its reply matches; else the model's clock.
    fn clock_for(&self, state: &Model, local: usize) -> Option<At> {
        let op = self.op(local);
        let now = state.now();
        if !self.clocked {
            return Some(At::Clock(now));
        }
        match op.time {
            Some(t) if t < now => op.is_pending().then_some(At::Skip),
            Some(t) => (t <= self.next_time()).then_some(At::Clock(t)),
            None if op.is_pending() || !op.op.is_read_only() => Some(At::Clock(now)),
            None => self.read_clock(state, local).map(At::Clock),
        }
    }

    /// The earliest clock in the window of the completed read `local`, from the
    /// model's, at which its reply matches. Only its keys' expiry and (`TTL`, `PTTL`)
    /// the clock itself change its reply, so it tries every millisecond up to just
    /// after the last deadline of its keys.
    fn read_clock(&self, state: &Model, local: usize) -> Option<u64> {
        let op = self.op(local);
        let (lo, hi) = self.window(local);
        let from = state.now().max(lo);
        let to = hi.min(self.next_time());
        if from > to {
            return None;
        }
        let keys = op.op.keys();
        let own = state.restricted_to(keys.iter().copied());
        let last = own.deadlines().last().map_or(from, |(when, _)| when + 1);
        (from..=to.min(last.max(from))).find(|&c| {
            let mut at = own.clone();
            at.advance(c);
            at.read(&op.op).as_ref() == Some(&op.reply)
        })
    }

    /// Linearize the operation at `node` on `state` if its reply matches, returning how
    /// to undo it; otherwise leave `state` alone.
    fn apply(&self, state: &mut Model, node: usize) -> Option<Undo> {
        let op = self.op(self.event[node].0);
        let clock = state.now();
        let unchanged = Undo {
            node,
            old: Vec::new(),
            clock,
            delta: 0,
        };
        if op.op.is_read_only() && self.read_matches(state, node) {
            return Some(unchanged);
        }
        if op.op.is_read_only() && !self.clocked {
            return None;
        }
        let at = match self.clock_for(state, self.event[node].0)? {
            At::Skip => return Some(unchanged),
            At::Clock(at) => at,
        };
        // the keys it may change: those it writes and those the clock expires
        let mut keys: Vec<&[u8]> = if op.op.is_read_only() {
            Vec::new()
        } else {
            op.op.keys()
        };
        keys.extend(
            state
                .deadlines()
                .take_while(|(when, _)| *when < at)
                .map(|(_, k)| k),
        );
        keys.sort_unstable();
        keys.dedup();
        let old: Vec<Saved> = keys
            .iter()
            .map(|&k| {
                let (value, deadline) = (state.value(k).cloned(), state.deadline(k));
                (k.to_vec(), value, deadline, state.versions().entry(k))
            })
            .collect();
        state.advance(at);
        let reply = state.apply(&op.op);
        let mut undo = Undo { old, ..unchanged };
        if !op.is_pending() && reply != op.reply {
            Self::revert(state, undo);
            return None;
        }
        undo.delta = Self::delta(state, &undo);
        Some(undo)
    }

    /// The change of the state hash from before `undo`'s operation to `state`.
    fn delta(state: &Model, undo: &Undo) -> u128 {
        let mut delta = clock_hash(undo.clock) ^ clock_hash(state.now());
        for (key, value, deadline, version) in &undo.old {
            if let Some(v) = value {
                delta ^= entry_hash(key, v, *deadline);
            }
            if let Some(v) = state.value(key) {
                delta ^= entry_hash(key, v, state.deadline(key));
            }
            if let Some(v) = version {
                delta ^= version_hash(key, *v);
            }
            if let Some(v) = state.versions().entry(key) {
                delta ^= version_hash(key, v);
            }
        }
        delta
    }

    fn revert(state: &mut Model, undo: Undo) {
        for (key, value, deadline, version) in undo.old {
            state.versions_mut().set_entry(&key, version);
            state.set_entry(&key, value, deadline);
        }
        state.set_clock(undo.clock);
    }

    /// Whether two operations conflict: they share a key and one of them writes, or,
    /// in a component with batch times, they do not have the same batch time (the
    /// order of two times is fixed, and an operation without one runs at whatever
    /// clock the model has, a read may move it).
    fn conflict(&self, a: usize, b: usize) -> bool {
        if self.clocked {
            let (ta, tb) = (self.op(a).time, self.op(b).time);
            if ta.is_none() || ta != tb {
                return true;
            }
        }
        (!self.op(a).op.is_read_only() || !self.op(b).op.is_read_only())
            && self.op_keys[a]
                .iter()
                .any(|k| self.op_keys[b].binary_search(k).is_ok())
    }

    /// The search. Besides the list and the cache of visited configurations it keeps,
    /// per configuration, a *sleep set* (Godefroid's partial-order reduction): the
    /// candidates already known to be dead ends when linearized first. A child reached
    /// by linearizing `t` inherits the members that do not conflict with `t`: if `z`
    /// and `t` are independent and `z` first is a dead end, so is `t` then `z` (any
    /// linearization continuing `t, z` could swap them). Without it, a wrong early
    /// choice (e.g. which of two concurrent writes to a key comes first) is made again
    /// under every combination of unrelated concurrent choices before it is undone.
    fn run(&mut self, max_steps: u64, record: bool) -> Outcome {
        // Zobrist hash of the set of linearized operations, and hash of the state
        let mut linearized = 0u128;
        let mut state = self.initial.clone();
        let mut state_hash = state_hash(&state);
        let mut cache: HashSet<(u128, u128)> = HashSet::new();
        let mut deepest: Option<Deepest> = None;
        let mut stack = vec![Level {
            candidates: self.candidates(),
            tried: 0,
            via: None,
            sleep: Vec::new(),
        }];
        // whether the top configuration has just been entered
        let mut fresh = true;
        let mut steps = 0u64;
        while self.next[HEAD] != TAIL {
            steps += 1;
            if steps > max_steps {
                return Outcome::OutOfBudget;
            }
            let top = stack.len() - 1;
            let level = &mut stack[top];
            let mut choice = None;
            if std::mem::take(&mut fresh) {
                if let Some(node) = self.forced(&state, &level.candidates) {
                    // This configuration succeeds iff linearizing `node` first does: take
                    // it (if its reply matches and it is not known to fail) and try
                    // nothing else here.
                    level.tried = level.candidates.len();
                    if !level.sleep.contains(&self.event[node].0) {
                        choice = self.apply(&mut state, node);
                    }
                    if choice.is_none() {
                        continue;
                    }
                }
            }
            if choice.is_none() && level.tried < level.candidates.len() {
                let node = level.candidates[level.tried];
                level.tried += 1;
                if level.sleep.contains(&self.event[node].0) {
                    continue;
                }
                choice = self.apply(&mut state, node);
                if choice.is_none() {
                    continue;
                }
            }
            if let Some(undo) = choice {
                let local = self.event[undo.node].0;
                let zobrist = self.zobrist[local];
                if cache.insert((linearized ^ zobrist, state_hash ^ undo.delta)) {
                    linearized ^= zobrist;
                    state_hash ^= undo.delta;
                    self.lift(undo.node);
                    let sleep = level
                        .sleep
                        .iter()
                        .copied()
                        .filter(|&z| !self.conflict(z, local))
                        .collect();
                    stack.push(Level {
                        candidates: self.candidates(),
                        tried: 0,
                        via: Some(undo),
                        sleep,
                    });
                    fresh = true;
                } else {
                    // explored before, without success
                    Self::revert(&mut state, undo);
                    level.sleep.push(local);
                }
                continue;
            }
            // Every candidate failed: dead end.
            if record && deepest.as_ref().is_none_or(|d| top > d.linearized.len()) {
                deepest = Some(Deepest {
                    linearized: stack[1..]
                        .iter()
                        .filter_map(|l| l.via.as_ref())
                        .map(|u| self.event[u.node].0)
                        .collect(),
                    state: state.clone(),
                    candidates: stack[top]
                        .candidates
                        .iter()
                        .map(|&node| self.event[node].0)
                        .collect(),
                });
            }
            let Some(undo) = stack.pop().and_then(|level| level.via) else {
                return Outcome::Stuck(deepest);
            };
            let local = self.event[undo.node].0;
            self.unlift(undo.node);
            linearized ^= self.zobrist[local];
            state_hash ^= undo.delta;
            Self::revert(&mut state, undo);
            stack
                .last_mut()
                .expect("a child has a parent")
                .sleep
                .push(local);
        }
        Outcome::Linearizable
    }

    fn counterexample(&self, deepest: Deepest) -> Violation {
        let entry = |local: usize| (self.members[local], self.op(local).clone());
        let stuck = deepest
            .candidates
            .iter()
            .map(|&local| {
                let (index, op) = entry(local);
                let expected = replay(&mut deepest.state.clone(), &op);
                Stuck {
                    index,
                    op,
                    expected,
                }
            })
            .collect();
        Violation::NotLinearizable(Box::new(Counterexample {
            keys: self.keys.to_vec(),
            ops: self.members.len(),
            linearized: deepest.linearized.iter().map(|&l| entry(l)).collect(),
            clock: deepest.state.now(),
            state: deepest.state.into_map().into_iter().collect(),
            stuck,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }
    fn get(k: &str) -> KvOp {
        KvOp::Get(b(k))
    }
    fn set(k: &str, v: &str) -> KvOp {
        KvOp::Set(b(k), b(v))
    }
    fn incr(k: &str) -> KvOp {
        KvOp::Incr(b(k))
    }
    fn bulk(v: &str) -> KvReply {
        KvReply::Bulk(b(v))
    }
    fn op(client: u64, invoked: u64, completed: u64, op: KvOp, reply: KvReply) -> Op {
        Op::new(client, invoked, completed, op, reply)
    }
    fn not_linearizable(history: &[Op]) -> Counterexample {
        match check(history) {
            Err(Violation::NotLinearizable(c)) => *c,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn empty_and_sequential_histories_pass() {
        assert_eq!(check(&[]), Ok(()));
        let h = vec![
            op(1, 0, 10, get("x"), KvReply::Nil),
            op(1, 20, 30, set("x", "1"), KvReply::Ok),
            op(2, 40, 50, get("x"), bulk("1")),
            op(2, 60, 70, KvOp::Del(vec![b("x")]), KvReply::Int(1)),
            op(1, 80, 90, KvOp::Exists(vec![b("x")]), KvReply::Int(0)),
            op(1, 100, 110, KvOp::Ping, KvReply::Pong),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn stale_read_fails() {
        let h = vec![
            op(1, 0, 10, set("x", "1"), KvReply::Ok),
            op(1, 20, 30, set("x", "2"), KvReply::Ok),
            op(2, 40, 50, get("x"), bulk("1")),
        ];
        let c = not_linearizable(&h);
        assert_eq!(c.keys, vec![b("x")]);
        assert_eq!(
            c.linearized.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(c.state, vec![(b("x"), Value::Str(b("2")))]);
        assert_eq!(c.stuck.len(), 1);
        assert_eq!(c.stuck[0].index, 2);
        assert_eq!(c.stuck[0].expected, bulk("2"));
        let text = Violation::NotLinearizable(Box::new(c)).to_string();
        assert!(text.contains("not linearizable on keys x"), "{text}");
        assert!(
            text.contains("#2 c2 [40, 50] GET x -> \"1\"   (model says \"2\")"),
            "{text}"
        );
    }

    #[test]
    fn lost_update_fails() {
        // two overlapping INCRs cannot both see 0
        let h = vec![
            op(1, 0, 10, incr("n"), KvReply::Int(1)),
            op(2, 5, 15, incr("n"), KvReply::Int(1)),
        ];
        let c = not_linearizable(&h);
        assert_eq!(c.linearized.len(), 1);
        // the same with GET/SET: a write acknowledged before a read started is lost
        let h = vec![
            op(1, 0, 10, set("x", "a"), KvReply::Ok),
            op(2, 5, 15, set("x", "b"), KvReply::Ok),
            op(3, 20, 30, get("x"), bulk("b")),
            op(3, 40, 50, get("x"), bulk("a")),
        ];
        not_linearizable(&h);
    }

    #[test]
    fn non_monotonic_read_fails() {
        // a slow write; once a read sees it, a later read must see it too
        let h = vec![
            op(1, 0, 100, set("x", "1"), KvReply::Ok),
            op(2, 10, 20, get("x"), bulk("1")),
            op(2, 30, 40, get("x"), KvReply::Nil),
        ];
        not_linearizable(&h);
        // reading the old value and then the new one during the write is fine
        let h = vec![
            op(1, 0, 100, set("x", "1"), KvReply::Ok),
            op(2, 10, 20, get("x"), KvReply::Nil),
            op(3, 30, 40, get("x"), bulk("1")),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn overlapping_ops_may_take_effect_in_either_order() {
        for last in ["1", "2"] {
            let h = vec![
                op(1, 0, 10, set("x", "1"), KvReply::Ok),
                op(2, 5, 15, set("x", "2"), KvReply::Ok),
                op(3, 20, 30, get("x"), bulk(last)),
            ];
            assert_eq!(check(&h), Ok(()), "last = {last}");
        }
        // equal end and start times count as overlapping
        let h = vec![
            op(1, 0, 10, set("x", "1"), KvReply::Ok),
            op(2, 10, 20, get("x"), KvReply::Nil),
        ];
        assert_eq!(check(&h), Ok(()));
        let h = vec![
            op(1, 0, 10, set("x", "1"), KvReply::Ok),
            op(2, 11, 20, get("x"), KvReply::Nil),
        ];
        not_linearizable(&h);
    }

    #[test]
    fn pending_write_may_or_may_not_take_effect() {
        for seen in [KvReply::Nil, bulk("1")] {
            let h = vec![
                Op::pending(1, 0, set("x", "1")),
                op(2, 10, 20, get("x"), seen.clone()),
            ];
            assert_eq!(check(&h), Ok(()), "{seen}");
        }
        // but once it is seen it stays
        let h = vec![
            Op::pending(1, 0, set("x", "1")),
            op(2, 10, 20, get("x"), bulk("1")),
            op(2, 30, 40, get("x"), KvReply::Nil),
        ];
        not_linearizable(&h);
        // and it cannot take effect before it is invoked
        let h = vec![
            op(2, 10, 20, get("x"), bulk("1")),
            Op::pending(1, 30, set("x", "1")),
        ];
        not_linearizable(&h);
        // a pending read constrains nothing
        let h = vec![
            Op::pending(1, 0, get("x")),
            op(2, 10, 20, get("x"), KvReply::Nil),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn incr_history() {
        let ok = vec![
            op(1, 0, 50, incr("n"), KvReply::Int(2)),
            op(2, 5, 40, incr("n"), KvReply::Int(3)),
            op(3, 10, 20, incr("n"), KvReply::Int(1)),
            op(1, 60, 70, get("n"), bulk("3")),
            op(2, 60, 80, incr("n"), KvReply::Int(4)),
            Op::pending(3, 90, incr("n")),
            op(1, 100, 110, incr("n"), KvReply::Int(6)),
        ];
        assert_eq!(check(&ok), Ok(()));
        // three increments cannot produce 4
        let mut bad = ok[..3].to_vec();
        bad.push(op(1, 60, 70, get("n"), bulk("4")));
        not_linearizable(&bad);
        // error replies are part of the specification
        let h = vec![
            op(1, 0, 10, set("n", "x"), KvReply::Ok),
            op(
                2,
                20,
                30,
                incr("n"),
                KvReply::Error("ERR value is not an integer or out of range".into()),
            ),
        ];
        assert_eq!(check(&h), Ok(()));
        let h = vec![
            op(1, 0, 10, set("n", "x"), KvReply::Ok),
            op(2, 20, 30, incr("n"), KvReply::Int(1)),
        ];
        not_linearizable(&h);
    }

    fn exec(watch: &[(&str, u64)], cmds: &[&str]) -> KvOp {
        KvOp::Exec {
            watch: watch.iter().map(|(k, v)| (b(k), *v)).collect(),
            cmds: cmds.iter().map(|c| c.split(' ').map(b).collect()).collect(),
        }
    }

    /// `WATCH` versions and `EXEC` outcomes are checked: an `EXEC` that ran
    /// although a write of its watched key certainly came between its `WATCH` and
    /// it is caught, as is a `WATCH` answering a version the key never had; the
    /// same history with the nil reply, or with the write concurrent, passes.
    #[test]
    fn watch_conflicts_are_checked() {
        let history = |write: (u64, u64), exec_reply: KvReply| {
            vec![
                op(1, 0, 10, set("k", "1"), KvReply::Ok),
                op(
                    1,
                    20,
                    30,
                    KvOp::Watch(vec![b("k")]),
                    KvReply::List(vec![KvReply::Int(1)]),
                ),
                op(2, write.0, write.1, set("k", "2"), KvReply::Ok),
                op(
                    1,
                    60,
                    70,
                    exec(&[("k", 1)], &["incr n", "get k"]),
                    exec_reply,
                ),
                op(3, 80, 90, get("n"), bulk("1")),
            ]
        };
        let ran = KvReply::List(vec![KvReply::Int(1), bulk("1")]);
        let c = not_linearizable(&history((40, 50), ran.clone()));
        assert!(c.stuck.iter().any(|s| matches!(s.op.op, KvOp::Exec { .. })));
        // the write may come after the EXEC when they overlap
        assert_eq!(check(&history((40, 65), ran)), Ok(()));
        // aborted: nothing ran, so n stays unset
        let mut h = history((40, 50), KvReply::NilArray);
        h[4] = op(3, 80, 90, get("n"), KvReply::Nil);
        assert_eq!(check(&h), Ok(()));
        // a version the key never had
        let mut h = history((40, 50), KvReply::NilArray);
        h[1].reply = KvReply::List(vec![KvReply::Int(7)]);
        h[4] = op(3, 80, 90, get("n"), KvReply::Nil);
        assert!(check(&h).is_err());
    }

    #[test]
    fn mset_is_atomic_across_keys() {
        // Checked per key this would pass; MSET ties a and b together.
        let h = vec![
            op(
                1,
                0,
                100,
                KvOp::MSet(vec![(b("a"), b("1")), (b("b"), b("1"))]),
                KvReply::Ok,
            ),
            op(2, 10, 20, get("a"), bulk("1")),
            op(2, 30, 40, get("b"), KvReply::Nil),
        ];
        let c = not_linearizable(&h);
        assert_eq!(c.keys, vec![b("a"), b("b")]);
        assert_eq!(c.ops, 3);
    }

    #[test]
    fn mget_must_not_see_a_torn_mset() {
        let mset = op(
            1,
            0,
            100,
            KvOp::MSet(vec![(b("a"), b("1")), (b("b"), b("1"))]),
            KvReply::Ok,
        );
        let mget = |reply: Vec<Option<&str>>| {
            op(
                2,
                10,
                20,
                KvOp::MGet(vec![b("a"), b("b")]),
                KvReply::Array(reply.into_iter().map(|v| v.map(b)).collect()),
            )
        };
        assert_eq!(check(&[mset.clone(), mget(vec![None, None])]), Ok(()));
        assert_eq!(
            check(&[mset.clone(), mget(vec![Some("1"), Some("1")])]),
            Ok(())
        );
        not_linearizable(&[mset.clone(), mget(vec![Some("1"), None])]);
    }

    #[test]
    fn components_chain_through_multi_key_ops() {
        let h = vec![
            op(1, 0, 10, set("a", "1"), KvReply::Ok),
            op(1, 20, 30, KvOp::Del(vec![b("a"), b("b")]), KvReply::Int(1)),
            op(
                2,
                0,
                10,
                KvOp::Exists(vec![b("b"), b("c")]),
                KvReply::Int(0),
            ),
            op(3, 0, 10, set("z", "1"), KvReply::Ok),
            op(3, 40, 50, KvOp::Ping, KvReply::Pong),
        ];
        let comps = components(&h);
        let keys: Vec<_> = comps.iter().map(|c| c.keys.clone()).collect();
        assert_eq!(
            keys,
            vec![vec![b("a"), b("b"), b("c")], vec![b("z")], vec![]]
        );
        assert_eq!(comps[0].members, vec![0, 1, 2]);
        assert_eq!(check(&h), Ok(()));
        let mut bad = h.clone();
        bad[1].reply = KvReply::Int(2);
        let c = not_linearizable(&bad);
        assert_eq!(c.keys, vec![b("a"), b("b"), b("c")]);
    }

    #[test]
    fn keyless_ops_are_checked_alone() {
        let h = vec![op(1, 0, 10, KvOp::Ping, KvReply::Ok)];
        let c = not_linearizable(&h);
        assert_eq!(c.stuck[0].expected, KvReply::Pong);
        let h = vec![op(
            1,
            0,
            10,
            KvOp::MGet(vec![]),
            KvReply::Error("ERR wrong number of arguments for 'mget' command".into()),
        )];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn initial_state_is_honoured() {
        let h = vec![op(1, 0, 10, get("x"), bulk("0"))];
        not_linearizable(&h);
        let options = Options {
            initial: Model::from_map([(b("x"), b("0")), (b("y"), b("9"))].into()),
            ..Options::default()
        };
        assert_eq!(check_with(&h, &options), Ok(()));
    }

    #[test]
    fn malformed_history_is_reported() {
        let h = vec![op(1, 10, 5, get("x"), KvReply::Nil)];
        assert!(matches!(
            check(&h),
            Err(Violation::Malformed { index: 0, .. })
        ));
    }

    #[test]
    fn budget_gives_inconclusive() {
        // many overlapping pending writes and reads that force a deep search
        let mut h: Vec<Op> = (0..12)
            .map(|i| Op::pending(i, 0, set("x", &i.to_string())))
            .collect();
        h.push(op(100, 10, 20, get("x"), bulk("never written")));
        let options = Options {
            max_steps: 50,
            ..Options::default()
        };
        let v = check_with(&h, &options).unwrap_err();
        assert!(v.is_inconclusive(), "{v}");
        assert_eq!(v.keys(), &[b("x")]);
        assert!(v.to_string().contains("inconclusive"));
        // a proven violation elsewhere wins over an inconclusive component
        h.push(op(1, 0, 10, KvOp::Ping, KvReply::Ok));
        assert!(matches!(
            check_with(&h, &options),
            Err(Violation::NotLinearizable(_))
        ));
        // with the default budget the search finishes and proves the violation
        h.pop();
        assert!(matches!(check(&h), Err(Violation::NotLinearizable(_))));
    }

    /// A small deterministic PRNG (xorshift64*), so the tests need no dependencies.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A history produced by a linearizable execution: each client runs ops back to
    /// back; each op takes effect at a random point inside its interval, in the order of
    /// those points; some ops never complete (and may or may not have taken effect).
    fn linearizable_history(
        rng: &mut Rng,
        clients: u64,
        ops_per_client: u64,
        keys: u64,
        multi: bool,
    ) -> Vec<Op> {
        let key = |rng: &mut Rng| format!("k{}", rng.below(keys)).into_bytes();
        let value = |rng: &mut Rng| rng.below(4).to_string().into_bytes();
        // (point, client, invoked, completed, op, pending-with-effect?)
        let mut planned = Vec::new();
        for client in 0..clients {
            let mut t = rng.below(50);
            for i in 0..ops_per_client {
                let invoked = t + rng.below(20);
                let completed = invoked + 1 + rng.below(200);
                let point = invoked + rng.below(completed - invoked + 1);
                let kv = match rng.below(if multi { 9 } else { 5 }) {
                    0 | 1 => KvOp::Get(key(rng)),
                    2 => KvOp::Set(key(rng), value(rng)),
                    3 => KvOp::Incr(key(rng)),
                    4 => KvOp::Del(vec![key(rng)]),
                    5 => KvOp::MGet(vec![key(rng), key(rng)]),
                    6 => KvOp::MSet(vec![(key(rng), value(rng)), (key(rng), value(rng))]),
                    7 => KvOp::Del(vec![key(rng), key(rng)]),
                    _ => KvOp::Exists(vec![key(rng), key(rng)]),
                };
                // the last op of some clients never completes
                let pending = i + 1 == ops_per_client && rng.below(3) == 0;
                let takes_effect = !pending || rng.below(2) == 0;
                planned.push((point, client, invoked, completed, kv, pending, takes_effect));
                t = completed;
            }
        }
        planned.sort_by_key(|p| (p.0, p.1));
        let mut model = Model::new();
        let mut history = Vec::new();
        for (_, client, invoked, completed, kv, pending, takes_effect) in planned {
            if pending {
                if takes_effect {
                    model.apply(&kv);
                }
                history.push(Op::pending(client, invoked, kv));
            } else {
                let reply = model.apply(&kv);
                history.push(Op::new(client, invoked, completed, kv, reply));
            }
        }
        history.sort_by_key(|o| (o.invoked, o.client));
        history
    }

    #[test]
    fn random_linearizable_histories_pass_and_corrupted_reads_fail() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let multi = round % 2 == 1;
            let (clients, per_client, keys) =
                (1 + rng.below(5), 1 + rng.below(12), 1 + rng.below(3));
            let mut h = linearizable_history(&mut rng, clients, per_client, keys, multi);
            assert_eq!(check(&h), Ok(()), "round {round}: {h:#?}");
            // a completed GET that returns a value nobody wrote cannot be linearized
            let gets: Vec<usize> = (0..h.len())
                .filter(|&i| matches!(h[i].op, KvOp::Get(_)) && !h[i].is_pending())
                .collect();
            if !gets.is_empty() {
                let i = gets[rng.below(gets.len() as u64) as usize];
                h[i].reply = bulk("never written");
                match check(&h) {
                    Err(Violation::NotLinearizable(c)) => {
                        assert!(c.keys.contains(&h[i].op.keys()[0].to_vec()))
                    }
                    other => panic!("round {round}: expected a violation, got {other:?}"),
                }
            }
        }
    }

    /// Exhaustive reference: try every order that respects real time and, for
    /// operations with batch times, never goes back in time; pending ops may be
    /// left out (placed last).
    fn brute_force(history: &[Op], remaining: &mut Vec<usize>, state: &Model) -> bool {
        if remaining.iter().all(|&i| history[i].is_pending()) {
            return true;
        }
        for pos in 0..remaining.len() {
            let x = &history[remaining[pos]];
            if remaining.iter().any(|&j| history[j].completed < x.invoked) {
                continue;
            }
            if let Some(t) = x.time {
                let earlier = remaining
                    .iter()
                    .any(|&j| !history[j].is_pending() && history[j].time < x.time);
                if t < state.now() || earlier {
                    continue;
                }
            }
            let mut next = state.clone();
            let reply = replay(&mut next, x);
            if !x.is_pending() && reply != x.reply {
                continue;
            }
            let i = remaining.remove(pos);
            let found = brute_force(history, remaining, &next);
            remaining.insert(pos, i);
            if found {
                return true;
            }
        }
        false
    }

    /// Checks `check` against the brute-force reference on 3,000 small
    /// histories from `make` (a round's history, or `None` to skip it), and
    /// that both outcomes were exercised.
    fn agrees_with_brute_force(seed: u64, mut make: impl FnMut(&mut Rng, u64) -> Option<Vec<Op>>) {
        let mut rng = Rng(seed);
        let (mut passed, mut failed) = (0, 0);
        for round in 0..3000 {
            let Some(h) = make(&mut rng, round) else {
                continue;
            };
            let expected = brute_force(&h, &mut (0..h.len()).collect(), &Model::new());
            let got = check(&h);
            assert_eq!(got.is_ok(), expected, "round {round}: {h:#?} {got:?}");
            if expected {
                passed += 1;
            } else {
                failed += 1;
            }
        }
        assert!(
            passed > 200 && failed > 200,
            "{passed} passed, {failed} failed"
        );
    }

    /// Two random positions of `h`.
    fn two_positions(rng: &mut Rng, h: &[Op]) -> (usize, usize) {
        (
            rng.below(h.len() as u64) as usize,
            rng.below(h.len() as u64) as usize,
        )
    }

    #[test]
    fn agrees_with_brute_force_on_small_mutated_histories() {
        agrees_with_brute_force(7, |rng, round| {
            let (clients, per_client, keys) =
                (1 + rng.below(4), 1 + rng.below(3), 1 + rng.below(3));
            let mut h = linearizable_history(rng, clients, per_client, keys, round % 3 != 0);
            // corrupt some replies by swapping in replies of other ops
            for _ in 0..rng.below(3) {
                let (i, j) = two_positions(rng, &h);
                h[i].reply = h[j].reply.clone();
            }
            Some(h)
        });
    }

    #[test]
    fn large_histories_check_quickly() {
        let mut rng = Rng(42);
        // heavy contention on a few keys
        let h = linearizable_history(&mut rng, 8, 250, 4, true);
        assert_eq!(h.len(), 2000);
        assert_eq!(check(&h), Ok(()));
        // many keys, all tied into one component by multi-key operations: this needs
        // the forced-operation and sleep-set reductions
        let h = linearizable_history(&mut rng, 32, 100, 1000, true);
        let options = Options {
            max_steps: 200_000,
            ..Options::default()
        };
        let largest = components(&h)
            .iter()
            .map(|c| c.members.len())
            .max()
            .unwrap();
        assert!(largest > h.len() * 9 / 10, "{largest} of {}", h.len());
        assert_eq!(check_with(&h, &options), Ok(()));
    }

    /// A command line as the store parses it (`SET k v PX 5`, `PTTL k`, ...).
    fn cmd(line: &str) -> KvOp {
        KvOp::from_args(&line.split(' ').collect::<Vec<_>>()).expect("a valid command")
    }

    /// `SET k v PX 5` at 100 ms: the key is there until 105 and gone from 106 on
    /// (Redis: expired once the clock passes the deadline).
    fn expiring(reads: Vec<Op>) -> Vec<Op> {
        let mut h = vec![op(1, 0, 10, cmd("SET k v PX 5"), KvReply::Ok).at(100)];
        h.extend(reads);
        h
    }

    #[test]
    fn expiry_at_batch_times_passes() {
        let h = expiring(vec![
            op(2, 20, 30, get("k"), bulk("v")).at(103),
            op(2, 40, 50, cmd("PTTL k"), KvReply::Int(0)).at(105),
            op(2, 60, 70, get("k"), KvReply::Nil).at(106),
            op(1, 80, 90, cmd("PTTL k"), KvReply::Int(-2)).at(107),
        ]);
        assert_eq!(check(&h), Ok(()));
        // a TTL moved by PEXPIRE (GT: only later), removed by PERSIST
        let h = expiring(vec![
            op(2, 20, 30, cmd("PEXPIRE k 10 GT"), KvReply::Int(1)).at(103),
            op(2, 40, 50, cmd("PEXPIRE k 1 GT"), KvReply::Int(0)).at(104),
            op(2, 60, 70, get("k"), bulk("v")).at(110),
            op(3, 60, 70, cmd("PERSIST k"), KvReply::Int(1)).at(110),
            op(1, 80, 90, cmd("PTTL k"), KvReply::Int(-1)).at(500),
        ]);
        assert_eq!(check(&h), Ok(()));
    }

    /// A read that sees the value after its key provably expired, or nil before it
    /// could have, is caught, and so is a `PTTL` that does not fit its batch time.
    #[test]
    fn reads_against_the_deadline_are_checked() {
        let c = not_linearizable(&expiring(vec![op(2, 20, 30, get("k"), bulk("v")).at(106)]));
        assert_eq!(c.stuck[0].expected, KvReply::Nil);
        assert_eq!(c.clock, 100);
        let text = Violation::NotLinearizable(Box::new(c)).to_string();
        assert!(text.contains("at 100 ms"), "{text}");
        assert!(text.contains("@106ms GET k"), "{text}");
        let c = not_linearizable(&expiring(vec![
            op(2, 20, 30, get("k"), KvReply::Nil).at(105)
        ]));
        assert_eq!(c.stuck[0].expected, bulk("v"));
        not_linearizable(&expiring(vec![op(
            2,
            20,
            30,
            cmd("PTTL k"),
            KvReply::Int(3),
        )
        .at(103)]));
        // the same replies at the right times pass
        assert_eq!(
            check(&expiring(vec![op(
                2,
                20,
                30,
                cmd("PTTL k"),
                KvReply::Int(2)
            )
            .at(103)])),
            Ok(())
        );
        // a replica that ran a read at the wrong time (106 for 103) is caught
        let mut h = expiring(vec![
            op(2, 20, 30, get("k"), bulk("v")).at(103),
            op(2, 40, 50, get("k"), bulk("v")).at(103),
        ]);
        assert_eq!(check(&h), Ok(()));
        h[2].reply = Model::new().apply(&get("k"));
        not_linearizable(&h);
    }

    /// Operations run in batch-time order even when they overlap in real time; a
    /// later batch time for an operation that completed before another was invoked
    /// is reported as such.
    #[test]
    fn batch_times_order_operations() {
        // overlapping writes: the later batch time wins whatever their midpoints
        let h = vec![
            op(1, 0, 100, set("x", "1"), KvReply::Ok).at(7),
            op(2, 10, 20, set("x", "2"), KvReply::Ok).at(5),
            op(3, 200, 210, get("x"), bulk("1")).at(9),
        ];
        assert_eq!(check(&h), Ok(()));
        let mut bad = h.clone();
        bad[2].reply = bulk("2");
        not_linearizable(&bad);
        // time going backwards in real time
        let h = vec![
            op(1, 0, 10, set("a", "1"), KvReply::Ok).at(8),
            op(2, 20, 30, get("b"), KvReply::Nil).at(7),
        ];
        match check(&h) {
            Err(
                v @ Violation::TimeReversed {
                    earlier: 0,
                    later: 1,
                    ..
                },
            ) => {
                assert!(v.to_string().contains("batch time goes backwards"), "{v}")
            }
            other => panic!("expected TimeReversed, got {other:?}"),
        }
    }

    /// A read without a batch time (the unordered path) sees the state at a clock
    /// between the batch times around it in real time.
    #[test]
    fn reads_without_a_time_fit_their_window() {
        let later = |reply: KvReply, at: u64| {
            expiring(vec![
                op(2, 20, 30, cmd("PTTL k"), reply),
                op(3, 40, 50, set("z", "1"), KvReply::Ok).at(at),
            ])
        };
        // anywhere from 100 to 110: PTTL 5 (at 100) .. -2 (after 105)
        for reply in [5, 2, 0, -2] {
            assert_eq!(check(&later(KvReply::Int(reply), 110)), Ok(()), "{reply}");
        }
        not_linearizable(&later(KvReply::Int(6), 110));
        // only up to 104: the key cannot have expired yet
        not_linearizable(&later(KvReply::Int(-2), 104));
        assert_eq!(check(&later(KvReply::Int(1), 104)), Ok(()));
        // and once a read saw it expire, a timed read at the key's batch time cannot
        // see it again
        let h = expiring(vec![
            op(2, 20, 30, get("k"), KvReply::Nil),
            op(2, 40, 50, get("k"), bulk("v")).at(105),
        ]);
        assert!(check(&h).is_err());
    }

    /// A pending operation with a batch time took effect then or never.
    #[test]
    fn pending_operations_with_a_time() {
        let set = Op::pending(1, 0, cmd("SET k v PX 5")).at(100);
        for (reply, at) in [(bulk("v"), 103), (KvReply::Nil, 103), (KvReply::Nil, 106)] {
            let h = vec![set.clone(), op(2, 20, 30, get("k"), reply.clone()).at(at)];
            assert_eq!(check(&h), Ok(()), "{reply} at {at}");
        }
        not_linearizable(&[set, op(2, 20, 30, get("k"), bulk("v")).at(106)]);
    }

    /// A history of a linearizable execution with expiry: as
    /// [`linearizable_history`], each operation running at the batch time
    /// `point / 20` (reads without a time, on the unordered path, at that clock too),
    /// on keys whose TTLs of 1 to 8 expire within a few operations.
    fn expiring_history(rng: &mut Rng, clients: u64, per_client: u64, keys: u64) -> Vec<Op> {
        let mut planned = Vec::new();
        for client in 0..clients {
            let mut t = rng.below(50);
            for i in 0..per_client {
                let invoked = t + rng.below(20);
                let completed = invoked + 1 + rng.below(200);
                let point = invoked + rng.below(completed - invoked + 1);
                let k = format!("e{}", rng.below(keys));
                let n = 1 + rng.below(8);
                let flag = ["", " NX", " XX", " GT", " LT"][rng.below(5) as usize];
                let line = match rng.below(10) {
                    0 | 1 => format!("SET {k} v{client}.{i} PX {n}"),
                    2 => format!("SET {k} w{client}.{i}"),
                    3 => format!("PEXPIRE {k} {n}{flag}"),
                    4 => format!("PERSIST {k}"),
                    5 => format!("GETEX {k} PX {n}"),
                    6 | 7 => format!("PTTL {k}"),
                    _ => format!("GET {k}"),
                };
                let kv = cmd(&line);
                let timed = !kv.is_read_only() || rng.below(2) == 0;
                let pending = i + 1 == per_client && rng.below(3) == 0;
                let effect = !pending || rng.below(2) == 0;
                planned.push((
                    point, client, invoked, completed, kv, timed, pending, effect,
                ));
                t = completed;
            }
        }
        planned.sort_by_key(|p| (p.0, p.1));
        let mut model = Model::new();
        let mut history = Vec::new();
        for (point, client, invoked, completed, kv, timed, pending, effect) in planned {
            let time = point / 20;
            model.advance(time);
            let h = if pending {
                if effect {
                    model.apply(&kv);
                }
                Op::pending(client, invoked, kv)
            } else {
                let reply = model.apply(&kv);
                Op::new(client, invoked, completed, kv, reply)
            };
            history.push(if timed { h.at(time) } else { h });
        }
        history.sort_by_key(|o| (o.invoked, o.client));
        history
    }

    #[test]
    fn random_expiring_histories_pass() {
        let mut rng = Rng(0x005e_ed0e);
        let (mut expired, mut gone) = (0, 0);
        for round in 0..300 {
            let (clients, per_client, keys) =
                (1 + rng.below(5), 1 + rng.below(12), 1 + rng.below(3));
            let h = expiring_history(&mut rng, clients, per_client, keys);
            assert_eq!(check(&h), Ok(()), "round {round}: {h:#?}");
            for o in h.iter().filter(|o| !o.is_pending()) {
                match (o.op.name().to_ascii_lowercase().as_str(), &o.reply) {
                    ("pttl", KvReply::Int(-2)) => gone += 1,
                    ("get", KvReply::Nil) => expired += 1,
                    _ => {}
                }
            }
        }
        // keys really expired under the reads
        assert!(
            expired > 100 && gone > 100,
            "{expired} nil GETs, {gone} PTTL -2"
        );
    }

    #[test]
    fn agrees_with_brute_force_on_small_expiring_histories() {
        agrees_with_brute_force(11, |rng, _| {
            let (clients, per_client, keys) =
                (1 + rng.below(4), 1 + rng.below(3), 1 + rng.below(2));
            let mut h = expiring_history(rng, clients, per_client, keys);
            for o in &mut h {
                o.time = o.time.or(Some(o.invoked / 20));
            }
            // corrupt some replies, or move an operation to another batch time
            for _ in 0..rng.below(3) {
                let (i, j) = two_positions(rng, &h);
                if rng.below(2) == 0 {
                    h[i].reply = h[j].reply.clone();
                } else {
                    h[i].time = h[j].time;
                }
            }
            // the clock rule alone decides these; the reference knows no time
            let reversed = matches!(check(&h), Err(Violation::TimeReversed { .. }));
            (!reversed).then_some(h)
        });
    }

    #[test]
    fn display_and_serde() {
        let pending = Op::pending(3, 7, set("k", "v"));
        assert_eq!(pending.to_string(), "c3 [7, pending] SET k v");
        assert_eq!(
            op(1, 2, 3, get("k"), KvReply::Nil).to_string(),
            "c1 [2, 3] GET k -> (nil)"
        );
        fn assert_serde<T: Serialize + for<'de> Deserialize<'de>>() {}
        assert_serde::<Op>();
        assert_serde::<Violation>();
    }
}
