//! Steward's adversaries and the CPU charge for threshold cryptography.
//!
//! Every strategy but the two network ones puts f Byzantine servers in
//! every site (f per site is what Steward tolerates):
//!
//! | strategy | who | what |
//! |---|---|---|
//! | `withhold-rep` | servers 0..f of the leading site (the representatives of its local views 0..f-1) | deaf to shares: never combine, so the leading site proposes nothing while they represent it |
//! | `withhold-rep-all` | servers 0..f of every site | `withhold-rep` everywhere: the accepting sites' Accepts are withheld too, so each site replaces its representative (the leading site's first, then the others'), all before the global timer fires. This scenario found a liveness bug (client 1 at site 0 never completed; fixed in the protocol, see `docs/STEWARD.md`) |
//! | `equivocate-rep` | servers 0..f | split every multicast: half the receivers get a different PROPOSE batch (nested SMR) or a site word with another seq (its signature then fails) |
//! | `garbage-rep` | servers 0..f of the leading site | every outgoing message mangled: SMR fields ([`FieldSurgery`] of the SMR scenario), site signatures garbled, shares invalid |
//! | `bad-shares` | servers 1..=f (backups) | every share invalid (well-formed, own index, wrong message) |
//! | `bad-claims` | servers 1..=f | invalid claims in both view changes: the nested SMR's view-change messages (Stop, StopData, Sync) mangled, and forged Global_VC / Aru / Global_Constraint of its site (bad signature) sent to every server of the other sites each tick |
//! | `partition-leader` | network | the leading site (site 0) and its clients cut off from the other sites for [`CUT`], then healed |
//! | `cut-site` | network | the last site and its clients cut off for [`CUT`] and re-merged |
//! | `forge-proposals` | servers 0..k of site 0 | with k > f they are taken to hold the site's threshold key (as 2f+1 faulty servers would; f+1 cannot forge a (2f+1)-threshold signature, so the scenario can only express a broken site this way): server 0 sends site 1 a Proposal of one update at seq 1 and server 1 sends site 2 another; the S1 checker reports it. With k ≤ f they sign with garbage, and the Proposals are dropped |
//!
//! The generic wrappers of `sim::adversary` do the work ([`Byzantine`] with
//! a [`Mutator`], [`Deaf`] for the withholding representatives); [`Shell`],
//! the hooks of an [`Intercept`] around every server, adds the forged
//! claims and charges each server's threshold work to the CPU model.

use crate::deploy::{In, Kv, Out};
use byzscale_core::crypto::Crypto;
use byzscale_core::protocol::{Time, MILLIS, SECS};
use byzscale_core::threshold::{GroupKey, Heard, KeyShare, Signature, Voice};
use byzscale_core::{Addr, GroupId, NodeId};
use byzscale_scenario_smr::attacks::FieldSurgery;
use byzscale_sim::adversary::intercept::Event;
use byzscale_sim::adversary::{Byzantine, Deaf, Hooks, Intercept, Mutator};
use byzscale_sim::engine::{Actor, ActorCx, ProtocolActor};
use byzscale_smr as smr;
use byzscale_steward::server::Stats;
use byzscale_steward::{
    Config, GlobalView, Message, Seq, Signed, SiteId, SiteMsg, Update, SITE_DOMAIN,
};
use rand::RngCore;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// How long the network adversaries keep a site cut off.
pub const CUT: Time = 5 * SECS;
/// When they cut it.
pub const CUT_AT: Time = 150 * MILLIS;

/// One `--byzantine` strategy (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Adversary {
    None,
    WithholdRep,
    EquivocateRep,
    GarbageRep,
    BadShares,
    BadClaims,
    PartitionLeader,
    CutSite,
    ForgeProposals,
    WithholdRepAll,
}

impl Adversary {
    pub const ALL: [Adversary; 10] = [
        Adversary::None,
        Adversary::WithholdRep,
        Adversary::EquivocateRep,
        Adversary::GarbageRep,
        Adversary::BadShares,
        Adversary::BadClaims,
        Adversary::PartitionLeader,
        Adversary::CutSite,
        Adversary::ForgeProposals,
        Adversary::WithholdRepAll,
    ];
    pub const NAMES: [&'static str; 10] = [
        "none",
        "withhold-rep",
        "equivocate-rep",
        "garbage-rep",
        "bad-shares",
        "bad-claims",
        "partition-leader",
        "cut-site",
        "forge-proposals",
        "withhold-rep-all",
    ];
    pub fn name(self) -> &'static str {
        let i = Self::ALL.iter().position(|a| *a == self).expect("listed");
        Self::NAMES[i]
    }
    pub fn from_name(s: &str) -> Option<Self> {
        let i = Self::NAMES.iter().position(|n| *n == s)?;
        Some(Self::ALL[i])
    }
    /// A strategy of the network rather than of servers.
    pub fn is_network(self) -> bool {
        matches!(self, Adversary::PartitionLeader | Adversary::CutSite)
    }
    /// The indices (inside its site) of the Byzantine servers of each site,
    /// for `byzantine` of them per site.
    /// Whether server `i` of site `site` is Byzantine.
    pub fn is_byzantine(self, byzantine: usize, site: usize, i: usize) -> bool {
        let leading_only = matches!(
            self,
            Adversary::ForgeProposals | Adversary::WithholdRep | Adversary::GarbageRep
        );
        let here = !leading_only || site == 0;
        here && self.members(byzantine).contains(&i)
    }
    pub fn members(self, byzantine: usize) -> std::ops::Range<usize> {
        match self {
            Adversary::None | Adversary::PartitionLeader | Adversary::CutSite => 0..0,
            Adversary::WithholdRep
            | Adversary::WithholdRepAll
            | Adversary::EquivocateRep
            | Adversary::GarbageRep => 0..byzantine,
            Adversary::BadShares | Adversary::BadClaims => 1..byzantine + 1,
            Adversary::ForgeProposals => 0..byzantine,
        }
    }
}

/// What a server's threshold cryptography costs (ns), charged on top of the
/// CPU model: a share signed, a combination, a site signature verified.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ThresholdCosts {
    pub share_ns: u64,
    pub combine_ns: u64,
    pub verify_ns: u64,
}

impl ThresholdCosts {
    /// Steward's testbed (§2.8 of the digest): RSA-1024 verify 0.07 ms,
    /// Shoup threshold share with proof 3.9 ms, combination 5.6 ms.
    pub fn paper() -> Self {
        ThresholdCosts {
            share_ns: 3_900_000,
            combine_ns: 5_600_000,
            verify_ns: 70_000,
        }
    }
    fn of(&self, new: &Stats, old: &Stats) -> Time {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        d(new.shares_sent, old.shares_sent) * self.share_ns
            + d(new.spoken, old.spoken) * self.combine_ns
            + d(new.site_verifies, old.site_verifies) * self.verify_ns
    }
}

/// Replaces every share a server sends by a share of another message,
/// signed with its own key share: well-formed, under its own index, and
/// invalid for what the site says.
pub struct BadShares(pub KeyShare);

impl BadShares {
    fn share(&self, m: &Message) -> Option<Message> {
        match m {
            Message::Share { digest, .. } => Some(Message::Share {
                digest: *digest,
                share: self.0.sign(b"not what the site says"),
            }),
            _ => None,
        }
    }
}

impl Mutator<Message> for BadShares {
    fn equivocate(&self, _: &Message, _: u64, _: &Crypto) -> Option<Message> {
        None
    }
    fn corrupt(&self, m: &Message, _: &mut dyn RngCore, _: &Crypto) -> Option<Message> {
        self.share(m)
    }
}

/// A site word with its signature garbled.
fn garbled(s: &Signed) -> Signed {
    let mut bad = s.clone();
    bad.sig = Signature([0xa5; byzscale_core::threshold::SIG_BYTES]);
    bad
}

/// The representatives' surgery: equivocation (another PROPOSE batch, a
/// site word of another seq) and garbage (SMR fields, signatures, shares).
pub struct RepSurgery {
    shares: BadShares,
    smr: FieldSurgery,
    /// Only the nested SMR's view-change messages are mangled
    /// (`bad-claims`), and site words are left alone.
    claims_only: bool,
}

impl Mutator<Message> for RepSurgery {
    fn equivocate(&self, m: &Message, variant: u64, _: &Crypto) -> Option<Message> {
        match m {
            Message::Local(smr::Message::Propose { view, slot, batch })
                if !batch.requests.is_empty() =>
            {
                let mut other = batch.clone();
                let reqs = Arc::make_mut(&mut other.requests);
                reqs.truncate(reqs.len() - 1);
                reqs.reverse();
                Some(Message::Local(smr::Message::Propose {
                    view: *view,
                    slot: *slot,
                    batch: other,
                }))
            }
            Message::Site(s) => {
                let mut other = s.clone();
                if let SiteMsg::Proposal { seq, .. } | SiteMsg::Accept { seq, .. } = &mut other.msg
                {
                    *seq = Seq(seq.0 + variant);
                }
                Some(Message::Site(other))
            }
            _ => None,
        }
    }
    fn corrupt(&self, m: &Message, rng: &mut dyn RngCore, crypto: &Crypto) -> Option<Message> {
        match m {
            Message::Local(inner) if self.claims_only => match inner {
                smr::Message::Stop { .. }
                | smr::Message::StopData(_)
                | smr::Message::Sync { .. } => {
                    let bad = self.smr.corrupt(inner, rng, crypto)?;
                    Some(Message::Local(bad))
                }
                _ => None,
            },
            _ if self.claims_only => None,
            Message::Local(inner) => Some(Message::Local(self.smr.corrupt(inner, rng, crypto)?)),
            Message::Site(s) => Some(Message::Site(garbled(s))),
            Message::Share { .. } => self.shares.share(m),
            _ => None,
        }
    }
}

/// Deaf to shares: the representative never combines its site's word.
pub fn withholds(m: &Message) -> bool {
    matches!(m, Message::Share { .. })
}

/// The actor of a server (index `i` inside its site) under
/// `adversary` with `byzantine` Byzantine servers per site, and whether it
/// is Byzantine.
pub fn server_actor(
    adversary: Adversary,
    byzantine: usize,
    i: usize,
    key: &KeyShare,
    server: Kv,
    costs: Option<ThresholdCosts>,
    forged: &Forged,
) -> (Box<dyn Actor<Message, In, Out>>, bool) {
    let (site, cfg) = (server.site(), server.config().clone());
    let honest = ProtocolActor::replica(server);
    let bad = adversary.is_byzantine(byzantine, site.0 as usize, i);
    let surgery = |claims_only| {
        Rc::new(RepSurgery {
            shares: BadShares(key.clone()),
            smr: FieldSurgery {
                group: GroupId(site.0),
            },
            claims_only,
        })
    };
    let inner: Box<dyn Actor<Message, In, Out>> = match adversary {
        _ if !bad => Box::new(honest),
        Adversary::WithholdRep | Adversary::WithholdRepAll => {
            Deaf::around(Box::new(honest), withholds)
        }
        Adversary::EquivocateRep => Box::new(Byzantine::equivocate(honest, surgery(false))),
        Adversary::GarbageRep => Box::new(Byzantine::corrupt(honest, surgery(false), 1.0)),
        Adversary::BadShares => Box::new(Byzantine::corrupt(
            honest,
            Rc::new(BadShares(key.clone())),
            1.0,
        )),
        Adversary::BadClaims => Box::new(Byzantine::corrupt(honest, surgery(true), 1.0)),
        _ => Box::new(honest),
    };
    let claims = (bad && adversary == Adversary::BadClaims).then_some(cfg);
    let forge = (bad && adversary == Adversary::ForgeProposals).then(|| forged.clone());
    let shell = Shell {
        costs,
        last: Stats::default(),
        claims,
        claimed_at: None,
        forged: forge,
    };
    (Box::new(Intercept::new(inner, shell)), bad)
}

/// The hooks around a server's actor: after each of its events, charge
/// its threshold work ([`ThresholdCosts`], from its counters) and, for
/// `bad-claims`, send forged view-change words of its site to the other
/// sites once per tick (`forge-proposals`: the planned words at the first
/// event).
pub struct Shell {
    costs: Option<ThresholdCosts>,
    last: Stats,
    claims: Option<Arc<Config>>,
    claimed_at: Option<Time>,
    forged: Option<Forged>,
}

/// What each forging server sends at its next event, filled in once the
/// deployment (and so the site's key shares) exists.
pub type Forged = Rc<RefCell<BTreeMap<NodeId, Vec<(Addr, Message)>>>>;

/// Site `site`'s Proposal of `u` at seq 1, gv 0, signed with the first
/// 2f+1 of `keys` (the site's key shares, in the adversary's hands).
pub fn forged_proposal(keys: &[KeyShare], key: &GroupKey, site: SiteId, u: Update) -> Signed {
    let msg = SiteMsg::Proposal {
        gv: GlobalView(0),
        seq: Seq(1),
        update: u,
    };
    let mut combiner = Voice::new(key.clone(), SITE_DOMAIN, 1 << 20);
    let k = key.threshold();
    for share in &keys[1..k] {
        let mut alone = Voice::new(key.clone(), SITE_DOMAIN, 1 << 20);
        let (d, sh, _) = alone.said((site, msg.clone()), share);
        combiner.heard(share.index(), d, sh);
    }
    let Heard::Spoken(spoken) = combiner.said((site, msg), &keys[0]).2 else {
        panic!("a threshold of valid shares combines")
    };
    let (site, msg) = spoken.msg;
    Signed {
        site,
        msg,
        sig: spoken.signature,
    }
}

/// `forge-proposals`: with `keys` (the shares of site 0, `key` its public
/// key) server 0 of site 0 sends site 1's servers a Proposal of client 1's
/// first update at seq 1, and server 1 sends site 2's servers one of
/// client 2's; with `usable` false the signatures are garbage.
pub fn forge_plan(
    cfg: &Config,
    keys: &[KeyShare],
    usable: bool,
    update: impl Fn(u64) -> Update,
) -> BTreeMap<NodeId, Vec<(Addr, Message)>> {
    let site0 = &cfg.sites[0];
    let mut plan = BTreeMap::new();
    for (i, to) in [(0usize, 1usize), (1, 2)] {
        let Some(target) = cfg.sites.get(to) else {
            continue;
        };
        let u = update(1 + i as u64);
        let mut word = forged_proposal(keys, &site0.key, SiteId(0), u);
        if !usable {
            word = garbled(&word);
        }
        let sends = target
            .members
            .iter()
            .map(|m| (Addr::Node(*m), Message::Site(word.clone())))
            .collect();
        plan.insert(site0.members[i], sends);
    }
    plan
}

/// The honest server inside a (wrapped) actor.
fn server_of(actor: &dyn Actor<Message, In, Out>) -> Option<&Kv> {
    let any = actor.as_any()?;
    let actor = any.downcast_ref::<ProtocolActor<Kv, In, Out>>()?;
    Some(actor.inner())
}

impl Hooks<Message, In, Out> for Shell {
    fn after(
        &mut self,
        _: Event,
        inner: &dyn Actor<Message, In, Out>,
        cx: &mut ActorCx<'_, Message, Out>,
    ) {
        if let Some(f) = &self.forged {
            let me = cx.me().node();
            let sends = me.and_then(|m| f.borrow_mut().remove(&m));
            for (to, m) in sends.into_iter().flatten() {
                cx.send(to, m);
            }
        }
        let Some(server) = server_of(inner) else {
            return;
        };
        let now = server.stats();
        if let Some(c) = &self.costs {
            cx.charge(c.of(&now, &self.last));
        }
        self.last = now;
        self.claim(server, cx);
    }
}

impl Shell {
    /// The forged Global_VC, Aru and Global_Constraint of the next global
    /// view, signed with garbage, to every server of the other sites.
    fn claim(&mut self, server: &Kv, cx: &mut ActorCx<'_, Message, Out>) {
        let Some(cfg) = &self.claims else { return };
        if self.claimed_at.is_some_and(|t| cx.now() < t + cfg.tick) {
            return;
        }
        let (site, gv) = (server.site(), server.machine().global_view());
        let next = GlobalView(gv.0 + 1);
        let aru = Seq(u64::MAX / 2);
        let words = [
            SiteMsg::GlobalVc { gv: next },
            SiteMsg::Aru { gv: next, aru },
            SiteMsg::Constraint {
                gv: next,
                aru,
                accepted: Vec::new(),
            },
        ];
        let to: Vec<Addr> = cfg
            .sites
            .iter()
            .enumerate()
            .filter(|(s, _)| *s != site.0 as usize)
            .flat_map(|(_, x)| x.members.iter().map(|m| Addr::Node(*m)))
            .collect();
        for msg in words {
            let forged = Signed {
                site,
                msg,
                sig: Signature([0x5a; byzscale_core::threshold::SIG_BYTES]),
            };
            cx.multicast(to.clone(), Message::Site(forged));
        }
        self.claimed_at = Some(cx.now());
    }
}
