//! Plan step 3, item 2: the global view change (§4.2). The leading site
//! partitioned from the others is replaced by a global view change (the
//! other sites' global timers, GlobalVc votes of a majority, CONSTRUCT-ARU,
//! constraints, re-proposal) and every update completes, S1 and S2 holding
//! across the change, site 0 catching up once the partition heals; a
//! leading site whose representative withholds its Proposals is fixed by a
//! local view change alone; and with the threshold key in the adversary's
//! hands (more than f faulty servers in the leading site) two different
//! updates are executed at one seq, which the S1 checker reports.

mod common;

use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::protocol::{MILLIS, SECS};
use byzscale_core::threshold::KeyShare;
use byzscale_core::{Addr, ClientId, NodeId};
use byzscale_scenario_steward::attacks::{forged_proposal, withholds};
use byzscale_sim::adversary::intercept::Event;
use byzscale_sim::adversary::{Hooks, Intercept};
use byzscale_sim::engine::{Actor, ActorCx, ProtocolActor};
use byzscale_sim::net_model::Partition;
use byzscale_steward::{Message, Signed, SiteId, Update};
use common::{correct_servers, identity, op, s1_violations, Deaf, In, Kv, Out, Seen, World};
use std::collections::BTreeSet;

fn honest(_: NodeId, _: &KeyShare, s: Kv) -> Box<dyn Actor<Message, In, Out>> {
    Box::new(ProtocolActor::replica(s))
}

/// Every client completed `per_client` updates in order; every correct
/// server executed each update once, each a submitted one (S2), and no two
/// correct servers differ at a seq (S1).
fn check(w: &World, seen: &Seen, per_client: usize) {
    for (c, _) in &w.clients {
        let done = seen.completed.get(&Addr::Client(*c)).map(Vec::as_slice);
        let ts: Vec<u64> = done.unwrap_or(&[]).iter().map(|(ts, _, _)| *ts).collect();
        let want: Vec<u64> = (1..=per_client as u64).collect();
        assert_eq!(ts, want, "{c} completes every update, in order");
    }
    let violations = s1_violations(w, seen);
    assert!(violations.is_empty(), "S1: {violations:?}");
    let total = w.clients.len() * per_client;
    for n in correct_servers(w) {
        let log = seen.executed.get(&n).map(Vec::as_slice).unwrap_or(&[]);
        let mut once = BTreeSet::new();
        for (seq, c, ts, d, _) in log {
            assert_eq!(
                *d,
                Update::content_digest(*c, *ts, &op()),
                "S2 at {n:?} seq {}",
                seq.0
            );
            assert!(once.insert((*c, *ts)), "{n:?} runs {c}#{ts} twice");
        }
        assert_eq!(once.len(), total, "{n:?} executes every update");
        let seqs: Vec<u64> = log.iter().map(|e| e.0 .0).collect();
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{n:?}: seq order");
    }
}

#[test]
fn a_partitioned_leading_site_is_replaced_and_every_update_completes() {
    let mut w = World::new(31, 3, 2, honest);
    // site 0 (leading in gv 0) and its clients cut off from the rest from
    // 150 ms to 20 s; the other sites keep serving their clients meanwhile
    let side = |s: usize| -> Vec<Addr> {
        let servers = w.cfg.sites[s].members.iter().map(|m| Addr::Node(*m));
        let clients = w
            .clients
            .iter()
            .filter(|(c, _)| w.cfg.clients[c].0 as usize == s);
        servers
            .chain(clients.map(|(c, _)| Addr::Client(*c)))
            .collect()
    };
    let (zero, rest) = (side(0), [side(1), side(2)].concat());
    w.sim
        .add_partition(Partition::new(150 * MILLIS, 20 * SECS, vec![zero, rest]));
    let per_client = 8;
    let seen = w.run(per_client, 300 * SECS, 5 * SECS);
    check(&w, &seen, per_client);
    // the view change is visible: sites 1 and 2 installed a later gv, and
    // every correct server ends in a gv site 0 does not lead
    let others: Vec<_> = w.servers[1..].iter().flatten().copied().collect();
    let moved = seen
        .global_views
        .iter()
        .filter(|(n, gv)| others.contains(n) && gv.0 >= 1);
    assert!(moved.count() >= others.len(), "{:?}", seen.global_views);
    for n in correct_servers(&w) {
        let gv = w.sim.protocol::<Kv>(n).unwrap().machine().global_view();
        assert_ne!(w.cfg.leader_site(gv), SiteId(0), "{n:?} in {gv:?}");
    }
    let faults = &w.sim.stats().fault_log;
    assert!(faults.is_empty(), "no faults: {faults:?}");
}

#[test]
fn a_withholding_representative_is_replaced_without_a_global_view_change() {
    let bad = NodeId(0); // site 0's representative in local view 0
    let wrap = |me: NodeId, _: &KeyShare, s: Kv| -> Box<dyn Actor<Message, In, Out>> {
        let inner: Box<dyn Actor<Message, In, Out>> = Box::new(ProtocolActor::replica(s));
        if me == bad {
            Deaf::around(inner, withholds)
        } else {
            inner
        }
    };
    let mut w = World::new(32, 3, 2, wrap);
    let bad_idx = w.servers[0][0];
    w.sim.set_byzantine(bad_idx, true);
    let per_client = 3;
    let seen = w.run(per_client, 120 * SECS, 2 * SECS);
    check(&w, &seen, per_client);
    let site0 = &w.servers[0];
    let local = seen
        .local_views
        .iter()
        .any(|(n, v)| site0.contains(n) && *v >= 1);
    assert!(
        local,
        "site 0 changed representative: {:?}",
        seen.local_views
    );
    assert!(seen.global_views.is_empty(), "{:?}", seen.global_views);
    let suspicions: u64 = site0[1..]
        .iter()
        .map(|n| w.sim.protocol::<Kv>(*n).unwrap().stats().local_suspicions)
        .sum();
    assert!(suspicions > 0, "the local timer fired");
}

/// A server that, on start, also sends forged site messages.
struct Inject {
    sends: Vec<(Addr, Message)>,
}

impl Hooks<Message, In, Out> for Inject {
    fn after(
        &mut self,
        event: Event,
        _: &dyn Actor<Message, In, Out>,
        cx: &mut ActorCx<'_, Message, Out>,
    ) {
        if event == Event::Start {
            for (to, m) in self.sends.drain(..) {
                cx.send(to, m);
            }
        }
    }
}

/// Site 0's Proposal of `u` at seq 1, gv 0, signed with 2f+1 key shares.
fn forged(keys: &[KeyShare], key: &byzscale_core::threshold::GroupKey, u: Update) -> Signed {
    forged_proposal(keys, key, SiteId(0), u)
}

fn client_update(c: u64) -> Update {
    let a = Addr::Client(ClientId(c));
    let crypto = Crypto::new(a, identity(a), CryptoMode::Real);
    Update::signed(&crypto, ClientId(c), 1, op())
}

#[test]
fn with_the_leading_sites_key_the_adversary_breaks_s1_and_the_checker_reports_it() {
    // f+1 = 2 Byzantine servers of site 0 (n0, n1) hold the site's key (as
    // 2f+1 faulty servers would): n0 sends site 1 a Proposal of one update
    // at seq 1, n1 sends site 2 a Proposal of another at the same seq
    let probe = World::new(33, 3, 1, honest);
    let key = probe.cfg.sites[0].key.clone();
    let keys = probe.keys[0].clone();
    let a = forged(&keys, &key, client_update(2));
    let b = forged(&keys, &key, client_update(3));
    let to = |s: usize, m: &Signed| -> Vec<(Addr, Message)> {
        let members = probe.cfg.sites[s].members.iter();
        members
            .map(|n| (Addr::Node(*n), Message::Site(m.clone())))
            .collect()
    };
    let (to_1, to_2) = (to(1, &a), to(2, &b));
    let wrap = |me: NodeId, _: &KeyShare, s: Kv| -> Box<dyn Actor<Message, In, Out>> {
        let inner: Box<dyn Actor<Message, In, Out>> = Box::new(ProtocolActor::replica(s));
        let sends = match me.0 {
            0 => to_1.clone(),
            1 => to_2.clone(),
            _ => return inner,
        };
        Box::new(Intercept::new(inner, Inject { sends }))
    };
    let mut w = World::new(33, 3, 1, wrap);
    for i in 0..2 {
        let idx = w.servers[0][i];
        w.sim.set_byzantine(idx, true);
    }
    let seen = w.run(0, 5 * SECS, 0);
    let violations = s1_violations(&w, &seen);
    assert!(!violations.is_empty(), "the checker reports the attack");
    assert!(
        violations.iter().all(|v| v.starts_with("seq 1:")),
        "{violations:?}"
    );
}
