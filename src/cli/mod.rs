//! The command line: argument types (clap derive) and one module per subcommand.

pub mod cluster;
pub mod detect;
pub mod generate;
pub mod ingest;
pub mod query;
pub mod run;
pub mod schedule;
pub mod serve;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Splunk-style security detections over an open Arrow/Parquet log lake.
#[derive(Debug, Parser)]
#[command(name = "cimlake", version, about, long_about = None)]
pub struct Cli {
    /// The lake directory.
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
    /// Run the detections on their schedules, writing results and risk events to the lake.
    Schedule(schedule::ScheduleArgs),
    /// Generate realistic telemetry with planted MSIExec positives (into the lake, or as logs).
    Gen(generate::GenArgs),
    /// Run a Ballista scheduler or executor, for `--engine ballista://HOST:PORT`.
    Cluster(cluster::ClusterArgs),
    /// Serve the lake's tables and detection views over Arrow Flight SQL (ADBC, JDBC, ODBC clients).
    Serve(serve::ServeArgs),
}

/// Where detections and queries run.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// `in-process`, or a Ballista cluster: `ballista://HOST:PORT` (its scheduler; see
    /// `cimlake cluster`). The lake must be at the same path on every node of a cluster.
    #[arg(long, env = "CIMLAKE_ENGINE", default_value = "in-process", value_name = "ENGINE")]
    pub engine: crate::engine::Engine,
}

/// Where detections come from.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    /// Directory of detections and macros [default: ./sql if present, else the built-in copy].
    #[arg(long, global = true, env = "CIMLAKE_SQL", value_name = "DIR")]
    pub sql_dir: Option<PathBuf>,

    /// Replace a macro for this run: NAME=SQL (repeatable).
    #[arg(long = "macro", global = true, value_name = "NAME=SQL", value_parser = parse_macro)]
    pub macros: Vec<(String, String)>,
}

impl SqlArgs {
    pub fn catalog(&self) -> anyhow::Result<crate::detect::Catalog> {
        let mut c = crate::detect::Catalog::load_default(self.sql_dir.as_deref())?;
        for (name, sql) in &self.macros {
            c.override_macro(name, sql)?;
        }
        Ok(c)
    }
}

fn parse_macro(s: &str) -> Result<(String, String), String> {
    let (name, sql) = s.split_once('=').ok_or("expected NAME=SQL")?;
    if name.is_empty() {
        return Err("expected NAME=SQL".into());
    }
    Ok((name.trim().to_string(), sql.to_string()))
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Ingest(args) => ingest::run(&cli.lake, args),
        Command::Detect(args) => detect::run(&cli.lake, args).await,
        Command::Query(args) => query::run(&cli.lake, args).await,
        Command::Run(args) => run::run(&cli.lake, args).await,
        Command::Schedule(args) => schedule::run(&cli.lake, args).await,
        Command::Gen(args) => generate::run(&cli.lake, args),
        Command::Cluster(args) => cluster::run(args).await,
        Command::Serve(args) => serve::run(&cli.lake, args).await,
    }
}
