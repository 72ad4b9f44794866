//! Nothing lost, nothing doubled: `cimlake ingest` killed at random points, two ingests of
//! overlapping inputs at once, and queries while an ingest runs.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

fn spawn(lake: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cimlake"))
        .arg("--lake")
        .arg(lake)
        .args(args)
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cimlake starts")
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
    let dir = lake.join("_cimlake/commits");
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(d) => d.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    let mut out = Vec::new();
    let mut files = HashSet::new();
    for n in names {
        let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&n).unwrap()).unwrap();
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
                if !p.ends_with("_cimlake") {
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

/// The lake is whole: each input committed once, and the rows a query sees are exactly those
/// of the commits.
fn assert_whole(lake: &Path) -> (u64, u64) {
    let (commits, _) = commits(lake);
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
            // Within the first 60% of an uninterrupted run: a restart has less left to do.
            let delay = Duration::from_micros(rng % (full.as_micros() as u64 * 3 / 5).max(1));
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
        // A rerun completes the lake to exactly the reference, and removes what the killed runs
        // left.
        cimlake_ok(lake.path(), &["ingest", "-j", "2", "--piece-size", "256K", dir_arg]);
        assert_eq!(assert_whole(lake.path()), want);
        let (commits, named) = commits(lake.path());
        assert_eq!(commits.len(), 4);
        assert_eq!(data_files(lake.path()), named, "data files that no commit names");
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
        // Both start with the largest file, so they convert it at the same time.
        let a = spawn(lake.path(), &["ingest", "-j", "1", &file(2), &file(0)]);
        let b = spawn(lake.path(), &["ingest", "-j", "1", &file(2), &file(1)]);
        for mut c in [a, b] {
            assert!(c.wait().unwrap().success());
        }
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
    let mut child = spawn(lake.path(), &["ingest", "-j", "1", dir.path().to_str().unwrap()]);
    let mut seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        seen.push(counts(lake.path()));
    }
    assert!(child.wait().unwrap().success());
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
}
