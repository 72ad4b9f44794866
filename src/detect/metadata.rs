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
