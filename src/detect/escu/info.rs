//! What a translated ESCU detection keeps of its origin (held by [`crate::detect::Detection`];
//! apart from the loader so that a detection does not depend on it).

/// What a translated detection keeps of its origin.
#[derive(Debug, Clone)]
pub struct EscuInfo {
    /// The search as the YAML gives it.
    pub search: String,
    /// The YAML's `status` (production, experimental, deprecated).
    pub status: String,
    /// Its risk objects' source: `rba` (the newer block) or `observable` (tags.observable and
    /// risk_score).
    pub risk_from: &'static str,
}
