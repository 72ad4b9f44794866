//! Sigma's semantics, one case per modifier and condition form: each rule is compiled and its
//! condition run over a few rows of the lake's own schema, both as SQL by DataFusion and by the
//! one-scan evaluator, which must agree.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::*;

/// Rows of `source`'s table: `source_record` numbers them from 1; the named columns hold the
/// given values (as text, parsed for number and boolean columns), the others are null.
fn rows(source: Logsource, columns: &[(&str, &[Option<&str>])]) -> RecordBatch {
    let schema = source.table().schema();
    let n = columns.first().map_or(0, |(_, v)| v.len());
    let arrays: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            let given = columns.iter().find(|(c, _)| c == f.name()).map(|(_, v)| *v);
            match (f.name().as_str(), f.data_type(), given) {
                ("_time", _, _) => {
                    Arc::new(TimestampMicrosecondArray::from(vec![0; n]).with_timezone("UTC"))
                }
                ("source_record", _, _) => Arc::new(Int64Array::from_iter_values(1..=n as i64)),
                (_, DataType::Utf8, Some(v)) => Arc::new(StringArray::from(v.to_vec())),
                (_, DataType::Int64, Some(v)) => Arc::new(
                    v.iter()
                        .map(|x| x.map(|s| s.parse::<i64>().unwrap()))
                        .collect::<Int64Array>(),
                ),
                (_, DataType::Int32, Some(v)) => Arc::new(
                    v.iter()
                        .map(|x| x.map(|s| s.parse::<i32>().unwrap()))
                        .collect::<Int32Array>(),
                ),
                (_, DataType::Boolean, Some(v)) => Arc::new(
                    v.iter()
                        .map(|x| x.map(|s| s == "true"))
                        .collect::<BooleanArray>(),
                ),
                (_, t, _) => arrow::array::new_null_array(t, n),
            }
        })
        .collect();
    RecordBatch::try_new(schema, arrays).unwrap()
}

fn compiled(yaml: &str) -> Result<(Logsource, String, cond::Cond), Unsupported> {
    let loaded = load("test.yml", yaml, "test", &default_schedule());
    if let Some(r) = loaded.rejected.into_iter().next() {
        return Err(r.reason);
    }
    let d = loaded.detections.into_iter().next().expect("one rule");
    let info = d.sigma.expect("a Sigma detection");
    Ok((info.logsource, info.condition.clone(), info.cond.clone().expect("a compiled condition")))
}

/// The `source_record`s of the rows the rule's detection matches.
fn matches(detection: &str, batch: &RecordBatch) -> Vec<i64> {
    let category = if batch.schema().field_with_name("dvc").is_ok() {
        "network_connection"
    } else {
        "process_creation"
    };
    let yaml = format!(
        "title: t\nid: 00000000-0000-0000-0000-000000000001\nlogsource:\n  product: windows\n  category: {category}\ndetection:\n{detection}\nlevel: high\n"
    );
    let (_, condition, cond) = compiled(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_udf(crate::engine::functions::cidr_match_udf());
        ctx.register_table(
            "t",
            Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch.clone()]]).unwrap()),
        )
        .unwrap();
        let sql = format!("SELECT source_record FROM t WHERE {condition} ORDER BY source_record");
        let out = ctx
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        let by_sql: Vec<i64> = out
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(by_sql, evaluated(&cond, batch), "SQL and the evaluator differ on\n{yaml}");
        by_sql
    })
}

/// The `source_record`s of the rows the one-scan evaluator finds `cond` holds on.
fn evaluated(cond: &cond::Cond, batch: &RecordBatch) -> Vec<i64> {
    let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut reads = vec![eval::Reads::default(); names.len()];
    let program = eval::Program::new(cond, &names, &mut reads).unwrap();
    let cols = eval::Columns::new(batch, &reads).unwrap();
    let mut scratch = eval::Scratch::default();
    (0..batch.num_rows()).filter(|&r| program.matches(&cols, r, &mut scratch)).map(|r| r as i64 + 1).collect()
}

fn commands(lines: &[Option<&str>]) -> RecordBatch {
    rows(Logsource::ProcessCreation, &[("process", lines)])
}

#[test]
fn strings_match_without_case_unless_cased() {
    let b = commands(&[Some("WHOAMI /all"), Some("whoami"), Some("Whoami"), None]);
    assert_eq!(
        matches("  sel:\n    CommandLine: whoami\n  condition: sel", &b),
        [2, 3]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|cased: whoami\n  condition: sel",
            &b
        ),
        [2]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains|cased: WHO\n  condition: sel",
            &b
        ),
        [1]
    );
    // Non-ASCII folds too.
    let b = commands(&[Some("ÄRGER.exe"), Some("ärger.exe")]);
    assert_eq!(
        matches("  sel:\n    CommandLine: 'ärger.EXE'\n  condition: sel", &b),
        [1, 2]
    );
}

#[test]
fn wildcards_and_their_escapes() {
    let b = commands(&[
        Some("a*b"),
        Some("axxb"),
        Some("a?b"),
        Some("ab"),
        Some(r"a\b"),
        Some("a%b"),
        Some("a_b"),
    ]);
    assert_eq!(
        matches("  sel:\n    CommandLine: 'a*b'\n  condition: sel", &b),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        matches("  sel:\n    CommandLine: 'a?b'\n  condition: sel", &b),
        [1, 3, 5, 6, 7]
    );
    assert_eq!(
        matches("  sel:\n    CommandLine: 'a\\*b'\n  condition: sel", &b),
        [1],
        "an escaped * is the character"
    );
    assert_eq!(
        matches("  sel:\n    CommandLine: 'a\\?b'\n  condition: sel", &b),
        [3]
    );
    assert_eq!(
        matches("  sel:\n    CommandLine: 'a\\\\b'\n  condition: sel", &b),
        [5],
        "an escaped backslash is one"
    );
    assert_eq!(
        matches("  sel:\n    CommandLine: 'a\\b'\n  condition: sel", &b),
        [5],
        "a backslash before other text is itself"
    );
    // SQL's own wildcards are text to Sigma.
    assert_eq!(
        matches("  sel:\n    CommandLine: 'a%b'\n  condition: sel", &b),
        [6]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains: 'a_b'\n  condition: sel",
            &b
        ),
        [7]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|startswith: 'a%'\n  condition: sel",
            &b
        ),
        [6]
    );
}

#[test]
fn contains_startswith_endswith_and_a_wildcard_inside() {
    let b = commands(&[
        Some(r"C:\Windows\System32\cmd.exe /c whoami"),
        Some(r"C:\Tools\cmd.exe"),
        Some("powershell -enc AAA"),
    ]);
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains: '\\cmd.exe'\n  condition: sel",
            &b
        ),
        [1, 2]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|endswith: '\\cmd.exe'\n  condition: sel",
            &b
        ),
        [2]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|startswith: 'c:\\windows\\'\n  condition: sel",
            &b
        ),
        [1]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains: 'system32*.exe /c'\n  condition: sel",
            &b
        ),
        [1],
        "a wildcard inside contains"
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains: 'system32\\\\*.exe /c'\n  condition: sel",
            &b
        ),
        [1],
        "an escaped backslash, then a wildcard"
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains: 'system32\\*.exe /c'\n  condition: sel",
            &b
        ),
        Vec::<i64>::new(),
        "an escaped *"
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains: 'system32?cmd'\n  condition: sel",
            &b
        ),
        [1]
    );
}

#[test]
fn lists_are_any_maps_are_all_and_all_links_values() {
    let b = rows(
        Logsource::ProcessCreation,
        &[
            (
                "process",
                &[
                    Some("net user /add"),
                    Some("net user"),
                    Some("net group /add"),
                ],
            ),
            (
                "process_path",
                &[
                    Some(r"C:\w\net.exe"),
                    Some(r"C:\w\net1.exe"),
                    Some(r"C:\w\net.exe"),
                ],
            ),
        ],
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains:\n      - ' user'\n      - ' group'\n  condition: sel",
            &b
        ),
        [1, 2, 3]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains|all:\n      - ' user'\n      - '/add'\n  condition: sel",
            &b
        ),
        [1]
    );
    assert_eq!(
        matches(
            "  sel:\n    Image|endswith: '\\net.exe'\n    CommandLine|contains: ' user'\n  condition: sel",
            &b
        ),
        [1]
    );
    // A list of maps: any map.
    assert_eq!(
        matches(
            "  sel:\n    - Image|endswith: '\\net1.exe'\n    - CommandLine|contains: group\n  condition: sel",
            &b
        ),
        [2, 3]
    );
}

#[test]
fn regular_expressions_and_their_flags() {
    let b = commands(&[
        Some("IEX(New-Object)"),
        Some("iex(new-object)"),
        Some("line1\nIEX"),
        Some("a\nb"),
    ]);
    assert_eq!(
        matches("  sel:\n    CommandLine|re: 'IEX\\('\n  condition: sel", &b),
        [1],
        "case-sensitive by default"
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|re|i: 'IEX\\('\n  condition: sel",
            &b
        ),
        [1, 2]
    );
    assert_eq!(
        matches("  sel:\n    CommandLine|re: '^IEX'\n  condition: sel", &b),
        [1]
    );
    assert_eq!(
        matches("  sel:\n    CommandLine|re|m: '^IEX'\n  condition: sel", &b),
        [1, 3]
    );
    assert_eq!(
        matches("  sel:\n    CommandLine|re: 'a.b'\n  condition: sel", &b),
        Vec::<i64>::new()
    );
    assert_eq!(
        matches("  sel:\n    CommandLine|re|s: 'a.b'\n  condition: sel", &b),
        [4]
    );
    assert_eq!(
        matches("  sel:\n    CommandLine|re: '[*]'\n  condition: sel", &b),
        Vec::<i64>::new(),
        "wildcards are not special in re"
    );
    let lookahead = "title: t\nlogsource:\n  category: process_creation\ndetection:\n  sel:\n    CommandLine|re: 'a(?=b)'\n  condition: sel\n";
    assert!(
        matches!(compiled(lookahead), Err(Unsupported::Regex { .. })),
        "look-around is reported, not run"
    );
}

#[test]
fn windash_matches_every_dash_form() {
    let b = commands(&[
        Some("ping -n 1"),
        Some("ping /n 1"),
        Some("ping \u{2013}n 1"),
        Some("ping \u{2014}n 1"),
        Some("ping \u{2015}n 1"),
        Some("ping +n 1"),
        Some("ping x-n 1"),
    ]);
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|windash|contains: ' -n '\n  condition: sel",
            &b
        ),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|contains: ' -n '\n  condition: sel",
            &b
        ),
        [1]
    );
}

#[test]
fn base64_and_base64offset_at_all_three_offsets() {
    let secret = "IEX (New-Object Net.WebClient)";
    let enc = |prefix: &str| STANDARD.encode(format!("{prefix}{secret}; tail"));
    let (e0, e1, e2, other) = (
        enc(""),
        enc("a"),
        enc("ab"),
        STANDARD.encode("nothing to see"),
    );
    let b = commands(&[
        Some(&format!("powershell -enc {e0}")),
        Some(&format!("x {e1}")),
        Some(&format!("x {e2}")),
        Some(&other),
    ]);
    let rule =
        format!("  sel:\n    CommandLine|base64offset|contains: '{secret}'\n  condition: sel");
    assert_eq!(matches(&rule, &b), [1, 2, 3]);
    // Plain base64 is the value encoded from its first byte.
    let whole = STANDARD.encode(secret);
    let b = commands(&[Some(&whole), Some(&e1)]);
    assert_eq!(
        matches(
            &format!("  sel:\n    CommandLine|base64: '{secret}'\n  condition: sel"),
            &b
        ),
        [1]
    );
}

#[test]
fn utf16_encodings_then_base64() {
    let le: Vec<u8> = "ping".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = "ping".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let b = commands(&[
        Some(&STANDARD.encode(&le)),
        Some(&STANDARD.encode(&be)),
        Some(&STANDARD.encode([&[0xFF, 0xFE][..], &le].concat())),
    ]);
    for m in ["wide", "utf16le"] {
        assert_eq!(
            matches(
                &format!("  sel:\n    CommandLine|{m}|base64: ping\n  condition: sel"),
                &b
            ),
            [1],
            "{m}"
        );
    }
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|utf16be|base64: ping\n  condition: sel",
            &b
        ),
        [2]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|utf16|base64: ping\n  condition: sel",
            &b
        ),
        [3]
    );
}

#[test]
fn cidr_for_ipv4_and_ipv6() {
    let ips = [
        Some("10.1.2.3"),
        Some("192.168.1.1"),
        Some("fe80::1"),
        Some("2001:db8::1"),
        Some("::1"),
        Some("not an ip"),
        None,
    ];
    let b = rows(Logsource::NetworkConnection, &[("dest_ip", &ips)]);
    assert_eq!(
        matches(
            "  sel:\n    DestinationIp|cidr:\n      - '10.0.0.0/8'\n      - '192.168.0.0/16'\n  condition: sel",
            &b
        ),
        [1, 2]
    );
    assert_eq!(
        matches(
            "  sel:\n    DestinationIp|cidr:\n      - 'fe80::/10'\n      - '::1/128'\n  condition: sel",
            &b
        ),
        [3, 5]
    );
    // Not in a network: an address outside it; text that is no address is in no network.
    assert_eq!(
        matches(
            "  sel:\n    DestinationIp|cidr: '10.0.0.0/8'\n  condition: not sel",
            &b
        ),
        [2, 3, 4, 5, 6, 7]
    );
}

#[test]
fn exists_null_and_the_empty_string() {
    let b = commands(&[Some("x"), None, Some("")]);
    assert_eq!(
        matches("  sel:\n    CommandLine|exists: true\n  condition: sel", &b),
        [1, 3]
    );
    assert_eq!(
        matches(
            "  sel:\n    CommandLine|exists: false\n  condition: sel",
            &b
        ),
        [2]
    );
    assert_eq!(
        matches("  sel:\n    CommandLine: null\n  condition: sel", &b),
        [2],
        "null is the missing value, not the empty string"
    );
    assert_eq!(
        matches("  sel:\n    CommandLine: ''\n  condition: sel", &b),
        [3],
        "the empty string is not the missing value"
    );
    // `not` of a comparison with a missing value is true, as Sigma means it.
    assert_eq!(
        matches("  sel:\n    CommandLine: x\n  condition: not sel", &b),
        [2, 3]
    );
}

#[test]
fn fields_the_log_source_lacks() {
    // Sysmon's EventID 3 has no command line or parent: a rule naming them (SigmaHQ has four,
    // written for agents that add them) reads them as absent, as Sigma reads a field an event lacks.
    let b = rows(
        Logsource::NetworkConnection,
        &[("process_path", &[Some("C:\\Python311\\python.exe"), Some("C:\\Windows\\System32\\rundll32.exe"), None])],
    );
    let python = "  sel:\n    Image|endswith: '\\python.exe'\n";
    assert_eq!(
        matches(&format!("{python}  filter:\n    CommandLine|contains|all: ['pip.exe', 'install']\n  condition: sel and not filter"), &b),
        [1],
        "a filter on a field the event lacks never filters"
    );
    assert_eq!(
        matches(&format!("{python}    CommandLine|endswith: '\\python.exe'\n  condition: sel"), &b),
        [] as [i64; 0],
        "a selection on it never selects"
    );
    for (test, rows) in [
        ("CommandLine: null", vec![1, 2, 3]),
        ("CommandLine|exists: false", vec![1, 2, 3]),
        ("CommandLine|exists: true", vec![]),
        ("CommandLine: ''", vec![]),
        ("CommandLine|neq: x", vec![]),
        ("CommandLine:\n      - x\n      - null", vec![1, 2, 3]),
        ("CommandLine|all:\n      - x\n      - null", vec![]),
        ("ParentImage|fieldref: Image", vec![]),
        ("Image|fieldref: ParentImage", vec![]),
    ] {
        assert_eq!(matches(&format!("  sel:\n    {test}\n  condition: sel"), &b), rows, "{test}");
        let negated: Vec<i64> = (1..=3).filter(|r| !rows.contains(r)).collect();
        assert_eq!(matches(&format!("  sel:\n    {test}\n  condition: not sel"), &b), negated, "not {test}");
    }
    // And the other way: EventID 1 has no destination.
    let p = commands(&[Some("curl http://x"), None]);
    assert_eq!(matches("  sel:\n    DestinationPort: 443\n  condition: sel", &p), [] as [i64; 0]);
    assert_eq!(matches("  sel:\n    DestinationPort: 443\n  condition: not sel", &p), [1, 2]);
    assert_eq!(matches("  sel:\n    DestinationIp|cidr: '10.0.0.0/8'\n  condition: not sel", &p), [1, 2]);
}

#[test]
fn fieldref_compares_two_fields() {
    let b = rows(
        Logsource::ProcessCreation,
        &[
            (
                "process_path",
                &[
                    Some(r"C:\a.exe"),
                    Some(r"C:\A.EXE"),
                    Some(r"C:\b.exe"),
                    None,
                ],
            ),
            (
                "parent_process_path",
                &[
                    Some(r"C:\a.exe"),
                    Some(r"c:\a.exe"),
                    Some(r"C:\a.exe"),
                    None,
                ],
            ),
        ],
    );
    assert_eq!(
        matches(
            "  sel:\n    Image|fieldref: ParentImage\n  condition: sel",
            &b
        ),
        [1, 2]
    );
    assert_eq!(
        matches(
            "  sel:\n    Image|fieldref|cased: ParentImage\n  condition: sel",
            &b
        ),
        [1]
    );
}

#[test]
fn numbers_compare_as_numbers() {
    let b = rows(
        Logsource::NetworkConnection,
        &[
            ("dest_port", &[Some("80"), Some("443"), Some("8080"), None]),
            (
                "initiated",
                &[Some("true"), Some("false"), Some("true"), None],
            ),
        ],
    );
    assert_eq!(
        matches("  sel:\n    DestinationPort: 443\n  condition: sel", &b),
        [2]
    );
    assert_eq!(
        matches("  sel:\n    DestinationPort: '443'\n  condition: sel", &b),
        [2],
        "a number written as text"
    );
    assert_eq!(
        matches("  sel:\n    DestinationPort|gt: 443\n  condition: sel", &b),
        [3]
    );
    assert_eq!(
        matches("  sel:\n    DestinationPort|gt: 443\n  condition: not sel", &b),
        [1, 2, 4],
        "a missing port is not above 443, so `not` holds on it"
    );
    assert_eq!(
        matches("  sel:\n    DestinationPort|gte: 443\n  condition: sel", &b),
        [2, 3]
    );
    assert_eq!(
        matches("  sel:\n    DestinationPort|lt: 443\n  condition: sel", &b),
        [1]
    );
    assert_eq!(
        matches("  sel:\n    DestinationPort|lte: 443\n  condition: sel", &b),
        [1, 2]
    );
    assert_eq!(
        matches(
            "  sel:\n    DestinationPort|startswith: '80'\n  condition: sel",
            &b
        ),
        [1, 3],
        "string modifiers see the number's text"
    );
    assert_eq!(
        matches("  sel:\n    Initiated: 'true'\n  condition: sel", &b),
        [1, 3]
    );
    assert_eq!(
        matches("  sel:\n    Initiated: true\n  condition: sel", &b),
        [1, 3]
    );
}

#[test]
fn conditions() {
    let b = rows(
        Logsource::ProcessCreation,
        &[
            ("process", &[Some("a"), Some("b"), Some("c"), Some("ab")]),
            (
                "process_path",
                &[Some("x"), Some("x"), Some("y"), Some("y")],
            ),
        ],
    );
    let sels = "  sel_a:\n    CommandLine|contains: a\n  sel_b:\n    CommandLine|contains: b\n  filter_x:\n    Image: x\n";
    let with = |c: &str| matches(&format!("{sels}  condition: {c}"), &b);
    assert_eq!(with("sel_a and not filter_x"), [4]);
    assert_eq!(with("sel_a or sel_b"), [1, 2, 4]);
    assert_eq!(with("(sel_a or sel_b) and filter_x"), [1, 2]);
    assert_eq!(with("not (sel_a or sel_b)"), [3]);
    assert_eq!(with("1 of sel_*"), [1, 2, 4]);
    assert_eq!(with("all of sel_*"), [4]);
    assert_eq!(with("1 of sel_* and not 1 of filter_*"), [4]);
    assert_eq!(with("1 of them"), [1, 2, 4]);
    assert_eq!(with("all of them"), Vec::<i64>::new());
    assert_eq!(with("2 of them"), [1, 2, 4]);
    // A list of conditions: any of them.
    assert_eq!(
        matches(
            &format!("{sels}  condition:\n    - sel_a and filter_x\n    - sel_b and not filter_x"),
            &b
        ),
        [1, 4]
    );
}

#[test]
fn what_does_not_compile_says_why() {
    let rule = |logsource: &str, detection: &str| {
        format!("title: t\nlogsource:\n{logsource}\ndetection:\n{detection}\n")
    };
    let pc = "  category: process_creation\n  product: windows";
    let err = |y: String| compiled(&y).unwrap_err();
    assert!(matches!(
        err(rule(
            "  category: file_event\n  product: windows",
            "  sel:\n    TargetFilename: x\n  condition: sel"
        )),
        Unsupported::Logsource(_)
    ));
    // A field no log source has (here a file event's) is refused; one the other log source has
    // compiles as absent (`fields_the_log_source_lacks`).
    assert_eq!(
        err(rule(
            "  category: network_connection\n  product: windows",
            "  sel:\n    TargetFilename: x\n  condition: sel"
        )),
        Unsupported::Field {
            field: "TargetFilename".into(),
            source: Logsource::NetworkConnection
        }
    );
    assert_eq!(
        err(rule(pc, "  sel:\n    Image|fieldref: TargetFilename\n  condition: sel")),
        Unsupported::Field { field: "TargetFilename".into(), source: Logsource::ProcessCreation }
    );
    assert!(
        matches!(err(rule(pc, "  sel:\n    CommandLine|expand: '%x%'\n  condition: sel")), Unsupported::Modifier(m) if m == "expand")
    );
    assert!(matches!(
        err(rule(pc, "  keywords:\n    - whoami\n  condition: keywords")),
        Unsupported::Keywords
    ));
    assert!(matches!(
        err(rule(pc, "  sel:\n    CommandLine: x\n  condition: other")),
        Unsupported::Condition(_)
    ));
    assert!(matches!(
        err(rule(
            "  category: network_connection\n  product: windows",
            "  sel:\n    DestinationIp|cidr: '10.0.0/8'\n  condition: sel"
        )),
        Unsupported::Value(_)
    ));
    assert!(matches!(
        err("title: [unclosed\ndetection:\n".to_string()),
        Unsupported::Parse(_)
    ));
}

#[test]
fn metadata_from_the_rule() {
    let yaml = "title: Suspicious Msiexec\nid: 8e4b1b0a-0000-4000-8000-000000000001\nstatus: test\nlevel: high\ndescription: d\ntags:\n  - attack.defense-evasion\n  - attack.t1218.007\n  - attack.command-and-control\n  - car.2013-05-002\nlogsource:\n  category: process_creation\n  product: windows\ndetection:\n  sel:\n    Image|endswith: '\\msiexec.exe'\n  condition: sel\n";
    let loaded = load("dir/r.yml", yaml, "dir", &default_schedule());
    let d = &loaded.detections[0];
    assert_eq!(d.name, "8e4b1b0a-0000-4000-8000-000000000001");
    assert_eq!(d.meta.name, "Suspicious Msiexec");
    assert_eq!(d.meta.mitre_attack_id, ["T1218.007"]);
    assert_eq!(
        d.meta.mitre_tactic,
        ["Defense Evasion", "Command And Control"]
    );
    assert_eq!(d.meta.risk.objects[0].score, 75);
    let info = d.sigma.as_ref().unwrap();
    assert_eq!(
        (info.level.as_str(), info.status.as_str()),
        ("high", "test")
    );
    let sql = &d.sql[&Mode::Cimlake];
    assert!(
        sql.contains("FROM endpoint.processes")
            && sql.contains("'8e4b1b0a-0000-4000-8000-000000000001' AS rule_id"),
        "{sql}"
    );
    let other = load("x.yml", "name: not a rule\nvalues: [1, 2]\n", "dir", &default_schedule());
    assert!(other.detections.is_empty() && other.rejected.is_empty() && other.correlations.is_empty(), "YAML that is not Sigma is passed over");
}
