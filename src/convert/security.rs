//! Maps Windows Security audit events to CIM rows: EventID 4688 ("A new process has been
//! created") becomes an `endpoint.processes` row, as in Splunk's CIM and in Sigma's
//! `process_creation` category. Other Security events are counted as skipped.
//!
//! | 4688 field                         | column                                     |
//! |------------------------------------|--------------------------------------------|
//! | `NewProcessName`                   | `process_path` (and `process_name`)        |
//! | `CommandLine`                      | `process`                                  |
//! | `NewProcessId` (hex)               | `process_id`                               |
//! | `ProcessId` (hex, the creator)     | `parent_process_id`                        |
//! | `ParentProcessName`                | `parent_process_path`                      |
//! | `Target…` (else `Subject…`)        | `user` (`DOMAIN\name`), `user_id`, `logon_id` |
//! | `Subject…` (the creator's account) | `parent_user`                              |
//! | `MandatoryLabel`                   | `process_integrity_level` (`S-1-16-8192` → `Medium`) |
//!
//! There is no process GUID, hash, file version or current directory in a 4688 event; those
//! columns stay null. `vendor_product` is `Microsoft Windows`.

use super::sysmon::{checked, parse_int, parse_system_time, MAX_PID};
use super::xml_event::WinEvent;
use super::{BadRecord, ConvertError, Emitter};
use crate::cim::processes::ProcessRow;
use crate::cim::provenance::Provenance;

pub const PROVIDER: &str = "Microsoft-Windows-Security-Auditing";
pub const CHANNEL: &str = "Security";
pub const VENDOR_PRODUCT: &str = "Microsoft Windows";

/// Whether the event is a Security audit event: by provider name, or by channel when the
/// collector dropped the provider.
pub fn is_security(ev: &WinEvent) -> bool {
    super::sysmon::is_from(ev, PROVIDER, CHANNEL)
}

/// The name Sysmon gives an integrity level, from the mandatory label: its SID (`S-1-16-12288`)
/// or the name a renderer resolved it to (`Mandatory Label\High Mandatory Level`, as Splunk's
/// `XmlWinEventLog` exports write it). Anything else is kept as it is.
fn integrity_level(label: &str) -> &str {
    let named = label.trim().strip_prefix("Mandatory Label\\").and_then(|l| l.strip_suffix(" Mandatory Level"));
    match (label.trim().to_ascii_uppercase().as_str(), named) {
        ("S-1-16-0", _) | (_, Some("Untrusted")) => "Untrusted",
        ("S-1-16-4096", _) | (_, Some("Low")) => "Low",
        ("S-1-16-8192", _) | (_, Some("Medium")) => "Medium",
        ("S-1-16-8448", _) | (_, Some("Medium Plus")) => "MediumPlus",
        ("S-1-16-12288", _) | (_, Some("High")) => "High",
        ("S-1-16-16384", _) | (_, Some("System")) => "System",
        ("S-1-16-20480", _) | (_, Some("Protected Process")) => "Protected",
        _ => label,
    }
}

/// An account field: absent, empty and `-` mean none.
fn given<'a>(ev: &'a WinEvent, field: &str) -> Option<&'a str> {
    ev.data(field).map(str::trim).filter(|v| !v.is_empty() && *v != "-")
}

/// One account of the event (`Subject` or `Target`): `DOMAIN\name` as Sysmon writes users, the
/// SID and the logon id. `None` when the event names no such account (a 4688 whose new process
/// runs as its creator has `TargetUserName` `-` and `TargetLogonId` `0x0`).
struct Account<'a> {
    user: Option<String>,
    sid: Option<&'a str>,
    logon_id: Option<&'a str>,
}

fn account<'a>(ev: &'a WinEvent, who: &str) -> Option<Account<'a>> {
    let name = given(ev, &format!("{who}UserName"));
    // The null SID, as a SID or as a renderer names it.
    let sid = given(ev, &format!("{who}UserSid")).filter(|s| *s != "S-1-0-0" && !s.eq_ignore_ascii_case("NULL SID"));
    let logon_id = given(ev, &format!("{who}LogonId")).filter(|l| parse_int(Some(l)) != Some(0));
    if name.is_none() && sid.is_none() && logon_id.is_none() {
        return None;
    }
    let user = name.map(|n| match given(ev, &format!("{who}DomainName")) {
        Some(domain) => format!("{domain}\\{n}"),
        None => n.to_string(),
    });
    Some(Account { user, sid, logon_id })
}

/// Maps one Security event to a row (or a skip, or a bad record) on `out`.
pub fn convert_event(ev: &WinEvent, prov: Provenance<'_>, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    let bad = |reason: String| BadRecord {
        source: prov.source.to_string(),
        record: prov.record,
        offset: prov.offset,
        reason,
    };
    let Some(id) = ev.event_id.as_deref().and_then(|s| s.trim().parse::<u32>().ok()) else {
        return out.bad(bad(format!("Security event with EventID {:?}", ev.event_id)));
    };
    if id != 4688 {
        out.skip(format!("Security event {id}"));
        return Ok(());
    }
    let Some(time_us) = ev.system_time.as_deref().and_then(parse_system_time) else {
        // NXLog's flattened JSON gives Security events only `TimeCreated`, local time without a
        // zone (Sysmon events carry their own `UtcTime`): the instant is unknown, so say so.
        if let (None, Some(local)) = (&ev.system_time, ev.data("TimeCreated")) {
            return out.bad(bad(format!("Security event 4688 has only a local time without a zone (TimeCreated {local:?}), not UTC")));
        }
        return out.bad(bad(format!("Security event 4688 without a valid TimeCreated@SystemTime ({:?})", ev.system_time)));
    };
    let mut ids = [None, None];
    for (slot, field) in ids.iter_mut().zip(["NewProcessId", "ProcessId"]) {
        match checked(ev, field, MAX_PID) {
            Ok(v) => *slot = v,
            Err(reason) => return out.bad(bad(format!("Security event 4688: {reason}"))),
        }
    }
    let subject = account(ev, "Subject");
    let target = account(ev, "Target").filter(|t| t.user.is_some() || t.sid.is_some());
    let runs_as = target.as_ref().or(subject.as_ref());
    let row = ProcessRow {
        time_us,
        action: Some("allowed"),
        dest: ev.computer.as_deref().filter(|c| !c.is_empty()),
        parent_process_id: ids[1],
        parent_process_path: ev.data("ParentProcessName"),
        process: ev.data("CommandLine"),
        process_id: ids[0],
        process_integrity_level: ev.data("MandatoryLabel").map(integrity_level),
        process_path: ev.data("NewProcessName"),
        user: runs_as.and_then(|a| a.user.as_deref()),
        user_id: runs_as.and_then(|a| a.sid),
        vendor_product: Some(VENDOR_PRODUCT),
        logon_id: target.as_ref().and_then(|t| t.logon_id).or(subject.as_ref().and_then(|s| s.logon_id)),
        parent_user: subject.as_ref().and_then(|s| s.user.as_deref()),
        provenance: prov,
        ..Default::default()
    };
    out.process(&row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrity_levels_by_label() {
        assert_eq!(integrity_level("S-1-16-8192"), "Medium");
        assert_eq!(integrity_level("s-1-16-16384"), "System");
        assert_eq!(integrity_level("S-1-16-12288"), "High");
        assert_eq!(integrity_level("S-1-16-99"), "S-1-16-99");
        assert_eq!(integrity_level("Mandatory Label\\High Mandatory Level"), "High");
        assert_eq!(integrity_level("Mandatory Label\\Medium Plus Mandatory Level"), "MediumPlus");
        assert_eq!(integrity_level("Mandatory Label\\Odd Mandatory Level"), "Mandatory Label\\Odd Mandatory Level");
    }

    fn event<'a>(data: &[(&'a str, &'a str)]) -> WinEvent<'a> {
        WinEvent { data: data.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(), ..Default::default() }
    }

    #[test]
    fn the_new_process_runs_as_the_target_when_one_is_named() {
        let creator = [
            ("SubjectUserSid", "S-1-5-18"),
            ("SubjectUserName", "WS01$"),
            ("SubjectDomainName", "ACME"),
            ("SubjectLogonId", "0x3e7"),
        ];
        let same = event(&[&creator[..], &[("TargetUserSid", "S-1-0-0"), ("TargetUserName", "-"), ("TargetDomainName", "-"), ("TargetLogonId", "0x0")]].concat());
        let subject = account(&same, "Subject").unwrap();
        assert!(account(&same, "Target").is_none());
        assert_eq!((subject.user.as_deref(), subject.sid, subject.logon_id), (Some("ACME\\WS01$"), Some("S-1-5-18"), Some("0x3e7")));
        let other = event(&[&creator[..], &[("TargetUserSid", "S-1-5-21-1-2-3-1013"), ("TargetUserName", "jdoe"), ("TargetDomainName", "ACME"), ("TargetLogonId", "0x8d4ac")]].concat());
        let target = account(&other, "Target").unwrap();
        assert_eq!((target.user.as_deref(), target.sid, target.logon_id), (Some("ACME\\jdoe"), Some("S-1-5-21-1-2-3-1013"), Some("0x8d4ac")));
    }

    /// The rows (and stats) of every event of an XmlWinEventLog sample that `keep` accepts.
    fn rows_of(file: &str, keep: impl Fn(&str) -> bool) -> (Vec<std::collections::BTreeMap<String, String>>, crate::convert::Stats) {
        use crate::convert::test_util::{row, sample};
        use crate::convert::VecSink;
        let text = std::fs::read_to_string(sample("sysmon", file)).unwrap();
        let mut sink = VecSink::default();
        let stats = {
            let mut out = Emitter::new(&mut sink);
            for (i, xml) in text.split("<Event xmlns").skip(1).enumerate() {
                let xml = format!("<Event xmlns{}", &xml[..xml.find("</Event>").unwrap() + 8]);
                let mut ev = WinEvent::default();
                if keep(&xml) {
                    super::super::xml_event::parse_into(&xml, &mut ev).unwrap();
                    let prov = Provenance { source: file, sourcetype: "XmlWinEventLog", record: Some(i as i64 + 1), offset: None };
                    super::super::windows::convert_event(&ev, prov, &mut out).unwrap();
                }
            }
            out.finish().unwrap()
        };
        let p = sink.table(crate::cim::Table::Processes);
        ((0..p.num_rows()).map(|i| row(&p, i)).collect(), stats)
    }

    #[test]
    fn a_4688_event_is_a_process_row() {
        let (rows, stats) = rows_of("t1218_007_msiexec_sysmon.log", |x| x.contains("<EventID>4688<"));
        assert_eq!((rows.len(), stats.skipped.len()), (1, 0));
        let r = &rows[0];
        let want = [
            ("_time", "2026-11-03T14:20:05.302193Z"),
            ("dest", "ws-eng-07.corp.acme.example"),
            ("process_id", "5312"),
            ("parent_process_id", "4120"),
            ("process_path", "C:\\Windows\\System32\\msiexec.exe"),
            ("process_name", "msiexec.exe"),
            ("process_exec", "msiexec.exe"),
            ("parent_process_path", "C:\\Windows\\System32\\cmd.exe"),
            ("parent_process_name", "cmd.exe"),
            ("process", "c:\\windows\\system32\\msiexec.exe  /q /i \"https://github.com/redcanaryco/atomic-red-team/raw/master/atomics/T1218.007/bin/T1218.007_JScript.msi\""),
            ("user", "ACME\\jdoe"),
            ("user_id", "S-1-5-21-3623811015-3361044348-30300820-1013"),
            ("parent_user", "ACME\\jdoe"),
            ("process_integrity_level", "Medium"),
            ("vendor_product", "Microsoft Windows"),
            ("action", "allowed"),
            ("process_guid", "NULL"),
            ("original_file_name", "NULL"),
            ("process_hash", "NULL"),
        ];
        for (k, v) in want {
            assert_eq!(r[k], v, "column {k}");
        }
    }

    #[test]
    fn rendered_names_in_a_splunk_export() {
        // Splunk's XmlWinEventLog renders SIDs as names: `NULL SID`, `Mandatory Label\High
        // Mandatory Level`, and the subject's SID as its account name.
        let (rows, _) = rows_of("certutil_exe_certificate_extraction.raw", |x| x.contains("<EventID>4688<"));
        assert_eq!(rows.len(), 20);
        for r in &rows {
            assert_eq!(r["process_integrity_level"], "High");
            assert_eq!(r["user"], "ATTACKRANGE\\administrator", "the creator: the target is the null SID");
            assert_eq!(r["user"], r["parent_user"]);
        }
    }

    #[test]
    fn other_security_events_are_skipped_and_a_bad_time_is_reported() {
        let (rows, stats) = rows_of("certutil_exe_certificate_extraction.raw", |x| !x.contains("Sysmon") && !x.contains("<EventID>4688<"));
        assert!(rows.is_empty());
        assert!(stats.skipped.keys().all(|k| k.starts_with("Security event ")), "{:?}", stats.skipped);
        let mut ev = WinEvent {
            provider: Some(PROVIDER.into()),
            event_id: Some("4688".into()),
            data: vec![("TimeCreated".into(), "2020-10-18 02:17:06.330".into()), ("NewProcessId".into(), "0x10".into())],
            ..Default::default()
        };
        let mut sink = crate::convert::VecSink::default();
        let stats = {
            let mut out = Emitter::new(&mut sink);
            let prov = Provenance { source: "x.json", sourcetype: "WinEventLog:json", record: Some(10), offset: None };
            convert_event(&ev, prov, &mut out).unwrap();
            ev.data[1].1 = "0xZZ".into();
            ev.system_time = Some("2020-10-18T06:17:06.330Z".into());
            convert_event(&ev, prov, &mut out).unwrap();
            out.finish().unwrap()
        };
        let reasons: Vec<_> = stats.bad_records.iter().map(|b| (b.record, b.reason.as_str())).collect();
        assert_eq!(reasons, [
            (Some(10), "Security event 4688 has only a local time without a zone (TimeCreated \"2020-10-18 02:17:06.330\"), not UTC"),
            (Some(10), "Security event 4688: NewProcessId \"0xZZ\" is not a number from 0 to 4294967295"),
        ]);
    }
}
