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
