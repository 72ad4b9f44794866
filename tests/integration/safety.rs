//! Nothing lost, nothing doubled: `cimlake ingest` killed at random points and at the points that
//! matter (after files are moved into the lake, after a commit), two ingests that convert the same
//! input at the same time, queries at each step of an ingest, and a file edited while it is read.
//! The named points are `CIMLAKE_FAULT` fault-injection points (`src/fault.rs`).

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

/// Generated XmlWinEventLog files of different sizes (seeds 31, 32, …), in one directory.
fn inputs(n: u64, processes: u64) -> TempDir {
    let dir = TempDir::new().unwrap();
    for i in 0..n {
        let out = TempDir::new().unwrap();
        let scratch = TempDir::new().unwrap();
        let p = (processes * (i + 2) / 2).to_string();
        cimlake_ok(
            scratch.path(),
            &["gen", "--seed", &(31 + i).to_string(), "--hosts", "20", "--processes", &p, "--hours", "6", "--positives", "3", "--format", "xmlwineventlog", "-o", out.path().to_str().unwrap()],
        );
        let log = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().path()).find(|p| !p.ends_with("expected.csv")).unwrap();
        std::fs::copy(&log, dir.path().join(format!("input-{i}.log"))).unwrap();
    }
    dir
}

/// `cimlake --lake LAKE ARGS…` in the background, without the user's `CIMLAKE_` settings.
fn spawn(lake: &Path, args: &[&str]) -> Child {
    spawn_with(lake, args, &[], Stdio::null())
}

fn spawn_with(lake: &Path, args: &[&str], env: &[(&str, &str)], stdout: Stdio) -> Child {
    command(lake, args).envs(env.iter().copied()).stdout(stdout).stderr(Stdio::null()).spawn().expect("cimlake starts")
}

/// Waits (at most 120 s) until a process paused at a `wait=DIR` fault point says so.
pub fn wait_for_pause(dir: &Path, point: &str, k: u32) {
    let waiting = dir.join(format!("{point}.{k}.waiting"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !waiting.exists() {
        assert!(Instant::now() < deadline, "no pause at {point} #{k}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn resume(dir: &Path, point: &str, k: u32) {
    std::fs::write(dir.join(format!("{point}.{k}.go")), b"").unwrap();
}

/// (processes, flows) as one query sees them.
fn counts(lake: &Path) -> (u64, u64) {
    let rows = query_csv(
        lake,
        "SELECT (SELECT count(*) FROM endpoint.processes) AS p, (SELECT count(*) FROM network_traffic.all_traffic) AS t",
        &[],
    );
    let (p, t) = rows[1].split_once(',').unwrap();
    (p.parse().unwrap(), t.parse().unwrap())
}

/// The lake's commits as (input hash, processes, flows), and the data files they name.
fn commits(lake: &Path) -> (Vec<(String, u64, u64)>, HashSet<PathBuf>) {
    let mut out = Vec::new();
    let mut files = HashSet::new();
    for c in published_records(&lake.join("_cimlake/commits")) {
        let rows = &c["input"]["stats"]["rows"];
        out.push((
            c["input"]["hash"].as_str().unwrap().to_string(),
            rows["endpoint.processes"].as_u64().unwrap_or(0),
            rows["network_traffic.all_traffic"].as_u64().unwrap_or(0),
        ));
        for f in c["files"].as_array().unwrap() {
            files.insert(lake.join(f["path"].as_str().unwrap()));
        }
    }
    (out, files)
}

/// Parquet files under the table directories.
fn data_files(lake: &Path) -> HashSet<PathBuf> {
    fn walk(dir: &Path, out: &mut HashSet<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("_cimlake") && !p.ends_with("_delta_log") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.insert(p);
            }
        }
    }
    let mut out = HashSet::new();
    walk(lake, &mut out);
    out
}

/// The data files the tables' Delta logs hold now (their `add`s less their `remove`s), as lake
/// paths.
fn delta_files(lake: &Path) -> HashSet<PathBuf> {
    let mut out = HashSet::new();
    for table in ["endpoint/processes", "network_traffic/all_traffic", "quarantine/records"] {
        let log = lake.join(table).join("_delta_log");
        let mut versions: Vec<PathBuf> = match std::fs::read_dir(&log) {
            Ok(d) => d.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect(),
            Err(_) => continue,
        };
        versions.sort();
        for v in versions {
            for line in std::fs::read_to_string(&v).unwrap().lines() {
                let action: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(p) = action["add"]["path"].as_str() {
                    out.insert(lake.join(table).join(p));
                }
                if let Some(p) = action["remove"]["path"].as_str() {
                    out.remove(&lake.join(table).join(p));
                }
            }
        }
    }
    out
}

/// The lake is whole: each input committed once, the rows a query sees are exactly those of the
/// commits, and the Delta logs name only committed files.
fn assert_whole(lake: &Path) -> (u64, u64) {
    let (commits, named) = commits(lake);
    let in_delta = delta_files(lake);
    let recorded: HashSet<PathBuf> = named.union(&effective_files(lake)).cloned().collect();
    assert!(in_delta.is_subset(&recorded), "Delta logs ahead of the records: {:?}", in_delta.difference(&recorded).collect::<Vec<_>>());
    let hashes: BTreeSet<&String> = commits.iter().map(|c| &c.0).collect();
    assert_eq!(hashes.len(), commits.len(), "an input committed twice: {commits:?}");
    let want = commits.iter().fold((0, 0), |(p, t), c| (p + c.1, t + c.2));
    assert_eq!(counts(lake), want, "rows seen vs rows committed");
    want
}

#[test]
fn an_ingest_killed_at_random_points_leaves_a_whole_lake_and_a_rerun_completes_it() {
    let dir = inputs(4, 600);
    let dir_arg = dir.path().to_str().unwrap();
    // The reference: one uninterrupted ingest, timed.
    let reference = TempDir::new().unwrap();
    let started = Instant::now();
    cimlake_ok(reference.path(), &["ingest", "-j", "2", "--piece-size", "256K", dir_arg]);
    let full = started.elapsed();
    let want = assert_whole(reference.path());
    assert!(want.1 > 10_000, "{want:?}");

    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut killed = 0;
    for lake_no in 0..3 {
        // Each lake: an ingest killed at a random point, restarted and killed again, four times;
        // then run to the end.
        let lake = TempDir::new().unwrap();
        for round in 0..4 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Within the first 60% of an uninterrupted run, shrinking with each restart: a restart
            // has less left to do (its committed inputs are skipped).
            let delay = Duration::from_micros(rng % (full.as_micros() as u64 * 3 / 5 / (round as u64 + 1)).max(1));
            let mut child = spawn(lake.path(), &["ingest", "-j", "2", "--piece-size", "256K", dir_arg]);
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_none() {
                killed += 1;
            }
            child.kill().ok(); // SIGKILL
            child.wait().unwrap();
            // Readable (every committed file is read), each committed input once, and no row that
            // no commit accounts for.
            let seen = assert_whole(lake.path());
            assert!(seen.0 <= want.0 && seen.1 <= want.1, "lake {lake_no} round {round}: {seen:?} > {want:?}");
        }
        // A rerun completes the lake to exactly the reference; `lake vacuum` removes what the
        // killed runs left (their files and staging), and nothing queries read.
        cimlake_ok(lake.path(), &["ingest", "-j", "2", "--piece-size", "256K", dir_arg]);
        assert_eq!(assert_whole(lake.path()), want);
        cimlake_ok(lake.path(), &["lake", "vacuum", "--retention", "0"]);
        assert_eq!(assert_whole(lake.path()), want);
        let (commits, named) = commits(lake.path());
        assert_eq!(commits.len(), 4);
        assert_eq!(data_files(lake.path()), named, "data files that no commit names");
        assert_eq!(delta_files(lake.path()), named, "the Delta logs after a completed run");
        let staging = std::fs::read_dir(lake.path().join("_cimlake/staging")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(staging, 0, "staging left behind");
    }
    assert!(killed >= 6, "only {killed} of 12 runs were killed before they finished");
}

#[test]
fn two_ingests_of_overlapping_inputs_at_once_commit_each_input_once() {
    let dir = inputs(3, 1500);
    let file = |i: u32| dir.path().join(format!("input-{i}.log")).to_str().unwrap().to_string();
    let reference = TempDir::new().unwrap();
    cimlake_ok(reference.path(), &["ingest", dir.path().to_str().unwrap()]);
    let want = assert_whole(reference.path());
    for _ in 0..3 {
        let lake = TempDir::new().unwrap();
        // Both start with the largest file, and each stops once it has converted it, before its
        // commit is checked: the race is then certain, not likely.
        let (pause_a, pause_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let fault = |d: &TempDir| format!("ingest-before-publish@1:wait={}", d.path().display());
        let (fa, fb) = (fault(&pause_a), fault(&pause_b));
        let a = spawn_with(lake.path(), &["ingest", "-j", "1", &file(2), &file(0)], &[("CIMLAKE_FAULT", &fa)], Stdio::piped());
        let b = spawn_with(lake.path(), &["ingest", "-j", "1", &file(2), &file(1)], &[("CIMLAKE_FAULT", &fb)], Stdio::piped());
        wait_for_pause(pause_a.path(), "ingest-before-publish", 1);
        wait_for_pause(pause_b.path(), "ingest-before-publish", 1);
        assert_eq!(commits(lake.path()).0.len(), 0, "a commit before both had converted the shared input");
        resume(pause_a.path(), "ingest-before-publish", 1);
        resume(pause_b.path(), "ingest-before-publish", 1);
        let mut outputs = Vec::new();
        for c in [a, b] {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            outputs.push(String::from_utf8(out.stdout).unwrap());
        }
        // One committed the shared input; the other found it committed when it came to commit.
        let raced = format!("skipped {}: already in the lake (commit 1, as {}; committed by another ingest while this one read it)", file(2), file(2));
        assert_eq!(outputs.iter().filter(|o| o.contains(&raced)).count(), 1, "{outputs:#?}");
        assert_eq!(outputs.iter().filter(|o| o.contains(&format!("ingested {} (XmlWinEventLog)", file(2)))).count(), 1, "{outputs:#?}");
        assert_eq!(assert_whole(lake.path()), want);
        let (commits, named) = commits(lake.path());
        assert_eq!(commits.len(), 3);
        assert_eq!(data_files(lake.path()), named, "data files that no commit names");
    }
}

#[test]
fn a_query_during_an_ingest_sees_whole_inputs_only() {
    let dir = inputs(5, 400);
    let lake = TempDir::new().unwrap();
    // The ingest stops after each commit until the test has queried.
    let pause = TempDir::new().unwrap();
    let fault = format!("ingest-after-commit:wait={}", pause.path().display());
    let mut child = spawn_with(lake.path(), &["ingest", "-j", "1", dir.path().to_str().unwrap()], &[("CIMLAKE_FAULT", &fault)], Stdio::null());
    // Meanwhile, queries at any moment.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let (lake, running) = (lake.path().to_path_buf(), running.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(counts(&lake));
            }
            seen
        })
    };
    let mut at_each_commit = Vec::new();
    for k in 1..=5 {
        wait_for_pause(pause.path(), "ingest-after-commit", k);
        at_each_commit.push(counts(lake.path()));
        resume(pause.path(), "ingest-after-commit", k);
    }
    assert!(child.wait().unwrap().success());
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let seen = poller.join().unwrap();
    // With one job the inputs are committed in order: every count seen is a prefix of them.
    let (commits, _) = commits(lake.path());
    let mut prefixes = vec![(0, 0)];
    for c in &commits {
        let (p, t) = *prefixes.last().unwrap();
        prefixes.push((p + c.1, t + c.2));
    }
    for s in &seen {
        assert!(prefixes.contains(s), "a query saw {s:?}, not whole inputs {prefixes:?}");
    }
    assert!(seen.len() >= 2, "{seen:?}");
    // And each intermediate state was seen, exactly: after commit k, the first k inputs.
    assert_eq!(at_each_commit, prefixes[1..].to_vec());
}

#[test]
fn kills_after_files_are_moved_and_after_a_commit_leave_a_whole_lake() {
    let dir = inputs(3, 600);
    let dir_arg = dir.path().to_str().unwrap();
    let reference = TempDir::new().unwrap();
    cimlake_ok(reference.path(), &["ingest", "-j", "1", dir_arg]);
    let want = assert_whole(reference.path());
    // Files per input, as an uninterrupted ingest moves them.
    let files_of = |n: usize| -> usize {
        let c: serde_json::Value = published_records(&reference.path().join("_cimlake/commits"))[n - 1].clone();
        c["files"].as_array().unwrap().len()
    };
    let (first, second) = (files_of(1), files_of(2));
    assert!(second >= 2, "{second} files");
    for (fault, commits_left, orphans_left) in [
        // Every file of the second input moved into the lake, its commit not written.
        (format!("ingest-after-move@{}:kill", first + second), 1, true),
        // One of its files moved.
        (format!("ingest-after-move@{}:kill", first + 1), 1, true),
        // The second commit published, nothing after it done.
        ("ingest-after-commit@2:kill".to_string(), 2, false),
        // The first input converted and its files moved, its commit not yet checked.
        ("ingest-before-publish@1:kill".to_string(), 0, true),
    ] {
        let fault = fault.as_str();
        let lake = TempDir::new().unwrap();
        let status = command(lake.path(), &["ingest", "-j", "1", dir_arg]).env("CIMLAKE_FAULT", fault).status().unwrap();
        // The kill landed where it was meant to, not after the run.
        assert_eq!(status.signal(), Some(9), "{fault}: {status}");
        let (left, named) = commits(lake.path());
        assert_eq!(left.len(), commits_left, "{fault}");
        let on_disk = data_files(lake.path());
        assert_eq!(on_disk != named, orphans_left, "{fault}: files that no commit names: {:?}", on_disk.difference(&named).count());
        // Whole as it is; a rerun completes it, and `lake vacuum` removes what the killed run left.
        assert_whole(lake.path());
        cimlake_ok(lake.path(), &["ingest", "-j", "1", dir_arg]);
        assert_eq!(assert_whole(lake.path()), want, "{fault}");
        let (done, named) = commits(lake.path());
        assert_eq!(done.len(), 3, "{fault}");
        assert_eq!(data_files(lake.path()) != named, orphans_left, "{fault}: the rerun removed or left files");
        cimlake_ok(lake.path(), &["lake", "vacuum", "--retention", "0"]);
        assert_eq!(data_files(lake.path()), named, "{fault}: data files that no commit names after vacuum");
        assert_eq!(assert_whole(lake.path()), want, "{fault}: vacuum changed what queries read");
    }
}

#[test]
fn a_file_edited_while_it_is_read_is_committed_under_the_hash_of_what_was_read() {
    let dir = inputs(1, 4000);
    let file = dir.path().join("input-0.log");
    let intact = std::fs::read(&file).unwrap();
    assert!(intact.len() > 8 << 20, "{} bytes", intact.len());
    let keep = TempDir::new().unwrap();
    let intact_copy = keep.path().join("intact.log");
    std::fs::write(&intact_copy, &intact).unwrap();
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();

    // The ingest stops once it has read 2 MiB; the rest of the file is then edited in place (some
    // process creations turned into another event id, same length), its size and time restored.
    let lake = TempDir::new().unwrap();
    let pause = TempDir::new().unwrap();
    let fault = format!("ingest-read@2:wait={}", pause.path().display());
    let child = spawn_with(lake.path(), &["ingest", "-j", "1", file.to_str().unwrap()], &[("CIMLAKE_FAULT", &fault)], Stdio::piped());
    wait_for_pause(pause.path(), "ingest-read", 2);
    let text = String::from_utf8(intact.clone()).unwrap();
    let (head, tail) = text.split_at(4 << 20);
    let edited = format!("{head}{}", tail.replacen("<EventID>1</EventID>", "<EventID>9</EventID>", 50));
    assert_eq!(edited.len(), intact.len());
    {
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, edited.as_bytes(), 0).unwrap();
        f.set_modified(mtime).unwrap();
    }
    resume(pause.path(), "ingest-read", 2);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    // Committed under the hash of the bytes converted (the edited file), with its rows.
    let (commits, _) = commits(lake.path());
    assert_eq!(commits.len(), 1);
    let hash = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    assert_eq!(commits[0].0, hash(edited.as_bytes()), "committed under the hash of bytes that were not converted");
    let alone = TempDir::new().unwrap();
    std::fs::write(keep.path().join("edited.log"), &edited).unwrap();
    cimlake_ok(alone.path(), &["ingest", keep.path().join("edited.log").to_str().unwrap()]);
    assert_eq!(counts(lake.path()), counts(alone.path()));
    // The intact file is another input, not "already in the lake".
    let again = cimlake_ok(lake.path(), &["ingest", intact_copy.to_str().unwrap()]);
    assert!(again.contains("1 input: 1 ingested"), "{again}");
    assert_eq!(counts(lake.path()).0, 2 * counts(alone.path()).0 + 50);
}

/// The data files no commit names, relative to the lake.
fn unnamed(lake: &Path) -> BTreeSet<String> {
    let (_, named) = commits(lake);
    data_files(lake).difference(&named).map(|p| p.strip_prefix(lake).unwrap().to_string_lossy().into_owned()).collect()
}

/// The data files a `lake vacuum` run listed (`removed X` / `would remove X`).
fn listed(out: &str, verb: &str) -> BTreeSet<String> {
    out.lines().filter_map(|l| l.strip_prefix(verb)).filter(|p| p.ends_with(".parquet")).map(str::to_string).collect()
}

#[test]
fn vacuum_removes_a_killed_ingests_files_and_keeps_a_running_ones() {
    let dir = inputs(2, 600);
    let dir_arg = dir.path().to_str().unwrap();
    let lake = TempDir::new().unwrap();
    // Killed right after moving its first data file into place: a file no commit names.
    let mut child = spawn_with(lake.path(), &["ingest", "-j", "1", dir_arg], &[("CIMLAKE_FAULT", "ingest-after-move@1:kill")], Stdio::null());
    assert!(!child.wait().unwrap().success(), "the ingest was to be killed");
    let leftovers = unnamed(lake.path());
    assert!(!leftovers.is_empty(), "the killed ingest left no file");

    // The default retention keeps new files; a dry run lists them and removes nothing.
    let out = cimlake_ok(lake.path(), &["lake", "vacuum"]);
    assert!(out.contains(&format!("removed 0 file(s), 0 bytes; kept {} unnamed file(s)", leftovers.len())), "{out}");
    let out = cimlake_ok(lake.path(), &["lake", "vacuum", "--retention", "0", "--dry-run"]);
    assert_eq!(listed(&out, "would remove "), leftovers, "{out}");
    assert_eq!(unnamed(lake.path()), leftovers, "a dry run removed something");

    let before = assert_whole(lake.path());
    let out = cimlake_ok(lake.path(), &["lake", "vacuum", "--retention", "0"]);
    assert_eq!(listed(&out, "removed "), leftovers, "{out}");
    assert!(out.lines().any(|l| l.starts_with("removed _cimlake/staging/")), "the dead session's staging: {out}");
    assert!(unnamed(lake.path()).is_empty());
    assert_eq!(assert_whole(lake.path()), before, "vacuum changed what queries read");

    // A running ingest's file, moved into place and not yet committed, is kept whatever the
    // retention; the ingest then commits it.
    let pause = TempDir::new().unwrap();
    let fault = format!("ingest-after-move@1:wait={}", pause.path().display());
    let child = spawn_with(lake.path(), &["ingest", "-j", "1", dir_arg], &[("CIMLAKE_FAULT", &fault)], Stdio::null());
    wait_for_pause(pause.path(), "ingest-after-move", 1);
    let in_flight = unnamed(lake.path());
    assert!(!in_flight.is_empty());
    let out = cimlake_ok(lake.path(), &["lake", "vacuum", "--retention", "0"]);
    assert!(listed(&out, "removed ").is_empty(), "a running ingest's file was removed: {out}");
    assert!(in_flight.is_subset(&data_files(lake.path()).iter().map(|p| p.strip_prefix(lake.path()).unwrap().to_string_lossy().into_owned()).collect()));
    resume(pause.path(), "ingest-after-move", 1);
    assert!(child.wait_with_output().unwrap().status.success());
    assert_whole(lake.path());
    assert!(unnamed(lake.path()).is_empty());
    assert_eq!(delta_files(lake.path()), commits(lake.path()).1, "the Delta logs after the completed run");
}

/// The files queries read now: the commits' files, less those compactions replaced, plus the ones
/// they wrote.
fn effective_files(lake: &Path) -> HashSet<PathBuf> {
    let (_, mut files) = commits(lake);
    for c in published_records(&lake.join("_cimlake/compactions")) {
        for f in c["removed"].as_array().unwrap() {
            assert!(files.remove(&lake.join(f["path"].as_str().unwrap())), "a compaction replaced a file queries did not read");
        }
        for f in c["added"].as_array().unwrap() {
            files.insert(lake.join(f["path"].as_str().unwrap()));
        }
    }
    files
}

/// Files per partition directory.
fn per_partition(files: &HashSet<PathBuf>) -> std::collections::BTreeMap<PathBuf, usize> {
    let mut out = std::collections::BTreeMap::new();
    for f in files {
        *out.entry(f.parent().unwrap().to_path_buf()).or_insert(0) += 1;
    }
    out
}

#[test]
fn optimize_leaves_one_file_per_partition_with_the_same_rows_and_vacuum_frees_the_rest() {
    let dir = inputs(12, 300);
    let dir_arg = dir.path().to_str().unwrap();
    let lake = TempDir::new().unwrap();
    cimlake_ok(lake.path(), &["ingest", "-j", "2", dir_arg]);
    let counts_before = assert_whole(lake.path());
    let rows_sql = "SELECT process_guid, arrow_cast(_time, 'Int64') AS t, process FROM endpoint.processes ORDER BY 1, 2, 3";
    let flows_sql = "SELECT process_guid, arrow_cast(_time, 'Int64') AS t, dest_ip, dest_port FROM network_traffic.all_traffic ORDER BY 1, 2, 3, 4";
    let (rows_before, flows_before) = (query_csv(lake.path(), rows_sql, &[]), query_csv(lake.path(), flows_sql, &[]));
    let detected_before = cimlake_ok(lake.path(), &["detect", "--format", "csv"]);
    let files_before = effective_files(lake.path());
    let partitions = per_partition(&files_before);
    assert!(partitions.values().any(|&n| n > 1), "no partition with several files: {partitions:?}");

    // Killed before its compaction is published: queries read what they read before.
    let killed = spawn_with(lake.path(), &["lake", "optimize"], &[("CIMLAKE_FAULT", "optimize-before-publish:kill")], Stdio::null()).wait_with_output().unwrap();
    assert!(!killed.status.success(), "optimize was to be killed");
    assert_eq!(effective_files(lake.path()), files_before);
    assert_eq!(query_csv(lake.path(), rows_sql, &[]), rows_before);

    let out = cimlake_ok(lake.path(), &["lake", "optimize"]);
    assert!(out.contains("compaction 1 published"), "{out}");
    let files_after = effective_files(lake.path());
    let after = per_partition(&files_after);
    assert_eq!(after.keys().collect::<Vec<_>>(), partitions.keys().collect::<Vec<_>>(), "the same partitions");
    assert!(after.values().all(|&n| n == 1), "{after:?}");
    assert_eq!(assert_whole(lake.path()), counts_before);
    assert_eq!(query_csv(lake.path(), rows_sql, &[]), rows_before);
    assert_eq!(query_csv(lake.path(), flows_sql, &[]), flows_before);
    assert_eq!(cimlake_ok(lake.path(), &["detect", "--format", "csv"]), detected_before);
    // The Delta logs follow: an outside reader reads the same rows from the merged files.
    assert_eq!(delta_files(lake.path()), files_after);
    crate::delta::assert_outside_reader_agrees(lake.path());
    let h = cimlake_ok(lake.path(), &["lake", "history", "endpoint.processes"]);
    assert!(h.lines().nth(1).is_some_and(|l| l.contains("OPTIMIZE") && l.contains("compaction 1")), "{h}");
    // Nothing more to merge.
    assert!(cimlake_ok(lake.path(), &["lake", "optimize"]).contains("nothing to merge"));

    // The replaced files stay while the compaction is younger than the retention period (an
    // earlier --as-of reads them), and then go, with what the killed run left: the files it had
    // merged and moved into place, which nothing names.
    let killed_left = data_files(lake.path()).into_iter().filter(|f| !files_before.contains(f) && !files_after.contains(f)).count();
    assert!(killed_left > 0, "the killed optimize moved no file into place");
    let out = cimlake_ok(lake.path(), &["lake", "vacuum"]);
    assert!(out.contains(&format!("removed 0 file(s), 0 bytes; kept {killed_left} unnamed file(s) younger than 7d or of a running ingest, and {} file(s) replaced by compactions younger than 7d", files_before.len())), "{out}");
    let last = commits(lake.path()).0.len().to_string();
    assert_eq!(query_csv(lake.path(), rows_sql, &["--as-of", &last]), rows_before);
    cimlake_ok(lake.path(), &["lake", "vacuum", "--retention", "0"]);
    assert_eq!(data_files(lake.path()), files_after);
    assert_eq!(query_csv(lake.path(), rows_sql, &[]), rows_before);
    // As of a commit the compaction had not taken in, the files are gone now: said so, by
    // compaction.
    let earlier = (last.parse::<u64>().unwrap() - 1).to_string();
    let gone = command(lake.path(), &["query", rows_sql, "--as-of", &earlier]).output().unwrap();
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(!gone.status.success() && err.contains(&format!("as of commit {earlier}: its files were replaced by compaction 1 (")), "{err}");
    assert!(err.contains("removed by `lake vacuum` after its retention period"), "{err}");
    assert_eq!(assert_whole(lake.path()), counts_before);

    // Delta logs made again from the records after that vacuum: the replaced files are added
    // (they are gone) and removed again, and readers read the merged files.
    for table in ["endpoint/processes", "network_traffic/all_traffic", "quarantine/records"] {
        let log = lake.path().join(table).join("_delta_log");
        if log.exists() {
            std::fs::remove_dir_all(log).unwrap();
        }
    }
    cimlake_ok(lake.path(), &["lake", "upgrade"]);
    assert_eq!(delta_files(lake.path()), files_after);
    crate::delta::assert_outside_reader_agrees(lake.path());
}
