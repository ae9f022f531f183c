//! Wire types of ByzCast.
//!
//! Two layers travel between nodes:
//! - [`Message::Smr`]: the groups' FIFO atomic broadcast (the SMR core's
//!   messages, unchanged). Its ordered operations are [`Envelope`]s: a client's
//!   `multicast(m, dst)` at the entry group, or a parent replica's copy of `m`
//!   tagged with its index in the parent → child stream.
//! - replies outside the ordered path: [`Message::Result`] (a child group's
//!   replicas to every replica of the parent: the results of `m` in the child's
//!   subtree), [`Message::Reply`] (the entry group's replicas to the client) and
//!   [`Message::Query`] (ask again after a loss).

use byzscale_core::codec;
use byzscale_core::crypto::{digest, Digest};
use byzscale_core::{ClientId, GroupId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A multicast message's identity: its client and the client's counter (from 1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MsgId {
    pub client: ClientId,
    pub n: u64,
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.client.0, self.n)
    }
}
impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// `m` of `multicast(m, dst)`: `dst` is sorted, without repeats, targets only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct McastMsg {
    pub id: MsgId,
    pub dst: Vec<GroupId>,
    pub payload: Vec<u8>,
}

impl McastMsg {
    pub fn digest(&self) -> Digest {
        digest(&codec::to_bytes(self))
    }
    /// A message whose [`Envelope::Multicast`] is `len` bytes (or as near
    /// as the payload's length prefix allows), its payload `fill` bytes:
    /// for tests and the simulator's Byzantine clients.
    pub fn sized(id: MsgId, dst: Vec<GroupId>, fill: u8, len: usize) -> Self {
        let msg = |payload: usize| McastMsg {
            id,
            dst: dst.clone(),
            payload: vec![fill; payload],
        };
        let mut p = len.saturating_sub(Envelope::Multicast(msg(0)).encode().len());
        // the payload's length prefix grows with it: a few corrections
        for _ in 0..4 {
            let got = Envelope::Multicast(msg(p)).encode().len();
            if got > len {
                p = p.saturating_sub(got - len);
            } else if got < len {
                p += len - got;
            } else {
                break;
            }
        }
        msg(p)
    }
    /// More than one destination group.
    pub fn is_global(&self) -> bool {
        self.dst.len() > 1
    }
}

/// What a group's SMR orders: the operation bytes of an SMR request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// A client's `multicast(m, dst)`, submitted to the entry group (lca(dst),
    /// or the sequencer in the baseline). The SMR request's client must be
    /// `msg.id.client`.
    Multicast(McastMsg),
    /// Replica `sender` of the parent group forwards `msg` as the `k`-th
    /// message (from 1) of the parent → this group stream. The SMR request's
    /// client must be `ClientId::for_replica(sender)`.
    Forward {
        sender: NodeId,
        k: u64,
        msg: McastMsg,
    },
}

/// The most bytes an [`Envelope::Forward`] adds to the [`Envelope::Multicast`]
/// of the same message (its sender and stream index, as varints; checked by
/// a test against the codec).
pub const FORWARD_OVERHEAD: usize = 16;

/// The largest multicast envelope a group orders, for SMR operations of at
/// most `max_op_bytes`: room is left for the forward envelope every parent
/// wraps the message in, so a multicast its entry group ordered is never
/// refused as too large by a child (which stalled the parent's forward
/// stream to that child for good).
pub fn max_multicast_op(max_op_bytes: usize) -> usize {
    max_op_bytes.saturating_sub(FORWARD_OVERHEAD)
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::from_bytes(bytes, bytes.len().max(1))
    }
}

/// Per target group, the reply of its part of the operation (for the KV
/// service, an encoded [`byzscale_apps::kv::KvReply`]).
pub type Results = BTreeMap<GroupId, Vec<u8>>;

/// What the group service answers to an ordered [`Envelope`] (the SMR reply).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecReply {
    /// A message the entry group delivers alone (the genuine single-group
    /// path): the final results.
    Done(Results),
    /// Ordered by the entry group; the results follow in [`Message::Reply`].
    Accepted,
    /// This client already multicast a message with this number (or a later one) here.
    Duplicate,
    /// Not for this group (it is not the entry group of `dst`), or malformed.
    Rejected(String),
    /// A forwarded copy was ordered.
    Ack,
}

impl ExecReply {
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::from_bytes(bytes, bytes.len().max(1))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The groups' FIFO atomic broadcast.
    Smr(byzscale_smr::Message),
    /// From a replica of a child group to the parent's replicas: the results
    /// of `id` in the child's subtree.
    Result { id: MsgId, results: Results },
    /// From a replica of the entry group to the client: the results of `id`.
    Reply { id: MsgId, results: Results },
    /// Ask for the `Result` (from a parent replica) or `Reply` (from the
    /// client) of `id` again.
    Query { id: MsgId },
}

impl Message {
    /// Short name for metrics and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Smr(m) => m.kind(),
            Message::Result { .. } => "bc-result",
            Message::Reply { .. } => "bc-reply",
            Message::Query { .. } => "bc-query",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the sender, stream index and message, a forward is at most
    /// [`FORWARD_OVERHEAD`] bytes longer than the multicast it carries.
    #[test]
    fn a_forward_fits_in_the_overhead() {
        for payload in [0usize, 1, 127, 128, 16_383, 16_384, 1 << 20] {
            let msg = McastMsg {
                id: MsgId {
                    client: ClientId(u64::MAX),
                    n: u64::MAX,
                },
                dst: vec![GroupId(u32::MAX), GroupId(0)],
                payload: vec![7; payload],
            };
            let multicast = Envelope::Multicast(msg.clone()).encode().len();
            let forward = Envelope::Forward {
                sender: NodeId(u32::MAX),
                k: u64::MAX,
                msg,
            }
            .encode()
            .len();
            assert!(
                forward <= multicast + FORWARD_OVERHEAD,
                "{payload}: {forward} vs {multicast}"
            );
        }
    }
}
