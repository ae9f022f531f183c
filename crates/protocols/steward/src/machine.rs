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
//! it did not execute (step 3 retransmits what a site said).

use crate::message::{GlobalView, Seq, SiteId, SiteMsg, SiteOp, Update};
use byzscale_core::codec;
use byzscale_core::crypto::Digest;
use byzscale_core::service::Service;
use byzscale_core::ClientId;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// What executing a site operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The site says `msg` (every correct server of the site alike).
    Said(SiteMsg),
    /// An ordered Proposal for a seq the site already accepted another
    /// update for: the leading site signed two (more than f of its servers
    /// are faulty). Nothing is said.
    Conflict { gv: GlobalView, seq: Seq },
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
    /// `window` seqs.
    said: BTreeMap<u64, (GlobalView, Digest)>,
}

pub struct SiteMachine {
    site: SiteId,
    sites: u32,
    window: u64,
    state: State,
    outbox: RefCell<Vec<Event>>,
}

impl SiteMachine {
    /// The machine of `site` among `sites`, remembering `window` seqs.
    pub fn new(site: SiteId, sites: u32, window: u64) -> Self {
        SiteMachine {
            site,
            sites: sites.max(1),
            window: window.max(1),
            state: State::default(),
            outbox: RefCell::new(Vec::new()),
        }
    }

    /// Take the events produced since the last call.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.outbox.borrow_mut())
    }

    pub fn global_view(&self) -> GlobalView {
        self.state.gv
    }

    /// Whether this site leads the current global view.
    pub fn leading(&self) -> bool {
        self.state.gv.0 % self.sites as u64 == self.site.0 as u64
    }

    /// The highest timestamp of `client` this site assigned a seq to.
    pub fn assigned(&self, client: ClientId) -> u64 {
        self.state.assigned.get(&client).copied().unwrap_or(0)
    }

    /// What the site said for `seq`, if it remembers.
    pub fn said(&self, seq: Seq) -> Option<(GlobalView, Digest)> {
        self.state.said.get(&seq.0).copied()
    }

    /// Seqs at or below this are forgotten: operations for them are ignored.
    fn floor(&self) -> u64 {
        let top = self.state.said.keys().next_back().copied().unwrap_or(0);
        top.saturating_sub(self.window)
    }

    fn say(&mut self, gv: GlobalView, seq: Seq, digest: Digest, msg: SiteMsg) {
        self.state.said.insert(seq.0, (gv, digest));
        let floor = self.floor();
        self.state.said.retain(|s, _| *s > floor);
        self.outbox.borrow_mut().push(Event::Said(msg));
    }

    /// ASSIGN-SEQUENCE's outcome at the leading site.
    fn assign(&mut self, update: Update) {
        if !self.leading() || update.ts <= self.assigned(update.client) {
            return;
        }
        self.state.assigned.insert(update.client, update.ts);
        self.state.assigned_seq += 1;
        let (gv, seq) = (self.state.gv, Seq(self.state.assigned_seq));
        let digest = update.digest();
        self.say(gv, seq, digest, SiteMsg::Proposal { gv, seq, update });
    }

    /// Accept a Proposal of the leading site (checked before ordering).
    fn accept(&mut self, gv: GlobalView, seq: Seq, digest: Digest) {
        if self.leading() || gv != self.state.gv || seq.0 <= self.floor() {
            return;
        }
        match self.state.said.get(&seq.0) {
            Some(prev) if *prev == (gv, digest) => {} // said already
            Some(_) => self.outbox.borrow_mut().push(Event::Conflict { gv, seq }),
            None => self.say(gv, seq, digest, SiteMsg::Accept { gv, seq, digest }),
        }
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
}
