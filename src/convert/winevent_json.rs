//! Windows events as JSON lines, three layouts, all mapped onto the same [`WinEvent`] as XML so the
//! Sysmon mapping is shared:
//!
//! * **flattened** (NXLog `im_msvistalog`, often shipped by Logstash; the OTRF Security-Datasets):
//!   `EventID`, `SourceName`, `Channel`, `Hostname`, `RecordNumber`, `UserID` and the event's data
//!   fields at the top level. The time is Sysmon's own `UtcTime` (NXLog's `EventTime` is local time
//!   without a zone, and `@timestamp` is when Logstash received the record), else `@timestamp`.
//! * **Winlogbeat 6**: `event_id`, `source_name`, `log_name`, `computer_name`, `record_number`,
//!   `user.identifier`, data under `event_data`, time in `@timestamp`.
//! * **Winlogbeat 7+** (ECS): the same under `winlog.*` (`winlog.provider_name`, `winlog.channel`,
//!   `winlog.event_data`, …), time in `@timestamp`.
//!
//! A collector's own fields never become event data: data names are Sysmon's, case-sensitive, so
//! NXLog's `ProcessID` / `ExecutionProcessID` and Winlogbeat's `process_id` (the pid of the process
//! that wrote the event) are never read as Sysmon's `ProcessId`.

use std::borrow::Cow;
use std::io::BufRead;

use serde_json::{Map, Value};

use super::lines::Position;
use super::xml_event::WinEvent;
use super::{BadRecord, ConvertError, Emitter, Unreadable};
use crate::cim::provenance::Provenance;

pub const SOURCETYPE: &str = "WinEventLog:json";

/// The format: one JSON object per line (NXLog, Winlogbeat 6, Winlogbeat 7+); any line starts a
/// record, so it splits anywhere between lines.
pub struct WinEventJsonFormat;

impl super::format::Format for WinEventJsonFormat {
    fn sourcetype(&self) -> super::Sourcetype {
        super::Sourcetype::WinEventJson
    }

    fn sniff(&self, head: &[u8]) -> bool {
        let Some(first) = super::format::first_line(head).filter(|l| l.starts_with('{')) else { return false };
        match serde_json::from_str::<Map<String, Value>>(&first) {
            Ok(o) => layout(&o).is_some(),
            // A first line longer than the sniffed bytes: judge by the keys seen.
            Err(_) => ["\"EventID\"", "\"event_id\"", "\"winlog\"", "\"event_data\""].iter().any(|k| first.contains(k)),
        }
    }

    fn convert(&self, reader: &mut dyn BufRead, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        convert(reader, source, out)
    }

    fn splittable(&self) -> bool {
        true
    }

    fn convert_part(&self, reader: &mut dyn BufRead, source: &str, at: Position, _more_follows: bool, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        convert_part(reader, source, at, out)
    }
}

/// Which layout a JSON object has, if it is a Windows event at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Flattened,
    Winlogbeat6,
    WinlogbeatEcs,
}

pub fn layout(obj: &Map<String, Value>) -> Option<Layout> {
    if obj.get("winlog").is_some_and(Value::is_object) {
        Some(Layout::WinlogbeatEcs)
    } else if obj.contains_key("event_data") || (obj.contains_key("event_id") && obj.contains_key("computer_name")) {
        Some(Layout::Winlogbeat6)
    } else if obj.contains_key("EventID") && (obj.contains_key("Channel") || obj.contains_key("SourceName") || obj.contains_key("Hostname")) {
        Some(Layout::Flattened)
    } else {
        None
    }
}

/// A JSON value as event text: strings as they are, numbers and booleans printed, others none.
fn text(v: Option<&Value>) -> Option<Cow<'_, str>> {
    match v? {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

fn path<'a>(obj: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    let (last, parents) = keys.split_last()?;
    let mut cur = obj;
    for k in parents {
        cur = cur.get(*k)?.as_object()?;
    }
    cur.get(*last)
}

fn data_from<'a>(map: Option<&'a Value>, ev: &mut WinEvent<'a>) {
    if let Some(Value::Object(m)) = map {
        for (k, v) in m {
            if let Some(t) = text(Some(v)) {
                ev.data.push((Cow::Borrowed(k), t));
            }
        }
    }
}

/// Top-level keys of the flattened layout that belong to the collector or to `System`, never to
/// the event's data.
const FLATTENED_META: &[&str] = &[
    "EventID", "SourceName", "ProviderGuid", "Channel", "Hostname", "RecordNumber", "UserID",
    "EventTime", "EventReceivedTime", "@timestamp", "@version", "ExecutionProcessID", "ProcessID",
    "ThreadID", "Keywords", "SeverityValue", "Severity", "EventType", "Opcode", "OpcodeValue",
    "Task", "Version", "SourceModuleName", "SourceModuleType", "host", "port", "AccountName",
    "AccountType", "Domain", "Category", "Message", "tags",
];

/// Fills `ev` from one JSON object.
pub fn to_win_event<'a>(obj: &'a Map<String, Value>, ev: &mut WinEvent<'a>) -> Result<Layout, Unreadable> {
    *ev = WinEvent::default();
    let layout = layout(obj).ok_or_else(|| {
        let keys: Vec<&str> = obj.keys().take(8).map(String::as_str).collect();
        format!("JSON object is not a Windows event (keys: {})", keys.join(", "))
    })?;
    match layout {
        Layout::WinlogbeatEcs => {
            let w = |k: &[&str]| {
                let mut full = vec!["winlog"];
                full.extend_from_slice(k);
                text(path(obj, &full))
            };
            ev.provider = w(&["provider_name"]);
            ev.event_id = w(&["event_id"]).or_else(|| text(path(obj, &["event", "code"])));
            ev.channel = w(&["channel"]);
            ev.computer = w(&["computer_name"]);
            ev.record_id = w(&["record_id"]);
            ev.user_id = w(&["user", "identifier"]);
            ev.system_time = text(obj.get("@timestamp"));
            data_from(path(obj, &["winlog", "event_data"]), ev);
        }
        Layout::Winlogbeat6 => {
            ev.provider = text(obj.get("source_name"));
            ev.event_id = text(obj.get("event_id"));
            ev.channel = text(obj.get("log_name"));
            ev.computer = text(obj.get("computer_name"));
            ev.record_id = text(obj.get("record_number"));
            ev.user_id = text(path(obj, &["user", "identifier"]));
            ev.system_time = text(obj.get("@timestamp"));
            data_from(obj.get("event_data"), ev);
        }
        Layout::Flattened => {
            ev.provider = text(obj.get("SourceName"));
            ev.event_id = text(obj.get("EventID"));
            ev.channel = text(obj.get("Channel"));
            ev.computer = text(obj.get("Hostname"));
            ev.record_id = text(obj.get("RecordNumber"));
            ev.user_id = text(obj.get("UserID"));
            ev.system_time = text(obj.get("UtcTime")).or_else(|| text(obj.get("@timestamp")));
            for (k, v) in obj {
                if !FLATTENED_META.contains(&k.as_str()) {
                    if let Some(t) = text(Some(v)) {
                        ev.data.push((Cow::Borrowed(k), t));
                    }
                }
            }
        }
    }
    Ok(layout)
}

/// Converts a stream of JSON lines.
pub fn convert<R: BufRead>(reader: R, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    convert_part(reader, source, Position::default(), out)
}

/// Converts the lines of a piece of a stream that begins at `at` (a line start).
pub fn convert_part<R: BufRead>(reader: R, source: &str, at: Position, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    super::jsonlines::for_each_object(reader, source, at, out, |obj, line, offset, out| {
        let mut ev = WinEvent::default();
        let bad = |reason: String| BadRecord { source: source.to_string(), record: Some(line), offset: Some(offset), reason };
        match to_win_event(obj, &mut ev) {
            Ok(_) => {
                let prov = Provenance { source, sourcetype: SOURCETYPE, record: Some(line), offset: Some(offset) };
                super::windows::convert_event(&ev, prov, out)
            }
            Err(reason) => out.bad(bad(reason.0)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn flattened_nxlog_never_takes_the_collector_pid() {
        let o = obj(r#"{"EventID":3,"SourceName":"Microsoft-Windows-Sysmon","Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"wks1","RecordNumber":7,"ExecutionProcessID":3392,"ProcessID":3392,"UtcTime":"2020-09-19 21:17:03.456","@timestamp":"2020-09-20T01:17:06.360Z","ProcessGuid":"{g}","Image":"C:\\x.exe","DestinationPort":"443"}"#);
        let mut ev = WinEvent::default();
        assert_eq!(to_win_event(&o, &mut ev).unwrap(), Layout::Flattened);
        assert_eq!(ev.event_id.as_deref(), Some("3"));
        assert_eq!(ev.computer.as_deref(), Some("wks1"));
        assert_eq!(ev.record_id.as_deref(), Some("7"));
        assert_eq!(ev.system_time.as_deref(), Some("2020-09-19 21:17:03.456"));
        assert_eq!(ev.data("ProcessId"), None);
        assert_eq!(ev.data("ProcessID"), None);
        assert_eq!(ev.data("ProcessGuid"), Some("{g}"));
        assert_eq!(ev.data("DestinationPort"), Some("443"));
    }

    #[test]
    fn winlogbeat_6_and_ecs() {
        let o = obj(r#"{"@timestamp":"2019-05-18T20:36:46.254Z","event_id":1,"source_name":"Microsoft-Windows-Sysmon","log_name":"Microsoft-Windows-Sysmon/Operational","computer_name":"HFDC01","record_number":"5","process_id":1368,"user":{"identifier":"S-1-5-18"},"event_data":{"ProcessId":"292","Image":"C:\\a.exe"}}"#);
        let mut ev = WinEvent::default();
        assert_eq!(to_win_event(&o, &mut ev).unwrap(), Layout::Winlogbeat6);
        assert_eq!(ev.data("ProcessId"), Some("292"));
        assert_eq!(ev.user_id.as_deref(), Some("S-1-5-18"));
        assert_eq!(ev.system_time.as_deref(), Some("2019-05-18T20:36:46.254Z"));
        let o = obj(r#"{"@timestamp":"2023-01-02T03:04:05.678Z","winlog":{"event_id":"3","provider_name":"Microsoft-Windows-Sysmon","channel":"Microsoft-Windows-Sysmon/Operational","computer_name":"W10","record_id":99,"process":{"pid":2000},"event_data":{"ProcessId":"42","DestinationPort":"80"}},"process":{"pid":2000}}"#);
        assert_eq!(to_win_event(&o, &mut ev).unwrap(), Layout::WinlogbeatEcs);
        assert_eq!(ev.event_id.as_deref(), Some("3"));
        assert_eq!(ev.record_id.as_deref(), Some("99"));
        assert_eq!(ev.data("ProcessId"), Some("42"));
        assert!(to_win_event(&obj(r#"{"a":1}"#), &mut ev).unwrap_err().to_string().contains("keys: a"));
    }
}
