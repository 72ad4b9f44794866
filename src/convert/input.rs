//! Opening an input: containers (`.gz`, `.zip`, `.tar.gz`, `.tar`, recognised by their bytes, not
//! their names) read as streams, and the shape of each file inside detected from its content.
//!
//! Each file (a plain file, or a member of an archive) is converted by the module of its shape.
//! A member of an archive is named `archive!member` in provenance and errors. A gzip or tar stream
//! that ends early is an error, and nothing of the input reaches the lake; with `salvage`, the
//! records read before the damage are kept and the damage is reported as a bad record.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use super::{BadRecord, ConvertError, Emitter, Sourcetype, evtx, nvm, winevent_json, xmlwineventlog};

/// Bytes looked at to recognise a shape.
pub const SNIFF_BYTES: usize = 64 * 1024;

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

/// Options for [`convert_input`].
#[derive(Debug, Clone, Copy, Default)]
pub struct InputOptions {
    pub sourcetype: Option<Sourcetype>,
    pub salvage: bool,
}

/// Reads up to `n` bytes without losing them: returns them and a reader that yields them again.
fn peek<R: Read>(mut r: R, n: usize) -> std::io::Result<(Vec<u8>, std::io::Chain<Cursor<Vec<u8>>, R>)> {
    let mut head = Vec::with_capacity(n.min(1 << 16));
    (&mut r).take(n as u64).read_to_end(&mut head)?;
    Ok((head.clone(), Cursor::new(head).chain(r)))
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

/// Converts everything in the input at `path` (read through `reader`, which may count progress).
pub fn convert_input<R: Read>(
    reader: R,
    path: &Path,
    source: &str,
    opts: InputOptions,
    out: &mut Emitter<'_>,
) -> Result<InputInfo, ConvertError> {
    let io = |e| ConvertError::io(path, e);
    let (head, reader) = peek(reader, SNIFF_BYTES).map_err(io)?;
    let mut info = InputInfo::default();
    if head.starts_with(&[0x1f, 0x8b]) {
        let error = Rc::new(RefCell::new(None));
        let gz = Guard { inner: MultiGzDecoder::new(reader), error: error.clone() };
        let (inner_head, gz) = peek(gz, SNIFF_BYTES).map_err(io)?;
        if is_tar(&inner_head) {
            info.container = Some(Container::TarGz);
            convert_tar(gz, source, opts, out, &mut info, Some(&error))?;
        } else {
            info.container = Some(Container::Gzip);
            let s = convert_stream(gz, source, opts, out)?;
            info.saw(s);
        }
        report_damage(&error, source, "gzip stream", opts, out)?;
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        info.container = Some(Container::Zip);
        let file = File::open(path).map_err(io)?;
        let mut zip = zip::ZipArchive::new(BufReader::new(file))
            .map_err(|e| ConvertError::Damaged(damaged(source, "zip archive", &e)))?;
        for i in 0..zip.len() {
            let member = zip.by_index(i).map_err(|e| ConvertError::Damaged(damaged(source, "zip member", &e)))?;
            if member.is_dir() {
                continue;
            }
            let name = format!("{source}!{}", member.name().map_err(|e| ConvertError::Damaged(damaged(source, "zip member name", &e)))?);
            let error = Rc::new(RefCell::new(None));
            let s = convert_stream(Guard { inner: member, error: error.clone() }, &name, opts, out)?;
            info.saw(s);
            report_damage(&error, &name, "zip member", opts, out)?;
        }
    } else if is_tar(&head) {
        info.container = Some(Container::Tar);
        let error = Rc::new(RefCell::new(None));
        convert_tar(Guard { inner: reader, error: error.clone() }, source, opts, out, &mut info, Some(&error))?;
        report_damage(&error, source, "tar stream", opts, out)?;
    } else if opts.sourcetype.map_or(head.starts_with(b"ElfFile\0"), |s| s == Sourcetype::Evtx) {
        // A plain EVTX file is read from disk, not into memory.
        drop(reader);
        evtx::convert_file(path, source, out)?;
        info.saw(Sourcetype::Evtx);
    } else {
        let s = convert_stream(reader, source, opts, out)?;
        info.saw(s);
    }
    Ok(info)
}

fn report_damage(
    error: &Rc<RefCell<Option<std::io::Error>>>,
    source: &str,
    what: &str,
    opts: InputOptions,
    out: &mut Emitter<'_>,
) -> Result<(), ConvertError> {
    let Some(e) = error.borrow_mut().take() else { return Ok(()) };
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

fn convert_tar<R: Read>(
    reader: R,
    source: &str,
    opts: InputOptions,
    out: &mut Emitter<'_>,
    info: &mut InputInfo,
    stream_error: Option<&Rc<RefCell<Option<std::io::Error>>>>,
) -> Result<(), ConvertError> {
    let mut archive = tar::Archive::new(reader);
    convert_tar_entries(&mut archive, source, opts, out, info, stream_error)?;
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
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = format!("{source}!{}", entry.path().map(|p| p.display().to_string()).unwrap_or_else(|_| "?".into()));
        let s = convert_stream(entry, &name, opts, out)?;
        info.saw(s);
        if stream_error.is_some_and(|s| s.borrow().is_some()) {
            return Ok(());
        }
    }
    Ok(())
}

/// Recognises a file's shape from its first bytes.
pub fn sniff(head: &[u8]) -> Option<Sourcetype> {
    if head.starts_with(b"ElfFile\0") {
        return Some(Sourcetype::Evtx);
    }
    let text = String::from_utf8_lossy(head);
    let first = text.lines().map(|l| l.trim_start_matches('\u{feff}').trim()).find(|l| !l.is_empty())?;
    if first.starts_with('{') {
        let obj = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(first).ok();
        return match obj {
            Some(o) if nvm::is_nvm(&nvm::from_json(&o)) => Some(Sourcetype::NvmJson),
            Some(o) if winevent_json::layout(&o).is_some() => Some(Sourcetype::WinEventJson),
            Some(_) => None,
            // A first line longer than the sniffed bytes: judge by the keys seen.
            None if first.contains("\"fv\"") && first.contains("nvzFlow") => Some(Sourcetype::NvmJson),
            None if ["\"EventID\"", "\"event_id\"", "\"winlog\"", "\"event_data\""].iter().any(|k| first.contains(k)) => {
                Some(Sourcetype::WinEventJson)
            }
            None => None,
        };
    }
    if text.lines().take(20).any(|l| nvm::parse_kv(l).is_ok_and(|r| nvm::is_nvm(&r))) {
        return Some(Sourcetype::NvmKv);
    }
    if xmlwineventlog::looks_like(head) {
        return Some(Sourcetype::XmlWinEventLog);
    }
    None
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
    let buffered = BufReader::with_capacity(1 << 20, reader);
    match shape {
        Sourcetype::XmlWinEventLog => xmlwineventlog::convert(buffered, source, out)?,
        Sourcetype::WinEventJson => winevent_json::convert(buffered, source, out)?,
        Sourcetype::NvmKv => nvm::convert_kv(buffered, source, out)?,
        Sourcetype::NvmJson => nvm::convert_json(buffered, source, out)?,
        Sourcetype::Evtx => {
            let mut bytes = Vec::new();
            let mut r = buffered;
            r.read_to_end(&mut bytes).map_err(|e| ConvertError::io(Path::new(source), e))?;
            evtx::convert_bytes(bytes, source, out)?
        }
    }
    Ok(shape)
}
