//! The deterministic generator of the synthetic sample data set
//! (`data/nvd-synthetic.json`): NVD CVE JSON 2.0 records for the seed's 17
//! OS versions. SYNTHETIC: no record is a real vulnerability.
//!
//! The model, per record (ChaCha8 seeded with `seed`, so the output is the
//! same on every platform and rand version):
//! - a publication day uniform over [`FIRST_YEAR`]..=[`LAST_YEAR`];
//! - a CVSS v3.1 vector and its base score from a table of common vectors;
//! - the affected OS versions, by kind: one version alone (45%, Linux
//!   distributions weighted ×3, Windows ×2), several versions of one family
//!   (20%), Debian with Ubuntu (12%), a Linux-kernel-like subset of the
//!   Linux distributions (10%), FreeBSD with OpenBSD (5%), Unix-wide (4%),
//!   anywhere (4%: an OpenSSL-like library);
//! - disclosure waves: 30% of flaws bring 1 to 3 more records on the same OS
//!   versions within 60 days (several CVEs found in one component, as
//!   disclosures cluster in time); without them no strategy could learn
//!   anything from the recent past, and Lazarus would equal fixed diverse;
//! - family ranges sometimes written the way NVD does (`*` with
//!   `versionStartIncluding`/`versionEndIncluding`), and 5% of records are
//!   an application flaw whose OS entries are `vulnerable: false` (they
//!   affect no pool OS and must be ignored);
//! - a reference tagged `Exploit` with probability 1/4 and one tagged `Patch`
//!   with probability 11/20.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::day::Day;
use crate::pool::{OsId, Pool};

/// The span of publication years.
pub const FIRST_YEAR: i32 = 2014;
pub const LAST_YEAR: i32 = 2018;

/// The seed the committed sample was generated with.
pub const SAMPLE_SEED: u64 = 2019;
/// Records in the committed sample.
pub const SAMPLE_RECORDS: usize = 400;

/// (vector, base score) pairs of CVSS v3.1.
const VECTORS: [(&str, f64); 8] = [
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
    ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
    ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
    ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H", 5.5),
    ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", 5.3),
];

fn family(pool: &Pool, f: &str) -> Vec<OsId> {
    (0..pool.len())
        .filter(|&i| pool.os[i].family == f)
        .collect()
}

fn some_of(rng: &mut ChaCha8Rng, from: &[OsId], min: usize, max: usize) -> Vec<OsId> {
    let k = rng.gen_range(min..=max.min(from.len()));
    let mut v: Vec<OsId> = from.choose_multiple(rng, k).copied().collect();
    v.sort_unstable();
    v
}

/// The affected OS versions of one record.
fn affected(rng: &mut ChaCha8Rng, pool: &Pool) -> Vec<OsId> {
    let all: Vec<OsId> = (0..pool.len()).collect();
    let linux: Vec<OsId> = ["ubuntu", "debian", "opensuse", "fedora"]
        .iter()
        .flat_map(|f| family(pool, f))
        .collect();
    let roll = rng.gen_range(0..100);
    match roll {
        0..=44 => {
            let weight = |i: &OsId| match pool.os[*i].family.as_str() {
                "ubuntu" | "debian" | "opensuse" | "fedora" => 3,
                "windows" => 2,
                _ => 1,
            };
            vec![*all.choose_weighted(rng, weight).expect("a non-empty pool")]
        }
        45..=64 => {
            let multi: Vec<&str> = [
                "ubuntu", "fedora", "debian", "windows", "freebsd", "solaris", "openbsd",
            ]
            .to_vec();
            let fam = family(pool, multi.choose(rng).expect("families"));
            let a = rng.gen_range(0..fam.len() - 1);
            let b = rng.gen_range(a + 1..fam.len());
            fam[a..=b].to_vec()
        }
        65..=76 => {
            let mut v = some_of(rng, &family(pool, "debian"), 1, 2);
            v.extend(some_of(rng, &family(pool, "ubuntu"), 1, 3));
            v
        }
        77..=86 => some_of(rng, &linux, 2, 5),
        87..=91 => {
            let mut v = some_of(rng, &family(pool, "freebsd"), 1, 2);
            v.extend(some_of(rng, &family(pool, "openbsd"), 1, 2));
            v
        }
        92..=95 => {
            let unix: Vec<OsId> = ["solaris", "freebsd", "openbsd"]
                .iter()
                .flat_map(|f| family(pool, f))
                .collect();
            let mut v = some_of(rng, &unix, 1, 2);
            v.extend(some_of(rng, &linux, 1, 2));
            v
        }
        _ => some_of(rng, &all, 3, 6),
    }
}

fn cpe(pool: &Pool, o: OsId, version: &str) -> String {
    let os = &pool.os[o];
    format!(
        "cpe:2.3:o:{}:{}:{}:*:*:*:*:*:*:*",
        os.vendor, os.product, version
    )
}

/// The `cpeMatch` entries naming `set`: a run of consecutive versions of one
/// product is written as a `*` range half of the time.
fn cpe_matches(rng: &mut ChaCha8Rng, pool: &Pool, set: &[OsId]) -> Vec<Value> {
    let same_product = set.windows(2).all(|w| {
        let (a, b) = (&pool.os[w[0]], &pool.os[w[1]]);
        a.vendor == b.vendor && a.product == b.product && w[1] == w[0] + 1 && a.version != "-"
    });
    if set.len() >= 2 && same_product && rng.gen_bool(0.5) {
        let (lo, hi) = (
            &pool.os[set[0]].version,
            &pool.os[set[set.len() - 1]].version,
        );
        return vec![json!({
            "vulnerable": true, "criteria": cpe(pool, set[0], "*"),
            "versionStartIncluding": lo, "versionEndIncluding": hi,
        })];
    }
    set.iter()
        .map(|&o| json!({"vulnerable": true, "criteria": cpe(pool, o, &pool.os[o].version)}))
        .collect()
}

fn record(rng: &mut ChaCha8Rng, pool: &Pool, seed: u64, id: &str, day: Day, set: &[OsId]) -> Value {
    let (vector, score) = VECTORS[rng.gen_range(0..VECTORS.len())];
    let nodes = if rng.gen_range(0..20) == 0 {
        // an application flaw "running on" these OS versions: no pool OS is vulnerable
        let platforms: Vec<Value> = set
            .iter()
            .map(|&o| json!({"vulnerable": false, "criteria": cpe(pool, o, &pool.os[o].version)}))
            .collect();
        json!([{"operator": "AND", "nodes": [
            {"operator": "OR", "negate": false, "cpeMatch": [{"vulnerable": true, "criteria": "cpe:2.3:a:synthetic:libexample:1.0:*:*:*:*:*:*:*"}]},
            {"operator": "OR", "negate": false, "cpeMatch": platforms}]}])
    } else {
        json!([{"nodes": [{"operator": "OR", "negate": false, "cpeMatch": cpe_matches(rng, pool, set)}]}])
    };
    let mut refs = vec![
        json!({"url": format!("https://example.invalid/synthetic/{id}"), "source": "synthetic", "tags": ["Third Party Advisory"]}),
    ];
    if rng.gen_range(0..4) == 0 {
        refs.push(json!({"url": format!("https://example.invalid/synthetic/{id}/exploit"), "source": "synthetic", "tags": ["Exploit", "Third Party Advisory"]}));
    }
    if rng.gen_range(0..20) < 11 {
        refs.push(json!({"url": format!("https://example.invalid/synthetic/{id}/patch"), "source": "synthetic", "tags": ["Patch", "Vendor Advisory"]}));
    }
    let severity = match score {
        s if s >= 9.0 => "CRITICAL",
        s if s >= 7.0 => "HIGH",
        _ => "MEDIUM",
    };
    json!({"cve": {
        "id": id,
        "sourceIdentifier": "synthetic@byzscale.invalid",
        "published": format!("{day}T00:00:00.000"),
        "lastModified": format!("{day}T00:00:00.000"),
        "vulnStatus": "Analyzed",
        "descriptions": [{"lang": "en", "value": format!("SYNTHETIC record generated by byzscale-lazarus (synth, seed {seed}); not a real vulnerability.")}],
        "metrics": {"cvssMetricV31": [{"source": "synthetic@byzscale.invalid", "type": "Primary",
            "cvssData": {"version": "3.1", "vectorString": vector, "baseScore": score, "baseSeverity": severity}}]},
        "configurations": nodes,
        "references": refs,
    }})
}

/// A synthetic NVD CVE JSON 2.0 document of `records` records for the
/// seed's pool ([`Pool::seed17`]; the kinds above name its families).
pub fn generate(seed: u64, records: usize) -> Value {
    let pool = &Pool::seed17();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let first = Day::from_ymd(FIRST_YEAR, 1, 1).expect("a date");
    let last = Day::from_ymd(LAST_YEAR, 12, 31).expect("a date");
    let mut events: Vec<(Day, Vec<OsId>)> = Vec::with_capacity(records + 3);
    while events.len() < records {
        let day = Day(rng.gen_range(first.0..=last.0));
        let set = affected(&mut rng, pool);
        // a disclosure wave: more flaws in the same component within weeks
        let wave = if rng.gen_range(0..10) < 3 {
            rng.gen_range(1..=3)
        } else {
            0
        };
        for k in 0..=wave {
            let d = if k == 0 {
                day
            } else {
                Day((day.0 + rng.gen_range(1..=60)).min(last.0))
            };
            events.push((d, set.clone()));
        }
    }
    events.truncate(records);
    events.sort();
    let mut per_year = std::collections::BTreeMap::<i32, u32>::new();
    let vulns: Vec<Value> = events
        .into_iter()
        .map(|(day, set)| {
            let n = per_year.entry(day.ymd().0).or_insert(0);
            *n += 1;
            let id = format!("CVE-{}-9{:04}", day.ymd().0, n);
            record(&mut rng, pool, seed, &id, day, &set)
        })
        .collect();
    json!({
        "resultsPerPage": records, "startIndex": 0, "totalResults": records,
        "format": "NVD_CVE", "version": "2.0", "timestamp": "2019-01-01T00:00:00.000",
        "vulnerabilities": vulns,
    })
}
