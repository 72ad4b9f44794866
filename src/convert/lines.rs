//! Reading text inputs line by line, keeping each line's number and byte offset for provenance
//! and error locations. The text converters share this loop.

use std::io::BufRead;

use super::ConvertError;

/// Where a piece of an input starts: the lines before it and its byte offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub lines_before: i64,
    pub offset: i64,
}

/// A line reader over a [`BufRead`]: any buffer size gives the same lines. A line that lies
/// whole in the reader's buffer is lent from there; only a line across buffer refills is copied.
pub struct Lines<R: BufRead> {
    reader: R,
    buf: Vec<u8>,
    line: i64,
    offset: i64,
    /// Bytes of the reader's buffer lent as the last line, consumed at the next call.
    lent: usize,
}

/// The last line lent is consumed, so the reader goes on after it.
impl<R: BufRead> Drop for Lines<R> {
    fn drop(&mut self) {
        self.reader.consume(std::mem::take(&mut self.lent));
    }
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Self {
        Self::starting_at(reader, Position::default())
    }

    /// A reader over a piece of a larger input that begins at `at` (line numbers and offsets
    /// then count from the start of the whole input).
    pub fn starting_at(reader: R, at: Position) -> Self {
        Lines { reader, buf: Vec::with_capacity(4096), line: at.lines_before, offset: at.offset, lent: 0 }
    }

    /// The next line, or `None` at the end. A line longer than [`MAX_LINE_BYTES`] is read to
    /// its end but only its first [`MAX_LINE_BYTES`] are kept (`cut`), so memory stays bounded
    /// whatever the input. `source` names the input in a read error.
    pub fn next_line(&mut self, source: &str) -> Result<Option<Line<'_>>, ConvertError> {
        self.reader.consume(std::mem::take(&mut self.lent));
        self.buf.clear();
        let io = |e| ConvertError::io(std::path::Path::new(source), e);
        // The whole line in the reader's buffer: lent, not copied.
        let whole = loop {
            match self.reader.fill_buf() {
                Ok(chunk) => break memchr::memchr(b'\n', chunk).map(|i| i + 1).filter(|n| *n <= MAX_LINE_BYTES),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            }
        };
        if let Some(n) = whole {
            self.lent = n;
            self.line += 1;
            let start = self.offset;
            self.offset += n as i64;
            // The buffer holds the line still: `fill_buf` returns it without reading.
            let bytes = &self.reader.fill_buf().map_err(io)?[..n];
            return Ok(Some(Line { number: self.line, offset: start, bytes, cut: false }));
        }
        let mut n = 0usize;
        let mut cut = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            if chunk.is_empty() {
                break;
            }
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.buf.len());
            if take > room {
                cut = true;
            }
            self.buf.extend_from_slice(&chunk[..take.min(room)]);
            self.reader.consume(take);
            n += take;
            if done {
                break;
            }
        }
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let start = self.offset;
        self.offset += n as i64;
        Ok(Some(Line { number: self.line, offset: start, bytes: &self.buf, cut }))
    }
}

/// Longest line kept whole, in bytes; a longer one is a bad record.
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// The reason given for a line longer than [`MAX_LINE_BYTES`].
pub fn too_long() -> String {
    format!("line longer than {MAX_LINE_BYTES} bytes")
}

/// One line of a text input.
#[derive(Debug)]
pub struct Line<'a> {
    /// 1-based.
    pub number: i64,
    /// Byte offset of its start.
    pub offset: i64,
    /// Its bytes with the line end (the first [`MAX_LINE_BYTES`] if `cut`).
    pub bytes: &'a [u8],
    /// Longer than [`MAX_LINE_BYTES`]: the rest was skipped.
    pub cut: bool,
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn any_buffer_gives_the_same_lines_and_the_reader_goes_on_after_the_last_one() {
        let input = b"first\r\nsecond line\n\nfourth, long enough to cross a small buffer\nlast without end";
        let all = |cap: usize| {
            let mut lines = Lines::new(std::io::BufReader::with_capacity(cap, &input[..]));
            let mut got = Vec::new();
            while let Some(l) = lines.next_line("in").unwrap() {
                got.push((l.number, l.offset, l.bytes.to_vec(), l.cut));
            }
            got
        };
        let want = all(1 << 16);
        assert_eq!(want.len(), 5);
        assert_eq!((want[1].1, &want[1].2[..]), (7, &b"second line\n"[..]));
        for cap in [1, 2, 7, 16, 40] {
            assert_eq!(all(cap), want, "buffer of {cap}");
        }
        // Two lines read, then the reader is used on its own: it starts at the third line.
        let mut reader = std::io::BufReader::with_capacity(64, &input[..]);
        {
            let mut lines = Lines::new(&mut reader);
            lines.next_line("in").unwrap();
            assert_eq!(lines.next_line("in").unwrap().unwrap().bytes, b"second line\n");
        }
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert!(rest.starts_with("\nfourth"), "{rest:?}");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_cut_and_the_next_line_read_whole() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\nnext\n");
        let mut lines = Lines::new(std::io::BufReader::with_capacity(4096, &input[..]));
        let first = lines.next_line("in").unwrap().unwrap();
        assert!(first.cut);
        assert_eq!((first.number, first.offset, first.bytes.len()), (1, 0, MAX_LINE_BYTES));
        let second = lines.next_line("in").unwrap().unwrap();
        assert_eq!((second.number, second.offset, second.bytes, second.cut), (2, MAX_LINE_BYTES as i64 + 11, &b"next\n"[..], false));
        assert!(lines.next_line("in").unwrap().is_none());
    }
}
