//! Writing generated telemetry: straight to the lake as CIM rows, or as raw logs
//! (XmlWinEventLog, Cisco NVM key="value" or JSON) for the converters to read.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Flow, Process};
use crate::cim::file_name_of;
use crate::cim::provenance::Provenance;
use crate::cim::all_traffic::TrafficRow;
use crate::cim::processes::ProcessRow;
use crate::convert::{ConvertError, Emitter};

pub const SOURCETYPE: &str = "generated";

fn ts(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).expect("in range")
}

/// Emits one process and its flows as Sysmon-shaped CIM rows.
pub fn emit(p: &Process, flows: &[Flow], source: &str, record: i64, out: &mut Emitter<'_>) -> Result<(), ConvertError> {
    let prov = Provenance { source, sourcetype: SOURCETYPE, record: Some(record), offset: None };
    out.record();
    out.process(&ProcessRow {
        time_us: p.time_us,
        action: Some("allowed"),
        dest: Some(&p.host),
        original_file_name: Some(file_name_of(p.image)),
        parent_process: Some(p.parent_command_line),
        parent_process_guid: Some(&p.parent_guid),
        parent_process_id: Some(p.parent_pid),
        parent_process_path: Some(p.parent_image),
        process: Some(&p.command_line),
        process_guid: Some(&p.guid),
        process_hash: Some(&p.hash),
        process_id: Some(p.pid),
        process_integrity_level: Some(p.integrity_level),
        process_current_directory: Some(r"C:\Windows\system32\"),
        process_path: Some(p.image),
        process_name: None,
        parent_process_name: None,
        user: Some(&p.user),
        user_id: Some("S-1-5-18"),
        vendor_product: Some("Microsoft Sysmon"),
        provenance: prov,
        ..Default::default()
    })?;
    for f in flows {
        out.record();
        out.traffic(&TrafficRow {
            time_us: f.time_us,
            action: Some("allowed"),
            app: Some(p.image),
            bytes: None,
            bytes_in: None,
            bytes_out: None,
            dest: Some(f.dest_hostname.as_deref().unwrap_or(&f.dest_ip)),
            dest_ip: Some(&f.dest_ip),
            dest_port: Some(f.dest_port),
            dvc: Some(&p.host),
            direction: Some("outbound"),
            protocol: Some("ip"),
            protocol_version: Some(4),
            src: Some(&p.host_ip),
            src_ip: Some(&p.host_ip),
            src_port: Some(f.src_port),
            transport: Some(f.transport),
            user: Some(&p.user),
            vendor_product: Some("Microsoft Sysmon"),
            process_id: Some(p.pid),
            process_guid: Some(&p.guid),
            process_name: Some(file_name_of(p.image)),
            process_path: Some(p.image),
            dest_hostname: f.dest_hostname.as_deref(),
            provenance: prov,
            ..Default::default()
        })?;
    }
    Ok(())
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

fn system(eid: u32, t: i64, record: u64, host: &str) -> String {
    format!(
        "<System><Provider Name='Microsoft-Windows-Sysmon' Guid='{{5770385F-C22A-43E0-BF4C-06F5698FFBD9}}'/><EventID>{eid}</EventID><Version>5</Version><Level>4</Level><Task>{eid}</Task><Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords><TimeCreated SystemTime='{}'/><EventRecordID>{record}</EventRecordID><Correlation/><Execution ProcessID='3012' ThreadID='4188'/><Channel>Microsoft-Windows-Sysmon/Operational</Channel><Computer>{host}</Computer><Security UserID='S-1-5-18'/></System>",
        ts(t).to_rfc3339_opts(SecondsFormat::Micros, true)
    )
}

fn data(pairs: &[(&str, &str)]) -> String {
    let mut s = String::from("<EventData>");
    for (k, v) in pairs {
        s.push_str(&format!("<Data Name='{k}'>{}</Data>", esc(v)));
    }
    s.push_str("</EventData>");
    s
}

/// Writes a process and its flows as Sysmon XmlWinEventLog lines (EventID 1 and 3).
pub fn write_xml(w: &mut (impl Write + ?Sized), p: &Process, flows: &[Flow], record: &mut u64) -> std::io::Result<()> {
    const NS: &str = "http://schemas.microsoft.com/win/2004/08/events/event";
    *record += 1;
    let utc = |t: i64| ts(t).format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    let pid = p.pid.to_string();
    let ppid = p.parent_pid.to_string();
    writeln!(
        w,
        "<Event xmlns='{NS}'>{}{}</Event>",
        system(1, p.time_us, *record, &p.host),
        data(&[
            ("RuleName", "-"),
            ("UtcTime", &utc(p.time_us)),
            ("ProcessGuid", &p.guid),
            ("ProcessId", &pid),
            ("Image", p.image),
            ("OriginalFileName", file_name_of(p.image)),
            ("CommandLine", &p.command_line),
            ("CurrentDirectory", r"C:\Windows\system32\"),
            ("User", &p.user),
            ("IntegrityLevel", p.integrity_level),
            ("Hashes", &p.hash),
            ("ParentProcessGuid", &p.parent_guid),
            ("ParentProcessId", &ppid),
            ("ParentImage", p.parent_image),
            ("ParentCommandLine", p.parent_command_line),
        ])
    )?;
    for f in flows {
        *record += 1;
        let (sp, dp) = (f.src_port.to_string(), f.dest_port.to_string());
        writeln!(
            w,
            "<Event xmlns='{NS}'>{}{}</Event>",
            system(3, f.time_us, *record, &p.host),
            data(&[
                ("RuleName", "-"),
                ("UtcTime", &utc(f.time_us)),
                ("ProcessGuid", &p.guid),
                ("ProcessId", &pid),
                ("Image", p.image),
                ("User", &p.user),
                ("Protocol", f.transport),
                ("Initiated", "true"),
                ("SourceIsIpv6", "false"),
                ("SourceIp", &p.host_ip),
                ("SourceHostname", &p.host),
                ("SourcePort", &sp),
                ("DestinationIsIpv6", "false"),
                ("DestinationIp", &f.dest_ip),
                ("DestinationHostname", f.dest_hostname.as_deref().unwrap_or("-")),
                ("DestinationPort", &dp),
            ])
        )?;
    }
    Ok(())
}

/// The NVM fields of one flow (with its process), in record order.
fn nvm_fields(p: &Process, f: &Flow, udid: &str, fv: &str) -> Vec<(&'static str, String)> {
    let s = f.time_us / 1_000_000;
    let pr = if f.transport == "udp" { "17" } else { "6" };
    let pil = match p.integrity_level {
        "System" => "16384",
        "High" => "12288",
        _ => "8192",
    };
    let args = p.command_line.strip_prefix(&format!("\"{}\"", p.image)).unwrap_or(&p.command_line).to_string();
    vec![
        ("fv", fv.to_string()),
        ("pr", pr.to_string()),
        ("sa", p.host_ip.clone()),
        ("sp", f.src_port.to_string()),
        ("da", f.dest_ip.clone()),
        ("dp", f.dest_port.to_string()),
        ("fd", "1".to_string()),
        ("fss", s.to_string()),
        ("fes", (s + 1).to_string()),
        ("fsms", (f.time_us / 1000).to_string()),
        ("fems", (f.time_us / 1000 + 1200).to_string()),
        ("udid", udid.to_string()),
        ("liuid", p.user.clone()),
        ("pa", p.user.clone()),
        ("pn", file_name_of(p.image).to_string()),
        ("ph", p.hash.trim_start_matches("SHA256=").to_string()),
        ("ppn", file_name_of(p.parent_image).to_string()),
        ("ibc", f.bytes_in.to_string()),
        ("obc", f.bytes_out.to_string()),
        ("dh", f.dest_hostname.clone().unwrap_or_else(|| "''".into())),
        ("pid", p.pid.to_string()),
        ("ppath", p.image.to_string()),
        ("parg", args),
        ("ppid", p.parent_pid.to_string()),
        ("pppath", p.parent_image.to_string()),
        ("pil", pil.to_string()),
        ("fsg", "0".to_string()),
        ("puid", p.guid.trim_matches(['{', '}']).replace('-', "")),
    ]
}

fn udid(host: &str) -> String {
    blake3::hash(host.as_bytes()).to_hex()[..40].to_uppercase()
}

/// Writes the NVM endpoint record of a host.
pub fn write_nvm_endpoint(w: &mut impl Write, host: &str, json: bool) -> std::io::Result<()> {
    let fields = [("fv", if json { "nvzFlow_v11" } else { "nvzFlow_v9" }.to_string()), ("vsn", host.to_string()), ("udid", udid(host)), ("osn", "WinNT".to_string())];
    write_nvm_record(w, &fields, json, 0)
}

fn write_nvm_record(w: &mut (impl Write + ?Sized), fields: &[(&str, String)], json: bool, t_us: i64) -> std::io::Result<()> {
    if json {
        let obj: serde_json::Map<String, serde_json::Value> =
            fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone()))).collect();
        writeln!(w, "{}", serde_json::Value::Object(obj))
    } else {
        let stamp = ts(t_us).format("%b %e %H:%M:%S");
        write!(w, "{stamp} 127.0.0.1 {stamp} nvm-collector ")?;
        for (k, v) in fields {
            write!(w, " {k}=\"{}\"", v.replace('"', "\\\""))?;
        }
        writeln!(w)
    }
}

/// Writes a process's flows as NVM records (NVM reports processes through their flows).
pub fn write_nvm(w: &mut (impl Write + ?Sized), p: &Process, flows: &[Flow], json: bool) -> std::io::Result<()> {
    let id = udid(&p.host);
    for f in flows {
        let fields = nvm_fields(p, f, &id, if json { "nvzFlow_v11" } else { "nvzFlow_v9" });
        write_nvm_record(w, &fields, json, f.time_us)?;
    }
    Ok(())
}
