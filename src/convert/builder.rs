//! Row structs for the two CIM tables and the Arrow builders that turn them into record batches.
//!
//! A converter fills a borrowed row ([`ProcessRow`], [`TrafficRow`]) per event and appends it;
//! [`ProcessesBuilder::finish`] / [`AllTrafficBuilder::finish`] build a batch against the CIM
//! schema, so a row that does not fit the schema fails loudly instead of drifting.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::cim::file_name_of;
use crate::cim::provenance::Provenance;

/// One `endpoint.processes` row. `process_exec`/`process_name` and their parent counterparts are
/// the given names, else the file name part of the paths.
#[derive(Debug, Clone, Default)]
pub struct ProcessRow<'a> {
    pub time_us: i64,
    pub action: Option<&'a str>,
    pub dest: Option<&'a str>,
    pub original_file_name: Option<&'a str>,
    pub parent_process: Option<&'a str>,
    pub parent_process_guid: Option<&'a str>,
    pub parent_process_id: Option<i64>,
    pub parent_process_path: Option<&'a str>,
    pub process: Option<&'a str>,
    pub process_guid: Option<&'a str>,
    pub process_hash: Option<&'a str>,
    pub process_id: Option<i64>,
    pub process_integrity_level: Option<&'a str>,
    pub process_current_directory: Option<&'a str>,
    pub process_path: Option<&'a str>,
    /// Given when the source names the process apart from its path.
    pub process_name: Option<&'a str>,
    pub parent_process_name: Option<&'a str>,
    pub user: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub vendor_product: Option<&'a str>,
    pub provenance: Provenance<'a>,
}

/// One `network_traffic.all_traffic` row.
#[derive(Debug, Clone, Default)]
pub struct TrafficRow<'a> {
    pub time_us: i64,
    pub action: Option<&'a str>,
    pub app: Option<&'a str>,
    pub bytes: Option<i64>,
    pub bytes_in: Option<i64>,
    pub bytes_out: Option<i64>,
    pub dest: Option<&'a str>,
    pub dest_ip: Option<&'a str>,
    pub dest_port: Option<i32>,
    pub dvc: Option<&'a str>,
    pub direction: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub protocol_version: Option<i32>,
    pub src: Option<&'a str>,
    pub src_ip: Option<&'a str>,
    pub src_port: Option<i32>,
    pub transport: Option<&'a str>,
    pub user: Option<&'a str>,
    pub vendor_product: Option<&'a str>,
    pub process_id: Option<i64>,
    pub process_guid: Option<&'a str>,
    pub process_name: Option<&'a str>,
    pub process_path: Option<&'a str>,
    pub dest_hostname: Option<&'a str>,
    pub provenance: Provenance<'a>,
}

impl Default for Provenance<'_> {
    fn default() -> Self {
        Provenance { source: "", sourcetype: "", record: None, offset: None }
    }
}

#[derive(Default)]
struct ProvenanceBuilder {
    source: StringBuilder,
    sourcetype: StringBuilder,
    record: Int64Builder,
    offset: Int64Builder,
}

impl ProvenanceBuilder {
    fn append(&mut self, p: &Provenance<'_>) {
        self.source.append_value(p.source);
        self.sourcetype.append_value(p.sourcetype);
        self.record.append_option(p.record);
        self.offset.append_option(p.offset);
    }

    fn finish(&mut self, cols: &mut Vec<ArrayRef>) {
        cols.push(Arc::new(self.source.finish()));
        cols.push(Arc::new(self.sourcetype.finish()));
        cols.push(Arc::new(self.record.finish()));
        cols.push(Arc::new(self.offset.finish()));
    }
}

fn time_builder() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

/// Builds `endpoint.processes` batches.
pub struct ProcessesBuilder {
    time: TimestampMicrosecondBuilder,
    action: StringBuilder,
    dest: StringBuilder,
    original_file_name: StringBuilder,
    parent_process: StringBuilder,
    parent_process_exec: StringBuilder,
    parent_process_guid: StringBuilder,
    parent_process_id: Int64Builder,
    parent_process_name: StringBuilder,
    parent_process_path: StringBuilder,
    process: StringBuilder,
    process_exec: StringBuilder,
    process_guid: StringBuilder,
    process_hash: StringBuilder,
    process_id: Int64Builder,
    process_integrity_level: StringBuilder,
    process_current_directory: StringBuilder,
    process_name: StringBuilder,
    process_path: StringBuilder,
    user: StringBuilder,
    user_id: StringBuilder,
    vendor_product: StringBuilder,
    provenance: ProvenanceBuilder,
    len: usize,
}

impl Default for ProcessesBuilder {
    fn default() -> Self {
        ProcessesBuilder {
            time: time_builder(),
            action: StringBuilder::new(),
            dest: StringBuilder::new(),
            original_file_name: StringBuilder::new(),
            parent_process: StringBuilder::new(),
            parent_process_exec: StringBuilder::new(),
            parent_process_guid: StringBuilder::new(),
            parent_process_id: Int64Builder::new(),
            parent_process_name: StringBuilder::new(),
            parent_process_path: StringBuilder::new(),
            process: StringBuilder::new(),
            process_exec: StringBuilder::new(),
            process_guid: StringBuilder::new(),
            process_hash: StringBuilder::new(),
            process_id: Int64Builder::new(),
            process_integrity_level: StringBuilder::new(),
            process_current_directory: StringBuilder::new(),
            process_name: StringBuilder::new(),
            process_path: StringBuilder::new(),
            user: StringBuilder::new(),
            user_id: StringBuilder::new(),
            vendor_product: StringBuilder::new(),
            provenance: ProvenanceBuilder::default(),
            len: 0,
        }
    }
}

impl ProcessesBuilder {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn append(&mut self, r: &ProcessRow<'_>) {
        let parent_name = r.parent_process_name.or(r.parent_process_path.map(file_name_of));
        let name = r.process_name.or(r.process_path.map(file_name_of));
        self.time.append_value(r.time_us);
        self.action.append_option(r.action);
        self.dest.append_option(r.dest);
        self.original_file_name.append_option(r.original_file_name);
        self.parent_process.append_option(r.parent_process);
        self.parent_process_exec.append_option(parent_name);
        self.parent_process_guid.append_option(r.parent_process_guid);
        self.parent_process_id.append_option(r.parent_process_id);
        self.parent_process_name.append_option(parent_name);
        self.parent_process_path.append_option(r.parent_process_path);
        self.process.append_option(r.process);
        self.process_exec.append_option(name);
        self.process_guid.append_option(r.process_guid);
        self.process_hash.append_option(r.process_hash);
        self.process_id.append_option(r.process_id);
        self.process_integrity_level.append_option(r.process_integrity_level);
        self.process_current_directory.append_option(r.process_current_directory);
        self.process_name.append_option(name);
        self.process_path.append_option(r.process_path);
        self.user.append_option(r.user);
        self.user_id.append_option(r.user_id);
        self.vendor_product.append_option(r.vendor_product);
        self.provenance.append(&r.provenance);
        self.len += 1;
    }

    /// Builds the batch of all rows appended so far and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.dest.finish()),
            Arc::new(self.original_file_name.finish()),
            Arc::new(self.parent_process.finish()),
            Arc::new(self.parent_process_exec.finish()),
            Arc::new(self.parent_process_guid.finish()),
            Arc::new(self.parent_process_id.finish()),
            Arc::new(self.parent_process_name.finish()),
            Arc::new(self.parent_process_path.finish()),
            Arc::new(self.process.finish()),
            Arc::new(self.process_exec.finish()),
            Arc::new(self.process_guid.finish()),
            Arc::new(self.process_hash.finish()),
            Arc::new(self.process_id.finish()),
            Arc::new(self.process_integrity_level.finish()),
            Arc::new(self.process_current_directory.finish()),
            Arc::new(self.process_name.finish()),
            Arc::new(self.process_path.finish()),
            Arc::new(self.user.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.vendor_product.finish()),
        ];
        self.provenance.finish(&mut cols);
        self.len = 0;
        RecordBatch::try_new(crate::cim::processes::schema(), cols)
    }
}

/// Builds `network_traffic.all_traffic` batches.
pub struct AllTrafficBuilder {
    time: TimestampMicrosecondBuilder,
    action: StringBuilder,
    app: StringBuilder,
    bytes: Int64Builder,
    bytes_in: Int64Builder,
    bytes_out: Int64Builder,
    dest: StringBuilder,
    dest_ip: StringBuilder,
    dest_port: Int32Builder,
    dvc: StringBuilder,
    direction: StringBuilder,
    protocol: StringBuilder,
    protocol_version: Int32Builder,
    src: StringBuilder,
    src_ip: StringBuilder,
    src_port: Int32Builder,
    transport: StringBuilder,
    user: StringBuilder,
    vendor_product: StringBuilder,
    process_id: Int64Builder,
    process_guid: StringBuilder,
    process_name: StringBuilder,
    process_path: StringBuilder,
    dest_hostname: StringBuilder,
    provenance: ProvenanceBuilder,
    len: usize,
}

impl Default for AllTrafficBuilder {
    fn default() -> Self {
        AllTrafficBuilder {
            time: time_builder(),
            action: StringBuilder::new(),
            app: StringBuilder::new(),
            bytes: Int64Builder::new(),
            bytes_in: Int64Builder::new(),
            bytes_out: Int64Builder::new(),
            dest: StringBuilder::new(),
            dest_ip: StringBuilder::new(),
            dest_port: Int32Builder::new(),
            dvc: StringBuilder::new(),
            direction: StringBuilder::new(),
            protocol: StringBuilder::new(),
            protocol_version: Int32Builder::new(),
            src: StringBuilder::new(),
            src_ip: StringBuilder::new(),
            src_port: Int32Builder::new(),
            transport: StringBuilder::new(),
            user: StringBuilder::new(),
            vendor_product: StringBuilder::new(),
            process_id: Int64Builder::new(),
            process_guid: StringBuilder::new(),
            process_name: StringBuilder::new(),
            process_path: StringBuilder::new(),
            dest_hostname: StringBuilder::new(),
            provenance: ProvenanceBuilder::default(),
            len: 0,
        }
    }
}

impl AllTrafficBuilder {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn append(&mut self, r: &TrafficRow<'_>) {
        self.time.append_value(r.time_us);
        self.action.append_option(r.action);
        self.app.append_option(r.app);
        self.bytes.append_option(r.bytes);
        self.bytes_in.append_option(r.bytes_in);
        self.bytes_out.append_option(r.bytes_out);
        self.dest.append_option(r.dest);
        self.dest_ip.append_option(r.dest_ip);
        self.dest_port.append_option(r.dest_port);
        self.dvc.append_option(r.dvc);
        self.direction.append_option(r.direction);
        self.protocol.append_option(r.protocol);
        self.protocol_version.append_option(r.protocol_version);
        self.src.append_option(r.src);
        self.src_ip.append_option(r.src_ip);
        self.src_port.append_option(r.src_port);
        self.transport.append_option(r.transport);
        self.user.append_option(r.user);
        self.vendor_product.append_option(r.vendor_product);
        self.process_id.append_option(r.process_id);
        self.process_guid.append_option(r.process_guid);
        self.process_name.append_option(r.process_name);
        self.process_path.append_option(r.process_path);
        self.dest_hostname.append_option(r.dest_hostname);
        self.provenance.append(&r.provenance);
        self.len += 1;
    }

    /// Builds the batch of all rows appended so far and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.app.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.bytes_in.finish()),
            Arc::new(self.bytes_out.finish()),
            Arc::new(self.dest.finish()),
            Arc::new(self.dest_ip.finish()),
            Arc::new(self.dest_port.finish()),
            Arc::new(self.dvc.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.protocol_version.finish()),
            Arc::new(self.src.finish()),
            Arc::new(self.src_ip.finish()),
            Arc::new(self.src_port.finish()),
            Arc::new(self.transport.finish()),
            Arc::new(self.user.finish()),
            Arc::new(self.vendor_product.finish()),
            Arc::new(self.process_id.finish()),
            Arc::new(self.process_guid.finish()),
            Arc::new(self.process_name.finish()),
            Arc::new(self.process_path.finish()),
            Arc::new(self.dest_hostname.finish()),
        ];
        self.provenance.finish(&mut cols);
        self.len = 0;
        RecordBatch::try_new(crate::cim::all_traffic::schema(), cols)
    }
}
