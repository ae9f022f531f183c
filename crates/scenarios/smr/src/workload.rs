//! The KV workload of `sim smr`: closed-loop clients sharing a request quota,
//! a few hot keys so operations conflict, INCR counters so a double execution
//! is visible, multi-key MSET/MGET, and a fraction of reads on the unordered
//! read-only path. With transactions on ([`Workload::with_transactions`]), a
//! client sometimes sends `WATCH` of one or two hot keys and then, as its next
//! operation, an `EXEC` watching them at the versions the `WATCH` answered
//! (an `INCR`, a `SET` and a `GET` of hot keys, or an `MSET`), and sometimes an
//! `EXEC` without `WATCH`: conflicting writes of other clients make some abort.
//! With expiry on ([`Workload::with_expiry`]), half the operations go to a
//! few keys of their own (`e0`..`e7`) with TTLs of 1 to 5 ms, about the
//! simulated request latency, so keys expire between operations and some
//! before they are read: `SET` with `PX` (or `EX`, or none), `PEXPIRE` and
//! `EXPIRE` with `NX`/`XX`/`GT`/`LT`, `PERSIST`, `GETEX`, and the reads
//! `PTTL`, `TTL`, `GET`, `EXISTS`. The audit gives each operation the batch
//! time it ran at ([`Ran`], `crate::batch_times`), so the checker replays
//! expiry at the replicas' times.

use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_core::protocol::Time;
use byzscale_core::ClientId;
use byzscale_sim::check::linearizability::Op;
use byzscale_sim::closed_loop::ClosedLoop;
use byzscale_smr::client;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// The next operation of `client` (its `n`-th) and whether it goes read-only.
fn next_op(rng: &mut ChaCha8Rng, client: usize, n: u64, read_ratio: f64) -> (KvOp, bool) {
    let key = |rng: &mut ChaCha8Rng| format!("k{}", rng.gen_range(0..6)).into_bytes();
    let val = format!("c{client}-{n}").into_bytes();
    let op = match rng.gen_range(0..100) {
        0..=29 => KvOp::Set(key(rng), val),
        30..=54 => KvOp::Get(key(rng)),
        55..=69 => KvOp::Incr(format!("n{}", rng.gen_range(0..3)).into_bytes()),
        70..=79 => {
            let a = key(rng);
            let mut b = key(rng);
            if b == a {
                b = b"k9".to_vec();
            }
            KvOp::MSet(vec![(a, val.clone()), (b, val)])
        }
        80..=87 => KvOp::MGet(vec![key(rng), key(rng)]),
        88..=93 => KvOp::Del(vec![key(rng)]),
        _ => KvOp::Exists(vec![key(rng)]),
    };
    let ro = op.is_read_only() && rng.gen_bool(read_ratio);
    (op, ro)
}

/// The next expiring-key operation of `client` (its `n`-th): see the module
/// docs.
fn next_expiry_op(rng: &mut ChaCha8Rng, client: usize, n: u64) -> KvOp {
    let key = format!("e{}", rng.gen_range(0..8));
    expiry_op(rng, &key, client, n)
}

/// An operation of `client` (its `n`-th) on the expiring key `key`: a `SET`
/// with or without a TTL of 1 to 5 ms, a TTL moved or dropped, or a read of
/// the key or its TTL (the module docs). Also `sim byzcast --expiry`'s, with
/// keys of one shard.
pub fn expiry_op(rng: &mut ChaCha8Rng, key: &str, client: usize, n: u64) -> KvOp {
    let ms = rng.gen_range(1..=5);
    let flag = ["", " NX", " XX", " GT", " LT"][rng.gen_range(0..5)];
    let line = match rng.gen_range(0..100) {
        0..=19 => format!("SET {key} x{client}-{n} PX {ms}"),
        20..=21 => format!("SET {key} x{client}-{n}"),
        22 => format!("SET {key} x{client}-{n} EX 1"),
        23..=32 => format!("PEXPIRE {key} {ms}{flag}"),
        33 => format!("EXPIRE {key} 1{flag}"),
        34..=36 => format!("PERSIST {key}"),
        37..=56 => format!("PTTL {key}"),
        57..=60 => format!("TTL {key}"),
        61..=63 => format!("GETEX {key} PX {ms}"),
        64 => format!("GETEX {key} PERSIST"),
        65 => format!("GETEX {key}"),
        66..=91 => format!("GET {key}"),
        _ => format!("EXISTS {key}"),
    };
    KvOp::from_args(&line.split(' ').collect::<Vec<_>>()).expect("a valid command")
}

/// The next transaction operation of `client`: the `EXEC` of its last `WATCH`
/// (`watched`), else sometimes a `WATCH` or an `EXEC` without one; `None`: none
/// this time.
fn next_transaction(
    rng: &mut ChaCha8Rng,
    client: usize,
    n: u64,
    watched: Option<Vec<(Vec<u8>, u64)>>,
) -> Option<KvOp> {
    let key = |rng: &mut ChaCha8Rng| format!("k{}", rng.gen_range(0..6));
    let roll = rng.gen_range(0..100);
    if watched.is_none() && roll >= 12 {
        return None;
    }
    if watched.is_none() && roll < 6 {
        let mut keys = vec![key(rng).into_bytes()];
        if rng.gen_bool(0.5) {
            keys.push(format!("n{}", rng.gen_range(0..3)).into_bytes());
        }
        return Some(KvOp::Watch(keys));
    }
    let line =
        |w: String| -> Vec<Vec<u8>> { w.split(' ').map(|x| x.as_bytes().to_vec()).collect() };
    let val = format!("t{client}-{n}");
    let cmds = if rng.gen_bool(0.3) {
        vec![line(format!("mset {} {val} {} {val}", key(rng), key(rng)))]
    } else {
        vec![
            line(format!("incr n{}", rng.gen_range(0..3))),
            line(format!("set {} {val}", key(rng))),
            line(format!("get {}", key(rng))),
        ]
    };
    Some(KvOp::Exec {
        watch: watched.unwrap_or_default(),
        cmds,
    })
}

/// The client id of client position `c`.
pub fn client_id(c: usize) -> ClientId {
    ClientId(c as u64 + 1)
}

/// Where an operation of the history ran, as its client learned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ran {
    /// Ordered, executed in the batch of this slot.
    Slot(u64),
    /// Answered on the unordered read-only path.
    Unordered,
    /// Never completed: failed at `until` (its outcome unknown), or still in
    /// flight at the end (`Time::MAX`).
    Pending { until: Time },
}

/// What the clients were asked to do and what they saw.
pub struct Workload {
    read_ratio: f64,
    /// (client, submission id) → (op, invoked)
    clients: ClosedLoop<(KvOp, Time)>,
    rng: ChaCha8Rng,
    submitted: BTreeMap<ClientId, BTreeSet<Vec<u8>>>,
    /// Completed operations, for the linearizability check.
    pub history: Vec<Op>,
    /// Where each operation of `history` ran.
    pub ran: Vec<Ran>,
    pub completed: u64,
    /// Completed through the ordered path.
    pub committed: u64,
    /// Failed with their outcome unknown ([`Workload::expire`]); not in
    /// `completed`.
    pub expired: u64,
    pub latencies: Vec<Time>,
    /// Whether transactions are mixed in.
    transactions: bool,
    /// Whether operations on expiring keys are mixed in.
    expiry: bool,
    /// Per client: the keys and versions its last `WATCH` answered, for its next
    /// operation (an `EXEC`).
    watched: BTreeMap<usize, Vec<(Vec<u8>, u64)>>,
}

/// A completed operation.
pub struct Completed {
    pub op: KvOp,
    pub reply: KvReply,
}

impl Workload {
    /// `requests` shared by `clients` clients.
    pub fn new(clients: usize, requests: u64, read_ratio: f64, seed: u64) -> Self {
        Workload {
            read_ratio,
            clients: ClosedLoop::shared(clients, requests),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0a11_0a11),
            submitted: BTreeMap::new(),
            history: Vec::new(),
            ran: Vec::new(),
            completed: 0,
            committed: 0,
            expired: 0,
            latencies: Vec::new(),
            transactions: false,
            expiry: false,
            watched: BTreeMap::new(),
        }
    }

    /// Mix `WATCH` and `EXEC` into the operations (see the module docs).
    pub fn with_transactions(mut self, on: bool) -> Self {
        self.transactions = on;
        self
    }

    /// Mix operations on expiring keys into the workload (see the module docs).
    pub fn with_expiry(mut self, on: bool) -> Self {
        self.expiry = on;
        self
    }

    /// Client `c`'s next submission at `now`, if its quota allows.
    pub fn next(&mut self, c: usize, now: Time) -> Option<client::Input> {
        let id = self.clients.issue(c)?;
        let watched = self.watched.remove(&c);
        let transaction = if self.transactions {
            next_transaction(&mut self.rng, c, id, watched)
        } else {
            None
        };
        let (op, read_only) = match transaction {
            Some(op) => {
                let ro = op.is_read_only() && self.rng.gen_bool(self.read_ratio);
                (op, ro)
            }
            None if self.expiry && self.rng.gen_bool(0.5) => {
                let op = next_expiry_op(&mut self.rng, c, id);
                let ro = op.is_read_only() && self.rng.gen_bool(self.read_ratio);
                (op, ro)
            }
            None => next_op(&mut self.rng, c, id, self.read_ratio),
        };
        let bytes = op.encode();
        self.submitted
            .entry(client_id(c))
            .or_default()
            .insert(bytes.clone());
        self.clients.start(c, id, (op, now));
        Some(client::Input::Submit {
            op: bytes,
            read_only,
        })
    }

    /// Client `c` completed submission `id`, executed at `slot` if it was
    /// ordered; `None` if it was not in flight (completed twice).
    pub fn complete(
        &mut self,
        c: usize,
        id: u64,
        (invoked, at): (Time, Time),
        result: &[u8],
        slot: Option<u64>,
    ) -> Option<Completed> {
        let ordered = slot.is_some();
        let (op, _) = self.clients.complete(c, id)?;
        let reply =
            KvReply::decode(result).unwrap_or_else(|e| KvReply::Error(format!("undecodable: {e}")));
        self.history.push(Op::new(
            c as u64 + 1,
            invoked,
            at,
            op.clone(),
            reply.clone(),
        ));
        self.ran.push(slot.map_or(Ran::Unordered, Ran::Slot));
        self.latencies.push(at.saturating_sub(invoked));
        if let Some(w) = byzscale_apps::kv::multi::watched(&op, &reply) {
            self.watched.insert(c, w);
        }
        self.completed += 1;
        if ordered {
            self.committed += 1;
        }
        Some(Completed { op, reply })
    }

    /// Client `c`'s submission `id` failed with its outcome unknown (its
    /// session expired): in the history as an operation that may or may
    /// not have taken effect, like one still in flight at the end. `false`
    /// if it was not in flight.
    pub fn expire(&mut self, c: usize, id: u64, at: Time) -> bool {
        let Some((op, invoked)) = self.clients.complete(c, id) else {
            return false;
        };
        self.history.push(Op::pending(c as u64 + 1, invoked, op));
        self.ran.push(Ran::Pending { until: at });
        self.expired += 1;
        true
    }

    /// Whether `client` submitted `op`.
    pub fn submitted(&self, client: ClientId, op: &[u8]) -> bool {
        self.submitted.get(&client).is_some_and(|s| s.contains(op))
    }

    pub fn done(&self) -> bool {
        self.clients.done()
    }

    /// Requests not completed: in flight or not yet issued.
    pub fn pending(&self) -> u64 {
        self.clients.pending()
    }

    /// The history with every operation still in flight as pending, and
    /// where each ran.
    pub fn take_history(&mut self) -> (Vec<Op>, Vec<Ran>) {
        let mut h = std::mem::take(&mut self.history);
        let mut ran = std::mem::take(&mut self.ran);
        for ((c, _), (op, invoked)) in self.clients.in_flight() {
            h.push(Op::pending(*c as u64 + 1, *invoked, op.clone()));
            ran.push(Ran::Pending { until: Time::MAX });
        }
        (h, ran)
    }
}
