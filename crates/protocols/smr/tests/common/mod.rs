//! What the SMR integration tests share: the service, the parameters, the
//! simulated network and keys of their runs, and the observer that records
//! what a run produced ([`Seen`]).

use byzscale_core::crypto::{Crypto, CryptoMode, Digest, Identity};
use byzscale_core::protocol::{Time, MICROS, MILLIS, SECS};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::service::Service;
use byzscale_core::{Addr, Fault, GroupId, NodeId};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{Control, NodeIdx, Observer, RunStatus, Sim};
use byzscale_sim::net_model::NetModel;
use byzscale_smr::{client, replica, GroupInfo, Message, Params};
use std::collections::BTreeMap;

/// Appends each op to a log; replies with the log length.
#[derive(Default)]
pub struct Log(pub Vec<Vec<u8>>);
impl Service for Log {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        self.0.push(op.to_vec());
        (self.0.len() as u64).to_le_bytes().to_vec()
    }
    fn query(&self, _op: &[u8]) -> Option<Vec<u8>> {
        Some((self.0.len() as u64).to_le_bytes().to_vec())
    }
    fn snapshot(&self) -> Vec<u8> {
        byzscale_core::codec::to_bytes(&self.0)
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), String> {
        self.0 = byzscale_core::codec::from_bytes(s, usize::MAX).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The outputs of a run's nodes.
#[derive(Debug)]
pub enum Out {
    Client(client::Output),
    Replica(replica::Output),
}

/// Short timeouts and a checkpoint every 4 slots, so that a few requests
/// reach a stable checkpoint and a view change takes milliseconds.
pub fn params() -> Params {
    Params {
        checkpoint_interval: 4,
        window: 8,
        request_timeout: 50 * MILLIS,
        view_change_timeout: 50 * MILLIS,
        client_retry: 100 * MILLIS,
        fetch_interval: 5 * MILLIS,
        ..Params::default()
    }
}

/// Group 0: replicas 0..`n`, tolerating `f` Byzantine ones.
pub fn group(n: usize, f: usize) -> GroupInfo {
    let qs = QuorumSystem::classic(n, f, FaultModel::Bft).unwrap();
    GroupInfo::new(GroupId(0), (0..n as u32).map(NodeId).collect(), qs)
}

/// A simulation of one region without jitter or faults (50 µs one way,
/// FIFO links) and with free CPU.
pub fn lan<I: 'static>() -> Sim<Message, I, Out> {
    let net = NetModel::from_matrix(vec!["lan".into()], vec![vec![50 * MICROS]])
        .unwrap()
        .with_fifo(true);
    Sim::new(0, net, CpuModel::free())
}

/// The endpoints of a run and their keys: the `i`-th has the identity of
/// seed `i + 1` and knows every other one.
pub struct Keys {
    pub addrs: Vec<Addr>,
    ids: Vec<Identity>,
}

impl Keys {
    pub fn new(addrs: Vec<Addr>) -> Self {
        let ids = (0..addrs.len())
            .map(|i| Identity::from_seed([i as u8 + 1; 32]))
            .collect();
        Keys { addrs, ids }
    }

    /// The real crypto of endpoint `i`.
    pub fn crypto(&self, i: usize) -> Crypto {
        let mut c = Crypto::new(self.addrs[i], self.ids[i].clone(), CryptoMode::Real);
        for (j, b) in self.addrs.iter().enumerate() {
            if i != j {
                c.add_peer(*b, self.ids[j].public()).unwrap();
            }
        }
        c
    }
}

/// What the run produced, as the observer saw it (across incarnations).
#[derive(Default)]
pub struct Seen {
    /// Decided (slot, digest, requests) per replica, in decision order.
    pub decided: BTreeMap<Addr, Vec<(u64, Digest, usize)>>,
    /// Completed (submission id, result), in completion order.
    pub done: Vec<(u64, Vec<u8>)>,
    /// The latest view each replica entered by a view change.
    pub views: BTreeMap<Addr, u64>,
    /// (reporting node, fault kind, culprit).
    pub faults: Vec<(NodeIdx, &'static str, Addr)>,
    /// Whether the run may record faults (else a fault fails the test).
    faults_expected: bool,
    /// Stop the run once this many requests completed.
    target: usize,
}

impl<I> Observer<I, Out> for Seen {
    fn on_output(&mut self, _: Time, _: NodeIdx, addr: Addr, out: Out, ctl: &mut Control<I>) {
        match out {
            Out::Client(o @ (client::Output::Refused { .. } | client::Output::Failed { .. })) => {
                panic!("workload op refused or failed: {o:?}")
            }
            Out::Client(client::Output::Done { id, result, .. }) => {
                self.done.push((id, result));
                if self.done.len() >= self.target {
                    ctl.stop();
                }
            }
            Out::Replica(replica::Output::Decided {
                slot,
                digest,
                batch,
                ..
            }) => {
                let n = batch.requests.len();
                self.decided
                    .entry(addr)
                    .or_default()
                    .push((slot, digest, n));
            }
            Out::Replica(replica::Output::ViewChanged { view, .. }) => {
                self.views.insert(addr, view);
            }
            Out::Replica(_) => {}
        }
    }

    fn on_fault(&mut self, _: Time, node: NodeIdx, fault: &Fault, _: &mut Control<I>) {
        assert!(
            self.faults_expected,
            "unexpected fault in a fault-free run: {fault:?}"
        );
        self.faults.push((node, fault.name(), fault.node));
    }
}

impl Seen {
    /// Nothing seen yet; with `faults_expected`, faults are recorded, else
    /// the first one fails the test.
    pub fn new(faults_expected: bool) -> Self {
        Seen {
            faults_expected,
            ..Seen::default()
        }
    }

    /// Run `sim` until `done` requests completed in all; fails after a
    /// minute of virtual time.
    pub fn run<I: 'static>(&mut self, sim: &mut Sim<Message, I, Out>, done: usize) {
        if self.done.len() >= done {
            return;
        }
        self.target = done;
        let status = sim.run_for(60 * SECS, self);
        assert_eq!(
            status,
            RunStatus::Stopped,
            "did not finish: {} of {done} done, views {:?}, faults {:?}",
            self.done.len(),
            self.views,
            self.faults
        );
    }

    /// Run `sim` for `d` of virtual time without requiring progress.
    pub fn settle<I: 'static>(&mut self, sim: &mut Sim<Message, I, Out>, d: Time) {
        self.target = usize::MAX;
        sim.run_for(d, self);
    }

    /// No slot was decided with two digests, by any replica in any
    /// incarnation.
    pub fn assert_agreement(&self) {
        let mut by_slot: BTreeMap<u64, (Digest, Addr)> = BTreeMap::new();
        for (a, v) in &self.decided {
            for (s, d, _) in v {
                if let Some((o, b)) = by_slot.insert(*s, (*d, *a)) {
                    assert_eq!(o, *d, "slot {s}: {b:?} and {a:?} decided differently");
                }
            }
        }
    }

    /// The faults recorded, by kind.
    pub fn fault_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut by_kind = BTreeMap::new();
        for (_, kind, _) in &self.faults {
            *by_kind.entry(*kind).or_default() += 1;
        }
        by_kind
    }
}
