//! Client-owned accounts and the transfers their owners sign.
//!
//! An [`Account`] is an ed25519 public key; its owner is whoever holds the
//! secret key (a client, not a node). A transfer is signed by the sender's
//! key over a canonical encoding ([`signing_bytes`]) that any language can
//! reproduce:
//!
//! ```text
//! "byzscale-at2-transfer-v1"   24 ASCII bytes (domain separation)
//! from                         32 bytes: the sender's public key
//! seq                          u64, big-endian: the sender's sequence number (1, 2, ...)
//! to                           32 bytes: the recipient's public key
//! amount                       u64, big-endian
//! n                            u32, big-endian: the number of dependencies
//! n times: from || seq         32 bytes + u64 big-endian: each dependency's id
//! ```
//!
//! The signature is plain ed25519 (RFC 8032) of those bytes. Dependencies
//! are the thesis' `h` (Algorithm 5): the incoming transfers the owner
//! cites to justify the amount, each named by its id (sender, sequence
//! number), which is unique once certified (see the crate docs).

use byzscale_core::crypto::{self, CryptoMode, Digest, Signature};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Domain separation of the transfer signature.
pub const TRANSFER_DOMAIN: &[u8; 24] = b"byzscale-at2-transfer-v1";

/// Dependencies one transfer may cite (more is malformed; an account with
/// more incoming transfers cites them over several transfers).
pub const MAX_DEPS: usize = 256;

/// An account: an ed25519 public key. Displayed as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct Account(pub [u8; 32]);

impl Account {
    /// Parse 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Account, String> {
        let b = hex::decode(s.trim()).map_err(|_| {
            format!("`{s}` is not an account (expected 64 hex digits, an ed25519 public key)")
        })?;
        let k: [u8; 32] = b.try_into().map_err(|_| {
            format!("`{s}` is not an account (expected 64 hex digits, an ed25519 public key)")
        })?;
        Ok(Account(k))
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The account of a signing key.
    pub fn of(key: &ed25519_dalek::SigningKey) -> Account {
        Account(key.verifying_key().to_bytes())
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(&self.0[..4]))
    }
}
impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hex())
    }
}

/// `(from, seq)`: the `seq`-th outgoing transfer of account `from`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferId {
    pub from: Account,
    pub seq: u64,
}

impl fmt::Debug for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}#{}", self.from, self.seq)
    }
}
impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.from, self.seq)
    }
}

/// `(a, b, x, s)` of Algorithm 5: `from` pays `amount` to `to` as its
/// `seq`-th transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Transfer {
    pub from: Account,
    pub seq: u64,
    pub to: Account,
    pub amount: u64,
}

impl Transfer {
    pub fn id(&self) -> TransferId {
        TransferId {
            from: self.from,
            seq: self.seq,
        }
    }
}

/// The canonical bytes the owner signs (see the module docs).
pub fn signing_bytes(t: &Transfer, deps: &[TransferId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + 84 + 40 * deps.len());
    out.extend_from_slice(TRANSFER_DOMAIN);
    out.extend_from_slice(&t.from.0);
    out.extend_from_slice(&t.seq.to_be_bytes());
    out.extend_from_slice(&t.to.0);
    out.extend_from_slice(&t.amount.to_be_bytes());
    out.extend_from_slice(&(deps.len() as u32).to_be_bytes());
    for d in deps {
        out.extend_from_slice(&d.from.0);
        out.extend_from_slice(&d.seq.to_be_bytes());
    }
    out
}

/// A transfer as its owner submits it: the transfer, the dependencies it
/// cites, and the owner's signature over both ([`signing_bytes`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransfer {
    pub transfer: Transfer,
    pub deps: Vec<TransferId>,
    pub sig: Signature,
}

/// Why a signed transfer is malformed whatever the ledger holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Malformed {
    #[error("the amount must be positive")]
    ZeroAmount,
    #[error("sequence numbers start at 1")]
    ZeroSeq,
    #[error("{0} dependencies cited, at most {MAX_DEPS} allowed")]
    TooManyDeps(usize),
    #[error("dependency {0} cited twice")]
    DuplicateDep(TransferId),
    #[error("dependency {0} is the account's own transfer")]
    OwnDep(TransferId),
}

impl SignedTransfer {
    /// Sign `transfer` citing `deps` with `key` (real ed25519; see
    /// [`SignedTransfer::sign_in`] for the simulator's modeled mode).
    pub fn sign(
        key: &ed25519_dalek::SigningKey,
        transfer: Transfer,
        deps: Vec<TransferId>,
    ) -> Self {
        Self::sign_in(key, CryptoMode::Real, transfer, deps)
    }
    /// Sign in `mode` (the simulator's modeled crypto signs with a keyed
    /// BLAKE3 stand-in, see [`byzscale_core::crypto::sign_with`]).
    pub fn sign_in(
        key: &ed25519_dalek::SigningKey,
        mode: CryptoMode,
        transfer: Transfer,
        deps: Vec<TransferId>,
    ) -> Self {
        let sig = crypto::sign_with(key, mode, &signing_bytes(&transfer, &deps));
        SignedTransfer {
            transfer,
            deps,
            sig,
        }
    }
    pub fn id(&self) -> TransferId {
        self.transfer.id()
    }
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(&self.transfer, &self.deps)
    }
    /// What the owner signed, hashed (BLAKE3): two transfers with the same
    /// id conflict iff their digests differ (a second signature over the
    /// same content is the same transfer).
    pub fn digest(&self) -> Digest {
        crypto::digest(&self.signing_bytes())
    }
    /// The checks that need no ledger (amount, sequence number, dependency
    /// list).
    pub fn well_formed(&self) -> Result<(), Malformed> {
        let t = &self.transfer;
        if t.amount == 0 {
            return Err(Malformed::ZeroAmount);
        }
        if t.seq == 0 {
            return Err(Malformed::ZeroSeq);
        }
        if self.deps.len() > MAX_DEPS {
            return Err(Malformed::TooManyDeps(self.deps.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.deps {
            if d.from == t.from {
                return Err(Malformed::OwnDep(*d));
            }
            if !seen.insert(*d) {
                return Err(Malformed::DuplicateDep(*d));
            }
        }
        Ok(())
    }
}

/// The public key of a secret key given as 64 hex digits, and the key.
pub fn key_from_hex(s: &str) -> Result<ed25519_dalek::SigningKey, String> {
    let b = hex::decode(s.trim()).map_err(|_| "a secret key is 64 hex digits".to_string())?;
    let k: [u8; 32] = b
        .try_into()
        .map_err(|_| "a secret key is 64 hex digits".to_string())?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::crypto::{Crypto, Identity};
    use byzscale_core::{Addr, NodeId};

    fn key(i: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[i; 32])
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let t = Transfer {
            from: Account([1; 32]),
            seq: 0x0102,
            to: Account([2; 32]),
            amount: 0x0a0b0c,
        };
        let dep = TransferId {
            from: Account([3; 32]),
            seq: 7,
        };
        let b = signing_bytes(&t, &[dep]);
        let mut want = b"byzscale-at2-transfer-v1".to_vec();
        want.extend([1u8; 32]);
        want.extend([0, 0, 0, 0, 0, 0, 1, 2]);
        want.extend([2u8; 32]);
        want.extend([0, 0, 0, 0, 0, 0x0a, 0x0b, 0x0c]);
        want.extend([0, 0, 0, 1]);
        want.extend([3u8; 32]);
        want.extend([0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(b, want);
        assert_eq!(b.len(), 24 + 32 + 8 + 32 + 8 + 4 + 40);
    }

    #[test]
    fn signatures_bind_every_field_and_the_key() {
        let k = key(9);
        let t = Transfer {
            from: Account::of(&k),
            seq: 1,
            to: Account::of(&key(10)),
            amount: 5,
        };
        let s = SignedTransfer::sign(&k, t, vec![]);
        let c = Crypto::new(
            Addr::Node(NodeId(0)),
            Identity::from_seed([0; 32]),
            CryptoMode::Real,
        );
        let check = |s: &SignedTransfer| {
            let b = s.signing_bytes();
            c.verify_keyed(&[(&s.transfer.from.0, &b, &s.sig)])[0]
        };
        assert!(check(&s));
        // any change of a field, or a signature by another key, fails
        let mut more = s.clone();
        more.transfer.amount = 6;
        assert!(!check(&more));
        let mut later = s.clone();
        later.transfer.seq = 2;
        assert!(!check(&later));
        let mut deps = s.clone();
        deps.deps.push(TransferId {
            from: Account([4; 32]),
            seq: 1,
        });
        assert!(!check(&deps));
        let forged = SignedTransfer::sign(&key(11), t, vec![]);
        assert!(!check(&forged), "signed by a key that does not own `from`");
        // the digest names the content, not the signature
        assert_eq!(forged.digest(), s.digest());
        assert_ne!(more.digest(), s.digest());
    }

    #[test]
    fn malformed_transfers() {
        let k = key(1);
        let a = Account::of(&k);
        let t = |seq, amount| Transfer {
            from: a,
            seq,
            to: Account([2; 32]),
            amount,
        };
        let d = TransferId {
            from: Account([3; 32]),
            seq: 1,
        };
        let m = |t, deps| SignedTransfer::sign(&k, t, deps).well_formed();
        assert_eq!(m(t(1, 1), vec![d]), Ok(()));
        assert_eq!(m(t(1, 0), vec![]), Err(Malformed::ZeroAmount));
        assert_eq!(m(t(0, 1), vec![]), Err(Malformed::ZeroSeq));
        assert_eq!(m(t(1, 1), vec![d, d]), Err(Malformed::DuplicateDep(d)));
        let own = TransferId { from: a, seq: 1 };
        assert_eq!(m(t(2, 1), vec![own]), Err(Malformed::OwnDep(own)));
        let many: Vec<TransferId> = (1..=MAX_DEPS as u64 + 1)
            .map(|seq| TransferId { seq, ..d })
            .collect();
        assert_eq!(m(t(1, 1), many), Err(Malformed::TooManyDeps(MAX_DEPS + 1)));
        assert_eq!(Account::from_hex(&a.hex()), Ok(a), "hex round trip");
        assert!(Account::from_hex("abc").is_err() && Account::from_hex(&"zz".repeat(32)).is_err());
    }
}
