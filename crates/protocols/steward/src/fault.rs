//! The faults a Steward server or client reports ([`byzscale_core::Fault`]
//! kinds). The nested SMR replica's faults keep their own kinds
//! ([`byzscale_smr::Fault`]). Labels are stable: they name the
//! `byzscale_protocol_faults_total` series.

byzscale_core::fault_kinds! {
    /// Misbehaviour observed by a Steward server or client.
    pub enum Fault {
        /// A message from an endpoint that has no business sending it (a
        /// share or an SMR message from outside the site, a forward from a
        /// server of another site than the client's, a reply to a server).
        Unexpected => "st-unexpected",
        /// An update whose client signature fails, from an unknown client,
        /// or submitted by another endpoint than its client.
        BadUpdate => "st-bad-update",
        /// An update whose operation is over the size limit.
        TooLarge => "st-too-large",
        /// A client submitting to a site that is not its own.
        WrongSite => "st-wrong-site",
        /// A site message whose threshold signature does not verify with the
        /// site's key, or that its site cannot say (an Accept from the
        /// leading site, a Proposal from another site).
        BadSiteMsg => "st-bad-site-msg",
        /// An invalid threshold share (the share is the evidence:
        /// `GroupKey::verify_share` convinces anyone).
        BadShare => "st-bad-share",
        /// A share sent under another member's index.
        ShareSpoof => "st-share-spoof",
        /// A PROPOSE (or forwarded request) of the site SMR holding an
        /// operation that fails the site-operation filter.
        SiteOp => "st-site-op",
        /// A read-only query sent by another endpoint than its client, or
        /// from an unknown client.
        BadQuery => "st-bad-query",
        /// A server of another site sending `Need`s far faster than a
        /// correct one (one per tick): [`crate::server::NEED_FLOOD`] or
        /// more dropped within one answer period.
        NeedFlood => "st-need-flood",
        /// A reply that does not match anything the client sent.
        BadReply => "st-bad-reply",
    }
}
