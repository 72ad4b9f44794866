//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use tempfile::TempDir;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/corpus`, beside the repository.
pub fn corpus() -> PathBuf {
    repo().join("../shared/corpus")
}

/// The bundled Sysmon sample directory.
pub fn sample_dir() -> PathBuf {
    repo().join("data/logs/sysmon")
}

/// `cimlake --lake LAKE ARGS…` from the repository root, with none of the user's `CIMLAKE_`
/// settings.
pub fn command(lake: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cimlake"));
    cmd.arg("--lake")
        .arg(lake)
        .args(args)
        .current_dir(repo())
        .env_remove("CIMLAKE_LAKE")
        .env_remove("CIMLAKE_SQL")
        .env_remove("CIMLAKE_ENGINE");
    cmd
}

/// Runs `cimlake --lake LAKE ARGS…` from the repository root.
pub fn cimlake(lake: &Path, args: &[&str]) -> Output {
    command(lake, args).output().expect("cimlake runs")
}

/// Like [`cimlake`], but asserts success and returns stdout.
pub fn cimlake_ok(lake: &Path, args: &[&str]) -> String {
    let out = cimlake(lake, args);
    assert!(
        out.status.success(),
        "cimlake {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// A lake holding `data/logs/sysmon`, ingested once through the CLI and shared (read-only) by tests.
pub fn sample_lake() -> &'static Path {
    static LAKE: OnceLock<TempDir> = OnceLock::new();
    LAKE.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        // A relative path, so provenance columns do not depend on where the checkout is.
        cimlake_ok(dir.path(), &["ingest", "data/logs/sysmon"]);
        dir
    })
    .path()
}

/// Runs a query through the CLI and returns CSV lines (header first).
pub fn query_csv(lake: &Path, sql: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["query", sql, "--format", "csv"];
    args.extend_from_slice(extra);
    cimlake_ok(lake, &args).lines().map(str::to_string).collect()
}

/// A fresh copy of the repository's `sql/` directory, for editing.
pub fn sql_copy() -> TempDir {
    let dir = TempDir::new().unwrap();
    copy_dir(&repo().join("sql"), dir.path());
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}
