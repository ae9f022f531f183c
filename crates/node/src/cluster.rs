//! A local cluster run (`byzscale cluster`): what it takes ([`ClusterSpec`])
//! and what it gives ([`ClusterOutcome`], with the one report printer).

use crate::launcher::Local;
use crate::node_file::{At2Settings, NodeProtocol};
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

/// A local deployment on loopback, as separate OS processes, and the
/// workload to run against it. Which fields apply depends on `protocol`.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub protocol: NodeProtocol,
    /// ByzCast: target groups (shards); one auxiliary root is added above
    /// two or more.
    pub groups: usize,
    /// ByzCast: fraction of requests that are two-group MSETs.
    pub global_ratio: f64,
    /// AT2: processes.
    pub nodes: usize,
    /// SMR: most requests per batch.
    pub batch_max: usize,
    /// SMR and ByzCast: replicas per group.
    pub replicas: usize,
    /// Closed-loop clients.
    pub clients: usize,
    /// Seconds of load (0: start the cluster, no workload).
    pub duration: f64,
    /// Value size of SET requests, in bytes.
    pub payload: usize,
    /// SMR: fraction of GETs (on the unordered read-only path).
    pub read_ratio: f64,
    /// SMR: SIGKILL the initial leader's process this many seconds into the
    /// load.
    pub crash_leader_at: Option<f64>,
    /// Leave the cluster running.
    pub keep: bool,
    /// Keep the generated files here instead of a temporary directory.
    pub dir: Option<PathBuf>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// AT2: the nodes' `[at2]` section (the broadcast and its parameters).
    pub at2: At2Settings,
    /// Steward: sites, and Byzantine servers tolerated per site (3f+1
    /// servers each).
    pub sites: usize,
    pub faulty_per_site: usize,
    /// Steward: the WAN delay matrix between sites (default: symmetric
    /// 50 ms one way).
    pub topology: Option<PathBuf>,
}

/// What a cluster run measured, ready to print; holds the cluster's
/// processes (killed when this is dropped, unless kept).
pub struct ClusterOutcome {
    json: String,
    table: String,
    endpoints: Option<String>,
    failure: Option<String>,
    _local: Local,
}

impl ClusterOutcome {
    /// `report` (its fields are the JSON output) with its human-readable
    /// `table`, and the `endpoints` of a cluster left running (merged into
    /// the JSON object).
    pub(crate) fn new<R: Serialize>(
        report: &R,
        table: String,
        endpoints: Option<serde_json::Value>,
        local: Local,
    ) -> Result<Self> {
        let json = match &endpoints {
            Some(e) => {
                let mut v = serde_json::to_value(report)?;
                if let (Some(o), Some(e)) = (v.as_object_mut(), e.as_object()) {
                    o.extend(e.clone());
                }
                serde_json::to_string(&v)?
            }
            None => serde_json::to_string(report)?,
        };
        let endpoints = endpoints
            .map(|e| serde_json::to_string_pretty(&e))
            .transpose()?;
        Ok(ClusterOutcome {
            json,
            table,
            endpoints,
            failure: None,
            _local: local,
        })
    }

    /// The same outcome, reporting that a check of the run failed.
    pub(crate) fn failing(mut self, failure: Option<String>) -> Self {
        self.failure = failure;
        self
    }

    /// The report as `byzscale cluster` prints it: one line of JSON if
    /// `json`, else the table followed by the endpoints of a cluster left
    /// running.
    pub fn render(&self, json: bool) -> String {
        match (&self.endpoints, json) {
            (_, true) => format!("{}\n", self.json),
            (Some(e), false) => format!("{}cluster left running:\n{e}\n", self.table),
            (None, false) => self.table.clone(),
        }
    }

    /// A check of the run that failed (after the report is printed, the
    /// command fails with it).
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
}
