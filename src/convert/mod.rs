//! Converters: raw log bytes in, CIM rows out.
//!
//! Each source format has a module that parses raw bytes into a plain event and maps it to rows
//! of the CIM tables ([`builder`]). Rows go to an [`Emitter`], which batches them and hands the
//! batches to a [`BatchSink`] (the lake writer, or a test). Records that cimlake does not map are
//! counted by reason; records that cannot be read are counted as bad, with their location, and
//! the conversion goes on (unless `strict`).

pub mod evtx;
pub mod evtx_json;
pub mod format;
pub mod formats;
pub mod input;
pub mod jsonlines;
pub mod lines;
pub mod nvm;
pub mod security;
pub mod split;
pub mod sysmon;
pub mod winevent_json;
pub mod windows;
pub mod xml_event;
pub mod xmlwineventlog;

use std::fmt;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::cim::Table;
use crate::cim::all_traffic::{AllTrafficBuilder, TrafficRow};
use crate::cim::processes::{ProcessRow, ProcessesBuilder};
use crate::cim::quarantine::{QuarantineBuilder, QuarantineRow};

/// Rows per record batch handed to the sink.
pub const DEFAULT_BATCH_SIZE: usize = 8192;
/// Event times accepted: 1970-01-01 (inclusive) to 2100-01-01 (exclusive), in µs. Anything
/// else in a log's time field is garbage.
pub const PLAUSIBLE_TIME_US: std::ops::Range<i64> = 0..4_102_444_800_000_000;

/// Why one record cannot be read or mapped. The reader turns it into a [`BadRecord`], which adds
/// where the record is (input, line or record id, byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

impl From<String> for Unreadable {
    fn from(reason: String) -> Self {
        Unreadable(reason)
    }
}

impl From<&str> for Unreadable {
    fn from(reason: &str) -> Self {
        Unreadable(reason.to_string())
    }
}

/// An error for a time outside [`PLAUSIBLE_TIME_US`].
pub(crate) fn plausible_time(time_us: i64) -> Result<(), Unreadable> {
    if PLAUSIBLE_TIME_US.contains(&time_us) {
        return Ok(());
    }
    let shown = chrono::DateTime::from_timestamp_micros(time_us).map_or_else(|| format!("{time_us} µs since 1970"), |t| t.to_rfc3339());
    Err(Unreadable(format!("time {shown} outside 1970-01-01 to 2100-01-01")))
}

pub use crate::cim::stats::MAX_BAD_EXAMPLES;

/// The shape of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum Sourcetype {
    /// Splunk `XmlWinEventLog` text: `<Event>` XML records, one per line or pretty-printed,
    /// possibly mixed with plain-text `WinEventLog` records.
    #[serde(rename = "XmlWinEventLog")]
    #[value(name = "xmlwineventlog")]
    XmlWinEventLog,
    /// A Windows `.evtx` event log file.
    #[serde(rename = "evtx")]
    #[value(name = "evtx")]
    Evtx,
    /// Windows events as `evtx_dump -o json|jsonl` writes them (`{"Event": {"System": …,
    /// "EventData": …}}`), pretty-printed or one per line.
    #[serde(rename = "evtx:json")]
    #[value(name = "evtx-json")]
    EvtxJson,
    /// Windows events as JSON lines: flattened (NXLog), Winlogbeat 6 or Winlogbeat 7+ (`winlog.*`).
    #[serde(rename = "WinEventLog:json")]
    #[value(name = "winevent-json")]
    WinEventJson,
    /// Cisco NVM flow data, key="value" syslog lines.
    #[serde(rename = "cisco:nvm:flowdata")]
    #[value(name = "nvm-kv")]
    NvmKv,
    /// Cisco NVM flow data, one JSON object per line.
    #[serde(rename = "cisco:nvm:flowdata:v2")]
    #[value(name = "nvm-json")]
    NvmJson,
}

impl Sourcetype {
    /// The name written to the `sourcetype` column.
    pub fn name(self) -> &'static str {
        match self {
            Sourcetype::XmlWinEventLog => xmlwineventlog::SOURCETYPE,
            Sourcetype::Evtx => evtx::SOURCETYPE,
            Sourcetype::EvtxJson => evtx_json::SOURCETYPE,
            Sourcetype::WinEventJson => winevent_json::SOURCETYPE,
            Sourcetype::NvmKv => nvm::SOURCETYPE_KV,
            Sourcetype::NvmJson => nvm::SOURCETYPE_JSON,
        }
    }
}

impl fmt::Display for Sourcetype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub use crate::cim::stats::{BadRecord, Stats};


/// Errors that stop a conversion.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a readable EVTX file: {reason}")]
    Evtx { path: PathBuf, reason: String },
    /// No known shape, or empty.
    #[error("{0}")]
    Shape(String),
    /// A container that ends early or is corrupt.
    #[error("{0}")]
    Damaged(String),
    /// An archive member that expands beyond the limits.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0} (--strict)")]
    Strict(BadRecord),
    #[error("writing converted rows: {0}")]
    Sink(String),
    #[error("building a record batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl ConvertError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ConvertError::Io { path: path.to_path_buf(), source }
    }
}

/// Where converted batches go.
pub trait BatchSink {
    fn write_batch(&mut self, table: Table, batch: RecordBatch) -> Result<(), ConvertError>;
}

/// Collects batches in memory (tests, small inputs).
#[derive(Debug, Default)]
pub struct VecSink {
    pub batches: Vec<(Table, RecordBatch)>,
}

impl BatchSink for VecSink {
    fn write_batch(&mut self, table: Table, batch: RecordBatch) -> Result<(), ConvertError> {
        self.batches.push((table, batch));
        Ok(())
    }
}

impl VecSink {
    /// All batches of one table, concatenated.
    pub fn table(&self, table: Table) -> RecordBatch {
        let batches: Vec<_> =
            self.batches.iter().filter(|(t, _)| *t == table).map(|(_, b)| b.clone()).collect();
        arrow::compute::concat_batches(&table.schema(), &batches).expect("same schema")
    }
}

/// Batches rows for a sink and keeps the [`Stats`].
pub struct Emitter<'s> {
    processes: ProcessesBuilder,
    traffic: AllTrafficBuilder,
    quarantine: QuarantineBuilder,
    /// When this conversion started: the `_time` of its quarantined records.
    now_us: i64,
    /// The raw bytes of the record being read, kept with it if it is rejected.
    raw: Vec<u8>,
    raw_truncated: bool,
    sourcetype: Option<&'static str>,
    batch_size: usize,
    strict: bool,
    sink: &'s mut dyn BatchSink,
    pub stats: Stats,
}

impl<'s> Emitter<'s> {
    pub fn new(sink: &'s mut dyn BatchSink) -> Self {
        Emitter {
            processes: ProcessesBuilder::default(),
            traffic: AllTrafficBuilder::default(),
            quarantine: QuarantineBuilder::default(),
            now_us: chrono::Utc::now().timestamp_micros(),
            raw: Vec::new(),
            raw_truncated: false,
            sourcetype: None,
            batch_size: DEFAULT_BATCH_SIZE,
            strict: false,
            sink,
            stats: Stats::default(),
        }
    }

    /// Rows per batch (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Make the first bad record an error.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// A new record begins.
    pub fn record(&mut self) {
        self.stats.records += 1;
        self.raw.clear();
        self.raw_truncated = false;
    }

    /// The raw bytes of the record being read (after [`Emitter::record`]): kept in
    /// `quarantine.records` if the record is rejected.
    pub fn raw(&mut self, bytes: &[u8]) {
        let keep = bytes.len().min(crate::cim::quarantine::MAX_RAW_BYTES);
        self.raw.clear();
        self.raw.extend_from_slice(&bytes[..keep]);
        self.raw_truncated = keep < bytes.len();
    }

    /// The shape being read, for the `sourcetype` of quarantined records.
    pub fn set_sourcetype(&mut self, sourcetype: &'static str) {
        self.sourcetype = Some(sourcetype);
    }

    /// A row whose time is outside [`PLAUSIBLE_TIME_US`] (garbage in a time field, a year 9999)
    /// is a bad record.
    fn time_ok(&mut self, time_us: i64, p: &crate::cim::provenance::Provenance<'_>) -> Result<bool, ConvertError> {
        let Err(reason) = plausible_time(time_us) else { return Ok(true) };
        self.bad(BadRecord { source: p.source.to_string(), record: p.record, offset: p.offset, reason: reason.0 })?;
        Ok(false)
    }

    pub fn process(&mut self, row: &ProcessRow<'_>) -> Result<(), ConvertError> {
        if !self.time_ok(row.time_us, &row.provenance)? {
            return Ok(());
        }
        self.processes.append(&row.clone().with_names_from_paths());
        self.count_row(Table::Processes);
        if self.processes.len() >= self.batch_size {
            let b = self.processes.finish()?;
            self.sink.write_batch(Table::Processes, b)?;
        }
        Ok(())
    }

    pub fn traffic(&mut self, row: &TrafficRow<'_>) -> Result<(), ConvertError> {
        if !self.time_ok(row.time_us, &row.provenance)? {
            return Ok(());
        }
        self.traffic.append(row);
        self.count_row(Table::AllTraffic);
        if self.traffic.len() >= self.batch_size {
            let b = self.traffic.finish()?;
            self.sink.write_batch(Table::AllTraffic, b)?;
        }
        Ok(())
    }

    /// One more row in `table` (its name is allocated once, not per row).
    fn count_row(&mut self, table: Table) {
        let name = table.qualified_name();
        match self.stats.rows.get_mut(name) {
            Some(n) => *n += 1,
            None => drop(self.stats.rows.insert(name.to_string(), 1)),
        }
    }

    pub fn skip(&mut self, reason: impl Into<String>) {
        *self.stats.skipped.entry(reason.into()).or_default() += 1;
    }

    pub fn bad(&mut self, bad: BadRecord) -> Result<(), ConvertError> {
        if self.strict {
            return Err(ConvertError::Strict(bad));
        }
        self.stats.bad += 1;
        self.quarantine.append(&QuarantineRow {
            time_us: self.now_us,
            source: Some(&bad.source),
            sourcetype: self.sourcetype,
            source_record: bad.record,
            source_offset: bad.offset,
            reason: Some(&bad.reason),
            raw: (!self.raw.is_empty()).then_some(&self.raw[..]),
            raw_truncated: Some(self.raw_truncated),
        });
        if self.stats.bad_records.len() < MAX_BAD_EXAMPLES {
            self.stats.bad_records.push(bad);
        }
        if self.quarantine.len() >= self.batch_size {
            let b = self.quarantine.finish()?;
            self.sink.write_batch(Table::Quarantine, b)?;
        }
        Ok(())
    }

    /// Flushes the last partial batches and returns the stats.
    pub fn finish(mut self) -> Result<Stats, ConvertError> {
        if !self.processes.is_empty() {
            let b = self.processes.finish()?;
            self.sink.write_batch(Table::Processes, b)?;
        }
        if !self.traffic.is_empty() {
            let b = self.traffic.finish()?;
            self.sink.write_batch(Table::AllTraffic, b)?;
        }
        if !self.quarantine.is_empty() {
            let b = self.quarantine.finish()?;
            self.sink.write_batch(Table::Quarantine, b)?;
        }
        Ok(self.stats)
    }
}

/// Helpers for the converters' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use arrow::record_batch::RecordBatch;
    use arrow::util::display::array_value_to_string;

    /// `data/logs/<dir>/<name>`.
    pub fn sample(dir: &str, name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/logs").join(dir).join(name)
    }

    /// Row `i` of a batch as column name → displayed value (`NULL` for nulls).
    pub fn row(batch: &RecordBatch, i: usize) -> BTreeMap<String, String> {
        batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| {
                let v = if c.is_null(i) { "NULL".to_string() } else { array_value_to_string(c, i).unwrap() };
                (f.name().clone(), v)
            })
            .collect()
    }

    /// Asserts that `actual` has exactly the columns of `expected`, with those values.
    pub fn expect(actual: &BTreeMap<String, String>, expected: &[(&str, &str)]) {
        let want: BTreeMap<String, String> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(actual.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "column set");
        for (k, v) in &want {
            assert_eq!(&actual[k], v, "column {k}");
        }
    }
}
