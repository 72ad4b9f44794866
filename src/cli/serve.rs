//! `cimlake serve`: the lake over Arrow Flight SQL.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::SqlArgs;
use crate::serve::{self, ServeOptions, auth::Secret, service::Limits};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free one, printed at start).
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "HOST:PORT")]
    pub listen: String,

    /// A bearer token clients must send (`authorization: Bearer TOKEN`), 16 characters or more.
    /// Prefer the environment variable: command lines are visible to other local users.
    /// Credentials (this or --user) are required unless --no-auth is given.
    #[arg(long, env = "CIMLAKE_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<Secret>,

    /// A user name clients may log in with; the password (16 characters or more) comes from
    /// CIMLAKE_PASSWORD.
    #[arg(long, value_name = "NAME", requires = "password")]
    pub user: Option<String>,

    /// The password of --user.
    #[arg(long, env = "CIMLAKE_PASSWORD", hide_env_values = true, hide = true, requires = "user")]
    pub password: Option<Secret>,

    /// Serve without authentication: any local user may query. Only on a loopback address.
    #[arg(long, conflicts_with_all = ["token", "user"])]
    pub no_auth: bool,

    /// Serve TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Memory each query may use for joins, aggregations and sorts (e.g. 512M, 2G); over it, sorts
    /// and aggregations spill to disk and other work fails the query with RESOURCE_EXHAUSTED
    /// [default: half the machine's memory, shared evenly by the --max-queries slots].
    #[arg(long, value_parser = crate::engine::parse_size, value_name = "SIZE")]
    pub memory_limit: Option<usize>,

    /// Longest a query may take, from planning to its last row (e.g. 30s, 10m); past it the query
    /// is cancelled and the client gets DEADLINE_EXCEEDED.
    #[arg(long, default_value = "10m", value_parser = parse_timeout, value_name = "DURATION")]
    pub query_timeout: Duration,

    /// Queries that may run at once; more wait for a free slot, within their timeout. The server's
    /// query memory is at most this times --memory-limit.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub max_queries: u32,

    #[command(flatten)]
    pub sql: SqlArgs,
}

/// Why a `--query-timeout` value is refused.
#[derive(Debug, thiserror::Error)]
enum TimeoutError {
    #[error(transparent)]
    Duration(#[from] crate::time::TimeError),
    #[error("the timeout must be positive, not {0:?}")]
    NotPositive(String),
}

fn parse_timeout(s: &str) -> Result<Duration, TimeoutError> {
    let d = crate::time::parse_duration(s)?;
    match d.to_std() {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(TimeoutError::NotPositive(s.to_string())),
    }
}

/// Each query's memory when none is given: half the machine's memory over the query slots.
fn default_query_memory(max_queries: usize) -> usize {
    let total = crate::engine::machine_memory().unwrap_or(8 << 30);
    (total / 2 / max_queries.max(1)).max(64 << 20)
}

pub async fn run(lake: &Path, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let options = ServeOptions {
        listen: args.listen,
        lake: lake.to_path_buf(),
        catalog: args.sql.catalog()?,
        token: args.token,
        basic: args.user.zip(args.password),
        no_auth: args.no_auth,
        tls: args.tls_cert.zip(args.tls_key),
        limits: Limits {
            memory: Some(args.memory_limit.unwrap_or_else(|| default_query_memory(args.max_queries as usize))),
            explicit_memory: args.memory_limit.is_some(),
            timeout: args.query_timeout,
            max_queries: args.max_queries as usize,
        },
    };
    serve::run(options).await?;
    Ok(ExitCode::SUCCESS)
}
