//! ESCU lookups: `lookups/<name>.yml` (file name, match types, case sensitivity, minimum
//! matches and default) with its CSV beside it. A search's `lookup` reads the table inline, as
//! SQL `VALUES`, so the translated query needs nothing registered and runs on a cluster too.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

/// A CSV larger than this is not inlined into a query (ESCU's lookups are a few hundred rows).
pub const MAX_ROWS: usize = 20_000;
pub const MAX_BYTES: u64 = 8 << 20;

/// One lookup definition and, once read, its rows.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub name: String,
    /// The CSV, beside the YAML.
    pub file: std::path::PathBuf,
    /// Columns matched with `*` wildcards (`WILDCARD(col)`), and as networks (`CIDR(col)`).
    pub wildcard: Vec<String>,
    pub cidr: Vec<String>,
    pub case_sensitive: bool,
    /// With `default_match`: the output of an event that matches fewer rows.
    pub min_matches: u32,
    pub default_match: Option<String>,
}

/// Every lookup of a checkout, by name.
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    pub by_name: HashMap<String, Lookup>,
}

#[derive(Deserialize)]
struct LookupYaml {
    name: String,
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    match_type: Option<String>,
    #[serde(default)]
    case_sensitive_match: Option<yaml_serde::Value>,
    #[serde(default)]
    min_matches: Option<u32>,
    #[serde(default)]
    default_match: Option<yaml_serde::Value>,
}

fn text_of(v: &yaml_serde::Value) -> Option<String> {
    match v {
        yaml_serde::Value::String(s) => Some(s.clone()),
        yaml_serde::Value::Bool(b) => Some(b.to_string()),
        yaml_serde::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `WILDCARD(a),CIDR(b)` → (["a"], ["b"]).
fn match_types(s: &str) -> (Vec<String>, Vec<String>) {
    let re = regex::Regex::new(r"(?i)(WILDCARD|CIDR)\s*\(\s*([^)\s]+)\s*\)").expect("regex");
    let (mut w, mut c) = (Vec::new(), Vec::new());
    for m in re.captures_iter(s) {
        if m[1].eq_ignore_ascii_case("wildcard") { w.push(m[2].to_string()) } else { c.push(m[2].to_string()) }
    }
    (w, c)
}

impl Lookups {
    /// The lookup YAML files of a checkout (path → text), `dir/lookups/*.yml`. A file that does
    /// not read is passed over: a search using it then reports the lookup as unknown.
    pub fn load(yaml: &std::collections::BTreeMap<String, String>, dir: &Path) -> Lookups {
        let mut out = Lookups::default();
        for (path, text) in yaml {
            let p = Path::new(path);
            if !p.strip_prefix(dir).is_ok_and(|r| r.starts_with("lookups")) {
                continue;
            }
            let Ok(y) = yaml_serde::from_str::<LookupYaml>(text) else { continue };
            let Some(file) = y.filename else { continue };
            // The CSV is a plain name beside the YAML, never a path out of the checkout.
            if file.contains(['/', '\\']) || file.starts_with('.') {
                continue;
            }
            let (wildcard, cidr) = y.match_type.as_deref().map(match_types).unwrap_or_default();
            let case_sensitive = y.case_sensitive_match.as_ref().and_then(text_of).is_none_or(|v| !v.eq_ignore_ascii_case("false"));
            let lookup = Lookup {
                name: y.name.clone(),
                file: p.with_file_name(&file),
                wildcard,
                cidr,
                case_sensitive,
                min_matches: y.min_matches.unwrap_or(0),
                default_match: y.default_match.as_ref().and_then(text_of),
            };
            out.by_name.insert(y.name, lookup);
        }
        out
    }
}

impl Lookup {
    /// The CSV's header and rows.
    pub fn read(&self) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
        let len = std::fs::metadata(&self.file).map_err(|e| format!("lookup {}: {}: {e}", self.name, self.file.display()))?.len();
        if len > MAX_BYTES {
            return Err(format!("lookup {} larger than {} MiB", self.name, MAX_BYTES >> 20));
        }
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(&self.file).map_err(|e| format!("lookup {}: {e}", self.name))?;
        let header: Vec<String> = reader.headers().map_err(|e| format!("lookup {}: {e}", self.name))?.iter().map(|h| h.trim().to_string()).collect();
        let mut rows = Vec::new();
        for r in reader.records() {
            let r = r.map_err(|e| format!("lookup {}: {e}", self.name))?;
            let mut row: Vec<String> = r.iter().map(str::to_string).collect();
            row.resize(header.len(), String::new());
            rows.push(row);
            if rows.len() > MAX_ROWS {
                return Err(format!("lookup {} has more than {MAX_ROWS} rows", self.name));
            }
        }
        Ok((header, rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_types_are_read() {
        assert_eq!(match_types("WILDCARD(library),CIDR( net )"), (vec!["library".to_string()], vec!["net".to_string()]));
        assert_eq!(match_types(""), (vec![], vec![]));
    }
}
