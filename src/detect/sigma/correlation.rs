//! Sigma v2 correlation rules as one SQL query each: the matches of the rules they name (any log
//! source), grouped by the `group-by` fields, within `timespan`, over the whole search: a month of
//! data is one query.
//!
//! * `event_count`: the events of the rules of a group in a sliding window of `timespan` from
//!   each event (a window function), against the condition;
//! * `value_count`: the distinct values of the condition's `field` in that window (a range join);
//! * `temporal`: every named rule matched within `timespan` (a range join counting the rules);
//! * `temporal_ordered`: the rules matched in the order named, each no earlier than the one before,
//!   all within `timespan` of the first (one range join per rule, keeping the earliest next match).
//!
//! Each correlation gives one row per group: the time its condition first held (`_time`), the last
//! event of the last window that met it (`last_time`), how many windows met it (`windows`), the
//! largest count (`count`), and the rule's identity. Events without a value for a group-by field
//! are in no group. Events from `timespan` before the search window count, so a window sees the
//! correlations that complete in it.

use std::collections::HashMap;

use rsigma_parser::{ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType};

use super::{Unsupported, one_line};
use super::compile::quote;
use super::fields::Logsource;
use crate::detect::Detection;

/// A rule a correlation names, as far as the correlation needs it.
struct Base<'a> {
    /// How the correlation calls it (its `name`, or its id).
    reference: String,
    detection: &'a Detection,
    logsource: Logsource,
    condition: &'a str,
}

/// The rule a correlation names: by its `name`, else its id.
fn find<'a>(reference: &str, rules: &'a [Detection]) -> Option<Base<'a>> {
    rules.iter().find_map(|d| {
        let info = d.sigma.as_deref().filter(|i| !i.correlation)?;
        let named = info.name.as_deref() == Some(reference) || d.name == reference;
        named.then(|| Base { reference: reference.to_string(), detection: d, logsource: info.logsource, condition: info.condition.as_str() })
    })
}

/// The SQL of a correlation over `rules` (the catalog's compiled Sigma rules), with the log source
/// of its first rule (whose column names its output uses).
pub fn compile(c: &CorrelationRule, id: &str, rules: &[Detection]) -> Result<(String, Logsource), Unsupported> {
    if c.rules.is_empty() {
        return Err(Unsupported::Correlation("it names no rule".into()));
    }
    let bases = c
        .rules
        .iter()
        .map(|r| find(r, rules).ok_or_else(|| Unsupported::Correlation(format!("it names {r:?}, which is no compiled Sigma rule of the catalog"))))
        .collect::<Result<Vec<_>, _>>()?;
    // Each group-by field as a column of each rule's table (an alias may name a different field
    // per rule).
    let aliases: HashMap<&str, &HashMap<String, String>> = c.aliases.iter().map(|a| (a.alias.as_str(), &a.mapping)).collect();
    let column = |field: &str, b: &Base| -> Result<&'static str, Unsupported> {
        let sigma_field = match aliases.get(field) {
            Some(mapping) => mapping.get(&b.reference).map(String::as_str).ok_or_else(|| Unsupported::Correlation(format!("alias {field} has no field for rule {}", b.reference)))?,
            None => field,
        };
        b.logsource.column(sigma_field).map(|c| c.name).ok_or_else(|| Unsupported::Field { field: sigma_field.to_string(), source: b.logsource })
    };
    let value_field = match (&c.correlation_type, &c.condition) {
        (CorrelationType::ValueCount, CorrelationCondition::Threshold { field: Some(f), .. }) if !f.is_empty() => Some(f[0].clone()),
        (CorrelationType::ValueCount, _) => return Err(Unsupported::Correlation("value_count needs a condition field".into())),
        _ => None,
    };
    let predicates = match &c.condition {
        CorrelationCondition::Threshold { predicates, percentile: None, .. } => predicates.clone(),
        CorrelationCondition::Threshold { .. } => return Err(Unsupported::Correlation("percentile conditions".into())),
        CorrelationCondition::Extended(_) => return Err(Unsupported::Correlation("extended (boolean) conditions".into())),
    };
    let span = c.timespan.seconds;
    if span == 0 {
        return Err(Unsupported::Correlation("a timespan of 0".into()));
    }
    let interval = format!("INTERVAL '{span} seconds'");
    let groups: Vec<String> = (0..c.group_by.len()).map(|i| format!("g{i}")).collect();
    // One CTE of matches per rule: the group's values, the time, the rule's index, the value.
    let mut ctes = Vec::new();
    for (k, b) in bases.iter().enumerate() {
        let mut select = Vec::new();
        let mut not_null = Vec::new();
        for (i, field) in c.group_by.iter().enumerate() {
            let col = column(field, b)?;
            select.push(format!("CAST({col} AS VARCHAR) AS g{i}"));
            not_null.push(format!("{col} IS NOT NULL"));
        }
        select.push("_time AS t".into());
        select.push(format!("{k} AS k"));
        if let Some(f) = &value_field {
            let col = column(f, b)?;
            select.push(format!("CAST({col} AS VARCHAR) AS v"));
            not_null.push(format!("{col} IS NOT NULL"));
        }
        let table = b.logsource.table().qualified_name();
        let mut filter = vec![format!("_time + {interval} >= $earliest"), "_time < $latest".to_string(), b.condition.to_string()];
        filter.extend(not_null);
        ctes.push(format!(
            "m{k} AS (\n    -- {}\n    SELECT {}\n    FROM {table}\n    WHERE {}\n)",
            one_line(&b.detection.meta.name),
            select.join(", "),
            filter.join("\n      AND ")
        ));
    }
    let all = (0..bases.len()).map(|k| format!("SELECT * FROM m{k}")).collect::<Vec<_>>().join(" UNION ALL ");
    ctes.push(format!("events AS ({all})"));
    let on = |a: &str, b: &str| -> String {
        let mut conds: Vec<String> = groups.iter().map(|g| format!("{a}.{g} = {b}.{g}")).collect();
        conds.push(format!("{b}.t >= {a}.t AND {b}.t <= {a}.t + {interval}"));
        conds.join(" AND ")
    };
    let gcols = |alias: &str| groups.iter().map(|g| format!("{alias}.{g}")).collect::<Vec<_>>();
    let gby = |alias: &str| {
        let mut v = gcols(alias);
        v.push(format!("{alias}.t"));
        v.join(", ")
    };
    let pick = |alias: &str| {
        let mut v = gcols(alias);
        v.push(format!("{alias}.t AS t0"));
        v.join(", ")
    };
    // `windows`: one row per window start (t0) with its count (n) and its last event (tk).
    let windows = match c.correlation_type {
        CorrelationType::EventCount => {
            let partition = if groups.is_empty() { String::new() } else { format!("PARTITION BY {} ", groups.join(", ")) };
            format!(
                "windows AS (\n    SELECT {}, t AS t0, count(*) OVER ({partition}ORDER BY t RANGE BETWEEN CURRENT ROW AND {interval} FOLLOWING) AS n,\n           max(t) OVER ({partition}ORDER BY t RANGE BETWEEN CURRENT ROW AND {interval} FOLLOWING) AS tk\n    FROM events\n)",
                if groups.is_empty() { "0 AS unused".to_string() } else { groups.join(", ") }
            )
        }
        CorrelationType::ValueCount => format!(
            "windows AS (\n    SELECT {}, count(DISTINCT y.v) AS n, max(y.t) AS tk\n    FROM events x JOIN events y ON {}\n    GROUP BY {}\n)",
            pick("x"),
            on("x", "y"),
            gby("x")
        ),
        CorrelationType::Temporal => format!(
            "windows AS (\n    SELECT {}, count(DISTINCT y.k) AS n, max(y.t) AS tk\n    FROM events x JOIN events y ON {}\n    GROUP BY {}\n)",
            pick("x"),
            on("x", "y"),
            gby("x")
        ),
        CorrelationType::TemporalOrdered => {
            // c0: each match of the first rule starts a chain; c{k}: the earliest match of rule k
            // no earlier than the chain's last, within the timespan of its first.
            let mut first = groups.clone();
            first.extend(["t AS t0".to_string(), "t AS tk".to_string()]);
            let mut chain = vec![format!("c0 AS (SELECT {} FROM m0)", first.join(", "))];
            for k in 1..bases.len() {
                let mut conds: Vec<String> = groups.iter().map(|g| format!("c.{g} = m.{g}")).collect();
                conds.push(format!("m.t >= c.tk AND m.t <= c.t0 + {interval}"));
                let mut keep = gcols("c");
                keep.push("c.t0".into());
                chain.push(format!(
                    "c{k} AS (SELECT {}, min(m.t) AS tk FROM c{} c JOIN m{k} m ON {} GROUP BY {})",
                    keep.join(", "),
                    k - 1,
                    conds.join(" AND "),
                    keep.join(", ")
                ));
            }
            let last = bases.len() - 1;
            let mut cols = groups.clone();
            cols.extend(["t0".to_string(), format!("{} AS n", bases.len()), "tk".to_string()]);
            chain.push(format!("windows AS (SELECT {} FROM c{last})", cols.join(", ")));
            chain.join(",\n")
        }
        other => return Err(Unsupported::Correlation(format!("{} correlations", other.as_str()))),
    };
    ctes.push(windows);
    let threshold = match c.correlation_type {
        // Every rule, in any order or in order.
        CorrelationType::Temporal | CorrelationType::TemporalOrdered if predicates.is_empty() => vec![format!("n >= {}", bases.len())],
        CorrelationType::Temporal => {
            let mut p: Vec<String> = predicates.iter().map(|(op, v)| format!("n {} {v}", sql_op(*op))).collect();
            p.push(format!("n >= {}", bases.len()));
            p
        }
        CorrelationType::TemporalOrdered => vec!["true".to_string()],
        _ if predicates.is_empty() => return Err(Unsupported::Correlation("no condition".into())),
        _ => predicates.iter().map(|(op, v)| format!("n {} {v}", sql_op(*op))).collect(),
    };
    // Output columns named after the first rule's columns for the group-by fields.
    let first = &bases[0];
    let mut out_cols = Vec::new();
    for (i, field) in c.group_by.iter().enumerate() {
        out_cols.push(format!("g{i} AS {}", column(field, first)?));
    }
    out_cols.extend([
        "min(t0) AS _time".to_string(),
        "max(tk) AS last_time".to_string(),
        "count(*) AS windows".to_string(),
        "max(n) AS count".to_string(),
        format!("{} AS rule_id", quote(id)),
        format!("{} AS rule_title", quote(&c.title)),
        format!("{} AS rule_level", quote(c.level.map_or("medium", |l| l.as_str()))),
        format!("{} AS rule_tags", quote(&c.tags.join(","))),
    ]);
    let group_by = if groups.is_empty() { String::new() } else { format!("\nGROUP BY {}", groups.join(", ")) };
    let order = if groups.is_empty() { "_time".to_string() } else { format!("_time, {}", (1..=groups.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")) };
    let sql = format!(
        "-- Sigma correlation {} ({}): {} of {} by {} within {}\nWITH {}\nSELECT {}\nFROM windows\nWHERE ({}) AND tk >= $earliest AND tk < $latest{group_by}\nORDER BY {order}",
        one_line(&c.title),
        one_line(id),
        c.correlation_type.as_str(),
        bases.iter().map(|b| b.reference.as_str()).collect::<Vec<_>>().join(", "),
        if c.group_by.is_empty() { "nothing".to_string() } else { c.group_by.join(", ") },
        c.timespan.original,
        ctes.join(",\n"),
        out_cols.join(", "),
        threshold.join(" AND ")
    );
    Ok((sql, first.logsource))
}

fn sql_op(op: ConditionOperator) -> &'static str {
    match op {
        ConditionOperator::Lt => "<",
        ConditionOperator::Lte => "<=",
        ConditionOperator::Gt => ">",
        ConditionOperator::Gte => ">=",
        ConditionOperator::Eq => "=",
        ConditionOperator::Neq => "<>",
    }
}
