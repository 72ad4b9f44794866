//! The lake's own records as Delta tables: the commits (`_cimlake/commits`), the compactions
//! (`_cimlake/compactions`) and the run records (`_cimlake/runs`).
//!
//! Each is a Delta table of two columns, `id` (the record's number: commit 1, 2, …) and
//! `record` (the record as JSON: [`super::Commit`], [`super::Compaction`],
//! [`super::runs::RunRecord`]), one Parquet file per record (`00000042-<token>.parquet`). A
//! record is published by one Delta commit that adds its file and carries the application
//! transaction [`NUMBER_APP_ID`] with the record's number as its version, plus any the caller
//! adds (a commit carries [`super::delta_store::INPUT_APP_ID_PREFIX`] and its input's content hash).
//!
//! Delta's own concurrency control is what numbers records and keeps an input from being
//! committed twice: every publish carries the same application transaction, so of two writers
//! that read the table at the same version and both publish, Delta's conflict check lets one in
//! and turns the other away (`ConcurrentTransaction`). The one turned away removes its file,
//! reads the records it missed, asks its caller again (is the input in the lake now?) and
//! publishes with the next number. On a local disk the Delta log entry is created by a link that
//! fails if the name exists; in an object store by a conditional put (`If-None-Match: *`).
//!
//! A file the Delta log does not name (a writer killed before its Delta commit, or turned away)
//! is never read; `lake vacuum` removes it once older than its retention period.
//!
//! Lakes made before these tables kept each record as a JSON file (`_cimlake/commits/
//! 00000001.json`); such a lake is read only by `cimlake lake upgrade`, which moves the records
//! into the tables ([`import_legacy`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, StructType, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::logstore::LogStoreRef;
use deltalake_core::table::state::DeltaTableState;
use deltalake_core::{DeltaTable, DeltaTableError};

use super::delta_store::{INPUT_APP_ID_PREFIX, TableLocation, remove_unpartitioned};
use super::runtime::block_on;
use super::{DataFile, Lake, LakeError, check_files};

/// The application transaction every record's Delta commit carries; its version is the record's
/// number, so a table's last number is in its log.
pub const NUMBER_APP_ID: &str = "cimlake.record";

/// What this process has read of one record table: the table at the version last read, and the
/// records of the files it names (read once each: a record file never changes).
#[derive(Default)]
pub(crate) struct Log {
    table: Option<Table>,
    /// By file name (relative to the table): its records, `(id, json)`.
    files: HashMap<String, Vec<(u64, Arc<str>)>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("version", &self.table.as_ref().map(|t| t.state.version())).field("files", &self.files.len()).finish()
    }
}

/// A record table at one version, and its log store.
struct Table {
    state: DeltaTableState,
    store: LogStoreRef,
}

impl Table {
    fn of(t: &DeltaTable) -> Result<Table, DeltaTableError> {
        Ok(Table { state: t.snapshot()?.clone(), store: t.log_store() })
    }
}

/// The records of each table this process has read, shared by the clones of a [`Lake`].
#[derive(Debug, Default)]
pub(crate) struct Logs {
    tables: std::sync::Mutex<HashMap<&'static str, Log>>,
    /// Held while this process publishes a record: its threads take turns (other processes are
    /// kept apart by Delta's conflict check).
    publishing: std::sync::Mutex<()>,
}

/// One record as read: its number, the file it is in, its JSON.
#[derive(Debug, Clone)]
struct Row {
    id: u64,
    file: String,
    json: Arc<str>,
}

/// The records of table `dir` numbered after `after`, in order, parsed; `files` gives the lists of
/// data files each names, which are checked ([`check_files`]).
pub(crate) fn read_after<T: serde::de::DeserializeOwned>(
    lake: &Lake,
    dir: &'static str,
    after: u64,
    files: impl Fn(&T) -> Vec<&[DataFile]>,
) -> Result<Vec<T>, LakeError> {
    let (_, rows) = refresh(lake, dir)?;
    parse(lake, dir, rows, after, files)
}

/// [`read_after`] of what this process read last, without looking at the table again: what a
/// publish asks its caller with (the table was read just before; a record published since makes
/// the publish fail and ask again).
pub(crate) fn read_after_cached<T: serde::de::DeserializeOwned>(
    lake: &Lake,
    dir: &'static str,
    after: u64,
    files: impl Fn(&T) -> Vec<&[DataFile]>,
) -> Result<Vec<T>, LakeError> {
    let rows = lake.records.tables.lock().expect("no panics while held").get(dir).map(Log::rows).unwrap_or_default();
    parse(lake, dir, rows, after, files)
}

fn parse<T: serde::de::DeserializeOwned>(lake: &Lake, dir: &'static str, rows: Vec<Row>, after: u64, files: impl Fn(&T) -> Vec<&[DataFile]>) -> Result<Vec<T>, LakeError> {
    let mut out = Vec::new();
    for row in rows.into_iter().filter(|r| r.id > after) {
        let path = file_name(lake, dir, &row.file);
        let record: T = serde_json::from_str(&row.json).map_err(|source| LakeError::BadCommit { path: path.clone(), source })?;
        for listed in files(&record) {
            check_files(&path, listed)?;
        }
        out.push(record);
    }
    Ok(out)
}

/// The number of the last record of table `dir` (0: none), and the table's Delta version (a
/// marker that changes with every publish).
pub(crate) fn last(lake: &Lake, dir: &'static str) -> Result<(u64, i64), LakeError> {
    let (version, rows) = refresh(lake, dir)?;
    Ok((rows.last().map_or(0, |r| r.id), version))
}

/// The record tables.
pub(crate) const DIRS: [&str; 3] = [super::COMMITS_DIR, super::COMPACTIONS_DIR, super::RUNS_DIR];

/// The files table `dir` names now (relative to it).
pub(crate) fn live_files(lake: &Lake, dir: &'static str) -> Result<HashSet<String>, LakeError> {
    let (_, rows) = refresh(lake, dir)?;
    let mut live: HashSet<String> = rows.into_iter().map(|r| r.file).collect();
    // A file of no rows is named too.
    if let Some(log) = lake.records.tables.lock().expect("no panics while held").get(dir) {
        live.extend(log.files.keys().cloned());
    }
    Ok(live)
}

/// How errors name a record file.
fn file_name(lake: &Lake, dir: &str, file: &str) -> PathBuf {
    match lake.remote() {
        Some(r) => r.display(&format!("{dir}/{file}")),
        None => lake.root().join(dir).join(file),
    }
}

/// How errors name a record table.
fn table_name(lake: &Lake, dir: &str) -> PathBuf {
    match lake.remote() {
        Some(r) => r.display(dir),
        None => lake.root().join(dir),
    }
}

/// Brings this process's copy of table `dir` up to its latest version: its Delta version (-1
/// when it has no log) and every record in it, in number order. A lake whose records of `dir` are
/// still JSON files is refused ([`LakeError::OldLayout`]).
fn refresh(lake: &Lake, dir: &'static str) -> Result<(i64, Vec<Row>), LakeError> {
    refresh_with(lake, dir, true)
}

/// [`refresh`], refusing a lake of JSON records only when `legacy_check`.
fn refresh_with(lake: &Lake, dir: &'static str, legacy_check: bool) -> Result<(i64, Vec<Row>), LakeError> {
    let mut logs = lake.records.tables.lock().expect("no panics while held");
    let log = logs.entry(dir).or_default();
    let loc = TableLocation::at(lake, dir)?;
    let delta_error = |source| LakeError::Delta { path: loc.name.clone(), source: Box::new(source) };
    let table = match log.table.take() {
        Some(mut t) => {
            block_on(async move {
                t.state.update(t.store.as_ref(), None).await?;
                Ok::<_, DeltaTableError>(t)
            })
            .map_err(delta_error)?
        }
        None => match load(&loc).map_err(delta_error)? {
            Some(t) => Table::of(&t).map_err(delta_error)?,
            None => {
                if legacy_check && has_legacy(lake, dir)? {
                    return Err(LakeError::OldLayout { path: table_name(lake, dir) });
                }
                return Ok((-1, Vec::new()));
            }
        },
    };
    let live: Vec<String> = table.state.log_data().into_iter().map(|f| f.path().to_string()).collect();
    let version = table.state.version() as i64;
    log.table = Some(table);
    let live_set: HashSet<&str> = live.iter().map(String::as_str).collect();
    log.files.retain(|f, _| live_set.contains(f.as_str()));
    for file in live.iter().filter(|f| !log.files.contains_key(*f)).cloned().collect::<Vec<_>>() {
        let rel = format!("{dir}/{file}");
        let bytes = match lake.remote() {
            Some(r) => r.get(&rel)?.ok_or_else(|| LakeError::io(&file_name(lake, dir, &file), std::io::ErrorKind::NotFound.into()))?,
            None => {
                let path = lake.root().join(&rel);
                bytes::Bytes::from(std::fs::read(&path).map_err(|e| LakeError::io(&path, e))?)
            }
        };
        let rows = decode(bytes).map_err(|reason| LakeError::BadRecord { path: file_name(lake, dir, &file), reason })?;
        log.files.insert(file, rows);
    }
    Ok((version, log.rows()))
}

impl Log {
    /// Every record read, in number order.
    fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> =
            self.files.iter().flat_map(|(file, rows)| rows.iter().map(|(id, json)| Row { id: *id, file: file.clone(), json: json.clone() })).collect();
        rows.sort_by_key(|r| r.id);
        rows
    }

    /// The number of the last record read.
    fn last(&self) -> u64 {
        self.files.values().flat_map(|rows| rows.iter().map(|(id, _)| *id)).max().unwrap_or(0)
    }
}

/// The table at `loc`, or `None` when it has no Delta log.
fn load(loc: &TableLocation) -> Result<Option<DeltaTable>, DeltaTableError> {
    if let Ok(path) = loc.url.to_file_path()
        && !path.join("_delta_log").is_dir()
    {
        return Ok(None);
    }
    let builder = loc.builder()?;
    block_on(async move {
        match builder.load().await {
            Ok(t) => Ok(Some(t)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e),
        }
    })
}

/// The columns of a record table.
fn arrow_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("record", DataType::Utf8, false)]))
}

/// The records of one record file.
fn decode(bytes: bytes::Bytes) -> Result<Vec<(u64, Arc<str>)>, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let column = |name: &str, to: &DataType| -> Result<ArrayRef, String> {
            let c = batch.column_by_name(name).ok_or_else(|| format!("not a record file: no column {name:?}"))?;
            arrow::compute::cast(c, to).map_err(|e| format!("column {name:?}: {e}"))
        };
        let (ids, records) = (column("id", &DataType::Int64)?, column("record", &DataType::Utf8)?);
        let ids = ids.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
        let records = records.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
        for i in 0..batch.num_rows() {
            if ids.is_null(i) || records.is_null(i) || ids.value(i) < 1 {
                return Err(format!("row {}: a record needs a number of 1 or more and a text", i + 1));
            }
            out.push((ids.value(i) as u64, Arc::from(records.value(i))));
        }
    }
    Ok(out)
}

/// One Parquet file of `rows`.
fn encode(rows: &[(u64, String)]) -> Vec<u8> {
    let ids = Int64Array::from_iter_values(rows.iter().map(|(id, _)| i64::try_from(*id).unwrap_or(i64::MAX)));
    let records = StringArray::from_iter_values(rows.iter().map(|(_, json)| json.as_str()));
    let batch = RecordBatch::try_new(arrow_schema(), vec![Arc::new(ids), Arc::new(records)]).expect("columns match the schema");
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).expect("a writer over memory");
    w.write(&batch).expect("writing to memory");
    w.close().expect("writing to memory");
    out
}

/// Publishes one record in table `dir`. `attempt` is given the next free number and returns the
/// record to publish with it and the application ids (besides [`NUMBER_APP_ID`]) its Delta commit
/// carries, or `None` to publish nothing (an input found in the lake meanwhile). When another
/// writer publishes first, `attempt` is asked again with the next number.
pub(crate) fn publish<T: serde::Serialize>(
    lake: &Lake,
    dir: &'static str,
    mut attempt: impl FnMut(u64) -> Result<Option<(T, Vec<String>)>, LakeError>,
) -> Result<Option<T>, LakeError> {
    let _turn = lake.records.publishing.lock().expect("no panics while held");
    let mut conflicts = 0u32;
    loop {
        // The first try starts from the table as this process last read or wrote it; a try that
        // lost reads it again.
        let cached = lake.records.tables.lock().expect("no panics while held").get(dir).filter(|l| l.table.is_some()).map(Log::last);
        let last = match cached {
            Some(n) if conflicts == 0 => n,
            _ => last(lake, dir)?.0,
        };
        let Some((record, keys)) = attempt(last + 1)? else { return Ok(None) };
        let json = serde_json::to_string(&record).expect("serialises");
        match write(lake, dir, &[(last + 1, json)], &keys, Write::Append) {
            Ok(()) => {
                merge_files(lake, dir);
                return Ok(Some(record));
            }
            Err(Conflict::Lost) if conflicts < 10_000 => {
                conflicts += 1;
                // Many writers at once: wait a little, longer the more often this one lost.
                std::thread::sleep(std::time::Duration::from_micros(u64::from(conflicts.min(50)) * 200));
            }
            Err(Conflict::Lost) => {
                return Err(LakeError::Busy { path: table_name(lake, dir), reason: "other writers published first 10,000 times in a row".into() });
            }
            Err(Conflict::Error(e)) => return Err(e),
        }
    }
}

/// Publishes `json` as record 1 of table `dir`, whatever it holds (for tests of damaged records).
#[cfg(test)]
pub(crate) fn publish_raw(lake: &Lake, dir: &'static str, json: &str) {
    assert!(write(lake, dir, &[(1, json.to_string())], &[], Write::Append).is_ok());
}

/// A record table whose Delta log names this many files has them merged into one.
const MERGE_AT_FILES: usize = 64;

/// Merges the files of table `dir` into one once it has [`MERGE_AT_FILES`] (one Delta version
/// that removes them and adds the merged file, `dataChange: false`): a record is one file when it
/// is published, and a table of many files costs every reader, and every publish, a file each.
/// Best effort: when another writer publishes first, the merge waits for a later publish. The
/// merged files stay on disk for readers of earlier versions until `lake vacuum`.
fn merge_files(lake: &Lake, dir: &'static str) {
    let (files, rows) = {
        let logs = lake.records.tables.lock().expect("no panics while held");
        let Some(log) = logs.get(dir) else { return };
        if log.files.len() < MERGE_AT_FILES || log.table.is_none() {
            return;
        }
        (log.files.keys().cloned().collect::<Vec<_>>(), log.rows())
    };
    let rows: Vec<(u64, String)> = rows.into_iter().map(|r| (r.id, r.json.to_string())).collect();
    let _ = write(lake, dir, &rows, &[], Write::Merge(files));
}

/// What a [`write`] does.
enum Write {
    /// Adds records numbered after the table's last.
    Append,
    /// Imports records of a legacy lake (`lake upgrade`).
    Upgrade,
    /// Replaces these files by one holding the same records.
    Merge(Vec<String>),
}

/// Why a record was not published.
enum Conflict {
    /// Another writer published a record first.
    Lost,
    Error(LakeError),
}

/// Writes `rows` as one file of table `dir` and adds it in one Delta commit (creating the table
/// first when it has none) that carries [`NUMBER_APP_ID`] at the last row's number and `keys`.
/// The table must not have changed since this process last read it, else [`Conflict::Lost`]
/// (and the file is removed).
fn write(lake: &Lake, dir: &'static str, rows: &[(u64, String)], keys: &[String], how: Write) -> Result<(), Conflict> {
    let loc = TableLocation::at(lake, dir).map_err(Conflict::Error)?;
    let delta_error = |source: DeltaTableError| -> Conflict {
        if matches!(source, DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_)) {
            return Conflict::Lost;
        }
        Conflict::Error(LakeError::Delta { path: loc.name.clone(), source: Box::new(source) })
    };
    let (first, last) = (rows[0].0, rows.last().expect("at least one record").0);
    let token = {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        blake3::hash(format!("{}-{nanos}-{n}", std::process::id()).as_bytes()).to_hex()[..8].to_string()
    };
    let file = format!("{last:08}-{token}.parquet");
    let rel = format!("{dir}/{file}");
    let bytes = encode(rows);
    let size = bytes.len() as i64;
    match lake.remote() {
        Some(r) => r.put(&rel, bytes).map_err(Conflict::Error)?,
        None => {
            let path = lake.root().join(&rel);
            let dir_path = lake.root().join(dir);
            std::fs::create_dir_all(&dir_path).map_err(|e| Conflict::Error(LakeError::io(&dir_path, e)))?;
            write_synced(&path, &bytes).map_err(|e| Conflict::Error(LakeError::io(&path, e)))?;
        }
    }
    let remove = || match lake.remote() {
        Some(r) => r.delete(std::slice::from_ref(&rel)),
        None => {
            let _ = std::fs::remove_file(lake.root().join(&rel));
        }
    };
    crate::fault::point("record-before-commit");
    // The table and the records as read together: the records must follow on from them.
    let table = {
        let mut logs = lake.records.tables.lock().expect("no panics while held");
        let log = logs.entry(dir).or_default();
        let follows = match &how {
            Write::Merge(files) => log.last() == last && files.iter().all(|f| log.files.contains_key(f)),
            Write::Append | Write::Upgrade => log.last() + 1 == first,
        };
        match log.table.take() {
            Some(t) if !follows => {
                log.table = Some(t);
                remove();
                return Err(Conflict::Lost);
            }
            t => t,
        }
    };
    let merging = matches!(how, Write::Merge(_));
    if merging && table.is_none() {
        remove();
        return Err(Conflict::Lost);
    }
    let add = Add {
        path: file.clone(),
        partition_values: HashMap::new(),
        size,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: !merging,
        stats: Some(format!(r#"{{"numRecords":{}}}"#, rows.len())),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    };
    let mut txns = vec![Transaction::new(NUMBER_APP_ID, i64::try_from(last).unwrap_or(i64::MAX))];
    txns.extend(keys.iter().map(|k| Transaction::new(k.clone(), i64::try_from(last).unwrap_or(i64::MAX))));
    let about = [("cimlake.records".to_string(), serde_json::json!([first, last]))];
    let removed: Vec<String> = match &how {
        Write::Merge(files) => files.clone(),
        _ => Vec::new(),
    };
    let mut actions: Vec<Action> = removed
        .iter()
        .map(|f| Action::Remove(remove_unpartitioned(f, false)))
        .collect();
    actions.push(Action::Add(add));
    let op = match how {
        Write::Append => DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None },
        Write::Upgrade => DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: Some("imported from the JSON records".into()) },
        Write::Merge(_) => DeltaOperation::Optimize { predicate: None, target_size: 0 },
    };
    let committed = block_on({
        let loc = loc.clone();
        async move {
            let t = match table {
                Some(t) => t,
                None => {
                    // Not read by this process yet (or made now): its last number from its log.
                    let t = create(&loc).await?;
                    let have = t.snapshot()?.transaction_version(t.log_store().as_ref(), NUMBER_APP_ID).await?;
                    if have.unwrap_or(0) != i64::try_from(first).unwrap_or(i64::MAX) - 1 {
                        return Ok(None);
                    }
                    Table::of(&t)?
                }
            };
            let props = CommitProperties::default().with_application_transactions(txns).with_metadata(about).with_cleanup_expired_logs(Some(false));
            // No retries: a table that moved since it was read, or a concurrent commit, is a
            // conflict this caller resolves itself.
            let done = CommitBuilder::from(props.with_max_retries(0)).with_actions(actions).build(Some(&t.state), t.store.clone(), op).await?;
            Ok::<_, DeltaTableError>(Some(Table { state: done.snapshot(), store: t.store }))
        }
    });
    match committed {
        Ok(Some(t)) => {
            let mut logs = lake.records.tables.lock().expect("no panics while held");
            let log = logs.entry(dir).or_default();
            // The table as this commit left it, with its records: the next publish of this process
            // starts from there without reading the table again (Delta refuses it if another
            // writer published meanwhile).
            log.table = Some(t);
            for f in &removed {
                log.files.remove(f);
            }
            log.files.insert(file, rows.iter().map(|(id, json)| (*id, Arc::from(json.as_str()))).collect());
            Ok(())
        }
        Ok(None) => {
            remove();
            Err(Conflict::Lost)
        }
        Err(e) => {
            remove();
            Err(delta_error(e))
        }
    }
}

/// Writes a file and makes its bytes durable before it is named anywhere.
fn write_synced(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Makes the record table at `loc` (or finds the one another writer made at the same time).
async fn create(loc: &TableLocation) -> Result<DeltaTable, DeltaTableError> {
    let schema: StructType = arrow_schema().as_ref().try_into_kernel()?;
    deltalake_core::operations::create::CreateBuilder::new()
        .with_location(loc.url.to_string())
        .with_log_store(loc.builder()?.build_storage()?)
        .with_table_name(loc.url.path().trim_end_matches('/').rsplit('/').next().unwrap_or("records").to_string())
        .with_comment("cimlake's records (README, \"The lake\"): one JSON record per row, numbered by `id`")
        .with_columns(schema.fields().cloned())
        .with_save_mode(SaveMode::Ignore)
        .await
}

/// Whether table `dir`'s records are still JSON files (`00000001.json`), as lakes made before
/// the record tables keep them.
fn has_legacy(lake: &Lake, dir: &str) -> Result<bool, LakeError> {
    Ok(!legacy_names(lake, dir)?.is_empty())
}

/// The legacy JSON records of `dir`, by number.
fn legacy_names(lake: &Lake, dir: &str) -> Result<BTreeMap<u64, String>, LakeError> {
    let number = |name: &str| -> Option<u64> { (name.len() == 13).then_some(())?; name.strip_suffix(".json")?.parse().ok() };
    let mut out = BTreeMap::new();
    match lake.remote() {
        Some(r) => {
            for (rel, _, _) in r.list(dir)? {
                let Some(name) = rel.strip_prefix(&format!("{dir}/")) else { continue };
                if let Some(n) = number(name) {
                    out.insert(n, rel.clone());
                }
            }
        }
        None => {
            let path = lake.root().join(dir);
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(n) = number(&name) {
                    out.insert(n, format!("{dir}/{name}"));
                }
            }
        }
    }
    Ok(out)
}

/// `lake upgrade` of a lake whose records of `dir` are JSON files: those the table lacks are
/// added to it in one Delta commit (their numbers kept), then the JSON files are removed. A run
/// cut short anywhere is finished by the next. Returns how many records it moved.
pub(crate) fn import_legacy(lake: &Lake, dir: &'static str, key: impl Fn(&serde_json::Value) -> Option<String>) -> Result<usize, LakeError> {
    let names = legacy_names(lake, dir)?;
    if names.is_empty() {
        return Ok(0);
    }
    let mut moved = 0;
    loop {
        let have = last_without_legacy_check(lake, dir)?;
        let mut rows = Vec::new();
        let mut keys = Vec::new();
        for (n, rel) in names.range(have + 1..) {
            let bytes = match lake.remote() {
                Some(r) => r.get(rel)?.ok_or_else(|| LakeError::io(&table_name(lake, rel), std::io::ErrorKind::NotFound.into()))?.to_vec(),
                None => std::fs::read(lake.root().join(rel)).map_err(|e| LakeError::io(&lake.root().join(rel), e))?,
            };
            let path = table_name(lake, rel);
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|source| LakeError::BadCommit { path: path.clone(), source })?;
            keys.extend(key(&value));
            rows.push((*n, serde_json::to_string(&value).expect("serialises")));
        }
        if rows.is_empty() {
            break;
        }
        // The numbers must follow on from the table's.
        if rows[0].0 != have + 1 {
            return Err(LakeError::BadRecord {
                path: table_name(lake, dir),
                reason: format!("record {} is missing (the JSON records go from {} to {})", have + 1, rows[0].0, rows.last().expect("not empty").0),
            });
        }
        let count = rows.len();
        match write(lake, dir, &rows, &keys, Write::Upgrade) {
            Ok(()) => {
                moved = count;
                break;
            }
            Err(Conflict::Lost) => continue,
            Err(Conflict::Error(e)) => return Err(e),
        }
    }
    // Every record is in the table now; the JSON copies go (the table is what is read).
    let rels: Vec<String> = names.into_values().collect();
    match lake.remote() {
        Some(r) => r.delete_all(&rels)?,
        None => {
            for rel in rels {
                let path = lake.root().join(rel);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(LakeError::io(&path, e)),
                }
            }
        }
    }
    Ok(moved)
}

/// The last record number of table `dir` (0 when it has none, or no table), read without the
/// legacy check.
fn last_without_legacy_check(lake: &Lake, dir: &'static str) -> Result<u64, LakeError> {
    let (_, rows) = refresh_with(lake, dir, false)?;
    Ok(rows.last().map_or(0, |r| r.id))
}

impl Lake {
    /// `lake upgrade` of the records: for each record table whose records are still JSON files,
    /// moves them into its Delta table ([`import_legacy`]); returns the tables and how many
    /// records each took in. The lock file those lakes kept goes too.
    pub fn upgrade_records(&self) -> Result<Vec<(&'static str, usize)>, LakeError> {
        let input_key = |v: &serde_json::Value| v.pointer("/input/hash").and_then(|h| h.as_str()).map(|h| format!("{INPUT_APP_ID_PREFIX}{h}"));
        let mut out = Vec::new();
        for dir in DIRS {
            let moved = if dir == super::COMMITS_DIR { import_legacy(self, dir, input_key)? } else { import_legacy(self, dir, |_| None)? };
            if moved > 0 {
                out.push((dir, moved));
            }
        }
        if self.remote().is_none() {
            let _ = std::fs::remove_file(self.root().join(LEGACY_COMMIT_LOCK));
        }
        Ok(out)
    }
}

/// The lock file lakes made before the record tables held while publishing a commit.
const LEGACY_COMMIT_LOCK: &str = "_cimlake/commit.lock";

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers that share nothing (as processes do: each its own copy of the tables) publish
    /// records at once: every record is published once, and the numbers are 1, 2, … with none
    /// taken twice and none skipped.
    #[test]
    fn writers_at_once_number_their_records_without_gaps_or_repeats() {
        let root = tempfile::tempdir().unwrap();
        let (writers, each) = (4, 6);
        std::thread::scope(|s| {
            for w in 0..writers {
                let root = root.path().to_path_buf();
                s.spawn(move || {
                    let lake = Lake::new(root);
                    for i in 0..each {
                        let published = publish(&lake, super::super::RUNS_DIR, |n| Ok(Some((serde_json::json!({"writer": w, "i": i, "n": n}), Vec::new())))).unwrap();
                        assert!(published.is_some());
                    }
                });
            }
        });
        let lake = Lake::new(root.path());
        let (_, rows) = refresh(&lake, super::super::RUNS_DIR).unwrap();
        let ids: Vec<u64> = rows.iter().map(|r| r.id).collect();
        assert_eq!(ids, (1..=writers * each).collect::<Vec<u64>>());
        let mut seen = HashSet::new();
        for r in &rows {
            let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
            assert_eq!(v["n"].as_u64(), Some(r.id), "a record carries the number it was published with");
            assert!(seen.insert((v["writer"].as_u64(), v["i"].as_u64())), "published twice: {v}");
        }
        assert_eq!(seen.len() as u64, writers * each);
        // The files of the writers turned away are gone: one file per record.
        let files = std::fs::read_dir(root.path().join(super::super::RUNS_DIR)).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "parquet")).count();
        assert_eq!(files as u64, writers * each);
    }

    /// A table of many records has its files merged as it grows: its Delta log names few files,
    /// every record is read back once, and `lake vacuum` takes the merged files.
    #[test]
    fn a_growing_table_has_its_files_merged_and_keeps_every_record() {
        let root = tempfile::tempdir().unwrap();
        let lake = Lake::new(root.path());
        let n = (MERGE_AT_FILES * 2 + 5) as u64;
        for i in 0..n {
            publish(&lake, super::super::COMPACTIONS_DIR, |id| Ok(Some((serde_json::json!({"id": id, "committed_at": "2026-01-01T00:00:00.000Z", "through_commit": i, "removed": [], "added": []}), Vec::new())))).unwrap();
        }
        let fresh = Lake::new(root.path());
        let (_, rows) = refresh(&fresh, super::super::COMPACTIONS_DIR).unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>());
        let live = live_files(&fresh, super::super::COMPACTIONS_DIR).unwrap();
        assert!(live.len() < MERGE_AT_FILES, "{} files named", live.len());
        let on_disk = std::fs::read_dir(root.path().join(super::super::COMPACTIONS_DIR)).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "parquet")).count();
        assert!(on_disk as u64 > n, "the merged files stay until vacuum: {on_disk}");
        fresh.vacuum(std::time::Duration::ZERO, false).unwrap();
        let on_disk = std::fs::read_dir(root.path().join(super::super::COMPACTIONS_DIR)).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "parquet")).count();
        assert_eq!(on_disk, live.len());
        assert_eq!(refresh(&Lake::new(root.path()), super::super::COMPACTIONS_DIR).unwrap().1.len() as u64, n);
    }
}
