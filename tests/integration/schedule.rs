//! `cimlake schedule`, driven with a controllable clock (`--now`): hourly runs, an outage and its
//! catch-up, a backfill, a crash mid-run, two schedulers at once, and late data.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

const DETECTION: &str = "windows_http_network_communication_from_msiexec";

fn schedule_at(lake: &Path, now: &str, extra: &[&str]) -> String {
    let mut args = vec!["schedule", "--once", "--now", now];
    args.extend_from_slice(extra);
    cimlake_ok(lake, &args)
}

/// (window_earliest, trigger, results) of the detection's runs, in run order.
fn detection_runs(lake: &Path) -> Vec<(String, String, String)> {
    query_csv(
        lake,
        &format!("SELECT window_earliest, trigger, results FROM cimlake.runs WHERE job = '{DETECTION}' ORDER BY seq"),
        &[],
    )
    .into_iter()
    .skip(1)
    .map(|l| {
        let v: Vec<&str> = l.split(',').collect();
        (v[0].to_string(), v[1].to_string(), v[2].to_string())
    })
    .collect()
}

fn result_rows(lake: &Path) -> String {
    query_csv(lake, "SELECT count(*) AS n FROM detections.results", &[])[1].clone()
}

/// The Winlogbeat sample split: its process events in `DIR/processes.json`, an empty landing
/// directory `DIR/landing`, and its flow lines.
fn winlogbeat_split() -> (TempDir, std::path::PathBuf, Vec<String>) {
    let json = std::fs::read_to_string(repo().join("data/logs/json/t1218_007_msiexec_winlogbeat8.json")).unwrap();
    let dir = TempDir::new().unwrap();
    let (procs, flows): (Vec<&str>, Vec<&str>) = json.lines().partition(|l| !l.contains(r#""event_id": "3""#));
    std::fs::write(dir.path().join("processes.json"), procs.join("\n")).unwrap();
    let landing = dir.path().join("landing");
    std::fs::create_dir(&landing).unwrap();
    (dir, landing, flows.into_iter().map(str::to_string).collect())
}

fn sysmon_lake() -> TempDir {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", sample_dir().join("t1218_007_msiexec_sysmon.log").to_str().unwrap()]);
    lake
}

#[test]
fn hourly_runs_then_an_outage_caught_up_in_order() {
    let lake = sysmon_lake();
    // The first run takes the latest scheduled window only.
    let out = schedule_at(lake.path(), "2026-11-03T13:05:00Z", &[]);
    assert!(out.contains("[2026-11-03T11:50:00Z, 2026-11-03T12:50:00Z) scheduled: 0 results"), "{out}");
    for hour in ["14", "15"] {
        let out = schedule_at(lake.path(), &format!("2026-11-03T{hour}:00:30Z"), &[]);
        assert_eq!(out.lines().filter(|l| l.starts_with(&format!("ran {DETECTION}"))).count(), 1, "{out}");
    }
    // Nothing due twice in the same hour.
    assert_eq!(schedule_at(lake.path(), "2026-11-03T15:59:00Z", &[]), "");
    // Down from 15:59 to 20:10: five windows missed, run once each, in order.
    let out = schedule_at(lake.path(), "2026-11-03T20:10:00Z", &[]);
    let ran: Vec<&str> = out.lines().filter(|l| l.starts_with(&format!("ran {DETECTION}"))).collect();
    assert_eq!(ran.len(), 5, "{out}");
    assert!(ran[..4].iter().all(|l| l.contains(") catch-up:")) && ran[4].contains(") scheduled:"), "{out}");
    let runs = detection_runs(lake.path());
    let windows: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        windows,
        [
            "2026-11-03T11:50:00Z", "2026-11-03T12:50:00Z", "2026-11-03T13:50:00Z", "2026-11-03T14:50:00Z",
            "2026-11-03T15:50:00Z", "2026-11-03T16:50:00Z", "2026-11-03T17:50:00Z", "2026-11-03T18:50:00Z",
        ]
    );
    // The 14:00-14:50 activity was found by the run scheduled at 15:00.
    assert_eq!(runs[2], ("2026-11-03T13:50:00Z".to_string(), "scheduled".to_string(), "4".to_string()));
    assert_eq!(result_rows(lake.path()), "4");
    let status = cimlake_ok(lake.path(), &["schedule", "status", "--now", "2026-11-03T20:10:00Z"]);
    assert!(status.contains("last run: scheduled 2026-11-03T20:00:00Z") && status.contains("next run: 2026-11-03T21:00:00Z"), "{status}");
    assert!(status.contains("runs: 8 (0 failed), current results: 4"), "{status}");
}

#[test]
fn a_backfilled_day_run_twice_replaces_its_results() {
    let lake = sysmon_lake();
    let day = ["--backfill", "2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z"];
    let out = schedule_at(lake.path(), "2026-11-20T00:00:00Z", &day);
    assert_eq!(out.lines().filter(|l| l.starts_with(&format!("ran {DETECTION}")) && l.contains(" backfill:")).count(), 24, "{out}");
    // 08:59 install (window 08:50-09:50) and the 14:xx chain (13:50-14:50).
    assert_eq!(result_rows(lake.path()), "5");
    let risk = query_csv(lake.path(), "SELECT count(*) AS n FROM risk.all_risk", &[]);
    assert_eq!(risk[1], "10");
    schedule_at(lake.path(), "2026-11-20T00:00:00Z", &day);
    assert_eq!(result_rows(lake.path()), "5", "a re-run window replaces its results");
    assert_eq!(query_csv(lake.path(), "SELECT count(*) AS n FROM risk.all_risk", &[])[1], "10");
    let runs = query_csv(lake.path(), &format!("SELECT count(*) AS n, sum(CAST(current AS INT)) AS c FROM cimlake.runs WHERE job = '{DETECTION}'"), &[]);
    assert_eq!(runs[1], "48,24");
    // A backfill leaves the checkpoint alone: the next scheduled run is the latest window only.
    let out = schedule_at(lake.path(), "2026-11-20T00:00:00Z", &[]);
    assert!(out.contains("[2026-11-19T22:50:00Z, 2026-11-19T23:50:00Z) scheduled"), "{out}");
}

fn spawn_scheduler(lake: &Path, now: &str, stall_ms: u64) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cimlake"))
        .args(["--lake", lake.to_str().unwrap(), "schedule", "--once", "--now", now])
        .current_dir(repo())
        .env(cimlake::schedule::STALL_ENV, stall_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn parquet_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            n += parquet_files(&e.path());
        } else if e.path().extension().is_some_and(|x| x == "parquet") {
            n += 1;
        }
    }
    n
}

#[test]
fn a_run_killed_midway_reruns_on_restart_without_duplicates() {
    let lake = sysmon_lake();
    schedule_at(lake.path(), "2026-11-03T14:00:00Z", &[]);
    // Scheduled at 15:00, the window with the chain; killed after writing its files and before
    // publishing its run.
    let mut child = spawn_scheduler(lake.path(), "2026-11-03T15:00:00Z", 60_000);
    let results_dir = lake.path().join("detections/results");
    let before = parquet_files(&results_dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    while parquet_files(&results_dir) == before {
        assert!(Instant::now() < deadline, "the run never wrote its files");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(result_rows(lake.path()), "0", "an unpublished run is not read");
    // Restart: the interrupted window runs again, once.
    let out = schedule_at(lake.path(), "2026-11-03T15:00:10Z", &[]);
    assert!(out.contains("[2026-11-03T13:50:00Z, 2026-11-03T14:50:00Z) scheduled: 4 results, 8 risk events"), "{out}");
    assert_eq!(result_rows(lake.path()), "4");
    assert_eq!(query_csv(lake.path(), "SELECT count(*) AS n FROM risk.all_risk", &[])[1], "8");
    let runs = detection_runs(lake.path());
    assert_eq!(runs.iter().filter(|r| r.0 == "2026-11-03T13:50:00Z").count(), 1, "{runs:?}");
}

#[test]
fn two_schedulers_on_one_lake_never_run_a_window_twice() {
    let lake = sysmon_lake();
    schedule_at(lake.path(), "2026-11-03T10:00:00Z", &[]);
    let a = spawn_scheduler(lake.path(), "2026-11-03T20:00:00Z", 100);
    let b = spawn_scheduler(lake.path(), "2026-11-03T20:00:00Z", 100);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{a:?} {b:?}");
    let ran = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with(&format!("ran {DETECTION}"))).count();
    // One of them ran the ten due windows; the other found nothing left.
    let mut counts = [ran(&a), ran(&b)];
    counts.sort();
    assert_eq!(counts, [0, 10]);
    let runs = detection_runs(lake.path());
    let mut windows: Vec<&String> = runs.iter().map(|r| &r.0).collect();
    let total = windows.len();
    windows.dedup();
    assert_eq!((total, windows.len()), (11, 11), "{runs:?}");
}

#[test]
fn late_flows_rerun_their_window_and_appear_exactly_once() {
    // Split the Winlogbeat sample: process events on time, flows late.
    let (dir, landing, flows) = winlogbeat_split();
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", dir.path().join("processes.json").to_str().unwrap()]);
    let land = ["--ingest", landing.to_str().unwrap()];
    // The 2026-11-05 14:00 hour runs at 15:00 with no flows yet.
    schedule_at(lake.path(), "2026-11-05T14:00:00Z", &land);
    let out = schedule_at(lake.path(), "2026-11-05T15:00:00Z", &land);
    assert!(out.contains("[2026-11-05T13:50:00Z, 2026-11-05T14:50:00Z) scheduled: 0 results"), "{out}");
    // The flows land late, at 15:30.
    std::fs::write(landing.join("flows.json"), flows.join("\n")).unwrap();
    let out = schedule_at(lake.path(), "2026-11-05T15:30:00Z", &land);
    assert!(out.contains("landing: 1 inputs looked at, 0 processes and 9 flows ingested"), "{out}");
    assert!(out.contains("[2026-11-05T13:50:00Z, 2026-11-05T14:50:00Z) late-data: 4 results"), "{out}");
    assert_eq!(result_rows(lake.path()), "4");
    // The incidents over the 24 hours ending 14:50 were computed again with the new risk events.
    let inc = query_csv(
        lake.path(),
        "SELECT rows_read_risk FROM cimlake.runs WHERE job = 'risk_incidents' AND current AND window_latest = '2026-11-05T14:50:00Z'",
        &[],
    );
    assert_eq!(inc[1..], ["8"]);
    // Later ticks neither re-ingest nor re-add.
    let out = schedule_at(lake.path(), "2026-11-05T16:00:30Z", &land);
    assert!(!out.contains("late-data"), "{out}");
    assert_eq!(result_rows(lake.path()), "4");
    let rows = query_csv(lake.path(), "SELECT count(*) AS n, count(DISTINCT dest_ip) AS ips FROM detections.results", &[]);
    assert_eq!(rows[1], "4,4");
}

#[test]
fn risk_events_after_a_scheduled_run_over_the_samples() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", "data/logs"]);
    cimlake_ok(lake.path(), &["schedule", "--once", "--now", "2026-11-06T00:00:00Z", "--backfill", "2026-11-03T00:00:00Z", "2026-11-06T00:00:00Z"]);
    let sums = query_csv(lake.path(), "SELECT risk_object, sum(risk_score) FROM risk.all_risk GROUP BY 1 ORDER BY 2 DESC, 1", &[]);
    assert_eq!(sums[0], "risk_object,sum(risk.all_risk.risk_score)");
    assert!(sums.contains(&"ws-eng-07.corp.acme.example,100".to_string()), "{sums:?}");
    assert!(sums.contains(&"lt-sales-14.corp.acme.example,40".to_string()), "{sums:?}");
    // Messages are ESCU's template with every token rendered.
    let msgs = query_csv(
        lake.path(),
        "SELECT DISTINCT risk_message FROM risk.all_risk WHERE risk_object = 'lt-sales-14.corp.acme.example' ORDER BY 1",
        &[],
    );
    assert_eq!(
        msgs[1..],
        [
            "An instance of msiexec.exe was identified on endpoint lt-sales-14.corp.acme.example contacting a remote destination 140.82.112.3",
            "An instance of msiexec.exe was identified on endpoint lt-sales-14.corp.acme.example contacting a remote destination 185.199.108.133",
        ]
    );
    let one = query_csv(
        lake.path(),
        "SELECT risk_object_type, risk_score, array_to_string(threat_object, '|'), array_to_string(threat_object_type, '|'), \
         array_to_string(\"annotations.mitre_attack\", '|'), search_name FROM risk.all_risk \
         WHERE risk_object = 'ACME\\akim' LIMIT 1",
        &[],
    );
    assert_eq!(
        one[1],
        "user,20,cmd.exe|msiexec.exe,parent_process_name|process_name,T1218.007,ESCU - Windows HTTP Network Communication From MSIExec - Rule"
    );
    // ws-eng-07's five results (100) stay at the threshold: no incident at the default of 100…
    assert_eq!(query_csv(lake.path(), "SELECT count(*) AS n FROM risk.incidents", &[])[1], "0");
    // …and a lower threshold makes one: the 24 hours before 14:50 hold all five.
    cimlake_ok(lake.path(), &["schedule", "--once", "--now", "2026-11-06T00:00:00Z", "--risk-threshold", "60", "--backfill", "2026-11-03T15:00:00Z", "2026-11-03T16:00:00Z"]);
    let inc = query_csv(lake.path(), "SELECT risk_object, risk_score, risk_events FROM risk.incidents ORDER BY 1", &[]);
    assert_eq!(inc[1..], ["ws-eng-07.corp.acme.example,100,5"]);
}

#[test]
fn the_long_running_scheduler_runs_then_waits() {
    let lake = sysmon_lake();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cimlake"))
        .args(["--lake", lake.path().to_str().unwrap(), "schedule", "--now", "2026-11-03T15:00:00Z"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while detection_runs(lake.path()).is_empty() {
        assert!(Instant::now() < deadline, "no run");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "it should wait for 16:00");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(detection_runs(lake.path()).len(), 1);
}

/// Makes every run fail (its files cannot be staged) until `unblock`.
fn block_staging(lake: &Path) {
    let staging = lake.join("_cimlake/staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(lake.join("_cimlake")).unwrap();
    std::fs::write(&staging, b"not a directory").unwrap();
}

fn unblock(lake: &Path) {
    std::fs::remove_file(lake.join("_cimlake/staging")).unwrap();
}

#[test]
fn failed_runs_are_retried_not_skipped() {
    // A first run that fails is retried by the next tick, before the window then due.
    let lake = sysmon_lake();
    block_staging(lake.path());
    let out = cimlake(lake.path(), &["schedule", "--once", "--now", "2026-11-03T15:00:30Z"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED windows_http_network_communication_from_msiexec (cimlake) [2026-11-03T13:50:00Z"));
    // The runs' Delta tables could not be written either: said so, after the runs.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: the Delta logs of the runs' tables are behind (the next tick tries again): "), "{err}");
    unblock(lake.path());
    let out = schedule_at(lake.path(), "2026-11-03T16:00:30Z", &[]);
    assert!(out.contains("[2026-11-03T13:50:00Z, 2026-11-03T14:50:00Z) catch-up: 4 results"), "{out}");
    assert!(out.contains("[2026-11-03T14:50:00Z, 2026-11-03T15:50:00Z) scheduled"), "{out}");
    let status = cimlake_ok(lake.path(), &["schedule", "status", "--now", "2026-11-03T16:00:30Z"]);
    assert!(status.contains("runs: 3 (1 failed)") && status.contains("last error: [2026-11-03T13:50:00Z"), "{status}");

    // A late-data re-run that fails is tried again at the next tick.
    let lake = TempDir::new().unwrap();
    schedule_at(lake.path(), "2026-11-03T15:00:30Z", &[]);
    cimlake_ok(lake.path(), &["ingest", sample_dir().join("t1218_007_msiexec_sysmon.log").to_str().unwrap()]);
    block_staging(lake.path());
    let out = cimlake(lake.path(), &["schedule", "--once", "--now", "2026-11-03T15:20:00Z"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(") late-data: "), "{out:?}");
    unblock(lake.path());
    let out = schedule_at(lake.path(), "2026-11-03T15:40:00Z", &[]);
    assert!(out.contains("[2026-11-03T13:50:00Z, 2026-11-03T14:50:00Z) late-data: 4 results"), "{out}");
    assert_eq!(result_rows(lake.path()), "4");
}

/// `schedule --memory-limit` runs each detection through the same runner as `detect`: a window
/// whose join does not fit runs in passes, says so, and writes the rows of an unlimited run.
#[test]
fn scheduled_runs_honour_the_memory_limit() {
    // Half of all processes are msiexec.exe; one daily window (the detection's schedule edited in
    // a copy of sql/) covers the whole generated half day.
    let unlimited = TempDir::new().unwrap();
    let out = TempDir::new().unwrap();
    let gen_args = [
        "gen", "-o", out.path().to_str().unwrap(), "--seed", "9", "--hosts", "60", "--processes", "20000", "--flows-per-process", "10",
        "--hours", "12", "--msiexec-share", "0.5", "--positives", "15",
    ];
    cimlake_ok(unlimited.path(), &gen_args);
    let limited = TempDir::new().unwrap();
    copy_dir(unlimited.path(), limited.path());
    let sql = sql_copy();
    let toml = sql.path().join(format!("detections/{DETECTION}/detection.toml"));
    let text = std::fs::read_to_string(&toml).unwrap();
    let edited = text.replace("cron = \"0 * * * *\"\nearliest = \"-70m@m\"\nlatest = \"-10m@m\"", "cron = \"0 0 * * *\"\nearliest = \"-2d@d\"\nlatest = \"@d\"");
    assert_ne!(edited, text, "the schedule of {}", toml.display());
    std::fs::write(&toml, edited).unwrap();
    let sql_dir = sql.path().to_str().unwrap();
    let backfill = ["--backfill", "2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z", "--sql-dir", sql_dir];

    let plain = schedule_at(unlimited.path(), "2026-11-20T00:00:00Z", &backfill);
    let mut args = backfill.to_vec();
    // 32 MiB: the join's build side (10,000 processes of the 14 columns the detection reads)
    // does not fit with the rest of the run, so the window runs in passes.
    args.extend(["--memory-limit", "32M"]);
    let small = schedule_at(limited.path(), "2026-11-20T00:00:00Z", &args);
    let ran = |out: &str| out.lines().filter(|l| l.starts_with(&format!("ran {DETECTION}"))).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(ran(&plain).len(), 1, "{plain}");
    assert!(!plain.contains("passes"), "{plain}");
    let small_ran = ran(&small);
    assert_eq!(small_ran.len(), 1, "{small}");
    assert!(small_ran[0].contains("(the join did not fit in --memory-limit: ") && small_ran[0].ends_with(" passes)"), "{small}");
    // The same rows, and the same counts in the run log.
    let rows = |lake: &Path| {
        query_csv(lake, "SELECT dest, process_id, process_guid, dest_ip, dest_port, count FROM detections.results ORDER BY 1, 2, 3, 4, 5", &[])
    };
    let want = rows(unlimited.path());
    assert!(want.len() > 15, "{want:?}");
    assert_eq!(rows(limited.path()), want);
    let counts = |lake: &Path| query_csv(lake, &format!("SELECT results, risk_events, rows_read_processes, rows_read_all_traffic FROM cimlake.runs WHERE job = '{DETECTION}'"), &[]);
    assert_eq!(counts(limited.path()), counts(unlimited.path()));
}

#[test]
fn the_scheduler_merges_what_it_ingested_when_asked() {
    // The Winlogbeat sample's flows land as three inputs in the same hour.
    let (dir, landing, flows) = winlogbeat_split();
    for (n, chunk) in flows.chunks(flows.len().div_ceil(3)).enumerate() {
        std::fs::write(landing.join(format!("flows-{n}.json")), chunk.join("\n")).unwrap();
    }
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", dir.path().join("processes.json").to_str().unwrap()]);
    let out = schedule_at(lake.path(), "2026-11-05T15:30:00Z", &["--ingest", landing.to_str().unwrap(), "--optimize", "2"]);
    assert!(out.contains("landing: 3 inputs looked at, 0 processes and 9 flows ingested"), "{out}");
    assert!(out.contains("landing: compaction 1: network_traffic.all_traffic 3 files in 1 partition(s) merged into 1"), "{out}");
    assert!(!out.contains("endpoint.processes"), "one process file per partition was left alone: {out}");
    assert_eq!(result_rows(lake.path()), "4");
    let h = cimlake_ok(lake.path(), &["lake", "history", "network_traffic.all_traffic"]);
    assert!(h.lines().nth(1).is_some_and(|l| l.contains("OPTIMIZE")), "{h}");
    // `--optimize` without `--ingest` is refused.
    let e = cimlake(lake.path(), &["schedule", "--once", "--optimize", "2"]);
    assert!(!e.status.success());
}
