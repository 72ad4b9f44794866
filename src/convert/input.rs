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

/// The shape of a plain (not packed) text input from its first bytes, or `None` for a container
/// or an EVTX file or an unknown shape.
pub fn plain_shape(head: &[u8], forced: Option<Sourcetype>) -> Option<Sourcetype> {
    let packed = head.starts_with(&[0x1f, 0x8b]) || head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") || is_tar(head);
    if packed || head.starts_with(b"ElfFile\0") {
        return None;
    }
    forced.or_else(|| sniff(head)).filter(|s| *s != Sourcetype::Evtx)
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
        out.set_sourcetype(Sourcetype::Evtx.name());
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
    out.set_sourcetype(shape.name());
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
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink);
        let f = File::open(path).unwrap();
        let info = convert_input(f, path, "in", opts, &mut out)?;
        let stats = out.finish()?;
        Ok((info, sink, stats))
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
        assert!(sink.table(Table::Processes).num_rows() <= 20);
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
}
