//! The lake as a DataFusion catalog, built from the table registry ([`Table::ALL_TABLES`]): one
//! schema per data model (`endpoint`, `network_traffic`, `quarantine`, `detections`, `risk`,
//! `cimlake`), one table per entry, filled as the entry says ([`Filled`]). A table added to the
//! registry is in every session without an edit here.

use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::DataFusionError;

use super::EngineError;
use crate::cim::{Filled, Table, results};
use crate::lake::table::LakeTable;
use crate::lake::{AsOf, Lake, runs};

/// The catalog's name: DataFusion's default, so `endpoint.processes` needs no catalog prefix.
pub const CATALOG: &str = "datafusion";

/// The schema that unqualified names resolve in (empty: every lake table is qualified).
pub const DEFAULT_SCHEMA: &str = "public";

/// Every table of the lake as it is now, or as it was at `as_of` (its commits and run records
/// read once).
pub fn lake_catalog(lake: &Lake, as_of: Option<AsOf>) -> Result<Arc<MemoryCatalogProvider>, EngineError> {
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog.register_schema(DEFAULT_SCHEMA, Arc::new(MemorySchemaProvider::new()))?;
    let view = lake.view(as_of)?;
    let root = lake.base_url()?;
    let ingested = view.ingested_files();
    let all_runs = view.runs;
    for table in Table::ALL_TABLES {
        let schema = match catalog.schema(table.schema_name()) {
            Some(s) => s,
            None => {
                let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog.register_schema(table.schema_name(), s.clone())?;
                s
            }
        };
        let provider: Arc<dyn TableProvider> = match table.filled() {
            Filled::ByIngest => {
                let files = ingested.iter().filter(|f| f.table == table.qualified_name()).cloned().collect();
                Arc::new(LakeTable::new(table.schema(), root.clone(), files))
            }
            Filled::ByRuns => {
                let arrow_schema = if table == Table::Results {
                    // The union of every detection's output columns, as the current runs wrote them.
                    results::schema_with(&runs::result_columns(runs::current(&all_runs)))
                } else {
                    table.schema()
                };
                Arc::new(LakeTable::new(arrow_schema, root.clone(), runs::current_files(&all_runs, table.qualified_name())))
            }
            Filled::RunLog => {
                let batch = runs::runs_batch(&all_runs).map_err(DataFusionError::from)?;
                Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?)
            }
        };
        schema.register_table(table.table_name().to_string(), provider)?;
    }
    Ok(catalog)
}
