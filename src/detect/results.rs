//! A detection's output as `detections.results` rows ([`crate::cim::results`]): the run's stamp,
//! `_time`, then every output column of the detection as text (as Splunk keeps notable fields),
//! so results of every detection and mode share one table.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::FormatOptions;

use crate::cim::results::schema_with;
use crate::cim::{TIME, time_type};

/// Identity of a run, stamped on every row it writes.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub detection: String,
    pub search_name: String,
    pub mode: String,
    pub earliest_us: i64,
    pub latest_us: i64,
}

fn constant_ts(v: i64, n: usize) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(vec![v; n]).with_timezone("UTC"))
}

/// A detection's output batch as results rows.
pub fn to_results(batch: &RecordBatch, run: &RunInfo) -> Result<RecordBatch, ArrowError> {
    let n = batch.num_rows();
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    let schema = schema_with(&names);
    let text = |s: &str| -> ArrayRef { Arc::new(StringArray::from(vec![s; n])) };
    let mut cols: Vec<ArrayRef> = vec![
        text(&run.run_id),
        text(&run.detection),
        text(&run.search_name),
        text(&run.mode),
        constant_ts(run.earliest_us, n),
        constant_ts(run.latest_us, n),
    ];
    let opts = CastOptions { safe: false, format_options: FormatOptions::default() };
    cols.push(match batch.schema().index_of(TIME) {
        Ok(i) => cast_with_options(batch.column(i), &time_type(), &opts)?,
        Err(_) => arrow::array::new_null_array(&time_type(), n),
    });
    for (i, name) in names.iter().enumerate() {
        if name != TIME {
            // A multivalue field (a list) is stored as its values one per line.
            let column = crate::output::multivalue_text(batch.column(i))?;
            cols.push(cast_with_options(&column, &DataType::Utf8, &opts)?);
        }
    }
    RecordBatch::try_new(schema, cols)
}
