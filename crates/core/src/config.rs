//! Deployment configuration (TOML): groups, their replicas, fault model, WHEAT
//! weights and public keys. Secret keys live in separate key files written by
//! `byzscale keygen`; a config only carries public identities.
//!
//! ```toml
//! [[groups]]
//! id = 0
//! fault_model = "bft"   # or "cft"
//! f = 1
//! delta = 0             # WHEAT spare replicas; n = 3f+1+delta
//! vmax = [0, 1]         # optional: positions holding V_max (default: the first u)
//!
//! [[groups.replicas]]
//! id = 0
//! addr = "127.0.0.1:7000"
//! sign_key = "<hex ed25519 public key>"
//! dh_key = "<hex x25519 public key>"
//! ```

use crate::crypto::PublicIdentity;
use crate::ids::{GroupId, NodeId};
use crate::quorum::{FaultModel, QuorumError, QuorumSystem};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid TOML: {0}")]
    Toml(String),
    #[error("group {group}: {source}")]
    Quorum {
        group: GroupId,
        #[source]
        source: QuorumError,
    },
    #[error("group {group} has {n} replicas but fault model {mode:?} with f={f}, delta={delta} needs {need}")]
    Size {
        group: GroupId,
        n: usize,
        mode: FaultModel,
        f: usize,
        delta: usize,
        need: usize,
    },
    #[error("replica id {0} appears more than once")]
    DuplicateReplica(NodeId),
    #[error("group id {0} appears more than once")]
    DuplicateGroup(GroupId),
    #[error("replica {node}: bad {what} key: {why}")]
    Key {
        node: NodeId,
        what: &'static str,
        why: String,
    },
    #[error("the config has no groups")]
    Empty,
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReplicaConfig {
    pub id: NodeId,
    /// host:port for replicas and clients.
    pub addr: String,
    /// Hex ed25519 verifying key.
    pub sign_key: String,
    /// Hex X25519 public key.
    pub dh_key: String,
    /// Optional Prometheus metrics address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
    /// Optional Redis (RESP2) gateway address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_addr: Option<String>,
    /// Optional HTTP JSON API address (AT2 nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<String>,
}

impl ReplicaConfig {
    pub fn public_identity(&self) -> Result<PublicIdentity, ConfigError> {
        Ok(PublicIdentity {
            sign: parse_key(self.id, "sign", &self.sign_key)?,
            dh: parse_key(self.id, "dh", &self.dh_key)?,
        })
    }
}

fn parse_key(node: NodeId, what: &'static str, s: &str) -> Result<[u8; 32], ConfigError> {
    let v = hex::decode(s.trim()).map_err(|e| ConfigError::Key {
        node,
        what,
        why: e.to_string(),
    })?;
    v.try_into().map_err(|v: Vec<u8>| ConfigError::Key {
        node,
        what,
        why: format!("expected 32 bytes, got {}", v.len()),
    })
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupConfig {
    pub id: GroupId,
    #[serde(default)]
    pub fault_model: FaultModel,
    pub f: usize,
    #[serde(default)]
    pub delta: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmax: Option<Vec<usize>>,
    pub replicas: Vec<ReplicaConfig>,
}

impl GroupConfig {
    /// The group's quorum system, checking that the replica count fits f and Δ.
    pub fn quorum_system(&self) -> Result<QuorumSystem, ConfigError> {
        let need = match self.fault_model {
            FaultModel::Bft => 3 * self.f + 1 + self.delta,
            FaultModel::Cft => 2 * self.f + 1 + self.delta,
        };
        if self.replicas.len() != need {
            return Err(ConfigError::Size {
                group: self.id,
                n: self.replicas.len(),
                mode: self.fault_model,
                f: self.f,
                delta: self.delta,
                need,
            });
        }
        let qs = match &self.vmax {
            Some(v) if self.delta > 0 => {
                QuorumSystem::wheat(self.f, self.delta, self.fault_model, v)
            }
            _ if self.delta > 0 => {
                QuorumSystem::wheat_default(self.f, self.delta, self.fault_model)
            }
            _ => QuorumSystem::classic(need, self.f, self.fault_model),
        };
        qs.map_err(|source| ConfigError::Quorum {
            group: self.id,
            source,
        })
    }
    pub fn members(&self) -> Vec<NodeId> {
        self.replicas.iter().map(|r| r.id).collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Deployment {
    pub groups: Vec<GroupConfig>,
}

impl Deployment {
    pub fn from_toml(s: &str) -> Result<Self, ConfigError> {
        let d: Deployment = toml::from_str(s).map_err(|e| ConfigError::Toml(e.to_string()))?;
        d.validate()?;
        Ok(d)
    }
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("deployment serializes")
    }
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.groups.is_empty() {
            return Err(ConfigError::Empty);
        }
        let mut gids = BTreeSet::new();
        let mut nids = BTreeSet::new();
        for g in &self.groups {
            if !gids.insert(g.id) {
                return Err(ConfigError::DuplicateGroup(g.id));
            }
            g.quorum_system()?;
            for r in &g.replicas {
                if !nids.insert(r.id) {
                    return Err(ConfigError::DuplicateReplica(r.id));
                }
                r.public_identity()?;
            }
        }
        Ok(())
    }
    pub fn group(&self, id: GroupId) -> Result<&GroupConfig, ConfigError> {
        self.groups
            .iter()
            .find(|g| g.id == id)
            .ok_or(ConfigError::UnknownGroup(id))
    }
    pub fn replica(&self, id: NodeId) -> Option<(&GroupConfig, &ReplicaConfig)> {
        self.groups
            .iter()
            .find_map(|g| g.replicas.iter().find(|r| r.id == id).map(|r| (g, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Identity;

    fn group(n: usize, f: usize, delta: usize) -> GroupConfig {
        GroupConfig {
            id: GroupId(0),
            fault_model: FaultModel::Bft,
            f,
            delta,
            vmax: None,
            replicas: (0..n)
                .map(|i| {
                    let p = Identity::from_seed([i as u8; 32]).public();
                    ReplicaConfig {
                        id: NodeId(i as u32),
                        addr: format!("127.0.0.1:{}", 7000 + i),
                        sign_key: hex::encode(p.sign),
                        dh_key: hex::encode(p.dh),
                        metrics_addr: None,
                        redis_addr: None,
                        http_addr: None,
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip_and_validate() {
        let d = Deployment {
            groups: vec![group(5, 1, 1)],
        };
        let s = d.to_toml();
        let back = Deployment::from_toml(&s).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.groups[0].quorum_system().unwrap().quorum(), 5);
    }

    #[test]
    fn clear_errors() {
        let d = Deployment {
            groups: vec![group(4, 1, 1)],
        };
        let e = d.validate().unwrap_err().to_string();
        assert!(e.contains("needs 5"), "{e}");
        let mut g = group(4, 1, 0);
        g.replicas[1].sign_key = "zz".into();
        let e = Deployment { groups: vec![g] }
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad sign key"), "{e}");
        assert!(Deployment::from_toml("groups = 3")
            .unwrap_err()
            .to_string()
            .contains("TOML"));
    }
}
