//! Provenance columns carried by every row of every table: where the row came from.

use arrow::datatypes::Field;

/// The input file the row was read from, as given on the command line.
pub const SOURCE: &str = "source";
/// The shape of the input, Splunk style: `XmlWinEventLog`, `WinEventLog:evtx`, …
pub const SOURCETYPE: &str = "sourcetype";
/// The record number inside the source: the EVTX `EventRecordID`, or the 1-based line number
/// where the event starts in a text file.
pub const SOURCE_RECORD: &str = "source_record";
/// The byte offset of the event's first byte in a text file (null for EVTX).
pub const SOURCE_OFFSET: &str = "source_offset";

pub const FIELDS: [&str; 4] = [SOURCE, SOURCETYPE, SOURCE_RECORD, SOURCE_OFFSET];

pub(crate) fn fields() -> Vec<Field> {
    vec![
        super::utf8(SOURCE),
        super::utf8(SOURCETYPE),
        super::int64(SOURCE_RECORD),
        super::int64(SOURCE_OFFSET),
    ]
}

/// Provenance of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Provenance<'a> {
    pub source: &'a str,
    pub sourcetype: &'a str,
    pub record: Option<i64>,
    pub offset: Option<i64>,
}
