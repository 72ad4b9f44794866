//! The facts measured on `../shared/corpus` with an independent parser (its README): event
//! counts per id, and the detection's pairs per image with the process filter swapped for `true`,
//! in cimlake mode (pairs = flows) and Splunk mode (rows).

use std::path::Path;

use tempfile::TempDir;

use crate::common::*;

const DETECTION: &str = "windows_http_network_communication_from_msiexec";

struct Fact {
    file: &'static str,
    eid1: u64,
    eid3: u64,
    eid3_http: u64,
    pairs: &'static [(&'static str, u64)],
    /// None where the corpus does not state it.
    splunk_rows: Option<&'static [(&'static str, u64)]>,
}

const FACTS: &[Fact] = &[
    Fact { file: "evtx/sysmon_corrupt_chunk9.evtx", eid1: 227, eid3: 2, eid3_http: 2, pairs: &[("installer.exe", 2)], splunk_rows: None },
    Fact { file: "evtx/Exec_sysmon_meterpreter_reversetcp_msipackage.evtx", eid1: 4, eid3: 0, eid3_http: 0, pairs: &[], splunk_rows: Some(&[]) },
    Fact { file: "evtx/LM_sysmon_3_12_13_1_SharpRDP.evtx", eid1: 8, eid3: 4, eid3_http: 0, pairs: &[], splunk_rows: Some(&[]) },
    Fact {
        file: "evtx/PanacheSysmon_vs_AtomicRedTeam01.evtx",
        eid1: 511,
        eid3: 4,
        eid3_http: 4,
        pairs: &[("powershell.exe", 3), ("regsvr32.exe", 1)],
        splunk_rows: Some(&[("powershell.exe", 2), ("regsvr32.exe", 1)]),
    },
    Fact {
        file: "evtx/exec_persist_rundll32_mshta_scheduledtask_sysmon_1_3_11.evtx",
        eid1: 4,
        eid3: 3,
        eid3_http: 3,
        pairs: &[("mshta.exe", 3)],
        splunk_rows: Some(&[("mshta.exe", 1)]),
    },
    Fact {
        file: "evtx/exec_sysmon_lobin_regsvr32_sct.evtx",
        eid1: 2,
        eid3: 1,
        eid3_http: 1,
        pairs: &[("regsvr32.exe", 1)],
        splunk_rows: Some(&[("regsvr32.exe", 1)]),
    },
    Fact {
        file: "evtx/exec_wmic_xsl_internet_sysmon_3_1_11.evtx",
        eid1: 3,
        eid3: 2,
        eid3_http: 2,
        pairs: &[("WMIC.exe", 2)],
        splunk_rows: Some(&[("WMIC.exe", 1)]),
    },
    Fact { file: "xmlwineventlog/certutil_exe_certificate_extraction.raw", eid1: 20, eid3: 0, eid3_http: 0, pairs: &[], splunk_rows: Some(&[]) },
    Fact { file: "xmlwineventlog/security_content_example_events.log", eid1: 1, eid3: 1, eid3_http: 0, pairs: &[], splunk_rows: Some(&[]) },
];

fn per_image(lake: &Path, sql: &str, process_filter: &str) -> Vec<(String, u64)> {
    query_csv(lake, sql, &["--macro", &format!("process_msiexec={process_filter}")])
        .into_iter()
        .skip(1)
        .map(|l| {
            let (k, v) = l.rsplit_once(',').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn owned(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Checks a lake holding one corpus file against its facts: EID 1 (Sysmon's process rows, not the
/// Security 4688 ones) / EID 3 / EID 3 to 80 or 443 counts, the pairs per image (cimlake mode, summed counts) and, where stated, the Splunk rows
/// per image, both with the process filter swapped for `true`.
fn assert_facts(lake: &Path, file: &str, counts: (u64, u64, u64), pairs: &[(&str, u64)], splunk_rows: Option<&[(&str, u64)]>) {
    let got = query_csv(
        lake,
        "SELECT (SELECT count(*) FROM endpoint.processes WHERE vendor_product <> 'Microsoft Windows') AS eid1, \
                (SELECT count(*) FROM network_traffic.all_traffic) AS eid3, \
                (SELECT count(*) FROM network_traffic.all_traffic WHERE dest_port IN (80, 443)) AS http",
        &[],
    );
    assert_eq!(got[1], format!("{},{},{}", counts.0, counts.1, counts.2), "{file}");
    // Every process row: cimlake mode counts a process in both the Security log and Sysmon's once.
    let got = per_image(lake, &format!("SELECT process_name, sum(count) AS pairs FROM detect.{DETECTION} GROUP BY 1 ORDER BY 1"), "true");
    assert_eq!(got, owned(pairs), "{file}: pairs per image");
    if let Some(rows) = splunk_rows {
        // Splunk mode keeps both rows of such a process, as Splunk does; the facts count Sysmon's.
        let sysmon = "vendor_product <> 'Microsoft Windows'";
        let got = per_image(lake, &format!("SELECT process_name, count(*) AS n FROM detect_splunk.{DETECTION} GROUP BY 1 ORDER BY 1"), sysmon);
        assert_eq!(got, owned(rows), "{file}: Splunk rows per image");
    }
}

#[test]
fn every_xml_and_evtx_file_reproduces_its_facts() {
    let corpus = corpus();
    assert!(corpus.join("README.md").exists(), "the corpus must be at {}", corpus.display());
    for fact in FACTS {
        let lake = TempDir::new().unwrap();
        let input = corpus.join(fact.file);
        cimlake_ok(lake.path(), &["ingest", input.to_str().unwrap()]);
        assert_facts(lake.path(), fact.file, (fact.eid1, fact.eid3, fact.eid3_http), fact.pairs, fact.splunk_rows);
    }
}

#[test]
fn the_corrupt_chunk_is_reported_and_every_readable_record_kept() {
    let lake = TempDir::new().unwrap();
    let input = corpus().join("evtx/sysmon_corrupt_chunk9.evtx");
    let out = cimlake_ok(lake.path(), &["ingest", input.to_str().unwrap()]);
    // 358 readable records: 227 EID 1 + 2 EID 3 + 129 others.
    assert!(out.contains("366 records, 227 processes, 2 flows, 129 skipped, 8 bad"), "{out}");
    assert!(out.contains("Failed to parse chunk number 9"), "{out}");
}

struct JsonFact {
    file: &'static str,
    salvage: bool,
    eid1: u64,
    eid3: u64,
    eid3_http: u64,
    pairs: &'static [(&'static str, u64)],
    splunk_rows: &'static [(&'static str, u64)],
}

const JSON_FACTS: &[JsonFact] = &[
    // Sysmon's ProcessId was dropped by the collector: only ProcessGuid links InstallUtil.exe to
    // its flow, and Splunk's 'null'-filled join matches all three processes to it.
    JsonFact {
        file: "otrf_json/covenant_installutil.zip",
        salvage: false,
        eid1: 3,
        eid3: 3,
        eid3_http: 1,
        pairs: &[("InstallUtil.exe", 1)],
        splunk_rows: &[("InstallUtil.exe", 1), ("cmd.exe", 1), ("conhost.exe", 1)],
    },
    // No provider name on its records: the channel says Sysmon.
    JsonFact {
        file: "otrf_json/wmic_remote_xsl_jscript.zip",
        salvage: false,
        eid1: 6,
        eid3: 1,
        eid3_http: 1,
        pairs: &[("WMIC.exe", 1)],
        splunk_rows: &[("WMIC.exe", 1)],
    },
    // Its gzip stream is cut short after the tar's data: ingested with --salvage.
    JsonFact {
        file: "winlogbeat_json/empire_enable_rdp.tar.gz",
        salvage: true,
        eid1: 11,
        eid3: 89,
        eid3_http: 45,
        pairs: &[("svchost.exe", 4)],
        splunk_rows: &[("svchost.exe", 1)],
    },
];

#[test]
fn every_json_archive_reproduces_its_facts_read_directly() {
    for fact in JSON_FACTS {
        let lake = TempDir::new().unwrap();
        let input = corpus().join(fact.file);
        let mut args = vec!["ingest", input.to_str().unwrap()];
        if fact.salvage {
            args.push("--salvage");
        }
        cimlake_ok(lake.path(), &args);
        assert_facts(lake.path(), fact.file, (fact.eid1, fact.eid3, fact.eid3_http), fact.pairs, Some(fact.splunk_rows));
    }
}

#[test]
fn the_cut_winlogbeat_archive_is_an_error_without_salvage() {
    let lake = TempDir::new().unwrap();
    let input = corpus().join("winlogbeat_json/empire_enable_rdp.tar.gz");
    let out = cimlake(lake.path(), &["ingest", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("gzip stream ends early") && stderr.contains("--salvage"), "{stderr}");
    assert_eq!(query_csv(lake.path(), "SELECT count(*) AS n FROM endpoint.processes", &[])[1], "0");
}

/// SigmaHQ's regression tests ship each event twice: as an EVTX file and as evtx_dump JSON beside
/// it. Ingested through the CLI, the two give the same rows, every column but provenance, compared
/// as distinct rows (where two tests share an event, one copy of each form is ingested, not always
/// the same test's). Where the two files themselves differ, that is pinned: the JSON files were
/// exported with trailing spaces trimmed from values (the EVTX's parent command line
/// `"C:\Windows\system32\cmd.exe" ` is `"…cmd.exe"` there), and one JSON event spells its
/// parent `Explorer.exe` where its EVTX has `Explorer.EXE`.
#[test]
fn every_sigma_regression_event_gives_the_same_rows_from_evtx_and_from_its_json() {
    let root = corpus().join("sigma/regression_data");
    let mut evtx = Vec::new();
    let mut json = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            match p.extension().and_then(|x| x.to_str()) {
                _ if p.is_dir() => stack.push(p),
                Some("evtx") => evtx.push(p),
                Some("json") => json.push(p),
                _ => {}
            }
        }
    }
    assert!(evtx.len() >= 90 && evtx.len() == json.len(), "{} EVTX, {} JSON", evtx.len(), json.len());
    let rows = |files: &[std::path::PathBuf], sourcetype: &str| -> Vec<serde_json::Map<String, serde_json::Value>> {
        let lake = TempDir::new().unwrap();
        let mut args = vec!["ingest".to_string()];
        args.extend(files.iter().map(|p| p.to_str().unwrap().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cimlake_ok(lake.path(), &args);
        // Some tests share an event file (the same bytes are ingested once).
        let ingested = out.lines().filter(|l| l.starts_with("ingested ") && l.contains(&format!("({sourcetype}): "))).count();
        let already = out.lines().filter(|l| l.starts_with("skipped ") && l.contains(": already in the lake")).count();
        assert_eq!(ingested + already, files.len(), "{out}");
        assert!(ingested >= files.len() - 2, "{out}");
        assert!(!out.contains("bad records:"), "{out}");
        let sources = query_csv(lake.path(), "SELECT DISTINCT sourcetype FROM endpoint.processes", &[]);
        assert_eq!(sources, ["sourcetype", sourcetype]);
        let sql = "SELECT DISTINCT * EXCLUDE (source, sourcetype, source_record, source_offset) FROM endpoint.processes \
                   ORDER BY _time, dest, process_guid, process_id";
        cimlake_ok(lake.path(), &["query", sql, "--format", "json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let from_evtx = rows(&evtx, "evtx");
    let from_json = rows(&json, "evtx:json");
    assert!(from_evtx.len() > 100, "{} rows", from_evtx.len());
    assert_eq!(from_json.len(), from_evtx.len());
    let (mut trimmed, mut other) = (0, Vec::new());
    for (a, b) in from_evtx.iter().zip(&from_json) {
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, va) in a {
            let vb = &b[k];
            if va == vb {
                continue;
            }
            match (va.as_str(), vb.as_str()) {
                (Some(x), Some(y)) if (k == "process" || k == "parent_process") && x.trim_end_matches(' ') == y => trimmed += 1,
                _ => other.push((k.clone(), va.clone(), vb.clone())),
            }
        }
    }
    assert_eq!(trimmed, 64);
    assert_eq!(other, [("parent_process".to_string(), "C:\\Windows\\Explorer.EXE".into(), "C:\\Windows\\Explorer.exe".into())]);
}
