//! The pending table: the requests a replica holds until they execute here
//! (what a leader proposes and a backup's request timer watches). Local to
//! the replica, never in the replicated state: a decided batch carries its
//! requests, so a request dropped from here costs at most a retransmission
//! by its client.
//!
//! Bounded in bytes, per client ([`Params::client_pending_bytes`]) and in
//! all ([`Params::pending_bytes`]). Over a client's bound its furthest-ahead
//! requests go (the highest sequence numbers: the one it needs next goes
//! last); over the total, the client holding the most bytes (ties: the
//! highest id) loses its furthest-ahead request, until the table fits. A
//! flooding client therefore pays first, and an honest client keeps the
//! request it waits on unless it is itself the largest.
//!
//! [`Params::client_pending_bytes`]: crate::Params::client_pending_bytes
//! [`Params::pending_bytes`]: crate::Params::pending_bytes

use super::request::Pending;
use crate::message::{ReqId, Request};
use byzscale_core::ClientId;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Index;

type Id = ReqId;

/// Bytes charged for holding `req`: its operation, its authenticator and
/// signature, and a fixed overhead for the entry.
pub(super) fn cost(req: &Request) -> usize {
    req.op.len() + 32 * req.auth.len() + if req.sig.is_some() { 64 } else { 0 } + 96
}

#[derive(Default)]
pub(super) struct PendingTable {
    map: BTreeMap<Id, Pending>,
    /// Bytes held per client.
    per_client: BTreeMap<ClientId, usize>,
    /// (bytes, client) for every client with an entry: the largest last.
    by_bytes: BTreeSet<(usize, ClientId)>,
    bytes: usize,
    peak: usize,
}

impl PendingTable {
    pub(super) fn get(&self, id: &Id) -> Option<&Pending> {
        self.map.get(id)
    }
    pub(super) fn get_mut(&mut self, id: &Id) -> Option<&mut Pending> {
        self.map.get_mut(id)
    }
    pub(super) fn contains_key(&self, id: &Id) -> bool {
        self.map.contains_key(id)
    }
    pub(super) fn keys(&self) -> impl Iterator<Item = &Id> {
        self.map.keys()
    }
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Pending> {
        self.map.values_mut()
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Id, &Pending)> {
        self.map.iter()
    }
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
    /// Bytes held now, and the most ever held.
    pub(super) fn bytes(&self) -> (usize, usize) {
        (self.bytes, self.peak)
    }

    fn charge(&mut self, client: ClientId, add: usize, sub: usize) {
        let b = self.per_client.entry(client).or_default();
        self.by_bytes.remove(&(*b, client));
        *b = *b + add - sub;
        self.bytes = self.bytes + add - sub;
        if *b == 0 {
            self.per_client.remove(&client);
        } else {
            self.by_bytes.insert((*b, client));
        }
        self.peak = self.peak.max(self.bytes);
    }

    pub(super) fn remove(&mut self, id: &Id) -> Option<Pending> {
        let p = self.map.remove(id)?;
        self.charge(id.0, 0, cost(&p.req));
        Some(p)
    }

    /// Drop `client`'s requests up to `seq` of `session` (older sessions'
    /// included).
    pub(super) fn drop_upto(&mut self, (client, session, seq): Id) {
        let gone: Vec<Id> = self
            .map
            .range((client, 0, 0)..=(client, session, seq))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove(&id);
        }
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Id, &mut Pending) -> bool) {
        let gone: Vec<Id> = self
            .map
            .iter_mut()
            .filter_map(|(id, p)| (!keep(id, p)).then_some(*id))
            .collect();
        for id in gone {
            self.remove(&id);
        }
    }

    /// Hold `p`, then evict to the bounds (see the module docs); false if
    /// `p` itself was evicted.
    pub(super) fn insert(&mut self, p: Pending, per_client: usize, total: usize) -> bool {
        let id = p.req.id();
        let c = cost(&p.req);
        if let Some(old) = self.map.insert(id, p) {
            self.charge(id.0, 0, cost(&old.req));
        }
        self.charge(id.0, c, 0);
        while self.per_client.get(&id.0).is_some_and(|b| *b > per_client) {
            if self.count_of(id.0) <= 1 || !self.evict_last_of(id.0) {
                break;
            }
        }
        while self.bytes > total {
            let Some(&(_, largest)) = self.by_bytes.last() else {
                break;
            };
            if !self.evict_last_of(largest) {
                break;
            }
        }
        self.map.contains_key(&id)
    }

    fn count_of(&self, client: ClientId) -> usize {
        self.map
            .range((client, 0, 0)..=(client, u64::MAX, u64::MAX))
            .take(2)
            .count()
    }

    /// Drop `client`'s request with the highest sequence number.
    fn evict_last_of(&mut self, client: ClientId) -> bool {
        let last = self
            .map
            .range((client, 0, 0)..=(client, u64::MAX, u64::MAX))
            .next_back()
            .map(|(id, _)| *id);
        last.and_then(|id| self.remove(&id)).is_some()
    }
}

impl Index<&Id> for PendingTable {
    type Output = Pending;
    fn index(&self, id: &Id) -> &Pending {
        &self.map[id]
    }
}
