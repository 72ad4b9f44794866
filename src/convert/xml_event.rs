//! Parses one Windows event rendered as XML (`<Event xmlns=…><System>…</System><EventData>…`) into
//! a [`WinEvent`]: the `System` fields cimlake uses and every `EventData/Data` pair.
//!
//! Both sources of XML go through here: Splunk `XmlWinEventLog` text exports and records
//! rendered from EVTX files. Entities (`&amp;`, `&#x41;`) are decoded; a DTD is never expanded.
//!
//! Two readers give the same result: [`scan`] reads the shape Windows writes in one pass and
//! borrows the values from the input; [`parse_reference`] (quick-xml) reads everything else and
//! words the errors.

mod scan;

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::Unreadable;

/// One Windows event, its values borrowed from the text it was read from where they can be.
/// Empty values are kept as empty strings; [`WinEvent::data`] hides them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WinEvent<'a> {
    /// `System/Provider@Name`.
    pub provider: Option<Cow<'a, str>>,
    /// `System/EventID` (text).
    pub event_id: Option<Cow<'a, str>>,
    /// `System/TimeCreated@SystemTime`.
    pub system_time: Option<Cow<'a, str>>,
    /// `System/EventRecordID`.
    pub record_id: Option<Cow<'a, str>>,
    /// `System/Channel`.
    pub channel: Option<Cow<'a, str>>,
    /// `System/Computer`.
    pub computer: Option<Cow<'a, str>>,
    /// `System/Security@UserID`.
    pub user_id: Option<Cow<'a, str>>,
    /// `EventData/Data` elements as (`Name`, text), in document order.
    pub data: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl WinEvent<'_> {
    /// The text of `EventData/Data[@Name=name]`, or `None` when absent or empty.
    pub fn data(&self, name: &str) -> Option<&str> {
        self.data
            .iter()
            .find(|(n, _)| same(n.as_bytes(), name.as_bytes()))
            .map(|(_, v)| v.as_ref())
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

/// Whether two short names are the same (an inline loop: the names are a few bytes long, and a
/// call to `memcmp` for each costs more than comparing them).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Deepest element nesting accepted; a Windows event is four deep.
pub const MAX_DEPTH: usize = 32;

/// Parses `xml` into `event` (reusing its allocations). The error says what is wrong and where.
pub fn parse_into<'a>(xml: &'a str, event: &mut WinEvent<'a>) -> Result<(), Unreadable> {
    match scan::scan(xml, event) {
        Some(()) => Ok(()),
        None => parse_reference(xml, event),
    }
}

/// [`parse_into`] by quick-xml alone: the reader of every shape, which the fast path is held to.
pub fn parse_reference<'a>(xml: &'a str, event: &mut WinEvent<'a>) -> Result<(), Unreadable> {
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
                        event.data.push((std::mem::take(&mut data_name).into(), Cow::Borrowed("")));
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
                        Target::EventId => event.event_id = Some(value.trim().to_string().into()),
                        Target::RecordId => event.record_id = Some(value.trim().to_string().into()),
                        Target::Channel => event.channel = Some(value.into()),
                        Target::Computer => event.computer = Some(value.into()),
                        Target::Data => event.data.push((std::mem::take(&mut data_name).into(), value.into())),
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
    event: &mut WinEvent<'_>,
    data_name: &mut String,
) -> Result<Target, Unreadable> {
    let name = e.local_name();
    let name = name.as_ref();
    let attr = |key: &[u8]| -> Result<Option<Cow<'static, str>>, Unreadable> {
        for a in e.attributes() {
            let a = a.map_err(|err| format!("bad attribute: {err}"))?;
            if a.key.local_name().as_ref() == key {
                let v = a.unescape_value().map_err(|err| format!("bad attribute value: {err}"))?;
                return Ok(Some(Cow::Owned(v.into_owned())));
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
        *data_name = attr(b"Name")?.unwrap_or_default().into_owned();
        return Ok(Target::Data);
    }
    Ok(Target::None)
}

/// Reads `xml` both ways and panics if the fast path accepts it and reads it otherwise than
/// quick-xml does (tests and the `xml_event` fuzz target). Returns whether the fast path read it.
pub fn check_fast_path(xml: &str) -> bool {
    let mut fast = WinEvent::default();
    let taken = scan::scan(xml, &mut fast).is_some();
    if taken {
        let mut reference = WinEvent::default();
        match parse_reference(xml, &mut reference) {
            Ok(()) => assert_eq!(fast, reference, "the fast path read {xml:?} otherwise than quick-xml"),
            Err(e) => panic!("the fast path read {xml:?}, which quick-xml refuses: {e}"),
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of the bundled XmlWinEventLog samples and of the EVTX corpus, as text.
    fn real_events() -> Vec<String> {
        let mut events = Vec::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/logs/sysmon");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log" || e == "raw") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("<Event xmlns").skip(1) {
                    let end = piece.find("</Event>").unwrap() + "</Event>".len();
                    events.push(format!("<Event xmlns{}", &piece[..end]));
                }
            }
            if path.extension().is_some_and(|e| e == "evtx") {
                let mut parser = evtx::EvtxParser::from_path(&path).unwrap();
                events.extend(parser.records().filter_map(Result::ok).map(|r| r.data));
            }
        }
        events
    }

    #[test]
    fn the_fast_path_reads_every_real_event_as_quick_xml_does() {
        let events = real_events();
        assert!(events.len() > 300, "{}", events.len());
        for xml in &events {
            assert!(check_fast_path(xml), "the fast path left a real event to quick-xml: {xml}");
        }
        // Pretty-printed, as the EVTX rendering is, with CRLF line ends.
        let pretty = EV.replace("><", ">\r\n  <").replace(">\r\n  </Data>", "></Data>");
        assert!(check_fast_path(&pretty));
    }

    #[test]
    fn shapes_the_fast_path_leaves_to_quick_xml() {
        let leave = [
            ("a comment", EV.replace("<System>", "<System><!-- c -->")),
            ("CDATA", EV.replace("host1", "<![CDATA[host1]]>")),
            ("a namespace prefix", EV.replace("<Event xmlns=", "<e:Event xmlns:e=").replace("</Event>", "</e:Event>")),
            ("a prefixed attribute read", EV.replace("Data Name='RuleName'", "Data x:Name='RuleName'")),
            ("spaces around =", EV.replace("Data Name='RuleName'", "Data Name = 'RuleName'")),
            ("a repeated attribute", EV.replace("Data Name='RuleName'", "Data Name='RuleName' Name='Other'")),
            ("an element in a field", EV.replace(">host1<", "><b>host1</b><")),
            ("a processing instruction", EV.replace("<System>", "<System><?pi x?>")),
            ("an unknown entity", EV.replace("a &amp; b", "a &bogus; b")),
            ("a mismatched end tag", EV.replace("</Computer>", "</computer>")),
            ("a space in an end tag", EV.replace("</Computer>", "</Computer >")),
            ("a truncated event", EV[..EV.len() - 9].to_string()),
            ("another root", EV.replace("<Event xmlns", "<Evnt xmlns").replace("</Event>", "</Evnt>")),
            ("too deep", EV.replace("<System>", &("<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH) + "<System>"))),
        ];
        for (what, xml) in &leave {
            assert!(!check_fast_path(xml), "{what}: {xml}");
        }
        let mut ev = WinEvent::default();
        parse_into(&leave[1].1, &mut ev).unwrap();
        assert_eq!(ev.computer.as_deref(), Some("host1"), "read by quick-xml");
        // A declaration before the root, and entities in attributes, are read.
        assert!(check_fast_path(&format!("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n{EV}")));
        let escaped = EV.replace("Name='CommandLine'", "Name='Command&#76;ine'");
        assert!(check_fast_path(&escaped));
        parse_into(&escaped, &mut ev).unwrap();
        assert_eq!(ev.data("CommandLine"), Some("a & b A <c>"));
    }

    /// Bytes that change the meaning of XML, for the mutations below.
    const MARKUP: &[u8] = b"<>/='\"&;!?:-[] \r\n\tx#Event";

    /// Every single-byte change of a small event (each byte removed, each byte replaced by and
    /// preceded by each markup byte): whatever the fast path accepts, quick-xml reads the same.
    #[test]
    fn every_one_byte_change_reads_the_same_or_goes_to_quick_xml() {
        let decl = format!("<?xml version='1.0'?>\r\n{}", EV.replace("><", ">\r\n <").replace("\r\n </Data>", "</Data>"));
        let (mut taken, mut left) = (0, 0);
        for seed in [EV, decl.as_str()] {
            let b = seed.as_bytes();
            for at in 0..=b.len() {
                let mut variants = Vec::new();
                if at < b.len() {
                    variants.push([&b[..at], &b[at + 1..]].concat());
                }
                for m in MARKUP {
                    variants.push([&b[..at], &[*m], &b[at..]].concat());
                    if at < b.len() {
                        variants.push([&b[..at], &[*m], &b[at + 1..]].concat());
                    }
                }
                for v in variants {
                    let Ok(xml) = String::from_utf8(v) else { continue };
                    if check_fast_path(&xml) { taken += 1 } else { left += 1 }
                }
            }
        }
        assert!(taken > 10_000 && left > 10_000, "fast path {taken}, quick-xml {left}");
    }

    /// Damaged copies of real events, cut, spliced and sprinkled with markup: whatever the fast
    /// path accepts, quick-xml reads the same (`check_fast_path` panics otherwise).
    #[test]
    fn damaged_events_read_the_same_or_go_to_quick_xml() {
        let mut seeds = real_events();
        seeds.truncate(60);
        seeds.push(EV.to_string());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut taken, mut left) = (0, 0);
        for round in 0..6000 {
            let mut b = seeds[round % seeds.len()].clone().into_bytes();
            for _ in 0..1 + next(3) {
                let at = next(b.len() + 1);
                match next(4) {
                    0 => b.insert(at, MARKUP[next(MARKUP.len())]),
                    1 if at < b.len() => drop(b.remove(at)),
                    2 if at < b.len() => b[at] = MARKUP[next(MARKUP.len())],
                    _ => {
                        let from = next(b.len() + 1);
                        let len = next(24).min(b.len() - from);
                        let piece = b[from..from + len].to_vec();
                        b.splice(at..at, piece);
                    }
                }
            }
            let Ok(xml) = String::from_utf8(b) else { continue };
            if check_fast_path(&xml) { taken += 1 } else { left += 1 }
        }
        // Both paths were exercised.
        assert!(taken > 1000 && left > 1000, "fast path {taken}, quick-xml {left}");
    }

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
