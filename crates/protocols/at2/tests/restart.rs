//! An AT2 process restarts from its durable records (issue 10, item 11): on
//! the simulator engine, with real crypto, four processes over Bracha (with
//! retransmission and records on) pay their neighbours in closed loops;
//! process 0 crashes with a broadcast out, misses the others' transfers for
//! a while, and comes back with `At2::recover` from the records it emitted
//! (each durable the moment it is emitted). It must go on with its own
//! sequence numbers, catch up on what it missed, and never contradict what
//! it signed or voted before; everyone ends with the same ledger.
//!
//! Before AT2 processes kept anything, a restarted process started over at
//! sequence number 1: the second test restarts it that way and shows that
//! its transfers are never applied again.

use byzscale_at2::{Account, At2, Durable, Genesis, Input, Output, Record, TransferMsg};
use byzscale_broadcast::bracha::{self, Bracha};
use byzscale_core::crypto::{CryptoMode, Digest};
use byzscale_core::protocol::{Time, MICROS, MILLIS, SECS};
use byzscale_core::{Addr, NodeId, Protocol};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{Control, NodeIdx, ProtocolActor, Sim};
use byzscale_sim::group;
use byzscale_sim::net_model::NetModel;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

type P = At2<Bracha<TransferMsg>>;
type Rec = Record<bracha::Record<TransferMsg>>;
type Disk = Rc<RefCell<Vec<Rec>>>;

type Recorded = byzscale_sim::storage::Recorded<P>;

type S = Sim<<P as Protocol>::Message, Input, Output>;

struct World {
    cfg: Arc<bracha::Config>,
    genesis: Arc<Genesis>,
    disks: Vec<Disk>,
}

fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId).collect()
}

impl World {
    fn new() -> Self {
        let mut cfg = bracha::Config::new(ids()).unwrap();
        cfg.retransmit = Some(10 * MILLIS);
        cfg.persist = true;
        World {
            cfg: Arc::new(cfg),
            genesis: Arc::new(Genesis::one_account_each(&ids(), 1_000)),
            disks: (0..4).map(|_| Disk::default()).collect(),
        }
    }

    fn process(&self, i: NodeId, p: P) -> Recorded {
        Recorded::new(
            p.with_batching(8, 64).with_checkpoints(8).with_history(64),
            self.disks[i.0 as usize].clone(),
        )
    }

    fn fresh(&self, i: NodeId) -> Recorded {
        self.process(
            i,
            At2::new(Bracha::new(i, self.cfg.clone()), self.genesis.clone()),
        )
    }

    fn recovered(&self, i: NodeId) -> Recorded {
        let mut d = Durable::new(i);
        for r in self.disks[i.0 as usize].borrow().iter() {
            d.apply(r.clone());
        }
        let crypto = group::crypto(i, &group::directory(ids()), CryptoMode::Real);
        let p = At2::recover(self.cfg.clone(), self.genesis.clone(), d, 64, &crypto).unwrap();
        self.process(i, p)
    }

    fn sim(&self) -> S {
        let net = NetModel::uniform(MICROS, 100 * MICROS);
        let dir = group::directory(ids());
        group::sim(
            5,
            net,
            CpuModel::free(),
            &dir,
            CryptoMode::Real,
            &ids(),
            |i| self.fresh(i),
        )
    }
}

fn pay(i: u32, tag: u64) -> Input {
    Input::Transfer {
        from: Account(i),
        to: Account((i + 1) % 4),
        amount: 1,
        tag,
    }
}

/// Closed loops until `until`: the processes in `active` pay their
/// neighbour, each until it completed `quota` transfers in this call; the
/// transfers completed per process.
fn run(sim: &mut S, active: &[u32], quota: u64, until: Time) -> BTreeMap<u32, u64> {
    let mut done: BTreeMap<u32, u64> = BTreeMap::new();
    for &i in active {
        sim.schedule_input(sim.now(), NodeIdx(i), pay(i, 0));
    }
    let mut obs = |_: Time, at: NodeIdx, _: Addr, out: Output, ctl: &mut Control<Input>| {
        if let Output::TransferResult { result, tag, .. } = out {
            assert!(result.is_ok(), "n{}: {result:?}", at.0);
            if tag == byzscale_at2::durable::RESTORED {
                return; // the transfer out at the crash, applied after it
            }
            let k = done.entry(at.0).or_insert(0);
            *k += 1;
            if *k < quota {
                ctl.input(at, pay(at.0, *k));
            }
        }
    };
    sim.run_until(until, &mut obs);
    done
}

/// No process signed two payloads for one of its sequence numbers, echoed
/// two payloads or readied two digests for one instance, across restarts.
fn never_contradicted(w: &World) {
    for (i, disk) in w.disks.iter().enumerate() {
        let mut echoed: BTreeMap<(NodeId, u64), Vec<u8>> = BTreeMap::new();
        let mut readied: BTreeMap<(NodeId, u64), Digest> = BTreeMap::new();
        for r in disk.borrow().iter() {
            match r {
                Record::Bcast(bracha::Record::Echoed {
                    source,
                    seq,
                    signed,
                }) => {
                    let bytes = byzscale_core::codec::to_bytes(&signed.payload);
                    let prev = echoed.insert((*source, *seq), bytes.clone());
                    assert!(
                        prev.is_none_or(|p| p == bytes),
                        "n{i} echoed twice {source}/{seq}"
                    );
                }
                Record::Bcast(bracha::Record::Readied {
                    source,
                    seq,
                    digest,
                }) => {
                    let prev = readied.insert((*source, *seq), *digest);
                    assert!(
                        prev.is_none_or(|p| p == *digest),
                        "n{i} readied twice {source}/{seq}"
                    );
                }
                _ => {}
            }
        }
    }
}

fn crash_and_restart(recover: bool) -> (BTreeMap<u32, u64>, World, S) {
    let w = World::new();
    let mut sim = w.sim();
    let done = run(&mut sim, &[0, 1, 2, 3], 20, 5 * SECS);
    assert!(done.values().all(|n| *n == 20), "{done:?}");
    // n0 crashes with a transfer out; the others go on without it
    sim.schedule_input(sim.now(), NodeIdx(0), pay(0, 99));
    sim.crash(sim.now() + 20 * MICROS, NodeIdx(0));
    let until = sim.now() + 300 * MILLIS;
    let missed = run(&mut sim, &[1, 2, 3], 30, until);
    assert!(missed.values().all(|n| *n == 30), "{missed:?}");
    let back = if recover {
        w.recovered(NodeId(0))
    } else {
        w.fresh(NodeId(0))
    };
    sim.restart(sim.now(), NodeIdx(0), ProtocolActor::new(back));
    let until = sim.now() + 5 * SECS;
    let after = run(&mut sim, &[0, 1, 2, 3], 20, until);
    sim.run_for(SECS, &mut ());
    (after, w, sim)
}

#[test]
fn a_restarted_process_goes_on_catches_up_and_never_equivocates() {
    let (after, w, sim) = crash_and_restart(true);
    assert!(after.values().all(|n| *n == 20), "{after:?}");
    assert_eq!(sim.stats().faults, 0, "{:?}", sim.stats().fault_log.first());
    never_contradicted(&w);
    let ledger = |i: u32| sim.protocol::<Recorded>(NodeIdx(i)).unwrap().inner.ledger();
    for i in 0..4 {
        let l = ledger(i);
        assert_eq!(l.balances(), ledger(1).balances(), "n{i}");
        let total: i128 = l.balances().values().sum();
        assert_eq!(total, 4_000, "n{i}: the supply is conserved");
        assert_eq!(l.pending_count(), 0, "n{i}");
        for q in 0..4 {
            assert_eq!(l.seq(NodeId(q)), ledger(1).seq(NodeId(q)), "n{i} on n{q}");
        }
    }
    // the history of every account survives the restart (its count; the
    // order of transfers of different issuers may differ between processes)
    let at2 = |i: u32| &sim.protocol::<Recorded>(NodeIdx(i)).unwrap().inner;
    for a in 0..4 {
        let total = |i: u32| at2(i).history(Account(a)).0;
        assert!(total(1) > 0);
        assert_eq!(total(0), total(1), "a{a}");
    }
    // n0's transfers: 20, the one out at the crash, 20 more; the others
    // made 30 while n0 was down, which it caught up on
    assert_eq!(ledger(0).seq(NodeId(0)), 41);
    assert_eq!(ledger(0).seq(NodeId(1)), 70);
}

#[test]
fn restarting_at_sequence_number_one_freezes_the_process() {
    let (after, _w, sim) = crash_and_restart(false);
    assert_eq!(after.get(&0), None, "n0's transfers are never applied");
    let others = sim.protocol::<Recorded>(NodeIdx(1)).unwrap().inner.ledger();
    assert!(others.seq(NodeId(0)) <= 21);
}
