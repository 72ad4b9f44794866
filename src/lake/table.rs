//! [`LakeTable`]: a DataFusion table over the lake files of one CIM table.
//!
//! Each scan keeps only the files whose `_time` range (recorded in the commit) can match the
//! query's `_time` bounds, so an hourly detection opens only that hour's files; within those,
//! DataFusion's Parquet reader prunes row groups by their statistics.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;

use super::DataFile;
use crate::cim::TIME;

#[derive(Debug)]
pub struct LakeTable {
    schema: SchemaRef,
    root: url::Url,
    files: Vec<DataFile>,
}

impl LakeTable {
    /// A table of `schema` over `files` (paths relative to `root`, the lake's URL: `file:///…/`
    /// or `s3://bucket/prefix/`, ending in `/`). A file may lack columns of the schema (they read
    /// as nulls).
    pub fn new(schema: SchemaRef, root: url::Url, files: Vec<DataFile>) -> Self {
        LakeTable { schema, root, files }
    }

    /// The URL the file paths are relative to.
    pub fn root(&self) -> &url::Url {
        &self.root
    }

    /// Every file of the table.
    pub fn files(&self) -> &[DataFile] {
        &self.files
    }

    /// The files a scan with these filters reads.
    pub fn select_files(&self, filters: &[Expr]) -> Vec<&DataFile> {
        let (lo, hi) = time_bounds(filters);
        self.files
            .iter()
            .filter(|f| lo.is_none_or(|lo| f.max_time >= lo) && hi.is_none_or(|hi| f.min_time <= hi))
            .collect()
    }
}

#[async_trait]
impl TableProvider for LakeTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let selected = self.select_files(filters);
        if selected.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let mut urls = Vec::with_capacity(selected.len());
        for f in selected {
            let url = self.root.join(&f.path).map_err(|e| DataFusionError::Plan(format!("{}{}: {e}", self.root, f.path)))?;
            urls.push(ListingTableUrl::parse(url.as_str())?);
        }
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(self.schema.clone());
        // Each file's statistics are read from its footer once per process, not once per scan: a
        // detection scans a table several times, and a server or scheduler plans many queries
        // (the cache is keyed by path and checked against the file's size and modification time).
        let cache = state.runtime_env().cache_manager.get_file_statistic_cache();
        ListingTable::try_new(config)?.with_cache(cache).scan(state, projection, filters, limit).await
    }
}

/// An optimizer rule that narrows each [`LakeTable`] scan to the files its `_time` filters can
/// match, in the logical plan itself. [`LakeTable::scan`] does the same when the plan runs here;
/// a plan sent to a cluster carries its tables' file lists, so this keeps an hourly run's plan to
/// that hour's files however long the lake's history.
#[derive(Debug, Default)]
pub struct PruneLakeFiles;

impl datafusion::optimizer::OptimizerRule for PruneLakeFiles {
    fn name(&self) -> &str {
        "cimlake_prune_lake_files"
    }

    fn apply_order(&self) -> Option<datafusion::optimizer::ApplyOrder> {
        Some(datafusion::optimizer::ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &dyn datafusion::optimizer::OptimizerConfig,
    ) -> Result<datafusion::common::tree_node::Transformed<datafusion::logical_expr::LogicalPlan>> {
        use datafusion::common::tree_node::Transformed;
        use datafusion::datasource::{provider_as_source, source_as_provider};
        use datafusion::logical_expr::LogicalPlan;
        let LogicalPlan::TableScan(scan) = &plan else { return Ok(Transformed::no(plan)) };
        let Ok(provider) = source_as_provider(&scan.source) else { return Ok(Transformed::no(plan)) };
        let Some(table) = provider.downcast_ref::<LakeTable>() else { return Ok(Transformed::no(plan)) };
        let selected: Vec<DataFile> = table.select_files(&scan.filters).into_iter().cloned().collect();
        if selected.len() == table.files.len() {
            return Ok(Transformed::no(plan));
        }
        let pruned = LakeTable::new(table.schema.clone(), table.root.clone(), selected);
        let mut scan = scan.clone();
        scan.source = provider_as_source(Arc::new(pruned));
        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
    }
}

/// The `_time` range (µs, inclusive) implied by a conjunction of filters, where they bound it.
pub fn time_bounds(filters: &[Expr]) -> (Option<i64>, Option<i64>) {
    let mut lo: Option<i64> = None;
    let mut hi: Option<i64> = None;
    let mut lower = |v: i64| lo = Some(lo.map_or(v, |l| l.max(v)));
    let mut upper = |v: i64| hi = Some(hi.map_or(v, |h| h.min(v)));
    let mut stack: Vec<&Expr> = filters.iter().collect();
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                stack.push(left);
                stack.push(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, v) = match (is_time(left), literal_us(right), is_time(right), literal_us(left)) {
                    (true, Some(v), _, _) => (*op, v),
                    (_, _, true, Some(v)) => match op.swap() {
                        Some(op) => (op, v),
                        None => continue,
                    },
                    _ => continue,
                };
                match op {
                    Operator::Gt | Operator::GtEq => lower(v),
                    Operator::Lt | Operator::LtEq => upper(v),
                    Operator::Eq => {
                        lower(v);
                        upper(v);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated && is_time(&b.expr) => {
                if let Some(v) = literal_us(&b.low) {
                    lower(v);
                }
                if let Some(v) = literal_us(&b.high) {
                    upper(v);
                }
            }
            _ => {}
        }
    }
    (lo, hi)
}

fn is_time(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIME)
}

fn literal_us(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(Some(v), Some("UTC".into())))
    }

    #[test]
    fn bounds_from_filters() {
        let f = vec![col("_time").gt_eq(ts(10)).and(col("_time").lt(ts(20))), col("dest_port").eq(lit(443))];
        assert_eq!(time_bounds(&f), (Some(10), Some(20)));
        let f = vec![ts(5).lt_eq(col("_time"))];
        assert_eq!(time_bounds(&f), (Some(5), None));
        let f = vec![col("_time").between(ts(1), ts(2))];
        assert_eq!(time_bounds(&f), (Some(1), Some(2)));
        let f = vec![col("_time").gt(ts(1)).or(col("_time").lt(ts(0)))];
        assert_eq!(time_bounds(&f), (None, None));
    }

    #[tokio::test]
    async fn the_plan_keeps_only_the_files_a_window_can_match() {
        use datafusion::datasource::source_as_provider;
        use datafusion::logical_expr::LogicalPlan;
        let file = |h: i64| DataFile {
            table: "endpoint.processes".into(),
            path: format!("{h}.parquet"),
            rows: 1,
            bytes: 1,
            min_time: h * 3_600_000_000,
            max_time: (h + 1) * 3_600_000_000 - 1,
        };
        let t = LakeTable::new(crate::cim::Table::Processes.schema(), url::Url::parse("file:///x/").unwrap(), (0..48).map(file).collect());
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.add_optimizer_rule(Arc::new(PruneLakeFiles));
        ctx.register_table("p", Arc::new(t)).unwrap();
        let files_in = |sql: &str| {
            let ctx = ctx.clone();
            let sql = sql.to_string();
            async move {
                let plan = ctx.sql(&sql).await.unwrap().into_optimized_plan().unwrap();
                let mut counts = Vec::new();
                plan.apply(|node| {
                    if let LogicalPlan::TableScan(scan) = node {
                        let provider = source_as_provider(&scan.source).unwrap();
                        counts.push(provider.downcast_ref::<LakeTable>().unwrap().files().len());
                    }
                    Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
                })
                .unwrap();
                counts
            }
        };
        use datafusion::common::tree_node::TreeNode;
        let hour = "SELECT dest FROM p WHERE _time >= TIMESTAMP '1970-01-01T05:00:00Z' AND _time < TIMESTAMP '1970-01-01T06:00:00Z'";
        // Hour 5, and hour 6's file, which starts at the exclusive bound (bounds are kept
        // inclusive: a timestamp literal may be finer than the lake's microseconds).
        assert_eq!(files_in(hour).await, vec![2]);
        let both = format!("{hour} UNION ALL SELECT dest FROM p");
        assert_eq!(files_in(&both).await, vec![2, 48]);
    }

    #[test]
    fn selects_overlapping_files() {
        let file = |min, max| DataFile {
            table: "endpoint.processes".into(),
            path: format!("{min}.parquet"),
            rows: 1,
            bytes: 1,
            min_time: min,
            max_time: max,
        };
        let t = LakeTable::new(crate::cim::Table::Processes.schema(), url::Url::parse("file:///x/").unwrap(), vec![file(0, 9), file(10, 19), file(20, 29)]);
        let f = vec![col("_time").gt_eq(ts(12)).and(col("_time").lt(ts(21)))];
        let picked: Vec<_> = t.select_files(&f).iter().map(|f| f.min_time).collect();
        assert_eq!(picked, vec![10, 20]);
        assert_eq!(t.select_files(&[]).len(), 3);
    }

    /// A file's statistics are read once per process: planning a query that scans a table three
    /// times, then the same in a second session, reads each footer's statistics once.
    #[tokio::test]
    async fn statistics_are_read_once_per_file() {
        let root = tempfile::tempdir().unwrap();
        let lake = crate::lake::Lake::new(root.path());
        let logs = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/logs/sysmon");
        crate::ingest::ingest(&lake, &[logs], &Default::default()).unwrap();
        let files: Vec<String> = walk_parquet(&root.path().join("endpoint/processes"));
        assert!(!files.is_empty());
        let sql = "SELECT a.dest FROM endpoint.processes a JOIN endpoint.processes b ON a.process_guid = b.process_guid \
                   UNION ALL SELECT dest FROM endpoint.processes";
        let cached = |ctx: &datafusion::prelude::SessionContext| {
            let cache = ctx.runtime_env().cache_manager.get_file_statistic_cache().expect("a statistics cache");
            files.iter().filter(|f| cache.list_entries().keys().any(|k| k.path.as_ref().ends_with(f.as_str()))).count()
        };
        let first = crate::engine::session(&lake).await.unwrap();
        first.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        assert_eq!(cached(&first), files.len(), "every process file's statistics, once");
        let second = crate::engine::session(&lake).await.unwrap();
        assert_eq!(cached(&second), files.len(), "a new session of the process shares them");
        assert!(Arc::ptr_eq(
            &first.runtime_env().cache_manager.get_file_statistic_cache().unwrap(),
            &second.runtime_env().cache_manager.get_file_statistic_cache().unwrap()
        ));
    }

    fn walk_parquet(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_parquet(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        out
    }
}
