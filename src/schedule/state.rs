//! The scheduler's state in the lake: one checkpoint per detection and mode
//! (`_cimlake/schedule/<detection>.<mode>.json`, replaced atomically), and the lock that keeps two
//! schedulers on one lake from running the same window (`_cimlake/schedule/lock`, an OS file
//! lock: it is released when its holder exits, even by a crash).

use std::fs::File;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lake::{Lake, LakeError, sync_dir};

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
    lake.root().join("_cimlake/schedule")
}

fn path(lake: &Lake, detection: &str, mode: &str) -> PathBuf {
    dir(lake).join(format!("{detection}.{mode}.json"))
}

pub fn load(lake: &Lake, detection: &str, mode: &str) -> Result<Option<Checkpoint>, LakeError> {
    let p = path(lake, detection, mode);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| LakeError::BadCommit { path: p, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LakeError::io(&p, e)),
    }
}

/// Replaces the checkpoint atomically (write, sync, rename).
pub fn save(lake: &Lake, detection: &str, mode: &str, c: &Checkpoint) -> Result<(), LakeError> {
    let d = dir(lake);
    std::fs::create_dir_all(&d).map_err(|e| LakeError::io(&d, e))?;
    let target = path(lake, detection, mode);
    let tmp = d.join(format!(".{detection}.{mode}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec_pretty(c).expect("serialises")).map_err(|e| LakeError::io(&tmp, e))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| LakeError::io(&tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| LakeError::io(&target, e))?;
    sync_dir(&d);
    Ok(())
}

/// Holds the scheduler lock until dropped.
pub struct SchedulerLock {
    _file: File,
}

/// Takes the lake's scheduler lock, waiting for another scheduler's tick to finish.
pub fn lock(lake: &Lake) -> Result<SchedulerLock, LakeError> {
    let d = dir(lake);
    std::fs::create_dir_all(&d).map_err(|e| LakeError::io(&d, e))?;
    let p = d.join("lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&p).map_err(|e| LakeError::io(&p, e))?;
    file.lock().map_err(|e| LakeError::io(&p, e))?;
    Ok(SchedulerLock { _file: file })
}
