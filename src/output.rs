//! Writes query and detection results as a table, CSV, JSON lines or Parquet, to stdout or a
//! file. Column names are exactly the SQL's. Text meant for a terminal (the table format, file
//! and member names in messages) has its control characters escaped ([`escape_controls`]), so a
//! crafted name cannot move the cursor, recolour the screen or forge a line of output.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// JSON lines: one object per row.
    Json,
    /// A Parquet file (needs -o).
    Parquet,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("writing {0}: {1}")]
    Arrow(String, #[source] arrow::error::ArrowError),
    #[error("writing {0}: {1}")]
    Parquet(String, #[source] parquet::errors::ParquetError),
    #[error("--format parquet writes a file: give one with -o FILE")]
    ParquetNeedsFile,
}

/// Writes `batches` (all of `schema`) in `format` to `out` (a file path) or stdout.
pub fn write(batches: &[RecordBatch], schema: SchemaRef, format: Format, out: Option<&Path>) -> Result<(), OutputError> {
    let name = out.map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
    let sink: Box<dyn Write + Send> = match out {
        Some(p) => Box::new(File::create(p).map_err(|e| OutputError::Io(name.clone(), e))?),
        None if format == Format::Parquet => return Err(OutputError::ParquetNeedsFile),
        None => Box::new(std::io::stdout()),
    };
    let mut sink = BufWriter::new(sink);
    match format {
        Format::Table => {
            let shown: Vec<RecordBatch> = if batches.iter().all(|b| b.num_rows() == 0) {
                vec![RecordBatch::new_empty(schema)]
            } else {
                batches.to_vec()
            };
            let shown = shown.iter().map(escape_batch).collect::<Result<Vec<_>, _>>().map_err(|e| OutputError::Arrow(name.clone(), e))?;
            let table = arrow::util::pretty::pretty_format_batches(&shown)
                .map_err(|e| OutputError::Arrow(name.clone(), e))?;
            writeln!(sink, "{table}").map_err(|e| OutputError::Io(name.clone(), e))?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut sink);
            if batches.is_empty() {
                let empty = lists_as_text(&RecordBatch::new_empty(schema)).map_err(|e| OutputError::Arrow(name.clone(), e))?;
                w.write(&empty).map_err(|e| OutputError::Arrow(name.clone(), e))?;
            }
            for b in batches {
                let b = lists_as_text(b).map_err(|e| OutputError::Arrow(name.clone(), e))?;
                w.write(&b).map_err(|e| OutputError::Arrow(name.clone(), e))?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut sink);
            for b in batches {
                w.write(b).map_err(|e| OutputError::Arrow(name.clone(), e))?;
            }
            w.finish().map_err(|e| OutputError::Arrow(name.clone(), e))?;
        }
        Format::Parquet => {
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut sink, Arc::clone(&schema), None)
                .map_err(|e| OutputError::Parquet(name.clone(), e))?;
            for b in batches {
                w.write(b).map_err(|e| OutputError::Parquet(name.clone(), e))?;
            }
            w.close().map_err(|e| OutputError::Parquet(name.clone(), e))?;
        }
    }
    sink.flush().map_err(|e| OutputError::Io(name, e))
}

/// A list column (a multivalue field, as ESCU's `values()` gives) as text, its values one per
/// line as Splunk exports them; null stays null. Other columns are returned as they are.
pub fn multivalue_text(array: &arrow::array::ArrayRef) -> Result<arrow::array::ArrayRef, arrow::error::ArrowError> {
    use arrow::array::{Array, AsArray, StringBuilder};
    use arrow::datatypes::DataType;
    let DataType::List(_) = array.data_type() else { return Ok(Arc::clone(array)) };
    let list = array.as_list::<i32>();
    let mut out = StringBuilder::new();
    let opts = arrow::util::display::FormatOptions::default();
    for i in 0..list.len() {
        if list.is_null(i) {
            out.append_null();
            continue;
        }
        let values = list.value(i);
        let shown = arrow::util::display::ArrayFormatter::try_new(values.as_ref(), &opts)?;
        let parts: Vec<String> = (0..values.len()).filter(|j| values.is_valid(*j)).map(|j| shown.value(j).to_string()).collect();
        out.append_value(parts.join("\n"));
    }
    Ok(Arc::new(out.finish()))
}

/// `batch` with its list columns as text ([`multivalue_text`]), for formats without lists (CSV).
pub fn lists_as_text(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::datatypes::{DataType, Field, Schema};
    if !batch.schema().fields().iter().any(|f| matches!(f.data_type(), DataType::List(_))) {
        return Ok(batch.clone());
    }
    let cols = batch.columns().iter().map(multivalue_text).collect::<Result<Vec<_>, _>>()?;
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| if matches!(f.data_type(), DataType::List(_)) { Field::new(f.name(), DataType::Utf8, true) } else { f.as_ref().clone() })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
}

/// `text` with each control character (newline, tab, escape, delete, C1 controls, …) written as
/// a Rust-style escape (`\n`, `\t`, `\u{1b}`): safe to print on a terminal. Other text, including
/// non-ASCII letters, is kept as it is.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A batch whose string columns have their control characters escaped, for the table format.
fn escape_batch(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{ArrayRef, AsArray, StringArray};
    use arrow::datatypes::DataType;
    let escaped = |values: &mut dyn Iterator<Item = Option<&str>>| -> Option<ArrayRef> {
        let values: Vec<Option<&str>> = values.collect();
        values.iter().flatten().any(|v| v.chars().any(char::is_control)).then(|| {
            Arc::new(values.into_iter().map(|v| v.map(escape_controls)).collect::<StringArray>()) as ArrayRef
        })
    };
    let mut columns = batch.columns().to_vec();
    let mut changed = false;
    for c in &mut columns {
        let replaced = match c.data_type() {
            DataType::Utf8 => escaped(&mut c.as_string::<i32>().iter()),
            DataType::LargeUtf8 => escaped(&mut c.as_string::<i64>().iter()),
            DataType::Utf8View => escaped(&mut c.as_string_view().iter()),
            _ => None,
        };
        if let Some(r) = replaced {
            *c = r;
            changed = true;
        }
    }
    if !changed {
        return Ok(batch.clone());
    }
    let fields: Vec<arrow::datatypes::Field> =
        batch.schema().fields().iter().zip(&columns).map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone())).collect();
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_other_text_kept() {
        assert_eq!(escape_controls("plain ü ✓"), "plain ü ✓");
        assert!(matches!(escape_controls("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\x1b[31mred\nfake line\r\t\u{7f}\u{9b}"), "a\\u{1b}[31mred\\nfake line\\r\\t\\u{7f}\\u{9b}");
    }
}
