//! Each protocol's wire messages, decoded as the transport's reader decodes
//! them (`net::wire::decode_message` with the default `max_frame`), and the
//! operation bytes a client gets executed by a replicated service.

use crate::round_trip;
use byzscale_apps::bank::{Bank, BankOp, BankReply};
use byzscale_apps::kv::{KvOp, KvReply, KvStore};
use byzscale_at2::Batch;
use byzscale_broadcast::{bracha, probabilistic};
use byzscale_byzcast::{Envelope, ExecReply, GroupMachine, Mode, Topology, Tree};
use byzscale_core::codec::DEFAULT_MAX_FRAME;
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::service::Service;
use byzscale_core::GroupId;
use byzscale_gateway::resp::Proto;
use byzscale_net::wire;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

/// The wire message of an AT2 node over Bracha (what `byzscale node` runs).
pub type At2Bracha = byzscale_at2::node::Message<byzscale_at2::Message<bracha::Message<Batch>>>;
/// The wire message of an AT2 node over the probabilistic stack.
pub type At2Contagion =
    byzscale_at2::node::Message<byzscale_at2::Message<probabilistic::Message<Batch>>>;

fn message<M: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(m) = wire::decode_message::<M>(data, DEFAULT_MAX_FRAME) {
        round_trip(&m, data.len());
    }
}

/// One SMR message payload.
pub fn smr_message(data: &[u8]) {
    message::<byzscale_smr::Message>(data);
}

/// One ByzCast message payload.
pub fn byzcast_message(data: &[u8]) {
    message::<byzscale_byzcast::Message>(data);
}

/// One AT2-over-Bracha message payload.
pub fn at2_bracha_message(data: &[u8]) {
    message::<At2Bracha>(data);
}

/// One AT2-over-Contagion message payload.
pub fn at2_contagion_message(data: &[u8]) {
    message::<At2Contagion>(data);
}

/// The operations of one input: a selector byte, then operations each
/// prefixed by a little-endian `u16` length (the last one takes what is left).
pub fn ops(data: &[u8]) -> Option<(u8, Vec<&[u8]>)> {
    let (&sel, mut rest) = data.split_first()?;
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let body = &rest[2..];
        let (op, after) = body.split_at(len.min(body.len()));
        out.push(op);
        rest = after;
    }
    Some((sel, out))
}

/// A client's op bytes executed by a replicated service, in sequence on one
/// state (selector 0: KV, 1: bank); selector 2: the client decoding replica
/// results (KV and bank replies, possibly from a Byzantine replica).
pub fn service_op(data: &[u8]) {
    let Some((sel, ops)) = ops(data) else {
        return;
    };
    match sel % 3 {
        0 => {
            let mut kv = KvStore::new();
            kv.execute(&KvOp::Set(b"a".to_vec(), b"1".to_vec()).encode());
            for op in ops {
                let query = kv.query(op);
                let reply = kv.execute(op);
                let decoded = KvReply::decode(&reply).expect("a replica's KV reply decodes");
                if let Ok(o) = KvOp::decode(op) {
                    round_trip(&o, op.len());
                    // a read answered without ordering says what ordering would
                    if let Some(q) = query {
                        assert_eq!(q, reply, "query and execute differ on {o:?}");
                    }
                }
                for proto in [Proto::Resp2, Proto::Resp3] {
                    let _ = byzscale_gateway::resp::reply(&decoded, proto);
                }
            }
        }
        1 => {
            let mut bank = Bank::new();
            bank.execute(
                &BankOp::Open {
                    account: 1,
                    initial: 100,
                }
                .encode(),
            );
            for op in ops {
                let query = bank.query(op);
                let reply = bank.execute(op);
                BankReply::decode(&reply).expect("a replica's bank reply decodes");
                if let Ok(o) = BankOp::decode(op) {
                    round_trip(&o, op.len());
                    if let Some(q) = query {
                        assert_eq!(q, reply, "query and execute differ on {o:?}");
                    }
                }
            }
        }
        _ => {
            for op in ops {
                if let Ok(r) = KvReply::decode(op) {
                    round_trip(&r, op.len());
                    for proto in [Proto::Resp2, Proto::Resp3] {
                        let _ = byzscale_gateway::resp::reply(&r, proto);
                    }
                }
                if let Ok(r) = BankReply::decode(op) {
                    round_trip(&r, op.len());
                }
            }
        }
    }
}

/// The two-level tree of two target groups and a root, four replicas each
/// (group `g` is nodes `4g` to `4g + 3`).
pub fn topology() -> Arc<Topology> {
    static TOPO: OnceLock<Arc<Topology>> = OnceLock::new();
    TOPO.get_or_init(|| {
        let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).expect("n = 4, f = 1");
        Arc::new(Topology::numbered(Tree::two_level(2), &qs, Mode::Byzcast).expect("valid tree"))
    })
    .clone()
}

/// Ordered op bytes executed in sequence by the ByzCast group machine of
/// group `selector % 3` (a target, the other target, the root), as its SMR
/// replicas do; every reply must decode at the client.
pub fn byzcast_envelope(data: &[u8]) {
    let Some((sel, ops)) = ops(data) else {
        return;
    };
    let mut m = GroupMachine::new(GroupId(sel as u32 % 3), topology());
    for op in ops {
        let reply = m.execute(op);
        ExecReply::decode(&reply).expect("a group's reply decodes");
        if let Ok(e) = Envelope::decode(op) {
            round_trip(&e, op.len());
        }
        if let Ok(r) = ExecReply::decode(op) {
            round_trip(&r, op.len());
        }
        m.take_events();
    }
}
