//! The lake layer is synchronous (ingest runs on its own threads); the Delta library and the
//! object stores are asynchronous. [`block_on`] runs their futures on a small runtime of the
//! lake's own.

use std::future::Future;
use std::sync::OnceLock;

/// Runs a future to its end from synchronous code (inside or outside a tokio runtime).
pub(crate) fn block_on<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cimlake-lake-io")
            .enable_all()
            .build()
            .expect("starting the lake's runtime")
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().expect("a task on the lake's runtime panicked")
}
