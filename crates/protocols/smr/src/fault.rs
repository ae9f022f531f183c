//! The faults an SMR replica or client reports ([`byzscale_core::Fault`] kinds).
//! Labels are stable: they name the `byzscale_protocol_faults_total` series.

byzscale_core::fault_kinds! {
    /// Misbehaviour observed by an SMR replica or client.
    pub enum Fault {
        /// A request whose client field is not the authenticated sender.
        RequestSpoof => "request-spoof",
        /// A request with an authenticator of the wrong length.
        RequestMalformed => "request-malformed",
        /// A request whose operation exceeds `Params::max_op_bytes` (a
        /// correct client library refuses such an operation itself).
        RequestTooLarge => "request-too-large",
        /// A request whose MAC entry for this replica does not verify.
        RequestAuth => "request-auth",
        /// A FORWARD holding more requests than a batch may.
        ForwardMalformed => "forward-malformed",
        /// A PROPOSE from a replica that does not lead its view.
        ProposeNotLeader => "propose-not-leader",
        /// A PROPOSE whose batch is malformed or holds unauthenticated requests.
        ProposeInvalid => "propose-invalid",
        /// Two different PROPOSEs for one (view, slot) from its leader.
        Equivocation => "equivocation",
        /// A CHECKPOINT whose signature does not verify.
        CheckpointSignature => "checkpoint-signature",
        /// This replica's own state differs from a quorum's stable checkpoint.
        DivergentState => "divergent-state",
        /// A STATE whose certificate does not verify, or whose manifest is
        /// malformed, over `max_state_bytes`, or not the certified digest.
        StateInvalid => "state-invalid",
        /// A CHUNK whose bytes do not match its digest in the verified
        /// manifest, or whose index is outside it.
        StateChunkInvalid => "state-chunk-invalid",
        /// A snapshot that matched its certificate chunk by chunk but does
        /// not decode (reported against the member that sent its last chunk).
        StateUndecodable => "state-undecodable",
        /// A STOP-DATA with a bad signature, checkpoint or claim.
        StopDataInvalid => "stop-data-invalid",
        /// A STOP-DATA for a view beyond the window a leader keeps
        /// (`STOP_DATA_VIEWS_AHEAD` past the view it is in or moving to), or
        /// for a lower view than one its member already sent (dropped; a
        /// lagging leader can see this from a correct member too, which
        /// sends its STOP-DATA again once the leader joins the view change).
        StopDataAhead => "stop-data-ahead",
        /// A SYNC that is not a quorum of valid STOP-DATA determining every slot.
        SyncInvalid => "sync-invalid",
        /// A replica message from an endpoint outside the group.
        NotAMember => "not-a-member",
        /// A message of a kind the receiver never accepts (a reply to a replica,
        /// a request to a client).
        Unexpected => "unexpected",
        /// A reconfiguration request whose administrator signature does not
        /// verify or that does not decode (`config.rs`).
        ConfigInvalid => "config-invalid",
        /// A signed reconfiguration refused at execution: not the next
        /// epoch, another one pending, or not a valid configuration.
        ConfigRefused => "config-refused",
        /// A reply naming another replica or another client than its channel.
        ReplySpoof => "reply-spoof",
    }
}
