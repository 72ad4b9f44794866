//! The cluster engine: the same detections and queries on an Apache DataFusion Ballista cluster.
//!
//! ```text
//! cimlake detect/query/schedule --engine ballista://HOST:PORT
//!     │ logical plan (protobuf; lake tables through LakeCodec)
//!     ▼
//! cimlake cluster scheduler ──plans the scans from the commit log's file list, splits the plan
//!     │                       into stages
//!     ▼ tasks
//! cimlake cluster executor × N ──read the lake's Parquet files from the shared path, shuffle
//!                                 between stages, serve results over Arrow Flight
//! ```
//!
//! The client registers the lake exactly as the in-process engine does ([`crate::engine`]); only
//! where the plan runs differs. The scheduler and the executors are Ballista's own, started from
//! its library crates ([`scheduler`], [`executor`]) with [`codec::LakeCodec`] added, so one
//! binary is the whole deployment.

pub mod codec;
pub mod executor;
pub mod scheduler;

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

/// The scheduler port Ballista uses when none is given.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// A scheduler's address, `HOST:PORT`, as written after `ballista://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for SchedulerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') && !self.host.starts_with('[') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for SchedulerAddr {
    type Err = String;

    /// `HOST:PORT`, `HOST` (port 50050) or `[IPv6]:PORT`.
    fn from_str(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(&format!("ballista://{s}")).map_err(|e| format!("bad scheduler address {s:?}: {e} (expected HOST:PORT)"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("bad scheduler address {s:?}: no host (expected HOST:PORT)"))?;
        if url.path() != "" && url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(format!("bad scheduler address {s:?}: expected HOST:PORT only"));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(SchedulerAddr { host, port: url.port().unwrap_or(DEFAULT_SCHEDULER_PORT) })
    }
}

/// A session whose queries run on the Ballista cluster behind `scheduler`.
///
/// The scheduler is checked to be reachable first, so a wrong address fails here, naming it,
/// rather than at the first query.
pub async fn remote_context(scheduler: &SchedulerAddr, config: SessionConfig) -> Result<SessionContext, DataFusionError> {
    let addr = scheduler.to_string();
    let reach = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&addr)).await;
    match reach {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            return Err(DataFusionError::Execution(format!(
                "cannot reach the Ballista scheduler at {addr}: {e} (start one with `cimlake cluster scheduler --bind {addr}`)"
            )));
        }
        Err(_) => return Err(DataFusionError::Execution(format!("cannot reach the Ballista scheduler at {addr}: no answer in 10 s"))),
    }
    let config = config.with_ballista_logical_extension_codec(Arc::new(codec::LakeCodec::default()));
    let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
    let ctx = SessionContext::remote_with_state(&format!("df://{addr}"), state).await?;
    {
        let state_ref = ctx.state_ref();
        let mut state = state_ref.write();
        let options = state.config_mut().options_mut();
        for (key, value) in BALLISTA_SETTINGS {
            options.set(key, value)?;
        }
    }
    Ok(ctx)
}

/// Ballista settings cimlake runs with.
const BALLISTA_SETTINGS: [(&str, &str); 1] = [
    ("ballista.planner.adaptive.enabled", "false"),
];

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses() {
        let a: SchedulerAddr = "10.0.0.5:6000".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.5", 6000));
        let a: SchedulerAddr = "scheduler.internal".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("scheduler.internal", DEFAULT_SCHEDULER_PORT));
        let a: SchedulerAddr = "[::1]:7000".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port, a.to_string().as_str()), ("::1", 7000, "[::1]:7000"));
        for bad in ["", ":50050", "host:notaport", "host:50050/path", "user@host:1"] {
            assert!(bad.parse::<SchedulerAddr>().is_err(), "{bad:?} accepted");
        }
    }
}
