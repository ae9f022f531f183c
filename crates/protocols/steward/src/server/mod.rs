//! A Steward server: a member of one site.
//!
//! # Composition
//!
//! - the site's SMR replica, `smr::Replica<SiteMachine>`, nested with
//!   [`Cx::nested`] + `Step::lift` (its messages travel as
//!   [`Message::Local`], its timers as [`Timer::Smr`], its records as
//!   [`Record::Smr`]); after every SMR step the machine's outbox is drained
//!   (ByzCast's drain pattern): what the site says is learnt into the global
//!   order and threshold-signed (`speak.rs`);
//! - the server's own stream of site operations into that SMR (`submit.rs`);
//!   only the site's representative (the SMR leader of the current local
//!   view) submits;
//! - one [`Voice`] per site: the own site's collects shares at the
//!   representative (bounded in bytes); the others only verify signatures;
//! - the global order ([`GlobalOrder`]) and the application service `A`,
//!   executed in global seq order (`updates.rs`);
//! - the request filter on the SMR's PROPOSEs (`filter.rs`): a batch is
//!   voted for only if each site operation in it checks out (update
//!   signatures, the leading site's threshold signature), so every decided
//!   site operation was checked by a correct server.

mod filter;
mod reads;
mod retransmit;
mod speak;
mod submit;
mod updates;
mod view;

use crate::config::Config;
use crate::fault::Fault;
use crate::machine::{Event, SiteMachine};
use crate::message::{GlobalView, Message, Query, Seq, SiteId, Statement, SITE_DOMAIN};
use crate::order::GlobalOrder;
use byzscale_core::crypto::{Crypto, Digest};
use byzscale_core::service::Service;
use byzscale_core::threshold::{KeyShare, Voice};
use byzscale_core::{Addr, ClientId, Cx, Effect, NodeId, Priority, Protocol};
use byzscale_smr as smr;
use retransmit::{Asked, Awaiting, SignedStore, Waiting};
pub use retransmit::{LOCAL_TICKS, NEED_FLOOD, RESEND_SEQS};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use submit::Submitter;
use view::ViewState;

/// Verified site-message digests remembered (so a message relayed to us
/// several times is verified once).
pub const CHECKED_MEMORY: usize = 8192;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    Smr(smr::replica::Timer),
    /// The retransmission tick ([`Config::tick`]): retransmissions, the
    /// other servers' action on updates, the local and global timers.
    Tick,
}

#[derive(Debug)]
pub enum Input {
    Smr(smr::replica::Input),
}

#[derive(Debug)]
pub enum Output {
    /// The `seq`-th update in the global order ran here.
    Executed {
        seq: Seq,
        client: ClientId,
        ts: u64,
        digest: Digest,
        result: Vec<u8>,
    },
    /// The nested SMR replica's outputs (decided batches, views).
    Smr(smr::replica::Output),
    /// This server's site installed global view `gv` (its leading site is
    /// `gv mod S`).
    GlobalView { gv: GlobalView },
}

/// What a server asks to make durable: for now its SMR replica's records
/// (the shares it signed and the executed prefix come with restarts).
#[derive(Debug)]
pub enum Record {
    Smr(smr::Record),
}

impl From<smr::Record> for Record {
    fn from(r: smr::Record) -> Self {
        Record::Smr(r)
    }
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Site operations submitted to the site SMR.
    pub submitted: u64,
    /// Shares sent to the representative.
    pub shares_sent: u64,
    /// Site messages this server combined and sent as representative.
    pub spoken: u64,
    /// Site signatures (threshold, one pairing check each) this server
    /// verified: each signed site message once. With `shares_sent` and
    /// `spoken` it is what a CPU model charges for threshold crypto.
    pub site_verifies: u64,
    /// Message copies this server sent to servers of other sites.
    pub wan_sent: u64,
    /// Site messages relayed inside the site.
    pub relayed: u64,
    /// Site messages or updates dropped at a bound.
    pub dropped: u64,
    /// Updates executed, and replies sent.
    pub executed: u64,
    pub replies: u64,
    /// Conflicting site messages seen.
    pub conflicts: u64,
    /// Retransmission ticks that found this server stuck, Need requests
    /// sent, and site messages sent again (shares, signed words, forwards).
    pub stuck: u64,
    pub needs: u64,
    pub resent: u64,
    /// Updates this server acted on for a representative that did not
    /// (submitted, or forwarded, after the local timeout).
    pub acted: u64,
    /// Local representatives this server suspected (no signed word in time)
    /// and global suspicions it submitted.
    pub local_suspicions: u64,
    pub global_suspicions: u64,
    /// Global views installed at this server's site.
    pub global_views: u64,
    /// Updates this server submitted for re-proposal (bound by
    /// constraints), and no-op Proposals its site said.
    pub reproposed: u64,
    pub noops: u64,
    /// Local read-only queries answered (§4.3).
    pub reads: u64,
    /// Needs of other sites' servers answered, the signed words and bytes
    /// sent in those answers, Needs dropped (more than one per asker per
    /// answer period) and answers cut at [`Config::need_bytes`].
    pub need_answers: u64,
    pub need_words: u64,
    pub need_bytes: u64,
    pub needs_dropped: u64,
    pub need_truncated: u64,
}

/// What a server holds that peers can grow, and its bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Global seqs ahead of execution ([`Config::window`]) and the bytes of
    /// their operations ([`Config::held_bytes`]).
    pub seqs: usize,
    pub seq_bytes: usize,
    /// Site messages with shares waiting at this server's voice, and their
    /// bytes ([`Config::voice_bytes`]).
    pub shares_open: usize,
    pub share_bytes: usize,
    /// Site operations queued for the site SMR (bounded in bytes by
    /// `submit::SUBMIT_BYTES`) and submitted but not yet executed (at most
    /// the SMR's `client_window`).
    pub ops_queued: usize,
    pub ops_outstanding: u64,
    /// Signed site messages kept for retransmission and Need answers (at
    /// most one per site per seq, seqs within a window either side of
    /// execution), and view-change messages (one per site and kind).
    pub signed: usize,
    pub view_msgs: usize,
    /// What this site said that this server has not seen signed yet (at
    /// most [`Config::window`]), and client updates waiting here (one per
    /// known client).
    pub awaiting: usize,
    pub updates: usize,
    /// Read-only queries waiting for execution to reach their floor (one
    /// per known client of this site).
    pub queries: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("node {0} is not a server of any site")]
    NotAMember(NodeId),
    #[error("the key share has index {got}, node {node} is member {expected} of its site")]
    KeyIndex {
        node: NodeId,
        got: u32,
        expected: u32,
    },
    #[error("the client crypto must be for {expected:?}, got {got:?}")]
    ClientCrypto { expected: Addr, got: Addr },
    #[error("recovering the site SMR replica: {0}")]
    Recover(String),
}

/// A bounded map of digests, oldest forgotten first.
struct Recent<V> {
    map: BTreeMap<Digest, V>,
    order: VecDeque<Digest>,
    cap: usize,
}

impl<V> Recent<V> {
    fn new(cap: usize) -> Self {
        Recent {
            map: BTreeMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }
    fn contains(&self, d: &Digest) -> bool {
        self.map.contains_key(d)
    }
    fn get(&self, d: &Digest) -> Option<&V> {
        self.map.get(d)
    }
    fn insert(&mut self, d: Digest, v: V) {
        if self.map.insert(d, v).is_none() {
            self.order.push_back(d);
        }
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// What the server last executed of a client: (ts, seq, result); the
/// result is kept for clients of this site only (they get replies).
type Executed = (u64, Seq, Vec<u8>);

pub struct Server<A: Service> {
    me: NodeId,
    site: SiteId,
    cfg: Arc<Config>,
    smr: smr::Replica<SiteMachine>,
    submit: Submitter,
    client_crypto: Crypto,
    key: KeyShare,
    voices: Vec<Voice<Statement>>,
    checked: Recent<()>,
    /// As representative: the Proposals and Accepts this server combined
    /// (digest of the signed bytes → seq, when), so a server that resends
    /// its share of one (it missed the signed copy) gets the word again
    /// (at most [`Config::window`]).
    spoken: Recent<(u64, byzscale_core::Time)>,
    order: GlobalOrder,
    app: A,
    /// Per known client (bounded by [`Config::clients`]).
    last: BTreeMap<ClientId, Executed>,
    /// The leading site's representative: per client, the highest
    /// timestamp queued for ASSIGN-SEQUENCE.
    assigning: BTreeMap<ClientId, u64>,
    /// A representative of another site: (seq, gv) of Proposals queued for
    /// acceptance (pruned as execution passes them).
    proposing: BTreeSet<(u64, GlobalView)>,
    /// Signed site messages of every site, own included (retransmission).
    signed: SignedStore,
    /// What this site said, not yet seen signed: the share, for the
    /// representative again (keyed by the signed bytes' digest).
    awaiting: BTreeMap<Digest, Awaiting>,
    /// Client updates waiting for execution here (own site's clients, and
    /// at the leading site the forwarded ones): one per client.
    updates: BTreeMap<ClientId, Waiting>,
    /// Read-only queries of this site's clients held until execution
    /// reaches their floor: one per client.
    queries: BTreeMap<ClientId, Query>,
    /// Per server of another site that sent a Need: when it was last
    /// answered and what it sent since (bounded by the servers of the
    /// configuration).
    asked: BTreeMap<NodeId, Asked>,
    /// The executed seq at the last tick.
    tick_executed: u64,
    /// The global view change at this server (timers, what it submitted).
    view: ViewState,
    stats: Stats,
}

impl<A: Service> Server<A> {
    /// Server `me` with its site's threshold `key` and `client_crypto`, its
    /// identity as the client `ClientId::for_replica(me)` of its site's SMR
    /// (with its site's members as peers), running `app`.
    pub fn new(
        me: NodeId,
        cfg: Arc<Config>,
        key: KeyShare,
        client_crypto: Crypto,
        app: A,
    ) -> Result<Self, Error> {
        let (site, pos) = cfg.site_of(me).ok_or(Error::NotAMember(me))?;
        if key.index() != pos {
            let got = key.index();
            return Err(Error::KeyIndex {
                node: me,
                got,
                expected: pos,
            });
        }
        let id = ClientId::for_replica(me);
        if client_crypto.me() != Addr::Client(id) {
            let (expected, got) = (Addr::Client(id), client_crypto.me());
            return Err(Error::ClientCrypto { expected, got });
        }
        let group = cfg.group(site).ok_or(Error::NotAMember(me))?;
        let params = cfg.smr_params(site);
        let machine = SiteMachine::new(site, cfg.site_count(), cfg.window).with_f(cfg.f);
        let submit = Submitter::new(id, params.client_window);
        let voices = (0..cfg.site_count())
            .map(|s| {
                let bound = if s == site.0 { cfg.voice_bytes } else { 0 };
                Voice::new(cfg.sites[s as usize].key.clone(), SITE_DOMAIN, bound)
            })
            .collect();
        let order = GlobalOrder::new(cfg.site_count(), cfg.window, cfg.held_bytes);
        let view = ViewState::new(cfg.global_timeout);
        let spoken = Recent::new(cfg.window as usize);
        Ok(Server {
            me,
            site,
            smr: smr::Replica::new(me, group, params, machine),
            cfg,
            submit,
            client_crypto,
            key,
            voices,
            checked: Recent::new(CHECKED_MEMORY),
            spoken,
            order,
            app,
            last: BTreeMap::new(),
            assigning: BTreeMap::new(),
            proposing: BTreeSet::new(),
            signed: SignedStore::default(),
            awaiting: BTreeMap::new(),
            updates: BTreeMap::new(),
            queries: BTreeMap::new(),
            asked: BTreeMap::new(),
            tick_executed: 0,
            view,
            stats: Stats::default(),
        })
    }

    /// [`Server::new`] for a restarted server: its site's SMR replica
    /// recovered from `durable` (the fold of its [`Record::Smr`] records,
    /// `crypto` its node's, to check the certificates), so the site machine
    /// (what the site said, per seq) comes back with the SMR state and the
    /// server says again exactly what it said before. It submits its site
    /// operations in a new SMR session (`submit.rs`). The application and the global order start empty:
    /// the server executes the global order again from seq 1 with what
    /// other servers retransmit (their signed words within
    /// [`Config::window`] of their execution); no application state
    /// transfer yet.
    pub fn recover(
        me: NodeId,
        cfg: Arc<Config>,
        key: KeyShare,
        client_crypto: Crypto,
        app: A,
        durable: smr::Durable,
        crypto: &Crypto,
    ) -> Result<Self, Error> {
        let mut s = Server::new(me, cfg.clone(), key, client_crypto, app)?;
        let group = cfg.group(s.site).ok_or(Error::NotAMember(me))?;
        let machine = SiteMachine::new(s.site, cfg.site_count(), cfg.window).with_f(cfg.f);
        let params = cfg.smr_params(s.site);
        s.smr = smr::Replica::recover(me, group, params, machine, durable, crypto)
            .map_err(Error::Recover)?;
        let executed = s.smr.executed();
        s.submit.session = match s.smr.client_session(s.submit.id) {
            Some((prev, _)) if prev >= executed => prev + 1,
            _ => executed,
        };
        Ok(s)
    }

    pub fn node(&self) -> NodeId {
        self.me
    }
    /// The deployment this server is part of.
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }
    pub fn site(&self) -> SiteId {
        self.site
    }
    pub fn smr(&self) -> &smr::Replica<SiteMachine> {
        &self.smr
    }
    pub fn machine(&self) -> &SiteMachine {
        self.smr.service()
    }
    pub fn app(&self) -> &A {
        &self.app
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// The global timer's current timeout (doubled by global view changes
    /// without progress, reset by progress).
    pub fn global_timeout(&self) -> byzscale_core::Time {
        self.view.timeout()
    }
    /// The last globally ordered seq executed here.
    pub fn executed(&self) -> Seq {
        self.order.executed()
    }
    /// What waits here (each bounded, see [`Held`]).
    pub fn held(&self) -> Held {
        let (seqs, seq_bytes) = self.order.held();
        let (shares_open, share_bytes) = self.voices[self.site.0 as usize].waiting();
        let (ops_queued, ops_outstanding) = self.submit.backlog();
        Held {
            seqs,
            seq_bytes,
            shares_open,
            share_bytes,
            ops_queued,
            ops_outstanding,
            signed: self.signed.len(),
            view_msgs: self.view.msgs.len(),
            awaiting: self.awaiting.len(),
            updates: self.updates.len(),
            queries: self.queries.len(),
        }
    }

    /// The site's representative: the SMR leader of the current local view.
    fn rep(&self) -> NodeId {
        self.smr.group().leader(self.smr.view())
    }

    fn is_rep(&self) -> bool {
        self.smr.is_leader() && self.smr.status() == smr::Status::Normal
    }

    /// The other servers of this site.
    fn site_peers(&self) -> Vec<Addr> {
        let members = &self.cfg.sites[self.site.0 as usize].members;
        let others = members.iter().filter(|m| **m != self.me);
        others.map(|m| Addr::Node(*m)).collect()
    }

    /// Run a step of the site's SMR replica and act on what it did.
    fn smr_step(
        &mut self,
        cx: &mut Cx<'_, Self>,
        f: impl FnOnce(&mut smr::Replica<SiteMachine>, &mut Cx<'_, smr::Replica<SiteMachine>>),
    ) {
        let smr = &mut self.smr;
        let ((), mut step) = cx.nested(|icx| f(smr, icx));
        // replies to the servers' submissions: their effect is seen in the
        // machine's outbox, nobody waits for them
        step.effects
            .retain(|e| !matches!(e, Effect::Send { to: Addr::Client(c), .. } if c.is_replica()));
        for o in step.lift(cx, Message::Local, Timer::Smr) {
            if let smr::replica::Output::Decided { batch, .. } = &o {
                let (id, session) = (self.submit.id, self.submit.session);
                let mine = batch.requests.iter();
                let mine = mine.filter(|r| r.client == id && r.session == session);
                if let Some(seq) = mine.map(|r| r.seq).max() {
                    self.submit.executed(seq);
                }
            }
            cx.output(Output::Smr(o));
        }
        self.drain(cx);
    }

    /// Act on what the site machine did in the last SMR step.
    fn drain(&mut self, cx: &mut Cx<'_, Self>) {
        for e in self.smr.service().take_events() {
            match e {
                Event::Said(msg) => self.on_said(msg, cx),
                Event::Conflict { gv, seq } => {
                    self.stats.conflicts += 1;
                    tracing::warn!(server = %self.me, gv = gv.0, seq = seq.0,
                        "the leading site signed two Proposals for one seq");
                }
                Event::Installed(gv) => self.on_installed(gv, cx),
            }
        }
        self.repropose();
    }

    /// Submit the queued site operations the window allows.
    fn pump(&mut self, cx: &mut Cx<'_, Self>) {
        while let Some((n, op)) = self.submit.next(self.smr.executed()) {
            let (id, session, group) = (self.submit.id, self.submit.session, self.smr.group());
            let req = smr::Request::authenticated(
                &self.client_crypto,
                group,
                id,
                (session, n),
                false,
                op,
            );
            self.stats.submitted += 1;
            let msg = smr::Message::Request(req);
            self.smr_step(cx, |r, icx| r.on_message(Addr::Client(id), msg, icx));
        }
    }
}

impl<A: Service> Protocol for Server<A> {
    type Message = Message;
    type Input = Input;
    type Output = Output;
    type Timer = Timer;
    type Record = Record;

    fn priority(msg: &Message) -> Priority {
        match msg {
            Message::Local(m) => m.priority(),
            _ => Priority::Control,
        }
    }

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        self.smr_step(cx, |r, icx| r.on_start(icx));
        cx.set_timer(Timer::Tick, self.cfg.tick);
    }

    fn on_input(&mut self, input: Input, cx: &mut Cx<'_, Self>) {
        match input {
            Input::Smr(i) => self.smr_step(cx, |r, icx| r.on_input(i, icx)),
        }
        self.pump(cx);
    }

    fn on_message(&mut self, from: Addr, msg: Message, cx: &mut Cx<'_, Self>) {
        match msg {
            Message::Local(m) => self.on_local(from, m, cx),
            Message::Share { digest, share } => self.on_share(from, digest, share, cx),
            Message::Site(s) => self.on_site(from, s, cx),
            Message::Submit(u) => self.on_submit(from, u, cx),
            Message::Forward(u) => self.on_forward(from, u, cx),
            Message::Reply(_) => cx.fault(from, Fault::Unexpected, "a reply sent to a server"),
            Message::Need { gv, seq } => self.on_need(from, gv, seq, cx),
            Message::Query(q) => self.on_query(from, q, cx),
            Message::QueryReply(_) => {
                cx.fault(from, Fault::Unexpected, "a query reply sent to a server")
            }
        }
        self.pump(cx);
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Cx<'_, Self>) {
        match timer {
            Timer::Smr(t) => self.smr_step(cx, |r, icx| r.on_timer(t, icx)),
            Timer::Tick => {
                self.on_tick(cx);
                cx.set_timer(Timer::Tick, self.cfg.tick);
            }
        }
        self.pump(cx);
    }
}
