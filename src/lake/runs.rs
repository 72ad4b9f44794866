//! Run records: what each scheduled (or back-filled, or re-run) job did, and the Parquet files of
//! the derived tables it wrote (`detections.results`, `risk.all_risk`, `risk.incidents`).
//!
//! A run writes its files first, then publishes its record (in the record table `_cimlake/runs`,
//! [`super::records`]) in one Delta commit.
//! The *current* output of a job for a window is that of its latest successful run: re-running a
//! window replaces its results, and a run that died before publishing left only files no record
//! names, which no query reads.

use std::collections::{BTreeMap, HashMap};

use arrow::array::TimestampMicrosecondArray;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::{DataFile, Lake, LakeError, RUNS_DIR, sync_dir};

/// The job that computes risk incidents.
pub const INCIDENTS_JOB: &str = "risk_incidents";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Ok,
    Error,
}

/// One run of one job over one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Publication order.
    pub seq: u64,
    pub run_id: String,
    /// A detection's name, or [`INCIDENTS_JOB`].
    pub job: String,
    pub search_name: String,
    /// `cimlake` or `splunk` for detections; empty for incidents.
    pub mode: String,
    /// `scheduled`, `catch-up`, `backfill`, `late-data`.
    pub trigger: String,
    /// The scheduled time the window was computed from (µs, UTC), when scheduled.
    pub scheduled_us: Option<i64>,
    pub earliest_us: i64,
    pub latest_us: i64,
    pub started_us: i64,
    pub finished_us: i64,
    pub status: RunStatus,
    pub error: Option<String>,
    /// Rows in the window per input table.
    pub rows_read: BTreeMap<String, u64>,
    pub results: u64,
    pub risk_events: u64,
    pub incidents: u64,
    pub files: Vec<DataFile>,
    /// Output columns of the detection, in order (results table).
    pub result_columns: Vec<String>,
    /// Passes over hash buckets the run took when its join did not fit its memory limit (absent:
    /// one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<u32>,
}

impl RunRecord {
    /// What a later run of the same window replaces.
    pub fn key(&self) -> (String, String, i64, i64) {
        (self.job.clone(), self.mode.clone(), self.earliest_us, self.latest_us)
    }
}

impl Lake {
    /// Every run record, in publication order.
    pub fn runs(&self) -> Result<Vec<RunRecord>, LakeError> {
        self.records_after(RUNS_DIR, 0, |r: &RunRecord| vec![&r.files])
    }

    /// Publishes a run record (its files already in place), with the next number.
    pub fn publish_run(&self, mut run: RunRecord) -> Result<RunRecord, LakeError> {
        let published = super::records::publish(self, RUNS_DIR, |seq| {
            run.seq = seq;
            Ok(Some((run.clone(), Vec::new())))
        })?;
        Ok(published.expect("a run record is always published"))
    }

    /// Writes `batches` as one Parquet file at `rel` (relative to the lake), through staging.
    /// `_time`, when the schema has it, gives the file's time range.
    pub fn write_derived(&self, rel: &str, schema: SchemaRef, batches: &[RecordBatch]) -> Result<DataFile, LakeError> {
        let staging = self.staging_dir();
        std::fs::create_dir_all(&staging).map_err(|e| LakeError::io(&staging, e))?;
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let staged = staging.join(format!("derived-{}-{n}.parquet", std::process::id()));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
            .build();
        let file = std::fs::File::create(&staged).map_err(|e| LakeError::io(&staged, e))?;
        let parquet_err = |source| LakeError::Parquet { path: staged.clone(), source };
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(parquet_err)?;
        let (mut rows, mut min, mut max) = (0u64, i64::MAX, i64::MIN);
        for b in batches {
            w.write(b).map_err(parquet_err)?;
            rows += b.num_rows() as u64;
            if let Ok(i) = schema.index_of(crate::cim::TIME) {
                if let Some(t) = b.column(i).as_any().downcast_ref::<TimestampMicrosecondArray>() {
                    if let Some(v) = arrow::compute::min(t) {
                        min = min.min(v);
                    }
                    if let Some(v) = arrow::compute::max(t) {
                        max = max.max(v);
                    }
                }
            }
        }
        w.close().map_err(parquet_err)?;
        if let Some(remote) = self.remote() {
            let bytes = std::fs::metadata(&staged).map_err(|e| LakeError::io(&staged, e))?.len();
            let uploaded = remote.upload(&staged, rel);
            let _ = std::fs::remove_file(&staged);
            uploaded?;
            return Ok(derived_file(rel, rows, bytes, min, max));
        }
        let target = self.root().join(rel);
        let parent = target.parent().expect("has a directory");
        std::fs::create_dir_all(parent).map_err(|e| LakeError::io(parent, e))?;
        std::fs::File::open(&staged).and_then(|f| f.sync_all()).map_err(|e| LakeError::io(&staged, e))?;
        std::fs::rename(&staged, &target).map_err(|e| LakeError::io(&target, e))?;
        sync_dir(parent);
        let bytes = std::fs::metadata(&target).map_err(|e| LakeError::io(&target, e))?.len();
        Ok(derived_file(rel, rows, bytes, min, max))
    }
}

/// The record of a file a run wrote at `rel`: its table (from the directory), rows, size and
/// `_time` range.
fn derived_file(rel: &str, rows: u64, bytes: u64, min: i64, max: i64) -> DataFile {
    let table = crate::cim::Table::ALL_TABLES
        .into_iter()
        .find(|t| t.filled() == crate::cim::Filled::ByRuns && t.lake_dir().is_some_and(|dir| rel.starts_with(dir)))
        .map_or("", crate::cim::Table::qualified_name);
    DataFile {
        table: table.to_string(),
        path: rel.to_string(),
        rows,
        bytes,
        min_time: if rows == 0 || min == i64::MAX { 0 } else { min },
        max_time: if rows == 0 || max == i64::MIN { 0 } else { max },
    }
}

/// The latest successful run per job, mode and window (the ones whose output counts).
pub fn current(runs: &[RunRecord]) -> Vec<&RunRecord> {
    let mut latest: HashMap<(String, String, i64, i64), &RunRecord> = HashMap::new();
    for r in runs.iter().filter(|r| r.status == RunStatus::Ok) {
        let k = r.key();
        if latest.get(&k).is_none_or(|prev| prev.seq < r.seq) {
            latest.insert(k, r);
        }
    }
    let mut out: Vec<&RunRecord> = latest.into_values().collect();
    out.sort_by_key(|r| r.seq);
    out
}

/// The output columns of `runs`' detections, each once, in the order they first appear: the
/// columns `detections.results` has beyond its stamp.
pub fn result_columns<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for r in runs {
        for c in &r.result_columns {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
    }
    columns
}

/// The files of one derived table from the current runs.
pub fn current_files(runs: &[RunRecord], table: &str) -> Vec<DataFile> {
    current(runs).into_iter().flat_map(|r| r.files.iter().filter(|f| f.table == table).cloned()).collect()
}

/// `cimlake.runs`: one row per run record, newest last, in the schema of [`crate::cim::runs`].
pub fn runs_batch(all: &[RunRecord]) -> Result<RecordBatch, arrow::error::ArrowError> {
    use crate::cim::Table;
    use crate::cim::runs::{head, schema, tail};
    let current: std::collections::HashSet<u64> = current(all).iter().map(|r| r.seq).collect();
    let (mut heads, mut tails) = (head::RunHeadBuilder::default(), tail::RunTailBuilder::default());
    let counted: Vec<Table> = Table::ALL_TABLES.into_iter().filter(|t| t.rows_read_column().is_some()).collect();
    let mut rows_read: Vec<arrow::array::UInt64Builder> = counted.iter().map(|_| Default::default()).collect();
    for r in all {
        heads.append(&head::RunHead {
            seq: Some(r.seq),
            run_id: Some(&r.run_id),
            job: Some(&r.job),
            mode: Some(r.mode.as_str()).filter(|m| !m.is_empty()),
            trigger: Some(&r.trigger),
            scheduled_time: r.scheduled_us,
            window_earliest: Some(r.earliest_us),
            window_latest: Some(r.latest_us),
            started_at: Some(r.started_us),
            finished_at: Some(r.finished_us),
            duration_ms: Some(r.finished_us.saturating_sub(r.started_us) / 1000),
            status: Some(if r.status == RunStatus::Ok { "ok" } else { "error" }),
            error: r.error.as_deref(),
        });
        for (t, b) in counted.iter().zip(&mut rows_read) {
            b.append_option(r.rows_read.get(t.qualified_name()).copied());
        }
        tails.append(&tail::RunTail {
            results: Some(r.results),
            risk_events: Some(r.risk_events),
            incidents: Some(r.incidents),
            current: Some(current.contains(&r.seq)),
        });
    }
    let mut columns = heads.finish()?.columns().to_vec();
    columns.extend(rows_read.iter_mut().map(|b| std::sync::Arc::new(b.finish()) as arrow::array::ArrayRef));
    columns.extend(tails.finish()?.columns().iter().cloned());
    RecordBatch::try_new(schema(), columns)
}
