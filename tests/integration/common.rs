//! Helpers shared by the integration tests.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/corpus`, beside the repository.
pub fn corpus() -> PathBuf {
    repo().join("../shared/corpus")
}

/// The bundled Sysmon sample directory.
pub fn sample_dir() -> PathBuf {
    repo().join("data/logs/sysmon")
}

/// `cimlake --lake LAKE ARGS…` from the repository root, with none of the user's `CIMLAKE_`
/// settings ([`without_user_settings`]).
pub fn command(lake: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cimlake"));
    cmd.arg("--lake").arg(lake).args(args).current_dir(repo());
    without_user_settings(&mut cmd);
    cmd
}

/// Removes the user's `CIMLAKE_` settings (every variable of that prefix) from a `cimlake`
/// command's environment.
pub fn without_user_settings(cmd: &mut Command) {
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("CIMLAKE_") {
            cmd.env_remove(var);
        }
    }
}

/// Runs `cimlake --lake LAKE ARGS…` from the repository root.
pub fn cimlake(lake: &Path, args: &[&str]) -> Output {
    command(lake, args).output().expect("cimlake runs")
}

/// Runs a command to its end, killing it (and failing the test) if it runs past `limit`: for
/// commands that must stop by themselves, such as a server refusing to start.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} still running after {limit:?}:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Like [`cimlake`], but asserts success and returns stdout.
pub fn cimlake_ok(lake: &Path, args: &[&str]) -> String {
    let out = cimlake(lake, args);
    assert!(
        out.status.success(),
        "cimlake {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A lake holding `data/logs/sysmon`, ingested once through the CLI and shared (read-only) by tests.
pub fn sample_lake() -> &'static Path {
    static LAKE: OnceLock<TempDir> = OnceLock::new();
    LAKE.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        // A relative path, so provenance columns do not depend on where the checkout is.
        cimlake_ok(dir.path(), &["ingest", "data/logs/sysmon"]);
        dir
    })
    .path()
}

/// Runs a query through the CLI and returns CSV lines (header first).
pub fn query_csv(lake: &Path, sql: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["query", sql, "--format", "csv"];
    args.extend_from_slice(extra);
    cimlake_ok(lake, &args).lines().map(str::to_string).collect()
}

/// The published records of one of the lake's record tables (`_cimlake/commits`,
/// `_cimlake/compactions`, `_cimlake/runs`) on disk, parsed, in number order; none when the table
/// does not exist. Read as any Delta reader would ([`delta_records`]), not through cimlake.
pub fn published_records(dir: &Path) -> Vec<serde_json::Value> {
    let logs: Vec<String> = match std::fs::read_dir(dir.join("_delta_log")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => return Vec::new(),
    };
    delta_records(logs, |rel| std::fs::read(dir.join(rel)).unwrap())
}

/// The records of a record table from its Delta log: `logs` names the files in `_delta_log/`,
/// `read` gives the bytes of a path relative to the table. The live files are those the log's
/// commits (`00000000000000000003.json`) add and do not remove; each is a Parquet file of `id`
/// and `record` (JSON). In number order.
pub fn delta_records(mut logs: Vec<String>, read: impl Fn(&str) -> Vec<u8>) -> Vec<serde_json::Value> {
    use arrow::array::{Array, AsArray};
    logs.retain(|n| n.len() == 25 && n.ends_with(".json"));
    logs.sort();
    let mut live = std::collections::BTreeSet::new();
    for log in logs {
        let text = String::from_utf8(read(&format!("_delta_log/{log}"))).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(p) = action.pointer("/add/path").and_then(|p| p.as_str()) {
                live.insert(p.to_string());
            }
            if let Some(p) = action.pointer("/remove/path").and_then(|p| p.as_str()) {
                live.remove(p);
            }
        }
    }
    let mut out: Vec<(i64, serde_json::Value)> = Vec::new();
    for file in live {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(read(&file))).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch.column_by_name("id").unwrap().as_primitive::<arrow::datatypes::Int64Type>().clone();
            let records = batch.column_by_name("record").unwrap().as_string::<i32>().clone();
            for i in 0..batch.num_rows() {
                assert!(!ids.is_null(i) && !records.is_null(i));
                out.push((ids.value(i), serde_json::from_str(records.value(i)).unwrap()));
            }
        }
    }
    out.sort_by_key(|(id, _)| *id);
    out.into_iter().map(|(_, r)| r).collect()
}

/// One Parquet file of records as the record tables hold them (`id`, `record` JSON).
pub fn record_file(records: &[(u64, serde_json::Value)]) -> Vec<u8> {
    use std::sync::Arc;
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, false),
        arrow::datatypes::Field::new("record", arrow::datatypes::DataType::Utf8, false),
    ]));
    let ids = arrow::array::Int64Array::from_iter_values(records.iter().map(|(id, _)| *id as i64));
    let texts = arrow::array::StringArray::from_iter_values(records.iter().map(|(_, r)| r.to_string()));
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(texts)]).unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

/// Rewrites record `id` of the record table in `dir` in place (a crafted record, as a hostile
/// writer could leave): its file keeps its name, so the Delta log still names it. Returns the file.
pub fn replace_record(dir: &Path, id: u64, record: &serde_json::Value) -> PathBuf {
    let prefix = format!("{id:08}-");
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix) && p.extension().is_some_and(|x| x == "parquet"))
        .unwrap_or_else(|| panic!("no file of record {id} in {}", dir.display()));
    std::fs::write(&file, record_file(&[(id, record.clone())])).unwrap();
    file
}

/// Makes `dir` a record table of one version holding `records` in one file, written by hand as
/// the Delta protocol lays it out (not by cimlake). Returns the file.
pub fn write_record_table(dir: &Path, records: &[(u64, serde_json::Value)]) -> PathBuf {
    std::fs::create_dir_all(dir.join("_delta_log")).unwrap();
    let bytes = record_file(records);
    let file = dir.join("00000001-crafted.parquet");
    std::fs::write(&file, &bytes).unwrap();
    let schema = r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":false,"metadata":{}},{"name":"record","type":"string","nullable":false,"metadata":{}}]}"#;
    let last = records.iter().map(|(id, _)| *id).max().unwrap_or(0);
    let actions = [
        serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
        serde_json::json!({"metaData": {"id": "00000000-0000-0000-0000-000000000001", "format": {"provider": "parquet", "options": {}},
            "schemaString": schema, "partitionColumns": [], "configuration": {}, "createdTime": 0}}),
        serde_json::json!({"txn": {"appId": "cimlake.record", "version": last}}),
        serde_json::json!({"add": {"path": "00000001-crafted.parquet", "partitionValues": {}, "size": bytes.len(), "modificationTime": 0, "dataChange": true}}),
    ];
    let log: String = actions.iter().map(|a| format!("{a}\n")).collect();
    std::fs::write(dir.join("_delta_log/00000000000000000000.json"), log).unwrap();
    file
}

/// The Parquet files under `dir`, at any depth (not Delta checkpoints).
pub fn parquet_files(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.ends_with("_delta_log") {
            continue;
        }
        if p.is_dir() {
            n += parquet_files(&p);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            n += 1;
        }
    }
    n
}

/// A fresh copy of the repository's `sql/` directory, for editing.
pub fn sql_copy() -> TempDir {
    let dir = TempDir::new().unwrap();
    copy_dir(&repo().join("sql"), dir.path());
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Long-running `cimlake` processes (a cluster's scheduler and executors, a Flight SQL server),
/// each with stdout read line by line and stderr kept in a log file. Dropping it (also when a test
/// fails) stops them by process id: SIGTERM, then SIGKILL for any still running after 5 s; and each
/// is killed if the test process dies first.
pub struct Daemons {
    processes: Vec<(String, Child)>,
    dir: TempDir,
}

impl Daemons {
    pub fn new() -> Daemons {
        Daemons { processes: Vec::new(), dir: TempDir::new().unwrap() }
    }

    /// The processes' working directory (where their logs are), not the repository: a relative
    /// lake path must reach them made absolute.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `cimlake ARGS…` with extra environment variables; returns its stdout lines.
    pub fn spawn_with(&mut self, name: &str, args: &[&str], env: &[(&str, &str)]) -> mpsc::Receiver<String> {
        self.spawn_limited(name, args, env, None)
    }

    /// Like [`Daemons::spawn_with`], with the process's open-files limit (soft and hard) set to
    /// `open_files`, as on a machine that allows no more.
    pub fn spawn_limited(&mut self, name: &str, args: &[&str], env: &[(&str, &str)], open_files: Option<u64>) -> mpsc::Receiver<String> {
        let stderr = std::fs::File::create(self.log(name)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cimlake"));
        cmd.args(args).current_dir(self.dir.path()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        without_user_settings(&mut cmd);
        cmd.envs(env.iter().copied());
        // SAFETY: prctl and setrlimit are async-signal-safe; they only set this child's
        // parent-death signal and its own limit.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(n) = open_files {
                    let limit = libc::rlimit { rlim_cur: n as libc::rlim_t, rlim_max: n as libc::rlim_t };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("cimlake starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end even when nobody listens any more, so the child never writes to a
            // closed pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                tx.send(line).ok();
            }
        });
        self.processes.push((name.to_string(), child));
        rx
    }

    /// Where process `name` writes its stderr.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.stderr"))
    }

    /// The first stdout line of `name` that `want` accepts, within 60 s; panics with its output if
    /// none comes.
    pub fn wait_for(&self, lines: &mpsc::Receiver<String>, name: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let stderr = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        panic!("{name} did not start in 60 s.\nstdout:\n{}\nstderr:\n{stderr}", seen.join("\n"));
    }

    /// The process ids, for tests that check they are gone after the drop.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|(_, c)| c.id()).collect()
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for (_, child) in &mut self.processes {
            if let Ok(None) = child.try_wait() {
                // SAFETY: kill(2) on a child this struct owns and has not reaped.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.processes {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                child.kill().ok();
            }
            child.wait().ok();
        }
    }
}

/// Whether process `pid` is running (a reaped process has no /proc entry; a zombie shows state Z).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// CPU time process `pid` has used so far, in clock ticks (user + system).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The Python of a virtual environment made by a setup script of the repository: the path in
/// the environment variable `var` (set by `.ci/run`), else what `bash script` prints (it makes the
/// environment on first use). `what` says what the script provides, for its failure.
pub fn setup_python(var: &str, script: &str, what: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let out = Command::new("bash").arg(repo().join(script)).output().expect("bash runs");
    assert!(out.status.success(), "{script} could not make {what}:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
