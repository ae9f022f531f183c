//! Hostile input at one replica: every range, index and length a peer or a
//! client controls, at its edges (issue 10 item 5), and the bounds of the
//! tables a Byzantine peer or client can grow (item 9).

use super::execute::{self, Outcome};
use super::testkit::*;
use super::*;
use byzscale_core::crypto::{Crypto, CryptoMode, Mac};
use byzscale_core::{Addr, ClientId, Effect, NodeId, Protocol};

const U: u64 = u64::MAX;

fn node(i: u32) -> Addr {
    Addr::Node(NodeId(i))
}

/// Backup 1 of view 0 with slots `1..=slots` decided (one request each).
fn backup_with(slots: u64) -> R {
    let mut r = R::new(NodeId(1), group(), params(), Count::default());
    for s in 1..=slots {
        let batch = Batch::new(vec![request(s, &[s as u8])]);
        decide(&mut r, 1, s, 0, batch);
    }
    assert_eq!(r.executed(), slots);
    r
}

/// Every message kind with its peer-controlled numbers at their edges.
fn edge_messages() -> Vec<Message> {
    let d = [7u8; 32];
    let sig = crypto(node(2)).sign(b"junk");
    let cert = |slot| CheckpointCert {
        slot,
        state: d,
        sigs: vec![(NodeId(2), sig)],
    };
    let mut out = Vec::new();
    for (a, b) in [(10, 5), (0, U), (U, 0), (U, U), (0, 0), (5, 10), (U - 1, U)] {
        out.push(Message::FetchLog { from: a, to: b });
    }
    for s in [0, 1, U, U - 1] {
        out.push(Message::FetchState { slot: s });
        out.push(Message::Checkpoint {
            slot: s,
            state: d,
            sig,
        });
        let manifest = |len, chunk, chunks| Manifest { len, chunk, chunks };
        for m in [
            manifest(3, 1, vec![d; 3]),
            manifest(U, 1, vec![d]),
            manifest(U, u32::MAX, vec![]),
            manifest(0, 0, vec![]),
        ] {
            out.push(Message::State {
                cert: cert(s),
                manifest: m,
            });
        }
        for i in [0, 1, u32::MAX] {
            out.push(Message::FetchChunk { slot: s, index: i });
            out.push(Message::Chunk {
                slot: s,
                index: i,
                bytes: vec![1, 2, 3],
            });
        }
        out.push(Message::Log {
            entries: vec![(s, U, Batch::default()), (s, 0, Batch::default())],
        });
    }
    for v in [0, 1, U, U - 1] {
        out.push(Message::Stop { view: v });
        out.push(Message::FetchSync { view: v });
        for s in [0, 1, U] {
            out.push(Message::Propose {
                view: v,
                slot: s,
                batch: Batch::default(),
            });
            out.push(Message::Write {
                view: v,
                slot: s,
                digest: d,
            });
            out.push(Message::Accept {
                view: v,
                slot: s,
                digest: d,
            });
        }
        let body = StopBody {
            view: v,
            replica: NodeId(2),
            checkpoint: Some(cert(U)),
            claims: vec![SlotClaim {
                slot: U,
                prepared: Some((U, d, Batch::default())),
                pre_prepared: vec![(d, U)],
            }],
        };
        let sd = StopData { body, sig };
        out.push(Message::StopData(sd.clone()));
        out.push(Message::Sync {
            view: v,
            stops: vec![sd],
        });
    }
    out.push(Message::Forward(Vec::new()));
    out
}

/// Issue 10 item 5: one message panicked a correct replica. A Byzantine
/// peer sends every message kind with the numbers it controls at their
/// edges (`FetchLog { from: 10, to: 5 }` was the one reported; slots,
/// views, checkpoint slots and watermarks at 0 and `u64::MAX`), to a
/// replica with decided slots, to one that stabilized a checkpoint, and
/// to one in a synchronization phase, then fires every timer. None may
/// panic (in a debug build this also catches arithmetic overflow). The
/// reported `FetchLog` no longer panics on today's code (`decided_in`
/// guards `from > to`); this keeps it that way for every kind.
#[test]
fn edge_values_from_a_byzantine_peer_never_panic_a_replica() {
    let stages: [fn() -> R; 3] = [
        || backup_with(3),
        || backup_with(2 * params().checkpoint_interval + 1),
        || {
            let mut r = backup_with(2);
            step(&mut r, 1, |r, cx| r.on_input(super::Input::Suspect, cx));
            for from in [0, 2, 3] {
                let m = Message::Stop { view: 1 };
                step(&mut r, 1, |r, cx| r.on_message(node(from), m, cx));
            }
            r
        },
    ];
    for make in stages {
        let mut r = make();
        for from in [0, 2, 3] {
            for m in edge_messages() {
                step(&mut r, 1, |r, cx| r.on_message(node(from), m, cx));
            }
        }
        for t in [
            Timer::Fetch,
            Timer::Request,
            Timer::ViewChange,
            Timer::Batch,
        ] {
            step(&mut r, 1, |r, cx| r.on_timer(t, cx));
        }
    }
}

/// Fetch-log requests among `fx`.
fn fetch_logs(fx: &[Effect<R>]) -> usize {
    fx.iter()
        .filter(|e| {
            matches!(
                e,
                Effect::Multicast {
                    msg: Message::FetchLog { .. },
                    ..
                }
            )
        })
        .count()
}

/// Item 5, watermarks from peer input: the highest slot a replica believes
/// some member works on came from any one message, so a single WRITE for
/// slot `u64::MAX` from a Byzantine peer made an idle, up-to-date replica
/// believe it lagged forever: it asked every member for the log
/// `executed+1..=u64::MAX` on every fetch tick, for as long as it ran. Now
/// a replica believes a slot only once members holding a weak quorum of
/// votes work on it (at least one of them correct).
#[test]
fn one_peer_cannot_make_a_replica_believe_it_lags() {
    for slot in [U, 7] {
        let mut r = backup_with(3);
        let m = Message::Write {
            view: 0,
            slot,
            digest: [1; 32],
        };
        let mut fx = step(&mut r, 1, |r, cx| r.on_message(node(3), m, cx));
        for _ in 0..5 {
            fx.extend(step(&mut r, 1, |r, cx| r.on_timer(Timer::Fetch, cx)));
        }
        assert_eq!(fetch_logs(&fx), 0, "slot {slot}: {fx:?}");
        // a weak quorum (two members) working on slot 7 is believed
        let m = Message::Write {
            view: 0,
            slot: 7,
            digest: [1; 32],
        };
        fx = step(&mut r, 1, |r, cx| r.on_message(node(2), m, cx));
        fx.extend(step(&mut r, 1, |r, cx| r.on_timer(Timer::Fetch, cx)));
        let asked = fx.iter().any(|e| {
            matches!(
                e,
                Effect::Multicast {
                    msg: Message::FetchLog { from: 4, to: 7 },
                    ..
                }
            )
        });
        assert!(asked, "slot {slot}: {fx:?}");
    }
}

/// Item 5, lengths from peer input: a SYNC was verified STOP-DATA by
/// STOP-DATA (a signature and a checkpoint certificate each) before its
/// senders were counted, so one SYNC holding the same valid STOP-DATA a
/// thousand times cost a thousand signature checks. Now a SYNC with more
/// STOP-DATA than distinct members is refused before any verification.
#[test]
fn a_sync_of_many_copies_is_refused_before_any_verification() {
    let mut r = backup_with(2);
    // replica 3's valid STOP-DATA for view 2, a thousand times, in a SYNC
    // from the leader of view 2 (position 2)
    let body = StopBody {
        view: 2,
        replica: NodeId(3),
        checkpoint: None,
        claims: Vec::new(),
    };
    let sig = crypto(node(3)).sign(&stop_bytes(group().id, &body));
    let m = Message::Sync {
        view: 2,
        stops: vec![StopData { body, sig }; 1000],
    };
    let c = crypto(node(1));
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let mut fx = Vec::new();
    r.on_message(node(2), m, &mut Cx::new(0, &mut rng, &c, &mut fx));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Fault(f) if f.is(crate::Fault::SyncInvalid))),
        "{fx:?}"
    );
    assert_eq!(c.take_meter().verifies, 0);
}

/// Issue 10 item 7 at the replica: an operation over `max_op_bytes` was
/// dropped as a "malformed" request, the same fault as a short
/// authenticator. It is now its own fault, naming the size and the limit.
#[test]
fn an_oversized_operation_is_recorded_as_too_large() {
    let mut r = R::new(NodeId(0), group(), params(), Count::default());
    let limit = params().max_op_bytes;
    let req = request(1, &vec![0; limit + 1]);
    let m = Message::Request(req);
    let fx = step(&mut r, 0, |r, cx| r.on_message(Addr::Client(CLIENT), m, cx));
    let fault = fx.iter().find_map(|e| match e {
        Effect::Fault(f) => Some(f.clone()),
        _ => None,
    });
    let f = fault.expect("a fault");
    assert!(f.is(crate::Fault::RequestTooLarge), "{f:?}");
    assert!(f.detail.contains(&limit.to_string()), "{f:?}");
    assert_eq!(r.stats().pending, 0);
}

/// Issue 10 item 6 at one backup: an unsigned request in the leader's batch
/// whose MAC entry for us fails refuses the batch (as before), and from then
/// on that client's ordered requests are taken only signed: its unsigned
/// ones pending here are dropped and new ones ignored, so neither our
/// proposals nor our request timer act on them; a signed request of the
/// same client (a correct client signs its retransmission) is taken, and a
/// batch carrying it is written for, whatever its MAC entries say.
#[test]
fn a_request_failing_its_mac_in_a_batch_makes_its_client_sign() {
    let mut r = R::new(NodeId(1), group(), params(), Count::default());
    let on_request = |r: &mut R, req: Request| {
        let m = Message::Request(req);
        step(r, 1, |r, cx| r.on_message(Addr::Client(CLIENT), m, cx))
    };
    // pending here: request 2 of the client, unsigned and authentic
    on_request(&mut r, request(2, b"two"));
    assert_eq!(r.stats().pending, 1);
    // the leader proposes request 1 with our MAC entry broken
    let mut poisoned = request(1, b"one");
    poisoned.auth[1] = Mac::default();
    let fx = step(&mut r, 1, |r, cx| {
        r.on_message(node(0), propose(Batch::new(vec![poisoned])), cx)
    });
    assert!(writes(&fx).is_empty(), "{fx:?}");
    assert!(r.must_sign.contains(&CLIENT));
    assert_eq!(r.stats().pending, 0, "its unsigned request stays pending");
    on_request(&mut r, request(3, b"three"));
    assert_eq!(r.stats().pending, 0, "an unsigned request was taken");
    // signed, with every MAC entry broken: authentic to every replica
    let mut signed = request(1, b"one");
    signed.auth = vec![Mac::default(); 4];
    let bytes = Request::auth_bytes(group().id, CLIENT, (0, 1), false, b"one");
    signed.sig = Some(crypto(Addr::Client(CLIENT)).sign(&bytes));
    on_request(&mut r, signed.clone());
    assert_eq!(r.stats().pending, 1);
    let mut other = signed.clone();
    other.seq = 2;
    other.sig = Some(crypto(Addr::Client(CLIENT)).sign(b"not its bytes"));
    let fx = step(&mut r, 1, |r, cx| {
        r.on_message(node(0), propose(Batch::new(vec![signed, other])), cx)
    });
    assert!(writes(&fx).is_empty(), "a bad signature passed");
    let mut signed2 = request(2, b"two");
    let bytes = Request::auth_bytes(group().id, CLIENT, (0, 2), false, b"two");
    signed2.auth = vec![Mac::default(); 4];
    signed2.sig = Some(crypto(Addr::Client(CLIENT)).sign(&bytes));
    let batch = Batch::new(vec![request(1, b"one"), signed2]);
    let fx = step(&mut r, 1, |r, cx| r.on_message(node(0), propose(batch), cx));
    assert_eq!(writes(&fx).len(), 1, "{fx:?}");
}

/// A client whose key this backup forgot (it disconnected and other clients'
/// keys pushed it out of the runtime's bounded cache) is named in a PROPOSE:
/// its request fails authentication like any unknown client's, and takes the
/// path of such a request (the batch is refused, a `propose-invalid` fault,
/// the client must sign here from now on); nothing is left pending, so no
/// request timer of this backup suspects the leader over it. Once the client
/// reconnects, its signed retransmission passes and the backup writes.
#[test]
fn a_request_of_an_evicted_client_is_refused_until_it_reconnects() {
    let me = node(1);
    let mut keys = Crypto::new(me, identity(me), CryptoMode::Real);
    for i in [0, 2, 3] {
        keys.add_peer(node(i), identity(node(i)).public()).unwrap();
    }
    keys.set_peer_cache(1);
    let client = Addr::Client(CLIENT);
    let other = Addr::Client(ClientId(2));
    for c in [client, other] {
        keys.connect_peer(c, identity(c).public()).unwrap();
        keys.disconnect_peer(c);
    }
    assert!(!keys.knows(client), "evicted by the other client");
    let mut r = R::new(NodeId(1), group(), params(), Count::default());
    let fx = step_with(&mut r, &keys, |r, cx| {
        r.on_message(node(0), propose(Batch::new(vec![request(1, b"one")])), cx)
    });
    assert!(writes(&fx).is_empty(), "{fx:?}");
    let faults: Vec<&str> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Fault(f) => Some(f.name()),
            _ => None,
        })
        .collect();
    assert_eq!(faults, vec!["propose-invalid"]);
    assert!(r.must_sign.contains(&CLIENT));
    assert_eq!(r.stats().pending, 0);
    // its signed retransmission, proposed again: refused while unknown
    let bytes = Request::auth_bytes(group().id, CLIENT, (0, 1), false, b"one");
    let mut signed = request(1, b"one");
    signed.sig = Some(crypto(client).sign(&bytes));
    let again = propose(Batch::new(vec![signed.clone()]));
    let fx = step_with(&mut r, &keys, |r, cx| {
        r.on_message(node(0), again.clone(), cx)
    });
    assert!(writes(&fx).is_empty(), "{fx:?}");
    // the client reconnects (the runtime registers its key before its
    // messages): the retransmission is taken, and the proposal written for
    keys.connect_peer(client, identity(client).public())
        .unwrap();
    let m = Message::Request(signed);
    step_with(&mut r, &keys, |r, cx| r.on_message(client, m, cx));
    assert_eq!(r.stats().pending, 1);
    let fx = step_with(&mut r, &keys, |r, cx| r.on_message(node(0), again, cx));
    assert_eq!(writes(&fx).len(), 1, "{fx:?}");
}

/// Member 2's signed STOP-DATA for `view`, with no checkpoint and no claims.
fn stop_data_of_2(view: View) -> Message {
    let body = StopBody {
        view,
        replica: NodeId(2),
        checkpoint: None,
        claims: Vec::new(),
    };
    let sig = crypto(node(2)).sign(&stop_bytes(group().id, &body));
    Message::StopData(StopData { body, sig })
}

/// Issue 10 item 9, STOP-DATA for future views: a leader held a member's
/// verified STOP-DATA for every view it leads up to 1,000 views ahead, so
/// one Byzantine member made it hold 250 (each up to a window of prepared
/// batches). Now it keeps one per member, for views at most
/// `STOP_DATA_VIEWS_AHEAD` beyond its own: the rest is refused as
/// `stop-data-ahead`, a newer one replaces the older, an older one after a
/// newer is refused.
#[test]
fn a_member_cannot_make_a_leader_hold_stop_data_for_many_views() {
    // replica 1 leads views 1, 5, 9, ...
    let mut r = backup_with(2);
    let mut fx = Vec::new();
    for k in 0..250 {
        let m = stop_data_of_2(1 + 4 * k);
        fx.extend(step(&mut r, 1, |r, cx| r.on_message(node(2), m, cx)));
    }
    let (n, bytes) = r.stop_data_held();
    assert_eq!(n, 1, "STOP-DATA held for {n} views ({bytes} bytes)");
    let ahead = fx
        .iter()
        .filter(|e| matches!(e, Effect::Fault(f) if f.is(crate::Fault::StopDataAhead)))
        .count();
    assert_eq!(ahead, 250 - 2, "views 1 and 5 are within the window");
    // the one kept is the newest within the window; an older one is refused
    assert_eq!(r.stop_data_view(NodeId(2)), Some(5));
    let fx = step(&mut r, 1, |r, cx| {
        r.on_message(node(2), stop_data_of_2(1), cx)
    });
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Fault(f) if f.is(crate::Fault::StopDataAhead))),
        "{fx:?}"
    );
    assert_eq!(r.stop_data_held().0, 1);
}

/// A backup of view 0 with `p`.
fn backup(p: Params) -> R {
    R::new(NodeId(1), group(), p, Count::default())
}

/// Issue 10 item 9, early requests pinned in the replicated state: a
/// request decided before its client's predecessor was buffered inside the
/// client table, so it travelled in every snapshot (a client, or a
/// Byzantine leader, could fill it with up to `4 × client_window` operations
/// per client id). Now it is skipped at execution, the same at every
/// replica, and runs when proposed again in its turn.
#[test]
fn early_requests_are_not_pinned_in_the_replicated_state() {
    let mut r = backup(params());
    let big = vec![9u8; 100 << 10];
    decide(&mut r, 1, 1, 0, Batch::new(vec![request(3, &big)]));
    let snap = r.snapshot_bytes();
    assert!(snap.len() < 1024, "the snapshot holds {} bytes", snap.len());
    decide(&mut r, 1, 2, 0, Batch::new(vec![request(1, b"a")]));
    decide(&mut r, 1, 3, 0, Batch::new(vec![request(2, b"b")]));
    assert_eq!(r.service().0, 2, "request 3 ran early");
    decide(&mut r, 1, 4, 0, Batch::new(vec![request(3, &big)]));
    assert_eq!(r.service().0, 3);
    assert!(r.snapshot_bytes().len() < 1024);
}

/// Issue 10 item 9, client entries never freed: at each checkpoint the
/// entries of clients idle for `client_expiry_slots` or more go, at every
/// replica alike (the snapshots agree), and the session floor rises past
/// them. A returning client's next request in its expired session is
/// refused `Stale` with the floor; a request in a session at or above the
/// floor (named by a slot before its own) runs.
#[test]
fn idle_clients_expire_at_checkpoints_and_return_in_a_new_session() {
    let p = Params {
        client_expiry_slots: 4,
        ..params()
    };
    let mut a = backup(p.clone());
    let mut b = R::new(NodeId(2), group(), p, Count::default());
    for (r, me) in [(&mut a, 1), (&mut b, 2)] {
        decide(r, me, 1, 0, Batch::new(vec![request(1, b"a")]));
        for s in 2..=4 {
            decide(r, me, s, 0, Batch::default());
        }
        assert_eq!(r.stats().clients, 1, "expired at checkpoint 4");
        for s in 5..=8 {
            decide(r, me, s, 0, Batch::default());
        }
        assert_eq!(r.stats().clients, 0, "kept past the horizon");
        assert_eq!(r.stats().client_bytes, 0, "the byte count drifted");
        assert_eq!(r.stats().clients_expired, 1);
        assert_eq!(r.session_floor, 5, "checkpoint 8, horizon 4");
    }
    assert_eq!(a.snapshot_bytes(), b.snapshot_bytes());
    let fx = decide(&mut a, 1, 9, 0, Batch::new(vec![request(2, b"b")]));
    assert_eq!(a.service().0, 1, "an expired session's request ran");
    assert!(refused(&fx, RefuseReason::Stale { floor: 5 }), "{fx:?}");
    let fx = decide(
        &mut a,
        1,
        10,
        0,
        Batch::new(vec![session_request(1, 1, b"c")]),
    );
    assert!(refused(&fx, RefuseReason::Stale { floor: 5 }), "{fx:?}");
    decide(
        &mut a,
        1,
        11,
        0,
        Batch::new(vec![session_request(5, 1, b"c")]),
    );
    assert_eq!(
        a.service().0,
        2,
        "a new session's first request did not run"
    );
    assert_eq!(a.stats().clients, 1);
}

/// Whether `fx` refuses `CLIENT`'s request for `reason`.
fn refused(fx: &[Effect<R>], reason: RefuseReason) -> bool {
    fx.iter().any(|e| {
        matches!(e, Effect::Send {
            to: Addr::Client(CLIENT),
            msg: Message::Refused { reason: r, .. },
        } if *r == reason)
    })
}

/// The replay the `bounds` branch let through (`sim smr --byzantine twins`
/// seed 4021): after a client's entry expired, a twin leader proposed the
/// client's old requests again, and its session's first ran a second time.
/// Now every request the client ever executed is refused: its session is
/// below the floor (no entry), and a replay of a live session's request
/// is a duplicate.
#[test]
fn a_replay_of_any_executed_request_after_expiry_is_refused() {
    let p = Params {
        client_expiry_slots: 4,
        ..params()
    };
    let mut r = backup(p);
    // session 0: requests 1 and 2 at slot 1; session 1 (named by slot 1):
    // request 1 at slot 2, request 2 at slot 3
    let old = [
        request(1, b"a"),
        request(2, b"b"),
        session_request(1, 1, b"c"),
        session_request(1, 2, b"d"),
    ];
    decide(&mut r, 1, 1, 0, Batch::new(old[..2].to_vec()));
    decide(&mut r, 1, 2, 0, Batch::new(vec![old[2].clone()]));
    decide(&mut r, 1, 3, 0, Batch::new(vec![old[3].clone()]));
    assert_eq!(r.service().0, 4);
    // a replay while the entry lives: old session stale, same session done
    for (i, req) in old.iter().enumerate() {
        decide(&mut r, 1, 4 + i as Slot, 0, Batch::new(vec![req.clone()]));
    }
    assert_eq!(r.service().0, 4, "a replay ran while the entry lived");
    for s in 8..=12 {
        decide(&mut r, 1, s, 0, Batch::default());
    }
    assert_eq!(r.stats().clients, 0, "expired at checkpoint 12");
    // after expiry: each of them, alone or all in one batch
    for (i, req) in old.iter().enumerate() {
        let fx = decide(&mut r, 1, 13 + i as Slot, 0, Batch::new(vec![req.clone()]));
        assert!(refused(&fx, RefuseReason::Stale { floor: 9 }), "{fx:?}");
    }
    decide(&mut r, 1, 17, 0, Batch::new(old.to_vec()));
    assert_eq!(r.service().0, 4, "an expired client's request ran again");
    assert_eq!(r.stats().clients, 0);
    // a session that names its own slot or a later one is refused
    let fx = decide(
        &mut r,
        1,
        18,
        0,
        Batch::new(vec![session_request(18, 1, b"e")]),
    );
    assert!(refused(&fx, RefuseReason::SessionAhead), "{fx:?}");
    assert_eq!(r.service().0, 4);
}

/// Sessions and sequence numbers at the edges of `u64` from a Byzantine
/// client never panic a replica, on arrival or at execution.
#[test]
fn edge_sessions_never_panic_a_replica() {
    let mut r = backup(params());
    let mut slot = 0;
    for (s, q) in [(U, U), (U, 1), (0, U), (0, 0), (U, 0), (U - 1, 2)] {
        let m = Message::Request(session_request(s, q, b"x"));
        step(&mut r, 1, |r, cx| r.on_message(Addr::Client(CLIENT), m, cx));
        slot += 1;
        decide(
            &mut r,
            1,
            slot,
            0,
            Batch::new(vec![session_request(s, q, b"x")]),
        );
    }
    assert_eq!(r.service().0, 0, "none of them may run");
    decide(&mut r, 1, slot + 1, 0, Batch::new(vec![request(1, b"x")]));
    assert_eq!(r.service().0, 1);
}

/// Issue 10 item 9, the client table's bytes: at `client_table_bytes` a
/// client with no entry is not executed and every replica answers it
/// `Busy` (at execution, so all alike); its request runs once there is room.
#[test]
fn a_full_client_table_answers_busy_to_a_new_client() {
    let p = Params {
        client_table_bytes: 0,
        ..params()
    };
    let mut r = backup(p);
    let fx = decide(&mut r, 1, 1, 0, Batch::new(vec![request(1, b"a")]));
    let busy = fx.iter().any(|e| {
        matches!(
            e,
            Effect::Send {
                to: Addr::Client(CLIENT),
                msg: Message::Refused {
                    seq: 1,
                    reason: RefuseReason::Busy,
                    ..
                }
            }
        )
    });
    assert!(busy, "{fx:?}");
    assert_eq!(r.service().0, 0);
    assert_eq!(r.stats().clients_refused, 1);
    assert_eq!(r.stats().client_bytes_peak, 0);
}

/// Issue 10 item 9, the pending table: a client's requests ahead of its
/// turn were held without a byte bound (up to `4 × client_window` of
/// `max_op_bytes` per client id, 64 MiB, and no total). Now a client holds
/// at most `client_pending_bytes`, all clients `pending_bytes`, and the
/// furthest-ahead requests go first (the one the client waits on stays).
#[test]
fn pending_requests_are_bounded_in_bytes() {
    let op = vec![5u8; 100 << 10];
    let cost = super::pending::cost(&request(2, &op));
    for (per_client, total) in [(1 << 20, 64 << 20), (64 << 20, 512 << 10)] {
        let mut r = backup(Params {
            client_pending_bytes: per_client,
            pending_bytes: total,
            ..params()
        });
        for seq in 2..=60 {
            let m = Message::Request(request(seq, &op));
            step(&mut r, 1, |r, cx| r.on_message(Addr::Client(CLIENT), m, cx));
        }
        let s = r.stats();
        let bound = per_client.min(total);
        assert!(s.pending_bytes <= bound, "{} > {bound}", s.pending_bytes);
        assert!(
            s.pending_bytes_peak <= bound + cost,
            "{}",
            s.pending_bytes_peak
        );
        assert_eq!(s.pending, bound / cost);
        assert!(
            r.pending.contains_key(&(CLIENT, 0, 2)),
            "the next one was evicted"
        );
        // the one it waits on comes: it runs, and the next ones are due
        decide(&mut r, 1, 1, 0, Batch::new(vec![request(1, b"x")]));
        assert_eq!(r.service().0, 1);
    }
}

/// The proposals among `fx`: each batch's sequence numbers.
fn proposed_seqs(fx: &[Effect<R>]) -> Vec<Vec<u64>> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Multicast {
                msg: Message::Propose { batch, .. },
                ..
            } => Some(batch.requests.iter().map(|r| r.seq).collect()),
            _ => None,
        })
        .collect()
}

/// A correct leader proposes a client's request only in its turn (the
/// replicas would skip it at execution): requests 3 and 2 wait until 1
/// comes, then go in order.
#[test]
fn a_leader_proposes_requests_in_their_turn() {
    let mut r = R::new(NodeId(0), group(), params(), Count::default());
    let mut fx = Vec::new();
    for seq in [3, 2, 1] {
        let m = Message::Request(request(seq, b"x"));
        fx.extend(step(&mut r, 0, |r, cx| {
            r.on_message(Addr::Client(CLIENT), m, cx)
        }));
        if seq > 1 {
            assert!(proposed_seqs(&fx).is_empty(), "{:?}", proposed_seqs(&fx));
        }
    }
    assert_eq!(proposed_seqs(&fx), vec![vec![1, 2, 3]]);
}

/// Client-id churn (issue 10 item 9): every slot, fresh ids each run one
/// request, some in session 0 and some naming the slot before (any client
/// may name a decided slot). The table holds at most the ids of the last
/// `client_expiry_slots` plus a checkpoint interval of slots, and never
/// more than `client_table_bytes` (new ids get `Busy` at the bound); once
/// the floor rises, session-0 ids get `Stale` and take no entry. On the
/// code before expiry, the table grew by every id for ever.
#[test]
fn client_id_churn_keeps_the_table_bounded() {
    let per_slot = 3;
    for bound in [usize::MAX, 40 * 72] {
        let mut r = backup(Params {
            client_expiry_slots: 8,
            client_table_bytes: bound,
            ..params()
        });
        let mut next = 100;
        let mut outcomes = BTreeMap::new();
        for slot in 1..=400 {
            for k in 0..per_slot {
                let req = Request {
                    client: ClientId(next),
                    session: if k == 0 { 0 } else { slot - 1 },
                    seq: 1,
                    read_only: false,
                    op: b"churn".to_vec(),
                    auth: Vec::new(),
                    sig: None,
                };
                next += 1;
                let what = match r.execute_request_quiet(slot, &req) {
                    Outcome::Ran(_) => "ran",
                    Outcome::Refused(RefuseReason::Busy) => "busy",
                    Outcome::Refused(RefuseReason::Stale { .. }) => "stale",
                    Outcome::Refused(RefuseReason::SessionAhead) => "ahead",
                    Outcome::Skipped => "skipped",
                };
                *outcomes.entry((k == 0, what)).or_insert(0) += 1;
            }
            if slot % r.p.checkpoint_interval == 0 {
                r.expire_clients(slot);
            }
            let held = r.clients.len() as u64;
            assert!(held <= (8 + 4) * per_slot, "slot {slot}: {held} entries");
            // the last entry admitted may pass the bound by its reply
            let slack = 8 + 32;
            let b = r.client_bytes;
            assert!(b <= bound.saturating_add(slack), "slot {slot}: {b} bytes");
            assert_eq!(
                r.client_bytes,
                r.clients.values().map(execute::entry_bytes).sum()
            );
        }
        // session-0 ids run only before the floor rises (checkpoint 8)
        assert_eq!(
            outcomes.get(&(true, "stale")),
            Some(&(400 - 8)),
            "{outcomes:?}"
        );
        if bound < usize::MAX {
            assert!(outcomes.contains_key(&(false, "busy")), "{outcomes:?}");
        } else {
            assert_eq!(outcomes.get(&(false, "ran")), Some(&800), "{outcomes:?}");
        }
        assert!(r.stats().clients_expired > 300);
    }
}

/// A pinned client ([`Params::pinned_clients`]: a ByzCast child's parent
/// replicas) numbers contiguously in session 0 for ever: its entry never
/// expires and the floor never refuses it, while an unpinned client idle
/// as long loses its entry and is refused.
#[test]
fn a_pinned_client_never_expires_nor_meets_the_floor() {
    let other = ClientId(2);
    let p = Params {
        client_expiry_slots: 4,
        pinned_clients: [CLIENT].into(),
        ..params()
    };
    let mut r = backup(p);
    let req = |c: ClientId, seq: u64| Request {
        client: c,
        session: 0,
        seq,
        read_only: false,
        op: b"x".to_vec(),
        auth: Vec::new(),
        sig: None,
    };
    for (slot, c) in [(1, CLIENT), (2, other)] {
        assert!(matches!(
            r.execute_request_quiet(slot, &req(c, 1)),
            Outcome::Ran(_)
        ));
    }
    for slot in (4..=40).step_by(4) {
        r.expire_clients(slot);
    }
    assert_eq!(r.session_floor, 37);
    assert_eq!(r.clients.keys().copied().collect::<Vec<_>>(), vec![CLIENT]);
    assert!(matches!(
        r.execute_request_quiet(41, &req(CLIENT, 2)),
        Outcome::Ran(_)
    ));
    let refused = r.execute_request_quiet(42, &req(other, 2));
    assert!(matches!(
        refused,
        Outcome::Refused(RefuseReason::Stale { floor: 37 })
    ));
    // a pinned client without an entry (a restarted stream's first) runs
    let mut fresh = backup(Params {
        client_expiry_slots: 4,
        pinned_clients: [CLIENT].into(),
        ..params()
    });
    fresh.expire_clients(40);
    assert!(matches!(
        fresh.execute_request_quiet(41, &req(CLIENT, 1)),
        Outcome::Ran(_)
    ));
}
