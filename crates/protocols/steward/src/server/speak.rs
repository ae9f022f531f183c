//! THRESHOLD-SIGN and the site messages between sites.
//!
//! When the site machine says M, every server learns M into its global
//! order (its own site's word needs no signature at home) and signs its
//! share of M with [`byzscale_core::threshold::Voice::said`]; a server sends the share to
//! the representative, which combines 2f+1 (invalid shares are named by
//! the combination and recorded as [`Fault::BadShare`]) and sends M with
//! the site's signature to f+1 servers of every other site
//! ([`crate::Config::receivers`]). A server that gets a site message from
//! another site verifies it with that site's key (once per message), relays
//! it to the rest of its own site if it is new, and learns it; the
//! representative of a site that does not lead submits a new Proposal to
//! its site's SMR, whose machine then says the Accept.

use super::Server;
use crate::fault::Fault;
use crate::message::{Message, Signed, SiteId, SiteMsg, SiteOp, Statement};
use crate::order::Learnt;
use byzscale_core::crypto::{short, Digest};
use byzscale_core::service::Service;
use byzscale_core::threshold::{Heard, Share, ThresholdError};
use byzscale_core::{Addr, Cx};

impl<A: Service> Server<A> {
    /// The site machine made this site say `msg`.
    pub(super) fn on_said(&mut self, msg: SiteMsg, cx: &mut Cx<'_, Self>) {
        let me = Addr::Node(self.me);
        if matches!(&msg, SiteMsg::Proposal { update, .. } if update.is_noop()) {
            self.stats.noops += 1;
        }
        tracing::debug!(server = %self.me, kind = msg.kind(), seq = msg.seq().0, rep = self.is_rep(),
            "this site says");
        self.learn(self.site, &msg);
        let voice = &mut self.voices[self.site.0 as usize];
        let (digest, share, heard) = voice.said((self.site, msg.clone()), &self.key);
        self.await_signed(digest, msg, share.clone(), cx.now());
        if self.is_rep() {
            self.on_heard(me, heard, cx);
        } else {
            self.stats.shares_sent += 1;
            cx.send(Addr::Node(self.rep()), Message::Share { digest, share });
        }
        self.execute_ready(cx);
    }

    /// A share of what this site says, from one of its servers.
    pub(super) fn on_share(&mut self, from: Addr, d: Digest, share: Share, cx: &mut Cx<'_, Self>) {
        let Some((site, pos)) = self.cfg.site_of_addr(from) else {
            cx.fault(from, Fault::Unexpected, "a share from outside the sites");
            return;
        };
        if site != self.site {
            cx.fault(from, Fault::Unexpected, format!("a share from {site}"));
            return;
        }
        let heard = self.voices[self.site.0 as usize].heard(pos, d, share);
        if matches!(heard, Heard::Dropped) {
            self.answer_late_share(from, d, cx);
        }
        self.on_heard(from, heard, cx);
    }

    /// As representative: a share of a Proposal or Accept this server
    /// combined at least a tick ago is a server that missed the signed
    /// word (it sends its shares again while it awaits it): send it the
    /// word. A share arriving just after the combination (the slowest of
    /// the 3f+1) is not answered; the site-wide copy is on its way.
    fn answer_late_share(&mut self, from: Addr, d: Digest, cx: &mut Cx<'_, Self>) {
        let Some(&(seq, at)) = self.spoken.get(&d) else {
            return;
        };
        if !self.is_rep() || cx.now() < at + self.cfg.tick {
            return;
        }
        let Some(word) = self.signed.get(seq, self.site) else {
            return;
        };
        let statement = (word.site, word.msg.clone());
        if self.voices[self.site.0 as usize].signed_bytes(&statement).1 == d {
            self.stats.resent += 1;
            cx.send(from, Message::Site(word.clone()));
        }
    }

    /// The name of member `pos` of this site.
    fn member(&self, pos: u32) -> Addr {
        let members = &self.cfg.sites[self.site.0 as usize].members;
        members
            .get(pos as usize)
            .map_or(Addr::Node(self.me), |m| Addr::Node(*m))
    }

    fn bad_shares(&mut self, invalid: &[u32], what: &str, cx: &mut Cx<'_, Self>) {
        for i in invalid {
            let detail = format!("an invalid share of {what}");
            cx.fault(self.member(*i), Fault::BadShare, detail);
        }
    }

    /// What the voice made of a share (ours or `from`'s).
    fn on_heard(&mut self, from: Addr, heard: Heard<Statement>, cx: &mut Cx<'_, Self>) {
        match heard {
            Heard::Held | Heard::Dropped => {}
            Heard::Spoken(spoken) => {
                let (site, msg) = spoken.msg;
                let what = format!("{} {}", msg.kind(), msg.seq().0);
                self.bad_shares(&spoken.invalid, &what, cx);
                let sig = spoken.signature;
                self.speak(Signed { site, msg, sig }, cx);
            }
            Heard::Fault(ThresholdError::TooFewShares { invalid, .. }) => {
                self.bad_shares(&invalid, "a site message", cx);
            }
            Heard::Fault(ThresholdError::WrongMember { claimed, .. }) => {
                let detail = format!("a share under member {claimed}'s index");
                cx.fault(from, Fault::ShareSpoof, detail);
            }
            Heard::Fault(e) => cx.fault(from, Fault::BadShare, e.to_string()),
        }
    }

    /// As representative: send the site's signed message to f+1 servers of
    /// every other site, and to the rest of this site (which keep it for
    /// retransmission, and so know the representative spoke).
    fn speak(&mut self, signed: Signed<SiteMsg>, cx: &mut Cx<'_, Self>) {
        self.stats.spoken += 1;
        if !signed.msg.is_view_change() {
            let statement = (signed.site, signed.msg.clone());
            let d = self.voices[self.site.0 as usize].signed_bytes(&statement).1;
            self.spoken.insert(d, (signed.msg.seq().0, cx.now()));
        }
        tracing::debug!(server = %self.me, kind = signed.msg.kind(), seq = signed.msg.seq().0,
            gv = signed.msg.gv().0, "the site speaks");
        self.send_to_sites(&signed, cx);
        cx.multicast(self.site_peers(), Message::Site(signed.clone()));
        self.own_signed(signed);
    }

    /// Send a signed message of this site to f+1 servers of every other
    /// site ([`crate::Config::receivers`]).
    pub(super) fn send_to_sites(&mut self, signed: &Signed<SiteMsg>, cx: &mut Cx<'_, Self>) {
        let seq = signed.msg.seq().0;
        for s in (0..self.cfg.site_count()).map(SiteId) {
            if s == self.site {
                continue;
            }
            let to = self.cfg.receivers(s, seq);
            self.stats.wan_sent += to.len() as u64;
            cx.multicast(to, Message::Site(signed.clone()));
        }
    }

    /// This site's signed word (combined here, or from the representative):
    /// kept, and no longer awaited.
    fn own_signed(&mut self, signed: Signed<SiteMsg>) {
        let statement = (signed.site, signed.msg.clone());
        let d = self.voices[self.site.0 as usize].signed_bytes(&statement).1;
        self.awaiting.remove(&d);
        if signed.msg.is_view_change() {
            let vote = matches!(signed.msg, SiteMsg::GlobalVc { .. });
            self.view.keep(&signed);
            if vote {
                self.try_votes();
            }
        } else {
            self.keep_signed(&signed);
        }
    }

    /// A site message from `from` (a server of its site, or of ours
    /// relaying it).
    pub(super) fn on_site(&mut self, from: Addr, s: Signed<SiteMsg>, cx: &mut Cx<'_, Self>) {
        tracing::debug!(server = %self.me, %from, site = %s.site, kind = s.msg.kind(),
            seq = s.msg.seq().0, "a site's word");
        let Some((from_site, _)) = self.cfg.site_of_addr(from) else {
            cx.fault(
                from,
                Fault::Unexpected,
                "a site message from outside the sites",
            );
            return;
        };
        if s.site == self.site {
            // our own site's word: known here without it, but kept (from
            // the representative) for retransmission
            if from_site == self.site && self.check_site_msg(&s, cx).is_ok() {
                self.own_signed(s);
            }
            return;
        }
        if let Err((kind, e)) = self.check_site_msg(&s, cx) {
            cx.fault(from, kind, e);
            return;
        }
        if s.msg.is_view_change() {
            self.on_view_msg(from_site, s, cx);
            return;
        }
        self.keep_signed(&s);
        let learnt = self.learn(s.site, &s.msg);
        if learnt != Learnt::New {
            return;
        }
        if from_site != self.site {
            self.stats.relayed += 1;
            cx.multicast(self.site_peers(), Message::Site(s.clone()));
        }
        if matches!(s.msg, SiteMsg::Proposal { .. }) {
            if self.is_rep() {
                self.propose_locally(s);
            }
            self.repropose();
        }
        self.execute_ready(cx);
    }

    /// Submit a Proposal of another site's leading site for acceptance
    /// (the representative at once, the others when stuck), unless this
    /// site said something for its seq in its gv or later.
    pub(super) fn propose_locally(&mut self, s: Signed<SiteMsg>) {
        let (seq, gv) = (s.msg.seq(), s.msg.gv());
        let said = self.machine().said(seq).is_some_and(|(g, _)| g >= gv);
        if self.machine().leading() || said || gv < self.machine().global_view() {
            return;
        }
        if seq <= self.order.executed() || !self.proposing.insert((seq.0, gv)) {
            return;
        }
        if !self.submit.push(SiteOp::Proposal(s).encode()) {
            self.stats.dropped += 1;
            self.proposing.remove(&(seq.0, gv));
        }
    }

    /// Learn what `site` said into the global order. Two different signed
    /// words of one site for one (gv, seq) prove that more than f of its
    /// servers are faulty; no single server is to blame, so it is counted
    /// and logged, not recorded as a fault of the sender.
    fn learn(&mut self, site: SiteId, msg: &SiteMsg) -> Learnt {
        let learnt = match msg {
            SiteMsg::Proposal { gv, seq, update } => self.order.proposal(*gv, *seq, update),
            SiteMsg::Accept { gv, seq, digest } => self.order.accept(site, *gv, *seq, *digest),
            _ => Learnt::Known, // the view change is not the order's
        };
        match &learnt {
            Learnt::Conflict { held } => {
                self.stats.conflicts += 1;
                tracing::warn!(server = %self.me, %site, kind = msg.kind(), seq = msg.seq().0,
                    digest = %short(&msg.digest()), held = %short(held),
                    "a site signed two different messages for one seq");
            }
            Learnt::Dropped => self.stats.dropped += 1,
            Learnt::New | Learnt::Known => {}
        }
        learnt
    }
}
