//! Byzantine and malformed input at one server: each is dropped with a
//! typed fault naming its sender, nothing panics, and a valid signed
//! Proposal among them is relayed once and submitted for acceptance.
//!
//! The server is site 1's representative (n4, the SMR leader of local view
//! 0) in a deployment of three sites; site 0 leads.

mod common;

use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::threshold::{Heard, Share, Voice};
use byzscale_core::{Addr, ClientId, Cx, Effect, NodeId, Protocol};
use byzscale_sim::engine::{Actor, ProtocolActor};
use byzscale_smr as smr;
use byzscale_steward::{
    Fault, GlobalView, Message, Query, QueryReply, Reply, Seq, Signed, SiteId, SiteMsg, Update,
    SITE_DOMAIN,
};
use common::{identity, In, Kv, Out, World};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn honest(
    _: NodeId,
    _: &byzscale_core::threshold::KeyShare,
    s: Kv,
) -> Box<dyn Actor<Message, In, Out>> {
    Box::new(ProtocolActor::replica(s))
}

fn node(n: u32) -> Addr {
    Addr::Node(NodeId(n))
}

/// One step of `s` on `msg` from `from`: its effects.
fn feed(s: &mut Kv, crypto: &Crypto, from: Addr, msg: Message) -> Vec<Effect<Kv>> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut effects = Vec::new();
    let mut cx = Cx::new(0, &mut rng, crypto, &mut effects);
    s.on_message(from, msg, &mut cx);
    effects
}

/// The faults among `effects`: (culprit, kind).
fn faults(effects: &[Effect<Kv>]) -> Vec<(Addr, &'static str)> {
    let f = effects.iter().filter_map(|e| match e {
        Effect::Fault(f) => Some((f.node, f.name())),
        _ => None,
    });
    f.collect()
}

/// `msg` from `who` is dropped with exactly one fault, of `kind`, naming
/// `who`, and makes nothing.
fn refused(s: &mut Kv, crypto: &Crypto, who: Addr, msg: Message, kind: Fault) {
    let effects = &feed(s, crypto, who, msg);
    assert_eq!(faults(effects), vec![(who, kind.name())], "{effects:?}");
    let sent = effects
        .iter()
        .any(|e| matches!(e, Effect::Send { .. } | Effect::Multicast { .. }));
    assert!(!sent, "a dropped message makes nothing: {effects:?}");
}

fn update(c: u64, ts: u64, op: Vec<u8>) -> Update {
    let a = Addr::Client(ClientId(c));
    let crypto = Crypto::new(a, identity(a), CryptoMode::Real);
    Update::signed(&crypto, ClientId(c), ts, op)
}

/// Site 0's signed Proposal of `u` at seq 1.
fn proposal(w: &World, u: Update) -> Signed<SiteMsg> {
    let msg = SiteMsg::Proposal {
        gv: GlobalView(0),
        seq: Seq(1),
        update: u,
    };
    let key = w.cfg.sites[0].key.clone();
    let mut voice = Voice::new(key, SITE_DOMAIN, 1 << 20);
    let keys = &w.keys[0];
    for k in &keys[1..3] {
        let mut other = Voice::new(w.cfg.sites[0].key.clone(), SITE_DOMAIN, 1 << 20);
        let (d, share, _) = other.said((SiteId(0), msg.clone()), k);
        voice.heard(k.index(), d, share);
    }
    let Heard::Spoken(spoken) = voice.said((SiteId(0), msg), &keys[0]).2 else {
        panic!("three valid shares combine")
    };
    let (site, msg) = spoken.msg;
    let sig = spoken.signature;
    Signed { site, msg, sig }
}

/// Site 1's representative in a deployment of three sites (one client
/// each), and its node's crypto.
fn setup() -> (World, Kv, Crypto) {
    let w = World::new(1, 3, 1, honest);
    let (s, crypto) = w.server(1, 0);
    (w, s, crypto)
}

#[test]
fn bad_updates_forwards_and_replies_are_dropped() {
    let (w, mut s, crypto) = setup();
    let c2 = Addr::Client(ClientId(2)); // a client of site 1
    let good = update(2, 1, b"op".to_vec());

    // updates: forged, from someone else, from another site's client, too large
    let mut forged = good.clone();
    forged.ts = 2;
    refused(
        &mut s,
        &crypto,
        c2,
        Message::Submit(forged),
        Fault::BadUpdate,
    );
    let c3 = Addr::Client(ClientId(3));
    let sub = Message::Submit(good.clone());
    refused(&mut s, &crypto, c3, sub, Fault::BadUpdate);
    let c1 = Addr::Client(ClientId(1)); // site 0's
    let other = Message::Submit(update(1, 1, b"op".to_vec()));
    refused(&mut s, &crypto, c1, other, Fault::WrongSite);
    let big = update(2, 1, vec![0; w.cfg.max_update_op() + 1]);
    refused(&mut s, &crypto, c2, Message::Submit(big), Fault::TooLarge);

    // a forward from a server of a site that is not the client's
    let fwd = Message::Forward(good.clone());
    refused(&mut s, &crypto, node(8), fwd, Fault::Unexpected);
    // a reply to a server
    let reply = Reply {
        server: NodeId(5),
        client: ClientId(2),
        ts: 1,
        seq: Seq(1),
        result: vec![],
    };
    let r = Message::Reply(reply);
    refused(&mut s, &crypto, node(5), r, Fault::Unexpected);
    assert_eq!(s.stats().submitted, 0);
}

#[test]
fn bad_site_messages_and_shares_are_dropped() {
    let (w, mut s, crypto) = setup();
    let good = update(2, 1, b"op".to_vec());
    // site messages: a bad signature, a kind the site cannot say, no such site
    let signed = proposal(&w, good.clone());
    let mut bad_sig = signed.clone();
    bad_sig.sig = proposal(&w, update(2, 2, b"op".to_vec())).sig;
    let m = Message::Site(bad_sig);
    refused(&mut s, &crypto, node(0), m, Fault::BadSiteMsg);
    let accept = SiteMsg::Accept {
        gv: GlobalView(0),
        seq: Seq(1),
        digest: good.digest(),
    };
    let from_leader = Signed {
        site: SiteId(0),
        msg: accept,
        sig: signed.sig.clone(),
    };
    let m = Message::Site(from_leader.clone());
    refused(&mut s, &crypto, node(0), m, Fault::BadSiteMsg);
    let nowhere = Signed {
        site: SiteId(9),
        ..from_leader
    };
    let m = Message::Site(nowhere);
    refused(&mut s, &crypto, node(0), m, Fault::BadSiteMsg);

    // shares: from another site, and under another member's index
    let share = Share {
        index: 1,
        bytes: [0; byzscale_core::threshold::SIG_BYTES],
    };
    let (digest, spoof) = ([0; 32], share.clone());
    let m = Message::Share { digest, share };
    refused(&mut s, &crypto, node(0), m, Fault::Unexpected);
    let m = Message::Share {
        digest,
        share: spoof,
    };
    refused(&mut s, &crypto, node(6), m, Fault::ShareSpoof);
}

#[test]
fn smr_input_is_filtered_and_a_valid_proposal_is_relayed_and_submitted() {
    let (w, mut s, crypto) = setup();
    let good = update(2, 1, b"op".to_vec());
    let signed = proposal(&w, good);
    // the site SMR: from another site, a request over the network, a
    // PROPOSE holding an undecodable operation
    let view = smr::Message::Stop { view: 1 };
    let m = Message::Local(view);
    refused(&mut s, &crypto, node(0), m, Fault::Unexpected);
    let req = smr::Request {
        client: ClientId::for_replica(NodeId(5)),
        session: 0,
        seq: 1,
        read_only: false,
        op: vec![0xff; 3],
        auth: vec![Default::default(); 4],
        sig: None,
    };
    let m = Message::Local(smr::Message::Request(req.clone()));
    refused(&mut s, &crypto, node(5), m, Fault::Unexpected);
    let batch = smr::Batch::new(vec![req]);
    let propose = smr::Message::Propose {
        view: 0,
        slot: 1,
        batch,
    };
    let m = Message::Local(propose);
    refused(&mut s, &crypto, node(5), m, Fault::SiteOp);
    assert_eq!(s.stats().submitted, 0);

    // the valid Proposal: relayed to the three other servers of site 1
    // once, and submitted to the site SMR, whose leader proposes it
    let e = feed(&mut s, &crypto, node(1), Message::Site(signed.clone()));
    assert!(faults(&e).is_empty(), "{e:?}");
    let relays = e.iter().filter(|e| {
        matches!(e, Effect::Multicast { to, msg: Message::Site(_) } if to == &vec![node(5), node(6), node(7)])
    });
    assert_eq!(relays.count(), 1, "{e:?}");
    let proposes = e.iter().filter(|e| {
        matches!(
            e,
            Effect::Multicast {
                msg: Message::Local(smr::Message::Propose { .. }),
                ..
            }
        )
    });
    assert_eq!(proposes.count(), 1, "{e:?}");
    assert_eq!(s.stats().submitted, 1);
    let again = feed(&mut s, &crypto, node(2), Message::Site(signed));
    assert!(again.is_empty(), "a copy is known: {again:?}");
}

#[test]
fn bad_queries_are_dropped_and_a_query_waits_for_its_floor() {
    let (w, mut s, crypto) = setup();
    let q = |c: u64, floor: u64, op: Vec<u8>| {
        let (client, floor) = (ClientId(c), Seq(floor));
        Message::Query(Query {
            client,
            rid: 1,
            floor,
            op,
        })
    };
    let get = common::read_op();
    let (c1, c2, c9) = (ClientId(1), ClientId(2), ClientId(99));
    let (c1, c2, c9) = (Addr::Client(c1), Addr::Client(c2), Addr::Client(c9));
    // another endpoint than the client, a client of another site, an
    // unknown client, an operation over the size limit
    refused(&mut s, &crypto, c1, q(2, 0, get.clone()), Fault::BadQuery);
    refused(&mut s, &crypto, c1, q(1, 0, get.clone()), Fault::WrongSite);
    refused(&mut s, &crypto, c9, q(99, 0, get.clone()), Fault::BadQuery);
    let big = vec![0; w.cfg.max_update_op() + 1];
    refused(&mut s, &crypto, c2, q(2, 0, big), Fault::TooLarge);
    // a query reply sent to a server
    let reply = QueryReply {
        server: NodeId(5),
        client: ClientId(2),
        rid: 1,
        executed: Seq(0),
        result: None,
    };
    let r = Message::QueryReply(reply);
    refused(&mut s, &crypto, node(5), r, Fault::Unexpected);
    // a valid query at floor 0 is answered from the (empty) state; at a
    // floor not executed yet it is held, not answered
    let effects = feed(&mut s, &crypto, c2, q(2, 0, get.clone()));
    let answers: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send {
                to,
                msg: Message::QueryReply(r),
            } => Some((*to, r.clone())),
            _ => None,
        })
        .collect();
    let nil = byzscale_apps::kv::KvReply::Nil.encode();
    assert_eq!(answers.len(), 1, "{effects:?}");
    assert_eq!(answers[0].0, c2);
    assert_eq!(answers[0].1.result, Some(nil));
    assert_eq!(answers[0].1.executed, Seq(0));
    let effects = feed(&mut s, &crypto, c2, q(2, 1, get));
    assert!(faults(&effects).is_empty(), "{effects:?}");
    let sent = effects.iter().any(|e| matches!(e, Effect::Send { .. }));
    assert!(!sent, "held: {effects:?}");
    assert_eq!(s.held().queries, 1);
    assert_eq!(s.stats().reads, 1);
}
