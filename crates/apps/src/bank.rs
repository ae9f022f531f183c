//! A deterministic bank: accounts (`u64` id → `u64` balance) with transfers.
//!
//! | op | effect | reply |
//! |---|---|---|
//! | `Open { account, initial }` | create the account if absent | `Opened`, or `AccountExists` / `SupplyOverflow` |
//! | `Transfer { from, to, amount }` | move `amount` if `from` has it | `Transferred`, or `UnknownAccount` / `InsufficientFunds` |
//! | `Balance { account }` (read-only) | — | `Balance(b)`, or `UnknownAccount` |
//! | `Total` (read-only) | — | `Total(sum of balances)` |
//!
//! Money is only created by `Open`, which is refused if the total supply would exceed
//! `u64::MAX`; hence no balance and no total can overflow, and transfers conserve the
//! total (a property the tests check). A transfer to the same account is allowed and
//! changes nothing. Operations and replies travel as codec encodings of [`BankOp`] and
//! [`BankReply`]; malformed bytes get [`BankError::Malformed`].

use std::collections::BTreeMap;
use std::fmt;

use byzscale_core::codec::{self, CodecError};
use byzscale_core::service::Service;
use serde::{Deserialize, Serialize};

/// The largest encoded operation [`BankOp::decode`] accepts (ops are tiny).
pub const MAX_OP_LEN: usize = 1024;

/// Snapshot magic of the bank.
const MAGIC: [u8; 4] = *b"BZBK";

/// An account id.
pub type AccountId = u64;

/// A bank operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BankOp {
    /// Open `account` with `initial` funds, only if it does not exist.
    Open { account: AccountId, initial: u64 },
    /// Move `amount` from `from` to `to`.
    Transfer {
        from: AccountId,
        to: AccountId,
        amount: u64,
    },
    /// The balance of `account` (read-only).
    Balance { account: AccountId },
    /// The sum of all balances (read-only).
    Total,
}

/// Why a bank operation failed.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, thiserror::Error,
)]
pub enum BankError {
    #[error("account {0} already exists")]
    AccountExists(AccountId),
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    #[error("insufficient funds in account {account}: balance {balance}, transfer of {amount}")]
    InsufficientFunds {
        account: AccountId,
        balance: u64,
        amount: u64,
    },
    #[error("total supply would overflow")]
    SupplyOverflow,
    #[error("malformed operation")]
    Malformed,
}

/// A bank reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BankReply {
    /// The account was opened.
    Opened,
    /// The transfer happened.
    Transferred,
    /// The balance of the account asked about.
    Balance(u64),
    /// The sum of all balances.
    Total(u64),
    /// The operation failed and changed nothing.
    Error(BankError),
}

impl BankOp {
    /// The codec encoding: the bytes a client submits.
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }

    /// Decode operation bytes (at most [`MAX_OP_LEN`]); never panics.
    pub fn decode(bytes: &[u8]) -> Result<BankOp, CodecError> {
        codec::from_bytes(bytes, MAX_OP_LEN)
    }

    /// Whether the operation never changes state (`Balance`, `Total`).
    pub fn is_read_only(&self) -> bool {
        matches!(self, BankOp::Balance { .. } | BankOp::Total)
    }
}

impl BankReply {
    /// The codec encoding: the bytes a replica replies with.
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }

    /// Decode reply bytes; never panics.
    pub fn decode(bytes: &[u8]) -> Result<BankReply, CodecError> {
        codec::from_bytes(bytes, MAX_OP_LEN)
    }
}

impl fmt::Display for BankOp {
    /// `OPEN 1 100`, `TRANSFER 1 2 30`, `BALANCE 1`, `TOTAL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BankOp::Open { account, initial } => write!(f, "OPEN {account} {initial}"),
            BankOp::Transfer { from, to, amount } => write!(f, "TRANSFER {from} {to} {amount}"),
            BankOp::Balance { account } => write!(f, "BALANCE {account}"),
            BankOp::Total => f.write_str("TOTAL"),
        }
    }
}

impl fmt::Display for BankReply {
    /// `OPENED`, `TRANSFERRED`, `(balance) 70`, `(total) 100`, `(error) unknown account 3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BankReply::Opened => f.write_str("OPENED"),
            BankReply::Transferred => f.write_str("TRANSFERRED"),
            BankReply::Balance(b) => write!(f, "(balance) {b}"),
            BankReply::Total(t) => write!(f, "(total) {t}"),
            BankReply::Error(e) => write!(f, "(error) {e}"),
        }
    }
}

/// The bank service; also usable directly as a sequential model via [`Bank::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bank {
    accounts: BTreeMap<AccountId, u64>,
    /// Sum of all balances (kept so `Total` is O(1); recomputed on restore).
    total: u64,
}

impl Bank {
    /// A bank with no accounts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The balance of `account`, if it exists.
    pub fn balance(&self, account: AccountId) -> Option<u64> {
        self.accounts.get(&account).copied()
    }

    /// The sum of all balances.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// All accounts in id order.
    pub fn accounts(&self) -> &BTreeMap<AccountId, u64> {
        &self.accounts
    }

    /// Answer a read-only operation; `None` if `op` is not read-only.
    pub fn read(&self, op: &BankOp) -> Option<BankReply> {
        match *op {
            BankOp::Balance { account } => Some(match self.balance(account) {
                Some(b) => BankReply::Balance(b),
                None => BankReply::Error(BankError::UnknownAccount(account)),
            }),
            BankOp::Total => Some(BankReply::Total(self.total)),
            BankOp::Open { .. } | BankOp::Transfer { .. } => None,
        }
    }

    /// Execute any operation and return its reply. A failed operation changes nothing.
    pub fn apply(&mut self, op: &BankOp) -> BankReply {
        if let Some(reply) = self.read(op) {
            return reply;
        }
        match self.write(op) {
            Ok(reply) => reply,
            Err(e) => BankReply::Error(e),
        }
    }

    fn write(&mut self, op: &BankOp) -> Result<BankReply, BankError> {
        match *op {
            BankOp::Open { account, initial } => {
                if self.accounts.contains_key(&account) {
                    return Err(BankError::AccountExists(account));
                }
                self.total = self
                    .total
                    .checked_add(initial)
                    .ok_or(BankError::SupplyOverflow)?;
                self.accounts.insert(account, initial);
                Ok(BankReply::Opened)
            }
            BankOp::Transfer { from, to, amount } => {
                let balance = self.balance(from).ok_or(BankError::UnknownAccount(from))?;
                self.balance(to).ok_or(BankError::UnknownAccount(to))?;
                if balance < amount {
                    return Err(BankError::InsufficientFunds {
                        account: from,
                        balance,
                        amount,
                    });
                }
                if from != to {
                    // cannot overflow: every balance is at most the total, which fits in u64
                    *self.accounts.get_mut(&from).expect("checked above") -= amount;
                    *self.accounts.get_mut(&to).expect("checked above") += amount;
                }
                Ok(BankReply::Transferred)
            }
            BankOp::Balance { .. } | BankOp::Total => unreachable!("answered by read()"),
        }
    }
}

impl Service for Bank {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        match BankOp::decode(op) {
            Ok(op) => self.apply(&op),
            Err(_) => BankReply::Error(BankError::Malformed),
        }
        .encode()
    }

    /// Answers well-formed read-only operations; `None` otherwise.
    fn query(&self, op: &[u8]) -> Option<Vec<u8>> {
        let op = BankOp::decode(op).ok()?;
        self.read(&op).map(|r| r.encode())
    }

    /// `"BZBK" | version | [(account, balance)]` in account order.
    fn snapshot(&self) -> Vec<u8> {
        crate::snapshot::encode(MAGIC, crate::snapshot::VERSION, &self.accounts)
    }

    /// Accepts only canonical snapshots whose total fits in `u64`; on error the state is
    /// unchanged.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let entries: Vec<(AccountId, u64)> =
            crate::snapshot::decode(MAGIC, crate::snapshot::VERSION, snapshot)?;
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("malformed bank snapshot: accounts not strictly ascending".to_string());
        }
        let total = entries
            .iter()
            .try_fold(0u64, |t, (_, b)| t.checked_add(*b))
            .ok_or("malformed bank snapshot: total supply overflows")?;
        *self = Bank {
            accounts: entries.into_iter().collect(),
            total,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(b: &mut Bank, op: BankOp) -> BankReply {
        BankReply::decode(&b.execute(&op.encode())).expect("replies decode")
    }
    fn open(account: u64, initial: u64) -> BankOp {
        BankOp::Open { account, initial }
    }
    fn transfer(from: u64, to: u64, amount: u64) -> BankOp {
        BankOp::Transfer { from, to, amount }
    }
    fn balance(account: u64) -> BankOp {
        BankOp::Balance { account }
    }

    #[test]
    fn open_only_if_absent() {
        let mut b = Bank::new();
        assert_eq!(run(&mut b, open(1, 100)), BankReply::Opened);
        assert_eq!(
            run(&mut b, open(1, 5)),
            BankReply::Error(BankError::AccountExists(1))
        );
        assert_eq!(run(&mut b, balance(1)), BankReply::Balance(100));
        assert_eq!(run(&mut b, open(2, 0)), BankReply::Opened);
        assert_eq!(run(&mut b, BankOp::Total), BankReply::Total(100));
    }

    #[test]
    fn supply_cannot_overflow() {
        let mut b = Bank::new();
        assert_eq!(run(&mut b, open(1, u64::MAX - 1)), BankReply::Opened);
        assert_eq!(
            run(&mut b, open(2, 2)),
            BankReply::Error(BankError::SupplyOverflow)
        );
        assert_eq!(
            run(&mut b, balance(2)),
            BankReply::Error(BankError::UnknownAccount(2))
        );
        assert_eq!(run(&mut b, open(2, 1)), BankReply::Opened);
        assert_eq!(
            run(&mut b, transfer(1, 2, u64::MAX - 1)),
            BankReply::Transferred
        );
        assert_eq!(run(&mut b, balance(2)), BankReply::Balance(u64::MAX));
        assert_eq!(run(&mut b, BankOp::Total), BankReply::Total(u64::MAX));
    }

    #[test]
    fn transfers() {
        let mut b = Bank::new();
        run(&mut b, open(1, 100));
        run(&mut b, open(2, 10));
        assert_eq!(run(&mut b, transfer(1, 2, 30)), BankReply::Transferred);
        assert_eq!(run(&mut b, balance(1)), BankReply::Balance(70));
        assert_eq!(run(&mut b, balance(2)), BankReply::Balance(40));
        assert_eq!(
            run(&mut b, transfer(2, 1, 41)),
            BankReply::Error(BankError::InsufficientFunds {
                account: 2,
                balance: 40,
                amount: 41
            })
        );
        assert_eq!(run(&mut b, transfer(2, 1, 40)), BankReply::Transferred);
        assert_eq!(run(&mut b, balance(2)), BankReply::Balance(0));
        assert_eq!(run(&mut b, transfer(2, 1, 0)), BankReply::Transferred);
        assert_eq!(
            run(&mut b, transfer(3, 1, 0)),
            BankReply::Error(BankError::UnknownAccount(3))
        );
        assert_eq!(
            run(&mut b, transfer(1, 3, 1)),
            BankReply::Error(BankError::UnknownAccount(3))
        );
        assert_eq!(run(&mut b, transfer(1, 1, 110)), BankReply::Transferred);
        assert_eq!(
            run(&mut b, transfer(1, 1, 111)),
            BankReply::Error(BankError::InsufficientFunds {
                account: 1,
                balance: 110,
                amount: 111
            })
        );
        assert_eq!(run(&mut b, balance(1)), BankReply::Balance(110));
        assert_eq!(run(&mut b, BankOp::Total), BankReply::Total(110));
        assert_eq!(b.accounts().len(), 2);
    }

    #[test]
    fn query_answers_read_only_ops_only() {
        let mut b = Bank::new();
        run(&mut b, open(7, 3));
        let q = |b: &Bank, op: BankOp| {
            b.query(&op.encode())
                .map(|r| BankReply::decode(&r).unwrap())
        };
        assert_eq!(q(&b, balance(7)), Some(BankReply::Balance(3)));
        assert_eq!(
            q(&b, balance(8)),
            Some(BankReply::Error(BankError::UnknownAccount(8)))
        );
        assert_eq!(q(&b, BankOp::Total), Some(BankReply::Total(3)));
        assert_eq!(q(&b, open(8, 1)), None);
        assert_eq!(q(&b, transfer(7, 7, 1)), None);
        assert_eq!(b.query(&[0xff]), None);
    }

    #[test]
    fn malformed_ops_get_an_error_reply() {
        let mut b = Bank::new();
        for bytes in [&[][..], &[9], &[0], &[0, 1, 2, 3]] {
            assert_eq!(
                run_raw(&mut b, bytes),
                BankReply::Error(BankError::Malformed)
            );
        }
        assert_eq!(b, Bank::new());
    }

    fn run_raw(b: &mut Bank, bytes: &[u8]) -> BankReply {
        BankReply::decode(&b.execute(bytes)).unwrap()
    }

    #[test]
    fn display() {
        assert_eq!(open(1, 5).to_string(), "OPEN 1 5");
        assert_eq!(transfer(1, 2, 3).to_string(), "TRANSFER 1 2 3");
        assert_eq!(balance(4).to_string(), "BALANCE 4");
        assert_eq!(BankOp::Total.to_string(), "TOTAL");
        assert_eq!(BankReply::Balance(7).to_string(), "(balance) 7");
        assert_eq!(
            BankReply::Error(BankError::UnknownAccount(3)).to_string(),
            "(error) unknown account 3"
        );
    }

    #[test]
    fn snapshot_restore_round_trip_and_garbage() {
        let mut b = Bank::new();
        run(&mut b, open(5, 50));
        run(&mut b, open(1, 10));
        run(&mut b, transfer(5, 1, 20));
        let snap = b.snapshot();
        let mut c = Bank::new();
        run(&mut c, open(9, 9));
        c.restore(&snap).unwrap();
        assert_eq!(c, b);
        assert_eq!(c.total(), 60);
        let before = c.clone();
        let overflow = crate::snapshot::encode(
            MAGIC,
            crate::snapshot::VERSION,
            &vec![(1u64, u64::MAX), (2u64, 1u64)],
        );
        let unsorted = crate::snapshot::encode(
            MAGIC,
            crate::snapshot::VERSION,
            &vec![(2u64, 1u64), (1u64, 1u64)],
        );
        let mut trailing = snap.clone();
        trailing.push(1);
        for bad in [
            &[][..],
            b"BZKV\x01\x00",
            b"BZBK\x07\x00",
            &overflow,
            &unsorted,
            &trailing,
            &snap[..snap.len() - 1],
        ] {
            assert!(c.restore(bad).is_err(), "{bad:?}");
            assert_eq!(c, before);
        }
    }

    fn op() -> impl Strategy<Value = BankOp> {
        let id = || 0u64..5;
        let amount = || prop_oneof![0u64..100, Just(u64::MAX), Just(u64::MAX / 2)];
        prop_oneof![
            (id(), amount()).prop_map(|(account, initial)| BankOp::Open { account, initial }),
            (id(), id(), amount()).prop_map(|(from, to, amount)| BankOp::Transfer {
                from,
                to,
                amount
            }),
            (id(), id(), 0u64..60).prop_map(|(from, to, amount)| BankOp::Transfer {
                from,
                to,
                amount
            }),
            id().prop_map(|account| BankOp::Balance { account }),
            Just(BankOp::Total),
        ]
    }

    proptest! {
        #[test]
        fn replicas_agree_and_money_is_conserved(ops in prop::collection::vec(op(), 0..60)) {
            let (mut a, mut b) = (Bank::new(), Bank::new());
            for op in &ops {
                let total_before = a.total();
                let ra = a.execute(&op.encode());
                prop_assert_eq!(&ra, &b.execute(&op.encode()));
                prop_assert_eq!(a.snapshot(), b.snapshot());
                let sum: u128 = a.accounts().values().map(|&v| u128::from(v)).sum();
                prop_assert_eq!(sum, u128::from(a.total()));
                let reply = BankReply::decode(&ra).unwrap();
                let opened = matches!((op, &reply), (BankOp::Open { .. }, BankReply::Opened));
                if !opened {
                    prop_assert_eq!(a.total(), total_before);
                }
            }
        }

        #[test]
        fn restore_then_continue_matches(ops in prop::collection::vec(op(), 0..60), cut in any::<prop::sample::Index>()) {
            let cut = cut.index(ops.len() + 1);
            let mut original = Bank::new();
            for op in &ops[..cut] {
                original.execute(&op.encode());
            }
            let mut copy = Bank::new();
            copy.restore(&original.snapshot()).unwrap();
            prop_assert_eq!(&copy, &original);
            for op in &ops[cut..] {
                prop_assert_eq!(original.execute(&op.encode()), copy.execute(&op.encode()));
                prop_assert_eq!(original.query(&op.encode()), copy.query(&op.encode()));
            }
            prop_assert_eq!(original.snapshot(), copy.snapshot());
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut b = Bank::new();
            b.execute(&open(1, 10).encode());
            let _ = b.query(&bytes);
            prop_assert!(BankReply::decode(&b.execute(&bytes)).is_ok());
            let before = b.clone();
            let restored = b.restore(&bytes);
            if !bytes.starts_with(&MAGIC) {
                prop_assert!(restored.is_err());
            }
            match restored {
                Ok(()) => prop_assert_eq!(b.snapshot(), bytes),
                Err(_) => prop_assert_eq!(b, before),
            }
        }
    }
}
