//! What differs between the KV stores a chaos run can drive (one SMR group,
//! or a ByzCast tree of SMR groups): the client that probes and reads back,
//! the keys the writers write, and how the decided logs are grouped for the
//! agreement check. The writers ([`super::writers`]), the read-back and the
//! agreement check ([`super::check`]) are the same for both.

use super::check::{self, Agreement, LogSample, Lost};
use super::writers::{self, Keys};
use crate::daemon::KvClient;
use crate::generate::local_params;
use crate::protocols::byzcast::ByzcastClient;
use crate::protocols::smr::SmrClient;
use anyhow::{bail, Result};
use byzscale_apps::kv::{KvOp, KvReply};
use byzscale_byzcast::{kv::shard_of, Topology};
use byzscale_core::config::Deployment;
use byzscale_core::GroupId;
use serde::Serialize;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// The KV store under test.
#[derive(Clone)]
pub(crate) enum Kv {
    /// One SMR group (group 0 of the deployment).
    Smr,
    /// A ByzCast tree: the target groups (shards) and the auxiliary groups
    /// above them.
    Byzcast(Arc<Topology>),
}

/// What the KV checks found.
#[derive(Clone, Debug, Serialize)]
pub struct KvFound {
    /// Acknowledged writes not read back (`None`: the reader did not run).
    pub lost_writes: Option<usize>,
    pub lost_examples: Vec<String>,
    /// Seconds from the end of the faults until a fresh client's write was
    /// acknowledged.
    pub served_again_s: Option<f64>,
    #[serde(flatten)]
    pub logs: Logs,
}

/// The decided logs, compared per group.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Logs {
    /// One SMR group.
    Group {
        /// The highest view installed at the end (each view above 0 took a
        /// view change).
        final_view: Option<u64>,
        #[serde(flatten)]
        agreement: Agreement,
    },
    /// A ByzCast tree.
    Tree {
        /// The tree, e.g. `h1(g1 g2)`.
        tree: String,
        /// Acknowledged MSETs whose keys live on two shards.
        multi_shard_writes: u64,
        groups: Vec<GroupLogs>,
    },
}

/// One ByzCast group's logs.
#[derive(Clone, Debug, Serialize)]
pub struct GroupLogs {
    /// The group's name in the tree (`g1`, `h1`, ...).
    pub group: String,
    /// Its replicas (node indices).
    pub nodes: Vec<usize>,
    pub final_view: Option<u64>,
    #[serde(flatten)]
    pub agreement: Agreement,
}

impl Kv {
    /// A fresh client of the whole store, with `window` requests in flight.
    async fn client(&self, dep: &Deployment, window: u64) -> Result<Box<dyn KvClient>> {
        Ok(match self {
            Kv::Smr => Box::new(SmrClient::connect(dep, GroupId(0), local_params(), window).await?),
            Kv::Byzcast(t) => {
                Box::new(ByzcastClient::connect(dep, t.clone(), local_params()).await?)
            }
        })
    }

    /// The write that shows the store serves: with ByzCast an MSET with a
    /// key on every shard (ordered at the root, delivered by every target).
    fn probe(&self) -> KvOp {
        match self {
            Kv::Smr => KvOp::Set(b"chaos:probe".to_vec(), b"1".to_vec()),
            Kv::Byzcast(t) => {
                let targets = t.tree().target_count();
                let kvs = (0..targets)
                    .map(|g| (key_on(targets, g, "chaos:probe:"), b"1".to_vec()))
                    .collect();
                KvOp::MSet(kvs)
            }
        }
    }

    /// What the writers write: with ByzCast every third command is an MSET
    /// of its key and a key on another shard.
    pub fn keys(&self, seed: u64) -> Keys {
        match self {
            Kv::Smr => writers::single_keys(seed),
            Kv::Byzcast(t) => tree_keys(seed, t.tree().target_count()),
        }
    }

    /// Wait until a fresh client's probe write is acknowledged, at most
    /// `within`.
    pub async fn serve_within(&self, dep: &Deployment, within: Duration) -> Result<()> {
        let c = self.client(dep, 1).await?;
        let r = tokio::time::timeout(within, c.exec(self.probe(), false)).await;
        c.stop().await;
        match r {
            Ok(Ok(KvReply::Ok)) => Ok(()),
            Ok(Ok(other)) => bail!("the probe write answered {other}"),
            Ok(Err(e)) => bail!("{e}"),
            Err(_) => bail!("no answer within {} s", within.as_secs()),
        }
    }

    /// Read every acknowledged write back through a fresh client.
    pub async fn read_back(&self, dep: &Deployment, acked: &[(String, String)]) -> Result<Lost> {
        let c = self.client(dep, 4).await?;
        let r = check::read_back(c.as_ref(), acked).await;
        c.stop().await;
        r
    }

    /// The agreement of each group's samples (`groups`: node indices per
    /// group, `views`: each group's final view).
    pub fn logs(
        &self,
        samples: &[LogSample],
        groups: &[Range<usize>],
        views: &[Option<u64>],
        multi_shard_writes: u64,
    ) -> Logs {
        let of = |r: &Range<usize>| -> Vec<LogSample> {
            samples
                .iter()
                .filter(|s| r.contains(&s.replica))
                .cloned()
                .collect()
        };
        match self {
            Kv::Smr => Logs::Group {
                final_view: views[0],
                agreement: check::agreement(&of(&groups[0])),
            },
            Kv::Byzcast(t) => Logs::Tree {
                tree: t.tree().describe(),
                multi_shard_writes,
                groups: groups
                    .iter()
                    .enumerate()
                    .map(|(g, r)| GroupLogs {
                        group: t.tree().name(GroupId(g as u32)).to_string(),
                        nodes: r.clone().collect(),
                        final_view: views[g],
                        agreement: check::agreement(&of(r)),
                    })
                    .collect(),
            },
        }
    }
}

/// The keys of a ByzCast run over `targets` shards: `chaos:w:k` set to
/// `seed.w.k`, and every third command also `chaos:w:k:j` (the first j on
/// another shard) set to `seed.w.k.b`, in one MSET.
fn tree_keys(seed: u64, targets: usize) -> Keys {
    Arc::new(move |w, k| {
        let (key, value) = (format!("chaos:{w}:{k}"), format!("{seed}.{w}.{k}"));
        if k % 3 != 2 || targets < 2 {
            return vec![(key, value)];
        }
        let home = shard_of(key.as_bytes(), targets).0;
        let other = (0..)
            .map(|j| format!("{key}:{j}"))
            .find(|o| shard_of(o.as_bytes(), targets).0 != home)
            .expect("some key lives on another shard");
        vec![(key, value.clone()), (other, format!("{value}.b"))]
    })
}

/// A key `<prefix><i>` that lives on target `g` of `targets`.
fn key_on(targets: usize, g: usize, prefix: &str) -> Vec<u8> {
    (0..)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .find(|k| shard_of(k, targets).0 as usize == g)
        .expect("every shard owns some key")
}

impl KvFound {
    /// The violations in what the checks found.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(n) = self.lost_writes.filter(|n| *n > 0) {
            v.push(format!("{n} acknowledged writes were not read back"));
        }
        match &self.logs {
            Logs::Group { agreement, .. } => v.extend(disagreements(agreement)),
            Logs::Tree { groups, .. } => {
                for g in groups {
                    let d = disagreements(&g.agreement);
                    v.extend(d.into_iter().map(|d| format!("group {}: {d}", g.group)));
                }
            }
        }
        v
    }
}

fn disagreements(a: &Agreement) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(s) = a.disagreeing_slot_examples.first() {
        v.push(format!(
            "{} slots decided with different batches (first: {s})",
            a.disagreeing_slots
        ));
    }
    if let Some(s) = a.disagreeing_checkpoint_examples.first() {
        v.push(format!(
            "{} checkpoints certified with different states (first: {s})",
            a.disagreeing_checkpoints
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_run_writes_every_third_command_across_two_shards_each_key_once() {
        let keys = tree_keys(9, 2);
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..30 {
            let kvs = keys(1, k);
            assert_eq!(kvs.len(), if k % 3 == 2 { 2 } else { 1 }, "{kvs:?}");
            if let [(a, _), (b, _)] = &kvs[..] {
                assert_ne!(shard_of(a.as_bytes(), 2), shard_of(b.as_bytes(), 2));
            }
            for (key, value) in kvs {
                assert!(seen.insert(key.clone()), "{key} twice");
                assert!(seen.insert(value), "a value twice");
            }
        }
        assert_eq!(keys(0, 2).len(), 2);
        assert_eq!(tree_keys(9, 1)(0, 2).len(), 1);
        for g in 0..2 {
            assert_eq!(shard_of(&key_on(2, g, "p:"), 2).0 as usize, g);
        }
    }
}
