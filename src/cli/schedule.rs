//! `cimlake schedule`: run the detections on their schedules; `cimlake schedule status`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use clap::{Args, Subcommand};

use super::{EngineArgs, SqlArgs};
use crate::detect::Mode;
use crate::lake::Lake;
use crate::lake::runs::{self, RunRecord, RunStatus};
use crate::schedule::window::Schedule;
use crate::schedule::{SchedulerOptions, state, tick};
use crate::time::{parse_duration, parse_time};

#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub action: Option<ScheduleAction>,

    /// Run what is due now (catching up missed windows) and exit, instead of running on.
    #[arg(long)]
    pub once: bool,

    /// Act as if the current time were TIME (RFC 3339 or Splunk relative); the clock runs on from
    /// there. For replays and tests.
    #[arg(long, global = true, value_name = "TIME", allow_hyphen_values = true)]
    pub now: Option<String>,

    /// Time zone of the cron schedules and of `@d`-style snapping (IANA name).
    #[arg(long, global = true, default_value = "UTC")]
    pub tz: String,

    /// Join semantics of the scheduled runs.
    #[arg(long, global = true, value_enum, default_value_t = Mode::Cimlake)]
    pub mode: Mode,

    /// Process look-back of cimlake mode.
    #[arg(long, default_value = "24h")]
    pub lookback: String,

    /// Ingest new files from this landing directory before each run.
    #[arg(long, value_name = "DIR")]
    pub ingest: Option<PathBuf>,

    /// After ingesting, merge the files of each partition that has N or more into one (what
    /// `cimlake lake optimize --min-files N` does).
    #[arg(long, value_name = "N", requires = "ingest")]
    pub optimize: Option<usize>,

    /// Seconds between looks at the landing directory when nothing is due.
    #[arg(long, default_value_t = 60)]
    pub poll: u64,

    /// Run every window scheduled in [FROM, TO) and exit; the checkpoint is left alone.
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"], allow_hyphen_values = true)]
    pub backfill: Option<Vec<String>>,

    /// After each tick, write a report (`cimlake report`) of every detection window it ran into
    /// DIR: `report-<window end>.html`, and `latest.html`, the newest window's, replaced whole.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,

    /// Risk score over 24 hours above which a risk object becomes an incident.
    #[arg(long, default_value_t = 100)]
    pub risk_threshold: i64,

    /// Memory each run may use for joins, aggregations and sorts (e.g. 512M, 2G); a detection
    /// whose join does not fit runs in passes, as `detect --memory-limit` does [default: no limit].
    #[arg(long, value_parser = crate::engine::parse_size, value_name = "SIZE")]
    pub memory_limit: Option<usize>,

    #[command(flatten)]
    pub engine: EngineArgs,

    #[command(flatten)]
    pub sql: SqlArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ScheduleAction {
    /// Show each detection's checkpoint, next run and recent errors.
    Status,
}

/// A clock that starts at a given time and runs at real speed.
struct Clock {
    base: DateTime<Utc>,
    started: std::time::Instant,
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

fn options(args: &ScheduleArgs) -> anyhow::Result<SchedulerOptions> {
    let tz: Tz = args.tz.parse().map_err(|e| anyhow::anyhow!("--tz {:?}: {e}", args.tz))?;
    Ok(SchedulerOptions {
        tz,
        mode: args.mode,
        lookback: parse_duration(&args.lookback).context("--lookback")?,
        risk_threshold: args.risk_threshold,
        ingest: args.ingest.clone(),
        optimize: args.optimize,
        engine: args.engine.engine.clone(),
        memory_limit: args.memory_limit,
    })
}

fn fmt(us: i64) -> String {
    DateTime::from_timestamp_micros(us).map_or_else(|| us.to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn print_run(out: &mut impl Write, r: &RunRecord) -> std::io::Result<()> {
    let what = if r.job == runs::INCIDENTS_JOB {
        format!("{} incidents", r.incidents)
    } else {
        format!("{} results, {} risk events", r.results, r.risk_events)
    };
    let what = match r.passes {
        Some(n) => format!("{what} (the join did not fit in --memory-limit: {n} passes)"),
        None => what,
    };
    let mode = if r.mode.is_empty() { String::new() } else { format!(" ({})", r.mode) };
    match r.status {
        RunStatus::Ok => writeln!(out, "ran {}{mode} [{}, {}) {}: {what}", r.job, fmt(r.earliest_us), fmt(r.latest_us), r.trigger),
        RunStatus::Error => writeln!(
            out,
            "FAILED {}{mode} [{}, {}) {}: {}",
            r.job,
            fmt(r.earliest_us),
            fmt(r.latest_us),
            r.trigger,
            crate::output::escape_controls(r.error.as_deref().unwrap_or(""))
        ),
    }
}

pub async fn run(lake_dir: &Path, args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let lake = Lake::open(lake_dir)?;
    let catalog = args.sql.catalog()?;
    let opts = options(&args)?;
    if let Some(ScheduleAction::Status) = args.action {
        return status(&lake, &catalog, &opts, args.now.as_deref());
    }
    let base = match &args.now {
        Some(t) => parse_time(t, Utc::now()).context("--now")?,
        None => Utc::now(),
    };
    let clock = Clock { base, started: std::time::Instant::now() };
    if let Some(range) = &args.backfill {
        let from = parse_time(&range[0], clock.now()).context("--backfill FROM")?;
        let to = parse_time(&range[1], clock.now()).context("--backfill TO")?;
        anyhow::ensure!(from < to, "--backfill: FROM ({from}) must be before TO ({to})");
        let report = tick(&lake, &catalog, &opts, clock.now(), Some((from, to))).await?;
        let code = finish(&report)?;
        let reports = write_reports(&lake, &catalog, &opts, &report, args.report_dir.as_deref()).await;
        return Ok(if reports { code } else { ExitCode::FAILURE });
    }
    loop {
        let now = clock.now();
        let report = match tick(&lake, &catalog, &opts, now, None).await {
            Ok(r) => r,
            Err(e) if !args.once => {
                // A long-running scheduler outlives a bad tick (an unmounted landing directory, a
                // full disk): nothing was checkpointed past the failure, so it is retried.
                let e = crate::output::escape_controls(&format!("{e:#}")).into_owned();
                eprintln!("error: tick at {}: {e}; retrying in {}s", now.to_rfc3339_opts(SecondsFormat::Secs, true), args.poll.max(1));
                tokio::time::sleep(std::time::Duration::from_secs(args.poll.max(1))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let code = finish(&report)?;
        let reports = write_reports(&lake, &catalog, &opts, &report, args.report_dir.as_deref()).await;
        let code = if reports { code } else { ExitCode::FAILURE };
        if args.once {
            return Ok(code);
        }
        // Sleep until the next fire time of any detection (or the next look at the landing dir).
        let mut next = catalog
            .detections
            .iter()
            .filter_map(|d| Schedule::new(&d.meta.schedule, opts.tz).ok()?.next_after(now))
            .min()
            .unwrap_or(now + chrono::Duration::hours(1));
        if opts.ingest.is_some() {
            next = next.min(now + chrono::Duration::seconds(args.poll as i64));
        }
        let wait = (next - clock.now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
    }
}

/// With `--report-dir`: one report per detection window the tick ran (successfully), and
/// `latest.html`, the newest's. A report that cannot be written is an error of the tick (its runs
/// stand: they are published): printed, and `false`.
async fn write_reports(
    lake: &Lake,
    catalog: &crate::detect::Catalog,
    opts: &SchedulerOptions,
    report: &crate::schedule::TickReport,
    dir: Option<&Path>,
) -> bool {
    let Some(dir) = dir else { return true };
    let mut windows: Vec<(i64, i64)> =
        report.runs.iter().filter(|r| r.job != runs::INCIDENTS_JOB && r.status == RunStatus::Ok).map(|r| (r.earliest_us, r.latest_us)).collect();
    windows.sort();
    windows.dedup();
    if windows.is_empty() {
        return true;
    }
    let result: anyhow::Result<()> = async {
        std::fs::create_dir_all(dir).with_context(|| format!("--report-dir {}", dir.display()))?;
        let engine_opts = crate::engine::EngineOptions { memory_limit: opts.memory_limit, engine: opts.engine.clone(), as_of: None };
        let ctx = crate::detect::runner::session(lake, catalog, &engine_opts).await?;
        let last = windows.len() - 1;
        for (n, (earliest, latest)) in windows.into_iter().enumerate() {
            let at = |us| DateTime::from_timestamp_micros(us).context("a window's time");
            let (earliest, latest) = (at(earliest)?, at(latest)?);
            let ropts = crate::report::ReportOptions { earliest: Some(earliest), latest: Some(latest), lookback: opts.lookback, ..Default::default() };
            let built = crate::report::build(&ctx, catalog, &lake.location(), &ropts).await?;
            let path = dir.join(format!("report-{}.html", latest.format("%Y%m%dT%H%M%SZ")));
            super::report::write(&path, &built.html)?;
            if n == last {
                super::report::write(&dir.join("latest.html"), &built.html)?;
            }
            println!(
                "report {}: {} hits, {} incidents, window [{}, {})",
                crate::output::escape_controls(&path.display().to_string()),
                built.hits,
                built.incidents,
                fmt(earliest.timestamp_micros()),
                fmt(latest.timestamp_micros())
            );
        }
        Ok(())
    }
    .await;
    if let Err(e) = &result {
        eprintln!("error: writing the reports: {}", crate::output::escape_controls(&format!("{e:#}")));
    }
    result.is_ok()
}

fn finish(report: &crate::schedule::TickReport) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if let Some(ing) = &report.ingest {
        let stats = ing.stats();
        writeln!(
            out,
            "landing: {} inputs looked at, {} processes and {} flows ingested",
            ing.inputs.len(),
            stats.rows(crate::cim::Table::Processes),
            stats.rows(crate::cim::Table::AllTraffic)
        )?;
        for i in &ing.inputs {
            if let crate::ingest::InputOutcome::Failed { error, .. } = i {
                writeln!(out, "landing: error: {}", crate::output::escape_controls(&error.to_string()))?;
            }
        }
    }
    if let Some(o) = &report.optimized
        && let Some(id) = o.compaction
    {
        for (table, partitions, before, after) in &o.tables {
            writeln!(out, "landing: compaction {id}: {} {before} files in {partitions} partition(s) merged into {after}", table.qualified_name())?;
        }
    }
    for r in &report.runs {
        print_run(&mut out, r)?;
    }
    if let Some(e) = &report.delta_error {
        eprintln!("error: the Delta logs of the runs' tables are behind (the next tick tries again): {}", crate::output::escape_controls(e));
    }
    let failed = report.runs.iter().any(|r| r.status == RunStatus::Error)
        || report.ingest.as_ref().is_some_and(|i| i.failed() > 0)
        || report.delta_error.is_some();
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn status(lake: &Lake, catalog: &crate::detect::Catalog, opts: &SchedulerOptions, now: Option<&str>) -> anyhow::Result<ExitCode> {
    let now = match now {
        Some(t) => parse_time(t, Utc::now()).context("--now")?,
        None => Utc::now(),
    };
    let all = lake.runs()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "lake {}, schedules in {}, mode {}", lake.location(), opts.tz, opts.mode)?;
    for d in &catalog.detections {
        let schedule = Schedule::new(&d.meta.schedule, opts.tz)?;
        let ckpt = state::load(lake, &d.name, opts.mode.name())?;
        let mine: Vec<&RunRecord> = all.iter().filter(|r| r.job == d.name && r.mode == opts.mode.name()).collect();
        let errors = mine.iter().filter(|r| r.status == RunStatus::Error).count();
        writeln!(out, "\n{} ({})", d.name, d.meta.search_name)?;
        writeln!(out, "  cron {:?}, window {} .. {}", d.meta.schedule.cron, d.meta.schedule.earliest, d.meta.schedule.latest)?;
        match &ckpt {
            Some(c) => {
                writeln!(out, "  last run: scheduled {}, window [{}, {})", fmt(c.last_fire.timestamp_micros()), fmt(c.last_earliest.timestamp_micros()), fmt(c.last_latest.timestamp_micros()))?;
                let due = schedule.fire_times(c.last_fire, now).len();
                writeln!(out, "  due now: {due} window{}", if due == 1 { "" } else { "s" })?;
            }
            None => writeln!(out, "  last run: never (the first run takes the latest scheduled window)")?,
        }
        if let Some(n) = schedule.next_after(now) {
            writeln!(out, "  next run: {}", fmt(n.timestamp_micros()))?;
        }
        let results: u64 = runs::current(&all).iter().filter(|r| r.job == d.name && r.mode == opts.mode.name()).map(|r| r.results).sum();
        writeln!(out, "  runs: {} ({} failed), current results: {results}", mine.len(), errors)?;
        if let Some(last_err) = mine.iter().rev().find(|r| r.status == RunStatus::Error) {
            writeln!(out, "  last error: [{}, {}) {}", fmt(last_err.earliest_us), fmt(last_err.latest_us), crate::output::escape_controls(last_err.error.as_deref().unwrap_or("")))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
