//! The Splunk CIM data models cimlake writes: one Arrow schema per CIM object, with field names
//! as constants shared by the converters, the lake, the SQL and the tests.
//!
//! Every row also carries its provenance (see [`provenance`]) so a detection result can be traced
//! back to the raw event it came from. This module depends on nothing else in the crate.

pub mod all_traffic;
#[macro_use]
pub mod column;
pub mod incidents;
pub mod processes;
pub mod provenance;
pub mod quarantine;
pub mod results;
pub mod risk;
pub mod runs;
pub mod stats;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// `_time`: when the event happened, UTC, microseconds.
pub const TIME: &str = "_time";

/// The Arrow type of every `_time` column.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

pub(crate) fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

pub(crate) fn int64(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

/// Every table the lake holds, declared once: its SQL name, its place in the lake, its schema,
/// how it is filled and what the scheduler counts of it. The engine registers each from here,
/// and the scheduler's row counts and late-data checks go through [`Table::ALL_TABLES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `endpoint.processes` (CIM `Endpoint.Processes`).
    Processes,
    /// `network_traffic.all_traffic` (CIM `Network_Traffic.All_Traffic`).
    AllTraffic,
    /// `quarantine.records`: rejected records, raw (not CIM).
    Quarantine,
    /// `detections.results`: what scheduled runs found.
    Results,
    /// `risk.all_risk`: risk events of scheduled runs.
    Risk,
    /// `risk.incidents`: risk objects over their threshold.
    Incidents,
    /// `cimlake.runs`: every run of every job.
    Runs,
}

/// Where a table's rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// Parquet files that ingest commits name.
    ByIngest,
    /// Parquet files that the current scheduled runs name.
    ByRuns,
    /// The run records themselves.
    RunLog,
}

impl Table {
    /// The CIM tables (what converters write and detections read).
    pub const ALL: [Table; 2] = [Table::Processes, Table::AllTraffic];
    /// Every table ingest writes: the CIM tables and the quarantine.
    pub const STORED: [Table; 3] = [Table::Processes, Table::AllTraffic, Table::Quarantine];
    /// Every table of the lake.
    pub const ALL_TABLES: [Table; 7] =
        [Table::Processes, Table::AllTraffic, Table::Quarantine, Table::Results, Table::Risk, Table::Incidents, Table::Runs];

    /// `(schema, table, lake directory, how it is filled)`.
    const fn def(self) -> (&'static str, &'static str, Option<&'static str>, Filled) {
        match self {
            Table::Processes => ("endpoint", "processes", Some("endpoint/processes"), Filled::ByIngest),
            Table::AllTraffic => ("network_traffic", "all_traffic", Some("network_traffic/all_traffic"), Filled::ByIngest),
            Table::Quarantine => ("quarantine", "records", Some("quarantine/records"), Filled::ByIngest),
            Table::Results => ("detections", "results", Some("detections/results"), Filled::ByRuns),
            Table::Risk => ("risk", "all_risk", Some("risk/all_risk"), Filled::ByRuns),
            Table::Incidents => ("risk", "incidents", Some("risk/incidents"), Filled::ByRuns),
            Table::Runs => ("cimlake", "runs", None, Filled::RunLog),
        }
    }

    /// The SQL schema (data model) name.
    pub fn schema_name(self) -> &'static str {
        self.def().0
    }

    /// The SQL table (dataset) name.
    pub fn table_name(self) -> &'static str {
        self.def().1
    }

    /// `schema.table`, as used in SQL.
    pub fn qualified_name(self) -> &'static str {
        match self {
            Table::Processes => "endpoint.processes",
            Table::AllTraffic => "network_traffic.all_traffic",
            Table::Quarantine => "quarantine.records",
            Table::Results => "detections.results",
            Table::Risk => "risk.all_risk",
            Table::Incidents => "risk.incidents",
            Table::Runs => "cimlake.runs",
        }
    }

    /// The directory under the lake root, `endpoint/processes` for example (none for a table
    /// made from records).
    pub fn lake_dir(self) -> Option<&'static str> {
        self.def().2
    }

    pub fn filled(self) -> Filled {
        self.def().3
    }

    /// The Arrow schema of the table (for `detections.results`, its leading columns; the
    /// detections' own follow, [`results::schema_with`]).
    pub fn schema(self) -> arrow::datatypes::SchemaRef {
        match self {
            Table::Processes => processes::schema(),
            Table::AllTraffic => all_traffic::schema(),
            Table::Quarantine => quarantine::schema(),
            Table::Results => results::schema(),
            Table::Risk => risk::schema(),
            Table::Incidents => incidents::schema(),
            Table::Runs => runs::schema(),
        }
    }

    /// Whether a row of this table counts for the process look-back after its time (a process
    /// may match flows up to the look-back later): for late data and window counts.
    pub fn counts_for_lookback(self) -> bool {
        self == Table::Processes
    }

    /// The `cimlake.runs` column holding the rows a run read of this table, for the tables runs
    /// read: the CIM tables (detections) and the risk events (incidents).
    pub fn rows_read_column(self) -> Option<&'static str> {
        match self {
            Table::Processes => Some("rows_read_processes"),
            Table::AllTraffic => Some("rows_read_all_traffic"),
            Table::Risk => Some("rows_read_risk"),
            _ => None,
        }
    }

    pub fn from_qualified_name(name: &str) -> Option<Table> {
        Table::ALL_TABLES.into_iter().find(|t| t.qualified_name() == name)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.qualified_name())
    }
}

/// The file name part of a Windows or POSIX path: `C:\Windows\System32\cmd.exe` → `cmd.exe`.
pub fn file_name_of(path: &str) -> &str {
    match path.rfind(['\\', '/']) {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_of_paths() {
        assert_eq!(file_name_of(r"C:\Windows\System32\cmd.exe"), "cmd.exe");
        assert_eq!(file_name_of("/usr/bin/curl"), "curl");
        assert_eq!(file_name_of("msiexec.exe"), "msiexec.exe");
        assert_eq!(file_name_of(r"C:\dir\"), "");
    }

    /// Every table's columns (name, type, nullable), pinned in `src/cim/snapshots/`: reordering,
    /// renaming or retyping a column of a declaration fails here, however the declaration is
    /// written. Rows are tied to columns by field name (the `table!` macro), and the converters'
    /// tests check each field's value from real events, so two columns of one type swapped fail
    /// there.
    #[test]
    fn schemas_are_pinned() {
        let mut shown = String::new();
        for t in Table::ALL_TABLES {
            shown.push_str(&format!("{} ({:?})\n", t.qualified_name(), t.lake_dir()));
            for f in t.schema().fields() {
                shown.push_str(&format!("  {} {}{}\n", f.name(), f.data_type(), if f.is_nullable() { "" } else { " not null" }));
            }
        }
        insta::assert_snapshot!(shown);
    }

    #[test]
    fn schemas_have_time_and_provenance() {
        for t in Table::ALL {
            let s = t.schema();
            assert_eq!(s.field(0).name(), TIME);
            assert_eq!(s.field(0).data_type(), &time_type());
            for p in provenance::FIELDS {
                assert!(s.field_with_name(p).is_ok(), "{t} lacks {p}");
            }
        }
    }
}
