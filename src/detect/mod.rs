//! Detections: SQL files plus metadata, macros expanded Splunk style (`` `name` ``), run in one
//! of two modes over a time window.
//!
//! ```text
//! sql/
//!   detections/<name>/detection.toml   metadata: name, id, MITRE, schedule, risk
//!   detections/<name>/cimlake.sql      the detection, cimlake semantics (default)
//!   detections/<name>/splunk.sql       the detection, Splunk-compatible semantics
//!   macros/<macro>.sql                 one SQL expression per macro, filters included
//! ```
//!
//! The SQL directory is `--sql-dir`, else `$CIMLAKE_SQL`, else `./sql` when it exists, else the
//! copy built into the binary.

pub mod catalog;
pub mod macros;
pub mod metadata;
pub mod results;
pub mod risk;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

pub use catalog::{Catalog, Detection};
pub use metadata::Metadata;

/// Join semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Endpoint + process_guid/process_id join, every flow kept, nulls kept (default).
    Cimlake,
    /// What ESCU returns in Splunk: join on process_id alone, max=1, 'null' fill, overwrite.
    Splunk,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Cimlake => "cimlake",
            Mode::Splunk => "splunk",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The default process look-back of cimlake mode.
pub const DEFAULT_LOOKBACK_HOURS: i64 = 24;

/// Earliest time representable in the lake for "all time" (0001-01-01T00:00:00Z).
pub const MIN_TIME_US: i64 = -62_135_596_800_000_000;
/// Latest time for "all time" (10000-01-01T00:00:00Z, exclusive).
pub const MAX_TIME_US: i64 = 253_402_300_800_000_000;

/// A search window: `earliest` inclusive, `latest` exclusive, and the process look-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub earliest: Option<DateTime<Utc>>,
    pub latest: Option<DateTime<Utc>>,
    pub lookback: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window::all_time()
    }
}

impl Window {
    pub fn all_time() -> Self {
        Window { earliest: None, latest: None, lookback: Duration::hours(DEFAULT_LOOKBACK_HOURS) }
    }

    fn earliest_us(&self) -> i64 {
        self.earliest.map_or(MIN_TIME_US, |t| t.timestamp_micros())
    }

    fn latest_us(&self) -> i64 {
        self.latest.map_or(MAX_TIME_US, |t| t.timestamp_micros())
    }

    /// The named parameters every detection may use.
    pub fn params(&self) -> Vec<(&'static str, ScalarValue)> {
        let ts = |us: i64| ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into()));
        let earliest = self.earliest_us();
        let lookback = self.lookback.num_microseconds().unwrap_or(i64::MAX);
        let process_earliest = earliest.saturating_sub(lookback).max(MIN_TIME_US);
        vec![
            ("earliest", ts(earliest)),
            ("latest", ts(self.latest_us())),
            ("process_earliest", ts(process_earliest)),
        ]
    }
}

/// Errors from loading or running detections.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{path}: {reason}")]
    Load { path: String, reason: String },
    #[error("no detection named {0:?} (see `cimlake detect --list`)")]
    Unknown(String),
    #[error("{detection} ({mode} mode): {source}")]
    Sql { detection: String, mode: Mode, source: DataFusionError },
    #[error("{0}")]
    Macro(String),
}

/// Plans a detection over a window in a mode; the DataFrame runs it.
pub async fn plan(
    ctx: &SessionContext,
    catalog: &Catalog,
    detection: &Detection,
    mode: Mode,
    window: &Window,
) -> Result<DataFrame, DetectError> {
    let sql = catalog.expanded_sql(detection, mode)?;
    let sql_err = |source| DetectError::Sql { detection: detection.name.clone(), mode, source };
    let df = ctx.sql(&sql).await.map_err(sql_err)?;
    let params: HashMap<&str, ScalarValue> = window.params().into_iter().collect();
    df.with_param_values(params).map_err(sql_err)
}
