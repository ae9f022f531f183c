//! An AT2 process restarts from its durable records (issue 10, item 11;
//! issue 17): on the simulator engine, with real crypto, four processes over
//! Bracha (with retransmission and records on) carry four clients' closed
//! loops of transfers (client i, owning demo account i, pays i+1 through
//! node i); node 0 crashes with a transfer out, misses the others' transfers
//! for a while, and comes back with `At2::recover` from the records it
//! emitted (each durable the moment it is emitted). It must catch up, never
//! contradict what it voted before (neither in the broadcast nor in the
//! certificate votes: one endorsement per account and sequence number), and
//! everyone ends with the same ledger. Client 0 resubmits the transfer that
//! was out at the crash (the same signed bytes) and goes on.

use byzscale_at2::{
    demo_key, Account, At2, Batch, Config, Durable, Genesis, Input, Output, Record, SignedTransfer,
    Transfer, TransferError,
};
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

type P = At2<Bracha<Batch>>;
type Rec = Record<bracha::Record<Batch>>;
type Disk = Rc<RefCell<Vec<Rec>>>;

type Recorded = byzscale_sim::storage::Recorded<P>;

type S = Sim<<P as Protocol>::Message, Input, Output>;

struct World {
    bcfg: Arc<bracha::Config>,
    cfg: Arc<Config>,
    disks: Vec<Disk>,
}

fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId).collect()
}

fn acct(i: u32) -> Account {
    Account::of(&demo_key(i))
}

impl World {
    fn new() -> Self {
        let mut bcfg = bracha::Config::new(ids()).unwrap();
        bcfg.retransmit = Some(10 * MILLIS);
        bcfg.persist = true;
        World {
            bcfg: Arc::new(bcfg),
            cfg: Arc::new(Config::bracha(Genesis::demo(4, 1_000), ids())),
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
            At2::new(Bracha::new(i, self.bcfg.clone()), self.cfg.clone()),
        )
    }

    fn recovered(&self, i: NodeId) -> Recorded {
        let mut d = Durable::new(i);
        for r in self.disks[i.0 as usize].borrow().iter() {
            d.apply(r.clone());
        }
        let crypto = group::crypto(i, &group::directory(ids()), CryptoMode::Real);
        let p = At2::recover(self.bcfg.clone(), self.cfg.clone(), d, 64, &crypto).unwrap();
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

/// Client `i`'s transfer `seq`: 1 to its neighbour (no dependencies: the
/// balances are large enough).
fn pay(i: u32, seq: u64) -> Input {
    let t = Transfer {
        from: acct(i),
        seq,
        to: acct((i + 1) % 4),
        amount: 1,
    };
    Input::Submit {
        transfer: SignedTransfer::sign(&demo_key(i), t, vec![]),
        tag: seq,
    }
}

/// Closed loops until `until`: the clients in `active` pay their neighbour
/// through their node, starting at sequence number `next[i]`, each until it
/// completed `quota` transfers in this call; `next` is moved on.
fn run(
    sim: &mut S,
    next: &mut BTreeMap<u32, u64>,
    active: &[u32],
    quota: u64,
    until: Time,
) -> BTreeMap<u32, u64> {
    let mut done: BTreeMap<u32, u64> = BTreeMap::new();
    for &i in active {
        sim.schedule_input(sim.now(), NodeIdx(i), pay(i, next[&i]));
    }
    let mut obs = |_: Time, at: NodeIdx, _: Addr, out: Output, ctl: &mut Control<Input>| {
        if let Output::TransferResult { result, tag, .. } = out {
            // a resubmission of what was applied before the crash is stale
            assert!(
                result.is_ok() || matches!(result, Err(TransferError::Stale { .. })),
                "n{}: {result:?}",
                at.0
            );
            let k = done.entry(at.0).or_insert(0);
            *k += 1;
            next.insert(at.0, tag + 1);
            if *k < quota {
                ctl.input(at, pay(at.0, tag + 1));
            }
        }
    };
    sim.run_until(until, &mut obs);
    done
}

/// No process echoed two payloads or readied two digests for one
/// broadcast instance, nor endorsed two transfers with one account and
/// sequence number, across restarts.
fn never_contradicted(w: &World) {
    for (i, disk) in w.disks.iter().enumerate() {
        let mut echoed: BTreeMap<(NodeId, u64), Vec<u8>> = BTreeMap::new();
        let mut readied: BTreeMap<(NodeId, u64), Digest> = BTreeMap::new();
        let mut voted: BTreeMap<(Account, u64), Digest> = BTreeMap::new();
        for r in disk.borrow().iter() {
            match r {
                Record::Voted(entries) => {
                    for (a, s, d) in entries {
                        let prev = voted.insert((*a, *s), *d);
                        assert!(
                            prev.is_none_or(|p| p == *d),
                            "n{i} endorsed twice {a:?}#{s}"
                        );
                    }
                }
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

fn crash_and_restart() -> (BTreeMap<u32, u64>, World, S) {
    let w = World::new();
    let mut sim = w.sim();
    let mut next: BTreeMap<u32, u64> = (0..4).map(|i| (i, 1)).collect();
    let done = run(&mut sim, &mut next, &[0, 1, 2, 3], 20, 5 * SECS);
    assert!(done.values().all(|n| *n == 20), "{done:?}");
    // n0 crashes with client 0's next transfer out; the others go on
    let out = next[&0];
    sim.schedule_input(sim.now(), NodeIdx(0), pay(0, out));
    let crash = sim.now() + 20 * MICROS;
    sim.crash(crash, NodeIdx(0));
    let until = sim.now() + 300 * MILLIS;
    let missed = run(&mut sim, &mut next, &[1, 2, 3], 30, until);
    assert!(missed.values().all(|n| *n == 30), "{missed:?}");
    sim.restart(
        sim.now(),
        NodeIdx(0),
        ProtocolActor::new(w.recovered(NodeId(0))),
    );
    // client 0 resubmits the transfer that was out, then goes on
    next.insert(0, out);
    let until = sim.now() + 5 * SECS;
    let after = run(&mut sim, &mut next, &[0, 1, 2, 3], 20, until);
    sim.run_for(SECS, &mut ());
    (after, w, sim)
}

#[test]
fn a_restarted_process_goes_on_catches_up_and_never_equivocates() {
    let (after, w, sim) = crash_and_restart();
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
        for a in 0..4 {
            assert_eq!(l.seq(acct(a)), ledger(1).seq(acct(a)), "n{i} on a{a}");
        }
    }
    // the history of every account survives the restart (its count; the
    // order of transfers of different accounts may differ between processes)
    let at2 = |i: u32| &sim.protocol::<Recorded>(NodeIdx(i)).unwrap().inner;
    for a in 0..4 {
        let total = |i: u32| at2(i).history(acct(a)).0;
        assert!(total(1) > 0);
        assert_eq!(total(0), total(1), "a{a}");
    }
    // client 0: 20 transfers, the one out at the crash (applied once,
    // before or after it), 19 more; the others made 30 while n0 was down,
    // which it caught up on
    assert_eq!(ledger(0).seq(acct(0)), 40);
    assert_eq!(ledger(0).seq(acct(1)), 70);
}

#[test]
fn a_restarted_process_keeps_its_endorsements() {
    // what n0 had endorsed right before the crash and is not applied yet is
    // what it recovers: it would refuse a different transfer for those slots
    let w = World::new();
    let mut sim = w.sim();
    let mut next: BTreeMap<u32, u64> = (0..4).map(|i| (i, 1)).collect();
    run(&mut sim, &mut next, &[0, 1, 2, 3], 5, 2 * SECS);
    sim.schedule_input(sim.now(), NodeIdx(0), pay(3, next[&3]));
    sim.run_until(sim.now() + 1, &mut ());
    let p = &sim.protocol::<Recorded>(NodeIdx(0)).unwrap().inner;
    let before = p.endorsed().clone();
    assert!(before.contains_key(&(acct(3), next[&3])), "{before:?}");
    let back = w.recovered(NodeId(0)).inner;
    let kept: BTreeMap<_, _> = before
        .into_iter()
        .filter(|((a, s), _)| *s > back.ledger().seq(*a))
        .collect();
    assert_eq!(back.endorsed(), &kept);
    assert!(!kept.is_empty());
}
