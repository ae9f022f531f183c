//! The SMR replica (BFT-SMaRt's `ServiceReplica` with Mod-SMaRt inside; PBFT's
//! replica). See the crate docs for the message map and the deviations.
//!
//! # What a replica is
//!
//! A member of one group that takes client requests, gets them ordered, and
//! executes them. It is a composition of five parts around one ordering core:
//!
//! ```text
//! client ──Request──▶ request.rs ──batch──▶ order.rs ──decided slot──▶ execute.rs ──Reply──▶ client
//!                       (pending)        (PROPOSE/WRITE/ACCEPT)      (client table, service)
//!                                              ▲    │ stable checkpoints move the window
//!                         sync.rs: new view ───┘    └──▶ checkpoint.rs ◀──▶ transfer.rs
//! ```
//!
//! - the leader of the current view turns pending requests into batches and
//!   proposes one per slot; every replica votes through the ordering core
//!   ([`order::Ordering`]), which knows slots, views and votes but no requests;
//! - decided slots leave the core in slot order and are executed under the
//!   per-client FIFO rule; replies go to the clients;
//! - every `checkpoint_interval` slots the replicas sign their state digest; a
//!   quorum of matching signatures makes a stable checkpoint, which moves the
//!   low watermark and lets the log be dropped;
//! - a replica that falls behind fetches decided batches (log transfer) or a
//!   certified snapshot (state transfer) and re-sends its own stuck votes;
//! - a replica whose requests time out forwards them to the leader, then
//!   suspects it; a quorum of STOPs starts the synchronization phase, in which
//!   the new leader gathers a quorum of STOP-DATA and sends them as SYNC, from
//!   which every replica computes the same values for the open slots.
//!
//! # Invariants kept at run time
//!
//! - a replica writes for at most one digest per (view, slot);
//! - a slot is decided only with a quorum of ACCEPTs (or a weak quorum of
//!   matching log entries) and a batch whose digest matches;
//! - slots execute strictly in order, each once; requests per client in FIFO order;
//! - a read-only request is answered only once every slot this replica
//!   ACCEPTed is executed (linearizable unordered reads, see `request.rs`);
//! - Byzantine or malformed input is dropped and reported as a typed [`Fault`],
//!   never a panic.
//!
//! # File map
//!
//! | file | holds | papers |
//! |---|---|---|
//! | `mod.rs` | the `Replica` struct, constructors, accessors, the `Protocol` dispatch | — |
//! | `durable.rs` | the durable records, their fold ([`Durable`]) and the restart ([`Replica::recover`]) | PBFT's stable log; durable-vote rule |
//! | [`order`] | the ordering core: per-slot agreement, view, watermarks, decision procedure | Mod-SMaRt normal phase; PBFT OSDI'99 §4.2, TOCS'02 §4.5.2 |
//! | `request.rs` | client requests, forwarding, read-only requests, request timers, the pending queue, batching | BFT-SMaRt request handling; PBFT OSDI'99 §4.1 |
//! | `execute.rs` | execution in slot order, the client table (FIFO, exactly-once, reply cache), replies, snapshots | PBFT's last-reply table |
//! | `checkpoint.rs` | checkpoints, certificates, stabilization, watermarks | PBFT OSDI'99 §4.3 |
//! | `transfer.rs` | state transfer in verified, resumable chunks; log transfer; retransmission of stuck votes (fetch timer) | PBFT and BFT-SMaRt state transfer |
//! | `sync.rs` | the synchronization phase (STOP / STOP-DATA / SYNC) | Mod-SMaRt synchronization phase; PBFT OSDI'99 §4.4, TOCS'02 §4.5 |
//! | `reconfig.rs` | reconfiguration: the signature check at the door, execution of a `ConfigCert`, the fence and installation at the boundary, joining and retired replicas, per-epoch checkpoint signers | BFT-SMaRt reconfiguration; Lamport, Malkhi & Zhou |
//! | `tentative.rs` | optional tentative execution of a prepared slot, between a snapshot and its restore | WHEAT; PBFT OSDI'99 §5.1 |

#[cfg(test)]
mod batch_time;
mod checkpoint;
mod durable;
mod execute;
#[cfg(test)]
mod hostile;
pub mod order;
mod pending;
mod reconfig;
mod request;
mod sync;
mod tentative;
#[cfg(test)]
mod testkit;
mod transfer;

pub use durable::{Change, Durable, DurableSlot, Record, SlotVotes};
pub use order::Status;
pub use reconfig::{EpochState, ReconfigResult};

use crate::fault::Fault;
use crate::message::*;
use crate::params::{GroupInfo, Params};
use byzscale_core::crypto::Digest;
use byzscale_core::service::Service;
use byzscale_core::{Addr, ClientId, Cx, NodeId, Priority, Protocol};
use checkpoint::CkptState;
use execute::ClientState;
use order::{Event, Ordering, Promise};
use pending::PendingTable;
use request::MustSign;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use transfer::Transfer;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Request,
    ViewChange,
    Batch,
    Fetch,
}

#[derive(Debug)]
pub enum Input {
    /// Operator (or test) asks this replica to suspect the current leader.
    Suspect,
}

#[derive(Debug, Clone)]
pub enum Output {
    /// Slot decided (emitted once per slot, in slot order, at execution).
    Decided {
        slot: Slot,
        view: View,
        digest: Digest,
        batch: Batch,
    },
    /// Entered `view` with `leader` after a synchronization phase.
    ViewChanged { view: View, leader: NodeId },
    /// This replica asked to leave its view.
    Suspected { view: View },
    /// A checkpoint became stable.
    Stable { slot: Slot, state: Digest },
    /// The state was replaced by a snapshot from other replicas.
    StateTransferred { slot: Slot },
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub view: View,
    pub executed: Slot,
    pub low: Slot,
    pub pending: usize,
    pub decided_slots: u64,
    pub executed_requests: u64,
    pub view_changes: u64,
    pub state_transfers: u64,
    /// State chunks verified and kept (each chunk of a transfer once).
    pub state_chunks: u64,
    /// FETCH-CHUNK requests sent.
    pub state_chunk_requests: u64,
    pub faults: u64,
    /// Entries in the client table (replicated state), their bytes, and
    /// the most bytes it ever held.
    pub clients: usize,
    pub client_bytes: usize,
    pub client_bytes_peak: usize,
    /// Bytes of pending requests (local to the replica), and the most ever.
    pub pending_bytes: usize,
    pub pending_bytes_peak: usize,
    /// Client entries expired at checkpoints, and requests refused because
    /// the client table was full.
    pub clients_expired: u64,
    pub clients_refused: u64,
    /// Slots run tentatively (`tentative.rs`).
    pub tentative_slots: u64,
    /// The configuration installed (`reconfig.rs`).
    pub epoch: u64,
}

pub struct Replica<S: Service> {
    me: NodeId,
    idx: usize,
    g: GroupInfo,
    p: Params,
    service: S,

    /// The ordering core: view, status, watermarks, per-slot agreement.
    order: Ordering<Batch>,

    // requests (request.rs)
    pending: PendingTable,
    queue: VecDeque<ReqId>,
    proposed: BTreeSet<ReqId>,
    /// Clients whose ordered requests must carry a signature here (see
    /// `request.rs`, partial-authenticator poisoning).
    must_sign: MustSign,
    /// Read-only requests waiting until the executed slot reaches the mark
    /// (the highest slot accepted when they arrived). See `on_request`.
    deferred_reads: VecDeque<(Slot, Request)>,
    request_timer: bool,
    batch_timer: bool,

    // execution (execute.rs)
    clients: BTreeMap<ClientId, ClientState>,
    /// Bytes of `clients` (see [`execute::entry_bytes`]), and the most ever.
    client_bytes: usize,
    client_bytes_peak: usize,
    /// Sessions below it are over for a client without an entry (replicated
    /// state, in the snapshot; see `execute.rs`).
    session_floor: Slot,
    /// The agreed time of the last executed batch, ms since the Unix epoch
    /// (replicated state, in the snapshot; see `execute.rs`, "Batch time").
    batch_time: u64,
    /// The highest timestamp of a batch this replica adopted or proposed
    /// (local): a leader never stamps below it.
    time_high: u64,
    /// The (view, slot) last run tentatively (`tentative.rs`).
    tentative_last: tentative::TentativeMark,

    // checkpoints (checkpoint.rs)
    ckpts: BTreeMap<Slot, CkptState>,
    stable: Option<CheckpointCert>,
    stable_snapshot: Option<Vec<u8>>,
    /// The manifest served for the stable snapshot at a slot (`None`: the
    /// snapshot held is not the certified one), computed on the first request.
    serving: Option<(Slot, Option<Manifest>)>,
    /// The state transfer in progress (transfer.rs).
    fetching: Option<Transfer>,

    // synchronization phase (sync.rs)
    stop_sent: View,
    /// The STOP-DATA this replica signed last (sent again to a leader that asks).
    my_stop_data: Option<StopData>,
    stops: BTreeMap<View, BTreeSet<usize>>,
    stopdata: BTreeMap<View, BTreeMap<NodeId, StopData>>,
    last_sync: Option<(View, Vec<StopData>)>,
    view_hints: BTreeMap<usize, View>,
    vc_attempts: u32,

    // transfer (transfer.rs)
    fetch_timer: bool,
    executed_at_fetch: Slot,
    /// Restarted from a disk ([`Replica::recover`]): at start, ask the
    /// others for the decisions after what it replayed.
    recovered: bool,
    /// Fetch ticks left in which a restarted replica asks again (its
    /// request, or the answers, may be lost, and an idle group sends it
    /// nothing else).
    asks_left: u32,

    /// The configurations (reconfig.rs).
    epochs: reconfig::Epochs,

    stats: Stats,
}

type Ctx<'a, S> = Cx<'a, Replica<S>>;

impl<S: Service> Replica<S> {
    /// A replica at position `g.index_of(me)` with a fresh service.
    pub fn new(me: NodeId, g: GroupInfo, p: Params, service: S) -> Self {
        let idx = g
            .index_of(me)
            .expect("replica must be a member of its group");
        Replica {
            me,
            idx,
            order: Ordering::new(g.clone(), idx, p.window),
            epochs: reconfig::Epochs::new(g.clone()),
            g,
            p,
            service,
            pending: PendingTable::default(),
            queue: VecDeque::new(),
            proposed: BTreeSet::new(),
            must_sign: MustSign::default(),
            deferred_reads: VecDeque::new(),
            request_timer: false,
            batch_timer: false,
            clients: BTreeMap::new(),
            client_bytes: 0,
            client_bytes_peak: 0,
            session_floor: 0,
            batch_time: 0,
            time_high: 0,
            tentative_last: None,
            ckpts: BTreeMap::new(),
            stable: None,
            stable_snapshot: None,
            serving: None,
            fetching: None,
            stop_sent: 0,
            my_stop_data: None,
            stops: BTreeMap::new(),
            stopdata: BTreeMap::new(),
            last_sync: None,
            view_hints: BTreeMap::new(),
            vc_attempts: 0,
            fetch_timer: false,
            executed_at_fetch: 0,
            recovered: false,
            asks_left: 0,
            stats: Stats::default(),
        }
    }

    pub fn view(&self) -> View {
        self.order.view()
    }
    pub fn status(&self) -> Status {
        self.order.status()
    }
    pub fn executed(&self) -> Slot {
        self.order.delivered()
    }
    pub fn is_leader(&self) -> bool {
        self.order.is_leader()
    }
    pub fn service(&self) -> &S {
        &self.service
    }
    pub fn group(&self) -> &GroupInfo {
        &self.g
    }
    /// Client `c`'s entry in the replicated client table: its session and
    /// the last number executed in it (a restarted submitter that must not
    /// reuse its numbers picks a later session from it).
    pub fn client_session(&self, c: ClientId) -> Option<(u64, u64)> {
        self.clients.get(&c).map(|e| (e.session, e.last))
    }
    pub fn stats(&self) -> Stats {
        Stats {
            view: self.order.view(),
            executed: self.order.delivered(),
            low: self.order.low(),
            pending: self.pending.len(),
            clients: self.clients.len(),
            client_bytes: self.client_bytes,
            client_bytes_peak: self.client_bytes_peak,
            pending_bytes: self.pending.bytes().0,
            pending_bytes_peak: self.pending.bytes().1,
            ..self.stats
        }
    }

    fn others(&self) -> Vec<Addr> {
        self.g
            .members
            .iter()
            .filter(|m| **m != self.me)
            .map(|m| Addr::Node(*m))
            .collect()
    }

    fn fault(&mut self, cx: &mut Ctx<S>, who: Addr, kind: Fault, detail: String) {
        self.stats.faults += 1;
        tracing::warn!(replica = %self.me, peer = %who, kind = kind.name(), %detail, "fault");
        cx.fault(who, kind, detail);
    }

    fn quorum(&self, members: &BTreeSet<usize>) -> bool {
        self.g.qs.is_quorum(members.iter().copied())
    }

    fn weak(&self, members: &BTreeSet<usize>) -> bool {
        self.g.qs.is_weak(members.iter().copied())
    }

    /// A PROPOSE, WRITE or ACCEPT from the member at `from`: into the core,
    /// with the request checks a proposed batch needs.
    fn on_order(&mut self, from: usize, msg: order::Message<Batch>, cx: &mut Ctx<S>) {
        self.note_view_hint(from, msg.view(), cx);
        let crypto = cx.crypto();
        let (p, g, idx, pending) = (&self.p, &self.g, self.idx, &self.pending);
        let clock = (self.batch_time, cx.wall_ms());
        let mut unauthenticated = None;
        let events = self.order.on_message(from, msg, crypto, |batch| {
            execute::check_time(batch.time_ms, clock, p.max_clock_skew)?;
            request::validate_batch(batch, p, g, idx, pending, crypto).map_err(|e| {
                unauthenticated = e.unauthenticated;
                e.detail
            })
        });
        if let Some(client) = unauthenticated {
            self.require_signature(client);
        }
        self.apply(events, cx);
    }

    /// Carry out what the ordering core asked for, in order.
    fn apply(&mut self, events: Vec<Event<Batch>>, cx: &mut Ctx<S>) {
        for e in events {
            match e {
                Event::Persist(p) => cx.persist(p.into()),
                Event::Multicast(m) => cx.multicast(self.others(), m.into()),
                Event::Adopted(slot) => {
                    if let Some(batch) = self.order.proposal(slot) {
                        self.time_high = self.time_high.max(batch.time_ms);
                    }
                    // a slot executed already (a view change re-accepts
                    // it) proposes nothing more: its requests ran or were
                    // skipped, and one skipped must be proposed again
                    if slot <= self.executed() {
                        continue;
                    }
                    if let Some(batch) = self.order.proposal(slot) {
                        self.proposed.extend(batch.requests.iter().map(Request::id));
                    }
                }
                Event::Decided(_) => {
                    self.stats.decided_slots += 1;
                    self.execute_ready(cx);
                }
                Event::Lagging => self.arm_fetch(cx),
                Event::Fault {
                    culprit,
                    kind,
                    detail,
                } => self.fault(cx, Addr::Node(culprit), kind, detail),
            }
        }
        // after the events: the ACCEPT record precedes a tentative reply
        self.execute_tentative(cx);
    }
}

impl From<Promise<Batch>> for Record {
    fn from(p: Promise<Batch>) -> Self {
        match p {
            Promise::Proposal {
                view,
                slot,
                digest,
                value,
            } => Record::Proposal {
                view,
                slot,
                digest,
                batch: value,
            },
            Promise::Accept { view, slot, digest } => Record::Accept { view, slot, digest },
        }
    }
}

impl From<order::Message<Batch>> for Message {
    fn from(m: order::Message<Batch>) -> Self {
        match m {
            order::Message::Propose { view, slot, value } => Message::Propose {
                view,
                slot,
                batch: value,
            },
            order::Message::Write { view, slot, digest } => Message::Write { view, slot, digest },
            order::Message::Accept { view, slot, digest } => Message::Accept { view, slot, digest },
        }
    }
}

impl<S: Service> Protocol for Replica<S> {
    type Message = Message;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = Record;

    fn priority(msg: &Message) -> Priority {
        msg.priority()
    }

    /// After a restart ([`Replica::recover`]; a new replica does nothing
    /// here): announce the checkpoints passed while replaying, fetch the
    /// stable checkpoint's state if it is missing, retransmit its own votes
    /// for the slots it worked on, and, recovered in a synchronization phase,
    /// ask again for the view it was moving to (its STOP and STOP-DATA may
    /// never have reached the others).
    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        if self.epochs.retired {
            return;
        }
        self.announce_replayed_checkpoints(cx);
        if let Some(t) = &self.fetching {
            let slot = t.cert.slot;
            cx.multicast(self.others(), Message::FetchState { slot });
            self.arm_fetch(cx);
        }
        if self.order.highest_seen() > self.executed() {
            self.arm_fetch(cx);
        }
        self.ask_what_was_missed(cx);
        if let Some(view) = self.recovering_change() {
            cx.multicast(self.others(), Message::Stop { view });
            self.send_stop_data(view, cx);
        }
    }

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        if self.epochs.retired {
            return;
        }
        match input {
            Input::Suspect => self.on_suspect(cx),
        }
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        let msg = match msg {
            _ if self.epochs.retired && !msg.is_fetch() => return,
            Message::Request(req) => return self.on_request(from, req, cx),
            Message::SessionQuery { client, nonce } => {
                return self.on_session_query(from, client, nonce, cx)
            }
            Message::FetchConfig { epoch } => return self.on_fetch_config(from, epoch, cx),
            msg => msg,
        };
        if !self.admits(&msg) {
            return;
        }
        let Some(idx) = from.node().and_then(|n| self.g.index_of(n)) else {
            if self.g.admin().is_some() && from.node().is_some() {
                // with reconfiguration on, most likely a replica of an
                // epoch not installed here yet (`reconfig.rs`)
                tracing::debug!(replica = %self.me, peer = %from, kind = msg.kind(), "message from a non-member");
                return;
            }
            let detail = format!("{} from a non-member", msg.kind());
            self.fault(cx, from, Fault::NotAMember, detail);
            return;
        };
        if idx == self.idx {
            return; // our own messages are handled locally; a copy is a twin or replay
        }
        if self.epochs.joining && !self.joining_takes(idx, &msg, cx) {
            return;
        }
        match msg {
            Message::Request(_) | Message::SessionQuery { .. } | Message::FetchConfig { .. } => {
                unreachable!("handled above")
            }
            Message::Forward(reqs) => self.on_forward(idx, reqs, cx),
            Message::Reply(_)
            | Message::TentativeReply(_)
            | Message::Refused { .. }
            | Message::SessionInfo { .. }
            | Message::NewEpoch { .. } => {
                let detail = "reply sent to a replica".into();
                self.fault(cx, from, Fault::Unexpected, detail)
            }
            Message::Propose { view, slot, batch } => {
                let value = batch;
                self.on_order(idx, order::Message::Propose { view, slot, value }, cx)
            }
            Message::Write { view, slot, digest } => {
                self.on_order(idx, order::Message::Write { view, slot, digest }, cx)
            }
            Message::Accept { view, slot, digest } => {
                self.on_order(idx, order::Message::Accept { view, slot, digest }, cx)
            }
            Message::Checkpoint { slot, state, sig } => {
                self.on_checkpoint(idx, slot, state, sig, cx)
            }
            Message::Stop { view } => self.on_stop(idx, view, cx),
            Message::StopData(sd) => self.on_stop_data(idx, sd, cx),
            Message::Sync { view, stops } => self.on_sync(idx, view, stops, cx),
            Message::FetchSync { view } => self.on_fetch_sync(idx, view, cx),
            Message::FetchState { slot } => self.on_fetch_state(idx, slot, cx),
            Message::State { cert, manifest } => self.on_state(idx, cert, manifest, cx),
            Message::FetchLog { from: f, to } => self.on_fetch_log(idx, f, to, cx),
            Message::Log { entries } => self.on_log(idx, entries, cx),
            Message::FetchChunk { slot, index } => self.on_fetch_chunk(idx, slot, index, cx),
            Message::Chunk { slot, index, bytes } => self.on_chunk(idx, slot, index, bytes, cx),
            Message::ConfigProof { certs } => self.on_config_proof(idx, certs, cx),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        if self.epochs.retired {
            return;
        }
        if self.epochs.joining {
            // no votes, no suspicions before it caught up: only fetches
            if timer == Timer::Fetch && !self.joining_tick(cx) {
                self.on_fetch_timer(cx);
            }
            return;
        }
        match timer {
            Timer::Request => self.on_request_timer(cx),
            Timer::ViewChange => self.on_view_change_timer(cx),
            Timer::Batch => self.on_batch_timer(cx),
            Timer::Fetch => self.on_fetch_timer(cx),
        }
    }
}
