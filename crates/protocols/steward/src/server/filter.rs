//! SMR messages inside a site, and the site-operation filter.
//!
//! The site machine cannot verify signatures (it sees operation bytes
//! only), so each operation is checked before a correct server votes for
//! the batch holding it, as ByzCast's request filter does: the submitter
//! must be one of the site's servers (as `ClientId::for_replica`); an
//! [`SiteOp::Assign`] or [`SiteOp::Repropose`] must carry its client's
//! signature, a [`SiteOp::Proposal`], [`SiteOp::Aru`] or
//! [`SiteOp::Constraint`] another site's threshold signature (from a site
//! that may say it in its gv), [`SiteOp::Votes`] one signed GlobalVc per
//! site, and a [`SiteOp::Suspect`] or [`SiteOp::Report`] must name its
//! submitter. Whether the site leads is the machine's business (it ignores
//! operations for a role it does not have): an operation submitted just
//! before a global view change stays acceptable after it, so correct
//! servers never refuse a correct representative's batch over the
//! view. A PROPOSE failing the filter is dropped (no
//! WRITE; the SMR's view change replaces a representative that keeps
//! proposing such batches), so every decided operation was checked by a
//! correct server.

use super::Server;
use crate::fault::Fault;
use crate::message::{Signed, SiteMsg, SiteOp};
use byzscale_core::service::Service;
use byzscale_core::{Addr, ClientId, Cx, NodeId, Protocol};
use byzscale_smr as smr;

impl<A: Service> Server<A> {
    /// An SMR message from `from`: only the site's members speak in it, and
    /// only their replicas' own messages (requests are submitted locally).
    pub(super) fn on_local(&mut self, from: Addr, msg: smr::Message, cx: &mut Cx<'_, Self>) {
        if self.cfg.site_of_addr(from).map(|(s, _)| s) != Some(self.site) {
            let detail = format!("SMR {} from outside the site", msg.kind());
            cx.fault(from, Fault::Unexpected, detail);
            return;
        }
        let msg = match msg {
            smr::Message::Request(_) => {
                let detail = "a site operation sent over the network";
                cx.fault(from, Fault::Unexpected, detail);
                return;
            }
            smr::Message::Forward(reqs) => {
                let mut ok = Vec::with_capacity(reqs.len());
                for r in reqs {
                    match self.check_op(&r, cx) {
                        Ok(()) => ok.push(r),
                        Err(e) => cx.fault(from, Fault::SiteOp, e),
                    }
                }
                if ok.is_empty() {
                    return;
                }
                smr::Message::Forward(ok)
            }
            smr::Message::Propose { view, slot, batch } => {
                for r in batch.requests.iter() {
                    if let Err(e) = self.check_op(r, cx) {
                        let detail = format!("view {view} slot {slot}: {e}");
                        cx.fault(from, Fault::SiteOp, detail);
                        return;
                    }
                }
                smr::Message::Propose { view, slot, batch }
            }
            other => other,
        };
        self.smr_step(cx, |r, icx| r.on_message(from, msg, icx));
    }

    /// The site-operation filter (module docs).
    fn check_op(&mut self, r: &smr::Request, cx: &Cx<'_, Self>) -> Result<(), String> {
        let node = r.client.0.checked_sub(ClientId::REPLICA_BASE);
        let node = node.and_then(|n| u32::try_from(n).ok()).map(NodeId);
        if node.and_then(|n| self.cfg.site_of(n)).map(|(s, _)| s) != Some(self.site) {
            return Err(format!(
                "operation submitted by {}, not a server of this site",
                r.client
            ));
        }
        let op = SiteOp::decode(&r.op).map_err(|e| format!("undecodable site operation: {e}"))?;
        let own = |server: NodeId| ClientId::for_replica(server) == r.client;
        match op {
            SiteOp::Assign(u) | SiteOp::Repropose { update: u, .. } => {
                self.check_update(&u, cx).map_err(|(_, e)| e)
            }
            SiteOp::Suspect { server, .. } | SiteOp::Report { server, .. } if !own(server) => {
                Err(format!("{} speaking for {server}", r.client))
            }
            SiteOp::Suspect { .. } | SiteOp::Report { .. } => Ok(()),
            SiteOp::Proposal(s) => self.check_foreign(&s, "Proposal", cx),
            SiteOp::Aru(s) => self.check_foreign(&s, "Aru", cx),
            SiteOp::Constraint(s) => self.check_foreign(&s, "Constraint", cx),
            SiteOp::Votes(votes) => self.check_votes(&votes, cx),
        }
    }

    /// A signed message of another site, of `kind`, inside an operation.
    fn check_foreign(
        &mut self,
        s: &Signed<SiteMsg>,
        kind: &str,
        cx: &Cx<'_, Self>,
    ) -> Result<(), String> {
        if s.msg.kind() != kind {
            return Err(format!("a {} where a {kind} belongs", s.msg.kind()));
        }
        if s.site == self.site {
            return Err(format!("this site's own {kind} to order"));
        }
        self.check_site_msg(s, cx).map_err(|(_, e)| e)
    }

    /// GlobalVc votes: at most one per site, each signed.
    fn check_votes(&mut self, votes: &[Signed<SiteMsg>], cx: &Cx<'_, Self>) -> Result<(), String> {
        let mut sites = std::collections::BTreeSet::new();
        for v in votes {
            if !matches!(v.msg, SiteMsg::GlobalVc { .. }) || !sites.insert(v.site) {
                return Err(format!("a {} of {} among votes", v.msg.kind(), v.site));
            }
            self.check_site_msg(v, cx).map_err(|(_, e)| e)?;
        }
        Ok(())
    }

    /// Whether `u` is a known client's, within the size limit, signed.
    pub(super) fn check_update(
        &self,
        u: &crate::message::Update,
        cx: &Cx<'_, Self>,
    ) -> Result<(), (Fault, String)> {
        let limit = self.cfg.max_update_op();
        if u.op.len() > limit {
            let e = format!("an update of {} bytes, the limit is {limit}", u.op.len());
            return Err((Fault::TooLarge, e));
        }
        if !self.cfg.clients.contains_key(&u.client) {
            return Err((Fault::BadUpdate, format!("unknown client {}", u.client)));
        }
        if !u.verify(cx.crypto()) {
            let e = format!("bad signature on {}#{}", u.client, u.ts);
            return Err((Fault::BadUpdate, e));
        }
        Ok(())
    }

    /// Whether `s` is a message its site may say (a Proposal from the
    /// leading site of its gv, an Accept from another), within the size
    /// limit, with the site's signature (verified once per message).
    pub(super) fn check_site_msg(
        &mut self,
        s: &Signed<SiteMsg>,
        cx: &Cx<'_, Self>,
    ) -> Result<(), (Fault, String)> {
        let Some(voice) = self.voices.get(s.site.0 as usize) else {
            return Err((Fault::BadSiteMsg, format!("unknown site {}", s.site)));
        };
        let leads = s.site == self.cfg.leader_site(s.msg.gv());
        let may = match &s.msg {
            SiteMsg::Proposal { .. } | SiteMsg::Aru { .. } => leads,
            SiteMsg::Accept { .. } => !leads,
            SiteMsg::Constraint { accepted, .. } => {
                !leads && accepted.len() as u64 <= self.cfg.window
            }
            SiteMsg::GlobalVc { .. } => true,
        };
        if !may {
            let e = format!("a {} from {} in gv {}", s.msg.kind(), s.site, s.msg.gv().0);
            return Err((Fault::BadSiteMsg, e));
        }
        let d = s.digest();
        if self.checked.contains(&d) {
            return Ok(());
        }
        if let SiteMsg::Proposal { update, .. } = &s.msg {
            if !update.is_noop() {
                self.check_update(update, cx)?;
            }
        }
        self.stats.site_verifies += 1;
        if !voice.verify(&(s.site, s.msg.clone()), &s.sig) {
            let e = format!(
                "{}'s signature on {} {} fails",
                s.site,
                s.msg.kind(),
                s.msg.seq().0
            );
            return Err((Fault::BadSiteMsg, e));
        }
        self.checked.insert(d, ());
        Ok(())
    }
}
