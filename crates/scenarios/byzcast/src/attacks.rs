//! The Byzantine replicas of `sim byzcast`: the generic wrappers of
//! [`byzscale_sim::adversary`] (with [`MessageSurgery`] for equivocation and
//! corruption of ByzCast messages), and the attacks of a Byzantine parent
//! replica, which live in its forwarding [`Policy`] (see the crate docs).

use crate::{Input, Output, Rep};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_byzcast::{Forward, ForwardPolicy, McastMsg, Message, MsgId, Results, Topology};
use byzscale_core::crypto::Crypto;
use byzscale_core::protocol::Time;
use byzscale_core::{Addr, ClientId, GroupId, NodeId};
use byzscale_scenario_smr::attacks::{self as smr_attacks, Collusion as SmrCollusion, Equivocator};
use byzscale_sim::adversary::{self, fields, Behavior, Byzantine, MixedPlan, Mutator, Wrapper};
use byzscale_sim::engine::{NodeIdx, ProtocolActor, Sim};
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Adversary {
    None,
    Silent,
    Replay,
    Slow,
    Equivocate,
    Twins,
    Mutate,
    Mixed,
    Early,
    Forge,
    Withhold,
    Reorder,
}

impl Adversary {
    pub fn name(self) -> &'static str {
        match self {
            Adversary::None => "none",
            Adversary::Silent => "silent",
            Adversary::Replay => "replay",
            Adversary::Slow => "slow",
            Adversary::Equivocate => "equivocate",
            Adversary::Twins => "twins",
            Adversary::Mutate => "mutate",
            Adversary::Mixed => "mixed",
            Adversary::Early => "early",
            Adversary::Forge => "forge",
            Adversary::Withhold => "withhold",
            Adversary::Reorder => "reorder",
        }
    }
    /// Every name `--byzantine` takes.
    pub fn names() -> Vec<&'static str> {
        [Adversary::None]
            .into_iter()
            .chain(Adversary::ALL)
            .map(Adversary::name)
            .collect()
    }
    pub fn from_name(name: &str) -> Option<Self> {
        [Adversary::None]
            .into_iter()
            .chain(Adversary::ALL)
            .find(|a| a.name() == name)
    }
    /// Every adversary but `None`.
    pub const ALL: [Adversary; 11] = [
        Adversary::Silent,
        Adversary::Replay,
        Adversary::Slow,
        Adversary::Equivocate,
        Adversary::Twins,
        Adversary::Mutate,
        Adversary::Mixed,
        Adversary::Early,
        Adversary::Forge,
        Adversary::Withhold,
        Adversary::Reorder,
    ];
    /// The ByzCast-specific attacks of a Byzantine parent replica.
    pub const PARENT: [Adversary; 4] = [
        Adversary::Early,
        Adversary::Forge,
        Adversary::Withhold,
        Adversary::Reorder,
    ];
}

/// State shared by the colluding Byzantine replicas of one group.
#[derive(Default)]
struct Collusion {
    /// Early forwarding: per child, the indices handed out in first-seen order.
    next: BTreeMap<GroupId, u64>,
    assigned: BTreeMap<(GroupId, MsgId), u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    Early,
    Forge,
    Withhold,
    Reorder,
}

/// The replicas' [`ForwardPolicy`]: honest, or one of the parent attacks.
pub struct Policy {
    attack: Option<Attack>,
    collusion: Rc<RefCell<Collusion>>,
    topo: Arc<Topology>,
    held: BTreeMap<GroupId, Forward>,
}

impl Policy {
    fn honest(topo: Arc<Topology>) -> Self {
        Policy {
            attack: None,
            collusion: Rc::default(),
            topo,
            held: BTreeMap::new(),
        }
    }
    fn early_index(&self, child: GroupId, id: MsgId) -> (u64, bool) {
        let mut c = self.collusion.borrow_mut();
        if let Some(k) = c.assigned.get(&(child, id)) {
            return (*k, false);
        }
        let next = c.next.entry(child).or_insert(0);
        *next += 1;
        let k = *next;
        c.assigned.insert((child, id), k);
        (k, true)
    }
    fn forged(&self, child: GroupId, k: u64) -> McastMsg {
        let target = self
            .topo
            .tree()
            .reach(child)
            .iter()
            .next()
            .copied()
            .unwrap_or(GroupId(0));
        McastMsg {
            id: MsgId {
                client: ClientId(0xBAD_0000),
                n: k * 1000 + child.0 as u64,
            },
            dst: vec![target],
            payload: KvOp::Set(b"forged".to_vec(), format!("k{k}").into_bytes()).encode(),
        }
    }
}

impl ForwardPolicy for Policy {
    fn forwards(&mut self, planned: Vec<Forward>, _rng: &mut dyn RngCore) -> Vec<Forward> {
        match self.attack {
            None => planned,
            Some(Attack::Withhold) => Vec::new(),
            Some(Attack::Forge) => planned
                .into_iter()
                .map(|f| Forward {
                    msg: self.forged(f.child, f.k),
                    ..f
                })
                .collect(),
            Some(Attack::Early) => planned
                .into_iter()
                .filter_map(|f| {
                    let (k, fresh) = self.early_index(f.child, f.msg.id);
                    fresh.then_some(Forward { k, ..f })
                })
                .collect(),
            Some(Attack::Reorder) => {
                let mut out = Vec::new();
                for f in planned {
                    match self.held.remove(&f.child) {
                        Some(h) => {
                            // swap the messages of two consecutive indices
                            out.push(Forward {
                                child: h.child,
                                k: h.k,
                                msg: f.msg,
                            });
                            out.push(Forward {
                                child: f.child,
                                k: f.k,
                                msg: h.msg,
                            });
                        }
                        None => {
                            self.held.insert(f.child, f);
                        }
                    }
                }
                out
            }
        }
    }
    fn on_client_multicast(
        &mut self,
        m: &McastMsg,
        children: &[GroupId],
        _rng: &mut dyn RngCore,
    ) -> Vec<Forward> {
        if self.attack != Some(Attack::Early) {
            return Vec::new();
        }
        children
            .iter()
            .filter_map(|c| {
                let (k, fresh) = self.early_index(*c, m.id);
                fresh.then(|| Forward {
                    child: *c,
                    k,
                    msg: m.clone(),
                })
            })
            .collect()
    }
    fn results(&mut self, _id: MsgId, results: Results, _rng: &mut dyn RngCore) -> Results {
        if self.attack != Some(Attack::Forge) {
            return results;
        }
        results
            .into_keys()
            .map(|g| (g, KvReply::Error("forged".into()).encode()))
            .collect()
    }
}

impl Attack {
    fn of(a: Adversary) -> Option<Attack> {
        match a {
            Adversary::Early => Some(Attack::Early),
            Adversary::Forge => Some(Attack::Forge),
            Adversary::Withhold => Some(Attack::Withhold),
            Adversary::Reorder => Some(Attack::Reorder),
            _ => None,
        }
    }
}

/// The Byzantine replicas of a run: one adversary, the colluders of each
/// group sharing state.
pub struct Team {
    adversary: Adversary,
    topo: Arc<Topology>,
    collusions: BTreeMap<GroupId, Rc<RefCell<Collusion>>>,
    /// The colluding equivocators of each group (see [`Equivocator`]).
    equivocators: BTreeMap<GroupId, Rc<RefCell<SmrCollusion>>>,
    mutator: Rc<dyn Mutator<Message>>,
    request_timeout: Time,
}

impl Team {
    pub fn new(adversary: Adversary, topo: Arc<Topology>, request_timeout: Time) -> Self {
        Team {
            adversary,
            collusions: topo.tree().groups().map(|g| (g, Rc::default())).collect(),
            equivocators: topo.tree().groups().map(|g| (g, Rc::default())).collect(),
            topo,
            mutator: Rc::new(MessageSurgery),
            request_timeout,
        }
    }

    /// The forwarding policy of replica `m`: honest, or a parent attack.
    pub fn policy(&self, m: NodeId, attack: Option<Attack>) -> Policy {
        let g = self.topo.group_of(m).expect("member");
        Policy {
            attack,
            collusion: self.collusions[&g].clone(),
            ..Policy::honest(self.topo.clone())
        }
    }

    /// Add Byzantine replica `m`; the node indices that speak for it (two for
    /// Twins), each flagged Byzantine but the correct twin.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &self,
        sim: &mut Sim<Message, Input, Output>,
        rng: &mut ChaCha8Rng,
        m: NodeId,
        region: usize,
        crypto: impl Fn() -> Crypto,
        make: impl Fn(Policy) -> ProtocolActor<Rep, Input, Output>,
    ) -> Vec<NodeIdx> {
        let addr = Addr::Node(m);
        let honest = || make(self.policy(m, None));
        let slow_delay = adversary::slow_delay(rng, self.request_timeout);
        let idx = match self.adversary {
            Adversary::Equivocate => {
                let g = self.topo.group_of(m).expect("member");
                let members = self.topo.group(g).expect("group").members.clone();
                let collusion = self.equivocators[&g].clone();
                let actor =
                    Equivocator::new(Box::new(honest()), collusion, members, smr_of, Message::Smr);
                sim.add_node(addr, crypto(), actor, region)
            }
            Adversary::Mutate => {
                let group = self.topo.group_of(m).expect("member");
                let surgery = Rc::new(FieldSurgery(smr_attacks::FieldSurgery { group }));
                let actor = Byzantine::corrupt(honest(), surgery, smr_attacks::MUTATE_PROB);
                sim.add_node(addr, crypto(), actor, region)
            }
            a
            @ (Adversary::Early | Adversary::Forge | Adversary::Withhold | Adversary::Reorder) => {
                let actor = make(self.policy(m, Attack::of(a)));
                sim.add_node(addr, crypto(), actor, region)
            }
            Adversary::Mixed | Adversary::None => {
                let parent = Adversary::PARENT[rng.gen_range(0..Adversary::PARENT.len())];
                let extra = vec![Behavior::Equivocate, Behavior::Corrupt { prob: 0.3 }];
                let plan = MixedPlan::standard(slow_delay, self.request_timeout, extra);
                let actor = Byzantine::mixed(make(self.policy(m, Attack::of(parent))), plan)
                    .with_mutator(self.mutator.clone());
                sim.add_node(addr, crypto(), actor, region)
            }
            generic => {
                let wrapper = Wrapper::named(generic.name()).expect("a generic wrapper");
                return wrapper.add(sim, addr, region, crypto, honest, slow_delay);
            }
        };
        sim.set_byzantine(idx, true);
        vec![idx]
    }
}

/// The SMR message a ByzCast message carries, for [`Equivocator`].
fn smr_of(m: &Message) -> Option<&byzscale_smr::Message> {
    match m {
        Message::Smr(s) => Some(s),
        _ => None,
    }
}

/// Protocol surgery for the generic wrappers: a conflicting proposal, and
/// corrupted votes, results and requests.
struct MessageSurgery;

impl Mutator<Message> for MessageSurgery {
    fn equivocate(&self, m: &Message, _variant: u64, _crypto: &Crypto) -> Option<Message> {
        use byzscale_smr::Message as M;
        match m {
            Message::Smr(M::Propose { view, slot, batch }) => {
                let mut b = batch.clone();
                let requests = std::sync::Arc::make_mut(&mut b.requests);
                if requests.len() > 1 {
                    requests.reverse();
                } else {
                    requests.clear();
                }
                Some(Message::Smr(M::Propose {
                    view: *view,
                    slot: *slot,
                    batch: b,
                }))
            }
            _ => None,
        }
    }
    fn corrupt(&self, m: &Message, rng: &mut dyn RngCore, _crypto: &Crypto) -> Option<Message> {
        use byzscale_smr::Message as M;
        match m {
            Message::Smr(M::Write { view, slot, digest }) => {
                let mut d = *digest;
                d[0] ^= 1;
                Some(Message::Smr(M::Write {
                    view: *view,
                    slot: *slot,
                    digest: d,
                }))
            }
            Message::Smr(M::Accept { view, slot, .. }) => {
                let mut d = [0u8; 32];
                rng.fill_bytes(&mut d);
                Some(Message::Smr(M::Accept {
                    view: *view,
                    slot: *slot,
                    digest: d,
                }))
            }
            Message::Smr(M::Request(r)) => {
                let mut r = r.clone();
                if let Some(b) = r.op.last_mut() {
                    *b ^= 0xff;
                }
                Some(Message::Smr(M::Request(r)))
            }
            Message::Result { id, results } => Some(Message::Result {
                id: *id,
                results: results.keys().map(|g| (*g, b"corrupt".to_vec())).collect(),
            }),
            _ => None,
        }
    }
}

/// The field mutator of `--byzantine mutate`: the SMR scenario's
/// [`smr_attacks::FieldSurgery`] on the group's SMR messages, and message
/// ids and results of ByzCast's own messages.
struct FieldSurgery(smr_attacks::FieldSurgery);

impl Mutator<Message> for FieldSurgery {
    fn equivocate(&self, _m: &Message, _variant: u64, _crypto: &Crypto) -> Option<Message> {
        None
    }
    fn corrupt(&self, m: &Message, rng: &mut dyn RngCore, crypto: &Crypto) -> Option<Message> {
        let id = |id: &MsgId, rng: &mut dyn RngCore| MsgId {
            client: id.client,
            n: fields::number(id.n, rng),
        };
        let results = |r: &Results, rng: &mut dyn RngCore| {
            let mut r = r.clone();
            if let Some(v) = r.values_mut().next() {
                fields::bytes(v, rng);
            }
            r
        };
        Some(match m {
            Message::Smr(s) => Message::Smr(self.0.corrupt(s, rng, crypto)?),
            Message::Result { id: i, results: r } if rng.gen_bool(0.5) => Message::Result {
                id: id(i, rng),
                results: r.clone(),
            },
            Message::Result { id, results: r } => Message::Result {
                id: *id,
                results: results(r, rng),
            },
            Message::Reply { id: i, results: r } => Message::Reply {
                id: id(i, rng),
                results: r.clone(),
            },
            Message::Query { id: i } => Message::Query { id: id(i, rng) },
        })
    }
}
