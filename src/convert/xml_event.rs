//! Parses one Windows event rendered as XML (`<Event xmlns=…><System>…</System><EventData>…`) into
//! a [`WinEvent`]: the `System` fields cimlake uses and every `EventData/Data` pair.
//!
//! Both sources of XML go through here: Splunk `XmlWinEventLog` text exports and records
//! rendered from EVTX files. Entities (`&amp;`, `&#x41;`) are decoded; a DTD is never expanded.

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::Unreadable;

/// One Windows event. Empty values are kept as empty strings; [`WinEvent::data`] hides them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WinEvent {
    /// `System/Provider@Name`.
    pub provider: Option<String>,
    /// `System/EventID` (text).
    pub event_id: Option<String>,
    /// `System/TimeCreated@SystemTime`.
    pub system_time: Option<String>,
    /// `System/EventRecordID`.
    pub record_id: Option<String>,
    /// `System/Channel`.
    pub channel: Option<String>,
    /// `System/Computer`.
    pub computer: Option<String>,
    /// `System/Security@UserID`.
    pub user_id: Option<String>,
    /// `EventData/Data` elements as (`Name`, text), in document order.
    pub data: Vec<(String, String)>,
}

impl WinEvent {
    /// The text of `EventData/Data[@Name=name]`, or `None` when absent or empty.
    pub fn data(&self, name: &str) -> Option<&str> {
        self.data
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn clear(&mut self) {
        self.provider = None;
        self.event_id = None;
        self.system_time = None;
        self.record_id = None;
        self.channel = None;
        self.computer = None;
        self.user_id = None;
        self.data.clear();
    }
}

/// Which element's text is being collected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    None,
    EventId,
    RecordId,
    Channel,
    Computer,
    Data,
}

/// Parses `xml` into `event` (reusing its allocations). The error says what is wrong and where.
/// Deepest element nesting accepted; a Windows event is four deep.
pub const MAX_DEPTH: usize = 32;

pub fn parse_into(xml: &str, event: &mut WinEvent) -> Result<(), Unreadable> {
    event.clear();
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut saw_root = false;
    let mut in_system = false;
    let mut in_event_data = false;
    let mut target = Target::None;
    let mut text = String::new();
    let mut data_name = String::new();
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        match ev {
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if depth == 0 {
                    if name != b"Event" {
                        return Err(Unreadable(format!(
                            "root element is <{}>, not <Event>",
                            String::from_utf8_lossy(name)
                        )));
                    }
                    saw_root = true;
                } else if depth == 1 {
                    in_system = name == b"System";
                    in_event_data = name == b"EventData";
                } else if depth == 2 {
                    text.clear();
                    target = start_child(&e, in_system, in_event_data, event, &mut data_name)?;
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Unreadable(format!("XML nested deeper than {MAX_DEPTH} elements")));
                }
            }
            Event::Empty(e) => {
                if depth == 0 {
                    return Err("empty <Event/> element".into());
                }
                if depth == 2 {
                    let t = start_child(&e, in_system, in_event_data, event, &mut data_name)?;
                    if t == Target::Data {
                        event.data.push((std::mem::take(&mut data_name), String::new()));
                    }
                }
            }
            Event::Text(t) => {
                if target != Target::None {
                    let s = t
                        .unescape()
                        .map_err(|e| format!("bad text at byte {}: {e}", reader.buffer_position()))?;
                    text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if target != Target::None {
                    let s = c.decode().map_err(|e| format!("bad CDATA: {e}"))?;
                    text.push_str(&s);
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 2 {
                    let value = std::mem::take(&mut text);
                    match target {
                        Target::EventId => event.event_id = Some(value.trim().to_string()),
                        Target::RecordId => event.record_id = Some(value.trim().to_string()),
                        Target::Channel => event.channel = Some(value),
                        Target::Computer => event.computer = Some(value),
                        Target::Data => event.data.push((std::mem::take(&mut data_name), value)),
                        Target::None => {}
                    }
                    target = Target::None;
                } else if depth == 1 {
                    in_system = false;
                    in_event_data = false;
                } else if depth == 0 {
                    break;
                }
            }
            Event::Eof => {
                if !saw_root {
                    return Err("no <Event> element".into());
                }
                return Err("truncated event: end of input before </Event>".into());
            }
            Event::DocType(_) => return Err("a DOCTYPE is not allowed in an event".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    Ok(())
}

/// Handles an element directly under `System` or `EventData`: reads its attributes and says
/// whose text to collect.
fn start_child(
    e: &BytesStart<'_>,
    in_system: bool,
    in_event_data: bool,
    event: &mut WinEvent,
    data_name: &mut String,
) -> Result<Target, Unreadable> {
    let name = e.local_name();
    let name = name.as_ref();
    let attr = |key: &[u8]| -> Result<Option<String>, Unreadable> {
        for a in e.attributes() {
            let a = a.map_err(|err| format!("bad attribute: {err}"))?;
            if a.key.local_name().as_ref() == key {
                let v = a.unescape_value().map_err(|err| format!("bad attribute value: {err}"))?;
                return Ok(Some(v.into_owned()));
            }
        }
        Ok(None)
    };
    if in_system {
        return Ok(match name {
            b"Provider" => {
                event.provider = attr(b"Name")?;
                Target::None
            }
            b"TimeCreated" => {
                event.system_time = attr(b"SystemTime")?;
                Target::None
            }
            b"Security" => {
                event.user_id = attr(b"UserID")?;
                Target::None
            }
            b"EventID" => Target::EventId,
            b"EventRecordID" => Target::RecordId,
            b"Channel" => Target::Channel,
            b"Computer" => Target::Computer,
            _ => Target::None,
        });
    }
    if in_event_data && name == b"Data" {
        *data_name = attr(b"Name")?.unwrap_or_default();
        return Ok(Target::Data);
    }
    Ok(Target::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &str = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Sysmon' Guid='{5770385F}'/><EventID>1</EventID><TimeCreated SystemTime='2020-10-08T11:03:46.617920300Z'/><EventRecordID>4522</EventRecordID><Execution ProcessID='2912' ThreadID='3424'/><Channel>Microsoft-Windows-Sysmon/Operational</Channel><Computer>host1</Computer><Security UserID='S-1-5-18'/></System><EventData><Data Name='RuleName'>-</Data><Data Name='Empty'></Data><Data Name='Self'/><Data Name='CommandLine'>a &amp; b &#x41; &lt;c&gt;</Data></EventData></Event>";

    #[test]
    fn parses_system_and_data() {
        let mut ev = WinEvent::default();
        parse_into(EV, &mut ev).unwrap();
        assert_eq!(ev.provider.as_deref(), Some("Microsoft-Windows-Sysmon"));
        assert_eq!(ev.event_id.as_deref(), Some("1"));
        assert_eq!(ev.system_time.as_deref(), Some("2020-10-08T11:03:46.617920300Z"));
        assert_eq!(ev.record_id.as_deref(), Some("4522"));
        assert_eq!(ev.channel.as_deref(), Some("Microsoft-Windows-Sysmon/Operational"));
        assert_eq!(ev.computer.as_deref(), Some("host1"));
        assert_eq!(ev.user_id.as_deref(), Some("S-1-5-18"));
        assert_eq!(ev.data("RuleName"), Some("-"));
        assert_eq!(ev.data("Empty"), None);
        assert_eq!(ev.data("Self"), None);
        assert_eq!(ev.data("CommandLine"), Some("a & b A <c>"));
        assert_eq!(ev.data.len(), 4);
    }

    #[test]
    fn pretty_printed_event_is_the_same() {
        let pretty = EV.replace("><", ">\r\n  <").replace(">\r\n  </Data>", "></Data>");
        let mut a = WinEvent::default();
        let mut b = WinEvent::default();
        parse_into(EV, &mut a).unwrap();
        parse_into(&pretty, &mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_bad_input() {
        let mut ev = WinEvent::default();
        assert!(parse_into("<Foo/>", &mut ev).is_err());
        assert!(parse_into("<Foo></Foo>", &mut ev).unwrap_err().to_string().contains("<Foo>"));
        assert!(parse_into(&EV[..EV.len() - 20], &mut ev).unwrap_err().to_string().contains("truncated"));
        assert!(parse_into("<Event><System></Event>", &mut ev).is_err());
        assert!(parse_into("<!DOCTYPE x [<!ENTITY a 'b'>]><Event></Event>", &mut ev).is_err());
        assert!(parse_into("<Event><EventData><Data Name='x'>&bogus;</Data></EventData></Event>", &mut ev).is_err());
        assert!(parse_into("", &mut ev).is_err());
    }
}
