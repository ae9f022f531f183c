use super::*;
use crate::{demo_key, Batch, Config, Genesis, Malformed};
use byzscale_broadcast::{bracha, Bracha};
use byzscale_core::crypto::CryptoMode;
use byzscale_core::protocol::{Time, MICROS, SECS};
use byzscale_core::{Effect, NodeId};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{Control, NodeIdx};
use byzscale_sim::group;
use byzscale_sim::net_model::NetModel;
use std::sync::Arc;

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

fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId).collect()
}

fn acct(i: u32) -> Account {
    Account::of(&demo_key(i))
}

fn pay(from: u32, seq: u64, to: u32, amount: u64, deps: Vec<TransferId>) -> ClientOp {
    let t = Transfer {
        from: acct(from),
        seq,
        to: acct(to),
        amount,
    };
    ClientOp::Transfer(SignedTransfer::sign(&demo_key(from), t, deps))
}

/// Four nodes over Bracha, four demo accounts of 50.
fn four_nodes() -> (Arc<bracha::Config>, Arc<Config>) {
    let bcfg = Arc::new(bracha::Config::new(ids()).unwrap());
    let cfg = Arc::new(Config::bracha(Genesis::demo(4, 50), ids()));
    (bcfg, cfg)
}

#[test]
fn requests_get_replies_and_clear_errors() {
    let (bcfg, cfg) = four_nodes();
    let mut h = group::sim(
        1,
        NetModel::uniform(MICROS, 100 * MICROS),
        CpuModel::free(),
        &group::directory(ids()),
        CryptoMode::Real,
        &ids(),
        |i| Node::new(At2::new(Bracha::new(i, bcfg.clone()), cfg.clone()).with_batching(8, 8)),
    );
    let req = |tag, op| Input { tag, op };
    // account 0 pays through node 0 and node 1 (any node takes it)
    h.schedule_input(0, NodeIdx(0), req(1, pay(0, 1, 1, 20, vec![])));
    h.schedule_input(0, NodeIdx(1), req(2, pay(0, 2, 2, 20, vec![])));
    h.schedule_input(0, NodeIdx(1), req(6, pay(3, 1, 2, 0, vec![])));
    let mut replies = BTreeMap::new();
    h.run_until(10 * SECS, &mut replies_into(&mut replies));
    assert_eq!(
        replies[&1],
        ClientReply::Transferred(TransferId {
            from: acct(0),
            seq: 1
        })
    );
    // the second is ahead of what node 1 had applied or endorsed when it came
    assert!(
        matches!(&replies[&2], ClientReply::Error(ServiceError::NotYet(_))),
        "{:?}",
        replies[&2]
    );
    assert_eq!(
        replies[&6],
        ClientReply::Error(ServiceError::Malformed(Malformed::ZeroAmount))
    );
    // account 1 asks node 3 what to cite, and spends what it received
    let t = h.now();
    h.schedule_input(t, NodeIdx(3), req(7, ClientOp::Account(acct(1))));
    h.run_until(t + SECS, &mut replies_into(&mut replies));
    let ClientReply::Account {
        next_seq,
        spendable,
        deps,
        balance,
        ..
    } = replies[&7].clone()
    else {
        panic!("{:?}", replies[&7]);
    };
    assert_eq!((next_seq, spendable, balance), (1, 70, 70));
    assert_eq!(
        deps,
        vec![(
            TransferId {
                from: acct(0),
                seq: 1
            },
            20
        )]
    );
    let deps = deps.into_iter().map(|(d, _)| d).collect();
    let t = h.now();
    h.schedule_input(t, NodeIdx(3), req(8, pay(1, 1, 2, 70, deps)));
    h.schedule_input(t, NodeIdx(2), req(9, pay(0, 2, 1, 31, vec![])));
    h.run_until(t + 10 * SECS, &mut replies_into(&mut replies));
    assert!(
        matches!(replies[&8], ClientReply::Transferred(_)),
        "{:?}",
        replies[&8]
    );
    assert_eq!(
        replies[&9],
        ClientReply::Error(ServiceError::InsufficientFunds {
            balance: 30,
            amount: 31
        })
    );
    // reads, at another node, after everything was applied
    let t = h.now();
    h.schedule_input(t, NodeIdx(0), req(10, ClientOp::Balance(acct(2))));
    h.schedule_input(t, NodeIdx(0), req(11, ClientOp::History(acct(1))));
    h.run_until(t + SECS, &mut replies_into(&mut replies));
    assert_eq!(
        replies[&10],
        ClientReply::Balance {
            account: acct(2),
            balance: 120
        }
    );
    let ClientReply::History {
        total, transfers, ..
    } = &replies[&11]
    else {
        panic!("{:?}", replies[&11]);
    };
    assert_eq!(*total, 2);
    assert_eq!(
        transfers.iter().map(|t| t.amount).collect::<Vec<_>>(),
        vec![20, 70]
    );
    assert_eq!(h.stats().faults, 0, "{:?}", h.stats().fault_log.first());
}

#[test]
fn remote_requests_are_answered_to_their_sender_and_replies_to_nodes_are_faults() {
    use byzscale_core::crypto::Crypto;
    use byzscale_core::ClientId;
    use rand::SeedableRng;
    let (bcfg, cfg) = four_nodes();
    let mut node = Node::new(At2::new(Bracha::new(NodeId(1), bcfg), cfg));
    let c: Crypto = group::crypto(NodeId(1), &group::directory(ids()), CryptoMode::Real);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut fx = Vec::new();
    let client = Addr::Client(ClientId(7));
    {
        let mut cx = Cx::new(0, &mut rng, &c, &mut fx);
        let req = |id, op| Message::Request { id, op };
        node.on_message(client, req(9, ClientOp::Balance(acct(3))), &mut cx);
        node.on_message(client, req(10, pay(0, 1, 1, 51, vec![])), &mut cx);
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
                    account: acct(3),
                    balance: 50
                }
            ),
            (
                client,
                10,
                ClientReply::Error(ServiceError::InsufficientFunds {
                    balance: 50,
                    amount: 51
                })
            ),
        ]
    );
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Fault(f) if f.is(crate::Fault::UnexpectedReply))));
    let _: Option<Batch> = None;
}
