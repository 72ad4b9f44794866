//! Entry points for the fuzz targets in `fuzz/` (`cargo fuzz run <target>`), shared with the test
//! that replays every saved case (`fuzz/regressions/<target>/`) in CI.
//!
//! Each runs one parser on arbitrary bytes and checks what must hold whatever the input: no
//! panic, and every record read is accounted for as rows, a skip or a bad record. `input` runs the
//! whole input path (container sniffing, gzip, zip, tar, the shapes inside, the hash); `split`
//! checks that a text input cut into pieces anywhere gives the rows and counts of a whole read.

use std::io::Cursor;

use crate::cim::Table;
use crate::convert::format::Format;
use crate::convert::formats::FORMATS;
use crate::convert::{Emitter, Stats, VecSink, input, split};

/// The targets that are not one format's: see [`targets`].
const OTHER_TARGETS: [&str; 4] = ["relative_time", "input", "split", "xml_event"];

/// The fuzz targets, by name: one per input format ([`FORMATS`], named as on the command line
/// with `_` for `-`, e.g. `nvm_kv`), then `relative_time`, `input`, `split` and `xml_event`.
pub fn targets() -> Vec<String> {
    FORMATS.iter().map(|f| format_target(*f)).chain(OTHER_TARGETS.iter().map(|t| t.to_string())).collect()
}

/// The target name of a format.
fn format_target(format: &dyn Format) -> String {
    use clap::ValueEnum;
    let value = format.sourcetype().to_possible_value().expect("every sourcetype has a name");
    value.get_name().replace('-', "_")
}

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "relative_time" => relative_time(data),
        "input" => whole_input(data),
        "split" => split_anywhere(data),
        "xml_event" => xml_event(data),
        other => match FORMATS.iter().find(|f| format_target(**f) == other) {
            Some(format) => one_format(*format, data),
            None => panic!("no fuzz target {other:?}"),
        },
    }
}

/// One format on the bytes. A text format never fails (a damaged record is a bad record); a
/// binary one may refuse the whole file. Either way every record read is accounted for.
fn one_format(format: &dyn Format, data: &[u8]) {
    let mut sink = VecSink::default();
    let mut out = Emitter::new(&mut sink);
    let converted = format.convert(&mut Cursor::new(data), "fuzz", &mut out);
    if format.is_text() {
        converted.expect("not strict: bad input is a bad record, not an error");
    } else if converted.is_err() {
        return;
    }
    let stats: Stats = out.finish().expect("batches build");
    accounted(&sink, &stats);
}

/// The bytes as an input file, through container and shape detection: an error or rows, never a
/// panic; and the hash is that of the bytes.
fn whole_input(data: &[u8]) {
    // A file with a path: a zip's central directory is read through it.
    let Ok(named) = tempfile::NamedTempFile::new() else { return };
    if std::fs::write(named.path(), data).is_err() {
        return;
    }
    let Ok(file) = std::fs::File::open(named.path()) else { return };
    let mut sink = VecSink::default();
    let mut out = Emitter::new(&mut sink);
    let mut file_input = input::InputFile::new(file).expect("reads");
    let limits = input::Limits { member_bytes: 64 << 20, ratio: input::DEFAULT_MAX_RATIO };
    let opts = input::InputOptions { limits, ..Default::default() };
    if input::convert_input(&mut file_input, named.path(), "fuzz", opts, &mut out).is_ok() {
        let stats = out.finish().expect("batches build");
        accounted(&sink, &stats);
    }
    let (hash, bytes) = file_input.finish().expect("reads to the end");
    assert_eq!((hash, bytes), (blake3::hash(data).to_hex().to_string(), data.len() as u64));
}

/// A text input cut into pieces of a size taken from the input's first bytes: the same rows,
/// records, skips and bad records as the whole. The first byte picks the splittable format
/// (counting from the last in [`FORMATS`]: 0 XmlWinEventLog, 1 Windows event JSON, as the saved
/// cases were written).
fn split_anywhere(data: &[u8]) {
    let [a, b, rest @ ..] = data else { return };
    let splittable: Vec<&dyn Format> = FORMATS.iter().rev().copied().filter(|f| f.splittable()).collect();
    let format = splittable[usize::from(*a) % splittable.len()];
    let target = 1 + usize::from(*b) * 8;
    let mut whole = VecSink::default();
    let mut out = Emitter::new(&mut whole);
    format.convert(&mut Cursor::new(rest), "fuzz", &mut out).expect("not strict");
    let whole_stats = out.finish().expect("batches build");

    let mut pieces = VecSink::default();
    let mut stats = Stats::default();
    let mut splitter = split::Splitter::new(rest, format, target);
    while let Some(piece) = splitter.next_piece().expect("reads from memory") {
        let mut out = Emitter::new(&mut pieces);
        piece.convert(format, "fuzz", &mut out).expect("not strict");
        stats.merge(&out.finish().expect("batches build"));
    }
    assert_eq!(stats, whole_stats, "piece size {target}");
    for t in Table::ALL {
        assert_eq!(pieces.table(t), whole.table(t), "{t}, piece size {target}");
    }
}

/// One event's XML read by the fast path and by quick-xml: where the fast path reads it, quick-xml
/// reads the same ([`crate::convert::xml_event::check_fast_path`]).
fn xml_event(data: &[u8]) {
    if let Ok(xml) = std::str::from_utf8(data) {
        crate::convert::xml_event::check_fast_path(xml);
    }
}

/// Rows written match rows counted, and every bad record is quarantined.
fn accounted(sink: &VecSink, stats: &Stats) {
    let rows = |cim: bool| -> u64 {
        sink.batches.iter().filter(|(t, _)| (*t != Table::Quarantine) == cim).map(|(_, b)| b.num_rows() as u64).sum()
    };
    assert_eq!(rows(true), stats.rows.values().sum::<u64>(), "rows written vs rows counted");
    assert_eq!(rows(false), stats.bad, "every bad record quarantined");
    assert!(stats.bad <= stats.records, "more bad records than records: {stats:?}");
}

fn relative_time(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
    let _ = crate::time::parse_time(text, now);
    let _ = crate::time::parse_duration(text);
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Every saved case of every target (`fuzz/regressions/<target>/*`), and the bundled samples
    /// the fuzzers are seeded from, run through the targets.
    #[test]
    fn saved_fuzz_cases_and_seeds_pass() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut ran = 0;
        let targets = super::targets();
        assert_eq!(targets, ["evtx", "evtx_json", "nvm_json", "winevent_json", "nvm_kv", "xmlwineventlog", "relative_time", "input", "split", "xml_event"]);
        for target in &targets {
            let dir = root.join("fuzz/regressions").join(target);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}: every target keeps its saved cases", dir.display()));
            let mut saved = 0;
            for entry in entries {
                let entry = entry.unwrap();
                if entry.file_name() != "README.md" {
                    super::run(target, &std::fs::read(entry.path()).unwrap());
                    saved += 1;
                }
            }
            assert!(saved > 0, "{}: no saved cases", dir.display());
            ran += saved;
        }
        for (target, dir) in [("xmlwineventlog", "sysmon"), ("nvm_kv", "nvm"), ("nvm_json", "nvm"), ("winevent_json", "json"), ("evtx_json", "json"), ("input", "sysmon"), ("input", "json"), ("input", "nvm"), ("xml_event", "sysmon")] {
            for entry in std::fs::read_dir(root.join("data/logs").join(dir)).unwrap().flatten() {
                super::run(target, &std::fs::read(entry.path()).unwrap());
                ran += 1;
            }
        }
        assert!(ran > 20, "{ran} cases");
    }
}
