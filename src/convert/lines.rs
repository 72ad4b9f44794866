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

/// A line reader over a [`BufRead`]: any buffer size gives the same lines.
pub struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    line: i64,
    offset: i64,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Self {
        Self::starting_at(reader, Position::default())
    }

    /// A reader over a piece of a larger input that begins at `at` (line numbers and offsets
    /// then count from the start of the whole input).
    pub fn starting_at(reader: R, at: Position) -> Self {
        Lines { reader, buf: Vec::with_capacity(4096), line: at.lines_before, offset: at.offset }
    }

    /// The next line, or `None` at the end. A line longer than [`MAX_LINE_BYTES`] is read to
    /// its end but only its first [`MAX_LINE_BYTES`] are kept (`cut`), so memory stays bounded
    /// whatever the input. `source` names the input in a read error.
    pub fn next_line(&mut self, source: &str) -> Result<Option<Line<'_>>, ConvertError> {
        self.buf.clear();
        let io = |e| ConvertError::io(std::path::Path::new(source), e);
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
    use super::*;

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
