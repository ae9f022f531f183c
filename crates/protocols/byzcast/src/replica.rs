//! A ByzCast replica of group x: an SMR [`Replica`] of x running the
//! [`GroupMachine`], plus one forward stream ([`StreamOut`]) per child group
//! (parent replicas act as clients of their children, as
//! `ClientId::for_replica(me)`, with sequence numbers that survive restarts).
//!
//! # Composition
//!
//! Inner steps run through [`Cx::nested`] (the SMR replica, sharing this
//! node's clock, RNG and crypto) or a context over the *client identity's*
//! crypto (the forward streams: their requests carry MAC authenticators
//! keyed for `Addr::Client(ClientId::for_replica(me))`, which the child
//! replicas know under that address). Their effects are mapped:
//! - SMR messages travel as [`Message::Smr`]; a child replica's reply to
//!   `ClientId::for_replica(j)` is sent to node j, and a request arriving from
//!   node j (a parent replica) is handed to the SMR replica as coming from
//!   `ClientId::for_replica(j)`;
//! - timers become [`Timer::Smr`] / [`Timer::Stream`];
//! - records become [`Record`]s (the SMR replica's, and the streams' own);
//! - after every SMR step the machine's outbox is drained: forwards are
//!   submitted to the children's streams, deliveries become
//!   [`Output::Deliver`], handled messages start a result aggregation.
//!
//! # The request filter
//!
//! The group service cannot see which client sent an ordered request, so the
//! sender named inside an [`Envelope`] must be checked before ordering: every
//! request in a `Request`, `Forward` or `Propose` is dropped (with a fault)
//! unless a `Forward` envelope's `sender` is a replica of the parent group and
//! the request's client is `ClientId::for_replica(sender)`, and a `Multicast`
//! envelope's message id names the request's client. Correct replicas only
//! write for proposals that pass, so every decided batch (a quorum of
//! WRITEs/ACCEPTs, a prepared certificate re-proposed after a view change, or
//! f+1 matching log entries) was checked by a correct replica.
//!
//! # Results
//!
//! When the machine handles `m`, the replica waits for a weak quorum (f+1) of
//! identical [`Message::Result`]s from each child it forwarded `m` to, merges
//! them with its own group's reply, and sends the merged results to every
//! replica of its parent, or, at the entry group, to the client as
//! [`Message::Reply`] (the client takes f+1 matching). Lost results are asked
//! for again with [`Message::Query`] every `client_retry`.

use crate::durable::{Durable, Record};
use crate::fault::Fault;
use crate::machine::{Event, Forward, GroupMachine};
use crate::message::{max_multicast_op, Envelope, McastMsg, Message, MsgId, Results};
use crate::stream::{Retry, StreamOut};
use crate::topology::Topology;
use byzscale_core::codec;
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::quorum::{Collector, Vote};
use byzscale_core::{Addr, ClientId, Cx, GroupId, Keyed, NodeId, Priority, Protocol, Time};
use byzscale_smr as smr;
use byzscale_smr::Params;
use rand::RngCore;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// How many finished results a replica keeps to answer queries.
pub const DONE_CACHE: usize = 1 << 16;
/// Bytes of finished results a replica keeps (and its durable records
/// hold, [`crate::Durable`]): the results of a message are up to one
/// operation's result per group it touches, so [`DONE_CACHE`] alone let a
/// client whose messages return large results pin gigabytes. Beyond either
/// bound the oldest results go ([`done_over`]); the newest is always kept.
pub const DONE_BYTES: usize = 32 << 20;

/// Whether a cache of `len` finished results holding `bytes` (as
/// [`results_bytes`] counts them) must drop its oldest.
pub(crate) fn done_over(len: usize, bytes: usize) -> bool {
    len > DONE_CACHE || (len > 1 && bytes > DONE_BYTES)
}
/// How many message ids may hold child results before their own handling.
pub const EARLY_RESULTS: usize = 1 << 16;
/// Bytes of child results a replica holds per child group for messages it
/// has not handled yet ("early" results; a Byzantine child replica may send
/// results for ids that never come). Beyond it the oldest early results of
/// that child go; the results of messages this replica handles are asked
/// for again ([`Message::Query`]), so nothing waited for is lost.
pub const EARLY_BYTES: usize = 32 << 20;

/// Seam for simulated Byzantine replicas: what a replica forwards and the
/// results it reports. A correct deployment uses [`Honest`]; the simulator
/// plugs in attacks (forward early, forge, withhold, reorder).
pub trait ForwardPolicy {
    /// The forwards the machine just produced, in order; returns what to submit.
    fn forwards(&mut self, planned: Vec<Forward>, _rng: &mut dyn RngCore) -> Vec<Forward> {
        planned
    }
    /// A client's multicast reached this replica, before its group ordered it;
    /// returns forwards to submit right away (a correct replica: none).
    fn on_client_multicast(
        &mut self,
        _m: &McastMsg,
        _children: &[GroupId],
        _rng: &mut dyn RngCore,
    ) -> Vec<Forward> {
        Vec::new()
    }
    /// The results about to be sent up (to the parent, or to the client).
    fn results(&mut self, _id: MsgId, results: Results, _rng: &mut dyn RngCore) -> Results {
        results
    }
}

/// The correct behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub struct Honest;
impl ForwardPolicy for Honest {}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Smr(smr::replica::Timer),
    /// The retry tick of the forward stream to this child.
    Stream(GroupId),
    Requery,
}

#[derive(Debug)]
pub enum Input {
    Smr(smr::replica::Input),
}

#[derive(Debug)]
pub enum Output {
    /// a-deliver(m): the `index`-th delivery at `group`, at the group's
    /// batch time `time_ms` (see `machine::Event::Deliver`).
    Deliver {
        group: GroupId,
        index: u64,
        msg: McastMsg,
        time_ms: u64,
    },
    /// State transfer installed a snapshot covering deliveries up to `to_index`.
    Skipped { group: GroupId, to_index: u64 },
    /// The inner SMR replica's outputs (decided batches, views, checkpoints).
    Smr(smr::replica::Output),
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub forwards_submitted: u64,
    pub forwards_acked: u64,
    pub results_sent: u64,
    pub replies_sent: u64,
    pub queries_sent: u64,
    pub rejected_requests: u64,
}

#[derive(Default)]
struct ChildVotes {
    votes: Collector<Digest, Results>,
    resolved: Option<Results>,
    /// Bytes of results held (each counted vote's, then the resolved one's).
    bytes: usize,
    /// Its key in the child's arrival order ([`Replica::early`]).
    arrival: u64,
}

/// Bytes charged for holding `results`.
pub(crate) fn results_bytes(results: &Results) -> usize {
    results.values().map(|v| v.len() + 16).sum::<usize>() + 16
}

struct Aggregation {
    entry: bool,
    own: Option<Vec<u8>>,
    awaiting: Vec<GroupId>,
    last_query: Time,
}

pub struct Replica<P: ForwardPolicy = Honest> {
    me: NodeId,
    group: GroupId,
    topo: Arc<Topology>,
    params: Params,
    smr: smr::Replica<GroupMachine>,
    streams: Keyed<GroupId, StreamOut>,
    client_crypto: Crypto,
    policy: P,
    aggs: BTreeMap<MsgId, Aggregation>,
    child_votes: BTreeMap<MsgId, BTreeMap<GroupId, ChildVotes>>,
    /// Per child group: the bytes its entries in `child_votes` hold, and
    /// those entries in arrival order (for [`EARLY_BYTES`]).
    early: BTreeMap<GroupId, (usize, BTreeMap<u64, MsgId>)>,
    arrivals: u64,
    done: BTreeMap<MsgId, (Results, bool)>,
    done_order: VecDeque<MsgId>,
    /// Bytes of the results in `done` ([`DONE_BYTES`]).
    done_bytes: usize,
    requery_armed: bool,
    stats: Stats,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("node {0} is not a member of any group")]
    NotAMember(NodeId),
    #[error("the client crypto must be for {expected:?}, got {got:?}")]
    ClientCrypto { expected: Addr, got: Addr },
    #[error("recovering the group's SMR replica: {0}")]
    Recover(String),
}

impl Replica<Honest> {
    /// A correct replica. `client_crypto` is this node's identity under the
    /// address `Addr::Client(ClientId::for_replica(me))`, with the replicas of
    /// the child groups as peers (used for the requests it forwards).
    pub fn new(
        me: NodeId,
        topo: Arc<Topology>,
        params: Params,
        client_crypto: Crypto,
    ) -> Result<Self, Error> {
        Self::with_policy(me, topo, params, client_crypto, Honest)
    }

    /// A correct replica restarted from its durable records ([`Durable`]):
    /// the group's SMR replica ([`smr::Replica::recover`]; `crypto` hashes
    /// the replayed checkpoints) and the forward streams to its children,
    /// which resend what the children may not have with the same sequence
    /// numbers (see [`crate::stream`]). What the group machine did while
    /// replaying surfaces at the first step, as after a state transfer;
    /// forwards it produces again are dropped by their stream index.
    pub fn recover(
        me: NodeId,
        topo: Arc<Topology>,
        params: Params,
        client_crypto: Crypto,
        durable: Durable,
        crypto: &Crypto,
    ) -> Result<Self, Error> {
        let mut r = Self::new(me, topo, params, client_crypto)?;
        let info = r.topo.group(r.group).expect("owner group exists").clone();
        let machine = GroupMachine::new(r.group, r.topo.clone());
        r.smr = smr::Replica::recover(me, info, r.params.clone(), machine, durable.smr, crypto)
            .map_err(Error::Recover)?;
        for (child, d) in durable.streams {
            if let Some(g) = r.topo.group(child).filter(|_| r.streams.contains(&child)) {
                let s = StreamOut::new(me, g.clone(), &r.params, d);
                r.streams.insert(child, s);
            }
        }
        for (id, results, entry) in durable.done {
            r.remember_done(id, results, entry);
        }
        // asked for again at the first requery (armed in `on_start`)
        for (id, a) in durable.awaiting {
            if !r.done.contains_key(&id) {
                let agg = Aggregation {
                    entry: a.entry,
                    own: a.own,
                    awaiting: a.awaiting,
                    last_query: 0,
                };
                r.aggs.insert(id, agg);
            }
        }
        Ok(r)
    }
}

/// `params` for the SMR replica of `group`, with the client ids of its
/// parent group's replicas pinned ([`Params::pinned_clients`]): their
/// forward streams number contiguously in session 0 for as long as the
/// group lives, so their entries never expire and the session floor never
/// refuses them (see `byzscale_smr`'s `replica/execute.rs`). A bounded set,
/// the same at every member: it comes from the topology.
fn pin_parents(topo: &Topology, group: GroupId, mut params: Params) -> Params {
    let parent = topo.tree().parent(group).and_then(|p| topo.group(p));
    let ids = parent.into_iter().flat_map(|g| g.members.iter().copied());
    params.pinned_clients.extend(ids.map(ClientId::for_replica));
    params
}

impl<P: ForwardPolicy> Replica<P> {
    pub fn with_policy(
        me: NodeId,
        topo: Arc<Topology>,
        params: Params,
        client_crypto: Crypto,
        policy: P,
    ) -> Result<Self, Error> {
        let group = topo.group_of(me).ok_or(Error::NotAMember(me))?;
        let expected = Addr::Client(ClientId::for_replica(me));
        if client_crypto.me() != expected {
            return Err(Error::ClientCrypto {
                expected,
                got: client_crypto.me(),
            });
        }
        let info = topo.group(group).expect("owner group exists").clone();
        let machine = GroupMachine::new(group, topo.clone());
        let params = pin_parents(&topo, group, params);
        let smr = smr::Replica::new(me, info, params.clone(), machine);
        let streams = topo
            .tree()
            .children(group)
            .iter()
            .map(|c| {
                let g = topo.group(*c).expect("child group exists").clone();
                (*c, StreamOut::new(me, g, &params, Default::default()))
            })
            .collect();
        Ok(Replica {
            me,
            group,
            topo,
            params,
            smr,
            streams,
            client_crypto,
            policy,
            aggs: BTreeMap::new(),
            child_votes: BTreeMap::new(),
            early: BTreeMap::new(),
            arrivals: 0,
            done: BTreeMap::new(),
            done_order: VecDeque::new(),
            done_bytes: 0,
            requery_armed: false,
            stats: Stats::default(),
        })
    }

    pub fn node(&self) -> NodeId {
        self.me
    }
    pub fn group(&self) -> GroupId {
        self.group
    }
    pub fn smr(&self) -> &smr::Replica<GroupMachine> {
        &self.smr
    }
    pub fn machine(&self) -> &GroupMachine {
        self.smr.service()
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    pub fn pending_results(&self) -> usize {
        self.aggs.len()
    }
    pub fn policy_mut(&mut self) -> &mut P {
        &mut self.policy
    }

    fn parent_members(&self) -> Vec<Addr> {
        self.topo
            .tree()
            .parent(self.group)
            .and_then(|p| self.topo.group(p))
            .map(|g| g.addrs())
            .unwrap_or_default()
    }

    /// Inner replicas address parent replicas by their client identity.
    fn map_addr(a: Addr) -> Addr {
        match a {
            Addr::Client(c) if c.0 >= ClientId::REPLICA_BASE => Addr::Node(NodeId(
                (c.0 - ClientId::REPLICA_BASE).min(u32::MAX as u64) as u32,
            )),
            a => a,
        }
    }

    // ------------------------------------------------------------ inner steps

    fn smr_step(
        &mut self,
        cx: &mut Cx<'_, Self>,
        f: impl FnOnce(&mut smr::Replica<GroupMachine>, &mut Cx<'_, smr::Replica<GroupMachine>>),
    ) {
        let smr = &mut self.smr;
        let ((), step) = cx.nested(|icx| f(smr, icx));
        for o in step.lift_to(cx, Self::map_addr, Message::Smr, Timer::Smr) {
            cx.output(Output::Smr(o));
        }
        self.drain(cx);
    }

    /// A step of the forward stream to child group `y`, under this
    /// replica's client identity.
    fn stream_step(
        &mut self,
        y: GroupId,
        cx: &mut Cx<'_, Self>,
        f: impl FnOnce(&mut StreamOut, &mut Cx<'_, StreamOut>),
    ) {
        let Some(((), step)) = self.streams.step_with(&y, &self.client_crypto, cx, f) else {
            return;
        };
        let done: u64 = step
            .lift(cx, Message::Smr, |Retry| Timer::Stream(y))
            .into_iter()
            .sum();
        self.stats.forwards_acked += done;
    }

    fn submit(&mut self, f: Forward, cx: &mut Cx<'_, Self>) {
        if !self.streams.contains(&f.child) {
            return;
        }
        self.stats.forwards_submitted += 1;
        self.stream_step(f.child, cx, |s, icx| s.on_input(f, icx));
    }

    /// The forward streams to the children (for inspection).
    pub fn streams(&self) -> impl Iterator<Item = &StreamOut> {
        self.streams.iter().map(|(_, s)| s)
    }

    /// Act on what the group service did in the last SMR step.
    fn drain(&mut self, cx: &mut Cx<'_, Self>) {
        let events = self.smr.service().take_events();
        if events.is_empty() {
            return;
        }
        let mut planned = Vec::new();
        for e in events {
            match e {
                Event::Forward(f) => planned.push(f),
                Event::Deliver {
                    index,
                    msg,
                    time_ms,
                    ..
                } => cx.output(Output::Deliver {
                    group: self.group,
                    index,
                    msg,
                    time_ms,
                }),
                Event::BadCopy { sender, k, why } => {
                    let parent = self
                        .topo
                        .tree()
                        .parent(self.group)
                        .map(|p| self.topo.tree().name(p).to_string());
                    cx.fault(
                        sender,
                        Fault::BadCopy,
                        format!(
                            "index {k} of the {} stream: {why}",
                            parent.unwrap_or_default()
                        ),
                    )
                }
                Event::Restored { delivered } => cx.output(Output::Skipped {
                    group: self.group,
                    to_index: delivered,
                }),
                Event::Handled {
                    msg,
                    own,
                    awaiting,
                    entry,
                } => {
                    if entry && awaiting.is_empty() {
                        continue; // answered by the SMR reply (single-group path)
                    }
                    let id = msg.id;
                    if self.done.contains_key(&id) || self.aggs.contains_key(&id) {
                        continue;
                    }
                    // kept across a restart: a checkpoint after this
                    // step does not replay it (durable.rs)
                    cx.persist(Record::Awaiting {
                        id,
                        entry,
                        own: own.clone(),
                        awaiting: awaiting.clone(),
                    });
                    self.aggs.insert(
                        id,
                        Aggregation {
                            entry,
                            own,
                            awaiting,
                            last_query: cx.now(),
                        },
                    );
                    self.try_complete(id, cx);
                }
            }
        }
        let forwards = self.policy.forwards(planned, cx.rng());
        for f in forwards {
            self.submit(f, cx);
        }
        if !self.aggs.is_empty() && !self.requery_armed {
            self.requery_armed = true;
            cx.set_timer(Timer::Requery, self.params.client_retry);
        }
    }

    // ------------------------------------------------------------ filtering

    /// Whether the sender named in `op` is the request's client (see the module docs).
    fn check_envelope(&self, client: ClientId, op: &[u8]) -> Result<Envelope, String> {
        let env = Envelope::decode(op).map_err(|e| format!("undecodable envelope: {e}"))?;
        match &env {
            Envelope::Multicast(m) => {
                if m.id.client != client {
                    return Err(format!("multicast {} submitted by {client}", m.id));
                }
                let limit = max_multicast_op(self.params.max_op_bytes);
                if op.len() > limit {
                    return Err(format!(
                        "multicast {} of {} bytes, over the {limit} a forward of it fits in",
                        m.id,
                        op.len()
                    ));
                }
            }
            Envelope::Forward { sender, .. } => {
                let parent = self.topo.tree().parent(self.group);
                if parent.is_none() || self.topo.group_of(*sender) != parent {
                    return Err(format!(
                        "forward from {sender}, not a replica of the parent group"
                    ));
                }
                if client != ClientId::for_replica(*sender) {
                    return Err(format!("forward claiming {sender} submitted by {client}"));
                }
            }
        }
        Ok(env)
    }

    fn on_smr_message(&mut self, from: Addr, msg: byzscale_smr::Message, cx: &mut Cx<'_, Self>) {
        use byzscale_smr::Message as M;
        match msg {
            M::Reply(_) | M::Refused { .. } => {
                let Some(y) = self.child_sender(from, "SMR reply", cx) else {
                    return;
                };
                self.stream_step(y, cx, |c, icx| c.on_message(from, msg, icx));
            }
            M::Request(req) => {
                let inner_from = match from {
                    Addr::Client(c) if c.0 < ClientId::REPLICA_BASE => from,
                    Addr::Client(_) => {
                        cx.fault(
                            from,
                            Fault::RequestSpoof,
                            "a client using a replica's client id",
                        );
                        return;
                    }
                    Addr::Node(j) => {
                        let parent = self.topo.tree().parent(self.group);
                        if parent.is_none()
                            || self.topo.group_of(j) != parent
                            || req.client != ClientId::for_replica(j)
                        {
                            cx.fault(
                                from,
                                Fault::RequestSpoof,
                                format!("request as {} from {j}", req.client),
                            );
                            return;
                        }
                        Addr::Client(req.client)
                    }
                };
                let env = match self.check_envelope(req.client, &req.op) {
                    Ok(env) => env,
                    Err(e) => {
                        self.stats.rejected_requests += 1;
                        cx.fault(from, Fault::Envelope, e);
                        return;
                    }
                };
                if let Envelope::Multicast(m) = &env {
                    let children: Vec<GroupId> =
                        self.topo.tree().forward_children(self.group, &m.dst);
                    if !children.is_empty() {
                        let early = self.policy.on_client_multicast(m, &children, cx.rng());
                        for f in early {
                            self.submit(f, cx);
                        }
                    }
                }
                self.smr_step(cx, |r, icx| r.on_message(inner_from, M::Request(req), icx));
            }
            M::Forward(reqs) => {
                let mut ok = Vec::with_capacity(reqs.len());
                for r in reqs {
                    match self.check_envelope(r.client, &r.op) {
                        Ok(_) => ok.push(r),
                        Err(e) => {
                            self.stats.rejected_requests += 1;
                            cx.fault(from, Fault::Envelope, e);
                        }
                    }
                }
                if !ok.is_empty() {
                    self.smr_step(cx, |r, icx| r.on_message(from, M::Forward(ok), icx));
                }
            }
            M::Propose { view, slot, batch } => {
                for r in batch.requests.iter() {
                    if let Err(e) = self.check_envelope(r.client, &r.op) {
                        self.stats.rejected_requests += 1;
                        cx.fault(
                            from,
                            Fault::ProposeEnvelope,
                            format!("view {view} slot {slot}: {e}"),
                        );
                        return;
                    }
                }
                self.smr_step(cx, |r, icx| {
                    r.on_message(from, M::Propose { view, slot, batch }, icx)
                });
            }
            other => self.smr_step(cx, |r, icx| r.on_message(from, other, icx)),
        }
    }

    // ------------------------------------------------------------ results

    fn remember_done(&mut self, id: MsgId, results: Results, entry: bool) {
        self.done_bytes += results_bytes(&results);
        match self.done.insert(id, (results, entry)) {
            Some((old, _)) => self.done_bytes -= results_bytes(&old),
            None => self.done_order.push_back(id),
        }
        while done_over(self.done_order.len(), self.done_bytes) {
            let Some(old) = self.done_order.pop_front() else {
                break;
            };
            if let Some((r, _)) = self.done.remove(&old) {
                self.done_bytes -= results_bytes(&r);
            }
        }
    }

    /// Finished results kept to answer queries: how many, and their bytes
    /// (bounded by [`DONE_CACHE`] and [`DONE_BYTES`]).
    pub fn done_held(&self) -> (usize, usize) {
        (self.done.len(), self.done_bytes)
    }

    fn try_complete(&mut self, id: MsgId, cx: &mut Cx<'_, Self>) {
        let Some(agg) = self.aggs.get(&id) else {
            return;
        };
        let votes = self.child_votes.get(&id);
        let ready = agg.awaiting.iter().all(|y| {
            votes
                .and_then(|v| v.get(y))
                .is_some_and(|cv| cv.resolved.is_some())
        });
        if !ready {
            return;
        }
        let agg = self.aggs.remove(&id).expect("present");
        let mut merged = Results::new();
        if let Some(own) = agg.own {
            merged.insert(self.group, own);
        }
        if let Some(mut votes) = self.remove_child_votes(id) {
            for y in &agg.awaiting {
                if let Some(r) = votes.get_mut(y).and_then(|cv| cv.resolved.take()) {
                    merged.extend(r);
                }
            }
        }
        let results = self.policy.results(id, merged, cx.rng());
        // the results come from slots this group executed: they leave once
        // `Done`, and so those slots' records before it, is durable here
        cx.persist(Record::Done {
            id,
            results: results.clone(),
            entry: agg.entry,
        });
        if agg.entry {
            self.stats.replies_sent += 1;
            cx.send(
                Addr::Client(id.client),
                Message::Reply {
                    id,
                    results: results.clone(),
                },
            );
        } else {
            self.stats.results_sent += 1;
            cx.multicast(
                self.parent_members(),
                Message::Result {
                    id,
                    results: results.clone(),
                },
            );
        }
        self.remember_done(id, results, agg.entry);
    }

    fn valid_results(&self, y: GroupId, results: &Results) -> bool {
        let reach = self.topo.tree().reach(y);
        let bytes: usize = results.values().map(Vec::len).sum();
        results.keys().all(|g| reach.contains(g)) && bytes <= self.params.max_op_bytes
    }

    /// The child group of replica `from`, which sent `what`; a fault (from
    /// a non-replica, or from a group that is not a child) and `None` if
    /// it is not a child's replica.
    fn child_sender(&self, from: Addr, what: &str, cx: &mut Cx<'_, Self>) -> Option<GroupId> {
        let Some(y) = from.node().and_then(|n| self.topo.group_of(n)) else {
            cx.fault(
                from,
                Fault::Unexpected,
                format!("{what} from a non-replica"),
            );
            return None;
        };
        if !self.streams.contains(&y) {
            let detail = format!("{what} from a group that is not a child");
            cx.fault(from, Fault::Unexpected, detail);
            return None;
        }
        Some(y)
    }

    fn on_result(&mut self, from: Addr, id: MsgId, results: Results, cx: &mut Cx<'_, Self>) {
        let Some(node) = from.node() else {
            cx.fault(from, Fault::Unexpected, "result from a client");
            return;
        };
        let Some(y) = self.child_sender(from, "result", cx) else {
            return;
        };
        if !self.valid_results(y, &results) {
            cx.fault(
                from,
                Fault::ResultInvalid,
                format!("results for {id} outside the child's subtree"),
            );
            return;
        }
        if self.done.contains_key(&id) {
            return;
        }
        let topo = self.topo.clone();
        let g = topo.group(y).expect("child group exists");
        let pos = g.index_of(node).expect("member of its group");
        if !self.child_votes.contains_key(&id) && self.child_votes.len() >= EARLY_RESULTS {
            // bound memory: drop the oldest id that nothing waits for yet
            let victim = self
                .child_votes
                .keys()
                .find(|k| !self.aggs.contains_key(k))
                .copied();
            match victim {
                Some(v) => {
                    self.remove_child_votes(v);
                }
                None => return,
            }
        }
        let size = results_bytes(&results);
        if !self.aggs.contains_key(&id) && !self.make_room(y, size) {
            return; // asked for again once this replica handles `id`
        }
        let arrival = self.arrivals;
        let cv = self
            .child_votes
            .entry(id)
            .or_default()
            .entry(y)
            .or_insert_with(|| ChildVotes {
                arrival,
                ..ChildVotes::default()
            });
        if cv.resolved.is_some() {
            return;
        }
        let d = byzscale_core::crypto::digest(&codec::to_bytes(&results));
        if !matches!(cv.votes.add(&g.qs, pos, d, || results), Vote::Counted(_)) {
            return;
        }
        let early = self.early.entry(y).or_default();
        if cv.arrival == arrival {
            self.arrivals += 1;
            early.1.insert(arrival, id);
        }
        cv.bytes += size;
        early.0 += size;
        if let Some((d, r)) = cv.votes.weak(&g.qs) {
            let kept = results_bytes(r);
            early.0 = early.0 + kept - cv.bytes;
            cv.bytes = kept;
            cv.resolved = Some(r.clone());
            let liars = cv.votes.dissenters(d);
            cv.votes.clear();
            for p in liars {
                cx.fault(
                    g.members[p],
                    Fault::BadResult,
                    format!("results for {id} differ from f+1 others"),
                );
            }
            self.try_complete(id, cx);
        }
    }

    /// Drop every child's results for `id`, releasing their bytes.
    fn remove_child_votes(&mut self, id: MsgId) -> Option<BTreeMap<GroupId, ChildVotes>> {
        let votes = self.child_votes.remove(&id)?;
        for (y, cv) in &votes {
            if let Some(early) = self.early.get_mut(y) {
                early.0 -= cv.bytes;
                early.1.remove(&cv.arrival);
            }
        }
        Some(votes)
    }

    /// Make room for `size` more bytes of child `y`'s early results by
    /// dropping its oldest results of messages not handled here yet;
    /// whether there is room.
    fn make_room(&mut self, y: GroupId, size: usize) -> bool {
        loop {
            let Some((bytes, order)) = self.early.get(&y) else {
                return size <= EARLY_BYTES;
            };
            if bytes + size <= EARLY_BYTES {
                return true;
            }
            let victim = order
                .iter()
                .find(|(_, id)| !self.aggs.contains_key(id))
                .map(|(a, id)| (*a, *id));
            let Some((arrival, id)) = victim else {
                return false;
            };
            let early = self.early.get_mut(&y).expect("present");
            early.1.remove(&arrival);
            let entry = self.child_votes.get_mut(&id);
            if let Some(cv) = entry.as_ref().and_then(|v| v.get(&y)) {
                early.0 -= cv.bytes;
            }
            if let Some(v) = entry {
                v.remove(&y);
                if v.is_empty() {
                    self.child_votes.remove(&id);
                }
            }
        }
    }

    /// Bytes of child results held per child group (tests, metrics).
    pub fn early_bytes(&self) -> BTreeMap<GroupId, usize> {
        self.early.iter().map(|(y, (b, _))| (*y, *b)).collect()
    }

    fn on_query(&mut self, from: Addr, id: MsgId, cx: &mut Cx<'_, Self>) {
        let Some((results, entry)) = self.done.get(&id) else {
            tracing::debug!(replica = %self.me, %id, "query for a message not done here (or no longer cached)");
            return;
        };
        // the results are durable here before they leave again
        cx.barrier();
        match from {
            Addr::Client(c) if *entry && c == id.client => {
                cx.send(
                    from,
                    Message::Reply {
                        id,
                        results: results.clone(),
                    },
                );
            }
            Addr::Node(p)
                if !*entry && self.topo.group_of(p) == self.topo.tree().parent(self.group) =>
            {
                cx.send(
                    from,
                    Message::Result {
                        id,
                        results: results.clone(),
                    },
                );
            }
            _ => {}
        }
    }

    fn on_requery(&mut self, cx: &mut Cx<'_, Self>) {
        self.requery_armed = false;
        let now = cx.now();
        let retry = self.params.client_retry;
        let mut sends = Vec::new();
        for (id, agg) in self.aggs.iter_mut() {
            if sends.len() >= 512 {
                break;
            }
            if now < agg.last_query.saturating_add(retry) {
                continue;
            }
            agg.last_query = now;
            for y in &agg.awaiting {
                let resolved = self
                    .child_votes
                    .get(id)
                    .and_then(|v| v.get(y))
                    .is_some_and(|cv| cv.resolved.is_some());
                if !resolved {
                    sends.push((*id, *y));
                }
            }
        }
        for (id, y) in sends {
            if let Some(g) = self.topo.group(y) {
                self.stats.queries_sent += 1;
                cx.multicast(g.addrs(), Message::Query { id });
            }
        }
        if !self.aggs.is_empty() {
            self.requery_armed = true;
            cx.set_timer(Timer::Requery, retry);
        }
    }
}

impl<P: ForwardPolicy> Protocol for Replica<P> {
    type Message = Message;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = Record;

    /// The SMR layer's classes; ByzCast's own messages are control.
    fn priority(msg: &Message) -> Priority {
        match msg {
            Message::Smr(m) => m.priority(),
            _ => Priority::Control,
        }
    }

    /// Resend what the forward streams held at a restart, then start the
    /// SMR replica (whose replayed forwards the streams drop as repeats).
    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        let children: Vec<GroupId> = self.streams.keys().copied().collect();
        for y in children {
            self.stream_step(y, cx, |s, icx| s.on_start(icx));
        }
        // restored aggregations (durable.rs): one whose results were all in
        // when the replica crashed, its `Done` record lost with the unsynced
        // tail (a leaf's awaits none), completes now; replaying its slot
        // does not (the handled message is already held)
        let restored: Vec<MsgId> = self.aggs.keys().copied().collect();
        for id in restored {
            self.try_complete(id, cx);
        }
        self.smr_step(cx, |r, icx| r.on_start(icx));
    }

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        match input {
            Input::Smr(i) => self.smr_step(cx, |r, icx| r.on_input(i, icx)),
        }
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Smr(m) => self.on_smr_message(from, m, cx),
            Message::Result { id, results } => self.on_result(from, id, results, cx),
            Message::Query { id } => self.on_query(from, id, cx),
            Message::Reply { .. } => {
                cx.fault(from, Fault::Unexpected, "a client reply sent to a replica")
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Smr(t) => self.smr_step(cx, |r, icx| r.on_timer(t, icx)),
            Timer::Stream(y) => self.stream_step(y, cx, |s, icx| s.on_timer(Retry, icx)),
            Timer::Requery => self.on_requery(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tokio runtime moves a correct replica (and a client) into a task.
    #[test]
    fn protocols_are_send() {
        fn send<T: Send>() {}
        send::<Replica<Honest>>();
        send::<crate::Client>();
    }

    /// Issue 10 item 9: one Byzantine replica of a child group sends a parent
    /// replica results of 512 KiB for 300 message ids the parent never
    /// handles. What the parent holds for that child stays within
    /// [`EARLY_BYTES`] (before: up to [`EARLY_RESULTS`] ids, 150 MiB here).
    #[test]
    fn a_byzantine_child_cannot_pin_more_than_the_early_byte_bound() {
        use crate::{Topology, Tree};
        use byzscale_core::crypto::{CryptoMode, Identity};
        use byzscale_core::quorum::{FaultModel, QuorumSystem};
        use byzscale_core::Effect;
        use rand::SeedableRng;

        let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
        let topo = Tree::two_level(2);
        let topo = Arc::new(Topology::numbered(topo, &qs, crate::Mode::Byzcast).unwrap());
        let me = NodeId(8);
        let parent = topo.group_of(me).unwrap();
        let child = topo.group_of(NodeId(4)).unwrap();
        assert_eq!(topo.tree().parent(child), Some(parent));
        let id_of = |a: Addr| Identity::from_seed([a.node().map_or(99, |n| n.0 as u8); 32]);
        let as_client = Addr::Client(ClientId::for_replica(me));
        let client = Crypto::new(as_client, id_of(Addr::Node(me)), CryptoMode::Real);
        let mut r = Replica::new(
            me,
            topo,
            Params::for_network(byzscale_core::protocol::MILLIS),
            client,
        )
        .unwrap();
        let crypto = Crypto::new(Addr::Node(me), id_of(Addr::Node(me)), CryptoMode::Real);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut fx: Vec<Effect<Replica>> = Vec::new();
        let results = |n: u64| Results::from([(child, vec![n as u8; 512 << 10])]);
        // one vote per id: what is held is the ids held times one result
        let held = |r: &Replica| r.child_votes.len() * results_bytes(&results(0));
        for n in 0..300 {
            let id = MsgId {
                client: ClientId(77),
                n,
            };
            let results = results(n);
            let mut cx = Cx::new(0, &mut rng, &crypto, &mut fx);
            r.on_message(
                Addr::Node(NodeId(4)),
                Message::Result { id, results },
                &mut cx,
            );
            assert!(
                held(&r) <= EARLY_BYTES,
                "after {n}: {} bytes held",
                held(&r)
            );
        }
        assert!(held(&r) > EARLY_BYTES / 2, "recent results are kept");
        assert_eq!(r.early_bytes()[&child], held(&r), "the accounting matches");
    }

    /// A parent wraps every message it forwards in an envelope a few bytes
    /// larger than the client's. A global multicast of `max_op_bytes` was
    /// ordered by its entry group (the root here) and then refused as too
    /// large by every child, so the root's forward stream to each child
    /// retried it for ever and no later global multicast completed (found
    /// by the ByzCast scenario's Byzantine clients). The request filter
    /// now refuses a multicast with no room left for its forward, and the
    /// largest one it takes forwards within `max_op_bytes`.
    #[test]
    fn an_ordered_multicast_always_fits_in_its_forward() {
        use crate::{Topology, Tree};
        use byzscale_core::crypto::{CryptoMode, Identity};
        use byzscale_core::quorum::{FaultModel, QuorumSystem};
        use byzscale_core::Effect;
        use rand::SeedableRng;

        let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
        let topo =
            Arc::new(Topology::numbered(Tree::two_level(2), &qs, crate::Mode::Byzcast).unwrap());
        let me = NodeId(8);
        let root = topo.group_of(me).unwrap();
        assert_eq!(topo.tree().root(), root);
        let id = Identity::from_seed([8; 32]);
        let as_client = Addr::Client(ClientId::for_replica(me));
        let client = Crypto::new(as_client, id.clone(), CryptoMode::Real);
        let params = Params::for_network(byzscale_core::protocol::MILLIS);
        let limit = params.max_op_bytes;
        let mut r = Replica::new(me, topo.clone(), params, client).unwrap();
        let crypto = Crypto::new(Addr::Node(me), id, CryptoMode::Real);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let dst: Vec<GroupId> = topo.tree().targets().collect();
        assert_eq!(topo.entry(&dst), Some(root));
        // a global multicast whose envelope is exactly `len` bytes
        let multicast = |len: usize| {
            let id = MsgId {
                client: ClientId(5),
                n: 1,
            };
            McastMsg::sized(id, dst.clone(), b'x', len)
        };
        let mut refused = |r: &mut Replica, m: &McastMsg| {
            let op = Envelope::Multicast(m.clone()).encode();
            let req = smr::Request {
                client: ClientId(5),
                session: 0,
                seq: 1,
                read_only: false,
                op,
                auth: vec![Default::default(); 4],
                sig: None,
            };
            let mut fx: Vec<Effect<Replica>> = Vec::new();
            let mut cx = Cx::new(0, &mut rng, &crypto, &mut fx);
            r.on_message(
                Addr::Client(ClientId(5)),
                Message::Smr(smr::Message::Request(req)),
                &mut cx,
            );
            fx.iter()
                .any(|e| matches!(e, Effect::Fault(f) if f.is(Fault::Envelope)))
        };
        let largest = multicast(max_multicast_op(limit));
        assert!(!refused(&mut r, &largest), "the largest multicast is taken");
        let forward = Envelope::Forward {
            sender: NodeId(u32::MAX),
            k: u64::MAX,
            msg: largest,
        };
        assert!(forward.encode().len() <= limit, "its forward fits");
        for len in [max_multicast_op(limit) + 1, limit] {
            assert!(refused(&mut r, &multicast(len)), "{len} bytes taken");
        }
    }

    /// A child group's SMR pins its parent replicas' client ids (their
    /// forward streams number in session 0 for ever, see
    /// [`Params::pinned_clients`]); the root pins nobody.
    #[test]
    fn a_child_group_pins_its_parents_streams() {
        use crate::{Topology, Tree};
        use byzscale_core::crypto::{CryptoMode, Identity};
        use byzscale_core::quorum::{FaultModel, QuorumSystem};

        let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
        let topo = Tree::two_level(2);
        let topo = Arc::new(Topology::numbered(topo, &qs, crate::Mode::Byzcast).unwrap());
        let make = |me: NodeId| {
            let as_client = Addr::Client(ClientId::for_replica(me));
            let id = Identity::from_seed([me.0 as u8; 32]);
            let client = Crypto::new(as_client, id, CryptoMode::Real);
            let p = Params::for_network(byzscale_core::protocol::MILLIS);
            Replica::new(me, topo.clone(), p, client).unwrap()
        };
        let root = topo.group_of(NodeId(8)).unwrap();
        let parents: std::collections::BTreeSet<ClientId> = topo
            .group(root)
            .unwrap()
            .members
            .iter()
            .map(|m| ClientId::for_replica(*m))
            .collect();
        assert_eq!(parents.len(), 4);
        assert_eq!(make(NodeId(4)).params.pinned_clients, parents);
        assert!(make(NodeId(8)).params.pinned_clients.is_empty());
    }
}
