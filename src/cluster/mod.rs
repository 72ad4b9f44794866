//! The cluster engine: the same detections and queries on an Apache DataFusion Ballista cluster.
//!
//! ```text
//! cimlake detect/query/schedule --engine ballista://HOST:PORT
//!     │ logical plan (protobuf; lake tables through LakeCodec)
//!     ▼
//! cimlake cluster scheduler ──plans the scans from the commit log's file list, splits the plan
//!     │                       into stages
//!     ▼ tasks
//! cimlake cluster executor × N ──read the lake's Parquet files from the shared path, shuffle
//!                                 between stages, serve results over Arrow Flight
//! ```
//!
//! The client side (a session whose plans run on the cluster, and the codec that carries the
//! lake's tables in them) is the engine's ([`crate::engine::ballista`]); this module runs the
//! cluster's processes. The scheduler and the executors are Ballista's own, started from its
//! library crates ([`scheduler`], [`executor`]) with [`crate::engine::codec::LakeCodec`] added, so
//! one binary is the whole deployment.

pub mod executor;
pub mod scheduler;

pub use crate::engine::ballista::{DEFAULT_SCHEDULER_PORT, GRPC_MESSAGE_BYTES, SchedulerAddr, host_for_url};
