//! `endpoint.processes`: the CIM `Endpoint.Processes` dataset, one row per process start.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{Schema, SchemaRef};

use super::{int64, provenance, time_field, utf8};

pub const ACTION: &str = "action";
pub const DEST: &str = "dest";
pub const ORIGINAL_FILE_NAME: &str = "original_file_name";
pub const PARENT_PROCESS: &str = "parent_process";
pub const PARENT_PROCESS_EXEC: &str = "parent_process_exec";
pub const PARENT_PROCESS_GUID: &str = "parent_process_guid";
pub const PARENT_PROCESS_ID: &str = "parent_process_id";
pub const PARENT_PROCESS_NAME: &str = "parent_process_name";
pub const PARENT_PROCESS_PATH: &str = "parent_process_path";
pub const PROCESS: &str = "process";
pub const PROCESS_EXEC: &str = "process_exec";
pub const PROCESS_GUID: &str = "process_guid";
pub const PROCESS_HASH: &str = "process_hash";
pub const PROCESS_ID: &str = "process_id";
pub const PROCESS_INTEGRITY_LEVEL: &str = "process_integrity_level";
pub const PROCESS_CURRENT_DIRECTORY: &str = "process_current_directory";
pub const PROCESS_NAME: &str = "process_name";
pub const PROCESS_PATH: &str = "process_path";
pub const USER: &str = "user";
pub const USER_ID: &str = "user_id";
pub const VENDOR_PRODUCT: &str = "vendor_product";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        time_field(),
        utf8(ACTION),
        utf8(DEST),
        utf8(ORIGINAL_FILE_NAME),
        utf8(PARENT_PROCESS),
        utf8(PARENT_PROCESS_EXEC),
        utf8(PARENT_PROCESS_GUID),
        int64(PARENT_PROCESS_ID),
        utf8(PARENT_PROCESS_NAME),
        utf8(PARENT_PROCESS_PATH),
        utf8(PROCESS),
        utf8(PROCESS_EXEC),
        utf8(PROCESS_GUID),
        utf8(PROCESS_HASH),
        int64(PROCESS_ID),
        utf8(PROCESS_INTEGRITY_LEVEL),
        utf8(PROCESS_CURRENT_DIRECTORY),
        utf8(PROCESS_NAME),
        utf8(PROCESS_PATH),
        utf8(USER),
        utf8(USER_ID),
        utf8(VENDOR_PRODUCT),
    ];
    fields.extend(provenance::fields());
    Arc::new(Schema::new(fields))
});

/// The Arrow schema of `endpoint.processes`.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}
