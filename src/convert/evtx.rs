//! Windows `.evtx` files, read with the `evtx` crate. Each record is rendered as XML and goes
//! through the same parser and mapping as `XmlWinEventLog` text. A chunk or record that cannot be
//! read is a bad record (reported with its location) and every readable record is kept.

use evtx::{EvtxParser, ParserSettings};

use super::xml_event::{self, WinEvent};
use super::{BadRecord, ConvertError, Emitter};
use crate::cim::provenance::Provenance;

pub const SOURCETYPE: &str = "evtx";

/// The format: a binary file of chunks, recognised by its magic bytes. The parser seeks, so a
/// stream (an archive member) is first copied to a temporary file.
pub struct EvtxFormat;

impl super::format::Format for EvtxFormat {
    fn sourcetype(&self) -> super::Sourcetype {
        super::Sourcetype::Evtx
    }

    fn sniff(&self, head: &[u8]) -> bool {
        head.starts_with(MAGIC)
    }

    fn convert(&self, reader: &mut dyn std::io::BufRead, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        super::format::convert_spilled(reader, source, out, convert_reader)
    }

    fn is_text(&self) -> bool {
        false
    }
}

/// The first bytes of every EVTX file.
pub const MAGIC: &[u8] = b"ElfFile\0";

/// Converts an EVTX file from a reader positioned at its start (a file on disk, or an archive
/// member copied to a temporary file); the parser reads it chunk by chunk, in order.
pub fn convert_reader<R: std::io::Read + std::io::Seek>(reader: R, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    let parser = EvtxParser::from_read_seek(reader).map_err(|e| ConvertError::Evtx { path: source.into(), reason: error_chain(&e) })?;
    convert_parser(parser, source, out)
}

/// Converts EVTX bytes in memory (tests and fuzzing).
pub fn convert_bytes(bytes: Vec<u8>, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    convert_reader(std::io::Cursor::new(bytes), source, out)
}

fn convert_parser<T: std::io::Read + std::io::Seek>(
    parser: EvtxParser<T>,
    source: &str,
    out: &mut Emitter<'_>,
) -> Result<(), ConvertError> {
    let mut parser = parser.with_configuration(ParserSettings::new().num_threads(1));
    for record in parser.records() {
        out.record();
        match record {
            Ok(r) => {
                out.raw(r.data.as_bytes());
                let id = i64::try_from(r.event_record_id).ok();
                let bad = |reason: String| BadRecord {
                    source: source.to_string(),
                    record: id,
                    offset: None,
                    reason,
                };
                let mut parsed = WinEvent::default();
                if let Err(reason) = xml_event::parse_into(&r.data, &mut parsed) {
                    out.bad(bad(reason.0))?;
                    continue;
                }
                let prov = Provenance { source, sourcetype: SOURCETYPE, record: id, offset: None };
                super::windows::convert_event(&parsed, prov, out)?;
            }
            Err(e) => out.bad(BadRecord {
                source: source.to_string(),
                record: None,
                offset: None,
                reason: error_chain(&e),
            })?,
        }
    }
    Ok(())
}

/// `outer: inner: innermost`, from an error and its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
