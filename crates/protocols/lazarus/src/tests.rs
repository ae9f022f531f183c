//! Unit tests: parsing, CPE matching, severities, risk, the planner against
//! a brute-force reference, the sample data and the study.

use proptest::prelude::*;

use crate::cpe::{compare_versions, Bounds, Cpe, CpeMatch};
use crate::nvd::{self, parse};
use crate::plan::{binomial, choose, plan, replacements};
use crate::risk::{multiplier, severity_units, Knowledge, PairRisk, Severity, UNITS_PER_POINT};
use crate::study::{study, Strategy as Strat, StudyConfig};
use crate::{synth, Day, LazarusError, Pool};

/// One record in the shape the NVD 2.0 API serves (abridged; modelled on
/// CVE-2016-5195): a Linux kernel range plus Ubuntu and Debian versions,
/// CVSS 3.1 and 2.0 metrics, references tagged Exploit and Patch.
const RECORD: &str = r#"{
  "resultsPerPage": 1, "startIndex": 0, "totalResults": 1, "format": "NVD_CVE", "version": "2.0",
  "timestamp": "2024-01-01T00:00:00.000",
  "vulnerabilities": [{"cve": {
    "id": "CVE-2016-5195", "sourceIdentifier": "secalert@redhat.com",
    "published": "2016-11-10T21:59:00.173", "lastModified": "2023-11-07T02:32:00.000",
    "vulnStatus": "Modified",
    "descriptions": [{"lang": "en", "value": "Race condition in mm/gup.c in the Linux kernel ..."}],
    "metrics": {
      "cvssMetricV31": [
        {"source": "134c704f-9b21-4f2e-91b3-4a467353bcc0", "type": "Secondary",
         "cvssData": {"version": "3.1", "vectorString": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", "baseScore": 7.8, "baseSeverity": "HIGH"}},
        {"source": "nvd@nist.gov", "type": "Primary",
         "cvssData": {"version": "3.1", "vectorString": "CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:H/A:H", "baseScore": 7.0, "baseSeverity": "HIGH"},
         "exploitabilityScore": 1.0, "impactScore": 5.9}],
      "cvssMetricV2": [{"source": "nvd@nist.gov", "type": "Primary",
         "cvssData": {"version": "2.0", "vectorString": "AV:L/AC:L/Au:N/C:N/I:C/A:N", "baseScore": 7.2}}]
    },
    "weaknesses": [{"source": "nvd@nist.gov", "type": "Primary", "description": [{"lang": "en", "value": "CWE-362"}]}],
    "configurations": [
      {"nodes": [{"operator": "OR", "negate": false, "cpeMatch": [
        {"vulnerable": true, "criteria": "cpe:2.3:o:linux:linux_kernel:*:*:*:*:*:*:*:*", "versionStartIncluding": "2.6.22", "versionEndExcluding": "3.2.83", "matchCriteriaId": "A1"}]}]},
      {"nodes": [{"operator": "OR", "negate": false, "cpeMatch": [
        {"vulnerable": true, "criteria": "cpe:2.3:o:canonical:ubuntu_linux:12.04:*:*:*:lts:*:*:*", "matchCriteriaId": "B1"},
        {"vulnerable": true, "criteria": "cpe:2.3:o:canonical:ubuntu_linux:14.04:*:*:*:lts:*:*:*", "matchCriteriaId": "B2"},
        {"vulnerable": true, "criteria": "cpe:2.3:o:canonical:ubuntu_linux:16.04:*:*:*:lts:*:*:*", "matchCriteriaId": "B3"}]}]},
      {"nodes": [{"operator": "OR", "negate": false, "cpeMatch": [
        {"vulnerable": true, "criteria": "cpe:2.3:o:debian:debian_linux:7.0:*:*:*:*:*:*:*", "matchCriteriaId": "C1"},
        {"vulnerable": true, "criteria": "cpe:2.3:o:debian:debian_linux:8.0:*:*:*:*:*:*:*", "matchCriteriaId": "C2"}]}]},
      {"operator": "AND", "nodes": [
        {"operator": "OR", "negate": false, "cpeMatch": [{"vulnerable": true, "criteria": "cpe:2.3:a:example:agent:1.0:*:*:*:*:*:*:*", "matchCriteriaId": "D1"}]},
        {"operator": "OR", "negate": false, "cpeMatch": [{"vulnerable": false, "criteria": "cpe:2.3:o:microsoft:windows_10:-:*:*:*:*:*:*:*", "matchCriteriaId": "D2"}]}]}
    ],
    "references": [
      {"url": "https://www.exploit-db.com/exploits/40611/", "source": "cve@mitre.org", "tags": ["Exploit", "Third Party Advisory", "VDB Entry"]},
      {"url": "https://git.kernel.org/cgit/linux/kernel/git/torvalds/linux.git/commit/?id=19be0eaffa3ac7d8eb6784ad9bdbc7d67ed8e619", "source": "cve@mitre.org", "tags": ["Patch", "Vendor Advisory"]},
      {"url": "http://www.ubuntu.com/usn/USN-3104-1", "source": "cve@mitre.org"}
    ]
  }}]
}"#;

fn ids(pool: &Pool, mask: u64) -> Vec<String> {
    (0..pool.len())
        .filter(|i| mask >> i & 1 == 1)
        .map(|i| pool.os[i].id.clone())
        .collect()
}

#[test]
fn parses_a_real_format_record() {
    let l = parse(RECORD, "record.json").unwrap();
    assert_eq!(l.skipped_no_cvss3, 0);
    let v = &l.vulns[0];
    assert_eq!(v.id, "CVE-2016-5195");
    assert_eq!(v.published, Day::from_ymd(2016, 11, 10).unwrap());
    // the Primary metric, not the first one
    assert_eq!(v.score_tenths, 70);
    assert_eq!(v.vector, "CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:H/A:H");
    assert!(v.exploit && v.patch);
    // 1 kernel + 3 Ubuntu + 2 Debian + the application; the Windows platform is not vulnerable
    assert_eq!(v.affected.len(), 7);
    let kb = Knowledge::build(&Pool::seed17(), &l.vulns, Severity::default());
    assert_eq!(
        ids(&kb.pool, kb.entries[0].affected),
        ["UB14", "UB16", "DE7", "DE8"]
    );
}

#[test]
fn malformed_input_is_an_error_naming_the_record() {
    let err = |text: &str| parse(text, "f.json").unwrap_err();
    let with = |from: &str, to: &str| RECORD.replacen(from, to, 1);
    assert!(matches!(err("not json"), LazarusError::Data { record, .. } if record == "document"));
    assert!(matches!(
        err(r#"{"vulnerabilities": 3}"#),
        LazarusError::Data { .. }
    ));
    let cases = [
        (
            with(
                "\"published\": \"2016-11-10T21:59:00.173\"",
                "\"published\": \"2016-13-10\"",
            ),
            "published",
        ),
        (
            with("\"baseScore\": 7.0", "\"baseScore\": 11.0"),
            "baseScore",
        ),
        (
            with(
                "cpe:2.3:o:debian:debian_linux:7.0:*:*:*:*:*:*:*",
                "cpe:2.3:o:debian",
            ),
            "CPE 2.3",
        ),
        (
            with(
                "cpe:2.3:o:debian:debian_linux:8.0:*:*:*:*:*:*:*",
                "cpe:2.3:x:debian:debian_linux:8.0:*:*:*:*:*:*:*",
            ),
            "part",
        ),
        (
            with(
                "\"vulnerable\": true, \"criteria\": \"cpe:2.3:o:canonical",
                "\"vulnerable\": \"yes\", \"criteria\": \"cpe:2.3:o:canonical",
            ),
            "expected a boolean",
        ),
        (with("CVSS:3.1/AV:L/AC:H", "AV:L/AC:H"), "CVSS v3"),
    ];
    for (text, what) in cases {
        let e = err(&text);
        let msg = e.to_string();
        assert!(
            msg.starts_with("f.json: vulnerabilities[0] (CVE-2016-5195): "),
            "{msg}"
        );
        assert!(msg.contains(what), "{msg} should mention {what}");
    }
    let no_id = with("\"id\": \"CVE-2016-5195\",", "");
    assert!(
        err(&no_id)
            .to_string()
            .contains("vulnerabilities[0]: missing field `id`"),
        "{}",
        err(&no_id)
    );
    // a record with only CVSS v2 is skipped and counted, not an error
    let v2_only = with("\"cvssMetricV31\"", "\"cvssMetricV40x\"");
    let l = parse(&v2_only, "f.json").unwrap();
    assert_eq!((l.vulns.len(), l.skipped_no_cvss3), (0, 1));
}

#[test]
fn loading_a_folder_refuses_a_duplicate_record() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../../../target/tmp/lazarus-dup-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.json"), RECORD).unwrap();
    assert_eq!(nvd::load(&dir).unwrap().vulns.len(), 1);
    std::fs::write(dir.join("b.json"), RECORD).unwrap();
    let e = nvd::load(&dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        e.contains("b.json: CVE-2016-5195: already read from") && e.contains("a.json"),
        "{e}"
    );
    assert!(nvd::load(std::path::Path::new("/nonexistent/lazarus")).is_err());
}

fn m(criteria: &str, bounds: Bounds) -> CpeMatch {
    CpeMatch {
        cpe: Cpe::parse(criteria).unwrap(),
        bounds,
    }
}

#[test]
fn cpe_matching_by_vendor_product_version() {
    let pool = Pool::seed17();
    let os = |id: &str| &pool.os[pool.index_of(id).unwrap()];
    let exact = m(
        "cpe:2.3:o:debian:debian_linux:8:*:*:*:*:*:*:*",
        Bounds::default(),
    );
    assert!(exact.matches(os("DE8")), "8 = 8.0");
    assert!(!exact.matches(os("DE7")));
    let any = m(
        "cpe:2.3:o:canonical:ubuntu_linux:*:*:*:*:*:*:*:*",
        Bounds::default(),
    );
    assert!(["UB14", "UB16", "UB17"].iter().all(|i| any.matches(os(i))));
    assert!(!any.matches(os("DE8")), "another vendor");
    let range = Bounds {
        start_including: Some("14.10".into()),
        end_excluding: Some("17.04".into()),
        ..Bounds::default()
    };
    let r = m("cpe:2.3:o:canonical:ubuntu_linux:*:*:*:*:*:*:*:*", range);
    assert_eq!(
        ["UB14", "UB16", "UB17"].map(|i| r.matches(os(i))),
        [false, true, false]
    );
    let incl = Bounds {
        start_excluding: Some("10.0".into()),
        end_including: Some("11.0".into()),
        ..Bounds::default()
    };
    let r = m("cpe:2.3:o:freebsd:freebsd:*:*:*:*:*:*:*:*", incl);
    assert_eq!(["FB10", "FB11"].map(|i| r.matches(os(i))), [false, true]);
    let win = m(
        "cpe:2.3:o:microsoft:windows_10:-:*:*:*:*:*:*:*",
        Bounds::default(),
    );
    assert!(win.matches(os("W10")) && !win.matches(os("WS12")));
    let named = m(
        "cpe:2.3:o:microsoft:windows_10:1607:*:*:*:*:*:*:*",
        Bounds::default(),
    );
    assert!(
        !named.matches(os("W10")),
        "a named build is not the pool's unversioned entry"
    );
    assert!(!m(
        "cpe:2.3:o:oracle:solaris:11.3:*:*:*:*:*:*:*",
        Bounds::default()
    )
    .matches(os("SO11")));
    // escapes, case, and refusals
    let c = Cpe::parse(r"cpe:2.3:a:Vendor:prod\:uct:1.0:*:*:*:*:*:*:*").unwrap();
    assert_eq!(
        (c.vendor.as_str(), c.product.as_str()),
        ("vendor", "prod:uct")
    );
    for bad in [
        "cpe:2.3:o:debian",
        "cpe:2.2:o:a:b:c:*:*:*:*:*:*:*",
        "cpe:2.3:o::b:c:*:*:*:*:*:*:*",
        r"cpe:2.3:o:a:b:c:*:*:*:*:*:*:\",
    ] {
        assert!(Cpe::parse(bad).is_err(), "{bad}");
    }
    use std::cmp::Ordering::*;
    assert_eq!(compare_versions("10.0", "9.3"), Greater);
    assert_eq!(compare_versions("16.04", "17.04"), Less);
    assert_eq!(compare_versions("42.1", "42.1.0"), Equal);
}

#[test]
fn severity_follows_the_seeds_multipliers() {
    // the slide's eight multipliers are the eight products of ×5/4, ×3/4, ×1/2
    let slide = [1.0, 1.25, 0.94, 0.625, 0.75, 0.5, 0.47, 0.37];
    let mut products: Vec<f64> = Vec::new();
    for bits in 0..8u8 {
        let (a, b) = multiplier(bits & 1 == 1, bits & 2 == 2, bits & 4 == 4);
        products.push(a as f64 / b as f64);
    }
    for s in slide {
        let hits = products.iter().filter(|p| (*p - s).abs() < 0.006).count();
        assert_eq!(hits, 1, "slide value {s} against {products:?}");
    }
    // hand-computed, in CVSS points
    let pts = |tenths, e, o, p| severity_units(tenths, e, o, p) as f64 / UNITS_PER_POINT as f64;
    assert_eq!(pts(98, false, false, false), 9.8);
    assert_eq!(pts(98, true, false, false), 12.25);
    assert_eq!(pts(98, true, true, false), 9.1875);
    assert_eq!(pts(98, true, false, true), 6.125);
    assert_eq!(pts(70, false, true, true), 2.625);
    assert_eq!(pts(98, true, true, true), 4.59375);
    assert_eq!(pts(55, false, true, false), 4.125);
    // old is strictly more than old_after_days before the evaluation day
    let l = parse(RECORD, "r").unwrap();
    let kb = Knowledge::build(
        &Pool::seed17(),
        &l.vulns,
        Severity {
            old_after_days: 365,
        },
    );
    let e = &kb.entries[0];
    let on = |d: i32| kb.units(e, Day(e.published.0 + d)) as f64 / 320.0;
    assert_eq!(on(0), 7.0 * 1.25 * 0.5);
    assert_eq!(on(365), 7.0 * 1.25 * 0.5);
    assert_eq!(on(366), 7.0 * 1.25 * 0.75 * 0.5);
}

#[test]
fn pair_risk_sums_shared_severities() {
    let pool = Pool::seed17();
    let l = parse(RECORD, "r").unwrap();
    let mut other = l.vulns[0].clone();
    other.id = "CVE-2017-0001".into();
    other.published = Day::from_ymd(2017, 1, 1).unwrap();
    other.exploit = false;
    other.patch = false;
    other.affected.truncate(1); // only the Linux kernel: no pool OS
    let mut third = l.vulns[0].clone();
    third.id = "CVE-2017-0002".into();
    third.published = Day::from_ymd(2017, 1, 2).unwrap();
    third.patch = false;
    third.exploit = false;
    third.affected.retain(|m| m.cpe.product == "debian_linux");
    let kb = Knowledge::build(
        &pool,
        &[l.vulns[0].clone(), other, third],
        Severity::default(),
    );
    assert_eq!(
        kb.entries.len(),
        2,
        "a vulnerability of no pool OS is dropped"
    );
    let [ub14, ub16, de7, de8, w10] =
        ["UB14", "UB16", "DE7", "DE8", "W10"].map(|i| pool.index_of(i).unwrap());
    let r = kb.pair_risk(Day::from_ymd(2017, 1, 2).unwrap());
    // 7.0 × 1.25 × 0.5 = 4.375 points = 1400 units for the first; 7.0 = 2240 for the third
    assert_eq!(r.get(ub14, ub16), 1400);
    assert_eq!(r.get(de7, de8), 1400 + 2240);
    assert_eq!(r.get(ub14, w10), 0);
    assert_eq!(r.set_risk(&[ub14, de7, de8, w10]), 1400 + 1400 + 3640);
    assert_eq!(
        r.set_risk(&[de8, de8, w10]),
        3640,
        "two replicas of DE8 share all of DE8's"
    );
    // the day before the third is published only the first counts
    assert_eq!(
        kb.pair_risk(Day::from_ymd(2017, 1, 1).unwrap())
            .get(de7, de8),
        1400
    );
}

/// The brute-force reference: every n-subset as a bitmask, minimum of
/// (risk, replacements, sorted members).
fn reference(current: &[usize], n: usize, r: &PairRisk) -> (Vec<usize>, u64, usize) {
    let p = r.len();
    let mut best: Option<(u64, usize, Vec<usize>)> = None;
    for mask in 0u32..1 << p {
        if mask.count_ones() as usize != n {
            continue;
        }
        let set: Vec<usize> = (0..p).filter(|i| mask >> i & 1 == 1).collect();
        let changes = n - set.iter().filter(|o| current.contains(o)).count();
        let key = (r.set_risk(&set), changes, set);
        if best.as_ref().is_none_or(|b| key < *b) {
            best = Some(key);
        }
    }
    let (risk, changes, set) = best.unwrap();
    (set, risk, changes)
}

fn matrix_and_current() -> impl Strategy<Value = (PairRisk, usize, Vec<usize>)> {
    (2usize..=8).prop_flat_map(|p| {
        (
            proptest::collection::vec(0u64..4, p * p),
            1..=p,
            proptest::collection::vec(0..p, 0..=p),
        )
            .prop_map(move |(raw, n, mut cur)| {
                let mut m = vec![0; p * p];
                for i in 0..p {
                    for j in 0..p {
                        m[i * p + j] = raw[i.min(j) * p + i.max(j)];
                    }
                }
                cur.truncate(n);
                (PairRisk::from_matrix(p, m).unwrap(), n, cur)
            })
    })
}

proptest! {
    #[test]
    fn planner_matches_brute_force((risk, n, current) in matrix_and_current()) {
        let c = choose(&current, n, &risk).unwrap();
        let (set, r, changes) = reference(&current, n, &risk);
        prop_assert_eq!(&c.set, &set);
        prop_assert_eq!(c.risk, r);
        // the replacements take current to the set when current has n replicas
        if current.len() == n {
            prop_assert_eq!(c.replace.len(), changes);
            let mut next = current.clone();
            for s in &c.replace {
                let i = next.iter().position(|&o| o == s.out).unwrap();
                next[i] = s.r#in;
            }
            next.sort_unstable();
            prop_assert_eq!(next, set);
        }
    }
}

#[test]
fn planner_keeps_the_current_set_on_ties_and_refuses_bad_input() {
    // every pair costs the same: the current set is kept
    let r = PairRisk::from_matrix(5, vec![1; 25]).unwrap();
    assert!(choose(&[4, 2, 0], 3, &r).unwrap().replace.is_empty());
    // from nothing, the lexicographically first
    assert_eq!(choose(&[], 3, &r).unwrap().set, [0, 1, 2]);
    assert!(choose(&[9], 1, &r).is_err());
    assert!(choose(&[], 6, &r).is_err());
    assert!(PairRisk::from_matrix(2, vec![0, 1, 2, 0]).is_err());
    assert_eq!(binomial(17, 4), 2380);
    assert_eq!(
        replacements(&[3, 3, 3], &[1, 2, 3]),
        [
            crate::Replace { out: 3, r#in: 1 },
            crate::Replace { out: 3, r#in: 2 }
        ]
    );
}

fn sample() -> Knowledge {
    let l = nvd::load(&crate::sample_dir()).unwrap();
    Knowledge::build(&Pool::seed17(), &l.vulns, Severity::default())
}

#[test]
fn the_sample_is_the_generators_output_and_has_the_promised_structure() {
    let pool = Pool::seed17();
    let file = std::fs::read_to_string(crate::sample_dir().join("nvd-synthetic.json")).unwrap();
    let committed: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert!(
        committed == synth::generate(synth::SAMPLE_SEED, synth::SAMPLE_RECORDS),
        "regenerate with `byzscale lazarus synth`"
    );
    let kb = sample();
    let all = kb.entries.iter().fold(0u64, |m, e| m | e.affected);
    assert_eq!(all, (1 << 17) - 1, "every OS of the seed's pool is covered");
    let years: std::collections::BTreeSet<i32> =
        kb.entries.iter().map(|e| e.published.ymd().0).collect();
    assert_eq!(
        years.into_iter().collect::<Vec<_>>(),
        (synth::FIRST_YEAR..=synth::LAST_YEAR).collect::<Vec<_>>()
    );
    assert!(kb.entries.iter().any(|e| e.exploit) && kb.entries.iter().any(|e| e.patch));
    assert!(kb.entries.iter().any(|e| !e.exploit) && kb.entries.iter().any(|e| !e.patch));
    let end = Day::from_ymd(synth::LAST_YEAR, 12, 31).unwrap();
    let r = kb.pair_risk(end);
    let id = |s: &str| pool.index_of(s).unwrap();
    let debian_ubuntu = r.get(id("DE8"), id("UB16"));
    assert!(
        debian_ubuntu > 3 * r.get(id("DE8"), id("W10")).max(1),
        "Debian/Ubuntu share more"
    );
    assert!(r.get(id("UB14"), id("UB16")) > r.get(id("UB16"), id("SO11")));
}

#[test]
fn plan_on_the_sample_moves_off_a_homogeneous_set() {
    let kb = sample();
    let on = Day::from_ymd(2017, 6, 1).unwrap();
    let ub16 = kb.pool.index_of("UB16").unwrap();
    let current = vec![ub16; 4];
    let steps = plan(&current, &kb.pool, &kb, on).unwrap();
    let r = kb.pair_risk(on);
    let best = choose(&[], 4, &r).unwrap();
    let keep = usize::from(best.set.contains(&ub16));
    assert_eq!(steps.len(), 4 - keep, "at most one UB16 stays");
    let mut next = current.clone();
    for (k, s) in steps.iter().enumerate() {
        assert_eq!(s.out, ub16);
        next[k] = s.r#in;
    }
    assert!(r.set_risk(&next) < r.set_risk(&current));
    assert_eq!(r.set_risk(&next), best.risk, "the minimum risk");
    // a plan is refused for data mapped to another pool
    let small = Pool::new(kb.pool.os[..4].to_vec()).unwrap();
    assert!(plan(&[0, 1], &small, &kb, on).is_err());
}

#[test]
fn the_study_is_deterministic_and_homogeneous_is_worse_than_lazarus() {
    let kb = sample();
    let cfg = StudyConfig {
        runs: 200,
        seed: 7,
        ..StudyConfig::default()
    };
    let a = study(&kb, &cfg).unwrap();
    assert_eq!(a, study(&kb, &cfg).unwrap(), "same seed, same report");
    let by = |s: Strat| a.results.iter().find(|r| r.strategy == s).unwrap();
    let (laz, homo) = (by(Strat::Lazarus), by(Strat::Homogeneous));
    assert!(
        homo.compromised_runs > laz.compromised_runs,
        "{} vs {}",
        homo.compromised_runs,
        laz.compromised_runs
    );
    assert!(by(Strat::Random).compromised_runs > laz.compromised_runs);
    assert_eq!(by(Strat::FixedDiverse).replacements_per_run, 0.0);
    assert!(laz.replacements_per_run > 0.0);
    let other = study(
        &kb,
        &StudyConfig {
            seed: 8,
            ..cfg.clone()
        },
    )
    .unwrap();
    assert_ne!(a.results, other.results, "another seed, other runs");
    assert!(study(
        &kb,
        &StudyConfig {
            f: 4,
            ..cfg.clone()
        }
    )
    .is_err());
    assert!(study(
        &kb,
        &StudyConfig {
            horizon_days: 5000,
            ..cfg
        }
    )
    .is_err());
}
