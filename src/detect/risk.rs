//! Risk events, shaped like Splunk's Risk data model (`risk.all_risk`, declared in
//! [`crate::cim::risk`]): one event per risk object per result row, with the detection's message
//! rendered, its threat objects and annotations.

use arrow::array::Array;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;

use super::metadata::Metadata;
use super::results::RunInfo;
use crate::cim::risk::{RiskBuilder, RiskRow};
use crate::cim::{TIME, time_type};

/// Renders `$field$` tokens with `value`; a field without a value renders as `unknown`, and text
/// that is not a token (a lone `$`, `$not a name$`) is kept as it is.
pub fn render(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('$') {
            Some(end) if end > 0 && after[..end].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') => {
                let v = value(&after[..end]).filter(|v| !v.is_empty());
                out.push_str(v.as_deref().unwrap_or("unknown"));
                rest = &after[end + 1..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Risk events for every row of a detection's output, as `risk.all_risk` rows
/// ([`crate::cim::risk`]).
pub fn risk_events(batch: &RecordBatch, meta: &Metadata, run: &RunInfo) -> Result<RecordBatch, ArrowError> {
    let input = batch.schema();
    let get = |row: usize, field: &str| -> Option<String> {
        let i = input.index_of(field).ok()?;
        let col = batch.column(i);
        if col.is_null(row) {
            return None;
        }
        array_value_to_string(col, row).ok()
    };
    let time_col = input.index_of(TIME).ok().map(|i| arrow::compute::cast(batch.column(i), &time_type())).transpose()?;
    let times = time_col.as_ref().map(|c| c.as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>().expect("cast").clone());
    let mut out = RiskBuilder::default();
    for row in 0..batch.num_rows() {
        let message = render(&meta.risk.message, |f| get(row, f));
        let when = times.as_ref().filter(|t| !t.is_null(row)).map_or(run.latest_us, |t| t.value(row));
        for ro in &meta.risk.objects {
            // A result without a value for the risk object has no such object to score.
            let Some(value) = get(row, &ro.field).filter(|v| !v.is_empty()) else { continue };
            let (mut threats, mut threat_types) = (Vec::new(), Vec::new());
            for to in &meta.risk.threat_objects {
                if let Some(v) = get(row, &to.field).filter(|v| !v.is_empty()) {
                    threats.push(v);
                    threat_types.push(to.kind.clone());
                }
            }
            out.append(&RiskRow {
                time_us: when,
                search_name: Some(&meta.search_name),
                risk_object: Some(&value),
                risk_object_type: Some(&ro.kind),
                risk_score: Some(i64::from(ro.score)),
                risk_message: Some(&message),
                threat_object: &threats,
                threat_object_type: &threat_types,
                mitre_attack: &meta.mitre_attack_id,
                mitre_tactic: &meta.mitre_tactic,
                analytic_story: &meta.analytic_story,
                orig_sid: Some(&run.run_id),
                detection: Some(&run.detection),
                mode: Some(&run.mode),
                window_earliest: run.earliest_us,
                window_latest: run.latest_us,
            });
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tokens_and_unknowns() {
        let v = |f: &str| match f {
            "process_name" => Some("msiexec.exe".to_string()),
            "dest" => Some("ws1".to_string()),
            "empty" => Some(String::new()),
            _ => None,
        };
        let t = "An instance of $process_name$ was identified on endpoint $dest$ contacting a remote destination $dest_ip$";
        assert_eq!(
            render(t, v),
            "An instance of msiexec.exe was identified on endpoint ws1 contacting a remote destination unknown"
        );
        assert_eq!(render("$empty$ costs $5 and $ $", v), "unknown costs $5 and $ $");
        assert_eq!(render("no tokens", v), "no tokens");
    }
}
