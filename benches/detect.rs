//! The MSIExec detection (cimlake mode) over a generated lake: the whole lake and one hourly
//! window, both within the same run.
//!
//! `cargo bench --bench detect`. Scale with `CIMLAKE_BENCH_PROCESSES` (default 100,000 processes,
//! about 1M flows over 24 hours); the lake is generated once into a temporary directory, outside
//! the timed loop, and every iteration checks that the planted positives are all found.
//!
//! How the lake is made (`CIMLAKE_BENCH_SOURCE`): `lake` (default) writes the generated rows
//! straight into Parquet; `xml` writes them as one Sysmon XmlWinEventLog file in time order and
//! ingests it; `xml-hosts` the same with host groups one after another (a merged export, not in
//! time order); `xml-small` cuts the time-ordered file into 200 inputs and ingests them all, as a
//! collector drops many small files. The lake is kept in `CIMLAKE_BENCH_LAKE_DIR` when it is set
//! (e.g. for `benches/duckdb/compare.py`); its files per table and hour are printed.
//!
//! Window pruning on lakes made beforehand with `cimlake gen`: `CIMLAKE_BENCH_LAKES=A,B` and
//! `CIMLAKE_BENCH_HOUR=2026-11-08T12:00:00Z` time that hour (24 h look-back), then the whole lake,
//! on each lake, side by side in one run, after checking that each lake gives the same rows every
//! time.

use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use cimlake::detect::runner::Runner;
use cimlake::detect::{Catalog, Mode, Search, Window};
use cimlake::engine::EngineOptions;
use cimlake::generate::{GenConfig, GenFormat, GenOrder, generate, generate_in_order};
use cimlake::lake::Lake;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench_existing_lakes(c: &mut Criterion, lakes: &str) {
    let hour: DateTime<Utc> = DateTime::parse_from_rfc3339(&std::env::var("CIMLAKE_BENCH_HOUR").expect("CIMLAKE_BENCH_HOUR"))
        .expect("CIMLAKE_BENCH_HOUR is RFC 3339")
        .with_timezone(&Utc);
    let window = Search { window: Window { earliest: hour, latest: hour + Duration::hours(1) }, lookback: Duration::hours(24) };
    let catalog = Catalog::builtin().unwrap();
    let detection = &catalog.detections[0];
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for (name, search) in [(format!("hour {}", hour.format("%Y-%m-%dT%H")), window), ("whole lake".to_string(), Search::all_time())] {
        let mut g = c.benchmark_group(format!("detect/{name}"));
        g.sample_size(20);
        for dir in lakes.split(',') {
            let lake = Lake::new(dir);
            let runner = Runner::new(&lake, &catalog, EngineOptions::default());
            let run = || rt.block_on(runner.run(detection, Mode::Cimlake, &search)).unwrap().rows();
            let rows = run();
            g.bench_function(format!("{dir} ({rows} rows)"), |b| b.iter(|| assert_eq!(black_box(run()), rows)));
        }
        g.finish();
    }
}

fn bench_detect(c: &mut Criterion) {
    if let Ok(lakes) = std::env::var("CIMLAKE_BENCH_LAKES") {
        return bench_existing_lakes(c, &lakes);
    }
    let processes: u64 = std::env::var("CIMLAKE_BENCH_PROCESSES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = std::env::var("CIMLAKE_BENCH_LAKE_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| dir.path().join("lake"));
    let lake = Lake::new(&lake_dir);
    let source = std::env::var("CIMLAKE_BENCH_SOURCE").unwrap_or_else(|_| "lake".into());
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap().with_timezone(&Utc);
    let cfg = GenConfig {
        seed: 3,
        hosts: 200.max((processes / 400) as u32),
        processes,
        flows_per_process: 10.0,
        start,
        hours: 24,
        msiexec_share: 0.005,
        positives: 25,
    };
    let out = dir.path().join("out");
    let report = match source.as_str() {
        "lake" => generate(&cfg, GenFormat::Lake, &lake, &out, &|_| {}).unwrap(),
        "xml" | "xml-hosts" | "xml-small" => {
            let order = if source == "xml-hosts" { GenOrder::Hosts } else { GenOrder::Time };
            let report = generate_in_order(&cfg, GenFormat::Xmlwineventlog, order, &lake, &out, &|_| {}).unwrap();
            let file = report.file.clone().expect("a log file");
            let inputs = if source == "xml-small" { cut(&file, 200) } else { vec![file] };
            cimlake::ingest::ingest(&lake, &inputs, &Default::default()).unwrap();
            report
        }
        other => panic!("CIMLAKE_BENCH_SOURCE={other}: lake, xml, xml-hosts or xml-small"),
    };
    eprintln!("{source}: {} Parquet files, at most {} in one table and hour", files_per_hour(&lake_dir).0, files_per_hour(&lake_dir).1);
    let expected = report.expected.len();
    let catalog = Catalog::builtin().unwrap();
    let detection = &catalog.detections[0];
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let runner = Runner::new(&lake, &catalog, EngineOptions::default());
    let run = |search: Search| rt.block_on(runner.run(detection, Mode::Cimlake, &search)).unwrap().rows();
    assert_eq!(run(Search::all_time()), expected, "the planted positives");

    let mut g = c.benchmark_group(format!("detect/{source} {}k_processes_{}k_flows", processes / 1000, report.flows / 1000));
    g.sample_size(10);
    g.bench_function("whole lake", |b| b.iter(|| black_box(run(Search::all_time()))));
    let hour = Search { window: Window { earliest: start + Duration::hours(12), latest: start + Duration::hours(13) }, lookback: Duration::hours(24) };
    g.bench_function("one hour", |b| b.iter(|| black_box(run(hour))));
    g.finish();
}

/// The log file cut into `n` files at line ends (each XmlWinEventLog event is one line).
fn cut(file: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    let text = std::fs::read(file).unwrap();
    let piece = text.len().div_ceil(n);
    let (mut start, mut out) = (0, Vec::new());
    while start < text.len() {
        let end = (start + piece).min(text.len());
        let end = text[end..].iter().position(|&b| b == b'\n').map_or(text.len(), |i| end + i + 1);
        let path = file.with_extension(format!("{}.log", out.len()));
        std::fs::write(&path, &text[start..end]).unwrap();
        out.push(path);
        start = end;
    }
    std::fs::remove_file(file).unwrap();
    out
}

/// The lake's Parquet files, and the most in one table-and-hour directory.
fn files_per_hour(root: &std::path::Path) -> (usize, usize) {
    let mut per_dir = std::collections::BTreeMap::<std::path::PathBuf, usize>::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                *per_dir.entry(d.clone()).or_default() += 1;
            }
        }
    }
    (per_dir.values().sum(), per_dir.values().copied().max().unwrap_or(0))
}

criterion_group!(benches, bench_detect);
criterion_main!(benches);
