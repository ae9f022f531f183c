//! An AT2 process as a network service: [`Node`] wraps [`At2`] with a
//! client request/reply protocol, so that the same sans-IO state machine
//! serves remote clients (over the authenticated transport) and local callers
//! (the node's HTTP API, through [`Node`]'s inputs).
//!
//! This is outside the thesis (Algorithm 5 has `transfer` and `read` as local
//! calls of the owner process). The choices:
//!
//! - **Custody.** Clients own their accounts: a transfer is signed with the
//!   account's key before it reaches a node ([`crate::SignedTransfer`]), and
//!   any node takes it and broadcasts it on the owner's behalf. A node holds
//!   no account key and cannot spend anyone's funds; reaching a node's port
//!   gives no more than the signatures one holds.
//! - **Replies.** A transfer is answered once it is applied at the node that
//!   took it (the thesis' `return true`), or with its error: at once (bad
//!   signature, malformed, sequence number used up, conflicting, not yet
//!   checkable here, insufficient funds), when it was not certified, or when
//!   it was certified and found invalid. Reads (`Balance`, `History`,
//!   `Account`) are answered from the node's local state, which may lag other
//!   nodes (AT2 has no total order to read at).
//! - **`Account`** tells an owner what its next transfer needs: the next
//!   sequence number and the incoming transfers to cite (its dependencies,
//!   at most [`crate::transfer::MAX_DEPS`]), as this node knows them. A
//!   client that waits for each transfer's answer before asking again never
//!   cites a dependency twice.
//! - **History** keeps the last [`HISTORY_LIMIT`] applied transfers touching
//!   each account, and the total count (the process's own history, see
//!   [`At2::with_history`], so it is in its checkpoints).
//! - **Retries.** Submitting the same signed transfer again (to the same or
//!   another node, e.g. after a lost reply) is safe: it is the same transfer
//!   for the voters and is applied at most once. Signing a *different*
//!   transfer with a sequence number already given to a node may block the
//!   account (see the crate docs).

use crate::fault::Fault;
use crate::{Account, At2, SignedTransfer, Transfer, TransferError, TransferId};
use byzscale_broadcast::SecureBroadcast;
use byzscale_core::protocol::{Cx, Protocol};
use byzscale_core::Addr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Applied transfers kept per account for `History`.
pub const HISTORY_LIMIT: usize = 1000;

/// What a client asks a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientOp {
    Transfer(SignedTransfer),
    Balance(Account),
    History(Account),
    /// What the account's next transfer needs ([`ClientReply::Account`]).
    Account(Account),
    /// The whole ledger in brief ([`ClientReply::Summary`]).
    Summary,
}

/// Why a request failed.
pub type ServiceError = TransferError;

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// The transfer was applied at the node that took it.
    Transferred(TransferId),
    Balance {
        account: Account,
        balance: i128,
    },
    History {
        account: Account,
        /// Applied transfers touching the account, all time.
        total: u64,
        /// The most recent ones (at most [`HISTORY_LIMIT`]), oldest first.
        transfers: Vec<Transfer>,
    },
    Account {
        account: Account,
        balance: i128,
        /// The sequence number of the account's next transfer.
        next_seq: u64,
        /// What the next transfer may spend: its history plus `deps`.
        spendable: i128,
        /// The incoming transfers to cite, with their amounts.
        deps: Vec<(TransferId, u64)>,
    },
    Summary {
        /// Transfers applied here.
        applied: u64,
        /// The sum of every balance (the supply, if nothing went wrong).
        supply: i128,
        /// BLAKE3 of the encoded balances: equal at two nodes iff every
        /// balance is.
        digest: byzscale_core::crypto::Digest,
    },
    Error(ServiceError),
}

/// Wire messages of an AT2 deployment: messages between nodes, and client
/// requests and replies. The variant order is part of the wire format;
/// `Request` and `Reply` do not depend on `M`, so a client can talk to nodes
/// running any broadcast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<M> {
    Peer(M),
    Request { id: u64, op: ClientOp },
    Reply { id: u64, reply: ClientReply },
}

/// A local request (from the node's own HTTP API); `tag` comes back in
/// [`Output::Reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub tag: u64,
    pub op: ClientOp,
}

/// What an [`Node`] reports to its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Reply {
        tag: u64,
        reply: ClientReply,
    },
    /// After a step that changed something: transfers accepted and applied
    /// in it, and the gauges after it.
    Progress {
        submitted: u64,
        applied: u64,
        /// Certified transfers not yet valid (waiting for their turn).
        pending: u64,
        /// Transfers accepted here and not yet applied here.
        in_flight: u64,
    },
}

#[derive(Clone, Copy, Debug)]
enum Requester {
    Local(u64),
    Remote(Addr, u64),
}

/// [`At2`] serving clients. See the module docs.
#[derive(Clone, Debug)]
pub struct Node<B> {
    at2: At2<B>,
    next_tag: u64,
    waiting: BTreeMap<u64, Requester>,
}

impl<B: SecureBroadcast<crate::Batch>> Node<B> {
    /// Serve `at2` (its history is turned on, [`HISTORY_LIMIT`] per account).
    pub fn new(at2: At2<B>) -> Self {
        Node {
            at2: at2.with_history(HISTORY_LIMIT),
            next_tag: 1,
            waiting: BTreeMap::new(),
        }
    }

    pub fn at2(&self) -> &At2<B> {
        &self.at2
    }

    fn answer(&mut self, who: Requester, reply: ClientReply, cx: &mut Cx<'_, Self>) {
        match who {
            Requester::Local(tag) => cx.output(Output::Reply { tag, reply }),
            Requester::Remote(addr, id) => cx.send(addr, Message::Reply { id, reply }),
        }
    }

    fn request(&mut self, who: Requester, op: ClientOp, cx: &mut Cx<'_, Self>) {
        match op {
            ClientOp::Transfer(transfer) => {
                let tag = self.next_tag;
                self.next_tag += 1;
                self.waiting.insert(tag, who);
                self.with_at2(cx, |a, c| {
                    a.on_input(crate::Input::Submit { transfer, tag }, c)
                });
            }
            ClientOp::Balance(account) => {
                let balance = self.at2.balance(account);
                self.answer(who, ClientReply::Balance { account, balance }, cx);
            }
            ClientOp::History(account) => {
                let (total, transfers) = self.at2.history(account);
                let reply = ClientReply::History {
                    account,
                    total,
                    transfers,
                };
                self.answer(who, reply, cx);
            }
            ClientOp::Account(account) => {
                let l = self.at2.ledger();
                let reply = ClientReply::Account {
                    account,
                    balance: l.balance(account),
                    next_seq: l.seq(account) + 1,
                    spendable: l.spendable(account),
                    deps: l.deps_of(account),
                };
                self.answer(who, reply, cx);
            }
            ClientOp::Summary => {
                let l = self.at2.ledger();
                let reply = ClientReply::Summary {
                    applied: l.applied_count(),
                    supply: l.balances().values().sum(),
                    digest: cx
                        .crypto()
                        .hash(&byzscale_core::codec::to_bytes(l.balances())),
                };
                self.answer(who, reply, cx);
            }
        }
    }

    /// Run an AT2 step; wrap its messages, answer its results.
    fn with_at2(
        &mut self,
        cx: &mut Cx<'_, Self>,
        f: impl FnOnce(&mut At2<B>, &mut Cx<'_, At2<B>>),
    ) {
        let ((), step) = cx.nested::<At2<B>, _>(|c| f(&mut self.at2, c));
        let (mut submitted, mut applied) = (0, 0);
        for o in step.lift(cx, Message::Peer, |t| t) {
            match o {
                crate::Output::Submitted(_) => submitted += 1,
                crate::Output::Applied(_) => applied += 1,
                crate::Output::TransferResult { tag, id, result } => {
                    let Some(who) = self.waiting.remove(&tag) else {
                        continue;
                    };
                    let reply = match result {
                        Ok(()) => ClientReply::Transferred(id),
                        Err(e) => ClientReply::Error(e),
                    };
                    self.answer(who, reply, cx);
                }
                crate::Output::Rejected(..) | crate::Output::Balance { .. } => {}
            }
        }
        if submitted > 0 || applied > 0 {
            cx.output(Output::Progress {
                submitted,
                applied,
                pending: self.at2.ledger().pending_count() as u64,
                in_flight: self.at2.in_flight() as u64,
            });
        }
    }
}

impl<B: SecureBroadcast<crate::Batch>> Protocol for Node<B> {
    type Message = Message<crate::Message<B::Message>>;
    type Input = Input;
    type Output = Output;
    type Timer = crate::Timer<B::Timer>;
    type Record = crate::Record<B::Record>;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        self.with_at2(cx, |a, c| a.on_start(c));
    }

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        self.request(Requester::Local(input.tag), input.op, cx);
    }

    fn on_message(&mut self, from: Addr, msg: Self::Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Peer(m) => self.with_at2(cx, |a, c| a.on_message(from, m, c)),
            Message::Request { id, op } => self.request(Requester::Remote(from, id), op, cx),
            Message::Reply { .. } => {
                cx.fault(from, Fault::UnexpectedReply, "a reply sent to a node")
            }
        }
    }

    fn on_timer(&mut self, timer: Self::Timer, cx: &mut Cx<'_, Self>) {
        self.with_at2(cx, |a, c| a.on_timer(timer, c));
    }
}

#[cfg(test)]
mod tests;
