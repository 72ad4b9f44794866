//! The stdout of the README's main commands on the bundled samples, pinned with `insta`
//! snapshots in `tests/integration/snapshots/` (one `NAME.snap` per command; its header names the
//! command). A change of output fails the test and leaves `NAME.snap.new` beside the snapshot;
//! after an intended change, `INSTA_UPDATE=always cargo test --test integration snapshots`
//! rewrites the snapshots (review the diff).
//!
//! The lakes are temporary directories, so their path is replaced by `[LAKE]` where it is printed
//! ([`redact_lake`]). Nothing else these commands print to stdout varies between runs: inputs are
//! named as given (relative to the repository), and they print no durations, run ids, times of
//! day or hashes. Only stdout is pinned. The tests in `cli.rs` check parts of the same output;
//! these pin all of it.

use std::path::Path;

use tempfile::TempDir;

use crate::common::*;

const VIEW: &str = "detect.windows_http_network_communication_from_msiexec";

/// `out` with every occurrence of the lake's path replaced by `[LAKE]`: a temporary directory,
/// new in each run. Fails if the path does not occur `times` times, so the snapshot cannot hide
/// where the path went.
fn redact_lake(out: &str, lake: &Path, times: usize) -> String {
    let path = lake.display().to_string();
    assert_eq!(out.matches(&path).count(), times, "{path} in:\n{out}");
    out.replace(&path, "[LAKE]")
}

/// Asserts `stdout` is snapshot `name`; `command` is shown in the snapshot's header.
fn assert_stdout(name: &str, command: &str, stdout: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(command);
    settings.bind(|| insta::assert_snapshot!(name, stdout));
}

#[test]
fn snapshots_run() {
    let dir = TempDir::new().unwrap();
    let lake = dir.path().join("lake");
    let out = cimlake_ok(&lake, &["run", "data/logs/sysmon"]);
    // Redacted: the lake's temporary path, in the ingest summary line (`…; lake PATH`).
    assert_stdout("run_sysmon", "cimlake --lake [LAKE] run data/logs/sysmon", &redact_lake(&out, &lake, 1));
}

#[test]
fn snapshots_ingest() {
    let dir = TempDir::new().unwrap();
    let out = cimlake_ok(dir.path(), &["ingest", "data/logs"]);
    // Redacted: the lake's temporary path, in the summary line (`…; lake PATH`).
    assert_stdout("ingest_all_samples", "cimlake --lake [LAKE] ingest data/logs", &redact_lake(&out, dir.path(), 1));
    // The README's example: one file, then the same file again (nothing is ingested twice).
    let dir = TempDir::new().unwrap();
    let command = "cimlake --lake [LAKE] ingest data/logs/sysmon/t1218_007_msiexec_sysmon.log";
    let once = cimlake_ok(dir.path(), &["ingest", "data/logs/sysmon/t1218_007_msiexec_sysmon.log"]);
    // Redacted as above, in both reports; the commit number is 1 in a new lake.
    assert_stdout("ingest_one_file", command, &redact_lake(&once, dir.path(), 1));
    let twice = cimlake_ok(dir.path(), &["ingest", "data/logs/sysmon/t1218_007_msiexec_sysmon.log"]);
    assert_stdout("ingest_one_file_again", &format!("{command}, a second time"), &redact_lake(&twice, dir.path(), 1));
}

#[test]
fn snapshots_detect() {
    // Nothing to redact: results name their inputs as ingested (relative paths), never the lake.
    let out = cimlake_ok(sample_lake(), &["detect"]);
    assert_stdout("detect_cimlake", "cimlake --lake [sample lake] detect", &redact_lake(&out, sample_lake(), 0));
    let out = cimlake_ok(sample_lake(), &["detect", "--mode", "splunk"]);
    assert_stdout("detect_splunk", "cimlake --lake [sample lake] detect --mode splunk", &redact_lake(&out, sample_lake(), 0));
}

#[test]
fn snapshots_query() {
    let sql = format!(
        "SELECT process_name, process_id, dest_ip, dest_port, dest_hostname, count FROM {VIEW} ORDER BY _time, dest_ip"
    );
    let out = cimlake_ok(sample_lake(), &["query", &sql]);
    // Nothing to redact (as for detect); ORDER BY, as a view's order is not a query's.
    assert_stdout("query_detection_view", &format!("cimlake --lake [sample lake] query {sql:?}"), &redact_lake(&out, sample_lake(), 0));
}
