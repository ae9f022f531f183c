//! A service that executes nothing, for measuring the replication protocol alone
//! (the 0/0 and 1024/1024 benchmarks of BFT-SMaRt style evaluations).
//!
//! Any bytes are a valid operation. The reply is `reply_size` zero bytes (empty by
//! default). The state is the number of executed operations, so snapshots taken at
//! different points differ and state transfer is exercised. Every operation is a
//! write: [`Service::query`] always returns `None`.

use byzscale_core::service::Service;

/// Snapshot magic of the no-op service.
const MAGIC: [u8; 4] = *b"BZNO";

/// The no-op service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Noop {
    executed: u64,
    reply_size: usize,
}

impl Noop {
    /// A no-op service with empty replies.
    pub fn new() -> Self {
        Self::default()
    }

    /// A no-op service whose replies are `reply_size` zero bytes.
    pub fn with_reply_size(reply_size: usize) -> Self {
        Self {
            executed: 0,
            reply_size,
        }
    }

    /// How many operations have been executed (the whole state).
    pub fn executed(&self) -> u64 {
        self.executed
    }
}

impl Service for Noop {
    fn execute(&mut self, _op: &[u8]) -> Vec<u8> {
        self.executed = self.executed.wrapping_add(1);
        vec![0; self.reply_size]
    }

    fn query(&self, _op: &[u8]) -> Option<Vec<u8>> {
        None
    }

    /// `"BZNO" | version | executed`. The reply size is configuration, not state.
    fn snapshot(&self) -> Vec<u8> {
        crate::snapshot::encode(MAGIC, crate::snapshot::VERSION, &self.executed)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.executed = crate::snapshot::decode(MAGIC, crate::snapshot::VERSION, snapshot)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_and_replies() {
        let mut n = Noop::new();
        assert_eq!(n.execute(b"anything"), Vec::<u8>::new());
        assert_eq!(n.execute(&[]), Vec::<u8>::new());
        assert_eq!(n.executed(), 2);
        assert_eq!(n.query(b"x"), None);
        let mut m = Noop::with_reply_size(1024);
        assert_eq!(m.execute(&[1; 1024]), vec![0; 1024]);
    }

    #[test]
    fn snapshots_differ_over_time_and_round_trip() {
        let mut n = Noop::new();
        let s0 = n.snapshot();
        n.execute(b"a");
        let s1 = n.snapshot();
        assert_ne!(s0, s1);
        let mut m = Noop::with_reply_size(3);
        m.restore(&s1).unwrap();
        assert_eq!(m.executed(), 1);
        assert_eq!(m.snapshot(), s1);
        // configuration survives a restore
        assert_eq!(m.execute(b"b").len(), 3);
        let mut trailing = s1.clone();
        trailing.push(0);
        for bad in [&[][..], b"BZNO", b"BZKV\x01\x00", &trailing] {
            assert!(m.restore(bad).is_err());
            assert_eq!(m.executed(), 2);
        }
    }

    proptest! {
        #[test]
        fn replicas_agree(ops in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..40), cut in any::<prop::sample::Index>()) {
            let cut = cut.index(ops.len() + 1);
            let (mut a, mut b) = (Noop::new(), Noop::new());
            for op in &ops[..cut] {
                prop_assert_eq!(a.execute(op), b.execute(op));
            }
            let mut c = Noop::new();
            c.restore(&a.snapshot()).unwrap();
            for op in &ops[cut..] {
                prop_assert_eq!(a.execute(op), c.execute(op));
            }
            prop_assert_eq!(a.snapshot(), c.snapshot());
            prop_assert_eq!(a.executed(), ops.len() as u64);
        }

        #[test]
        fn garbage_restore_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..32)) {
            let mut n = Noop::new();
            let restored = n.restore(&bytes);
            if !bytes.starts_with(&MAGIC) {
                prop_assert!(restored.is_err());
            }
            match restored {
                Ok(()) => prop_assert_eq!(n.snapshot(), bytes),
                Err(_) => prop_assert_eq!(n.executed(), 0),
            }
        }
    }
}
