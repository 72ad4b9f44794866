//! A lake in S3: a real S3-compatible server (moto's, from PyPI, installed with the Flight SQL
//! client by `tests/flightsql/venv.sh` and started on loopback by these tests) holds lakes that
//! `ingest`, `detect`, `query`, `schedule`, `serve` and a Ballista cluster work on, giving the
//! rows the same commands give on a lake on disk. Two ingests of the same input at once commit it
//! once (conditional puts); a killed ingest leaves whole inputs; an outside Delta reader reads the
//! tables from the bucket; optimize and vacuum work there.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};

use object_store::{ObjectStore, ObjectStoreExt};
use tempfile::TempDir;

use crate::common::*;
use crate::safety::wait_for_pause;
use crate::serve::python;

const BUCKET: &str = "cimlake-tests";
const DETECTION: &str = "windows_http_network_communication_from_msiexec";

/// The server, started once for the test binary; it stops when the binary exits (its stdin, a
/// pipe held here, closes).
struct S3 {
    _child: Child,
    endpoint: String,
}

fn server() -> &'static S3 {
    static SERVER: OnceLock<S3> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut child = Command::new(python())
            .arg(repo().join("tests/s3/server.py"))
            .arg(BUCKET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("tests/s3/server.py said {line:?}"));
        S3 { _child: child, endpoint: format!("http://127.0.0.1:{port}") }
    })
}

/// The settings every process reaching the server is given, as users give them.
fn env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", server().endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A lake of its own in the bucket, and the local directory its ingests stage files in.
struct S3Lake {
    url: String,
    staging: TempDir,
}

impl S3Lake {
    fn new(name: &str) -> S3Lake {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        S3Lake { url: format!("s3://{BUCKET}/{name}-{}-{n}", std::process::id()), staging: TempDir::new().unwrap() }
    }

    fn path(&self) -> &Path {
        Path::new(&self.url)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = command(self.path(), args);
        cmd.envs(env()).env("CIMLAKE_STAGING", self.staging.path());
        cmd
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "cimlake --lake {} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.url,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The lake's objects (paths relative to it).
    fn objects(&self) -> BTreeSet<String> {
        let prefix = self.url.trim_start_matches(&format!("s3://{BUCKET}/")).to_string();
        let store = bucket();
        let listed = block_on(async move {
            use futures::TryStreamExt;
            store.list(Some(&object_store::path::Path::from(prefix.as_str()))).try_collect::<Vec<_>>().await.unwrap()
        });
        let strip = format!("{}/", self.url.trim_start_matches(&format!("s3://{BUCKET}/")));
        listed.into_iter().map(|m| m.location.to_string().strip_prefix(&strip).unwrap().to_string()).collect()
    }

    /// The data files the lake's commits name.
    fn named(&self) -> BTreeSet<String> {
        self.commits().iter().flat_map(|c| c["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_string())).collect()
    }

    /// The lake's commits, read from its record table in the bucket as a Delta reader would.
    fn commits(&self) -> Vec<serde_json::Value> {
        let table = format!("{}/_cimlake/commits", self.url.trim_start_matches(&format!("s3://{BUCKET}/")));
        let logs: Vec<String> = self.objects().into_iter().filter_map(|k| k.strip_prefix("_cimlake/commits/_delta_log/").map(str::to_string)).collect();
        delta_records(logs, |rel| {
            let store = bucket();
            let object = object_store::path::Path::from(format!("{table}/{rel}"));
            block_on(async move { store.get(&object).await.unwrap().bytes().await.unwrap().to_vec() })
        })
    }
}

/// Whether an object of the lake is a data file of a table (not a record of `_cimlake/`, not a
/// Delta checkpoint).
fn is_data_object(rel: &str) -> bool {
    rel.ends_with(".parquet") && !rel.starts_with("_cimlake/") && !rel.contains("_delta_log/")
}

/// The bucket, as the tests look into it.
fn bucket() -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(&server().endpoint)
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1")
            .build()
            .unwrap(),
    )
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Parquet files under a directory (the staging of an S3 lake must keep none).
fn local_parquet(dir: &Path) -> usize {
    parquet_files(dir)
}

/// A generated XmlWinEventLog file with planted positives, and the bundled samples: the inputs.
fn inputs() -> TempDir {
    let dir = TempDir::new().unwrap();
    let scratch = TempDir::new().unwrap();
    cimlake_ok(
        scratch.path(),
        &["gen", "--seed", "11", "--hosts", "20", "--processes", "4000", "--hours", "6", "--positives", "4", "--format", "xmlwineventlog", "-o", dir.path().to_str().unwrap()],
    );
    std::fs::remove_file(dir.path().join("expected.csv")).unwrap();
    dir
}

fn query(lake_ok: &dyn Fn(&[&str]) -> String, sql: &str) -> String {
    lake_ok(&["query", sql, "--format", "csv"])
}

#[test]
fn an_s3_lake_gives_the_rows_a_lake_on_disk_gives() {
    let logs = inputs();
    let logs = logs.path().to_str().unwrap();
    let disk = TempDir::new().unwrap();
    let s3 = S3Lake::new("rows");
    let on_disk = |args: &[&str]| cimlake_ok(disk.path(), args);
    let on_s3 = |args: &[&str]| s3.run_ok(args);

    on_disk(&["ingest", "data/logs", logs]);
    let report = on_s3(&["ingest", "data/logs", logs]);
    assert!(report.contains(&format!("lake {}/", s3.url)), "{report}");
    // The rows are in the bucket only: nothing stays staged.
    assert_eq!(local_parquet(s3.staging.path()), 0, "Parquet files left in the staging directory");
    let objects = s3.objects();
    for table in ["endpoint/processes", "network_traffic/all_traffic", "quarantine/records"] {
        assert!(objects.contains(&format!("{table}/_delta_log/00000000000000000000.json")), "no Delta log for {table}: {objects:?}");
    }
    let data: BTreeSet<String> = objects.iter().filter(|o| is_data_object(o)).cloned().collect();
    assert_eq!(data, s3.named(), "data objects that no commit names, or commits naming missing objects");

    // The same bytes again: nothing new.
    let again = on_s3(&["ingest", "data/logs", logs]);
    assert!(again.contains(" 0 ingested, "), "{again}");
    assert_eq!(s3.objects(), objects);

    // The detection, the tables and a join: the same rows.
    let detect = ["detect", "--format", "csv"];
    let found = on_s3(&detect);
    assert_eq!(found, on_disk(&detect));
    assert!(found.lines().count() >= 5, "the planted positives: {found}");
    for sql in [
        "SELECT count(*) AS n, min(_time) AS a, max(_time) AS b FROM endpoint.processes",
        "SELECT count(*) AS n, sum(bytes) AS b FROM network_traffic.all_traffic",
        "SELECT reason, count(*) AS n FROM quarantine.records GROUP BY reason ORDER BY reason",
        "SELECT dest, count(*) AS n FROM endpoint.processes GROUP BY dest ORDER BY dest",
    ] {
        assert_eq!(query(&on_s3, sql), query(&on_disk, sql), "{sql}");
    }

    // Scheduled runs write results, risk events and run records into the bucket.
    let backfill = ["schedule", "--once", "--now", "2026-11-06T00:00:00Z", "--backfill", "2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z"];
    on_disk(&backfill);
    on_s3(&backfill);
    for sql in [
        "SELECT window_earliest, dest, process_id, dest_ip, dest_port, count FROM detections.results ORDER BY 1, 2, 3, 4, 5",
        "SELECT job, window_earliest, status, results, risk_events FROM cimlake.runs ORDER BY seq",
        "SELECT risk_object, risk_score FROM risk.all_risk ORDER BY 1, 2",
    ] {
        let rows = query(&on_s3, sql);
        assert_eq!(rows, query(&on_disk, sql), "{sql}");
        assert!(rows.lines().count() > 1, "{sql}: no rows");
    }
    let objects = s3.objects();
    for table in ["detections/results", "risk/all_risk", "risk/incidents", "cimlake/runs"] {
        assert!(objects.contains(&format!("{table}/_delta_log/00000000000000000001.json")), "no Delta version for {table}'s runs: {objects:?}");
    }
    let status = ["schedule", "status", "--now", "2026-11-06T00:00:00Z"];
    assert_eq!(on_s3(&status).replace(&format!("{}/", s3.url), "LAKE"), on_disk(&status).replace(disk.path().to_str().unwrap(), "LAKE"));
    assert_eq!(local_parquet(s3.staging.path()), 0);

    // A Delta reader that knows nothing of cimlake reads the tables from the bucket.
    let env = env();
    for (table, dir) in [("endpoint.processes", "endpoint/processes"), ("network_traffic.all_traffic", "network_traffic/all_traffic")] {
        let out = Command::new(python())
            .arg(repo().join("tests/delta/read.py"))
            .arg(format!("{}/{dir}", s3.url))
            .arg("_time")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "read.py {dir}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = query(&on_disk, &format!("SELECT count(*) AS n FROM {table}"));
        assert_eq!(v["count"].as_u64().unwrap().to_string(), n.lines().nth(1).unwrap(), "{table}");
        assert_eq!(v["partition_mismatches"].as_u64(), Some(0));
    }

    // A Flight SQL server over the S3 lake gives what `query` gives.
    let mut server_env = env_refs(&env);
    server_env.push(("CIMLAKE_STAGING", s3.staging.path().to_str().unwrap()));
    let server = crate::serve::Server::start(s3.path(), &["--no-auth"], &server_env);
    let sql = format!("SELECT * FROM detect.{DETECTION} ORDER BY dest, process_id, dest_ip, dest_port, source, source_record");
    let served = server.query_rows(&[], &sql);
    assert_eq!(served, on_s3(&["query", &sql, "--format", "json"]));
    assert!(served.lines().count() > 4, "{served}");
}

#[test]
fn a_cluster_reads_an_s3_lake_from_the_bucket() {
    let logs = inputs();
    let s3 = S3Lake::new("cluster");
    s3.run_ok(&["ingest", "data/logs", logs.path().to_str().unwrap()]);
    // Staged copies are gone: the executors can read the rows from the bucket only.
    assert_eq!(local_parquet(s3.staging.path()), 0);
    let env = env();
    let cluster = crate::cluster::Cluster::start_with(2, &env_refs(&env));
    for args in [
        vec!["detect", "--format", "csv"],
        vec!["query", "SELECT dest, count(*) AS n FROM endpoint.processes GROUP BY dest ORDER BY dest", "--format", "csv"],
    ] {
        let local = s3.run_ok(&args);
        let mut on_cluster = args.clone();
        let engine = cluster.engine();
        on_cluster.extend(["--engine", engine.as_str()]);
        let out = s3.command(&on_cluster).env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "4").output().unwrap();
        assert!(out.status.success(), "{args:?} on the cluster: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), local, "{args:?}");
        assert!(local.lines().count() > 2, "{local}");
    }
}

/// Generated inputs of different sizes, one file each.
fn small_inputs(n: u64) -> TempDir {
    let dir = TempDir::new().unwrap();
    for i in 0..n {
        let out = TempDir::new().unwrap();
        let scratch = TempDir::new().unwrap();
        let p = (300 * (i + 2)).to_string();
        cimlake_ok(
            scratch.path(),
            &["gen", "--seed", &(51 + i).to_string(), "--hosts", "10", "--processes", &p, "--hours", "4", "--format", "xmlwineventlog", "-o", out.path().to_str().unwrap()],
        );
        let log = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).find(|p| !p.ends_with("expected.csv")).unwrap();
        std::fs::copy(&log, dir.path().join(format!("input-{i}.log"))).unwrap();
    }
    dir
}

fn counts(s3: &S3Lake) -> String {
    query(&|a: &[&str]| s3.run_ok(a), "SELECT (SELECT count(*) FROM endpoint.processes) AS p, (SELECT count(*) FROM network_traffic.all_traffic) AS t")
}

#[test]
fn two_ingests_racing_for_the_same_commit_on_s3_commit_the_input_once() {
    let dir = small_inputs(3);
    let file = |i: u32| dir.path().join(format!("input-{i}.log")).to_str().unwrap().to_string();
    let reference = TempDir::new().unwrap();
    cimlake_ok(reference.path(), &["ingest", dir.path().to_str().unwrap()]);
    let want = query(&|a: &[&str]| cimlake_ok(reference.path(), a), "SELECT (SELECT count(*) FROM endpoint.processes) AS p, (SELECT count(*) FROM network_traffic.all_traffic) AS t");

    let s3 = S3Lake::new("race");
    // Both upload the shared input's files, then stop before creating commit 1: both then ask
    // for it, and the store must turn one away.
    let (pause_a, pause_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let fault = |d: &TempDir| format!("ingest-after-upload@1:wait={}", d.path().display());
    let spawn = |args: &[&str], fault: String| -> Child {
        let mut cmd = s3.command(args);
        // Each its own staging directory, as on two machines.
        cmd.env("CIMLAKE_STAGING", TempDir::new().unwrap().keep()).env("CIMLAKE_FAULT", fault).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let a = spawn(&["ingest", "-j", "1", &file(2), &file(0)], fault(&pause_a));
    let b = spawn(&["ingest", "-j", "1", &file(2), &file(1)], fault(&pause_b));
    wait_for_pause(pause_a.path(), "ingest-after-upload", 1);
    wait_for_pause(pause_b.path(), "ingest-after-upload", 1);
    assert_eq!(s3.commits().len(), 0);
    std::fs::write(pause_a.path().join("ingest-after-upload.1.go"), b"").unwrap();
    std::fs::write(pause_b.path().join("ingest-after-upload.1.go"), b"").unwrap();
    let mut outputs = Vec::new();
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        outputs.push(String::from_utf8(out.stdout).unwrap());
    }
    let raced = format!("skipped {}: already in the lake (commit 1, as {}; committed by another ingest while this one read it)", file(2), file(2));
    assert_eq!(outputs.iter().filter(|o| o.contains(&raced)).count(), 1, "{outputs:#?}");
    let commits = s3.commits();
    assert_eq!(commits.len(), 3, "{outputs:#?}");
    let hashes: BTreeSet<&str> = commits.iter().map(|c| c["input"]["hash"].as_str().unwrap()).collect();
    assert_eq!(hashes.len(), 3, "an input committed twice");
    // The loser removed the files it had uploaded.
    let data: BTreeSet<String> = s3.objects().into_iter().filter(|o| is_data_object(o)).collect();
    assert_eq!(data, s3.named());
    assert_eq!(counts(&s3), want);
}

#[test]
fn a_killed_ingest_on_s3_leaves_whole_inputs_and_a_rerun_completes_it() {
    let dir = small_inputs(3);
    let dir_arg = dir.path().to_str().unwrap();
    let reference = TempDir::new().unwrap();
    cimlake_ok(reference.path(), &["ingest", "-j", "1", dir_arg]);
    let totals = query(&|a: &[&str]| cimlake_ok(reference.path(), a), "SELECT (SELECT count(*) FROM endpoint.processes) AS p, (SELECT count(*) FROM network_traffic.all_traffic) AS t");
    let first = query(
        &|a: &[&str]| cimlake_ok(reference.path(), a),
        "SELECT (SELECT count(*) FROM endpoint.processes WHERE source LIKE '%input-0.log') AS p, \
         (SELECT count(*) FROM network_traffic.all_traffic WHERE source LIKE '%input-0.log') AS t",
    );
    for (fault, commits_left, orphans) in [
        // The second input's files uploaded, its commit not created: the bucket holds objects no
        // commit names, which no reader reads.
        ("ingest-after-upload@2:kill", 1, true),
        ("ingest-after-commit@1:kill", 1, false),
    ] {
        let s3 = S3Lake::new("kill");
        let status = s3.command(&["ingest", "-j", "1", dir_arg]).env("CIMLAKE_FAULT", fault).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{fault}: {status}");
        assert_eq!(s3.commits().len(), commits_left, "{fault}");
        let data: BTreeSet<String> = s3.objects().into_iter().filter(|o| is_data_object(o)).collect();
        assert_eq!(data != s3.named(), orphans, "{fault}");
        assert_eq!(counts(&s3), first, "{fault}: a reader sees the first input whole, nothing of the second");
        // Vacuum removes what the killed ingest uploaded and no commit names, and nothing else.
        let before = s3.objects();
        let vacuumed = s3.run_ok(&["lake", "vacuum", "--retention", "0"]);
        let after = s3.objects();
        let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
        let unnamed: BTreeSet<String> = data.difference(&s3.named()).cloned().collect();
        assert_eq!(gone, unnamed, "{fault}: {vacuumed}");
        assert_eq!(vacuumed.lines().filter(|l| l.starts_with("removed ")).count(), unnamed.len() + 1, "{vacuumed}");
        assert_eq!(counts(&s3), first, "{fault}");
        s3.run_ok(&["ingest", "-j", "1", dir_arg]);
        assert_eq!(s3.commits().len(), 3, "{fault}");
        assert_eq!(counts(&s3), totals, "{fault}");
    }
}

#[test]
fn bad_lake_locations_are_refused_by_name() {
    let lake = Path::new("ftp://host/lake");
    let out = cimlake(lake, &["query", "SELECT 1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lake ftp://host/lake: ftp:// is not a store cimlake knows"), "{err}");
    // Lake commands on a lake that is not there yet say so.
    let s3 = S3Lake::new("empty");
    let out = s3.command(&["lake", "optimize"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("{}: no lake here", s3.url)), "{err}");
    s3.run_ok(&["ingest", "data/logs/sysmon"]);
    let history = s3.run_ok(&["lake", "history", "endpoint.processes"]);
    assert!(history.lines().count() >= 3, "{history}");
}

#[test]
fn optimize_on_s3_leaves_one_file_per_partition_with_the_same_rows_and_vacuum_frees_the_rest() {
    let dir = small_inputs(6);
    let s3 = S3Lake::new("optimize");
    s3.run_ok(&["ingest", dir.path().to_str().unwrap()]);
    let before = counts(&s3);
    let detect = s3.run_ok(&["detect", "--format", "csv"]);
    let partitions = |files: &BTreeSet<String>| -> BTreeSet<String> { files.iter().map(|f| f.rsplit_once('/').unwrap().0.to_string()).collect() };
    let data = |s3: &S3Lake| -> BTreeSet<String> { s3.objects().into_iter().filter(|o| is_data_object(o)).collect() };
    let small = data(&s3);
    assert!(small.len() > partitions(&small).len() * 2, "{} files in {} partitions", small.len(), partitions(&small).len());

    let out = s3.run_ok(&["lake", "optimize"]);
    assert!(out.contains("compaction 1 published"), "{out}");
    assert_eq!(counts(&s3), before);
    assert_eq!(s3.run_ok(&["detect", "--format", "csv"]), detect);
    // The replaced files stay until vacuum; then each partition has one file.
    let vacuumed = s3.run_ok(&["lake", "vacuum", "--retention", "0"]);
    let left = data(&s3);
    assert_eq!(left.len(), partitions(&left).len(), "{vacuumed}");
    assert_eq!(partitions(&left), partitions(&small));
    assert_eq!(counts(&s3), before);
    assert_eq!(s3.run_ok(&["detect", "--format", "csv"]), detect);
    // Outside readers follow: the Delta log's OPTIMIZE version names the merged files only.
    let env = env();
    let out = Command::new(python())
        .arg(repo().join("tests/delta/read.py"))
        .arg(format!("{}/endpoint/processes", s3.url))
        .arg("_time")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"].as_u64().unwrap().to_string(), before.lines().nth(1).unwrap().split(',').next().unwrap());
    // Nothing left to merge.
    assert!(s3.run_ok(&["lake", "optimize"]).contains("nothing to merge"));
}

#[test]
fn two_optimizes_on_two_machines_replace_the_files_once() {
    let dir = small_inputs(4);
    let s3 = S3Lake::new("optimize-race");
    s3.run_ok(&["ingest", dir.path().to_str().unwrap()]);
    let before = counts(&s3);
    // Both merge the same partitions and stop before publishing; then both publish.
    let (pause_a, pause_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let spawn = |pause: &TempDir| -> Child {
        let mut cmd = s3.command(&["lake", "optimize"]);
        cmd.env("CIMLAKE_STAGING", TempDir::new().unwrap().keep())
            .env("CIMLAKE_FAULT", format!("optimize-before-publish@1:wait={}", pause.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let (a, b) = (spawn(&pause_a), spawn(&pause_b));
    wait_for_pause(pause_a.path(), "optimize-before-publish", 1);
    wait_for_pause(pause_b.path(), "optimize-before-publish", 1);
    std::fs::write(pause_a.path().join("optimize-before-publish.1.go"), b"").unwrap();
    let a = a.wait_with_output().unwrap();
    std::fs::write(pause_b.path().join("optimize-before-publish.1.go"), b"").unwrap();
    let b = b.wait_with_output().unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(!b.status.success(), "the second optimize published too:\n{}", String::from_utf8_lossy(&b.stdout));
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(err.contains("compaction 1 merged some of the same files first; nothing was replaced"), "{err}");
    assert_eq!(counts(&s3), before, "rows twice after two compactions of the same files");
    // The refused one's merged files were removed; vacuum leaves one file per partition.
    s3.run_ok(&["lake", "vacuum", "--retention", "0"]);
    let data: BTreeSet<String> = s3.objects().into_iter().filter(|o| is_data_object(o)).collect();
    let partitions: BTreeSet<&str> = data.iter().map(|f| f.rsplit_once('/').unwrap().0).collect();
    assert_eq!(data.len(), partitions.len(), "{data:?}");
    assert_eq!(counts(&s3), before);
}
