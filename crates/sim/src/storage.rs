//! The storage model: what a node's disk keeps across its crashes.
//!
//! A protocol asks for durability with `Effect::Persist` records. A
//! [`ProtocolActor`](crate::engine::ProtocolActor) given a disk
//! ([`ProtocolActor::with_disk`](crate::engine::ProtocolActor::with_disk))
//! does what the tokio runtime and the node's persister do
//! (`crates/net/src/runtime.rs`, "Durable before it leaves"):
//!
//! - records are *written* at once, in emission order, and become *synced* by
//!   a group commit: an fsync starts when a step ends with records waiting
//!   and none is running, covers every record written up to then, and takes a
//!   latency drawn from the [`StorageModel`] (virtual time, the node's RNG);
//!   records written meanwhile wait for the next one, which starts when it
//!   completes;
//! - a send that follows a record *in its step* is held until that record is
//!   synced (and so is every record before it); after an `Effect::Barrier`
//!   the sends of its step wait for every record written so far; sends of a
//!   step that wrote no record (and no barrier) before them leave at once; outputs keep their order and wait for
//!   every record written before them. The protocol keeps running meanwhile.
//!
//! A crash ([`Disk::crash`], called by the engine through the node's
//! [`Recovery`]) keeps every synced record. Of the records written but not
//! synced, the model keeps either none or, with
//! [`StorageModel::torn_tail`], a random prefix (the pages that reached the
//! platter): the first record not kept is torn and lost with everything
//! after it, never half-applied (a checksummed log). Keeping a prefix is a
//! state the runtime can reach too (an fsync completes, then the node dies
//! before its held sends leave), so a protocol must survive it.
//!
//! The disk keeps the *fold* of its synced records (`fold`, applied in
//! emission order; a protocol's own, e.g. the SMR replica's `Durable`), so its
//! memory is bounded like the real storage's. A restart builds the node's new
//! actor from that fold ([`FromDisk`], a scenario-supplied function), through
//! [`Sim::set_recovery`](crate::engine::Sim::set_recovery) and
//! [`Sim::recover`](crate::engine::Sim::recover).

use crate::engine::{Actor, ActorCx, BoxActor, NodeIdx, ProtocolActor, Sim};
use byzscale_core::crypto::Crypto;
use byzscale_core::protocol::{Cx, Effect, Fault, FaultKind, Protocol};
use byzscale_core::protocol::{Time, MICROS, MILLIS};
use byzscale_core::Addr;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

/// How a disk behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StorageModel {
    /// A group commit takes a latency drawn uniformly from this range.
    pub fsync_min: Time,
    pub fsync_max: Time,
    /// A crash keeps a random prefix of the written, unsynced records
    /// (otherwise none).
    pub torn_tail: bool,
}

impl StorageModel {
    /// A flash disk: group commits of 0.2 to 2 ms; a crash keeps a random
    /// prefix of what was written but not synced.
    pub fn ssd() -> Self {
        StorageModel {
            fsync_min: 200 * MICROS,
            fsync_max: 2 * MILLIS,
            torn_tail: true,
        }
    }

    /// Every group commit takes `fsync`; a crash keeps only synced records.
    pub fn fixed(fsync: Time) -> Self {
        StorageModel {
            fsync_min: fsync,
            fsync_max: fsync,
            torn_tail: false,
        }
    }
}

/// What happened to one disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskStats {
    /// Records written.
    pub records: u64,
    /// Group commits completed.
    pub syncs: u64,
    /// Most records one group commit made durable.
    pub largest_sync: u64,
    pub crashes: u64,
    /// Written records a crash lost.
    pub lost: u64,
    /// Unsynced records a crash kept (a torn tail's intact prefix).
    pub kept_unsynced: u64,
}

/// One node's disk: the fold `S` of its synced records of type `R`, and the
/// records written but not yet synced (see the module docs).
pub struct Disk<R, S> {
    model: StorageModel,
    state: S,
    fold: fn(&mut S, R),
    unsynced: VecDeque<R>,
    written: u64,
    synced: u64,
    /// The end (a count of records written) of the group commit running.
    in_flight: Option<u64>,
    stalled: bool,
    stats: DiskStats,
}

/// A disk shared by the node's actor (which writes) and its recovery (which
/// reads it after a crash).
pub type SharedDisk<R, S> = Rc<RefCell<Disk<R, S>>>;

impl<R, S> Disk<R, S> {
    /// An empty disk whose synced records fold into `state` with `fold`.
    pub fn new(model: StorageModel, state: S, fold: fn(&mut S, R)) -> Self {
        Disk {
            model,
            state,
            fold,
            unsynced: VecDeque::new(),
            written: 0,
            synced: 0,
            in_flight: None,
            stalled: false,
            stats: DiskStats::default(),
        }
    }

    /// [`Disk::new`], shared.
    pub fn shared(model: StorageModel, state: S, fold: fn(&mut S, R)) -> SharedDisk<R, S> {
        Rc::new(RefCell::new(Self::new(model, state, fold)))
    }

    /// The fold of the synced records: what a crash now would keep at least.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Records written but not synced.
    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    /// While stalled, group commits never complete (a stuck disk).
    pub fn stall(&mut self, stalled: bool) {
        self.stalled = stalled;
    }

    pub fn model(&self) -> StorageModel {
        self.model
    }

    pub fn stats(&self) -> DiskStats {
        self.stats
    }

    /// Power is lost: keep the synced records and, with a torn tail, a
    /// random prefix of the unsynced ones; lose the rest.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng) {
        let n = self.unsynced.len();
        let keep = if self.model.torn_tail && n > 0 {
            rng.gen_range(0..=n)
        } else {
            0
        };
        for r in self.unsynced.drain(..keep) {
            (self.fold)(&mut self.state, r);
        }
        self.stats.crashes += 1;
        self.stats.kept_unsynced += keep as u64;
        self.stats.lost += (n - keep) as u64;
        self.unsynced.clear();
        self.synced += keep as u64;
        self.written = self.synced;
        self.in_flight = None;
    }
}

/// What a node's actor needs of its disk (object safe, so the actor does not
/// name the fold).
pub trait Storage<R> {
    /// Write `r` after every record written before.
    fn write(&mut self, r: R);
    /// Records written so far (over every incarnation).
    fn written(&self) -> u64;
    /// Records synced so far.
    fn synced(&self) -> u64;
    /// Start a group commit of everything written, unless one is running or
    /// nothing waits; its latency.
    fn begin_sync(&mut self, rng: &mut ChaCha8Rng) -> Option<Time>;
    /// The running group commit completes (unless the disk is stalled, when
    /// nothing becomes durable and the next one retries).
    fn end_sync(&mut self);
}

impl<R, S> Storage<R> for Disk<R, S> {
    fn write(&mut self, r: R) {
        self.unsynced.push_back(r);
        self.written += 1;
        self.stats.records += 1;
    }
    fn written(&self) -> u64 {
        self.written
    }
    fn synced(&self) -> u64 {
        self.synced
    }
    fn begin_sync(&mut self, rng: &mut ChaCha8Rng) -> Option<Time> {
        if self.in_flight.is_some() || self.written == self.synced {
            return None;
        }
        self.in_flight = Some(self.written);
        let (lo, hi) = (self.model.fsync_min, self.model.fsync_max);
        Some(rng.gen_range(lo..=hi.max(lo)).max(1))
    }
    fn end_sync(&mut self) {
        let Some(end) = self.in_flight.take() else {
            return;
        };
        if self.stalled {
            return;
        }
        let n = end - self.synced;
        for r in self.unsynced.drain(..n as usize) {
            (self.fold)(&mut self.state, r);
        }
        self.synced = end;
        self.stats.syncs += 1;
        self.stats.largest_sync = self.stats.largest_sync.max(n);
    }
}

/// A send or output held until a record is synced.
enum Held<M, O> {
    Send(Addr, M),
    Multicast(Vec<Addr>, M),
    Output(O),
}

/// The timer key of a node's group commit (below the adversaries' keys,
/// above any key a [`ProtocolActor`](crate::engine::ProtocolActor) hands out).
pub const SYNC_TIMER: u64 = crate::engine::ADVERSARY_TIMER_BASE - 1;

/// The durable-before-send rule of one actor over its disk (see the module
/// docs): what a step persisted, and the sends and outputs waiting for it.
pub struct Journal<R, M, O> {
    disk: Rc<RefCell<dyn Storage<R>>>,
    held: VecDeque<(u64, Held<M, O>)>,
    /// Records written when the current step began.
    step_start: u64,
}

impl<R, M, O> Journal<R, M, O> {
    pub fn new(disk: Rc<RefCell<dyn Storage<R>>>) -> Self {
        Journal {
            disk,
            held: VecDeque::new(),
            step_start: 0,
        }
    }

    /// A protocol step begins.
    pub fn begin_step(&mut self) {
        self.step_start = self.disk.borrow().written();
    }

    pub fn persist(&mut self, r: R) {
        self.disk.borrow_mut().write(r);
    }

    /// `Effect::Barrier`: the sends that follow in this step wait for every
    /// record written so far (as if all of them were this step's).
    pub fn barrier(&mut self) {
        self.step_start = 0;
    }

    /// Sends and outputs waiting for their records.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Send `msg` to `to`, or hold it if a record of this step precedes it.
    pub fn send(&mut self, cx: &mut ActorCx<'_, M, O>, to: Addr, msg: M) {
        let after = self.after_step_records();
        self.emit(cx, after, Held::Send(to, msg));
    }

    pub fn multicast(&mut self, cx: &mut ActorCx<'_, M, O>, to: Vec<Addr>, msg: M) {
        let after = self.after_step_records();
        self.emit(cx, after, Held::Multicast(to, msg));
    }

    /// Output `o` once every record written so far is synced.
    pub fn output(&mut self, cx: &mut ActorCx<'_, M, O>, o: O) {
        let after = self.disk.borrow().written();
        self.emit(cx, after, Held::Output(o));
    }

    /// The step ended: start a group commit if records wait and none runs.
    pub fn end_step(&mut self, cx: &mut ActorCx<'_, M, O>) {
        let latency = self.disk.borrow_mut().begin_sync(cx.rng());
        if let Some(after) = latency {
            cx.set_timer(SYNC_TIMER, after);
        }
    }

    /// The group commit's timer fired: release what it made durable and
    /// start the next one.
    pub fn on_sync(&mut self, cx: &mut ActorCx<'_, M, O>) {
        self.disk.borrow_mut().end_sync();
        self.release(cx);
        self.end_step(cx);
    }

    fn after_step_records(&self) -> u64 {
        let written = self.disk.borrow().written();
        if written > self.step_start {
            written
        } else {
            0
        }
    }

    fn emit(&mut self, cx: &mut ActorCx<'_, M, O>, after: u64, e: Held<M, O>) {
        if after > self.disk.borrow().synced() {
            self.held.push_back((after, e));
        } else {
            Self::perform(cx, e);
        }
    }

    fn release(&mut self, cx: &mut ActorCx<'_, M, O>) {
        let synced = self.disk.borrow().synced();
        while self.held.front().is_some_and(|(w, _)| *w <= synced) {
            let (_, e) = self.held.pop_front().expect("non-empty");
            Self::perform(cx, e);
        }
    }

    fn perform(cx: &mut ActorCx<'_, M, O>, e: Held<M, O>) {
        match e {
            Held::Send(to, msg) => cx.send(to, msg),
            Held::Multicast(to, msg) => cx.multicast(to, msg),
            Held::Output(o) => cx.output(o),
        }
    }
}

/// How the engine crashes and restarts a node with a disk
/// ([`Sim::set_recovery`](crate::engine::Sim::set_recovery)).
pub trait Recovery<M, I, O> {
    /// Power is lost (the engine calls this on every crash of the node).
    fn crash(&mut self, rng: &mut ChaCha8Rng);
    /// The node's next incarnation, built from what its disk kept.
    fn restart(&mut self) -> BoxActor<M, I, O>;
}

/// A [`Recovery`] from a [`SharedDisk`]: `make` builds the new actor from the
/// fold of the surviving records, writing to the same disk. If it cannot
/// (a protocol that fails to recover from its own records), the node comes
/// back as [`Unrecoverable`], which reports a [`StorageFault::Unrecoverable`]
/// (the run loop turns it into a violation) and does nothing else.
pub struct FromDisk<R, S, F> {
    disk: SharedDisk<R, S>,
    make: F,
}

impl<R, S, F> FromDisk<R, S, F> {
    pub fn new(disk: SharedDisk<R, S>, make: F) -> Self {
        FromDisk { disk, make }
    }
}

impl<R, S, F, M, I, O> Recovery<M, I, O> for FromDisk<R, S, F>
where
    F: FnMut(&S, &SharedDisk<R, S>) -> Result<BoxActor<M, I, O>, String>,
    M: 'static,
    I: 'static,
    O: 'static,
{
    fn crash(&mut self, rng: &mut ChaCha8Rng) {
        self.disk.borrow_mut().crash(rng);
    }
    fn restart(&mut self) -> BoxActor<M, I, O> {
        let disk = self.disk.clone();
        let state = disk.borrow();
        match (self.make)(state.state(), &self.disk) {
            Ok(a) => a,
            Err(reason) => Box::new(Unrecoverable { reason }),
        }
    }
}

impl<M, I, O> Sim<M, I, O>
where
    M: Clone + Serialize + 'static,
    I: 'static,
    O: 'static,
{
    /// Add a node whose protocol keeps its records on `disk` and restarts
    /// from it: `first` is its first incarnation, `recover` builds the
    /// protocol of a restart from what the disk kept, and `actor` adapts
    /// either to the simulation (e.g. [`ProtocolActor::replica`]).
    #[allow(clippy::too_many_arguments)]
    pub fn add_durable_node<P, S>(
        &mut self,
        addr: Addr,
        crypto: Crypto,
        region: usize,
        disk: SharedDisk<P::Record, S>,
        first: P,
        actor: impl Fn(P) -> ProtocolActor<P, I, O> + 'static,
        mut recover: impl FnMut(&S) -> Result<P, String> + 'static,
    ) -> NodeIdx
    where
        P: Protocol<Message = M> + 'static,
        S: 'static,
    {
        let idx = self.add_node(addr, crypto, actor(first).with_disk(disk.clone()), region);
        let restart = move |kept: &S, disk: &SharedDisk<P::Record, S>| {
            let p = recover(kept)?;
            Ok(Box::new(actor(p).with_disk(disk.clone())) as BoxActor<M, I, O>)
        };
        self.set_recovery(idx, FromDisk::new(disk, restart));
        idx
    }
}

byzscale_core::fault_kinds! {
    /// What the storage model reports.
    pub enum StorageFault {
        /// A node could not be rebuilt from what its disk kept.
        Unrecoverable => "unrecoverable",
    }
}

/// A node that failed to recover: it reports why at start and then does
/// nothing.
pub struct Unrecoverable {
    pub reason: String,
}

impl<M, I, O> Actor<M, I, O> for Unrecoverable {
    fn start(&mut self, cx: &mut ActorCx<'_, M, O>) {
        cx.fault(Fault {
            node: cx.me(),
            kind: StorageFault::Unrecoverable.as_static(),
            detail: self.reason.clone(),
        });
    }
    fn input(&mut self, _: I, _: &mut ActorCx<'_, M, O>) {}
    fn message(&mut self, _: Addr, _: M, _: &mut ActorCx<'_, M, O>) {}
    fn timer(&mut self, _: u64, _: &mut ActorCx<'_, M, O>) {}
}

/// A protocol whose records go to an instant, shared disk as it emits them
/// (no group commit, nothing lost): for tests that crash and restart a node
/// from everything it recorded, without the timing of [`Disk`].
pub struct Recorded<P: Protocol> {
    pub inner: P,
    pub disk: Rc<RefCell<Vec<P::Record>>>,
}

impl<P: Protocol> Recorded<P> {
    pub fn new(inner: P, disk: Rc<RefCell<Vec<P::Record>>>) -> Self {
        Recorded { inner, disk }
    }

    fn step(&mut self, cx: &mut Cx<'_, Self>, f: impl FnOnce(&mut P, &mut Cx<'_, P>)) {
        let ((), step) = cx.nested(|c| f(&mut self.inner, c));
        for e in step.effects {
            match e {
                Effect::Persist(r) => self.disk.borrow_mut().push(r),
                Effect::Barrier => {}
                Effect::Send { to, msg } => cx.send(to, msg),
                Effect::Multicast { to, msg } => cx.multicast(to, msg),
                Effect::SetTimer { timer, after } => cx.set_timer(timer, after),
                Effect::CancelTimer { timer } => cx.cancel_timer(timer),
                Effect::Output(o) => cx.output(o),
                Effect::Fault(f) => cx.report(f),
            }
        }
    }
}

impl<P: Protocol> Protocol for Recorded<P> {
    type Message = P::Message;
    type Input = P::Input;
    type Output = P::Output;
    type Timer = P::Timer;
    type Record = P::Record;
    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        self.step(cx, |p, c| p.on_start(c));
    }
    fn on_input(&mut self, i: P::Input, cx: &mut Cx<'_, Self>) {
        self.step(cx, |p, c| p.on_input(i, c));
    }
    fn on_message(&mut self, from: Addr, m: P::Message, cx: &mut Cx<'_, Self>) {
        self.step(cx, |p, c| p.on_message(from, m, c));
    }
    fn on_timer(&mut self, t: P::Timer, cx: &mut Cx<'_, Self>) {
        self.step(cx, |p, c| p.on_timer(t, c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuModel;
    use crate::engine::{Control, Observer};
    use crate::net_model::NetModel;
    use byzscale_core::crypto::{CryptoMode, Identity};
    use byzscale_core::protocol::Cx;
    use byzscale_core::NodeId;
    use serde::Deserialize;

    /// Writes journal entries and tells its peer about them.
    struct Writer {
        peer: Addr,
        /// The entries it holds (recovered ones included).
        entries: Vec<u64>,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Note(u64);

    #[derive(Debug)]
    enum In {
        /// Persist `n`, then tell the peer and output it.
        Write(u64),
        /// Persist every number of the range, one record each, then tell the peer.
        WriteAll(u64, u64),
        /// Tell the peer `n`, no record.
        Chat(u64),
        /// A barrier, then tell the peer `n` (no record).
        Settle(u64),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        Wrote(u64),
        Heard(u64),
    }

    impl Protocol for Writer {
        type Message = Note;
        type Input = In;
        type Output = Out;
        type Timer = ();
        type Record = u64;
        fn on_input(&mut self, input: In, cx: &mut Cx<'_, Self>) {
            match input {
                In::Write(n) => {
                    self.entries.push(n);
                    cx.persist(n);
                    cx.send(self.peer, Note(n));
                    cx.output(Out::Wrote(n));
                }
                In::WriteAll(a, b) => {
                    for n in a..b {
                        self.entries.push(n);
                        cx.persist(n);
                    }
                    cx.send(self.peer, Note(b));
                }
                In::Chat(n) => cx.send(self.peer, Note(n)),
                In::Settle(n) => {
                    cx.barrier();
                    cx.send(self.peer, Note(n));
                }
            }
        }
        fn on_message(&mut self, _: Addr, Note(n): Note, cx: &mut Cx<'_, Self>) {
            cx.output(Out::Heard(n));
        }
        fn on_timer(&mut self, _: (), _: &mut Cx<'_, Self>) {}
    }

    type D = SharedDisk<u64, Vec<u64>>;

    fn fold(v: &mut Vec<u64>, r: u64) {
        v.push(r);
    }

    fn addr(i: u32) -> Addr {
        Addr::Node(NodeId(i))
    }

    fn crypto(i: u32) -> Crypto {
        let id = |i: u32| Identity::from_seed([i as u8 + 1; 32]);
        let mut c = Crypto::new(addr(i), id(i), CryptoMode::Real);
        c.add_peer(addr(1 - i), id(1 - i).public()).unwrap();
        c
    }

    const HOP: Time = 50 * MICROS;

    /// Node 0 writes to `disk`; node 1 listens. Both restartable from disk 0.
    fn pair(seed: u64, model: StorageModel) -> (Sim<Note, In, Out>, D) {
        let net = NetModel::from_matrix(vec!["lan".into()], vec![vec![HOP]]).unwrap();
        let mut sim = Sim::new(seed, net, CpuModel::free());
        let disk: D = Disk::shared(model, Vec::new(), fold);
        let writer = |entries: Vec<u64>| Writer {
            peer: addr(1),
            entries,
        };
        let recover = move |kept: &Vec<u64>| Ok(writer(kept.clone()));
        let first = writer(Vec::new());
        let d = disk.clone();
        sim.add_durable_node(addr(0), crypto(0), 0, d, first, ProtocolActor::new, recover);
        let listener = Writer {
            peer: addr(0),
            entries: Vec::new(),
        };
        sim.add_node(addr(1), crypto(1), ProtocolActor::new(listener), 0);
        (sim, disk)
    }

    #[derive(Default)]
    struct Seen(Vec<(Time, Out)>);
    impl Observer<In, Out> for Seen {
        fn on_output(&mut self, at: Time, _: NodeIdx, _: Addr, o: Out, _: &mut Control<In>) {
            self.0.push((at, o));
        }
    }

    fn at(seen: &Seen, o: Out) -> Option<Time> {
        seen.0.iter().find(|(_, x)| *x == o).map(|(t, _)| *t)
    }

    #[test]
    fn a_send_after_a_record_waits_for_its_group_commit_and_others_do_not() {
        let (mut sim, disk) = pair(1, StorageModel::fixed(MILLIS));
        let w = NodeIdx(0);
        sim.schedule_input(0, w, In::Write(7));
        sim.schedule_input(10, w, In::Chat(8));
        let mut seen = Seen::default();
        sim.run_for(300 * MICROS, &mut seen);
        // the chat left at once; the note and the output wait for the fsync
        assert_eq!(at(&seen, Out::Heard(8)), Some(10 + HOP));
        assert_eq!(at(&seen, Out::Wrote(7)), None);
        assert_eq!(disk.borrow().unsynced(), 1);
        assert_eq!(sim.protocol::<Writer>(w).unwrap().entries, [7]);
        sim.run_for(2 * MILLIS, &mut seen);
        assert_eq!(at(&seen, Out::Wrote(7)), Some(MILLIS));
        assert_eq!(at(&seen, Out::Heard(7)), Some(MILLIS + HOP));
        assert_eq!(disk.borrow().state(), &[7]);
        assert_eq!(disk.borrow().stats().syncs, 1);
    }

    /// After a barrier a send waits for the records of earlier steps, in
    /// the group commit already running (no new one); with nothing
    /// unsynced it leaves at once.
    #[test]
    fn a_send_after_a_barrier_waits_for_earlier_records_without_a_commit_of_its_own() {
        let (mut sim, disk) = pair(1, StorageModel::fixed(MILLIS));
        let w = NodeIdx(0);
        sim.schedule_input(0, w, In::Write(7));
        sim.schedule_input(10, w, In::Settle(8));
        sim.schedule_input(10, w, In::Chat(9));
        sim.schedule_input(3 * MILLIS, w, In::Settle(10));
        let mut seen = Seen::default();
        sim.run_for(5 * MILLIS, &mut seen);
        assert_eq!(at(&seen, Out::Heard(9)), Some(10 + HOP));
        assert_eq!(at(&seen, Out::Heard(8)), Some(MILLIS + HOP));
        assert_eq!(at(&seen, Out::Heard(10)), Some(3 * MILLIS + HOP));
        let s = disk.borrow().stats();
        assert_eq!((s.records, s.syncs), (1, 1));
    }

    #[test]
    fn records_written_during_a_group_commit_share_the_next_one() {
        let (mut sim, disk) = pair(1, StorageModel::fixed(MILLIS));
        let w = NodeIdx(0);
        sim.schedule_input(0, w, In::Write(1));
        for (i, t) in [(2, 100), (3, 200), (4, 300)] {
            sim.schedule_input(t * MICROS, w, In::Write(i));
        }
        let mut seen = Seen::default();
        sim.run_for(5 * MILLIS, &mut seen);
        let s = disk.borrow().stats();
        assert_eq!((s.records, s.syncs, s.largest_sync), (4, 2, 3));
        for i in 2..=4 {
            assert_eq!(at(&seen, Out::Heard(i)), Some(2 * MILLIS + HOP));
        }
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_loses_the_rest_with_its_sends() {
        let (mut sim, disk) = pair(1, StorageModel::fixed(MILLIS));
        let w = NodeIdx(0);
        sim.schedule_input(0, w, In::Write(1));
        sim.schedule_input(1_500 * MICROS, w, In::WriteAll(2, 5));
        sim.crash(1_800 * MICROS, w);
        let mut seen = Seen::default();
        sim.run_for(5 * MILLIS, &mut seen);
        assert_eq!(disk.borrow().state(), &[1]);
        let s = disk.borrow().stats();
        assert_eq!((s.crashes, s.lost, s.kept_unsynced), (1, 3, 0));
        assert!(at(&seen, Out::Heard(5)).is_none(), "a held send left");
        // the restart rebuilds from the disk and writes after what it kept
        sim.recover(6 * MILLIS, w);
        sim.schedule_input(6 * MILLIS, w, In::Write(9));
        sim.run_for(5 * MILLIS, &mut seen);
        assert_eq!(sim.protocol::<Writer>(w).unwrap().entries, [1, 9]);
        assert_eq!(disk.borrow().state(), &[1, 9]);
        assert_eq!(at(&seen, Out::Heard(9)), Some(7 * MILLIS + HOP));
        assert_eq!(sim.stats().restarts, 1);
    }

    #[test]
    fn a_torn_tail_keeps_a_prefix_of_the_unsynced_records() {
        let model = StorageModel {
            torn_tail: true,
            ..StorageModel::fixed(MILLIS)
        };
        let mut kept = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let (mut sim, disk) = pair(seed, model);
            let w = NodeIdx(0);
            sim.schedule_input(0, w, In::WriteAll(0, 6));
            sim.crash(500 * MICROS, w);
            sim.run_for(MILLIS, &mut ());
            let d = disk.borrow();
            let n = d.state().len();
            assert_eq!(d.state(), &(0..n as u64).collect::<Vec<_>>());
            assert_eq!(d.stats().lost + d.stats().kept_unsynced, 6);
            kept.insert(n);
        }
        assert!(kept.len() >= 4, "prefix lengths {kept:?}");
        assert!(kept.contains(&0) || kept.contains(&1));
    }

    #[test]
    fn a_node_that_cannot_recover_reports_it_and_stays_inert() {
        let (mut sim, disk) = pair(1, StorageModel::fixed(MILLIS));
        let w = NodeIdx(0);
        let broken = |_: &Vec<u64>, _: &D| -> Result<BoxActor<Note, In, Out>, String> {
            Err("bad snapshot".into())
        };
        sim.set_recovery(w, FromDisk::new(disk, broken));
        sim.recover(MILLIS, w);
        sim.schedule_input(2 * MILLIS, w, In::Chat(1));
        let mut seen = Seen::default();
        sim.run_for(5 * MILLIS, &mut seen);
        assert!(seen.0.is_empty());
        let log = &sim.stats().fault_log;
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].kind.as_str(), log[0].detail.as_str()),
            ("unrecoverable", "bad snapshot")
        );
    }

    #[test]
    fn a_stalled_disk_holds_everything_until_it_recovers() {
        let (mut sim, disk) = pair(1, StorageModel::fixed(MILLIS));
        let w = NodeIdx(0);
        disk.borrow_mut().stall(true);
        sim.schedule_input(0, w, In::Write(1));
        let mut seen = Seen::default();
        sim.run_for(10 * MILLIS, &mut seen);
        assert!(seen.0.is_empty());
        disk.borrow_mut().stall(false);
        sim.run_for(2 * MILLIS, &mut seen);
        assert_eq!(at(&seen, Out::Wrote(1)), Some(11 * MILLIS));
    }
}
