//! `cimlake gen`: deterministic, realistic, and its planted positives are exactly what the
//! detection finds, straight in the lake and through every raw shape.

use std::collections::BTreeSet;
use std::path::Path;

use tempfile::TempDir;

use crate::common::*;

fn generate(lake: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["gen", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    cimlake_ok(lake, &args)
}

/// The cimlake-mode detection rows as (dest, process_id, process_guid, dest_ip, dest_port, count).
fn found(lake: &Path) -> BTreeSet<String> {
    query_csv(
        lake,
        "SELECT dest, process_id, process_guid, dest_ip, dest_port, count FROM detect.windows_http_network_communication_from_msiexec",
        &[],
    )
    .into_iter()
    .skip(1)
    .collect()
}

fn expected(out: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(out.join("expected.csv")).unwrap().lines().skip(1).map(str::to_string).collect()
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let small = ["--seed", "11", "--hosts", "30", "--processes", "3000", "--hours", "6", "--positives", "5"];
    for format in ["xmlwineventlog", "nvm-kv", "nvm-json"] {
        let (a, b, c) = (TempDir::new().unwrap(), TempDir::new().unwrap(), TempDir::new().unwrap());
        let lake = TempDir::new().unwrap();
        let mut args = small.to_vec();
        args.extend(["--format", format]);
        generate(lake.path(), a.path(), &args);
        generate(lake.path(), b.path(), &args);
        let mut other = args.clone();
        other[1] = "12";
        generate(lake.path(), c.path(), &other);
        let files = |d: &Path| {
            let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(files(a.path()), files(b.path()), "{format}");
        assert_ne!(files(a.path())[1].1, files(c.path())[1].1, "{format}: another seed, other data");
    }
}

#[test]
fn every_planted_positive_is_found_in_a_million_flow_lake() {
    let lake = TempDir::new().unwrap();
    let out = TempDir::new().unwrap();
    let said = generate(
        lake.path(),
        out.path(),
        &["--seed", "3", "--hosts", "200", "--processes", "100000", "--flows-per-process", "10.5", "--hours", "24", "--positives", "25"],
    );
    let flows: u64 = said.split_whitespace().skip_while(|w| *w != "and").nth(1).unwrap().parse().unwrap();
    assert!(flows >= 1_000_000, "{said}");
    let want = expected(out.path());
    assert!(want.len() >= 25, "{want:?}");
    assert_eq!(found(lake.path()), want);
    // Within a 16 MiB memory pool the detection returns the same rows.
    let unlimited = cimlake_ok(lake.path(), &["detect", "--format", "csv"]);
    let limited = cimlake_ok(lake.path(), &["detect", "--format", "csv", "--memory-limit", "16M"]);
    assert_eq!(limited, unlimited);
    let bad = cimlake(lake.path(), &["detect", "--memory-limit", "lots"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad size"));
    // Generating the same data again adds nothing.
    generate(lake.path(), out.path(), &["--seed", "3", "--hosts", "200", "--processes", "100000", "--flows-per-process", "10.5", "--hours", "24", "--positives", "25"]);
    assert_eq!(query_csv(lake.path(), "SELECT count(*) AS n FROM network_traffic.all_traffic", &[])[1], flows.to_string());
}

#[test]
fn raw_logs_round_trip_through_the_converters() {
    for format in ["xmlwineventlog", "nvm-kv", "nvm-json"] {
        let out = TempDir::new().unwrap();
        let lake = TempDir::new().unwrap();
        generate(lake.path(), out.path(), &["--seed", "5", "--hosts", "40", "--processes", "4000", "--hours", "12", "--positives", "9", "--format", format]);
        let log = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).find(|p| !p.ends_with("expected.csv")).unwrap();
        let said = cimlake_ok(lake.path(), &["ingest", log.to_str().unwrap()]);
        assert!(said.contains(", 0 bad"), "{format}: {said}");
        let want = expected(out.path());
        assert!(want.len() >= 9, "{format}");
        assert_eq!(found(lake.path()), want, "{format}");
    }
}

#[test]
fn a_detection_too_big_for_its_memory_limit_runs_in_passes_and_returns_the_same_rows() {
    // Half of all processes are msiexec.exe: the join's build side is 10,000 process rows (of the
    // 14 columns the detection reads), more than 32 MiB holds with the rest of the run.
    let lake = TempDir::new().unwrap();
    let out = TempDir::new().unwrap();
    generate(
        lake.path(),
        out.path(),
        &["--seed", "9", "--hosts", "60", "--processes", "20000", "--flows-per-process", "10", "--hours", "12", "--msiexec-share", "0.5", "--positives", "15"],
    );
    let unlimited = cimlake_ok(lake.path(), &["detect", "--format", "csv"]);
    assert!(unlimited.lines().count() > 15, "{unlimited}");
    let limited = cimlake(lake.path(), &["detect", "--format", "csv", "--memory-limit", "32M"]);
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert!(limited.status.success(), "{stderr}");
    assert!(stderr.contains("the join did not fit in --memory-limit; ran in"), "{stderr}");
    assert!(stderr.contains("passes over hash buckets of dest, dvc"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&limited.stdout), unlimited);
    // Splunk mode's sorts spill to disk within the same limit.
    let splunk = cimlake_ok(lake.path(), &["detect", "--mode", "splunk", "--format", "csv"]);
    let limited = cimlake(lake.path(), &["detect", "--mode", "splunk", "--format", "csv", "--memory-limit", "64M"]);
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert!(stderr.contains("spilled"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&limited.stdout), splunk);
}
