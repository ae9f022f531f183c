//! The site state machine: what a site says is a deterministic function of
//! its ordered history.
//!
//! Every server of a site runs a [`SiteMachine`] as the service of its
//! nested SMR replica, so every correct server of the site sees the same
//! [`SiteOp`]s in the same order and makes the machine output the same
//! [`Event::Said`]: what the site says, which each server then
//! threshold-signs (THRESHOLD-SIGN, `server.rs`).
//!
//! - At the leading site, an ordered [`SiteOp::Assign`] of an update not
//!   assigned before gets the next global sequence number: the site says
//!   `Proposal(gv, seq, update)` (ASSIGN-SEQUENCE's result).
//! - At any other site, an ordered [`SiteOp::Proposal`] of the leading site
//!   makes the site say `Accept(gv, seq, digest)`.
//! - The machine remembers what the site said per seq (the last
//!   [`crate::config::WINDOW`] seqs), so it never says two different things
//!   for one (gv, seq): a second, different Proposal for a seq it accepted
//!   is [`Event::Conflict`].
//!
//! The operations were checked before ordering (the request filter in
//! `server.rs`: update signatures, the leading site's threshold signature),
//! so the machine trusts them; a malformed one is ignored.
//!
//! The events are side effects of execution, not replicated state: they wait
//! in an outbox that the server drains after each SMR step (through
//! `Replica::service`, hence the `RefCell`), as ByzCast's group machine does.
//! A server that catches up by state transfer skips the events of the slots
//! it did not execute (the other servers' signed words reach it instead,
//! `server/retransmit.rs`).
//!
//! The global view change (§4.2) is the machine's too (`Phase`, and the
//! second `impl` block): Suspects, GlobalVc votes, CONSTRUCT-ARU from 2f+1
//! servers' reports, constraints, binding each seq above the ARU to the
//! highest-gv entry of a majority of sites' constraints (a no-op where
//! none), re-proposal. What the site accepted is `said` (the last `window`
//! seqs), so the Paxos state of a site is replicated state.

use crate::message::{Accepted, GlobalView, Seq, SiteId, SiteMsg, SiteOp, Update};
use byzscale_core::codec;
use byzscale_core::crypto::Digest;
use byzscale_core::service::Service;
use byzscale_core::{ClientId, NodeId};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// What executing a site operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The site says `msg` (every correct server of the site alike).
    Said(SiteMsg),
    /// An ordered Proposal for a seq the site already accepted another
    /// update for: the leading site signed two (more than f of its servers
    /// are faulty). Nothing is said.
    Conflict { gv: GlobalView, seq: Seq },
    /// The site moved to global view `gv` (a majority of sites voted for
    /// it, or its leading site's Aru or Proposal showed it installed).
    Installed(GlobalView),
}

/// Where the leading site of the current global view is in the global view
/// change (§4.2); other sites stay in `Normal`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Normal,
    /// CONSTRUCT-ARU: each server's executed point, until 2f+1 are in.
    Reports(BTreeMap<NodeId, u64>),
    /// The Aru is said: what each site accepted above it, until a majority
    /// of sites (this one included) answered.
    Constraints {
        aru: u64,
        got: BTreeMap<SiteId, Vec<Accepted>>,
    },
    /// Seqs bound by the constraints whose update's content is awaited
    /// ([`SiteOp::Repropose`]); new updates are assigned meanwhile.
    Reproposing(BTreeMap<u64, Digest>),
}

/// The replicated state (in the SMR snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    gv: GlobalView,
    /// The last seq this site assigned (as the leading site).
    assigned_seq: u64,
    /// Per client, the highest timestamp assigned a seq here. Bounded by
    /// the known clients (the filter admits only their signed updates).
    assigned: BTreeMap<ClientId, u64>,
    /// What this site said per seq: (gv, digest of the update), the last
    /// `window` seqs. For the Paxos among sites it is what the site
    /// accepted (or, leading, proposed) with the highest gv.
    said: BTreeMap<u64, (GlobalView, Digest)>,
    /// Servers that suspected the leading site of `gv` (at most 3f+1: the
    /// filter admits a Suspect only from the server it names).
    suspects: BTreeSet<NodeId>,
    /// The highest gv this site voted for (said GlobalVc).
    voted: GlobalView,
    /// The highest gv whose Aru this site answered with a Constraint.
    answered: GlobalView,
    phase: Phase,
}

pub struct SiteMachine {
    site: SiteId,
    sites: u32,
    window: u64,
    f: usize,
    state: State,
    outbox: RefCell<Vec<Event>>,
}

impl SiteMachine {
    /// The machine of `site` among `sites`, remembering `window` seqs, for
    /// f = 0 (see [`SiteMachine::with_f`]).
    pub fn new(site: SiteId, sites: u32, window: u64) -> Self {
        SiteMachine {
            site,
            sites: sites.max(1),
            window: window.max(1),
            f: 0,
            state: State::default(),
            outbox: RefCell::new(Vec::new()),
        }
    }

    /// Sites of 3f+1 servers: f+1 Suspects make a GlobalVc, 2f+1 reports
    /// an ARU.
    pub fn with_f(mut self, f: usize) -> Self {
        self.f = f;
        self
    }

    /// Take the events produced since the last call.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.outbox.borrow_mut())
    }

    pub fn global_view(&self) -> GlobalView {
        self.state.gv
    }

    /// The highest global view this site voted for.
    pub fn voted(&self) -> GlobalView {
        self.state.voted
    }

    pub fn phase(&self) -> &Phase {
        &self.state.phase
    }

    /// Whether this site leads the current global view.
    pub fn leading(&self) -> bool {
        self.leader(self.state.gv) == self.site
    }

    fn leader(&self, gv: GlobalView) -> SiteId {
        SiteId((gv.0 % self.sites as u64) as u32)
    }

    /// The highest timestamp of `client` this site assigned a seq to.
    pub fn assigned(&self, client: ClientId) -> u64 {
        self.state.assigned.get(&client).copied().unwrap_or(0)
    }

    /// What the site said for `seq`, if it remembers.
    pub fn said(&self, seq: Seq) -> Option<(GlobalView, Digest)> {
        self.state.said.get(&seq.0).copied()
    }

    /// The seqs bound by the constraints whose content the site awaits.
    pub fn awaiting_content(&self) -> Vec<(Seq, Digest)> {
        match &self.state.phase {
            Phase::Reproposing(p) => p.iter().map(|(s, d)| (Seq(*s), *d)).collect(),
            _ => Vec::new(),
        }
    }

    /// Seqs at or below this are forgotten: operations for them are ignored.
    fn floor(&self) -> u64 {
        let top = self.state.said.keys().next_back().copied().unwrap_or(0);
        top.saturating_sub(self.window)
    }

    fn event(&self, e: Event) {
        self.outbox.borrow_mut().push(e);
    }

    fn say(&mut self, gv: GlobalView, seq: Seq, digest: Digest, msg: SiteMsg) {
        self.state.said.insert(seq.0, (gv, digest));
        let floor = self.floor();
        self.state.said.retain(|s, _| *s > floor);
        self.event(Event::Said(msg));
    }

    /// ASSIGN-SEQUENCE's outcome at the leading site (not while a global
    /// view change has not fixed the next free seq).
    fn assign(&mut self, update: Update) {
        let settled = matches!(self.state.phase, Phase::Normal | Phase::Reproposing(_));
        if !self.leading() || !settled || update.ts <= self.assigned(update.client) {
            return;
        }
        self.state.assigned.insert(update.client, update.ts);
        self.state.assigned_seq += 1;
        let (gv, seq) = (self.state.gv, Seq(self.state.assigned_seq));
        let digest = update.digest();
        self.say(gv, seq, digest, SiteMsg::Proposal { gv, seq, update });
    }

    /// Accept a Proposal of the leading site of `gv` (checked before
    /// ordering): a later gv than the site's is adopted (its leading site
    /// installed it), an earlier one is refused (Paxos's promise).
    fn accept(&mut self, gv: GlobalView, seq: Seq, digest: Digest) {
        if gv < self.state.gv || self.leader(gv) == self.site || seq.0 <= self.floor() {
            return;
        }
        self.install(gv);
        match self.state.said.get(&seq.0) {
            Some(prev) if *prev == (gv, digest) => {} // said already
            Some((g, _)) if *g >= gv => self.event(Event::Conflict { gv, seq }),
            _ => self.say(gv, seq, digest, SiteMsg::Accept { gv, seq, digest }),
        }
    }
}

/// The global view change (§4.2), as the site's ordered history drives it.
impl SiteMachine {
    fn install(&mut self, gv: GlobalView) {
        if gv <= self.state.gv {
            return;
        }
        self.state.gv = gv;
        self.state.suspects.clear();
        self.state.phase = if self.leading() {
            Phase::Reports(BTreeMap::new())
        } else {
            Phase::Normal
        };
        self.event(Event::Installed(gv));
    }

    fn vote(&mut self, gv: GlobalView) {
        if gv <= self.state.voted || gv <= self.state.gv {
            return;
        }
        self.state.voted = gv;
        self.event(Event::Said(SiteMsg::GlobalVc { gv }));
    }

    /// SuspectLeader: f+1 distinct servers (one correct) make the site vote.
    fn suspect(&mut self, gv: GlobalView, server: NodeId) {
        if gv != self.state.gv {
            return;
        }
        self.state.suspects.insert(server);
        if self.state.suspects.len() > self.f {
            self.vote(GlobalView(gv.0 + 1));
        }
    }

    /// Signed GlobalVc votes (checked before ordering, one per site): a
    /// majority for a later gv installs it; a vote for the next gv is
    /// joined.
    fn votes(&mut self, votes: &[(SiteId, GlobalView)]) {
        let mut per_gv: BTreeMap<GlobalView, BTreeSet<SiteId>> = BTreeMap::new();
        for (site, gv) in votes {
            per_gv.entry(*gv).or_default().insert(*site);
        }
        let majority = self.sites as usize / 2 + 1;
        let installed = per_gv
            .iter()
            .rev()
            .find(|(gv, s)| **gv > self.state.gv && s.len() >= majority);
        if let Some((gv, _)) = installed {
            self.install(*gv);
        } else if per_gv.contains_key(&GlobalView(self.state.gv.0 + 1)) {
            self.vote(GlobalView(self.state.gv.0 + 1));
        }
    }

    /// What this site accepted (or proposed) above `aru`.
    fn accepted_above(&self, aru: u64) -> Vec<Accepted> {
        let above = self.state.said.range(aru + 1..);
        above.map(|(s, (gv, d))| (*gv, Seq(*s), *d)).collect()
    }

    /// CONSTRUCT-ARU: with 2f+1 servers' executed points, the (f+1)-th
    /// highest is one a correct server reached (every seq up to it is
    /// globally ordered); the site says it and its own constraint.
    fn report(&mut self, gv: GlobalView, server: NodeId, executed: Seq) {
        let Phase::Reports(reports) = &mut self.state.phase else {
            return;
        };
        if gv != self.state.gv {
            return;
        }
        reports.insert(server, executed.0);
        if reports.len() < 2 * self.f + 1 {
            return;
        }
        let mut points: Vec<u64> = reports.values().copied().collect();
        points.sort_unstable_by(|a, b| b.cmp(a));
        let aru = points[self.f];
        let mut got = BTreeMap::new();
        got.insert(self.site, self.accepted_above(aru));
        self.state.phase = Phase::Constraints { aru, got };
        self.event(Event::Said(SiteMsg::Aru { gv, aru: Seq(aru) }));
        self.bind();
    }

    /// Another site's leading site says its Aru: adopt its gv and answer
    /// with what this site accepted above it (once per gv).
    fn answer(&mut self, site: SiteId, gv: GlobalView, aru: Seq) {
        let stale = gv < self.state.gv || gv <= self.state.answered;
        if stale || site == self.site || self.leader(gv) != site {
            return;
        }
        self.install(gv);
        self.state.answered = gv;
        let accepted = self.accepted_above(aru.0);
        self.event(Event::Said(SiteMsg::Constraint { gv, aru, accepted }));
    }

    /// A site's constraint at the leading site.
    fn constraint(&mut self, site: SiteId, gv: GlobalView, aru: Seq, accepted: Vec<Accepted>) {
        let window = self.window as usize;
        let Phase::Constraints { aru: mine, got } = &mut self.state.phase else {
            return;
        };
        let fits = accepted.len() <= window && accepted.iter().all(|(_, s, _)| s.0 > *mine);
        if gv != self.state.gv || aru.0 != *mine || !fits || site == self.site {
            return;
        }
        got.entry(site).or_insert(accepted);
        self.bind();
    }

    /// With a majority of constraints: each seq above the ARU up to the
    /// highest named is bound to its highest-gv entry, or to a no-op;
    /// no-ops (and bound no-ops) are proposed at once, the rest once their
    /// content is submitted.
    fn bind(&mut self) {
        let majority = self.sites as usize / 2 + 1;
        let Phase::Constraints { aru, got } = &self.state.phase else {
            return;
        };
        if got.len() < majority {
            return;
        }
        let aru = *aru;
        let mut bound: BTreeMap<u64, (GlobalView, Digest)> = BTreeMap::new();
        for (gv, seq, d) in got.values().flatten() {
            let e = bound.entry(seq.0).or_insert((*gv, *d));
            if *gv > e.0 {
                *e = (*gv, *d);
            }
        }
        let top = bound.keys().next_back().copied().unwrap_or(aru).max(aru);
        self.state.assigned_seq = top;
        let (gv, noop) = (self.state.gv, Update::noop());
        let mut awaiting = BTreeMap::new();
        for seq in aru + 1..=top {
            match bound.get(&seq) {
                Some((_, d)) if *d != noop.digest() => {
                    awaiting.insert(seq, *d);
                }
                _ => {
                    let (seq, update) = (Seq(seq), noop.clone());
                    self.say(
                        gv,
                        seq,
                        noop.digest(),
                        SiteMsg::Proposal { gv, seq, update },
                    );
                }
            }
        }
        self.state.phase = if awaiting.is_empty() {
            Phase::Normal
        } else {
            Phase::Reproposing(awaiting)
        };
    }

    /// The content of a bound seq: propose it in the new gv.
    fn repropose(&mut self, gv: GlobalView, seq: Seq, update: Update) {
        let Phase::Reproposing(awaiting) = &mut self.state.phase else {
            return;
        };
        let d = update.digest();
        if gv != self.state.gv || awaiting.get(&seq.0) != Some(&d) {
            return;
        }
        awaiting.remove(&seq.0);
        if awaiting.is_empty() {
            self.state.phase = Phase::Normal;
        }
        let ts = self.assigned(update.client).max(update.ts);
        self.state.assigned.insert(update.client, ts);
        self.say(gv, seq, d, SiteMsg::Proposal { gv, seq, update });
    }
}

impl Service for SiteMachine {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        match SiteOp::decode(op) {
            Ok(SiteOp::Assign(u)) => self.assign(u),
            Ok(SiteOp::Proposal(s)) => {
                if let SiteMsg::Proposal { gv, seq, update } = s.msg {
                    self.accept(gv, seq, update.digest());
                }
            }
            Ok(SiteOp::Suspect { gv, server }) => self.suspect(gv, server),
            Ok(SiteOp::Votes(v)) => {
                let votes: Vec<(SiteId, GlobalView)> = v
                    .iter()
                    .filter(|s| matches!(s.msg, SiteMsg::GlobalVc { .. }))
                    .map(|s| (s.site, s.msg.gv()))
                    .collect();
                self.votes(&votes);
            }
            Ok(SiteOp::Report {
                gv,
                server,
                executed,
            }) => self.report(gv, server, executed),
            Ok(SiteOp::Aru(s)) => {
                if let SiteMsg::Aru { gv, aru } = s.msg {
                    self.answer(s.site, gv, aru);
                }
            }
            Ok(SiteOp::Constraint(s)) => {
                if let SiteMsg::Constraint { gv, aru, accepted } = s.msg {
                    self.constraint(s.site, gv, aru, accepted);
                }
            }
            Ok(SiteOp::Repropose { gv, seq, update }) => self.repropose(gv, seq, update),
            Err(_) => {}
        }
        Vec::new()
    }

    fn query(&self, _op: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn snapshot(&self) -> Vec<u8> {
        codec::to_bytes(&self.state)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.state = codec::from_bytes(snapshot, snapshot.len()).map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Signed;
    use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
    use byzscale_core::threshold::{Signature, SIG_BYTES};
    use byzscale_core::Addr;

    fn update(client: u64, ts: u64) -> Update {
        let c = ClientId(client);
        let crypto = Crypto::new(
            Addr::Client(c),
            Identity::from_seed([client as u8; 32]),
            CryptoMode::Real,
        );
        Update::signed(&crypto, c, ts, format!("op{ts}").into_bytes())
    }

    fn proposal(seq: u64, u: Update) -> Vec<u8> {
        let msg = SiteMsg::Proposal {
            gv: GlobalView(0),
            seq: Seq(seq),
            update: u,
        };
        let sig = Signature([0; SIG_BYTES]); // checked before ordering, not here
        SiteOp::Proposal(Signed {
            site: SiteId(0),
            msg,
            sig,
        })
        .encode()
    }

    #[test]
    fn the_leading_site_assigns_each_update_once_in_order() {
        let mut m = SiteMachine::new(SiteId(0), 3, 16);
        for op in [update(1, 1), update(2, 1), update(1, 1), update(1, 2)] {
            m.execute(&SiteOp::Assign(op).encode());
        }
        let said: Vec<(u64, u64, u64)> = m
            .take_events()
            .into_iter()
            .map(|e| match e {
                Event::Said(SiteMsg::Proposal { seq, update, .. }) => {
                    (seq.0, update.client.0, update.ts)
                }
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(
            said,
            vec![(1, 1, 1), (2, 2, 1), (3, 1, 2)],
            "the repeat is not"
        );
        // a site that does not lead never assigns
        let mut other = SiteMachine::new(SiteId(1), 3, 16);
        other.execute(&SiteOp::Assign(update(1, 1)).encode());
        assert!(other.take_events().is_empty());
    }

    #[test]
    fn a_site_accepts_once_per_seq_and_reports_a_conflicting_proposal() {
        let mut m = SiteMachine::new(SiteId(2), 3, 4);
        m.execute(&proposal(1, update(1, 1)));
        m.execute(&proposal(1, update(1, 1))); // the same again: nothing
        m.execute(&proposal(1, update(2, 1))); // another update for seq 1
        m.execute(b"garbage");
        let d = update(1, 1).digest();
        let accept = SiteMsg::Accept {
            gv: GlobalView(0),
            seq: Seq(1),
            digest: d,
        };
        let conflict = Event::Conflict {
            gv: GlobalView(0),
            seq: Seq(1),
        };
        assert_eq!(m.take_events(), vec![Event::Said(accept), conflict]);
        // the window: seqs far below the newest are forgotten and ignored
        m.execute(&proposal(10, update(3, 1)));
        assert_eq!(m.said(Seq(1)), None);
        m.execute(&proposal(2, update(4, 1)));
        assert_eq!(m.take_events().len(), 1, "only seq 10 is said");
        // the state survives a snapshot
        let mut copy = SiteMachine::new(SiteId(2), 3, 4);
        copy.restore(&m.snapshot()).unwrap();
        assert_eq!(copy.snapshot(), m.snapshot());
        assert!(copy.restore(&[0xff; 3]).is_err());
    }

    fn signed(site: u32, msg: SiteMsg) -> Signed {
        let sig = Signature([0; SIG_BYTES]); // checked before ordering, not here
        Signed {
            site: SiteId(site),
            msg,
            sig,
        }
    }

    #[test]
    fn a_new_leading_site_binds_the_highest_gv_entries_and_fills_gaps_with_noops() {
        // site 1 of three, f = 1: it accepted u1 at seq 1 in gv 0
        let mut m = SiteMachine::new(SiteId(1), 3, 16).with_f(1);
        let (u1, u2, u3) = (update(1, 1), update(2, 1), update(3, 1));
        m.execute(&proposal(1, u1.clone()));
        // one Suspect is not f+1; two distinct servers make the site vote
        for n in [7, 7, 8] {
            let op = SiteOp::Suspect {
                gv: GlobalView(0),
                server: NodeId(n),
            };
            m.execute(&op.encode());
        }
        let vc = |site| signed(site, SiteMsg::GlobalVc { gv: GlobalView(1) });
        m.execute(&SiteOp::Votes(vec![vc(1), vc(2)]).encode()); // a majority
        assert_eq!(m.global_view(), GlobalView(1));
        assert!(m.leading());
        for (n, executed) in [(4, 0), (5, 0), (6, 3)] {
            let op = SiteOp::Report {
                gv: GlobalView(1),
                server: NodeId(n),
                executed: Seq(executed),
            };
            m.execute(&op.encode());
        }
        let events = m.take_events();
        let d1 = u1.digest();
        let accept = Event::Said(SiteMsg::Accept {
            gv: GlobalView(0),
            seq: Seq(1),
            digest: d1,
        });
        let aru = Event::Said(SiteMsg::Aru {
            gv: GlobalView(1),
            aru: Seq(0),
        });
        let want = vec![
            accept,
            Event::Said(SiteMsg::GlobalVc { gv: GlobalView(1) }),
            Event::Installed(GlobalView(1)),
            aru,
        ];
        assert_eq!(events, want, "the (f+1)-th highest of 2f+1 reports: 0");
        // site 2 accepted u1 at seq 1 too, and u3 at seq 3; nothing at seq 2
        let accepted = vec![
            (GlobalView(0), Seq(3), u3.digest()),
            (GlobalView(0), Seq(1), d1),
        ];
        let c = SiteMsg::Constraint {
            gv: GlobalView(1),
            aru: Seq(0),
            accepted,
        };
        m.execute(&SiteOp::Constraint(signed(2, c)).encode());
        let noop = Event::Said(SiteMsg::Proposal {
            gv: GlobalView(1),
            seq: Seq(2),
            update: Update::noop(),
        });
        assert_eq!(m.take_events(), vec![noop], "the gap at seq 2 is a no-op");
        assert_eq!(
            m.awaiting_content(),
            vec![(Seq(1), d1), (Seq(3), u3.digest())]
        );
        // content that does not match the bound digest is ignored
        let wrong = SiteOp::Repropose {
            gv: GlobalView(1),
            seq: Seq(1),
            update: u2.clone(),
        };
        m.execute(&wrong.encode());
        assert!(m.take_events().is_empty());
        for (seq, u) in [(1, u1.clone()), (3, u3.clone())] {
            m.execute(
                &SiteOp::Repropose {
                    gv: GlobalView(1),
                    seq: Seq(seq),
                    update: u,
                }
                .encode(),
            );
        }
        assert_eq!(*m.phase(), Phase::Normal);
        // new updates go after the bound seqs
        m.execute(&SiteOp::Assign(u2.clone()).encode());
        let seqs: Vec<u64> = m
            .take_events()
            .into_iter()
            .map(|e| match e {
                Event::Said(SiteMsg::Proposal {
                    gv: GlobalView(1),
                    seq,
                    ..
                }) => seq.0,
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(seqs, vec![1, 3, 4]);
    }

    #[test]
    fn a_site_answers_an_aru_once_and_refuses_proposals_of_earlier_views() {
        let mut m = SiteMachine::new(SiteId(2), 3, 16).with_f(1);
        m.execute(&proposal(1, update(1, 1)));
        m.execute(&proposal(2, update(2, 1)));
        m.take_events();
        let aru = signed(
            1,
            SiteMsg::Aru {
                gv: GlobalView(1),
                aru: Seq(1),
            },
        );
        m.execute(&SiteOp::Aru(aru.clone()).encode());
        m.execute(&SiteOp::Aru(aru).encode());
        let d2 = update(2, 1).digest();
        let accepted = vec![(GlobalView(0), Seq(2), d2)];
        let want = vec![
            Event::Installed(GlobalView(1)),
            Event::Said(SiteMsg::Constraint {
                gv: GlobalView(1),
                aru: Seq(1),
                accepted,
            }),
        ];
        assert_eq!(m.take_events(), want, "adopted from the Aru, answered once");
        // Paxos's promise: gv 0's leading site is not heard any more
        m.execute(&proposal(3, update(3, 1)));
        assert!(m.take_events().is_empty());
        // an Aru from a site that does not lead its gv is ignored
        let wrong = signed(
            0,
            SiteMsg::Aru {
                gv: GlobalView(2),
                aru: Seq(0),
            },
        );
        m.execute(&SiteOp::Aru(wrong).encode());
        assert!(m.take_events().is_empty());
    }
}
