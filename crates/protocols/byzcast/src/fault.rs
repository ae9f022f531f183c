//! The faults a ByzCast replica or client reports ([`byzscale_core::Fault`]
//! kinds). The inner SMR replica's and clients' faults keep their own kinds
//! ([`byzscale_smr::Fault`]). Labels are stable: they name the
//! `byzscale_protocol_faults_total` series.

byzscale_core::fault_kinds! {
    /// Misbehaviour observed by a ByzCast replica or client.
    pub enum Fault {
        /// A message from an endpoint that has no business sending it (an SMR
        /// reply from a group that is not a child, a result from a client).
        Unexpected => "bc-unexpected",
        /// A client using a replica's client identity, or a parent replica
        /// submitting as someone else.
        RequestSpoof => "bc-request-spoof",
        /// A request whose envelope names a sender other than its client.
        Envelope => "bc-envelope",
        /// A PROPOSE holding a request whose envelope fails the request filter.
        ProposeEnvelope => "bc-propose-envelope",
        /// A parent replica's copy that differs from what f+1 others sent, or
        /// is not addressed to this subtree.
        BadCopy => "bc-bad-copy",
        /// A child replica's results that differ from f+1 others.
        BadResult => "bc-bad-result",
        /// Results naming groups outside the child's subtree, or too large.
        ResultInvalid => "bc-result-invalid",
        /// A reply to a client for a multicast it did not send.
        ReplySpoof => "bc-reply-spoof",
    }
}
