//! Execution: decided slots leave the ordering core in slot order and their
//! requests run against the service under the client table, PBFT's
//! last-reply table (Castro & Liskov OSDI'99 §4.1: exactly-once, the last
//! reply cached for retransmissions; BFT-SMaRt keeps the same per client)
//! with per-client FIFO order. Each slot's `Record::Decided` precedes its
//! replies, which the driver therefore sends only once the slot is durable
//! here (see `durable.rs`); checkpoints follow.
//!
//! # The client table (replicated, in every snapshot)
//!
//! Per client only what exactly-once needs: the last executed sequence
//! number, the slot it ran in, and the last `client_window` replies
//! ([`ClientState`]). A request runs only in its turn
//! ([`Request::runs_next`]: the next in its session, or a new session's
//! first); any other is skipped, deterministically, and stays in the
//! replica's pending table (`pending.rs`, local and bounded in bytes) until
//! its predecessor has run and a leader proposes it again. Deviation from
//! the table this replaced: out-of-order requests were buffered inside the
//! client table, so a client's (or a Byzantine leader's) early requests were
//! pinned in the replicated state and in every snapshot; PBFT and BFT-SMaRt
//! keep only the last reply per client, as now. A correct leader proposes a
//! request only in turn (`request.rs`), so only a view change that drops a
//! slot makes a later one be skipped, once.
//!
//! # Expiry and the bound
//!
//! At every checkpoint slot, before the snapshot, each replica drops the
//! entries of clients with no request executed in the last
//! `client_expiry_slots` slots, in client-id order: the same decision at
//! every replica, since it depends on the decided sequence only. A client
//! that returns after that starts a new session ([`Request::next_seq`]: a
//! client with nothing outstanding always does), which runs whatever the
//! table knows of it. What is given up: exactly-once for a request older
//! than the expiry horizon; an expired client's request retransmitted after
//! expiry, if it is a session's first, may run a second time (a correct
//! client retransmits only what it has not seen complete, and the horizon
//! is far beyond a request's life). BFT-SMaRt keys its per-client state on
//! the client's session and drops it when the client disconnects; a session
//! here is a sequence-number range, since requests travel on no connection
//! of their own.
//!
//! The table's bytes ([`entry_bytes`]) are bounded by `client_table_bytes`:
//! at the bound a client with no entry is not executed and every replica
//! answers [`Message::Busy`] (deterministically, at execution); its request
//! stays pending and can run once entries expire. Clients with an entry are
//! never refused. Known limitation: a leader does not queue a refused
//! request again by itself (its client's retransmission finds it pending);
//! it is proposed again after the next view change rebuilds the queue.

use super::{Ctx, Output, Record, Replica};
use crate::message::*;
use byzscale_core::codec;
use byzscale_core::service::Service;
use byzscale_core::{Addr, ClientId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Per-client execution state: part of the replicated state (and the snapshot).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct ClientState {
    pub(super) last: u64,
    /// The slot its last request ran in (for expiry).
    last_slot: Slot,
    pub(super) replies: VecDeque<(u64, Vec<u8>)>,
}

/// Bytes charged for a client's entry in the table.
pub(super) fn entry_bytes(cs: &ClientState) -> usize {
    64 + cs.replies.iter().map(|(_, r)| r.len() + 24).sum::<usize>()
}

/// What executing one request did.
pub(super) enum Outcome {
    Ran(Vec<u8>),
    /// Not its turn, or executed already: nothing.
    Skipped,
    /// A client with no entry while the table is full.
    Busy,
}

impl<S: Service> Replica<S> {
    /// Execute every decided slot that is next in order.
    pub(super) fn execute_ready(&mut self, cx: &mut Ctx<S>) {
        let mut progressed = false;
        while let Some((slot, v, d, batch)) = self.order.take_ready() {
            // durable before the slot's replies leave (see durable.rs)
            cx.persist(Record::Decided {
                slot,
                view: v,
                digest: d,
                batch: batch.clone(),
            });
            for req in batch.requests.iter() {
                self.execute_request(slot, req, cx);
            }
            self.stats.executed_requests += batch.requests.len() as u64;
            progressed = true;
            cx.output(Output::Decided {
                slot,
                view: v,
                digest: d,
                batch,
            });
            if slot.is_multiple_of(self.p.checkpoint_interval) {
                self.expire_clients(slot);
                self.take_checkpoint(slot, cx);
            }
        }
        if progressed {
            self.release_reads(cx);
            self.vc_attempts = 0;
            self.try_propose(cx);
            self.arm_request_timer(cx);
        }
    }

    fn execute_request(&mut self, slot: Slot, req: &Request, cx: &mut Ctx<S>) {
        let (client, seq) = req.id();
        match self.execute_request_quiet(slot, req) {
            Outcome::Ran(result) => {
                let reply = self.reply(client, seq, false, result);
                cx.send(Addr::Client(client), reply);
                self.queue_successor((client, seq));
            }
            Outcome::Busy => {
                let replica = self.me;
                let busy = Message::Busy {
                    replica,
                    client,
                    seq,
                };
                cx.send(Addr::Client(client), busy);
            }
            Outcome::Skipped => {}
        }
    }

    pub(super) fn reply(
        &self,
        client: ClientId,
        seq: u64,
        read_only: bool,
        result: Vec<u8>,
    ) -> Message {
        Message::Reply(Reply {
            replica: self.me,
            view: self.view(),
            client,
            seq,
            read_only,
            result,
        })
    }

    /// How far beyond its last executed request a client's sequence numbers may
    /// run here. A client keeps at most `client_window` requests outstanding, but
    /// it counts completions by the fastest f+1 replicas; a replica that lags a
    /// few slots must still accept them, hence the margin.
    pub(super) fn horizon(&self) -> u64 {
        4 * self.p.client_window
    }

    /// Execute `req`, decided at `slot`, if it is its client's turn (see the
    /// module docs). Deterministic: the same at every replica.
    pub(super) fn execute_request_quiet(&mut self, slot: Slot, req: &Request) -> Outcome {
        let id = req.id();
        // whatever happens, a leader may propose it again only in its turn
        self.proposed.remove(&id);
        let known = self.clients.get(&req.client);
        let last = known.map(|cs| cs.last).unwrap_or(0);
        if !Request::runs_next(last, req.seq) {
            return Outcome::Skipped;
        }
        if known.is_none() && self.client_bytes + 64 > self.p.client_table_bytes {
            self.stats.clients_refused += 1;
            return Outcome::Busy;
        }
        let result = self.service.execute(&req.op);
        let window = self.p.client_window.max(1) as usize;
        let new = known.is_none();
        let cs = self.clients.entry(req.client).or_default();
        let before = if new { 0 } else { entry_bytes(cs) };
        cs.last = req.seq;
        cs.last_slot = slot;
        cs.replies.push_back((req.seq, result.clone()));
        while cs.replies.len() > window {
            cs.replies.pop_front();
        }
        let after = entry_bytes(cs);
        self.client_bytes = self.client_bytes + after - before;
        self.client_bytes_peak = self.client_bytes_peak.max(self.client_bytes);
        // it, and anything older of this client (an older session's), is done
        self.pending.drop_upto(id);
        Outcome::Ran(result)
    }

    /// Execute a decided batch without sending anything (replay at restart).
    pub(super) fn execute_batch_quiet(&mut self, slot: Slot, batch: &Batch) {
        for req in batch.requests.iter() {
            self.execute_request_quiet(slot, req);
        }
    }

    /// At checkpoint `slot`, before its snapshot: drop the entries of
    /// clients idle for more than `client_expiry_slots` (module docs).
    pub(super) fn expire_clients(&mut self, slot: Slot) {
        let horizon = self.p.client_expiry_slots;
        let before = self.clients.len();
        let mut freed = 0;
        self.clients.retain(|_, cs| {
            let keep = slot.saturating_sub(cs.last_slot) <= horizon;
            if !keep {
                freed += entry_bytes(cs);
            }
            keep
        });
        self.client_bytes -= freed;
        self.stats.clients_expired += (before - self.clients.len()) as u64;
    }

    /// The replicated state: the service's snapshot and the client table.
    pub(super) fn snapshot_bytes(&self) -> Vec<u8> {
        codec::to_bytes(&(self.service.snapshot(), &self.clients))
    }

    pub(super) fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (svc, clients): (Vec<u8>, BTreeMap<ClientId, ClientState>) =
            codec::from_bytes(bytes, usize::MAX).map_err(|e| e.to_string())?;
        self.service.restore(&svc)?;
        self.client_bytes = clients.values().map(entry_bytes).sum();
        self.client_bytes_peak = self.client_bytes_peak.max(self.client_bytes);
        self.clients = clients;
        Ok(())
    }
}
