//! A whole parent group restarts from its durable records (issue 10, item
//! 11): on the simulator engine, with real crypto, the tree h1(g1 g2) serves
//! global MSETs; every replica of h1 crashes at once and comes back with
//! `Replica::recover` from the records it emitted (each record is durable the
//! moment it is emitted: a crash between steps keeps them all). The global
//! messages must complete again, every acknowledged MSET must be in both
//! shards, and the forward streams must pick up where they were.
//!
//! Before forward streams had durable sequence numbers, a restarted parent
//! numbered its requests to a child from 1 again and the child ignored them
//! for good; the second test restarts h1 that way (its stream records
//! dropped) and shows the tree no longer completes a global message.

use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_byzcast::{
    client, kv, replica, Client, Durable, Message, Record, Replica, Topology, Tree,
};
use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::protocol::{Time, MICROS, MILLIS, SECS};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{Control, NodeIdx, ProtocolActor, Role, Sim};
use byzscale_sim::net_model::NetModel;
use byzscale_smr::Params;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

type Disk = Rc<RefCell<Vec<Record>>>;

type Recorded = byzscale_sim::storage::Recorded<Replica>;

type In = Role<client::Input, replica::Input>;
/// Key-value pairs an MSET wrote.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;
type Out = Role<client::Output, replica::Output>;

fn identity(a: Addr) -> Identity {
    let mut seed = [7u8; 32];
    match a {
        Addr::Node(n) => seed[0] = n.0 as u8,
        Addr::Client(c) => seed[1] = c.0 as u8,
    }
    Identity::from_seed(seed)
}

const CLIENT: ClientId = ClientId(1);

struct World {
    topo: Arc<Topology>,
    params: Params,
    disks: BTreeMap<NodeId, Disk>,
}

impl World {
    /// h1(g1 g2), four replicas a group: g1 = n0..n3, g2 = n4..n7, h1 = n8..n11.
    fn new() -> Self {
        let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
        let topo = Tree::two_level(2);
        let topo = Topology::numbered(topo, &qs, byzscale_byzcast::Mode::Byzcast).unwrap();
        let topo = Arc::new(topo);
        let mut params = Params::for_network(100 * MICROS);
        params.checkpoint_interval = 8;
        params.window = 32;
        // the children cache fewer replies than a parent submits forwards
        params.client_window = 4;
        let disks = (0..12).map(|i| (NodeId(i), Disk::default())).collect();
        World {
            topo,
            params,
            disks,
        }
    }

    fn replica_crypto(&self, m: NodeId) -> Crypto {
        let mut c = Crypto::new(Addr::Node(m), identity(Addr::Node(m)), CryptoMode::Real);
        for o in (0..12).map(NodeId).filter(|o| *o != m) {
            c.add_peer(Addr::Node(o), identity(Addr::Node(o)).public())
                .unwrap();
            // every replica may be a parent of m's group
            let as_client = Addr::Client(ClientId::for_replica(o));
            c.add_peer(as_client, identity(Addr::Node(o)).public())
                .unwrap();
        }
        c.add_peer(
            Addr::Client(CLIENT),
            identity(Addr::Client(CLIENT)).public(),
        )
        .unwrap();
        c
    }

    fn as_client_crypto(&self, m: NodeId) -> Crypto {
        let me = Addr::Client(ClientId::for_replica(m));
        let mut c = Crypto::new(me, identity(Addr::Node(m)), CryptoMode::Real);
        for o in (0..12).map(NodeId) {
            c.add_peer(Addr::Node(o), identity(Addr::Node(o)).public())
                .unwrap();
        }
        c
    }

    /// Replica `m`, new or recovered from its disk (without its stream
    /// records if `forget_streams`).
    fn replica(
        &self,
        m: NodeId,
        recover: bool,
        forget_streams: bool,
    ) -> ProtocolActor<Recorded, In, Out> {
        let client = self.as_client_crypto(m);
        let r = if recover {
            let records = self.disks[&m].borrow().clone();
            let records = records
                .into_iter()
                .filter(|r| !forget_streams || matches!(r, Record::Smr(_)));
            let crypto = self.replica_crypto(m);
            Replica::recover(
                m,
                self.topo.clone(),
                self.params.clone(),
                client,
                Durable::from_records(records),
                &crypto,
            )
            .unwrap()
        } else {
            Replica::new(m, self.topo.clone(), self.params.clone(), client).unwrap()
        };
        ProtocolActor::replica(Recorded::new(r, self.disks[&m].clone()))
    }

    fn sim(&self, seed: u64) -> Sim<Message, In, Out> {
        let mut sim = Sim::new(
            seed,
            NetModel::uniform(MICROS, 100 * MICROS),
            CpuModel::free(),
        );
        for m in (0..12).map(NodeId) {
            sim.add_node(
                Addr::Node(m),
                self.replica_crypto(m),
                self.replica(m, false, false),
                0,
            );
        }
        let mut c = Crypto::new(
            Addr::Client(CLIENT),
            identity(Addr::Client(CLIENT)),
            CryptoMode::Real,
        );
        for o in (0..12).map(NodeId) {
            c.add_peer(Addr::Node(o), identity(Addr::Node(o)).public())
                .unwrap();
        }
        let client = Client::new(CLIENT, self.topo.clone(), self.params.clone());
        sim.add_node(Addr::Client(CLIENT), c, ProtocolActor::client(client), 0);
        sim
    }
}

const CLIENT_NODE: NodeIdx = NodeIdx(12);

/// An MSET of one new key in each shard.
fn mset(i: u64) -> (Pairs, In) {
    let mut pairs = Vec::new();
    for shard in 0..2u32 {
        let key = (0..)
            .map(|j| format!("k{i}.{j}").into_bytes())
            .find(|k| kv::shard_of(k, 2) == GroupId(shard))
            .unwrap();
        pairs.push((key, format!("v{i}").into_bytes()));
    }
    let op = KvOp::MSet(pairs.clone());
    let input = Role::Client(client::Input::Multicast {
        dst: vec![GroupId(0), GroupId(1)],
        payload: op.encode(),
    });
    (pairs, input)
}

/// Closed loop of global MSETs: returns the acknowledged pairs, once `want`
/// more completed or at `until`.
fn run(sim: &mut Sim<Message, In, Out>, next: &mut u64, want: usize, until: Time) -> Pairs {
    let mut sent: BTreeMap<u64, Pairs> = BTreeMap::new();
    let mut acked = Vec::new();
    let (pairs, input) = mset(*next);
    sent.insert(*next, pairs);
    sim.schedule_input(sim.now(), CLIENT_NODE, input);
    let mut n = *next;
    let mut obs = |_: Time, _: NodeIdx, _: Addr, out: Out, ctl: &mut Control<In>| {
        if let Role::Client(client::Output::Done { results, .. }) = out {
            let ok =
                results.is_ok_and(|r| r.values().all(|v| KvReply::decode(v) == Ok(KvReply::Ok)));
            assert!(ok, "an MSET failed");
            acked.extend(sent.remove(&n).unwrap());
            if acked.len() / 2 >= want {
                ctl.stop();
                return;
            }
            n += 1;
            let (pairs, input) = mset(n);
            sent.insert(n, pairs);
            ctl.input(CLIENT_NODE, input);
        }
    };
    sim.run_until(until, &mut obs);
    *next = n + 1;
    acked
}

/// Every acknowledged pair is in the KV store of every replica of its shard.
fn check_stored(sim: &Sim<Message, In, Out>, acked: &[(Vec<u8>, Vec<u8>)]) {
    for m in 0..8u32 {
        let r = &sim.protocol::<Recorded>(NodeIdx(m)).unwrap().inner;
        let store = r.machine().kv();
        for (k, v) in acked
            .iter()
            .filter(|(k, _)| kv::shard_of(k, 2) == r.group())
        {
            assert_eq!(
                store.model().get(k),
                Some(&v[..]),
                "n{m} lost an acknowledged write"
            );
        }
    }
}

fn restart_h1(forget_streams: bool) -> (usize, Pairs, Sim<Message, In, Out>) {
    let w = World::new();
    let mut sim = w.sim(11);
    let mut next = 1;
    let mut acked = run(&mut sim, &mut next, 30, 20 * SECS);
    assert_eq!(
        acked.len(),
        60,
        "the tree serves global MSETs before the crash"
    );
    // power loss at h1: every replica at once, back 50 ms later from its disk
    let t = sim.now();
    for m in 8..12u32 {
        sim.crash(t, NodeIdx(m));
    }
    sim.run_until(t + 50 * MILLIS, &mut ());
    for m in 8..12u32 {
        sim.restart(
            sim.now(),
            NodeIdx(m),
            w.replica(NodeId(m), true, forget_streams),
        );
    }
    let until = sim.now() + 20 * SECS;
    let after = run(&mut sim, &mut next, 30, until);
    let n = after.len() / 2;
    acked.extend(after);
    // let replicas that lag a little catch up
    sim.run_for(2 * SECS, &mut ());
    (n, acked, sim)
}

#[test]
fn a_restarted_parent_group_resumes_its_forward_streams() {
    let (completed, acked, sim) = restart_h1(false);
    assert_eq!(
        completed, 30,
        "global MSETs complete again after h1's restart"
    );
    check_stored(&sim, &acked);
    for m in 8..12u32 {
        let r = &sim.protocol::<Recorded>(NodeIdx(m)).unwrap().inner;
        for s in r.streams() {
            assert!(s.acked() > 30, "n{m}: {s:?} resumed and went on");
        }
    }
    // each child handled every index once, in order
    for m in 0..8u32 {
        let r = &sim.protocol::<Recorded>(NodeIdx(m)).unwrap().inner;
        assert_eq!(r.machine().stats().stream_next, 61, "n{m}");
    }
}

#[test]
fn restarting_the_numbering_at_one_stalls_the_tree() {
    let (completed, acked, sim) = restart_h1(true);
    assert_eq!(
        completed, 0,
        "children ignore requests numbered from 1 again"
    );
    check_stored(&sim, &acked);
}

/// The ids of the results a replica recorded as sent up, in order.
fn done_ids(records: &[Record]) -> Vec<byzscale_byzcast::MsgId> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Done { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// A parent keeps the messages it handled and awaits results for
/// ([`Record::Awaiting`], until their [`Record::Done`]), and a replica
/// recovered from records whose last result is missing awaits it again.
/// Before, a group whose every replica restarted from a checkpoint taken
/// after it handled a message (its handling not replayed) never asked its
/// children again, and the client queried it forever (`sim byzcast
/// --crash-restart --byzantine-clients 4`, seeds 59, 121 and 290 of 300).
#[test]
fn a_restarted_parent_awaits_the_results_it_was_waiting_for() {
    let w = World::new();
    let mut sim = w.sim(5);
    let mut next = 1;
    let acked = run(&mut sim, &mut next, 5, 20 * SECS);
    assert_eq!(acked.len(), 10);
    let records = w.disks[&NodeId(8)].borrow().clone();
    let awaiting: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Awaiting { id, awaiting, .. } => Some((*id, awaiting.len())),
            _ => None,
        })
        .collect();
    let done = done_ids(&records);
    assert_eq!(awaiting.len(), 5, "{awaiting:?}");
    assert!(awaiting.iter().all(|(_, children)| *children == 2));
    assert_eq!(awaiting.iter().map(|(id, _)| *id).collect::<Vec<_>>(), done);
    let folded = Durable::from_records(records.clone());
    assert!(folded.awaiting.is_empty(), "every result came in");
    // the last result never came in
    let last = *done.last().unwrap();
    let kept = records
        .into_iter()
        .filter(|r| !matches!(r, Record::Done { id, .. } if *id == last));
    let m = NodeId(8);
    let r = Replica::recover(
        m,
        w.topo.clone(),
        w.params.clone(),
        w.as_client_crypto(m),
        Durable::from_records(kept),
        &w.replica_crypto(m),
    )
    .unwrap();
    assert_eq!(r.pending_results(), 1);
}

/// A leaf replica that crashed between its `Awaiting` and `Done` records of
/// a message (a torn, unsynced tail) completes it once restarted: it awaits
/// no child, and replaying the slot does not handle the message again.
/// Before, the restored aggregation stayed forever and the parent, whose
/// query it never answered, with it (10,000-seed ByzCast sweep: 7 seeds).
#[test]
fn a_restarted_leaf_completes_what_it_had_no_record_of_completing() {
    let w = World::new();
    let mut sim = w.sim(6);
    let mut next = 1;
    let acked = run(&mut sim, &mut next, 3, 20 * SECS);
    assert_eq!(acked.len(), 6);
    let m = NodeId(1);
    let records = w.disks[&m].borrow().clone();
    let last = *done_ids(&records)
        .last()
        .expect("a leaf records the results it sent up");
    let kept: Vec<Record> = records
        .into_iter()
        .filter(|r| !matches!(r, Record::Done { id, .. } if *id == last))
        .collect();
    assert_eq!(Durable::from_records(kept.clone()).awaiting.len(), 1);
    *w.disks[&m].borrow_mut() = kept;
    let t = sim.now();
    sim.crash(t, NodeIdx(1));
    sim.run_until(t + 10 * MILLIS, &mut ());
    sim.restart(sim.now(), NodeIdx(1), w.replica(m, true, false));
    sim.run_for(SECS, &mut ());
    let r = &sim.protocol::<Recorded>(NodeIdx(1)).unwrap().inner;
    assert_eq!(r.pending_results(), 0);
    assert!(Durable::from_records(w.disks[&m].borrow().clone())
        .awaiting
        .is_empty());
}
