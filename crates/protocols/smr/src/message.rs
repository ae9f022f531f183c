//! Wire messages of the SMR core. Everything here is plain data; signatures
//! cover the canonical encodings produced by the `*_bytes` functions.

use crate::config::ConfigCert;
use crate::GroupInfo;
use byzscale_core::codec;
use byzscale_core::crypto::{Crypto, Digest, Mac, Signature};
use byzscale_core::{ClientId, GroupId, NodeId, Priority};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub type View = u64;
pub type Slot = u64;

/// A client operation with its PBFT-style MAC authenticator (one HMAC per replica,
/// in group position order) over [`Request::auth_bytes`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub client: ClientId,
    /// Ordered requests: the client's session, named by a slot decided
    /// before the request (see `replica/execute.rs`), which the client
    /// learnt by [`Message::SessionQuery`]. Read-only requests: 0 (they
    /// carry no session).
    pub session: u64,
    /// Ordered requests: the client's FIFO sequence number, from 1 and
    /// contiguous within its session.
    /// Read-only requests: a separate per-client counter (never executed in order).
    pub seq: u64,
    pub read_only: bool,
    pub op: Vec<u8>,
    pub auth: Vec<Mac>,
    /// The client's signature over [`Request::auth_bytes`], which every
    /// replica can check (a MAC entry convinces its own replica only). A
    /// client signs from its first retransmission on; a replica requires it
    /// from a client whose request failed authentication inside a batch
    /// (partial-authenticator poisoning, see `replica/request.rs`).
    pub sig: Option<Signature>,
}

/// A request's identity in the replicas' tables: (client, session, seq).
pub type ReqId = (ClientId, u64, u64);

impl Message {
    /// A request for state, a chunk or the log: what a replica that left
    /// the group still answers.
    pub fn is_fetch(&self) -> bool {
        matches!(
            self,
            Message::FetchState { .. } | Message::FetchChunk { .. } | Message::FetchLog { .. }
        )
    }
}

impl Request {
    /// Request `seq` of `client` to `group`, with a MAC for each member (an
    /// unknown member's entry is zero and fails there: the replica drops the
    /// request, the client retries). Unsigned: a client signs from its first
    /// retransmission on (see [`Request::sign`]).
    pub fn authenticated(
        crypto: &Crypto,
        group: &GroupInfo,
        client: ClientId,
        (session, seq): (u64, u64),
        read_only: bool,
        op: Vec<u8>,
    ) -> Request {
        let bytes = Request::auth_bytes(group.id, client, (session, seq), read_only, &op);
        let auth = crypto
            .authenticator(&group.addrs(), &bytes)
            .unwrap_or_else(|_| vec![Default::default(); group.n()]);
        Request {
            client,
            session,
            seq,
            read_only,
            op,
            auth,
            sig: None,
        }
    }

    /// Add the client's signature, which every replica can check, if it is
    /// not there yet.
    pub fn sign(&mut self, crypto: &Crypto, group: GroupId) {
        if self.sig.is_none() {
            let bytes = self.signed_bytes(group);
            self.sig = Some(crypto.sign(&bytes));
        }
    }

    pub fn auth_bytes(
        group: GroupId,
        client: ClientId,
        (session, seq): (u64, u64),
        read_only: bool,
        op: &[u8],
    ) -> Vec<u8> {
        let fields = (group.0, client, session, seq, read_only, op);
        codec::to_bytes(&("byzscale/request", fields))
    }
    /// The bytes its authenticator and signature cover, in `group`.
    pub fn signed_bytes(&self, group: GroupId) -> Vec<u8> {
        let id = (self.session, self.seq);
        Request::auth_bytes(group, self.client, id, self.read_only, &self.op)
    }
    pub fn id(&self) -> ReqId {
        (self.client, self.session, self.seq)
    }
}

/// An ordered batch of requests and its timestamp: the value of one
/// consensus instance (slot). The requests are shared: a batch is proposed,
/// kept for the view change and the log, executed and persisted, and cloning
/// it costs a reference count.
///
/// The timestamp is part of the value (its digest, its records, the log and
/// the view change's claims), so the group agrees on it with the requests,
/// as in BFT-SMaRt (see `replica/execute.rs`, "Batch time").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Batch {
    /// The leader's clock when it proposed the batch, in milliseconds since
    /// the Unix epoch ([`byzscale_core::Cx::wall_ms`]). 0 in a null batch
    /// (a slot a view change found nothing prepared for), which executes at
    /// the previous batch's time.
    pub time_ms: u64,
    pub requests: Arc<Vec<Request>>,
}

impl Batch {
    /// A batch of `requests` at time 0 (tests, and null batches).
    pub fn new(requests: Vec<Request>) -> Self {
        Batch::at(0, requests)
    }

    /// A batch of `requests` proposed at `time_ms`.
    pub fn at(time_ms: u64, requests: Vec<Request>) -> Self {
        Batch {
            time_ms,
            requests: Arc::new(requests),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub replica: NodeId,
    pub view: View,
    pub client: ClientId,
    /// The request's session and sequence number.
    pub session: u64,
    pub seq: u64,
    pub read_only: bool,
    /// Ordered requests: the slot whose batch executed the request (a
    /// client counts a reply only with others matching in result and slot,
    /// so the slot it learns is vouched for by a correct replica). Reads: 0.
    pub slot: Slot,
    pub result: Vec<u8>,
}

/// Why a replica did not run an ordered request (see `replica/execute.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// The client table is full (`Params::client_table_bytes`) and the
    /// client has no entry; it runs once idle entries expire.
    Busy,
    /// The client has no entry and its session is below the session floor:
    /// whatever it sent in that session expired, and nothing of it runs any
    /// more. The client fails its outstanding requests (outcome unknown)
    /// and learns a new session, at least `floor`.
    Stale { floor: Slot },
    /// The session names a slot not decided before the request's own (a
    /// correct client never sends one).
    SessionAhead,
}

/// Q checkpoint signatures on (slot, state digest): proof of a stable checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCert {
    pub slot: Slot,
    pub state: Digest,
    pub sigs: Vec<(NodeId, Signature)>,
}

/// What one replica knows about one slot when it leaves a view (PBFT's P and Q
/// components of VIEW-CHANGE, Castro & Liskov TOCS 2002 §4.5):
/// - `prepared`: the highest view in which it prepared a value for the slot
///   (its proposal plus a quorum of matching WRITEs), that value's digest, and
///   the batch itself so the new leader can re-propose it;
/// - `pre_prepared`: the values it accepted a PROPOSE for, with the latest view
///   of each (at most [`PRE_PREPARED_KEPT`], newest first).
///
/// These are the replica's own claims, covered by its signature on the
/// STOP-DATA; no third-party signatures are needed (see `replica::order::select`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotClaim {
    pub slot: Slot,
    pub prepared: Option<(View, Digest, Batch)>,
    pub pre_prepared: Vec<(Digest, View)>,
}

/// How many pre-prepared (digest, view) pairs a replica keeps per slot.
pub const PRE_PREPARED_KEPT: usize = 4;

/// What a replica knows when it leaves a view: its stable checkpoint and its
/// claims for every slot above it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopBody {
    pub view: View,
    pub replica: NodeId,
    pub checkpoint: Option<CheckpointCert>,
    pub claims: Vec<SlotClaim>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopData {
    pub body: StopBody,
    pub sig: Signature,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Request(Request),
    /// A backup forwards requests that timed out to the leader (BFT-SMaRt's
    /// first-timeout step) before suspecting it.
    Forward(Vec<Request>),
    Reply(Reply),
    Propose {
        view: View,
        slot: Slot,
        batch: Batch,
    },
    Write {
        view: View,
        slot: Slot,
        digest: Digest,
    },
    Accept {
        view: View,
        slot: Slot,
        digest: Digest,
    },
    Checkpoint {
        slot: Slot,
        state: Digest,
        sig: Signature,
    },
    /// "I want to move to view `view`."
    Stop {
        view: View,
    },
    StopData(StopData),
    /// The new leader's quorum of STOP-DATA for `view`.
    Sync {
        view: View,
        stops: Vec<StopData>,
    },
    /// Ask for the SYNC of the sender's current view (a replica that learnt of a
    /// newer view from others).
    FetchSync {
        view: View,
    },
    /// Ask for a stable checkpoint of at least `slot`: its certificate and
    /// the manifest of its snapshot.
    FetchState {
        slot: Slot,
    },
    /// A stable checkpoint and the [`Manifest`] of its snapshot (whose
    /// [`Manifest::digest`] is the certified state). The snapshot itself
    /// follows in chunks ([`Message::FetchChunk`] / [`Message::Chunk`]).
    State {
        cert: CheckpointCert,
        manifest: Manifest,
    },
    /// Ask for decided batches in `from..=to`.
    FetchLog {
        from: Slot,
        to: Slot,
    },
    /// Decided batches with the view they were decided in. A correct replica
    /// sends only decided slots, so each entry also counts as the sender's
    /// ACCEPT for (view, slot, digest).
    Log {
        entries: Vec<(Slot, View, Batch)>,
    },
    /// To a client: its request (`session`, `seq`) was not run, for
    /// `reason` (see `replica/execute.rs`).
    Refused {
        replica: NodeId,
        client: ClientId,
        session: u64,
        seq: u64,
        reason: RefuseReason,
    },
    /// A client asks for a session to start (see `client.rs`): each
    /// replica answers [`Message::SessionInfo`] and keeps nothing.
    SessionQuery {
        client: ClientId,
        nonce: u64,
    },
    /// To a client: the last slot this replica executed, for its session
    /// query `nonce`.
    SessionInfo {
        replica: NodeId,
        client: ClientId,
        nonce: u64,
        executed: Slot,
    },
    /// Ask for chunk `index` of the snapshot at the stable checkpoint `slot`.
    FetchChunk {
        slot: Slot,
        index: u32,
    },
    /// Chunk `index` of the snapshot at the stable checkpoint `slot`; the
    /// receiver checks it against the manifest's digest for `index`.
    Chunk {
        slot: Slot,
        index: u32,
        bytes: Vec<u8>,
    },
    /// To a client, with [`crate::Params::tentative`] on: the result of its
    /// ordered request in `slot`, executed tentatively once the slot was
    /// prepared in `view` (WHEAT; see `replica/tentative.rs`). A client
    /// takes it from a quorum of matching ones (view, slot and result).
    TentativeReply(Reply),
    /// To a client whose request is authenticated for another configuration
    /// than this replica's (`config.rs`): the replica runs `epoch`; the
    /// client asks it for the proof.
    NewEpoch {
        replica: NodeId,
        epoch: u64,
    },
    /// A client at configuration `epoch` asks for the certificates above it.
    FetchConfig {
        epoch: u64,
    },
    /// The administrator-signed certificates above the epoch asked for,
    /// oldest first (at most [`crate::config::MAX_CHAIN_BYTES`]): the proof
    /// of the replica's configuration.
    ConfigProof {
        certs: Vec<ConfigCert>,
    },
}

impl Message {
    /// Short name for metrics and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Request(_) => "request",
            Message::Forward(_) => "forward",
            Message::Reply(_) => "reply",
            Message::Propose { .. } => "propose",
            Message::Write { .. } => "write",
            Message::Accept { .. } => "accept",
            Message::Checkpoint { .. } => "checkpoint",
            Message::Stop { .. } => "stop",
            Message::StopData(_) => "stop-data",
            Message::Sync { .. } => "sync",
            Message::FetchSync { .. } => "fetch-sync",
            Message::FetchState { .. } => "fetch-state",
            Message::State { .. } => "state",
            Message::FetchLog { .. } => "fetch-log",
            Message::Log { .. } => "log",
            Message::Refused { .. } => "refused",
            Message::SessionQuery { .. } => "session-query",
            Message::SessionInfo { .. } => "session-info",
            Message::FetchChunk { .. } => "fetch-chunk",
            Message::Chunk { .. } => "chunk",
            Message::TentativeReply(_) => "tentative-reply",
            Message::NewEpoch { .. } => "new-epoch",
            Message::FetchConfig { .. } => "fetch-config",
            Message::ConfigProof { .. } => "config-proof",
        }
    }

    /// Its class in a driver's bounded send queues: the state, its chunks
    /// and the log a lagging replica asks for again are bulk, dropped first
    /// when a peer's queue is full; everything else is control.
    pub fn priority(&self) -> Priority {
        match self {
            Message::State { .. } | Message::Chunk { .. } | Message::Log { .. } => Priority::Bulk,
            _ => Priority::Control,
        }
    }
}

/// Room a [`Message::Chunk`] needs around its bytes (variant, slot, index,
/// length prefix): a chunk of at most [`Manifest::MAX_CHUNK`] bytes fits the
/// transport's default frame limit.
const CHUNK_OVERHEAD: usize = 64;

/// The replicated state at a checkpoint, as chunks: its length, the chunk
/// size, and the digest of each chunk in order. Its [`Manifest::digest`]
/// is the state digest replicas sign in CHECKPOINT, so a manifest is checked
/// against a certificate by one hash and each chunk against its entry, before
/// it is kept (see `replica/transfer.rs`).
///
/// The chunk size is [`crate::Params::state_chunk_bytes`], part of what the
/// group agrees on like `checkpoint_interval`: members with different values
/// sign different digests for the same state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Length of the snapshot in bytes.
    pub len: u64,
    /// Every chunk but the last holds this many bytes.
    pub chunk: u32,
    /// The digest of each chunk, in order.
    pub chunks: Vec<Digest>,
}

impl Manifest {
    /// The largest chunk size: a CHUNK message stays under
    /// [`codec::DEFAULT_MAX_FRAME`].
    pub const MAX_CHUNK: usize = codec::DEFAULT_MAX_FRAME - CHUNK_OVERHEAD;

    /// The manifest of `snapshot` cut in chunks of `chunk` bytes (clamped
    /// to 1..=[`Self::MAX_CHUNK`]).
    pub fn of(crypto: &Crypto, snapshot: &[u8], chunk: usize) -> Manifest {
        let chunk = chunk.clamp(1, Self::MAX_CHUNK);
        Manifest {
            len: snapshot.len() as u64,
            chunk: chunk as u32,
            chunks: snapshot.chunks(chunk).map(|c| crypto.hash(c)).collect(),
        }
    }

    /// The state digest a checkpoint certifies: the hash of the manifest.
    pub fn digest(&self, crypto: &Crypto) -> Digest {
        let bytes = codec::to_bytes(&("byzscale/state", self.len, self.chunk, &self.chunks));
        crypto.hash(&bytes)
    }

    /// Whether the manifest is well formed and describes at most `max_len`
    /// bytes: a chunk size that fits a frame, and one digest per chunk.
    pub fn check(&self, max_len: u64) -> Result<(), String> {
        let chunk = self.chunk as usize;
        if chunk == 0 || chunk > Self::MAX_CHUNK {
            return Err(format!(
                "chunk size {chunk} outside 1..={}",
                Self::MAX_CHUNK
            ));
        }
        if self.len > max_len {
            return Err(format!(
                "snapshot of {} bytes over max_state_bytes ({max_len})",
                self.len
            ));
        }
        if self.chunks.len() as u64 != self.len.div_ceil(chunk as u64) {
            let n = self.chunks.len();
            return Err(format!("{n} chunk digests for {} bytes", self.len));
        }
        Ok(())
    }

    /// The byte range of chunk `index` in the snapshot (a checked manifest).
    pub fn span(&self, index: u32) -> std::ops::Range<usize> {
        let chunk = self.chunk as usize;
        let start = (index as usize)
            .saturating_mul(chunk)
            .min(self.len as usize);
        start..start.saturating_add(chunk).min(self.len as usize)
    }
}

/// The state digest of `snapshot` cut in chunks of `chunk` bytes.
pub fn state_digest(crypto: &Crypto, snapshot: &[u8], chunk: usize) -> Digest {
    Manifest::of(crypto, snapshot, chunk).digest(crypto)
}

pub fn checkpoint_bytes(group: GroupId, slot: Slot, state: &Digest) -> Vec<u8> {
    codec::to_bytes(&("byzscale/checkpoint", group.0, slot, state))
}

pub fn stop_bytes(group: GroupId, body: &StopBody) -> Vec<u8> {
    codec::to_bytes(&("byzscale/stop-data", group.0, body))
}
