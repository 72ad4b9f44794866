//! `cimlake lake vacuum`: removing what no record of the lake names.
//!
//! A data file is part of the lake only once a commit or a run record names it, so a file in a
//! table's directory that none names is a leftover: of an ingest killed after it moved the file
//! into place, or of a scheduled run that died before publishing its record. Vacuum removes such a
//! file only when
//!
//! - no record names it, superseded runs included (`--as-of` still reads their files), or a
//!   compaction older than the retention period replaced it (`--as-of` a point before that
//!   compaction then finds its files gone, as in Delta Lake);
//! - it is older than the retention period (by modification time);
//! - for an ingested table, the ingest session in its name is not alive (its lock is free), so a
//!   file on its way into a commit is never taken.
//!
//! It also removes, once older than the retention period, the staging of dead ingest sessions and
//! the files of the record tables ([`super::records`]) their Delta logs do not name (a writer
//! killed before its Delta commit).
//!
//! In an object store ([`super::remote`]) there is neither lock nor session to ask: an object no
//! record names goes once older than the retention period, which must be longer than an ingest
//! takes from uploading a file to creating its commit.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{Lake, LakeError, check_data_path};
use crate::cim::Table;

/// What a vacuum removed (or, on a dry run, would remove).
#[derive(Debug, Default)]
pub struct Vacuumed {
    /// Lake-relative paths and their sizes.
    pub removed: Vec<(String, u64)>,
    /// Files no record names that were kept: younger than the retention period, or of a live
    /// ingest.
    pub kept: usize,
    /// Files compactions replaced that were kept: the compaction is younger than the retention
    /// period (`--as-of` before it still reads them).
    pub kept_replaced: usize,
}

impl Lake {
    /// Removes the data files no record names that are older than `retention` and not of a live
    /// ingest; with `dry_run`, only says which.
    pub fn vacuum(&self, retention: Duration, dry_run: bool) -> Result<Vacuumed, LakeError> {
        let mut out = Vacuumed::default();
        if !self.exists() {
            return Ok(out);
        }
        if let Some(remote) = self.remote() {
            return self.vacuum_remote(remote, retention, dry_run);
        }
        let now = SystemTime::now();
        let (named, replaced) = self.named_files(now, retention)?;
        out.kept_replaced += replaced.iter().filter(|f| self.root().join(&f.path).exists()).count();
        let old = |p: &Path| -> Result<bool, LakeError> {
            let m = std::fs::symlink_metadata(p).map_err(|e| LakeError::io(p, e))?;
            Ok(m.modified().ok().and_then(|t| now.duration_since(t).ok()).is_some_and(|age| age >= retention))
        };
        let super::Sessions { live, dead } = super::sessions(self)?;
        for table in Table::ALL_TABLES {
            let Some(dir) = table.lake_dir() else { continue };
            let mut files = Vec::new();
            parquet_under(&self.root().join(dir), &mut files);
            for path in files {
                let rel = path.strip_prefix(self.root()).expect("under the lake").to_string_lossy().replace('\\', "/");
                if named.contains(&rel) || check_data_path(&rel).is_err() {
                    continue;
                }
                let of_live = live.iter().any(|token| session_of(&path) == Some(token.as_str()));
                if of_live || !old(&path)? {
                    out.kept += 1;
                    continue;
                }
                let bytes = std::fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
                if !dry_run {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(LakeError::io(&path, e)),
                    }
                }
                out.removed.push((rel, bytes));
            }
        }
        // Files of `cimlake.runs`'s Delta table that a later publish replaced.
        let mut runs_files = Vec::new();
        parquet_under(&self.root().join(super::delta::RUNS_TABLE_DIR), &mut runs_files);
        for path in replaced_runs_files(runs_files) {
            if !old(&path)? {
                out.kept += 1;
                continue;
            }
            let bytes = std::fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                let _ = std::fs::remove_file(&path);
            }
            let rel = path.strip_prefix(self.root()).expect("under the lake").to_string_lossy().into_owned();
            out.removed.push((rel, bytes));
        }
        // Dead sessions' staging (never read; their files moved into tables were handled above).
        for (lock, _held) in dead {
            if old(&lock)? {
                let dir = lock.with_extension("");
                if !dry_run {
                    let _ = std::fs::remove_dir_all(&dir);
                    let _ = std::fs::remove_file(&lock);
                }
                let rel = dir.strip_prefix(self.root()).expect("under the lake").to_string_lossy().into_owned();
                out.removed.push((format!("{rel}/"), 0));
            }
        }
        // Record files no record table names: of a writer killed before its Delta commit.
        for dir in super::records::DIRS {
            let live = super::records::live_files(self, dir)?;
            for entry in std::fs::read_dir(self.root().join(dir)).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".parquet") && !live.contains(&name) && old(&entry.path())? {
                    let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    if !dry_run {
                        let _ = std::fs::remove_file(entry.path());
                    }
                    out.removed.push((format!("{dir}/{name}"), bytes));
                }
            }
        }
        out.removed.sort();
        Ok(out)
    }
}

impl Lake {
    /// The data files vacuum keeps however old: those a commit, a run record or a compaction
    /// names, less those compactions older than `retention` replaced; and the replaced files of
    /// younger compactions (`--as-of` a point before them still reads those).
    fn named_files(&self, now: SystemTime, retention: Duration) -> Result<(HashSet<String>, Vec<super::DataFile>), LakeError> {
        let mut named: HashSet<String> = self.commits()?.into_iter().flat_map(|c| c.files).map(|f| f.path).collect();
        named.extend(self.runs()?.into_iter().flat_map(|r| r.files).map(|f| f.path));
        let now_us = chrono::DateTime::<chrono::Utc>::from(now).timestamp_micros();
        let horizon = i64::try_from(retention.as_micros()).ok().and_then(|r| now_us.checked_sub(r));
        let mut kept_replaced = Vec::new();
        for c in self.compactions()? {
            named.extend(c.added.iter().map(|f| f.path.clone()));
            let at = super::committed_us(&c.committed_at, &self.record_dir(super::COMPACTIONS_DIR), c.id)?;
            if horizon.is_some_and(|h| at <= h) {
                for f in &c.removed {
                    named.remove(&f.path);
                }
            } else {
                kept_replaced.extend(c.removed);
            }
        }
        Ok((named, kept_replaced))
    }

    /// [`Lake::vacuum`] for a lake in an object store: the objects under the tables that no
    /// record names (files compactions replaced count once the compaction is older than
    /// `retention`), older than `retention` by their last modification. There is no lock to
    /// hold and no session to ask: an ingest uploads its files moments before the commit naming
    /// them, so the retention period must be longer than an ingest takes from upload to commit
    /// (the default, 7 days, is).
    fn vacuum_remote(&self, remote: &super::remote::Remote, retention: Duration, dry_run: bool) -> Result<Vacuumed, LakeError> {
        let mut out = Vacuumed::default();
        let now = SystemTime::now();
        let (named, replaced) = self.named_files(now, retention)?;
        out.kept_replaced += replaced.len();
        let mut unnamed = Vec::new();
        for dir in Table::ALL_TABLES.into_iter().filter_map(Table::lake_dir) {
            for (rel, bytes, modified) in remote.list(dir)? {
                if !rel.ends_with(".parquet") || named.contains(&rel) || check_data_path(&rel).is_err() {
                    continue;
                }
                if now.duration_since(modified).is_ok_and(|age| age >= retention) {
                    unnamed.push((rel, bytes));
                } else {
                    out.kept += 1;
                }
            }
        }
        // Replaced files of `cimlake.runs`'s Delta table, as on disk.
        let runs_files = remote.list(super::delta::RUNS_TABLE_DIR)?.into_iter().filter(|(rel, _, _)| rel.ends_with(".parquet"));
        for (rel, bytes, modified) in replaced_runs_files(runs_files) {
            if now.duration_since(modified).is_ok_and(|age| age >= retention) {
                unnamed.push((rel, bytes));
            } else {
                out.kept += 1;
            }
        }
        // Record files no record table names, as on disk.
        for dir in super::records::DIRS {
            let live = super::records::live_files(self, dir)?;
            for (rel, bytes, modified) in remote.list(dir)? {
                let Some(name) = rel.strip_prefix(&format!("{dir}/")) else { continue };
                if name.contains('/') || !name.ends_with(".parquet") || live.contains(name) {
                    continue;
                }
                if now.duration_since(modified).is_ok_and(|age| age >= retention) {
                    unnamed.push((rel, bytes));
                } else {
                    out.kept += 1;
                }
            }
        }
        if !dry_run {
            remote.delete_all(&unnamed.iter().map(|(rel, _)| rel.clone()).collect::<Vec<_>>())?;
        }
        out.removed = unnamed;
        out.removed.sort();
        Ok(out)
    }
}

impl Lake {
    /// Publishes a compaction with the next number, unless a compaction published since this
    /// one read the lake (`seen`) replaced one of the same files (two `optimize` runs at once, on
    /// one machine or two): then this one is refused and its files are not named, so no row is
    /// there twice.
    fn publish_compaction(&self, seen: u64, through_commit: u64, removed: Vec<super::DataFile>, added: Vec<super::DataFile>) -> Result<super::Compaction, LakeError> {
        let mut record = super::Compaction {
            id: 0,
            committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            through_commit,
            removed,
            added,
        };
        let replacing: HashSet<String> = record.removed.iter().map(|f| f.path.clone()).collect();
        let published = super::records::publish(self, super::COMPACTIONS_DIR, |id| {
            let since: Vec<super::Compaction> = self.compactions()?.into_iter().filter(|c| c.id > seen).collect();
            if let Some(other) = since.iter().find(|c| c.removed.iter().any(|f| replacing.contains(&f.path))) {
                return Err(LakeError::Busy {
                    path: self.record_dir(super::COMPACTIONS_DIR),
                    reason: format!("compaction {} merged some of the same files first; nothing was replaced (run `lake optimize` again)", other.id),
                });
            }
            record.id = id;
            Ok(Some((record.clone(), Vec::new())))
        })?;
        Ok(published.expect("a compaction is always published"))
    }
}

/// The files of `cimlake.runs`'s Delta table that later publishes replaced: all but the newest
/// (their names carry the zero-padded number of the last run they hold, so name order is
/// publish order). The newest is the table's; the others serve only reads of earlier versions.
fn replaced_runs_files<T: Ord>(files: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut files: Vec<T> = files.into_iter().collect();
    files.sort();
    files.pop();
    files
}

/// The session token in an ingested file's name (`<stem>-<session>-<n>.parquet`, the session
/// being the second-to-last `-` field).
fn session_of(path: &Path) -> Option<&str> {
    let stem = path.file_stem()?.to_str()?;
    let mut fields = stem.rsplit('-');
    fields.next()?;
    fields.next()
}

/// Every `.parquet` file under `dir`, not following links, not in a Delta log.
fn parquet_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if !path.ends_with("_delta_log") {
                parquet_under(&path, out);
            }
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

/// What `lake optimize` did, per table.
#[derive(Debug, Default)]
pub struct Optimized {
    /// The compaction it published (none when there was nothing to merge).
    pub compaction: Option<u64>,
    /// (table, partitions merged, files before, files after)
    pub tables: Vec<(Table, usize, usize, usize)>,
}

impl Lake {
    /// Merges the files of each partition (table, date, hour) of the ingested tables that has at
    /// least `min_files` (and two) into one, streaming, and publishes the replacement as one
    /// compaction: queries read the same rows from fewer files. Ingests may run meanwhile (their
    /// commits are not touched); two optimizes do not run at once.
    pub fn optimize(&self, min_files: usize) -> Result<Optimized, LakeError> {
        let mut out = Optimized::default();
        if !self.exists() {
            return Ok(out);
        }
        let lock_path = self.root().join(super::OPTIMIZE_LOCK);
        if let Some(dir) = lock_path.parent() {
            // A lake in an object store: the lock is in its local staging directory (one optimize
            // per machine; two machines are kept apart when they publish).
            std::fs::create_dir_all(dir).map_err(|e| LakeError::io(dir, e))?;
        }
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| LakeError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(LakeError::Busy { path: lock_path, reason: "another `cimlake lake optimize` is running on this lake".into() });
        }
        let session = super::IngestSession::begin(self)?;
        let view = self.view(None)?;
        let through_commit = view.commits.last().map_or(0, |c| c.id);
        let seen_compaction = view.compactions.last().map_or(0, |c| c.id);
        let mut groups: std::collections::BTreeMap<(String, String), Vec<super::DataFile>> = std::collections::BTreeMap::new();
        for f in view.ingested_files() {
            let dir = f.path.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string());
            groups.entry((f.table.clone(), dir)).or_default().push(f);
        }
        let merge_dir = session.staging_for("optimize");
        std::fs::create_dir_all(&merge_dir).map_err(|e| LakeError::io(&merge_dir, e))?;
        let (mut removed, mut added) = (Vec::new(), Vec::new());
        let mut per_table: std::collections::BTreeMap<&'static str, (usize, usize, usize)> = std::collections::BTreeMap::new();
        let result = (|| {
            for (n, ((table_name, dir), mut files)) in groups.into_iter().filter(|(_, g)| g.len() >= min_files.max(2)).enumerate() {
                let Some(table) = Table::STORED.into_iter().find(|t| t.qualified_name() == table_name) else { continue };
                files.sort_by_key(|f| f.min_time);
                let mut pieces: Vec<super::writer::StagedFile> = Vec::with_capacity(files.len());
                for (i, f) in files.iter().enumerate() {
                    let local = match self.remote() {
                        // In an object store, the partition's files are fetched first.
                        Some(remote) => {
                            let local = merge_dir.join(format!("{n}-in-{i}.parquet"));
                            remote.download(&f.path, &local)?;
                            local
                        }
                        None => self.root().join(&f.path),
                    };
                    pieces.push(super::writer::StagedFile::in_lake(table, local, f.rows, f.min_time, f.max_time));
                }
                let hour = files[0].min_time.div_euclid(super::writer::HOUR_US);
                let merged = super::writer::merge(table, hour, &pieces, &merge_dir.join(format!("{n}.parquet")))?;
                let want: u64 = files.iter().map(|f| f.rows).sum();
                if merged.rows() != want {
                    return Err(LakeError::BadRecord {
                        path: self.root().join(&dir),
                        reason: format!("the files hold {} rows, their commits say {want}; nothing was replaced", merged.rows()),
                    });
                }
                let rel = format!("{dir}/optimized-{}-{n}.parquet", session.token);
                added.push(match self.remote() {
                    Some(remote) => super::writer::upload_into_lake(remote, &merged, rel, "optimize-after-move")?,
                    None => super::writer::move_into_lake(self, &merged, rel, "optimize-after-move")?,
                });
                if self.remote().is_some() {
                    // The fetched copies.
                    pieces.iter().for_each(super::writer::StagedFile::remove);
                }
                let e = per_table.entry(table.qualified_name()).or_default();
                *e = (e.0 + 1, e.1 + files.len(), e.2 + 1);
                removed.extend(files);
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&merge_dir);
        let unmake = |added: &[super::DataFile]| match self.remote() {
            Some(remote) => remote.delete(&added.iter().map(|f| f.path.clone()).collect::<Vec<_>>()),
            None => super::writer::remove_moved(self, added),
        };
        if let Err(e) = result {
            unmake(&added);
            return Err(e);
        }
        if added.is_empty() {
            return Ok(out);
        }
        crate::fault::point("optimize-before-publish");
        let moved = added.clone();
        let published = self.publish_compaction(seen_compaction, through_commit, removed, added);
        let record = match published {
            Ok(r) => r,
            Err(e) => {
                // Nothing names the merged files: they go (the originals were never touched).
                unmake(&moved);
                return Err(e);
            }
        };
        drop(session);
        self.publish_ingest_tables()?;
        out.compaction = Some(record.id);
        out.tables = Table::STORED
            .into_iter()
            .filter_map(|t| per_table.get(t.qualified_name()).map(|&(p, before, after)| (t, p, before, after)))
            .collect();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_the_second_to_last_field_of_a_file_name() {
        assert_eq!(session_of(Path::new("date=2026-01-01/hour=01/ab12cd34ef56ab78-3-1a2b3c4d-0.parquet")), Some("1a2b3c4d"));
        assert_eq!(session_of(Path::new("x.parquet")), None);
    }
}
