//! `cimlake cluster executor`: Ballista's executor, with cimlake's plan codec.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};

use super::SchedulerAddr;
use super::codec::LakeCodec;

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler: SchedulerAddr,
    /// Where the executor serves results and shuffle data (Arrow Flight); port 0 picks a free one.
    pub bind_host: String,
    pub port: u16,
    /// Where the scheduler pushes tasks (gRPC); 0 picks a free one.
    pub grpc_port: u16,
    /// The host other nodes reach this executor at; by default the bind host, or for a wildcard
    /// bind the address the scheduler sees it connect from.
    pub external_host: Option<String>,
    /// Tasks run at once; by default one per core.
    pub vcores: Option<usize>,
    /// Shuffle files; by default a temporary directory.
    pub work_dir: Option<PathBuf>,
    /// Memory shared by the executor's tasks; beyond it, sorts and aggregations spill.
    pub memory_limit: Option<usize>,
    /// How long to wait for the scheduler to accept connections: executors may start before it
    /// (a container deployment).
    pub wait: Duration,
}

fn free_port(host: &str) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind((host, 0)).with_context(|| format!("finding a free port on {host}"))?;
    Ok(l.local_addr()?.port())
}

/// Waits until the scheduler accepts a TCP connection, saying so once if it does not at first.
async fn wait_for_scheduler(scheduler: &SchedulerAddr, wait: Duration) -> anyhow::Result<()> {
    let addr = scheduler.to_string();
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        let err = match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in 5 s".to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("no Ballista scheduler at {addr} after {} s: {err}", wait.as_secs());
        }
        if !said {
            eprintln!("waiting for the scheduler at {addr} ({err}); trying for {} s", wait.as_secs());
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs an executor until Ctrl-C, SIGTERM or a stop from the scheduler.
///
/// Prints `executor ID serving on HOST:PORT` once bound, and `executor ID registered with
/// HOST:PORT` once the scheduler has accepted it and it can take tasks.
pub async fn run(opts: ExecutorOptions) -> anyhow::Result<()> {
    let port = if opts.port == 0 { free_port(&opts.bind_host)? } else { opts.port };
    let mut grpc_port = if opts.grpc_port == 0 { free_port(&opts.bind_host)? } else { opts.grpc_port };
    while grpc_port == port {
        grpc_port = free_port(&opts.bind_host)?;
    }
    let wildcard = opts.bind_host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    let external_host = opts.external_host.clone().or_else(|| (!wildcard).then(|| opts.bind_host.clone()));
    let defaults = ExecutorProcessConfig::default();
    let id = defaults.executor_id.clone();
    let health = defaults.health.clone();
    let config = ExecutorProcessConfig {
        bind_host: opts.bind_host.clone(),
        external_host,
        port,
        grpc_port,
        scheduler_host: opts.scheduler.host.clone(),
        scheduler_port: opts.scheduler.port,
        // Reachability was checked above; one attempt.
        scheduler_connect_timeout_seconds: 0,
        vcores: opts.vcores.unwrap_or(defaults.vcores),
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: opts.work_dir.as_ref().map(|p| p.display().to_string()),
        // Shuffle files of finished jobs are removed a day later, checked hourly.
        job_data_ttl_seconds: 24 * 3600,
        job_data_clean_up_interval_seconds: 3600,
        memory_pool_size: opts.memory_limit.map(|b| b as u64),
        override_logical_codec: Some(Arc::new(LakeCodec::default())),
        ..defaults
    };
    if let Some(dir) = &opts.work_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the work directory {}", dir.display()))?;
    }
    wait_for_scheduler(&opts.scheduler, opts.wait).await?;
    println!("executor {id} serving on {}:{port} (tasks on port {grpc_port}), scheduler {}", opts.bind_host, opts.scheduler);
    let scheduler = opts.scheduler.clone();
    tokio::spawn(async move {
        while !health.is_ready() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("executor {id} registered with {scheduler}");
    });
    start_executor_process(Arc::new(config)).await.with_context(|| format!("executor (scheduler {})", opts.scheduler))?;
    Ok(())
}
