//! Steward's data: identifiers, client updates, what a site says
//! ([`SiteMsg`]), a site's signed word ([`Signed`]), the operations a site's
//! SMR orders ([`SiteOp`]) and the wire [`Message`].

use byzscale_core::codec;
use byzscale_core::crypto::{digest, Crypto, Digest, Signature};
use byzscale_core::threshold::{self, Share};
use byzscale_core::{Addr, ClientId, NodeId};
use byzscale_smr as smr;
use serde::{Deserialize, Serialize};

/// A wide-area site (its index in [`crate::Config::sites`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SiteId(pub u32);

/// A global view: the leading site of view `gv` is `gv mod S`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct GlobalView(pub u64);

/// A global sequence number; the first update is ordered at 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Seq(pub u64);

impl std::fmt::Display for SiteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "site{}", self.0)
    }
}

/// What threshold signatures of sites cover: `SITE_DOMAIN || (site, msg)`.
pub const SITE_DOMAIN: &[u8] = b"byzscale/steward/site";
/// Bytes an [`Update`]'s operation may have fewer than the site SMR's
/// `max_op_bytes`: a [`SiteOp::Proposal`] wraps it with the client's
/// signature, the site's signature and the fields.
pub const OP_OVERHEAD: usize = 1024;

/// A client's update (the paper's (client id, timestamp) pair and the
/// operation), signed by the client so that any server of any site can
/// check it came from that client (S2, validity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub client: ClientId,
    /// From 1; a client sends update `ts + 1` only after the reply to `ts`.
    pub ts: u64,
    pub op: Vec<u8>,
    pub sig: Signature,
}

impl Update {
    /// Update `ts` of the client whose identity `crypto` holds.
    pub fn signed(crypto: &Crypto, client: ClientId, ts: u64, op: Vec<u8>) -> Update {
        let sig = crypto.sign(&Update::signed_bytes(client, ts, &op));
        Update {
            client,
            ts,
            op,
            sig,
        }
    }

    /// The bytes the client's signature covers.
    pub fn signed_bytes(client: ClientId, ts: u64, op: &[u8]) -> Vec<u8> {
        codec::to_bytes(&("byzscale/steward/update", client, ts, op))
    }

    /// Whether the signature is the named client's (`crypto` must know the
    /// client's public key).
    pub fn verify(&self, crypto: &Crypto) -> bool {
        let bytes = Update::signed_bytes(self.client, self.ts, &self.op);
        crypto
            .verify(Addr::Client(self.client), &bytes, &self.sig)
            .is_ok()
    }

    /// What an Accept names: the digest of (client, ts, op).
    pub fn digest(&self) -> Digest {
        Update::content_digest(self.client, self.ts, &self.op)
    }

    /// [`Update::digest`] from the fields (checkers compare with it).
    pub fn content_digest(client: ClientId, ts: u64, op: &[u8]) -> Digest {
        digest(&Update::signed_bytes(client, ts, op))
    }

    /// The no-op a new leading site proposes at a seq no site of its
    /// constraint majority accepted anything for (§4.2 re-proposal). Client
    /// 0 is never a client ([`ClientId`] ids start at 1) and the signature
    /// is all zeros: it is valid only inside a leading site's Proposal and
    /// executes as nothing.
    pub fn noop() -> Update {
        let sig = Signature(ed25519_dalek::Signature::from_bytes(&[0; 64]));
        Update {
            client: ClientId(0),
            ts: 0,
            op: Vec::new(),
            sig,
        }
    }

    pub fn is_noop(&self) -> bool {
        *self == Update::noop()
    }
}

/// What a site reports it accepted (or, leading, proposed) above an ARU:
/// (global view, seq, update digest).
pub type Accepted = (GlobalView, Seq, Digest);
/// Bytes one [`Accepted`] entry costs at most on the wire (a constraint
/// holds at most [`crate::Config::window`] of them).
pub const ACCEPTED_BYTES: usize = 64;

/// What a site says (signs with its threshold key): the common case's
/// Proposal and Accept, and the global view change's GlobalVc, Aru and
/// Constraint (§4.2, docs/STEWARD.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SiteMsg {
    /// The leading site assigns `seq` to `update` in global view `gv`.
    Proposal {
        gv: GlobalView,
        seq: Seq,
        update: Update,
    },
    /// A site accepts the leading site's Proposal of `digest` at (gv, seq).
    Accept {
        gv: GlobalView,
        seq: Seq,
        digest: Digest,
    },
    /// The site votes to replace the leading site: install global view `gv`
    /// (Global_VC). A majority of sites' votes for one gv installs it.
    GlobalVc { gv: GlobalView },
    /// The leading site of `gv` holds every globally ordered update up to
    /// `aru` (CONSTRUCT-ARU's result).
    Aru { gv: GlobalView, aru: Seq },
    /// A site's answer to the Aru of `gv`: what it accepted (or proposed)
    /// above `aru` (Global_Constraint), at most one entry per seq.
    Constraint {
        gv: GlobalView,
        aru: Seq,
        accepted: Vec<Accepted>,
    },
}

impl SiteMsg {
    pub fn gv(&self) -> GlobalView {
        match self {
            SiteMsg::Proposal { gv, .. }
            | SiteMsg::Accept { gv, .. }
            | SiteMsg::GlobalVc { gv }
            | SiteMsg::Aru { gv, .. }
            | SiteMsg::Constraint { gv, .. } => *gv,
        }
    }
    /// The seq it is about (the ARU for Aru and Constraint, 0 for GlobalVc).
    pub fn seq(&self) -> Seq {
        match self {
            SiteMsg::Proposal { seq, .. } | SiteMsg::Accept { seq, .. } => *seq,
            SiteMsg::Aru { aru, .. } | SiteMsg::Constraint { aru, .. } => *aru,
            SiteMsg::GlobalVc { .. } => Seq(0),
        }
    }
    /// The update digest it binds to (gv, seq); for the view-change
    /// messages, the digest of the message.
    pub fn digest(&self) -> Digest {
        match self {
            SiteMsg::Proposal { update, .. } => update.digest(),
            SiteMsg::Accept { digest, .. } => *digest,
            other => digest(&codec::to_bytes(other)),
        }
    }
    /// Whether it is part of the global view change (not the common case).
    pub fn is_view_change(&self) -> bool {
        !matches!(self, SiteMsg::Proposal { .. } | SiteMsg::Accept { .. })
    }
    pub fn kind(&self) -> &'static str {
        match self {
            SiteMsg::Proposal { .. } => "Proposal",
            SiteMsg::Accept { .. } => "Accept",
            SiteMsg::GlobalVc { .. } => "GlobalVc",
            SiteMsg::Aru { .. } => "Aru",
            SiteMsg::Constraint { .. } => "Constraint",
        }
    }
}

/// What a site's threshold signature covers: the site and its message
/// (the message type of its [`threshold::Voice`]).
pub type Statement = (SiteId, SiteMsg);

/// A site's message with the site's threshold signature: what crosses the
/// WAN, verified with the sending site's group key alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<M = SiteMsg> {
    pub site: SiteId,
    pub msg: M,
    pub sig: threshold::Signature,
}

impl Signed<SiteMsg> {
    /// Identifies this exact signed message (caches of verified messages).
    pub fn digest(&self) -> Digest {
        digest(&codec::to_bytes(self))
    }
}

/// An operation of a site's SMR: the input of the [`crate::SiteMachine`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SiteOp {
    /// ASSIGN-SEQUENCE at the leading site: give `update` the next seq.
    Assign(Update),
    /// A Proposal of the leading site, signed by it, to accept here.
    Proposal(Signed<SiteMsg>),
    /// Server `server`'s global timer expired in global view `gv`
    /// (SuspectLeader); f+1 distinct servers make the site say GlobalVc.
    Suspect { gv: GlobalView, server: NodeId },
    /// Signed GlobalVc votes of other sites (and maybe this one): a
    /// majority for one gv above the site's installs it; one for gv+1 makes
    /// the site join the vote.
    Votes(Vec<Signed<SiteMsg>>),
    /// CONSTRUCT-ARU at the new leading site: server `server` has executed
    /// every update up to `executed`.
    Report {
        gv: GlobalView,
        server: NodeId,
        executed: Seq,
    },
    /// The new leading site's signed Aru, to answer with a Constraint.
    Aru(Signed<SiteMsg>),
    /// Another site's signed Constraint, at the leading site.
    Constraint(Signed<SiteMsg>),
    /// Re-propose `update` at `seq` in `gv`, bound there by the constraints
    /// (its content, which the constraints name by digest only).
    Repropose {
        gv: GlobalView,
        seq: Seq,
        update: Update,
    },
}

impl SiteOp {
    pub fn encode(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }
    pub fn decode(bytes: &[u8]) -> Result<SiteOp, codec::CodecError> {
        codec::from_bytes(bytes, bytes.len())
    }
}

/// A server's reply to a client of its own site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub server: NodeId,
    pub client: ClientId,
    pub ts: u64,
    /// The global sequence number the update executed at.
    pub seq: Seq,
    pub result: Vec<u8>,
}

/// A client's read-only query (§4.3), to the servers of its own site
/// only: each answers from its state after the globally ordered prefix it
/// executed, never asking another site. Not signed: the channel
/// authenticates the client, and a query changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub client: ClientId,
    /// The client's read number, from 1 (its queries are sequential).
    pub rid: u64,
    /// The server answers only once it executed up to `floor` (the seq of
    /// the client's last completed update or read): a client reads its own
    /// writes and never goes back in time.
    pub floor: Seq,
    pub op: Vec<u8>,
}

/// A server's answer to a [`Query`] of a client of its site: a *local*
/// read, from the state after `executed` (not linearizable across sites).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryReply {
    pub server: NodeId,
    pub client: ClientId,
    pub rid: u64,
    /// The last globally ordered seq executed by the answering server.
    pub executed: Seq,
    /// `None`: the operation is not read-only (`Service::query`); the
    /// client then submits it as an update.
    pub result: Option<Vec<u8>>,
}

/// The wire messages of Steward servers and clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The site's SMR (only between servers of one site).
    Local(smr::Message),
    /// THRESHOLD-SIGN: a server's share of what its site says, to the
    /// site's representative; `digest` names the signed bytes.
    Share {
        digest: Digest,
        share: Share,
    },
    /// A site's signed message (between sites, and relayed inside a site).
    Site(Signed<SiteMsg>),
    /// A client's update, to the servers of its own site.
    Submit(Update),
    /// The client's site's representative forwards an update to the
    /// leading site.
    Forward(Update),
    Reply(Reply),
    /// A server stuck at `seq` in global view `gv` asks a server of another
    /// site for the signed site messages it holds from `seq` on (a bounded
    /// number), and for the view-change messages if it is in a later gv.
    Need {
        gv: GlobalView,
        seq: Seq,
    },
    /// A client's read-only query, to the servers of its own site.
    Query(Query),
    /// A server's answer to a query of a client of its site.
    QueryReply(QueryReply),
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Local(_) => "Local",
            Message::Share { .. } => "Share",
            Message::Site(_) => "Site",
            Message::Submit(_) => "Submit",
            Message::Forward(_) => "Forward",
            Message::Reply(_) => "Reply",
            Message::Need { .. } => "Need",
            Message::Query(_) => "Query",
            Message::QueryReply(_) => "QueryReply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::crypto::{CryptoMode, Identity};

    #[test]
    fn an_update_verifies_only_as_its_client_and_its_digest_ignores_the_signature() {
        let c = ClientId(5);
        let id = Identity::from_seed([5; 32]);
        let crypto = Crypto::new(Addr::Client(c), id.clone(), CryptoMode::Real);
        let mut server = Crypto::new(
            Addr::Node(NodeId(0)),
            Identity::from_seed([1; 32]),
            CryptoMode::Real,
        );
        server.add_peer(Addr::Client(c), id.public()).unwrap();
        let u = Update::signed(&crypto, c, 3, b"op".to_vec());
        assert!(u.verify(&server));
        let mut forged = u.clone();
        forged.ts = 4;
        assert!(!forged.verify(&server), "another timestamp");
        let mut stranger = u.clone();
        stranger.client = ClientId(6);
        assert!(!stranger.verify(&server), "an unknown client");
        assert_eq!(u.digest(), Update::content_digest(c, 3, b"op"));
        assert_ne!(u.digest(), forged.digest());
        let op = SiteOp::Assign(u);
        assert_eq!(SiteOp::decode(&op.encode()).unwrap(), op);
        assert!(SiteOp::decode(&[9, 9, 9]).is_err());
    }
}
