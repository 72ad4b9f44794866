//! Runs `tests/slt/*.slt` (sqllogictest) against a lake built from `data/logs/sysmon`.
//!
//! Each file gets a fresh session with the lake tables and the detection views (`detect.*`,
//! `detect_splunk.*`), as `cimlake query` has. Header comment lines configure it:
//!
//! * `# lake: PATH…`: the inputs of its lake, ingested through the CLI (default
//!   `data/logs/sysmon`); lakes are built once per distinct list and shared.
//! * `# macro NAME: SQL`: edit a macro first, exactly as a user edits `sql/macros/*.sql`: the
//!   harness copies `sql/`, rewrites those files and loads the copy. NAME must be a macro of
//!   `sql/macros`.
//! * `# escu: PATH`: also load the ESCU checkout at PATH (its translated detections are
//!   `detect_splunk.<name>` views).
//! * `# load error: REGEX`: the session must fail to build (the catalog refuses the SQL
//!   directory, or a detection view cannot be planned), with a message REGEX matches. Such a file
//!   has no records: nothing could run them.
//!
//! The checks are strict:
//!
//! * the type letters of `query` records must be the result's: `I` for integers, `R` for floats
//!   and decimals, `T` for everything else (strings, times, lists…); a wrong letter or a wrong
//!   number of columns fails the record;
//! * `statement error REGEX` and `query error REGEX` must say which error: a record without a
//!   message (any error) is refused, and REGEX must match DataFusion's message.
//!
//! Environment:
//!
//! * `CIMLAKE_SLT_FILTER=SUBSTRING cargo test --test integration slt` runs only the files whose
//!   name contains SUBSTRING, and fails if none does (a typo does not pass silently).
//! * `CIMLAKE_SLT_COMPLETE=1 cargo test --test integration slt` rewrites the expected results
//!   (rows, type letters, and error messages that no longer match) of the files it runs, with
//!   `CIMLAKE_SLT_FILTER` too; review the diff. Headers and comments are kept.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::array::Array;
use arrow::datatypes::DataType;
use arrow::util::display::array_value_to_string;
use async_trait::async_trait;
use cimlake::detect::Catalog;
use cimlake::lake::Lake;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use regex::Regex;
use sqllogictest::{
    AsyncDB, DBOutput, DefaultColumnType, ExpectedError, MakeConnection, QueryExpect, Record, StatementExpect,
    TestError, TestErrorKind,
};
use tempfile::TempDir;

use crate::common::*;

struct CimlakeDb {
    ctx: SessionContext,
}

#[async_trait]
impl AsyncDB for CimlakeDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let df = self.ctx.sql(sql).await?;
        let schema = df.schema().inner().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
                    DefaultColumnType::FloatingPoint
                }
                _ => DefaultColumnType::Text,
            })
            .collect();
        let mut rows = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                let row = b
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(i) {
                            "NULL".to_string()
                        } else {
                            let s = array_value_to_string(c, i).expect("displayable");
                            if s.is_empty() { "(empty)".to_string() } else { s }
                        }
                    })
                    .collect();
                rows.push(row);
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "cimlake"
    }
}

/// A runner over `ctx` that checks the type letters of `query` records.
fn runner(ctx: SessionContext) -> sqllogictest::Runner<CimlakeDb, impl MakeConnection<Conn = CimlakeDb>> {
    let mut runner = sqllogictest::Runner::new(move || {
        let ctx = ctx.clone();
        async move { Ok::<_, DataFusionError>(CimlakeDb { ctx }) }
    });
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner
}

/// What the header comment lines of an .slt file ask for.
#[derive(Debug, Default)]
struct Header {
    /// `# lake: PATH…`
    lake: Option<String>,
    /// `# macro NAME: SQL`
    macros: Vec<(String, String)>,
    /// `# load error: REGEX`
    load_error: Option<Regex>,
    /// `# escu: PATH`
    escu: Option<PathBuf>,
}

impl Header {
    fn read(slt: &Path) -> Result<Header, String> {
        let text = std::fs::read_to_string(slt).map_err(|e| e.to_string())?;
        let mut header = Header::default();
        for line in text.lines().take_while(|l| l.starts_with('#') || l.trim().is_empty()) {
            if let Some(inputs) = line.strip_prefix("# lake: ") {
                header.lake = Some(inputs.trim().to_string());
            } else if let Some(edit) = line.strip_prefix("# macro ") {
                let (name, sql) = edit.split_once(':').ok_or_else(|| format!("{line:?}: expected # macro NAME: SQL"))?;
                header.macros.push((name.trim().to_string(), sql.trim().to_string()));
            } else if let Some(dir) = line.strip_prefix("# escu: ") {
                header.escu = Some(repo().join(dir.trim()));
            } else if let Some(re) = line.strip_prefix("# load error: ") {
                header.load_error = Some(Regex::new(re.trim()).map_err(|e| format!("{line:?}: {e}"))?);
            }
        }
        Ok(header)
    }
}

/// The lake named by `# lake: PATH…` (built once per list of inputs), or the sample lake.
fn lake_for(header: &Header) -> PathBuf {
    static LAKES: Mutex<Vec<(String, TempDir)>> = Mutex::new(Vec::new());
    let Some(inputs) = &header.lake else {
        return sample_lake().to_path_buf();
    };
    let mut lakes = LAKES.lock().unwrap();
    if let Some((_, dir)) = lakes.iter().find(|(k, _)| k == inputs) {
        return dir.path().to_path_buf();
    }
    let dir = TempDir::new().unwrap();
    let mut args = vec!["ingest"];
    args.extend(inputs.split_whitespace());
    cimlake_ok(dir.path(), &args);
    let path = dir.path().to_path_buf();
    lakes.push((inputs.clone(), dir));
    path
}

/// Why one .slt file failed.
#[derive(Debug)]
enum Failure {
    /// The file or its header is wrong (the harness's own checks).
    Harness(String),
    /// The session did not build when it should have, or did when it should not.
    Load(String),
    /// A record did not give what it expects.
    Record(TestError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Harness(e) | Failure::Load(e) => f.write_str(e),
            Failure::Record(e) => write!(f, "{e}"),
        }
    }
}

/// The session of an .slt file: the macro edits of its header applied to a copy of `sql/`, its
/// lake, and the detection views. `Ok(Err(message))` when the catalog or the session refuses it.
async fn session_for(slt: &Path, header: &Header) -> Result<Result<SessionContext, String>, Failure> {
    let sql_dir = sql_copy();
    for (name, sql) in &header.macros {
        let file = sql_dir.path().join("macros").join(format!("{name}.sql"));
        if !file.exists() {
            return Err(Failure::Harness(format!("# macro {name}: sql/macros has no {name}.sql")));
        }
        std::fs::write(file, format!("-- edited by {}\n{sql}\n", slt.display())).unwrap();
    }
    let loaded = match &header.escu {
        Some(escu) => Catalog::load(&[sql_dir.path().to_path_buf(), escu.clone()]),
        None => Catalog::load_dir(sql_dir.path()),
    };
    let catalog = match loaded {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    Ok(cimlake::detect::runner::session(&Lake::new(lake_for(header)), &catalog, &Default::default())
        .await
        .map_err(|e| e.to_string()))
}

/// `statement error` and `query error` records without a message (they would accept any error).
fn unspecific_errors(records: &[Record<DefaultColumnType>]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Statement { loc, expected: StatementExpect::Error(ExpectedError::Empty), .. }
            | Record::Query { loc, expected: QueryExpect::Error(ExpectedError::Empty), .. } => {
                Some(format!("{loc}: an error record must give the message it expects (a regex)"))
            }
            _ => None,
        })
        .collect()
}

/// Runs one .slt file, or with `complete` rewrites its expectations.
async fn run_file(slt: &Path, complete: bool) -> Result<(), Failure> {
    let header = Header::read(slt).map_err(Failure::Harness)?;
    let records = sqllogictest::parse_file::<DefaultColumnType>(slt).map_err(|e| Failure::Harness(e.to_string()))?;
    let unspecific = unspecific_errors(&records);
    if !unspecific.is_empty() {
        return Err(Failure::Harness(unspecific.join("\n")));
    }
    if header.load_error.is_some() && records.iter().any(|r| matches!(r, Record::Statement { .. } | Record::Query { .. })) {
        return Err(Failure::Harness("a file with # load error must have no records (none could run)".into()));
    }
    match (session_for(slt, &header).await?, &header.load_error) {
        (Ok(ctx), None) => {
            let mut runner = runner(ctx);
            if complete {
                runner
                    .update_test_file(
                        slt,
                        " ",
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        sqllogictest::strict_column_validator,
                    )
                    .await
                    .map_err(|e| Failure::Harness(e.to_string()))
            } else {
                runner.run_file_async(slt).await.map_err(Failure::Record)
            }
        }
        (Err(e), None) => Err(Failure::Load(format!("the session did not build: {e}"))),
        (Ok(_), Some(re)) => Err(Failure::Load(format!("the session built; expected a load error matching {re}"))),
        (Err(e), Some(re)) if !re.is_match(&e) => Err(Failure::Load(format!("load error {e:?} does not match {re}"))),
        (Err(_), Some(_)) => Ok(()),
    }
}

/// The .slt files of `tests/slt`, sorted; with a filter, those whose name contains it, and an
/// error if none does.
fn slt_paths(filter: Option<&str>) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/slt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| filter.is_none_or(|f| p.file_name().unwrap().to_string_lossy().contains(f)))
        .collect();
    files.sort();
    match filter {
        Some(f) if files.is_empty() => Err(format!("CIMLAKE_SLT_FILTER={f:?} matches no file of tests/slt")),
        _ => Ok(files),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files() {
    let files = slt_paths(std::env::var("CIMLAKE_SLT_FILTER").ok().as_deref()).unwrap();
    assert!(!files.is_empty());
    let complete = std::env::var_os("CIMLAKE_SLT_COMPLETE").is_some();
    let mut failures = Vec::new();
    for file in &files {
        eprintln!("slt: {}", file.display());
        if let Err(e) = run_file(file, complete).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Writes `text` as an .slt file in a new directory.
fn temp_slt(text: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("case.slt");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

const PROCESS_4120: &str = "\
query IT
SELECT process_id, process_name FROM endpoint.processes WHERE process_id = 4120
----
4120 cmd.exe
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_a_wrong_type_letter_fails() {
    let (_dir, right) = temp_slt(PROCESS_4120);
    run_file(&right, false).await.unwrap();
    for (letters, why) in [("TT", "integer as text"), ("IR", "text as float"), ("ITT", "one column too many"), ("I", "one too few")] {
        let (_dir, wrong) = temp_slt(&PROCESS_4120.replacen("query IT", &format!("query {letters}"), 1));
        match run_file(&wrong, false).await {
            Err(Failure::Record(e)) => match e.kind() {
                TestErrorKind::QueryResultColumnsMismatch { expected, actual, .. } => {
                    assert_eq!((expected.as_str(), actual.as_str()), (letters, "IT"), "{why}");
                }
                other => panic!("{why}: expected a column type mismatch, got {other}"),
            },
            other => panic!("{why}: expected a column type mismatch, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_error_records_must_name_the_error() {
    let missing = "SELECT * FROM endpoint.nonexistent";
    let (_dir, named) = temp_slt(&format!("query error table '.*endpoint\\.nonexistent' not found\n{missing}\n"));
    run_file(&named, false).await.unwrap();
    // Another error than the one expected fails.
    let (_dir, other) = temp_slt(&format!("query error unknown macro\n{missing}\n"));
    match run_file(&other, false).await {
        Err(Failure::Record(e)) => assert!(matches!(e.kind(), TestErrorKind::ErrorMismatch { .. }), "{e}"),
        other => panic!("expected an error mismatch, got {other:?}"),
    }
    // Any error at all is refused before anything runs.
    for record in ["query error", "statement error"] {
        let (_dir, any) = temp_slt(&format!("{record}\n{missing}\n"));
        match run_file(&any, false).await {
            Err(Failure::Harness(e)) => assert!(e.contains("must give the message it expects"), "{e}"),
            other => panic!("{record}: expected the harness to refuse it, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_load_errors_are_checked() {
    let cycle = "# macro process_msiexec: `process_msiexec`\n";
    // A session that does not build, without `# load error`.
    let (_dir, unexpected) = temp_slt(cycle);
    match run_file(&unexpected, false).await {
        Err(Failure::Load(e)) => assert!(e.contains("macro `process_msiexec` uses itself"), "{e}"),
        other => panic!("expected a load failure, got {other:?}"),
    }
    // Another load error than the one expected.
    let (_dir, mismatch) = temp_slt(&format!("{cycle}# load error: unknown macro\n"));
    match run_file(&mismatch, false).await {
        Err(Failure::Load(e)) => assert!(e.contains("does not match unknown macro"), "{e}"),
        other => panic!("expected a load error mismatch, got {other:?}"),
    }
    // A session that builds when a load error is expected.
    let (_dir, builds) = temp_slt("# load error: unknown macro\n");
    match run_file(&builds, false).await {
        Err(Failure::Load(e)) => assert!(e.contains("the session built"), "{e}"),
        other => panic!("expected a load failure, got {other:?}"),
    }
    // Records after a load error could never run.
    let (_dir, records) = temp_slt(&format!("{cycle}# load error: uses itself\n\n{PROCESS_4120}"));
    match run_file(&records, false).await {
        Err(Failure::Harness(e)) => assert!(e.contains("must have no records"), "{e}"),
        other => panic!("expected the harness to refuse it, got {other:?}"),
    }
    // A macro the SQL directory does not have.
    let (_dir, unknown) = temp_slt("# macro no_such_macro: true\n");
    match run_file(&unknown, false).await {
        Err(Failure::Harness(e)) => assert!(e.contains("sql/macros has no no_such_macro.sql"), "{e}"),
        other => panic!("expected the harness to refuse it, got {other:?}"),
    }
}

#[test]
fn slt_filter_selects_files_by_name() {
    let all = slt_paths(None).unwrap();
    let errors = slt_paths(Some("errors")).unwrap();
    assert!(!errors.is_empty() && errors.len() < all.len(), "{errors:?}");
    assert!(errors.iter().all(|p| p.file_name().unwrap().to_string_lossy().contains("errors")));
    let none = slt_paths(Some("no-such-slt-file")).unwrap_err();
    assert!(none.contains("matches no file"), "{none}");
}
