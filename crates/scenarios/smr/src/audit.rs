//! The checkers of `sim smr` (see the crate docs): they observe every output
//! of the run as it happens ([`Audit`] is the run's world) and finish with the
//! linearizability and liveness verdicts ([`Audit::finish`]).

use crate::batch_times::BatchTimes;
use crate::workload::Workload;
use crate::{Config, Input, Output, Rep, ReplicaNodes, Restarts, Run};
use byzscale_core::crypto::Digest;
use byzscale_core::protocol::Time;
use byzscale_core::Addr;
use byzscale_sim::check::linearizability;
use byzscale_sim::check::LogChecker;
use byzscale_sim::closed_loop::ClientNodes;
use byzscale_sim::engine::{Control, NodeIdx, Sim};
use byzscale_sim::scenario::{Ending, Outcome, Violations, World};
use byzscale_smr::{self as smr, Batch, Message, Params};
use std::collections::{BTreeMap, BTreeSet};

/// A digest that prints as short hex in violation reports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex(pub Digest);

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", hex::encode(&self.0[..8]))
    }
}

/// The world of one run: the workload and the checkers.
pub struct Audit {
    seed: u64,
    byzantine: BTreeSet<usize>,
    replicas: ReplicaNodes,
    clients: ClientNodes,
    pub workload: Workload,
    log: LogChecker<usize, Hex>,
    violations: Violations,
    views: BTreeMap<usize, u64>,
    /// Crash-restart episodes (started as requests complete) and the disks
    /// restarted replicas recover from.
    restarts: Restarts,
    /// The replicas' parameters (the bounds of their tables).
    params: Params,
    trace: Option<Vec<String>>,
    /// With expiry on: what correct replicas decided, to give the history
    /// its batch times.
    batch_times: Option<BatchTimes>,
}

impl Audit {
    pub fn new(
        cfg: &Config,
        seed: u64,
        byzantine: BTreeSet<usize>,
        replicas: ReplicaNodes,
        client_nodes: Vec<NodeIdx>,
        restarts: Restarts,
        params: Params,
    ) -> Self {
        Audit {
            seed,
            byzantine,
            replicas,
            clients: ClientNodes::new(client_nodes),
            workload: Workload::new(cfg.clients, cfg.requests, cfg.read_ratio, seed)
                .with_transactions(cfg.transactions)
                .with_expiry(cfg.expiry),
            log: LogChecker::new(),
            violations: Violations::new(),
            views: BTreeMap::new(),
            restarts,
            params,
            trace: cfg.trace.as_ref().map(|_| Vec::new()),
            batch_times: cfg.expiry.then(BatchTimes::default),
        }
    }

    fn on_done(
        &mut self,
        (at, node): (Time, NodeIdx),
        out: smr::client::Output,
        ctl: &mut Control<Input>,
    ) {
        let smr::client::Output::Done {
            id,
            result,
            ordered,
            invoked,
            slot,
        } = out
        else {
            return;
        };
        let Some(c) = self.clients.at(node) else {
            return;
        };
        let slot = ordered.then_some(slot);
        let Some(done) = self.workload.complete(c, id, (invoked, at), &result, slot) else {
            return self.twice(c, id);
        };
        if let Some(t) = &mut self.trace {
            t.push(
                serde_json::json!({
                    "type": "complete", "run": self.seed, "client": c + 1, "seq": id,
                    "op": done.op.to_string(), "result": done.reply.to_string(), "ordered": ordered,
                    "invoked_ns": invoked, "completed_ns": at,
                })
                .to_string(),
            );
        }
        self.next(c, at, ctl);
    }

    /// Client `c`'s submission `id` failed, outcome unknown (its session
    /// expired): not a violation, nor a liveness failure by itself; the
    /// linearizability check takes it as possibly applied.
    fn on_expired(&mut self, at: Time, node: NodeIdx, id: u64, ctl: &mut Control<Input>) {
        let Some(c) = self.clients.at(node) else {
            return;
        };
        if !self.workload.expire(c, id, at) {
            return self.twice(c, id);
        }
        if let Some(t) = &mut self.trace {
            t.push(
                serde_json::json!({
                    "type": "expired", "run": self.seed, "client": c + 1, "seq": id, "at_ns": at,
                })
                .to_string(),
            );
        }
        self.next(c, at, ctl);
    }

    /// Client `c` completed submission `id` a second time.
    fn twice(&mut self, c: usize, id: u64) {
        let v = format!("integrity: client {c} completed request {id} twice");
        self.violations.push(v);
    }

    /// Client `c` is free: its next submission, the restart plan's
    /// progress, the end of the run.
    fn next(&mut self, c: usize, at: Time, ctl: &mut Control<Input>) {
        if let Some(input) = self.workload.next(c, at) {
            ctl.input(self.clients.node(c), Input::Client(input));
        }
        self.restarts.plan.progress(self.workload.completed, ctl);
        if self.workload.done() {
            ctl.stop();
        }
    }

    fn on_decided(
        &mut self,
        at: Time,
        pos: usize,
        slot: u64,
        digest: Digest,
        batch: &Batch,
        ctl: &mut Control<Input>,
    ) {
        let byz = self.byzantine.contains(&pos);
        if let Some(t) = &mut self.trace {
            let reqs: Vec<_> = batch
                .requests
                .iter()
                .map(|r| serde_json::json!({"client": r.client.0, "seq": r.seq}))
                .collect();
            t.push(
                serde_json::json!({
                    "type": "decide", "run": self.seed, "node": pos, "byzantine": byz,
                    "slot": slot, "digest": hex::encode(digest), "requests": reqs,
                })
                .to_string(),
            );
        }
        if byz {
            return;
        }
        if let Some(times) = &mut self.batch_times {
            times.decided(at, slot, batch);
        }
        self.log.decide(pos, slot, Hex(digest));
        if self.log.violation_count() > 0 {
            ctl.stop(); // the seed has failed; the rest is noise
        }
        for r in batch.requests.iter() {
            // a Byzantine client's requests are its own ([`crate::clients`])
            if r.client.0 < crate::clients::BYZ_BASE && !self.workload.submitted(r.client, &r.op) {
                self.violations.push(format!(
                    "validity: replica {pos} decided {}#{} at slot {slot}, never submitted",
                    r.client, r.seq
                ));
            }
        }
    }

    /// The end-of-run verdicts: violations, linearizability, liveness.
    pub fn finish(
        mut self,
        sim: &Sim<Message, Input, Output>,
        ending: Ending,
        out: &mut Outcome,
    ) -> Run {
        let mut violations = std::mem::take(&mut self.violations);
        violations.add(self.log.violations(), self.log.violation_count());
        let (history, ran) = self.workload.take_history();
        let (history, stamped) = match &self.batch_times {
            Some(times) => times.stamp(history, &ran),
            None => (history, Default::default()),
        };
        let inconclusive = linearizability::audit(&history, &mut violations);
        if !self.workload.done() && !self.failed() {
            out.liveness = Some(self.stuck(sim, ending));
        }
        out.trace = self.trace.take().unwrap_or_default();
        let stats: Vec<_> = self.correct(sim).map(|(p, r)| (p, r.stats())).collect();
        // the peaks of each correct replica's last incarnation
        for (p, s) in &stats {
            for v in crate::table_bounds(&format!("replica {p}"), s, &self.params) {
                violations.push(v);
            }
        }
        out.violations = violations;
        let stats: Vec<_> = stats.into_iter().map(|(_, s)| s).collect();
        let most = |f: fn(&smr::replica::Stats) -> u64| stats.iter().map(f).max().unwrap_or(0);
        Run {
            completed: self.workload.completed,
            committed: self.workload.committed,
            expired: self.workload.expired,
            view_changes: self.views.values().copied().max().unwrap_or(0),
            linearizability_inconclusive: inconclusive,
            latencies: std::mem::take(&mut self.workload.latencies),
            client_table_peak: most(|s| s.client_bytes_peak as u64),
            pending_peak: most(|s| s.pending_bytes_peak as u64),
            clients_expired: most(|s| s.clients_expired),
            timed_ops: stamped.timed,
            tentative_slots: most(|s| s.tentative_slots),
        }
    }

    /// The correct replicas that are up, by position.
    fn correct<'a>(
        &'a self,
        sim: &'a Sim<Message, Input, Output>,
    ) -> impl Iterator<Item = (usize, &'a Rep)> + 'a {
        self.replicas
            .iter()
            .filter(|(_, p)| !self.byzantine.contains(p))
            .filter_map(|(idx, p)| Some((*p, sim.protocol::<Rep>(*idx)?)))
    }

    /// Why the run did not complete, with the state of each correct replica.
    fn stuck(&self, sim: &Sim<Message, Input, Output>, ending: Ending) -> String {
        let states: Vec<String> = self
            .correct(sim)
            .map(|(p, r)| {
                let st = r.stats();
                format!(
                    "n{p}: view {} {:?} executed {} pending {}",
                    st.view,
                    r.status(),
                    st.executed,
                    st.pending
                )
            })
            .collect();
        let pending = format!("{} client requests", self.workload.pending());
        ending.stuck(sim.now(), &pending, &states)
    }
}

impl World for Audit {
    type Input = Input;
    type Output = Output;

    fn done(&self) -> bool {
        self.workload.done()
    }
    fn failed(&self) -> bool {
        self.log.violation_count() > 0 || !self.violations.is_empty()
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
            Output::Client(done @ smr::client::Output::Done { .. }) => {
                self.on_done((at, node), done, ctl)
            }
            Output::Client(smr::client::Output::Failed { id, .. }) => {
                self.on_expired(at, node, id, ctl)
            }
            // the workload's ops fit `max_op_bytes`: a refusal is a scenario bug
            Output::Client(smr::client::Output::Refused { id, error }) => self.violations.push(
                format!("client {node:?} refused its operation #{id}: {error}"),
            ),
            Output::Replica(out) => {
                let Some(&pos) = self.replicas.get(&node) else {
                    return;
                };
                let byz = self.byzantine.contains(&pos);
                match out {
                    smr::replica::Output::Decided {
                        slot,
                        digest,
                        batch,
                        ..
                    } => self.on_decided(at, pos, slot, digest, &batch, ctl),
                    smr::replica::Output::StateTransferred { slot } if !byz => {
                        self.log.skip_to(pos, slot)
                    }
                    smr::replica::Output::ViewChanged { view, .. } if !byz => {
                        let v = self.views.entry(pos).or_insert(0);
                        *v = (*v).max(view);
                    }
                    _ => {}
                }
            }
        }
    }

    /// A correct replica restarted from its disk: it executes again the
    /// state of its checkpoint and the decided slots after it (as
    /// [`byzscale_smr::Replica::recover`] does), which must agree with what
    /// was decided there; a state transfer follows if its state is older
    /// than its stable checkpoint.
    fn on_restart(&mut self, at: Time, node: NodeIdx, ctl: &mut Control<Input>) {
        let Some(&pos) = self.replicas.get(&node) else {
            return;
        };
        let Some(disk) = self.restarts.disks.get(&node).cloned() else {
            return;
        };
        let disk = disk.borrow();
        let kept = disk.state();
        let start = kept.checkpoint.as_ref().map_or(0, |(c, _)| c.slot);
        self.log.restart(pos, start);
        if start < kept.low() {
            return;
        }
        for slot in start + 1.. {
            let Some(s) = kept.slots.get(&slot) else {
                break;
            };
            let Some((_, digest)) = s.votes.decided else {
                break;
            };
            let Some(batch) = s.values.get(&digest) else {
                break;
            };
            self.on_decided(at, pos, slot, digest, batch, ctl);
        }
    }

    fn on_fault(
        &mut self,
        _at: Time,
        node: NodeIdx,
        fault: &byzscale_core::Fault,
        _ctl: &mut Control<Input>,
    ) {
        if fault.is(smr::Fault::DivergentState) {
            if let Some(&pos) = self.replicas.get(&node) {
                if !self.byzantine.contains(&pos) {
                    self.violations
                        .push(format!("state: replica {pos}: {}", fault.detail));
                }
            }
        }
    }
}
