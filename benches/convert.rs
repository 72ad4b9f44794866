//! Converter throughput on the bundled samples, repeated to a few MB.
//!
//! `cargo bench --bench convert`. The `quick-xml tokenize` case reads the same bytes with
//! quick-xml and does nothing else: the floor for any XML-based converter, run side by side.

use std::hint::black_box;
use std::io::BufReader;
use std::path::PathBuf;

use arrow::record_batch::RecordBatch;
use cimlake::cim::Table;
use cimlake::convert::{BatchSink, ConvertError, Emitter, evtx, xmlwineventlog};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Counts rows and drops the batches.
#[derive(Default)]
struct CountSink(usize);

impl BatchSink for CountSink {
    fn write_batch(&mut self, _: Table, batch: RecordBatch) -> Result<(), ConvertError> {
        self.0 += batch.num_rows();
        Ok(())
    }
}

fn sample(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/logs/sysmon").join(name)
}

fn xml_input() -> Vec<u8> {
    let one = std::fs::read(sample("t1218_007_msiexec_sysmon.log")).unwrap();
    let mut all = Vec::with_capacity(4 << 20);
    while all.len() < 4 << 20 {
        all.extend_from_slice(&one);
    }
    all
}

fn bench_xml(c: &mut Criterion) {
    let input = xml_input();
    let mut g = c.benchmark_group("xmlwineventlog");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.sample_size(20);
    g.bench_function("cimlake convert", |b| {
        b.iter(|| {
            let mut sink = CountSink::default();
            let mut out = Emitter::new(&mut sink);
            xmlwineventlog::convert(BufReader::new(&input[..]), "bench", &mut out).unwrap();
            out.finish().unwrap();
            black_box(sink.0)
        })
    });
    g.bench_function("quick-xml tokenize", |b| {
        b.iter(|| {
            let mut reader = quick_xml::Reader::from_reader(&input[..]);
            let mut buf = Vec::new();
            let mut n = 0usize;
            loop {
                match reader.read_event_into(&mut buf) {
                    Ok(quick_xml::events::Event::Eof) => break,
                    Ok(_) => n += 1,
                    Err(_) => break,
                }
                buf.clear();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn bench_evtx(c: &mut Criterion) {
    // `CIMLAKE_BENCH_EVTX=FILE` to measure another file.
    let path = std::env::var_os("CIMLAKE_BENCH_EVTX").map_or_else(|| sample("sysmon_corrupt_chunk9.evtx"), PathBuf::from);
    let len = std::fs::metadata(&path).unwrap().len();
    let mut g = c.benchmark_group("evtx");
    g.throughput(Throughput::Bytes(len));
    g.sample_size(20);
    // The baseline: what `evtx_dump -t 1 -o jsonl` does with the same parser (every record as a
    // JSON value, written as one line), without the file output.
    g.bench_function("evtx_dump -o jsonl equivalent", |b| {
        b.iter(|| {
            let mut parser = ::evtx::EvtxParser::from_path(&path)
                .unwrap()
                .with_configuration(::evtx::ParserSettings::new().num_threads(1));
            let mut sink = std::io::sink();
            let mut n = 0u64;
            for r in parser.records_json_value().flatten() {
                serde_json::to_writer(&mut sink, &r.data).unwrap();
                std::io::Write::write_all(&mut sink, b"\n").unwrap();
                n += 1;
            }
            black_box(n)
        })
    });
    g.bench_function("cimlake convert", |b| {
        b.iter(|| {
            let mut sink = CountSink::default();
            let mut out = Emitter::new(&mut sink);
            let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
            evtx::convert_reader(file, "bench", &mut out).unwrap();
            out.finish().unwrap();
            black_box(sink.0)
        })
    });
    g.finish();
}

/// NVM key="value" and JSON, generated (about 10 MB each).
fn bench_nvm(c: &mut Criterion) {
    use cimlake::generate::{GenConfig, GenFormat, generate};
    let dir = tempfile::tempdir().unwrap();
    let lake = cimlake::lake::Lake::new(dir.path().join("lake"));
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let mut g = c.benchmark_group("nvm");
    g.sample_size(10);
    for (format, name) in [(GenFormat::NvmKv, "key=value"), (GenFormat::NvmJson, "json")] {
        let cfg = GenConfig { seed: 1, hosts: 100, processes: 2_000, flows_per_process: 5.0, start, hours: 4, msiexec_share: 0.005, positives: 5 };
        let out = dir.path().join(name);
        let report = generate(&cfg, format, &lake, &out, &|_| {}).unwrap();
        let bytes = std::fs::read(report.file.unwrap()).unwrap();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("cimlake convert ({name})"), |b| {
            b.iter(|| {
                let mut sink = CountSink::default();
                let mut out = Emitter::new(&mut sink);
                match format {
                    GenFormat::NvmKv => cimlake::convert::nvm::convert_kv(BufReader::new(&bytes[..]), "bench", &mut out).unwrap(),
                    _ => cimlake::convert::nvm::convert_json(BufReader::new(&bytes[..]), "bench", &mut out).unwrap(),
                }
                out.finish().unwrap();
                black_box(sink.0)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_xml, bench_evtx, bench_nvm);
criterion_main!(benches);
