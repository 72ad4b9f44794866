//! `cimlake query "SQL"` or `cimlake query -f FILE`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{AsOfArgs, EngineArgs, SqlArgs};
use crate::engine;
use crate::lake::Lake;
use crate::output::{self, Format};

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The SQL to run. Tables: endpoint.processes, network_traffic.all_traffic,
    /// detect.<detection>, detect_splunk.<detection>.
    #[arg(value_name = "SQL", required_unless_present = "file", conflicts_with = "file")]
    pub sql: Option<String>,

    /// Read the SQL from FILE.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write results to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub as_of: AsOfArgs,

    #[command(flatten)]
    pub sql_args: SqlArgs,
}

pub async fn run(lake_dir: &Path, args: QueryArgs) -> anyhow::Result<ExitCode> {
    let sql = match (&args.sql, &args.file) {
        (Some(s), _) => s.clone(),
        (None, Some(f)) => std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?,
        (None, None) => unreachable!("clap requires one"),
    };
    let catalog = args.sql_args.catalog()?;
    let opts = engine::EngineOptions { memory_limit: None, engine: args.engine.engine, as_of: args.as_of.resolve()? };
    let ctx = crate::detect::runner::session(&Lake::open(lake_dir)?, &catalog, &opts).await?;
    let df = ctx.sql(&sql).await?;
    let schema = df.schema().inner().clone();
    let batches = df.collect().await?;
    output::write(&batches, schema, args.format, args.output.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
