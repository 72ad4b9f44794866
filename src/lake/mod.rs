//! The lake: Parquet files laid out by table and time, and the records that say which files are
//! part of it: commits (ingested inputs) and runs (scheduled detections).
//!
//! # On-disk layout
//!
//! This is the one description of it; the constants below and the table registry
//! ([`crate::cim::Table::lake_dir`]) define every path in it.
//!
//! ```text
//! LAKE/
//!   endpoint/processes/_delta_log/                                               each ingested table as a
//!                                                                                Delta table ([`delta`])
//!   endpoint/processes/date=2026-11-03/hour=14/<input>-<session>-<n>.parquet    ingested rows,
//!   network_traffic/all_traffic/date=…/hour=…/…                                  one file per input,
//!   quarantine/records/date=…/hour=…/…                                           table and hour
//!   detections/results/detection=<name>/date=…/<run-id>.parquet     written by scheduled runs,
//!   risk/all_risk/date=…/<run-id>.parquet                            one file per run and table
//!   risk/incidents/date=…/<run-id>.parquet
//!   detections/results/_delta_log/, risk/…/_delta_log/              each as a Delta table
//!                                                                   following the runs
//!   cimlake/runs/_delta_log/, cimlake/runs/runs-<seq>.parquet        `cimlake.runs` as a Delta
//!                                                                   table, for outside readers
//!   _cimlake/                                 [`META_DIR`]: the lake's own records, each
//!                                             kind a Delta table of numbered JSON records
//!                                             ([`records`]): `_delta_log/` and one
//!                                             `00000042-<token>.parquet` per record
//!     commits/                                [`COMMITS_DIR`]: one per ingested input: its content
//!                                             hash, shapes, stats and data files ([`Commit`])
//!     compactions/                            [`COMPACTIONS_DIR`]: one per `lake optimize`: the
//!                                             files it merged and the ones it wrote ([`Compaction`])
//!     optimize.lock                           [`OPTIMIZE_LOCK`]: held while it runs
//!     runs/                                   [`RUNS_DIR`]: one per scheduled run: job, window,
//!                                             status, counts and files ([`runs::RunRecord`])
//!     schedule/<detection>.<mode>.json        [`SCHEDULE_DIR`]: the scheduler's checkpoint per job
//!     staging/<session>/                      [`STAGING_DIR`]: files being written by one ingest
//!                                             process (never read)
//!     staging/<session>.lock                  held by that process while it lives
//! ```
//!
//! cimlake reads `cimlake.runs` from `_cimlake/runs/` (its Delta table is for outside readers).
//!
//! # Guarantees
//!
//! A file becomes part of the lake only when a commit or run naming it is published, and a record
//! is published by one Delta commit of its record table: readers see a whole input or nothing of
//! it. The commits together are the manifest of ingested inputs, keyed by content hash, so
//! ingesting the same bytes twice adds nothing, even from two processes at once: every publish
//! carries the same Delta application transaction, so Delta's conflict check lets one of two
//! writers in and sends the other back to look again ([`records::publish`]). Data file names carry
//! the ingest session, so two sessions never write the same path. A session killed mid-way leaves
//! files no commit names, which no reader reads; `lake vacuum` removes them once the session is dead
//! and the files are older than its retention period ([`maintenance`]). Every path read
//! from a record is checked to be a data file of a table before anything reads or removes it. The
//! ingested tables' Delta logs follow the commits and are never ahead of them ([`delta`]).
//!
//! A lake may also be in an object store (`s3://bucket/prefix`, [`remote`]): the same layout under
//! the prefix, Delta log entries created by conditional puts instead of links, and data files
//! staged in a local directory ([`Lake::root`]) and uploaded before the commit naming them.

pub mod delta;
pub(crate) mod delta_store;
pub mod maintenance;
pub mod records;
pub mod remote;
mod runtime;
pub mod runs;
pub mod table;
pub mod transaction;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cim::Table;
use crate::cim::stats::Stats;

pub use transaction::{Outcome, Transaction, Transactions};

/// The lake's own records (see the layout above).
pub const META_DIR: &str = "_cimlake";
/// Published commits, one per ingested input.
pub const COMMITS_DIR: &str = "_cimlake/commits";
/// Published run records, one per scheduled run.
pub const RUNS_DIR: &str = "_cimlake/runs";
/// Published compactions (`lake optimize`), one per run of it.
pub const COMPACTIONS_DIR: &str = "_cimlake/compactions";
/// Held while `lake optimize` runs.
pub const OPTIMIZE_LOCK: &str = "_cimlake/optimize.lock";
/// The scheduler's checkpoints.
pub const SCHEDULE_DIR: &str = "_cimlake/schedule";
/// Ingest sessions' staging areas.
pub const STAGING_DIR: &str = "_cimlake/staging";

/// Errors of the lake layer, each naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: unreadable commit: {source}")]
    BadCommit { path: PathBuf, source: serde_json::Error },
    /// A record (commit, compaction, run) that names a file outside the lake's tables.
    #[error("{path}: refused: {reason}")]
    BadRecord { path: PathBuf, reason: String },
    #[error("writing Parquet {path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
    /// Reading or writing a table's Delta log.
    #[error("{path}: Delta log: {source}")]
    Delta { path: PathBuf, source: Box<deltalake_core::DeltaTableError> },
    /// A lock held by another process doing the same thing.
    #[error("{path}: {reason}")]
    Busy { path: PathBuf, reason: String },
    /// `--as-of` a commit the lake does not have.
    #[error("{path}: as of commit {asked}: the lake has {has} commit(s)")]
    NoSuchCommit { path: PathBuf, asked: u64, has: u64 },
    /// `--as-of` a point whose files `lake vacuum` removed.
    #[error("{path}: as of {as_of}: its files were replaced by compaction {compaction} ({at}) and removed by `lake vacuum` after its retention period; the lake can be read as of that compaction or later")]
    Vacuumed { path: PathBuf, as_of: AsOf, compaction: u64, at: String },
    /// A lake whose records are still JSON files: made by a cimlake before the record tables.
    #[error("{path}: this lake keeps its records as JSON files, as lakes made by an earlier cimlake do; run `cimlake lake upgrade` (it moves them into Delta tables, keeping every record)")]
    OldLayout { path: PathBuf },
    /// A `--lake` that names no place a lake can be.
    #[error("lake {location}: {reason}")]
    BadLocation { location: String, reason: String },
    /// A request to the object store a lake is in.
    #[error("{location}: {source}")]
    Store { location: PathBuf, source: Box<object_store::Error> },
    #[error("splitting a batch by hour: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl LakeError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        LakeError::Io { path: path.to_path_buf(), source }
    }
}

/// The directories data files may be in, relative to the lake: each table's.
fn table_dirs() -> impl Iterator<Item = &'static str> {
    Table::ALL_TABLES.into_iter().filter_map(Table::lake_dir)
}

/// Checks a data file path read from one of the lake's own records: relative, made of plain
/// names only (no `..`, no root, no `.`), under a table's directory and ending in `.parquet`.
/// Records are files on disk like any input; one that names `../../etc/x` must not make a query
/// read it or an ingest delete it.
pub(crate) fn check_data_path(rel: &str) -> Result<(), BadDataPath> {
    use std::path::Component;
    let path = Path::new(rel);
    let plain = !rel.is_empty() && !rel.contains('\0') && path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(BadDataPath::NotPlain(rel.to_string()));
    }
    if !table_dirs().any(|dir| path.starts_with(dir)) || path.extension().is_none_or(|e| e != "parquet") {
        return Err(BadDataPath::NotTableFile(rel.to_string()));
    }
    Ok(())
}

/// A path in one of the lake's own records that is not one of its data files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDataPath {
    #[error("it names {0:?}, which is not a plain path inside the lake")]
    NotPlain(String),
    #[error("it names {0:?}, which is not a Parquet file of a lake table")]
    NotTableFile(String),
}

/// `Err` naming `record` unless every file it lists passes [`check_data_path`].
pub(crate) fn check_files(record: &Path, files: &[DataFile]) -> Result<(), LakeError> {
    for f in files {
        check_data_path(&f.path).map_err(|e| LakeError::BadRecord { path: record.to_path_buf(), reason: e.to_string() })?;
    }
    Ok(())
}

/// One Parquet file of the lake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// `endpoint.processes` or `network_traffic.all_traffic`.
    pub table: String,
    /// Path relative to the lake root.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// Smallest and largest `_time` in the file (µs since the epoch, UTC).
    pub min_time: i64,
    pub max_time: i64,
}

/// An ingested input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// The path as given when it was ingested.
    pub path: String,
    /// BLAKE3 of the file's bytes as they were converted, hex.
    pub hash: String,
    /// BLAKE3 of its first 64 KiB, hex: with `bytes`, what a new input is compared on before it
    /// is read whole (absent from commits made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_hash: Option<String>,
    pub bytes: u64,
    /// `gzip`, `zip`, `tar`, `tar.gz`, or none for a plain file.
    pub container: Option<String>,
    /// The shapes (sourcetypes) of the files it held, e.g. `XmlWinEventLog`.
    pub sourcetypes: Vec<String>,
    pub stats: Stats,
}

/// One published commit: an input and the files it added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub id: u64,
    /// RFC 3339, UTC.
    pub committed_at: String,
    pub input: InputRecord,
    pub files: Vec<DataFile>,
}

/// A point in the lake's past that a query reads the lake as of (`--as-of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Right after lake commit N: inputs 1..=N, and the runs that finished before commit N+1.
    Commit(u64),
    /// At a time (µs since the epoch, UTC): the commits published and runs finished by then.
    Time(i64),
}

impl std::fmt::Display for AsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsOf::Commit(n) => write!(f, "commit {n}"),
            AsOf::Time(us) => match chrono::DateTime::from_timestamp_micros(*us) {
                Some(t) => f.write_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                None => write!(f, "{us} µs"),
            },
        }
    }
}

/// One `lake optimize`: files of ingested tables replaced by fewer files holding the same rows.
/// The replaced files stay on disk (`--as-of` an earlier point reads them) until `lake vacuum`
/// removes them after its retention period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    pub id: u64,
    /// RFC 3339, UTC.
    pub committed_at: String,
    /// The last lake commit when it ran: every file it replaced is of a commit up to this one.
    pub through_commit: u64,
    pub removed: Vec<DataFile>,
    pub added: Vec<DataFile>,
}

/// What a reader sees of the lake (now or as of a point): the commits, the run records and the
/// ingested tables' data files (the commits' files, with compactions applied).
#[derive(Debug, Clone, Default)]
pub struct LakeView {
    pub commits: Vec<Commit>,
    pub compactions: Vec<Compaction>,
    pub runs: Vec<runs::RunRecord>,
}

impl LakeView {
    /// The data files of the ingested tables: every commit's, less those compactions replaced,
    /// plus the ones they wrote.
    pub fn ingested_files(&self) -> Vec<DataFile> {
        let removed: std::collections::HashSet<&str> = self.compactions.iter().flat_map(|c| c.removed.iter().map(|f| f.path.as_str())).collect();
        let mut files: Vec<DataFile> = self.commits.iter().flat_map(|c| c.files.iter()).filter(|f| !removed.contains(f.path.as_str())).cloned().collect();
        files.extend(self.compactions.iter().flat_map(|c| c.added.iter()).filter(|f| !removed.contains(f.path.as_str())).cloned());
        files
    }
}

/// A lake: a directory, or a prefix in an object store ([`remote`]).
#[derive(Debug, Clone)]
pub struct Lake {
    /// The lake's directory; for a lake in an object store, the local directory its ingests
    /// stage files in before they are uploaded.
    root: PathBuf,
    remote: Option<std::sync::Arc<remote::Remote>>,
    /// The lake's record tables as this process has read them.
    records: std::sync::Arc<records::Logs>,
}

impl Lake {
    /// A lake at `root`; nothing is created until something is written.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Lake { root: root.into(), remote: None, records: Default::default() }
    }

    /// The lake `--lake` names: a directory (a path or `file://` URL) or an object store URL
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`). A lake in an object store stages files in
    /// `$CIMLAKE_STAGING`, else in a directory under the system's temporary directory, one per
    /// lake URL.
    pub fn open(location: &Path) -> Result<Lake, LakeError> {
        let arg = location.to_string_lossy();
        let Some(url) = remote::parse_location(&arg)? else {
            if arg.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("file://")) {
                let url = url::Url::parse(&arg).map_err(|e| LakeError::BadLocation { location: arg.to_string(), reason: e.to_string() })?;
                let path = url
                    .to_file_path()
                    .map_err(|()| LakeError::BadLocation { location: arg.to_string(), reason: "not a local path".to_string() })?;
                return Ok(Lake::new(path));
            }
            return Ok(Lake::new(location));
        };
        let key = blake3::hash(url.as_str().as_bytes()).to_hex()[..16].to_string();
        let staging = std::env::var_os("CIMLAKE_STAGING").map_or_else(|| std::env::temp_dir().join("cimlake-staging"), PathBuf::from);
        let remote = remote::Remote::open(url)?;
        Ok(Lake { root: staging.join(key), remote: Some(std::sync::Arc::new(remote)), records: Default::default() })
    }

    /// The lake's directory (for a lake in an object store, its local staging directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object store the lake is in, if it is in one.
    pub fn remote(&self) -> Option<&remote::Remote> {
        self.remote.as_deref()
    }

    /// The lake as users name it: its directory or its URL.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(r) => r.url().to_string(),
            None => self.root.display().to_string(),
        }
    }

    /// The URL that paths relative to the lake are resolved against (ends in `/`).
    pub fn base_url(&self) -> Result<url::Url, LakeError> {
        if let Some(r) = &self.remote {
            return Ok(r.url().clone());
        }
        let abs = normalize(&std::path::absolute(&self.root).map_err(|e| LakeError::io(&self.root, e))?);
        url::Url::from_directory_path(&abs).map_err(|()| LakeError::BadLocation { location: abs.display().to_string(), reason: "not a path a URL can name".to_string() })
    }

    /// How errors name a record directory of the lake (`_cimlake/commits`).
    fn record_dir(&self, dir: &str) -> PathBuf {
        match &self.remote {
            Some(r) => r.display(dir),
            None => self.root.join(dir),
        }
    }

    fn commits_dir(&self) -> PathBuf {
        self.record_dir(COMMITS_DIR)
    }

    pub(crate) fn staging_dir(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }

    /// Whether the lake has records yet (commits or runs).
    pub fn exists(&self) -> bool {
        match &self.remote {
            // An unreachable store is reported by whatever reads it next.
            Some(_) => records::last(self, COMMITS_DIR).map(|(n, _)| n > 0).unwrap_or(true) || records::last(self, RUNS_DIR).map(|(n, _)| n > 0).unwrap_or(true),
            None => self.root.join(META_DIR).is_dir(),
        }
    }

    /// The records of `dir` numbered after `after`, in order, wherever the lake is.
    pub(crate) fn records_after<T: serde::de::DeserializeOwned>(&self, dir: &'static str, after: u64, files: impl Fn(&T) -> Vec<&[DataFile]>) -> Result<Vec<T>, LakeError> {
        records::read_after(self, dir, after, files)
    }

    /// Every published commit, in commit order.
    pub fn commits(&self) -> Result<Vec<Commit>, LakeError> {
        self.records_after(COMMITS_DIR, 0, |c: &Commit| vec![&c.files])
    }

    /// Commit `id`.
    pub fn commit(&self, id: u64) -> Result<Commit, LakeError> {
        let found = self.records_after(COMMITS_DIR, id.saturating_sub(1), |c: &Commit| vec![&c.files])?.into_iter().find(|c| c.id == id);
        found.ok_or_else(|| LakeError::NoSuchCommit { path: self.commits_dir(), asked: id, has: records::last(self, COMMITS_DIR).map_or(0, |(n, _)| n) })
    }

    /// Every published compaction, in order.
    pub fn compactions(&self) -> Result<Vec<Compaction>, LakeError> {
        self.records_after(COMPACTIONS_DIR, 0, |c: &Compaction| vec![&c.added, &c.removed])
    }

    /// What a reader sees: the whole lake, or the lake as it was at `as_of`.
    pub fn view(&self, as_of: Option<AsOf>) -> Result<LakeView, LakeError> {
        let (mut commits, mut compactions, mut runs) = (self.commits()?, self.compactions()?, self.runs()?);
        let Some(as_of) = as_of else { return Ok(LakeView { commits, compactions, runs }) };
        let all_compactions = compactions.clone();
        let commit_us = |c: &Commit| committed_us(&c.committed_at, &self.commits_dir(), c.id);
        let compaction_us = |c: &Compaction| committed_us(&c.committed_at, &self.record_dir(COMPACTIONS_DIR), c.id);
        let runs_before = match as_of {
            AsOf::Commit(n) => {
                let has = commits.last().map_or(0, |c| c.id);
                if n > has {
                    return Err(LakeError::NoSuchCommit { path: self.commits_dir(), asked: n, has });
                }
                let next = commits.iter().find(|c| c.id > n).map(commit_us).transpose()?;
                commits.retain(|c| c.id <= n);
                // A compaction of later commits' files holds rows this view has not.
                compactions.retain(|c| c.through_commit <= n);
                next
            }
            AsOf::Time(t) => {
                let mut kept = Vec::with_capacity(commits.len());
                for c in commits {
                    if commit_us(&c)? <= t {
                        kept.push(c);
                    }
                }
                commits = kept;
                let mut kept = Vec::with_capacity(compactions.len());
                for c in compactions {
                    if compaction_us(&c)? <= t {
                        kept.push(c);
                    }
                }
                compactions = kept;
                Some(t.saturating_add(1))
            }
        };
        if let Some(before) = runs_before {
            runs.retain(|r| r.finished_us < before);
        }
        // The files a later compaction replaced are read as of this point; vacuum may have removed
        // them once that compaction passed its retention period.
        let view = LakeView { commits, compactions, runs };
        let reads: std::collections::HashSet<String> = view.ingested_files().into_iter().map(|f| f.path).collect();
        for later in all_compactions.iter().filter(|k| !view.compactions.iter().any(|c| c.id == k.id)) {
            if let Some(f) = later.removed.iter().find(|f| reads.contains(&f.path))
                && !self.data_file_exists(&f.path)?
            {
                return Err(LakeError::Vacuumed { path: self.record_dir(COMPACTIONS_DIR), as_of, compaction: later.id, at: later.committed_at.clone() });
            }
        }
        Ok(view)
    }

    /// Whether a data file of the lake is there.
    fn data_file_exists(&self, rel: &str) -> Result<bool, LakeError> {
        match &self.remote {
            Some(r) => r.exists(rel),
            None => Ok(self.root.join(rel).exists()),
        }
    }

    /// The data files of one ingested table now (compactions applied).
    pub fn files(&self, table: Table) -> Result<Vec<DataFile>, LakeError> {
        Ok(self.view(None)?.ingested_files().into_iter().filter(|f| f.table == table.qualified_name()).collect())
    }

    /// A cheap marker of what the lake has published: the Delta versions of its record tables
    /// (commits and compactions, and runs). They only grow, so a new marker means new data or
    /// new files.
    pub fn version(&self) -> Result<(i64, i64), LakeError> {
        let commits = records::last(self, COMMITS_DIR)?.1 + records::last(self, COMPACTIONS_DIR)?.1;
        Ok((commits, records::last(self, RUNS_DIR)?.1))
    }

    /// Commits after `id`, in commit order (only their files are read).
    pub fn commits_after(&self, id: u64) -> Result<Vec<Commit>, LakeError> {
        self.records_after(COMMITS_DIR, id, |c: &Commit| vec![&c.files])
    }

    /// Publishes the commit of an input, unless a commit of the same bytes (same hash) is in the
    /// lake, published by this process or another ([`records::publish`]: Delta's conflict check
    /// keeps two writers from publishing at once). `known` is brought up to date before each try
    /// by reading only the commits it has not seen. In an object store, the files (staged under
    /// the local root) are uploaded first; the uploads are removed when the input turns out to be
    /// in already, or on an error.
    pub(crate) fn publish_input(&self, mut commit: Commit, known: &std::sync::Mutex<KnownInputs>) -> Result<Published, LakeError> {
        let hash = commit.input.hash.clone();
        let mut already = None;
        // What this process read of the commits just before (a commit published since makes the
        // publish fail, and the next try reads it).
        let mut look = |known: &mut KnownInputs| -> Result<bool, LakeError> {
            known.catch_up_cached(self)?;
            already = known.get(&hash).cloned();
            Ok(already.is_some())
        };
        let rels: Vec<String> = commit.files.iter().map(|f| f.path.clone()).collect();
        let mut uploaded = false;
        let mut outcome = || -> Result<Option<Commit>, LakeError> {
            if let Some(remote) = &self.remote {
                // A first look, at the lake as it is now: an input in it already is not uploaded.
                known.lock().expect("no panics while held").catch_up(self)?;
                if look(&mut known.lock().expect("no panics while held"))? {
                    return Ok(None);
                }
                // The uploads hold no lock: the jobs of one ingest upload at once.
                for rel in &rels {
                    remote.upload(&self.root.join(rel), rel)?;
                }
                uploaded = true;
                crate::fault::point("ingest-after-upload");
            }
            let key = format!("{}{hash}", delta_store::INPUT_APP_ID_PREFIX);
            records::publish(self, COMMITS_DIR, |next| {
                if look(&mut known.lock().expect("no panics while held"))? {
                    return Ok(None);
                }
                commit.id = next;
                Ok(Some((commit.clone(), vec![key.clone()])))
            })
        };
        let outcome = outcome();
        if let Some(remote) = &self.remote {
            match &outcome {
                Ok(Some(_)) => {
                    // The staged copies, and the directories that leaves empty.
                    for rel in &rels {
                        let path = self.root.join(rel);
                        let _ = std::fs::remove_file(&path);
                        let mut dir = path.parent();
                        while let Some(d) = dir.filter(|d| d.starts_with(&self.root) && *d != self.root) {
                            if std::fs::remove_dir(d).is_err() {
                                break;
                            }
                            dir = d.parent();
                        }
                    }
                }
                _ if uploaded => remote.delete(&rels),
                _ => {}
            }
        }
        match outcome? {
            Some(commit) => {
                known.lock().expect("no panics while held").add(&commit);
                Ok(Published::New(Box::new(commit)))
            }
            None => Ok(Published::Already(already.expect("set when nothing was published"))),
        }
    }

    /// Brings every table's Delta log up to the lake's records: the ingested tables' to the commit
    /// log ([`delta::publish`]), the tables scheduled runs write to the run records
    /// ([`delta::publish_derived`]). A lake without commits is left as it is.
    pub fn publish_tables(&self) -> Result<Vec<delta::Published>, LakeError> {
        let mut out = self.publish_ingest_tables()?;
        out.extend(self.publish_run_tables()?);
        Ok(out)
    }

    /// Brings the Delta logs of the tables ingest writes up to the commit log.
    pub fn publish_ingest_tables(&self) -> Result<Vec<delta::Published>, LakeError> {
        self.publishing(delta::publish)
    }

    /// Brings the Delta logs of the tables scheduled runs write up to the run records.
    pub fn publish_run_tables(&self) -> Result<Vec<delta::Published>, LakeError> {
        self.publishing(delta::publish_derived)
    }

    /// Runs a Delta publish. Two publishers at once (two processes) make one of them lose its
    /// Delta commit (both carry the same application transaction): it reads the log again and
    /// takes in what is still missing.
    fn publishing(&self, publish: fn(&Lake) -> Result<Vec<delta::Published>, LakeError>) -> Result<Vec<delta::Published>, LakeError> {
        if !self.exists() {
            return Ok(Vec::new());
        }
        let mut tries = 0;
        loop {
            match publish(self) {
                Err(LakeError::Delta { source, .. })
                    if tries < 50 && matches!(*source, deltalake_core::DeltaTableError::Transaction { .. } | deltalake_core::DeltaTableError::VersionAlreadyExists(_)) =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5 * tries));
                }
                other => break other,
            }
        }
    }
}

/// The inputs already in a lake, by content hash, as far as commit `last`.
#[derive(Debug, Default)]
pub(crate) struct KnownInputs {
    last: u64,
    by_hash: HashMap<String, IngestedAs>,
    /// (size, head hash) of each input; the head hash is `None` for commits that did not record it.
    by_head: std::collections::HashSet<(u64, Option<String>)>,
}

/// Where an input already in the lake came in.
#[derive(Debug, Clone)]
pub struct IngestedAs {
    pub commit_id: u64,
    /// The path it was ingested from.
    pub path: String,
}

impl KnownInputs {
    /// Every input in the lake now.
    pub(crate) fn load(lake: &Lake) -> Result<KnownInputs, LakeError> {
        let mut known = KnownInputs::default();
        known.catch_up(lake)?;
        Ok(known)
    }

    /// Adds the commits published since the last look.
    fn catch_up(&mut self, lake: &Lake) -> Result<(), LakeError> {
        for c in lake.commits_after(self.last)? {
            self.add(&c);
        }
        Ok(())
    }

    /// [`KnownInputs::catch_up`] from the commits this process has read, without reading the
    /// lake again.
    fn catch_up_cached(&mut self, lake: &Lake) -> Result<(), LakeError> {
        for c in records::read_after_cached(lake, COMMITS_DIR, self.last, |c: &Commit| vec![&c.files])? {
            self.add(&c);
        }
        Ok(())
    }

    fn add(&mut self, c: &Commit) {
        self.last = self.last.max(c.id);
        self.by_hash.entry(c.input.hash.clone()).or_insert(IngestedAs { commit_id: c.id, path: c.input.path.clone() });
        self.by_head.insert((c.input.bytes, c.input.head_hash.clone()));
    }

    /// Whether an input of `bytes` bytes whose head hashes to `head_hash` may be in the lake (it
    /// is then hashed whole to find out).
    pub(crate) fn maybe(&self, bytes: u64, head_hash: &str) -> bool {
        self.by_head.contains(&(bytes, Some(head_hash.to_string()))) || self.by_head.contains(&(bytes, None))
    }

    pub(crate) fn get(&self, hash: &str) -> Option<&IngestedAs> {
        self.by_hash.get(hash)
    }
}

/// A record's `committed_at` (RFC 3339) in µs since the epoch; an error names record `id` in
/// `dir`.
pub(crate) fn committed_us(at: &str, dir: &Path, id: u64) -> Result<i64, LakeError> {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| t.timestamp_micros())
        .map_err(|e| LakeError::BadRecord { path: dir.to_path_buf(), reason: format!("record {id}: committed_at {at:?}: {e}") })
}

/// What [`Lake::publish_input`] did.
#[derive(Debug)]
pub(crate) enum Published {
    New(Box<Commit>),
    /// Another commit of the same bytes was there first.
    Already(IngestedAs),
}

/// One ingest process's staging area. It holds `<session>.lock` while it lives, so `lake vacuum`
/// can tell a dead session's leftovers from a running one's.
#[derive(Debug)]
pub struct IngestSession {
    /// Short, unique per process and start time; part of every data file name it writes.
    pub token: String,
    dir: PathBuf,
    _lock: std::fs::File,
}

impl IngestSession {
    /// Starts a session. What dead sessions left (their staging, and data files they moved into
    /// the lake that no commit names) stays until `lake vacuum` removes it.
    pub fn begin(lake: &Lake) -> Result<IngestSession, LakeError> {
        let staging = lake.staging_dir();
        std::fs::create_dir_all(&staging).map_err(|e| LakeError::io(&staging, e))?;
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let seed = format!("{}-{nanos}-{n}", std::process::id());
        let token = blake3::hash(seed.as_bytes()).to_hex()[..8].to_string();
        let lock_path = staging.join(format!("{token}.lock"));
        let lock = std::fs::File::create(&lock_path).map_err(|e| LakeError::io(&lock_path, e))?;
        lock.lock().map_err(|e| LakeError::io(&lock_path, e))?;
        let dir = staging.join(&token);
        std::fs::create_dir_all(&dir).map_err(|e| LakeError::io(&dir, e))?;
        Ok(IngestSession { token, dir, _lock: lock })
    }

    /// The staging directory of one writer of this session.
    pub(crate) fn staging_for(&self, stem: &str) -> PathBuf {
        self.dir.join(stem)
    }

}

impl Drop for IngestSession {
    /// Removes the session's staging, and the staging and metadata directories if that leaves
    /// them empty (an ingest that added nothing to a new lake leaves nothing behind).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("lock"));
        if let Some(staging) = self.dir.parent() {
            let _ = std::fs::remove_dir(staging);
            if let Some(meta) = staging.parent() {
                let _ = std::fs::remove_dir(meta);
            }
        }
    }
}

/// The lake's ingest sessions, by their `staging/<token>.lock`.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// The tokens of the live ones: the lock is held (or the file cannot be opened: nothing of
    /// those is touched).
    pub live: Vec<String>,
    /// The lock files of the dead ones, each with its lock now held by the caller.
    pub dead: Vec<(PathBuf, std::fs::File)>,
}

pub(crate) fn sessions(lake: &Lake) -> Result<Sessions, LakeError> {
    let staging = lake.staging_dir();
    let entries = match std::fs::read_dir(&staging) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Sessions::default()),
        Err(e) => return Err(LakeError::io(&staging, e)),
    };
    let (mut live, mut dead) = (Vec::new(), Vec::new());
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "lock") {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(f) if f.try_lock().is_ok() => dead.push((path, f)),
                _ => live.extend(path.file_stem().map(|s| s.to_string_lossy().into_owned())),
            }
        }
    }
    Ok(Sessions { live, dead })
}

/// `a/./b/../c` as `a/c`, lexically: the lake's URL must not depend on directories that exist
/// only here (a cluster's nodes resolve it themselves), and symbolic links are left to each node.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Makes a rename or link in `dir` durable (best effort: not every platform allows it).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::check_data_path;
    use super::{COMMITS_DIR, Lake, LakeError, RUNS_DIR};

    /// A damaged commit or run record is an error naming its file, never a panic, whatever it
    /// holds: cut short, wrong types, absurd numbers, a path out of the lake.
    #[test]
    fn damaged_records_are_errors_naming_their_file() {
        let absurd_run = r#"{"seq":18446744073709551615,"run_id":"r","job":"j","search_name":"s","mode":"x","trigger":"t",
            "scheduled_us":-9223372036854775808,"earliest_us":9223372036854775807,"latest_us":-9223372036854775808,
            "started_us":-9223372036854775808,"finished_us":9223372036854775807,"status":"ok","error":null,"rows_read":{"\u0000":1},"results":0,
            "risk_events":0,"incidents":0,"files":[],"result_columns":["_time","_time",""]}"#;
        let cases: [(&str, &str, Option<&str>); 6] = [
            (COMMITS_DIR, "{\"id\": 1, \"committed_at\": ", Some("unreadable commit")),
            (COMMITS_DIR, r#"{"id": "one", "committed_at": 5, "input": [], "files": {}}"#, Some("unreadable commit")),
            (COMMITS_DIR, "\u{0}\u{ff}\u{fe}", Some("unreadable commit")),
            (RUNS_DIR, "[1, 2", Some("unreadable commit")),
            (RUNS_DIR, r#"{"seq": 1, "files": [{"table": "x", "path": "../../etc/passwd", "rows": 0, "bytes": 0, "min_time": 0, "max_time": 0}]}"#, Some("")),
            // Absurd but well-formed: read as it is (what it names is checked where it is used).
            (RUNS_DIR, absurd_run, None),
        ];
        for (dir, text, error) in cases {
            let root = tempfile::tempdir().unwrap();
            super::records::publish_raw(&Lake::new(root.path()), dir, text);
            let file = record_file(&root.path().join(dir));
            // A new process reads it from its table.
            let lake = Lake::new(root.path());
            let read = if dir == COMMITS_DIR { lake.commits().map(|c| c.len()) } else { lake.runs().map(|r| r.len()) };
            match (read, error) {
                (Err(e), Some(what)) => {
                    let shown = e.to_string();
                    assert!(shown.starts_with(&file.display().to_string()), "{text}: {shown}");
                    assert!(shown.contains(what), "{text}: {shown}");
                    assert!(matches!(e, LakeError::BadCommit { .. } | LakeError::BadRecord { .. }), "{text}: {e:?}");
                }
                (Ok(n), None) => {
                    assert_eq!(n, 1);
                    let runs = lake.runs().unwrap();
                    crate::lake::runs::runs_batch(&runs).unwrap();
                }
                (other, _) => panic!("{text}: {other:?}"),
            }
        }
    }

    /// The one record file in a record table's directory.
    fn record_file(dir: &std::path::Path) -> std::path::PathBuf {
        let files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    }

    /// A record file that is not one (damaged on disk) is an error naming it; so is a lake whose
    /// records are still JSON files, which names the command that upgrades it.
    #[test]
    fn a_damaged_record_file_and_a_lake_of_json_records_are_errors_naming_them() {
        let root = tempfile::tempdir().unwrap();
        super::records::publish_raw(&Lake::new(root.path()), RUNS_DIR, "{}");
        let file = record_file(&root.path().join(RUNS_DIR));
        std::fs::write(&file, b"PAR1 not really").unwrap();
        let e = Lake::new(root.path()).runs().unwrap_err();
        assert!(matches!(e, LakeError::BadRecord { .. }), "{e:?}");
        assert!(e.to_string().starts_with(&file.display().to_string()), "{e}");

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(COMMITS_DIR)).unwrap();
        std::fs::write(root.path().join(COMMITS_DIR).join("00000001.json"), "{}").unwrap();
        let e = Lake::new(root.path()).commits().unwrap_err();
        assert!(matches!(e, LakeError::OldLayout { .. }), "{e:?}");
        assert!(e.to_string().contains("run `cimlake lake upgrade`"), "{e}");
    }

    #[test]
    fn only_plain_paths_to_table_files_pass() {
        for ok in ["endpoint/processes/date=2026-11-03/hour=14/a-b-0.parquet", "risk/all_risk/date=2026-11-03/r.parquet", "quarantine/records/x.parquet"] {
            assert!(check_data_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x.parquet",
            "endpoint/processes/../../../x.parquet",
            "/etc/passwd",
            "/endpoint/processes/x.parquet",
            "./endpoint/processes/x.parquet",
            "endpoint/processes/x.parquet\0",
            "_cimlake/commits/00000001.json",
            "endpoint/processes/x.json",
            "endpoint/processesX/x.parquet",
        ] {
            assert!(check_data_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
