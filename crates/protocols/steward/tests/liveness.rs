//! Plan step 3, item 1: the liveness plumbing of the common case. A lossy
//! network (5% of every message copy dropped, inside sites and between
//! them) still completes every update, through retransmission of site
//! messages, shares and forwards and the Need requests of stuck servers; a
//! leading site's representative that ignores client updates (and the
//! SMR's forwarded requests) is replaced by its site's SMR view change
//! after the other servers submit the updates themselves, without a global
//! view change.

mod common;

use byzscale_core::protocol::SECS;
use byzscale_core::threshold::KeyShare;
use byzscale_core::NodeId;
use byzscale_sim::engine::{Actor, ProtocolActor};
use byzscale_smr as smr;
use byzscale_steward::Message;
use common::{correct_servers, s1_violations, Deaf, In, Kv, Out, World};

fn honest(_: NodeId, _: &KeyShare, s: Kv) -> Box<dyn Actor<Message, In, Out>> {
    Box::new(ProtocolActor::replica(s))
}

/// Every client completed `per_client` updates, in timestamp order.
fn all_complete(w: &World, seen: &common::Seen, per_client: usize) {
    for (c, _) in &w.clients {
        let addr = byzscale_core::Addr::Client(*c);
        let done = seen.completed.get(&addr).map(Vec::as_slice).unwrap_or(&[]);
        let ts: Vec<u64> = done.iter().map(|(ts, _, _)| *ts).collect();
        let want: Vec<u64> = (1..=per_client as u64).collect();
        assert_eq!(ts, want, "{c} completes every update, in order");
    }
}

/// Every correct server executed all `total` updates, and S1 holds.
fn all_executed(w: &World, seen: &common::Seen, total: usize) {
    let violations = s1_violations(w, seen);
    assert!(violations.is_empty(), "S1: {violations:?}");
    for n in correct_servers(w) {
        let log = seen.executed.get(&n).map(Vec::len).unwrap_or(0);
        assert_eq!(log, total, "{n:?} executes every update");
    }
}

#[test]
fn a_lossy_network_still_completes_every_update() {
    let mut w = World::new(21, 3, 2, honest);
    w.sim.net_mut().loss = 0.05;
    let per_client = 4;
    let seen = w.run(per_client, 300 * SECS, 5 * SECS);
    all_complete(&w, &seen, per_client);
    all_executed(&w, &seen, w.clients.len() * per_client);
    assert!(w.sim.stats().dropped_loss > 0, "the network lost messages");
    let servers = correct_servers(&w);
    let stats: Vec<_> = servers
        .iter()
        .map(|n| w.sim.protocol::<Kv>(*n).expect("a server").stats())
        .collect();
    let resent: u64 = stats.iter().map(|s| s.resent + s.acted).sum();
    let needs: u64 = stats.iter().map(|s| s.needs).sum();
    assert!(resent > 0 && needs > 0, "retransmission ran: {stats:?}");
    let faults = &w.sim.stats().fault_log;
    assert!(
        faults.is_empty(),
        "no faults on a lossy network: {faults:?}"
    );
    let gv = w
        .sim
        .protocol::<Kv>(servers[0])
        .unwrap()
        .machine()
        .global_view();
    assert_eq!(gv.0, 0, "loss alone needs no global view change");
}

/// Deaf to client updates in every form: submitted, forwarded by another
/// site, forwarded by the site SMR's request timer.
fn ignores_updates(m: &Message) -> bool {
    matches!(
        m,
        Message::Submit(_) | Message::Forward(_) | Message::Local(smr::Message::Forward(_))
    )
}

#[test]
fn a_representative_ignoring_updates_is_replaced_by_its_site() {
    // n0 is site 0's representative (local view 0) and site 0 leads
    let bad = NodeId(0);
    let wrap = |me: NodeId, _: &KeyShare, s: Kv| -> Box<dyn Actor<Message, In, Out>> {
        let inner: Box<dyn Actor<Message, In, Out>> = Box::new(ProtocolActor::replica(s));
        if me == bad {
            Deaf::around(inner, ignores_updates)
        } else {
            inner
        }
    };
    let mut w = World::new(22, 3, 2, wrap);
    let bad_idx = w.servers[0][0];
    w.sim.set_byzantine(bad_idx, true);
    let per_client = 3;
    let seen = w.run(per_client, 120 * SECS, 2 * SECS);
    all_complete(&w, &seen, per_client);
    all_executed(&w, &seen, w.clients.len() * per_client);
    let site0 = &w.servers[0];
    let replaced = seen
        .local_views
        .iter()
        .any(|(n, v)| site0.contains(n) && *v >= 1);
    assert!(
        replaced,
        "site 0's SMR changed its view: {:?}",
        seen.local_views
    );
    assert!(
        seen.global_views.is_empty(),
        "no global view change: {:?}",
        seen.global_views
    );
    let acted: u64 = site0[1..]
        .iter()
        .map(|n| w.sim.protocol::<Kv>(*n).unwrap().stats().acted)
        .sum();
    assert!(acted > 0, "the other servers of site 0 acted on updates");
    let rep = w.sim.protocol::<Kv>(site0[1]).unwrap();
    assert_ne!(rep.smr().view(), 0, "n0 no longer represents site 0");
}
