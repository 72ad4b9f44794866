//! The query engine: a DataFusion [`SessionContext`] over the lake:
//!
//! * `endpoint.processes`, `network_traffic.all_traffic`: the CIM tables;
//! * `detections.results`, `risk.all_risk`, `risk.incidents`: what scheduled runs wrote (the
//!   current run of each window), and `cimlake.runs`: every run;
//! * with a catalog, every detection as a view over all time: `detect.<name>` (cimlake mode) and
//!   `detect_splunk.<name>` (Splunk mode).

use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::cim::Table;
use crate::detect::{self, Catalog, DetectError, Mode, Window};
use crate::lake::runs::{self, INCIDENTS_TABLE, RESULTS_TABLE, RISK_TABLE, RunRecord, RunStatus};
use crate::lake::table::LakeTable;
use crate::lake::{Lake, LakeError};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;

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

/// A session over the lake. With a catalog, detections are registered as views too.
pub async fn session(lake: &Lake, catalog: Option<&Catalog>) -> Result<SessionContext, EngineError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let ctx = SessionContext::new_with_config(config);
    let default_catalog = ctx.catalog("datafusion").expect("default catalog");
    let commits = lake.commits()?;
    for table in Table::ALL {
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
