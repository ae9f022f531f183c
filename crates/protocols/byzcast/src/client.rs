//! The ByzCast client: `multicast(m, dst)`.
//!
//! The client submits `Envelope::Multicast(m)` to the entry group of `dst`
//! (lca(dst), or the baseline's sequencer) through an SMR [`smr::Client`] of that
//! group, which gives FIFO numbering, MAC authenticators, retransmission and
//! the f+1 matching replies of the ordering step. The SMR reply says either
//! `Done(results)` (a single-group message, delivered by its group: the
//! genuine path, finished) or `Accepted` (ordered at the entry group); in the
//! latter case the results come from the entry group's replicas as
//! [`Message::Reply`] once every destination delivered, and the client takes
//! f+1 matching ones (in votes: a weak quorum). It asks again with
//! [`Message::Query`] every `client_retry` until then.

use crate::fault::Fault;
use crate::message::{max_multicast_op, Envelope, ExecReply, McastMsg, Message, MsgId, Results};
use crate::topology::Topology;
use byzscale_core::codec;
use byzscale_core::crypto::{digest, Digest};
use byzscale_core::quorum::{Collector, Vote};
use byzscale_core::{Addr, ClientId, Cx, GroupId, Keyed, NoRecord, Protocol, Time};
use byzscale_smr as smr;
use byzscale_smr::Params;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
pub enum Input {
    /// `multicast(m, dst)` with `m`'s payload (for the KV service, an encoded `KvOp`).
    Multicast { dst: Vec<GroupId>, payload: Vec<u8> },
}

#[derive(Debug, Clone)]
pub enum Output {
    /// The `n`-th multicast (from 1) completed: the results of every
    /// destination, or why it failed.
    Done {
        n: u64,
        dst: Vec<GroupId>,
        entry: GroupId,
        results: Result<Results, String>,
        invoked: Time,
    },
    /// The `n`-th multicast's entry group expired the client's SMR session
    /// before the client learnt whether the group ordered it: it may or may
    /// not be delivered ([`smr::client::Failed::SessionExpired`]).
    Failed {
        n: u64,
        dst: Vec<GroupId>,
        entry: GroupId,
        error: smr::client::Failed,
        invoked: Time,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Smr(GroupId, smr::client::Timer),
    Query(u64),
}

struct Outstanding {
    dst: Vec<GroupId>,
    entry: GroupId,
    invoked: Time,
    accepted: bool,
    votes: Collector<Digest, Results>,
    retries: u32,
}

pub struct Client {
    id: ClientId,
    topo: Arc<Topology>,
    params: Params,
    smr: Keyed<GroupId, smr::Client>,
    /// Per entry group: SMR submission ids handed out so far.
    submitted: BTreeMap<GroupId, u64>,
    /// (entry group, SMR submission id) → multicast number.
    subs: BTreeMap<(GroupId, u64), u64>,
    next_n: u64,
    outstanding: BTreeMap<u64, Outstanding>,
    completed: u64,
}

impl Client {
    pub fn new(id: ClientId, topo: Arc<Topology>, params: Params) -> Self {
        Client {
            id,
            topo,
            params,
            smr: Keyed::new(),
            submitted: BTreeMap::new(),
            subs: BTreeMap::new(),
            next_n: 1,
            outstanding: BTreeMap::new(),
            completed: 0,
        }
    }
    pub fn id(&self) -> ClientId {
        self.id
    }
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
    pub fn completed(&self) -> u64 {
        self.completed
    }

    fn smr_step(
        &mut self,
        g: GroupId,
        cx: &mut Cx<'_, Self>,
        f: impl FnOnce(&mut smr::Client, &mut Cx<'_, smr::Client>),
    ) {
        let Some(info) = self.topo.group(g) else {
            return;
        };
        if !self.smr.contains(&g) {
            let c = smr::Client::new(self.id, info.clone(), self.params.clone());
            self.smr.insert(g, c);
        }
        let Some(((), step)) = self.smr.step(&g, cx, f) else {
            return;
        };
        for out in step.lift(cx, Message::Smr, |t| Timer::Smr(g, t)) {
            match out {
                smr::client::Output::Done { id, result, .. } => self.on_ordered(g, id, result, cx),
                smr::client::Output::Refused { id, error } => {
                    if let Some(n) = self.subs.remove(&(g, id)) {
                        self.finish(n, Err(error.to_string()), cx);
                    }
                }
                // the entry group's outcome is unknown: so is the multicast's
                smr::client::Output::Failed { id, error, .. } => {
                    if let Some(n) = self.subs.remove(&(g, id)) {
                        self.complete(n, cx, |o| Output::Failed {
                            n,
                            dst: o.dst,
                            entry: o.entry,
                            error,
                            invoked: o.invoked,
                        });
                    }
                }
            }
        }
    }

    fn finish(&mut self, n: u64, results: Result<Results, String>, cx: &mut Cx<'_, Self>) {
        self.complete(n, cx, |o| Output::Done {
            n,
            dst: o.dst,
            entry: o.entry,
            results,
            invoked: o.invoked,
        });
    }

    /// Multicast `n` is over: output what `out` makes of it.
    fn complete(&mut self, n: u64, cx: &mut Cx<'_, Self>, out: impl FnOnce(Outstanding) -> Output) {
        if let Some(o) = self.outstanding.remove(&n) {
            cx.cancel_timer(Timer::Query(n));
            self.completed += 1;
            cx.output(out(o));
        }
    }

    /// The entry group ordered the multicast (f+1 matching SMR replies).
    fn on_ordered(&mut self, g: GroupId, sub: u64, result: Vec<u8>, cx: &mut Cx<'_, Self>) {
        let Some(n) = self.subs.remove(&(g, sub)) else {
            return;
        };
        match ExecReply::decode(&result) {
            Ok(ExecReply::Done(r)) => self.finish(n, Ok(r), cx),
            Ok(ExecReply::Accepted) => {
                if let Some(o) = self.outstanding.get_mut(&n) {
                    o.accepted = true;
                    cx.set_timer(Timer::Query(n), self.params.client_retry);
                }
            }
            Ok(ExecReply::Duplicate) => self.finish(n, Err("duplicate multicast".into()), cx),
            Ok(ExecReply::Rejected(why)) => self.finish(n, Err(format!("rejected: {why}")), cx),
            Ok(ExecReply::Ack) | Err(_) => {
                self.finish(n, Err("unexpected reply from the entry group".into()), cx)
            }
        }
    }

    fn on_reply(&mut self, from: Addr, id: MsgId, results: Results, cx: &mut Cx<'_, Self>) {
        if id.client != self.id {
            cx.fault(from, Fault::ReplySpoof, format!("reply for {id}"));
            return;
        }
        let Some(o) = self.outstanding.get_mut(&id.n) else {
            return;
        };
        let Some(g) = self.topo.group(o.entry) else {
            return;
        };
        let Some(pos) = from.node().and_then(|n| g.index_of(n)) else {
            cx.fault(
                from,
                Fault::Unexpected,
                "reply from outside the entry group",
            );
            return;
        };
        let d = digest(&codec::to_bytes(&results));
        if o.votes.add(&g.qs, pos, d, || results) != Vote::Duplicate {
            if let Some((_, r)) = o.votes.weak(&g.qs) {
                let r = r.clone();
                self.finish(id.n, Ok(r), cx);
            }
        }
    }
}

impl Protocol for Client {
    type Message = Message;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = NoRecord;

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        let Input::Multicast { dst, payload } = input;
        let n = self.next_n;
        self.next_n += 1;
        let now = cx.now();
        let dst = match self.topo.normalize_dst(&dst) {
            Ok(d) => d,
            Err(e) => {
                cx.output(Output::Done {
                    n,
                    dst,
                    entry: GroupId(u32::MAX),
                    results: Err(e),
                    invoked: now,
                });
                return;
            }
        };
        let entry = self
            .topo
            .entry(&dst)
            .expect("a normalized destination has an entry group");
        let msg = McastMsg {
            id: MsgId { client: self.id, n },
            dst: dst.clone(),
            payload,
        };
        let op = Envelope::Multicast(msg).encode();
        let limit = max_multicast_op(self.params.max_op_bytes);
        if op.len() > limit {
            // the replicas would drop it: say so at once
            let e = format!(
                "a multicast of {} bytes, the limit is {limit} (max_op_bytes less the forward envelope)",
                op.len()
            );
            cx.output(Output::Done {
                n,
                dst,
                entry,
                results: Err(e),
                invoked: now,
            });
            return;
        }
        let sub = self.submitted.entry(entry).or_insert(0);
        *sub += 1;
        self.subs.insert((entry, *sub), n);
        self.outstanding.insert(
            n,
            Outstanding {
                dst,
                entry,
                invoked: now,
                accepted: false,
                votes: Collector::new(),
                retries: 0,
            },
        );
        self.smr_step(entry, cx, |c, icx| {
            c.on_input(
                smr::client::Input::Submit {
                    op,
                    read_only: false,
                },
                icx,
            )
        });
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Smr(m) => {
                let Some(g) = from.node().and_then(|n| self.topo.group_of(n)) else {
                    cx.fault(from, Fault::Unexpected, "SMR message from a non-replica");
                    return;
                };
                if !self.smr.contains(&g) {
                    cx.fault(
                        from,
                        Fault::Unexpected,
                        "SMR message from a group never used",
                    );
                    return;
                }
                self.smr_step(g, cx, |c, icx| c.on_message(from, m, icx));
            }
            Message::Reply { id, results } => self.on_reply(from, id, results, cx),
            other => cx.fault(
                from,
                Fault::Unexpected,
                format!("{} sent to a client", other.kind()),
            ),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Smr(g, t) => self.smr_step(g, cx, |c, icx| c.on_timer(t, icx)),
            Timer::Query(n) => {
                let Some(o) = self.outstanding.get_mut(&n) else {
                    return;
                };
                if !o.accepted {
                    return;
                }
                o.retries += 1;
                let backoff = self.params.client_backoff(o.retries);
                let entry = o.entry;
                if let Some(g) = self.topo.group(entry) {
                    cx.multicast(
                        g.addrs(),
                        Message::Query {
                            id: MsgId { client: self.id, n },
                        },
                    );
                }
                cx.set_timer(Timer::Query(n), backoff);
            }
        }
    }
}
