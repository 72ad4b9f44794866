//! Risk events, shaped like Splunk's Risk data model (`risk.all_risk`): one event per risk object
//! per result row, with the detection's message rendered, its threat objects and annotations.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;

use super::metadata::Metadata;
use super::results::RunInfo;
use crate::cim::{TIME, time_type};

pub const MITRE_ATTACK: &str = "annotations.mitre_attack";
pub const MITRE_TACTIC: &str = "annotations.mitre_attack.mitre_tactic";

fn list(name: &str) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true)
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(TIME, time_type(), false),
        Field::new("search_name", DataType::Utf8, false),
        Field::new("risk_object", DataType::Utf8, false),
        Field::new("risk_object_type", DataType::Utf8, false),
        Field::new("risk_score", DataType::Int64, false),
        Field::new("risk_message", DataType::Utf8, false),
        list("threat_object"),
        list("threat_object_type"),
        list(MITRE_ATTACK),
        list(MITRE_TACTIC),
        list("analytic_story"),
        Field::new("orig_sid", DataType::Utf8, false),
        Field::new("detection", DataType::Utf8, false),
        Field::new("mode", DataType::Utf8, false),
        Field::new("window_earliest", time_type(), false),
        Field::new("window_latest", time_type(), false),
    ]))
});

/// The schema of `risk.all_risk`.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

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

/// Risk events for every row of a detection's output.
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
    let mut time = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let (mut search, mut obj, mut obj_type, mut message) =
        (StringBuilder::new(), StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let mut score = Int64Builder::new();
    let mut threat = ListBuilder::new(StringBuilder::new());
    let mut threat_type = ListBuilder::new(StringBuilder::new());
    let mut mitre = ListBuilder::new(StringBuilder::new());
    let mut tactic = ListBuilder::new(StringBuilder::new());
    let mut story = ListBuilder::new(StringBuilder::new());
    let (mut sid, mut det, mut mode) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut we, mut wl) = (
        TimestampMicrosecondBuilder::new().with_timezone("UTC"),
        TimestampMicrosecondBuilder::new().with_timezone("UTC"),
    );
    for row in 0..batch.num_rows() {
        let msg = render(&meta.risk.message, |f| get(row, f));
        let when = times.as_ref().filter(|t| !t.is_null(row)).map_or(run.latest_us, |t| t.value(row));
        for ro in &meta.risk.objects {
            // A result without a value for the risk object has no such object to score.
            let Some(value) = get(row, &ro.field).filter(|v| !v.is_empty()) else { continue };
            time.append_value(when);
            search.append_value(&meta.search_name);
            obj.append_value(&value);
            obj_type.append_value(&ro.kind);
            score.append_value(i64::from(ro.score));
            message.append_value(&msg);
            for to in &meta.risk.threat_objects {
                if let Some(v) = get(row, &to.field).filter(|v| !v.is_empty()) {
                    threat.values().append_value(v);
                    threat_type.values().append_value(&to.kind);
                }
            }
            threat.append(true);
            threat_type.append(true);
            for m in &meta.mitre_attack_id {
                mitre.values().append_value(m);
            }
            mitre.append(true);
            for t in &meta.mitre_tactic {
                tactic.values().append_value(t);
            }
            tactic.append(true);
            for s in &meta.analytic_story {
                story.values().append_value(s);
            }
            story.append(true);
            sid.append_value(&run.run_id);
            det.append_value(&run.detection);
            mode.append_value(&run.mode);
            we.append_value(run.earliest_us);
            wl.append_value(run.latest_us);
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(search.finish()),
        Arc::new(obj.finish()),
        Arc::new(obj_type.finish()),
        Arc::new(score.finish()),
        Arc::new(message.finish()),
        Arc::new(threat.finish()),
        Arc::new(threat_type.finish()),
        Arc::new(mitre.finish()),
        Arc::new(tactic.finish()),
        Arc::new(story.finish()),
        Arc::new(sid.finish()),
        Arc::new(det.finish()),
        Arc::new(mode.finish()),
        Arc::new(we.finish()),
        Arc::new(wl.finish()),
    ];
    RecordBatch::try_new(schema(), cols)
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
