//! `ingest`: expands input paths ([`walk`]), skips inputs already in the lake (by content hash),
//! converts each new input ([`crate::convert`]) and publishes it as one commit through the lake's
//! [`Transactions`]. Sits above both: the lake knows nothing of log formats, the converters
//! nothing of the lake.

pub mod sink;
pub mod walk;

use std::io::{BufReader, Read};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use walk::{Skipped, find_inputs};
use crate::convert::input::open_regular as open_input;
use crate::convert::input::{self, InputFile, InputInfo, InputOptions};
use crate::convert::formats::format_of;
use crate::convert::{self, ConvertError, Emitter, Sourcetype, Stats, split};
use crate::lake::writer::PartitionedWriter;
use crate::lake::{Commit, IngestedAs, InputRecord, Lake, LakeError, Outcome, Transaction, Transactions};

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
    /// Inputs converted at once, and pieces of one large input converted at once.
    pub jobs: usize,
    /// A plain text input larger than this is split into pieces of about this size.
    pub piece_bytes: usize,
    /// How far an archive member may expand.
    pub limits: input::Limits,
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
            jobs: default_jobs(),
            piece_bytes: DEFAULT_PIECE_BYTES,
            limits: input::Limits::default(),
        }
    }
}

/// What happened to one input.
#[derive(Debug)]
pub enum InputOutcome {
    Ingested { path: PathBuf, commit: Box<Commit> },
    /// The same bytes were ingested before (commit id, path then); `raced` when another ingest
    /// committed them while this one was converting them.
    AlreadyIngested { path: PathBuf, commit_id: u64, as_path: String, raced: bool },
    Failed { path: PathBuf, error: InputError },
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

/// Why one input was not ingested; each names the input (or the lake file) it is about.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    /// Its size or modification time changed between the first look and the end of its read.
    #[error("{}: the file changed while it was being ingested; ingest it once it is complete (move files into a landing directory whole)", .0.display())]
    Changed(PathBuf),
}

impl InputError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        InputError::Lake(LakeError::io(path, e))
    }
}

/// Errors that stop an ingest before it starts.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Walk(#[from] walk::WalkError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// How an ingest reports progress: the bytes it will read, then each read (from any thread).
/// `()` reports nothing.
pub trait Progress: Sync {
    fn start(&self, _total_bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}

impl Progress for () {}

/// BLAKE3 of a file, hex, and its size.
pub fn hash_file(path: &Path) -> Result<(String, u64), LakeError> {
    let f = open_input(path).map_err(|e| LakeError::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut BufReader::with_capacity(1 << 20, f), &mut hasher)
        .map_err(|e| LakeError::io(path, e))?;
    Ok((hasher.finalize().to_hex().to_string(), n))
}

/// Ingests `inputs` into `lake`, one commit per new input.
///
/// Each input is read once: converted `opts.jobs` at a time while its bytes are hashed, and
/// committed under the hash of what was converted. A plain XmlWinEventLog or Windows event JSON
/// file larger than `opts.piece_bytes` is instead split into pieces converted on every job at
/// once ([`crate::convert::split`]); memory then depends on `jobs` and `piece_bytes`, not on
/// input size. An input whose size and first bytes match one already in the lake is hashed first
/// and skipped if it is the same (a second read only for those); inputs of this run with the
/// same size and first bytes go one after another, so the same bytes are converted once.
pub fn ingest(lake: &Lake, inputs: &[PathBuf], opts: &IngestOptions) -> Result<IngestReport, IngestError> {
    ingest_with_progress(lake, inputs, opts, &())
}

/// [`ingest`], reporting the bytes read to `bar`.
pub fn ingest_with_progress(lake: &Lake, inputs: &[PathBuf], opts: &IngestOptions, bar: &dyn Progress) -> Result<IngestReport, IngestError> {
    let found = find_inputs(inputs)?;
    let jobs = opts.jobs.max(1);
    // A file a walk or a glob met that has no known shape (a README, a checksum list) is skipped;
    // one named on the command line goes on, and its conversion says what it is.
    let mut skipped = found.skipped;
    let (mut files, mut looks) = (Vec::new(), Vec::new());
    let first_looks = parallel_map(&found.files, jobs, |p| look(p, opts));
    for ((path, named), l) in found.files.into_iter().zip(found.named).zip(first_looks) {
        if let Ok(Looked { shape: Err(what), .. }) = &l
            && !named
        {
            skipped.push(Skipped { path, reason: format!("not a log: {what}") });
            continue;
        }
        files.push(path);
        looks.push(l);
    }
    let total_bytes: u64 = looks.iter().filter_map(|l| l.as_ref().ok()).map(|l| l.bytes).sum();
    bar.start(total_bytes);
    let target = Transactions::begin(lake)?;
    let mut outcomes: Vec<Option<InputOutcome>> = Vec::with_capacity(files.len());
    let mut looked: Vec<Option<Looked>> = Vec::with_capacity(files.len());
    let mut pending = Vec::new();
    for (i, (path, l)) in files.iter().zip(looks).enumerate() {
        match l {
            Err(error) => {
                outcomes.push(Some(InputOutcome::Failed { path: path.clone(), error }));
                looked.push(None);
            }
            Ok(l) => {
                outcomes.push(None);
                looked.push(Some(l));
                pending.push(i);
            }
        }
    }
    // Waves: inputs that may be the same bytes (same size and head) never convert at once.
    while !pending.is_empty() {
        let mut keys = std::collections::HashSet::new();
        let (wave, later): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| keys.insert(looked[i].as_ref().expect("looked at").key()));
        let (mut whole, mut split) = (Vec::new(), Vec::new());
        let checked = parallel_map(&wave, jobs, |&i| already_in(&target, &files[i], looked[i].as_ref().expect("looked at")));
        for (&i, known) in wave.iter().zip(checked) {
            let l = looked[i].as_ref().expect("looked at");
            match known {
                Ok(Some(first)) => {
                    bar.advance(l.bytes);
                    outcomes[i] = Some(InputOutcome::AlreadyIngested { path: files[i].clone(), commit_id: first.commit_id, as_path: first.path, raced: false });
                }
                Err(error) => outcomes[i] = Some(InputOutcome::Failed { path: files[i].clone(), error }),
                Ok(None) => match l.split {
                    Some(shape) if jobs > 1 => split.push((i, shape)),
                    _ => whole.push(i),
                },
            }
        }
        let converted = parallel_map(&whole, jobs, |&i| {
            let l = looked[i].as_ref().expect("looked at");
            ingest_one(&target, &files[i], l, &format!("{}-{i}", &l.head_hash[..16]), opts, bar, |tx, source, convert_opts, counted| {
                convert_whole(tx, &files[i], source, convert_opts, Counting { bar, counted })
            })
        });
        for (&i, outcome) in whole.iter().zip(converted) {
            outcomes[i] = Some(outcome);
        }
        for (i, shape) in split {
            let l = looked[i].as_ref().expect("looked at");
            outcomes[i] = Some(ingest_one(&target, &files[i], l, &format!("{}-{i}", &l.head_hash[..16]), opts, bar, |tx, source, convert_opts, counted| {
                convert_split(tx, &files[i], shape, source, convert_opts, jobs, Counting { bar, counted })
            }));
        }
        pending = later;
    }
    bar.finish();
    target.finish()?;
    Ok(IngestReport { inputs: outcomes.into_iter().map(|o| o.expect("every input decided")).collect(), skipped })
}

/// Whether `path` is already in the lake: only an input whose size and first bytes match one
/// there is read whole to find out.
fn already_in(target: &Transactions, path: &Path, looked: &Looked) -> Result<Option<IngestedAs>, InputError> {
    if !target.maybe(looked.bytes, &looked.head_hash) {
        return Ok(None);
    }
    let (hash, _) = hash_file(path)?;
    Ok(target.find(&hash))
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

/// An input before conversion: its size and state, the hash of its first bytes, and whether it
/// can be split.
struct Looked {
    bytes: u64,
    /// BLAKE3 of the first [`input::SNIFF_BYTES`], hex.
    head_hash: String,
    stamp: Option<Stamp>,
    split: Option<Sourcetype>,
    /// Whether the first bytes have a shape ingest reads, else what they look like.
    shape: Result<(), String>,
}

impl Looked {
    /// Inputs with the same key may be the same bytes.
    fn key(&self) -> (u64, &str) {
        (self.bytes, &self.head_hash)
    }
}

type Stamp = (u64, Option<std::time::SystemTime>);

fn stamp(p: &Path) -> Option<Stamp> {
    std::fs::metadata(p).map(|m| (m.len(), m.modified().ok())).ok()
}

fn look(path: &Path, opts: &IngestOptions) -> Result<Looked, InputError> {
    let stamp = stamp(path);
    let mut head = Vec::new();
    let file = open_input(path).and_then(|f| f.take(input::SNIFF_BYTES as u64).read_to_end(&mut head).map(|_| ()));
    file.map_err(|e| InputError::io(path, e))?;
    let bytes = stamp.map_or(head.len() as u64, |(len, _)| len);
    let split = if bytes > opts.piece_bytes as u64 { input::plain_shape(&head, opts.sourcetype).filter(|s| format_of(*s).splittable()) } else { None };
    let shape = input::known_shape(&head, opts.sourcetype);
    Ok(Looked { bytes, head_hash: blake3::hash(&head).to_hex().to_string(), stamp, split, shape })
}

/// Converts one input with `convert` (which hashes what it reads) and publishes it as one
/// commit, under that hash.
#[allow(clippy::too_many_arguments)]
fn ingest_one(
    target: &Transactions,
    path: &Path,
    looked: &Looked,
    stem: &str,
    opts: &IngestOptions,
    bar: &dyn Progress,
    convert: impl FnOnce(&Transaction<'_>, &str, ConvertOptions, &AtomicU64) -> Result<Converted, InputError>,
) -> InputOutcome {
    let failed = |error: InputError| InputOutcome::Failed { path: path.to_path_buf(), error };
    let source = path.to_string_lossy().to_string();
    let counted = AtomicU64::new(0);
    let convert_opts = ConvertOptions {
        batch_size: opts.batch_size,
        piece_bytes: opts.piece_bytes,
        strict: opts.strict,
        input: InputOptions { sourcetype: opts.sourcetype, salvage: opts.salvage, limits: opts.limits },
    };
    let tx = target.input(stem);
    let converted = convert(&tx, &source, convert_opts, &counted);
    bar.advance(looked.bytes.saturating_sub(counted.load(Ordering::Relaxed)));
    let Converted { info, stats, writers, hash, bytes } = match converted {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    // A file still being written would be committed half, then again whole under another hash.
    if stamp(path) != looked.stamp || looked.stamp.map(|(len, _)| len) != Some(bytes) {
        tx.abort(writers);
        return failed(InputError::Changed(path.to_path_buf()));
    }
    let record = InputRecord {
        path: source,
        hash,
        head_hash: Some(looked.head_hash.clone()),
        bytes,
        container: info.container.map(|c| c.name().to_string()),
        sourcetypes: info.sourcetypes.iter().map(|s| s.name().to_string()).collect(),
        stats,
    };
    match tx.commit(writers, record) {
        Ok(Outcome::Published(commit)) => InputOutcome::Ingested { path: path.to_path_buf(), commit },
        // Another ingest committed the same bytes while this one converted them.
        Ok(Outcome::Already(first)) => {
            InputOutcome::AlreadyIngested { path: path.to_path_buf(), commit_id: first.commit_id, as_path: first.path, raced: true }
        }
        Err(e) => failed(e.into()),
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
    /// The hash and size of the bytes converted.
    hash: String,
    bytes: u64,
}

/// Converts an input on this thread.
fn convert_whole(tx: &Transaction<'_>, path: &Path, source: &str, o: ConvertOptions, progress: Counting<'_>) -> Result<Converted, InputError> {
    let mut writer = tx.writer(None)?;
    let count = |n: u64| progress.count(n);
    let converted = (|| {
        let file = open_input(path).map_err(|e| ConvertError::io(path, e))?;
        let mut input = InputFile::new(file).map_err(|e| ConvertError::io(path, e))?.with_progress(&count);
        let mut emitter = Emitter::new(&mut writer).with_batch_size(o.batch_size).with_strict(o.strict);
        let info = input::convert_input(&mut input, path, source, o.input, &mut emitter)?;
        let stats = emitter.finish()?;
        let (hash, bytes) = input.finish().map_err(|e| ConvertError::io(path, e))?;
        Ok::<_, ConvertError>((info, stats, hash, bytes))
    })();
    match converted {
        Ok((info, stats, hash, bytes)) => Ok(Converted { info, stats, writers: vec![writer], hash, bytes }),
        Err(e) => {
            writer.abort();
            Err(e.into())
        }
    }
}

/// Converts a plain text input split into pieces, on `jobs` threads, each with its own writer.
/// The file is read once, on this thread, at most `2 × jobs` pieces ahead of the converters.
#[allow(clippy::too_many_arguments)]
fn convert_split(
    tx: &Transaction<'_>,
    path: &Path,
    shape: Sourcetype,
    source: &str,
    o: ConvertOptions,
    jobs: usize,
    progress: Counting<'_>,
) -> Result<Converted, InputError> {
    let file = open_input(path).map_err(|e| InputError::io(path, e))?;
    let count = |n: u64| progress.count(n);
    let mut input = InputFile::new(file).map_err(|e| InputError::io(path, e))?.with_progress(&count);
    let mut splitter = split::Splitter::new(&mut input, format_of(shape), o.piece_bytes);
    let (send, rx) = std::sync::mpsc::sync_channel::<split::Piece>(jobs);
    let rx = Mutex::new(rx);
    let stop = AtomicBool::new(false);
    let worker = |w: usize| -> Result<(PartitionedWriter, Vec<(usize, Stats)>), ConvertError> {
        let mut writer = tx.writer(Some(w)).map_err(|e| ConvertError::Sink(e.to_string()))?;
        let mut stats = Vec::new();
        let result = (|| {
            let mut emitter = Emitter::new(&mut writer).with_batch_size(o.batch_size).with_strict(o.strict);
            loop {
                let piece = rx.lock().expect("no panics while held").recv();
                let Ok(piece) = piece else { break };
                if stop.load(Ordering::Relaxed) {
                    continue;
                }
                piece.convert(format_of(shape), source, &mut emitter)?;
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
                    if send.send(piece).is_err() {
                        break Ok(());
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(send);
        let results: Vec<_> = workers.into_iter().map(|h| h.join().expect("converter thread panicked")).collect();
        (read, results)
    });
    let mut writers = Vec::new();
    let mut pieces = Vec::new();
    let mut error = read.err().map(|e| InputError::io(path, e));
    for r in results {
        match r {
            Ok((w, s)) => {
                writers.push(w);
                pieces.extend(s);
            }
            Err(e) => error = error.or(Some(e.into())),
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
    drop(splitter);
    let (hash, bytes) = match input.finish() {
        Ok(h) => h,
        Err(e) => {
            writers.into_iter().for_each(PartitionedWriter::abort);
            return Err(InputError::io(path, e));
        }
    };
    Ok(Converted { info: InputInfo { container: None, sourcetypes: vec![shape] }, stats, writers, hash, bytes })
}

/// Where bytes read are counted: the run's progress and the input's own count.
#[derive(Clone, Copy)]
struct Counting<'a> {
    bar: &'a dyn Progress,
    counted: &'a AtomicU64,
}

impl Counting<'_> {
    /// Counts `n` bytes read into the run's progress and the input's own count.
    fn count(&self, n: u64) {
        self.bar.advance(n);
        self.counted.fetch_add(n, Ordering::Relaxed);
    }
}
