//! Plan step 4: local read-only queries (§4.3). A client's read is
//! answered by f+1 matching servers of its own site alone, from their state
//! after the global prefix they executed: it reads the client's own writes
//! and every write completed at its site, crosses no WAN link, survives f
//! servers of the site answering garbage, and at a site cut off from the
//! others it is served — stale, as documented: not linearizable across
//! sites, but a value the global order produced and monotone per client.

mod common;

use byzscale_apps::kv::KvReply;
use byzscale_core::protocol::{Time, MILLIS, SECS};
use byzscale_core::threshold::KeyShare;
use byzscale_core::{Addr, NodeId};
use byzscale_sim::adversary::{Hooks, Intercept};
use byzscale_sim::engine::{Actor, ActorCx, NodeIdx, ProtocolActor};
use byzscale_sim::net_model::Partition;
use byzscale_steward::{client, Message, QueryReply, Seq, SiteId};
use common::{correct_servers, counter, op, read_op, s1_violations, In, Kv, Out, Seen, World};

fn honest(_: NodeId, _: &KeyShare, s: Kv) -> Box<dyn Actor<Message, In, Out>> {
    Box::new(ProtocolActor::replica(s))
}

fn submit() -> client::Input {
    client::Input::Submit(op())
}
fn read() -> client::Input {
    client::Input::Read(read_op())
}

/// `n` inputs `input()` for every client in `clients`, at `at`.
fn inputs(
    clients: &[(byzscale_core::ClientId, NodeIdx)],
    at: Time,
    n: usize,
    input: fn() -> client::Input,
) -> Vec<(Time, NodeIdx, client::Input)> {
    let each = clients.iter().flat_map(|(_, idx)| (0..n).map(|_| *idx));
    each.map(|idx| (at, idx, input())).collect()
}

/// The counter's value after the global prefix up to `seq`, as a correct
/// server of `site` executed it (the number of updates at seqs ≤ `seq`).
fn value_after(w: &World, seen: &[&Seen], site: usize, seq: Seq) -> i64 {
    let n = w.servers[site]
        .iter()
        .copied()
        .find(|n| !w.sim.is_byzantine(*n))
        .expect("a correct server");
    let logs = seen.iter().filter_map(|s| s.executed.get(&n)).flatten();
    logs.filter(|e| e.0 <= seq).count() as i64
}

/// The counter value of every read of `client`, with the read checked to
/// be answered by the client's own site.
fn read_values(w: &World, seen: &Seen, c: Addr) -> Vec<(Seq, i64)> {
    let home = w.cfg.clients[&c.client().expect("a client")];
    let reads = seen.reads.get(&c).map(Vec::as_slice).unwrap_or(&[]);
    let check = |(_, site, executed, result): &(u64, SiteId, Seq, Vec<u8>)| {
        assert_eq!(*site, home, "{c:?} reads at its own site");
        (*executed, counter(result).expect("a counter value"))
    };
    reads.iter().map(check).collect()
}

#[test]
fn a_read_returns_completed_writes_and_crosses_no_wan_link() {
    let mut w = World::new(41, 3, 2, honest);
    // each client: three updates, then a read (its own writes are visible)
    let mut first = inputs(&w.clients, 0, 3, submit);
    first.extend(inputs(&w.clients, 0, 1, read));
    let want = w.clients.len() * 4;
    let one = w.run_inputs(first, want, 300 * SECS, 5 * SECS);
    let total = (w.clients.len() * 3) as i64;
    for (c, _) in &w.clients {
        let a = Addr::Client(*c);
        let writes = one.completed.get(&a).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(writes.len(), 3, "{c} completes its updates");
        let own = counter(&writes[2].2).expect("a counter");
        let reads = read_values(&w, &one, a);
        assert_eq!(reads.len(), 1, "{c} completes its read");
        let (executed, v) = reads[0];
        assert!(v >= own, "{c} reads its own write: {v} < {own}");
        assert!(executed >= writes[2].1, "{c}: the floor was kept");
        let home = w.cfg.clients[c].0 as usize;
        assert_eq!(v, value_after(&w, &[&one], home, executed), "{c}");
    }
    // every write completed: a read-only phase at every site sees them all
    // and sends no message between sites
    let t0 = w.sim.now();
    let second = inputs(&w.clients, t0, 2, read);
    let two = w.run_inputs(second, w.clients.len() * 2, t0 + 60 * SECS, SECS);
    for (c, _) in &w.clients {
        let reads = read_values(&w, &two, Addr::Client(*c));
        let values: Vec<i64> = reads.iter().map(|r| r.1).collect();
        assert_eq!(
            values,
            vec![total, total],
            "{c} reads every completed write"
        );
    }
    assert_eq!(w.wan_deliveries_since(t0), 0, "reads stay inside sites");
    let answered: u64 = correct_servers(&w)
        .iter()
        .map(|n| w.sim.protocol::<Kv>(*n).unwrap().stats().reads)
        .sum();
    assert!(answered >= (w.clients.len() * 3 * 2) as u64, "{answered}");
    let faults = &w.sim.stats().fault_log;
    assert!(faults.is_empty(), "no faults: {faults:?}");
}

/// A Byzantine server answering every query at once with `value`, as of
/// the query's floor (`at_floor`) or of a far seq; everything else it does
/// honestly.
struct Liar {
    me: NodeId,
    value: Vec<u8>,
    at_floor: bool,
}

impl Hooks<Message, In, Out> for Liar {
    fn message(
        &mut self,
        _: &dyn Actor<Message, In, Out>,
        from: Addr,
        msg: Message,
        cx: &mut ActorCx<'_, Message, Out>,
    ) -> Option<Message> {
        let Message::Query(q) = msg else {
            return Some(msg);
        };
        let executed = if self.at_floor { q.floor } else { Seq(1 << 40) };
        let reply = QueryReply {
            server: self.me,
            client: q.client,
            rid: q.rid,
            executed,
            result: Some(self.value.clone()),
        };
        cx.send(from, Message::QueryReply(reply));
        None
    }
}

#[test]
fn f_servers_answering_garbage_do_not_fool_a_reader() {
    let liar = NodeId(4); // site 1's first server (f = 1)
    let wrap = |me: NodeId, k: &KeyShare, s: Kv| -> Box<dyn Actor<Message, In, Out>> {
        let inner = honest(me, k, s);
        if me == liar {
            let value = KvReply::Int(-7).encode();
            let at_floor = false;
            Box::new(Intercept::new(
                inner,
                Liar {
                    me,
                    value,
                    at_floor,
                },
            ))
        } else {
            inner
        }
    };
    let mut w = World::new(42, 3, 2, wrap);
    let liar_idx = w.servers[1][0];
    w.sim.set_byzantine(liar_idx, true);
    let writes = inputs(&w.clients, 0, 2, submit);
    let want = w.clients.len() * 2;
    let one = w.run_inputs(writes, want, 300 * SECS, 5 * SECS);
    assert!(s1_violations(&w, &one).is_empty());
    let total = want as i64;
    let t0 = w.sim.now();
    let reads = inputs(&w.clients, t0, 3, read);
    let two = w.run_inputs(reads, w.clients.len() * 3, t0 + 60 * SECS, SECS);
    for (c, _) in &w.clients {
        let values = read_values(&w, &two, Addr::Client(*c));
        let v: Vec<i64> = values.iter().map(|r| r.1).collect();
        assert_eq!(v, vec![total; 3], "{c} reads the right value");
        for (executed, _) in values {
            assert!(executed.0 <= total as u64, "{c}: the liar's seq ignored");
        }
    }
    let answered = w.sim.protocol::<Kv>(liar_idx).unwrap().stats().reads;
    assert_eq!(answered, 0, "the liar never ran a query honestly");
}

/// Site `s`'s servers and clients.
fn side(w: &World, s: usize) -> Vec<Addr> {
    let servers = w.cfg.sites[s].members.iter().map(|m| Addr::Node(*m));
    let clients = w
        .clients
        .iter()
        .filter(|(c, _)| w.cfg.clients[c].0 as usize == s);
    servers
        .chain(clients.map(|(c, _)| Addr::Client(*c)))
        .collect()
}

#[test]
fn a_cut_off_site_serves_stale_reads_that_never_go_back() {
    let mut w = World::new(43, 3, 2, honest);
    let phase1 = inputs(&w.clients, 0, 2, submit);
    let base = (w.clients.len() * 2) as i64;
    let one = w.run_inputs(phase1, base as usize, 300 * SECS, 2 * SECS);
    // site 2 cut off; sites 0 and 1 (a majority, the leading site with
    // them) go on ordering updates
    let t0 = w.sim.now();
    let (cut, rest) = (side(&w, 2), [side(&w, 0), side(&w, 1)].concat());
    let heal = t0 + 30 * SECS;
    w.sim
        .add_partition(Partition::new(t0, heal, vec![cut, rest]));
    let (far, near): (Vec<_>, Vec<_>) = w
        .clients
        .iter()
        .partition(|(c, _)| w.cfg.clients[c] == SiteId(2));
    let phase2 = inputs(&near, t0, 3, submit);
    let two = w.run_inputs(phase2, near.len() * 3, heal - 10 * SECS, 0);
    let ahead = two.completed.values().flatten();
    let ahead = ahead
        .filter_map(|(_, _, r)| counter(r))
        .max()
        .expect("writes");
    assert_eq!(
        ahead,
        base + (near.len() * 3) as i64,
        "the majority went on"
    );
    // reads at the cut-off site complete, from its own (older) prefix
    let t1 = w.sim.now();
    let three = w.run_inputs(inputs(&far, t1, 1, read), far.len(), heal - MILLIS, 0);
    for (c, _) in &far {
        let reads = read_values(&w, &three, Addr::Client(*c));
        assert_eq!(reads.len(), 1, "{c} is served while cut off");
        let (executed, v) = reads[0];
        assert!(v < ahead, "{c}: stale, not linearizable ({v} vs {ahead})");
        assert!(v >= base, "{c}: at least its site's completed writes");
        assert_eq!(v, value_after(&w, &[&one, &two, &three], 2, executed));
    }
    // healed: one update at the cut-off site brings it up to date; its
    // client's reads and the other's never go back, and end at the top
    let (writer, reader) = (far[0].1, far[1].1);
    let mut last = vec![(heal, writer, submit()), (heal, writer, read())];
    last.extend([(heal, reader, read()), (heal + 5 * SECS, reader, read())]);
    let four = w.run_inputs(last, 4, heal + 120 * SECS, 0);
    let all = [&one, &two, &three, &four];
    let top = ahead + 1;
    for (c, idx) in &far {
        let mut values: Vec<(Seq, i64)> = read_values(&w, &three, Addr::Client(*c));
        values.extend(read_values(&w, &four, Addr::Client(*c)));
        let v: Vec<i64> = values.iter().map(|r| r.1).collect();
        assert!(v.windows(2).all(|p| p[0] <= p[1]), "{c}: monotone {v:?}");
        for (executed, val) in &values {
            assert_eq!(*val, value_after(&w, &all, 2, *executed), "{c}");
        }
        if *idx == writer {
            assert_eq!(v.last(), Some(&top), "{c} reads its own write");
        }
    }
    let faults = &w.sim.stats().fault_log;
    assert!(faults.is_empty(), "no faults: {faults:?}");
}

#[test]
fn a_lagging_server_holds_a_read_until_its_floor_and_a_stale_liar_is_outvoted() {
    // site 1: n6 (correct) cut off from everyone while a client of site 1
    // writes, so it lags; n7 (Byzantine) answers every query with the
    // value before that write, claiming the query's floor. Without the
    // floor, n6's stale answer and n7's would be f+1 matching.
    let base = 6i64; // 6 clients, one update each
    let liar = NodeId(7);
    let wrap = |me: NodeId, k: &KeyShare, s: Kv| -> Box<dyn Actor<Message, In, Out>> {
        let inner = honest(me, k, s);
        if me != liar {
            return inner;
        }
        let value = KvReply::Int(base).encode();
        let at_floor = true;
        Box::new(Intercept::new(
            inner,
            Liar {
                me,
                value,
                at_floor,
            },
        ))
    };
    let mut w = World::new(44, 3, 2, wrap);
    let (lagging, liar_idx) = (w.servers[1][2], w.servers[1][3]);
    w.sim.set_byzantine(liar_idx, true);
    let one = w.run_inputs(inputs(&w.clients, 0, 1, submit), 6, 300 * SECS, 2 * SECS);
    assert_eq!(one.completed.len(), base as usize);
    let t0 = w.sim.now();
    let heal = t0 + 5 * SECS;
    let n6 = vec![w.sim.addr(lagging)];
    let everyone: Vec<Addr> = w.sim.nodes().map(|n| w.sim.addr(n)).collect();
    w.sim
        .add_partition(Partition::new(t0, heal, vec![n6, everyone]));
    let (c, idx) = w.clients[1]; // a client of site 1
    assert_eq!(w.cfg.clients[&c], SiteId(1));
    let last = vec![(t0, idx, submit()), (heal + MILLIS, idx, read())];
    let two = w.run_inputs(last, 2, heal + 60 * SECS, 0);
    let a = Addr::Client(c);
    let write = &two.completed[&a][0];
    assert_eq!(counter(&write.2), Some(base + 1));
    let reads = read_values(&w, &two, a);
    assert_eq!(reads.len(), 1, "{c} completes its read");
    assert_eq!(reads[0].1, base + 1, "{c} reads its own write");
    assert!(reads[0].0 >= write.1, "as of its write's seq at least");
    let n6 = w.sim.protocol::<Kv>(lagging).unwrap();
    assert!(n6.executed() < write.1, "n6 still lags");
    assert_eq!(n6.held().queries, 1, "n6 holds the read");
    let faults = &w.sim.stats().fault_log;
    assert!(faults.is_empty(), "no faults: {faults:?}");
}

#[test]
fn a_read_the_service_cannot_answer_read_only_is_ordered_as_an_update() {
    let mut w = World::new(45, 3, 1, honest);
    let (c, idx) = w.clients[2];
    let wrong = client::Input::Read(op()); // an increment is not read-only
    let seen = w.run_inputs(
        vec![(0, idx, wrong), (0, idx, read())],
        2,
        60 * SECS,
        2 * SECS,
    );
    let a = Addr::Client(c);
    let done = seen.completed.get(&a).map(Vec::as_slice).unwrap_or(&[]);
    assert_eq!(done.len(), 1, "{c}: the increment was ordered");
    assert_eq!(counter(&done[0].2), Some(1));
    let reads = read_values(&w, &seen, a);
    assert_eq!(reads.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1]);
    for n in correct_servers(&w) {
        let log = seen.executed.get(&n).map(Vec::len).unwrap_or(0);
        assert_eq!(log, 1, "{n:?} executed the one update");
    }
}
