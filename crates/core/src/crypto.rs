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
//! # Peers, lazily
//!
//! A [`Crypto`] knows a peer's public keys either because it was told about it
//! ([`Crypto::add_peer`], which checks the ed25519 key at once so a bad
//! configured key is reported there) or through a shared [`Directory`]: one
//! `Arc`'d table of [`PublicIdentity`] that thousands of simulated nodes consult
//! for every peer they were not told about individually, so N nodes hold N
//! public-key entries, not N². Per-pair work is done on first use and cached:
//! the pairwise MAC key (one X25519 exchange) on the first [`Crypto::mac`] or
//! [`Crypto::verify_mac`] with that peer, the decompressed ed25519 key of a
//! directory entry on its first signature check (once per entry, shared by
//! every node using the directory). A peer that neither the node nor its
//! directory knows is still an error ([`CryptoError::UnknownPeer`]).
//!
//! # Peers learnt from connections, bounded
//!
//! A client-facing node also learns clients' keys from their handshakes
//! ([`Crypto::connect_peer`], one call per connection, and
//! [`Crypto::disconnect_peer`] when it ends). Such a peer is kept while it
//! has a connection; afterwards it is cached in LRU order, at most
//! [`Crypto::set_peer_cache`] of them (unbounded until set, so an endpoint
//! that never learns peers this way, e.g. in the simulator, behaves as if
//! the cache did not exist), the least recently disconnected evicted
//! beyond it with its derived MAC key. An evicted client is unknown again:
//! its MACs and signatures fail here until it reconnects. One learnt peer
//! costs [`LEARNT_PEER_BYTES`] at most.
//!
//! Every operation is counted in a [`Meter`] that the simulator's CPU model turns
//! into service time. [`CryptoMode::Modeled`] replaces the math with keyed BLAKE3
//! for scale runs only (it is cheap, deterministic and labelled in every output):
//! signatures are a keyed BLAKE3 of the message under the signer's public key, and
//! the pairwise MAC key is `BLAKE3-derive("byzscale modeled pairwise mac", sorted
//! ids || both ed25519 public keys in the same order)`, with no X25519. Anyone who knows the public
//! keys can compute such a key, so modeled MACs only stand in for the real ones'
//! cost and for the simulator's sender checks (a tag made with another pair's key
//! still fails); they are never used by the real transport.

use crate::ids::Addr;
use crate::leases::Leases;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

pub type Digest = [u8; 32];

/// BLAKE3-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> Digest {
    *blake3::hash(bytes).as_bytes()
}

/// Short hex for logs.
pub fn short(d: &Digest) -> String {
    hex::encode(&d[..4])
}

/// Sign `msg` with a raw ed25519 key (one that is not an endpoint's
/// identity, such as an AT2 account key held by a client) in `mode`: real
/// ed25519, or the keyed BLAKE3 stand-in of [`CryptoMode::Modeled`] under
/// the key's public half (checked by [`Crypto::verify_keyed`]).
pub fn sign_with(key: &SigningKey, mode: CryptoMode, msg: &[u8]) -> Signature {
    match mode {
        CryptoMode::Real => Signature(key.sign(msg)),
        CryptoMode::Modeled => Signature(modeled_sig(&key.verifying_key().to_bytes(), msg)),
    }
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

/// The public identities of a group of endpoints, shared (through an `Arc`) by
/// every [`Crypto`] that should know them without being told one by one.
///
/// Each entry's ed25519 key is decompressed on its first signature check and
/// kept for every later check by any node sharing the directory.
#[derive(Default)]
pub struct Directory {
    entries: BTreeMap<Addr, DirEntry>,
}

struct DirEntry {
    public: PublicIdentity,
    /// `None` inside: the key does not decompress.
    verifying: OnceLock<Option<VerifyingKey>>,
}

impl Directory {
    /// A directory of `entries` (a later entry for the same address wins).
    pub fn new(entries: impl IntoIterator<Item = (Addr, PublicIdentity)>) -> Self {
        Directory {
            entries: entries
                .into_iter()
                .map(|(a, public)| {
                    (
                        a,
                        DirEntry {
                            public,
                            verifying: OnceLock::new(),
                        },
                    )
                })
                .collect(),
        }
    }
    pub fn get(&self, addr: Addr) -> Option<PublicIdentity> {
        self.entries.get(&addr).map(|e| e.public)
    }
    pub fn contains(&self, addr: Addr) -> bool {
        self.entries.contains_key(&addr)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    fn verifying(&self, addr: Addr) -> Result<VerifyingKey, CryptoError> {
        let e = self
            .entries
            .get(&addr)
            .ok_or(CryptoError::UnknownPeer(addr))?;
        e.verifying
            .get_or_init(|| VerifyingKey::from_bytes(&e.public.sign).ok())
            .ok_or(CryptoError::BadKey(addr))
    }
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Directory({} entries)", self.entries.len())
    }
}

/// A peer this endpoint was told about with [`Crypto::add_peer`] or learnt
/// with [`Crypto::connect_peer`].
#[derive(Clone)]
struct Peer {
    public: PublicIdentity,
    verifying: VerifyingKey,
}

/// One endpoint's keys and the public keys of its peers.
///
/// A clone is the same endpoint: same keys, same MAC keys derived so far,
/// the same directory (shared), a copy of the meter. The fuzz targets build
/// one per endpoint with every MAC key derived and clone it per input.
#[derive(Clone)]
pub struct Crypto {
    me: Addr,
    identity: Identity,
    /// Computed on first use (an X25519 base-point multiplication).
    public: OnceCell<PublicIdentity>,
    mode: CryptoMode,
    peers: BTreeMap<Addr, Peer>,
    /// Peers learnt from their connections (clients): bounded when idle.
    learnt: Leases<Addr, Peer>,
    directory: Option<Arc<Directory>>,
    /// Pairwise MAC keys derived so far (keyed HMAC state, ready to clone).
    macs: RefCell<BTreeMap<Addr, HmacSha256>>,
    /// Raw ed25519 keys decompressed by [`Crypto::verify_keyed`] (None: not
    /// a usable key), most recently used kept: decompressing costs about a
    /// fifth of a verification, and the same accounts sign again and again.
    keyed: RefCell<lru::LruCache<[u8; 32], Option<VerifyingKey>>>,
    meter: Cell<Meter>,
}

/// Raw keys [`Crypto::verify_keyed`] keeps decompressed (about 200 bytes
/// each with the cache's own nodes: under 1 MiB).
pub const KEYED_CACHE: usize = 4096;

type HmacSha256 = Hmac<Sha256>;

/// Upper bound on the bytes one learnt peer holds: its entry (public keys,
/// decompressed ed25519 key), its derived MAC state, and the map and LRU
/// nodes around them (checked in a test). A cache of 4,096 idle clients is
/// thus under 4 MiB.
pub const LEARNT_PEER_BYTES: usize = 1024;

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
            public: OnceCell::new(),
            identity,
            mode,
            peers: BTreeMap::new(),
            learnt: Leases::unbounded(),
            directory: None,
            macs: RefCell::new(BTreeMap::new()),
            keyed: RefCell::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(KEYED_CACHE).expect("non-zero"),
            )),
            meter: Cell::new(Meter::default()),
        }
    }

    /// `pk` decompressed, if it is a usable (non-weak) ed25519 key; cached.
    fn keyed_key(&self, pk: &[u8; 32]) -> Option<VerifyingKey> {
        let mut cache = self.keyed.borrow_mut();
        if let Some(k) = cache.get(pk) {
            return *k;
        }
        let k = VerifyingKey::from_bytes(pk).ok().filter(|k| !k.is_weak());
        cache.put(*pk, k);
        k
    }
    /// An endpoint that knows every peer in `directory` (and may still be told
    /// about more with [`Crypto::add_peer`]).
    pub fn with_directory(
        me: Addr,
        identity: Identity,
        mode: CryptoMode,
        directory: Arc<Directory>,
    ) -> Self {
        let mut c = Self::new(me, identity, mode);
        c.directory = Some(directory);
        c
    }
    pub fn me(&self) -> Addr {
        self.me
    }
    pub fn mode(&self) -> CryptoMode {
        self.mode
    }
    pub fn public(&self) -> PublicIdentity {
        *self.public.get_or_init(|| self.identity.public())
    }
    /// Learn a peer's public identity. The ed25519 key is checked now; the
    /// pairwise MAC key is derived on first use. A peer told about this way
    /// takes precedence over its directory entry.
    pub fn add_peer(&mut self, peer: Addr, pk: PublicIdentity) -> Result<(), CryptoError> {
        let verifying =
            VerifyingKey::from_bytes(&pk.sign).map_err(|_| CryptoError::BadKey(peer))?;
        self.macs.get_mut().remove(&peer);
        self.peers.insert(
            peer,
            Peer {
                public: pk,
                verifying,
            },
        );
        Ok(())
    }
    /// A connection of `peer` (a client this endpoint was not told about)
    /// came up with key `pk`: the peer is known until its last connection
    /// ends, then cached (see the module docs). A peer told about with
    /// [`Crypto::add_peer`] is left as it is.
    pub fn connect_peer(&mut self, peer: Addr, pk: PublicIdentity) -> Result<(), CryptoError> {
        if self.peers.contains_key(&peer) {
            return Ok(());
        }
        let verifying = match self.learnt.get(&peer) {
            Some(p) if p.public == pk => p.verifying,
            _ => VerifyingKey::from_bytes(&pk.sign).map_err(|_| CryptoError::BadKey(peer))?,
        };
        let new = Peer {
            public: pk,
            verifying,
        };
        if self
            .learnt
            .open(peer, new)
            .is_some_and(|old| old.public != pk)
        {
            self.macs.get_mut().remove(&peer);
        }
        Ok(())
    }
    /// One connection of a peer learnt with [`Crypto::connect_peer`] ended;
    /// after its last, the peer may be evicted.
    pub fn disconnect_peer(&mut self, peer: Addr) {
        for (gone, _) in self.learnt.close(&peer) {
            self.macs.get_mut().remove(&gone);
        }
    }
    /// Keep at most `idle` learnt peers without a connection (evicting the
    /// least recently disconnected beyond it now and later).
    pub fn set_peer_cache(&mut self, idle: usize) {
        for (gone, _) in self.learnt.set_bound(idle) {
            self.macs.get_mut().remove(&gone);
        }
    }
    /// Learnt peers: (with a connection, cached without one).
    pub fn learnt_peers(&self) -> (usize, usize) {
        (self.learnt.open_len(), self.learnt.idle_len())
    }
    /// Whether this endpoint has `peer`'s public keys (told, learnt or from
    /// its directory).
    pub fn knows(&self, peer: Addr) -> bool {
        self.peers.contains_key(&peer)
            || self.learnt.contains(&peer)
            || self.directory.as_ref().is_some_and(|d| d.contains(peer))
    }
    /// Derive now the pairwise MAC key of every peer known (told or in the
    /// directory) instead of on first use; nothing is counted in the meter.
    pub fn derive_mac_keys(&self) {
        let told = self.peers.keys();
        let listed = self.directory.iter().flat_map(|d| d.entries.keys());
        for &peer in told.chain(listed) {
            if peer != self.me {
                self.mac_state(peer).expect("a known peer");
            }
        }
    }
    /// Pairwise MAC keys derived so far (each cost one X25519 exchange in real mode).
    pub fn derived_mac_keys(&self) -> usize {
        self.macs.borrow().len()
    }
    fn peer(&self, peer: Addr) -> Option<&Peer> {
        self.peers.get(&peer).or_else(|| self.learnt.get(&peer))
    }
    fn peer_public(&self, peer: Addr) -> Option<PublicIdentity> {
        match self.peer(peer) {
            Some(p) => Some(p.public),
            None => self.directory.as_ref()?.get(peer),
        }
    }
    /// The keyed HMAC state shared with `peer`, derived on first use.
    fn mac_state(&self, peer: Addr) -> Result<HmacSha256, CryptoError> {
        if let Some(h) = self.macs.borrow().get(&peer) {
            return Ok(h.clone());
        }
        let pk = self
            .peer_public(peer)
            .ok_or(CryptoError::UnknownPeer(peer))?;
        let key = self.pairwise_key(peer, &pk);
        let h = HmacSha256::new_from_slice(&key).expect("hmac takes any key length");
        self.macs.borrow_mut().insert(peer, h.clone());
        Ok(h)
    }
    fn pairwise_key(&self, peer: Addr, pk: &PublicIdentity) -> [u8; 32] {
        let (lo, hi) = if self.me <= peer {
            (self.me, peer)
        } else {
            (peer, self.me)
        };
        let ids = format!("{lo:?}|{hi:?}");
        match self.mode {
            CryptoMode::Real => {
                let shared = self
                    .identity
                    .dh
                    .diffie_hellman(&x25519_dalek::PublicKey::from(pk.dh));
                let mut material = shared.as_bytes().to_vec();
                material.extend_from_slice(ids.as_bytes());
                blake3::derive_key("byzscale pairwise mac", &material)
            }
            CryptoMode::Modeled => {
                // a label, not a secret: see the module docs
                let mine = self.my_sign_key();
                let (a, b) = if self.me <= peer {
                    (&mine, &pk.sign)
                } else {
                    (&pk.sign, &mine)
                };
                let mut material = ids.into_bytes();
                material.extend_from_slice(a);
                material.extend_from_slice(b);
                blake3::derive_key("byzscale modeled pairwise mac", &material)
            }
        }
    }
    /// This endpoint's ed25519 public key (cached by the signing key).
    fn my_sign_key(&self) -> [u8; 32] {
        AsRef::<VerifyingKey>::as_ref(&self.identity.signing).to_bytes()
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
            CryptoMode::Modeled => Signature(modeled_sig(&self.my_sign_key(), msg)),
        }
    }

    fn verifying_key(&self, signer: Addr) -> Result<VerifyingKey, CryptoError> {
        if signer == self.me {
            // SigningKey caches its verifying key.
            return Ok(*AsRef::<VerifyingKey>::as_ref(&self.identity.signing));
        }
        if let Some(p) = self.peer(signer) {
            return Ok(p.verifying);
        }
        match &self.directory {
            Some(d) => d.verifying(signer),
            None => Err(CryptoError::UnknownPeer(signer)),
        }
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
                    keys.push(self.verifying_key(*a)?);
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

    /// Check signatures under raw ed25519 public keys (keys that are not
    /// endpoints of the deployment, such as AT2 account keys): whether each
    /// item verifies, in order. Real mode first tries ed25519 batch
    /// verification of all of them and, only if that fails, checks each one
    /// alone to find the bad ones; a key that is not a valid curve point or
    /// a weak (small-order) key never verifies. Modeled mode checks the
    /// keyed BLAKE3 stand-in ([`sign_with`]).
    pub fn verify_keyed(&self, items: &[(&[u8; 32], &[u8], &Signature)]) -> Vec<bool> {
        self.bump(|m| m.verifies += items.len() as u64);
        match self.mode {
            CryptoMode::Modeled => items
                .iter()
                .map(|(pk, m, s)| modeled_sig(pk, m) == s.0)
                .collect(),
            CryptoMode::Real => {
                let keys: Vec<Option<VerifyingKey>> =
                    items.iter().map(|(pk, _, _)| self.keyed_key(pk)).collect();
                if items.len() > 1 && keys.iter().all(Option::is_some) {
                    let msgs: Vec<&[u8]> = items.iter().map(|(_, m, _)| *m).collect();
                    let sigs: Vec<ed25519_dalek::Signature> =
                        items.iter().map(|(_, _, s)| s.0).collect();
                    let vks: Vec<VerifyingKey> = keys.iter().map(|k| k.expect("checked")).collect();
                    if ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok() {
                        return vec![true; items.len()];
                    }
                }
                items
                    .iter()
                    .zip(&keys)
                    .map(|((_, m, s), k)| k.is_some_and(|k| k.verify(m, &s.0).is_ok()))
                    .collect()
            }
        }
    }

    /// HMAC-SHA256 of `msg` under the key shared with `peer`.
    pub fn mac(&self, peer: Addr, msg: &[u8]) -> Result<Mac, CryptoError> {
        self.bump(|m| m.macs += 1);
        let mut h = self.mac_state(peer)?;
        h.update(msg);
        Ok(Mac(h.finalize().into_bytes().into()))
    }

    /// Constant-time check of a tag from `peer`.
    pub fn verify_mac(&self, peer: Addr, msg: &[u8], tag: &Mac) -> bool {
        self.bump(|m| m.macs += 1);
        let Ok(mut h) = self.mac_state(peer) else {
            return false;
        };
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
    fn keyed_signatures_verify_in_batches_and_find_the_bad_one() {
        let (a, _) = pair();
        let k1 = SigningKey::from_bytes(&[7; 32]);
        let k2 = SigningKey::from_bytes(&[8; 32]);
        let (p1, p2) = (k1.verifying_key().to_bytes(), k2.verifying_key().to_bytes());
        for mode in [CryptoMode::Real, CryptoMode::Modeled] {
            let s1 = sign_with(&k1, mode, b"one");
            let s2 = sign_with(&k2, mode, b"two");
            let c = Crypto::new(a.me(), Identity::from_seed([1; 32]), mode);
            let ok = c.verify_keyed(&[(&p1, b"one".as_slice(), &s1), (&p2, b"two", &s2)]);
            assert_eq!(ok, vec![true, true], "{mode:?}");
            // the second signed by the wrong key, the third a wrong message
            let bad = c.verify_keyed(&[
                (&p1, b"one".as_slice(), &s1),
                (&p1, b"two", &s2),
                (&p2, b"tw0", &s2),
            ]);
            assert_eq!(bad, vec![true, false, false], "{mode:?}");
            assert_eq!(c.take_meter().verifies, 5);
        }
        // not a curve point, and the identity (a weak key): never valid
        let c = Crypto::new(a.me(), Identity::from_seed([1; 32]), CryptoMode::Real);
        let s1 = sign_with(&k1, CryptoMode::Real, b"one");
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let not_a_point = [0xffu8; 32];
        assert_eq!(
            c.verify_keyed(&[
                (&identity, b"one".as_slice(), &s1),
                (&not_a_point, b"one", &s1)
            ]),
            vec![false, false]
        );
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

    /// The pairwise key as the eager code derived it in `add_peer`.
    fn eager_key(me: Addr, mine: &Identity, peer: Addr, theirs: &PublicIdentity) -> [u8; 32] {
        let shared = mine
            .dh
            .diffie_hellman(&x25519_dalek::PublicKey::from(theirs.dh));
        let (lo, hi) = if me <= peer { (me, peer) } else { (peer, me) };
        let mut material = shared.as_bytes().to_vec();
        material.extend_from_slice(format!("{lo:?}|{hi:?}").as_bytes());
        blake3::derive_key("byzscale pairwise mac", &material)
    }

    #[test]
    fn lazy_keys_give_the_eager_tags() {
        let (a, b) = pair();
        assert_eq!(a.derived_mac_keys(), 0, "nothing derived before first use");
        let ia = Identity::from_seed([1; 32]);
        let ib = Identity::from_seed([2; 32]);
        for msg in [b"x".as_slice(), b"a longer message"] {
            let mut h =
                HmacSha256::new_from_slice(&eager_key(a.me(), &ia, b.me(), &ib.public())).unwrap();
            h.update(msg);
            let eager = Mac(h.finalize().into_bytes().into());
            assert_eq!(a.mac(b.me(), msg).unwrap(), eager);
            assert!(b.verify_mac(a.me(), msg, &eager));
        }
        assert_eq!((a.derived_mac_keys(), b.derived_mac_keys()), (1, 1));
    }

    #[test]
    fn warmed_clones_agree_with_lazy_derivation() {
        let ids: Vec<(Addr, Identity)> = (0..4).map(node).collect();
        let dir = Arc::new(Directory::new(ids.iter().map(|(a, i)| (*a, i.public()))));
        let lazy: Vec<Crypto> = ids
            .iter()
            .map(|(a, i)| Crypto::with_directory(*a, i.clone(), CryptoMode::Real, dir.clone()))
            .collect();
        let mut warm = Crypto::with_directory(ids[0].0, ids[0].1.clone(), CryptoMode::Real, dir);
        let (told, told_id) = node(7);
        warm.add_peer(told, told_id.public()).unwrap();
        warm.derive_mac_keys();
        assert_eq!(
            warm.derived_mac_keys(),
            4,
            "three directory peers and one told"
        );
        assert_eq!(
            warm.take_meter(),
            Meter::default(),
            "warming is not metered"
        );
        let clone = warm.clone();
        assert_eq!(clone.derived_mac_keys(), 4);
        for (peer, c) in ids.iter().zip(&lazy).skip(1) {
            let tag = clone.mac(peer.0, b"m").unwrap();
            assert!(c.verify_mac(ids[0].0, b"m", &tag));
            assert_eq!(tag, lazy[0].mac(peer.0, b"m").unwrap());
        }
        let mut told_side = Crypto::new(told, told_id, CryptoMode::Real);
        told_side.add_peer(ids[0].0, ids[0].1.public()).unwrap();
        assert!(told_side.verify_mac(ids[0].0, b"m", &clone.mac(told, b"m").unwrap()));
        let sig = clone.sign(b"s");
        lazy[1].verify(ids[0].0, b"s", &sig).unwrap();
        assert_eq!(
            warm.derived_mac_keys(),
            4,
            "the template is unchanged by its clone"
        );
    }

    fn node(i: u32) -> (Addr, Identity) {
        (
            Addr::Node(NodeId(i)),
            Identity::from_seed([10 + i as u8; 32]),
        )
    }

    #[test]
    fn directory_backed_crypto_checks_macs_and_signatures() {
        for mode in [CryptoMode::Real, CryptoMode::Modeled] {
            let ids: Vec<(Addr, Identity)> = (0..4).map(node).collect();
            let dir = Arc::new(Directory::new(ids.iter().map(|(a, i)| (*a, i.public()))));
            assert_eq!(dir.len(), 4);
            let c: Vec<Crypto> = ids
                .iter()
                .map(|(a, i)| Crypto::with_directory(*a, i.clone(), mode, dir.clone()))
                .collect();
            let (a0, a2) = (ids[0].0, ids[2].0);
            assert!(c[2].knows(a0) && !c[2].knows(Addr::Node(NodeId(9))));
            let tag = c[0].mac(a2, b"m").unwrap();
            assert!(c[2].verify_mac(a0, b"m", &tag));
            assert!(!c[2].verify_mac(a0, b"n", &tag));
            // a tag made for another receiver does not verify here
            let other = c[0].mac(ids[1].0, b"m").unwrap();
            assert!(!c[2].verify_mac(a0, b"m", &other));
            // a node told about its peer one by one agrees with the directory
            let mut told = Crypto::new(a2, ids[2].1.clone(), mode);
            told.add_peer(a0, ids[0].1.public()).unwrap();
            assert!(told.verify_mac(a0, b"m", &tag));
            let sig = c[0].sign(b"s");
            assert!(c[3].verify(a0, b"s", &sig).is_ok());
            assert_eq!(c[3].verify(a0, b"t", &sig), Err(CryptoError::BadSignature));
            assert!(c[3]
                .verify_batch(&[(a0, b"s".as_slice(), &sig), (a0, b"s".as_slice(), &sig)])
                .is_ok());
            assert_eq!(
                c[1].derived_mac_keys(),
                0,
                "only the pairs used are derived"
            );
        }
    }

    #[test]
    fn unknown_peers_are_still_errors() {
        let (a, ia) = node(0);
        let (b, ib) = node(1);
        let stranger = Addr::Node(NodeId(7));
        let dir = Arc::new(Directory::new([(a, ia.public()), (b, ib.public())]));
        let c = Crypto::with_directory(a, ia.clone(), CryptoMode::Real, dir);
        assert_eq!(
            c.mac(stranger, b"m"),
            Err(CryptoError::UnknownPeer(stranger))
        );
        assert!(!c.verify_mac(stranger, b"m", &Mac::default()));
        let sig = c.sign(b"m");
        assert_eq!(
            c.verify(stranger, b"m", &sig),
            Err(CryptoError::UnknownPeer(stranger))
        );
        assert_eq!(c.derived_mac_keys(), 0);
        // without a directory, too
        let plain = Crypto::new(b, ib, CryptoMode::Real);
        assert_eq!(plain.mac(a, b"m"), Err(CryptoError::UnknownPeer(a)));
        // a directory entry whose ed25519 key does not decompress
        let mut bad = ia.public();
        bad.sign = (0u8..=255)
            .map(|k| {
                let mut b = [k; 32];
                b[31] &= 0x7f;
                b
            })
            .find(|b| VerifyingKey::from_bytes(b).is_err())
            .expect("about half of all points do not decompress");
        let d = Arc::new(Directory::new([(stranger, bad)]));
        let c = Crypto::with_directory(a, ia, CryptoMode::Real, d);
        assert_eq!(
            c.verify(stranger, b"m", &sig),
            Err(CryptoError::BadKey(stranger))
        );
    }

    #[test]
    fn learnt_peers_are_kept_while_connected_and_cached_up_to_the_bound() {
        let (n, inode) = node(0);
        let mut c = Crypto::new(n, inode, CryptoMode::Real);
        c.set_peer_cache(2);
        let clients: Vec<(Addr, Identity)> = (0..5u8)
            .map(|i| {
                let id = Identity::from_seed([100 + i; 32]);
                (Addr::Client(crate::ClientId::of_key(&id.public())), id)
            })
            .collect();
        let tag = |i: usize| {
            let (a, id) = &clients[i];
            let mut cl = Crypto::new(*a, id.clone(), CryptoMode::Real);
            cl.add_peer(n, node(0).1.public()).unwrap();
            cl.mac(n, b"req").unwrap()
        };
        for (a, id) in &clients {
            c.connect_peer(*a, id.public()).unwrap();
        }
        for (i, (a, _)) in clients.iter().enumerate() {
            assert!(c.verify_mac(*a, b"req", &tag(i)));
        }
        assert_eq!((c.learnt_peers(), c.derived_mac_keys()), ((5, 0), 5));
        // a second connection of client 0 keeps it through the first one's end
        c.connect_peer(clients[0].0, clients[0].1.public()).unwrap();
        for (a, _) in &clients {
            c.disconnect_peer(*a);
        }
        // 0 still connected; of 1..4 the two that left last are cached
        assert_eq!((c.learnt_peers(), c.derived_mac_keys()), ((1, 2), 3));
        assert!(c.knows(clients[0].0) && c.verify_mac(clients[0].0, b"req", &tag(0)));
        assert!(!c.knows(clients[1].0) && !c.knows(clients[2].0));
        assert!(c.knows(clients[3].0) && c.knows(clients[4].0));
        // an evicted client's MACs and signatures fail, as an unknown one's
        assert!(!c.verify_mac(clients[1].0, b"req", &tag(1)));
        let sig = Crypto::new(clients[1].0, clients[1].1.clone(), CryptoMode::Real).sign(b"r");
        assert_eq!(
            c.verify(clients[1].0, b"r", &sig),
            Err(CryptoError::UnknownPeer(clients[1].0))
        );
        // until it reconnects
        c.connect_peer(clients[1].0, clients[1].1.public()).unwrap();
        assert!(c.verify_mac(clients[1].0, b"req", &tag(1)));
        assert!(c.verify(clients[1].0, b"r", &sig).is_ok());
        // a told peer is not a learnt one
        let (told, itold) = node(1);
        c.add_peer(told, itold.public()).unwrap();
        c.connect_peer(told, itold.public()).unwrap();
        assert_eq!(c.learnt_peers(), (2, 2));
    }

    #[test]
    fn without_a_bound_learnt_peers_stay() {
        let (n, inode) = node(0);
        let mut c = Crypto::new(n, inode, CryptoMode::Real);
        for i in 0..50u8 {
            let a = Addr::Client(crate::ClientId(i as u64 + 1));
            c.connect_peer(a, Identity::from_seed([i; 32]).public())
                .unwrap();
            c.disconnect_peer(a);
        }
        assert_eq!(c.learnt_peers(), (0, 50));
    }

    #[test]
    fn a_learnt_peer_fits_its_byte_bound() {
        let ptr = std::mem::size_of::<usize>();
        // LRU node (entry, two links) and its hash-map slot (key ref, node
        // pointer, control byte); the MAC state in a B-tree at least half full
        let entry = std::mem::size_of::<(Addr, Peer)>() + 2 * ptr + 2 * ptr + 1;
        let mac = 2 * std::mem::size_of::<(Addr, HmacSha256)>();
        assert!(
            entry + mac <= LEARNT_PEER_BYTES,
            "{entry} + {mac} bytes per learnt peer"
        );
    }

    #[test]
    fn crypto_can_move_to_another_thread() {
        fn send<T: Send>(_: &T) {}
        let (a, _) = pair();
        send(&a);
    }

    #[test]
    fn identity_round_trips_through_bytes() {
        let i = Identity::from_seed([5; 32]);
        let j = Identity::from_bytes(&i.to_bytes());
        assert_eq!(i.public(), j.public());
    }
}
