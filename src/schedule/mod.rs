//! Scheduled batch runs of the detections, as ESCU runs them in Splunk: each detection on its cron
//! and window (`detection.toml`), results and risk events written to the lake as tables.
//!
//! One *tick* (at a given "now", real or given):
//! 1. takes the lake's scheduler lock (a second scheduler waits, then finds nothing left to do);
//! 2. ingests new files from the landing directory, if any (the manifest makes this exactly once);
//! 3. re-runs the windows already run that newly ingested rows fall into (late data);
//! 4. runs every window due since the checkpoint, in order (catch-up after downtime), moving the
//!    checkpoint after each;
//! 5. computes risk incidents over the 24 hours before each window it ran.
//!
//! Each run publishes a record; re-running a window replaces its output ([`crate::lake::runs`]).

pub mod state;
pub mod window;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use datafusion::common::ScalarValue;

use crate::cim::Table;
use crate::detect::results::{self, RunInfo};
use crate::detect::runner::{Runner, count};
use crate::detect::{Catalog, Detection, Mode, Search, risk};
use crate::engine;
use crate::ingest::{IngestOptions, IngestReport, ingest};
use crate::lake::runs::{self, INCIDENTS_JOB, RunRecord, RunStatus};
use crate::lake::{Lake, LakeError};
use crate::time::Window;
use state::Checkpoint;
use window::Schedule;

/// Environment variable: milliseconds to pause after a run's files are written and before its
/// record is published. A fault-injection point for crash tests; unset in normal use.
pub const STALL_ENV: &str = "CIMLAKE_FAULT_STALL_MS";

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A checkpoint, or the scheduler lock.
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("{detection}: {source}")]
    Window { detection: String, source: window::WindowError },
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// A run record whose window is no time range (a damaged record): a bound beyond the times
    /// there are, or an end with no 24 hours before it (incidents are computed over those).
    #[error("run record {seq} (run {run_id}): refused: its window [{earliest_us} µs, {latest_us} µs) is out of range")]
    RunOutOfRange { seq: u64, run_id: String, earliest_us: i64, latest_us: i64 },
}

/// Why one run failed, as its run record says (`error`).
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Detection(#[from] crate::detect::runner::RunError),
    #[error(transparent)]
    Session(#[from] engine::EngineError),
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),
    /// The incident rule's SQL is not a query.
    #[error("{file}: {reason}")]
    NotReadOnly { file: String, reason: String },
    /// Turning the output into results, risk events or incidents.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// Writing the output to the lake.
    #[error(transparent)]
    Write(#[from] LakeError),
}

impl From<crate::detect::PlanError> for JobError {
    fn from(e: crate::detect::PlanError) -> Self {
        match e {
            crate::detect::PlanError::DataFusion(e) => JobError::Query(e),
            crate::detect::PlanError::NotReadOnly { file, reason } => JobError::NotReadOnly { file, reason },
        }
    }
}

/// The window of a run record as times, or an error naming the record if it is out of range
/// (only a damaged record is).
fn run_window(r: &RunRecord) -> Result<Window, ScheduleError> {
    let earliest = DateTime::from_timestamp_micros(r.earliest_us);
    let latest = DateTime::from_timestamp_micros(r.latest_us).filter(|t| t.checked_sub_signed(Duration::hours(24)).is_some());
    match (earliest, latest) {
        (Some(earliest), Some(latest)) => Ok(Window { earliest, latest }),
        _ => Err(ScheduleError::RunOutOfRange { seq: r.seq, run_id: r.run_id.clone(), earliest_us: r.earliest_us, latest_us: r.latest_us }),
    }
}

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub tz: Tz,
    pub mode: Mode,
    pub lookback: Duration,
    /// Risk score over 24 hours above which a risk object becomes an incident.
    pub risk_threshold: i64,
    /// A landing directory to ingest from before each tick.
    pub ingest: Option<PathBuf>,
    /// After ingesting, merge partitions of this many files or more ([`Lake::optimize`]).
    pub optimize: Option<usize>,
    /// Where the runs' queries run.
    pub engine: engine::Engine,
    /// Memory each run may use (in process); a detection that does not fit runs in passes.
    pub memory_limit: Option<usize>,
}

impl SchedulerOptions {
    fn engine_options(&self) -> engine::EngineOptions {
        engine::EngineOptions { memory_limit: self.memory_limit, engine: self.engine.clone(), as_of: None }
    }
}

/// What a tick did.
#[derive(Debug, Default)]
pub struct TickReport {
    pub ingest: Option<IngestReport>,
    pub optimized: Option<crate::lake::maintenance::Optimized>,
    pub runs: Vec<RunRecord>,
    /// Why the runs' Delta tables could not be brought up to date (the runs are published; the
    /// next tick tries again).
    pub delta_error: Option<String>,
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn new_run_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{}-{n}", Utc::now().format("%Y%m%dT%H%M%S%.6fZ"), std::process::id())
}

/// Runs one tick at `now`. With `backfill`, runs every window scheduled in `[from, to)` instead of
/// what is due (the checkpoint is not moved).
pub async fn tick(
    lake: &Lake,
    catalog: &Catalog,
    opts: &SchedulerOptions,
    now: DateTime<Utc>,
    backfill: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<TickReport, ScheduleError> {
    let _lock = state::lock(lake)?;
    let mut report = TickReport::default();
    if let Some(dir) = &opts.ingest {
        report.ingest = Some(ingest(lake, std::slice::from_ref(dir), &IngestOptions::default())?);
        if let Some(min_files) = opts.optimize {
            report.optimized = match lake.optimize(min_files) {
                Ok(o) => Some(o),
                // An optimize the user runs by hand: this tick leaves the merging to it.
                Err(LakeError::Busy { .. }) => None,
                Err(e) => return Err(e.into()),
            };
        }
    }
    let commits = lake.commits()?;
    let max_commit = commits.iter().map(|c| c.id).max().unwrap_or(0);
    let mut ran_windows: BTreeSet<Window> = BTreeSet::new();
    // Incident windows (by their end) to compute again because a late re-run changed their input.
    let mut stale_incidents: BTreeSet<DateTime<Utc>> = BTreeSet::new();
    // The runs before this tick: what late data is checked against.
    let prior_runs = lake.runs()?;
    for d in &catalog.detections {
        // A detection with one mode only (Sigma rules: cimlake; ESCU translations: splunk) runs
        // in that mode, whatever --mode says.
        let own;
        let opts = match d.modes().as_slice() {
            [only] if !d.has_mode(opts.mode) => {
                own = SchedulerOptions { mode: *only, ..opts.clone() };
                &own
            }
            _ => opts,
        };
        let mode = opts.mode.name();
        let schedule = Schedule::new(&d.meta.schedule, opts.tz)
            .map_err(|source| ScheduleError::Window { detection: d.name.clone(), source })?;
        if let Some((from, to)) = backfill {
            let start = from - Duration::microseconds(1);
            for fire in schedule.fire_times(start, to).into_iter().filter(|f| *f < to) {
                let w = schedule.window(fire).map_err(|source| ScheduleError::Window { detection: d.name.clone(), source })?;
                let rec = run_detection(lake, catalog, d, opts, w, Some(fire), "backfill").await?;
                if rec.status == RunStatus::Ok {
                    ran_windows.insert(w);
                }
                report.runs.push(rec);
            }
            continue;
        }
        let mut ckpt = state::load(lake, &d.name, mode)?;
        // Late data: windows already run that rows ingested since then fall into. If a re-run
        // fails, the commits stay unseen so the next tick tries again.
        let mut late_ok = true;
        if let Some(c) = &ckpt {
            let late = late_windows(&prior_runs, &commits, c.seen_commit, &d.name, mode, opts.lookback)?;
            for w in late {
                let rec = run_detection(lake, catalog, d, opts, w, None, "late-data").await?;
                if rec.status == RunStatus::Ok {
                    ran_windows.insert(w);
                    for r in runs::current(&prior_runs).into_iter().filter(|r| r.job == INCIDENTS_JOB) {
                        if r.latest_us > us(w.earliest) && r.earliest_us < us(w.latest) {
                            stale_incidents.insert(run_window(r)?.latest);
                        }
                    }
                } else {
                    late_ok = false;
                }
                report.runs.push(rec);
            }
        }
        let due: Vec<DateTime<Utc>> = match &ckpt {
            Some(c) => schedule.fire_times(c.last_fire, now),
            None => schedule.last_at_or_before(now).into_iter().collect(),
        };
        let n_due = due.len();
        for (i, fire) in due.into_iter().enumerate() {
            let w = schedule.window(fire).map_err(|source| ScheduleError::Window { detection: d.name.clone(), source })?;
            let trigger = if i + 1 < n_due { "catch-up" } else { "scheduled" };
            let rec = run_detection(lake, catalog, d, opts, w, Some(fire), trigger).await?;
            let ok = rec.status == RunStatus::Ok;
            report.runs.push(rec);
            if !ok {
                // Retried at the next tick; later windows wait so the order holds. A first run
                // that failed leaves a checkpoint just before it, so it is not skipped.
                if ckpt.is_none() {
                    if let Some(prev) = schedule.last_at_or_before(fire - Duration::microseconds(1)) {
                        let pw = schedule.window(prev).map_err(|source| ScheduleError::Window { detection: d.name.clone(), source })?;
                        let c = Checkpoint { last_fire: prev, last_earliest: pw.earliest, last_latest: pw.latest, seen_commit: max_commit, updated_at: Utc::now() };
                        state::save(lake, &d.name, mode, &c)?;
                        ckpt = Some(c);
                    }
                }
                break;
            }
            ran_windows.insert(w);
            let seen = ckpt.as_ref().map_or(max_commit, |c| c.seen_commit);
            let c = Checkpoint { last_fire: fire, last_earliest: w.earliest, last_latest: w.latest, seen_commit: seen, updated_at: Utc::now() };
            state::save(lake, &d.name, mode, &c)?;
            ckpt = Some(c);
        }
        if let Some(mut c) = ckpt {
            if late_ok && c.seen_commit != max_commit {
                c.seen_commit = max_commit;
                c.updated_at = Utc::now();
                state::save(lake, &d.name, mode, &c)?;
            }
        }
    }
    let ends: BTreeSet<DateTime<Utc>> = ran_windows.iter().map(|w| w.latest).chain(stale_incidents).collect();
    for latest in ends {
        let w = Window { earliest: latest - Duration::hours(24), latest };
        report.runs.push(run_incidents(lake, catalog, opts, w).await?);
    }
    // The runs' tables as Delta tables (a publish that failed last tick is caught up now). Its
    // failure is reported beside the runs, which are published whatever it does.
    if let Err(e) = lake.publish_run_tables() {
        report.delta_error = Some(e.to_string());
    }
    Ok(report)
}

/// Windows of current successful runs that rows of commits newer than `seen` fall into: flows by
/// their time, processes by their time up to the look-back later.
fn late_windows(
    runs_before: &[RunRecord],
    commits: &[crate::lake::Commit],
    seen: u64,
    detection: &str,
    mode: &str,
    lookback: Duration,
) -> Result<Vec<Window>, ScheduleError> {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for c in commits.iter().filter(|c| c.id > seen) {
        for f in &c.files {
            // Rows of the tables detections read; a table whose rows count for the look-back
            // reaches as far after them.
            let Some(table) = Table::ALL.into_iter().find(|t| t.qualified_name() == f.table) else { continue };
            let reach = if table.counts_for_lookback() { lookback.num_microseconds().unwrap_or(i64::MAX) } else { 0 };
            ranges.push((f.min_time, f.max_time.saturating_add(reach)));
        }
    }
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: BTreeSet<Window> = BTreeSet::new();
    for r in runs::current(runs_before) {
        if r.job != detection || r.mode != mode {
            continue;
        }
        if ranges.iter().any(|(lo, hi)| *lo < r.latest_us && *hi >= r.earliest_us) {
            out.insert(run_window(r)?);
        }
    }
    Ok(out.into_iter().collect())
}

fn stall() {
    if let Some(ms) = std::env::var(STALL_ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

fn date_dir(t: DateTime<Utc>) -> String {
    t.format("date=%Y-%m-%d").to_string()
}

/// A run record before the run: status ok, nothing counted yet.
#[allow(clippy::too_many_arguments)]
fn new_record(
    run_id: &str,
    job: &str,
    search_name: &str,
    mode: &str,
    trigger: &str,
    fire: Option<DateTime<Utc>>,
    w: Window,
    started: DateTime<Utc>,
) -> RunRecord {
    RunRecord {
        seq: 0,
        run_id: run_id.to_string(),
        job: job.to_string(),
        search_name: search_name.to_string(),
        mode: mode.to_string(),
        trigger: trigger.to_string(),
        scheduled_us: fire.map(us),
        earliest_us: us(w.earliest),
        latest_us: us(w.latest),
        started_us: us(started),
        finished_us: 0,
        status: RunStatus::Ok,
        error: None,
        rows_read: BTreeMap::new(),
        results: 0,
        risk_events: 0,
        incidents: 0,
        files: Vec::new(),
        result_columns: Vec::new(),
        passes: None,
    }
}

/// Runs one detection over one window and publishes the run (as an error record if it failed).
async fn run_detection(
    lake: &Lake,
    catalog: &Catalog,
    d: &Detection,
    opts: &SchedulerOptions,
    w: Window,
    fire: Option<DateTime<Utc>>,
    trigger: &str,
) -> Result<RunRecord, ScheduleError> {
    let started = Utc::now();
    let run = RunInfo {
        run_id: new_run_id(),
        detection: d.name.clone(),
        search_name: d.meta.search_name.clone(),
        mode: opts.mode.name().to_string(),
        earliest_us: us(w.earliest),
        latest_us: us(w.latest),
    };
    let mut rec = new_record(&run.run_id, &d.name, &d.meta.search_name, &run.mode, trigger, fire, w, started);
    if let Err(e) = execute_detection(lake, catalog, d, opts, w, &run, &mut rec).await {
        rec.status = RunStatus::Error;
        rec.error = Some(e.to_string());
        rec.files.clear();
    }
    rec.finished_us = us(Utc::now());
    if rec.status == RunStatus::Ok {
        stall();
    }
    Ok(lake.publish_run(rec)?)
}

async fn execute_detection(
    lake: &Lake,
    catalog: &Catalog,
    d: &Detection,
    opts: &SchedulerOptions,
    w: Window,
    run: &RunInfo,
    rec: &mut RunRecord,
) -> Result<(), JobError> {
    let search = Search { window: w, lookback: opts.lookback };
    let executed = Runner::new(lake, catalog, opts.engine_options()).counting().run(d, opts.mode, &search).await?;
    rec.rows_read = executed.rows_read;
    rec.passes = (executed.passes > 1).then_some(executed.passes);
    rec.result_columns = executed.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut result_batches = Vec::new();
    let mut risk_batches = Vec::new();
    for b in &executed.batches {
        result_batches.push(results::to_results(b, run)?);
        risk_batches.push(risk::risk_events(b, &d.meta, run)?);
    }
    rec.results = result_batches.iter().map(|b| b.num_rows() as u64).sum();
    rec.risk_events = risk_batches.iter().map(|b| b.num_rows() as u64).sum();
    let date = date_dir(w.earliest);
    let dir = |t: Table| t.lake_dir().expect("stored in the lake");
    let results_rel = format!("{}/detection={}/{date}/{}.parquet", dir(Table::Results), d.name, run.run_id);
    let schema = crate::cim::results::schema_with(&rec.result_columns);
    rec.files.push(lake.write_derived(&results_rel, schema, &result_batches)?);
    let risk_rel = format!("{}/{date}/{}.parquet", dir(Table::Risk), run.run_id);
    rec.files.push(lake.write_derived(&risk_rel, Table::Risk.schema(), &risk_batches)?);
    Ok(())
}

/// Runs the risk incident rule over the 24 hours before `w.latest`.
async fn run_incidents(lake: &Lake, catalog: &Catalog, opts: &SchedulerOptions, w: Window) -> Result<RunRecord, ScheduleError> {
    let started = Utc::now();
    let run_id = new_run_id();
    let earliest = w.latest - Duration::hours(24);
    let span = Window { earliest, latest: w.latest };
    let mut rec = new_record(&run_id, INCIDENTS_JOB, "Risk incidents: score over 24h or several MITRE tactics", "", "scheduled", None, span, started);
    let outcome: Result<(), JobError> = async {
        let ctx = engine::session_with(lake, &opts.engine_options()).await?;
        let ts = |t: DateTime<Utc>| ScalarValue::TimestampMicrosecond(Some(us(t)), Some("UTC".into()));
        let params = vec![("earliest", ts(earliest)), ("latest", ts(w.latest)), ("threshold", ScalarValue::Int64(Some(opts.risk_threshold)))];
        let risk_in_span = format!("SELECT count(*) FROM {} WHERE _time >= $earliest AND _time < $latest", Table::Risk.qualified_name());
        rec.rows_read.insert(Table::Risk.qualified_name().into(), count(&ctx, &risk_in_span, params[..2].to_vec()).await?);
        let df = crate::detect::plan_query(&ctx, &catalog.incidents_sql, &catalog.incidents_file).await?;
        let df = df.with_param_values(params)?;
        let batches = df.collect().await?;
        let info = Stamp { run_id: run_id.clone(), earliest_us: us(earliest), latest_us: us(w.latest) };
        let stamped: Vec<_> = batches.iter().map(|b| stamp_incidents(b, &info)).collect::<Result<_, _>>()?;
        rec.incidents = stamped.iter().map(|b| b.num_rows() as u64).sum();
        let rel = format!("{}/{}/{}.parquet", Table::Incidents.lake_dir().expect("stored in the lake"), date_dir(w.latest), run_id);
        rec.files.push(lake.write_derived(&rel, Table::Incidents.schema(), &stamped)?);
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        rec.status = RunStatus::Error;
        rec.error = Some(e.to_string());
        rec.files.clear();
    }
    rec.finished_us = us(Utc::now());
    Ok(lake.publish_run(rec)?)
}

/// Who computed a set of incidents, stamped on each.
struct Stamp {
    run_id: String,
    earliest_us: i64,
    latest_us: i64,
}

/// The incident rule's output with `_time` (the end of its 24 hours) and the run stamped on, in
/// the schema of `risk.incidents`.
fn stamp_incidents(b: &arrow::record_batch::RecordBatch, s: &Stamp) -> Result<arrow::record_batch::RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;
    let schema = Table::Incidents.schema();
    let n = b.num_rows();
    let ts = |v: i64| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(vec![v; n]).with_timezone("UTC")) };
    let mut cols: Vec<ArrayRef> = vec![ts(s.latest_us), Arc::new(StringArray::from(vec![s.run_id.as_str(); n])), ts(s.earliest_us), ts(s.latest_us)];
    for f in schema.fields().iter().skip(crate::cim::incidents::STAMP_COLUMNS) {
        let c = b.column(b.schema().index_of(f.name())?);
        cols.push(arrow::compute::cast(c, f.data_type())?);
    }
    arrow::record_batch::RecordBatch::try_new(schema, cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::{Commit, DataFile, InputRecord};

    /// A commit of one processes file with rows from `min_time` to `max_time` (µs).
    fn commit(id: u64, min_time: i64, max_time: i64) -> Commit {
        Commit {
            id,
            committed_at: "2026-11-03T14:00:00Z".into(),
            input: InputRecord {
                path: "late.log".into(),
                hash: "00".into(),
                head_hash: None,
                bytes: 1,
                container: None,
                sourcetypes: Vec::new(),
                stats: Default::default(),
            },
            files: vec![DataFile {
                table: Table::Processes.qualified_name().into(),
                path: "endpoint/processes/date=2026-11-03/hour=13/x.parquet".into(),
                rows: 1,
                bytes: 1,
                min_time,
                max_time,
            }],
        }
    }

    #[test]
    fn a_run_record_whose_window_is_out_of_range_is_an_error_naming_it() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let w = Window { earliest: at("2026-11-03T12:50:00Z"), latest: at("2026-11-03T13:50:00Z") };
        let mut run = new_record("run-1", "d", "D", "cimlake", "scheduled", None, w, w.latest);
        run.seq = 1;
        // Rows ingested since the run, from the first time there is to its window.
        let commits = [commit(2, DateTime::<Utc>::MIN_UTC.timestamp_micros(), us(w.latest))];
        let late = |r: &RunRecord| late_windows(std::slice::from_ref(r), &commits, 1, "d", "cimlake", Duration::hours(24));
        assert_eq!(late(&run).unwrap(), vec![w]);
        let min = DateTime::<Utc>::MIN_UTC.timestamp_micros();
        for (earliest_us, latest_us) in [
            (i64::MIN, i64::MAX),
            (us(w.earliest), i64::MAX),
            (i64::MIN, us(w.latest)),
            // Times there are, but no 24 hours before the end.
            (min, min + 3_600_000_000),
        ] {
            let damaged = RunRecord { seq: 7, run_id: "run-7".into(), earliest_us, latest_us, ..run.clone() };
            let err = late(&damaged).unwrap_err();
            assert!(matches!(err, ScheduleError::RunOutOfRange { seq: 7, .. }), "{err:?}");
            assert!(err.to_string().starts_with("run record 7 (run run-7): refused: its window ["), "{err}");
        }
    }
}
