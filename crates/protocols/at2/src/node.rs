//! An AT2 process as a network service: [`Node`] wraps [`At2`] with a
//! client request/reply protocol, so that the same sans-IO state machine
//! serves remote clients (over the authenticated transport) and local callers
//! (the node's HTTP API, through [`Node`]'s inputs).
//!
//! This is outside the thesis (Algorithm 5 has `transfer` and `read` as local
//! calls of the owner process). The choices:
//!
//! - **Custody.** A node is the owner process of its accounts and holds the
//!   key that signs their transfers (its node key signs the broadcast). A
//!   transfer *from* an account must therefore be sent to that account's
//!   owner node; any other node answers [`ServiceError::NotOwner`] naming
//!   the owner. Nodes do not authenticate end users: whoever can reach a
//!   node's client port or HTTP API can spend its accounts, so those must be
//!   exposed only to the account holder (per-user keys would sit in front of
//!   this; not done).
//! - **Replies.** A transfer is answered once it is applied at the owner
//!   (the thesis' `return true`), or with its error. Reads (`Balance`,
//!   `History`) are answered from the node's local state, which may lag other
//!   nodes (AT2 has no total order to read at).
//! - **History** keeps the last [`HISTORY_LIMIT`] applied transfers touching
//!   each account, and the total count (the process's own history, see
//!   [`At2::with_history`], so it is in its checkpoints).
//! - Requests are not deduplicated: a client that retries a transfer after a
//!   lost reply may transfer twice (the load generator does not retry).

use crate::fault::Fault;
use crate::{Account, At2, Genesis, Transfer, TransferError, TransferId, TransferMsg};
use byzscale_broadcast::SecureBroadcast;
use byzscale_core::protocol::{Cx, Protocol};
use byzscale_core::{Addr, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Applied transfers kept per account for `History`.
pub const HISTORY_LIMIT: usize = 1000;

/// What a client asks a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientOp {
    Transfer {
        from: Account,
        to: Account,
        amount: u64,
    },
    Balance(Account),
    History(Account),
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServiceError {
    #[error("account {account} is owned by node {}: send transfers from it to that node", owner_name(.owner))]
    NotOwner {
        account: Account,
        owner: Option<NodeId>,
    },
    #[error("unknown account {0}")]
    UnknownAccount(Account),
    #[error("the amount must be positive")]
    ZeroAmount,
    #[error("insufficient funds in the account: {balance} available, {amount} asked")]
    InsufficientFunds { balance: i128, amount: u64 },
    #[error("the owner node has too many transfers waiting; retry later")]
    Busy,
}

fn owner_name(o: &Option<NodeId>) -> String {
    o.map(|o| o.0.to_string()).unwrap_or_else(|| "?".into())
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// The transfer was applied at its owner.
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
    Error(ServiceError),
}

/// Wire messages of an AT2 deployment: broadcast messages between nodes, and
/// client requests and replies. The variant order is part of the wire format;
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
    /// After a step that changed something: transfers submitted and applied
    /// in it, and the gauges after it.
    Progress {
        submitted: u64,
        applied: u64,
        /// Delivered transfers not yet valid (waiting for dependencies).
        pending: u64,
        /// Own transfers queued or outstanding.
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
    genesis: Arc<Genesis>,
    next_tag: u64,
    waiting: BTreeMap<u64, Requester>,
}

impl<B: SecureBroadcast<TransferMsg>> Node<B> {
    /// Serve `at2` (its history is turned on, [`HISTORY_LIMIT`] per account).
    pub fn new(at2: At2<B>, genesis: Arc<Genesis>) -> Self {
        Node {
            at2: at2.with_history(HISTORY_LIMIT),
            genesis,
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
            ClientOp::Transfer { from, to, amount } => {
                let err = if self.genesis.owner(from).is_none() {
                    Some(ServiceError::UnknownAccount(from))
                } else if self.genesis.owner(to).is_none() {
                    Some(ServiceError::UnknownAccount(to))
                } else if amount == 0 {
                    Some(ServiceError::ZeroAmount)
                } else {
                    None
                };
                if let Some(e) = err {
                    return self.answer(who, ClientReply::Error(e), cx);
                }
                let tag = self.next_tag;
                self.next_tag += 1;
                self.waiting.insert(tag, who);
                self.with_at2(cx, |a, c| {
                    a.on_input(
                        crate::Input::Transfer {
                            from,
                            to,
                            amount,
                            tag,
                        },
                        c,
                    )
                });
            }
            ClientOp::Balance(account) => {
                let reply = if self.genesis.owner(account).is_none() {
                    ClientReply::Error(ServiceError::UnknownAccount(account))
                } else {
                    ClientReply::Balance {
                        account,
                        balance: self.at2.balance(account),
                    }
                };
                self.answer(who, reply, cx);
            }
            ClientOp::History(account) => {
                let reply = if self.genesis.owner(account).is_none() {
                    ClientReply::Error(ServiceError::UnknownAccount(account))
                } else {
                    let (total, transfers) = self.at2.history(account);
                    ClientReply::History {
                        account,
                        total,
                        transfers,
                    }
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
                crate::Output::TransferResult { tag, result, .. } => {
                    let Some(who) = self.waiting.remove(&tag) else {
                        continue;
                    };
                    let reply = match result {
                        Ok(id) => ClientReply::Transferred(id),
                        Err(TransferError::Busy) => ClientReply::Error(ServiceError::Busy),
                        Err(TransferError::NotOwner(account)) => {
                            ClientReply::Error(ServiceError::NotOwner {
                                account,
                                owner: self.genesis.owner(account),
                            })
                        }
                        Err(TransferError::InsufficientFunds { balance, amount }) => {
                            ClientReply::Error(ServiceError::InsufficientFunds { balance, amount })
                        }
                    };
                    self.answer(who, reply, cx);
                }
                crate::Output::Balance { .. } => {}
            }
        }
        if submitted > 0 || applied > 0 {
            cx.output(Output::Progress {
                submitted,
                applied,
                pending: self.at2.ledger().pending_count() as u64,
                in_flight: (self.at2.queued() + self.at2.outstanding().count()) as u64,
            });
        }
    }
}

impl<B: SecureBroadcast<TransferMsg>> Protocol for Node<B> {
    type Message = Message<B::Message>;
    type Input = Input;
    type Output = Output;
    type Timer = B::Timer;
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

    fn on_timer(&mut self, timer: B::Timer, cx: &mut Cx<'_, Self>) {
        self.with_at2(cx, |a, c| a.on_timer(timer, c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_broadcast::{bracha, Bracha};
    use byzscale_core::crypto::CryptoMode;
    use byzscale_core::protocol::{Time, MICROS, SECS};
    use byzscale_core::Effect;
    use byzscale_sim::cpu::CpuModel;
    use byzscale_sim::engine::{Control, NodeIdx};
    use byzscale_sim::group;
    use byzscale_sim::net_model::NetModel;

    /// Collects the replies of a run by tag.
    fn replies_into(
        replies: &mut BTreeMap<u64, ClientReply>,
    ) -> impl FnMut(Time, NodeIdx, Addr, Output, &mut Control<Input>) + '_ {
        |_, _, _, out, _| {
            if let Output::Reply { tag, reply } = out {
                replies.insert(tag, reply);
            }
        }
    }

    /// Four nodes over Bracha, each owning one account of 50.
    fn four_nodes() -> (Vec<NodeId>, Arc<bracha::Config>, Arc<Genesis>) {
        let ids: Vec<NodeId> = (0..4).map(NodeId).collect();
        let cfg = Arc::new(bracha::Config::new(ids.clone()).unwrap());
        let genesis = Arc::new(Genesis::one_account_each(&ids, 50));
        (ids, cfg, genesis)
    }

    #[test]
    fn requests_get_replies_and_clear_errors() {
        let (ids, cfg, genesis) = four_nodes();
        let mut h = group::sim(
            1,
            NetModel::uniform(MICROS, 100 * MICROS),
            CpuModel::free(),
            &group::directory(ids.clone()),
            CryptoMode::Real,
            &ids,
            |i| {
                let at2 =
                    At2::new(Bracha::new(i, cfg.clone()), genesis.clone()).with_batching(8, 8);
                Node::new(at2, genesis.clone())
            },
        );
        let req = |tag, op| Input { tag, op };
        let tr = |from: u32, to: u32, amount: u64| ClientOp::Transfer {
            from: Account(from),
            to: Account(to),
            amount,
        };
        h.schedule_input(0, NodeIdx(0), req(1, tr(0, 1, 20)));
        h.schedule_input(0, NodeIdx(0), req(2, tr(0, 2, 20)));
        h.schedule_input(0, NodeIdx(0), req(3, tr(0, 2, 20))); // overdraws after 1 and 2
        h.schedule_input(0, NodeIdx(1), req(4, tr(0, 1, 1))); // not the owner
        h.schedule_input(0, NodeIdx(1), req(5, tr(1, 9, 1))); // unknown account
        h.schedule_input(0, NodeIdx(1), req(6, tr(1, 2, 0)));
        let mut replies = BTreeMap::new();
        // no periodic timers: everything is over long before 10 s
        h.run_until(10 * SECS, &mut replies_into(&mut replies));
        assert!(matches!(replies[&1], ClientReply::Transferred(_)));
        assert!(matches!(replies[&2], ClientReply::Transferred(_)));
        assert_eq!(
            replies[&3],
            ClientReply::Error(ServiceError::InsufficientFunds {
                balance: 10,
                amount: 20
            })
        );
        let e = ClientReply::Error(ServiceError::NotOwner {
            account: Account(0),
            owner: Some(NodeId(0)),
        });
        assert_eq!(replies[&4], e);
        assert_eq!(
            ServiceError::NotOwner {
                account: Account(0),
                owner: Some(NodeId(0))
            }
            .to_string(),
            "account a0 is owned by node 0: send transfers from it to that node"
        );
        assert_eq!(
            replies[&5],
            ClientReply::Error(ServiceError::UnknownAccount(Account(9)))
        );
        assert_eq!(replies[&6], ClientReply::Error(ServiceError::ZeroAmount));
        // reads, at another node, after everything was applied
        h.schedule_input(h.now(), NodeIdx(3), req(7, ClientOp::Balance(Account(2))));
        h.schedule_input(h.now(), NodeIdx(3), req(8, ClientOp::History(Account(0))));
        h.run_until(20 * SECS, &mut replies_into(&mut replies));
        assert_eq!(
            replies[&7],
            ClientReply::Balance {
                account: Account(2),
                balance: 70
            }
        );
        let ClientReply::History {
            total, transfers, ..
        } = &replies[&8]
        else {
            panic!("{:?}", replies[&8]);
        };
        assert_eq!(*total, 2);
        assert_eq!(
            transfers.iter().map(|t| t.amount).collect::<Vec<_>>(),
            vec![20, 20]
        );
        assert_eq!(h.stats().faults, 0);
        assert_eq!(h.pending_events(), 0, "the run was over");
    }

    #[test]
    fn remote_requests_are_answered_to_their_sender_and_replies_to_nodes_are_faults() {
        use byzscale_core::crypto::Crypto;
        use byzscale_core::ClientId;
        use rand::SeedableRng;
        let (ids, cfg, genesis) = four_nodes();
        let mut node = Node::new(
            At2::new(Bracha::new(NodeId(1), cfg), genesis.clone()),
            genesis,
        );
        let c: Crypto = group::crypto(NodeId(1), &group::directory(ids), CryptoMode::Real);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut fx = Vec::new();
        let client = Addr::Client(ClientId(7));
        {
            let mut cx = Cx::new(0, &mut rng, &c, &mut fx);
            node.on_message(
                client,
                Message::Request {
                    id: 9,
                    op: ClientOp::Balance(Account(3)),
                },
                &mut cx,
            );
            node.on_message(
                client,
                Message::Request {
                    id: 10,
                    op: ClientOp::Transfer {
                        from: Account(0),
                        to: Account(1),
                        amount: 1,
                    },
                },
                &mut cx,
            );
            node.on_message(
                client,
                Message::Reply {
                    id: 1,
                    reply: ClientReply::Error(ServiceError::Busy),
                },
                &mut cx,
            );
        }
        let sent: Vec<(Addr, u64, ClientReply)> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::Send {
                    to,
                    msg: Message::Reply { id, reply },
                } => Some((*to, *id, reply.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            sent,
            vec![
                (
                    client,
                    9,
                    ClientReply::Balance {
                        account: Account(3),
                        balance: 50
                    }
                ),
                (
                    client,
                    10,
                    ClientReply::Error(ServiceError::NotOwner {
                        account: Account(0),
                        owner: Some(NodeId(0))
                    })
                ),
            ]
        );
        assert!(fx
            .iter()
            .any(|e| matches!(e, Effect::Fault(f) if f.is(crate::Fault::UnexpectedReply))));
    }
}
