//! The world of one run: the closed-loop workload (each client submits its
//! updates one at a time and, every `read_every` updates, reads the counter
//! at its own site) and the checkers.
//!
//! - **S1 safety**: correct servers that executed an update at one global
//!   seq executed the same one (Steward: [`s1_among`]; flat: the SMR's
//!   decided log, [`LogChecker`]).
//! - **S2 validity**: every update a correct server executed is one a client
//!   submitted (its digest is the digest of that client's request with that
//!   timestamp, which the client issued), and it runs once per server.
//! - **GL1 progress**: every client completes every update by the deadline,
//!   i.e. after any partition healed (a liveness failure otherwise).
//! - **local reads**: a read is answered by the client's own site, with the
//!   counter after the executed prefix it names, never below the client's
//!   last completed seq (read your writes, monotone).

use crate::deploy::{counter, s1_among, In, Out, Seen};
use byzscale_core::crypto::Digest;
use byzscale_core::protocol::Time;
use byzscale_core::{Addr, ClientId};
use byzscale_sim::check::LogChecker;
use byzscale_sim::engine::{Control, NodeIdx, Observer, Role};
use byzscale_sim::scenario::{Violations, World};
use byzscale_smr as smr;
use byzscale_steward::{client, server, SiteId, Update};
use std::collections::BTreeMap;

/// One client's progress.
#[derive(Clone, Debug)]
pub struct ClientState {
    pub id: ClientId,
    pub home: SiteId,
    pub updates_done: u64,
    /// The seq of its last completed update or read (its read floor).
    pub floor: u64,
    /// What is outstanding and since when: an update (true) or a read.
    pub pending: Option<(bool, Time)>,
}

/// The workload and checkers of one run.
pub struct Audit {
    flat: bool,
    quota: u64,
    read_every: u64,
    pub clients: BTreeMap<NodeIdx, ClientState>,
    pub seen: Seen,
    decided: LogChecker<NodeIdx, Digest>,
    /// Correct servers (their outputs are checked).
    pub correct: Vec<NodeIdx>,
    pub latencies: Vec<Time>,
    pub read_latencies: Vec<Time>,
    pub first_submit: Option<Time>,
    pub last_done: Time,
    pub violations: Violations,
    /// The update every client submits and the read of its counter
    /// ([`crate::deploy::ops_of`]).
    update: Vec<u8>,
    read: Vec<u8>,
}

impl Audit {
    /// `clients`: (node, id, home site) of every client; `correct`: the
    /// correct servers; each client submits `quota` updates.
    pub fn new(
        flat: bool,
        quota: u64,
        read_every: u64,
        clients: impl IntoIterator<Item = (NodeIdx, ClientId, SiteId)>,
        correct: Vec<NodeIdx>,
    ) -> Self {
        let clients = clients
            .into_iter()
            .map(|(n, id, home)| {
                let c = ClientState {
                    id,
                    home,
                    updates_done: 0,
                    floor: 0,
                    pending: None,
                };
                (n, c)
            })
            .collect();
        Audit {
            flat,
            quota,
            read_every: if flat { 0 } else { read_every },
            clients,
            seen: Seen::default(),
            decided: LogChecker::new(),
            correct,
            latencies: Vec::new(),
            read_latencies: Vec::new(),
            first_submit: None,
            last_done: 0,
            violations: Violations::new(),
            update: crate::deploy::op(),
            read: crate::deploy::read_op(),
        }
    }

    /// Updates of at least `bytes` ([`crate::deploy::ops_of`]).
    pub fn with_update_bytes(mut self, bytes: usize) -> Self {
        (self.update, self.read) = crate::deploy::ops_of(bytes);
        self
    }

    /// The first update of every client (at `at`), to schedule.
    pub fn start(&mut self, at: Time) -> Vec<(NodeIdx, In)> {
        if self.quota == 0 {
            return Vec::new();
        }
        self.first_submit = Some(at);
        let nodes: Vec<NodeIdx> = self.clients.keys().copied().collect();
        nodes
            .into_iter()
            .map(|n| {
                self.clients.get_mut(&n).expect("listed").pending = Some((true, at));
                (n, Role::Client(client::Input::Submit(self.update.clone())))
            })
            .collect()
    }

    /// Client `node` finished something at `at`: its next step.
    fn next(&mut self, node: NodeIdx, at: Time, ctl: &mut Control<In>) {
        let (quota, every) = (self.quota, self.read_every);
        let Some(c) = self.clients.get_mut(&node) else {
            return;
        };
        let read =
            every > 0 && c.updates_done % every == 0 && !matches!(c.pending, Some((false, _)));
        let input = if c.updates_done > 0 && read {
            c.pending = Some((false, at));
            client::Input::Read(self.read.clone())
        } else if c.updates_done < quota {
            c.pending = Some((true, at));
            client::Input::Submit(self.update.clone())
        } else {
            c.pending = None;
            return;
        };
        ctl.input(node, Role::Client(input));
    }

    fn on_client(&mut self, at: Time, node: NodeIdx, out: &client::Output, ctl: &mut Control<In>) {
        let Some(c) = self.clients.get_mut(&node) else {
            return;
        };
        let since = c.pending.map(|(_, t)| t).unwrap_or(at);
        match out {
            client::Output::Done { seq, .. } => {
                c.updates_done += 1;
                c.floor = c.floor.max(seq.0);
                self.latencies.push(at - since);
                self.last_done = self.last_done.max(at);
                // a completed read is followed by an update: mark it done
                c.pending = Some((true, at));
            }
            client::Output::LocalRead {
                site,
                executed,
                result,
                ..
            } => {
                let (id, home, floor) = (c.id, c.home, c.floor);
                c.floor = c.floor.max(executed.0);
                self.read_latencies.push(at - since);
                if *site != home {
                    let v = format!("local read: {id} of {home} answered by {site}");
                    self.violations.push(v);
                }
                if executed.0 < floor {
                    let v = format!(
                        "local read: {id} read seq {} below its floor {floor}",
                        executed.0
                    );
                    self.violations.push(v);
                }
                self.check_read(id, executed.0, result);
            }
        }
        self.next(node, at, ctl);
    }

    /// The counter a read returned is the number of updates in the global
    /// order up to `executed` (checked against a correct server's log that
    /// reached it).
    fn check_read(&mut self, id: ClientId, executed: u64, result: &[u8]) {
        let logs = self
            .correct
            .iter()
            .filter_map(|n| self.seen.executed.get(n));
        let Some(log) = logs.max_by_key(|l| l.last().map(|e| e.0 .0).unwrap_or(0)) else {
            return;
        };
        if log.last().map(|e| e.0 .0).unwrap_or(0) < executed {
            return; // the checked servers did not get that far (yet)
        }
        let want = log.iter().filter(|e| e.0 .0 <= executed).count() as i64;
        let got = counter(result);
        if got != Some(want) {
            let v =
                format!("local read: {id} read {got:?} at seq {executed}, the order gives {want}");
            self.violations.push(v);
        }
    }

    /// S2 and once-only execution at every correct server; S1; the flat
    /// log's agreement.
    pub fn check_end(&mut self) {
        if self.flat {
            for t in self.decided.violations().to_vec() {
                self.violations.push(format!("S1 (flat): {t}"));
            }
            return;
        }
        for v in s1_among(&self.correct, &self.seen) {
            self.violations.push(format!("S1: {v}"));
        }
        let issued: BTreeMap<ClientId, u64> = self
            .clients
            .values()
            .map(|c| {
                (
                    c.id,
                    c.updates_done + u64::from(matches!(c.pending, Some((true, _)))),
                )
            })
            .collect();
        for n in self.correct.clone() {
            let log = self.seen.executed.get(&n).cloned().unwrap_or_default();
            let mut once = std::collections::BTreeSet::new();
            for (seq, c, ts, d, _) in log {
                let valid = issued.get(&c).is_some_and(|k| ts >= 1 && ts <= *k)
                    && d == Update::content_digest(c, ts, &self.update);
                if !valid {
                    let v = format!(
                        "S2: {n:?} executed {c}#{ts} at seq {}, never submitted",
                        seq.0
                    );
                    self.violations.push(v);
                }
                if !once.insert((c, ts)) {
                    self.violations
                        .push(format!("S2: {n:?} executed {c}#{ts} twice"));
                }
            }
        }
    }

    /// The clients that did not finish: (id, updates done).
    pub fn unfinished(&self) -> Vec<(ClientId, u64)> {
        let short = self
            .clients
            .values()
            .filter(|c| c.updates_done < self.quota || c.pending.is_some_and(|p| !p.0));
        short.map(|c| (c.id, c.updates_done)).collect()
    }
}

impl World for Audit {
    type Input = In;
    type Output = Out;

    fn on_output(&mut self, at: Time, node: NodeIdx, addr: Addr, out: Out, ctl: &mut Control<In>) {
        match &out {
            Role::Client(o) => self.on_client(at, node, o, ctl),
            Role::Replica(server::Output::Smr(smr::replica::Output::Decided {
                slot,
                digest,
                ..
            })) if self.flat && self.correct.contains(&node) => {
                self.decided.decide(node, *slot, *digest)
            }
            Role::Replica(server::Output::Smr(smr::replica::Output::StateTransferred { slot }))
                if self.flat && self.correct.contains(&node) =>
            {
                self.decided.skip_to(node, *slot)
            }
            _ => {}
        }
        self.seen.on_output(at, node, addr, out, ctl);
    }

    fn done(&self) -> bool {
        self.unfinished().is_empty()
    }

    fn failed(&self) -> bool {
        !self.violations.is_empty()
    }
}
