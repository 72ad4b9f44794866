//! What a Sigma detection carries beyond its metadata ([`SigmaInfo`]), and the shape of a rule's
//! guard ([`super::guard`]). Below the catalog's [`crate::detect::Detection`], which holds it.

use super::cond::Cond;
use super::fields::Logsource;

/// (column, lower-case text): one of them must be found.
pub type Clause = Vec<(&'static str, String)>;

/// Clauses that must all hold.
pub type Guard = Vec<Clause>;

/// What a Sigma detection carries beyond its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigmaInfo {
    /// The rule's table; for a correlation, the table of the first rule it names.
    pub logsource: Logsource,
    /// The rule's `name` (what correlations call it by), if it has one.
    pub name: Option<String>,
    /// A correlation rule: it runs its own SQL, never in the one-scan set of single rules.
    pub correlation: bool,
    pub level: String,
    pub status: String,
    pub tags: Vec<String>,
    /// The compiled condition over the log source's table, as SQL.
    pub condition: String,
    /// The compiled condition, as the one-scan evaluator runs it; `None` for a correlation.
    pub cond: Option<Cond>,
    /// Text that must be in a row for the rule to match it ([`super::guard`]); `None`: no such
    /// text.
    pub guard: Option<Guard>,
}
