//! `cimlake report`: one self-contained HTML page of a window's detections.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{AsOfArgs, EngineArgs, SqlArgs};
use crate::engine;
use crate::lake::Lake;
use crate::report::{self, ReportOptions};
use crate::time::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Window start, inclusive: Splunk relative time (-24h, -1d@d) or RFC 3339. Default: a day
    /// before the window's end.
    #[arg(long, allow_hyphen_values = true)]
    pub earliest: Option<String>,

    /// Window end, exclusive. Default: just after the latest event in the lake.
    #[arg(long, allow_hyphen_values = true)]
    pub latest: Option<String>,

    /// Only this detection (directory name, display name, id, `sigma`, `sigma:CATEGORY`);
    /// repeatable. Default: all.
    #[arg(long = "detection", value_name = "NAME")]
    pub detections: Vec<String>,

    /// The page to write.
    #[arg(short = 'o', long = "output", value_name = "FILE", default_value = "cimlake-report.html")]
    pub output: PathBuf,

    /// How far before the window a hit's ancestors are looked for.
    #[arg(long, default_value = "24h")]
    pub lookback: String,

    /// The most hits listed in the page (the counts are of every hit).
    #[arg(long, default_value_t = 50_000)]
    pub max_hits: usize,

    /// The most hits with a process tree and connections (the most severe, then the earliest).
    #[arg(long, default_value_t = 5_000)]
    pub max_trees: usize,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub as_of: AsOfArgs,

    #[command(flatten)]
    pub sql: SqlArgs,
}

impl ReportArgs {
    /// The report options and the detections the args name.
    pub fn options(&self, catalog: &crate::detect::Catalog) -> anyhow::Result<ReportOptions> {
        let (earliest, latest) = super::window_args(self.earliest.as_deref(), self.latest.as_deref())?;
        let mut detections = Vec::new();
        for name in &self.detections {
            detections.extend(catalog.select(name)?.into_iter().map(|d| d.name.clone()));
        }
        Ok(ReportOptions {
            earliest,
            latest,
            detections,
            lookback: parse_duration(&self.lookback).context("--lookback")?,
            max_hits: self.max_hits,
            max_detailed: self.max_trees,
            ..ReportOptions::default()
        })
    }
}

pub async fn run(lake_dir: &Path, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let catalog = args.sql.catalog()?;
    let opts = args.options(&catalog)?;
    let lake = Lake::open(lake_dir)?;
    let engine_opts = engine::EngineOptions { memory_limit: None, engine: args.engine.engine, as_of: args.as_of.resolve()? };
    let ctx = crate::detect::runner::session(&lake, &catalog, &engine_opts).await?;
    let built = report::build(&ctx, &catalog, &lake.location(), &opts).await?;
    write(&args.output, &built.html)?;
    for n in &built.notes {
        eprintln!("note: {n}");
    }
    println!(
        "wrote {}: {} hits ({} listed, {} with a process tree), {} incidents, window [{}, {}), {} KiB",
        crate::output::escape_controls(&args.output.display().to_string()),
        built.hits,
        built.listed,
        built.detailed,
        built.incidents,
        built.earliest.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        built.latest.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        built.html.len().div_ceil(1024)
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes `html` to `path` whole: a reader (a browser, `serve`) never sees half a page.
pub fn write(path: &Path, html: &str) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, html).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display())).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
