//! `cimlake serve`: the lake over Arrow Flight SQL, for ADBC, JDBC and ODBC clients (Python,
//! DBeaver, Grafana, BI tools).
//!
//! * [`service`]: the Flight SQL service (statements, prepared statements, catalog metadata);
//! * [`statement`]: placeholders, the read-only check, parameter binding, sealed statement handles;
//! * [`ipc`]: a client's Arrow IPC (parameters), its declared lengths checked before decoding;
//! * [`auth`]: bearer token and user/password, checked on every call.

pub mod auth;
pub mod ipc;
pub mod service;
pub mod statement;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow_flight::flight_service_server::FlightServiceServer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::detect::Catalog;
use crate::lake::Lake;
use auth::Auth;
use service::{LakeService, Limits};

/// How to serve.
#[derive(Debug)]
pub struct ServeOptions {
    /// `HOST:PORT` to listen on; port 0 picks a free one (printed).
    pub listen: String,
    pub lake: PathBuf,
    pub catalog: Catalog,
    /// A bearer token clients must send.
    pub token: Option<auth::Secret>,
    /// A user and password clients may log in with.
    pub basic: Option<(String, auth::Secret)>,
    /// Serve without credentials (loopback only); without it, a token or a user is required.
    pub no_auth: bool,
    /// A PEM certificate chain and its private key.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub limits: Limits,
}

fn read_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the TLS {what} {}", path.display()))
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let lake = Lake::open(&opts.lake)?;
    if !lake.exists() {
        bail!("no lake at {} (create one with `cimlake ingest` or `cimlake gen`, or give --lake)", opts.lake.display());
    }
    let auth = Arc::new(Auth::new(opts.token, opts.basic)?);
    if !auth.required() && !opts.no_auth {
        bail!(
            "no credentials: give --token (or CIMLAKE_TOKEN) or --user (with CIMLAKE_PASSWORD), \
             or --no-auth to let anyone who can reach the address query the lake (loopback only)"
        );
    }
    let listener = tokio::net::TcpListener::bind(&opts.listen).await.with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let loopback = addr.ip().is_loopback();
    if !loopback && !auth.required() {
        bail!(
            "refusing to serve on {addr} without authentication (--no-auth): anyone who can reach it could read the lake. \
             Give --token (or CIMLAKE_TOKEN) or --user (with CIMLAKE_PASSWORD), or listen on 127.0.0.1"
        );
    }
    let mut server = Server::builder().http2_keepalive_interval(Some(Duration::from_secs(30)));
    let scheme = match &opts.tls {
        Some((cert, key)) => {
            let identity = Identity::from_pem(read_pem(cert, "certificate")?, read_pem(key, "key")?);
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity))
                .with_context(|| format!("bad TLS certificate {} or key {}", cert.display(), key.display()))?;
            "grpc+tls"
        }
        None => {
            if !loopback {
                eprintln!(
                    "warning: serving {addr} without TLS: credentials and results cross the network in the clear \
                     (give --tls-cert and --tls-key, or put a TLS proxy in front)"
                );
            }
            "grpc"
        }
    };
    let limits = opts.limits;
    let memory = limits.memory.map_or_else(|| "none".to_string(), |b| format!("{} MiB", b >> 20));
    let raised = crate::engine::raise_open_files_limit();
    let timeout = format!("{} s", limits.timeout.as_secs_f64());
    let max_queries = limits.max_queries;
    eprintln!("detections: {}", crate::output::escape_controls(&opts.catalog.describe()));
    let service = LakeService::new(lake, opts.catalog, limits, auth.clone());
    // The error's own text only: it already says what its causes say.
    service.warm_up().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let svc = FlightServiceServer::with_interceptor(service, auth::interceptor(auth.clone()));
    if let Some(limit) = raised {
        eprintln!("open files: up to {limit}");
    }
    println!(
        "serving Flight SQL on {scheme}://{addr} (lake {}; authentication {}; up to {max_queries} {} at once, each with timeout {timeout}, memory limit {memory})",
        opts.lake.display(),
        if auth.required() { "required" } else { "off (--no-auth), loopback only" },
        if max_queries == 1 { "query" } else { "queries" },
    );
    use std::io::Write as _;
    std::io::stdout().flush().ok();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    server
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, crate::shutdown::signal())
        .await
        .context("the Flight SQL server failed")?;
    eprintln!("stopped serving {addr}");
    Ok(())
}
