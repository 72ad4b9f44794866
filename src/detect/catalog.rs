//! Loads detections and macros from a SQL directory, or from the copy built into the binary.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::macros;
use super::metadata::{Metadata, Schedule};
use super::detection::Detection;
use super::escu;
use super::sigma::{self, Rejected, SigmaInfo};
use super::{DetectError, Mode};

// `BUILTIN`: every file of the repository's `sql/` tree, listed by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/builtin_sql.rs"));

/// Every detection and macro: the built-in ones, then each user directory's, a later file
/// replacing an earlier one of the same relative path.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Where it was loaded from, in order (`built-in`, then each directory), with what each holds.
    pub origins: Vec<String>,
    pub detections: Vec<Detection>,
    pub macros: HashMap<String, String>,
    /// The risk incident rule (`risk/incidents.sql`).
    pub incidents_sql: String,
    /// Where it was read from.
    pub incidents_file: String,
    /// Sigma rules that do not compile, with the reason (`detect --check` lists them).
    pub rejected: Vec<Rejected>,
    /// ESCU detections over the lake's data models that do not translate, with the construct.
    pub escu_rejected: Vec<escu::Rejected>,
}

/// The origin name of the embedded copy.
const BUILTIN_ORIGIN: &str = "built-in";

impl Catalog {
    /// The built-in detections, then those of `dirs` in order (`--sql-dir`, `CIMLAKE_SQL_PATH`).
    /// Nothing is read from the working directory unless it is named.
    pub fn load(dirs: &[PathBuf]) -> Result<Catalog, DetectError> {
        let builtin = builtin_files();
        let mut origins = vec![counted(BUILTIN_ORIGIN, &builtin, "")];
        let mut files = builtin;
        let mut rules = Vec::new();
        let mut escu = Vec::new();
        for dir in dirs {
            let more = read_dir_files(dir)?;
            // A security_content checkout's YAML is ESCU content, not Sigma rules.
            if escu::is_checkout(dir) {
                let content = escu::load(dir, &more.yaml);
                origins.push(counted(&dir.display().to_string(), &more.sql, &content.counted()));
                files.extend(more.sql);
                escu.push(content);
                continue;
            }
            let sigma = load_sigma(dir, &more.yaml, more.sigma_schedule.as_ref());
            origins.push(counted(&dir.display().to_string(), &more.sql, &sigma.counted()));
            files.extend(more.sql);
            rules.push(sigma);
        }
        let mut catalog = Catalog::from_files(origins, files)?;
        let mut pending = Vec::new();
        for r in rules {
            pending.extend(catalog.add_sigma(r));
        }
        catalog.add_correlations(pending);
        for content in escu {
            catalog.add_escu(content);
        }
        Ok(catalog)
    }

    /// Adds a checkout's translated ESCU detections, and a SQL macro `true` for each filter macro
    /// no directory defines. One with the name of an ESCU detection already there replaces it;
    /// one with the name of a SQL detection (the built-in one, written by hand in both modes) is
    /// added beside it as `<name>_escu`.
    fn add_escu(&mut self, content: escu::Content) {
        for m in content.filter_macros {
            self.macros.entry(m).or_insert_with(|| "true".to_string());
        }
        for mut d in content.detections {
            if self.detections.iter().any(|x| x.name == d.name && x.escu.is_none()) {
                d.name = format!("{}_escu", d.name);
            }
            match self.detections.iter_mut().find(|x| x.name == d.name) {
                Some(old) => *old = d,
                None => self.detections.push(d),
            }
        }
        self.escu_rejected.extend(content.rejected);
    }

    /// Compiles correlation rules against every Sigma rule of the catalog (they may name rules of
    /// other files and directories).
    fn add_correlations(&mut self, pending: Vec<sigma::Pending>) {
        let (ok, rejected) = sigma::compile_correlations(pending, &self.detections);
        self.add_sigma(SigmaRules { detections: ok, rejected, correlations: Vec::new() });
    }

    /// Adds a directory's Sigma rules (a rule with the id of one already there replaces it), and
    /// returns its correlation rules, to compile once every rule is in.
    fn add_sigma(&mut self, rules: SigmaRules) -> Vec<sigma::Pending> {
        for d in rules.detections {
            match self.detections.iter_mut().find(|x| x.sigma.is_some() && x.name == d.name) {
                Some(old) => *old = d,
                None => self.detections.push(d),
            }
        }
        self.rejected.extend(rules.rejected);
        rules.correlations
    }

    /// The detections built into the binary.
    pub fn builtin() -> Result<Catalog, DetectError> {
        Catalog::load(&[])
    }

    /// The detections of `dir` alone (`dir/detections/*/`, `dir/macros/*.sql`, `dir/risk/`),
    /// with the built-in incident rule if it has none.
    pub fn load_dir(dir: &Path) -> Result<Catalog, DetectError> {
        let files = read_dir_files(dir)?;
        if escu::is_checkout(dir) {
            let content = escu::load(dir, &files.yaml);
            let mut catalog = Catalog::from_files(vec![counted(&dir.display().to_string(), &files.sql, &content.counted())], files.sql)?;
            catalog.add_escu(content);
            return Ok(catalog);
        }
        let sigma = load_sigma(dir, &files.yaml, files.sigma_schedule.as_ref());
        let mut catalog = Catalog::from_files(vec![counted(&dir.display().to_string(), &files.sql, &sigma.counted())], files.sql)?;
        let pending = catalog.add_sigma(sigma);
        catalog.add_correlations(pending);
        Ok(catalog)
    }

    fn from_files(origins: Vec<String>, files: BTreeMap<String, (String, String)>) -> Result<Catalog, DetectError> {
        let mut macros = HashMap::new();
        let mut detections = Vec::new();
        for (rel, (from, text)) in &files {
            if let Some(name) = rel.strip_prefix("macros/").and_then(|n| n.strip_suffix(".sql")) {
                macros.insert(name.to_string(), text.clone());
            }
            if let Some(name) = rel.strip_prefix("detections/").and_then(|n| n.strip_suffix("/detection.toml")) {
                let meta: Metadata = toml::from_str(text).map_err(|e| DetectError::Load { path: from.clone(), reason: e.to_string() })?;
                meta.settings().map_err(|reason| DetectError::Load { path: from.clone(), reason })?;
                let dir = from.trim_end_matches("/detection.toml");
                let present: Vec<Mode> = Mode::ALL.into_iter().filter(|m| files.contains_key(&format!("detections/{name}/{}.sql", m.name()))).collect();
                // The modes it declares (`modes = [...]`), else those it has SQL for.
                let modes = if meta.modes.is_empty() { present.clone() } else { meta.modes.clone() };
                if modes.is_empty() {
                    return Err(DetectError::Load { path: format!("{dir}/cimlake.sql"), reason: "missing: a detection needs cimlake.sql, splunk.sql or both".into() });
                }
                let mut sql = HashMap::new();
                let mut sql_files = HashMap::new();
                for mode in modes {
                    let sql_rel = format!("detections/{name}/{}.sql", mode.name());
                    let (sql_from, text) = files.get(&sql_rel).ok_or_else(|| DetectError::Load {
                        path: format!("{dir}/{}.sql", mode.name()),
                        reason: format!("missing: detection.toml declares the {mode} mode"),
                    })?;
                    sql.insert(mode, text.clone());
                    sql_files.insert(mode, sql_from.clone());
                }
                // `from` is the origin's path joined with `rel` (or `built-in sql/rel`).
                let origin = if from.starts_with(BUILTIN_ORIGIN) {
                    BUILTIN_ORIGIN.to_string()
                } else {
                    from.strip_suffix(rel.as_str()).map_or(from.as_str(), |d| d.trim_end_matches(['/', '\\'])).to_string()
                };
                detections.push(Detection { name: name.to_string(), meta, sql, files: sql_files, origin, sigma: None, escu: None });
            }
        }
        let (incidents_file, incidents_sql) = match files.get("risk/incidents.sql") {
            Some(found) => found.clone(),
            None => builtin_files().remove("risk/incidents.sql").expect("built in"),
        };
        for d in &detections {
            if !macros.contains_key(&d.meta.filter_macro) {
                let dir = d.any_file().rsplit_once("/detections/").map_or("", |(dir, _)| dir).to_string();
                return Err(DetectError::Load {
                    path: format!("{dir}/macros/{}.sql", d.meta.filter_macro),
                    reason: format!("missing: the filter macro of {}", d.name),
                });
            }
        }
        Ok(Catalog { origins, detections, macros, incidents_sql, incidents_file, rejected: Vec::new(), escu_rejected: Vec::new() })
    }

    /// Where the catalog came from, for a line at start: `built-in (1 detection, 2 macros), DIR (…)`.
    pub fn describe(&self) -> String {
        self.origins.join(", ")
    }

    /// Replaces a macro's SQL for this run (`--macro name=SQL`).
    pub fn override_macro(&mut self, name: &str, sql: &str) -> Result<(), DetectError> {
        if !self.macros.contains_key(name) {
            let mut known: Vec<_> = self.macros.keys().cloned().collect();
            known.sort();
            return Err(DetectError::NoSuchMacro { name: name.to_string(), known });
        }
        self.macros.insert(name.to_string(), sql.to_string());
        Ok(())
    }

    /// Detections selected by name, id or title: `all` for every one, `sigma` for every Sigma
    /// rule, `sigma:CATEGORY` for those of one log source (`sigma:process_creation`).
    pub fn select(&self, name: &str) -> Result<Vec<&Detection>, DetectError> {
        if name == "all" {
            return Ok(self.detections.iter().collect());
        }
        let sigma = |keep: &dyn Fn(&SigmaInfo) -> bool| self.detections.iter().filter(|d| d.sigma.as_deref().is_some_and(keep)).collect::<Vec<_>>();
        if name == "sigma" {
            return Ok(sigma(&|_| true));
        }
        if let Some(category) = name.strip_prefix("sigma:") {
            let source = sigma::fields::Logsource::ALL.into_iter().find(|s| s.category() == category).ok_or_else(|| DetectError::Unknown(name.to_string()))?;
            return Ok(sigma(&|i| i.logsource == source));
        }
        self.detections
            .iter()
            .find(|d| d.name == name || d.meta.name.eq_ignore_ascii_case(name))
            .map(|d| vec![d])
            .ok_or_else(|| DetectError::Unknown(name.to_string()))
    }

    /// The detection's SQL in a mode, macros expanded.
    pub fn expanded_sql(&self, d: &Detection, mode: Mode) -> Result<String, DetectError> {
        self.expanded_sql_mapped(d, mode).map(|(sql, _)| sql)
    }

    /// [`Catalog::expanded_sql`], with the line of the detection's file each line comes from.
    pub fn expanded_sql_mapped(&self, d: &Detection, mode: Mode) -> Result<(String, Vec<usize>), DetectError> {
        let sql = d.sql.get(&mode).ok_or_else(|| DetectError::NoMode { detection: d.name.clone(), mode, has: d.modes() })?;
        macros::expand_mapped(sql, &self.macros).map_err(|source| DetectError::Macro {
            detection: d.name.clone(),
            file: format!("{}.sql", mode.name()),
            source,
        })
    }
}

/// `origin (N detections, M macros[, K Sigma rules…])`: what one source of files holds.
fn counted(origin: &str, files: &BTreeMap<String, (String, String)>, sigma: &str) -> String {
    let detections = files.keys().filter(|r| r.starts_with("detections/") && r.ends_with("/detection.toml")).count();
    let macros = files.keys().filter(|r| r.starts_with("macros/") && r.ends_with(".sql")).count();
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!("{origin} ({}, {}{sigma})", plural(detections, "detection"), plural(macros, "macro"))
}

/// The built-in `sql/` tree: relative path → (where it is shown to come from, text).
fn builtin_files() -> BTreeMap<String, (String, String)> {
    BUILTIN.iter().map(|(p, c)| (p.to_string(), (format!("built-in sql/{p}"), c.to_string()))).collect()
}

/// What a detection directory holds.
#[derive(Debug, Default)]
struct DirFiles {
    /// The `.sql` and `.toml` files under `detections/`, `macros/` and `risk/`: relative path →
    /// (path on disk, text).
    sql: BTreeMap<String, (String, String)>,
    /// Every `.yml`/`.yaml` file anywhere under it (Sigma rules, or other YAML): path on disk →
    /// text, in path order.
    yaml: BTreeMap<String, String>,
    /// `sigma.toml`'s schedule for the directory's Sigma rules.
    sigma_schedule: Option<Schedule>,
}

/// The file at the root of a detection directory that sets its Sigma rules' schedule.
pub const SIGMA_SETTINGS: &str = "sigma.toml";

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SigmaSettings {
    schedule: Schedule,
}

/// The files of a detection directory: its SQL detections (`detections/`, `macros/`, `risk/`) and
/// its YAML files anywhere below it. A directory with neither is refused.
fn read_dir_files(dir: &Path) -> Result<DirFiles, DetectError> {
    let load_err = |path: &Path, reason: String| DetectError::Load { path: path.display().to_string(), reason };
    const PARTS: [&str; 3] = ["detections", "macros", "risk"];
    if !dir.is_dir() {
        return Err(load_err(dir, "no such directory (--sql-dir, CIMLAKE_SQL_PATH)".into()));
    }
    let mut out = DirFiles::default();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| load_err(&d, e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| load_err(&d, e.to_string()))?;
            let p = entry.path();
            // Real directories only: a symbolic link to a directory could make a loop.
            let kind = entry.file_type().map_err(|e| load_err(&p, e.to_string()))?;
            if kind.is_dir() {
                // Hidden directories (`.git`, `.github`) hold no rules.
                if !entry.file_name().to_string_lossy().starts_with('.') {
                    stack.push(p);
                }
                continue;
            }
            let rel = p.strip_prefix(dir).expect("under dir").to_string_lossy().replace('\\', "/");
            let ext = p.extension().and_then(|e| e.to_str());
            let in_part = PARTS.iter().any(|part| rel.starts_with(&format!("{part}/")));
            if in_part && matches!(ext, Some("sql" | "toml")) {
                let text = std::fs::read_to_string(&p).map_err(|e| load_err(&p, e.to_string()))?;
                out.sql.insert(rel, (p.display().to_string(), text));
            } else if matches!(ext, Some("yml" | "yaml")) {
                let size = std::fs::metadata(&p).map_err(|e| load_err(&p, e.to_string()))?.len();
                if size > sigma::MAX_RULE_BYTES {
                    return Err(load_err(&p, format!("{size} bytes: larger than a rule file may be ({} bytes)", sigma::MAX_RULE_BYTES)));
                }
                let text = std::fs::read_to_string(&p).map_err(|e| load_err(&p, e.to_string()))?;
                out.yaml.insert(p.display().to_string(), text);
            } else if rel == SIGMA_SETTINGS {
                let text = std::fs::read_to_string(&p).map_err(|e| load_err(&p, e.to_string()))?;
                let settings: SigmaSettings = toml::from_str(&text).map_err(|e| load_err(&p, e.to_string()))?;
                out.sigma_schedule = Some(settings.schedule);
            }
        }
    }
    if out.sql.is_empty() && out.yaml.is_empty() && !PARTS.iter().any(|p| dir.join(p).is_dir()) {
        return Err(load_err(dir, "not a detection directory: it has no detections/, macros/ or risk/ folder and no Sigma rules (.yml)".into()));
    }
    Ok(out)
}

/// A directory's Sigma rules, compiled, and those that do not compile.
#[derive(Debug, Default)]
struct SigmaRules {
    detections: Vec<Detection>,
    rejected: Vec<Rejected>,
    correlations: Vec<sigma::Pending>,
}

impl SigmaRules {
    /// `, N Sigma rules, M of them not compiled…` for the directory's line, or nothing.
    fn counted(&self) -> String {
        let n = self.detections.len() + self.rejected.len() + self.correlations.len();
        if n == 0 {
            return String::new();
        }
        let mut s = format!(", {n} Sigma rule{}", if n == 1 { "" } else { "s" });
        if !self.rejected.is_empty() {
            s += &format!(", {} of them not compiled: see detect --check", self.rejected.len());
        }
        s
    }
}

/// The Sigma rules of a directory's YAML files (other YAML is passed over), with the directory's
/// schedule (`sigma.toml`) or the default one.
fn load_sigma(dir: &Path, yaml: &BTreeMap<String, String>, schedule: Option<&Schedule>) -> SigmaRules {
    // Checked as every detection's schedule is: when the scheduler builds its windows.
    let schedule = schedule.cloned().unwrap_or_else(sigma::default_schedule);
    let origin = dir.display().to_string();
    let mut out = SigmaRules::default();
    for (path, text) in yaml {
        let file = sigma::load(path, text, &origin, &schedule);
        out.detections.extend(file.detections);
        out.rejected.extend(file.rejected);
        out.correlations.extend(file.correlations);
    }
    out
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
