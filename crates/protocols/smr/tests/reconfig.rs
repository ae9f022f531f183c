//! Replica-set reconfiguration on the simulator engine (issue 14 item 6,
//! docs/RECONFIGURATION.md): the real replica and client cores, real crypto,
//! a one-region network without faults. The administrator signs whole
//! configurations ([`ConfigCert`]); the client orders them like any request;
//! joining replicas start from the genesis group and the certificates
//! ([`Replica::joining`]); removed replicas retire by themselves.
//!
//! Checked in every run: no replica or client reports a fault unless the
//! test expects it ([`Seen`]); no slot is decided twice differently; every
//! write the client got a result for is in order with none lost or run
//! twice (the service answers each write with the log's length, so the
//! results are 1, 2, 3, ...); the current members end with the same log;
//! the client, started at epoch 0, follows the proof to the newest epoch.

use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::protocol::MILLIS;
use byzscale_core::{codec, Addr, ClientId, NodeId};
use byzscale_sim::engine::{BoxActor, NodeIdx, ProtocolActor, Sim};
use byzscale_sim::storage::{Disk, FromDisk, SharedDisk, StorageModel};
use byzscale_smr::config::{ConfigBody, ConfigCert, MemberSpec};
use byzscale_smr::replica::ReconfigResult;
use byzscale_smr::replica::{Durable, Record};
use byzscale_smr::{client, Client, GroupInfo, Message, Replica};
use std::collections::BTreeMap;

mod common;
use common::{group, lan, params, Keys, Log, Out, Seen};

#[derive(Debug)]
enum In {
    Client(client::Input),
}

type DiskRef = SharedDisk<Record, Vec<Record>>;

/// A replica's actor on its disk: sends wait for the records before them.
fn durable(r: Replica<Log>, disk: &DiskRef) -> ProtocolActor<Replica<Log>, In, Out> {
    ProtocolActor::with_maps(r, |_: In| None, Out::Replica).with_disk(disk.clone())
}

/// Node ids 0..MAX_NODES may ever be members.
const MAX_NODES: u32 = 12;
const CLIENT: ClientId = ClientId(1);

fn admin() -> Crypto {
    Crypto::new(
        Addr::Client(ClientId(99)),
        Identity::from_seed([99; 32]),
        CryptoMode::Real,
    )
}

struct World {
    sim: Sim<Message, In, Out>,
    seen: Seen,
    keys: Keys,
    genesis: GroupInfo,
    /// Every replica ever started, by node id.
    replicas: BTreeMap<u32, NodeIdx>,
    client: NodeIdx,
    /// The certificates ordered so far, and the members of the newest.
    proof: Vec<ConfigCert>,
    members: Vec<u32>,
    /// Submissions by id: `true` for a write of the workload.
    writes: BTreeMap<u64, bool>,
    submitted: u64,
    /// Replicas crashed: not waited for, not checked.
    down: Vec<u32>,
}

impl World {
    /// Replicas 0..n (f = (n-1)/3) with the administrator's key, and one client.
    fn new(n: u32, faults_expected: bool) -> Self {
        let admin_key = admin().public().sign;
        let genesis = group(n as usize, (n as usize - 1) / 3).with_admin(Some(admin_key));
        let mut addrs: Vec<Addr> = (0..MAX_NODES).map(|i| Addr::Node(NodeId(i))).collect();
        addrs.push(Addr::Client(CLIENT));
        let keys = Keys::new(addrs);
        let mut sim = lan();
        let c = Client::new(CLIENT, genesis.clone(), params());
        let map_in = |i| match i {
            In::Client(x) => Some(x),
        };
        let actor = ProtocolActor::with_maps(c, map_in, Out::Client);
        let client = sim.add_node(
            Addr::Client(CLIENT),
            keys.crypto(MAX_NODES as usize),
            actor,
            0,
        );
        let mut w = World {
            sim,
            seen: Seen::new(faults_expected),
            keys,
            genesis,
            replicas: BTreeMap::new(),
            client,
            proof: Vec::new(),
            members: (0..n).collect(),
            writes: BTreeMap::new(),
            submitted: 0,
            down: Vec::new(),
        };
        for i in 0..n {
            w.start_durable(i, None);
        }
        w
    }

    /// Replica `i` on a modeled disk, from genesis or (with a proof)
    /// joining; a crash restarts it with `Replica::recover` (or
    /// `recover_joining`) from the records the disk kept.
    fn start_durable(&mut self, i: u32, proof: Option<Vec<ConfigCert>>) {
        let disk: DiskRef = Disk::shared(StorageModel::fixed(MILLIS), Vec::new(), |v, r| v.push(r));
        let (me, g) = (NodeId(i), self.genesis.clone());
        let crypto = self.keys.crypto(i as usize);
        let r = match &proof {
            None => Replica::new(me, g.clone(), params(), Log::default()),
            Some(proof) => {
                Replica::joining(me, g.clone(), proof, params(), Log::default(), &crypto)
                    .expect("a valid proof that adds it")
            }
        };
        let idx = self
            .sim
            .add_node(Addr::Node(me), crypto.clone(), durable(r, &disk), 0);
        let recovery = FromDisk::new(disk, move |kept: &Vec<Record>, disk: &DiskRef| {
            let records = Durable::from_records(kept.iter().cloned());
            let (p, log) = (params(), Log::default());
            let r = match &proof {
                None => Replica::recover(me, g.clone(), p, log, records, &crypto),
                Some(proof) => {
                    Replica::recover_joining(me, (g.clone(), proof), p, log, records, &crypto)
                }
            }
            .expect("recovers from its own records");
            Ok(Box::new(durable(r, disk)) as BoxActor<Message, In, Out>)
        });
        self.sim.set_recovery(idx, recovery);
        self.replicas.insert(i, idx);
    }

    fn start(&mut self, i: u32, r: Replica<Log>) {
        let actor = ProtocolActor::with_maps(r, |_: In| None, Out::Replica);
        let crypto = self.keys.crypto(i as usize);
        let idx = self.sim.add_node(Addr::Node(NodeId(i)), crypto, actor, 0);
        self.replicas.insert(i, idx);
    }

    fn replica(&self, i: u32) -> &Replica<Log> {
        self.sim
            .protocol::<Replica<Log>>(self.replicas[&i])
            .expect("a replica")
    }

    fn submit(&mut self, op: Vec<u8>, write: bool) {
        self.submitted += 1;
        self.writes.insert(self.submitted, write);
        let input = In::Client(client::Input::Submit {
            op,
            read_only: false,
        });
        self.sim.schedule_input(self.sim.now(), self.client, input);
    }

    /// `k` writes, a few at a time, run to completion.
    fn write(&mut self, k: u64) {
        for i in 0..k {
            self.submit(format!("w{}", self.submitted + i).into_bytes(), true);
        }
        self.run();
    }

    fn run(&mut self) {
        let target = self.submitted as usize;
        self.seen.run(&mut self.sim, target);
    }

    /// The administrator's certificate for the next epoch with `members`.
    fn cert(&self, epoch: u64, members: &[u32], f: usize, signer: &Crypto) -> ConfigCert {
        let body = ConfigBody {
            group: self.genesis.id,
            epoch,
            members: members
                .iter()
                .map(|i| MemberSpec {
                    node: NodeId(*i),
                    key: self.keys.crypto(*i as usize).public(),
                })
                .collect(),
            f,
            vmax: vec![],
        };
        ConfigCert::sign(body, signer)
    }

    /// Order the next configuration (`members`, f) with `load` writes
    /// submitted behind it, start the replicas it adds, and run until all
    /// is done and every member installed it.
    fn reconfigure(&mut self, members: &[u32], f: usize, load: u64) {
        let epoch = self.proof.len() as u64 + 1;
        let cert = self.cert(epoch, members, f, &admin());
        self.proof.push(cert.clone());
        self.submit(cert.to_op(), false);
        for i in 0..load {
            self.submit(format!("r{epoch}.{i}").into_bytes(), true);
        }
        // the administrator starts the new replicas once the group ordered
        // the change (they would wait for it anyway)
        self.run();
        let added: Vec<u32> = members
            .iter()
            .copied()
            .filter(|i| !self.replicas.contains_key(i))
            .collect();
        for i in added {
            self.start_durable(i, Some(self.proof.clone()));
        }
        self.run();
        self.members = members.to_vec();
        // the boundary is a window past the request: writes carry the group there
        for _ in 0..40 {
            let r = |i: &u32| self.replica(*i);
            let up = |i: &&u32| !self.down.contains(i);
            if self
                .members
                .iter()
                .filter(up)
                .all(|i| r(i).config().epoch == epoch && !r(i).joining_now())
            {
                break;
            }
            self.write(2);
            self.seen.settle(&mut self.sim, 20 * MILLIS);
        }
        self.check_epoch(epoch, f);
    }

    fn check_epoch(&self, epoch: u64, f: usize) {
        for i in self.replicas.keys().filter(|i| !self.down.contains(i)) {
            let r = self.replica(*i);
            if self.members.contains(i) {
                assert_eq!(r.config().epoch, epoch, "member {i}");
                assert_eq!(r.config().group.n(), self.members.len());
                assert_eq!(r.config().group.qs.f, f);
                assert!(!r.retired(), "member {i} retired");
            } else {
                assert!(
                    r.retired() || r.config().epoch < epoch,
                    "{i} still votes in epoch {epoch}"
                );
            }
        }
    }

    /// The results of the workload's writes, in submission order.
    fn write_results(&self) -> Vec<u64> {
        let mut by_id: Vec<(u64, Vec<u8>)> = self.seen.done.clone();
        by_id.sort();
        by_id
            .into_iter()
            .filter(|(id, _)| self.writes[id])
            .map(|(_, r)| u64::from_le_bytes(r.try_into().expect("a log length")))
            .collect()
    }

    /// The results of the reconfiguration requests, in submission order.
    fn reconfig_results(&self) -> Vec<ReconfigResult> {
        let mut done: Vec<(u64, Vec<u8>)> = self.seen.done.clone();
        done.sort();
        done.into_iter()
            .filter(|(id, _)| !self.writes[id])
            .map(|(_, r)| codec::from_bytes(&r, r.len()).expect("a reconfiguration result"))
            .collect()
    }

    /// No write lost or run twice, the same decisions everywhere, the same
    /// log at every current member, and the client at the newest epoch.
    fn check_all(&mut self) {
        self.seen.settle(&mut self.sim, 200 * MILLIS);
        let results = self.write_results();
        let expected: Vec<u64> = (1..=results.len() as u64).collect();
        assert_eq!(results, expected, "writes lost, reordered or run twice");
        self.seen.assert_agreement();
        let logs: Vec<&Vec<Vec<u8>>> = self
            .members
            .iter()
            .map(|i| &self.replica(*i).service().0)
            .collect();
        assert!(
            logs.windows(2).all(|w| w[0] == w[1]),
            "members' logs differ"
        );
        assert_eq!(logs[0].len(), results.len());
        let c = self
            .sim
            .protocol::<Client>(self.client)
            .expect("the client");
        assert_eq!(
            c.config().epoch,
            self.proof.len() as u64,
            "the client's epoch"
        );
    }
}

#[test]
fn add_one_replica_then_remove_one_under_load() {
    let mut w = World::new(4, false);
    w.write(6);
    // n = 5 with f = 1 (a spare), then 4 again without replica 1
    w.reconfigure(&[0, 1, 2, 3, 4], 1, 6);
    assert!(!w.replica(4).joining_now(), "the new replica caught up");
    // the new replica crashes and comes back from its disk, still in epoch 1
    let four = w.replicas[&4];
    w.sim.crash(w.sim.now(), four);
    w.write(6);
    let now = w.sim.now();
    w.sim.recover(now, four);
    w.reconfigure(&[0, 2, 3, 4], 1, 6);
    assert!(w.replica(1).retired());
    w.write(6);
    w.check_all();
    let results = w.reconfig_results();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[test]
fn grow_four_to_seven_to_ten_and_shrink_back_to_four() {
    let mut w = World::new(4, false);
    w.write(4);
    w.reconfigure(&(0..7).collect::<Vec<_>>(), 2, 8);
    w.reconfigure(&(0..10).collect::<Vec<_>>(), 3, 8);
    w.reconfigure(&(0..7).collect::<Vec<_>>(), 2, 8);
    w.reconfigure(&[0, 1, 2, 3], 1, 8);
    w.write(4);
    w.check_all();
    assert!((4..10).all(|i| w.replica(i).retired()));
    // every epoch's first leader was a member already: no view change
    assert!(w.seen.views.is_empty(), "{:?}", w.seen.views);
}

#[test]
fn oscillating_add_and_remove_every_few_instances() {
    let mut w = World::new(4, false);
    let plans: [&[u32]; 6] = [
        &[0, 1, 2, 3, 4],
        &[0, 1, 2, 3],
        &[0, 1, 2, 3, 5],
        &[0, 1, 2, 5],
        &[0, 1, 2, 5, 6],
        &[1, 2, 5, 6],
    ];
    for members in plans {
        w.reconfigure(members, 1, 3);
    }
    w.write(3);
    w.check_all();
}

#[test]
fn forged_or_stale_certificates_are_refused_and_recorded() {
    let mut w = World::new(4, true);
    w.write(2);
    // signed by a replica's key, not the administrator's: dropped at the door
    let mallory = w.keys.crypto(3);
    let forged = w.cert(1, &[0, 1, 2, 3, 4], 1, &mallory);
    w.submit(forged.to_op(), false);
    w.seen.settle(&mut w.sim, 200 * MILLIS);
    let counts = w.seen.fault_counts();
    assert!(
        counts.get("config-invalid").copied().unwrap_or(0) >= 4,
        "{counts:?}"
    );
    assert!((0..4).all(|i| w.replica(i).config().epoch == 0));
    // a validly signed certificate for a later epoch: ordered, refused at
    // execution, the client gets the reason and every replica records it
    let mut w = World::new(4, true);
    let stale = w.cert(2, &[0, 1, 2, 3], 1, &admin());
    w.submit(stale.to_op(), false);
    w.write(2);
    let results = w.reconfig_results();
    assert_eq!(
        results,
        vec![Err("epoch 2: the next epoch is 1".to_string())]
    );
    assert_eq!(w.seen.fault_counts().get("config-refused"), Some(&4));
    assert!((0..4).all(|i| w.replica(i).config().epoch == 0));
}

#[test]
fn a_late_replica_catches_up_across_two_configurations() {
    let mut w = World::new(4, false);
    w.write(4);
    // replica 3 goes down, two configurations are installed without it
    // (it stays a member of both), then it comes back with an empty disk
    let three = w.replicas[&3];
    w.sim.crash(w.sim.now(), three);
    w.down.push(3);
    w.reconfigure(&[0, 1, 2, 3, 4], 1, 4);
    w.reconfigure(&[0, 1, 2, 3, 4, 5, 6], 2, 4);
    w.write(4);
    let fresh = Replica::new(NodeId(3), w.genesis.clone(), params(), Log::default());
    let actor = ProtocolActor::with_maps(fresh, |_: In| None, Out::Replica);
    w.sim.restart(w.sim.now(), three, actor);
    w.down.clear();
    for _ in 0..20 {
        if w.replica(3).config().epoch == 2 && w.replica(3).executed() == w.replica(0).executed() {
            break;
        }
        w.write(2);
        w.seen.settle(&mut w.sim, 20 * MILLIS);
    }
    let late = w.replica(3);
    assert_eq!(
        late.config().epoch,
        2,
        "it followed the proof and installed epoch 2"
    );
    assert_eq!(late.stats().state_transfers, 1);
    w.check_all();
}

#[test]
fn a_replica_crashed_across_a_boundary_recovers_into_the_new_epoch() {
    let mut w = World::new(4, false);
    w.write(4);
    // replica 2 crashes with the change ordered and the boundary ahead;
    // the others and the new replica 4 install epoch 1 without it
    let epoch = 1;
    let cert = w.cert(epoch, &[0, 1, 2, 3, 4], 1, &admin());
    w.proof.push(cert.clone());
    w.submit(cert.to_op(), false);
    w.run();
    let at = match w.reconfig_results()[..] {
        [Ok((1, at))] => at,
        ref other => panic!("{other:?}"),
    };
    assert!(w.replica(2).executed() < at, "the boundary is still ahead");
    let two = w.replicas[&2];
    w.sim.crash(w.sim.now(), two);
    w.down.push(2);
    let c = w.keys.crypto(4);
    let r = Replica::joining(
        NodeId(4),
        w.genesis.clone(),
        &w.proof,
        params(),
        Log::default(),
        &c,
    );
    w.start(4, r.expect("a valid proof"));
    w.members = vec![0, 1, 2, 3, 4];
    for _ in 0..20 {
        if (0..5).all(|i| i == 2 || w.replica(i).config().epoch == epoch) {
            break;
        }
        w.write(2);
    }
    w.check_epoch(epoch, 1);
    w.write(4);
    // back from what its disk kept: epoch 0 and a state before the boundary
    let now = w.sim.now();
    w.sim.recover(now, two);
    w.down.clear();
    for _ in 0..20 {
        if w.replica(2).config().epoch == epoch
            && w.replica(2).executed() == w.replica(0).executed()
        {
            break;
        }
        w.write(2);
        w.seen.settle(&mut w.sim, 20 * MILLIS);
    }
    assert_eq!(w.replica(2).config().epoch, epoch);
    w.check_all();
}
