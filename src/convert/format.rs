//! The input-format contract: what every log format cimlake reads provides, and the one list of
//! them ([`FORMATS`]) that shape detection ([`sniff`]), conversion
//! ([`super::input::convert_input`]), splitting ([`super::split`]) and the fuzz targets
//! ([`crate::fuzzing`]) iterate. A new format is one module implementing [`Format`] and one entry
//! in [`FORMATS`] (and a [`Sourcetype`] variant naming it on the command line); CONTRIBUTING.md
//! has the checklist.
//!
//! A format is read in one of two ways:
//!
//! * pulled: [`Format::convert`] reads a whole input from a [`BufRead`] (what `ingest` does);
//! * pushed: a [`Decoder`] ([`decoder`]) is handed bytes as they arrive, in buffers of any size,
//!   in the style of arrow-csv's `Decoder::decode(&[u8]) -> usize` / `flush`, and gives the same
//!   rows, counts and bad records as the pull read, whatever the buffer sizes.

use std::io::{BufRead, Cursor, Seek, SeekFrom};

use super::lines::Position;
use super::split::Cutter;
use super::{ConvertError, Emitter, Sourcetype, evtx, nvm, winevent_json, xmlwineventlog};

/// One input format.
pub trait Format: Sync {
    /// The shape it reads; its name is what the `sourcetype` column holds.
    fn sourcetype(&self) -> Sourcetype;

    /// Whether `head`, the first [`super::input::SNIFF_BYTES`] of a file (after any container),
    /// is in this format. [`FORMATS`] is in sniffing order: the first format that accepts wins.
    fn sniff(&self, head: &[u8]) -> bool;

    /// Converts a whole input; `source` names it in provenance and errors.
    fn convert(&self, reader: &mut dyn BufRead, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError>;

    /// Whether its records are lines of text, each damaged one a bad record and never an error
    /// (the fuzz targets hold text formats to that; a binary format may refuse a whole file).
    fn is_text(&self) -> bool {
        true
    }

    /// Whether an input can be cut, at lines where records start, into pieces that convert
    /// independently ([`Format::convert_part`]) to the rows of the whole. Formats whose records
    /// depend on each other (NVM merges flow stages across the input) cannot.
    fn splittable(&self) -> bool {
        false
    }

    /// For a splittable format: whether a complete line (with or without its line end) starts a
    /// record, so a piece may start there.
    fn starts_record(&self, _line: &[u8]) -> bool {
        true
    }

    /// For a splittable format: converts a piece that begins at `at` (a record start, or the
    /// start of the input); `more_follows` when the next piece starts where this one ends.
    fn convert_part(&self, _reader: &mut dyn BufRead, source: &str, _at: Position, _more_follows: bool, _out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        Err(ConvertError::Shape(format!("{source}: {} inputs are not split", self.sourcetype())))
    }
}

/// Every format, in sniffing order: EVTX by its magic bytes; then the JSON-lines formats, NVM
/// before Windows events (an NVM record would pass for neither otherwise); then the text formats,
/// NVM key=value before XmlWinEventLog.
pub static FORMATS: &[&dyn Format] = &[
    &evtx::EvtxFormat,
    &nvm::NvmJsonFormat,
    &winevent_json::WinEventJsonFormat,
    &nvm::NvmKvFormat,
    &xmlwineventlog::XmlWinEventLogFormat,
];

/// The format of a shape.
pub fn format_of(shape: Sourcetype) -> &'static dyn Format {
    *FORMATS.iter().find(|f| f.sourcetype() == shape).expect("every sourcetype has a format in FORMATS")
}

/// The first format in [`FORMATS`] that recognises `head`.
pub fn sniff(head: &[u8]) -> Option<&'static dyn Format> {
    FORMATS.iter().copied().find(|f| f.sniff(head))
}

/// The first non-empty line of a text head (byte-order mark and spaces trimmed), for sniffing.
pub(crate) fn first_line(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.lines().map(|l| l.trim_start_matches('\u{feff}').trim()).find(|l| !l.is_empty()).map(str::to_string)
}

/// Converts bytes pushed to it, in buffers of any size.
pub trait Decoder {
    /// Takes bytes that follow those of earlier calls; converts every record they complete and
    /// keeps the rest for later. Returns how many bytes it took (all of them).
    fn decode(&mut self, buf: &[u8], out: &mut Emitter<'_>) -> Result<usize, ConvertError>;

    /// The input has ended: converts what is left.
    fn flush(&mut self, out: &mut Emitter<'_>) -> Result<(), ConvertError>;
}

/// A push decoder for `format`. A splittable format converts each piece as soon as the next
/// record starts (memory: one piece, at most [`DECODE_PIECE_BYTES`] plus one record); the others
/// hold the input until [`Decoder::flush`], as their records depend on each other (NVM) or the
/// reader needs the whole file (EVTX).
pub fn decoder(format: &'static dyn Format, source: &str) -> Box<dyn Decoder> {
    if format.splittable() {
        Box::new(PieceDecoder { format, source: source.to_string(), cutter: Cutter::new(format, DECODE_PIECE_BYTES) })
    } else {
        Box::new(WholeDecoder { format, source: source.to_string(), bytes: Vec::new() })
    }
}

/// The piece size of a splittable format's push decoder.
pub const DECODE_PIECE_BYTES: usize = 1 << 20;

struct PieceDecoder {
    format: &'static dyn Format,
    source: String,
    cutter: Cutter,
}

impl PieceDecoder {
    fn convert_ready(&mut self, eof: bool, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        while let Some(piece) = self.cutter.next_piece(eof) {
            piece.convert(self.format.sourcetype(), &self.source, out)?;
        }
        Ok(())
    }
}

impl Decoder for PieceDecoder {
    fn decode(&mut self, buf: &[u8], out: &mut Emitter<'_>) -> Result<usize, ConvertError> {
        self.cutter.push(buf);
        self.convert_ready(false, out)?;
        Ok(buf.len())
    }

    fn flush(&mut self, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        self.convert_ready(true, out)
    }
}

struct WholeDecoder {
    format: &'static dyn Format,
    source: String,
    bytes: Vec<u8>,
}

impl Decoder for WholeDecoder {
    fn decode(&mut self, buf: &[u8], _out: &mut Emitter<'_>) -> Result<usize, ConvertError> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        let bytes = std::mem::take(&mut self.bytes);
        self.format.convert(&mut Cursor::new(bytes), &self.source, out)
    }
}

/// [`Format::convert`] for a format whose reader seeks (EVTX): the bytes go to a temporary file
/// (never into memory), which is then read in place.
pub(crate) fn convert_spilled(
    reader: &mut dyn BufRead,
    source: &str,
    out: &mut Emitter<'_>,
    convert: impl FnOnce(std::io::BufReader<std::fs::File>, &str, &mut Emitter<'_>) -> Result<(), ConvertError>,
) -> Result<(), ConvertError> {
    let io = |e| ConvertError::io(std::path::Path::new(source), e);
    let mut spill = tempfile::tempfile().map_err(io)?;
    std::io::copy(reader, &mut spill).map_err(io)?;
    spill.seek(SeekFrom::Start(0)).map_err(io)?;
    convert(std::io::BufReader::new(spill), source, out)
}

#[cfg(test)]
mod tests {
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::cim::Table;
    use crate::convert::test_util::sample;
    use crate::convert::{DEFAULT_BATCH_SIZE, Stats, VecSink};

    /// The bundled samples of each format (every format has at least one).
    fn samples(format: &dyn Format) -> Vec<Vec<u8>> {
        let mut found = Vec::new();
        for dir in ["sysmon", "json", "nvm"] {
            let dir = sample(dir, "");
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let bytes = std::fs::read(entry.path()).unwrap();
                let head = &bytes[..bytes.len().min(crate::convert::input::SNIFF_BYTES)];
                if sniff(head).is_some_and(|f| f.sourcetype() == format.sourcetype()) {
                    found.push(bytes);
                }
            }
        }
        found
    }

    fn tables(sink: &VecSink) -> Vec<RecordBatch> {
        Table::ALL.iter().map(|t| sink.table(*t)).collect()
    }

    /// Pulled through a `BufReader` of `buffer` bytes, in batches of `batch_size` rows.
    fn pulled(format: &dyn Format, bytes: &[u8], batch_size: usize, buffer: usize) -> (VecSink, Stats) {
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink).with_batch_size(batch_size);
        format.convert(&mut std::io::BufReader::with_capacity(buffer, bytes), "in", &mut out).unwrap();
        let stats = out.finish().unwrap();
        (sink, stats)
    }

    /// Pushed through a decoder in buffers of `buffer` bytes.
    fn pushed(format: &'static dyn Format, bytes: &[u8], batch_size: usize, buffer: usize) -> (VecSink, Stats) {
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink).with_batch_size(batch_size);
        let mut d = decoder(format, "in");
        for chunk in bytes.chunks(buffer) {
            assert_eq!(d.decode(chunk, &mut out).unwrap(), chunk.len());
        }
        d.flush(&mut out).unwrap();
        let stats = out.finish().unwrap();
        (sink, stats)
    }

    /// Every format gives the same rows, counts and bad records at any batch size and any read
    /// buffer, pulled or pushed.
    #[test]
    fn every_format_is_batch_and_buffer_size_invariant() {
        for &format in FORMATS {
            let inputs = samples(format);
            assert!(!inputs.is_empty(), "{}: no bundled sample", format.sourcetype());
            for bytes in inputs {
                let (base, base_stats) = pulled(format, &bytes, DEFAULT_BATCH_SIZE, 1 << 16);
                assert!(base_stats.records > 0, "{}: no records", format.sourcetype());
                // Tiny buffers on small inputs only: a byte at a time through an EVTX file is slow
                // and proves nothing more.
                let buffers: &[usize] = if bytes.len() < 256 << 10 { &[1, 7, 4096, 1 << 20] } else { &[4096, 65_537, 1 << 20] };
                for &batch_size in &[1, 3, DEFAULT_BATCH_SIZE] {
                    for &buffer in buffers {
                        let what = format!("{} ({} bytes) at batch {batch_size}, buffer {buffer}", format.sourcetype(), bytes.len());
                        if format.is_text() {
                            let (sink, stats) = pulled(format, &bytes, batch_size, buffer);
                            assert_eq!(stats, base_stats, "{what}: pulled stats");
                            assert_eq!(tables(&sink), tables(&base), "{what}: pulled rows");
                        }
                        let (sink, stats) = pushed(format, &bytes, batch_size, buffer);
                        assert_eq!(stats, base_stats, "{what}: pushed stats");
                        assert_eq!(tables(&sink), tables(&base), "{what}: pushed rows");
                        if batch_size == 1 {
                            assert!(sink.batches.iter().all(|(_, b)| b.num_rows() == 1), "{what}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_sourcetype_has_one_format() {
        use clap::ValueEnum;
        for s in Sourcetype::value_variants() {
            assert_eq!(FORMATS.iter().filter(|f| f.sourcetype() == *s).count(), 1, "{s}");
            assert_eq!(format_of(*s).sourcetype(), *s);
        }
        assert_eq!(FORMATS.len(), Sourcetype::value_variants().len());
    }
}
