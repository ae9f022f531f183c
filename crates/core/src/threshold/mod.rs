//! Threshold signatures: one public key per group, k of its n members sign.
//!
//! Steward (Amir et al., "Steward: Scaling Byzantine Fault-Tolerant Replication
//! to Wide Area Networks", §4.1 and Fig. 2, THRESHOLD-SIGN) makes each site speak
//! with one (2f+1, 3f+1) threshold signature, so that a site's Proposal, Accept
//! and view-change messages are verified with the site's single public key
//! and carry no per-server signatures across the WAN; DQBFT's ThreshSign does
//! the same for its ordering instance. The paper uses RSA threshold
//! signatures (Shoup); we use BLS12-381 threshold signatures through `blsttc`
//! (deviation: BLS shares need no proof of correctness, since a share is
//! checked with a pairing against the member's public key share; the
//! combination is Lagrange interpolation in G2).
//!
//! - [`deal`]: a trusted dealer's key generation (`byzscale keygen --threshold`):
//!   a [`GroupKey`] (public, in every node file) and one [`KeyShare`] per member.
//! - [`KeyShare::sign`]: a member's [`Share`] of a signature on a message.
//! - [`GroupKey::combine`]: any k shares into a [`Signature`]. As in the paper,
//!   shares are verified one by one only when the combined signature does not
//!   verify; the members whose shares fail are returned ([`Combined::invalid`])
//!   so that the protocol records them as faults, with the share as evidence
//!   ([`GroupKey::verify_share`] convinces anyone).
//! - [`GroupKey::verify`]: a combined signature, with the group's key alone.
//! - [`Voice`]: both sides of THRESHOLD-SIGN for any message type (members'
//!   shares, the representative's combination), bounded in bytes.
//!
//! Member indices run from 0 to n−1 (a protocol maps its node ids to them).
//! Bytes from the network are decoded with [`Share::from_bytes`] and
//! [`Signature::from_bytes`], which refuse malformed points instead of
//! panicking.

use std::collections::BTreeMap;

mod voice;
pub use voice::{Heard, Spoken, Voice};

use blsttc::{PublicKeySet, PublicKeyShare, SecretKeySet, SecretKeyShare, SignatureShare};
use rand::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};

/// Bytes of a signature or a share (a compressed G2 point).
pub const SIG_BYTES: usize = blsttc::SIG_SIZE;

/// Why a key, a share or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error("threshold {k} of {n} members: need 1 <= k <= n")]
    BadThreshold { k: usize, n: usize },
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("member index {index} out of range (group of {n})")]
    NoSuchMember { index: u32, n: usize },
    #[error("member {from} sent a share under member {claimed}'s index")]
    WrongMember { from: u32, claimed: u32 },
    /// Too few shares verified; `invalid` names the members whose shares
    /// failed (faults to record, as with [`Combined::invalid`]).
    #[error("{have} distinct valid shares, {need} needed ({} invalid)", invalid.len())]
    TooFewShares {
        have: usize,
        need: usize,
        invalid: Vec<u32>,
    },
}

/// A group's public key: its threshold, its size and every member's public
/// key share (what verifies a [`Share`]).
#[derive(Clone, Debug)]
pub struct GroupKey {
    set: PublicKeySet,
    n: usize,
    members: Vec<PublicKeyShare>,
}

/// A member's secret key share.
#[derive(Clone)]
pub struct KeyShare {
    index: u32,
    key: SecretKeyShare,
}

/// A member's share of a signature on one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub index: u32,
    #[serde(with = "sig_bytes")]
    pub bytes: [u8; SIG_BYTES],
}

/// A combined signature: verifies with the group's public key alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "sig_bytes")] pub [u8; SIG_BYTES]);

/// What [`GroupKey::combine`] made of a set of shares.
#[derive(Clone, Debug)]
pub struct Combined {
    pub signature: Signature,
    /// Members whose shares did not verify (each is proof of a fault).
    pub invalid: Vec<u32>,
}

/// A trusted dealer's key generation: `n` members, any `k` of whom sign
/// (Steward: k = 2f+1, n = 3f+1).
pub fn deal<R: Rng + CryptoRng>(
    k: usize,
    n: usize,
    rng: &mut R,
) -> Result<(GroupKey, Vec<KeyShare>), ThresholdError> {
    if k == 0 || k > n {
        return Err(ThresholdError::BadThreshold { k, n });
    }
    // blsttc's threshold t: any t+1 shares combine
    let secret = SecretKeySet::random(k - 1, rng);
    let shares = (0..n as u32)
        .map(|i| KeyShare {
            index: i,
            key: secret.secret_key_share(i as usize),
        })
        .collect();
    Ok((GroupKey::new(secret.public_keys(), n), shares))
}

impl GroupKey {
    fn new(set: PublicKeySet, n: usize) -> Self {
        let members = (0..n).map(|i| set.public_key_share(i)).collect();
        GroupKey { set, n, members }
    }

    /// Shares needed for a signature.
    pub fn threshold(&self) -> usize {
        self.set.threshold() + 1
    }

    /// Members of the group.
    pub fn members(&self) -> usize {
        self.n
    }

    /// The group's key as bytes (for node files): the member count, then the
    /// commitment of the dealer's polynomial.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = (self.n as u32).to_le_bytes().to_vec();
        out.extend(self.set.to_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ThresholdError> {
        let malformed = ThresholdError::Malformed("group key");
        let (n, commitment) = bytes.split_first_chunk::<4>().ok_or(malformed.clone())?;
        let n = u32::from_le_bytes(*n) as usize;
        let set = PublicKeySet::from_bytes(commitment.to_vec()).map_err(|_| malformed)?;
        let k = set.threshold() + 1;
        if n == 0 || k > n || n > 1 << 16 {
            return Err(ThresholdError::BadThreshold { k, n });
        }
        Ok(GroupKey::new(set, n))
    }

    /// Whether `share` is member `share.index`'s share of a signature on `msg`.
    pub fn verify_share(&self, msg: &[u8], share: &Share) -> bool {
        let (Some(pk), Ok(s)) = (
            self.members.get(share.index as usize),
            SignatureShare::from_bytes(share.bytes),
        ) else {
            return false;
        };
        pk.verify(&s, msg)
    }

    /// Whether `sig` is the group's signature on `msg`.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        match blsttc::Signature::from_bytes(sig.0) {
            Ok(s) => self.set.public_key().verify(&s, msg),
            Err(_) => false,
        }
    }

    /// Combine shares of a signature on `msg` (a member's first share counts,
    /// later ones from the same member are ignored). Optimistic, as in the
    /// paper: the first `threshold` shares are combined and the result
    /// verified; only if it fails is every share verified, the invalid ones
    /// named, and the valid ones combined.
    pub fn combine<'a>(
        &self,
        msg: &[u8],
        shares: impl IntoIterator<Item = &'a Share>,
    ) -> Result<Combined, ThresholdError> {
        let mut by_member: BTreeMap<u32, &Share> = BTreeMap::new();
        for s in shares {
            if s.index as usize >= self.n {
                return Err(ThresholdError::NoSuchMember {
                    index: s.index,
                    n: self.n,
                });
            }
            by_member.entry(s.index).or_insert(s);
        }
        let need = self.threshold();
        let mut decoded: Vec<(u32, &Share, Option<SignatureShare>)> = by_member
            .into_iter()
            .map(|(i, s)| (i, s, SignatureShare::from_bytes(s.bytes).ok()))
            .collect();
        let first: Vec<_> = decoded.iter().take(need).collect();
        if first.len() == need && first.iter().all(|(_, _, d)| d.is_some()) {
            let picked = first
                .iter()
                .filter_map(|(i, _, d)| Some((*i as usize, d.as_ref()?)));
            if let Some(sig) = self.interpolate(msg, picked) {
                return Ok(Combined {
                    signature: sig,
                    invalid: Vec::new(),
                });
            }
        }
        // the slow path: name the members whose shares fail
        let mut invalid = Vec::new();
        decoded.retain(|(i, s, d)| {
            let ok = d.is_some() && self.verify_share(msg, s);
            if !ok {
                invalid.push(*i);
            }
            ok
        });
        if decoded.len() < need {
            return Err(ThresholdError::TooFewShares {
                have: decoded.len(),
                need,
                invalid,
            });
        }
        let picked = decoded
            .iter()
            .take(need)
            .filter_map(|(i, _, d)| Some((*i as usize, d.as_ref()?)));
        let signature = self
            .interpolate(msg, picked)
            .ok_or(ThresholdError::Malformed("combination of verified shares"))?;
        Ok(Combined { signature, invalid })
    }

    /// The combination of exactly `threshold` shares, if it verifies.
    fn interpolate<'a>(
        &self,
        msg: &[u8],
        shares: impl Iterator<Item = (usize, &'a SignatureShare)>,
    ) -> Option<Signature> {
        let sig = self.set.combine_signatures(shares).ok()?;
        self.set
            .public_key()
            .verify(&sig, msg)
            .then(|| Signature(sig.to_bytes()))
    }
}

impl KeyShare {
    /// This member's index in its group.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// This member's share of the group's signature on `msg`.
    pub fn sign(&self, msg: &[u8]) -> Share {
        Share {
            index: self.index,
            bytes: self.key.sign(msg).to_bytes(),
        }
    }

    /// The secret share as bytes (for a key file): index, then the scalar.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.index.to_le_bytes().to_vec();
        out.extend(self.key.to_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ThresholdError> {
        let malformed = ThresholdError::Malformed("key share");
        let (index, key) = bytes.split_first_chunk::<4>().ok_or(malformed.clone())?;
        let key: [u8; blsttc::SK_SIZE] = key.try_into().map_err(|_| malformed.clone())?;
        Ok(KeyShare {
            index: u32::from_le_bytes(*index),
            key: SecretKeyShare::from_bytes(key).map_err(|_| malformed)?,
        })
    }
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyShare({}, <secret>)", self.index)
    }
}

impl Share {
    /// A share received from the network; malformed points are refused
    /// when verified or combined, never here (decoding is cheap and total).
    pub fn from_bytes(index: u32, bytes: &[u8]) -> Result<Self, ThresholdError> {
        let bytes = bytes
            .try_into()
            .map_err(|_| ThresholdError::Malformed("signature share"))?;
        Ok(Share { index, bytes })
    }
}

impl Signature {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ThresholdError> {
        let bytes = bytes
            .try_into()
            .map_err(|_| ThresholdError::Malformed("signature"))?;
        Ok(Signature(bytes))
    }
}

/// serde for `[u8; 96]` (serde's arrays stop at 32).
mod sig_bytes {
    use super::SIG_BYTES;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8; SIG_BYTES], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; SIG_BYTES], D::Error> {
        let v = Vec::<u8>::deserialize(d)?;
        v.try_into()
            .map_err(|v: Vec<u8>| D::Error::invalid_length(v.len(), &"96 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn group(f: usize) -> (GroupKey, Vec<KeyShare>) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        deal(2 * f + 1, 3 * f + 1, &mut rng).unwrap()
    }

    #[test]
    fn any_two_f_plus_one_shares_make_the_same_verifiable_signature() {
        let (key, shares) = group(1);
        let msg = b"site 2 accepts (view 3, seq 17, digest d)";
        let all: Vec<Share> = shares.iter().map(|s| s.sign(msg)).collect();
        assert!(all.iter().all(|s| key.verify_share(msg, s)));
        let a = key.combine(msg, &all[..3]).unwrap();
        let b = key.combine(msg, &all[1..]).unwrap();
        assert!(a.invalid.is_empty() && b.invalid.is_empty());
        // BLS threshold signatures are unique: every quorum makes the same bytes
        assert_eq!(a.signature, b.signature);
        assert!(key.verify(msg, &a.signature));
        assert!(!key.verify(b"another message", &a.signature));
        let err = key.combine(msg, &all[..2]).unwrap_err();
        let invalid = vec![];
        assert_eq!(
            err,
            ThresholdError::TooFewShares {
                have: 2,
                need: 3,
                invalid
            }
        );
        // a member's second share does not count twice
        let twice = [all[0].clone(), all[0].clone(), all[1].clone()];
        assert!(matches!(
            key.combine(msg, &twice),
            Err(ThresholdError::TooFewShares {
                have: 2,
                need: 3,
                ..
            })
        ));
    }

    #[test]
    fn invalid_shares_are_named_and_the_valid_ones_still_combine() {
        let (key, shares) = group(1);
        let msg = b"proposal";
        let mut all: Vec<Share> = shares.iter().map(|s| s.sign(msg)).collect();
        // member 0 signs another message, member 1 sends garbage bytes
        all[0] = shares[0].sign(b"something else");
        all[1].bytes = [7; SIG_BYTES];
        assert!(!key.verify_share(msg, &all[0]) && !key.verify_share(msg, &all[1]));
        let err = key.combine(msg, &all[..3]).unwrap_err();
        let invalid = vec![0, 1];
        assert_eq!(
            err,
            ThresholdError::TooFewShares {
                have: 1,
                need: 3,
                invalid
            }
        );
        let err = key.combine(msg, &all).unwrap_err();
        let invalid = vec![0, 1];
        assert_eq!(
            err,
            ThresholdError::TooFewShares {
                have: 2,
                need: 3,
                invalid
            }
        );
        // with f = 2 (5 of 7), an equivocating member among all seven
        let (key2, shares2) = group(2);
        let mut all2: Vec<Share> = shares2.iter().map(|s| s.sign(msg)).collect();
        all2[2] = shares2[2].sign(b"equivocation");
        let c = key2.combine(msg, &all2).unwrap();
        assert_eq!(c.invalid, vec![2]);
        assert!(key2.verify(msg, &c.signature));
        assert!(
            key2.verify_share(b"equivocation", &all2[2]),
            "the evidence verifies"
        );
    }

    #[test]
    fn keys_survive_their_byte_encodings_and_bad_bytes_are_refused() {
        let (key, shares) = group(1);
        let key2 = GroupKey::from_bytes(&key.to_bytes()).unwrap();
        let share2 = KeyShare::from_bytes(&shares[3].to_bytes()).unwrap();
        assert_eq!(share2.index(), 3);
        let msg = b"m";
        let sig = key2
            .combine(
                msg,
                &[shares[0].sign(msg), shares[1].sign(msg), share2.sign(msg)],
            )
            .unwrap()
            .signature;
        assert!(key.verify(msg, &sig));
        assert!(GroupKey::from_bytes(&[1, 2, 3]).is_err());
        assert!(GroupKey::from_bytes(&[0; 60]).is_err());
        assert!(KeyShare::from_bytes(&[0; 10]).is_err());
        assert!(Share::from_bytes(0, &[0; 95]).is_err());
        assert!(!key.verify(msg, &Signature([0xff; SIG_BYTES])));
        let stranger = Share {
            index: 9,
            bytes: shares[0].sign(msg).bytes,
        };
        assert!(!key.verify_share(msg, &stranger));
        assert_eq!(
            key.combine(msg, [&stranger]).unwrap_err(),
            ThresholdError::NoSuchMember { index: 9, n: 4 }
        );
        assert_eq!(
            deal(5, 4, &mut ChaCha8Rng::seed_from_u64(1)).unwrap_err(),
            ThresholdError::BadThreshold { k: 5, n: 4 }
        );
        let wire = crate::codec::to_bytes(&shares[0].sign(msg));
        let back: Share = crate::codec::from_bytes(&wire, 1 << 10).unwrap();
        assert_eq!(back, shares[0].sign(msg));
        let sig_wire = crate::codec::to_bytes(&sig);
        assert_eq!(
            crate::codec::from_bytes::<Signature>(&sig_wire, 1 << 10).unwrap(),
            sig
        );
        let short = &sig_wire[..sig_wire.len() - 1];
        assert!(crate::codec::from_bytes::<Signature>(short, 1 << 10).is_err());
    }
}
