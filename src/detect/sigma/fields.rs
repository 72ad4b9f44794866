//! Which lake table a Sigma rule reads (its `logsource`) and which column each Sigma field name is
//! (the one mapping table; the README's "Sigma rules" section shows it).
//!
//! Field names are Sysmon's (EventID 1 for `process_creation`, EventID 3 for
//! `network_connection`), as SigmaHQ writes them; they are matched without regard to case.

use arrow::datatypes::DataType;

use crate::cim::Table;

/// A Sigma log source cimlake has a table for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Logsource {
    /// `category: process_creation` → `endpoint.processes`.
    ProcessCreation,
    /// `category: network_connection` → `network_traffic.all_traffic`.
    NetworkConnection,
}

impl Logsource {
    pub const ALL: [Logsource; 2] = [Logsource::ProcessCreation, Logsource::NetworkConnection];

    /// The log source of a rule's `logsource` block: a `category` cimlake holds, for Windows (or
    /// no product). `None` for any other.
    pub fn of(
        category: Option<&str>,
        product: Option<&str>,
        service: Option<&str>,
    ) -> Option<Logsource> {
        if !product.is_none_or(|p| p.eq_ignore_ascii_case("windows")) {
            return None;
        }
        // `service: sysmon` narrows to Sysmon's events, which are what the tables hold.
        if !service.is_none_or(|s| s.eq_ignore_ascii_case("sysmon")) {
            return None;
        }
        match category? {
            c if c.eq_ignore_ascii_case("process_creation") => Some(Logsource::ProcessCreation),
            c if c.eq_ignore_ascii_case("network_connection") => Some(Logsource::NetworkConnection),
            _ => None,
        }
    }

    /// Sigma's name of it.
    pub fn category(self) -> &'static str {
        match self {
            Logsource::ProcessCreation => "process_creation",
            Logsource::NetworkConnection => "network_connection",
        }
    }

    pub fn table(self) -> Table {
        match self {
            Logsource::ProcessCreation => Table::Processes,
            Logsource::NetworkConnection => Table::AllTraffic,
        }
    }

    /// Sigma field → column.
    pub fn fields(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Logsource::ProcessCreation => PROCESS_CREATION,
            Logsource::NetworkConnection => NETWORK_CONNECTION,
        }
    }

    /// The columns a match shows (with the rule's identity and the row's provenance), in order.
    pub fn shown(self) -> &'static [&'static str] {
        match self {
            Logsource::ProcessCreation => &[
                "dest",
                "user",
                "parent_process_name",
                "parent_process",
                "process_name",
                "process",
                "process_path",
                "process_id",
                "process_guid",
                "parent_process_id",
                "parent_process_guid",
                "original_file_name",
                "process_integrity_level",
                "process_hash",
            ],
            Logsource::NetworkConnection => &[
                "dvc",
                "user",
                "process_name",
                "process_path",
                "process_id",
                "process_guid",
                "transport",
                "initiated",
                "src_ip",
                "src_port",
                "dest_ip",
                "dest_port",
                "dest_hostname",
            ],
        }
    }

    /// The column naming the host a match happened on (the risk object of type `system`).
    pub fn host_column(self) -> &'static str {
        match self {
            Logsource::ProcessCreation => "dest",
            Logsource::NetworkConnection => "dvc",
        }
    }

    /// Whether `field` is a Sysmon field that this log source's events never carry: one the other
    /// log source has and this one does not (`CommandLine` or `ParentImage` in an EventID 3,
    /// `DestinationPort` in an EventID 1). A rule naming it compiles with the field absent: every
    /// test of it fails, and only `null` and `|exists: false` hold, as Sigma reads a field an event
    /// lacks. A field no log source has (a typo, another log's field) is refused instead.
    pub fn lacks(self, field: &str) -> bool {
        self.column(field).is_none() && Logsource::ALL.iter().any(|other| other.column(field).is_some())
    }

    /// The column a Sigma field is, with its type; `None` for a field the table does not have.
    pub fn column(self, field: &str) -> Option<Column> {
        let (_, name) = self
            .fields()
            .iter()
            .find(|(sigma, _)| sigma.eq_ignore_ascii_case(field))?;
        Some(Column { name, kind: self.kind_of(name) })
    }

    /// How the values of one of this log source's mapped columns compare.
    fn kind_of(self, name: &str) -> Kind {
        let schema = self.table().schema();
        match schema
            .field_with_name(name)
            .expect("mapped columns are in the table's schema")
            .data_type()
        {
            DataType::Int32 | DataType::Int64 => Kind::Int,
            DataType::Boolean => Kind::Bool,
            _ => Kind::Text,
        }
    }
}

/// A column a field maps to.
///
/// In a cluster plan it travels as its name and kind, and is read back only as a column some log
/// source maps a field to, with that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

impl serde::Serialize for Column {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.name, self.kind).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Column {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (name, kind) = <(String, Kind)>::deserialize(d)?;
        Logsource::ALL
            .iter()
            .flat_map(|s| s.fields().iter().map(move |(_, c)| (*s, *c)))
            .find(|(s, c)| *c == name && s.kind_of(c) == kind)
            .map(|(_, name)| Column { name, kind })
            .ok_or_else(|| serde::de::Error::custom(format!("{name:?} ({kind:?}) is not a column any Sigma log source maps a field to")))
    }
}

/// How a column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Text,
    Int,
    Bool,
}

/// Sysmon EventID 1 (and Security 4688 through the same columns).
pub const PROCESS_CREATION: &[(&str, &str)] = &[
    ("Image", "process_path"),
    ("CommandLine", "process"),
    ("OriginalFileName", "original_file_name"),
    ("ProcessId", "process_id"),
    ("ProcessGuid", "process_guid"),
    ("ParentImage", "parent_process_path"),
    ("ParentCommandLine", "parent_process"),
    ("ParentProcessId", "parent_process_id"),
    ("ParentProcessGuid", "parent_process_guid"),
    ("ParentUser", "parent_user"),
    ("User", "user"),
    ("IntegrityLevel", "process_integrity_level"),
    ("CurrentDirectory", "process_current_directory"),
    ("Hashes", "process_hash"),
    ("md5", "process_md5"),
    ("sha1", "process_sha1"),
    ("sha256", "process_sha256"),
    ("Imphash", "process_imphash"),
    ("FileVersion", "process_file_version"),
    ("Description", "process_description"),
    ("Product", "process_product"),
    ("Company", "process_company"),
    ("LogonId", "logon_id"),
    ("LogonGuid", "logon_guid"),
    ("TerminalSessionId", "terminal_session_id"),
    ("RuleName", "rule_name"),
    ("Computer", "dest"),
];

/// Sysmon EventID 3.
pub const NETWORK_CONNECTION: &[(&str, &str)] = &[
    ("Image", "process_path"),
    ("ProcessId", "process_id"),
    ("ProcessGuid", "process_guid"),
    ("User", "user"),
    ("Protocol", "transport"),
    ("Initiated", "initiated"),
    ("SourceIp", "src_ip"),
    ("SourceHostname", "src_hostname"),
    ("SourcePort", "src_port"),
    ("SourcePortName", "src_port_name"),
    ("SourceIsIpv6", "src_is_ipv6"),
    ("DestinationIp", "dest_ip"),
    ("DestinationHostname", "dest_hostname"),
    ("DestinationPort", "dest_port"),
    ("DestinationPortName", "dest_port_name"),
    ("DestinationIsIpv6", "dest_is_ipv6"),
    ("RuleName", "rule_name"),
    ("Computer", "dvc"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_and_shown_column_is_in_its_table() {
        for source in Logsource::ALL {
            let schema = source.table().schema();
            for (field, column) in source.fields() {
                assert!(
                    schema.field_with_name(column).is_ok(),
                    "{field} → {column}: not in {}",
                    source.table().qualified_name()
                );
                assert_eq!(source.column(field).unwrap().name, *column);
                assert_eq!(
                    source.column(&field.to_uppercase()).unwrap().name,
                    *column,
                    "field names ignore case"
                );
            }
            for column in source.shown().iter().chain([&source.host_column()]) {
                assert!(
                    schema.field_with_name(column).is_ok(),
                    "{column}: not in {}",
                    source.table().qualified_name()
                );
            }
        }
        assert_eq!(
            Logsource::ProcessCreation.column("ProcessId").unwrap().kind,
            Kind::Int
        );
        assert_eq!(
            Logsource::NetworkConnection
                .column("Initiated")
                .unwrap()
                .kind,
            Kind::Bool
        );
        assert!(Logsource::NetworkConnection.column("CommandLine").is_none());
    }

    #[test]
    fn logsources() {
        assert_eq!(
            Logsource::of(Some("process_creation"), Some("windows"), None),
            Some(Logsource::ProcessCreation)
        );
        assert_eq!(
            Logsource::of(Some("network_connection"), None, Some("sysmon")),
            Some(Logsource::NetworkConnection)
        );
        assert_eq!(
            Logsource::of(Some("process_creation"), Some("linux"), None),
            None
        );
        assert_eq!(
            Logsource::of(Some("file_event"), Some("windows"), None),
            None
        );
        assert_eq!(Logsource::of(None, Some("windows"), Some("security")), None);
    }
}
