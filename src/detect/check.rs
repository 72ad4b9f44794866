//! `cimlake detect --check`: every detection, in every mode it has, planned against the lake's
//! schemas (a lake with no rows, or no lake at all, is enough: every table of the registry is
//! there with its schema), each failure reported by the file and line a user wrote.

use std::collections::HashMap;
use std::fmt;

use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use super::catalog::Catalog;
use super::detection::Detection;
use super::runner::RunError;
use super::{DetectError, Mode, PlanError, Search, plan_query};
use crate::engine::{self, EngineOptions};
use crate::lake::Lake;

/// One detection that does not plan in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub detection: String,
    pub mode: Mode,
    /// The SQL file (a path on disk, or `built-in sql/…`).
    pub file: String,
    /// Line and column in that file, 1-based, where the planner or parser says.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {} ({} mode): {}", self.detection, self.mode, self.reason)
    }
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Detection-mode pairs planned.
    pub planned: usize,
    pub failures: Vec<Failure>,
}

/// Plans every detection of `catalog` in every mode it has against `lake`'s tables, down to a
/// physical plan, without reading a row.
pub async fn check(lake: &Lake, catalog: &Catalog) -> Result<Checked, RunError> {
    let ctx = engine::session_with(lake, &EngineOptions::default()).await?;
    // Spans let the planner say where in the SQL an unknown column or table is.
    ctx.state_ref().write().config_mut().options_mut().sql_parser.collect_spans = true;
    let mut checked = Checked::default();
    for d in &catalog.detections {
        for mode in d.modes() {
            checked.planned += 1;
            if let Err(failure) = check_one(&ctx, catalog, d, mode).await {
                checked.failures.push(failure);
            }
        }
    }
    Ok(checked)
}

async fn check_one(ctx: &SessionContext, catalog: &Catalog, d: &Detection, mode: Mode) -> Result<(), Failure> {
    let file = d.files[&mode].clone();
    let fail = |line: Option<usize>, column: Option<usize>, reason: String| Failure {
        detection: d.name.clone(),
        mode,
        file: file.clone(),
        line,
        column,
        reason,
    };
    let (sql, lines) = match catalog.expanded_sql_mapped(d, mode) {
        Ok(expanded) => expanded,
        Err(DetectError::Macro { source, .. }) => {
            // The line of the source that names the macro, when the detection names it itself.
            let line = source.name().and_then(|name| line_of(&d.sql[&mode], &format!("`{name}`")));
            return Err(fail(line, None, source.to_string()));
        }
        Err(e) => return Err(fail(None, None, e.to_string())),
    };
    let located = |e: &DataFusionError| {
        let (line, column) = location(e).map_or((None, None), |(l, c)| (lines.get(l - 1).copied().or(Some(l)), Some(c)));
        // A column within a line that came from a macro is a column of the expansion: not shown.
        let column = column.filter(|_| line.is_some_and(|l| lines.iter().filter(|&&s| s == l).count() == 1));
        // The first line: what follows (every valid field name) is too long for a report line.
        let reason = e.strip_backtrace();
        fail(line, column, reason.lines().next().unwrap_or_default().to_string())
    };
    let df = plan_query(ctx, &sql, &file).await.map_err(|e| match e {
        PlanError::DataFusion(e) => located(&e),
        PlanError::NotReadOnly { reason, .. } => fail(None, None, reason),
    })?;
    let params: HashMap<&str, ScalarValue> = Search::all_time().params().into_iter().collect();
    let df = df.with_param_values(params).map_err(|e| located(&e))?;
    // A Sigma rule's SQL is generated: its logical plan (columns, types, functions) is the check;
    // optimising and planning a thousand rules physically would take minutes and find nothing more.
    if d.sigma.is_none() {
        df.create_physical_plan().await.map_err(|e| located(&e))?;
    }
    Ok(())
}

/// Where in the SQL an error is (line, column; 1-based): the planner's span, else the parser's
/// `at Line: L, Column: C`.
fn location(e: &DataFusionError) -> Option<(usize, usize)> {
    if let Some(span) = e.diagnostic().and_then(|d| d.span)
        && span.start.line > 0
    {
        return Some((span.start.line as usize, span.start.column as usize));
    }
    let text = e.to_string();
    let at = text.rfind("Line: ")?;
    let rest = &text[at + "Line: ".len()..];
    let line: usize = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let column = rest.split_once("Column: ").and_then(|(_, c)| c.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).unwrap_or(1);
    (line > 0).then_some((line, column))
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_locations_are_read_from_the_message() {
        let e = DataFusionError::Plan("Expected: an expression, found: FROM at Line: 7, Column: 3".into());
        assert_eq!(location(&e), Some((7, 3)));
        assert_eq!(location(&DataFusionError::Plan("no place".into())), None);
    }

    #[test]
    fn macro_errors_are_placed_on_the_line_naming_the_macro() {
        assert_eq!(line_of("SELECT\nWHERE `nope`\n", "`nope`"), Some(2));
    }
}
