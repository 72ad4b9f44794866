//! Runs `tests/slt/*.slt` (sqllogictest) against a lake built from `data/logs/sysmon`.
//!
//! Each file gets a fresh session with the lake tables and the detection views (`detect.*`,
//! `detect_splunk.*`). Header comment lines configure it:
//!
//! * `# lake: PATH…`: the inputs of its lake, ingested through the CLI (default
//!   `data/logs/sysmon`); lakes are built once per distinct list and shared.
//! * `# macro NAME: SQL`: edit a macro first, exactly as a user edits `sql/macros/*.sql`: the
//!   harness copies `sql/`, rewrites those files and loads the copy.
//!
//! The type letters of `query` records must be the result's: `I` for integers, `R` for floats and
//! decimals, `T` for everything else (strings, times, lists…); a wrong letter or a wrong number of
//! columns fails the record.
//!
//! `CIMLAKE_SLT_COMPLETE=1 cargo test --test integration slt` rewrites the expected results and
//! type letters.

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
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, MakeConnection, TestErrorKind};
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

fn header(slt: &Path) -> Vec<String> {
    std::fs::read_to_string(slt)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// `# macro NAME: SQL` lines at the top of an .slt file.
fn macro_edits(slt: &Path) -> Vec<(String, String)> {
    header(slt)
        .iter()
        .filter_map(|l| l.strip_prefix("# macro "))
        .map(|l| {
            let (name, sql) = l.split_once(':').expect("# macro NAME: SQL");
            (name.trim().to_string(), sql.trim().to_string())
        })
        .collect()
}

/// The lake named by `# lake: PATH…` (built once per list of inputs), or the sample lake.
fn lake_for(slt: &Path) -> PathBuf {
    static LAKES: Mutex<Vec<(String, TempDir)>> = Mutex::new(Vec::new());
    let Some(inputs) = header(slt).iter().find_map(|l| l.strip_prefix("# lake: ").map(str::to_string)) else {
        return sample_lake().to_path_buf();
    };
    let mut lakes = LAKES.lock().unwrap();
    if let Some((_, dir)) = lakes.iter().find(|(k, _)| *k == inputs) {
        return dir.path().to_path_buf();
    }
    let dir = TempDir::new().unwrap();
    let mut args = vec!["ingest"];
    args.extend(inputs.split_whitespace());
    cimlake_ok(dir.path(), &args);
    let path = dir.path().to_path_buf();
    lakes.push((inputs, dir));
    path
}

async fn session_for(slt: &Path) -> SessionContext {
    let edits = macro_edits(slt);
    let sql_dir = sql_copy();
    for (name, sql) in &edits {
        let file = sql_dir.path().join("macros").join(format!("{name}.sql"));
        assert!(file.exists(), "{}: no macro {name}", slt.display());
        std::fs::write(file, format!("-- edited by {}\n{sql}\n", slt.display())).unwrap();
    }
    let catalog = Catalog::load_dir(sql_dir.path()).unwrap();
    cimlake::detect::runner::session(&Lake::new(lake_for(slt)), &catalog, &Default::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/slt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let complete = std::env::var_os("CIMLAKE_SLT_COMPLETE").is_some();
    let mut failures = Vec::new();
    for file in &files {
        let ctx = session_for(file).await;
        let mut runner = runner(ctx);
        if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::strict_column_validator,
                )
                .await
                .unwrap();
        } else if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

const PROCESS_4120: &str = "\
query IT
SELECT process_id, process_name FROM endpoint.processes WHERE process_id = 4120
----
4120 cmd.exe
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_a_wrong_type_letter_fails() {
    let ctx = cimlake::detect::runner::session(&Lake::new(sample_lake()), &Catalog::builtin().unwrap(), &Default::default())
        .await
        .unwrap();
    runner(ctx.clone()).run_script_async(PROCESS_4120).await.unwrap();
    for (letters, why) in [("TT", "integer as text"), ("IR", "text as float"), ("ITT", "one column too many"), ("I", "one too few")] {
        let wrong = PROCESS_4120.replacen("query IT", &format!("query {letters}"), 1);
        let err = runner(ctx.clone()).run_script_async(&wrong).await.expect_err(why);
        match err.kind() {
            TestErrorKind::QueryResultColumnsMismatch { expected, actual, .. } => {
                assert_eq!((expected.as_str(), actual.as_str()), (letters, "IT"), "{why}");
            }
            other => panic!("{why}: expected a column type mismatch, got {other}"),
        }
    }
}
