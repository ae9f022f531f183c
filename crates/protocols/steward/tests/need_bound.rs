//! The `Need` amplification bound: a Byzantine server flooding other
//! sites' servers with `Need`s gets at most one answer per asked server per
//! half tick, each at most `Config::need_bytes` of signed words beyond its
//! first; the rest is dropped, counted and, past `NEED_FLOOD` in one
//! period, reported as `st-need-flood` naming it. Correct servers still
//! complete every update meanwhile.

mod common;

use byzscale_core::protocol::{Time, MILLIS, SECS};
use byzscale_core::threshold::KeyShare;
use byzscale_core::{Addr, NodeId};
use byzscale_sim::adversary::{Hooks, Intercept};
use byzscale_sim::engine::{Actor, ActorCx, NodeIdx, ProtocolActor, Role, TraceKind};
use byzscale_smr as smr;
use byzscale_steward::server::{self, Stats};
use byzscale_steward::{client, GlobalView, Message, Seq};
use common::{correct_servers, op, s1_violations, In, Kv, Out, World};

/// An input the flooder takes as "send a burst now" (never given to its
/// honest inside).
fn trigger() -> In {
    Role::Replica(server::Input::Smr(smr::replica::Input::Suspect))
}

/// Needs per target per burst.
const BURST: u64 = 4;

/// A Byzantine server that, besides running honestly, sends `BURST` Needs
/// for seq 1 to every server of the other sites on each trigger.
struct Flooder {
    targets: Vec<Addr>,
}

impl Hooks<Message, In, Out> for Flooder {
    fn input(
        &mut self,
        _: &dyn Actor<Message, In, Out>,
        input: In,
        cx: &mut ActorCx<'_, Message, Out>,
    ) -> Option<In> {
        if !matches!(
            input,
            Role::Replica(server::Input::Smr(smr::replica::Input::Suspect))
        ) {
            return Some(input);
        }
        for _ in 0..BURST {
            let (gv, seq) = (GlobalView(0), Seq(1));
            cx.multicast(self.targets.clone(), Message::Need { gv, seq });
        }
        None
    }
}

/// The summed stats of the servers at `nodes`.
fn sum(w: &World, nodes: &[NodeIdx]) -> Stats {
    let mut t = Stats::default();
    for n in nodes {
        let s = w.sim.protocol::<Kv>(*n).expect("a server").stats();
        t.need_answers += s.need_answers;
        t.need_words += s.need_words;
        t.need_bytes += s.need_bytes;
        t.needs_dropped += s.needs_dropped;
        t.need_truncated += s.need_truncated;
    }
    t
}

/// Copies delivered to `node` from servers of other sites in [from, to]:
/// (count, bytes, largest).
fn wan_in(w: &World, node: NodeIdx, from: Time, to: Time) -> (u64, u64, u64) {
    let site = w.site_of(w.sim.addr(node));
    let (mut n, mut bytes, mut largest) = (0, 0, 0);
    for e in w.sim.trace().iter().filter(|e| e.node == node) {
        let TraceKind::Deliver { from: a, bytes: b } = e.kind else {
            continue;
        };
        let remote = w.site_of(a).is_some_and(|s| Some(s) != site);
        if remote && e.at >= from && e.at <= to {
            (n, bytes, largest) = (n + 1, bytes + b as u64, largest.max(b as u64));
        }
    }
    (n, bytes, largest)
}

#[test]
fn a_need_flood_gets_bounded_answers_and_correct_servers_complete() {
    let flooder = NodeId(5); // site 1, not its representative
    let wrap = |me: NodeId, _: &KeyShare, s: Kv| -> Box<dyn Actor<Message, In, Out>> {
        let inner: Box<dyn Actor<Message, In, Out>> = Box::new(ProtocolActor::replica(s));
        if me != flooder {
            return inner;
        }
        let others = [0u32, 2].map(|s| (4 * s..4 * s + 4).map(|n| Addr::Node(NodeId(n))));
        let targets = others.into_iter().flatten().collect();
        Box::new(Intercept::new(inner, Flooder { targets }))
    };
    let cap = 1000;
    let mut w = World::with_config(51, 3, 2, |c| c.need_bytes = cap, wrap);
    let fidx = w.servers[1][1];
    w.sim.set_byzantine(fidx, true);
    let asked: Vec<NodeIdx> = [w.servers[0].clone(), w.servers[2].clone()].concat();
    let one = w.run(2, 300 * SECS, 2 * SECS);

    // a quiet phase: only the flood, a burst every millisecond for 2 s
    let (t0, span) = (w.sim.now(), 2 * SECS);
    let bursts = span / MILLIS;
    for k in 0..bursts {
        w.sim.schedule_input(t0 + k * MILLIS, fidx, trigger());
    }
    let before = sum(&w, &asked);
    let mut quiet = common::Seen::default();
    w.sim.run_for(span + 100 * MILLIS, &mut quiet); // the last answers land
    let t1 = w.sim.now();
    let after = sum(&w, &asked);
    let answers = after.need_answers - before.need_answers;
    let words = after.need_words - before.need_words;
    let dropped = after.needs_dropped - before.needs_dropped;
    let sent = bursts * BURST * asked.len() as u64;
    // one answer per asked server per half tick
    let per_server = (t1 - t0) / (w.cfg.tick / 2) + 1;
    assert!(
        answers > 0 && answers <= asked.len() as u64 * per_server,
        "{answers}"
    );
    assert_eq!(answers + dropped, sent, "every Need answered or dropped");
    // each answer cut at the byte cap (beyond its first word)
    let (copies, bytes, largest) = wan_in(&w, fidx, t0, t1);
    assert_eq!(
        copies, words,
        "the flooder got the answers and nothing else"
    );
    assert!(bytes <= answers * (cap as u64 + largest), "{bytes} bytes");
    assert!(
        after.need_truncated > before.need_truncated,
        "the cap cut answers"
    );
    assert!(words < answers * 2 * byzscale_steward::server::RESEND_SEQS);

    // the flood goes on while every client writes again: all complete
    let t2 = w.sim.now();
    for k in 0..10 * SECS / MILLIS {
        w.sim.schedule_input(t2 + k * MILLIS, fidx, trigger());
    }
    let writes = w.clients.iter().flat_map(|(_, i)| [*i, *i]);
    let inputs = writes
        .map(|i| (t2, i, client::Input::Submit(op())))
        .collect();
    let two = w.run_inputs(inputs, w.clients.len() * 2, t2 + 120 * SECS, 2 * SECS);
    for (c, _) in &w.clients {
        let done = two.completed.get(&Addr::Client(*c)).map(Vec::as_slice);
        let ts: Vec<u64> = done.unwrap_or(&[]).iter().map(|d| d.0).collect();
        assert_eq!(ts, vec![3, 4], "{c} completes under the flood");
    }
    assert!(s1_violations(&w, &two).is_empty() && s1_violations(&w, &one).is_empty());
    for n in correct_servers(&w) {
        let runs = [&one, &two].map(|s| s.executed.get(&n).map_or(0, Vec::len));
        assert_eq!(runs[0] + runs[1], w.clients.len() * 4, "{n:?}");
    }
    // the flood is reported, naming the flooder only
    let faults = &w.sim.stats().fault_log;
    let flagged = faults.iter().filter(|f| f.kind == "st-need-flood").count();
    assert!(flagged > 0, "{faults:?}");
    assert!(
        faults.iter().all(|f| f.culprit == Addr::Node(flooder)),
        "{faults:?}"
    );
}
