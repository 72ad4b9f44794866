//! Maps Sysmon events (EventID 1 process creation, EventID 3 network connection) to CIM rows,
//! exactly as `MISSION.md` lays out. Other Sysmon events and other providers are counted as
//! skipped, by reason ([`super::windows`] sends Windows Security events to [`super::security`]).

use chrono::{DateTime, NaiveDateTime};

use crate::cim::all_traffic::TrafficRow;
use crate::cim::processes::ProcessRow;
use super::xml_event::WinEvent;
use super::{BadRecord, ConvertError, Emitter};
use crate::cim::file_name_of;
use crate::cim::provenance::Provenance;

pub const PROVIDER: &str = "Microsoft-Windows-Sysmon";
pub const CHANNEL: &str = "Microsoft-Windows-Sysmon/Operational";
pub const VENDOR_PRODUCT: &str = "Microsoft Sysmon";

/// Whether the event comes from Sysmon: by provider name, or by channel when the collector
/// dropped the provider.
pub fn is_sysmon(ev: &WinEvent) -> bool {
    is_from(ev, PROVIDER, CHANNEL)
}

/// Whether the event comes from `provider`, or, when the collector dropped the provider, from
/// `channel`.
pub(super) fn is_from(ev: &WinEvent, provider: &str, channel: &str) -> bool {
    match ev.provider.as_deref() {
        Some(p) if !p.is_empty() => p.eq_ignore_ascii_case(provider),
        _ => ev.channel.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(channel)),
    }
}

/// Sysmon's name for an event id, for skip reasons.
pub fn event_name(id: u32) -> &'static str {
    match id {
        1 => "ProcessCreate",
        2 => "FileCreateTime",
        3 => "NetworkConnect",
        4 => "SysmonState",
        5 => "ProcessTerminate",
        6 => "DriverLoad",
        7 => "ImageLoad",
        8 => "CreateRemoteThread",
        9 => "RawAccessRead",
        10 => "ProcessAccess",
        11 => "FileCreate",
        12 => "RegistryObjectAddDelete",
        13 => "RegistrySetValue",
        14 => "RegistryRename",
        15 => "FileCreateStreamHash",
        16 => "SysmonConfigChange",
        17 => "PipeCreated",
        18 => "PipeConnected",
        19 => "WmiEventFilter",
        20 => "WmiEventConsumer",
        21 => "WmiEventConsumerToFilter",
        22 => "DnsQuery",
        23 => "FileDelete",
        24 => "ClipboardChange",
        25 => "ProcessTampering",
        26 => "FileDeleteDetected",
        27 => "FileBlockExecutable",
        28 => "FileBlockShredding",
        29 => "FileExecutableDetected",
        255 => "Error",
        _ => "unknown",
    }
}

/// Parses `TimeCreated@SystemTime` (`2020-10-08T11:03:46.617920300Z`) to UTC microseconds.
/// Also takes a space for `T` and a missing zone (read as UTC).
pub fn parse_system_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    let t = s.trim_end_matches('Z').replacen(' ', "T", 1);
    NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc().timestamp_micros())
}

pub(super) fn parse_int(s: Option<&str>) -> Option<i64> {
    let s = s?.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok();
    }
    s.parse().ok()
}

fn parse_port(s: Option<&str>) -> Option<i32> {
    parse_int(s).filter(|p| (0..=65535).contains(p)).map(|p| p as i32)
}

/// A numeric field: `Ok(None)` when absent (or empty, or `-`), an error when present but not a
/// number from 0 to `max` (a pid of -1, a port of 70000): such a record is bad, not a silent null.
pub(super) fn checked(ev: &WinEvent, field: &str, max: i64) -> Result<Option<i64>, String> {
    match ev.data(field).map(str::trim).filter(|v| !v.is_empty() && *v != "-") {
        None => Ok(None),
        Some(v) => parse_int(Some(v))
            .filter(|n| (0..=max).contains(n))
            .map(Some)
            .ok_or_else(|| format!("{field} {v:?} is not a number from 0 to {max}")),
    }
}

pub(super) const MAX_PID: i64 = u32::MAX as i64;
const MAX_PORT: i64 = 65535;

fn is_true(s: Option<&str>) -> bool {
    s.is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1")
}

/// A boolean field, null when absent or neither true nor false.
fn flag(s: Option<&str>) -> Option<bool> {
    match s?.trim() {
        v if v.eq_ignore_ascii_case("true") || v == "1" => Some(true),
        v if v.eq_ignore_ascii_case("false") || v == "0" => Some(false),
        _ => None,
    }
}

/// One algorithm's hash from Sysmon's `Hashes` (`MD5=…,SHA256=…,IMPHASH=…`), upper case
/// (borrowed when it is already).
fn hash_of<'a>(hashes: Option<&'a str>, algorithm: &str) -> Option<std::borrow::Cow<'a, str>> {
    hashes?
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case(algorithm))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| if v.bytes().any(|b| b.is_ascii_lowercase()) { v.to_ascii_uppercase().into() } else { v.into() })
}

/// A name the configuration gave, `-` meaning none.
fn named(s: Option<&str>) -> Option<&str> {
    s.filter(|v| *v != "-")
}

/// A host name field: empty and `-` mean "not resolved".
fn hostname(s: Option<&str>) -> Option<&str> {
    s.filter(|v| *v != "-")
}

/// Maps one event to rows (or a skip, or a bad record) on `out`.
pub fn convert_event(
    ev: &WinEvent,
    prov: Provenance<'_>,
    out: &mut Emitter<'_>,
) -> Result<(), ConvertError> {
    let bad = |reason: String| BadRecord {
        source: prov.source.to_string(),
        record: prov.record,
        offset: prov.offset,
        reason,
    };
    if !is_sysmon(ev) {
        let who = ev
            .provider
            .as_deref()
            .filter(|p| !p.is_empty())
            .or(ev.channel.as_deref())
            .unwrap_or("unknown provider");
        out.skip(format!("not Sysmon: {who}"));
        return Ok(());
    }
    let id: u32 = match ev.event_id.as_deref().and_then(|s| s.parse().ok()) {
        Some(id) => id,
        None => return out.bad(bad(format!("Sysmon event with EventID {:?}", ev.event_id))),
    };
    if id != 1 && id != 3 {
        out.skip(format!("Sysmon event {id} ({})", event_name(id)));
        return Ok(());
    }
    let Some(time_us) = ev.system_time.as_deref().and_then(parse_system_time) else {
        return out.bad(bad(format!(
            "Sysmon event {id} without a valid TimeCreated@SystemTime ({:?})",
            ev.system_time
        )));
    };
    let computer = ev.computer.as_deref().filter(|c| !c.is_empty());
    let numbers: &[(&str, i64)] = if id == 1 {
        &[("ProcessId", MAX_PID), ("ParentProcessId", MAX_PID)]
    } else {
        &[("ProcessId", MAX_PID), ("SourcePort", MAX_PORT), ("DestinationPort", MAX_PORT)]
    };
    for (field, max) in numbers {
        if let Err(reason) = checked(ev, field, *max) {
            return out.bad(bad(format!("Sysmon event {id}: {reason}")));
        }
    }
    let process_guid = guid(ev.data("ProcessGuid"));
    if id == 1 {
        let parent_process_guid = guid(ev.data("ParentProcessGuid"));
        let logon_guid = guid(ev.data("LogonGuid"));
        let hashes = ev.data("Hashes");
        let [md5, sha1, sha256, imphash] = ["MD5", "SHA1", "SHA256", "IMPHASH"].map(|a| hash_of(hashes, a));
        let row = ProcessRow {
            time_us,
            action: Some("allowed"),
            dest: computer,
            original_file_name: ev.data("OriginalFileName"),
            parent_process: ev.data("ParentCommandLine"),
            parent_process_guid: parent_process_guid.as_deref(),
            parent_process_id: parse_int(ev.data("ParentProcessId")),
            parent_process_path: ev.data("ParentImage"),
            process: ev.data("CommandLine"),
            process_guid: process_guid.as_deref(),
            process_hash: ev.data("Hashes"),
            process_id: parse_int(ev.data("ProcessId")),
            process_integrity_level: ev.data("IntegrityLevel"),
            process_current_directory: ev.data("CurrentDirectory"),
            process_path: ev.data("Image"),
            process_name: None,
            parent_process_name: None,
            user: ev.data("User"),
            user_id: ev.user_id.as_deref().filter(|u| !u.is_empty()),
            vendor_product: Some(VENDOR_PRODUCT),
            process_file_version: ev.data("FileVersion"),
            process_description: ev.data("Description"),
            process_product: ev.data("Product"),
            process_company: ev.data("Company"),
            process_md5: md5.as_deref(),
            process_sha1: sha1.as_deref(),
            process_sha256: sha256.as_deref(),
            process_imphash: imphash.as_deref(),
            logon_id: ev.data("LogonId"),
            logon_guid: logon_guid.as_deref(),
            terminal_session_id: parse_int(ev.data("TerminalSessionId")),
            parent_user: ev.data("ParentUser"),
            rule_name: named(ev.data("RuleName")),
            provenance: prov,
            ..Default::default()
        };
        out.process(&row)
    } else {
        let transport = ev.data("Protocol").map(|p| p.to_ascii_lowercase());
        let dest_hostname = hostname(ev.data("DestinationHostname"));
        let src_hostname = hostname(ev.data("SourceHostname"));
        let image = ev.data("Image");
        let ipv6 = is_true(ev.data("DestinationIsIpv6")) || is_true(ev.data("SourceIsIpv6"));
        let row = TrafficRow {
            time_us,
            action: Some("allowed"),
            app: image,
            bytes: None,
            bytes_in: None,
            bytes_out: None,
            dest: dest_hostname.or(ev.data("DestinationIp")),
            dest_ip: ev.data("DestinationIp"),
            dest_port: parse_port(ev.data("DestinationPort")),
            dvc: computer,
            direction: Some(if is_true(ev.data("Initiated")) { "outbound" } else { "inbound" }),
            protocol: Some("ip"),
            protocol_version: Some(if ipv6 { 6 } else { 4 }),
            src: src_hostname.or(ev.data("SourceIp")),
            src_ip: ev.data("SourceIp"),
            src_port: parse_port(ev.data("SourcePort")),
            transport: transport.as_deref(),
            user: ev.data("User"),
            vendor_product: Some(VENDOR_PRODUCT),
            process_id: parse_int(ev.data("ProcessId")),
            process_guid: process_guid.as_deref(),
            process_name: image.map(file_name_of),
            process_path: image,
            dest_hostname,
            initiated: flag(ev.data("Initiated")),
            src_hostname,
            src_is_ipv6: flag(ev.data("SourceIsIpv6")),
            dest_is_ipv6: flag(ev.data("DestinationIsIpv6")),
            src_port_name: named(ev.data("SourcePortName")),
            dest_port_name: named(ev.data("DestinationPortName")),
            rule_name: named(ev.data("RuleName")),
            provenance: prov,
        };
        out.traffic(&row)
    }
}

/// A GUID as Windows prints it in an event's XML, `{7C4B2A1E-6F2D-6727-4105-000000001300}`,
/// whatever form the source gave (the `evtx` crate renders GUIDs in lower case, some JSON exports
/// without braces), so the same process has one `process_guid` from every source. Anything that
/// is not a GUID is kept as it is.
fn guid(v: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    let v = v?;
    let bare = v.strip_prefix('{').and_then(|g| g.strip_suffix('}')).unwrap_or(v);
    let is_guid = bare.len() == 36
        && bare.bytes().enumerate().all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() });
    if !is_guid || (bare.len() + 2 == v.len() && !bare.bytes().any(|b| b.is_ascii_lowercase())) {
        return Some(std::borrow::Cow::Borrowed(v));
    }
    Some(std::borrow::Cow::Owned(format!("{{{}}}", bare.to_ascii_uppercase())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_take_one_form() {
        let want = "{5AB40FD1-8DEB-68F7-7E01-000000003B02}";
        for given in [want, "{5ab40fd1-8deb-68f7-7e01-000000003b02}", "5AB40FD1-8DEB-68F7-7E01-000000003B02", "5ab40fd1-8deb-68f7-7e01-000000003b02"] {
            assert_eq!(guid(Some(given)).as_deref(), Some(want), "{given}");
        }
        assert!(matches!(guid(Some(want)), Some(std::borrow::Cow::Borrowed(_))));
        for other in ["", "-", "{not-a-guid}", "5AB40FD1-8DEB-68F7-7E01-000000003B0", "{5AB40FD1_8DEB_68F7_7E01_000000003B02}"] {
            assert_eq!(guid(Some(other)).as_deref(), Some(other), "{other}");
        }
        assert_eq!(guid(None), None);
    }

    #[test]
    fn system_time_forms() {
        let us = 1_602_155_026_617_920; // 2020-10-08T11:03:46.617920Z
        assert_eq!(parse_system_time("2020-10-08T11:03:46.617920300Z"), Some(us));
        assert_eq!(parse_system_time("2020-10-08T11:03:46.617920Z"), Some(us));
        assert_eq!(parse_system_time("2020-10-08 11:03:46.617920"), Some(us));
        assert_eq!(parse_system_time("yesterday"), None);
    }

    #[test]
    fn ints_and_ports() {
        assert_eq!(parse_int(Some("2296")), Some(2296));
        assert_eq!(parse_int(Some("0x8d4ac")), Some(0x8d4ac));
        assert_eq!(parse_port(Some("70000")), None);
        assert_eq!(parse_port(Some("443")), Some(443));
        assert_eq!(parse_int(None), None);
    }
}
