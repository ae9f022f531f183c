//! Entries kept while their peer is connected, then cached in LRU order up to
//! a bound: the keys a client-facing node learns from client handshakes (the
//! transport's client keys, the protocol `Crypto`'s client peers).
//!
//! An entry is *open* while its peer has connections (each
//! [`Leases::open`] is matched by one [`Leases::close`]); open entries are
//! never evicted, and there are at most as many as connections. When its
//! last connection closes the entry becomes *idle*, the most recently used;
//! beyond the idle bound the least recently used idle entry is evicted and
//! returned to the caller (who frees what it derived from it). An idle entry
//! is used again when its peer reconnects.
//!
//! The idle order is an [`lru::LruCache`] (a hash map threaded with a linked
//! list: O(1) move-to-front and eviction), kept unbounded and trimmed by hand
//! so that the bound may be 0 or change. Chosen over `indexmap` with manual
//! order because moving an entry to the back of an `IndexMap` shifts every
//! entry after it. Nothing iterates the table in hash order: eviction follows
//! the list, so the table cannot make a run depend on hashing.

use lru::LruCache;
use std::collections::HashMap;
use std::hash::Hash;

/// Entries of connected peers, and an LRU of idle ones (see the module docs).
#[derive(Clone)]
pub struct Leases<K: Hash + Eq, V> {
    /// Connected peers: their entry and number of open connections (≥ 1).
    open: HashMap<K, (V, usize)>,
    /// Peers with no connection, least recently used first out.
    idle: LruCache<K, V>,
    /// Most idle entries kept.
    bound: usize,
}

impl<K: Hash + Eq + Clone, V> Leases<K, V> {
    /// A table that keeps at most `idle_bound` idle entries.
    pub fn new(idle_bound: usize) -> Self {
        Leases {
            open: HashMap::new(),
            idle: LruCache::unbounded(),
            bound: idle_bound,
        }
    }

    /// A table that never evicts.
    pub fn unbounded() -> Self {
        Self::new(usize::MAX)
    }

    /// Change the idle bound; returns the entries it evicts.
    pub fn set_bound(&mut self, idle_bound: usize) -> Vec<(K, V)> {
        self.bound = idle_bound;
        self.trim()
    }

    pub fn bound(&self) -> usize {
        self.bound
    }

    /// The entry of `k`, open or idle (its LRU position is not touched).
    pub fn get(&self, k: &K) -> Option<&V> {
        match self.open.get(k) {
            Some((v, _)) => Some(v),
            None => self.idle.peek(k),
        }
    }

    pub fn contains(&self, k: &K) -> bool {
        self.open.contains_key(k) || self.idle.contains(k)
    }

    /// A connection of `k` opened, with entry `v`: the entry is open (and
    /// replaced by `v`) until every connection opened has closed. Returns the
    /// entry `v` replaced, if any.
    pub fn open(&mut self, k: K, v: V) -> Option<V> {
        if let Some((old, n)) = self.open.get_mut(&k) {
            *n += 1;
            return Some(std::mem::replace(old, v));
        }
        let old = self.idle.pop(&k);
        self.open.insert(k, (v, 1));
        old
    }

    /// One connection of `k` closed. When it was the last, the entry goes
    /// idle (most recently used); returns the idle entries evicted beyond the
    /// bound. A close without an open is ignored.
    pub fn close(&mut self, k: &K) -> Vec<(K, V)> {
        let Some((_, n)) = self.open.get_mut(k) else {
            return Vec::new();
        };
        *n -= 1;
        if *n > 0 {
            return Vec::new();
        }
        let (k, (v, _)) = self.open.remove_entry(k).expect("present");
        self.idle.put(k, v);
        self.trim()
    }

    fn trim(&mut self) -> Vec<(K, V)> {
        let mut out = Vec::new();
        while self.idle.len() > self.bound {
            match self.idle.pop_lru() {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }

    /// Entries of connected peers.
    pub fn open_len(&self) -> usize {
        self.open.len()
    }
    /// Idle entries (at most the bound).
    pub fn idle_len(&self) -> usize {
        self.idle.len()
    }
    /// All entries.
    pub fn len(&self) -> usize {
        self.open.len() + self.idle.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone, V> Default for Leases<K, V> {
    fn default() -> Self {
        Self::unbounded()
    }
}

impl<K: Hash + Eq, V> std::fmt::Debug for Leases<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Leases({} open, {} idle of {})",
            self.open.len(),
            self.idle.len(),
            self.bound
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_entries_stay_and_idle_ones_go_least_recent_first() {
        let mut t = Leases::new(2);
        for k in 0..4 {
            assert_eq!(t.open(k, k * 10), None);
        }
        // a second connection of 0: closing one of them keeps it open
        assert_eq!(t.open(0, 0), Some(0));
        assert!(t.close(&0).is_empty());
        assert_eq!((t.open_len(), t.idle_len()), (4, 0));
        assert!(t.close(&1).is_empty());
        assert!(t.close(&2).is_empty());
        // 1 and 2 idle, 1 the least recent: 1 goes when 3 goes idle
        assert_eq!(t.close(&3), vec![(1, 10)]);
        assert_eq!(
            (t.get(&1), t.get(&2), t.get(&3)),
            (None, Some(&20), Some(&30))
        );
        // 2 reconnects (its entry leaves the LRU), 0 goes idle: nothing evicted
        assert_eq!(t.open(2, 21), Some(20));
        assert!(t.close(&0).is_empty());
        assert_eq!((t.open_len(), t.idle_len()), (1, 2));
        // 2 leaves again: now the most recent, so 3 (idle longest) goes
        assert_eq!(t.close(&2), vec![(3, 30)]);
        assert_eq!(t.get(&2), Some(&21));
        // a close without an open changes nothing
        assert!(t.close(&9).is_empty());
        assert_eq!(t.len(), 2);
        assert_eq!(t.set_bound(0).len(), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn churn_stays_at_the_bound() {
        let mut t = Leases::new(16);
        let mut evicted = 0;
        for k in 0..1000u64 {
            t.open(k, ());
            evicted += t.close(&k).len();
            assert!(t.len() <= 16);
        }
        assert_eq!((t.len(), evicted), (16, 1000 - 16));
        // the newest are kept
        assert!(t.contains(&999) && t.contains(&984) && !t.contains(&983));
    }
}
