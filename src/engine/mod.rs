//! The query engine: a DataFusion [`SessionContext`] over the lake, in this process or on a
//! Ballista cluster ([`Engine`]; the tables are registered the same way on both). Every table of
//! [`crate::cim::Table`]'s registry is in the session's catalog ([`catalog`]): the CIM tables and
//! the quarantine from the ingest commits, `detections.results`, `risk.all_risk` and
//! `risk.incidents` from the current scheduled runs, and `cimlake.runs` from every run record.
//! Detection views are added above this, by [`crate::detect`].
//!
//! * [`catalog`]: the registry's tables as a DataFusion catalog;
//! * [`functions`]: SQL functions of cimlake's own (`cidr_match`);
//! * [`open_files`]: the local file system, with the files open at once bounded;
//! * [`ballista`], [`codec`]: the client of a Ballista cluster and how lake tables travel to it.

pub mod ballista;
pub mod catalog;
pub mod codec;
pub mod functions;
pub mod open_files;
pub mod stores;

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::lake::{Lake, LakeError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// `--memory-limit` with a cluster engine: executors take theirs at start.
    #[error(
        "--memory-limit applies to the in-process engine; on {engine}, give each executor its own (`cimlake cluster executor --memory-limit`)"
    )]
    MemoryLimitOnCluster { engine: Engine },
    /// No scheduler accepts connections at the address of `--engine ballista://…`. The text is
    /// the one this error has always had (it was a DataFusion execution error, hence its prefix).
    #[error(
        "Execution error: cannot reach the Ballista scheduler at {scheduler}: {reason} (start one with `cimlake cluster scheduler --bind {scheduler}`)"
    )]
    Unreachable { scheduler: ballista::SchedulerAddr, reason: ballista::ReachError },
}

/// Why an `--engine` does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseEngineError {
    #[error("unknown engine {0:?}: use in-process or ballista://HOST:PORT")]
    Unknown(String),
    #[error(transparent)]
    Scheduler(#[from] ballista::ParseSchedulerAddrError),
}

/// Why a size (`--memory-limit`, `512M`) does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSizeError {
    #[error("bad size {0:?}: use e.g. 512M or 2G")]
    NotANumber(String),
    #[error("bad size unit {unit:?} in {size:?}: use K, M or G")]
    Unit { unit: String, size: String },
    /// Under a byte, or over a petabyte.
    #[error("bad size {0:?}")]
    OutOfRange(String),
}

/// Set to `false` to read Parquet columns whole before filtering (DataFusion's own default).
pub const PUSHDOWN_ENV: &str = "DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS";

/// Where queries run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Engine {
    /// In this process (DataFusion).
    #[default]
    InProcess,
    /// On a Ballista cluster, through its scheduler ([`ballista`]).
    Ballista(ballista::SchedulerAddr),
}

impl std::str::FromStr for Engine {
    type Err = ParseEngineError;

    /// `in-process`, or `ballista://HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-process" => Ok(Engine::InProcess),
            _ => match s.strip_prefix("ballista://") {
                Some(addr) => Ok(Engine::Ballista(addr.trim_end_matches('/').parse()?)),
                None => Err(ParseEngineError::Unknown(s.to_string())),
            },
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::InProcess => f.write_str("in-process"),
            Engine::Ballista(addr) => write!(f, "ballista://{addr}"),
        }
    }
}

/// How queries run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Bytes of memory DataFusion may use for joins, aggregations and sorts; beyond it, sorts and
    /// aggregations spill to disk (see [`crate::detect::runner`] for joins). In-process only: a cluster's
    /// executors take theirs at start (`cimlake cluster executor --memory-limit`).
    pub memory_limit: Option<usize>,
    pub engine: Engine,
    /// Read the lake as it was then (`--as-of`); `None`: as it is now.
    pub as_of: Option<crate::lake::AsOf>,
}

/// A session over the lake, in process, with no limits.
pub async fn session(lake: &Lake) -> Result<SessionContext, EngineError> {
    session_with(lake, &EngineOptions::default()).await
}

/// A memory pool of `bytes`. Spilling operators share it fairly, so each spills early instead of
/// one starving the others; when it says no, the error names its five largest consumers.
pub fn memory_pool(bytes: usize) -> Arc<dyn datafusion::execution::memory_pool::MemoryPool> {
    let pool = datafusion::execution::memory_pool::FairSpillPool::new(bytes);
    Arc::new(datafusion::execution::memory_pool::TrackConsumersPool::new(pool, std::num::NonZeroUsize::new(5).expect("5")))
}

/// A session over the lake, with options. The tables are the same on either engine.
/// Whether `ctx`'s queries run on a Ballista cluster ([`session_with`] of `Engine::Ballista`).
pub fn is_cluster(ctx: &SessionContext) -> bool {
    ctx.state().config().options().extensions.get::<ballista_core::config::BallistaConfig>().is_some()
}

pub async fn session_with(lake: &Lake, opts: &EngineOptions) -> Result<SessionContext, EngineError> {
    // DataFusion's own settings may be tuned from the environment (`DATAFUSION_EXECUTION_…`).
    let mut config = SessionConfig::from_env()?
        .with_information_schema(true)
        .with_default_catalog_and_schema("datafusion", "public");
    if std::env::var_os(PUSHDOWN_ENV).is_none() {
        // Filters run inside the Parquet scan, so the other columns are decoded only for the rows
        // that pass; with the hash join's dynamic filter, a detection decodes the wide columns of
        // matching flows only (BENCHMARKS.md). Not under a memory limit: the batches such a scan
        // returns share large decoded buffers, which the memory pool counts in full for each
        // batch, so sorts run out of their share without holding much.
        config.options_mut().execution.parquet.pushdown_filters = opts.memory_limit.is_none();
    }
    let mut runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(stores::LakeStores::registry())
        .with_cache_manager(shared_caches());
    if let Some(bytes) = opts.memory_limit {
        runtime = runtime.with_memory_pool(memory_pool(bytes));
        if bytes < 256 << 20 {
            // Under a small pool, two partitions: few sorts at once, each with a larger share.
            config = config.with_batch_size(1024).with_target_partitions(2);
        }
        // What each sort sets aside to merge its spills: a small share of the pool (a detection runs
        // several sorts at once), not a fixed 10 MB.
        let exec = &mut config.options_mut().execution;
        exec.sort_spill_reservation_bytes = exec.sort_spill_reservation_bytes.min(bytes / 16);
    }
    let ctx = match &opts.engine {
        Engine::InProcess => SessionContext::new_with_config_rt(config, runtime.build_arc()?),
        Engine::Ballista(scheduler) => {
            if opts.memory_limit.is_some() {
                return Err(EngineError::MemoryLimitOnCluster { engine: opts.engine.clone() });
            }
            ballista::remote_context(scheduler, config).await?
        }
    };
    // The lake's files are read through a store that bounds the files open at once (on a
    // cluster client too: it reads nothing itself, but plans with the same stores).
    let file_url = url::Url::parse("file://").expect("a valid URL");
    ctx.runtime_env().register_object_store(&file_url, Arc::new(open_files::BoundedLocal::new()));
    if let Some(remote) = lake.remote() {
        // A lake in an object store is read through the store it was opened with.
        ctx.runtime_env().register_object_store(remote.url(), remote.store());
    }
    ctx.register_udf(functions::cidr_match_udf());
    if let Some(udf) = crate::fault::panic_udf() {
        ctx.register_udf(udf);
    }
    ctx.register_catalog("datafusion", catalog::lake_catalog(lake, opts.as_of)?);
    Ok(ctx)
}

/// The caches every session of this process shares: Parquet footers and the statistics read from
/// them, bounded by DataFusion's default limits (50 MiB and 20 MiB). Lake files are never
/// rewritten in place, and each entry is checked against the file's size and modification time,
/// so a cached entry is the file's; a server, a scheduler or a multi-detection run then reads a
/// file's footer once, not once per query. File listings are not shared: each session sees the
/// lake's files as they are when it plans.
fn shared_caches() -> datafusion::execution::cache::cache_manager::CacheManagerConfig {
    use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
    static SHARED: std::sync::OnceLock<Arc<CacheManager>> = std::sync::OnceLock::new();
    let shared = SHARED.get_or_init(|| CacheManager::try_new(&CacheManagerConfig::default()).expect("the default caches"));
    CacheManagerConfig::default()
        .with_file_statistics_cache(shared.get_file_statistic_cache())
        .with_file_metadata_cache(Some(shared.get_file_metadata_cache()))
}

/// Whether an error is the memory pool saying no, however deeply it is wrapped (a hash join's
/// build side reports it through a shared future).
pub fn is_resources_exhausted(e: &DataFusionError) -> bool {
    if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(DataFusionError::ResourcesExhausted(_)) = err.downcast_ref::<DataFusionError>() {
            return true;
        }
        cur = err.source();
    }
    e.to_string().contains("Resources exhausted")
}

/// Raises this process's soft limit on open files to its hard limit (many machines start
/// processes at 1,024, far below what a server over a lake of thousands of files may need at
/// once). Returns the soft limit now in force, where it can be read.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Some(limit.rlim_cur as u64)
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), where it can be read.
pub fn machine_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses a size: `512M`, `2G`, `64MiB`, `1048576`.
pub fn parse_size(s: &str) -> Result<usize, ParseSizeError> {
    let t = s.trim();
    let digits = t.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    let n: f64 = t[..digits].parse().map_err(|_| ParseSizeError::NotANumber(s.to_string()))?;
    let mult: f64 = match t[digits..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" | "KIB" => 1024.0,
        "M" | "MB" | "MIB" => 1024.0 * 1024.0,
        "G" | "GB" | "GIB" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(ParseSizeError::Unit { unit: other.to_string(), size: s.to_string() }),
    };
    let v = n * mult;
    if !(1.0..=1e15).contains(&v) {
        return Err(ParseSizeError::OutOfRange(s.to_string()));
    }
    Ok(v as usize)
}

#[cfg(test)]
mod engine_tests {
    use super::{Engine, ParseEngineError, ParseSizeError, parse_size};

    #[test]
    fn engines_parse_and_print_back() {
        for text in ["in-process", "ballista://10.1.2.3:50050", "ballista://[::1]:7000", "ballista://scheduler.svc:6000"] {
            let e: Engine = text.parse().unwrap();
            assert_eq!(e.to_string(), text);
        }
        assert_eq!("ballista://sched/".parse::<Engine>().unwrap().to_string(), "ballista://sched:50050");
        for bad in ["local", "ballista://", "df://host:1", "Ballista", "ballista://host:0"] {
            assert!(bad.parse::<Engine>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn engines_and_sizes_that_do_not_parse_say_why() {
        assert_eq!("local".parse::<Engine>(), Err(ParseEngineError::Unknown("local".into())));
        assert_eq!("local".parse::<Engine>().unwrap_err().to_string(), "unknown engine \"local\": use in-process or ballista://HOST:PORT");
        let err = "ballista://a:b:c".parse::<Engine>().unwrap_err();
        assert!(matches!(err, ParseEngineError::Scheduler(_)), "{err:?}");
        assert_eq!(err.to_string(), "bad scheduler address \"a:b:c\": write an IPv6 address in brackets, e.g. [::1]:50050");
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("M"), Err(ParseSizeError::NotANumber("M".into())));
        assert_eq!(parse_size("M").unwrap_err().to_string(), "bad size \"M\": use e.g. 512M or 2G");
        assert_eq!(parse_size("12x").unwrap_err().to_string(), "bad size unit \"X\" in \"12x\": use K, M or G");
        assert_eq!(parse_size("0"), Err(ParseSizeError::OutOfRange("0".into())));
        assert_eq!(parse_size("0").unwrap_err().to_string(), "bad size \"0\"");
    }
}
