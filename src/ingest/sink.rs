//! The lake's Parquet writer as the converters' [`BatchSink`]: the one place the two meet.

use arrow::record_batch::RecordBatch;

use crate::cim::Table;
use crate::convert::{BatchSink, ConvertError};
use crate::lake::writer::PartitionedWriter;

impl BatchSink for PartitionedWriter {
    fn write_batch(&mut self, table: Table, batch: RecordBatch) -> Result<(), ConvertError> {
        self.write(table, batch).map_err(|e| ConvertError::Sink(e.to_string()))
    }
}
