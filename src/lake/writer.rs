//! Writes batches of lake rows as Parquet (zstd) into a staging directory, split by table and
//! hour; [`place`] merges the closed files of an input into one per table and hour and moves them
//! to their partitions for the commit that will publish them.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use chrono::DateTime;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{DataFile, IngestSession, Lake, LakeError, sync_dir};
use crate::cim::Table;

pub(crate) const HOUR_US: i64 = 3_600_000_000;
/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// An hour's file is closed once the writer has gone on without it: the newest hour seen moved
/// more than this many hours past where it was at the file's last write, and [`IDLE_ROWS`] rows
/// went to other files since. Time-ordered input then keeps a handful of files open whatever
/// its size, while input whose hours interleave (flows that trail their processes, a merged export,
/// hosts one after another) keeps writing each hour's one file instead of starting a new one
/// whenever an older hour comes back.
pub const KEEP_OPEN_HOURS: i64 = 2;
/// Rows written to other files after which a file the writer has gone on without is closed
/// ([`KEEP_OPEN_HOURS`]).
pub const IDLE_ROWS: u64 = 32 * 1024;
/// Files a writer keeps open at most (one per table and hour it is writing). Past it, or past
/// [`MAX_OPEN_BYTES`], the file written least recently is closed. A row for an hour already closed
/// starts another file for that hour, which [`place`] merges with the others of that hour. Every
/// file started costs a row group's column writers (a zstd context each) here and again when it is
/// merged.
pub const MAX_OPEN_FILES: usize = 64;
/// Memory a writer's open files may hold (their row groups not yet written, as parquet estimates
/// it) before the least recently written is closed.
pub const MAX_OPEN_BYTES: usize = 256 << 20;

/// `date=YYYY-MM-DD/hour=HH` for an hour bucket (µs / 1h).
pub fn partition_dir(hour_bucket: i64) -> String {
    // Converters only emit times in years 1–9999, which chrono represents.
    match hour_bucket.checked_mul(HOUR_US).and_then(DateTime::from_timestamp_micros) {
        Some(t) => t.format("date=%Y-%m-%d/hour=%H").to_string(),
        None => format!("date=out-of-range/hour={hour_bucket}"),
    }
}

struct OpenFile {
    writer: ArrowWriter<File>,
    staged: PathBuf,
    /// The writer's newest hour and rows written at its last write (the batches are never
    /// empty, so the latter also orders the files by their last write).
    newest_at_write: i64,
    rows_at_write: u64,
    rows: u64,
    min_time: i64,
    max_time: i64,
}

/// A closed Parquet file in staging: one table and hour of one writer.
#[derive(Debug, Clone)]
pub struct StagedFile {
    table: Table,
    hour: i64,
    staged: PathBuf,
    rows: u64,
    min_time: i64,
    max_time: i64,
}

/// A [`BatchSink`] that splits batches by hour and writes one Parquet file per table and hour at a
/// time (an hour closed and met again starts another, merged by [`place`]).
pub struct PartitionedWriter {
    lake_root: PathBuf,
    staging: PathBuf,
    props: WriterProperties,
    open: BTreeMap<(Table, i64), OpenFile>,
    closed: Vec<StagedFile>,
    files_started: usize,
    newest_hour: i64,
    /// Rows written, to all files.
    rows_written: u64,
    /// [`IDLE_ROWS`] (a test sets fewer).
    idle_rows: u64,
}

impl PartitionedWriter {
    /// A writer for one input (or one piece of it), staging in `session`'s directory under
    /// `<stem>-<session>/`.
    pub fn new(lake: &Lake, session: &IngestSession, stem: &str) -> Result<Self, LakeError> {
        let stem = format!("{stem}-{}", session.token);
        let staging = session.staging_for(&stem);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| LakeError::io(&staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| LakeError::io(&staging, e))?;
        let props = writer_properties();
        Ok(PartitionedWriter {
            lake_root: lake.root().to_path_buf(),
            staging,
            props,
            open: BTreeMap::new(),
            closed: Vec::new(),
            files_started: 0,
            newest_hour: i64::MIN,
            rows_written: 0,
            idle_rows: IDLE_ROWS,
        })
    }

    fn write_part(&mut self, table: Table, hour: i64, batch: &RecordBatch) -> Result<(), LakeError> {
        let times = batch.column(0).as_any().downcast_ref::<TimestampMicrosecondArray>().expect("_time");
        let (min, max) = (arrow::compute::min(times).unwrap_or(0), arrow::compute::max(times).unwrap_or(0));
        if !self.open.contains_key(&(table, hour)) {
            let n = self.files_started;
            self.files_started += 1;
            let staged = self.staging.join(format!("{n}.parquet"));
            let f = File::create(&staged).map_err(|e| LakeError::io(&staged, e))?;
            let writer = ArrowWriter::try_new(f, table.schema(), Some(self.props.clone()))
                .map_err(|source| LakeError::Parquet { path: staged.clone(), source })?;
            self.open.insert(
                (table, hour),
                OpenFile { writer, staged, newest_at_write: 0, rows_at_write: 0, rows: 0, min_time: min, max_time: max },
            );
        }
        self.rows_written += batch.num_rows() as u64;
        let f = self.open.get_mut(&(table, hour)).expect("just inserted");
        (f.newest_at_write, f.rows_at_write) = (self.newest_hour, self.rows_written);
        f.writer
            .write(batch)
            .map_err(|source| LakeError::Parquet { path: f.staged.clone(), source })?;
        f.rows += batch.num_rows() as u64;
        f.min_time = f.min_time.min(min);
        f.max_time = f.max_time.max(max);
        Ok(())
    }

    /// Closes the files the writer has gone on without ([`KEEP_OPEN_HOURS`]), then the least
    /// recently written while more than [`MAX_OPEN_FILES`] are open or they hold more than
    /// [`MAX_OPEN_BYTES`].
    fn close_over_limits(&mut self) -> Result<(), LakeError> {
        let left: Vec<(Table, i64)> = self
            .open
            .iter()
            .filter(|(_, f)| {
                self.newest_hour.saturating_sub(f.newest_at_write) > KEEP_OPEN_HOURS && self.rows_written - f.rows_at_write >= self.idle_rows
            })
            .map(|(k, _)| *k)
            .collect();
        for key in left {
            let f = self.open.remove(&key).expect("listed");
            self.closed.push(close(key, f)?);
        }
        loop {
            let over = self.open.len() > MAX_OPEN_FILES
                || (self.open.len() > 1 && self.open.values().map(|f| f.writer.memory_size()).sum::<usize>() > MAX_OPEN_BYTES);
            if !over {
                return Ok(());
            }
            let key = *self.open.iter().min_by_key(|(_, f)| f.rows_at_write).expect("files are open").0;
            let f = self.open.remove(&key).expect("listed");
            self.closed.push(close(key, f)?);
        }
    }

    /// Closes every file. The files stay in staging: [`place`] merges and moves them.
    pub fn close(mut self) -> Result<Vec<StagedFile>, LakeError> {
        let open = std::mem::take(&mut self.open);
        for (key, f) in open {
            self.closed.push(close(key, f)?);
        }
        Ok(std::mem::take(&mut self.closed))
    }

    /// Drops everything written (the input failed). Staging directories this left empty are
    /// removed too, so a failed first input leaves no trace.
    pub fn abort(mut self) {
        drop(std::mem::take(&mut self.open));
        let _ = std::fs::remove_dir_all(&self.staging);
        let mut dir = self.staging.parent();
        while let Some(d) = dir {
            if d == self.lake_root || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    pub fn staging(&self) -> &Path {
        &self.staging
    }
}

/// Merges the staged files of one input (from all its writers) into one file per table and hour
/// and moves them to their partitions, named `<stem>-<session>-<n>.parquet`. The files are not
/// part of the lake until a commit names them; on an error the staged files are removed and
/// nothing stays in the lake.
///
/// An input whose rows come back to an hour after the writer closed its file (an hour it had gone
/// on without, [`KEEP_OPEN_HOURS`], or one closed past [`MAX_OPEN_FILES`] or [`MAX_OPEN_BYTES`])
/// comes to the writer as several runs of that hour: here they become one file per hour again.
/// Merging streams the rows (one row group in memory), in the order of the runs' first times.
pub(crate) fn place(lake: &Lake, session: &IngestSession, stem: &str, staged: Vec<StagedFile>) -> Result<Vec<DataFile>, LakeError> {
    let mut groups: BTreeMap<(Table, i64), Vec<StagedFile>> = BTreeMap::new();
    for f in staged {
        groups.entry((f.table, f.hour)).or_default().push(f);
    }
    let mut placed: Vec<DataFile> = Vec::new();
    let staging_dirs: std::collections::BTreeSet<PathBuf> = groups.values().flatten().filter_map(|f| f.staged.parent().map(Path::to_path_buf)).collect();
    let merge_dir = session.staging_for(&format!("{stem}-{}-merged", session.token));
    let result = (|| {
        for (n, ((table, hour), mut files)) in groups.into_iter().enumerate() {
            let file = if files.len() == 1 {
                files.pop().expect("one")
            } else {
                files.sort_by_key(|f| f.min_time);
                let merged = merge(table, hour, &files, &merge_dir.join(format!("{n}.parquet")));
                for f in &files {
                    let _ = std::fs::remove_file(&f.staged);
                }
                merged?
            };
            let dir = table.lake_dir().expect("ingested tables are stored in the lake");
            let rel = format!("{dir}/{}/{stem}-{}-{n}.parquet", partition_dir(hour), session.token);
            placed.push(move_into_lake(lake, &file, rel, "ingest-after-move")?);
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&merge_dir);
    match result {
        Ok(()) => {
            for dir in &staging_dirs {
                let _ = std::fs::remove_dir(dir);
            }
            Ok(placed)
        }
        Err(e) => {
            // What was not placed yet is in the writers' staging directories (this input's only).
            for dir in &staging_dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
            remove_moved(lake, &placed);
            Err(e)
        }
    }
}

/// Moves a finished file into the lake at `rel` (a path under its table's directory, named by
/// the session): synced before the rename, its directory synced after. No record names it yet: a
/// process killed now leaves it for `lake vacuum`, which takes it only once the session is dead.
/// `fault` is the fault point reached after the rename.
pub(crate) fn move_into_lake(lake: &Lake, file: &StagedFile, rel: String, fault: &str) -> Result<DataFile, LakeError> {
    let target = lake.root().join(&rel);
    let parent = target.parent().expect("a partition directory");
    File::open(&file.staged).and_then(|h| h.sync_all()).map_err(|e| LakeError::io(&file.staged, e))?;
    let mut tries = 0;
    loop {
        std::fs::create_dir_all(parent).map_err(|e| LakeError::io(parent, e))?;
        #[cfg(test)]
        tests::BETWEEN_DIR_AND_RENAME.with(|hook| hook.borrow_mut().as_mut().map(|f| f(parent)));
        match std::fs::rename(&file.staged, &target) {
            Ok(()) => break,
            // For a lake in an object store this is a local staging directory, and another job
            // that uploaded its files removes the directories it leaves empty: one may go between
            // the two calls above.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 100 && file.staged.exists() => tries += 1,
            Err(e) => return Err(LakeError::io(&target, e)),
        }
    }
    crate::fault::point(fault);
    sync_dir(parent);
    let bytes = std::fs::metadata(&target).map_err(|e| LakeError::io(&target, e))?.len();
    Ok(DataFile {
        table: file.table.qualified_name().to_string(),
        path: rel,
        rows: file.rows,
        bytes,
        min_time: file.min_time,
        max_time: file.max_time,
    })
}

/// [`move_into_lake`] for a lake in an object store: the staged file is uploaded to `rel`, then
/// its local copy removed.
pub(crate) fn upload_into_lake(remote: &super::remote::Remote, file: &StagedFile, rel: String, fault: &str) -> Result<DataFile, LakeError> {
    let bytes = std::fs::metadata(&file.staged).map_err(|e| LakeError::io(&file.staged, e))?.len();
    remote.upload(&file.staged, &rel)?;
    crate::fault::point(fault);
    let _ = std::fs::remove_file(&file.staged);
    Ok(DataFile { table: file.table.qualified_name().to_string(), path: rel, rows: file.rows, bytes, min_time: file.min_time, max_time: file.max_time })
}

impl StagedFile {
    /// A file already in the lake, as an input of [`merge`] (`lake optimize`).
    pub(crate) fn in_lake(table: Table, path: PathBuf, rows: u64, min_time: i64, max_time: i64) -> StagedFile {
        StagedFile { table, hour: min_time.div_euclid(HOUR_US), staged: path, rows, min_time, max_time }
    }

    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// The merge of `files` written at `out`, `rows` rows.
    fn spanning(table: Table, hour: i64, out: &Path, rows: u64, files: &[StagedFile]) -> StagedFile {
        StagedFile {
            table,
            hour,
            staged: out.to_path_buf(),
            rows,
            min_time: files.iter().map(|f| f.min_time).min().unwrap_or(0),
            max_time: files.iter().map(|f| f.max_time).max().unwrap_or(0),
        }
    }
}

/// Files with at least this many rows keep their row groups as they are in a merge: copied, not
/// decoded and encoded again. Smaller ones (late rows, the tails of pieces) are encoded together.
pub(crate) const COPY_MIN_ROWS: u64 = 16 * 1024;

/// Merges `files` (of one table and hour) into one Parquet file at `out`: the row groups of files
/// of [`COPY_MIN_ROWS`] rows or more are copied whole (column chunks, statistics and page indexes
/// as they are); the rows of the smaller ones are encoded into one more row group (or a few).
pub(crate) fn merge(table: Table, hour: i64, files: &[StagedFile], out: &Path) -> Result<StagedFile, LakeError> {
    let (big, small): (Vec<StagedFile>, Vec<StagedFile>) = files.iter().cloned().partition(|f| f.rows >= COPY_MIN_ROWS);
    if big.is_empty() {
        return reencode(table, hour, files, out);
    }
    let mut parts: Vec<PathBuf> = big.iter().map(|f| f.staged.clone()).collect();
    let small_out = out.with_extension("small.parquet");
    if !small.is_empty() {
        reencode(table, hour, &small, &small_out)?;
        parts.push(small_out.clone());
    }
    let copied = concat(&parts, out);
    let _ = std::fs::remove_file(&small_out);
    Ok(StagedFile::spanning(table, hour, out, copied?, files))
}

/// Writes the row groups of `parts` (Parquet files of one schema, as [`PartitionedWriter`]
/// writes them) one after another into `out`, copying their encoded column chunks; returns the
/// rows.
fn concat(parts: &[PathBuf], out: &Path) -> Result<u64, LakeError> {
    use parquet::column::writer::ColumnCloseResult;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use parquet::file::writer::SerializedFileWriter;
    let written = |source| LakeError::Parquet { path: out.to_path_buf(), source };
    let mut writer: Option<SerializedFileWriter<File>> = None;
    let mut first_schema = None;
    let mut rows = 0u64;
    for part in parts {
        let read = |source| LakeError::Parquet { path: part.clone(), source };
        let file = File::open(part).map_err(|e| LakeError::io(part, e))?;
        let meta = ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional).parse_and_finish(&file).map_err(read)?;
        let fm = meta.file_metadata();
        let w = match writer.as_mut() {
            Some(w) => {
                if Some(fm.schema_descr().root_schema()) != first_schema.as_ref() {
                    return Err(read(parquet::errors::ParquetError::General("its schema differs from the other files of its hour".into())));
                }
                w
            }
            None => {
                let f = File::create(out).map_err(|e| LakeError::io(out, e))?;
                let mut w = SerializedFileWriter::new(f, fm.schema_descr().root_schema_ptr(), std::sync::Arc::new(writer_properties())).map_err(written)?;
                // The Arrow schema (time zones, list item names) goes with the columns.
                for kv in fm.key_value_metadata().into_iter().flatten().filter(|kv| kv.key == parquet::arrow::ARROW_SCHEMA_META_KEY) {
                    w.append_key_value_metadata(kv.clone());
                }
                first_schema = Some(fm.schema_descr().root_schema().clone());
                writer.insert(w)
            }
        };
        for (i, rg) in meta.row_groups().iter().enumerate() {
            let mut group = w.next_row_group().map_err(written)?;
            for (j, column) in rg.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: meta.column_index().map(|c| c[i][j].clone()),
                    offset_index: meta.offset_index().map(|o| o[i][j].clone()),
                };
                group.append_column(&file, close).map_err(read)?;
            }
            group.close().map_err(written)?;
            rows += rg.num_rows() as u64;
        }
    }
    if let Some(w) = writer {
        w.close().map_err(written)?;
    }
    Ok(rows)
}

/// Streams the rows of `files` (staged files of one table and hour) into one Parquet file at
/// `out`, encoding them again.
fn reencode(table: Table, hour: i64, files: &[StagedFile], out: &Path) -> Result<StagedFile, LakeError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let parent = out.parent().expect("in a staging directory");
    std::fs::create_dir_all(parent).map_err(|e| LakeError::io(parent, e))?;
    let f = File::create(out).map_err(|e| LakeError::io(out, e))?;
    let written = |source| LakeError::Parquet { path: out.to_path_buf(), source };
    let mut writer = ArrowWriter::try_new(f, table.schema(), Some(writer_properties())).map_err(written)?;
    let mut rows = 0u64;
    for piece in files {
        let read = |source| LakeError::Parquet { path: piece.staged.clone(), source };
        let h = File::open(&piece.staged).map_err(|e| LakeError::io(&piece.staged, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(h).map_err(read)?.with_batch_size(8192).build().map_err(read)?;
        for batch in reader {
            // A decoding error names the staged file it came from, not "splitting a batch".
            let batch = batch.map_err(|e| read(e.into()))?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(written)?;
        }
    }
    writer.close().map_err(written)?;
    Ok(StagedFile::spanning(table, hour, out, rows, files))
}

/// Zstd level 3, [`ROW_GROUP_ROWS`] rows per row group.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Removes files [`place`] moved into the lake, when their commit is not
/// published after all.
pub fn remove_moved(lake: &Lake, files: &[DataFile]) {
    for f in files {
        let _ = std::fs::remove_file(lake.root().join(&f.path));
    }
}

impl StagedFile {
    /// Removes the file (its input failed).
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.staged);
    }
}

fn close((table, hour): (Table, i64), f: OpenFile) -> Result<StagedFile, LakeError> {
    f.writer.close().map_err(|source| LakeError::Parquet { path: f.staged.clone(), source })?;
    Ok(StagedFile { table, hour, staged: f.staged, rows: f.rows, min_time: f.min_time, max_time: f.max_time })
}

impl PartitionedWriter {
    /// Writes a batch of `table` (its first column `_time`), split by hour.
    pub fn write(&mut self, table: Table, batch: RecordBatch) -> Result<(), LakeError> {
        let times = batch
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("_time is the first column");
        let hours: Vec<i64> = times.values().iter().map(|t| t.div_euclid(HOUR_US)).collect();
        let first = hours.first().copied().unwrap_or(0);
        if let Some(max) = hours.iter().max() {
            self.newest_hour = self.newest_hour.max(*max);
        }
        let result = if hours.iter().all(|h| *h == first) {
            self.write_part(table, first, &batch)
        } else {
            let mut distinct = hours.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let mut r = Ok(());
            for h in distinct {
                let mask = BooleanArray::from(hours.iter().map(|x| *x == h).collect::<Vec<_>>());
                let part = filter_record_batch(&batch, &mask)?;
                r = self.write_part(table, h, &part);
                if r.is_err() {
                    break;
                }
            }
            r
        };
        result.and_then(|()| self.close_over_limits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a test does to the partition directory (its argument) before the rename.
    type Hook = Box<dyn FnMut(&Path)>;

    thread_local! {
        /// Called by [`move_into_lake`] between making the partition directory and the rename: a
        /// test plays the other job there.
        pub(super) static BETWEEN_DIR_AND_RENAME: std::cell::RefCell<Option<Hook>> = const { std::cell::RefCell::new(None) };
    }

    /// Another job removing the (empty) partition directory between its creation and the rename,
    /// as jobs that uploaded their files to an object store do: the move makes it again and goes
    /// on. If it never stays, the move gives up with an error naming the target, not a loop.
    #[test]
    fn a_partition_directory_removed_before_the_rename_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&dir.path().join("lake")).unwrap();
        let staging = tempfile::tempdir().unwrap();
        let rel = "endpoint/processes/date=2026-11-02/hour=00/a.parquet".to_string();
        for (removals, works) in [(3, true), (1000, false)] {
            let file = staged(staging.path(), "a.parquet", &processes(5, 0));
            let mut left = removals;
            BETWEEN_DIR_AND_RENAME.with(|h| {
                *h.borrow_mut() = Some(Box::new(move |parent: &Path| {
                    if left > 0 {
                        left -= 1;
                        std::fs::remove_dir(parent).unwrap();
                    }
                }))
            });
            let moved = move_into_lake(&lake, &file, rel.clone(), "none");
            BETWEEN_DIR_AND_RENAME.with(|h| *h.borrow_mut() = None);
            if works {
                let moved = moved.unwrap();
                assert_eq!((moved.path.as_str(), moved.rows), (rel.as_str(), 5));
                assert!(lake.root().join(&rel).is_file() && !file.staged.exists());
                std::fs::remove_file(lake.root().join(&rel)).unwrap();
            } else {
                let err = moved.unwrap_err().to_string();
                assert!(err.contains("hour=00/a.parquet") && file.staged.exists(), "{err}");
            }
        }
    }

    /// Hours that come back while others are written keep their one file; hours the writer has
    /// gone on without are closed; past [`MAX_OPEN_FILES`], the least recently written is closed,
    /// not the one being written.
    #[test]
    fn a_writer_keeps_one_file_per_hour_while_hours_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(&dir.path().join("lake")).unwrap();
        let session = IngestSession::begin(&lake).unwrap();
        let files_per_hour = |staged: &[StagedFile]| {
            let mut n: BTreeMap<i64, usize> = BTreeMap::new();
            for f in staged {
                *n.entry(f.hour).or_default() += 1;
            }
            n
        };
        // Rows of hours 0, 5 and 23 in turn, as flows that trail their processes come: each hour
        // is met again long after a later one.
        let mut w = PartitionedWriter::new(&lake, &session, "interleaved").unwrap();
        for round in 0..20 {
            for hour in [0, 5, 23] {
                w.write(Table::Processes, processes(10, hour * HOUR_US + round * 10)).unwrap();
            }
        }
        let staged = w.close().unwrap();
        assert_eq!(files_per_hour(&staged), BTreeMap::from([(0, 1), (5, 1), (23, 1)]));
        assert_eq!(staged.iter().map(StagedFile::rows).sum::<u64>(), 600);
        // Hours in order, more than a writer keeps open: one file each all the same, and the
        // oldest hours are closed on the way, not at the end.
        let hours = MAX_OPEN_FILES as i64 + 10;
        let mut w = PartitionedWriter::new(&lake, &session, "in-order").unwrap();
        for hour in 0..hours {
            w.write(Table::Processes, processes(3, hour * HOUR_US)).unwrap();
            assert!(w.open.len() <= MAX_OPEN_FILES);
        }
        assert_eq!(w.closed.len(), 10);
        assert!(w.closed.iter().all(|f| f.hour < 10), "the oldest hours were closed");
        let staged = w.close().unwrap();
        assert_eq!(files_per_hour(&staged), (0..hours).map(|h| (h, 1)).collect());
        // Hours the writer has gone on without (here, 12 rows written elsewhere since and the
        // newest hour 3 past): closed on the way, a handful stay open.
        let mut w = PartitionedWriter::new(&lake, &session, "gone-on").unwrap();
        w.idle_rows = 12;
        for hour in 0..20 {
            for part in 0..3 {
                w.write(Table::Processes, processes(3, hour * HOUR_US + part * 10)).unwrap();
            }
            assert!(w.open.len() <= KEEP_OPEN_HOURS as usize + 2, "{} open at hour {hour}", w.open.len());
        }
        let staged = w.close().unwrap();
        assert_eq!(files_per_hour(&staged), (0..20).map(|h| (h, 1)).collect());
        // More interleaved hours than a writer keeps open: the least recently written is closed,
        // never the one being written.
        let mut w = PartitionedWriter::new(&lake, &session, "many").unwrap();
        let many = MAX_OPEN_FILES as i64 + 6;
        for round in 0..3 {
            for hour in 0..many {
                w.write(Table::Processes, processes(2, hour * HOUR_US + round * 10)).unwrap();
                assert!(w.open.len() <= MAX_OPEN_FILES && w.open.contains_key(&(Table::Processes, hour)));
            }
        }
        assert_eq!(w.close().unwrap().iter().map(StagedFile::rows).sum::<u64>(), 2 * 3 * many as u64);
    }

    /// Processes `first_us` + 1 µs apart, with a command line per row.
    fn processes(n: usize, first_us: i64) -> RecordBatch {
        use crate::cim::processes::{ProcessRow, ProcessesBuilder};
        let mut b = ProcessesBuilder::default();
        let lines: Vec<String> = (0..n).map(|i| format!("cmd.exe /c echo {i}")).collect();
        for (i, line) in lines.iter().enumerate() {
            b.append(&ProcessRow { time_us: first_us + i as i64, dest: Some("h"), process: Some(line), ..Default::default() });
        }
        b.finish().unwrap()
    }

    fn staged(dir: &Path, name: &str, batch: &RecordBatch) -> StagedFile {
        let path = dir.join(name);
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), Table::Processes.schema(), Some(writer_properties())).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
        let times = batch.column(0).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        let (min, max) = (times.values().iter().min().copied().unwrap(), times.values().iter().max().copied().unwrap());
        StagedFile { table: Table::Processes, hour: 0, staged: path, rows: batch.num_rows() as u64, min_time: min, max_time: max }
    }

    /// Large files' row groups are copied, small files' rows encoded into one more group; every
    /// row, the Arrow types (time zone) and the page indexes survive.
    #[test]
    fn a_merge_copies_large_files_row_groups_and_encodes_the_small_ones_together() {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        let dir = tempfile::tempdir().unwrap();
        let big = COPY_MIN_ROWS as usize + 10;
        let files = vec![
            staged(dir.path(), "a.parquet", &processes(big, 0)),
            staged(dir.path(), "b.parquet", &processes(3, 1_000_000)),
            staged(dir.path(), "c.parquet", &processes(big, 2_000_000)),
            staged(dir.path(), "d.parquet", &processes(5, 3_000_000)),
        ];
        let out = dir.path().join("merged.parquet");
        let merged = merge(Table::Processes, 0, &files, &out).unwrap();
        assert_eq!(merged.rows, 2 * big as u64 + 8);
        assert_eq!((merged.min_time, merged.max_time), (0, 3_000_004));
        assert!(!dir.path().join("merged.small.parquet").exists(), "the encoded small files' temporary file stays");
        let opts = ArrowReaderOptions::new().with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(&out).unwrap(), opts).unwrap();
        assert_eq!(reader.schema(), &Table::Processes.schema(), "the Arrow schema, time zone included");
        let meta = reader.metadata().clone();
        assert_eq!(meta.num_row_groups(), 3, "a's and c's groups copied, b and d encoded together");
        assert_eq!(meta.row_groups().iter().map(|g| g.num_rows()).collect::<Vec<_>>(), vec![big as i64, big as i64, 8]);
        assert!(meta.offset_index().is_some_and(|o| o.len() == 3), "page indexes kept");
        let mut seen: Vec<(i64, String)> = Vec::new();
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let t = batch.column(0).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
            let cmd = batch.column_by_name("process").unwrap().as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            seen.extend((0..batch.num_rows()).map(|i| (t.value(i), cmd.value(i).to_string())));
        }
        seen.sort();
        let mut want: Vec<(i64, String)> = Vec::new();
        for (n, first) in [(big, 0), (3, 1_000_000), (big, 2_000_000), (5, 3_000_000)] {
            want.extend((0..n).map(|i| (first + i as i64, format!("cmd.exe /c echo {i}"))));
        }
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn partition_names() {
        assert_eq!(partition_dir(0), "date=1970-01-01/hour=00");
        let t = 1_602_155_026_617_920i64; // 2020-10-08T11:03:46Z
        assert_eq!(partition_dir(t.div_euclid(HOUR_US)), "date=2020-10-08/hour=11");
    }
}
