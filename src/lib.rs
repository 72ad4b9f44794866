//! cimlake: Splunk-style security detections over an open Arrow/Parquet log lake.
//!
//! Data flows one way:
//!
//! ```text
//! raw logs ──convert──▶ CIM rows (Arrow) ──lake──▶ Parquet + commit log
//!                                                    │
//!           results ◀──detect (SQL, DataFusion)──────┘
//! ```
//!
//! * [`cim`]: the CIM data models as Arrow schemas, field names as constants.
//! * [`convert`]: Sysmon XmlWinEventLog text and EVTX → CIM rows.
//! * [`lake`]: Parquet layout, atomic commits, the manifest of ingested inputs, table scans.
//! * [`detect`]: detections as SQL files with metadata and macros, in two join semantics.
//! * [`engine`]: the DataFusion session over the lake, in process or on a cluster.
//! * [`cluster`]: the Ballista engine: plan codec, scheduler and executor.
//! * [`schedule`]: scheduled runs, results, risk events, incidents.
//! * [`generate`]: deterministic test and benchmark data with planted positives.
//! * [`time`]: Splunk relative time syntax.
//! * [`output`]: result formats.
//! * [`serve`]: the lake over Arrow Flight SQL.
//! * [`fuzzing`]: the fuzz targets' entry points.
//! * [`fault`]: fault injection points for the crash and race tests (`CIMLAKE_FAULT`).
//! * [`cli`]: the command line, one module per subcommand.

pub mod cim;
pub mod cli;
pub mod cluster;
pub mod convert;
pub mod detect;
pub mod engine;
pub mod fault;
pub mod fuzzing;
pub mod generate;
pub mod ingest;
pub mod lake;
pub mod output;
pub mod schedule;
pub mod serve;
pub mod shutdown;
pub mod time;
