//! `cimlake serve`: a real Flight SQL server on loopback, queried with a third-party client (the
//! ADBC Flight SQL driver, from Python: `tests/flightsql/client.py`), must give `cimlake query`'s
//! rows, refuse writes and wrong credentials, and stop queries that run too long or whose client
//! has gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

const DETECTION: &str = "windows_http_network_communication_from_msiexec";
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// The Python of a virtual environment holding the client: `CIMLAKE_TEST_PYTHON` (set by
/// `.ci/run`), else made here by `tests/flightsql/venv.sh` (Python 3 and PyPI needed).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| setup_python("CIMLAKE_TEST_PYTHON", "tests/flightsql/venv.sh", "the Python client"))
}

/// A running `cimlake serve`, stopped when dropped.
pub struct Server {
    daemons: Daemons,
    /// `grpc://127.0.0.1:PORT` or `grpc+tls://…`.
    pub url: String,
    /// The line it printed when it started listening.
    pub banner: String,
}

impl Server {
    pub fn start(lake: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_limited(lake, args, env, None)
    }

    /// A server whose process may hold at most `open_files` files open.
    pub fn start_limited(lake: &Path, args: &[&str], env: &[(&str, &str)], open_files: impl Into<Option<u64>>) -> Server {
        let mut daemons = Daemons::new();
        let mut all = vec!["--lake", lake.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let lines = daemons.spawn_limited("serve", &all, env, open_files.into());
        let line = daemons.wait_for(&lines, "serve", |l| l.starts_with("serving Flight SQL on "));
        let url = line.trim_start_matches("serving Flight SQL on ").split(' ').next().unwrap().to_string();
        Server { daemons, url, banner: line }
    }

    /// The server's log so far, whole lines only (the server may be writing the next one).
    pub fn log(&self) -> String {
        let mut log = std::fs::read_to_string(self.daemons.log("serve")).unwrap();
        log.truncate(log.rfind('\n').map_or(0, |i| i + 1));
        log
    }

    /// Waits up to `secs` for a server log line containing `text`.
    pub fn wait_for_log(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(text)) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no server log line with {text:?} in {secs} s:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.daemons.pids()[0]
    }

    /// `client.py URL AUTH… ACTION…`, killed after two minutes (a query that is never stopped
    /// fails the test instead of hanging it).
    pub fn client(&self, auth: &[&str], action: &[&str]) -> Output {
        self.client_within(auth, action, 120)
    }

    /// [`Server::client`], killed after `seconds`.
    pub fn client_within(&self, auth: &[&str], action: &[&str], seconds: u32) -> Output {
        let mut cmd = Command::new("timeout");
        cmd.args(["--signal=KILL", &seconds.to_string()]);
        let out = self.client_args(cmd, auth, action).output().expect("timeout(1) and python run");
        assert_ne!(out.status.code(), None, "client {action:?} still running after {seconds} s; server log:\n{}", self.log());
        out
    }

    /// `cmd PYTHON client.py URL AUTH… ACTION…`, or `PYTHON client.py …` when `cmd` is Python.
    pub fn client_args(&self, mut cmd: Command, auth: &[&str], action: &[&str]) -> Command {
        if cmd.get_program() != python() {
            cmd.arg(python());
        }
        cmd.arg(repo().join("tests/flightsql/client.py")).arg(&self.url).args(auth).args(action);
        cmd
    }

    pub fn client_ok(&self, auth: &[&str], action: &[&str]) -> String {
        let out = self.client(auth, action);
        assert!(
            out.status.success(),
            "client {action:?} failed ({}):\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The client's error message for a call that must fail.
    pub fn client_err(&self, auth: &[&str], action: &[&str]) -> String {
        let out = self.client(auth, action);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "client {action:?} should fail with a driver error:\n{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        stderr
    }

    /// A client that runs `sql`, reads its first batch, then holds the query for `secs` seconds
    /// without reading (returned once it has read that batch).
    pub fn stall(&self, auth: &[&str], sql: &str, secs: u32) -> std::process::Child {
        let mut stall = self
            .client_args(Command::new(python()), auth, &["stall", sql, &secs.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stall.stdout.as_mut().unwrap()), &mut first).unwrap();
        assert!(first.starts_with("read "), "{first}");
        stall
    }

    /// Runs `sql` through the client and returns its rows as `cimlake query --format json` writes them.
    pub fn query_rows(&self, auth: &[&str], sql: &str) -> String {
        let dir = TempDir::new().unwrap();
        let ipc = dir.path().join("result.arrow");
        self.client_ok(auth, &["query", sql, ipc.to_str().unwrap()]);
        arrow_file_as_json(&ipc)
    }
}

/// An Arrow IPC file the client wrote, as JSON lines from cimlake's own writer.
fn arrow_file_as_json(path: &Path) -> String {
    let reader = arrow::ipc::reader::FileReader::try_new(std::fs::File::open(path).unwrap(), None).unwrap();
    let schema = reader.schema();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    let json = path.with_extension("json");
    cimlake::output::write(&batches, schema, cimlake::output::Format::Json, Some(&json)).unwrap();
    std::fs::read_to_string(json).unwrap()
}

/// `cimlake query SQL --format json`.
fn cli_rows(lake: &Path, sql: &str) -> String {
    cimlake_ok(lake, &["query", sql, "--format", "json"])
}

fn cli_csv(lake: &Path, sql: &str) -> String {
    cimlake_ok(lake, &["query", sql, "--format", "csv"])
}

/// Six generated hours (four planted positives), the bundled samples, and the scheduled runs of
/// those hours: CIM tables, detection results, risk events and runs all have rows.
fn served_lake() -> TempDir {
    let lake = TempDir::new().unwrap();
    let out = TempDir::new().unwrap();
    let gen_args = ["gen", "--seed", "11", "--hosts", "8", "--processes", "2000", "--hours", "6", "--positives", "4", "-o", out.path().to_str().unwrap()];
    cimlake_ok(lake.path(), &gen_args);
    cimlake_ok(lake.path(), &["ingest", "data/logs"]);
    let backfill = ["schedule", "--once", "--now", "2026-11-02T07:00:00Z", "--backfill", "2026-11-02T00:00:00Z", "2026-11-02T06:00:00Z"];
    let ran = cimlake_ok(lake.path(), &backfill);
    assert!(!ran.contains("FAILED"), "{ran}");
    lake
}

#[test]
fn a_flight_sql_client_gets_the_rows_cimlake_query_gives() {
    let lake = served_lake();
    let lake = lake.path();
    let server = Server::start(lake, &[], &[("CIMLAKE_TOKEN", TOKEN)]);
    let auth = ["--token", TOKEN];

    // The MSIExec detection's results, as scheduled runs wrote them and as the live view gives
    // them, and the other derived tables.
    let results = "SELECT window_earliest, dest, process_id, process_name, dest_ip, dest_port, count, \"firstTime\", \"lastTime\" \
                   FROM detections.results ORDER BY window_earliest, dest, process_id, dest_ip, dest_port";
    let queries = [
        results.to_string(),
        format!("SELECT * FROM detect.{DETECTION} ORDER BY dest, process_id, dest_ip, dest_port, source, source_record"),
        "SELECT * FROM risk.all_risk ORDER BY _time, risk_object, risk_message".to_string(),
        "SELECT job, mode, window_earliest, status, results, risk_events, current FROM cimlake.runs ORDER BY seq".to_string(),
        "SELECT dest, count(*) AS n, min(_time) AS first FROM endpoint.processes GROUP BY dest ORDER BY dest".to_string(),
    ];
    for sql in &queries {
        let served = server.query_rows(&auth, sql);
        assert_eq!(served, cli_rows(lake, sql), "{sql}: the Flight SQL rows differ from cimlake query's");
        assert!(served.lines().count() > 1, "{sql}: too few rows:\n{served}");
    }
    let scheduled = server.query_rows(&auth, results);
    assert!(scheduled.lines().count() >= 4, "the scheduled runs found the planted positives:\n{scheduled}");

    // A prepared statement with parameters, ? and $n styles: the rows the literal query gives.
    let dir = TempDir::new().unwrap();
    let literal = "SELECT dest, process_id, process_name, process FROM endpoint.processes \
                   WHERE process_name = 'msiexec.exe' AND process_id > 1000 ORDER BY dest, process_id, process";
    let expected = cli_rows(lake, literal);
    assert!(expected.lines().count() > 1, "{expected}");
    for (i, sql) in [literal.replace("'msiexec.exe'", "?").replace("1000", "?"), literal.replace("'msiexec.exe'", "$1").replace("1000", "$2")]
        .iter()
        .enumerate()
    {
        let out = dir.path().join(format!("prepared{i}.arrow"));
        server.client_ok(&auth, &["prepared", sql, r#"["msiexec.exe", 1000]"#, out.to_str().unwrap()]);
        assert_eq!(arrow_file_as_json(&out), expected, "{sql}");
    }
    let err = server.client_err(&auth, &["prepared", &literal.replace("1000", "?"), "[1, 2]", dir.path().join("x").to_str().unwrap()]);
    assert!(err.contains("InvalidArgument"), "two values for one placeholder:\n{err}");

    // The catalog, as a generic client browses it: every lake table and detection view, with the
    // columns information_schema lists.
    let objects_path = dir.path().join("objects.json");
    server.client_ok(&auth, &["objects", objects_path.to_str().unwrap()]);
    let objects: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&objects_path).unwrap()).unwrap();
    let columns = cli_csv(
        lake,
        "SELECT table_schema, table_name, column_name FROM information_schema.columns \
         WHERE table_schema <> 'information_schema' ORDER BY table_schema, table_name, ordinal_position",
    );
    let mut expected: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in columns.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        expected.entry((f[0].to_string(), f[1].to_string())).or_default().push(f[2].to_string());
    }
    for table in ["endpoint.processes", "network_traffic.all_traffic", "detections.results", "risk.all_risk", "risk.incidents", "cimlake.runs", "quarantine.records"] {
        let (s, t) = table.split_once('.').unwrap();
        assert!(expected.contains_key(&(s.into(), t.into())), "{table} missing from information_schema:\n{columns}");
    }
    for ((schema, table), cols) in &expected {
        let served = &objects["datafusion"][schema][table];
        assert_eq!(served["columns"], serde_json::json!(cols), "{schema}.{table}: served columns:\n{objects:#}");
        let kind = if schema == "detect" || schema == "detect_splunk" { "VIEW" } else { "TABLE" };
        assert_eq!(served["type"], kind, "{schema}.{table}");
    }
    let schema = server.client_ok(&auth, &["table-schema", "network_traffic", "all_traffic"]);
    assert!(schema.contains(r#"["dest_port", "int32"]"#) && schema.contains(r#"["process_name", "string"]"#), "{schema}");
    let info = server.client_ok(&auth, &["info"]);
    assert!(info.contains(r#""vendor_name": "cimlake""#), "{info}");

    // Writes, and reads of files outside the lake, are refused; nothing is written.
    let outside = dir.path().join("copied.csv");
    let refused = [
        "INSERT INTO endpoint.processes SELECT * FROM endpoint.processes".to_string(),
        format!("COPY (SELECT * FROM endpoint.processes) TO '{}'", outside.display()),
        "CREATE EXTERNAL TABLE secrets STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        "DROP TABLE endpoint.processes".to_string(),
        "SET datafusion.execution.target_partitions = 1".to_string(),
    ];
    for sql in &refused {
        let err = server.client_err(&auth, &["query", sql, dir.path().join("x").to_str().unwrap()]);
        assert!(err.contains("the server is read-only") && err.contains("PermissionDenied"), "{sql}:\n{err}");
    }
    assert!(!outside.exists(), "COPY wrote {}", outside.display());
    let err = server.client_err(&auth, &["query", "SELECT * FROM '/etc/passwd'", dir.path().join("x").to_str().unwrap()]);
    assert!(err.contains("not found"), "a path as a table:\n{err}");
    assert_eq!(cli_rows(lake, "SELECT count(*) AS n FROM endpoint.processes"), server.query_rows(&auth, "SELECT count(*) AS n FROM endpoint.processes"));

    // Wrong or missing credentials are refused.
    let err = server.client_err(&["--token", "test-token-0123456789abcdeX"], &["info"]);
    assert!(err.contains("wrong or expired token"), "{err}");
    let err = server.client_err(&[], &["query", "SELECT 1", dir.path().join("x").to_str().unwrap()]);
    assert!(err.contains("no credentials were sent"), "{err}");

    // New data is served as it lands: the next query sees a new commit.
    let before = server.query_rows(&auth, "SELECT count(*) AS n FROM endpoint.processes");
    let more = TempDir::new().unwrap();
    cimlake_ok(lake, &["gen", "--seed", "12", "--hosts", "2", "--processes", "50", "--hours", "1", "--positives", "0", "-o", more.path().to_str().unwrap()]);
    let after = server.query_rows(&auth, "SELECT count(*) AS n FROM endpoint.processes");
    assert_ne!(after, before);
    assert_eq!(after, cli_rows(lake, "SELECT count(*) AS n FROM endpoint.processes"));

    // Every query is in the server's log, with who ran it and how it ended.
    let log = server.log();
    assert!(log.contains("(token from 127.0.0.1:") && log.contains(": ok, "), "{log}");
    assert!(log.contains("refused: the server is read-only"), "{log}");
}

#[test]
fn serve_stops_queries_over_time_or_whose_client_went_away() {
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", "data/logs/sysmon"]);
    let env = [("CIMLAKE_PASSWORD", "correct horse battery")];
    let server = Server::start(lake.path(), &["--user", "analyst", "--query-timeout", "3s", "--max-queries", "1"], &env);
    let auth = ["--user", "analyst", "--password", "correct horse battery"];
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("x.arrow");
    let out = out.to_str().unwrap();

    // A user and password log in (a handshake, then the session token); a wrong password does not.
    assert_eq!(server.query_rows(&auth, "SELECT count(*) AS n FROM endpoint.processes"), cli_rows(lake.path(), "SELECT count(*) AS n FROM endpoint.processes"));
    let err = server.client_err(&["--user", "analyst", "--password", "wrong"], &["info"]);
    assert!(err.contains("wrong user or password"), "{err}");
    assert!(server.log().contains("(user analyst from 127.0.0.1:"), "{}", server.log());

    // Over its timeout, a query is cancelled: the client is told, and the server stops working on it.
    let endless = "SELECT count(*) AS n FROM generate_series(1, 1000000000000)";
    let started = Instant::now();
    let err = server.client_err(&auth, &["query", endless, out]);
    assert!(err.contains("query timeout (3 s)") && err.contains("DeadlineExceeded"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "the timeout took {:?}", started.elapsed());
    server.wait_for_log("cancelled after 0 rows: over the query timeout (3 s)", 5);
    assert_idle(&server);

    // A client that goes away mid-stream stops its query.
    let streaming = "SELECT value FROM generate_series(1, 1000000000000)";
    let read = server.client_ok(&auth, &["partial", streaming]);
    assert!(read.starts_with("read "), "{read}");
    let line = server.wait_for_log("the client went away", 10);
    assert!(line.contains(streaming), "{line}");
    assert_idle(&server);

    // A client that stays connected but stops reading does not hold its query past the timeout;
    // meanwhile (one query at a time) the next query waits for its slot.
    let stalled = "SELECT value AS stalled FROM generate_series(1, 1000000000000)";
    let mut stall = server.stall(&auth, stalled, 60);
    assert_eq!(server.query_rows(&auth, "SELECT 1 AS waited"), "{\"waited\":1}\n");
    let log = server.log();
    let cancelled = log.lines().position(|l| l.contains(stalled) && l.contains("cancelled after"));
    let waited = log.lines().position(|l| l.contains("SELECT 1 AS waited") && l.contains(": ok, 1 rows"));
    assert!(cancelled.is_some() && waited.is_some() && cancelled < waited, "the stalled query was not cancelled before the next ran:\n{log}");
    stall.kill().ok();
    stall.wait().ok();

    // Over its memory limit, a query fails (a hash join's build side cannot spill); the next runs.
    // A server of its own, with time enough for a slow machine to reach the limit.
    let server = Server::start(lake.path(), &["--user", "analyst", "--memory-limit", "32M"], &env);
    let join = "SELECT count(*) FROM generate_series(1, 5000000) a JOIN generate_series(1, 5000000) b ON a.value = b.value";
    let err = server.client_err(&auth, &["query", join, out]);
    assert!(err.contains("memory limit") && err.contains("ResourceExhausted"), "{err}");
    assert_eq!(server.query_rows(&auth, "SELECT 1 AS one"), "{\"one\":1}\n");
}

/// The server uses (almost) no CPU for a second: no query is still running.
fn assert_idle(server: &Server) {
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(server.pid()) - before;
    assert!(used * 5 < ticks_per_second, "the server used {used} ticks of CPU in a second: a query is still running\n{}", server.log());
}

#[test]
fn serve_over_tls_and_what_it_refuses_to_start_with() {
    let lake = sample_lake();
    let tls = repo().join("tests/flightsql/tls");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    let server = Server::start(lake, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()], &[("CIMLAKE_TOKEN", TOKEN)]);
    assert!(server.url.starts_with("grpc+tls://127.0.0.1:"), "{}", server.url);
    let trusted = ["--token", TOKEN, "--tls-root", cert.to_str().unwrap()];
    let sql = "SELECT process_name, count(*) AS n FROM endpoint.processes GROUP BY process_name ORDER BY n DESC, process_name LIMIT 5";
    assert_eq!(server.query_rows(&trusted, sql), cli_rows(lake, sql));
    // Without the certificate, the client does not trust the server.
    let err = server.client_err(&["--token", TOKEN], &["info"]);
    assert!(err.contains("certificate"), "{err}");

    // Refused at start, with the reason.
    let cases: [(&[&str], &str); 7] = [
        (&[], "no credentials: give --token (or CIMLAKE_TOKEN) or --user"),
        (&["--listen", "0.0.0.0:0", "--no-auth"], "refusing to serve on 0.0.0.0:"),
        (&["--no-auth", "--token", TOKEN], "cannot be used with"),
        (&["--token", "short"], "the token is too short"),
        (&["--no-auth", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", key.to_str().unwrap()], "cannot read the TLS certificate /nonexistent/cert.pem"),
        (&["--no-auth", "--tls-cert", key.to_str().unwrap(), "--tls-key", cert.to_str().unwrap()], "bad TLS certificate"),
        (&["--user", "analyst"], "--password"),
    ];
    for (args, want) in cases {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        if !args.contains(&"--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        let out = command(lake, &all).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(want), "serve {args:?}: want {want:?}, got ({}):\n{stderr}", out.status);
    }
    // A password is held to a token's length.
    let out = command(lake, &["serve", "--listen", "127.0.0.1:0", "--user", "analyst"]).env("CIMLAKE_PASSWORD", "fifteen chars!!").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("the password of user \"analyst\" is too short"), "{stderr}");
    let missing = TempDir::new().unwrap();
    let out = command(&missing.path().join("nothing"), &["serve", "--listen", "127.0.0.1:0", "--no-auth"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lake at"), "{}", String::from_utf8_lossy(&out.stderr));
}
