//! Splunk `XmlWinEventLog` text: `<Event>` records one per line or pretty-printed over several
//! lines, LF or CRLF, possibly mixed with plain-text `WinEventLog` records (a
//! `MM/DD/YYYY hh:mm:ss AM` line followed by `Key=Value` lines).
//!
//! The reader walks the input line by line ([`BufRead::read_until`], so any buffer size gives the
//! same result), assembles each `<Event>` … `</Event>` span, parses it ([`super::xml_event`]) and
//! maps it ([`super::sysmon`]). Plain-text records are counted as skipped; any other line outside
//! an event is a bad record reported with its line number.

use std::io::BufRead;

use super::xml_event::{self, WinEvent};
use super::{BadRecord, ConvertError, Emitter, sysmon};
use crate::cim::provenance::Provenance;

pub const SOURCETYPE: &str = "XmlWinEventLog";
/// Largest event accepted, in bytes; a larger one is a bad record.
pub const MAX_EVENT_BYTES: usize = 8 << 20;

/// Skip reason for plain-text WinEventLog records.
pub const PLAIN_TEXT_RECORD: &str = "plain-text WinEventLog record";

/// Whether the first bytes of a file look like this format.
pub fn looks_like(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    text.lines().any(|l| is_event_start(l.trim_start()) || is_text_record_start(l.trim_end()))
}

fn is_event_start(line: &str) -> bool {
    line.strip_prefix("<Event")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '>', '\t']))
}

/// `01/14/2021 11:41:39 PM`: the first line of a plain-text WinEventLog record.
fn is_text_record_start(line: &str) -> bool {
    let b = line.as_bytes();
    if b.len() != 22 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..2)
        && b[2] == b'/'
        && digits(3..5)
        && b[5] == b'/'
        && digits(6..10)
        && b[10] == b' '
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b' '
        && (&b[20..] == b"AM" || &b[20..] == b"PM")
}

enum State {
    Outside,
    InText,
    InEvent { line: i64, offset: i64, too_big: bool },
}

/// Converts a whole stream. `source` names the input in provenance and errors.
pub fn convert<R: BufRead>(
    mut reader: R,
    source: &str,
    out: &mut Emitter<'_>,
) -> Result<(), ConvertError> {
    let mut buf = Vec::with_capacity(4096);
    let mut event = String::new();
    let mut parsed = WinEvent::default();
    let mut state = State::Outside;
    let mut line_no: i64 = 0;
    let mut offset: i64 = 0;
    let bad = |line: i64, offset: i64, reason: String| BadRecord {
        source: source.to_string(),
        record: Some(line),
        offset: Some(offset),
        reason,
    };
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| ConvertError::io(std::path::Path::new(source), e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line_offset = offset;
        offset += n as i64;
        let mut bytes = &buf[..];
        while let [rest @ .., b'\n' | b'\r'] = bytes {
            bytes = rest;
        }
        let line = String::from_utf8_lossy(bytes);
        let trimmed = line.trim_start_matches(['\u{feff}', ' ', '\t']);

        if let State::InEvent { line: start, offset: start_off, too_big } = &mut state {
            if is_event_start(trimmed) {
                // A new event before the previous one closed: the previous one is truncated.
                out.record();
                out.bad(bad(*start, *start_off, "truncated event: a new <Event> began before </Event>".into()))?;
                state = State::Outside;
            } else {
                if !*too_big {
                    event.push('\n');
                    event.push_str(&line);
                    if event.len() > MAX_EVENT_BYTES {
                        *too_big = true;
                        event.clear();
                    }
                }
                if line.contains("</Event>") {
                    let (start, start_off, too_big) = (*start, *start_off, *too_big);
                    state = State::Outside;
                    finish_event(&event, too_big, source, start, start_off, &mut parsed, out)?;
                }
                continue;
            }
        }

        if is_event_start(trimmed) {
            event.clear();
            event.push_str(trimmed);
            if trimmed.contains("</Event>") {
                finish_event(&event, false, source, line_no, line_offset, &mut parsed, out)?;
            } else {
                state = State::InEvent { line: line_no, offset: line_offset, too_big: false };
            }
        } else if is_text_record_start(trimmed.trim_end()) {
            out.record();
            out.skip(PLAIN_TEXT_RECORD);
            state = State::InText;
        } else if matches!(state, State::InText) {
            // Continuation of a plain-text record.
        } else if trimmed.trim().is_empty() || trimmed.starts_with("<?xml") {
            // Blank lines and XML declarations carry nothing.
        } else {
            out.record();
            let mut shown: String = trimmed.chars().take(60).collect();
            if shown.len() < trimmed.len() {
                shown.push('…');
            }
            out.bad(bad(line_no, line_offset, format!("not an XML event or WinEventLog record: {shown:?}")))?;
        }
    }
    if let State::InEvent { line, offset, .. } = state {
        out.record();
        out.bad(bad(line, offset, "truncated event: end of file before </Event>".into()))?;
    }
    Ok(())
}

fn finish_event(
    xml: &str,
    too_big: bool,
    source: &str,
    line: i64,
    offset: i64,
    parsed: &mut WinEvent,
    out: &mut Emitter<'_>,
) -> Result<(), ConvertError> {
    out.record();
    let bad = |reason: String| BadRecord {
        source: source.to_string(),
        record: Some(line),
        offset: Some(offset),
        reason,
    };
    if too_big {
        return out.bad(bad(format!("event larger than {MAX_EVENT_BYTES} bytes")));
    }
    // Text after </Event> on the closing line is not part of the event.
    let end = xml.find("</Event>").map_or(xml.len(), |i| i + "</Event>".len());
    if let Err(reason) = xml_event::parse_into(&xml[..end], parsed) {
        return out.bad(bad(reason));
    }
    let prov = Provenance { source, sourcetype: SOURCETYPE, record: Some(line), offset: Some(offset) };
    sysmon::convert_event(parsed, prov, out)
}
