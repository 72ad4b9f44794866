//! The scheduler's state in the lake: one checkpoint per detection and mode
//! (`_cimlake/schedule/<detection>.<mode>.json`, replaced atomically), and the lock that keeps two
//! schedulers on one lake from running the same window (`_cimlake/schedule/lock`, an OS file
//! lock: it is released when its holder exits, even by a crash).
//!
//! For a lake in an object store the checkpoints are objects of the lake (one PUT replaces one
//! whole), and the lock is in the lake's local staging directory: it keeps two schedulers on one
//! machine apart, not two machines (run one scheduler per lake).

use std::fs::File;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lake::{Lake, sync_dir};
use crate::time::{MAX_TIME_US, MIN_TIME_US};

/// Errors of the scheduler's state, each naming its file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Reading or writing a checkpoint in an object store.
    #[error(transparent)]
    Store(#[from] crate::lake::LakeError),
    /// A checkpoint that is not one: truncated, or a field of the wrong type. (Its text calls it
    /// a commit, as it always has.)
    #[error("{path}: unreadable commit: {source}")]
    Unreadable { path: PathBuf, source: serde_json::Error },
    /// A checkpoint whose last run is outside the times the lake holds: the catch-up from it
    /// would never end, or nothing would ever be due again.
    #[error("{path}: refused: its last run was scheduled at {last_fire}, outside the times the lake holds (years 1 to 9999)")]
    OutOfRange { path: PathBuf, last_fire: DateTime<Utc> },
}

impl StateError {
    fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        StateError::Io { path: path.to_path_buf(), source }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last scheduled time whose window was run.
    pub last_fire: DateTime<Utc>,
    /// Its window.
    pub last_earliest: DateTime<Utc>,
    pub last_latest: DateTime<Utc>,
    /// The newest lake commit looked at for late data.
    pub seen_commit: u64,
    pub updated_at: DateTime<Utc>,
}

fn dir(lake: &Lake) -> PathBuf {
    lake.root().join(crate::lake::SCHEDULE_DIR)
}

/// A checkpoint's path relative to the lake.
fn object(detection: &str, mode: &str) -> String {
    format!("{}/{detection}.{mode}.json", crate::lake::SCHEDULE_DIR)
}

fn path(lake: &Lake, detection: &str, mode: &str) -> PathBuf {
    dir(lake).join(format!("{detection}.{mode}.json"))
}

/// The checkpoint of a detection in a mode, if it has run; an error naming the file if the file
/// cannot be read or is not a checkpoint.
pub fn load(lake: &Lake, detection: &str, mode: &str) -> Result<Option<Checkpoint>, StateError> {
    let (p, bytes) = if let Some(remote) = lake.remote() {
        let rel = object(detection, mode);
        match remote.get(&rel)? {
            Some(bytes) => (remote.display(&rel), bytes.to_vec()),
            None => return Ok(None),
        }
    } else {
        let p = path(lake, detection, mode);
        match std::fs::read(&p) {
            Ok(bytes) => (p, bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io(&p, e)),
        }
    };
    let c: Checkpoint = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(source) => return Err(StateError::Unreadable { path: p, source }),
    };
    if !(MIN_TIME_US..=MAX_TIME_US).contains(&c.last_fire.timestamp_micros()) {
        return Err(StateError::OutOfRange { path: p, last_fire: c.last_fire });
    }
    Ok(Some(c))
}

/// Replaces the checkpoint atomically (write, sync, rename).
pub fn save(lake: &Lake, detection: &str, mode: &str, c: &Checkpoint) -> Result<(), StateError> {
    if let Some(remote) = lake.remote() {
        remote.put(&object(detection, mode), serde_json::to_vec_pretty(c).expect("serialises"))?;
        return Ok(());
    }
    let d = dir(lake);
    std::fs::create_dir_all(&d).map_err(|e| StateError::io(&d, e))?;
    let target = path(lake, detection, mode);
    let tmp = d.join(format!(".{detection}.{mode}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(c).expect("serialises")).map_err(|e| StateError::io(&tmp, e))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| StateError::io(&tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| StateError::io(&target, e))?;
    sync_dir(&d);
    Ok(())
}

/// Holds the scheduler lock until dropped.
pub struct SchedulerLock {
    _file: File,
}

/// Takes the lake's scheduler lock, waiting for another scheduler's tick to finish.
pub fn lock(lake: &Lake) -> Result<SchedulerLock, StateError> {
    let d = dir(lake);
    std::fs::create_dir_all(&d).map_err(|e| StateError::io(&d, e))?;
    let p = d.join("lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&p).map_err(|e| StateError::io(&p, e))?;
    file.lock().map_err(|e| StateError::io(&p, e))?;
    Ok(SchedulerLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
  "last_fire": "2026-11-03T13:00:00Z",
  "last_earliest": "2026-11-03T11:50:00Z",
  "last_latest": "2026-11-03T12:50:00Z",
  "seen_commit": 1,
  "updated_at": "2026-11-03T13:00:02.5Z"
}"#;

    /// `load` of a checkpoint file holding `text`.
    fn load_text(lake: &Lake, text: &str) -> Result<Option<Checkpoint>, StateError> {
        std::fs::create_dir_all(dir(lake)).unwrap();
        std::fs::write(path(lake, "d", "cimlake"), text).unwrap();
        load(lake, "d", "cimlake")
    }

    #[test]
    fn checkpoints_round_trip_and_none_is_never_run() {
        let tmp = tempfile::tempdir().unwrap();
        let lake = Lake::new(tmp.path());
        assert_eq!(load(&lake, "d", "cimlake").unwrap(), None);
        let c = load_text(&lake, GOOD).unwrap().unwrap();
        assert_eq!(c.seen_commit, 1);
        save(&lake, "d", "splunk", &c).unwrap();
        assert_eq!(load(&lake, "d", "splunk").unwrap(), Some(c));
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_naming_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let lake = Lake::new(tmp.path());
        let file = path(&lake, "d", "cimlake");
        let named = |e: &StateError| e.to_string().starts_with(&format!("{}: ", file.display()));
        // Truncated, and empty.
        for cut in [0, 1, GOOD.len() / 2, GOOD.len() - 1] {
            let err = load_text(&lake, &GOOD[..cut]).unwrap_err();
            assert!(matches!(&err, StateError::Unreadable { path, .. } if *path == file), "cut at {cut}: {err:?}");
            assert!(named(&err), "{err}");
        }
        // Fields of the wrong type, or missing.
        for bad in [
            GOOD.replace(r#""2026-11-03T13:00:00Z""#, "5"),
            GOOD.replace(r#""seen_commit": 1"#, r#""seen_commit": -1"#),
            GOOD.replace(r#""seen_commit": 1"#, r#""seen_commit": "1""#),
            GOOD.replace(r#""last_fire": "2026-11-03T13:00:00Z","#, ""),
            "[]".to_string(),
            "null".to_string(),
            "\u{0}\u{ff}".to_string(),
        ] {
            let err = load_text(&lake, &bad).unwrap_err();
            assert!(matches!(err, StateError::Unreadable { .. }), "{bad}: {err:?}");
            assert!(named(&err) && err.to_string().contains("unreadable"), "{err}");
        }
        // Absurd times: before year 1 the catch-up would never end; past year 9999 nothing would
        // ever be due again. Beyond what chrono holds, the JSON does not parse.
        let with_last_fire = |t: &str| load_text(&lake, &GOOD.replace("2026-11-03T13:00:00Z", t));
        for absurd in ["-262143-01-01T00:00:00Z", "0000-12-31T23:59:59Z", "+10000-01-01T00:00:01Z", "+262142-12-31T23:59:59Z"] {
            let err = with_last_fire(absurd).unwrap_err();
            assert!(matches!(err, StateError::OutOfRange { .. }), "{absurd}: {err:?}");
            assert!(named(&err) && err.to_string().contains("outside the times the lake holds"), "{err}");
        }
        let err = with_last_fire("+999999-01-01T00:00:00Z").unwrap_err();
        assert!(matches!(err, StateError::Unreadable { .. }) && named(&err), "{err:?}");
        for edge in ["0001-01-01T00:00:00Z", "+10000-01-01T00:00:00Z"] {
            assert!(with_last_fire(edge).unwrap().is_some(), "{edge}");
        }
    }
}
