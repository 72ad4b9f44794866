//! `cimlake cluster scheduler`: Ballista's scheduler, with cimlake's plan codec.

use std::sync::Arc;

use anyhow::Context;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::engine::codec::{LakeCodec, LakePhysicalCodec};
use super::{GRPC_MESSAGE_BYTES, host_for_url};

/// Runs a scheduler on `bind` (`IP:PORT`; port 0 picks a free one) until Ctrl-C or SIGTERM.
///
/// Executors report task results to `external_host` (and the bound port): by default the bind
/// address, which must then not be a wildcard (`0.0.0.0`, `[::]`).
///
/// Prints `scheduler listening on HOST:PORT` once clients and executors can connect.
pub async fn run(bind: &str, external_host: Option<String>) -> anyhow::Result<()> {
    let bind_addr: std::net::SocketAddr = bind
        .parse()
        .map_err(|e| anyhow::anyhow!("--bind {bind:?}: {e} (expected IP:PORT, e.g. 0.0.0.0:50050 or [::1]:50050)"))?;
    let external_host = match external_host {
        Some(h) => h,
        None if bind_addr.ip().is_unspecified() => anyhow::bail!(
            "--bind {bind} listens on every address: give --external-host, the name or address executors reach this scheduler at"
        ),
        None => bind_addr.ip().to_string(),
    };
    let listener = tokio::net::TcpListener::bind(bind_addr).await.with_context(|| format!("binding the scheduler to {bind}"))?;
    let local = listener.local_addr()?;
    let config = SchedulerConfig {
        bind_host: local.ip().to_string(),
        bind_port: local.port(),
        external_host: host_for_url(&external_host),
        // A plan names every file of each table it reads.
        grpc_server_max_decoding_message_size: GRPC_MESSAGE_BYTES as u32,
        grpc_server_max_encoding_message_size: GRPC_MESSAGE_BYTES as u32,
        override_logical_codec: Some(Arc::new(LakeCodec::default())),
        override_physical_codec: Some(Arc::new(LakePhysicalCodec::default())),
        // Plans name the lake's files by URL; a lake in an object store is listed from the bucket.
        override_session_builder: Some(Arc::new(|config| {
            let state = ballista_core::utils::default_session_builder(config)?;
            let runtime = crate::engine::stores::runtime(datafusion::execution::runtime_env::RuntimeEnvBuilder::from_runtime_env(state.runtime_env()))?;
            let state = datafusion::execution::SessionStateBuilder::new_from_existing(state).with_runtime_env(runtime).build();
            // Plans cimlake's own plan nodes (the Sigma rules' matcher) too.
            Ok(crate::engine::codec::with_node_planner(state))
        })),
        ..Default::default()
    };
    config.validate().context("scheduler settings")?;
    let cluster = BallistaCluster::new_from_config(&config).await.context("starting the scheduler's cluster state")?;
    let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
        .await
        .context("starting the scheduler")?;
    println!("scheduler listening on {local}");
    tokio::select! {
        served = start_grpc_service_with_listener(listener, server) => served.context("the scheduler's gRPC service stopped")?,
        () = crate::shutdown::signal() => eprintln!("scheduler on {local}: stopping"),
    }
    Ok(())
}
