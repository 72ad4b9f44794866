//! `cimlake lake vacuum`: removing what no record of the lake names.
//!
//! A data file is part of the lake only once a commit or a run record names it, so a file in a
//! table's directory that none names is a leftover: of an ingest killed after it moved the file
//! into place, or of a scheduled run that died before publishing its record. (The next ingest
//! also removes a killed ingest's leftovers; vacuum does it without ingesting, and covers runs.)
//! Vacuum removes such a file only when
//!
//! - no record names it, superseded runs included (`--as-of` still reads their files);
//! - it is older than the retention period (by modification time);
//! - for an ingested table, the ingest session in its name is not alive (its lock is free);
//!
//! and all of it under the commit lock, so no commit is published while it decides. It also
//! removes, once older than the retention period, the staging of dead ingest sessions and
//! records whose writer died while writing them (`.tmp-*.json`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{COMMITS_DIR, Lake, LakeError, RUNS_DIR, check_data_path};
use crate::cim::Table;

/// What a vacuum removed (or, on a dry run, would remove).
#[derive(Debug, Default)]
pub struct Vacuumed {
    /// Lake-relative paths and their sizes.
    pub removed: Vec<(String, u64)>,
    /// Files no record names that were kept: younger than the retention period, or of a live
    /// ingest.
    pub kept: usize,
}

impl Lake {
    /// Removes the data files no record names that are older than `retention` and not of a live
    /// ingest; with `dry_run`, only says which.
    pub fn vacuum(&self, retention: Duration, dry_run: bool) -> Result<Vacuumed, LakeError> {
        let mut out = Vacuumed::default();
        if !self.exists() {
            return Ok(out);
        }
        let _lock = self.commit_lock()?;
        let mut named: HashSet<String> = self.commits()?.into_iter().flat_map(|c| c.files).map(|f| f.path).collect();
        named.extend(self.runs()?.into_iter().flat_map(|r| r.files).map(|f| f.path));
        let now = SystemTime::now();
        let old = |p: &Path| -> Result<bool, LakeError> {
            let m = std::fs::symlink_metadata(p).map_err(|e| LakeError::io(p, e))?;
            Ok(m.modified().ok().and_then(|t| now.duration_since(t).ok()).is_some_and(|age| age >= retention))
        };
        let (live, dead) = self.sessions()?;
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
        // Dead sessions' staging (never read; their files moved into tables were handled above).
        for lock in dead {
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
        // Records being written when their writer died.
        for dir in [COMMITS_DIR, RUNS_DIR] {
            let dir = self.root().join(dir);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") && name.ends_with(".json") && old(&entry.path())? {
                    let rel = entry.path().strip_prefix(self.root()).expect("under the lake").to_string_lossy().into_owned();
                    let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    if !dry_run {
                        let _ = std::fs::remove_file(entry.path());
                    }
                    out.removed.push((rel, bytes));
                }
            }
        }
        out.removed.sort();
        Ok(out)
    }

    /// The tokens of the ingest sessions alive now (their lock is held), and the lock files of
    /// dead ones.
    fn sessions(&self) -> Result<(Vec<String>, Vec<PathBuf>), LakeError> {
        let staging = self.staging_dir();
        let (mut live, mut dead) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(&staging).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "lock") {
                let held = match std::fs::OpenOptions::new().write(true).open(&path) {
                    Ok(f) => f.try_lock().is_err(),
                    Err(_) => true, // unreadable: treat as alive, touch nothing of it
                };
                match (held, path.file_stem()) {
                    (true, Some(stem)) => live.push(stem.to_string_lossy().into_owned()),
                    (false, _) => dead.push(path),
                    (true, None) => {}
                }
            }
        }
        Ok((live, dead))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_is_the_second_to_last_field_of_a_file_name() {
        assert_eq!(session_of(Path::new("date=2026-01-01/hour=01/ab12cd34ef56ab78-3-1a2b3c4d-0.parquet")), Some("1a2b3c4d"));
        assert_eq!(session_of(Path::new("x.parquet")), None);
    }
}
