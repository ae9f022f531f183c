//! The faults the probabilistic stack (Murmur, Sieve, Contagion) reports.
//! Labels are stable metric labels.

byzscale_core::fault_kinds! {
    /// Misbehaviour observed by a process of the probabilistic broadcast.
    pub enum Fault {
        /// A message from an endpoint outside the group.
        NotAMember => "prob-not-a-member",
        /// A message about a source that is not a member.
        UnknownSource => "prob-unknown-source",
        /// A sequence number outside the source's window.
        Window => "prob-window",
        /// More distinct payloads for one instance than a correct source sends.
        TooManyPayloads => "prob-too-many-payloads",
        /// A payload whose source signature does not verify.
        BadSignature => "prob-bad-signature",
        /// A Murmur message of a kind Murmur never sends.
        MurmurUnexpected => "murmur-unexpected",
        /// A Sieve ECHO from a process that is not in the echo sample.
        SieveUnsolicitedEcho => "sieve-unsolicited-echo",
        /// A second Sieve ECHO from one sample member for another payload.
        SieveConflictingEcho => "sieve-conflicting-echo",
        /// A Contagion READY from a process that is not in a ready sample.
        ContagionUnsolicitedReady => "contagion-unsolicited-ready",
        /// A new payload while the payloads held reach `max_bytes` and no
        /// delivered instance is left to collect early.
        MemoryBound => "prob-memory-bound",
    }
}

impl From<crate::common::Refusal> for Fault {
    fn from(r: crate::common::Refusal) -> Self {
        match r {
            crate::common::Refusal::UnknownSource => Fault::UnknownSource,
            crate::common::Refusal::Window => Fault::Window,
        }
    }
}
