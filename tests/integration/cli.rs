//! Every subcommand, end to end through the binary.

use std::path::Path;

use tempfile::TempDir;

use crate::common::*;

const DETECTION: &str = "windows_http_network_communication_from_msiexec";
const ESCU_COLUMNS: &str = "_time,user,dest,parent_process_name,process_name,process_path,process,process_id,dest_port,dest_ip";

fn count_rows(lake: &std::path::Path) -> (String, String) {
    let p = query_csv(lake, "SELECT count(*) AS n FROM endpoint.processes", &[]);
    let t = query_csv(lake, "SELECT count(*) AS n FROM network_traffic.all_traffic", &[]);
    (p[1].clone(), t[1].clone())
}

#[test]
fn run_ingests_the_samples_and_prints_the_detections() {
    let lake = TempDir::new().unwrap();
    let out = cimlake_ok(lake.path(), &["run", "data/logs"]);
    for line in [
        "ingested data/logs/sysmon/t1218_007_msiexec_sysmon.log (XmlWinEventLog): 22 records, 11 processes, 9 flows, 2 skipped, 0 bad",
        "ingested data/logs/sysmon/sysmon_corrupt_chunk9.evtx (evtx): 366 records, 227 processes, 2 flows, 129 skipped, 8 bad",
        "ingested data/logs/nvm/t1218_007_msiexec_nvm_kv.log (cisco:nvm:flowdata): 11 records, 5 processes, 6 flows, 5 skipped, 0 bad",
        "ingested data/logs/nvm/t1218_007_msiexec_nvm.json (cisco:nvm:flowdata:v2): 11 records, 5 processes, 6 flows, 5 skipped, 0 bad",
        "ingested data/logs/json/covenant_installutil.zip (zip: WinEventLog:json): 1730 records, 7 processes, 3 flows, 1720 skipped, 0 bad",
        "ingested data/logs/json/t1218_007_msiexec_winlogbeat8.json (WinEventLog:json): 21 records, 11 processes, 9 flows, 1 skipped, 0 bad",
        "ingested data/logs/json/evtx_dump_whoami_and_a_connection.json (evtx:json): 2 records, 1 processes, 1 flows, 0 skipped, 0 bad",
        "12 inputs: 12 ingested, 0 already in the lake, 0 failed",
        "ESCU - Windows HTTP Network Communication From MSIExec - Rule — cimlake mode — 15 results",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    for needle in ["objects.githubusercontent.com", "updater.exe", "MsiExec.exe -Embedding", "download.vendor-tools.example", "lt-sales-14"] {
        assert!(out.contains(needle), "missing {needle} in:\n{out}");
    }
    assert!(!out.contains("OneDrive"), "pid reuse must not match in cimlake mode");
    // Again: nothing new, same results.
    let again = cimlake_ok(lake.path(), &["run", "data/logs"]);
    assert!(again.contains("12 inputs: 0 ingested, 12 already in the lake, 0 failed"), "{again}");
    assert!(again.contains("cimlake mode — 15 results"), "{again}");
}

#[test]
fn ingesting_the_same_input_twice_adds_nothing() {
    let lake = TempDir::new().unwrap();
    let file = sample_dir().join("t1218_007_msiexec_sysmon.log");
    cimlake_ok(lake.path(), &["ingest", file.to_str().unwrap()]);
    let before = count_rows(lake.path());
    assert_eq!(before, ("11".to_string(), "9".to_string()));
    let again = cimlake_ok(lake.path(), &["ingest", file.to_str().unwrap()]);
    assert!(again.contains("already in the lake (commit 1"), "{again}");
    assert!(again.contains("0 ingested, 1 already in the lake"), "{again}");
    // Same bytes under another name are the same input.
    let renamed = TempDir::new().unwrap();
    let copy = renamed.path().join("copy.xml");
    std::fs::copy(&file, &copy).unwrap();
    let third = cimlake_ok(lake.path(), &["ingest", copy.to_str().unwrap()]);
    assert!(third.contains("already in the lake"), "{third}");
    assert_eq!(count_rows(lake.path()), before);
}

#[test]
fn garbage_lines_are_reported_with_file_and_line_and_good_events_kept() {
    let dir = TempDir::new().unwrap();
    let good = std::fs::read_to_string(sample_dir().join("security_content_example_events.log")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(1, "### rotated at 2026-11-03 00:00 ###");
    let path = dir.path().join("mixed.log");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let lake = TempDir::new().unwrap();
    let out = cimlake_ok(lake.path(), &["ingest", path.to_str().unwrap()]);
    assert!(out.contains("1 processes, 1 flows, 0 skipped, 1 bad"), "{out}");
    assert!(out.contains(&format!("{}:2: not an XML event", path.display())), "{out}");
    assert_eq!(count_rows(lake.path()), ("1".to_string(), "1".to_string()));
}

#[test]
fn explain_shows_hash_joins_on_the_mode_keys() {
    let lake = sample_lake();
    let cim = cimlake_ok(lake, &["detect", "--explain"]);
    let joins: Vec<&str> = cim.lines().filter(|l| l.contains("HashJoinExec")).collect();
    assert_eq!(joins.len(), 3, "{cim}");
    // The planner picks the build side, so keys may print as (dvc, dest) or (dest, dvc).
    let keyed = |j: &&str, id: &str| j.contains("dest@") && j.contains("dvc@") && j.contains(&format!("({id}@"));
    // One join on the endpoint and process id, checking the GUID in its filter …
    assert!(joins.iter().any(|j| keyed(j, "process_id") && j.contains("filter=(process_guid@")), "{cim}");
    // … and two on the GUID, for a side without a process id.
    assert_eq!(joins.iter().filter(|j| keyed(j, "process_guid") && j.contains("(vendor_product@")).count(), 2, "{cim}");
    let splunk = cimlake_ok(lake, &["detect", "--explain", "--mode", "splunk"]);
    let joins: Vec<&str> = splunk.lines().filter(|l| l.contains("HashJoinExec")).collect();
    assert_eq!(joins.len(), 1, "{splunk}");
    assert!(joins[0].contains("on=[(process_id@"), "{splunk}");
    assert!(!joins[0].contains("dvc"), "{splunk}");
}

#[test]
fn csv_and_json_name_columns_exactly_as_the_sql_does() {
    let lake = sample_lake();
    let csv = cimlake_ok(lake, &["detect", "--format", "csv"]);
    let header = csv.lines().next().unwrap();
    assert_eq!(
        header,
        format!("{ESCU_COLUMNS},dest_hostname,process_guid,parent_process_id,original_file_name,count,firstTime,lastTime,source,source_record")
    );
    assert_eq!(csv.lines().count(), 6, "{csv}");
    let splunk = cimlake_ok(lake, &["detect", "--format", "csv", "--mode", "splunk"]);
    assert_eq!(splunk.lines().next().unwrap(), ESCU_COLUMNS);
    // Splunk mode: the 4688 event of msiexec.exe is a row of its own, as in Splunk.
    assert_eq!(splunk.lines().count(), 8, "{splunk}");

    let json = cimlake_ok(lake, &["detect", "--format", "json"]);
    let rows: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 5);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert!(keys.iter().any(|k| *k == "firstTime") && keys.iter().any(|k| *k == "_time"), "{keys:?}");
    let github: Vec<_> = rows.iter().filter(|r| r["dest_ip"] == "185.199.108.133").collect();
    assert_eq!(github.len(), 1);
    assert_eq!(github[0]["count"], 2);
    assert_eq!(github[0]["dest"], "ws-eng-07.corp.acme.example");
}

#[test]
fn parquet_output_is_a_readable_file() {
    let out_dir = TempDir::new().unwrap();
    let path = out_dir.path().join("results.parquet");
    cimlake_ok(sample_lake(), &["detect", "--format", "parquet", "-o", path.to_str().unwrap()]);
    let file = std::fs::File::open(&path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 5);
    assert_eq!(reader.schema().field(0).name(), "_time");
    let err = cimlake(sample_lake(), &["detect", "--format", "parquet"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("-o FILE"));
}

#[test]
fn window_and_lookback() {
    let lake = sample_lake();
    let window = ["detect", "--format", "csv", "--earliest", "2026-11-03T09:00:00Z", "--latest", "2026-11-03T10:00:00Z"];
    // The install started at 08:59:41 and connected at 09:00:12: the look-back finds it.
    let cim = cimlake_ok(lake, &window);
    assert_eq!(cim.lines().count(), 2, "{cim}");
    assert!(cim.contains(",2604,443,198.51.100.23,"), "{cim}");
    let mut no_lookback = window.to_vec();
    no_lookback.extend(["--lookback", "0"]);
    assert_eq!(cimlake_ok(lake, &no_lookback).lines().count(), 1);
    // Splunk searches both sides over the window only.
    let mut splunk = window.to_vec();
    splunk.extend(["--mode", "splunk"]);
    assert_eq!(cimlake_ok(lake, &splunk).lines().count(), 1);
    // Latest is exclusive.
    let cut = cimlake_ok(lake, &["detect", "--format", "csv", "--earliest", "2026-11-03T09:00:00Z", "--latest", "2026-11-03T09:00:12.091773Z"]);
    assert_eq!(cut.lines().count(), 1, "{cut}");
    // Relative times parse (the sample is older than the window, so no rows).
    let rel = cimlake_ok(lake, &["detect", "--format", "csv", "--earliest", "-70m@m", "--latest", "-10m@m"]);
    assert_eq!(rel.lines().count(), 1);
    let bad = cimlake(lake, &["detect", "--earliest", "yesterday"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--earliest: bad time \"yesterday\""));
}

#[test]
fn an_edited_filter_macro_removes_rows() {
    let sql = sql_copy();
    let filter = sql.path().join(format!("macros/{DETECTION}_filter.sql"));
    // In LIKE, `\` escapes: a Windows path separator is written `\\`.
    std::fs::write(&filter, r"-- known good updater
process_path NOT LIKE 'C:\\Users\\Public\\%'
").unwrap();
    let lake = sample_lake();
    let base = cimlake_ok(lake, &["detect", "--format", "csv"]);
    let edited = cimlake_ok(lake, &["detect", "--format", "csv", "--sql-dir", sql.path().to_str().unwrap()]);
    assert_eq!(base.lines().count(), 6);
    assert_eq!(edited.lines().count(), 5, "{edited}");
    assert!(!edited.contains("updater.exe"));
    // The same through --macro, in Splunk mode.
    let m = format!("--macro={DETECTION}_filter=dest <> '45.77.65.211'");
    let splunk = cimlake_ok(lake, &["detect", "--format", "csv", "--mode", "splunk", &m]);
    assert_eq!(splunk.lines().count(), 7, "{splunk}");
    let unknown = cimlake(lake, &["detect", "--macro", "nope=true"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no macro named \"nope\""));
}

#[test]
fn query_reads_lake_tables_and_detection_views() {
    let lake = sample_lake();
    let rows = query_csv(lake, "SELECT sourcetype, count(*) AS n FROM endpoint.processes GROUP BY 1 ORDER BY 1", &[]);
    assert_eq!(rows, vec!["sourcetype,n", "XmlWinEventLog,52", "evtx,227"]);
    let rows = query_csv(lake, &format!("SELECT count(*) AS n FROM detect_splunk.{DETECTION}"), &[]);
    assert_eq!(rows, vec!["n", "7"]);
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("q.sql");
    std::fs::write(&f, "SELECT max(dest_port) AS p FROM network_traffic.all_traffic").unwrap();
    assert_eq!(cimlake_ok(lake, &["query", "-f", f.to_str().unwrap(), "--format", "csv"]), "p\n8080\n");
    let err = cimlake(lake, &["query", "SELECT nope FROM endpoint.processes"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("nope"));
}

#[test]
fn the_lake_is_hour_partitioned_parquet() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", sample_dir().join("t1218_007_msiexec_sysmon.log").to_str().unwrap()]);
    let mut hours: Vec<String> = std::fs::read_dir(lake.path().join("endpoint/processes/date=2026-11-03"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    hours.sort();
    assert_eq!(hours, vec!["hour=08", "hour=13", "hour=14"]);
    let files: Vec<_> = std::fs::read_dir(lake.path().join("network_traffic/all_traffic/date=2026-11-03/hour=14"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let meta = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    use parquet::file::reader::FileReader;
    let col = meta.metadata().row_group(0).column(0);
    // Parquet records the codec, not its level.
    assert!(col.compression().to_string().starts_with("ZSTD"), "{}", col.compression());
    assert!(!lake.path().join("_cimlake/staging").read_dir().map(|mut d| d.next().is_some()).unwrap_or(false));
}

#[test]
fn a_window_reads_only_the_files_of_its_hours() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", sample_dir().join("t1218_007_msiexec_sysmon.log").to_str().unwrap()]);
    let plan = cimlake_ok(
        lake.path(),
        &["detect", "--explain", "--earliest", "2026-11-03T14:00:00Z", "--latest", "2026-11-03T15:00:00Z", "--lookback", "1h"],
    );
    let scans: Vec<&str> = plan.lines().filter(|l| l.contains("DataSourceExec")).collect();
    assert!(!scans.is_empty(), "{plan}");
    for scan in &scans {
        if scan.contains("all_traffic") {
            assert!(scan.contains("hour=14") && !scan.contains("hour=13") && !scan.contains("hour=09"), "{scan}");
        } else {
            // Processes: the window plus one hour of look-back.
            assert!(scan.contains("hour=13") && scan.contains("hour=14") && !scan.contains("hour=08"), "{scan}");
        }
    }
}

#[test]
fn a_failed_input_leaves_nothing_in_the_lake() {
    let dir = TempDir::new().unwrap();
    let good = std::fs::read_to_string(sample_dir().join("t1218_007_msiexec_sysmon.log")).unwrap();
    let path = dir.path().join("bad-at-the-end.log");
    std::fs::write(&path, format!("{good}<Event xmlns='x'><System>\n")).unwrap();
    let lake = TempDir::new().unwrap();
    let out = cimlake(lake.path(), &["ingest", "--strict", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:", path.display())) && stderr.contains("--strict"), "{stderr}");
    let parquet_files = walk(lake.path()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count();
    assert_eq!(parquet_files, 0);
    assert_eq!(count_rows(lake.path()), ("0".to_string(), "0".to_string()));
    // Without --strict the same file is ingested, with the bad record reported.
    let out = cimlake_ok(lake.path(), &["ingest", path.to_str().unwrap()]);
    assert!(out.contains("11 processes, 9 flows, 2 skipped, 1 bad"), "{out}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Every file under a lake with its size: equal snapshots mean an unchanged lake.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut files: Vec<_> = walk(dir).into_iter().map(|p| {
        let len = std::fs::metadata(&p).unwrap().len();
        (p, len)
    }).collect();
    files.sort();
    files
}

#[test]
fn unknown_empty_and_truncated_inputs_leave_the_lake_unchanged() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", sample_dir().join("security_content_example_events.log").to_str().unwrap()]);
    let before = snapshot(lake.path());
    let dir = TempDir::new().unwrap();
    let unknown = dir.path().join("capture.log");
    std::fs::write(&unknown, b"\x00\x01binary\x02\x03 not a log").unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.path().join("sysmon.log.gz");
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&std::fs::read(sample_dir().join("t1218_007_msiexec_sysmon.log")).unwrap()).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(&truncated, &gz[..gz.len() * 2 / 3]).unwrap();
    for (file, says) in [
        (&unknown, "not a known input shape"),
        (&empty, "empty file"),
        (&truncated, "gzip stream ends early or is corrupt"),
    ] {
        let out = cimlake(lake.path(), &["ingest", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", file.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&file.display().to_string()) && stderr.contains(says), "{stderr}");
        assert_eq!(snapshot(lake.path()), before, "{} changed the lake", file.display());
        // Into a new lake, a failed input leaves nothing at all.
        let fresh = TempDir::new().unwrap();
        assert_eq!(cimlake(fresh.path(), &["ingest", file.to_str().unwrap()]).status.code(), Some(1));
        assert_eq!(std::fs::read_dir(fresh.path()).unwrap().count(), 0, "{}", file.display());
    }
    let missing = cimlake(lake.path(), &["ingest", "no/such/file.log"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/file.log: no such file"));
    // A good input beside a bad one is still ingested.
    let out = cimlake(lake.path(), &["ingest", unknown.to_str().unwrap(), sample_dir().join("t1218_007_msiexec_sysmon.log").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 inputs: 1 ingested, 0 already in the lake, 1 failed"));
}

#[test]
fn files_a_walk_meets_that_are_not_logs_are_skipped_and_named_ones_fail() {
    // `run data`: the folder beside the logs holds a README and a Sigma rule.
    let lake = TempDir::new().unwrap();
    let out = cimlake(lake.path(), &["run", "data"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("skipped data/README.md: not a log: text starting \"# Sample data"), "{stdout}");
    // Every file of data/ outside data/logs is documentation, a rule, a table or an image.
    let others = walk(&repo().join("data")).iter().filter(|p| !p.starts_with(repo().join("data/logs"))).count();
    assert!(others >= 2, "{others}");
    assert_eq!(stdout.matches(": not a log: ").count(), others, "{stdout}");
    assert!(stdout.contains(&format!("12 inputs: 12 ingested, 0 already in the lake, 0 failed, {others} not a log skipped")), "{stdout}");
    assert!(stdout.contains("cimlake mode — 15 results"), "{stdout}");
    // The same in a landing directory, with a checksum list and an image beside a log; a glob
    // is a walk too.
    let dir = TempDir::new().unwrap();
    std::fs::copy(sample_dir().join("security_content_example_events.log"), dir.path().join("events.log")).unwrap();
    std::fs::write(dir.path().join("SHA256SUMS"), "0123abcd  events.log\n").unwrap();
    std::fs::write(dir.path().join("shot.png"), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").unwrap();
    let glob = format!("{}/*", dir.path().display());
    for arg in [dir.path().to_str().unwrap(), glob.as_str()] {
        let fresh = TempDir::new().unwrap();
        let out = cimlake(fresh.path(), &["ingest", arg]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{arg}: {stdout}");
        assert!(stdout.contains("SHA256SUMS: not a log: text") && stdout.contains("shot.png: not a log: binary data"), "{stdout}");
        assert!(stdout.contains("1 input: 1 ingested, 0 already in the lake, 0 failed, 2 not a log skipped"), "{stdout}");
    }
    // Named on the command line, the same file is still an error.
    let out = cimlake(lake.path(), &["ingest", "data/README.md"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("data/README.md: not a known input shape"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_shape_can_be_forced() {
    let lake = TempDir::new().unwrap();
    let nvm = repo().join("data/logs/nvm/t1218_007_msiexec_nvm_kv.log");
    // Read as XML, an NVM file is all bad records, reported by line.
    let out = cimlake_ok(lake.path(), &["ingest", "--sourcetype", "xmlwineventlog", nvm.to_str().unwrap()]);
    assert!(out.contains("(XmlWinEventLog): 11 records, 0 processes, 0 flows, 0 skipped, 11 bad"), "{out}");
    assert!(out.contains(&format!("{}:1: not an XML event", nvm.display())), "{out}");
    let lake = TempDir::new().unwrap();
    let out = cimlake_ok(lake.path(), &["ingest", "--sourcetype", "nvm-kv", nvm.to_str().unwrap()]);
    assert!(out.contains("(cisco:nvm:flowdata): 11 records, 5 processes, 6 flows"), "{out}");
}

#[test]
fn nvm_split_across_files_counts_each_process_and_flow_once() {
    let kv = std::fs::read_to_string(repo().join("data/logs/nvm/t1218_007_msiexec_nvm_kv.log")).unwrap();
    let lines: Vec<&str> = kv.lines().collect();
    assert_eq!(lines.len(), 11);
    // File one: host A's endpoint record, DNS, the download's start stage, host B's endpoint
    // record. File two: the endpoint records again and everything else (the download's periodic
    // and end stages among it).
    let dir = TempDir::new().unwrap();
    let one = [lines[0], lines[1], lines[2], lines[10]].join("\n");
    let mut two = vec![lines[0], lines[10]];
    two.extend(&lines[3..10]);
    std::fs::write(dir.path().join("one.log"), one).unwrap();
    std::fs::write(dir.path().join("two.log"), two.join("\n")).unwrap();
    let split = TempDir::new().unwrap();
    cimlake_ok(split.path(), &["ingest", dir.path().to_str().unwrap()]);
    let whole = TempDir::new().unwrap();
    cimlake_ok(whole.path(), &["ingest", repo().join("data/logs/nvm/t1218_007_msiexec_nvm_kv.log").to_str().unwrap()]);
    let q = "SELECT dest, process_id, dest_ip, dest_port, count FROM detect.windows_http_network_communication_from_msiexec ORDER BY 1, 2, 3";
    let want = query_csv(whole.path(), q, &[]);
    assert_eq!(want.len(), 3, "{want:?}");
    assert_eq!(query_csv(split.path(), q, &[]), want);
}

/// A detection directory holding one detection whose SQL is `sql` in both modes.
fn detection_dir(name: &str, sql: &str) -> TempDir {
    let dir = TempDir::new().unwrap();
    let d = dir.path().join("detections").join(name);
    std::fs::create_dir_all(&d).unwrap();
    let toml = std::fs::read_to_string(repo().join(format!("sql/detections/{DETECTION}/detection.toml"))).unwrap();
    let toml = toml.replace(&format!("filter_macro = \"{DETECTION}_filter\""), &format!("filter_macro = \"{name}_filter\""));
    std::fs::write(d.join("detection.toml"), toml).unwrap();
    std::fs::write(d.join("cimlake.sql"), sql).unwrap();
    std::fs::write(d.join("splunk.sql"), sql).unwrap();
    std::fs::create_dir_all(dir.path().join("macros")).unwrap();
    std::fs::write(dir.path().join(format!("macros/{name}_filter.sql")), "true\n").unwrap();
    dir
}

#[test]
fn detection_sql_is_read_only_and_only_named_directories_load() {
    let lake = sample_lake();
    // A detection that reads a file outside the lake by making it a table: refused when it is
    // loaded, naming the file, by every command that loads detections; nothing is created.
    let evil = detection_dir("leak", "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'");
    let dir = evil.path().to_str().unwrap();
    let file = evil.path().join("detections/leak/cimlake.sql");
    for args in [
        vec!["detect", "--sql-dir", dir],
        vec!["query", "SELECT count(*) FROM leak", "--sql-dir", dir],
        vec!["serve", "--listen", "127.0.0.1:0", "--no-auth", "--sql-dir", dir],
    ] {
        let out = output_within(&mut command(lake, &args), std::time::Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{}: only queries may run here", file.display())), "{args:?}: {stderr}");
    }
    for sql in ["COPY (SELECT 1) TO '/tmp/cimlake-copied.csv'", "SET datafusion.execution.batch_size = 1", "INSERT INTO endpoint.processes SELECT * FROM endpoint.processes"] {
        let d = detection_dir("write", sql);
        let out = cimlake(lake, &["detect", "--sql-dir", d.path().to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("only queries may run here"), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!Path::new("/tmp/cimlake-copied.csv").exists());
    // Its settings may shape the plan (DataFusion's optimizer options), nothing else: an execution
    // setting, or an option DataFusion does not have, is refused when loaded, naming the file.
    for (setting, says) in [
        ("\"datafusion.execution.target_partitions\" = 100000", "only datafusion.optimizer.* may be set"),
        ("\"datafusion.optimizer.no_such_option\" = true", "datafusion.optimizer.no_such_option"),
    ] {
        let d = detection_dir("tuned", "SELECT dest FROM endpoint.processes");
        let toml = d.path().join("detections/tuned/detection.toml");
        let text = std::fs::read_to_string(&toml).unwrap();
        std::fs::write(&toml, text.replace("[settings]\n", &format!("[settings]\n{setting}\n"))).unwrap();
        let out = cimlake(lake, &["detect", "--check", "--sql-dir", d.path().to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{setting}: {stderr}");
        assert!(stderr.contains(&format!("{}", toml.display())) && stderr.contains(says), "{setting}: {stderr}");
    }

    // A `sql/` in the working directory is not read unless named.
    let cwd = TempDir::new().unwrap();
    let extra = detection_dir("extra", "SELECT dest, process_id FROM endpoint.processes WHERE process_name = 'cmd.exe'");
    copy_dir(extra.path(), &cwd.path().join("sql"));
    let views = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'detect' ORDER BY 1";
    let run_in = |dir: &Path, env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = command(lake, args);
        cmd.current_dir(dir).envs(env.iter().copied());
        cmd.output().unwrap()
    };
    let out = run_in(cwd.path(), &[], &["query", views, "--format", "csv"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("table_name\n{DETECTION}\n"));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    // Named, by --sql-dir or CIMLAKE_SQL_PATH, it is read after the built-in detections, and
    // where they came from is said.
    let sql_dir = cwd.path().join("sql");
    for (env, args) in [
        (vec![], vec!["query", views, "--format", "csv", "--sql-dir", "sql"]),
        (vec![("CIMLAKE_SQL_PATH", sql_dir.to_str().unwrap())], vec!["query", views, "--format", "csv"]),
    ] {
        let out = run_in(cwd.path(), &env, &args);
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("table_name\nextra\n{DETECTION}\n"), "{env:?} {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("detections: built-in (1 detection, 2 macros), ") && stderr.contains("sql (1 detection, 1 macro)"), "{stderr}");
    }
    // A directory of macros alone replaces a built-in filter.
    let filters = TempDir::new().unwrap();
    std::fs::create_dir_all(filters.path().join("macros")).unwrap();
    std::fs::write(filters.path().join(format!("macros/{DETECTION}_filter.sql")), "process_name <> 'updater.exe'\n").unwrap();
    let base = cimlake_ok(lake, &["detect", "--format", "csv"]);
    let filtered = cimlake_ok(lake, &["detect", "--format", "csv", "--sql-dir", filters.path().to_str().unwrap()]);
    assert!(base.contains("updater.exe") && !filtered.contains("updater.exe"), "{filtered}");
    assert_eq!(filtered.lines().count(), base.lines().count() - 1);
    // A directory that is not one (no SQL detection, no Sigma rule) is an error naming it.
    let out = cimlake(lake, &["detect", "--sql-dir", "data/logs"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("data/logs: not a detection directory"), "{}", String::from_utf8_lossy(&out.stderr));
}
