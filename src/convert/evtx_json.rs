//! evtx_dump JSON: Windows events as the `evtx` crate's `evtx_dump -o json` and `-o jsonl` write
//! them, and as Chainsaw and Hayabusa users export them:
//! `{"Event": {"#attributes": …, "System": …, "EventData": …}}`, pretty-printed documents one
//! after another (each may follow a `Record N` line) or one document per line.
//!
//! Each document is one record. Its `System` fields and `EventData` values become the same
//! [`WinEvent`] an EVTX record rendered as XML gives, and go through the same Sysmon mapping, so
//! an EVTX file and its evtx_dump JSON give the same rows. A document that is not JSON, has no
//! `Event`, or is cut short is a bad record with the line it starts on.

use std::borrow::Cow;
use std::io::BufRead;

use serde_json::{Map, Value};

use super::lines::{Line, Lines};
use super::xml_event::WinEvent;
use super::{BadRecord, ConvertError, Emitter, Unreadable};
use crate::cim::provenance::Provenance;

pub const SOURCETYPE: &str = "evtx:json";

/// The largest document read; beyond it the document is a bad record.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

/// The format.
pub struct EvtxJsonFormat;

impl super::format::Format for EvtxJsonFormat {
    fn sourcetype(&self) -> super::Sourcetype {
        super::Sourcetype::EvtxJson
    }

    /// The first document opens with `{` and its first key is `"Event"` (after blank lines and a
    /// `Record N` line).
    fn sniff(&self, head: &[u8]) -> bool {
        let text = String::from_utf8_lossy(head);
        let mut rest = text.trim_start_matches('\u{feff}').trim_start();
        if let Some(line_end) = rest.find('\n')
            && is_record_header(rest[..line_end].trim())
        {
            rest = rest[line_end..].trim_start();
        }
        rest.strip_prefix('{').is_some_and(|r| r.trim_start().starts_with("\"Event\""))
    }

    fn convert(&self, reader: &mut dyn BufRead, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        convert(reader, source, out)
    }
}

/// `Record 42`: the line `evtx_dump -o json` writes before each document.
fn is_record_header(line: &str) -> bool {
    line.strip_prefix("Record ").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Where a document's braces stand after some of its text.
#[derive(Default)]
struct Depth {
    depth: i64,
    in_string: bool,
    escaped: bool,
}

impl Depth {
    /// Follows `text`; true once the outermost object has closed.
    fn follow(&mut self, text: &str) -> bool {
        for b in text.bytes() {
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => self.depth -= 1,
                    _ => {}
                }
            }
        }
        self.depth <= 0
    }
}

/// Converts a stream of evtx_dump JSON documents.
pub fn convert<R: BufRead>(reader: R, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    let bad = |line: i64, offset: i64, reason: String| BadRecord { source: source.to_string(), record: Some(line), offset: Some(offset), reason };
    let mut lines = Lines::new(reader);
    let mut doc = String::new();
    let mut depth = Depth::default();
    // The line and offset the open document starts at.
    let mut start: Option<(i64, i64)> = None;
    // After a damaged document: lines are skipped until the next document starts.
    let mut resync = false;
    while let Some(Line { number, offset, bytes, cut }) = lines.next_line(source)? {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        if start.is_none() {
            let t = text.trim().trim_start_matches('\u{feff}');
            if t.is_empty() || is_record_header(t) {
                resync = false;
                continue;
            }
            if !t.starts_with('{') {
                if !resync {
                    out.record();
                    out.raw(t.as_bytes());
                    out.bad(bad(number, offset, "not an evtx_dump JSON document (it does not start with `{`)".into()))?;
                    resync = true;
                }
                continue;
            }
            resync = false;
            start = Some((number, offset));
        }
        let (line, at) = start.expect("a document is open");
        if cut || doc.len() + text.len() > MAX_DOCUMENT_BYTES {
            out.record();
            out.raw(doc.as_bytes());
            out.bad(bad(line, at, format!("document larger than {MAX_DOCUMENT_BYTES} bytes")))?;
            (doc, depth, start, resync) = (String::new(), Depth::default(), None, true);
            continue;
        }
        doc.push_str(text);
        doc.push('\n');
        if !depth.follow(text) {
            continue;
        }
        out.record();
        out.raw(doc.trim_end().as_bytes());
        let value = serde_json::from_str::<Value>(&doc);
        let mut ev = WinEvent::default();
        let read = match &value {
            Ok(v) => to_win_event(v, &mut ev),
            Err(e) => Err(Unreadable(format!("not JSON: {e}"))),
        };
        match read {
            Ok(()) => {
                let prov = Provenance { source, sourcetype: SOURCETYPE, record: Some(line), offset: Some(at) };
                super::windows::convert_event(&ev, prov, out)?;
            }
            Err(reason) => out.bad(bad(line, at, reason.0))?,
        }
        (doc, depth, start) = (String::new(), Depth::default(), None);
    }
    if let Some((line, at)) = start {
        out.record();
        out.raw(doc.trim_end().as_bytes());
        out.bad(bad(line, at, "truncated document: the input ends before its closing `}`".into()))?;
    }
    Ok(())
}

/// The text of a JSON value as the XML rendering of the same record has it: strings as they are,
/// numbers and booleans printed, null as empty, `{"#text": …}` as its text.
fn text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Object(o) if o.contains_key("#text") => text(&o["#text"]),
        other => Cow::Owned(other.to_string()),
    }
}

/// `obj[#attributes][name]`.
fn attribute<'a>(obj: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    obj?.get("#attributes")?.get(name)
}

/// Fills `ev` from one document.
fn to_win_event<'a>(doc: &'a Value, ev: &mut WinEvent<'a>) -> Result<(), Unreadable> {
    let event = doc.get("Event").and_then(Value::as_object).ok_or_else(|| Unreadable("no \"Event\" object".into()))?;
    let system = event.get("System").and_then(Value::as_object).ok_or_else(|| Unreadable("no \"Event.System\" object".into()))?;
    let some = |v: Option<&'a Value>| v.map(text).filter(|s| !s.is_empty());
    *ev = WinEvent {
        provider: some(attribute(system.get("Provider"), "Name")),
        event_id: some(system.get("EventID")),
        system_time: some(attribute(system.get("TimeCreated"), "SystemTime")),
        record_id: some(system.get("EventRecordID")),
        channel: some(system.get("Channel")),
        computer: some(system.get("Computer")),
        user_id: some(attribute(system.get("Security"), "UserID")),
        data: Vec::new(),
    };
    if let Some(Value::Object(data)) = event.get("EventData") {
        push_data(data, &mut ev.data);
    }
    Ok(())
}

/// `EventData`'s named values. Unnamed `Data` (a `{"Data": …}` object or array) is kept under the
/// name `Data`, as the XML rendering has no name for it either.
fn push_data<'a>(data: &'a Map<String, Value>, out: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>) {
    for (name, value) in data {
        if name == "#attributes" {
            continue;
        }
        out.push((Cow::Borrowed(name), text(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cim::Table;
    use crate::convert::VecSink;
    use crate::convert::format::Format;
    use crate::convert::test_util::row;

    const DOC: &str = r##"{
  "Event": {
    "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
    "System": {
      "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
      "EventID": 1,
      "TimeCreated": {"#attributes": {"SystemTime": "2025-12-10T04:33:20.562782Z"}},
      "EventRecordID": 18463,
      "Channel": "Microsoft-Windows-Sysmon/Operational",
      "Computer": "host-1",
      "Security": {"#attributes": {"UserID": "S-1-5-18"}}
    },
    "EventData": {
      "UtcTime": "2025-12-10 04:33:20.557",
      "ProcessGuid": "0197231E-F810-6938-B710-000000000800",
      "ProcessId": 7732,
      "Image": "C:\\Windows\\System32\\bitsadmin.exe",
      "CommandLine": "bitsadmin /transfer n \"{x}\" }",
      "User": "HOST\\user",
      "ParentProcessId": 9300,
      "ParentImage": "C:\\Windows\\System32\\cmd.exe"
    }
  }
}
"##;

    fn convert_str(s: &str) -> (VecSink, crate::convert::Stats) {
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink);
        convert(std::io::Cursor::new(s.as_bytes()), "t.json", &mut out).unwrap();
        let stats = out.finish().unwrap();
        (sink, stats)
    }

    #[test]
    fn pretty_documents_record_headers_and_lines() {
        let one_line = serde_json::to_string(&serde_json::from_str::<Value>(DOC).unwrap()).unwrap();
        let input = format!("Record 1\n{DOC}Record 2\n{DOC}\n{one_line}\n");
        let (sink, stats) = convert_str(&input);
        assert_eq!((stats.records, stats.bad), (3, 0), "{stats:?}");
        let p = sink.table(Table::Processes);
        assert_eq!(p.num_rows(), 3);
        let r = row(&p, 0);
        assert_eq!(r["process_id"], "7732");
        assert_eq!(r["process_name"], "bitsadmin.exe");
        assert_eq!(r["process"], "bitsadmin /transfer n \"{x}\" }");
        assert_eq!(r["parent_process_id"], "9300");
        assert_eq!(r["dest"], "host-1");
        assert_eq!(r["source_record"], "2");
        assert_eq!(row(&p, 1)["source_record"], "27");
        assert_eq!(row(&p, 2)["source_record"], "52");
        assert!(EvtxJsonFormat.sniff(input.as_bytes()));
        assert!(EvtxJsonFormat.sniff(one_line.as_bytes()));
        assert!(!EvtxJsonFormat.sniff(br#"{"winlog": {"event_id": 1}}"#));
    }

    #[test]
    fn damaged_documents_are_bad_records_and_the_next_is_read() {
        let cut = &DOC[..DOC.len() / 2];
        let input = format!("{DOC}garbage\nmore garbage\n{{\"NotEvent\": 1}}\n{{\"Event\": {{\"EventData\": {{}}}}}}\n{DOC}{cut}");
        let (sink, stats) = convert_str(&input);
        assert_eq!(sink.table(Table::Processes).num_rows(), 2);
        assert_eq!(stats.records, 6, "{stats:?}");
        assert_eq!(stats.bad, 4, "{stats:?}");
        let reasons: Vec<&str> = stats.bad_records.iter().map(|b| b.reason.as_str()).collect();
        assert!(reasons[0].starts_with("not an evtx_dump JSON document"), "{reasons:?}");
        assert_eq!(stats.bad_records[0].record, Some(25));
        assert!(reasons[1].contains("no \"Event\" object"), "{reasons:?}");
        assert!(reasons[2].contains("no \"Event.System\" object"), "{reasons:?}");
        assert!(reasons[3].starts_with("truncated document"), "{reasons:?}");
    }
}
