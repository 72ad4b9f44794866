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
//! The built-in copy of this repository's `sql/` comes first, then each directory of
//! `CIMLAKE_SQL_PATH` and `--sql-dir`; nothing is read from the working directory unless it is
//! named. Detection SQL must be a query: it runs with no more rights than a Flight SQL client
//! ([`read_only`]).

pub mod catalog;
pub mod check;
pub mod detection;
pub mod escu;
pub mod macros;
pub mod metadata;
pub mod results;
pub mod risk;
pub mod runner;
pub mod sigma;

use std::collections::HashMap;

use chrono::Duration;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

pub use catalog::Catalog;
pub use detection::Detection;
pub use metadata::Metadata;
pub use crate::time::Window;

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
    /// Every mode, in the order they are listed.
    pub const ALL: [Mode; 2] = [Mode::Cimlake, Mode::Splunk];

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

/// What a run of a detection searches: flows (and, in Splunk mode, processes) in `window`, and in
/// cimlake mode processes from `lookback` before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    pub window: Window,
    pub lookback: Duration,
}

impl Default for Search {
    fn default() -> Self {
        Search::all_time()
    }
}

impl Search {
    pub fn all_time() -> Self {
        Search { window: Window::all_time(), lookback: Duration::hours(DEFAULT_LOOKBACK_HOURS) }
    }

    /// The named parameters every detection may use: `$earliest`, `$latest` and
    /// `$process_earliest`.
    pub fn params(&self) -> Vec<(&'static str, ScalarValue)> {
        let ts = |us: i64| ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into()));
        let earliest = self.window.earliest_us();
        let lookback = self.lookback.num_microseconds().unwrap_or(i64::MAX);
        let process_earliest = earliest.saturating_sub(lookback).max(crate::time::MIN_TIME_US);
        vec![("earliest", ts(earliest)), ("latest", ts(self.window.latest_us())), ("process_earliest", ts(process_earliest))]
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
    /// A detection's SQL names a macro that cannot be expanded.
    #[error("{detection} ({file}): {source}")]
    Macro { detection: String, file: String, source: macros::MacroError },
    /// `--macro NAME=SQL` names no macro.
    #[error("no macro named {name:?} to override (known: {})", known.join(", "))]
    NoSuchMacro { name: String, known: Vec<String> },
    #[error("{file}: {reason}")]
    NotReadOnly { file: String, reason: String },
    #[error("{detection} has no {mode} mode (it has {}; add {mode}.sql to its directory to give it one)", has.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "))]
    NoMode { detection: String, mode: Mode, has: Vec<Mode> },
}

/// What detection SQL and served client SQL may be: queries only. DDL (`CREATE …`, including
/// external tables over any file), DML (`INSERT`, `COPY … TO`) and statements such as `SET` are
/// refused before anything runs.
pub fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// A plan that does more than read: what it does, as DataFusion says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NotReadOnly {
    /// e.g. `DDL not supported: CreateExternalTable`.
    pub reason: String,
}

/// An error unless `plan` only reads (see [`read_only`]).
pub fn check_read_only(plan: &LogicalPlan) -> Result<(), NotReadOnly> {
    read_only().verify_plan(plan).map_err(|e| {
        let msg = e.strip_backtrace();
        NotReadOnly { reason: msg.strip_prefix("Error during planning: ").unwrap_or(&msg).to_string() }
    })
}

/// Plans `sql` as a query: DDL, DML and statements are refused, and nothing of them runs.
/// `what` names the SQL's file in the error.
pub async fn plan_query(ctx: &SessionContext, sql: &str, what: &str) -> Result<DataFrame, PlanError> {
    let plan = ctx.state().create_logical_plan(sql).await.map_err(PlanError::DataFusion)?;
    check_read_only(&plan).map_err(|e| PlanError::NotReadOnly {
        file: what.to_string(),
        reason: format!("only queries may run here ({e})"),
    })?;
    ctx.execute_logical_plan(plan).await.map_err(PlanError::DataFusion)
}

/// Why [`plan_query`] failed.
#[derive(Debug)]
pub enum PlanError {
    DataFusion(DataFusionError),
    NotReadOnly { file: String, reason: String },
}

/// Plans a detection over a search in a mode; the DataFrame runs it.
pub async fn plan(
    ctx: &SessionContext,
    catalog: &Catalog,
    detection: &Detection,
    mode: Mode,
    search: &Search,
) -> Result<DataFrame, DetectError> {
    let sql = catalog.expanded_sql(detection, mode)?;
    let sql_err = |source| DetectError::Sql { detection: detection.name.clone(), mode, source };
    let settings = detection.meta.settings().map_err(|reason| DetectError::Load { path: detection.files[&mode].clone(), reason })?;
    let df = if settings.is_empty() {
        plan_query(ctx, &sql, &detection.files[&mode]).await
    } else {
        // The detection's settings apply to its own plan only: a copy of the session's state.
        let mut state = ctx.state();
        for (key, value) in &settings {
            state.config_mut().options_mut().set(key, value).map_err(sql_err)?;
        }
        plan_query(&SessionContext::new_with_state(state), &sql, &detection.files[&mode]).await
    }
    .map_err(|e| match e {
        PlanError::DataFusion(e) => sql_err(e),
        PlanError::NotReadOnly { file, reason } => DetectError::NotReadOnly { file, reason },
    })?;
    let params: HashMap<&str, ScalarValue> = search.params().into_iter().collect();
    df.with_param_values(params).map_err(sql_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detection's `[settings]` shape its own plan, and only its own: the session it was planned
    /// in keeps DataFusion's defaults.
    #[tokio::test]
    async fn a_detections_settings_apply_to_its_plan_only() {
        let tmp = tempfile::TempDir::new().unwrap();
        let lake = crate::lake::Lake::new(tmp.path());
        let ctx = crate::engine::session(&lake).await.unwrap();
        let catalog = Catalog::builtin().unwrap();
        let mut d = catalog.detections[0].clone();
        assert_eq!(d.meta.settings().unwrap(), vec![("datafusion.optimizer.join_reordering".to_string(), "false".to_string())]);
        let reorders = |df: &DataFrame| df.task_ctx().session_config().options().optimizer.join_reordering;
        let planned = plan(&ctx, &catalog, &d, Mode::Cimlake, &Search::all_time()).await.unwrap();
        assert!(!reorders(&planned), "the detection's setting");
        assert!(ctx.state().config().options().optimizer.join_reordering, "the session keeps its own");
        d.meta.settings.clear();
        let planned = plan(&ctx, &catalog, &d, Mode::Cimlake, &Search::all_time()).await.unwrap();
        assert!(reorders(&planned), "without settings, the session's");
    }

    #[test]
    fn settings_are_optimizer_options_datafusion_knows() {
        let meta = |settings: &str| -> Metadata {
            let mut m = Catalog::builtin().unwrap().detections[0].meta.clone();
            m.settings = toml::from_str(settings).unwrap();
            m
        };
        assert_eq!(
            meta("\"datafusion.optimizer.max_passes\" = 2\n\"datafusion.optimizer.prefer_hash_join\" = \"true\"").settings().unwrap(),
            vec![("datafusion.optimizer.max_passes".into(), "2".into()), ("datafusion.optimizer.prefer_hash_join".into(), "true".into())]
        );
        let err = |s: &str| meta(s).settings().unwrap_err();
        assert!(err("\"datafusion.execution.target_partitions\" = 1000").contains("only datafusion.optimizer.* may be set"));
        assert!(err("\"datafusion.optimizer.no_such_option\" = true").contains("datafusion.optimizer.no_such_option"));
        assert!(err("\"datafusion.optimizer.join_reordering\" = \"maybe\"").contains("= maybe"));
        assert!(err("\"datafusion.optimizer.join_reordering\" = [true]").contains("is not a setting's value"));
    }
}
