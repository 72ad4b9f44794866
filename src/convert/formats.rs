//! The one list of input formats ([`FORMATS`]), what iterates it (shape detection, [`sniff`];
//! the lookup of a shape's format, [`format_of`]), and the push decoders ([`decoder`]).

use std::io::Cursor;

use super::format::{Decoder, Format};
use super::split::Cutter;
use super::{ConvertError, Emitter, Sourcetype, evtx, evtx_json, nvm, winevent_json, xmlwineventlog};

/// Every format, in sniffing order: EVTX by its magic bytes; evtx_dump JSON by its `"Event"` key;
/// then the JSON-lines formats, NVM
/// before Windows events (an NVM record would pass for neither otherwise); then the text formats,
/// NVM key=value before XmlWinEventLog.
pub static FORMATS: &[&dyn Format] = &[
    &evtx::EvtxFormat,
    &evtx_json::EvtxJsonFormat,
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
            piece.convert(self.format, &self.source, out)?;
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
