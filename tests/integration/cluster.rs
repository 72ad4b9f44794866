//! `--engine ballista://…`: a real Ballista scheduler and two executors, started from the
//! `cimlake` binary on loopback, give exactly the rows the in-process engine gives.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

const DETECTION: &str = "windows_http_network_communication_from_msiexec";

/// A scheduler and its executors, each a `cimlake cluster …` process, stopped when it is dropped
/// ([`Daemons`]).
pub struct Cluster {
    daemons: Daemons,
    scheduler: String,
    /// Set in every process of the cluster (an object store's settings).
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts a scheduler on a free loopback port and `executors` executors, and waits until every
    /// executor has registered.
    fn start(executors: usize) -> Cluster {
        Cluster::start_with(executors, &[])
    }

    /// Like [`Cluster::start`], with environment variables for the scheduler and executors.
    pub fn start_with(executors: usize, env: &[(&str, &str)]) -> Cluster {
        let mut cluster = Cluster::empty();
        cluster.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lines = cluster.spawn_scheduler("127.0.0.1:0");
        cluster.wait_for_scheduler(&lines);
        let waiting: Vec<_> = (0..executors).map(|i| cluster.spawn_executor(i, &cluster.scheduler.clone())).collect();
        for (i, lines) in waiting.iter().enumerate() {
            cluster.daemons.wait_for(lines, &format!("executor{i}"), |l| l.contains(" registered with "));
        }
        cluster
    }

    fn empty() -> Cluster {
        Cluster { daemons: Daemons::new(), scheduler: String::new(), env: Vec::new() }
    }

    fn spawn_scheduler(&mut self, bind: &str) -> mpsc::Receiver<String> {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.daemons.spawn_with("scheduler", &["cluster", "scheduler", "--bind", bind], &env)
    }

    fn wait_for_scheduler(&mut self, lines: &mpsc::Receiver<String>) {
        let line = self.daemons.wait_for(lines, "scheduler", |l| l.starts_with("scheduler listening on "));
        self.scheduler = line.trim_start_matches("scheduler listening on ").to_string();
    }

    fn spawn_executor(&mut self, i: usize, scheduler: &str) -> mpsc::Receiver<String> {
        let name = format!("executor{i}");
        let work = self.daemons.dir().join(&name);
        let args = ["cluster", "executor", "--scheduler", scheduler, "--bind", "127.0.0.1:0", "--vcores", "2", "--work-dir", work.to_str().unwrap()];
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.daemons.spawn_with(&name, &args, &env)
    }

    pub fn engine(&self) -> String {
        format!("ballista://{}", self.scheduler)
    }

    /// `cimlake --lake LAKE ARGS… --engine ballista://…`, asserting success; returns stdout. Four
    /// partitions per stage instead of 16 keep the tasks few on a small test machine.
    fn run_ok(&self, lake: &Path, args: &[&str]) -> String {
        let out = command(lake, args)
            .args(["--engine", &self.engine()])
            .env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "4")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cimlake {args:?} on the cluster failed ({}):\n{stderr}", out.status);
        String::from_utf8(out.stdout).unwrap()
    }
}

/// `cimlake ARGS…` on the lake, once in process and once on the cluster: the same stdout.
fn same_on_both(cluster: &Cluster, lake: &Path, args: &[&str]) -> String {
    let local = cimlake_ok(lake, args);
    let remote = cluster.run_ok(lake, args);
    assert_eq!(remote, local, "cimlake {args:?}: the cluster's output differs from in-process");
    local
}

/// A generated day (planted positives included) plus the bundled samples (NVM, missing process
/// ids, a damaged EVTX file with quarantined records), and the detection rows the planted
/// positives give.
fn test_lake() -> (TempDir, Vec<String>) {
    let lake = TempDir::new().unwrap();
    let out = TempDir::new().unwrap();
    let out_dir = out.path().to_str().unwrap();
    let gen_args = ["gen", "--seed", "7", "--hosts", "40", "--processes", "20000", "--hours", "24", "--positives", "12", "-o", out_dir];
    cimlake_ok(lake.path(), &gen_args);
    cimlake_ok(lake.path(), &["ingest", "data/logs"]);
    let expected = std::fs::read_to_string(out.path().join("expected.csv")).unwrap().lines().skip(1).map(str::to_string).collect();
    (lake, expected)
}

#[test]
fn a_ballista_cluster_gives_the_rows_the_in_process_engine_gives() {
    let (lake, planted) = test_lake();
    let cluster = Cluster::start(2);
    let lake = lake.path();

    // Every planted positive is found on the cluster.
    let sql = format!("SELECT dest, process_id, process_guid, dest_ip, dest_port, count FROM detect.{DETECTION} ORDER BY 1, 2, 3, 4, 5");
    let found = same_on_both(&cluster, lake, &["query", &sql, "--format", "csv"]);
    assert!(planted.len() >= 12, "{planted:?}");
    for row in &planted {
        assert!(found.lines().any(|l| l == row), "planted positive {row} not found:\n{found}");
    }

    // A relative lake path: the client's working directory is not the cluster's.
    let count = ["query", "SELECT count(*) AS n FROM network_traffic.all_traffic", "--format", "csv"];
    let out = command(Path::new(lake.file_name().unwrap()), &count)
        .current_dir(lake.parent().unwrap())
        .args(["--engine", &cluster.engine()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), cimlake_ok(lake, &count));

    // The detection, both modes, over all time and over one window.
    for mode in ["cimlake", "splunk"] {
        let out = same_on_both(&cluster, lake, &["detect", "--mode", mode, "--format", "csv"]);
        assert!(out.lines().count() > 12, "{mode}: too few rows for 12 planted positives:\n{out}");
        let window = ["detect", "--mode", mode, "--format", "csv", "--earliest", "2026-11-02T06:00:00Z", "--latest", "2026-11-02T18:00:00Z"];
        same_on_both(&cluster, lake, &window);
    }

    // Every SigmaHQ rule of both log sources, over all time and over one window: the plan carries
    // the rules, the executors match the rows they scan, and the matches are the in-process ones.
    let rules = corpus().join("sigma/rules/windows");
    let rules = rules.to_str().unwrap();
    let all = same_on_both(&cluster, lake, &["detect", "--sql-dir", rules, "--detection", "sigma:process_creation", "--format", "csv"]);
    let window = ["--earliest", "2026-11-02T06:00:00Z", "--latest", "2026-11-02T18:00:00Z"];
    let part = same_on_both(&cluster, lake, &[&["detect", "--sql-dir", rules, "--detection", "sigma:process_creation", "--format", "csv"][..], &window].concat());
    assert!(part.lines().count() > 1 && part.lines().count() < all.lines().count(), "{part}\n{all}");
    same_on_both(&cluster, lake, &["detect", "--sql-dir", rules, "--detection", "sigma:network_connection", "--format", "csv"]);
    let explain = cluster.run_ok(lake, &["detect", "--sql-dir", rules, "--detection", "sigma", "--explain"]);
    assert!(explain.contains("SigmaMatch: 1182 process_creation rules") && explain.contains("on the executors"), "{explain}");
    assert!(!cimlake_ok(lake, &["detect", "--sql-dir", rules, "--detection", "sigma", "--explain"]).contains("SigmaMatch"));

    // Queries over every kind of table: CIM, quarantine, a detection view, a join, windows.
    let queries = [
        "SELECT count(*) AS n, count(DISTINCT dest) AS hosts, min(_time) AS first, max(_time) AS last FROM endpoint.processes",
        "SELECT dvc, dest_port, count(*) AS flows, sum(bytes_out) AS bytes FROM network_traffic.all_traffic GROUP BY dvc, dest_port ORDER BY flows DESC, dvc, dest_port LIMIT 20",
        "SELECT source, reason, count(*) AS n FROM quarantine.records GROUP BY source, reason ORDER BY source, reason",
        &format!("SELECT dest, process_id, dest_ip, dest_port, count FROM detect.{DETECTION} ORDER BY dest, process_id, dest_ip, dest_port"),
        &format!("SELECT count(*) AS n FROM detect_splunk.{DETECTION}"),
        "SELECT p.process_name, count(*) AS flows FROM endpoint.processes p JOIN network_traffic.all_traffic t \
         ON p.dest = t.dvc AND p.process_id = t.process_id GROUP BY p.process_name ORDER BY flows DESC, p.process_name LIMIT 10",
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema <> 'information_schema' ORDER BY 1, 2",
        "SELECT dest, process_name, row_number() OVER (PARTITION BY dest ORDER BY _time, process_id) AS nth \
         FROM endpoint.processes WHERE process_name = 'msiexec.exe' ORDER BY dest, nth LIMIT 50",
    ];
    for sql in queries {
        let out = same_on_both(&cluster, lake, &["query", sql, "--format", "csv"]);
        assert!(out.lines().count() > 1, "{sql}: no rows");
    }

    // Scheduled runs on the cluster write the results the in-process scheduler writes; the
    // derived tables and cimlake.runs (an in-memory table) are then queried on the cluster.
    let copy = TempDir::new().unwrap();
    copy_dir(lake, copy.path());
    let backfill = ["schedule", "--once", "--now", "2026-11-03T00:00:00Z", "--backfill", "2026-11-02T06:00:00Z", "2026-11-02T12:00:00Z"];
    let local = cimlake_ok(lake, &backfill);
    let remote = cluster.run_ok(copy.path(), &backfill);
    assert_eq!(local.lines().filter(|l| l.starts_with("ran ")).count(), remote.lines().filter(|l| l.starts_with("ran ")).count(), "{local}\n{remote}");
    assert!(!remote.contains("FAILED"), "{remote}");
    let results = "SELECT window_earliest, dest, process_id, dest_ip, dest_port, count FROM detections.results \
                   ORDER BY window_earliest, dest, process_id, dest_ip, dest_port";
    let runs = "SELECT job, mode, trigger, window_earliest, status, rows_read_processes, rows_read_all_traffic, results, risk_events \
                FROM cimlake.runs ORDER BY window_earliest, job";
    let risk = "SELECT risk_object, risk_object_type, sum(risk_score) AS score FROM risk.all_risk GROUP BY 1, 2 ORDER BY 1, 2";
    for sql in [results, runs, risk] {
        let expected = cimlake_ok(lake, &["query", sql, "--format", "csv"]);
        assert!(expected.lines().count() > 1, "{sql}: no rows");
        let on_cluster = cluster.run_ok(copy.path(), &["query", sql, "--format", "csv"]);
        assert_eq!(on_cluster, expected, "{sql}");
    }

    // Stopping by process id leaves nothing running.
    let pids = cluster.daemons.pids();
    drop(cluster);
    for pid in pids {
        assert!(!alive(pid), "process {pid} still running after the cluster was stopped");
    }
}

#[test]
fn a_cluster_engine_that_cannot_be_used_is_a_clear_error() {
    let lake = sample_lake();
    // Nothing listens on port 1.
    let out = cimlake(lake, &["query", "SELECT 1", "--engine", "ballista://127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot reach the Ballista scheduler at 127.0.0.1:1"), "{stderr}");
    let out = cimlake(lake, &["detect", "--memory-limit", "64M", "--engine", "ballista://127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cluster executor --memory-limit"), "{stderr}");
    let out = cimlake(lake, &["query", "SELECT 1", "--engine", "spark://x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("unknown engine"), "{stderr}");
    // A scheduler on every address must be told the address executors reach it at.
    let out = cimlake(lake, &["cluster", "scheduler", "--bind", "0.0.0.0:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("give --external-host"), "{stderr}");
    let out = cimlake(lake, &["cluster", "executor", "--scheduler", "127.0.0.1:1", "--bind", "localhost:50051"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--bind \"localhost:50051\"") && stderr.contains("expected IP:PORT"), "{stderr}");
}

#[test]
fn an_executor_waits_for_a_scheduler_that_starts_after_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let mut cluster = Cluster::empty();
    let executor = cluster.spawn_executor(0, &address);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(cluster.daemons.log("executor0")).unwrap().contains(&format!("waiting for the scheduler at {address}")) {
        assert!(Instant::now() < deadline, "the executor did not say it was waiting");
        std::thread::sleep(Duration::from_millis(20));
    }
    let scheduler = cluster.spawn_scheduler(&address);
    cluster.wait_for_scheduler(&scheduler);
    cluster.daemons.wait_for(&executor, "executor0", |l| l.contains(" registered with "));
    let out = cluster.run_ok(sample_lake(), &["query", "SELECT count(*) AS n FROM endpoint.processes"]);
    assert_eq!(out, cimlake_ok(sample_lake(), &["query", "SELECT count(*) AS n FROM endpoint.processes"]));

    // Without a scheduler, an executor gives up after --wait seconds, naming the address.
    let out = cimlake(sample_lake(), &["cluster", "executor", "--scheduler", "127.0.0.1:1", "--bind", "127.0.0.1:0", "--wait", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("no Ballista scheduler at 127.0.0.1:1 after 1 s"), "{stderr}");
}
