//! The client of a Ballista cluster: a session whose plans run on the cluster behind a scheduler,
//! carrying the lake's tables with [`super::codec::LakeCodec`]. The scheduler and executor
//! processes are [`crate::cluster`]'s.

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::EngineError;

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

/// Why a scheduler address (`HOST:PORT` after `ballista://`, or `--scheduler`) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSchedulerAddrError {
    #[error("bad scheduler address {0:?}: no port after ':'")]
    NoPort(String),
    #[error("bad scheduler address {0:?}: write an IPv6 address in brackets, e.g. [::1]:50050")]
    UnbracketedIpv6(String),
    #[error("bad scheduler address {addr:?}: {reason} (expected HOST:PORT)")]
    NotAnAddress { addr: String, reason: url::ParseError },
    #[error("bad scheduler address {0:?}: no host (expected HOST:PORT)")]
    NoHost(String),
    /// A path, query, fragment or user after the host and port.
    #[error("bad scheduler address {0:?}: expected HOST:PORT only")]
    NotHostPort(String),
    #[error("bad scheduler address {0:?}: port 0")]
    PortZero(String),
}

impl std::str::FromStr for SchedulerAddr {
    type Err = ParseSchedulerAddrError;

    /// `HOST:PORT`, `HOST` (port 50050) or `[IPv6]:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use ParseSchedulerAddrError as E;
        if s.ends_with(':') {
            return Err(E::NoPort(s.to_string()));
        }
        if s.matches(':').count() > 1 && !s.starts_with('[') {
            return Err(E::UnbracketedIpv6(s.to_string()));
        }
        let url = url::Url::parse(&format!("ballista://{s}")).map_err(|reason| E::NotAnAddress { addr: s.to_string(), reason })?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| E::NoHost(s.to_string()))?;
        if url.path() != "" && url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(E::NotHostPort(s.to_string()));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port().unwrap_or(DEFAULT_SCHEDULER_PORT);
        if port == 0 {
            return Err(E::PortZero(s.to_string()));
        }
        Ok(SchedulerAddr { host, port })
    }
}

/// A session whose queries run on the Ballista cluster behind `scheduler`.
///
/// The scheduler is checked to be reachable first, so a wrong address fails here, naming it,
/// rather than at the first query.
pub async fn remote_context(scheduler: &SchedulerAddr, config: SessionConfig) -> Result<SessionContext, EngineError> {
    let addr = scheduler.to_string();
    reach(&addr, Duration::from_secs(10)).await.map_err(|reason| EngineError::Unreachable { scheduler: scheduler.clone(), reason })?;
    let mut config = config
        .with_ballista_logical_extension_codec(Arc::new(super::codec::LakeCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(super::codec::LakePhysicalCodec::default()));
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

/// Why a scheduler did not accept a connection.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// Refused, no route, a name that does not resolve: as the system says.
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("no answer in {} s", .0.as_secs())]
    NoAnswer(Duration),
}

/// Whether `addr` accepts a TCP connection within `timeout`; if not, why.
pub(crate) async fn reach(addr: &str, timeout: Duration) -> Result<(), ReachError> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ReachError::Connect(e)),
        Err(_) => Err(ReachError::NoAnswer(timeout)),
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
