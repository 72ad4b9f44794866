//! JSON lines: one object per line. Blank lines are ignored; a line that is not a JSON object is a
//! bad record with its line number.

use std::io::BufRead;

use serde_json::{Map, Value};

use super::lines::{Line, Lines, Position};
use super::{BadRecord, ConvertError, Emitter};

/// Calls `f(object, line, byte offset, out)` for each object; counts each line as a record.
/// `at` is where the reader starts in the whole input (a line start).
pub fn for_each_object<R, F>(reader: R, source: &str, at: Position, out: &mut Emitter<'_>, mut f: F) -> Result<(), ConvertError>
where
    R: BufRead,
    F: FnMut(&Map<String, Value>, i64, i64, &mut Emitter<'_>) -> Result<(), ConvertError>,
{
    for_each_line(reader, source, at, out, |text, line, start, out| match serde_json::from_slice::<Value>(text) {
        Ok(Value::Object(obj)) => f(&obj, line, start, out),
        Ok(other) => out.bad(not_an_object(source, line, start, kind(&other))),
        Err(e) => out.bad(not_json(source, line, start, &e)),
    })
}

/// Calls `f(line's bytes, line, byte offset, out)` for each line that is not blank, trimmed, after
/// counting it as a record and keeping its bytes for the quarantine; a line too long to read is a
/// bad record, and `f` is not called for it. For a reader that parses the JSON its own way
/// ([`not_an_object`], [`not_json`] for its bad records).
pub fn for_each_line<R, F>(reader: R, source: &str, at: Position, out: &mut Emitter<'_>, mut f: F) -> Result<(), ConvertError>
where
    R: BufRead,
    F: FnMut(&[u8], i64, i64, &mut Emitter<'_>) -> Result<(), ConvertError>,
{
    let mut lines = Lines::starting_at(reader, at);
    while let Some(Line { number: line, offset: start, bytes, cut }) = lines.next_line(source)? {
        let text = trim(bytes);
        if text.is_empty() {
            continue;
        }
        out.record();
        out.raw(text);
        if cut {
            out.bad(too_long(source, line, start))?;
            continue;
        }
        f(text, line, start, out)?;
    }
    Ok(())
}

/// The bad record for a line holding a JSON value of `kind` ("array", "string", …), not an object.
pub(crate) fn not_an_object(source: &str, line: i64, offset: i64, kind: &str) -> BadRecord {
    BadRecord { source: source.to_string(), record: Some(line), offset: Some(offset), reason: format!("a JSON {kind} where an object was expected") }
}

/// The bad record for a line that is not JSON.
pub(crate) fn not_json(source: &str, line: i64, offset: i64, e: &serde_json::Error) -> BadRecord {
    BadRecord { source: source.to_string(), record: Some(line), offset: Some(offset), reason: format!("not JSON: {e}") }
}

/// The bad record for a line longer than [`super::lines::MAX_LINE_BYTES`].
pub(crate) fn too_long(source: &str, line: i64, offset: i64) -> BadRecord {
    BadRecord { source: source.to_string(), record: Some(line), offset: Some(offset), reason: super::lines::too_long() }
}

fn trim(b: &[u8]) -> &[u8] {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
