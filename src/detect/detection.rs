//! One detection of the catalog: its name, metadata and SQL per mode, where it came from, and for
//! a Sigma rule what the rule says beyond its metadata.

use std::collections::HashMap;
use std::sync::Arc;

use super::Mode;
use super::metadata::Metadata;
use super::sigma::info::SigmaInfo;

/// One detection: its directory name, metadata and SQL per mode.
#[derive(Debug, Clone)]
pub struct Detection {
    /// The directory name, e.g. `windows_http_network_communication_from_msiexec`.
    pub name: String,
    pub meta: Metadata,
    pub sql: HashMap<Mode, String>,
    /// Where each mode's SQL file was read from (`built-in sql/detections/…/cimlake.sql`, or a
    /// path under a `--sql-dir`), for errors.
    pub files: HashMap<Mode, String>,
    /// The source it came from: `built-in`, or the `--sql-dir` / `CIMLAKE_SQL_PATH` directory.
    pub origin: String,
    /// For a Sigma rule: its log source, level, tags and compiled condition.
    pub sigma: Option<Arc<SigmaInfo>>,
    /// For an ESCU detection translated from SPL: its search and status.
    pub escu: Option<Arc<crate::detect::escu::info::EscuInfo>>,
}

impl Detection {
    /// Whether it has SQL for `mode`.
    pub fn has_mode(&self, mode: Mode) -> bool {
        self.sql.contains_key(&mode)
    }

    /// Its modes, in order.
    pub fn modes(&self) -> Vec<Mode> {
        Mode::ALL.into_iter().filter(|m| self.has_mode(*m)).collect()
    }

    /// One of its SQL files (for messages about the detection as a whole).
    pub fn any_file(&self) -> &str {
        self.modes().first().map_or("", |m| self.files[m].as_str())
    }
}
