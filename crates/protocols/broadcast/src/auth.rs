//! Payload authentication, shared by Bracha and the probabilistic stack.
//!
//! Every payload a message carries (Bracha's SEND/ECHO, the probabilistic
//! GOSSIP/ECHO/READY) must carry its source's signature over the instance
//! `(source, seq)` ([`crate::signing_bytes`]). A process checks each distinct
//! payload of an instance once: [`Payloads`] caches the verified ones, so a
//! copy (same payload and signature, or same payload under another valid
//! signature) costs one comparison or one hash, never a second signature
//! check. It holds at most `cap` distinct payloads: a correct source signs one
//! per instance, so more is a Byzantine source. [`Payloads::learn`] refuses
//! them (the probabilistic layers name candidates by position);
//! [`Payloads::admit`] keeps the best-scored ones instead (Bracha, which
//! scores payloads by their ECHO votes, so that junk a Byzantine source signed
//! cannot keep out the payload the correct processes deliver).
//!
//! Payloads are addressed by position (the probabilistic layers name a
//! candidate by its index) and by digest (Bracha's ECHO/READY carry digests).

use crate::common::{Payload, Signed};
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::NodeId;

/// Why a carried payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The instance already holds `cap` distinct payloads.
    TooMany,
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

    /// Check `s` as a payload of `(source, seq)`, learning it if it is new and
    /// authentic; returns its position and digest.
    pub(crate) fn learn(
        &mut self,
        crypto: &Crypto,
        source: NodeId,
        seq: u64,
        s: Signed<P>,
    ) -> Result<(usize, Digest), Refused> {
        // the common case: a copy of a payload already verified
        if let Some(i) = self.known.iter().position(|(_, k)| *k == s) {
            return Ok((i, self.known[i].0));
        }
        let d = s.digest(crypto, source, seq);
        if let Some(i) = self.position(&d) {
            // same payload, another signature: the payload is authentic
            return Ok((i, d));
        }
        if self.known.len() >= self.cap {
            return Err(Refused::TooMany);
        }
        if s.check(crypto, source, seq).is_err() {
            return Err(Refused::BadSignature(d));
        }
        self.known.push((d, s));
        Ok((self.known.len() - 1, d))
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
    /// `score(d)`: into a free place, or in place of the kept payload with the
    /// lowest score if that is lower (the oldest among equals; a payload
    /// scored `u64::MAX` is never replaced, and a payload so scored always
    /// gets a place unless every kept one is so scored). Whether it is kept.
    /// Positions of later payloads shift: for callers that address payloads
    /// by digest only.
    pub(crate) fn admit(
        &mut self,
        d: Digest,
        s: Signed<P>,
        score: impl Fn(&Digest) -> u64,
    ) -> bool {
        if self.contains(&d) {
            return true;
        }
        if self.known.len() >= self.cap {
            let mine = score(&d);
            let lowest = self
                .known
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (score(k), i))
                .min();
            match lowest {
                Some((low, i)) if low < mine => {
                    self.known.remove(i);
                }
                _ => return false,
            }
        }
        self.known.push((d, s));
        true
    }

    /// Add a payload this process signed itself (no check); `None` if full.
    pub(crate) fn insert_own(&mut self, d: Digest, s: Signed<P>) -> Option<usize> {
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
    fn verifies_once_refuses_forgeries_and_bounds_the_set() {
        let src = crypto(1);
        let mut me = crypto(2);
        me.add_peer(Addr::Node(NodeId(1)), src.public()).unwrap();
        let mut p: Payloads<u32> = Payloads::new(2);
        let a = Signed::sign(&src, NodeId(1), 7, 10);
        let (i, d) = p.learn(&me, NodeId(1), 7, a.clone()).unwrap();
        assert_eq!(i, 0);
        me.take_meter();
        assert_eq!(p.learn(&me, NodeId(1), 7, a.clone()), Ok((0, d)));
        assert_eq!(
            me.take_meter().verifies,
            0,
            "a known copy is not checked again"
        );
        // the same payload replayed into another instance is not authentic there
        let mut other: Payloads<u32> = Payloads::new(2);
        assert!(matches!(
            other.learn(&me, NodeId(1), 8, a.clone()),
            Err(Refused::BadSignature(_))
        ));
        let forged = Signed {
            payload: 11,
            sig: Signature(a.sig.0),
        };
        assert!(matches!(
            p.learn(&me, NodeId(1), 7, forged),
            Err(Refused::BadSignature(_))
        ));
        let b = Signed::sign(&src, NodeId(1), 7, 12);
        assert_eq!(p.learn(&me, NodeId(1), 7, b).unwrap().0, 1);
        let c = Signed::sign(&src, NodeId(1), 7, 13);
        assert_eq!(p.learn(&me, NodeId(1), 7, c), Err(Refused::TooMany));
        assert_eq!(p.by_digest(&d), Some(&a));
        assert_eq!(p.take(&d), Some(a));
        assert!(!p.contains(&d));
    }
}
