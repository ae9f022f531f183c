//! Local read-only queries (§4.3): a client's query is answered by the
//! servers of its own site alone, each from its application state after
//! the globally ordered prefix it executed. Nothing crosses the WAN, so a
//! site cut off from the others keeps serving reads.
//!
//! The guarantee is the paper's, weaker than linearizability: the value
//! read is the state after some prefix of the global order that a correct
//! server of the site executed, and that prefix is at least the query's
//! `floor` (the client's last completed update or read). A client thus
//! reads its own writes and its reads never go back; but another site may
//! already have executed further, so a read may miss an update that
//! completed elsewhere.

use super::Server;
use crate::fault::Fault;
use crate::message::{Message, Query, QueryReply};
use byzscale_core::service::Service;
use byzscale_core::{Addr, Cx};

impl<A: Service> Server<A> {
    /// A client's query: answered now if this server executed up to its
    /// floor, held (one per client, the latest) until then otherwise.
    pub(super) fn on_query(&mut self, from: Addr, q: Query, cx: &mut Cx<'_, Self>) {
        if from != Addr::Client(q.client) {
            let detail = format!("query of {} sent by another endpoint", q.client);
            cx.fault(from, Fault::BadQuery, detail);
            return;
        }
        match self.cfg.clients.get(&q.client) {
            Some(home) if *home == self.site => {}
            Some(home) => {
                let detail = format!("a client of {home} querying {}", self.site);
                cx.fault(from, Fault::WrongSite, detail);
                return;
            }
            None => {
                let detail = format!("query of unknown client {}", q.client);
                cx.fault(from, Fault::BadQuery, detail);
                return;
            }
        }
        if q.op.len() > self.cfg.max_update_op() {
            let detail = format!("a query of {} bytes", q.op.len());
            cx.fault(from, Fault::TooLarge, detail);
            return;
        }
        if q.floor <= self.order.executed() {
            self.answer(q, cx);
            return;
        }
        let newer = self.queries.get(&q.client).is_none_or(|h| h.rid <= q.rid);
        if newer {
            self.queries.insert(q.client, q);
        }
    }

    /// Answer the held queries whose floor execution reached.
    pub(super) fn answer_held(&mut self, cx: &mut Cx<'_, Self>) {
        let executed = self.order.executed();
        let (due, held) = std::mem::take(&mut self.queries)
            .into_iter()
            .partition(|(_, q)| q.floor <= executed);
        self.queries = held;
        for (_, q) in due {
            self.answer(q, cx);
        }
    }

    fn answer(&mut self, q: Query, cx: &mut Cx<'_, Self>) {
        self.stats.reads += 1;
        let reply = QueryReply {
            server: self.me,
            client: q.client,
            rid: q.rid,
            executed: self.order.executed(),
            result: self.app.query(&q.op),
        };
        cx.send(Addr::Client(q.client), Message::QueryReply(reply));
    }
}
