//! The overlay tree of groups (seed 000 §III-A, "Why a tree?").
//!
//! Target groups Γ receive messages; auxiliary groups Λ only order and relay
//! them. Targets may be inner nodes and a tree may hold targets only ("Algorithm
//! 1 does not need this restriction"). Group ids are dense: the targets in the
//! order they are listed, then the auxiliary groups.
//!
//! [`Tree::build`] rejects every overlay that is not a tree, saying why ByzCast
//! needs one:
//! - a **cycle** (g1 → g2 → g3 → g1) lets each group order first what it
//!   received first: m1 < m3 at g1, m3 < m2 at g3, m2 < m1 at g2;
//! - a group with **two parents** receives messages along two paths that order
//!   them independently: m2 < m1 at g2, m1 < m3 at g1, m3 < m2 at g3;
//! - two **roots** (a forest) leave messages to targets under both without a
//!   lowest common ancestor.
//!
//! Heights follow the paper's optimization problem: a leaf has height 1, so in
//! the two-level tree every pair of targets has H = 2 (Σ H over the 6 pairs of 4
//! targets = 12) and in the three-level tree of Fig. 1 the cross pairs have H = 3
//! (Σ = 16).

use byzscale_core::GroupId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Why a set of groups and edges is not a usable ByzCast overlay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("no target groups: a ByzCast overlay needs at least one target group")]
    NoTargets,
    #[error("group name {0:?} is not valid: use a non-empty name")]
    BadName(String),
    #[error("group {0} is listed twice")]
    Duplicate(String),
    #[error("edge {parent} → {child} names unknown group {unknown} (declare it under targets or auxiliary)")]
    Unknown {
        parent: String,
        child: String,
        unknown: String,
    },
    #[error("edge {0} → {0} is a self-loop: a group cannot be its own parent")]
    SelfLoop(String),
    #[error(
        "group {child} has {} parents ({}); ByzCast needs a tree: a group with two parents \
         receives messages along two paths that order them independently, so the delivery \
         order can have a cycle (seed 000, \"Why a tree?\" case 2: m2 < m1 at g2, m1 < m3 at g1, \
         m3 < m2 at g3)",
        parents.len(),
        parents.join(", ")
    )]
    TwoParents { child: String, parents: Vec<String> },
    #[error(
        "the overlay has a cycle {}; ByzCast needs a tree: around a cycle each group orders \
         first what reached it first, so m1 < m3 at g1, m3 < m2 at g3, m2 < m1 at g2 is possible \
         (seed 000, \"Why a tree?\" case 1)",
        cycle_text(.cycle)
    )]
    Cycle { cycle: Vec<String> },
    #[error(
        "groups {} are all roots (the overlay is a forest); a message to targets under two \
         of them would have no lowest common ancestor: connect them under one root",
        roots.join(", ")
    )]
    Forest { roots: Vec<String> },
}

fn cycle_text(c: &[String]) -> String {
    let mut s = c.join(" → ");
    if let Some(first) = c.first() {
        s.push_str(" → ");
        s.push_str(first);
    }
    s
}

/// Groups and parent → child edges, by name, as a configuration file gives them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeSpec {
    pub targets: Vec<String>,
    #[serde(default)]
    pub auxiliary: Vec<String>,
    /// parent → children.
    #[serde(default)]
    pub tree: BTreeMap<String, Vec<String>>,
}

impl TreeSpec {
    /// Parse the TOML tree file format:
    ///
    /// ```toml
    /// targets = ["g1", "g2", "g3", "g4"]
    /// auxiliary = ["h1", "h2", "h3"]
    /// [tree]
    /// h1 = ["h2", "h3"]
    /// h2 = ["g1", "g2"]
    /// h3 = ["g3", "g4"]
    /// ```
    pub fn from_toml(s: &str) -> Result<Self, String> {
        toml::from_str(s).map_err(|e| e.to_string())
    }

    /// The parent → child edges in file order.
    pub fn edges(&self) -> Vec<(String, String)> {
        self.tree
            .iter()
            .flat_map(|(p, cs)| cs.iter().map(move |c| (p.clone(), c.clone())))
            .collect()
    }
}

/// A validated overlay tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    names: Vec<String>,
    targets: usize,
    parent: Vec<Option<GroupId>>,
    children: Vec<Vec<GroupId>>,
    root: GroupId,
    height: Vec<u32>,
    depth: Vec<u32>,
    reach: Vec<BTreeSet<GroupId>>,
}

impl Tree {
    /// Validate `targets`, `auxiliary` and the parent → child `edges` (by name).
    pub fn build(
        targets: &[String],
        auxiliary: &[String],
        edges: &[(String, String)],
    ) -> Result<Tree, TreeError> {
        if targets.is_empty() {
            return Err(TreeError::NoTargets);
        }
        let names: Vec<String> = targets.iter().chain(auxiliary).cloned().collect();
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            if n.trim().is_empty() || n.chars().any(char::is_whitespace) {
                return Err(TreeError::BadName(n.clone()));
            }
            if index.insert(n.as_str(), i).is_some() {
                return Err(TreeError::Duplicate(n.clone()));
            }
        }
        let mut parents: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); names.len()];
        for (p, c) in edges {
            let look = |x: &String| {
                index
                    .get(x.as_str())
                    .copied()
                    .ok_or_else(|| TreeError::Unknown {
                        parent: p.clone(),
                        child: c.clone(),
                        unknown: x.clone(),
                    })
            };
            let (pi, ci) = (look(p)?, look(c)?);
            if pi == ci {
                return Err(TreeError::SelfLoop(p.clone()));
            }
            parents[ci].insert(pi);
        }
        for (c, ps) in parents.iter().enumerate() {
            if ps.len() > 1 {
                return Err(TreeError::TwoParents {
                    child: names[c].clone(),
                    parents: ps.iter().map(|p| names[*p].clone()).collect(),
                });
            }
        }
        let parent: Vec<Option<usize>> =
            parents.iter().map(|ps| ps.iter().next().copied()).collect();
        Self::from_parent_indices(names, targets.len(), &parent)
    }

    /// Validate a tree given as a parent per group (`None` for the root). Groups
    /// are `names[i]` with id `i`; the first `targets` are target groups.
    pub fn from_parent_indices(
        names: Vec<String>,
        targets: usize,
        parent: &[Option<usize>],
    ) -> Result<Tree, TreeError> {
        let n = names.len();
        assert_eq!(parent.len(), n, "one parent entry per group");
        if targets == 0 {
            return Err(TreeError::NoTargets);
        }
        // cycles: walk up from every node; a walk longer than n revisits a node
        for start in 0..n {
            let mut seen = vec![false; n];
            let mut path = Vec::new();
            let mut x = start;
            loop {
                if seen[x] {
                    let at = path.iter().position(|p| *p == x).unwrap_or(0);
                    // report the cycle in parent → child direction, smallest name first
                    let mut cyc: Vec<String> = path[at..]
                        .iter()
                        .rev()
                        .map(|i: &usize| names[*i].clone())
                        .collect();
                    let m = (0..cyc.len()).min_by_key(|i| cyc[*i].clone()).unwrap_or(0);
                    cyc.rotate_left(m);
                    return Err(TreeError::Cycle { cycle: cyc });
                }
                seen[x] = true;
                path.push(x);
                match parent[x] {
                    Some(p) if p < n => x = p,
                    _ => break,
                }
            }
        }
        let roots: Vec<usize> = (0..n).filter(|i| parent[*i].is_none()).collect();
        if roots.len() != 1 {
            return Err(TreeError::Forest {
                roots: roots.iter().map(|r| names[*r].clone()).collect(),
            });
        }
        let root = roots[0];
        let mut children: Vec<Vec<GroupId>> = vec![Vec::new(); n];
        for (c, p) in parent.iter().enumerate() {
            if let Some(p) = p {
                children[*p].push(GroupId(c as u32));
            }
        }
        // depth by walking up (no cycles now)
        let mut depth = vec![0u32; n];
        for (i, d) in depth.iter_mut().enumerate() {
            let mut x = i;
            while let Some(p) = parent[x] {
                *d += 1;
                x = p;
            }
        }
        // heights and reach bottom-up: deepest first
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|i| std::cmp::Reverse(depth[*i]));
        let mut height = vec![1u32; n];
        let mut reach: Vec<BTreeSet<GroupId>> = vec![BTreeSet::new(); n];
        for &i in &order {
            if i < targets {
                reach[i].insert(GroupId(i as u32));
            }
            if let Some(p) = parent[i] {
                height[p] = height[p].max(height[i] + 1);
                let r = reach[i].clone();
                reach[p].extend(r);
            }
        }
        Ok(Tree {
            names,
            targets,
            parent: parent
                .iter()
                .map(|p| p.map(|p| GroupId(p as u32)))
                .collect(),
            children,
            root: GroupId(root as u32),
            height,
            depth,
            reach,
        })
    }

    /// Validate a [`TreeSpec`].
    pub fn from_spec(spec: &TreeSpec) -> Result<Tree, TreeError> {
        Tree::build(&spec.targets, &spec.auxiliary, &spec.edges())
    }

    /// The two-level tree of the paper's evaluation: `targets` target groups
    /// g1..gN under one auxiliary root h1 (a single target needs no root).
    pub fn two_level(targets: usize) -> Tree {
        let t: Vec<String> = (1..=targets).map(|i| format!("g{i}")).collect();
        if targets == 1 {
            return Tree::build(&t, &[], &[]).expect("one group is a tree");
        }
        let edges: Vec<(String, String)> =
            t.iter().map(|g| ("h1".to_string(), g.clone())).collect();
        Tree::build(&t, &["h1".to_string()], &edges).expect("a star is a tree")
    }

    /// The baseline's layout: every target under one sequencer group h1, even
    /// for a single target (the naive protocol always orders twice).
    pub fn sequencer_star(targets: usize) -> Tree {
        let t: Vec<String> = (1..=targets.max(1)).map(|i| format!("g{i}")).collect();
        let edges: Vec<(String, String)> =
            t.iter().map(|g| ("h1".to_string(), g.clone())).collect();
        Tree::build(&t, &["h1".to_string()], &edges).expect("a star is a tree")
    }

    /// The three-level tree of Fig. 1 generalized: h1 over h2 and h3, the first
    /// half of the targets under h2 and the rest under h3 (needs ≥ 2 targets).
    pub fn three_level(targets: usize) -> Option<Tree> {
        if targets < 2 {
            return None;
        }
        let t: Vec<String> = (1..=targets).map(|i| format!("g{i}")).collect();
        let aux: Vec<String> = ["h1", "h2", "h3"].iter().map(|s| s.to_string()).collect();
        let mut edges = vec![
            ("h1".to_string(), "h2".to_string()),
            ("h1".to_string(), "h3".to_string()),
        ];
        let half = targets.div_ceil(2);
        for (i, g) in t.iter().enumerate() {
            let p = if i < half { "h2" } else { "h3" };
            edges.push((p.to_string(), g.clone()));
        }
        Tree::build(&t, &aux, &edges).ok()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// All groups, targets first.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        (0..self.names.len() as u32).map(GroupId)
    }
    pub fn targets(&self) -> impl Iterator<Item = GroupId> + '_ {
        (0..self.targets as u32).map(GroupId)
    }
    pub fn target_count(&self) -> usize {
        self.targets
    }
    pub fn auxiliary(&self) -> impl Iterator<Item = GroupId> + '_ {
        (self.targets as u32..self.names.len() as u32).map(GroupId)
    }
    pub fn contains(&self, g: GroupId) -> bool {
        (g.0 as usize) < self.names.len()
    }
    pub fn is_target(&self, g: GroupId) -> bool {
        (g.0 as usize) < self.targets
    }
    /// The group's name ("?" for an unknown id).
    pub fn name(&self, g: GroupId) -> &str {
        self.names
            .get(g.0 as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }
    pub fn id(&self, name: &str) -> Option<GroupId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| GroupId(i as u32))
    }
    pub fn root(&self) -> GroupId {
        self.root
    }
    pub fn parent(&self, g: GroupId) -> Option<GroupId> {
        self.parent.get(g.0 as usize).copied().flatten()
    }
    /// Children in ascending id order.
    pub fn children(&self, g: GroupId) -> &[GroupId] {
        self.children
            .get(g.0 as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    /// Height: 1 for a leaf.
    pub fn height(&self, g: GroupId) -> u32 {
        self.height.get(g.0 as usize).copied().unwrap_or(0)
    }
    /// Depth: 0 for the root.
    pub fn depth(&self, g: GroupId) -> u32 {
        self.depth.get(g.0 as usize).copied().unwrap_or(0)
    }
    /// reach(x): the target groups in x's subtree (x included if it is a target).
    pub fn reach(&self, g: GroupId) -> &BTreeSet<GroupId> {
        static EMPTY: BTreeSet<GroupId> = BTreeSet::new();
        self.reach.get(g.0 as usize).unwrap_or(&EMPTY)
    }
    /// Whether `a` is `b` or an ancestor of `b`.
    pub fn is_ancestor_or_self(&self, a: GroupId, b: GroupId) -> bool {
        let mut x = Some(b);
        while let Some(g) = x {
            if g == a {
                return true;
            }
            x = self.parent(g);
        }
        false
    }

    fn lca2(&self, mut a: GroupId, mut b: GroupId) -> GroupId {
        while self.depth(a) > self.depth(b) {
            a = self.parent(a).expect("non-root has a parent");
        }
        while self.depth(b) > self.depth(a) {
            b = self.parent(b).expect("non-root has a parent");
        }
        while a != b {
            a = self.parent(a).expect("non-root has a parent");
            b = self.parent(b).expect("non-root has a parent");
        }
        a
    }

    /// lca(dst): the lowest common ancestor of the groups in `dst` (`None` if
    /// `dst` is empty or names an unknown group).
    pub fn lca(&self, dst: &[GroupId]) -> Option<GroupId> {
        let (first, rest) = dst.split_first()?;
        if !dst.iter().all(|g| self.contains(*g)) {
            return None;
        }
        Some(rest.iter().fold(*first, |acc, g| self.lca2(acc, *g)))
    }

    /// P(T, d): the groups on the paths from lca(d) to every group of `d`.
    pub fn path_groups(&self, dst: &[GroupId]) -> BTreeSet<GroupId> {
        let mut out = BTreeSet::new();
        let Some(top) = self.lca(dst) else { return out };
        for g in dst {
            let mut x = *g;
            loop {
                out.insert(x);
                if x == top {
                    break;
                }
                match self.parent(x) {
                    Some(p) => x = p,
                    None => break,
                }
            }
        }
        out
    }

    /// Children of `x` whose subtree reaches a group of `dst` (where `x`
    /// forwards a message to `dst`).
    pub fn forward_children(&self, x: GroupId, dst: &[GroupId]) -> Vec<GroupId> {
        self.children(x)
            .iter()
            .copied()
            .filter(|c| dst.iter().any(|d| self.reach(*c).contains(d)))
            .collect()
    }

    /// The tree as a spec (parent name → children names), auxiliary groups included.
    pub fn to_spec(&self) -> TreeSpec {
        let mut tree = BTreeMap::new();
        for g in self.groups() {
            let cs = self.children(g);
            if !cs.is_empty() {
                tree.insert(
                    self.name(g).to_string(),
                    cs.iter().map(|c| self.name(*c).to_string()).collect(),
                );
            }
        }
        TreeSpec {
            targets: self.targets().map(|g| self.name(g).to_string()).collect(),
            auxiliary: self.auxiliary().map(|g| self.name(g).to_string()).collect(),
            tree,
        }
    }

    /// A one-line description, e.g. `h1(g1 g2 g3 g4)`.
    pub fn describe(&self) -> String {
        fn go(t: &Tree, g: GroupId, out: &mut String) {
            out.push_str(t.name(g));
            let cs = t.children(g);
            if !cs.is_empty() {
                out.push('(');
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    go(t, *c, out);
                }
                out.push(')');
            }
        }
        let mut s = String::new();
        go(self, self.root, &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    fn e(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn fig1() -> Tree {
        Tree::build(
            &s(&["g1", "g2", "g3", "g4"]),
            &s(&["h1", "h2", "h3"]),
            &e(&[
                ("h1", "h2"),
                ("h1", "h3"),
                ("h2", "g1"),
                ("h2", "g2"),
                ("h3", "g3"),
                ("h3", "g4"),
            ]),
        )
        .unwrap()
    }

    #[test]
    fn fig1_lca_reach_heights() {
        let t = fig1();
        let g = |n: &str| t.id(n).unwrap();
        assert_eq!(t.root(), g("h1"));
        assert_eq!(t.lca(&[g("g1"), g("g2")]), Some(g("h2")));
        assert_eq!(t.lca(&[g("g2"), g("g3")]), Some(g("h1")));
        assert_eq!(t.lca(&[g("g3")]), Some(g("g3")));
        assert_eq!(t.lca(&[]), None);
        assert_eq!(t.lca(&[GroupId(99)]), None);
        assert_eq!(t.height(g("h2")), 2);
        assert_eq!(t.height(g("h1")), 3);
        assert_eq!(t.height(g("g1")), 1);
        assert_eq!(
            t.reach(g("h3")).iter().copied().collect::<Vec<_>>(),
            vec![g("g3"), g("g4")]
        );
        assert_eq!(t.children(g("h1")), &[g("h2"), g("h3")]);
        assert_eq!(
            t.forward_children(g("h1"), &[g("g2"), g("g3")]),
            vec![g("h2"), g("h3")]
        );
        assert_eq!(
            t.forward_children(g("h2"), &[g("g2"), g("g3")]),
            vec![g("g2")]
        );
        let p: Vec<&str> = t
            .path_groups(&[g("g2"), g("g3")])
            .iter()
            .map(|x| t.name(*x))
            .collect();
        assert_eq!(p, vec!["g2", "g3", "h1", "h2", "h3"]);
        assert_eq!(t.describe(), "h1(h2(g1 g2) h3(g3 g4))");
        let round = Tree::from_spec(&t.to_spec()).unwrap();
        assert_eq!(round, t);
    }

    #[test]
    fn targets_may_be_inner_nodes() {
        let t = Tree::build(
            &s(&["g1", "g2", "g3"]),
            &[],
            &e(&[("g1", "g2"), ("g1", "g3")]),
        )
        .unwrap();
        let g = |n: &str| t.id(n).unwrap();
        assert_eq!(t.lca(&[g("g2"), g("g3")]), Some(g("g1")));
        assert_eq!(t.lca(&[g("g1"), g("g3")]), Some(g("g1")));
        assert!(t.reach(g("g1")).contains(&g("g1")));
        assert_eq!(
            t.forward_children(g("g1"), &[g("g1"), g("g3")]),
            vec![g("g3")]
        );
    }

    #[test]
    fn why_a_tree_cycle() {
        let err = Tree::build(
            &s(&["g1", "g2", "g3"]),
            &[],
            &e(&[("g1", "g2"), ("g2", "g3"), ("g3", "g1")]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            TreeError::Cycle {
                cycle: s(&["g1", "g2", "g3"])
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("g1 → g2 → g3 → g1"), "{msg}");
        assert!(msg.contains("Why a tree"), "{msg}");
    }

    #[test]
    fn why_a_tree_two_parents() {
        let err = Tree::build(
            &s(&["g1", "g2", "g3"]),
            &[],
            &e(&[("g1", "g2"), ("g1", "g3"), ("g2", "g3")]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            TreeError::TwoParents {
                child: "g3".into(),
                parents: s(&["g1", "g2"])
            }
        );
        assert!(err.to_string().contains("2 parents (g1, g2)"), "{err}");
    }

    #[test]
    fn other_errors() {
        let t = s(&["g1", "g2"]);
        assert_eq!(
            Tree::build(&[], &[], &[]).unwrap_err(),
            TreeError::NoTargets
        );
        assert_eq!(
            Tree::build(&s(&["g1", "g1"]), &[], &[]).unwrap_err(),
            TreeError::Duplicate("g1".into())
        );
        assert!(matches!(
            Tree::build(&t, &[], &e(&[("g1", "x")])).unwrap_err(),
            TreeError::Unknown { unknown, .. } if unknown == "x"
        ));
        assert_eq!(
            Tree::build(&t, &[], &e(&[("g1", "g1")])).unwrap_err(),
            TreeError::SelfLoop("g1".into())
        );
        let f = Tree::build(&t, &s(&["h1"]), &e(&[("h1", "g1")])).unwrap_err();
        assert_eq!(
            f,
            TreeError::Forest {
                roots: s(&["g2", "h1"])
            }
        );
        assert!(f.to_string().contains("no lowest common ancestor"));
        assert!(matches!(
            Tree::build(&s(&["a b"]), &[], &[]).unwrap_err(),
            TreeError::BadName(_)
        ));
    }

    #[test]
    fn presets_and_toml() {
        let t2 = Tree::two_level(4);
        assert_eq!(t2.describe(), "h1(g1 g2 g3 g4)");
        assert_eq!(Tree::two_level(1).describe(), "g1");
        assert_eq!(Tree::sequencer_star(1).describe(), "h1(g1)");
        assert_eq!(
            Tree::three_level(4).unwrap().describe(),
            "h1(h2(g1 g2) h3(g3 g4))"
        );
        let spec = TreeSpec::from_toml(
            "targets = [\"g1\", \"g2\"]\nauxiliary = [\"h1\"]\n[tree]\nh1 = [\"g1\", \"g2\"]\n",
        )
        .unwrap();
        assert_eq!(Tree::from_spec(&spec).unwrap().describe(), "h1(g1 g2)");
    }
}
