//! `cimlake cluster scheduler` and `cimlake cluster executor`: a Ballista cluster from this
//! binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cluster::{self, SchedulerAddr};

#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Role {
    /// Plan queries and hand their tasks to executors. Clients connect with
    /// `--engine ballista://HOST:PORT`.
    Scheduler {
        /// Address to listen on (port 0 picks a free one, printed at start).
        #[arg(long, default_value = "127.0.0.1:50050", value_name = "HOST:PORT")]
        bind: String,
    },
    /// Run query tasks. Reads the lake's files from the same path as the clients.
    Executor {
        /// The scheduler to register with.
        #[arg(long, value_name = "HOST:PORT")]
        scheduler: SchedulerAddr,

        /// Address to serve results and shuffle data on (Arrow Flight; port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:50051", value_name = "HOST:PORT")]
        bind: String,

        /// Port the scheduler pushes tasks to [default: the next port after --bind's].
        #[arg(long, value_name = "PORT")]
        grpc_port: Option<u16>,

        /// Host name other nodes reach this executor at [default: the bind host; for 0.0.0.0,
        /// the address the scheduler sees].
        #[arg(long, value_name = "HOST")]
        external_host: Option<String>,

        /// Tasks run at once [default: one per core].
        #[arg(long)]
        vcores: Option<usize>,

        /// Directory for shuffle files [default: a temporary directory].
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,

        /// Memory shared by this executor's tasks (e.g. 4G); beyond it, sorts and aggregations
        /// spill to disk.
        #[arg(long, value_parser = crate::engine::parse_size, value_name = "SIZE")]
        memory_limit: Option<usize>,

        /// Seconds to wait for the scheduler to accept connections before giving up.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        wait: u64,
    },
}

/// Splits `HOST:PORT` (or `[IPv6]:PORT`) into host and port.
fn split_bind(bind: &str) -> anyhow::Result<(String, u16)> {
    let addr: SchedulerAddr = bind.parse().map_err(|e: String| anyhow::anyhow!(e.replace("scheduler address", "--bind")))?;
    anyhow::ensure!(bind.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()), "--bind {bind:?}: expected HOST:PORT");
    Ok((addr.host, addr.port))
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.role {
        Role::Scheduler { bind } => cluster::scheduler::run(&bind).await?,
        Role::Executor { scheduler, bind, grpc_port, external_host, vcores, work_dir, memory_limit, wait } => {
            let (bind_host, port) = split_bind(&bind)?;
            let grpc_port = match grpc_port {
                Some(p) => p,
                None if port == 0 => 0,
                None => port.checked_add(1).context("--bind port 65535 leaves no port for tasks: give --grpc-port")?,
            };
            let opts = cluster::executor::ExecutorOptions {
                scheduler,
                bind_host,
                port,
                grpc_port,
                external_host,
                vcores,
                work_dir,
                memory_limit,
                wait: std::time::Duration::from_secs(wait),
            };
            cluster::executor::run(opts).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
