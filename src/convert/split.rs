//! Splitting a large text input into pieces that convert independently, so one file can use every
//! core.
//!
//! A piece always starts on a line where a record starts (an `<Event>` line for
//! XmlWinEventLog, any line for JSON lines), carries the line number and byte offset it starts
//! at, and is converted by the same code as a whole file ([`xmlwineventlog::convert_part`],
//! [`winevent_json::convert_part`]). The rows, record counts and bad records of the pieces,
//! taken in order, are those of the whole file.
//!
//! Shapes whose records depend on each other (Cisco NVM merges flow stages and processes across
//! the input) and binary or packed inputs are not split.

use std::io::{Cursor, Read};

use super::format::Format;
use super::lines::Position;
use super::{ConvertError, Emitter, xmlwineventlog};

/// How far past its target size a piece may grow while looking for a record start before it is
/// cut at a line end anyway (a record larger than this is a bad record in any case).
const MAX_OVERRUN: usize = xmlwineventlog::MAX_EVENT_BYTES + (1 << 20);

/// A piece of an input.
#[derive(Debug)]
pub struct Piece {
    /// 0, 1, 2, … in input order.
    pub index: usize,
    pub at: Position,
    pub bytes: Vec<u8>,
    /// Another piece follows (this one ends where the next record starts).
    pub more_follows: bool,
}

impl Piece {
    /// Converts the piece as part of an input in `format` named `source`.
    pub fn convert(&self, format: &dyn Format, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        out.set_sourcetype(format.sourcetype().name());
        format.convert_part(&mut Cursor::new(&self.bytes[..]), source, self.at, self.more_follows, out)
    }
}

/// Cuts bytes pushed to it into pieces of about `target` bytes, each ending just before a record
/// start: the push core of [`Splitter`] and of the formats' push decoders.
pub struct Cutter {
    format: &'static dyn Format,
    target: usize,
    /// Bytes not yet in a piece.
    buf: Vec<u8>,
    next: Position,
    index: usize,
    /// The last piece ended inside an overlong line: drop the rest of it first.
    skip_line: bool,
    /// Where to go on looking for a cut in `buf` (no cut before it).
    searched: usize,
}

impl Cutter {
    pub fn new(format: &'static dyn Format, target: usize) -> Self {
        assert!(format.splittable(), "{} inputs are not split", format.sourcetype());
        Cutter { format, target: target.max(1), buf: Vec::new(), next: Position::default(), index: 0, skip_line: false, searched: 0 }
    }

    /// Bytes that follow those pushed before.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held, not yet in a piece.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Where to cut `buf` at or after `from`: the start of the first complete line that is a
    /// record start. `None` when more bytes are needed to know.
    fn cut(&self, from: usize, eof: bool) -> Option<usize> {
        let buf = &self.buf;
        let from = from.saturating_sub(1).min(buf.len());
        for nl in memchr::memchr_iter(b'\n', &buf[from..]).map(|i| from + i) {
            let start = nl + 1;
            let line_end = memchr::memchr(b'\n', &buf[start..]).map(|i| start + i);
            let line = match line_end {
                Some(e) => &buf[start..e],
                None if eof => &buf[start..],
                None => return None,
            };
            if start < buf.len() && self.format.starts_record(line) {
                return Some(start);
            }
        }
        None
    }

    /// The next piece the bytes so far make, or `None` until more are pushed (or, at `eof`, when
    /// none are left).
    pub fn next_piece(&mut self, eof: bool) -> Option<Piece> {
        if self.skip_line {
            match memchr::memchr(b'\n', &self.buf) {
                Some(i) => {
                    self.buf.drain(..=i);
                    self.next = Position { lines_before: self.next.lines_before + 1, offset: self.next.offset + i as i64 + 1 };
                    self.skip_line = false;
                }
                None => {
                    self.next.offset += self.buf.len() as i64;
                    self.buf.clear();
                    self.skip_line = !eof;
                    return None;
                }
            }
        }
        if self.buf.is_empty() || (self.buf.len() < self.target && !eof) {
            return None;
        }
        let searched = self.searched.max(self.target.min(self.buf.len()));
        let end = match self.cut(searched, eof) {
            Some(at) => at,
            None if eof => self.buf.len(),
            None if self.buf.len() >= self.target + MAX_OVERRUN => {
                // No record start in sight: cut at the last line end. With none at all, the piece
                // ends inside a line longer than any record; the piece's converter reports it as
                // too long, and the rest of it is skipped here.
                match memchr::memrchr(b'\n', &self.buf) {
                    Some(i) => i + 1,
                    None => {
                        self.skip_line = true;
                        self.buf.len()
                    }
                }
            }
            None => {
                // Search again from the last line end seen, once more bytes are here.
                self.searched = memchr::memrchr(b'\n', &self.buf).map_or(self.buf.len(), |i| i + 1).max(searched);
                return None;
            }
        };
        self.searched = 0;
        let rest = self.buf.split_off(end);
        let bytes = std::mem::replace(&mut self.buf, rest);
        let at = self.next;
        self.next = Position {
            lines_before: at.lines_before + memchr::memchr_iter(b'\n', &bytes).count() as i64,
            offset: at.offset + bytes.len() as i64,
        };
        let index = self.index;
        self.index += 1;
        let more_follows = !self.buf.is_empty() || !eof;
        Some(Piece { index, at, bytes, more_follows })
    }
}

/// Cuts a stream into pieces of about `target` bytes, each ending just before a record start.
pub struct Splitter<R> {
    reader: R,
    cutter: Cutter,
    eof: bool,
}

impl<R: Read> Splitter<R> {
    /// Splits `reader`, an input in `format` (which must be splittable).
    pub fn new(reader: R, format: &'static dyn Format, target: usize) -> Self {
        Splitter { reader, cutter: Cutter::new(format, target), eof: false }
    }

    /// Reads up to `want` more bytes into the cutter (one read).
    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        let buf = &mut self.cutter.buf;
        let start = buf.len();
        buf.resize(start + want, 0);
        let n = loop {
            match self.reader.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    buf.truncate(start);
                    return Err(e);
                }
            }
        };
        buf.truncate(start + n);
        self.eof = n == 0;
        Ok(())
    }

    /// The next piece, or `None` at the end of the input.
    pub fn next_piece(&mut self) -> std::io::Result<Option<Piece>> {
        loop {
            if let Some(piece) = self.cutter.next_piece(self.eof) {
                return Ok(Some(piece));
            }
            if self.eof {
                return Ok(None);
            }
            let buffered = self.cutter.buffered();
            let want = if buffered < self.cutter.target {
                // A piece's buffer is allocated once, at its size: growing it by doubling would
                // hold up to twice the piece for every piece in flight.
                self.cutter.buf.reserve_exact(self.cutter.target - buffered);
                self.cutter.target - buffered
            } else {
                1 << 20
            };
            self.fill(want.min(4 << 20))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cim::Table;
    use crate::convert::test_util::{row, sample};
    use crate::convert::formats::format_of;
    use crate::convert::{Sourcetype, Stats, VecSink, winevent_json};

    fn whole(shape: Sourcetype, bytes: &[u8]) -> (Stats, Vec<Vec<String>>) {
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink);
        match shape {
            Sourcetype::XmlWinEventLog => xmlwineventlog::convert(Cursor::new(bytes), "in", &mut out).unwrap(),
            _ => winevent_json::convert(Cursor::new(bytes), "in", &mut out).unwrap(),
        }
        let stats = out.finish().unwrap();
        (stats, rows(&sink))
    }

    fn pieces(shape: Sourcetype, bytes: &[u8], target: usize) -> (Stats, Vec<Vec<String>>, usize) {
        let mut split = Splitter::new(Cursor::new(bytes), format_of(shape), target);
        let mut sink = VecSink::default();
        let mut stats = Stats::default();
        let mut n = 0;
        let mut total = 0;
        while let Some(p) = split.next_piece().unwrap() {
            assert_eq!(p.index, n);
            // Pieces follow each other; only the rest of an overlong line is skipped between them.
            assert!(p.at.offset as usize >= total, "pieces in order");
            total = p.at.offset as usize + p.bytes.len();
            let mut out = Emitter::new(&mut sink);
            p.convert(format_of(shape), "in", &mut out).unwrap();
            stats.merge(&out.finish().unwrap());
            n += 1;
        }
        assert_eq!(total, bytes.len(), "the pieces reach the end");
        (stats, rows(&sink), n)
    }

    fn rows(sink: &VecSink) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for t in [Table::Processes, Table::AllTraffic] {
            let b = sink.table(t);
            for i in 0..b.num_rows() {
                out.push(row(&b, i).into_values().collect());
            }
        }
        out
    }

    #[test]
    fn pieces_convert_to_exactly_the_whole_file() {
        // One-line events, pretty-printed events, CRLF, plain-text records, garbage lines and a
        // truncated event, cut at every size from tiny to whole.
        let mut bytes = Vec::new();
        for name in ["t1218_007_msiexec_sysmon.log", "certutil_exe_certificate_extraction.raw"] {
            bytes.extend(std::fs::read(sample("sysmon", name)).unwrap());
        }
        bytes.extend_from_slice(b"garbage line\r\n<Event xmlns='x'><System><EventID>1</EventID>\n");
        bytes.extend(std::fs::read(sample("sysmon", "t1218_007_msiexec_sysmon.log")).unwrap());
        let (want_stats, want_rows) = whole(Sourcetype::XmlWinEventLog, &bytes);
        assert!(want_stats.bad >= 1 && want_rows.len() > 20, "{want_stats:?}");
        for target in [1, 100, 4096, 50_000, bytes.len()] {
            let (stats, got, n) = pieces(Sourcetype::XmlWinEventLog, &bytes, target);
            assert_eq!(stats, want_stats, "target {target}");
            assert_eq!(got, want_rows, "target {target}");
            assert!(target >= bytes.len() || n > 1, "target {target}: {n} pieces");
        }
    }

    #[test]
    fn json_lines_split_at_any_line() {
        let mut bytes = std::fs::read(sample("json", "t1218_007_msiexec_winlogbeat8.json")).unwrap();
        bytes.extend_from_slice(b"not json\n");
        let (want_stats, want_rows) = whole(Sourcetype::WinEventJson, &bytes);
        for target in [1, 500, bytes.len() / 2] {
            let (stats, got, _) = pieces(Sourcetype::WinEventJson, &bytes, target);
            assert_eq!(stats, want_stats, "target {target}");
            assert_eq!(got, want_rows, "target {target}");
        }
    }

    #[test]
    fn a_line_longer_than_any_event_gives_the_same_bad_record_split_or_whole() {
        let mut bytes = std::fs::read(sample("sysmon", "t1218_007_msiexec_sysmon.log")).unwrap();
        bytes.extend(vec![b'x'; MAX_OVERRUN + (3 << 20)]);
        bytes.push(b'\n');
        bytes.extend(std::fs::read(sample("sysmon", "t1218_007_msiexec_sysmon.log")).unwrap());
        let (want_stats, want_rows) = whole(Sourcetype::XmlWinEventLog, &bytes);
        assert_eq!(want_stats.bad, 1, "{want_stats:?}");
        assert!(want_stats.bad_records[0].reason.contains("line longer than"), "{want_stats:?}");
        let (stats, got, _) = pieces(Sourcetype::XmlWinEventLog, &bytes, 4096);
        assert_eq!(stats, want_stats);
        assert_eq!(got, want_rows);
    }

    #[test]
    fn event_starts() {
        assert!(xmlwineventlog::starts_event(b"<Event xmlns='x'>"));
        assert!(xmlwineventlog::starts_event(b"  \t<Event>\r\n"));
        assert!(xmlwineventlog::starts_event(b"\xef\xbb\xbf<Event\n"));
        assert!(!xmlwineventlog::starts_event(b"<EventData>"));
        assert!(!xmlwineventlog::starts_event(b"<EventID>1</EventID>"));
    }
}
