//! A server's stream of site operations into its own site's SMR.
//!
//! The server submits as the SMR client `ClientId::for_replica(me)`, in
//! session 0 with contiguous numbers (its id is pinned in the site's SMR
//! parameters, [`crate::Config::smr_params`]), straight to its own nested
//! replica: no network hop, the request's MAC authenticator convinces the
//! other members when it reaches them in a PROPOSE. At most the SMR's
//! `client_window` numbers are outstanding (the replica drops requests far
//! beyond what it executed of the client), the rest wait here, bounded in
//! bytes.
//!
//! Numbers live in memory. A restarted server ([`crate::Server::recover`])
//! submits in a new session and numbers from 1 there: the SMR runs a later
//! session's first request and takes its earlier sessions' stragglers as
//! stale, so nothing needs to be durable here. SMR sessions are named by
//! slots (a request of session s runs only at a slot above s), so the new
//! session is the recovered replica's executed slot, or one above the
//! session the client table holds for this server if that is not below
//! it; and nothing is submitted before the replica executed up to the
//! session ([`Submitter::next`]).

use byzscale_core::ClientId;
use std::collections::VecDeque;

/// Bytes of operations waiting to be submitted.
pub const SUBMIT_BYTES: usize = 16 << 20;

pub(super) struct Submitter {
    pub(super) id: ClientId,
    /// The SMR session the numbers run in (0 unless restarted).
    pub(super) session: u64,
    /// The last number given out, and the highest the SMR executed.
    last: u64,
    executed: u64,
    window: u64,
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Submitter {
    pub(super) fn new(id: ClientId, window: u64) -> Self {
        Submitter {
            id,
            session: 0,
            last: 0,
            executed: 0,
            window: window.max(1),
            queue: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Queue `op`; false if the queue is full (the op is dropped).
    pub(super) fn push(&mut self, op: Vec<u8>) -> bool {
        if self.bytes + op.len() > SUBMIT_BYTES {
            return false;
        }
        self.bytes += op.len();
        self.queue.push_back(op);
        true
    }

    /// The next operation to submit and its number, if the window allows
    /// and the site SMR executed up to the session (`slot`: its executed
    /// slot), so the request runs at a slot above its session.
    pub(super) fn next(&mut self, slot: u64) -> Option<(u64, Vec<u8>)> {
        if self.last - self.executed >= self.window || slot < self.session {
            return None;
        }
        let op = self.queue.pop_front()?;
        self.bytes -= op.len();
        self.last += 1;
        Some((self.last, op))
    }

    /// The site SMR executed our request `seq`.
    pub(super) fn executed(&mut self, seq: u64) {
        self.executed = self.executed.max(seq.min(self.last));
    }

    /// Operations waiting, and those submitted and not yet executed.
    pub(super) fn backlog(&self) -> (usize, u64) {
        (self.queue.len(), self.last - self.executed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_a_window_is_outstanding_and_the_queue_is_bounded() {
        let mut s = Submitter::new(ClientId(1), 2);
        for i in 0..3u8 {
            assert!(s.push(vec![i]));
        }
        assert_eq!(s.next(0), Some((1, vec![0])));
        assert_eq!(s.next(0), Some((2, vec![1])));
        assert_eq!(s.next(0), None, "two outstanding");
        s.executed(1);
        s.session = 5;
        assert_eq!(s.next(4), None, "the SMR has not executed slot 5 yet");
        assert_eq!(s.next(5), Some((3, vec![2])));
        s.executed(99); // a number never given out does not open the window
        assert_eq!(s.backlog(), (0, 0));
        assert!(!s.push(vec![0; SUBMIT_BYTES + 1]));
    }
}
