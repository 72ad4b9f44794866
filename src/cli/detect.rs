//! `cimlake detect`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use datafusion::physical_plan::displayable;

use super::{EngineArgs, SqlArgs};
use crate::detect::runner::Runner;
use crate::detect::{self, Mode, Search, Window};

use crate::engine;
use crate::lake::Lake;
use crate::output::{self, Format};
use crate::time::{parse_duration, parse_time};

#[derive(Debug, Clone, Args)]
pub struct DetectArgs {
    /// Detection to run (directory name or display name), or `all`.
    #[arg(long, default_value = "all")]
    pub detection: String,

    /// Window start, inclusive: Splunk relative time (-70m@m, -1d@d, now) or RFC 3339.
    #[arg(long, allow_hyphen_values = true)]
    pub earliest: Option<String>,

    /// Window end, exclusive: Splunk relative time (-10m@m, now) or RFC 3339.
    #[arg(long, allow_hyphen_values = true)]
    pub latest: Option<String>,

    /// Join semantics.
    #[arg(long, value_enum, default_value_t = Mode::Cimlake)]
    pub mode: Mode,

    /// How far before the window a process may have started (cimlake mode), e.g. 24h, 7d, 0.
    #[arg(long, default_value = "24h")]
    pub lookback: String,

    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write results to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Print the physical plan instead of running.
    #[arg(long)]
    pub explain: bool,

    /// List the detections (name, id, title, modes, origin, schedule) and exit.
    #[arg(long, conflicts_with = "check")]
    pub list: bool,

    /// Plan every detection in every mode it has against the lake's schemas (no rows needed) and
    /// report each that fails by file and line; exit 1 if any fails.
    #[arg(long)]
    pub check: bool,

    /// Memory for joins, aggregations and sorts (e.g. 512M, 2G); beyond it, work spills to disk.
    #[arg(long, value_parser = crate::engine::parse_size, value_name = "SIZE")]
    pub memory_limit: Option<usize>,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub sql: SqlArgs,
}

impl DetectArgs {
    /// All-time defaults, as used by `cimlake run`.
    pub fn all_time(sql: SqlArgs, engine: EngineArgs, mode: Mode, format: Format) -> Self {
        DetectArgs {
            detection: "all".into(),
            earliest: None,
            latest: None,
            mode,
            lookback: "24h".into(),
            format,
            output: None,
            explain: false,
            list: false,
            check: false,
            memory_limit: None,
            engine,
            sql,
        }
    }

    pub fn search(&self) -> anyhow::Result<Search> {
        let now = Utc::now();
        let earliest = self.earliest.as_deref().map(|s| parse_time(s, now)).transpose().context("--earliest")?;
        let latest = self.latest.as_deref().map(|s| parse_time(s, now)).transpose().context("--latest")?;
        if let (Some(e), Some(l)) = (earliest, latest) {
            anyhow::ensure!(e < l, "--earliest ({e}) must be before --latest ({l})");
        }
        let lookback = parse_duration(&self.lookback).context("--lookback")?;
        Ok(Search { window: Window::between(earliest, latest), lookback })
    }
}

pub async fn run(lake_dir: &Path, args: DetectArgs) -> anyhow::Result<ExitCode> {
    let catalog = args.sql.catalog()?;
    if args.list {
        list(&catalog)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.check {
        return check(lake_dir, &catalog).await;
    }
    let search = args.search()?;
    let selected = catalog.select(&args.detection)?;
    let selected = if args.detection == "all" {
        // Every detection that has the mode; the others are named, not run.
        let (has, lacks): (Vec<_>, Vec<_>) = selected.into_iter().partition(|d| d.has_mode(args.mode));
        for d in lacks {
            eprintln!("note: {} has no {} mode; not run", crate::output::escape_controls(&d.name), args.mode);
        }
        has
    } else {
        selected
    };
    anyhow::ensure!(
        selected.len() <= 1 || (args.format == Format::Table && args.output.is_none()) || args.explain,
        "{} detections selected: --format {:?} and -o take one (use --detection NAME)",
        selected.len(),
        args.format
    );
    let lake = Lake::new(lake_dir);
    if !lake.exists() {
        eprintln!("warning: {} holds no lake yet (run `cimlake ingest` first)", lake_dir.display());
    }
    let opts = engine::EngineOptions { memory_limit: args.memory_limit, engine: args.engine.engine.clone() };
    // Only --explain plans here; a run makes its own session (per pass, under a memory limit).
    let explain_ctx = if args.explain { Some(engine::session_with(&lake, &opts).await?) } else { None };
    let runner = Runner::new(&lake, &catalog, opts);
    for d in selected {
        if let Some(ctx) = &explain_ctx {
            let df = detect::plan(ctx, &catalog, d, args.mode, &search).await?;
            let plan = df.create_physical_plan().await?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "-- {} ({} mode)", d.name, args.mode)?;
            writeln!(out, "{}", displayable(plan.as_ref()).indent(true))?;
            continue;
        }
        let run = runner.run(d, args.mode, &search).await.with_context(|| format!("running {}", d.name))?;
        if run.passes > 1 {
            eprintln!(
                "note: {}: the join did not fit in --memory-limit; ran in {} passes over hash buckets of {}",
                d.name,
                run.passes,
                d.meta.partition_by.get(args.mode.name()).map(|k| k.values().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default()
            );
        }
        if run.spill_count > 0 {
            eprintln!("note: {}: spilled {} times, {} bytes, to stay within --memory-limit", d.name, run.spill_count, run.spilled_bytes);
        }
        let (schema, batches) = (run.schema, run.batches);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if args.format == Format::Table && args.output.is_none() {
            println!("{} — {} mode — {} results", crate::output::escape_controls(&d.meta.search_name), args.mode, rows);
        }
        output::write(&batches, schema, args.format, args.output.as_deref())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--list`: one tab-separated line per detection under a header.
fn list(catalog: &detect::Catalog) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let shown = |s: &str| crate::output::escape_controls(s).into_owned();
    writeln!(out, "name\tid\ttitle\tattack\tmodes\torigin\tschedule")?;
    for d in &catalog.detections {
        let modes: Vec<&str> = d.modes().iter().map(|m| m.name()).collect();
        let s = &d.meta.schedule;
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{} ({} to {})",
            shown(&d.name),
            shown(&d.meta.id),
            shown(&d.meta.name),
            shown(&d.meta.mitre_attack_id.join(",")),
            modes.join(","),
            shown(&d.origin),
            shown(&s.cron),
            shown(&s.earliest),
            shown(&s.latest)
        )?;
    }
    Ok(())
}

/// `--check`: failures on stdout, one per line; a summary on stderr; exit 1 if any failed.
async fn check(lake_dir: &Path, catalog: &detect::Catalog) -> anyhow::Result<ExitCode> {
    let lake = Lake::new(lake_dir);
    let checked = detect::check::check(&lake, catalog).await?;
    let mut out = std::io::stdout().lock();
    for failure in &checked.failures {
        writeln!(out, "{}", crate::output::escape_controls(&failure.to_string()))?;
    }
    let failed = checked.failures.len();
    eprintln!(
        "checked {} detections ({} plans) against {}: {}",
        catalog.detections.len(),
        checked.planned,
        if lake.exists() { format!("the lake at {}", lake_dir.display()) } else { "the lake's schemas (no lake yet)".to_string() },
        if failed == 0 { "all plan".to_string() } else { format!("{failed} failed") }
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
