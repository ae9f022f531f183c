//! The global view change at a server (§4.2; Paxos phase 1 over sites).
//!
//! Every step a site takes is an operation its SMR orders; the site
//! machine (`machine.rs`) decides what the site says. A server's part:
//!
//! 1. **The global timer.** A client update waiting here longer than the
//!    global timeout (f+2 local representative changes at first, doubled
//!    after a global view change that made no progress, reset by
//!    progress) makes the server submit `Suspect(gv)`; f+1 distinct
//!    Suspects ordered make the site say `GlobalVc(gv+1)`.
//! 2. **Votes.** Signed GlobalVc votes of the sites are kept (one per
//!    site, the latest); a server submits them as [`SiteOp::Votes`] once a
//!    majority is in for one gv above its site's (the site installs it) or
//!    a vote for the next gv is (the site joins it).
//! 3. **CONSTRUCT-ARU.** On installing a gv it leads, every server of the
//!    site submits its executed point ([`SiteOp::Report`]); the machine
//!    says the Aru from 2f+1 of them.
//! 4. **Constraints.** A server of another site submits the leading
//!    site's signed Aru ([`SiteOp::Aru`]); its site says its Constraint.
//!    At the leading site servers submit the others' signed Constraints.
//! 5. **Re-proposal.** For each seq the constraints bind to an update, a
//!    server holding the update (its global order, or a signed Proposal
//!    it kept) submits it ([`SiteOp::Repropose`]); a stuck one asks other
//!    sites for it (`Need`).
//!
//! View-change messages are kept one per (site, kind), the latest gv, and
//! sent again while stuck; a server behind in gv that asks (`Need`) gets
//! the current gv's votes and Aru.

use super::{Output, Server};
use crate::message::{GlobalView, Seq, Signed, SiteId, SiteMsg, SiteOp};
use byzscale_core::service::Service;
use byzscale_core::{Cx, Time};
use std::collections::{BTreeMap, BTreeSet};

/// The global timeout grows at most to this many times its first value.
pub const MAX_BACKOFF: Time = 64;

/// A server's global view-change state (local, not replicated).
pub(crate) struct ViewState {
    base: Time,
    timeout: Time,
    /// The executed seq when the last global view was installed.
    installed_at: Option<u64>,
    /// The gv this server last suspected the leading site of.
    suspected: Option<GlobalView>,
    /// The last (gv, votes) submitted.
    votes_sent: (GlobalView, usize),
    aru_sent: GlobalView,
    constraints_sent: BTreeSet<(GlobalView, SiteId)>,
    reproposed: BTreeSet<(GlobalView, u64)>,
    /// The latest view-change message per (site, kind).
    pub(crate) msgs: BTreeMap<(SiteId, &'static str), Signed<SiteMsg>>,
}

impl ViewState {
    pub(crate) fn new(global_timeout: Time) -> Self {
        ViewState {
            base: global_timeout,
            timeout: global_timeout,
            installed_at: None,
            suspected: None,
            votes_sent: (GlobalView(0), 0),
            aru_sent: GlobalView(0),
            constraints_sent: BTreeSet::new(),
            reproposed: BTreeSet::new(),
            msgs: BTreeMap::new(),
        }
    }

    /// Keep a verified view-change message unless one of its site and kind
    /// of the same or a later gv is held; whether it was kept.
    pub(crate) fn keep(&mut self, s: &Signed<SiteMsg>) -> bool {
        let key = (s.site, s.msg.kind());
        match self.msgs.get(&key) {
            Some(old) if old.msg.gv() >= s.msg.gv() => false,
            _ => {
                self.msgs.insert(key, s.clone());
                true
            }
        }
    }

    /// The messages of global view `gv` a server of `asker` may need to
    /// catch up: the votes for it and its Aru.
    pub(crate) fn current(&self, gv: GlobalView, asker: SiteId) -> Vec<Signed<SiteMsg>> {
        let of_gv = self.msgs.values().filter(|s| s.msg.gv() == gv);
        let useful = of_gv.filter(|s| !matches!(s.msg, SiteMsg::Constraint { .. }));
        useful.filter(|s| s.site != asker).cloned().collect()
    }

    /// Execution moved: the global timeout is back to its first value.
    pub(crate) fn progress(&mut self) {
        self.timeout = self.base;
    }

    pub(crate) fn timeout(&self) -> Time {
        self.timeout
    }
}

impl<A: Service> Server<A> {
    fn submit_op(&mut self, op: SiteOp) {
        if !self.submit.push(op.encode()) {
            self.stats.dropped += 1;
        }
    }

    /// The global timer: the oldest update waiting here.
    pub(super) fn global_timer(&mut self, cx: &mut Cx<'_, Self>) {
        let gv = self.machine().global_view();
        let oldest = self.updates.values().map(|w| w.since).min();
        let Some(since) = oldest else {
            return;
        };
        if cx.now() < since + self.view.timeout || self.view.suspected >= Some(gv) {
            return;
        }
        self.view.suspected = Some(gv);
        self.stats.global_suspicions += 1;
        tracing::info!(server = %self.me, gv = gv.0, "global timer expired: the leading site is suspected");
        let server = self.me;
        self.submit_op(SiteOp::Suspect { gv, server });
    }

    /// The site installed global view `gv`.
    pub(super) fn on_installed(&mut self, gv: GlobalView, cx: &mut Cx<'_, Self>) {
        self.stats.global_views += 1;
        let executed = self.order.executed().0;
        if self.view.installed_at == Some(executed) {
            self.view.timeout = (self.view.timeout * 2).min(self.view.base * MAX_BACKOFF);
        }
        self.view.installed_at = Some(executed);
        tracing::info!(server = %self.me, gv = gv.0, leading = %self.cfg.leader_site(gv),
            timeout = self.view.timeout, "global view installed");
        let now = cx.now();
        if !self.machine().leading() {
            // forwarded updates are the leading site's business only
            let (cfg, site) = (&self.cfg, self.site);
            self.updates
                .retain(|c, _| cfg.clients.get(c) == Some(&site));
        }
        for w in self.updates.values_mut() {
            (w.since, w.acted) = (now, 0);
        }
        self.assigning.clear();
        self.view.constraints_sent.retain(|(g, _)| *g >= gv);
        self.view.reproposed.retain(|(g, _)| *g >= gv);
        self.prune();
        cx.output(Output::GlobalView { gv });
        if self.machine().leading() {
            let (server, executed) = (self.me, Seq(executed));
            self.submit_op(SiteOp::Report {
                gv,
                server,
                executed,
            });
        }
    }

    /// A verified view-change message of another site (or relayed).
    pub(super) fn on_view_msg(&mut self, from: SiteId, s: Signed<SiteMsg>, cx: &mut Cx<'_, Self>) {
        if !self.view.keep(&s) {
            return;
        }
        if from != self.site {
            self.stats.relayed += 1;
            let peers = self.site_peers();
            cx.multicast(peers, crate::message::Message::Site(s.clone()));
        }
        let gv = s.msg.gv();
        match &s.msg {
            SiteMsg::GlobalVc { .. } => self.try_votes(),
            SiteMsg::Aru { .. } if gv > self.view.aru_sent => {
                self.view.aru_sent = gv;
                self.submit_op(SiteOp::Aru(s));
            }
            SiteMsg::Constraint { .. }
                if self.cfg.leader_site(gv) == self.site
                    && self.view.constraints_sent.insert((gv, s.site)) =>
            {
                self.submit_op(SiteOp::Constraint(s));
            }
            _ => {}
        }
    }

    /// Submit the votes that install a later gv (a majority for it) or
    /// join the next one, if they say more than the last submitted.
    pub(super) fn try_votes(&mut self) {
        let (gv, voted) = (self.machine().global_view(), self.machine().voted());
        let mut per_gv: BTreeMap<GlobalView, Vec<Signed<SiteMsg>>> = BTreeMap::new();
        for s in self.view.msgs.values() {
            if matches!(s.msg, SiteMsg::GlobalVc { .. }) && s.msg.gv() > gv {
                per_gv.entry(s.msg.gv()).or_default().push(s.clone());
            }
        }
        let majority = self.cfg.majority();
        let next = GlobalView(gv.0 + 1);
        let install = per_gv.iter().rev().find(|(_, v)| v.len() >= majority);
        let pick = match install {
            Some((g, v)) => Some((*g, v.clone())),
            None if voted < next => per_gv.get(&next).map(|v| (next, v.clone())),
            None => None,
        };
        let Some((g, votes)) = pick else {
            return;
        };
        if (g, votes.len()) <= self.view.votes_sent {
            return;
        }
        self.view.votes_sent = (g, votes.len());
        self.submit_op(SiteOp::Votes(votes));
    }

    /// Submit the content of the seqs the constraints bound, where held.
    pub(super) fn repropose(&mut self) {
        let gv = self.machine().global_view();
        for (seq, d) in self.machine().awaiting_content() {
            if self.view.reproposed.contains(&(gv, seq.0)) {
                continue;
            }
            let held = self.order.content(seq, &d);
            let Some(update) = held.or_else(|| self.signed.content(seq, &d)).cloned() else {
                continue;
            };
            self.view.reproposed.insert((gv, seq.0));
            self.stats.reproposed += 1;
            self.submit_op(SiteOp::Repropose { gv, seq, update });
        }
    }

    /// Stuck: this site's view-change messages of its current gv (or its
    /// vote for the next) to the other sites again.
    pub(super) fn view_resend(&mut self, cx: &mut Cx<'_, Self>) {
        let gv = self.machine().global_view();
        let mine: Vec<Signed<SiteMsg>> = self
            .view
            .msgs
            .values()
            .filter(|s| s.site == self.site && s.msg.gv() >= gv)
            .cloned()
            .collect();
        for s in mine {
            self.stats.resent += 1;
            self.send_to_sites(&s, cx);
        }
    }
}
