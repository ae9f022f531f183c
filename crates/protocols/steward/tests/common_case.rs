//! Steward's common case (plan step 2) on the simulator engine: S sites of
//! four servers (f = 1), WAN between sites, clients at every site, real
//! crypto. Checked: S1 (every correct server executes the same i-th update),
//! S2 (only updates clients submitted), every client's updates complete with
//! results that place them in one order, and the wide-area messages per
//! update are O(S²), far below a flat BFT's O(N²). Then a Byzantine server
//! sending bad threshold shares: its site still speaks, and the
//! representative records the fault naming it.

mod common;

use byzscale_apps::kv::KvReply;
use byzscale_core::protocol::SECS;
use byzscale_core::threshold::KeyShare;
use byzscale_core::{Addr, ClientId, NodeId};
use byzscale_scenario_steward::attacks::BadShares;
use byzscale_sim::adversary::Byzantine;
use byzscale_sim::engine::{Actor, NodeIdx, ProtocolActor};
use byzscale_steward::{Message, Update};
use common::{op, Execution, In, Kv, Out, Seen, World};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

fn honest(_: NodeId, _: &KeyShare, s: Kv) -> Box<dyn Actor<Message, In, Out>> {
    Box::new(ProtocolActor::replica(s))
}

/// The correct servers' nodes.
fn correct(w: &World) -> Vec<NodeIdx> {
    let all = w.servers.iter().flatten().copied();
    all.filter(|n| !w.sim.is_byzantine(*n)).collect()
}

/// Every client completed `per_client` updates, in timestamp order, and
/// the results (the shared counter after each) are 1..=total, each once.
fn check_completion(w: &World, seen: &Seen, per_client: usize) {
    let mut results = BTreeSet::new();
    for (c, _) in &w.clients {
        let done = &seen.completed[&Addr::Client(*c)];
        let ts: Vec<u64> = done.iter().map(|(ts, _, _)| *ts).collect();
        let want: Vec<u64> = (1..=per_client as u64).collect();
        assert_eq!(ts, want, "{c} completes every update, in order");
        for (ts, _, r) in done {
            let Ok(KvReply::Int(v)) = KvReply::decode(r) else {
                panic!("{c}#{ts}: {r:?} is not an INCR result")
            };
            assert!(results.insert(v), "{c}#{ts}: result {v} twice");
        }
    }
    let total = (w.clients.len() * per_client) as i64;
    assert_eq!(results, (1..=total).collect(), "one order of all updates");
}

/// S1 and S2 over every correct server's executions, and that each
/// executed every update and holds the counter they all agree on.
fn check_safety(w: &World, seen: &Seen, per_client: usize) {
    let total = w.clients.len() * per_client;
    let known: BTreeSet<ClientId> = w.clients.iter().map(|(c, _)| *c).collect();
    // per seq, the first correct server's execution
    let mut by_seq: BTreeMap<u64, (NodeIdx, Execution)> = BTreeMap::new();
    for n in correct(w) {
        let log = seen.executed.get(&n).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(log.len(), total, "{n:?} executes every update");
        let mut once = BTreeSet::new();
        for (i, (seq, c, ts, d, r)) in log.iter().enumerate() {
            assert_eq!(seq.0, i as u64 + 1, "{n:?}: seqs in order, no gap");
            // S2: a known client's update with the op that client sent
            assert!(known.contains(c) && (1..=per_client as u64).contains(ts));
            assert_eq!(*d, Update::content_digest(*c, *ts, &op()), "S2 at {n:?}");
            assert!(once.insert((*c, *ts)), "{n:?} runs {c}#{ts} twice");
            // S1: the same i-th update (and result) at every correct server
            let this = (*seq, *c, *ts, *d, r.clone());
            let (m, first) = by_seq.entry(seq.0).or_insert((n, this.clone()));
            assert_eq!(*first, this, "S1: seq {} at {n:?} and {m:?}", seq.0);
        }
        let s = w.sim.protocol::<Kv>(n).expect("a server");
        let ctr = s.app().model().get(b"ctr").map(<[u8]>::to_vec);
        assert_eq!(ctr, Some(total.to_string().into_bytes()), "{n:?}'s state");
        let h = s.held();
        let left = (h.seqs, h.ops_queued, h.ops_outstanding);
        assert_eq!(left, (0, 0, 0), "{n:?} keeps nothing once all ran");
    }
}

/// Wide-area copies per update stay within Steward's O(S²) budget: the
/// forward to the leading site (3f+1 copies) plus one site message per
/// ordered pair of sites to f+1 servers each, S(S-1)(f+1); a flat BFT of
/// the same N servers sends O(N²) per update, most of it across sites.
fn check_wan(w: &World, per_client: usize) {
    let (s, f) = (w.cfg.sites.len() as u64, w.f as u64);
    let n = 3 * f + 1;
    let updates = (w.clients.len() * per_client) as u64;
    let budget = n + s * (s - 1) * (f + 1);
    let flat = (s * n) * (s * n - 1);
    let wan = w.wan_deliveries();
    assert!(
        wan <= updates * budget,
        "{wan} WAN copies for {updates} updates, over {budget} per update"
    );
    assert!(
        budget * 3 < flat,
        "the budget {budget} is not O(N²) = {flat}"
    );
    // each Proposal and Accept of the S-1 other sites reaches the others
    let least = updates * (s - 1) * (f + 1) * (s - 1);
    assert!(
        wan >= least,
        "{wan} WAN copies: a site message went missing"
    );
}

fn common_case(seed: u64, sites: usize, per_site: usize, per_client: usize) {
    let mut w = World::new(seed, sites, per_site, honest);
    let seen = w.run(per_client, 60 * SECS, SECS);
    check_completion(&w, &seen, per_client);
    check_safety(&w, &seen, per_client);
    check_wan(&w, per_client);
    let faults = &w.sim.stats().fault_log;
    assert!(faults.is_empty(), "faults in an honest run: {faults:?}");
}

#[test]
fn three_sites_order_every_update_once_with_o_s_squared_wan_messages() {
    common_case(3, 3, 2, 5);
}

#[test]
fn five_sites_order_every_update_once_with_o_s_squared_wan_messages() {
    common_case(5, 5, 1, 3);
}

#[test]
fn a_bad_share_is_named_and_the_site_still_speaks() {
    // n1 is a backup of site 0, the leading site: every share it sends its
    // representative (n0) for every Proposal is invalid
    let bad = NodeId(1);
    let wrap = |me: NodeId, key: &KeyShare, s: Kv| -> Box<dyn Actor<Message, In, Out>> {
        let actor = ProtocolActor::replica(s);
        if me == bad {
            let mutator = Rc::new(BadShares(key.clone()));
            Box::new(Byzantine::corrupt(actor, mutator, 1.0))
        } else {
            Box::new(actor)
        }
    };
    let mut w = World::new(11, 3, 2, wrap);
    let bad_idx = w.servers[0][1];
    w.sim.set_byzantine(bad_idx, true);
    let per_client = 4;
    let seen = w.run(per_client, 60 * SECS, SECS);
    check_completion(&w, &seen, per_client);
    check_safety(&w, &seen, per_client);
    let faults = &w.sim.stats().fault_log;
    let named: Vec<_> = faults.iter().filter(|f| f.kind == "st-bad-share").collect();
    assert!(!named.is_empty(), "the bad shares are recorded: {faults:?}");
    for f in &named {
        assert_eq!(f.culprit, Addr::Node(bad), "only n1 is named: {f:?}");
        assert_eq!(f.reporter, Addr::Node(NodeId(0)), "by the representative");
    }
    let other: Vec<_> = faults.iter().filter(|f| f.kind != "st-bad-share").collect();
    assert!(other.is_empty(), "no other faults: {other:?}");
    let rep = w.sim.protocol::<Kv>(w.servers[0][0]).expect("n0");
    let total = (w.clients.len() * per_client) as u64;
    assert_eq!(
        rep.stats().spoken,
        total,
        "a Proposal per update despite n1"
    );
}
