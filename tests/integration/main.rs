//! cimlake's integration tests: one test binary (one link of DataFusion) with a module per area.
//!
//! * `cli`: every subcommand end to end through the `cimlake` binary.
//! * `contributing`: the checklists of CONTRIBUTING.md (add a detection, a format, a table), done.
//! * `cluster`: a Ballista scheduler and two executors give the in-process engine's rows.
//! * `parallel`: parallel and split ingest give the lake a one-job ingest gives.
//! * `hostile`: input written to hurt: bad records counted and located, memory and time bounded.
//! * `serve`: a Flight SQL server queried with the ADBC driver from Python gives `cimlake query`'s rows.
//! * `serve_hostile`: forged handles, lying IPC, panics, password guessing and many clients over
//!   thousands of files: clean errors, and the server goes on with bounded memory and descriptors.
//! * `safety`: ingests killed mid-way, concurrent ingests, queries during an ingest.
//! * `s3`: a lake in S3 (a real S3-compatible server on loopback): every command, a cluster, races
//!   and kills, and an outside Delta reader, with the rows of a lake on disk.
//! * `report`: `cimlake report` opened in headless Chromium: hits, process trees, filters, the
//!   timeline's pixels; caps and errors.
//! * `sigma`: Sigma rule directories listed, checked, shown and run; SigmaHQ's regression tests.
//! * `corpus`: the measured facts of the public samples in `../shared/corpus`.
//! * `slt`: the `.slt` files in `tests/slt`, run against a lake built from `data/logs/sysmon`.
//! * `snapshots`: the stdout of the README's main commands on the bundled samples, pinned with
//!   `insta` (`tests/integration/snapshots/`).

mod cli;
mod cluster;
mod common;
mod contributing;
mod corpus;
mod delta;
mod escu;
mod generate;
mod hostile;
mod parallel;
mod report;
mod safety;
mod s3;
mod schedule;
mod serve;
mod serve_hostile;
mod sigma;
mod slt;
mod snapshots;
