//! The faults Bracha's broadcast reports. Labels are stable metric labels.

byzscale_core::fault_kinds! {
    /// Misbehaviour observed by a Bracha member.
    pub enum Fault {
        /// A message from an endpoint outside the group.
        NotAMember => "bracha-not-a-member",
        /// A message about a source that is not a member.
        UnknownSource => "bracha-unknown-source",
        /// A sequence number outside the source's window.
        Window => "bracha-window",
        /// A payload whose source signature does not verify.
        BadSignature => "bracha-bad-signature",
        /// A second ECHO from one member for another digest.
        ConflictingEcho => "bracha-conflicting-echo",
        /// A second READY from one member for another digest.
        ConflictingReady => "bracha-conflicting-ready",
        /// A STATUS (retransmission frontier) that is malformed.
        BadStatus => "bracha-bad-status",
        /// A second catch-up vouch from one member for another digest.
        ConflictingVouch => "bracha-conflicting-vouch",
        /// A pulled payload that does not hash to the digest asked for.
        WrongPayload => "bracha-wrong-payload",
        /// A peer pulled one instance again within half a pull period.
        PullFlood => "bracha-pull-flood",
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
