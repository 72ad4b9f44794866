//! Many Sigma rules in one scan: the rules of one log source read their table once, and every
//! batch of it is matched against each rule's condition, compiled once (on every core) to a
//! DataFusion physical expression over the columns that rule reads. A thousand rules read the
//! table once, not a thousand times.
//!
//! ```text
//! Scan(table, window; the columns any rule or the output needs)        once
//!   → per batch: the lower-case form of each text column the rules fold, once
//!   → per batch: one Aho-Corasick pass per guarded column finds every rule's guard texts
//!     (guard.rs), giving each rule the rows where all its guard's clauses hold
//!   → per batch, per rule with such rows: its condition on them (DataFusion's kernels,
//!     regular expressions compiled once) → the rows it matches
//!   → (row, rule) pairs, with the rule's id, title, level and tags
//! ```
//!
//! Each rule's own SQL (`--show-sql`) gives the same rows: the conditions are the same, only
//! `lower(column)` is computed once per batch for all rules instead of once per use, and the
//! guards skip rows the condition could not match (`CIMLAKE_SIGMA_GUARDS=off` to check).

use std::collections::{BTreeMap, BTreeSet};

use aho_corasick::{AhoCorasick, MatchKind};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::fields::Logsource;
use super::{RULE_COLUMNS, SigmaInfo};
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
            out.push(compiled.run().await?);
        }
    }
    Ok(out)
}

/// The scan of `source`'s table that the rules of `source` among `rules` read (`None` when there
/// are none): what `--explain` shows.
pub async fn plan(
    ctx: &SessionContext,
    source: Logsource,
    rules: &[&Detection],
    search: &Search,
) -> Result<Option<DataFrame>, DataFusionError> {
    Ok(Compiled::new(ctx, source, rules, search)
        .await?
        .map(|c| c.scan))
}

/// The prefix of the column holding a text column's lower-case form.
const LOWER: &str = "__lower_";

/// The rules of one log source, ready to run.
struct Compiled<'a> {
    source: Logsource,
    rules: Vec<(&'a Detection, &'a SigmaInfo)>,
    conditions: Vec<Condition>,
    /// The scan: the columns read, in the order the conditions' schema has them first.
    scan: DataFrame,
    /// Text columns whose lower-case form the conditions read, in the order they follow the
    /// scanned columns.
    lowered: Vec<String>,
    /// The schema the conditions evaluate against: scanned columns, then the lower-case forms.
    eval_schema: SchemaRef,
}

impl<'a> Compiled<'a> {
    async fn new(
        ctx: &SessionContext,
        source: Logsource,
        rules: &[&'a Detection],
        search: &Search,
    ) -> Result<Option<Compiled<'a>>, DataFusionError> {
        let rules: Vec<(&Detection, &SigmaInfo)> = rules
            .iter()
            .filter_map(|d| {
                d.sigma
                    .as_deref()
                    .filter(|i| i.logsource == source && !i.correlation)
                    .map(|i| (*d, i))
            })
            .collect();
        if rules.is_empty() {
            return Ok(None);
        }
        let table = ctx.table(source.table().qualified_name()).await?;
        // Each condition, with `lower(column)` read from a column computed once per batch; the
        // rules are parsed in parallel.
        let parsed = in_parallel(&rules, |(_, info)| {
            let mut lowered = BTreeSet::new();
            let e = table
                .parse_sql_expr(&info.condition)?
                .transform_up(|e| match &e {
                    Expr::ScalarFunction(f) if f.name() == "lower" && matches!(f.args.as_slice(), [Expr::Column(_)]) => {
                        let Expr::Column(c) = &f.args[0] else { unreachable!() };
                        lowered.insert(c.name.clone());
                        Ok(Transformed::yes(Expr::Column(Column::new_unqualified(format!("{LOWER}{}", c.name)))))
                    }
                    // Columns as the scan's output names them: unqualified.
                    Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name.clone())))),
                    _ => Ok(Transformed::no(e)),
                })?
                .data;
            Ok((e, lowered))
        })?;
        let mut lowered = BTreeSet::new();
        let mut exprs = Vec::with_capacity(parsed.len());
        for (e, l) in parsed {
            lowered.extend(l);
            exprs.push(e);
        }
        // Guard texts are found in the lower-case form of their columns.
        for (_, info) in &rules {
            for (c, _) in info.guard.iter().flatten().flatten() {
                lowered.insert(c.to_string());
            }
        }
        let lowered: Vec<String> = lowered.into_iter().collect();
        // The columns to read: those shown, then any other a condition names.
        let mut read: Vec<String> = super::shown_columns(source).into_iter().map(str::to_string).collect();
        for e in &exprs {
            for c in e.column_refs() {
                let name = c.name.strip_prefix(LOWER).unwrap_or(&c.name).to_string();
                if !read.contains(&name) {
                    read.push(name);
                }
            }
        }
        for name in &lowered {
            if !read.contains(name) {
                read.push(name.clone());
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
            .select(read.iter().map(col).collect::<Vec<_>>())?;
        let scanned: Schema = scan.schema().as_arrow().clone();
        let mut fields: Vec<Field> = scanned
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(
            lowered
                .iter()
                .map(|c| Field::new(format!("{LOWER}{c}"), DataType::Utf8, true)),
        );
        let eval_schema = Arc::new(Schema::new(fields));
        
        // Each condition against the columns it reads only: a rule's rows are taken from those.
        let conditions = in_parallel(&exprs, |e| {
            let e = precompiled_regexes(e.clone())?;
            let names: BTreeSet<String> = e.column_refs().iter().map(|c| c.name.clone()).collect();
            let columns: Vec<usize> = (0..eval_schema.fields().len()).filter(|&i| names.contains(eval_schema.field(i).name())).collect();
            let schema = Arc::new(eval_schema.project(&columns)?);
            let physical = ctx.create_physical_expr(e, &DFSchema::try_from(schema.as_ref().clone())?)?;
            Ok(Condition { physical, columns, schema })
        })?;
        Ok(Some(Compiled {
            source,
            rules,
            conditions,
            scan,
            lowered,
            eval_schema,
        }))
    }

    async fn run(self) -> Result<Matches, DataFusionError> {
        let schema = output_schema(self.source);
        let streams = self.scan.clone().execute_stream_partitioned().await?;
        let me = Arc::new(Shared {
            ids: self.rules.iter().map(|(d, _)| d.name.clone()).collect(),
            titles: self
                .rules
                .iter()
                .map(|(d, _)| d.meta.name.clone())
                .collect(),
            levels: self.rules.iter().map(|(_, i)| i.level.clone()).collect(),
            tags: self.rules.iter().map(|(_, i)| i.tags.join(",")).collect(),
            guards: Guards::new(&self.rules, &self.lowered)?,
            conditions: self.conditions,
            lowered: self.lowered,
            eval_schema: self.eval_schema,
            schema: schema.clone(),
        });
        // One task per partition of the scan: the partitions are matched in parallel.
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|mut stream| {
                let me = me.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    while let Some(batch) = stream.next().await {
                        out.extend(me.matches(&batch?)?);
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
            logsource: self.source,
            rules: me.ids.len(),
            schema,
            batches,
        })
    }
}

/// `f` over `items` on every core, in order.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Result<R, DataFusionError> + Sync) -> Result<Vec<R>, DataFusionError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for part in items.chunks(chunk) {
            // The main thread's stack: planning recurses over expressions.
            let spawned = std::thread::Builder::new().stack_size(8 << 20).spawn_scoped(scope, || part.iter().map(&f).collect::<Result<Vec<R>, _>>());
            handles.push(spawned.map_err(|e| DataFusionError::External(Box::new(e)))?);
        }
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(h.join().map_err(|_| DataFusionError::Internal("a planning thread panicked".into()))??);
        }
        Ok(out)
    })
}

/// A rule's condition, over the columns it reads (`columns`, indices into the evaluation schema).
struct Condition {
    physical: Arc<dyn PhysicalExpr>,
    columns: Vec<usize>,
    schema: SchemaRef,
}

/// `column ~ 'pattern'` with the pattern compiled once, not at each evaluation (the engine's
/// regex match compiles its pattern for every batch it is given).
fn precompiled_regexes(e: Expr) -> Result<Expr, DataFusionError> {
    use datafusion::logical_expr::{BinaryExpr, ColumnarValue, Operator, Volatility, create_udf};
    Ok(e.transform_up(|e| {
        let Expr::BinaryExpr(BinaryExpr { left, op: Operator::RegexMatch, right }) = &e else { return Ok(Transformed::no(e)) };
        let Expr::Literal(ScalarValue::Utf8(Some(pattern)), _) = right.as_ref() else { return Ok(Transformed::no(e)) };
        let re = regex::Regex::new(pattern).map_err(|err| DataFusionError::External(Box::new(err)))?;
        let udf = create_udf(
            "regexp_is_match",
            vec![DataType::Utf8],
            DataType::Boolean,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let text = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
                let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                let out: BooleanArray = text.iter().map(|v| v.map(|s| re.is_match(s))).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        );
        Ok(Transformed::yes(udf.call(vec![left.as_ref().clone()])))
    })?
    .data)
}

/// What every partition's task reads.
struct Shared {
    ids: Vec<String>,
    titles: Vec<String>,
    levels: Vec<String>,
    tags: Vec<String>,
    conditions: Vec<Condition>,
    guards: Guards,
    lowered: Vec<String>,
    eval_schema: SchemaRef,
    schema: SchemaRef,
}

/// `CIMLAKE_SIGMA_GUARDS=off` runs every rule's condition on every row (to measure what the guards
/// save, and to check they lose nothing).
pub const GUARDS_ENV: &str = "CIMLAKE_SIGMA_GUARDS";

/// Every rule's guard texts, one automaton per column; and the rules without a guard.
struct Guards {
    /// Per guarded column: its index among the lowered columns, the automaton of its texts, and
    /// for each text the clauses it satisfies (indices into the flat list of every rule's clauses).
    columns: Vec<(usize, AhoCorasick, Vec<Vec<u32>>)>,
    /// Per rule: its clauses' range in the flat list; `None` for a rule that runs on every row.
    clauses: Vec<Option<std::ops::Range<usize>>>,
    /// How many clauses all rules have.
    total: usize,
}

impl Guards {
    fn new(rules: &[(&Detection, &SigmaInfo)], lowered: &[String]) -> Result<Guards, DataFusionError> {
        let mut texts: BTreeMap<&str, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
        let mut clauses = Vec::with_capacity(rules.len());
        let mut total = 0;
        let off = std::env::var(GUARDS_ENV).is_ok_and(|v| v == "off");
        for (_, info) in rules {
            match info.guard.as_ref().filter(|_| !off) {
                Some(g) => {
                    clauses.push(Some(total..total + g.len()));
                    for clause in g {
                        for (c, t) in clause {
                            texts.entry(c).or_default().entry(t.as_str()).or_default().push(total as u32);
                        }
                        total += 1;
                    }
                }
                None => clauses.push(None),
            }
        }
        let mut columns = Vec::new();
        for (c, by_text) in texts {
            let at = lowered.iter().position(|l| l == c).expect("guarded columns are lowered");
            let patterns: Vec<&str> = by_text.keys().copied().collect();
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&patterns)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            columns.push((at, ac, by_text.into_values().collect()));
        }
        Ok(Guards { columns, clauses, total })
    }

    /// For each rule, the rows of the batch where every clause of its guard holds, in order
    /// (`None`: every row).
    fn candidates(&self, lowered: &[ArrayRef], rows: usize) -> Vec<Option<Vec<u32>>> {
        // The rows where each clause holds.
        let mut holds: Vec<Vec<u32>> = vec![Vec::new(); self.total];
        for (at, ac, by_pattern) in &self.columns {
            let text = lowered[*at].as_any().downcast_ref::<StringArray>().expect("lowered columns are text");
            for row in 0..rows {
                if text.is_null(row) {
                    continue;
                }
                for m in ac.find_overlapping_iter(text.value(row)) {
                    for &clause in &by_pattern[m.pattern().as_usize()] {
                        let rows = &mut holds[clause as usize];
                        if rows.last() != Some(&(row as u32)) {
                            rows.push(row as u32);
                        }
                    }
                }
            }
        }
        // A clause with texts in several columns saw the rows column by column.
        for rows in &mut holds {
            if !rows.is_sorted() {
                rows.sort_unstable();
                rows.dedup();
            }
        }
        self.clauses
            .iter()
            .map(|range| {
                let range = range.clone()?;
                let mut lists: Vec<&Vec<u32>> = holds[range].iter().collect();
                lists.sort_by_key(|l| l.len());
                let (first, rest) = lists.split_first().expect("a guard has a clause");
                Some(first.iter().copied().filter(|r| rest.iter().all(|l| l.binary_search(r).is_ok())).collect())
            })
            .collect()
    }
}

impl Shared {
    /// The (row, rule) matches of one scanned batch, as output rows.
    fn matches(&self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, DataFusionError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut lowered = Vec::with_capacity(self.lowered.len());
        for c in &self.lowered {
            let text = arrow::compute::cast(batch.column(batch.schema().index_of(c)?), &DataType::Utf8)?;
            lowered.push(lower(text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8")));
        }
        columns.extend(lowered.iter().cloned());
        let eval = RecordBatch::try_new(self.eval_schema.clone(), columns)?;
        let candidates = self.guards.candidates(&lowered, eval.num_rows());
        let shown: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .take(self.schema.fields().len() - RULE_COLUMNS.len())
            .map(|f| {
                batch
                    .schema()
                    .index_of(f.name())
                    .map(|i| batch.column(i).clone())
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for (i, (condition, candidates)) in self.conditions.iter().zip(candidates).enumerate() {
            // The rows the guard lets through (all, for a rule without one), of the columns the
            // condition reads.
            let (input, at) = match candidates {
                None => {
                    let cols = condition.columns.iter().map(|&c| eval.column(c).clone()).collect();
                    (RecordBatch::try_new_with_options(condition.schema.clone(), cols, &RecordBatchOptions::new().with_row_count(Some(eval.num_rows())))?, None)
                }
                Some(rows) if rows.is_empty() => continue,
                Some(rows) => {
                    let rows = UInt32Array::from(rows);
                    let cols = condition.columns.iter().map(|&c| arrow::compute::take(eval.column(c).as_ref(), &rows, None)).collect::<Result<Vec<_>, _>>()?;
                    (RecordBatch::try_new_with_options(condition.schema.clone(), cols, &RecordBatchOptions::new().with_row_count(Some(rows.len())))?, Some(rows))
                }
            };
            let hit = condition.physical.evaluate(&input)?.into_array(input.num_rows())?;
            let hit = hit.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
                DataFusionError::Internal(format!("{}: the condition is not boolean", self.ids[i]))
            })?;
            if hit.true_count() == 0 {
                continue;
            }
            let rows: UInt32Array = (0..hit.len() as u32)
                .filter(|&r| hit.is_valid(r as usize) && hit.value(r as usize))
                .map(|r| at.as_ref().map_or(r, |at| at.value(r as usize)))
                .collect();
            let n = rows.len();
            let mut cols: Vec<ArrayRef> = shown
                .iter()
                .map(|c| arrow::compute::take(c.as_ref(), &rows, None))
                .collect::<Result<_, _>>()?;
            for v in [
                &self.ids[i],
                &self.titles[i],
                &self.levels[i],
                &self.tags[i],
            ] {
                cols.push(Arc::new(StringArray::from(vec![v.as_str(); n])));
            }
            out.push(RecordBatch::try_new(self.schema.clone(), cols)?);
        }
        Ok(out)
    }
}

/// The lower-case form of a text column, in one buffer (ASCII lowered in place).
fn lower(text: &StringArray) -> ArrayRef {
    let mut out = arrow::array::StringBuilder::with_capacity(text.len(), text.value_data().len());
    let mut buf = String::new();
    for v in text.iter() {
        match v {
            None => out.append_null(),
            Some(s) if s.is_ascii() => {
                buf.clear();
                buf.push_str(s);
                buf.make_ascii_lowercase();
                out.append_value(&buf);
            }
            Some(s) => out.append_value(s.to_lowercase()),
        }
    }
    Arc::new(out.finish())
}

/// The output schema: `_time`, the shown columns and provenance, then the rule's id, title, level
/// and tags: the columns of a single rule's SQL.
fn output_schema(source: Logsource) -> SchemaRef {
    let table = source.table().schema();
    let mut fields: Vec<Field> = super::shown_columns(source)
        .into_iter()
        .map(|c| table.field_with_name(c).expect("shown").clone())
        .collect();
    fields.extend(
        RULE_COLUMNS
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, false)),
    );
    Arc::new(Schema::new(fields))
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
