//! Entry points for the fuzz targets in `fuzz/` (`cargo fuzz run <target>`), shared with the test
//! that replays every saved case (`fuzz/regressions/<target>/`) in CI.
//!
//! Each runs one parser on arbitrary bytes and checks what must hold whatever the input: no
//! panic, and every record read is accounted for as rows, a skip or a bad record.

use std::io::Cursor;

use crate::cim::Table;
use crate::convert::{Emitter, Stats, VecSink, nvm, winevent_json, xmlwineventlog};

/// The fuzz targets, by name.
pub const TARGETS: [&str; 5] = ["xmlwineventlog", "nvm_kv", "nvm_json", "winevent_json", "relative_time"];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "xmlwineventlog" => check(data, |r, out| xmlwineventlog::convert(r, "fuzz", out)),
        "nvm_kv" => check(data, |r, out| nvm::convert_kv(r, "fuzz", out)),
        "nvm_json" => check(data, |r, out| nvm::convert_json(r, "fuzz", out)),
        "winevent_json" => check(data, |r, out| winevent_json::convert(r, "fuzz", out)),
        "relative_time" => relative_time(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

fn check(
    data: &[u8],
    convert: impl FnOnce(Cursor<&[u8]>, &mut Emitter<'_>) -> Result<(), crate::convert::ConvertError>,
) {
    let mut sink = VecSink::default();
    let mut out = Emitter::new(&mut sink);
    convert(Cursor::new(data), &mut out).expect("not strict: bad input is a bad record, not an error");
    let stats: Stats = out.finish().expect("batches build");
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
        for target in super::TARGETS {
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
        for (target, dir) in [("xmlwineventlog", "sysmon"), ("nvm_kv", "nvm"), ("nvm_json", "nvm"), ("winevent_json", "json")] {
            for entry in std::fs::read_dir(root.join("data/logs").join(dir)).unwrap().flatten() {
                super::run(target, &std::fs::read(entry.path()).unwrap());
                ran += 1;
            }
        }
        assert!(ran > 20, "{ran} cases");
    }
}
