//! Byzantine clients (`--byzantine-clients N`, issue 10): endpoints with
//! their own keys that misuse the client side of the protocol. Client `i`
//! of them plays [`ClientAttack::ALL`]`[i % 4]`:
//!
//! | behaviour | what it sends, to every replica |
//! |---|---|
//! | `partial-mac` | requests whose MAC entry is valid at the first replica only, never signed (issue 10 item 6) |
//! | `huge` | operations of `max_op_bytes + 1` (refused on arrival) and of exactly `max_op_bytes` (ordered and run), each the first of a new session named by the highest slot any reply or session answer told it (unverified) |
//! | `churn` | one request each from [`CHURN_IDS`] client ids, spread over the run: every id a new entry in the client table, which expires at checkpoints |
//! | `flood` | [`FLOOD_PER_TICK`] requests every 5 ticks, with sequence numbers ahead of their turn (up to the replicas' horizon, and far beyond it), and sessions far ahead of any slot; and a session query |
//!
//! The operations are raw bytes here ([`Raw`]); a protocol on top of SMR
//! whose replicas filter operations before ordering gives its own [`Ops`]
//! (the ByzCast scenario wraps them in multicast envelopes and nests a
//! [`Hostile`] per group in a ByzCast endpoint).
//!
//! Their requests are valid or not as the table says; the checkers exempt
//! them from validity (they name their own client) and from liveness (they
//! never complete). Honest clients must still complete, and the run reports
//! the peak bytes of the client table and of the pending table at every
//! correct replica ([`crate::Run::client_table_peak`]), so a test can hold
//! them to their bounds.

use byzscale_core::crypto::{Crypto, CryptoMode, Identity};
use byzscale_core::protocol::{Time, MICROS};
use byzscale_core::{Addr, ClientId, Cx, NoRecord, Protocol};
use byzscale_sim::runner::identity;
use byzscale_smr::{client, GroupInfo, Message, Params, Request};
use std::collections::BTreeSet;

/// Client ids the churn behaviour uses (one request each).
pub const CHURN_IDS: usize = 48;
/// Requests a flooding client sends per tick.
pub const FLOOD_PER_TICK: u64 = 16;
/// The first client id of Byzantine clients (honest ones count from 1).
pub const BYZ_BASE: u64 = 1 << 20;
/// Ticks a Byzantine client acts for (then it goes quiet: the run ends when
/// the honest clients are done).
const TICKS: u32 = 2000;
const TICK: Time = 200 * MICROS;

/// What a Byzantine client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAttack {
    PartialMac,
    Huge,
    Churn,
    Flood,
}

impl ClientAttack {
    pub const ALL: [ClientAttack; 4] = [
        ClientAttack::PartialMac,
        ClientAttack::Huge,
        ClientAttack::Churn,
        ClientAttack::Flood,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ClientAttack::PartialMac => "partial-mac",
            ClientAttack::Huge => "huge",
            ClientAttack::Churn => "churn",
            ClientAttack::Flood => "flood",
        }
    }
    /// How many endpoints (client ids) it takes.
    pub fn ids(self) -> usize {
        if self == ClientAttack::Churn {
            CHURN_IDS
        } else {
            1
        }
    }
}

/// The client ids of `count` Byzantine clients, with the behaviour of each:
/// consecutive from [`BYZ_BASE`], a churn client taking [`CHURN_IDS`].
pub fn byzantine_clients(count: usize) -> Vec<(ClientId, ClientAttack, usize)> {
    let mut out = Vec::new();
    let mut next = BYZ_BASE;
    for i in 0..count {
        let kind = ClientAttack::ALL[i % ClientAttack::ALL.len()];
        for k in 0..kind.ids() {
            out.push((ClientId(next), kind, k));
            next += 1;
        }
    }
    out
}

/// The keys of a run's clients: the honest ones (ids 1, 2, …, kind 2 of
/// [`identity`]) and the Byzantine ones ([`byzantine_clients`], kind 3)
/// with their behaviour and their place among a churn client's ids. The
/// replicas know them all; a client knows the replicas ([`client_crypto`]).
/// The ByzCast scenario's clients are the same.
pub struct ClientKeys {
    pub honest: Vec<(Addr, Identity)>,
    pub hostile: Vec<(Addr, Identity, ClientAttack, usize)>,
}

impl ClientKeys {
    /// `honest` honest clients and `byzantine` Byzantine ones.
    pub fn new(honest: usize, byzantine: usize) -> Self {
        ClientKeys {
            honest: (0..honest)
                .map(|i| (Addr::Client(ClientId(i as u64 + 1)), identity(2, i)))
                .collect(),
            hostile: byzantine_clients(byzantine)
                .into_iter()
                .enumerate()
                .map(|(i, (id, kind, k))| (Addr::Client(id), identity(3, i), kind, k))
                .collect(),
        }
    }

    /// Every client's address and keys, the honest ones first.
    pub fn all(&self) -> impl Iterator<Item = (Addr, &Identity)> {
        let hostile = self.hostile.iter().map(|(a, id, ..)| (*a, id));
        self.honest.iter().map(|(a, id)| (*a, id)).chain(hostile)
    }

    /// The Byzantine clients' ids.
    pub fn hostile_ids(&self) -> BTreeSet<ClientId> {
        let ids = self.hostile.iter().filter_map(|(a, ..)| a.client());
        ids.collect()
    }
}

/// The crypto of client `me` (keys `id`) in `mode`, knowing `replicas`.
pub fn client_crypto<'a>(
    mode: CryptoMode,
    me: Addr,
    id: &Identity,
    replicas: impl IntoIterator<Item = (Addr, &'a Identity)>,
) -> Crypto {
    let mut crypto = Crypto::new(me, id.clone(), mode);
    for (a, pid) in replicas {
        crypto.add_peer(a, pid.public()).expect("valid key");
    }
    crypto
}

/// How a Byzantine client makes its operations. The SMR scenario sends the
/// bytes as they are ([`Raw`]); a protocol whose replicas filter operations
/// before ordering them (ByzCast's envelopes, `byzscale_scenario_byzcast`)
/// wraps them so that they pass the filter and reach the SMR tables.
pub trait Ops {
    /// The operation carrying `body`, `body.len()` bytes in all where the
    /// wrapping allows, the `n`-th this client makes (from 1).
    fn op(&mut self, client: ClientId, n: u64, body: Vec<u8>) -> Vec<u8>;
    /// The largest operation the replicas take (the `huge` behaviour sends
    /// one of exactly this size, and one a byte larger).
    fn max_op(&self, p: &Params) -> usize {
        p.max_op_bytes
    }
}

/// Operations as they are: the SMR scenario's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Raw;
impl Ops for Raw {
    fn op(&mut self, _: ClientId, _: u64, body: Vec<u8>) -> Vec<u8> {
        body
    }
}

/// One Byzantine client endpoint.
pub struct Hostile<O: Ops = Raw> {
    id: ClientId,
    g: GroupInfo,
    p: Params,
    ops: O,
    /// Operations made so far.
    made: u64,
    /// Requests and session queries sent so far.
    sent: u64,
    kind: ClientAttack,
    /// Its place among the ids of a churn client (when it speaks).
    k: usize,
    last: u64,
    /// The highest slot a reply named (a session for `huge`).
    slot: u64,
    ticks: u32,
}

impl Hostile {
    pub fn new(id: ClientId, g: GroupInfo, p: Params, kind: ClientAttack, k: usize) -> Self {
        Hostile::with_ops(id, g, p, kind, k, Raw)
    }
}

impl<O: Ops> Hostile<O> {
    /// A Byzantine client of group `g` whose operations `ops` makes.
    pub fn with_ops(
        id: ClientId,
        g: GroupInfo,
        p: Params,
        kind: ClientAttack,
        k: usize,
        ops: O,
    ) -> Self {
        Hostile {
            id,
            g,
            p,
            ops,
            made: 0,
            sent: 0,
            kind,
            k,
            last: 0,
            slot: 0,
            ticks: 0,
        }
    }

    /// Requests and session queries it sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The next operation, carrying `body`.
    fn op(&mut self, body: Vec<u8>) -> Vec<u8> {
        self.made += 1;
        self.ops.op(self.id, self.made, body)
    }

    fn request(&mut self, id: (u64, u64), op: Vec<u8>, cx: &mut Cx<'_, Self>) -> Request {
        self.sent += 1;
        Request::authenticated(cx.crypto(), &self.g, self.id, id, false, op)
    }

    fn send(&mut self, id: (u64, u64), body: Vec<u8>, cx: &mut Cx<'_, Self>) {
        let op = self.op(body);
        let req = self.request(id, op, cx);
        cx.multicast(self.g.addrs(), Message::Request(req));
    }

    fn act(&mut self, cx: &mut Cx<'_, Self>) {
        match self.kind {
            ClientAttack::PartialMac => {
                self.last += 1;
                let op = self.op(format!("partial-{}", self.last).into_bytes());
                let mut req = self.request((0, self.last), op, cx);
                for m in req.auth.iter_mut().skip(1) {
                    *m = Default::default();
                }
                cx.multicast(self.g.addrs(), Message::Request(req));
            }
            ClientAttack::Huge => {
                if self.ticks.is_multiple_of(10) && self.ticks <= 200 {
                    let over = (self.ticks / 10).is_multiple_of(2);
                    let len = self.ops.max_op(&self.p) + usize::from(over);
                    self.send((self.slot, 1), vec![b'x'; len], cx);
                }
            }
            ClientAttack::Churn => {
                // each id speaks once, one a tick
                if self.ticks as usize == 1 + self.k {
                    self.send((0, 1), b"churn".to_vec(), cx);
                }
            }
            ClientAttack::Flood if self.ticks.is_multiple_of(5) => {
                let horizon = 4 * self.p.client_window;
                for j in 0..FLOOD_PER_TICK {
                    let t = self.ticks as u64 * FLOOD_PER_TICK + j;
                    // ahead of its turn within the horizon, and far beyond
                    // it; a session far ahead of any slot
                    let id = match j % 4 {
                        3 => (0, u64::MAX - t),
                        2 => (u64::MAX - t, 1),
                        _ => (0, 2 + t % horizon),
                    };
                    self.send(id, vec![b'f'; 2048], cx);
                }
                // session queries cost the replicas an answer each, and
                // nothing kept
                let query = Message::SessionQuery {
                    client: self.id,
                    nonce: u64::MAX - self.ticks as u64,
                };
                self.sent += 1;
                cx.multicast(self.g.addrs(), query);
            }
            ClientAttack::Flood => {}
        }
    }
}

impl<O: Ops> Protocol for Hostile<O> {
    type Message = Message;
    type Input = client::Input;
    type Output = client::Output;
    type Timer = ();
    type Record = NoRecord;

    fn on_start(&mut self, cx: &mut Cx<'_, Self>) {
        cx.set_timer((), TICK);
    }
    fn on_input(&mut self, _: client::Input, _: &mut Cx<'_, Self>) {}
    fn on_message(&mut self, _: Addr, m: Message, _: &mut Cx<'_, Self>) {
        match m {
            Message::Reply(r) => self.slot = self.slot.max(r.slot),
            Message::SessionInfo { executed, .. } => self.slot = self.slot.max(executed),
            _ => {}
        }
    }
    fn on_timer(&mut self, _: (), cx: &mut Cx<'_, Self>) {
        self.ticks += 1;
        if self.ticks > TICKS {
            return;
        }
        self.act(cx);
        cx.set_timer((), TICK);
    }
}
