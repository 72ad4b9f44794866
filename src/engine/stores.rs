//! [`LakeStores`]: the object stores a session reads the lake through, wherever the lake is.
//!
//! A plan names each file by URL: `file:///…` for a lake on disk, `s3://bucket/…` (or `gs://`,
//! `az://`) for a lake in an object store. Local files are read through [`BoundedLocal`]; a
//! bucket's store is made on first use from the environment (the same settings `--lake` takes,
//! see [`crate::lake::remote`]) and kept. The client, the cluster's scheduler and its executors
//! all resolve URLs this way, so a cluster reads an object-store lake straight from the bucket,
//! with no shared file system.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;
use url::Url;

use super::open_files::BoundedLocal;

#[derive(Debug)]
pub struct LakeStores {
    known: DefaultObjectStoreRegistry,
}

impl Default for LakeStores {
    fn default() -> Self {
        let known = DefaultObjectStoreRegistry::new();
        known.register_store(&Url::parse("file://").expect("a valid URL"), Arc::new(BoundedLocal::new()));
        LakeStores { known }
    }
}

impl LakeStores {
    /// A registry of these stores, as a runtime takes it.
    pub fn registry() -> Arc<dyn ObjectStoreRegistry> {
        Arc::new(LakeStores::default())
    }
}

impl ObjectStoreRegistry for LakeStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        if !crate::lake::remote::SCHEMES.contains(&url.scheme()) {
            return self.known.get_store(url);
        }
        let store = crate::lake::remote::store_for(url).map_err(|e| DataFusionError::External(Box::new(e)))?;
        // Keyed by scheme and bucket, as DataFusion's own registry keys stores.
        let bucket = Url::parse(&format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()))
            .map_err(|e| DataFusionError::Plan(format!("{url}: {e}")))?;
        self.known.register_store(&bucket, store.clone());
        Ok(store)
    }
}

/// A runtime that reads through [`LakeStores`], its other settings from `builder`.
pub fn runtime(builder: RuntimeEnvBuilder) -> Result<Arc<RuntimeEnv>> {
    builder.with_object_store_registry(LakeStores::registry()).build_arc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_are_bounded_and_buckets_are_made_once() {
        let stores = LakeStores::default();
        let local = stores.get_store(&Url::parse("file:///tmp/x.parquet").unwrap()).unwrap();
        assert!(format!("{local:?}").starts_with("BoundedLocal"), "{local:?}");
        let a = stores.get_store(&Url::parse("s3://bucket-a/lake/x.parquet").unwrap()).unwrap();
        let again = stores.get_store(&Url::parse("s3://bucket-a/other/y.parquet").unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a, &again), "the bucket's store is made once");
        let b = stores.get_store(&Url::parse("s3://bucket-b/lake/x.parquet").unwrap()).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(stores.get_store(&Url::parse("hdfs://nn/lake/x.parquet").unwrap()).is_err());
    }
}
