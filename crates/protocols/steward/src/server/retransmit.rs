//! Liveness plumbing: what a server does on its tick ([`Config::tick`],
//! the local timeout) so that lost messages and an idle representative
//! do not stall an update.
//!
//! - **Retransmission while not globally ordered.** A server that made no
//!   progress over a whole tick while something waits (a seq held, an
//!   update, an unsigned word of its site, a global view change) is
//!   *stuck*: it sends its share of each word its site said and it has not
//!   seen signed to the (current) representative, its site's signed
//!   Proposals and Accepts for the next [`RESEND_SEQS`] seqs to the other
//!   sites, and asks f+1 servers of every other site what they hold from
//!   its next seq on ([`Message::Need`], answered with at most
//!   [`RESEND_SEQS`] seqs of signed words). A Need is answered at most once
//!   per asker per half tick (a correct server asks one server once per
//!   tick) and with at most [`crate::Config::need_bytes`] of words beyond
//!   the first; the Needs over that are dropped and counted, and
//!   [`NEED_FLOOD`] of them within one half tick are a typed fault
//!   (`st-need-flood`). Every server keeps the signed
//!   words of every site ([`SignedStore`]: one per site per seq, for seqs
//!   within a window either side of execution), its own site's from the
//!   representative, which sends each to its site as well as to the others.
//! - **Other servers act on updates.** Every server of the client's site
//!   (and of the leading site, for forwarded updates) keeps the update
//!   until it executes; one that waited a tick for it forwards it to the
//!   leading site itself (again each tick: the forward's retransmission)
//!   or, at the leading site, submits its ASSIGN-SEQUENCE to the site SMR.
//!   A representative that ignores the update then stalls the site SMR's
//!   own request at that server, whose request timer forwards it and then
//!   suspects the SMR leader: the nested view change replaces it. A stuck
//!   server of another site likewise submits the held Proposals itself.
//! - **The local timer.** A word its site said that a server has not seen
//!   signed after [`LOCAL_TICKS`] ticks (its shares were sent again each
//!   tick) makes it suspect the representative (the SMR's
//!   `Input::Suspect`): a representative that withholds the site's
//!   messages is replaced by the site alone, without a global view change.

use super::Server;
use crate::fault::Fault;
use crate::message::{GlobalView, Message, Seq, Signed, SiteId, SiteMsg, Update};
use byzscale_core::codec;
use byzscale_core::crypto::Digest;
use byzscale_core::service::Service;
use byzscale_core::threshold::Share;
use byzscale_core::{Addr, Cx, NodeId, Protocol, Time};
use byzscale_smr as smr;
use std::collections::BTreeMap;

/// Seqs of signed words a stuck server sends again per tick, and a Need is
/// answered with.
pub const RESEND_SEQS: u64 = 8;
/// Ticks a word of its site may go unsigned before a server suspects its
/// representative.
pub const LOCAL_TICKS: u64 = 3;

/// Needs of one asker dropped within one answer period that make a
/// `st-need-flood` fault (a correct server sends one per tick, and the
/// period is half a tick).
pub const NEED_FLOOD: u32 = 32;

/// What one server of another site asked lately: when its last Need was
/// answered, the Needs dropped since, and whether that was reported.
pub(crate) struct Asked {
    answered: Time,
    dropped: u32,
    reported: bool,
}

/// A client update waiting here for execution.
pub(crate) struct Waiting {
    pub(crate) update: Update,
    /// When it came (or the global view last changed): the global timer.
    pub(crate) since: Time,
    /// When this server last acted on it: the local timer.
    pub(crate) acted: Time,
}

/// A word this site said that this server has not seen signed yet.
pub(crate) struct Awaiting {
    pub(crate) msg: SiteMsg,
    pub(crate) share: Share,
    pub(crate) since: Time,
}

/// Signed Proposals and Accepts of every site: per seq, per site, the one
/// of the latest gv.
#[derive(Default)]
pub(crate) struct SignedStore {
    by_seq: BTreeMap<u64, BTreeMap<SiteId, Signed<SiteMsg>>>,
}

impl SignedStore {
    /// Keep `s` unless a word of its site of the same or a later gv is
    /// held for its seq; whether it was kept.
    fn keep(&mut self, s: &Signed<SiteMsg>) -> bool {
        let per = self.by_seq.entry(s.msg.seq().0).or_default();
        match per.get(&s.site) {
            Some(old) if old.msg.gv() >= s.msg.gv() => false,
            _ => {
                per.insert(s.site, s.clone());
                true
            }
        }
    }

    /// Forget seqs at or below `floor`.
    fn prune(&mut self, floor: u64) {
        self.by_seq = self.by_seq.split_off(&(floor + 1));
    }

    pub(crate) fn len(&self) -> usize {
        self.by_seq.values().map(BTreeMap::len).sum()
    }

    /// The words held for seqs `from..from + n`, but `skip`'s.
    fn range(&self, from: u64, n: u64, skip: Option<SiteId>) -> Vec<Signed<SiteMsg>> {
        let seqs = self.by_seq.range(from..from.saturating_add(n));
        let all = seqs.flat_map(|(_, m)| m.values());
        all.filter(|s| Some(s.site) != skip).cloned().collect()
    }

    /// The word of `site` held for `seq`.
    pub(crate) fn get(&self, seq: u64, site: SiteId) -> Option<&Signed<SiteMsg>> {
        self.by_seq.get(&seq)?.get(&site)
    }

    /// A held Proposal's update with `digest` at `seq`.
    pub(crate) fn content(&self, seq: Seq, digest: &Digest) -> Option<&Update> {
        let per = self.by_seq.get(&seq.0)?;
        per.values().find_map(|s| match &s.msg {
            SiteMsg::Proposal { update, .. } if update.digest() == *digest => Some(update),
            _ => None,
        })
    }
}

impl<A: Service> Server<A> {
    /// Keep a verified signed Proposal or Accept (within a window either
    /// side of execution).
    pub(super) fn keep_signed(&mut self, s: &Signed<SiteMsg>) -> bool {
        let (seq, executed) = (s.msg.seq().0, self.order.executed().0);
        let window = self.cfg.window;
        if seq + window <= executed || seq > executed + window {
            return false;
        }
        self.signed.keep(s)
    }

    /// This site said `msg`: the share is kept until the word is seen
    /// signed (at most a window of words; the oldest go first).
    pub(super) fn await_signed(&mut self, d: Digest, msg: SiteMsg, share: Share, now: Time) {
        if self.awaiting.len() >= self.cfg.window as usize {
            self.awaiting.pop_first();
        }
        let since = now;
        self.awaiting.insert(d, Awaiting { msg, share, since });
    }

    /// Forget what execution passed: signed words a window below it,
    /// awaited view-change words of earlier global views, awaited
    /// Proposals of executed seqs and awaited Accepts a window below
    /// execution.
    ///
    /// An Accept stays awaited after its seq executed here: this site's
    /// own word needs no signature at home, so its servers execute with it
    /// unsigned, but the other sites (the leading one first) order the seq
    /// only with it signed. Forgetting it at execution let a representative
    /// that withheld the site's Accepts go unsuspected while the leading
    /// site never executed (`withhold-rep-all`). A Proposal executed here
    /// was accepted by a majority of sites, so it was signed and seen.
    pub(super) fn prune(&mut self) {
        let executed = self.order.executed().0;
        let window = self.cfg.window;
        self.signed.prune(executed.saturating_sub(window));
        let gv = self.machine().global_view();
        self.awaiting.retain(|_, a| match &a.msg {
            m if m.is_view_change() => m.gv() >= gv,
            SiteMsg::Accept { seq, .. } => seq.0 + window > executed,
            m => m.seq().0 > executed,
        });
        self.proposing.retain(|(s, _)| *s > executed);
    }

    fn pending(&self) -> bool {
        let m = self.machine();
        let changing = m.voted() > m.global_view() || *m.phase() != Default::default();
        self.order.held().0 > 0 || !self.updates.is_empty() || !self.awaiting.is_empty() || changing
    }

    /// The tick: the local and global timers, and retransmission if stuck.
    pub(super) fn on_tick(&mut self, cx: &mut Cx<'_, Self>) {
        let executed = self.order.executed().0;
        let stuck = executed == self.tick_executed && self.pending();
        self.tick_executed = executed;
        self.act_on_updates(cx);
        self.check_rep(cx);
        self.global_timer(cx);
        if stuck {
            self.stats.stuck += 1;
            self.resend(cx);
            self.need(cx);
            self.accept_held();
            self.view_resend(cx);
        }
        self.repropose();
    }

    /// Updates that waited a tick since this server last acted on them:
    /// forwarded to the leading site (again), or submitted there.
    fn act_on_updates(&mut self, cx: &mut Cx<'_, Self>) {
        let (now, tick) = (cx.now(), self.cfg.tick);
        let due: Vec<Update> = self
            .updates
            .values_mut()
            .filter(|w| now >= w.acted + tick)
            .map(|w| {
                w.acted = now;
                w.update.clone()
            })
            .collect();
        for u in due {
            self.stats.acted += 1;
            if self.machine().leading() {
                self.assign(u);
            } else {
                self.forward(u, cx);
            }
        }
    }

    /// Forward `u` to every server of the current leading site.
    pub(super) fn forward(&mut self, u: Update, cx: &mut Cx<'_, Self>) {
        let leading = self.cfg.leader_site(self.machine().global_view());
        let to = self.cfg.members(leading);
        self.stats.wan_sent += to.len() as u64;
        cx.multicast(to, Message::Forward(u));
    }

    /// The local timer: a word of this site unsigned for [`LOCAL_TICKS`]
    /// ticks makes a server other than the representative suspect it.
    fn check_rep(&mut self, cx: &mut Cx<'_, Self>) {
        let (now, limit) = (cx.now(), LOCAL_TICKS * self.cfg.tick);
        let late = self.awaiting.values().any(|a| now >= a.since + limit);
        if !late || self.is_rep() || self.smr.status() != smr::Status::Normal {
            return;
        }
        for a in self.awaiting.values_mut() {
            a.since = now;
        }
        self.stats.local_suspicions += 1;
        tracing::info!(server = %self.me, rep = %self.rep(), "the representative did not speak: suspected");
        self.smr_step(cx, |r, icx| r.on_input(smr::replica::Input::Suspect, icx));
    }

    /// Stuck: shares to the representative again, and this site's signed
    /// words for the next seqs to the other sites.
    fn resend(&mut self, cx: &mut Cx<'_, Self>) {
        if !self.is_rep() {
            let rep = Addr::Node(self.rep());
            for (d, a) in &self.awaiting {
                let (digest, share) = (*d, a.share.clone());
                cx.send(rep, Message::Share { digest, share });
                self.stats.resent += 1;
            }
        }
        let next = self.order.executed().0 + 1;
        let mine = self.signed.range(next, RESEND_SEQS, None);
        let site = self.site;
        for s in mine.into_iter().filter(|s| s.site == site) {
            self.stats.resent += 1;
            self.send_to_sites(&s, cx);
        }
    }

    /// Stuck: ask f+1 servers of every other site for what they hold from
    /// the next seq this server needs (rotating the servers asked).
    fn need(&mut self, cx: &mut Cx<'_, Self>) {
        let executed = self.order.executed().0;
        let awaited = self.machine().awaiting_content().first().map(|(s, _)| s.0);
        let seq = Seq(awaited.map_or(executed + 1, |a| a.min(executed + 1)));
        let gv = self.machine().global_view();
        for s in (0..self.cfg.site_count()).map(SiteId) {
            if s != self.site {
                let to = self.cfg.receivers(s, seq.0 + self.stats.stuck);
                self.stats.needs += to.len() as u64;
                cx.multicast(to, Message::Need { gv, seq });
            }
        }
    }

    /// A server of another site is stuck at `seq` in `gv`: what this
    /// server holds from `seq` on (not the asker's own site's words), and
    /// this site's view-change messages first if the asker is behind;
    /// at most one answer per asker per half tick, bounded in bytes.
    pub(super) fn on_need(&mut self, from: Addr, gv: GlobalView, seq: Seq, cx: &mut Cx<'_, Self>) {
        let asker = self.cfg.site_of_addr(from).map(|(s, _)| s);
        let (Some(site), Some(node)) = (asker.filter(|s| *s != self.site), from.node()) else {
            cx.fault(
                from,
                Fault::Unexpected,
                "a Need from outside the other sites",
            );
            return;
        };
        if !self.may_answer(node, cx) {
            return;
        }
        let mut words = Vec::new();
        if gv < self.machine().global_view() {
            words = self.view.current(self.machine().global_view(), site);
        }
        words.extend(self.signed.range(seq.0, RESEND_SEQS, Some(site)));
        self.stats.need_answers += 1;
        let mut bytes = 0;
        for s in words {
            let msg = Message::Site(s);
            let len = codec::encoded_len(&msg);
            if bytes > 0 && bytes + len > self.cfg.need_bytes {
                self.stats.need_truncated += 1;
                break;
            }
            bytes += len;
            self.stats.need_words += 1;
            cx.send(from, msg);
        }
        self.stats.need_bytes += bytes as u64;
    }

    /// Whether a Need of `node` may be answered now: one per half tick;
    /// the others are dropped, and [`NEED_FLOOD`] dropped in one period are
    /// reported once.
    fn may_answer(&mut self, node: NodeId, cx: &mut Cx<'_, Self>) -> bool {
        let (now, period) = (cx.now(), (self.cfg.tick / 2).max(1));
        let Some(a) = self.asked.get_mut(&node) else {
            let (answered, dropped, reported) = (now, 0, false);
            let fresh = Asked {
                answered,
                dropped,
                reported,
            };
            self.asked.insert(node, fresh);
            return true;
        };
        if now >= a.answered + period {
            *a = Asked {
                answered: now,
                dropped: 0,
                reported: false,
            };
            return true;
        }
        a.dropped += 1;
        self.stats.needs_dropped += 1;
        if a.dropped >= NEED_FLOOD && !a.reported {
            a.reported = true;
            let detail = format!("{} Needs within {period} ns", a.dropped + 1);
            cx.fault(Addr::Node(node), Fault::NeedFlood, detail);
        }
        false
    }

    /// Stuck at a site that does not lead: submit the held Proposals of the
    /// next seqs for acceptance (a representative may have ignored them).
    fn accept_held(&mut self) {
        let next = self.order.executed().0 + 1;
        let held = self.signed.range(next, RESEND_SEQS, Some(self.site));
        for s in held {
            if matches!(s.msg, SiteMsg::Proposal { .. }) {
                self.propose_locally(s);
            }
        }
    }
}
