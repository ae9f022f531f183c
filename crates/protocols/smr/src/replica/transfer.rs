//! Catching up: state transfer (a certified snapshot at a stable checkpoint,
//! PBFT's and BFT-SMaRt's state transfer), log transfer
//! (decided batches above it; a weak quorum of matching entries decides a
//! slot, see `order::Ordering::learn`), and the fetch timer that drives both
//! and re-sends this replica's own stuck votes. Deviation from PBFT: lost
//! normal-case messages are recovered by this retransmission, not only by a
//! view change.
//!
//! # State transfer in chunks
//!
//! Paper map: PBFT (Castro & Liskov OSDI'99 §4.3; TOCS'02 §6.2, state
//! transfer) and BFT-SMaRt's state transfer fetch the state of the newest
//! stable checkpoint, known from a certificate (a quorum of CHECKPOINT
//! signatures on its digest), from other replicas, and check what arrives
//! against that digest. PBFT partitions the state in a tree of pages and
//! fetches only the partitions whose digests differ; BFT-SMaRt asks one
//! replica for the state and the others for its hash.
//!
//! Here the certified digest is the hash of a [`Manifest`]: the snapshot's
//! length, the chunk size (`Params::state_chunk_bytes`, 1 MiB by default)
//! and the digest of each chunk. The exchange:
//!
//! ```text
//! fetcher ──FETCH-STATE(slot)──▶ all          (on stabilizing a checkpoint it lacks,
//! holder  ──STATE(cert, manifest)──▶ fetcher    or at each stalled fetch tick)
//! fetcher ──FETCH-CHUNK(slot, i)──▶ source     (up to 4 in flight, lowest missing first)
//! source  ──CHUNK(slot, i, bytes)──▶ fetcher
//! ```
//!
//! - A STATE is kept only if its certificate verifies (or names the target
//!   already verified), its manifest is well formed and describes at most
//!   `Params::max_state_bytes`, and it hashes to the certified digest; its
//!   sender is then a holder. Anything else is a `state-invalid` fault.
//! - A CHUNK is kept only if it has the length and digest its index has in
//!   the verified manifest, so the bytes a transfer holds never exceed the
//!   certified length. A mismatch is a `state-chunk-invalid` fault; its
//!   sender stops being a holder and the next holder is asked.
//! - The fetcher asks one source at a time (the holders in position order,
//!   cyclically). A fetch tick with no chunk verified in the last
//!   [`STALL_TICKS`] ticks moves to the next holder and asks everyone for
//!   STATE again (holders that restarted or were dropped come back).
//! - Resumption: verified chunks are kept across retries and changes of
//!   source; only missing chunks are asked again. They are not kept across a
//!   restart of the fetcher (the transfer starts over from its disk's stable
//!   checkpoint).
//! - A newer stable checkpoint during a transfer: the fetcher moves to it
//!   (PBFT and BFT-SMaRt fetch the newest state too). Finishing the older one
//!   is not an option here: a correct replica keeps the snapshot of its
//!   latest stable checkpoint only, so once the group has moved on, no
//!   correct holder of the older one may remain. Deviation: the verified
//!   chunks of the older target are reused where the newer manifest lists the
//!   same digest (content addressing; the unchanged prefix of a snapshot that
//!   grew at its end costs nothing again), the rest are dropped when the
//!   newer manifest arrives. A transfer must therefore finish within a few
//!   checkpoint intervals of the group's progress; the log after the
//!   checkpoint then comes by log transfer.
//! - Deviation: no partition tree. A manifest is 32 bytes per chunk (32 KiB
//!   for the largest default snapshot, 1 GiB), fetched once, so a Merkle tree
//!   with a proof per chunk (e.g. `rs_merkle`, or BLAKE3's own tree through
//!   `bao`) would save one round trip and little else, at the cost of a
//!   dependency and, for `bao`, an outboard of 6% of the state at every
//!   holder. PBFT's tree also lets a replica with a stale state fetch only
//!   what differs; the digest reuse above gives that for changes at the end.
//! - The chunk size is part of what the group agrees on: replicas with
//!   different `state_chunk_bytes` sign different digests for the same state
//!   (no stable checkpoint forms). `Params::validate` keeps a chunk and a
//!   manifest of the largest allowed snapshot under the frame limit.

use super::execute::Turn;
use super::order::Learned;
use super::{Ctx, Output, Record, Replica, Status, Timer};
use crate::fault::Fault;
use crate::message::*;
use byzscale_core::crypto::Digest;
use byzscale_core::service::Service;
use byzscale_core::Addr;
use std::collections::{BTreeMap, BTreeSet};

/// Most bytes of operations (plus 64 per request) one LOG carries.
const LOG_BYTES: usize = 4 << 20;

/// Chunks asked of one source at a time.
pub(super) const CHUNKS_IN_FLIGHT: usize = 4;

/// Fetch ticks without a verified chunk before the fetcher moves to another
/// holder.
pub(super) const STALL_TICKS: u32 = 2;

/// The fetcher's side of one state transfer (see the module docs).
#[derive(Debug)]
pub(super) struct Transfer {
    /// The stable checkpoint fetched (its certificate verified).
    pub(super) cert: CheckpointCert,
    /// Its manifest, once a holder sent one that hashes to `cert.state`.
    manifest: Option<Manifest>,
    /// Verified chunks by index.
    chunks: BTreeMap<u32, Vec<u8>>,
    /// Verified chunks of a target this one replaced, by digest, until this
    /// target's manifest arrives and takes those it lists.
    carried: BTreeMap<Digest, Vec<u8>>,
    /// Members that sent the verified manifest and no bad chunk since.
    holders: BTreeSet<usize>,
    /// The holder chunks are asked of.
    source: Option<usize>,
    /// Chunks asked of `source` and not verified yet.
    asked: BTreeSet<u32>,
    /// Verified chunks at the last fetch tick, and ticks since one arrived.
    at_tick: usize,
    stalled: u32,
}

impl Transfer {
    pub(super) fn new(cert: CheckpointCert) -> Self {
        Transfer {
            cert,
            manifest: None,
            chunks: BTreeMap::new(),
            carried: BTreeMap::new(),
            holders: BTreeSet::new(),
            source: None,
            asked: BTreeSet::new(),
            at_tick: 0,
            stalled: 0,
        }
    }

    /// The same transfer aimed at the newer checkpoint `cert`: verified
    /// chunks are carried by digest.
    fn retarget(mut self, cert: CheckpointCert) -> Self {
        let mut carried = std::mem::take(&mut self.carried);
        if let Some(m) = &self.manifest {
            for (i, bytes) in std::mem::take(&mut self.chunks) {
                carried.insert(m.chunks[i as usize], bytes);
            }
        }
        Transfer {
            carried,
            ..Transfer::new(cert)
        }
    }

    /// Take the verified manifest; carried chunks it lists become verified
    /// chunks, the others are dropped.
    fn adopt(&mut self, manifest: Manifest) {
        let carried = std::mem::take(&mut self.carried);
        for (i, d) in manifest.chunks.iter().enumerate() {
            if let Some(bytes) = carried.get(d) {
                if bytes.len() == manifest.span(i as u32).len() {
                    self.chunks.insert(i as u32, bytes.clone());
                }
            }
        }
        self.at_tick = self.chunks.len();
        self.manifest = Some(manifest);
    }

    fn complete(&self) -> bool {
        self.manifest
            .as_ref()
            .is_some_and(|m| self.chunks.len() == m.chunks.len())
    }

    /// Ask the next holder after the current source, from scratch.
    fn rotate(&mut self) {
        let after = self.source.map_or(0, |s| s + 1);
        self.source = self
            .holders
            .range(after..)
            .next()
            .or_else(|| self.holders.iter().next())
            .copied();
        self.asked.clear();
        self.stalled = 0;
    }

    /// One fetch tick: whether the transfer stalled (no manifest yet, or no
    /// chunk verified for [`STALL_TICKS`] ticks, after which the next holder
    /// is asked).
    fn tick(&mut self) -> bool {
        if self.manifest.is_none() {
            return true;
        }
        if self.chunks.len() != self.at_tick {
            self.at_tick = self.chunks.len();
            self.stalled = 0;
            return false;
        }
        self.stalled += 1;
        if self.stalled < STALL_TICKS {
            return false;
        }
        self.rotate();
        true
    }

    /// The snapshot, once complete.
    fn assemble(&self) -> Vec<u8> {
        let len = self.manifest.as_ref().map_or(0, |m| m.len as usize);
        let mut out = Vec::with_capacity(len);
        for c in self.chunks.values() {
            out.extend_from_slice(c);
        }
        out
    }

    /// Bytes held for this transfer (verified and carried chunks).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        let chunks: usize = self.chunks.values().map(Vec::len).sum();
        chunks + self.carried.values().map(Vec::len).sum::<usize>()
    }
}

/// Fetch ticks after a restart in which the replica asks again for the
/// decisions after what it executed ([`Replica::ask_what_was_missed`]).
const ASKS_AFTER_RESTART: u32 = 3;

impl<S: Service> Replica<S> {
    /// The member at `from` works on `slot`: fetch if the group is ahead of us.
    pub(super) fn note_slot(&mut self, from: usize, slot: Slot, cx: &mut Ctx<S>) {
        if self.order.note_slot(from, slot) {
            self.arm_fetch(cx);
        }
    }

    pub(super) fn arm_fetch(&mut self, cx: &mut Ctx<S>) {
        if !self.fetch_timer {
            self.fetch_timer = true;
            self.executed_at_fetch = self.executed();
            cx.set_timer(Timer::Fetch, self.p.fetch_interval);
        }
    }

    /// Serve the manifest of our stable checkpoint if it is at least `slot`.
    pub(super) fn on_fetch_state(&mut self, from: usize, slot: Slot, cx: &mut Ctx<S>) {
        if let Some((cert, manifest)) = self.served(cx) {
            if cert.slot >= slot {
                let msg = Message::State { cert, manifest };
                cx.send(Addr::Node(self.g.members[from]), msg);
            }
        }
    }

    /// Serve chunk `index` of our stable snapshot at `slot`.
    pub(super) fn on_fetch_chunk(&mut self, from: usize, slot: Slot, index: u32, cx: &mut Ctx<S>) {
        let Some((cert, manifest)) = self.served(cx) else {
            return;
        };
        let Some(snap) = &self.stable_snapshot else {
            return;
        };
        if cert.slot != slot || index as usize >= manifest.chunks.len() {
            return;
        }
        let bytes = snap[manifest.span(index)].to_vec();
        let msg = Message::Chunk { slot, index, bytes };
        cx.send(Addr::Node(self.g.members[from]), msg);
    }

    /// The certificate and manifest of our stable snapshot, computed once
    /// per stable checkpoint (a requester cannot make us hash it again).
    fn served(&mut self, cx: &Ctx<S>) -> Option<(CheckpointCert, Manifest)> {
        let (cert, snap) = (self.stable.as_ref()?, self.stable_snapshot.as_ref()?);
        if self.serving.as_ref().map(|(s, _)| *s) != Some(cert.slot) {
            let m = Manifest::of(cx.crypto(), snap, self.p.state_chunk_bytes);
            // the snapshot we hold is the certified one (else serve nothing)
            let ok = m.digest(cx.crypto()) == cert.state;
            self.serving = Some((cert.slot, ok.then_some(m)));
        }
        let (_, m) = self.serving.as_ref()?;
        Some((cert.clone(), m.clone()?))
    }

    /// Fetch the state at the stable checkpoint `cert` (verified): it
    /// becomes the target unless we already fetch a newer one. A newer target
    /// replaces an older one and keeps the verified chunks the new manifest
    /// lists (see the module docs).
    pub(super) fn fetch_state(&mut self, cert: CheckpointCert, cx: &mut Ctx<S>) {
        let slot = cert.slot;
        match self.fetching.take() {
            Some(t) if t.cert.slot >= slot => self.fetching = Some(t),
            Some(t) => self.fetching = Some(t.retarget(cert)),
            None => self.fetching = Some(Transfer::new(cert)),
        }
        let slot = self.fetching.as_ref().map_or(slot, |t| t.cert.slot);
        cx.multicast(self.others(), Message::FetchState { slot });
        self.arm_fetch(cx);
    }

    /// A stable checkpoint and its manifest from the member at `from`: the
    /// manifest must hash to the certified state; its sender holds the
    /// snapshot and may serve chunks.
    pub(super) fn on_state(
        &mut self,
        from: usize,
        cert: CheckpointCert,
        manifest: Manifest,
        cx: &mut Ctx<S>,
    ) {
        self.drop_passed_transfer();
        if cert.slot <= self.executed() {
            return;
        }
        let current = self.fetching.as_ref().map(|t| (t.cert.slot, t.cert.state));
        if current.is_some_and(|(s, _)| s > cert.slot) {
            return; // we fetch a newer state
        }
        let who = Addr::Node(self.g.members[from]);
        let slot = cert.slot;
        if let Err(e) = manifest.check(self.p.max_state_bytes) {
            self.fault(cx, who, Fault::StateInvalid, format!("slot {slot}: {e}"));
            return;
        }
        let target = match current {
            Some((s, state)) if s == slot => state,
            _ if self.verify_cert(&cert, cx) => cert.state,
            // a joining replica knows two configurations only: a correct
            // member may serve an older epoch's state
            _ if self.epochs.joining || self.unknown_signers(from, cx) => return,
            _ => {
                let detail = format!("certificate for slot {slot}");
                self.fault(cx, who, Fault::StateInvalid, detail);
                return;
            }
        };
        if manifest.digest(cx.crypto()) != target {
            let detail = format!("slot {slot}: the manifest is not the certified state");
            self.fault(cx, who, Fault::StateInvalid, detail);
            return;
        }
        if current.is_none_or(|(s, _)| s < slot) {
            self.fetch_state(cert, cx);
        }
        let Some(t) = self.fetching.as_mut() else {
            return;
        };
        t.holders.insert(from);
        if t.manifest.is_none() {
            t.adopt(manifest);
        }
        self.continue_transfer(who, cx);
    }

    /// A chunk from the member at `from`: kept only if it matches its digest
    /// in the verified manifest; a mismatch is a fault, and its sender is no
    /// longer asked.
    pub(super) fn on_chunk(
        &mut self,
        from: usize,
        slot: Slot,
        index: u32,
        bytes: Vec<u8>,
        cx: &mut Ctx<S>,
    ) {
        self.drop_passed_transfer();
        let Some(t) = self.fetching.as_mut() else {
            return;
        };
        let Some(m) = &t.manifest else {
            return;
        };
        if slot != t.cert.slot || t.chunks.contains_key(&index) {
            return; // late, or already verified
        }
        let valid = m
            .chunks
            .get(index as usize)
            .is_some_and(|d| bytes.len() == m.span(index).len() && cx.crypto().hash(&bytes) == *d);
        let who = Addr::Node(self.g.members[from]);
        if !valid {
            t.holders.remove(&from);
            if t.source == Some(from) {
                t.rotate();
            }
            let detail = format!("slot {slot} chunk {index} ({} bytes)", bytes.len());
            self.fault(cx, who, Fault::StateChunkInvalid, detail);
            self.request_chunks(cx);
            return;
        }
        t.asked.remove(&index);
        t.chunks.insert(index, bytes);
        self.stats.state_chunks += 1;
        self.continue_transfer(who, cx);
    }

    /// A transfer whose checkpoint this replica executed meanwhile (the log
    /// came by log transfer) is over: installing it would go back.
    fn drop_passed_transfer(&mut self) {
        if self
            .fetching
            .as_ref()
            .is_some_and(|t| t.cert.slot <= self.executed())
        {
            self.fetching = None;
        }
    }

    /// Ask for more chunks, or install the state once every chunk is here.
    fn continue_transfer(&mut self, last: Addr, cx: &mut Ctx<S>) {
        if self.fetching.as_ref().is_some_and(Transfer::complete) {
            self.finish_transfer(last, cx);
        } else {
            self.request_chunks(cx);
        }
    }

    /// Keep up to [`CHUNKS_IN_FLIGHT`] chunks asked of the current source.
    fn request_chunks(&mut self, cx: &mut Ctx<S>) {
        let Some(t) = self.fetching.as_mut() else {
            return;
        };
        let Some(count) = t.manifest.as_ref().map(|m| m.chunks.len() as u32) else {
            return;
        };
        if t.source.is_none_or(|s| !t.holders.contains(&s)) {
            t.rotate();
        }
        let Some(src) = t.source else {
            return;
        };
        let slot = t.cert.slot;
        let room = CHUNKS_IN_FLIGHT.saturating_sub(t.asked.len());
        let next: Vec<u32> = (0..count)
            .filter(|i| !t.chunks.contains_key(i) && !t.asked.contains(i))
            .take(room)
            .collect();
        let to = Addr::Node(self.g.members[src]);
        for index in next {
            t.asked.insert(index);
            self.stats.state_chunk_requests += 1;
            cx.send(to, Message::FetchChunk { slot, index });
        }
    }

    /// Every chunk verified: install the snapshot (`last` sent the last chunk).
    fn finish_transfer(&mut self, last: Addr, cx: &mut Ctx<S>) {
        let Some(t) = self.fetching.take() else {
            return;
        };
        let snapshot = t.assemble();
        let cert = t.cert;
        if let Err(e) = self.restore_snapshot(&snapshot) {
            // a certified state we cannot decode: more than f faulty members
            // signed it, or the service cannot read its own snapshot
            self.fault(cx, last, Fault::StateUndecodable, e);
            self.fetching = Some(Transfer::new(cert));
            return;
        }
        tracing::info!(replica = %self.me, slot = cert.slot, "state transfer complete");
        self.stats.state_transfers += 1;
        let (slot, state) = (cert.slot, cert.state);
        let moved = self.order.skip_to(slot);
        let record = Record::Checkpoint {
            cert: cert.clone(),
            snapshot: snapshot.clone(),
        };
        self.stable_snapshot = Some(snapshot);
        if moved {
            self.stable = Some(cert);
            self.ckpts = self.ckpts.split_off(&(slot + 1));
        }
        // requests executed by the snapshot are no longer pending
        let over: Vec<ReqId> = self
            .pending
            .keys()
            .filter(|id| matches!(self.turn(**id), Turn::Done | Turn::Stale))
            .copied()
            .collect();
        for id in over {
            self.pending.remove(&id);
        }
        cx.output(Output::StateTransferred { slot });
        cx.persist(record);
        self.install_due(Some(cx));
        cx.output(Output::Stable { slot, state });
        self.release_reads(cx);
        self.execute_ready(cx);
        // the group may have decided past the checkpoint and gone idle: ask
        // for the decisions after what we now hold (a restarted replica that
        // had to fetch state at start has not asked yet, see below)
        self.ask_for_log(cx);
    }

    /// A restarted replica cannot tell from its disk what was decided while
    /// it was down, and an idle group sends it nothing that would show it
    /// lags (PBFT's recovering replica likewise asks the others first): it
    /// asks for the log after what it replayed. The others answer with
    /// their decisions, and learn from the request that it executed up to
    /// `from - 1` (see [`Self::on_fetch_log`]), so replicas of a whole
    /// group restarting one after the other find the furthest one.
    /// A restarted replica fetching the state of its stable checkpoint asks
    /// once the transfer is complete (`finish_transfer`), from there.
    pub(super) fn ask_what_was_missed(&mut self, cx: &mut Ctx<S>) {
        if self.recovered && self.fetching.is_none() {
            self.ask_for_log(cx);
            self.asks_left = ASKS_AFTER_RESTART;
            self.arm_fetch(cx);
        }
    }

    /// Ask the others for a window of decisions after the last slot we
    /// executed.
    fn ask_for_log(&mut self, cx: &mut Ctx<S>) {
        let from = self.executed() + 1;
        let to = from.saturating_add(self.p.window);
        cx.multicast(self.others(), Message::FetchLog { from, to });
    }

    pub(super) fn on_fetch_log(&mut self, from: usize, from_slot: Slot, to: Slot, cx: &mut Ctx<S>) {
        // the requester executed up to `from_slot - 1`: if that is ahead of
        // us, fetch (a Byzantine requester makes us ask at most a window)
        let ahead = from_slot
            .saturating_sub(1)
            .min(self.executed().saturating_add(self.p.window));
        self.note_slot(from, ahead, cx);
        // the requester is behind our last checkpoint: the log it asks for is gone,
        // send the certified snapshot instead
        if from_slot <= self.order.low() {
            self.on_fetch_state(from, from_slot, cx);
        }
        let to = to.min(from_slot.saturating_add(self.p.window));
        let mut entries = Vec::new();
        let mut bytes = 0;
        for (s, v, b) in self.order.decided_in(from_slot, to) {
            bytes += b.requests.iter().map(|r| r.op.len() + 64).sum::<usize>();
            entries.push((s, v, b.clone()));
            if bytes > LOG_BYTES {
                break;
            }
        }
        if !entries.is_empty() {
            // each entry counts as our ACCEPT: durable decisions only
            cx.barrier();
            cx.send(Addr::Node(self.g.members[from]), Message::Log { entries });
        }
    }

    pub(super) fn on_log(
        &mut self,
        from: usize,
        entries: Vec<(Slot, View, Batch)>,
        cx: &mut Ctx<S>,
    ) {
        let mut touched = Vec::new();
        for (slot, view, batch) in entries {
            match self.order.learn(from, slot, view, batch, cx.crypto()) {
                Learned::Decided => self.stats.decided_slots += 1,
                Learned::Counted => touched.push(slot),
                Learned::Stale => {}
            }
        }
        for slot in touched {
            let events = self.order.advance(slot);
            self.apply(events, cx);
        }
        self.execute_ready(cx);
    }

    pub(super) fn on_fetch_timer(&mut self, cx: &mut Ctx<S>) {
        self.fetch_timer = false;
        if self.asks_left > 0 && self.fetching.is_none() {
            self.asks_left -= 1;
            self.ask_for_log(cx);
            self.arm_fetch(cx);
        }
        let stuck = self.executed() == self.executed_at_fetch;
        self.drop_passed_transfer();
        if let Some(t) = self.fetching.as_mut() {
            // no chunk verified for STALL_TICKS ticks: the source is slow,
            // dead or lying; ask the next holder and look for more holders
            let slot = t.cert.slot;
            if t.tick() {
                cx.multicast(self.others(), Message::FetchState { slot });
            }
            self.request_chunks(cx);
            self.arm_fetch(cx);
            return;
        }
        // a higher view known from a weak quorum: ask for its SYNC
        let ahead = self.ahead();
        if self.weak(&ahead) {
            let view = ahead
                .iter()
                .map(|i| self.view_hints[i])
                .min()
                .unwrap_or(self.view() + 1);
            let to: Vec<Addr> = ahead
                .iter()
                .map(|i| Addr::Node(self.g.members[*i]))
                .collect();
            cx.multicast(to, Message::FetchSync { view });
            self.arm_fetch(cx);
        }
        let (executed, highest) = (self.executed(), self.order.highest_seen());
        if highest > executed {
            if stuck && self.status() == Status::Normal {
                let msg = Message::FetchLog {
                    from: executed + 1,
                    to: highest,
                };
                cx.multicast(self.others(), msg);
                // our own PROPOSE (leader), WRITE and ACCEPT for the slots we
                // are stuck on, once the records behind them are durable
                let resend = self.order.resend(4 * self.p.max_in_flight);
                if !resend.is_empty() {
                    cx.barrier();
                }
                for m in resend {
                    cx.multicast(self.others(), m.into());
                }
            }
            self.arm_fetch(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::params::Params;
    use byzscale_core::{Effect, NodeId, Protocol};
    use std::collections::VecDeque;

    const FETCHER: u32 = 3;

    fn node(i: u32) -> Addr {
        Addr::Node(NodeId(i))
    }

    /// Chunks of 4 bytes: the state of four executed requests (a counter
    /// and a client table with four replies) is over a dozen chunks.
    fn p() -> Params {
        Params {
            state_chunk_bytes: 4,
            ..params()
        }
    }

    /// Replicas 1 and 2 with slots 1..=4 decided and the checkpoint at 4
    /// stable; replica 3 knows nothing; replica 0 is down. `deliver`
    /// decides what the network does to each message.
    struct Net {
        rs: BTreeMap<u32, R>,
        queue: VecDeque<(u32, u32, Message)>,
        faults: Vec<(Addr, &'static str)>,
        transferred: Vec<Slot>,
        /// Chunk indices each member delivered to the fetcher.
        served: BTreeMap<u32, Vec<u32>>,
        /// Most bytes the fetcher held for a transfer at any time.
        peak_held: usize,
    }

    impl Net {
        fn new(slots: u64) -> Net {
            let mut rs = BTreeMap::new();
            for me in [1, 2] {
                let mut r = R::new(NodeId(me), group(), p(), Count::default());
                for s in 1..=slots {
                    decide(&mut r, me, s, 0, Batch::new(vec![request(s, &[s as u8])]));
                }
                rs.insert(me, r);
            }
            rs.insert(
                FETCHER,
                R::new(NodeId(FETCHER), group(), p(), Count::default()),
            );
            Net {
                rs,
                queue: VecDeque::new(),
                faults: Vec::new(),
                transferred: Vec::new(),
                served: BTreeMap::new(),
                peak_held: 0,
            }
        }

        fn stable(&self, me: u32) -> CheckpointCert {
            self.rs[&me].stable.clone().expect("a stable checkpoint")
        }

        /// The fetcher receives the CHECKPOINT signatures of `cert`.
        fn announce(&mut self, cert: &CheckpointCert) {
            for (n, sig) in &cert.sigs {
                let m = Message::Checkpoint {
                    slot: cert.slot,
                    state: cert.state,
                    sig: *sig,
                };
                self.step(n.0, FETCHER, m);
            }
        }

        fn step(&mut self, from: u32, to: u32, m: Message) {
            if let Message::Chunk { index, .. } = &m {
                if to == FETCHER {
                    self.served.entry(from).or_default().push(*index);
                }
            }
            let Some(r) = self.rs.get_mut(&to) else {
                return; // down
            };
            let fx = step(r, to, |r, cx| r.on_message(node(from), m, cx));
            self.effects(to, fx);
        }

        fn effects(&mut self, me: u32, fx: Vec<Effect<R>>) {
            for e in fx {
                match e {
                    // replies to clients go nowhere
                    Effect::Send { to, msg } => {
                        if let Some(n) = to.node() {
                            self.queue.push_back((me, n.0, msg))
                        }
                    }
                    Effect::Multicast { to, msg } => {
                        for n in to.iter().filter_map(|a| a.node()) {
                            self.queue.push_back((me, n.0, msg.clone()));
                        }
                    }
                    Effect::Fault(f) => self.faults.push((f.node, f.name())),
                    Effect::Output(Output::StateTransferred { slot }) => {
                        self.transferred.push(slot)
                    }
                    _ => {}
                }
            }
            let held = self.fetcher().fetching.as_ref().map_or(0, Transfer::held);
            self.peak_held = self.peak_held.max(held);
        }

        /// Deliver until quiet; `net` may rewrite a message or drop it.
        fn pump(&mut self, mut net: impl FnMut(u32, u32, &mut Message) -> bool) {
            while let Some((from, to, mut m)) = self.queue.pop_front() {
                if net(from, to, &mut m) {
                    self.step(from, to, m);
                }
            }
        }

        fn fetch_tick(&mut self) {
            let r = self.rs.get_mut(&FETCHER).unwrap();
            let fx = step(r, FETCHER, |r, cx| r.on_timer(Timer::Fetch, cx));
            self.effects(FETCHER, fx);
        }

        fn fetcher(&self) -> &R {
            &self.rs[&FETCHER]
        }

        fn chunks(&self, me: u32) -> u64 {
            let r = &self.rs[&me];
            let snap = r.stable_snapshot.as_ref().expect("a snapshot");
            snap.len().div_ceil(r.p.state_chunk_bytes) as u64
        }

        /// The fetcher installed the sources' state at `slot`.
        fn assert_caught_up(&self, slot: Slot) {
            let r = self.fetcher();
            assert_eq!(self.transferred, vec![slot]);
            assert_eq!(r.executed(), slot);
            assert_eq!(r.service().0, self.rs[&2].service().0);
            assert_eq!(r.stable_snapshot, self.rs[&2].stable_snapshot);
            assert!(r.fetching.is_none());
        }
    }

    /// The group decided past the checkpoint and went idle: after the
    /// transfer the fetcher asks for the decisions after it and executes
    /// them. Before, it stopped at the checkpoint for good (a ByzCast sweep
    /// found a restarted replica that had to fetch state at start stuck 16
    /// slots behind its idle group: seed 963).
    #[test]
    fn a_transfer_is_followed_by_the_decisions_after_the_checkpoint() {
        let mut net = Net::new(6);
        let cert = net.stable(1);
        assert_eq!(cert.slot, 4);
        net.announce(&cert);
        net.pump(|_, _, _| true);
        assert_eq!(net.transferred, vec![4]);
        assert_eq!(net.fetcher().executed(), 6);
        assert_eq!(net.fetcher().service().0, net.rs[&2].service().0);
    }

    /// A restarted replica asks for the decisions after what it replayed at
    /// start and on the next fetch ticks, a bounded number of times: its
    /// request or the answers may be lost, and an idle group sends it
    /// nothing else. Before, it asked once (the nightly ByzCast sweep: 6 of
    /// 10,000 seeds ended with a restarted replica one or two slots behind
    /// its idle group).
    #[test]
    fn a_restarted_replica_asks_again_for_what_it_missed() {
        let mut r = recover(FETCHER, crate::Durable::default());
        let count = |fx: &[Effect<R>]| {
            fx.iter()
                .filter(|e| {
                    matches!(
                        e,
                        Effect::Multicast {
                            msg: Message::FetchLog { from: 1, .. },
                            ..
                        }
                    )
                })
                .count()
        };
        let mut asked = count(&step(&mut r, FETCHER, |r, cx| r.on_start(cx)));
        for _ in 0..6 {
            asked += count(&step(&mut r, FETCHER, |r, cx| r.on_timer(Timer::Fetch, cx)));
        }
        assert_eq!(asked, 1 + ASKS_AFTER_RESTART as usize);
    }

    #[test]
    fn a_lagging_replica_fetches_the_certified_state_in_chunks() {
        let mut net = Net::new(4);
        let cert = net.stable(1);
        net.announce(&cert);
        net.pump(|_, _, _| true);
        net.assert_caught_up(4);
        let count = net.chunks(1);
        assert!(count >= 8, "{count} chunks");
        // each chunk verified once, asked once, from the first holder
        let r = net.fetcher();
        assert_eq!(r.stats.state_chunks, count);
        assert_eq!(r.stats.state_chunk_requests, count);
        assert_eq!(net.served[&1].len() as u64, count);
        assert!(net.faults.is_empty(), "{:?}", net.faults);
        // never more than the certified length held
        let len = r.stable_snapshot.as_ref().unwrap().len();
        assert!(net.peak_held <= len, "{} > {len}", net.peak_held);
    }

    /// Issue 10 item 8, Byzantine source: member 1 corrupts every chunk it
    /// sends. The fetcher keeps none of it, records the fault, stops asking
    /// member 1 and gets every chunk from member 2.
    #[test]
    fn a_corrupted_chunk_is_refused_and_fetched_from_another_holder() {
        let mut net = Net::new(4);
        let cert = net.stable(1);
        net.announce(&cert);
        net.pump(|from, _, m| {
            if let (1, Message::Chunk { bytes, .. }) = (from, m) {
                bytes[0] ^= 1;
            }
            true
        });
        net.assert_caught_up(4);
        // each chunk member 1 was asked for before its first lie showed
        let kinds: Vec<_> = net.faults.iter().map(|(_, k)| *k).collect();
        assert_eq!(kinds, vec!["state-chunk-invalid"; CHUNKS_IN_FLIGHT]);
        assert!(net.faults.iter().all(|(n, _)| *n == node(1)));
        let count = net.chunks(2);
        assert_eq!(net.fetcher().stats.state_chunks, count);
        assert_eq!(net.served[&2].len() as u64, count);
        let len = net.fetcher().stable_snapshot.as_ref().unwrap().len();
        assert!(net.peak_held <= len);
    }

    /// A Byzantine holder's manifest (the "proof" of every chunk) with one
    /// digest changed, and one claiming a snapshot over `max_state_bytes`:
    /// both refused as faults before a chunk is asked of it.
    #[test]
    fn a_manifest_that_is_not_the_certified_state_is_refused() {
        for lie in 0..2 {
            let mut net = Net::new(4);
            let cert = net.stable(1);
            net.announce(&cert);
            net.pump(|from, _, m| {
                if let (1, Message::State { manifest, .. }) = (from, m) {
                    match lie {
                        0 => manifest.chunks[2][0] ^= 1,
                        _ => manifest.len = p().max_state_bytes + 1,
                    }
                }
                true
            });
            net.assert_caught_up(4);
            assert_eq!(net.faults, vec![(node(1), "state-invalid")]);
            assert!(
                !net.served.contains_key(&1),
                "asked a liar: {:?}",
                net.served
            );
        }
    }

    /// Issue 10 item 8, resumption: the source dies after two chunks. The
    /// fetcher, stalled for two fetch ticks, moves to member 2 and asks it
    /// only for the chunks it has not verified.
    #[test]
    fn a_transfer_resumes_from_another_holder_without_fetching_verified_chunks_again() {
        let mut net = Net::new(4);
        let cert = net.stable(1);
        net.announce(&cert);
        let mut sent = 0;
        net.pump(|from, to, m| {
            if matches!(m, Message::Chunk { .. }) && from == 1 {
                sent += 1;
            }
            // member 1 dies once it has delivered two chunks
            !((from == 1 || to == 1) && sent > 2)
        });
        net.rs.remove(&1);
        assert_eq!(net.served[&1], vec![0, 1]);
        assert!(net.transferred.is_empty());
        // a tick that sees the two chunks, then STALL_TICKS without one
        for _ in 0..=STALL_TICKS {
            net.fetch_tick();
            net.pump(|_, _, _| true);
        }
        net.assert_caught_up(4);
        let count = net.chunks(2);
        let from2 = &net.served[&2];
        assert_eq!(from2.len() as u64, count - 2);
        assert!(!from2.contains(&0) && !from2.contains(&1), "{from2:?}");
        assert_eq!(net.fetcher().stats.state_chunks, count);
        assert!(net.faults.is_empty(), "{:?}", net.faults);
    }

    /// A transfer started from a STATE alone (the answer to a FETCH-LOG
    /// below the holder's checkpoint, so the fetcher's watermark has not
    /// moved) while the fetcher goes on deciding slots: once it executed
    /// the target, the chunks still arriving are not installed (that would
    /// take its state back; the simulator's `mutate` sweep found it).
    #[test]
    fn a_transfer_the_fetcher_executed_past_is_dropped() {
        let mut net = Net::new(4);
        net.step(FETCHER, 1, Message::FetchState { slot: 4 });
        let mut held = Vec::new();
        let mut chunks = 0;
        net.pump(|from, to, m| {
            if matches!(m, Message::Chunk { .. }) {
                chunks += 1;
                if chunks > 2 {
                    held.push((from, to, m.clone()));
                    return false;
                }
            }
            true
        });
        assert!(net.fetcher().fetching.is_some());
        let r = net.rs.get_mut(&FETCHER).unwrap();
        for s in 1..=4 {
            decide(r, FETCHER, s, 0, Batch::new(vec![request(s, &[s as u8])]));
        }
        assert_eq!(net.fetcher().executed(), 4);
        for (from, to, m) in held {
            net.step(from, to, m);
        }
        assert!(net.transferred.is_empty(), "{:?}", net.transferred);
        assert!(net.fetcher().fetching.is_none());
        assert_eq!(net.fetcher().service().0, 4);
    }

    /// A newer stable checkpoint in the middle of a transfer: the fetcher
    /// moves to it (the holders no longer keep the older snapshot) and ends
    /// with the newer state; bytes held stay within one certified length.
    #[test]
    fn a_newer_stable_checkpoint_mid_transfer_becomes_the_target() {
        let mut net = Net::new(4);
        let old = net.stable(1);
        net.announce(&old);
        // three chunks of the older state arrive, then the group moves on
        let mut delivered = 0;
        net.pump(|_, _, m| {
            if matches!(m, Message::Chunk { .. }) {
                delivered += 1;
            }
            delivered <= 3
        });
        for me in [1, 2] {
            let r = net.rs.get_mut(&me).unwrap();
            for s in 5..=8 {
                decide(r, me, s, 0, Batch::new(vec![request(s, &[s as u8])]));
            }
        }
        let new = net.stable(1);
        assert_eq!(new.slot, 8);
        net.announce(&new);
        net.pump(|_, _, _| true);
        net.assert_caught_up(8);
        let len = net.rs[&1].stable_snapshot.as_ref().unwrap().len();
        assert!(net.peak_held <= len, "{} > {len}", net.peak_held);
    }
}
