//! AT2 processes on the simulator engine (real ed25519, free CPU): clients
//! holding their own keys pay each other through any node; a forged, a
//! replayed and a malformed transfer are refused; an owner that gives two
//! nodes two transfers with one sequence number gets at most one applied,
//! the same everywhere.

use super::*;
use byzscale_broadcast::{bracha, probabilistic, Bracha, Contagion, ContagionParams, Delivery};
use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::protocol::{Time, MICROS, MILLIS, SECS};
use byzscale_core::Effect;
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{Control, NodeIdx, Sim};
use byzscale_sim::group;
use byzscale_sim::net_model::NetModel;
use rand::SeedableRng;

fn ids(n: u32) -> Vec<NodeId> {
    (0..n).map(NodeId).collect()
}

type S<B> = Sim<<At2<B> as Protocol>::Message, Input, Output>;

/// Members `0..n` (member i is engine node i) with real crypto and free
/// CPU, over delays uniform in 1–100 µs.
fn cluster<B: SecureBroadcast<Batch> + 'static>(
    seed: u64,
    n: u32,
    make: impl FnMut(NodeId) -> At2<B>,
) -> S<B> {
    group::sim(
        seed,
        NetModel::uniform(MICROS, 100 * MICROS),
        CpuModel::free(),
        &group::directory(ids(n)),
        CryptoMode::Real,
        &ids(n),
        make,
    )
}

fn acct(i: u32) -> Account {
    Account::of(&demo_key(i))
}

/// Demo account `from` pays `amount` to demo account `to` as its `seq`-th
/// transfer, citing `deps`.
fn pay(from: u32, seq: u64, to: u32, amount: u64, deps: Vec<TransferId>) -> SignedTransfer {
    let t = Transfer {
        from: acct(from),
        seq,
        to: acct(to),
        amount,
    };
    SignedTransfer::sign(&demo_key(from), t, deps)
}

fn submit(st: SignedTransfer, tag: u64) -> Input {
    Input::Submit { transfer: st, tag }
}

/// Client i (demo account i) pays client i+1 ten, `rounds` times, through
/// node i, citing every incoming transfer its node applied since its last
/// one; everyone ends with the same ledger, the supply conserved.
fn ring<B: SecureBroadcast<Batch> + 'static>(
    n: u32,
    f: usize,
    rounds: u64,
    make: impl Fn(NodeId) -> B,
) -> S<B> {
    let cfg = Arc::new(Config::new(Genesis::demo(n, 100), ids(n), f));
    let mut h = cluster(3, n, |i| At2::new(make(i), cfg.clone()));
    for i in 0..n {
        h.schedule_input(0, NodeIdx(i), submit(pay(i, 1, (i + 1) % n, 10, vec![]), 1));
    }
    // per client: transfers done, and what its node applied for it
    let mut done: BTreeMap<u32, u64> = BTreeMap::new();
    let mut incoming: BTreeMap<u32, Vec<TransferId>> = BTreeMap::new();
    let mut obs = |_: Time, at: NodeIdx, _: Addr, out: Output, ctl: &mut Control<Input>| match out {
        Output::Applied(c) if c.transfer.to == acct(at.0) => {
            incoming.entry(at.0).or_default().push(c.transfer.id());
        }
        Output::TransferResult { result, .. } => {
            assert_eq!(result, Ok(()));
            let k = done.entry(at.0).or_insert(0);
            *k += 1;
            if *k < rounds {
                let deps = incoming.remove(&at.0).unwrap_or_default();
                let st = pay(at.0, *k + 1, (at.0 + 1) % n, 10, deps);
                ctl.input(at, submit(st, *k + 1));
            }
        }
        _ => {}
    };
    h.run_until(60 * SECS, &mut obs);
    assert_eq!(h.stats().faults, 0, "{:?}", h.stats().fault_log.first());
    assert!(done.values().all(|k| *k == rounds), "{done:?}");
    for i in ids(n) {
        let p = h.protocol::<At2<B>>(NodeIdx(i.0)).unwrap();
        assert_eq!(p.ledger().applied_count(), n as u64 * rounds, "{i}");
        let total: i128 = p.ledger().balances().values().sum();
        assert_eq!(total, 100 * n as i128);
        for a in 0..n {
            assert_eq!(
                p.balance(acct(a)),
                100,
                "a ring leaves every balance unchanged"
            );
        }
        assert!(p.endorsed().is_empty(), "every endorsement was applied");
    }
    h
}

#[test]
fn ring_over_bracha_cites_received_funds() {
    let cfg = Arc::new(bracha::Config::new(ids(7)).unwrap());
    let h = ring(7, 2, 4, |i| Bracha::new(i, cfg.clone()));
    // each client cited what it received: nothing is left uncited but the
    // last round's transfers
    let p = h.protocol::<At2<Bracha<Batch>>>(NodeIdx(0)).unwrap();
    assert!(
        p.ledger().uncited_count() <= 7 * 2,
        "{}",
        p.ledger().uncited_count()
    );
}

#[test]
fn ring_over_contagion() {
    let p = ContagionParams {
        g: 4.0,
        e: 12,
        e_hat: 8,
        r: 10,
        r_hat: 4,
        d: 12,
        d_hat: 8,
    };
    let cfg = Arc::new(probabilistic::Config::new(ids(12), p).unwrap());
    ring(12, 1, 3, |i| Contagion::new(i, cfg.clone()));
}

#[test]
fn batching_proposes_queued_transfers_together_and_checks_each() {
    let bcfg = Arc::new(bracha::Config::new(ids(4)).unwrap());
    let cfg = Arc::new(Config::bracha(Genesis::demo(8, 100), ids(4)));
    let mut h = cluster(4, 4, |i| {
        At2::new(Bracha::new(i, bcfg.clone()), cfg.clone()).with_batching(4, 6)
    });
    // accounts 1..=7 each send one transfer to node 0 at once: the first
    // goes out alone, the next four together, the last two after; 4 asks
    // more than it has (refused at once); the eighth request is busy
    for (k, amount) in [(1, 10), (2, 10), (3, 20), (4, 101), (5, 30), (6, 5), (7, 5)] {
        h.schedule_input(
            0,
            NodeIdx(0),
            submit(pay(k, 1, 0, amount, vec![]), k as u64),
        );
    }
    let mut results = BTreeMap::new();
    let mut obs = |_: Time, at: NodeIdx, _: Addr, out: Output, _: &mut Control<Input>| {
        if let Output::TransferResult { tag, result, .. } = out {
            assert_eq!(at, NodeIdx(0));
            results.insert(tag, result);
        }
    };
    h.run_until(60 * SECS, &mut obs);
    assert_eq!(h.stats().faults, 0, "{:?}", h.stats().fault_log.first());
    assert_eq!(
        results[&4],
        Err(TransferError::InsufficientFunds {
            balance: 100,
            amount: 101
        })
    );
    for k in [1, 2, 3, 5, 6, 7] {
        assert_eq!(results[&k], Ok(()), "{k}");
    }
    for i in ids(4) {
        let p = h.protocol::<At2<Bracha<Batch>>>(NodeIdx(i.0)).unwrap();
        // three broadcasts: [1], [2, 3, 5, 6], [7]
        assert_eq!(p.broadcast().stats().delivered, 3, "{i}");
        assert_eq!(p.ledger().applied_count(), 6);
        assert_eq!(p.balance(acct(0)), 180);
    }
}

/// The thesis' double-spending owner (issue 17): account 0 signs two
/// different transfers with sequence number 1 and hands them to nodes 0
/// and 2 at the same moment, while others pay as usual. Over many seeds, at
/// most one of the two is ever applied anywhere, every node applies the
/// same one (or none), the loser's client hears why, and every other
/// transfer still goes through.
#[test]
fn a_double_spending_owner_gets_at_most_one_transfer_applied_anywhere() {
    let mut outcomes = BTreeMap::new();
    for seed in 0..40 {
        let bcfg = Arc::new(bracha::Config::new(ids(4)).unwrap());
        let cfg = Arc::new(Config::bracha(Genesis::demo(4, 100), ids(4)));
        let mut h = cluster(seed, 4, |i| {
            At2::new(Bracha::new(i, bcfg.clone()), cfg.clone())
        });
        let a = pay(0, 1, 1, 80, vec![]);
        let b = pay(0, 1, 2, 80, vec![]);
        assert_ne!(a.digest(), b.digest());
        h.schedule_input(0, NodeIdx(0), submit(a.clone(), 1));
        h.schedule_input(0, NodeIdx(2), submit(b.clone(), 2));
        // honest traffic meanwhile, through every node
        for k in 1..4u32 {
            h.schedule_input(
                0,
                NodeIdx(k % 4),
                submit(pay(k, 1, 0, 5, vec![]), 10 + k as u64),
            );
        }
        let mut results = BTreeMap::new();
        let mut obs = |_: Time, _: NodeIdx, _: Addr, out: Output, _: &mut Control<Input>| {
            if let Output::TransferResult { tag, result, .. } = out {
                results.insert(tag, result);
            }
        };
        h.run_until(60 * SECS, &mut obs);
        for k in 1..4u64 {
            assert_eq!(
                results[&(10 + k)],
                Ok(()),
                "seed {seed}: honest transfer {k}"
            );
        }
        let mut applied = BTreeSet::new();
        for i in ids(4) {
            let p = h.protocol::<At2<Bracha<Batch>>>(NodeIdx(i.0)).unwrap();
            let b0 = p.balance(acct(0));
            let got = match (p.balance(acct(1)), p.balance(acct(2))) {
                (175, 95) => "a",
                (95, 175) => "b",
                (95, 95) => "none",
                other => panic!("seed {seed}: node {i} has {other:?}"),
            };
            // account 0 received 15 and spent 80 at most once
            assert_eq!(b0, if got == "none" { 115 } else { 35 }, "seed {seed}");
            let total: i128 = p.ledger().balances().values().sum();
            assert_eq!(total, 400);
            applied.insert(got);
        }
        assert_eq!(applied.len(), 1, "seed {seed}: nodes disagree: {applied:?}");
        let got = *applied.first().unwrap();
        // the clients hear the truth: the applied one Ok, the other refused
        match got {
            "a" => assert!(results[&1].is_ok() && results[&2].is_err(), "{results:?}"),
            "b" => assert!(results[&2].is_ok() && results[&1].is_err(), "{results:?}"),
            _ => assert!(results[&1].is_err() && results[&2].is_err(), "{results:?}"),
        }
        assert!(
            h.stats()
                .fault_log
                .iter()
                .any(|f| f.kind == "at2-double-spend" && f.culprit == owner_addr(acct(0))),
            "seed {seed}: the owner is blamed"
        );
        *outcomes.entry(got).or_insert(0) += 1;
    }
    // both proposals race; which one (if any) wins depends on the seed
    assert_eq!(outcomes.values().sum::<u32>(), 40, "{outcomes:?}");
    eprintln!("double spend outcomes over 40 seeds: {outcomes:?}");
    assert_eq!(outcomes.len(), 3, "a, b and none all happen: {outcomes:?}");
}

#[test]
fn submissions_are_refused_at_once_with_the_reason() {
    let bcfg = Arc::new(bracha::Config::new(ids(4)).unwrap());
    let cfg = Arc::new(Config::bracha(Genesis::demo(4, 10), ids(4)));
    let mut h = cluster(9, 4, |i| {
        At2::new(Bracha::new(i, bcfg.clone()), cfg.clone())
    });
    let good = pay(0, 1, 1, 10, vec![]);
    // forged: account 1's transfer signed by account 2's key
    let forged = SignedTransfer::sign(
        &demo_key(2),
        Transfer {
            from: acct(1),
            seq: 1,
            to: acct(2),
            amount: 5,
        },
        vec![],
    );
    let zero = pay(3, 1, 2, 0, vec![]);
    let ahead = pay(3, 2, 2, 1, vec![]);
    let unfunded = pay(2, 1, 3, 11, vec![]);
    h.schedule_input(0, NodeIdx(0), submit(good.clone(), 1));
    h.schedule_input(0, NodeIdx(1), submit(forged, 2));
    h.schedule_input(0, NodeIdx(1), submit(zero, 3));
    h.schedule_input(0, NodeIdx(1), submit(ahead, 4));
    h.schedule_input(0, NodeIdx(2), submit(unfunded, 5));
    let results = std::cell::RefCell::new(BTreeMap::new());
    let mut obs = |_: Time, _: NodeIdx, _: Addr, out: Output, _: &mut Control<Input>| {
        if let Output::TransferResult { tag, result, .. } = out {
            results.borrow_mut().insert(tag, result);
        }
    };
    h.run_until(60 * SECS, &mut obs);
    let r = results.borrow().clone();
    assert_eq!(r[&1], Ok(()));
    assert_eq!(r[&2], Err(TransferError::BadSignature));
    assert_eq!(r[&3], Err(TransferError::Malformed(Malformed::ZeroAmount)));
    assert!(matches!(r[&4], Err(TransferError::NotYet(_))), "{r:?}");
    assert_eq!(
        r[&5],
        Err(TransferError::InsufficientFunds {
            balance: 10,
            amount: 11
        })
    );
    // the same signed transfer again, once applied: refused as replayed
    h.schedule_input(h.now(), NodeIdx(3), submit(good, 6));
    h.run_until(h.now() + 10 * SECS, &mut obs);
    assert_eq!(
        results.borrow()[&6],
        Err(TransferError::Stale { seq: 1, used: 1 })
    );
    for i in ids(4) {
        let p = h.protocol::<At2<Bracha<Batch>>>(NodeIdx(i.0)).unwrap();
        assert_eq!(p.ledger().applied_count(), 1);
        assert_eq!((p.balance(acct(0)), p.balance(acct(1))), (0, 20));
    }
    assert_eq!(h.stats().faults, 0);
}

// ------------------------------------------------------------------ a voter alone

/// A broadcast stand-in: deliveries arrive as messages (the voter tests
/// feed batches in directly); a held source's wait.
#[derive(Clone, Debug, Default)]
struct Fed {
    held: BTreeSet<NodeId>,
    waiting: Vec<Delivery<Batch>>,
    most_waiting: usize,
}

impl Protocol for Fed {
    type Message = Delivery<Batch>;
    type Input = Batch;
    type Output = Delivery<Batch>;
    type Timer = byzscale_broadcast::NoTimer;
    type Record = byzscale_core::NoRecord;
    fn on_input(&mut self, _: Batch, _: &mut Cx<'_, Self>) {}
    fn on_message(&mut self, _: Addr, d: Self::Message, cx: &mut Cx<'_, Self>) {
        if self.held.contains(&d.source) {
            self.waiting.push(d);
            self.most_waiting = self.most_waiting.max(self.waiting.len());
        } else {
            cx.output(d);
        }
    }
    fn on_timer(&mut self, t: Self::Timer, _: &mut Cx<'_, Self>) {
        match t {}
    }
}

impl SecureBroadcast<Batch> for Fed {
    fn me(&self) -> NodeId {
        NodeId(0)
    }
    fn kind(&self) -> &'static str {
        "fed"
    }
    fn next_seq(&self) -> u64 {
        1
    }
    fn stats(&self) -> byzscale_broadcast::BroadcastStats {
        Default::default()
    }
    fn hold(&mut self, source: NodeId) {
        self.held.insert(source);
    }
    fn release(&mut self, source: NodeId, cx: &mut Cx<'_, Self>) {
        self.held.remove(&source);
        let (out, keep) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|d| d.source == source);
        self.waiting = keep;
        for d in out {
            cx.output(d);
        }
    }
}

/// Process 0 of four over [`Fed`], driven by hand.
struct Alone {
    at2: At2<Fed>,
    crypto: Vec<Crypto>,
    rng: rand_chacha::ChaCha8Rng,
    bseq: BTreeMap<NodeId, u64>,
}

impl Alone {
    fn new(balance: u64) -> Self {
        let dir = group::directory(ids(4));
        let cfg = Arc::new(Config::bracha(Genesis::demo(4, balance), ids(4)));
        Alone {
            at2: At2::new(Fed::default(), cfg),
            crypto: ids(4)
                .into_iter()
                .map(|i| group::crypto(i, &dir, CryptoMode::Real))
                .collect(),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(0),
            bseq: BTreeMap::new(),
        }
    }

    /// Run one message from `from` through process 0: its effects.
    fn step(&mut self, from: NodeId, msg: Message<Delivery<Batch>>) -> Vec<Effect<At2<Fed>>> {
        let mut fx = Vec::new();
        let mut cx = Cx::new(0, &mut self.rng, &self.crypto[0], &mut fx);
        self.at2.on_message(Addr::Node(from), msg, &mut cx);
        fx
    }

    /// Member `from` proposes `ts`: process 0's vote (its `yes` ranges).
    fn propose(
        &mut self,
        from: NodeId,
        pid: u64,
        ts: Vec<SignedTransfer>,
    ) -> (Ranges, Vec<&'static str>) {
        let fx = self.step(from, Message::Propose { pid, transfers: ts });
        let mut yes = None;
        let mut faults = Vec::new();
        for e in fx {
            match e {
                Effect::Send {
                    msg: Message::Vote { yes: y, .. },
                    ..
                } => yes = Some(y),
                Effect::Fault(f) => faults.push(f.name()),
                _ => {}
            }
        }
        (yes.expect("a vote"), faults)
    }

    /// A batch from `source` carrying `ts` with `yes` votes from `voters`
    /// (signed by each), delivered at process 0: what it applied.
    fn deliver(
        &mut self,
        source: NodeId,
        ts: Vec<SignedTransfer>,
        voters: &[u32],
    ) -> (Vec<TransferId>, Vec<&'static str>) {
        let pid = 7;
        let digest = proposal_digest(&self.crypto[0], source, pid, &ts);
        let yes = vec![(0, ts.len() as u32)];
        let votes = voters
            .iter()
            .map(|v| Vote {
                voter: NodeId(*v),
                yes: yes.clone(),
                sig: self.crypto[*v as usize].sign(&vote_bytes(source, pid, &digest, &yes)),
            })
            .collect();
        let seq = self.bseq.entry(source).or_insert(0);
        *seq += 1;
        let d = Delivery {
            source,
            seq: *seq,
            payload: Batch {
                pid,
                transfers: ts,
                votes,
            },
            sig: self.crypto[source.0 as usize].sign(b"unchecked by Fed"),
        };
        let mut applied = Vec::new();
        let mut faults = Vec::new();
        for e in self.step(source, Message::Bcast(d)) {
            match e {
                Effect::Output(Output::Applied(c)) => applied.push(c.transfer.id()),
                Effect::Fault(f) => faults.push(f.name()),
                _ => {}
            }
        }
        (applied, faults)
    }
}

#[test]
fn a_voter_endorses_only_valid_transfers_and_one_per_sequence_number() {
    let mut p = Alone::new(100);
    let good = pay(1, 1, 2, 10, vec![]);
    let forged = SignedTransfer {
        sig: pay(3, 1, 1, 10, vec![]).sig,
        ..pay(2, 1, 1, 10, vec![])
    };
    let overdraft = pay(3, 1, 1, 101, vec![]);
    let zero = pay(0, 1, 1, 0, vec![]);
    let (yes, faults) = p.propose(NodeId(1), 1, vec![good.clone(), forged, overdraft, zero]);
    assert_eq!(yes, vec![(0, 1)], "only the first");
    assert_eq!(faults, vec!["at2-bad-signature", "at2-malformed-transfer"]);
    // a vote is durable before it leaves
    assert!(p.at2.endorsed().contains_key(&(acct(1), 1)));
    // another proposer offers a different transfer with the same sequence
    // number: refused, the owner blamed; the same transfer again: endorsed
    let conflicting = pay(1, 1, 3, 10, vec![]);
    let (yes, faults) = p.propose(NodeId(2), 1, vec![conflicting, good.clone()]);
    assert_eq!(yes, vec![(1, 2)]);
    assert_eq!(faults, vec!["at2-double-spend"]);
    // the same proposal again (a lost vote): the same vote, no new checks
    let again = p.step(
        NodeId(2),
        Message::Propose {
            pid: 1,
            transfers: vec![pay(1, 1, 3, 10, vec![]), good.clone()],
        },
    );
    assert!(
        matches!(&again[..], [Effect::Send { msg: Message::Vote { yes, .. }, .. }] if *yes == vec![(1, 2)])
    );
    // applied: later transfers with that number are replays
    let (applied, _) = p.deliver(NodeId(1), vec![good.clone()], &[1, 2, 3]);
    assert_eq!(applied, vec![good.id()]);
    assert!(p.at2.endorsed().is_empty(), "forgotten once applied");
    let (yes, _) = p.propose(NodeId(3), 2, vec![good]);
    assert!(yes.is_empty(), "a replay");
}

#[test]
fn a_voter_waits_for_what_it_cannot_check_yet_then_refuses() {
    let mut p = Alone::new(100);
    let dep = pay(0, 1, 1, 50, vec![]);
    let spend = pay(1, 1, 2, 150, vec![dep.id()]);
    // the dependency is not applied here: no vote yet
    let fx = p.step(
        NodeId(2),
        Message::Propose {
            pid: 1,
            transfers: vec![spend.clone()],
        },
    );
    assert!(fx.iter().all(|e| !matches!(e, Effect::Send { .. })));
    // once it is, the vote goes out, endorsing
    let mut voted = None;
    let (applied, _) = p.deliver(NodeId(3), vec![dep.clone()], &[1, 2, 3]);
    assert_eq!(applied, vec![dep.id()]);
    // (the vote went out in that step; ask again to see it)
    for e in p.step(
        NodeId(2),
        Message::Propose {
            pid: 1,
            transfers: vec![spend.clone()],
        },
    ) {
        if let Effect::Send {
            msg: Message::Vote { yes, .. },
            ..
        } = e
        {
            voted = Some(yes);
        }
    }
    assert_eq!(voted, Some(vec![(0, 1)]));
    // a dependency that never comes: refused when the timer goes off
    let fake = TransferId {
        from: acct(3),
        seq: 9,
    };
    let mut fx = p.step(
        NodeId(1),
        Message::Propose {
            pid: 2,
            transfers: vec![pay(2, 1, 1, 120, vec![fake])],
        },
    );
    assert!(fx.iter().all(|e| !matches!(e, Effect::Send { .. })));
    fx.clear();
    let mut cx = Cx::new(0, &mut p.rng, &p.crypto[0], &mut fx);
    p.at2.on_timer(Timer::Defer(NodeId(1)), &mut cx);
    assert!(fx.iter().any(
        |e| matches!(e, Effect::Send { msg: Message::Vote { yes, .. }, .. } if yes.is_empty())
    ));
}

#[test]
fn only_a_quorum_of_valid_votes_certifies() {
    let mut p = Alone::new(100);
    let t1 = pay(1, 1, 2, 10, vec![]);
    // two votes of four: not certified (quorum 3)
    let (applied, _) = p.deliver(NodeId(1), vec![t1.clone()], &[1, 2]);
    assert!(applied.is_empty());
    // three, one of which signed by the wrong key: still not
    let digest = proposal_digest(&p.crypto[0], NodeId(1), 7, std::slice::from_ref(&t1));
    let yes = vec![(0u32, 1u32)];
    let bytes = vote_bytes(NodeId(1), 7, &digest, &yes);
    let votes = vec![
        Vote {
            voter: NodeId(1),
            yes: yes.clone(),
            sig: p.crypto[1].sign(&bytes),
        },
        Vote {
            voter: NodeId(2),
            yes: yes.clone(),
            sig: p.crypto[2].sign(&bytes),
        },
        Vote {
            voter: NodeId(3),
            yes: yes.clone(),
            sig: p.crypto[1].sign(&bytes),
        },
    ];
    let d = Delivery {
        source: NodeId(1),
        seq: 2,
        payload: Batch {
            pid: 7,
            transfers: vec![t1.clone()],
            votes,
        },
        sig: p.crypto[1].sign(b"x"),
    };
    let fx = p.step(NodeId(1), Message::Bcast(d));
    assert!(fx
        .iter()
        .all(|e| !matches!(e, Effect::Output(Output::Applied(_)))));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Fault(f) if f.is(Fault::BadVote))));
    // a batch voting twice for one voter is malformed
    let (applied, faults) = p.deliver(NodeId(1), vec![t1.clone()], &[1, 1, 2]);
    assert!(applied.is_empty());
    assert_eq!(faults, vec!["at2-malformed-batch"]);
    // a quorum: applied
    let (applied, _) = p.deliver(NodeId(1), vec![t1.clone()], &[0, 2, 3]);
    assert_eq!(applied, vec![t1.id()]);
}

/// Issue 10 item 9, for sources: certified transfers of source 1 that wait
/// for an account's earlier transfer (delivered late, from source 2) fill
/// at most the pending bound (plus one batch); the rest is held back in the
/// broadcast and applied once the earlier transfer arrives.
#[test]
fn sources_behind_a_slow_transfer_are_held_not_dropped() {
    let mut p = Alone::new(1_000_000_000);
    // account 1's transfers 2.. come from source 1; its transfer 1 from
    // source 2, last
    let batch = |from: u64| -> Vec<SignedTransfer> {
        (from..from + 64).map(|s| pay(1, s, 2, 1, vec![])).collect()
    };
    let one = byzscale_core::codec::encoded_len(&Certified {
        transfer: pay(1, 2, 2, 1, vec![]).transfer,
        deps: vec![],
    });
    let bound = ledger::MAX_PENDING_BYTES_PER_SOURCE;
    let batches = (3 * bound / one / 64) as u64;
    let mut next = 2;
    for _ in 0..batches {
        p.deliver(NodeId(1), batch(next), &[1, 2, 3]);
        next += 64;
        let held = p.at2.ledger().pending_bytes(NodeId(1));
        assert!(held <= bound + 64 * one, "{held} bytes pending");
    }
    assert!(p.at2.stats().held >= 1 && p.at2.bcast.most_waiting > 0);
    assert_eq!(p.at2.ledger().seq(acct(1)), 0);
    let (applied, _) = p.deliver(NodeId(2), vec![pay(1, 1, 2, 1, vec![])], &[1, 2, 3]);
    assert_eq!(
        applied.len() as u64,
        next - 1,
        "every transfer of account 1"
    );
    assert_eq!(p.at2.ledger().pending_count(), 0);
}

#[test]
fn proposals_go_to_a_quorum_first_and_a_silent_member_is_asked_last() {
    let bcfg = Arc::new(bracha::Config::new(ids(4)).unwrap());
    let cfg = Arc::new(Config::bracha(Genesis::demo(8, 100), ids(4)));
    let mut h = cluster(11, 4, |i| {
        At2::new(Bracha::new(i, bcfg.clone()), cfg.clone())
    });
    // one transfer per proposal: account k pays node 0's clients, 50 ms apart
    let spaced = |h: &mut S<Bracha<Batch>>, from: Time, accounts: &[u32], seq: u64| {
        for (i, k) in accounts.iter().enumerate() {
            let at = from + i as Time * 50 * MILLIS;
            h.schedule_input(
                at,
                NodeIdx(0),
                submit(pay(*k, seq, 0, 1, vec![]), (*k as u64) << 8 | seq),
            );
        }
    };
    spaced(&mut h, 0, &[1, 2, 3, 4, 5, 6], 1);
    let mut done = BTreeMap::new();
    let run = |h: &mut S<Bracha<Batch>>, until: Time, done: &mut BTreeMap<u64, Time>| {
        let mut obs = |at: Time, _: NodeIdx, _: Addr, out: Output, _: &mut Control<Input>| {
            if let Output::TransferResult { tag, result, .. } = out {
                assert_eq!(result, Ok(()), "transfer {tag}");
                done.insert(tag, at);
            }
        };
        h.run_until(until, &mut obs);
    };
    run(&mut h, 2 * SECS, &mut done);
    assert_eq!(done.len(), 6);
    let votes = |h: &S<Bracha<Batch>>, i: u32| {
        h.protocol::<At2<Bracha<Batch>>>(NodeIdx(i))
            .unwrap()
            .stats()
            .votes
    };
    // q = 3: the proposer and two voters per proposal, spread over all three
    let per: Vec<u64> = (1..4).map(|i| votes(&h, i)).collect();
    assert_eq!(per.iter().sum::<u64>(), 2 * 6, "{per:?}");
    assert!(per.iter().all(|v| *v > 0), "{per:?}");
    // member 1 crashes: the first proposal that asks it waits for the vote
    // timer, the later ones ask the other two first and do not
    h.crash(h.now(), NodeIdx(1));
    let start = h.now() + MILLIS;
    spaced(&mut h, start, &[1, 2, 3, 4, 5, 6], 2);
    run(&mut h, start + 10 * SECS, &mut done);
    let late: Vec<Time> = (1..7u64)
        .map(|k| done[&(k << 8 | 2)] - (start + (k - 1) * 50 * MILLIS))
        .collect();
    let timeout = cfg.vote_timeout;
    assert_eq!(
        late.iter().filter(|l| **l >= timeout).count(),
        1,
        "{late:?}"
    );
}
