//! Where a Delta table of the lake is and how it is opened, below both the ingested tables'
//! logs ([`super::delta`]) and the lake's record tables ([`super::records`]): a table's location
//! (local or in the lake's object store), the Delta `remove` of an unpartitioned table's file, and
//! the application ids the two share.

use std::collections::HashMap;
use std::path::PathBuf;

use deltalake_core::kernel::Remove;
use deltalake_core::{DeltaTableBuilder, DeltaTableError};
use url::Url;

use super::{Lake, LakeError};

/// The application id of the transaction recording an input in the Delta commit that adds its
/// files: this prefix, then the input's content hash (BLAKE3, hex); the version is its lake
/// commit. Every ingested table's log records every input, whether or not it added files there, so
/// each log says by itself which inputs it holds.
pub const INPUT_APP_ID_PREFIX: &str = "cimlake.input.";

/// Where a table's Delta log is: its URL, the object store it is in (none: the local file
/// system), and how errors name it.
#[derive(Clone)]
pub(crate) struct TableLocation {
    pub(crate) url: Url,
    store: Option<std::sync::Arc<dyn object_store::ObjectStore>>,
    pub(crate) name: PathBuf,
}

impl TableLocation {
    /// The Delta table in directory `dir` of the lake (one of its record tables).
    pub(crate) fn at(lake: &Lake, dir: &str) -> Result<TableLocation, LakeError> {
        let name = match lake.remote() {
            Some(r) => r.display(dir),
            None => lake.root().join(dir),
        };
        let url = lake.base_url()?.join(&format!("{dir}/")).map_err(|e| LakeError::BadLocation { location: name.display().to_string(), reason: e.to_string() })?;
        Ok(TableLocation { url, store: lake.remote().map(|r| r.store()), name })
    }

    /// A builder for the table, over the lake's object store when it is in one.
    pub(crate) fn builder(&self) -> Result<DeltaTableBuilder, DeltaTableError> {
        let b = DeltaTableBuilder::from_url(self.url.clone())?;
        Ok(match &self.store {
            Some(store) => {
                register_object_store_schemes();
                b.with_storage_backend(store.clone(), self.url.clone())
            }
            None => b,
        })
    }
}

/// The Delta library finds a log store by URL scheme and knows `file://` and `memory://` only
/// (its cloud crates add the others, with their own clients). cimlake hands it the lake's object
/// store itself, so the default log store serves every scheme: its commits are conditional puts
/// (`PutMode::Create`), which S3, GCS and Azure honour.
fn register_object_store_schemes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[derive(Debug)]
        struct Default;
        impl deltalake_core::logstore::LogStoreFactory for Default {
            fn with_options(
                &self,
                prefixed_store: deltalake_core::logstore::ObjectStoreRef,
                root_store: deltalake_core::logstore::ObjectStoreRef,
                location: &Url,
                options: &deltalake_core::logstore::StorageConfig,
            ) -> deltalake_core::DeltaResult<std::sync::Arc<dyn deltalake_core::logstore::LogStore>> {
                Ok(deltalake_core::logstore::default_logstore(prefixed_store, root_store, location, options))
            }
        }
        let registry = deltalake_core::logstore::logstore_factories();
        for scheme in super::remote::SCHEMES {
            let url = Url::parse(&format!("{scheme}://")).expect("a scheme");
            registry.entry(url).or_insert_with(|| std::sync::Arc::new(Default));
        }
    });
}

/// The Delta `remove` of file `path` (relative to its table) of an unpartitioned table, now.
pub(crate) fn remove_unpartitioned(path: &str, data_change: bool) -> Remove {
    Remove {
        path: path.to_string(),
        data_change,
        deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
        extended_file_metadata: Some(false),
        partition_values: Some(HashMap::new()),
        size: None,
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    }
}

