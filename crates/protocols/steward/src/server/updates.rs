//! Client updates: submission at the client's site, forwarding to the
//! leading site, ASSIGN-SEQUENCE's input, execution in global order and the
//! replies from the client's own site.

use super::Server;
use crate::fault::Fault;
use crate::message::{Message, Reply, SiteOp, Update};
use byzscale_core::service::Service;
use byzscale_core::{Addr, Cx};

impl<A: Service> Server<A> {
    /// A client's update, sent to the servers of its home site.
    pub(super) fn on_submit(&mut self, from: Addr, u: Update, cx: &mut Cx<'_, Self>) {
        if from != Addr::Client(u.client) {
            let detail = format!("update of {} sent by another endpoint", u.client);
            cx.fault(from, Fault::BadUpdate, detail);
            return;
        }
        match self.cfg.clients.get(&u.client) {
            Some(home) if *home == self.site => {}
            Some(home) => {
                let detail = format!("a client of {home} submitting to {}", self.site);
                cx.fault(from, Fault::WrongSite, detail);
                return;
            }
            None => {} // check_update names the unknown client
        }
        if let Err((kind, e)) = self.check_update(&u, cx) {
            cx.fault(from, kind, e);
            return;
        }
        if let Some((ts, seq, result)) = self.last.get(&u.client) {
            if u.ts == *ts {
                // a retransmission: the reply was lost or is late
                let reply = Reply {
                    server: self.me,
                    client: u.client,
                    ts: *ts,
                    seq: *seq,
                    result: result.clone(),
                };
                cx.send(from, Message::Reply(reply));
            }
            if u.ts <= *ts {
                return;
            }
        }
        // every server keeps it (the others act after a tick, `retransmit.rs`);
        // the representative acts now
        if !self.wait_for(&u, cx.now()) || !self.is_rep() {
            return;
        }
        if self.machine().leading() {
            self.assign(u);
        } else {
            self.forward(u, cx);
        }
    }

    /// Keep `u` until it executes (the latest of its client); whether it is
    /// new here.
    fn wait_for(&mut self, u: &Update, now: byzscale_core::Time) -> bool {
        let held = self.updates.get(&u.client).map_or(0, |w| w.update.ts);
        if u.ts <= held {
            return false;
        }
        let update = u.clone();
        let (since, acted) = (now, now);
        let w = super::Waiting {
            update,
            since,
            acted,
        };
        self.updates.insert(u.client, w);
        true
    }

    /// An update forwarded by a server of the client's home site.
    pub(super) fn on_forward(&mut self, from: Addr, u: Update, cx: &mut Cx<'_, Self>) {
        let site = self.cfg.site_of_addr(from).map(|(s, _)| s);
        let home = self.cfg.clients.get(&u.client).copied();
        if site.is_none() || site != home {
            let detail = format!("a forward of {}'s update from outside its site", u.client);
            cx.fault(from, Fault::Unexpected, detail);
            return;
        }
        if let Err((kind, e)) = self.check_update(&u, cx) {
            cx.fault(from, kind, e);
            return;
        }
        let done = self.last.get(&u.client).map_or(0, |(ts, _, _)| *ts);
        if u.ts <= done || !self.wait_for(&u, cx.now()) {
            return;
        }
        if self.is_rep() && self.machine().leading() {
            self.assign(u);
        }
    }

    /// As the leading site's representative: queue ASSIGN-SEQUENCE for `u`
    /// unless it is assigned or queued already.
    pub(super) fn assign(&mut self, u: Update) {
        let queued = self.assigning.get(&u.client).copied().unwrap_or(0);
        if u.ts <= queued || u.ts <= self.machine().assigned(u.client) {
            return;
        }
        self.assigning.insert(u.client, u.ts);
        if !self.submit.push(SiteOp::Assign(u).encode()) {
            self.stats.dropped += 1;
        }
    }

    /// Execute the globally ordered updates that are next, in seq order.
    pub(super) fn execute_ready(&mut self, cx: &mut Cx<'_, Self>) {
        let mut progressed = false;
        while let Some((seq, u)) = self.order.next_ready() {
            progressed = true;
            if u.is_noop() {
                continue; // a seq no update was bound to in a view change
            }
            if self
                .updates
                .get(&u.client)
                .is_some_and(|w| w.update.ts <= u.ts)
            {
                self.updates.remove(&u.client);
            }
            let last = self.last.get(&u.client).map_or(0, |(ts, _, _)| *ts);
            if u.ts <= last {
                continue; // ordered twice (a later gv re-proposed it): runs once
            }
            let result = self.app.execute(&u.op);
            self.stats.executed += 1;
            let home = self.cfg.clients.get(&u.client) == Some(&self.site);
            let kept = if home { result.clone() } else { Vec::new() };
            self.last.insert(u.client, (u.ts, seq, kept));
            if home {
                self.stats.replies += 1;
                let reply = Reply {
                    server: self.me,
                    client: u.client,
                    ts: u.ts,
                    seq,
                    result: result.clone(),
                };
                cx.send(Addr::Client(u.client), Message::Reply(reply));
            }
            let digest = u.digest();
            let (client, ts) = (u.client, u.ts);
            cx.output(super::Output::Executed {
                seq,
                client,
                ts,
                digest,
                result,
            });
        }
        if progressed {
            self.view.progress();
            self.prune();
            self.answer_held(cx);
        }
    }
}
