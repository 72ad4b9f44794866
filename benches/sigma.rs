//! SigmaHQ's rules over a generated 1-day lake, side by side in one run: one rule by its own SQL,
//! then 1, 100 and all `process_creation` rules (and every rule of both log sources) in one scan
//! per log source.
//!
//! `cargo bench --bench sigma`. The rules are read from `../shared/corpus/sigma/rules` (or
//! `CIMLAKE_BENCH_SIGMA`); scale with `CIMLAKE_BENCH_PROCESSES` (default 100,000 processes, about
//! 1M flows over 24 hours), or time lakes made beforehand with `CIMLAKE_BENCH_LAKES=A,B` (e.g.
//! lakes ingested from `cimlake gen --format xmlwineventlog` logs). Every iteration checks the
//! number of matches against the first run.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use cimlake::detect::runner::Runner;
use cimlake::detect::sigma::many;
use cimlake::detect::{Catalog, Detection, Mode, Search};
use cimlake::engine::{EngineOptions, session_with};
use cimlake::generate::{GenConfig, GenFormat, generate};
use cimlake::lake::Lake;
use criterion::{Criterion, criterion_group, criterion_main};

fn rules_dir() -> PathBuf {
    std::env::var_os("CIMLAKE_BENCH_SIGMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/sigma/rules"))
}

fn bench_lake(c: &mut Criterion, lake: &Lake, name: &str, catalog: &Catalog) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 << 20).build().unwrap();
    let process: Vec<&Detection> =
        catalog.select("sigma:process_creation").unwrap().into_iter().filter(|d| !d.sigma.as_ref().unwrap().correlation).collect();
    let all: Vec<&Detection> = catalog.select("sigma").unwrap().into_iter().filter(|d| !d.sigma.as_ref().unwrap().correlation).collect();
    // The one rule: SigmaHQ's "whoami /FO" rule (image or original file name, and a command line option).
    let one = *process.iter().find(|d| d.meta.name == "Whoami.EXE Execution With Output Option").unwrap_or(&process[0]);
    let search = Search::all_time();
    let scan = |rules: &[&Detection]| -> usize {
        rt.block_on(async {
            let ctx = session_with(lake, &EngineOptions::default()).await.unwrap();
            many::run(&ctx, rules, &search).await.unwrap().iter().map(|m| m.rows()).sum()
        })
    };
    let runner = Runner::new(lake, catalog, EngineOptions::default());
    let own_sql = || rt.block_on(runner.run(one, Mode::Cimlake, &search)).unwrap().rows();

    let mut g = c.benchmark_group(format!("sigma/{name}"));
    g.sample_size(10);
    let cases: Vec<(String, Vec<&Detection>)> = vec![
        ("1 rule, one scan".into(), vec![one]),
        ("100 process_creation rules, one scan".into(), process.iter().take(100).copied().collect()),
        (format!("all {} process_creation rules, one scan", process.len()), process.clone()),
        (format!("all {} rules, one scan per log source", all.len()), all.clone()),
    ];
    let one_rows = own_sql();
    assert_eq!(scan(&[one]), one_rows, "the rule's own SQL and the scan agree");
    g.bench_function("1 rule, its own SQL", |b| b.iter(|| assert_eq!(black_box(own_sql()), one_rows)));
    for (label, rules) in &cases {
        let rows = scan(rules);
        g.bench_function(format!("{label} ({rows} matches)"), |b| b.iter(|| assert_eq!(black_box(scan(rules)), rows)));
    }
    g.finish();
}

fn bench_sigma(c: &mut Criterion) {
    let dir = rules_dir();
    if !dir.is_dir() {
        eprintln!("no Sigma rules at {} (set CIMLAKE_BENCH_SIGMA): nothing to time", dir.display());
        return;
    }
    let catalog = Catalog::load(&[dir]).unwrap();
    if let Ok(lakes) = std::env::var("CIMLAKE_BENCH_LAKES") {
        for l in lakes.split(',') {
            bench_lake(c, &Lake::new(l), l, &catalog);
        }
        return;
    }
    let processes: u64 = std::env::var("CIMLAKE_BENCH_PROCESSES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let tmp = tempfile::tempdir().unwrap();
    let lake = Lake::new(tmp.path().join("lake"));
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap().with_timezone(&Utc);
    let cfg = GenConfig { seed: 3, hosts: 200.max((processes / 400) as u32), processes, flows_per_process: 10.0, start, hours: 24, msiexec_share: 0.005, positives: 25 };
    let report = generate(&cfg, GenFormat::Lake, &lake, &tmp.path().join("out"), &|_| {}).unwrap();
    bench_lake(c, &lake, &format!("{}k_processes_{}k_flows", processes / 1000, report.flows / 1000), &catalog);
}

criterion_group!(benches, bench_sigma);
criterion_main!(benches);
