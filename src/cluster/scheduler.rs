//! `cimlake cluster scheduler`: Ballista's scheduler, with cimlake's plan codec.

use std::sync::Arc;

use anyhow::Context;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use super::codec::LakeCodec;

/// Runs a scheduler on `bind` (`HOST:PORT`; port 0 picks a free one) until Ctrl-C or SIGTERM.
///
/// Prints `scheduler listening on HOST:PORT` once clients and executors can connect.
pub async fn run(bind: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("binding the scheduler to {bind}"))?;
    let local = listener.local_addr()?;
    let config = SchedulerConfig {
        bind_host: local.ip().to_string(),
        bind_port: local.port(),
        external_host: local.ip().to_string(),
        override_logical_codec: Some(Arc::new(LakeCodec::default())),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await.context("starting the scheduler's cluster state")?;
    let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
        .await
        .context("starting the scheduler")?;
    println!("scheduler listening on {local}");
    tokio::select! {
        served = start_grpc_service_with_listener(listener, server) => served.context("the scheduler's gRPC service stopped")?,
        () = super::shutdown_signal() => eprintln!("scheduler on {local}: stopping"),
    }
    Ok(())
}
