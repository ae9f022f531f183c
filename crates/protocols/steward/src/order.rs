//! The global order at one server: Paxos's acceptance rule over sites.
//!
//! A server learns verified site messages (its own site's from its site
//! machine, the others' with their threshold signatures checked). A seq is
//! *globally ordered* once the server holds the leading site's Proposal for
//! it and Accepts of the same (gv, seq, digest) from ⌊S/2⌋ other sites (so a
//! majority of sites with the leading one). Ordered updates leave in seq
//! order, each once ([`GlobalOrder::next_ready`]).
//!
//! Bounds: only seqs in `(executed, executed + window]` are held, and
//! Proposals beyond the next one only within `max_bytes` of operations.

use crate::message::{GlobalView, Seq, SiteId, Update};
use byzscale_core::crypto::Digest;
use std::collections::BTreeMap;

/// What a site message did to the order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Learnt {
    /// Kept (new information).
    New,
    /// Known already, or for a seq executed already: nothing changed.
    Known,
    /// Beyond the window or the byte bound: dropped.
    Dropped,
    /// The site said something else for this seq before (in the same gv).
    Conflict { held: Digest },
}

#[derive(Default)]
struct Slot {
    proposal: Option<(GlobalView, Digest, Update)>,
    accepts: BTreeMap<SiteId, (GlobalView, Digest)>,
}

pub struct GlobalOrder {
    sites: u32,
    needed: usize,
    window: u64,
    max_bytes: usize,
    executed: u64,
    slots: BTreeMap<u64, Slot>,
    bytes: usize,
}

impl GlobalOrder {
    /// The order among `sites` sites, holding `window` seqs and `max_bytes`
    /// of operations ahead of execution.
    pub fn new(sites: u32, window: u64, max_bytes: usize) -> Self {
        GlobalOrder {
            sites: sites.max(1),
            needed: sites as usize / 2,
            window,
            max_bytes,
            executed: 0,
            slots: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// The last seq executed (0: none).
    pub fn executed(&self) -> Seq {
        Seq(self.executed)
    }

    /// Seqs held, and the bytes of their operations.
    pub fn held(&self) -> (usize, usize) {
        (self.slots.len(), self.bytes)
    }

    fn leader(&self, gv: GlobalView) -> SiteId {
        SiteId((gv.0 % self.sites as u64) as u32)
    }

    fn in_window(&self, seq: Seq) -> bool {
        seq.0 > self.executed && seq.0 <= self.executed + self.window
    }

    /// The leading site of `gv` proposed `update` at `seq`.
    pub fn proposal(&mut self, gv: GlobalView, seq: Seq, update: &Update) -> Learnt {
        if seq.0 <= self.executed {
            return Learnt::Known;
        }
        if !self.in_window(seq) {
            return Learnt::Dropped;
        }
        let digest = update.digest();
        match self.slots.get(&seq.0).and_then(|s| s.proposal.as_ref()) {
            Some((g, d, _)) if *g == gv && *d == digest => return Learnt::Known,
            Some((g, d, _)) if *g == gv => return Learnt::Conflict { held: *d },
            _ => {}
        }
        let len = update.op.len();
        if self.bytes + len > self.max_bytes && seq.0 != self.executed + 1 {
            return Learnt::Dropped;
        }
        let slot = self.slots.entry(seq.0).or_default();
        if let Some((_, _, old)) = slot.proposal.replace((gv, digest, update.clone())) {
            self.bytes -= old.op.len();
        }
        self.bytes += len;
        Learnt::New
    }

    /// `site` accepted `digest` at (gv, seq).
    pub fn accept(&mut self, site: SiteId, gv: GlobalView, seq: Seq, digest: Digest) -> Learnt {
        if seq.0 <= self.executed {
            return Learnt::Known;
        }
        if !self.in_window(seq) {
            return Learnt::Dropped;
        }
        let slot = self.slots.entry(seq.0).or_default();
        match slot.accepts.get(&site) {
            Some((g, d)) if *g == gv && *d == digest => Learnt::Known,
            Some((g, d)) if *g == gv => Learnt::Conflict { held: *d },
            _ => {
                slot.accepts.insert(site, (gv, digest));
                Learnt::New
            }
        }
    }

    fn ordered(&self, slot: &Slot) -> bool {
        let Some((gv, d, _)) = &slot.proposal else {
            return false;
        };
        let leader = self.leader(*gv);
        let matching = slot
            .accepts
            .iter()
            .filter(|(s, a)| **s != leader && **a == (*gv, *d))
            .count();
        matching >= self.needed
    }

    /// The next seq to execute, if it is globally ordered: it counts as
    /// executed from now on.
    pub fn next_ready(&mut self) -> Option<(Seq, Update)> {
        let next = self.executed + 1;
        if !self.ordered(self.slots.get(&next)?) {
            return None;
        }
        let slot = self.slots.remove(&next)?;
        let (_, _, update) = slot.proposal?;
        self.bytes -= update.op.len();
        self.executed = next;
        Some((Seq(next), update))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
    use byzscale_core::{Addr, ClientId};

    fn update(ts: u64, len: usize) -> Update {
        let c = ClientId(1);
        let crypto = Crypto::new(
            Addr::Client(c),
            Identity::from_seed([1; 32]),
            CryptoMode::Real,
        );
        Update::signed(&crypto, c, ts, vec![ts as u8; len])
    }

    const GV: GlobalView = GlobalView(0);

    #[test]
    fn a_proposal_with_accepts_of_a_majority_of_sites_is_ordered_in_seq_order() {
        // five sites: site 0 leads, two more Accepts make a majority
        let mut o = GlobalOrder::new(5, 8, 1 << 20);
        let (u1, u2) = (update(1, 4), update(2, 4));
        assert_eq!(o.proposal(GV, Seq(2), &u2), Learnt::New);
        assert_eq!(o.accept(SiteId(1), GV, Seq(2), u2.digest()), Learnt::New);
        assert_eq!(o.accept(SiteId(2), GV, Seq(2), u2.digest()), Learnt::New);
        assert_eq!(o.next_ready(), None, "seq 1 first");
        assert_eq!(o.accept(SiteId(1), GV, Seq(1), u1.digest()), Learnt::New);
        // the leading site's own Accept would not count; a wrong digest neither
        o.accept(SiteId(0), GV, Seq(1), u1.digest());
        o.accept(SiteId(3), GV, Seq(1), u2.digest());
        assert_eq!(o.proposal(GV, Seq(1), &u1), Learnt::New);
        assert_eq!(o.next_ready(), None, "one matching Accept of two");
        assert_eq!(o.accept(SiteId(4), GV, Seq(1), u1.digest()), Learnt::New);
        assert_eq!(o.next_ready(), Some((Seq(1), u1.clone())));
        assert_eq!(o.next_ready(), Some((Seq(2), u2)));
        assert_eq!(o.next_ready(), None);
        assert_eq!(o.held(), (0, 0));
        assert_eq!(o.proposal(GV, Seq(1), &u1), Learnt::Known, "executed");
    }

    #[test]
    fn conflicts_are_reported_and_the_window_and_bytes_are_bounded() {
        let mut o = GlobalOrder::new(3, 4, 10);
        let (a, b) = (update(1, 4), update(2, 4));
        o.proposal(GV, Seq(1), &a);
        assert_eq!(o.proposal(GV, Seq(1), &a), Learnt::Known);
        let held = a.digest();
        assert_eq!(o.proposal(GV, Seq(1), &b), Learnt::Conflict { held });
        o.accept(SiteId(1), GV, Seq(1), a.digest());
        let conflict = o.accept(SiteId(1), GV, Seq(1), b.digest());
        assert_eq!(conflict, Learnt::Conflict { held });
        assert_eq!(
            o.proposal(GV, Seq(5), &b),
            Learnt::Dropped,
            "beyond the window"
        );
        assert_eq!(o.accept(SiteId(1), GV, Seq(5), b.digest()), Learnt::Dropped);
        assert_eq!(o.proposal(GV, Seq(2), &b), Learnt::New);
        // 8 bytes held: a third proposal of 4 is over the bound of 10
        assert_eq!(o.proposal(GV, Seq(3), &update(3, 4)), Learnt::Dropped);
        assert_eq!(o.held(), (2, 8));
        assert_eq!(o.next_ready(), Some((Seq(1), a)));
        assert_eq!(o.held(), (1, 4));
    }
}
