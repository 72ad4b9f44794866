//! Many Sigma rules as a plan node, so that on a cluster the executors match the rows they scan
//! and only the matches travel back to the client.
//!
//! ```text
//! client:     Extension(SigmaMatch { rules }) over the scan      → scheduler (logical plan)
//! scheduler:  SigmaMatchExec over the scan's partitions          → executors (one task each)
//! executor:   each batch of its partition → the (row, rule) matches ([`super::matcher`])
//! ```
//!
//! The node carries the rules as JSON ([`RuleSet`]: each rule's compiled condition and guard), so
//! executors need no rule files; cimlake's codecs ([`crate::engine::codec`]) write and read it. An
//! executor prepares a rule set (its programs and guard automata) once, and its tasks reuse it. In
//! process, [`super::many`] drives the same matcher over the scan's partitions itself.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

use super::matcher::{RuleSet, Shared, output_schema};

/// A rule set as a node carries it: the rules, their encoding, and the matcher built from them on
/// first use.
pub struct Prepared {
    set: RuleSet,
    json: Vec<u8>,
    matcher: OnceLock<std::result::Result<Arc<Shared>, String>>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} rules", self.set.rules.len(), self.set.source.category())
    }
}

impl Prepared {
    fn new(set: RuleSet) -> Result<Prepared> {
        let json = serde_json::to_vec(&set).map_err(|e| DataFusionError::Internal(format!("writing the Sigma rules into a plan: {e}")))?;
        Ok(Prepared { set, json, matcher: OnceLock::new() })
    }

    /// The matcher: the rules' programs and guards, built once.
    fn matcher(&self) -> Result<Arc<Shared>> {
        self.matcher
            .get_or_init(|| Shared::new(&self.set, None).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| DataFusionError::Plan(format!("the Sigma rules of this plan: {e}")))
    }

    /// The encoding a plan carries.
    pub fn encode(&self) -> &[u8] {
        &self.json
    }

    /// The rule set of an encoding. The same bytes give the same `Prepared` (the last few are
    /// kept), so an executor builds a rule set's matcher once for all its tasks.
    pub fn decode(json: &[u8]) -> Result<Arc<Prepared>> {
        static RECENT: Mutex<Vec<Arc<Prepared>>> = Mutex::new(Vec::new());
        const KEEP: usize = 4;
        let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = recent.iter().find(|p| p.json == json) {
            return Ok(p.clone());
        }
        let set: RuleSet = serde_json::from_slice(json).map_err(|e| DataFusionError::Plan(format!("the Sigma rules in a cluster plan do not read: {e}")))?;
        let prepared = Arc::new(Prepared { set, json: json.to_vec(), matcher: OnceLock::new() });
        if recent.len() == KEEP {
            recent.remove(0);
        }
        recent.push(prepared.clone());
        Ok(prepared)
    }
}

/// `set`'s rules over `scan` (which yields `set.names`, in that order), as a logical plan.
pub fn plan(scan: LogicalPlan, set: RuleSet) -> Result<LogicalPlan> {
    Ok(LogicalPlan::Extension(Extension { node: Arc::new(SigmaMatch::new(scan, Arc::new(Prepared::new(set)?))?) }))
}

/// Whether the input yields the columns the rules read, in their order: the matcher reads them by
/// position. A plan that says otherwise (another version, a crafted one) is refused.
fn check_input<'a>(input: impl Iterator<Item = &'a str>, rules: &Prepared) -> Result<()> {
    let names: Vec<&str> = input.collect();
    if names != rules.set.names.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(DataFusionError::Plan(format!("the Sigma rules read {:?}, but their scan yields {names:?}", rules.set.names)));
    }
    Ok(())
}

/// The logical node: the rules over their scan.
#[derive(Debug, Clone)]
pub struct SigmaMatch {
    input: LogicalPlan,
    rules: Arc<Prepared>,
    schema: DFSchemaRef,
}

impl SigmaMatch {
    pub fn new(input: LogicalPlan, rules: Arc<Prepared>) -> Result<SigmaMatch> {
        check_input(input.schema().fields().iter().map(|f| f.name().as_str()), &rules)?;
        let schema = Arc::new(DFSchema::try_from(output_schema(rules.set.source).as_ref().clone())?);
        Ok(SigmaMatch { input, rules, schema })
    }

    pub fn rules(&self) -> &Arc<Prepared> {
        &self.rules
    }
}

impl PartialEq for SigmaMatch {
    fn eq(&self, other: &Self) -> bool {
        self.input == other.input && self.rules.json == other.rules.json
    }
}

impl Eq for SigmaMatch {}

impl Hash for SigmaMatch {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.input.hash(state);
        self.rules.json.hash(state);
    }
}

impl PartialOrd for SigmaMatch {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self.rules.json == other.rules.json).then(|| self.input.partial_cmp(&other.input)).flatten()
    }
}

impl UserDefinedLogicalNodeCore for SigmaMatch {
    fn name(&self) -> &str {
        "SigmaMatch"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SigmaMatch: {:?}", self.rules)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        let input = inputs.pop().filter(|_| inputs.is_empty()).ok_or_else(|| DataFusionError::Internal("SigmaMatch has one input".into()))?;
        SigmaMatch::new(input, self.rules.clone())
    }
}

/// Plans [`SigmaMatch`] as [`SigmaMatchExec`] (a planner of the scheduler's, and of any session
/// that runs the node itself).
#[derive(Debug, Default)]
pub struct SigmaPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for SigmaPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<SigmaMatch>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return Err(DataFusionError::Internal("SigmaMatch has one input".into()));
        };
        Ok(Some(Arc::new(SigmaMatchExec::try_new(input.clone(), node.rules.clone())?)))
    }
}

/// The execution plan: each partition of the scan, matched batch by batch.
#[derive(Debug)]
pub struct SigmaMatchExec {
    input: Arc<dyn ExecutionPlan>,
    rules: Arc<Prepared>,
    properties: Arc<PlanProperties>,
}

impl SigmaMatchExec {
    pub fn try_new(input: Arc<dyn ExecutionPlan>, rules: Arc<Prepared>) -> Result<SigmaMatchExec> {
        check_input(input.schema().fields().iter().map(|f| f.name().as_str()), &rules)?;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output_schema(rules.set.source)),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Ok(SigmaMatchExec { input, rules, properties: Arc::new(properties) })
    }

    pub fn rules(&self) -> &Arc<Prepared> {
        &self.rules
    }
}

impl DisplayAs for SigmaMatchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SigmaMatchExec: {:?}", self.rules)
    }
}

impl ExecutionPlan for SigmaMatchExec {
    fn name(&self) -> &str {
        "SigmaMatchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.pop().filter(|_| children.is_empty()).ok_or_else(|| DataFusionError::Internal("SigmaMatchExec has one input".into()))?;
        Ok(Arc::new(SigmaMatchExec::try_new(input, self.rules.clone())?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let matcher = self.rules.matcher()?;
        let input = self.input.execute(partition, context)?;
        let schema = matcher.schema().clone();
        let mut holds = matcher.holds();
        let out_schema = schema.clone();
        let matches = input
            .map(move |batch| {
                let found = matcher.matches(&batch?, &mut holds)?;
                Ok(arrow::compute::concat_batches(&out_schema, &found)?)
            })
            .filter(|b: &Result<arrow::record_batch::RecordBatch>| std::future::ready(b.as_ref().map_or(true, |b| b.num_rows() > 0)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, matches)))
    }
}

/// How the node travels in a cluster plan: its rule set's JSON ([`crate::engine::codec`] frames it).
#[derive(Debug, Default)]
pub struct Codec;

impl crate::engine::codec::NodeCodec for Codec {
    fn encode_logical(&self, node: &dyn UserDefinedLogicalNode, buf: &mut Vec<u8>) -> bool {
        let Some(node) = node.as_any().downcast_ref::<SigmaMatch>() else {
            return false;
        };
        buf.extend_from_slice(node.rules.encode());
        true
    }

    fn decode_logical(&self, buf: &[u8], inputs: &[LogicalPlan]) -> Result<Arc<dyn UserDefinedLogicalNode>> {
        let [input] = inputs else {
            return Err(DataFusionError::Internal("SigmaMatch has one input".into()));
        };
        Ok(Arc::new(SigmaMatch::new(input.clone(), Prepared::decode(buf)?)?))
    }

    fn encode_exec(&self, plan: &dyn ExecutionPlan, buf: &mut Vec<u8>) -> bool {
        let Some(plan) = plan.downcast_ref::<SigmaMatchExec>() else {
            return false;
        };
        buf.extend_from_slice(plan.rules.encode());
        true
    }

    fn decode_exec(&self, buf: &[u8], inputs: &[Arc<dyn ExecutionPlan>]) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = inputs else {
            return Err(DataFusionError::Internal("SigmaMatchExec has one input".into()));
        };
        Ok(Arc::new(SigmaMatchExec::try_new(input.clone(), Prepared::decode(buf)?)?))
    }

    fn planner(&self) -> Arc<dyn ExtensionPlanner + Send + Sync> {
        Arc::new(SigmaPlanner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, AsArray, Int64Array, StringArray, new_null_array};
    use arrow::datatypes::Schema;
    use arrow::record_batch::RecordBatch;
    use datafusion::execution::TaskContext;
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion_proto::physical_plan::{DefaultPhysicalProtoConverter, PhysicalExtensionCodec};
    use futures::TryStreamExt;

    use super::super::fields::Logsource;
    use super::super::matcher::{Rule, RuleSet};
    use super::*;
    use crate::engine::codec::LakePhysicalCodec;

    /// Rules whose conditions use every kind of test the compiler makes.
    const RULES: &[&str] = &[
        "  selection:\n    Image|endswith: '\\certutil.exe'\n    CommandLine|contains|windash: ' -p '\n  condition: selection",
        "  a:\n    CommandLine|re: '(?i)invoke-[a-z]+'\n  b:\n    ParentImage|startswith: 'C:\\Windows\\'\n  condition: a and not b",
        "  a:\n    ProcessId|gt: 100\n  b:\n    CommandLine: null\n  c:\n    Image|fieldref: ParentImage\n  condition: 1 of them",
        "  a:\n    User|cased: 'SYSTEM'\n  b:\n    CommandLine|contains|all:\n      - 'a*b'\n      - 'c?d'\n  condition: a or b",
    ];

    fn rule_set() -> RuleSet {
        let mut rules = Vec::new();
        for (i, detection) in RULES.iter().enumerate() {
            let yaml = format!(
                "title: rule {i}\nid: 00000000-0000-0000-0000-00000000000{i}\nlevel: high\ntags: [attack.t1218]\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n{detection}\n"
            );
            let loaded = super::super::load("t.yml", &yaml, "test", &super::super::default_schedule());
            assert!(loaded.rejected.is_empty(), "{yaml}");
            let d = loaded.detections.into_iter().next().unwrap();
            rules.push(Rule::of(&d, d.sigma.as_deref().unwrap()).unwrap());
        }
        let mut names: Vec<String> = super::super::shown_columns(Logsource::ProcessCreation).into_iter().map(str::to_string).collect();
        for r in &rules {
            for c in r.cond.columns().into_iter().chain(r.guard.iter().flatten().flatten().map(|(c, _)| c.as_str())) {
                if !names.iter().any(|n| n == c) {
                    names.push(c.to_string());
                }
            }
        }
        RuleSet { source: Logsource::ProcessCreation, names, rules }
    }

    /// Three rows over `set`'s columns: certutil with a password (rule 0), an Invoke- command line
    /// (rule 1), and a process id over 100 (rule 2).
    fn batch(set: &RuleSet) -> RecordBatch {
        let table = Logsource::ProcessCreation.table().schema();
        let fields: Vec<_> = set.names.iter().map(|n| table.field_with_name(n).unwrap().clone()).collect();
        let columns: Vec<ArrayRef> = fields
            .iter()
            .map(|f| -> ArrayRef {
                let text = |v: [Option<&str>; 3]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
                match f.name().as_str() {
                    "process_path" => text([Some("C:\\x\\certutil.exe"), Some("C:\\p\\powershell.exe"), Some("C:\\a.exe")]),
                    "parent_process_path" => text([Some("C:\\p.exe"), Some("D:\\tools\\x.exe"), Some("C:\\b.exe")]),
                    "process" => text([Some("certutil /p secret"), Some("powershell Invoke-Thing"), Some("a.exe")]),
                    "user" => text([Some("alice"), Some("bob"), Some("system")]),
                    "process_id" => Arc::new(Int64Array::from(vec![1, 2, 500])),
                    "source_record" | "_time" => Arc::new(Int64Array::from(vec![1, 2, 3])),
                    _ if f.is_nullable() => new_null_array(f.data_type(), 3),
                    _ if f.data_type() == &arrow::datatypes::DataType::Utf8 => text([Some("x"); 3]),
                    _ => Arc::new(Int64Array::from(vec![1, 2, 3])),
                }
            })
            .collect();
        let columns = columns.into_iter().zip(&fields).map(|(c, f)| arrow::compute::cast(&c, f.data_type()).unwrap()).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields.into_iter().map(|f| f.with_nullable(true)).collect::<Vec<_>>())), columns).unwrap()
    }

    fn codec() -> LakePhysicalCodec {
        crate::engine::codec::set_nodes(Arc::new(Codec));
        LakePhysicalCodec::default()
    }

    #[test]
    fn a_rule_set_reads_back_as_written() {
        let set = rule_set();
        let prepared = Prepared::new(set.clone()).unwrap();
        let back = Prepared::decode(prepared.encode()).unwrap();
        assert_eq!(back.set, set);
        // The same bytes give the same prepared set: an executor's tasks share one matcher.
        assert!(Arc::ptr_eq(&back, &Prepared::decode(prepared.encode()).unwrap()));
    }

    #[tokio::test]
    async fn the_execution_plan_travels_to_an_executor_and_matches_there() {
        let set = rule_set();
        let b = batch(&set);
        let scan = datafusion::datasource::memory::MemorySourceConfig::try_new_exec(&[vec![b.clone()]], b.schema(), None).unwrap();
        let exec: Arc<dyn ExecutionPlan> = Arc::new(SigmaMatchExec::try_new(scan.clone(), Arc::new(Prepared::new(set.clone()).unwrap())).unwrap());
        let codec = codec();
        let mut buf = Vec::new();
        codec.try_encode(exec.clone(), &mut buf, &DefaultPhysicalProtoConverter {}).unwrap();
        let back = codec.try_decode(&buf, &[scan], &TaskContext::default(), &DefaultPhysicalProtoConverter {}).unwrap();
        assert_eq!(back.downcast_ref::<SigmaMatchExec>().expect("a SigmaMatchExec").rules().set, set);
        let out: Vec<RecordBatch> = back.execute(0, Arc::new(TaskContext::default())).unwrap().try_collect().await.unwrap();
        let mut found: Vec<(String, i64)> = Vec::new();
        for b in &out {
            let ids = b.column_by_name("rule_id").unwrap().as_string::<i32>();
            let records = arrow::compute::cast(b.column_by_name("source_record").unwrap(), &arrow::datatypes::DataType::Int64).unwrap();
            let records = records.as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                found.push((ids.value(i).to_string(), records.value(i)));
            }
        }
        found.sort();
        let id = |i: usize| set.rules[i].id.clone();
        // Row 3's process id is over 100 (rule 2); its user is "system", which the cased test of
        // rule 3 does not match.
        assert_eq!(found, vec![(id(0), 1), (id(1), 2), (id(2), 3)], "{set:#?}");
    }

    #[test]
    fn a_crafted_rule_set_is_an_error_not_a_panic() {
        let codec = codec();
        let set = rule_set();
        let json = String::from_utf8(Prepared::new(set.clone()).unwrap().encode().to_vec()).unwrap();
        let scan: Arc<dyn ExecutionPlan> = Arc::new(datafusion::physical_plan::empty::EmptyExec::new(batch(&set).schema()));
        let decode = |framed: Vec<u8>| codec.try_decode(&framed, std::slice::from_ref(&scan), &TaskContext::default(), &DefaultPhysicalProtoConverter {}).map(|_| ()).unwrap_err().to_string();
        let ours = |body: &str| [b"cimlake2X".as_slice(), body.as_bytes()].concat();
        // A column no log source maps a field to.
        assert!(json.contains(r#"["process_path","Text"]"#), "{json}");
        let err = decode(ours(&json.replacen(r#"["process_path","Text"]"#, r#"["/etc/passwd","Text"]"#, 1)));
        assert!(err.contains("\"/etc/passwd\"") && err.contains("not a column"), "{err}");
        // Rules whose columns are not the scan's (the matcher reads them by position).
        let mut other = set.clone();
        other.names.swap(0, 1);
        let err = decode(ours(std::str::from_utf8(Prepared::new(other).unwrap().encode()).unwrap()));
        assert!(err.contains("but their scan yields"), "{err}");
        // Cut short, another kind, another version.
        assert!(decode(ours(&json[..json.len() / 2])).contains("do not read"));
        assert!(decode([b"cimlake2Q".as_slice(), json.as_bytes()].concat()).contains("not one cimlake writes"));
        assert!(decode([b"cimlake1X".as_slice(), json.as_bytes()].concat()).contains("another version"));
        // A guard on a column the scan does not read: refused when the matcher is built.
        let mut bad = set;
        bad.rules[0].guard = Some(vec![vec![("dest".into(), "x".into())]]);
        bad.names.retain(|n| n != "dest");
        let prepared = Prepared::new(bad).unwrap();
        let err = prepared.matcher().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("\"dest\", which is not scanned"), "{err}");
    }
}
