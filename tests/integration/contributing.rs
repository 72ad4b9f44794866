//! The checklists of CONTRIBUTING.md, each done here the way a contributor does it.

use std::path::Path;

use tempfile::TempDir;

use crate::common::*;

/// The detection of CONTRIBUTING.md's example: `cmd.exe` processes, cimlake mode only.
fn write_example_detection(dir: &Path, sql: &str) {
    let d = dir.join("detections/cmd_processes");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::create_dir_all(dir.join("macros")).unwrap();
    std::fs::write(
        d.join("detection.toml"),
        r#"name = "Cmd Processes"
id = "5f0a4d1e-8c55-4a43-9d4b-0c8f0f3e2a11"
version = 1
type = "Hunting"
search_name = "Cmd Processes"
description = "Every cmd.exe process."
mitre_attack_id = ["T1059.003"]
filter_macro = "cmd_processes_filter"

[schedule]
cron = "*/15 * * * *"
earliest = "-20m@m"
latest = "-5m@m"

[risk]
message = "cmd.exe on $dest$"

[[risk.objects]]
field = "dest"
type = "system"
score = 5
"#,
    )
    .unwrap();
    std::fs::write(d.join("cimlake.sql"), sql).unwrap();
    std::fs::write(dir.join("macros/cmd_processes_filter.sql"), "-- Known false positives, one per line.\ntrue\nAND process NOT LIKE '%\\\\example\\\\%'\n").unwrap();
}

const EXAMPLE_SQL: &str = "-- Every cmd.exe process in the window.
SELECT _time, dest, user, process
FROM endpoint.processes
WHERE _time >= $earliest AND _time < $latest
  AND lower(process_name) = 'cmd.exe'
  AND `cmd_processes_filter`
";

/// Adding a detection is one directory: listed, checked, run in its mode, refused in the mode it
/// lacks; a mistake in it is reported by file and line.
#[test]
fn add_a_detection() {
    let lake = sample_lake();
    let user = TempDir::new().unwrap();
    write_example_detection(user.path(), EXAMPLE_SQL);
    let dir = user.path().to_str().unwrap();

    let listed = cimlake_ok(lake, &["detect", "--list", "--sql-dir", dir]);
    let mut lines = listed.lines();
    assert_eq!(lines.next(), Some("name\tid\ttitle\tattack\tmodes\torigin\tschedule\tkind\tlevel\tstatus\tstories\trisk"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        rows,
        vec![
            vec!["cmd_processes", "5f0a4d1e-8c55-4a43-9d4b-0c8f0f3e2a11", "Cmd Processes", "T1059.003", "cimlake", dir, "*/15 * * * * (-20m@m to -5m@m)", "Hunting", "-", "-", "-", "dest:system:5"],
            vec![
                "windows_http_network_communication_from_msiexec",
                "b0fd38c7-f71a-43a2-870e-f3ca06bcdd99",
                "Windows HTTP Network Communication From MSIExec",
                "T1218.007",
                "cimlake,splunk",
                "built-in",
                "0 * * * * (-70m@m to -10m@m)",
                "Anomaly",
                "-",
                "-",
                "Risk Based Analytics (RBA),Windows System Binary Proxy Execution MSIExec",
                "dest:system:20,user:user:20,parent_process_name:parent_process_name,process_name:process_name"
            ],
        ]
    );
    // The same through CIMLAKE_SQL_PATH.
    let out = command(lake, &["detect", "--list"]).env("CIMLAKE_SQL_PATH", dir).output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), listed);

    let checked = cimlake(lake, &["detect", "--check", "--sql-dir", dir]);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    assert_eq!(String::from_utf8_lossy(&checked.stdout), "");
    assert!(String::from_utf8_lossy(&checked.stderr).contains("checked 2 detections (3 plans)"));

    // It runs in cimlake mode: one row per cmd.exe process of the lake.
    let found = cimlake_ok(lake, &["detect", "--detection", "cmd_processes", "--format", "csv", "--sql-dir", dir]);
    let expected = query_csv(lake, "SELECT count(*) AS n FROM endpoint.processes WHERE lower(process_name) = 'cmd.exe'", &[]);
    let n: usize = expected[1].parse().unwrap();
    assert!(n > 0);
    assert_eq!(found.lines().count(), n + 1, "{found}");
    assert!(found.lines().skip(1).all(|l| l.to_lowercase().contains("cmd.exe")), "{found}");

    // It has no splunk mode: refused by name, not run.
    let refused = cimlake(lake, &["detect", "--detection", "cmd_processes", "--mode", "splunk", "--sql-dir", dir]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("cmd_processes has no splunk mode (it has cimlake; add splunk.sql to its directory to give it one)"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // With every detection selected, splunk mode runs the others and names the one it skips.
    let all = cimlake(lake, &["detect", "--mode", "splunk", "--sql-dir", dir]);
    assert!(all.status.success());
    assert!(String::from_utf8_lossy(&all.stderr).contains("note: cmd_processes has no splunk mode; not run"));
    assert!(String::from_utf8_lossy(&all.stdout).contains("splunk mode — 7 results"));
}

/// `detect --check` reports each detection that does not plan by file, line and column, with the
/// planner's reason, and exits 1; it needs no rows (no lake at all).
#[test]
fn check_reports_file_and_line() {
    let no_lake = TempDir::new().unwrap();
    let cases = [
        // A misspelt column on line 2.
        ("SELECT _time,\n  dest, proces\nFROM endpoint.processes\nWHERE `cmd_processes_filter`\n", ":2:9: ", "No field named proces"),
        // A missing table on line 3.
        ("SELECT _time\n-- the table\nFROM endpoint.procs\nWHERE `cmd_processes_filter`\n", ":3:6: ", "table 'datafusion.endpoint.procs' not found"),
        // An unknown macro on line 4, after a macro of several lines on line 3.
        ("SELECT _time\nFROM endpoint.processes\nWHERE `cmd_processes_filter`\n  AND `no_such_macro`\n", ":4: ", "unknown macro `no_such_macro`"),
        // A misspelt column after the filter macro, whose two lines are line 3 of the file.
        ("SELECT _time\nFROM endpoint.processes\nWHERE `cmd_processes_filter`\n  AND proces = 1\n", ":4:7: ", "No field named proces"),
        // A parse error on line 3.
        ("SELECT _time\nFROM endpoint.processes\nWHERE _time >= 1 1\n", ":3:18: ", "Expected: end of statement, found: 1"),
    ];
    for (sql, place, reason) in cases {
        let user = TempDir::new().unwrap();
        write_example_detection(user.path(), sql);
        let out = cimlake(&no_lake.path().join("lake"), &["detect", "--check", "--sql-dir", user.path().to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{sql}: {stdout}");
        let file = user.path().join("detections/cmd_processes/cimlake.sql");
        let line = stdout.lines().next().unwrap_or_default();
        assert!(line.starts_with(&format!("{}{place}cmd_processes (cimlake mode): ", file.display())), "{sql}: {line}");
        assert!(line.contains(reason), "{sql}: {line}");
        assert_eq!(stdout.lines().count(), 1, "only the broken detection fails: {stdout}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("1 failed"));
    }
}

/// Adding an input format: every format in `FORMATS` has what CONTRIBUTING.md's checklist asks
/// (a bundled sample that sniffs as it and ingests through the CLI, forced or not; a fuzz target
/// with saved cases; its name in the README). The conversion invariants (any batch size, any read
/// buffer, pulled or pushed) are unit tests over the same list (`convert::formats`).
#[test]
fn add_a_format() {
    use clap::ValueEnum;
    use cimlake::convert::formats::{FORMATS, sniff};
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let fuzz_manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    for format in FORMATS {
        let shape = format.sourcetype();
        let value = shape.to_possible_value().unwrap();
        let flag = value.get_name();
        assert!(readme.contains(flag), "README does not name --sourcetype {flag}");

        let target = flag.replace('-', "_");
        assert!(repo().join(format!("fuzz/fuzz_targets/{target}.rs")).is_file(), "no fuzz target {target}");
        assert!(fuzz_manifest.contains(&format!("name = \"{target}\"")), "fuzz/Cargo.toml lacks {target}");
        let saved = std::fs::read_dir(repo().join("fuzz/regressions").join(&target)).map(|d| d.count()).unwrap_or(0);
        assert!(saved > 0, "no saved fuzz cases for {target}");

        // A bundled sample of it, sniffed as it and ingested through the CLI, detected and forced.
        let sample = ["sysmon", "json", "nvm"]
            .iter()
            .flat_map(|d| std::fs::read_dir(repo().join("data/logs").join(d)).unwrap().flatten().map(|e| e.path()))
            .find(|p| {
                let bytes = std::fs::read(p).unwrap();
                sniff(&bytes[..bytes.len().min(64 << 10)]).is_some_and(|f| f.sourcetype() == shape)
            })
            .unwrap_or_else(|| panic!("no bundled sample of {shape} in data/logs"));
        let rel = sample.strip_prefix(repo()).unwrap().to_str().unwrap().to_string();
        for forced in [false, true] {
            let lake = TempDir::new().unwrap();
            let mut args = vec!["ingest", rel.as_str()];
            if forced {
                args.extend(["--sourcetype", flag]);
            }
            let out = cimlake_ok(lake.path(), &args);
            assert!(out.contains(&format!("ingested {rel} ({}): ", shape.name())), "{args:?}: {out}");
        }
    }
}

/// Adding a table: every table of the registry is in every session under its SQL name with its
/// declared columns, has its place in the lake's layout description (`src/lake/mod.rs`), and is
/// named in the README. (Its schema is pinned by `cim::tests::schemas_are_pinned`.)
#[test]
fn add_a_table() {
    use cimlake::cim::Table;
    let lake = sample_lake();
    let layout = std::fs::read_to_string(repo().join("src/lake/mod.rs")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for table in Table::ALL_TABLES {
        let name = table.qualified_name();
        let (schema, short) = name.split_once('.').unwrap();
        let columns = query_csv(
            lake,
            &format!(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = '{schema}' AND table_name = '{short}' ORDER BY ordinal_position"
            ),
            &[],
        );
        let declared: Vec<String> = table.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(&columns[1..=declared.len().min(columns.len() - 1)], &declared[..], "{name}: columns in the session");
        if let Some(dir) = table.lake_dir() {
            assert!(layout.contains(&format!("//!   {dir}/")), "{name}: {dir} is not in the lake layout of src/lake/mod.rs");
        }
        assert!(readme.contains(&format!("`{name}`")), "README does not name {name}");
    }
}
