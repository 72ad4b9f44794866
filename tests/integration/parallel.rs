//! Parallel ingest: inputs converted at once, and a large text input split across jobs, give
//! exactly the lake a one-job ingest gives.

use std::path::Path;

use tempfile::TempDir;

use crate::common::*;

/// Every row of both CIM tables, provenance included, in a fixed order.
fn all_rows(lake: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for table in ["endpoint.processes", "network_traffic.all_traffic"] {
        rows.extend(query_csv(lake, &format!("SELECT * FROM {table} ORDER BY source, source_offset, _time"), &[]));
    }
    rows
}

/// The ingest report without the commit numbers (which follow completion order).
fn report(stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = stdout
        .lines()
        .map(|l| match l.find("(commit ").or_else(|| l.find("; lake ")) {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_large_xml_file_split_across_jobs_gives_the_same_lake() {
    let out = TempDir::new().unwrap();
    let gen_lake = TempDir::new().unwrap();
    cimlake_ok(
        gen_lake.path(),
        &["gen", "--seed", "11", "--hosts", "30", "--processes", "3000", "--hours", "6", "--positives", "7", "--format", "xmlwineventlog", "-o", out.path().to_str().unwrap()],
    );
    let log = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).find(|p| !p.ends_with("expected.csv")).unwrap();
    // Damage in the middle: a garbage line and an event cut short by the next one.
    let mut bytes = std::fs::read(&log).unwrap();
    let middle = bytes.len() / 2 + bytes[bytes.len() / 2..].windows(7).position(|w| w == b"\n<Event").unwrap() + 1;
    let tail = bytes.split_off(middle);
    bytes.extend_from_slice(b"this is not an event\n<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>\n");
    bytes.extend(tail);
    let input = out.path().join("big.xml");
    std::fs::write(&input, &bytes).unwrap();
    let input = input.to_str().unwrap();

    let one = TempDir::new().unwrap();
    let said_one = cimlake_ok(one.path(), &["ingest", "-j", "1", input]);
    let split = TempDir::new().unwrap();
    let said_split = cimlake_ok(split.path(), &["ingest", "-j", "2", "--piece-size", "64K", input]);
    assert!(said_one.contains("2 bad"), "{said_one}");
    assert_eq!(report(&said_split), report(&said_one));
    assert!(all_rows(one.path()).len() > 30_000);
    assert_eq!(all_rows(split.path()), all_rows(one.path()));
    // The pieces were written by both jobs, and merged: one file per table and hour either way.
    // (Quarantine is partitioned by the hour of the ingest, which two ingests may straddle.)
    let by_hour_of_data = |lake: &Path| -> std::collections::BTreeMap<String, usize> {
        files_per_partition(lake).into_iter().map(|(k, n)| (if k.starts_with("quarantine/") { "quarantine".to_string() } else { k }, n)).collect()
    };
    assert_eq!(by_hour_of_data(split.path()), by_hour_of_data(one.path()));
    assert!(files_per_partition(one.path()).values().all(|n| *n == 1), "{:?}", files_per_partition(one.path()));
    // And the detection finds the same rows.
    let detect = |lake: &Path| cimlake_ok(lake, &["detect", "--format", "csv"]);
    assert_eq!(detect(split.path()), detect(one.path()));
}

/// How many Parquet files each partition directory of the lake holds.
fn files_per_partition(lake: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![lake.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                *out.entry(dir.strip_prefix(lake).unwrap().display().to_string()).or_insert(0) += 1;
            }
        }
    }
    out
}

/// Events out of time order (host groups one after another over the whole day, as a merged export
/// can be) leave one file per table and hour, however the input is cut into pieces, with the rows
/// the same events in time order give. Without the merge of an input's files, every group's return
/// to an hour already closed started another file for it.
#[test]
fn events_out_of_time_order_still_leave_one_file_per_table_and_hour() {
    let gen_lake = TempDir::new().unwrap();
    let logs = |order: &str| {
        let out = TempDir::new().unwrap();
        let args = ["gen", "--seed", "12", "--hosts", "200", "--processes", "4000", "--hours", "24", "--format", "xmlwineventlog", "--order", order];
        cimlake_ok(gen_lake.path(), &[&args[..], &["-o", out.path().to_str().unwrap()]].concat());
        let log = out.path().join("sysmon-seed12.log");
        (out, log)
    };
    let (_in_order_dir, in_order) = logs("time");
    let (_shuffled_dir, shuffled) = logs("hosts");
    assert_ne!(std::fs::read(&in_order).unwrap(), std::fs::read(&shuffled).unwrap());

    let digest = |lake: &Path| {
        let mut rows = Vec::new();
        for table in ["endpoint.processes", "network_traffic.all_traffic"] {
            let sql = format!(
                "SELECT date_trunc('hour', _time) AS h, count(*), count(DISTINCT process_guid), min(_time), max(_time), sum(length(dest)) \
                 FROM {table} GROUP BY 1 ORDER BY 1"
            );
            rows.extend(query_csv(lake, &sql, &[]));
        }
        rows
    };
    let whole = TempDir::new().unwrap();
    cimlake_ok(whole.path(), &["ingest", "-j", "1", in_order.to_str().unwrap()]);
    for pieces in [&["-j", "1"][..], &["-j", "2", "--piece-size", "256K"][..]] {
        let lake = TempDir::new().unwrap();
        cimlake_ok(lake.path(), &[&["ingest"][..], pieces, &[shuffled.to_str().unwrap()]].concat());
        let files = files_per_partition(lake.path());
        assert!(files.len() >= 48, "{files:?}");
        assert!(files.values().all(|n| *n == 1), "{pieces:?}: {files:?}");
        assert_eq!(files, files_per_partition(whole.path()));
        assert_eq!(digest(lake.path()), digest(whole.path()), "{pieces:?}");
        // The same detection rows, but for the provenance: another file, other record numbers.
        let detect = |lake: &Path| -> Vec<String> {
            let out = cimlake_ok(lake, &["detect", "--format", "csv"]);
            out.lines().map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string()).collect()
        };
        let found = detect(lake.path());
        assert!(found.len() > 10, "{found:?}");
        assert_eq!(found, detect(whole.path()));
    }
}

#[test]
fn many_inputs_at_once_give_the_same_lake_and_report() {
    // Every sample shape, plus the same bytes twice in one run.
    let inputs = TempDir::new().unwrap();
    copy_dir(&repo().join("data/logs"), inputs.path());
    std::fs::copy(
        repo().join("data/logs/sysmon/t1218_007_msiexec_sysmon.log"),
        inputs.path().join("zz_same_bytes.log"),
    )
    .unwrap();
    let dir = inputs.path().to_str().unwrap();
    let one = TempDir::new().unwrap();
    let said_one = cimlake_ok(one.path(), &["ingest", "-j", "1", dir]);
    let many = TempDir::new().unwrap();
    let said_many = cimlake_ok(many.path(), &["ingest", "-j", "4", dir]);
    assert_eq!(report(&said_many), report(&said_one));
    assert!(said_many.contains("zz_same_bytes.log: already in the lake"), "{said_many}");
    assert_eq!(all_rows(many.path()), all_rows(one.path()));
    let commits = |lake: &Path| published_records(&lake.join("_cimlake/commits")).len();
    assert_eq!(commits(many.path()), commits(one.path()));
}
