//! The KV workload of `sim byzcast`: each client multicasts one operation at
//! a time, to its home group or, with probability `global_ratio`, to two
//! groups (uniform pairs or seed 000's skewed pairs), with keys chosen so that
//! an operation's shards are exactly its destinations. With expiry on
//! (`--expiry`), half the single-group operations go to a few expiring keys
//! of their group (`sim smr --expiry`'s operations,
//! [`byzscale_scenario_smr::workload::expiry_op`]), and the audit gives each
//! operation the batch time its group ran it at.

use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_byzcast::kv as shard;
use byzscale_byzcast::{client, MsgId, Results};
use byzscale_core::crypto::{digest, Digest};
use byzscale_core::protocol::Time;
use byzscale_core::{ClientId, GroupId};
use byzscale_sim::check::linearizability::Op;
use byzscale_sim::closed_loop::ClosedLoop;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Which pairs of groups global messages go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Uniform,
    Skewed,
    Local,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Uniform => "uniform",
            WorkloadKind::Skewed => "skewed",
            WorkloadKind::Local => "local",
        }
    }
    /// Every name `--workload` takes.
    pub const NAMES: [&'static str; 3] = ["uniform", "skewed", "local"];
    pub fn from_name(name: &str) -> Option<Self> {
        [
            WorkloadKind::Uniform,
            WorkloadKind::Skewed,
            WorkloadKind::Local,
        ]
        .into_iter()
        .find(|w| w.name() == name)
    }
}

/// Keys per shard: a few hot keys, INCR counters and keys with TTLs in every
/// target group.
struct KeyPool {
    keys: Vec<Vec<Vec<u8>>>,
    counters: Vec<Vec<Vec<u8>>>,
    expiring: Vec<Vec<Vec<u8>>>,
}

const HOT: usize = 4;

impl KeyPool {
    fn new(targets: usize) -> Self {
        let fill = |prefix: &str, want: usize| {
            let mut out = vec![Vec::new(); targets];
            let mut i = 0;
            while out.iter().any(|v: &Vec<Vec<u8>>| v.len() < want) {
                let k = format!("{prefix}{i}").into_bytes();
                let g = shard::shard_of(&k, targets).0 as usize;
                if out[g].len() < want {
                    out[g].push(k);
                }
                i += 1;
            }
            out
        };
        KeyPool {
            keys: fill("k", HOT),
            counters: fill("n", 2),
            expiring: fill("e", HOT),
        }
    }
    fn key(&self, g: GroupId, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let v = &self.keys[g.0 as usize];
        v[rng.gen_range(0..v.len())].clone()
    }
}

fn next_op(pool: &KeyPool, rng: &mut ChaCha8Rng, dst: &[GroupId], val: Vec<u8>) -> KvOp {
    if dst.len() == 1 {
        let g = dst[0];
        match rng.gen_range(0..100) {
            0..=29 => KvOp::Set(pool.key(g, rng), val),
            30..=54 => KvOp::Get(pool.key(g, rng)),
            55..=69 => {
                let c = &pool.counters[g.0 as usize];
                KvOp::Incr(c[rng.gen_range(0..c.len())].clone())
            }
            70..=82 => KvOp::MSet(vec![
                (pool.key(g, rng), val.clone()),
                (pool.key(g, rng), val),
            ]),
            83..=94 => KvOp::MGet(vec![pool.key(g, rng), pool.key(g, rng)]),
            _ => KvOp::Del(vec![pool.key(g, rng)]),
        }
    } else {
        // one key in every destination, so the destination set is exactly `dst`
        let keys: Vec<Vec<u8>> = dst.iter().map(|g| pool.key(*g, rng)).collect();
        match rng.gen_range(0..100) {
            0..=49 => KvOp::MSet(keys.into_iter().map(|k| (k, val.clone())).collect()),
            50..=89 => KvOp::MGet(keys),
            _ => KvOp::Exists(keys),
        }
    }
}

/// A transaction operation (with transactions on): the `EXEC` of the client's
/// last `WATCH` (`watched`, keys of `dst`'s one group), else sometimes a `WATCH`
/// of a hot key (one group) or an `EXEC` without one over exactly `dst` (one key
/// of every destination in an `MSET`, then an `INCR` and a `GET` in the first);
/// `None`: none this time.
fn next_transaction(
    pool: &KeyPool,
    rng: &mut ChaCha8Rng,
    dst: &[GroupId],
    val: &str,
    watched: Option<Vec<(Vec<u8>, u64)>>,
) -> Option<KvOp> {
    let roll = rng.gen_range(0..100);
    if watched.is_none() && roll >= 16 {
        return None;
    }
    let g = dst[0];
    let key =
        |rng: &mut ChaCha8Rng, g: GroupId| String::from_utf8_lossy(&pool.key(g, rng)).into_owned();
    if watched.is_none() && roll < 8 && dst.len() == 1 {
        return Some(KvOp::Watch(vec![pool.key(g, rng)]));
    }
    let counters = &pool.counters[g.0 as usize];
    let counter = String::from_utf8_lossy(&counters[rng.gen_range(0..counters.len())]).into_owned();
    let mut mset = vec!["mset".to_string()];
    for d in dst {
        mset.extend([key(rng, *d), val.to_string()]);
    }
    let cmds = [
        mset.join(" "),
        format!("incr {counter}"),
        format!("get {}", key(rng, g)),
    ]
    .iter()
    .map(|c| c.split(' ').map(|w| w.as_bytes().to_vec()).collect())
    .collect();
    Some(KvOp::Exec {
        watch: watched.unwrap_or_default(),
        cmds,
    })
}

struct Inflight {
    op: KvOp,
    dst: Vec<GroupId>,
    invoked: Time,
}

/// A multicast that completed at its client.
pub struct Completed {
    pub op: KvOp,
    pub dst: Vec<GroupId>,
    pub invoked: Time,
    /// The merged reply of its destinations.
    pub reply: KvReply,
    /// Why the client gave up on it, if it did.
    pub failed: Option<String>,
}

/// What the clients were asked to do and what they saw.
pub struct Workload {
    groups: usize,
    kind: WorkloadKind,
    global_ratio: f64,
    pool: KeyPool,
    clients: ClosedLoop<Inflight>,
    rng: ChaCha8Rng,
    /// Every multicast: destinations and payload digest.
    submitted: BTreeMap<MsgId, (Vec<GroupId>, Digest)>,
    /// Single-group operations only: the history for linearizability, each
    /// with its multicast's id.
    history: Option<Vec<(MsgId, Op)>>,
    /// Completed multicasts: the operation and the merged reply.
    /// (`None`: failed with its outcome unknown.)
    pub replies: Option<BTreeMap<MsgId, (KvOp, Option<KvReply>)>>,
    /// Multicasts failed with their outcome unknown ([`Workload::expire`]).
    pub expired: u64,
    unknown: BTreeSet<MsgId>,
    any_global: bool,
    pub completed_local: u64,
    pub completed_global: u64,
    /// Completions invoked after the warm-up.
    pub window_local: u64,
    pub window_global: u64,
    warmup: Time,
    pub latencies_local: Vec<Time>,
    pub latencies_global: Vec<Time>,
    /// Whether transactions are mixed in.
    transactions: bool,
    /// Whether expiring-key operations are mixed in.
    expiry: bool,
    /// Per client: the keys and versions its last `WATCH` answered, for its next
    /// operation (an `EXEC` to their group).
    watched: BTreeMap<usize, Vec<(Vec<u8>, u64)>>,
}

/// The id of the `n`-th multicast of client position `c`.
pub fn msg_id(c: usize, n: u64) -> MsgId {
    MsgId {
        client: ClientId(c as u64 + 1),
        n,
    }
}

impl Workload {
    /// `quota[c]` multicasts for client `c` (`None`: unbounded, a
    /// fixed-duration run that counts completions after `warmup`).
    pub fn new(
        cfg: &crate::Config,
        clients: usize,
        seed: u64,
        fixed_duration: Option<Time>,
    ) -> Self {
        let throughput = fixed_duration.is_some();
        Workload {
            groups: cfg.groups,
            kind: cfg.workload,
            global_ratio: cfg.global_ratio,
            pool: KeyPool::new(cfg.groups),
            clients: if throughput {
                ClosedLoop::unbounded(clients)
            } else {
                ClosedLoop::shared(clients, cfg.requests)
            },
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0a11_0a11),
            submitted: BTreeMap::new(),
            history: (!throughput && cfg.requests <= 5_000).then(Vec::new),
            replies: (!throughput).then(BTreeMap::new),
            any_global: false,
            expired: 0,
            unknown: BTreeSet::new(),
            completed_local: 0,
            completed_global: 0,
            window_local: 0,
            window_global: 0,
            warmup: fixed_duration.map(|_| cfg.warmup()).unwrap_or(0),
            latencies_local: Vec::new(),
            latencies_global: Vec::new(),
            transactions: cfg.transactions,
            expiry: cfg.expiry,
            watched: BTreeMap::new(),
        }
    }

    fn destinations(&mut self, c: usize) -> Vec<GroupId> {
        let g = self.groups;
        let home = GroupId((c % g) as u32);
        let global =
            g > 1 && self.kind != WorkloadKind::Local && self.rng.gen_bool(self.global_ratio);
        if !global {
            return vec![home];
        }
        match self.kind {
            WorkloadKind::Uniform | WorkloadKind::Local => {
                let a = self.rng.gen_range(0..g);
                let mut b = self.rng.gen_range(0..g - 1);
                if b >= a {
                    b += 1;
                }
                let mut d = vec![GroupId(a as u32), GroupId(b as u32)];
                d.sort();
                d
            }
            WorkloadKind::Skewed => {
                let pairs = g.div_ceil(2);
                let p = self.rng.gen_range(0..pairs);
                let a = 2 * p;
                let b = if a + 1 < g { a + 1 } else { 0 };
                let mut d = vec![GroupId(a as u32), GroupId(b as u32)];
                d.sort();
                d.dedup();
                d
            }
        }
    }

    /// Client `c`'s next multicast at `now`, if its quota allows.
    pub fn next(&mut self, c: usize, now: Time) -> Option<client::Input> {
        let n = self.clients.issue(c)?;
        let watched = self.watched.remove(&c);
        let dst = match &watched {
            Some(w) => shard::groups_of(
                &KvOp::Watch(w.iter().map(|(k, _)| k.clone()).collect()),
                self.groups,
            ),
            None => self.destinations(c),
        };
        let val = format!("c{c}-{n}");
        let transaction = if self.transactions {
            next_transaction(&self.pool, &mut self.rng, &dst, &val, watched)
        } else {
            None
        };
        let op = match transaction {
            Some(op) => op,
            None if self.expiry && dst.len() == 1 && self.rng.gen_bool(0.5) => {
                let keys = &self.pool.expiring[dst[0].0 as usize];
                let key = String::from_utf8_lossy(&keys[self.rng.gen_range(0..keys.len())]);
                byzscale_scenario_smr::workload::expiry_op(&mut self.rng, &key, c, n)
            }
            None => next_op(&self.pool, &mut self.rng, &dst, val.into_bytes()),
        };
        debug_assert_eq!(shard::groups_of(&op, self.groups), dst);
        let payload = op.encode();
        self.any_global |= dst.len() > 1;
        self.submitted
            .insert(msg_id(c, n), (dst.clone(), digest(&payload)));
        let inf = Inflight {
            op,
            dst: dst.clone(),
            invoked: now,
        };
        self.clients.start(c, n, inf);
        Some(client::Input::Multicast { dst, payload })
    }

    /// Client `c` completed its `n`-th multicast at `at`; `None` if it was not
    /// in flight (completed twice).
    pub fn complete(
        &mut self,
        c: usize,
        n: u64,
        at: Time,
        results: Result<Results, String>,
    ) -> Option<Completed> {
        let inf = self.clients.complete(c, n)?;
        let (reply, failed) = match results {
            Ok(r) => (shard::merge(&inf.op, &r, self.groups), None),
            Err(e) => (KvReply::Error(e.clone()), Some(e)),
        };
        let global = inf.dst.len() > 1;
        if global {
            self.completed_global += 1;
        } else {
            self.completed_local += 1;
        }
        if inf.invoked >= self.warmup {
            let lat = at.saturating_sub(inf.invoked);
            if global {
                self.window_global += 1;
                self.latencies_global.push(lat);
            } else {
                self.window_local += 1;
                self.latencies_local.push(lat);
            }
        }
        if let Some(r) = &mut self.replies {
            r.insert(msg_id(c, n), (inf.op.clone(), Some(reply.clone())));
        }
        if let Some(w) = byzscale_apps::kv::multi::watched(&inf.op, &reply) {
            self.watched.insert(c, w);
        }
        if let Some(h) = &mut self.history {
            let op = Op::new(c as u64 + 1, inf.invoked, at, inf.op.clone(), reply.clone());
            h.push((msg_id(c, n), op));
        }
        Some(Completed {
            op: inf.op,
            dst: inf.dst,
            invoked: inf.invoked,
            reply,
            failed,
        })
    }

    /// Client `c`'s `n`-th multicast failed with its outcome unknown (its
    /// entry group expired the client's session): it may or may not be
    /// delivered, so the checks take it as an operation still in flight.
    /// `false` if it was not in flight.
    pub fn expire(&mut self, c: usize, n: u64) -> bool {
        let Some(inf) = self.clients.complete(c, n) else {
            return false;
        };
        self.expired += 1;
        self.unknown.insert(msg_id(c, n));
        if let Some(r) = &mut self.replies {
            r.insert(msg_id(c, n), (inf.op.clone(), None));
        }
        if let Some(h) = &mut self.history {
            h.push((msg_id(c, n), Op::pending(c as u64 + 1, inf.invoked, inf.op)));
        }
        true
    }

    /// The destinations and payload digest of multicast `id`, if a client sent it.
    pub fn submitted(&self, id: &MsgId) -> Option<&(Vec<GroupId>, Digest)> {
        self.submitted.get(id)
    }

    /// Every multicast sent, with its destinations, but those that failed
    /// with their outcome unknown ([`Workload::expire`]: they may never be
    /// delivered).
    pub fn all_submitted(&self) -> impl Iterator<Item = (&MsgId, &Vec<GroupId>)> {
        self.submitted
            .iter()
            .filter(|(id, _)| !self.unknown.contains(id))
            .map(|(id, (dst, _))| (id, dst))
    }

    pub fn done(&self) -> bool {
        self.clients.done()
    }

    /// Multicasts not completed: in flight or not yet issued.
    pub fn pending(&self) -> u64 {
        self.clients.pending()
    }

    /// The single-group history with the operations still in flight as
    /// pending, each with its multicast's id; `None` when it is not checked
    /// (see the crate docs).
    pub fn take_history(&mut self) -> Option<Vec<(MsgId, Op)>> {
        if self.any_global {
            return None;
        }
        let mut h = self.history.take()?;
        for ((c, n), inf) in self.clients.in_flight() {
            let op = Op::pending(*c as u64 + 1, inf.invoked, inf.op.clone());
            h.push((msg_id(*c, *n), op));
        }
        Some(h)
    }
}
