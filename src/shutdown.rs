//! Waiting for the end: Ctrl-C or SIGTERM, for the long-running processes (the Flight SQL server,
//! the cluster's scheduler and executors).

/// Waits for Ctrl-C or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
