//! A Steward client: sequential updates to its own site.
//!
//! Paper §3: a client sends update `ts + 1` only after the reply to `ts`,
//! to the servers of its local site, and takes a result once f+1 of them
//! reply alike (at least one correct). The update is signed, so any server
//! of any site can check that the client sent it. Unanswered updates are
//! sent again every `retry`; a server answers a retransmission of an
//! executed update from its last reply.

use crate::fault::Fault;
use crate::message::{Message, Seq, SiteId, Update};
use byzscale_core::{Addr, ClientId, Cx, NoRecord, NodeId, Protocol, Time};
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug)]
pub enum Input {
    /// Submit an operation (queued behind the outstanding one).
    Submit(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Update `ts` ran at global `seq` with `result` (f+1 servers say so).
    Done { ts: u64, seq: Seq, result: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Retry,
}

struct Outstanding {
    update: Update,
    votes: BTreeMap<NodeId, (Seq, Vec<u8>)>,
}

pub struct Client {
    id: ClientId,
    site: SiteId,
    servers: Vec<NodeId>,
    f: usize,
    retry: Time,
    ts: u64,
    current: Option<Outstanding>,
    queue: VecDeque<Vec<u8>>,
    completed: u64,
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
            queue: VecDeque::new(),
            completed: 0,
        }
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
    /// Updates not completed (the outstanding one and the queued ones).
    pub fn waiting(&self) -> usize {
        self.queue.len() + usize::from(self.current.is_some())
    }

    fn send_current(&self, cx: &mut Cx<'_, Self>) {
        if let Some(c) = &self.current {
            let to = self.servers.iter().map(|s| Addr::Node(*s)).collect();
            cx.multicast(to, Message::Submit(c.update.clone()));
            cx.set_timer(Timer::Retry, self.retry);
        }
    }

    fn start_next(&mut self, cx: &mut Cx<'_, Self>) {
        if self.current.is_some() {
            return;
        }
        let Some(op) = self.queue.pop_front() else {
            cx.cancel_timer(Timer::Retry);
            return;
        };
        self.ts += 1;
        let update = Update::signed(cx.crypto(), self.id, self.ts, op);
        let votes = BTreeMap::new();
        self.current = Some(Outstanding { update, votes });
        self.send_current(cx);
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
            Input::Submit(op) => {
                self.queue.push_back(op);
                self.start_next(cx);
            }
        }
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Reply(r) => self.on_reply(from, r, cx),
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
