//! The client of a Ballista cluster: a session whose plans run on the cluster behind a scheduler,
//! carrying the lake's tables with [`super::codec::LakeCodec`]. The scheduler and executor
//! processes are [`crate::cluster`]'s.

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

/// The scheduler port Ballista uses when none is given.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// The largest gRPC message between client, scheduler and executors (Ballista's default is
/// 16 MiB). A plan carries the file list of each table it reads, which grows with the lake.
pub const GRPC_MESSAGE_BYTES: usize = 256 << 20;

/// Parallelism of a cluster query (scan file groups, shuffle partitions) when
/// `DATAFUSION_EXECUTION_TARGET_PARTITIONS` does not say: Ballista's own default, not the
/// client's core count.
pub const DEFAULT_TARGET_PARTITIONS: usize = 16;

/// A host as written in a URL or `host:port`: IPv6 literals in brackets.
pub fn host_for_url(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() }
}

/// A scheduler's address, `HOST:PORT`, as written after `ballista://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for SchedulerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", host_for_url(&self.host), self.port)
    }
}

impl std::str::FromStr for SchedulerAddr {
    type Err = String;

    /// `HOST:PORT`, `HOST` (port 50050) or `[IPv6]:PORT`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.ends_with(':') {
            return Err(format!("bad scheduler address {s:?}: no port after ':'"));
        }
        if s.matches(':').count() > 1 && !s.starts_with('[') {
            return Err(format!("bad scheduler address {s:?}: write an IPv6 address in brackets, e.g. [::1]:50050"));
        }
        let url = url::Url::parse(&format!("ballista://{s}")).map_err(|e| format!("bad scheduler address {s:?}: {e} (expected HOST:PORT)"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("bad scheduler address {s:?}: no host (expected HOST:PORT)"))?;
        if url.path() != "" && url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!("bad scheduler address {s:?}: expected HOST:PORT only"));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port().unwrap_or(DEFAULT_SCHEDULER_PORT);
        if port == 0 {
            return Err(format!("bad scheduler address {s:?}: port 0"));
        }
        Ok(SchedulerAddr { host, port })
    }
}

/// A session whose queries run on the Ballista cluster behind `scheduler`.
///
/// The scheduler is checked to be reachable first, so a wrong address fails here, naming it,
/// rather than at the first query.
pub async fn remote_context(scheduler: &SchedulerAddr, config: SessionConfig) -> Result<SessionContext, DataFusionError> {
    let addr = scheduler.to_string();
    reach(&addr, Duration::from_secs(10)).await.map_err(|e| {
        DataFusionError::Execution(format!(
            "cannot reach the Ballista scheduler at {addr}: {e} (start one with `cimlake cluster scheduler --bind {addr}`)"
        ))
    })?;
    let mut config = config.with_ballista_logical_extension_codec(Arc::new(super::codec::LakeCodec::default()));
    if std::env::var_os("DATAFUSION_EXECUTION_TARGET_PARTITIONS").is_none() {
        config = config.with_target_partitions(DEFAULT_TARGET_PARTITIONS);
    }
    let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
    let ctx = SessionContext::remote_with_state(&format!("df://{addr}"), state).await?;
    // The plan carries each table's file list: only the files its filters can match.
    ctx.add_optimizer_rule(Arc::new(crate::lake::table::PruneLakeFiles));
    {
        let state_ref = ctx.state_ref();
        let mut state = state_ref.write();
        let options = state.config_mut().options_mut();
        // The static planner: Ballista 55's adaptive planner re-plans after every stage, and
        // on the MSIExec detection's plan it spins in the scheduler without finishing.
        options.set("ballista.planner.adaptive.enabled", "false")?;
        options.set("ballista.client.grpc_max_message_size", &GRPC_MESSAGE_BYTES.to_string())?;
        // Ballista replaces some DataFusion defaults (sort-merge joins, no dynamic filters); a
        // setting the user gave in the environment wins over those.
        for entry in options.entries() {
            let name = entry.key.to_uppercase().replace('.', "_");
            if entry.key.starts_with("datafusion.")
                && let Ok(value) = std::env::var(&name)
            {
                options.set(&entry.key, &value).map_err(|e| DataFusionError::Configuration(format!("{name}={value:?}: {e}")))?;
            }
        }
    }
    Ok(ctx)
}

/// Whether `addr` accepts a TCP connection within `timeout`; if not, why.
pub(crate) async fn reach(addr: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {} s", timeout.as_secs())),
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
        for bad in ["", ":50050", "host:notaport", "host:50050/path", "user@host:1", ":pw@host:1", "host:", "host:0", "::1:50050"] {
            assert!(bad.parse::<SchedulerAddr>().is_err(), "{bad:?} accepted");
        }
    }
}
