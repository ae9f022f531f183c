//! Lazarus: choosing a diverse replica set from vulnerability data.
//!
//! Paper map: Garcia, Bessani, Neves, "Lazarus: Automatic Management of
//! Diversity in BFT Systems", Middleware '19 (seed 004, part II; digest
//! `byzcast-steward-wheat-aware-lazarus.md` §3.5). The seed's
//! "Diversity-aware Reconfigurations" slide, step by step:
//!
//! 1. "Find common vulnerabilities": [`nvd`] reads NVD CVE JSON 2.0 records
//!    (CVSS v3, CPE matches, exploit and patch flags from the `Exploit` and
//!    `Patch` reference tags) and [`risk::Knowledge::build`] maps them to
//!    the OS versions of a [`pool::Pool`] by CPE vendor:product:version
//!    ([`cpe`]); [`pool::Pool::seed17`] is the seed's Table 2.
//! 2. "Measure vulnerability severity, CVSSv3 + modifiers":
//!    [`risk::severity_units`] (the eight multipliers of the slide as
//!    products of ×5/4 exploit, ×3/4 old, ×1/2 patched).
//! 3. "Measure configuration risk, sum the severity of vulnerabilities
//!    affecting each pair of replicas": [`risk::PairRisk`].
//! 4. "Select next configuration, the one with less risk that requires less
//!    changes": [`plan::plan`] / [`plan::choose`].
//!
//! "LAZARUS Effectiveness" (1,000 runs per strategy, compromised when a
//! published vulnerability affects more than f hosts): [`study`]. The sample
//! data (`data/`) is synthetic, made by [`synth`].
//!
//! Deviations and gaps: the controller is a pure function; nothing here
//! replaces a replica yet. The replica-set reconfiguration (issue 14 item 6)
//! and the LTU that would restart a replica with another OS image (emulated
//! as a process restarted with another label) do not exist, so a plan is not
//! applied to a running group. Only vulnerabilities published in NVD are
//! used (no ExploitDB or vendor feeds, no clustering of descriptions to
//! anticipate zero-days). The seed does not say which multiplier belongs to
//! which modifier, nor what "old" means; see [`risk`].

pub mod cpe;
pub mod day;
pub mod nvd;
pub mod plan;
pub mod pool;
pub mod risk;
pub mod study;
pub mod synth;

pub use day::Day;
pub use plan::{plan, Choice, Replace};
pub use pool::{OsId, OsVersion, Pool};
pub use risk::{Knowledge, PairRisk, Severity};
pub use study::{study, Strategy, StudyConfig, StudyReport};

/// Why data, a pool, a plan or a study was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LazarusError {
    /// A malformed NVD document or record.
    #[error("{file}: {record}: {why}")]
    Data {
        file: String,
        record: String,
        why: String,
    },
    #[error("{0}")]
    Io(String),
    #[error("pool: {0}")]
    Pool(String),
    #[error("plan: {0}")]
    Plan(String),
    #[error("study: {0}")]
    Study(String),
}

/// The folder of the committed sample data set.
pub fn sample_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

#[cfg(test)]
mod tests;
