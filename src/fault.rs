//! Fault injection for the crash, race and robustness tests: named points where, when the
//! `CIMLAKE_FAULT` environment variable asks for it, the process kills itself, waits for the
//! test, or (in a query) panics. Unset, a point costs one look at a value read once.
//!
//! ```text
//! CIMLAKE_FAULT=POINT[@N]:ACTION[,POINT[@N]:ACTION…]
//!   ACTION  kill        SIGKILL this process (no destructor runs, nothing is flushed)
//!           wait=DIR    create DIR/POINT.K.waiting, then wait until DIR/POINT.K.go exists
//!           panic       (the query function `cimlake_fault_panic(x)` only) panic when called
//!   @N      only the Nth time the point is reached (from 1); K counts every time
//! ```
//!
//! The points: `optimize-after-move` (each merged file moved into place), `optimize-before-publish`
//! (all moved, the compaction not yet published), `ingest-before-publish` (an input converted, its commit not yet checked),
//! `ingest-after-move` (each data file moved into the lake), `ingest-after-commit` (the commit
//! published, the staging not yet cleaned), `ingest-read` (each MiB of an input read).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// The environment variable read at the first point reached.
pub const ENV: &str = "CIMLAKE_FAULT";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Kill,
    Wait(PathBuf),
    Panic,
}

#[derive(Debug)]
struct Rule {
    nth: Option<u64>,
    action: Action,
}

/// The rules by point, and how often each point was reached.
struct Faults {
    rules: HashMap<String, Vec<Rule>>,
    hits: Mutex<HashMap<String, u64>>,
}

static FAULTS: LazyLock<Option<Faults>> = LazyLock::new(|| {
    let spec = std::env::var(ENV).ok()?;
    let mut rules: HashMap<String, Vec<Rule>> = HashMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (point, action) = item.split_once(':').unwrap_or((item, "kill"));
        let (point, nth) = match point.split_once('@') {
            Some((p, n)) => (p, n.parse().ok()),
            None => (point, None),
        };
        let action = match action.split_once('=') {
            Some(("wait", dir)) => Action::Wait(PathBuf::from(dir)),
            _ if action == "panic" => Action::Panic,
            _ => Action::Kill,
        };
        rules.entry(point.to_string()).or_default().push(Rule { nth, action });
    }
    Some(Faults { rules, hits: Mutex::new(HashMap::new()) })
});

/// Counts bytes for `ingest-read`, across inputs.
static READ_MIB: AtomicU64 = AtomicU64::new(0);

/// Reaches point `name`: does what `CIMLAKE_FAULT` says for it, if anything.
pub fn point(name: &str) {
    let Some(faults) = FAULTS.as_ref() else { return };
    let Some(rules) = faults.rules.get(name) else { return };
    let k = {
        let mut hits = faults.hits.lock().expect("no panics while held");
        let k = hits.entry(name.to_string()).or_default();
        *k += 1;
        *k
    };
    for rule in rules.iter().filter(|r| r.nth.is_none_or(|n| n == k)) {
        match &rule.action {
            Action::Kill => {
                // SAFETY: raise(2) with a valid signal number; SIGKILL does not return.
                unsafe {
                    libc::raise(libc::SIGKILL);
                }
            }
            Action::Wait(dir) => {
                let waiting = dir.join(format!("{name}.{k}.waiting"));
                let go = dir.join(format!("{name}.{k}.go"));
                let _ = std::fs::write(&waiting, std::process::id().to_string());
                while !go.exists() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Action::Panic => {}
        }
    }
}

/// Counts `bytes` read by ingest: reaches `ingest-read` at each MiB boundary crossed.
pub fn read(bytes: usize) {
    if FAULTS.is_none() || bytes == 0 {
        return;
    }
    let before = READ_MIB.fetch_add(bytes as u64, Ordering::Relaxed);
    for _ in (before >> 20)..((before + bytes as u64) >> 20) {
        point("ingest-read");
    }
}

/// Whether point `name` has a `panic` rule (the query function `cimlake_fault_panic` exists
/// only then).
pub fn panics(name: &str) -> bool {
    FAULTS.as_ref().and_then(|f| f.rules.get(name)).is_some_and(|rules| rules.iter().any(|r| r.action == Action::Panic))
}

/// `cimlake_fault_panic(x)`: panics when called; registered only under `CIMLAKE_FAULT=query:panic`,
/// for the test that a panic in a served query fails that query alone. Immutable, so a call with
/// a literal panics while the query is planned (constant folding), and a call on a column while it
/// runs.
pub fn panic_udf() -> Option<datafusion::logical_expr::ScalarUDF> {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{Volatility, create_udf};
    if !panics("query") {
        return None;
    }
    Some(create_udf(
        "cimlake_fault_panic",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        std::sync::Arc::new(|_| panic!("cimlake_fault_panic was called (CIMLAKE_FAULT)")),
    ))
}
