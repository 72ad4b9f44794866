//! `cimlake cluster executor`: Ballista's executor, with cimlake's plan codec.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};

use crate::engine::codec::{LakeCodec, LakePhysicalCodec};
use super::{SchedulerAddr, host_for_url};

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler: SchedulerAddr,
    /// Where the executor serves results and shuffle data (Arrow Flight); port 0 picks a free one.
    pub bind: SocketAddr,
    /// Where the scheduler pushes tasks (gRPC); 0 picks a free one.
    pub grpc_port: u16,
    /// The host other nodes reach this executor at; by default the bind address, or for a
    /// wildcard bind the address the scheduler sees it connect from.
    pub external_host: Option<String>,
    /// Tasks run at once; by default one per core.
    pub vcores: Option<usize>,
    /// Where the executor's own shuffle directory (`cimlake-executor-<id>`) is made; by default the
    /// system's temporary directory. The directory is removed when the executor stops.
    pub work_dir: Option<PathBuf>,
    /// Memory for the executor's tasks, split evenly between its vcores; beyond its share, a task's
    /// sorts and aggregations spill.
    pub memory_limit: Option<usize>,
    /// How long to wait for the scheduler to accept connections: executors may start before it
    /// (a container deployment).
    pub wait: Duration,
}

fn free_port(ip: IpAddr) -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0)).with_context(|| format!("finding a free port on {ip}"))?;
    Ok(l.local_addr()?.port())
}

/// Waits until the scheduler accepts a TCP connection, saying so once if it does not at first.
async fn wait_for_scheduler(scheduler: &SchedulerAddr, wait: Duration) -> anyhow::Result<()> {
    let addr = scheduler.to_string();
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        let Err(err) = crate::engine::ballista::reach(&addr, Duration::from_secs(5)).await else { return Ok(()) };
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

/// Runs an executor until Ctrl-C or SIGTERM (then it tells the scheduler it is leaving). An
/// executor that stops by itself (its scheduler gone, a service failed, stopped by the
/// scheduler) returns an error, so a supervisor restarts it.
///
/// Prints `executor ID serving on IP:PORT` once its ports are chosen, and `executor ID
/// registered with HOST:PORT` once the scheduler has accepted it and it can take tasks.
pub async fn run(opts: ExecutorOptions) -> anyhow::Result<()> {
    let ip = opts.bind.ip();
    let port = if opts.bind.port() == 0 { free_port(ip)? } else { opts.bind.port() };
    let mut grpc_port = if opts.grpc_port == 0 { free_port(ip)? } else { opts.grpc_port };
    while grpc_port == port {
        grpc_port = free_port(ip)?;
    }
    let external_host = opts.external_host.as_deref().map(host_for_url).or_else(|| (!ip.is_unspecified()).then(|| host_for_url(&ip.to_string())));
    let defaults = ExecutorProcessConfig::default();
    let id = defaults.executor_id.clone();
    let health = defaults.health.clone();
    // A directory of its own: Ballista's shuffle cleaner removes every subdirectory of its work
    // directory, so it must never be one the user names.
    let work_dir = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir).join(format!("cimlake-executor-{id}"));
    std::fs::create_dir_all(&work_dir).with_context(|| format!("creating the work directory {}", work_dir.display()))?;
    let config = ExecutorProcessConfig {
        bind_host: host_for_url(&ip.to_string()),
        external_host,
        port,
        grpc_port,
        scheduler_host: opts.scheduler.host.clone(),
        scheduler_port: opts.scheduler.port,
        // Reachability is checked below; one attempt.
        scheduler_connect_timeout_seconds: 0,
        vcores: opts.vcores.unwrap_or(defaults.vcores),
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: Some(work_dir.display().to_string()),
        // The scheduler removes a finished job's shuffle files; what a lost job leaves is
        // removed a day later, checked hourly.
        job_data_ttl_seconds: 24 * 3600,
        job_data_clean_up_interval_seconds: 3600,
        grpc_max_decoding_message_size: super::GRPC_MESSAGE_BYTES as u32,
        grpc_max_encoding_message_size: super::GRPC_MESSAGE_BYTES as u32,
        memory_pool_size: opts.memory_limit.map(|b| b as u64),
        override_logical_codec: Some(Arc::new(LakeCodec::default())),
        override_physical_codec: Some(Arc::new(LakePhysicalCodec::default())),
        // Reads the lake's files by URL, from a bucket when the lake is in one (no shared file
        // system needed then).
        override_runtime_producer: Some({
            let work_dir = work_dir.clone();
            Arc::new(move |_| crate::engine::stores::runtime(datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_temp_file_path(work_dir.clone())))
        }),
        ..defaults
    };
    config.validate().context("executor settings")?;
    let outcome = async {
        wait_for_scheduler(&opts.scheduler, opts.wait).await?;
        println!("executor {id} serving on {}:{port} (tasks on port {grpc_port}), scheduler {}", host_for_url(&ip.to_string()), opts.scheduler);
        let scheduler = opts.scheduler.clone();
        let announced = id.clone();
        tokio::spawn(async move {
            while !health.is_ready() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!("executor {announced} registered with {scheduler}");
        });
        let signalled = Arc::new(AtomicBool::new(false));
        let flag = signalled.clone();
        tokio::spawn(async move {
            crate::shutdown::signal().await;
            flag.store(true, Ordering::SeqCst);
        });
        start_executor_process(Arc::new(config)).await.with_context(|| format!("executor {id} (scheduler {})", opts.scheduler))?;
        // Ballista returns Ok also when it stopped by itself; a signal is seen by both handlers.
        tokio::time::sleep(Duration::from_millis(100)).await;
        anyhow::ensure!(
            signalled.load(Ordering::SeqCst),
            "executor {id} stopped without being asked to: its scheduler {} is gone or stopped it, or one of its services failed (see the log above)",
            opts.scheduler
        );
        Ok(())
    }
    .await;
    if let Err(e) = std::fs::remove_dir_all(&work_dir) {
        eprintln!("warning: removing the work directory {}: {e}", work_dir.display());
    }
    outcome
}
