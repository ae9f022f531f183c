//! The checkers of `sim byzcast` (see the crate docs): [`Audit`] observes
//! every delivery and completion as it happens, and [`Audit::finish`] adds
//! the end-of-run checks (every correct replica reached its group's last
//! position, validity, acyclic order, atomicity across shards,
//! linearizability of single-group histories, liveness).

use crate::workload::Workload;
use crate::{clients, Correct, Input, Output, Run, TablePeaks};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_byzcast::{self as byzcast, McastMsg, Message, MsgId, Topology};
use byzscale_core::crypto::digest;
use byzscale_core::protocol::Time;
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_sim::check::linearizability;
use byzscale_sim::check::order::{cycle_text, OrderChecker};
use byzscale_sim::check::LogChecker;
use byzscale_sim::closed_loop::ClientNodes;
use byzscale_sim::crashes::CrashPlan;
use byzscale_sim::engine::{Control, NodeIdx, Sim};
use byzscale_sim::scenario::{Ending, Outcome, Violations, World};
use byzscale_smr as smr;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A replica node of the run: its group, its id, whether it is Byzantine.
pub type ReplicaNodes = BTreeMap<NodeIdx, (GroupId, NodeId, bool)>;

/// The world of one run: the workload and the checkers.
pub struct Audit {
    seed: u64,
    topo: Arc<Topology>,
    replicas: ReplicaNodes,
    clients: ClientNodes,
    pub workload: Workload,
    logs: BTreeMap<GroupId, LogChecker<NodeId, MsgId>>,
    /// Highest position each correct replica reached (delivered or skipped to).
    reached: BTreeMap<NodeId, u64>,
    /// Per correct replica, the position it delivered each message at.
    delivered_by: BTreeMap<NodeId, BTreeMap<MsgId, u64>>,
    order: OrderChecker<MsgId, NodeId>,
    violations: Violations,
    views: BTreeMap<NodeId, u64>,
    deliveries: u64,
    /// Stop when the workload is done (not in fixed-duration runs).
    stop_when_done: bool,
    /// Crash-restart episodes, started as multicasts complete.
    crashes: CrashPlan,
    /// The replicas' parameters (the bounds of their tables).
    params: smr::Params,
    /// The Byzantine clients' nodes and ids ([`crate::clients`]).
    hostile: Vec<NodeIdx>,
    hostile_ids: BTreeSet<ClientId>,
    trace: Option<Vec<String>>,
    /// With expiry on: the batch time each message ran at in each of its
    /// groups, as correct replicas delivered it (all must agree).
    times: Option<BTreeMap<(MsgId, GroupId), u64>>,
}

impl Audit {
    pub fn new(
        seed: u64,
        topo: Arc<Topology>,
        replicas: ReplicaNodes,
        client_nodes: Vec<NodeIdx>,
        workload: Workload,
        stop_when_done: bool,
        trace: bool,
    ) -> Self {
        Audit {
            seed,
            topo,
            replicas,
            clients: ClientNodes::new(client_nodes),
            workload,
            logs: BTreeMap::new(),
            reached: BTreeMap::new(),
            delivered_by: BTreeMap::new(),
            order: OrderChecker::new(),
            violations: Violations::new(),
            views: BTreeMap::new(),
            deliveries: 0,
            stop_when_done,
            crashes: CrashPlan::none(),
            params: smr::Params::default(),
            hostile: Vec::new(),
            hostile_ids: BTreeSet::new(),
            trace: trace.then(Vec::new),
            times: None,
        }
    }

    /// Check the history at each group's batch times (`--expiry`).
    pub fn with_expiry(mut self, on: bool) -> Self {
        self.times = on.then(BTreeMap::new);
        self
    }

    /// Crash and restart replicas as `plan` says.
    pub fn with_crashes(mut self, plan: CrashPlan) -> Self {
        self.crashes = plan;
        self
    }

    /// Hold every correct replica's tables to the bounds of `params`; the
    /// Byzantine clients are at `hostile`, with the ids `hostile_ids`.
    pub fn with_bounds(
        mut self,
        params: smr::Params,
        hostile: Vec<NodeIdx>,
        hostile_ids: BTreeSet<ClientId>,
    ) -> Self {
        self.params = params;
        self.hostile = hostile;
        self.hostile_ids = hostile_ids;
        self
    }

    fn gname(&self, g: GroupId) -> String {
        self.topo.tree().name(g).to_string()
    }

    /// Add a `--trace` line, if tracing.
    fn trace(&mut self, line: impl FnOnce(&Self) -> serde_json::Value) {
        if self.trace.is_none() {
            return;
        }
        let line = line(self).to_string();
        if let Some(t) = &mut self.trace {
            t.push(line);
        }
    }

    fn names(&self, dst: &[GroupId]) -> Vec<String> {
        dst.iter().map(|g| self.gname(*g)).collect()
    }

    /// Replica `(group, node, byz)` a-delivered `msg`, its `index`-th, at
    /// its group's batch time `time_ms`.
    fn on_deliver(
        &mut self,
        at: Time,
        (group, node, byz): (GroupId, NodeId, bool),
        index: u64,
        msg: McastMsg,
        time_ms: u64,
    ) {
        self.trace(|a| {
            serde_json::json!({
                "type": "deliver", "run": a.seed, "group": a.gname(group), "node": node.0,
                "byzantine": byz, "index": index, "msg": msg.id.to_string(),
                "dst": a.names(&msg.dst), "at_ns": at, "time_ms": time_ms,
            })
        });
        if byz {
            return;
        }
        if let Some(times) = &mut self.times {
            let t = *times.entry((msg.id, group)).or_insert(time_ms);
            if t != time_ms {
                let gname = self.gname(group);
                self.violations.push(format!(
                    "clock: {node} of {gname} ran {} at {time_ms} ms, another correct replica at {t} ms",
                    msg.id
                ));
            }
        }
        self.deliveries += 1;
        self.logs
            .entry(group)
            .or_default()
            .decide(node, index, msg.id);
        let r = self.reached.entry(node).or_insert(0);
        *r = (*r).max(index);
        let gname = self.gname(group);
        if !msg.dst.contains(&group) {
            self.violations.push(format!(
                "integrity: {node} of {gname} delivered {} addressed to {:?}",
                msg.id, msg.dst
            ));
        }
        match self.workload.submitted(&msg.id) {
            // a Byzantine client's messages are its own (see `crate::clients`)
            None if self.hostile_ids.contains(&msg.id.client) => {}
            None => self.violations.push(format!(
                "integrity: {node} of {gname} delivered {}, which no client multicast",
                msg.id
            )),
            Some((dst, d)) if *dst != msg.dst || *d != digest(&msg.payload) => self.violations.push(format!(
                "integrity: {node} of {gname} delivered {} with destinations or payload other than multicast",
                msg.id
            )),
            Some(_) => {}
        }
        // a restarted replica delivers again what it replays, at the same
        // positions (the log checker catches a repeat within one incarnation)
        let at = self.delivered_by.entry(node).or_default().entry(msg.id);
        if *at.or_insert(index) != index {
            self.violations.push(format!(
                "integrity: {node} of {gname} delivered {} twice",
                msg.id
            ));
        }
        // after a restart or a state transfer, the delivery follows the
        // group's previous position, whoever delivered it
        let prev = index
            .checked_sub(1)
            .and_then(|p| self.logs[&group].decided(p));
        if let Some(prev) = prev.copied() {
            self.order.resume(node, prev);
        }
        self.order.deliver(node, group, msg.id);
    }

    fn on_done(
        &mut self,
        at: Time,
        c: usize,
        n: u64,
        results: Result<byzcast::Results, String>,
        ctl: &mut Control<Input>,
    ) {
        let Some(done) = self.workload.complete(c, n, at, results) else {
            self.violations.push(format!(
                "integrity: client {} completed multicast {n} twice",
                c + 1
            ));
            return;
        };
        if let Some(e) = &done.failed {
            self.violations.push(format!(
                "validity: client {}'s multicast {n} failed: {e}",
                c + 1
            ));
        }
        self.trace(|a| {
            serde_json::json!({
                "type": "complete", "run": a.seed, "client": c + 1, "msg": format!("{}:{n}", c + 1),
                "dst": a.names(&done.dst), "op": done.op.to_string(), "result": done.reply.to_string(),
                "invoked_ns": done.invoked, "completed_ns": at,
            })
        });
        self.next(c, at, ctl);
    }

    /// Client `c`'s `n`-th multicast failed, outcome unknown (its entry
    /// group expired the client's session): neither a violation nor, by
    /// itself, a liveness failure; the checkers take it as possibly
    /// delivered.
    fn on_expired(&mut self, at: Time, c: usize, n: u64, ctl: &mut Control<Input>) {
        if !self.workload.expire(c, n) {
            self.violations.push(format!(
                "integrity: client {} completed multicast {n} twice",
                c + 1
            ));
            return;
        }
        self.trace(|a| {
            serde_json::json!({
                "type": "expired", "run": a.seed, "client": c + 1, "msg": format!("{}:{n}", c + 1), "at_ns": at,
            })
        });
        self.next(c, at, ctl);
    }

    /// Client `c` is free: its next multicast, the crash plan's progress,
    /// the end of the run.
    fn next(&mut self, c: usize, at: Time, ctl: &mut Control<Input>) {
        if let Some(input) = self.workload.next(c, at) {
            ctl.input(self.clients.node(c), Input::Client(input));
        }
        let completed = self.workload.completed_local + self.workload.completed_global;
        self.crashes.progress(completed, ctl);
        if self.stop_when_done && self.workload.done() {
            ctl.stop();
        }
    }

    /// The end-of-run checks and the run's figures. `window` is the virtual
    /// time over which throughput is counted (`None`: until the work was done).
    pub fn finish(
        mut self,
        sim: &Sim<Message, Input, Output>,
        ending: Ending,
        window: Option<Time>,
        out: &mut Outcome,
    ) -> Run {
        let end = out.ended_at;
        let fixed = window.is_some();
        if !fixed && ending != Ending::Done {
            out.liveness = Some(self.stuck(sim, ending));
        }
        if out.liveness.is_none() && !fixed {
            self.check_complete(sim);
        }
        if let Some(c) = self.order.find_cycle() {
            let text = cycle_text(&c, |g| self.gname(g));
            self.violations
                .push(format!("order: the delivery order has a cycle: {text}"));
        }
        // atomicity across shards: the merged replies are those of one serial
        // execution in an order extending every group's delivery order
        if out.liveness.is_none() {
            if let (Some(order), Some(replies)) =
                (self.order.topological(), self.workload.replies.as_ref())
            {
                let targets = self.topo.tree().target_count();
                let clocks = self.times.as_ref();
                for v in serial_replay(&order, replies, targets, clocks)
                    .into_iter()
                    .take(3)
                {
                    self.violations.push(v);
                }
            }
        }
        // Atomic multicast orders messages consistently but, across groups, not
        // in real time: a multi-group read can be delivered at one group long
        // before another while single-group writes complete in between.
        // Linearizability is therefore checked only for histories without
        // multi-group messages.
        // Each shard is checked on its own (its keys are its own, and with
        // expiry its batch times are its clock).
        let mut inconclusive = false;
        let mut timed_ops = 0;
        if let Some(history) = self.workload.take_history() {
            let mut shards: BTreeMap<GroupId, Vec<linearizability::Op>> = BTreeMap::new();
            for (id, op) in history {
                let Some((dst, _)) = self.workload.submitted(&id) else {
                    continue;
                };
                let g = dst[0];
                let op = match self.times.as_ref().map(|t| t.get(&(id, g))) {
                    Some(Some(&t)) => {
                        timed_ops += 1;
                        op.at(t)
                    }
                    // no correct replica ran it: it never took effect
                    Some(None) if op.is_pending() => continue,
                    _ => op,
                };
                shards.entry(g).or_default().push(op);
            }
            for h in shards.values() {
                inconclusive |= linearizability::audit(h, &mut self.violations);
            }
        }
        let tables = self.tables(sim);
        let mut violations = std::mem::take(&mut self.violations);
        for l in self.logs.values() {
            violations.add(l.violations(), l.violation_count());
        }
        out.violations = violations;
        out.trace = self.trace.take().unwrap_or_default();
        let window_s = window.unwrap_or(end) as f64 / 1e9;
        let w = &mut self.workload;
        Run {
            completed_local: w.completed_local,
            expired: w.expired,
            completed_global: w.completed_global,
            deliveries: self.deliveries,
            view_changes: self.views.values().copied().max().unwrap_or(0),
            linearizability_inconclusive: inconclusive,
            timed_ops,
            throughput_local: w.window_local as f64 / window_s.max(1e-9),
            throughput_global: w.window_global as f64 / window_s.max(1e-9),
            latencies_local: std::mem::take(&mut w.latencies_local),
            latencies_global: std::mem::take(&mut w.latencies_global),
            tables,
            byzantine_sends: self
                .hostile
                .iter()
                .filter_map(|i| sim.protocol::<clients::ByzHostile>(*i))
                .map(|h| h.sent())
                .sum(),
        }
    }

    /// Per group, the peaks of its tables at its correct replicas (the
    /// last incarnation of each); a table over its bound is a violation.
    fn tables(&mut self, sim: &Sim<Message, Input, Output>) -> BTreeMap<GroupId, TablePeaks> {
        let mut out: BTreeMap<GroupId, TablePeaks> = BTreeMap::new();
        for (idx, (g, m, byz)) in &self.replicas {
            let Some(r) = sim.protocol::<Correct>(*idx).filter(|_| !byz) else {
                continue;
            };
            let st = r.smr().stats();
            let who = format!("{m} of {}", self.topo.tree().name(*g));
            for v in byzscale_scenario_smr::table_bounds(&who, &st, &self.params) {
                self.violations.push(v);
            }
            let e = out.entry(*g).or_default();
            *e = e.max(TablePeaks {
                client_table_bytes: st.client_bytes_peak as u64,
                pending_bytes: st.pending_bytes_peak as u64,
            });
        }
        out
    }

    /// Every correct replica reached its group's last position, and every
    /// multicast is in the log of every destination.
    fn check_complete(&mut self, sim: &Sim<Message, Input, Output>) {
        let tree = self.topo.tree().clone();
        let correct: Vec<(GroupId, NodeId)> = self
            .replicas
            .values()
            .filter(|(_, _, b)| !b)
            .map(|(g, m, _)| (*g, *m))
            .collect();
        for g in tree.targets() {
            let top = self.logs.get(&g).map(|l| l.highest()).unwrap_or(0);
            for (_, m) in correct.iter().filter(|(gg, _)| *gg == g) {
                let r = self.reached.get(m).copied().unwrap_or(0);
                if r < top {
                    let idx = self.replicas.iter().find(|(_, (_, mm, _))| mm == m);
                    let state = idx
                        .and_then(|(i, _)| self.state(sim, *i))
                        .unwrap_or_else(|| "down".into());
                    self.violations.push(format!(
                        "agreement: {m} of {} reached position {r} of {top} ({state})",
                        tree.name(g)
                    ));
                }
            }
        }
        let in_log: BTreeMap<GroupId, BTreeSet<MsgId>> = self
            .logs
            .iter()
            .map(|(g, l)| {
                let ids = (1..=l.highest()).filter_map(|p| l.decided(p).copied());
                (*g, ids.collect())
            })
            .collect();
        let mut missing = Vec::new();
        for (id, dst) in self.workload.all_submitted() {
            for g in dst {
                if !in_log.get(g).is_some_and(|s| s.contains(id)) {
                    missing.push(format!(
                        "validity: multicast {id} never delivered at {}",
                        tree.name(*g)
                    ));
                }
            }
        }
        for v in missing {
            self.violations.push(v);
        }
    }

    /// A correct replica's progress, if it is up.
    fn state(&self, sim: &Sim<Message, Input, Output>, idx: NodeIdx) -> Option<String> {
        let r = sim.protocol::<Correct>(idx)?;
        let st = r.smr().stats();
        let ms = r.machine().stats();
        Some(format!(
            "view {} executed {} low {} transfers {} clients {} refused {} delivered {} stream-next {} waiting-results {}",
            st.view,
            st.executed,
            st.low,
            st.state_transfers,
            st.clients,
            st.clients_refused,
            ms.delivered,
            ms.stream_next,
            r.pending_results()
        ))
    }

    /// Why the run did not complete, with the state of some correct replicas.
    fn stuck(&self, sim: &Sim<Message, Input, Output>, ending: Ending) -> String {
        let states: Vec<String> = self
            .replicas
            .iter()
            .filter(|(_, (_, _, b))| !b)
            .filter_map(|(idx, (g, m, _))| {
                let state = self.state(sim, *idx)?;
                Some(format!("{m}@{}: {state}", self.gname(*g)))
            })
            .take(12)
            .collect();
        let pending = format!("{} multicasts", self.workload.pending());
        ending.stuck(sim.now(), &pending, &states)
    }
}

impl World for Audit {
    type Input = Input;
    type Output = Output;

    fn done(&self) -> bool {
        self.workload.done()
    }
    /// A run goes on after a violation: the end-of-run checks (validity,
    /// acyclic order, atomicity) see the whole run.
    fn failed(&self) -> bool {
        false
    }

    /// A correct replica restarted from its disk: it replays its group's
    /// log from its checkpoint ([`byzcast::Output::Skipped`], then the
    /// deliveries after it again), each checked against what was delivered
    /// at that position; no order edge crosses the restart.
    fn on_restart(&mut self, _at: Time, node: NodeIdx, _ctl: &mut Control<Input>) {
        let Some(&(group, id, false)) = self.replicas.get(&node) else {
            return;
        };
        self.logs.entry(group).or_default().restart(id, 0);
        self.order.skip(&id);
    }

    fn on_output(
        &mut self,
        at: Time,
        node: NodeIdx,
        _addr: Addr,
        out: Output,
        ctl: &mut Control<Input>,
    ) {
        match out {
            Output::Client(byzcast::client::Output::Done { n, results, .. }) => {
                if let Some(c) = self.clients.at(node) {
                    self.on_done(at, c, n, results, ctl);
                }
            }
            Output::Client(byzcast::client::Output::Failed { n, .. }) => {
                if let Some(c) = self.clients.at(node) {
                    self.on_expired(at, c, n, ctl);
                }
            }
            Output::Replica(out) => {
                let Some(&(group, id, byz)) = self.replicas.get(&node) else {
                    return;
                };
                match out {
                    byzcast::replica::Output::Deliver {
                        group: g,
                        index,
                        msg,
                        time_ms,
                    } => {
                        if g != group && !byz {
                            let (a, b) = (self.gname(group), self.gname(g));
                            self.violations
                                .push(format!("integrity: {id} of {a} delivered as {b}"));
                        }
                        self.on_deliver(at, (group, id, byz), index, msg, time_ms);
                    }
                    byzcast::replica::Output::Skipped { to_index, .. } if !byz => {
                        self.logs.entry(group).or_default().skip_to(id, to_index);
                        self.order.skip(&id);
                        let r = self.reached.entry(id).or_insert(0);
                        *r = (*r).max(to_index);
                    }
                    byzcast::replica::Output::Smr(smr::replica::Output::ViewChanged {
                        view,
                        ..
                    }) if !byz => {
                        let v = self.views.entry(id).or_insert(0);
                        *v = (*v).max(view);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Execute every completed multicast on one unsharded KV model in `order`
/// (an order extending every group's deliveries) and report each reply that
/// differs from what the client got (`None`: its outcome is unknown to the
/// client, see [`crate::workload::Workload::expire`]; applied, not compared).
///
/// With expiry (`clocks`: the batch time a message ran at in a group), one
/// model cannot replay the shards, whose clocks differ: a key's deadline is
/// set at its own shard's time. Then each of the `targets` shards replays
/// its part of every multicast on a model of its own, at its own times, and
/// the parts' replies are merged as the client merges them
/// (`byzcast::kv::restrict` and `merge`, as the group service runs them).
pub fn serial_replay(
    order: &[MsgId],
    replies: &BTreeMap<MsgId, (KvOp, Option<KvReply>)>,
    targets: usize,
    clocks: Option<&BTreeMap<(MsgId, GroupId), u64>>,
) -> Vec<String> {
    use byzscale_apps::kv::Model;
    use byzscale_byzcast::kv as shard;
    let mut whole = Model::new();
    let mut shards: BTreeMap<GroupId, Model> = BTreeMap::new();
    let mut out = Vec::new();
    for id in order {
        let Some((op, got)) = replies.get(id) else {
            continue;
        };
        let want = match clocks {
            None => whole.apply(op),
            Some(clocks) => {
                let mut parts = byzcast::Results::new();
                for g in shard::groups_of(op, targets) {
                    let model = shards.entry(g).or_default();
                    if let Some(&t) = clocks.get(&(*id, g)) {
                        model.advance(t);
                    }
                    let part = match shard::restrict(op, g, targets) {
                        Some(sub) => model.apply(&sub),
                        None => KvReply::Error("ERR no key of this operation lives here".into()),
                    };
                    parts.insert(g, part.encode());
                }
                shard::merge(op, &parts, targets)
            }
        };
        let Some(got) = got else {
            continue;
        };
        if want != *got {
            out.push(format!(
                "atomicity: {id} {op} returned {got}, but executing every multicast in the delivery order gives {want}"
            ));
        }
    }
    out
}
