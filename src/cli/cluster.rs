//! `cimlake cluster scheduler` and `cimlake cluster executor`: a Ballista cluster from this
//! binary.

use std::net::SocketAddr;
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
        /// Address to listen on, IP:PORT (port 0 picks a free one, printed at start).
        #[arg(long, default_value = "127.0.0.1:50050", value_name = "IP:PORT")]
        bind: String,

        /// Host name or address executors reach this scheduler at [default: the --bind address;
        /// required when it is 0.0.0.0 or [::]].
        #[arg(long, value_name = "HOST")]
        external_host: Option<String>,
    },
    /// Run query tasks. Reads the lake's files from the same path as the clients.
    Executor {
        /// The scheduler to register with.
        #[arg(long, value_name = "HOST:PORT")]
        scheduler: SchedulerAddr,

        /// Address to serve results and shuffle data on, IP:PORT (Arrow Flight; port 0 picks a
        /// free one). Clients fetch results from here too.
        #[arg(long, default_value = "127.0.0.1:50051", value_name = "IP:PORT")]
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

        /// Directory in which the executor makes its shuffle directory, cimlake-executor-<id>,
        /// removed when it stops [default: the system's temporary directory].
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,

        /// Memory for this executor's tasks (e.g. 4G), split evenly between its vcores; beyond
        /// its share, a task's sorts and aggregations spill to disk [default: 70% of the
        /// machine's or container's memory].
        #[arg(long, value_parser = crate::engine::parse_size, value_name = "SIZE")]
        memory_limit: Option<usize>,

        /// Seconds to wait for the scheduler to accept connections before giving up.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        wait: u64,
    },
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    // Ballista reports through `log`: warnings and errors by default, more with RUST_LOG.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match args.role {
        Role::Scheduler { bind, external_host } => cluster::scheduler::run(&bind, external_host).await?,
        Role::Executor { scheduler, bind, grpc_port, external_host, vcores, work_dir, memory_limit, wait } => {
            let bind: SocketAddr = bind
                .parse()
                .map_err(|e| anyhow::anyhow!("--bind {bind:?}: {e} (expected IP:PORT, e.g. 0.0.0.0:50051 or [::1]:50051)"))?;
            let grpc_port = match grpc_port {
                Some(p) => p,
                None if bind.port() == 0 => 0,
                None => bind.port().checked_add(1).context("--bind port 65535 leaves no port for tasks: give --grpc-port")?,
            };
            let opts = cluster::executor::ExecutorOptions {
                scheduler,
                bind,
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
