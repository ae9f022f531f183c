//! The flat-BFT baseline (`--protocol flat`): the SMR core with the same
//! servers (S sites × (3f+1), f_flat = (N−1)/3) on the same sites, WAN and
//! CPU model as Steward, and the same clients at the same sites. Its nodes
//! run in Steward's simulation types through [`Flat`], which carries the
//! SMR's messages as `Message::Local` and maps its outputs: a replica's
//! outputs are `server::Output::Smr`, a client's completion is
//! `client::Output::Done` (ts = the request's number, seq = its slot).

use crate::deploy::{identity, In, Out};
use byzscale_apps::kv::KvStore;
use byzscale_core::crypto::{Crypto, CryptoMode};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_sim::engine::{
    Actor, ActorCx, ActorEffect, BoxActor, NodeIdx, ProtocolActor, Role, Sim,
};
use byzscale_smr::{self as smr, GroupInfo, Params};
use byzscale_steward::{client, server, Message, Seq};

type SmrIn = Role<smr::client::Input, smr::replica::Input>;
type SmrOut = Role<smr::client::Output, smr::replica::Output>;

/// An SMR actor (replica or client) inside Steward's simulation types.
pub struct Flat {
    inner: Box<dyn Actor<smr::Message, SmrIn, SmrOut>>,
}

fn output(o: SmrOut) -> Option<Out> {
    match o {
        Role::Replica(r) => Some(Role::Replica(server::Output::Smr(r))),
        Role::Client(smr::client::Output::Done {
            id, result, slot, ..
        }) => Some(Role::Client(client::Output::Done {
            ts: id,
            seq: Seq(slot),
            result,
        })),
        // refusals and expiries do not happen to this workload's clients;
        // the audit sees them as updates that never complete
        Role::Client(_) => None,
    }
}

impl Flat {
    /// Run `step` on the inner actor with a context of its types, then
    /// hand its effects on, mapped.
    fn step(
        &mut self,
        cx: &mut ActorCx<'_, Message, Out>,
        step: impl FnOnce(
            &mut dyn Actor<smr::Message, SmrIn, SmrOut>,
            &mut ActorCx<'_, smr::Message, SmrOut>,
        ),
    ) {
        let (now, me, node, crypto) = (cx.now(), cx.me(), cx.node(), cx.crypto());
        let mut knobs = cx.knobs();
        let mut fx = Vec::new();
        {
            let mut icx = ActorCx::new(now, me, node, cx.rng(), crypto, &mut knobs, &mut fx);
            step(&mut *self.inner, &mut icx);
        }
        *cx.knobs_mut() = knobs;
        for e in fx {
            let mapped = match e {
                ActorEffect::Send { to, msg } => ActorEffect::Send {
                    to,
                    msg: Message::Local(msg),
                },
                ActorEffect::Multicast { to, msg } => ActorEffect::Multicast {
                    to,
                    msg: Message::Local(msg),
                },
                ActorEffect::Spoofed {
                    claimed_from,
                    to,
                    msg,
                } => ActorEffect::Spoofed {
                    claimed_from,
                    to,
                    msg: Message::Local(msg),
                },
                ActorEffect::SetTimer { key, after } => ActorEffect::SetTimer { key, after },
                ActorEffect::CancelTimer { key } => ActorEffect::CancelTimer { key },
                ActorEffect::Output(o) => match output(o) {
                    Some(o) => ActorEffect::Output(o),
                    None => continue,
                },
                ActorEffect::Fault(f) => ActorEffect::Fault(f),
            };
            cx.effects_mut().push(mapped);
        }
    }
}

impl Actor<Message, In, Out> for Flat {
    fn start(&mut self, cx: &mut ActorCx<'_, Message, Out>) {
        self.step(cx, |a, cx| a.start(cx));
    }
    fn input(&mut self, input: In, cx: &mut ActorCx<'_, Message, Out>) {
        let Role::Client(client::Input::Submit(op)) = input else {
            return; // the baseline has no local reads
        };
        let input = Role::Client(smr::client::Input::Submit {
            op,
            read_only: false,
        });
        self.step(cx, |a, cx| a.input(input, cx));
    }
    fn message(&mut self, from: Addr, msg: Message, cx: &mut ActorCx<'_, Message, Out>) {
        if let Message::Local(m) = msg {
            self.step(cx, |a, cx| a.message(from, m, cx));
        }
    }
    fn timer(&mut self, key: u64, cx: &mut ActorCx<'_, Message, Out>) {
        self.step(cx, |a, cx| a.timer(key, cx));
    }
}

/// The replica nodes and the clients (id, node) of a flat group.
pub type Group = (Vec<NodeIdx>, Vec<(ClientId, NodeIdx)>);

/// The flat group of `sites` × `per_site_servers` replicas (replica k at
/// site k / per_site_servers, as Steward's servers) and `clients` clients
/// (client k at site k mod S), added to `sim`: (replica nodes, client
/// nodes with their ids).
pub fn build(
    sim: &mut Sim<Message, In, Out>,
    sites: usize,
    per_site_servers: usize,
    clients: usize,
    params: &Params,
    per_message: Option<byzscale_sim::cpu::SignEveryMessage>,
) -> Result<Group, String> {
    let n = sites * per_site_servers;
    let f = (n - 1) / 3;
    let qs = QuorumSystem::classic(n, f, FaultModel::Bft).map_err(|e| e.to_string())?;
    let members: Vec<NodeId> = (0..n as u32).map(NodeId).collect();
    let g = GroupInfo::new(GroupId(0), members.clone(), qs);
    let ids: Vec<ClientId> = (0..clients as u64).map(|k| ClientId(k + 1)).collect();
    let peers: Vec<Addr> = members
        .iter()
        .map(|m| Addr::Node(*m))
        .chain(ids.iter().map(|c| Addr::Client(*c)))
        .collect();
    let crypto = |me: Addr, knows: &[Addr]| {
        let mut c = Crypto::new(me, identity(me), CryptoMode::Real);
        for p in knows.iter().filter(|p| **p != me) {
            c.add_peer(*p, identity(*p).public()).expect("a valid key");
        }
        c
    };
    let mut replicas = Vec::new();
    for (k, m) in members.iter().enumerate() {
        let r = smr::Replica::new(*m, g.clone(), params.clone(), KvStore::new());
        let inner = Box::new(ProtocolActor::replica(r));
        let me = Addr::Node(*m);
        let actor: BoxActor<Message, In, Out> = Box::new(Flat { inner });
        let actor = match per_message {
            Some(p) => p.around(actor),
            None => actor,
        };
        let idx = sim.add_node(me, crypto(me, &peers), actor, k / per_site_servers);
        replicas.push(idx);
    }
    let servers = &peers[..n];
    let mut nodes = Vec::new();
    for (k, c) in ids.iter().enumerate() {
        let cl = smr::Client::new(*c, g.clone(), params.clone());
        let inner = Box::new(ProtocolActor::client(cl));
        let me = Addr::Client(*c);
        let idx = sim.add_node(me, crypto(me, servers), Flat { inner }, k % sites);
        nodes.push((*c, idx));
    }
    Ok((replicas, nodes))
}
