//! Cryptography, owned by the driver and lent to protocols through [`crate::Cx`].
//!
//! - Identity: an ed25519 signing key and an X25519 static key per endpoint.
//! - Signatures: ed25519 (`ed25519-dalek`), with batch verification.
//! - Authenticators: HMAC-SHA256 with pairwise keys. The key of a pair (a, b) is
//!   `BLAKE3-derive("byzscale pairwise mac", X25519(a, b) || sorted ids)`, so no
//!   shared secret is ever configured: each side derives it from its own secret and
//!   the other's public key.
//! - Digests: BLAKE3-256.
//!
//! Every operation is counted in a [`Meter`] that the simulator's CPU model turns
//! into service time. [`CryptoMode::Modeled`] replaces the math with keyed BLAKE3
//! for scale runs only (it is cheap, deterministic and labelled in every output).

use crate::ids::Addr;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

pub type Digest = [u8; 32];

/// BLAKE3-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> Digest {
    *blake3::hash(bytes).as_bytes()
}

/// Short hex for logs.
pub fn short(d: &Digest) -> String {
    hex::encode(&d[..4])
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(pub ed25519_dalek::Signature);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{}", hex::encode(&self.0.to_bytes()[..4]))
    }
}

/// An HMAC-SHA256 tag.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Mac(pub [u8; 32]);

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mac:{}", hex::encode(&self.0[..4]))
    }
}

/// Secret identity of one endpoint.
#[derive(Clone)]
pub struct Identity {
    pub signing: SigningKey,
    pub dh: x25519_dalek::StaticSecret,
}

/// Public identity of one endpoint (what configs and handshakes carry).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PublicIdentity {
    pub sign: [u8; 32],
    pub dh: [u8; 32],
}

impl Identity {
    /// A fresh identity from the OS RNG (used by `byzscale keygen`).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_seed(seed)
    }
    /// A deterministic identity (simulator, tests).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let s = blake3::derive_key("byzscale identity ed25519", &seed);
        let d = blake3::derive_key("byzscale identity x25519", &seed);
        Identity {
            signing: SigningKey::from_bytes(&s),
            dh: x25519_dalek::StaticSecret::from(d),
        }
    }
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            sign: self.signing.verifying_key().to_bytes(),
            dh: x25519_dalek::PublicKey::from(&self.dh).to_bytes(),
        }
    }
    /// Secret bytes for a key file: ed25519 seed then X25519 secret.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.signing.to_bytes());
        out[32..].copy_from_slice(&self.dh.to_bytes());
        out
    }
    pub fn from_bytes(b: &[u8; 64]) -> Self {
        let mut s = [0u8; 32];
        let mut d = [0u8; 32];
        s.copy_from_slice(&b[..32]);
        d.copy_from_slice(&b[32..]);
        Identity {
            signing: SigningKey::from_bytes(&s),
            dh: x25519_dalek::StaticSecret::from(d),
        }
    }
}

/// Real math, or a labelled cost model for scale runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CryptoMode {
    #[default]
    Real,
    Modeled,
}

/// Counts of crypto operations since the last [`Crypto::take_meter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meter {
    pub signs: u64,
    pub verifies: u64,
    pub macs: u64,
    pub hashed_bytes: u64,
}

impl Meter {
    pub fn add(&mut self, o: &Meter) {
        self.signs += o.signs;
        self.verifies += o.verifies;
        self.macs += o.macs;
        self.hashed_bytes += o.hashed_bytes;
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("unknown peer {0}")]
    UnknownPeer(Addr),
    #[error("bad public key for {0}")]
    BadKey(Addr),
    #[error("signature check failed")]
    BadSignature,
}

struct Peer {
    verifying: VerifyingKey,
    mac: Hmac<Sha256>,
}

/// One endpoint's keys and the public keys of its peers.
pub struct Crypto {
    me: Addr,
    identity: Identity,
    mode: CryptoMode,
    peers: BTreeMap<Addr, Peer>,
    meter: Cell<Meter>,
}

type HmacSha256 = Hmac<Sha256>;

fn modeled_sig(signer: &[u8; 32], msg: &[u8]) -> ed25519_dalek::Signature {
    let mut h = blake3::Hasher::new_keyed(signer);
    h.update(msg);
    let mut out = [0u8; 64];
    h.finalize_xof().fill(&mut out);
    ed25519_dalek::Signature::from_bytes(&out)
}

impl Crypto {
    pub fn new(me: Addr, identity: Identity, mode: CryptoMode) -> Self {
        Crypto {
            me,
            identity,
            mode,
            peers: BTreeMap::new(),
            meter: Cell::new(Meter::default()),
        }
    }
    pub fn me(&self) -> Addr {
        self.me
    }
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }
    pub fn public(&self) -> PublicIdentity {
        self.identity.public()
    }
    /// Learn a peer's public identity and derive the pairwise MAC key.
    pub fn add_peer(&mut self, peer: Addr, pk: PublicIdentity) -> Result<(), CryptoError> {
        let verifying =
            VerifyingKey::from_bytes(&pk.sign).map_err(|_| CryptoError::BadKey(peer))?;
        let shared = self
            .identity
            .dh
            .diffie_hellman(&x25519_dalek::PublicKey::from(pk.dh));
        let (lo, hi) = if self.me <= peer {
            (self.me, peer)
        } else {
            (peer, self.me)
        };
        let mut material = shared.as_bytes().to_vec();
        material.extend_from_slice(format!("{lo:?}|{hi:?}").as_bytes());
        let key = blake3::derive_key("byzscale pairwise mac", &material);
        let mac = HmacSha256::new_from_slice(&key).expect("hmac takes any key length");
        self.peers.insert(peer, Peer { verifying, mac });
        Ok(())
    }
    pub fn knows(&self, peer: Addr) -> bool {
        self.peers.contains_key(&peer)
    }
    fn bump(&self, f: impl FnOnce(&mut Meter)) {
        let mut m = self.meter.get();
        f(&mut m);
        self.meter.set(m);
    }
    /// Operations counted since the last call.
    pub fn take_meter(&self) -> Meter {
        self.meter.replace(Meter::default())
    }

    pub fn hash(&self, bytes: &[u8]) -> Digest {
        self.bump(|m| m.hashed_bytes += bytes.len() as u64);
        digest(bytes)
    }

    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.bump(|m| m.signs += 1);
        match self.mode {
            CryptoMode::Real => Signature(self.identity.signing.sign(msg)),
            CryptoMode::Modeled => Signature(modeled_sig(&self.public().sign, msg)),
        }
    }

    fn verifying_key(&self, signer: Addr) -> Result<&VerifyingKey, CryptoError> {
        if signer == self.me {
            return Ok(self.identity_verifying());
        }
        self.peers
            .get(&signer)
            .map(|p| &p.verifying)
            .ok_or(CryptoError::UnknownPeer(signer))
    }
    fn identity_verifying(&self) -> &VerifyingKey {
        // SigningKey caches its verifying key.
        self.identity.signing.as_ref()
    }

    pub fn verify(&self, signer: Addr, msg: &[u8], sig: &Signature) -> Result<(), CryptoError> {
        self.bump(|m| m.verifies += 1);
        let vk = self.verifying_key(signer)?;
        match self.mode {
            CryptoMode::Real => vk
                .verify(msg, &sig.0)
                .map_err(|_| CryptoError::BadSignature),
            CryptoMode::Modeled => {
                if modeled_sig(&vk.to_bytes(), msg) == sig.0 {
                    Ok(())
                } else {
                    Err(CryptoError::BadSignature)
                }
            }
        }
    }

    /// Verify many signatures at once. Real mode uses ed25519 batch verification
    /// (about twice as fast per signature); on failure the caller learns only that
    /// some signature is bad and should fall back to [`Crypto::verify`] one by one.
    pub fn verify_batch(&self, items: &[(Addr, &[u8], &Signature)]) -> Result<(), CryptoError> {
        if items.len() <= 1 {
            return items.iter().try_for_each(|(a, m, s)| self.verify(*a, m, s));
        }
        self.bump(|m| m.verifies += items.len() as u64);
        match self.mode {
            CryptoMode::Real => {
                let mut keys = Vec::with_capacity(items.len());
                for (a, _, _) in items {
                    keys.push(*self.verifying_key(*a)?);
                }
                let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| *m).collect();
                let sigs: Vec<ed25519_dalek::Signature> =
                    items.iter().map(|(_, _, s)| s.0).collect();
                ed25519_dalek::verify_batch(&msgs, &sigs, &keys)
                    .map_err(|_| CryptoError::BadSignature)
            }
            CryptoMode::Modeled => {
                for (a, m, s) in items {
                    let vk = self.verifying_key(*a)?;
                    if modeled_sig(&vk.to_bytes(), m) != s.0 {
                        return Err(CryptoError::BadSignature);
                    }
                }
                Ok(())
            }
        }
    }

    /// HMAC-SHA256 of `msg` under the key shared with `peer`.
    pub fn mac(&self, peer: Addr, msg: &[u8]) -> Result<Mac, CryptoError> {
        self.bump(|m| m.macs += 1);
        let p = self
            .peers
            .get(&peer)
            .ok_or(CryptoError::UnknownPeer(peer))?;
        let mut h = p.mac.clone();
        h.update(msg);
        Ok(Mac(h.finalize().into_bytes().into()))
    }

    /// Constant-time check of a tag from `peer`.
    pub fn verify_mac(&self, peer: Addr, msg: &[u8], tag: &Mac) -> bool {
        self.bump(|m| m.macs += 1);
        let Some(p) = self.peers.get(&peer) else {
            return false;
        };
        let mut h = p.mac.clone();
        h.update(msg);
        h.verify_slice(&tag.0).is_ok()
    }

    /// A PBFT-style authenticator: one MAC of `msg` per receiver, in `receivers` order.
    pub fn authenticator(&self, receivers: &[Addr], msg: &[u8]) -> Result<Vec<Mac>, CryptoError> {
        receivers.iter().map(|r| self.mac(*r, msg)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ClientId, NodeId};

    fn pair() -> (Crypto, Crypto) {
        let a = Addr::Node(NodeId(0));
        let b = Addr::Client(ClientId(7));
        let ia = Identity::from_seed([1; 32]);
        let ib = Identity::from_seed([2; 32]);
        let mut ca = Crypto::new(a, ia.clone(), CryptoMode::Real);
        let mut cb = Crypto::new(b, ib.clone(), CryptoMode::Real);
        ca.add_peer(b, ib.public()).unwrap();
        cb.add_peer(a, ia.public()).unwrap();
        (ca, cb)
    }

    #[test]
    fn pairwise_macs_agree_and_reject_tampering() {
        let (a, b) = pair();
        let tag = a.mac(b.me(), b"hello").unwrap();
        assert!(b.verify_mac(a.me(), b"hello", &tag));
        assert!(!b.verify_mac(a.me(), b"hellp", &tag));
        let mut bad = tag;
        bad.0[0] ^= 1;
        assert!(!b.verify_mac(a.me(), b"hello", &bad));
        // an unknown peer never verifies
        assert!(!b.verify_mac(Addr::Node(NodeId(9)), b"hello", &tag));
        assert_eq!(b.take_meter().macs, 4);
    }

    #[test]
    fn signatures_and_batches() {
        let (a, b) = pair();
        let s1 = a.sign(b"one");
        let s2 = a.sign(b"two");
        assert!(b.verify(a.me(), b"one", &s1).is_ok());
        assert_eq!(
            b.verify(a.me(), b"two", &s1),
            Err(CryptoError::BadSignature)
        );
        let me = a.me();
        assert!(b
            .verify_batch(&[(me, b"one".as_slice(), &s1), (me, b"two".as_slice(), &s2)])
            .is_ok());
        assert!(b
            .verify_batch(&[(me, b"one".as_slice(), &s2), (me, b"two".as_slice(), &s1)])
            .is_err());
    }

    #[test]
    fn modeled_mode_still_binds_signer_and_message() {
        let ia = Identity::from_seed([3; 32]);
        let ib = Identity::from_seed([4; 32]);
        let a = Addr::Node(NodeId(0));
        let b = Addr::Node(NodeId(1));
        let mut ca = Crypto::new(a, ia.clone(), CryptoMode::Modeled);
        let mut cb = Crypto::new(b, ib.clone(), CryptoMode::Modeled);
        ca.add_peer(b, ib.public()).unwrap();
        cb.add_peer(a, ia.public()).unwrap();
        let s = ca.sign(b"x");
        assert!(cb.verify(a, b"x", &s).is_ok());
        assert!(cb.verify(a, b"y", &s).is_err());
        assert!(ca.verify(b, b"x", &s).is_err());
    }

    #[test]
    fn identity_round_trips_through_bytes() {
        let i = Identity::from_seed([5; 32]);
        let j = Identity::from_bytes(&i.to_bytes());
        assert_eq!(i.public(), j.public());
    }
}
