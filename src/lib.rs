//! cimlake: Splunk-style security detections over an open Arrow/Parquet log lake.
//!
//! Data flows one way:
//!
//! ```text
//! raw logs ──ingest (convert)──▶ CIM rows (Arrow) ──lake──▶ Parquet + commit log
//!                                                            │
//!   results, risk ◀──detect (SQL, DataFusion / Ballista)─────┘
//! ```
//!
//! Modules, top to bottom: a module uses only those below it (no cycles).
//!
//! ```text
//! cli                                     the command line
//! serve   schedule   cluster              services: Flight SQL, scheduled runs, Ballista nodes
//! generate           ingest               data in: generated, or raw logs through the converters
//! detect                                  detections: catalog, runner, check, results and risk
//! engine                                  DataFusion sessions over the lake, in process or on Ballista
//! lake               convert              storage; raw log formats to CIM rows
//! cim                                     the tables: registry, schemas, row builders
//! time   output   shutdown   fault   fuzzing (uses convert)
//! ```
//!
//! * [`cim`]: every table the lake holds, declared once (SQL name, place in the lake, schema, row
//!   type and builder), and the CIM field names.
//! * [`convert`]: the input formats ([`convert::formats::FORMATS`]: XmlWinEventLog, EVTX, Windows
//!   event JSON, Cisco NVM) and containers → CIM rows.
//! * [`lake`]: the on-disk layout, atomic commits, transactions, run records, table scans.
//! * [`ingest`]: finds inputs, skips those already in the lake, converts and commits each one.
//! * [`engine`]: the DataFusion session and catalog over the lake, in process or on Ballista.
//! * [`detect`]: detections as data (SQL files, metadata, macros) in two join semantics; the one
//!   runner used by every command; `--check`; results and risk events.
//! * [`schedule`]: cron, windows, checkpoints, late data, publishing runs, the daemon loop.
//! * [`cluster`]: the Ballista scheduler and executor processes.
//! * [`serve`]: the lake over Arrow Flight SQL.
//! * [`generate`]: deterministic test and benchmark data with planted positives.
//! * [`time`]: Splunk relative time syntax, time windows.
//! * [`output`]: result formats, escaping of what is printed.
//! * [`shutdown`]: the signals that stop a long-running command.
//! * [`fault`]: fault injection points for the crash and race tests (`CIMLAKE_FAULT`).
//! * [`fuzzing`]: the fuzz targets' entry points.
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
pub mod report;
pub mod schedule;
pub mod serve;
pub mod shutdown;
pub mod time;
