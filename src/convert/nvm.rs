//! Cisco Network Visibility Module flow data (`cisco:nvm:flowdata`): each record is a flow together
//! with the process that made it, so one record yields a `network_traffic.all_traffic` row and an
//! `endpoint.processes` observation.
//!
//! Two raw shapes: key="value" syslog lines (`nvzFlow_v9`; quoted values, `\"` escapes, `''` for
//! empty) and JSON objects, one per line, every value a string (`nvzFlow_v11`).
//!
//! Within one input:
//! * a connection reported at several stages (`fsg`: 1 start, 2 periodic, 0 end) is one flow, with
//!   the final figures (the end record, else the latest);
//! * a process seen in many flows is one process row (by `puid`, else pid and path), timed at its
//!   first flow;
//! * the endpoint (`processes.dest`, `all_traffic.dvc`) is the host name (`vsn`) of the input's
//!   NVM endpoint record for that `udid`, else the `udid` itself.

use std::collections::HashMap;
use std::rc::Rc;
use std::io::BufRead;


use crate::cim::all_traffic::TrafficRow;
use crate::cim::processes::ProcessRow;
use super::{BadRecord, ConvertError, Emitter, Unreadable};
use crate::cim::provenance::Provenance;

pub const SOURCETYPE_KV: &str = "cisco:nvm:flowdata";
pub const SOURCETYPE_JSON: &str = "cisco:nvm:flowdata:v2";

/// Cisco NVM flow data as key="value" syslog lines. Flow stages and process records are merged
/// across the input, so it is not split.
pub struct NvmKvFormat;

impl super::format::Format for NvmKvFormat {
    fn sourcetype(&self) -> super::Sourcetype {
        super::Sourcetype::NvmKv
    }

    fn sniff(&self, head: &[u8]) -> bool {
        super::format::first_line(head).is_some_and(|l| !l.starts_with('{'))
            && String::from_utf8_lossy(head).lines().take(20).any(|l| parse_kv(l).is_ok_and(|r| is_nvm(&r)))
    }

    fn convert(&self, reader: &mut dyn std::io::BufRead, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        convert_kv(reader, source, out)
    }
}

/// Cisco NVM flow data as JSON lines; not split, as [`NvmKvFormat`].
pub struct NvmJsonFormat;

impl super::format::Format for NvmJsonFormat {
    fn sourcetype(&self) -> super::Sourcetype {
        super::Sourcetype::NvmJson
    }

    fn sniff(&self, head: &[u8]) -> bool {
        let Some(first) = super::format::first_line(head).filter(|l| l.starts_with('{')) else { return false };
        match serde_json::from_str::<JsonLine>(&first) {
            Ok(JsonLine::Object(rec)) => is_nvm(&rec),
            // A first line longer than the sniffed bytes: judge by the keys seen.
            _ => first.contains("\"fv\"") && first.contains("nvzFlow"),
        }
    }

    fn convert(&self, reader: &mut dyn std::io::BufRead, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        convert_json(reader, source, out)
    }
}
pub const VENDOR_PRODUCT: &str = "Cisco Network Visibility Module";

/// Skip reason for NVM records that are neither flows nor endpoint records.
pub const OTHER_RECORD: &str = "NVM record, not a flow or endpoint";

/// The NVM fields cimlake reads (Cisco's NVM field names); a record's other fields are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Fv, Udid, Vsn, Sa, Da, Sp, Dp, Pr, Fd, Fss, Fsms, Fes, Fems, Fsg, Pid, Ppid, Puid, Ppuid, Pn, Ppn, Ppath, Pppath, Parg, Pparg, Ph,
    Pil, Pa, Liuid, Ibc, Obc, Dh,
}

const FIELD_COUNT: usize = Field::Dh as usize + 1;

impl Field {
    /// The field a record key names, if cimlake reads it.
    pub fn of(key: &[u8]) -> Option<Field> {
        use Field::*;
        Some(match key {
            b"fv" => Fv,
            b"udid" => Udid,
            b"vsn" => Vsn,
            b"sa" => Sa,
            b"da" => Da,
            b"sp" => Sp,
            b"dp" => Dp,
            b"pr" => Pr,
            b"fd" => Fd,
            b"fss" => Fss,
            b"fsms" => Fsms,
            b"fes" => Fes,
            b"fems" => Fems,
            b"fsg" => Fsg,
            b"pid" => Pid,
            b"ppid" => Ppid,
            b"puid" => Puid,
            b"ppuid" => Ppuid,
            b"pn" => Pn,
            b"ppn" => Ppn,
            b"ppath" => Ppath,
            b"pppath" => Pppath,
            b"parg" => Parg,
            b"pparg" => Pparg,
            b"ph" => Ph,
            b"pil" => Pil,
            b"pa" => Pa,
            b"liuid" => Liuid,
            b"ibc" => Ibc,
            b"obc" => Obc,
            b"dh" => Dh,
            _ => return None,
        })
    }
}

/// One NVM record: the values of the [`Field`]s it has, with `''` and empty values removed. The
/// values share one buffer: a record costs one allocation however many fields it has.
#[derive(Debug, Clone, Default)]
pub struct Record {
    text: String,
    /// Byte range of each field's value in `text`; an empty range is an absent field.
    spans: [(u32, u32); FIELD_COUNT],
}

/// Records are equal when their fields' values are, whatever their buffers hold.
impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        fn value(r: &Record, i: usize) -> &str {
            let (a, b) = r.spans[i];
            &r.text[a as usize..b as usize]
        }
        (0..FIELD_COUNT).all(|i| value(self, i) == value(other, i))
    }
}

impl Record {
    pub fn get(&self, field: Field) -> Option<&str> {
        let (a, b) = self.spans[field as usize];
        (a < b).then(|| &self.text[a as usize..b as usize])
    }

    pub fn has(&self, field: Field) -> bool {
        let (a, b) = self.spans[field as usize];
        a < b
    }

    /// Sets `field` to the value written into `text` since byte `from`. An empty or `''` value is
    /// dropped; it removes an earlier value of the field when `empty_removes` (JSON, where the
    /// last value of a repeated key wins), and leaves it otherwise (key="value" lines).
    fn close(&mut self, field: Field, from: usize, empty_removes: bool) {
        let v = &self.text[from..];
        if v.is_empty() || v == "''" {
            self.text.truncate(from);
            if empty_removes {
                self.spans[field as usize] = (0, 0);
            }
        } else {
            // Values are parts of one line, and lines are capped far below 4 GiB.
            self.spans[field as usize] = (from as u32, self.text.len() as u32);
        }
    }

    fn set(&mut self, field: Field, value: &str) {
        let from = self.text.len();
        self.text.push_str(value);
        self.close(field, from, true);
    }
}

/// Parses the key="value" part of a syslog line. The syslog prefix before the first `key="` is
/// ignored. Returns an error naming the byte where the line stops making sense.
pub fn parse_kv(line: &str) -> Result<Record, Unreadable> {
    let b = line.as_bytes();
    let start = first_key(b).ok_or("no key=\"value\" pairs")?;
    let mut rec = Record::default();
    let mut i = start;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let k0 = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i == k0 || i >= b.len() || b[i] != b'=' {
            return Err(Unreadable(format!("expected key=\"value\" at byte {k0}")));
        }
        let key = &line[k0..i];
        let field = Field::of(key.as_bytes());
        let from = rec.text.len();
        i += 1;
        if b.get(i) == Some(&b'"') {
            i += 1;
            let mut seg = i;
            loop {
                // The value ends at the next `"` not escaped by a `\`.
                let Some(q) = memchr::memchr(b'"', &b[i..]) else {
                    rec.text.truncate(from);
                    return Err(Unreadable(format!("unterminated value of {key}")));
                };
                i += q;
                if i > seg && b[i - 1] == b'\\' {
                    if field.is_some() {
                        rec.text.push_str(&line[seg..i - 1]);
                        rec.text.push('"');
                    }
                    i += 1;
                    seg = i;
                    continue;
                }
                if field.is_some() {
                    rec.text.push_str(&line[seg..i]);
                }
                i += 1;
                break;
            }
        } else {
            let v0 = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            if field.is_some() {
                rec.text.push_str(&line[v0..i]);
            }
        }
        if let Some(field) = field {
            rec.close(field, from, false);
        }
    }
    Ok(rec)
}

fn first_key(b: &[u8]) -> Option<usize> {
    let eq = memchr::memmem::find(b, b"=\"")?;
    let mut k = eq;
    while k > 0 && (b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'_') {
        k -= 1;
    }
    (k < eq).then_some(k)
}

/// A JSON line read straight into a [`Record`] (no `serde_json::Value` in between): the record, or
/// the kind of JSON value the line held instead of an object. Not boxed: one per line, moved once.
#[allow(clippy::large_enum_variant)]
enum JsonLine {
    Object(Record),
    Other(&'static str),
}

impl<'de> serde::Deserialize<'de> for JsonLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LineVisitor)
    }
}

struct LineVisitor;

impl<'de> serde::de::Visitor<'de> for LineVisitor {
    type Value = JsonLine;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonLine, A::Error> {
        use serde::de::IgnoredAny;
        let mut rec = Record::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Some(field) = Field::of(key.as_bytes()) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            // As `serde_json::Map`: the last value of a repeated key wins, even an empty one.
            match map.next_value::<Scalar<'de>>()? {
                Scalar::Str(s) => rec.set(field, &s),
                Scalar::Number(n) => rec.set(field, &n.to_string()),
                Scalar::Bool(b) => rec.set(field, if b { "true" } else { "false" }),
                Scalar::Other => rec.spans[field as usize] = (0, 0),
            }
        }
        Ok(JsonLine::Object(rec))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonLine, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(JsonLine::Other("array"))
    }
    fn visit_str<E>(self, _: &str) -> Result<JsonLine, E> {
        Ok(JsonLine::Other("string"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<JsonLine, E> {
        Ok(JsonLine::Other("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<JsonLine, E> {
        Ok(JsonLine::Other("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<JsonLine, E> {
        Ok(JsonLine::Other("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<JsonLine, E> {
        Ok(JsonLine::Other("number"))
    }
    fn visit_unit<E>(self) -> Result<JsonLine, E> {
        Ok(JsonLine::Other("null"))
    }
}

/// A value of a JSON record: a string, a number (as serde_json prints it) or a boolean; anything
/// else is skipped.
enum Scalar<'a> {
    Str(std::borrow::Cow<'a, str>),
    Number(serde_json::Number),
    Bool(bool),
    Other,
}

impl<'de> serde::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(std::borrow::Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(std::borrow::Cow::Owned(s)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Scalar<'de>, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Scalar::Other, Scalar::Number))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a record looks like NVM data at all.
pub fn is_nvm(rec: &Record) -> bool {
    rec.get(Field::Fv).is_some_and(|v| v.starts_with("nvzFlow"))
        || (rec.has(Field::Udid) && (rec.has(Field::Sa) || rec.has(Field::Vsn)))
}

/// `pil`/`ppil`: Windows integrity level RIDs.
pub fn integrity_level(rid: &str) -> String {
    match rid.trim() {
        "0" => "Untrusted".into(),
        "4096" => "Low".into(),
        "8192" => "Medium".into(),
        "8448" => "Medium Plus".into(),
        "12288" => "High".into(),
        "16384" => "System".into(),
        "20480" => "Protected".into(),
        other => other.into(),
    }
}

/// `pr`: IP protocol number → CIM transport.
pub fn transport(pr: &str) -> String {
    match pr.trim() {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "ipv6-icmp".into(),
        other => other.into(),
    }
}

/// `fd`: flow direction. 1 is a connection the endpoint made (both NVM samples: the endpoint is
/// `sa`, a web server on 80/443 is `da`), 2 one it accepted.
pub fn direction(fd: &str) -> &'static str {
    match fd.trim() {
        "1" => "outbound",
        "2" => "inbound",
        _ => "unknown",
    }
}

/// The key fields of a flow (udid, protocol, addresses, ports, start) or of a process (udid and
/// `puid`, else udid, pid and path) in one allocation, each prefixed by its length so that no two
/// different field lists make the same key.
type Key = Box<[u8]>;

fn key(parts: &[&str]) -> Key {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        k.extend_from_slice(&(p.len() as u32).to_le_bytes());
        k.extend_from_slice(p.as_bytes());
    }
    k.into_boxed_slice()
}

struct Seen {
    rec: Rc<Record>,
    line: i64,
    offset: i64,
    /// The flow's start in µs ([`start_us`]).
    start: i64,
    /// Which of a flow's stage reports wins ([`stage_rank`]).
    rank: (u8, i64),
}

/// Collects the records of one input and emits its rows at the end.
pub struct NvmState {
    sourcetype: &'static str,
    flows: HashMap<Key, Seen>,
    processes: HashMap<Key, Seen>,
    endpoints: HashMap<String, String>,
}

fn stage_rank(rec: &Record) -> (u8, i64) {
    // The end record (fsg 0) wins; among the others, the latest end time.
    let end = rec.get(Field::Fsg).map(|s| s.trim() == "0").unwrap_or(true);
    let fes = rec.get(Field::Fems).and_then(|v| v.parse::<i64>().ok()).or_else(|| {
        rec.get(Field::Fes).and_then(|v| v.parse::<i64>().ok()).map(|s| s * 1000)
    });
    (u8::from(end), fes.unwrap_or(i64::MIN))
}

/// Flow start in µs: `fsms` (ms) when present, else `fss` (s).
fn start_us(rec: &Record) -> Option<i64> {
    if let Some(ms) = rec.get(Field::Fsms).and_then(|v| v.trim().parse::<i64>().ok()) {
        return ms.checked_mul(1000);
    }
    rec.get(Field::Fss).and_then(|v| v.trim().parse::<i64>().ok()).and_then(|s| s.checked_mul(1_000_000))
}

impl NvmState {
    pub fn new(sourcetype: &'static str) -> Self {
        NvmState { sourcetype, flows: HashMap::new(), processes: HashMap::new(), endpoints: HashMap::new() }
    }

    /// Takes one record.
    pub fn add(&mut self, rec: Record, line: i64, offset: i64, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        use Field::*;
        let bad = |reason: String| BadRecord { source: source.to_string(), record: Some(line), offset: Some(offset), reason };
        if !is_nvm(&rec) {
            return out.bad(bad("not an NVM record (no fv=\"nvzFlow…\", udid, sa or vsn)".into()));
        }
        let is_flow = rec.has(Sa) || rec.has(Da);
        if !is_flow {
            match (rec.get(Udid), rec.get(Vsn)) {
                (Some(udid), Some(vsn)) => {
                    self.endpoints.insert(udid.to_string(), vsn.to_string());
                    out.skip("NVM endpoint record (host name taken)");
                }
                _ => out.skip(OTHER_RECORD),
            }
            return Ok(());
        }
        let Some(start) = start_us(&rec) else {
            return out.bad(bad("NVM flow without a valid start time (fss/fsms)".into()));
        };
        // Checked here, once per record: the record becomes both a flow and a process row.
        if let Err(reason) = super::plausible_time(start) {
            return out.bad(bad(reason.0));
        }
        // A number that is there but impossible (a pid of -1, a port of 70000) makes the record
        // bad, not a silent null.
        for (field, name, max) in [(Pid, "pid", i64::from(u32::MAX)), (Ppid, "ppid", i64::from(u32::MAX)), (Sp, "sp", 65535), (Dp, "dp", 65535)] {
            if let Some(v) = rec.get(field).map(|v| v.trim()).filter(|v| !v.is_empty())
                && !v.parse::<i64>().is_ok_and(|n| (0..=max).contains(&n))
            {
                return out.bad(bad(format!("NVM flow: {name} {v:?} is not a number from 0 to {max}")));
            }
        }
        let get = |f: Field| rec.get(f).unwrap_or_default();
        let udid = get(Udid);
        let pkey = match rec.get(Puid) {
            Some(puid) => Some(key(&["puid", udid, puid])),
            None if rec.has(Pid) => Some(key(&["pid", udid, get(Pid), get(Ppath)])),
            None => None,
        };
        let fss;
        let fkey = key(&[udid, get(Pr), get(Sa), get(Sp), get(Da), get(Dp), match rec.get(Fss) {
            Some(v) => v,
            None => {
                fss = start.to_string();
                &fss
            }
        }]);
        let rank = stage_rank(&rec);
        let rec = Rc::new(rec);
        if let Some(pkey) = pkey {
            match self.processes.get(&pkey) {
                Some(first) if first.start <= start => {}
                _ => {
                    self.processes.insert(pkey, Seen { rec: rec.clone(), line, offset, start, rank });
                }
            }
        }
        match self.flows.get(&fkey) {
            Some(prev) if prev.rank > rank => {
                out.skip("NVM flow stage superseded by a later report");
            }
            Some(_) => {
                out.skip("NVM flow stage superseded by a later report");
                self.flows.insert(fkey, Seen { rec, line, offset, start, rank });
            }
            None => {
                self.flows.insert(fkey, Seen { rec, line, offset, start, rank });
            }
        }
        Ok(())
    }

    /// Emits one row per flow and per process, in a stable order: by time, then record.
    pub fn finish(self, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
        use Field::*;
        let endpoint = |rec: &Record| -> Option<String> {
            let udid = rec.get(Udid)?;
            Some(self.endpoints.get(udid).cloned().unwrap_or_else(|| udid.to_string()))
        };
        fn in_order(map: &HashMap<Key, Seen>) -> Vec<(&Key, &Seen)> {
            let mut seen: Vec<(&Key, &Seen)> = map.iter().collect();
            seen.sort_unstable_by(|(ka, a), (kb, b)| (a.start, a.line, ka).cmp(&(b.start, b.line, kb)));
            seen
        }
        for (_, seen) in in_order(&self.flows) {
            let r = &seen.rec;
            let g = |f: Field| r.get(f);
            let dvc = endpoint(r);
            let bytes_in = g(Ibc).and_then(|v| v.trim().parse::<i64>().ok());
            let bytes_out = g(Obc).and_then(|v| v.trim().parse::<i64>().ok());
            let transport = g(Pr).map(transport);
            let ipv6 = g(Sa).is_some_and(|a| a.contains(':')) || g(Da).is_some_and(|a| a.contains(':'));
            let row = TrafficRow {
                time_us: seen.start,
                action: Some("allowed"),
                app: g(Ppath).or(g(Pn)),
                bytes: match (bytes_in, bytes_out) {
                    (Some(a), Some(b)) => a.checked_add(b),
                    _ => None,
                },
                bytes_in,
                bytes_out,
                dest: g(Dh).or(g(Da)),
                dest_ip: g(Da),
                dest_port: port(g(Dp)),
                dvc: dvc.as_deref(),
                direction: Some(g(Fd).map_or("unknown", direction)),
                protocol: Some("ip"),
                protocol_version: Some(if ipv6 { 6 } else { 4 }),
                src: g(Sa),
                src_ip: g(Sa),
                src_port: port(g(Sp)),
                transport: transport.as_deref(),
                user: g(Liuid),
                vendor_product: Some(VENDOR_PRODUCT),
                process_id: g(Pid).and_then(|v| v.trim().parse().ok()),
                process_guid: g(Puid),
                process_name: g(Pn),
                process_path: g(Ppath),
                dest_hostname: g(Dh),
                provenance: Provenance { source, sourcetype: self.sourcetype, record: Some(seen.line), offset: Some(seen.offset) },
                ..Default::default()
            };
            out.traffic(&row)?;
        }
        for (_, seen) in in_order(&self.processes) {
            let r = &seen.rec;
            let g = |f: Field| r.get(f);
            let dest = endpoint(r);
            let il = g(Pil).map(integrity_level);
            let row = ProcessRow {
                time_us: seen.start,
                action: Some("allowed"),
                dest: dest.as_deref(),
                original_file_name: None,
                parent_process: g(Pparg),
                parent_process_guid: g(Ppuid),
                parent_process_id: g(Ppid).and_then(|v| v.trim().parse().ok()),
                parent_process_path: g(Pppath),
                process: g(Parg),
                process_guid: g(Puid),
                process_hash: g(Ph),
                process_id: g(Pid).and_then(|v| v.trim().parse().ok()),
                process_integrity_level: il.as_deref(),
                process_current_directory: None,
                process_path: g(Ppath),
                process_name: g(Pn),
                parent_process_name: g(Ppn),
                user: g(Pa).or(g(Liuid)),
                user_id: None,
                vendor_product: Some(VENDOR_PRODUCT),
                provenance: Provenance { source, sourcetype: self.sourcetype, record: Some(seen.line), offset: Some(seen.offset) },
                ..Default::default()
            };
            out.process(&row)?;
        }
        Ok(())
    }
}

fn port(v: Option<&str>) -> Option<i32> {
    v.and_then(|s| s.trim().parse::<i32>().ok()).filter(|p| (0..=65535).contains(p))
}

/// Converts key="value" syslog lines.
pub fn convert_kv<R: BufRead>(reader: R, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    let mut state = NvmState::new(SOURCETYPE_KV);
    let mut lines = super::lines::Lines::new(reader);
    while let Some(super::lines::Line { number: line, offset: start, bytes, cut }) = lines.next_line(source)? {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        out.record();
        out.raw(text.as_bytes());
        if cut {
            out.bad(super::jsonlines::too_long(source, line, start))?;
            continue;
        }
        match parse_kv(text) {
            Ok(rec) => state.add(rec, line, start, source, out)?,
            Err(reason) => out.bad(BadRecord {
                source: source.to_string(),
                record: Some(line),
                offset: Some(start),
                reason: format!("not an NVM key=\"value\" record: {reason}"),
            })?,
        }
    }
    state.finish(source, out)
}

/// Converts JSON lines.
pub fn convert_json<R: BufRead>(reader: R, source: &str, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    let mut state = NvmState::new(SOURCETYPE_JSON);
    use super::jsonlines::{for_each_line, not_an_object, not_json};
    for_each_line(reader, source, super::lines::Position::default(), out, |text, line, offset, out| {
        match serde_json::from_slice::<JsonLine>(text) {
            Ok(JsonLine::Object(rec)) => state.add(rec, line, offset, source, out),
            Ok(JsonLine::Other(kind)) => out.bad(not_an_object(source, line, offset, kind)),
            Err(e) => out.bad(not_json(source, line, offset, &e)),
        }
    })?;
    state.finish(source, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_values_quotes_escapes_and_empties() {
        let r = parse_kv(r#"Jun 26 16:09:18 127.0.0.1 Jun 26 16:09:18 ip-1  fv="nvzFlow_v9" hh="x" dh="''" parg=" /i \"https://x/y.msi\"" ppath="C:\Windows\system32\msiexec.exe" pid=5"#).unwrap();
        assert_eq!(r.get(Field::Fv), Some("nvzFlow_v9"));
        assert_eq!(r.get(Field::Dh), None, "'' is empty");
        assert_eq!(r.get(Field::Parg), Some(r#" /i "https://x/y.msi""#));
        assert_eq!(r.get(Field::Ppath), Some(r"C:\Windows\system32\msiexec.exe"));
        assert_eq!(r.get(Field::Pid), Some("5"), "unquoted");
        assert!(parse_kv("no pairs here").is_err());
        assert!(parse_kv(r#"x fv="open"#).unwrap_err().to_string().contains("unterminated"));
        assert!(parse_kv(r#"x fv="open\""#).unwrap_err().to_string().contains("unterminated"), "an escaped quote does not end a value");
        // A repeated key: the last non-empty value. A quote after a backslash is escaped, even
        // after two; an escaped quote at a value's end.
        let r = parse_kv(r#"x sa="1" sa="2" sa="''" sa="" pn="a\\" b" pa="\"""#).unwrap();
        assert_eq!((r.get(Field::Sa), r.get(Field::Pn), r.get(Field::Pa)), (Some("2"), Some(r#"a\" b"#), Some("\"")));
    }

    /// What a JSON object read as a `serde_json::Value` makes of a record: the reference the direct
    /// read is held to.
    fn from_json(obj: &serde_json::Map<String, serde_json::Value>) -> Record {
        use serde_json::Value;
        let mut rec = Record::default();
        for (k, v) in obj {
            let Some(field) = Field::of(k.as_bytes()) else { continue };
            match v {
                Value::String(s) => rec.set(field, s),
                Value::Number(n) => rec.set(field, &n.to_string()),
                Value::Bool(b) => rec.set(field, if *b { "true" } else { "false" }),
                _ => {}
            }
        }
        rec
    }

    /// The JSON records read straight from the line are the records [`from_json`] makes of a
    /// `serde_json::Value`, whatever the values' types, and other JSON values are named.
    #[test]
    fn json_lines_read_as_from_json_reads_values() {
        let lines = [
            r#"{"fv":"nvzFlow_v11","udid":"U","sa":"10.0.0.1","sp":5,"dp":443.0,"pid":1e3,"fd":true,"da":null,"dh":["x"],"pn":{"a":1},"ph":"","unknown":"x"}"#,
            r#"{"sa":"1","sa":"","da":"\u0041\"b","pa":"x","pa":2,"pid":-7,"ppid":18446744073709551615,"ibc":1.5e300}"#,
        ];
        for line in lines {
            let JsonLine::Object(direct) = serde_json::from_str::<JsonLine>(line).unwrap() else { panic!("{line}") };
            let serde_json::Value::Object(obj) = serde_json::from_str::<serde_json::Value>(line).unwrap() else { panic!() };
            assert_eq!(direct, from_json(&obj), "{line}");
        }
        let JsonLine::Object(r) = serde_json::from_str::<JsonLine>(lines[1]).unwrap() else { panic!() };
        assert_eq!((r.get(Field::Sa), r.get(Field::Da), r.get(Field::Pa)), (None, Some("A\"b"), Some("2")));
        for (line, kind) in [("[1,{}]", "array"), ("\"s\"", "string"), ("3", "number"), ("-3", "number"), ("1.5", "number"), ("true", "boolean"), ("null", "null")] {
            assert!(matches!(serde_json::from_str::<JsonLine>(line).unwrap(), JsonLine::Other(k) if k == kind), "{line}");
        }
        assert!(serde_json::from_str::<JsonLine>("{\"a\":").is_err());
    }

    #[test]
    fn code_tables() {
        assert_eq!(integrity_level("12288"), "High");
        assert_eq!(integrity_level("8192"), "Medium");
        assert_eq!(integrity_level("16384"), "System");
        assert_eq!(transport("17"), "udp");
        assert_eq!(direction("1"), "outbound");
        assert_eq!(direction("2"), "inbound");
    }
}

#[cfg(test)]
mod sample_tests {
    use std::io::BufReader;

    /// Columns only Sysmon fills: null in every NVM row.
    const SYSMON_ONLY_PROCESS: [&str; 13] = [
        "process_file_version", "process_description", "process_product", "process_company", "process_md5", "process_sha1",
        "process_sha256", "process_imphash", "logon_id", "logon_guid", "terminal_session_id", "parent_user", "rule_name",
    ];
    const SYSMON_ONLY_TRAFFIC: [&str; 7] = ["initiated", "src_hostname", "src_is_ipv6", "dest_is_ipv6", "src_port_name", "dest_port_name", "rule_name"];

    /// `fields`, and `NULL` for each of `nulls`.
    fn with_nulls<'a>(fields: &[(&'a str, &'a str)], nulls: &[&'a str]) -> Vec<(&'a str, &'a str)> {
        fields.iter().copied().chain(nulls.iter().map(|n| (*n, "NULL"))).collect()
    }

    use super::*;
    use crate::cim::Table;
    use crate::convert::test_util::{expect, row, sample};
    use crate::convert::{Stats, VecSink};

    fn run(file: &str, json: bool) -> (VecSink, Stats) {
        let bytes = std::fs::read(sample("nvm", file)).unwrap();
        let mut sink = VecSink::default();
        let stats = {
            let mut out = Emitter::new(&mut sink);
            if json {
                convert_json(BufReader::new(&bytes[..]), "test", &mut out).unwrap();
            } else {
                convert_kv(BufReader::new(&bytes[..]), "test", &mut out).unwrap();
            }
            out.finish().unwrap()
        };
        (sink, stats)
    }

    #[test]
    fn every_field_of_the_kv_corpus_flow() {
        let (sink, stats) = run("security_content_example_flow_kv.log", false);
        assert_eq!((stats.records, stats.bad), (1, 0));
        let t = sink.table(Table::AllTraffic);
        assert_eq!(t.num_rows(), 1);
        expect(&row(&t, 0), &with_nulls(&[
            ("_time", "2025-06-26T16:08:54.331Z"),
            ("action", "allowed"),
            ("app", r"C:\Windows\system32\msiexec.exe"),
            ("bytes", "0"),
            ("bytes_in", "0"),
            ("bytes_out", "0"),
            ("dest", "github.com"),
            ("dest_ip", "140.82.112.3"),
            ("dest_port", "443"),
            // No endpoint record in the input: the endpoint is its udid.
            ("dvc", "10E8A7F940225180BFDB748D2AE336EA7285CB8C"),
            ("direction", "outbound"),
            ("protocol", "ip"),
            ("protocol_version", "4"),
            ("src", "172.16.3.110"),
            ("src_ip", "172.16.3.110"),
            ("src_port", "5203"),
            ("transport", "tcp"),
            ("user", r"EC2AMAZ-E56LIG5\Administrator"),
            ("vendor_product", "Cisco Network Visibility Module"),
            ("process_id", "8496"),
            ("process_guid", "071161F29663831BB4A1C0FADA9805E0"),
            ("process_name", "msiexec.exe"),
            ("process_path", r"C:\Windows\system32\msiexec.exe"),
            ("dest_hostname", "github.com"),
            ("source", "test"),
            ("sourcetype", "cisco:nvm:flowdata"),
            ("source_record", "1"),
            ("source_offset", "0"),
        ], &SYSMON_ONLY_TRAFFIC));
        let p = sink.table(Table::Processes);
        assert_eq!(p.num_rows(), 1);
        expect(&row(&p, 0), &with_nulls(&[
            ("_time", "2025-06-26T16:08:54.331Z"),
            ("action", "allowed"),
            ("dest", "10E8A7F940225180BFDB748D2AE336EA7285CB8C"),
            ("original_file_name", "NULL"),
            ("parent_process", "NULL"),
            ("parent_process_exec", "cmd.exe"),
            ("parent_process_guid", "NULL"),
            ("parent_process_id", "9232"),
            ("parent_process_name", "cmd.exe"),
            ("parent_process_path", r"C:\Windows\system32\cmd.exe"),
            ("process", r#" /i "https://github.com/redcanaryco/atomic-red-team/raw/master/atomics/T1218.007/src/T1218.007_JScript.msi""#),
            ("process_exec", "msiexec.exe"),
            ("process_guid", "071161F29663831BB4A1C0FADA9805E0"),
            ("process_hash", "23EC37A4DF21893A1B3B6F5F72B2D78918E86C3A90F9664F8248A2C8219F889A"),
            ("process_id", "8496"),
            ("process_integrity_level", "High"),
            ("process_current_directory", "NULL"),
            ("process_name", "msiexec.exe"),
            ("process_path", r"C:\Windows\system32\msiexec.exe"),
            ("user", r"EC2AMAZ-E56LIG5\Administrator"),
            ("user_id", "NULL"),
            ("vendor_product", "Cisco Network Visibility Module"),
            ("source", "test"),
            ("sourcetype", "cisco:nvm:flowdata"),
            ("source_record", "1"),
            ("source_offset", "0"),
        ], &SYSMON_ONLY_PROCESS));
    }

    #[test]
    fn every_field_of_the_json_corpus_flow() {
        let (sink, stats) = run("security_content_example_flow.json", true);
        assert_eq!((stats.records, stats.bad), (1, 0));
        let t = sink.table(Table::AllTraffic);
        // fsms is UTC; the record's fst text ("13:58:53") is the collector's local time.
        expect(&row(&t, 0), &with_nulls(&[
            ("_time", "2026-07-14T08:28:53.536Z"),
            ("action", "allowed"),
            ("app", r"C:\Windows\System32\svchost.exe"),
            ("bytes", "7873"),
            ("bytes_in", "7660"),
            ("bytes_out", "213"),
            ("dest", "tile-service.weather.microsoft.com"),
            ("dest_ip", "104.114.110.196"),
            ("dest_port", "80"),
            ("dvc", "D5E5634FDBEE82655C9C0E7523CDCE62A8249A1C"),
            ("direction", "outbound"),
            ("protocol", "ip"),
            ("protocol_version", "4"),
            ("src", "10.10.0.38"),
            ("src_ip", "10.10.0.38"),
            ("src_port", "37351"),
            ("transport", "tcp"),
            ("user", r"WIN-ANIKET\Hostscan"),
            ("vendor_product", "Cisco Network Visibility Module"),
            ("process_id", "3040"),
            ("process_guid", "E89CC0DBD1F48055BB4FA09268E9B51D"),
            ("process_name", "svchost.exe"),
            ("process_path", r"C:\Windows\System32\svchost.exe"),
            ("dest_hostname", "tile-service.weather.microsoft.com"),
            ("source", "test"),
            ("sourcetype", "cisco:nvm:flowdata:v2"),
            ("source_record", "1"),
            ("source_offset", "0"),
        ], &SYSMON_ONLY_TRAFFIC));
        let p = sink.table(Table::Processes);
        expect(&row(&p, 0), &with_nulls(&[
            ("_time", "2026-07-14T08:28:53.536Z"),
            ("action", "allowed"),
            ("dest", "D5E5634FDBEE82655C9C0E7523CDCE62A8249A1C"),
            ("original_file_name", "NULL"),
            ("parent_process", "NULL"),
            ("parent_process_exec", "services.exe"),
            ("parent_process_guid", "NULL"),
            ("parent_process_id", "684"),
            ("parent_process_name", "services.exe"),
            ("parent_process_path", r"C:\Windows\System32\services.exe"),
            ("process", "-k UnistackSvcGroup -s WpnUserService"),
            ("process_exec", "svchost.exe"),
            ("process_guid", "E89CC0DBD1F48055BB4FA09268E9B51D"),
            ("process_hash", "B0B36BFF7AE4057F687D839CD4B3D81159AB646F1EE1B22106A927E93DECBB61"),
            ("process_id", "3040"),
            ("process_integrity_level", "Medium"),
            ("process_current_directory", "NULL"),
            ("process_name", "svchost.exe"),
            ("process_path", r"C:\Windows\System32\svchost.exe"),
            ("user", r"WIN-ANIKET\Hostscan"),
            ("user_id", "NULL"),
            ("vendor_product", "Cisco Network Visibility Module"),
            ("source", "test"),
            ("sourcetype", "cisco:nvm:flowdata:v2"),
            ("source_record", "1"),
            ("source_offset", "0"),
        ], &SYSMON_ONLY_PROCESS));
    }

    #[test]
    fn stages_are_one_flow_processes_one_row_and_endpoints_named() {
        for (file, json) in [("t1218_007_msiexec_nvm_kv.log", false), ("t1218_007_msiexec_nvm.json", true)] {
            let (sink, stats) = run(file, json);
            assert_eq!(stats.records, 11, "{file}");
            assert_eq!(stats.skipped.get("NVM flow stage superseded by a later report"), Some(&2), "{file}");
            let t = sink.table(Table::AllTraffic);
            assert_eq!(t.num_rows(), 6, "{file}: 8 flow records, 6 flows");
            let rows: Vec<_> = (0..t.num_rows()).map(|i| row(&t, i)).collect();
            let github: Vec<_> = rows.iter().filter(|r| r["dest_hostname"] == "github.com").collect();
            assert_eq!(github.len(), 1, "{file}");
            // The end stage's figures.
            assert_eq!((github[0]["bytes_in"].as_str(), github[0]["bytes_out"].as_str()), ("96422", "2012"));
            // Host B's endpoint record comes after its flow and still names it.
            assert!(rows.iter().any(|r| r["process_name"] == "chrome.exe" && r["dvc"].ends_with(".corp.acme.example")), "{file}");
            assert!(rows.iter().all(|r| r["dvc"].ends_with(".corp.acme.example")), "{file}");
            let p = sink.table(Table::Processes);
            // svchost, the ART msiexec (3 flow records, 2 flows), the local msiexec, chrome, OneDrive.
            assert_eq!(p.num_rows(), 5, "{file}");
        }
    }

    #[test]
    fn absurd_times_are_bad_records_not_crashes() {
        let good = std::fs::read_to_string(sample("nvm", "security_content_example_flow_kv.log")).unwrap();
        let input = good.replace("fss=\"1750954134\"", "fss=\"9000000000000\"").replace("fsms=\"1750954134331\"", "fsms=\"-9000000000000000\"");
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink);
        convert_kv(BufReader::new(input.as_bytes()), "x.log", &mut out).unwrap();
        let stats = out.finish().unwrap();
        // One record, one bad record (not one per row it would have made).
        assert_eq!((stats.records, stats.bad), (1, 1), "{stats:?}");
        assert!(stats.bad_records[0].reason.contains("outside 1970-01-01 to 2100-01-01"), "{stats:?}");
        assert_eq!(sink.table(Table::AllTraffic).num_rows(), 0);
        assert_eq!(sink.table(Table::Processes).num_rows(), 0);
    }

    #[test]
    fn garbage_lines_are_bad_records_and_the_rest_is_kept() {
        let good = std::fs::read_to_string(sample("nvm", "security_content_example_flow_kv.log")).unwrap();
        let input = format!("garbage without pairs\n{good}not=\"closed\n");
        let mut sink = VecSink::default();
        let mut out = Emitter::new(&mut sink);
        convert_kv(BufReader::new(input.as_bytes()), "x.log", &mut out).unwrap();
        let stats = out.finish().unwrap();
        assert_eq!(stats.bad, 2);
        assert_eq!(stats.bad_records[0].record, Some(1));
        assert_eq!(stats.bad_records[1].record, Some(3));
        assert_eq!(sink.table(Table::AllTraffic).num_rows(), 1);
    }
}
