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

    /// The next line as (1-based line number, byte offset of its start, its bytes with the line
    /// end), or `None` at the end. `source` names the input in a read error.
    pub fn next_line(&mut self, source: &str) -> Result<Option<(i64, i64, &[u8])>, ConvertError> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| ConvertError::io(std::path::Path::new(source), e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let start = self.offset;
        self.offset += n as i64;
        Ok(Some((self.line, start, &self.buf)))
    }
}
