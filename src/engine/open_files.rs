//! The local file system as DataFusion reads the lake, holding at most [`max_open`] files open at
//! once in this process, however many queries run and however many files the lake has.
//!
//! object_store's `LocalFileSystem` answers a read in two steps on the blocking thread pool: one
//! task opens the file and hands it back, a second reads it. Under load the second tasks queue
//! behind hundreds of others while their files stay open: 16 clients over a lake of 3,000 files
//! held 14,000 descriptors and ran out. Here a read takes a permit, opens, reads and closes the
//! file before it gives the permit back, so open files are bounded by the permits.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::Semaphore;

/// Reads larger than this are handed back as an open file to stream, as object_store does (the
/// lake's Parquet reads are column chunks and footers, far smaller).
const MAX_BUFFERED_READ: u64 = 64 << 20;

/// Files the process reads at once: a quarter of its open-files limit, at most 256.
pub fn max_open() -> usize {
    static MAX: LazyLock<usize> = LazyLock::new(|| {
        let limit = super::raise_open_files_limit().unwrap_or(1024);
        (limit / 4).clamp(16, 256) as usize
    });
    *MAX
}

/// One semaphore for the whole process: every session's reads share it.
fn permits() -> Arc<Semaphore> {
    static PERMITS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(max_open())));
    PERMITS.clone()
}

/// `LocalFileSystem` with its reads bounded ([`max_open`] files at once).
pub struct BoundedLocal {
    inner: LocalFileSystem,
    permits: Arc<Semaphore>,
}

impl BoundedLocal {
    pub fn new() -> Self {
        BoundedLocal { inner: LocalFileSystem::new(), permits: permits() }
    }
}

impl Default for BoundedLocal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BoundedLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoundedLocal({} files at once)", max_open())
    }
}

impl fmt::Display for BoundedLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BoundedLocal({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for BoundedLocal {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let _permit = self.permits.acquire().await.expect("never closed");
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    /// Opens, reads and closes the file under one permit (a `head` only opens and closes it).
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if !matches!(result.payload, GetResultPayload::File(..)) || result.range.end - result.range.start > MAX_BUFFERED_READ {
            return Ok(result);
        }
        let (meta, range, attributes) = (result.meta.clone(), result.range.clone(), result.attributes.clone());
        let bytes = if head { bytes::Bytes::new() } else { result.bytes().await? };
        let payload = GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed());
        Ok(GetResult { payload, meta, range, attributes })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<bytes::Bytes>> {
        let _permit = self.permits.acquire().await.expect("never closed");
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::object_store::ObjectStoreExt;

    /// Descriptors this process has open now.
    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousands_of_concurrent_reads_hold_few_files_open() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200 {
            std::fs::write(dir.path().join(format!("{i}.bin")), vec![i as u8; 4096]).unwrap();
        }
        let store = Arc::new(BoundedLocal::new());
        let before = open_descriptors();
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let watcher = {
            let (peak, watching) = (peak.clone(), watching.clone());
            std::thread::spawn(move || {
                while watching.load(std::sync::atomic::Ordering::Relaxed) {
                    peak.fetch_max(open_descriptors(), std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let reads = (0..4000).map(|n| {
            let store = store.clone();
            let path = Path::from_filesystem_path(dir.path().join(format!("{}.bin", n % 200))).unwrap();
            async move {
                let bytes = store.get_range(&path, 100..164).await.unwrap();
                assert_eq!(bytes.len(), 64);
                assert!(bytes.iter().all(|b| *b == (n % 200) as u8));
                let meta = store.head(&path).await.unwrap();
                assert_eq!(meta.size, 4096);
            }
        });
        futures::future::join_all(reads.map(tokio::spawn)).await.into_iter().for_each(|r| r.unwrap());
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        watcher.join().unwrap();
        let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
        // The test harness's own descriptors, the watcher's directory handle, and at most
        // `max_open()` files.
        assert!(peak <= before + max_open() + 8, "peak {peak} descriptors, {before} before, bound {}", max_open());
    }
}
