//! The query engine: a DataFusion [`SessionContext`] over the lake, in this process or on a
//! Ballista cluster ([`Engine`]; the tables and views are registered the same way on both):
//!
//! * `endpoint.processes`, `network_traffic.all_traffic`: the CIM tables;
//! * `detections.results`, `risk.all_risk`, `risk.incidents`: what scheduled runs wrote (the
//!   current run of each window), and `cimlake.runs`: every run;
//! * with a catalog, every detection as a view over all time: `detect.<name>` (cimlake mode) and
//!   `detect_splunk.<name>` (Splunk mode).

pub mod open_files;

use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::cim::Table;
use crate::detect::{self, Catalog, DetectError, Mode, Window};
use datafusion::error::DataFusionError;
use crate::lake::runs::{self, INCIDENTS_TABLE, RESULTS_TABLE, RISK_TABLE, RunRecord, RunStatus};
use crate::lake::table::LakeTable;
use crate::lake::{Lake, LakeError};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;

/// The schema holding detection views per mode.
pub fn detection_schema(mode: Mode) -> &'static str {
    match mode {
        Mode::Cimlake => "detect",
        Mode::Splunk => "detect_splunk",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("{0}")]
    Cluster(String),
}

fn register_derived(ctx: &SessionContext, lake: &Lake) -> Result<(), EngineError> {
    let default_catalog = ctx.catalog("datafusion").expect("default catalog");
    let all = lake.runs()?;
    for schema in ["detections", "risk", "cimlake"] {
        if default_catalog.schema(schema).is_none() {
            default_catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
        }
    }
    // detections.results: the union of every detection's output columns.
    let mut columns: Vec<String> = Vec::new();
    for r in runs::current(&all) {
        for c in &r.result_columns {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
    }
    let tables = [
        (RESULTS_TABLE.0, crate::detect::results::schema(&columns)),
        (RISK_TABLE.0, crate::detect::risk::schema()),
        (INCIDENTS_TABLE.0, crate::schedule::incidents::schema()),
    ];
    for (name, schema) in tables {
        let (s, t) = name.split_once('.').expect("qualified");
        let provider = LakeTable::new(schema, lake.root().to_path_buf(), runs::current_files(&all, name));
        ctx.register_table(TableReference::partial(s, t), Arc::new(provider))?;
    }
    let batch = runs_batch(&all)?;
    let mem = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    ctx.register_table(TableReference::partial("cimlake", "runs"), Arc::new(mem))?;
    Ok(())
}

/// `cimlake.runs`: one row per run record, newest last.
fn runs_batch(all: &[RunRecord]) -> Result<RecordBatch, EngineError> {
    use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray, UInt64Array};
    let current: std::collections::HashSet<u64> = runs::current(all).iter().map(|r| r.seq).collect();
    let ts = |v: Vec<Option<i64>>| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) };
    let text = |v: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let read = |r: &RunRecord, t: &str| r.rows_read.get(t).copied();
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("seq", Arc::new(UInt64Array::from(all.iter().map(|r| r.seq).collect::<Vec<_>>()))),
        ("run_id", text(all.iter().map(|r| Some(r.run_id.as_str())).collect())),
        ("job", text(all.iter().map(|r| Some(r.job.as_str())).collect())),
        ("mode", text(all.iter().map(|r| Some(r.mode.as_str()).filter(|m| !m.is_empty())).collect())),
        ("trigger", text(all.iter().map(|r| Some(r.trigger.as_str())).collect())),
        ("scheduled_time", ts(all.iter().map(|r| r.scheduled_us).collect())),
        ("window_earliest", ts(all.iter().map(|r| Some(r.earliest_us)).collect())),
        ("window_latest", ts(all.iter().map(|r| Some(r.latest_us)).collect())),
        ("started_at", ts(all.iter().map(|r| Some(r.started_us)).collect())),
        ("finished_at", ts(all.iter().map(|r| Some(r.finished_us)).collect())),
        ("duration_ms", Arc::new(Int64Array::from(all.iter().map(|r| (r.finished_us - r.started_us) / 1000).collect::<Vec<_>>()))),
        ("status", text(all.iter().map(|r| Some(if r.status == RunStatus::Ok { "ok" } else { "error" })).collect())),
        ("error", text(all.iter().map(|r| r.error.as_deref()).collect())),
        ("rows_read_processes", Arc::new(UInt64Array::from(all.iter().map(|r| read(r, "endpoint.processes")).collect::<Vec<_>>()))),
        ("rows_read_all_traffic", Arc::new(UInt64Array::from(all.iter().map(|r| read(r, "network_traffic.all_traffic")).collect::<Vec<_>>()))),
        ("rows_read_risk", Arc::new(UInt64Array::from(all.iter().map(|r| read(r, "risk.all_risk")).collect::<Vec<_>>()))),
        ("results", Arc::new(UInt64Array::from(all.iter().map(|r| r.results).collect::<Vec<_>>()))),
        ("risk_events", Arc::new(UInt64Array::from(all.iter().map(|r| r.risk_events).collect::<Vec<_>>()))),
        ("incidents", Arc::new(UInt64Array::from(all.iter().map(|r| r.incidents).collect::<Vec<_>>()))),
        ("current", Arc::new(BooleanArray::from(all.iter().map(|r| current.contains(&r.seq)).collect::<Vec<_>>()))),
    ];
    Ok(RecordBatch::try_from_iter(cols).map_err(DataFusionError::from)?)
}

/// Set to `false` to read Parquet columns whole before filtering (DataFusion's own default).
pub const PUSHDOWN_ENV: &str = "DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS";

/// Where queries run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// In this process (DataFusion).
    #[default]
    InProcess,
    /// On a Ballista cluster, through its scheduler ([`crate::cluster`]).
    Ballista(crate::cluster::SchedulerAddr),
}

impl std::str::FromStr for Engine {
    type Err = String;

    /// `in-process`, or `ballista://HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "in-process" => Ok(Engine::InProcess),
            _ => match s.strip_prefix("ballista://") {
                Some(addr) => Ok(Engine::Ballista(addr.trim_end_matches('/').parse()?)),
                None => Err(format!("unknown engine {s:?}: use in-process or ballista://HOST:PORT")),
            },
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::InProcess => f.write_str("in-process"),
            Engine::Ballista(addr) => write!(f, "ballista://{addr}"),
        }
    }
}

/// How queries run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Bytes of memory DataFusion may use for joins, aggregations and sorts; beyond it, sorts and
    /// aggregations spill to disk (see [`run_detection`] for joins). In-process only: a cluster's
    /// executors take theirs at start (`cimlake cluster executor --memory-limit`).
    pub memory_limit: Option<usize>,
    pub engine: Engine,
}

/// A session over the lake. With a catalog, detections are registered as views too.
pub async fn session(lake: &Lake, catalog: Option<&Catalog>) -> Result<SessionContext, EngineError> {
    session_with(lake, catalog, &EngineOptions::default()).await
}

/// A memory pool of `bytes`. Spilling operators share it fairly, so each spills early instead of
/// one starving the others; when it says no, the error names its five largest consumers.
pub fn memory_pool(bytes: usize) -> Arc<dyn datafusion::execution::memory_pool::MemoryPool> {
    let pool = datafusion::execution::memory_pool::FairSpillPool::new(bytes);
    Arc::new(datafusion::execution::memory_pool::TrackConsumersPool::new(pool, std::num::NonZeroUsize::new(5).expect("5")))
}

/// A session over the lake, with options. The tables and views are the same on either engine.
pub async fn session_with(lake: &Lake, catalog: Option<&Catalog>, opts: &EngineOptions) -> Result<SessionContext, EngineError> {
    // DataFusion's own settings may be tuned from the environment (`DATAFUSION_EXECUTION_…`).
    let mut config = SessionConfig::from_env()?
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    if std::env::var_os(PUSHDOWN_ENV).is_none() {
        // Filters run inside the Parquet scan, so the other columns are decoded only for the rows
        // that pass; with the hash join's dynamic filter, a detection decodes the wide columns of
        // matching flows only (BENCHMARKS.md). Not under a memory limit: the batches such a scan
        // returns share large decoded buffers, which the memory pool counts in full for each
        // batch, so sorts run out of their share without holding much.
        config.options_mut().execution.parquet.pushdown_filters = opts.memory_limit.is_none();
    }
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = opts.memory_limit {
        runtime = runtime.with_memory_pool(memory_pool(bytes));
        if bytes < 256 << 20 {
            // Under a small pool, two partitions: few sorts at once, each with a larger share.
            config = config.with_batch_size(1024).with_target_partitions(2);
        }
        // What each sort sets aside to merge its spills: a small share of the pool (a detection runs
        // several sorts at once), not a fixed 10 MB.
        let exec = &mut config.options_mut().execution;
        exec.sort_spill_reservation_bytes = exec.sort_spill_reservation_bytes.min(bytes / 16);
    }
    let ctx = match &opts.engine {
        Engine::InProcess => SessionContext::new_with_config_rt(config, runtime.build_arc()?),
        Engine::Ballista(scheduler) => {
            if opts.memory_limit.is_some() {
                return Err(EngineError::Cluster(format!(
                    "--memory-limit applies to the in-process engine; on {}, give each executor its own (`cimlake cluster executor --memory-limit`)",
                    opts.engine
                )));
            }
            crate::cluster::remote_context(scheduler, config).await?
        }
    };
    // The lake's files are read through a store that bounds the files open at once.
    let file_url = url::Url::parse("file://").expect("a valid URL");
    ctx.runtime_env().register_object_store(&file_url, Arc::new(open_files::BoundedLocal::new()));
    if let Some(udf) = crate::fault::panic_udf() {
        ctx.register_udf(udf);
    }
    let default_catalog = ctx.catalog("datafusion").expect("default catalog");
    let commits = lake.commits()?;
    for table in Table::STORED {
        if default_catalog.schema(table.schema_name()).is_none() {
            default_catalog.register_schema(table.schema_name(), Arc::new(MemorySchemaProvider::new()))?;
        }
        let files = commits
            .iter()
            .flat_map(|c| c.files.iter())
            .filter(|f| f.table == table.qualified_name())
            .cloned()
            .collect();
        let provider = LakeTable::new(table.schema(), lake.root().to_path_buf(), files);
        ctx.register_table(TableReference::partial(table.schema_name(), table.table_name()), Arc::new(provider))?;
    }
    register_derived(&ctx, lake)?;
    if let Some(catalog) = catalog {
        for mode in [Mode::Cimlake, Mode::Splunk] {
            let schema = detection_schema(mode);
            default_catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
            for d in &catalog.detections {
                let df = detect::plan(&ctx, catalog, d, mode, &Window::all_time()).await?;
                ctx.register_table(TableReference::partial(schema, d.name.as_str()), df.into_view())?;
            }
        }
    }
    Ok(ctx)
}

/// A detection's output, and how it was obtained.
#[derive(Debug)]
pub struct Executed {
    pub schema: arrow::datatypes::SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// 1, or the number of passes the detection ran in because one did not fit in memory.
    pub passes: u32,
    pub spill_count: usize,
    pub spilled_bytes: usize,
}

/// Whether an error is the memory pool saying no, however deeply it is wrapped (a hash join's
/// build side reports it through a shared future).
fn is_resources_exhausted(e: &DataFusionError) -> bool {
    if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(DataFusionError::ResourcesExhausted(_)) = err.downcast_ref::<DataFusionError>() {
            return true;
        }
        cur = err.source();
    }
    e.to_string().contains("Resources exhausted")
}

/// Sums spill metrics over a physical plan.
fn spills(plan: &dyn datafusion::physical_plan::ExecutionPlan) -> (usize, usize) {
    let (mut count, mut bytes) = (0, 0);
    if let Some(m) = plan.metrics() {
        count += m.spill_count().unwrap_or(0);
        bytes += m.spilled_bytes().unwrap_or(0);
    }
    for child in plan.children() {
        let (c, b) = spills(child.as_ref());
        count += c;
        bytes += b;
    }
    (count, bytes)
}

/// One pass of a detection split into `of` passes: only the rows whose partition columns hash to
/// bucket `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pass {
    index: u32,
    of: u32,
}

/// A stable 63-bit hash of a value's text (FNV-1a), for splitting a detection into passes. Nulls
/// hash to 0.
fn bucket_udf() -> datafusion::logical_expr::ScalarUDF {
    use arrow::array::{Array, Int64Array, StringArray};
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    create_udf(
        "cimlake_partition_hash",
        vec![arrow::datatypes::DataType::Utf8],
        arrow::datatypes::DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let values = arrays[0].as_any().downcast_ref::<StringArray>().expect("Utf8 argument");
            let hashed: Int64Array = (0..values.len())
                .map(|i| {
                    if values.is_null(i) {
                        return Some(0);
                    }
                    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                    for b in values.value(i).bytes() {
                        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                    }
                    Some((h >> 1) as i64)
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(hashed)))
        }),
    )
}

/// Replaces each lake table named in `keys` by its rows whose key column falls in `pass`.
async fn restrict_to_pass(ctx: &SessionContext, keys: &std::collections::BTreeMap<String, String>, pass: Pass) -> Result<(), EngineError> {
    use datafusion::prelude::{cast, col, lit};
    let hash = Arc::new(bucket_udf());
    for (table, column) in keys {
        let name = TableReference::from(table.as_str());
        let all = ctx.table(name.clone()).await?;
        let key = hash.call(vec![cast(col(column.as_str()), arrow::datatypes::DataType::Utf8)]);
        let part = all.filter((key % lit(i64::from(pass.of))).eq(lit(i64::from(pass.index))))?;
        ctx.deregister_table(name.clone())?;
        ctx.register_table(name, part.into_view())?;
    }
    Ok(())
}

struct Once {
    executed: Executed,
    ordering: Option<datafusion::physical_expr::LexOrdering>,
}

async fn execute_once(
    lake: &Lake,
    catalog: &Catalog,
    d: &crate::detect::Detection,
    mode: Mode,
    window: &Window,
    opts: &EngineOptions,
    pass: Option<Pass>,
) -> Result<Once, EngineError> {
    let ctx = session_with(lake, None, opts).await?;
    if let (Some(pass), Some(keys)) = (pass, d.meta.partition_by.get(mode.name())) {
        restrict_to_pass(&ctx, keys, pass).await?;
    }
    let df = detect::plan(&ctx, catalog, d, mode, window).await?;
    let schema = df.schema().inner().clone();
    let task = df.task_ctx();
    let plan = df.create_physical_plan().await?;
    let batches = datafusion::physical_plan::collect(plan.clone(), std::sync::Arc::new(task)).await?;
    let (spill_count, spilled_bytes) = spills(plan.as_ref());
    let ordering = datafusion::physical_plan::ExecutionPlanProperties::output_ordering(&plan).cloned();
    Ok(Once { executed: Executed { schema, batches, passes: 1, spill_count, spilled_bytes }, ordering })
}

/// Passes tried, in turn, when a detection does not fit in its memory limit.
const PASS_COUNTS: [u32; 3] = [4, 16, 64];

/// Runs a detection within `opts.memory_limit`.
///
/// Sorts and aggregations spill to disk. DataFusion's hash join cannot: it keeps its build side
/// in memory. When a run does not fit, a detection that declares its partition columns
/// (`partition_by` in `detection.toml`) runs again in 4, then 16, then 64 passes, each over one
/// hash bucket of those columns, so each pass's join holds a fraction of the build side. The
/// passes' rows, sorted as the SQL sorts them, are the rows of one run.
pub async fn run_detection(
    lake: &Lake,
    catalog: &Catalog,
    d: &crate::detect::Detection,
    mode: Mode,
    window: &Window,
    opts: &EngineOptions,
) -> Result<Executed, EngineError> {
    let exhausted = |e: &EngineError| match e {
        EngineError::DataFusion(e) => is_resources_exhausted(e),
        EngineError::Detect(crate::detect::DetectError::Sql { source, .. }) => is_resources_exhausted(source),
        _ => false,
    };
    let first = match execute_once(lake, catalog, d, mode, window, opts, None).await {
        Err(e) if opts.memory_limit.is_some() && d.meta.partition_by.contains_key(mode.name()) && exhausted(&e) => e,
        other => return other.map(|o| o.executed),
    };
    let mut last = first;
    'counts: for of in PASS_COUNTS {
        let mut parts = Vec::new();
        for index in 0..of {
            match execute_once(lake, catalog, d, mode, window, opts, Some(Pass { index, of })).await {
                Ok(once) => parts.push(once),
                Err(e) if exhausted(&e) => {
                    last = e;
                    continue 'counts;
                }
                Err(e) => return Err(e),
            }
        }
        return combine(parts, of);
    }
    Err(last)
}

/// The rows of all passes, in the order the SQL's `ORDER BY` gives.
fn combine(parts: Vec<Once>, passes: u32) -> Result<Executed, EngineError> {
    let schema = parts[0].executed.schema.clone();
    let ordering = parts[0].ordering.clone();
    let (mut spill_count, mut spilled_bytes) = (0, 0);
    let mut batches = Vec::new();
    for p in parts {
        spill_count += p.executed.spill_count;
        spilled_bytes += p.executed.spilled_bytes;
        batches.extend(p.executed.batches);
    }
    let all = arrow::compute::concat_batches(&schema, &batches).map_err(DataFusionError::from)?;
    let sorted = match ordering {
        Some(ordering) if all.num_rows() > 1 => {
            let columns = ordering
                .iter()
                .map(|e| {
                    Ok(arrow::compute::SortColumn {
                        values: e.expr.evaluate(&all)?.into_array(all.num_rows())?,
                        options: Some(e.options),
                    })
                })
                .collect::<Result<Vec<_>, DataFusionError>>()?;
            let indices = arrow::compute::lexsort_to_indices(&columns, None).map_err(DataFusionError::from)?;
            arrow::compute::take_record_batch(&all, &indices).map_err(DataFusionError::from)?
        }
        _ => all,
    };
    Ok(Executed { schema, batches: vec![sorted], passes, spill_count, spilled_bytes })
}

/// Raises this process's soft limit on open files to its hard limit (many machines start
/// processes at 1,024, far below what a server over a lake of thousands of files may need at
/// once). Returns the soft limit now in force, where it can be read.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Some(limit.rlim_cur as u64)
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), where it can be read.
pub fn machine_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses a size: `512M`, `2G`, `64MiB`, `1048576`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    let n: f64 = t[..digits].parse().map_err(|_| format!("bad size {s:?}: use e.g. 512M or 2G"))?;
    let mult: f64 = match t[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024.0 * 1024.0,
        "G" | "GB" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("bad size unit {other:?} in {s:?}: use K, M or G")),
    };
    let v = n * mult;
    if !(1.0..=1e15).contains(&v) {
        return Err(format!("bad size {s:?}"));
    }
    Ok(v as usize)
}

#[cfg(test)]
mod engine_tests {
    use super::Engine;

    #[test]
    fn engines_parse_and_print_back() {
        for text in ["in-process", "ballista://10.1.2.3:50050", "ballista://[::1]:7000", "ballista://scheduler.svc:6000"] {
            let e: Engine = text.parse().unwrap();
            assert_eq!(e.to_string(), text);
        }
        assert_eq!("ballista://sched/".parse::<Engine>().unwrap().to_string(), "ballista://sched:50050");
        for bad in ["local", "ballista://", "df://host:1", "Ballista", "ballista://host:0"] {
            assert!(bad.parse::<Engine>().is_err(), "{bad:?} accepted");
        }
    }
}
