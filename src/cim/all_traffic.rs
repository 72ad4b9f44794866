//! `network_traffic.all_traffic`: the CIM `Network_Traffic.All_Traffic` dataset, one row per
//! reported flow, plus the extension columns that tie a flow to the process that made it.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{Schema, SchemaRef};

use super::{int32, int64, provenance, time_field, utf8};

pub const ACTION: &str = "action";
pub const APP: &str = "app";
pub const BYTES: &str = "bytes";
pub const BYTES_IN: &str = "bytes_in";
pub const BYTES_OUT: &str = "bytes_out";
pub const DEST: &str = "dest";
pub const DEST_IP: &str = "dest_ip";
pub const DEST_PORT: &str = "dest_port";
pub const DVC: &str = "dvc";
pub const DIRECTION: &str = "direction";
pub const PROTOCOL: &str = "protocol";
pub const PROTOCOL_VERSION: &str = "protocol_version";
pub const SRC: &str = "src";
pub const SRC_IP: &str = "src_ip";
pub const SRC_PORT: &str = "src_port";
pub const TRANSPORT: &str = "transport";
pub const USER: &str = "user";
pub const VENDOR_PRODUCT: &str = "vendor_product";
pub const PROCESS_ID: &str = "process_id";
// Extension columns (not in CIM's All_Traffic).
pub const PROCESS_GUID: &str = "process_guid";
pub const PROCESS_NAME: &str = "process_name";
pub const PROCESS_PATH: &str = "process_path";
pub const DEST_HOSTNAME: &str = "dest_hostname";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        time_field(),
        utf8(ACTION),
        utf8(APP),
        int64(BYTES),
        int64(BYTES_IN),
        int64(BYTES_OUT),
        utf8(DEST),
        utf8(DEST_IP),
        int32(DEST_PORT),
        utf8(DVC),
        utf8(DIRECTION),
        utf8(PROTOCOL),
        int32(PROTOCOL_VERSION),
        utf8(SRC),
        utf8(SRC_IP),
        int32(SRC_PORT),
        utf8(TRANSPORT),
        utf8(USER),
        utf8(VENDOR_PRODUCT),
        int64(PROCESS_ID),
        utf8(PROCESS_GUID),
        utf8(PROCESS_NAME),
        utf8(PROCESS_PATH),
        utf8(DEST_HOSTNAME),
    ];
    fields.extend(provenance::fields());
    Arc::new(Schema::new(fields))
});

/// The Arrow schema of `network_traffic.all_traffic`.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}
