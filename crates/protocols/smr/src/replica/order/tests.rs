//! The ordering core alone, ordering a value that is not a batch (as a DQBFT
//! instance would order references).

use super::*;
use byzscale_core::crypto::{CryptoMode, Identity};
use byzscale_core::quorum::FaultModel;
use byzscale_core::{Addr, GroupId};

#[derive(Clone, Debug, Default, PartialEq)]
struct V(u32);

impl Value for V {
    fn digest(&self, crypto: &Crypto) -> Digest {
        crypto.hash(&self.0.to_le_bytes())
    }
    fn size(&self) -> usize {
        self.0 as usize
    }
}

fn crypto() -> Crypto {
    Crypto::new(
        Addr::Node(NodeId(9)),
        Identity::from_seed([9; 32]),
        CryptoMode::Real,
    )
}

fn group(n: usize, f: usize, mode: FaultModel) -> GroupInfo {
    let qs = QuorumSystem::classic(n, f, mode).unwrap();
    GroupInfo::new(GroupId(0), (0..n as u32).map(NodeId).collect(), qs)
}

/// The member at position 1 of a BFT group of 4 (leader of view 0 is 0).
fn backup(window: u64) -> Ordering<V> {
    Ordering::new(group(4, 1, FaultModel::Bft), 1, window)
}

fn ok(_: &V) -> Result<(), String> {
    Ok(())
}

fn propose(view: View, slot: Slot, v: u32) -> Message<V> {
    Message::Propose {
        view,
        slot,
        value: V(v),
    }
}

fn proposal(view: View, slot: Slot, digest: Digest, v: u32) -> Promise<V> {
    Promise::Proposal {
        view,
        slot,
        digest,
        value: V(v),
    }
}

fn write(view: View, slot: Slot, digest: Digest) -> Message<V> {
    Message::Write { view, slot, digest }
}

fn accept(view: View, slot: Slot, digest: Digest) -> Message<V> {
    Message::Accept { view, slot, digest }
}

fn faults(events: &[Event<V>]) -> Vec<(NodeId, Fault)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Fault { culprit, kind, .. } => Some((*culprit, *kind)),
            _ => None,
        })
        .collect()
}

#[test]
fn decides_on_a_quorum_of_accepts_after_a_quorum_of_writes() {
    let c = crypto();
    let d = V(7).digest(&c);
    let mut o = backup(8);
    let ev = o.on_message(0, propose(0, 1, 7), &c, ok);
    assert_eq!(
        ev,
        vec![
            Event::Lagging,
            Event::Persist(proposal(0, 1, d, 7)),
            Event::Adopted(1),
            Event::Multicast(write(0, 1, d))
        ],
        "the adoption is durable before the WRITE"
    );
    assert_eq!(o.proposal(1), Some(&V(7)));
    // own WRITE + one more: not yet prepared
    assert!(o.on_message(2, write(0, 1, d), &c, ok)[1..].is_empty());
    // a third WRITE: prepared, so ACCEPT
    let ev = o.on_message(3, write(0, 1, d), &c, ok);
    assert_eq!(
        ev[1..],
        [
            Event::Persist(Promise::Accept {
                view: 0,
                slot: 1,
                digest: d
            }),
            Event::Multicast(accept(0, 1, d))
        ],
        "the ACCEPT is durable before it leaves"
    );
    assert_eq!(o.accepted_high(), 1);
    // own ACCEPT + one: not decided; + another: decided, once
    assert!(o.on_message(0, accept(0, 1, d), &c, ok)[1..].is_empty());
    assert_eq!(o.take_ready(), None, "nothing decided yet");
    let ev = o.on_message(2, accept(0, 1, d), &c, ok);
    assert_eq!(ev[1..], [Event::Decided(1)]);
    assert!(o.on_message(3, accept(0, 1, d), &c, ok)[1..].is_empty());
    assert_eq!(o.take_ready(), Some((1, 0, d, V(7))));
    assert_eq!(o.take_ready(), None);
    assert_eq!(o.delivered(), 1);
    assert!(
        !o.note_slot(0, 1),
        "nothing lags once the slot is taken out"
    );
}

#[test]
fn accepts_for_another_digest_do_not_decide_our_value() {
    let c = crypto();
    let (d7, d8) = (V(7).digest(&c), V(8).digest(&c));
    let mut o = backup(8);
    o.on_message(0, propose(0, 1, 7), &c, ok);
    o.on_message(0, accept(0, 1, d8), &c, ok);
    o.on_message(2, accept(0, 1, d8), &c, ok);
    // a quorum of ACCEPTs for d8, whose value we do not have: fetch, do not decide
    let ev = o.on_message(3, accept(0, 1, d8), &c, ok);
    assert_eq!(ev[1..], [Event::Lagging]);
    assert_eq!(o.take_ready(), None);
    // the value arrives in a log entry: its digest matches the decided one
    assert_eq!(o.learn(2, 1, 0, V(8), &c), Learned::Counted);
    assert_eq!(o.advance(1), vec![Event::Decided(1)]);
    assert_eq!(o.take_ready(), Some((1, 0, d8, V(8))));
    assert_ne!(d7, d8);
}

#[test]
fn a_weak_quorum_of_log_entries_decides_and_a_voter_counts_once() {
    let c = crypto();
    let mut o = backup(8);
    assert_eq!(o.learn(2, 2, 0, V(8), &c), Learned::Counted);
    // the same sender changing its story is not counted for the new value
    assert_eq!(o.learn(2, 2, 0, V(9), &c), Learned::Counted);
    assert_eq!(o.learn(3, 2, 0, V(9), &c), Learned::Counted);
    assert_eq!(o.take_ready(), None);
    assert_eq!(o.learn(0, 2, 0, V(8), &c), Learned::Decided);
    assert_eq!(
        o.learn(3, 2, 0, V(8), &c),
        Learned::Stale,
        "already decided"
    );
    assert_eq!(
        o.learn(3, 9, 0, V(8), &c),
        Learned::Stale,
        "outside the window"
    );
    // slot 2 waits for slot 1
    assert_eq!(o.take_ready(), None);
    assert_eq!(o.learn(0, 1, 0, V(1), &c), Learned::Counted);
    assert_eq!(o.learn(2, 1, 0, V(1), &c), Learned::Decided);
    assert_eq!(o.take_ready().map(|r| r.3), Some(V(1)));
    assert_eq!(o.take_ready().map(|r| r.3), Some(V(8)));
    let decided: Vec<_> = o.decided_in(1, 2).map(|(s, v, x)| (s, v, x.0)).collect();
    assert_eq!(decided, vec![(1, 0, 1), (2, 0, 8)]);
    assert_eq!(o.decided_in(5, 1).count(), 0, "a reversed range is empty");
}

#[test]
fn equivocation_and_foreign_proposals_are_reported() {
    let c = crypto();
    let mut o = backup(8);
    o.on_message(0, propose(0, 1, 7), &c, ok);
    let ev = o.on_message(0, propose(0, 1, 8), &c, ok);
    assert_eq!(faults(&ev), vec![(NodeId(0), Fault::Equivocation)]);
    assert_eq!(o.proposal(1), Some(&V(7)), "the first proposal stands");
    // the same proposal again is no fault
    assert!(faults(&o.on_message(0, propose(0, 1, 7), &c, ok)).is_empty());
    // a proposal from a member that does not lead the view
    let ev = o.on_message(2, propose(0, 2, 5), &c, ok);
    assert_eq!(faults(&ev), vec![(NodeId(2), Fault::ProposeNotLeader)]);
    // a proposal the caller's check rejects
    let ev = o.on_message(0, propose(0, 2, 5), &c, |_| Err("bad".into()));
    assert_eq!(faults(&ev), vec![(NodeId(0), Fault::ProposeInvalid)]);
    assert_eq!(o.proposal(2), None);
}

#[test]
fn prepared_and_pre_prepared_claims_are_kept() {
    let c = crypto();
    let d = V(7).digest(&c);
    let mut o = backup(8);
    o.on_message(0, propose(0, 1, 7), &c, ok);
    o.on_message(0, propose(0, 2, 8), &c, ok);
    for from in [2, 3] {
        o.on_message(from, write(0, 1, d), &c, ok);
    }
    let claims: Vec<_> = o
        .claims()
        .map(|c| (c.slot, c.prepared.cloned(), c.pre_prepared.to_vec()))
        .collect();
    let d8 = V(8).digest(&c);
    assert_eq!(
        claims,
        vec![
            (1, Some((0, d, V(7))), vec![(d, 0)]),
            (2, None, vec![(d8, 0)])
        ]
    );
    // a new view forgets the old proposal and votes but keeps the claims
    o.begin_change(1);
    assert_eq!(o.status(), Status::Changing(1));
    o.enter(1);
    o.restart(2);
    assert_eq!(o.proposal(1), None);
    assert_eq!(o.claims().count(), 2);
    assert!(o.is_leader(), "position 1 leads view 1");
    assert!(o.can_propose());
    let ev = o.propose(V(3), &c);
    let d3 = V(3).digest(&c);
    assert_eq!(
        ev[..4],
        [
            Event::Multicast(propose(1, 3, 3)),
            Event::Persist(proposal(1, 3, d3, 3)),
            Event::Adopted(3),
            Event::Multicast(write(1, 3, d3)),
        ],
        "above the selection; the leader's WRITE follows its record"
    );
}

#[test]
fn slots_outside_the_window_are_ignored_until_it_moves() {
    let c = crypto();
    let mut o = backup(4);
    let ev = o.on_message(0, propose(0, 5, 7), &c, ok);
    assert_eq!(ev, vec![], "slot 5 is above the window 1..=4");
    // a second member there: a weak quorum works on slot 5, this one lags
    let ev = o.on_message(2, write(0, 5, V(7).digest(&c)), &c, ok);
    assert_eq!(ev, vec![Event::Lagging]);
    assert!(!o.in_window(5));
    o.stabilize(4);
    assert_eq!(o.low(), 4);
    assert!(o.in_window(5) && o.in_window(8) && !o.in_window(9));
    let ev = o.on_message(0, propose(0, 5, 7), &c, ok);
    assert!(ev.contains(&Event::Adopted(5)));
    // the leader stops proposing at the top of its window
    let mut leader: Ordering<V> = Ordering::new(group(4, 1, FaultModel::Bft), 0, 2);
    leader.propose(V(1), &c);
    assert!(leader.can_propose());
    leader.propose(V(2), &c);
    assert!(!leader.can_propose(), "slot 3 is above the window");
    assert_eq!(leader.in_flight(), 2);
}

#[test]
fn messages_of_a_later_view_wait_for_it() {
    let c = crypto();
    let d = V(7).digest(&c);
    let mut o = backup(8);
    // view 1 (led by position 1) is not installed: keep, do not act
    let ev = o.on_message(2, write(1, 1, d), &c, ok);
    assert_eq!(ev, vec![], "one member's slot is not believed");
    o.on_message(2, write(0, 1, d), &c, ok);
    assert!(o.take_future().is_empty(), "nothing of view 0 is buffered");
    o.begin_change(1);
    o.enter(1);
    assert_eq!(o.take_future(), vec![(2, write(1, 1, d))]);
    assert!(o.take_future().is_empty());
}

#[test]
fn a_cft_group_accepts_a_proposal_without_writes() {
    let c = crypto();
    let d = V(7).digest(&c);
    let mut o: Ordering<V> = Ordering::new(group(3, 1, FaultModel::Cft), 1, 8);
    let ev = o.on_message(0, propose(0, 1, 7), &c, ok);
    assert_eq!(
        ev[1..],
        [
            Event::Persist(proposal(0, 1, d, 7)),
            Event::Adopted(1),
            Event::Persist(Promise::Accept {
                view: 0,
                slot: 1,
                digest: d
            }),
            Event::Multicast(accept(0, 1, d))
        ]
    );
    let ev = o.on_message(0, accept(0, 1, d), &c, ok);
    assert_eq!(ev[1..], [Event::Decided(1)]);
}

/// One replica's claim in a [`select`] test.
struct C {
    slot: Slot,
    prepared: Option<(View, Digest, V)>,
    pre: Vec<(Digest, View)>,
}

impl Claim<V> for C {
    fn slot(&self) -> Slot {
        self.slot
    }
    fn prepared(&self) -> Option<(View, Digest, &V)> {
        self.prepared.as_ref().map(|(v, d, x)| (*v, *d, x))
    }
    fn pre_prepared(&self) -> &[(Digest, View)] {
        &self.pre
    }
}

fn prepared(c: &Crypto, slot: Slot, view: View, v: u32) -> C {
    let d = V(v).digest(c);
    C {
        slot,
        prepared: Some((view, d, V(v))),
        pre: vec![(d, view)],
    }
}

fn pre_prepared(c: &Crypto, slot: Slot, view: View, v: u32) -> C {
    C {
        slot,
        prepared: None,
        pre: vec![(V(v).digest(c), view)],
    }
}

fn run(claims: &[Vec<C>]) -> Option<Picks<V>> {
    let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
    let voters: Vec<(Option<usize>, &[C])> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| (Some(i), c.as_slice()))
        .collect();
    select(&qs, 0, &voters)
}

#[test]
fn select_keeps_a_value_that_may_have_been_decided() {
    let c = crypto();
    let picks = run(&[
        vec![prepared(&c, 1, 1, 7)],
        vec![pre_prepared(&c, 1, 1, 7)],
        vec![],
    ])
    .unwrap();
    assert_eq!(picks.high, 1);
    assert_eq!(picks.values, BTreeMap::from([(1, V(7))]));
}

#[test]
fn select_prefers_the_newest_prepared_view() {
    let c = crypto();
    let picks = run(&[
        vec![prepared(&c, 1, 1, 7)],
        vec![prepared(&c, 1, 2, 8)],
        vec![pre_prepared(&c, 1, 2, 8)],
    ])
    .unwrap();
    assert_eq!(picks.values[&1], V(8));
}

#[test]
fn select_does_not_take_an_invented_value() {
    let c = crypto();
    // one replica claims a value nobody else pre-prepared: A2 fails, and two
    // empty claims are not a quorum, so the slot is undetermined
    let invented = || vec![prepared(&c, 2, 1, 9)];
    assert_eq!(run(&[invented(), vec![], vec![]]), None);
    // with a quorum claiming nothing prepared, the slots get the default value
    let picks = run(&[invented(), vec![], vec![], vec![]]).unwrap();
    assert_eq!(picks.high, 2);
    assert_eq!(picks.values, BTreeMap::from([(1, V(0)), (2, V(0))]));
}

#[test]
fn select_counts_non_members_for_nothing() {
    let c = crypto();
    let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).unwrap();
    let (a, b) = (vec![prepared(&c, 1, 1, 7)], vec![pre_prepared(&c, 1, 1, 7)]);
    let none: Vec<C> = Vec::new();
    let voters: Vec<(Option<usize>, &[C])> = vec![
        (Some(0), a.as_slice()),
        (None, b.as_slice()),
        (Some(2), none.as_slice()),
    ];
    // the outsider's claims carry no votes: A1, A2 and B all fall short
    assert_eq!(select(&qs, 0, &voters), None);
}

/// Issue 10 item 9: the buffer of messages for views not installed yet was
/// filled before the leader check (a PROPOSE of view 1 from any member was
/// kept), any number of copies per sender and slot, and bounded by count
/// only. Now a PROPOSE from a member that does not lead its view is a fault,
/// a sender keeps one message per kind, view and slot, and the buffer holds
/// at most `4 * window` messages and `FUTURE_BYTES` of values.
#[test]
fn the_future_view_buffer_takes_only_its_leaders_proposals_within_bounds() {
    let c = crypto();
    let mut o = backup(8);
    // view 1 is led by position 1 (us); view 2 by position 2
    let ev = o.on_message(3, propose(2, 1, 5), &c, ok);
    assert!(
        matches!(
            &ev[..],
            [Event::Fault {
                kind: Fault::ProposeNotLeader,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(o.future_len(), (0, 0));
    // the same sender, kind, view and slot: kept once, however often sent
    for v in 0..1000 {
        o.on_message(2, propose(2, 1, v), &c, ok);
        o.on_message(3, write(2, 1, V(v).digest(&c)), &c, ok);
    }
    assert_eq!(o.future_len().0, 2);
    // many slots: at most 4 * window messages, the oldest out first
    for s in 1..=1000 {
        o.on_message(3, write(2, s, V(1).digest(&c)), &c, ok);
    }
    assert_eq!(o.future_len().0, 32);
    // values: at most FUTURE_BYTES
    let huge = (FUTURE_BYTES / 3) as u32;
    for s in 1..=8 {
        o.on_message(2, propose(2, s, huge), &c, ok);
    }
    let (count, bytes) = o.future_len();
    assert!(
        bytes <= FUTURE_BYTES && count < 32,
        "{count} messages, {bytes} bytes"
    );
    assert!(bytes >= 2 * huge as usize, "the newest proposals stay");
}

/// Issue 10 item 9: a Byzantine member could WRITE (or ACCEPT) any number of
/// digests for one slot of the current view, each a new entry of the slot's
/// vote map. Now a second digest is an equivocation fault and from the
/// third on (`VOTE_DIGESTS`) votes are dropped, so a slot holds at most two
/// entries per member and view.
#[test]
fn a_member_votes_for_at_most_two_digests_per_view_and_slot() {
    let c = crypto();
    let mut o = backup(8);
    let d = V(7).digest(&c);
    o.on_message(3, write(0, 1, d), &c, ok);
    for v in 0..100 {
        let other = V(1000 + v).digest(&c);
        let ev = o.on_message(3, write(0, 1, other), &c, ok);
        assert!(
            ev.iter().any(|e| matches!(
                e,
                Event::Fault {
                    kind: Fault::Equivocation,
                    ..
                }
            )),
            "{ev:?}"
        );
        let ev = o.on_message(2, accept(0, 1, other), &c, ok);
        if v > 0 {
            assert!(
                ev.iter().any(|e| matches!(
                    e,
                    Event::Fault {
                        kind: Fault::Equivocation,
                        ..
                    }
                )),
                "{ev:?}"
            );
        }
    }
    let ss = &o.slots[&1];
    assert_eq!(
        (ss.writes.len(), ss.accepts.len()),
        (VOTE_DIGESTS, VOTE_DIGESTS)
    );
    // the same vote twice is no fault
    for _ in 0..2 {
        let ev = o.on_message(3, write(0, 2, d), &c, ok);
        assert!(
            !ev.iter().any(|e| matches!(e, Event::Fault { .. })),
            "{ev:?}"
        );
    }
}
