//! The KV workload of `sim smr`: closed-loop clients sharing a request quota,
//! a few hot keys so operations conflict, INCR counters so a double execution
//! is visible, multi-key MSET/MGET, and a fraction of reads on the unordered
//! read-only path. With transactions on ([`Workload::with_transactions`]), a
//! client sometimes sends `WATCH` of one or two hot keys and then, as its next
//! operation, an `EXEC` watching them at the versions the `WATCH` answered
//! (an `INCR`, a `SET` and a `GET` of hot keys, or an `MSET`), and sometimes an
//! `EXEC` without `WATCH`: conflicting writes of other clients make some abort.

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

/// What the clients were asked to do and what they saw.
pub struct Workload {
    read_ratio: f64,
    /// (client, submission id) → (op, invoked)
    clients: ClosedLoop<(KvOp, Time)>,
    rng: ChaCha8Rng,
    submitted: BTreeMap<ClientId, BTreeSet<Vec<u8>>>,
    /// Completed operations, for the linearizability check.
    pub history: Vec<Op>,
    pub completed: u64,
    /// Completed through the ordered path.
    pub committed: u64,
    /// Failed with their outcome unknown ([`Workload::expire`]); not in
    /// `completed`.
    pub expired: u64,
    pub latencies: Vec<Time>,
    /// Whether transactions are mixed in.
    transactions: bool,
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
            completed: 0,
            committed: 0,
            expired: 0,
            latencies: Vec::new(),
            transactions: false,
            watched: BTreeMap::new(),
        }
    }

    /// Mix `WATCH` and `EXEC` into the operations (see the module docs).
    pub fn with_transactions(mut self, on: bool) -> Self {
        self.transactions = on;
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

    /// Client `c` completed submission `id`; `None` if it was not in flight
    /// (completed twice).
    pub fn complete(
        &mut self,
        c: usize,
        id: u64,
        invoked: Time,
        at: Time,
        result: &[u8],
        ordered: bool,
    ) -> Option<Completed> {
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
    pub fn expire(&mut self, c: usize, id: u64) -> bool {
        let Some((op, invoked)) = self.clients.complete(c, id) else {
            return false;
        };
        self.history.push(Op::pending(c as u64 + 1, invoked, op));
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

    /// The history with every operation still in flight as pending.
    pub fn take_history(&mut self) -> Vec<Op> {
        let mut h = std::mem::take(&mut self.history);
        for ((c, _), (op, invoked)) in self.clients.in_flight() {
            h.push(Op::pending(*c as u64 + 1, *invoked, op.clone()));
        }
        h
    }
}
