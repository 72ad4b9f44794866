//! ESCU content without Splunk: the detections of a `splunk/security_content` checkout whose
//! searches read only the two CIM models the lake holds (`Endpoint.Processes`,
//! `Network_Traffic.All_Traffic`), translated from SPL to DataFusion SQL with Splunk's semantics.
//!
//! ```text
//! security_content/
//!   detections/**/<name>.yml   name, id, search (SPL), tags (ATT&CK, stories, risk), …
//!   macros/<macro>.yml         name, definition, arguments
//!   lookups/<name>.yml, .csv   lookup definitions and their tables
//! ```
//!
//! [`macros`] expands the search's macros as Splunk does (textually, with arguments), [`parse`]
//! parses the result with the grammar in `spl.pest`, and [`translate`] writes one SQL query in
//! `splunk` mode. A detection that uses anything else is listed by `detect --check` with the
//! construct it lacks.

pub mod info;
pub mod lookups;
pub mod macros;
pub mod parse;
pub mod translate;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::detection::Detection;
use super::metadata::{Metadata, Risk, RiskObject, Schedule, ThreatObject};
use super::Mode;
pub use info::EscuInfo;

/// Why a detection is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// Its YAML does not read.
    Yaml(String),
    /// A macro it calls is not defined, or expands without end.
    Macro(String),
    /// Its search does not parse.
    Parse(String),
    /// A construct the translator does not support.
    Construct(String),
}

impl Unsupported {
    /// What `detect --check` groups detections by.
    pub fn group(&self) -> String {
        match self {
            Unsupported::Yaml(_) => "YAML that does not read".into(),
            Unsupported::Macro(m) => format!("macro: {m}"),
            Unsupported::Parse(_) => "SPL that does not parse".into(),
            Unsupported::Construct(c) => format!("unsupported {c}"),
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Yaml(e) => write!(f, "YAML: {e}"),
            Unsupported::Macro(m) => write!(f, "macro: {m}"),
            Unsupported::Parse(e) => write!(f, "SPL does not parse: {}", e.replace('\n', " ")),
            Unsupported::Construct(c) => write!(f, "unsupported {c}"),
        }
    }
}

/// An ESCU detection that does not translate.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub file: String,
    pub id: String,
    pub name: String,
    pub reason: Unsupported,
}


/// The detections of a checkout.
#[derive(Debug, Default)]
pub struct Content {
    pub detections: Vec<Detection>,
    pub rejected: Vec<Rejected>,
    /// The filter macros the searches end with (`<name>_filter`) that the checkout does not
    /// define: each becomes a SQL macro `true`, which users edit as they edit the built-in one's.
    pub filter_macros: Vec<String>,
    /// Detections that read other data models (or none): not the lake's, not listed.
    pub other_sources: usize,
}

impl Content {
    /// `, 437 ESCU detections (…)` for the catalog's origin line.
    pub fn counted(&self) -> String {
        let n = self.detections.len() + self.rejected.len();
        if n == 0 {
            return String::new();
        }
        let mut s = format!(", {n} ESCU detections over the lake's data models");
        if !self.rejected.is_empty() {
            s += &format!(", {} of them not translated: see detect --check", self.rejected.len());
        }
        s
    }
}

/// Whether `dir` is a `security_content` checkout: `macros/*.yml` beside `detections/`.
pub fn is_checkout(dir: &Path) -> bool {
    let yml = |d: &Path| std::fs::read_dir(d).is_ok_and(|mut it| it.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yml"))));
    dir.join("detections").is_dir() && yml(&dir.join("macros"))
}

/// ESCU's default schedule (its `ESCU Default Configuration` deployment): hourly, over the hour
/// that ended ten minutes ago.
pub fn default_schedule() -> Schedule {
    Schedule { cron: "0 * * * *".into(), earliest: "-70m@m".into(), latest: "-10m@m".into() }
}

#[derive(Deserialize)]
struct MacroYaml {
    name: String,
    #[serde(default)]
    definition: String,
    #[serde(default)]
    arguments: Vec<String>,
}

#[derive(Deserialize, Default)]
struct DetectionYaml {
    name: String,
    id: String,
    #[serde(default)]
    version: u32,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    search: String,
    #[serde(default)]
    data_source: Vec<String>,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    rba: Option<Rba>,
    #[serde(default)]
    deployment: Option<Deployment>,
}

#[derive(Deserialize, Default)]
struct Tags {
    #[serde(default)]
    analytic_story: Vec<String>,
    #[serde(default)]
    mitre_attack_id: Vec<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    observable: Vec<Observable>,
    /// Some files write it as `25.0`.
    #[serde(default)]
    risk_score: Option<f64>,
}

#[derive(Deserialize)]
struct Observable {
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    role: Vec<String>,
}

#[derive(Deserialize)]
struct Rba {
    #[serde(default)]
    message: String,
    #[serde(default)]
    risk_objects: Vec<RbaObject>,
    #[serde(default)]
    threat_objects: Vec<RbaObject>,
}

#[derive(Deserialize)]
struct RbaObject {
    field: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    score: Option<f64>,
}

#[derive(Deserialize)]
struct Deployment {
    #[serde(default)]
    scheduling: Option<Scheduling>,
}

#[derive(Deserialize)]
struct Scheduling {
    cron_schedule: String,
    earliest_time: String,
    latest_time: String,
}

/// The macros of `macros/*.yml` (and the CIM app's, which the content uses but does not ship).
pub fn load_macros(yaml: &BTreeMap<String, String>, dir: &Path) -> Result<macros::Macros, (String, String)> {
    let mut m = macros::Macros::new();
    for (path, text) in yaml {
        if !is_under(path, dir, "macros") {
            continue;
        }
        let y: MacroYaml = yaml_serde::from_str(text).map_err(|e| (path.clone(), e.to_string()))?;
        m.insert(&y.name, y.arguments, y.definition);
    }
    Ok(m)
}

fn is_under(path: &str, dir: &Path, part: &str) -> bool {
    Path::new(path).strip_prefix(dir).is_ok_and(|rel| rel.starts_with(part))
}

/// The data models a search reads (`datamodel=Endpoint.Processes`, `from datamodel Risk.All_Risk`).
fn datamodels(search: &str) -> Vec<String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"(?i)datamodel\s*[=:]?\s*([A-Za-z_]+(?:\.[A-Za-z_]+)?)").expect("regex"));
    re.captures_iter(search).map(|c| c[1].to_string()).collect()
}

/// A detection YAML's `name` and `search`, when it reads as one.
pub fn name_and_search(text: &str) -> Option<(String, String)> {
    yaml_serde::from_str::<DetectionYaml>(text).ok().map(|y| (y.name, y.search))
}

/// Whether every data model it reads is one the lake holds (and it reads one).
fn reads_the_lake(search: &str) -> bool {
    let models = datamodels(search);
    !models.is_empty()
        && models.iter().all(|m| matches!(m.to_ascii_lowercase().as_str(), "endpoint.processes" | "network_traffic.all_traffic" | "network_traffic"))
        && !search.to_ascii_lowercase().contains("inputlookup")
}

/// A detection's catalog name: its file's stem (`windows_msiexec_with_network_connections`).
fn name_of(path: &str) -> String {
    Path::new(path).file_stem().map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned())
}

/// Loads the checkout at `dir` from its YAML files (path → text).
pub fn load(dir: &Path, yaml: &BTreeMap<String, String>) -> Content {
    let origin = dir.display().to_string();
    let mut out = Content::default();
    let macros = match load_macros(yaml, dir) {
        Ok(m) => m,
        Err((file, e)) => {
            out.rejected.push(Rejected { file, id: String::new(), name: String::new(), reason: Unsupported::Yaml(e) });
            return out;
        }
    };
    let lookups = lookups::Lookups::load(yaml, dir);
    let mut filters: Vec<String> = Vec::new();
    for (path, text) in yaml {
        if !is_under(path, dir, "detections") {
            continue;
        }
        let y: DetectionYaml = match yaml_serde::from_str(text) {
            Ok(y) => y,
            Err(e) => {
                // Only files that look like detections count as rejected.
                if text.contains("search:") && text.contains("datamodel") {
                    out.rejected.push(Rejected { file: path.clone(), id: String::new(), name: name_of(path), reason: Unsupported::Yaml(e.to_string()) });
                }
                continue;
            }
        };
        if !reads_the_lake(&y.search) {
            out.other_sources += 1;
            continue;
        }
        let reject = |reason| Rejected { file: path.clone(), id: y.id.clone(), name: y.name.clone(), reason };
        match translate_search(&macros, &lookups, &y.search) {
            Ok((sql, filter)) => {
                if let Some(f) = filter.as_ref().filter(|f| !filters.contains(f)) {
                    filters.push(f.clone());
                }
                out.detections.push(detection(path, &y, sql, filter, &origin));
            }
            Err(reason) => out.rejected.push(reject(reason)),
        }
    }
    out.filter_macros = filters;
    out
}

/// The search's SQL (splunk mode), and the name of the filter macro it ends with.
pub fn translate_search(macros: &macros::Macros, lookups: &lookups::Lookups, search: &str) -> Result<(String, Option<String>), Unsupported> {
    // The content's build writes each `<name>_filter` as `search *`; a checkout does not ship
    // them. Its last command calling one is the detection's filter, applied as a SQL macro.
    static FILTER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let filter = FILTER.get_or_init(|| regex::Regex::new(r"\|\s*`([A-Za-z0-9_]+_filter)`\s*$").expect("regex"));
    let filter = filter.captures(search.trim()).map(|c| c[1].to_string());
    let expanded = macros
        .expand(search, &|name| name.ends_with("_filter").then(|| "search *".to_string()))
        .map_err(Unsupported::Macro)?;
    let commands = parse::parse(&expanded).map_err(Unsupported::Parse)?;
    let t = translate::translate(&commands, filter.as_deref(), lookups).map_err(|u| Unsupported::Construct(u.0))?;
    Ok((t.sql, filter))
}

/// Risk from the `rba:` block, else from `tags.observable` and `risk_score`.
fn risk(y: &DetectionYaml) -> (Risk, &'static str) {
    let object_kind = |t: &str| match t.to_ascii_lowercase().as_str() {
        "user" => "user".to_string(),
        "hostname" | "ip address" | "endpoint" | "system" | "other" => "system".to_string(),
        other => other.replace(' ', "_"),
    };
    let threat_kind = |t: &str| t.to_ascii_lowercase().replace(' ', "_");
    if let Some(rba) = &y.rba {
        let risk = Risk {
            message: rba.message.clone(),
            objects: rba.risk_objects.iter().map(|o| RiskObject { field: o.field.clone(), kind: object_kind(&o.kind), score: o.score.unwrap_or(0.0).round().clamp(0.0, u32::MAX as f64) as u32 }).collect(),
            threat_objects: rba.threat_objects.iter().map(|o| ThreatObject { field: o.field.clone(), kind: threat_kind(&o.kind) }).collect(),
        };
        return (risk, "rba");
    }
    let score = y.tags.risk_score.unwrap_or(0.0).round().clamp(0.0, u32::MAX as f64) as u32;
    let mut objects = Vec::new();
    let mut threats = Vec::new();
    for o in &y.tags.observable {
        if o.role.iter().any(|r| r.eq_ignore_ascii_case("victim")) {
            objects.push(RiskObject { field: o.name.clone(), kind: object_kind(&o.kind), score });
        } else {
            threats.push(ThreatObject { field: o.name.clone(), kind: threat_kind(&o.kind) });
        }
    }
    (Risk { message: y.tags.message.clone().unwrap_or_default(), objects, threat_objects: threats }, "observable")
}

fn detection(path: &str, y: &DetectionYaml, sql: String, filter: Option<String>, origin: &str) -> Detection {
    let (risk, risk_from) = risk(y);
    let schedule = y
        .deployment
        .as_ref()
        .and_then(|d| d.scheduling.as_ref())
        .map(|s| Schedule { cron: s.cron_schedule.clone(), earliest: s.earliest_time.clone(), latest: s.latest_time.clone() })
        .unwrap_or_else(default_schedule);
    let meta = Metadata {
        name: y.name.clone(),
        id: y.id.clone(),
        version: y.version,
        kind: y.kind.clone(),
        search_name: format!("ESCU - {} - Rule", y.name),
        description: y.description.trim().to_string(),
        mitre_attack_id: y.tags.mitre_attack_id.clone(),
        mitre_tactic: Vec::new(),
        analytic_story: y.tags.analytic_story.clone(),
        data_source: y.data_source.clone(),
        filter_macro: filter.unwrap_or_default(),
        modes: vec![Mode::Splunk],
        schedule,
        risk,
        partition_by: Default::default(),
        settings: Default::default(),
    };
    let name = name_of(path);
    Detection {
        name,
        meta,
        sql: HashMap::from([(Mode::Splunk, sql)]),
        files: HashMap::from([(Mode::Splunk, path.to_string())]),
        origin: origin.to_string(),
        sigma: None,
        escu: Some(std::sync::Arc::new(EscuInfo { search: y.search.clone(), status: y.status.clone(), risk_from })),
    }
}
