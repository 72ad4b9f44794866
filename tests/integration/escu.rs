//! ESCU content through the CLI: a `security_content` checkout given with `--sql-dir` is listed,
//! checked and run; the seed detection's own SPL, translated, returns the rows of the hand-written
//! `splunk.sql`.

use std::path::Path;

use tempfile::TempDir;

use crate::common::*;

const SEED: &str = "windows_http_network_communication_from_msiexec";

/// A detection's CSV output, header first, then its rows sorted (the two SQLs order alike only by
/// the columns they share).
fn sorted_csv(lake: &Path, args: &[&str]) -> Vec<String> {
    let out = cimlake_ok(lake, args);
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    assert!(!lines.is_empty(), "no output of {args:?}");
    let header = lines.remove(0);
    lines.sort();
    lines.insert(0, header);
    lines
}

fn generated_lake(tmp: &TempDir) -> std::path::PathBuf {
    let lake = tmp.path().join("lake");
    let out = tmp.path().join("gen");
    cimlake_ok(&lake, &["gen", "--seed", "17", "--hosts", "30", "--processes", "5000", "--hours", "24", "--positives", "8", "-o", out.to_str().unwrap()]);
    lake
}

#[test]
fn the_seeds_spl_translated_returns_the_rows_of_splunk_sql() {
    let checkout = repo().join("tests/data/escu_seed");
    let checkout = checkout.to_str().unwrap();
    let tmp = TempDir::new().unwrap();
    let generated = generated_lake(&tmp);
    // Beside the built-in detection of the same name, the translation is `<name>_escu`.
    let escu = format!("{SEED}_escu");
    for lake in [sample_lake(), generated.as_path()] {
        let by_hand = sorted_csv(lake, &["detect", "--detection", SEED, "--mode", "splunk", "--format", "csv"]);
        let translated = sorted_csv(lake, &["detect", "--sql-dir", checkout, "--detection", &escu, "--mode", "splunk", "--format", "csv"]);
        assert!(by_hand.len() > 5, "{}: too few rows to compare: {by_hand:?}", lake.display());
        assert_eq!(translated, by_hand, "{}", lake.display());
    }
    // It has Splunk's mode only, refused by name in the other.
    let refused = cimlake(sample_lake(), &["detect", "--sql-dir", checkout, "--detection", &escu]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("has no cimlake mode"), "{}", String::from_utf8_lossy(&refused.stderr));
}

/// ESCU's snapshot holds an older version of the seed ("Windows MSIExec With Network Connections",
/// version 4): its network tstats groups by process_id, dest, dest_port and dest_ip only, so the
/// join does not overwrite `user` with the flow's. Every other column is the hand-written SQL's.
#[test]
fn the_snapshots_older_seed_differs_from_splunk_sql_by_the_user_only() {
    let escu = corpus().join("escu");
    let lake = sample_lake();
    let by_hand = sorted_csv(lake, &["detect", "--detection", SEED, "--mode", "splunk", "--format", "csv"]);
    let older = sorted_csv(lake, &["detect", "--sql-dir", escu.to_str().unwrap(), "--detection", "windows_msiexec_with_network_connections", "--mode", "splunk", "--format", "csv"]);
    assert_eq!(older[0], by_hand[0], "the same columns");
    let user = by_hand[0].split(',').position(|c| c == "user").unwrap();
    let without_user = |rows: &[String]| -> Vec<String> {
        let mut v: Vec<String> = rows[1..]
            .iter()
            .map(|r| {
                let mut f: Vec<&str> = r.split(',').collect();
                f.remove(user);
                f.join(",")
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(without_user(&older), without_user(&by_hand));
    assert_ne!(older, by_hand, "the user differs somewhere (the flow's user in splunk.sql)");
}

#[test]
fn the_escu_snapshot_translates_lists_and_checks() {
    let escu = corpus().join("escu");
    let escu = escu.to_str().unwrap();
    let no_lake = TempDir::new().unwrap();
    let checked = cimlake(no_lake.path(), &["detect", "--check", "--sql-dir", escu]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    // Every translated detection plans; the rest are listed by construct.
    assert!(stderr.contains(": all plan"), "{stderr}");
    let summary = stderr.lines().find(|l| l.starts_with("ESCU detections over the lake's data models:")).expect(&stderr);
    let (ok, all) = summary.split(": ").nth(1).unwrap().split_once(" of ").unwrap();
    let (ok, all): (usize, usize) = (ok.parse().unwrap(), all.split_whitespace().next().unwrap().parse().unwrap());
    assert_eq!(all, 434, "{summary}");
    assert!(ok * 100 >= all * 95, "{summary}");
    assert_eq!(checked.status.code(), Some(1), "some do not translate: exit 1");
    let groups: Vec<&str> = stdout.lines().filter(|l| l.starts_with("# ESCU: ")).collect();
    assert!(groups.iter().any(|g| g.starts_with("# ESCU: unsupported command apply")), "{stdout}");
    let listed_rejects = stdout.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(listed_rejects, all - ok);

    // --list: name, id, ATT&CK, stories, schedule and risk (the older observable form here).
    let listed = cimlake_ok(no_lake.path(), &["detect", "--list", "--sql-dir", escu]);
    let row: Vec<&str> = listed.lines().find(|l| l.starts_with("windows_msiexec_with_network_connections\t")).expect(&listed).split('\t').collect();
    assert_eq!(row[1], "827409a1-5393-4d8d-8da4-bbb297c262a7");
    assert_eq!(row[3], "T1218.007");
    assert_eq!(row[4], "splunk");
    assert_eq!(row[6], "0 * * * * (-70m@m to -10m@m)");
    assert_eq!(row[9], "production");
    assert_eq!(row[10], "Windows System Binary Proxy Execution MSIExec");
    assert_eq!(row[11], "user:user:35,dest:system:35,parent_process_name:process_name,process_name:process");
    assert_eq!(listed.lines().count(), 1 + 1 + ok, "the header, the built-in detection and every translation");

    // --show-sql prints the translation, with the filter macro as the editable SQL macro.
    let sql = cimlake_ok(no_lake.path(), &["detect", "--show-sql", "--sql-dir", escu, "--detection", "windows_msiexec_with_network_connections", "--mode", "splunk"]);
    assert!(sql.contains("FROM endpoint.processes") && sql.contains("FROM network_traffic.all_traffic"), "{sql}");
    assert!(sql.contains("lower(\"process_name\") = lower('msiexec.exe')"), "{sql}");
}

/// Every translated detection runs over a generated lake without error, in one `detect`.
#[test]
fn every_translated_detection_runs_over_a_generated_lake() {
    let escu = corpus().join("escu");
    let tmp = TempDir::new().unwrap();
    let lake = generated_lake(&tmp);
    let out = cimlake(&lake, &["detect", "--sql-dir", escu.to_str().unwrap(), "--mode", "splunk"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let ran = stdout.lines().filter(|l| l.starts_with("ESCU - ") && l.contains(" — splunk mode — ")).count();
    assert!(ran >= 413, "{ran} detections ran:\n{stderr}");
    // The generated positives are msiexec connections: the seed's older version finds them.
    assert!(stdout.lines().any(|l| l.starts_with("ESCU - Windows MSIExec With Network Connections - Rule — splunk mode — ") && !l.ends_with(" 0 results")), "{stdout}");
}

/// The SQL of 20 detections of different shapes (join, eventstats, stats, rex, regex, lookup,
/// bin, eval, search, where, table, fields), pinned with `insta` snapshots
/// (`snapshots/escu_sql__NAME.snap`; `INSTA_UPDATE=always` rewrites them after an intended change).
#[test]
fn snapshots_of_translated_sql() {
    const REPRESENTATIVE: [&str; 20] = [
        "windows_msiexec_with_network_connections",
        "execution_of_file_with_spaces_before_extension",
        "remote_desktop_network_bruteforce",
        "detect_rtlo_in_process",
        "internal_horizontal_port_scan",
        "attacker_tools_on_endpoint",
        "suspicious_process_executed_from_container_file",
        "malicious_powershell_process___encoded_command",
        "excessive_number_of_taskhost_processes",
        "linux_iptables_firewall_modification",
        "windows_uac_bypass_suspicious_escalation_behavior",
        "searchprotocolhost_with_no_command_line_with_network",
        "single_letter_process_on_endpoint",
        "suspicious_powershell_command_line_arguments",
        "detect_large_outbound_icmp_packets",
        "detect_outbound_ldap_traffic",
        "regsvr32_silent_and_install_param_dll_loading",
        "windows_network_share_interaction_with_net",
        "wget_download_and_bash_execution",
        "suspicious_copy_on_system32",
    ];
    let escu = corpus().join("escu");
    let no_lake = TempDir::new().unwrap();
    for name in REPRESENTATIVE {
        let sql = cimlake_ok(no_lake.path(), &["detect", "--show-sql", "--sql-dir", escu.to_str().unwrap(), "--detection", name, "--mode", "splunk"]);
        let mut settings = insta::Settings::clone_current();
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_description(format!("cimlake detect --show-sql --sql-dir ../shared/corpus/escu --detection {name} --mode splunk"));
        settings.bind(|| insta::assert_snapshot!(format!("escu_sql__{name}"), sql));
    }
}

/// An ESCU translation is scheduled like the built-in detection, in its own (splunk) mode: its
/// results go to detections.results and its risk events, scored from its `rba:` block, to
/// risk.all_risk.
#[test]
fn an_escu_detection_is_scheduled_with_results_and_risk() {
    let checkout = repo().join("tests/data/escu_seed");
    let tmp = TempDir::new().unwrap();
    let lake = tmp.path().join("lake");
    cimlake_ok(&lake, &["ingest", "data/logs/sysmon/t1218_007_msiexec_sysmon.log"]);
    let out = cimlake_ok(&lake, &["schedule", "--once", "--now", "2026-11-03T15:10:00Z", "--sql-dir", checkout.to_str().unwrap()]);
    assert!(out.contains(&format!("ran {SEED}_escu (splunk) [2026-11-03T13:50:00Z, 2026-11-03T14:50:00Z) scheduled: ")), "{out}");
    let results = query_csv(&lake, &format!("SELECT mode, count(*) AS n FROM detections.results WHERE detection = '{SEED}_escu' GROUP BY 1"), &[]);
    // The window's rows of the Splunk-mode SQL, by hand: the same count.
    let by_hand = cimlake_ok(&lake, &["detect", "--detection", SEED, "--mode", "splunk", "--earliest", "2026-11-03T13:50:00Z", "--latest", "2026-11-03T14:50:00Z", "--format", "csv"]);
    let rows = by_hand.lines().count() - 1;
    assert!(rows > 0);
    assert_eq!(results, vec!["mode,n".to_string(), format!("splunk,{rows}")]);
    let risk = query_csv(&lake, "SELECT DISTINCT risk_object_type, risk_score FROM risk.all_risk WHERE search_name LIKE 'ESCU - %' ORDER BY 1", &[]);
    assert_eq!(risk, vec!["risk_object_type,risk_score", "system,20", "user,20"]);
}

/// Witnesses: for 30 translated detections whose `tstats where` reads process fields, a positive
/// and a negative Sysmon process creation generated from the where clause itself (every term
/// satisfied; then the first term broken), and the check that the detection finds the positive
/// and not the negative.
mod witnesses {
    use std::collections::{BTreeMap, HashMap};

    use cimlake::detect::escu::{self, parse::{Command, Search}};
    use tempfile::TempDir;

    use crate::common::*;

    pub const DETECTIONS: [&str; 30] = [
        "7zip_commandline_to_smb_share_path",
        "allow_file_and_printing_sharing_in_firewall",
        "anomalous_usage_of_7zip",
        "attempt_to_add_certificate_to_untrusted_store",
        "bcdedit_failure_recovery_modification",
        "bitsadmin_download_file",
        "certutil_with_decode_argument",
        "clear_unallocated_sector_using_cipher_app",
        "cmd_carry_out_string_command_parameter",
        "cmdline_tool_not_executed_in_cmd_shell",
        "create_local_admin_accounts_using_net_exe",
        "creation_of_shadow_copy_with_wmic_and_powershell",
        "credential_dumping_via_symlink_to_shadow_copy",
        "deleting_shadow_copies",
        "detect_html_help_renamed",
        "detect_html_help_using_infotech_storage_handlers",
        "detect_mshta_renamed",
        "detect_psexec_with_accepteula_flag",
        "detect_regsvr32_application_control_bypass",
        "detect_renamed_rclone",
        "detect_rundll32_application_control_bypass___advpack",
        "detect_rundll32_application_control_bypass___syssetup",
        "detect_sharphound_command_line_arguments",
        "detect_webshell_exploit_behavior",
        "disable_logs_using_wevtutil",
        "disabling_firewall_with_netsh",
        "domain_account_discovery_with_dsquery",
        "dsquery_domain_discovery",
        "elevated_group_discovery_with_net",
        "detect_mshta_url_in_command_line",
    ];

    /// What the positive event must hold: per CIM field, the patterns it must match and those it
    /// must not.
    #[derive(Default, Debug)]
    struct Wanted {
        must: BTreeMap<String, Vec<String>>,
        must_not: BTreeMap<String, Vec<String>>,
    }

    /// A search value's text and wildcards: `"*\\Temp\\*"` → `*\Temp\*`.
    fn pattern(raw: &str) -> String {
        let inner = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(raw);
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.push(chars.next().unwrap_or('\\')),
                c => out.push(c),
            }
        }
        out
    }

    /// Collects the terms an event must satisfy: every AND term, the first OR branch, NOT terms as
    /// patterns to avoid.
    fn wanted(s: &Search, negated: bool, w: &mut Wanted) {
        let field = |f: &str| f.strip_prefix("Processes.").unwrap_or(f).to_string();
        match s {
            Search::And(v) => v.iter().for_each(|x| wanted(x, negated, w)),
            Search::Or(v) if !negated => wanted(&v[0], negated, w),
            Search::Or(v) => v.iter().for_each(|x| wanted(x, negated, w)),
            Search::Not(x) => wanted(x, !negated, w),
            Search::In { field: f, values } if !negated => w.must.entry(field(f)).or_default().push(pattern(&values[0])),
            Search::In { field: f, values } => w.must_not.entry(field(f)).or_default().extend(values.iter().map(|v| pattern(v))),
            Search::Compare { field: f, op, value } => match (op.as_str(), negated) {
                ("=", false) | ("!=", true) => w.must.entry(field(f)).or_default().push(pattern(value)),
                ("!=", false) | ("=", true) => w.must_not.entry(field(f)).or_default().push(pattern(value)),
                _ => panic!("comparison {op} in a witness"),
            },
            Search::Word(_) => panic!("a bare word in a witness"),
        }
    }

    /// A text matching every pattern: an exact one as it is, else each one's fragments in turn
    /// (an unanchored start or end left as it is).
    fn value(patterns: &[String]) -> String {
        if let Some(exact) = patterns.iter().find(|p| !p.contains('*')) {
            return exact.clone();
        }
        let prefix = patterns.iter().find(|p| !p.starts_with('*')).map(|p| p.split('*').next().unwrap().to_string());
        let suffix = patterns.iter().find(|p| !p.ends_with('*')).map(|p| p.rsplit('*').next().unwrap().to_string());
        let mut parts: Vec<String> = prefix.into_iter().collect();
        for p in patterns {
            parts.extend(p.split('*').filter(|f| !f.is_empty()).map(str::to_string));
        }
        parts.extend(suffix);
        parts.join(" ")
    }

    /// The Sysmon EventID 1 (Winlogbeat JSON) with these CIM fields.
    fn event(host: &str, record: usize, fields: &HashMap<String, String>) -> String {
        let dir = r"C:\Windows\System32\";
        let image = fields.get("process_path").cloned().unwrap_or_else(|| format!("{dir}{}", fields.get("process_name").map_or("benign.exe", String::as_str)));
        let parent = fields.get("parent_process_path").cloned().unwrap_or_else(|| format!("{dir}{}", fields.get("parent_process_name").map_or("explorer.exe", String::as_str)));
        let mut data = serde_json::json!({
            "ProcessGuid": format!("{{CCCCCCCC-0000-0000-0000-{record:012}}}"),
            "ProcessId": (1000 + record).to_string(),
            "Image": image,
            "ParentImage": parent,
            "ParentProcessId": "4",
            "User": fields.get("user").cloned().unwrap_or("ACME\\witness".into()),
            "CommandLine": fields.get("process").cloned().unwrap_or("benign".into()),
        });
        for (cim, sysmon) in [("original_file_name", "OriginalFileName"), ("parent_process", "ParentCommandLine"), ("process_current_directory", "CurrentDirectory"), ("process_integrity_level", "IntegrityLevel")] {
            if let Some(v) = fields.get(cim) {
                data[sysmon] = serde_json::json!(v);
            }
        }
        serde_json::json!({
            "@timestamp": "2026-11-05T10:00:00.000Z",
            "winlog": {"channel": "Microsoft-Windows-Sysmon/Operational", "computer_name": host, "event_id": "1",
                       "provider_name": "Microsoft-Windows-Sysmon", "record_id": record, "event_data": data}
        })
        .to_string()
    }

    #[test]
    fn each_detection_finds_its_positive_and_not_its_negative() {
        let escu = corpus().join("escu");
        let mut yaml = BTreeMap::new();
        for dir in ["macros", "lookups"] {
            for e in std::fs::read_dir(escu.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "yml") {
                    yaml.insert(p.display().to_string(), std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        let macros = escu::load_macros(&yaml, &escu).unwrap();
        let checkout = TempDir::new().unwrap();
        copy_dir(&escu.join("macros"), &checkout.path().join("macros"));
        std::fs::create_dir_all(checkout.path().join("detections/endpoint")).unwrap();
        let mut events = Vec::new();
        let mut titles = HashMap::new();
        let names: std::collections::BTreeSet<&str> = DETECTIONS.iter().copied().collect();
        assert_eq!(names.len(), DETECTIONS.len(), "distinct detections");
        for (i, name) in names.iter().enumerate() {
            let file = escu.join(format!("detections/endpoint/{name}.yml"));
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(checkout.path().join(format!("detections/endpoint/{name}.yml")), &text).unwrap();
            let (title, search) = escu::name_and_search(&text).unwrap();
            titles.insert(format!("ESCU - {title} - Rule"), i);
            let expanded = macros.expand(&search, &|n: &str| n.ends_with("_filter").then(|| "search *".to_string())).unwrap();
            let commands = escu::parse::parse(&expanded).unwrap();
            let Some(Command::Tstats(t)) = commands.first() else { panic!("{name}: not tstats") };
            let mut w = Wanted::default();
            wanted(t.filter.as_ref().unwrap(), false, &mut w);
            let mut positive: HashMap<String, String> = w.must.iter().map(|(f, p)| (f.clone(), value(p))).collect();
            for f in w.must_not.keys() {
                positive.entry(f.clone()).or_insert_with(|| "renamed.exe".to_string());
            }
            // The negative: the positive with its first required field given another value.
            let mut negative = positive.clone();
            let (first, _) = w.must.iter().next().unwrap_or_else(|| panic!("{name}: nothing required"));
            negative.insert(first.clone(), if first.ends_with("name") { "benign.exe".into() } else { "benign".into() });
            events.push(event(&format!("pos-{i}.example"), 2 * i + 1, &positive));
            events.push(event(&format!("neg-{i}.example"), 2 * i + 2, &negative));
        }
        let logs = checkout.path().join("witnesses.json");
        std::fs::write(&logs, events.join("\n") + "\n").unwrap();
        let lake = checkout.path().join("lake");
        cimlake_ok(&lake, &["ingest", logs.to_str().unwrap()]);
        let out = cimlake_ok(&lake, &["detect", "--sql-dir", checkout.path().to_str().unwrap(), "--mode", "splunk"]);
        // One section per detection: its title line, then its table.
        let mut found: HashMap<usize, String> = HashMap::new();
        let mut current = None;
        for line in out.lines() {
            if let Some((title, _)) = line.split_once(" — splunk mode — ") {
                current = titles.get(title).copied();
                if let Some(i) = current {
                    found.insert(i, String::new());
                }
            } else if let Some(i) = current {
                found.get_mut(&i).unwrap().push_str(line);
            }
        }
        assert_eq!(found.len(), names.len(), "every detection ran:\n{out}");
        for (i, name) in names.iter().enumerate() {
            let table = &found[&i];
            assert!(table.contains(&format!("pos-{i}.example")), "{name} misses its positive:\n{table}");
            assert!(!table.contains(&format!("neg-{i}.example")), "{name} finds its negative:\n{table}");
        }
    }
}
