//! Splunk `XmlWinEventLog` text: `<Event>` records one per line or pretty-printed over several
//! lines, LF or CRLF, possibly mixed with plain-text `WinEventLog` records (a
//! `MM/DD/YYYY hh:mm:ss AM` line followed by `Key=Value` lines).
//!
//! The reader walks the input line by line ([`BufRead::read_until`], so any buffer size gives the
//! same result), assembles each `<Event>` … `</Event>` span, parses it ([`super::xml_event`]) and
//! maps it ([`super::windows`]). Plain-text records are counted as skipped; any other line outside
//! an event is a bad record reported with its line number.

use std::io::BufRead;

use super::lines::Position;
use super::xml_event::{self, WinEvent};
use super::{BadRecord, ConvertError, Emitter};
use crate::cim::provenance::Provenance;

pub const SOURCETYPE: &str = "XmlWinEventLog";

/// The format: `<Event>` records, one per line or pretty-printed, possibly among plain-text
/// WinEventLog records; split at lines that open an `<Event>`.
pub struct XmlWinEventLogFormat;

impl super::format::Format for XmlWinEventLogFormat {
    fn sourcetype(&self) -> super::Sourcetype {
        super::Sourcetype::XmlWinEventLog
    }

    fn sniff(&self, head: &[u8]) -> bool {
        super::format::first_line(head).is_some_and(|l| !l.starts_with('{')) && looks_like(head)
    }

    fn convert(&self, reader: &mut dyn BufRead, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        convert(reader, source, out)
    }

    fn splittable(&self) -> bool {
        true
    }

    fn starts_record(&self, line: &[u8]) -> bool {
        starts_event(line)
    }

    fn convert_part(&self, reader: &mut dyn BufRead, source: &str, at: Position, more_follows: bool, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        convert_part(reader, source, at, more_follows, out)
    }
}
/// Largest event accepted, in bytes; a larger one is a bad record.
pub const MAX_EVENT_BYTES: usize = 8 << 20;

const TRUNCATED_BY_NEXT: &str = "truncated event: a new <Event> began before </Event>";

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
pub fn convert<R: BufRead>(reader: R, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    convert_part(reader, source, Position::default(), false, out)
}

/// Whether a line (with or without its line end) opens an `<Event>`: the places where an input
/// may be split ([`super::split`]).
pub fn starts_event(line: &[u8]) -> bool {
    let mut b = line;
    loop {
        b = match b {
            [b' ' | b'\t', rest @ ..] => rest,
            [0xef, 0xbb, 0xbf, rest @ ..] => rest,
            _ => break,
        };
    }
    matches!(b.strip_prefix(b"<Event"), Some([] | [b' ' | b'>' | b'\t' | b'\r' | b'\n', ..]))
}

/// Converts a piece of a stream that begins at `at` (on a line that opens an event, or at the
/// start). `more_follows`: the piece ends where the next event begins, so an event left open at
/// its end was cut short by that next event, exactly as if the input had been read whole.
pub fn convert_part<R: BufRead>(
    reader: R,
    source: &str,
    at: Position,
    more_follows: bool,
    out: &mut Emitter<'_>,
) -> Result<(), ConvertError> {
    let mut lines = super::lines::Lines::starting_at(reader, at);
    let mut event = String::new();
    let mut state = State::Outside;
    let bad = |line: i64, offset: i64, reason: String| BadRecord {
        source: source.to_string(),
        record: Some(line),
        offset: Some(offset),
        reason,
    };
    while let Some(super::lines::Line { number: line_no, offset: line_offset, mut bytes, cut }) = lines.next_line(source)? {
        if cut {
            // A line longer than any event: the event it is part of, or the line, is bad.
            out.record();
            let (at, off) = match state {
                State::InEvent { line, offset, .. } => {
                    out.raw(event.as_bytes());
                    (line, offset)
                }
                _ => {
                    out.raw(bytes);
                    (line_no, line_offset)
                }
            };
            out.bad(bad(at, off, super::lines::too_long()))?;
            state = State::Outside;
            continue;
        }
        while let [rest @ .., b'\n' | b'\r'] = bytes {
            bytes = rest;
        }
        // A new event before the previous one closed: the previous one is truncated. Decided
        // before the line's own bytes are checked, so a damaged line that opens an event is a
        // record of its own, as it is when an input is split there (found by fuzzing).
        if let State::InEvent { line: start, offset: start_off, .. } = state
            && starts_event(bytes)
        {
            out.record();
            out.raw(event.as_bytes());
            out.bad(bad(start, start_off, TRUNCATED_BY_NEXT.into()))?;
            state = State::Outside;
        }
        let line = match std::str::from_utf8(bytes) {
            Ok(line) => line,
            // Continuation lines of a plain-text record are not read.
            Err(_) if matches!(state, State::InText) => continue,
            Err(e) => {
                // Windows writes events as UTF-16; bytes that are not UTF-8 here are damage.
                out.record();
                let (at, off) = match state {
                    State::InEvent { line, offset, .. } => {
                        let mut raw = std::mem::take(&mut event).into_bytes();
                        raw.push(b'\n');
                        raw.extend_from_slice(bytes);
                        out.raw(&raw);
                        (line, offset)
                    }
                    _ => {
                        out.raw(bytes);
                        (line_no, line_offset)
                    }
                };
                out.bad(bad(at, off, format!("invalid UTF-8 at byte {} of line {line_no}", e.valid_up_to())))?;
                state = State::Outside;
                continue;
            }
        };
        let trimmed = line.trim_start_matches(['\u{feff}', ' ', '\t']);

        if let State::InEvent { line: start, offset: start_off, too_big } = &mut state {
            if !*too_big {
                event.push('\n');
                event.push_str(line);
                if event.len() > MAX_EVENT_BYTES {
                    *too_big = true;
                    event.clear();
                }
            }
            if let Some(at) = find_end(line) {
                let (start, start_off, too_big) = (*start, *start_off, *too_big);
                state = State::Outside;
                // The event ends on this line, the last of `event`; text after it is not part of it.
                let end = if too_big { event.len() } else { event.len() - line.len() + at };
                finish_event(&event, end, too_big, source, start, start_off, out)?;
            }
            continue;
        }

        if is_event_start(trimmed) {
            // One or more events on this line; the last may go on over the next lines.
            let mut rest: &str = trimmed;
            loop {
                match find_end(rest) {
                    Some(end) => {
                        finish_event(&rest[..end], end, false, source, line_no, line_offset, out)?;
                        rest = rest[end..].trim();
                        if rest.is_empty() {
                            break;
                        }
                        if !is_event_start(rest) {
                            out.record();
                            out.raw(rest.as_bytes());
                            let shown: String = rest.chars().take(60).collect();
                            out.bad(bad(line_no, line_offset, format!("text after </Event>: {shown:?}")))?;
                            break;
                        }
                    }
                    None => {
                        event.clear();
                        event.push_str(rest);
                        state = State::InEvent { line: line_no, offset: line_offset, too_big: false };
                        break;
                    }
                }
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
            out.raw(line.as_bytes());
            let mut shown: String = trimmed.chars().take(60).collect();
            if shown.len() < trimmed.len() {
                shown.push('…');
            }
            out.bad(bad(line_no, line_offset, format!("not an XML event or WinEventLog record: {shown:?}")))?;
        }
    }
    if let State::InEvent { line, offset, .. } = state {
        out.record();
        out.raw(event.as_bytes());
        let reason = if more_follows { TRUNCATED_BY_NEXT } else { "truncated event: end of file before </Event>" };
        out.bad(bad(line, offset, reason.into()))?;
    }
    Ok(())
}

/// Where the first `</Event>` in `text` ends.
fn find_end(text: &str) -> Option<usize> {
    static END: std::sync::LazyLock<memchr::memmem::Finder<'static>> = std::sync::LazyLock::new(|| memchr::memmem::Finder::new(END_TAG));
    END.find(text.as_bytes()).map(|i| i + END_TAG.len())
}

const END_TAG: &str = "</Event>";

/// One event: `raw` as read, the event itself `raw[..end]` (text after `</Event>` on its last
/// line is not part of it).
fn finish_event(
    raw: &str,
    end: usize,
    too_big: bool,
    source: &str,
    line: i64,
    offset: i64,
    out: &mut Emitter<'_>,
) -> Result<(), ConvertError> {
    out.record();
    out.raw(raw.as_bytes());
    let bad = |reason: String| BadRecord {
        source: source.to_string(),
        record: Some(line),
        offset: Some(offset),
        reason,
    };
    if too_big {
        return out.bad(bad(format!("event larger than {MAX_EVENT_BYTES} bytes")));
    }
    let mut parsed = WinEvent::default();
    if let Err(reason) = xml_event::parse_into(&raw[..end], &mut parsed) {
        return out.bad(bad(reason.0));
    }
    let prov = Provenance { source, sourcetype: SOURCETYPE, record: Some(line), offset: Some(offset) };
    super::windows::convert_event(&parsed, prov, out)
}

#[cfg(test)]
mod tests {
    use std::io::BufReader;

    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::cim::Table;
    use crate::convert::test_util::{expect, row, sample};
    use crate::convert::{Stats, VecSink};

    fn data(name: &str) -> std::path::PathBuf {
        sample("sysmon", name)
    }

    fn convert_bytes(bytes: &[u8], batch_size: usize, buffer: usize) -> (VecSink, Stats) {
        let mut sink = VecSink::default();
        let stats = {
            let mut out = Emitter::new(&mut sink).with_batch_size(batch_size);
            convert(BufReader::with_capacity(buffer, bytes), "test.log", &mut out).unwrap();
            out.finish().unwrap()
        };
        (sink, stats)
    }

    #[test]
    fn every_field_of_a_real_eid1_and_eid3() {
        let bytes = std::fs::read(data("security_content_example_events.log")).unwrap();
        let (sink, stats) = convert_bytes(&bytes, DEFAULT_BATCH_SIZE_FOR_TESTS, 8192);
        assert_eq!(stats.records, 2);
        let p = sink.table(Table::Processes);
        assert_eq!(p.num_rows(), 1);
        expect(&row(&p, 0), &[
            ("_time", "2020-10-08T11:03:46.617920Z"),
            ("action", "allowed"),
            ("dest", "win-dc-6764986.attackrange.local"),
            ("original_file_name", "Cmd.Exe"),
            ("parent_process", "\"powershell.exe\" -noninteractive -encodedcommand WwBDAG8AbgBzAG8AbABlAF0AOgA6AEkAbgBwAHUAdABFAG4AYwBvAGQAaQBuAGcAIAA9ACAATgBlAHcALQBPAGIAagBlAGMAdAAgAFQAZQB4AHQALgBVAFQARgA4AEUAbgBjAG8AZABpAG4AZwAgACQAZgBhAGwAcwBlADsAIABJAG0AcABvAHIAdAAtAE0AbwBkAHUAbABlACAAIgBDADoAXABBAHQAbwBtAGkAYwBSAGUAZABUAGUAYQBtAFwAaQBuAHYAbwBrAGUALQBhAHQAbwBtAGkAYwByAGUAZAB0AGUAYQBtAFwASQBuAHYAbwBrAGUALQBBAHQAbwBtAGkAYwBSAGUAZABUAGUAYQBtAC4AcABzAGQAMQAiACAALQBGAG8AcgBjAGUACgBJAG4AdgBvAGsAZQAtAEEAdABvAG0AaQBjAFQAZQBzAHQAIAAiAFQAMQAwADAAMwAuADAAMAAyACIAIAAtAEMAbwBuAGYAaQByAG0AOgAkAGYAYQBsAHMAZQAgAC0AVABpAG0AZQBvAHUAdABTAGUAYwBvAG4AZABzACAAMwAwADAAIAAtAEUAeABlAGMAdQB0AGkAbwBuAEwAbwBnAFAAYQB0AGgAIABDADoAXABBAHQAbwBtAGkAYwBSAGUAZABUAGUAYQBtAFwAYQB0AGMAXwBlAHgAZQBjAHUAdABpAG8AbgAuAGMAcwB2AA=="),
            ("parent_process_exec", "powershell.exe"),
            ("parent_process_guid", "{96128EA2-F211-5F7E-DF00-000000007F01}"),
            ("parent_process_id", "4624"),
            ("parent_process_name", "powershell.exe"),
            ("parent_process_path", r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"),
            // `&amp;` decoded.
            ("process", r#""C:\Windows\system32\cmd.exe" /c "reg save HKLM\sam %%temp%%\sam & reg save HKLM\system %%temp%%\system & reg save HKLM\security %%temp%%\security" "#),
            ("process_exec", "cmd.exe"),
            ("process_guid", "{96128EA2-F212-5F7E-E400-000000007F01}"),
            ("process_hash", "MD5=F4F684066175B77E0C3A000549D2922C,SHA256=935C1861DF1F4018D698E8B65ABFA02D7E9037D8F68CA3C2065B6CA165D44AD2,IMPHASH=3062ED732D4B25D1C64F084DAC97D37A"),
            ("process_id", "2296"),
            ("process_integrity_level", "High"),
            ("process_current_directory", r"C:\Users\ADMINI~1\AppData\Local\Temp\"),
            ("process_name", "cmd.exe"),
            ("process_path", r"C:\Windows\System32\cmd.exe"),
            ("user", r"ATTACKRANGE\Administrator"),
            ("user_id", "S-1-5-18"),
            ("vendor_product", "Microsoft Sysmon"),
            ("source", "test.log"),
            ("sourcetype", "XmlWinEventLog"),
            ("source_record", "1"),
            ("source_offset", "0"),
            ("process_file_version", "10.0.14393.0 (rs1_release.160715-1616)"),
            ("process_description", "Windows Command Processor"),
            ("process_product", "Microsoft® Windows® Operating System"),
            ("process_company", "Microsoft Corporation"),
            ("process_md5", "F4F684066175B77E0C3A000549D2922C"),
            ("process_sha1", "NULL"),
            ("process_sha256", "935C1861DF1F4018D698E8B65ABFA02D7E9037D8F68CA3C2065B6CA165D44AD2"),
            ("process_imphash", "3062ED732D4B25D1C64F084DAC97D37A"),
            ("logon_id", "0x8d4ac"),
            ("logon_guid", "{96128EA2-F210-5F7E-ACD4-080000000000}"),
            ("terminal_session_id", "0"),
            ("parent_user", "NULL"),
            ("rule_name", "NULL"),
        ]);
        let first_line_len = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
        let t = sink.table(Table::AllTraffic);
        assert_eq!(t.num_rows(), 1);
        expect(&row(&t, 0), &[
            ("_time", "2022-09-15T12:56:22.958249Z"),
            ("action", "allowed"),
            ("app", r"C:\Temp\agent_tesla-deob.exe"),
            ("bytes", "NULL"),
            ("bytes_in", "NULL"),
            ("bytes_out", "NULL"),
            ("dest", "youssef5.genious.net"),
            ("dest_ip", "41.77.117.236"),
            ("dest_port", "21"),
            ("dvc", "win-dc-ctus-attack-range-403.attackrange.local"),
            ("direction", "outbound"),
            ("protocol", "ip"),
            ("protocol_version", "4"),
            ("src", "win-dc-ctus-attack-range-403.attackrange.local"),
            ("src_ip", "10.0.1.14"),
            ("src_port", "61722"),
            ("transport", "tcp"),
            ("user", r"ATTACKRANGE\Administrator"),
            ("vendor_product", "Microsoft Sysmon"),
            ("process_id", "5728"),
            ("process_guid", "{6820D070-1F1B-6323-E113-000000007402}"),
            ("process_name", "agent_tesla-deob.exe"),
            ("process_path", r"C:\Temp\agent_tesla-deob.exe"),
            ("dest_hostname", "youssef5.genious.net"),
            ("source", "test.log"),
            ("sourcetype", "XmlWinEventLog"),
            ("source_record", "2"),
            ("source_offset", &first_line_len.to_string()),
            ("initiated", "true"),
            ("src_hostname", "win-dc-ctus-attack-range-403.attackrange.local"),
            ("src_is_ipv6", "false"),
            ("dest_is_ipv6", "false"),
            ("src_port_name", "NULL"),
            ("dest_port_name", "ftp"),
            ("rule_name", "NULL"),
        ]);
    }

    const DEFAULT_BATCH_SIZE_FOR_TESTS: usize = crate::convert::DEFAULT_BATCH_SIZE;

    /// Every table's rows, concatenated, for comparing runs.
    fn tables(sink: &VecSink) -> Vec<RecordBatch> {
        Table::ALL.iter().map(|t| sink.table(*t)).collect()
    }

    #[test]
    fn identical_at_any_batch_size_and_read_buffer() {
        for file in ["t1218_007_msiexec_sysmon.log", "certutil_exe_certificate_extraction.raw"] {
            let bytes = std::fs::read(data(file)).unwrap();
            let (base, base_stats) = convert_bytes(&bytes, DEFAULT_BATCH_SIZE_FOR_TESTS, 1 << 16);
            assert!(base_stats.rows.values().sum::<u64>() > 0, "{file}: no rows");
            for batch_size in [1, 3, DEFAULT_BATCH_SIZE_FOR_TESTS] {
                for buffer in [1, 3, 5, 8192] {
                    let (sink, stats) = convert_bytes(&bytes, batch_size, buffer);
                    assert_eq!(stats, base_stats, "{file}: stats at batch {batch_size}, buffer {buffer}");
                    assert_eq!(tables(&sink), tables(&base), "{file}: rows at batch {batch_size}, buffer {buffer}");
                    if batch_size == 1 {
                        assert!(sink.batches.iter().all(|(_, b)| b.num_rows() == 1));
                    }
                }
            }
        }
    }

    #[test]
    fn crlf_and_lf_give_the_same_rows() {
        let lf = std::fs::read(data("t1218_007_msiexec_sysmon.log")).unwrap();
        let text = String::from_utf8(lf.clone()).unwrap().replace("\r\n", "\n");
        let crlf = text.replace('\n', "\r\n");
        let (a, sa) = convert_bytes(text.as_bytes(), 8192, 8192);
        let (b, sb) = convert_bytes(crlf.as_bytes(), 8192, 8192);
        assert_eq!(sa.rows, sb.rows);
        assert_eq!(sa.skipped, sb.skipped);
        let strip = |s: &VecSink| -> Vec<RecordBatch> {
            // Offsets differ (CR bytes); compare everything else.
            tables(s).into_iter().map(|b| b.project(&(0..b.num_columns() - 1).collect::<Vec<_>>()).unwrap()).collect()
        };
        assert_eq!(strip(&a), strip(&b));
    }

    #[test]
    fn garbage_between_events_is_reported_with_its_line() {
        let good = std::fs::read_to_string(data("security_content_example_events.log")).unwrap();
        let mut lines: Vec<&str> = good.lines().collect();
        lines.insert(1, "this line is junk");
        lines.insert(2, "<Event xmlns='x'><System><EventID>1</Event>");
        lines.push("<Event xmlns='x'><System>");
        let input = lines.join("\n");
        let (sink, stats) = convert_bytes(input.as_bytes(), 8192, 8192);
        assert_eq!(sink.table(Table::Processes).num_rows(), 1);
        assert_eq!(sink.table(Table::AllTraffic).num_rows(), 1);
        assert_eq!(stats.bad, 3);
        let where_: Vec<_> = stats.bad_records.iter().map(|b| (b.record, b.reason.clone())).collect();
        assert_eq!(where_[0].0, Some(2));
        assert!(where_[0].1.contains("this line is junk"));
        assert_eq!(where_[1].0, Some(3));
        assert!(where_[1].1.contains("malformed XML"), "{}", where_[1].1);
        assert_eq!(where_[2].0, Some(5));
        assert!(where_[2].1.contains("end of file"));
        assert_eq!(stats.bad_records[0].to_string(), format!("test.log:2: {}", where_[0].1));
    }

    #[test]
    fn several_events_on_one_line_are_all_read() {
        let good = std::fs::read_to_string(data("security_content_example_events.log")).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let input = format!("{} {}\n{} trailing junk\n", lines[0], lines[1], lines[0]);
        let (sink, stats) = convert_bytes(input.as_bytes(), 8192, 8192);
        assert_eq!(sink.table(Table::Processes).num_rows(), 2);
        assert_eq!(sink.table(Table::AllTraffic).num_rows(), 1);
        assert_eq!(stats.bad, 1);
        assert!(stats.bad_records[0].reason.contains("text after </Event>"));
        assert_eq!(stats.bad_records[0].record, Some(2));
    }

    #[test]
    fn strict_mode_stops_at_the_first_bad_record() {
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink).with_strict(true);
        let err = convert(BufReader::new(&b"junk\n"[..]), "x.log", &mut out).unwrap_err();
        assert!(err.to_string().contains("x.log:1:"), "{err}");
    }

    #[test]
    fn recognises_its_format() {
        assert!(looks_like(b"<Event xmlns='x'>"));
        assert!(looks_like(b"01/14/2021 11:41:39 PM\r\nLogName=Security"));
        assert!(!looks_like(b"{\"EventID\": 1}"));
        assert!(!looks_like(b""));
    }
}
