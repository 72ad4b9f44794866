//! Input written to hurt: each hostile record is a counted bad record with its file and line, the
//! good records around it are kept, and memory and time stay bounded.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

/// The two one-line events of `security_content_example_events.log`: Sysmon EventID 1 and 3.
fn events() -> (String, String) {
    let text = std::fs::read_to_string(sample_dir().join("security_content_example_events.log")).unwrap();
    let mut lines = text.lines();
    (lines.next().unwrap().to_string(), lines.next().unwrap().to_string())
}

/// Replaces the text of `<Data Name='NAME'>…</Data>`.
fn with_data(event: &str, name: &str, value: &str) -> String {
    let open = format!("<Data Name='{name}'>");
    let start = event.find(&open).unwrap() + open.len();
    let end = start + event[start..].find('<').unwrap();
    format!("{}{value}{}", &event[..start], &event[end..])
}

/// Runs `cimlake ingest` and returns (exit success, stdout, stderr, peak RSS in KiB, wall time).
fn ingest_measured(lake: &Path, file: &Path) -> (bool, String, String, u64, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cimlake"))
        .arg("--lake")
        .arg(lake)
        .args(["ingest", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The kernel's high-water mark of the child's resident memory, read while it runs.
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kb) = s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            peak = peak.max(kb);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        peak,
        started.elapsed(),
    )
}

#[test]
fn hostile_records_are_counted_located_and_the_good_ones_kept() {
    let (process, flow) = events();
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("hostile.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut expected_bad: Vec<(usize, &str)> = Vec::new();
    let mut line = 0;
    let mut put = |f: &mut std::io::BufWriter<std::fs::File>, text: &[u8], bad: Option<&'static str>| {
        f.write_all(text).unwrap();
        f.write_all(b"\n").unwrap();
        line += 1;
        if let Some(reason) = bad {
            expected_bad.push((line, reason));
        }
    };
    put(&mut f, process.as_bytes(), None);
    // A 100 MB line.
    let mut huge = vec![b'A'; 100 << 20];
    huge.splice(0..0, b"<Event>".iter().copied());
    put(&mut f, &huge, Some("line longer than"));
    drop(huge);
    put(&mut f, b"\0\0\0\0 NUL bytes \0\0", Some("not an XML event"));
    // Deeply nested XML inside a Sysmon event.
    let nested = process.replace("<EventData>", &format!("<EventData>{}{}", "<a>".repeat(50_000), "</a>".repeat(50_000)));
    put(&mut f, nested.as_bytes(), Some("nested deeper than"));
    // Billion laughs: entity expansion is not done, so the event is malformed, not a bomb.
    let laughs = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>";
    put(&mut f, laughs.as_bytes(), Some("not an XML event"));
    // An entity the event does not define: refused, never expanded.
    put(&mut f, process.replace("<Computer>", "<Computer>&lol3;").as_bytes(), Some("unrecognized entity `lol3`"));
    // Absurd values.
    put(&mut f, with_data(&process, "ProcessId", "-1").as_bytes(), Some("ProcessId \"-1\""));
    put(&mut f, with_data(&flow, "DestinationPort", "70000").as_bytes(), Some("DestinationPort \"70000\""));
    let year_9999 = {
        let start = process.find("SystemTime='").unwrap() + "SystemTime='".len();
        let end = start + process[start..].find('\'').unwrap();
        format!("{}9999-12-31T23:59:59.000000000Z{}", &process[..start], &process[end..])
    };
    put(&mut f, year_9999.as_bytes(), Some("outside 1970-01-01 to 2100-01-01"));
    // Invalid UTF-8 inside an event's text.
    let mut broken = with_data(&process, "CommandLine", "cmd @@").into_bytes();
    let at = broken.windows(2).position(|w| w == b"@@").unwrap();
    broken[at] = 0xff;
    broken[at + 1] = 0xfe;
    put(&mut f, &broken, Some("invalid UTF-8"));
    // A truncated event, cut short by the next one.
    put(&mut f, &process.as_bytes()[..process.len() / 2], Some("truncated event"));
    put(&mut f, flow.as_bytes(), None);
    f.flush().unwrap();
    drop(f);

    let lake = TempDir::new().unwrap();
    let (ok, stdout, stderr, peak_kb, took) = ingest_measured(lake.path(), &path);
    assert!(ok, "{stdout}\n{stderr}");
    // Bounded: the 100 MB line is never held whole.
    assert!(peak_kb > 0 && peak_kb < 200 * 1024, "peak RSS {peak_kb} KiB");
    assert!(took < Duration::from_secs(60), "{took:?}");
    // The good records around the hostile ones are kept: the first process and the last flow.
    assert_eq!(query_csv(lake.path(), "SELECT count(*) FROM endpoint.processes", &[])[1], "1", "{stdout}");
    assert_eq!(query_csv(lake.path(), "SELECT count(*) FROM network_traffic.all_traffic", &[])[1], "1", "{stdout}");
    // Each rejected record is kept, raw, in quarantine.records (binary prints as hex).
    let kept: Vec<(String, usize, String)> = query_csv(
        lake.path(),
        "SELECT source_record, sourcetype, raw, raw_truncated FROM quarantine.records ORDER BY source_record",
        &[],
    )
    .into_iter()
    .skip(1)
    .map(|row| {
        let cols: Vec<&str> = row.split(',').collect();
        (format!("{},{}", cols[0], cols[1]), cols[2].len() / 2, cols[3].to_string())
    })
    .collect();
    assert_eq!(kept.len(), expected_bad.len());
    for ((line, _), (at, _, _)) in expected_bad.iter().zip(&kept) {
        assert_eq!(at, &format!("{line},XmlWinEventLog"));
    }
    // The 100 MB line: its first MiB. The NUL line: whole.
    assert_eq!((kept[0].1, kept[0].2.as_str()), (1 << 20, "true"));
    assert_eq!((kept[1].1, kept[1].2.as_str()), (17, "false"));
    // Every other hostile record is a bad record with its file and line.
    let listed = format!("{stdout}{stderr}");
    let file = path.display().to_string();
    let bad = &expected_bad;
    assert!(stdout.contains(&format!(", {} bad", bad.len())), "{stdout}");
    for (line, reason) in bad {
        let at = format!("{file}:{line}: ");
        let found = listed.lines().find(|l| l.contains(&at));
        assert!(found.is_some_and(|l| l.contains(reason)), "line {line} ({reason:?}) not reported:\n{listed}");
    }
}

#[test]
fn a_zip_bomb_and_a_binary_file_fail_fast_and_leave_the_lake_unchanged() {
    let dir = TempDir::new().unwrap();
    // 1 GiB of zeros in a zip member: about 1 MB packed.
    let bomb = dir.path().join("logs.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&bomb).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("sysmon.log", opts).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            zip.write_all(&zeros).unwrap();
        }
        zip.finish().unwrap();
    }
    assert!(std::fs::metadata(&bomb).unwrap().len() < 8 << 20);
    let binary = dir.path().join("events.log");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&binary, noise).unwrap();
    let lake = TempDir::new().unwrap();
    for (file, says) in [(&bomb, "logs.zip!sysmon.log: not a known input shape"), (&binary, "events.log: not a known input shape")] {
        let (ok, _, stderr, peak_kb, took) = ingest_measured(lake.path(), file);
        assert!(!ok);
        assert!(stderr.contains(says), "{stderr}");
        assert!(peak_kb < 200 * 1024, "peak RSS {peak_kb} KiB");
        assert!(took < Duration::from_secs(20), "{took:?}");
        assert_eq!(std::fs::read_dir(lake.path()).unwrap().count(), 0, "the lake changed");
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

#[test]
fn walks_and_globs_take_regular_files_only_and_always_end() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    std::fs::copy(sample_dir().join("security_content_example_events.log"), root.join("events.log")).unwrap();
    // A FIFO (a reader waits on it forever), a character device, two link loops (one loop was
    // once walked 40 levels deep; two made the walk exponential).
    mkfifo(&root.join("pipe.log"));
    std::os::unix::fs::symlink("/dev/zero", root.join("zero.log")).unwrap();
    std::os::unix::fs::symlink(".", root.join("loop")).unwrap();
    std::os::unix::fs::symlink(".", root.join("loop2")).unwrap();
    for arg in [root.to_path_buf(), root.join("*"), root.join("*.log")] {
        let lake = TempDir::new().unwrap();
        let out = output_within(&mut command(lake.path(), &["ingest", arg.to_str().unwrap()]), Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}{}", arg.display(), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(&format!("ingested {} (XmlWinEventLog)", root.join("events.log").display())), "{stdout}");
        assert!(stdout.contains("1 input: 1 ingested"), "{stdout}");
        assert!(stdout.contains(&format!("skipped {}: a FIFO", root.join("pipe.log").display())), "{stdout}");
        assert!(stdout.contains(&format!("skipped {}: a character device", root.join("zero.log").display())), "{stdout}");
        if !arg.ends_with("*.log") {
            assert!(stdout.contains("a directory already walked"), "{stdout}");
        }
        // Nothing under a looped path.
        let sources = query_csv(lake.path(), "SELECT DISTINCT source FROM endpoint.processes", &[]);
        assert_eq!(sources, vec!["source".to_string(), root.join("events.log").display().to_string()]);
    }
    // Named directly, a FIFO or a device is an error with its kind, not "no such file".
    let lake = TempDir::new().unwrap();
    for (path, kind) in [(root.join("pipe.log"), "a FIFO"), (root.join("zero.log"), "a character device")] {
        let out = output_within(&mut command(lake.path(), &["ingest", path.to_str().unwrap()]), Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{}: not a regular file ({kind})", path.display())), "{stderr}");
    }
}

#[test]
fn archives_that_expand_too_far_fail_fast_naming_the_member() {
    let dir = TempDir::new().unwrap();
    let lake = TempDir::new().unwrap();
    // An EVTX header and a gigabyte of zeros, in a megabyte of gzip: once read whole into memory
    // (1.14 GB) before parsing.
    let evtx = std::fs::read(sample_dir().join("sysmon_corrupt_chunk9.evtx")).unwrap();
    let gz = dir.path().join("security.evtx.gz");
    {
        let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
        e.write_all(&evtx[..4096]).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            e.write_all(&zeros).unwrap();
        }
        e.finish().unwrap();
    }
    // One event and a gigabyte of newlines, in a megabyte of zip: once 47 s of reading lines.
    let zip = dir.path().join("events.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("sysmon.log", opts).unwrap();
        z.write_all(events().0.as_bytes()).unwrap();
        let newlines = vec![b'\n'; 1 << 20];
        for _ in 0..1024 {
            z.write_all(&newlines).unwrap();
        }
        z.finish().unwrap();
    }
    for (file, says) in [
        (&gz, "security.evtx.gz: the gzip stream expands more than 200 times its compressed size"),
        (&zip, "events.zip!sysmon.log: the zip member expands more than 200 times its compressed size"),
    ] {
        assert!(std::fs::metadata(file).unwrap().len() < 4 << 20);
        let (ok, _, stderr, peak_kb, took) = ingest_measured(lake.path(), file);
        assert!(!ok);
        assert!(stderr.contains(says) && stderr.contains("--max-expansion-ratio"), "{stderr}");
        assert!(peak_kb < 200 * 1024, "peak RSS {peak_kb} KiB");
        assert!(took < Duration::from_secs(20), "{took:?}");
        assert_eq!(std::fs::read_dir(lake.path()).unwrap().count(), 0, "the lake changed");
    }
    // A higher limit is an option away: a smaller zip of the same kind is then read.
    let small = dir.path().join("small.zip");
    {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&small).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        z.start_file("sysmon.log", opts).unwrap();
        z.write_all(events().0.as_bytes()).unwrap();
        z.write_all(&vec![b'\n'; 32 << 20]).unwrap();
        z.finish().unwrap();
    }
    let out = cimlake(lake.path(), &["ingest", small.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("expands more than 200 times"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cimlake(lake.path(), &["ingest", "--max-expansion-ratio", "2000", small.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 processes, 0 flows"), "{}", String::from_utf8_lossy(&out.stdout));

    // A tar holding only a symbolic link: nothing to ingest, an error as an empty file is.
    let tar = dir.path().join("links.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "sysmon.log", "/etc/passwd").unwrap();
        b.finish().unwrap();
    }
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    let fresh = TempDir::new().unwrap();
    for (file, says) in [(&tar, "links.tar: nothing to ingest: the archive holds no files (skipped: 1 symbolic links)"), (&empty, "empty.log: empty file: nothing to ingest")] {
        let out = cimlake(fresh.path(), &["ingest", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_dir(fresh.path()).unwrap().count(), 0, "the lake changed");
    }
}

#[test]
fn paths_in_the_lakes_own_records_must_stay_inside_it() {
    let root = TempDir::new().unwrap();
    let lake = root.path().join("lake");
    cimlake_ok(&lake, &["ingest", sample_dir().join("t1218_007_msiexec_sysmon.log").to_str().unwrap()]);
    let count = "SELECT count(*) AS n FROM endpoint.processes";
    assert_eq!(query_csv(&lake, count, &[])[1], "11");

    // A commit naming a file outside the lake (a real Parquet file of the table's schema): once
    // read by every query. Now the commit is refused, by name, and nothing outside is read.
    let commits = lake.join("_cimlake/commits");
    let mut commit = published_records(&commits).remove(0);
    let inside = commit["files"][0]["path"].as_str().unwrap().to_string();
    std::fs::copy(lake.join(&inside), root.path().join("outside.parquet")).unwrap();
    for bad in ["../outside.parquet", "endpoint/processes/../../../outside.parquet", "/etc/passwd", "_cimlake/commits/_delta_log/00000000000000000000.json"] {
        commit["files"][0]["path"] = serde_json::json!(bad);
        let commit_path = replace_record(&commits, 1, &commit);
        let out = cimlake(&lake, &["query", count]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{}: refused: it names", commit_path.display())) && stderr.contains(&format!("{bad:?}")), "{bad}: {stderr}");
    }
    commit["files"][0]["path"] = serde_json::json!(inside);
    replace_record(&commits, 1, &commit);
    assert_eq!(query_csv(&lake, count, &[])[1], "11");

    let victim = root.path().join("victim.txt");
    std::fs::write(&victim, b"keep me").unwrap();

    // A compaction record (`lake optimize`) naming a file outside the lake among the files it
    // replaced or wrote: refused by queries and by vacuum, which removes nothing.
    let compactions = lake.join("_cimlake/compactions");
    for (field, bad) in [("removed", victim.display().to_string()), ("added", "../victim.txt".to_string())] {
        let mut named = commit["files"][0].clone();
        named["path"] = serde_json::json!(bad);
        let mut record = serde_json::json!({"id": 1, "committed_at": "2026-01-01T00:00:00.000Z", "through_commit": 1, "removed": [], "added": []});
        record[field] = serde_json::json!([named]);
        let _ = std::fs::remove_dir_all(&compactions);
        let record_path = write_record_table(&compactions, &[(1, record)]);
        for args in [vec!["query", count], vec!["lake", "vacuum", "--retention", "0"]] {
            let out = cimlake(&lake, &args);
            assert_eq!(out.status.code(), Some(1), "{field} {bad}: {args:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&format!("{}: refused: it names {bad:?}", record_path.display())), "{field}: {args:?}: {stderr}");
        }
        assert!(victim.exists(), "{bad} was deleted");
    }
    std::fs::remove_dir_all(&compactions).unwrap();
    cimlake_ok(&lake, &["ingest", sample_dir().join("security_content_example_events.log").to_str().unwrap()]);
}

#[test]
fn control_characters_in_names_are_escaped_wherever_they_are_printed() {
    let (process, _) = events();
    let dir = TempDir::new().unwrap();
    // A member name that would recolour the terminal and forge a line of output.
    let evil = "logs/\x1b[31mevil\nbad records: 0\r.log";
    let archive = dir.path().join("names.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        let body = format!("{process}\nnot an event\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, evil, body.as_bytes()).unwrap();
        b.finish().unwrap();
    }
    let lake = TempDir::new().unwrap();
    let out = cimlake(lake.path(), &["ingest", archive.to_str().unwrap()]);
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{printed}");
    let escaped = "logs/\\u{1b}[31mevil\\nbad records: 0\\r.log";
    assert!(printed.contains(&format!("names.tar!{escaped}:2: not an XML event")), "{printed}");
    for c in ['\x1b', '\r'] {
        assert!(!printed.contains(c), "{c:?} printed raw:\n{printed}");
    }
    assert!(!printed.lines().any(|l| l.starts_with("bad records: 0")), "a forged line:\n{printed}");
    // The lake keeps the name as it is; a table printed to a terminal escapes it, JSON encodes it.
    let json = cimlake_ok(lake.path(), &["query", "SELECT DISTINCT source FROM endpoint.processes", "--format", "json"]);
    let row: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(row["source"].as_str().unwrap(), format!("{}!{evil}", archive.display()));
    let table = cimlake_ok(lake.path(), &["query", "SELECT DISTINCT source FROM endpoint.processes"]);
    assert!(table.contains(escaped) && !table.contains('\x1b'), "{table}");
    // An error naming the member, through the same escape.
    let unknown = dir.path().join("unknown.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&unknown).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, evil, &b"hello\n"[..]).unwrap();
        b.finish().unwrap();
    }
    let out = cimlake(lake.path(), &["ingest", unknown.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("unknown.tar!{escaped}: not a known input shape")) && !stderr.contains('\x1b'), "{stderr}");
}
