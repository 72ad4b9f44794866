//! `ingest`: expands input paths, skips inputs already in the lake (by content hash), converts
//! each new input and publishes it as one commit.

use std::collections::HashMap;
use std::io::{BufReader, Read};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use super::walk::{Skipped, find_inputs, open_input};
use super::writer::{PartitionedWriter, remove_moved};
use super::{Commit, IngestSession, InputRecord, KnownInputs, Lake, LakeError, Published};
use crate::convert::input::{self, InputInfo, InputOptions};
use crate::convert::{self, ConvertError, Emitter, Sourcetype, Stats, split};

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
    /// Inputs converted at once, and pieces of one large input converted at once.
    pub jobs: usize,
    /// A plain text input larger than this is split into pieces of about this size.
    pub piece_bytes: usize,
}

/// Default [`IngestOptions::piece_bytes`].
pub const DEFAULT_PIECE_BYTES: usize = 16 << 20;

/// The machine's cores (1 if unknown): the default [`IngestOptions::jobs`].
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            sourcetype: None,
            batch_size: convert::DEFAULT_BATCH_SIZE,
            strict: false,
            salvage: false,
            progress: false,
            jobs: default_jobs(),
            piece_bytes: DEFAULT_PIECE_BYTES,
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
    /// What the walks and globs met that is not a regular file.
    pub skipped: Vec<Skipped>,
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
    #[error(transparent)]
    Walk(#[from] super::walk::WalkError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// BLAKE3 of a file, hex.
pub fn hash_file(path: &Path) -> Result<(String, u64), LakeError> {
    let f = open_input(path).map_err(|e| LakeError::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut BufReader::with_capacity(1 << 20, f), &mut hasher)
        .map_err(|e| LakeError::io(path, e))?;
    Ok((hasher.finalize().to_hex().to_string(), n))
}

/// Ingests `inputs` into `lake`, one commit per new input.
///
/// Inputs are hashed, then converted `opts.jobs` at a time. A plain XmlWinEventLog or Windows
/// event JSON file larger than `opts.piece_bytes` is instead split into pieces converted on every
/// job at once ([`crate::convert::split`]). Memory then depends on `jobs` and `piece_bytes`, not
/// on input size.
pub fn ingest(lake: &Lake, inputs: &[PathBuf], opts: &IngestOptions) -> Result<IngestReport, IngestError> {
    let found = find_inputs(inputs)?;
    let files = found.files;
    let total_bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = if opts.progress { ProgressBar::new(total_bytes) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}")
            .expect("valid template"),
    );
    let session = IngestSession::begin(lake)?;
    let known = KnownInputs::load(lake)?;
    let jobs = opts.jobs.max(1);
    let looked = parallel_map(&files, jobs, |p| look(p, opts));

    // What to do with each input: nothing (already in the lake, or the same bytes as an earlier
    // input of this run), convert it whole, or split it.
    let mut outcomes: Vec<Option<InputOutcome>> = Vec::with_capacity(files.len());
    let mut first_with_hash: HashMap<&str, usize> = HashMap::new();
    let mut same_as: Vec<(usize, usize)> = Vec::new();
    let (mut whole, mut split) = (Vec::new(), Vec::new());
    for (i, (path, l)) in files.iter().zip(&looked).enumerate() {
        let outcome = match l {
            Err(error) => Some(InputOutcome::Failed { path: path.clone(), error: error.clone() }),
            Ok(l) => match known.get(&l.hash) {
                Some(first) => {
                    bar.inc(l.bytes);
                    Some(InputOutcome::AlreadyIngested { path: path.clone(), commit_id: first.commit_id, as_path: first.path.clone() })
                }
                None => {
                    match first_with_hash.get(l.hash.as_str()) {
                        Some(&first) => {
                            bar.inc(l.bytes);
                            same_as.push((i, first));
                        }
                        None => {
                            first_with_hash.insert(&l.hash, i);
                            match l.split {
                                Some(shape) if jobs > 1 => split.push((i, shape)),
                                _ => whole.push(i),
                            }
                        }
                    }
                    None
                }
            },
        };
        outcomes.push(outcome);
    }

    let target = Target { lake, session: &session, known: Mutex::new(known) };
    let converted = parallel_map(&whole, jobs, |&i| {
        let l = looked[i].as_ref().expect("looked at");
        ingest_one(&target, &files[i], l, opts, &bar, |writer_stem, source, convert_opts, counted| {
            convert_whole(&target, &files[i], writer_stem, source, convert_opts, Progress { bar: &bar, counted })
        })
    });
    for (&i, outcome) in whole.iter().zip(converted) {
        outcomes[i] = Some(outcome);
    }
    for (i, shape) in split {
        let l = looked[i].as_ref().expect("looked at");
        outcomes[i] = Some(ingest_one(&target, &files[i], l, opts, &bar, |writer_stem, source, convert_opts, counted| {
            convert_split(&target, &files[i], shape, writer_stem, source, convert_opts, jobs, Progress { bar: &bar, counted })
        }));
    }
    for (i, first) in same_as {
        let path = files[i].clone();
        outcomes[i] = Some(match outcomes[first].as_ref().expect("converted") {
            InputOutcome::Ingested { commit, .. } => {
                InputOutcome::AlreadyIngested { path, commit_id: commit.id, as_path: commit.input.path.clone() }
            }
            _ => InputOutcome::Failed {
                path,
                error: format!("same bytes as {}, which failed", files[first].display()),
            },
        });
    }
    bar.finish_and_clear();
    Ok(IngestReport { inputs: outcomes.into_iter().map(|o| o.expect("every input decided")).collect(), skipped: found.skipped })
}

/// `f` over `items` on up to `jobs` threads; results in the order of `items`.
fn parallel_map<T: Sync, U: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    if jobs <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<U>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(items.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    results.lock().expect("no panics while held")[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().expect("no panics while held").into_iter().map(|r| r.expect("every item mapped")).collect()
}

/// Where an ingest writes: the lake, its session there, and the inputs known to be in it.
struct Target<'a> {
    lake: &'a Lake,
    session: &'a IngestSession,
    known: Mutex<KnownInputs>,
}

/// An input before conversion: its content hash, size and state, and whether it can be split.
struct Looked {
    hash: String,
    bytes: u64,
    stamp: Option<Stamp>,
    split: Option<Sourcetype>,
}

type Stamp = (u64, Option<std::time::SystemTime>);

fn stamp(p: &Path) -> Option<Stamp> {
    std::fs::metadata(p).map(|m| (m.len(), m.modified().ok())).ok()
}

fn look(path: &Path, opts: &IngestOptions) -> Result<Looked, String> {
    let stamp = stamp(path);
    let (hash, bytes) = hash_file(path).map_err(|e| e.to_string())?;
    let split = if bytes > opts.piece_bytes as u64 {
        let mut head = Vec::new();
        open_input(path)
            .and_then(|f| f.take(input::SNIFF_BYTES as u64).read_to_end(&mut head))
            .map_err(|e| LakeError::io(path, e).to_string())?;
        input::plain_shape(&head, opts.sourcetype).filter(|s| split::splits(*s))
    } else {
        None
    };
    Ok(Looked { hash, bytes, stamp, split })
}

/// Converts one input with `convert` and publishes it as one commit.
fn ingest_one(
    target: &Target<'_>,
    path: &Path,
    looked: &Looked,
    opts: &IngestOptions,
    bar: &ProgressBar,
    convert: impl FnOnce(&str, &str, ConvertOptions, &AtomicU64) -> Result<Converted, String>,
) -> InputOutcome {
    let failed = |error: String| InputOutcome::Failed { path: path.to_path_buf(), error };
    let source = path.to_string_lossy().to_string();
    let counted = AtomicU64::new(0);
    let convert_opts = ConvertOptions { batch_size: opts.batch_size, piece_bytes: opts.piece_bytes, strict: opts.strict, input: InputOptions { sourcetype: opts.sourcetype, salvage: opts.salvage } };
    let converted = convert(&looked.hash[..16], &source, convert_opts, &counted);
    // Bytes not read through the counter (an EVTX file is read from disk by its parser).
    bar.inc(looked.bytes.saturating_sub(counted.load(Ordering::Relaxed)));
    let Converted { info, stats, writers } = match converted {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    // A file still being written would be committed half, then again whole under another hash.
    if stamp(path) != looked.stamp || looked.stamp.map(|(len, _)| len) != Some(looked.bytes) {
        writers.into_iter().for_each(PartitionedWriter::abort);
        return failed(format!(
            "{}: the file changed while it was being ingested; ingest it once it is complete (move files into a landing directory whole)",
            path.display()
        ));
    }
    let mut files = Vec::new();
    let mut writers = writers.into_iter();
    while let Some(w) = writers.next() {
        match w.finish() {
            Ok(f) => files.extend(f),
            Err(e) => {
                writers.for_each(PartitionedWriter::abort);
                remove_moved(target.lake, &files);
                return failed(e.to_string());
            }
        }
    }
    let commit = Commit {
        id: 0,
        committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        input: InputRecord {
            path: source,
            hash: looked.hash.clone(),
            bytes: looked.bytes,
            container: info.container,
            sourcetypes: info.sourcetypes,
            stats,
        },
        files,
    };
    let moved = commit.files.clone();
    match target.lake.publish_input(commit, &target.known) {
        Ok(Published::New(commit)) => InputOutcome::Ingested { path: path.to_path_buf(), commit },
        Ok(Published::Already(first)) => {
            // Another ingest committed the same bytes while this one converted them.
            remove_moved(target.lake, &moved);
            InputOutcome::AlreadyIngested { path: path.to_path_buf(), commit_id: first.commit_id, as_path: first.path }
        }
        Err(e) => {
            remove_moved(target.lake, &moved);
            failed(e.to_string())
        }
    }
}

#[derive(Clone, Copy)]
struct ConvertOptions {
    batch_size: usize,
    piece_bytes: usize,
    strict: bool,
    input: InputOptions,
}

/// A converted input, its files not yet moved into the lake.
struct Converted {
    info: InputInfo,
    stats: Stats,
    writers: Vec<PartitionedWriter>,
}

/// Converts an input on this thread.
fn convert_whole(target: &Target<'_>, path: &Path, stem: &str, source: &str, o: ConvertOptions, progress: Progress<'_>) -> Result<Converted, String> {
    let mut writer = PartitionedWriter::new(target.lake, target.session, stem).map_err(|e| e.to_string())?;
    let converted = {
        let mut emitter = Emitter::new(&mut writer).with_batch_size(o.batch_size).with_strict(o.strict);
        open_input(path)
            .map_err(|e| ConvertError::io(path, e))
            .and_then(|f| input::convert_input(ProgressRead { inner: f, progress }, path, source, o.input, &mut emitter))
            .and_then(|info| emitter.finish().map(|stats| (info, stats)))
    };
    match converted {
        Ok((info, stats)) => Ok(Converted { info, stats, writers: vec![writer] }),
        Err(e) => {
            writer.abort();
            Err(e.to_string())
        }
    }
}

/// Converts a plain text input split into pieces, on `jobs` threads, each with its own writer.
/// The file is read once, on this thread, at most `2 × jobs` pieces ahead of the converters.
#[allow(clippy::too_many_arguments)]
fn convert_split(
    target: &Target<'_>,
    path: &Path,
    shape: Sourcetype,
    stem: &str,
    source: &str,
    o: ConvertOptions,
    jobs: usize,
    progress: Progress<'_>,
) -> Result<Converted, String> {
    let file = open_input(path).map_err(|e| LakeError::io(path, e).to_string())?;
    let mut splitter = split::Splitter::new(ProgressRead { inner: file, progress }, shape, o.piece_bytes);
    let (tx, rx) = std::sync::mpsc::sync_channel::<split::Piece>(jobs);
    let rx = Mutex::new(rx);
    let stop = AtomicBool::new(false);
    let worker = |w: usize| -> Result<(PartitionedWriter, Vec<(usize, Stats)>), ConvertError> {
        let mut writer = PartitionedWriter::new(target.lake, target.session, &format!("{stem}-{w}")).map_err(|e| ConvertError::Sink(e.to_string()))?;
        let mut stats = Vec::new();
        let result = (|| {
            let mut emitter = Emitter::new(&mut writer).with_batch_size(o.batch_size).with_strict(o.strict);
            loop {
                let piece = rx.lock().expect("no panics while held").recv();
                let Ok(piece) = piece else { break };
                if stop.load(Ordering::Relaxed) {
                    continue;
                }
                piece.convert(shape, source, &mut emitter)?;
                stats.push((piece.index, std::mem::take(&mut emitter.stats)));
            }
            let rest = emitter.finish()?;
            stats.push((usize::MAX, rest));
            Ok(())
        })();
        match result {
            Ok(()) => Ok((writer, stats)),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                writer.abort();
                Err(e)
            }
        }
    };
    let (read, results) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs).map(|w| s.spawn(move || worker(w))).collect();
        let read = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            match splitter.next_piece() {
                Ok(Some(piece)) => {
                    if tx.send(piece).is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(tx);
        let results: Vec<_> = workers.into_iter().map(|h| h.join().expect("converter thread panicked")).collect();
        (read, results)
    });
    let mut writers = Vec::new();
    let mut pieces = Vec::new();
    let mut error = read.err().map(|e| LakeError::io(path, e).to_string());
    for r in results {
        match r {
            Ok((w, s)) => {
                writers.push(w);
                pieces.extend(s);
            }
            Err(e) => error = error.or(Some(e.to_string())),
        }
    }
    if let Some(e) = error {
        writers.into_iter().for_each(PartitionedWriter::abort);
        return Err(e);
    }
    pieces.sort_by_key(|(i, _)| *i);
    let mut stats = Stats::default();
    for (_, s) in &pieces {
        stats.merge(s);
    }
    Ok(Converted { info: InputInfo { container: None, sourcetypes: vec![shape] }, stats, writers })
}

/// Where bytes read are counted: the run's progress bar and the input's own count.
#[derive(Clone, Copy)]
struct Progress<'a> {
    bar: &'a ProgressBar,
    counted: &'a AtomicU64,
}

/// Counts bytes read into the progress bar.
struct ProgressRead<'a, R> {
    inner: R,
    progress: Progress<'a>,
}

impl<R: Read> Read for ProgressRead<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bar.inc(n as u64);
        self.progress.counted.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
