//! A Steward client: sequential updates to its own site.
//!
//! Paper §3: a client sends update `ts + 1` only after the reply to `ts`,
//! to the servers of its local site, and takes a result once f+1 of them
//! reply alike (at least one correct). The update is signed, so any server
//! of any site can check that the client sent it. Unanswered updates are
//! sent again every `retry`; a server answers a retransmission of an
//! executed update from its last reply.
//!
//! Reads (§4.3, [`Input::Read`]) are answered by the client's own site
//! alone: the client takes f+1 matching answers ([`Output::LocalRead`]) of
//! servers of its site, each from its state after the global prefix it
//! executed, at least up to the client's last completed update or read
//! (its `floor`). Nothing crosses the WAN, so a read is *local*: it reads
//! the client's own writes and never goes back in time, but it is not
//! linearizable across sites (another site may be ahead). An operation the
//! service cannot answer read-only (f+1 say so) is submitted as an update.
//! Reads and updates run one at a time, in input order.

use crate::fault::Fault;
use crate::message::{Message, Query, QueryReply, Seq, SiteId, Update};
use byzscale_core::{Addr, ClientId, Cx, NoRecord, NodeId, Protocol, Time};
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug)]
pub enum Input {
    /// Submit an operation (queued behind the outstanding one).
    Submit(Vec<u8>),
    /// Read with a read-only operation at the client's own site alone
    /// (queued like a submission).
    Read(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Update `ts` ran at global `seq` with `result` (f+1 servers say so).
    Done { ts: u64, seq: Seq, result: Vec<u8> },
    /// Read `rid` was answered *locally*: f+1 servers of `site` (the
    /// client's own) say `result` is the state after their executed
    /// global prefix, the lowest of which is `executed`. Not linearizable
    /// across sites: other sites may have executed further.
    LocalRead {
        rid: u64,
        site: SiteId,
        executed: Seq,
        result: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Retry,
}

struct Outstanding {
    update: Update,
    votes: BTreeMap<NodeId, (Seq, Vec<u8>)>,
}

/// The outstanding read: the answers so far, (executed, result) per server.
struct Reading {
    query: Query,
    votes: BTreeMap<NodeId, (Seq, Option<Vec<u8>>)>,
}

/// What the client does next: an update or a read.
enum Next {
    Update(Vec<u8>),
    Read(Vec<u8>),
}

pub struct Client {
    id: ClientId,
    site: SiteId,
    servers: Vec<NodeId>,
    f: usize,
    retry: Time,
    ts: u64,
    current: Option<Outstanding>,
    reading: Option<Reading>,
    /// The last read number given out.
    rid: u64,
    /// The highest seq of a completed update or read: reads wait for it.
    floor: Seq,
    queue: VecDeque<Next>,
    completed: u64,
    reads: u64,
}

impl Client {
    /// Client `id` of `site`, whose servers are `servers` (3f+1).
    pub fn new(id: ClientId, site: SiteId, servers: Vec<NodeId>, f: usize, retry: Time) -> Self {
        Client {
            id,
            site,
            servers,
            f,
            retry,
            ts: 0,
            current: None,
            reading: None,
            rid: 0,
            floor: Seq(0),
            queue: VecDeque::new(),
            completed: 0,
            reads: 0,
        }
    }

    /// Start numbering updates after `ts`: a client process that reuses
    /// an identity an earlier process used (a key file) starts above every
    /// timestamp that one sent (e.g. at its start time in microseconds),
    /// since servers run only timestamps above the last they ran.
    pub fn starting_after(mut self, ts: u64) -> Self {
        self.ts = ts;
        self
    }

    pub fn id(&self) -> ClientId {
        self.id
    }
    pub fn site(&self) -> SiteId {
        self.site
    }
    pub fn completed(&self) -> u64 {
        self.completed
    }
    /// Reads answered locally.
    pub fn reads(&self) -> u64 {
        self.reads
    }
    /// The seq below which this client's reads never look.
    pub fn floor(&self) -> Seq {
        self.floor
    }
    /// Updates and reads not completed (the outstanding one and the queued
    /// ones).
    pub fn waiting(&self) -> usize {
        let busy = self.current.is_some() || self.reading.is_some();
        self.queue.len() + usize::from(busy)
    }

    fn send_current(&self, cx: &mut Cx<'_, Self>) {
        let to: Vec<Addr> = self.servers.iter().map(|s| Addr::Node(*s)).collect();
        if let Some(c) = &self.current {
            cx.multicast(to, Message::Submit(c.update.clone()));
            cx.set_timer(Timer::Retry, self.retry);
        } else if let Some(r) = &self.reading {
            cx.multicast(to, Message::Query(r.query.clone()));
            cx.set_timer(Timer::Retry, self.retry);
        }
    }

    fn start_next(&mut self, cx: &mut Cx<'_, Self>) {
        if self.current.is_some() || self.reading.is_some() {
            return;
        }
        match self.queue.pop_front() {
            None => cx.cancel_timer(Timer::Retry),
            Some(Next::Update(op)) => {
                self.ts += 1;
                let update = Update::signed(cx.crypto(), self.id, self.ts, op);
                let votes = BTreeMap::new();
                self.current = Some(Outstanding { update, votes });
            }
            Some(Next::Read(op)) => {
                self.rid += 1;
                let (client, rid, floor) = (self.id, self.rid, self.floor);
                let query = Query {
                    client,
                    rid,
                    floor,
                    op,
                };
                let votes = BTreeMap::new();
                self.reading = Some(Reading { query, votes });
            }
        }
        self.send_current(cx);
    }

    /// An answer to a read: f+1 matching results complete it.
    fn on_query_reply(&mut self, from: Addr, r: QueryReply, cx: &mut Cx<'_, Self>) {
        let node = from.node().filter(|n| self.servers.contains(n));
        let bad = node.is_none() || node != Some(r.server) || r.client != self.id;
        let current = self.reading.as_ref().map(|q| q.query.rid);
        // a correct server never answers below the floor it was given
        let low = current == Some(r.rid) && r.executed < self.floor;
        if bad || r.rid > self.rid || low {
            let detail = format!("query reply to {}#r{}", r.client, r.rid);
            cx.fault(from, Fault::BadReply, detail);
            return;
        }
        let Some(reading) = self.reading.as_mut().filter(|q| q.query.rid == r.rid) else {
            return; // late: the read completed
        };
        reading
            .votes
            .insert(r.server, (r.executed, r.result.clone()));
        let matching = reading.votes.values().filter(|(_, v)| *v == r.result);
        let executed = matching.clone().map(|(e, _)| *e).min();
        if matching.count() <= self.f {
            return;
        }
        let Some(reading) = self.reading.take() else {
            return;
        };
        let Some(result) = r.result else {
            // not read-only at f+1 servers (one correct): order it
            self.queue.push_front(Next::Update(reading.query.op));
            self.start_next(cx);
            return;
        };
        let executed = executed.unwrap_or(r.executed);
        self.floor = self.floor.max(executed);
        self.reads += 1;
        let (rid, site) = (r.rid, self.site);
        cx.output(Output::LocalRead {
            rid,
            site,
            executed,
            result,
        });
        self.start_next(cx);
    }

    fn on_reply(&mut self, from: Addr, r: crate::message::Reply, cx: &mut Cx<'_, Self>) {
        let node = from.node().filter(|n| self.servers.contains(n));
        if node.is_none() || node != Some(r.server) || r.client != self.id || r.ts > self.ts {
            cx.fault(
                from,
                Fault::BadReply,
                format!("reply to {}#{}", r.client, r.ts),
            );
            return;
        }
        let Some(c) = self.current.as_mut().filter(|c| c.update.ts == r.ts) else {
            return; // late: the update completed
        };
        let vote = (r.seq, r.result);
        c.votes.insert(r.server, vote.clone());
        let matching = c.votes.values().filter(|v| **v == vote).count();
        if matching > self.f {
            self.current = None;
            self.completed += 1;
            let (seq, result) = vote;
            self.floor = self.floor.max(seq);
            cx.output(Output::Done {
                ts: r.ts,
                seq,
                result,
            });
            self.start_next(cx);
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
        match input {
            Input::Submit(op) => self.queue.push_back(Next::Update(op)),
            Input::Read(op) => self.queue.push_back(Next::Read(op)),
        }
        self.start_next(cx);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Reply(r) => self.on_reply(from, r, cx),
            Message::QueryReply(r) => self.on_query_reply(from, r, cx),
            other => {
                let detail = format!("{} sent to a client", other.kind());
                cx.fault(from, Fault::Unexpected, detail);
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Retry => self.send_current(cx),
        }
    }
}
