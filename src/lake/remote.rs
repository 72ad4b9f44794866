//! A lake in object storage: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
//!
//! The layout is the one of a lake on disk ([`super`]), under the URL's prefix. What differs is
//! how a record is published and how files get there, since an object store has no locks, links
//! or renames:
//!
//! * A record (a commit in `_cimlake/commits`, [`super::records`]) is published by a Delta
//!   commit, whose log entry is created by a conditional put (`If-None-Match: *`): it succeeds
//!   only if no entry of that version exists. Two writers that race get one success and one
//!   refusal; the refused one reads the new records and checks again whether its input is in
//!   already ([`super::Lake::publish_input`]). S3 (since 2024), GCS and Azure have conditional
//!   puts; an S3-compatible server without them refuses the put and the ingest fails rather than
//!   risk a second copy.
//! * Data files are written to a local staging directory as for a lake on disk, then uploaded to
//!   their final names (which carry the ingest session, so two writers never write the same
//!   object) before the commit that names them is created. A killed ingest may leave uploaded
//!   files that no commit names; readers never see them.
//!
//! Settings come from the environment, as for other tools on these stores (`object_store`'s
//! builders): for S3 `AWS_REGION`, `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP=true` for an endpoint on plain
//! HTTP; for GCS `GOOGLE_SERVICE_ACCOUNT` and the like; for Azure `AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY` and the like.
//!
//! The lake layer is synchronous; each call here runs its request on the runtime of
//! [`super::runtime::block_on`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use super::runtime::block_on;
use super::LakeError;

/// URL schemes of the object stores a lake may be in.
pub const SCHEMES: [&str; 7] = ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

/// An object store and the prefix the lake is under.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The lake's URL, ending in `/`.
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
}

/// `Some(url)` when `arg` names a lake in an object store (`s3://…`), `None` for a local path
/// (plain, or `file://`).
pub fn parse_location(arg: &str) -> Result<Option<Url>, LakeError> {
    let Some((scheme, _)) = arg.split_once("://") else { return Ok(None) };
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "file" {
        return Ok(None);
    }
    if !SCHEMES.contains(&scheme.as_str()) {
        return Err(LakeError::BadLocation { location: arg.to_string(), reason: format!("{scheme}:// is not a store cimlake knows (a path, file://, {})", SCHEMES.map(|s| format!("{s}://")).join(", ")) });
    }
    let mut url = Url::parse(arg).map_err(|e| LakeError::BadLocation { location: arg.to_string(), reason: e.to_string() })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(LakeError::BadLocation { location: arg.to_string(), reason: "no bucket (container) named".to_string() });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(LakeError::BadLocation { location: arg.to_string(), reason: "a lake URL takes no query or fragment".to_string() });
    }
    if arg.split(['/', '\\']).skip(3).any(|seg| seg == ".." || seg == ".") {
        return Err(LakeError::BadLocation { location: arg.to_string(), reason: "`.` and `..` are not allowed in a lake URL".to_string() });
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(Some(url))
}

/// The store for `url`'s bucket, configured from the environment.
pub fn store_for(url: &Url) -> Result<Arc<dyn ObjectStore>, LakeError> {
    let bad = |e: object_store::Error| LakeError::BadLocation { location: url.to_string(), reason: e.to_string() };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => Arc::new(object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str()).build().map_err(bad)?),
        "gs" => Arc::new(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url.as_str()).build().map_err(bad)?),
        _ => Arc::new(object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url.as_str()).build().map_err(bad)?),
    };
    Ok(store)
}

impl Remote {
    pub fn open(url: Url) -> Result<Remote, LakeError> {
        let store = store_for(&url)?;
        let prefix = StorePath::from_url_path(url.path())
            .map_err(|e| LakeError::BadLocation { location: url.to_string(), reason: e.to_string() })?;
        Ok(Remote { url, store, prefix })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The object of a path relative to the lake.
    fn object(&self, rel: &str) -> StorePath {
        rel.split('/').filter(|s| !s.is_empty()).fold(self.prefix.clone(), |p, seg| p.clone().join(seg))
    }

    /// How errors name an object: its URL, as a path for [`LakeError`].
    pub fn display(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{}{rel}", self.url))
    }

    fn err(&self, rel: &str, source: object_store::Error) -> LakeError {
        LakeError::Store { location: self.display(rel), source: Box::new(source) }
    }

    /// Every object under `dir` (relative to the lake): its path relative to the lake, size and
    /// last modification.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64, std::time::SystemTime)>, LakeError> {
        let store = self.store.clone();
        let prefix = self.object(dir);
        let listed = block_on(async move {
            use futures::TryStreamExt;
            store.list(Some(&prefix)).try_collect::<Vec<_>>().await
        })
        .map_err(|e| self.err(dir, e))?;
        let base = format!("{}/", self.prefix);
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let full = m.location.to_string();
                let rel = if self.prefix.as_ref().is_empty() { full } else { full.strip_prefix(&base)?.to_string() };
                Some((rel, m.size, m.last_modified.into()))
            })
            .collect())
    }

    /// Uploads a local file to `rel` (multipart for large files).
    pub fn upload(&self, local: &Path, rel: &str) -> Result<(), LakeError> {
        let (store, obj, from) = (self.store.clone(), self.object(rel), local.to_path_buf());
        let done = block_on(async move {
            use tokio::io::AsyncWriteExt;
            let mut file = tokio::fs::File::open(&from).await.map_err(|e| object_store::Error::Generic { store: "local", source: Box::new(e) })?;
            let mut out = object_store::buffered::BufWriter::new(store, obj);
            let copied = tokio::io::copy(&mut file, &mut out).await;
            match copied {
                Ok(_) => out.shutdown().await.map_err(|e| object_store::Error::Generic { store: "upload", source: Box::new(e) }),
                Err(e) => {
                    let _ = out.abort().await;
                    Err(object_store::Error::Generic { store: "upload", source: Box::new(e) })
                }
            }
        });
        done.map_err(|e| self.err(rel, e))
    }

    /// The object at `rel`, or `None` when there is none.
    pub fn get(&self, rel: &str) -> Result<Option<bytes::Bytes>, LakeError> {
        let (store, obj) = (self.store.clone(), self.object(rel));
        let got = block_on(async move {
            match store.get(&obj).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map_err(|e| self.err(rel, e))
    }

    /// Writes (or replaces) the object at `rel` in one request: readers see the old object or
    /// the new one.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let (store, obj) = (self.store.clone(), self.object(rel));
        block_on(async move { store.put(&obj, PutPayload::from(bytes)).await }).map(|_| ()).map_err(|e| self.err(rel, e))
    }

    /// Copies the object at `rel` to a local file.
    pub fn download(&self, rel: &str, to: &Path) -> Result<(), LakeError> {
        let (store, obj, local) = (self.store.clone(), self.object(rel), to.to_path_buf());
        let done = block_on(async move {
            use futures::StreamExt;
            use tokio::io::AsyncWriteExt;
            let local_err = |e: std::io::Error| object_store::Error::Generic { store: "local", source: Box::new(e) };
            let mut file = tokio::fs::File::create(&local).await.map_err(local_err)?;
            let mut stream = store.get(&obj).await?.into_stream();
            while let Some(chunk) = stream.next().await {
                file.write_all(&chunk?).await.map_err(local_err)?;
            }
            file.sync_all().await.map_err(local_err)
        });
        done.map_err(|e| self.err(rel, e))
    }

    /// Removes objects (best effort: for cleaning up after a failure).
    pub fn delete(&self, rels: &[String]) {
        let _ = self.delete_all(rels);
    }

    /// Removes objects; one that is gone already is no error.
    pub fn delete_all(&self, rels: &[String]) -> Result<(), LakeError> {
        let store = self.store.clone();
        let objects: Vec<(String, StorePath)> = rels.iter().map(|r| (r.clone(), self.object(r))).collect();
        block_on(async move {
            for (rel, o) in objects {
                match store.delete(&o).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err((rel, e)),
                }
            }
            Ok(())
        })
        .map_err(|(rel, e)| self.err(&rel, e))
    }

    /// Whether the object at `rel` exists.
    pub fn exists(&self, rel: &str) -> Result<bool, LakeError> {
        let (store, obj) = (self.store.clone(), self.object(rel));
        match block_on(async move { store.head(&obj).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(rel, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(parse_location("lake").unwrap(), None);
        assert_eq!(parse_location("/data/lake").unwrap(), None);
        assert_eq!(parse_location("file:///data/lake").unwrap(), None);
        assert_eq!(parse_location("s3://bucket/a/b").unwrap().unwrap().as_str(), "s3://bucket/a/b/");
        assert_eq!(parse_location("S3://bucket").unwrap().unwrap().as_str(), "s3://bucket/");
        for bad in ["ftp://x/y", "s3:///nobucket", "s3://b/a/../c", "s3://b/x?versionId=1", "http://host/lake"] {
            assert!(matches!(parse_location(bad), Err(LakeError::BadLocation { .. })), "{bad} accepted");
        }
    }
}
