//! The one place a detection runs, for `detect`, `run`, `schedule` and `serve`: a [`Search`] (a
//! window and a process look-back) becomes the detection's parameters, the rows it reads are
//! counted per table, and a run that does not fit in the memory limit is run again in passes.
//!
//! Sorts and aggregations spill to disk. DataFusion's hash join cannot: it keeps its build side
//! in memory. When a run does not fit, a detection that declares its partition columns
//! (`partition_by` in `detection.toml`) runs again in 4, then 16, then 64 passes, each over one
//! hash bucket of those columns, so each pass's join holds a fraction of the build side. The
//! passes' rows, sorted as the SQL sorts them, are the rows of one run.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::{ScalarValue, TableReference};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use super::{Catalog, DetectError, Detection, Mode, Search};
use crate::cim::{Filled, Table};
use crate::engine::{self, EngineError, EngineOptions};
use crate::lake::Lake;

/// Why a run failed: the detection, the mode and the cause.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{detection} ({mode} mode): {source}")]
    Query { detection: String, mode: Mode, source: DataFusionError },
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
    /// Rows in the search of each CIM table, when counted ([`Runner::counting`]).
    pub rows_read: BTreeMap<String, u64>,
}

impl Executed {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs detections over one lake, with one engine's options.
#[derive(Debug, Clone)]
pub struct Runner<'a> {
    pub lake: &'a Lake,
    pub catalog: &'a Catalog,
    pub opts: EngineOptions,
    /// Count the rows each run reads of each CIM table (two more queries per run).
    pub count_rows: bool,
}

impl<'a> Runner<'a> {
    pub fn new(lake: &'a Lake, catalog: &'a Catalog, opts: EngineOptions) -> Self {
        Runner { lake, catalog, opts, count_rows: false }
    }

    /// The same runner, counting the rows each run reads.
    pub fn counting(mut self) -> Self {
        self.count_rows = true;
        self
    }

    /// Runs `d` in `mode` over `search`, within the memory limit (in passes if it must).
    pub async fn run(&self, d: &Detection, mode: Mode, search: &Search) -> Result<Executed, RunError> {
        let mut rows_read = BTreeMap::new();
        if self.count_rows {
            let ctx = engine::session_with(self.lake, &self.opts).await?;
            rows_read = count_rows_read(&ctx, mode, search).await.map_err(|source| self.query_err(d, mode, source))?;
        }
        let exhausted = |e: &RunError| match e {
            RunError::Query { source, .. } => engine::is_resources_exhausted(source),
            RunError::Detect(DetectError::Sql { source, .. }) => engine::is_resources_exhausted(source),
            _ => false,
        };
        let splits = self.opts.memory_limit.is_some() && d.meta.partition_by.contains_key(mode.name());
        let first = match self.once(d, mode, search, None).await {
            Err(e) if splits && exhausted(&e) => e,
            other => {
                return other.map(|o| Executed { rows_read, ..o.executed });
            }
        };
        let mut last = first;
        'counts: for of in PASS_COUNTS {
            let mut parts = Vec::new();
            for index in 0..of {
                match self.once(d, mode, search, Some(Pass { index, of })).await {
                    Ok(once) => parts.push(once),
                    Err(e) if exhausted(&e) => {
                        last = e;
                        continue 'counts;
                    }
                    Err(e) => return Err(e),
                }
            }
            let combined = combine(parts, of).map_err(|source| self.query_err(d, mode, source))?;
            return Ok(Executed { rows_read, ..combined });
        }
        Err(last)
    }

    fn query_err(&self, d: &Detection, mode: Mode, source: DataFusionError) -> RunError {
        RunError::Query { detection: d.name.clone(), mode, source }
    }

    async fn once(&self, d: &Detection, mode: Mode, search: &Search, pass: Option<Pass>) -> Result<Once, RunError> {
        let ctx = engine::session_with(self.lake, &self.opts).await?;
        if let (Some(pass), Some(keys)) = (pass, d.meta.partition_by.get(mode.name())) {
            restrict_to_pass(&ctx, keys, pass).await.map_err(|source| self.query_err(d, mode, source))?;
        }
        let df = super::plan(&ctx, self.catalog, d, mode, search).await?;
        let schema = df.schema().inner().clone();
        let task = df.task_ctx();
        let err = |source| self.query_err(d, mode, source);
        let plan = df.create_physical_plan().await.map_err(err)?;
        let batches = datafusion::physical_plan::collect(plan.clone(), Arc::new(task)).await.map_err(err)?;
        let (spill_count, spilled_bytes) = spills(plan.as_ref());
        let ordering = datafusion::physical_plan::ExecutionPlanProperties::output_ordering(&plan).cloned();
        let executed = Executed { schema, batches, passes: 1, spill_count, spilled_bytes, rows_read: BTreeMap::new() };
        Ok(Once { executed, ordering })
    }
}

/// Rows of each CIM table in the search: flows in the window, processes from the look-back before
/// it in cimlake mode (what the detection may read).
async fn count_rows_read(ctx: &SessionContext, mode: Mode, search: &Search) -> Result<BTreeMap<String, u64>, DataFusionError> {
    let params = search.params();
    let get = |name: &str| params.iter().find(|(k, _)| *k == name).expect("param").1.clone();
    let mut out = BTreeMap::new();
    for table in Table::ALL_TABLES.into_iter().filter(|t| t.filled() == Filled::ByIngest && Table::ALL.contains(t)) {
        let from = if table.counts_for_lookback() && mode == Mode::Cimlake { get("process_earliest") } else { get("earliest") };
        let sql = format!("SELECT count(*) FROM {} WHERE _time >= $from AND _time < $latest", table.qualified_name());
        out.insert(table.qualified_name().to_string(), count(ctx, &sql, vec![("from", from), ("latest", get("latest"))]).await?);
    }
    Ok(out)
}

/// The single count a `SELECT count(*) …` returns.
pub async fn count(ctx: &SessionContext, sql: &str, params: Vec<(&str, ScalarValue)>) -> Result<u64, DataFusionError> {
    let batches = ctx.sql(sql).await?.with_param_values(params)?.collect().await?;
    let v = batches
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().map(|a| a.value(0)))
        .unwrap_or(0);
    Ok(v.max(0) as u64)
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
async fn restrict_to_pass(ctx: &SessionContext, keys: &BTreeMap<String, String>, pass: Pass) -> Result<(), DataFusionError> {
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

/// Passes tried, in turn, when a detection does not fit in its memory limit.
const PASS_COUNTS: [u32; 3] = [4, 16, 64];

/// The rows of all passes, in the order the SQL's `ORDER BY` gives.
fn combine(parts: Vec<Once>, passes: u32) -> Result<Executed, DataFusionError> {
    let schema = parts[0].executed.schema.clone();
    let ordering = parts[0].ordering.clone();
    let (mut spill_count, mut spilled_bytes) = (0, 0);
    let mut batches = Vec::new();
    for p in parts {
        spill_count += p.executed.spill_count;
        spilled_bytes += p.executed.spilled_bytes;
        batches.extend(p.executed.batches);
    }
    let all = arrow::compute::concat_batches(&schema, &batches)?;
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
            let indices = arrow::compute::lexsort_to_indices(&columns, None)?;
            arrow::compute::take_record_batch(&all, &indices)?
        }
        _ => all,
    };
    Ok(Executed { schema, batches: vec![sorted], passes, spill_count, spilled_bytes, rows_read: BTreeMap::new() })
}

/// The schema holding detection views per mode.
pub fn view_schema(mode: Mode) -> &'static str {
    match mode {
        Mode::Cimlake => "detect",
        Mode::Splunk => "detect_splunk",
    }
}

/// A session over the lake with every detection as a view over all time: `detect.<name>`
/// (cimlake mode) and `detect_splunk.<name>` (Splunk mode, for detections that have it).
pub async fn session(lake: &Lake, catalog: &Catalog, opts: &EngineOptions) -> Result<SessionContext, RunError> {
    let ctx = engine::session_with(lake, opts).await?;
    let lake_catalog = ctx.catalog(engine::catalog::CATALOG).expect("the lake's catalog");
    let all_time = Search::all_time();
    for mode in [Mode::Cimlake, Mode::Splunk] {
        let schema = view_schema(mode);
        lake_catalog
            .register_schema(schema, Arc::new(datafusion::catalog::MemorySchemaProvider::new()))
            .map_err(EngineError::from)?;
        for d in catalog.detections.iter().filter(|d| d.has_mode(mode)) {
            let df = super::plan(&ctx, catalog, d, mode, &all_time).await?;
            ctx.register_table(TableReference::partial(schema, d.name.as_str()), df.into_view()).map_err(EngineError::from)?;
        }
    }
    Ok(ctx)
}
