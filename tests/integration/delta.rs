//! The lake's tables as Delta tables: an outside Delta reader (the `deltalake` package from PyPI)
//! reads the rows `cimlake query` reads; a lake without Delta logs is upgraded; a killed ingest's
//! commits reach the Delta logs on the next run; `lake history` lists the versions.

use std::path::Path;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::common::*;
use crate::serve::python;

/// What the outside reader found in one table.
struct Read {
    count: u64,
    partition_mismatches: u64,
    rows: Vec<Vec<String>>,
}

/// Reads `table` (its lake directory) with `tests/delta/read.py`, the columns `columns`.
fn outside_read(lake: &Path, table_dir: &str, columns: &[&str]) -> Read {
    let out = Command::new(python())
        .arg(repo().join("tests/delta/read.py"))
        .arg(lake.join(table_dir))
        .args(columns)
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    assert!(out.status.success(), "read.py {table_dir}: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cell = |c: &serde_json::Value| match c {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rows: Vec<Vec<String>> = v["rows"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(cell).collect()).collect();
    rows.sort();
    Read { count: v["count"].as_u64().unwrap(), partition_mismatches: v["partition_mismatches"].as_u64().unwrap(), rows }
}

/// The same columns through `cimlake query` (timestamps as microseconds), sorted.
fn query_rows(lake: &Path, table: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let select: Vec<String> = columns.iter().map(|c| if *c == "_time" { "arrow_cast(_time, 'Int64') AS _time".to_string() } else { c.to_string() }).collect();
    let csv_text = cimlake_ok(lake, &["query", &format!("SELECT {} FROM {table}", select.join(", ")), "--format", "csv"]);
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(csv_text.as_bytes());
    let mut rows: Vec<Vec<String>> = r.records().map(|rec| rec.unwrap().iter().map(str::to_string).collect()).collect();
    rows.sort();
    rows
}

const PROCESS_COLUMNS: [&str; 5] = ["_time", "dest", "process_guid", "process_id", "process"];
const FLOW_COLUMNS: [&str; 5] = ["_time", "src_ip", "dest_ip", "dest_port", "process_guid"];

/// Both CIM tables read the same from outside as through cimlake; returns their row counts.
pub fn assert_outside_reader_agrees(lake: &Path) -> (u64, u64) {
    let mut counts = Vec::new();
    for (dir, table, columns) in [
        ("endpoint/processes", "endpoint.processes", &PROCESS_COLUMNS),
        ("network_traffic/all_traffic", "network_traffic.all_traffic", &FLOW_COLUMNS),
    ] {
        let outside = outside_read(lake, dir, columns);
        let ours = query_rows(lake, table, columns);
        assert_eq!(outside.partition_mismatches, 0, "{table}: date/hour partition values that disagree with _time");
        assert_eq!(outside.count as usize, ours.len(), "{table}: row count");
        assert_eq!(outside.rows, ours, "{table}: rows");
        counts.push(outside.count);
    }
    (counts[0], counts[1])
}

/// `lake history TABLE` as (version, lake commits, files), newest first.
fn history(lake: &Path, table: &str) -> Vec<(u64, String, String)> {
    let out = cimlake_ok(lake, &["lake", "history", table]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("version\tcommitted_at\toperation\tlake_commits\tfiles"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "{l}");
            (f[0].parse().unwrap(), f[3].to_string(), f[4].to_string())
        })
        .collect()
}

#[test]
fn an_outside_delta_reader_reads_the_rows_cimlake_reads() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", "data/logs/sysmon", "data/logs/nvm"]);
    let logs = TempDir::new().unwrap();
    let gen_args = ["gen", "--seed", "5", "--hosts", "6", "--processes", "400", "--hours", "30", "--positives", "3", "-o", logs.path().to_str().unwrap()];
    cimlake_ok(lake.path(), &gen_args);
    let (p, t) = assert_outside_reader_agrees(lake.path());
    assert!(p > 400 && t > 400, "{p} processes, {t} flows");

    // Each run is one Delta version per table, however many inputs it committed; the first
    // version creates the table.
    let h = history(lake.path(), "endpoint.processes");
    assert_eq!(h.iter().map(|v| v.0).collect::<Vec<_>>(), vec![2, 1, 0], "{h:?}");
    let ingested = published_records(&lake.path().join("_cimlake/commits")).len();
    assert_eq!(h[0].1, ingested.to_string(), "the gen run's one commit");
    assert_eq!(h[1].1, format!("1-{}", ingested - 1), "the ingest run's commits, in one version");
    assert_eq!(h[2].1, "", "the version that created the table names no commit");
    // Each Delta log records every input's content hash, in the Delta commit that adds its
    // files, with its lake commit as the version.
    let inputs: std::collections::BTreeMap<String, u64> = published_records(&lake.path().join("_cimlake/commits"))
        .iter()
        .map(|c| (format!("cimlake.input.{}", c["input"]["hash"].as_str().unwrap()), c["id"].as_u64().unwrap()))
        .collect();
    for table in ["endpoint/processes", "network_traffic/all_traffic", "quarantine/records"] {
        let mut recorded = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(lake.path().join(table).join("_delta_log")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let action: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(id) = action["txn"]["appId"].as_str().filter(|id| id.starts_with("cimlake.input.")) {
                    recorded.insert(id.to_string(), action["txn"]["version"].as_u64().unwrap());
                }
            }
        }
        assert_eq!(recorded, inputs, "{table}");
    }
    let e = cimlake(lake.path(), &["lake", "history", "endpoint.nothing"]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("endpoint.nothing: not a table with a Delta log"), "{}", String::from_utf8_lossy(&e.stderr));
}

#[test]
fn a_lake_without_delta_logs_is_upgraded_and_a_killed_ingest_reaches_them_on_the_next_run() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", "data/logs/sysmon"]);
    // The layout of a lake made before the tables had Delta logs: the same, without them.
    for dir in ["endpoint/processes", "network_traffic/all_traffic", "quarantine/records"] {
        let log = lake.path().join(dir).join("_delta_log");
        if log.exists() {
            std::fs::remove_dir_all(&log).unwrap();
        }
    }
    let out = cimlake_ok(lake.path(), &["lake", "upgrade"]);
    let commits = published_records(&lake.path().join("_cimlake/commits")).len();
    assert!(out.contains(&format!("endpoint.processes: Delta version 1, through lake commit {commits}")), "{out}");
    let before = assert_outside_reader_agrees(lake.path());
    // Nothing new: upgrading again adds nothing.
    let again = cimlake_ok(lake.path(), &["lake", "upgrade"]);
    assert!(again.contains(&format!("endpoint.processes: Delta version 1, through lake commit {commits} (0 files added now)")), "{again}");

    // An ingest killed right after its first commit: the commit is in the lake, not yet in the
    // Delta logs, which never hold more than the commits do.
    let mut cmd = command(lake.path(), &["ingest", "-j", "1", "data/logs/nvm"]);
    cmd.env("CIMLAKE_FAULT", "ingest-after-commit@1:kill");
    let killed = cmd.output().unwrap();
    assert!(!killed.status.success(), "the ingest was to be killed");
    let flows = query_rows(lake.path(), "network_traffic.all_traffic", &FLOW_COLUMNS).len() as u64;
    assert!(flows > before.1, "the killed run committed an input");
    assert_eq!(outside_read(lake.path(), "network_traffic/all_traffic", &FLOW_COLUMNS).count, before.1);
    // The next run catches the Delta logs up before it ingests anything.
    cimlake_ok(lake.path(), &["ingest", "data/logs/nvm"]);
    let after = assert_outside_reader_agrees(lake.path());
    assert!(after.1 > flows, "{after:?} vs {flows}");

    // Not a lake: an error naming the directory.
    let empty = TempDir::new().unwrap();
    let e = cimlake(empty.path(), &["lake", "upgrade"]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("no lake here"), "{}", String::from_utf8_lossy(&e.stderr));
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A lake made by the cimlake that kept its records as JSON files (`tests/data/legacy-lake`,
/// its README says how): refused with the command that upgrades it, then upgraded in place with
/// every row, every record and every input's "already ingested" kept, and no JSON record left.
#[test]
fn a_lake_whose_records_are_json_files_is_upgraded_with_nothing_lost() {
    let root = TempDir::new().unwrap();
    let lake = root.path().join("lake");
    copy_tree(Path::new("tests/data/legacy-lake"), &lake);
    std::fs::remove_file(lake.join("README.md")).unwrap();
    let counts = [("endpoint.processes", "44"), ("network_traffic.all_traffic", "40"), ("detections.results", "4"), ("risk.all_risk", "8"), ("cimlake.runs", "4")];
    let out = cimlake(&lake, &["query", "SELECT count(*) FROM endpoint.processes"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("_cimlake/commits: this lake keeps its records as JSON files") && stderr.contains("run `cimlake lake upgrade`"), "{stderr}");
    let out = cimlake(&lake, &["ingest", "data/logs/sysmon/t1218_007_msiexec_sysmon.log"]);
    assert_eq!(out.status.code(), Some(1), "an ingest into the old layout must not write");

    let up = cimlake_ok(&lake, &["lake", "upgrade"]);
    for moved in ["_cimlake/commits: 6 record(s) moved", "_cimlake/compactions: 1 record(s) moved", "_cimlake/runs: 4 record(s) moved"] {
        assert!(up.contains(moved), "{moved}: {up}");
    }
    for dir in ["_cimlake/commits", "_cimlake/compactions", "_cimlake/runs"] {
        let json = std::fs::read_dir(lake.join(dir)).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json")).count();
        assert_eq!(json, 0, "{dir}: JSON records left");
    }
    assert!(!lake.join("_cimlake/commit.lock").exists());
    let commits = published_records(&lake.join("_cimlake/commits"));
    assert_eq!(commits.iter().map(|c| c["id"].as_u64().unwrap()).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    assert_eq!(published_records(&lake.join("_cimlake/runs")).len(), 4);
    for (table, n) in counts {
        assert_eq!(query_csv(&lake, &format!("SELECT count(*) AS n FROM {table}"), &[])[1], n, "{table}");
    }
    // As of commit 5, before `again.log` (11 processes) and the compaction of its files.
    assert_eq!(query_csv(&lake, "SELECT count(*) AS n FROM endpoint.processes", &["--as-of", "5"])[1], "33");
    // Every input is still known as ingested; a new one is committed as commit 7.
    let again = cimlake_ok(&lake, &["ingest", "data/logs/sysmon/t1218_007_msiexec_sysmon.log", "data/logs/json/t1218_007_msiexec_winlogbeat8.json"]);
    assert!(again.contains("0 ingested, 2 already in the lake"), "{again}");
    cimlake_ok(&lake, &["ingest", "data/logs/nvm/security_content_example_flow.json"]);
    assert_eq!(published_records(&lake.join("_cimlake/commits")).last().unwrap()["id"], 7);
    assert_outside_reader_agrees(&lake);
    // Upgrading again moves nothing.
    let up = cimlake_ok(&lake, &["lake", "upgrade"]);
    assert!(!up.contains("moved"), "{up}");
}

/// The number of the last commit in the lake, and its `committed_at`.
fn last_commit(lake: &Path) -> (u64, String) {
    let commits = published_records(&lake.join("_cimlake/commits"));
    let c = commits.last().unwrap();
    (c["id"].as_u64().unwrap(), c["committed_at"].as_str().unwrap().to_string())
}

#[test]
fn queries_and_detections_read_the_lake_as_of_a_commit_or_a_time() {
    let lake = TempDir::new().unwrap();
    let count_sql = "SELECT (SELECT count(*) FROM endpoint.processes) AS p, (SELECT count(*) FROM network_traffic.all_traffic) AS t";
    cimlake_ok(lake.path(), &["ingest", "data/logs/sysmon"]);
    let (first, first_at) = last_commit(lake.path());
    let counts_then = query_csv(lake.path(), count_sql, &[]);
    let detect_args = ["detect", "--format", "csv"];
    let detected_then = cimlake_ok(lake.path(), &detect_args);
    std::thread::sleep(std::time::Duration::from_millis(20));
    cimlake_ok(lake.path(), &["ingest", "data/logs/nvm", "data/logs/json"]);
    let (last, _) = last_commit(lake.path());
    assert!(last > first);
    let counts_now = query_csv(lake.path(), count_sql, &[]);
    assert_ne!(counts_now, counts_then, "the second ingest added rows");

    let first_s = first.to_string();
    assert_eq!(query_csv(lake.path(), count_sql, &["--as-of", &first_s]), counts_then, "as of the first run's last commit");
    assert_eq!(query_csv(lake.path(), count_sql, &["--as-of", &first_at]), counts_then, "as of that commit's time");
    assert_eq!(query_csv(lake.path(), count_sql, &["--as-of", &last.to_string()]), counts_now);
    assert_eq!(query_csv(lake.path(), count_sql, &["--as-of", "2001-01-01T00:00:00Z"])[1], "0,0", "before the first commit");
    let mut args = detect_args.to_vec();
    args.extend(["--as-of", &first_s]);
    assert_eq!(cimlake_ok(lake.path(), &args), detected_then, "a detection as of the first run finds what it found then");

    let e = cimlake(lake.path(), &["query", "SELECT 1", "--as-of", &(last + 1).to_string()]);
    assert!(!e.status.success());
    let msg = String::from_utf8_lossy(&e.stderr);
    assert!(msg.contains(&format!("as of commit {}: the lake has {last} commit(s)", last + 1)), "{msg}");
    let e = cimlake(lake.path(), &["query", "SELECT 1", "--as-of", "yesterdayish"]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("--as-of \"yesterdayish\": not a commit number or a time"), "{}", String::from_utf8_lossy(&e.stderr));
}

#[test]
fn a_column_the_table_gained_is_added_to_its_delta_table() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", "data/logs/sysmon"]);
    // A Delta log made before `process_company` existed: its schema without it.
    let first = lake.path().join("endpoint/processes/_delta_log/00000000000000000000.json");
    let text = std::fs::read_to_string(&first).unwrap();
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut action: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(schema) = action["metaData"]["schemaString"].as_str() {
            let mut s: serde_json::Value = serde_json::from_str(schema).unwrap();
            s["fields"].as_array_mut().unwrap().retain(|f| f["name"] != "process_company");
            action["metaData"]["schemaString"] = serde_json::Value::String(s.to_string());
        }
        lines.push(action.to_string());
    }
    std::fs::write(&first, lines.join("\n") + "\n").unwrap();
    let columns = ["_time", "process_guid", "process_company"];
    let out = Command::new(python()).arg(repo().join("tests/delta/read.py")).arg(lake.path().join("endpoint/processes")).args(columns).output().unwrap();
    assert!(!out.status.success(), "the column was to be missing from the Delta schema");
    assert!(String::from_utf8_lossy(&out.stderr).contains("process_company"), "{}", String::from_utf8_lossy(&out.stderr));

    // The next publish adds it (a version of its own), and the reader sees what cimlake sees.
    cimlake_ok(lake.path(), &["lake", "upgrade"]);
    let h = history(lake.path(), "endpoint.processes");
    assert_eq!(h.len(), 3, "{h:?}");
    let outside = outside_read(lake.path(), "endpoint/processes", &columns);
    assert_eq!(outside.rows, query_rows(lake.path(), "endpoint.processes", &columns));
    assert!(outside.rows.iter().any(|r| !r[2].is_empty()), "no process_company values read");
    // Once added, nothing more to add.
    cimlake_ok(lake.path(), &["lake", "upgrade"]);
    assert_eq!(history(lake.path(), "endpoint.processes").len(), 3);
}

/// The rows of a table scheduled runs write, as the outside reader and `cimlake query` count
/// them, by run.
fn derived_counts(lake: &Path, dir: &str, table: &str, run_column: &str) -> (Vec<String>, Vec<String>) {
    let out = Command::new(python()).arg(repo().join("tests/delta/read.py")).arg(lake.join(dir)).arg(run_column).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "read.py {dir}: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["partition_mismatches"].is_null(), "{v}");
    let mut outside: Vec<String> = v["rows"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().to_string()).collect();
    outside.sort();
    let csv = cimlake_ok(lake, &["query", &format!("SELECT {run_column} FROM {table} ORDER BY 1"), "--format", "csv"]);
    (outside, csv.lines().skip(1).map(str::to_string).collect())
}

#[test]
fn the_tables_scheduled_runs_write_are_delta_tables_of_the_current_runs() {
    let lake = TempDir::new().unwrap();
    let out = TempDir::new().unwrap();
    let gen_args = ["gen", "--seed", "11", "--hosts", "8", "--processes", "2000", "--hours", "6", "--positives", "4", "-o", out.path().to_str().unwrap()];
    cimlake_ok(lake.path(), &gen_args);
    let backfill = ["schedule", "--once", "--now", "2026-11-02T07:00:00Z", "--backfill", "2026-11-02T00:00:00Z", "2026-11-02T06:00:00Z"];
    cimlake_ok(lake.path(), &backfill);
    let tables = [("detections/results", "detections.results", "run_id"), ("risk/all_risk", "risk.all_risk", "orig_sid"), ("risk/incidents", "risk.incidents", "run_id")];
    let first: Vec<(Vec<String>, Vec<String>)> = tables.iter().map(|(dir, table, run)| derived_counts(lake.path(), dir, table, run)).collect();
    for ((outside, ours), (_, table, _)) in first.iter().zip(tables) {
        assert_eq!(outside, ours, "{table}");
    }
    assert!(first[0].0.len() >= 4 && first[1].0.len() >= 4, "the planted positives' results and risk events: {first:?}");

    // The same windows again: the new runs replace the old ones, in cimlake's tables and in the
    // Delta logs (the old runs' files removed), so no row is there twice.
    cimlake_ok(lake.path(), &backfill);
    for ((dir, table, run), (before, _)) in tables.iter().zip(&first) {
        let (outside, ours) = derived_counts(lake.path(), dir, table, run);
        assert_eq!(outside, ours, "{table}");
        assert_eq!(outside.len(), before.len(), "{table}: the rerun's rows replace the first run's");
        assert!(outside.iter().all(|r| !before.contains(r)) || outside.is_empty(), "{table}: rows of replaced runs are still read");
    }
    let h = cimlake_ok(lake.path(), &["lake", "history", "detections.results"]);
    let mut lines = h.lines();
    assert_eq!(lines.next(), Some("version\tcommitted_at\toperation\truns\tfiles"));
    let versions: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(versions.len(), 3, "create, then one version per tick: {h}");
    let runs = published_records(&lake.path().join("_cimlake/runs")).len();
    assert_eq!(versions[0][3], format!("{}-{runs}", runs / 2 + 1), "{h}");
    // `lake upgrade` finds them up to date.
    let up = cimlake_ok(lake.path(), &["lake", "upgrade"]);
    assert!(up.contains(&format!("detections.results: Delta version 2, through run {runs} (0 files added now)")), "{up}");
    assert!(up.contains(&format!("cimlake.runs: Delta version 2, through run {runs} (0 files added now)")), "{up}");

    // cimlake.runs: every run, with its `current` flag as it is now (the first tick's runs were
    // replaced by the second's), also after vacuum removed the replaced file.
    let runs_rows = |lake: &Path| {
        let out = Command::new(python()).arg(repo().join("tests/delta/read.py")).arg(lake.join("cimlake/runs")).args(["seq", "current"]).output().unwrap();
        assert!(out.status.success(), "read.py cimlake/runs: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut rows: Vec<String> = v["rows"].as_array().unwrap().iter().map(|r| format!("{},{}", r[0], r[1])).collect();
        rows.sort_by_key(|r| r.split(',').next().unwrap().parse::<u64>().unwrap());
        rows
    };
    let ours: Vec<String> = cimlake_ok(lake.path(), &["query", "SELECT seq, current FROM cimlake.runs ORDER BY seq", "--format", "csv"]).lines().skip(1).map(str::to_string).collect();
    assert_eq!(ours.len(), runs);
    assert_eq!(ours.iter().filter(|r| r.ends_with(",true")).count(), runs / 2, "{ours:?}");
    assert_eq!(runs_rows(lake.path()), ours);
    let files = |lake: &Path| std::fs::read_dir(lake.join("cimlake/runs")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "parquet")).count();
    assert_eq!(files(lake.path()), 2);
    let vacuumed = cimlake_ok(lake.path(), &["lake", "vacuum", "--retention", "0"]);
    assert!(vacuumed.contains(&format!("removed cimlake/runs/runs-{:08}.parquet", runs / 2)), "{vacuumed}");
    assert_eq!(files(lake.path()), 1);
    assert_eq!(runs_rows(lake.path()), ours);
}
