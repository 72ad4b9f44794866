//! `cimlake ingest PATH…`

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::cim::Table;
use crate::convert::Sourcetype;
use crate::lake::Lake;
use crate::ingest::{IngestOptions, IngestReport, InputOutcome, Progress, ingest, ingest_with_progress};

#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Files, directories (read recursively) or glob patterns.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Read every input as this shape instead of detecting it.
    #[arg(long, value_enum)]
    pub sourcetype: Option<Sourcetype>,

    /// Stop at the first record that cannot be read.
    #[arg(long)]
    pub strict: bool,

    /// Keep the records before a truncated or corrupt gzip/tar stream (reported as a bad record)
    /// instead of failing the input.
    #[arg(long)]
    pub salvage: bool,

    /// Inputs converted at once; also the cores one large text input is split across.
    /// Default: the machine's cores.
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: Option<u64>,

    /// A plain XmlWinEventLog or Windows event JSON file larger than this is split into pieces of
    /// about this size, converted in parallel (memory grows with jobs × this size).
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = crate::engine::parse_size)]
    pub piece_size: usize,

    /// The most bytes one archive member (or a gzip stream) may expand to.
    #[arg(long, value_name = "SIZE", default_value = "16G", value_parser = crate::engine::parse_size)]
    pub max_member_size: usize,

    /// The most an archive's compressed data may expand, as a multiple of its size (event logs
    /// compress 10 to 25 times; a decompression bomb about 1,000).
    #[arg(long, value_name = "N", default_value_t = crate::convert::input::DEFAULT_MAX_RATIO, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_expansion_ratio: u64,

    /// Rows per record batch.
    #[arg(long, default_value_t = crate::convert::DEFAULT_BATCH_SIZE as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
}

pub fn run(lake_dir: &Path, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let report = ingest_and_report(lake_dir, &args)?;
    Ok(if report.failed() > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Ingests and prints the report; shared with `cimlake run`.
pub fn ingest_and_report(lake_dir: &Path, args: &IngestArgs) -> anyhow::Result<IngestReport> {
    let lake = Lake::open(lake_dir)?;
    let opts = IngestOptions {
        sourcetype: args.sourcetype,
        batch_size: args.batch_size as usize,
        strict: args.strict,
        salvage: args.salvage,
        jobs: args.jobs.map_or_else(crate::ingest::default_jobs, |j| j as usize),
        piece_bytes: args.piece_size.max(1),
        limits: crate::convert::input::Limits { member_bytes: args.max_member_size as u64, ratio: args.max_expansion_ratio },
    };
    let report = if std::io::stderr().is_terminal() {
        ingest_with_progress(&lake, &args.paths, &opts, &Bar(indicatif::ProgressBar::new(0)))?
    } else {
        ingest(&lake, &args.paths, &opts)?
    };
    print_report(&lake, &report)?;
    Ok(report)
}

/// The bytes read, as a progress bar on a terminal.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn start(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
        self.0.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}")
                .expect("valid template"),
        );
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn print_report(lake: &Lake, report: &IngestReport) -> std::io::Result<()> {
    use crate::output::escape_controls as shown;
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for s in &report.skipped {
        writeln!(out, "skipped {}: {}", shown(&s.path.to_string_lossy()), s.reason)?;
    }
    let (mut new, mut old) = (0, 0);
    for i in &report.inputs {
        match i {
            InputOutcome::Ingested { path, commit } => {
                new += 1;
                let s = &commit.input.stats;
                let shapes: Vec<&str> = commit.input.sourcetypes.iter().map(String::as_str).collect();
                let shapes = match &commit.input.container {
                    Some(c) => format!("{c}: {}", shapes.join(", ")),
                    None => shapes.join(", "),
                };
                writeln!(
                    out,
                    "ingested {} ({}): {} records, {} processes, {} flows, {} skipped, {} bad",
                    shown(&path.to_string_lossy()),
                    shapes,
                    s.records,
                    s.rows(Table::Processes),
                    s.rows(Table::AllTraffic),
                    s.skipped_total(),
                    s.bad
                )?;
            }
            InputOutcome::AlreadyIngested { path, commit_id, as_path, raced } => {
                old += 1;
                let when = if *raced { "; committed by another ingest while this one read it" } else { "" };
                writeln!(out, "skipped {}: already in the lake (commit {commit_id}, as {}{when})", shown(&path.to_string_lossy()), shown(as_path))?;
            }
            InputOutcome::Failed { path: _, error } => {
                writeln!(err, "error: {}", shown(&error.to_string()))?;
            }
        }
    }
    let total = report.stats();
    let not_logs = report.skipped.iter().filter(|s| s.reason.starts_with("not a log")).count();
    let mut not_regular = String::new();
    if not_logs > 0 {
        not_regular += &format!(", {not_logs} not a log skipped");
    }
    if report.skipped.len() > not_logs {
        not_regular += &format!(", {} not regular files skipped", report.skipped.len() - not_logs);
    }
    writeln!(
        out,
        "\n{} input{}: {new} ingested, {old} already in the lake, {} failed{not_regular}; lake {}",
        report.inputs.len(),
        if report.inputs.len() == 1 { "" } else { "s" },
        report.failed(),
        shown(&lake.location())
    )?;
    writeln!(out, "rows written:")?;
    for t in Table::ALL {
        writeln!(out, "  {:<48} {:>8}", t.qualified_name(), total.rows(t))?;
    }
    if !total.skipped.is_empty() {
        writeln!(out, "records skipped:")?;
        for (reason, n) in &total.skipped {
            writeln!(out, "  {:<48} {n:>8}", shown(reason))?;
        }
    }
    if total.bad > 0 {
        writeln!(out, "bad records: {}", total.bad)?;
        for b in &total.bad_records {
            writeln!(out, "  {}", shown(&b.to_string()))?;
        }
        if total.bad as usize > total.bad_records.len() {
            writeln!(out, "  … and {} more", total.bad as usize - total.bad_records.len())?;
        }
    }
    Ok(())
}
