//! A Steward deployment as every server and client sees it: the sites, their
//! members and group keys, the clients' home sites, and the parameters.

use crate::message::{GlobalView, SiteId, ACCEPTED_BYTES, OP_OVERHEAD};
use byzscale_core::quorum::{FaultModel, QuorumSystem};
use byzscale_core::threshold::GroupKey;
use byzscale_core::{Addr, ClientId, GroupId, NodeId, Time};
use byzscale_smr as smr;
use std::collections::{BTreeMap, BTreeSet};

/// One site: 3f+1 servers in position order (the position is the server's
/// threshold member index) and the site's public threshold key.
#[derive(Clone, Debug)]
pub struct Site {
    pub members: Vec<NodeId>,
    pub key: GroupKey,
}

/// Global sequence numbers a server holds beyond what it executed.
pub const WINDOW: u64 = 1024;
/// Bytes of waiting shares and messages a representative's voice holds.
pub const VOICE_BYTES: usize = 4 << 20;
/// Bytes of Proposals a server holds beyond what it executed.
pub const HELD_BYTES: usize = 64 << 20;
/// Bytes of signed words one answer to a `Need` carries (beyond its first
/// word, which always goes).
pub const NEED_BYTES: usize = 256 << 10;

#[derive(Clone, Debug)]
pub struct Config {
    pub sites: Vec<Site>,
    /// Faulty servers tolerated per site.
    pub f: usize,
    /// Every client's home site (the site it submits to and that replies).
    pub clients: BTreeMap<ClientId, SiteId>,
    /// Parameters of each site's SMR (the servers' client ids of a site are
    /// pinned by [`Config::smr_params`]).
    pub params: smr::Params,
    pub window: u64,
    pub voice_bytes: usize,
    pub held_bytes: usize,
    /// Bytes of signed words in one answer to a `Need` (the first word
    /// always goes, so a word larger than this still gets through).
    pub need_bytes: usize,
    /// The local timeout: the period of a server's retransmission tick and
    /// how long a client update or a Proposal waits for the representative
    /// before the other servers act on it ([`Config::new`]: the site SMR's
    /// `request_timeout`).
    pub tick: Time,
    /// The global timer's first value: how long a pending update waits
    /// before its server suspects the leading site ([`Config::new`]:
    /// [`Config::global_timeout_for`], 2f+2 local representative changes).
    /// Doubled after a global view change that made no progress.
    pub global_timeout: Time,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no sites")]
    NoSites,
    #[error("{site} has {n} servers, 3f+1 = {need} needed")]
    SiteSize { site: SiteId, n: usize, need: usize },
    #[error("{site}'s key is {k} of {n}, the site needs 2f+1 = {k_need} of {n_need}")]
    Key {
        site: SiteId,
        k: usize,
        n: usize,
        k_need: usize,
        n_need: usize,
    },
    #[error("server {0} is in more than one site")]
    Shared(NodeId),
    #[error("client {0} has home site {1}, which does not exist")]
    ClientSite(ClientId, SiteId),
    #[error("max_op_bytes {0} leaves no room for an update (overhead {OP_OVERHEAD})")]
    OpBytes(usize),
    #[error("a constraint of window {0} seqs does not fit in max_op_bytes {1}")]
    Window(u64, usize),
}

impl Config {
    /// `sites` with parameters for a site SMR on networks of `params`.
    pub fn new(
        sites: Vec<Site>,
        f: usize,
        clients: BTreeMap<ClientId, SiteId>,
        params: smr::Params,
    ) -> Result<Config, ConfigError> {
        let tick = params.request_timeout.max(1);
        let global_timeout = Self::global_timeout_for(f, &params);
        let c = Config {
            sites,
            f,
            clients,
            params,
            window: WINDOW,
            voice_bytes: VOICE_BYTES,
            held_bytes: HELD_BYTES,
            need_bytes: NEED_BYTES,
            tick,
            global_timeout,
        };
        c.validate()?;
        Ok(c)
    }

    /// The global timer's first value for sites of 3f+1 servers running
    /// the site SMR with `params`: 2f+2 local representative changes.
    ///
    /// One change takes up to `LOCAL_TICKS` + 1 ticks (a word unsigned
    /// for `LOCAL_TICKS` ticks, seen at the next tick) and a view-change
    /// timeout. An update needs the leading site's Proposal and then the
    /// other sites' Accepts, so in the worst case the leading site cycles
    /// through its f faulty representatives and *then* every accepting
    /// site through its f (in parallel): 2f changes, and two more for the
    /// common case's rounds. With f+2 changes of two request timeouts
    /// each (the first value) the global timer fired while the accepting
    /// sites still cycled, when every site had a withholding
    /// representative.
    pub fn global_timeout_for(f: usize, params: &smr::Params) -> Time {
        let tick = params.request_timeout.max(1);
        let local = (crate::server::LOCAL_TICKS + 1) * tick + params.view_change_timeout;
        (2 * f as Time + 2) * local
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sites.is_empty() {
            return Err(ConfigError::NoSites);
        }
        let (need, k_need) = (3 * self.f + 1, 2 * self.f + 1);
        let mut seen = BTreeSet::new();
        for (i, s) in self.sites.iter().enumerate() {
            let site = SiteId(i as u32);
            if s.members.len() != need {
                let n = s.members.len();
                return Err(ConfigError::SiteSize { site, n, need });
            }
            let (k, n) = (s.key.threshold(), s.key.members());
            if k != k_need || n != need {
                let n_need = need;
                return Err(ConfigError::Key {
                    site,
                    k,
                    n,
                    k_need,
                    n_need,
                });
            }
            if let Some(m) = s.members.iter().find(|m| !seen.insert(**m)) {
                return Err(ConfigError::Shared(*m));
            }
        }
        if let Some((c, s)) = self.clients.iter().find(|(_, s)| self.site(**s).is_none()) {
            return Err(ConfigError::ClientSite(*c, *s));
        }
        if self.params.max_op_bytes <= OP_OVERHEAD {
            return Err(ConfigError::OpBytes(self.params.max_op_bytes));
        }
        let constraint = (self.window as usize).saturating_mul(ACCEPTED_BYTES) + OP_OVERHEAD;
        if constraint > self.params.max_op_bytes {
            return Err(ConfigError::Window(self.window, self.params.max_op_bytes));
        }
        Ok(())
    }

    pub fn site(&self, s: SiteId) -> Option<&Site> {
        self.sites.get(s.0 as usize)
    }

    pub fn site_count(&self) -> u32 {
        self.sites.len() as u32
    }

    /// The site of server `n`, and its position (threshold member index).
    pub fn site_of(&self, n: NodeId) -> Option<(SiteId, u32)> {
        self.sites.iter().enumerate().find_map(|(i, s)| {
            let pos = s.members.iter().position(|m| *m == n)?;
            Some((SiteId(i as u32), pos as u32))
        })
    }

    /// The site of the server at `a`, if `a` is a server.
    pub fn site_of_addr(&self, a: Addr) -> Option<(SiteId, u32)> {
        a.node().and_then(|n| self.site_of(n))
    }

    /// The leading site of global view `gv`.
    pub fn leader_site(&self, gv: GlobalView) -> SiteId {
        SiteId((gv.0 % self.sites.len() as u64) as u32)
    }

    /// Sites, besides the leading one, whose Accepts order a Proposal: with
    /// the leading site, a majority of the S sites (⌊S/2⌋).
    pub fn accepts_needed(&self) -> usize {
        self.sites.len() / 2
    }

    /// Sites that make a majority (GlobalVc votes, constraints).
    pub fn majority(&self) -> usize {
        self.sites.len() / 2 + 1
    }

    /// Every server of site `s`.
    pub fn members(&self, s: SiteId) -> Vec<Addr> {
        self.site(s)
            .map(|site| site.members.iter().map(|m| Addr::Node(*m)).collect())
            .unwrap_or_default()
    }

    /// The largest operation an update may carry.
    pub fn max_update_op(&self) -> usize {
        self.params.max_op_bytes - OP_OVERHEAD
    }

    /// Site `s` as the SMR core sees it: a group of 3f+1, f Byzantine.
    pub fn group(&self, s: SiteId) -> Option<smr::GroupInfo> {
        let site = self.site(s)?;
        let qs = QuorumSystem::classic(site.members.len(), self.f, FaultModel::Bft).ok()?;
        Some(smr::GroupInfo::new(GroupId(s.0), site.members.clone(), qs))
    }

    /// The SMR parameters of site `s`: its servers submit site operations
    /// as `ClientId::for_replica(member)`, numbered contiguously in session
    /// 0, so their entries are pinned.
    pub fn smr_params(&self, s: SiteId) -> smr::Params {
        let mut p = self.params.clone();
        if let Some(site) = self.site(s) {
            let ids = site.members.iter().map(|m| ClientId::for_replica(*m));
            p.pinned_clients.extend(ids);
        }
        p
    }

    /// The f+1 servers of site `s` that get a site message about `seq`
    /// (at least one correct; they relay it inside their site), rotated by
    /// `seq` to spread the load.
    pub fn receivers(&self, s: SiteId, seq: u64) -> Vec<Addr> {
        let Some(site) = self.site(s) else {
            return Vec::new();
        };
        let n = site.members.len() as u64;
        (0..=self.f as u64)
            .map(|i| Addr::Node(site.members[((seq + i) % n) as usize]))
            .collect()
    }
}
