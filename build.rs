//! Embeds the repository's `sql/` tree (detections, macros, risk rules) into the binary: every
//! `.sql` and `.toml` file under `sql/detections`, `sql/macros` and `sql/risk` becomes an entry of
//! `BUILTIN` in `$OUT_DIR/builtin_sql.rs`, so a detection added as a directory is built in without
//! a Rust edit.

use std::path::{Path, PathBuf};

fn main() {
    // The directory Cargo runs this script for, read when it runs: a script binary compiled for
    // another checkout that shares the target directory must not walk that checkout's `sql/`.
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("sql");
    // Cargo re-runs this script when anything under `sql/` changes (it walks the directory).
    println!("cargo:rerun-if-changed=sql");
    let mut files = Vec::new();
    for part in ["detections", "macros", "risk"] {
        collect(&root.join(part), &mut files);
    }
    files.sort();
    let mut out = String::from("/// The `sql/` tree of the source repository: (path under `sql/`, text).\nconst BUILTIN: &[(&str, &str)] = &[\n");
    for path in &files {
        let rel = path.strip_prefix(&root).expect("under sql/").to_string_lossy().replace('\\', "/");
        // Relative to the crate that compiles it, not to this checkout: builds of two checkouts
        // that share a target directory share this file.
        out.push_str(&format!("    ({rel:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/sql/{rel}\"))),\n"));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("builtin_sql.rs");
    std::fs::write(dest, out).expect("write builtin_sql.rs");
}

/// Every `.sql` and `.toml` file under `dir`, recursively (real directories only).
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let entry = entry.expect("read sql/");
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            collect(&path, files);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("sql" | "toml")) {
            files.push(path);
        }
    }
}
