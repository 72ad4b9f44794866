//! The matcher of many Sigma rules of one log source: each batch of their scan → the (row, rule)
//! pairs where a rule's condition holds. Per batch, one Aho-Corasick pass per guarded column finds
//! every rule's guard texts ([`super::guard`]), giving each rule the rows where all its guard's
//! clauses hold; each rule's condition ([`super::eval`]) then runs on those rows only.
//!
//! [`super::many`] drives it over the partitions of a scan in process; [`super::node`] carries a
//! [`RuleSet`] in a cluster plan, and each executor drives it over the partitions it scans.

use std::collections::BTreeMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Serialize};

use super::eval::{Columns, Program, Reads, Scratch, lower};
use super::fields::Logsource;
use super::{RULE_COLUMNS, SigmaInfo};
use crate::detect::Detection;

/// One single-event rule as the evaluator runs it: what it shows with a match, its condition and
/// its guard. Owned, so that a cluster plan can carry it ([`super::node`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub level: String,
    /// The tags, comma-separated.
    pub tags: String,
    pub cond: super::cond::Cond,
    /// Clauses of (column, text) that must all hold; `None`: the rule runs on every row.
    pub guard: Option<Vec<Vec<(String, String)>>>,
}

impl Rule {
    /// The rule of a single-event Sigma detection.
    pub fn of(d: &Detection, info: &SigmaInfo) -> Result<Rule, DataFusionError> {
        Ok(Rule {
            id: d.name.clone(),
            title: d.meta.name.clone(),
            level: info.level.clone(),
            tags: info.tags.join(","),
            cond: info.cond.clone().ok_or_else(|| DataFusionError::Internal(format!("{}: no compiled condition", d.name)))?,
            guard: info.guard.as_ref().map(|g| g.iter().map(|clause| clause.iter().map(|(c, t)| (c.to_string(), t.clone())).collect()).collect()),
        })
    }
}

/// The rules of one log source over the scanned columns `names` (the shown columns first): all a
/// matcher needs besides the rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    pub source: Logsource,
    pub names: Vec<String>,
    pub rules: Vec<Rule>,
}

/// What every partition's matcher reads.
pub(super) struct Shared {
    ids: Vec<String>,
    titles: Vec<String>,
    levels: Vec<String>,
    tags: Vec<String>,
    programs: Vec<Program>,
    /// Per rule: the guarded columns (indices into the guards' columns) its answers are
    /// remembered by, when it reads only such columns and at most [`KEY`] of them.
    keys: Vec<Option<Vec<usize>>>,
    /// `CIMLAKE_SIGMA_EVALUATOR=datafusion`: each rule's SQL condition as the engine plans it.
    reference: Option<Vec<Arc<dyn PhysicalExpr>>>,
    guards: Guards,
    reads: Vec<Reads>,
    schema: SchemaRef,
}

/// Each rule's condition of `set` compiled over its scanned columns, and what the programs read of
/// each column; an error names the rule whose condition does not compile there.
pub(super) fn programs(set: &RuleSet) -> Result<(Vec<Program>, Vec<Reads>), DataFusionError> {
    let mut reads = vec![Reads::default(); set.names.len()];
    let programs = set
        .rules
        .iter()
        .map(|r| Program::new(&r.cond, &set.names, &mut reads).map_err(|e| DataFusionError::Plan(format!("{}: {e}", r.id))))
        .collect::<Result<_, _>>()?;
    Ok((programs, reads))
}

impl Shared {
    /// The matcher of `set`: each rule's program and guard over the scanned columns.
    pub(super) fn new(set: &RuleSet, reference: Option<Vec<Arc<dyn PhysicalExpr>>>) -> Result<Shared, DataFusionError> {
        let (programs, mut reads) = programs(set)?;
        let reads_of: Vec<Vec<usize>> = set.rules.iter().map(|r| r.cond.columns().iter().filter_map(|c| set.names.iter().position(|n| n == c)).collect()).collect();
        let guards = Guards::new(&set.rules, &set.names, &mut reads)?;
        // A rule whose columns are all guarded ones (whose values get ids per batch) remembers
        // its answer for each combination of their values.
        let keys = reads_of
            .iter()
            .map(|cols| {
                let at: Vec<usize> = cols.iter().filter_map(|c| guards.columns.iter().position(|(g, _, _)| g == c)).collect();
                (at.len() == cols.len() && at.len() <= KEY).then_some(at)
            })
            .collect();
        Ok(Shared {
            ids: set.rules.iter().map(|r| r.id.clone()).collect(),
            titles: set.rules.iter().map(|r| r.title.clone()).collect(),
            levels: set.rules.iter().map(|r| r.level.clone()).collect(),
            tags: set.rules.iter().map(|r| r.tags.clone()).collect(),
            guards,
            keys,
            programs,
            reference,
            reads,
            schema: output_schema(set.source),
        })
    }

    /// A buffer of rows per guard clause, for [`Shared::matches`] to reuse from batch to batch.
    pub(super) fn holds(&self) -> Vec<Vec<u32>> {
        vec![Vec::new(); self.guards.total]
    }

    pub(super) fn schema(&self) -> &SchemaRef {
        &self.schema
    }
}

/// `CIMLAKE_SIGMA_GUARDS=off` runs every rule's condition on every row (to measure what the guards
/// save, and to check they lose nothing).
pub const GUARDS_ENV: &str = "CIMLAKE_SIGMA_GUARDS";

/// Row numbers of a batch (or, per row, its value's number).
type Rows = Vec<u32>;

/// The most columns a rule may read for its answers to be remembered by their values.
const KEY: usize = 4;

/// The number of a null value among a column's values.
const NULL_ID: u32 = u32::MAX;

/// Every rule's guard texts, one automaton per column; and the rules without a guard.
struct Guards {
    /// Per guarded column: its index among the scanned columns, the automaton of its texts, and
    /// for each text the clauses it satisfies (indices into the flat list of every rule's clauses).
    columns: Vec<(usize, AhoCorasick, Vec<Vec<u32>>)>,
    /// Per rule: its clauses' range in the flat list; `None` for a rule that runs on every row.
    clauses: Vec<Option<std::ops::Range<usize>>>,
    /// How many clauses all rules have.
    total: usize,
}

/// The automaton of one column's guard texts. The texts are lower case: ASCII letters match either
/// case, and a value with other characters is lowered before the search. No prefilter: in these
/// columns (hashes, command lines) the bytes it looks for are everywhere, and without it the
/// search is several times faster. (A DFA instead of the default automaton changes nothing.)
fn automaton<'t>(texts: impl Iterator<Item = &'t str>) -> Result<AhoCorasick, DataFusionError> {
    let patterns: Vec<&str> = texts.collect();
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .ascii_case_insensitive(true)
        .prefilter(false)
        .build(&patterns)
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

impl Guards {
    /// The guards of `rules` over the scanned columns `names` (which they read as text).
    fn new(rules: &[Rule], names: &[String], reads: &mut [Reads]) -> Result<Guards, DataFusionError> {
        let mut texts: BTreeMap<&str, BTreeMap<&str, Vec<u32>>> = BTreeMap::new();
        let mut clauses = Vec::with_capacity(rules.len());
        let mut total = 0;
        let off = std::env::var(GUARDS_ENV).is_ok_and(|v| v == "off");
        for rule in rules {
            match rule.guard.as_ref().filter(|_| !off) {
                Some(g) => {
                    clauses.push(Some(total..total + g.len()));
                    for clause in g {
                        for (c, t) in clause {
                            texts.entry(c.as_str()).or_default().entry(t.as_str()).or_default().push(total as u32);
                        }
                        total += 1;
                    }
                }
                None => clauses.push(None),
            }
        }
        let texts: Vec<(usize, BTreeMap<&str, Vec<u32>>)> = texts
            .into_iter()
            .map(|(c, by_text)| {
                let at = names.iter().position(|l| l == c).ok_or_else(|| DataFusionError::Plan(format!("a guard reads {c:?}, which is not scanned")))?;
                reads[at].text = true;
                Ok((at, by_text))
            })
            .collect::<Result<_, DataFusionError>>()?;
        // The automata are built side by side, one thread per column.
        let automata: Vec<AhoCorasick> = std::thread::scope(|scope| {
            let handles: Vec<_> = texts.iter().map(|(_, by_text)| scope.spawn(|| automaton(by_text.keys().copied()))).collect();
            handles.into_iter().map(|h| h.join().map_err(|_| DataFusionError::Internal("building a guard automaton panicked".into()))?).collect::<Result<_, _>>()
        })?;
        let columns = texts
            .into_iter()
            .zip(automata)
            .map(|((at, by_text), ac)| (at, ac, by_text.into_values().collect()))
            .collect();
        Ok(Guards { columns, clauses, total })
    }

    /// For each rule, the rows of the batch where every clause of its guard holds, in order
    /// (`None`: every row); and for each guarded column, each row's value as a number (the same
    /// number for the same value, [`NULL_ID`] for none), unless its values are mostly distinct.
    fn candidates(&self, cols: &Columns, rows: usize, holds: &mut [Vec<u32>]) -> (Vec<Option<Rows>>, Vec<Option<Rows>>) {
        // The rows where each clause holds.
        holds.iter_mut().for_each(Vec::clear);
        let mut ids = Vec::with_capacity(self.columns.len());
        for (at, ac, by_pattern) in &self.columns {
            // Values repeat (the same image, the same command line): each distinct value of the
            // batch is searched once and numbered, and the clauses it satisfies kept in `found`.
            let mut seen: datafusion::common::HashMap<&str, (u32, u32, u32)> = datafusion::common::HashMap::new();
            let mut found: Vec<u32> = Vec::new();
            let mut id = Some(Vec::with_capacity(rows));
            let mut clauses: Vec<u32> = Vec::new();
            let search = |value: &str, clauses: &mut Vec<u32>| {
                clauses.clear();
                let lowered;
                let text = if value.is_ascii() {
                    value
                } else {
                    lowered = lower(value);
                    lowered.as_str()
                };
                clauses.extend(ac.find_overlapping_iter(text).flat_map(|m| by_pattern[m.pattern().as_usize()].iter().copied()));
                clauses.sort_unstable();
                clauses.dedup();
            };
            for row in 0..rows {
                let Some(value) = cols.text(*at, row) else {
                    if let Some(id) = &mut id {
                        id.push(NULL_ID);
                    }
                    continue;
                };
                let found_here: &[u32] = match &mut id {
                    // Mostly distinct values (hashes, GUIDs): searched one by one, not numbered.
                    Some(_) if row >= 1024 && seen.len() * 4 > row * 3 => {
                        id = None;
                        search(value, &mut clauses);
                        &clauses
                    }
                    None => {
                        search(value, &mut clauses);
                        &clauses
                    }
                    Some(id) => {
                        let distinct = seen.len() as u32;
                        let (distinct, start, end) = *seen.entry(value).or_insert_with(|| {
                            search(value, &mut clauses);
                            let start = found.len();
                            found.extend(&clauses);
                            (distinct, start as u32, found.len() as u32)
                        });
                        id.push(distinct);
                        &found[start as usize..end as usize]
                    }
                };
                for &clause in found_here {
                    let rows = &mut holds[clause as usize];
                    if rows.last() != Some(&(row as u32)) {
                        rows.push(row as u32);
                    }
                }
            }
            ids.push(id);
        }
        // A clause with texts in several columns saw the rows column by column: sorted runs,
        // which a stable sort merges.
        for rows in holds.iter_mut() {
            if !rows.is_sorted() {
                rows.sort();
                rows.dedup();
            }
        }
        let candidates = self.clauses
            .iter()
            .map(|range| {
                let range = range.clone()?;
                let mut lists: Vec<&Vec<u32>> = holds[range].iter().collect();
                lists.sort_by_key(|l| l.len());
                let (first, rest) = lists.split_first().expect("a guard has a clause");
                Some(first.iter().copied().filter(|r| rest.iter().all(|l| l.binary_search(r).is_ok())).collect())
            })
            .collect();
        (candidates, ids)
    }
}

impl Shared {
    /// The (row, rule) matches of one scanned batch, as output rows.
    pub(super) fn matches(&self, batch: &RecordBatch, holds: &mut [Vec<u32>]) -> Result<Vec<RecordBatch>, DataFusionError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let cols = Columns::new(batch, &self.reads)?;
        let (candidates, ids) = self.guards.candidates(&cols, batch.num_rows(), holds);
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
        let mut scratch = Scratch::default();
        // A rule's answer for each combination of its columns' value numbers in this batch.
        let mut answers: datafusion::common::HashMap<[u32; KEY], bool> = datafusion::common::HashMap::new();
        for (i, (program, candidates)) in self.programs.iter().zip(candidates).enumerate() {
            // The rows the guard lets through (all, for a rule without one) where the condition
            // holds.
            let rows: UInt32Array = match (&self.reference, candidates) {
                (Some(reference), _) => {
                    let hit = reference[i].evaluate(batch)?.into_array(batch.num_rows())?;
                    let hit = hit.as_boolean_opt().ok_or_else(|| DataFusionError::Internal(format!("{}: the condition is not boolean", self.ids[i])))?;
                    (0..hit.len() as u32).filter(|&r| hit.is_valid(r as usize) && hit.value(r as usize)).collect()
                }
                (None, candidates) => {
                    let rows: Box<dyn Iterator<Item = u32>> = match candidates {
                        None => Box::new(0..batch.num_rows() as u32),
                        Some(rows) => Box::new(rows.into_iter()),
                    };
                    match &self.keys[i] {
                        // The answer for each combination of the rule's values, found once.
                        Some(key) if key.iter().all(|&g| ids[g].is_some()) => {
                            let ids: Vec<&Vec<u32>> = key.iter().map(|&g| ids[g].as_ref().expect("numbered")).collect();
                            answers.clear();
                            rows.filter(|&r| {
                                let mut k = [NULL_ID; KEY];
                                for (slot, ids) in k.iter_mut().zip(&ids) {
                                    *slot = ids[r as usize];
                                }
                                *answers.entry(k).or_insert_with(|| program.matches(&cols, r as usize, &mut scratch))
                            })
                            .collect()
                        }
                        _ => rows.filter(|&r| program.matches(&cols, r as usize, &mut scratch)).collect(),
                    }
                }
            };
            if rows.is_empty() {
                continue;
            }
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

/// The output schema: `_time`, the shown columns and provenance, then the rule's id, title, level
/// and tags: the columns of a single rule's SQL.
pub(super) fn output_schema(source: Logsource) -> SchemaRef {
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

