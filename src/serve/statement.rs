//! What a client's SQL becomes before it runs: `?` placeholders numbered, the statement checked to
//! be read-only, parameters bound from the client's one-row batch, and the opaque handle that
//! carries a statement (and its bound parameters) between calls, sealed with the server's key.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::ipc::writer::StreamWriter;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use serde::{Deserialize, Serialize};

/// Why a client's statement, or the parameters bound to it, is refused.
#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("the statement mixes `?` and numbered ($1 or ?1) placeholders; use one style")]
    MixedPlaceholders,
    /// DDL, DML or a statement such as `SET`.
    #[error("the server is read-only ({0}); only queries may run")]
    NotReadOnly(crate::detect::NotReadOnly),
    /// A placeholder that is not `$n` (DataFusion's `$name`).
    #[error("unsupported placeholder {id}: use ? or $1, $2, …")]
    UnsupportedPlaceholder { id: String },
    /// The parameters' types, or their values, as DataFusion says.
    #[error("{}", .0.strip_backtrace())]
    Parameters(DataFusionError),
    #[error("the statement has {wanted} parameter(s) but {given} value(s) were bound")]
    ParameterCount { wanted: usize, given: usize },
    #[error("no parameter values were sent (an empty batch)")]
    NoParameterValues,
    #[error("{rows} rows of parameters were sent; bind one row per execution")]
    ParameterRows { rows: usize },
    /// Writing the bound row as Arrow IPC.
    #[error("{0}")]
    Encode(arrow::error::ArrowError),
    /// The parameters a handle carries are not base64.
    #[error("damaged parameters: {0}")]
    ParametersNotBase64(base64::DecodeError),
    /// The parameters a handle carries are not the IPC stream of a batch.
    #[error("damaged parameters: {0}")]
    ParametersNotIpc(super::ipc::IpcError),
}

/// Why bytes a client sent as a statement handle are not one this server sealed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("a statement handle of {0} bytes is larger than any this server issues")]
    TooLarge(usize),
    /// Without the handles' magic prefix.
    #[error("not a statement handle from this server")]
    NotAHandle,
    #[error("damaged statement handle: too short")]
    TooShort,
    /// The seal does not match: forged, altered, or sealed by another server or an earlier run.
    #[error(
        "the statement handle was not issued by this server, or was altered (a server restart \
         invalidates handles: prepare the statement again)"
    )]
    NotIssued,
    /// Sealed by this server, yet not a handle's JSON.
    #[error("damaged statement handle: {0}")]
    Damaged(serde_json::Error),
}

/// Numbers JDBC/ODBC-style `?` placeholders as DataFusion's `$1, $2, …`. The statement is split
/// into tokens by the SQL parser DataFusion uses, so a `?` inside a string, a quoted identifier or a
/// comment is left alone, and only the placeholders change: the rest of the text is kept byte for
/// byte. A statement that mixes `?` with `$n` or `?n` is refused: the numbering would be ambiguous.
pub fn number_placeholders(sql: &str) -> Result<String, StatementError> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    // Text the tokenizer rejects goes on as it is: the planner reports the error, with its place.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Ok(sql.to_string());
    };
    let mut questions = Vec::new();
    let mut numbered = false;
    for t in &tokens {
        if let Token::Placeholder(p) = &t.token {
            if p == "?" {
                questions.push(t.span.start);
            } else if p.len() > 1 && p[1..].bytes().all(|b| b.is_ascii_digit()) {
                numbered = true;
            }
        }
    }
    if questions.is_empty() {
        return Ok(sql.to_string());
    }
    if numbered {
        return Err(StatementError::MixedPlaceholders);
    }
    // Token locations are lines and columns, in characters, from 1.
    let line_starts: Vec<usize> = std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let offset = |line: u64, column: u64| -> usize {
        let start = line_starts[(line - 1) as usize];
        start + sql[start..].char_indices().nth((column - 1) as usize).map_or(sql.len() - start, |(i, _)| i)
    };
    let mut out = String::with_capacity(sql.len() + 2 * questions.len());
    let mut copied = 0;
    for (n, at) in questions.iter().enumerate() {
        let i = offset(at.line, at.column);
        out.push_str(&sql[copied..i]);
        out.push_str(&format!("${}", n + 1));
        copied = i + 1;
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

/// Refuses anything that is not a query: DDL (`CREATE …`, including external tables over files),
/// DML (`INSERT`, `COPY … TO`), and statements such as `SET` or transactions. The served session has
/// no file-reading table functions and no URL tables, so a query reads only the lake.
pub fn check_read_only(plan: &LogicalPlan) -> Result<(), StatementError> {
    crate::detect::check_read_only(plan).map_err(StatementError::NotReadOnly)
}

/// The parameters a plan needs, as the schema a client binds against: fields `$1, $2, …` in order,
/// typed where DataFusion inferred a type and `Null` where it did not.
pub fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, StatementError> {
    let fields = plan.get_parameter_fields().map_err(StatementError::Parameters)?;
    let mut named: Vec<(u64, String, DataType)> = Vec::new();
    for (id, field) in fields {
        let Some(n) = id.strip_prefix('$').and_then(|d| d.parse::<u64>().ok()) else {
            return Err(StatementError::UnsupportedPlaceholder { id });
        };
        named.push((n, id, field.map_or(DataType::Null, |f| f.data_type().clone())));
    }
    named.sort_by_key(|(n, ..)| *n);
    Ok(Schema::new(named.into_iter().map(|(_, id, t)| Field::new(id, t, true)).collect::<Vec<_>>()))
}

/// `plan` with `values` in place of its placeholders, one value for each.
pub fn bind(plan: LogicalPlan, values: ParamValues) -> Result<LogicalPlan, StatementError> {
    let wanted = parameter_schema(&plan)?.fields().len();
    let given = match &values {
        ParamValues::List(v) => v.len(),
        ParamValues::Map(m) => m.len(),
    };
    if given != wanted {
        return Err(StatementError::ParameterCount { wanted, given });
    }
    plan.with_param_values(values).map_err(StatementError::Parameters)
}

/// Positional parameter values from the batch a client bound: one row, one column per
/// placeholder, in order.
pub fn parameter_values(batches: &[RecordBatch]) -> Result<ParamValues, StatementError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Err(StatementError::NoParameterValues);
    };
    if rows > 1 {
        return Err(StatementError::ParameterRows { rows });
    }
    let values = batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0).map_err(StatementError::Parameters))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParamValues::from(values))
}

/// A statement between calls: its SQL, as the client wrote it, and the parameters bound to it.
/// The server keeps no state per statement; the client holds this, sealed ([`HandleKey`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handle {
    pub sql: String,
    /// The bound parameters: a one-row Arrow IPC stream, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
}

const HANDLE_MAGIC: &[u8] = b"cimlake-statement-2:";

/// The largest handle accepted (a statement's SQL and one row of parameters).
pub const MAX_HANDLE_BYTES: usize = 8 << 20;

/// The server's key for sealing handles: random per server process, never sent. A handle is
/// `magic ‖ BLAKE3-keyed MAC of the JSON ‖ JSON`; one not sealed with this key (forged, altered,
/// or from another server or an earlier run of this one) is refused before any of it is decoded.
pub struct HandleKey([u8; 32]);

impl HandleKey {
    pub fn random() -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        HandleKey(key)
    }
}

impl std::fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandleKey(***)")
    }
}

impl Handle {
    pub fn new(sql: impl Into<String>) -> Self {
        Handle { sql: sql.into(), params: None }
    }

    /// The handle's bytes, sealed with `key`.
    pub fn encode(&self, key: &HandleKey) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a handle serialises");
        let mac = blake3::keyed_hash(&key.0, &json);
        let mut out = Vec::with_capacity(HANDLE_MAGIC.len() + 32 + json.len());
        out.extend_from_slice(HANDLE_MAGIC);
        out.extend_from_slice(mac.as_bytes());
        out.extend_from_slice(&json);
        out
    }

    /// The handle in `bytes`, if `key` sealed it. Nothing is parsed before the seal is checked.
    pub fn decode(bytes: &[u8], key: &HandleKey) -> Result<Self, HandleError> {
        if bytes.len() > MAX_HANDLE_BYTES {
            return Err(HandleError::TooLarge(bytes.len()));
        }
        let sealed = bytes.strip_prefix(HANDLE_MAGIC).ok_or(HandleError::NotAHandle)?;
        let (mac, json) = sealed.split_first_chunk::<32>().ok_or(HandleError::TooShort)?;
        // `blake3::Hash` compares in constant time.
        if blake3::keyed_hash(&key.0, json) != blake3::Hash::from_bytes(*mac) {
            return Err(HandleError::NotIssued);
        }
        serde_json::from_slice(json).map_err(HandleError::Damaged)
    }

    /// This statement with `batches` bound as its parameters.
    pub fn bind(&self, batches: &[RecordBatch]) -> Result<Self, StatementError> {
        parameter_values(batches)?;
        let batch = batches.iter().find(|b| b.num_rows() > 0).ok_or(StatementError::NoParameterValues)?;
        let mut buf = Vec::new();
        let mut w = StreamWriter::try_new(&mut buf, &batch.schema()).map_err(StatementError::Encode)?;
        w.write(batch).map_err(StatementError::Encode)?;
        w.finish().map_err(StatementError::Encode)?;
        drop(w);
        use base64::Engine as _;
        Ok(Handle { sql: self.sql.clone(), params: Some(base64::engine::general_purpose::STANDARD.encode(buf)) })
    }

    /// The bound parameter values, if any. The IPC data is decoded with its lengths checked
    /// ([`super::ipc`]), though only a sealed handle gets this far.
    pub fn values(&self) -> Result<Option<ParamValues>, StatementError> {
        let Some(text) = &self.params else { return Ok(None) };
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(StatementError::ParametersNotBase64)?;
        let batches = super::ipc::decode_stream(&bytes).map_err(StatementError::ParametersNotIpc)?;
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
        let n = |sql: &str| number_placeholders(sql).unwrap();
        assert_eq!(n("SELECT * FROM t WHERE a = ? AND b = ?"), "SELECT * FROM t WHERE a = $1 AND b = $2");
        assert_eq!(
            n("SELECT '?', \"a?\", 'it''s ?' -- why?\n, x /* ? */ FROM t WHERE y = ?"),
            "SELECT '?', \"a?\", 'it''s ?' -- why?\n, x /* ? */ FROM t WHERE y = $1"
        );
        // Escapes, dollar quotes, nested comments, identifiers with $.
        assert_eq!(n("SELECT E'it\\'s ?', ?"), "SELECT E'it\\'s ?', $1");
        assert_eq!(n("SELECT $$a ? b$$, ?"), "SELECT $$a ? b$$, $1");
        assert_eq!(n("SELECT /* a /* b */ ? */ ?"), "SELECT /* a /* b */ ? */ $1");
        assert_eq!(n("SELECT a$1 FROM t WHERE x = ?"), "SELECT a$1 FROM t WHERE x = $1");
        // Multi-line and multi-byte text around placeholders is kept whole.
        assert_eq!(n("SELECT 'é' || ?\n  || 'ü' || ?"), "SELECT 'é' || $1\n  || 'ü' || $2");
        // Numbered placeholders and text the tokenizer rejects pass through.
        assert_eq!(n("SELECT $1, $2"), "SELECT $1, $2");
        assert_eq!(n("SELECT ?1"), "SELECT ?1");
        assert_eq!(n("SELECT 'unterminated ?"), "SELECT 'unterminated ?");
        assert!(number_placeholders("SELECT ? + $1").unwrap_err().to_string().contains("mixes"));
        assert!(matches!(number_placeholders("SELECT ? + ?2"), Err(StatementError::MixedPlaceholders)));
    }

    #[test]
    fn handles_round_trip_with_bound_parameters() {
        let key = HandleKey::random();
        let h = Handle::new("SELECT * FROM t WHERE a = $1 AND b = $2");
        assert_eq!(Handle::decode(&h.encode(&key), &key).unwrap(), h);
        let batch = RecordBatch::try_from_iter([
            ("0", Arc::new(Int64Array::from(vec![7])) as _),
            ("1", Arc::new(StringArray::from(vec!["msiexec.exe"])) as _),
        ])
        .unwrap();
        let bound = h.bind(std::slice::from_ref(&batch)).unwrap();
        let back = Handle::decode(&bound.encode(&key), &key).unwrap();
        let ParamValues::List(values) = back.values().unwrap().unwrap() else { panic!("positional") };
        let values: Vec<_> = values.iter().map(|v| v.value().clone()).collect();
        assert_eq!(values, vec![ScalarValue::Int64(Some(7)), ScalarValue::Utf8(Some("msiexec.exe".into()))]);
        assert!(Handle::decode(b"SELECT 1", &key).unwrap_err().to_string().contains("not a statement handle"));
        // Forged (another key), altered (one byte of the SQL), or cut: refused by the seal.
        let sealed = bound.encode(&key);
        assert!(Handle::decode(&sealed, &HandleKey::random()).unwrap_err().to_string().contains("not issued by this server"));
        for i in HANDLE_MAGIC.len()..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert!(Handle::decode(&altered, &key).unwrap_err().to_string().contains("not issued by this server"), "byte {i}");
        }
        assert!(Handle::decode(&sealed[..HANDLE_MAGIC.len() + 10], &key).unwrap_err().to_string().contains("too short"));
        assert!(Handle::decode(&vec![0; MAX_HANDLE_BYTES + 1], &key).unwrap_err().to_string().contains("larger than any"));
        assert_eq!(
            Handle::decode(&sealed, &HandleKey::random()).unwrap_err().to_string(),
            "the statement handle was not issued by this server, or was altered (a server restart invalidates handles: prepare the statement again)"
        );
        // Sealed by this server, but not a handle: damaged, said so.
        let mut forged = HANDLE_MAGIC.to_vec();
        forged.extend_from_slice(blake3::keyed_hash(&key.0, b"[1]").as_bytes());
        forged.extend_from_slice(b"[1]");
        let err = Handle::decode(&forged, &key).unwrap_err();
        assert!(matches!(err, HandleError::Damaged(_)) && err.to_string().starts_with("damaged statement handle: "), "{err}");
        // Parameters in a handle that are not base64, or not IPC.
        let bad = |params: &str| Handle { sql: "SELECT $1".into(), params: Some(params.into()) }.values().unwrap_err().to_string();
        assert!(bad("not base64!").starts_with("damaged parameters: "), "{}", bad("not base64!"));
        assert!(bad("AAAA").starts_with("damaged parameters: "), "{}", bad("AAAA"));
        let two = arrow::compute::concat_batches(&batch.schema(), [&batch, &batch]).unwrap();
        assert!(h.bind(&[two]).unwrap_err().to_string().contains("2 rows"));
        assert!(h.bind(&[batch.slice(0, 0)]).unwrap_err().to_string().contains("no parameter values"));
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
            assert!(matches!(err, StatementError::NotReadOnly(_)), "{sql}: {err:?}");
            assert!(err.to_string().starts_with("the server is read-only"), "{sql}: {err}");
        }
        let plan = ctx.state().create_logical_plan("SELECT * FROM t WHERE b = $2 AND a > $1").await.unwrap();
        check_read_only(&plan).unwrap();
        let schema = parameter_schema(&plan).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone())).collect();
        assert_eq!(names, vec![("$1", DataType::Int64), ("$2", DataType::Utf8View)]);
        let values = |v: Vec<ScalarValue>| ParamValues::from(v);
        let err = bind(plan.clone(), values(vec![ScalarValue::Int64(Some(1))])).unwrap_err();
        assert_eq!(err.to_string(), "the statement has 2 parameter(s) but 1 value(s) were bound");
        let bound = bind(plan, values(vec![ScalarValue::Int64(Some(1)), ScalarValue::Utf8(Some("x".into()))])).unwrap();
        assert!(parameter_schema(&bound).unwrap().fields().is_empty());
    }
}
