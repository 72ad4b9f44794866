//! `quarantine.records`: every record an ingest rejected, with its raw bytes, so nothing is
//! dropped silently. Not a CIM data model: cimlake's own table.

crate::table! {
    /// One rejected record.
    pub struct QuarantineRow / QuarantineBuilder {
        /// When the record was rejected (the ingest's start), not the record's own time, which is
        /// often what is wrong with it. Named `_time` like every lake table, for partitioning.
        time_us: Ts [super::TIME => TIME] not null;
        source: Utf8 [super::provenance::SOURCE];
        /// Null when the input's shape was not known yet.
        sourcetype: Utf8 [super::provenance::SOURCETYPE];
        source_record: Int64 [super::provenance::SOURCE_RECORD];
        source_offset: Int64 [super::provenance::SOURCE_OFFSET];
        /// Why it was rejected.
        reason: Utf8 ["reason" => REASON] not null;
        /// The record's bytes as read (the first [`MAX_RAW_BYTES`]), or null where there are none
        /// (a damaged EVTX chunk, an archive that ends early).
        raw: Binary ["raw" => RAW];
        /// The record was longer than [`MAX_RAW_BYTES`] and `raw` holds its start.
        raw_truncated: Bool ["raw_truncated" => RAW_TRUNCATED] not null;
    }
}

/// Bytes of a rejected record kept.
pub const MAX_RAW_BYTES: usize = 1 << 20;
