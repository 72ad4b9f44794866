//! Writing into the lake, one input at a time: the one sequence `ingest` and `gen` share.
//!
//! ```text
//! Transactions::begin(lake)          one per run: a staging session, the inputs already in
//!   .find(hash) / .maybe(size, head)   is this input in the lake already?
//!   .input(stem) -> Transaction      one per input
//!       .writer(part)                Parquet writers staging its rows (one per piece)
//!       .commit(writers, record)     files moved into place, then one commit published:
//!                                      Outcome::Published, or Outcome::Already when another
//!                                      commit of the same bytes got there first
//!       .abort(writers)              nothing of it is left
//!   .finish()                        the tables' Delta logs brought up to the commit log
//! ```
//!
//! The Delta logs ([`super::delta`]) follow the commit log: `begin` catches them up (after a
//! killed run), a long run publishes every [`PUBLISH_EVERY`], and `finish` at its end.
//!
//! What makes it safe (a commit published by one Delta commit of the record table, Delta's
//! conflict check between writers, data files named by their session) is in the modules above
//! ([`super`], [`super::records`]); what a killed run leaves, `lake vacuum` removes
//! ([`super::maintenance`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::writer::{PartitionedWriter, place, remove_moved};
use super::{Commit, DataFile, IngestSession, IngestedAs, InputRecord, KnownInputs, Lake, LakeError, Published};

/// The writes of one run (an `ingest` or a `gen`): its staging session and what the lake holds.
#[derive(Debug)]
pub struct Transactions {
    lake: Lake,
    session: IngestSession,
    known: Mutex<KnownInputs>,
    /// When the Delta logs were last brought up to the commit log.
    published: Mutex<Instant>,
}

/// How often a long run brings the Delta logs up to its commits (one Delta commit per table
/// each time, however many inputs it covers).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(30);

/// What a committed transaction did.
#[derive(Debug)]
pub enum Outcome {
    /// Its commit is published.
    Published(Box<Commit>),
    /// A commit of the same bytes was published first (by this run or another process); nothing
    /// of this transaction is left in the lake.
    Already(IngestedAs),
}

impl Transactions {
    /// Starts a run: a staging session (first removing what dead sessions left) and the inputs the
    /// lake holds now.
    pub fn begin(lake: &Lake) -> Result<Transactions, LakeError> {
        let session = IngestSession::begin(lake)?;
        lake.publish_ingest_tables()?;
        let known = KnownInputs::load(lake)?;
        Ok(Transactions { lake: lake.clone(), session, known: Mutex::new(known), published: Mutex::new(Instant::now()) })
    }

    /// Ends the run: the tables' Delta logs take in every commit published so far.
    pub fn finish(self) -> Result<Vec<super::delta::Published>, LakeError> {
        self.lake.publish_ingest_tables()
    }

    /// The commit of the input whose content hash is `hash`, if the lake had it when last looked.
    pub fn find(&self, hash: &str) -> Option<IngestedAs> {
        self.known.lock().expect("no panics while held").get(hash).cloned()
    }

    /// Whether an input of `bytes` bytes whose first bytes hash to `head_hash` may be in the lake
    /// (then hash it whole and [`Transactions::find`] it).
    pub fn maybe(&self, bytes: u64, head_hash: &str) -> bool {
        self.known.lock().expect("no panics while held").maybe(bytes, head_hash)
    }

    /// A transaction for one input; `stem` is unique per input of the run and starts its files'
    /// names.
    pub fn input(&self, stem: &str) -> Transaction<'_> {
        Transaction { owner: self, stem: stem.to_string() }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }
}

/// One input's write: its writers' files become part of the lake only through
/// [`Transaction::commit`].
#[derive(Debug)]
pub struct Transaction<'a> {
    owner: &'a Transactions,
    stem: String,
}

impl Transaction<'_> {
    /// A writer for the input (`part: None`) or one piece of it (`Some(n)`).
    pub fn writer(&self, part: Option<usize>) -> Result<PartitionedWriter, LakeError> {
        let stem = match part {
            None => self.stem.clone(),
            Some(n) => format!("{}-{n}", self.stem),
        };
        PartitionedWriter::new(&self.owner.lake, &self.owner.session, &stem)
    }

    /// Closes the writers, moves their files into place and publishes one commit of `input`
    /// naming them, unless a commit of the same hash is there (then the files are removed). On an
    /// error nothing of the input is left in the lake.
    pub fn commit(self, writers: Vec<PartitionedWriter>, input: InputRecord) -> Result<Outcome, LakeError> {
        let lake = &self.owner.lake;
        let mut staged = Vec::new();
        let mut writers = writers.into_iter();
        while let Some(w) = writers.next() {
            match w.close() {
                Ok(f) => staged.extend(f),
                Err(e) => {
                    writers.for_each(PartitionedWriter::abort);
                    for f in &staged {
                        f.remove();
                    }
                    return Err(e);
                }
            }
        }
        let files: Vec<DataFile> = place(lake, &self.owner.session, &self.stem, staged)?;
        let commit = Commit {
            id: 0,
            committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            input,
            files,
        };
        let moved = commit.files.clone();
        crate::fault::point("ingest-before-publish");
        match lake.publish_input(commit, &self.owner.known) {
            Ok(Published::New(commit)) => {
                crate::fault::point("ingest-after-commit");
                let due = {
                    let mut last = self.owner.published.lock().expect("no panics while held");
                    let due = last.elapsed() >= PUBLISH_EVERY;
                    if due {
                        *last = Instant::now();
                    }
                    due
                };
                if due {
                    // The input is committed whatever this does; a failure to publish comes back
                    // from `finish`, which tries again.
                    let _ = lake.publish_ingest_tables();
                }
                Ok(Outcome::Published(commit))
            }
            Ok(Published::Already(first)) => {
                remove_moved(lake, &moved);
                Ok(Outcome::Already(first))
            }
            Err(e) => {
                remove_moved(lake, &moved);
                Err(e)
            }
        }
    }

    /// Drops the writers' staged files: nothing of the input reaches the lake.
    pub fn abort(self, writers: Vec<PartitionedWriter>) {
        writers.into_iter().for_each(PartitionedWriter::abort);
    }
}

#[cfg(test)]
mod tests {
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::cim::Table;
    use crate::cim::processes::{ProcessRow, ProcessesBuilder};

    /// `n` processes an hour apart.
    fn batch(n: i64) -> RecordBatch {
        let mut b = ProcessesBuilder::default();
        for i in 0..n {
            b.append(&ProcessRow { time_us: 1_700_000_000_000_000 + i * 3_600_000_000, dest: Some("h"), ..Default::default() });
        }
        b.finish().unwrap()
    }

    fn record(hash: &str) -> InputRecord {
        InputRecord { path: format!("{hash}.log"), hash: hash.into(), head_hash: None, bytes: 1, container: None, sourcetypes: vec![], stats: Default::default() }
    }

    /// The data files under `dir` (the lake's record tables, in `_cimlake`, are not counted).
    fn parquet_files(dir: &std::path::Path) -> usize {
        let mut n = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == crate::lake::META_DIR) {
                continue;
            }
            if p.is_dir() {
                n += parquet_files(&p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
        n
    }

    /// One commit per content hash, also from two runs at once; an aborted or refused input
    /// leaves no file behind, and a finished run leaves no staging.
    #[test]
    fn inputs_commit_once_and_nothing_else_stays() {
        let root = tempfile::tempdir().unwrap();
        let lake = Lake::new(root.path());
        let run = Transactions::begin(&lake).unwrap();
        let tx = run.input("a");
        let mut w = tx.writer(None).unwrap();
        w.write(Table::Processes, batch(3)).unwrap();
        let Outcome::Published(first) = tx.commit(vec![w], record("h1")).unwrap() else { panic!("first commit of h1") };
        assert_eq!(first.files.len(), 3, "one file per hour");
        assert_eq!(parquet_files(root.path()), 3);
        assert_eq!(run.find("h1").map(|c| c.commit_id), Some(first.id));

        // The same bytes from another run: refused, its files removed.
        let other = Transactions::begin(&lake).unwrap();
        let tx = other.input("b");
        let mut w = tx.writer(Some(0)).unwrap();
        w.write(Table::Processes, batch(2)).unwrap();
        match tx.commit(vec![w], record("h1")).unwrap() {
            Outcome::Already(at) => assert_eq!(at.commit_id, first.id),
            Outcome::Published(c) => panic!("h1 committed twice: {c:?}"),
        }
        assert_eq!(parquet_files(root.path()), 3);

        // An aborted input: nothing.
        let tx = run.input("c");
        let mut w = tx.writer(None).unwrap();
        w.write(Table::Processes, batch(2)).unwrap();
        tx.abort(vec![w]);
        assert_eq!(parquet_files(root.path()), 3);
        assert_eq!(lake.commits().unwrap().len(), 1);

        drop((run, other));
        assert!(!root.path().join(crate::lake::STAGING_DIR).exists(), "staging left behind");
    }
}
