//! The query engine: a DataFusion [`SessionContext`] with the lake's tables registered as
//! `endpoint.processes` and `network_traffic.all_traffic`, and every detection as a view over all
//! time: `detect.<name>` (cimlake mode) and `detect_splunk.<name>` (Splunk mode).

use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::cim::Table;
use crate::detect::{self, Catalog, DetectError, Mode, Window};
use crate::lake::table::LakeTable;
use crate::lake::{Lake, LakeError};

/// The schema holding detection views per mode.
pub fn detection_schema(mode: Mode) -> &'static str {
    match mode {
        Mode::Cimlake => "detect",
        Mode::Splunk => "detect_splunk",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Detect(#[from] DetectError),
}

/// A session over the lake. With a catalog, detections are registered as views too.
pub async fn session(lake: &Lake, catalog: Option<&Catalog>) -> Result<SessionContext, EngineError> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    let ctx = SessionContext::new_with_config(config);
    let default_catalog = ctx.catalog("datafusion").expect("default catalog");
    let commits = lake.commits()?;
    for table in Table::ALL {
        if default_catalog.schema(table.schema_name()).is_none() {
            default_catalog.register_schema(table.schema_name(), Arc::new(MemorySchemaProvider::new()))?;
        }
        let files = commits
            .iter()
            .flat_map(|c| c.files.iter())
            .filter(|f| f.table == table.qualified_name())
            .cloned()
            .collect();
        let provider = LakeTable::new(table, lake.root().to_path_buf(), files);
        ctx.register_table(TableReference::partial(table.schema_name(), table.table_name()), Arc::new(provider))?;
    }
    if let Some(catalog) = catalog {
        for mode in [Mode::Cimlake, Mode::Splunk] {
            let schema = detection_schema(mode);
            default_catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
            for d in &catalog.detections {
                let df = detect::plan(&ctx, catalog, d, mode, &Window::all_time()).await?;
                ctx.register_table(TableReference::partial(schema, d.name.as_str()), df.into_view())?;
            }
        }
    }
    Ok(ctx)
}
