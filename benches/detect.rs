//! The MSIExec detection (cimlake mode) over a generated lake: the whole lake and one hourly
//! window, both within the same run.
//!
//! `cargo bench --bench detect`. Scale with `CIMLAKE_BENCH_PROCESSES` (default 100,000 processes,
//! about 1M flows over 24 hours); the lake is generated once into a temporary directory, outside
//! the timed loop, and every iteration checks that the planted positives are all found.
//!
//! Window pruning on lakes made beforehand with `cimlake gen`: `CIMLAKE_BENCH_LAKES=A,B` and
//! `CIMLAKE_BENCH_HOUR=2026-11-08T12:00:00Z` time that hour (24 h look-back) on each lake, side by
//! side in one run, after checking that each lake gives the same rows every time.

use std::hint::black_box;

use chrono::{DateTime, Duration, Utc};
use cimlake::detect::runner::Runner;
use cimlake::detect::{Catalog, Mode, Search, Window};
use cimlake::engine::EngineOptions;
use cimlake::generate::{GenConfig, GenFormat, generate};
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
    let mut g = c.benchmark_group(format!("detect/hour {}", hour.format("%Y-%m-%dT%H")));
    g.sample_size(20);
    for dir in lakes.split(',') {
        let lake = Lake::new(dir);
        let runner = Runner::new(&lake, &catalog, EngineOptions::default());
        let run = || rt.block_on(runner.run(detection, Mode::Cimlake, &window)).unwrap().rows();
        let rows = run();
        g.bench_function(format!("{dir} ({rows} rows)"), |b| b.iter(|| assert_eq!(black_box(run()), rows)));
    }
    g.finish();
}

fn bench_detect(c: &mut Criterion) {
    if let Ok(lakes) = std::env::var("CIMLAKE_BENCH_LAKES") {
        return bench_existing_lakes(c, &lakes);
    }
    let processes: u64 = std::env::var("CIMLAKE_BENCH_PROCESSES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
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
    let report = generate(&cfg, GenFormat::Lake, &lake, &dir.path().join("out"), &|_| {}).unwrap();
    let expected = report.expected.len();
    let catalog = Catalog::builtin().unwrap();
    let detection = &catalog.detections[0];
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let runner = Runner::new(&lake, &catalog, EngineOptions::default());
    let run = |search: Search| rt.block_on(runner.run(detection, Mode::Cimlake, &search)).unwrap().rows();
    assert_eq!(run(Search::all_time()), expected, "the planted positives");

    let mut g = c.benchmark_group(format!("detect/{}k_processes_{}k_flows", processes / 1000, report.flows / 1000));
    g.sample_size(10);
    g.bench_function("whole lake", |b| b.iter(|| black_box(run(Search::all_time()))));
    let hour = Search { window: Window { earliest: start + Duration::hours(12), latest: start + Duration::hours(13) }, lookback: Duration::hours(24) };
    g.bench_function("one hour", |b| b.iter(|| black_box(run(hour))));
    g.finish();
}

criterion_group!(benches, bench_detect);
criterion_main!(benches);
