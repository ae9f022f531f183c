//! A deployment: the overlay [`Tree`], the members of every group, and which
//! protocol runs over them ([`Mode`]).

use crate::tree::Tree;
use byzscale_core::quorum::QuorumSystem;
use byzscale_core::{GroupId, NodeId};
use byzscale_smr::GroupInfo;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// ByzCast, or the naive non-genuine baseline (seed 000, "Simple solution
/// based on existing systems": one group orders every message and relays it
/// to the destinations with per-destination sequence numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Order `m` first at lca(dst), then down the tree (Algorithm 1).
    Byzcast,
    /// Order every message at the root (the sequencer), which must be the
    /// parent of every target, then at each destination.
    Baseline,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Byzcast => "byzcast",
            Mode::Baseline => "baseline",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("{groups} groups given for a tree of {tree}")]
    GroupCount { groups: usize, tree: usize },
    #[error("group at position {pos} has id {id}, expected g{pos}")]
    GroupId { pos: usize, id: GroupId },
    #[error("replica {node} is a member of two groups ({a} and {b})")]
    SharedReplica { node: NodeId, a: String, b: String },
    #[error("group {0} has no replicas")]
    Empty(String),
    #[error("the baseline relays from one sequencer to every target: the tree must be two-level ({0} is not a child of the root)")]
    BaselineTree(String),
}

/// Everything every node must agree on.
#[derive(Clone, Debug)]
pub struct Topology {
    tree: Tree,
    groups: Vec<GroupInfo>,
    mode: Mode,
    owner: BTreeMap<NodeId, GroupId>,
}

impl Topology {
    /// Every group of `tree` with `qs.n()` replicas numbered in group order:
    /// group `g` is nodes `g·n` to `g·n + n − 1` (the simulator's and the
    /// tests' layout).
    pub fn numbered(tree: Tree, qs: &QuorumSystem, mode: Mode) -> Result<Self, TopologyError> {
        let n = qs.n() as u32;
        let groups = tree
            .groups()
            .map(|g| {
                let members = (0..n).map(|i| NodeId(g.0 * n + i)).collect();
                GroupInfo::new(g, members, qs.clone())
            })
            .collect();
        Topology::new(tree, groups, mode)
    }

    /// `groups[i]` is group `GroupId(i)` of `tree` (targets first).
    pub fn new(tree: Tree, groups: Vec<GroupInfo>, mode: Mode) -> Result<Self, TopologyError> {
        if groups.len() != tree.len() {
            return Err(TopologyError::GroupCount {
                groups: groups.len(),
                tree: tree.len(),
            });
        }
        let mut owner = BTreeMap::new();
        for (pos, g) in groups.iter().enumerate() {
            if g.id != GroupId(pos as u32) {
                return Err(TopologyError::GroupId { pos, id: g.id });
            }
            if g.members.is_empty() {
                return Err(TopologyError::Empty(tree.name(g.id).to_string()));
            }
            for m in &g.members {
                if let Some(other) = owner.insert(*m, g.id) {
                    return Err(TopologyError::SharedReplica {
                        node: *m,
                        a: tree.name(other).to_string(),
                        b: tree.name(g.id).to_string(),
                    });
                }
            }
        }
        if mode == Mode::Baseline && tree.len() > 1 {
            for t in tree.targets() {
                if t != tree.root() && tree.parent(t) != Some(tree.root()) {
                    return Err(TopologyError::BaselineTree(tree.name(t).to_string()));
                }
            }
        }
        Ok(Topology {
            tree,
            groups,
            mode,
            owner,
        })
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn group(&self, g: GroupId) -> Option<&GroupInfo> {
        self.groups.get(g.0 as usize)
    }
    pub fn groups(&self) -> &[GroupInfo] {
        &self.groups
    }
    /// The group `node` belongs to.
    pub fn group_of(&self, node: NodeId) -> Option<GroupId> {
        self.owner.get(&node).copied()
    }

    /// `dst` sorted, without repeats; an error if empty or not all targets.
    pub fn normalize_dst(&self, dst: &[GroupId]) -> Result<Vec<GroupId>, String> {
        if dst.is_empty() {
            return Err("empty destination".into());
        }
        let set: BTreeSet<GroupId> = dst.iter().copied().collect();
        if let Some(g) = set.iter().find(|g| !self.tree.is_target(**g)) {
            return Err(format!("destination {g} is not a target group"));
        }
        Ok(set.into_iter().collect())
    }

    /// Where `multicast(m, dst)` is ordered first: lca(dst) in ByzCast, the
    /// sequencer (root) in the baseline. `dst` must be normalized.
    pub fn entry(&self, dst: &[GroupId]) -> Option<GroupId> {
        match self.mode {
            Mode::Byzcast => self.tree.lca(dst),
            Mode::Baseline => (!dst.is_empty()).then(|| self.tree.root()),
        }
    }
}
