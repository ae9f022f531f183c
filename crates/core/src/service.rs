//! The replicated service interface: a deterministic state machine that the SMR
//! core executes in decided order.

/// A deterministic service replicated by the SMR core.
///
/// `execute` must be a pure function of the state and the operation bytes: the
/// same sequence of operations must produce the same replies and the same
/// snapshot on every replica. Malformed operations must produce an error reply,
/// never a panic.
pub trait Service: Send {
    /// A decided batch starts: the operations executed until the next call
    /// belong to it and run at its agreed time (see [`BatchCtx`]). Called for
    /// every batch, empty ones included, before its operations, with times
    /// that never decrease. A service whose results depend on time (key
    /// expiry) keeps `batch.time_ms` as its clock, and its [`Service::query`]
    /// and [`Service::snapshot`] read the state as of that time, so they
    /// too are the same on every replica that executed the same batches.
    /// A service that does not depend on time ignores it (the default).
    fn begin_batch(&mut self, batch: BatchCtx) {
        let _ = batch;
    }
    /// The operations of the decided batch that [`Service::begin_batch`]
    /// just started, in batch order, before any of them executes (some may
    /// then be skipped: a request out of its client's turn, a duplicate).
    /// Called at every replica for every decided batch, also when a
    /// restarted replica replays its log, so a service may do work for the
    /// whole batch at once here, such as batch-verifying client signatures,
    /// provided that what it decides is a deterministic function of the
    /// batch's bytes and the state. The default does nothing.
    fn prepare_batch(&mut self, ops: &[&[u8]]) {
        let _ = ops;
    }
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

/// What a service learns of the batch it executes: its slot and its agreed
/// time, milliseconds since the Unix epoch (the SMR leader's proposal,
/// checked by the backups against their clocks and never below the previous
/// batch's time; virtual time in the simulator).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCtx {
    pub slot: u64,
    pub time_ms: u64,
}
