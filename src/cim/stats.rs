//! What a conversion saw, as recorded with each ingested input in the lake's commits: rows per
//! table, records skipped per reason, and the records that could not be read, located.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Table;

/// How many bad records are kept with their location (all are counted).
pub const MAX_BAD_EXAMPLES: usize = 100;

/// A record that could not be read, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    pub source: String,
    /// Line number (text) or record id (EVTX), when known.
    pub record: Option<i64>,
    /// Byte offset in a text file, when known.
    pub offset: Option<i64>,
    pub reason: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.record, self.offset) {
            (Some(line), Some(_)) => write!(f, "{}:{}: {}", self.source, line, self.reason),
            (Some(rec), None) => write!(f, "{}: record {}: {}", self.source, rec, self.reason),
            (None, Some(off)) => write!(f, "{}: byte {}: {}", self.source, off, self.reason),
            (None, None) => write!(f, "{}: {}", self.source, self.reason),
        }
    }
}

/// What a conversion saw: rows written per table, records skipped per reason, bad records.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Records read (events, text records and unreadable records alike).
    pub records: u64,
    /// Rows produced per table (`endpoint.processes`, …).
    pub rows: BTreeMap<String, u64>,
    /// Records read but not mapped, per reason.
    pub skipped: BTreeMap<String, u64>,
    /// Records that could not be read.
    pub bad: u64,
    /// The first [`MAX_BAD_EXAMPLES`] bad records, with their location.
    pub bad_records: Vec<BadRecord>,
}

impl Stats {
    pub fn rows(&self, table: Table) -> u64 {
        self.rows.get(table.qualified_name()).copied().unwrap_or(0)
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub fn merge(&mut self, other: &Stats) {
        self.records += other.records;
        for (k, v) in &other.rows {
            *self.rows.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        self.bad += other.bad;
        for b in &other.bad_records {
            if self.bad_records.len() < MAX_BAD_EXAMPLES {
                self.bad_records.push(b.clone());
            }
        }
    }
}
