//! The ingested tables as Delta Lake tables, for readers that know nothing of cimlake.
//!
//! Each table ingest writes (the CIM tables and the quarantine) has a Delta log beside its data:
//! `LAKE/endpoint/processes/_delta_log/`. Its schema is the table's, plus the two partition
//! columns `date` (a `DATE`) and `hour` (an `INT`, 0–23) that the directories already name
//! (`date=2026-11-03/hour=14/…`). Any Delta reader (the `deltalake` Python package, Polars,
//! DuckDB's `delta_scan`, Spark) then reads the same rows `cimlake query` does.
//!
//! The lake's commits (the record table `_cimlake/commits`, [`super::records`]) stay the record of
//! what is in the lake; the tables' Delta logs follow them. Each Delta commit carries an application transaction
//! ([`COMMITS_APP_ID`], version = the last lake commit it covers), so a Delta log says itself
//! how far it has followed, and one per input it takes in ([`super::delta_store::INPUT_APP_ID_PREFIX`] and the input's
//! content hash, version = its lake commit), in the same Delta commit as the input's files, so
//! the log says which inputs it holds. [`publish`] appends the files of the lake commits after that
//! point, one Delta commit per table however many inputs it covers. It runs when an ingest starts
//! (catching up after a killed one), every so often during a long ingest, and when it ends; two
//! publishers at once carry the same application transaction, so Delta's conflict check turns
//! one away, and it reads the log again ([`Lake::publish_ingest_tables`]). A Delta log is never ahead of the commit log: a reader of it
//! sees whole inputs only, and at most the inputs committed since its last publish are missing.
//!
//! A compaction (`lake optimize`) becomes one Delta version that removes the files it merged and
//! adds the merged ones (`dataChange: false`), after the commits whose files it merged; a second
//! application transaction ([`COMPACTIONS_APP_ID`]) records the last compaction taken in.
//!
//! When the table gains a column (a converter maps a new field), the next publish adds it to
//! the Delta table first: files written before read it as nulls, in Delta as in cimlake.
//!
//! The Delta library is asynchronous; the lake layer is not: its futures run through
//! [`super::runtime::block_on`].

use std::collections::HashMap;
use std::path::PathBuf;

use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, DataType, PrimitiveType, Remove, StructField, StructType, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};

use super::delta_store::{INPUT_APP_ID_PREFIX, TableLocation, remove_unpartitioned};
use super::runtime::block_on;
use super::{Commit, Compaction, DataFile, Lake, LakeError};
use crate::cim::Table;

/// The application id of the Delta transactions that follow the lake's commit log; the version is
/// the id of the last lake commit the Delta log has taken in.
pub const COMMITS_APP_ID: &str = "cimlake.commits";


/// In a Delta commit's `commitInfo`: the first and last lake commit whose files it adds, and
/// how many files.
const COMMITS_INFO_KEY: &str = "cimlake.commits";
const FILES_INFO_KEY: &str = "cimlake.files";
/// In a compaction's `commitInfo`: the lake compaction it follows.
const COMPACTION_INFO_KEY: &str = "cimlake.compaction";

/// The application id of the Delta transactions that follow the lake's compactions
/// (`lake optimize`); the version is the id of the last one taken in.
pub const COMPACTIONS_APP_ID: &str = "cimlake.compactions";

/// The application id of the Delta transactions that follow the run records (the tables scheduled
/// runs write); the version is the last run record taken in.
pub const RUNS_APP_ID: &str = "cimlake.runs";

/// In a Delta commit of a table scheduled runs write: the first and last run record it covers.
const RUNS_INFO_KEY: &str = "cimlake.runs";

/// The partition columns, after the table's own.
pub const PARTITION_COLUMNS: [&str; 2] = ["date", "hour"];

/// A table's Delta log, as far as the lake's commits go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub table: Table,
    /// The Delta table's version after the publish.
    pub version: i64,
    /// The last lake commit it covers (0: none); for a table scheduled runs write, the last run
    /// record.
    pub through_commit: u64,
    /// Data files it added now.
    pub added: usize,
}

/// Brings the Delta log of every table ingest writes up to the lake's commits. Nothing is created
/// in a lake without commits.
pub(crate) fn publish(lake: &Lake) -> Result<Vec<Published>, LakeError> {
    let mut out = Vec::new();
    let mut commits: Option<(u64, Vec<Commit>)> = None;
    let compactions = lake.compactions()?;
    for table in Table::STORED {
        let loc = location(lake, table)?;
        let dir = loc.name.clone();
        let delta_error = |source| LakeError::Delta { path: dir.clone(), source: Box::new(source) };
        let state = block_on(open(loc.clone())).map_err(delta_error)?;
        let (through, through_compaction) = state.as_ref().map_or((0, 0), |s| (s.1, s.2));
        // One read of the commit log serves every table (each may have followed it to a
        // different point when a publish was cut short).
        if commits.as_ref().is_none_or(|(from, _)| *from > through) {
            commits = Some((through, lake.commits_after(through)?));
        }
        let (_, all) = commits.as_ref().expect("read above");
        let new: Vec<&Commit> = all.iter().filter(|c| c.id > through).collect();
        let new_compactions: Vec<&Compaction> = compactions.iter().filter(|k| k.id > through_compaction).collect();
        if new.is_empty() && new_compactions.is_empty() {
            if let Some((table_state, _, _)) = state {
                let table_state = block_on(add_new_columns(table_state, schema(table).map_err(delta_error)?)).map_err(delta_error)?;
                out.push(Published { table, version: table_state.version().unwrap_or(0) as i64, through_commit: through, added: 0 });
            }
            continue;
        }
        let mut t = match state {
            Some((t, _, _)) => block_on(add_new_columns(t, schema(table).map_err(delta_error)?)).map_err(delta_error)?,
            None => {
                if lake.remote().is_none() {
                    std::fs::create_dir_all(&dir).map_err(|e| LakeError::io(&dir, e))?;
                }
                block_on(create(loc.clone(), table, schema(table).map_err(delta_error)?, "commit log")).map_err(delta_error)?
            }
        };
        let mut at = Followed { commit: through, compaction: through_compaction };
        let mut added = 0;
        let mut pending: &[&Commit] = &new;
        let mine = |files: &[DataFile]| -> Vec<DataFile> { files.iter().filter(|f| f.table == table.qualified_name()).cloned().collect() };
        // The commits a compaction merged files of come first, then the compaction.
        for k in new_compactions {
            let split = pending.iter().take_while(|c| c.id <= k.through_commit).count();
            let (before, rest) = pending.split_at(split);
            t = append_commits(lake, table, t, before, &mut at, &mut added)?;
            pending = rest;
            let adds = mine(&k.added).iter().map(|f| add_action(lake, table, f, false)).collect::<Result<Vec<_>, _>>()?;
            let removes = mine(&k.removed).iter().map(|f| remove_action(table, f, false)).collect::<Vec<_>>();
            added += adds.len();
            at.compaction = k.id;
            t = block_on(compact(t, removes, adds, k.id, at)).map_err(delta_error)?;
        }
        t = append_commits(lake, table, t, pending, &mut at, &mut added)?;
        out.push(Published { table, version: t.version().unwrap_or(0) as i64, through_commit: at.commit, added });
    }
    Ok(out)
}

/// Brings the Delta log of every table scheduled runs write (`detections.results`,
/// `risk.all_risk`, `risk.incidents`) up to the run records.
///
/// A table's Delta log holds the files of the current runs (the latest successful run of each
/// job, mode and window: a rerun of a window replaces the earlier run's rows, as in cimlake's own
/// tables). Each publish is one Delta version per table: the current runs' files it lacks are
/// added, the files of runs since replaced are removed, and an application transaction
/// ([`RUNS_APP_ID`]) records the last run record taken in. `detections.results` has the union of
/// every detection's output columns; a detection with new columns adds them first.
pub(crate) fn publish_derived(lake: &Lake) -> Result<Vec<Published>, LakeError> {
    let runs = lake.runs()?;
    let Some(last) = runs.iter().map(|r| r.seq).max() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for table in Table::ALL_TABLES.into_iter().filter(|t| t.filled() == crate::cim::Filled::ByRuns) {
        let loc = location(lake, table)?;
        let dir = loc.name.clone();
        let delta_error = |source| LakeError::Delta { path: dir.clone(), source: Box::new(source) };
        let arrow_schema = if table == Table::Results {
            crate::cim::results::schema_with(&super::runs::result_columns(&runs))
        } else {
            table.schema()
        };
        let wanted = delta_schema(&arrow_schema, partition_columns(table)).map_err(delta_error)?;
        let (mut t, through) = following_runs(lake, &loc, table, wanted)?;
        if through >= last {
            out.push(Published { table, version: t.version().unwrap_or(0) as i64, through_commit: through, added: 0 });
            continue;
        }
        let name = table.qualified_name();
        let before: Vec<super::runs::RunRecord> = runs.iter().filter(|r| r.seq <= through).cloned().collect();
        let then = super::runs::current_files(&before, name);
        let now = super::runs::current_files(&runs, name);
        let had: std::collections::HashSet<&str> = then.iter().map(|f| f.path.as_str()).collect();
        let has: std::collections::HashSet<&str> = now.iter().map(|f| f.path.as_str()).collect();
        let adds = now.iter().filter(|f| !had.contains(f.path.as_str())).map(|f| add_action(lake, table, f, true)).collect::<Result<Vec<_>, _>>()?;
        let removes: Vec<Remove> = then.iter().filter(|f| !has.contains(f.path.as_str())).map(|f| remove_action(table, f, true)).collect();
        let added = adds.len();
        let about = [
            (RUNS_INFO_KEY.to_string(), serde_json::json!([through + 1, last])),
            (FILES_INFO_KEY.to_string(), serde_json::json!(added)),
        ];
        let partition_by = Some(partition_columns(table).iter().map(|c| c.to_string()).collect());
        let op = DeltaOperation::Write { mode: SaveMode::Append, partition_by, predicate: None };
        let actions = removes.into_iter().map(Action::Remove).chain(adds.into_iter().map(Action::Add)).collect();
        let txns = vec![Transaction::new(RUNS_APP_ID, i64::try_from(last).unwrap_or(i64::MAX))];
        t = block_on(commit(t, actions, about, op, txns)).map_err(delta_error)?;
        out.push(Published { table, version: t.version().unwrap_or(0) as i64, through_commit: last, added });
    }
    out.push(publish_runs_table(lake, &runs, last)?);
    Ok(out)
}

/// The Delta table of a table that follows the run records, and the last run record it has taken
/// in (0: none): made with schema `wanted` if it has no log yet, else given the columns of
/// `wanted` it lacks.
fn following_runs(lake: &Lake, loc: &TableLocation, table: Table, wanted: StructType) -> Result<(DeltaTable, u64), LakeError> {
    let dir = loc.name.clone();
    let delta_error = |source| LakeError::Delta { path: dir.clone(), source: Box::new(source) };
    let state = block_on(open_following(loc.clone(), &[RUNS_APP_ID])).map_err(delta_error)?;
    Ok(match state {
        Some((t, through)) => (block_on(add_new_columns(t, wanted)).map_err(delta_error)?, through[0]),
        None => {
            if lake.remote().is_none() {
                std::fs::create_dir_all(&dir).map_err(|e| LakeError::io(&dir, e))?;
            }
            (block_on(create(loc.clone(), table, wanted, "run records")).map_err(delta_error)?, 0)
        }
    })
}

/// `cimlake.runs` as a Delta table: when there are run records it has not taken in, a new file of
/// every run replaces the previous one in one version.
fn publish_runs_table(lake: &Lake, runs: &[super::runs::RunRecord], last: u64) -> Result<Published, LakeError> {
    let table = Table::Runs;
    let loc = location(lake, table)?;
    let dir = loc.name.clone();
    let delta_error = |source| LakeError::Delta { path: dir.clone(), source: Box::new(source) };
    let (mut t, through) = following_runs(lake, &loc, table, schema(table).map_err(delta_error)?)?;
    if through >= last {
        return Ok(Published { table, version: t.version().unwrap_or(0) as i64, through_commit: through, added: 0 });
    }
    let batch = super::runs::runs_batch(runs).map_err(|e| LakeError::BadRecord { path: dir.clone(), reason: e.to_string() })?;
    let file = lake.write_derived(&runs_file(last), batch.schema(), &[batch])?;
    let mut actions = Vec::new();
    if through > 0 {
        let old = runs_file(through);
        let rel = old.strip_prefix(&format!("{RUNS_TABLE_DIR}/")).expect("under the table").to_string();
        actions.push(Action::Remove(remove_unpartitioned(&rel, true)));
    }
    actions.push(Action::Add(add_action(lake, table, &file, true)?));
    let about = [(RUNS_INFO_KEY.to_string(), serde_json::json!([through + 1, last])), (FILES_INFO_KEY.to_string(), serde_json::json!(1))];
    let op = DeltaOperation::Write { mode: SaveMode::Overwrite, partition_by: None, predicate: None };
    let txns = vec![Transaction::new(RUNS_APP_ID, i64::try_from(last).unwrap_or(i64::MAX))];
    t = block_on(commit(t, actions, about, op, txns)).map_err(delta_error)?;
    Ok(Published { table, version: t.version().unwrap_or(0) as i64, through_commit: last, added: 1 })
}

/// Appends the files `commits` wrote to `table` (one Delta version; none when `commits` is empty).
fn append_commits(lake: &Lake, table: Table, t: DeltaTable, commits: &[&Commit], at: &mut Followed, added: &mut usize) -> Result<DeltaTable, LakeError> {
    let (Some(first), Some(last)) = (commits.first(), commits.last()) else { return Ok(t) };
    let adds = commits
        .iter()
        .flat_map(|c| c.files.iter())
        .filter(|f| f.table == table.qualified_name())
        .map(|f| add_action(lake, table, f, true))
        .collect::<Result<Vec<_>, _>>()?;
    *added += adds.len();
    at.commit = last.id;
    // Each input's content hash, in the Delta commit that adds its files.
    let inputs: Vec<Transaction> =
        commits.iter().map(|c| Transaction::new(format!("{INPUT_APP_ID_PREFIX}{}", c.input.hash), i64::try_from(c.id).unwrap_or(i64::MAX))).collect();
    block_on(append(t, adds, (first.id, last.id), *at, inputs)).map_err(|source| LakeError::Delta { path: table_name(lake, table), source: Box::new(source) })
}

/// How far a Delta log has followed the lake: its last commit and compaction.
#[derive(Debug, Clone, Copy)]
struct Followed {
    commit: u64,
    compaction: u64,
}

impl Followed {
    fn txns(self) -> Vec<Transaction> {
        let v = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        vec![Transaction::new(COMMITS_APP_ID, v(self.commit)), Transaction::new(COMPACTIONS_APP_ID, v(self.compaction))]
    }
}

/// One version of a table's Delta log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: u64,
    /// When it was committed (ms since the epoch).
    pub timestamp: Option<i64>,
    pub operation: String,
    /// The lake commits whose files it added (first, last), for the versions cimlake wrote.
    pub commits: Option<(u64, u64)>,
    /// The lake compaction it follows (`lake optimize`).
    pub compaction: Option<u64>,
    /// The run records whose files it took in (first, last), for the tables runs write.
    pub runs: Option<(u64, u64)>,
    pub files: Option<u64>,
}

/// A table's Delta history, newest first (empty when it has no Delta log yet).
pub fn history(lake: &Lake, table: Table) -> Result<Vec<Version>, LakeError> {
    let loc = location(lake, table)?;
    let dir = loc.name.clone();
    let delta_error = |source| LakeError::Delta { path: dir.clone(), source: Box::new(source) };
    block_on(async move {
        use futures::TryStreamExt as _;
        let Some((t, _, _)) = open(loc).await? else { return Ok(Vec::new()) };
        let newest = t.version().unwrap_or(0);
        let infos: Vec<_> = t.history(None).try_collect().await?;
        Ok(infos
            .into_iter()
            .enumerate()
            .map(|(n, info)| {
                let pair = |key: &str| info.info.get(key).and_then(|v| Some((v.get(0)?.as_u64()?, v.get(1)?.as_u64()?)));
                let (commits, runs) = (pair(COMMITS_INFO_KEY), pair(RUNS_INFO_KEY));
                let files = info.info.get(FILES_INFO_KEY).and_then(serde_json::Value::as_u64);
                let compaction = info.info.get(COMPACTION_INFO_KEY).and_then(serde_json::Value::as_u64);
                Version {
                    version: newest.saturating_sub(n as u64),
                    timestamp: info.timestamp,
                    operation: info.operation.unwrap_or_default(),
                    commits,
                    compaction,
                    runs,
                    files,
                }
            })
            .collect())
    })
    .map_err(delta_error)
}

/// How errors name a table's Delta directory: its path, or its URL in an object store.
pub fn table_name(lake: &Lake, table: Table) -> PathBuf {
    let dir = delta_dir(table).expect("a table with a Delta log");
    match lake.remote() {
        Some(r) => r.display(dir),
        None => lake.root().join(dir),
    }
}

/// Where `table`'s Delta log is.
fn location(lake: &Lake, table: Table) -> Result<TableLocation, LakeError> {
    TableLocation::at(lake, delta_dir(table).expect("a table with a Delta log"))
}

/// The table at `loc` and how far it follows the commit log and the compactions, or `None` when
/// it has no Delta log.
async fn open(loc: TableLocation) -> Result<Option<(DeltaTable, u64, u64)>, DeltaTableError> {
    Ok(open_following(loc, &[COMMITS_APP_ID, COMPACTIONS_APP_ID]).await?.map(|(t, v)| (t, v[0], v[1])))
}

/// The table at `loc` and the versions of its application transactions `app_ids` (0 for one it
/// lacks), or `None` when it has no Delta log.
async fn open_following(loc: TableLocation, app_ids: &[&str]) -> Result<Option<(DeltaTable, Vec<u64>)>, DeltaTableError> {
    if let Ok(path) = loc.url.to_file_path()
        && !path.join("_delta_log").is_dir()
    {
        return Ok(None);
    }
    let table = match loc.builder()?.load().await {
        Ok(t) => t,
        Err(DeltaTableError::NotATable(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let store = table.log_store();
    let mut versions = Vec::with_capacity(app_ids.len());
    for id in app_ids {
        let v = table.snapshot()?.transaction_version(store.as_ref(), id).await?;
        versions.push(v.and_then(|n| u64::try_from(n).ok()).unwrap_or(0));
    }
    Ok(Some((table, versions)))
}

/// The Delta schema of a table: its columns, then the partition columns.
pub fn schema(table: Table) -> Result<StructType, DeltaTableError> {
    delta_schema(&table.schema(), partition_columns(table))
}

/// The tables with a Delta log: those ingest writes, those scheduled runs write, and
/// `cimlake.runs`.
pub fn tables() -> Vec<Table> {
    Table::ALL_TABLES.into_iter().filter(|t| delta_dir(*t).is_some()).collect()
}

/// Where `cimlake.runs` is kept as a Delta table. cimlake reads the run records themselves; this
/// copy is for outside readers: one Parquet file of every run, written again at each publish
/// (a run's `current` flag changes when a later run replaces it).
pub const RUNS_TABLE_DIR: &str = "cimlake/runs";

/// The directory of a table's Delta log, relative to the lake.
pub fn delta_dir(table: Table) -> Option<&'static str> {
    match table {
        Table::Runs => Some(RUNS_TABLE_DIR),
        t => t.lake_dir(),
    }
}

/// The file of `cimlake.runs` that a publish taking in run records up to `seq` writes.
pub fn runs_file(seq: u64) -> String {
    format!("{RUNS_TABLE_DIR}/runs-{seq:08}.parquet")
}

/// The partition columns of a table's Delta log: `date` and `hour` for the tables ingest writes,
/// `date` (of the run's window, as the directories name it) for the tables scheduled runs write.
pub fn partition_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Runs => &[],
        t if Table::STORED.contains(&t) => &PARTITION_COLUMNS,
        _ => &PARTITION_COLUMNS[..1],
    }
}

/// `schema`'s columns, then `partitions` (`date` a `DATE`, `hour` an `INT`).
fn delta_schema(schema: &arrow::datatypes::Schema, partitions: &[&str]) -> Result<StructType, DeltaTableError> {
    let own: StructType = schema.try_into_kernel()?;
    let mut fields: Vec<StructField> = own.fields().cloned().collect();
    for p in partitions {
        let kind = if *p == "hour" { PrimitiveType::Integer } else { PrimitiveType::Date };
        fields.push(StructField::new(*p, DataType::Primitive(kind), true));
    }
    Ok(StructType::try_new(fields)?)
}

async fn create(loc: TableLocation, table: Table, schema: StructType, follows: &'static str) -> Result<DeltaTable, DeltaTableError> {
    deltalake_core::operations::create::CreateBuilder::new()
        .with_location(loc.url.to_string())
        .with_log_store(loc.builder()?.build_storage()?)
        .with_table_name(table.qualified_name())
        .with_comment(format!("cimlake table {}; follows the lake's {follows} (see README, \"The lake\")", table.qualified_name()))
        .with_columns(schema.fields().cloned())
        .with_partition_columns(partition_columns(table).iter().copied())
        .with_save_mode(SaveMode::Ignore)
        .await
}

/// Schema evolution: the columns the table has gained since its Delta log was made are added to
/// it (a Delta `ADD COLUMN` version; the files written before read them as nulls, as cimlake
/// does).
async fn add_new_columns(t: DeltaTable, wanted: StructType) -> Result<DeltaTable, DeltaTableError> {
    let have = t.snapshot()?.schema();
    let missing: Vec<StructField> = wanted.fields().filter(|f| have.field(f.name()).is_none()).cloned().collect();
    if missing.is_empty() {
        return Ok(t);
    }
    t.add_columns().with_fields(missing).await
}

/// Appends `adds`, the files of lake commits `commits.0..=commits.1`, in one Delta commit that
/// records how far the log has followed the lake (`at`).
async fn append(t: DeltaTable, adds: Vec<Add>, commits: (u64, u64), at: Followed, inputs: Vec<Transaction>) -> Result<DeltaTable, DeltaTableError> {
    let about = [
        (COMMITS_INFO_KEY.to_string(), serde_json::json!([commits.0, commits.1])),
        (FILES_INFO_KEY.to_string(), serde_json::json!(adds.len())),
    ];
    let partition_by = Some(PARTITION_COLUMNS.iter().map(|c| c.to_string()).collect());
    let op = DeltaOperation::Write { mode: SaveMode::Append, partition_by, predicate: None };
    let mut txns = at.txns();
    txns.extend(inputs);
    commit(t, adds.into_iter().map(Action::Add).collect(), about, op, txns).await
}

/// Replaces `removes` by `adds` (the same rows, `dataChange: false`): compaction `id`.
async fn compact(t: DeltaTable, removes: Vec<Remove>, adds: Vec<Add>, id: u64, at: Followed) -> Result<DeltaTable, DeltaTableError> {
    let about = [
        (COMPACTION_INFO_KEY.to_string(), serde_json::json!(id)),
        (FILES_INFO_KEY.to_string(), serde_json::json!(adds.len())),
    ];
    let actions = removes.into_iter().map(Action::Remove).chain(adds.into_iter().map(Action::Add)).collect();
    commit(t, actions, about, DeltaOperation::Optimize { predicate: None, target_size: 0 }, at.txns()).await
}

async fn commit(
    mut t: DeltaTable,
    actions: Vec<Action>,
    about: [(String, serde_json::Value); 2],
    op: DeltaOperation,
    txns: Vec<Transaction>,
) -> Result<DeltaTable, DeltaTableError> {
    // Old log entries stay: they are the table's history.
    let props = CommitProperties::default().with_application_transactions(txns).with_metadata(about).with_cleanup_expired_logs(Some(false));
    CommitBuilder::from(props).with_actions(actions).build(Some(t.snapshot()?), t.log_store(), op).await?;
    t.update_state().await?;
    Ok(t)
}

/// The Delta `remove` of a file a compaction replaced.
fn remove_action(table: Table, f: &DataFile, data_change: bool) -> Remove {
    let rel = f.path.strip_prefix(&format!("{}/", table.lake_dir().expect("stored"))).unwrap_or(&f.path).to_string();
    Remove {
        partition_values: Some(partition_values(&rel, partition_columns(table))),
        path: rel,
        data_change,
        deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
        extended_file_metadata: Some(true),
        size: Some(f.bytes as i64),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    }
}

/// The Delta `add` of a lake data file: its path in the table, partition values from its
/// directory, size, and the row count and `_time` range as statistics.
fn add_action(lake: &Lake, table: Table, f: &DataFile, data_change: bool) -> Result<Add, LakeError> {
    let prefix = format!("{}/", delta_dir(table).expect("a table with a Delta log"));
    let bad = |reason: String| LakeError::BadRecord { path: lake.root().join(&f.path), reason };
    let rel = f.path.strip_prefix(&prefix).ok_or_else(|| bad(format!("not under {prefix}")))?;
    let partition_values = partition_values(rel, partition_columns(table));
    // The size is the record's; the file may be gone already (a compaction replaced it and
    // vacuum removed it, while this log lagged): the next version then removes it again.
    let modified = std::fs::metadata(lake.root().join(&f.path))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(|| chrono::Utc::now().timestamp_millis(), |d| d.as_millis() as i64);
    Ok(Add {
        path: rel.to_string(),
        partition_values,
        size: f.bytes as i64,
        modification_time: modified,
        data_change,
        stats: Some(stats(f, table.schema().field_with_name(crate::cim::TIME).is_ok())),
        ..Default::default()
    })
}

/// The values of `columns` from the directories of `rel` (`…/date=YYYY-MM-DD/hour=HH/…`); a
/// value that is not a date or an hour is null (the writer names out-of-range times
/// `date=out-of-range`).
fn partition_values(rel: &str, columns: &[&str]) -> HashMap<String, Option<String>> {
    let mut dirs: Vec<&str> = rel.split('/').collect();
    dirs.pop();
    columns
        .iter()
        .map(|c| {
            let raw = dirs.iter().find_map(|d| d.strip_prefix(*c).and_then(|v| v.strip_prefix('=')));
            let value = match *c {
                "hour" => raw.and_then(|h| h.parse::<u8>().ok()).filter(|h| *h < 24).map(|h| h.to_string()),
                _ => raw.filter(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()).map(str::to_string),
            };
            (c.to_string(), value)
        })
        .collect()
}

/// Delta statistics: the row count, and `_time`'s range at millisecond precision (Delta's),
/// widened so that a reader skipping files on it never skips a row.
fn stats(f: &DataFile, has_time: bool) -> String {
    let ms = |us: i64, up: bool| {
        let m = if up { us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0) } else { us.div_euclid(1000) };
        chrono::DateTime::from_timestamp_millis(m).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    let mut s = serde_json::json!({ "numRecords": f.rows });
    if let (true, Some(lo), Some(hi)) = (has_time && f.rows > 0, ms(f.min_time, false), ms(f.max_time, true)) {
        s["minValues"] = serde_json::json!({ "_time": lo });
        s["maxValues"] = serde_json::json!({ "_time": hi });
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_come_from_the_directories() {
        let v = partition_values("date=2026-11-03/hour=07/a-b-0.parquet", &PARTITION_COLUMNS);
        assert_eq!(v["date"].as_deref(), Some("2026-11-03"));
        assert_eq!(v["hour"].as_deref(), Some("7"));
        let v = partition_values("date=out-of-range/hour=-5/a.parquet", &PARTITION_COLUMNS);
        assert_eq!((v["date"].as_deref(), v["hour"].as_deref()), (None, None));
        // A scheduled run's results: the detection's directory, then the window's date.
        let v = partition_values("detection=x/date=2026-11-03/run.parquet", partition_columns(Table::Results));
        assert_eq!(v, HashMap::from([("date".to_string(), Some("2026-11-03".to_string()))]));
        // A file name is not a directory.
        let v = partition_values("date=2026-11-03.parquet", &PARTITION_COLUMNS[..1]);
        assert_eq!(v["date"], None);
    }

    #[test]
    fn time_statistics_are_widened_to_whole_milliseconds() {
        let f = DataFile { table: String::new(), path: String::new(), rows: 3, bytes: 1, min_time: 1_500_999, max_time: 2_000_001 };
        let s: serde_json::Value = serde_json::from_str(&stats(&f, true)).unwrap();
        assert_eq!(s["numRecords"], 3);
        assert_eq!(s["minValues"]["_time"], "1970-01-01T00:00:01.500Z");
        assert_eq!(s["maxValues"]["_time"], "1970-01-01T00:00:02.001Z");
        let exact = DataFile { min_time: 2_000_000, max_time: 2_000_000, ..f };
        let s: serde_json::Value = serde_json::from_str(&stats(&exact, true)).unwrap();
        assert_eq!((s["minValues"]["_time"].as_str(), s["maxValues"]["_time"].as_str()), (Some("1970-01-01T00:00:02.000Z"), Some("1970-01-01T00:00:02.000Z")));
    }

    #[test]
    fn every_ingested_table_has_a_delta_schema_with_its_columns_then_the_partitions() {
        for table in Table::STORED {
            let s = schema(table).unwrap_or_else(|e| panic!("{}: {e}", table.qualified_name()));
            let names: Vec<&str> = s.fields().map(|f| f.name().as_str()).collect();
            let own = table.schema();
            assert_eq!(names.len(), own.fields().len() + 2, "{}: a column named date or hour would clash", table.qualified_name());
            assert_eq!(&names[own.fields().len()..], &PARTITION_COLUMNS);
        }
    }
}
