//! ThreshSign, Destiny's trusted subsystem (paper §4; digest §2.2), emulated
//! in software.
//!
//! **This is an emulation, not an enclave.** The paper runs ThreshSign inside
//! Intel SGX so that a Byzantine host cannot make its counters sign two
//! messages for one value. Here [`SoftEnclave`] is ordinary memory of the
//! replica process: its secrets are private fields with no accessor, so
//! correct replica code cannot reach them, but a Byzantine *process* could.
//! The simulator's Byzantine replicas get a [`SoftEnclave`] like everyone
//! else (the hybrid fault model: the subsystem only crashes), and
//! [`Enforcement::Off`] turns its counter checks off to show what the trusted
//! counter buys (a checker must then catch equivocation).
//!
//! | paper (digest §2.2) | here |
//! |---|---|
//! | one enclave, several ThreshSign instances (σ_n per D-instance, τ for O) | [`Instance`], one [`KeyShare`] each, provisioned by [`SoftEnclave::provision`] |
//! | named counters tc with values tv | [`Counter`], [`SoftEnclave::counter`] |
//! | Independent Counter Signature Share (m, tc, tv'): only if tv' > tv | [`TrustedSubsystem::independent_share`] → [`CounterShare`] |
//! | Aggregate Signature Shares (outside the enclave) | [`aggregate`] → [`CounterSig`] |
//! | Verify Signature (group public key) | [`verify`] |
//! | Continuing Counter Certificate (m, tc, tv, tv'): only if tv' ≥ tv, a MAC | [`TrustedSubsystem::continuing_certificate`] → [`ContinuingCert`] |
//! | Verify Certificate (with the secret key, inside) | [`TrustedSubsystem::verify_certificate`] |
//!
//! Decisions where the paper is silent or inconsistent (digest §2.2):
//! - A share signs (instance, counter, tv', digest), not the previous tv, so
//!   that the shares of f+1 replicas whose counters moved differently still
//!   aggregate (the digest's "subtlety").
//! - Only a 32-byte digest enters the subsystem ("serialized signing on
//!   digests only"): Hybster's copying of whole payloads into the enclave is
//!   what capped its throughput (paper §3.5).
//! - The continuing certificate is a MAC (the table; the text also calls it a
//!   share): BLAKE3 keyed with a key every enclave shares, provisioned with
//!   the key shares (the paper provisions through attestation).
//! - Every call into the subsystem is counted ([`SoftEnclave::ecalls`]) so
//!   the simulator's CPU model can charge an ecall's cost.
//! - Rollback: the paper relies on ROTE-style replication for rollback
//!   protection of sealed state. [`SoftEnclave::seal`] authenticates the
//!   counters so the host cannot forge them, but nothing stops it from
//!   restoring an older sealed copy; a restart must unseal the newest.

use std::collections::BTreeMap;

use byzscale_core::crypto::Digest;
use byzscale_core::threshold::{GroupKey, KeyShare, Share, Signature, ThresholdError};
use serde::{Deserialize, Serialize};

/// A ThreshSign instance (σ_n for D-instance n, τ for the ordering
/// instance): one threshold key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Instance(pub u32);

/// A named monotonic counter of an instance (Linear Hybster needs at least
/// agreement, checkpoint and view change).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Counter {
    Agreement,
    Checkpoint,
    ViewChange,
}

impl Counter {
    fn tag(self) -> u8 {
        match self {
            Counter::Agreement => 0,
            Counter::Checkpoint => 1,
            Counter::ViewChange => 2,
        }
    }
}

/// Whether the subsystem enforces its counters (off only to show, in tests
/// and attacked runs, what the trusted counter prevents).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    On,
    Off,
}

/// Why the subsystem refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedError {
    #[error(
        "counter {counter:?} of instance {instance:?} is at {at}: {asked} would not move it {rule}"
    )]
    NotMonotonic {
        instance: Instance,
        counter: Counter,
        at: u64,
        asked: u64,
        rule: &'static str,
    },
    #[error("no key for instance {0:?} in this subsystem")]
    NoInstance(Instance),
    #[error("sealed state does not authenticate")]
    BadSeal,
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
}

/// A replica's share binding `digest` to value `tv` of a counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterShare {
    pub instance: Instance,
    pub counter: Counter,
    pub tv: u64,
    pub share: Share,
}

/// f+1 shares aggregated: a quorum of trusted counters accepted `digest` at
/// `tv` (the commit certificate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSig {
    pub instance: Instance,
    pub counter: Counter,
    pub tv: u64,
    pub sig: Signature,
}

/// One replica's certificate that its counter moved from `from` to `to`
/// with `digest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinuingCert {
    pub replica: u32,
    pub instance: Instance,
    pub counter: Counter,
    pub from: u64,
    pub to: u64,
    pub mac: [u8; 32],
}

/// What replica code may ask of its trusted subsystem. Nothing here returns
/// a secret.
pub trait TrustedSubsystem {
    /// The Independent Counter Signature Share: only if `tv > ` the
    /// counter's value; sets the counter to `tv`.
    fn independent_share(
        &mut self,
        instance: Instance,
        counter: Counter,
        tv: u64,
        digest: &Digest,
    ) -> Result<CounterShare, TrustedError>;

    /// The Continuing Counter Certificate: only if `tv ≥` the counter's
    /// value; sets the counter to `tv`.
    fn continuing_certificate(
        &mut self,
        instance: Instance,
        counter: Counter,
        tv: u64,
        digest: &Digest,
    ) -> Result<ContinuingCert, TrustedError>;

    /// Whether `cert` (from any replica's subsystem) moves its counter with
    /// `digest` (needs the shared secret: inside the subsystem).
    fn verify_certificate(&mut self, cert: &ContinuingCert, digest: &Digest) -> bool;
}

/// The bytes a share signs: domain, instance, counter, value, digest.
fn share_bytes(instance: Instance, counter: Counter, tv: u64, digest: &Digest) -> Vec<u8> {
    let mut b = b"byzscale/dqbft/threshsign/v1".to_vec();
    b.extend(instance.0.to_le_bytes());
    b.push(counter.tag());
    b.extend(tv.to_le_bytes());
    b.extend(digest);
    b
}

/// Aggregates shares of one (instance, counter, tv) for `digest` (outside
/// the subsystem: public keys only). Shares for another counter value are
/// ignored; members whose shares fail are in the error when too few remain.
pub fn aggregate<'a>(
    key: &GroupKey,
    digest: &Digest,
    instance: Instance,
    counter: Counter,
    tv: u64,
    shares: impl IntoIterator<Item = &'a CounterShare>,
) -> Result<(CounterSig, Vec<u32>), TrustedError> {
    let matching = shares
        .into_iter()
        .filter(|s| (s.instance, s.counter, s.tv) == (instance, counter, tv))
        .map(|s| &s.share);
    let combined = key.combine(&share_bytes(instance, counter, tv, digest), matching)?;
    let sig = CounterSig {
        instance,
        counter,
        tv,
        sig: combined.signature,
    };
    Ok((sig, combined.invalid))
}

/// Verify Signature: a quorum of trusted counters bound `digest` to `sig.tv`.
pub fn verify(key: &GroupKey, sig: &CounterSig, digest: &Digest) -> bool {
    key.verify(
        &share_bytes(sig.instance, sig.counter, sig.tv, digest),
        &sig.sig,
    )
}

/// The software ThreshSign of one replica.
pub struct SoftEnclave {
    replica: u32,
    keys: BTreeMap<Instance, KeyShare>,
    mac_key: [u8; 32],
    counters: BTreeMap<(Instance, Counter), u64>,
    enforcement: Enforcement,
    ecalls: u64,
}

impl std::fmt::Debug for SoftEnclave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftEnclave")
            .field("replica", &self.replica)
            .field("instances", &self.keys.keys().collect::<Vec<_>>())
            .field("counters", &self.counters)
            .field("ecalls", &self.ecalls)
            .finish_non_exhaustive()
    }
}

/// Sealed counters: what a restart gives back to [`SoftEnclave::unseal`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    counters: Vec<((Instance, Counter), u64)>,
    mac: [u8; 32],
}

impl SoftEnclave {
    /// Provisioning (the paper: attestation by the vendor): this replica's
    /// key share of each instance and the MAC key all enclaves share.
    pub fn provision(
        replica: u32,
        keys: BTreeMap<Instance, KeyShare>,
        mac_key: [u8; 32],
        enforcement: Enforcement,
    ) -> SoftEnclave {
        SoftEnclave {
            replica,
            keys,
            mac_key,
            counters: BTreeMap::new(),
            enforcement,
            ecalls: 0,
        }
    }

    /// A counter's value (0 before its first use).
    pub fn counter(&self, instance: Instance, counter: Counter) -> u64 {
        self.counters
            .get(&(instance, counter))
            .copied()
            .unwrap_or(0)
    }

    /// Calls made into the subsystem (for the CPU model).
    pub fn ecalls(&self) -> u64 {
        self.ecalls
    }

    /// Moves a counter to `tv` if the rule allows it (strict: `tv > at`;
    /// continuing: `tv ≥ at`), or anywhere with enforcement off. Returns the
    /// value it had.
    fn advance(
        &mut self,
        instance: Instance,
        counter: Counter,
        tv: u64,
        strict: bool,
    ) -> Result<u64, TrustedError> {
        self.ecalls += 1;
        if !self.keys.contains_key(&instance) {
            return Err(TrustedError::NoInstance(instance));
        }
        let at = self.counter(instance, counter);
        let ok = if strict { tv > at } else { tv >= at };
        if !ok && self.enforcement == Enforcement::On {
            let rule = if strict {
                "forward"
            } else {
                "forward or keep it"
            };
            return Err(TrustedError::NotMonotonic {
                instance,
                counter,
                at,
                asked: tv,
                rule,
            });
        }
        self.counters.insert((instance, counter), tv.max(at));
        Ok(at)
    }

    fn cert_mac(&self, c: &ContinuingCert, digest: &Digest) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.mac_key);
        h.update(b"byzscale/dqbft/continuing/v1");
        h.update(&c.replica.to_le_bytes());
        h.update(&share_bytes(c.instance, c.counter, c.to, digest));
        h.update(&c.from.to_le_bytes());
        *h.finalize().as_bytes()
    }

    /// The counters, authenticated with the enclave's key, for a restart.
    pub fn seal(&self) -> Sealed {
        let counters: Vec<_> = self.counters.iter().map(|(k, v)| (*k, *v)).collect();
        let mac = self.seal_mac(&counters);
        Sealed { counters, mac }
    }

    fn seal_mac(&self, counters: &[((Instance, Counter), u64)]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.mac_key);
        h.update(b"byzscale/dqbft/seal/v1");
        h.update(&self.replica.to_le_bytes());
        for ((i, c), v) in counters {
            h.update(&i.0.to_le_bytes());
            h.update(&[c.tag()]);
            h.update(&v.to_le_bytes());
        }
        *h.finalize().as_bytes()
    }

    /// Restores sealed counters after a restart; refuses a forged copy.
    pub fn unseal(&mut self, sealed: &Sealed) -> Result<(), TrustedError> {
        self.ecalls += 1;
        if self.seal_mac(&sealed.counters) != sealed.mac {
            return Err(TrustedError::BadSeal);
        }
        self.counters = sealed.counters.iter().copied().collect();
        Ok(())
    }
}

impl TrustedSubsystem for SoftEnclave {
    fn independent_share(
        &mut self,
        instance: Instance,
        counter: Counter,
        tv: u64,
        digest: &Digest,
    ) -> Result<CounterShare, TrustedError> {
        self.advance(instance, counter, tv, true)?;
        let share = self.keys[&instance].sign(&share_bytes(instance, counter, tv, digest));
        Ok(CounterShare {
            instance,
            counter,
            tv,
            share,
        })
    }

    fn continuing_certificate(
        &mut self,
        instance: Instance,
        counter: Counter,
        tv: u64,
        digest: &Digest,
    ) -> Result<ContinuingCert, TrustedError> {
        let from = self.advance(instance, counter, tv, false)?;
        let mut cert = ContinuingCert {
            replica: self.replica,
            instance,
            counter,
            from,
            to: tv,
            mac: [0; 32],
        };
        cert.mac = self.cert_mac(&cert, digest);
        Ok(cert)
    }

    fn verify_certificate(&mut self, cert: &ContinuingCert, digest: &Digest) -> bool {
        self.ecalls += 1;
        cert.from <= cert.to && self.cert_mac(cert, digest) == cert.mac
    }
}

#[cfg(test)]
mod tests;
