//! The replicated service interface: a deterministic state machine that the SMR
//! core executes in decided order.

/// A deterministic service replicated by the SMR core.
///
/// `execute` must be a pure function of the state and the operation bytes: the
/// same sequence of operations must produce the same replies and the same
/// snapshot on every replica. Malformed operations must produce an error reply,
/// never a panic.
pub trait Service: Send {
    /// Execute an ordered operation and return its reply.
    fn execute(&mut self, op: &[u8]) -> Vec<u8>;
    /// Answer a read-only operation from local state without changing it.
    /// Returns `None` if `op` is not read-only (the client then orders it).
    fn query(&self, op: &[u8]) -> Option<Vec<u8>>;
    /// A deterministic serialization of the whole state.
    fn snapshot(&self) -> Vec<u8>;
    /// Replace the state with a snapshot taken by [`Service::snapshot`].
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}
