//! Sigma rules through the CLI: a directory of rules is listed, checked, shown and run, alone and
//! all together; SigmaHQ's own regression tests (`../shared/corpus/sigma`) give their match counts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::common::*;

const CERTUTIL_ID: &str = "0c5b8d55-41a8-4b8e-9f0e-2f6e1d3c7a01";
const MSIEXEC_WEB_ID: &str = "7d3c1e42-9b5a-4f6e-8c2d-1a0b9e8f7c02";

/// Rules written for these tests (not SigmaHQ's): two that compile, two that do not, and a YAML
/// file that is not a rule.
fn rules_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    let write = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    };
    write(
        "process_creation/certutil_password.yml",
        &format!(
            "title: Certutil With A Password\nid: {CERTUTIL_ID}\nstatus: experimental\nlevel: medium\ntags:\n  - attack.credential-access\n  - attack.t1552.004\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  selection:\n    Image|endswith: '\\certutil.exe'\n    CommandLine|contains|windash: ' -p '\n  condition: selection\n"
        ),
    );
    write(
        "network_connection/msiexec_web.yml",
        &format!(
            "title: MSIExec Talking To The Web\nid: {MSIEXEC_WEB_ID}\nstatus: test\nlevel: high\ntags:\n  - attack.defense-evasion\n  - attack.t1218.007\nlogsource:\n  category: network_connection\n  product: windows\ndetection:\n  selection:\n    Image|endswith: '\\msiexec.exe'\n    DestinationPort:\n      - 80\n      - 443\n  condition: selection\n"
        ),
    );
    write(
        "network_connection/needs_a_file_name.yml",
        "title: Needs A File Name\nid: 2f0e3d4c-0000-4000-8000-000000000003\nlogsource:\n  category: network_connection\n  product: windows\ndetection:\n  selection:\n    TargetFilename|endswith: '.lnk'\n  condition: selection\n",
    );
    write(
        "file_event/a_file.yml",
        "title: A File\nid: 2f0e3d4c-0000-4000-8000-000000000004\nlogsource:\n  category: file_event\n  product: windows\ndetection:\n  selection:\n    TargetFilename|endswith: '.lnk'\n  condition: selection\n",
    );
    write("tools/settings.yaml", "name: not a rule\nvalues: [1, 2]\n");
    dir
}

/// `--format json` output (one object per line) as text values by column.
fn json_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .collect()
}

fn count(lake: &Path, sql: &str) -> usize {
    query_csv(lake, sql, &[])[1].parse().unwrap()
}

#[test]
fn a_directory_of_sigma_rules_is_listed_checked_shown_and_run() {
    let lake = sample_lake();
    let rules = rules_dir();
    let dir = rules.path().to_str().unwrap();

    // Listed in the order of their files, with their identity, level and status; the two that do
    // not compile are counted.
    let out = cimlake(lake, &["detect", "--list", "--sql-dir", dir]);
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    let sigma: Vec<Vec<&str>> = listed
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .filter(|r: &Vec<&str>| r[7] == "Sigma")
        .collect();
    assert_eq!(
        sigma,
        vec![
            vec![
                MSIEXEC_WEB_ID,
                MSIEXEC_WEB_ID,
                "MSIExec Talking To The Web",
                "T1218.007",
                "cimlake",
                dir,
                "0 * * * * (-70m@m to -10m@m)",
                "Sigma",
                "high",
                "test",
                "-",
                "dvc:system:75,user:user:75,process_name:process_name"
            ],
            vec![
                CERTUTIL_ID,
                CERTUTIL_ID,
                "Certutil With A Password",
                "T1552.004",
                "cimlake",
                dir,
                "0 * * * * (-70m@m to -10m@m)",
                "Sigma",
                "medium",
                "experimental",
                "-",
                "dest:system:50,user:user:50,process_name:process_name"
            ],
        ]
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("4 Sigma rules, 2 of them not compiled"),
        "{err}"
    );
    assert!(err.contains("note: 2 Sigma rules do not compile"), "{err}");

    // --check: every other detection plans; the rules that do not compile, grouped by reason.
    let checked = cimlake(lake, &["detect", "--check", "--sql-dir", dir]);
    assert_eq!(checked.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        stdout.contains("# other log source (product: windows, category: file_event) (1 rule)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# unknown field TargetFilename in network_connection (1 rule)\n"),
        "{stdout}"
    );
    assert!(stdout.contains("needs_a_file_name.yml: 2f0e3d4c-0000-4000-8000-000000000003 (Needs A File Name): unknown field TargetFilename"), "{stdout}");
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        stderr.contains("all plan")
            && stderr.contains("Sigma rules: 2 of 4 compile (50.0%); 2 do not, in 2 groups above"),
        "{stderr}"
    );

    // --show-sql: what runs.
    let sql = cimlake_ok(
        lake,
        &[
            "detect",
            "--show-sql",
            "--detection",
            "certutil with a password",
            "--sql-dir",
            dir,
        ],
    );
    assert!(
        sql.contains("FROM endpoint.processes")
            && sql.contains("ends_with(lower(process_path), '\\certutil.exe')"),
        "{sql}"
    );
    assert!(
        sql.contains("contains(lower(process), ' /p ')"),
        "windash variants: {sql}"
    );

    // One rule, by id: the rows an independent query finds.
    let certutil = json_rows(&cimlake_ok(
        lake,
        &[
            "detect",
            "--detection",
            CERTUTIL_ID,
            "--format",
            "json",
            "--sql-dir",
            dir,
        ],
    ));
    let expected = count(
        lake,
        r"SELECT count(*) FROM endpoint.processes WHERE lower(process_path) LIKE '%\\certutil.exe' AND regexp_like(process, ' [-/–—―]p ', 'i')",
    );
    assert!(expected > 0);
    assert_eq!(certutil.len(), expected);
    assert!(certutil.iter().all(|r| r["rule_id"] == CERTUTIL_ID
        && r["rule_level"] == "medium"
        && !r["source"].is_empty()
        && !r["source_record"].is_empty()));
    let web = json_rows(&cimlake_ok(
        lake,
        &[
            "detect",
            "--detection",
            MSIEXEC_WEB_ID,
            "--format",
            "json",
            "--sql-dir",
            dir,
        ],
    ));
    let expected_web = count(
        lake,
        r"SELECT count(*) FROM network_traffic.all_traffic WHERE lower(process_path) LIKE '%\\msiexec.exe' AND dest_port IN (80, 443)",
    );
    assert!(expected_web > 0);
    assert_eq!(web.len(), expected_web);

    // All Sigma rules of a log source in one pass: the same rows as each rule alone.
    let together = json_rows(&cimlake_ok(
        lake,
        &[
            "detect",
            "--detection",
            "sigma:network_connection",
            "--format",
            "json",
            "--sql-dir",
            dir,
        ],
    ));
    assert_eq!(together, web);
    // Every detection: the built-in one, then the Sigma rules of each log source together.
    let all = cimlake_ok(lake, &["detect", "--sql-dir", dir]);
    assert!(
        all.contains("Windows HTTP Network Communication From MSIExec - Rule — cimlake mode"),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "Sigma process_creation — 1 rules — {expected} matches of 1 rules"
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "Sigma network_connection — 1 rules — {expected_web} matches of 1 rules"
        )),
        "{all}"
    );
    // Two log sources do not fit one output.
    let refused = cimlake(
        lake,
        &[
            "detect",
            "--detection",
            "sigma",
            "--format",
            "json",
            "--sql-dir",
            dir,
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("sigma:CATEGORY"));
}

/// Sysmon's EventID 3 carries no command line: a `network_connection` rule that names one (SigmaHQ
/// has four, written for agents that add it) runs with the field absent, as Sigma reads a field an
/// event lacks, instead of being refused.
#[test]
fn a_field_the_event_lacks_is_absent_not_refused() {
    let lake = sample_lake();
    let dir = TempDir::new().unwrap();
    let rule = |name: &str, id: &str, extra: &str, condition: &str| {
        let yaml = format!(
            "title: {name}\nid: {id}\nlogsource:\n  category: network_connection\n  product: windows\ndetection:\n  selection:\n    Image|endswith: '\\msiexec.exe'\n    DestinationPort: [80, 443]\n{extra}  condition: {condition}\n"
        );
        fs::write(dir.path().join(format!("{id}.yml")), yaml).unwrap();
    };
    let filtered = "2f0e3d4c-0000-4000-8000-000000000011";
    let selected = "2f0e3d4c-0000-4000-8000-000000000012";
    rule("Filtered By Command Line", filtered, "  filter:\n    CommandLine|contains: '/i'\n", "selection and not filter");
    rule("Selected By Command Line", selected, "    CommandLine|contains: '/i'\n", "selection");
    let d = dir.path().to_str().unwrap();

    let checked = cimlake(lake, &["detect", "--check", "--sql-dir", d]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success() && stderr.contains("Sigma rules: 2 of 2 compile"), "{stderr}");

    let run = |id: &str| json_rows(&cimlake_ok(lake, &["detect", "--detection", id, "--format", "json", "--sql-dir", d]));
    let expected = count(
        lake,
        r"SELECT count(*) FROM network_traffic.all_traffic WHERE lower(process_path) LIKE '%\\msiexec.exe' AND dest_port IN (80, 443)",
    );
    assert!(expected > 0);
    assert_eq!(run(filtered).len(), expected, "a filter on the absent command line filters nothing");
    assert_eq!(run(selected).len(), 0, "a selection on it selects nothing");
    // Together, in one scan, the same.
    let together = json_rows(&cimlake_ok(lake, &["detect", "--detection", "sigma:network_connection", "--format", "json", "--sql-dir", d]));
    assert_eq!(together.len(), expected);
    assert!(together.iter().all(|r| r["rule_id"] == filtered));
}

/// One regression test of SigmaHQ: a rule, an EVTX holding its positive event(s), and how many
/// matches the rule must find there.
struct Regression {
    name: String,
    rule_id: String,
    match_count: Option<usize>,
    evtx: PathBuf,
}

/// `info.yml` of each test (a fixed, simple layout: `rule_metadata: - id: …` and
/// `match_count: N`).
fn regressions(category: &str) -> Vec<Regression> {
    let base = corpus()
        .join("sigma/regression_data/rules/windows")
        .join(category);
    let mut out = Vec::new();
    for entry in fs::read_dir(&base).unwrap() {
        let dir = entry.unwrap().path();
        let info = fs::read_to_string(dir.join("info.yml")).unwrap();
        let mut lines = info
            .lines()
            .skip_while(|l| !l.starts_with("rule_metadata:"));
        let rule_id = lines
            .find_map(|l| l.trim().strip_prefix("- id:"))
            .unwrap()
            .trim()
            .to_string();
        let match_count = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("match_count:"))
            .map(|n| n.trim().parse().unwrap());
        let evtx = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "evtx"))
            .unwrap();
        out.push(Regression {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            rule_id,
            match_count,
            evtx,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[test]
fn sigmahq_regression_tests_find_their_match_counts() {
    let tests = regressions("process_creation");
    assert_eq!(tests.len(), 96, "the corpus's regression tests");
    let tmp = TempDir::new().unwrap();
    let lake = tmp.path().join("lake");
    let evtx: Vec<&str> = tests.iter().map(|t| t.evtx.to_str().unwrap()).collect();
    let mut args = vec!["ingest"];
    args.extend(&evtx);
    cimlake_ok(&lake, &args);
    let rules = corpus().join("sigma/rules");
    let out = cimlake_ok(
        &lake,
        &[
            "detect",
            "--detection",
            "sigma:process_creation",
            "--format",
            "json",
            "--sql-dir",
            rules.to_str().unwrap(),
        ],
    );
    let rows = json_rows(&out);
    // Two tests ship the same bytes: the lake holds them once, under the first path ingested.
    let content = |p: &Path| fs::read(p).unwrap();
    let mut failures = Vec::new();
    for t in &tests {
        let same: BTreeSet<String> = tests
            .iter()
            .filter(|o| content(&o.evtx) == content(&t.evtx))
            .map(|o| o.evtx.display().to_string())
            .collect();
        let found = rows
            .iter()
            .filter(|r| r["rule_id"] == t.rule_id && same.contains(&r["source"]))
            .count();
        let ok = match t.match_count {
            Some(n) => found == n,
            None => found >= 1,
        };
        if !ok {
            failures.push(format!(
                "{} ({}): {found} matches, expected {:?}",
                t.name, t.rule_id, t.match_count
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} regression tests fail:\n{}",
        failures.len(),
        tests.len(),
        failures.join("\n")
    );
}

#[test]
fn most_sigmahq_rules_compile_and_the_rest_are_grouped_by_reason() {
    let tmp = TempDir::new().unwrap();
    let rules = corpus().join("sigma/rules");
    let out = cimlake(
        &tmp.path().join("lake"),
        &["detect", "--check", "--sql-dir", rules.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Sigma rules: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let numbers: Vec<usize> = line["Sigma rules: ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    let (compiled, all) = (numbers[0], numbers[1]);
    assert_eq!(all, 1234, "{line}");
    assert!(compiled * 100 >= all * 97, "{line}");
    assert!(
        stderr.contains("all plan"),
        "every compiled rule plans: {stderr}"
    );
    // Every rule that does not compile is listed once, under its reason.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let listed = stdout.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(listed, all - compiled, "{stdout}");
    let grouped: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| {
            h.rsplit_once(" (")
                .unwrap()
                .1
                .split(' ')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(grouped, all - compiled, "{stdout}");
    // Sysmon fields of the other event type are absent, not unknown: only fields no log source
    // has are refused (`Provider_Name`, in one rule).
    assert!(!stdout.contains("unknown field CommandLine"), "{stdout}");
    assert_eq!((compiled, all), (1233, 1234), "{stdout}");
}

const MSIEXEC_CORRELATION: &str = "3b0b2c5e-6f1d-4f44-9a41-7c1d2e0f5a03";

/// (dest, process_guid) of each row of a detection's JSON output.
fn instances(rows: &[BTreeMap<String, String>]) -> BTreeSet<(String, String)> {
    rows.iter().map(|r| (r.get("dest").cloned().unwrap_or_default(), r.get("process_guid").cloned().unwrap_or_default())).collect()
}

#[test]
fn the_msiexec_correlation_finds_the_process_instances_of_the_sql_detection() {
    let sigma_dir = repo().join("data/sigma");
    let sigma_dir = sigma_dir.to_str().unwrap();
    let tmp = TempDir::new().unwrap();
    let generated = tmp.path().join("lake");
    let out = tmp.path().join("gen");
    cimlake_ok(&generated, &["gen", "--seed", "5", "--hosts", "20", "--processes", "4000", "--hours", "24", "--positives", "6", "-o", out.to_str().unwrap()]);
    for lake in [sample_lake(), generated.as_path()] {
        let by_sql = instances(&json_rows(&cimlake_ok(lake, &["detect", "--detection", "windows_http_network_communication_from_msiexec", "--format", "json"])));
        let correlation = json_rows(&cimlake_ok(lake, &["detect", "--sql-dir", sigma_dir, "--detection", MSIEXEC_CORRELATION, "--format", "json"]));
        assert!(by_sql.len() >= 4, "{}: {by_sql:?}", lake.display());
        assert_eq!(instances(&correlation), by_sql, "{}", lake.display());
        assert!(correlation.iter().all(|r| r["count"] == "2" && r["rule_level"] == "medium"));
    }
}

/// A correlation of each type over rules written here, on the sample lake: what each finds is
/// what a query over the same events says.
#[test]
fn correlation_types_count_within_their_timespan() {
    let lake = sample_lake();
    let dir = TempDir::new().unwrap();
    let rules = "title: Ping\nname: ping\nid: 11111111-0000-4000-8000-000000000001\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  selection:\n    Image|endswith: '\\ping.exe'\n  condition: selection\nlevel: low\n---\ntitle: Cmd\nname: cmd\nid: 11111111-0000-4000-8000-000000000003\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  selection:\n    Image|endswith: '\\cmd.exe'\n  condition: selection\nlevel: low\n---\ntitle: Msiexec\nname: msiexec\nid: 11111111-0000-4000-8000-000000000002\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  selection:\n    Image|endswith: '\\msiexec.exe'\n  condition: selection\nlevel: low\n";
    let corr = |id: &str, body: &str| format!("---\ntitle: C {id}\nid: 22222222-0000-4000-8000-00000000000{id}\ncorrelation:\n{body}level: high\n");
    let text = [
        rules.to_string(),
        corr("1", "  type: event_count\n  rules: [ping]\n  group-by: [Computer]\n  timespan: 1h\n  condition:\n    gte: 10\n"),
        corr("2", "  type: value_count\n  rules: [ping]\n  group-by: [Computer]\n  timespan: 1d\n  condition:\n    field: ProcessId\n    gte: 3\n"),
        corr("3", "  type: temporal\n  rules: [msiexec, cmd]\n  group-by: [Computer]\n  timespan: 1d\n"),
        corr("4", "  type: temporal_ordered\n  rules: [msiexec, cmd]\n  group-by: [Computer]\n  timespan: 1d\n"),
    ]
    .concat();
    fs::write(dir.path().join("rules.yml"), text).unwrap();
    let d = dir.path().to_str().unwrap();
    let hosts = |id: &str| -> BTreeSet<String> {
        json_rows(&cimlake_ok(lake, &["detect", "--sql-dir", d, "--detection", &format!("22222222-0000-4000-8000-00000000000{id}"), "--format", "json"]))
            .iter()
            .map(|r| r["dest"].clone())
            .collect()
    };
    let expect = |sql: &str| -> BTreeSet<String> { query_csv(lake, sql, &[]).into_iter().skip(1).collect() };
    let pings = "SELECT dest, _time, process_id FROM endpoint.processes WHERE lower(process_path) LIKE '%\\\\ping.exe'";
    let msiexec = "SELECT dest, _time FROM endpoint.processes WHERE lower(process_path) LIKE '%\\\\msiexec.exe'";
    let cmd = "SELECT dest, _time FROM endpoint.processes WHERE lower(process_path) LIKE '%\\\\cmd.exe'";
    let e1 = expect(&format!("WITH p AS ({pings}) SELECT DISTINCT a.dest FROM p a JOIN p b ON a.dest = b.dest AND b._time >= a._time AND b._time <= a._time + INTERVAL '1 hour' GROUP BY a.dest, a._time HAVING count(*) >= 10"));
    let e2 = expect(&format!("WITH p AS ({pings}) SELECT DISTINCT a.dest FROM p a JOIN p b ON a.dest = b.dest AND b._time >= a._time AND b._time <= a._time + INTERVAL '1 day' GROUP BY a.dest, a._time HAVING count(DISTINCT b.process_id) >= 3"));
    let near = |ordered: bool| {
        let order = if ordered { "b._time >= a._time AND b._time <= a._time + INTERVAL '1 day'" } else { "b._time BETWEEN a._time - INTERVAL '1 day' AND a._time + INTERVAL '1 day'" };
        expect(&format!("WITH a AS ({msiexec}), b AS ({cmd}) SELECT DISTINCT a.dest FROM a JOIN b ON a.dest = b.dest AND {order}"))
    };
    assert!(!e1.is_empty() && !e2.is_empty(), "the sample has ping bursts: {e1:?} {e2:?}");
    assert_eq!(hosts("1"), e1);
    assert_eq!(hosts("2"), e2);
    // Some host runs cmd.exe only before msiexec.exe: in any order, not in the order named.
    assert!(!near(true).is_empty() && near(true).len() < near(false).len(), "{:?} {:?}", near(true), near(false));
    assert_eq!(hosts("3"), near(false));
    assert_eq!(hosts("4"), near(true));
}

/// Every SigmaHQ rule over the bundled samples and every log of `../shared/corpus` (Sysmon and
/// NVM, in every shape): the run finishes, the guards that spare rules most rows change no match
/// (the same output with `CIMLAKE_SIGMA_GUARDS=off`), and cimlake's evaluator finds what the
/// engine finds running each rule's SQL condition (`CIMLAKE_SIGMA_EVALUATOR=datafusion`).
#[test]
fn every_rule_runs_over_the_samples_and_the_corpus_and_guards_lose_nothing() {
    let tmp = TempDir::new().unwrap();
    let lake = tmp.path().join("lake");
    let c = corpus();
    let logs: Vec<String> = ["evtx", "nvm", "otrf_json", "winlogbeat_json", "xmlwineventlog"].iter().map(|d| c.join(d).display().to_string()).collect();
    // The corpus holds a truncated archive on purpose: its records before the damage are kept.
    let mut args = vec!["ingest", "--salvage", "data/logs"];
    args.extend(logs.iter().map(String::as_str));
    let regressions: Vec<String> = regressions("process_creation").iter().map(|t| t.evtx.display().to_string()).collect();
    args.extend(regressions.iter().map(String::as_str));
    cimlake_ok(&lake, &args);
    let rules = c.join("sigma/rules");
    let run = |var: &str, value: &str| {
        let out = command(&lake, &["detect", "--detection", "sigma", "--sql-dir", rules.to_str().unwrap()]).env(var, value).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let guarded = run("CIMLAKE_SIGMA_GUARDS", "on");
    let heads: Vec<&str> = guarded.lines().filter(|l| l.starts_with("Sigma ")).collect();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let fired = |head: &str| -> usize { head.rsplit_once(" matches of ").unwrap().1.trim_end_matches(" rules").parse().unwrap() };
    assert!(fired(heads[0]) >= 96 && fired(heads[1]) >= 1, "{heads:?}");
    assert_eq!(guarded, run("CIMLAKE_SIGMA_GUARDS", "off"));
    assert_eq!(guarded, run("CIMLAKE_SIGMA_EVALUATOR", "datafusion"));
}

/// The scheduler runs Sigma rules like any detection: their matches go to `detections.results`,
/// their risk events (host and user, scored by level, ATT&CK from the tags) to `risk.all_risk`.
#[test]
fn scheduled_sigma_rules_write_results_and_risk() {
    let tmp = TempDir::new().unwrap();
    let lake = tmp.path().join("lake");
    copy_dir(sample_lake(), &lake);
    let sigma_dir = repo().join("data/sigma");
    let out = cimlake_ok(&lake, &["schedule", "--once", "--now", "2026-11-03T15:10:00Z", "--sql-dir", sigma_dir.to_str().unwrap()]);
    assert!(out.contains(&format!("ran {MSIEXEC_CORRELATION} (cimlake) [2026-11-03T13:50:00Z, 2026-11-03T14:50:00Z) scheduled")), "{out}");
    let results = query_csv(&lake, &format!("SELECT count(*) FROM detections.results WHERE detection = '{MSIEXEC_CORRELATION}'"), &[]);
    let n: usize = results[1].parse().unwrap();
    assert!(n > 0);
    let risk = query_csv(
        &lake,
        &format!("SELECT DISTINCT risk_object_type, risk_score, array_to_string(\"annotations.mitre_attack\", ',') FROM risk.all_risk WHERE detection = '{MSIEXEC_CORRELATION}'"),
        &[],
    );
    assert_eq!(risk[1..], ["system,50,T1218.007".to_string()], "one system risk object per correlation row, scored as medium");
    let risk_rows = query_csv(&lake, &format!("SELECT count(*) FROM risk.all_risk WHERE detection = '{MSIEXEC_CORRELATION}'"), &[]);
    assert_eq!(risk_rows[1].parse::<usize>().unwrap(), n);
}

/// `sigma.toml` at the root of a directory sets the schedule of its Sigma rules; one that does not
/// parse is an error naming it.
#[test]
fn a_directory_sets_the_schedule_of_its_sigma_rules() {
    let lake = sample_lake();
    let rules = rules_dir();
    let dir = rules.path().to_str().unwrap();
    fs::write(rules.path().join("sigma.toml"), "[schedule]\ncron = \"*/15 * * * *\"\nearliest = \"-20m@m\"\nlatest = \"-5m@m\"\n").unwrap();
    let listed = cimlake_ok(lake, &["detect", "--list", "--sql-dir", dir]);
    let schedules: BTreeSet<&str> = listed.lines().filter(|l| l.contains("\tSigma\t")).map(|l| l.split('\t').nth(6).unwrap()).collect();
    assert_eq!(schedules, BTreeSet::from(["*/15 * * * * (-20m@m to -5m@m)"]));
    fs::write(rules.path().join("sigma.toml"), "[schedule]\ncron = \"*/15 * * * *\"\n").unwrap();
    let out = cimlake(lake, &["detect", "--list", "--sql-dir", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sigma.toml"), "{}", String::from_utf8_lossy(&out.stderr));
}
