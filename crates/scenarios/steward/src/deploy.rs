//! A Steward deployment on the simulator engine: S sites of 3f+1 servers
//! (one network region each, LAN inside, WAN between), clients at every
//! site, real crypto (ed25519 updates, BLS threshold signatures), and the
//! observer that records what every node produced. The scenario builds its
//! runs with it ([`Spec`]), and the protocol crate's own tests use it as it
//! is ([`Deployment::new`]: f = 1, 20 ms WAN, free CPU).

use byzscale_apps::kv::{KvOp, KvReply, KvStore};
use byzscale_core::crypto::{Crypto, CryptoMode, Digest, Identity};
use byzscale_core::protocol::{Time, MICROS, MILLIS, SECS};
use byzscale_core::threshold::{deal, KeyShare};
use byzscale_core::{Addr, ClientId, NodeId};
use byzscale_sim::cpu::CpuModel;
use byzscale_sim::engine::{Actor, Control, NodeIdx, ProtocolActor, Role, Sim, TraceKind};
use byzscale_sim::net_model::NetModel;
use byzscale_smr::{self as smr, Params};
use byzscale_steward::{
    client, server, Client, Config, GlobalView, Message, Seq, Server, Site, SiteId,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

pub type In = Role<client::Input, server::Input>;
pub type Out = Role<client::Output, server::Output>;
pub type Kv = Server<KvStore>;

/// One way inside a site, and between two sites.
pub const LAN: Time = 200 * MICROS;
pub const WAN: Time = 20 * MILLIS;

/// What every update does: one shared counter, so each result is the
/// update's position in the one execution order.
pub fn op() -> Vec<u8> {
    KvOp::Incr(b"ctr".to_vec()).encode()
}

/// The read-only operation reading that counter.
pub fn read_op() -> Vec<u8> {
    KvOp::Get(b"ctr".to_vec()).encode()
}

/// [`op`] and [`read_op`] on a counter whose name is long enough that the
/// update's operation takes at least `bytes` (Steward's paper: 200-byte
/// updates); `0`: the short ones.
pub fn ops_of(bytes: usize) -> (Vec<u8>, Vec<u8>) {
    if bytes == 0 {
        return (op(), read_op());
    }
    let mut key = b"ctr".to_vec();
    while KvOp::Incr(key.clone()).encode().len() < bytes {
        key.push(b'.');
    }
    (KvOp::Incr(key.clone()).encode(), KvOp::Get(key).encode())
}

/// The counter's value in a result (an update's or a read's): 0 when the
/// key does not exist yet; `None` for anything else.
pub fn counter(result: &[u8]) -> Option<i64> {
    match KvReply::decode(result).ok()? {
        KvReply::Int(n) => Some(n),
        KvReply::Nil => Some(0),
        KvReply::Bulk(b) => std::str::from_utf8(&b).ok()?.parse().ok(),
        _ => None,
    }
}

pub fn identity(a: Addr) -> Identity {
    let mut seed = [9u8; 32];
    match a {
        Addr::Node(n) => seed[..4].copy_from_slice(&n.0.to_le_bytes()),
        Addr::Client(c) => {
            seed[4] = 1;
            seed[5..13].copy_from_slice(&c.0.to_le_bytes());
        }
    }
    Identity::from_seed(seed)
}

pub struct Deployment {
    pub cfg: Arc<Config>,
    pub f: usize,
    pub keys: Vec<Vec<KeyShare>>,
    pub sim: Sim<Message, In, Out>,
    /// Server node indices by site, then the clients' (id, node).
    pub servers: Vec<Vec<NodeIdx>>,
    pub clients: Vec<(ClientId, NodeIdx)>,
    /// The clients' retransmission timeout.
    pub client_retry: Time,
}

/// The site SMR's parameters of the protocol tests.
pub fn test_params() -> Params {
    Params {
        checkpoint_interval: 16,
        window: 64,
        request_timeout: 200 * MILLIS,
        view_change_timeout: 200 * MILLIS,
        client_retry: SECS,
        fetch_interval: 20 * MILLIS,
        ..Params::default()
    }
}

fn test_net(sites: usize) -> NetModel {
    let regions = (0..sites).map(|s| format!("site{s}")).collect();
    let one_way = (0..sites)
        .map(|i| (0..sites).map(|j| if i == j { LAN } else { WAN }).collect())
        .collect();
    NetModel::from_matrix(regions, one_way)
        .expect("a valid matrix")
        .with_jitter(100 * MICROS)
}

/// What a deployment is: `sites` sites of 3f+1 servers (site s in region
/// s of `net`), `clients` clients (client k at site k mod S), the
/// site SMR's parameters, the client's retransmission timeout, the CPU
/// model and whether the engine keeps a trace.
#[derive(Clone, Debug)]
pub struct Spec {
    pub sites: usize,
    pub f: usize,
    pub clients: usize,
    pub net: NetModel,
    pub cpu: CpuModel,
    pub params: Params,
    pub client_retry: Time,
    pub trace: bool,
}

impl Spec {
    /// The protocol tests' deployment: f = 1, LAN 200 µs, WAN 20 ms, free
    /// CPU, traced.
    pub fn test(sites: usize, per_site: usize) -> Spec {
        Spec {
            sites,
            f: 1,
            clients: sites * per_site,
            net: test_net(sites),
            cpu: CpuModel::free(),
            params: test_params(),
            client_retry: SECS,
            trace: true,
        }
    }
}

/// Makes the actor of server `me` (holding `key`) from its honest server:
/// the place where a Byzantine one is put.
pub trait Wrap: FnMut(NodeId, &KeyShare, Kv) -> Box<dyn Actor<Message, In, Out>> {}
impl<F: FnMut(NodeId, &KeyShare, Kv) -> Box<dyn Actor<Message, In, Out>>> Wrap for F {}

impl Deployment {
    /// `sites` sites of 4 servers (f = 1) and `per_site` clients at each;
    /// `wrap` may replace a server's actor (a Byzantine one).
    pub fn new(seed: u64, sites: usize, per_site: usize, wrap: impl Wrap) -> Deployment {
        Deployment::with_config(seed, sites, per_site, |_| {}, wrap)
    }

    /// [`Deployment::new`] with `tweak` applied to the configuration.
    pub fn with_config(
        seed: u64,
        sites: usize,
        per_site: usize,
        tweak: impl FnOnce(&mut Config),
        wrap: impl Wrap,
    ) -> Deployment {
        Deployment::build(seed, &Spec::test(sites, per_site), tweak, wrap)
            .expect("a valid test deployment")
    }

    /// The deployment `spec` of `seed` (keys dealt from it), with `tweak`
    /// applied to the configuration and `wrap` making each server's actor.
    pub fn build(
        seed: u64,
        spec: &Spec,
        tweak: impl FnOnce(&mut Config),
        mut wrap: impl Wrap,
    ) -> Result<Deployment, String> {
        let (sites, f) = (spec.sites, spec.f);
        let n = 3 * f + 1;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut keys = Vec::new();
        let mut site_list = Vec::new();
        for s in 0..sites {
            let (key, shares) = deal(2 * f + 1, n, &mut rng).map_err(|e| e.to_string())?;
            let members = (0..n).map(|i| NodeId((s * n + i) as u32)).collect();
            site_list.push(Site { members, key });
            keys.push(shares);
        }
        let ids: Vec<(ClientId, SiteId)> = (0..spec.clients)
            .map(|k| (ClientId(1 + k as u64), SiteId((k % sites) as u32)))
            .collect();
        let homes = ids.iter().copied().collect();
        let mut cfg =
            Config::new(site_list, f, homes, spec.params.clone()).map_err(|e| e.to_string())?;
        tweak(&mut cfg);
        let cfg = Arc::new(cfg);
        let mut sim = Sim::new(seed, spec.net.clone(), spec.cpu);
        sim.set_trace(spec.trace);
        let mut w = Deployment {
            cfg,
            f,
            keys,
            sim,
            servers: Vec::new(),
            clients: Vec::new(),
            client_retry: spec.client_retry,
        };
        for s in 0..sites {
            let nodes = (0..n).map(|i| w.add_server(s, i, &mut wrap)).collect();
            w.servers.push(nodes);
        }
        for (c, site) in ids {
            let idx = w.add_client(c, site);
            w.clients.push((c, idx));
        }
        Ok(w)
    }

    fn all_servers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.cfg
            .sites
            .iter()
            .flat_map(|s| s.members.iter().copied())
    }

    fn add_server(&mut self, s: usize, i: usize, wrap: &mut impl Wrap) -> NodeIdx {
        let (server, crypto) = self.server(s, i);
        let me = server.node();
        let actor = wrap(me, &self.keys[s][i], server);
        self.sim.add_node(Addr::Node(me), crypto, actor, s)
    }

    /// Server `i` of site `s`, new, with the crypto of its node.
    pub fn server(&self, s: usize, i: usize) -> (Kv, Crypto) {
        let me = self.cfg.sites[s].members[i];
        let id = |a| identity(a).public();
        let mut c = Crypto::new(Addr::Node(me), identity(Addr::Node(me)), CryptoMode::Real);
        for o in self.all_servers().filter(|o| *o != me) {
            c.add_peer(Addr::Node(o), id(Addr::Node(o))).unwrap();
        }
        for o in &self.cfg.sites[s].members {
            // the site's servers submit to its SMR as clients
            let as_client = Addr::Client(ClientId::for_replica(*o));
            c.add_peer(as_client, id(Addr::Node(*o))).unwrap();
        }
        for client in self.cfg.clients.keys() {
            c.add_peer(Addr::Client(*client), id(Addr::Client(*client)))
                .unwrap();
        }
        let me_client = Addr::Client(ClientId::for_replica(me));
        let mut cc = Crypto::new(me_client, identity(Addr::Node(me)), CryptoMode::Real);
        for o in &self.cfg.sites[s].members {
            cc.add_peer(Addr::Node(*o), id(Addr::Node(*o))).unwrap();
        }
        let key = self.keys[s][i].clone();
        let server =
            Server::new(me, self.cfg.clone(), key, cc, KvStore::new()).expect("a valid server");
        (server, c)
    }

    fn add_client(&mut self, id: ClientId, site: SiteId) -> NodeIdx {
        let members = self.cfg.sites[site.0 as usize].members.clone();
        let me = Addr::Client(id);
        let mut c = Crypto::new(me, identity(me), CryptoMode::Real);
        for m in &members {
            c.add_peer(Addr::Node(*m), identity(Addr::Node(*m)).public())
                .unwrap();
        }
        let client = Client::new(id, site, members, self.f, self.client_retry);
        let actor = ProtocolActor::client(client);
        self.sim.add_node(me, c, actor, site.0 as usize)
    }

    /// Which site a server address belongs to.
    pub fn site_of(&self, a: Addr) -> Option<SiteId> {
        self.cfg.site_of_addr(a).map(|(s, _)| s)
    }

    /// Message copies delivered from a server to a server of another site.
    pub fn wan_deliveries(&self) -> u64 {
        self.wan_deliveries_since(0)
    }

    /// Every client submits `per_client` updates; run until all complete
    /// (or `until`), then `drain` more so remote sites finish executing.
    pub fn run(&mut self, per_client: usize, until: Time, drain: Time) -> Seen {
        let inputs: Vec<(Time, NodeIdx, client::Input)> = self
            .clients
            .iter()
            .flat_map(|(_, idx)| (0..per_client).map(|_| (0, *idx, client::Input::Submit(op()))))
            .collect();
        let want = inputs.len();
        self.run_inputs(inputs, want, until, drain)
    }
}

impl Deployment {
    /// Deliver `inputs` (at, client node, input) to clients; run until
    /// `want` updates and reads complete (or `until`, absolute), then
    /// `drain` more.
    pub fn run_inputs(
        &mut self,
        inputs: Vec<(Time, NodeIdx, client::Input)>,
        want: usize,
        until: Time,
        drain: Time,
    ) -> Seen {
        for (at, idx, input) in inputs {
            self.sim.schedule_input(at, idx, Role::Client(input));
        }
        let mut seen = Seen {
            want,
            ..Seen::default()
        };
        self.sim.run_until(until, &mut seen);
        let mut rest = Seen::default();
        self.sim.run_for(drain, &mut rest);
        seen.absorb(rest);
        seen
    }

    /// Message copies delivered from a server to a server of another site
    /// at or after `since` (counted in the engine's trace).
    pub fn wan_deliveries_since(&self, since: Time) -> u64 {
        let site = |a: Addr| self.site_of(a);
        wan_copies(&self.sim, since, site)
    }
}

/// Message copies in `sim`'s trace, delivered at or after `since`, from a
/// server to a server of another site (`site_of` names a server's site,
/// `None` for a client): the WAN messages of Steward and of the flat
/// baseline alike.
pub fn wan_copies<M, I, O, S: PartialEq>(
    sim: &Sim<M, I, O>,
    since: Time,
    site_of: impl Fn(Addr) -> Option<S>,
) -> u64
where
    M: Clone + serde::Serialize + 'static,
    I: 'static,
    O: 'static,
{
    let mut n = 0;
    for e in sim.trace().iter().filter(|e| e.at >= since) {
        if let TraceKind::Deliver { from, .. } = e.kind {
            let (to, from) = (site_of(sim.addr(e.node)), site_of(from));
            if to.is_some() && from.is_some() && to != from {
                n += 1;
            }
        }
    }
    n
}

/// One read's answer at a client: (rid, site, executed, result).
pub type ReadDone = (u64, SiteId, Seq, Vec<u8>);

/// One execution at a server: (seq, client, ts, update digest, result).
pub type Execution = (Seq, ClientId, u64, Digest, Vec<u8>);

/// What a run produced.
#[derive(Default)]
pub struct Seen {
    want: usize,
    done: usize,
    /// Per server, its executions in order.
    pub executed: BTreeMap<NodeIdx, Vec<Execution>>,
    /// Per client, its completions in order: (ts, seq, result).
    pub completed: BTreeMap<Addr, Vec<(u64, Seq, Vec<u8>)>>,
    /// Per client, its local reads in order.
    pub reads: BTreeMap<Addr, Vec<ReadDone>>,
    /// Local views (the site SMR's) and global views servers entered.
    pub local_views: Vec<(NodeIdx, u64)>,
    pub global_views: Vec<(NodeIdx, GlobalView)>,
}

impl Seen {
    fn absorb(&mut self, o: Seen) {
        for (k, v) in o.executed {
            self.executed.entry(k).or_default().extend(v);
        }
        for (k, v) in o.completed {
            self.completed.entry(k).or_default().extend(v);
        }
        for (k, v) in o.reads {
            self.reads.entry(k).or_default().extend(v);
        }
        self.local_views.extend(o.local_views);
        self.global_views.extend(o.global_views);
    }
}

impl byzscale_sim::engine::Observer<In, Out> for Seen {
    fn on_output(&mut self, _: Time, node: NodeIdx, addr: Addr, out: Out, ctl: &mut Control<In>) {
        match out {
            Role::Replica(server::Output::Executed {
                seq,
                client,
                ts,
                digest,
                result,
            }) => {
                let log = self.executed.entry(node).or_default();
                log.push((seq, client, ts, digest, result));
            }
            Role::Replica(server::Output::Smr(smr::replica::Output::ViewChanged {
                view, ..
            })) => self.local_views.push((node, view)),
            Role::Replica(server::Output::Smr(_)) => {}
            Role::Replica(server::Output::GlobalView { gv }) => self.global_views.push((node, gv)),
            Role::Client(client::Output::Done { ts, seq, result }) => {
                self.completed
                    .entry(addr)
                    .or_default()
                    .push((ts, seq, result));
                self.done += 1;
                if self.done == self.want {
                    ctl.stop();
                }
            }
            Role::Client(client::Output::LocalRead {
                rid,
                site,
                executed,
                result,
            }) => {
                let read = (rid, site, executed, result);
                self.reads.entry(addr).or_default().push(read);
                self.done += 1;
                if self.done == self.want {
                    ctl.stop();
                }
            }
        }
    }
}

/// The correct servers' nodes.
pub fn correct_servers(w: &Deployment) -> Vec<NodeIdx> {
    let all = w.servers.iter().flatten().copied();
    all.filter(|n| !w.sim.is_byzantine(*n)).collect()
}

/// The S1 checker: every pair of correct servers that executed an update
/// at one seq executed the same one (no-ops of a view change are not
/// executions, so logs may skip seqs). Each violation, described.
pub fn s1_violations(w: &Deployment, seen: &Seen) -> Vec<String> {
    s1_among(&correct_servers(w), seen)
}

/// [`s1_violations`] among the servers `correct`.
pub fn s1_among(correct: &[NodeIdx], seen: &Seen) -> Vec<String> {
    let mut by_seq: BTreeMap<u64, (NodeIdx, ClientId, u64, Digest)> = BTreeMap::new();
    let mut out = Vec::new();
    for &n in correct {
        for (seq, c, ts, d, _) in seen.executed.get(&n).into_iter().flatten() {
            let (m, c0, ts0, d0) = *by_seq.entry(seq.0).or_insert((n, *c, *ts, *d));
            if d0 != *d {
                out.push(format!(
                    "seq {}: {c0}#{ts0} at {m:?}, {c}#{ts} at {n:?}",
                    seq.0
                ));
            }
        }
    }
    out
}
