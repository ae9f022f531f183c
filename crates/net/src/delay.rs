//! The WAN delay shim: a one-way latency matrix between regions, applied in
//! userspace to outgoing frames (the kernel here has no netem).
//!
//! Each destination's outgoing queue in the transport doubles as its timer
//! queue: a frame is stamped with a release time `now + one_way + U(0, jitter)`,
//! clamped so release times never go backwards (TCP does not reorder, so neither
//! does the shim), and the writer sends it only once that time has passed. The
//! delay is applied by the sender only, so a matrix entry is the full one-way
//! latency of the link.
//!
//! ```toml
//! regions = ["a", "b"]
//! one_way_ms = [[0, 35], [35, 0]]
//! jitter_ms = 2          # optional, uniform extra delay in [0, jitter)
//! clients = "a"          # optional region of every client
//! [assign]               # node index -> region; "c<id>" keys place one client
//! 0 = "a"
//! 1 = "b"
//! ```
//!
//! Endpoints without a region are not delayed.

use byzscale_core::Addr;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DelayError {
    #[error("cannot read delay file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("delay config is not valid TOML: {0}")]
    Toml(String),
    #[error("delay config: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    regions: Vec<String>,
    one_way_ms: Vec<Vec<f64>>,
    #[serde(default)]
    jitter_ms: f64,
    #[serde(default)]
    clients: Option<String>,
    #[serde(default)]
    assign: BTreeMap<String, String>,
}

/// A validated latency matrix with endpoint-to-region assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct DelayMatrix {
    regions: Vec<String>,
    one_way: Vec<Vec<Duration>>,
    jitter: Duration,
    nodes: BTreeMap<u32, usize>,
    clients: BTreeMap<u64, usize>,
    client_default: Option<usize>,
}

fn ms(v: f64, what: &str) -> Result<Duration, DelayError> {
    if !v.is_finite() || !(0.0..=3_600_000.0).contains(&v) {
        return Err(DelayError::Invalid(format!(
            "{what} = {v} ms is not a delay"
        )));
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

impl DelayMatrix {
    pub fn from_toml(s: &str) -> Result<Self, DelayError> {
        let raw: RawMatrix = toml::from_str(s).map_err(|e| DelayError::Toml(e.to_string()))?;
        let n = raw.regions.len();
        if n == 0 {
            return Err(DelayError::Invalid("no regions".into()));
        }
        let index: BTreeMap<&str, usize> = raw
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        if index.len() != n {
            return Err(DelayError::Invalid("duplicate region name".into()));
        }
        if raw.one_way_ms.len() != n || raw.one_way_ms.iter().any(|row| row.len() != n) {
            return Err(DelayError::Invalid(format!(
                "one_way_ms must be a {n}x{n} matrix"
            )));
        }
        let mut one_way = Vec::with_capacity(n);
        for (i, row) in raw.one_way_ms.iter().enumerate() {
            let mut r = Vec::with_capacity(n);
            for (j, v) in row.iter().enumerate() {
                r.push(ms(*v, &format!("one_way_ms[{i}][{j}]"))?);
            }
            one_way.push(r);
        }
        let region = |name: &str| {
            index
                .get(name)
                .copied()
                .ok_or_else(|| DelayError::Invalid(format!("unknown region {name:?}")))
        };
        let mut nodes = BTreeMap::new();
        let mut clients = BTreeMap::new();
        for (k, v) in &raw.assign {
            let r = region(v)?;
            let key = k.trim();
            let bad = || {
                DelayError::Invalid(format!(
                    "assign key {k:?} is not a node index or c<client id>"
                ))
            };
            if let Some(c) = key.strip_prefix('c') {
                clients.insert(c.parse::<u64>().map_err(|_| bad())?, r);
            } else {
                let idx = key.strip_prefix('n').unwrap_or(key);
                nodes.insert(idx.parse::<u32>().map_err(|_| bad())?, r);
            }
        }
        let client_default = raw.clients.as_deref().map(region).transpose()?;
        Ok(DelayMatrix {
            regions: raw.regions,
            one_way,
            jitter: ms(raw.jitter_ms, "jitter_ms")?,
            nodes,
            clients,
            client_default,
        })
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DelayError> {
        let path = path.as_ref();
        let s = std::fs::read_to_string(path).map_err(|source| DelayError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&s)
    }

    pub fn regions(&self) -> &[String] {
        &self.regions
    }

    /// The region index of an endpoint, if it has one.
    pub fn region_of(&self, a: Addr) -> Option<usize> {
        match a {
            Addr::Node(n) => self.nodes.get(&n.0).copied(),
            Addr::Client(c) => self.clients.get(&c.0).copied().or(self.client_default),
        }
    }

    /// (one-way latency, jitter bound) from `from` to `to`; `None` means no delay.
    pub fn link(&self, from: Addr, to: Addr) -> Option<(Duration, Duration)> {
        let (a, b) = (self.region_of(from)?, self.region_of(to)?);
        let base = self.one_way[a][b];
        if base.is_zero() && self.jitter.is_zero() {
            None
        } else {
            Some((base, self.jitter))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::{ClientId, NodeId};

    #[test]
    fn parses_and_looks_up() {
        let m = DelayMatrix::from_toml(
            r#"
            regions = ["a", "b"]
            one_way_ms = [[0, 35], [35.5, 0]]
            jitter_ms = 1
            clients = "b"
            assign = { 0 = "a", 1 = "b", "c7" = "a" }
            "#,
        )
        .unwrap();
        let n0 = Addr::Node(NodeId(0));
        let n1 = Addr::Node(NodeId(1));
        assert_eq!(
            m.link(n0, n1),
            Some((Duration::from_millis(35), Duration::from_millis(1)))
        );
        assert_eq!(m.link(n1, n0).unwrap().0, Duration::from_micros(35_500));
        assert_eq!(m.link(n0, n0).unwrap().0, Duration::ZERO);
        assert_eq!(m.region_of(Addr::Client(ClientId(7))), Some(0));
        assert_eq!(m.region_of(Addr::Client(ClientId(8))), Some(1));
        assert_eq!(m.link(n0, Addr::Node(NodeId(9))), None);
    }

    #[test]
    fn rejects_bad_configs() {
        for (s, want) in [
            ("regions = [\"a\"]\none_way_ms = [[0, 1]]", "1x1"),
            ("regions = [\"a\"]\none_way_ms = [[-1]]", "not a delay"),
            (
                "regions = [\"a\"]\none_way_ms = [[0]]\nassign = { 0 = \"z\" }",
                "unknown region",
            ),
            (
                "regions = [\"a\"]\none_way_ms = [[0]]\nassign = { x = \"a\" }",
                "assign key",
            ),
            ("regions = 3", "TOML"),
        ] {
            let e = DelayMatrix::from_toml(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
