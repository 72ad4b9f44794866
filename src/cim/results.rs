//! `detections.results`: what the scheduled runs of every detection found. Each row leads with the
//! run that wrote it and `_time`; the detection's own output columns follow as text (as Splunk
//! keeps notable fields), so the results of every detection and mode share one table, whose
//! columns are the union of theirs ([`schema_with`]).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

crate::table! {
    /// The run metadata and time leading every results row.
    pub struct ResultStamp / ResultStampBuilder {
        run_id: Utf8 ["run_id" => RUN_ID] not null;
        detection: Utf8 ["detection" => DETECTION] not null;
        search_name: Utf8 ["search_name" => SEARCH_NAME] not null;
        mode: Utf8 ["mode" => MODE] not null;
        window_earliest: Ts ["window_earliest" => WINDOW_EARLIEST] not null;
        window_latest: Ts ["window_latest" => WINDOW_LATEST] not null;
        time: OptTs [super::TIME];
    }
}

/// The results schema for these output columns (in order; `_time` is the stamp's).
pub fn schema_with(output_columns: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    for c in output_columns.iter().filter(|c| *c != super::TIME) {
        fields.push(Field::new(c, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}
