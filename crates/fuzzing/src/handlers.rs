//! Decoded messages handed to a real protocol instance, as the node's
//! dispatcher hands them: a panic in a message handler (not only in a
//! decoder) is a crash. Each target builds one correct instance with real
//! keys, then runs a sequence of steps from the input:
//!
//! - a sender byte `s` below [`TIMER`], a little-endian `u16` length and that
//!   many bytes: the bytes are decoded as the transport decodes them and, if
//!   they decode, delivered from sender `s % senders` (authenticated, as the
//!   transport authenticates every peer);
//! - [`TIMER`] and a byte: the armed timer it picks fires (time jumps to its
//!   deadline).
//!
//! Every message the instance sends must encode within the frame limit, and
//! its effects are otherwise dropped. What does not depend on the input is
//! built once per process (each endpoint's keys, see [`crypto`]), so an input
//! costs the protocol's own work. The seeds are valid runs (a client's
//! authenticated request at the leader, proposals, votes, a broadcast), so
//! the fuzzer starts past the signature and MAC checks.

use crate::protocols::topology;
use crate::transport::ident;
use byzscale_apps::kv::KvStore;
use byzscale_at2::{At2, Batch, Config as At2Config, Genesis, Node as At2Node};
use byzscale_broadcast::{bracha, probabilistic, Bracha, Contagion, ContagionParams};
use byzscale_core::codec::{self, DEFAULT_MAX_FRAME};
use byzscale_core::crypto::{Crypto, CryptoMode, Directory, Identity};
use byzscale_core::protocol::{Cx, Effect, Protocol, Time};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_net::wire;
use byzscale_smr::{GroupInfo, Params};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

/// The step byte that fires a timer.
pub const TIMER: u8 = 0xff;
/// The client every target knows (its key is `ident(Addr::Client(CLIENT))`).
pub const CLIENT: ClientId = ClientId(5);

/// One protocol instance and what its driver keeps: keys, RNG, clock, timers.
pub struct Driver<P: Protocol> {
    p: P,
    crypto: Crypto,
    rng: ChaCha8Rng,
    now: Time,
    timers: BTreeMap<P::Timer, Time>,
    /// Sends kept for [`cluster_seed`] (`None`: dropped).
    outbox: Option<Vec<(Vec<Addr>, Vec<u8>)>>,
}

impl<P: Protocol> Driver<P> {
    /// `p` with `crypto`, started.
    pub fn new(p: P, crypto: Crypto) -> Self {
        let mut d = Driver {
            p,
            crypto,
            rng: ChaCha8Rng::seed_from_u64(1),
            now: 0,
            timers: BTreeMap::new(),
            outbox: None,
        };
        d.step(|p, cx| p.on_start(cx));
        d
    }

    /// The instance.
    pub fn protocol(&self) -> &P {
        &self.p
    }

    /// One step; timers are kept, sends checked, the rest dropped.
    pub fn step(&mut self, f: impl FnOnce(&mut P, &mut Cx<'_, P>)) {
        let mut fx = Vec::new();
        f(
            &mut self.p,
            &mut Cx::new(self.now, &mut self.rng, &self.crypto, &mut fx),
        );
        for e in fx {
            match e {
                Effect::SetTimer { timer, after } => {
                    self.timers.insert(timer, self.now.saturating_add(after));
                }
                Effect::CancelTimer { timer } => {
                    self.timers.remove(&timer);
                }
                Effect::Send { to, msg } => self.sent(vec![to], &msg),
                Effect::Multicast { to, msg } => self.sent(to, &msg),
                Effect::Output(_) | Effect::Fault(_) | Effect::Persist(_) | Effect::Barrier => {}
            }
        }
    }

    fn sent(&mut self, to: Vec<Addr>, msg: &P::Message) {
        let bytes = codec::to_bytes(msg);
        assert!(
            bytes.len() <= DEFAULT_MAX_FRAME,
            "a correct instance sends a message of {} bytes, over the frame limit",
            bytes.len()
        );
        if let Some(out) = &mut self.outbox {
            out.push((to, bytes));
        }
    }

    /// Deliver `bytes` from `from` if they decode as a message.
    pub fn deliver(&mut self, from: Addr, bytes: &[u8]) {
        if let Ok(m) = wire::decode_message::<P::Message>(bytes, DEFAULT_MAX_FRAME) {
            self.step(|p, cx| p.on_message(from, m, cx));
        }
    }

    /// Fire the armed timer `pick` picks, if any.
    pub fn fire(&mut self, pick: u8) {
        if self.timers.is_empty() {
            return;
        }
        let i = pick as usize % self.timers.len();
        let timer = self.timers.keys().nth(i).cloned().expect("in range");
        let at = self.timers.remove(&timer).expect("armed");
        self.now = self.now.max(at);
        self.step(|p, cx| p.on_timer(timer, cx));
    }

    /// Run the steps of `data` (see the module docs) with these `senders`.
    pub fn run(&mut self, senders: &[Addr], mut data: &[u8]) {
        while let Some((&s, rest)) = data.split_first() {
            if s == TIMER {
                let Some((&pick, rest)) = rest.split_first() else {
                    return;
                };
                self.fire(pick);
                data = rest;
                continue;
            }
            let Some((len, rest)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let (msg, rest) = rest.split_at((u16::from_le_bytes(*len) as usize).min(rest.len()));
            self.deliver(senders[s as usize % senders.len()], msg);
            data = rest;
        }
    }
}

/// One step of the input layout: a message from sender index `s`.
pub fn message_step(s: u8, msg: &[u8]) -> Vec<u8> {
    assert!(s != TIMER && msg.len() <= u16::MAX as usize);
    [&[s][..], &(msg.len() as u16).to_le_bytes(), msg].concat()
}

/// One step of the input layout: fire timer `pick`.
pub fn timer_step(pick: u8) -> Vec<u8> {
    vec![TIMER, pick]
}

/// Every endpoint of the targets: nodes 0 to 11, [`CLIENT`], and nodes 0 to
/// 11 acting as clients of their child groups.
pub fn endpoints() -> Vec<Addr> {
    let nodes = (0..12).map(|i| Addr::Node(NodeId(i)));
    let as_clients = (0..12).map(|i| Addr::Client(ClientId::for_replica(NodeId(i))));
    nodes
        .chain([Addr::Client(CLIENT)])
        .chain(as_clients)
        .collect()
}

/// `me`'s real keys, knowing every endpoint: a clone of a template built
/// once per endpoint and thread with every pairwise MAC key derived, so an
/// input costs no key generation or derivation (signatures and MACs are still
/// made and checked for real, per message).
pub fn crypto(me: Addr) -> Crypto {
    static DIR: OnceLock<Arc<Directory>> = OnceLock::new();
    thread_local! {
        static TEMPLATES: RefCell<BTreeMap<Addr, Crypto>> = const { RefCell::new(BTreeMap::new()) };
    }
    TEMPLATES.with_borrow_mut(|t| {
        t.entry(me)
            .or_insert_with(|| {
                let dir = DIR.get_or_init(|| {
                    Arc::new(Directory::new(
                        endpoints().into_iter().map(|a| (a, key_of(a).public())),
                    ))
                });
                let c = Crypto::with_directory(me, key_of(me), CryptoMode::Real, dir.clone());
                c.derive_mac_keys();
                c
            })
            .clone()
    })
}

/// The identity of `a`: a replica acting as a client signs with its node key.
pub fn key_of(a: Addr) -> Identity {
    match a {
        Addr::Client(c) if c.0 >= ClientId::REPLICA_BASE => {
            ident(Addr::Node(NodeId((c.0 - ClientId::REPLICA_BASE) as u32)))
        }
        _ => ident(a),
    }
}

/// The SMR group of the targets: nodes 0 to 3, f = 1.
pub fn smr_group() -> GroupInfo {
    let qs = QuorumSystem::classic(4, 1, FaultModel::Bft).expect("n = 4, f = 1");
    GroupInfo::new(GroupId(0), (0..4).map(NodeId).collect(), qs)
}

/// Who may send to the SMR replica: the other members and [`CLIENT`].
pub fn smr_senders() -> Vec<Addr> {
    (0..4)
        .map(|i| Addr::Node(NodeId(i)))
        .chain([Addr::Client(CLIENT)])
        .collect()
}

/// A correct SMR replica (KV store) at node `me`.
pub fn smr_replica(me: u32) -> Driver<byzscale_smr::Replica<KvStore>> {
    let me = NodeId(me);
    let r = byzscale_smr::Replica::new(me, smr_group(), Params::default(), KvStore::new());
    Driver::new(r, crypto(me.into()))
}

/// Byte 0 picks the replica (even: node 0, the leader of view 0; odd: node
/// 1, a backup), the rest are steps.
pub fn smr(data: &[u8]) {
    let Some((&who, steps)) = data.split_first() else {
        return;
    };
    smr_replica(u32::from(who & 1)).run(&smr_senders(), steps);
}

/// Who may send to a ByzCast replica: every replica of the tree (parents
/// talk to their children node to node) and [`CLIENT`].
pub fn byzcast_senders() -> Vec<Addr> {
    endpoints()[..13].to_vec()
}

/// A correct ByzCast replica at node `me` of the two-level tree of
/// [`topology`].
pub fn byzcast_replica(me: u32) -> Driver<byzscale_byzcast::Replica> {
    let me = NodeId(me);
    let topo = topology();
    let as_client = crypto(Addr::Client(ClientId::for_replica(me)));
    let r = byzscale_byzcast::Replica::new(me, topo, Params::default(), as_client)
        .expect("a member of the tree");
    Driver::new(r, crypto(me.into()))
}

/// Byte 0 picks the replica (node 0, 1, 4 or 8: leaders and a backup of the
/// three groups), the rest are steps.
pub fn byzcast(data: &[u8]) {
    let Some((&who, steps)) = data.split_first() else {
        return;
    };
    let me = [0, 1, 4, 8][who as usize % 4];
    byzcast_replica(me).run(&byzcast_senders(), steps);
}

/// The AT2 members: nodes 0 to 3; demo accounts 0 to 3 hold 100 each.
pub fn at2_members() -> Vec<NodeId> {
    (0..4).map(NodeId).collect()
}

/// Who may send to an AT2 node: the other nodes and [`CLIENT`].
pub fn at2_senders() -> Vec<Addr> {
    smr_senders()
}

fn at2_config() -> Arc<At2Config> {
    Arc::new(At2Config::bracha(Genesis::demo(4, 100), at2_members()))
}

/// A correct AT2 node over Bracha at node `me`.
pub fn at2_bracha_node(me: u32) -> Driver<At2Node<Bracha<Batch>>> {
    let me = NodeId(me);
    let cfg = Arc::new(bracha::Config::new(at2_members()).expect("four members"));
    let node = At2Node::new(At2::new(Bracha::new(me, cfg), at2_config()));
    Driver::new(node, crypto(me.into()))
}

/// The Contagion parameters of the target (small samples over 4 nodes).
pub fn contagion_params() -> ContagionParams {
    ContagionParams {
        g: 3.0,
        e: 4,
        e_hat: 3,
        r: 4,
        r_hat: 2,
        d: 4,
        d_hat: 3,
    }
}

/// A correct AT2 node over Contagion at node `me`.
pub fn at2_contagion_node(me: u32) -> Driver<At2Node<Contagion<Batch>>> {
    let me = NodeId(me);
    let cfg = probabilistic::Config::new(at2_members(), contagion_params()).expect("valid");
    let node = At2Node::new(At2::new(Contagion::new(me, Arc::new(cfg)), at2_config()));
    Driver::new(node, crypto(me.into()))
}

/// Byte 0 picks the node (0 to 3), the rest are steps.
pub fn at2_bracha(data: &[u8]) {
    let Some((&who, steps)) = data.split_first() else {
        return;
    };
    at2_bracha_node(u32::from(who % 4)).run(&at2_senders(), steps);
}

/// Byte 0 picks the node (0 to 3), the rest are steps.
pub fn at2_contagion(data: &[u8]) {
    let Some((&who, steps)) = data.split_first() else {
        return;
    };
    at2_contagion_node(u32::from(who % 4)).run(&at2_senders(), steps);
}

/// A message of `from` to `to`, as bytes.
pub type Wire = (Addr, Addr, Vec<u8>);

/// A run of `nodes` (node `i` at `addrs[i]`) started by the `inject`ed
/// messages: each quiet moment, every node's first armed timer fires, for
/// `rounds` rounds. Returns what node `target` went through, as an input of
/// its target (byte `who`, then steps with sender indexes into `senders`),
/// cut at about `max_len` bytes. Nodes in `down` receive nothing.
#[allow(clippy::too_many_arguments)]
pub fn cluster_seed<P: Protocol>(
    mut nodes: Vec<Driver<P>>,
    addrs: &[Addr],
    senders: &[Addr],
    inject: Vec<Wire>,
    down: &[usize],
    target: usize,
    who: u8,
    rounds: usize,
    max_len: usize,
) -> Vec<u8> {
    for n in &mut nodes {
        n.outbox = Some(Vec::new());
    }
    let mut queue: VecDeque<Wire> = inject.into();
    let mut out = vec![who];
    let drain = |n: &mut Driver<P>, me: Addr, queue: &mut VecDeque<Wire>| {
        for (to, bytes) in n.outbox.as_mut().expect("recording").drain(..) {
            queue.extend(to.into_iter().map(|t| (me, t, bytes.clone())));
        }
    };
    for _ in 0..rounds {
        while let Some((from, to, bytes)) = queue.pop_front() {
            let Some(i) = addrs.iter().position(|a| *a == to) else {
                continue;
            };
            if down.contains(&i) {
                continue;
            }
            if i == target {
                if out.len() + bytes.len() + 3 > max_len {
                    return out;
                }
                let s = senders.iter().position(|a| *a == from).expect("a sender");
                out.extend(message_step(s as u8, &bytes));
            }
            nodes[i].deliver(from, &bytes);
            drain(&mut nodes[i], addrs[i], &mut queue);
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            if down.contains(&i) || n.timers.is_empty() {
                continue;
            }
            if i == target {
                out.extend(timer_step(0));
            }
            n.fire(0);
            drain(n, addrs[i], &mut queue);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input must not pay for key derivation: the keys an instance gets
    /// already hold every pairwise MAC key, and still work as real keys.
    #[test]
    fn instance_keys_come_warmed_and_real() {
        let (a, b) = (Addr::Node(NodeId(0)), Addr::Client(CLIENT));
        let ka = crypto(a);
        assert_eq!(ka.derived_mac_keys(), endpoints().len() - 1);
        let kb = crypto(b);
        assert!(kb.verify_mac(a, b"m", &ka.mac(b, b"m").unwrap()));
        assert!(!kb.verify_mac(a, b"n", &ka.mac(b, b"m").unwrap()));
        kb.verify(a, b"s", &ka.sign(b"s")).unwrap();
        assert!(kb.verify(a, b"t", &ka.sign(b"s")).is_err());
    }
}
