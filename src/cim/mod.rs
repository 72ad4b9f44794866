//! The Splunk CIM data models cimlake writes: one Arrow schema per CIM object, with field names
//! as constants shared by the converters, the lake, the SQL and the tests.
//!
//! Every row also carries its provenance (see [`provenance`]) so a detection result can be traced
//! back to the raw event it came from. This module depends on nothing else in the crate.

pub mod all_traffic;
pub mod processes;
pub mod provenance;
pub mod quarantine;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// `_time`: when the event happened, UTC, microseconds.
pub const TIME: &str = "_time";

/// The Arrow type of every `_time` column.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
}

pub(crate) fn time_field() -> Field {
    Field::new(TIME, time_type(), false)
}

pub(crate) fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

pub(crate) fn int64(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

pub(crate) fn int32(name: &str) -> Field {
    Field::new(name, DataType::Int32, true)
}

/// A CIM table: its qualified SQL name and where it lives in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `endpoint.processes` (CIM `Endpoint.Processes`).
    Processes,
    /// `network_traffic.all_traffic` (CIM `Network_Traffic.All_Traffic`).
    AllTraffic,
    /// `quarantine.records`: rejected records, raw (not CIM).
    Quarantine,
}

impl Table {
    /// The CIM tables.
    pub const ALL: [Table; 2] = [Table::Processes, Table::AllTraffic];
    /// Every table stored in the lake: the CIM tables and the quarantine.
    pub const STORED: [Table; 3] = [Table::Processes, Table::AllTraffic, Table::Quarantine];

    /// The SQL schema (data model) name.
    pub fn schema_name(self) -> &'static str {
        match self {
            Table::Processes => "endpoint",
            Table::AllTraffic => "network_traffic",
            Table::Quarantine => "quarantine",
        }
    }

    /// The SQL table (dataset) name.
    pub fn table_name(self) -> &'static str {
        match self {
            Table::Processes => "processes",
            Table::AllTraffic => "all_traffic",
            Table::Quarantine => "records",
        }
    }

    /// `schema.table`, as used in SQL.
    pub fn qualified_name(self) -> &'static str {
        match self {
            Table::Processes => "endpoint.processes",
            Table::AllTraffic => "network_traffic.all_traffic",
            Table::Quarantine => "quarantine.records",
        }
    }

    /// The directory under the lake root, `endpoint/processes` for example.
    pub fn lake_dir(self) -> &'static str {
        match self {
            Table::Processes => "endpoint/processes",
            Table::AllTraffic => "network_traffic/all_traffic",
            Table::Quarantine => "quarantine/records",
        }
    }

    /// The Arrow schema of the table.
    pub fn schema(self) -> arrow::datatypes::SchemaRef {
        match self {
            Table::Processes => processes::schema(),
            Table::AllTraffic => all_traffic::schema(),
            Table::Quarantine => quarantine::schema(),
        }
    }

    pub fn from_qualified_name(name: &str) -> Option<Table> {
        Table::STORED.into_iter().find(|t| t.qualified_name() == name)
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
