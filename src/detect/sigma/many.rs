//! Many Sigma rules in one scan: the rules of one log source read their table once, and every
//! batch of it is matched against each rule's condition, run by cimlake's evaluator
//! ([`super::eval`]) with no query planned per rule. A thousand rules read the table once, not a
//! thousand times.
//!
//! ```text
//! Scan(table, window; the columns any rule or the output needs)        once
//!   → per batch: one Aho-Corasick pass per guarded column (ASCII case folded; a value with other
//!     characters lowered first) finds every rule's guard texts (guard.rs), giving each rule the
//!     rows where all its guard's clauses hold
//!   → per batch, per rule with such rows: its condition on each of them → the rows it matches
//!   → (row, rule) pairs, with the rule's id, title, level and tags
//! ```
//!
//! Each rule's own SQL (`--show-sql`) gives the same rows: both come from the same compiled
//! condition, and the guards skip only rows the condition could not match. Two switches check
//! it: `CIMLAKE_SIGMA_GUARDS=off` runs every condition on every row, and
//! `CIMLAKE_SIGMA_EVALUATOR=datafusion` has the engine evaluate each rule's SQL condition instead.
//!
//! The matching is [`super::matcher`]'s. In process, this module runs it on each partition of the
//! scan; on a cluster, the scan and the rules go to the executors as one plan ([`super::node`]).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::fields::Logsource;
use super::matcher::{Rule, RuleSet, Shared, output_schema};
use super::SigmaInfo;
use crate::detect::{Detection, Search};

/// The matches of a set of rules of one log source.
#[derive(Debug)]
pub struct Matches {
    pub logsource: Logsource,
    /// The rules run.
    pub rules: usize,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Matches {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs `rules` (Sigma detections) over `search`'s window: one scan per log source.
pub async fn run(
    ctx: &SessionContext,
    rules: &[&Detection],
    search: &Search,
) -> Result<Vec<Matches>, DataFusionError> {
    let mut out = Vec::new();
    for source in Logsource::ALL {
        if let Some(compiled) = Compiled::new(ctx, source, rules, search).await? {
            out.push(compiled.run(ctx).await?);
        }
    }
    Ok(out)
}

/// `CIMLAKE_SIGMA_EVALUATOR=datafusion` evaluates each rule's SQL condition (`--show-sql`) with
/// the engine's own functions on every row of the scan, instead of cimlake's evaluator and guards:
/// the reference the evaluator is checked against.
pub const EVALUATOR_ENV: &str = "CIMLAKE_SIGMA_EVALUATOR";

/// The rules of `source` among `rules` (the single-event ones: correlations run their own SQL).
fn of_source<'a>(source: Logsource, rules: &[&'a Detection]) -> Vec<(&'a Detection, &'a SigmaInfo)> {
    rules
        .iter()
        .filter_map(|d| d.sigma.as_deref().filter(|i| i.logsource == source && !i.correlation).map(|i| (*d, i)))
        .collect()
}

/// What `--explain` shows of the rules of `source` among `rules` (`None` when there are none): the
/// scan of its table; on a cluster, the scan under the node that matches it on the executors.
pub async fn plan(
    ctx: &SessionContext,
    source: Logsource,
    rules: &[&Detection],
    search: &Search,
) -> Result<Option<DataFrame>, DataFusionError> {
    let Some(c) = Compiled::new(ctx, source, rules, search).await? else {
        return Ok(None);
    };
    if crate::engine::is_cluster(ctx) {
        return Ok(Some(DataFrame::new(ctx.state(), super::node::plan(c.scan.logical_plan().clone(), c.set)?)));
    }
    Ok(Some(c.scan))
}

/// The rules of one log source, ready to run.
struct Compiled<'a> {
    /// Each rule's SQL condition, for `CIMLAKE_SIGMA_EVALUATOR=datafusion`.
    conditions: Vec<&'a str>,
    /// The scan: the columns shown, then any other a rule reads.
    scan: DataFrame,
    set: RuleSet,
}

impl<'a> Compiled<'a> {
    async fn new(
        ctx: &SessionContext,
        source: Logsource,
        rules: &[&'a Detection],
        search: &Search,
    ) -> Result<Option<Compiled<'a>>, DataFusionError> {
        let rules = of_source(source, rules);
        if rules.is_empty() {
            return Ok(None);
        }
        let table = ctx.table(source.table().qualified_name()).await?;
        let cond = |d: &Detection, i: &'a SigmaInfo| i.cond.as_ref().ok_or_else(|| DataFusionError::Internal(format!("{}: no compiled condition", d.name)));
        // The columns to read: those shown, then any other a condition or a guard names.
        let mut names: Vec<String> = super::shown_columns(source).into_iter().map(str::to_string).collect();
        for (d, info) in &rules {
            let guarded = info.guard.iter().flatten().flatten().map(|(c, _)| *c);
            for c in cond(d, info)?.columns().into_iter().chain(guarded) {
                if !names.iter().any(|n| n == c) {
                    names.push(c.to_string());
                }
            }
        }
        let ts = |us: i64| {
            lit(ScalarValue::TimestampMicrosecond(
                Some(us),
                Some("UTC".into()),
            ))
        };
        let time = col(crate::cim::TIME);
        let scan = table
            .filter(
                time.clone()
                    .gt_eq(ts(search.window.earliest_us()))
                    .and(time.lt(ts(search.window.latest_us()))),
            )?
            .select(names.iter().map(col).collect::<Vec<_>>())?;
        let set = RuleSet {
            source,
            names,
            rules: rules.iter().map(|(d, info)| Rule::of(d, info)).collect::<Result<_, _>>()?,
        };
        // Each condition compiles over the scanned columns (checked here, before anything runs).
        super::matcher::programs(&set)?;
        Ok(Some(Compiled {
            conditions: rules.iter().map(|(_, i)| i.condition.as_str()).collect(),
            scan,
            set,
        }))
    }

    /// Each rule's SQL condition, planned by the engine over the scanned columns.
    async fn reference(&self, ctx: &SessionContext) -> Result<Vec<Arc<dyn PhysicalExpr>>, DataFusionError> {
        let table = ctx.table(self.set.source.table().qualified_name()).await?;
        let scanned = DFSchema::try_from(self.scan.schema().as_arrow().clone())?;
        self.conditions
            .iter()
            .map(|condition| {
                // Columns as the scan's output names them: unqualified.
                let e = table
                    .parse_sql_expr(condition)?
                    .transform_up(|e| match &e {
                        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name.clone())))),
                        _ => Ok(Transformed::no(e)),
                    })?
                    .data;
                ctx.create_physical_expr(e, &scanned)
            })
            .collect()
    }

    async fn run(self, ctx: &SessionContext) -> Result<Matches, DataFusionError> {
        let reference = match std::env::var(EVALUATOR_ENV).as_deref() {
            Ok("datafusion") => Some(self.reference(ctx).await?),
            Ok("cimlake") | Err(_) => None,
            Ok(other) => return Err(DataFusionError::Configuration(format!("{EVALUATOR_ENV}={other}: use cimlake or datafusion"))),
        };
        let schema = output_schema(self.set.source);
        if crate::engine::is_cluster(ctx) {
            if reference.is_some() {
                return Err(DataFusionError::Configuration(format!("{EVALUATOR_ENV}=datafusion runs in process only")));
            }
            // On a cluster, the executors match their partitions ([`super::node`]); the client
            // gets the matches.
            let (logsource, rules) = (self.set.source, self.set.rules.len());
            let plan = super::node::plan(self.scan.logical_plan().clone(), self.set)?;
            let batches = DataFrame::new(ctx.state(), plan).collect().await?;
            let batches = sorted(&schema, batches)?;
            return Ok(Matches { logsource, rules, schema, batches });
        }
        let streams = self.scan.clone().execute_stream_partitioned().await?;
        let me = Arc::new(Shared::new(&self.set, reference)?);
        // One task per partition of the scan: the partitions are matched in parallel.
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                let me = me.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    // The rows of each clause, kept from batch to batch so their buffers are reused.
                    let mut holds = me.holds();
                    while let Some(batch) = stream.next().await {
                        out.extend(me.matches(&batch?, &mut holds)?);
                    }
                    Ok::<_, DataFusionError>(out)
                })
            })
            .collect();
        let mut batches = Vec::new();
        for t in tasks {
            batches.extend(
                t.await
                    .map_err(|e| DataFusionError::External(Box::new(e)))??,
            );
        }
        let batches = sorted(&schema, batches)?;
        Ok(Matches {
            logsource: self.set.source,
            rules: self.set.rules.len(),
            schema,
            batches,
        })
    }
}

/// The matches ordered by rule, then as a rule's SQL orders them (`_time`, `source`,
/// `source_record`).
fn sorted(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    let all = arrow::compute::concat_batches(schema, &batches)?;
    if all.num_rows() < 2 {
        return Ok(if all.num_rows() == 0 {
            Vec::new()
        } else {
            vec![all]
        });
    }
    let by = |name: &str| -> Result<arrow::compute::SortColumn, DataFusionError> {
        Ok(arrow::compute::SortColumn {
            values: all.column(schema.index_of(name)?).clone(),
            options: None,
        })
    };
    let keys = [
        by("rule_id")?,
        by(crate::cim::TIME)?,
        by("source")?,
        by("source_record")?,
    ];
    let order = arrow::compute::lexsort_to_indices(&keys, None)?;
    Ok(vec![arrow::compute::take_record_batch(&all, &order)?])
}
