//! Valid inputs for every target: real messages as nodes and clients send
//! them. They start the fuzzers' corpora (`bench/fuzz.sh` writes them) and
//! the regression test checks that each one is accepted.

use crate::handlers;
use crate::protocols::{At2Bracha, At2Contagion};
use crate::transport::{ident, known, role, KIND, NONCE};
use byzscale_apps::bank::{BankOp, BankReply};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_at2::node::Message as At2Message;
use byzscale_at2::{
    demo_key, Account, Batch as At2Batch, ClientOp, ClientReply, SignedTransfer, Transfer,
    TransferId, Vote,
};
use byzscale_broadcast::{bracha, probabilistic, Signed};
use byzscale_byzcast::{Envelope, ExecReply, McastMsg, MsgId};
use byzscale_core::codec::{self, HEADER_LEN};
use byzscale_core::crypto::{Crypto, CryptoMode, Identity, Signature};
use byzscale_core::{Addr, ClientId, GroupId, NodeId, WireKind};
use byzscale_net::transport::KIND_SEALED;
use byzscale_net::wire::Handshake;
use byzscale_smr::{
    Batch, CheckpointCert, Manifest, Message, RefuseReason, Reply, Request, SlotClaim, StopBody,
    StopData,
};
use std::collections::BTreeMap;

fn sig(n: u32, what: &[u8]) -> Signature {
    let a = Addr::Node(NodeId(n));
    Crypto::new(a, ident(a), CryptoMode::Real).sign(what)
}

/// The peer's side of a handshake with this side in role `flags`, as `peer`
/// with key `key`: its hello and (valid) auth frames, after the flags byte.
fn handshake_with(flags: u8, peer: Addr, key: Identity) -> Vec<u8> {
    let (me, dialed, accept_clients) = role(flags);
    let mine = Handshake::new(me, ident(me), KIND, dialed, NONCE);
    // the peer dials us if we accept, and accepts if we dial
    let theirs = Handshake::new(peer, key, KIND, dialed.is_none().then_some(me), [9; 32]);
    let their_hello = theirs.hello_frame().to_vec();
    let (_, my_auth) = mine
        .on_hello(&their_hello, known, accept_clients)
        .expect("seed hello admitted");
    let (wait, their_auth) = theirs
        .on_hello(&my_hello(flags), |a| Some(ident(a).public()), true)
        .expect("our hello admitted by the seed peer");
    wait.on_auth(&my_auth).expect("our auth verifies");
    [vec![flags], their_hello, their_auth].concat()
}

fn my_hello(flags: u8) -> Vec<u8> {
    let (me, dialed, _) = role(flags);
    Handshake::new(me, ident(me), KIND, dialed, NONCE)
        .hello_frame()
        .to_vec()
}

pub fn handshake() -> Vec<Vec<u8>> {
    let n1 = Addr::Node(NodeId(1));
    let key = Identity::from_seed([109; 32]);
    vec![
        handshake_with(0, n1, ident(n1)),
        // a client is admitted under the id its key certifies
        handshake_with(2, Addr::Client(ClientId::of_key(&key.public())), key),
        handshake_with(1, n1, ident(n1)),
    ]
}

fn request(seq: u64, op: Vec<u8>) -> Request {
    Request {
        client: ClientId(5),
        session: 3,
        seq,
        read_only: false,
        op,
        auth: vec![Default::default(); 4],
        sig: None,
    }
}

fn smr_messages() -> Vec<Message> {
    let batch = Batch::at(
        1_700_000_000_000,
        vec![
            request(1, KvOp::Set(b"k".to_vec(), b"v".to_vec()).encode()),
            request(2, KvOp::Get(b"k".to_vec()).encode()),
        ],
    );
    let cert = CheckpointCert {
        slot: 64,
        state: [3; 32],
        sigs: (0..3).map(|i| (NodeId(i), sig(i, b"ckpt"))).collect(),
    };
    let body = StopBody {
        view: 2,
        replica: NodeId(1),
        checkpoint: Some(cert.clone()),
        claims: vec![SlotClaim {
            slot: 65,
            prepared: Some((1, [4; 32], batch.clone())),
            pre_prepared: vec![([4; 32], 1), ([5; 32], 0)],
        }],
    };
    let stop = StopData {
        body,
        sig: sig(1, b"stop"),
    };
    vec![
        Message::Request(request(7, KvOp::Incr(b"n".to_vec()).encode())),
        Message::Forward(batch.requests.to_vec()),
        Message::Reply(Reply {
            replica: NodeId(2),
            view: 0,
            client: ClientId(5),
            session: 3,
            seq: 7,
            read_only: false,
            slot: 9,
            result: KvReply::Int(3).encode(),
        }),
        Message::SessionQuery {
            client: ClientId(5),
            nonce: 1,
        },
        Message::SessionInfo {
            replica: NodeId(2),
            client: ClientId(5),
            nonce: 1,
            executed: u64::MAX,
        },
        Message::Propose {
            view: 0,
            slot: 1,
            batch: batch.clone(),
        },
        Message::Write {
            view: 0,
            slot: 1,
            digest: [1; 32],
        },
        Message::Accept {
            view: 0,
            slot: 1,
            digest: [1; 32],
        },
        Message::Checkpoint {
            slot: 64,
            state: [3; 32],
            sig: sig(0, b"ckpt"),
        },
        Message::Stop { view: 2 },
        Message::StopData(stop.clone()),
        Message::Sync {
            view: 2,
            stops: vec![stop.clone(), stop],
        },
        Message::FetchSync { view: 2 },
        Message::FetchState { slot: 64 },
        Message::State {
            cert,
            manifest: Manifest {
                len: 3,
                chunk: 2,
                chunks: vec![[4; 32], [5; 32]],
            },
        },
        Message::FetchChunk { slot: 64, index: 1 },
        Message::Chunk {
            slot: 64,
            index: 1,
            bytes: vec![3],
        },
        Message::FetchLog { from: 1, to: 5 },
        Message::Log {
            entries: vec![(1, 0, batch)],
        },
        Message::Refused {
            replica: NodeId(2),
            client: ClientId(5),
            session: 3,
            seq: 7,
            reason: RefuseReason::Busy,
        },
        Message::Refused {
            replica: NodeId(2),
            client: ClientId(5),
            session: 3,
            seq: 7,
            reason: RefuseReason::Stale { floor: 65 },
        },
    ]
}

pub fn smr_message() -> Vec<Vec<u8>> {
    smr_messages().iter().map(codec::to_bytes).collect()
}

fn mcast(n: u64, dst: Vec<GroupId>) -> McastMsg {
    McastMsg {
        id: MsgId {
            client: ClientId(5),
            n,
        },
        dst,
        payload: KvOp::MSet(vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ])
        .encode(),
    }
}

fn envelopes() -> Vec<Envelope> {
    vec![
        Envelope::Multicast(mcast(1, vec![GroupId(0)])),
        Envelope::Multicast(mcast(2, vec![GroupId(0), GroupId(1)])),
        Envelope::Forward {
            sender: NodeId(8),
            k: 1,
            msg: mcast(3, vec![GroupId(0), GroupId(1)]),
        },
    ]
}

fn byzcast_messages() -> Vec<byzscale_byzcast::Message> {
    use byzscale_byzcast::Message as B;
    let id = MsgId {
        client: ClientId(5),
        n: 1,
    };
    let results: BTreeMap<GroupId, Vec<u8>> = [(GroupId(0), KvReply::Ok.encode())].into();
    let mut out: Vec<B> = envelopes()
        .into_iter()
        .map(|e| B::Smr(Message::Request(request(1, e.encode()))))
        .collect();
    out.extend([
        B::Result {
            id,
            results: results.clone(),
        },
        B::Reply { id, results },
        B::Query { id },
        B::Smr(Message::Write {
            view: 0,
            slot: 1,
            digest: [1; 32],
        }),
    ]);
    out
}

pub fn byzcast_message() -> Vec<Vec<u8>> {
    byzcast_messages().iter().map(codec::to_bytes).collect()
}

fn acct(i: u32) -> Account {
    Account::of(&demo_key(i))
}

fn transfer(seq: u64) -> Transfer {
    Transfer {
        from: acct(1),
        seq,
        to: acct(2),
        amount: 5,
    }
}

fn signed_transfer(seq: u64) -> SignedTransfer {
    let dep = TransferId {
        from: acct(0),
        seq: 1,
    };
    SignedTransfer::sign(&demo_key(1), transfer(seq), vec![dep])
}

fn transfer_msg() -> At2Batch {
    At2Batch {
        pid: 1,
        transfers: vec![signed_transfer(2), signed_transfer(3)],
        votes: vec![Vote {
            voter: NodeId(1),
            yes: vec![(0, 2)],
            sig: sig(1, b"vote"),
        }],
    }
}

fn signed() -> Signed<At2Batch> {
    Signed {
        payload: transfer_msg(),
        sig: sig(1, b"transfer"),
    }
}

fn at2_client<M>() -> Vec<At2Message<M>> {
    vec![
        At2Message::Request {
            id: 1,
            op: ClientOp::Transfer(signed_transfer(1)),
        },
        At2Message::Request {
            id: 2,
            op: ClientOp::History(acct(1)),
        },
        At2Message::Request {
            id: 3,
            op: ClientOp::Account(acct(1)),
        },
        At2Message::Reply {
            id: 1,
            reply: ClientReply::Transferred(TransferId {
                from: acct(1),
                seq: 2,
            }),
        },
        At2Message::Reply {
            id: 2,
            reply: ClientReply::History {
                account: acct(1),
                total: 1,
                transfers: vec![transfer(2)],
            },
        },
    ]
}

/// The vote round's messages (a proposal and a vote), inside the peer
/// message of an AT2 node.
fn at2_votes<M>() -> Vec<At2Message<byzscale_at2::Message<M>>> {
    vec![
        At2Message::Peer(byzscale_at2::Message::Propose {
            pid: 1,
            transfers: vec![signed_transfer(1)],
        }),
        At2Message::Peer(byzscale_at2::Message::Vote {
            pid: 1,
            digest: [3; 32],
            yes: vec![(0, 1)],
            sig: sig(2, b"vote"),
        }),
    ]
}

fn at2_bracha() -> Vec<At2Bracha> {
    use bracha::Message as M;
    let mut out: Vec<At2Bracha> = [
        M::Send {
            seq: 2,
            signed: signed(),
        },
        M::Echo {
            source: NodeId(1),
            seq: 2,
            digest: [5; 32],
        },
        M::Pull {
            source: NodeId(1),
            seq: 2,
            digest: [5; 32],
        },
        M::Push {
            source: NodeId(1),
            seq: 2,
            signed: signed(),
        },
        M::Ready {
            source: NodeId(1),
            seq: 2,
            digest: [6; 32],
        },
        M::Status {
            next: vec![1, 3, 1, 1],
        },
    ]
    .into_iter()
    .map(|m| At2Message::Peer(byzscale_at2::Message::Bcast(m)))
    .collect();
    out.extend(at2_votes());
    out.extend(at2_client());
    out
}

pub fn at2_bracha_message() -> Vec<Vec<u8>> {
    at2_bracha().iter().map(codec::to_bytes).collect()
}

fn at2_contagion() -> Vec<At2Contagion> {
    use probabilistic::Body;
    let bodies = [
        Body::GossipSubscribe,
        Body::Gossip(signed()),
        Body::EchoSubscribe,
        Body::Echo(signed()),
        Body::ReadySubscribe,
        Body::Ready(signed()),
    ];
    let mut out: Vec<At2Contagion> = bodies
        .into_iter()
        .map(|body| {
            At2Message::Peer(byzscale_at2::Message::Bcast(probabilistic::Message {
                source: NodeId(1),
                seq: 2,
                body,
            }))
        })
        .collect();
    out.extend(at2_votes());
    out.extend(at2_client());
    out
}

pub fn at2_contagion_message() -> Vec<Vec<u8>> {
    at2_contagion().iter().map(codec::to_bytes).collect()
}

/// Frames as the writer sends them: one plain frame, then a sealed one with
/// two messages (tags left out).
fn stream<M: serde::Serialize>(which: u8, kind: u8, msgs: &[M]) -> Vec<u8> {
    let frames: Vec<Vec<u8>> = msgs.iter().map(|m| codec::encode_frame(kind, m)).collect();
    let mut out = vec![which];
    out.extend_from_slice(&frames[0]);
    let inner: Vec<u8> = frames[1..3].concat();
    out.extend_from_slice(&codec::header(KIND_SEALED, inner.len()));
    out.extend_from_slice(&inner);
    debug_assert!(out.len() > 1 + 2 * HEADER_LEN);
    out
}

pub fn frames() -> Vec<Vec<u8>> {
    vec![
        stream(0, WireKind::Smr.byte(), &smr_messages()[3..]),
        stream(1, WireKind::Byzcast.byte(), &byzcast_messages()),
        stream(2, WireKind::At2.byte(), &at2_bracha()),
        stream(3, WireKind::At2.byte(), &at2_contagion()),
    ]
}

/// Operations in the [`crate::protocols::ops`] layout.
fn ops(sel: u8, ops: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![sel];
    for op in ops {
        out.extend_from_slice(&(op.len() as u16).to_le_bytes());
        out.extend_from_slice(op);
    }
    out
}

/// A command line as a [`KvOp::Call`].
fn call(words: &[&str]) -> KvOp {
    KvOp::Call(words.iter().map(|w| w.as_bytes().to_vec()).collect())
}

pub fn service_op() -> Vec<Vec<u8>> {
    let kv = [
        KvOp::Set(b"k".to_vec(), b"9".to_vec()),
        KvOp::Incr(b"k".to_vec()),
        KvOp::MGet(vec![b"k".to_vec(), b"a".to_vec(), b"z".to_vec()]),
        KvOp::MSet(vec![(b"x".to_vec(), b"1".to_vec())]),
        KvOp::Del(vec![b"x".to_vec(), b"x".to_vec()]),
        KvOp::Exists(vec![b"a".to_vec(), b"a".to_vec()]),
        KvOp::Get(b"k".to_vec()),
        KvOp::Ping,
        call(&["hset", "h", "f", "1", "g", "x"]),
        call(&["hincrbyfloat", "h", "f", "0.1"]),
        call(&["rpush", "l", "a", "b"]),
        call(&["lpop", "l", "5"]),
        call(&["sadd", "s", "a", "b"]),
        call(&["sunionstore", "d", "s", "h"]),
        call(&["zadd", "z", "incr", "1.1", "m"]),
        call(&["zrange", "z", "-inf", "+inf", "byscore", "withscores"]),
        call(&["hgetall", "h"]),
    ];
    let bank = [
        BankOp::Open {
            account: 2,
            initial: 5,
        },
        BankOp::Transfer {
            from: 1,
            to: 2,
            amount: 7,
        },
        BankOp::Balance { account: 2 },
        BankOp::Total,
    ];
    let replies = [
        KvReply::Array(vec![Some(b"v".to_vec()), None]).encode(),
        KvReply::Error("ERR x".into()).encode(),
        KvReply::Map(vec![(
            KvReply::Bulk(b"f".to_vec()),
            KvReply::Double("1.5".into()),
        )])
        .encode(),
        KvReply::Pairs(vec![(
            KvReply::Bulk(b"m".to_vec()),
            KvReply::Double("inf".into()),
        )])
        .encode(),
        KvReply::Set(vec![KvReply::NilArray]).encode(),
        BankReply::Balance(3).encode(),
    ];
    vec![
        ops(0, &kv.iter().map(KvOp::encode).collect::<Vec<_>>()),
        ops(1, &bank.iter().map(BankOp::encode).collect::<Vec<_>>()),
        ops(2, &replies),
    ]
}

pub fn byzcast_envelope() -> Vec<Vec<u8>> {
    let env: Vec<Vec<u8>> = envelopes().iter().map(Envelope::encode).collect();
    let replies = [
        ExecReply::Done([(GroupId(0), KvReply::Ok.encode())].into()),
        ExecReply::Accepted,
        ExecReply::Rejected("no".into()),
    ];
    let mut all = env.clone();
    all.extend(replies.iter().map(ExecReply::encode));
    vec![ops(0, &env), ops(1, &env), ops(2, &all)]
}

pub fn resp() -> Vec<Vec<u8>> {
    let pipeline: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n\
        MGET k a\r\nDEL k\r\nPING\r\nECHO \"a\\x41 b\" 'c'\r\nCLIENT SETNAME me\r\nCLIENT GETNAME\r\n\
        HELLO 2 SETNAME x\r\nCONFIG GET *a*e\r\nCOMMAND COUNT\r\nINFO stats\r\nSELECT 0\r\nQUIT\r\n";
    let errors: &[u8] = b"GET\r\nFOO bar\r\nCONFIG GET [a-z]?v[^x]\r\n*2\r\n$3\r\nGET\r\n:1\r\n";
    [0u8, 1, 0xff]
        .iter()
        .flat_map(|&lim| {
            [(pipeline, 0u8), (pipeline, 3), (errors, 1)]
                .into_iter()
                .map(move |(input, split)| [&[lim, split][..], input].concat())
        })
        .collect()
}

pub fn at2_http() -> Vec<Vec<u8>> {
    let body = byzscale_node::protocols::at2::transfer_body(&signed_transfer(1)).to_string();
    let mut post = vec![0u8];
    post.extend(body.as_bytes());
    let mut get = vec![1u8];
    get.extend(acct(1).hex().as_bytes());
    vec![
        post,
        b"\x00{\"from\": 1, \"to\": 2, \"amount\": 30}".to_vec(),
        get,
        b"\x0142".to_vec(),
    ]
}

/// Client `CLIENT`'s request `seq` to `group` (members `members`), with a
/// valid authenticator.
fn authed(group: GroupId, members: &[NodeId], seq: u64, op: Vec<u8>) -> Request {
    let c = handlers::crypto(Addr::Client(handlers::CLIENT));
    let bytes = Request::auth_bytes(group, handlers::CLIENT, (0, seq), false, &op);
    let to: Vec<Addr> = members.iter().map(|m| Addr::Node(*m)).collect();
    Request {
        client: handlers::CLIENT,
        session: 0,
        seq,
        read_only: false,
        auth: c.authenticator(&to, &bytes).expect("known replicas"),
        // even sequence numbers also carry the client's signature (the path
        // of a client a replica made sign)
        sig: seq.is_multiple_of(2).then(|| c.sign(&bytes)),
        op,
    }
}

/// `msg` from `CLIENT` to every member of `members`.
fn to_all<M: serde::Serialize>(members: &[NodeId], msg: &M) -> Vec<handlers::Wire> {
    let bytes = codec::to_bytes(msg);
    let from = Addr::Client(handlers::CLIENT);
    members
        .iter()
        .map(|m| (from, Addr::Node(*m), bytes.clone()))
        .collect()
}

/// Largest seed of the protocol-instance targets.
const SEED_MAX: usize = 12 * 1024;

/// Runs of four replicas ordering three KV requests, seen by the leader and
/// by a backup; and a run with the leader down (view change), by a backup.
pub fn smr_replica() -> Vec<Vec<u8>> {
    let g = handlers::smr_group();
    let ops = [
        KvOp::Set(b"k".to_vec(), b"1".to_vec()),
        KvOp::Incr(b"k".to_vec()),
        KvOp::Get(b"k".to_vec()),
    ];
    // the client asks for a session first (each replica answers)
    let query = Message::SessionQuery {
        client: handlers::CLIENT,
        nonce: 1,
    };
    let inject: Vec<handlers::Wire> = to_all(&g.members, &query)
        .into_iter()
        .chain(ops.iter().enumerate().flat_map(|(i, op)| {
            let r = authed(g.id, &g.members, i as u64 + 1, op.encode());
            to_all(&g.members, &Message::Request(r))
        }))
        .collect();
    let addrs: Vec<Addr> = g.members.iter().map(|m| Addr::Node(*m)).collect();
    let senders = handlers::smr_senders();
    let run = |target: usize, down: &[usize], rounds| {
        let nodes = (0..4).map(handlers::smr_replica).collect();
        let who = target as u8;
        handlers::cluster_seed(
            nodes,
            &addrs,
            &senders,
            inject.clone(),
            down,
            target,
            who,
            rounds,
            SEED_MAX,
        )
    };
    vec![run(0, &[], 3), run(1, &[], 3), run(1, &[0], 6)]
}

/// Runs of the twelve replicas of the tree delivering a local and a global
/// multicast, seen by a target group's leader, its backup, the other target
/// group's leader and the root's leader.
pub fn byzcast_replica() -> Vec<Vec<u8>> {
    let topo = crate::protocols::topology();
    let group = |g: u32| {
        topo.group(GroupId(g))
            .expect("three groups")
            .members
            .clone()
    };
    let local = mcast(1, vec![GroupId(0)]);
    let global = mcast(1, vec![GroupId(0), GroupId(1)]);
    let mut inject = Vec::new();
    let r = authed(
        GroupId(0),
        &group(0),
        1,
        Envelope::Multicast(local).encode(),
    );
    inject.extend(to_all(
        &group(0),
        &byzscale_byzcast::Message::Smr(Message::Request(r)),
    ));
    let entry = topo
        .tree()
        .lca(&[GroupId(0), GroupId(1)])
        .expect("an entry group");
    let r = authed(
        entry,
        &group(entry.0),
        1,
        Envelope::Multicast(global).encode(),
    );
    inject.extend(to_all(
        &group(entry.0),
        &byzscale_byzcast::Message::Smr(Message::Request(r)),
    ));
    let addrs: Vec<Addr> = (0..12).map(|i| Addr::Node(NodeId(i))).collect();
    let senders = handlers::byzcast_senders();
    (0..4u8)
        .map(|who| {
            let target = [0, 1, 4, 8][who as usize];
            let nodes = (0..12).map(handlers::byzcast_replica).collect();
            handlers::cluster_seed(
                nodes,
                &addrs,
                &senders,
                inject.clone(),
                &[],
                target,
                who,
                4,
                SEED_MAX,
            )
        })
        .collect()
}

/// Client transfers at nodes 0, 1 and 2, as AT2 node requests.
fn at2_inject() -> Vec<handlers::Wire> {
    let from = Addr::Client(handlers::CLIENT);
    let req = |id, f: u32, t: u32, amount| {
        let tr = Transfer {
            from: acct(f),
            seq: 1,
            to: acct(t),
            amount,
        };
        let m: At2Message<()> = At2Message::Request {
            id,
            op: ClientOp::Transfer(SignedTransfer::sign(&demo_key(f), tr, vec![])),
        };
        codec::to_bytes(&m)
    };
    vec![
        (from, Addr::Node(NodeId(0)), req(1, 0, 1, 30)),
        (from, Addr::Node(NodeId(1)), req(2, 1, 2, 50)),
        (from, Addr::Node(NodeId(2)), req(3, 2, 3, 5)),
    ]
}

fn at2_run<P: byzscale_core::Protocol>(make: impl Fn(u32) -> handlers::Driver<P>) -> Vec<Vec<u8>> {
    let addrs: Vec<Addr> = (0..4).map(|i| Addr::Node(NodeId(i))).collect();
    let senders = handlers::at2_senders();
    (0..4u8)
        .map(|who| {
            let nodes = (0..4).map(&make).collect();
            handlers::cluster_seed(
                nodes,
                &addrs,
                &senders,
                at2_inject(),
                &[],
                who as usize,
                who,
                4,
                SEED_MAX,
            )
        })
        .collect()
}

/// Four AT2 nodes over Bracha settling three transfers, seen by each.
pub fn at2_bracha_node() -> Vec<Vec<u8>> {
    at2_run(handlers::at2_bracha_node)
}

/// Four AT2 nodes over Contagion settling three transfers, seen by each.
pub fn at2_contagion_node() -> Vec<Vec<u8>> {
    at2_run(handlers::at2_contagion_node)
}
