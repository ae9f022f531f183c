//! Steward: hierarchical BFT replication for wide-area sites (sans-IO).
//!
//! # Paper mapping
//!
//! Amir, Danilov, Dolev, Kirsch, Lane, Nita-Rotaru, Olsen, Zage, "Scaling
//! Byzantine Fault-Tolerant Replication to Wide Area Networks" (DSN'06;
//! seed 003, digest `shared/reference/byzcast-steward-wheat-aware-lazarus.md`
//! §2; design `docs/STEWARD.md`). Each site of 3f+1 servers runs BFT
//! internally and agrees on every message it sends, so it acts as one
//! participant of a benign Paxos among sites; its messages carry a
//! (2f+1, 3f+1) threshold signature.
//!
//! | paper | here |
//! |---|---|
//! | §3 servers, sites, f per site | [`Config`], [`Site`] |
//! | §3 client update (client id, timestamp), sequential clients | [`Update`] (signed by the client), [`Client`] |
//! | §3 global sequence numbers; execute i after all lower | [`Seq`], [`order::GlobalOrder`], `server/updates.rs` |
//! | §3 S1 safety, S2 validity | checked by `tests/common_case.rs` |
//! | §4 representative of a site | the nested SMR's leader of the current local view |
//! | §4 leading site of global view gv | [`Config::leader_site`]: `gv mod S` |
//! | §4.1 ASSIGN-SEQUENCE (Pre-Prepare, Prepare) | the site SMR ordering [`SiteOp::Assign`]; the [`SiteMachine`] assigns the next seq |
//! | §4.1 THRESHOLD-SIGN (partial signatures to the representative, combine, check proofs on failure) | `core::threshold::Voice` in `server/speak.rs` ([`Message::Share`]) |
//! | §4.1 Proposal, to all sites (O(S)) | [`SiteMsg::Proposal`] in [`Signed`] ([`Message::Site`]) |
//! | §4.1 Accept, to all sites (O(S²)) | [`SiteMsg::Accept`], said by the site machine on an ordered [`SiteOp::Proposal`] |
//! | §4.1 Proposal + ⌊S/2⌋ Accepts ⇒ globally ordered | [`order::GlobalOrder::next_ready`] |
//! | §4.1 the local site replies | [`Reply`] from the servers of the client's home site; the client takes f+1 |
//! | §4.2 local representative change (New_Rep, local timer) | the nested SMR's view change; a server suspects its representative when a word its site said stays unsigned for `LOCAL_TICKS` ticks (`server/retransmit.rs`) |
//! | §4.2 CONSTRUCT-LOCAL-CONSTRAINT | the SMR's own view change (the site machine's state is SMR state) |
//! | §4.2 global timer, SuspectLeader | `server/view.rs`: an update waiting [`Config::global_timeout`] ((2f+2) local changes; doubled after a global view change without progress) ⇒ [`SiteOp::Suspect`]; f+1 distinct ⇒ the site says [`SiteMsg::GlobalVc`] |
//! | §4.2 Global_VC, a majority installs gv+1 | [`SiteOp::Votes`] ordered at each site ([`SiteMachine`]: a majority for one gv installs it, a vote for gv+1 is joined) |
//! | §4.2 CONSTRUCT-ARU | [`SiteOp::Report`] from 2f+1 servers of the new leading site; the (f+1)-th highest executed point ⇒ [`SiteMsg::Aru`] |
//! | §4.2 Global_Constraint | [`SiteOp::Aru`] at every other site ⇒ [`SiteMsg::Constraint`] (what it accepted above the ARU, by digest) |
//! | §4.2 collect a majority of constraints, re-propose | [`SiteOp::Constraint`] at the leading site; each bound seq gets its highest-gv entry ([`SiteOp::Repropose`] brings the content) or a no-op ([`Update::noop`]) |
//! | §4.2 nested timers; retransmission | [`Config::tick`] (local), [`Config::global_timeout`]; `server/retransmit.rs` ([`Message::Need`]: one answer per asker per half tick, at most [`Config::need_bytes`] beyond its first word; floods reported as `st-need-flood`) |
//! | §4.3 local read-only queries | [`client::Input::Read`] ⇒ [`Message::Query`] to the client's own site only; each server answers ([`QueryReply`]) from its state after the global prefix it executed (`server/reads.rs`), the client takes f+1 matching ⇒ [`client::Output::LocalRead`]; no WAN message |
//!
//! # Message flow (common case, one leading site, gv = 0)
//!
//! ```text
//! client ──Submit(u)──▶ servers of its site; the representative ──Forward(u)──▶ leading site
//! leading site: SMR orders Assign(u) ─▶ machine says Proposal(gv, seq, u)
//!               ─▶ Share ─▶ representative combines 2f+1 ─▶ Site(Proposal) to f+1 servers per site
//! other sites:  verify with the leading site's key, relay inside the site,
//!               SMR orders Proposal ─▶ machine says Accept(gv, seq, d) ─▶ Share ─▶ combine
//!               ─▶ Site(Accept) to f+1 servers per site
//! every server: Proposal + Accepts of ⌊S/2⌋ other sites ─▶ execute in seq order
//!               ─▶ the client's site replies
//! ```
//!
//! # Local reads (§4.3): not linearizable across sites
//!
//! A read-only query goes to the servers of the client's site and nowhere
//! else; each answers with `Service::query` on its state after the
//! globally ordered prefix it executed, and the client takes f+1 matching
//! answers (one is correct). As in the paper this is **not linearizable
//! across sites**: another site may have executed further, so a read can
//! miss an update that completed elsewhere (a site cut off from the others
//! still serves reads, from its older prefix). What holds: the value is
//! the state after a prefix of the global order that a correct server of
//! the site executed; and since a query carries a `floor` (the seq of the
//! client's last completed update or read) that correct servers wait for,
//! a client reads its own writes and its reads never go back in time
//! (monotone per client, not per site across clients).
//!
//! # Deviations, and why
//!
//! - **Local agreement is the full SMR core** (PROPOSE, WRITE, ACCEPT:
//!   `byzscale_smr`), not Steward's prepare certificate followed by
//!   THRESHOLD-SIGN in place of the commit: one more LAN round in exchange
//!   for one agreement engine, with its view change (the local
//!   representative election) and durable votes.
//! - **Non-leading sites order a Proposal through their SMR before
//!   accepting it** (the paper's sites THRESHOLD-SIGN the Accept directly).
//!   What a site says is then always a function of its ordered history,
//!   and "never two different Accepts for one (gv, seq)" is a check of
//!   replicated state ([`SiteMachine`]), not of each server's memory. Cost:
//!   one LAN agreement per update at each site.
//! - **BLS12-381 threshold signatures** (`core::threshold`, `blsttc`) instead
//!   of Shoup RSA: a share is checked with a pairing against its member's
//!   public key share, so shares carry no proofs; as in the paper, shares
//!   are verified one by one only when the combination fails, and the
//!   members whose shares fail are recorded as faults.
//! - **Keys from a trusted dealer** (`byzscale keygen --threshold`, as the
//!   paper's deployment); no distributed key generation.
//! - **Site messages go to f+1 servers of each site**, which relay them
//!   inside their site (at least one is correct), instead of to a remote
//!   representative whose local view the sender does not know. WAN copies
//!   per update: f+1 per pair of sites, plus the forward.
//! - **Forwards go to every server of the leading site** (3f+1 copies), for
//!   the same reason; its representative submits the update at once, the
//!   others after a tick without it executing (`server/retransmit.rs`).
//! - **Operations are checked before ordering** (the site-operation filter
//!   in `server/filter.rs`, as ByzCast's request filter): the site machine
//!   sees only bytes, so correct servers vote only for batches whose
//!   updates carry their clients' signatures and whose Proposals carry the
//!   leading site's signature.
//!
//! - **Global view change by ordered operations** (§4.2 as Paxos phase 1
//!   over sites, every step a site operation its SMR orders): f+1 Suspects
//!   (not the paper's 2f+1 timer shares) make a site vote; a site joins a
//!   vote for the next gv it receives from another site (so sites without
//!   a pending update join); a non-leading site adopts a later gv from its
//!   leading site's signed Aru or Proposal (Paxos's promise); constraints
//!   name updates by digest and the content is submitted separately
//!   ([`SiteOp::Repropose`]), so a constraint fits one SMR operation
//!   ([`Config::validate`] checks `window` entries fit).
//! - **Retransmission is pull-and-push on a tick**: a stuck server sends its
//!   shares, its site's signed words and view-change messages again and
//!   asks other sites ([`Message::Need`]) rather than each message carrying
//!   its own timer A Need is answered at most once per
//!   asker per half tick and with a byte cap (the paper does not bound
//!   retransmission requests; here an asker cannot amplify).
//! - **Local reads carry a floor** (the paper answers read-only queries
//!   inside the client's site; here a query also names the client's last
//!   completed seq and correct servers wait for it), so a client reads its
//!   own writes and its reads are monotone; reads are not signed (the
//!   channel authenticates the client; a read changes nothing).
//!
//! # What is not here yet (docs/STEWARD.md, plan steps 5 to 7)
//!
//! The scenario (step 5), an application snapshot for restarts (the node
//! protocol, `byzscale_node::protocols::steward`, recovers the site SMR
//! with [`Server::recover`]; the global prefix is executed again), a
//! per-client rate limit on read-only queries. The re-proposal of a *content* bound by constraints is
//! tested on the site machine only (the simulator runs of the partition
//! never left a Proposal accepted but unordered above the ARU).

pub mod client;
pub mod config;
mod fault;
pub mod machine;
mod message;
pub mod order;
pub mod server;

pub use client::Client;
pub use config::{Config, ConfigError, Site};
pub use fault::Fault;
pub use machine::SiteMachine;
pub use message::*;
pub use server::Server;
