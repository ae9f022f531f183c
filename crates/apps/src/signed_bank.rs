//! A deterministic bank whose accounts are ed25519 public keys and whose
//! transfers their owners sign: the bank with AT2's guarantees, for comparing
//! the two like for like (`byzscale bench-at2 --bank signed`).
//!
//! | op | effect | reply |
//! |---|---|---|
//! | `Transfer { transfer, sig }` | move `amount` if `sig` is the owner's, `seq` is the next and `from` has it | `Transferred`, or an error below |
//! | `Account { account }` (read-only) | — | `Account { balance, next_seq }`, or `UnknownAccount` |
//! | `Total` (read-only) | — | `Total(sum of balances)` |
//!
//! Accounts exist from the genesis the bank is created with
//! ([`SignedBank::new`]) and only there: no operation creates money, and
//! transfers conserve the total (checked by the tests). A transfer is signed
//! by the sender's key over a canonical encoding with its own domain
//! separation ([`BankTransfer::signing_bytes`]), laid out like AT2's (same
//! field order and widths, no dependencies):
//!
//! ```text
//! "byzscale-bank-transfer-v1"  25 ASCII bytes (domain separation)
//! from                         32 bytes: the sender's public key
//! seq                          u64, big-endian: the sender's sequence number (1, 2, ...)
//! to                           32 bytes: the recipient's public key
//! amount                       u64, big-endian
//! ```
//!
//! Each account has a sequence number: a transfer runs only with the next
//! one (`last + 1`), so a replayed or reordered transfer is refused
//! ([`SignedBankError::BadSeq`]); a refused transfer changes nothing, its
//! number included. The order of the checks is fixed: the sender exists,
//! the signature, the number, the recipient exists, the funds.
//!
//! # Verification, deterministic and batched
//!
//! A replica checks every signature itself before applying. The SMR replica
//! hands each decided batch's operations to [`Service::prepare_batch`]
//! before executing them; the bank batch-verifies the signatures of all the
//! transfers in it at once (`Crypto::verify_keyed`: one ed25519 batch
//! verification, each alone only if that fails; decompressed keys cached)
//! and `execute` looks the verdicts up. An operation executed outside a
//! batch is verified alone. ed25519-dalek derives the batch equation's
//! coefficients from its inputs (no randomness), so the verdicts are a
//! function of the batch's bytes: the same at every replica, which sees the
//! same decided batch (also when replaying it from its log).

use std::collections::{BTreeMap, HashMap};

use byzscale_core::codec::{self, CodecError};
use byzscale_core::crypto::{self, Crypto, CryptoMode, Identity, Signature};
use byzscale_core::service::Service;
use byzscale_core::{Addr, NodeId};
use serde::{Deserialize, Serialize};

/// The largest encoded operation [`SignedOp::decode`] accepts.
pub const MAX_OP_LEN: usize = 1024;

/// Domain separation of the transfer signature (not AT2's: a signed bank
/// transfer is never an AT2 transfer, nor the reverse).
pub const TRANSFER_DOMAIN: &[u8; 25] = b"byzscale-bank-transfer-v1";

/// Snapshot magic of the signed bank.
const MAGIC: [u8; 4] = *b"BZSB";

/// An account: its owner's ed25519 public key.
pub type Owner = [u8; 32];

/// A transfer as its owner signs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BankTransfer {
    pub from: Owner,
    /// The sender's sequence number: 1 for its first transfer.
    pub seq: u64,
    pub to: Owner,
    pub amount: u64,
}

impl BankTransfer {
    /// The bytes the owner signs (module docs).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(TRANSFER_DOMAIN.len() + 80);
        b.extend_from_slice(TRANSFER_DOMAIN);
        b.extend_from_slice(&self.from);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.to);
        b.extend_from_slice(&self.amount.to_be_bytes());
        b
    }

    /// The operation transferring `self`, signed with `key` (the owner's
    /// key in a correct client).
    pub fn sign(self, key: &ed25519_dalek::SigningKey) -> SignedOp {
        let sig = crypto::sign_with(key, CryptoMode::Real, &self.signing_bytes());
        SignedOp::Transfer {
            transfer: self,
            sig,
        }
    }
}

/// An operation of the signed bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignedOp {
    /// A transfer with its owner's signature.
    Transfer {
        transfer: BankTransfer,
        sig: Signature,
    },
    /// The balance and next sequence number of `account` (read-only).
    Account { account: Owner },
    /// The sum of all balances (read-only).
    Total,
}

/// Why an operation of the signed bank failed (it changed nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SignedBankError {
    #[error("unknown account {}", hex(.0))]
    UnknownAccount(Owner),
    #[error("bad signature")]
    BadSignature,
    #[error("sequence number {got}, expected {expected}")]
    BadSeq { expected: u64, got: u64 },
    #[error("insufficient funds: balance {balance}, transfer of {amount}")]
    InsufficientFunds { balance: u64, amount: u64 },
    #[error("malformed operation")]
    Malformed,
}

fn hex(o: &Owner) -> String {
    o.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reply of the signed bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignedReply {
    Transferred,
    Account { balance: u64, next_seq: u64 },
    Total(u64),
    Error(SignedBankError),
}

impl SignedOp {
    /// The codec encoding: the bytes a client submits.
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }
    /// Decode operation bytes (at most [`MAX_OP_LEN`]); never panics.
    pub fn decode(bytes: &[u8]) -> Result<SignedOp, CodecError> {
        codec::from_bytes(bytes, MAX_OP_LEN)
    }
    /// Whether the operation never changes state.
    pub fn is_read_only(&self) -> bool {
        !matches!(self, SignedOp::Transfer { .. })
    }
}

impl SignedReply {
    /// The codec encoding: the bytes a replica replies with.
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }
    /// Decode reply bytes; never panics.
    pub fn decode(bytes: &[u8]) -> Result<SignedReply, CodecError> {
        codec::from_bytes(bytes, MAX_OP_LEN)
    }
}

/// An account's state: balance and the last sequence number it used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    balance: u64,
    seq: u64,
}

/// The signed bank service.
pub struct SignedBank {
    accounts: BTreeMap<Owner, Entry>,
    /// Sum of all balances (recomputed on restore).
    total: u64,
    /// Verifies owner signatures (its own identity is never used).
    crypto: Crypto,
    /// The signature verdicts of the batch being executed, by operation
    /// bytes ([`Service::prepare_batch`]); not part of the state.
    verdicts: HashMap<Vec<u8>, bool>,
}

impl SignedBank {
    /// A bank holding `genesis` (owner, balance); an error if an owner is
    /// listed twice or the supply does not fit in `u64`.
    pub fn new(genesis: impl IntoIterator<Item = (Owner, u64)>) -> Result<Self, String> {
        let mut accounts = BTreeMap::new();
        let mut total = 0u64;
        for (owner, balance) in genesis {
            total = total
                .checked_add(balance)
                .ok_or("genesis supply overflows u64")?;
            let e = Entry { balance, seq: 0 };
            if accounts.insert(owner, e).is_some() {
                return Err(format!("genesis lists account {} twice", hex(&owner)));
            }
        }
        let crypto = Crypto::new(
            Addr::Node(NodeId(0)),
            Identity::from_seed([0; 32]),
            CryptoMode::Real,
        );
        Ok(SignedBank {
            accounts,
            total,
            crypto,
            verdicts: HashMap::new(),
        })
    }

    /// The balance of `account`, if it exists.
    pub fn balance(&self, account: &Owner) -> Option<u64> {
        self.accounts.get(account).map(|e| e.balance)
    }

    /// The sum of all balances.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Answer a read-only operation; `None` for a transfer.
    pub fn read(&self, op: &SignedOp) -> Option<SignedReply> {
        match op {
            SignedOp::Account { account } => Some(match self.accounts.get(account) {
                Some(e) => SignedReply::Account {
                    balance: e.balance,
                    next_seq: e.seq + 1,
                },
                None => SignedReply::Error(SignedBankError::UnknownAccount(*account)),
            }),
            SignedOp::Total => Some(SignedReply::Total(self.total)),
            SignedOp::Transfer { .. } => None,
        }
    }

    /// Whether `sig` is `t.from`'s signature of `t`: the verdict of the
    /// batch if [`Service::prepare_batch`] saw `op`, else checked alone.
    fn signed(&self, op: &[u8], t: &BankTransfer, sig: &Signature) -> bool {
        match self.verdicts.get(op) {
            Some(ok) => *ok,
            None => self
                .crypto
                .verify_keyed(&[(&t.from, &t.signing_bytes(), sig)])[0],
        }
    }

    fn transfer(&mut self, t: &BankTransfer, signed: bool) -> Result<SignedReply, SignedBankError> {
        let from = *self
            .accounts
            .get(&t.from)
            .ok_or(SignedBankError::UnknownAccount(t.from))?;
        if !signed {
            return Err(SignedBankError::BadSignature);
        }
        if t.seq != from.seq + 1 {
            return Err(SignedBankError::BadSeq {
                expected: from.seq + 1,
                got: t.seq,
            });
        }
        if !self.accounts.contains_key(&t.to) {
            return Err(SignedBankError::UnknownAccount(t.to));
        }
        if from.balance < t.amount {
            return Err(SignedBankError::InsufficientFunds {
                balance: from.balance,
                amount: t.amount,
            });
        }
        // cannot overflow: every balance is at most the total, which fits
        let e = self.accounts.get_mut(&t.from).expect("checked above");
        e.seq = t.seq;
        e.balance -= t.amount;
        self.accounts.get_mut(&t.to).expect("checked above").balance += t.amount;
        Ok(SignedReply::Transferred)
    }
}

impl Service for SignedBank {
    /// Batch-verify the signatures of the batch's transfers (module docs).
    fn prepare_batch(&mut self, ops: &[&[u8]]) {
        self.verdicts.clear();
        let mut items = Vec::new();
        let mut keys = Vec::new();
        for op in ops {
            if let Ok(SignedOp::Transfer { transfer, sig }) = SignedOp::decode(op) {
                items.push((transfer.from, transfer.signing_bytes(), sig));
                keys.push(op.to_vec());
            }
        }
        let refs: Vec<_> = items.iter().map(|(k, m, s)| (k, m.as_slice(), s)).collect();
        let verdicts = self.crypto.verify_keyed(&refs);
        self.verdicts = keys.into_iter().zip(verdicts).collect();
    }

    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        let reply = match SignedOp::decode(op) {
            Err(_) => SignedReply::Error(SignedBankError::Malformed),
            Ok(SignedOp::Transfer { transfer, sig }) => {
                let signed = self.signed(op, &transfer, &sig);
                self.transfer(&transfer, signed)
                    .unwrap_or_else(SignedReply::Error)
            }
            Ok(read) => self.read(&read).expect("not a transfer"),
        };
        reply.encode()
    }

    /// Answers well-formed read-only operations; `None` otherwise.
    fn query(&self, op: &[u8]) -> Option<Vec<u8>> {
        let op = SignedOp::decode(op).ok()?;
        self.read(&op).map(|r| r.encode())
    }

    /// `"BZSB" | version | [(owner, balance, last seq)]` in owner order.
    fn snapshot(&self) -> Vec<u8> {
        let rows: Vec<(Owner, u64, u64)> = self
            .accounts
            .iter()
            .map(|(o, e)| (*o, e.balance, e.seq))
            .collect();
        crate::snapshot::encode(MAGIC, crate::snapshot::VERSION, &rows)
    }

    /// Accepts only canonical snapshots whose total fits in `u64`; on error
    /// the state is unchanged.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let rows: Vec<(Owner, u64, u64)> =
            crate::snapshot::decode(MAGIC, crate::snapshot::VERSION, snapshot)?;
        if rows.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("malformed signed bank snapshot: accounts not ascending".to_string());
        }
        let total = rows
            .iter()
            .try_fold(0u64, |t, r| t.checked_add(r.1))
            .ok_or("malformed signed bank snapshot: total supply overflows")?;
        self.accounts = rows
            .into_iter()
            .map(|(o, balance, seq)| (o, Entry { balance, seq }))
            .collect();
        self.total = total;
        self.verdicts.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i + 1; 32])
    }
    fn owner(i: u8) -> Owner {
        key(i).verifying_key().to_bytes()
    }
    /// Accounts 0..n with 100 each.
    fn bank(n: u8) -> SignedBank {
        SignedBank::new((0..n).map(|i| (owner(i), 100))).unwrap()
    }
    fn transfer(from: u8, seq: u64, to: u8, amount: u64) -> BankTransfer {
        BankTransfer {
            from: owner(from),
            seq,
            to: owner(to),
            amount,
        }
    }
    fn run(b: &mut SignedBank, op: &SignedOp) -> SignedReply {
        SignedReply::decode(&b.execute(&op.encode())).expect("replies decode")
    }
    fn err(e: SignedBankError) -> SignedReply {
        SignedReply::Error(e)
    }

    #[test]
    fn owner_signed_transfers_run_in_sequence() {
        let mut b = bank(2);
        let t1 = transfer(0, 1, 1, 30).sign(&key(0));
        assert_eq!(run(&mut b, &t1), SignedReply::Transferred);
        let t2 = transfer(0, 2, 1, 70).sign(&key(0));
        assert_eq!(run(&mut b, &t2), SignedReply::Transferred);
        assert_eq!(
            (b.balance(&owner(0)), b.balance(&owner(1))),
            (Some(0), Some(200))
        );
        let acct = SignedOp::Account { account: owner(0) };
        let next = SignedReply::Account {
            balance: 0,
            next_seq: 3,
        };
        assert_eq!(run(&mut b, &acct), next);
        assert_eq!(run(&mut b, &SignedOp::Total), SignedReply::Total(200));
        let t3 = transfer(0, 3, 1, 1).sign(&key(0));
        let poor = SignedBankError::InsufficientFunds {
            balance: 0,
            amount: 1,
        };
        assert_eq!(run(&mut b, &t3), err(poor));
        // refused: its number is still the next
        assert_eq!(run(&mut b, &acct), next);
    }

    #[test]
    fn forged_tampered_and_replayed_transfers_are_refused_and_change_nothing() {
        let mut b = bank(3);
        let good = transfer(0, 1, 1, 10).sign(&key(0));
        let forged = transfer(0, 1, 2, 10).sign(&key(2));
        let SignedOp::Transfer { sig, .. } = good.clone() else {
            unreachable!()
        };
        let tampered = SignedOp::Transfer {
            transfer: transfer(0, 1, 2, 10),
            sig,
        };
        let before = b.snapshot();
        assert_eq!(run(&mut b, &forged), err(SignedBankError::BadSignature));
        assert_eq!(run(&mut b, &tampered), err(SignedBankError::BadSignature));
        assert_eq!(b.snapshot(), before);
        assert_eq!(run(&mut b, &good), SignedReply::Transferred);
        let after = b.snapshot();
        let replay = SignedBankError::BadSeq {
            expected: 2,
            got: 1,
        };
        assert_eq!(run(&mut b, &good), err(replay));
        assert_eq!(b.snapshot(), after);
        // a restored replica refuses the replay too
        let mut c = bank(0);
        c.restore(&after).unwrap();
        assert_eq!(
            run(&mut c, &good),
            err(SignedBankError::BadSeq {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(b.total(), 300);
    }

    #[test]
    fn unknown_accounts_and_malformed_ops() {
        let mut b = bank(1);
        let stranger = transfer(5, 1, 0, 1).sign(&key(5));
        assert_eq!(
            run(&mut b, &stranger),
            err(SignedBankError::UnknownAccount(owner(5)))
        );
        let to_stranger = transfer(0, 1, 5, 1).sign(&key(0));
        assert_eq!(
            run(&mut b, &to_stranger),
            err(SignedBankError::UnknownAccount(owner(5)))
        );
        for bytes in [&[][..], &[9], &[0, 1, 2]] {
            let r = SignedReply::decode(&b.execute(bytes)).unwrap();
            assert_eq!(r, err(SignedBankError::Malformed));
        }
        assert_eq!(b.balance(&owner(0)), Some(100));
        assert!(SignedBank::new([(owner(0), 1), (owner(0), 1)]).is_err());
        assert!(SignedBank::new([(owner(0), u64::MAX), (owner(1), 1)]).is_err());
    }

    /// What executing `ops` replies, with the batch hook or without it.
    fn replies(ops: &[SignedOp], prepare: bool) -> (Vec<SignedReply>, Vec<u8>) {
        let mut b = bank(3);
        let bytes: Vec<Vec<u8>> = ops.iter().map(SignedOp::encode).collect();
        if prepare {
            let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            b.prepare_batch(&refs);
        }
        let r = bytes
            .iter()
            .map(|op| SignedReply::decode(&b.execute(op)).unwrap())
            .collect();
        (r, b.snapshot())
    }

    #[test]
    fn a_batch_verified_at_once_gets_the_verdicts_of_one_by_one_checks() {
        let ops = vec![
            transfer(0, 1, 1, 5).sign(&key(0)),
            transfer(1, 1, 2, 5).sign(&key(0)), // forged
            transfer(1, 1, 2, 7).sign(&key(1)),
            transfer(0, 1, 2, 5).sign(&key(0)), // replayed number
            SignedOp::Total,
            transfer(2, 1, 0, 1).sign(&key(2)),
        ];
        let (batched, snap) = replies(&ops, true);
        assert_eq!((batched.clone(), snap.clone()), replies(&ops, false));
        assert_eq!(batched[1], err(SignedBankError::BadSignature));
        assert!(matches!(
            batched[3],
            SignedReply::Error(SignedBankError::BadSeq { .. })
        ));
        assert_eq!(
            batched
                .iter()
                .filter(|r| **r == SignedReply::Transferred)
                .count(),
            3
        );
        // all good: one batch verification accepts them all
        let good: Vec<SignedOp> = (0..3)
            .map(|i| transfer(i, 1, (i + 1) % 3, 1).sign(&key(i)))
            .collect();
        let (r, _) = replies(&good, true);
        assert!(r.iter().all(|r| *r == SignedReply::Transferred));
    }

    #[test]
    fn snapshot_restore_round_trip_and_garbage() {
        let mut b = bank(2);
        run(&mut b, &transfer(1, 1, 0, 40).sign(&key(1)));
        let snap = b.snapshot();
        let mut c = bank(0);
        c.restore(&snap).unwrap();
        assert_eq!(c.snapshot(), snap);
        assert_eq!((c.total(), c.balance(&owner(0))), (200, Some(140)));
        let overflow = crate::snapshot::encode(
            MAGIC,
            crate::snapshot::VERSION,
            &vec![(owner(0), u64::MAX, 0u64), (owner(1), 1, 0)],
        );
        let mut trailing = snap.clone();
        trailing.push(0);
        for bad in [&[][..], b"BZBK\x01\x00", &overflow, &trailing] {
            assert!(c.restore(bad).is_err());
            assert_eq!(c.snapshot(), snap);
        }
    }

    /// (from, to, amount, signer, seq offset): a transfer signed by
    /// `signer` (the owner if equal to `from`) with the next number plus
    /// the offset (0: in turn; otherwise replayed or ahead).
    fn op() -> impl Strategy<Value = (u8, u8, u64, u8, i8)> {
        (
            0u8..3,
            0u8..4,
            0u64..80,
            0u8..3,
            prop_oneof![4 => Just(0i8), 1 => -1i8..=1],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn replicas_agree_and_money_is_conserved(ops in prop::collection::vec(op(), 0..40)) {
            let (mut a, mut b) = (bank(3), bank(3));
            let mut next = [1u64; 3];
            let mut batch = Vec::new();
            for (from, to, amount, signer, off) in ops {
                let seq = next[from as usize].saturating_add_signed(off.into());
                let op = transfer(from, seq, to, amount).sign(&key(signer));
                let funded = amount <= a.balance(&owner(from)).unwrap();
                let ra = run(&mut a, &op);
                let valid = signer == from && off == 0 && to < 3 && funded;
                prop_assert_eq!(ra == SignedReply::Transferred, valid, "{:?}", ra);
                if ra == SignedReply::Transferred {
                    next[from as usize] += 1;
                }
                batch.push(op.encode());
                prop_assert_eq!(a.total(), 300);
                let sum: u64 = (0..3).map(|i| a.balance(&owner(i)).unwrap()).sum();
                prop_assert_eq!(sum, 300);
            }
            // the same operations as one batch, verified at once
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            b.prepare_batch(&refs);
            for op in &batch {
                b.execute(op);
            }
            prop_assert_eq!(a.snapshot(), b.snapshot());
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut b = bank(2);
            b.prepare_batch(&[&bytes]);
            prop_assert!(SignedReply::decode(&b.execute(&bytes)).is_ok());
            let _ = b.query(&bytes);
            let before = b.snapshot();
            if b.restore(&bytes).is_err() {
                prop_assert_eq!(b.snapshot(), before);
            }
        }
    }
}
