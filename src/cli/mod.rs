//! The command line: argument types (clap derive) and one module per subcommand.

pub mod cluster;
pub mod detect;
pub mod generate;
pub mod ingest;
pub mod lake;
pub mod query;
pub mod report;
pub mod run;
pub mod schedule;
pub mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Splunk-style security detections over an open Arrow/Parquet log lake.
#[derive(Debug, Parser)]
#[command(name = "cimlake", version, about, long_about = None)]
pub struct Cli {
    /// The lake: a directory (or file:// URL), or a bucket and prefix in an object store:
    /// s3://bucket/prefix, gs://…, az://… (settings from the environment: AWS_REGION,
    /// AWS_ENDPOINT_URL, credentials…).
    #[arg(long, global = true, env = "CIMLAKE_LAKE", default_value = "cimlake-lake")]
    pub lake: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert raw logs (files, directories, globs) into the lake.
    Ingest(ingest::IngestArgs),
    /// Run detections over the lake.
    Detect(detect::DetectArgs),
    /// Run SQL over the lake tables and detection views.
    Query(query::QueryArgs),
    /// Ingest into the lake, then run every detection over all time.
    Run(run::RunArgs),
    /// Write one self-contained HTML page of a window's hits, risk and incidents, with each hit's
    /// process tree and connections.
    Report(report::ReportArgs),
    /// Run the detections on their schedules, writing results and risk events to the lake.
    Schedule(schedule::ScheduleArgs),
    /// Generate realistic telemetry with planted MSIExec positives (into the lake, or as logs).
    Gen(generate::GenArgs),
    /// Run a Ballista scheduler or executor, for `--engine ballista://HOST:PORT`.
    Cluster(cluster::ClusterArgs),
    /// Serve the lake's tables and detection views over Arrow Flight SQL (ADBC, JDBC, ODBC clients).
    Serve(serve::ServeArgs),
    /// The lake's upkeep: bring its Delta logs up to date (`upgrade`), merge small files
    /// (`optimize`), remove leftovers (`vacuum`), show a table's `history`.
    Lake(lake::LakeArgs),
}

/// Where detections and queries run.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// `in-process`, or a Ballista cluster: `ballista://HOST:PORT` (its scheduler; see
    /// `cimlake cluster`). A lake in an object store is read from the bucket by every node; a
    /// lake in a directory must be at the same path on every node.
    #[arg(long, env = "CIMLAKE_ENGINE", default_value = "in-process", value_name = "ENGINE")]
    pub engine: crate::engine::Engine,
}

/// Reading the lake as it was.
#[derive(Debug, Clone, Default, Args)]
pub struct AsOfArgs {
    /// Read the lake as it was: after lake commit N (`cimlake lake history` shows which commits
    /// each table version took in), or at a time (`2026-12-02T10:00:00Z`, `-1h`, `@d`, …):
    /// the inputs committed and the scheduled runs finished by then.
    #[arg(long = "as-of", value_name = "COMMIT|TIME")]
    pub as_of: Option<String>,
}

impl AsOfArgs {
    pub fn resolve(&self) -> anyhow::Result<Option<crate::lake::AsOf>> {
        use anyhow::Context as _;
        let Some(s) = self.as_of.as_deref() else { return Ok(None) };
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Some(crate::lake::AsOf::Commit(n)));
        }
        let t = crate::time::parse_time(s, chrono::Utc::now()).with_context(|| format!("--as-of {s:?}: not a commit number or a time"))?;
        Ok(Some(crate::lake::AsOf::Time(t.timestamp_micros())))
    }
}

/// A window's ends, either left open.
pub type WindowEnds = (Option<chrono::DateTime<chrono::Utc>>, Option<chrono::DateTime<chrono::Utc>>);

/// `--earliest` and `--latest` (Splunk relative times from now, or RFC 3339); when both are
/// given, the first must be before the second.
pub fn window_args(earliest: Option<&str>, latest: Option<&str>) -> anyhow::Result<WindowEnds> {
    use anyhow::Context as _;
    let now = chrono::Utc::now();
    let earliest = earliest.map(|s| crate::time::parse_time(s, now)).transpose().context("--earliest")?;
    let latest = latest.map(|s| crate::time::parse_time(s, now)).transpose().context("--latest")?;
    if let (Some(e), Some(l)) = (earliest, latest) {
        anyhow::ensure!(e < l, "--earliest ({e}) must be before --latest ({l})");
    }
    Ok((earliest, latest))
}

/// Where detections come from.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// A directory of detections, macros and filters (`detections/`, `macros/`, `risk/`) read
    /// after the built-in ones; a file there replaces the built-in file of the same relative path
    /// (repeatable; later directories win). Directories in CIMLAKE_SQL_PATH (separated by `:`)
    /// come first. Nothing is read from the working directory unless it is named.
    #[arg(long = "sql-dir", global = true, value_name = "DIR")]
    pub sql_dirs: Vec<PathBuf>,

    /// Replace a macro for this run: NAME=SQL (repeatable).
    #[arg(long = "macro", global = true, value_name = "NAME=SQL", value_parser = parse_macro)]
    pub macros: Vec<(String, String)>,
}

/// The environment variable listing detection directories, like `PATH`.
pub const SQL_PATH_ENV: &str = "CIMLAKE_SQL_PATH";

impl SqlArgs {
    /// The directories to read detections from: `CIMLAKE_SQL_PATH`'s, then `--sql-dir`'s.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::env::var_os(SQL_PATH_ENV)
            .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
            .unwrap_or_default();
        dirs.extend(self.sql_dirs.iter().cloned());
        dirs
    }

    /// The built-in detections and those of [`SqlArgs::dirs`], with the `--macro` overrides. When
    /// directories are named, where the detections came from is written to stderr.
    pub fn catalog(&self) -> anyhow::Result<crate::detect::Catalog> {
        let dirs = self.dirs();
        let mut c = crate::detect::Catalog::load(&dirs)?;
        for (name, sql) in &self.macros {
            c.override_macro(name, sql)?;
        }
        if !dirs.is_empty() {
            eprintln!("detections: {}", crate::output::escape_controls(&c.describe()));
        }
        Ok(c)
    }
}

/// A `--macro` value that is not `NAME=SQL`.
#[derive(Debug, thiserror::Error)]
#[error("expected NAME=SQL")]
struct NotNameEqualsSql;

fn parse_macro(s: &str) -> Result<(String, String), NotNameEqualsSql> {
    let (name, sql) = s.split_once('=').ok_or(NotNameEqualsSql)?;
    if name.is_empty() {
        return Err(NotNameEqualsSql);
    }
    Ok((name.trim().to_string(), sql.to_string()))
}

/// Makes ring the process's TLS provider (for `serve --tls-cert` and the object stores' HTTP
/// clients): two providers are built in, so rustls would pick neither. Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    install_tls_provider();
    // Cluster plans carry the Sigma rules' matcher (clients, scheduler and executors alike).
    crate::engine::codec::set_nodes(std::sync::Arc::new(crate::detect::sigma::node::Codec));
    match cli.command {
        Command::Ingest(args) => ingest::run(&cli.lake, args),
        Command::Detect(args) => detect::run(&cli.lake, args).await,
        Command::Query(args) => query::run(&cli.lake, args).await,
        Command::Run(args) => run::run(&cli.lake, args).await,
        Command::Report(args) => report::run(&cli.lake, args).await,
        Command::Schedule(args) => schedule::run(&cli.lake, args).await,
        Command::Gen(args) => generate::run(&cli.lake, args),
        Command::Cluster(args) => cluster::run(args).await,
        Command::Serve(args) => serve::run(&cli.lake, args).await,
        Command::Lake(args) => lake::run(&cli.lake, args),
    }
}
