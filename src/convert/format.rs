//! The input-format contract: what every log format cimlake reads provides. The formats are
//! listed once, in [`super::formats::FORMATS`], which shape detection, conversion, splitting and
//! the fuzz targets iterate. A new format is one module implementing [`Format`] and one entry in
//! that list (and a [`Sourcetype`] variant naming it on the command line); CONTRIBUTING.md has
//! the checklist.
//!
//! A format is read in one of two ways:
//!
//! * pulled: [`Format::convert`] reads a whole input from a [`BufRead`] (what `ingest` does);
//! * pushed: a [`Decoder`] ([`super::formats::decoder`]) is handed bytes as they arrive, in buffers of any size,
//!   in the style of arrow-csv's `Decoder::decode(&[u8]) -> usize` / `flush`, and gives the same
//!   rows, counts and bad records as the pull read, whatever the buffer sizes.

use std::io::{BufRead, Seek, SeekFrom};

use super::lines::Position;
use super::{ConvertError, Emitter, Sourcetype};

/// One input format.
pub trait Format: Sync {
    /// The shape it reads; its name is what the `sourcetype` column holds.
    fn sourcetype(&self) -> Sourcetype;

    /// Whether `head`, the first [`super::input::SNIFF_BYTES`] of a file (after any container),
    /// is in this format. [`super::formats::FORMATS`] is in sniffing order: the first format that
    /// accepts wins.
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
