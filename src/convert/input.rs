//! Opening an input: containers (`.gz`, `.zip`, `.tar.gz`, `.tar`, recognised by their bytes, not
//! their names) read as streams, and the shape of each file inside detected from its content.
//!
//! An input is read through an [`InputFile`], which hashes its bytes as they are read, so the
//! content hash an input is committed under is that of the bytes converted, in the same pass
//! (not of a first read that the file may no longer match by the second).
//!
//! Each file (a plain file, or a member of an archive) is converted by the module of its shape.
//! A member of an archive is named `archive!member` in provenance and errors. A gzip or tar stream
//! that ends early is an error, and nothing of the input reaches the lake; with `salvage`, the
//! records read before the damage are kept and the damage is reported as a bad record.
//!
//! What an archive expands to is bounded ([`Limits`]): a member larger than the size limit, or a
//! compressed stream that expands more than the ratio limit, is an error naming the member. An
//! EVTX file inside an archive (the parser needs to seek) is copied, within those limits, to a
//! temporary file, never held in memory. Zip members are read in the order they lie in the file,
//! and members that overlap (one way to build a zip bomb) are refused.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use super::{BadRecord, ConvertError, Emitter, Sourcetype, evtx};

/// Bytes looked at to recognise a shape.
pub const SNIFF_BYTES: usize = 64 * 1024;

/// The default [`Limits::member_bytes`]: 16 GiB.
pub const DEFAULT_MAX_MEMBER_BYTES: u64 = 16 << 30;

/// The default [`Limits::ratio`]. Event logs compress 10 to 25 times with gzip; deflate can
/// reach about 1,000 on crafted input (a gigabyte of zeros or newlines in a megabyte).
pub const DEFAULT_MAX_RATIO: u64 = 200;

/// Below this many expanded bytes the ratio is not checked (small files compress unevenly).
const RATIO_FLOOR: u64 = 16 << 20;

/// How an input is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    Gzip,
    Zip,
    Tar,
    #[serde(rename = "tar.gz")]
    TarGz,
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Container::Gzip => "gzip",
            Container::Zip => "zip",
            Container::Tar => "tar",
            Container::TarGz => "tar.gz",
        }
    }
}

fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// What was found in an input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputInfo {
    pub container: Option<Container>,
    /// The shapes of its files, in order of first appearance.
    pub sourcetypes: Vec<Sourcetype>,
}

impl InputInfo {
    fn saw(&mut self, s: Sourcetype) {
        if !self.sourcetypes.contains(&s) {
            self.sourcetypes.push(s);
        }
    }
}

/// How far an archive may expand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes one member (or a gzip stream) may expand to.
    pub member_bytes: u64,
    /// The most a compressed stream may expand, as a multiple of its compressed bytes.
    pub ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { member_bytes: DEFAULT_MAX_MEMBER_BYTES, ratio: DEFAULT_MAX_RATIO }
    }
}

/// Options for [`convert_input`].
#[derive(Debug, Clone, Copy, Default)]
pub struct InputOptions {
    pub sourcetype: Option<Sourcetype>,
    pub salvage: bool,
    pub limits: Limits,
}

/// What a file system entry is, for a message: `a FIFO`, `a socket`, ….
pub fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Opens a file for reading without blocking (a FIFO or a device is not waited on) and refuses
/// it unless it is a regular file.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    let t = file.metadata()?.file_type();
    if !t.is_file() {
        return Err(std::io::Error::other(format!("not a regular file ({}): only regular files are inputs", file_kind(t))));
    }
    Ok(file)
}

/// One input file, read once: its BLAKE3 hash is computed from the bytes as the converters read
/// them. Its first [`SNIFF_BYTES`] are read at once and kept, so looking at them and then reading
/// from the start again gives the same bytes. A read past what was hashed first hashes the bytes
/// skipped; [`InputFile::finish`] hashes what no one read, to the end.
pub struct InputFile<'a> {
    file: File,
    head: Vec<u8>,
    /// Where the next read starts.
    pos: u64,
    /// Bytes `[0, hashed)` are in the hash.
    hashed: u64,
    /// Where `file`'s own offset is.
    file_pos: u64,
    hasher: blake3::Hasher,
    on_read: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<'a> InputFile<'a> {
    /// Reads the head of `file` (positioned at its start).
    pub fn new(mut file: File) -> std::io::Result<Self> {
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        (&mut file).take(SNIFF_BYTES as u64).read_to_end(&mut head)?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&head);
        let n = head.len() as u64;
        crate::fault::read(head.len());
        Ok(InputFile { file, head, pos: 0, hashed: n, file_pos: n, hasher, on_read: None })
    }

    /// Calls `f` with the count of each read from the file (for progress).
    pub fn with_progress(mut self, f: &'a (dyn Fn(u64) + Sync)) -> Self {
        if !self.head.is_empty() {
            f(self.head.len() as u64);
        }
        self.on_read = Some(f);
        self
    }

    /// The first bytes (up to [`SNIFF_BYTES`]).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The input's hash (hex) and size, the rest of it read to the end first.
    pub fn finish(mut self) -> std::io::Result<(String, u64)> {
        let end = self.file.seek(SeekFrom::End(0))?;
        self.file_pos = end;
        if end > self.hashed {
            self.hash_to(end)?;
        }
        let mut rest = Vec::new();
        self.file.seek(SeekFrom::Start(self.hashed))?;
        // A file that grew while it was read: its new bytes are part of what was committed.
        self.file.read_to_end(&mut rest)?;
        self.hasher.update(&rest);
        self.hashed += rest.len() as u64;
        Ok((self.hasher.finalize().to_hex().to_string(), self.hashed))
    }

    fn counted(&self, n: usize) {
        if let Some(f) = self.on_read {
            f(n as u64);
        }
        crate::fault::read(n);
    }

    /// Hashes `[hashed, to)`, read from the file (bytes no converter asked for).
    fn hash_to(&mut self, to: u64) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(self.hashed))?;
        let mut gap = (&mut self.file).take(to - self.hashed);
        let n = std::io::copy(&mut gap, &mut self.hasher)?;
        self.counted(n as usize);
        self.hashed += n;
        self.file_pos = self.hashed;
        Ok(())
    }
}

impl Read for InputFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.head.len() as u64 {
            let from = &self.head[self.pos as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            self.pos += n as u64;
            return Ok(n);
        }
        if self.pos > self.hashed {
            self.hash_to(self.pos)?;
        }
        if self.file_pos != self.pos {
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.file_pos = self.pos;
        }
        let n = self.file.read(buf)?;
        let end = self.pos + n as u64;
        if end > self.hashed {
            // `pos <= hashed` here: hash the part of this read not yet hashed.
            self.hasher.update(&buf[(self.hashed - self.pos) as usize..n]);
            self.counted((end - self.hashed) as usize);
            self.hashed = end;
        }
        self.pos = end;
        self.file_pos = end;
        Ok(n)
    }
}

impl Seek for InputFile<'_> {
    /// Moves where the next read starts; nothing is read or hashed until then.
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(|| std::io::Error::other("seek before the start"))?,
            SeekFrom::End(d) => {
                let end = self.file.metadata()?.len();
                end.checked_add_signed(d).ok_or_else(|| std::io::Error::other("seek before the start"))?
            }
        };
        Ok(self.pos)
    }
}

/// An archive expanding beyond [`Limits`]; carried in an `io::Error` from the reader that counts.
#[derive(Debug)]
struct TooLarge(String);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooLarge {}

/// The [`TooLarge`] an I/O error carries, if it is one.
fn too_large(e: &std::io::Error) -> Option<&TooLarge> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<TooLarge>())
}

/// Counts the bytes read through it into a shared counter (compressed bytes consumed).
struct Counted<R> {
    inner: R,
    count: Rc<RefCell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.count.borrow_mut() += n as u64;
        Ok(n)
    }
}

/// The expanded side of a compressed stream or member: once it has produced more than the size
/// limit, or more than `ratio` times the compressed bytes consumed since `start`, its next read
/// fails (the read that crossed the line still returns its bytes).
struct Bounded<R> {
    inner: R,
    limits: Limits,
    compressed: Rc<RefCell<u64>>,
    start: u64,
    out: u64,
    what: &'static str,
    over: Option<String>,
}

impl<R: Read> Bounded<R> {
    /// `inner`'s compressed bytes are those counted in `compressed` past `start` (taken before
    /// the decoder was made: a decoder reads ahead as it starts).
    fn new(inner: R, limits: Limits, compressed: Rc<RefCell<u64>>, start: u64, what: &'static str) -> Self {
        Bounded { inner, limits, compressed, start, out: 0, what, over: None }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(problem) = &self.over {
            return Err(std::io::Error::other(TooLarge(problem.clone())));
        }
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let packed = (*self.compressed.borrow() - self.start).max(1);
        let limits = self.limits;
        if self.out > limits.member_bytes {
            self.over = Some(format!("{} expands to more than {} bytes (--max-member-size)", self.what, limits.member_bytes));
        } else if self.out > RATIO_FLOOR && self.out > packed.saturating_mul(limits.ratio) {
            self.over = Some(format!(
                "{} expands more than {} times its compressed size ({} bytes from {packed}; --max-expansion-ratio): a decompression bomb?",
                self.what, limits.ratio, self.out
            ));
        }
        Ok(n)
    }
}

/// Reads up to `n` bytes without losing them: returns them and a reader that yields them again.
fn peek<R: Read>(mut r: R, n: usize) -> std::io::Result<(Vec<u8>, std::io::Chain<std::io::Cursor<Vec<u8>>, R>)> {
    let mut head = Vec::with_capacity(n.min(1 << 16));
    (&mut r).take(n as u64).read_to_end(&mut head)?;
    Ok((head.clone(), std::io::Cursor::new(head).chain(r)))
}

/// Turns a read error into end of input, remembering it (to report damage after the records
/// before it were converted).
struct Guard<R> {
    inner: R,
    error: Rc<RefCell<Option<std::io::Error>>>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.error.borrow().is_some() {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                *self.error.borrow_mut() = Some(e);
                Ok(0)
            }
        }
    }
}

fn damaged(source: &str, what: &str, e: &dyn std::fmt::Display) -> String {
    format!("{source}: {what} ends early or is corrupt ({e}): truncated archive?")
}

/// The shape of a plain (not packed) text input from its first bytes, or `None` for a container
/// or an EVTX file or an unknown shape.
pub fn plain_shape(head: &[u8], forced: Option<Sourcetype>) -> Option<Sourcetype> {
    if is_gzip(head) || is_zip(head) || is_tar(head) || head.starts_with(evtx::MAGIC) {
        return None;
    }
    forced.or_else(|| sniff(head)).filter(|s| *s != Sourcetype::Evtx)
}

/// Whether a file whose first bytes are `head` may be something ingest reads (an archive, EVTX,
/// or a known text shape; anything when the shape is forced; an empty file, which its conversion
/// reports), else what it looks like instead.
pub fn known_shape(head: &[u8], forced: Option<Sourcetype>) -> Result<(), String> {
    if forced.is_some() || head.is_empty() || is_gzip(head) || is_zip(head) || is_tar(head) || head.starts_with(evtx::MAGIC) || sniff(head).is_some() {
        return Ok(());
    }
    Err(describe(head))
}

/// Converts everything in `input`, the file at `path` (named `source` in rows and errors).
pub fn convert_input(input: &mut InputFile<'_>, path: &Path, source: &str, opts: InputOptions, out: &mut Emitter<'_>) -> Result<InputInfo, ConvertError> {
    let io = |e| ConvertError::io(path, e);
    let head = input.head().to_vec();
    let mut info = InputInfo::default();
    let mut member = Member::default();
    if is_gzip(&head) {
        let compressed = Rc::new(RefCell::new(0));
        let error = Rc::new(RefCell::new(None));
        let gz = MultiGzDecoder::new(Counted { inner: &mut *input, count: compressed.clone() });
        let gz = Guard { inner: Bounded::new(gz, opts.limits, compressed, 0, "the gzip stream"), error: error.clone() };
        let (inner_head, gz) = peek(gz, SNIFF_BYTES).map_err(io)?;
        if is_tar(&inner_head) {
            info.container = Some(Container::TarGz);
            convert_tar(gz, source, opts, out, &mut info, &mut member, Some(&error))?;
        } else {
            info.container = Some(Container::Gzip);
            member.name = Some(source.to_string());
            let s = convert_stream(gz, source, opts, out)?;
            info.saw(s);
        }
        report_damage(&error, source, "gzip stream", &member, opts, out)?;
    } else if is_zip(&head) {
        info.container = Some(Container::Zip);
        convert_zip(input, path, source, opts, out, &mut info, &mut member)?;
    } else if is_tar(&head) {
        info.container = Some(Container::Tar);
        let error = Rc::new(RefCell::new(None));
        convert_tar(Guard { inner: &mut *input, error: error.clone() }, source, opts, out, &mut info, &mut member, Some(&error))?;
        report_damage(&error, source, "tar stream", &member, opts, out)?;
    } else if opts.sourcetype.map_or(head.starts_with(evtx::MAGIC), |s| s == Sourcetype::Evtx) {
        // A plain EVTX file is read in place, chunk by chunk.
        out.set_sourcetype(Sourcetype::Evtx.name());
        input.seek(SeekFrom::Start(0)).map_err(io)?;
        evtx::convert_reader(&mut *input, source, out)?;
        info.saw(Sourcetype::Evtx);
    } else {
        input.seek(SeekFrom::Start(0)).map_err(io)?;
        let s = convert_stream(&mut *input, source, opts, out)?;
        info.saw(s);
    }
    if info.sourcetypes.is_empty() {
        return Err(ConvertError::Shape(format!("{source}: nothing to ingest: the archive holds no files ({})", member.skipped_summary())));
    }
    Ok(info)
}

/// The archive member being read, and the entries skipped so far.
#[derive(Debug, Default)]
struct Member {
    name: Option<String>,
    skipped: Vec<&'static str>,
}

impl Member {
    fn skipped_summary(&self) -> String {
        if self.skipped.is_empty() {
            return "no entries".into();
        }
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        for k in &self.skipped {
            match kinds.iter_mut().find(|(name, _)| name == k) {
                Some((_, n)) => *n += 1,
                None => kinds.push((k, 1)),
            }
        }
        let parts: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        format!("skipped: {}", parts.join(", "))
    }
}

fn report_damage(
    error: &Rc<RefCell<Option<std::io::Error>>>,
    source: &str,
    what: &str,
    member: &Member,
    opts: InputOptions,
    out: &mut Emitter<'_>,
) -> Result<(), ConvertError> {
    let Some(e) = error.borrow_mut().take() else { return Ok(()) };
    if let Some(large) = too_large(&e) {
        let name = member.name.as_deref().unwrap_or(source);
        return Err(ConvertError::TooLarge(format!("{name}: {large}")));
    }
    if opts.salvage {
        out.record();
        out.bad(BadRecord {
            source: source.to_string(),
            record: None,
            offset: None,
            reason: format!("{what} ends early or is corrupt ({e}); the records before it are kept (--salvage)"),
        })
    } else {
        Err(ConvertError::Damaged(format!("{} (--salvage keeps the records before the damage)", damaged(source, what, &e))))
    }
}

/// A zip archive: the central directory (read through a handle of its own) says where each member
/// lies; the members are then read from `input` in file order, so every byte converted is read
/// (and hashed) once, in order.
fn convert_zip(
    input: &mut InputFile<'_>,
    path: &Path,
    source: &str,
    opts: InputOptions,
    out: &mut Emitter<'_>,
    info: &mut InputInfo,
    member: &mut Member,
) -> Result<(), ConvertError> {
    let zip_err = |what: &str, e: &dyn std::fmt::Display| ConvertError::Damaged(damaged(source, what, e));
    struct Entry {
        header_start: u64,
        compressed: u64,
    }
    let mut entries = Vec::new();
    {
        let file = open_regular(path).map_err(|e| ConvertError::io(path, e))?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| zip_err("zip archive", &e))?;
        for i in 0..zip.len() {
            let m = zip.by_index_raw(i).map_err(|e| zip_err("zip member", &e))?;
            if m.is_dir() {
                member.skipped.push("directories");
            } else if m.is_symlink() {
                member.skipped.push("symbolic links");
            } else {
                entries.push(Entry { header_start: m.header_start(), compressed: m.compressed_size() });
            }
        }
    }
    entries.sort_by_key(|e| e.header_start);
    input.seek(SeekFrom::Start(0)).map_err(|e| ConvertError::io(path, e))?;
    let count = Rc::new(RefCell::new(0u64));
    let mut reader = Counted { inner: BufReader::new(&mut *input), count: count.clone() };
    for e in entries {
        let at = *count.borrow();
        if e.header_start < at {
            return Err(ConvertError::Damaged(format!(
                "{source}: zip members overlap (one starts at byte {}, inside the one before it): refused, as a zip bomb may be built this way",
                e.header_start
            )));
        }
        std::io::copy(&mut (&mut reader).take(e.header_start - at), &mut std::io::sink()).map_err(|err| ConvertError::io(path, err))?;
        let Some(file) = zip::read::read_zipfile_from_stream_with_compressed_size(&mut reader, e.compressed).map_err(|err| zip_err("zip member", &err))? else {
            return Err(zip_err("zip member", &"no local header where the central directory says a member starts"));
        };
        let name = format!("{source}!{}", file.name().map_err(|err| zip_err("zip member name", &err))?);
        member.name = Some(name.clone());
        let error = Rc::new(RefCell::new(None));
        let bounded = Bounded::new(file, opts.limits, count.clone(), at, "the zip member");
        let s = convert_stream(Guard { inner: bounded, error: error.clone() }, &name, opts, out)?;
        info.saw(s);
        report_damage(&error, &name, "zip member", member, opts, out)?;
    }
    // The central directory and anything after the last member: read, so they are hashed too.
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| ConvertError::io(path, e))?;
    Ok(())
}

fn convert_tar<R: Read>(
    reader: R,
    source: &str,
    opts: InputOptions,
    out: &mut Emitter<'_>,
    info: &mut InputInfo,
    member: &mut Member,
    stream_error: Option<&Rc<RefCell<Option<std::io::Error>>>>,
) -> Result<(), ConvertError> {
    let mut archive = tar::Archive::new(reader);
    convert_tar_entries(&mut archive, source, opts, out, info, member, stream_error)?;
    // Read what follows the last entry, so a compressed stream's end (its checksum and length) is
    // checked too: a tar can be complete while its gzip stream is cut short.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|e| ConvertError::io(Path::new(source), e))?;
    Ok(())
}

fn convert_tar_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    source: &str,
    opts: InputOptions,
    out: &mut Emitter<'_>,
    info: &mut InputInfo,
    member: &mut Member,
    stream_error: Option<&Rc<RefCell<Option<std::io::Error>>>>,
) -> Result<(), ConvertError> {
    let entries = archive.entries().map_err(|e| ConvertError::Damaged(damaged(source, "tar archive", &e)))?;
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                if stream_error.is_some_and(|s| s.borrow().is_some()) {
                    // The stream itself broke; reported by the caller.
                    return Ok(());
                }
                return Err(ConvertError::Damaged(damaged(source, "tar archive", &e)));
            }
        };
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            if !kind.is_pax_global_extensions() && !kind.is_pax_local_extensions() && !kind.is_gnu_longname() && !kind.is_gnu_longlink() {
                member.skipped.push(if kind.is_dir() {
                    "directories"
                } else if kind.is_symlink() {
                    "symbolic links"
                } else if kind.is_hard_link() {
                    "hard links"
                } else {
                    "special files"
                });
            }
            continue;
        }
        let name = format!("{source}!{}", entry.path().map(|p| p.display().to_string()).unwrap_or_else(|_| "?".into()));
        member.name = Some(name.clone());
        // The member's own size limit; the stream's ratio is checked beneath the tar reader.
        let limits = Limits { ratio: u64::MAX, ..opts.limits };
        let error = Rc::new(RefCell::new(None));
        let bounded = Guard { inner: Bounded::new(entry, limits, Rc::new(RefCell::new(0)), 0, "the tar member"), error: error.clone() };
        let s = convert_stream(bounded, &name, opts, out)?;
        info.saw(s);
        if stream_error.is_some_and(|s| s.borrow().is_some()) {
            // The stream beneath broke off or expanded too far; reported by the caller.
            return Ok(());
        }
        if let Some(e) = error.borrow_mut().take() {
            return Err(match too_large(&e) {
                Some(large) => ConvertError::TooLarge(format!("{name}: {large}")),
                None => ConvertError::Damaged(damaged(&name, "tar member", &e)),
            });
        }
    }
    Ok(())
}

/// Recognises a file's shape from its first bytes: the first of [`FORMATS`](super::formats::FORMATS)
/// that accepts them.
pub fn sniff(head: &[u8]) -> Option<Sourcetype> {
    super::formats::sniff(head).map(|f| f.sourcetype())
}

/// What the first bytes look like, for an error message.
fn describe(head: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&head[..head.len().min(60)])
        .chars()
        .map(|c| if c.is_control() && c != ' ' { '.' } else { c })
        .collect();
    let binary = head.iter().take(512).filter(|b| **b == 0).count() > 0;
    format!("{} starting {shown:?}", if binary { "binary data" } else { "text" })
}

/// Converts one file's bytes, detecting (or taking) its shape.
fn convert_stream<R: Read>(reader: R, source: &str, opts: InputOptions, out: &mut Emitter<'_>) -> Result<Sourcetype, ConvertError> {
    let (head, reader) = peek(reader, SNIFF_BYTES).map_err(|e| ConvertError::io(Path::new(source), e))?;
    if head.is_empty() {
        return Err(ConvertError::Shape(format!("{source}: empty file: nothing to ingest")));
    }
    let shape = match opts.sourcetype.or_else(|| sniff(&head)) {
        Some(s) => s,
        None => {
            return Err(ConvertError::Shape(format!(
                "{source}: not a known input shape (XmlWinEventLog, EVTX, Windows event JSON, Cisco NVM key=value or JSON); found {}",
                describe(&head)
            )));
        }
    };
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    out.set_sourcetype(shape.name());
    super::formats::format_of(shape).convert(&mut buffered, source, out)?;
    Ok(shape)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::cim::Table;
    use crate::convert::test_util::sample;
    use crate::convert::{Stats, VecSink};

    fn read(dir: &str, name: &str) -> Vec<u8> {
        std::fs::read(sample(dir, name)).unwrap()
    }

    #[test]
    fn sniffs_every_shape() {
        let cases = [
            ("sysmon", "t1218_007_msiexec_sysmon.log", Sourcetype::XmlWinEventLog),
            ("sysmon", "certutil_exe_certificate_extraction.raw", Sourcetype::XmlWinEventLog),
            ("sysmon", "sysmon_corrupt_chunk9.evtx", Sourcetype::Evtx),
            ("nvm", "security_content_example_flow_kv.log", Sourcetype::NvmKv),
            ("nvm", "security_content_example_flow.json", Sourcetype::NvmJson),
            ("nvm", "t1218_007_msiexec_nvm_kv.log", Sourcetype::NvmKv),
        ];
        for (dir, name, want) in cases {
            let bytes = read(dir, name);
            assert_eq!(sniff(&bytes[..bytes.len().min(SNIFF_BYTES)]), Some(want), "{name}");
        }
        assert_eq!(sniff(br#"{"@timestamp":"x","winlog":{"event_id":1}}"#), Some(Sourcetype::WinEventJson));
        assert_eq!(sniff(br#"{"EventID":1,"Channel":"x"}"#), Some(Sourcetype::WinEventJson));
        assert_eq!(sniff(br#"{"hello":"world"}"#), None);
        assert_eq!(sniff(b"\x7fELF\x02\x01"), None);
        assert_eq!(sniff(b"just some text\n"), None);
    }

    fn convert_path(path: &Path, opts: InputOptions) -> Result<(InputInfo, VecSink, Stats), ConvertError> {
        let (info, sink, stats, hash) = convert_hashed(path, opts)?;
        // Whatever the shape, the hash is that of the whole file.
        assert_eq!(hash, blake3::hash(&std::fs::read(path).unwrap()).to_hex().to_string(), "{}", path.display());
        Ok((info, sink, stats))
    }

    fn convert_hashed(path: &Path, opts: InputOptions) -> Result<(InputInfo, VecSink, Stats, String), ConvertError> {
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink);
        let mut input = InputFile::new(File::open(path).unwrap()).unwrap();
        let info = convert_input(&mut input, path, "in", opts, &mut out)?;
        let stats = out.finish()?;
        let (hash, bytes) = input.finish().unwrap();
        assert_eq!(bytes, std::fs::metadata(path).unwrap().len());
        Ok((info, sink, stats, hash))
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn tar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for (name, bytes) in members {
            let mut h = ::tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *bytes).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// The batches without the `source` column (members are named `archive!member`).
    fn without_source(sink: &VecSink, t: Table) -> arrow::record_batch::RecordBatch {
        let b = sink.table(t);
        let keep: Vec<usize> = (0..b.num_columns()).filter(|i| b.schema().field(*i).name() != "source").collect();
        b.project(&keep).unwrap()
    }

    #[test]
    fn containers_give_the_same_rows_as_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        let xml = read("sysmon", "t1218_007_msiexec_sysmon.log");
        let nvm = read("nvm", "t1218_007_msiexec_nvm.json");
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let (_, xml_plain, _) = convert_path(&write("x.log", &xml), InputOptions::default()).unwrap();
        let (_, nvm_plain, _) = convert_path(&write("n.json", &nvm), InputOptions::default()).unwrap();

        let (info, sink, _) = convert_path(&write("x.log.gz", &gzip(&xml)), InputOptions::default()).unwrap();
        assert_eq!(info.container, Some(Container::Gzip));
        assert_eq!(info.sourcetypes, vec![Sourcetype::XmlWinEventLog]);
        for t in Table::ALL {
            assert_eq!(sink.table(t), xml_plain.table(t), "gzip: {t}");
        }

        let tgz = gzip(&tar(&[("logs/x.log", &xml), ("logs/n.json", &nvm)]));
        let (info, sink, _) = convert_path(&write("both.tgz", &tgz), InputOptions::default()).unwrap();
        assert_eq!(info.container, Some(Container::TarGz));
        assert_eq!(info.sourcetypes, vec![Sourcetype::XmlWinEventLog, Sourcetype::NvmJson]);
        let p = sink.table(Table::Processes);
        let sources: std::collections::BTreeSet<String> =
            (0..p.num_rows()).map(|i| crate::convert::test_util::row(&p, i)["source"].clone()).collect();
        assert_eq!(sources.into_iter().collect::<Vec<_>>(), vec!["in!logs/n.json", "in!logs/x.log"]);
        assert_eq!(
            p.num_rows(),
            xml_plain.table(Table::Processes).num_rows() + nvm_plain.table(Table::Processes).num_rows()
        );

        let mut zbytes = Vec::new();
        {
            let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zbytes));
            let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            z.start_file("n.json", o).unwrap();
            z.write_all(&nvm).unwrap();
            z.finish().unwrap();
        }
        let (info, sink, _) = convert_path(&write("n.zip", &zbytes), InputOptions::default()).unwrap();
        assert_eq!(info.container, Some(Container::Zip));
        for t in Table::ALL {
            assert_eq!(without_source(&sink, t), without_source(&nvm_plain, t), "zip: {t}");
        }
    }

    #[test]
    fn a_truncated_stream_fails_unless_salvaged() {
        let dir = tempfile::tempdir().unwrap();
        let xml = read("sysmon", "certutil_exe_certificate_extraction.raw");
        let gz = gzip(&xml);
        let cut = dir.path().join("cut.log.gz");
        std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
        let err = convert_path(&cut, InputOptions::default()).unwrap_err();
        assert!(matches!(err, ConvertError::Damaged(_)), "{err}");
        assert!(err.to_string().contains("truncated archive?") && err.to_string().contains("--salvage"), "{err}");
        let (_, sink, stats) = convert_path(&cut, InputOptions { salvage: true, ..Default::default() }).unwrap();
        assert!(sink.table(Table::Processes).num_rows() > 0);
        assert_eq!(stats.bad_records.last().unwrap().source, "in");
        assert!(stats.bad_records.last().unwrap().reason.contains("gzip stream ends early"));

        // A gzip stream whose data is whole but whose trailer is missing is damaged too.
        let tgz = gzip(&tar(&[("x.log", &xml)]));
        let no_trailer = dir.path().join("t.tgz");
        std::fs::write(&no_trailer, &tgz[..tgz.len() - 4]).unwrap();
        assert!(matches!(convert_path(&no_trailer, InputOptions::default()), Err(ConvertError::Damaged(_))));

        let zip_cut = dir.path().join("z.zip");
        let mut zbytes = Vec::new();
        {
            let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zbytes));
            z.start_file("x.log", zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(&xml).unwrap();
            z.finish().unwrap();
        }
        std::fs::write(&zip_cut, &zbytes[..zbytes.len() - 30]).unwrap();
        let err = convert_path(&zip_cut, InputOptions::default()).unwrap_err();
        assert!(err.to_string().contains("zip archive"), "{err}");
    }

    #[test]
    fn unknown_and_empty_members_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tgz");
        std::fs::write(&p, gzip(&tar(&[("notes.txt", b"hello\n")]))).unwrap();
        let err = convert_path(&p, InputOptions::default()).unwrap_err().to_string();
        assert!(err.contains("in!notes.txt: not a known input shape") && err.contains("\"hello"), "{err}");
        let e = dir.path().join("empty.log");
        std::fs::write(&e, b"").unwrap();
        assert!(convert_path(&e, InputOptions::default()).unwrap_err().to_string().contains("empty file"));
    }

    #[test]
    fn every_shape_is_hashed_whole_as_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        // Plain text, EVTX (read by seeking from chunk to chunk), gzip, tar and zip: the hash
        // checked inside `convert_path` is that of the whole file.
        let xml = read("sysmon", "t1218_007_msiexec_sysmon.log");
        convert_path(&write("a.log", &xml), InputOptions::default()).unwrap();
        convert_path(&sample("sysmon", "sysmon_corrupt_chunk9.evtx"), InputOptions::default()).unwrap();
        convert_path(&write("a.gz", &gzip(&xml)), InputOptions::default()).unwrap();
        convert_path(&write("a.tar", &tar(&[("x.log", &xml)])), InputOptions::default()).unwrap();
        let mut zbytes = Vec::new();
        {
            let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zbytes));
            let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            z.start_file("one.log", o).unwrap();
            z.write_all(&xml).unwrap();
            z.start_file("two.log", o).unwrap();
            z.write_all(&xml).unwrap();
            z.finish().unwrap();
        }
        let (info, sink, _) = convert_path(&write("a.zip", &zbytes), InputOptions::default()).unwrap();
        assert_eq!(info.container, Some(Container::Zip));
        let (_, plain, _) = convert_path(&dir.path().join("a.log"), InputOptions::default()).unwrap();
        assert_eq!(sink.table(crate::cim::Table::Processes).num_rows(), 2 * plain.table(crate::cim::Table::Processes).num_rows());
        // The zip of the bundled samples, whose members use data descriptors.
        convert_path(&sample("json", "covenant_installutil.zip"), InputOptions::default()).unwrap();
    }

    #[test]
    fn bytes_read_twice_are_the_bytes_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        let mut input = InputFile::new(File::open(&p).unwrap()).unwrap();
        // Read the head, skip ahead (the gap is hashed from the file), read, seek back into the
        // head (served from what was read), and stop before the end (finish reads the rest).
        let mut buf = vec![0; 100];
        input.read_exact(&mut buf).unwrap();
        assert_eq!(buf, bytes[..100]);
        input.seek(SeekFrom::Start(150_000)).unwrap();
        input.read_exact(&mut buf).unwrap();
        assert_eq!(buf, bytes[150_000..150_100]);
        input.seek(SeekFrom::End(0)).unwrap();
        input.seek(SeekFrom::Start(10)).unwrap();
        input.read_exact(&mut buf).unwrap();
        assert_eq!(buf, bytes[10..110]);
        // The file changes under the reader: the head, already read, is served as it was read.
        let mut changed = bytes.clone();
        changed[20] ^= 0xff;
        changed[190_000] ^= 0xff;
        std::fs::write(&p, &changed).unwrap();
        input.seek(SeekFrom::Start(20)).unwrap();
        input.read_exact(&mut buf[..1]).unwrap();
        assert_eq!(buf[0], bytes[20]);
        // What is hashed past the point read is what the file holds when it is read.
        let (hash, n) = input.finish().unwrap();
        let mut seen = bytes[..150_100].to_vec();
        seen.extend_from_slice(&changed[150_100..]);
        assert_eq!((hash, n), (blake3::hash(&seen).to_hex().to_string(), bytes.len() as u64));
    }

    #[test]
    fn archives_that_expand_too_far_fail_naming_the_member() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        // One event, then 64 MiB of newlines: about 1,000 times its compressed size.
        let mut bomb = read("sysmon", "security_content_example_events.log");
        bomb.extend(std::iter::repeat_n(b'\n', 64 << 20));
        let limits = Limits::default();
        let err = convert_path(&write("b.gz", &gzip(&bomb)), InputOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("in: the gzip stream expands more than 200 times"), "{err}");
        let err = convert_path(&write("b.tgz", &gzip(&tar(&[("ok.log", &read("sysmon", "t1218_007_msiexec_sysmon.log")), ("big.log", &bomb)]))), InputOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("in!big.log: the gzip stream expands more than 200 times"), "{err}");
        let mut zbytes = Vec::new();
        {
            let mut z = zip::ZipWriter::new(std::io::Cursor::new(&mut zbytes));
            let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            z.start_file("big.log", o).unwrap();
            z.write_all(&bomb).unwrap();
            z.finish().unwrap();
        }
        let err = convert_path(&write("b.zip", &zbytes), InputOptions::default()).unwrap_err().to_string();
        assert!(err.starts_with("in!big.log: the zip member expands more than 200 times"), "{err}");
        // The size limit, on a member that compresses normally.
        let small = InputOptions { limits: Limits { member_bytes: 1000, ..limits }, ..Default::default() };
        let err = convert_path(&write("s.tar", &tar(&[("x.log", &read("sysmon", "t1218_007_msiexec_sysmon.log"))])), small).unwrap_err().to_string();
        assert!(err.starts_with("in!x.log: the tar member expands to more than 1000 bytes (--max-member-size)"), "{err}");
        // Raised limits let the bomb through (its records are read).
        let lax = InputOptions { limits: Limits { ratio: 10_000, ..limits }, ..Default::default() };
        let (_, sink, _) = convert_path(&dir.path().join("b.gz"), lax).unwrap();
        assert_eq!(sink.table(crate::cim::Table::Processes).num_rows(), 1);
    }

    #[test]
    fn an_evtx_member_is_copied_to_a_file_not_held_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let evtx = read("sysmon", "sysmon_corrupt_chunk9.evtx");
        let p = dir.path().join("x.evtx.gz");
        std::fs::write(&p, gzip(&evtx)).unwrap();
        let (info, sink, _) = convert_path(&p, InputOptions::default()).unwrap();
        assert_eq!(info.sourcetypes, vec![Sourcetype::Evtx]);
        let (_, plain, _) = convert_path(&sample("sysmon", "sysmon_corrupt_chunk9.evtx"), InputOptions::default()).unwrap();
        assert_eq!(without_source(&sink, Table::Processes), without_source(&plain, Table::Processes));
        // An EVTX header, then a gigabyte of zeros, in a megabyte: refused by the ratio limit, at a
        // bounded cost (not read whole first).
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&evtx[..4096]).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = dir.path().join("bomb.evtx.gz");
        std::fs::write(&bomb, e.finish().unwrap()).unwrap();
        let started = std::time::Instant::now();
        let err = convert_path(&bomb, InputOptions::default()).unwrap_err().to_string();
        assert!(err.contains("expands more than 200 times"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    }

    #[test]
    fn an_archive_with_no_files_is_an_error_like_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = ::tar::Builder::new(Vec::new());
        let mut h = ::tar::Header::new_gnu();
        h.set_entry_type(::tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "link.log", "/etc/passwd").unwrap();
        let p = dir.path().join("links.tar");
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        let err = convert_path(&p, InputOptions::default()).unwrap_err().to_string();
        assert_eq!(err, "in: nothing to ingest: the archive holds no files (skipped: 1 symbolic links)");
        // A directory alone.
        let mut b = ::tar::Builder::new(Vec::new());
        b.append_dir("logs", dir.path()).unwrap();
        let only_dir = dir.path().join("dir.tar");
        std::fs::write(&only_dir, b.into_inner().unwrap()).unwrap();
        let err = convert_path(&only_dir, InputOptions::default()).unwrap_err().to_string();
        assert_eq!(err, "in: nothing to ingest: the archive holds no files (skipped: 1 directories)");
    }
}
