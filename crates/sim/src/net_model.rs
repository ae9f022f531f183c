//! The simulated network.
//!
//! Endpoints live in *regions*. A message from region `a` to region `b` takes the
//! one-way latency `one_way[a][b]` plus a seeded jitter drawn uniformly from
//! `[0, jitter]`. On top of that the model offers, all driven by the simulator's
//! single network RNG so that a seed replays bit for bit:
//!
//! - **bandwidth**: every directed link between two *nodes* is a FIFO
//!   serialization queue. A message of `s` bytes occupies the link for
//!   `8 s / bandwidth` seconds, starting when the link is free
//!   (`link_free_at`), and propagates afterwards;
//! - **region links** (optional, [`NetModel::with_region_links`]): a
//!   bandwidth per directed pair of regions, a FIFO serialization queue
//!   *shared* by every copy from any node of one region to any node of the
//!   other (a site's WAN uplink, as on Emulab or Spines): a copy occupies it
//!   for `8 s / bandwidth` before it propagates. Applied before the per-node
//!   link above; a pair with no entry (0) is unlimited;
//! - **loss**: each copy is dropped with probability `loss`;
//! - **duplication**: with probability `duplicate` a second copy is delivered
//!   with its own jitter;
//! - **reordering**: with probability `reorder` a copy gets an extra delay drawn
//!   from `[0, reorder_delay]`, so it overtakes or is overtaken by its neighbours
//!   (jitter alone already reorders messages unless `fifo` is set);
//! - **FIFO** (optional): a link never delivers a message before one sent
//!   earlier on the same link (TCP-like);
//! - **partitions**: during `[start, end)` messages *sent* between endpoints on
//!   different sides are dropped. Endpoints not listed in any side are not
//!   affected by that partition;
//! - **stabilization**: from `stabilize_at` on, loss, duplication, reordering
//!   and partitions are switched off (the GST of partial synchrony), so liveness
//!   can be checked after it.
//!
//! Presets: [`NetModel::lan`] (all links ~50 µs one way) and
//! [`NetModel::ec2_byzcast`] (ByzCast, seed 000, Table I: RTT/2 per direction
//! between California, N. Virginia, Frankfurt and Tokyo; 0.25 ms inside a
//! region), [`NetModel::aware5`] (AWARE, seed 004: Oregon, Ireland, Sydney,
//! São Paulo, Virginia from the authors' cloudping matrix, RTT/2), and
//! Steward's three WAN topologies (§2.8 of the digest
//! `byzcast-steward-wheat-aware-lazarus.md`) with region links:
//! [`NetModel::symmetric_wan`], [`NetModel::planetlab_steward`],
//! [`NetModel::cairn_steward`]. A custom matrix is read from TOML with
//! [`NetModel::from_toml_str`] /
//! [`NetModel::from_file`]:
//!
//! ```toml
//! regions = ["a", "b"]
//! one_way_ms = [[0.1, 20.0], [20.0, 0.1]]
//! jitter_ms = 0.5          # optional, default 0
//! bandwidth_mbps = 1000.0  # optional, per link, default unlimited
//! loss = 0.0               # optional probabilities, default 0
//! duplicate = 0.0
//! reorder = 0.0
//! reorder_delay_ms = 5.0   # optional, default 2 x the largest one-way latency
//! fifo = false             # optional
//! ```

use byzscale_core::protocol::{Time, MICROS, MILLIS, SECS};
use byzscale_core::Addr;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Errors loading or validating a network model.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot read network model {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network model is not valid TOML: {0}")]
    Toml(String),
    #[error("invalid network model: {0}")]
    Invalid(String),
    #[error("unknown network preset {0:?} (known: lan, ec2-byzcast, aware5)")]
    UnknownPreset(String),
    #[error("unknown network '{0}': use lan, ec2-byzcast, aware5, or a .toml latency matrix file")]
    UnknownNetwork(String),
}

/// A network named on a command line: a preset or a latency-matrix file.
#[derive(Clone, Debug, PartialEq)]
pub enum NetworkChoice {
    Preset(String),
    File(std::path::PathBuf),
}

impl NetworkChoice {
    /// `lan`, `ec2-byzcast`, or a path to a TOML latency matrix (read and
    /// validated now, so a bad file fails before any run).
    pub fn parse(s: &str) -> Result<Self, NetError> {
        match s {
            "lan" | "ec2-byzcast" | "aware5" => Ok(NetworkChoice::Preset(s.to_string())),
            p if p.ends_with(".toml") || Path::new(p).exists() => {
                NetModel::from_file(p)?;
                Ok(NetworkChoice::File(p.into()))
            }
            other => Err(NetError::UnknownNetwork(other.to_string())),
        }
    }
    pub fn model(&self) -> Result<NetModel, NetError> {
        match self {
            NetworkChoice::Preset(p) => NetModel::preset(p),
            NetworkChoice::File(f) => NetModel::from_file(f),
        }
    }
    pub fn name(&self) -> String {
        match self {
            NetworkChoice::Preset(p) => p.clone(),
            NetworkChoice::File(f) => f.display().to_string(),
        }
    }
}

impl Default for NetworkChoice {
    fn default() -> Self {
        NetworkChoice::Preset("lan".into())
    }
}

/// A scheduled partition: during `[start, end)` messages between endpoints on
/// different sides are dropped. Endpoints in no side are unaffected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    start: Time,
    end: Time,
    sides: Vec<Vec<Addr>>,
    side_of: BTreeMap<Addr, usize>,
}

impl Partition {
    /// A partition of the listed sides over `[start, end)`. An address listed in
    /// several sides belongs to the first one.
    pub fn new(start: Time, end: Time, sides: Vec<Vec<Addr>>) -> Self {
        let mut side_of = BTreeMap::new();
        for (i, side) in sides.iter().enumerate() {
            for a in side {
                side_of.entry(*a).or_insert(i);
            }
        }
        Partition {
            start,
            end,
            sides,
            side_of,
        }
    }
    pub fn start(&self) -> Time {
        self.start
    }
    pub fn end(&self) -> Time {
        self.end
    }
    pub fn sides(&self) -> &[Vec<Addr>] {
        &self.sides
    }
    /// Whether this partition drops a message from `a` to `b` sent at `t`.
    pub fn separates(&self, t: Time, a: Addr, b: Addr) -> bool {
        if t < self.start || t >= self.end {
            return false;
        }
        match (self.side_of.get(&a), self.side_of.get(&b)) {
            (Some(x), Some(y)) => x != y,
            _ => false,
        }
    }
}

/// The network model: latency matrix and fault knobs (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct NetModel {
    /// Region names; nodes refer to regions by index.
    pub regions: Vec<String>,
    /// One-way latency in nanoseconds, `one_way[from][to]`.
    pub one_way: Vec<Vec<Time>>,
    /// Maximum extra latency, drawn uniformly from `[0, jitter]` per copy.
    pub jitter: Time,
    /// Per-link bandwidth in bits per second; `None` is unlimited.
    pub bandwidth_bps: Option<u64>,
    /// Probability that a copy is lost.
    pub loss: f64,
    /// Probability that a copy is delivered twice.
    pub duplicate: f64,
    /// Probability that a copy is delayed by an extra `[0, reorder_delay]`.
    pub reorder: f64,
    pub reorder_delay: Time,
    /// Never deliver a message before an earlier one on the same link.
    pub fifo: bool,
    pub partitions: Vec<Partition>,
    /// Shared serialization queues between regions (see the module docs):
    /// `region_bps[from][to]` bits per second, 0 = unlimited; `None` = none.
    pub region_bps: Option<Vec<Vec<u64>>>,
    /// From this time on: no loss, duplication, reordering or partitions.
    pub stabilize_at: Option<Time>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetFile {
    regions: Vec<String>,
    one_way_ms: Vec<Vec<f64>>,
    #[serde(default)]
    jitter_ms: f64,
    bandwidth_mbps: Option<f64>,
    #[serde(default)]
    loss: f64,
    #[serde(default)]
    duplicate: f64,
    #[serde(default)]
    reorder: f64,
    reorder_delay_ms: Option<f64>,
    #[serde(default)]
    fifo: bool,
}

fn ms_to_ns(what: &str, ms: f64) -> Result<Time, NetError> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(NetError::Invalid(format!(
            "{what} must be a finite, non-negative number of milliseconds, got {ms}"
        )));
    }
    Ok((ms * MILLIS as f64).round() as Time)
}

fn probability(what: &str, p: f64) -> Result<f64, NetError> {
    if !(0.0..=1.0).contains(&p) {
        return Err(NetError::Invalid(format!(
            "{what} is a probability and must lie in [0, 1], got {p}"
        )));
    }
    Ok(p)
}

impl NetModel {
    /// A model from a one-way matrix in nanoseconds, with no jitter or faults.
    pub fn from_matrix(regions: Vec<String>, one_way: Vec<Vec<Time>>) -> Result<Self, NetError> {
        let m = NetModel {
            reorder_delay: default_reorder_delay(&one_way),
            regions,
            one_way,
            jitter: 0,
            bandwidth_bps: None,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            fifo: false,
            partitions: Vec::new(),
            region_bps: None,
            stabilize_at: None,
        };
        m.validate()?;
        Ok(m)
    }

    /// One region, 50 µs one way, 5 µs jitter.
    pub fn lan() -> Self {
        let mut m = Self::from_matrix(vec!["lan".into()], vec![vec![50 * MICROS]])
            .expect("preset is valid");
        m.jitter = 5 * MICROS;
        m
    }

    /// One region whose one-way delays are drawn uniformly from `[min, max]`
    /// (`min` plus a jitter of `max − min`): reorders messages freely, which
    /// unit tests of protocols use to explore schedules by seed.
    pub fn uniform(min: Time, max: Time) -> Self {
        let mut m = Self::from_matrix(vec!["uniform".into()], vec![vec![min]])
            .expect("one region is valid");
        m.jitter = max.saturating_sub(min);
        m
    }

    /// ByzCast (seed 000) Table I: regions CA, VA, EU, JP; one-way = RTT / 2;
    /// 0.25 ms one way inside a region; 0.5 ms jitter.
    pub fn ec2_byzcast() -> Self {
        // RTTs in ms, in region order CA, VA, EU, JP.
        const RTT: [[f64; 4]; 4] = [
            [0.0, 70.0, 165.0, 112.0],
            [70.0, 0.0, 88.0, 175.0],
            [165.0, 88.0, 0.0, 239.0],
            [112.0, 175.0, 239.0, 0.0],
        ];
        Self::from_rtt(&["CA", "VA", "EU", "JP"], &RTT)
    }

    /// AWARE's five regions (seed 004): Oregon, Ireland, Sydney, São Paulo,
    /// Virginia, from `cloudping-21.csv` (the AWARE authors' AWS matrix,
    /// `crates/protocols/aware/data/`): rows and columns 20, 12, 7, 16 and
    /// 17, which are us-west-2, eu-west-1, ap-southeast-2, sa-east-1 and
    /// us-east-1 in cloudping's alphabetical order of its 21 regions (the
    /// file has no header; the order is inferred from it and checked on
    /// known neighbours: Tokyo–Osaka 11 ms, Ireland–Frankfurt 27 ms). The
    /// entries are round trips, row = sender, and kept asymmetric; as for
    /// [`NetModel::ec2_byzcast`], one-way = RTT / 2, 0.25 ms inside a region
    /// (the file's diagonal, 3–5 ms, is left out) and 0.5 ms jitter.
    pub fn aware5() -> Self {
        const RTT: [[f64; 5]; 5] = [
            [0.0, 123.52, 142.13, 178.83, 71.58],
            [122.92, 0.0, 259.03, 181.73, 69.44],
            [141.17, 257.26, 0.0, 312.86, 199.68],
            [178.02, 181.14, 313.04, 0.0, 116.92],
            [72.67, 70.45, 202.13, 118.54, 0.0],
        ];
        Self::from_rtt(
            &["Oregon", "Ireland", "Sydney", "SaoPaulo", "Virginia"],
            &RTT,
        )
    }

    /// A preset from round trips in ms (row = sender): one-way = RTT / 2,
    /// 0.25 ms inside a region, 0.5 ms jitter.
    fn from_rtt<const N: usize>(names: &[&str; N], rtt: &[[f64; N]; N]) -> Self {
        let one_way = (0..N)
            .map(|i| {
                (0..N)
                    .map(|j| {
                        if i == j {
                            250 * MICROS
                        } else {
                            (rtt[i][j] / 2.0 * MILLIS as f64) as Time
                        }
                    })
                    .collect()
            })
            .collect();
        let regions = names.iter().map(|s| s.to_string()).collect();
        let mut m = Self::from_matrix(regions, one_way).expect("preset is valid");
        m.jitter = 500 * MICROS;
        m
    }

    /// The largest one-way latency between any two regions (protocol timeouts
    /// are scaled from it).
    pub fn max_one_way(&self) -> Time {
        self.one_way.iter().flatten().copied().max().unwrap_or(0) + self.jitter
    }

    /// `lan`, `ec2-byzcast` (also accepted: `ec2_byzcast`) or `aware5`.
    pub fn preset(name: &str) -> Result<Self, NetError> {
        match name {
            "lan" => Ok(Self::lan()),
            "ec2-byzcast" | "ec2_byzcast" => Ok(Self::ec2_byzcast()),
            "aware5" => Ok(Self::aware5()),
            other => Err(NetError::UnknownPreset(other.to_string())),
        }
    }

    /// Parse the TOML format described in the module docs.
    pub fn from_toml_str(s: &str) -> Result<Self, NetError> {
        let f: NetFile = toml::from_str(s).map_err(|e| NetError::Toml(e.to_string()))?;
        let n = f.regions.len();
        if n == 0 {
            return Err(NetError::Invalid("`regions` must not be empty".into()));
        }
        if f.one_way_ms.len() != n {
            return Err(NetError::Invalid(format!(
                "`one_way_ms` has {} rows but there are {n} regions",
                f.one_way_ms.len()
            )));
        }
        let mut one_way = Vec::with_capacity(n);
        for (i, row) in f.one_way_ms.iter().enumerate() {
            if row.len() != n {
                return Err(NetError::Invalid(format!(
                    "row {i} ({}) of `one_way_ms` has {} entries but there are {n} regions",
                    f.regions[i],
                    row.len()
                )));
            }
            let mut r = Vec::with_capacity(n);
            for (j, v) in row.iter().enumerate() {
                r.push(ms_to_ns(
                    &format!(
                        "one_way_ms[{i}][{j}] ({} -> {})",
                        f.regions[i], f.regions[j]
                    ),
                    *v,
                )?);
            }
            one_way.push(r);
        }
        let mut m = Self::from_matrix(f.regions, one_way)?;
        m.jitter = ms_to_ns("jitter_ms", f.jitter_ms)?;
        if let Some(bw) = f.bandwidth_mbps {
            if !bw.is_finite() || bw <= 0.0 {
                return Err(NetError::Invalid(format!(
                    "bandwidth_mbps must be positive, got {bw}"
                )));
            }
            m.bandwidth_bps = Some((bw * 1e6).round().max(1.0) as u64);
        }
        m.loss = probability("loss", f.loss)?;
        m.duplicate = probability("duplicate", f.duplicate)?;
        m.reorder = probability("reorder", f.reorder)?;
        if let Some(d) = f.reorder_delay_ms {
            m.reorder_delay = ms_to_ns("reorder_delay_ms", d)?;
        }
        m.fifo = f.fifo;
        Ok(m)
    }

    /// Read a TOML model from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, NetError> {
        let path = path.as_ref();
        let s = std::fs::read_to_string(path).map_err(|source| NetError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&s)
    }

    /// Check shapes and probabilities (called by the constructors; call it again
    /// after editing the public fields by hand).
    pub fn validate(&self) -> Result<(), NetError> {
        let n = self.regions.len();
        if n == 0 {
            return Err(NetError::Invalid("no regions".into()));
        }
        for (i, r) in self.regions.iter().enumerate() {
            if self.regions[..i].contains(r) {
                return Err(NetError::Invalid(format!("region {r:?} is listed twice")));
            }
        }
        if self.one_way.len() != n || self.one_way.iter().any(|r| r.len() != n) {
            return Err(NetError::Invalid(format!(
                "the latency matrix must be {n} x {n} (one row and column per region)"
            )));
        }
        probability("loss", self.loss)?;
        probability("duplicate", self.duplicate)?;
        probability("reorder", self.reorder)?;
        if self.bandwidth_bps == Some(0) {
            return Err(NetError::Invalid("bandwidth must be positive".into()));
        }
        if let Some(bps) = &self.region_bps {
            if bps.len() != n || bps.iter().any(|r| r.len() != n) {
                return Err(NetError::Invalid(format!(
                    "the region bandwidth matrix must be {n} x {n}"
                )));
            }
        }
        for p in &self.partitions {
            if p.end < p.start {
                return Err(NetError::Invalid(format!(
                    "partition ends ({}) before it starts ({})",
                    p.end, p.start
                )));
            }
        }
        Ok(())
    }

    /// Index of a region by name.
    pub fn region(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r == name)
    }

    pub fn with_jitter(mut self, jitter: Time) -> Self {
        self.jitter = jitter;
        self
    }
    pub fn with_bandwidth_mbps(mut self, mbps: f64) -> Self {
        self.bandwidth_bps = Some((mbps * 1e6).round().max(1.0) as u64);
        self
    }
    pub fn with_loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }
    pub fn with_duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }
    pub fn with_reorder(mut self, p: f64, max_extra: Time) -> Self {
        self.reorder = p;
        self.reorder_delay = max_extra;
        self
    }
    pub fn with_fifo(mut self, fifo: bool) -> Self {
        self.fifo = fifo;
        self
    }
    pub fn with_partition(mut self, p: Partition) -> Self {
        self.partitions.push(p);
        self
    }
    pub fn with_stabilize_at(mut self, t: Time) -> Self {
        self.stabilize_at = Some(t);
        self
    }

    /// The misbehaving network of the scenarios' safety sweeps: 1% loss, 1%
    /// duplication and 5% reordering until it stabilizes, one second plus 20
    /// of its longest one-way latencies in; liveness is required only after
    /// that. Returns the network and its stabilization time.
    pub fn turbulent(self) -> (Self, Time) {
        let stabilize = SECS + 20 * self.max_one_way();
        let net = self
            .with_loss(0.01)
            .with_duplicate(0.01)
            .with_reorder(0.05, 0)
            .with_stabilize_at(stabilize);
        (net, stabilize)
    }

    /// Whether the network is stable (no faults injected) at `t`.
    pub fn stable_at(&self, t: Time) -> bool {
        self.stabilize_at.is_some_and(|s| t >= s)
    }

    /// Whether a partition drops a message from `a` to `b` sent at `t`.
    pub fn partitioned(&self, t: Time, a: Addr, b: Addr) -> bool {
        self.partitions.iter().any(|p| p.separates(t, a, b))
    }

    /// The shared queue from region `a` to region `b`: its bits per second,
    /// if limited.
    pub fn region_link(&self, a: usize, b: usize) -> Option<u64> {
        let bps = *self.region_bps.as_ref()?.get(a)?.get(b)?;
        (bps > 0).then_some(bps)
    }

    /// Shared queues between regions, `mbps[from][to]` in Mbit/s (0 or less
    /// = unlimited); an error unless the matrix is regions × regions.
    pub fn with_region_links(mut self, mbps: &[Vec<f64>]) -> Result<Self, NetError> {
        let bps = mbps
            .iter()
            .map(|row| row.iter().map(|m| mbps_to_bps(*m)).collect())
            .collect();
        self.region_bps = Some(bps);
        self.validate()?;
        Ok(self)
    }

    /// `sites` regions, every pair `one_way` apart one way, each directed
    /// pair a shared link of `mbps` (Steward's symmetric Emulab set-up:
    /// 50 ms at 10, 5 or 2.5 Mbit/s); `lan` one way inside a region, whose
    /// LAN is not limited. Regions are named `site0`, `site1`, ….
    pub fn symmetric_wan(
        sites: usize,
        one_way: Time,
        mbps: f64,
        lan: Time,
    ) -> Result<Self, NetError> {
        let regions = (0..sites).map(|s| format!("site{s}")).collect();
        let m = (0..sites)
            .map(|i| {
                (0..sites)
                    .map(|j| if i == j { lan } else { one_way })
                    .collect()
            })
            .collect();
        let links: Vec<Vec<f64>> = (0..sites)
            .map(|i| {
                (0..sites)
                    .map(|j| if i == j { 0.0 } else { mbps })
                    .collect()
            })
            .collect();
        Self::from_matrix(regions, m)?.with_region_links(&links)
    }

    /// Steward's PlanetLab topology (five sites: U. Washington, UFRGS in
    /// Brazil, SICS in Sweden, KAIST in Korea, Monash in Australia). The
    /// digest gives its range only: one way 59 ms (US–Korea) to 289 ms
    /// (Brazil–Korea), links of 405 kbit/s to 1.3 Mbit/s. Those two
    /// latencies and the two bandwidth extremes are the paper's; the other
    /// entries are **reconstructed** within the ranges from the sites'
    /// geography (the paper's full matrix is not in our references).
    /// `lan` one way inside a site, unlimited.
    pub fn planetlab_steward(lan: Time) -> Self {
        // one way in ms, order US, BR, SE, KR, AU
        const MS: [[f64; 5]; 5] = [
            [0.0, 90.0, 85.0, 59.0, 95.0],
            [90.0, 0.0, 120.0, 289.0, 200.0],
            [85.0, 120.0, 0.0, 150.0, 170.0],
            [59.0, 289.0, 150.0, 0.0, 80.0],
            [95.0, 200.0, 170.0, 80.0, 0.0],
        ];
        // Mbit/s per directed pair
        const MBPS: [[f64; 5]; 5] = [
            [0.0, 0.8, 1.3, 1.2, 1.0],
            [0.8, 0.0, 0.6, 0.405, 0.45],
            [1.3, 0.6, 0.0, 0.9, 0.7],
            [1.2, 0.405, 0.9, 0.0, 1.1],
            [1.0, 0.45, 0.7, 1.1, 0.0],
        ];
        let one_way = (0..5)
            .map(|i| {
                (0..5)
                    .map(|j| {
                        if i == j {
                            lan
                        } else {
                            (MS[i][j] * MILLIS as f64) as Time
                        }
                    })
                    .collect()
            })
            .collect();
        let regions = ["US", "BR", "SE", "KR", "AU"].map(String::from).to_vec();
        let links: Vec<Vec<f64>> = MBPS.iter().map(|r| r.to_vec()).collect();
        Self::from_matrix(regions, one_way)
            .and_then(|m| m.with_region_links(&links))
            .expect("preset is valid")
    }

    /// Steward's CAIRN figure: a coast-to-coast link of 38 ms one way at
    /// 1.86 Mbit/s. The digest gives that one link only, so every pair of
    /// the `sites` sites is such a link here (an approximation, labelled).
    pub fn cairn_steward(sites: usize, lan: Time) -> Result<Self, NetError> {
        Self::symmetric_wan(sites, 38 * MILLIS, 1.86, lan)
    }

    /// Time for `bytes` to cross a link (0 if bandwidth is unlimited).
    pub fn transmission_time(&self, bytes: usize) -> Time {
        match self.bandwidth_bps {
            None => 0,
            Some(bps) => serialization_time(bytes, bps),
        }
    }
}

fn mbps_to_bps(mbps: f64) -> u64 {
    if mbps.is_finite() && mbps > 0.0 {
        (mbps * 1e6).round().max(1.0) as u64
    } else {
        0
    }
}

/// Time for `bytes` to cross a link of `bps` bits per second.
pub fn serialization_time(bytes: usize, bps: u64) -> Time {
    ((bytes as u128 * 8 * 1_000_000_000) / bps.max(1) as u128) as Time
}

fn default_reorder_delay(one_way: &[Vec<Time>]) -> Time {
    let max = one_way.iter().flatten().copied().max().unwrap_or(0);
    (2 * max).max(MILLIS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use byzscale_core::NodeId;

    #[test]
    fn presets() {
        let m = NetModel::ec2_byzcast();
        let ca = m.region("CA").unwrap();
        let eu = m.region("EU").unwrap();
        let jp = m.region("JP").unwrap();
        assert_eq!(m.one_way[ca][eu], 82_500 * MICROS);
        assert_eq!(m.one_way[eu][jp], 119_500 * MICROS);
        assert_eq!(m.one_way[jp][jp], 250 * MICROS);
        for i in 0..4 {
            for j in 0..4 {
                assert_eq!(m.one_way[i][j], m.one_way[j][i]);
            }
        }
        let a = NetModel::aware5();
        let (or, va) = (a.region("Oregon").unwrap(), a.region("Virginia").unwrap());
        assert_eq!(a.one_way[or][va], 35_790 * MICROS);
        assert_eq!(a.one_way[va][or], 36_335 * MICROS);
        assert_eq!(NetModel::preset("aware5").unwrap(), a);
        assert!(NetModel::preset("lan").is_ok());
        assert!(matches!(
            NetModel::preset("moon"),
            Err(NetError::UnknownPreset(_))
        ));
    }

    #[test]
    fn toml_round_and_errors() {
        let m = NetModel::from_toml_str(
            r#"
            regions = ["a", "b"]
            one_way_ms = [[0.1, 20], [20, 0.1]]
            jitter_ms = 0.5
            bandwidth_mbps = 100
            loss = 0.01
            "#,
        )
        .unwrap();
        assert_eq!(m.one_way[0][1], 20 * MILLIS);
        assert_eq!(m.one_way[0][0], 100 * MICROS);
        assert_eq!(m.jitter, 500 * MICROS);
        assert_eq!(m.bandwidth_bps, Some(100_000_000));
        assert_eq!(m.transmission_time(1250), 100 * MICROS);

        let bad_shape = NetModel::from_toml_str("regions=[\"a\",\"b\"]\none_way_ms=[[1,2]]");
        assert!(matches!(bad_shape, Err(NetError::Invalid(e)) if e.contains("1 rows")));
        let bad_row = NetModel::from_toml_str("regions=[\"a\",\"b\"]\none_way_ms=[[1,2],[1]]");
        assert!(matches!(bad_row, Err(NetError::Invalid(e)) if e.contains("row 1")));
        let bad_p = NetModel::from_toml_str("regions=[\"a\"]\none_way_ms=[[1]]\nloss=2");
        assert!(matches!(bad_p, Err(NetError::Invalid(e)) if e.contains("loss")));
        let neg = NetModel::from_toml_str("regions=[\"a\"]\none_way_ms=[[-1]]");
        assert!(matches!(neg, Err(NetError::Invalid(_))));
        let typo = NetModel::from_toml_str("regions=[\"a\"]\none_way_ms=[[1]]\njiter_ms=1");
        assert!(matches!(typo, Err(NetError::Toml(_))));
        let dup = NetModel::from_toml_str("regions=[\"a\",\"a\"]\none_way_ms=[[1,1],[1,1]]");
        assert!(matches!(dup, Err(NetError::Invalid(_))));
        assert!(matches!(
            NetModel::from_file("/nonexistent/net.toml"),
            Err(NetError::Io { .. })
        ));
    }

    #[test]
    fn partitions_are_intervals() {
        let a = Addr::Node(NodeId(0));
        let b = Addr::Node(NodeId(1));
        let c = Addr::Node(NodeId(2));
        let p = Partition::new(10, 20, vec![vec![a], vec![b]]);
        assert!(!p.separates(9, a, b));
        assert!(p.separates(10, a, b));
        assert!(p.separates(19, b, a));
        assert!(!p.separates(20, a, b));
        assert!(!p.separates(15, a, c));
        assert!(!p.separates(15, a, a));
    }

    #[test]
    fn steward_topologies() {
        let s = NetModel::symmetric_wan(5, 50 * MILLIS, 2.5, 100 * MICROS).unwrap();
        assert_eq!(s.one_way[1][3], 50 * MILLIS);
        assert_eq!(s.one_way[2][2], 100 * MICROS);
        assert_eq!(s.region_link(0, 4), Some(2_500_000));
        assert_eq!(s.region_link(3, 3), None, "the LAN is not limited");
        let p = NetModel::planetlab_steward(100 * MICROS);
        let (us, br, kr) = (0, 1, 3);
        assert_eq!(p.one_way[us][kr], 59 * MILLIS);
        assert_eq!(p.one_way[br][kr], 289 * MILLIS);
        let all: Vec<u64> = (0..5)
            .flat_map(|i| (0..5).filter_map(move |j| (i != j).then_some((i, j))))
            .map(|(i, j)| p.region_link(i, j).unwrap())
            .collect();
        assert_eq!(all.iter().min(), Some(&405_000));
        assert_eq!(all.iter().max(), Some(&1_300_000));
        let c = NetModel::cairn_steward(3, 100 * MICROS).unwrap();
        assert_eq!(c.one_way[0][2], 38 * MILLIS);
        assert_eq!(c.region_link(2, 0), Some(1_860_000));
        let bad = NetModel::lan().with_region_links(&[vec![1.0, 2.0]]);
        assert!(matches!(bad, Err(NetError::Invalid(_))));
        assert_eq!(serialization_time(1250, 1_000_000), 10 * MILLIS);
    }
}
