//! The DQPBFT client (paper §3.2.6, digest §1.6): one command outstanding,
//! sent to its coordinator; done on f+1 matching replies; on a timeout sent
//! again to every replica, periodically.
//!
//! Deviation: the coordinator is fixed at construction (the paper assigns
//! clients to replicas by an ASSIGN ordered through the O-instance, plan
//! step 3); a replica that receives the command after the broadcast
//! coordinates it in its own D-instance, and execution runs it once.

use super::message::{Command, Message};
use byzscale_core::crypto::Digest;
use byzscale_core::protocol::{NoRecord, Time, MILLIS};
use byzscale_core::quorum::{Collector, FaultModel, QuorumSystem, Vote};
use byzscale_core::{Addr, ClientId, Cx, NodeId, Protocol};
use std::collections::VecDeque;

byzscale_core::fault_kinds! {
    /// Misbehaviour a DQPBFT client observes.
    pub enum ClientFault {
        /// A replica sent two different results for one command.
        ReplyConflict => "dq-reply-conflict",
        /// A reply from someone who is not a replica, or for another client.
        ReplyStranger => "dq-reply-stranger",
    }
}

/// Operations a client's user asks for.
#[derive(Clone, Debug)]
pub enum ClientInput {
    Call(Vec<u8>),
}

/// A completed command: f+1 replicas sent this result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub timestamp: u64,
    pub result: Vec<u8>,
}

/// The client's one timer: resend the outstanding command to everyone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Retry;

/// The command in flight and the replies to it, by result digest.
struct Outstanding {
    command: Command,
    replies: Collector<Digest, Vec<u8>>,
}

/// A DQPBFT client (see the module docs).
pub struct Client {
    id: ClientId,
    replicas: Vec<NodeId>,
    qs: QuorumSystem,
    coordinator: NodeId,
    timeout: Time,
    timestamp: u64,
    outstanding: Option<Outstanding>,
    /// Calls waiting for the outstanding one (the user's own queue).
    queue: VecDeque<Vec<u8>>,
}

impl Client {
    /// Client `id` of `replicas`, sending to `coordinator` first and to
    /// everyone after `timeout` without f+1 matching replies.
    pub fn new(
        id: ClientId,
        replicas: Vec<NodeId>,
        coordinator: NodeId,
        timeout: Time,
    ) -> Result<Self, String> {
        let n = replicas.len();
        if !replicas.contains(&coordinator) {
            return Err(format!("coordinator {coordinator:?} is not a replica"));
        }
        if timeout < MILLIS {
            return Err("the client timeout must be at least 1 ms".into());
        }
        let qs = QuorumSystem::classic(n, (n - 1) / 3, FaultModel::Bft)
            .map_err(|e| format!("quorum system: {e:?}"))?;
        Ok(Client {
            id,
            replicas,
            qs,
            coordinator,
            timeout,
            timestamp: 0,
            outstanding: None,
            queue: VecDeque::new(),
        })
    }

    /// Calls not completed yet (the outstanding one included).
    pub fn waiting(&self) -> usize {
        self.queue.len() + usize::from(self.outstanding.is_some())
    }

    fn start_next(&mut self, cx: &mut Cx<'_, Self>) {
        if self.outstanding.is_some() {
            return;
        }
        let Some(op) = self.queue.pop_front() else {
            return;
        };
        self.timestamp += 1;
        let command = Command {
            client: self.id,
            timestamp: self.timestamp,
            op,
        };
        cx.send(self.coordinator, Message::Request(command.clone()));
        cx.set_timer(Retry, self.timeout);
        self.outstanding = Some(Outstanding {
            command,
            replies: Collector::new(),
        });
    }
}

impl Protocol for Client {
    type Message = Message;
    type Input = ClientInput;
    type Output = Done;
    type Timer = Retry;
    type Record = NoRecord;

    fn on_input(&mut self, ClientInput::Call(op): ClientInput, cx: &mut Cx<'_, Self>) {
        self.queue.push_back(op);
        self.start_next(cx);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        let Message::Reply {
            client,
            timestamp,
            result,
        } = msg
        else {
            return;
        };
        let voter = match from {
            Addr::Node(m) => self.replicas.iter().position(|r| *r == m),
            Addr::Client(_) => None,
        };
        let Some(voter) = voter.filter(|_| client == self.id) else {
            cx.fault(
                from,
                ClientFault::ReplyStranger,
                format!("reply for {client:?}"),
            );
            return;
        };
        let Some(out) = self
            .outstanding
            .as_mut()
            .filter(|o| o.command.timestamp == timestamp)
        else {
            return; // a late reply to a completed command
        };
        let digest = cx.crypto().hash(&result);
        match out.replies.add(&self.qs, voter, digest, || result) {
            Vote::Counted(votes) if votes >= self.qs.weak() => {
                let result = out.replies.value(&digest).cloned().unwrap_or_default();
                self.outstanding = None;
                cx.cancel_timer(Retry);
                cx.output(Done { timestamp, result });
                self.start_next(cx);
            }
            Vote::Conflict(_) => {
                let detail = format!("two results for timestamp {timestamp}");
                cx.fault(from, ClientFault::ReplyConflict, detail);
            }
            Vote::Counted(_) | Vote::Duplicate => {}
        }
    }

    fn on_timer(&mut self, Retry: Retry, cx: &mut Cx<'_, Self>) {
        if let Some(out) = &self.outstanding {
            let all = self.replicas.iter().map(|r| Addr::Node(*r)).collect();
            cx.multicast(all, Message::Request(out.command.clone()));
            cx.set_timer(Retry, self.timeout);
        }
    }
}
