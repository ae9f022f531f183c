//! The faults AT2 processes report ([`byzscale_core::Fault`] kinds; the
//! broadcast underneath reports its own). Labels are stable metric labels.

byzscale_core::fault_kinds! {
    /// Misbehaviour observed by an AT2 process, node or client.
    pub enum Fault {
        /// A broadcast batch longer than a correct owner sends.
        BatchTooLong => "at2-batch-too-long",
        /// A batch whose transfers are not consecutive, or that does not decode.
        MalformedBatch => "at2-malformed-batch",
        /// A transfer whose issuer is not the broadcast's source.
        WrongIssuer => "at2-wrong-issuer",
        /// A transfer sequence number that skips or repeats one.
        OutOfOrder => "at2-out-of-order",
        /// A transfer debiting an account its issuer does not own.
        NotOwner => "at2-not-owner",
        /// A transfer above the balance its dependencies justify.
        UnjustifiedFunds => "at2-unjustified-funds",
        /// A dependency that was never issued, or cited twice.
        FakeDependency => "at2-fake-dependency",
        /// A client reply sent to a node.
        UnexpectedReply => "at2-unexpected-reply",
        /// A node sent a client something other than a reply.
        ClientUnexpected => "at2-client-unexpected",
    }
}
