//! `cimlake run PATH…`: ingest, then every detection over all time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::{EngineArgs, SqlArgs};
use super::detect::DetectArgs;
use super::ingest::IngestArgs;
use crate::detect::Mode;
use crate::output::Format;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Files, directories (read recursively) or glob patterns.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Join semantics.
    #[arg(long, value_enum, default_value_t = Mode::Cimlake)]
    pub mode: Mode,

    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub sql: SqlArgs,
}

pub async fn run(lake_dir: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    let ingest_args = IngestArgs {
        paths: args.paths.clone(),
        sourcetype: None,
        strict: false,
        salvage: false,
        batch_size: crate::convert::DEFAULT_BATCH_SIZE as u64,
        jobs: None,
        piece_size: crate::ingest::DEFAULT_PIECE_BYTES,
        max_member_size: crate::convert::input::DEFAULT_MAX_MEMBER_BYTES as usize,
        max_expansion_ratio: crate::convert::input::DEFAULT_MAX_RATIO,
    };
    let report = super::ingest::ingest_and_report(lake_dir, &ingest_args)?;
    println!();
    let code = super::detect::run(lake_dir, DetectArgs::all_time(args.sql, args.engine, args.mode, args.format)).await?;
    if report.failed() > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(code)
}
