//! `cimlake report`: the page of the bundled data opened in headless Chromium (Debian's chromium,
//! driven by Playwright for Python; `tests/report/setup.sh` installs both when missing), checked
//! as a reader sees it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{cimlake, cimlake_ok, repo, setup_python};

/// The Python with Playwright: `CIMLAKE_REPORT_PYTHON` (set by `.ci/run`), else made here by
/// `tests/report/setup.sh`, which also installs Chromium when it is missing.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| setup_python("CIMLAKE_REPORT_PYTHON", "tests/report/setup.sh", "the browser or its driver"))
}

/// Opens `report` in headless Chromium and returns what `tests/report/browse.py` saw.
fn browse(report: &Path, screenshot: &Path, spec: &Value) -> Value {
    let dir = TempDir::new().unwrap();
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let out = Command::new(python()).arg(repo().join("tests/report/browse.py")).arg(report).arg(screenshot).arg(&spec_file).output().expect("python runs");
    assert!(out.status.success(), "browse.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn strings(v: &Value) -> Vec<Vec<String>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|c| c.as_str().unwrap_or("").to_string()).collect()).collect()
}

const MSIEXEC: &str = "Windows HTTP Network Communication From MSIExec";
const HOST: &str = "ws-eng-07.corp.acme.example";

/// A lake of the bundled logs with three scheduled hours around the T1218.007 chain
/// (2026-11-03 14:20), the MSIExec detection and the bundled Sigma rules.
fn lake_with_runs() -> TempDir {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", "data/logs"]);
    cimlake_ok(lake.path(), &["schedule", "--sql-dir", "data/sigma", "--backfill", "2026-11-03T13:00:00Z", "2026-11-03T16:00:00Z", "--risk-threshold", "50"]);
    lake
}

#[test]
fn the_report_of_the_bundled_data_in_a_real_browser() {
    let lake = lake_with_runs();
    let dir = TempDir::new().unwrap();
    let page = dir.path().join("report.html");
    let out = cimlake_ok(
        lake.path(),
        &["report", "--sql-dir", "data/sigma", "--earliest", "2026-11-03T00:00:00Z", "--latest", "2026-11-04T00:00:00Z", "-o", page.to_str().unwrap()],
    );
    assert!(out.contains("20 hits (20 listed, 20 with a process tree), 2 incidents, window [2026-11-03T00:00:00.000000Z, 2026-11-04T00:00:00.000000Z)"), "{out}");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing is fetched (also checked in the browser: no request left the page).
    for outside in ["<script src", "<link", "<img src=\"http", "@import"] {
        assert!(!html.contains(outside), "the page loads {outside}");
    }
    let shot = dir.path().join("report.png");
    let seen = browse(&page, &shot, &serde_json::json!({ "click": [MSIEXEC, HOST, "ACME\\jdoe", "msiexec.exe"], "host": HOST, "search": "T1218.007_JScript" }));
    assert_eq!(seen["errors"], serde_json::json!([]), "console errors, page errors or network requests");

    // The hits are listed: the window 13:50–14:50 has the MSIExec detection's four results.
    let rows = strings(&seen["rows"]);
    assert_eq!(rows.len(), 20);
    let mut msiexec: Vec<&str> = rows.iter().filter(|r| r[2] == MSIEXEC).map(|r| r[5].as_str()).collect();
    msiexec.sort();
    assert_eq!(msiexec, ["MsiExec.exe", "msiexec.exe", "msiexec.exe", "updater.exe"], "{rows:?}");
    // Provenance on every hit of one event (a correlation's hit stands for several).
    assert!(rows.iter().filter(|r| !r[2].contains("correlation")).all(|r| r[7].starts_with("data/logs/")), "{rows:?}");
    let summary = seen["summary"].as_str().unwrap();
    assert!(summary.contains(&format!("{HOST}\tsystem\t290")), "incidents first, with the host's score: {summary}");

    // Sortable: the hits by time reversed; the hits per host by count.
    let by_time: Vec<String> = strings(&seen["rows_by_time_desc"]).into_iter().map(|r| r[0].clone()).collect();
    let mut want: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(by_time, want);
    let counts: Vec<u64> = strings(&seen["hosts_by_count_asc"]).iter().map(|r| r[1].parse().unwrap()).collect();
    assert!(counts.len() >= 2 && counts.windows(2).all(|w| w[0] <= w[1]) && counts[0] < counts[counts.len() - 1], "{counts:?}");

    // The hit's process tree: the T1218.007 chain, with the installer's server process.
    let paths: Vec<Vec<(String, String, String)>> = seen["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_array().unwrap().iter().map(|n| (n[0].as_str().unwrap().into(), n[1].as_str().unwrap().into(), n[2].as_str().unwrap().into())).collect())
        .collect();
    let chain = paths.iter().find(|p| p.iter().any(|(_, cmd, _)| cmd.contains("-Embedding"))).unwrap_or_else(|| panic!("no -Embedding in {paths:?}"));
    let names: Vec<&str> = chain.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["explorer.exe", "cmd.exe", "msiexec.exe", "MsiExec.exe"], "{chain:?}");
    assert!(chain[1].1.contains("/c c:\\windows\\system32\\msiexec.exe /q /i") && chain[2].1.contains("T1218.007_JScript.msi"), "{chain:?}");
    assert!(chain[2].2.contains("me") && chain[3].2.contains("inferred") && chain[0].2.contains("missing"), "{chain:?}");
    let detail = seen["detail"].as_str().unwrap();
    for needle in [
        "T1218.007 System Binary Proxy Execution: Msiexec (Defense Evasion)",
        "data/logs/sysmon/t1218_007_msiexec_sysmon.log record 8",
        "MSIExec rarely talks to the internet",
    ] {
        assert!(detail.contains(needle), "missing {needle:?} in:\n{detail}");
    }
    let connections = strings(&seen["connections"]);
    assert!(connections.iter().any(|c| c[6] == "github.com" && c[5] == "443" && c[2] == "5312"), "{connections:?}");
    assert!(connections.iter().any(|c| c[6] == "cdn.update-check.example" && c[5] == "80" && c[2] == "6044"), "{connections:?}");

    // A filter by host hides the other hosts' rows; a search narrows further.
    assert!(rows.iter().any(|r| r[3] != HOST), "the window has another host's hit to hide");
    let filtered = strings(&seen["filtered_rows"]);
    assert!(!filtered.is_empty() && filtered.iter().all(|r| r[3] == HOST), "{filtered:?}");
    assert_eq!(filtered.len(), rows.iter().filter(|r| r[3] == HOST).count());
    assert_eq!(seen["filtered_shown"], format!("{} of 20 listed hits", filtered.len()));
    assert!(seen["hash"].as_str().unwrap().contains("host=ws-eng-07.corp.acme.example"), "{}", seen["hash"]);
    let searched = strings(&seen["searched_rows"]);
    assert!(!searched.is_empty() && searched.len() < filtered.len(), "{searched:?}");
    assert!(searched.iter().all(|r| r[6].contains("T1218.007_JScript")), "{searched:?}");

    // The screenshot: the timeline is drawn, with size, risk cells (red) and hit marks (dark).
    let t = &seen["timeline"];
    assert!(t["width"].as_f64().unwrap() > 500.0 && t["height"].as_f64().unwrap() > 40.0, "{t}");
    assert!(t["risk_cells"].as_u64().unwrap() >= 1 && t["mark_paths"].as_u64().unwrap() >= 1, "{t}");
    assert!(t["red_pixels"].as_u64().unwrap() > 100, "no risk drawn: {t}");
    assert!(t["dark_pixels"].as_u64().unwrap() > 10, "no hit marks drawn: {t}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
}

#[test]
fn report_windows_caps_and_errors() {
    let lake = lake_with_runs();
    let dir = TempDir::new().unwrap();
    let page = dir.path().join("capped.html");
    // Caps: the counts stay those of every hit, and the page says what it left out.
    let out = cimlake(
        lake.path(),
        &["report", "--earliest", "2026-11-03T00:00:00Z", "--latest", "2026-11-04T00:00:00Z", "--max-hits", "3", "--max-trees", "1", "-o", page.to_str().unwrap()],
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    // Every detection's results are in the lake, whether or not the catalog has it now.
    assert!(stdout.contains("20 hits (3 listed, 1 with a process tree)"), "{stdout}");
    assert!(stderr.contains("20 hits in the window; the first 3 by time are listed") && stderr.contains("shown for 1 of the 3 listed hits"), "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("the first 3 by time are listed"), "the page states the cap");
    // --detection: only that detection's hits.
    let out = cimlake_ok(
        lake.path(),
        &["report", "--sql-dir", "data/sigma", "--detection", "sigma", "--earliest", "2026-11-03T00:00:00Z", "--latest", "2026-11-04T00:00:00Z", "-o", page.to_str().unwrap()],
    );
    assert!(out.contains("wrote") && out.contains("16 hits"), "{out}");
    // Default window: the day before the latest event (2026-11-05 14:45), where no run wrote
    // results: said, with the command that writes them.
    let out = cimlake(lake.path(), &["report", "-o", page.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 hits (0 listed, 0 with a process tree), 0 incidents, window [2026-11-04T14:45:13.660001Z, 2026-11-05T14:45:13.660001Z)"));
    assert!(stderr.contains("No scheduled run wrote results in this window") && stderr.contains("cimlake schedule --backfill 2026-11-04T14:45:13Z 2026-11-05T14:45:13Z"), "{stderr}");
    // Errors: an empty lake, a reversed window, an unknown detection, a directory that is not there.
    let empty = TempDir::new().unwrap();
    for (lake, args, says) in [
        (empty.path(), vec!["report"], "the lake has no events"),
        (lake.path(), vec!["report", "--earliest", "2026-11-04T00:00:00Z", "--latest", "2026-11-03T00:00:00Z"], "must be before --latest"),
        (lake.path(), vec!["report", "--detection", "no_such_detection"], "no_such_detection"),
        (lake.path(), vec!["report", "-o", "/nonexistent/dir/r.html"], "/nonexistent/dir"),
    ] {
        let out = cimlake(lake, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_scheduler_writes_a_report_per_window() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", "data/logs/sysmon"]);
    let dir = TempDir::new().unwrap();
    let reports = dir.path().join("reports");
    let out = cimlake_ok(
        lake.path(),
        &["schedule", "--backfill", "2026-11-03T14:00:00Z", "2026-11-03T16:00:00Z", "--report-dir", reports.to_str().unwrap()],
    );
    let early = reports.join("report-20261103T135000Z.html");
    let late = reports.join("report-20261103T145000Z.html");
    assert!(out.contains(&format!("report {}: 0 hits, 0 incidents, window [2026-11-03T12:50:00Z, 2026-11-03T13:50:00Z)", early.display())), "{out}");
    assert!(out.contains(&format!("report {}: 4 hits, 0 incidents, window [2026-11-03T13:50:00Z, 2026-11-03T14:50:00Z)", late.display())), "{out}");
    let mut names: Vec<String> = std::fs::read_dir(&reports).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["latest.html", "report-20261103T135000Z.html", "report-20261103T145000Z.html"], "no temporary file left");
    let (latest, late) = (std::fs::read_to_string(reports.join("latest.html")).unwrap(), std::fs::read_to_string(&late).unwrap());
    assert_eq!(latest, late, "latest.html is the newest window's report");
    assert!(late.contains("\"total_hits\":4") && late.contains("T1218.007_JScript.msi"), "the window's hits are in its page");
    assert!(std::fs::read_to_string(&early).unwrap().contains("\"total_hits\":0"));
    // A report directory that cannot be made fails the tick; its runs are published all the same.
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let fresh = TempDir::new().unwrap();
    cimlake_ok(fresh.path(), &["ingest", "data/logs/sysmon"]);
    let out = cimlake(fresh.path(), &["schedule", "--backfill", "2026-11-03T15:00:00Z", "2026-11-03T16:00:00Z", "--report-dir", blocked.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: writing the reports: --report-dir"), "{}", String::from_utf8_lossy(&out.stderr));
    let count = cimlake_ok(fresh.path(), &["query", "SELECT count(*) AS n FROM detections.results", "--format", "csv"]);
    assert_eq!(count.trim(), "n\n4");
}

#[test]
fn a_hit_found_by_the_look_back_is_in_its_runs_window() {
    // msiexec.exe starts at 14:20 and connects at 15:05: the run of [14:50, 15:50) finds it by the
    // process look-back, and its result's time is the process's, 14:20, before that window.
    let sample = std::fs::read_to_string(repo().join("data/logs/sysmon/t1218_007_msiexec_sysmon.log")).unwrap();
    let lines: Vec<&str> = sample.lines().collect();
    let (process, flow) = (lines[7], lines[8]);
    assert!(process.contains("<EventID>1</EventID>") && process.contains("<Data Name='ProcessId'>5312</Data>"));
    assert!(flow.contains("<EventID>3</EventID>") && flow.contains("2026-11-03T14:20:05.8803391Z"));
    let flow = flow.replace("2026-11-03T14:20:05.8803391Z", "2026-11-03T15:05:05.8803391Z").replace("2026-11-03 14:20:05.880", "2026-11-03 15:05:05.880");
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("late-connection.log");
    std::fs::write(&log, format!("{process}\n{flow}\n")).unwrap();
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", log.to_str().unwrap()]);
    let reports = dir.path().join("reports");
    let out = cimlake_ok(lake.path(), &["schedule", "--backfill", "2026-11-03T16:00:00Z", "2026-11-03T17:00:00Z", "--report-dir", reports.to_str().unwrap()]);
    assert!(out.contains("[2026-11-03T14:50:00Z, 2026-11-03T15:50:00Z) backfill: 1 results"), "{out}");
    assert!(out.contains("report-20261103T155000Z.html: 1 hits"), "the run's window report has its hit: {out}");
    let page = std::fs::read_to_string(reports.join("report-20261103T155000Z.html")).unwrap();
    assert!(page.contains("2026-11-03T14:20:05.301770Z") && page.contains("\"total_hits\":1"));
    // By event time, the hour of 14:20 has it too; an hour with neither has nothing.
    for (from, to, hits) in [("2026-11-03T14:00:00Z", "2026-11-03T14:30:00Z", 1), ("2026-11-03T16:00:00Z", "2026-11-03T17:00:00Z", 0)] {
        let out = cimlake_ok(lake.path(), &["report", "--earliest", from, "--latest", to, "-o", dir.path().join("r.html").to_str().unwrap()]);
        assert!(out.contains(&format!(": {hits} hits")), "{from}: {out}");
    }
}
