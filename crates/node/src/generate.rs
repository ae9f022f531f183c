//! Deployment generation: keys, `deployment.toml` and one node file per
//! replica, for `byzscale config local` ([`LocalConfig`]) and the local
//! launcher ([`generate`]).

use crate::node_file::{
    default_persist_interval_ms, At2Settings, ByzcastSection, NodeFile, NodeProtocol, SmrService,
};
use anyhow::{bail, Context, Result};
use byzscale_core::config::{Deployment, GroupConfig, ReplicaConfig};
use byzscale_core::crypto::Identity;
use byzscale_core::quorum::FaultModel;
use byzscale_core::threshold;
use byzscale_core::{GroupId, NodeId};
use byzscale_smr::Params;
use std::path::{Path, PathBuf};

/// Where the replicas of a generated deployment listen.
#[derive(Clone, Debug)]
pub struct Ports {
    pub hosts: Vec<String>,
    pub base: u16,
}

impl Ports {
    pub fn replica(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.base as usize + i)
    }
    pub fn metrics(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.base as usize + 100 + i)
    }
    pub fn redis(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.base as usize + 200 + i)
    }
    pub fn http(&self, i: usize) -> String {
        format!("{}:{}", self.host(i), self.base as usize + 300 + i)
    }
    fn host(&self, i: usize) -> &str {
        &self.hosts[i % self.hosts.len()]
    }
}

/// `byzscale config local`: one group of `replicas` replicas.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    pub replicas: usize,
    /// Faults tolerated (default (N-1)/3; spare replicas get WHEAT weights).
    pub faulty: Option<usize>,
    pub out: PathBuf,
    /// Replica i listens on base+i, metrics on base+100+i, Redis on base+200+i.
    pub base_port: u16,
    /// A file with one host per line (replica i goes to host i mod lines);
    /// default 127.0.0.1.
    pub hosts: Option<PathBuf>,
}

impl LocalConfig {
    /// Write the deployment; returns the node files, in node order.
    pub fn write(&self) -> Result<Vec<PathBuf>> {
        let (replicas, base_port) = (self.replicas, self.base_port);
        let f = self.faulty.unwrap_or(replicas.saturating_sub(1) / 3);
        let hosts = match &self.hosts {
            Some(p) => read_hosts(p)?,
            None => vec!["127.0.0.1".into()],
        };
        if base_port as usize + 200 + replicas > u16::MAX as usize {
            bail!("--base-port {base_port} leaves no room for {replicas} replicas");
        }
        let ports = Ports {
            hosts,
            base: base_port,
        };
        generate(
            &self.out,
            &[(replicas, f)],
            &ports,
            NodeProtocol::Smr,
            |_| {},
        )?;
        Ok((0..replicas)
            .map(|i| self.out.join(format!("node-{i}.toml")))
            .collect())
    }
}

/// The hosts of a hosts file: one a line, `#` comments and blank lines skipped.
fn read_hosts(p: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let h: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if h.is_empty() {
        bail!("{} lists no hosts", p.display());
    }
    Ok(h)
}

/// Write keys, `deployment.toml` and one `node-<i>.toml` per replica for
/// groups `0..` of `(n, f)` each (n = 3f+1+Δ), running `protocol`, into
/// `out`, with `patch` applied to every node file before it is written. Node
/// ids and ports are numbered across groups: group 0 holds nodes `0..n0`,
/// group 1 the next `n1`, and so on.
pub fn generate(
    out: &Path,
    groups: &[(usize, usize)],
    ports: &Ports,
    protocol: NodeProtocol,
    patch: impl Fn(&mut NodeFile),
) -> Result<Deployment> {
    if groups.is_empty() {
        bail!("a deployment needs at least one group");
    }
    for &(n, f) in groups {
        if n == 0 {
            bail!("--replicas must be at least 1");
        }
        if n < 3 * f + 1 {
            bail!(
                "{n} replicas cannot tolerate {f} Byzantine faults (need at least {})",
                3 * f + 1
            );
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut configs = Vec::new();
    let mut i = 0usize;
    for (g, &(n, f)) in groups.iter().enumerate() {
        let mut replicas = Vec::new();
        for _ in 0..n {
            let id = Identity::generate();
            write_key(&out.join(format!("node-{i}.key")), &id)?;
            let p = id.public();
            replicas.push(ReplicaConfig {
                id: NodeId(i as u32),
                addr: ports.replica(i),
                sign_key: hex::encode(p.sign),
                dh_key: hex::encode(p.dh),
                metrics_addr: Some(ports.metrics(i)),
                redis_addr: (protocol != NodeProtocol::At2).then(|| ports.redis(i)),
                http_addr: (protocol == NodeProtocol::At2).then(|| ports.http(i)),
            });
            i += 1;
        }
        configs.push(GroupConfig {
            id: GroupId(g as u32),
            fault_model: FaultModel::Bft,
            f,
            delta: n - (3 * f + 1),
            vmax: None,
            replicas,
        });
    }
    let deployment = Deployment { groups: configs };
    // Δ spare replicas get WHEAT weights; validate before writing anything else
    deployment
        .validate()
        .context("generated deployment is invalid")?;
    std::fs::write(out.join("deployment.toml"), deployment.to_toml())?;
    let byzcast = match protocol {
        NodeProtocol::Byzcast => Some(ByzcastSection::write_two_level(out, groups.len())?),
        _ => None,
    };
    let steward = match protocol {
        NodeProtocol::Steward => Some(crate::protocols::steward::write_files(out, &deployment)?),
        _ => None,
    };
    if protocol == NodeProtocol::At2 {
        // the first demo accounts' keys, for `byzscale client transfer
        // --from` (anyone can derive them: demo funds only)
        let dir = out.join("accounts");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for k in 0..DEMO_KEY_FILES {
            let path = dir.join(format!("demo-{k}.key"));
            if !path.exists() {
                crate::protocols::at2::write_account_key(&path, &byzscale_at2::demo_key(k))?;
                restrict(&path);
            }
        }
    }
    for j in 0..i {
        let mut nf = NodeFile {
            protocol,
            deployment: "deployment.toml".into(),
            node: j as u32,
            key: format!("node-{j}.key").into(),
            data_dir: format!("data/node-{j}").into(),
            persist_interval_ms: default_persist_interval_ms(),
            smr: local_params(),
            byzcast: byzcast.clone(),
            service: SmrService::Kv,
            at2: (protocol == NodeProtocol::At2).then(At2Settings::default),
            steward: steward.as_ref().map(|s| s[j].clone()),
        };
        patch(&mut nf);
        std::fs::write(
            out.join(format!("node-{j}.toml")),
            toml::to_string_pretty(&nf)?,
        )?;
    }
    Ok(deployment)
}

/// Demo account key files an AT2 deployment directory gets
/// (`accounts/demo-<k>.key`).
pub const DEMO_KEY_FILES: u32 = 4;

/// Write `id` as a key file (hex, readable by its owner only).
pub fn write_key(path: &Path, id: &Identity) -> Result<()> {
    std::fs::write(path, hex::encode(id.to_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    restrict(path);
    Ok(())
}

/// The most members a threshold key is dealt for.
pub const MAX_THRESHOLD_MEMBERS: usize = 1024;

/// A trusted dealer's BLS threshold key for a group of `n` members, any `k`
/// of whom sign (Steward's sites: k = 2f+1, n = 3f+1): writes
/// `dir/group.key` (the public key, hex) and `dir/share-<i>.key` for i in
/// 0..n (each member's secret share, hex, readable by the owner only), and
/// returns the public key's hex. Refuses to overwrite an existing key.
pub fn write_threshold_keys(dir: &Path, k: usize, n: usize) -> Result<String> {
    if n > MAX_THRESHOLD_MEMBERS {
        bail!("--members {n}: at most {MAX_THRESHOLD_MEMBERS}");
    }
    let group = dir.join("group.key");
    if group.exists() {
        bail!("{} exists; refusing to overwrite a key", group.display());
    }
    let (key, shares) = threshold::deal(k, n, &mut rand::rngs::OsRng)
        .map_err(|e| anyhow::anyhow!("--threshold {k} --members {n}: {e}"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for s in &shares {
        let path = dir.join(format!("share-{}.key", s.index()));
        std::fs::write(&path, hex::encode(s.to_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        restrict(&path);
    }
    let public = hex::encode(key.to_bytes());
    std::fs::write(&group, &public).with_context(|| format!("writing {}", group.display()))?;
    Ok(public)
}

/// A group's threshold public key from a `group.key` file.
pub fn read_group_key(path: &Path) -> Result<threshold::GroupKey> {
    let bytes = read_hex(path)?;
    threshold::GroupKey::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

/// A member's secret share from a `share-<i>.key` file.
pub fn read_key_share(path: &Path) -> Result<threshold::KeyShare> {
    let bytes = read_hex(path)?;
    threshold::KeyShare::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

fn read_hex(path: &Path) -> Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    hex::decode(text.trim()).with_context(|| format!("{}: not hex", path.display()))
}

/// Timeouts for a LAN or loopback deployment (the defaults suit a WAN).
pub fn local_params() -> Params {
    Params {
        request_timeout: 500 * 1_000_000,
        view_change_timeout: 1_000 * 1_000_000,
        client_retry: 500 * 1_000_000,
        // the Redis gateway pipelines many requests through one client
        client_window: 256,
        // a snapshot of the whole store every 512 slots (not 128): at tens of
        // thousands of requests per second, serializing, hashing and writing
        // snapshots 4x as often cost ~5% of a replica's CPU; the window stays
        // twice the interval so the leader never waits for a checkpoint
        checkpoint_interval: 512,
        window: 1024,
        // fewer, larger batches under light load: at 16 and 50 closed-loop
        // clients +30% throughput and -25% CPU per request, no change at 256
        pipeline_min_batch: 64,
        ..Params::default()
    }
}

#[cfg(unix)]
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
#[cfg(not(unix))]
fn restrict(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dealt_threshold_keys_are_read_back_and_sign_together() {
        let dir = std::env::temp_dir().join(format!("byzscale-tkeys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let public = write_threshold_keys(&dir, 3, 4).unwrap();
        let key = read_group_key(&dir.join("group.key")).unwrap();
        assert_eq!(hex::encode(key.to_bytes()), public);
        assert_eq!((key.threshold(), key.members()), (3, 4));
        let msg = b"site accept";
        let shares: Vec<_> = [3, 0, 2]
            .iter()
            .map(|i| {
                read_key_share(&dir.join(format!("share-{i}.key")))
                    .unwrap()
                    .sign(msg)
            })
            .collect();
        let sig = key.combine(msg, &shares).unwrap().signature;
        assert!(key.verify(msg, &sig));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("share-0.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = write_threshold_keys(&dir, 3, 4).unwrap_err().to_string();
        assert!(again.contains("refusing to overwrite"), "{again}");
        std::fs::remove_dir_all(&dir).unwrap();
        let bad = write_threshold_keys(&dir, 5, 4).unwrap_err().to_string();
        assert!(bad.contains("need 1 <= k <= n"), "{bad}");
        assert!(!dir.join("group.key").exists());
        std::fs::write(dir.with_extension("junk"), "zz").unwrap();
        assert!(read_group_key(&dir.with_extension("junk")).is_err());
        let _ = std::fs::remove_file(dir.with_extension("junk"));
    }
}
