//! Helpers for the replica's unit tests: a small service, keys for a group of
//! four and one client, requests, certificates, and one step of a replica
//! with its effects.

use super::{ClientState, Durable, Record, Replica};
use crate::message::*;
use crate::params::{GroupInfo, Params};
use byzscale_core::crypto::{Crypto, CryptoMode, Digest, Identity};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::service::{BatchCtx, Service};
use byzscale_core::{Addr, ClientId, Cx, Effect, GroupId, NodeId};
use rand::SeedableRng;
use std::collections::BTreeMap;

/// A counter service: enough state to snapshot; it keeps the last batch it
/// was told of and that batch's operations (not in its snapshot).
#[derive(Default)]
pub struct Count(pub u64, pub BatchCtx, pub Vec<Vec<u8>>);
impl Service for Count {
    fn begin_batch(&mut self, batch: BatchCtx) {
        self.1 = batch;
        self.2.clear();
    }
    fn prepare_batch(&mut self, ops: &[&[u8]]) {
        self.2 = ops.iter().map(|op| op.to_vec()).collect();
    }
    fn execute(&mut self, _op: &[u8]) -> Vec<u8> {
        self.0 += 1;
        self.0.to_le_bytes().to_vec()
    }
    fn query(&self, _op: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), String> {
        let b: [u8; 8] = s.try_into().map_err(|_| "bad snapshot".to_string())?;
        self.0 = u64::from_le_bytes(b);
        Ok(())
    }
}

pub const CLIENT: ClientId = ClientId(1);

pub fn identity(a: Addr) -> Identity {
    let mut seed = [0u8; 32];
    match a {
        Addr::Node(n) => seed[0] = n.0 as u8 + 1,
        Addr::Client(c) => seed[1] = c.0 as u8,
    }
    Identity::from_seed(seed)
}

pub fn crypto(me: Addr) -> Crypto {
    let mut c = Crypto::new(me, identity(me), CryptoMode::Real);
    let peers = (0..4)
        .map(|i| Addr::Node(NodeId(i)))
        .chain([Addr::Client(CLIENT)]);
    for p in peers.filter(|p| *p != me) {
        c.add_peer(p, identity(p).public()).unwrap();
    }
    c
}

pub fn group() -> GroupInfo {
    let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
    GroupInfo::new(GroupId(0), (0..4).map(NodeId).collect(), qs)
}

/// Request `seq` of `CLIENT` in session 0.
pub fn request(seq: u64, op: &[u8]) -> Request {
    session_request(0, seq, op)
}

/// Request `seq` of `CLIENT` in `session`.
pub fn session_request(session: u64, seq: u64, op: &[u8]) -> Request {
    let c = crypto(Addr::Client(CLIENT));
    Request::authenticated(&c, &group(), CLIENT, (session, seq), false, op.to_vec())
}

pub type R = Replica<Count>;

/// One step of `r` at node `me`; its effects.
pub fn step(r: &mut R, me: u32, f: impl FnOnce(&mut R, &mut Cx<'_, R>)) -> Vec<Effect<R>> {
    step_with(r, &crypto(Addr::Node(NodeId(me))), f)
}

/// One step of `r` with the keys of `crypto`; its effects.
pub fn step_with(
    r: &mut R,
    crypto: &Crypto,
    f: impl FnOnce(&mut R, &mut Cx<'_, R>),
) -> Vec<Effect<R>> {
    let seed = match crypto.me() {
        Addr::Node(n) => n.0 as u64,
        Addr::Client(c) => c.0,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut fx = Vec::new();
    let wall = WALL.with(|w| w.get());
    f(
        r,
        &mut Cx::new(0, &mut rng, crypto, &mut fx).with_wall_ms(wall),
    );
    fx
}

thread_local! {
    /// The wall clock (ms since the epoch) of the steps [`step`] runs on
    /// this test's thread: 0 unless the test sets it ([`set_wall`]).
    static WALL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Run this test's later steps with the wall clock at `ms`.
pub fn set_wall(ms: u64) {
    WALL.with(|w| w.set(ms));
}

pub fn records(fx: &[Effect<R>]) -> Vec<Record> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Persist(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

pub fn propose(batch: Batch) -> Message {
    Message::Propose {
        view: 0,
        slot: 1,
        batch,
    }
}

pub fn writes(fx: &[Effect<R>]) -> Vec<Digest> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Multicast {
                msg: Message::Write { digest, .. },
                ..
            } => Some(*digest),
            _ => None,
        })
        .collect()
}

pub fn recover(me: u32, durable: Durable) -> R {
    let c = crypto(Addr::Node(NodeId(me)));
    R::recover(
        NodeId(me),
        group(),
        Params::default(),
        Count::default(),
        durable,
        &c,
    )
    .unwrap()
}

pub fn digest(b: &Batch) -> Digest {
    byzscale_core::crypto::digest(&b.bytes())
}

pub fn cert(slot: Slot, snapshot: &[u8]) -> CheckpointCert {
    let chunk = Params::default().state_chunk_bytes;
    let state = state_digest(&crypto(Addr::Node(NodeId(0))), snapshot, chunk);
    let sigs = (0..3)
        .map(|i| {
            let c = crypto(Addr::Node(NodeId(i)));
            (
                NodeId(i),
                c.sign(&checkpoint_bytes(GroupId(0), slot, &state)),
            )
        })
        .collect();
    CheckpointCert { slot, state, sigs }
}

/// The replicated state of a fresh `Count` with an empty client table,
/// session floor 0 and batch time 0.
pub fn empty_state() -> Vec<u8> {
    let mut bytes = Vec::new();
    byzscale_core::codec::write_into(
        &mut bytes,
        &(
            Count::default().snapshot(),
            BTreeMap::<ClientId, ClientState>::new(),
            0 as Slot,
            0u64,
        ),
    );
    byzscale_core::codec::write_into(&mut bytes, &super::EpochState::default());
    bytes
}

/// Small windows, so tests cross checkpoints quickly.
pub fn params() -> Params {
    Params {
        checkpoint_interval: 4,
        window: 8,
        ..Params::default()
    }
}

/// Replica `me` (a backup) gets `batch` decided at `slot` in `view`: the
/// leader's PROPOSE and every other member's WRITE and ACCEPT.
pub fn decide(r: &mut R, me: u32, slot: Slot, view: View, batch: Batch) -> Vec<Effect<R>> {
    use byzscale_core::Protocol;
    let g = group();
    let leader = Addr::Node(g.leader(view));
    let d = digest(&batch);
    let mut fx = step(r, me, |r, cx| {
        r.on_message(leader, Message::Propose { view, slot, batch }, cx)
    });
    let others: Vec<Addr> = g
        .addrs()
        .into_iter()
        .filter(|a| *a != Addr::Node(NodeId(me)))
        .collect();
    let write = Message::Write {
        view,
        slot,
        digest: d,
    };
    let accept = Message::Accept {
        view,
        slot,
        digest: d,
    };
    for m in [write, accept] {
        for a in &others {
            fx.extend(step(r, me, |r, cx| r.on_message(*a, m.clone(), cx)));
        }
    }
    // the others sign the same checkpoint, which becomes stable
    let own = fx.iter().find_map(|e| match e {
        Effect::Multicast {
            msg: Message::Checkpoint { slot, state, .. },
            ..
        } => Some((*slot, *state)),
        _ => None,
    });
    if let Some((slot, state)) = own {
        for a in &others {
            let sig = crypto(*a).sign(&checkpoint_bytes(g.id, slot, &state));
            let m = Message::Checkpoint { slot, state, sig };
            fx.extend(step(r, me, |r, cx| r.on_message(*a, m, cx)));
        }
    }
    fx
}
