//! Crash recovery of the SMR replica on the simulator engine: the real
//! replica and client cores, real crypto, a one-region network, and a modeled
//! disk per replica.
//!
//! Each replica keeps its records on a disk of the simulator's storage
//! model (`byzscale_sim::storage`), which does what the tokio runtime and the
//! node's persister do: records are written at once and made durable by a
//! group commit (`FSYNC`), and a send that follows a record in its step is
//! held until that record is durable (outputs wait for every earlier
//! record). A crash keeps exactly the durable records: records emitted but
//! not yet fsync'd are lost together with the sends they held. A restart
//! rebuilds the replica with `Replica::recover` from what its disk kept.
//!
//! One test per part of issue 10's "Durability as the core states it"
//! (items 1 to 4); each doc comment says what it reproduces.

use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::protocol::{Time, MILLIS, SECS};
use byzscale_core::{Addr, ClientId, NodeId};
use byzscale_sim::engine::{Actor as SimActor, ActorCx, BoxActor, NodeIdx, ProtocolActor, Sim};
use byzscale_sim::storage::{Disk, FromDisk, Recovery, SharedDisk, StorageModel};
use byzscale_smr::replica::{Durable, Record};
use byzscale_smr::{client, replica, Batch, Client, GroupInfo, Message, Params, Replica, Request};

mod common;
use common::{group, lan, params, Keys, Log, Out, Seen};

#[derive(Debug)]
enum In {
    Client(client::Input),
    Replica(replica::Input),
    /// The scripted (Byzantine) leader sends this message.
    Script(Addr, Message),
}

// ------------------------------------------------------------ the disk model

/// How long a group commit takes.
const FSYNC: Time = MILLIS;

/// One replica's disk (the simulator's storage model): the records it
/// made durable, in emission order.
type DiskRef = SharedDisk<Record, Vec<Record>>;

fn disk() -> DiskRef {
    Disk::shared(StorageModel::fixed(FSYNC), Vec::new(), |v, r| v.push(r))
}

type Actor = ProtocolActor<Replica<Log>, In, Out>;

/// A replica's actor, on its disk.
fn actor(r: Replica<Log>, disk: &DiskRef) -> Actor {
    let map_in = |i| match i {
        In::Replica(x) => Some(x),
        _ => None,
    };
    ProtocolActor::with_maps(r, map_in, Out::Replica).with_disk(disk.clone())
}

/// A Byzantine leader whose every message the test scripts.
struct Scripted;
impl SimActor<Message, In, Out> for Scripted {
    fn start(&mut self, _: &mut ActorCx<'_, Message, Out>) {}
    fn input(&mut self, input: In, cx: &mut ActorCx<'_, Message, Out>) {
        if let In::Script(to, msg) = input {
            cx.send(to, msg);
        }
    }
    fn message(&mut self, _: Addr, _: Message, _: &mut ActorCx<'_, Message, Out>) {}
    fn timer(&mut self, _: u64, _: &mut ActorCx<'_, Message, Out>) {}
}

// ------------------------------------------------------------ the world

const CLIENT: ClientId = ClientId(1);

struct World {
    sim: Sim<Message, In, Out>,
    seen: Seen,
    g: GroupInfo,
    p: Params,
    keys: Keys,
    replicas: Vec<NodeIdx>,
    disks: Vec<DiskRef>,
    client: NodeIdx,
}

impl World {
    /// Four replicas with disks (position 0 `Scripted` if `byzantine_leader`)
    /// and one client.
    fn new(p: Params, byzantine_leader: bool) -> Self {
        let g = group(4, 1);
        let mut addrs = g.addrs();
        addrs.push(Addr::Client(CLIENT));
        let mut w = World {
            sim: lan(),
            seen: Seen::new(true),
            g,
            p,
            keys: Keys::new(addrs),
            replicas: Vec::new(),
            disks: Vec::new(),
            client: NodeIdx(0),
        };
        for i in 0..4 {
            let disk = disk();
            let crypto = w.crypto(i);
            let idx = if i == 0 && byzantine_leader {
                w.sim.add_node(w.addr(i), crypto, Scripted, 0)
            } else {
                let me = NodeId(i as u32);
                let r = Replica::new(me, w.g.clone(), w.p.clone(), Log::default());
                let idx = w.sim.add_node(w.addr(i), crypto, actor(r, &disk), 0);
                w.sim.set_recovery(idx, w.recovery(i, &disk));
                idx
            };
            w.replicas.push(idx);
            w.disks.push(disk);
        }
        let c = Client::new(CLIENT, w.g.clone(), w.p.clone());
        let actor = ProtocolActor::with_maps(
            c,
            |i| match i {
                In::Client(x) => Some(x),
                _ => None,
            },
            Out::Client,
        );
        w.client = w.sim.add_node(w.addr(4), w.crypto(4), actor, 0);
        w
    }

    fn crypto(&self, i: usize) -> Crypto {
        self.keys.crypto(i)
    }

    fn addr(&self, i: usize) -> Addr {
        self.keys.addrs[i]
    }

    fn now(&self) -> Time {
        self.sim.now()
    }

    fn crash(&mut self, i: usize) {
        let now = self.now();
        self.sim.crash(now, self.replicas[i]);
    }

    /// How replica `i` restarts: `Replica::recover` from the records its
    /// disk kept.
    fn recovery(&self, i: usize, disk: &DiskRef) -> impl Recovery<Message, In, Out> {
        let (g, p, crypto) = (self.g.clone(), self.p.clone(), self.crypto(i));
        FromDisk::new(disk.clone(), move |kept: &Vec<Record>, disk: &DiskRef| {
            let durable = Durable::from_records(kept.iter().cloned());
            let me = NodeId(i as u32);
            let r = Replica::recover(me, g.clone(), p.clone(), Log::default(), durable, &crypto)
                .expect("recovers from its own records");
            Ok(Box::new(actor(r, disk)) as BoxActor<Message, In, Out>)
        })
    }

    /// Rebuild replica `i` from what its disk kept and start it.
    fn restart(&mut self, i: usize) {
        let now = self.now();
        self.sim.recover(now, self.replicas[i]);
    }

    fn replica(&self, i: usize) -> &Replica<Log> {
        self.sim
            .protocol::<Replica<Log>>(self.replicas[i])
            .expect("a replica")
    }

    fn submit(&mut self, op: &[u8]) {
        let input = In::Client(client::Input::Submit {
            op: op.to_vec(),
            read_only: false,
        });
        let now = self.now();
        self.sim.schedule_input(now, self.client, input);
    }

    /// Write `[i]` for each `i` of `ops` in turn, each run until the
    /// client has `i + 1` completions.
    fn write_each(&mut self, ops: std::ops::Range<u8>) {
        for i in ops {
            self.submit(&[i]);
            self.run(i as usize + 1);
        }
    }

    fn suspect(&mut self, i: usize) {
        let now = self.now();
        let input = In::Replica(replica::Input::Suspect);
        self.sim.schedule_input(now, self.replicas[i], input);
    }

    /// The scripted leader sends `msg` to replica `to`.
    fn script(&mut self, to: usize, msg: Message) {
        let now = self.now();
        let input = In::Script(self.addr(to), msg);
        self.sim.schedule_input(now, self.replicas[0], input);
    }

    fn run(&mut self, done: usize) {
        self.seen.run(&mut self.sim, done);
    }

    fn settle(&mut self, d: Time) {
        self.seen.settle(&mut self.sim, d);
    }

    fn faults(&self, kind: &str) -> usize {
        self.seen.fault_counts().get(kind).copied().unwrap_or(0)
    }
}

/// The request `seq` of the client with op `op` (authenticated for every
/// replica, as the scripted leader needs them).
fn request(w: &World, seq: u64, op: &[u8]) -> Request {
    Request::authenticated(&w.crypto(4), &w.g, CLIENT, (0, seq), false, op.to_vec())
}

fn digest(b: &Batch) -> Digest {
    byzscale_core::crypto::digest(&b.bytes())
}

// ------------------------------------------------------------ the tests

/// Issue 10 item 1, restart amnesia: one Byzantine leader plus one routine
/// restart of a correct backup. The leader proposes batch A to backups 1 and
/// 2 and batch B to backup 3 for slot 1 of view 0; 1 and 2 prepare A and
/// ACCEPT it. Backup 1 restarts, and the leader then sends it B with WRITEs
/// and ACCEPTs for B. Before the fix (`recover` from the decided log only,
/// no record of the WRITE and ACCEPT it sent) backup 1 wrote and accepted
/// B, so backup 3 decided B while backup 2 decided A: two correct replicas
/// disagree on slot 1. Now backup 1 comes back with its vote for A, reports
/// the equivocation and never votes for B.
#[test]
fn a_restarted_backup_never_votes_for_a_second_digest_under_an_equivocating_leader() {
    let mut w = World::new(params(), true);
    let a = Batch::new(vec![request(&w, 1, b"A")]);
    let b = Batch::new(vec![request(&w, 1, b"B")]);
    let (da, db) = (digest(&a), digest(&b));
    let propose = |batch: &Batch| Message::Propose {
        view: 0,
        slot: 1,
        batch: batch.clone(),
    };
    let write = |digest| Message::Write {
        view: 0,
        slot: 1,
        digest,
    };
    let accept = |digest| Message::Accept {
        view: 0,
        slot: 1,
        digest,
    };
    w.script(1, propose(&a));
    w.script(2, propose(&a));
    w.script(3, propose(&b));
    w.settle(10 * MILLIS);
    w.script(1, write(da));
    w.script(2, write(da));
    w.script(3, write(db));
    w.settle(10 * MILLIS);
    // 1 and 2 prepared A (their WRITEs and the leader's) and ACCEPTed it
    for i in [1, 2] {
        let disk = w.disks[i].borrow();
        assert!(
            disk.state()
                .iter()
                .any(|r| matches!(r, Record::Accept { digest, .. } if *digest == da)),
            "replica {i} did not accept A"
        );
    }
    assert!(w.seen.decided.is_empty(), "nothing is decided yet");

    w.crash(1);
    w.settle(MILLIS);
    w.restart(1);
    w.settle(MILLIS);
    w.script(1, propose(&b));
    for i in [1, 3] {
        w.script(i, write(db));
        w.script(i, accept(db));
    }
    w.settle(20 * MILLIS);
    // the leader completes A at 2 only
    w.script(2, accept(da));
    w.settle(20 * MILLIS);

    w.seen.assert_agreement();
    let two = &w.seen.decided[&Addr::Node(NodeId(2))];
    assert_eq!(two[..1], [(1, da, 1)], "replica 2 decides A");
    for r in [1, 3] {
        let decided = w.seen.decided.get(&Addr::Node(NodeId(r)));
        assert!(
            decided.is_none_or(|d| d.iter().all(|(_, dg, _)| *dg == da)),
            "replica {r} decided B: {decided:?}"
        );
    }
    assert!(
        !w.disks[1].borrow().state().iter().any(|r| matches!(
            r,
            Record::Proposal { digest, .. } | Record::Accept { digest, .. } if *digest == db
        )),
        "the restarted backup voted for B"
    );
    let equivocation = w
        .seen
        .faults
        .iter()
        .any(|(n, k, c)| *n == w.replicas[1] && *k == "equivocation" && *c == w.addr(0));
    assert!(equivocation, "faults: {:?}", w.seen.faults);
}

/// Issue 10 item 2, acknowledged writes lost after a whole-group crash:
/// replies used to leave at execution while the group commit fsync'd up to
/// 10 ms later, so after a whole-group SIGKILL a slot whose replies a client
/// had seen was re-decided with another batch by the replicas that had not
/// fsync'd it, and the acknowledged write vanished. Here all four replicas
/// crash at once in the middle of a run with requests in flight, each keeping
/// only its durable records; after the restart every reply the client saw
/// before the crash holds (the op sits at the position its result named, in
/// every replica's log), every request completes, and no slot is decided
/// with two different batches across the two incarnations.
#[test]
fn a_whole_group_crash_loses_no_acknowledged_write_and_redecides_the_same_batches() {
    let mut in_flight = Vec::new();
    for crash_after in [3, 9, 17, 24] {
        in_flight.push(whole_group_crash_after(crash_after));
    }
    // the crashes caught records written but not yet durable
    assert!(
        in_flight.iter().filter(|n| **n > 0).count() >= 3,
        "{in_flight:?}"
    );
}

/// Item 2 with the crash once the client has seen `crash_after` replies;
/// returns how many records the crash lost.
fn whole_group_crash_after(crash_after: usize) -> usize {
    let mut w = World::new(params(), false);
    let ops: Vec<Vec<u8>> = (0..60u16).map(|i| i.to_le_bytes().to_vec()).collect();
    for op in &ops[..30] {
        w.submit(op);
    }
    w.run(crash_after);
    // crash everything now: some slots are decided but not yet durable
    // everywhere, some replies are held, some are on the wire
    let pending: usize = w.disks.iter().map(|d| d.borrow().unsynced()).sum();
    for i in 0..4 {
        w.crash(i);
    }
    let acked: Vec<(u64, Vec<u8>)> = w.seen.done.clone();
    w.settle(5 * MILLIS);
    for i in 0..4 {
        w.restart(i);
    }
    for op in &ops[30..] {
        w.submit(op);
    }
    w.run(ops.len());
    w.settle(SECS);

    w.seen.assert_agreement();
    let logs: Vec<&Vec<Vec<u8>>> = (0..4).map(|i| &w.replica(i).service().0).collect();
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(log.len(), ops.len(), "replica {i} executed every op once");
        assert_eq!(*log, logs[0], "replica {i}'s state differs");
    }
    for (id, result) in &acked {
        let at = u64::from_le_bytes(result[..8].try_into().unwrap()) as usize;
        assert_eq!(
            logs[0][at - 1],
            ops[*id as usize - 1],
            "crash after {crash_after}: op {id} was acknowledged at position {at}"
        );
    }
    // FIFO and exactly-once from the client's side as well
    for (id, result) in &w.seen.done {
        assert_eq!(u64::from_le_bytes(result[..8].try_into().unwrap()), *id);
    }
    pending
}

/// Issue 10 item 3, null-filled replay: recovered replicas held no
/// checkpoint certificate and no claims, so the next view change selected
/// from slot 0 with nothing claimed below the newest prepared slot, filled
/// the replayed slots with empty batches, and a replica that had not
/// persisted them executed the empty batches (its state lost those writes).
/// Here replica 3's disk stalls while slots 5 and 6 are decided, the whole
/// group crashes and restarts (3 keeps the stable checkpoint at 4, the
/// others slots 5 and 6 too), a new request is ordered and every replica
/// suspects the leader at once. Replica 3 must execute the real batches of
/// slots 5 and 6, never empty ones.
#[test]
fn a_recovered_replica_never_executes_a_replayed_slot_as_an_empty_batch() {
    let mut w = World::new(params(), false);
    w.write_each(0..4);
    w.settle(20 * MILLIS);
    for i in 0..4 {
        let r = w.replica(i);
        assert_eq!((r.executed(), r.stats().low), (4, 4), "replica {i}");
    }
    w.disks[3].borrow_mut().stall(true);
    w.write_each(4..6);
    w.settle(20 * MILLIS);
    for i in 0..4 {
        w.crash(i);
    }
    w.settle(MILLIS);
    w.disks[3].borrow_mut().stall(false);
    for i in 0..4 {
        w.restart(i);
    }
    w.settle(0);
    assert_eq!(w.replica(3).executed(), 4, "3 lost slots 5 and 6");
    assert_eq!(w.replica(0).executed(), 6);
    // a new slot gets prepared, and the leader is suspected at once
    w.submit(&[6]);
    w.settle(3 * MILLIS);
    for i in 0..4 {
        w.suspect(i);
    }
    w.run(7);
    w.settle(SECS);

    w.seen.assert_agreement();
    assert!(w.seen.views.values().all(|v| *v >= 1), "{:?}", w.seen.views);
    let three = &w.seen.decided[&Addr::Node(NodeId(3))];
    for slot in [5, 6] {
        let got = three.iter().find(|(s, _, _)| *s == slot);
        assert!(
            matches!(got, Some((_, _, 1))),
            "replica 3 executed slot {slot} as {got:?}"
        );
    }
    let (log3, log0) = (&w.replica(3).service().0, &w.replica(0).service().0);
    assert_eq!(log3, log0);
    assert_eq!(log3.len(), 7);
}

/// Issue 10 item 4, recovered replicas cannot change view: `recover` set the
/// low watermark but no stable checkpoint, so a restarted replica's
/// STOP-DATA carried no certificate and claims above the window counted
/// from slot 0, and every leader rejected it ("bad claim for slot N"): after
/// a whole-group restart the first leader crash was permanent. Here the
/// group orders past three stable checkpoints (the last at 12), restarts as
/// a whole, orders slots 13 and 14 (beyond the window counted from 0, below
/// the next checkpoint), and loses its leader: the others must complete a
/// view change and serve the client.
#[test]
fn after_a_whole_group_restart_a_leader_crash_completes_a_view_change() {
    let mut w = World::new(params(), false);
    w.write_each(0..12);
    w.settle(20 * MILLIS);
    assert!(w.replica(1).stats().low >= 8);
    for i in 0..4 {
        w.crash(i);
    }
    w.settle(MILLIS);
    for i in 0..4 {
        w.restart(i);
    }
    // two slots (13, 14): beyond the window counted from 0, and no new
    // checkpoint (at 16) to certify them
    w.write_each(12..14);
    w.settle(20 * MILLIS);
    assert_eq!(w.replica(1).executed(), 14);
    w.crash(0);
    for i in 14..20u8 {
        w.submit(&[i]);
    }
    w.run(20);
    w.settle(SECS);

    w.seen.assert_agreement();
    for i in 1..4 {
        assert!(
            w.seen.views.get(&w.addr(i)).is_some_and(|v| *v >= 1),
            "replica {i} did not leave view 0: {:?}",
            w.seen.views
        );
    }
    assert_eq!(w.faults("stop-data-invalid"), 0, "{:?}", w.seen.faults);
    assert_eq!(w.faults("sync-invalid"), 0, "{:?}", w.seen.faults);
    for (id, result) in &w.seen.done {
        assert_eq!(u64::from_le_bytes(result[..8].try_into().unwrap()), *id);
    }
    let (l1, l3) = (&w.replica(1).service().0, &w.replica(3).service().0);
    assert_eq!(l1.len(), 20);
    assert_eq!(l1, l3);
}
