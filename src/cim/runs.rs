//! `cimlake.runs`: one row per run of a scheduled job (a detection over a window, or the risk
//! incidents), newest last, from the lake's run records. Between the run's identity and its
//! counts come the rows it read, one `rows_read_<table>` column per table runs count
//! ([`super::Table::rows_read_column`]), so a new table gets its column without an edit here.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// The columns before the row counts.
pub mod head {
    crate::table! {
        /// A run's identity, window, timing and outcome.
        pub struct RunHead / RunHeadBuilder {
            seq: UInt64 ["seq"] not null;
            run_id: Utf8 ["run_id"] not null;
            job: Utf8 ["job"] not null;
            /// Null for the incidents job.
            mode: Utf8 ["mode"];
            trigger: Utf8 ["trigger"] not null;
            scheduled_time: OptTs ["scheduled_time"];
            window_earliest: OptTs ["window_earliest"] not null;
            window_latest: OptTs ["window_latest"] not null;
            started_at: OptTs ["started_at"] not null;
            finished_at: OptTs ["finished_at"] not null;
            duration_ms: Int64 ["duration_ms"] not null;
            status: Utf8 ["status"] not null;
            error: Utf8 ["error"];
        }
    }
}

/// The columns after the row counts.
pub mod tail {
    crate::table! {
        /// What a run wrote, and whether its output is the current one for its window.
        pub struct RunTail / RunTailBuilder {
            results: UInt64 ["results"] not null;
            risk_events: UInt64 ["risk_events"] not null;
            incidents: UInt64 ["incidents"] not null;
            current: Bool ["current"] not null;
        }
    }
}

/// The schema of `cimlake.runs`.
pub fn schema() -> SchemaRef {
    let mut fields: Vec<Field> = head::schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(super::Table::ALL_TABLES.iter().filter_map(|t| t.rows_read_column()).map(|c| Field::new(c, DataType::UInt64, true)));
    fields.extend(tail::schema().fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
}
