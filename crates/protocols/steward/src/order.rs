//! The global order at one server: Paxos's acceptance rule over sites.
//!
//! A server learns verified site messages (its own site's from its site
//! machine, the others' with their threshold signatures checked). A seq is
//! *globally ordered* once the server holds the leading site's Proposal for
//! it and Accepts of the same (gv, seq, digest) from ⌊S/2⌋ other sites (so a
//! majority of sites with the leading one). Ordered updates leave in seq
//! order, each once ([`GlobalOrder::next_ready`]).
//!
//! Across global views a seq may hold Proposals and Accepts of several gvs
//! (the last [`GV_MEMORY`]); it is ordered in whichever gv has the Proposal
//! and a majority (Paxos: any two such gvs bind the same update).
//!
//! Bounds: only seqs in `(executed, executed + window]` are held, and
//! Proposals beyond the next one only within `max_bytes` of operations.

use crate::message::{GlobalView, Seq, SiteId, Update};
use byzscale_core::crypto::Digest;
use std::collections::BTreeMap;

/// Global views remembered per seq (Proposals, and Accepts per site): the
/// most recent ones; a seq re-proposed more often than this across global
/// view changes forgets its oldest.
pub const GV_MEMORY: usize = 4;

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
    /// The leading site's Proposal per gv.
    proposals: BTreeMap<GlobalView, (Digest, Update)>,
    /// Per site, its Accept per gv.
    accepts: BTreeMap<SiteId, BTreeMap<GlobalView, Digest>>,
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

    /// The update with `digest` proposed at `seq` in some gv, if held.
    pub fn content(&self, seq: Seq, digest: &Digest) -> Option<&Update> {
        let slot = self.slots.get(&seq.0)?;
        let mut all = slot.proposals.values();
        all.find(|(d, _)| d == digest).map(|(_, u)| u)
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
        match self.slots.get(&seq.0).and_then(|s| s.proposals.get(&gv)) {
            Some((d, _)) if *d == digest => return Learnt::Known,
            Some((d, _)) => return Learnt::Conflict { held: *d },
            None => {}
        }
        let len = update.op.len();
        if self.bytes + len > self.max_bytes && seq.0 != self.executed + 1 {
            return Learnt::Dropped;
        }
        let slot = self.slots.entry(seq.0).or_default();
        slot.proposals.insert(gv, (digest, update.clone()));
        self.bytes += len;
        if slot.proposals.len() > GV_MEMORY {
            if let Some((_, (_, old))) = slot.proposals.pop_first() {
                self.bytes -= old.op.len();
            }
        }
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
        let per_gv = slot.accepts.entry(site).or_default();
        match per_gv.get(&gv) {
            Some(d) if *d == digest => Learnt::Known,
            Some(d) => Learnt::Conflict { held: *d },
            None => {
                per_gv.insert(gv, digest);
                if per_gv.len() > GV_MEMORY {
                    per_gv.pop_first();
                }
                Learnt::New
            }
        }
    }

    /// The gv in which `slot` is globally ordered: its Proposal and
    /// ⌊S/2⌋ matching Accepts of other sites (Paxos makes every such gv
    /// agree on the update).
    fn ordered(&self, slot: &Slot) -> Option<GlobalView> {
        slot.proposals.iter().rev().find_map(|(gv, (d, _))| {
            let leader = self.leader(*gv);
            let matching = slot
                .accepts
                .iter()
                .filter(|(s, a)| **s != leader && a.get(gv) == Some(d))
                .count();
            (matching >= self.needed).then_some(*gv)
        })
    }

    /// The next seq to execute, if it is globally ordered: it counts as
    /// executed from now on.
    pub fn next_ready(&mut self) -> Option<(Seq, Update)> {
        let next = self.executed + 1;
        let gv = self.ordered(self.slots.get(&next)?)?;
        let mut slot = self.slots.remove(&next)?;
        for (_, u) in slot.proposals.values() {
            self.bytes -= u.op.len();
        }
        let (_, update) = slot.proposals.remove(&gv)?;
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
