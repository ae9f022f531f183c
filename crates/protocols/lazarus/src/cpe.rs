//! CPE 2.3 formatted strings (`cpe:2.3:part:vendor:product:version:...`)
//! and NVD's `cpeMatch` entries (a criteria string plus optional version
//! bounds), matched against the OS versions of a pool by
//! vendor:product:version.

use std::cmp::Ordering;

use crate::pool::OsVersion;

/// The fields of a CPE 2.3 name that matching uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpe {
    /// `a` application, `o` operating system, `h` hardware.
    pub part: char,
    pub vendor: String,
    pub product: String,
    /// A version, `*` (any) or `-` (not applicable).
    pub version: String,
}

impl Cpe {
    /// Parses a CPE 2.3 formatted string: 13 colon-separated components
    /// (a backslash escapes the next character).
    pub fn parse(s: &str) -> Result<Cpe, String> {
        let mut fields = Vec::with_capacity(13);
        let mut cur = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.push(
                    chars
                        .next()
                        .ok_or_else(|| format!("CPE {s:?} ends in a backslash"))?,
                ),
                ':' => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 13 || fields[0] != "cpe" || fields[1] != "2.3" {
            return Err(format!(
                "{s:?} is not a CPE 2.3 name (cpe:2.3: and 11 more components)"
            ));
        }
        let part = match fields[2].as_str() {
            "a" => 'a',
            "o" => 'o',
            "h" => 'h',
            p => return Err(format!("CPE {s:?}: part {p:?} is not a, o or h")),
        };
        if fields[3].is_empty() || fields[4].is_empty() || fields[5].is_empty() {
            return Err(format!("CPE {s:?}: empty vendor, product or version"));
        }
        Ok(Cpe {
            part,
            vendor: fields[3].to_ascii_lowercase(),
            product: fields[4].to_ascii_lowercase(),
            version: fields[5].clone(),
        })
    }
}

/// Version bounds of a `cpeMatch` whose criteria version is `*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    pub start_including: Option<String>,
    pub start_excluding: Option<String>,
    pub end_including: Option<String>,
    pub end_excluding: Option<String>,
}

impl Bounds {
    fn admit(&self, v: &str) -> bool {
        let c = |b: &Option<String>, ok: &[Ordering]| {
            b.as_deref()
                .is_none_or(|b| ok.contains(&compare_versions(v, b)))
        };
        c(&self.start_including, &[Ordering::Greater, Ordering::Equal])
            && c(&self.start_excluding, &[Ordering::Greater])
            && c(&self.end_including, &[Ordering::Less, Ordering::Equal])
            && c(&self.end_excluding, &[Ordering::Less])
    }
}

/// One vulnerable `cpeMatch` of a CVE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpeMatch {
    pub cpe: Cpe,
    pub bounds: Bounds,
}

impl CpeMatch {
    /// Whether this entry names `os`: same vendor and product
    /// (case-insensitive), and the version equal (dotted-numeric comparison,
    /// so `8` = `8.0`), or `*` within the bounds (no bounds: every version).
    /// A `-` version matches only a pool entry whose version is `-`.
    pub fn matches(&self, os: &OsVersion) -> bool {
        if self.cpe.vendor != os.vendor || self.cpe.product != os.product {
            return false;
        }
        match self.cpe.version.as_str() {
            "*" => self.bounds.admit(&os.version),
            "-" => os.version == "-",
            v => os.version != "-" && compare_versions(v, &os.version) == Ordering::Equal,
        }
    }
}

/// Compares dotted versions component by component: numeric components as
/// numbers, others as strings, a missing component as `0` (`8` = `8.0`,
/// `10.0` > `9.3`, `16.04` < `17.04`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..pa.len().max(pb.len()) {
        let (x, y) = (
            pa.get(i).copied().unwrap_or("0"),
            pb.get(i).copied().unwrap_or("0"),
        );
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}
