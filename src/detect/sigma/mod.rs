//! Sigma rules as detections: each `.yml` rule of a detection directory whose log source the lake
//! holds (`process_creation`, `network_connection`) becomes a [`Detection`] with SQL of its own,
//! compiled from the rule ([`compile`]) with the field mapping of [`fields`]. A rule that does not
//! compile is kept with the reason ([`Rejected`]), for `detect --check`.
//!
//! rsigma-parser reads the YAML (multi-document files, `action: global`, conditions and
//! modifiers); the SQL is cimlake's.

pub mod compile;
pub mod cond;
pub mod eval;
pub mod correlation;
pub mod fields;
pub mod guard;
pub mod info;
pub mod many;
pub mod matcher;
pub mod node;
pub mod values;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rsigma_parser::{Level, SigmaRule};


use super::Mode;
use super::detection::Detection;
use super::metadata::{Metadata, Risk, RiskObject, Schedule, ThreatObject};
use fields::Logsource;
pub use info::SigmaInfo;

/// Why a rule does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// The YAML or the rule's structure.
    Parse(String),
    /// A log source the lake has no table for.
    Logsource(String),
    /// A field its table does not have.
    Field {
        field: String,
        source: Logsource,
    },
    Modifier(String),
    Value(String),
    /// A regular expression the engine cannot run.
    Regex {
        pattern: String,
        reason: String,
    },
    /// Values without a field (full-text search).
    Keywords,
    Condition(String),
    /// A correlation rule cimlake cannot run as written.
    Correlation(String),
}

impl Unsupported {
    /// What rules are grouped by in `detect --check`.
    pub fn group(&self) -> String {
        match self {
            Unsupported::Parse(_) => "does not parse".into(),
            Unsupported::Logsource(s) => format!("other log source ({s})"),
            Unsupported::Field { field, source } => {
                format!("unknown field {field} in {}", source.category())
            }
            Unsupported::Modifier(m) => format!("unsupported modifier {m}"),
            Unsupported::Value(_) => "unsupported value".into(),
            Unsupported::Regex { reason, .. } => {
                format!("regular expression the engine cannot run ({reason})")
            }
            Unsupported::Keywords => "keywords (values without a field)".into(),
            Unsupported::Condition(_) => "bad condition".into(),
            Unsupported::Correlation(_) => "unsupported correlation".into(),
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Parse(e) => write!(f, "does not parse: {e}"),
            Unsupported::Logsource(s) => write!(
                f,
                "other log source ({s}): the lake holds process_creation and network_connection"
            ),
            Unsupported::Field { field, source } => {
                write!(
                    f,
                    "unknown field {field}: {} has no such column (see the README's Sigma field mapping)",
                    source.table().qualified_name()
                )
            }
            Unsupported::Modifier(m) => write!(f, "unsupported modifier {m}"),
            Unsupported::Value(v) => write!(f, "unsupported value: {v}"),
            Unsupported::Regex { pattern, reason } => {
                write!(f, "regular expression {pattern:?}: {reason}")
            }
            Unsupported::Keywords => {
                f.write_str("keywords (values without a field) are not supported: name the field")
            }
            Unsupported::Condition(c) => write!(f, "condition: {c}"),
            Unsupported::Correlation(c) => write!(f, "correlation: {c}"),
        }
    }
}

/// A rule that does not compile.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The file it was read from.
    pub file: String,
    /// Its id (or, without one, its file's name) and title, when the YAML said.
    pub id: String,
    pub title: String,
    pub reason: Unsupported,
}

/// The schedule of Sigma rules that their directory does not set (`sigma.toml`): hourly, over the
/// hour that ended ten minutes ago, as the built-in detection.
pub fn default_schedule() -> Schedule {
    Schedule {
        cron: "0 * * * *".into(),
        earliest: "-70m@m".into(),
        latest: "-10m@m".into(),
    }
}

/// Largest rule file read: SigmaHQ's largest is under 20 KB.
pub const MAX_RULE_BYTES: u64 = 1 << 20;

/// What one YAML file held.
#[derive(Debug, Default)]
pub struct FileRules {
    pub detections: Vec<Detection>,
    pub rejected: Vec<Rejected>,
    /// Its correlation rules: compiled once every rule of the catalog is ([`compile_correlations`]).
    pub correlations: Vec<Pending>,
}

/// A correlation rule waiting for the rules it names.
#[derive(Debug, Clone)]
pub struct Pending {
    pub file: String,
    pub origin: String,
    pub schedule: Schedule,
    pub rule: rsigma_parser::CorrelationRule,
}

/// The correlations of `pending` over the compiled `rules`: detections, and those that do not
/// compile.
pub fn compile_correlations(pending: Vec<Pending>, rules: &[Detection]) -> (Vec<Detection>, Vec<Rejected>) {
    let (mut ok, mut rejected) = (Vec::new(), Vec::new());
    for p in pending {
        let stem = p.file.rsplit(['/', '\\']).next().unwrap_or(&p.file).trim_end_matches(".yml").trim_end_matches(".yaml").to_string();
        let id = p.rule.id.clone().unwrap_or(stem);
        match correlation::compile(&p.rule, &id, rules) {
            Ok((sql, logsource)) => {
                let c = &p.rule;
                let level = c.level.map_or("medium", |l| l.as_str()).to_string();
                let info = SigmaInfo {
                    logsource,
                    name: c.name.clone(),
                    correlation: true,
                    level,
                    status: c.status.map(|s| format!("{s:?}").to_lowercase()).unwrap_or_default(),
                    tags: c.tags.clone(),
                    condition: String::new(),
                    cond: None,
                    guard: None,
                };
                let (mitre_attack_id, mitre_tactic) = attack(&c.tags);
                let mut meta = metadata_of(&c.title, c.description.as_deref(), &id, &info, &p.schedule);
                meta.mitre_attack_id = mitre_attack_id;
                meta.mitre_tactic = mitre_tactic;
                meta.data_source = vec![format!("Sigma correlation ({})", c.correlation_type.as_str())];
                ok.push(Detection {
                    name: id,
                    meta,
                    sql: HashMap::from([(Mode::Cimlake, sql)]),
                    files: HashMap::from([(Mode::Cimlake, p.file.clone())]),
                    origin: p.origin.clone(),
                    sigma: Some(Arc::new(info)),
                    escu: None,
                });
            }
            Err(reason) => rejected.push(Rejected { file: p.file.clone(), id, title: p.rule.title.clone(), reason }),
        }
    }
    (ok, rejected)
}

/// The rules of one YAML file (`file` is how it is named in messages; `origin` the directory it
/// came from).
pub fn load(file: &str, text: &str, origin: &str, schedule: &Schedule) -> FileRules {
    let mut out = FileRules::default();
    let stem = file
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(file)
        .trim_end_matches(".yml")
        .trim_end_matches(".yaml")
        .to_string();
    // Another tool's YAML: nothing to compile, nothing to report.
    if !looks_like_sigma(text) {
        return out;
    }
    let reject = |id: Option<&str>, title: &str, reason: Unsupported| Rejected {
        file: file.to_string(),
        id: id.unwrap_or(&stem).to_string(),
        title: title.to_string(),
        reason,
    };
    let collection = match rsigma_parser::parse_sigma_yaml(text) {
        Ok(c) => c,
        Err(e) => {
            out.rejected
                .push(reject(None, "", Unsupported::Parse(e.to_string())));
            return out;
        }
    };
    for e in &collection.errors {
        out.rejected
            .push(reject(None, "", Unsupported::Parse(e.clone())));
    }
    for c in &collection.correlations {
        out.correlations.push(Pending { file: file.to_string(), origin: origin.to_string(), schedule: schedule.clone(), rule: c.clone() });
    }
    for f in &collection.filters {
        out.rejected.push(reject(
            f.id.as_deref(),
            &f.title,
            Unsupported::Parse("filter rules are not supported yet".into()),
        ));
    }
    for rule in &collection.rules {
        match detection(rule, file, &stem, origin, schedule) {
            Ok(d) => out.detections.push(d),
            Err(reason) => out
                .rejected
                .push(reject(rule.id.as_deref(), &rule.title, reason)),
        }
    }
    out
}

/// A document with a `detection:` or `correlation:` key at its top level.
fn looks_like_sigma(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("detection:") || l.starts_with("correlation:"))
}

fn detection(
    rule: &SigmaRule,
    file: &str,
    stem: &str,
    origin: &str,
    schedule: &Schedule,
) -> Result<Detection, Unsupported> {
    let ls = &rule.logsource;
    let logsource = Logsource::of(
        ls.category.as_deref(),
        ls.product.as_deref(),
        ls.service.as_deref(),
    )
    .ok_or_else(|| {
        let parts: Vec<String> = [
            ("product", &ls.product),
            ("category", &ls.category),
            ("service", &ls.service),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
        .collect();
        Unsupported::Logsource(parts.join(", "))
    })?;
    if rule.detection.timeframe.is_some() {
        return Err(Unsupported::Condition(
            "timeframe (Sigma v1 aggregation): write it as a correlation rule".into(),
        ));
    }
    let cond = compile::condition(&rule.detection, logsource)?;
    let id = rule.id.clone().unwrap_or_else(|| stem.to_string());
    let level = rule.level.map_or("medium", |l| l.as_str()).to_string();
    let info = SigmaInfo {
        logsource,
        name: rule.name.clone(),
        correlation: false,
        level: level.clone(),
        status: rule
            .status
            .map(|s| format!("{s:?}").to_lowercase())
            .unwrap_or_default(),
        tags: rule.tags.clone(),
        condition: cond.to_sql(),
        cond: Some(cond),
        guard: guard::of(&rule.detection, logsource),
    };
    let sql = sql(&id, &rule.title, file, &info);
    let mut meta = metadata_of(&rule.title, rule.description.as_deref(), &id, &info, schedule);
    (meta.mitre_attack_id, meta.mitre_tactic) = attack(&rule.tags);
    Ok(Detection {
        name: id,
        meta,
        sql: HashMap::from([(Mode::Cimlake, sql)]),
        files: HashMap::from([(Mode::Cimlake, file.to_string())]),
        origin: origin.to_string(),
        sigma: Some(Arc::new(info)),
        escu: None,
    })
}

/// Text safe inside a one-line SQL comment.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The columns every Sigma match has beyond its table's: the rule's identity.
pub const RULE_COLUMNS: [&str; 4] = ["rule_id", "rule_title", "rule_level", "rule_tags"];

/// The SELECT list of a match of a rule of `source`: `_time`, the shown columns, provenance.
pub fn shown_columns(source: Logsource) -> Vec<&'static str> {
    let mut cols = vec![crate::cim::TIME];
    cols.extend(source.shown());
    cols.extend(["source", "sourcetype", "source_record"]);
    cols
}

/// The query a rule runs: the matching rows of its table in the window, with the rule's identity.
fn sql(id: &str, title: &str, file: &str, info: &SigmaInfo) -> String {
    use compile::quote;
    let table = info.logsource.table().qualified_name();
    format!(
        "-- Sigma rule {} ({})\n-- {}\nSELECT {},\n       {} AS rule_id, {} AS rule_title, {} AS rule_level, {} AS rule_tags\nFROM {table}\nWHERE _time >= $earliest AND _time < $latest\n  AND {}\nORDER BY _time, source, source_record",
        one_line(title),
        one_line(id),
        one_line(file),
        shown_columns(info.logsource).join(", "),
        quote(id),
        quote(title),
        quote(&info.level),
        quote(&info.tags.join(",")),
        info.condition
    )
}

/// Risk score of a match by the rule's level.
pub fn score(level: &str) -> u32 {
    match level.parse::<Level>() {
        Ok(Level::Informational) => 5,
        Ok(Level::Low) => 25,
        Ok(Level::High) => 75,
        Ok(Level::Critical) => 100,
        _ => 50,
    }
}

/// ATT&CK technique ids (`attack.t1218.007` → `T1218.007`) and tactic names
/// (`attack.defense-evasion` → `Defense Evasion`) of a rule's tags.
pub fn attack(tags: &[String]) -> (Vec<String>, Vec<String>) {
    let (mut techniques, mut tactics) = (Vec::new(), Vec::new());
    for tag in tags {
        let Some(rest) = tag.strip_prefix("attack.") else {
            continue;
        };
        let is_technique = rest.len() > 1
            && rest.starts_with(['t', 'T'])
            && rest[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
        if is_technique {
            techniques.push(rest.to_uppercase());
        } else if !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-' || c == '_')
        {
            let words: Vec<String> = rest
                .split(['-', '_'])
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
                })
                .collect();
            tactics.push(words.join(" "));
        }
    }
    (techniques, tactics)
}

/// A Sigma detection's metadata: its identity, the directory's schedule, and risk on the host and
/// user of each match, scored by level. ATT&CK comes from the tags ([`attack`]).
fn metadata_of(title: &str, description: Option<&str>, id: &str, info: &SigmaInfo, schedule: &Schedule) -> Metadata {
    let source = info.logsource;
    let host = source.host_column();
    let score = score(&info.level);
    let title = one_line(title);
    let message = match (info.correlation, source) {
        (true, _) => format!("{title} on ${host}$"),
        (false, Logsource::ProcessCreation) => format!("{title}: $process$ on $dest$"),
        (false, Logsource::NetworkConnection) => format!("{title}: $process_path$ on $dvc$ to $dest_ip$:$dest_port$"),
    };
    Metadata {
        name: title.clone(),
        id: id.to_string(),
        version: 1,
        kind: if info.correlation { "Sigma correlation".into() } else { "Sigma".into() },
        search_name: format!("Sigma - {title} - Rule"),
        description: description.unwrap_or_default().to_string(),
        mitre_attack_id: Vec::new(),
        mitre_tactic: Vec::new(),
        analytic_story: Vec::new(),
        data_source: vec![match source {
            Logsource::ProcessCreation => "Sysmon EventID 1".into(),
            Logsource::NetworkConnection => "Sysmon EventID 3".into(),
        }],
        filter_macro: String::new(),
        modes: vec![Mode::Cimlake],
        schedule: schedule.clone(),
        risk: Risk {
            message,
            objects: vec![
                RiskObject { field: host.into(), kind: "system".into(), score },
                RiskObject { field: "user".into(), kind: "user".into(), score },
            ],
            threat_objects: vec![ThreatObject { field: "process_name".into(), kind: "process_name".into() }],
        },
        partition_by: Default::default(),
        settings: Default::default(),
    }
}

#[cfg(test)]
mod tests;
