//! `quarantine.records`: every record an ingest rejected, with its raw bytes, so nothing is
//! dropped silently. Not a CIM data model: cimlake's own table.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// When the record was rejected (the ingest's start), not the record's own time, which is often
/// what is wrong with it. Named `_time` like every lake table, for partitioning.
pub const TIME: &str = super::TIME;
/// Why it was rejected.
pub const REASON: &str = "reason";
/// The record's bytes as read (the first [`MAX_RAW_BYTES`]), or null where there are none (a
/// damaged EVTX chunk, an archive that ends early).
pub const RAW: &str = "raw";
/// The record was longer than [`MAX_RAW_BYTES`] and `raw` holds its start.
pub const RAW_TRUNCATED: &str = "raw_truncated";

/// Bytes of a rejected record kept.
pub const MAX_RAW_BYTES: usize = 1 << 20;

pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![super::time_field()];
            fields.extend(super::provenance::fields());
            fields.push(Field::new(REASON, DataType::Utf8, false));
            fields.push(Field::new(RAW, DataType::Binary, true));
            fields.push(Field::new(RAW_TRUNCATED, DataType::Boolean, false));
            Arc::new(Schema::new(fields))
        })
        .clone()
}
