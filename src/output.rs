//! Writes query and detection results as a table, CSV, JSON lines or Parquet, to stdout or a
//! file. Column names are exactly the SQL's.

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
            let table = arrow::util::pretty::pretty_format_batches(&shown)
                .map_err(|e| OutputError::Arrow(name.clone(), e))?;
            writeln!(sink, "{table}").map_err(|e| OutputError::Io(name.clone(), e))?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut sink);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema)).map_err(|e| OutputError::Arrow(name.clone(), e))?;
            }
            for b in batches {
                w.write(b).map_err(|e| OutputError::Arrow(name.clone(), e))?;
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
