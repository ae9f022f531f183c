//! A group's voice: THRESHOLD-SIGN as a reusable piece.
//!
//! Steward (§4.1, THRESHOLD-SIGN) has every server of a site sign a share of
//! what the site says and send it to the site's representative, which combines
//! 2f+1 shares into one site signature. [`Voice`] is both sides of that step
//! for any message type: a member calls [`Voice::said`] when its (replicated,
//! deterministic) state machine makes the group say a message, which returns
//! its own share to send; the representative feeds the shares it receives to
//! [`Voice::heard`] and gets the combined signature once enough valid shares
//! of a message it has itself said are in. Shares that arrive before the
//! representative's own state machine says the message wait, within a byte
//! bound (the oldest are dropped first): an attacker cannot grow the table.
//!
//! What is signed is `domain || message` in the codec encoding, so a
//! signature made for one protocol or message kind is never valid for another.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use super::{GroupKey, KeyShare, Share, Signature, ThresholdError};
use crate::codec;
use crate::crypto::{digest, Digest};

/// Bytes one waiting share costs against the bound (the share and its keys).
const SHARE_COST: usize = super::SIG_BYTES + 64;
/// Combined messages remembered, so that late shares for them are dropped
/// rather than held.
const DONE_MEMORY: usize = 4096;

/// A combined group signature on a message.
#[derive(Clone, Debug)]
pub struct Spoken<M> {
    pub msg: M,
    pub signature: Signature,
    /// Members whose shares for it did not verify (faults, with evidence).
    pub invalid: Vec<u32>,
}

/// What a received share did.
#[derive(Debug)]
pub enum Heard<M> {
    /// Held: not enough shares yet, or the message is not said here yet.
    Held,
    /// The message is now signed by the group.
    Spoken(Spoken<M>),
    /// Dropped: the message was already signed here, or the share is a
    /// member's second one for the message.
    Dropped,
    /// A fault: the share names another member than its sender, or a member
    /// the group does not have, or enough shares were in but too many of
    /// them were invalid (the members named).
    Fault(ThresholdError),
}

struct Open<M> {
    said: Option<(M, Vec<u8>)>,
    shares: BTreeMap<u32, Share>,
}

/// Shares of one group's signatures, collected per message.
pub struct Voice<M> {
    key: GroupKey,
    domain: &'static [u8],
    open: BTreeMap<Digest, Open<M>>,
    /// Open digests, oldest first (eviction order).
    age: VecDeque<Digest>,
    /// Combined digests, oldest first, and the same as a set (looked up for
    /// every share).
    done: VecDeque<Digest>,
    done_set: BTreeSet<Digest>,
    bytes: usize,
    max_bytes: usize,
}

impl<M: Serialize + Clone> Voice<M> {
    /// A voice for the group of `key`, signing `domain || message`, holding at
    /// most `max_bytes` of waiting shares and messages.
    pub fn new(key: GroupKey, domain: &'static [u8], max_bytes: usize) -> Self {
        Voice {
            key,
            domain,
            open: BTreeMap::new(),
            age: VecDeque::new(),
            done: VecDeque::new(),
            done_set: BTreeSet::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The bytes a group signature on `msg` covers, and their digest (what a
    /// share names on the wire).
    pub fn signed_bytes(&self, msg: &M) -> (Vec<u8>, Digest) {
        let mut bytes = self.domain.to_vec();
        codec::write_into(&mut bytes, msg);
        let d = digest(&bytes);
        (bytes, d)
    }

    /// Whether `sig` is the group's signature on `msg` (any receiver).
    pub fn verify(&self, msg: &M, sig: &Signature) -> bool {
        self.key.verify(&self.signed_bytes(msg).0, sig)
    }

    /// This member's state machine made the group say `msg`: its share (to
    /// send to the representative, with the digest) and, where shares from
    /// others were already waiting here, possibly the group's signature.
    pub fn said(&mut self, msg: M, mine: &KeyShare) -> (Digest, Share, Heard<M>) {
        let (bytes, d) = self.signed_bytes(&msg);
        let share = mine.sign(&bytes);
        if self.done_set.contains(&d) {
            return (d, share, Heard::Dropped);
        }
        let len = bytes.len();
        let open = self.open_entry(d);
        if open.said.is_none() {
            open.said = Some((msg, bytes));
            self.bytes += len;
        }
        let heard = self.add(d, share.clone());
        (d, share, heard)
    }

    /// A share from member `from` of the signature on the message with
    /// digest `d`.
    pub fn heard(&mut self, from: u32, d: Digest, share: Share) -> Heard<M> {
        if from as usize >= self.key.members() {
            let n = self.key.members();
            return Heard::Fault(ThresholdError::NoSuchMember { index: from, n });
        }
        if share.index != from {
            let claimed = share.index;
            return Heard::Fault(ThresholdError::WrongMember { from, claimed });
        }
        if self.done_set.contains(&d) {
            return Heard::Dropped;
        }
        self.open_entry(d);
        self.add(d, share)
    }

    /// Messages with shares or a local say waiting, and their bytes.
    pub fn waiting(&self) -> (usize, usize) {
        (self.open.len(), self.bytes)
    }

    fn open_entry(&mut self, d: Digest) -> &mut Open<M> {
        if !self.open.contains_key(&d) {
            self.age.push_back(d);
        }
        self.open.entry(d).or_insert_with(|| Open {
            said: None,
            shares: BTreeMap::new(),
        })
    }

    fn add(&mut self, d: Digest, share: Share) -> Heard<M> {
        let need = self.key.threshold();
        let open = self.open.get_mut(&d).expect("opened by the caller");
        if open.shares.contains_key(&share.index) {
            return Heard::Dropped;
        }
        open.shares.insert(share.index, share);
        self.bytes += SHARE_COST;
        let ready = open.said.is_some() && open.shares.len() >= need;
        let heard = if ready { self.combine(d) } else { Heard::Held };
        self.evict();
        heard
    }

    fn combine(&mut self, d: Digest) -> Heard<M> {
        let open = &self.open[&d];
        let (msg, bytes) = open.said.as_ref().expect("ready means said");
        match self.key.combine(bytes, open.shares.values()) {
            Ok(c) => {
                let spoken = Spoken {
                    msg: msg.clone(),
                    signature: c.signature,
                    invalid: c.invalid,
                };
                self.close(d);
                Heard::Spoken(spoken)
            }
            Err(ThresholdError::TooFewShares { invalid, .. }) => {
                // drop the invalid shares and wait for more
                let open = self.open.get_mut(&d).expect("open");
                for i in &invalid {
                    open.shares.remove(i);
                }
                self.bytes -= SHARE_COST * invalid.len();
                Heard::Fault(ThresholdError::TooFewShares {
                    have: open.shares.len(),
                    need: self.key.threshold(),
                    invalid,
                })
            }
            Err(e) => Heard::Fault(e),
        }
    }

    fn close(&mut self, d: Digest) {
        if let Some(open) = self.open.remove(&d) {
            self.bytes -= Self::cost(&open);
        }
        self.age.retain(|x| *x != d);
        if self.done_set.insert(d) {
            self.done.push_back(d);
        }
        if self.done.len() > DONE_MEMORY {
            if let Some(old) = self.done.pop_front() {
                self.done_set.remove(&old);
            }
        }
    }

    fn cost(open: &Open<M>) -> usize {
        open.said.as_ref().map_or(0, |(_, b)| b.len()) + SHARE_COST * open.shares.len()
    }

    /// Drop the oldest open messages until within the bound.
    fn evict(&mut self) {
        while self.bytes > self.max_bytes {
            let Some(d) = self.age.pop_front() else {
                break;
            };
            if let Some(open) = self.open.remove(&d) {
                self.bytes -= Self::cost(&open);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::deal;
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[derive(Clone, Debug, PartialEq, Serialize)]
    struct Accept {
        view: u64,
        seq: u64,
    }

    fn site() -> (Vec<Voice<Accept>>, Vec<KeyShare>) {
        let (key, shares) = deal(3, 4, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let voices = (0..4)
            .map(|_| Voice::new(key.clone(), b"test/accept", 1 << 20))
            .collect();
        (voices, shares)
    }

    #[test]
    fn the_representative_speaks_once_it_has_said_it_and_holds_enough_shares() {
        let (mut v, keys) = site();
        let m = Accept { view: 1, seq: 7 };
        // members 1 and 2 are ahead of the representative (member 0)
        let (d, s1, _) = v[1].said(m.clone(), &keys[1]);
        let (_, s2, _) = v[2].said(m.clone(), &keys[2]);
        assert!(matches!(v[0].heard(1, d, s1.clone()), Heard::Held));
        assert!(matches!(v[0].heard(2, d, s2), Heard::Held));
        assert!(
            matches!(v[0].heard(1, d, s1), Heard::Dropped),
            "a second share"
        );
        let (d0, _, heard) = v[0].said(m.clone(), &keys[0]);
        assert_eq!(d0, d);
        let Heard::Spoken(spoken) = heard else {
            panic!("3 of 4 shares: {heard:?}")
        };
        assert_eq!(spoken.msg, m);
        assert!(spoken.invalid.is_empty());
        // any member (any site) verifies it with the group key alone
        assert!(v[3].verify(&m, &spoken.signature));
        assert!(!v[3].verify(&Accept { view: 1, seq: 8 }, &spoken.signature));
        assert_eq!(v[0].waiting(), (0, 0));
        // the fourth share comes late: dropped, not held
        let (_, s3, _) = v[3].said(m, &keys[3]);
        assert!(matches!(v[0].heard(3, d, s3), Heard::Dropped));
    }

    #[test]
    fn bad_shares_are_named_and_a_share_under_another_name_is_a_fault() {
        let (mut v, keys) = site();
        let m = Accept { view: 2, seq: 1 };
        let (d, _, _) = v[0].said(m.clone(), &keys[0]);
        // member 1 signs something else; member 2 first claims to be member 3
        let lie = keys[1].sign(b"test/accept and something else");
        assert!(matches!(v[0].heard(1, d, lie), Heard::Held));
        let (_, s2, _) = v[2].said(m.clone(), &keys[2]);
        let forged = Share {
            index: 3,
            ..s2.clone()
        };
        let wrong = ThresholdError::WrongMember {
            from: 2,
            claimed: 3,
        };
        assert!(matches!(v[0].heard(2, d, forged), Heard::Fault(e) if e == wrong));
        // three shares in, one invalid: member 1 is named, its share dropped
        let Heard::Fault(ThresholdError::TooFewShares { have, invalid, .. }) = v[0].heard(2, d, s2)
        else {
            panic!("member 1's share is invalid")
        };
        assert_eq!((have, invalid), (2, vec![1]));
        let (_, s3, _) = v[3].said(m.clone(), &keys[3]);
        let Heard::Spoken(spoken) = v[0].heard(3, d, s3) else {
            panic!("0, 2 and 3 are valid")
        };
        assert!(v[0].verify(&m, &spoken.signature));
    }

    #[test]
    fn shares_for_messages_never_said_stay_within_the_byte_bound() {
        let (key, keys) = deal(3, 4, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        let bound = 40 * SHARE_COST;
        let mut rep: Voice<Accept> = Voice::new(key.clone(), b"test/accept", bound);
        let mut other: Voice<Accept> = Voice::new(key, b"test/accept", bound);
        for seq in 0..1_000 {
            let (d, s, _) = other.said(Accept { view: 9, seq }, &keys[1]);
            rep.heard(1, d, s);
            assert!(rep.waiting().1 <= bound);
        }
        assert!(rep.waiting().0 <= 40);
        // the newest survive, and still combine once said
        let m = Accept { view: 9, seq: 999 };
        let (d, s2, _) = other.said(m.clone(), &keys[2]);
        assert!(matches!(rep.heard(2, d, s2), Heard::Held));
        assert!(matches!(rep.said(m, &keys[0]).2, Heard::Spoken(_)));
    }
}
