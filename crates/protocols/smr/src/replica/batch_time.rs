//! The agreed batch time (`execute.rs`, "Batch time") at one replica: the
//! backup's rule for a proposed timestamp, the leader's stamp, the time a
//! batch executes at, and what a view change and a restart keep of it.

use super::order::{select, Claim};
use super::testkit::*;
use super::*;
use byzscale_core::protocol::{MILLIS, SECS};
use byzscale_core::service::BatchCtx;
use byzscale_core::{Effect, Protocol};

const T: u64 = 1_700_000_000_000;

fn leader() -> Addr {
    Addr::Node(NodeId(0))
}

fn propose_at(slot: Slot, time_ms: u64, op: &[u8]) -> Message {
    Message::Propose {
        view: 0,
        slot,
        batch: Batch::at(time_ms, vec![request(slot, op)]),
    }
}

fn invalid(fx: &[Effect<R>]) -> bool {
    fx.iter()
        .any(|e| matches!(e, Effect::Fault(f) if f.is(crate::Fault::ProposeInvalid)))
}

/// A backup WRITEs for a batch stamped within `max_clock_skew` of its own
/// clock, either way, and for no other: a Byzantine leader cannot move the
/// agreed time far from real time (before, no batch had a time).
#[test]
fn a_backup_writes_only_for_a_batch_time_within_the_skew_of_its_clock() {
    set_wall(T);
    let skew = params().max_clock_skew / MILLIS;
    assert_eq!(skew, 5 * SECS / MILLIS);
    for (time, ok) in [
        (T, true),
        (T + skew, true),
        (T - skew, true),
        (T + skew + 1, false),
        (T - skew - 1, false),
        (0, false),
        (u64::MAX, false),
    ] {
        let mut r = R::new(NodeId(1), group(), params(), Count::default());
        let fx = step(&mut r, 1, |r, cx| {
            r.on_message(leader(), propose_at(1, time, b"x"), cx)
        });
        assert_eq!(!writes(&fx).is_empty(), ok, "time {time}: {fx:?}");
        assert_eq!(invalid(&fx), !ok, "time {time}: {fx:?}");
    }
}

/// The agreed time never goes back: a proposal stamped below the last
/// executed batch's time gets no WRITE, one at it does; a batch decided
/// with an older stamp anyway (a null batch from a view change, time 0)
/// executes at the previous time, and the service sees that time.
#[test]
fn a_backup_refuses_a_batch_time_below_the_last_executed_one() {
    set_wall(T);
    let mut r = R::new(NodeId(1), group(), params(), Count::default());
    decide(&mut r, 1, 1, 0, Batch::at(T + 1000, vec![request(1, b"a")]));
    assert_eq!((r.executed(), r.batch_time), (1, T + 1000));
    let fx = step(&mut r, 1, |r, cx| {
        r.on_message(leader(), propose_at(2, T + 999, b"b"), cx)
    });
    assert!(writes(&fx).is_empty() && invalid(&fx), "{fx:?}");
    let fx = step(&mut r, 1, |r, cx| {
        r.on_message(leader(), propose_at(3, T + 1000, b"c"), cx)
    });
    assert_eq!(writes(&fx).len(), 1, "{fx:?}");
    r.execute_batch_quiet(2, &Batch::default());
    assert_eq!(r.batch_time, T + 1000);
    assert_eq!(
        r.service().1,
        BatchCtx {
            slot: 2,
            time_ms: T + 1000
        }
    );
}

/// The leader stamps its clock, but never below the agreed time nor a time
/// it adopted before: a new leader whose clock is behind the last batch's
/// time proposes at that time, which every backup accepts.
#[test]
fn a_leader_behind_the_agreed_time_stamps_the_agreed_time() {
    set_wall(T);
    let mut r = R::new(NodeId(0), group(), params(), Count::default());
    let on_request = |r: &mut R, seq| {
        let m = Message::Request(request(seq, b"op"));
        step(r, 0, |r, cx| r.on_message(Addr::Client(CLIENT), m, cx))
    };
    let stamped = |fx: &[Effect<R>]| {
        fx.iter().find_map(|e| match e {
            Effect::Multicast {
                msg: Message::Propose { batch, .. },
                ..
            } => Some(batch.time_ms),
            _ => None,
        })
    };
    assert_eq!(stamped(&on_request(&mut r, 1)), Some(T));
    r.batch_time = T + 3000;
    assert_eq!(stamped(&on_request(&mut r, 2)), Some(T + 3000));
    // its clock catches up: its own clock again
    set_wall(T + 4000);
    assert_eq!(stamped(&on_request(&mut r, 3)), Some(T + 4000));
    // and never below what it proposed
    set_wall(T);
    assert_eq!(stamped(&on_request(&mut r, 4)), Some(T + 4000));
}

/// A view change re-proposes a prepared batch with its time: the time is
/// part of the value the claims carry and select picks.
#[test]
fn a_view_change_reselects_a_slot_with_its_time() {
    let batch = Batch::at(T, vec![request(1, b"a")]);
    let claim = SlotClaim {
        slot: 1,
        prepared: Some((0, digest(&batch), batch.clone())),
        pre_prepared: vec![(digest(&batch), 0)],
    };
    assert_eq!(claim.prepared().map(|(_, _, b)| b.time_ms), Some(T));
    let claims = [claim.clone(), claim.clone(), claim];
    let voters: Vec<(Option<usize>, &[SlotClaim])> = (0..3)
        .map(|i| (Some(i), std::slice::from_ref(&claims[i])))
        .collect();
    let picks = select::<Batch, _>(&group().qs, 0, &voters).unwrap();
    assert_eq!(picks.values[&1], batch);
    // another time is another value: a leader cannot restamp it
    assert_ne!(
        digest(&Batch::at(T + 1, vec![request(1, b"a")])),
        digest(&batch)
    );
}

/// A restarted replica keeps the agreed time (through its checkpoint's
/// snapshot and the decided batches it replays), so it still refuses a
/// batch stamped below it.
#[test]
fn a_restarted_backup_keeps_the_agreed_time() {
    set_wall(T);
    let mut r = R::new(NodeId(1), group(), params(), Count::default());
    let mut fx = Vec::new();
    for s in 1..=5 {
        let batch = Batch::at(T + s * 100, vec![request(s, &[s as u8])]);
        fx.extend(decide(&mut r, 1, s, 0, batch));
    }
    assert_eq!((r.executed(), r.batch_time), (5, T + 500));
    let durable = Durable::from_records(records(&fx));
    let c = crypto(Addr::Node(NodeId(1)));
    let mut back = R::recover(NodeId(1), group(), params(), Count::default(), durable, &c).unwrap();
    assert_eq!((back.executed(), back.batch_time), (5, T + 500));
    assert_eq!(back.service().1.time_ms, T + 500);
    let m = propose_at(6, T + 499, b"x");
    let fx = step(&mut back, 1, |r, cx| r.on_message(leader(), m, cx));
    assert!(writes(&fx).is_empty() && invalid(&fx), "{fx:?}");
}

/// The service sees a decided batch's operations, in order, before they
/// run (`Service::prepare_batch`), also those that then do not run (out of
/// their client's turn), and nothing for an empty batch.
#[test]
fn the_service_sees_each_decided_batch_before_it_runs() {
    set_wall(T);
    let mut r = R::new(NodeId(1), group(), params(), Count::default());
    let batch = Batch::at(T, vec![request(1, b"a"), request(3, b"c")]);
    decide(&mut r, 1, 1, 0, batch);
    assert_eq!(r.service().2, vec![b"a".to_vec(), b"c".to_vec()]);
    assert_eq!(r.service().0, 1, "request 3 is out of turn");
    r.execute_batch_quiet(2, &Batch::default());
    assert!(r.service().2.is_empty());
    r.execute_batch_quiet(3, &Batch::at(T, vec![request(2, b"b")]));
    assert_eq!((r.service().0, &r.service().2), (2, &vec![b"b".to_vec()]));
}
