//! A parent replica's forward stream to one child group: the copies it
//! forwards ([`Envelope::Forward`]), submitted to the child's SMR as the
//! client `ClientId::for_replica(me)`, with sequence numbers that survive
//! restarts.
//!
//! # Why not an `smr::Client`
//!
//! The child's SMR executes a client's requests in contiguous sequence order
//! and ignores numbers it has executed. An SMR client numbers from 1 in
//! memory, so a restarted parent replica used to resubmit from 1 and the
//! child ignored it for good. Here the numbering is durable state of the
//! stream:
//!
//! - a forward gets the next sequence number when the machine produces it,
//!   and [`Record::Forward`] (number, stream index, envelope) precedes its
//!   first transmission, in the step that executed the slot producing it (so
//!   it shares that step's group commit);
//! - a sequence number is *done* once replicas of the child holding a weak
//!   quorum of votes have replied to it or to a later one (the child executes
//!   a client's requests in order, so a reply to `s` means every number up to
//!   `s` ran there); [`Record::Acked`] records the new floor, and forwards it
//!   admits into the window are sent only after it (held by the driver's
//!   durable-before-send rule);
//! - so at most `client_window` numbers beyond the *durable* floor ever left:
//!   after a restart the stream resends everything above the durable floor
//!   with the same numbers and contents, and the child either runs them or
//!   answers from its reply cache (which holds its last `client_window`
//!   replies per client, all above that floor);
//! - forwards that the group machine produces again while the replica replays
//!   its log are dropped by their stream index (at most the last one
//!   submitted), so a restart neither skips nor repeats a number.
//!
//! The stream numbers contiguously in session 0 for ever: the child pins
//! its parent replicas' client ids ([`byzscale_smr::Params::pinned_clients`],
//! set from the topology by [`crate::Replica`]), so their entries never
//! expire and the child's session floor never refuses them.
//!
//! Requests go first to the leader of the view a weak quorum of replies
//! reported (PBFT §4.2, like the SMR client), and every `client_retry`
//! without progress the oldest outstanding ones go to every child replica.

use crate::durable::Record;
use crate::machine::Forward;
use crate::message::Envelope;
use byzscale_core::{Addr, ClientId, Cx, GroupId, NodeId, Protocol, Time};
use byzscale_smr::{GroupInfo, Message, Params, Request};
use std::collections::BTreeMap;

/// Outstanding forwards resent per retry tick.
pub const RESEND: usize = 64;

/// What survives a restart of one stream (see [`Record::Forward`] and
/// [`Record::Acked`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamDurable {
    /// Every sequence number up to here is done at the child.
    pub acked: u64,
    /// Forwards above `acked`: sequence number → (stream index, envelope).
    pub pending: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The highest sequence number and stream index ever assigned.
    pub last_seq: u64,
    pub last_k: u64,
}

impl StreamDurable {
    /// Fold one stream record in; whether anything changed.
    pub fn apply(&mut self, r: &Record) -> bool {
        match r {
            Record::Forward { seq, k, op, .. } => {
                if *seq <= self.acked || self.pending.contains_key(seq) {
                    return false;
                }
                self.pending.insert(*seq, (*k, op.clone()));
                self.last_seq = self.last_seq.max(*seq);
                self.last_k = self.last_k.max(*k);
                true
            }
            Record::Acked { seq, .. } => {
                if *seq <= self.acked {
                    return false;
                }
                self.acked = *seq;
                self.last_seq = self.last_seq.max(*seq);
                self.pending = self.pending.split_off(&(seq + 1));
                true
            }
            Record::Smr(_) | Record::Awaiting { .. } | Record::Done { .. } => false,
        }
    }
}

struct Entry {
    k: u64,
    op: Vec<u8>,
    /// Built (with its authenticator) when first sent.
    req: Option<Request>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Retry;

/// One parent → child forward stream (see the module docs). Its step runs
/// under the replica's client identity.
pub struct StreamOut {
    me: NodeId,
    client: ClientId,
    child: GroupInfo,
    window: u64,
    retry: Time,
    d: StreamDurable,
    entries: BTreeMap<u64, Entry>,
    /// The highest sequence number each child replica (by position) replied
    /// to, and the view it reported.
    replied: Vec<(u64, u64)>,
    view: u64,
    /// `acked` when the retry timer was last armed.
    progress_mark: u64,
    armed: bool,
}

impl StreamOut {
    /// A stream starting from what survived (`StreamDurable::default()` for a
    /// new one).
    pub fn new(me: NodeId, child: GroupInfo, p: &Params, d: StreamDurable) -> Self {
        let entries = d
            .pending
            .iter()
            .map(|(s, (k, op))| {
                let e = Entry {
                    k: *k,
                    op: op.clone(),
                    req: None,
                };
                (*s, e)
            })
            .collect();
        StreamOut {
            me,
            client: ClientId::for_replica(me),
            replied: vec![(0, 0); child.n()],
            child,
            window: p.client_window.max(1),
            retry: p.client_retry.max(1),
            entries,
            progress_mark: d.acked,
            d,
            view: 0,
            armed: false,
        }
    }

    pub fn child(&self) -> GroupId {
        self.child.id
    }
    /// Every sequence number up to this one is done at the child.
    pub fn acked(&self) -> u64 {
        self.d.acked
    }
    /// Forwards assigned and not yet done.
    pub fn outstanding(&self) -> usize {
        self.entries.len()
    }

    fn request(&self, seq: u64, op: &[u8], cx: &Cx<'_, Self>) -> Request {
        Request::authenticated(
            cx.crypto(),
            &self.child,
            self.client,
            (0, seq),
            false,
            op.to_vec(),
        )
    }

    /// Send every unsent entry inside the window: to the believed leader, or
    /// to every child replica if `all`.
    fn send_window(&mut self, all: bool, cx: &mut Cx<'_, Self>) {
        let limit = self.d.acked.saturating_add(self.window);
        let unsent: Vec<u64> = self
            .entries
            .range(..=limit)
            .filter(|(_, e)| e.req.is_none())
            .map(|(s, _)| *s)
            .collect();
        for s in unsent {
            let req = self.request(s, &self.entries[&s].op, cx);
            let msg = Message::Request(req.clone());
            if all {
                cx.multicast(self.child.addrs(), msg);
            } else {
                cx.send(Addr::Node(self.child.leader(self.view)), msg);
            }
            if let Some(e) = self.entries.get_mut(&s) {
                e.req = Some(req);
            }
        }
        self.arm(cx);
    }

    fn arm(&mut self, cx: &mut Cx<'_, Self>) {
        if !self.armed && !self.entries.is_empty() {
            self.armed = true;
            self.progress_mark = self.d.acked;
            cx.set_timer(Retry, self.retry);
        }
    }

    /// The largest value reported by replicas holding a weak quorum of votes.
    fn weak_floor(&self, value: impl Fn(&(u64, u64)) -> u64) -> u64 {
        let mut by: Vec<(u64, usize)> = self
            .replied
            .iter()
            .enumerate()
            .map(|(i, r)| (value(r), i))
            .collect();
        by.sort_unstable_by(|a, b| b.cmp(a));
        let mut voters = Vec::new();
        for (v, i) in by {
            voters.push(i);
            if self.child.qs.is_weak(voters.iter().copied()) {
                return v;
            }
        }
        0
    }

    fn on_reply(&mut self, from: Addr, r: byzscale_smr::Reply, cx: &mut Cx<'_, Self>) {
        let Some(pos) = from.node().and_then(|n| self.child.index_of(n)) else {
            cx.fault(
                from,
                crate::Fault::Unexpected,
                "SMR reply from a non-member",
            );
            return;
        };
        if r.replica != self.child.members[pos] || r.client != self.client || r.read_only {
            cx.fault(
                from,
                crate::Fault::Unexpected,
                "SMR reply naming another replica or client",
            );
            return;
        }
        // a reply to a number never sent is a lie; it cannot move the floor
        // past what is outstanding here
        let seq = r.seq.min(self.d.last_seq);
        let e = &mut self.replied[pos];
        e.0 = e.0.max(seq);
        e.1 = e.1.max(r.view);
        self.view = self.view.max(self.weak_floor(|r| r.1));
        let floor = self.weak_floor(|r| r.0);
        if floor > self.d.acked {
            let done = floor - self.d.acked;
            let rec = Record::Acked {
                child: self.child.id,
                seq: floor,
            };
            self.d.apply(&rec);
            self.entries = self.entries.split_off(&(floor + 1));
            // the forwards this admits leave once the new floor is durable
            cx.persist(rec);
            cx.output(done);
            self.send_window(false, cx);
        }
    }
}

impl Protocol for StreamOut {
    type Message = Message;
    type Input = Forward;
    /// How many more forwards are done at the child.
    type Output = u64;
    type Timer = Retry;
    type Record = Record;

    /// Resend what survived a restart, to every child replica (the view is
    /// not known yet).
    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        self.send_window(true, cx);
    }

    /// Submit `f` unless its stream index was submitted before (a replay).
    fn on_input(&mut self, f: Forward, cx: &mut Cx<'_, Self>) {
        if f.k <= self.d.last_k {
            return;
        }
        let seq = self.d.last_seq + 1;
        let op = Envelope::Forward {
            sender: self.me,
            k: f.k,
            msg: f.msg,
        }
        .encode();
        let rec = Record::Forward {
            child: self.child.id,
            seq,
            k: f.k,
            op: op.clone(),
        };
        self.d.apply(&rec);
        self.entries.insert(
            seq,
            Entry {
                k: f.k,
                op,
                req: None,
            },
        );
        cx.persist(rec);
        self.send_window(false, cx);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Reply(r) => self.on_reply(from, r, cx),
            // the child's client table is full: retried as usual (a pinned
            // stream is never told stale)
            Message::Refused { .. } => {}
            other => cx.fault(
                from,
                crate::Fault::Unexpected,
                format!("{} sent to a parent's forward stream", other.kind()),
            ),
        }
    }

    /// No progress for a whole period: the oldest outstanding forwards go to
    /// every child replica (whose request timers then run against a
    /// censoring leader).
    fn on_timer(&mut self, _: Retry, cx: &mut Cx<'_, Self>) {
        self.armed = false;
        if self.d.acked == self.progress_mark {
            let group = self.child.id;
            let mut resend = Vec::new();
            for e in self.entries.values_mut() {
                let Some(req) = e.req.as_mut() else { continue };
                // retransmissions carry the signature a child replica may
                // require (a request that failed its MAC in a batch)
                req.sign(cx.crypto(), group);
                resend.push(req.clone());
                if resend.len() == RESEND {
                    break;
                }
            }
            // (an entry has a request only once it was sent, after its
            // record was durable)
            for req in resend {
                cx.multicast(self.child.addrs(), Message::Request(req));
            }
        }
        self.arm(cx);
    }
}

impl std::fmt::Debug for StreamOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamOut")
            .field("child", &self.child.id)
            .field("acked", &self.d.acked)
            .field("last_seq", &self.d.last_seq)
            .field("last_k", &self.d.last_k)
            .field(
                "outstanding",
                &self.entries.values().map(|e| e.k).collect::<Vec<_>>(),
            )
            .finish()
    }
}
