//! The faults AT2 processes report ([`byzscale_core::Fault`] kinds; the
//! broadcast underneath reports its own). Labels are stable metric labels.

byzscale_core::fault_kinds! {
    /// Misbehaviour observed by an AT2 process, node or client.
    pub enum Fault {
        /// A proposal that is empty, too long, or not from a member.
        MalformedProposal => "at2-malformed-proposal",
        /// A proposed transfer that is malformed whatever the ledger holds (zero amount or sequence number, bad dependency list).
        MalformedTransfer => "at2-malformed-transfer",
        /// A proposed transfer whose owner's signature does not verify (the proposer should have checked it).
        BadSignature => "at2-bad-signature",
        /// A vote that does not verify, names indices outside its proposal, or comes from a non-member.
        BadVote => "at2-bad-vote",
        /// A delivered batch that is too long or whose votes are malformed.
        MalformedBatch => "at2-malformed-batch",
        /// An account owner signed two different transfers with one sequence number.
        DoubleSpend => "at2-double-spend",
        /// A certified transfer that is not valid (overdraft or fake dependency): its sequence number is used up.
        InvalidTransfer => "at2-invalid-transfer",
        /// Two different certified transfers with one id: more than f voters lied.
        ConflictingCertificates => "at2-conflicting-certificates",
        /// A client reply sent to a node.
        UnexpectedReply => "at2-unexpected-reply",
        /// A node sent a client something other than a reply.
        ClientUnexpected => "at2-client-unexpected",
    }
}
