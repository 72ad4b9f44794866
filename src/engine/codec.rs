//! [`LakeCodec`]: how the lake's own tables travel in a Ballista plan.
//!
//! A client sends the scheduler a logical plan. DataFusion's protobuf format carries standard
//! tables (a `ListingTable`, a view) by itself and hands any other table to an extension codec.
//! cimlake has two such tables:
//!
//! * [`LakeTable`] (the CIM tables, results, risk events, incidents, quarantine): its absolute lake
//!   root URL and committed file list, as JSON. The scheduler rebuilds the table and plans its scan
//!   there, so it reads only the files the client's commit log named: a commit published after
//!   the query started is not half-seen.
//! * `cimlake.runs`, a `MemTable`: its rows, as an Arrow IPC stream.
//!
//! Plan nodes of the layers above the engine (the Sigma rules' matcher) travel the same way, as
//! a logical node from the client to the scheduler and as an execution plan from the scheduler to
//! the executors ([`NodeCodec`], [`LakePhysicalCodec`]); the scheduler plans them with
//! [`NodePlanner`].
//!
//! Everything else goes to Ballista's own codec. The scheduler and the executors started by
//! `cimlake cluster` carry this codec; a stock Ballista scheduler does not, and refuses the plan
//! with "LogicalExtensionCodec is not provided".

use std::sync::{Arc, OnceLock};

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::SessionState;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{Extension, LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::lake::DataFile;
use crate::lake::table::LakeTable;

/// The start of an encoded table: cimlake's codec, its version, and which table follows. Another
/// version's plans are refused by name rather than misread.
const MAGIC: &[u8] = b"cimlake2";
const LAKE_TABLE: u8 = b'L';
const MEM_TABLE: u8 = b'M';
/// A [`NodeCodec`]'s node: a logical node, or its execution plan.
const NODE: u8 = b'N';
const NODE_EXEC: u8 = b'X';

/// A plan node of a layer above the engine that travels in a cluster plan: how to write it and
/// read it back, as a logical node and as its execution plan, and how to plan it.
pub trait NodeCodec: std::fmt::Debug + Send + Sync {
    /// Writes `node` if it is this codec's (`false`: it is not, and nothing was written).
    fn encode_logical(&self, node: &dyn UserDefinedLogicalNode, buf: &mut Vec<u8>) -> bool;
    fn decode_logical(&self, buf: &[u8], inputs: &[LogicalPlan]) -> Result<Arc<dyn UserDefinedLogicalNode>>;
    /// Writes `plan` if it is this codec's (`false`: it is not, and nothing was written).
    fn encode_exec(&self, plan: &dyn ExecutionPlan, buf: &mut Vec<u8>) -> bool;
    fn decode_exec(&self, buf: &[u8], inputs: &[Arc<dyn ExecutionPlan>]) -> Result<Arc<dyn ExecutionPlan>>;
    /// Plans the logical node as its execution plan.
    fn planner(&self) -> Arc<dyn ExtensionPlanner + Send + Sync>;
}

static NODES: OnceLock<Arc<dyn NodeCodec>> = OnceLock::new();

/// Sets the plan nodes this process's cluster plans can carry (once, at start-up: the command
/// line does it before any command runs). Later calls change nothing.
pub fn set_nodes(nodes: Arc<dyn NodeCodec>) {
    let _ = NODES.set(nodes);
}

fn nodes() -> Result<&'static Arc<dyn NodeCodec>> {
    NODES.get().ok_or_else(|| DataFusionError::Internal("no codec for cimlake's plan nodes in this process (engine::codec::set_nodes)".into()))
}

/// Reads a framed node: cimlake's magic, then `kind`. `None`: not cimlake's.
fn framed<'a>(buf: &'a [u8], kind: u8, what: &str) -> Result<Option<&'a [u8]>> {
    match buf.strip_prefix(MAGIC) {
        Some(ours) => match ours.split_first() {
            Some((k, rest)) if *k == kind => Ok(Some(rest)),
            _ => Err(DataFusionError::Plan(format!("{what} in a cluster plan: not one cimlake writes here"))),
        },
        None if buf.starts_with(b"cimlake") => {
            Err(DataFusionError::Plan(format!("{what} in a cluster plan: encoded by another version of cimlake: run the same version on clients, scheduler and executors")))
        }
        None => Ok(None),
    }
}

#[derive(Serialize, Deserialize)]
struct LakeTableProto {
    root: url::Url,
    files: Vec<DataFile>,
}

/// Ballista's logical codec, plus cimlake's tables.
#[derive(Debug, Default)]
pub struct LakeCodec {
    inner: BallistaLogicalExtensionCodec,
}

fn codec_err(table: &TableReference, what: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("table {table} in a cluster plan: {what}"))
}

impl LogicalExtensionCodec for LakeCodec {
    fn try_decode(&self, buf: &[u8], inputs: &[LogicalPlan], ctx: &TaskContext) -> Result<Extension> {
        match framed(buf, NODE, "a plan node")? {
            Some(rest) => Ok(Extension { node: nodes()?.decode_logical(rest, inputs)? }),
            None => self.inner.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(nodes) = NODES.get() {
            let mut ours = [MAGIC, &[NODE]].concat();
            if nodes.encode_logical(node.node.as_ref(), &mut ours) {
                buf.extend_from_slice(&ours);
                return Ok(());
            }
        }
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(ours) = buf.strip_prefix(MAGIC) else {
            if buf.starts_with(b"cimlake") {
                return Err(codec_err(table_ref, "encoded by another version of cimlake: run the same version on clients, scheduler and executors"));
            }
            return self.inner.try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        match ours.split_first() {
            Some((&LAKE_TABLE, rest)) => {
                let p: LakeTableProto = serde_json::from_slice(rest).map_err(|e| codec_err(table_ref, e))?;
                Ok(Arc::new(LakeTable::new(schema, p.root, p.files)))
            }
            Some((&MEM_TABLE, rest)) => {
                let reader = StreamReader::try_new(rest, None).map_err(|e| codec_err(table_ref, e))?;
                let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| codec_err(table_ref, e))?;
                Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
            }
            _ => Err(codec_err(table_ref, "unknown table kind")),
        }
    }

    fn try_encode_table_provider(&self, table_ref: &TableReference, node: Arc<dyn TableProvider>, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(t) = node.downcast_ref::<LakeTable>() {
            // The root is a URL every node resolves the same way: an object store's, or an
            // absolute path (the same on every node: shared storage).
            let proto = LakeTableProto { root: t.root().clone(), files: t.files().to_vec() };
            buf.extend_from_slice(MAGIC);
            buf.push(LAKE_TABLE);
            serde_json::to_writer(&mut *buf, &proto).map_err(|e| codec_err(table_ref, e))?;
            return Ok(());
        }
        if let Some(t) = node.downcast_ref::<MemTable>() {
            let mut batches = Vec::new();
            for partition in &t.batches {
                let guard = partition
                    .try_read()
                    .map_err(|_| codec_err(table_ref, "its rows are being written"))?;
                batches.extend(guard.iter().cloned());
            }
            buf.extend_from_slice(MAGIC);
            buf.push(MEM_TABLE);
            let mut writer = StreamWriter::try_new(&mut *buf, &t.schema()).map_err(|e| codec_err(table_ref, e))?;
            for b in &batches {
                writer.write(b).map_err(|e| codec_err(table_ref, e))?;
            }
            writer.finish().map_err(|e| codec_err(table_ref, e))?;
            return Ok(());
        }
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(&self, buf: &[u8], ctx: &TaskContext) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(&self, buf: &mut Vec<u8>, node: Arc<dyn FileFormatFactory>) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

/// Ballista's physical codec, plus the execution plans of cimlake's plan nodes: what the scheduler
/// sends its executors.
#[derive(Debug, Default)]
pub struct LakePhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

impl PhysicalExtensionCodec for LakePhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match framed(buf, NODE_EXEC, "an execution plan")? {
            Some(rest) => nodes()?.decode_exec(rest, inputs),
            None => self.inner.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>, proto_converter: &dyn PhysicalProtoConverterExtension) -> Result<()> {
        if let Some(nodes) = NODES.get() {
            let mut ours = [MAGIC, &[NODE_EXEC]].concat();
            if nodes.encode_exec(node.as_ref(), &mut ours) {
                buf.extend_from_slice(&ours);
                return Ok(());
            }
        }
        self.inner.try_encode(node, buf, proto_converter)
    }
}

/// DataFusion's planner, plus cimlake's plan nodes: the scheduler's query planner.
#[derive(Debug, Default)]
pub struct NodePlanner;

#[async_trait::async_trait]
impl QueryPlanner for NodePlanner {
    async fn create_physical_plan(&self, logical_plan: &LogicalPlan, session: &dyn datafusion::catalog::Session) -> Result<Arc<dyn ExecutionPlan>> {
        let planners = NODES.get().map(|n| vec![n.planner()]).unwrap_or_default();
        DefaultPhysicalPlanner::with_extension_planners(planners).create_physical_plan(logical_plan, session).await
    }
}

/// `state` with [`NodePlanner`] as its query planner.
pub fn with_node_planner(state: SessionState) -> SessionState {
    datafusion::execution::SessionStateBuilder::new_from_existing(state).with_query_planner(Arc::new(NodePlanner)).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    fn round_trip(t: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        let codec = LakeCodec::default();
        let name = TableReference::partial("s", "t");
        let mut buf = Vec::new();
        codec.try_encode_table_provider(&name, t.clone(), &mut buf).unwrap();
        codec.try_decode_table_provider(&buf, &name, t.schema(), &TaskContext::default()).unwrap()
    }

    #[test]
    fn lake_table_keeps_its_files_and_its_root() {
        let file = DataFile {
            table: "endpoint.processes".into(),
            path: "endpoint/processes/a.parquet".into(),
            rows: 3,
            bytes: 10,
            min_time: 1,
            max_time: 2,
        };
        for root in ["file:///data/lake/", "s3://bucket/a/lake/"] {
            let root = url::Url::parse(root).unwrap();
            let t = LakeTable::new(crate::cim::Table::Processes.schema(), root.clone(), vec![file.clone()]);
            let back = round_trip(Arc::new(t));
            let back = back.downcast_ref::<LakeTable>().expect("a LakeTable");
            assert_eq!(back.files(), std::slice::from_ref(&file));
            assert_eq!(back.root(), &root);
            assert_eq!(back.schema(), crate::cim::Table::Processes.schema());
        }
    }

    #[tokio::test]
    async fn mem_table_keeps_its_rows() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))]).unwrap();
        let t = MemTable::try_new(schema, vec![vec![batch.clone()]]).unwrap();
        let back = round_trip(Arc::new(t));
        let back = back.downcast_ref::<MemTable>().expect("a MemTable");
        let rows = back.batches[0].read().await.clone();
        assert_eq!(rows, vec![batch]);
    }
}
