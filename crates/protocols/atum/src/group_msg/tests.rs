use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn members(g: u32) -> Vec<NodeId> {
    (10..10 + g).map(NodeId).collect()
}

fn copy(i: usize, g: usize, seq: u64, m: &str) -> GroupMsg<String> {
    GroupMsg {
        from: VgroupId(1),
        stream: VgroupId(1),
        seq,
        carry: carry(i, g, seq, m.to_string()),
    }
}

#[test]
fn a_rotating_majority_sends_the_body() {
    for g in 1..12 {
        for seq in 0..30 {
            let full = (0..g).filter(|i| sends_full(*i, g, seq)).count();
            assert_eq!(full, majority(g), "g {g} seq {seq}");
        }
    }
    // the majority rotates with the id
    assert!(sends_full(0, 5, 0) && !sends_full(0, 5, 1) && sends_full(0, 5, 3));
}

#[test]
fn accepted_once_from_a_majority_holding_the_body() {
    let (g, a) = (5, members(5));
    let mut inbox = Inbox::new(8);
    let mut got = Vec::new();
    // members in order 0..5 for seq 3: the full senders are 3, 4, 0
    for i in 0..g {
        got.push(inbox.receive(a[i], &a, copy(i, g, 3, "hello")).unwrap());
    }
    // 0 (full), 1, 2 (digests) make a majority that holds the body at 2
    assert_eq!(got, vec![None, None, Some("hello".into()), None, None]);
    assert_eq!(inbox.pending(), 0);
    // a late or repeated copy delivers nothing
    assert_eq!(inbox.receive(a[3], &a, copy(3, g, 3, "hello")), Ok(None));
}

#[test]
fn a_majority_of_digests_waits_for_a_body() {
    let (g, a) = (5, members(5));
    let mut inbox = Inbox::new(8);
    // seq 0: members 0, 1, 2 send the body, 3 and 4 digests; the digests
    // come first
    assert_eq!(inbox.receive(a[3], &a, copy(3, g, 0, "m")), Ok(None));
    assert_eq!(inbox.receive(a[4], &a, copy(4, g, 0, "m")), Ok(None));
    // a third vote as a digest (member 0 chose to send one: allowed) makes a
    // majority without a body
    let d = GroupMsg {
        from: VgroupId(1),
        stream: VgroupId(1),
        seq: 0,
        carry: Carry::Digest(digest(&byzscale_core::codec::to_bytes(&"m".to_string()))),
    };
    assert_eq!(inbox.receive(a[0], &a, d), Ok(None));
    assert_eq!(
        inbox.receive(a[1], &a, copy(1, g, 0, "m")),
        Ok(Some("m".into()))
    );
}

#[test]
fn faulty_members_cannot_forge_or_equivocate() {
    let (g, a) = (7, members(7));
    let mut inbox = Inbox::new(4);
    assert_eq!(
        inbox.receive(NodeId(99), &a, copy(0, g, 0, "x")),
        Err(GroupFault::NotAMember)
    );
    // f = 2 faulty members push a forgery: never a majority
    for i in [5, 6] {
        let forged = GroupMsg {
            carry: Carry::Full("forged".to_string()),
            ..copy(i, g, 0, "x")
        };
        assert_eq!(inbox.receive(a[i], &a, forged), Ok(None));
    }
    // 5 equivocates
    assert_eq!(
        inbox.receive(a[5], &a, copy(5, g, 0, "other")),
        Err(GroupFault::Equivocation)
    );
    let mut delivered = None;
    for i in 0..5 {
        if let Some(m) = inbox.receive(a[i], &a, copy(i, g, 0, "real")).unwrap() {
            delivered = Some((i, m));
        }
    }
    // the 4th correct copy (index 3) completes the majority of 7
    assert_eq!(delivered, Some((3, "real".to_string())));
}

#[test]
fn ids_outside_the_window_are_refused_and_the_window_slides() {
    let (g, a) = (4, members(4));
    let mut inbox = Inbox::new(2);
    assert_eq!(
        inbox.receive(a[0], &a, copy(0, g, 2, "x")),
        Err(GroupFault::OutOfWindow)
    );
    for seq in 0..10 {
        let mut out = None;
        for i in 0..g {
            out = out.or(inbox.receive(a[i], &a, copy(i, g, seq, "y")).unwrap());
        }
        assert_eq!(out.as_deref(), Some("y"), "seq {seq}");
    }
    assert_eq!(inbox.pending(), 0);
}

proptest! {
    /// Whatever order the copies of correct members arrive in, and whatever
    /// up to f faulty members send, every node delivers the correct message
    /// exactly once.
    #[test]
    fn delivery_once_in_any_order(g in 4usize..12, seq in 0u64..4, seed: u64) {
        let a = members(g as u32);
        let f = (g - 1) / 3;
        let mut copies: Vec<(usize, GroupMsg<String>)> = (0..g)
            .map(|i| if i < f {
                (i, GroupMsg { carry: Carry::Full(format!("evil{i}")), ..copy(i, g, seq, "") })
            } else {
                (i, copy(i, g, seq, "good"))
            })
            .collect();
        copies.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut inbox = Inbox::new(8);
        let got: Vec<String> = copies
            .into_iter()
            .filter_map(|(i, c)| inbox.receive(a[i], &a, c).unwrap())
            .collect();
        prop_assert_eq!(got, vec!["good".to_string()]);
    }
}

#[test]
fn send_order_is_a_permutation() {
    let a = members(9);
    let mut o = send_order(&a, &mut ChaCha8Rng::seed_from_u64(3));
    assert_ne!(o, a);
    o.sort();
    assert_eq!(o, a);
}

#[test]
fn a_stream_is_accepted_once_over_all_relays() {
    let (a, b) = (members(4), (20..24).map(NodeId).collect::<Vec<_>>());
    let mut inbox = Inbox::new(8);
    let relay = |from: u64, i: usize, m: &str| GroupMsg {
        from: VgroupId(from),
        stream: VgroupId(9),
        seq: 0,
        carry: carry(i, 4, 0, m.to_string()),
    };
    // a majority of relay 1 (3 of 4) and two copies of relay 2
    assert_eq!(inbox.receive(b[0], &b, relay(2, 0, "m")), Ok(None));
    let mut got = Vec::new();
    for i in 0..3 {
        got.extend(inbox.receive(a[i], &a, relay(1, i, "m")).unwrap());
    }
    assert_eq!(got, vec!["m".to_string()]);
    // relay 2's entry went with the acceptance; its late copies deliver nothing
    assert_eq!(inbox.pending(), 0);
    assert_eq!(inbox.held_bytes(), 0);
    for i in 1..4 {
        assert_eq!(inbox.receive(b[i], &b, relay(2, i, "m")), Ok(None));
    }
    assert!(inbox.is_accepted(VgroupId(9), 0));
    // the own vgroup's ids are marked once
    assert!(inbox.accept_own(VgroupId(3), 0));
    assert!(!inbox.accept_own(VgroupId(3), 0));
    assert!(!inbox.accept_own(VgroupId(3), 9), "out of the window");
}

#[test]
fn what_a_faulty_member_makes_the_inbox_hold_is_bounded_by_its_budget() {
    let (g, a) = (4, members(4));
    let budget = 4 * ENTRY_BYTES;
    let mut inbox = Inbox::bounded(1000, budget, 100);
    // member 3 alone pushes forgeries for many ids: never a majority, and
    // held only up to its budget
    let mut refused = 0;
    for seq in 0..50 {
        let forged = GroupMsg {
            carry: Carry::Full(format!("forged{seq}")),
            ..copy(3, g, seq, "")
        };
        match inbox.receive(a[3], &a, forged) {
            Ok(None) => {}
            Err(GroupFault::OverBudget) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(refused > 40, "refused {refused}");
    assert!(inbox.held_bytes() <= budget);
    let big = GroupMsg {
        carry: Carry::Full("x".repeat(200)),
        ..copy(0, g, 0, "")
    };
    assert_eq!(inbox.receive(a[0], &a, big), Err(GroupFault::Oversized));
    // the correct members still get every id through, and the forger's
    // charges are refunded as its ids are accepted
    for seq in 0..50 {
        let mut out = None;
        for i in 0..3 {
            out = out.or(inbox.receive(a[i], &a, copy(i, g, seq, "ok")).unwrap());
        }
        assert_eq!(out.as_deref(), Some("ok"), "seq {seq}");
    }
    assert_eq!((inbox.pending(), inbox.held_bytes()), (0, 0));
}
