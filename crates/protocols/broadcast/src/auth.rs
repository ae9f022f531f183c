//! Payload authentication, shared by Bracha and the probabilistic stack.
//!
//! Every payload a message carries (Bracha's SEND/ECHO, the probabilistic
//! GOSSIP/ECHO/READY) must carry its source's signature over the instance
//! `(source, seq)` ([`crate::signing_bytes`]). A process checks each distinct
//! payload of an instance once: [`Payloads`] caches the verified ones, so a
//! copy (same payload and signature, or same payload under another valid
//! signature) costs one comparison or one hash, never a second signature
//! check. It holds at most `cap` distinct payloads: a correct source signs one
//! per instance, so more is a Byzantine source, and the table then keeps the
//! best-scored ones ([`Payloads::admit`], [`Payloads::lowest`]): Bracha scores
//! payloads by their ECHO votes, the probabilistic stack by the weighted
//! votes of its samples, so that junk a Byzantine source signed cannot keep
//! out the payload the correct processes deliver.
//!
//! Payloads are addressed by position (the probabilistic layers name a
//! candidate by its index) and by digest (Bracha's ECHO/READY carry digests).

use crate::common::{Payload, Signed};
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::NodeId;

/// Why a carried payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The source's signature does not verify; the payload's digest.
    BadSignature(Digest),
}

/// The verified payloads of one instance, in the order they were learnt.
#[derive(Clone, Debug)]
pub(crate) struct Payloads<P> {
    known: Vec<(Digest, Signed<P>)>,
    cap: usize,
}

impl<P: Payload> Payloads<P> {
    pub(crate) fn new(cap: usize) -> Self {
        Payloads {
            known: Vec::new(),
            cap,
        }
    }

    /// Check `s` as a payload of `(source, seq)` without learning it: its
    /// digest if it is authentic (a known payload costs no signature check).
    pub(crate) fn check(
        &self,
        crypto: &Crypto,
        source: NodeId,
        seq: u64,
        s: &Signed<P>,
    ) -> Result<Digest, Refused> {
        if let Some((d, _)) = self.known.iter().find(|(_, k)| k == s) {
            return Ok(*d);
        }
        let d = s.digest(crypto, source, seq);
        if self.contains(&d) {
            return Ok(d);
        }
        s.check(crypto, source, seq)
            .map_err(|_| Refused::BadSignature(d))?;
        Ok(d)
    }

    /// Keep the checked payload `s` with digest `d`, whose `score` is
    /// `score(d)`: into a free place, or in the place of the kept payload with
    /// the lowest score if that is lower (the oldest among equals; a payload
    /// scored `u64::MAX` is never replaced, and a payload so scored always
    /// gets a place unless every kept one is so scored). Its position if it
    /// is kept; the other payloads keep theirs (the probabilistic layers name
    /// candidates by position, and forget the replaced one's state).
    pub(crate) fn admit(
        &mut self,
        d: Digest,
        s: Signed<P>,
        score: impl Fn(&Digest) -> u64,
    ) -> Option<usize> {
        if let Some(i) = self.position(&d) {
            return Some(i);
        }
        if self.known.len() < self.cap {
            self.known.push((d, s));
            return Some(self.known.len() - 1);
        }
        let i = self.lowest(score(&d), |_, k| score(k))?;
        self.known[i] = (d, s);
        Some(i)
    }

    /// The position of the kept payload with the lowest `score(position,
    /// digest)`, if that is lower than `than` (the first among equals).
    pub(crate) fn lowest(&self, than: u64, score: impl Fn(usize, &Digest) -> u64) -> Option<usize> {
        let (low, i) = self
            .known
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (score(i, k), i))
            .min()?;
        (low < than).then_some(i)
    }

    /// Whether the table holds `cap` payloads.
    pub(crate) fn is_full(&self) -> bool {
        self.known.len() >= self.cap
    }

    /// The position and digest of a payload already verified, if `s` is a
    /// copy of one (same payload and signature: no hashing).
    pub(crate) fn copy_of(&self, s: &Signed<P>) -> Option<(usize, Digest)> {
        let i = self.known.iter().position(|(_, k)| k == s)?;
        Some((i, self.known[i].0))
    }

    /// Put the checked payload `s` with digest `d` in place of the one at
    /// position `i` (see [`Payloads::lowest`]).
    pub(crate) fn replace(&mut self, i: usize, d: Digest, s: Signed<P>) {
        self.known[i] = (d, s);
    }

    /// Add a payload already checked, or signed by this process; its
    /// position, `None` if full.
    pub(crate) fn insert(&mut self, d: Digest, s: Signed<P>) -> Option<usize> {
        if let Some(i) = self.position(&d) {
            return Some(i);
        }
        if self.known.len() >= self.cap {
            return None;
        }
        self.known.push((d, s));
        Some(self.known.len() - 1)
    }

    pub(crate) fn position(&self, d: &Digest) -> Option<usize> {
        self.known.iter().position(|(kd, _)| kd == d)
    }

    pub(crate) fn contains(&self, d: &Digest) -> bool {
        self.position(d).is_some()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Signed<P>> {
        self.known.get(i).map(|(_, s)| s)
    }

    /// Encoded bytes of the payloads held.
    pub(crate) fn bytes(&self) -> usize {
        self.known
            .iter()
            .map(|(_, s)| byzscale_core::codec::encoded_len(s))
            .sum()
    }

    pub(crate) fn by_digest(&self, d: &Digest) -> Option<&Signed<P>> {
        self.position(d).and_then(|i| self.get(i))
    }

    /// Remove and return the payload with digest `d` (positions of later
    /// payloads shift: only for instances that are finished).
    pub(crate) fn take(&mut self, d: &Digest) -> Option<Signed<P>> {
        let i = self.position(d)?;
        Some(self.known.remove(i).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::crypto::{CryptoMode, Identity, Signature};
    use byzscale_core::Addr;

    fn crypto(i: u8) -> Crypto {
        Crypto::new(
            Addr::Node(NodeId(i as u32)),
            Identity::from_seed([i; 32]),
            CryptoMode::Real,
        )
    }

    #[test]
    fn verifies_once_refuses_forgeries_and_keeps_the_best_scored() {
        let src = crypto(1);
        let mut me = crypto(2);
        me.add_peer(Addr::Node(NodeId(1)), src.public()).unwrap();
        let mut p: Payloads<u32> = Payloads::new(2);
        let a = Signed::sign(&src, NodeId(1), 7, 10);
        let d = p.check(&me, NodeId(1), 7, &a).unwrap();
        assert_eq!(p.insert(d, a.clone()), Some(0));
        me.take_meter();
        assert_eq!(p.check(&me, NodeId(1), 7, &a), Ok(d));
        assert_eq!(p.copy_of(&a), Some((0, d)));
        assert_eq!(
            me.take_meter().verifies,
            0,
            "a known copy is not checked again"
        );
        // the same payload replayed into another instance is not authentic there
        let other: Payloads<u32> = Payloads::new(2);
        assert!(matches!(
            other.check(&me, NodeId(1), 8, &a),
            Err(Refused::BadSignature(_))
        ));
        let forged = Signed {
            payload: 11,
            sig: Signature(a.sig.0),
        };
        assert!(matches!(
            p.check(&me, NodeId(1), 7, &forged),
            Err(Refused::BadSignature(_))
        ));
        let b = Signed::sign(&src, NodeId(1), 7, 12);
        let db = p.check(&me, NodeId(1), 7, &b).unwrap();
        assert_eq!(p.admit(db, b.clone(), |_| 0), Some(1));
        assert!(p.is_full());
        // full: a payload scored 2 takes the place of the lowest (b: 1), in place
        let c = Signed::sign(&src, NodeId(1), 7, 13);
        let dc = p.check(&me, NodeId(1), 7, &c).unwrap();
        let score = |k: &Digest| {
            if *k == d {
                5
            } else if *k == db {
                1
            } else {
                2
            }
        };
        assert_eq!(p.admit(dc, c.clone(), score), Some(1));
        assert_eq!(p.position(&d), Some(0), "the others keep their places");
        assert!(!p.contains(&db));
        // one scored no higher than the lowest kept is refused
        assert_eq!(p.admit(db, b, |k| if *k == d { 5 } else { 2 }), None);
        assert_eq!(p.by_digest(&dc), Some(&c));
        assert_eq!(p.take(&d), Some(a));
        assert!(!p.contains(&d));
    }
}
