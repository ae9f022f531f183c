//! Execution: decided slots leave the ordering core in slot order and their
//! requests run against the service under the per-client table, which is
//! PBFT's last-reply table (Castro & Liskov: exactly-once, the last replies
//! cached for retransmissions) extended with per-client FIFO
//! (requests run in client sequence order; early ones wait in a bounded
//! buffer). Each slot's `Record::Decided` precedes its replies, which the
//! driver therefore sends only once the slot is durable here (see
//! `durable.rs`); checkpoints follow. The table is part of the replicated
//! state and of every snapshot.

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
    pub(super) replies: VecDeque<(u64, Vec<u8>)>,
    buffered: BTreeMap<u64, Request>,
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
                self.execute_request(req, cx);
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

    fn execute_request(&mut self, req: &Request, cx: &mut Ctx<S>) {
        for (client, seq, result) in self.execute_request_quiet(req) {
            let reply = self.reply(client, seq, false, result);
            cx.send(Addr::Client(client), reply);
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

    /// Execute `req` under the per-client FIFO rule; returns the replies produced
    /// (the request itself and any buffered successors it unblocked).
    pub(super) fn execute_request_quiet(&mut self, req: &Request) -> Vec<(ClientId, u64, Vec<u8>)> {
        let window = self.p.client_window;
        let horizon = self.horizon();
        let cs = self.clients.entry(req.client).or_default();
        let mut out = Vec::new();
        if req.seq <= cs.last {
            return out;
        }
        if req.seq > cs.last + 1 {
            if req.seq <= cs.last + horizon {
                cs.buffered.entry(req.seq).or_insert_with(|| req.clone());
            }
            return out;
        }
        // the request itself by reference, then any buffered successors it unblocks
        let mut buffered: Option<Request> = None;
        loop {
            let r = buffered.as_ref().unwrap_or(req);
            let (client, seq) = (r.client, r.seq);
            let result = self.service.execute(&r.op);
            let cs = self.clients.get_mut(&client).expect("client state exists");
            cs.last = seq;
            cs.replies.push_back((seq, result.clone()));
            while cs.replies.len() as u64 > window {
                cs.replies.pop_front();
            }
            let next = cs.buffered.remove(&(seq + 1));
            if !cs.buffered.is_empty() {
                cs.buffered.retain(|s, _| *s > seq);
            }
            self.pending.remove(&(client, seq));
            self.proposed.remove(&(client, seq));
            out.push((client, seq, result));
            match next {
                Some(n) => buffered = Some(n),
                None => break,
            }
        }
        out
    }

    /// The replicated state: the service's snapshot and the client table.
    pub(super) fn snapshot_bytes(&self) -> Vec<u8> {
        codec::to_bytes(&(self.service.snapshot(), &self.clients))
    }

    pub(super) fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (svc, clients): (Vec<u8>, BTreeMap<ClientId, ClientState>) =
            codec::from_bytes(bytes, usize::MAX).map_err(|e| e.to_string())?;
        self.service.restore(&svc)?;
        self.clients = clients;
        Ok(())
    }
}
