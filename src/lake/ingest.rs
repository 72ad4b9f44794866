//! `ingest`: expands input paths, skips inputs already in the lake (by content hash), converts
//! each new input and publishes it as one commit.

use std::collections::HashMap;
use std::io::{BufReader, Read};

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::writer::PartitionedWriter;
use super::{Commit, InputRecord, Lake, LakeError};
use crate::convert::input::{self, InputOptions};
use crate::convert::{self, ConvertError, Emitter, Sourcetype, Stats};

/// Options for [`ingest`].
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Force a shape instead of detecting it.
    pub sourcetype: Option<Sourcetype>,
    pub batch_size: usize,
    /// Stop at the first bad record.
    pub strict: bool,
    /// Keep the records before a truncated or corrupt gzip/tar stream instead of failing the input.
    pub salvage: bool,
    /// Draw a progress bar (only where stderr is a terminal).
    pub progress: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            sourcetype: None,
            batch_size: convert::DEFAULT_BATCH_SIZE,
            strict: false,
            salvage: false,
            progress: false,
        }
    }
}

/// What happened to one input.
#[derive(Debug)]
pub enum InputOutcome {
    Ingested { path: PathBuf, commit: Commit },
    /// The same bytes were ingested before (commit id, path then).
    AlreadyIngested { path: PathBuf, commit_id: u64, as_path: String },
    Failed { path: PathBuf, error: String },
}

/// The outcome of an ingest run.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub inputs: Vec<InputOutcome>,
}

impl IngestReport {
    /// Stats of the inputs ingested by this run.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for i in &self.inputs {
            if let InputOutcome::Ingested { commit, .. } = i {
                total.merge(&commit.input.stats);
            }
        }
        total
    }

    pub fn failed(&self) -> usize {
        self.inputs.iter().filter(|i| matches!(i, InputOutcome::Failed { .. })).count()
    }
}

/// Errors that stop an ingest before it starts.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{pattern}: bad glob pattern: {reason}")]
    BadGlob { pattern: String, reason: String },
    #[error("{0}: the glob matched no files")]
    EmptyGlob(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// Files, directories (walked recursively, hidden entries skipped) and globs → sorted files.
pub fn expand_inputs(args: &[PathBuf]) -> Result<Vec<PathBuf>, IngestError> {
    let mut out = Vec::new();
    for arg in args {
        let s = arg.to_string_lossy();
        if arg.is_file() {
            out.push(arg.clone());
        } else if arg.is_dir() {
            walk(arg, &mut out)?;
        } else if s.contains(['*', '?', '[']) {
            let paths = glob::glob(&s)
                .map_err(|e| IngestError::BadGlob { pattern: s.to_string(), reason: e.to_string() })?;
            let mut found = 0;
            for p in paths {
                let p = p.map_err(|e| IngestError::BadGlob { pattern: s.to_string(), reason: e.to_string() })?;
                if p.is_dir() {
                    walk(&p, &mut out)?;
                } else {
                    out.push(p);
                }
                found += 1;
            }
            if found == 0 {
                return Err(IngestError::EmptyGlob(s.to_string()));
            }
        } else {
            return Err(IngestError::NotFound(s.to_string()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IngestError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LakeError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// BLAKE3 of a file, hex.
pub fn hash_file(path: &Path) -> Result<(String, u64), LakeError> {
    let f = std::fs::File::open(path).map_err(|e| LakeError::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut BufReader::with_capacity(1 << 20, f), &mut hasher)
        .map_err(|e| LakeError::io(path, e))?;
    Ok((hasher.finalize().to_hex().to_string(), n))
}

/// Ingests `inputs` into `lake`, one commit per new input.
pub fn ingest(lake: &Lake, inputs: &[PathBuf], opts: &IngestOptions) -> Result<IngestReport, IngestError> {
    let files = expand_inputs(inputs)?;
    let total_bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = if opts.progress { ProgressBar::new(total_bytes) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}")
            .expect("valid template"),
    );
    let mut manifest: HashMap<String, (u64, String)> = lake
        .manifest()?
        .into_iter()
        .map(|(h, c)| (h, (c.id, c.input.path)))
        .collect();
    let mut report = IngestReport::default();
    for path in files {
        bar.set_message(path.display().to_string());
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let outcome = ingest_one(lake, &path, opts, &mut manifest, &bar);
        if let InputOutcome::AlreadyIngested { .. } = outcome {
            bar.inc(size);
        }
        report.inputs.push(outcome);
    }
    bar.finish_and_clear();
    Ok(report)
}

fn ingest_one(
    lake: &Lake,
    path: &Path,
    opts: &IngestOptions,
    manifest: &mut HashMap<String, (u64, String)>,
    bar: &ProgressBar,
) -> InputOutcome {
    let failed = |error: String| InputOutcome::Failed { path: path.to_path_buf(), error };
    let stamp = |p: &Path| std::fs::metadata(p).map(|m| (m.len(), m.modified().ok())).ok();
    let before = stamp(path);
    let (hash, bytes) = match hash_file(path) {
        Ok(h) => h,
        Err(e) => return failed(e.to_string()),
    };
    if let Some((id, as_path)) = manifest.get(&hash) {
        return InputOutcome::AlreadyIngested { path: path.to_path_buf(), commit_id: *id, as_path: as_path.clone() };
    }
    let source = path.to_string_lossy().to_string();
    let mut writer = match PartitionedWriter::new(lake, &hash[..16]) {
        Ok(w) => w,
        Err(e) => return failed(e.to_string()),
    };
    let start_position = bar.position();
    let input_opts = InputOptions { sourcetype: opts.sourcetype, salvage: opts.salvage };
    let converted = {
        let mut emitter = Emitter::new(&mut writer).with_batch_size(opts.batch_size).with_strict(opts.strict);
        std::fs::File::open(path)
            .map_err(|e| ConvertError::io(path, e))
            .and_then(|f| input::convert_input(ProgressRead { inner: f, bar }, path, &source, input_opts, &mut emitter))
            .and_then(|info| emitter.finish().map(|stats| (info, stats)))
    };
    bar.set_position(start_position + bytes);
    let (info, stats) = match converted {
        Ok(s) => s,
        Err(e) => {
            writer.abort();
            return failed(e.to_string());
        }
    };
    // A file still being written would be committed half, then again whole under another hash.
    if stamp(path) != before || before.map(|(len, _)| len) != Some(bytes) {
        writer.abort();
        return failed(format!(
            "{}: the file changed while it was being ingested; ingest it once it is complete (move files into a landing directory whole)",
            path.display()
        ));
    }
    let files = match writer.finish() {
        Ok(f) => f,
        Err(e) => return failed(e.to_string()),
    };
    let commit = Commit {
        id: 0,
        committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        input: InputRecord {
            path: source,
            hash: hash.clone(),
            bytes,
            container: info.container,
            sourcetypes: info.sourcetypes,
            stats,
        },
        files,
    };
    match lake.publish(commit) {
        Ok(commit) => {
            manifest.insert(hash, (commit.id, commit.input.path.clone()));
            InputOutcome::Ingested { path: path.to_path_buf(), commit }
        }
        Err(e) => failed(e.to_string()),
    }
}

/// Counts bytes read into the progress bar.
struct ProgressRead<'a, R> {
    inner: R,
    bar: &'a ProgressBar,
}

impl<R: Read> Read for ProgressRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
