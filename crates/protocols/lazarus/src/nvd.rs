//! Reading vulnerability data in the NVD CVE JSON 2.0 format (the
//! `vulnerabilities[].cve` records of the NVD 2.0 API and its feeds).
//!
//! What is read, per record: `id`; `published` (the day); the CVSS v3 base
//! score and vector (`metrics.cvssMetricV31`, else `cvssMetricV30`; the
//! `Primary` entry when there are several); the vulnerable `cpeMatch`
//! entries of `configurations[].nodes[]` (nodes with `negate: true` and
//! entries with `vulnerable: false`, the "running on" platforms, are left
//! out); and the exploit and patch flags from `references[].tags`: a record
//! has a known exploit when a reference is tagged `Exploit` and a patch when
//! one is tagged `Patch` (the tags NVD analysts put on ExploitDB entries and
//! vendor fixes). A record without any CVSS v3 metric is skipped and counted
//! (older NVD records carry only v2); anything else malformed is an error
//! that names the file and the record.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::cpe::{Bounds, Cpe, CpeMatch};
use crate::day::Day;
use crate::LazarusError;

/// One vulnerability as Lazarus uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Vuln {
    pub id: String,
    pub published: Day,
    /// The CVSS v3 base score in tenths (9.8 → 98).
    pub score_tenths: u32,
    pub vector: String,
    /// The vulnerable CPE matches.
    pub affected: Vec<CpeMatch>,
    /// A reference is tagged `Exploit`.
    pub exploit: bool,
    /// A reference is tagged `Patch`.
    pub patch: bool,
}

/// The records read from one or several documents.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Sorted by (published, id).
    pub vulns: Vec<Vuln>,
    /// Records skipped because they carry no CVSS v3 metric.
    pub skipped_no_cvss3: usize,
}

/// The largest document read (the NVD 2.0 API pages hold 2,000 records,
/// a few MB; a yearly feed is about 100 MB).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

#[derive(Deserialize)]
struct Document {
    vulnerabilities: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCve {
    id: String,
    published: String,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    configurations: Vec<RawConfiguration>,
    #[serde(default)]
    references: Vec<RawReference>,
}

#[derive(Deserialize, Default)]
struct RawMetrics {
    #[serde(default, rename = "cvssMetricV31")]
    v31: Vec<RawMetric>,
    #[serde(default, rename = "cvssMetricV30")]
    v30: Vec<RawMetric>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetric {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    cvss_data: RawCvss,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCvss {
    vector_string: String,
    base_score: f64,
}

#[derive(Deserialize)]
struct RawConfiguration {
    nodes: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawNode {
    #[serde(default)]
    negate: bool,
    cpe_match: Vec<RawCpeMatch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCpeMatch {
    vulnerable: bool,
    criteria: String,
    version_start_including: Option<String>,
    version_start_excluding: Option<String>,
    version_end_including: Option<String>,
    version_end_excluding: Option<String>,
}

#[derive(Deserialize)]
struct RawReference {
    #[serde(default)]
    tags: Vec<String>,
}

/// Parses one NVD CVE JSON 2.0 document; `source` names it in errors.
pub fn parse(text: &str, source: &str) -> Result<Loaded, LazarusError> {
    let bad = |record: String, why: String| LazarusError::Data {
        file: source.to_string(),
        record,
        why,
    };
    let doc: Document = serde_json::from_str(text).map_err(|e| {
        bad(
            "document".into(),
            format!("not an NVD CVE JSON 2.0 document: {e}"),
        )
    })?;
    let mut out = Loaded::default();
    for (i, item) in doc.vulnerabilities.into_iter().enumerate() {
        let name = item
            .pointer("/cve/id")
            .and_then(|v| v.as_str())
            .map_or_else(
                || format!("vulnerabilities[{i}]"),
                |id| format!("vulnerabilities[{i}] ({id})"),
            );
        let raw = item
            .get("cve")
            .cloned()
            .ok_or_else(|| bad(name.clone(), "no \"cve\" object".into()))?;
        let raw: RawCve =
            serde_json::from_value(raw).map_err(|e| bad(name.clone(), e.to_string()))?;
        match convert(raw).map_err(|why| bad(name, why))? {
            Some(v) => out.vulns.push(v),
            None => out.skipped_no_cvss3 += 1,
        }
    }
    out.vulns
        .sort_by(|a, b| (a.published, &a.id).cmp(&(b.published, &b.id)));
    Ok(out)
}

fn convert(raw: RawCve) -> Result<Option<Vuln>, String> {
    if raw.id.is_empty() {
        return Err("empty id".into());
    }
    let published = Day::parse(&raw.published)
        .ok_or_else(|| format!("published {:?} is not a date", raw.published))?;
    let metrics = if raw.metrics.v31.is_empty() {
        &raw.metrics.v30
    } else {
        &raw.metrics.v31
    };
    let Some(metric) = metrics
        .iter()
        .find(|m| m.kind.as_deref() == Some("Primary"))
        .or(metrics.first())
    else {
        return Ok(None);
    };
    let score = metric.cvss_data.base_score;
    if !(0.0..=10.0).contains(&score) {
        return Err(format!("baseScore {score} is outside 0..10"));
    }
    if !metric.cvss_data.vector_string.starts_with("CVSS:3.") {
        return Err(format!(
            "vectorString {:?} is not CVSS v3",
            metric.cvss_data.vector_string
        ));
    }
    let mut affected = Vec::new();
    for node in raw
        .configurations
        .iter()
        .flat_map(|c| &c.nodes)
        .filter(|n| !n.negate)
    {
        for m in node.cpe_match.iter().filter(|m| m.vulnerable) {
            affected.push(CpeMatch {
                cpe: Cpe::parse(&m.criteria)?,
                bounds: Bounds {
                    start_including: m.version_start_including.clone(),
                    start_excluding: m.version_start_excluding.clone(),
                    end_including: m.version_end_including.clone(),
                    end_excluding: m.version_end_excluding.clone(),
                },
            });
        }
    }
    let tagged = |t: &str| raw.references.iter().any(|r| r.tags.iter().any(|x| x == t));
    Ok(Some(Vuln {
        id: raw.id.clone(),
        published,
        score_tenths: (score * 10.0).round() as u32,
        vector: metric.cvss_data.vector_string.clone(),
        affected,
        exploit: tagged("Exploit"),
        patch: tagged("Patch"),
    }))
}

/// Reads every `*.json` file of `dir` (in name order), or one file; a CVE id
/// present twice is an error naming both places.
pub fn load(path: &Path) -> Result<Loaded, LazarusError> {
    let io = |p: &Path, e: std::io::Error| LazarusError::Io(format!("{}: {e}", p.display()));
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut f: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        f.sort();
        f
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(LazarusError::Io(format!(
            "{}: no .json file",
            path.display()
        )));
    }
    let mut out = Loaded::default();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        let len = std::fs::metadata(&f).map_err(|e| io(&f, e))?.len();
        if len > MAX_FILE_BYTES {
            return Err(LazarusError::Io(format!(
                "{}: {len} bytes, over {MAX_FILE_BYTES}",
                f.display()
            )));
        }
        let text = std::fs::read_to_string(&f).map_err(|e| io(&f, e))?;
        let name = f.display().to_string();
        let part = parse(&text, &name)?;
        for v in &part.vulns {
            if let Some(first) = seen.insert(v.id.clone(), name.clone()) {
                return Err(LazarusError::Data {
                    file: name,
                    record: v.id.clone(),
                    why: format!("already read from {first}"),
                });
            }
        }
        out.skipped_no_cvss3 += part.skipped_no_cvss3;
        out.vulns.extend(part.vulns);
    }
    out.vulns
        .sort_by(|a, b| (a.published, &a.id).cmp(&(b.published, &b.id)));
    Ok(out)
}
