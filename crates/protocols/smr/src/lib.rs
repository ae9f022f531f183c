//! BFT state machine replication in the style of BFT-SMaRt (Mod-SMaRt) and PBFT.
//!
//! # Paper mapping
//!
//! Seed 004 (BFT-SMaRt talk, WHEAT, AWARE) and seed 003's description of PBFT-style
//! agreement; Castro & Liskov, "Practical Byzantine Fault Tolerance" (OSDI'99) for
//! certificates and checkpoints; Sousa & Bessani, "From Byzantine Consensus to BFT
//! State Machine Replication: A Latency-Optimal Transformation" (Mod-SMaRt) for the
//! synchronization phase.
//!
//! | here | BFT-SMaRt / Mod-SMaRt | PBFT |
//! |---|---|---|
//! | [`Message::Request`] | client request (to all replicas) | REQUEST |
//! | [`Message::Propose`] | PROPOSE | PRE-PREPARE |
//! | [`Message::Write`] | WRITE | PREPARE |
//! | [`Message::Accept`] | ACCEPT | COMMIT |
//! | [`Message::Reply`] | reply (client waits for f+1) | REPLY |
//! | [`Message::TentativeReply`] | WHEAT tentative reply (client waits for a quorum) | tentative REPLY (OSDI'99 §5.1) |
//! | [`Message::Stop`] | STOP | (view-change trigger) |
//! | [`Message::StopData`] | STOP-DATA | VIEW-CHANGE |
//! | [`Message::Sync`] | SYNC | NEW-VIEW |
//! | [`Message::Checkpoint`] | checkpoint | CHECKPOINT |
//! | [`Message::FetchState`] / [`Message::State`] | state transfer (certificate + [`Manifest`]) | state transfer |
//! | [`Message::FetchChunk`] / [`Message::Chunk`] | state transfer (one chunk, checked against the manifest) | fetch of a partition |
//! | [`Message::FetchLog`] / [`Message::Log`] | log transfer | (fetch) |
//!
//! # Message flow (normal case, n = 4, f = 1)
//!
//! ```text
//! client ──Request──▶ all replicas   (MAC authenticator: one HMAC per replica)
//! leader ──Propose(v, s, batch)──▶ all
//! all    ──Write(v, s, d, sig)──▶ all     Q votes ⇒ prepared (certificate = Q signed Writes)
//! all    ──Accept(v, s, d)──▶ all          Q votes ⇒ decided; execute in slot order
//! all    ──Reply──▶ client                 weak quorum (f+1 in votes) of matching results
//! ```
//!
//! Quorums are counted in votes ([`byzscale_core::quorum`]), so WHEAT's weighted
//! configurations (n = 3f+1+Δ) are the general case and classic PBFT is all weights 1.
//!
//! # Deviations, and why
//!
//! - No signatures in the normal case: PROPOSE, WRITE and ACCEPT ride on the
//!   driver's pairwise-MAC channels. Instead of transferable prepared certificates,
//!   each replica's STOP-DATA carries its own claims (PBFT's P and Q sets), signed
//!   once by that replica, and the new leader selects values with Castro & Liskov's
//!   decision procedure (TOCS 2002 §4.5.2) counted in votes. An earlier version
//!   signed every WRITE; that cost one ed25519 operation per replica per slot.
//! - The new leader forwards the quorum of STOP-DATA in SYNC; every replica
//!   recomputes the selection from it (PBFT's NEW-VIEW "O" set), so SYNC itself
//!   needs no signature.
//! - The certified state digest is the hash of the snapshot's chunk manifest,
//!   and state transfer fetches the snapshot in chunks, each checked before it
//!   is kept, resumable across sources (`replica/transfer.rs`).
//! - Lost messages are recovered by retransmission (a stuck replica re-sends its
//!   votes and asks for the log) rather than only by view changes.
//! - Requests carry PBFT-style MAC authenticators; a client signs only its
//!   retransmissions. A Byzantine client whose authenticator is valid at some
//!   replicas only gets a batch holding its request refused once per replica
//!   at most: a backup that finds such an unsigned request in a batch takes
//!   that client's requests only signed from then on (signatures, as BFT-SMaRt's
//!   signed requests, convince every replica alike), and drops the unsigned
//!   ones it holds, so no later leader proposes one and no request timer
//!   fires for one. (PBFT bounds the same attack with signatures for
//!   suspect requests or an extra round in Castro's thesis; this takes the
//!   signature route, without a new message. See `replica/request.rs`.)
//! - Per-client FIFO is enforced at execution: requests run in client sequence
//!   order within a session; out-of-order ones are skipped there and wait in
//!   the (local, byte-bounded) pending table, not in the replicated client
//!   table, which keeps only what exactly-once needs and expires idle clients
//!   at checkpoints (see `replica/execute.rs`).
//! - Client sessions are named by slots, as Raft's (Ongaro's thesis §6.3),
//!   not registered through the log: before a session's first ordered
//!   request the client asks every replica ([`Message::SessionQuery`]) and
//!   takes, from a quorum of answers ([`Message::SessionInfo`], stateless at
//!   the replica), the highest executed slot a weak quorum reached. A
//!   replicated session floor rises past expired entries at each
//!   checkpoint; a client without an entry and a session below it is
//!   refused ([`RefuseReason::Stale`]), and nothing of that session runs any
//!   more. The client then fails its outstanding requests with "session
//!   expired: outcome unknown" ([`client::Failed::SessionExpired`], Raft's
//!   SESSION_EXPIRED) and never sends them again (one may have run before
//!   its entry expired, every reply lost), and learns a new session for
//!   later ones; it also asks again after idling for [`Params::session_idle`].
//!   Pinned clients ([`Params::pinned_clients`]: a ByzCast child's parent
//!   replicas) never expire and are exempt from the floor.
//! - Batch timestamps, as BFT-SMaRt's: the leader stamps each batch with its
//!   wall clock ([`Batch::time_ms`], part of the value agreed on), a backup
//!   accepts it only at or above the last executed batch's time and within
//!   [`Params::max_clock_skew`] of its own clock (the bound is this crate's
//!   addition), and the service executes the batch at that time
//!   (`Service::begin_batch`), so time-dependent services (key expiry) are
//!   deterministic. See `replica/execute.rs`, "Batch time".
//! - Tentative execution (WHEAT, optional, [`Params::tentative`]) runs a
//!   prepared slot between a snapshot and its restore instead of on the live
//!   state with PBFT's rollback; the client takes a quorum (not 2f+1 replicas:
//!   Q_v votes) of tentative replies matching in view, slot and result. See
//!   `replica/tentative.rs`.
//! - The view-0 leader may be placed at any position
//!   ([`GroupInfo::with_first_leader`], WHEAT's best-connected leader); views
//!   rotate round-robin from it.
//! - Reconfiguration (`config.rs`, `replica/reconfig.rs`,
//!   docs/RECONFIGURATION.md): an ordered, administrator-signed statement of
//!   the whole next configuration, valid if it is the next epoch's; it
//!   governs from the slot after the first checkpoint a window past its own
//!   (the old members certify that checkpoint, which joining replicas fetch),
//!   in view `epoch << 32`, whose leader is a member that stays. Clients
//!   learn it from a signed chain, not a `currentView` file.
//! - CFT mode (2f+1 replicas): no WRITE phase; a PROPOSE is accepted directly and the
//!   synchronization phase trusts the replicas' accepted values.
//! - Unordered read-only requests are answered from local state once the replica has
//!   executed every slot it accepted; the client needs a full quorum of matching
//!   replies and otherwise falls back to ordering (linearizable, see `Replica`).
//! - Durable votes instead of PBFT's in-memory log and proactive recovery: a replica
//!   emits records ([`Record`]) for its adoptions (before its WRITE), ACCEPTs,
//!   decisions (before their replies), view changes (before STOP-DATA) and stable
//!   checkpoints with their certificates; its driver sends nothing that follows a
//!   record in the same step before the record is durable, and
//!   [`Replica::recover`] restarts from the fold of what survived ([`Durable`]).
//!   The leader's PROPOSE is not a vote and goes first. See `replica/durable.rs`.
//!
//! # Files
//!
//! | file | holds | papers |
//! |---|---|---|
//! | `message.rs` | the wire messages and the signed encodings | — |
//! | `config.rs` | [`config::Config`] (epoch, members, quorum system), the admin-signed [`config::ConfigCert`], the proof chain, the activation slot | BFT-SMaRt reconfiguration; Lamport, Malkhi & Zhou (α) |
//! | `params.rs` | [`GroupInfo`] (members, quorum system, leader of a view), [`Params`] | WHEAT (weighted quorums) |
//! | `fault.rs` | the [`Fault`] kinds | — |
//! | `client.rs` | the [`Client`]: authenticators, matching replies, retransmission, reads | BFT-SMaRt `ServiceProxy`; PBFT TOCS'02 §4.2, read-only optimization |
//! | `replica/mod.rs` | the [`Replica`]: composition and dispatch (its docs map the files below) | — |
//! | `replica/durable.rs` | the durable records, their fold ([`Durable`]) and the restart ([`Replica::recover`]) | PBFT's log, made durable (TOCS'02 §4.6 deviates) |
//! | `replica/order.rs` | [`replica::order`]: the ordering core, generic over the ordered value, and PBFT's decision procedure | Mod-SMaRt normal phase; PBFT OSDI'99 §4.2, TOCS'02 §4.5.2 |
//! | `replica/request.rs` | client requests, forwarding, read-only requests, request timers, batching | PBFT OSDI'99 §4.1; BFT-SMaRt |
//! | `replica/execute.rs` | execution in slot order, the client table, replies, snapshots | PBFT's last-reply table |
//! | `replica/checkpoint.rs` | checkpoints, certificates, stabilization, watermarks | PBFT OSDI'99 §4.3 |
//! | `replica/transfer.rs` | state and log transfer, retransmission of stuck votes | PBFT and BFT-SMaRt state transfer |
//! | `replica/sync.rs` | the synchronization phase (STOP / STOP-DATA / SYNC) | Mod-SMaRt synchronization phase; PBFT OSDI'99 §4.4, TOCS'02 §4.5 |
//! | `replica/tentative.rs` | optional tentative execution of a prepared slot (no rollback: run between a snapshot and its restore) | WHEAT; PBFT OSDI'99 §5.1 |

pub mod client;
pub mod config;
mod fault;
mod message;
mod params;
pub mod replica;

pub use client::Client;
pub use fault::Fault;
pub use message::*;
pub use params::{GroupInfo, Params, ParamsError};
pub use replica::{Durable, Record, Replica, Status};
