//! Loads detections and macros from a SQL directory, or from the copy built into the binary.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::macros;
use super::metadata::Metadata;
use super::{DetectError, Mode};

/// The `sql/` tree of the source repository, built in.
const BUILTIN: &[(&str, &str)] = &[
    (
        "detections/windows_http_network_communication_from_msiexec/detection.toml",
        include_str!("../../sql/detections/windows_http_network_communication_from_msiexec/detection.toml"),
    ),
    (
        "detections/windows_http_network_communication_from_msiexec/cimlake.sql",
        include_str!("../../sql/detections/windows_http_network_communication_from_msiexec/cimlake.sql"),
    ),
    (
        "detections/windows_http_network_communication_from_msiexec/splunk.sql",
        include_str!("../../sql/detections/windows_http_network_communication_from_msiexec/splunk.sql"),
    ),
    ("macros/process_msiexec.sql", include_str!("../../sql/macros/process_msiexec.sql")),
    ("risk/incidents.sql", include_str!("../../sql/risk/incidents.sql")),
    (
        "macros/windows_http_network_communication_from_msiexec_filter.sql",
        include_str!("../../sql/macros/windows_http_network_communication_from_msiexec_filter.sql"),
    ),
];

/// One detection: its directory name, metadata and SQL per mode.
#[derive(Debug, Clone)]
pub struct Detection {
    /// The directory name, e.g. `windows_http_network_communication_from_msiexec`.
    pub name: String,
    pub meta: Metadata,
    pub sql: HashMap<Mode, String>,
}

/// Every detection and macro of a SQL directory.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Where it was loaded from (`built-in` for the embedded copy).
    pub origin: String,
    pub detections: Vec<Detection>,
    pub macros: HashMap<String, String>,
    /// The risk incident rule (`risk/incidents.sql`).
    pub incidents_sql: String,
}

impl Catalog {
    /// The SQL directory to use: `explicit`, else `./sql` when it holds detections, else built in.
    pub fn load_default(explicit: Option<&Path>) -> Result<Catalog, DetectError> {
        match explicit {
            Some(dir) => Catalog::load_dir(dir),
            None if Path::new("sql/detections").is_dir() => Catalog::load_dir(Path::new("sql")),
            None => Catalog::builtin(),
        }
    }

    /// The detections built into the binary.
    pub fn builtin() -> Result<Catalog, DetectError> {
        let files: BTreeMap<String, String> =
            BUILTIN.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect();
        Catalog::from_files("built-in", files)
    }

    /// Loads `dir/detections/*/` and `dir/macros/*.sql`.
    pub fn load_dir(dir: &Path) -> Result<Catalog, DetectError> {
        let load_err = |path: &Path, reason: String| DetectError::Load { path: path.display().to_string(), reason };
        if !dir.join("detections").is_dir() {
            return Err(load_err(dir, "not a SQL directory: it has no detections/ folder".into()));
        }
        let mut files = BTreeMap::new();
        for sub in ["detections", "macros", "risk"] {
            let base = dir.join(sub);
            if !base.is_dir() {
                continue;
            }
            let mut stack: Vec<PathBuf> = vec![base];
            while let Some(d) = stack.pop() {
                let entries = std::fs::read_dir(&d).map_err(|e| load_err(&d, e.to_string()))?;
                for entry in entries {
                    let p = entry.map_err(|e| load_err(&d, e.to_string()))?.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if matches!(p.extension().and_then(|e| e.to_str()), Some("sql" | "toml")) {
                        let rel = p.strip_prefix(dir).expect("under dir").to_string_lossy().replace('\\', "/");
                        let text = std::fs::read_to_string(&p).map_err(|e| load_err(&p, e.to_string()))?;
                        files.insert(rel, text);
                    }
                }
            }
        }
        Catalog::from_files(&dir.display().to_string(), files)
    }

    fn from_files(origin: &str, files: BTreeMap<String, String>) -> Result<Catalog, DetectError> {
        let at = |rel: &str| {
            if origin == "built-in" { format!("built-in sql/{rel}") } else { format!("{origin}/{rel}") }
        };
        let mut macros = HashMap::new();
        let mut detections = Vec::new();
        for (rel, text) in &files {
            if let Some(name) = rel.strip_prefix("macros/").and_then(|n| n.strip_suffix(".sql")) {
                macros.insert(name.to_string(), text.clone());
            }
            if let Some(name) = rel.strip_prefix("detections/").and_then(|n| n.strip_suffix("/detection.toml")) {
                let meta: Metadata = toml::from_str(text)
                    .map_err(|e| DetectError::Load { path: at(rel), reason: e.to_string() })?;
                let mut sql = HashMap::new();
                for mode in [Mode::Cimlake, Mode::Splunk] {
                    let sql_rel = format!("detections/{name}/{}.sql", mode.name());
                    let text = files.get(&sql_rel).ok_or_else(|| DetectError::Load {
                        path: at(&sql_rel),
                        reason: format!("missing: every detection needs a {}.sql", mode.name()),
                    })?;
                    sql.insert(mode, text.clone());
                }
                detections.push(Detection { name: name.to_string(), meta, sql });
            }
        }
        let incidents_sql = match files.get("risk/incidents.sql") {
            Some(sql) => sql.clone(),
            None => BUILTIN.iter().find(|(p, _)| *p == "risk/incidents.sql").expect("built in").1.to_string(),
        };
        for d in &detections {
            if !macros.contains_key(&d.meta.filter_macro) {
                return Err(DetectError::Load {
                    path: at(&format!("macros/{}.sql", d.meta.filter_macro)),
                    reason: format!("missing: the filter macro of {}", d.name),
                });
            }
        }
        Ok(Catalog { origin: origin.to_string(), detections, macros, incidents_sql })
    }

    /// Replaces a macro's SQL for this run (`--macro name=SQL`).
    pub fn override_macro(&mut self, name: &str, sql: &str) -> Result<(), DetectError> {
        if !self.macros.contains_key(name) {
            let mut known: Vec<_> = self.macros.keys().cloned().collect();
            known.sort();
            return Err(DetectError::Macro(format!(
                "no macro named {name:?} to override (known: {})",
                known.join(", ")
            )));
        }
        self.macros.insert(name.to_string(), sql.to_string());
        Ok(())
    }

    /// Detections selected by name (`all` for every one).
    pub fn select(&self, name: &str) -> Result<Vec<&Detection>, DetectError> {
        if name == "all" {
            return Ok(self.detections.iter().collect());
        }
        self.detections
            .iter()
            .find(|d| d.name == name || d.meta.name.eq_ignore_ascii_case(name))
            .map(|d| vec![d])
            .ok_or_else(|| DetectError::Unknown(name.to_string()))
    }

    /// The detection's SQL in a mode, macros expanded.
    pub fn expanded_sql(&self, d: &Detection, mode: Mode) -> Result<String, DetectError> {
        macros::expand(&d.sql[&mode], &self.macros).map_err(|e| {
            DetectError::Macro(format!("{} ({}.sql): {e}", d.name, mode.name()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_loads_and_expands() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.detections.len(), 1);
        let d = &c.detections[0];
        assert_eq!(d.meta.mitre_attack_id, vec!["T1218.007"]);
        assert_eq!(d.meta.schedule.earliest, "-70m@m");
        for mode in [Mode::Cimlake, Mode::Splunk] {
            let sql = c.expanded_sql(d, mode).unwrap();
            assert!(sql.contains("WHERE ((true))"), "{mode}: filter macro not expanded");
            assert!(sql.contains("lower(process_name) = 'msiexec.exe'"));
        }
    }

    #[test]
    fn builtin_matches_repository_sql() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let on_disk = Catalog::load_dir(&dir).unwrap();
        let built = Catalog::builtin().unwrap();
        assert_eq!(on_disk.macros, built.macros, "BUILTIN is out of date with sql/");
        assert_eq!(on_disk.incidents_sql, built.incidents_sql, "BUILTIN is out of date with sql/risk");
        assert_eq!(on_disk.detections.len(), built.detections.len(), "BUILTIN lacks a detection");
    }
}
