//! Group membership as the SMR core sees it, and tunable parameters.

use crate::message::Manifest;
use byzscale_core::codec;
use byzscale_core::protocol::{MILLIS, SECS};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::{Addr, ClientId, GroupId, NodeId, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The members of one group, in position order, their quorum system, and
/// the position of the leader of view 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: GroupId,
    pub members: Vec<NodeId>,
    pub qs: QuorumSystem,
    /// The position of view 0's leader (0 unless placed with
    /// [`GroupInfo::with_first_leader`]); later views rotate from it.
    first_leader: usize,
    /// The administrator's ed25519 key, which signs reconfigurations
    /// (`config.rs`); `None`: the membership never changes.
    admin: Option<[u8; 32]>,
}

impl GroupInfo {
    pub fn new(id: GroupId, members: Vec<NodeId>, qs: QuorumSystem) -> Self {
        assert_eq!(members.len(), qs.n(), "one weight per member");
        GroupInfo {
            id,
            members,
            qs,
            first_leader: 0,
            admin: None,
        }
    }
    /// The same group with `admin` as the key that signs its
    /// reconfigurations ([`crate::config::ConfigCert`]).
    pub fn with_admin(mut self, admin: Option<[u8; 32]>) -> Self {
        self.admin = admin;
        self
    }
    /// The key that signs reconfigurations, if any.
    pub fn admin(&self) -> Option<[u8; 32]> {
        self.admin
    }
    /// The same group with view 0 led by the member at `position` (WHEAT's
    /// leader at the best-connected replica; every member must agree on
    /// it, like on the members and weights). Views still rotate round-robin
    /// from there: view v is led by position `(position + v) mod n`.
    pub fn with_first_leader(mut self, position: usize) -> Self {
        assert!(
            position < self.n(),
            "leader position {position} is not in the group"
        );
        self.first_leader = position;
        self
    }
    /// The position of view 0's leader.
    pub fn first_leader(&self) -> usize {
        self.first_leader
    }
    pub fn n(&self) -> usize {
        self.members.len()
    }
    pub fn index_of(&self, node: NodeId) -> Option<usize> {
        self.members.iter().position(|m| *m == node)
    }
    /// Leader of `view`: round-robin over positions, from
    /// [`GroupInfo::first_leader`].
    pub fn leader(&self, view: u64) -> NodeId {
        let n = self.n() as u64;
        self.members[((self.first_leader as u64 + view % n) % n) as usize]
    }
    pub fn addrs(&self) -> Vec<Addr> {
        self.members.iter().map(|m| Addr::Node(*m)).collect()
    }
    pub fn bft(&self) -> bool {
        self.qs.mode == FaultModel::Bft
    }
}

/// Replica and client parameters. Defaults suit a LAN; the simulator and the
/// runtime override timeouts for WANs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Params {
    /// Most requests in one batch.
    pub batch_max_requests: usize,
    /// Most bytes of operations in one batch.
    pub batch_max_bytes: usize,
    /// How long the leader waits to fill a batch while other slots are in flight
    /// (0 = propose as soon as a slot is free).
    pub batch_delay: Time,
    /// Slots the leader may have proposed but not yet decided.
    pub max_in_flight: u64,
    /// While other slots are in flight, propose another only once this many
    /// requests wait (0: any). Under light load the pipeline then carries a few
    /// large batches instead of many small ones: each slot costs every replica
    /// O(n) messages whatever its size.
    pub pipeline_min_batch: usize,
    /// Watermark window: slots accepted above the last stable checkpoint.
    pub window: u64,
    /// Take a checkpoint every this many slots.
    pub checkpoint_interval: u64,
    /// A pending request older than this makes a replica suspect the leader.
    pub request_timeout: Time,
    /// Base timeout of a synchronization phase; doubles on each failed attempt.
    pub view_change_timeout: Time,
    /// How often a lagging replica asks again for state or log.
    pub fetch_interval: Time,
    /// Requests per client a replica buffers beyond the next expected one, and
    /// replies it caches per client.
    pub client_window: u64,
    /// Client retransmission timeout (doubles per retry, capped at 8×).
    pub client_retry: Time,
    /// Largest operation a replica accepts.
    pub max_op_bytes: usize,
    /// Bytes of requests a replica holds pending for one client (beyond it
    /// the client's furthest-ahead requests go; see `replica/pending.rs`).
    pub client_pending_bytes: usize,
    /// Bytes of requests a replica holds pending for all clients (beyond it
    /// the client holding the most loses its furthest-ahead request).
    pub pending_bytes: usize,
    /// A client with no request executed for more than this many slots
    /// loses its entry in the client table at the next checkpoint (see
    /// `replica/execute.rs`).
    pub client_expiry_slots: u64,
    /// A client with nothing ordered outstanding for longer than this asks
    /// for a session again before its next ordered request (see
    /// `client.rs`): its entry may have expired meanwhile, and a request of
    /// its old session would then fail as "session expired". Scale it with
    /// how long `client_expiry_slots` slots take: the default suits the
    /// default horizon of 2^20 slots.
    pub session_idle: Time,
    /// Bytes the client table (replicated state) may hold; at the bound a
    /// client with no entry is refused ([`crate::Message::Busy`]) until
    /// entries expire.
    pub client_table_bytes: usize,
    /// Clients whose entries never expire and whose requests the session
    /// floor never refuses (see `replica/execute.rs`): a bounded set the
    /// deployment knows, such as a ByzCast group's parent replicas, whose
    /// forward streams number contiguously in session 0 forever. The group
    /// must agree on it: it decides what executes.
    pub pinned_clients: BTreeSet<ClientId>,
    /// State transfer cuts a snapshot in chunks of this many bytes, each sent
    /// in its own message (see `replica/transfer.rs`). The group must agree
    /// on it: it is part of the state digest replicas sign.
    pub state_chunk_bytes: usize,
    /// Largest snapshot a replica fetches: what an in-progress state transfer
    /// may hold is bounded by the certified snapshot length, itself at most
    /// this.
    pub max_state_bytes: u64,
    /// How far a proposed batch's timestamp may be from a backup's own wall
    /// clock, either way, for the backup to accept the proposal (see
    /// `replica/execute.rs`, "Batch time"). Correct replicas' clocks must
    /// stay closer than this to each other (NTP keeps them within
    /// milliseconds), and it bounds how far a Byzantine leader can move the
    /// agreed time from real time.
    pub max_clock_skew: Time,
    /// WHEAT's tentative execution (see `replica/tentative.rs`): a replica
    /// also runs the next slot once it is prepared and answers
    /// [`crate::Message::TentativeReply`], and a client accepts a quorum of
    /// matching tentative replies besides a weak quorum of final ones. Off
    /// by default; when off nothing changes.
    pub tentative: bool,
}

/// A [`Params`] value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamsError {
    #[error(
        "state_chunk_bytes = {0}: must be between 1 and {max} (a chunk travels in \
         one message, under the transport's frame limit)",
        max = Manifest::MAX_CHUNK
    )]
    ChunkSize(usize),
    #[error(
        "max_state_bytes = {max_state} in chunks of {chunk} bytes needs a manifest of \
         {bytes} bytes, over the frame limit ({limit}); raise state_chunk_bytes or lower \
         max_state_bytes",
        limit = codec::DEFAULT_MAX_FRAME
    )]
    ManifestSize {
        max_state: u64,
        chunk: usize,
        bytes: u64,
    },
}

impl Default for Params {
    fn default() -> Self {
        Params {
            batch_max_requests: 400,
            batch_max_bytes: 1 << 20,
            batch_delay: 0,
            max_in_flight: 4,
            pipeline_min_batch: 0,
            window: 256,
            checkpoint_interval: 128,
            request_timeout: 2 * SECS,
            view_change_timeout: 2 * SECS,
            fetch_interval: 200 * MILLIS,
            client_window: 16,
            client_retry: SECS,
            max_op_bytes: 1 << 20,
            client_pending_bytes: 8 << 20,
            pending_bytes: 128 << 20,
            client_expiry_slots: 1 << 20,
            session_idle: 5 * SECS,
            client_table_bytes: 64 << 20,
            pinned_clients: BTreeSet::new(),
            state_chunk_bytes: 1 << 20,
            max_state_bytes: 1 << 30,
            max_clock_skew: 5 * SECS,
            tentative: false,
        }
    }
}

/// Room in a STATE message for the certificate and framing beside the
/// manifest's digests.
const STATE_OVERHEAD: u64 = 64 << 10;

impl Params {
    /// Check the values that a replica cannot work with; the error says which
    /// and why.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let chunk = self.state_chunk_bytes;
        if chunk == 0 || chunk > Manifest::MAX_CHUNK {
            return Err(ParamsError::ChunkSize(chunk));
        }
        let bytes = self
            .max_state_bytes
            .div_ceil(chunk as u64)
            .saturating_mul(32);
        if bytes.saturating_add(STATE_OVERHEAD) > codec::DEFAULT_MAX_FRAME as u64 {
            return Err(ParamsError::ManifestSize {
                max_state: self.max_state_bytes,
                chunk,
                bytes,
            });
        }
        Ok(())
    }

    /// Timeouts scaled for a network whose largest one-way delay is `max_one_way`.
    pub fn for_network(max_one_way: Time) -> Self {
        let rtt = 2 * max_one_way;
        let base = (20 * rtt).max(50 * MILLIS);
        Params {
            request_timeout: base,
            view_change_timeout: base,
            fetch_interval: (4 * rtt).max(10 * MILLIS),
            client_retry: base,
            ..Params::default()
        }
    }

    /// How long a client waits after its `retries`-th retransmission:
    /// `client_retry`, doubled per retry, at most 8 times over.
    pub fn client_backoff(&self, retries: u32) -> Time {
        self.client_retry.saturating_mul(1 << retries.min(3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_chunking_is_refused_with_the_reason() {
        assert_eq!(Params::default().validate(), Ok(()));
        let p = |chunk, max| Params {
            state_chunk_bytes: chunk,
            max_state_bytes: max,
            ..Params::default()
        };
        assert_eq!(p(0, 1 << 30).validate(), Err(ParamsError::ChunkSize(0)));
        let huge = codec::DEFAULT_MAX_FRAME;
        assert_eq!(
            p(huge, 1 << 30).validate(),
            Err(ParamsError::ChunkSize(huge))
        );
        // 1 TiB in 1 KiB chunks: a manifest of 32 GiB
        let e = p(1 << 10, 1 << 40).validate().unwrap_err();
        assert!(e.to_string().contains("raise state_chunk_bytes"), "{e}");
        assert_eq!(p(1, 1 << 10).validate(), Ok(()));
    }

    #[test]
    fn views_rotate_from_the_first_leader() {
        use byzscale_core::quorum::FaultModel;
        let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
        let g = GroupInfo::new(GroupId(0), (10..14).map(NodeId).collect(), qs);
        let leaders = |g: &GroupInfo| (0..6).map(|v| g.leader(v).0).collect::<Vec<_>>();
        assert_eq!(leaders(&g), vec![10, 11, 12, 13, 10, 11]);
        let g = g.with_first_leader(2);
        assert_eq!(g.first_leader(), 2);
        assert_eq!(leaders(&g), vec![12, 13, 10, 11, 12, 13]);
        // u64::MAX mod 4 = 3: position (2 + 3) mod 4 = 1, no overflow
        assert_eq!(g.leader(u64::MAX).0, 11);
    }

    #[test]
    fn client_backoff_doubles_up_to_eight_times() {
        let p = Params {
            client_retry: 10,
            ..Params::default()
        };
        let waits: Vec<Time> = (0..6).map(|r| p.client_backoff(r)).collect();
        assert_eq!(waits, vec![10, 20, 40, 80, 80, 80]);
    }
}
