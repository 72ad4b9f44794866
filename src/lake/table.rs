//! [`LakeTable`]: a DataFusion table over the lake files of one CIM table.
//!
//! Each scan keeps only the files whose `_time` range (recorded in the commit) can match the
//! query's `_time` bounds, so an hourly detection opens only that hour's files; within those,
//! DataFusion's Parquet reader prunes row groups by their statistics.

use std::path::PathBuf;
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
    root: PathBuf,
    files: Vec<DataFile>,
}

impl LakeTable {
    /// A table of `schema` over `files` (paths relative to `root`). A file may lack columns of
    /// the schema (they read as nulls).
    pub fn new(schema: SchemaRef, root: PathBuf, files: Vec<DataFile>) -> Self {
        LakeTable { schema, root, files }
    }

    /// The directory the file paths are relative to.
    pub fn root(&self) -> &std::path::Path {
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
            let abs = std::path::absolute(self.root.join(&f.path))?;
            let url = url::Url::from_file_path(&abs)
                .map_err(|()| DataFusionError::Plan(format!("not a local path: {}", abs.display())))?;
            urls.push(ListingTableUrl::parse(url.as_str())?);
        }
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(self.schema.clone());
        ListingTable::try_new(config)?.scan(state, projection, filters, limit).await
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
        let t = LakeTable::new(crate::cim::Table::Processes.schema(), PathBuf::from("/x"), vec![file(0, 9), file(10, 19), file(20, 29)]);
        let f = vec![col("_time").gt_eq(ts(12)).and(col("_time").lt(ts(21)))];
        let picked: Vec<_> = t.select_files(&f).iter().map(|f| f.min_time).collect();
        assert_eq!(picked, vec![10, 20]);
        assert_eq!(t.select_files(&[]).len(), 3);
    }
}
