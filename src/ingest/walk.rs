//! Finding inputs: the files, directories and glob patterns given to `ingest` → the regular files
//! to read, and what was met on the way that is not one.
//!
//! Only regular files are inputs. A FIFO would block its reader forever, a device (`/dev/zero`)
//! never ends, a socket cannot be read: met while walking a directory or matching a glob, each is
//! skipped and reported with its kind; named directly, it is an error. Symbolic links are
//! followed, but a directory reached twice (the same device and inode, through a link loop such
//! as `loop -> .` or two links to one place) is walked once, so every walk ends. Hidden entries
//! (`.name`) are skipped in walks. Files are opened without blocking and checked again once open
//! ([`crate::convert::input::open_regular`]), so a path swapped for a FIFO after the walk is
//! refused, not waited on.

use std::collections::HashSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Why an input path cannot be used; stops an ingest before it starts.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{path}: not a regular file ({kind}): only regular files are inputs")]
    NotRegular { path: String, kind: &'static str },
    #[error("{pattern}: bad glob pattern: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error("{0}: the glob matched no files")]
    EmptyGlob(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Something met by a walk or a glob that is not an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    /// `a FIFO`, `a character device`, `a broken symbolic link`, `a directory already walked`, …
    pub reason: String,
}

/// The inputs found, in order, and what was skipped.
#[derive(Debug, Default)]
pub struct Found {
    pub files: Vec<PathBuf>,
    /// For each of `files`: whether it was named on the command line (not met by a walk or a
    /// glob). A named file that is not a log is an error; one met by a walk is skipped.
    pub named: Vec<bool>,
    pub skipped: Vec<Skipped>,
}

/// What a file system entry is, for a message: `a FIFO`, `a socket`, ….
fn kind(meta: &Metadata) -> &'static str {
    crate::convert::input::file_kind(meta.file_type())
}

/// Files, directories (walked recursively) and glob patterns → the regular files they name, each
/// once (by device and inode), in order: arguments in turn, a directory's entries by name.
pub fn find_inputs(args: &[PathBuf]) -> Result<Found, WalkError> {
    let mut walk = Walk::default();
    for arg in args {
        let text = arg.to_string_lossy();
        match std::fs::metadata(arg) {
            Ok(meta) if meta.is_file() => walk.file(arg.clone(), &meta, true),
            Ok(meta) if meta.is_dir() => walk.dir(arg, &meta)?,
            Ok(meta) => return Err(WalkError::NotRegular { path: text.to_string(), kind: kind(&meta) }),
            Err(_) if text.contains(['*', '?', '[']) => walk.glob(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let broken = std::fs::symlink_metadata(arg).is_ok();
                return Err(if broken {
                    WalkError::NotRegular { path: text.to_string(), kind: "a broken symbolic link" }
                } else {
                    WalkError::NotFound(text.to_string())
                });
            }
            Err(e) => return Err(WalkError::Io { path: text.to_string(), source: e }),
        }
    }
    Ok(walk.found)
}

#[derive(Default)]
struct Walk {
    found: Found,
    /// (device, inode) of every directory walked and file taken.
    seen: HashSet<(u64, u64)>,
}

impl Walk {
    fn file(&mut self, path: PathBuf, meta: &Metadata, named: bool) {
        if self.seen.insert((meta.dev(), meta.ino())) {
            self.found.files.push(path);
            self.found.named.push(named);
        }
    }

    fn skip(&mut self, path: PathBuf, reason: impl Into<String>) {
        self.found.skipped.push(Skipped { path, reason: reason.into() });
    }

    /// Walks `dir` (whose metadata is `meta`), depth first, entries by name; each directory once.
    fn dir(&mut self, dir: &Path, meta: &Metadata) -> Result<(), WalkError> {
        if !self.seen.insert((meta.dev(), meta.ino())) {
            self.skip(dir.to_path_buf(), "a directory already walked (a link loop or a second link to it)");
            return Ok(());
        }
        let io = |e| WalkError::Io { path: dir.display().to_string(), source: e };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            self.entry(p)?;
        }
        Ok(())
    }

    /// One entry met by a walk or a glob: a file is taken, a directory walked, anything else skipped.
    fn entry(&mut self, p: PathBuf) -> Result<(), WalkError> {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => self.dir(&p, &m),
            Ok(m) if m.is_file() => {
                self.file(p, &m, false);
                Ok(())
            }
            Ok(m) => {
                self.skip(p, kind(&m));
                Ok(())
            }
            Err(e) if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) => {
                self.skip(p, format!("a broken symbolic link ({e})"));
                Ok(())
            }
            Err(e) => {
                self.skip(p, format!("unreadable ({e})"));
                Ok(())
            }
        }
    }

    /// The entries matching `pattern`: the directory before its first wildcard is walked, to the
    /// depth the pattern has (any depth with `**`), with loops walked once like any walk.
    fn glob(&mut self, pattern: &str) -> Result<(), WalkError> {
        let bad = |reason: String| WalkError::BadGlob { pattern: pattern.to_string(), reason };
        let compiled = glob::Pattern::new(pattern).map_err(|e| bad(e.to_string()))?;
        let options = glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: true };
        let path = Path::new(pattern);
        let mut base = PathBuf::new();
        let mut rest = Vec::new();
        for c in path.components() {
            let s = c.as_os_str().to_string_lossy();
            if rest.is_empty() && !s.contains(['*', '?', '[']) {
                base.push(c);
            } else {
                rest.push(c);
            }
        }
        let depth = if rest.iter().any(|c| matches!(c, Component::Normal(s) if s.to_string_lossy().contains("**"))) {
            usize::MAX
        } else {
            rest.len()
        };
        let before = (self.found.files.len(), self.found.skipped.len());
        let mut matched = Vec::new();
        let mut dirs_seen = HashSet::new();
        collect_matches(&base, depth, &compiled, options, &mut dirs_seen, &mut matched);
        matched.sort();
        for p in matched {
            self.entry(p)?;
        }
        if (self.found.files.len(), self.found.skipped.len()) == before {
            return Err(WalkError::EmptyGlob(pattern.to_string()));
        }
        Ok(())
    }
}

/// Entries under `dir` (empty for the working directory), to `depth` levels, whose path matches
/// `pattern`; a directory that does not match is looked into, each once.
fn collect_matches(
    dir: &Path,
    depth: usize,
    pattern: &glob::Pattern,
    options: glob::MatchOptions,
    dirs_seen: &mut HashSet<(u64, u64)>,
    out: &mut Vec<PathBuf>,
) {
    let read_from = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if depth == 0 {
        return;
    }
    let Ok(meta) = std::fs::metadata(read_from) else { return };
    if !dirs_seen.insert((meta.dev(), meta.ino())) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(read_from) else { return };
    for entry in entries.flatten() {
        let p = dir.join(entry.file_name());
        if pattern.matches_path_with(&p, options) {
            out.push(p);
        } else if std::fs::metadata(&p).is_ok_and(|m| m.is_dir()) {
            collect_matches(&p, depth - 1, pattern, options, dirs_seen, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(found: &Found, root: &Path) -> Vec<String> {
        found.files.iter().map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string()).collect()
    }

    #[test]
    fn loops_and_second_links_are_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/one.log"), "1").unwrap();
        std::fs::write(root.join("a/b/two.log"), "2").unwrap();
        // A loop to the root, a loop to a parent, and a second link to a directory.
        std::os::unix::fs::symlink(".", root.join("a/loop")).unwrap();
        std::os::unix::fs::symlink("..", root.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink("a/b", root.join("again")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("broken")).unwrap();
        let found = find_inputs(&[root.to_path_buf()]).unwrap();
        assert_eq!(names(&found, root), vec!["a/b/two.log", "a/one.log"]);
        let skipped: Vec<String> = found.skipped.iter().map(|s| format!("{}: {}", s.path.strip_prefix(root).unwrap().display(), s.reason)).collect();
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped.iter().any(|s| s.starts_with("a/loop: a directory already walked")), "{skipped:?}");
        assert!(skipped.iter().any(|s| s.starts_with("a/b/up: a directory already walked")), "{skipped:?}");
        assert!(skipped.iter().any(|s| s.starts_with("again: a directory already walked")), "{skipped:?}");
        assert!(skipped.iter().any(|s| s.starts_with("broken: a broken symbolic link")), "{skipped:?}");
    }

    #[test]
    fn two_loops_do_not_make_the_walk_exponential() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("x.log"), "x").unwrap();
        std::os::unix::fs::symlink(".", root.join("l1")).unwrap();
        std::os::unix::fs::symlink(".", root.join("l2")).unwrap();
        let started = std::time::Instant::now();
        let found = find_inputs(&[root.to_path_buf()]).unwrap();
        assert_eq!(names(&found, root), vec!["x.log"]);
        assert_eq!(found.skipped.len(), 2);
        let pattern = format!("{}/**/*.log", root.display());
        let globbed = find_inputs(&[PathBuf::from(pattern)]).unwrap();
        assert_eq!(names(&globbed, root), vec!["x.log"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn fifos_and_devices_are_skipped_in_walks_and_globs_and_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.log"), "a").unwrap();
        let fifo = root.join("b.log");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/zero", root.join("c.log")).unwrap();
        for arg in [root.to_path_buf(), root.join("*.log")] {
            let found = find_inputs(&[arg]).unwrap();
            assert_eq!(names(&found, root), vec!["a.log"]);
            let skipped: Vec<(String, &str)> =
                found.skipped.iter().map(|s| (s.path.file_name().unwrap().to_string_lossy().to_string(), s.reason.as_str())).collect();
            assert_eq!(skipped, vec![("b.log".to_string(), "a FIFO"), ("c.log".to_string(), "a character device")]);
        }
        let err = find_inputs(std::slice::from_ref(&fifo)).unwrap_err().to_string();
        assert!(err.ends_with("b.log: not a regular file (a FIFO): only regular files are inputs"), "{err}");
        // Opened without blocking, and refused.
        let open = crate::convert::input::open_regular;
        let err = open(&fifo).unwrap_err().to_string();
        assert!(err.contains("not a regular file (a FIFO)"), "{err}");
        assert!(open(Path::new("/dev/zero")).unwrap_err().to_string().contains("a character device"));
        assert!(find_inputs(&[root.join("*.nothing")]).unwrap_err().to_string().contains("the glob matched no files"));
        assert!(find_inputs(&[root.join("missing.log")]).unwrap_err().to_string().contains("no such file or directory"));
    }
}
