//! DQPBFT's normal case: N dissemination instances and one ordering
//! instance, all PBFT over the SMR ordering core, and the execution cursor.
//!
//! # Paper map
//!
//! Arun and Ravindran, VLDB'22, §3 (digest §1):
//!
//! | paper | here |
//! |---|---|
//! | §3.1 D-instance of R_n, coordinator | `Replica::d[n]`: an [`Ordering<DBatch>`] led by replica n in view 0 (`GroupInfo::with_first_leader(n)`) |
//! | §3.1 O-instance, primary R_p | `Replica::o`: an [`Ordering<Ref>`] led by [`Params::o_primary`] |
//! | §3.2.1 Fig. 5 D-PrePrepare / D-Prepare / D-Commit | [`Message::D`] with [`Phase`] (the core's PROPOSE / WRITE / ACCEPT) |
//! | §3.2.1 Fig. 5 O-PrePrepare / O-Prepare / O-Commit | [`Message::O`] |
//! | §3.2.1 optimistic mode: R_p orders S_ni on R_n's D-PrePrepare | `Replica::order_refs` (on every D adoption at the O-primary) |
//! | §3.2.1 R_q O-Prepares only holding the D-PrePrepare, waiting if needed | `Replica::check_ref` → `Check::Hold`, `Replica::retry_held` |
//! | §3.3 proof of Thm 3.8: per-instance order without gaps (digest §1.3 rule 3) | `Replica::check_ref`: the k-th O-slot naming n carries S_nk, else [`Fault::RefDuplicate`] / [`Fault::RefReordered`] |
//! | §3.2.2 decided / ready, execution in O order | [`exec::Cursor`] |
//! | §3.2.2, §3.2.5 no-op | [`DBatch::noop`], executed by the cursor as "consume S_ni" |
//! | §3.2.3 checkpoints | [`Message::Checkpoint`] every [`Params::checkpoint_interval`] O-slots; a quorum of matching digests moves every instance's low watermark |
//! | §3.2.6 client timestamps, reply cache | [`exec::ClientTable`], [`Message::Reply`] |
//! | §3.2.6 client: f+1 matching replies, on timeout to all replicas | [`client::Client`] |
//!
//! # Deviations and decisions (normal case only, issue 15 plan step 2)
//!
//! - **No view change, probation, flooding, take-over, state transfer or
//!   ASSIGN yet** (plan step 3). A replica that misses messages waits; the
//!   core's `Lagging` events are ignored. Every replica is its own clients'
//!   coordinator: commands arrive as [`Input::Submit`] (a local gateway) or
//!   as [`Message::Request`] from the authenticated client.
//! - **Commands are taken on the coordinator's word**: a D-PrePrepare's
//!   commands carry no client authenticator (the SMR's MAC vectors are per
//!   group; DQPBFT has N+1 groups). A Byzantine coordinator can therefore
//!   invent commands in a client's name; signatures or authenticators come
//!   with the Byzantine-coordinator work of step 3.
//! - **No-op filling.** In the normal case DQBFT needs none: the O-primary
//!   gives O-slots dynamically to whichever D-instance proposed (§3.1), so an
//!   instance that lags or idles just gets fewer slots, unlike round-robin
//!   multi-primary protocols that must fill the idle primary's rounds. The
//!   paper's no-op (§3.2.5) fills a D sequence number the O-instance named
//!   but no correct replica holds a command for, after a D view change; the
//!   value exists ([`DBatch::noop`], executed as nothing but consuming its
//!   D sequence number) and the cursor handles it; proposing it belongs to
//!   the D view change (step 3). The O-instance's own null value (a view
//!   change's selection for an O-slot nobody prepared) is skipped.
//! - **Out-of-order references at execution.** A decided O-slot naming a D
//!   sequence number other than the next of its instance can only come from
//!   more than f faulty replicas (correct ones check the rule before their
//!   O-Prepare); every correct replica skips it alike and reports
//!   [`Fault::RefOutOfOrder`], so prefixes stay identical.
//! - **Checkpoints** are PBFT's, taken over the global cursor: the digest
//!   covers the O-slot, each D-instance's last executed S_ni, the service
//!   snapshot and the client table; a stable one stabilizes O at its O-slot
//!   and each D-instance at its executed S_ni (digest §1.9 proposal). They
//!   are unsigned (no state transfer consumes them yet).
//! - **Batch time**: a batch carries no timestamp (the service sees time 0);
//!   the KV with expiry needs one agreed like the SMR's (later).

pub mod client;
pub mod exec;
pub mod message;
#[cfg(test)]
mod tests;

use byzscale_core::crypto::Digest;
use byzscale_core::keyed::Keyed;
use byzscale_core::quorum::{Collector, FaultModel, QuorumSystem};
use byzscale_core::service::{BatchCtx, Service};
use byzscale_core::{codec, Addr, ClientId, Cx, GroupId, NodeId, Protocol};
use byzscale_smr::replica::order::{self, Event, Ordering, Promise};
use byzscale_smr::{GroupInfo, Slot};
use exec::{Admit, ClientTable, Cursor, Ready};
pub use message::{Command, DBatch, Message, Phase, Ref};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

byzscale_core::fault_kinds! {
    /// Misbehaviour a DQPBFT replica observes (the ordering core reports its
    /// own kinds, `byzscale_smr::Fault`, for PROPOSE / WRITE / ACCEPT).
    pub enum Fault {
        /// A request whose client is not the authenticated sender.
        RequestSpoof => "dq-request-spoof",
        /// A request whose operation exceeds `Params::max_op_bytes`.
        RequestTooLarge => "dq-request-too-large",
        /// A D or O message from a node outside the replicas.
        NotAMember => "dq-not-a-member",
        /// A D message for an instance that does not exist.
        BadInstance => "dq-bad-instance",
        /// An O-PrePrepare naming no D-instance or D sequence number 0.
        RefInvalid => "dq-ref-invalid",
        /// An O-PrePrepare naming an (instance, seq) another O-slot named,
        /// or one already executed.
        RefDuplicate => "dq-ref-duplicate",
        /// An O-PrePrepare that reorders an instance's sequence numbers.
        RefReordered => "dq-ref-reordered",
        /// A decided O-slot naming a D sequence number out of its
        /// instance's order (more than f faulty replicas).
        RefOutOfOrder => "dq-ref-out-of-order",
        /// This replica's checkpoint differs from a quorum's.
        DivergentState => "dq-divergent-state",
    }
}

/// DQPBFT parameters; every replica must run the same ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Each D-instance's watermark window (D sequence numbers).
    pub d_window: u64,
    /// The O-instance's watermark window (O-slots).
    pub o_window: u64,
    /// Most of its own D-instance's slots a coordinator has in flight.
    pub max_in_flight: u64,
    /// Most commands in one batch.
    pub batch_max: usize,
    /// Most bytes of one operation.
    pub max_op_bytes: usize,
    /// O-slots between checkpoints.
    pub checkpoint_interval: u64,
    /// Most bytes of commands a coordinator queues for its D-instance.
    pub pending_bytes: usize,
    /// Most clients in the client table.
    pub max_clients: usize,
    /// Most bytes of a cached result.
    pub max_result_bytes: usize,
    /// The position of the O-instance's primary in view 0.
    pub o_primary: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            d_window: 64,
            o_window: 256,
            max_in_flight: 8,
            batch_max: 64,
            max_op_bytes: 4096,
            checkpoint_interval: 32,
            pending_bytes: 4 << 20,
            max_clients: 10_000,
            max_result_bytes: 4096,
            o_primary: 0,
        }
    }
}

impl Params {
    /// Check the parameters for `n` replicas.
    pub fn validate(&self, n: usize) -> Result<(), String> {
        if n == 0 {
            return Err("DQPBFT needs at least one replica".into());
        }
        if self.o_primary >= n {
            return Err(format!(
                "o_primary {} is not one of {n} replicas",
                self.o_primary
            ));
        }
        if self.batch_max == 0 || self.max_in_flight == 0 || self.d_window == 0 {
            return Err("batch_max, max_in_flight and d_window must be positive".into());
        }
        if self.checkpoint_interval == 0 || self.o_window < 2 * self.checkpoint_interval {
            return Err(format!(
                "o_window ({}) must be at least twice checkpoint_interval ({}, positive)",
                self.o_window, self.checkpoint_interval
            ));
        }
        // a full D window always holds a slot that is not executed (so the
        // O-primary can order it and a checkpoint follows): fewer than
        // `checkpoint_interval` of an instance's slots execute between two
        // checkpoints
        if self.d_window <= self.checkpoint_interval {
            return Err(format!(
                "d_window ({}) must exceed checkpoint_interval ({})",
                self.d_window, self.checkpoint_interval
            ));
        }
        Ok(())
    }
}

/// What a replica's user gives it.
#[derive(Clone, Debug)]
pub enum Input {
    /// A command of one of this replica's clients (it coordinates it).
    Submit(Command),
}

/// What a replica tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// O-slot `oslot` executed D-instance `r.instance`'s batch `r.seq`;
    /// `ran` are the commands that ran (duplicates and refused ones are not
    /// listed), in order.
    Executed {
        oslot: Slot,
        r: Ref,
        ran: Vec<(ClientId, u64)>,
    },
    /// The checkpoint at `oslot` became stable.
    Stable(Slot),
}

/// The replica has no timers in the normal case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {}

/// What a replica persists: the ordering core's promises, per instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    D(u32, Promise<DBatch>),
    O(Promise<Ref>),
}

/// What `check_ref` makes of an O-PrePrepare.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    Pass,
    /// Wait for the D-PrePrepare or the instance's previous reference.
    Hold,
    Reject(Fault, String),
}

/// A DQPBFT replica (see the module docs).
pub struct Replica<S> {
    p: Params,
    idx: usize,
    members: Vec<NodeId>,
    qs: QuorumSystem,
    d: Keyed<u32, Ordering<DBatch>>,
    o: Ordering<Ref>,
    cursor: Cursor,
    clients: ClientTable,
    service: S,
    /// Coordinator: commands waiting for its D-instance, their bytes, and
    /// the (client, timestamp) of every command queued or proposed and not
    /// executed yet.
    pending: VecDeque<Command>,
    pending_size: usize,
    queued: BTreeSet<(ClientId, u64)>,
    /// O-primary: the next D sequence number to order, per instance.
    next_ref: Vec<Slot>,
    /// The O-slot each adopted reference sits in, above the stable checkpoint.
    named: BTreeMap<(u32, Slot), Slot>,
    /// O-PrePrepares waiting (by O-slot), at most `o_window`.
    held: BTreeMap<Slot, (usize, order::Message<Ref>)>,
    retrying: bool,
    retry_again: bool,
    ordering_refs: bool,
    /// The last stable checkpoint's O-slot.
    stable: Slot,
    /// Own checkpoints above `stable`: digest and each instance's executed S_ni.
    checkpoints: BTreeMap<Slot, (Digest, Vec<Slot>)>,
    votes: BTreeMap<Slot, Collector<Digest, ()>>,
}

impl<S: Service> Replica<S> {
    /// Replica `me` of `members` (N = 3f+1 or more, f = ⌊(N−1)/3⌋).
    pub fn new(members: Vec<NodeId>, me: NodeId, p: Params, service: S) -> Result<Self, String> {
        let n = members.len();
        p.validate(n)?;
        let idx = members
            .iter()
            .position(|m| *m == me)
            .ok_or_else(|| format!("{me:?} is not a member"))?;
        let qs = QuorumSystem::classic(n, (n - 1) / 3, FaultModel::Bft)
            .map_err(|e| format!("quorum system: {e:?}"))?;
        let group = |id: usize, leader: usize| {
            GroupInfo::new(GroupId(id as u32), members.clone(), qs.clone())
                .with_first_leader(leader)
        };
        let d = (0..n)
            .map(|i| (i as u32, Ordering::new(group(i, i), idx, p.d_window)))
            .collect();
        let o = Ordering::new(group(n, p.o_primary), idx, p.o_window);
        Ok(Replica {
            idx,
            qs,
            d,
            o,
            cursor: Cursor::new(n),
            clients: ClientTable::new(p.max_clients, p.max_result_bytes),
            service,
            pending: VecDeque::new(),
            pending_size: 0,
            queued: BTreeSet::new(),
            next_ref: vec![1; n],
            named: BTreeMap::new(),
            held: BTreeMap::new(),
            retrying: false,
            retry_again: false,
            ordering_refs: false,
            stable: 0,
            checkpoints: BTreeMap::new(),
            votes: BTreeMap::new(),
            members,
            p,
        })
    }

    pub fn service(&self) -> &S {
        &self.service
    }
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }
    pub fn clients(&self) -> &ClientTable {
        &self.clients
    }
    /// The last stable checkpoint's O-slot.
    pub fn stable(&self) -> Slot {
        self.stable
    }
    /// O-PrePrepares waiting for a D-PrePrepare or a previous reference.
    pub fn held(&self) -> usize {
        self.held.len()
    }
    /// Commands this coordinator queued or proposed and not executed yet.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }
    pub fn o(&self) -> &Ordering<Ref> {
        &self.o
    }
    pub fn d(&self, n: u32) -> Option<&Ordering<DBatch>> {
        self.d.get(&n)
    }

    fn others(&self) -> Vec<Addr> {
        let me = self.members[self.idx];
        self.members
            .iter()
            .filter(|m| **m != me)
            .map(|m| Addr::Node(*m))
            .collect()
    }

    fn member(&self, from: Addr) -> Option<usize> {
        match from {
            Addr::Node(m) => self.members.iter().position(|x| *x == m),
            Addr::Client(_) => None,
        }
    }

    /// A command for this replica's own D-instance.
    fn submit(&mut self, c: Command, cx: &mut Cx<'_, Self>) {
        if self.clients.done(c.client, c.timestamp) {
            if let Admit::Duplicate(Some(result)) = self.clients.admit(&c) {
                self.reply(&c, result, cx);
            }
            return;
        }
        let key = (c.client, c.timestamp);
        if self.queued.contains(&key) || self.pending_size + c.size() > self.p.pending_bytes {
            return; // the client retries
        }
        self.queued.insert(key);
        self.pending_size += c.size();
        self.pending.push_back(c);
        self.propose(cx);
    }

    /// As a coordinator, propose batches while its D-instance has room.
    fn propose(&mut self, cx: &mut Cx<'_, Self>) {
        let me = self.idx as u32;
        while !self.pending.is_empty() {
            let Some(d) = self.d.get_mut(&me) else { return };
            if !d.can_propose() || d.in_flight() >= self.p.max_in_flight {
                return;
            }
            let take = self.pending.len().min(self.p.batch_max);
            let commands: Vec<Command> = self.pending.drain(..take).collect();
            self.pending_size -= commands.iter().map(Command::size).sum::<usize>();
            let events = d.propose(DBatch::new(commands), cx.crypto());
            self.apply_d(me, events, cx);
        }
    }

    fn on_d(&mut self, from: usize, n: u32, phase: Phase<DBatch>, cx: &mut Cx<'_, Self>) {
        let (batch_max, max_op) = (self.p.batch_max, self.p.max_op_bytes);
        let Some(d) = self.d.get_mut(&n) else {
            let detail = format!("D message for instance {n}");
            cx.fault(Addr::Node(self.members[from]), Fault::BadInstance, detail);
            return;
        };
        let events = d.on_message(from, phase.into(), cx.crypto(), |b: &DBatch| {
            if b.commands.len() > batch_max {
                return Err(format!("{} commands in a batch", b.commands.len()));
            }
            match b.commands.iter().find(|c| c.op.len() > max_op) {
                Some(c) => Err(format!("an operation of {} bytes", c.op.len())),
                None => Ok(()),
            }
        });
        self.apply_d(n, events, cx);
    }

    /// Carry out what D-instance `n` asked for, in order.
    fn apply_d(&mut self, n: u32, events: Vec<Event<DBatch>>, cx: &mut Cx<'_, Self>) {
        let wrap = |m: order::Message<DBatch>| Message::D {
            instance: n,
            phase: m.into(),
        };
        let done = apply_events(events, &self.others(), cx, wrap, |p| Record::D(n, p));
        if done.decided {
            if let Some(d) = self.d.get_mut(&n) {
                while let Some((seq, _, _, batch)) = d.take_ready() {
                    self.cursor.d_decided(n, seq, batch);
                }
            }
        }
        if !done.adopted.is_empty() {
            self.order_refs(cx);
            self.retry_held(cx);
        }
        if done.decided {
            self.retry_held(cx);
            self.execute(cx);
            if n == self.idx as u32 {
                self.propose(cx);
            }
        }
    }

    /// As the O-primary, give O-slots to every adopted D proposal not yet
    /// ordered, in each instance's order, one instance after another
    /// (optimistic mode: on the D-PrePrepare, §3.2.1).
    fn order_refs(&mut self, cx: &mut Cx<'_, Self>) {
        if !self.o.is_leader() || self.ordering_refs {
            return;
        }
        self.ordering_refs = true;
        let mut progressed = true;
        while progressed {
            progressed = false;
            for n in 0..self.members.len() as u32 {
                let seq = self.next_ref[n as usize];
                let held = self.d.get(&n).is_some_and(|d| d.proposal(seq).is_some())
                    || self.cursor.d_known(n, seq);
                if !held || !self.o.can_propose() || self.o.in_flight() >= self.p.o_window {
                    continue;
                }
                self.next_ref[n as usize] += 1;
                let events = self.o.propose(Ref { instance: n, seq }, cx.crypto());
                self.apply_o(events, cx);
                progressed = true;
            }
        }
        self.ordering_refs = false;
    }

    /// Whether an O-PrePrepare for O-slot `k` naming `r` may be prepared
    /// now (digest §1.3 rule 3, §1.4 gate (a)).
    fn check_ref(&self, k: Slot, r: Ref) -> Check {
        let n = r.instance;
        if n as usize >= self.members.len() || r.seq == 0 {
            return Check::Reject(Fault::RefInvalid, format!("O-slot {k} names {r:?}"));
        }
        if r.seq <= self.cursor.d_executed()[n as usize] {
            let detail = format!("O-slot {k} names executed {r:?}");
            return Check::Reject(Fault::RefDuplicate, detail);
        }
        match self.named.get(&(n, r.seq)) {
            Some(k2) if *k2 != k => {
                let detail = format!("O-slot {k} names {r:?}, named at O-slot {k2}");
                return Check::Reject(Fault::RefDuplicate, detail);
            }
            Some(_) => return Check::Pass,
            None => {}
        }
        let later_below = self
            .named
            .range((n, r.seq.saturating_add(1))..=(n, Slot::MAX))
            .any(|(_, k2)| *k2 < k);
        let previous = self.named.get(&(n, r.seq - 1));
        if later_below || previous.is_some_and(|k2| *k2 > k) {
            let detail = format!("O-slot {k} names {r:?} out of its instance's order");
            return Check::Reject(Fault::RefReordered, detail);
        }
        let previous_done = previous.is_some() || r.seq - 1 <= self.cursor.d_executed()[n as usize];
        let holds_d = self.cursor.d_known(n, r.seq)
            || self.d.get(&n).is_some_and(|d| d.proposal(r.seq).is_some());
        if previous_done && holds_d {
            Check::Pass
        } else {
            Check::Hold
        }
    }

    fn on_o(&mut self, from: usize, msg: order::Message<Ref>, cx: &mut Cx<'_, Self>) {
        if let order::Message::Propose { view, slot, value } = &msg {
            let current = *view == self.o.view() && self.members[from] == self.o.leader();
            if current && self.o.in_window(*slot) && *slot > self.o.delivered() {
                match self.check_ref(*slot, *value) {
                    Check::Pass => {}
                    Check::Hold => {
                        if self.held.len() < self.p.o_window as usize {
                            self.held.insert(*slot, (from, msg));
                        }
                        return;
                    }
                    Check::Reject(kind, detail) => {
                        cx.fault(Addr::Node(self.members[from]), kind, detail);
                        return;
                    }
                }
            }
        }
        let events = self.o.on_message(from, msg, cx.crypto(), |_| Ok(()));
        self.apply_o(events, cx);
    }

    /// Try the held O-PrePrepares again until none moves.
    fn retry_held(&mut self, cx: &mut Cx<'_, Self>) {
        if self.retrying {
            self.retry_again = true;
            return;
        }
        self.retrying = true;
        loop {
            self.retry_again = false;
            let before = self.held.len();
            for (_, (from, msg)) in std::mem::take(&mut self.held) {
                self.on_o(from, msg, cx);
            }
            if !self.retry_again || self.held.len() == before {
                break;
            }
        }
        self.retrying = false;
    }

    /// Carry out what the O-instance asked for, in order.
    fn apply_o(&mut self, events: Vec<Event<Ref>>, cx: &mut Cx<'_, Self>) {
        let wrap = |m: order::Message<Ref>| Message::O(m.into());
        let done = apply_events(events, &self.others(), cx, wrap, Record::O);
        for k in &done.adopted {
            if let Some(r) = self.o.proposal(*k).copied().filter(|r| !r.is_null()) {
                self.named.insert((r.instance, r.seq), *k);
            }
        }
        if done.decided {
            while let Some((k, _, _, r)) = self.o.take_ready() {
                self.cursor.o_decided(k, r);
            }
        }
        if !done.adopted.is_empty() {
            self.retry_held(cx);
        }
        if done.decided {
            self.execute(cx);
            self.order_refs(cx);
        }
    }

    /// Execute every ready O-slot (§3.2.2).
    fn execute(&mut self, cx: &mut Cx<'_, Self>) {
        while let Some(ready) = self.cursor.next_ready() {
            let oslot = match ready {
                Ready::Execute { oslot, r, batch } => {
                    let ran = self.run_batch(oslot, &batch, cx);
                    cx.output(Output::Executed { oslot, r, ran });
                    oslot
                }
                Ready::Null { oslot } => oslot,
                Ready::OutOfOrder { oslot, r, expected } => {
                    let primary = self.o.leader();
                    let detail = format!("O-slot {oslot} names {r:?}, expected seq {expected}");
                    cx.fault(Addr::Node(primary), Fault::RefOutOfOrder, detail);
                    oslot
                }
            };
            if oslot.is_multiple_of(self.p.checkpoint_interval) {
                self.checkpoint(oslot, cx);
            }
        }
    }

    /// Run a batch's commands through the client table and the service;
    /// the commands that ran.
    fn run_batch(
        &mut self,
        oslot: Slot,
        batch: &DBatch,
        cx: &mut Cx<'_, Self>,
    ) -> Vec<(ClientId, u64)> {
        self.service.begin_batch(BatchCtx {
            slot: oslot,
            time_ms: 0,
        });
        let mut ran = Vec::new();
        for c in batch.commands.iter() {
            self.queued.remove(&(c.client, c.timestamp));
            match self.clients.admit(c) {
                Admit::Run => {
                    let result = self.service.execute(&c.op);
                    self.clients.record(c, result.clone());
                    self.reply(c, result, cx);
                    ran.push((c.client, c.timestamp));
                }
                Admit::Duplicate(Some(result)) => self.reply(c, result, cx),
                Admit::Duplicate(None) | Admit::Full => {}
            }
        }
        ran
    }

    fn reply(&self, c: &Command, result: Vec<u8>, cx: &mut Cx<'_, Self>) {
        let msg = Message::Reply {
            client: c.client,
            timestamp: c.timestamp,
            result,
        };
        cx.send(Addr::Client(c.client), msg);
    }

    /// Take the checkpoint at `oslot` and announce it (§3.2.3).
    fn checkpoint(&mut self, oslot: Slot, cx: &mut Cx<'_, Self>) {
        let d_executed = self.cursor.d_executed().to_vec();
        let state = (
            "byzscale/dqpbft/checkpoint",
            oslot,
            &d_executed,
            self.service.snapshot(),
            self.clients.entries(),
        );
        let digest = cx.crypto().hash(&codec::to_bytes(&state));
        self.checkpoints.insert(oslot, (digest, d_executed));
        cx.multicast(self.others(), Message::Checkpoint { oslot, digest });
        self.on_checkpoint(self.idx, oslot, digest, cx);
    }

    fn on_checkpoint(&mut self, from: usize, oslot: Slot, digest: Digest, cx: &mut Cx<'_, Self>) {
        let interval = self.p.checkpoint_interval;
        if oslot <= self.stable
            || oslot > self.stable + self.p.o_window
            || !oslot.is_multiple_of(interval)
        {
            return;
        }
        let votes = self.votes.entry(oslot).or_default();
        votes.add(&self.qs, from, digest, || ());
        let Some((stable, ())) = votes.quorum(&self.qs) else {
            return;
        };
        let Some((own, d_executed)) = self.checkpoints.get(&oslot) else {
            return;
        };
        if own != stable {
            let detail = format!("checkpoint at O-slot {oslot}");
            let me = Addr::Node(self.members[self.idx]);
            cx.fault(me, Fault::DivergentState, detail);
            return;
        }
        let d_executed = d_executed.clone();
        self.stabilize(oslot, &d_executed, cx);
    }

    /// The checkpoint at `oslot` is stable: move every instance's low
    /// watermark and forget what lies below.
    fn stabilize(&mut self, oslot: Slot, d_executed: &[Slot], cx: &mut Cx<'_, Self>) {
        self.stable = oslot;
        self.o.stabilize(oslot);
        for (n, low) in d_executed.iter().enumerate() {
            if let Some(d) = self.d.get_mut(&(n as u32)) {
                d.stabilize(*low);
            }
        }
        self.checkpoints = self.checkpoints.split_off(&(oslot + 1));
        self.votes = self.votes.split_off(&(oslot + 1));
        self.named.retain(|_, k| *k > oslot);
        self.held = self.held.split_off(&(oslot + 1));
        cx.output(Output::Stable(oslot));
        self.order_refs(cx);
        self.propose(cx);
    }
}

/// What an instance's events leave to the replica once their records,
/// messages and faults went out.
struct Applied {
    /// Slots it adopted a value for.
    adopted: Vec<Slot>,
    /// Whether a slot was decided (take the decisions out).
    decided: bool,
}

/// Carry out an instance's events in order: records through `record`,
/// multicasts to `others` through `wrap`, faults as they are.
fn apply_events<V, S: Service>(
    events: Vec<Event<V>>,
    others: &[Addr],
    cx: &mut Cx<'_, Replica<S>>,
    wrap: impl Fn(order::Message<V>) -> Message,
    record: impl Fn(Promise<V>) -> Record,
) -> Applied {
    let mut done = Applied {
        adopted: Vec::new(),
        decided: false,
    };
    for e in events {
        match e {
            Event::Persist(p) => cx.persist(record(p)),
            Event::Multicast(m) => cx.multicast(others.to_vec(), wrap(m)),
            Event::Adopted(slot) => done.adopted.push(slot),
            Event::Decided(_) => done.decided = true,
            // no log fetch yet (plan step 3): a lagging replica waits
            Event::Lagging => {}
            Event::Fault {
                culprit,
                kind,
                detail,
            } => cx.fault(Addr::Node(culprit), kind, detail),
        }
    }
    done
}

impl<S: Service> Protocol for Replica<S> {
    type Message = Message;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = Record;

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        match input {
            Input::Submit(c) if c.op.len() <= self.p.max_op_bytes => self.submit(c, cx),
            Input::Submit(_) => {}
        }
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        if let Message::Request(c) = msg {
            if from != Addr::Client(c.client) {
                cx.fault(
                    from,
                    Fault::RequestSpoof,
                    format!("request of {:?}", c.client),
                );
            } else if c.op.len() > self.p.max_op_bytes {
                cx.fault(
                    from,
                    Fault::RequestTooLarge,
                    format!("{} bytes", c.op.len()),
                );
            } else {
                self.submit(c, cx);
            }
            return;
        }
        let Some(idx) = self.member(from) else {
            if !matches!(msg, Message::Reply { .. }) {
                cx.fault(from, Fault::NotAMember, msg.kind());
            }
            return;
        };
        match msg {
            Message::D { instance, phase } => self.on_d(idx, instance, phase, cx),
            Message::O(phase) => self.on_o(idx, phase.into(), cx),
            Message::Checkpoint { oslot, digest } => self.on_checkpoint(idx, oslot, digest, cx),
            Message::Request(_) | Message::Reply { .. } => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, _cx: &mut Cx<'_, Self>) {
        match timer {}
    }
}
