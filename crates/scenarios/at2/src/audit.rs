//! The checkers of `sim at2` (see the crate docs), over correct processes
//! only. [`Audit`] is the run's world: it drives the [`Workload`] and
//! observes every output as it happens (agreement, replayed balances, fake
//! dependencies); [`Audit::finish`] checks every correct process's final
//! ledger and gives the liveness verdict:
//!
//! | checker | when | what |
//! |---|---|---|
//! | agreement | on each application | no two correct processes apply different transfers with the same `(account, seq)`; each such id counts in `double_spends_applied` |
//! | no overdraft | on each application, and at the end | replaying each process's applied transfers in order never takes an account below zero; its final local balances are all non-negative and equal to the replay |
//! | supply | at the end | every correct process's balances add up to the initial supply |
//! | fake dependencies, forgeries | on each application | a transfer citing a transfer never issued, or from a correct client's account signed by someone else, is never applied |
//! | validity | on each rejection | no correct client's certified transfer is found invalid |
//! | convergence | at the end, when everything was applied everywhere | correct processes that applied the same transfers hold the same balances |
//! | liveness | at the end | every transfer a correct client's node accepted is applied at every correct process by the deadline, and every correct client completed its share of the workload |

use crate::attacks::{AttackLog, Node};
use crate::workload::{client_account, Workload};
use crate::{Counts, Run};
use byzscale_at2::{Account, Batch, Genesis, Input, Output, Transfer, TransferId};
use byzscale_core::protocol::Time;
use byzscale_core::{Addr, NodeId};
use byzscale_scenario_broadcast::Equivocation;
use byzscale_sim::engine::{Control, NodeIdx, Sim};
use byzscale_sim::scenario::{Ending, Outcome, Violations, World};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Final non-zero balances of each correct process.
type Finals = BTreeMap<NodeId, BTreeMap<Account, i128>>;

/// The world of one run: the workload and the checkers.
pub struct Audit {
    node_of: BTreeMap<NodeIdx, NodeId>,
    idx_of: BTreeMap<NodeId, NodeIdx>,
    correct: BTreeSet<NodeId>,
    pub workload: Workload,
    /// The first application of each transfer id, by whom.
    first_applied: BTreeMap<TransferId, (NodeId, Transfer)>,
    /// The correct clients' accounts.
    clients: BTreeSet<Account>,
    /// Ids applied as different transfers by two correct processes.
    conflicting: BTreeSet<TransferId>,
    /// Each correct process's balances, replayed from what it applied.
    replay: BTreeMap<NodeId, BTreeMap<Account, i128>>,
    /// How many correct processes applied each transfer.
    applied_at: BTreeMap<TransferId, usize>,
    violations: Violations,
    log: Rc<RefCell<AttackLog>>,
    fake_applied: u64,
    forged_applied: u64,
    supply: i128,
    deadline: Time,
}

impl Audit {
    /// The checkers of a run whose processes are `node_of`, `correct` of
    /// them, starting from `genesis`; liveness is judged at `deadline`.
    pub fn new(
        node_of: BTreeMap<NodeIdx, NodeId>,
        correct: BTreeSet<NodeId>,
        workload: Workload,
        genesis: &Genesis,
        log: Rc<RefCell<AttackLog>>,
        deadline: Time,
    ) -> Self {
        let start: BTreeMap<Account, i128> = genesis
            .accounts()
            .map(|a| (a, genesis.initial(a) as i128))
            .collect();
        let clients = workload
            .owners()
            .iter()
            .map(|o| client_account(*o))
            .collect();
        Audit {
            idx_of: node_of.iter().map(|(i, m)| (*m, *i)).collect(),
            replay: correct.iter().map(|p| (*p, start.clone())).collect(),
            supply: genesis.supply() as i128,
            node_of,
            correct,
            workload,
            clients,
            first_applied: BTreeMap::new(),
            conflicting: BTreeSet::new(),
            applied_at: BTreeMap::new(),
            violations: Violations::new(),
            log,
            fake_applied: 0,
            forged_applied: 0,
            deadline,
        }
    }

    /// The node of process `p`.
    pub fn idx(&self, p: NodeId) -> NodeIdx {
        self.idx_of[&p]
    }

    /// The end-of-run checks on the correct processes' local state, the
    /// liveness verdict, and the run's figures. The run always lasts until
    /// the deadline (see [`crate::Over`]), so the verdict names it.
    pub fn finish<B: Equivocation<Batch>>(
        mut self,
        sim: &Sim<byzscale_at2::Message<B::Message>, Input, Output>,
        _ending: Ending,
        out: &mut Outcome,
    ) -> Run {
        let finals = self.final_states::<B>(sim);
        out.liveness = self.liveness(&finals);
        let everyone = self.correct.len().max(1) as f64;
        let stats = sim.stats();
        let (mut msgs, mut bytes) = (0u64, 0u64);
        for p in &self.correct {
            let s = &stats.per_node[self.idx_of[p].index()];
            msgs += s.sent;
            bytes += s.bytes_sent;
        }
        out.violations = std::mem::take(&mut self.violations);
        let log = self.log.borrow();
        Run {
            counts: Counts {
                double_spend_attempts: log.double_spends,
                double_spends_applied: self.conflicting.len() as u64,
                fake_dependency_attempts: log.fake_dependencies.len() as u64,
                fake_dependencies_applied: self.fake_applied,
                forgery_attempts: log.forgeries.len() as u64,
                forgeries_applied: self.forged_applied,
                transfers_submitted: self.workload.submitted.len() as u64,
                transfers_completed: self.workload.completed,
                transfers_failed: self.workload.failed,
                transfers_retried: self.workload.retries,
                transfers_applied: self.first_applied.len() as u64,
            },
            messages_per_process: msgs as f64 / everyone,
            bytes_per_process: bytes as f64 / everyone,
            latencies: std::mem::take(&mut self.workload.latencies),
        }
    }

    /// Supply, overdraft and replay checks on every correct process's final
    /// ledger; returns each one's non-zero balances.
    fn final_states<B: Equivocation<Batch>>(
        &mut self,
        sim: &Sim<byzscale_at2::Message<B::Message>, Input, Output>,
    ) -> Finals {
        let supply = self.supply;
        let mut finals = BTreeMap::new();
        for p in self.correct.clone() {
            let Some(at2) = sim
                .protocol::<Node<B>>(self.idx_of[&p])
                .and_then(Node::honest)
            else {
                continue;
            };
            let l = at2.ledger();
            let total: i128 = l.balances().values().sum();
            if total != supply {
                self.violations.push(format!(
                    "supply: {p}'s balances add up to {total}, not {supply}"
                ));
            }
            if let Some((a, b)) = l.balances().iter().find(|(_, b)| **b < 0) {
                self.violations
                    .push(format!("overdraft: {p} ends with {a} at {b}"));
            }
            let replay = self.replay.get(&p).cloned().unwrap_or_default();
            let mine: BTreeMap<Account, i128> = l
                .balances()
                .iter()
                .filter(|(_, b)| **b != 0)
                .map(|(a, b)| (*a, *b))
                .collect();
            let theirs: BTreeMap<Account, i128> =
                replay.into_iter().filter(|(_, b)| *b != 0).collect();
            if mine != theirs {
                self.violations.push(format!(
                    "state: {p}'s local balances differ from the transfers it reported applying"
                ));
            }
            finals.insert(p, mine);
        }
        finals
    }

    /// Every transfer submitted was applied at every correct process.
    fn missing(&self) -> impl Iterator<Item = (&TransferId, usize)> + '_ {
        let everyone = self.correct.len();
        self.workload.submitted.keys().filter_map(move |id| {
            let k = self.applied_at.get(id).copied().unwrap_or(0);
            (k < everyone).then_some((id, k))
        })
    }

    /// Liveness: every correct owner's transfers applied everywhere by the
    /// deadline (then also convergence of the `finals`); the failure, if any.
    fn liveness(&mut self, finals: &Finals) -> Option<String> {
        let everyone = self.correct.len();
        let mut missing = 0;
        let mut example = None;
        for (id, k) in self.missing() {
            missing += 1;
            example.get_or_insert(format!(
                "{id:?} applied at {k} of {everyone} correct processes"
            ));
        }
        let unfinished: Vec<String> = self
            .workload
            .unfinished()
            .map(|(o, done, q)| format!("{o} completed {done} of {q}"))
            .take(3)
            .collect();
        if missing == 0 && unfinished.is_empty() {
            // with everything applied everywhere, correct processes must agree
            if self.conflicting.is_empty() {
                let mut vals = finals.values();
                if let Some(first) = vals.next() {
                    if vals.any(|v| v != first) {
                        self.violations.push("convergence: correct processes applied the same transfers but hold different balances".into());
                    }
                }
            }
            return None;
        }
        Some(format!(
            "{missing} submitted transfers not applied everywhere by {:.1} s (virtual){}{}",
            self.deadline as f64 / 1e9,
            example.map(|e| format!(", e.g. {e}")).unwrap_or_default(),
            if unfinished.is_empty() {
                String::new()
            } else {
                format!("; stuck owners: {}", unfinished.join(", "))
            }
        ))
    }

    /// Correct process `at` applied `t`.
    fn applied(&mut self, at: NodeId, t: Transfer) {
        if self.log.borrow().fake_dependencies.contains(&t.id()) {
            self.fake_applied += 1;
            self.violations.push(format!(
                "fake dependency: {at} applied {:?}, which cites a transfer never issued",
                t.id()
            ));
        }
        if self.log.borrow().forgeries.contains(&t.id()) {
            self.forged_applied += 1;
            self.violations.push(format!(
                "forgery: {at} applied {:?}, which its owner never signed",
                t.id()
            ));
        }
        match self.first_applied.get(&t.id()) {
            None => {
                self.first_applied.insert(t.id(), (at, t));
            }
            Some((p, t0)) if *t0 != t => {
                let msg = format!("agreement: {p} applied {t0:?} but {at} applied {t:?} (same issuer and sequence number)");
                self.conflicting.insert(t.id());
                self.violations.push(msg);
            }
            Some(_) => {}
        }
        *self.applied_at.entry(t.id()).or_insert(0) += 1;
        let bal = self.replay.entry(at).or_default();
        if t.from != t.to {
            let from = bal.entry(t.from).or_insert(0);
            *from -= t.amount as i128;
            let now = *from;
            *bal.entry(t.to).or_insert(0) += t.amount as i128;
            if now < 0 {
                self.violations.push(format!(
                    "overdraft: at {at}, applying {t:?} takes {} to {now}",
                    t.from
                ));
            }
        }
    }
}

impl World for Audit {
    type Input = Input;
    type Output = Output;

    /// Every owner got every result and every transfer was applied
    /// everywhere.
    fn done(&self) -> bool {
        self.workload.done() && self.missing().next().is_none()
    }
    fn failed(&self) -> bool {
        !self.violations.is_empty()
    }

    fn on_output(
        &mut self,
        at: Time,
        idx: NodeIdx,
        _addr: Addr,
        out: Output,
        ctl: &mut Control<Input>,
    ) {
        let Some(&node) = self.node_of.get(&idx) else {
            return;
        };
        if !self.correct.contains(&node) {
            return;
        }
        match out {
            Output::Applied(c) => {
                let t = c.transfer;
                if t.to == client_account(node) && self.workload.is_owner(node) {
                    self.workload.incoming(node, t.id());
                }
                self.applied(node, t);
            }
            Output::Rejected(c, why) => {
                if self.clients.contains(&c.transfer.from) {
                    self.violations.push(format!(
                        "validity: {node} found the certified transfer {} of a correct client invalid ({why:?})",
                        c.transfer.id()
                    ));
                }
            }
            Output::Submitted(id) => {
                if self.clients.contains(&id.from) {
                    self.workload.submitted(id, at)
                }
            }
            Output::TransferResult { tag, result, .. } => {
                if tag >= crate::DOUBLE_SPEND_TAG {
                    return; // the double-spending client's
                }
                let (violation, again) = self.workload.result(node, tag, result, at);
                if let Some(v) = violation {
                    self.violations.push(v);
                }
                let next = again.or_else(|| self.workload.next(node));
                if let Some(input) = next {
                    ctl.input_at(at + self.workload.think, idx, input);
                }
            }
            Output::Balance { .. } => {}
        }
    }
}
