//! A detection's metadata (`detection.toml`): identity, MITRE mapping, schedule and risk.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    pub id: String,
    pub version: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub search_name: String,
    pub description: String,
    pub mitre_attack_id: Vec<String>,
    #[serde(default)]
    pub mitre_tactic: Vec<String>,
    #[serde(default)]
    pub analytic_story: Vec<String>,
    #[serde(default)]
    pub data_source: Vec<String>,
    /// The macro applied to the results (`sql/macros/<filter_macro>.sql`).
    pub filter_macro: String,
    /// The modes it has (`cimlake`, `splunk`), each with its `<mode>.sql`; when absent, the modes
    /// whose SQL file is there.
    #[serde(default)]
    pub modes: Vec<super::Mode>,
    pub schedule: Schedule,
    pub risk: Risk,
    /// Per mode (`cimlake`, `splunk`): for each lake table the detection reads, a column that every
    /// join, window and grouping of that mode's SQL includes. A detection whose join does not fit
    /// in `--memory-limit` then runs in passes, each over one hash bucket of these columns, and
    /// the passes' rows together are the rows of one run.
    #[serde(default)]
    pub partition_by: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// DataFusion optimizer settings for this detection's plans (`[settings]`, keys
    /// `datafusion.optimizer.…`), e.g. `"datafusion.optimizer.join_reordering" = false` for SQL
    /// whose joins are written with the side to hash first. They shape the plan, never the rows.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, toml::Value>,
}

/// The settings a detection may change: the optimizer's, which choose among plans with the same
/// rows. Memory, parallelism and the file scan stay the engine's.
pub const SETTINGS_PREFIX: &str = "datafusion.optimizer.";

impl Metadata {
    /// `[settings]` as DataFusion's key and value strings, each checked against DataFusion's own
    /// options: an unknown key or a value of the wrong type is an error naming it.
    pub fn settings(&self) -> Result<Vec<(String, String)>, String> {
        self.settings
            .iter()
            .map(|(key, value)| {
                if !key.starts_with(SETTINGS_PREFIX) {
                    return Err(format!("[settings] {key}: only {SETTINGS_PREFIX}* may be set by a detection"));
                }
                let value = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Float(_) => value.to_string(),
                    other => return Err(format!("[settings] {key}: {other} is not a setting's value")),
                };
                datafusion::config::ConfigOptions::default()
                    .set(key, &value)
                    .map_err(|e| format!("[settings] {key} = {value}: {e}"))?;
                Ok((key.clone(), value))
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five-field cron, UTC.
    pub cron: String,
    /// Splunk relative times; earliest inclusive, latest exclusive.
    pub earliest: String,
    pub latest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Risk {
    /// With `$field$` tokens.
    pub message: String,
    pub objects: Vec<RiskObject>,
    #[serde(default)]
    pub threat_objects: Vec<ThreatObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskObject {
    pub field: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub score: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreatObject {
    pub field: String,
    #[serde(rename = "type")]
    pub kind: String,
}
