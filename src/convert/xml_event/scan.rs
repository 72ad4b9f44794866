//! The fast path of [`super::parse_into`]: one pass over an event's bytes that reads the shape
//! Windows and Splunk write (elements, quoted attributes, text with entity references) and fills
//! a [`WinEvent`] with slices of the input, copying only values that hold an entity reference.
//!
//! It gives up ([`None`]) on anything else: comments, CDATA, a DOCTYPE, a processing instruction
//! inside the event, a namespace prefix, an element inside a field's text, an attribute it would
//! have to read twice, a tag or entity it cannot read, and every error. The quick-xml parser
//! ([`super::parse_reference`]) then reads the event, so what the scanner accepts it reads exactly
//! as quick-xml does (a test and a fuzz target hold it to that), and errors keep quick-xml's text.

use std::borrow::Cow;

use super::{MAX_DEPTH, Target, WinEvent, same};

/// Bytes quick-xml counts as whitespace inside a tag.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes of the element and attribute names the scanner reads (a `:` is not among them).
fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// Text with its entity references decoded; `None` for a reference quick-xml would refuse.
fn unescape(s: &str) -> Option<Cow<'_, str>> {
    quick_xml::escape::unescape(s).ok()
}

/// The attribute of a field element that holds its value, if it has one.
fn wanted_attribute(name: &[u8], in_system: bool, in_event_data: bool) -> Option<&'static [u8]> {
    match name {
        b"Provider" if in_system => Some(b"Name"),
        b"TimeCreated" if in_system => Some(b"SystemTime"),
        b"Security" if in_system => Some(b"UserID"),
        b"Data" if in_event_data => Some(b"Name"),
        _ => None,
    }
}

/// A start tag read: where it ends, whether it closes itself, and the value of the attribute
/// asked for.
struct StartTag<'a> {
    end: usize,
    empty: bool,
    value: Option<Cow<'a, str>>,
}

/// Reads the attributes of a start tag from `at` (just after its name) to its `>`. `want`: the
/// attribute whose value is kept; an element with one has its attribute names checked to be
/// distinct, as quick-xml checks them when it reads them.
fn start_tag<'a>(xml: &'a str, mut at: usize, want: Option<&[u8]>) -> Option<StartTag<'a>> {
    let b = xml.as_bytes();
    let mut value = None;
    let mut keys: [&[u8]; 16] = [&[]; 16];
    let mut n_keys = 0;
    loop {
        let spaced = at;
        while b.get(at).copied().is_some_and(is_space) {
            at += 1;
        }
        match *b.get(at)? {
            b'>' => return Some(StartTag { end: at + 1, empty: false, value }),
            b'/' => return (b.get(at + 1) == Some(&b'>')).then_some(StartTag { end: at + 2, empty: true, value }),
            _ if at == spaced => return None,
            _ => {}
        }
        let key_start = at;
        while b.get(at).copied().is_some_and(|c| is_name(c) || c == b':') {
            at += 1;
        }
        let key = &b[key_start..at];
        if key.is_empty() || b.get(at) != Some(&b'=') {
            return None;
        }
        let quote = *b.get(at + 1)?;
        if quote != b'\'' && quote != b'"' {
            return None;
        }
        let value_start = at + 2;
        // The closing quote, past any entity reference; a `<` is left to quick-xml.
        let mut value_end = value_start;
        let mut entity = false;
        loop {
            value_end += memchr::memchr3(quote, b'<', b'&', &b[value_end..])?;
            match b[value_end] {
                b'<' => return None,
                b'&' => (entity, value_end) = (true, value_end + 1),
                _ => break,
            }
        }
        let raw = &xml[value_start..value_end];
        at = value_end + 1;
        if let Some(want) = want {
            if key.contains(&b':') || n_keys == keys.len() || keys[..n_keys].iter().any(|k| same(k, key)) {
                return None;
            }
            keys[n_keys] = key;
            n_keys += 1;
            if same(key, want) {
                value = Some(if entity { unescape(raw)? } else { Cow::Borrowed(raw) });
            }
        }
    }
}

/// Reads `xml` into `event` (cleared first), or `None` when the event is not of the shape this
/// reads; `event` is then left part filled.
pub(super) fn scan<'a>(xml: &'a str, event: &mut WinEvent<'a>) -> Option<()> {
    event.clear();
    let b = xml.as_bytes();
    let mut open: [&[u8]; MAX_DEPTH] = [&[]; MAX_DEPTH];
    let mut depth = 0usize;
    let mut in_system = false;
    let mut in_event_data = false;
    let mut target = Target::None;
    // The text of the field being read and the `Name` of a `Data`.
    let mut text: Option<Cow<'a, str>> = None;
    let mut data_name: Cow<'a, str> = Cow::Borrowed("");
    let mut at = 0usize;
    loop {
        // The next tag, and whether the text before it holds an entity reference.
        let mut lt = at;
        let mut entity = false;
        if b.get(at) != Some(&b'<') {
            loop {
                lt += memchr::memchr2(b'<', b'&', &b[lt..])?;
                if b[lt] == b'<' {
                    break;
                }
                (entity, lt) = (true, lt + 1);
            }
        }
        if target != Target::None && lt > at {
            if text.is_some() {
                return None;
            }
            let raw = &xml[at..lt];
            text = Some(if entity { unescape(raw)? } else { Cow::Borrowed(raw) });
        }
        match *b.get(lt + 1)? {
            b'/' => {
                // `</name>`, naming the element open.
                let name_start = lt + 2;
                let name = *open.get(depth.wrapping_sub(1))?;
                let gt = name_start + name.len();
                if depth == 0 || b.get(gt) != Some(&b'>') || !same(&b[name_start..gt], name) {
                    return None;
                }
                depth -= 1;
                at = gt + 1;
                match depth {
                    0 => return Some(()),
                    1 => (in_system, in_event_data) = (false, false),
                    2 => {
                        let value = text.take().unwrap_or(Cow::Borrowed(""));
                        match target {
                            Target::EventId => event.event_id = Some(trimmed(value)),
                            Target::RecordId => event.record_id = Some(trimmed(value)),
                            Target::Channel => event.channel = Some(value),
                            Target::Computer => event.computer = Some(value),
                            Target::Data => event.data.push((std::mem::take(&mut data_name), value)),
                            Target::None => {}
                        }
                        target = Target::None;
                    }
                    _ => {}
                }
            }
            // An XML declaration before the root; anything else that is not an element is left
            // to quick-xml.
            b'?' if depth == 0 && b[lt + 2..].starts_with(b"xml") && b.get(lt + 5).copied().is_some_and(is_space) => {
                at = lt + 5 + memchr::memmem::find(&b[lt + 5..], b"?>")? + 2;
            }
            first if first.is_ascii_alphabetic() || first == b'_' => {
                let name_start = lt + 1;
                let mut name_end = name_start;
                while b.get(name_end).copied().is_some_and(is_name) {
                    name_end += 1;
                }
                let name = &b[name_start..name_end];
                if target != Target::None {
                    // An element inside a field's text.
                    return None;
                }
                let want = if depth == 2 { wanted_attribute(name, in_system, in_event_data) } else { None };
                let tag = start_tag(xml, name_end, want)?;
                at = tag.end;
                if depth == 0 && (name != b"Event" || tag.empty) {
                    return None;
                }
                if depth == 2 {
                    let value = tag.value;
                    target = match name {
                        b"Provider" if in_system => {
                            event.provider = value;
                            Target::None
                        }
                        b"TimeCreated" if in_system => {
                            event.system_time = value;
                            Target::None
                        }
                        b"Security" if in_system => {
                            event.user_id = value;
                            Target::None
                        }
                        b"EventID" if in_system => Target::EventId,
                        b"EventRecordID" if in_system => Target::RecordId,
                        b"Channel" if in_system => Target::Channel,
                        b"Computer" if in_system => Target::Computer,
                        b"Data" if in_event_data => {
                            data_name = value.unwrap_or(Cow::Borrowed(""));
                            Target::Data
                        }
                        _ => Target::None,
                    };
                    text = None;
                    if tag.empty {
                        if target == Target::Data {
                            event.data.push((std::mem::take(&mut data_name), Cow::Borrowed("")));
                        }
                        target = Target::None;
                    }
                }
                if !tag.empty {
                    if depth == 1 {
                        in_system = name == b"System";
                        in_event_data = name == b"EventData";
                    }
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    open[depth] = name;
                    depth += 1;
                }
            }
            _ => return None,
        }
    }
}

/// A value without the whitespace around it, still borrowed when it was.
fn trimmed(value: Cow<'_, str>) -> Cow<'_, str> {
    match value {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
    }
}
