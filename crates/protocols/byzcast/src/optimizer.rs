//! Laying out the overlay tree (seed 000 §III-C, "Optimizations").
//!
//! Input: target groups Γ, auxiliary groups Λ, the workload F(d) (msgs/s sent to
//! each destination set d ∈ D) and the capacity K(x) of every group. Output: the
//! tree T minimizing
//!
//! ```text
//! Σ_{d∈D} H(T, d)   subject to   ∀x: L(T, x) = Σ_{d : x ∈ P(T,d)} F(d) ≤ K(x)
//! ```
//!
//! where H(T, d) is the height of lca(d) (a leaf has height 1) and P(T, d) the
//! groups on the paths from lca(d) to every group of d. Every target is in the
//! tree; an auxiliary group may stay unused (listed in `unused_auxiliary`).
//!
//! - [`Method::Exact`]: backtracking over every parent assignment (cycles
//!   pruned as soon as they close, auxiliary leaves skipped), for up to
//!   [`EXACT_LIMIT`] groups; 4 targets + 3 auxiliaries is about 140k trees.
//! - [`Method::Heuristic`]: steepest-descent local search (re-parent a group,
//!   insert an unused auxiliary above two siblings or above the root, remove an
//!   auxiliary) from three starts: the two-level star, a greedy clustering of
//!   the targets by flow affinity under capacity, and a target-rooted star.
//!
//! Ties (the paper leaves them open) break, in order, on: fewer targets as
//! inner nodes (their own local traffic is not in F), lower peak utilization
//! L/K, fewer auxiliary groups, then the group order of the workload file
//! (earlier groups higher). With seed 000 Tables II/III this picks the paper's
//! trees: T2 = h1(g1 g2 g3 g4) for the uniform workload (Σ H = 12, L(h1) =
//! 7200) and T3 = h1(h2(g1 g2) h3(g3 g4)) for the skewed one, where T2 would
//! load h1 with 18000 > 9500 (Σ H = 4, loads 0 / 9000 / 9000). When no tree is
//! feasible the answer minimizes the total overload and says so.

use crate::tree::{Tree, TreeSpec};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};

/// Largest number of groups (targets + auxiliaries) solved exactly by default.
pub const EXACT_LIMIT: usize = 8;

/// A workload file (TOML):
///
/// ```toml
/// targets = ["g1", "g2", "g3", "g4"]
/// auxiliary = ["h1", "h2", "h3"]
/// capacity = 9500            # msgs/s per group (omit for unlimited)
/// [capacities]               # optional per-group overrides
/// h1 = 9500
/// [[flow]]
/// dst = ["g1", "g2"]
/// rate = 1200                # msgs/s
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub targets: Vec<String>,
    #[serde(default)]
    pub auxiliary: Vec<String>,
    #[serde(default)]
    pub capacity: Option<f64>,
    #[serde(default)]
    pub capacities: BTreeMap<String, f64>,
    #[serde(default, rename = "flow")]
    pub flows: Vec<Flow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    pub dst: Vec<String>,
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    #[error("workload file: {0}")]
    Parse(String),
    #[error("workload: {0}")]
    Invalid(String),
}

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Exact when the instance has at most [`EXACT_LIMIT`] groups, else heuristic.
    Auto,
    Exact,
    Heuristic,
}

/// A validated workload with dense indices: targets `0..t`, auxiliaries after.
#[derive(Clone, Debug)]
struct Instance {
    names: Vec<String>,
    targets: usize,
    cap: Vec<f64>,
    /// (target indices sorted, rate), one per distinct destination set.
    flows: Vec<(Vec<usize>, f64)>,
}

impl Workload {
    pub fn from_toml(s: &str) -> Result<Self, WorkloadError> {
        toml::from_str(s).map_err(|e| WorkloadError::Parse(e.to_string()))
    }

    fn instance(&self) -> Result<Instance, WorkloadError> {
        let bad = |s: String| Err(WorkloadError::Invalid(s));
        if self.targets.is_empty() {
            return bad("no target groups".into());
        }
        let names: Vec<String> = self
            .targets
            .iter()
            .chain(&self.auxiliary)
            .cloned()
            .collect();
        let mut index = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            if n.trim().is_empty() {
                return bad("empty group name".into());
            }
            if index.insert(n.clone(), i).is_some() {
                return bad(format!("group {n} is listed twice"));
            }
        }
        let check_cap = |what: &str, c: f64| {
            if c.is_nan() || c < 0.0 {
                Err(WorkloadError::Invalid(format!(
                    "capacity of {what} must be a non-negative number, got {c}"
                )))
            } else {
                Ok(())
            }
        };
        let default = self.capacity.unwrap_or(f64::INFINITY);
        check_cap("every group", default)?;
        let mut cap = vec![default; names.len()];
        for (g, c) in &self.capacities {
            let Some(i) = index.get(g) else {
                return bad(format!("[capacities] names unknown group {g}"));
            };
            check_cap(g, *c)?;
            cap[*i] = *c;
        }
        let mut merged: BTreeMap<Vec<usize>, f64> = BTreeMap::new();
        for (k, f) in self.flows.iter().enumerate() {
            if f.dst.is_empty() {
                return bad(format!("flow {} has no destination", k + 1));
            }
            if !(f.rate.is_finite() && f.rate >= 0.0) {
                return bad(format!(
                    "flow {} to {:?}: rate must be a non-negative number",
                    k + 1,
                    f.dst
                ));
            }
            let mut d = BTreeSet::new();
            for g in &f.dst {
                match index.get(g) {
                    Some(i) if *i < self.targets.len() => {
                        if !d.insert(*i) {
                            return bad(format!("flow {} names {g} twice", k + 1));
                        }
                    }
                    Some(_) => {
                        return bad(format!(
                            "flow {} goes to auxiliary group {g}: destinations must be targets",
                            k + 1
                        ))
                    }
                    None => return bad(format!("flow {} names unknown group {g}", k + 1)),
                }
            }
            *merged.entry(d.into_iter().collect()).or_insert(0.0) += f.rate;
        }
        Ok(Instance {
            names,
            targets: self.targets.len(),
            cap,
            flows: merged.into_iter().filter(|(_, r)| *r > 0.0).collect(),
        })
    }
}

/// Serialize integral rates as integers (7200, not 7200.0).
fn num<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

fn num_map<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        struct N(f64);
        impl Serialize for N {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                num(&self.0, s)
            }
        }
        map.serialize_entry(k, &N(*v))?;
    }
    map.end()
}

/// One destination set in a solution.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowPlacement {
    pub dst: Vec<String>,
    #[serde(serialize_with = "num")]
    pub rate: f64,
    pub lca: String,
    /// H(T, d): the height of lca(d), a leaf being 1.
    pub height: u32,
}

/// A group whose load exceeds its capacity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overload {
    pub group: String,
    #[serde(serialize_with = "num")]
    pub load: f64,
    #[serde(serialize_with = "num")]
    pub capacity: f64,
}

/// A tree scored against a workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// Every L(T, x) ≤ K(x).
    pub feasible: bool,
    /// Σ_d H(T, d).
    pub objective: u64,
    /// parent → children.
    pub tree: BTreeMap<String, Vec<String>>,
    pub root: String,
    /// L(T, x) in msgs/s for every group of the tree.
    #[serde(serialize_with = "num_map")]
    pub loads: BTreeMap<String, f64>,
    pub overloaded: Vec<Overload>,
    pub flows: Vec<FlowPlacement>,
    /// One line, e.g. `h1(h2(g1 g2) h3(g3 g4))`.
    pub describe: String,
}

/// The answer of [`optimize`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Solution {
    #[serde(flatten)]
    pub best: Evaluation,
    pub method: &'static str,
    pub trees_evaluated: u64,
    pub targets: Vec<String>,
    /// The auxiliary groups the tree uses (a tree file: `targets`, `auxiliary`, `tree`).
    pub auxiliary: Vec<String>,
    pub unused_auxiliary: Vec<String>,
    /// The two-level tree (all targets under the first auxiliary group), for comparison.
    pub two_level: Option<Evaluation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Par {
    Root,
    Of(usize),
    Excluded,
}

/// Scores of one candidate, compared lexicographically by [`Score::key`].
#[derive(Clone, Debug)]
struct Score {
    overload: f64,
    objective: u64,
    inner_targets: usize,
    peak_util: f64,
    aux_used: usize,
    canon: Vec<usize>,
}

impl Score {
    fn better_than(&self, o: &Score) -> bool {
        use std::cmp::Ordering::*;
        let feas = |s: &Score| s.overload <= 0.0;
        match (feas(self), feas(o)) {
            (true, false) => return true,
            (false, true) => return false,
            (false, false) => match self.overload.partial_cmp(&o.overload).unwrap_or(Equal) {
                Less => return true,
                Greater => return false,
                Equal => {}
            },
            _ => {}
        }
        let c = self
            .objective
            .cmp(&o.objective)
            .then(self.inner_targets.cmp(&o.inner_targets))
            .then(self.peak_util.partial_cmp(&o.peak_util).unwrap_or(Equal))
            .then(self.aux_used.cmp(&o.aux_used))
            .then(self.canon.cmp(&o.canon));
        c == Less
    }
}

/// Reusable buffers for scoring parent arrays.
struct Scorer<'a> {
    inst: &'a Instance,
    children: Vec<Vec<usize>>,
    height: Vec<u32>,
    depth: Vec<u32>,
    load: Vec<f64>,
    evaluated: u64,
}

impl<'a> Scorer<'a> {
    fn new(inst: &'a Instance) -> Self {
        let n = inst.names.len();
        Scorer {
            inst,
            children: vec![Vec::new(); n],
            height: vec![0; n],
            depth: vec![0; n],
            load: vec![0.0; n],
            evaluated: 0,
        }
    }

    /// Score a complete parent array (acyclic, one root). `None` if an included
    /// auxiliary group is a leaf (equivalent to leaving it out).
    fn score(&mut self, par: &[Par]) -> Option<Score> {
        let inst = self.inst;
        let n = par.len();
        self.evaluated += 1;
        for c in &mut self.children {
            c.clear();
        }
        let mut root = usize::MAX;
        for (v, p) in par.iter().enumerate() {
            match p {
                Par::Of(p) => self.children[*p].push(v),
                Par::Root => root = v,
                Par::Excluded => {}
            }
        }
        if root == usize::MAX {
            return None;
        }
        for (v, p) in par.iter().enumerate().skip(inst.targets) {
            if *p != Par::Excluded && self.children[v].is_empty() {
                return None;
            }
        }
        // depth top-down, height bottom-up
        let mut order = Vec::with_capacity(n);
        order.push(root);
        self.depth[root] = 0;
        let mut i = 0;
        while i < order.len() {
            let v = order[i];
            i += 1;
            for k in 0..self.children[v].len() {
                let c = self.children[v][k];
                self.depth[c] = self.depth[v] + 1;
                order.push(c);
            }
        }
        for &v in order.iter().rev() {
            let h = self.children[v]
                .iter()
                .map(|c| self.height[*c] + 1)
                .max()
                .unwrap_or(1);
            self.height[v] = h;
        }
        for l in &mut self.load {
            *l = 0.0;
        }
        let parent = |v: usize| match par[v] {
            Par::Of(p) => p,
            _ => v,
        };
        let mut objective = 0u64;
        let mut mark = vec![false; n];
        for (d, rate) in &inst.flows {
            // lca by climbing
            let mut top = d[0];
            for &g in &d[1..] {
                let (mut a, mut b) = (top, g);
                while self.depth[a] > self.depth[b] {
                    a = parent(a);
                }
                while self.depth[b] > self.depth[a] {
                    b = parent(b);
                }
                while a != b {
                    a = parent(a);
                    b = parent(b);
                }
                top = a;
            }
            objective += self.height[top] as u64;
            for &g in d {
                let mut x = g;
                loop {
                    if !mark[x] {
                        mark[x] = true;
                        self.load[x] += rate;
                    }
                    if x == top {
                        break;
                    }
                    x = parent(x);
                }
            }
            for &g in d {
                let mut x = g;
                loop {
                    mark[x] = false;
                    if x == top {
                        break;
                    }
                    x = parent(x);
                }
            }
        }
        let mut overload = 0.0;
        let mut peak_util: f64 = 0.0;
        for (v, p) in par.iter().enumerate() {
            if *p == Par::Excluded {
                continue;
            }
            let (l, k) = (self.load[v], inst.cap[v]);
            if l > k {
                overload += l - k;
            }
            let u = if k > 0.0 {
                l / k
            } else if l > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            peak_util = peak_util.max(u);
        }
        let inner_targets = (0..inst.targets)
            .filter(|v| !self.children[*v].is_empty())
            .count();
        let aux_used = (inst.targets..n)
            .filter(|v| par[*v] != Par::Excluded)
            .count();
        let mut canon = Vec::with_capacity(n + 1);
        canon.push(root);
        canon.extend(par.iter().map(|p| match p {
            Par::Of(p) => *p,
            Par::Root => n,
            Par::Excluded => n + 1,
        }));
        Some(Score {
            overload,
            objective,
            inner_targets,
            peak_util,
            aux_used,
            canon,
        })
    }
}

fn to_tree(inst: &Instance, par: &[Par]) -> Tree {
    // keep only included groups, renumbered in workload order
    let keep: Vec<usize> = (0..par.len())
        .filter(|v| par[*v] != Par::Excluded)
        .collect();
    let pos: BTreeMap<usize, usize> = keep.iter().enumerate().map(|(i, v)| (*v, i)).collect();
    let names: Vec<String> = keep.iter().map(|v| inst.names[*v].clone()).collect();
    let parent: Vec<Option<usize>> = keep
        .iter()
        .map(|v| match par[*v] {
            Par::Of(p) => Some(pos[&p]),
            _ => None,
        })
        .collect();
    Tree::from_parent_indices(names, inst.targets, &parent).expect("candidate is a tree")
}

fn evaluation(inst: &Instance, tree: &Tree) -> Evaluation {
    let id = |name: &str| tree.id(name);
    let mut loads: BTreeMap<String, f64> = tree
        .groups()
        .map(|g| (tree.name(g).to_string(), 0.0))
        .collect();
    let mut objective = 0;
    let mut flows = Vec::new();
    for (d, rate) in &inst.flows {
        let gs: Vec<_> = d.iter().filter_map(|i| id(&inst.names[*i])).collect();
        let top = tree.lca(&gs).expect("targets are in the tree");
        objective += tree.height(top) as u64;
        for g in tree.path_groups(&gs) {
            *loads.get_mut(tree.name(g)).expect("group in tree") += rate;
        }
        flows.push(FlowPlacement {
            dst: d.iter().map(|i| inst.names[*i].clone()).collect(),
            rate: *rate,
            lca: tree.name(top).to_string(),
            height: tree.height(top),
        });
    }
    let cap_of = |name: &str| {
        inst.names
            .iter()
            .position(|n| n == name)
            .map(|i| inst.cap[i])
            .unwrap_or(f64::INFINITY)
    };
    let overloaded: Vec<Overload> = loads
        .iter()
        .filter(|(g, l)| **l > cap_of(g))
        .map(|(g, l)| Overload {
            group: g.clone(),
            load: *l,
            capacity: cap_of(g),
        })
        .collect();
    Evaluation {
        feasible: overloaded.is_empty(),
        objective,
        tree: tree.to_spec().tree,
        root: tree.name(tree.root()).to_string(),
        loads,
        overloaded,
        flows,
        describe: tree.describe(),
    }
}

/// Score a given tree against a workload (its groups must be the workload's
/// targets plus some of its auxiliary groups).
pub fn evaluate(w: &Workload, spec: &TreeSpec) -> Result<Evaluation, WorkloadError> {
    let inst = w.instance()?;
    let tree = Tree::from_spec(spec).map_err(|e| WorkloadError::Invalid(e.to_string()))?;
    let tt: BTreeSet<&str> = tree.targets().map(|g| tree.name(g)).collect();
    let wt: BTreeSet<&str> = inst.names[..inst.targets]
        .iter()
        .map(String::as_str)
        .collect();
    if tt != wt {
        return Err(WorkloadError::Invalid(
            "the tree's target groups differ from the workload's".into(),
        ));
    }
    Ok(evaluation(&inst, &tree))
}

/// Choose the best tree for `w` (see the module docs).
pub fn optimize(w: &Workload, method: Method) -> Result<Solution, WorkloadError> {
    let inst = w.instance()?;
    let n = inst.names.len();
    let exact = match method {
        Method::Exact => true,
        Method::Heuristic => false,
        Method::Auto => n <= EXACT_LIMIT,
    };
    if exact && n > EXACT_LIMIT + 2 {
        return Err(WorkloadError::Invalid(format!(
            "{n} groups is too many for the exact search (at most {}); use the heuristic",
            EXACT_LIMIT + 2
        )));
    }
    let mut scorer = Scorer::new(&inst);
    let (par, _) = if exact {
        exact_search(&mut scorer)
    } else {
        heuristic_search(&mut scorer)
    };
    let evaluated = scorer.evaluated;
    let tree = to_tree(&inst, &par);
    let best = evaluation(&inst, &tree);
    let two_level = (n > inst.targets && inst.targets > 1).then(|| {
        let mut p = vec![Par::Excluded; n];
        for v in p.iter_mut().take(inst.targets) {
            *v = Par::Of(inst.targets);
        }
        p[inst.targets] = Par::Root;
        evaluation(&inst, &to_tree(&inst, &p))
    });
    Ok(Solution {
        best,
        method: if exact { "exact" } else { "heuristic" },
        trees_evaluated: evaluated,
        targets: inst.names[..inst.targets].to_vec(),
        auxiliary: (inst.targets..n)
            .filter(|v| par[*v] != Par::Excluded)
            .map(|v| inst.names[v].clone())
            .collect(),
        unused_auxiliary: (inst.targets..n)
            .filter(|v| par[*v] == Par::Excluded)
            .map(|v| inst.names[v].clone())
            .collect(),
        two_level,
    })
}

/// Whether following parents from `p` reaches `v` (over assigned nodes).
fn reaches(par: &[Option<Par>], mut p: usize, v: usize) -> bool {
    let mut steps = 0;
    loop {
        if p == v {
            return true;
        }
        steps += 1;
        if steps > par.len() {
            return true;
        }
        match par[p] {
            Some(Par::Of(q)) => p = q,
            _ => return false,
        }
    }
}

/// Backtracking over parent assignments (see the module docs).
struct Exact {
    n: usize,
    t: usize,
    par: Vec<Option<Par>>,
    /// Child counts of assigned nodes, to forbid excluding a parent.
    kids: Vec<usize>,
    full: Vec<Par>,
    best: Option<(Vec<Par>, Score)>,
}

impl Exact {
    fn rec(&mut self, v: usize, has_root: bool, s: &mut Scorer) {
        let (n, t) = (self.n, self.t);
        if v == n {
            if !has_root {
                return;
            }
            for (f, p) in self.full.iter_mut().zip(&self.par) {
                *f = p.expect("assigned");
            }
            if let Some(sc) = s.score(&self.full) {
                if self
                    .best
                    .as_ref()
                    .map(|(_, b)| sc.better_than(b))
                    .unwrap_or(true)
                {
                    self.best = Some((self.full.clone(), sc));
                }
            }
            return;
        }
        // root
        if !has_root {
            self.par[v] = Some(Par::Root);
            self.rec(v + 1, true, s);
        }
        // excluded (auxiliary groups only, and only if no assigned node hangs below)
        if v >= t && self.kids[v] == 0 {
            self.par[v] = Some(Par::Excluded);
            self.rec(v + 1, has_root, s);
        }
        for p in 0..n {
            if p == v || self.par[p] == Some(Par::Excluded) || reaches(&self.par, p, v) {
                continue;
            }
            self.par[v] = Some(Par::Of(p));
            self.kids[p] += 1;
            self.rec(v + 1, has_root, s);
            self.kids[p] -= 1;
        }
        self.par[v] = None;
    }
}

fn exact_search(s: &mut Scorer) -> (Vec<Par>, Score) {
    let n = s.inst.names.len();
    let mut e = Exact {
        n,
        t: s.inst.targets,
        par: vec![None; n],
        kids: vec![0; n],
        full: vec![Par::Excluded; n],
        best: None,
    };
    e.rec(0, false, s);
    e.best.expect("a tree over the targets always exists")
}

fn subtree_contains(par: &[Par], root_of_sub: usize, mut x: usize) -> bool {
    let mut steps = 0;
    loop {
        if x == root_of_sub {
            return true;
        }
        steps += 1;
        if steps > par.len() {
            return true;
        }
        match par[x] {
            Par::Of(p) => x = p,
            _ => return false,
        }
    }
}

/// Drop auxiliary groups left without children (repeatedly).
fn normalize(par: &mut [Par], t: usize) {
    loop {
        let mut changed = false;
        for a in t..par.len() {
            if par[a] == Par::Excluded {
                continue;
            }
            let has_child = par.contains(&Par::Of(a));
            if !has_child {
                if par[a] == Par::Root {
                    continue; // cannot happen with targets present below
                }
                par[a] = Par::Excluded;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

fn neighbours(par: &[Par], t: usize) -> Vec<Vec<Par>> {
    let n = par.len();
    let mut out = Vec::new();
    let included: Vec<usize> = (0..n).filter(|v| par[*v] != Par::Excluded).collect();
    let root = (0..n).find(|v| par[*v] == Par::Root).expect("one root");
    // re-parent
    for &v in &included {
        if v == root {
            continue;
        }
        for &p in &included {
            if p == v || par[v] == Par::Of(p) || subtree_contains(par, v, p) {
                continue;
            }
            let mut q = par.to_vec();
            q[v] = Par::Of(p);
            out.push(q);
        }
    }
    let children = |x: usize| -> Vec<usize> { (0..n).filter(|c| par[*c] == Par::Of(x)).collect() };
    for a in t..n {
        if par[a] == Par::Excluded {
            // a new root above the current root
            let mut q = par.to_vec();
            q[a] = Par::Root;
            q[root] = Par::Of(a);
            out.push(q);
            // between a group and two of its children
            for &p in &included {
                let cs = children(p);
                for i in 0..cs.len() {
                    for j in i + 1..cs.len() {
                        let mut q = par.to_vec();
                        q[a] = Par::Of(p);
                        q[cs[i]] = Par::Of(a);
                        q[cs[j]] = Par::Of(a);
                        out.push(q);
                    }
                }
            }
        } else {
            // remove a: its children go to its parent
            let cs = children(a);
            let mut q = par.to_vec();
            match par[a] {
                Par::Of(p) => {
                    for c in cs {
                        q[c] = Par::Of(p);
                    }
                }
                Par::Root if cs.len() == 1 => q[cs[0]] = Par::Root,
                _ => continue,
            }
            q[a] = Par::Excluded;
            out.push(q);
        }
    }
    for q in &mut out {
        normalize(q, t);
    }
    out
}

fn local_search(s: &mut Scorer, start: Vec<Par>) -> (Vec<Par>, Score) {
    let t = s.inst.targets;
    let mut cur = start;
    normalize(&mut cur, t);
    let mut cur_score = s.score(&cur).expect("start is a valid tree");
    for _ in 0..10_000 {
        let mut improved: Option<(Vec<Par>, Score)> = None;
        for q in neighbours(&cur, t) {
            if let Some(sc) = s.score(&q) {
                let beats_best = match &improved {
                    Some((_, b)) => sc.better_than(b),
                    None => sc.better_than(&cur_score),
                };
                if beats_best {
                    improved = Some((q, sc));
                }
            }
        }
        match improved {
            Some((q, sc)) => {
                cur = q;
                cur_score = sc;
            }
            None => break,
        }
    }
    (cur, cur_score)
}

/// Greedy start: merge target clusters by flow affinity while the cluster's
/// auxiliary group stays under capacity; clusters hang under a root auxiliary.
fn clustered_start(inst: &Instance) -> Option<Vec<Par>> {
    let t = inst.targets;
    let n = inst.names.len();
    if n - t < 2 {
        return None;
    }
    let mut aux: Vec<usize> = (t..n).collect();
    aux.sort_by(|a, b| {
        inst.cap[*b]
            .partial_cmp(&inst.cap[*a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    });
    let root_aux = aux[0];
    let pool = &aux[1..];
    let mut clusters: Vec<BTreeSet<usize>> = (0..t).map(|g| BTreeSet::from([g])).collect();
    let load_of = |c: &BTreeSet<usize>| -> f64 {
        inst.flows
            .iter()
            .filter(|(d, _)| {
                let inside = d.iter().filter(|g| c.contains(g)).count();
                inside > 0 && (inside < d.len() || d.len() >= 2)
            })
            .map(|(_, r)| r)
            .sum()
    };
    loop {
        let multi = clusters.iter().filter(|c| c.len() > 1).count();
        let mut best: Option<(f64, usize, usize)> = None;
        for i in 0..clusters.len() {
            for j in i + 1..clusters.len() {
                let new_multi = multi + 1
                    - usize::from(clusters[i].len() > 1)
                    - usize::from(clusters[j].len() > 1);
                if new_multi > pool.len() {
                    continue;
                }
                let u: BTreeSet<usize> = clusters[i].union(&clusters[j]).copied().collect();
                let affinity: f64 = inst
                    .flows
                    .iter()
                    .filter(|(d, _)| {
                        d.iter().any(|g| clusters[i].contains(g))
                            && d.iter().any(|g| clusters[j].contains(g))
                    })
                    .map(|(_, r)| r)
                    .sum();
                if affinity <= 0.0
                    || load_of(&u) > inst.cap[pool[new_multi.saturating_sub(1).min(pool.len() - 1)]]
                {
                    continue;
                }
                if best.map(|(a, _, _)| affinity > a).unwrap_or(true) {
                    best = Some((affinity, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else { break };
        let cj = clusters.remove(j);
        clusters[i].extend(cj);
    }
    let mut par = vec![Par::Excluded; n];
    par[root_aux] = Par::Root;
    let mut next = pool.iter();
    for c in &clusters {
        if c.len() == 1 {
            par[*c.iter().next().expect("non-empty")] = Par::Of(root_aux);
        } else {
            let a = *next.next()?;
            par[a] = Par::Of(root_aux);
            for g in c {
                par[*g] = Par::Of(a);
            }
        }
    }
    Some(par)
}

fn heuristic_search(s: &mut Scorer) -> (Vec<Par>, Score) {
    let inst = s.inst;
    let t = inst.targets;
    let n = inst.names.len();
    let mut starts = Vec::new();
    if n > t {
        let mut p = vec![Par::Excluded; n];
        for v in p.iter_mut().take(t) {
            *v = Par::Of(t);
        }
        p[t] = Par::Root;
        starts.push(p);
    }
    if let Some(p) = clustered_start(inst) {
        starts.push(p);
    }
    {
        let mut p = vec![Par::Excluded; n];
        for v in p.iter_mut().take(t).skip(1) {
            *v = Par::Of(0);
        }
        p[0] = Par::Root;
        starts.push(p);
    }
    let mut best: Option<(Vec<Par>, Score)> = None;
    for st in starts {
        let (p, sc) = local_search(s, st);
        if best
            .as_ref()
            .map(|(_, b)| sc.better_than(b))
            .unwrap_or(true)
        {
            best = Some((p, sc));
        }
    }
    best.expect("at least one start")
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIFORM: &str = include_str!("../workloads/uniform.toml");
    const SKEWED: &str = include_str!("../workloads/skewed.toml");

    fn spec(s: &str) -> TreeSpec {
        TreeSpec::from_toml(s).unwrap()
    }
    fn t2() -> TreeSpec {
        spec("targets=[\"g1\",\"g2\",\"g3\",\"g4\"]\nauxiliary=[\"h1\"]\n[tree]\nh1=[\"g1\",\"g2\",\"g3\",\"g4\"]\n")
    }
    fn t3() -> TreeSpec {
        spec(
            "targets=[\"g1\",\"g2\",\"g3\",\"g4\"]\nauxiliary=[\"h1\",\"h2\",\"h3\"]\n[tree]\n\
             h1=[\"h2\",\"h3\"]\nh2=[\"g1\",\"g2\"]\nh3=[\"g3\",\"g4\"]\n",
        )
    }

    /// Seed 000 Table III, every number.
    #[test]
    fn table_iii_loads_and_heights() {
        let u = Workload::from_toml(UNIFORM).unwrap();
        let s = Workload::from_toml(SKEWED).unwrap();
        let u2 = evaluate(&u, &t2()).unwrap();
        assert_eq!(
            (u2.objective, u2.loads["h1"], u2.feasible),
            (12, 7200.0, true)
        );
        let u3 = evaluate(&u, &t3()).unwrap();
        assert_eq!(u3.objective, 16);
        assert_eq!(
            (u3.loads["h1"], u3.loads["h2"], u3.loads["h3"]),
            (4800.0, 6000.0, 6000.0)
        );
        assert!(u3.feasible);
        let s2 = evaluate(&s, &t2()).unwrap();
        assert_eq!(
            (s2.objective, s2.loads["h1"], s2.feasible),
            (4, 18000.0, false)
        );
        assert_eq!(
            s2.overloaded,
            vec![Overload {
                group: "h1".into(),
                load: 18000.0,
                capacity: 9500.0
            }]
        );
        let s3 = evaluate(&s, &t3()).unwrap();
        assert_eq!(s3.objective, 4);
        assert_eq!(
            (s3.loads["h1"], s3.loads["h2"], s3.loads["h3"]),
            (0.0, 9000.0, 9000.0)
        );
        assert!(s3.feasible);
    }

    #[test]
    fn uniform_picks_two_level() {
        let u = Workload::from_toml(UNIFORM).unwrap();
        for m in [Method::Exact, Method::Heuristic] {
            let sol = optimize(&u, m).unwrap();
            assert!(sol.best.feasible, "{m:?}");
            assert_eq!(sol.best.objective, 12, "{m:?}");
            assert_eq!(sol.best.root, "h1", "{m:?}");
            assert_eq!(sol.best.loads["h1"], 7200.0, "{m:?}");
            assert_eq!(sol.best.describe, "h1(g1 g2 g3 g4)", "{m:?}");
            assert_eq!(
                sol.unused_auxiliary,
                vec!["h2".to_string(), "h3".to_string()]
            );
        }
        let sol = optimize(&u, Method::Auto).unwrap();
        assert_eq!(sol.method, "exact");
        let tl = sol.two_level.unwrap();
        assert!(tl.feasible);
    }

    #[test]
    fn skewed_needs_three_levels() {
        let s = Workload::from_toml(SKEWED).unwrap();
        for m in [Method::Exact, Method::Heuristic] {
            let sol = optimize(&s, m).unwrap();
            assert!(sol.best.feasible, "{m:?}");
            assert_eq!(sol.best.objective, 4, "{m:?}");
            assert_eq!(sol.best.describe, "h1(h2(g1 g2) h3(g3 g4))", "{m:?}");
            assert_eq!((sol.best.loads["h1"], sol.best.loads["h2"]), (0.0, 9000.0));
            let tl = sol.two_level.as_ref().unwrap();
            assert!(!tl.feasible);
            assert_eq!(tl.loads["h1"], 18000.0);
        }
    }

    #[test]
    fn targets_only_and_infeasible() {
        // no auxiliary groups: the skewed workload is served genuinely by g1 → g2, g3 → g4
        let w = Workload::from_toml(
            "targets=[\"g1\",\"g2\",\"g3\",\"g4\"]\ncapacity=9500\n\
             [[flow]]\ndst=[\"g1\",\"g2\"]\nrate=9000\n[[flow]]\ndst=[\"g3\",\"g4\"]\nrate=9000\n",
        )
        .unwrap();
        let sol = optimize(&w, Method::Exact).unwrap();
        assert!(sol.best.feasible);
        // lca heights: one pair at height 2, the other at 3 (the root must sit above both pairs)
        assert_eq!(sol.best.objective, 5);
        let h = optimize(&w, Method::Heuristic).unwrap();
        assert_eq!(h.best.objective, 5);
        // every group too small: infeasible, and reported
        let w = Workload::from_toml(
            "targets=[\"g1\",\"g2\"]\nauxiliary=[\"h1\"]\ncapacity=10\n[[flow]]\ndst=[\"g1\",\"g2\"]\nrate=100\n",
        )
        .unwrap();
        let sol = optimize(&w, Method::Auto).unwrap();
        assert!(!sol.best.feasible);
        assert!(!sol.best.overloaded.is_empty());
    }

    #[test]
    fn heuristic_scales() {
        // 12 targets, 5 auxiliaries, skewed pairs: beyond the exact limit
        let mut s = String::from("targets=[");
        s.push_str(
            &(1..=12)
                .map(|i| format!("\"g{i}\""))
                .collect::<Vec<_>>()
                .join(","),
        );
        s.push_str("]\nauxiliary=[");
        s.push_str(
            &(1..=7)
                .map(|i| format!("\"h{i}\""))
                .collect::<Vec<_>>()
                .join(","),
        );
        s.push_str("]\ncapacity=9500\n");
        for i in (1..=12).step_by(2) {
            s.push_str(&format!(
                "[[flow]]\ndst=[\"g{i}\",\"g{}\"]\nrate=4000\n",
                i + 1
            ));
        }
        let w = Workload::from_toml(&s).unwrap();
        let sol = optimize(&w, Method::Auto).unwrap();
        assert_eq!(sol.method, "heuristic");
        assert!(sol.best.feasible);
        // every pair can have its lca at height 2
        assert_eq!(sol.best.objective, 12);
    }

    #[test]
    fn bad_workloads() {
        let e = |s: &str| {
            optimize(&Workload::from_toml(s).unwrap(), Method::Auto)
                .unwrap_err()
                .to_string()
        };
        assert!(e("targets=[\"g1\"]\n[[flow]]\ndst=[\"x\"]\nrate=1\n").contains("unknown group x"));
        assert!(
            e("targets=[\"g1\"]\nauxiliary=[\"h\"]\n[[flow]]\ndst=[\"h\"]\nrate=1\n")
                .contains("auxiliary")
        );
        assert!(e("targets=[\"g1\"]\n[[flow]]\ndst=[]\nrate=1\n").contains("no destination"));
        assert!(e("targets=[\"g1\",\"g1\"]\n").contains("twice"));
        assert!(Workload::from_toml("targets=[\"g1\"]\nbogus=1\n").is_err());
    }
}
