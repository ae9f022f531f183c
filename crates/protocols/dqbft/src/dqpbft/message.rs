//! DQPBFT's wire messages and the values its instances order.
//!
//! The three phases of every instance are the SMR ordering core's
//! PROPOSE / WRITE / ACCEPT ([`order::Message`]), named here as in the
//! paper's Figure 5: D-PrePrepare / D-Prepare / D-Commit for a
//! dissemination instance and O-PrePrepare / O-Prepare / O-Commit for the
//! ordering instance ([`Phase`]).

use byzscale_core::codec;
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::ClientId;
use byzscale_smr::replica::order::{self, Value};
use byzscale_smr::{Slot, View};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A client command (paper §3.2.6: an operation and a monotonically
/// increasing timestamp per client).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub client: ClientId,
    pub timestamp: u64,
    pub op: Vec<u8>,
}

impl Command {
    /// Bytes it costs in a batch or a queue.
    pub fn size(&self) -> usize {
        self.op.len() + 16
    }
}

/// The value of one D-instance slot: a batch of its coordinator's clients'
/// commands. The empty batch is the paper's **no-op** (what a new D
/// coordinator proposes for a D sequence number the O-instance named but no
/// correct replica holds a command for); executing it consumes the D
/// sequence number and nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DBatch {
    pub commands: Arc<Vec<Command>>,
}

impl DBatch {
    pub fn new(commands: Vec<Command>) -> Self {
        DBatch {
            commands: Arc::new(commands),
        }
    }
    /// The no-op (see the type's docs).
    pub fn noop() -> Self {
        DBatch::default()
    }
    pub fn is_noop(&self) -> bool {
        self.commands.is_empty()
    }
}

impl Value for DBatch {
    fn digest(&self, crypto: &Crypto) -> Digest {
        crypto.hash(&codec::to_bytes(&("byzscale/dqpbft/d", self)))
    }
    fn size(&self) -> usize {
        self.commands.iter().map(Command::size).sum::<usize>() + 8
    }
}

/// The value of one O-instance slot: the reference (R_n, S_ni) to D-instance
/// `instance`'s sequence number `seq` (paper: O-PrePrepare ⟨…, R_n, S_ni⟩).
/// The default, `seq` 0, is the null reference a view change selects for an
/// O-slot nobody prepared; the execution cursor skips it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ref {
    pub instance: u32,
    pub seq: Slot,
}

impl Ref {
    pub fn is_null(&self) -> bool {
        self.seq == 0
    }
}

impl Value for Ref {
    fn digest(&self, crypto: &Crypto) -> Digest {
        crypto.hash(&codec::to_bytes(&("byzscale/dqpbft/o", self)))
    }
    fn size(&self) -> usize {
        12
    }
}

/// One phase of an instance (paper Fig. 5), in the ordering core's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase<V> {
    /// PROPOSE: the coordinator's (D) or primary's (O) value for a slot.
    PrePrepare { view: View, slot: Slot, value: V },
    /// WRITE.
    Prepare {
        view: View,
        slot: Slot,
        digest: Digest,
    },
    /// ACCEPT.
    Commit {
        view: View,
        slot: Slot,
        digest: Digest,
    },
}

impl<V> From<order::Message<V>> for Phase<V> {
    fn from(m: order::Message<V>) -> Self {
        match m {
            order::Message::Propose { view, slot, value } => {
                Phase::PrePrepare { view, slot, value }
            }
            order::Message::Write { view, slot, digest } => Phase::Prepare { view, slot, digest },
            order::Message::Accept { view, slot, digest } => Phase::Commit { view, slot, digest },
        }
    }
}

impl<V> From<Phase<V>> for order::Message<V> {
    fn from(p: Phase<V>) -> Self {
        match p {
            Phase::PrePrepare { view, slot, value } => {
                order::Message::Propose { view, slot, value }
            }
            Phase::Prepare { view, slot, digest } => order::Message::Write { view, slot, digest },
            Phase::Commit { view, slot, digest } => order::Message::Accept { view, slot, digest },
        }
    }
}

impl<V> Phase<V> {
    /// The phase's name without its instance prefix.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::PrePrepare { .. } => "PrePrepare",
            Phase::Prepare { .. } => "Prepare",
            Phase::Commit { .. } => "Commit",
        }
    }
}

/// Everything a DQPBFT replica sends or receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Client → its coordinator.
    Request(Command),
    /// A phase of D-instance `instance` (led by replica `instance` in view 0).
    D { instance: u32, phase: Phase<DBatch> },
    /// A phase of the O-instance.
    O(Phase<Ref>),
    /// Every `checkpoint_interval` executed O-slots: the digest of the
    /// execution state there (PBFT's CHECKPOINT, over the global cursor).
    Checkpoint { oslot: Slot, digest: Digest },
    /// Replica → client: the result of `timestamp` (f+1 matching).
    Reply {
        client: ClientId,
        timestamp: u64,
        result: Vec<u8>,
    },
}

impl Message {
    /// The paper's name of the message kind ("D-PrePrepare", "O-Commit",
    /// …), for counting.
    pub fn kind(&self) -> String {
        match self {
            Message::Request(_) => "Request".into(),
            Message::D { phase, .. } => format!("D-{}", phase.name()),
            Message::O(phase) => format!("O-{}", phase.name()),
            Message::Checkpoint { .. } => "Checkpoint".into(),
            Message::Reply { .. } => "Reply".into(),
        }
    }
}
