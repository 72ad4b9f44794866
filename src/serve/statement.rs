//! What a client's SQL becomes before it runs: `?` placeholders numbered, the statement checked to
//! be read-only, parameters bound from the client's one-row batch, and the opaque handle that
//! carries a statement (and its bound parameters) between calls.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};

/// Numbers JDBC/ODBC-style `?` placeholders as DataFusion's `$1, $2, …`, leaving string literals,
/// quoted identifiers and comments alone. A statement that mixes `?` with `$n` is refused: the
/// numbering would be ambiguous.
pub fn number_placeholders(sql: &str) -> Result<String, String> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0usize;
    let mut dollar = false;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                // To the closing quote; a doubled quote is an escaped one.
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == q {
                        if bytes.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = memchr::memmem::find(&bytes[i + 2..], b"*/").map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                dollar = true;
                i += 1;
            }
            b'?' => {
                n += 1;
                out.push_str(&sql[copied..i]);
                out.push_str(&format!("${n}"));
                i += 1;
                copied = i;
            }
            _ => i += 1,
        }
    }
    if n > 0 && dollar {
        return Err("the statement mixes `?` and `$n` placeholders; use one style".into());
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Ok(out)
}

/// Refuses anything that is not a query: DDL (`CREATE …`, including external tables over files),
/// DML (`INSERT`, `COPY … TO`), and statements such as `SET` or transactions. The served session has
/// no file-reading table functions and no URL tables, so a query reads only the lake.
pub fn check_read_only(plan: &LogicalPlan) -> Result<(), String> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| {
            let msg = e.strip_backtrace();
            let msg = msg.strip_prefix("Error during planning: ").unwrap_or(&msg).to_string();
            format!("the server is read-only ({msg}); only queries may run")
        })
}

/// The parameters a plan needs, as the schema a client binds against: fields `$1, $2, …` in order,
/// typed where DataFusion inferred a type and `Null` where it did not.
pub fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, String> {
    let fields = plan.get_parameter_fields().map_err(|e| e.strip_backtrace())?;
    let mut named: Vec<(u64, String, DataType)> = Vec::new();
    for (id, field) in fields {
        let n = id.strip_prefix('$').and_then(|d| d.parse().ok()).ok_or_else(|| format!("unsupported placeholder {id}: use ? or $1, $2, …"))?;
        named.push((n, id, field.map_or(DataType::Null, |f| f.data_type().clone())));
    }
    named.sort_by_key(|(n, ..)| *n);
    Ok(Schema::new(named.into_iter().map(|(_, id, t)| Field::new(id, t, true)).collect::<Vec<_>>()))
}

/// `plan` with `values` in place of its placeholders, one value for each.
pub fn bind(plan: LogicalPlan, values: ParamValues) -> Result<LogicalPlan, String> {
    let wanted = parameter_schema(&plan)?.fields().len();
    let given = match &values {
        ParamValues::List(v) => v.len(),
        ParamValues::Map(m) => m.len(),
    };
    if given != wanted {
        return Err(format!("the statement has {wanted} parameter(s) but {given} value(s) were bound"));
    }
    plan.with_param_values(values).map_err(|e| e.strip_backtrace())
}

/// Positional parameter values from the batch a client bound: one row, one column per
/// placeholder, in order.
pub fn parameter_values(batches: &[RecordBatch]) -> Result<ParamValues, String> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Err("no parameter values were sent (an empty batch)".into());
    };
    if rows > 1 {
        return Err(format!("{rows} rows of parameters were sent; bind one row per execution"));
    }
    let values = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0).map_err(|e| e.strip_backtrace()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParamValues::from(values))
}

/// A statement between calls: its SQL, as the client wrote it, and the parameters bound to it.
/// The server keeps no state per statement; the client holds this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handle {
    pub sql: String,
    /// The bound parameters: a one-row Arrow IPC stream, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
}

const HANDLE_MAGIC: &[u8] = b"cimlake-statement-1:";

impl Handle {
    pub fn new(sql: impl Into<String>) -> Self {
        Handle { sql: sql.into(), params: None }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = HANDLE_MAGIC.to_vec();
        serde_json::to_writer(&mut out, self).expect("a handle serialises");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let json = bytes.strip_prefix(HANDLE_MAGIC).ok_or("not a statement handle from this server")?;
        serde_json::from_slice(json).map_err(|e| format!("damaged statement handle: {e}"))
    }

    /// This statement with `batches` bound as its parameters.
    pub fn bind(&self, batches: &[RecordBatch]) -> Result<Self, String> {
        parameter_values(batches)?;
        let batch = batches.iter().find(|b| b.num_rows() > 0).expect("checked by parameter_values");
        let mut buf = Vec::new();
        let mut w = StreamWriter::try_new(&mut buf, &batch.schema()).map_err(|e| e.to_string())?;
        w.write(batch).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
        drop(w);
        use base64::Engine as _;
        Ok(Handle { sql: self.sql.clone(), params: Some(base64::engine::general_purpose::STANDARD.encode(buf)) })
    }

    /// The bound parameter values, if any.
    pub fn values(&self) -> Result<Option<ParamValues>, String> {
        let Some(text) = &self.params else { return Ok(None) };
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("damaged parameters: {e}"))?;
        let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| format!("damaged parameters: {e}"))?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| format!("damaged parameters: {e}"))?;
        parameter_values(&batches).map(Some)
    }
}

/// The schema a Flight SQL client is told about and then sent. View types (`Utf8View`,
/// `BinaryView`, which DataFusion produces) become their plain forms, which every client reads
/// (the Arrow Flight SQL JDBC driver does not read views); nested types are mapped through.
pub fn client_type(t: &DataType) -> DataType {
    let field = |f: &Arc<Field>| Arc::new(f.as_ref().clone().with_data_type(client_type(f.data_type())));
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::ListView(f) | DataType::List(f) => DataType::List(field(f)),
        DataType::LargeListView(f) | DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fs) => DataType::Struct(fs.iter().map(field).collect()),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        other => other.clone(),
    }
}

pub fn client_schema(schema: &Schema) -> Schema {
    Schema::new_with_metadata(
        schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(client_type(f.data_type()))).collect::<Vec<_>>(),
        schema.metadata().clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn question_marks_are_numbered_outside_literals_identifiers_and_comments() {
        assert_eq!(number_placeholders("SELECT * FROM t WHERE a = ? AND b = ?").unwrap(), "SELECT * FROM t WHERE a = $1 AND b = $2");
        assert_eq!(
            number_placeholders("SELECT '?', \"a?\", 'it''s ?' -- why?\n, x /* ? */ FROM t WHERE y = ?").unwrap(),
            "SELECT '?', \"a?\", 'it''s ?' -- why?\n, x /* ? */ FROM t WHERE y = $1"
        );
        assert_eq!(number_placeholders("SELECT $1, $2").unwrap(), "SELECT $1, $2");
        assert_eq!(number_placeholders("SELECT 'unterminated ?").unwrap(), "SELECT 'unterminated ?");
        assert!(number_placeholders("SELECT ? + $1").unwrap_err().contains("mixes"));
        // Multi-byte text around placeholders is copied whole.
        assert_eq!(number_placeholders("SELECT 'é' || ? || 'ü'").unwrap(), "SELECT 'é' || $1 || 'ü'");
    }

    #[test]
    fn handles_round_trip_with_bound_parameters() {
        let h = Handle::new("SELECT * FROM t WHERE a = $1 AND b = $2");
        assert_eq!(Handle::decode(&h.encode()).unwrap(), h);
        let batch = RecordBatch::try_from_iter([
            ("0", Arc::new(Int64Array::from(vec![7])) as _),
            ("1", Arc::new(StringArray::from(vec!["msiexec.exe"])) as _),
        ])
        .unwrap();
        let bound = h.bind(std::slice::from_ref(&batch)).unwrap();
        let back = Handle::decode(&bound.encode()).unwrap();
        let ParamValues::List(values) = back.values().unwrap().unwrap() else { panic!("positional") };
        let values: Vec<_> = values.iter().map(|v| v.value().clone()).collect();
        assert_eq!(values, vec![ScalarValue::Int64(Some(7)), ScalarValue::Utf8(Some("msiexec.exe".into()))]);
        assert!(Handle::decode(b"SELECT 1").unwrap_err().contains("not a statement handle"));
        let two = arrow::compute::concat_batches(&batch.schema(), [&batch, &batch]).unwrap();
        assert!(h.bind(&[two]).unwrap_err().contains("2 rows"));
        assert!(h.bind(&[batch.slice(0, 0)]).unwrap_err().contains("no parameter values"));
    }

    #[test]
    fn view_types_are_served_plain() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true)));
        assert_eq!(client_type(&list), DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))));
        assert_eq!(client_type(&DataType::BinaryView), DataType::Binary);
        assert_eq!(client_type(&DataType::Int64), DataType::Int64);
    }

    #[tokio::test]
    async fn writes_and_statements_are_refused_and_parameters_typed() {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.sql("CREATE TABLE t (a BIGINT, b VARCHAR)").await.unwrap();
        for sql in [
            "INSERT INTO t VALUES (1, 'x')",
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "COPY t TO '/tmp/out.csv'",
            "SET datafusion.execution.batch_size = 1",
            "DROP TABLE t",
        ] {
            let plan = ctx.state().create_logical_plan(sql).await.unwrap();
            let err = check_read_only(&plan).unwrap_err();
            assert!(err.starts_with("the server is read-only"), "{sql}: {err}");
        }
        let plan = ctx.state().create_logical_plan("SELECT * FROM t WHERE b = $2 AND a > $1").await.unwrap();
        check_read_only(&plan).unwrap();
        let schema = parameter_schema(&plan).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone())).collect();
        assert_eq!(names, vec![("$1", DataType::Int64), ("$2", DataType::Utf8View)]);
        let values = |v: Vec<ScalarValue>| ParamValues::from(v);
        let err = bind(plan.clone(), values(vec![ScalarValue::Int64(Some(1))])).unwrap_err();
        assert_eq!(err, "the statement has 2 parameter(s) but 1 value(s) were bound");
        let bound = bind(plan, values(vec![ScalarValue::Int64(Some(1)), ScalarValue::Utf8(Some("x".into()))])).unwrap();
        assert!(parameter_schema(&bound).unwrap().fields().is_empty());
    }
}
